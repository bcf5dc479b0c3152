/* keng members list|add — households and businesses. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "Cách dùng / usage:\n"
    "  keng members list [--group ID]\n"
    "  keng members add --id ID --name NAME [--phone P] [--address A] [--lang vi|en]\n"
    "                   [--camera] [--group G]…\n"
    "--camera: hộ có camera nhìn ra đường (được nhờ trích xuất clip) / the household has a\n"
    "  camera facing the street (asked for footage).\n"
    "--group ghi được nhiều lần, hộ vào từng nhóm / may be repeated; the member joins each\n"
    "  group.\n";

static int list(keng_cli *c, const keng_cli_args *a)
{
    static const char *const known[] = {"group", NULL};
    if (keng_cli_args_check(a, known, 0)) return keng_cli_usage(usage_text, 0);
    keng_buf p;
    keng_buf_init(&p, 4096);
    if (keng_buf_puts(&p, "/v1/members") ||
        keng_cli_buf_query(&p, "group", keng_cli_args_get(a, "group"))) {
        keng_buf_free(&p);
        return keng_cli_say("truy vấn quá dài", "the query is too long");
    }
    cJSON *all;
    int rc = keng_cli_get_all(c, p.data, &all);
    keng_buf_free(&p);
    if (rc) return rc;
    if (c->json) {
        keng_cli_print_json(all);
    } else {
        static const char *const head[] = {
            "Mã / ID",           "Tên / Name",    "Điện thoại / Phone",
            "Địa chỉ / Address", "Nhóm / Groups", "Camera"};
        keng_cli_table t;
        keng_cli_table_init(&t, 6, head);
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(all, "items"))
        {
            char gs[512], cam[16];
            keng_cli_value_text(cJSON_GetObjectItemCaseSensitive(m, "groups"), gs, sizeof gs);
            keng_cli_value_text(cJSON_GetObjectItemCaseSensitive(m, "camera"), cam, sizeof cam);
            const char *row[] = {keng_cli_str(m, "id"),
                                 keng_cli_str(m, "name"),
                                 keng_cli_str(m, "phone"),
                                 keng_cli_str(m, "address"),
                                 gs,
                                 cam};
            keng_cli_table_row(&t, row);
        }
        keng_cli_table_print(&t);
        printf("%.0f hộ / members\n", keng_cli_num(all, "total", 0));
    }
    cJSON_Delete(all);
    return 0;
}

static int add(keng_cli *c, const keng_cli_args *a)
{
    static const char *const known[] = {"id",     "name",  "phone", "address", "lang",
                                        "camera", "group", "lat",   "lon",     NULL};
    if (keng_cli_args_check(a, known, 0)) return keng_cli_usage(usage_text, 0);
    const char *id = keng_cli_args_get(a, "id"), *name = keng_cli_args_get(a, "name");
    if (!id || !name) {
        keng_cli_say("members add cần --id và --name", "members add needs --id and --name");
        return keng_cli_usage(usage_text, 0);
    }
    cJSON *m = cJSON_CreateObject();
    cJSON *groups = NULL;
    int rc = 0;
    for (int i = 0; i < a->nopt && !rc; i++) {
        const char *k = a->opt[i].name, *v = a->opt[i].val;
        if (!strcmp(k, "camera")) {
            int on = !v || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1");
            cJSON_DeleteItemFromObjectCaseSensitive(m, "camera");
            cJSON_AddBoolToObject(m, "camera", on);
        } else if (!strcmp(k, "group")) {
            if (!groups) groups = cJSON_AddArrayToObject(m, "groups");
            cJSON_AddItemToArray(groups, cJSON_CreateString(v));
        } else if (!strcmp(k, "lat") || !strcmp(k, "lon")) {
            char *end;
            double d = strtod(v, &end);
            if (end == v || *end) {
                keng_cli_sayf("cần một con số", "needs a number", "--%s '%s'", k, v);
                rc = KENG_CLI_USAGE;
            }
            cJSON_DeleteItemFromObjectCaseSensitive(m, k);
            cJSON_AddNumberToObject(m, k, d);
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(m, k);
            cJSON_AddStringToObject(m, k, v);
        }
    }
    keng_cli_reply r = {0};
    c->fields_are_flags = 1;
    if (!rc) rc = keng_cli_request_json(c, "POST", "/v1/members", m, &r);
    if (!rc && c->json)
        keng_cli_print_raw(&r);
    else if (!rc) {
        char gs[512];
        keng_cli_value_text(cJSON_GetObjectItemCaseSensitive(r.json, "groups"), gs, sizeof gs);
        printf("Đã thêm / added %s%s%s\n", keng_cli_str(r.json, "id"), *gs ? " → " : "", gs);
    }
    keng_cli_reply_free(&r);
    cJSON_Delete(m);
    return rc;
}

int keng_cli_cmd_members(keng_cli *c, int argc, char **argv)
{
    if (argc < 1) return keng_cli_usage(usage_text, 0);
    static const char *const bools[] = {"camera", NULL};
    keng_cli_args a;
    int rc = keng_cli_args_parse(c, argc - 1, argv + 1, bools, 0, &a);
    const char *sub = argv[0];
    if (rc) {
        keng_cli_args_free(&a);
        return rc == KENG_CLI_USAGE ? keng_cli_usage(usage_text, 0) : rc;
    }
    if (a.help || !strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help"))
        rc = keng_cli_usage(usage_text, 1);
    else if (!strcmp(sub, "list"))
        rc = list(c, &a);
    else if (!strcmp(sub, "add"))
        rc = add(c, &a);
    else {
        keng_cli_sayf("không có lệnh này", "unknown command", "members %s", sub);
        rc = keng_cli_usage(usage_text, 0);
    }
    keng_cli_args_free(&a);
    return rc;
}
