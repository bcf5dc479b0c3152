/* End to end: the `keng` CLI against a real kengd. Each test runs build/keng (or
 * $KENG_BIN_DIR/keng) as a child with a clean environment: no KENG_URL/KENG_TOKEN leaking in
 * from the developer's shell, HOME and XDG_CONFIG_HOME pointing at an empty temporary folder. */
#include "../e2e_util.h"
#include "../test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_MAX_ARGS 64
#define RUN_MAX_OUT (4u << 20) /* bytes of stdout or stderr kept per run */
#define RUN_TIMEOUT_MS 20000

typedef struct run_res {
    int status; /* exit code; 128+signal when killed */
    char *out;
    char *err;
} run_res;

/* Environment for one run of keng; every field may be NULL. */
typedef struct run_env {
    const char *url;        /* KENG_URL */
    const char *token_file; /* --token-file, put before the command */
    const char *config;     /* HOME and XDG_CONFIG_HOME */
} run_env;

static void run_free(run_res *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static const char *keng_exe(void)
{
    static char exe[512];
    const char *d = getenv("KENG_BIN_DIR");
    snprintf(exe, sizeof exe, "%s/keng", d && *d ? d : "build");
    return exe;
}

/* Appends what fd has to *buf; returns 0 at EOF. */
static int drain(int fd, char **buf, size_t *len)
{
    char tmp[8192];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    if (n <= 0) return 0;
    if (*len + (size_t)n <= RUN_MAX_OUT) {
        *buf = realloc(*buf, *len + (size_t)n + 1);
        ASSERT_NOT_NULL(*buf);
        memcpy(*buf + *len, tmp, (size_t)n);
        *len += (size_t)n;
        (*buf)[*len] = '\0';
    }
    return 1;
}

/* Runs keng with args (NULL-terminated) in env e; captures stdout and stderr fully. */
static void run_argv(const run_env *e, const char *const *args, run_res *r)
{
    memset(r, 0, sizeof *r);
    const char *argv[RUN_MAX_ARGS + 4];
    int n = 0;
    argv[n++] = keng_exe();
    if (e->token_file) {
        argv[n++] = "--token-file";
        argv[n++] = e->token_file;
    }
    for (int i = 0; args[i]; i++) {
        ASSERT_LT(n, RUN_MAX_ARGS);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int po[2], pe[2];
    ASSERT_EQ(pipe(po), 0);
    ASSERT_EQ(pipe(pe), 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(po[1]);
        close(pe[0]);
        close(pe[1]);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        unsetenv("KENG_URL");
        unsetenv("KENG_TOKEN");
        const char *home = e->config ? e->config : "/nonexistent-keng-home";
        setenv("HOME", home, 1);
        setenv("XDG_CONFIG_HOME", home, 1);
        if (e->url) setenv("KENG_URL", e->url, 1);
        setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=23", 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    size_t lo = 0, le = 0;
    r->out = calloc(1, 1);
    r->err = calloc(1, 1);
    int open_o = 1, open_e = 1;
    long long t0 = now_ms();
    while (open_o || open_e) {
        long long left = RUN_TIMEOUT_MS - (now_ms() - t0);
        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd p[2] = {{.fd = open_o ? po[0] : -1, .events = POLLIN},
                              {.fd = open_e ? pe[0] : -1, .events = POLLIN}};
        if (poll(p, 2, (int)left) < 0 && errno != EINTR) break;
        if (p[0].revents && !drain(po[0], &r->out, &lo)) open_o = 0;
        if (p[1].revents && !drain(pe[0], &r->err, &le)) open_e = 0;
    }
    close(po[0]);
    close(pe[0]);
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (r->status == 23 || r->status >= 128)
        TEST_FAIL("keng %s %s: status %d (sanitizer or crash?)\nstderr: %s", args[0],
                  args[0] && args[1] ? args[1] : "", r->status, r->err);
}

/* Runs keng with the variadic NULL-terminated args. */
static void run_va(const run_env *e, run_res *r, ...)
{
    const char *args[RUN_MAX_ARGS + 1];
    int n = 0;
    va_list ap;
    va_start(ap, r);
    const char *s;
    while ((s = va_arg(ap, const char *)) && n < RUN_MAX_ARGS)
        args[n++] = s;
    va_end(ap);
    args[n] = NULL;
    run_argv(e, args, r);
}

/* Per-test context: the server, the token file path, a scratch folder for config and files. */
typedef struct cli_ctx {
    kengd k;
    char token_file[512];
    char scratch[512];
    run_env admin; /* KENG_URL + the admin token */
    run_env anon;  /* KENG_URL, no token */
} cli_ctx;

/* kengd with the example ward; extra: more kengd flags (NULL-terminated) or NULL. */
static void ctx_start_with(cli_ctx *c, const char *const *extra)
{
    memset(c, 0, sizeof *c);
    kengd_start(&c->k, NULL, extra);
    snprintf(c->token_file, sizeof c->token_file, "%s/admin.token", c->k.dir);
    snprintf(c->scratch, sizeof c->scratch, "%s/cli", c->k.dir);
    ASSERT_EQ(mkdir(c->scratch, 0700), 0);
    c->admin = (run_env){.url = c->k.url, .token_file = c->token_file, .config = c->scratch};
    c->anon = (run_env){.url = c->k.url, .config = c->scratch};
}

static void ctx_start(cli_ctx *c)
{
    ctx_start_with(c, NULL);
}

static void ctx_stop(cli_ctx *c)
{
    kengd_stop(&c->k);
    kengd_cleanup(&c->k);
}

/* The last non-empty line of s (in place). */
static const char *last_line(char *s)
{
    size_t n = strlen(s);
    while (n && s[n - 1] == '\n')
        s[--n] = '\0';
    char *nl = strrchr(s, '\n');
    return nl ? nl + 1 : s;
}

#define RUN(env, r, ...) run_va((env), (r), __VA_ARGS__, (const char *)NULL)
#define ASSERT_STATUS(r, want)                                                                     \
    do {                                                                                           \
        if ((r).status != (want))                                                                  \
            TEST_FAIL("exit %d, want %d\nstdout: %.2000s\nstderr: %.2000s", (r).status, (want),    \
                      (r).out, (r).err);                                                           \
    } while (0)

/* ---- no server ---- */

TEST_TIMEOUT(cli_render_offline, 10)
{
    run_env none = {.config = "/nonexistent-keng-home"};
    run_res r;
    RUN(&none, &r, "render", "templates/msg/lost_elder.alert.vi.mustache",
        "templates/samples/lost_elder.json");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "Nguyễn Thị Tám");
    run_free(&r);

    RUN(&none, &r, "render", "templates/msg/no_such.alert.vi.mustache",
        "templates/samples/lost_elder.json");
    ASSERT_STATUS(r, 1);
    ASSERT(strncmp(r.err, "keng: ", 6) == 0);
    ASSERT_STR_EQ(r.out, "");
    run_free(&r);

    RUN(&none, &r, "render", "onlyonearg");
    ASSERT_STATUS(r, 64);
    run_free(&r);
}

TEST_TIMEOUT(cli_unreachable, 10)
{
    run_env none = {.config = "/nonexistent-keng-home"};
    run_res r;
    RUN(&none, &r, "--url", "http://127.0.0.1:1", "health");
    ASSERT_STATUS(r, 2);
    ASSERT_STR_CONTAINS(r.err, "keng: không kết nối được kengd / cannot reach kengd");
    run_free(&r);
}

/* ---- against kengd ---- */

TEST_TIMEOUT(cli_health_and_groups_list, 10)
{
    cli_ctx c;
    ctx_start(&c);
    run_res r;
    RUN(&c.anon, &r, "health");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "ok");
    run_free(&r);

    RUN(&c.anon, &r, "groups", "list");
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "(unauthorized)");
    run_free(&r);

    RUN(&c.admin, &r, "groups", "list", "--kind", "residential");
    ASSERT_STATUS(r, 0);
    for (int i = 1; i <= 4; i++) {
        char id[32];
        snprintf(id, sizeof id, "khu-pho-%d", i);
        ASSERT_STR_CONTAINS(r.out, id);
    }
    ASSERT(strstr(r.out, "to-lien-gia-07") == NULL);
    ASSERT_STR_CONTAINS(r.out, "4 nhóm / groups");
    run_free(&r);

    RUN(&c.admin, &r, "--json", "groups", "list", "--kind", "residential");
    ASSERT_STATUS(r, 0);
    cJSON *j = cJSON_Parse(r.out);
    ASSERT_NOT_NULL(j);
    ASSERT_EQ(jnum(j, "total"), 4);
    ASSERT_EQ(cJSON_GetArraySize(jget(j, "items")), 4);
    ASSERT_STR_EQ(jstr(j, "items[0].kind"), "residential");
    cJSON_Delete(j);
    run_free(&r);
    ctx_stop(&c);
}

