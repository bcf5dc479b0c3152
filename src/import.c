#include "keng/import.h"

#include "keng/groups.h"
#include "keng/log.h"
#include "keng/norm.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#define IMPORT_MAX_FILE (16 * 1024 * 1024)
#define IMPORT_MAX_FILES 10000
#define CSV_MAX_ROWS 100000
#define CSV_MAX_COLS 16

/* What the cross-file checks need of a file, kept after its JSON tree is freed: a ward of
 * 100,000 households is read one file at a time, never all at once. */
typedef struct ifile {
    char name[256];
    char *gid, *parent;
    char **defs; /* member ids the file defines (objects) */
    int ndefs;
    char **refs; /* member ids it names by id */
    int nrefs;
    int bad;
} ifile;

/* A string → int map (open addressing, FNV-1a), for ids across files. Keys are borrowed. */
typedef struct strmap {
    const char **keys;
    int *vals;
    size_t cap, n;
} strmap;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static int strmap_init(strmap *m, size_t expect)
{
    m->cap = 64;
    while (m->cap < expect * 2) m->cap *= 2;
    m->n = 0;
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->vals = calloc(m->cap, sizeof *m->vals);
    return m->keys && m->vals ? 0 : -ENOMEM;
}

static void strmap_free(strmap *m)
{
    free(m->keys);
    free(m->vals);
}

