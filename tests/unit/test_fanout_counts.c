/* What the live views read, checked against the outbox itself: the tally's counts (kept from the
 * engine's row changes, with retries, dead rows, contact fallbacks, redelivery, added rows and
 * drift), the deliveries page read in steps, and reach computed in memory against the single SQL
 * statement it replaced. */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "test_fanout_util.h"

#include "keng/norm.h"
#include "keng/reach.h"
#include "keng/tally.h"

/* ---- helpers ---- */

static keng_tally *g_tally;
static int g_mismatch, g_checks;
static fo_env *g_env;

static void on_rows(void *ud, const keng_fanout_change *rows, int n)
{
    (void)ud;
    keng_tally_rows(g_tally, rows, n);
}

static void on_change(void *ud, const char *alert_id)
{
    (void)ud, (void)alert_id;
}

static int link_url(void *ud, struct keng_hmac_cache *macs, char kind, const char *alert_id,
                    const char *recipient, keng_buf *out)
{
    (void)ud, (void)macs;
    return keng_buf_printf(out, "http://keng.test/%c/%s-%s", kind, alert_id, recipient);
}

static char *print(cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* The tally's counts of alert (NULL: all) against the outbox's GROUP BY, as text (same keys in
 * the same order). 1 when equal; prints both when not. */
static int same_counts(keng_tally *t, keng_store *st, const char *alert)
{
    cJSON *a = NULL, *b = NULL;
    ASSERT_EQ(keng_tally_counts(t, alert, &a), 0);
    ASSERT_EQ(keng_outbox_counts(st, alert, &b), 0);
    char *sa = print(a), *sb = print(b);
    int same = strcmp(sa, sb) == 0;
    if (!same) fprintf(stderr, "  tally  %s\n  outbox %s\n", sa, sb);
    cJSON_free(sa);
    cJSON_free(sb);
    return same;
}

static void noop_timer(uv_timer_t *t)
{
    (void)t;
}

typedef int (*cond_fn)(void *arg);

/* Runs loop until cond holds or timeout_ms passed. */
static int run_until(uv_loop_t *loop, cond_fn cond, void *arg, int timeout_ms)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, noop_timer, 5, 5);
    uint64_t end = uv_now(loop) + (uint64_t)timeout_ms;
    int ok;
    while (!(ok = cond(arg)) && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static int is_current(void *arg)
{
    return keng_tally_current(arg);
}

/* Nothing pending or in flight, and the tally has caught up. Between two loop iterations the tally
 * must agree with the outbox, whatever the engine is doing: checked at every call. */
static int settled_and_checked(void *arg)
{
    (void)arg;
    if (keng_tally_current(g_tally)) {
        g_checks++;
        if (!same_counts(g_tally, g_env->st, "A1") || !same_counts(g_tally, g_env->st, NULL))
            g_mismatch++;
    }
    return keng_tally_current(g_tally) && fo_count(g_env, "status IN ('pending', 'inflight')") == 0;
}

typedef struct {
    int done;
} stopped;

static void on_stopped(void *ud)
{
    ((stopped *)ud)->done = 1;
}

static int is_stopped(void *arg)
{
    return ((stopped *)arg)->done;
}

/* Runs an engine over e's outbox with the tally fed by it, until everything is settled. */
static void run_engine(fo_env *e, uv_loop_t *loop, int timeout_ms)
{
    keng_fanout_config c;
    memset(&c, 0, sizeof c);
    c.data_dir = e->dir;
    c.timeout_ms = 5000;
    c.backoff_base_ms = 50;
    c.on_change = on_change;
    c.on_rows = on_rows;
    c.link_url = link_url;
    keng_fanout *f;
    ASSERT_EQ(keng_fanout_new(loop, e->st, &c, &f), 0);
    keng_fanout_kick(f);
    ASSERT(run_until(loop, settled_and_checked, NULL, timeout_ms));
    stopped s = {0};
    keng_fanout_stop(f, 200, on_stopped, &s);
    ASSERT(run_until(loop, is_stopped, &s, 5000));
    keng_fanout_free(f);
}

static void close_tally(uv_loop_t *loop)
{
    keng_tally_close(g_tally);
    g_tally = NULL;
    uv_run(loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(loop), 0);
}

static double num(const cJSON *o, const char *k)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* ---- the tally ---- */

TEST_TIMEOUT(counts_follow_the_engine_through_retries_dead_fallback_and_redelivery, 60)
{
    fo_env e;
    fo_env_init(&e);
    g_env = &e;
    int port = fo_peer(&e, "webhook", "--secret", "s3cr3t");
    int64_t m = fo_message(&e, "A1", "alert", "webhook", "r", "x", NULL, NULL, NULL);
    int64_t mf = fo_message(&e, "A2", "alert", "file", "r", "y", NULL, NULL, NULL);
    char addr[256];
    for (int i = 0; i < 40; i++) {
        const char *path = i < 3 ? "/flaky/2" : i < 5 ? "/status/400" : "/ok";
        snprintf(addr, sizeof addr,
                 "{\"type\":\"webhook\",\"url\":\"http://127.0.0.1:%d%s\",\"secret\":\"s3cr3t\"}",
                 port, path);
        char rcp[16];
        snprintf(rcp, sizeof rcp, "hh-%d", i);
        fo_delivery(&e, "A1", rcp, "webhook", addr, m, "r");
    }
    for (int i = 0; i < 30; i++) {
        char rcp[16];
        snprintf(rcp, sizeof rcp, "hh-%d", i);
        fo_delivery(&e, "A2", rcp, "file", "{\"type\":\"file\"}", mf, "r");
    }
    /* A household whose first contact refuses (dead): its next one, the file, is added by the
     * engine itself (a new row, found by the tally's look above hi). */
    char contacts[512];
    snprintf(contacts, sizeof contacts,
             "[{\"type\":\"webhook\",\"url\":\"http://127.0.0.1:%d/status/410\",\"secret\":\"s\"},"
             "{\"type\":\"file\"}]",
             port);
    char sql[800];
    snprintf(sql, sizeof sql,
             "INSERT INTO members (id, name, contacts, created_at, updated_at)"
             " VALUES ('hh-fb', 'Hộ fb', '%s', 0, 0)",
             contacts);
    ASSERT_EQ(keng_store_exec(e.st, sql), 0);
    cJSON *arr = cJSON_Parse(contacts);
    char *first = cJSON_PrintUnformatted(cJSON_GetArrayItem(arr, 0));
    fo_delivery(&e, "A1", "hh-fb", "webhook", first, m, "r");
    free(first);
    cJSON_Delete(arr);

    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    ASSERT_EQ(keng_tally_new(&loop, e.st, NULL, NULL, &g_tally), 0);
    int64_t n[KENG_TALLY_STATES];
    ASSERT_EQ(keng_tally_get(g_tally, "A1", n), -EAGAIN); /* before the first scan */
    ASSERT(run_until(&loop, is_current, g_tally, 5000));
    ASSERT(same_counts(g_tally, e.st, "A1"));
    run_engine(&e, &loop, 30000);
    ASSERT_EQ(g_mismatch, 0);
    ASSERT_GT(g_checks, 3);
    /* The outcome itself: 3 flaky ones retried then delivered, 2 + 1 dead, the fallback line. */
    ASSERT_EQ(fo_count(&e, "alert_id = 'A1' AND status = 'dead'"), 3);
    ASSERT_EQ(fo_count(&e, "alert_id = 'A1' AND channel = 'file' AND status = 'delivered'"), 1);
    ASSERT_EQ(fo_count(&e, "alert_id = 'A1' AND attempts = 3 AND status = 'delivered'"), 3);
    ASSERT(same_counts(g_tally, e.st, "A1"));
    ASSERT(same_counts(g_tally, e.st, "A2"));
    ASSERT(same_counts(g_tally, e.st, NULL));
    cJSON *c;
    ASSERT_EQ(keng_tally_counts(g_tally, "A1", &c), 0);
    ASSERT_EQ(num(c, "total"), 42);
    ASSERT_EQ(num(c, "dead"), 3);
    ASSERT_EQ(num(c, "delivered"), 39);
    cJSON_Delete(c);

    /* An officer re-queues the dead rows (outside the engine): the tally notices at the touch,
     * before the engine claims them. */
    ASSERT_EQ(keng_outbox_redeliver(e.st, "A1"), 2); /* not the one its file contact reached */
    keng_tally_touch(g_tally, "A1");
    ASSERT(same_counts(g_tally, e.st, "A1"));
    ASSERT(same_counts(g_tally, e.st, NULL));
    ASSERT(run_until(&loop, is_current, g_tally, 5000)); /* and a look for added rows */
    run_engine(&e, &loop, 30000);
    ASSERT_EQ(g_mismatch, 0);
    ASSERT(same_counts(g_tally, e.st, "A1"));
    keng_tally_stats ts;
    keng_tally_get_stats(g_tally, &ts);
    ASSERT_EQ(ts.requeued, 2);
    ASSERT_EQ(ts.corrected, 0); /* the checks after each settling found nothing to correct */
    ASSERT_GE(ts.verified, 1);
    close_tally(&loop);
    fo_env_done(&e);
}

static int verified(void *arg)
{
    keng_tally_stats s;
    keng_tally_get_stats(arg, &s);
    return s.verified > 0 && keng_tally_current(arg);
}

TEST(counts_added_rows_and_drift_are_caught_up)
{
    fo_env e;
    fo_env_init(&e);
    int64_t m = fo_message(&e, "A1", "alert", "webhook", "r", "x", NULL, NULL, NULL);
    fo_delivery(&e, "A1", "hh-0", "webhook", "{}", m, "r");
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    ASSERT_EQ(keng_tally_new(&loop, e.st, NULL, NULL, &g_tally), 0);
    ASSERT(run_until(&loop, is_current, g_tally, 5000));
    /* A publish adds 5,000 rows (several steps of the scan) of two alerts. */
    ASSERT_EQ(keng_store_begin(e.st), 0);
    for (int i = 1; i <= 5000; i++) {
        char rcp[16];
        snprintf(rcp, sizeof rcp, "hh-%d", i);
        fo_delivery(&e, i % 5 ? "A1" : "A3", rcp, i % 3 ? "webhook" : "zalo_oa", "{}", m, "r");
    }
    ASSERT_EQ(keng_store_commit(e.st), 0);
    keng_tally_touch(g_tally, "A1");
    ASSERT(!keng_tally_current(g_tally));
    ASSERT(run_until(&loop, is_current, g_tally, 5000));
    ASSERT(same_counts(g_tally, e.st, "A1"));
    ASSERT(same_counts(g_tally, e.st, "A3"));
    ASSERT(same_counts(g_tally, e.st, NULL));
    /* Rows changed behind its back (no engine, no touch): a recount finds and corrects it. */
    ASSERT_EQ(keng_store_exec(e.st, "UPDATE delivery_state SET status = 'delivered', attempts = 1"
                                    " WHERE id IN (SELECT id FROM deliveries"
                                    " WHERE alert_id = 'A1' AND id % 7 = 0)"),
              0);
    ASSERT(!same_counts(g_tally, e.st, "A1"));
    keng_tally_verify(g_tally, "A1");
    ASSERT(run_until(&loop, verified, g_tally, 5000));
    ASSERT(same_counts(g_tally, e.st, "A1"));
    ASSERT(same_counts(g_tally, e.st, NULL));
    keng_tally_stats ts;
    keng_tally_get_stats(g_tally, &ts);
    ASSERT_EQ(ts.corrected, 1);
    ASSERT_EQ(ts.alerts, 2);
    ASSERT_GE(ts.rows_read, 5001 + 4000);
    close_tally(&loop);
    fo_env_done(&e);
}

/* ---- the deliveries page in steps ---- */

TEST(outbox_list_in_steps_equals_one_query)
{
    fo_env e;
    fo_env_init(&e);
    int64_t m = fo_message(&e, "A1", "alert", "webhook", "r", "x", NULL, NULL, NULL);
    ASSERT_EQ(keng_store_begin(e.st), 0);
    for (int i = 0; i < 700; i++) {
        char rcp[16];
        snprintf(rcp, sizeof rcp, "hh-%d", i);
        fo_delivery(&e, i % 9 ? "A1" : "A2", rcp, "webhook", "{}", m, "r");
    }
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT_EQ(keng_store_exec(e.st,
                              "UPDATE delivery_state SET status = CASE id % 6 WHEN 0 THEN 'dead'"
                              " WHEN 1 THEN 'delivered' WHEN 2 THEN 'inflight' ELSE 'pending' END,"
                              " attempts = CASE WHEN id % 4 = 3 THEN 2 ELSE 0 END,"
                              " last_code = CASE WHEN id % 6 = 0 THEN 400 END"),
              0);
    const char *statuses[] = {NULL, "pending", "failed", "inflight", "delivered", "dead", "bogus"};
    const int pages[][2] = {{50, 0}, {7, 3}, {1000, 0}, {20, 95}, {5, 10000}, {0, 0}};
    for (size_t si = 0; si < sizeof statuses / sizeof statuses[0]; si++) {
        for (size_t pi = 0; pi < sizeof pages / sizeof pages[0]; pi++) {
            cJSON *items;
            int total;
            ASSERT_EQ(keng_outbox_list(e.st, "A1", statuses[si], pages[pi][0], pages[pi][1], &items,
                                       &total),
                      0);
            keng_outbox_walk w = {.alert_id = "A1",
                                  .status = statuses[si],
                                  .limit = pages[pi][0],
                                  .skip = pages[pi][1],
                                  .items = cJSON_CreateArray()};
            int rc, steps = 0;
            while ((rc = keng_outbox_list_step(e.st, &w, 7)) == 0)
                steps++;
            ASSERT_EQ(rc, 1);
            char *a = cJSON_PrintUnformatted(items), *b = cJSON_PrintUnformatted(w.items);
            if (strcmp(a, b))
                TEST_FAIL("status %s limit %d offset %d:\n  list  %.300s\n  steps %.300s",
                          statuses[si] ? statuses[si] : "any", pages[pi][0], pages[pi][1], a, b);
            if (pages[pi][0] >= 50 && statuses[si]) ASSERT_GT(steps, 0); /* it did step */
            /* The total the page reports comes from the counts: the same number. */
            if (statuses[si] && strcmp(statuses[si], "bogus")) {
                cJSON *counts;
                ASSERT_EQ(keng_outbox_counts(e.st, "A1", &counts), 0);
                ASSERT_EQ(num(counts, statuses[si]), total);
                cJSON_Delete(counts);
            }
            cJSON_free(a);
            cJSON_free(b);
            cJSON_Delete(items);
            cJSON_Delete(w.items);
        }
    }
    /* A step never looks at more rows than its budget (8 × for the index-only walk). */
    keng_outbox_walk w = {
        .alert_id = "A1", .status = "failed", .limit = 1000, .items = cJSON_CreateArray()};
    ASSERT_EQ(keng_outbox_list_step(e.st, &w, 10), 0);
    ASSERT_LE(w.got, 10);
    char where[80];
    snprintf(where, sizeof where, "alert_id = 'A1' AND id <= %lld", (long long)w.after);
    ASSERT_EQ(fo_count(&e, where), 10);
    cJSON_Delete(w.items);
    fo_env_done(&e);
}

/* ---- reach ---- */

/* The statement reach was computed with before (one correlated lookup per recipient). */
static cJSON *reach_reference(keng_store *st, const char *alert_id)
{
    sqlite3_stmt *s =
        keng_store_stmt(st, "SELECT coalesce(published_at, 0) FROM alerts WHERE id = ?");
    int64_t published = 0;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) == SQLITE_ROW) published = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    s = keng_store_stmt(
        st, "SELECT r.via_group, count(*),"
            " CASE WHEN l.state = 'waiting' THEN (SELECT count(*) FROM memberships j"
            "  JOIN groups g ON g.id = j.group_id WHERE j.group_id = r.via_group"
            "  AND j.member_id <> coalesce(g.leader, '') AND NOT EXISTS (SELECT 1 FROM recipients x"
            "  WHERE x.alert_id = r.alert_id AND x.member_id = j.member_id)) ELSE 0 END,"
            " sum(r.seen_at IS NOT NULL),"
            " sum(r.replied_at IS NOT NULL), sum(EXISTS (SELECT 1 FROM deliveries d"
            "  JOIN delivery_state s ON s.id = d.id WHERE d.alert_id = r.alert_id"
            "  AND d.recipient = r.member_id AND s.status = 'delivered')),"
            " l.state, l.relayed_at, l.relayed_by"
            " FROM recipients r LEFT JOIN relays l ON l.alert_id = r.alert_id"
            "  AND l.group_id = r.via_group"
            " WHERE r.alert_id = ?1 GROUP BY r.via_group ORDER BY r.via_group");
    cJSON *out = cJSON_CreateObject();
    cJSON *groups = cJSON_AddArrayToObject(out, "groups");
    static const char *const names[] = {"recipients", "held", "seen", "replied", "delivered"};
    int tot[5] = {0};
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(s) == SQLITE_ROW) {
        cJSON *g = cJSON_CreateObject();
        cJSON_AddStringToObject(g, "group", keng_store_text(s, 0));
        for (int i = 0; i < 5; i++) {
            int v = sqlite3_column_int(s, i + 1);
            tot[i] += v;
            cJSON_AddNumberToObject(g, names[i], v);
        }
        if (sqlite3_column_type(s, 6) != SQLITE_NULL) {
            cJSON_AddStringToObject(g, "relay", keng_store_text(s, 6));
            if (sqlite3_column_type(s, 7) != SQLITE_NULL) {
                int64_t at = sqlite3_column_int64(s, 7);
                char buf[KENG_TIME_RFC3339_MAX];
                if (keng_time_format(at, KENG_TZ_VN_MIN, buf, sizeof buf) == 0)
                    cJSON_AddStringToObject(g, "relayed_at", buf);
                if (published)
                    cJSON_AddNumberToObject(g, "time_to_relay_s", (double)(at - published));
                cJSON_AddStringToObject(g, "relayed_by", keng_store_text(s, 8));
            }
        }
        cJSON_AddItemToArray(groups, g);
    }
    sqlite3_reset(s);
    cJSON *t = cJSON_CreateObject();
    for (int i = 0; i < 5; i++)
        cJSON_AddNumberToObject(t, names[i], tot[i]);
    cJSON_AddItemToObject(out, "total", t);
    return out;
}