TEST_TIMEOUT(cli_groups_show, 10)
{
    cli_ctx c;
    ctx_start(&c);
    run_res r;
    RUN(&c.admin, &r, "groups", "show", "to-lien-gia-07");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "Nhóm / Group: to-lien-gia-07");
    ASSERT_STR_CONTAINS(r.out, "inter_household");
    ASSERT_STR_CONTAINS(r.out, "Thành viên / Members (");
    run_free(&r);

    RUN(&c.admin, &r, "groups", "show", "nope");
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "(not_found)");
    run_free(&r);
    ctx_stop(&c);
}

TEST_TIMEOUT(cli_groups_import_csv, 10)
{
    cli_ctx c;
    ctx_start(&c);
    char csv[600];
    snprintf(csv, sizeof csv, "%s/households.csv", c.scratch);
    const char *rows = "id,name,address,phone\n"
                       "hh-csv-001,Hộ bà Lê Thị Hoa,3 Hải Phòng,0905 222 333\n"
                       "hh-csv-002,\"Hộ ông Phạm, Văn Hùng\",5 Hải Phòng,0914555666\n";
    write_file(csv, rows, strlen(rows));
    run_res r;
    RUN(&c.admin, &r, "groups", "import", csv, "--group", "to-lien-gia-07");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "Đã nhập 2 hộ / imported 2 households");
    run_free(&r);

    RUN(&c.admin, &r, "--json", "members", "list", "--group", "to-lien-gia-07");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "hh-csv-001");
    ASSERT_STR_CONTAINS(r.out, "Hộ ông Phạm, Văn Hùng");
    ASSERT_STR_CONTAINS(r.out, "+84905222333");
    run_free(&r);

    RUN(&c.admin, &r, "groups", "import", csv);
    ASSERT_STATUS(r, 64);
    ASSERT_STR_CONTAINS(r.err, "--group");
    run_free(&r);
    ctx_stop(&c);
}

