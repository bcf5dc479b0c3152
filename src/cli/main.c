/* keng: the command-line client of kengd. Global flags, then one command word. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

static const char usage_text[] =
    "Cách dùng / usage: keng [--url URL] [--token TOKEN | --token-file FILE] [--json] COMMAND …\n"
    "\n"
    "Lệnh / commands:\n"
    "  groups list [--kind K] [--parent P]     các nhóm / list groups\n"
    "  groups show ID                          một nhóm / one group\n"
    "  groups import FILE.csv --group ID       nhập hộ dân từ CSV / import households\n"
    "  groups import FILE.json …               tạo hoặc cập nhật nhóm / create or update groups\n"
    "  members list [--group ID]               hộ dân, cơ sở / households and businesses\n"
    "  members add --id ID --name NAME …       thêm hộ / add a household\n"
    "  alert new KIND --field value …          tạo tin báo / create an alert (alert --help)\n"
    "  alert list|show|preview|publish|update|resolve|cancel|watch|deliveries|redeliver\n"
    "                                          theo dõi và thay đổi tin báo / follow and change\n"
    "  lookup --plate P | --phone P | --account A   tin báo nhắc tới / active alerts naming it\n"
    "  audit verify                            kiểm tra nhật ký / check the audit chain\n"
    "  token create --role R [--name N] [--group G]   tạo token / create a token\n"
    "  render TEMPLATE DATA.json               xem trước mẫu tin, không cần máy chủ / offline\n"
    "  health                                  kengd có chạy không / is kengd up\n"
    "\n"
    "Kết nối: --url, nếu không có thì KENG_URL, rồi ~/.config/keng/config (url = …), sau cùng\n"
    "  " KENG_CLI_DEFAULT_URL ". Token: --token, --token-file, KENG_TOKEN, rồi token = … ở đó.\n"
    "Connection: --url, then KENG_URL, then ~/.config/keng/config (url = …), else\n"
    "  " KENG_CLI_DEFAULT_URL ". Token: --token, --token-file, KENG_TOKEN, then token = … there.\n"
    "--json: in nguyên JSON của kengd / prints kengd's JSON as is.\n"
    "Mọi lệnh đều nhận --help / every command takes --help.\n"
    "Mã thoát / exit: 0 xong / ok · 1 bị từ chối, lỗi / refused, failed ·\n"
    "  2 không tới được kengd / kengd unreachable · 64 dùng sai lệnh / usage error.\n";

static int global_opt(keng_cli *c, int argc, char **argv, int *i)
{
    const char *w = argv[*i];
    const char *names[] = {"--url", "--token", "--token-file"};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(names[k]);
        const char *val = NULL;
        if (!strcmp(w, names[k])) {
            if (*i + 1 >= argc) {
                keng_cli_sayf("thiếu giá trị", "needs a value", "%s", w);
                return KENG_CLI_USAGE;
            }
            val = argv[++*i];
        } else if (!strncmp(w, names[k], n) && w[n] == '=') {
            val = w + n + 1;
        } else {
            continue;
        }
        if (k == 2) return keng_cli_token_file(c, val);
        char **dst = k == 0 ? &c->flag_url : &c->flag_token;
        free(*dst);
        *dst = strdup(val);
        return *dst ? 0 : keng_cli_nomem();
    }
    keng_cli_sayf("không có tùy chọn này", "unknown option", "%s", w);
    return KENG_CLI_USAGE;
}

static int run(keng_cli *c, int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--json")) {
            c->json = 1;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            return keng_cli_usage(usage_text, 1);
        } else if (!strcmp(argv[i], "--version")) {
            puts("keng 0.1");
            return KENG_CLI_OK;
        } else {
            int rc = global_opt(c, argc, argv, &i);
            if (rc == KENG_CLI_USAGE) return keng_cli_usage(usage_text, 0);
            if (rc) return rc;
        }
    }
    if (i >= argc) return keng_cli_usage(usage_text, 0);
    const char *cmd = argv[i];
    int n = argc - i - 1;
    char **rest = argv + i + 1;
    static const struct {
        const char *name;
        int (*fn)(keng_cli *, int, char **);
    } cmds[] = {
        {"groups", keng_cli_cmd_groups},   {"group", keng_cli_cmd_groups},
        {"members", keng_cli_cmd_members}, {"member", keng_cli_cmd_members},
        {"alert", keng_cli_cmd_alert},     {"alerts", keng_cli_cmd_alert},
        {"token", keng_cli_cmd_token},     {"render", keng_cli_cmd_render},
        {"health", keng_cli_cmd_health},   {"lookup", keng_cli_cmd_lookup},
        {"audit", keng_cli_cmd_audit},
    };
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
        if (!strcmp(cmd, cmds[k].name)) return cmds[k].fn(c, n, rest);
    if (!strcmp(cmd, "help")) return keng_cli_usage(usage_text, 1);
    keng_cli_sayf("không có lệnh này", "unknown command", "'%s'", cmd);
    return keng_cli_usage(usage_text, 0);
}

int main(int argc, char **argv)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        keng_cli_say("không khởi động được libcurl", "could not start libcurl");
        return KENG_CLI_FAIL;
    }
    keng_cli c;
    memset(&c, 0, sizeof c);
    int rc = run(&c, argc, argv);
    keng_cli_free(&c);
    curl_global_cleanup();
    if (fflush(stdout) != 0 && rc == 0) rc = KENG_CLI_FAIL;
    return rc;
}
