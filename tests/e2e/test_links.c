/* End to end: personal links (/r/TOKEN, /l/TOKEN) as a phone meets them: the URL in the message
 * points where kengd listens, and a link that leads nowhere answers a page, not raw JSON. */
#include "../e2e_util.h"
#include "../test.h"

#include <time.h>
#include <unistd.h>

static const char *LOST =
    "{\"kind\":\"lost_elder\",\"person_name\":\"Trần Thị Lựu\",\"age\":81,\"sex\":\"female\","
    "\"last_seen_at\":\"2026-11-23T06:15:00+07:00\",\"last_seen_place\":\"chợ Hòa Cường\","
    "\"description\":\"Áo len xanh, đi dép nhựa\",\"contact_phone\":\"0905 222 333\","
    "\"targets\":{\"groups\":[\"%s\"]}}";

/* Creates and publishes an alert (body: a printf format taking the group) and returns its id. */
static void publish(kengd *k, const char *fmt, const char *group, char id[64])
{
    char body[2048], p[160];
    snprintf(body, sizeof body, fmt, group);
    resp r;
    http_json(k, "POST", "/v1/alerts", body, &r);
    if (r.status != 201) TEST_FAIL("create: %ld %s", r.status, r.body);
    snprintf(id, 64, "%s", jstr(r.json, "id"));
    resp_free(&r);
    snprintf(p, sizeof p, "/v1/alerts/%s/publish", id);
    http_json(k, "POST", p, NULL, &r);
    if (r.status != 200) TEST_FAIL("publish: %ld %s", r.status, r.body);
    resp_free(&r);
}

static void lifecycle(kengd *k, const char *id, const char *action)
{
    char p[160];
    snprintf(p, sizeof p, "/v1/alerts/%s/%s", id, action);
    resp r;
    http_json(k, "POST", p, "{}", &r);
    if (r.status != 200) TEST_FAIL("%s: %ld %s", action, r.status, r.body);
    resp_free(&r);
}

typedef struct {
    kengd *k;
    const char *alert;
    char kind; /* 'r' or 'l' */
    char url[512];
} link_wait;

/* Polls deliveries.jsonl (the file channel of the example ward) for a link of the alert. */
static int link_sent(void *ud)
{
    link_wait *w = ud;
    char p[512];
    snprintf(p, sizeof p, "%s/deliveries.jsonl", w->k->dir);
    char *s = read_file_all(p, NULL);
    int found = 0;
    for (char *line = s ? strtok(s, "\n") : NULL; line && !found; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const char *url = jstr(j, w->kind == 'l' ? "relay_url" : "reply_url");
        if (j && url && !strcmp(jstr(j, "alert_id"), w->alert)) {
            snprintf(w->url, sizeof w->url, "%s", url);
            found = 1;
        }
        cJSON_Delete(j);
    }
    free(s);
    return found;
}

/* The path part (/r/TOKEN) of a link sent for the alert. */
static void sent_link(kengd *k, const char *alert, char kind, char path[128])
{
    link_wait w = {k, alert, kind, ""};
    if (!wait_for(link_sent, &w, 10000)) TEST_FAIL("no %c link was sent for %s", kind, alert);
    const char *p = strstr(w.url, kind == 'l' ? "/l/" : "/r/");
    ASSERT_NOT_NULL(p);
    snprintf(path, 128, "%s", p);
}

static void assert_html_page(const resp *r, long status)
{
    char ct[128], cc[128];
    if (r->status != status) TEST_FAIL("status %ld, want %ld: %.300s", r->status, status, r->body);
    resp_header(r, "Content-Type", ct, sizeof ct);
    ASSERT_STR_EQ(ct, "text/html; charset=utf-8");
    resp_header(r, "Cache-Control", cc, sizeof cc);
    ASSERT_STR_EQ(cc, "no-store");
    ASSERT_NULL(r->json);
    ASSERT(strncmp(r->body, "<!doctype html>", 15) == 0);
    ASSERT_STR_CONTAINS(r->body, "tel:"); /* what to do instead: call the ward */
}