TEST_TIMEOUT(cli_members_add, 10)
{
    cli_ctx c;
    ctx_start(&c);
    run_res r;
    RUN(&c.admin, &r, "members", "add", "--id", "hh-cli-001", "--name", "Hộ bà Võ Thị Lan",
        "--phone", "0905 111 222", "--camera", "--group", "khu-pho-2");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "Đã thêm / added hh-cli-001");
    run_free(&r);

    RUN(&c.admin, &r, "--json", "members", "list", "--group", "khu-pho-2");
    ASSERT_STATUS(r, 0);
    cJSON *j = cJSON_Parse(r.out);
    ASSERT_NOT_NULL(j);
    const cJSON *it, *mine = NULL;
    cJSON_ArrayForEach(it, jget(j, "items"))
    {
        if (!strcmp(jstr(it, "id") ? jstr(it, "id") : "", "hh-cli-001")) mine = it;
    }
    ASSERT_NOT_NULL(mine);
    ASSERT_STR_EQ(jstr(mine, "phone"), "+84905111222");
    ASSERT(cJSON_IsTrue(jget(mine, "camera")));
    cJSON_Delete(j);
    run_free(&r);

    RUN(&c.admin, &r, "members", "add", "--id", "hh-cli-001", "--name", "Hộ bà Võ Thị Lan",
        "--phone", "0905 111 222", "--group", "khu-pho-2");
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "(exists)");
    run_free(&r);

    RUN(&c.admin, &r, "members", "add", "--name", "no id");
    ASSERT_STATUS(r, 64);
    run_free(&r);
    ctx_stop(&c);
}