TEST(reach_in_memory_equals_the_sql_it_replaced)
{
    fo_env e;
    fo_env_init(&e);
    keng_store *st = e.st;
    ASSERT_EQ(keng_store_exec(st, "INSERT INTO alerts (id, kind, status, revision, doc, created_at,"
                                  " published_at, updated_at) VALUES ('A1', 'other', 'published',"
                                  " 2, '{}', 1000, 1795000000, 1000),"
                                  " ('A2', 'other', 'draft', 1, '{}', 1000, NULL, 1000)"),
              0);
    int64_t m = fo_message(&e, "A1", "alert", "webhook", "r", "x", NULL, NULL, NULL);
    ASSERT_EQ(keng_store_begin(st), 0);
    /* Groups g-00 … g-11; g-03 relays through its leader and waits, g-04 relayed, g-05 closed;
     * members m-0 … m-599 in group g-(i % 12), recipients all but every seventh (held ones). */
    for (int g = 0; g < 12; g++) {
        char sql[400];
        snprintf(sql, sizeof sql,
                 "INSERT INTO groups (id, name, kind, leader, relay, created_at, updated_at)"
                 " VALUES ('g-%02d', 'G', 'inter_household', 'm-%d', '%s', 0, 0)",
                 g, g, g >= 3 && g <= 5 ? "leader" : "auto");
        ASSERT_EQ(keng_store_exec(st, sql), 0);
    }
    for (int i = 0; i < 600; i++) {
        char sql[400], rcp[16];
        snprintf(rcp, sizeof rcp, "m-%d", i);
        snprintf(sql, sizeof sql,
                 "INSERT INTO memberships (group_id, member_id) VALUES ('g-%02d', '%s')", i % 12,
                 rcp);
        ASSERT_EQ(keng_store_exec(st, sql), 0);
        if (i % 7 == 6) continue;
        snprintf(sql, sizeof sql,
                 "INSERT INTO recipients (alert_id, member_id, via_group, seen_at, replied_at)"
                 " VALUES ('A1', '%s', 'g-%02d', %s, %s)",
                 rcp, i % 12, i % 3 ? "NULL" : "1795000100", i % 10 ? "NULL" : "1795000200");
        ASSERT_EQ(keng_store_exec(st, sql), 0);
        /* Deliveries: none, one, or two (one of them delivered or not). */
        if (i % 5 == 0) continue;
        int64_t d = fo_delivery(&e, "A1", rcp, "webhook", "{}", m, "r");
        snprintf(sql, sizeof sql, "UPDATE delivery_state SET status = '%s' WHERE id = %lld",
                 i % 4 ? "delivered" : "dead", (long long)d);
        ASSERT_EQ(keng_store_exec(st, sql), 0);
        if (i % 11 == 0) {
            d = fo_delivery(&e, "A1", rcp, "file", "{}", m, "r");
            snprintf(sql, sizeof sql, "UPDATE delivery_state SET status = 'delivered' WHERE id = %lld",
                     (long long)d);
            ASSERT_EQ(keng_store_exec(st, sql), 0);
        }
    }
    fo_delivery(&e, "A1", "group:g-01", "webhook", "{}", m, "r"); /* a group's own channel */
    ASSERT_EQ(keng_store_exec(
                  st,
                  "INSERT INTO relays (alert_id, group_id, leader_id, state, due_at, relayed_at,"
                  " relayed_by) VALUES ('A1', 'g-03', 'm-3', 'waiting', 1795000600, NULL, NULL),"
                  " ('A1', 'g-04', 'm-4', 'relayed', NULL, 1795000450, 'm-4'),"
                  " ('A1', 'g-05', 'm-5', 'closed', NULL, NULL, NULL),"
                  " ('A1', 'g-99', 'm-9', 'waiting', NULL, NULL, NULL)"),
              0);
    ASSERT_EQ(keng_store_commit(st), 0);
    const char *alerts[] = {"A1", "A2", "nope"};
    for (int k = 0; k < 3; k++) {
        keng_reach_sql q;
        ASSERT_EQ(keng_reach_sql_store(st, &q), 0);
        char *got = print(keng_reach_build(&q, alerts[k]));
        char *want = print(reach_reference(st, alerts[k]));
        ASSERT_STR_EQ(got, want);
        if (k == 0) {
            ASSERT_STR_CONTAINS(got, "\"relay\":\"waiting\"");
            ASSERT_STR_CONTAINS(got, "\"time_to_relay_s\":450");
            ASSERT_STR_CONTAINS(got, "\"relay\":\"closed\"");
        }
        cJSON_free(got);
        cJSON_free(want);
    }
    /* The same on a worker's own connection. */
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open_v2(e.db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    keng_reach_sql q;
    ASSERT_EQ(keng_reach_sql_prepare(db, &q), 0);
    char *got = print(keng_reach_build(&q, "A1"));
    char *want = print(reach_reference(st, "A1"));
    ASSERT_STR_EQ(got, want);
    cJSON_free(got);
    cJSON_free(want);
    keng_reach_sql_free(&q);
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
    fo_env_done(&e);
}