/* A raw request with an Accept header (the curl helper always sends its default one). */
static void get_accept(kengd *k, const char *path, const char *accept, char *out, size_t cap)
{
    int fd = tcp_connect(k->port);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: x\r\nAccept: %s\r\nConnection: close\r\n\r\n",
                     path, accept);
    ASSERT_EQ(write(fd, req, (size_t)n), n);
    size_t got = tcp_read_all(fd, out, cap - 1, 5000);
    out[got] = '\0';
    close(fd);
}

TEST_TIMEOUT(e2e_links_unknown_token_is_a_page, 30)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    static const char *const paths[] = {"/r/0123456789abcdef0123456789abcdef",
                                        "/l/0123456789abcdef0123456789abcdef", "/r/short",
                                        "/l/0123456789ABCDEF0123456789ABCDEF"};
    for (int i = 0; i < 4; i++) {
        resp r;
        http(&k, "GET", paths[i], "", NULL, NULL, 0, &r);
        assert_html_page(&r, 404);
        ASSERT_STR_CONTAINS(r.body, "Đường dẫn này không còn hiệu lực");
        ASSERT_STR_CONTAINS(r.body, "This link does not work");
        ASSERT_STR_CONTAINS(r.body, "Công an phường");
        ASSERT(!strstr(r.body, "unknown_link"));
        resp_free(&r);
    }
    /* a plain form post from the page gets the page too ... */
    const char *form = "kind=nothing_seen";
    resp r;
    http(&k, "POST", "/r/0123456789abcdef0123456789abcdef/replies", "",
         "application/x-www-form-urlencoded", form, strlen(form), &r);
    assert_html_page(&r, 404);
    resp_free(&r);
    http(&k, "POST", "/l/0123456789abcdef0123456789abcdef/relay", "",
         "application/x-www-form-urlencoded", "note=", 5, &r);
    assert_html_page(&r, 404);
    resp_free(&r);
    /* ... while an API client keeps its JSON */
    http(&k, "POST", "/r/0123456789abcdef0123456789abcdef/replies", "", "application/json",
         "{\"kind\":\"nothing_seen\"}", 23, &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "unknown_link");
    resp_free(&r);
    char raw[8192];
    get_accept(&k, "/r/0123456789abcdef0123456789abcdef", "application/json", raw, sizeof raw);
    ASSERT(strncmp(raw, "HTTP/1.1 404", 12) == 0);
    ASSERT_STR_CONTAINS(raw, "\"unknown_link\"");
    get_accept(&k, "/r/0123456789abcdef0123456789abcdef",
               "text/html,application/xhtml+xml,application/json;q=0.9", raw, sizeof raw);
    ASSERT(strncmp(raw, "HTTP/1.1 404", 12) == 0);
    ASSERT_STR_CONTAINS(raw, "text/html");
    kengd_stop(&k);
    kengd_cleanup(&k);
}

/* The review's case: links in messages said http://127.0.0.1:8080 whatever --listen was. The
 * e2e kengd listens on 127.0.0.1 port 0: the link must carry the port it really got. */
TEST_TIMEOUT(e2e_links_public_url_follows_listen, 30)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    char id[64], path[128];
    publish(&k, LOST, "khu-pho-1", id);
    link_wait w = {&k, id, 'r', ""};
    ASSERT(wait_for(link_sent, &w, 10000));
    char want[128];
    snprintf(want, sizeof want, "%s/r/", k.url);
    if (strncmp(w.url, want, strlen(want)) != 0)
        TEST_FAIL("reply link %s does not start with %s", w.url, want);
    /* and it opens */
    sent_link(&k, id, 'r', path);
    resp r;
    http(&k, "GET", path, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "Tôi có thông tin");
    resp_free(&r);
    char log[600];
    snprintf(log, sizeof log, "%s/kengd.log", k.dir);
    kengd_stop(&k);
    char *text = read_file_all(log, NULL);
    snprintf(want, sizeof want, "public URL %s", k.url); /* the start-up line names it */
    ASSERT_STR_CONTAINS(text, want);
    ASSERT(!strstr(text, "takes every address"));
    free(text);
    kengd_cleanup(&k);

    /* Given explicitly, it is kept as given. */
    const char *extra[] = {"--public-url", "https://canhbao.example.vn/", NULL};
    kengd_start(&k, NULL, extra);
    publish(&k, LOST, "khu-pho-1", id);
    link_wait w2 = {&k, id, 'r', ""};
    ASSERT(wait_for(link_sent, &w2, 10000));
    if (strncmp(w2.url, "https://canhbao.example.vn/r/", 29) != 0)
        TEST_FAIL("reply link %s ignores --public-url", w2.url);
    kengd_stop(&k);
    kengd_cleanup(&k);

    /* Listening on every address: loopback stands in, with a warning to set --public-url. */
    const char *any[] = {"--listen", "0.0.0.0:0", NULL};
    kengd_start(&k, NULL, any);
    snprintf(log, sizeof log, "%s/kengd.log", k.dir);
    kengd_stop(&k);
    text = read_file_all(log, NULL);
    snprintf(want, sizeof want, "http://127.0.0.1:%d", k.port);
    ASSERT_STR_CONTAINS(text, want);
    ASSERT_STR_CONTAINS(text, "Set --public-url");
    free(text);
    kengd_cleanup(&k);
}

