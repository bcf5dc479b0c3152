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
    if (!keng_utf8_valid(text, len)) {
        refuse(r, f, 1, "the file is not valid UTF-8");
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
    keng_verr e;
    if (keng_group_validate(g, &e)) {
        refuse(r, f, line_of(text, e.field[0] ? e.field : NULL), "%s", e.message);
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
    if (!rc) {
        rc = keng_group_set_members(st, f->gid, ms);
        r->groups++;
    }
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
        if (g) rc = apply_group(st, &files[i], g, r);
        else files[i].bad = 1; /* changed on disk while we read: applied next time */
        cJSON_Delete(g);
        ifile_clear(&again);
    }
    if (!rc) rc = keng_store_commit(st);
    else keng_store_rollback(st);
    for (int i = 0; i < n; i++) {
        if (files[i].bad) r->files_bad++;
        else r->files_ok++;
        ifile_clear(&files[i]);
    }
    free(files);
    keng_info("groups: imported %d groups and %d members from %s (%d files refused)", r->groups,
              r->members, dir, r->files_bad);
    return rc;
}

/* ---- CSV ---- */

/* Parses one RFC 4180 record starting at *p; fields are NUL-terminated copies in out.
 * Returns the number of fields, 0 at the end, -1 on a malformed record. */
static int csv_record(const char **p, const char *end, char *fields[CSV_MAX_COLS], char *store,
                      size_t cap, int *lines)
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
            while (s < end && *s != ',' && *s != '\n' && *s != '\r') {
                if (*s == '"') return -1;
                if (o + 1 >= cap) return -1;
                store[o++] = *s++;
            }
        }
        store[o++] = '\0';
        if (s >= end) break;
        if (*s == ',') {
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

static cJSON *csv_member(char *fields[], int nf, const int map[], char *err, size_t errlen,
                         int line)
{
    cJSON *m = cJSON_CreateObject();
    cJSON *contacts = cJSON_CreateArray();
    for (int i = 0; i < nf; i++) {
        if (map[i] < 0 || fields[i][0] == '\0') continue;
        const char *col = csv_cols[map[i]], *v = fields[i];
        if (!strcmp(col, "camera")) {
            int yes = !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "có") || !strcmp(v, "x");
            int no = !strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "không");
            if (!yes && !no) {
                snprintf(err, errlen, "line %d: camera must be true or false, not \"%.40s\"", line, v);
                goto fail;
            }
            cJSON_AddBoolToObject(m, "camera", yes);
        } else if (!strcmp(col, "lat") || !strcmp(col, "lon")) {
            char *end;
            double d = strtod(v, &end);
            if (*end) {
                snprintf(err, errlen, "line %d: %s must be a number, not \"%.40s\"", line, col, v);
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

int keng_import_csv(keng_store *st, const char *group_id, const char *csv, size_t len,
                    int *imported, char *err, size_t errlen)
{
    *imported = 0;
    if (!keng_group_exists(st, group_id)) {
        snprintf(err, errlen, "no such group: %s", group_id);
        return -ENOENT;
    }
    if (!keng_utf8_valid(csv, len)) {
        snprintf(err, errlen, "line 1: the file is not valid UTF-8 (save it as CSV UTF-8)");
        return -EINVAL;
    }
    const char *p = csv, *end = csv + len;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3; /* the BOM spreadsheets write */
    char *store = malloc(len + CSV_MAX_COLS + 1);
    if (!store) return -ENOMEM;
    char *fields[CSV_MAX_COLS];
    int lines = 0, map[CSV_MAX_COLS];
    int nf = csv_record(&p, end, fields, store, len + CSV_MAX_COLS + 1, &lines);
    int rc = 0;
    int have_id = 0, have_name = 0;
    if (nf <= 0) {
        snprintf(err, errlen, "line 1: the header row is missing or malformed");
        rc = -EINVAL;
    }
    for (int i = 0; i < nf && !rc; i++) {
        map[i] = -1;
        for (size_t k = 0; k < CSV_NCOLS; k++)
            if (!strcmp(fields[i], csv_cols[k])) map[i] = (int)k;
        if (map[i] < 0) {
            snprintf(err, errlen, "line 1: unknown column \"%.40s\" (known: id, name, address, "
                                  "phone, lang, camera, lat, lon, zalo_user_id, telegram_chat_id, "
                                  "email)", fields[i]);
            rc = -EINVAL;
        }
        have_id |= map[i] == 0;
        have_name |= map[i] == 1;
    }
    if (!rc && (!have_id || !have_name)) {
        snprintf(err, errlen, "line 1: the header needs at least the columns id and name");
        rc = -EINVAL;
    }
    int ncols = nf;
    cJSON *members = cJSON_CreateArray();
    while (!rc) {
        int line = lines + 1;
        nf = csv_record(&p, end, fields, store, len + CSV_MAX_COLS + 1, &lines);
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
        if (cJSON_GetArraySize(members) >= CSV_MAX_ROWS) {
            snprintf(err, errlen, "line %d: more than %d rows", line, CSV_MAX_ROWS);
            rc = -EINVAL;
            break;
        }
        cJSON *m = csv_member(fields, nf, map, err, errlen, line);
        if (!m) {
            rc = -EINVAL;
            break;
        }
        for (const cJSON *o = members->child; o; o = o->next) {
            if (!strcmp(member_id(o), member_id(m))) {
                snprintf(err, errlen, "line %d: id %s appears twice", line, member_id(m));
                rc = -EINVAL;
            }
        }
        cJSON_AddItemToArray(members, m);
    }
    free(store);
    if (!rc) rc = keng_store_begin(st);
    for (const cJSON *m = members->child; m && !rc; m = m->next) {
        rc = keng_member_upsert(st, m, "csv");
        if (!rc) rc = keng_group_add_member(st, group_id, member_id(m));
        if (!rc) (*imported)++;
    }
    if (!rc) {
        rc = keng_store_commit(st);
    } else if (rc != -EINVAL) {
        keng_store_rollback(st);
        snprintf(err, errlen, "the households could not be stored");
    }
    cJSON_Delete(members);
    return rc;
}
