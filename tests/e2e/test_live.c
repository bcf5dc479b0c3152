/* End to end: what live views show is what the outbox holds. A fan-out with retries, dead rows
 * and a contact fallback, watched over Server-Sent Events from before its publication: the
 * event that says nothing is pending or in flight comes, and its counts, the deliveries page's
 * counts and totals, and /metrics all equal the rows' real states (read from keng.db). */
#include "../e2e_util.h"
#include "../test.h"
#include "keng/buf.h"

#include <poll.h>
#include <sqlite3.h>
#include <unistd.h>

#define MEMBERS 120

/* Household i: /status/400 (dead at once) for every 20th, /flaky/2 (two 500s, then 200) for the
 * next one, a refusing webhook then the file channel for hh-fb, else /ok. */
static void write_ward(const char *dir, int port)
{
    keng_buf b;
    keng_buf_init(&b, 0);
    int rc =
        keng_buf_puts(&b, "{\"id\":\"g-live\",\"name\":\"Tổ live\",\"kind\":\"inter_household\","
                          "\"relay\":\"auto\",\"members\":[");
    for (int i = 1; i <= MEMBERS; i++) {
        const char *path = i % 20 == 0 ? "/status/400" : i % 20 == 1 ? "/flaky/2" : "/ok";
        rc |= keng_buf_printf(
            &b,
            "%s{\"id\":\"hh-%d\",\"name\":\"Hộ %d\",\"contacts\":[{\"type\":"
            "\"webhook\",\"url\":\"http://127.0.0.1:%d%s\",\"secret\":\"s3cr3t\"}]}",
            i > 1 ? "," : "", i, i, port, path);
    }
    rc |=
        keng_buf_printf(&b,
                        ",{\"id\":\"hh-fb\",\"name\":\"Hộ fb\",\"contacts\":[{\"type\":\"webhook\","
                        "\"url\":\"http://127.0.0.1:%d/status/410\",\"secret\":\"s3cr3t\"},"
                        "{\"type\":\"file\"}]}]}",
                        port);
    ASSERT_EQ(rc, 0);
    char p[512];
    snprintf(p, sizeof p, "%s/g-live.json", dir);
    write_file(p, b.data, b.len);
    keng_buf_free(&b);
}

/* The outbox's own counts of alert (NULL: all) as keng_outbox_counts shapes them, computed here
 * with SQL on keng.db: by_channel.CH.STATUS and the top level. */
static cJSON *db_counts(const char *dir, const char *alert)
{
    char path[600];
    snprintf(path, sizeof path, "%s/keng.db", dir);
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt *s;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "SELECT channel, status, attempts > 0, count(*) FROM deliveries"
                                 " JOIN delivery_state USING (id, alert_id)"
                                 " WHERE ?1 IS NULL OR alert_id = ?1 GROUP BY 1, 2, 3",
                                 -1, &s, NULL),
              SQLITE_OK);
    if (alert) sqlite3_bind_text(s, 1, alert, -1, SQLITE_TRANSIENT);
    static const char *const keys[] = {"pending", "inflight", "delivered",
                                       "failed",  "dead",     "superseded"};
    enum { NKEYS = sizeof keys / sizeof keys[0] };
    cJSON *root = cJSON_CreateObject(), *by = cJSON_CreateObject();
    for (int i = 0; i < NKEYS; i++)
        cJSON_AddNumberToObject(root, keys[i], 0);
    double total = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *ch = (const char *)sqlite3_column_text(s, 0);
        const char *st = (const char *)sqlite3_column_text(s, 1);
        int failed = sqlite3_column_int(s, 2) && !strcmp(st, "pending");
        double n = sqlite3_column_double(s, 3);
        cJSON *c = cJSON_GetObjectItemCaseSensitive(by, ch);
        if (!c) {
            c = cJSON_AddObjectToObject(by, ch);
            for (int i = 0; i < NKEYS; i++)
                cJSON_AddNumberToObject(c, keys[i], 0);
        }
        cJSON *objs[2] = {root, c};
        for (int k = 0; k < 2; k++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(objs[k], st);
            cJSON_SetNumberValue(v, v->valuedouble + n);
            if (failed) {
                v = cJSON_GetObjectItemCaseSensitive(objs[k], "failed");
                cJSON_SetNumberValue(v, v->valuedouble + n);
            }
        }
        total += n;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    cJSON_AddNumberToObject(root, "total", total);
    cJSON_AddItemToObject(root, "by_channel", by);
    return root;
}

