/* Publish jobs in small chunks (publish.h) and the queue that runs them on a loop (pubq.h):
 * the same recipients, counts and outbox rows as one big step, however the work is cut, after
 * a transaction is lost (a crash) and in id order behind one another. */
#pragma GCC diagnostic ignored "-Wunused-function" /* the shared fixture has more than this needs */
#include "test_fanout_util.h"

#include "keng/outbox.h"
#include "keng/publish.h"
#include "keng/pubq.h"

#include <errno.h>

static const unsigned char SECRET[32] = {9};

typedef struct pub_env {
    fo_env fo;
    keng_config cfg;
    keng_tplset *ts;
    keng_publish_ctx ctx;
} pub_env;

static void member(pub_env *p, const char *id, int contact)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO members(id, name, lang, contacts, created_at, updated_at) VALUES"
             " ('%s', 'Hộ %s', 'vi', '%s', 0, 0)",
             id, id,
             contact ? "[{\"type\":\"webhook\",\"url\":\"http://127.0.0.1:9/h\"}]" : "[]");
    ASSERT_EQ(keng_store_exec(p->fo.st, sql), 0);
}

static void group(pub_env *p, const char *id, const char *leader, const char *const *members)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO groups(id, name, kind, leader, relay, created_at, updated_at) VALUES"
             " ('%s', 'Tổ %s', 'to_lien_gia', %s%s%s, '%s', 0, 0)",
             id, id, leader ? "'" : "", leader ? leader : "NULL", leader ? "'" : "",
             leader ? "leader" : "auto");
    ASSERT_EQ(keng_store_exec(p->fo.st, sql), 0);
    for (; *members; members++) {
        snprintf(sql, sizeof sql, "INSERT INTO memberships(group_id, member_id) VALUES ('%s', '%s')",
                 id, *members);
        ASSERT_EQ(keng_store_exec(p->fo.st, sql), 0);
    }
}

/* Five groups: g-a and g-b overlap (a05..a07), g-c and g-d lead-relay and overlap (c03, c04),
 * a01 is in g-a and g-c, e01 has no contact. */
static void ward(pub_env *p)
{
    fo_env_init(&p->fo);
    ASSERT_EQ(keng_publish_init(p->fo.st, SECRET), 0);
    keng_config_init(&p->cfg);
    p->cfg.quiet_start_min = p->cfg.quiet_end_min = -1;
    char err[512] = "";
    if (keng_tplset_load("templates", &p->ts, err, sizeof err)) TEST_FAIL("templates: %s", err);
    keng_publish_ctx c = {p->fo.st, p->ts, &p->cfg, SECRET, 1795000000};
    p->ctx = c;
    static const char *const ids[] = {"a01", "a02", "a03", "a04", "a05", "a06", "a07", "a08",
                                      "a09", "b01", "b02", "b03", "c01", "c02", "c03", "c04",
                                      "d01", "L1",  "L2",  NULL};
    for (const char *const *i = ids; *i; i++) member(p, *i, 1);
    member(p, "e01", 0);
    static const char *const ga[] = {"a01", "a02", "a03", "a04", "a05", "a06", "a07", NULL};
    static const char *const gb[] = {"a05", "a06", "a07", "a08", "a09", "b01", "b02", "b03", NULL};
    static const char *const gc[] = {"L1", "c01", "c02", "c03", "c04", "a01", NULL};
    static const char *const gd[] = {"L2", "c03", "c04", "d01", NULL};
    static const char *const ge[] = {"e01", NULL};
    group(p, "g-a", NULL, ga);
    group(p, "g-b", NULL, gb);
    group(p, "g-c", "L1", gc);
    group(p, "g-d", "L2", gd);
    group(p, "g-e", NULL, ge);
}

static void ward_done(pub_env *p)
{
    keng_tplset_free(p->ts);
    keng_config_free(&p->cfg);
    fo_env_done(&p->fo);
}

static cJSON *view(void)
{
    return cJSON_Parse("{\"id\":\"A7\",\"kind\":\"lost_elder\",\"direction\":\"missing\","
                       "\"title\":\"Tìm cụ ông Lê Văn Bảy\",\"urgency\":\"immediate\","
                       "\"severity\":\"severe\",\"revision\":1,\"person_name\":\"Lê Văn Bảy\","
                       "\"age\":81,\"sex\":\"male\",\"last_seen_place\":\"chợ Cồn\","
                       "\"targets\":{\"all\":true}}");
}

