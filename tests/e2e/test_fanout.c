/* End to end: publish → outbox → webhooks on loopback (tests/fakes/webhook.py), signatures,
 * dedupe, retries, dead letters, updates to the same recipients, kill -9 mid fan-out, quiet
 * hours, relay by timeout, live progress. */
#include "../e2e_util.h"
#include "../test.h"
#include "keng/buf.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

/* A ward of webhook households: group gid with members [from, to], path per member. */
static void write_group(const char *dir, const char *gid, int from, int to, int port,
                        const char *relay, const char *leader, int relay_timeout,
                        const char *(*path_for)(int))
{
    keng_buf b;
    keng_buf_init(&b, 0);
    int rc = keng_buf_printf(&b, "{\"id\":\"%s\",\"name\":\"Tổ %s\",\"kind\":\"inter_household\","
                                 "\"relay\":\"%s\"", gid, gid, relay);
    if (leader) rc |= keng_buf_printf(&b, ",\"leader\":\"%s\",\"relay_timeout\":%d", leader, relay_timeout);
    rc |= keng_buf_puts(&b, ",\"members\":[");
    for (int i = from; i <= to; i++) {
        rc |= keng_buf_printf(&b,
                              "%s{\"id\":\"hh-%d\",\"name\":\"Hộ số %d\",\"contacts\":[{\"type\":"
                              "\"webhook\",\"url\":\"http://127.0.0.1:%d%s\",\"secret\":\"s3cr3t\"}]}",
                              i > from ? "," : "", i, i, port, path_for ? path_for(i) : "/ok");
    }
    rc |= keng_buf_puts(&b, "]}");
    ASSERT_EQ(rc, 0);
    char p[512];
    snprintf(p, sizeof p, "%s/%s.json", dir, gid);
    write_file(p, b.data, b.len);
    keng_buf_free(&b);
}

static const char *paths_mixed(int i)
{
    if (i == 55) return "/status/400";
    if (i == 56) return "/flaky/2";
    return "/ok";
}

typedef struct {
    kengd *k;
    const char *alert;
    int delivered, dead;
} wait_ctx;

static int settled(void *ud)
{
    wait_ctx *w = ud;
    char path[256];
    snprintf(path, sizeof path, "/v1/alerts/%s/deliveries?limit=1", w->alert);
    resp r;
    http(w->k, "GET", path, NULL, NULL, NULL, 0, &r);
    int ok = jnum(r.json, "counts.delivered") == w->delivered && jnum(r.json, "counts.dead") == w->dead &&
             jnum(r.json, "counts.pending") == 0 && jnum(r.json, "counts.inflight") == 0;
    resp_free(&r);
    return ok;
}

/* The value of the metric line that starts with name (exactly, then a space); -1 if none. */
static double metric(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ') return strtod(p + n + 1, NULL);
    return -1;
}

static void publish_alert(kengd *k, const char *targets, const char *urgency, char id[64], resp *out)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"kind\":\"scam_pattern\",\"pattern_type\":\"fake_bank\",\"urgency\":\"%s\","
             "\"script_summary\":\"Gọi điện giả danh ngân hàng, đòi mã OTP để 'khóa tài khoản'\","
             "\"phone_numbers\":[\"0812 345 678\"],\"targets\":%s}", urgency, targets);
    resp r;
    http_json(k, "POST", "/v1/alerts", body, &r);
    ASSERT_EQ(r.status, 201);
    snprintf(id, 64, "%s", jstr(r.json, "id"));
    resp_free(&r);
    char p[256];
    snprintf(p, sizeof p, "/v1/alerts/%s/publish", id);
    http_json(k, "POST", p, NULL, out);
    ASSERT_EQ(out->status, 200);
}

