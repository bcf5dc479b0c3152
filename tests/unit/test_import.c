/* Tests for import: the groups/ directory (the example ward, idempotence, and each way a file is
 * refused whole — bad JSON, bad fields, unknown or duplicate members, duplicate keys, a leader
 * not listed, parent cycles, bad UTF-8 — with file, line and reason while the good files still
 * apply), what a re-import does to memberships that the API or a CSV added (keng/import.h), and
 * the CSV import of households into one group (BOM, CRLF, ';', quoting, spreadsheet yes/no and
 * decimals, all or nothing with the line of the first bad row, 50,000 rows).
 * Each test writes its files into its own temp dir. */
#include "test.h"

#include "keng/groups.h"
#include "keng/import.h"
#include "keng/log.h"
#include "keng/store.h"

#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct im_env {
    char dir[64];
    char groups[96];
    char db[96];
    keng_store *st;
} im_env;

static void quiet(void)
{
    keng_log_set_level((enum keng_log_level)(KENG_LOG_ERROR + 1));
}

static void env_init(im_env *e)
{
    memset(e, 0, sizeof *e);
    quiet(); /* refusals are logged as warnings; the tests read them from the report */
    snprintf(e->dir, sizeof e->dir, "/tmp/keng-import-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(e->dir));
    snprintf(e->groups, sizeof e->groups, "%s/groups", e->dir);
    ASSERT_EQ(mkdir(e->groups, 0755), 0);
    snprintf(e->db, sizeof e->db, "%s/keng.db", e->dir);
    ASSERT_EQ(keng_store_open(e->db, &e->st), 0);
}

static void env_done(im_env *e)
{
    keng_store_close(e->st);
    e->st = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    ASSERT_EQ(system(cmd), 0);
}

/* Writes groups/NAME with text (replacing it). */
static void put(im_env *e, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", e->groups, name);
    FILE *f = fopen(path, "wb");
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(fwrite(text, 1, strlen(text), f), strlen(text));
    ASSERT_EQ(fclose(f), 0);
}

static void drop(im_env *e, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", e->groups, name);
    ASSERT_EQ(unlink(path), 0);
}

static int64_t q_int(keng_store *st, const char *sql)
{
    sqlite3 *db = keng_store_db(st);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        TEST_FAIL("prepare %s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(s) != SQLITE_ROW) TEST_FAIL("step %s: %s", sql, sqlite3_errmsg(db));
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* The first column of the first row, malloc'd ("" for NULL). */
static char *q_str(keng_store *st, const char *sql)
{
    sqlite3 *db = keng_store_db(st);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        TEST_FAIL("prepare %s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(s) != SQLITE_ROW) TEST_FAIL("step %s: %s", sql, sqlite3_errmsg(db));
    const unsigned char *t = sqlite3_column_text(s, 0);
    char *out = strdup(t ? (const char *)t : "");
    sqlite3_finalize(s);
    ASSERT_NOT_NULL(out);
    return out;
}

static int64_t n_groups(keng_store *st)
{
    return q_int(st, "SELECT count(*) FROM groups");
}

static int64_t n_members(keng_store *st)
{
    return q_int(st, "SELECT count(*) FROM members");
}

static int64_t n_memberships(keng_store *st)
{
    return q_int(st, "SELECT count(*) FROM memberships");
}

static int in_group(keng_store *st, const char *group, const char *member)
{
    sqlite3_stmt *s = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(keng_store_db(st),
                                 "SELECT count(*) FROM memberships WHERE group_id = ?1 AND "
                                 "member_id = ?2",
                                 -1, &s, NULL),
              SQLITE_OK);
    sqlite3_bind_text(s, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, member, -1, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* Everything the import writes, as one JSON text, except updated_at (a time stamp). */
static char *snapshot(keng_store *st)
{
    return q_str(
        st, "SELECT json_array("
            " (SELECT json_group_array(json_array(id, name, kind, label, parent, leader, relay,"
            "   relay_timeout, channels, source, created_at)) FROM (SELECT * FROM groups ORDER BY id)),"
            " (SELECT json_group_array(json_array(id, name, address, phone, lang, camera, lat, lon,"
            "   contacts, source, created_at)) FROM (SELECT * FROM members ORDER BY id)),"
            " (SELECT json_group_array(group_id || '/' || member_id) FROM"
            "   (SELECT * FROM memberships ORDER BY group_id, member_id)))");
}

static void import_ok(im_env *e, keng_import_report *r)
{
    ASSERT_EQ(keng_import_dir(e->st, e->groups, r), 0);
    ASSERT_NOT_NULL(r->errors);
    ASSERT_EQ(cJSON_GetArraySize(r->errors), r->files_bad); /* one reason per refused file */
}

/* The report's error for file, or a failure when there is none. */
static const cJSON *error_for(const keng_import_report *r, const char *file)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, r->errors)
    {
        const char *f = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "file"));
        if (f && !strcmp(f, file)) {
            ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(it, "line")));
            ASSERT(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "reason")));
            return it;
        }
    }
    char *all = cJSON_PrintUnformatted(r->errors);
    fprintf(stderr, "  errors: %s\n", all ? all : "?");
    free(all);
    TEST_FAIL("no error reported for %s", file);
}

static int err_line(const cJSON *e)
{
    return (int)cJSON_GetObjectItemCaseSensitive(e, "line")->valuedouble;
}

static const char *err_reason(const cJSON *e)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "reason"));
}

/* A small valid group file: id, one member defined, extra member entries verbatim. */
static const char GROUP_A[] = "{\n"
                              "  \"id\": \"kp-a\",\n"
                              "  \"name\": \"Khu phố A\",\n"
                              "  \"kind\": \"residential\",\n"
                              "  \"members\": [\n"
                              "    {\"id\": \"hh-a-1\", \"name\": \"Hộ ông A\", \"phone\": \"0905123456\"}\n"
                              "  ]\n"
                              "}\n";

/* The example ward, wherever the tests run from. */
static const char *ward_dir(void)
{
    static char dir[PATH_MAX];
    if (access("groups/khu-pho-2.json", R_OK) == 0) return "groups";
    const char *src = __FILE__; /* …/tests/unit/test_import.c */
    const char *cut = strstr(src, "tests/unit/");
    ASSERT_NOT_NULL(cut);
    snprintf(dir, sizeof dir, "%.*sgroups", (int)(cut - src), src);
    return dir;
}

/* ---- the example ward ---- */

TEST(import_example_ward)
{
    im_env e;
    env_init(&e);
    keng_import_report r;
    ASSERT_EQ(keng_import_dir(e.st, ward_dir(), &r), 0);
    ASSERT_EQ(cJSON_GetArraySize(r.errors), 0);
    ASSERT_EQ(r.files_bad, 0);
    ASSERT_EQ(r.files_ok, 25); /* README.md is not a group */
    ASSERT_EQ(r.groups, 25);
    ASSERT_EQ(r.members, 386);
    keng_import_report_free(&r);
    ASSERT_NULL(r.errors);
    ASSERT_EQ(n_groups(e.st), 25);
    ASSERT_EQ(n_members(e.st), 386);
    ASSERT_EQ(n_memberships(e.st), 420); /* 34 members belong to two groups or more */
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM groups WHERE source = 'file:' || id || '.json'"),
              25);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM groups WHERE kind = 'inter_household'"), 16);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM groups WHERE kind = 'residential'"), 4);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM members WHERE phone NOT LIKE '+84%'"), 0);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM memberships WHERE member_id NOT IN "
                          "(SELECT id FROM members) OR group_id NOT IN (SELECT id FROM groups)"),
              0);
    ASSERT(sqlite3_get_autocommit(keng_store_db(e.st)));

    /* DESIGN.md §5's example group, as stored */
    cJSON *g = keng_group_get(e.st, "to-lien-gia-07", 1);
    ASSERT_NOT_NULL(g);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(g, "kind")), "inter_household");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(g, "parent")), "khu-pho-2");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(g, "leader")), "hh-2-071");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(g, "relay")), "leader");
    ASSERT_EQ(cJSON_GetObjectItem(g, "relay_timeout")->valueint, 600);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(g, "source")),
                  "file:to-lien-gia-07.json");
    ASSERT_GE(cJSON_GetArraySize(cJSON_GetObjectItem(g, "members")), 20);
    cJSON_Delete(g);
    g = keng_group_get(e.st, "khu-pho-2", 1);
    ASSERT_NOT_NULL(g);
    char *kids = cJSON_PrintUnformatted(cJSON_GetObjectItem(g, "children"));
    ASSERT_STR_CONTAINS(kids, "\"to-lien-gia-07\"");
    free(kids);
    cJSON_Delete(g);
    cJSON *m = keng_member_get(e.st, "hh-2-071");
    ASSERT_NOT_NULL(m);
    char *mg = cJSON_PrintUnformatted(cJSON_GetObjectItem(m, "groups"));
    ASSERT_STR_CONTAINS(mg, "\"khu-pho-2\"");
    ASSERT_STR_CONTAINS(mg, "\"to-lien-gia-07\"");
    free(mg);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")), "Hộ ông Trần Văn Bình");
    cJSON_Delete(m);
    ASSERT_EQ(q_int(e.st, "SELECT relay_timeout FROM groups WHERE id = 'to-lien-gia-14'"), 600);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM groups WHERE kind = 'other' AND label IS NULL"),
              0);
    env_done(&e);
}

TEST(import_example_ward_is_idempotent)
{
    im_env e;
    env_init(&e);
    keng_import_report r;
    ASSERT_EQ(keng_import_dir(e.st, ward_dir(), &r), 0);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    char *first = snapshot(e.st);
    ASSERT_GT(strlen(first), 10000);
    int64_t created = q_int(e.st, "SELECT sum(created_at) FROM members");
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(keng_import_dir(e.st, ward_dir(), &r), 0);
        ASSERT_EQ(r.files_ok, 25);
        ASSERT_EQ(r.files_bad, 0);
        ASSERT_EQ(cJSON_GetArraySize(r.errors), 0);
        keng_import_report_free(&r);
        ASSERT_EQ(n_groups(e.st), 25);
        ASSERT_EQ(n_members(e.st), 386);
        ASSERT_EQ(n_memberships(e.st), 420);
        char *again = snapshot(e.st);
        if (strcmp(first, again) != 0) TEST_FAIL("import %d changed the stored ward", i + 2);
        free(again);
    }
    ASSERT_EQ(q_int(e.st, "SELECT sum(created_at) FROM members"), created);
    free(first);
    env_done(&e);
}