/* The value of key, or -1. */
static int strmap_get(const strmap *m, const char *key)
{
    for (size_t i = fnv1a(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return -1;
        if (!strcmp(m->keys[i], key)) return m->vals[i];
    }
}

/* Adds key → val unless present; returns the value now stored. */
static int strmap_add(strmap *m, const char *key, int val)
{
    for (size_t i = fnv1a(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) {
            m->keys[i] = key;
            m->vals[i] = val;
            m->n++;
            return val;
        }
        if (!strcmp(m->keys[i], key)) return m->vals[i];
    }
}

static void ifile_clear(ifile *f)
{
    for (int i = 0; i < f->ndefs; i++) free(f->defs[i]);
    for (int i = 0; i < f->nrefs; i++) free(f->refs[i]);
    free(f->defs);
    free(f->refs);
    free(f->gid);
    free(f->parent);
}

void keng_import_report_free(keng_import_report *r)
{
    cJSON_Delete(r->errors);
    r->errors = NULL;
}

static int line_of(const char *text, const char *needle)
{
    const char *p = needle ? strstr(text, needle) : NULL;
    int line = 1;
    for (const char *q = text; p && q < p; q++) line += *q == '\n';
    return line;
}

/* Line of the object with "id": "ID" (how the file spells it), else 1. */
static int line_of_id(const char *text, const char *id)
{
    char pat[160];
    snprintf(pat, sizeof pat, "\"id\": \"%s\"", id ? id : "");
    int l = line_of(text, pat);
    if (l > 1 || !id) return l;
    snprintf(pat, sizeof pat, "\"id\":\"%s\"", id);
    l = line_of(text, pat);
    if (l > 1) return l;
    snprintf(pat, sizeof pat, "\"%s\"", id);
    return line_of(text, pat);
}

/* The line of the first byte that is not UTF-8, or 0 when all of text is. No sequence spans a
 * line break ('\n' is never a continuation byte), so checking line by line is exact. */
static int utf8_bad_line(const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    for (int line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (!keng_utf8_valid(p, (size_t)(stop - p))) return line;
        p = nl ? nl + 1 : end;
    }
    return 0;
}

/* ---- object keys of a JSON text, with their lines ---- */

/* Keys remembered per object for the duplicate check. More than any object we accept has
 * fields: an object with more is refused by validation anyway (unknown fields). */
#define JKEYS_PER_OBJECT 32

typedef struct jspan {
    const char *p; /* the key as spelled between its quotes (escapes not decoded) */
    size_t n;
} jspan;

typedef struct jlevel {
    int is_obj, want_key;
    size_t base, n; /* this object's remembered keys: keys[base .. base + n) */
} jlevel;

typedef struct jkeys {
    const char *find; /* in: a key of the top-level object to locate, or NULL */
    int find_line;    /* out: the line of its first occurrence, 0 when absent */
    char dup[72];     /* out: the first key given twice in one object, "" when none */
    int dup_line;     /* out: the line of its second occurrence */
} jkeys;

/* The value of a quoted key, decoded by cJSON (for keys written with escapes). */
static cJSON *key_decode(jspan k)
{
    return cJSON_ParseWithLength(k.p - 1, k.n + 2);
}

static int key_eq(jspan a, jspan b)
{
    if (!memchr(a.p, '\\', a.n) && !memchr(b.p, '\\', b.n))
        return a.n == b.n && !memcmp(a.p, b.p, a.n);
    cJSON *x = key_decode(a), *y = key_decode(b);
    int eq = cJSON_IsString(x) && cJSON_IsString(y) && !strcmp(x->valuestring, y->valuestring);
    cJSON_Delete(x);
    cJSON_Delete(y);
    return eq;
}

static int key_is(jspan a, const char *s)
{
    if (!memchr(a.p, '\\', a.n)) return a.n == strlen(s) && !memcmp(a.p, s, a.n);
    cJSON *x = key_decode(a);
    int eq = cJSON_IsString(x) && !strcmp(x->valuestring, s);
    cJSON_Delete(x);
    return eq;
}

/* One pass over a text that cJSON accepted: finds k->find among the keys of the top object and
 * the first key given twice in one object (cJSON keeps both and lookups see only the first, so
 * "members" twice silently drops a list). 0, or -ENOMEM. */
static int json_keys(const char *text, size_t len, jkeys *k)
{
    jlevel *lv = NULL;
    jspan *keys = NULL;
    size_t nlv = 0, caplv = 0, nkeys = 0, capkeys = 0;
    int line = 1, rc = 0;
    k->find_line = 0;
    k->dup[0] = '\0';
    k->dup_line = 0;
    for (const char *p = text, *end = text + len; p < end && !rc; p++) {
        char c = *p;
        if (c == '\n') {
            line++;
        } else if (c == '"') {
            const char *s = ++p;
            int kline = line;
            for (; p < end && *p != '"'; p++) {
                if (*p == '\\' && p + 1 < end) p++;
                else if (*p == '\n') line++;
            }
            jlevel *t = nlv ? &lv[nlv - 1] : NULL;
            if (!t || !t->is_obj || !t->want_key) continue; /* a value, not a key */
            jspan key = {s, (size_t)(p - s)};
            t->want_key = 0;
            if (nlv == 1 && k->find && !k->find_line && key_is(key, k->find)) k->find_line = kline;
            for (size_t i = t->base; i < t->base + t->n; i++) {
                if (key_eq(keys[i], key)) {
                    snprintf(k->dup, sizeof k->dup, "%.*s", (int)(key.n < 64 ? key.n : 64), key.p);
                    k->dup_line = kline;
                    goto out;
                }
            }
            if (t->n == JKEYS_PER_OBJECT) continue;
            if (nkeys == capkeys) {
                capkeys = capkeys ? capkeys * 2 : 64;
                jspan *nk = realloc(keys, capkeys * sizeof *nk);
                if (!nk) rc = -ENOMEM;
                else keys = nk;
            }
            if (!rc) {
                keys[nkeys++] = key;
                t->n++;
            }
        } else if (c == '{' || c == '[') {
            if (nlv == caplv) {
                caplv = caplv ? caplv * 2 : 16;
                jlevel *nl = realloc(lv, caplv * sizeof *nl);
                if (!nl) rc = -ENOMEM;
                else lv = nl;
            }
            if (!rc) lv[nlv++] = (jlevel){.is_obj = c == '{', .want_key = c == '{', .base = nkeys};
        } else if (c == '}' || c == ']') {
            if (nlv) nkeys = lv[--nlv].base; /* a closed object's keys stack up no more */
        } else if (c == ',') {
            if (nlv && lv[nlv - 1].is_obj) lv[nlv - 1].want_key = 1;
        }
    }
out:
    free(lv);
    free(keys);
    return rc;
}

/* The line of the field a validation error names ("leader", "channels[0].url"): a key of the
 * top object, else the first key of that name anywhere, else the first mention; else 1. */
static int line_of_field(const char *text, size_t len, const char *field)
{
    if (!field || !*field) return 1;
    const char *dot = strrchr(field, '.');
    const char *last = dot ? dot + 1 : field;
    char key[96], pat[100];
    snprintf(key, sizeof key, "%.*s", (int)strcspn(last, "["), last);
    if (!strpbrk(field, ".[")) {
        jkeys k = {.find = key};
        if (json_keys(text, len, &k) == 0 && k.find_line) return k.find_line;
    }
    snprintf(pat, sizeof pat, "\"%s\"", key);
    for (const char *p = strstr(text, pat); p; p = strstr(p + 1, pat)) {
        const char *q = p + strlen(pat);
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n') q++;
        if (*q == ':') return line_of(text, p);
    }
    return line_of(text, field);
}

static void refuse(keng_import_report *r, ifile *f, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void refuse(keng_import_report *r, ifile *f, int line, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    f->bad = 1;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "file", f->name);
    cJSON_AddNumberToObject(e, "line", line);
    cJSON_AddStringToObject(e, "reason", reason);
    cJSON_AddItemToArray(r->errors, e);
    keng_warn("groups: %s:%d: %s; the file was not applied", f->name, line, reason);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || st.st_size < 0 || st.st_size > IMPORT_MAX_FILE) {
        fclose(fp);
        return NULL;
    }
    /* One byte more than the size: a file that grew meanwhile is caught as too large. */
    size_t want = (size_t)st.st_size + 1;
    char *buf = malloc(want + 1);
    size_t n = buf ? fread(buf, 1, want, fp) : 0;
    if (n >= want) n = IMPORT_MAX_FILE + 1;
    fclose(fp);
    if (!buf || n > IMPORT_MAX_FILE) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The line where needle first appears in the file (for errors found after parsing). */
static int file_line(const char *dir, const ifile *f, const char *needle, int by_id)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, f->name);
    char *text = read_file(path, &len);
    if (!text) return 1;
    int l = by_id ? line_of_id(text, needle) : line_of(text, needle);
    free(text);
    return l;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const ifile *)a)->name, ((const ifile *)b)->name);
}

