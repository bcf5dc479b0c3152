/* template: Mustache compiler and renderer, the template set, UTF-8 length rules.
 * See include/keng/template.h. */
#include "keng/template.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keng/log.h"

/* ------------------------------------------------------------------------------------------ */
/* Compiled form                                                                               */

enum op_kind {
    OP_TEXT,     /* literal bytes */
    OP_INDENT,   /* a source line starts here: emit the partial indentation, if any */
    OP_VAR,      /* {{x}} */
    OP_RAW,      /* {{{x}}}, {{&x}} */
    OP_SECTION,  /* {{#x}} … ops up to end … */
    OP_INVERTED, /* {{^x}} */
    OP_PARTIAL,  /* {{>x}} */
};

struct op {
    enum op_kind kind;
    int line;
    /* OP_TEXT: text offset/len in pool. Names: offset of the name in pool, parts separated by
     * NUL; nparts == 0 means "." (the current context). OP_PARTIAL: indent at ind_off/ind_len. */
    size_t off, len;
    size_t nparts;
    size_t ind_off, ind_len;
    bool standalone;
    size_t end; /* sections: index one past the body */
};

struct keng_tpl {
    struct op *ops;
    size_t nops;
    char *pool; /* text, names and indents, each NUL-terminated */
};

void keng_tpl_free(keng_tpl *t)
{
    if (!t) return;
    free(t->ops);
    free(t->pool);
    free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* Compiler                                                                                    */

#define MAX_DELIM 16

struct compiler {
    const char *src;
    size_t len;
    struct op *ops;
    size_t nops, capops;
    keng_buf pool;
    char otag[MAX_DELIM + 1], ctag[MAX_DELIM + 1];
    size_t olen, clen;
    size_t stack[KENG_TPL_MAX_SECTION_DEPTH];
    int depth;
    bool pending_indent; /* a surviving source line starts before the next emitted op */
    int line;
    char *err;
    size_t errlen;
};

static int cerr(struct compiler *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cerr(struct compiler *c, int line, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        int n = snprintf(c->err, c->errlen, "line %d: ", line);
        if (n >= 0 && (size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

static int add_op(struct compiler *c, struct op op, size_t *idx)
{
    if (c->nops == c->capops) {
        size_t cap = c->capops ? c->capops * 2 : 32;
        struct op *p = realloc(c->ops, cap * sizeof *p);
        if (!p) return -ENOMEM;
        c->ops = p;
        c->capops = cap;
    }
    if (idx) *idx = c->nops;
    c->ops[c->nops++] = op;
    return 0;
}

static int pool_add(struct compiler *c, const char *p, size_t n, size_t *off)
{
    *off = c->pool.len;
    int rc = keng_buf_append(&c->pool, p, n);
    if (!rc) rc = keng_buf_append(&c->pool, "", 1);
    return rc;
}

static int flush_indent(struct compiler *c)
{
    if (!c->pending_indent) return 0;
    c->pending_indent = false;
    return add_op(c, (struct op){.kind = OP_INDENT, .line = c->line}, NULL);
}

/* Emits src[a, b) as text ops, one per source line, each preceded by a line-start marker so
 * that an indented partial indents exactly the lines of its source. */
static int emit_text(struct compiler *c, size_t a, size_t b)
{
    while (a < b) {
        const char *nl = memchr(c->src + a, '\n', b - a);
        size_t e = nl ? (size_t)(nl - c->src) + 1 : b;
        int rc = flush_indent(c);
        size_t off;
        if (!rc) rc = pool_add(c, c->src + a, e - a, &off);
        if (!rc) rc = add_op(c, (struct op){.kind = OP_TEXT, .off = off, .len = e - a}, NULL);
        if (rc) return rc;
        if (nl) c->pending_indent = true;
        a = e;
    }
    return 0;
}

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t';
}

static const char *find_str(const char *s, size_t n, const char *needle, size_t nlen)
{
    if (nlen == 0 || n < nlen) return NULL;
    for (size_t i = 0; i + nlen <= n; i++)
        if (s[i] == needle[0] && memcmp(s + i, needle, nlen) == 0) return s + i;
    return NULL;
}

/* Stores a trimmed tag name as NUL-separated parts. */
static int add_name(struct compiler *c, const char *p, size_t n, int line, struct op *op)
{
    while (n && (is_ws(*p) || *p == '\n' || *p == '\r'))
        p++, n--;
    while (n && (is_ws(p[n - 1]) || p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (n == 0) return cerr(c, line, "empty tag name");
    for (size_t i = 0; i < n; i++)
        if (is_ws(p[i]) || p[i] == '\n')
            return cerr(c, line, "space in tag name '%.*s'", (int)n, p);
    if (n == 1 && p[0] == '.') {
        op->nparts = 0;
        return pool_add(c, ".", 1, &op->off);
    }
    op->nparts = 1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '.') continue;
        if (i == 0 || i == n - 1 || p[i + 1] == '.')
            return cerr(c, line, "bad dotted name '%.*s'", (int)n, p);
        op->nparts++;
    }
    int rc = pool_add(c, p, n, &op->off);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if (c->pool.data[op->off + i] == '.') c->pool.data[op->off + i] = '\0';
    op->len = n;
    return 0;
}

/* The name of op as written, dots restored. */
static const char *display_name(const struct compiler *c, const struct op *op, char *buf, size_t n)
{
    if (op->nparts == 0) return ".";
    size_t k = op->len < n - 1 ? op->len : n - 1;
    for (size_t i = 0; i < k; i++) {
        char ch = c->pool.data[op->off + i];
        buf[i] = ch ? ch : '.';
    }
    buf[k] = '\0';
    return buf;
}

static int set_delims(struct compiler *c, const char *p, size_t n, int line)
{
    size_t i = 0;
    while (i < n && is_ws(p[i]))
        i++;
    size_t a = i;
    while (i < n && !is_ws(p[i]))
        i++;
    size_t alen = i - a;
    while (i < n && is_ws(p[i]))
        i++;
    size_t b = i;
    while (i < n && !is_ws(p[i]))
        i++;
    size_t blen = i - b;
    while (i < n && is_ws(p[i]))
        i++;
    if (!alen || !blen || i != n || alen > MAX_DELIM || blen > MAX_DELIM ||
        memchr(p + a, '=', alen) || memchr(p + b, '=', blen))
        return cerr(c, line,
                    "bad set-delimiter tag '{{=%.*s=}}': want two delimiters of 1-%d "
                    "characters without spaces or '='",
                    (int)n, p, MAX_DELIM);
    memcpy(c->otag, p + a, alen);
    c->otag[alen] = '\0';
    c->olen = alen;
    memcpy(c->ctag, p + b, blen);
    c->ctag[blen] = '\0';
    c->clen = blen;
    return 0;
}

static int compile(struct compiler *c)
{
    const char *s = c->src;
    size_t n = c->len, pos = 0, text_start = 0, line_start = 0, last_tag_end = 0;
    c->line = 1;
    c->pending_indent = true;
    for (;;) {
        const char *o = find_str(s + pos, n - pos, c->otag, c->olen);
        size_t ts = o ? (size_t)(o - s) : n;
        for (size_t p = pos; p < ts; p++)
            if (s[p] == '\n') c->line++, line_start = p + 1;
        if (!o) return emit_text(c, text_start, n);
        int line = c->line;

        /* Tag extent: [ts, te); content [cs, ce). */
        size_t cs = ts + c->olen;
        char sigil = cs < n ? s[cs] : '\0';
        const char *close;
        size_t ce, te;
        if (sigil == '{' || sigil == '=') {
            char want[MAX_DELIM + 2];
            want[0] = sigil == '{' ? '}' : '=';
            memcpy(want + 1, c->ctag, c->clen);
            close = find_str(s + cs + 1, n - cs - 1, want, c->clen + 1);
            if (!close) return cerr(c, line, "tag '%s%c' is never closed", c->otag, sigil);
            ce = (size_t)(close - s);
            te = ce + 1 + c->clen;
            cs++;
        } else {
            close = find_str(s + cs, n - cs, c->ctag, c->clen);
            if (!close)
                return cerr(c, line, "tag '%s' is never closed with '%s'", c->otag, c->ctag);
            ce = (size_t)(close - s);
            te = ce + c->clen;
            if (sigil && strchr("#^/!>&", sigil))
                cs++;
            else
                sigil = '\0';
        }

        /* Standalone: the only tag on its line, with nothing but spaces around it. */
        bool standalone = false;
        size_t after = te;
        if (sigil && strchr("#^/!>=", sigil) && last_tag_end <= line_start) {
            bool ok = true;
            for (size_t p = line_start; p < ts && ok; p++)
                ok = is_ws(s[p]);
            size_t p = te;
            while (ok && p < n && is_ws(s[p]))
                p++;
            if (ok && p < n && s[p] == '\r' && p + 1 < n && s[p + 1] == '\n') p++;
            if (ok && (p == n || s[p] == '\n')) {
                standalone = true;
                after = p < n ? p + 1 : n;
            }
        }
        int rc = emit_text(c, text_start, standalone ? line_start : ts);
        if (rc) return rc;
        if (!standalone && sigil != '!' && sigil != '=' && (rc = flush_indent(c))) return rc;

        struct op op = {.line = line, .standalone = standalone};
        switch (sigil) {
        case '!':
            break;
        case '=':
            rc = set_delims(c, s + cs, ce - cs, line);
            break;
        case '#':
        case '^':
            if (c->depth == KENG_TPL_MAX_SECTION_DEPTH)
                return cerr(c, line, "sections nested deeper than %d", KENG_TPL_MAX_SECTION_DEPTH);
            op.kind = sigil == '#' ? OP_SECTION : OP_INVERTED;
            if (!(rc = add_name(c, s + cs, ce - cs, line, &op)))
                rc = add_op(c, op, &c->stack[c->depth++]);
            break;
        case '/': {
            if ((rc = add_name(c, s + cs, ce - cs, line, &op))) break;
            if (c->depth == 0)
                return cerr(c, line, "closing tag '%.*s' without an open section", (int)(ce - cs),
                            s + cs);
            struct op *open = &c->ops[c->stack[c->depth - 1]];
            if (open->nparts != op.nparts || open->len != op.len ||
                memcmp(c->pool.data + op.off, c->pool.data + open->off, op.len) != 0) {
                char oname[128];
                return cerr(c, line,
                            "closing tag '%.*s' does not match section '%s' opened "
                            "on line %d",
                            (int)(ce - cs), s + cs, display_name(c, open, oname, sizeof oname),
                            open->line);
            }
            open->end = c->nops;
            c->depth--;
            break;
        }
        case '>':
            op.kind = OP_PARTIAL;
            if (!(rc = add_name(c, s + cs, ce - cs, line, &op)) && standalone)
                rc = pool_add(c, s + line_start, ts - line_start, &op.ind_off);
            op.ind_len = standalone ? ts - line_start : 0;
            if (!rc) rc = add_op(c, op, NULL);
            break;
        default:
            op.kind = sigil == '&' || sigil == '{' ? OP_RAW : OP_VAR;
            if (!(rc = add_name(c, s + cs, ce - cs, line, &op))) rc = add_op(c, op, NULL);
            break;
        }
        if (rc) return rc;
        for (size_t p = ts; p < after; p++)
            if (s[p] == '\n') c->line++, line_start = p + 1;
        pos = text_start = after;
        last_tag_end = standalone ? after : te;
        if (standalone) line_start = after;
    }
}

int keng_tpl_compile(const char *src, size_t len, keng_tpl **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (!src) return -EINVAL;
    if (len > KENG_TPL_MAX_SOURCE) {
        if (err && errlen)
            snprintf(err, errlen, "template larger than %u bytes", KENG_TPL_MAX_SOURCE);
        return -E2BIG;
    }
    struct compiler c = {.src = src, .len = len, .err = err, .errlen = errlen};
    memcpy(c.otag, "{{", 3);
    memcpy(c.ctag, "}}", 3);
    c.olen = c.clen = 2;
    keng_buf_init(&c.pool, 0);
    int rc = compile(&c);
    if (!rc && c.depth) {
        struct op *open = &c.ops[c.stack[c.depth - 1]];
        char oname[128];
        rc = cerr(&c, open->line, "section '%s' is never closed",
                  display_name(&c, open, oname, sizeof oname));
    }
    if (rc == -ENOMEM && err && errlen) snprintf(err, errlen, "out of memory");
    keng_tpl *t = rc ? NULL : calloc(1, sizeof *t);
    if (!rc && !t) rc = -ENOMEM;
    if (rc) {
        free(c.ops);
        keng_buf_free(&c.pool);
        return rc;
    }
    t->ops = c.ops;
    t->nops = c.nops;
    t->pool = keng_buf_steal(&c.pool);
    if (!t->pool) {
        keng_tpl_free(t);
        return -ENOMEM;
    }
    *out = t;
    return 0;
}

int keng_tpl_each_partial(const keng_tpl *t, int (*fn)(void *ud, const char *name, int line),
                          void *ud)
{
    for (size_t i = 0; i < t->nops; i++) {
        if (t->ops[i].kind != OP_PARTIAL) continue;
        int rc = fn(ud, t->pool + t->ops[i].off, t->ops[i].line);
        if (rc) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Renderer                                                                                    */

/* Sections per template times partial depth bounds the context stack. */
#define MAX_CONTEXT (KENG_TPL_MAX_SECTION_DEPTH * (KENG_TPL_MAX_PARTIAL_DEPTH + 1) + 1)

struct render {
    const cJSON *stack[MAX_CONTEXT];
    int sp;
    int partial_depth;
    keng_tpl_partial_fn partials;
    void *ud;
    unsigned flags;
    keng_buf *out;
    size_t start;
};

static int put(struct render *r, const char *p, size_t n)
{
    if (r->out->len - r->start + n > KENG_TPL_MAX_OUTPUT) return -E2BIG;
    return keng_buf_append(r->out, p, n);
}

static int put_escaped(struct render *r, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep;
        switch (*s) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        default:
            continue;
        }
        int rc = put(r, run, (size_t)(s - run));
        if (!rc) rc = put(r, rep, strlen(rep));
        if (rc) return rc;
        run = s + 1;
    }
    return put(r, run, (size_t)(s - run));
}

static const cJSON *lookup(const struct render *r, const char *name, size_t nparts)
{
    if (nparts == 0) return r->sp ? r->stack[r->sp - 1] : NULL;
    const cJSON *v = NULL;
    for (int k = r->sp - 1; k >= 0 && !v; k--)
        if (cJSON_IsObject(r->stack[k])) v = cJSON_GetObjectItemCaseSensitive(r->stack[k], name);
    /* Once the first part is found, the rest resolves inside it only (no fallback). */
    for (size_t i = 1; i < nparts && v; i++) {
        name += strlen(name) + 1;
        v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, name) : NULL;
    }
    return v;
}

static bool truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v) || cJSON_IsInvalid(v)) return false;
    if (cJSON_IsArray(v)) return v->child != NULL;
    if (cJSON_IsString(v)) return v->valuestring && v->valuestring[0];
    return true;
}

