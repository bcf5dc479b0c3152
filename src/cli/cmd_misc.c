/* The small commands: token create, render (offline), health, lookup, audit verify. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keng/template.h"

/* Parses argv with no boolean flags; help text printed on --help. Returns -1 when the caller
 * should go on, or the exit code. */
static int parse(keng_cli *c, int argc, char **argv, const char *usage, const char *const *known,
                 int max_pos, keng_cli_args *a)
{
    int rc = keng_cli_args_parse(c, argc, argv, NULL, 0, a);
    if (rc == KENG_CLI_USAGE) return keng_cli_usage(usage, 0);
    if (rc) return rc;
    if (a->help) return keng_cli_usage(usage, 1);
    if (keng_cli_args_check(a, known, max_pos)) return keng_cli_usage(usage, 0);
    return -1;
}

/* ---- token ---- */

static const char token_usage[] =
    "Cách dùng / usage: keng token create --role admin|officer|leader|viewer [--name N] "
    "[--group G]\n"
    "In token mới một lần duy nhất; kengd chỉ giữ mã băm. Token tổ trưởng cần --group.\n"
    "Prints the new token once; kengd keeps only its hash. A leader token needs --group.\n";

int keng_cli_cmd_token(keng_cli *c, int argc, char **argv)
{
    static const char *const known[] = {"role", "name", "group", NULL};
    if (argc < 1) return keng_cli_usage(token_usage, 0);
    keng_cli_args a;
    int rc = parse(c, argc - 1, argv + 1, token_usage, known, 0, &a);
    if (rc < 0 && strcmp(argv[0], "create")) {
        rc = strcmp(argv[0], "--help") && strcmp(argv[0], "-h") ? keng_cli_usage(token_usage, 0)
                                                                : keng_cli_usage(token_usage, 1);
    } else if (rc < 0 && !keng_cli_args_get(&a, "role")) {
        keng_cli_say("token create cần --role", "token create needs --role");
        rc = keng_cli_usage(token_usage, 0);
    } else if (rc < 0) {
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "role", keng_cli_args_get(&a, "role"));
        const char *name = keng_cli_args_get(&a, "name"), *group = keng_cli_args_get(&a, "group");
        if (name) cJSON_AddStringToObject(b, "name", name);
        if (group) cJSON_AddStringToObject(b, "group", group);
        keng_cli_reply r;
        rc = keng_cli_request_json(c, "POST", "/v1/tokens", b, &r);
        cJSON_Delete(b);
        if (!rc && c->json) {
            keng_cli_print_raw(&r);
        } else if (!rc) {
            puts(keng_cli_str(r.json, "token"));
            if (isatty(1))
                keng_cli_sayf("chỉ hiện một lần", "shown once",
                              "hãy cất ở nơi an toàn / keep it somewhere safe");
        }
        keng_cli_reply_free(&r);
    }
    keng_cli_args_free(&a);
    return rc;
}

/* ---- render ---- */

static const char render_usage[] =
    "Cách dùng / usage: keng render TEMPLATE DATA.json\n"
    "Dựng một tệp mẫu tin với dữ liệu, không cần kengd, cùng các mẫu con trong thư mục\n"
    "templates/partials bên cạnh. DATA là '-' để đọc từ đầu vào chuẩn.\n"
    "Renders one template file with the data, offline (no kengd needed), with the partials from\n"
    "the templates/partials folder beside it. DATA may be '-' for standard input.\n"
    "Ví dụ / example: keng render templates/msg/lost_elder.alert.vi.mustache "
    "templates/samples/lost_elder.json\n";

int keng_cli_cmd_render(keng_cli *c, int argc, char **argv)
{
    keng_cli_args a;
    int rc = parse(c, argc, argv, render_usage, NULL, 2, &a);
    if (rc >= 0) {
        keng_cli_args_free(&a);
        return rc;
    }
    if (a.npos != 2) {
        keng_cli_args_free(&a);
        return keng_cli_usage(render_usage, 0);
    }
    cJSON *data = keng_cli_read_json(!strcmp(a.pos[1], "-") ? "/dev/stdin" : a.pos[1]);
    rc = data ? 0 : KENG_CLI_FAIL;
    keng_buf out;
    keng_buf_init(&out, KENG_TPL_MAX_OUTPUT);
    char err[512] = "";
    if (!rc) {
        int r = keng_tpl_render_path(a.pos[0], data, &out, err, sizeof err);
        if (r)
            rc = keng_cli_fail("không dựng được mẫu tin", "cannot render the template", "%s",
                               err[0] ? err : strerror(-r));
    }
    if (!rc && c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", out.data ? out.data : "");
        cJSON_AddNumberToObject(o, "length",
                                (double)keng_tpl_utf8_len(out.data ? out.data : "", out.len));
        keng_cli_print_json(o);
        cJSON_Delete(o);
    } else if (!rc && out.len) {
        fwrite(out.data, 1, out.len, stdout);
    }
    keng_buf_free(&out);
    cJSON_Delete(data);
    keng_cli_args_free(&a);
    return rc;
}

