/* Argument splitting, local files and the text output (tables, values) shared by commands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void say_v(const char *vi, const char *en, const char *fmt, va_list ap)
{
    fprintf(stderr, "keng: %s / %s: ", vi, en);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int keng_cli_say(const char *vi, const char *en)
{
    fprintf(stderr, "keng: %s / %s\n", vi, en);
    return KENG_CLI_FAIL;
}

void keng_cli_sayf(const char *vi, const char *en, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say_v(vi, en, fmt, ap);
    va_end(ap);
}

int keng_cli_fail(const char *vi, const char *en, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say_v(vi, en, fmt, ap);
    va_end(ap);
    return KENG_CLI_FAIL;
}

int keng_cli_nomem(void)
{
    return keng_cli_say("hết bộ nhớ", "out of memory");
}

int keng_cli_usage(const char *text, int to_stdout)
{
    fputs(text, to_stdout ? stdout : stderr);
    return to_stdout ? KENG_CLI_OK : KENG_CLI_USAGE;
}

/* ---- arguments ---- */

static int in_list(const char *const *list, const char *s, size_t n)
{
    for (; list && *list; list++)
        if (strlen(*list) == n && !strncmp(*list, s, n)) return 1;
    return 0;
}

static int push_opt(keng_cli_args *a, const char *name, const char *val)
{
    keng_cli_opt *o = realloc(a->opt, (size_t)(a->nopt + 1) * sizeof *o);
    if (!o) return -ENOMEM;
    a->opt = o;
    o[a->nopt].name = name;
    o[a->nopt].val = val;
    a->nopt++;
    return 0;
}

static int set_str(char **dst, const char *v)
{
    char *s = strdup(v);
    if (!s) return -ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

int keng_cli_args_parse(keng_cli *c, int argc, char **argv, const char *const *bools,
                        int url_is_field, keng_cli_args *a)
{
    memset(a, 0, sizeof *a);
    a->pos = calloc((size_t)argc + 1, sizeof *a->pos);
    if (!a->pos) return keng_cli_nomem();
    int only_pos = 0;
    for (int i = 0; i < argc; i++) {
        char *w = argv[i];
        if (only_pos || w[0] != '-' || w[1] == '\0') {
            a->pos[a->npos++] = w;
            continue;
        }
        if (!strcmp(w, "--")) {
            only_pos = 1;
            continue;
        }
        if (!strcmp(w, "-h") || !strcmp(w, "--help")) {
            a->help = 1;
            continue;
        }
        if (w[1] != '-') {
            keng_cli_sayf("không có tùy chọn này (tùy chọn viết dạng --tên)",
                          "unknown option (options are spelled --name)", "%s", w);
            return KENG_CLI_USAGE;
        }
        /* The name is kept inside argv: "--name=value" is split by pointing past '='. */
        char *name = w + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const char *val = NULL;
        if (!eq && !strcmp(name, "json")) {
            c->json = 1;
            continue;
        }
        if (eq) {
            *eq = '\0';
            val = eq + 1;
        } else if (!in_list(bools, name, nlen)) {
            if (i + 1 >= argc) {
                keng_cli_sayf("thiếu giá trị", "needs a value", "--%s", name);
                return KENG_CLI_USAGE;
            }
            val = argv[++i];
        }
        int rc = 0;
        if (!strcmp(name, "token") && val) {
            rc = set_str(&c->flag_token, val);
        } else if (!strcmp(name, "token-file") && val) {
            if (keng_cli_token_file(c, val)) return KENG_CLI_FAIL;
        } else if (!strcmp(name, "url") && !url_is_field && val) {
            rc = set_str(&c->flag_url, val);
        } else {
            rc = push_opt(a, name, val);
        }
        if (rc) return keng_cli_nomem();
    }
    return 0;
}

void keng_cli_args_free(keng_cli_args *a)
{
    if (!a) return;
    free(a->opt);
    free(a->pos);
    memset(a, 0, sizeof *a);
}

int keng_cli_args_check(const keng_cli_args *a, const char *const *known, int max_pos)
{
    for (int i = 0; i < a->nopt; i++) {
        if (!in_list(known, a->opt[i].name, strlen(a->opt[i].name))) {
            keng_cli_sayf("không có tùy chọn này", "unknown option", "--%s", a->opt[i].name);
            return KENG_CLI_USAGE;
        }
    }
    if (a->npos > max_pos) {
        keng_cli_sayf("thừa tham số", "unexpected argument", "'%s'", a->pos[max_pos]);
        return KENG_CLI_USAGE;
    }
    return 0;
}

const char *keng_cli_args_get(const keng_cli_args *a, const char *name)
{
    const char *v = NULL;
    for (int i = 0; i < a->nopt; i++)
        if (!strcmp(a->opt[i].name, name)) v = a->opt[i].val;
    return v;
}

int keng_cli_args_has(const keng_cli_args *a, const char *name)
{
    for (int i = 0; i < a->nopt; i++)
        if (!strcmp(a->opt[i].name, name)) return 1;
    return 0;
}

/* ---- files ---- */

/* Why a file could not be read: the usual reasons in both languages, the rare ones as the C
 * library words them. */
static const char *errno_text(int e)
{
    switch (e) {
    case ENOENT:
        return "không có tệp này / no such file";
    case EACCES:
    case EPERM:
        return "không có quyền đọc / permission denied";
    case EISDIR:
        return "đây là thư mục / it is a folder";
    default:
        return strerror(e);
    }
}

int keng_cli_read_file(const char *path, size_t max, keng_buf *b)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return keng_cli_fail("không đọc được tệp", "cannot read the file", "%s: %s", path,
                             errno_text(errno));
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b->len + n > max)
            rc = -E2BIG;
        else
            rc = keng_buf_append(b, chunk, n);
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (rc == -E2BIG)
        return keng_cli_fail("tệp quá lớn", "the file is too large", "%s (> %zu MB)", path,
                             max >> 20);
    if (rc) return keng_cli_nomem();
    if (err)
        return keng_cli_fail("không đọc được tệp", "cannot read the file", "%s: %s", path,
                             errno_text(err));
    return 0;
}