static void format_number(double d, char *out, size_t n)
{
    if (isfinite(d) && d == floor(d) && fabs(d) < 1e15) {
        snprintf(out, n, "%.0f", d);
        if (strcmp(out, "-0") == 0) snprintf(out, n, "0");
        return;
    }
    /* Shortest of %.15g and %.17g that reads back as the same double. */
    snprintf(out, n, "%.15g", d);
    if (strtod(out, NULL) != d) snprintf(out, n, "%.17g", d);
}

static int put_value(struct render *r, const cJSON *v, bool escape)
{
    char num[40];
    const char *s = "";
    if (!v)
        return 0;
    else if (cJSON_IsString(v) && v->valuestring)
        s = v->valuestring;
    else if (cJSON_IsNumber(v))
        format_number(v->valuedouble, num, sizeof num), s = num;
    else if (cJSON_IsTrue(v))
        s = "true";
    else if (cJSON_IsFalse(v))
        s = "false";
    else
        return 0;
    return escape ? put_escaped(r, s) : put(r, s, strlen(s));
}

static int render_ops(struct render *r, const keng_tpl *t, size_t from, size_t to,
                      const char *indent, size_t ind_len);

static int push(struct render *r, const cJSON *v)
{
    if (r->sp == MAX_CONTEXT) return -ELOOP;
    r->stack[r->sp++] = v;
    return 0;
}