TEST_TIMEOUT(cli_alert_lifecycle, 30)
{
    cli_ctx c;
    ctx_start(&c);
    char photo[600];
    snprintf(photo, sizeof photo, "%s/ba-tam.jpg", c.scratch);
    size_t jl;
    unsigned char *jpeg = make_jpeg(640, 480, &jl);
    write_file(photo, jpeg, jl);
    free(jpeg);

    run_res r;
    RUN(&c.admin, &r, "alert", "new", "lost_elder", "--person-name", "Nguyễn Thị Tám", "--age",
        "78", "--sex", "female", "--last-seen-at", "2026-11-23 06:15", "--last-seen-place",
        "đầu kiệt 45 Núi Thành", "--description", "Áo bà ba nâu", "--contact-phone", "0905 123 456",
        "--photo", photo, "--group", "to-lien-gia-07");
    ASSERT_STATUS(r, 0);
    char id[128];
    snprintf(id, sizeof id, "%s", last_line(r.out));
    ASSERT(strncmp(id, "al-", 3) == 0);
    run_free(&r);

    RUN(&c.admin, &r, "--json", "alert", "show", id);
    ASSERT_STATUS(r, 0);
    cJSON *j = cJSON_Parse(r.out);
    ASSERT_NOT_NULL(j);
    ASSERT(cJSON_IsNumber(jget(j, "age")));
    ASSERT_EQ(jnum(j, "age"), 78);
    ASSERT_EQ(cJSON_GetArraySize(jget(j, "photos")), 1);
    ASSERT_STR_EQ(jstr(j, "status"), "draft");
    ASSERT_STR_EQ(jstr(j, "person_name"), "Nguyễn Thị Tám");
    ASSERT_STR_EQ(jstr(j, "targets.groups[0]"), "to-lien-gia-07");
    cJSON_Delete(j);
    run_free(&r);

    RUN(&c.admin, &r, "alert", "show", id);
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "Nguyễn Thị Tám (78)");
    run_free(&r);

    RUN(&c.admin, &r, "alert", "preview", id, "--channel", "sms", "--lang", "en");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "78");
    ASSERT_STR_CONTAINS(r.out, "/r/"); /* the reply link placeholder */
    run_free(&r);

    RUN(&c.admin, &r, "alert", "publish", id);
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "deliveries");
    ASSERT_STR_CONTAINS(r.out, id);
    run_free(&r);

    RUN(&c.admin, &r, "alert", "publish", id);
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "(already_published)");
    run_free(&r);

    /* Not a terminal: plain lines on stdout, ending when nothing is pending or in flight. */
    long long t0 = now_ms();
    RUN(&c.admin, &r, "alert", "watch", id);
    ASSERT_STATUS(r, 0);
    ASSERT_LT(now_ms() - t0, 10000);
    ASSERT(strstr(r.err, "\r") == NULL);
    ASSERT(strncmp(last_line(r.out), "Xong / done", 11) == 0);
    run_free(&r);

    RUN(&c.admin, &r, "alert", "update", id, "--description", "Áo bà ba nâu, nón lá", "--note",
        "Đã thấy ở chợ Hàn lúc 9 giờ");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, id);
    /* an update goes to the alert's recipients: no "recipients: 0" beside its deliveries */
    ASSERT_STR_CONTAINS(r.out, "to the same recipients as the alert");
    ASSERT(!strstr(r.out, "recipients:"));
    run_free(&r);

    RUN(&c.admin, &r, "--json", "alert", "show", id);
    ASSERT_STATUS(r, 0);
    j = cJSON_Parse(r.out);
    ASSERT_NOT_NULL(j);
    ASSERT_STR_EQ(jstr(j, "description"), "Áo bà ba nâu, nón lá");
    ASSERT_GE(jnum(j, "revision"), 2);
    cJSON_Delete(j);
    run_free(&r);

    RUN(&c.admin, &r, "alert", "resolve", id, "--resolution", "Đã tìm thấy bà, bình an");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "resolved");
    ASSERT_STR_CONTAINS(r.out, "to the same recipients as the alert");
    ASSERT(!strstr(r.out, "recipients:"));
    run_free(&r);

    RUN(&c.admin, &r, "alert", "cancel", id, "--reason", "nhầm");
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "(alert_closed)");
    run_free(&r);
    ctx_stop(&c);
}