static const char *member_id(const cJSON *m)
{
    return cJSON_IsString(m) ? m->valuestring
                             : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
}

/* Reads, parses and checks one file on its own. *out gets the tree when keep != 0. */
static void check_file(keng_import_report *r, ifile *f, const char *dir, cJSON **out)
{
    char path[4096];
    size_t len = 0;
    *out = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, f->name);
    char *text = read_file(path, &len);
    if (!text) {
        refuse(r, f, 1, "cannot read the file (missing, unreadable or larger than 16 MB)");
        return;
    }
    cJSON *g = NULL;
    int bad_line = utf8_bad_line(text, len);
    if (bad_line) {
        refuse(r, f, bad_line, "the file is not valid UTF-8 (this line holds a byte that is not "
                               "UTF-8); save the file as UTF-8");
        goto out;
    }
    const char *end = NULL;
    /* len + 1: cJSON wants to see the terminating NUL when the end must be clean. */
    g = memchr(text, 0, len) ? NULL : cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    if (!g) {
        int line = 1;
        for (const char *q = text; end && q < end; q++) line += *q == '\n';
        refuse(r, f, line, "not valid JSON here");
        goto out;
    }
    jkeys keys = {.find = NULL};
    if (json_keys(text, len, &keys)) {
        refuse(r, f, 1, "out of memory");
        goto out;
    }
    if (keys.dup[0]) {
        refuse(r, f, keys.dup_line,
               "\"%s\" is given twice in one object (JSON keeps only one of the two); give it once",
               keys.dup);
        goto out;
    }
    keng_verr e;
    if (keng_group_validate(g, &e)) {
        refuse(r, f, line_of_field(text, len, e.field), "%s", e.message);
        goto out;
    }
    const char *gid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "id"));
    char expect[300];
    snprintf(expect, sizeof expect, "%s.json", gid);
    if (strcmp(expect, f->name) != 0) {
        refuse(r, f, line_of_id(text, gid), "the group id %s does not match the file name", gid);
        goto out;
    }
    cJSON *ms = cJSON_GetObjectItemCaseSensitive(g, "members");
    int n = ms ? cJSON_GetArraySize(ms) : 0, i = 0;
    f->defs = calloc((size_t)n + 1, sizeof *f->defs);
    f->refs = calloc((size_t)n + 1, sizeof *f->refs);
    strmap seen;
    if (!f->defs || !f->refs || strmap_init(&seen, (size_t)n)) {
        refuse(r, f, 1, "out of memory");
        goto out;
    }
    for (cJSON *m = ms ? ms->child : NULL; m; m = m->next, i++) {
        if (cJSON_IsString(m)) {
            if (!keng_groups_valid_id(m->valuestring)) {
                refuse(r, f, line_of(text, m->valuestring), "members[%d]: \"%.64s\" is not an id",
                       i, m->valuestring);
                break;
            }
        } else if (keng_member_validate(m, 0, &e)) {
            refuse(r, f, line_of_id(text, member_id(m)), "members[%d] (%s): %s", i,
                   member_id(m) ? member_id(m) : "?", e.message);
            break;
        }
        if (strmap_add(&seen, member_id(m), i) != i) {
            refuse(r, f, line_of_id(text, member_id(m)), "member %s is listed twice", member_id(m));
            break;
        }
        if (cJSON_IsString(m))
            f->refs[f->nrefs++] = strdup(m->valuestring);
        else
            f->defs[f->ndefs++] = strdup(member_id(m));
    }
    strmap_free(&seen);
    if (f->bad) goto out;
    f->gid = strdup(gid);
    const char *parent = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "parent"));
    if (parent) f->parent = strdup(parent);