static int q_int(pub_env *p, const char *sql)
{
    sqlite3_stmt *s = keng_store_stmt(p->fo.st, sql);
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    int v = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return v;
}

/* Runs job id to the end, max_rows at a time, one transaction per step; every third step is
 * lost (rolled back, as a crash before its commit would) and the job read again. */
static keng_publish_stats run_chunked(pub_env *p, int64_t id, int max_rows, int *steps)
{
    keng_publish_job *j = NULL;
    ASSERT_EQ(keng_publish_job_next(p->fo.st, id - 1, &j), 0);
    ASSERT_EQ(keng_publish_job_id(j), id);
    keng_publish_stats st;
    int done = 0, n = 0;
    while (!done) {
        ASSERT_EQ(keng_store_begin(p->fo.st), 0);
        ASSERT_EQ(keng_publish_job_step(&p->ctx, j, max_rows, &done), 0);
        if (++n % 3 == 0 && !done) {
            keng_store_rollback(p->fo.st);
            keng_publish_job_free(j);
            ASSERT_EQ(keng_publish_job_next(p->fo.st, id - 1, &j), 0);
            continue;
        }
        if (done) keng_publish_job_stats(j, &st);
        ASSERT_EQ(keng_store_commit(p->fo.st), 0);
    }
    keng_publish_job_free(j);
    ASSERT_EQ(keng_publish_job_next(p->fo.st, id - 1, &j), -ENOENT);
    *steps = n;
    return st;
}

TEST(publish_in_chunks_same_as_at_once)
{
    int counts[2][6];
    for (int pass = 0; pass < 2; pass++) {
        pub_env p;
        ward(&p);
        cJSON *v = view();
        keng_publish_stats st;
        if (pass == 0) {
            ASSERT_EQ(keng_publish_alert(&p.ctx, "A7", 1, v, &st), 0);
        } else {
            int64_t id = 0;
            ASSERT_EQ(keng_publish_begin_alert(&p.ctx, "A7", 1, v, "officer", &id), 0);
            ASSERT_GT(id, 0);
            /* Begun: leaders have their rows already, households not yet. */
            ASSERT_EQ(q_int(&p, "SELECT count(*) FROM deliveries"), 2);
            int steps;
            st = run_chunked(&p, id, 2, &steps);
            ASSERT_GT(steps, 10);
        }
        cJSON_Delete(v);
        ASSERT_EQ(st.groups, 5);
        ASSERT_EQ(st.relay_groups, 2);
        /* 2 leaders, a01..a09, b01..b03, e01 */
        ASSERT_EQ(st.recipients, 15);
        /* c01..c04 (a01 is reached through g-a), d01 (c03, c04 counted once) */
        ASSERT_EQ(st.held, 5);
        ASSERT_EQ(st.unreachable, 1);
        ASSERT_EQ(st.deliveries, 14);
        ASSERT_EQ(q_int(&p, "SELECT count(*) FROM recipients WHERE alert_id = 'A7'"), 15);
        ASSERT_EQ(q_int(&p, "SELECT count(*) FROM deliveries WHERE alert_id = 'A7'"), 14);
        ASSERT_EQ(q_int(&p, "SELECT count(DISTINCT recipient) FROM deliveries"), 14);
        ASSERT_EQ(q_int(&p, "SELECT count(*) FROM recipients WHERE role = 'leader'"), 2);
        ASSERT_EQ(q_int(&p, "SELECT count(*) FROM recipients WHERE member_id = 'a01'"
                            " AND via_group = 'g-a'"),
                  1);
        ASSERT_EQ(q_int(&p, "SELECT count(*) FROM messages"), 2); /* vi webhook, r and l */
        ASSERT_EQ(q_int(&p, "SELECT count(*) FROM publish_jobs"), 0);
        ASSERT_EQ(q_int(&p, "SELECT count(*) FROM publish_job_state"), 0);
        ASSERT_EQ(q_int(&p, "SELECT count(*) FROM audit WHERE action = 'alert.publish'"), 1);
        ASSERT_EQ(q_int(&p, "SELECT json_extract(detail, '$.recipients') FROM audit"
                            " WHERE action = 'alert.publish'"),
                  15);
        counts[pass][0] = st.recipients;
        counts[pass][1] = st.held;
        counts[pass][2] = st.deliveries;
        counts[pass][3] = q_int(&p, "SELECT count(*) FROM deliveries WHERE link_kind = 'l'");
        counts[pass][4] = q_int(&p, "SELECT count(*) FROM relays WHERE state = 'waiting'");
        counts[pass][5] = q_int(&p, "SELECT count(*) FROM recipients WHERE rtoken = ''");
        /* Every delivery has its state, of its alert, pending, even across the lost chunks. */
        ASSERT_EQ(q_int(&p, "SELECT count(*) FROM deliveries d LEFT JOIN delivery_state s"
                            " ON s.id = d.id WHERE s.id IS NULL OR s.alert_id <> d.alert_id"
                            " OR s.status <> 'pending'"),
                  0);
        ASSERT_EQ(q_int(&p, "SELECT count(*) FROM delivery_state"), st.deliveries);
        ward_done(&p);
    }
    for (int i = 0; i < 6; i++) ASSERT_EQ(counts[0][i], counts[1][i]);
    ASSERT_EQ(counts[1][3], 2);
    ASSERT_EQ(counts[1][4], 2);
    ASSERT_EQ(counts[1][5], 0);
}