static int render_partial(struct render *r, const struct op *op, const keng_tpl *t,
                          const char *indent, size_t ind_len)
{
    if (!r->partials) return 0;
    const keng_tpl *p = r->partials(r->ud, t->pool + op->off);
    if (!p) return 0;
    if (r->partial_depth == KENG_TPL_MAX_PARTIAL_DEPTH) return -ELOOP;
    /* A standalone partial's lines are indented by its tag's indentation, on top of ours. */
    char small[256];
    char *ind = small;
    size_t n = 0;
    if (op->standalone) {
        n = ind_len + op->ind_len;
        if (n > sizeof small && !(ind = malloc(n))) return -ENOMEM;
        if (ind_len) memcpy(ind, indent, ind_len);
        if (op->ind_len) memcpy(ind + ind_len, t->pool + op->ind_off, op->ind_len);
    }
    r->partial_depth++;
    int rc = render_ops(r, p, 0, p->nops, n ? ind : NULL, n);
    r->partial_depth--;
    if (ind != small) free(ind);
    return rc;
}

static int render_ops(struct render *r, const keng_tpl *t, size_t from, size_t to,
                      const char *indent, size_t ind_len)
{
    int rc = 0;
    for (size_t i = from; i < to && !rc; i++) {
        const struct op *op = &t->ops[i];
        switch (op->kind) {
        case OP_TEXT:
            rc = put(r, t->pool + op->off, op->len);
            break;
        case OP_INDENT:
            if (ind_len) rc = put(r, indent, ind_len);
            break;
        case OP_VAR:
        case OP_RAW:
            rc = put_value(r, lookup(r, t->pool + op->off, op->nparts),
                           op->kind == OP_VAR && !(r->flags & KENG_TPL_PLAIN));
            break;
        case OP_PARTIAL:
            rc = render_partial(r, op, t, indent, ind_len);
            break;
        case OP_SECTION:
        case OP_INVERTED: {
            const cJSON *v = lookup(r, t->pool + op->off, op->nparts);
            bool yes = truthy(v);
            if (op->kind == OP_INVERTED) {
                if (!yes) rc = render_ops(r, t, i + 1, op->end, indent, ind_len);
            } else if (yes && cJSON_IsArray(v)) {
                for (const cJSON *it = v->child; it && !rc; it = it->next) {
                    if ((rc = push(r, it))) break;
                    rc = render_ops(r, t, i + 1, op->end, indent, ind_len);
                    r->sp--;
                }
            } else if (yes) {
                if (!(rc = push(r, v))) {
                    rc = render_ops(r, t, i + 1, op->end, indent, ind_len);
                    r->sp--;
                }
            }
            i = op->end - 1;
            break;
        }
        }
    }
    return rc;
}