cJSON *keng_cli_read_json(const char *path)
{
    keng_buf b;
    keng_buf_init(&b, KENG_CLI_MAX_FILE);
    if (keng_cli_read_file(path, KENG_CLI_MAX_FILE, &b)) {
        keng_buf_free(&b);
        return NULL;
    }
    const char *end = NULL;
    const char *s = b.data ? b.data : "";
    cJSON *j = cJSON_ParseWithLengthOpts(s, b.len, &end, 0);
    if (!j) {
        int line = 1;
        const char *stop = end ? end : s + b.len;
        for (const char *p = s; p < stop; p++)
            line += *p == '\n';
        keng_cli_fail("không phải JSON hợp lệ", "this is not valid JSON", "%s:%d", path, line);
    }
    keng_buf_free(&b);
    return j;
}

/* ---- output ---- */

void keng_cli_print_raw(const keng_cli_reply *r)
{
    if (!r->raw.len) return;
    fwrite(r->raw.data, 1, r->raw.len, stdout);
    if (r->raw.data[r->raw.len - 1] != '\n') putchar('\n');
}

const char *keng_cli_str(const cJSON *obj, const char *name)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, name));
    return s ? s : "";
}

double keng_cli_num(const cJSON *obj, const char *name, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static void num_text(double d, char *out, size_t len)
{
    if (d == floor(d) && fabs(d) < 1e15)
        snprintf(out, len, "%.0f", d);
    else
        snprintf(out, len, "%g", d);
}

const char *keng_cli_value_text(const cJSON *v, char *out, size_t len)
{
    if (!len) return out;
    out[0] = '\0';
    if (!v || cJSON_IsNull(v)) return out;
    if (cJSON_IsString(v)) {
        snprintf(out, len, "%s", v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        num_text(v->valuedouble, out, len);
    } else if (cJSON_IsBool(v)) {
        snprintf(out, len, "%s", cJSON_IsTrue(v) ? "có / yes" : "không / no");
    } else {
        int scalars = cJSON_IsArray(v);
        for (const cJSON *e = v->child; e && scalars; e = e->next)
            scalars = cJSON_IsString(e) || cJSON_IsNumber(e);
        if (scalars) {
            size_t n = 0;
            for (const cJSON *e = v->child; e && n + 1 < len; e = e->next) {
                char one[256];
                keng_cli_value_text(e, one, sizeof one);
                int w = snprintf(out + n, len - n, "%s%s", n ? ", " : "", one);
                if (w < 0) break;
                n += (size_t)w;
            }
        } else {
            char *s = cJSON_PrintUnformatted(v);
            if (s) snprintf(out, len, "%s", s);
            free(s);
        }
    }
    return out;
}

/* Code points of a UTF-8 string: continuation bytes take no column. */
static size_t width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

#define CELL_MAX_CP 48 /* longer cells are cut so one long address does not wreck the table */

static char *cell_dup(const char *s)
{
    if (!s) s = "";
    size_t cp = 0, i = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80 && ++cp > CELL_MAX_CP) break;
    }
    char *d = malloc(i + 4);
    if (!d) return NULL;
    memcpy(d, s, i);
    if (s[i])
        memcpy(d + i, "…", 4);
    else
        d[i] = '\0';
    for (char *p = d; *p; p++)
        if (*p == '\n' || *p == '\t' || *p == '\r') *p = ' ';
    return d;
}