TEST_TIMEOUT(cli_scam_pattern_publish_json, 15)
{
    cli_ctx c;
    ctx_start(&c);
    run_res r;
    RUN(&c.admin, &r, "--json", "alert", "new", "scam_pattern", "--pattern-type", "fake_police",
        "--script-summary", "Gọi tự xưng công an, đòi chuyển tiền để 'xác minh'", "--phone-number",
        "0905 123 456", "--phone-number", "0389-999-888", "--all", "--publish");
    ASSERT_STATUS(r, 0);
    cJSON *j = cJSON_Parse(r.out);
    if (!j) TEST_FAIL("not JSON: %s", r.out);
    /* --publish --json prints the publish reply, which is the alert (maybe under "alert"). */
    const cJSON *a = jget(j, "phone_numbers") ? j : jget(j, "alert");
    ASSERT_NOT_NULL(a);
    const cJSON *nums = jget(a, "phone_numbers");
    ASSERT_EQ(cJSON_GetArraySize(nums), 2);
    ASSERT_STR_EQ(jstr(a, "phone_numbers[0]"), "+84905123456");
    ASSERT_STR_EQ(jstr(a, "phone_numbers[1]"), "+84389999888");
    ASSERT_STR_EQ(jstr(a, "status"), "published");
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(a, "id"));
    cJSON_Delete(j);
    run_free(&r);

    /* A resident forwards the number that called them: keng lookup finds the alert. */
    RUN(&c.admin, &r, "lookup", "--phone", "038 9999 888");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, id);
    ASSERT_STR_CONTAINS(r.out, "fake_police");
    ASSERT_STR_CONTAINS(r.out, "[phone]");
    run_free(&r);
    RUN(&c.admin, &r, "lookup", "--phone", "0911 000 000");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "không có tin báo nào");
    run_free(&r);
    RUN(&c.admin, &r, "lookup", "--plate", "không phải biển số");
    ASSERT(r.status != 0);
    ASSERT_STR_CONTAINS(r.err, "plate");
    run_free(&r);

    ctx_stop(&c);
}

TEST_TIMEOUT(cli_token_create_officer, 10)
{
    cli_ctx c;
    ctx_start(&c);
    run_res r;
    RUN(&c.admin, &r, "token", "create", "--role", "officer", "--name", "cán bộ Hải");
    ASSERT_STATUS(r, 0);
    const char *tok = last_line(r.out);
    ASSERT_EQ(strlen(tok), 32);
    ASSERT_EQ(strspn(tok, "0123456789abcdef"), 32);
    char tf[600];
    snprintf(tf, sizeof tf, "%s/officer.token", c.scratch);
    write_file(tf, tok, strlen(tok));
    run_free(&r);

    run_env officer = c.anon;
    officer.token_file = tf;
    RUN(&officer, &r, "alert", "list");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "0 tin báo / alerts");
    run_free(&r);

    RUN(&c.admin, &r, "token", "create");
    ASSERT_STATUS(r, 64);
    run_free(&r);
    ctx_stop(&c);
}