TEST(import_ignores_other_files)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", GROUP_A);
    put(&e, "README.md", "# not a group\n");
    put(&e, ".kp-b.json", "{ hidden editor backup");
    put(&e, "kp-c.json~", "{ backup");
    put(&e, "notes.txt", "{}");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 1);
    ASSERT_EQ(r.files_bad, 0);
    ASSERT_EQ(cJSON_GetArraySize(r.errors), 0);
    keng_import_report_free(&r);
    ASSERT_EQ(n_groups(e.st), 1);
    ASSERT(keng_group_exists(e.st, "kp-a"));
    ASSERT(keng_member_exists(e.st, "hh-a-1"));
    ASSERT(in_group(e.st, "kp-a", "hh-a-1"));
    /* the phone went through the same normalization as the API's */
    cJSON *m = keng_member_get(e.st, "hh-a-1");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "phone")), "+84905123456");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "source")), "file:kp-a.json");
    cJSON_Delete(m);
    /* an unreadable directory is an error, with an (empty) report to free */
    char missing[128];
    snprintf(missing, sizeof missing, "%s/nope", e.dir);
    ASSERT_EQ(keng_import_dir(e.st, missing, &r), -ENOENT);
    keng_import_report_free(&r);
    env_done(&e);
}

/* ---- refused files ---- */

TEST(import_malformed_json_refused_whole)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", GROUP_A);
    /* line 4 holds an unquoted value; the members before it must not be applied either */
    put(&e, "kp-b.json", "{\n"
                         "  \"id\": \"kp-b\",\n"
                         "  \"name\": \"Khu phố B\",\n"
                         "  \"kind\": residential,\n"
                         "  \"members\": [{\"id\": \"hh-b-1\", \"name\": \"Hộ bà B\"}]\n"
                         "}\n");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 1);
    ASSERT_EQ(r.files_bad, 1);
    ASSERT_EQ(cJSON_GetArraySize(r.errors), 1);
    const cJSON *err = error_for(&r, "kp-b.json");
    ASSERT_EQ(err_line(err), 4);
    ASSERT_STR_CONTAINS(err_reason(err), "JSON");
    keng_import_report_free(&r);
    ASSERT(keng_group_exists(e.st, "kp-a"));
    ASSERT(!keng_group_exists(e.st, "kp-b"));
    ASSERT(!keng_member_exists(e.st, "hh-b-1"));
    ASSERT_EQ(n_groups(e.st), 1);
    ASSERT_EQ(n_members(e.st), 1);

    /* Truncated file: the error is at its end. */
    put(&e, "kp-b.json", "{\n  \"id\": \"kp-b\",\n  \"name\": \"Khu phố B\",\n");
    import_ok(&e, &r);
    err = error_for(&r, "kp-b.json");
    ASSERT_GE(err_line(err), 3);
    ASSERT_LE(err_line(err), 4);
    keng_import_report_free(&r);
    /* Trailing garbage after the object. */
    put(&e, "kp-b.json", "{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\"}\n"
                         "\n"
                         "{\"second\": 1}\n");
    import_ok(&e, &r);
    ASSERT_EQ(err_line(error_for(&r, "kp-b.json")), 3);
    keng_import_report_free(&r);
    /* Not an object at all; an empty file. */
    put(&e, "kp-b.json", "[1, 2, 3]\n");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 1);
    error_for(&r, "kp-b.json");
    keng_import_report_free(&r);
    put(&e, "kp-b.json", "");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 1);
    ASSERT_EQ(err_line(error_for(&r, "kp-b.json")), 1);
    keng_import_report_free(&r);
    ASSERT_EQ(n_groups(e.st), 1);
    ASSERT_EQ(n_members(e.st), 1);
    env_done(&e);
}

TEST(import_bad_field_refused_whole)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", GROUP_A);
    /* hh-b-1 is fine, hh-b-2 (line 7) has a phone that is not Vietnamese */
    put(&e, "kp-b.json", "{\n"
                         "  \"id\": \"kp-b\",\n"
                         "  \"name\": \"Khu phố B\",\n"
                         "  \"kind\": \"residential\",\n"
                         "  \"members\": [\n"
                         "    {\"id\": \"hh-b-1\", \"name\": \"Hộ bà B\", \"phone\": \"0905111222\"},\n"
                         "    {\"id\": \"hh-b-2\", \"name\": \"Hộ ông C\", \"phone\": \"12345\"}\n"
                         "  ]\n"
                         "}\n");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 1);
    ASSERT_EQ(r.files_bad, 1);
    const cJSON *err = error_for(&r, "kp-b.json");
    ASSERT_EQ(err_line(err), 7);
    ASSERT_STR_CONTAINS(err_reason(err), "hh-b-2");
    ASSERT_STR_CONTAINS(err_reason(err), "phone");
    keng_import_report_free(&r);
    ASSERT(!keng_group_exists(e.st, "kp-b"));
    ASSERT(!keng_member_exists(e.st, "hh-b-1"));
    ASSERT(!keng_member_exists(e.st, "hh-b-2"));

    /* Group-level field errors: each names the field and its line. */
    static const struct {
        const char *text, *needle;
        int line;
    } cases[] = {
        {"{\n \"id\": \"kp-b\",\n \"name\": \"B\",\n \"kind\": \"village\"\n}\n", "kind", 4},
        {"{\n \"id\": \"kp-b\",\n \"name\": \"B\",\n \"kind\": \"residential\",\n"
         " \"colour\": \"red\"\n}\n",
         "colour", 5},
        {"{\n \"id\": \"kp-b\",\n \"kind\": \"residential\"\n}\n", "name", 1},
        {"{\n \"id\": \"kp-b\",\n \"name\": \"B\",\n \"kind\": \"residential\",\n"
         " \"relay\": \"leader\"\n}\n",
         "leader", 5},
        {"{\n \"id\": \"kp-b\",\n \"name\": \"B\",\n \"kind\": \"residential\",\n"
         " \"members\": [\"Not An Id\"]\n}\n",
         "not an id", 5},
        {"{\n \"id\": \"kp-zz\",\n \"name\": \"B\",\n \"kind\": \"residential\"\n}\n",
         "file name", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put(&e, "kp-b.json", cases[i].text);
        import_ok(&e, &r);
        ASSERT_EQ(r.files_ok, 1);
        ASSERT_EQ(r.files_bad, 1);
        err = error_for(&r, "kp-b.json");
        if (!strstr(err_reason(err), cases[i].needle) || err_line(err) != cases[i].line)
            TEST_FAIL("case %zu: want line %d and \"%s\", got line %d: %s", i, cases[i].line,
                      cases[i].needle, err_line(err), err_reason(err));
        keng_import_report_free(&r);
        ASSERT(!keng_group_exists(e.st, "kp-b"));
        ASSERT(!keng_group_exists(e.st, "kp-zz"));
    }
    ASSERT_EQ(n_groups(e.st), 1);
    ASSERT_EQ(n_members(e.st), 1);
    env_done(&e);
}

TEST(import_refused_file_keeps_previous_version)
{
    im_env e;
    env_init(&e);
    const char *v1 = "{\n"
                     "  \"id\": \"kp-b\",\n"
                     "  \"name\": \"Khu phố B\",\n"
                     "  \"kind\": \"residential\",\n"
                     "  \"members\": [\n"
                     "    {\"id\": \"hh-b-1\", \"name\": \"Hộ bà B\"},\n"
                     "    {\"id\": \"hh-b-2\", \"name\": \"Hộ ông C\"}\n"
                     "  ]\n"
                     "}\n";
    put(&e, "kp-b.json", v1);
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    char *before = snapshot(e.st);
    /* v2 renames the group, renames hh-b-1, drops hh-b-2, adds hh-b-3 … and has a bad lang */
    put(&e, "kp-b.json", "{\n"
                         "  \"id\": \"kp-b\",\n"
                         "  \"name\": \"Khu phố B (mới)\",\n"
                         "  \"kind\": \"residential\",\n"
                         "  \"members\": [\n"
                         "    {\"id\": \"hh-b-1\", \"name\": \"Hộ bà B mới\"},\n"
                         "    {\"id\": \"hh-b-3\", \"name\": \"Hộ mới\"},\n"
                         "    {\"id\": \"hh-b-4\", \"name\": \"Hộ mới 2\", \"lang\": \"fr\"}\n"
                         "  ]\n"
                         "}\n");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 1);
    ASSERT_EQ(r.groups, 0);
    ASSERT_EQ(r.members, 0);
    const cJSON *err = error_for(&r, "kp-b.json");
    ASSERT_EQ(err_line(err), 8);
    ASSERT_STR_CONTAINS(err_reason(err), "lang");
    keng_import_report_free(&r);
    char *after = snapshot(e.st);
    ASSERT_STR_EQ(after, before);
    ASSERT(in_group(e.st, "kp-b", "hh-b-2"));
    ASSERT(!keng_member_exists(e.st, "hh-b-3"));
    free(before);
    free(after);
    env_done(&e);
}

