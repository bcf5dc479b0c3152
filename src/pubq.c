#include "keng/pubq.h"

#include "keng/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct waiter {
    struct waiter *next;
    int64_t *ids;
    int left, rc;
    keng_publish_stats sum;
    keng_pubq_done_fn done;
    void *ud;
} waiter;

/* A job whose transaction failed: it waits until `until` (uv_now, ms) and meanwhile holds back
 * the later jobs of its alert only, so that one job that cannot be written (a disk error, a
 * template that fails) does not stop the publications of other alerts. */
typedef struct held {
    struct held *next;
    int64_t id;
    char *alert;
    int fails;
    uint64_t until;
} held;

struct keng_pubq {
    uv_loop_t *loop;
    keng_store *st;
    keng_pubq_config cfg;
    uv_idle_t idle;
    uv_timer_t retry;
    int handles, closing, running;
    keng_publish_job *cur; /* the job being run, as far as committed */
    held *held;
    waiter *waits;
    uint64_t txns, jobs_done, ns_total, ns_max;
};

/* Tells the waits on job id that it ended (rc 0 with its counts, or an error). */
static void notify(keng_pubq *q, int64_t id, int rc, const keng_publish_stats *st)
{
    waiter *ready = NULL, **pp = &q->waits;
    while (*pp) {
        waiter *w = *pp;
        int hit = 0;
        for (int i = 0; i < w->left && !hit; i++) {
            if (w->ids[i] != id) continue;
            w->ids[i] = w->ids[--w->left];
            hit = 1;
        }
        if (hit && rc && !w->rc) w->rc = rc;
        if (hit && st) {
            w->sum.groups += st->groups;
            w->sum.relay_groups += st->relay_groups;
            w->sum.recipients += st->recipients;
            w->sum.held += st->held;
            w->sum.unreachable += st->unreachable;
            w->sum.deliveries += st->deliveries;
        }
        if (hit && (w->left == 0 || rc)) {
            *pp = w->next;
            w->next = ready;
            ready = w;
        } else {
            pp = &w->next;
        }
    }
    /* Callbacks last: they may wait or unwait. */
    while (ready) {
        waiter *w = ready;
        ready = w->next;
        w->done(w->ud, w->rc, &w->sum);
        free(w->ids);
        free(w);
    }
}

static void on_idle(uv_idle_t *h);

static void schedule(keng_pubq *q)
{
    if (q->closing || q->running) return;
    q->running = 1;
    uv_idle_start(&q->idle, on_idle);
}

static void on_retry(uv_timer_t *t)
{
    schedule(t->data);
}

static held *held_find(keng_pubq *q, int64_t id)
{
    for (held *h = q->held; h; h = h->next)
        if (h->id == id) return h;
    return NULL;
}

static void held_drop(keng_pubq *q, int64_t id)
{
    for (held **pp = &q->held; *pp; pp = &(*pp)->next) {
        if ((*pp)->id != id) continue;
        held *h = *pp;
        *pp = h->next;
        free(h->alert);
        free(h);
        return;
    }
}

/* Nothing can run before the first held job's pause ends: sleep until then. */
static void sleep_until_due(keng_pubq *q, uint64_t delay_ms)
{
    q->running = 0;
    uv_idle_stop(&q->idle);
    uv_timer_start(&q->retry, on_retry, delay_ms ? delay_ms : 1, 0);
}

/* The current job's transaction failed: it is read again from the store after a pause that
 * grows; the other alerts' jobs go on meanwhile. */
static void failed(keng_pubq *q, int rc)
{
    keng_publish_job *j = q->cur;
    int64_t id = keng_publish_job_id(j);
    held *h = held_find(q, id);
    if (!h && (h = calloc(1, sizeof *h)) != NULL) {
        h->id = id;
        h->alert = strdup(keng_publish_job_alert(j));
        h->next = q->held;
        q->held = h;
    }
    int fails = h ? ++h->fails : 1;
    uint64_t pause = fails < 6 ? 250u << fails : 60000;
    if (h) h->until = uv_now(q->loop) + pause;
    keng_error("publish job %lld (alert %s): %s (attempt %d); trying again in %.1f s",
               (long long)id, keng_publish_job_alert(j), strerror(-rc), fails,
               (double)pause / 1000);
    keng_publish_job_free(j);
    q->cur = NULL;
    /* Whoever waits for it hears of the trouble; the job itself is kept and goes on. */
    if (fails == 3) notify(q, id, rc, NULL);
    if (!h) sleep_until_due(q, pause); /* no memory to remember it: everything waits */
}