static void assert_counts_equal(const cJSON *got, const cJSON *want, const char *what)
{
    if (!cJSON_Compare(got, want, 1)) {
        char *a = cJSON_PrintUnformatted(got), *b = cJSON_PrintUnformatted(want);
        TEST_FAIL("%s: %s, the outbox says %s", what, a, b);
    }
}

/* Server-Sent Events read from a raw connection: the data of each event, parsed. */
typedef struct sse {
    int fd;
    keng_buf in;
    size_t scanned;
} sse;

static void sse_open(sse *e, kengd *k, const char *alert)
{
    e->fd = tcp_connect(k->port);
    keng_buf_init(&e->in, 64u << 20);
    e->scanned = 0;
    char req[512];
    int n =
        snprintf(req, sizeof req,
                 "GET /v1/alerts/%s/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
                 alert, k->token);
    ASSERT_EQ(write(e->fd, req, (size_t)n), n);
}

/* The next event's data, within timeout_ms; NULL when none came. The caller deletes it. */
static cJSON *sse_next(sse *e, int timeout_ms)
{
    long long t0 = now_ms();
    for (;;) {
        char *data = e->in.data ? strstr(e->in.data + e->scanned, "data: ") : NULL;
        char *end = data ? strstr(data, "\n\n") : NULL;
        if (end) {
            e->scanned = (size_t)(end + 2 - e->in.data);
            return cJSON_ParseWithLength(data + 6, (size_t)(end - data - 6));
        }
        long long left = timeout_ms - (now_ms() - t0);
        if (left <= 0) return NULL;
        struct pollfd p = {.fd = e->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0) return NULL;
        char buf[65536];
        ssize_t got = read(e->fd, buf, sizeof buf);
        if (got <= 0) return NULL;
        ASSERT_EQ(keng_buf_append(&e->in, buf, (size_t)got), 0);
    }
}

typedef struct {
    kengd *k;
    const char *alert;
} ctx;

static int nothing_left(void *ud)
{
    ctx *c = ud;
    cJSON *d = db_counts(c->k->dir, c->alert);
    int done = jnum(d, "pending") == 0 && jnum(d, "inflight") == 0 && jnum(d, "total") > 0;
    cJSON_Delete(d);
    return done;
}