TEST(import_unknown_member_refused)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", GROUP_A);
    /* kp-b refers to hh-a-1 (defined in kp-a: fine) and to hh-zz (nowhere) */
    put(&e, "kp-b.json", "{\n"
                         "  \"id\": \"kp-b\",\n"
                         "  \"name\": \"Khu phố B\",\n"
                         "  \"kind\": \"residential\",\n"
                         "  \"members\": [\n"
                         "    {\"id\": \"hh-b-1\", \"name\": \"Hộ bà B\"},\n"
                         "    \"hh-a-1\",\n"
                         "    \"hh-zz\"\n"
                         "  ]\n"
                         "}\n");
    /* kp-c only refers to hh-a-1: it applies */
    put(&e, "kp-c.json", "{\"id\": \"kp-c\", \"name\": \"C\", \"kind\": \"landlord\","
                         " \"members\": [\"hh-a-1\"]}\n");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 2);
    ASSERT_EQ(r.files_bad, 1);
    ASSERT_EQ(cJSON_GetArraySize(r.errors), 1);
    const cJSON *err = error_for(&r, "kp-b.json");
    ASSERT_EQ(err_line(err), 8);
    ASSERT_STR_CONTAINS(err_reason(err), "hh-zz");
    ASSERT_STR_CONTAINS(err_reason(err), "not defined");
    keng_import_report_free(&r);
    ASSERT(!keng_group_exists(e.st, "kp-b"));
    ASSERT(!keng_member_exists(e.st, "hh-b-1"));
    ASSERT(!keng_member_exists(e.st, "hh-zz"));
    ASSERT(in_group(e.st, "kp-c", "hh-a-1"));
    ASSERT(in_group(e.st, "kp-a", "hh-a-1"));
    env_done(&e);
}

TEST(import_refusal_cascades_to_references)
{
    im_env e;
    env_init(&e);
    /* kp-a defines hh-a-1 but is refused (bad kind); kp-b refers to hh-a-1, so it has nothing to
     * refer to and is refused too; kp-c refers to hh-b-1 (defined in the refused kp-b). */
    put(&e, "kp-a.json", "{\"id\": \"kp-a\", \"name\": \"A\", \"kind\": \"nope\","
                         " \"members\": [{\"id\": \"hh-a-1\", \"name\": \"Hộ A\"}]}\n");
    put(&e, "kp-b.json", "{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\","
                         " \"members\": [{\"id\": \"hh-b-1\", \"name\": \"Hộ B\"}, \"hh-a-1\"]}\n");
    put(&e, "kp-c.json", "{\"id\": \"kp-c\", \"name\": \"C\", \"kind\": \"residential\","
                         " \"members\": [\"hh-b-1\"]}\n");
    put(&e, "kp-d.json", "{\"id\": \"kp-d\", \"name\": \"D\", \"kind\": \"residential\","
                         " \"members\": [{\"id\": \"hh-d-1\", \"name\": \"Hộ D\"}]}\n");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 1);
    ASSERT_EQ(r.files_bad, 3);
    ASSERT_EQ(cJSON_GetArraySize(r.errors), 3);
    ASSERT_STR_CONTAINS(err_reason(error_for(&r, "kp-a.json")), "kind");
    ASSERT_STR_CONTAINS(err_reason(error_for(&r, "kp-b.json")), "hh-a-1");
    ASSERT_STR_CONTAINS(err_reason(error_for(&r, "kp-c.json")), "hh-b-1");
    keng_import_report_free(&r);
    ASSERT_EQ(n_groups(e.st), 1);
    ASSERT_EQ(n_members(e.st), 1);
    ASSERT(in_group(e.st, "kp-d", "hh-d-1"));
    /* once kp-a is fixed, all four apply */
    put(&e, "kp-a.json", "{\"id\": \"kp-a\", \"name\": \"A\", \"kind\": \"residential\","
                         " \"members\": [{\"id\": \"hh-a-1\", \"name\": \"Hộ A\"}]}\n");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 4);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    ASSERT_EQ(n_groups(e.st), 4);
    ASSERT_EQ(n_members(e.st), 3);
    ASSERT(in_group(e.st, "kp-c", "hh-b-1"));
    ASSERT(in_group(e.st, "kp-b", "hh-a-1"));
    env_done(&e);
}

TEST(import_member_defined_earlier_may_be_referenced)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", GROUP_A);
    keng_import_report r;
    import_ok(&e, &r);
    keng_import_report_free(&r);
    /* kp-a.json leaves the directory; hh-a-1 stays in the store and may still be referenced */
    drop(&e, "kp-a.json");
    put(&e, "kp-b.json", "{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\","
                         " \"members\": [\"hh-a-1\"]}\n");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 1);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    ASSERT(in_group(e.st, "kp-b", "hh-a-1"));
    env_done(&e);
}

TEST(import_duplicate_ids_refused)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", GROUP_A);
    /* kp-b defines hh-a-1 again (already defined in kp-a, which sorts first) */
    put(&e, "kp-b.json", "{\n"
                         "  \"id\": \"kp-b\",\n"
                         "  \"name\": \"Khu phố B\",\n"
                         "  \"kind\": \"residential\",\n"
                         "  \"members\": [\n"
                         "    {\"id\": \"hh-b-1\", \"name\": \"Hộ bà B\"},\n"
                         "    {\"id\": \"hh-a-1\", \"name\": \"Hộ ông A, lần hai\"}\n"
                         "  ]\n"
                         "}\n");
    /* kp-c lists hh-c-1 twice: once defined, once by id */
    put(&e, "kp-c.json", "{\n"
                         "  \"id\": \"kp-c\",\n"
                         "  \"name\": \"C\",\n"
                         "  \"kind\": \"residential\",\n"
                         "  \"members\": [\n"
                         "    {\"id\": \"hh-c-1\", \"name\": \"Hộ C\"},\n"
                         "    \"hh-c-1\"\n"
                         "  ]\n"
                         "}\n");
    /* kp-d lists the same id string twice */
    put(&e, "kp-d.json", "{\"id\": \"kp-d\", \"name\": \"D\", \"kind\": \"residential\",\n"
                         " \"members\": [\"hh-a-1\",\n \"hh-a-1\"]}\n");
    /* kp-e.json claims to be kp-a: two files, one group id */
    put(&e, "kp-e.json", "{\n  \"id\": \"kp-a\",\n  \"name\": \"Khu phố A giả\",\n"
                         "  \"kind\": \"residential\"\n}\n");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 1);
    ASSERT_EQ(r.files_bad, 4);
    const cJSON *err = error_for(&r, "kp-b.json");
    ASSERT_EQ(err_line(err), 7);
    ASSERT_STR_CONTAINS(err_reason(err), "hh-a-1");
    ASSERT_STR_CONTAINS(err_reason(err), "already defined in kp-a.json");
    err = error_for(&r, "kp-c.json");
    ASSERT_STR_CONTAINS(err_reason(err), "hh-c-1");
    ASSERT_STR_CONTAINS(err_reason(err), "twice");
    ASSERT_EQ(err_line(err), 6);
    err = error_for(&r, "kp-d.json");
    ASSERT_STR_CONTAINS(err_reason(err), "twice");
    err = error_for(&r, "kp-e.json");
    ASSERT_STR_CONTAINS(err_reason(err), "file name");
    ASSERT_EQ(err_line(err), 2);
    keng_import_report_free(&r);
    ASSERT_EQ(n_groups(e.st), 1);
    ASSERT_EQ(n_members(e.st), 1);
    cJSON *m = keng_member_get(e.st, "hh-a-1");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")), "Hộ ông A");
    cJSON_Delete(m);
    cJSON *g = keng_group_get(e.st, "kp-a", 0);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(g, "name")), "Khu phố A");
    cJSON_Delete(g);
    env_done(&e);
}

TEST(import_parent_cycle_refused)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-root.json", "{\"id\": \"kp-root\", \"name\": \"Phường\", \"kind\": \"residential\"}");
    put(&e, "kp-ok.json", "{\"id\": \"kp-ok\", \"name\": \"OK\", \"kind\": \"residential\","
                          " \"parent\": \"kp-root\"}");
    /* a → b → a */
    put(&e, "kp-a.json", "{\n  \"id\": \"kp-a\",\n  \"name\": \"A\",\n  \"kind\": \"residential\",\n"
                         "  \"parent\": \"kp-b\"\n}\n");
    put(&e, "kp-b.json", "{\n  \"id\": \"kp-b\",\n  \"name\": \"B\",\n  \"kind\": \"residential\",\n"
                         "  \"parent\": \"kp-a\",\n  \"members\": [{\"id\": \"hh-b-1\","
                         " \"name\": \"Hộ B\"}]\n}\n");
    /* x → y → z → x */
    put(&e, "kp-x.json", "{\"id\": \"kp-x\", \"name\": \"X\", \"kind\": \"residential\","
                         " \"parent\": \"kp-y\"}");
    put(&e, "kp-y.json", "{\"id\": \"kp-y\", \"name\": \"Y\", \"kind\": \"residential\","
                         " \"parent\": \"kp-z\"}");
    put(&e, "kp-z.json", "{\"id\": \"kp-z\", \"name\": \"Z\", \"kind\": \"residential\","
                         " \"parent\": \"kp-x\"}");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 2);
    ASSERT_EQ(r.files_bad, 5);
    /* The file found on the cycle first is refused for it; the others of the cycle then lose
     * their parent. Either way each is refused with the parent's line. */
    const cJSON *err = error_for(&r, "kp-a.json");
    ASSERT_STR_CONTAINS(err_reason(err), "cycle");
    ASSERT_EQ(err_line(err), 5);
    ASSERT_EQ(err_line(error_for(&r, "kp-b.json")), 5);
    ASSERT_STR_CONTAINS(err_reason(error_for(&r, "kp-x.json")), "cycle");
    error_for(&r, "kp-y.json");
    error_for(&r, "kp-z.json");
    keng_import_report_free(&r);
    ASSERT_EQ(n_groups(e.st), 2);
    ASSERT(keng_group_exists(e.st, "kp-ok"));
    ASSERT(!keng_member_exists(e.st, "hh-b-1"));

    /* Own parent, and a parent that exists nowhere. */
    put(&e, "kp-a.json", "{\n  \"id\": \"kp-a\",\n  \"name\": \"A\",\n  \"kind\": \"residential\",\n"
                         "  \"parent\": \"kp-a\"\n}\n");
    put(&e, "kp-b.json", "{\n  \"id\": \"kp-b\",\n  \"name\": \"B\",\n  \"kind\": \"residential\",\n"
                         "  \"parent\": \"kp-nowhere\"\n}\n");
    drop(&e, "kp-x.json");
    drop(&e, "kp-y.json");
    drop(&e, "kp-z.json");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 2);
    err = error_for(&r, "kp-a.json");
    ASSERT_STR_CONTAINS(err_reason(err), "parent");
    ASSERT_EQ(err_line(err), 5);
    err = error_for(&r, "kp-b.json");
    ASSERT_STR_CONTAINS(err_reason(err), "kp-nowhere");
    ASSERT_EQ(err_line(err), 5);
    keng_import_report_free(&r);
    ASSERT_EQ(n_groups(e.st), 2);
    env_done(&e);
}