TEST(publish_relay_and_update_in_chunks)
{
    pub_env p;
    ward(&p);
    cJSON *v = view();
    keng_publish_stats st;
    ASSERT_EQ(keng_publish_alert(&p.ctx, "A7", 1, v, &st), 0);
    int64_t id = 0;
    ASSERT_EQ(keng_publish_begin_relay(&p.ctx, "A7", "g-c", 1, v, "Nhờ bà con để ý", "leader:L1",
                                       &id),
              0);
    int steps;
    st = run_chunked(&p, id, 1, &steps);
    /* c01..c04; a01 has it already, the leader is not a household of his own relay */
    ASSERT_EQ(st.recipients, 4);
    ASSERT_EQ(st.deliveries, 4);
    ASSERT_EQ(q_int(&p, "SELECT count(*) FROM deliveries d JOIN messages m ON m.id = d.message_id"
                        " WHERE m.note = 'Nhờ bà con để ý'"),
              4);
    ASSERT_EQ(q_int(&p, "SELECT count(*) FROM audit WHERE action = 'relay.leader'"
                        " AND json_extract(detail, '$.households') = 4"),
              1);
    /* Relayed once: again is refused, and the caller's transaction is intact. */
    ASSERT_EQ(keng_store_begin(p.fo.st), 0);
    ASSERT_EQ(keng_publish_begin_relay(&p.ctx, "A7", "g-c", 1, v, NULL, "keng", &id), -EALREADY);
    ASSERT_EQ(keng_store_exec(p.fo.st, "UPDATE members SET name = 'x' WHERE id = 'L1'"), 0);
    ASSERT_EQ(keng_store_commit(p.fo.st), 0);
    ASSERT_EQ(q_int(&p, "SELECT count(*) FROM members WHERE name = 'x'"), 1);

    /* An update reaches every recipient with a contact: 15 + 4 - e01. */
    ASSERT_EQ(keng_publish_begin_event(&p.ctx, "A7", 2, "update", v, "officer", &id), 0);
    st = run_chunked(&p, id, 3, &steps);
    ASSERT_EQ(st.deliveries, 18);
    ASSERT_EQ(q_int(&p, "SELECT count(*) FROM deliveries WHERE event = 'update'"), 18);
    ASSERT_EQ(q_int(&p, "SELECT count(*) FROM audit WHERE action = 'alert.update'"), 1);
    cJSON_Delete(v);
    ward_done(&p);
}

/* ---- the queue ---- */

typedef struct q_env {
    pub_env *p;
    int steps, finished, waits;
    keng_publish_stats sum;
    int rc;
} q_env;

static void q_ctx(void *ud, keng_publish_ctx *out)
{
    *out = ((q_env *)ud)->p->ctx;
}

static void q_step(void *ud, const char *alert_id, int done, const keng_publish_stats *st)
{
    q_env *q = ud;
    (void)st;
    ASSERT_STR_EQ(alert_id, "A7");
    q->steps++;
    q->finished += done;
}

