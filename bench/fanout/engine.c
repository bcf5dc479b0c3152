/* The engine's side: N deliveries of one message to one webhook URL in a fresh outbox, drained
 * by keng_fanout on a libuv loop; done when every row is written back as delivered (outbox writes
 * included). Prints "engine n=… seconds=… per_s=… first_ms=… max_stall_ms=… rss_kb=…". */
#include "common.h"

#include "keng/auth.h"
#include "keng/ckpt.h"
#include "keng/fanout.h"
#include "keng/log.h"
#include "keng/outbox.h"

#include <curl/curl.h>
#include <stdlib.h>

static int total;
static keng_fanout *fan;
static keng_store *st;
static uv_timer_t check;
static uint64_t t0, t_end, cpu0, cpu_end, usr0, sys0, usr_end, sys_end;
static int stopped;

/* As kengd builds links (app_fanout.c): a derived token per recipient. */
static const unsigned char link_secret[32] = "bench-secret-bench-secret-bench";

static int link_url(void *ud, keng_hmac_cache *macs, char kind, const char *alert, const char *rec,
                    keng_buf *out)
{
    (void)ud;
    char tok[KENG_TOKEN_LEN + 1];
    keng_auth_link_token_cached(macs, link_secret, kind, alert, rec, tok);
    char mid[3] = {'/', kind, '/'};
    int rc = keng_buf_puts(out, "http://127.0.0.1:8080");
    if (rc == 0) rc = keng_buf_append(out, mid, sizeof mid);
    return rc ? rc : keng_buf_append(out, tok, KENG_TOKEN_LEN);
}

static void on_done(void *ud)
{
    (void)ud;
    stopped = 1;
}

static void on_check(uv_timer_t *t)
{
    keng_fanout_stats s;
    keng_fanout_get_stats(fan, &s);
    if (s.written < (uint64_t)total && s.dead == 0) return;
    t_end = uv_hrtime();
    cpu_end = bench_thread_cpu_ns();
    bench_thread_usr_sys_ns(&usr_end, &sys_end);
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    keng_fanout_stop(fan, 1000, on_done, NULL);
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "engine: %s: %d\n", what, rc);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: engine URL N DB\n");
        return 2;
    }
    const char *url = argv[1];
    total = (int)strtol(argv[2], NULL, 10);
    keng_log_set_level(KENG_LOG_WARN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = keng_store_open(argv[3], &st);
    if (rc) die("store", rc);
    /* Schema experiments without rebuilding: KENG_BENCH_SQL runs before the rows go in. */
    const char *exp = getenv("KENG_BENCH_SQL");
    if (exp && *exp && (rc = keng_store_exec(st, exp))) die("KENG_BENCH_SQL", rc);
    /* Publish's work, not timed: one message, N delivery rows, in chunks. */
    uint64_t p0 = uv_hrtime();
    if ((rc = keng_store_exec(st, "INSERT INTO messages (id, alert_id, revision, event, lang,"
                                  " channel, link_kind, text, alert_json, photos) VALUES (1, 'A1',"
                                  " 1, 'alert', 'vi', 'webhook', 'r', '" BENCH_TEXT
                                  "', '" BENCH_ALERT "', '" BENCH_PHOTOS "')")))
        die("message", rc);
    char addr[512];
    snprintf(addr, sizeof addr, "{\"type\":\"webhook\",\"url\":\"%s\",\"secret\":\"s3cr3t\"}", url);
    for (int i = 0; i < total;) {
        if ((rc = keng_store_begin(st))) die("begin", rc);
        for (int k = 0; k < 10000 && i < total; k++, i++) {
            sqlite3_stmt *s = keng_store_stmt(
                st, "INSERT INTO deliveries (alert_id, revision, event, recipient, channel,"
                    " address, message_id, link_kind, idem_key, created_at) VALUES ('A1', 1,"
                    " 'alert', ?1, 'webhook', ?2, 1, 'r', 'A1.1.' || ?1 || '.webhook', 0)");
            char rec[32];
            snprintf(rec, sizeof rec, "hh-%06d", i);
            sqlite3_bind_text(s, 1, rec, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(s, 2, addr, -1, SQLITE_STATIC);
            if (sqlite3_step(s) != SQLITE_DONE) die("insert", -1);
            sqlite3_reset(s);
            if ((rc = keng_outbox_add_state(st, sqlite3_last_insert_rowid(keng_store_db(st)), 0)))
                die("state", rc);
        }
        if ((rc = keng_store_commit(st))) die("commit", rc);
    }
    double publish_s = (double)(uv_hrtime() - p0) / 1e9;
    uv_loop_t loop;
    uv_loop_init(&loop);
    bench_stall stall;
    bench_stall_start(&loop, &stall);
    keng_ckpt *ckpt = NULL; /* as kengd: WAL checkpoints in the thread pool */
    if ((rc = keng_ckpt_start(&loop, st, argv[3], 1000, &ckpt))) die("ckpt", rc);
    keng_fanout_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.link_url = link_url;
    if ((rc = keng_fanout_new(&loop, st, &cfg, &fan))) die("fanout", rc);
    uv_timer_init(&loop, &check);
    uv_timer_start(&check, on_check, 5, 5);
    t0 = uv_hrtime();
    cpu0 = bench_thread_cpu_ns();
    bench_thread_usr_sys_ns(&usr0, &sys0);
    uint64_t loop_t0 = uv_now(&loop);
    keng_fanout_kick(fan);
    uv_run(&loop, UV_RUN_DEFAULT);
    keng_fanout_stats s;
    keng_fanout_get_stats(fan, &s);
    keng_fanout_free(fan);
    uv_close((uv_handle_t *)&stall.prep, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    int closed = uv_loop_close(&loop);
    keng_ckpt_stats ck;
    keng_ckpt_get_stats(ckpt, &ck);
    keng_ckpt_free(ckpt);
    cJSON *counts = NULL;
    keng_outbox_counts(st, "A1", &counts);
    int delivered = cJSON_GetObjectItem(counts, "delivered")->valueint;
    cJSON_Delete(counts);
    keng_store_close(st);
    double secs = (double)(t_end - t0) / 1e9;
    printf("engine n=%d ok=%d seconds=%.3f per_s=%.0f cpu_us=%.2f usr_us=%.2f sys_us=%.2f "
           "first_ms=%.2f max_stall_ms=%.2f rss_kb=%ld publish_insert_s=%.3f flushes=%llu "
           "claims=%llu db_s=%.3f db_max_ms=%.2f checkpoints=%llu ckpt_max_ms=%.1f given_back=%llu "
           "loop_closed=%d\n",
           total, delivered, secs, delivered / secs, (double)(cpu_end - cpu0) / 1e3 / total,
           (double)(usr_end - usr0) / 1e3 / total, (double)(sys_end - sys0) / 1e3 / total,
           (double)(s.first_delivery_ms + loop_t0 - loop_t0), (double)stall.max_ns / 1e6,
           bench_rss_peak_kb(), publish_s, (unsigned long long)s.flushes,
           (unsigned long long)s.claims, (double)s.db_ns / 1e9, (double)s.db_max_ns / 1e6,
           (unsigned long long)ck.runs, (double)ck.max_us / 1e3,
           (unsigned long long)(s.deferred + s.given_back), closed);
    return delivered == total && closed == 0 && stopped ? 0 : 1;
}