TEST(import_parent_cycle_through_store_refused)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", "{\"id\": \"kp-a\", \"name\": \"A\", \"kind\": \"residential\"}");
    put(&e, "kp-b.json", "{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\","
                         " \"parent\": \"kp-a\"}");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 2);
    keng_import_report_free(&r);
    /* kp-b.json is gone from the directory but kp-b (parent kp-a) is in the store: making kp-b
     * the parent of kp-a closes a cycle through the store. */
    drop(&e, "kp-b.json");
    put(&e, "kp-a.json", "{\n  \"id\": \"kp-a\",\n  \"name\": \"A\",\n  \"kind\": \"residential\",\n"
                         "  \"parent\": \"kp-b\"\n}\n");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 1);
    const cJSON *err = error_for(&r, "kp-a.json");
    ASSERT_STR_CONTAINS(err_reason(err), "cycle");
    ASSERT_EQ(err_line(err), 5);
    keng_import_report_free(&r);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM groups WHERE id = 'kp-a' AND parent IS NULL"), 1);
    env_done(&e);
}

TEST(import_invalid_utf8_refused)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", GROUP_A);
    /* Latin-1 "Hộ" is not UTF-8; then an overlong "/" and a UTF-16 surrogate in UTF-8 form. */
    static const char *const bad[] = {
        "{\n \"id\": \"kp-b\",\n \"name\": \"B\",\n \"kind\": \"residential\",\n"
        " \"members\": [{\"id\": \"hh-b-1\", \"name\": \"H\xf4 \xf4ng B\"}]\n}\n",
        "{\n \"id\": \"kp-b\",\n \"name\": \"B\xc0\xaf\",\n \"kind\": \"residential\"\n}\n",
        "{\n \"id\": \"kp-b\",\n \"name\": \"B\xed\xa0\x80\",\n \"kind\": \"residential\"\n}\n",
        "{\n \"id\": \"kp-b\",\n \"name\": \"B\xe1\xba\",\n \"kind\": \"residential\"\n}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put(&e, "kp-b.json", bad[i]);
        keng_import_report r;
        import_ok(&e, &r);
        ASSERT_EQ(r.files_ok, 1);
        ASSERT_EQ(r.files_bad, 1);
        const cJSON *err = error_for(&r, "kp-b.json");
        ASSERT_STR_CONTAINS(err_reason(err), "UTF-8");
        ASSERT_GE(err_line(err), 1);
        keng_import_report_free(&r);
        ASSERT(!keng_group_exists(e.st, "kp-b"));
        ASSERT(!keng_member_exists(e.st, "hh-b-1"));
    }
    /* A NUL byte inside the file is refused as well. */
    char path[256];
    snprintf(path, sizeof path, "%s/kp-b.json", e.groups);
    FILE *f = fopen(path, "wb");
    ASSERT_NOT_NULL(f);
    static const char nul[] = "{\"id\": \"kp-b\", \"name\": \"B\0\", \"kind\": \"residential\"}";
    ASSERT_EQ(fwrite(nul, 1, sizeof nul - 1, f), sizeof nul - 1);
    fclose(f);
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 1);
    error_for(&r, "kp-b.json");
    keng_import_report_free(&r);
    ASSERT(!keng_group_exists(e.st, "kp-b"));
    /* Valid UTF-8 with a BOM-free Vietnamese name is fine (control case). */
    put(&e, "kp-b.json", "{\"id\": \"kp-b\", \"name\": \"Khu phố Bắc – Đông\", \"kind\": \"residential\"}");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    cJSON *g = keng_group_get(e.st, "kp-b", 0);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(g, "name")), "Khu phố Bắc – Đông");
    cJSON_Delete(g);
    env_done(&e);
}

TEST(import_dir_is_one_transaction)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", GROUP_A);
    put(&e, "kp-b.json", "{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\","
                         " \"members\": [\"hh-a-1\"]}");
    /* Another writer holds the database: the import fails as a whole and applies nothing. */
    sqlite3 *other = NULL;
    ASSERT_EQ(sqlite3_open(e.db, &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_busy_timeout(keng_store_db(e.st), 50);
    keng_import_report r;
    ASSERT_EQ(keng_import_dir(e.st, e.groups, &r), -EBUSY);
    keng_import_report_free(&r);
    ASSERT(sqlite3_get_autocommit(keng_store_db(e.st)));
    ASSERT_EQ(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    ASSERT_EQ(n_groups(e.st), 0);
    ASSERT_EQ(n_members(e.st), 0);
    /* Inside a caller's transaction the import nests: a rollback undoes it. */
    ASSERT_EQ(keng_store_begin(e.st), 0);
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 2);
    keng_import_report_free(&r);
    ASSERT_EQ(n_groups(e.st), 2);
    ASSERT(!sqlite3_get_autocommit(keng_store_db(e.st)));
    keng_store_rollback(e.st);
    ASSERT_EQ(n_groups(e.st), 0);
    import_ok(&e, &r);
    keng_import_report_free(&r);
    ASSERT_EQ(n_groups(e.st), 2);
    ASSERT_EQ(n_memberships(e.st), 2);
    env_done(&e);
}

/* ---- CSV ---- */

/* A store with one group "to-1" that already holds one household from a groups/ file. */
static void csv_env(im_env *e)
{
    env_init(e);
    put(e, "to-1.json", "{\"id\": \"to-1\", \"name\": \"Tổ 1\", \"kind\": \"inter_household\","
                        " \"members\": [{\"id\": \"hh-0\", \"name\": \"Hộ cũ\"}]}");
    put(e, "to-2.json", "{\"id\": \"to-2\", \"name\": \"Tổ 2\", \"kind\": \"inter_household\"}");
    keng_import_report r;
    import_ok(e, &r);
    ASSERT_EQ(r.files_ok, 2);
    keng_import_report_free(&r);
}

static int csv(im_env *e, const char *group, const char *text, int *n, char *err, size_t errlen)
{
    err[0] = '\0';
    return keng_import_csv(e->st, group, text, strlen(text), n, err, errlen);
}

TEST(import_csv_households)
{
    im_env e;
    csv_env(&e);
    /* BOM, CRLF, quoted commas, doubled quotes, a line break inside quotes, a blank line,
     * Vietnamese yes/no, contacts from their own columns, a missing final newline. */
    const char *text =
        "\xEF\xBB\xBF"
        "id,name,address,phone,lang,camera,lat,lon,zalo_user_id,telegram_chat_id,email\r\n"
        "hh-1,Hộ ông Nguyễn Văn A,\"12 Lê Lợi, tổ 3\",0905 123 456,vi,có,16.05,108.2,"
        "z123,,\r\n"
        "hh-2,\"Hộ bà \"\"Tư\"\"\",\"K20/5 Lê Lợi\nngõ 2\",+84 935 627 481,en,không,,,,"
        "-100123,tu@example.vn\r\n"
        "\r\n"
        "hh-3,\"Quán cà phê, \"\"Hoa\"\"\",,,,x,,,,,";
    int n = -1;
    char err[256];
    int rc = csv(&e, "to-1", text, &n, err, sizeof err);
    if (rc) TEST_FAIL("import: %d %s", rc, err);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(n_members(e.st), 4);
    ASSERT(in_group(e.st, "to-1", "hh-0")); /* added to, not replaced */
    ASSERT(in_group(e.st, "to-1", "hh-1"));
    ASSERT(in_group(e.st, "to-1", "hh-2"));
    ASSERT(in_group(e.st, "to-1", "hh-3"));
    ASSERT(!in_group(e.st, "to-2", "hh-1"));

    cJSON *m = keng_member_get(e.st, "hh-1");
    ASSERT_NOT_NULL(m);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")), "Hộ ông Nguyễn Văn A");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "address")), "12 Lê Lợi, tổ 3");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "phone")), "+84905123456");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(m, "camera")));
    ASSERT(cJSON_GetObjectItem(m, "lat")->valuedouble == 16.05);
    char *c = cJSON_PrintUnformatted(cJSON_GetObjectItem(m, "contacts"));
    ASSERT_STR_EQ(c, "[{\"type\":\"zalo_oa\",\"user_id\":\"z123\"}]");
    free(c);
    cJSON_Delete(m);
    m = keng_member_get(e.st, "hh-2");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")), "Hộ bà \"Tư\"");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "address")), "K20/5 Lê Lợi\nngõ 2");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "phone")), "+84935627481");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "lang")), "en");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(m, "camera")));
    ASSERT_NULL(cJSON_GetObjectItem(m, "lat"));
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "source")), "csv");
    c = cJSON_PrintUnformatted(cJSON_GetObjectItem(m, "contacts"));
    ASSERT_STR_EQ(c, "[{\"type\":\"telegram\",\"chat_id\":\"-100123\"},"
                     "{\"type\":\"email\",\"address\":\"tu@example.vn\"}]");
    free(c);
    cJSON_Delete(m);
    m = keng_member_get(e.st, "hh-3");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")), "Quán cà phê, \"Hoa\"");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(m, "camera")));
    ASSERT_NULL(cJSON_GetObjectItem(m, "phone"));
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "lang")), "vi");
    cJSON_Delete(m);
    env_done(&e);
}

