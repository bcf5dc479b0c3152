/* End to end: personal links (/r/TOKEN, /l/TOKEN) as a phone meets them: the URL in the message
 * points where kengd listens, and a link that leads nowhere answers a page, not raw JSON. */
#include "../e2e_util.h"
#include "../test.h"
#include "keng/buf.h"

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

/* A raw request with an Accept header (the curl helper always sends its default one), and for a
 * POST (body not NULL) a Content-Type; the whole answer, headers and body, into out. */
static void raw_accept(kengd *k, const char *path, const char *ctype, const char *accept,
                       const char *body, char *out, size_t cap)
{
    int fd = tcp_connect(k->port);
    char req[2048];
    int n = body ? snprintf(req, sizeof req,
                            "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nAccept: %s\r\n"
                            "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                            path, ctype, accept, strlen(body), body)
                 : snprintf(req, sizeof req,
                            "GET %s HTTP/1.1\r\nHost: x\r\nAccept: %s\r\nConnection: close\r\n\r\n",
                            path, accept);
    ASSERT_LT(n, (int)sizeof req);
    ASSERT_EQ(write(fd, req, (size_t)n), n);
    size_t got = tcp_read_all(fd, out, cap - 1, 5000);
    out[got] = '\0';
    close(fd);
}

static void get_accept(kengd *k, const char *path, const char *accept, char *out, size_t cap)
{
    raw_accept(k, path, NULL, accept, NULL, out, cap);
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

/* ---- what the pages say: a heading for every kind, and errors of a form as a page ---------- */

/* The path of the link of kind sent to recipient for the alert ("" when none was sent yet). */
typedef struct {
    kengd *k;
    const char *alert, *recipient;
    char kind;
    char path[128];
} member_link;

static int member_link_sent(void *ud)
{
    member_link *w = ud;
    char p[512];
    snprintf(p, sizeof p, "%s/deliveries.jsonl", w->k->dir);
    char *s = read_file_all(p, NULL);
    for (char *line = s ? strtok(s, "\n") : NULL; line && !w->path[0]; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const char *url = jstr(j, w->kind == 'l' ? "relay_url" : "reply_url");
        const char *at = url ? strstr(url, w->kind == 'l' ? "/l/" : "/r/") : NULL;
        if (at && !strcmp(jstr(j, "alert_id"), w->alert) &&
            !strcmp(jstr(j, "recipient"), w->recipient))
            snprintf(w->path, sizeof w->path, "%s", at);
        cJSON_Delete(j);
    }
    free(s);
    return w->path[0] != '\0';
}

static void member_link_path(kengd *k, const char *alert, const char *recipient, char kind,
                             char path[128])
{
    member_link w = {k, alert, recipient, kind, ""};
    if (!wait_for(member_link_sent, &w, 10000))
        TEST_FAIL("no %c link was sent to %s for %s", kind, recipient, alert);
    snprintf(path, 128, "%s", w.path);
}

/* The page of a link, as a phone gets it: 200, HTML, and a heading in both languages. */
static void expect_heading(kengd *k, const char *path, const char *vi, const char *en)
{
    resp r;
    http(k, "GET", path, "", NULL, NULL, 0, &r);
    assert_html_page(&r, 200);
    char want[1024];
    snprintf(want, sizeof want, "<h1>%s <span class=\"en\">%s</span></h1>", vi, en);
    ASSERT_STR_CONTAINS(r.body, want);
    snprintf(want, sizeof want, "<title>%s – ", vi);
    ASSERT_STR_CONTAINS(r.body, want);
    ASSERT(!strstr(r.body, "<h1></h1>"));
    ASSERT(!strstr(r.body, "<title> – "));
    resp_free(&r);
}

TEST_TIMEOUT(e2e_links_pages_have_a_heading_for_every_kind, 60)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    char id[64], path[128];

    /* a missing elder (no title field): the reply page and the leader's relay page */
    publish(&k, LOST, "khu-pho-1", id);
    sent_link(&k, id, 'r', path);
    expect_heading(&k, path, "TÌM NGƯỜI ĐI LẠC: Trần Thị Lựu, 81 tuổi",
                   "MISSING PERSON: Trần Thị Lựu, aged 81");
    publish(&k, LOST, "to-lien-gia-07", id);
    sent_link(&k, id, 'l', path);
    expect_heading(&k, path, "TÌM NGƯỜI ĐI LẠC: Trần Thị Lựu, 81 tuổi",
                   "MISSING PERSON: Trần Thị Lựu, aged 81");

    /* a found elder: the ward looks for the family */
    publish(&k,
            "{\"kind\":\"lost_elder\",\"direction\":\"found\",\"person_name\":\"Lê Văn Hùng\","
            "\"age\":82,\"found_at\":\"2026-11-26T05:40:00+07:00\",\"found_place\":\"bến xe "
            "trung tâm\",\"description\":\"Tóc bạc, chống gậy\",\"targets\":{\"groups\":[\"%s\"]}}",
            "khu-pho-1", id);
    sent_link(&k, id, 'r', path);
    expect_heading(&k, path, "TÌM NGƯỜI THÂN cho cụ Lê Văn Hùng, khoảng 82 tuổi",
                   "FAMILY SOUGHT for Lê Văn Hùng, about 82");

    /* a suspicious vehicle: its plate as the officer typed it */
    const char *vehicle =
        "{\"kind\":\"suspicious_vehicle\",\"vehicle_type\":\"motorbike\",\"plate\":\"29-B1 "
        "123.45\",\"make_model\":\"Honda Wave\",\"seen_place\":\"kiệt 45 Núi Thành\","
        "\"targets\":{\"groups\":[\"%s\"]}}";
    publish(&k, vehicle, "khu-pho-1", id);
    sent_link(&k, id, 'r', path);
    expect_heading(&k, path, "PHƯƠNG TIỆN KHẢ NGHI: xe máy Honda Wave, biển số 29-B1 123.45",
                   "SUSPICIOUS VEHICLE: motorbike (Honda Wave), plate 29-B1 123.45");

    /* a scam pattern */
    publish(&k,
            "{\"kind\":\"scam_pattern\",\"pattern_type\":\"fake_police\",\"script_summary\":"
            "\"Gọi điện xưng công an, yêu cầu chuyển tiền\",\"targets\":{\"groups\":[\"%s\"]}}",
            "khu-pho-1", id);
    sent_link(&k, id, 'r', path);
    expect_heading(&k, path, "CẢNH BÁO LỪA ĐẢO: giả danh công an", "SCAM WARNING: fake police");

    /* other: its title, escaped once like everything that comes from data */
    publish(&k,
            "{\"kind\":\"other\",\"title\":\"Cắt nước <khu 2> & \\\"kiệt 45\\\"\",\"body\":\"Từ 8 "
            "giờ đến 11 giờ.\",\"targets\":{\"groups\":[\"%s\"]}}",
            "khu-pho-1", id);
    sent_link(&k, id, 'r', path);
    expect_heading(&k, path, "THÔNG BÁO: Cắt nước &lt;khu 2&gt; &amp; &quot;kiệt 45&quot;",
                   "NOTICE: Cắt nước &lt;khu 2&gt; &amp; &quot;kiệt 45&quot;");
    resp r;
    http(&k, "GET", path, "", NULL, NULL, 0, &r);
    ASSERT(!strstr(r.body, "<khu 2>"));
    ASSERT(!strstr(r.body, "&amp;lt;")); /* not escaped twice */
    resp_free(&r);

    /* An English-speaking household of a relayed group: Vietnamese first all the same, and each
     * language with its own labels (xe máy / motorbike), the message itself in English. */
    publish(&k, vehicle, "to-lien-gia-07", id);
    char lpath[160];
    sent_link(&k, id, 'l', path);
    snprintf(lpath, sizeof lpath, "%s/relay", path);
    http(&k, "POST", lpath, "", "application/json", "{}", 2, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    member_link_path(&k, id, "hh-2-090", 'r', path);
    expect_heading(&k, path, "PHƯƠNG TIỆN KHẢ NGHI: xe máy Honda Wave, biển số 29-B1 123.45",
                   "SUSPICIOUS VEHICLE: motorbike (Honda Wave), plate 29-B1 123.45");
    http(&k, "GET", path, "", NULL, NULL, 0, &r);
    ASSERT_STR_CONTAINS(r.body, "If you see this vehicle"); /* the message, in her language */
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

/* The sentence of an HTML page that starts with from, up to (not including) the next '.'. */
static void page_phrase(const char *body, const char *from, char *out, size_t cap)
{
    const char *p = strstr(body, from);
    if (!p) TEST_FAIL("the page does not say \"%s\": %.400s", from, body);
    p += strlen(from);
    const char *end = strchr(p, '.');
    ASSERT_NOT_NULL(end);
    snprintf(out, cap, "%.*s", (int)(end - p), p);
}

/* An error answered to a form: the page, not the JSON, with the status and a way back. */
static void expect_form_error(const resp *r, long status, const char *back, const char *vi,
                              const char *en)
{
    assert_html_page(r, status);
    ASSERT_STR_CONTAINS(r->body, vi);
    ASSERT_STR_CONTAINS(r->body, en);
    char href[200];
    snprintf(href, sizeof href, "<a class=\"btn\" href=\"%s\">Quay lại trang tin", back);
    ASSERT_STR_CONTAINS(r->body, href);
    ASSERT_STR_CONTAINS(r->body, "Back to the alert");
    ASSERT(!strstr(r->body, "\"error\""));
    ASSERT(!strstr(r->body, "<form")); /* small: the answer, not the page again */
}

static void post_accept(kengd *k, const char *path, const char *ctype, const char *accept,
                        const char *body, char *out, size_t cap)
{
    raw_accept(k, path, ctype, accept, body, out, cap);
}

/* The README's leader: presses "Chuyển tiếp" twice on a cheap phone. The second press is a 409
 * as before, but a page that says when it was passed on, and leads back. */
TEST_TIMEOUT(e2e_links_relay_form_errors_are_pages, 60)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    char id[64], lpath[128], post[160];
    publish(&k, LOST, "to-lien-gia-07", id);
    sent_link(&k, id, 'l', lpath);
    snprintf(post, sizeof post, "%s/relay", lpath);
    resp r;

    /* a note too long: nothing relayed, the page says so */
    char form[1400] = "note=";
    memset(form + 5, 'a', 1200);
    form[1205] = '\0';
    http(&k, "POST", post, "", "application/x-www-form-urlencoded", form, strlen(form), &r);
    expect_form_error(&r, 400, lpath, "Lời nhắn quá dài, tin chưa được chuyển tiếp",
                      "Your note is too long");
    ASSERT_STR_CONTAINS(r.body, "TÌM NGƯỜI ĐI LẠC: Trần Thị Lựu, 81 tuổi"); /* which alert */
    resp_free(&r);
    http(&k, "POST", post, "", "application/json", "{\"note\":7}", 10, &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "invalid_field");
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "note");
    resp_free(&r);
    http(&k, "GET", lpath, "", NULL, NULL, 0, &r);
    ASSERT_STR_CONTAINS(r.body, "Chuyển tiếp tới 19 hộ"); /* still waiting */
    resp_free(&r);

    /* the first press relays and goes back to the page, which says when */
    const char *note = "note=Nh%C3%A0+ai+g%E1%BA%A7n+ch%E1%BB%A3+%C4%91%E1%BB%83+%C3%BD+gi%C3%BAp";
    http(&k, "POST", post, "", "application/x-www-form-urlencoded", note, strlen(note), &r);
    ASSERT_EQ(r.status, 303);
    resp_free(&r);
    http(&k, "GET", lpath, "", NULL, NULL, 0, &r);
    char when[64];
    page_phrase(r.body, "Đã chuyển tiếp lúc ", when, sizeof when);
    ASSERT_EQ(strlen(when), 16); /* "HH:MM DD/MM/YYYY" */
    ASSERT(when[2] == ':' && when[5] == ' ');
    resp_free(&r);

    /* the second press: 409, a page with that time, in both languages */
    http(&k, "POST", post, "", "application/x-www-form-urlencoded", note, strlen(note), &r);
    char vi[128], en[128];
    snprintf(vi, sizeof vi, "Tin này đã được chuyển tiếp lúc %s.", when);
    snprintf(en, sizeof en, "This alert was already passed on at %s.", when);
    expect_form_error(&r, 409, lpath, vi, en);
    ASSERT_STR_CONTAINS(r.body, "Bạn không cần bấm lại");
    ASSERT_STR_CONTAINS(r.body, "TÌM NGƯỜI ĐI LẠC: Trần Thị Lựu, 81 tuổi");
    ASSERT(!strstr(r.body, "already_relayed"));
    ASSERT(!strstr(r.body, "tự động")); /* the leader relayed it, not the timeout */
    resp_free(&r);

    /* the form's address opened as a page (a reload, a copied link) leads back to the page */
    char loc[192];
    http(&k, "GET", post, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 303);
    snprintf(loc, sizeof loc, "Location: %s\r\n", lpath);
    ASSERT_STR_CONTAINS(r.headers, loc);
    resp_free(&r);
    char rpost[160];
    snprintf(rpost, sizeof rpost, "/r/%s/replies", lpath + 3);
    http(&k, "GET", rpost, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 303);
    snprintf(loc, sizeof loc, "Location: /r/%s\r\n", lpath + 3);
    ASSERT_STR_CONTAINS(r.headers, loc);
    resp_free(&r);

    /* JSON clients keep the JSON error (DESIGN §8), and so does a script asking for JSON */
    http(&k, "POST", post, "", "application/json", "{}", 2, &r);
    ASSERT_EQ(r.status, 409);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "already_relayed");
    resp_free(&r);
    char raw[16384];
    post_accept(&k, post, "application/x-www-form-urlencoded", "application/json", "note=", raw,
                sizeof raw);
    ASSERT(strncmp(raw, "HTTP/1.1 409", 12) == 0);
    ASSERT_STR_CONTAINS(raw, "\"already_relayed\"");
    kengd_stop(&k);
    kengd_cleanup(&k);
}