out:
    free(text);
    if (f->bad)
        cJSON_Delete(g);
    else
        *out = g;
}

/* Cross-file rules over the good files; returns 1 when it refused a file (run it again, as
 * the refused file's members and group are gone for the others). */
static int check_links(keng_store *st, keng_import_report *r, ifile *files, int n, const char *dir)
{
    strmap defs, groups;
    size_t ndefs = 0;
    for (int i = 0; i < n; i++) ndefs += (size_t)files[i].ndefs;
    if (strmap_init(&defs, ndefs) || strmap_init(&groups, (size_t)n)) {
        strmap_free(&defs);
        return 0;
    }
    int refused = 0;
    for (int i = 0; i < n && !refused; i++) {
        ifile *f = &files[i];
        if (f->bad) continue;
        strmap_add(&groups, f->gid, i);
        for (int k = 0; k < f->ndefs; k++) {
            int owner = strmap_add(&defs, f->defs[k], i);
            if (owner != i) {
                refuse(r, f, file_line(dir, f, f->defs[k], 1), "member %s is already defined in %s",
                       f->defs[k], files[owner].name);
                refused = 1;
                break;
            }
        }
    }
    for (int i = 0; i < n && !refused; i++) {
        ifile *f = &files[i];
        if (f->bad) continue;
        for (int k = 0; k < f->nrefs && !refused; k++) {
            if (strmap_get(&defs, f->refs[k]) < 0 && !keng_member_exists(st, f->refs[k])) {
                refuse(r, f, file_line(dir, f, f->refs[k], 0),
                       "member %s is not defined in any file (define it once, as an object)",
                       f->refs[k]);
                refused = 1;
            }
        }
        if (refused || !f->parent) continue;
        if (strmap_get(&groups, f->parent) < 0 && !keng_group_exists(st, f->parent)) {
            refuse(r, f, file_line(dir, f, "\"parent\"", 0), "the parent group %s does not exist",
                   f->parent);
            refused = 1;
            continue;
        }
        /* Walk up through the files first, then the database. */
        const char *cur = f->parent;
        for (int hops = 0; cur && hops <= n + 64; hops++) {
            if (!strcmp(cur, f->gid)) {
                refuse(r, f, file_line(dir, f, "\"parent\"", 0),
                       "the parent chain of %s comes back to itself (a cycle)", f->gid);
                refused = 1;
                break;
            }
            int pf = strmap_get(&groups, cur);
            if (pf >= 0) {
                cur = files[pf].parent;
            } else {
                if (keng_group_parent_cycle(st, f->gid, cur)) {
                    refuse(r, f, file_line(dir, f, "\"parent\"", 0),
                           "the parent chain of %s comes back to itself (a cycle)", f->gid);
                    refused = 1;
                }
                break;
            }
        }
    }
    strmap_free(&defs);
    strmap_free(&groups);
    return refused;
}