int keng_tpl_render_ex(const keng_tpl *t, const cJSON *data, keng_tpl_partial_fn partials, void *ud,
                       unsigned flags, keng_buf *out)
{
    if (!t || !out) return -EINVAL;
    struct render *r = malloc(sizeof *r);
    if (!r) return -ENOMEM;
    r->sp = 0;
    r->partial_depth = 0;
    r->partials = partials;
    r->ud = ud;
    r->flags = flags;
    r->out = out;
    r->start = out->len;
    int rc = data ? push(r, data) : 0;
    if (!rc) rc = render_ops(r, t, 0, t->nops, NULL, 0);
    free(r);
    return rc;
}

int keng_tpl_render(const keng_tpl *t, const cJSON *data, keng_tpl_partial_fn partials, void *ud,
                    keng_buf *out)
{
    return keng_tpl_render_ex(t, data, partials, ud, 0, out);
}

/* ---- render_string: partials from a JSON object, compiled up front ---- */

struct named_tpl {
    char *name;
    keng_tpl *t;
};

struct tpl_list {
    struct named_tpl *v;
    size_t n;
};

static const keng_tpl *list_find(void *ud, const char *name)
{
    const struct tpl_list *l = ud;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0) return l->v[i].t;
    return NULL;
}

static void list_free(struct tpl_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        keng_tpl_free(l->v[i].t);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int keng_tpl_render_string(const char *src, const cJSON *data, const cJSON *partials_obj,
                           keng_buf *out, char *err, size_t errlen)
{
    struct tpl_list l = {0};
    keng_tpl *t = NULL;
    int rc = 0;
    if (err && errlen) err[0] = '\0';
    size_t np = (size_t)cJSON_GetArraySize(partials_obj);
    if (np && !(l.v = calloc(np, sizeof *l.v))) return -ENOMEM;
    const cJSON *it;
    cJSON_ArrayForEach(it, partials_obj)
    {
        if (!cJSON_IsString(it) || !it->string) continue;
        char e[200];
        struct named_tpl *nt = &l.v[l.n];
        if (!(nt->name = strdup(it->string))) {
            rc = -ENOMEM;
            break;
        }
        l.n++;
        rc = keng_tpl_compile(it->valuestring, strlen(it->valuestring), &nt->t, e, sizeof e);
        if (rc) {
            if (err && errlen) snprintf(err, errlen, "partial '%s': %s", it->string, e);
            break;
        }
    }
    if (!rc) rc = keng_tpl_compile(src, strlen(src), &t, err, errlen);
    if (!rc) rc = keng_tpl_render(t, data, list_find, &l, out);
    keng_tpl_free(t);
    list_free(&l);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8                                                                                       */

/* Length of the well-formed sequence at s (1 for an invalid byte). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t want;
    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        want = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        want = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        want = 4;
    else
        return 1;
    if (want > n) return 1;
    for (size_t i = 1; i < want; i++)
        if ((s[i] & 0xc0) != 0x80) return 1;
    return want;
}

size_t keng_tpl_utf8_len(const char *s, size_t len)
{
    size_t cp = 0;
    for (size_t i = 0; i < len; cp++)
        i += utf8_seq((const unsigned char *)s + i, len - i);
    return cp;
}

int keng_tpl_utf8_truncate(keng_buf *b, size_t max_cp)
{
    if (max_cp == 0) return -EINVAL;
    if (keng_tpl_utf8_len(b->data, b->len) <= max_cp) return 0;
    /* Keep max_cp - 1 code points, then the ellipsis. */
    size_t i = 0;
    for (size_t cp = 0; cp < max_cp - 1 && i < b->len; cp++)
        i += utf8_seq((const unsigned char *)b->data + i, b->len - i);
    while (i > 0 && (is_ws(b->data[i - 1]) || b->data[i - 1] == '\n' || b->data[i - 1] == '\r'))
        i--;
    b->len = i;
    b->data[i] = '\0';
    int rc = keng_buf_append(b, "\xe2\x80\xa6", 3);
    return rc ? rc : 1;
}

size_t keng_tpl_channel_limit(const char *channel)
{
    if (!channel) return 0;
    if (strcmp(channel, "telegram") == 0) return 1024;
    if (strcmp(channel, "zalo_oa") == 0) return 2000;
    if (strcmp(channel, "sms") == 0) return 160;
    return 0;
}

/* A Telegram text goes out as a photo caption (1024) when there is a photo, otherwise as a
 * message (4096). */
static size_t message_limit(const char *channel, const cJSON *data)
{
    size_t limit = keng_tpl_channel_limit(channel);
    if (limit && strcmp(channel, "telegram") == 0 &&
        !truthy(cJSON_GetObjectItemCaseSensitive(data, "has_photos")))
        limit = 4096;
    return limit;
}

/* ------------------------------------------------------------------------------------------ */
/* Template set                                                                                */

static const char *const KINDS[] = {"lost_elder", "lost_elder_found", "suspicious_vehicle",
                                    "scam_pattern", "other"};
static const char *const EVENTS[] = {"alert", "update", "resolve", "cancel"};
static const char *const LANGS[] = {"vi", "en"};
static const char *const CHANNELS[] = {"telegram", "zalo_oa", "email", "sms", "webhook", "file"};
#define NKINDS (sizeof KINDS / sizeof KINDS[0])
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Used when templates/samples/<kind>.json is absent, so validation still runs. */
static const char BUILTIN_SAMPLE[] =
    "{\"alert\":{\"id\":\"a-sample\",\"title\":\"Mẫu\",\"body\":\"Nội dung mẫu\","
    "\"urgency\":\"immediate\",\"severity\":\"severe\",\"revision\":1,\"is_immediate\":true,"
    "\"person_name\":\"Nguyễn Thị Tám\",\"age\":78},"
    "\"ward\":{\"name\":\"Công an phường\",\"phone\":\"0236 3000 000\"},"
    "\"recipient\":{\"name\":\"Hộ mẫu\",\"lang\":\"vi\"},\"photos\":[],\"has_photos\":false}";

struct keng_tplset {
    char *dir;
    struct named_tpl *msg; /* name "kind.event.lang[.channel]", sorted */
    size_t nmsg, capmsg;
    struct tpl_list partials;
    size_t cappartials;
    struct named_tpl *web; /* "web/reply.html" */
    size_t nweb, capweb;
    cJSON *samples[NKINDS];
};

static int named_cmp(const void *a, const void *b)
{
    return strcmp(((const struct named_tpl *)a)->name, ((const struct named_tpl *)b)->name);
}

static const keng_tpl *named_find(const struct named_tpl *v, size_t n, const char *name)
{
    struct named_tpl key = {.name = (char *)name};
    const struct named_tpl *f = n ? bsearch(&key, v, n, sizeof *v, named_cmp) : NULL;
    return f ? f->t : NULL;
}

static void named_free(struct named_tpl *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        keng_tpl_free(v[i].t);
    }
    free(v);
}