TEST(import_csv_quoting_and_bom)
{
    im_env e;
    csv_env(&e);
    int n;
    char err[256];
    const char *text = "\xEF\xBB\xBF" "id,name,address,phone,camera,lat,lon,zalo_user_id\n"
                       "hh-1,Hộ ông A,\"12 Lê Lợi, tổ 3\",0905123456,có,16.05,108.2,z123\n";
    int rc = csv(&e, "to-1", text, &n, err, sizeof err);
    if (rc) TEST_FAIL("import: %d %s", rc, err);
    ASSERT_EQ(n, 1);
    cJSON *m = keng_member_get(e.st, "hh-1");
    ASSERT_NOT_NULL(m);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")), "Hộ ông A");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "address")), "12 Lê Lợi, tổ 3");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "phone")), "+84905123456");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(m, "camera")));
    ASSERT(cJSON_GetObjectItem(m, "lat")->valuedouble > 16.049);
    ASSERT(cJSON_GetObjectItem(m, "lon")->valuedouble < 108.21);
    char *c = cJSON_PrintUnformatted(cJSON_GetObjectItem(m, "contacts"));
    ASSERT_STR_EQ(c, "[{\"type\":\"zalo_oa\",\"user_id\":\"z123\"}]");
    free(c);
    cJSON_Delete(m);
    /* Importing the same sheet again changes nothing but counts it again. */
    char *before = snapshot(e.st);
    rc = csv(&e, "to-1", text, &n, err, sizeof err);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(n, 1);
    char *after = snapshot(e.st);
    ASSERT_STR_EQ(after, before);
    free(before);
    free(after);
    /* Columns in any order; the same household into a second group. */
    rc = csv(&e, "to-2", "name,id\n\"Hộ ông A\",hh-1\n", &n, err, sizeof err);
    ASSERT_EQ(rc, 0);
    ASSERT(in_group(e.st, "to-2", "hh-1"));
    ASSERT(in_group(e.st, "to-1", "hh-1"));
    /* Without the BOM the header reads the same. */
    rc = csv(&e, "to-2", "id,name\r\nhh-9,Hộ chín\r\n", &n, err, sizeof err);
    ASSERT_EQ(rc, 0);
    ASSERT(in_group(e.st, "to-2", "hh-9"));
    env_done(&e);
}

TEST(import_csv_bad_row_refuses_whole)
{
    im_env e;
    csv_env(&e);
    int64_t members = n_members(e.st), ships = n_memberships(e.st);
    int n = -1;
    char err[256];
    /* rows on lines 2 and 3 are fine; line 4 has a phone that is not Vietnamese */
    const char *text = "id,name,phone\n"
                       "hh-1,Hộ A,0905123456\n"
                       "hh-2,Hộ B,0935627481\n"
                       "hh-3,Hộ C,12345\n"
                       "hh-4,Hộ D,0914736205\n";
    ASSERT_EQ(csv(&e, "to-1", text, &n, err, sizeof err), -EINVAL);
    ASSERT_EQ(n, 0);
    ASSERT_STR_CONTAINS(err, "line 4");
    ASSERT_STR_CONTAINS(err, "phone");
    ASSERT_EQ(n_members(e.st), members);
    ASSERT_EQ(n_memberships(e.st), ships);
    ASSERT(!keng_member_exists(e.st, "hh-1"));
    ASSERT(sqlite3_get_autocommit(keng_store_db(e.st)));

    /* Line numbers count physical lines: a quoted field over two lines moves the bad row down. */
    text = "id,name,address\n"
           "hh-1,Hộ A,\"12 Lê Lợi\nngõ 2\"\n"
           "hh-2,Hộ B,14 Lê Lợi\n"
           "Hộ C,hh-3,16 Lê Lợi\n";
    ASSERT_EQ(csv(&e, "to-1", text, &n, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "line 5");
    ASSERT_STR_CONTAINS(err, "id");
    ASSERT_EQ(n_members(e.st), members);
    /* The same with CRLF and a BOM. */
    text = "\xEF\xBB\xBFid,name\r\n"
           "hh-1,\"Hộ A\r\nhai dòng\"\r\n"
           "hh-2,Hộ B,thừa\r\n";
    ASSERT_EQ(csv(&e, "to-1", text, &n, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "line 4");
    ASSERT_EQ(n_members(e.st), members);
    env_done(&e);
}

TEST(import_csv_errors)
{
    im_env e;
    csv_env(&e);
    int64_t members = n_members(e.st), ships = n_memberships(e.st);
    static const struct {
        const char *text, *want1, *want2;
    } cases[] = {
        {"", "line 1", "header"},
        {"id,name,colour\nhh-1,A,red\n", "line 1", "colour"},
        {"id,address\nhh-1,12 Lê Lợi\n", "line 1", "name"},
        {"name,phone\nHộ A,0905123456\n", "line 1", "id"},
        {"id,name\nhh-1,A\nhh-2\n", "line 3", "fields"},
        {"id,name\nhh-1,A\nhh-2,B,C\n", "line 3", "fields"},
        {"id,name\nhh-1,A\nhh-2,\"B\n", "line 3", "quote"},
        {"id,name\nhh-1,A\nhh-2,B\"x\"\n", "line 3", "quote"},
        {"id,name\nhh-1,\"A\"x\n", "line 2", "quote"},
        {"id,name,camera\nhh-1,A,maybe\n", "line 2", "camera"},
        {"id,name,lat\nhh-1,A,16.0.5\n", "line 2", "lat"},
        {"id,name,lat\nhh-1,A,95\n", "line 2", "lat"},
        {"id,name,lang\nhh-1,A,fr\n", "line 2", "lang"},
        {"id,name,email\nhh-1,A,not-an-address\n", "line 2", "address"},
        {"id,name\nhh-1,A\nhh-2,B\nhh-1,C\n", "line 4", "twice"},
        {"id,name\nHH 1,A\n", "line 2", "id"},
        {"id,name\nhh-1,\n", "line 2", "name"},
        {"id,name\nhh-1,H\xf4 A\n", "line 2", "UTF-8"}, /* the line of the bad byte */
        {"id,name,name\nhh-1,A,B\n", "line 1", "name appears twice"},
        {"id,name,camera,camera\nhh-1,A,1,0\n", "line 1", "camera appears twice"},
        {"id,name,lat\nhh-1,A,0x10\n", "line 2", "lat"},
        {"id,name,lon\nhh-1,A,0x6Cp0\n", "line 2", "lon"},
        {"id,name,lat\nhh-1,A,nan\n", "line 2", "lat"},
        {"id,name,lat\nhh-1,A,-inf\n", "line 2", "lat"},
        {"id,name,lat\nhh-1,A,\"16,0,5\"\n", "line 2", "lat"},
        {"id,name,lat\nhh-1,A,1e\n", "line 2", "lat"},
        {"id,name,camera\nhh-1,A,yes please\n", "line 2", "camera"},
        {"id;name;colour\nhh-1;A;red\n", "line 1", "colour"},
        {"id,name;address\nhh-1,A;B\n", "line 1", "name;address"}, /* ',' wins over ';' */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = -1;
        char err[256];
        int rc = csv(&e, "to-1", cases[i].text, &n, err, sizeof err);
        if (rc != -EINVAL || !strstr(err, cases[i].want1) || !strstr(err, cases[i].want2))
            TEST_FAIL("case %zu: want -EINVAL with \"%s\" and \"%s\", got %d \"%s\"", i,
                      cases[i].want1, cases[i].want2, rc, err);
        ASSERT_EQ(n, 0);
        ASSERT_EQ(n_members(e.st), members);
        ASSERT_EQ(n_memberships(e.st), ships);
        ASSERT(sqlite3_get_autocommit(keng_store_db(e.st)));
    }
    /* No such group. */
    int n = -1;
    char err[256];
    ASSERT_EQ(csv(&e, "to-nowhere", "id,name\nhh-1,A\n", &n, err, sizeof err), -ENOENT);
    ASSERT_STR_CONTAINS(err, "to-nowhere");
    ASSERT_EQ(n, 0);
    ASSERT_EQ(n_members(e.st), members);
    /* A header alone imports nothing, successfully. */
    ASSERT_EQ(csv(&e, "to-1", "id,name\n", &n, err, sizeof err), 0);
    ASSERT_EQ(n, 0);
    /* A small error buffer is truncated, not overrun. */
    char small[8];
    memset(small, 'Z', sizeof small);
    ASSERT_EQ(keng_import_csv(e.st, "to-1", "id,name,colour\n", 15, &n, small, sizeof small),
              -EINVAL);
    ASSERT_EQ(strlen(small), sizeof small - 1);
    env_done(&e);
}

TEST(import_csv_then_dir_reimport)
{
    im_env e;
    csv_env(&e);
    int n;
    char err[256];
    ASSERT_EQ(csv(&e, "to-1", "id,name\nhh-1,Hộ A\n", &n, err, sizeof err), 0);
    ASSERT(in_group(e.st, "to-1", "hh-1"));
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM memberships WHERE group_id = 'to-1'"), 2);
    /* Reimporting groups/ (every start, every SIGHUP) keeps the household and its membership:
     * the file governs its own households only (keng/import.h). */
    keng_import_report r;
    for (int i = 0; i < 2; i++) {
        import_ok(&e, &r);
        ASSERT_EQ(r.files_bad, 0);
        keng_import_report_free(&r);
        ASSERT(keng_member_exists(e.st, "hh-1"));
        ASSERT(keng_member_exists(e.st, "hh-0"));
        ASSERT(in_group(e.st, "to-1", "hh-0"));
        ASSERT(in_group(e.st, "to-1", "hh-1"));
        ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM memberships WHERE group_id = 'to-1'"), 2);
    }
    env_done(&e);
}

/* ---- re-imports and the memberships others added ---- */

/* What POST/PUT /v1/members does with a body (api_groups.c member_write). */
static void api_member_put(im_env *e, const char *json)
{
    cJSON *m = cJSON_Parse(json);
    ASSERT_NOT_NULL(m);
    keng_verr v;
    if (keng_member_validate(m, 1, &v)) TEST_FAIL("member %s: %s", json, v.message);
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(m, "id"));
    const cJSON *gs = cJSON_GetObjectItem(m, "groups");
    ASSERT_EQ(keng_store_begin(e->st), 0);
    ASSERT_EQ(keng_member_upsert(e->st, m, "api"), 0);
    if (gs) ASSERT_EQ(keng_member_set_groups(e->st, id, gs), 0);
    ASSERT_EQ(keng_store_commit(e->st), 0);
    cJSON_Delete(m);
}

/* What POST /v1/groups does with a group without members. */
static void api_group_post(im_env *e, const char *json)
{
    cJSON *g = cJSON_Parse(json);
    ASSERT_NOT_NULL(g);
    keng_verr v;
    if (keng_group_validate(g, &v)) TEST_FAIL("group %s: %s", json, v.message);
    ASSERT_EQ(keng_store_begin(e->st), 0);
    ASSERT_EQ(keng_group_upsert(e->st, g, "api"), 0);
    ASSERT_EQ(keng_store_commit(e->st), 0);
    cJSON_Delete(g);
}

static char *member_source(im_env *e, const char *id)
{
    cJSON *m = keng_member_get(e->st, id);
    ASSERT_NOT_NULL(m);
    char *src = strdup(cJSON_GetStringValue(cJSON_GetObjectItem(m, "source")));
    cJSON_Delete(m);
    return src;
}

TEST(import_reimport_keeps_csv_and_api_memberships)
{
    im_env e;
    csv_env(&e); /* to-1.json defines hh-0; to-2.json has no members list */
    int n;
    char err[256];
    ASSERT_EQ(csv(&e, "to-1", "id,name\nhh-1,B\n", &n, err, sizeof err), 0);
    ASSERT_EQ(csv(&e, "to-2", "id,name\nhh-2,C\n", &n, err, sizeof err), 0);
    api_member_put(&e, "{\"id\":\"hh-api\",\"name\":\"Hộ API\",\"groups\":[\"to-1\",\"to-2\"]}");
    /* the CSV puts an API household into a group as well */
    ASSERT_EQ(csv(&e, "to-2", "id,name\nhh-1,B\n", &n, err, sizeof err), 0);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM memberships WHERE group_id = 'to-1'"), 3);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM memberships WHERE group_id = 'to-2'"), 3);
    char *before = snapshot(e.st);
    keng_import_report r;
    for (int i = 0; i < 3; i++) {
        import_ok(&e, &r);
        ASSERT_EQ(r.files_ok, 2);
        ASSERT_EQ(r.files_bad, 0);
        keng_import_report_free(&r);
        ASSERT(in_group(e.st, "to-1", "hh-0"));
        ASSERT(in_group(e.st, "to-1", "hh-1"));
        ASSERT(in_group(e.st, "to-1", "hh-api"));
        ASSERT(in_group(e.st, "to-2", "hh-1"));
        ASSERT(in_group(e.st, "to-2", "hh-2"));
        ASSERT(in_group(e.st, "to-2", "hh-api"));
        ASSERT_EQ(n_memberships(e.st), 6);
        char *after = snapshot(e.st);
        ASSERT_STR_EQ(after, before); /* a re-import of unchanged files changes nothing */
        free(after);
    }
    free(before);
    /* A file that names a CSV household by id adds it; dropping the reference later does not
     * take it out (the CSV put it there too, and a file never removes "csv"/"api" members). */
    put(&e, "to-2.json", "{\"id\": \"to-2\", \"name\": \"Tổ 2\", \"kind\": \"inter_household\","
                         " \"members\": [\"hh-2\", \"hh-0\"]}");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    ASSERT(in_group(e.st, "to-2", "hh-0"));
    put(&e, "to-2.json", "{\"id\": \"to-2\", \"name\": \"Tổ 2\", \"kind\": \"inter_household\","
                         " \"members\": []}");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    ASSERT(!in_group(e.st, "to-2", "hh-0")); /* a file household: the file governs it */
    ASSERT(in_group(e.st, "to-2", "hh-2"));
    ASSERT(in_group(e.st, "to-2", "hh-1"));
    ASSERT(in_group(e.st, "to-2", "hh-api"));
    /* a refused file changes none of its group's memberships */
    put(&e, "to-1.json", "{\"id\": \"to-1\", \"name\": \"Tổ 1\", \"kind\": \"nope\"}");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 1);
    keng_import_report_free(&r);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM memberships WHERE group_id = 'to-1'"), 3);
    env_done(&e);
}

