/* fuzz_groups_import: everything that reads the ward's groups as data. Each input goes three
 * ways, as an administrator could send it:
 *  1. as a group object (groups/ file, POST /v1/groups): keng_group_validate, then each entry of
 *     "members" as an id or through keng_member_validate; when all pass, the upserts, the
 *     membership and the parent-cycle check run against the store and the views read it back;
 *     the root object also goes through keng_member_validate and keng_contact_validate;
 *  2. as the only file of a groups/ directory, through keng_import_dir, when it is a JSON object
 *     (named after its id when it has a valid one, so that the whole file check and the apply
 *     step are reached). Only objects, because each keng_import_dir call costs ~30 ms under
 *     ASan (import.c reads every file into a 16 MB buffer), and a non-object stops at the JSON
 *     check that the other paths already cover;
 *  3. as a spreadsheet export, through keng_import_csv into a group made at start-up.
 * One in-memory store serves the whole run; every store change happens inside a transaction the
 * harness rolls back, so each input sees the same store and a crash replays alone. */
#include "keng/groups.h"
#include "keng/import.h"
#include "keng/log.h"
#include "keng/store.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static keng_store *st;
static char dir[64];

static void must(int ok)
{
    if (!ok) abort();
}

static void at_exit(void)
{
    rmdir(dir); /* each input's file is gone already */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    keng_log_set_level(KENG_LOG_ERROR);
    must(keng_store_open(":memory:", &st) == 0);
    /* The group the CSV goes into, and a member the group files may refer to by id. */
    cJSON *g = cJSON_Parse("{\"id\":\"fuzz-csv\",\"name\":\"Fuzz\",\"kind\":\"residential\"}");
    cJSON *m = cJSON_Parse("{\"id\":\"hh-1-001\",\"name\":\"Hộ ông A\",\"phone\":\"0905123456\"}");
    keng_verr e;
    must(g && m && keng_group_validate(g, &e) == 0 && keng_member_validate(m, 0, &e) == 0);
    must(keng_store_begin(st) == 0);
    must(keng_group_upsert(st, g, "file:fuzz-csv.json") == 0);
    must(keng_member_upsert(st, m, "api") == 0);
    must(keng_store_commit(st) == 0);
    cJSON_Delete(g);
    cJSON_Delete(m);
    snprintf(dir, sizeof dir, "/tmp/keng-fuzz-groups-XXXXXX");
    must(mkdtemp(dir) != NULL);
    atexit(at_exit);
    return 0;
}

static void as_group(const cJSON *root)
{
    keng_verr e;
    cJSON *g = cJSON_Duplicate(root, 1);
    if (!g) return;
    int ok = keng_group_validate(g, &e) == 0;
    cJSON *ms = cJSON_GetObjectItemCaseSensitive(g, "members");
    for (cJSON *m = cJSON_IsArray(ms) ? ms->child : NULL; m; m = m->next) {
        if (cJSON_IsString(m)) ok &= keng_groups_valid_id(m->valuestring);
        else ok &= keng_member_validate(m, 0, &e) == 0;
    }
    if (ok) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "id"));
        const char *parent = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "parent"));
        must(id != NULL);
        must(keng_store_begin(st) == 0);
        int rc = 0;
        for (cJSON *m = cJSON_IsArray(ms) ? ms->child : NULL; m && !rc; m = m->next)
            if (cJSON_IsObject(m)) rc = keng_member_upsert(st, m, "api");
        if (!rc && parent) (void)keng_group_parent_cycle(st, id, parent);
        if (!rc) rc = keng_group_upsert(st, g, "api");
        if (!rc && ms) rc = keng_group_set_members(st, id, ms);
        if (!rc) {
            int total = 0;
            cJSON_Delete(keng_group_get(st, id, 1));
            cJSON_Delete(keng_members_list(st, id, 10, 0, &total));
            cJSON_Delete(keng_groups_list(st, NULL, parent, 10, 0, &total));
            (void)keng_group_delete(st, id);
        }
        keng_store_rollback(st);
    }
    cJSON_Delete(g);

    cJSON *m = cJSON_Duplicate(root, 1);
    if (m && keng_member_validate(m, 1, &e) == 0) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
        cJSON *groups = cJSON_GetObjectItemCaseSensitive(m, "groups");
        must(keng_store_begin(st) == 0);
        int rc = keng_member_upsert(st, m, "api");
        if (!rc && id && groups) (void)keng_member_set_groups(st, id, groups);
        if (!rc && id) cJSON_Delete(keng_member_get(st, id));
        keng_store_rollback(st);
    }
    cJSON_Delete(m);
    (void)keng_contact_validate(root, "contacts[0]", &e);
}

static void as_file(const uint8_t *data, size_t size, const cJSON *root)
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "id"));
    char path[160];
    snprintf(path, sizeof path, "%s/%s.json", dir, id && keng_groups_valid_id(id) ? id : "fuzz");
    FILE *fp = fopen(path, "wb");
    must(fp != NULL);
    must(fwrite(data, 1, size, fp) == size || size == 0);
    must(fclose(fp) == 0);
    keng_import_report r;
    must(keng_store_begin(st) == 0); /* the importer's own transaction nests in this one */
    (void)keng_import_dir(st, dir, &r);
    keng_store_rollback(st);
    keng_import_report_free(&r);
    must(unlink(path) == 0);
}

static void as_csv(const uint8_t *data, size_t size)
{
    int imported = 0;
    char err[256];
    must(keng_store_begin(st) == 0);
    int rc = keng_import_csv(st, "fuzz-csv", (const char *)data, size, &imported, err, sizeof err);
    if (rc == -ENOENT) abort(); /* the group exists: only a leaked rollback could hide it */
    keng_store_rollback(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024) return 0;
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    if (root) as_group(root);
    if (cJSON_IsObject(root)) as_file(data, size, root);
    cJSON_Delete(root);
    as_csv(data, size);
    return 0;
}