/* The first stored job that may run now: not in its pause, and no earlier job of its alert
 * held. 0, -ENOENT (none; *wait_ms: when a held one is due, or 0), or an error. */
static int pick(keng_pubq *q, uint64_t *wait_ms)
{
    uint64_t now = uv_now(q->loop);
    *wait_ms = 0;
    for (int64_t after = 0;;) {
        keng_publish_job *j = NULL;
        int rc = keng_publish_job_next(q->st, after, &j);
        if (rc == -EILSEQ) { /* a row that cannot be read cannot be run: said and dropped */
            keng_error("publish: a stored job cannot be read; dropped");
            sqlite3_stmt *s = keng_store_stmt(
                q->st, "DELETE FROM publish_jobs WHERE id = (SELECT min(id) FROM publish_jobs"
                       " WHERE id > ?1)");
            if (!s) return -EIO;
            sqlite3_bind_int64(s, 1, after);
            sqlite3_step(s);
            sqlite3_reset(s);
            keng_store_exec(q->st, "DELETE FROM publish_job_state WHERE job NOT IN"
                                   " (SELECT id FROM publish_jobs)");
            continue;
        }
        if (rc) return rc;
        int64_t id = keng_publish_job_id(j);
        int wait = 0;
        for (held *h = q->held; h && !wait; h = h->next) {
            if (h->id == id && h->until > now) {
                wait = 1;
                if (!*wait_ms || h->until - now < *wait_ms) *wait_ms = h->until - now;
            } else if (h->id < id && h->alert && !strcmp(h->alert, keng_publish_job_alert(j))) {
                wait = 1; /* an alert's jobs stay in order */
            }
        }
        if (!wait) {
            q->cur = j;
            return 0;
        }
        keng_publish_job_free(j);
        after = id;
    }
}

static void on_idle(uv_idle_t *h)
{
    keng_pubq *q = h->data;
    int rc;
    if (!q->cur) {
        uint64_t wait_ms;
        rc = pick(q, &wait_ms);
        if (rc == -ENOENT) {
            if (wait_ms) sleep_until_due(q, wait_ms);
            else {
                q->running = 0;
                uv_idle_stop(&q->idle);
            }
            return;
        }
        if (rc) { /* the store cannot be read now */
            keng_error("publish: reading the stored jobs: %s; trying again in 1 s", strerror(-rc));
            sleep_until_due(q, 1000);
            return;
        }
    }
    keng_publish_ctx c;
    q->cfg.ctx(q->cfg.ud, &c);
    keng_publish_job *j = q->cur;
    int done = 0;
    uint64_t t0 = uv_hrtime(), budget = (uint64_t)q->cfg.budget_ms * 1000000u;
    rc = keng_store_begin(q->st);
    while (!rc && !done) {
        rc = keng_publish_job_step(&c, j, q->cfg.chunk, &done);
        if (uv_hrtime() - t0 >= budget) break;
    }
    if (!rc) rc = keng_store_commit(q->st);
    else keng_store_rollback(q->st);
    uint64_t dt = uv_hrtime() - t0;
    q->txns++;
    q->ns_total += dt;
    if (dt > q->ns_max) q->ns_max = dt;
    if (rc) {
        failed(q, rc);
        return;
    }
    int64_t id = keng_publish_job_id(j);
    held_drop(q, id);
    keng_publish_stats st;
    keng_publish_job_stats(j, &st);
    if (q->cfg.on_step) q->cfg.on_step(q->cfg.ud, keng_publish_job_alert(j), done, &st);
    if (done) {
        q->jobs_done++;
        q->cur = NULL;
        keng_publish_job_free(j);
        notify(q, id, 0, &st);
    }
}