void keng_tplset_free(keng_tplset *s)
{
    if (!s) return;
    named_free(s->msg, s->nmsg);
    list_free(&s->partials);
    named_free(s->web, s->nweb);
    for (size_t i = 0; i < NKINDS; i++)
        cJSON_Delete(s->samples[i]);
    free(s->dir);
    free(s);
}

const keng_tpl *keng_tplset_partial(void *ud, const char *name)
{
    const keng_tplset *s = ud;
    return named_find(s->partials.v, s->partials.n, name);
}

const cJSON *keng_tplset_sample(const keng_tplset *s, const char *kind)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (kind && strcmp(kind, KINDS[i]) == 0) return s->samples[i];
    return NULL;
}

static int seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int read_file(const char *path, keng_buf *b)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -errno;
    keng_buf_init(b, KENG_TPL_MAX_SOURCE);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = keng_buf_append(b, chunk, n);
    if (!rc && ferror(f)) rc = -EIO;
    fclose(f);
    if (rc) keng_buf_free(b);
    return rc;
}

static bool in_list(const char *w, size_t n, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && memcmp(list[i], w, n) == 0) return true;
    return false;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Checks "kind.event.lang[.channel]" (or "kind.event.lang.email.html") against the known words,
 * so a typo in a file name is an error at start-up rather than a template that is silently never
 * used. */
static int check_msg_name(const char *name, char *why, size_t whylen)
{
    const char *part[5];
    size_t plen[5], np = 0;
    const char *p = name;
    while (np < 5) {
        const char *dot = strchr(p, '.');
        part[np] = p;
        plen[np++] = dot ? (size_t)(dot - p) : strlen(p);
        if (!dot) break;
        p = dot + 1;
    }
    /* The one five-part name: an e-mail's HTML, <kind>.<event>.<lang>.email.html. */
    bool html = np == 5 && plen[3] == 5 && memcmp(part[3], "email", 5) == 0 &&
                strcmp(part[4], "html") == 0;
    if (np < 3 || (np > 4 && !html)) {
        snprintf(why, whylen,
                 "name must be <kind>.<event>.<lang>[.<channel>].mustache or "
                 "<kind>.<event>.<lang>.email.html.mustache");
        return -EINVAL;
    }
    if (!in_list(part[0], plen[0], KINDS, NKINDS)) {
        snprintf(why, whylen, "unknown kind '%.*s'", (int)plen[0], part[0]);
        return -EINVAL;
    }
    if (!in_list(part[1], plen[1], EVENTS, COUNT(EVENTS))) {
        snprintf(why, whylen, "unknown event '%.*s' (alert, update, resolve, cancel)", (int)plen[1],
                 part[1]);
        return -EINVAL;
    }
    if (plen[2] < 2 || plen[2] > 8) {
        snprintf(why, whylen, "bad language '%.*s'", (int)plen[2], part[2]);
        return -EINVAL;
    }
    if (np == 4 && !in_list(part[3], plen[3], CHANNELS, COUNT(CHANNELS))) {
        snprintf(why, whylen, "unknown channel '%.*s'", (int)plen[3], part[3]);
        return -EINVAL;
    }
    return 0;
}