static int count_replies(kengd *k, const char *id)
{
    char p[160];
    snprintf(p, sizeof p, "/v1/alerts/%s/replies", id);
    resp r;
    http(k, "GET", p, NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    int n = cJSON_GetArraySize(jget(r.json, "items"));
    resp_free(&r);
    return n;
}

TEST_TIMEOUT(e2e_links_reply_form_errors_are_pages, 60)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    char id[64], rpath[128], post[160];
    publish(&k, LOST, "khu-pho-1", id);
    sent_link(&k, id, 'r', rpath);
    snprintf(post, sizeof post, "%s/replies", rpath);
    const char *form = "application/x-www-form-urlencoded";
    resp r;

    /* an empty tip, and one of only spaces and a newline (a phone that ignores "required") */
    static const char *const empty[] = {"kind=tip&text=", "kind=tip&text=++%0D%0A+", "kind=tip"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        http(&k, "POST", post, "", form, empty[i], strlen(empty[i]), &r);
        expect_form_error(&r, 400, rpath, "Bạn chưa viết nội dung nên thông tin chưa được gửi",
                          "Your tip was empty, so nothing was sent");
        ASSERT_STR_CONTAINS(r.body, "TÌM NGƯỜI ĐI LẠC: Trần Thị Lựu, 81 tuổi");
        resp_free(&r);
    }
    /* too long: 4,001 "ệ" are over the 4,000 characters a tip may have (and the textarea's
     * maxlength counts) */
    char *big = malloc(16 + 4001 * 9 + 1);
    ASSERT_NOT_NULL(big);
    size_t o = (size_t)snprintf(big, 16, "kind=tip&text=");
    for (int i = 0; i < 4001; i++, o += 9)
        memcpy(big + o, "%E1%BB%87", 9);
    big[o] = '\0';
    http(&k, "POST", post, "", form, big, strlen(big), &r);
    expect_form_error(&r, 400, rpath, "Nội dung quá dài nên chưa gửi được",
                      "Your message is too long");
    resp_free(&r);
    /* not one of the page's buttons */
    http(&k, "POST", post, "", form, "kind=gossip", 11, &r);
    expect_form_error(&r, 400, rpath, "Chưa rõ bạn muốn gửi gì", "It was not clear");
    resp_free(&r);
    ASSERT_EQ(count_replies(&k, id), 0);

    /* JSON clients keep the JSON error, naming the field */
    http(&k, "POST", post, "", "application/json", "{\"kind\":\"tip\",\"text\":\" \"}", 25, &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "invalid_field");
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "text");
    resp_free(&r);
    char raw[16384];
    post_accept(&k, post, form, "application/json", "kind=tip&text=", raw, sizeof raw);
    ASSERT(strncmp(raw, "HTTP/1.1 400", 12) == 0);
    ASSERT_STR_CONTAINS(raw, "\"invalid_field\"");

    /* and a real tip still goes through the form */
    const char *tip = "kind=tip&text=Th%E1%BA%A5y+c%E1%BB%A5+%E1%BB%9F+ch%E1%BB%A3";
    http(&k, "POST", post, "", form, tip, strlen(tip), &r);
    ASSERT_EQ(r.status, 303);
    resp_free(&r);
    ASSERT_EQ(count_replies(&k, id), 1);
    /* as does a long one in Vietnamese: 4,000 characters are 12,000 bytes of "ệ" */
    memcpy(big + 14 + 4000 * 9, "", 1);
    http(&k, "POST", post, "", form, big, strlen(big), &r);
    free(big);
    ASSERT_EQ(r.status, 303);
    resp_free(&r);
    ASSERT_EQ(count_replies(&k, id), 2);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