TEST_TIMEOUT(cli_config_file, 10)
{
    cli_ctx c;
    ctx_start(&c);
    char cfg[600], body[256];
    snprintf(cfg, sizeof cfg, "%s/keng/config", c.scratch);
    snprintf(body, sizeof body, "# keng client\nurl = %s/\ntoken = %s\n", c.k.url, c.k.token);
    write_file(cfg, body, strlen(body));
    run_env conf = {.config = c.scratch};
    run_res r;
    RUN(&conf, &r, "groups", "list");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "to-lien-gia-07");
    run_free(&r);

    /* The environment wins over the file. */
    run_env env_wins = {.config = c.scratch, .url = "http://127.0.0.1:1"};
    RUN(&env_wins, &r, "groups", "list");
    ASSERT_STATUS(r, 2);
    run_free(&r);
    ctx_stop(&c);
}

TEST_TIMEOUT(cli_audit_verify_and_usage, 10)
{
    cli_ctx c;
    ctx_start(&c);
    run_res r;
    RUN(&c.admin, &r, "members", "add", "--id", "hh-audit-1", "--name", "Hộ A");
    ASSERT_STATUS(r, 0);
    run_free(&r);

    RUN(&c.admin, &r, "audit", "verify");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "ok");
    run_free(&r);

    RUN(&c.admin, &r, "alert", "frob");
    ASSERT_STATUS(r, 64);
    ASSERT_STR_CONTAINS(r.err, "frob");
    run_free(&r);
    ctx_stop(&c);
}

/* ---- Vietnamese first ---- */

/* Every line keng says on stderr ("keng: …") is Vietnamese first, then English: "VI / EN…". */
static void assert_bilingual(const char *err)
{
    for (const char *p = err; *p;) {
        size_t n = strcspn(p, "\n");
        if (n >= 6 && !strncmp(p, "keng: ", 6)) {
            char line[2048];
            snprintf(line, sizeof line, "%.*s", (int)n, p);
            if (!strstr(line, " / ")) TEST_FAIL("not Vietnamese / English: %s", line);
        }
        p += n + (p[n] == '\n');
    }
}

