/* End to end: SIGTERM with deliveries hanging and an upload stalled half-way stops kengd within
 * one grace period (not one for HTTP plus one for the fan-out), exit 0, and the hanging
 * deliveries are back to pending for the next start. */
#include "../e2e_util.h"
#include "../test.h"
#include "keng/buf.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int inflight_now(void *ud)
{
    kengd *k = ud;
    resp r;
    http(k, "GET", "/metrics", NULL, NULL, NULL, 0, &r);
    int ok = r.body && strstr(r.body, "status=\"inflight\"} 3") != NULL;
    resp_free(&r);
    return ok;
}

TEST_TIMEOUT(e2e_sigterm_drains_http_and_fanout_within_one_grace, 60)
{
    char dir[] = "/tmp/keng-stop-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    fake wh;
    const char *args[] = {"--secret", "s3cr3t", NULL};
    fake_start(&wh, "webhook", dir, args);
    keng_buf b;
    keng_buf_init(&b, 0);
    int rc = keng_buf_puts(&b, "{\"id\":\"to-treo\",\"name\":\"Tổ 3\",\"kind\":\"inter_household\","
                               "\"members\":[");
    for (int i = 1; i <= 3; i++)
        rc |= keng_buf_printf(&b,
                              "%s{\"id\":\"hh-%d\",\"name\":\"Hộ %d\",\"contacts\":[{\"type\":"
                              "\"webhook\",\"url\":\"http://127.0.0.1:%d/hang\",\"secret\":"
                              "\"s3cr3t\"}]}",
                              i > 1 ? "," : "", i, i, wh.port);
    rc |= keng_buf_puts(&b, "]}");
    ASSERT_EQ(rc, 0);
    char p[512];
    snprintf(p, sizeof p, "%s/to-treo.json", dir);
    write_file(p, b.data, b.len);
    keng_buf_free(&b);
    const char *extra[] = {"--shutdown-grace-ms", "2000", "--fanout-timeout-ms", "60000", NULL};
    kengd k;
    kengd_start(&k, dir, extra);
    resp r;
    http_json(&k, "POST", "/v1/alerts",
              "{\"kind\":\"other\",\"title\":\"Mất điện khu phố\",\"body\":\"Cắt điện 8h-11h\","
              "\"urgency\":\"immediate\",\"targets\":{\"groups\":[\"to-treo\"]}}",
              &r);
    ASSERT_EQ(r.status, 201);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    resp_free(&r);
    snprintf(p, sizeof p, "/v1/alerts/%s/publish", id);
    http_json(&k, "POST", p, NULL, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT(wait_for(inflight_now, &k, 10000)); /* three transfers hang at the receiver */
    /* An upload that stops half-way: headers and a little of a 5 MB body. */
    int fd = tcp_connect(k.port);
    ASSERT(fd >= 0);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST /v1/media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: image/jpeg\r\nContent-Length: 5000000\r\n\r\n\xff\xd8\xff",
                     k.token);
    ASSERT_EQ(write(fd, head, (size_t)n), n);
    usleep(200 * 1000); /* let kengd read it: the request is in flight when SIGTERM comes */
    long long t0 = now_ms();
    pid_t pid = k.pid;
    kengd_stop(&k); /* asserts exit status 0 */
    long long took = now_ms() - t0;
    close(fd);
    /* One grace period of 2 s covers both; the sum would be 4 s. */
    if (took > 3500) TEST_FAIL("kengd %d took %lld ms to stop with a 2000 ms grace", pid, took);
    /* The hanging deliveries were put back: pending, no attempt counted against them. */
    sqlite3 *db;
    snprintf(p, sizeof p, "%s/keng.db", k.dir);
    ASSERT_EQ(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*), sum(attempts) FROM delivery_state WHERE"
                                     " status = 'pending'", -1, &s, NULL),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(s, 0), 3);
    ASSERT_EQ(sqlite3_column_int(s, 1), 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    kengd_cleanup(&k);
    fake_stop(&wh);
    rm_rf(dir);
}