/* The group and the members its file defines; memberships come after every file's upserts
 * (apply_memberships), so that they see the sources this import leaves. */
static int apply_group(keng_store *st, const ifile *f, const cJSON *g, keng_import_report *r)
{
    char source[300];
    snprintf(source, sizeof source, "file:%s", f->name);
    cJSON *ms = cJSON_GetObjectItemCaseSensitive(g, "members");
    int rc = 0;
    for (const cJSON *m = ms ? ms->child : NULL; m && !rc; m = m->next) {
        if (cJSON_IsObject(m)) {
            rc = keng_member_upsert(st, m, source);
            r->members++;
        }
    }
    if (!rc) rc = keng_group_upsert(st, g, source);
    if (!rc) r->groups++;
    return rc;
}

/* The rule of keng/import.h: the file's list replaces the group's file members only. */
static int apply_memberships(keng_store *st, const ifile *f)
{
    size_t n = (size_t)f->ndefs + (size_t)f->nrefs;
    const char **ids = malloc((n + 1) * sizeof *ids);
    if (!ids) return -ENOMEM;
    for (int i = 0; i < f->ndefs; i++) ids[i] = f->defs[i];
    for (int i = 0; i < f->nrefs; i++) ids[f->ndefs + i] = f->refs[i];
    int rc = keng_group_set_file_members(st, f->gid, ids, n);
    free(ids);
    return rc;
}

int keng_import_dir(keng_store *st, const char *dir, keng_import_report *r)
{
    memset(r, 0, sizeof *r);
    r->errors = cJSON_CreateArray();
    DIR *d = opendir(dir);
    if (!d) return -errno;
    ifile *files = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0 || de->d_name[0] == '.') continue;
        if (l >= sizeof files[0].name || n == IMPORT_MAX_FILES) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            ifile *nf = realloc(files, (size_t)cap * sizeof *nf);
            if (!nf) break;
            files = nf;
        }
        memset(&files[n], 0, sizeof files[n]);
        memcpy(files[n].name, de->d_name, l + 1);
        n++;
    }
    closedir(d);
    if (n) qsort(files, (size_t)n, sizeof *files, cmp_name);
    for (int i = 0; i < n; i++) {
        cJSON *g;
        check_file(r, &files[i], dir, &g);
        cJSON_Delete(g);
    }
    while (check_links(st, r, files, n, dir)) {
    }
    /* Apply: read each good file again, one at a time, in one transaction. */
    int rc = keng_store_begin(st);
    for (int i = 0; i < n && !rc; i++) {
        if (files[i].bad) continue;
        cJSON *g = NULL;
        ifile again;
        memset(&again, 0, sizeof again);
        memcpy(again.name, files[i].name, sizeof again.name);
        keng_import_report scratch = {.errors = cJSON_CreateArray()};
        check_file(&scratch, &again, dir, &g);
        keng_import_report_free(&scratch);
        if (g) {
            rc = apply_group(st, &again, g, r);
            /* keep the member lists of what was applied, for apply_memberships */
            ifile applied = again;
            again = files[i];
            files[i] = applied;
        } else {
            files[i].bad = 1; /* changed on disk while we read: applied next time */
        }
        cJSON_Delete(g);
        ifile_clear(&again);
    }
    for (int i = 0; i < n && !rc; i++)
        if (!files[i].bad) rc = apply_memberships(st, &files[i]);
    if (!rc) rc = keng_store_commit(st);
    else keng_store_rollback(st);
    for (int i = 0; i < n; i++) {
        if (files[i].bad) r->files_bad++;
        else r->files_ok++;
        ifile_clear(&files[i]);
    }
    free(files);
    keng_info("groups: imported %d group%s and %d member%s from %s; %d file%s refused", r->groups,
              r->groups == 1 ? "" : "s", r->members, r->members == 1 ? "" : "s", dir, r->files_bad,
              r->files_bad == 1 ? "" : "s");
    return rc;
}

/* ---- CSV ---- */