static int count_key_prefix(cJSON *log, const char *prefix, int *sig_bad)
{
    int n = 0;
    for (const cJSON *e = log->child; e; e = e->next) {
        const char *key = jstr(e, "key");
        if (key && !strncmp(key, prefix, strlen(prefix))) {
            n++;
            if (!cJSON_IsTrue(jget(e, "sig_ok"))) (*sig_bad)++;
        }
    }
    return n;
}

TEST_TIMEOUT(e2e_webhook_fanout_dedupe_retry_dead_update, 90)
{
    char dir[] = "/tmp/keng-ward-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    fake wh;
    const char *args[] = {"--secret", "s3cr3t", NULL};
    fake_start(&wh, "webhook", dir, args);
    write_group(dir, "g-a", 1, 50, wh.port, "auto", NULL, 0, paths_mixed);
    /* g-b lists 41..50 again by id (a household in two groups) and adds 51..60 */
    keng_buf b;
    keng_buf_init(&b, 0);
    ASSERT_EQ(keng_buf_puts(&b, "{\"id\":\"g-b\",\"name\":\"Tổ B\",\"kind\":\"landlord\",\"members\":["), 0);
    for (int i = 41; i <= 60; i++) {
        if (i <= 50)
            ASSERT_EQ(keng_buf_printf(&b, "%s\"hh-%d\"", i > 41 ? "," : "", i), 0);
        else
            ASSERT_EQ(keng_buf_printf(&b, ",{\"id\":\"hh-%d\",\"name\":\"Hộ số %d\",\"contacts\":[{"
                                          "\"type\":\"webhook\",\"url\":\"http://127.0.0.1:%d%s\","
                                          "\"secret\":\"s3cr3t\"}]}",
                                      i, i, wh.port, paths_mixed(i)), 0);
    }
    ASSERT_EQ(keng_buf_puts(&b, "]}"), 0);
    char p[512];
    snprintf(p, sizeof p, "%s/g-b.json", dir);
    write_file(p, b.data, b.len);
    keng_buf_free(&b);
    const char *extra[] = {"--fanout-backoff-base-ms", "200", NULL};
    kengd k;
    kengd_start(&k, dir, extra);
    char id[64];
    resp r;
    publish_alert(&k, "{\"groups\":[\"g-a\",\"g-b\"]}", "immediate", id, &r);
    ASSERT_EQ(jnum(r.json, "fanout.recipients"), 60);
    ASSERT_EQ(jnum(r.json, "fanout.deliveries"), 60);
    resp_free(&r);
    wait_ctx w = {&k, id, 59, 1};
    ASSERT(wait_for(settled, &w, 20000));
    cJSON *log = fake_log(&wh);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s.2.", id);
    int bad = 0;
    /* 60 distinct recipients; hh-56 took 3 tries; hh-55 once (400 is not retried) */
    int n = count_key_prefix(log, prefix, &bad);
    ASSERT_EQ(n, 62);
    ASSERT_EQ(bad, 0);
    int found_reply = 0;
    for (const cJSON *e = log->child; e; e = e->next) {
        const char *url = jstr(e, "body.reply_url");
        const char *text = jstr(e, "body.text");
        if (url && text && strstr(text, url) && !strcmp(jstr(e, "body.event"), "alert")) found_reply++;
    }
    ASSERT_GE(found_reply, 60);
    cJSON_Delete(log);
    snprintf(p, sizeof p, "/v1/alerts/%s/deliveries?status=dead", id);
    http(&k, "GET", p, NULL, NULL, NULL, 0, &r);
    ASSERT_STR_EQ(jstr(r.json, "items[0].recipient"), "hh-55");
    ASSERT_EQ(jnum(r.json, "items[0].last_code"), 400);
    resp_free(&r);
    /* the update reaches exactly the 60 */
    snprintf(p, sizeof p, "/v1/alerts/%s", id);
    http_json(&k, "PATCH", p, "{\"advice\":\"Không đọc mã OTP cho bất kỳ ai.\"}", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(jnum(r.json, "fanout.deliveries"), 60);
    resp_free(&r);
    w.delivered = 59 + 59;
    w.dead = 2;
    ASSERT(wait_for(settled, &w, 20000));
    log = fake_log(&wh);
    snprintf(prefix, sizeof prefix, "%s.3.", id);
    bad = 0;
    ASSERT_GE(count_key_prefix(log, prefix, &bad), 60);
    ASSERT_EQ(bad, 0);
    cJSON_Delete(log);
    /* redeliver re-queues the dead ones */
    snprintf(p, sizeof p, "/v1/alerts/%s/redeliver", id);
    http_json(&k, "POST", p, NULL, &r);
    ASSERT_EQ(jnum(r.json, "requeued"), 2);
    resp_free(&r);
    http(&k, "GET", "/metrics", "", NULL, NULL, 0, &r);
    /* 58 + the flaky one delivered, twice (alert and update); the flaky one failed twice each
     * time; the 400 died each time (and maybe again after the redelivery). The counters agree
     * with the outbox: */
    ASSERT_EQ(metric(r.body, "keng_fanout_channel_results_total{channel=\"webhook\","
                             "verdict=\"delivered\"}"),
              118);
    ASSERT_GE(metric(r.body, "keng_fanout_channel_results_total{channel=\"webhook\","
                             "verdict=\"retry\"}"),
              4); /* more if the receiver dropped a connection under load */
    double dead = metric(r.body, "keng_fanout_channel_results_total{channel=\"webhook\","
                                 "verdict=\"dead\"}");
    ASSERT(dead >= 2 && dead <= 4);
    ASSERT_EQ(metric(r.body, "keng_fanout_channel_results_total{channel=\"zalo_oa\","
                             "verdict=\"delivered\"}"),
              0);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
    fake_stop(&wh);
    rm_rf(dir);
}

TEST_TIMEOUT(e2e_kill9_mid_fanout_then_restart, 120)
{
    char dir[] = "/tmp/keng-ward-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    fake wh;
    const char *args[] = {"--secret", "s3cr3t", NULL};
    fake_start(&wh, "webhook", dir, args);
    write_group(dir, "g-big", 1, 400, wh.port, "auto", NULL, 0, NULL);
    kengd k;
    kengd_start(&k, dir, NULL);
    char id[64];
    resp r;
    publish_alert(&k, "{\"all\":true}", "immediate", id, &r);
    ASSERT_EQ(jnum(r.json, "fanout.deliveries"), 400);
    resp_free(&r);
    usleep(50000);
    kengd_kill9(&k);
    cJSON *log = fake_log(&wh);
    int before = cJSON_GetArraySize(log);
    cJSON_Delete(log);
    kengd_restart(&k, NULL);
    wait_ctx w = {&k, id, 400, 0};
    ASSERT(wait_for(settled, &w, 60000));
    log = fake_log(&wh);
    /* every recipient reached; repeats only of what was in flight at the crash */
    char seen[401] = {0};
    int total = 0;
    for (const cJSON *e = log->child; e; e = e->next) {
        const char *key = jstr(e, "key");
        const char *hh = key ? strstr(key, ".hh-") : NULL;
        if (!hh) continue;
        int i = atoi(hh + 4);
        ASSERT(i >= 1 && i <= 400);
        seen[i] = 1;
        total++;
    }
    for (int i = 1; i <= 400; i++)
        if (!seen[i]) TEST_FAIL("hh-%d was never reached (%d before the crash)", i, before);
    ASSERT_LE(total - 400, 256); /* at most the transfers in flight */
    cJSON_Delete(log);
    kengd_stop(&k);
    kengd_cleanup(&k);
    fake_stop(&wh);
    rm_rf(dir);
}

TEST_TIMEOUT(e2e_quiet_hours_hold_expected_alerts, 60)
{
    char dir[] = "/tmp/keng-ward-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    fake wh;
    const char *args[] = {"--secret", "s3cr3t", NULL};
    fake_start(&wh, "webhook", dir, args);
    write_group(dir, "g-q", 1, 5, wh.port, "auto", NULL, 0, NULL);
    char quiet[32];
    quiet_window_around_now(quiet);
    const char *extra[] = {"--quiet-hours", quiet, NULL};
    kengd k;
    kengd_start(&k, dir, extra);
    char id[64], p[256];
    resp r;
    publish_alert(&k, "{\"all\":true}", "expected", id, &r);
    resp_free(&r);
    sleep(2);
    snprintf(p, sizeof p, "/v1/alerts/%s/deliveries", id);
    http(&k, "GET", p, NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "counts.pending"), 5);
    ASSERT_EQ(jnum(r.json, "counts.delivered"), 0);
    ASSERT_GT(jnum(r.json, "items[0].next_at"), (double)time(NULL) + 30 * 60);
    resp_free(&r);
    publish_alert(&k, "{\"all\":true}", "immediate", id, &r);
    resp_free(&r);
    wait_ctx w = {&k, id, 5, 0};
    ASSERT(wait_for(settled, &w, 10000));
    kengd_stop(&k);
    kengd_cleanup(&k);
    fake_stop(&wh);
    rm_rf(dir);
}