static void q_done(void *ud, int rc, const keng_publish_stats *sum)
{
    q_env *q = ud;
    q->waits++;
    q->rc = rc;
    q->sum = *sum;
}

TEST(pubq_runs_jobs_in_order_and_answers_waits)
{
    pub_env p;
    ward(&p);
    cJSON *v = view();
    int64_t ids[2];
    ASSERT_EQ(keng_publish_begin_alert(&p.ctx, "A7", 1, v, "officer", &ids[0]), 0);
    /* The update is stored before the alert's households are: it must still reach them. */
    ASSERT_EQ(keng_publish_begin_event(&p.ctx, "A7", 2, "update", v, "officer", &ids[1]), 0);
    cJSON_Delete(v);
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    q_env q = {.p = &p};
    keng_pubq_config cfg = {.budget_ms = 1, .chunk = 2, .ctx = q_ctx, .on_step = q_step, .ud = &q};
    keng_pubq *pq = NULL;
    ASSERT_EQ(keng_pubq_new(&loop, p.fo.st, &cfg, &pq), 0);
    ASSERT_EQ(keng_pubq_pending(pq), 2);
    ASSERT_EQ(keng_pubq_wait(pq, ids, 2, q_done, &q), 0);
    int unwaited = 0;
    ASSERT_EQ(keng_pubq_wait(pq, ids, 1, q_done, &unwaited), 0);
    keng_pubq_unwait(pq, &unwaited);
    for (int i = 0; i < 10000 && q.waits == 0; i++) uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(q.waits, 1);
    ASSERT_EQ(q.rc, 0);
    ASSERT_EQ(q.finished, 2);
    ASSERT_GE(q.steps, 2); /* at least a transaction per job */
    ASSERT_EQ(q.sum.recipients, 15);
    ASSERT_EQ(q.sum.deliveries, 14 + 14);
    ASSERT_EQ(keng_pubq_pending(pq), 0);
    ASSERT_EQ(q_int(&p, "SELECT count(*) FROM deliveries WHERE event = 'update'"), 14);
    /* A wait still open when the queue closes hears -ECANCELED. */
    int64_t none = 999;
    ASSERT_EQ(keng_pubq_wait(pq, &none, 1, q_done, &q), 0);
    keng_pubq_close(pq);
    ASSERT_EQ(q.waits, 2);
    ASSERT_EQ(q.rc, -ECANCELED);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    ward_done(&p);
}

TEST(publish_job_cut_by_a_stop_follows_the_quiet_hours_at_start)
{
    pub_env p;
    ward(&p);
    p.cfg.quiet_start_min = 0; /* quiet all day but the last minute: the alert may wait */
    p.cfg.quiet_end_min = 1439;
    p.cfg.tz_offset_min = 0;
    cJSON *v = view();
    cJSON_ReplaceItemInObject(v, "urgency", cJSON_CreateString("expected"));
    int64_t id = 0;
    ASSERT_EQ(keng_publish_begin_alert(&p.ctx, "A7", 1, v, "officer", &id), 0);
    cJSON_Delete(v);
    ASSERT_GT(q_int(&p, "SELECT min(next_at) FROM delivery_state"), p.ctx.now);
    /* kengd stops here and starts again with --quiet-hours off: the held leaders' rows and the
     * households the job has still to write go now. */
    ASSERT_EQ(keng_outbox_rehold(p.fo.st, p.ctx.now, 0), 2);
    int steps;
    keng_publish_stats st = run_chunked(&p, id, 4, &steps);
    ASSERT_EQ(st.deliveries, 14);
    ASSERT_EQ(q_int(&p, "SELECT count(*) FROM delivery_state WHERE next_at = 0"), 14);
    ward_done(&p);
}

/* A job that fails at every try (here: no template for its kind) is held and retried; another
 * alert's publication behind it goes through meanwhile, and the waits hear of the failure. */
typedef struct one_wait {
    int calls, rc;
    keng_publish_stats sum;
} one_wait;

static void wait_one(void *ud, int rc, const keng_publish_stats *sum)
{
    one_wait *w = ud;
    w->calls++;
    w->rc = rc;
    w->sum = *sum;
}

static void any_step(void *ud, const char *alert_id, int done, const keng_publish_stats *st)
{
    (void)ud;
    (void)alert_id;
    (void)done;
    (void)st;
}