typedef struct {
    kengd *k;
    const char *path;
} page_wait;

static int relayed_by_keng(void *ud)
{
    page_wait *w = ud;
    resp r;
    http(w->k, "GET", w->path, "", NULL, NULL, 0, &r);
    int done = r.status == 200 && strstr(r.body, "Tin đã được tự động chuyển tiếp tới các hộ lúc");
    resp_free(&r);
    return done;
}

/* A leader who opens the link after keng relayed it (an immediate alert, the relay timeout run
 * out) and presses the button: the page says keng did it, and when. */
TEST_TIMEOUT(e2e_links_relay_after_the_timeout_says_so, 90)
{
    char dir[] = "/tmp/keng-ward-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    keng_buf b;
    ward_group_begin(&b, "g-l", "leader", "ld-1", ",\"relay_timeout\":30");
    ward_member(&b, "ld-1", "[{\"type\":\"file\"}]");
    ward_member(&b, "a-1", "[{\"type\":\"file\"}]");
    ward_member(&b, "a-2", "[{\"type\":\"file\"}]");
    ward_group_end(&b, dir, "g-l");
    kengd k;
    kengd_start(&k, dir, NULL);
    char id[64], lpath[128], post[160];
    publish(&k,
            "{\"kind\":\"lost_elder\",\"person_name\":\"Trần Thị Lựu\",\"age\":81,"
            "\"last_seen_at\":\"2026-11-23T06:15:00+07:00\",\"last_seen_place\":\"chợ Hòa "
            "Cường\",\"urgency\":\"immediate\",\"targets\":{\"groups\":[\"%s\"]}}",
            "g-l", id);
    sent_link(&k, id, 'l', lpath);
    page_wait w = {&k, lpath};
    ASSERT(wait_for(relayed_by_keng, &w, 60000));
    resp r;
    http(&k, "GET", lpath, "", NULL, NULL, 0, &r);
    char when[64];
    page_phrase(r.body, "Tin đã được tự động chuyển tiếp tới các hộ lúc ", when, sizeof when);
    ASSERT(strchr(when, ',') != NULL); /* "HH:MM DD/MM/YYYY, vì đã quá thời gian chờ" */
    *strchr(when, ',') = '\0';
    ASSERT_STR_CONTAINS(r.body, "Passed on to your households automatically");
    resp_free(&r);
    snprintf(post, sizeof post, "%s/relay", lpath);
    http(&k, "POST", post, "", "application/x-www-form-urlencoded", "note=", 5, &r);
    char vi[160];
    snprintf(vi, sizeof vi, "Tin này đã được tự động chuyển tiếp tới các hộ lúc %s</b>", when);
    expect_form_error(&r, 409, lpath, vi, "passed on to your households automatically at");
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
    rm_rf(dir);
}