TEST(import_reimport_removes_what_the_file_dropped)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", "{\"id\": \"kp-a\", \"name\": \"A\", \"kind\": \"residential\","
                         " \"members\": [{\"id\": \"hh-1\", \"name\": \"Một\"},"
                         " {\"id\": \"hh-2\", \"name\": \"Hai\"}, {\"id\": \"hh-3\", \"name\": \"Ba\"}]}");
    put(&e, "kp-b.json", "{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\","
                         " \"members\": [\"hh-1\", \"hh-2\"]}");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 2);
    keng_import_report_free(&r);
    ASSERT_EQ(n_memberships(e.st), 5);
    /* kp-b drops its reference to hh-1; kp-a drops hh-2 (still referenced by kp-b) and hh-3
     * (defined nowhere now: the household stays in the store, in no group) */
    put(&e, "kp-a.json", "{\"id\": \"kp-a\", \"name\": \"A\", \"kind\": \"residential\","
                         " \"members\": [{\"id\": \"hh-1\", \"name\": \"Một\"},"
                         " {\"id\": \"hh-4\", \"name\": \"Bốn\"}]}");
    put(&e, "kp-b.json", "{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\","
                         " \"members\": [\"hh-2\"]}");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    ASSERT(in_group(e.st, "kp-a", "hh-1"));
    ASSERT(!in_group(e.st, "kp-b", "hh-1"));
    ASSERT(!in_group(e.st, "kp-a", "hh-2"));
    ASSERT(in_group(e.st, "kp-b", "hh-2"));
    ASSERT(!in_group(e.st, "kp-a", "hh-3"));
    ASSERT(keng_member_exists(e.st, "hh-3"));
    ASSERT(in_group(e.st, "kp-a", "hh-4"));
    ASSERT_EQ(n_memberships(e.st), 3);
    /* a definition that moves to another file leaves the first group */
    put(&e, "kp-a.json", "{\"id\": \"kp-a\", \"name\": \"A\", \"kind\": \"residential\","
                         " \"members\": [{\"id\": \"hh-1\", \"name\": \"Một\"}]}");
    put(&e, "kp-b.json", "{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\","
                         " \"members\": [\"hh-2\", {\"id\": \"hh-4\", \"name\": \"Bốn\"}]}");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    ASSERT(!in_group(e.st, "kp-a", "hh-4"));
    ASSERT(in_group(e.st, "kp-b", "hh-4"));
    char *src = member_source(&e, "hh-4");
    ASSERT_STR_EQ(src, "file:kp-b.json");
    free(src);
    /* no "members" at all is an empty list: the file's households leave */
    put(&e, "kp-b.json", "{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\"}");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM memberships WHERE group_id = 'kp-b'"), 0);
    env_done(&e);
}

/* A household that a file defines, then edited through the API: the next import writes the
 * file's definition again and the file groups' memberships follow the files (the rule of
 * keng/import.h); its memberships in groups made through the API stay. The outcome must not
 * depend on whether the defining file sorts before or after the group it was added to. */
TEST(import_file_member_edited_by_api_follows_the_files)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", "{\"id\": \"kp-a\", \"name\": \"A\", \"kind\": \"residential\","
                         " \"members\": [{\"id\": \"hh-a\", \"name\": \"Hộ A\"}]}");
    put(&e, "kp-m.json", "{\"id\": \"kp-m\", \"name\": \"M\", \"kind\": \"residential\"}");
    put(&e, "kp-z.json", "{\"id\": \"kp-z\", \"name\": \"Z\", \"kind\": \"residential\","
                         " \"members\": [{\"id\": \"hh-z\", \"name\": \"Hộ Z\"}]}");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_ok, 3);
    keng_import_report_free(&r);
    api_group_post(&e, "{\"id\":\"api-g\",\"name\":\"Nhóm API\",\"kind\":\"landlord\"}");
    /* hh-a (kp-a sorts before kp-m) and hh-z (kp-z after) both join kp-m and api-g by API */
    api_member_put(&e, "{\"id\":\"hh-a\",\"name\":\"Hộ A (sửa)\","
                       "\"groups\":[\"kp-a\",\"kp-m\",\"api-g\"]}");
    api_member_put(&e, "{\"id\":\"hh-z\",\"name\":\"Hộ Z (sửa)\","
                       "\"groups\":[\"kp-z\",\"kp-m\",\"api-g\"]}");
    char *src = member_source(&e, "hh-a");
    ASSERT_STR_EQ(src, "api");
    free(src);
    ASSERT(in_group(e.st, "kp-m", "hh-a"));
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    static const char *const ids[] = {"hh-a", "hh-z"};
    static const char *const homes[] = {"kp-a", "kp-z"};
    for (int i = 0; i < 2; i++) {
        cJSON *m = keng_member_get(e.st, ids[i]);
        ASSERT_STR_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(m, "source")), "file:");
        ASSERT(!strstr(cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")), "sửa"));
        cJSON_Delete(m);
        ASSERT(in_group(e.st, homes[i], ids[i]));
        ASSERT(!in_group(e.st, "kp-m", ids[i])); /* a file group: the files say no */
        ASSERT(in_group(e.st, "api-g", ids[i])); /* an API group: no file governs it */
    }
    /* Adding it in the file keeps it, import after import. */
    put(&e, "kp-m.json", "{\"id\": \"kp-m\", \"name\": \"M\", \"kind\": \"residential\","
                         " \"members\": [\"hh-a\", \"hh-z\"]}");
    for (int i = 0; i < 2; i++) {
        import_ok(&e, &r);
        ASSERT_EQ(r.files_bad, 0);
        keng_import_report_free(&r);
        ASSERT(in_group(e.st, "kp-m", "hh-a"));
        ASSERT(in_group(e.st, "kp-m", "hh-z"));
        ASSERT(in_group(e.st, "api-g", "hh-a"));
    }
    /* Once no file defines hh-z and the API has written it, it is the API's: kp-z's file no
     * longer takes it out of kp-z. */
    put(&e, "kp-z.json", "{\"id\": \"kp-z\", \"name\": \"Z\", \"kind\": \"residential\"}");
    put(&e, "kp-m.json", "{\"id\": \"kp-m\", \"name\": \"M\", \"kind\": \"residential\","
                         " \"members\": [\"hh-a\"]}");
    api_member_put(&e, "{\"id\":\"hh-z\",\"name\":\"Hộ Z (API)\"}");
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    src = member_source(&e, "hh-z");
    ASSERT_STR_EQ(src, "api");
    free(src);
    ASSERT(in_group(e.st, "kp-z", "hh-z"));
    ASSERT(in_group(e.st, "kp-m", "hh-z"));
    env_done(&e);
}