TEST_TIMEOUT(cli_errors_say_vietnamese_first_then_english, 30)
{
    cli_ctx c;
    ctx_start(&c);
    run_res r;
    /* kengd's refusal: its stable code in Vietnamese, its English message, the code. */
    RUN(&c.admin, &r, "groups", "show", "nope");
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "keng: không tìm thấy / no such group: nope (not_found)\n");
    assert_bilingual(r.err);
    run_free(&r);

    /* A field kengd refuses is named with the flag that sets it. */
    RUN(&c.admin, &r, "alert", "new", "lost_elder", "--age", "78", "--group", "khu-pho-2");
    ASSERT_STATUS(r, 1);
    static const char refused[] = "keng: giá trị không hợp lệ / ";
    ASSERT(strncmp(r.err, refused, sizeof refused - 1) == 0);
    ASSERT_STR_CONTAINS(r.err, "(invalid_field)\n");
    ASSERT_STR_CONTAINS(r.err, "keng: trường / field: person_name (--person-name)\n");
    assert_bilingual(r.err);
    run_free(&r);
    RUN(&c.admin, &r, "alert", "new", "lost_elder", "--person-name", "Nguyễn Thị Tám", "--age",
        "78", "--last-seen-at", "2026-11-23 06:15", "--last-seen-place", "chợ Hàn", "--group",
        "khong-co-nhom-nay");
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "keng: trường / field: targets.groups[0] (--group)\n");
    run_free(&r);

    /* A group file's field is named as in the file: no flag sets it. */
    char gf[600];
    snprintf(gf, sizeof gf, "%s/nhom-moi.json", c.scratch);
    const char *group = "{\"id\":\"nhom-moi\",\"name\":\"Nhóm mới\",\"kind\":\"phuong\"}";
    write_file(gf, group, strlen(group));
    RUN(&c.admin, &r, "groups", "import", gf);
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "keng: trường / field: kind\n");
    ASSERT_STR_CONTAINS(r.err, "keng: chưa nhập được / not imported: ");
    assert_bilingual(r.err);
    run_free(&r);

    /* Local problems: a photo that is not there, a flag that does not exist, a missing field. */
    RUN(&c.admin, &r, "alert", "new", "other", "--title", "Mất điện", "--body", "Khu phố 2",
        "--group", "khu-pho-2", "--photo", "/nonexistent/anh.jpg");
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "keng: không đọc được tệp / cannot read the file: "
                               "/nonexistent/anh.jpg: không có tệp này / no such file\n");
    assert_bilingual(r.err);
    run_free(&r);
    RUN(&c.admin, &r, "groups", "list", "--frob", "x");
    ASSERT_STATUS(r, 64);
    ASSERT_STR_CONTAINS(r.err, "keng: không có tùy chọn này / unknown option: --frob\n");
    assert_bilingual(r.err);
    run_free(&r);
    RUN(&c.admin, &r, "alert", "update", "al-x");
    ASSERT_STATUS(r, 64);
    ASSERT_STR_CONTAINS(r.err, "keng: alert update cần ít nhất một trường để sửa / alert update "
                               "needs at least one field to change\n");
    assert_bilingual(r.err);
    run_free(&r);

    /* A token kengd does not know, and one whose role may not do it: what to do, in words. */
    char bad[600], tf[600];
    snprintf(bad, sizeof bad, "%s/bad.token", c.scratch);
    write_file(bad, "0123456789abcdef0123456789abcdef\n", 33);
    run_env wrong = c.anon;
    wrong.token_file = bad;
    RUN(&wrong, &r, "groups", "list");
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "(unauthorized)\n");
    ASSERT_STR_CONTAINS(r.err, "keng: kengd không nhận token này / kengd does not accept this "
                               "token: ");
    assert_bilingual(r.err);
    run_free(&r);
    RUN(&c.admin, &r, "token", "create", "--role", "officer", "--name", "cán bộ Hà");
    ASSERT_STATUS(r, 0);
    snprintf(tf, sizeof tf, "%s/officer.token", c.scratch);
    write_file(tf, last_line(r.out), 32);
    run_free(&r);
    run_env officer = c.anon;
    officer.token_file = tf;
    RUN(&officer, &r, "token", "create", "--role", "admin");
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "(forbidden)\n");
    ASSERT_STR_CONTAINS(r.err, "keng: hãy dùng token có vai trò được làm việc này");
    assert_bilingual(r.err);
    run_free(&r);

    /* Something that is not kengd answers (a proxy, a wrong address): not a bare "HTTP 502". */
    fake wh;
    const char *args[] = {"--secret", "s", NULL};
    fake_start(&wh, "webhook", c.scratch, args);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/status/502", wh.port);
    RUN(&c.admin, &r, "--url", url, "alert", "publish", "al-x");
    ASSERT_STATUS(r, 1);
    ASSERT_STR_CONTAINS(r.err, "keng: máy chủ trả lời HTTP 502 / the server answered HTTP 502 "
                               "Bad Gateway: status 502\n");
    ASSERT_STR_CONTAINS(r.err, "keng: không phải câu trả lời của kengd: sai địa chỉ, hay kengd sau "
                               "proxy đã dừng? / not an answer from kengd");
    assert_bilingual(r.err);
    run_free(&r);
    fake_stop(&wh);
    ctx_stop(&c);
}

/* ---- quiet hours ---- */

/* The quiet window of quiet_window_around_now (e2e_util); local: its end as keng prints it
 * ("06:00 06/12/2026 (+07:00)"), iso: as kengd's JSON has it. */