/* Parses one RFC 4180 record starting at *p, fields separated by sep; fields are NUL-terminated
 * copies in store. Returns the number of fields, 0 at the end, -1 on a malformed record. */
static int csv_record(const char **p, const char *end, char sep, char *fields[CSV_MAX_COLS],
                      char *store, size_t cap, int *lines)
{
    const char *s = *p;
    if (s >= end) return 0;
    size_t o = 0;
    int nf = 0;
    for (;;) {
        if (nf == CSV_MAX_COLS) return -1;
        fields[nf++] = store + o;
        if (s < end && *s == '"') {
            s++;
            for (;;) {
                if (s >= end) return -1;
                if (*s == '"') {
                    if (s + 1 < end && s[1] == '"') {
                        s++;
                    } else {
                        s++;
                        break;
                    }
                }
                if (*s == '\n') (*lines)++;
                if (o + 1 >= cap) return -1;
                store[o++] = *s++;
            }
        } else {
            while (s < end && *s != sep && *s != '\n' && *s != '\r') {
                if (*s == '"') return -1;
                if (o + 1 >= cap) return -1;
                store[o++] = *s++;
            }
        }
        store[o++] = '\0';
        if (s >= end) break;
        if (*s == sep) {
            s++;
            continue;
        }
        if (*s == '\r') s++;
        if (s < end && *s == '\n') s++;
        else if (s < end) return -1;
        break;
    }
    (*lines)++;
    *p = s;
    return nf;
}

static const char *const csv_cols[] = {"id",  "name", "address", "phone", "lang",
                                       "camera", "lat", "lon", "zalo_user_id",
                                       "telegram_chat_id", "email"};
#define CSV_NCOLS (sizeof csv_cols / sizeof csv_cols[0])

/* Yes/no as spreadsheets hold it, in any case and without surrounding spaces: true/false,
 * 1/0, yes/no, có/không (also typed without accents), x for a ticked box. 1, 0, or -1. */
static int csv_bool(const char *v)
{
    static const char *const yes[] = {"true", "1", "yes", "có", "co", "x"};
    static const char *const no[] = {"false", "0", "no", "không", "khong"};
    char b[16];
    size_t n = 0;
    while (*v == ' ') v++;
    for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
        if (n + 2 >= sizeof b) return -1;
        unsigned char c = *s;
        if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c - 'A' + 'a');
        } else if (c == 0xC3 && (s[1] == 0x93 || s[1] == 0x94)) { /* Ó Ô → ó ô */
            b[n++] = (char)c;
            c = (unsigned char)(*++s + 0x20);
        }
        b[n++] = (char)c;
    }
    while (n && b[n - 1] == ' ') n--;
    b[n] = '\0';
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (!strcmp(b, yes[i])) return 1;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (!strcmp(b, no[i])) return 0;
    return -1;
}

/* A decimal number as spreadsheets write it: optional sign, digits with one '.' or ',' (the
 * Vietnamese decimal comma), optional exponent, surrounding spaces. Not the hex, inf and nan
 * that strtod also takes. 0 or -1. */
static int csv_number(const char *v, double *out)
{
    char b[64];
    size_t o = 0;
    int digits = 0, point = 0;
    while (*v == ' ') v++;
    if (strlen(v) >= sizeof b) return -1;
    if (*v == '+' || *v == '-') b[o++] = *v++;
    for (; *v; v++) {
        if (*v >= '0' && *v <= '9') {
            digits++;
            b[o++] = *v;
        } else if ((*v == '.' || *v == ',') && !point) {
            point = 1;
            b[o++] = '.';
        } else {
            break;
        }
    }
    if (!digits) return -1;
    if (*v == 'e' || *v == 'E') {
        b[o++] = *v++;
        if (*v == '+' || *v == '-') b[o++] = *v++;
        if (!(*v >= '0' && *v <= '9')) return -1;
        while (*v >= '0' && *v <= '9') b[o++] = *v++;
    }
    while (*v == ' ') v++;
    if (*v) return -1;
    b[o] = '\0';
    char *end;
    *out = strtod(b, &end);
    return *end ? -1 : 0;
}

