/* keng groups list|show|import — the ward's groups. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char usage_text[] =
    "Cách dùng / usage:\n"
    "  keng groups list [--kind K] [--parent P]   các nhóm / list groups\n"
    "  keng groups show ID                        một nhóm, thành viên / one group, its members\n"
    "  keng groups import FILE.csv --group ID     nhập hộ dân từ bảng tính / import households\n"
    "  keng groups import FILE.json …             tạo hoặc cập nhật nhóm / create or update\n"
    "Loại / kinds: residential, inter_household, pawnshop, guesthouse, landlord, other.\n"
    "CSV: dòng đầu ghi tên cột như / a header row naming columns such as id, name, address,\n"
    "  phone, lang, camera.\n";

static int list(keng_cli *c, const keng_cli_args *a)
{
    static const char *const known[] = {"kind", "parent", NULL};
    int rc = keng_cli_args_check(a, known, 0);
    if (rc) return keng_cli_usage(usage_text, 0);
    keng_buf p;
    keng_buf_init(&p, 4096);
    if (keng_cli_buf_path_query(&p, "/v1/groups", a, known)) {
        keng_buf_free(&p);
        return keng_cli_say("truy vấn quá dài", "the query is too long");
    }
    cJSON *all;
    rc = keng_cli_get_all(c, p.data, &all);
    keng_buf_free(&p);
    if (rc) return rc;
    if (c->json) {
        keng_cli_print_json(all);
    } else {
        static const char *const head[] = {"Mã / ID",        "Tên / Name",   "Loại / Kind",
                                           "Thuộc / Parent", "Hộ / Members", "Chuyển / Relay"};
        keng_cli_table t;
        keng_cli_table_init(&t, 6, head);
        const cJSON *g;
        cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(all, "items"))
        {
            char n[32];
            keng_cli_value_text(cJSON_GetObjectItemCaseSensitive(g, "member_count"), n, sizeof n);
            const char *kind = keng_cli_str(g, "kind"), *label = keng_cli_str(g, "label");
            char kb[160];
            if (*label)
                snprintf(kb, sizeof kb, "%s (%s)", kind, label);
            else
                snprintf(kb, sizeof kb, "%s", kind);
            const char *row[] = {
                keng_cli_str(g, "id"),   keng_cli_str(g, "name"), kb, keng_cli_str(g, "parent"), n,
                keng_cli_str(g, "relay")};
            keng_cli_table_row(&t, row);
        }
        int total = (int)keng_cli_num(all, "total", 0);
        keng_cli_table_print(&t);
        printf("%d nhóm / groups\n", total);
    }
    cJSON_Delete(all);
    return 0;
}

static int show(keng_cli *c, const keng_cli_args *a)
{
    if (keng_cli_args_check(a, NULL, 1) || a->npos != 1) return keng_cli_usage(usage_text, 0);
    keng_buf p;
    keng_buf_init(&p, 4096);
    if (keng_buf_puts(&p, "/v1/groups/") || keng_cli_buf_esc(&p, a->pos[0])) {
        keng_buf_free(&p);
        return keng_cli_say("mã quá dài", "the id is too long");
    }
    keng_cli_reply r;
    int rc = keng_cli_request(c, "GET", p.data, NULL, NULL, 0, 0, &r);
    keng_buf_free(&p);
    if (!rc && c->json) {
        keng_cli_print_raw(&r);
    } else if (!rc) {
        printf("Nhóm / Group: %s — %s\n", keng_cli_str(r.json, "id"), keng_cli_str(r.json, "name"));
        static const char *const skip[] = {"id", "name", "members", "children", NULL};
        keng_cli_print_fields(r.json, skip);
        const cJSON *kids = cJSON_GetObjectItemCaseSensitive(r.json, "children");
        if (cJSON_GetArraySize(kids) > 0) {
            char v[4096];
            printf("Nhóm con / children: %s\n", keng_cli_value_text(kids, v, sizeof v));
        }
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(r.json, "members"), *m;
        printf("Thành viên / Members (%d):\n", cJSON_GetArraySize(ms));
        cJSON_ArrayForEach(m, ms)
        {
            if (cJSON_IsString(m))
                printf("  %s\n", m->valuestring);
            else if (cJSON_IsObject(m))
                printf("  %s  %s\n", keng_cli_str(m, "id"), keng_cli_str(m, "name"));
        }
    }
    keng_cli_reply_free(&r);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcasecmp(s + n - k, suffix);
}

static int import_csv(keng_cli *c, const char *file, const char *group)
{
    keng_buf body, p;
    keng_buf_init(&body, KENG_CLI_MAX_FILE);
    keng_buf_init(&p, 4096);
    if (keng_cli_read_file(file, KENG_CLI_MAX_FILE, &body)) {
        keng_buf_free(&body);
        return KENG_CLI_FAIL;
    }
    int rc = 0;
    if (keng_buf_puts(&p, "/v1/groups/") || keng_cli_buf_esc(&p, group) ||
        keng_buf_puts(&p, "/import"))
        rc = keng_cli_say("mã nhóm quá dài", "the group id is too long");
    keng_cli_reply r = {0};
    if (!rc)
        rc = keng_cli_request(c, "POST", p.data, "text/csv; charset=utf-8",
                              body.data ? body.data : "", body.len, 0, &r);
    if (!rc && c->json)
        keng_cli_print_raw(&r);
    else if (!rc)
        printf("Đã nhập %.0f hộ / imported %.0f households\n", keng_cli_num(r.json, "imported", 0),
               keng_cli_num(r.json, "imported", 0));
    keng_cli_reply_free(&r);
    keng_buf_free(&body);
    keng_buf_free(&p);
    return rc;
}

/* PUT the group where it exists, POST it where it does not. */
static int import_json(keng_cli *c, const char *file)
{
    cJSON *g = keng_cli_read_json(file);
    if (!g) return KENG_CLI_FAIL;
    const char *id = keng_cli_str(g, "id");
    if (!cJSON_IsObject(g) || !*id) {
        cJSON_Delete(g);
        return keng_cli_fail("tệp nhóm phải là một đối tượng JSON có \"id\"",
                             "a group file is one JSON object with an \"id\"", "%s", file);
    }
    char *s = cJSON_PrintUnformatted(g);
    keng_buf p;
    keng_buf_init(&p, 4096);
    int rc = 0, created = 0;
    if (!s)
        rc = keng_cli_nomem();
    else if (keng_buf_puts(&p, "/v1/groups/") || keng_cli_buf_esc(&p, id))
        rc = keng_cli_say("mã nhóm quá dài", "the group id is too long");
    keng_cli_reply r = {0};
    if (!rc) {
        rc = keng_cli_request(c, "PUT", p.data, "application/json", s, strlen(s), 404, &r);
        if (rc == KENG_CLI_FAIL && r.status == 404) {
            keng_cli_reply_free(&r);
            created = 1;
            rc = keng_cli_request(c, "POST", "/v1/groups", "application/json", s, strlen(s), 0, &r);
        }
    }
    if (rc && r.status >= 400) keng_cli_sayf("chưa nhập được", "not imported", "%s", file);
    if (!rc && c->json)
        keng_cli_print_raw(&r);
    else if (!rc)
        printf("%s %s (%.0f hộ / members)\n",
               created ? "Đã tạo / created" : "Đã cập nhật / updated", id,
               keng_cli_num(r.json, "member_count", 0));
    keng_cli_reply_free(&r);
    keng_buf_free(&p);
    free(s);
    cJSON_Delete(g);
    return rc;
}