static int push_named(struct named_tpl **v, size_t *n, size_t *cap, const char *name, keng_tpl *t)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        struct named_tpl *p = realloc(*v, c * sizeof *p);
        if (!p) return -ENOMEM;
        *v = p;
        *cap = c;
    }
    char *dup = strdup(name);
    if (!dup) return -ENOMEM;
    (*v)[*n].name = dup;
    (*v)[*n].t = t;
    (*n)++;
    return 0;
}

/* Compiles every "*.mustache" in dir/sub. name_of gives the stored name for a file name. */
static int load_dir(keng_tplset *s, const char *sub, bool required, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", s->dir, sub);
    DIR *d = opendir(path);
    if (!d) {
        if (!required && errno == ENOENT) return 0;
        return seterr(err, errlen, -errno, "%s: %s", path, strerror(errno));
    }
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        const char *fn = de->d_name;
        if (fn[0] == '.' || !has_suffix(fn, ".mustache")) continue;
        char name[256];
        size_t nlen = strlen(fn) - strlen(".mustache");
        if (nlen >= sizeof name) {
            rc = seterr(err, errlen, -EINVAL, "%s/%s: file name too long", path, fn);
            break;
        }
        memcpy(name, fn, nlen);
        name[nlen] = '\0';
        char why[200];
        if (strcmp(sub, "msg") == 0 && check_msg_name(name, why, sizeof why)) {
            rc = seterr(err, errlen, -EINVAL, "%s/%s: %s", path, fn, why);
            break;
        }
        char fpath[4096 + 256];
        snprintf(fpath, sizeof fpath, "%s/%s", path, fn);
        keng_buf src;
        if ((rc = read_file(fpath, &src))) {
            rc = seterr(err, errlen, rc, "%s: %s", fpath,
                        rc == -E2BIG ? "file too large" : strerror(-rc));
            break;
        }
        keng_tpl *t;
        char cerrbuf[300];
        rc = keng_tpl_compile(src.data ? src.data : "", src.len, &t, cerrbuf, sizeof cerrbuf);
        keng_buf_free(&src);
        if (rc) {
            rc = seterr(err, errlen, rc, "%s: %s", fpath, cerrbuf);
            break;
        }
        if (strcmp(sub, "msg") == 0) {
            rc = push_named(&s->msg, &s->nmsg, &s->capmsg, name, t);
        } else if (strcmp(sub, "partials") == 0) {
            rc = push_named(&s->partials.v, &s->partials.n, &s->cappartials, name, t);
        } else {
            char wname[300];
            snprintf(wname, sizeof wname, "%s/%s", sub, name);
            rc = push_named(&s->web, &s->nweb, &s->capweb, wname, t);
        }
        if (rc) {
            keng_tpl_free(t);
            seterr(err, errlen, rc, "out of memory");
        }
    }
    closedir(d);
    return rc;
}

struct partial_check {
    const keng_tplset *s;
    const char *file;
    char *err;
    size_t errlen;
};

static int check_partial(void *ud, const char *name, int line)
{
    struct partial_check *pc = ud;
    if (keng_tplset_partial((void *)pc->s, name)) return 0;
    return seterr(pc->err, pc->errlen, -EINVAL,
                  "%s/%s.mustache: line %d: partial '%s' not found (no %s/partials/%s.mustache)",
                  pc->s->dir, pc->file, line, name, pc->s->dir, name);
}

static int check_partials(const keng_tplset *s, const char *prefix, const struct named_tpl *v,
                          size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char file[300];
        snprintf(file, sizeof file, "%s%s", prefix, v[i].name);
        struct partial_check pc = {s, file, err, errlen};
        int rc = keng_tpl_each_partial(v[i].t, check_partial, &pc);
        if (rc) return rc;
    }
    return 0;
}

static int load_samples(keng_tplset *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < NKINDS; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/samples/%s.json", s->dir, KINDS[i]);
        keng_buf b;
        int rc = read_file(path, &b);
        if (rc == -ENOENT) {
            s->samples[i] = cJSON_Parse(BUILTIN_SAMPLE);
            if (!s->samples[i]) return seterr(err, errlen, -ENOMEM, "out of memory");
            continue;
        }
        if (rc) return seterr(err, errlen, rc, "%s: %s", path, strerror(-rc));
        const char *end = NULL;
        s->samples[i] = cJSON_ParseWithLengthOpts(b.data ? b.data : "", b.len, &end, 0);
        if (!s->samples[i] || !cJSON_IsObject(s->samples[i])) {
            size_t at = end && b.data ? (size_t)(end - b.data) : 0, line = 1;
            for (size_t k = 0; k < at && k < b.len; k++)
                line += b.data[k] == '\n';
            keng_buf_free(&b);
            return seterr(err, errlen, -EINVAL, "%s: line %zu: not a JSON object", path, line);
        }
        keng_buf_free(&b);
    }
    return 0;
}