static void expect_ended(kengd *k, const char *path, const char *why_vi)
{
    resp r;
    http(k, "GET", path, "", NULL, NULL, 0, &r);
    assert_html_page(&r, 410);
    ASSERT_STR_CONTAINS(r.body, "Thông báo đã kết thúc");
    ASSERT_STR_CONTAINS(r.body, "This alert has ended");
    ASSERT_STR_CONTAINS(r.body, why_vi);
    ASSERT(!strstr(r.body, "Trần Thị Lựu")); /* an ended alert's details stop circulating */
    resp_free(&r);
}

TEST_TIMEOUT(e2e_links_ended_alert_is_a_410_page, 60)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    resp r;

    /* resolved: a household's reply link */
    char id[64], rpath[128], post[160];
    publish(&k, LOST, "khu-pho-1", id);
    sent_link(&k, id, 'r', rpath);
    lifecycle(&k, id, "resolve");
    expect_ended(&k, rpath, "Vụ việc đã được giải quyết");
    snprintf(post, sizeof post, "%s/replies", rpath);
    const char *form = "kind=tip&text=Th%E1%BA%A5y+c%E1%BB%A5+%E1%BB%9F+ch%E1%BB%A3";
    http(&k, "POST", post, "", "application/x-www-form-urlencoded", form, strlen(form), &r);
    assert_html_page(&r, 410);
    ASSERT_STR_CONTAINS(r.body, "không cần gửi thêm thông tin");
    resp_free(&r);
    http(&k, "POST", post, "", "application/json", "{\"kind\":\"nothing_seen\"}", 23, &r);
    ASSERT_EQ(r.status, 410);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "alert_closed");
    resp_free(&r);

    /* cancelled: a leader's relay link */
    char lid[64], lpath[128];
    publish(&k, LOST, "to-lien-gia-07", lid);
    sent_link(&k, lid, 'l', lpath);
    http(&k, "GET", lpath, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    lifecycle(&k, lid, "cancel");
    expect_ended(&k, lpath, "đã hủy thông báo này");
    snprintf(post, sizeof post, "%s/relay", lpath);
    http(&k, "POST", post, "", "application/x-www-form-urlencoded", "note=", 5, &r);
    assert_html_page(&r, 410);
    ASSERT_STR_CONTAINS(r.body, "không cần chuyển tiếp");
    resp_free(&r);
    http(&k, "POST", post, "", "application/json", "{}", 2, &r);
    ASSERT_EQ(r.status, 410);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "alert_closed");
    resp_free(&r);

    /* expired: by its expires_at, with nobody touching it */
    char body[1024], when[64], eid[64], epath[128];
    time_t t = time(NULL) + 2;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof body,
             "{\"kind\":\"scam_pattern\",\"pattern_type\":\"fake_police\",\"script_summary\":"
             "\"Gọi điện xưng công an, yêu cầu chuyển tiền\",\"phone_numbers\":[\"0812 345 678\"],"
             "\"expires_at\":\"%s\",\"targets\":{\"groups\":[\"%%s\"]}}",
             when);
    publish(&k, body, "truong-hoc", eid);
    sent_link(&k, eid, 'r', epath);
    sleep(4);
    expect_ended(&k, epath, "Thông báo này đã hết hạn");
    kengd_stop(&k);
    kengd_cleanup(&k);
}