/* ---- a leader must be listed ---- */

TEST(import_leader_without_members_refused)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", GROUP_A); /* defines hh-a-1 */
    static const struct {
        const char *text, *needle;
        int line;
    } cases[] = {
        /* the brief's case: relay through a leader that exists nowhere */
        {"{\"id\":\"kp-l\",\"name\":\"L\",\"kind\":\"residential\",\"relay\":\"leader\","
         "\"leader\":\"hh-nobody\"}",
         "hh-nobody", 1},
        /* the leader's line, not the line of "relay": "leader" */
        {"{\n  \"id\": \"kp-l\",\n  \"name\": \"L\",\n  \"kind\": \"residential\",\n"
         "  \"relay\": \"leader\",\n  \"leader\": \"hh-nobody\"\n}\n",
         "members", 6},
        /* a member that exists, but not in this group */
        {"{\n  \"id\": \"kp-l\",\n  \"name\": \"L\",\n  \"kind\": \"residential\",\n"
         "  \"relay\": \"leader\",\n  \"leader\": \"hh-a-1\"\n}\n",
         "hh-a-1", 6},
        /* relay auto: a leader is still checked (as it is when members are present) */
        {"{\n  \"id\": \"kp-l\",\n  \"name\": \"L\",\n  \"kind\": \"residential\",\n"
         "  \"leader\": \"hh-nobody\"\n}\n",
         "hh-nobody", 5},
        {"{\n  \"id\": \"kp-l\",\n  \"name\": \"L\",\n  \"kind\": \"residential\",\n"
         "  \"relay\": \"leader\",\n  \"leader\": \"hh-a-1\",\n  \"members\": []\n}\n",
         "not among", 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put(&e, "kp-l.json", cases[i].text);
        keng_import_report r;
        import_ok(&e, &r);
        ASSERT_EQ(r.files_ok, 1);
        ASSERT_EQ(r.files_bad, 1);
        const cJSON *err = error_for(&r, "kp-l.json");
        if (!strstr(err_reason(err), cases[i].needle) || !strstr(err_reason(err), "leader") ||
            err_line(err) != cases[i].line)
            TEST_FAIL("case %zu: want line %d and \"%s\", got line %d: %s", i, cases[i].line,
                      cases[i].needle, err_line(err), err_reason(err));
        keng_import_report_free(&r);
        ASSERT(!keng_group_exists(e.st, "kp-l"));
    }
    /* Listed (by id, defined elsewhere): fine. */
    put(&e, "kp-l.json", "{\"id\":\"kp-l\",\"name\":\"L\",\"kind\":\"residential\","
                         "\"relay\":\"leader\",\"leader\":\"hh-a-1\",\"members\":[\"hh-a-1\"]}");
    keng_import_report r;
    import_ok(&e, &r);
    ASSERT_EQ(r.files_bad, 0);
    keng_import_report_free(&r);
    ASSERT(in_group(e.st, "kp-l", "hh-a-1"));
    /* The API (POST/PUT /v1/groups) validates with the same function and refuses too. */
    cJSON *g = cJSON_Parse("{\"id\":\"kp-l\",\"name\":\"L\",\"kind\":\"residential\","
                           "\"relay\":\"leader\",\"leader\":\"hh-a-1\"}");
    keng_verr v;
    ASSERT_EQ(keng_group_validate(g, &v), -EINVAL);
    ASSERT_STR_EQ(v.field, "leader");
    ASSERT_STR_CONTAINS(v.message, "hh-a-1");
    cJSON_Delete(g);
    env_done(&e);
}

/* ---- smaller things ---- */