static cJSON *csv_member(char *fields[], int nf, const int map[], char *err, size_t errlen,
                         int line)
{
    cJSON *m = cJSON_CreateObject();
    cJSON *contacts = cJSON_CreateArray();
    for (int i = 0; i < nf; i++) {
        if (map[i] < 0 || fields[i][0] == '\0') continue;
        const char *col = csv_cols[map[i]], *v = fields[i];
        if (!strcmp(col, "camera")) {
            int yes = csv_bool(v);
            if (yes < 0) {
                snprintf(err, errlen,
                         "line %d: camera must be yes or no (true/false, 1/0, có/không), "
                         "not \"%.40s\"", line, v);
                goto fail;
            }
            cJSON_AddBoolToObject(m, "camera", yes);
        } else if (!strcmp(col, "lat") || !strcmp(col, "lon")) {
            double d;
            if (csv_number(v, &d)) {
                snprintf(err, errlen, "line %d: %s must be a decimal number (e.g. 16.05), not "
                                      "\"%.40s\"", line, col, v);
                goto fail;
            }
            cJSON_AddNumberToObject(m, col, d);
        } else if (!strcmp(col, "zalo_user_id")) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "type", "zalo_oa");
            cJSON_AddStringToObject(c, "user_id", v);
            cJSON_AddItemToArray(contacts, c);
        } else if (!strcmp(col, "telegram_chat_id")) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "type", "telegram");
            cJSON_AddStringToObject(c, "chat_id", v);
            cJSON_AddItemToArray(contacts, c);
        } else if (!strcmp(col, "email")) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "type", "email");
            cJSON_AddStringToObject(c, "address", v);
            cJSON_AddItemToArray(contacts, c);
        } else {
            cJSON_AddStringToObject(m, col, v);
        }
    }
    cJSON_AddItemToObject(m, "contacts", contacts);
    keng_verr e;
    if (keng_member_validate(m, 0, &e)) {
        snprintf(err, errlen, "line %d: %s", line, e.message);
        cJSON_Delete(m);
        return NULL;
    }
    return m;
fail:
    cJSON_Delete(m);
    cJSON_Delete(contacts);
    return NULL;
}

/* The separator: ',' unless the header line has none but has ';' (Excel in a Vietnamese
 * locale, where ',' is the decimal point, saves "CSV" with semicolons). */
static char csv_separator(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    return !memchr(p, ',', n) && memchr(p, ';', n) ? ';' : ',';
}

/* Header: each column known and named once, id and name among them. 0 or -EINVAL. */
static int csv_header(char *fields[], int nf, int map[], char *err, size_t errlen)
{
    int seen[CSV_NCOLS] = {0};
    for (int i = 0; i < nf; i++) {
        map[i] = -1;
        for (size_t k = 0; k < CSV_NCOLS; k++)
            if (!strcmp(fields[i], csv_cols[k])) map[i] = (int)k;
        if (map[i] < 0) {
            snprintf(err, errlen, "line 1: unknown column \"%.40s\" (known: id, name, address, "
                                  "phone, lang, camera, lat, lon, zalo_user_id, telegram_chat_id, "
                                  "email)", fields[i]);
            return -EINVAL;
        }
        if (seen[map[i]]++) {
            snprintf(err, errlen, "line 1: the column %s appears twice; keep one", fields[i]);
            return -EINVAL;
        }
    }
    if (!seen[0] || !seen[1]) {
        snprintf(err, errlen, "line 1: the header needs at least the columns id and name");
        return -EINVAL;
    }
    return 0;
}

/* Rows go to the store as they are read, inside one transaction and a savepoint: no tree of
 * every row (100,000 rows held ~120 MB that way), and a bad row undoes only this import, not
 * a caller's enclosing transaction. Each row costs O(1) besides its upsert. */