TEST(pubq_a_failing_job_does_not_hold_back_other_alerts)
{
    pub_env p;
    ward(&p);
    cJSON *bad = view();
    cJSON_ReplaceItemInObject(bad, "id", cJSON_CreateString("A6"));
    cJSON_ReplaceItemInObject(bad, "kind", cJSON_CreateString("no_such_kind"));
    cJSON_ReplaceItemInObject(bad, "targets", cJSON_Parse("{\"groups\":[\"g-a\"]}"));
    cJSON *good = view();
    int64_t ids[2];
    /* Begun: g-a has no leader, so nothing is rendered yet; its households will fail. */
    ASSERT_EQ(keng_publish_begin_alert(&p.ctx, "A6", 1, bad, "officer", &ids[0]), 0);
    ASSERT_EQ(keng_publish_begin_alert(&p.ctx, "A7", 1, good, "officer", &ids[1]), 0);
    /* An update of the bad alert, stored after: it must wait for the alert's own job. */
    int64_t upd;
    ASSERT_EQ(keng_publish_begin_event(&p.ctx, "A6", 2, "update", bad, "officer", &upd), 0);
    cJSON_Delete(bad);
    cJSON_Delete(good);
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    q_env q = {.p = &p};
    keng_pubq_config cfg = {.chunk = 2, .ctx = q_ctx, .on_step = any_step, .ud = &q};
    keng_pubq *pq = NULL;
    ASSERT_EQ(keng_pubq_new(&loop, p.fo.st, &cfg, &pq), 0);
    one_wait wa = {0}, wb = {0};
    ASSERT_EQ(keng_pubq_wait(pq, &ids[0], 1, wait_one, &wa), 0);
    ASSERT_EQ(keng_pubq_wait(pq, &ids[1], 1, wait_one, &wb), 0);
    /* The good one is done while the bad one waits out its pauses (0.5 s, 1 s, 2 s). */
    for (int i = 0; i < 100000 && (wb.calls == 0 || wa.calls == 0); i++)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(wb.calls, 1);
    ASSERT_EQ(wb.rc, 0);
    ASSERT_EQ(wb.sum.recipients, 15);
    ASSERT_EQ(wa.calls, 1); /* told at the third failed try */
    ASSERT_LT(wa.rc, 0);
    ASSERT_EQ(q_int(&p, "SELECT count(*) FROM deliveries WHERE alert_id = 'A7'"), 14);
    /* The bad job is kept (it goes on after a fix, or at the next start), nothing of it sent;
     * the update behind it waits in order. */
    ASSERT_EQ(keng_pubq_pending(pq), 2);
    ASSERT_EQ(q_int(&p, "SELECT count(*) FROM publish_jobs WHERE alert_id = 'A6'"), 2);
    ASSERT_EQ(q_int(&p, "SELECT count(*) FROM deliveries WHERE alert_id = 'A6'"), 0);
    keng_pubq_close(pq);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    ward_done(&p);
}

/* An e-mail's HTML has the message's subject as its <title> (a mail app shows it; the alert's
 * title is empty for the kinds that have none, such as a missing elder). */
TEST(publish_email_html_title_is_the_subject)
{
    pub_env p;
    ward(&p);
    ASSERT_EQ(keng_store_exec(p.fo.st, "UPDATE members SET contacts ="
                                       " '[{\"type\":\"email\",\"address\":\"ho-a01@example.vn\"}]'"
                                       " WHERE id = 'a01'"),
              0);
    cJSON *v = view();
    cJSON_DeleteItemFromObject(v, "title");
    keng_publish_stats st;
    ASSERT_EQ(keng_publish_alert(&p.ctx, "A7", 1, v, &st), 0);
    cJSON_Delete(v);
    sqlite3_stmt *s = keng_store_stmt(p.fo.st, "SELECT subject, html FROM messages WHERE channel"
                                               " = 'email' AND alert_id = 'A7'");
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    const char *subject = keng_store_text(s, 0), *html = keng_store_text(s, 1);
    ASSERT_STR_CONTAINS(subject, "Lê Văn Bảy");
    char title[512];
    snprintf(title, sizeof title, "<title>%s</title>", subject);
    ASSERT_STR_CONTAINS(html, title);
    sqlite3_reset(s);
    ward_done(&p);
}