/* ---- health ---- */

static const char health_usage[] = "Cách dùng / usage: keng health\n"
                                   "Hỏi kengd có đang chạy không (GET /healthz; không cần token).\n"
                                   "Asks kengd whether it is up (GET /healthz; no token needed).\n";

int keng_cli_cmd_health(keng_cli *c, int argc, char **argv)
{
    keng_cli_args a;
    int rc = parse(c, argc, argv, health_usage, NULL, 0, &a);
    keng_cli_args_free(&a);
    if (rc >= 0) return rc;
    keng_cli_reply r;
    rc = keng_cli_request(c, "GET", "/healthz", NULL, NULL, 0, 0, &r);
    if (!rc && c->json)
        keng_cli_print_raw(&r);
    else if (!rc)
        printf("ok — kengd đang chạy / kengd is up: %s\n", c->url);
    keng_cli_reply_free(&r);
    return rc;
}

/* ---- lookup ---- */

static const char lookup_usage[] =
    "Cách dùng / usage: keng lookup --plate P | --phone P | --account A\n"
    "Tin báo đang hiệu lực nhắc tới biển số, số điện thoại hay số tài khoản này (viết kiểu nào\n"
    "cũng được).\n"
    "Active alerts that name this plate, phone number or bank account (any usual spelling).\n";

int keng_cli_cmd_lookup(keng_cli *c, int argc, char **argv)
{
    static const char *const known[] = {"plate", "phone", "account", NULL};
    keng_cli_args a;
    int rc = parse(c, argc, argv, lookup_usage, known, 0, &a);
    if (rc >= 0) {
        keng_cli_args_free(&a);
        return rc;
    }
    keng_buf p;
    keng_buf_init(&p, 4096);
    rc = 0;
    if (keng_cli_buf_path_query(&p, "/v1/lookup", &a, known))
        rc = keng_cli_say("truy vấn quá dài", "the query is too long");
    else if (a.nopt == 0)
        rc = keng_cli_usage(lookup_usage, 0);
    keng_cli_args_free(&a);
    keng_cli_reply r = {0};
    if (!rc) rc = keng_cli_request(c, "GET", p.data, NULL, NULL, 0, 0, &r);
    keng_buf_free(&p);
    if (!rc && c->json) {
        keng_cli_print_raw(&r);
    } else if (!rc) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(r.json, "items"), *it;
        if (!items) items = cJSON_IsArray(r.json) ? r.json : NULL;
        int n = cJSON_GetArraySize(items);
        if (n == 0) printf("không có tin báo nào / no active alert names it\n");
        cJSON_ArrayForEach(it, items)
        {
            char sum[512], matched[64] = "";
            keng_cli_alert_summary(it, sum, sizeof sum);
            const cJSON *m;
            cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(it, "matched"))
            {
                size_t l = strlen(matched);
                snprintf(matched + l, sizeof matched - l, "%s%s", l ? "," : "",
                         cJSON_GetStringValue(m) ? m->valuestring : "");
            }
            printf("%s  %s  %s  [%s]\n", keng_cli_str(it, "id"), keng_cli_str(it, "kind"), sum,
                   matched);
        }
    }
    keng_cli_reply_free(&r);
    return rc;
}

/* ---- audit ---- */

static const char audit_usage[] = "Cách dùng / usage: keng audit verify\n"
                                  "Kiểm tra chuỗi băm của nhật ký kiểm toán kengd.\n"
                                  "Checks the hash chain of kengd's audit log.\n";

int keng_cli_cmd_audit(keng_cli *c, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "verify")) {
        int help = argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"));
        return keng_cli_usage(audit_usage, help);
    }
    keng_cli_args a;
    int rc = parse(c, argc - 1, argv + 1, audit_usage, NULL, 0, &a);
    keng_cli_args_free(&a);
    if (rc >= 0) return rc;
    keng_cli_reply r;
    rc = keng_cli_request(c, "GET", "/v1/audit/verify", NULL, NULL, 0, 0, &r);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(r.json, "ok");
    if (!rc && c->json)
        keng_cli_print_raw(&r);
    else if (!rc && cJSON_IsTrue(ok))
        printf("ok — nhật ký nguyên vẹn / the audit chain is intact\n");
    if (!rc && !cJSON_IsTrue(ok)) {
        if (!c->json) {
            char v[1024];
            keng_cli_sayf("nhật ký kiểm toán đã bị sửa hoặc hỏng", "the audit chain is broken",
                          "%s", keng_cli_value_text(r.json, v, sizeof v));
        }
        rc = KENG_CLI_FAIL;
    }
    keng_cli_reply_free(&r);
    return rc;
}