static void check_page_and_metrics(kengd *k, const char *alert)
{
    cJSON *want = db_counts(k->dir, alert);
    char p[256];
    snprintf(p, sizeof p, "/v1/alerts/%s/deliveries?limit=5", alert);
    resp r;
    http(k, "GET", p, NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    assert_counts_equal(jget(r.json, "counts"), want, "GET deliveries counts");
    ASSERT_EQ(jnum(r.json, "total"), jnum(want, "total"));
    ASSERT_EQ(cJSON_GetArraySize(jget(r.json, "items")), 5);
    resp_free(&r);
    static const char *const st[] = {"dead", "delivered", "failed", "pending"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "/v1/alerts/%s/deliveries?status=%s&limit=1000", alert, st[i]);
        http(k, "GET", p, NULL, NULL, NULL, 0, &r);
        ASSERT_EQ(jnum(r.json, "total"), jnum(want, st[i]));
        ASSERT_EQ(cJSON_GetArraySize(jget(r.json, "items")), (int)jnum(want, st[i]));
        resp_free(&r);
    }
    cJSON_Delete(want);
    /* /metrics: keng_deliveries{channel,status} of every alert, as the outbox has them. */
    want = db_counts(k->dir, NULL);
    http(k, "GET", "/metrics", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    const cJSON *ch;
    cJSON_ArrayForEach(ch, jget(want, "by_channel"))
    {
        const cJSON *n;
        cJSON_ArrayForEach(n, ch)
        {
            char line[160];
            snprintf(line, sizeof line, "keng_deliveries{channel=\"%s\",status=\"%s\"} %.0f\n",
                     ch->string, n->string, n->valuedouble);
            ASSERT_STR_CONTAINS(r.body, line);
        }
    }
    resp_free(&r);
    cJSON_Delete(want);
}

TEST_TIMEOUT(e2e_live_counts_equal_the_outbox_and_the_last_event_comes, 120)
{
    char dir[] = "/tmp/keng-ward-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    fake wh;
    const char *args[] = {"--secret", "s3cr3t", NULL};
    fake_start(&wh, "webhook", dir, args);
    write_ward(dir, wh.port);
    const char *extra[] = {"--fanout-backoff-base-ms", "200", NULL};
    kengd k;
    kengd_start(&k, dir, extra);
    resp r;
    http_json(
        &k, "POST", "/v1/alerts",
        "{\"kind\":\"scam_pattern\",\"pattern_type\":\"fake_bank\",\"urgency\":\"immediate\","
        "\"script_summary\":\"Gọi điện giả danh ngân hàng\",\"phone_numbers\":[\"0812 345 678\"],"
        "\"targets\":{\"groups\":[\"g-live\"]}}",
        &r);
    ASSERT_EQ(r.status, 201);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    resp_free(&r);
    /* The viewer comes first: a draft has nothing to deliver. */
    sse e;
    sse_open(&e, &k, id);
    cJSON *ev = sse_next(&e, 5000);
    ASSERT_NOT_NULL(ev);
    ASSERT_EQ(jnum(ev, "counts.total"), 0);
    ASSERT_NOT_NULL(jget(ev, "reach.groups"));
    cJSON_Delete(ev);
    char p[256];
    snprintf(p, sizeof p, "/v1/alerts/%s/publish", id);
    http_json(&k, "POST", p, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(jnum(r.json, "fanout.deliveries"), MEMBERS + 1);
    resp_free(&r);
    /* Events until the one that says nothing is pending or in flight. */
    cJSON *last = NULL;
    int events = 0;
    while ((ev = sse_next(&e, 30000))) {
        events++;
        ASSERT_STR_EQ(jstr(ev, "alert"), id);
        ASSERT_NOT_NULL(jget(ev, "reach.total"));
        cJSON_Delete(last);
        last = ev;
        if (jnum(ev, "counts.total") > 0 && jnum(ev, "counts.pending") == 0 &&
            jnum(ev, "counts.inflight") == 0)
            break;
    }
    ASSERT_NOT_NULL(last);
    ASSERT_GE(events, 1);
    /* That last event is right: the outbox holds exactly that. */
    cJSON *want = db_counts(k.dir, id);
    assert_counts_equal(jget(last, "counts"), want, "the last event's counts");
    ASSERT_EQ(jnum(want, "dead"), MEMBERS / 20 + 1); /* the 400s and hh-fb's webhook */
    ASSERT_EQ(jnum(want, "delivered"), MEMBERS - MEMBERS / 20 + 1); /* + hh-fb's file line */
    ASSERT_EQ(jnum(last, "reach.total.recipients"), MEMBERS + 1);
    ASSERT_EQ(jnum(last, "reach.total.delivered"), MEMBERS - MEMBERS / 20 + 1);
    cJSON_Delete(want);
    cJSON_Delete(last);
    check_page_and_metrics(&k, id);
    /* Redelivery (outside the engine): dead rows go back to pending, fail again, settle. */
    snprintf(p, sizeof p, "/v1/alerts/%s/redeliver", id);
    http_json(&k, "POST", p, NULL, &r);
    ASSERT_EQ(jnum(r.json, "requeued"), MEMBERS / 20); /* not hh-fb's: its file line reached it */
    resp_free(&r);
    ctx c = {&k, id};
    ASSERT(wait_for(nothing_left, &c, 30000));
    /* The viewer hears of it: its last event (none comes for 3 s after) is the outbox's state. */
    last = NULL;
    while ((ev = sse_next(&e, 3000))) {
        cJSON_Delete(last);
        last = ev;
    }
    ASSERT_NOT_NULL(last);
    want = db_counts(k.dir, id);
    assert_counts_equal(jget(last, "counts"), want, "the last event after the redelivery");
    ASSERT_EQ(jnum(want, "dead"), MEMBERS / 20 + 1);
    ASSERT_EQ(jnum(want, "total"), MEMBERS + 2); /* the fallback row was not made twice */
    cJSON_Delete(want);
    cJSON_Delete(last);
    check_page_and_metrics(&k, id);
    close(e.fd);
    keng_buf_free(&e.in);
    kengd_stop(&k);
    kengd_cleanup(&k);
    fake_stop(&wh);
    rm_rf(dir);
}