static int import(keng_cli *c, const keng_cli_args *a)
{
    static const char *const known[] = {"group", NULL};
    if (keng_cli_args_check(a, known, 1000) || a->npos < 1) return keng_cli_usage(usage_text, 0);
    const char *group = keng_cli_args_get(a, "group");
    int rc = 0;
    for (int i = 0; i < a->npos && !rc; i++) {
        const char *f = a->pos[i];
        if (ends_with(f, ".csv")) {
            if (!group) {
                keng_cli_sayf("nhập CSV cần --group ID (nhóm mà các hộ tham gia)",
                              "importing a CSV needs --group ID (the group the households join)",
                              "%s", f);
                return keng_cli_usage(usage_text, 0);
            }
            rc = import_csv(c, f, group);
        } else {
            rc = import_json(c, f);
        }
    }
    return rc;
}

int keng_cli_cmd_groups(keng_cli *c, int argc, char **argv)
{
    if (argc < 1) return keng_cli_usage(usage_text, 0);
    keng_cli_args a;
    int rc = keng_cli_args_parse(c, argc - 1, argv + 1, NULL, 0, &a);
    const char *sub = argv[0];
    if (rc) {
        keng_cli_args_free(&a);
        return rc == KENG_CLI_USAGE ? keng_cli_usage(usage_text, 0) : rc;
    }
    if (a.help || !strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help"))
        rc = keng_cli_usage(usage_text, 1);
    else if (!strcmp(sub, "list"))
        rc = list(c, &a);
    else if (!strcmp(sub, "show") || !strcmp(sub, "get"))
        rc = show(c, &a);
    else if (!strcmp(sub, "import"))
        rc = import(c, &a);
    else {
        keng_cli_sayf("không có lệnh này", "unknown command", "groups %s", sub);
        rc = keng_cli_usage(usage_text, 0);
    }
    keng_cli_args_free(&a);
    return rc;
}