TEST(import_invalid_utf8_reports_its_line)
{
    im_env e;
    env_init(&e);
    static const struct {
        const char *text;
        int line;
    } cases[] = {
        {"{\n \"id\": \"kp-b\",\n \"name\": \"B\",\n \"kind\": \"residential\",\n"
         " \"members\": [{\"id\": \"hh-b-1\", \"name\": \"H\xf4 \xf4ng B\"}]\n}\n",
         5},
        {"{\n \"id\": \"kp-b\",\n \"name\": \"B\xc0\xaf\",\n \"kind\": \"residential\"\n}\n", 3},
        {"{\n \"id\": \"kp-b\",\n \"name\": \"B\xed\xa0\x80\",\n \"kind\": \"residential\"\n}\n",
         3},
        /* a sequence cut by the line break */
        {"{\n \"id\": \"kp-b\",\n \"name\": \"Bắc\",\n \"label\": \"x\xe1\xba\n\",\n}\n", 4},
        {"\xff{\"id\": \"kp-b\"}\n", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put(&e, "kp-b.json", cases[i].text);
        keng_import_report r;
        import_ok(&e, &r);
        ASSERT_EQ(r.files_bad, 1);
        const cJSON *err = error_for(&r, "kp-b.json");
        ASSERT_STR_CONTAINS(err_reason(err), "UTF-8");
        if (err_line(err) != cases[i].line)
            TEST_FAIL("case %zu: want line %d, got %d", i, cases[i].line, err_line(err));
        keng_import_report_free(&r);
    }
    /* the CSV import says the line too */
    put(&e, "to-1.json", "{\"id\": \"to-1\", \"name\": \"Tổ 1\", \"kind\": \"inter_household\"}");
    drop(&e, "kp-b.json");
    keng_import_report r;
    import_ok(&e, &r);
    keng_import_report_free(&r);
    int n;
    char err[256];
    ASSERT_EQ(csv(&e, "to-1", "id,name\nhh-1,A\nhh-2,\"B\nc\xe1\xbb\"\nhh-3,C\n", &n, err,
                  sizeof err),
              -EINVAL);
    ASSERT_STR_CONTAINS(err, "line 4:");
    ASSERT_STR_CONTAINS(err, "UTF-8");
    env_done(&e);
}

TEST(import_duplicate_json_key_refused)
{
    im_env e;
    env_init(&e);
    put(&e, "kp-a.json", GROUP_A);
    static const struct {
        const char *text, *key;
        int line;
    } cases[] = {
        /* "members" twice: the second list would be dropped silently */
        {"{\n  \"id\": \"kp-b\",\n  \"name\": \"B\",\n  \"kind\": \"residential\",\n"
         "  \"members\": [{\"id\": \"hh-b-1\", \"name\": \"Hộ B1\"}],\n"
         "  \"members\": [{\"id\": \"hh-b-2\", \"name\": \"Hộ B2\"}]\n}\n",
         "\"members\"", 6},
        /* in a member object */
        {"{\n  \"id\": \"kp-b\",\n  \"name\": \"B\",\n  \"kind\": \"residential\",\n"
         "  \"members\": [\n    {\"id\": \"hh-b-1\", \"name\": \"Hộ B1\"},\n"
         "    {\"id\": \"hh-b-2\", \"name\": \"Hộ B2\",\n     \"name\": \"Hộ B3\"}\n  ]\n}\n",
         "\"name\"", 8},
        /* in a channel; the same key in sibling objects is fine */
        {"{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\",\n"
         " \"channels\": [{\"type\": \"file\"}, {\"type\": \"webhook\", \"url\": \"http://a\",\n"
         " \"url\": \"http://b\"}]}\n",
         "\"url\"", 3},
        /* spelled differently, the same key for JSON */
        {"{\"id\": \"kp-b\", \"name\": \"B\", \"kind\": \"residential\",\n"
         " \"n\\u0061me\": \"C\"}\n",
         "n\\u0061me", 2},
        /* the group id twice (the second would be ignored) */
        {"{\"id\": \"kp-b\",\n\"id\": \"kp-c\", \"name\": \"B\", \"kind\": \"residential\"}\n",
         "\"id\"", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put(&e, "kp-b.json", cases[i].text);
        keng_import_report r;
        import_ok(&e, &r);
        ASSERT_EQ(r.files_ok, 1);
        ASSERT_EQ(r.files_bad, 1);
        const cJSON *err = error_for(&r, "kp-b.json");
        if (!strstr(err_reason(err), cases[i].key) || !strstr(err_reason(err), "twice") ||
            err_line(err) != cases[i].line)
            TEST_FAIL("case %zu: want line %d and %s, got line %d: %s", i, cases[i].line,
                      cases[i].key, err_line(err), err_reason(err));
        keng_import_report_free(&r);
        ASSERT(!keng_group_exists(e.st, "kp-b"));
        ASSERT(!keng_member_exists(e.st, "hh-b-1"));
    }
    /* The API validates with the same functions: refused there too. */
    cJSON *g = cJSON_Parse("{\"id\":\"kp-b\",\"name\":\"B\",\"kind\":\"residential\","
                           "\"members\":[],\"members\":[\"hh-a-1\"]}");
    keng_verr v;
    ASSERT_EQ(keng_group_validate(g, &v), -EINVAL);
    ASSERT_STR_EQ(v.field, "members");
    ASSERT_STR_CONTAINS(v.message, "twice");
    cJSON_Delete(g);
    cJSON *m = cJSON_Parse("{\"id\":\"hh-x\",\"name\":\"X\",\"phone\":\"0905123456\","
                           "\"phone\":\"0935627481\"}");
    ASSERT_EQ(keng_member_validate(m, 1, &v), -EINVAL);
    ASSERT_STR_CONTAINS(v.message, "phone appears twice");
    cJSON_Delete(m);
    m = cJSON_Parse("{\"type\":\"email\",\"address\":\"a@b.vn\",\"address\":\"c@d.vn\"}");
    ASSERT_EQ(keng_contact_validate(m, "contacts[0]", &v), -EINVAL);
    ASSERT_STR_CONTAINS(v.message, "address appears twice");
    cJSON_Delete(m);
    env_done(&e);
}

static int camera_of(im_env *e, const char *id)
{
    cJSON *m = keng_member_get(e->st, id);
    ASSERT_NOT_NULL(m);
    int cam = cJSON_IsTrue(cJSON_GetObjectItem(m, "camera"));
    cJSON_Delete(m);
    return cam;
}

TEST(import_csv_camera_any_case)
{
    im_env e;
    csv_env(&e);
    static const struct {
        const char *v;
        int yes;
    } cases[] = {
        {"TRUE", 1},  {"FALSE", 0}, {"True", 1}, {"false", 0}, {"YES", 1},   {"No", 0},
        {"1", 1},     {"0", 0},     {"có", 1},   {"Có", 1},    {"CÓ", 1},    {"không", 0},
        {"Không", 0}, {"KHÔNG", 0}, {"co", 1},   {"Khong", 0}, {" yes ", 1}, {"X", 1},
    };
    char text[2048];
    size_t o = (size_t)snprintf(text, sizeof text, "id,name,camera\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "hh-%zu,Hộ %zu,%s\n", i, i + 1,
                              cases[i].v);
    int n;
    char err[256];
    int rc = csv(&e, "to-2", text, &n, err, sizeof err);
    if (rc) TEST_FAIL("import: %d %s", rc, err);
    ASSERT_EQ(n, (int)(sizeof cases / sizeof cases[0]));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char id[16];
        snprintf(id, sizeof id, "hh-%zu", i);
        if (camera_of(&e, id) != cases[i].yes)
            TEST_FAIL("camera \"%s\" read as %d", cases[i].v, !cases[i].yes);
    }
    /* decimal numbers: '.', the Vietnamese ',' (quoted in a comma file), exponent, spaces */
    rc = csv(&e, "to-2", "id,name,lat,lon\nhh-x,X,\"16,05\",1.082e2\nhh-y,Y, -16.5 ,+108\n", &n,
             err, sizeof err);
    if (rc) TEST_FAIL("import: %d %s", rc, err);
    cJSON *m = keng_member_get(e.st, "hh-x");
    ASSERT(cJSON_GetObjectItem(m, "lat")->valuedouble == 16.05);
    ASSERT(cJSON_GetObjectItem(m, "lon")->valuedouble == 108.2);
    cJSON_Delete(m);
    m = keng_member_get(e.st, "hh-y");
    ASSERT(cJSON_GetObjectItem(m, "lat")->valuedouble == -16.5);
    ASSERT(cJSON_GetObjectItem(m, "lon")->valuedouble == 108);
    cJSON_Delete(m);
    env_done(&e);
}

TEST(import_csv_semicolons)
{
    im_env e;
    csv_env(&e);
    /* Excel "CSV" from a Vietnamese locale: ';' between fields, ',' as the decimal point */
    const char *text = "\xEF\xBB\xBF"
                       "id;name;address;phone;camera;lat;lon\r\n"
                       "hh-1;Hộ ông A;\"12 Lê Lợi; tổ 3\";0905 123 456;Có;16,05;108,2\r\n"
                       "hh-2;Hộ bà B, chủ nhà trọ;14 Lê Lợi;;không;;\r\n";
    int n;
    char err[256];
    int rc = csv(&e, "to-1", text, &n, err, sizeof err);
    if (rc) TEST_FAIL("import: %d %s", rc, err);
    ASSERT_EQ(n, 2);
    cJSON *m = keng_member_get(e.st, "hh-1");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "address")), "12 Lê Lợi; tổ 3");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "phone")), "+84905123456");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(m, "camera")));
    ASSERT(cJSON_GetObjectItem(m, "lat")->valuedouble == 16.05);
    ASSERT(cJSON_GetObjectItem(m, "lon")->valuedouble == 108.2);
    cJSON_Delete(m);
    m = keng_member_get(e.st, "hh-2");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")), "Hộ bà B, chủ nhà trọ");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(m, "camera")));
    cJSON_Delete(m);
    ASSERT(in_group(e.st, "to-1", "hh-1"));
    ASSERT(in_group(e.st, "to-1", "hh-2"));
    /* a row with the wrong count of ';' fields names its line */
    rc = csv(&e, "to-1", "id;name\nhh-3;C\nhh-4;D;E\n", &n, err, sizeof err);
    ASSERT_EQ(rc, -EINVAL);
    ASSERT_STR_CONTAINS(err, "line 3");
    ASSERT(!keng_member_exists(e.st, "hh-3"));
    env_done(&e);
}

/* Rows are written as they are read: a bad row undoes the rows before it, and only them. */
TEST(import_csv_nests_in_callers_transaction)
{
    im_env e;
    csv_env(&e);
    int n;
    char err[256];
    ASSERT_EQ(keng_store_begin(e.st), 0);
    api_member_put(&e, "{\"id\":\"hh-api\",\"name\":\"Hộ API\",\"groups\":[\"to-2\"]}");
    ASSERT_EQ(csv(&e, "to-1", "id,name\nhh-1,A\nhh-2,B\nhh-3,C,x\n", &n, err, sizeof err),
              -EINVAL);
    ASSERT_STR_CONTAINS(err, "line 4");
    ASSERT_EQ(n, 0);
    ASSERT(!keng_member_exists(e.st, "hh-1"));
    ASSERT(!keng_member_exists(e.st, "hh-2"));
    ASSERT(!sqlite3_get_autocommit(keng_store_db(e.st))); /* the caller's is still open */
    ASSERT(keng_member_exists(e.st, "hh-api"));           /* with its own work in it */
    ASSERT_EQ(csv(&e, "to-1", "id,name\nhh-1,A\n", &n, err, sizeof err), 0);
    ASSERT_EQ(n, 1);
    ASSERT(in_group(e.st, "to-1", "hh-1"));
    keng_store_rollback(e.st); /* the caller's rollback takes the import with it */
    ASSERT(!keng_member_exists(e.st, "hh-1"));
    ASSERT(!keng_member_exists(e.st, "hh-api"));
    ASSERT(sqlite3_get_autocommit(keng_store_db(e.st)));
    env_done(&e);
}

/* ---- a big sheet ---- */

/* 50,000 generated rows. Each row used to scan the rows before it (and cJSON_GetArraySize
 * walked the list): ~70 s at -O2 for this size. Linear now: well under a second. The timeout
 * is generous; the test asserts what was imported, not how fast. */
TEST_TIMEOUT(import_csv_50000_rows, 60)
{
    im_env e;
    csv_env(&e);
    enum { ROWS = 50000 };
    size_t cap = (size_t)ROWS * 64 + 64, o = 0;
    char *text = malloc(cap);
    ASSERT_NOT_NULL(text);
    o += (size_t)snprintf(text + o, cap - o, "id,name,phone,camera,lat\n");
    for (int i = 0; i < ROWS; i++)
        o += (size_t)snprintf(text + o, cap - o, "hh-b-%05d,Hộ số %d,09%08d,%s,16.%04d\n", i, i,
                              i, i % 3 ? "có" : "0", i % 10000);
    /* with the first id again at the end: refused whole, naming both lines */
    char *dup = malloc(o + 64);
    ASSERT_NOT_NULL(dup);
    memcpy(dup, text, o);
    snprintf(dup + o, 64, "hh-b-00000,Lần hai,,,\n");
    int n = -1;
    char err[256] = "";
    int rc = keng_import_csv(e.st, "to-1", dup, strlen(dup), &n, err, sizeof err);
    ASSERT_EQ(rc, -EINVAL);
    ASSERT_EQ(n, 0);
    char want[64];
    snprintf(want, sizeof want, "line %d: id hh-b-00000 appears twice", ROWS + 2);
    ASSERT_STR_CONTAINS(err, want);
    ASSERT_STR_CONTAINS(err, "first on line 2");
    ASSERT_EQ(n_members(e.st), 1);
    free(dup);

    rc = keng_import_csv(e.st, "to-1", text, o, &n, err, sizeof err);
    if (rc) TEST_FAIL("import: %d %s", rc, err);
    ASSERT_EQ(n, ROWS);
    ASSERT_EQ(n_members(e.st), ROWS + 1);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM memberships WHERE group_id = 'to-1'"), ROWS + 1);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM members WHERE source = 'csv'"), ROWS);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM members WHERE camera = 1"), ROWS - (ROWS + 2) / 3);
    char *last = q_str(e.st, "SELECT name || '|' || phone || '|' || lat FROM members"
                             " WHERE id = 'hh-b-49999'");
    ASSERT_STR_EQ(last, "Hộ số 49999|+84900049999|16.9999");
    free(last);
    /* and a re-import of groups/ keeps all of them in to-1 */
    keng_import_report r;
    import_ok(&e, &r);
    keng_import_report_free(&r);
    ASSERT_EQ(q_int(e.st, "SELECT count(*) FROM memberships WHERE group_id = 'to-1'"), ROWS + 1);
    free(text);
    env_done(&e);
}