int keng_import_csv(keng_store *st, const char *group_id, const char *csv, size_t len,
                    int *imported, char *err, size_t errlen)
{
    *imported = 0;
    if (!keng_group_exists(st, group_id)) {
        snprintf(err, errlen, "no such group: %s", group_id);
        return -ENOENT;
    }
    int bad_line = utf8_bad_line(csv, len);
    if (bad_line) {
        snprintf(err, errlen, "line %d: the file is not valid UTF-8 (save it as CSV UTF-8)",
                 bad_line);
        return -EINVAL;
    }
    const char *p = csv, *end = csv + len;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3; /* the BOM spreadsheets write */
    char sep = csv_separator(p, end);
    /* At most one row per line: sizes the id set once. */
    size_t nlines = 1;
    for (const char *q = p; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) nlines++;
    if (nlines > CSV_MAX_ROWS + 2) nlines = CSV_MAX_ROWS + 2;
    /* The ids seen, copied end to end into idbuf (no row holds more id than it has bytes). */
    size_t cap = len + CSV_MAX_COLS + 1, idlen = 0;
    char *store = malloc(cap), *idbuf = malloc(cap);
    strmap ids = {0};
    char *fields[CSV_MAX_COLS];
    int lines = 0, map[CSV_MAX_COLS], nrows = 0, rc = 0, ncols = 0;
    if (!store || !idbuf || strmap_init(&ids, nlines)) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    ncols = csv_record(&p, end, sep, fields, store, cap, &lines);
    if (ncols <= 0) {
        snprintf(err, errlen, "line 1: the header row is missing or malformed");
        rc = -EINVAL;
        goto out;
    }
    if ((rc = csv_header(fields, ncols, map, err, errlen))) goto out;
    if ((rc = keng_store_begin(st))) {
        snprintf(err, errlen, "the households could not be stored");
        goto out;
    }
    if ((rc = keng_store_exec(st, "SAVEPOINT keng_import_csv"))) {
        keng_store_rollback(st);
        snprintf(err, errlen, "the households could not be stored");
        goto out;
    }
    while (!rc) {
        int line = lines + 1;
        int nf = csv_record(&p, end, sep, fields, store, cap, &lines);
        if (nf == 0) break;
        if (nf < 0) {
            snprintf(err, errlen, "line %d: malformed CSV (check the quotes)", line);
            rc = -EINVAL;
            break;
        }
        if (nf == 1 && fields[0][0] == '\0') continue; /* blank line */
        if (nf != ncols) {
            snprintf(err, errlen, "line %d: %d fields, but the header has %d", line, nf, ncols);
            rc = -EINVAL;
            break;
        }
        if (nrows >= CSV_MAX_ROWS) {
            snprintf(err, errlen, "line %d: more than %d rows", line, CSV_MAX_ROWS);
            rc = -EINVAL;
            break;
        }
        cJSON *m = csv_member(fields, nf, map, err, errlen, line);
        if (!m) {
            rc = -EINVAL;
            break;
        }
        const char *id = member_id(m);
        size_t n = strlen(id) + 1;
        if (idlen + n > cap) { /* cannot happen (see idbuf); refuse rather than overrun */
            snprintf(err, errlen, "line %d: malformed CSV", line);
            rc = -EINVAL;
        } else {
            memcpy(idbuf + idlen, id, n);
            int first = strmap_add(&ids, idbuf + idlen, line);
            idlen += n;
            if (first != line) {
                snprintf(err, errlen, "line %d: id %s appears twice (first on line %d)", line,
                         id, first);
                rc = -EINVAL;
            }
        }
        if (!rc) rc = keng_member_upsert(st, m, "csv");
        if (!rc) rc = keng_group_add_member(st, group_id, id);
        if (rc && rc != -EINVAL) snprintf(err, errlen, "the households could not be stored");
        cJSON_Delete(m);
        if (!rc) nrows++;
    }
    if (rc == -EINVAL) {
        /* A bad row: undo this import's rows; the enclosing transaction (ours or the caller's)
         * goes on, empty of them. */
        if (keng_store_exec(st, "ROLLBACK TO keng_import_csv") ||
            keng_store_exec(st, "RELEASE keng_import_csv")) {
            keng_store_rollback(st);
        } else {
            int crc = keng_store_commit(st);
            (void)crc; /* nothing of ours to commit; a failure rolled back by itself */
        }
    } else if (rc) {
        keng_store_rollback(st);
    } else if ((rc = keng_store_exec(st, "RELEASE keng_import_csv")) ||
               (rc = keng_store_commit(st))) {
        keng_store_rollback(st);
        snprintf(err, errlen, "the households could not be stored");
    } else {
        *imported = nrows;
    }
out:
    free(store);
    free(idbuf);
    strmap_free(&ids);
    return rc;
}
