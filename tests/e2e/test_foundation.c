/* End to end: the HTTP server, auth, groups and members, imports, bad input, operations. */
#include "../e2e_util.h"
#include "../test.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(e2e_healthz_and_example_ward)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    resp r;
    http(&k, "GET", "/healthz", "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT(cJSON_IsTrue(jget(r.json, "ok")));
    resp_free(&r);
    http(&k, "GET", "/v1/groups?limit=1000", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(jnum(r.json, "total"), 25);
    resp_free(&r);
    http(&k, "GET", "/v1/members?limit=1", NULL, NULL, NULL, 0, &r);
    ASSERT_GE(jnum(r.json, "total"), 300);
    resp_free(&r);
    http(&k, "GET", "/v1/groups/to-lien-gia-07", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(jstr(r.json, "parent"), "khu-pho-2");
    ASSERT_STR_EQ(jstr(r.json, "relay"), "leader");
    ASSERT_STR_EQ(jstr(r.json, "leader"), "hh-2-071");
    resp_free(&r);
    /* a member in two groups */
    http(&k, "GET", "/v1/members/hh-2-071", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(cJSON_GetArraySize(jget(r.json, "groups")), 2);
    ASSERT_STR_EQ(jstr(r.json, "name"), "Hộ ông Trần Văn Bình");
    resp_free(&r);
    /* filters and pagination */
    http(&k, "GET", "/v1/groups?kind=inter_household&limit=5&offset=5", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "total"), 16);
    ASSERT_EQ(cJSON_GetArraySize(jget(r.json, "items")), 5);
    ASSERT_STR_EQ(jstr(r.json, "items[0].kind"), "inter_household");
    resp_free(&r);
    http(&k, "GET", "/v1/members?group=cam-do", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "total"), 6);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST(e2e_auth_roles)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    resp r;
    http(&k, "GET", "/v1/groups", "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 401);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "unauthorized");
    resp_free(&r);
    http(&k, "GET", "/v1/groups", "0123456789abcdef0123456789abcdef", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    http_json(&k, "POST", "/v1/tokens", "{\"role\":\"viewer\",\"name\":\"Cán bộ trực\"}", &r);
    ASSERT_EQ(r.status, 201);
    char viewer[64];
    snprintf(viewer, sizeof viewer, "%s", jstr(r.json, "token"));
    ASSERT_EQ(strlen(viewer), 32);
    resp_free(&r);
    http(&k, "GET", "/v1/groups", viewer, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    http(&k, "POST", "/v1/groups", viewer, "application/json", "{}", 2, &r);
    ASSERT_EQ(r.status, 403);
    resp_free(&r);
    http(&k, "POST", "/v1/tokens", viewer, "application/json", "{\"role\":\"admin\"}", 16, &r);
    ASSERT_EQ(r.status, 403);
    resp_free(&r);
    http_json(&k, "POST", "/v1/tokens", "{\"role\":\"leader\"}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "group");
    resp_free(&r);
    http_json(&k, "POST", "/v1/tokens", "{\"role\":\"leader\",\"group\":\"to-lien-gia-07\"}", &r);
    ASSERT_EQ(r.status, 201);
    char leader[64];
    snprintf(leader, sizeof leader, "%s", jstr(r.json, "token"));
    resp_free(&r);
    http(&k, "GET", "/v1/groups/to-lien-gia-07", leader, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    http(&k, "GET", "/v1/groups/to-lien-gia-08", leader, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 403);
    resp_free(&r);
    http_json(&k, "POST", "/v1/tokens", "{\"role\":\"root\"}", &r);
    ASSERT_EQ(r.status, 400);
    resp_free(&r);
    /* the admin token file is private */
    char path[512];
    snprintf(path, sizeof path, "%s/admin.token", k.dir);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST(e2e_groups_members_crud)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    resp r;
    http_json(&k, "POST", "/v1/groups",
              "{\"id\":\"to-lien-gia-99\",\"name\":\"Tổ liên gia số 99\",\"kind\":\"inter_household\","
              "\"parent\":\"khu-pho-1\",\"leader\":\"hh-9-001\",\"relay\":\"leader\","
              "\"members\":[{\"id\":\"hh-9-001\",\"name\":\"Hộ ông Đỗ Văn Lâm\",\"phone\":\"0905 111 222\"},"
              "\"hh-2-071\"]}",
              &r);
    ASSERT_EQ(r.status, 201);
    ASSERT_EQ(jnum(r.json, "member_count"), 2);
    resp_free(&r);
    http_json(&k, "GET", "/v1/members/hh-9-001", NULL, &r);
    ASSERT_STR_EQ(jstr(r.json, "phone"), "+84905111222");
    resp_free(&r);
    /* duplicate id */
    http_json(&k, "POST", "/v1/groups",
              "{\"id\":\"to-lien-gia-99\",\"name\":\"x\",\"kind\":\"other\",\"label\":\"x\"}", &r);
    ASSERT_EQ(r.status, 409);
    resp_free(&r);
    /* a cycle through parent */
    http_json(&k, "PUT", "/v1/groups/khu-pho-1",
              "{\"name\":\"Khu phố 1\",\"kind\":\"residential\",\"parent\":\"to-lien-gia-99\"}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "parent");
    resp_free(&r);
    /* unknown group in membership */
    http_json(&k, "POST", "/v1/members",
              "{\"id\":\"hh-9-002\",\"name\":\"Hộ bà Vũ Thị Lan\",\"groups\":[\"khong-co\"]}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "groups[0]");
    resp_free(&r);
    http_json(&k, "POST", "/v1/members",
              "{\"id\":\"hh-9-002\",\"name\":\"Hộ bà Vũ Thị Lan\",\"groups\":[\"to-lien-gia-99\"],"
              "\"contacts\":[{\"type\":\"webhook\",\"url\":\"http://127.0.0.1:9/x\"}]}", &r);
    ASSERT_EQ(r.status, 201);
    resp_free(&r);
    http_json(&k, "GET", "/v1/members?group=to-lien-gia-99", NULL, &r);
    ASSERT_EQ(jnum(r.json, "total"), 3);
    resp_free(&r);
    /* wrong types, unknown fields, bad phone */
    http_json(&k, "POST", "/v1/members", "{\"id\":\"hh-9-003\",\"name\":42}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "name");
    resp_free(&r);
    http_json(&k, "POST", "/v1/members", "{\"id\":\"hh-9-003\",\"name\":\"A\",\"colour\":\"red\"}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "colour");
    resp_free(&r);
    http_json(&k, "POST", "/v1/members", "{\"id\":\"hh-9-003\",\"name\":\"A\",\"phone\":\"0123\"}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "phone");
    resp_free(&r);
    /* the group with children cannot go; a leaf can */
    http(&k, "DELETE", "/v1/groups/khu-pho-1", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 409);
    resp_free(&r);
    http(&k, "DELETE", "/v1/groups/to-lien-gia-99", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 204);
    resp_free(&r);
    http(&k, "GET", "/v1/groups/to-lien-gia-99", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
    /* the members stay */
    http(&k, "GET", "/v1/members/hh-9-002", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST(e2e_bad_json_is_refused_and_nothing_lost)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    resp r;
    const char *bad[] = {"{", "{\"id\":", "[1,2]", "{\"id\":\"x\",}", "nul", "{\"a\":1}garbage",
                         "\"just a string\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_json(&k, "POST", "/v1/members", bad[i], &r);
        ASSERT_EQ(r.status, 400);
        ASSERT_NOT_NULL(jstr(r.json, "error.message"));
        resp_free(&r);
    }
    /* invalid UTF-8 */
    http_json(&k, "POST", "/v1/members", "{\"id\":\"hh-x\",\"name\":\"\xC3\x28\"}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "invalid_utf8");
    resp_free(&r);
    /* deep nesting */
    char deep[2100];
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 1000);
    deep[2000] = '\0';
    http_json(&k, "POST", "/v1/members", deep, &r);
    ASSERT_EQ(r.status, 400);
    resp_free(&r);
    /* wrong content type */
    http(&k, "POST", "/v1/members", NULL, "text/plain", "{}", 2, &r);
    ASSERT_EQ(r.status, 415);
    resp_free(&r);
    /* a body over the 1 MB JSON limit */
    size_t big = 2 * 1024 * 1024;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    http(&k, "POST", "/v1/members", NULL, "application/json", huge, big, &r);
    ASSERT_EQ(r.status, 413);
    resp_free(&r);
    free(huge);
    /* unknown route, wrong method */
    http(&k, "GET", "/v1/nothing", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
    http(&k, "DELETE", "/v1/members", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 405);
    char allow[128];
    ASSERT_STR_CONTAINS(resp_header(&r, "Allow", allow, sizeof allow), "POST");
    resp_free(&r);
    /* all the example ward is still there */
    http(&k, "GET", "/v1/members?limit=1", NULL, NULL, NULL, 0, &r);
    ASSERT_GE(jnum(r.json, "total"), 386);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST(e2e_groups_dir_bad_file_refused_whole)
{
    char dir[] = "/tmp/keng-groups-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    char p[512];
    const char *good = "{\n  \"id\": \"kp-a\",\n  \"name\": \"Khu phố A\",\n  \"kind\": \"residential\",\n"
                       "  \"members\": [\n    {\"id\": \"hh-a-1\", \"name\": \"Hộ ông A\"}\n  ]\n}\n";
    snprintf(p, sizeof p, "%s/kp-a.json", dir);
    write_file(p, good, strlen(good));
    /* a bad phone on line 6 of b */
    const char *bad = "{\n  \"id\": \"kp-b\",\n  \"name\": \"Khu phố B\",\n  \"kind\": \"residential\",\n"
                      "  \"members\": [\n    {\"id\": \"hh-b-1\", \"name\": \"Hộ bà B\", \"phone\": \"12\"}\n"
                      "  ]\n}\n";
    snprintf(p, sizeof p, "%s/kp-b.json", dir);
    write_file(p, bad, strlen(bad));
    /* a cycle: c → d → c */
    const char *c1 = "{\"id\":\"kp-c\",\"name\":\"C\",\"kind\":\"residential\",\"parent\":\"kp-d\"}";
    const char *d1 = "{\"id\":\"kp-d\",\"name\":\"D\",\"kind\":\"residential\",\"parent\":\"kp-c\"}";
    snprintf(p, sizeof p, "%s/kp-c.json", dir);
    write_file(p, c1, strlen(c1));
    snprintf(p, sizeof p, "%s/kp-d.json", dir);
    write_file(p, d1, strlen(d1));
    /* unknown member reference and a duplicate definition */
    const char *e1 = "{\"id\":\"kp-e\",\"name\":\"E\",\"kind\":\"residential\",\"members\":[\"hh-zz\"]}";
    const char *f1 = "{\"id\":\"kp-f\",\"name\":\"F\",\"kind\":\"residential\",\"members\":"
                     "[{\"id\":\"hh-a-1\",\"name\":\"again\"}]}";
    snprintf(p, sizeof p, "%s/kp-e.json", dir);
    write_file(p, e1, strlen(e1));
    snprintf(p, sizeof p, "%s/kp-f.json", dir);
    write_file(p, f1, strlen(f1));
    kengd k;
    kengd_start(&k, dir, NULL);
    resp r;
    http(&k, "GET", "/v1/groups", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "total"), 1);
    ASSERT_STR_EQ(jstr(r.json, "items[0].id"), "kp-a");
    resp_free(&r);
    http(&k, "GET", "/v1/members/hh-b-1", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
    char lp[512];
    snprintf(lp, sizeof lp, "%s/kengd.log", k.dir);
    char *log = read_file_all(lp, NULL);
    ASSERT_STR_CONTAINS(log, "kp-b.json:6:");
    ASSERT_STR_CONTAINS(log, "phone");
    ASSERT_STR_CONTAINS(log, "cycle");
    ASSERT_STR_CONTAINS(log, "hh-zz is not defined");
    ASSERT_STR_CONTAINS(log, "already defined in kp-a.json");
    free(log);
    /* fix b, SIGHUP: it is applied; importing twice changes nothing */
    const char *fixed = "{\"id\":\"kp-b\",\"name\":\"Khu phố B\",\"kind\":\"residential\","
                        "\"members\":[{\"id\":\"hh-b-1\",\"name\":\"Hộ bà B\",\"phone\":\"0905123456\"}]}";
    snprintf(p, sizeof p, "%s/kp-b.json", dir);
    write_file(p, fixed, strlen(fixed));
    for (int i = 0; i < 2; i++) {
        kill(k.pid, SIGHUP);
        usleep(300000);
    }
    http(&k, "GET", "/v1/members/hh-b-1", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(jstr(r.json, "phone"), "+84905123456");
    resp_free(&r);
    http(&k, "GET", "/v1/groups", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "total"), 2);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
    rm_rf(dir);
}

TEST(e2e_csv_import)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    size_t len;
    char *csv = read_file_all("tests/data/households.csv", &len);
    ASSERT_NOT_NULL(csv);
    resp r;
    http(&k, "POST", "/v1/groups/to-lien-gia-01/import", NULL, "text/csv", csv, len, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(jnum(r.json, "imported"), 20);
    resp_free(&r);
    free(csv);
    http(&k, "GET", "/v1/members/hh-5-001", NULL, NULL, NULL, 0, &r);
    ASSERT_STR_EQ(jstr(r.json, "address"), "12 Lê Lợi, tổ 3");
    ASSERT_STR_EQ(jstr(r.json, "phone"), "+84905318274");
    resp_free(&r);
    csv = read_file_all("tests/data/households-bad.csv", &len);
    http(&k, "POST", "/v1/groups/to-lien-gia-02/import", NULL, "text/csv", csv, len, &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_CONTAINS(jstr(r.json, "error.message"), "line 5");
    ASSERT_STR_CONTAINS(jstr(r.json, "error.message"), "phone");
    resp_free(&r);
    free(csv);
    http(&k, "GET", "/v1/members?group=to-lien-gia-02&limit=1000", NULL, NULL, NULL, 0, &r);
    int before = (int)jnum(r.json, "total");
    resp_free(&r);
    ASSERT_GT(before, 0);
    http(&k, "POST", "/v1/groups/khong-co/import", NULL, "text/csv", "id,name\n", 8, &r);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
    http(&k, "POST", "/v1/groups/to-lien-gia-02/import", NULL, "application/json", "{}", 2, &r);
    ASSERT_EQ(r.status, 415);
    resp_free(&r);
    const char *quotes = "id,name\nhh-q-1,\"Hộ \"\"Ba\"\" Tư\"\nhh-q-2,\"unterminated\n";
    http(&k, "POST", "/v1/groups/to-lien-gia-02/import", NULL, "text/csv", quotes, strlen(quotes), &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_CONTAINS(jstr(r.json, "error.message"), "line 3");
    resp_free(&r);
    http(&k, "GET", "/v1/members/hh-q-1", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 404); /* nothing of a refused file is applied */
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST(e2e_keepalive_pipelining)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    int fd = tcp_connect(k.port);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ASSERT_EQ(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    char buf[8192];
    tcp_read_all(fd, buf, sizeof buf, 5000);
    close(fd);
    char *a = strstr(buf, "HTTP/1.1 200");
    char *b = a ? strstr(a + 1, "HTTP/1.1 404") : NULL;
    char *c = b ? strstr(b + 1, "HTTP/1.1 200") : NULL;
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    ASSERT_NOT_NULL(c);
    ASSERT_STR_CONTAINS(c, "Connection: close");
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST(e2e_limits_headers_and_garbage)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    int fd = tcp_connect(k.port);
    char big[20000];
    int n = snprintf(big, sizeof big, "GET /healthz HTTP/1.1\r\nX-Big: ");
    memset(big + n, 'a', 17000);
    n += 17000;
    n += snprintf(big + n, sizeof big - (size_t)n, "\r\n\r\n");
    ASSERT_EQ(write(fd, big, (size_t)n), n);
    char buf[4096];
    tcp_read_all(fd, buf, sizeof buf, 5000);
    ASSERT_STR_CONTAINS(buf, "HTTP/1.1 431");
    close(fd);
    fd = tcp_connect(k.port);
    const char *junk = "\x01\x02 not http at all\r\n\r\n";
    ASSERT_EQ(write(fd, junk, strlen(junk)), (ssize_t)strlen(junk));
    tcp_read_all(fd, buf, sizeof buf, 5000);
    ASSERT_STR_CONTAINS(buf, "HTTP/1.1 400");
    close(fd);
    resp r;
    http(&k, "GET", "/healthz", "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST_TIMEOUT(e2e_slow_client_cut_off, 60)
{
    const char *extra[] = {"--header-timeout-ms", "1500", NULL};
    kengd k;
    kengd_start(&k, NULL, extra);
    int fd = tcp_connect(k.port);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    long long t0 = now_ms();
    int cut = 0;
    for (size_t i = 0; req[i]; i++) {
        if (write(fd, req + i, 1) != 1) {
            cut = 1;
            break;
        }
        char b[512];
        if (tcp_read_all(fd, b, sizeof b, 300) > 0 && strstr(b, "408")) {
            cut = 1;
            break;
        }
    }
    ASSERT(cut);
    ASSERT_LT(now_ms() - t0, 6000);
    close(fd);
    /* the server still answers others */
    resp r;
    http(&k, "GET", "/healthz", "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST_TIMEOUT(e2e_thousand_idle_connections, 90)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2300) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ASSERT_GE(rl.rlim_cur, 2300);
    kengd k;
    kengd_start(&k, NULL, NULL);
    static int fds[1000];
    for (int i = 0; i < 1000; i++) fds[i] = tcp_connect(k.port);
    /* each does one request and stays open (keep-alive) */
    for (int i = 0; i < 1000; i++) {
        const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        ASSERT_EQ(write(fds[i], req, strlen(req)), (ssize_t)strlen(req));
    }
    for (int i = 0; i < 1000; i++) {
        char b[1024];
        size_t got = 0;
        long long t0 = now_ms();
        while (!strstr(b, "{\"ok\":true}") && now_ms() - t0 < 10000) {
            ssize_t m = read(fds[i], b + got, sizeof b - got - 1);
            if (m <= 0) break;
            got += (size_t)m;
            b[got] = '\0';
        }
        ASSERT_STR_CONTAINS(b, "{\"ok\":true}");
    }
    resp r;
    http(&k, "GET", "/metrics", "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "keng_http_connections 1001");
    ASSERT_STR_CONTAINS(r.body, "keng_http_requests_total{route=\"/healthz\",status=\"200\"}");
    resp_free(&r);
    for (int i = 0; i < 1000; i++) close(fds[i]);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST_TIMEOUT(e2e_sigterm_finishes_and_kill9_loses_nothing, 60)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    resp r;
    http_json(&k, "POST", "/v1/members", "{\"id\":\"hh-k-1\",\"name\":\"Hộ ông Kiên\"}", &r);
    ASSERT_EQ(r.status, 201);
    resp_free(&r);
    kengd_kill9(&k);
    kengd_restart(&k, NULL);
    http(&k, "GET", "/v1/members/hh-k-1", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    /* the same admin token still works; none is printed again */
    http(&k, "GET", "/v1/groups", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    /* an idle keep-alive connection does not hold up SIGTERM */
    int fd = tcp_connect(k.port);
    long long t0 = now_ms();
    kengd_stop(&k);
    ASSERT_LT(now_ms() - t0, 5000);
    close(fd);
    /* libsqlite3 itself, not the sqlite3 tool (which may be missing and then proved nothing) */
    char why[512];
    if (!db_integrity_ok(k.dir, why, sizeof why)) TEST_FAIL("integrity_check: %s", why);
    kengd_cleanup(&k);
}

TEST(e2e_unknown_flag_is_an_error)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/kengd --no-such-flag 2>/dev/null",
             getenv("KENG_BIN_DIR") ? getenv("KENG_BIN_DIR") : "build");
    int st = system(cmd);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 2);
}