void keng_cli_table_init(keng_cli_table *t, int ncol, const char *const *header)
{
    memset(t, 0, sizeof *t);
    t->ncol = ncol;
    keng_cli_table_row(t, header);
}

void keng_cli_table_row(keng_cli_table *t, const char *const *cells)
{
    if (t->nrow == t->cap) {
        int cap = t->cap ? t->cap * 2 : 16;
        char **n = realloc(t->cells, (size_t)cap * (size_t)t->ncol * sizeof *n);
        if (!n) return;
        t->cells = n;
        t->cap = cap;
    }
    for (int i = 0; i < t->ncol; i++)
        t->cells[t->nrow * t->ncol + i] = cell_dup(cells[i]);
    t->nrow++;
}

void keng_cli_table_print(keng_cli_table *t)
{
    size_t w[32] = {0};
    int ncol = t->ncol < 32 ? t->ncol : 32;
    for (int r = 0; r < t->nrow; r++)
        for (int i = 0; i < ncol; i++) {
            const char *s = t->cells[r * t->ncol + i];
            size_t n = s ? width(s) : 0;
            if (n > w[i]) w[i] = n;
        }
    for (int r = 0; r < t->nrow; r++) {
        for (int i = 0; i < ncol; i++) {
            const char *s = t->cells[r * t->ncol + i];
            if (!s) s = "";
            fputs(s, stdout);
            if (i + 1 < ncol)
                for (size_t k = width(s); k < w[i] + 2; k++)
                    putchar(' ');
        }
        putchar('\n');
    }
    for (int i = 0; i < t->nrow * t->ncol; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* Objects print as "parent.child" lines so that footage_request.from reads like a field. */
static void print_fields_prefixed(const cJSON *obj, const char *prefix, const char *const *skip)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        int hidden = !it->string;
        for (const char *const *s = skip; s && *s && !hidden; s++)
            hidden = !strcmp(*s, it->string);
        if (hidden || cJSON_IsNull(it)) continue;
        char key[256];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", it->string);
        if (cJSON_IsObject(it) && it->child) {
            print_fields_prefixed(it, key, NULL);
            continue;
        }
        char v[4096];
        printf("  %-18s %s\n", key, keng_cli_value_text(it, v, sizeof v));
    }
}

void keng_cli_print_fields(const cJSON *obj, const char *const *skip)
{
    print_fields_prefixed(obj, "", skip);
}