static void quiet_window_words(char flag[32], char *local, size_t locallen, char *iso,
                               size_t isolen)
{
    time_t t = (time_t)(quiet_window_around_now(flag) + 7 * 3600);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(local, locallen, "%H:%M %d/%m/%Y (+07:00)", &tm);
    strftime(iso, isolen, "%Y-%m-%dT%H:%M:00+07:00", &tm);
}

TEST_TIMEOUT(cli_publish_in_quiet_hours_says_until_when, 30)
{
    char quiet[32], local[64], iso[64];
    quiet_window_words(quiet, local, sizeof local, iso, sizeof iso);
    const char *extra[] = {"--quiet-hours", quiet, NULL};
    cli_ctx c;
    ctx_start_with(&c, extra);
    char wait_line[160], send_now[256];
    snprintf(wait_line, sizeof wait_line,
             "  Giờ yên tĩnh, tin chờ đến / quiet hours, messages wait until: %s\n", local);
    run_res r;
    /* A scam warning is "expected" unless said otherwise: it waits, and keng says until when and
     * how to send it now. */
    RUN(&c.admin, &r, "alert", "new", "scam_pattern", "--pattern-type", "fake_police",
        "--script-summary", "Gọi tự xưng công an, đòi chuyển tiền để xác minh", "--group",
        "khu-pho-2");
    ASSERT_STATUS(r, 0);
    char id[128];
    snprintf(id, sizeof id, "%s", last_line(r.out));
    run_free(&r);
    RUN(&c.admin, &r, "alert", "publish", id);
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, wait_line);
    snprintf(send_now, sizeof send_now, "    keng alert update %s --urgency immediate\n", id);
    ASSERT_STR_CONTAINS(r.out, send_now);
    ASSERT_STR_EQ(r.err, "");
    run_free(&r);

    /* --json stays kengd's JSON, with the field in it and no text around it. */
    RUN(&c.admin, &r, "--json", "alert", "new", "suspicious_vehicle", "--vehicle-type", "motorbike",
        "--plate", "29-B1 123.45", "--group", "khu-pho-2", "--publish");
    ASSERT_STATUS(r, 0);
    cJSON *j = cJSON_Parse(r.out);
    if (!j) TEST_FAIL("not JSON: %s", r.out);
    ASSERT_STR_EQ(jstr(j, "fanout.quiet_until"), iso);
    ASSERT(cJSON_IsNumber(jget(j, "fanout.quiet_until_unix")));
    char vehicle[128];
    snprintf(vehicle, sizeof vehicle, "%s", jstr(j, "id"));
    cJSON_Delete(j);
    run_free(&r);

    /* The way out it named: an immediate update goes now, so nothing is said of quiet hours. */
    RUN(&c.admin, &r, "alert", "update", id, "--urgency", "immediate");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "Đã cập nhật / updated");
    ASSERT(!strstr(r.out, "Giờ yên tĩnh"));
    run_free(&r);

    /* A resolution of the held vehicle alert waits too; there is no way to hurry good news. */
    RUN(&c.admin, &r, "alert", "resolve", vehicle, "--resolution", "Đã tìm thấy xe");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, wait_line);
    ASSERT(!strstr(r.out, "--urgency immediate"));
    run_free(&r);

    /* A lost elder is immediate: it goes at once, and keng says nothing of quiet hours. */
    RUN(&c.admin, &r, "alert", "new", "lost_elder", "--person-name", "Nguyễn Thị Tám", "--age",
        "78", "--last-seen-at", "2026-11-23 06:15", "--last-seen-place", "chợ Hàn", "--group",
        "khu-pho-2", "--publish");
    ASSERT_STATUS(r, 0);
    ASSERT_STR_CONTAINS(r.out, "Đã phát / published");
    ASSERT(!strstr(r.out, "Giờ yên tĩnh"));
    run_free(&r);
    ctx_stop(&c);
}