int keng_pubq_new(uv_loop_t *loop, keng_store *st, const keng_pubq_config *cfg, keng_pubq **out)
{
    *out = NULL;
    keng_pubq *q = calloc(1, sizeof *q);
    if (!q) return -ENOMEM;
    q->loop = loop;
    q->st = st;
    q->cfg = *cfg;
    if (q->cfg.budget_ms <= 0) q->cfg.budget_ms = 2;
    if (q->cfg.chunk <= 0) q->cfg.chunk = 128;
    uv_idle_init(loop, &q->idle);
    uv_timer_init(loop, &q->retry);
    q->idle.data = q->retry.data = q;
    q->handles = 2;
    *out = q;
    schedule(q);
    return 0;
}

void keng_pubq_kick(keng_pubq *q)
{
    if (q) schedule(q); /* a held job's pause does not hold back the others */
}

int keng_pubq_wait(keng_pubq *q, const int64_t *ids, int n, keng_pubq_done_fn done, void *ud)
{
    if (n <= 0) {
        keng_publish_stats zero;
        memset(&zero, 0, sizeof zero);
        done(ud, 0, &zero);
        return 0;
    }
    waiter *w = calloc(1, sizeof *w);
    if (!w || !(w->ids = malloc((size_t)n * sizeof *ids))) {
        free(w);
        return -ENOMEM;
    }
    memcpy(w->ids, ids, (size_t)n * sizeof *ids);
    w->left = n;
    w->done = done;
    w->ud = ud;
    w->next = q->waits;
    q->waits = w;
    return 0;
}

void keng_pubq_unwait(keng_pubq *q, void *ud)
{
    for (waiter **pp = q ? &q->waits : NULL; pp && *pp;) {
        waiter *w = *pp;
        if (w->ud != ud) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        free(w->ids);
        free(w);
    }
}

int keng_pubq_pending(keng_pubq *q)
{
    sqlite3_stmt *s = keng_store_stmt(q->st, "SELECT count(*) FROM publish_job_state");
    if (!s) return -1;
    int n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_reset(s);
    return n;
}

int keng_pubq_metrics(keng_pubq *q, keng_buf *out)
{
    if (!q) return 0;
    return keng_buf_printf(
        out,
        "# HELP keng_publish_jobs_pending Publications, relays and updates whose households are"
        " still being written to the outbox.\n# TYPE keng_publish_jobs_pending gauge\n"
        "keng_publish_jobs_pending %d\n"
        "# TYPE keng_publish_jobs_done_total counter\nkeng_publish_jobs_done_total %llu\n"
        "# HELP keng_publish_transactions_total Transactions of publish jobs on the loop.\n"
        "# TYPE keng_publish_transactions_total counter\nkeng_publish_transactions_total %llu\n"
        "# TYPE keng_publish_transaction_seconds_total counter\n"
        "keng_publish_transaction_seconds_total %.6f\n"
        "# TYPE keng_publish_transaction_max_seconds gauge\n"
        "keng_publish_transaction_max_seconds %.6f\n",
        keng_pubq_pending(q), (unsigned long long)q->jobs_done, (unsigned long long)q->txns,
        (double)q->ns_total / 1e9, (double)q->ns_max / 1e9);
}

static void on_closed(uv_handle_t *h)
{
    keng_pubq *q = h->data;
    if (--q->handles == 0) free(q);
}

void keng_pubq_close(keng_pubq *q)
{
    if (!q || q->closing) return;
    q->closing = 1;
    while (q->waits) {
        waiter *w = q->waits;
        q->waits = w->next;
        w->done(w->ud, -ECANCELED, &w->sum);
        free(w->ids);
        free(w);
    }
    keng_publish_job_free(q->cur);
    q->cur = NULL;
    while (q->held) {
        held *h = q->held;
        q->held = h->next;
        free(h->alert);
        free(h);
    }
    uv_close((uv_handle_t *)&q->idle, on_closed);
    uv_close((uv_handle_t *)&q->retry, on_closed);
}