static size_t kind_index(const char *name, size_t n)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (strlen(KINDS[i]) == n && memcmp(KINDS[i], name, n) == 0) return i;
    return NKINDS;
}

/* Renders every message template with its kind's sample, so that a template that cannot render
 * is reported at start-up rather than at publish. */
static int validate_msgs(const keng_tplset *s, char *err, size_t errlen)
{
    keng_buf out;
    keng_buf_init(&out, 0);
    int rc = 0;
    for (size_t i = 0; i < s->nmsg && !rc; i++) {
        const char *name = s->msg[i].name;
        const char *d1 = strchr(name, '.'), *d2 = strchr(d1 + 1, '.');
        const char *d3 = strchr(d2 + 1, '.');
        size_t k = kind_index(name, (size_t)(d1 - name));
        bool html = has_suffix(name, ".email.html");
        cJSON *data = cJSON_Duplicate(s->samples[k], 1);
        char event[16];
        snprintf(event, sizeof event, "%.*s", (int)(d2 - d1 - 1), d1 + 1);
        /* An e-mail's HTML also gets the inline photo's src when there is a photo. */
        if (data && html && truthy(cJSON_GetObjectItemCaseSensitive(data, "has_photos")) &&
            !cJSON_GetObjectItemCaseSensitive(data, "photo_src") &&
            !cJSON_AddStringToObject(data, "photo_src", "cid:sample@keng")) {
            cJSON_Delete(data);
            data = NULL;
        }
        if (!data || !cJSON_AddStringToObject(data, "event", event)) {
            cJSON_Delete(data);
            rc = seterr(err, errlen, -ENOMEM, "out of memory");
            break;
        }
        keng_buf_reset(&out);
        rc = keng_tpl_render_ex(s->msg[i].t, data, keng_tplset_partial, (void *)s,
                                html ? 0 : KENG_TPL_PLAIN, &out);
        cJSON_Delete(data);
        if (rc) {
            rc = seterr(err, errlen, -EINVAL,
                        "%s/msg/%s.mustache: rendering the sample %s.json "
                        "failed: %s",
                        s->dir, name, KINDS[k], strerror(-rc));
            break;
        }
        size_t nonspace = 0;
        for (size_t j = 0; j < out.len; j++)
            nonspace += !strchr(" \t\r\n", out.data[j]);
        if (!nonspace) {
            rc = seterr(err, errlen, -EINVAL,
                        "%s/msg/%s.mustache: renders to nothing with the "
                        "sample %s.json",
                        s->dir, name, KINDS[k]);
            break;
        }
        size_t limit = d3 && !html ? message_limit(d3 + 1, s->samples[k]) : 0;
        size_t cps = keng_tpl_utf8_len(out.data, out.len);
        if (limit && cps > limit)
            keng_warn("template %s/msg/%s.mustache: %zu characters with the sample, over the "
                      "%zu limit of its channel; it will be cut",
                      s->dir, name, cps, limit);
    }
    keng_buf_free(&out);
    return rc;
}