TEST_TIMEOUT(e2e_relay_by_timeout_and_live_events, 120)
{
    char dir[] = "/tmp/keng-ward-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    fake wh;
    const char *args[] = {"--secret", "s3cr3t", NULL};
    fake_start(&wh, "webhook", dir, args);
    write_group(dir, "g-r", 1, 10, wh.port, "leader", "hh-1", 30, NULL);
    kengd k;
    kengd_start(&k, dir, NULL);
    char id[64], p[256];
    resp r;
    publish_alert(&k, "{\"groups\":[\"g-r\"]}", "immediate", id, &r);
    ASSERT_EQ(jnum(r.json, "fanout.recipients"), 1);
    ASSERT_EQ(jnum(r.json, "fanout.held"), 9);
    resp_free(&r);
    /* live progress: Server-Sent Events with the counts */
    int fd = tcp_connect(k.port);
    char req[512];
    int n = snprintf(req, sizeof req, "GET /v1/alerts/%s/events HTTP/1.1\r\nHost: x\r\n"
                                      "Authorization: Bearer %s\r\n\r\n", id, k.token);
    ASSERT_EQ(write(fd, req, (size_t)n), n);
    static char buf[65536];
    tcp_read_all(fd, buf, sizeof buf, 1500);
    ASSERT_STR_CONTAINS(buf, "text/event-stream");
    ASSERT_STR_CONTAINS(buf, "event: progress");
    ASSERT_STR_CONTAINS(buf, "\"counts\"");
    /* nobody relays: after relay_timeout (30 s) keng relays by itself */
    wait_ctx w = {&k, id, 10, 0};
    ASSERT(wait_for(settled, &w, 60000));
    tcp_read_all(fd, buf, sizeof buf, 1500);
    ASSERT_STR_CONTAINS(buf, "\"delivered\":10");
    close(fd);
    snprintf(p, sizeof p, "/v1/alerts/%s/deliveries", id);
    http(&k, "GET", p, NULL, NULL, NULL, 0, &r);
    ASSERT_STR_EQ(jstr(r.json, "reach.groups[0].relay"), "relayed");
    ASSERT_STR_EQ(jstr(r.json, "reach.groups[0].relayed_by"), "keng");
    ASSERT_GE(jnum(r.json, "reach.groups[0].time_to_relay_s"), 30);
    resp_free(&r);
    http(&k, "GET", "/v1/audit?since=0&limit=100", NULL, NULL, NULL, 0, &r);
    ASSERT_STR_CONTAINS(r.body, "relay.timeout");
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
    fake_stop(&wh);
    rm_rf(dir);
}