int keng_tplset_load(const char *dir, keng_tplset **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    keng_tplset *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir ? dir : "templates"))) {
        free(s);
        return seterr(err, errlen, -ENOMEM, "out of memory");
    }
    size_t dl = strlen(s->dir);
    while (dl > 1 && s->dir[dl - 1] == '/')
        s->dir[--dl] = '\0';
    int rc = load_dir(s, "msg", true, err, errlen);
    if (!rc) rc = load_dir(s, "partials", false, err, errlen);
    if (!rc) rc = load_dir(s, "web", false, err, errlen);
    if (!rc) rc = load_samples(s, err, errlen);
    if (rc) {
        keng_tplset_free(s);
        return rc;
    }
    qsort(s->msg, s->nmsg, sizeof *s->msg, named_cmp);
    qsort(s->partials.v, s->partials.n, sizeof *s->partials.v, named_cmp);
    qsort(s->web, s->nweb, sizeof *s->web, named_cmp);
    for (size_t k = 0; k < NKINDS && !rc; k++)
        for (size_t e = 0; e < COUNT(EVENTS) && !rc; e++)
            for (size_t l = 0; l < COUNT(LANGS) && !rc; l++) {
                char name[128];
                snprintf(name, sizeof name, "%s.%s.%s", KINDS[k], EVENTS[e], LANGS[l]);
                if (!named_find(s->msg, s->nmsg, name))
                    rc = seterr(err, errlen, -EINVAL,
                                "%s/msg/%s.mustache: missing (every "
                                "kind × event × language needs a default text)",
                                s->dir, name);
                snprintf(name, sizeof name, "%s.%s.%s.email.html", KINDS[k], EVENTS[e], LANGS[l]);
                if (!rc && !named_find(s->msg, s->nmsg, name))
                    rc = seterr(err, errlen, -EINVAL,
                                "%s/msg/%s.mustache: missing (every "
                                "kind × event × language needs an e-mail HTML)",
                                s->dir, name);
            }
    /* The pages kengd serves (api_links.c): a missing one would be a 500 on a resident's phone. */
    static const char *const PAGES[] = {"web/reply.html", "web/relay.html", "web/link.html",
                                        "web/form_error.html"};
    for (size_t i = 0; i < COUNT(PAGES) && !rc; i++)
        if (!named_find(s->web, s->nweb, PAGES[i]))
            rc = seterr(err, errlen, -EINVAL,
                        "%s/%s.mustache: missing (kengd serves this page for personal links)",
                        s->dir, PAGES[i]);
    if (!rc) rc = check_partials(s, "msg/", s->msg, s->nmsg, err, errlen);
    if (!rc) rc = check_partials(s, "partials/", s->partials.v, s->partials.n, err, errlen);
    if (!rc) rc = check_partials(s, "", s->web, s->nweb, err, errlen);
    if (!rc) rc = validate_msgs(s, err, errlen);
    if (rc) {
        keng_tplset_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static const keng_tpl *find_msg(const keng_tplset *s, const char *kind, const char *event,
                                const char *lang, const char *channel)
{
    char name[160];
    const keng_tpl *t = NULL;
    if (channel && *channel) {
        snprintf(name, sizeof name, "%s.%s.%s.%s", kind, event, lang, channel);
        t = named_find(s->msg, s->nmsg, name);
    }
    if (!t) {
        snprintf(name, sizeof name, "%s.%s.%s", kind, event, lang);
        t = named_find(s->msg, s->nmsg, name);
    }
    return t;
}

int keng_tplset_render(const keng_tplset *s, const char *name_kind, const char *event,
                       const char *lang, const char *channel, const cJSON *data, keng_buf *out)
{
    if (!s || !name_kind || !event || !out) return -EINVAL;
    if (strlen(name_kind) > 40 || strlen(event) > 20 || (lang && strlen(lang) > 20) ||
        (channel && strlen(channel) > 20))
        return -ENOENT;
    const keng_tpl *t = lang && *lang ? find_msg(s, name_kind, event, lang, channel) : NULL;
    if (!t) t = find_msg(s, name_kind, event, "vi", channel);
    if (!t) return -ENOENT;
    /* The limit applies to this message, not to whatever out held before. */
    keng_buf msg;
    keng_buf_init(&msg, out->max ? out->max : 0);
    int rc = keng_tpl_render_ex(t, data, keng_tplset_partial, (void *)s, KENG_TPL_PLAIN, &msg);
    size_t limit = message_limit(channel, data);
    if (!rc && limit) rc = keng_tpl_utf8_truncate(&msg, limit) < 0 ? -ENOMEM : 0;
    if (!rc) rc = keng_buf_append(out, msg.data ? msg.data : "", msg.len);
    keng_buf_free(&msg);
    return rc;
}

int keng_tplset_render_html(const keng_tplset *s, const char *name_kind, const char *event,
                            const char *lang, const cJSON *data, keng_buf *out)
{
    if (!s || !name_kind || !event || !out) return -EINVAL;
    if (strlen(name_kind) > 40 || strlen(event) > 20 || (lang && strlen(lang) > 20))
        return -ENOENT;
    /* The language keng_tplset_render takes for the e-mail's text, so both parts agree. */
    if (!lang || !*lang || !find_msg(s, name_kind, event, lang, "email")) lang = "vi";
    char name[160];
    snprintf(name, sizeof name, "%s.%s.%s.email.html", name_kind, event, lang);
    const keng_tpl *t = named_find(s->msg, s->nmsg, name);
    if (!t) return -ENOENT;
    return keng_tpl_render(t, data, keng_tplset_partial, (void *)s, out);
}

int keng_tplset_render_file(const keng_tplset *s, const char *relpath, const cJSON *data,
                            keng_buf *out)
{
    if (!s || !relpath || !out) return -EINVAL;
    char name[300];
    size_t n = strlen(relpath);
    if (has_suffix(relpath, ".mustache")) n -= strlen(".mustache");
    if (n >= sizeof name) return -ENOENT;
    memcpy(name, relpath, n);
    name[n] = '\0';
    const keng_tpl *t = named_find(s->web, s->nweb, name);
    if (!t) return -ENOENT;
    return keng_tpl_render(t, data, keng_tplset_partial, (void *)s, out);
}

/* Reads and compiles one template file; err gets "path: line N: reason". */
static int compile_path(const char *path, keng_tpl **out, char *err, size_t errlen)
{
    keng_buf src;
    int rc = read_file(path, &src);
    if (rc)
        return seterr(err, errlen, rc, "%s: %s", path,
                      rc == -E2BIG ? "file too large" : strerror(-rc));
    char e[300];
    rc = keng_tpl_compile(src.data ? src.data : "", src.len, out, e, sizeof e);
    keng_buf_free(&src);
    return rc ? seterr(err, errlen, rc, "%s: %s", path, e) : 0;
}

int keng_tpl_render_path(const char *path, const cJSON *data, keng_buf *out, char *err,
                         size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    /* The partials live beside the file's directory: templates/msg/x → templates/partials. */
    char pdir[4096];
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(pdir, sizeof pdir, "%.*s/../partials", (int)(slash - path), path);
    else
        snprintf(pdir, sizeof pdir, "../partials");
    struct tpl_list l = {0};
    size_t cap = 0;
    int rc = 0;
    DIR *d = opendir(pdir);
    struct dirent *de;
    while (d && !rc && (de = readdir(d))) {
        if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".mustache")) continue;
        char fpath[4096 + 256], name[256];
        snprintf(fpath, sizeof fpath, "%s/%s", pdir, de->d_name);
        snprintf(name, sizeof name, "%.*s", (int)(strlen(de->d_name) - strlen(".mustache")),
                 de->d_name);
        keng_tpl *t;
        if (!(rc = compile_path(fpath, &t, err, errlen)) &&
            (rc = push_named(&l.v, &l.n, &cap, name, t)))
            keng_tpl_free(t);
    }
    if (d) closedir(d);
    keng_tpl *t = NULL;
    if (!rc) rc = compile_path(path, &t, err, errlen);
    unsigned flags = has_suffix(path, ".html.mustache") ? 0 : KENG_TPL_PLAIN;
    if (!rc && (rc = keng_tpl_render_ex(t, data, list_find, &l, flags, out)))
        seterr(err, errlen, rc, "%s: rendering failed: %s", path, strerror(-rc));
    keng_tpl_free(t);
    list_free(&l);
    return rc;
}
