/* Live progress (Server-Sent Events), the deliveries page, reach statistics, replies, the audit
 * log API, and the periodic work: relay timeouts, expiry, event flushing.
 *
 * Nothing here groups an alert's outbox on the loop. Counts by status and channel come from the
 * tally (tally.h), kept from the fan-out engine's row changes. Reach (reach.h: per group,
 * recipients, held, seen, replied, delivered, relay) reads every recipient and delivered row of
 * the alert: for a small alert it is computed on the loop when asked for; for a big one (or one
 * that took longer than REACH_SYNC_US) by a worker thread of its own at a lower priority, one
 * computation at a time, and the last result is kept per alert. For viewers, a change people
 * made (seen, reply, relay, publish, redelivery) asks for a new one soon (the worker busy at most
 * half the time), delivery progress alone at most every REACH_MIN_GAP_MS and at most
 * 1/REACH_COST_SHARE of the time; a deliveries page and the last event of a fan-out (nothing
 * pending or in flight) wait for one that started after the last change they know of. A viewer
 * gets at most one event every SSE_MIN_GAP_MS (longer when an event costs more than
 * 1/SSE_COST_SHARE of that), and a page of deliveries is read in steps of PAGE_STEP_ROWS rows,
 * so no request holds the loop for long whatever the alert's size. */
#include "keng/app.h"
#include "keng/audit.h"
#include "keng/fanout.h"
#include "keng/log.h"
#include "keng/norm.h"
#include "keng/outbox.h"
#include "keng/reach.h"
#include "keng/tally.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CRON_MS 1000
#define SSE_MIN_GAP_MS 250
#define SSE_COST_SHARE 50
#define SSE_HEARTBEAT_MS 15000
#define SSE_MAX_SUBSCRIBERS 256
#define SSE_MAX_QUEUED (256 * 1024)
#define REACH_SYNC_ROWS 2000  /* reach of an alert with at most this many rows: on the loop … */
#define REACH_SYNC_US 5000    /* … unless that took longer than this the last time */
#define REACH_MIN_GAP_MS 1000 /* delivery progress alone, for viewers: at most this often … */
#define REACH_COST_SHARE 10   /* … and 1/10 of the time; what people did: at most 1/2 of it */
#define REACH_URGENT_GAP_MS 250
#define REACH_KEEP_MS 60000 /* a result nobody looked at for this long is dropped */
#define REACH_ENTRIES 64    /* results kept, about (more while viewers hold them) */
#define REACH_NICE 10       /* the worker yields the CPU to the loop (and to everything else) */
#define PAGE_STEP_ROWS 2048
#define PAGE_STEP_NS (2000 * 1000)
#define PAGE_WAIT_MS 10000 /* a page waits at most this long for counts and reach */

typedef struct keng_sse {
    struct keng_sse *next;
    keng_app *app;
    keng_http_req *req;
    char alert_id[KENG_ROUTE_PARAM_LEN];
    uint64_t last_sent, last_beat;
    int dirty;
    int counted;   /* counted in its reach entry's subs */
    uint64_t need; /* its last event waits for reach of this version (0: none) */
} keng_sse;

/* What is known of one alert's reach. ver, have and need are taken from one sequence (vseq), so
 * an entry made again after being dropped never looks older than a wait on the old one. */
typedef struct reach_entry {
    struct reach_entry *next;
    char alert_id[KENG_ROUTE_PARAM_LEN];
    char *json;    /* the last result of the pool (cJSON_free), NULL before the first */
    uint64_t ver;  /* raised by every change reach may depend on */
    uint64_t have; /* ver when the computation that made json started */
    uint64_t need; /* a page or a last event waits until have >= need */
    int urgent;    /* a change people made: no waiting for the gap */
    int subs;      /* live viewers */
    uint64_t done_at, cost_us, used_at;
} reach_entry;

typedef struct page page;

typedef struct keng_live {
    keng_app *app;
    keng_tally *tally;
    reach_entry *reach;
    int nreach;
    uint64_t vseq;
    page *pages;
    int retry_pages;  /* the tally caught up: try the waiting pages again */
    uv_timer_t timer; /* events and reach computations waiting for their time */
    uint64_t timer_due;
    uv_idle_t idle; /* pages read in steps */
    int idle_on;
    uint64_t sse_cost_ns; /* of the last event */
    /* The reach worker: a thread of its own at a lower priority (REACH_NICE), started at its
     * first computation. Its connection and statements are its own; the job fields are written
     * by the loop while it is idle (!busy) and by it while busy; done tells the loop. */
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    uv_async_t async;
    int started, ready, finished, quit; /* under mu */
    int busy;
    char *db_path;
    sqlite3 *rdb;
    keng_reach_sql rsql;
    char job_alert[KENG_ROUTE_PARAM_LEN];
    uint64_t job_ver, job_ns;
    char *job_json;
    int warned, stopping, handles;
    struct {
        uint64_t reach_runs, reach_ns, reach_max_ns; /* on the worker */
        uint64_t reach_loop_runs, reach_loop_ns;     /* small alerts, on the loop */
        uint64_t events, event_max_ns;
    } stats;
} keng_live;

struct page {
    page *next;
    keng_live *live;
    keng_call *c;
    keng_outbox_walk walk;
    int walked, linked;
    uint64_t need, deadline;
    int64_t upto; /* the last outbox row when asked: the counts must take it in */
    char alert_id[KENG_ROUTE_PARAM_LEN];
    char status[32];
    int limit, offset;
};

int keng_api_relay_groups(keng_app *app, const char *alert_id, const char *leader,
                          const char *only_group, const char *note, const char *by, int64_t **jobs);

/* ---- reach ------------------------------------------------------------------------------- */

cJSON *keng_api_alert_reach(keng_app *app, const char *alert_id)
{
    keng_reach_sql q;
    cJSON *r = keng_reach_sql_store(app->store, &q) == 0 ? keng_reach_build(&q, alert_id) : NULL;
    if (r) return r;
    /* Unreadable (logged by the store) or no memory: an empty reach keeps the answer's shape. */
    r = cJSON_CreateObject();
    cJSON_AddArrayToObject(r, "groups");
    cJSON *t = cJSON_AddObjectToObject(r, "total");
    static const char *const names[] = {"recipients", "held", "seen", "replied", "delivered"};
    for (int i = 0; i < 5; i++)
        cJSON_AddNumberToObject(t, names[i], 0);
    return r;
}

static reach_entry *reach_find(keng_live *l, const char *alert_id)
{
    for (reach_entry *e = l->reach; e; e = e->next)
        if (!strcmp(e->alert_id, alert_id)) return e;
    return NULL;
}

static void reach_drop(keng_live *l, reach_entry **pp)
{
    reach_entry *e = *pp;
    *pp = e->next;
    cJSON_free(e->json);
    free(e);
    l->nreach--;
}

/* The entry of alert_id, made when missing (then the least recently used one nobody watches
 * makes room). NULL without memory. */
static reach_entry *reach_get(keng_live *l, const char *alert_id)
{
    reach_entry *e = reach_find(l, alert_id);
    if (e) return e;
    if (l->nreach >= REACH_ENTRIES) {
        reach_entry **old = NULL;
        for (reach_entry **pp = &l->reach; *pp; pp = &(*pp)->next)
            if (!(*pp)->subs && (!old || (*pp)->used_at < (*old)->used_at)) old = pp;
        if (old) reach_drop(l, old);
    }
    if (!(e = calloc(1, sizeof *e))) return NULL;
    snprintf(e->alert_id, sizeof e->alert_id, "%s", alert_id);
    e->ver = ++l->vseq;
    e->used_at = uv_now(l->app->loop);
    e->next = l->reach;
    l->reach = e;
    l->nreach++;
    return e;
}

/* A change reach may depend on. */
static void reach_bump(keng_live *l, const char *alert_id, int urgent)
{
    reach_entry *e = reach_find(l, alert_id);
    if (!e) return;
    e->ver = ++l->vseq;
    if (urgent) e->urgent = 1;
}

/* Small enough to compute on the loop when asked for. */
static int reach_small(keng_live *l, const reach_entry *e)
{
    int64_t n[KENG_TALLY_STATES];
    if (keng_tally_get(l->tally, e->alert_id, n)) return 0;
    int64_t rows = 0;
    for (int i = 0; i < KENG_TALLY_STATES; i++)
        rows += n[i];
    return rows <= REACH_SYNC_ROWS && e->cost_us <= REACH_SYNC_US;
}

/* Reach for an answer: computed now into *obj (owned) for a small alert, else the kept result
 * into *raw (borrowed) when it is at least as new as need. -EAGAIN: it has to be waited for
 * (e->need is raised; the timer starts the computation). */
static int reach_for(keng_live *l, reach_entry *e, uint64_t need, char **raw, cJSON **obj)
{
    *raw = NULL;
    *obj = NULL;
    if (reach_small(l, e)) {
        uint64_t t0 = uv_hrtime();
        *obj = keng_api_alert_reach(l->app, e->alert_id);
        uint64_t dt = uv_hrtime() - t0;
        e->cost_us = dt / 1000;
        l->stats.reach_loop_runs++;
        l->stats.reach_loop_ns += dt;
        return *obj ? 0 : -ENOMEM;
    }
    if (e->json && e->have >= need) {
        *raw = e->json;
        return 0;
    }
    if (need > e->need) e->need = need;
    return -EAGAIN;
}

/* One computation, on the worker thread. */
static void reach_work(keng_live *l)
{
    uint64_t t0 = uv_hrtime();
    l->job_json = NULL;
    if (!l->rdb) {
        int rc =
            sqlite3_open_v2(l->db_path, &l->rdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_busy_timeout(l->rdb, 1000);
            rc = sqlite3_exec(l->rdb, "PRAGMA query_only = 1", NULL, NULL, NULL);
        }
        if (rc != SQLITE_OK || keng_reach_sql_prepare(l->rdb, &l->rsql)) {
            sqlite3_close(l->rdb);
            l->rdb = NULL;
        }
    }
    /* One read transaction: the groups and the publication time of one snapshot. */
    if (l->rdb && sqlite3_exec(l->rdb, "BEGIN", NULL, NULL, NULL) == SQLITE_OK) {
        cJSON *r = keng_reach_build(&l->rsql, l->job_alert);
        sqlite3_exec(l->rdb, "COMMIT", NULL, NULL, NULL);
        if (r) l->job_json = cJSON_PrintUnformatted(r);
        cJSON_Delete(r);
    }
    l->job_ns = uv_hrtime() - t0;
}

static void live_kick(keng_live *l);
static void live_release(keng_live *l);
static void sse_mark(keng_app *app, const char *alert_id);
static void pages_retry(keng_live *l, const char *alert_id);

static void reach_thread(void *arg)
{
    keng_live *l = arg;
    /* Reach is for people looking at a screen: it may take a little longer, the fan-out may not.
     * Raising one's own nice value needs no privilege (on Linux it is per thread). */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), REACH_NICE))
        keng_debug("reach: the worker keeps its priority (%s)", strerror(errno));
    uv_mutex_lock(&l->mu);
    for (;;) {
        while (!l->ready && !l->quit)
            uv_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        l->ready = 0;
        uv_mutex_unlock(&l->mu);
        reach_work(l);
        uv_mutex_lock(&l->mu);
        l->finished = 1;
        uv_async_send(&l->async);
    }
    uv_mutex_unlock(&l->mu);
    keng_reach_sql_free(&l->rsql);
    sqlite3_close(l->rdb);
    l->rdb = NULL;
}

static void reach_done(keng_live *l)
{
    l->busy = 0;
    char *json = l->job_json;
    l->job_json = NULL;
    if (!json) {
        /* The worker could not read (no connection of its own): the loop does it, as before. */
        if (!l->warned)
            keng_warn("reach: the worker could not read %s; computing reach on the loop",
                      l->db_path);
        l->warned = 1;
        cJSON *r = keng_api_alert_reach(l->app, l->job_alert);
        json = r ? cJSON_PrintUnformatted(r) : NULL;
        cJSON_Delete(r);
    }
    reach_entry *e = reach_find(l, l->job_alert);
    if (e && json) {
        cJSON_free(e->json);
        e->json = json;
        json = NULL;
        e->have = l->job_ver;
        e->done_at = uv_now(l->app->loop);
        e->cost_us = l->job_ns / 1000;
    }
    l->stats.reach_runs++;
    l->stats.reach_ns += l->job_ns;
    if (l->job_ns > l->stats.reach_max_ns) l->stats.reach_max_ns = l->job_ns;
    cJSON_free(json);
    sse_mark(l->app, l->job_alert);
    pages_retry(l, l->job_alert);
    live_kick(l);
}

static void on_reach_async(uv_async_t *h)
{
    keng_live *l = h->data;
    uv_mutex_lock(&l->mu);
    int finished = l->finished;
    l->finished = 0;
    uv_mutex_unlock(&l->mu);
    if (finished) reach_done(l);
}

/* Starts the computation that is due, if any. Returns the loop time when the next one will be
 * due, 0 for none. */
static uint64_t reach_next(keng_live *l, uint64_t now)
{
    if (l->busy || l->stopping) return 0;
    reach_entry *best = NULL;
    uint64_t next = 0;
    for (reach_entry *e = l->reach; e; e = e->next) {
        if (e->json && e->have >= e->ver) continue;
        if (reach_small(l, e)) { /* computed on the loop by whoever asks */
            e->urgent = 0;
            continue;
        }
        uint64_t due;
        if (e->need > e->have) { /* a page or a last event waits */
            due = now;
        } else if (e->subs) { /* viewers: soon after what people did, else within the share */
            uint64_t cost = e->cost_us / 1000, gap = e->urgent ? cost : cost * REACH_COST_SHARE;
            uint64_t min = e->urgent ? REACH_URGENT_GAP_MS : REACH_MIN_GAP_MS;
            due = e->done_at + (gap > min ? gap : min);
        } else {
            continue; /* nobody waits: a page or a viewer will ask */
        }
        if (due <= now) {
            if (!best || e->need > e->have) best = e;
        } else if (!next || due < next) {
            next = due;
        }
    }
    if (!best) return next;
    snprintf(l->job_alert, sizeof l->job_alert, "%s", best->alert_id);
    l->job_ver = best->ver;
    best->urgent = 0;
    if (!l->started) {
        if (uv_thread_create(&l->thread, reach_thread, l)) {
            keng_warn("reach: no worker thread; computing reach on the loop");
            l->busy = 1;
            l->job_json = NULL;
            reach_done(l); /* computes it here */
            return next;
        }
        l->started = 1;
    }
    uv_mutex_lock(&l->mu);
    l->ready = 1;
    l->busy = 1;
    uv_cond_signal(&l->cv);
    uv_mutex_unlock(&l->mu);
    return next;
}

/* ---- Server-Sent Events ---- */

static void sse_mark(keng_app *app, const char *alert_id)
{
    for (keng_sse *s = app->sse; s; s = s->next)
        if (!strcmp(s->alert_id, alert_id)) s->dirty = 1;
}

static void sse_send(keng_live *l, keng_sse *sub, const char *raw, cJSON *obj)
{
    keng_app *app = sub->app;
    uint64_t t0 = uv_hrtime();
    cJSON *counts = NULL;
    if (keng_tally_counts(l->tally, sub->alert_id, &counts) &&
        keng_outbox_counts(app->store, sub->alert_id, &counts)) {
        cJSON_Delete(obj);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "alert", sub->alert_id);
    cJSON_AddItemToObject(o, "counts", counts);
    if (obj)
        cJSON_AddItemToObject(o, "reach", obj);
    else
        cJSON_AddRawToObject(o, "reach", raw);
    sqlite3_stmt *s =
        keng_store_stmt(app->store, "SELECT status, revision FROM alerts WHERE id = ?");
    if (s) {
        sqlite3_bind_text(s, 1, sub->alert_id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) == SQLITE_ROW) {
            cJSON_AddStringToObject(o, "status", keng_store_text(s, 0));
            cJSON_AddNumberToObject(o, "revision", sqlite3_column_int(s, 1));
        }
        sqlite3_reset(s);
    }
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json) return;
    keng_buf b;
    keng_buf_init(&b, 0);
    if (keng_buf_printf(&b, "event: progress\ndata: %s\n\n", json) == 0)
        keng_http_stream_write(sub->req, b.data, b.len);
    keng_buf_free(&b);
    cJSON_free(json);
    sub->last_sent = uv_now(app->loop);
    sub->dirty = 0;
    l->sse_cost_ns = uv_hrtime() - t0;
    l->stats.events++;
    if (l->sse_cost_ns > l->stats.event_max_ns) l->stats.event_max_ns = l->sse_cost_ns;
}

/* Sends sub its event if it is due and everything in it is ready; else lowers *next to when it
 * will be due (a wait for counts or reach ends with a kick instead). */
static void sse_try(keng_live *l, keng_sse *sub, uint64_t now, uint64_t *next)
{
    if (!sub->dirty) return;
    uint64_t gap = l->sse_cost_ns * SSE_COST_SHARE / 1000000;
    if (gap < SSE_MIN_GAP_MS) gap = SSE_MIN_GAP_MS;
    uint64_t due = sub->last_sent ? sub->last_sent + gap : now;
    /* A slow reader gets fewer, newer updates, never a growing queue. */
    if (due <= now && keng_http_req_pending_bytes(sub->req) > SSE_MAX_QUEUED) due = now + gap;
    if (due > now) {
        if (!*next || due < *next) *next = due;
        return;
    }
    if (!keng_tally_current(l->tally)) return;
    reach_entry *e = reach_get(l, sub->alert_id);
    if (!e) return;
    if (!sub->counted) {
        e->subs++;
        sub->counted = 1;
    }
    e->used_at = now;
    /* The event that says nothing is pending or in flight is the last one `keng alert watch`
     * reads: its reach must include every delivery (one computed after the viewer was told of
     * the last change; later changes do not hold it up again). Others show the last one. */
    int64_t n[KENG_TALLY_STATES];
    keng_tally_get(l->tally, sub->alert_id, n);
    int settled = n[KENG_FANOUT_PENDING] + n[KENG_FANOUT_FAILED] + n[KENG_FANOUT_INFLIGHT] <= 0;
    if (settled && !sub->need) sub->need = e->ver;
    char *raw;
    cJSON *obj;
    if (reach_for(l, e, settled ? sub->need : 1, &raw, &obj)) return;
    sub->need = 0;
    sse_send(l, sub, raw, obj);
}

static void sse_unlink(keng_app *app, keng_sse *sub)
{
    for (keng_sse **pp = &app->sse; *pp; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            return;
        }
    }
}

static void sse_on_close(keng_http_req *req, void *ud)
{
    (void)req;
    keng_sse *sub = ud;
    keng_live *l = sub->app->live;
    reach_entry *e = l && sub->counted ? reach_find(l, sub->alert_id) : NULL;
    if (e) e->subs--;
    sse_unlink(sub->app, sub);
    free(sub);
}

/* 0 when the alert of the path exists; else answers 404. */
static int alert_or_404(keng_call *c)
{
    sqlite3_stmt *s = keng_store_stmt(c->app->store, "SELECT 1 FROM alerts WHERE id = ?");
    int found = 0;
    if (s) {
        sqlite3_bind_text(s, 1, c->m.params[0], -1, SQLITE_TRANSIENT);
        found = sqlite3_step(s) == SQLITE_ROW;
        sqlite3_reset(s);
    }
    if (found) return 0;
    keng_http_respond_error(c->req, 404, "not_found", "no such alert: %s", c->m.params[0]);
    return -1;
}

void keng_api_alerts_events(keng_call *c)
{
    keng_app *app = c->app;
    int n = 0;
    for (keng_sse *s = app->sse; s; s = s->next)
        n++;
    if (n >= SSE_MAX_SUBSCRIBERS) {
        keng_http_add_header(c->req, "Retry-After", "10");
        keng_http_respond_error(c->req, 429, "too_many_watchers",
                                "too many live views are open; retry in a moment");
        return;
    }
    if (alert_or_404(c)) return;
    if (!app->live) {
        keng_http_respond_error(c->req, 503, "shutting_down", "kengd is stopping");
        return;
    }
    keng_sse *sub = calloc(1, sizeof *sub);
    if (!sub) {
        keng_http_respond_error(c->req, 500, "internal", "out of memory");
        return;
    }
    sub->app = app;
    sub->req = c->req;
    snprintf(sub->alert_id, sizeof sub->alert_id, "%s", c->m.params[0]);
    keng_http_add_header(c->req, "X-Accel-Buffering", "no");
    if (keng_http_stream_start(c->req, 200, "text/event-stream; charset=utf-8")) {
        free(sub);
        return;
    }
    keng_http_req_on_close(c->req, sse_on_close, sub);
    sub->next = app->sse;
    app->sse = sub;
    sub->last_beat = uv_now(app->loop);
    sub->dirty = 1; /* the first event as soon as its counts and reach are ready */
    keng_http_stream_write(c->req, "retry: 2000\n\n", 13);
    live_kick(app->live);
}

void keng_api_alert_changed(keng_app *app, const char *alert_id)
{
    keng_live *l = app->live;
    if (l) {
        keng_tally_touch(l->tally, alert_id);
        reach_bump(l, alert_id, 1);
    }
    sse_mark(app, alert_id);
    if (l) live_kick(l);
}

void keng_api_alert_progress(keng_app *app, const char *alert_id)
{
    keng_live *l = app->live;
    if (l) reach_bump(l, alert_id, 0);
    sse_mark(app, alert_id);
    if (l) live_kick(l);
}

void keng_api_delivery_rows(keng_app *app, const keng_fanout_change *rows, int n)
{
    if (app->live) keng_tally_rows(app->live->tally, rows, n);
}

int keng_api_delivery_counts(keng_app *app, cJSON **out)
{
    /* Until the first scan is done (just after a start), the outbox is grouped as before. */
    if (app->live && keng_tally_counts(app->live->tally, NULL, out) == 0) return 0;
    return keng_outbox_counts(app->store, NULL, out);
}

/* Ends every live stream (shutdown). */
static void sse_close_all(keng_app *app)
{
    while (app->sse) {
        keng_sse *s = app->sse;
        app->sse = s->next;
        keng_http_req_on_close(s->req, NULL, NULL);
        keng_http_stream_end(s->req);
        free(s);
    }
}

/* ---- the deliveries page ---- */

static void page_unlink(keng_live *l, page *p)
{
    if (!p->linked) return;
    for (page **pp = &l->pages; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    p->linked = 0;
}

static void page_free(void *ud)
{
    page *p = ud;
    page_unlink(p->live, p);
    cJSON_Delete(p->walk.items);
    free(p);
}

static void page_fail(keng_live *l, page *p)
{
    page_unlink(l, p);
    keng_http_respond_error(p->c->req, 500, "internal", "the deliveries could not be read");
}

/* The number of rows the status filter matches, from the counts. */
static double page_total(const cJSON *counts, const char *status)
{
    static const char *const known[] = {"pending", "inflight", "delivered",
                                        "failed",  "dead",     "superseded"};
    const char *key = status ? NULL : "total";
    for (size_t i = 0; status && i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(status, known[i])) key = known[i];
    return key ? cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(counts, key)) : 0;
}

/* Answers p when its rows, counts and reach are ready, or when it has waited long enough.
 * 1 when answered (p is gone then). */
static int page_try(keng_live *l, page *p, uint64_t now)
{
    if (!p->walked) return 0;
    int late = now >= p->deadline;
    if (!keng_tally_covers(l->tally, p->upto) && !late) return 0;
    keng_app *app = l->app;
    reach_entry *e = reach_get(l, p->alert_id);
    char *raw = NULL;
    cJSON *obj = NULL;
    if (e) {
        e->used_at = now;
        if (reach_for(l, e, p->need, &raw, &obj)) {
            if (!late) return 0;
            raw = e->json; /* the last one there is, however old */
        }
    }
    if (!raw && !obj) obj = keng_api_alert_reach(app, p->alert_id);
    cJSON *counts = NULL;
    if (keng_tally_counts(l->tally, p->alert_id, &counts) &&
        keng_outbox_counts(app->store, p->alert_id, &counts)) {
        cJSON_Delete(obj);
        page_fail(l, p);
        return 1;
    }
    cJSON *out = cJSON_CreateObject();
    const char *status = p->walk.status;
    double total = page_total(counts, status);
    cJSON_AddItemToObject(out, "counts", counts);
    if (obj)
        cJSON_AddItemToObject(out, "reach", obj);
    else
        cJSON_AddRawToObject(out, "reach", raw);
    cJSON_AddItemToObject(out, "items", p->walk.items);
    p->walk.items = NULL;
    cJSON_AddNumberToObject(out, "total", total);
    cJSON_AddNumberToObject(out, "limit", p->limit);
    cJSON_AddNumberToObject(out, "offset", p->offset);
    page_unlink(l, p);
    keng_http_respond_json(p->c->req, 200, out); /* p is freed with the request */
    return 1;
}

static void pages_retry(keng_live *l, const char *alert_id)
{
    uint64_t now = uv_now(l->app->loop);
    for (page *p = l->pages, *next; p; p = next) {
        next = p->next;
        if (!alert_id || !strcmp(p->alert_id, alert_id)) page_try(l, p, now);
    }
}

static void on_live_idle(uv_idle_t *h)
{
    keng_live *l = h->data;
    uint64_t t0 = uv_hrtime(), now = uv_now(l->app->loop);
    int more = 0;
    for (page *p = l->pages, *next; p; p = next) {
        next = p->next;
        if (p->walked) continue;
        if (uv_hrtime() - t0 >= PAGE_STEP_NS) {
            more = 1;
            break;
        }
        int rc = keng_outbox_list_step(l->app->store, &p->walk, PAGE_STEP_ROWS);
        if (rc < 0) {
            page_fail(l, p);
        } else if (rc == 0) {
            more = 1;
        } else {
            p->walked = 1;
            if (!page_try(l, p, now)) live_kick(l); /* it waits for reach */
        }
    }
    if (!more) {
        uv_idle_stop(&l->idle);
        l->idle_on = 0;
    }
}

void keng_api_deliveries_page(keng_call *c, const char *status, int limit, int offset)
{
    keng_live *l = c->app->live;
    if (!l) {
        keng_http_respond_error(c->req, 503, "shutting_down", "kengd is stopping");
        return;
    }
    page *p = calloc(1, sizeof *p);
    if (!p || !(p->walk.items = cJSON_CreateArray())) {
        free(p);
        keng_http_respond_error(c->req, 500, "internal", "out of memory");
        return;
    }
    p->live = l;
    p->c = c;
    snprintf(p->alert_id, sizeof p->alert_id, "%s", c->m.params[0]);
    if (status) snprintf(p->status, sizeof p->status, "%s", status);
    p->limit = limit;
    p->offset = offset;
    p->walk.alert_id = p->alert_id;
    p->walk.status = status ? p->status : NULL;
    p->walk.limit = limit;
    p->walk.skip = offset;
    uint64_t now = uv_now(c->app->loop);
    reach_entry *e = reach_get(l, p->alert_id);
    p->need = e ? e->ver : 1; /* reach as of now or newer */
    p->deadline = now + PAGE_WAIT_MS;
    sqlite3_stmt *last =
        keng_store_stmt(c->app->store, "SELECT coalesce(max(id), 0) FROM deliveries");
    if (last && sqlite3_step(last) == SQLITE_ROW) p->upto = sqlite3_column_int64(last, 0);
    if (last) sqlite3_reset(last);
    c->state = p;
    c->state_free = page_free;
    /* A small alert's page is complete after the first step, and answered at once. */
    int rc = keng_outbox_list_step(c->app->store, &p->walk, PAGE_STEP_ROWS);
    if (rc < 0) {
        page_fail(l, p);
        return;
    }
    p->walked = rc == 1;
    p->next = l->pages;
    l->pages = p;
    p->linked = 1;
    if (page_try(l, p, now)) return;
    if (!p->walked && !l->idle_on) {
        uv_idle_start(&l->idle, on_live_idle);
        l->idle_on = 1;
    }
    live_kick(l);
}

/* ---- the timer: events and reach computations ---- */

static void on_live_timer(uv_timer_t *h);

static void live_arm(keng_live *l, uint64_t delay_ms)
{
    if (l->stopping) return;
    uint64_t due = uv_now(l->app->loop) + delay_ms;
    if (l->timer_due && l->timer_due <= due) return;
    l->timer_due = due;
    uv_timer_start(&l->timer, on_live_timer, delay_ms, 0);
}

static void on_live_timer(uv_timer_t *h)
{
    keng_live *l = h->data;
    keng_app *app = l->app;
    l->timer_due = 0;
    uint64_t now = uv_now(app->loop), next = 0;
    /* Pages wait for the counts to reach their row: after the tally caught up, or any change
     * (a publication adds rows while the tally reads them). */
    if (l->retry_pages || l->pages) {
        l->retry_pages = 0;
        pages_retry(l, NULL);
    }
    for (keng_sse *s = app->sse, *n; s; s = n) {
        n = s->next;
        sse_try(l, s, now, &next);
    }
    uint64_t r = reach_next(l, now);
    if (r && (!next || r < next)) next = r;
    if (next) live_arm(l, next > now ? next - now : 1);
}

static void live_kick(keng_live *l)
{
    live_arm(l, 0);
}

static void on_tally_current(void *ud)
{
    keng_live *l = ud;
    l->retry_pages = 1; /* and viewers that waited for the counts are still marked */
    live_kick(l);
}

static void on_live_closed(uv_handle_t *h)
{
    keng_live *l = h->data;
    l->handles--;
    live_release(l);
}

/* Frees l once its handles are closed (its worker has ended before). */
static void live_release(keng_live *l)
{
    if (l->handles) return;
    uv_mutex_destroy(&l->mu);
    uv_cond_destroy(&l->cv);
    while (l->reach)
        reach_drop(l, &l->reach);
    free(l->db_path);
    free(l);
}

static int live_start(keng_app *app)
{
    keng_live *l = calloc(1, sizeof *l);
    const char *path = sqlite3_db_filename(keng_store_db(app->store), "main");
    if (!l || !path || !*path || !(l->db_path = strdup(path))) {
        free(l);
        return -ENOMEM;
    }
    l->app = app;
    int rc = keng_tally_new(app->loop, app->store, on_tally_current, l, &l->tally);
    if (rc) {
        free(l->db_path);
        free(l);
        return rc;
    }
    if (uv_mutex_init(&l->mu)) {
        keng_tally_close(l->tally);
        free(l->db_path);
        free(l);
        return -ENOMEM;
    }
    uv_cond_init(&l->cv); /* cannot fail on Linux */
    uv_timer_init(app->loop, &l->timer);
    uv_idle_init(app->loop, &l->idle);
    uv_async_init(app->loop, &l->async, on_reach_async);
    l->timer.data = l->idle.data = l->async.data = l;
    app->live = l;
    return 0;
}

static void live_stop(keng_app *app)
{
    keng_live *l = app->live;
    if (!l) return;
    app->live = NULL;
    l->stopping = 1;
    while (l->pages) { /* the HTTP server is gone: their requests end without us */
        page *p = l->pages;
        l->pages = p->next;
        p->linked = 0;
    }
    if (l->started) { /* waits for a computation in progress: a fraction of a second */
        uv_mutex_lock(&l->mu);
        l->quit = 1;
        uv_cond_signal(&l->cv);
        uv_mutex_unlock(&l->mu);
        uv_thread_join(&l->thread);
        cJSON_free(l->job_json);
        l->job_json = NULL;
    }
    keng_tally_close(l->tally);
    l->tally = NULL;
    l->handles = 3;
    uv_close((uv_handle_t *)&l->timer, on_live_closed);
    uv_close((uv_handle_t *)&l->idle, on_live_closed);
    uv_close((uv_handle_t *)&l->async, on_live_closed);
}

int keng_api_live_metrics(keng_app *app, keng_buf *out)
{
    keng_live *l = app->live;
    if (!l) return 0;
    keng_tally_stats t;
    keng_tally_get_stats(l->tally, &t);
    return keng_buf_printf(
        out,
        "# HELP keng_counts_rows_read_total Outbox rows read to keep delivery counts in memory.\n"
        "# TYPE keng_counts_rows_read_total counter\nkeng_counts_rows_read_total %llu\n"
        "# HELP keng_counts_step_max_seconds The longest step of those reads on the loop.\n"
        "# TYPE keng_counts_step_max_seconds gauge\nkeng_counts_step_max_seconds %.6f\n"
        "# HELP keng_counts_checks_total Alerts recounted to check the counts; corrected: they had"
        " drifted.\n# TYPE keng_counts_checks_total counter\n"
        "keng_counts_checks_total{result=\"ok\"} "
        "%llu\nkeng_counts_checks_total{result=\"corrected\"}"
        " %llu\n"
        "# HELP keng_reach_runs_total Reach computations (worker: its own thread; loop: small "
        "alerts).\n"
        "# TYPE keng_reach_runs_total counter\nkeng_reach_runs_total{where=\"worker\"} %llu\n"
        "keng_reach_runs_total{where=\"loop\"} %llu\n"
        "# TYPE keng_reach_seconds_total counter\nkeng_reach_seconds_total{where=\"worker\"} %.6f\n"
        "keng_reach_seconds_total{where=\"loop\"} %.6f\n"
        "# TYPE keng_reach_max_seconds gauge\nkeng_reach_max_seconds{where=\"worker\"} %.6f\n"
        "# HELP keng_live_events_total Server-Sent Events sent.\n"
        "# TYPE keng_live_events_total counter\nkeng_live_events_total %llu\n"
        "# TYPE keng_live_event_max_seconds gauge\nkeng_live_event_max_seconds %.6f\n",
        (unsigned long long)t.rows_read, (double)t.step_max_us / 1e6,
        (unsigned long long)(t.verified - t.corrected), (unsigned long long)t.corrected,
        (unsigned long long)l->stats.reach_runs, (unsigned long long)l->stats.reach_loop_runs,
        (double)l->stats.reach_ns / 1e9, (double)l->stats.reach_loop_ns / 1e9,
        (double)l->stats.reach_max_ns / 1e9, (unsigned long long)l->stats.events,
        (double)l->stats.event_max_ns / 1e9);
}

/* ---- periodic work ---- */

static void cron_relay_timeouts(keng_app *app, int64_t now)
{
    sqlite3_stmt *s = keng_store_stmt(
        app->store, "SELECT l.alert_id, l.group_id FROM relays l JOIN alerts a ON a.id = l.alert_id"
                    " WHERE l.state = 'waiting' AND l.due_at IS NOT NULL AND l.due_at <= ?1"
                    " AND a.status = 'published' LIMIT 20");
    if (!s) return;
    sqlite3_bind_int64(s, 1, now);
    cJSON *due = cJSON_CreateArray();
    while (sqlite3_step(s) == SQLITE_ROW) {
        cJSON *r = cJSON_CreateArray();
        cJSON_AddItemToArray(r, cJSON_CreateString(keng_store_text(s, 0)));
        cJSON_AddItemToArray(r, cJSON_CreateString(keng_store_text(s, 1)));
        cJSON_AddItemToArray(due, r);
    }
    sqlite3_reset(s);
    for (const cJSON *r = due->child; r; r = r->next) {
        const char *alert = cJSON_GetArrayItem(r, 0)->valuestring;
        const char *group = cJSON_GetArrayItem(r, 1)->valuestring;
        int64_t *jobs = NULL;
        int rc = keng_api_relay_groups(app, alert, NULL, group, NULL, "keng", &jobs);
        free(jobs);
        if (rc > 0)
            keng_info("relay: the leader of %s did not relay %s in time; keng relays it to the "
                      "group's households",
                      group, alert);
    }
    cJSON_Delete(due);
}

static void cron_expire(keng_app *app, int64_t now)
{
    keng_store *st = app->store;
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT id FROM alerts WHERE status = 'published' AND expires_at IS NOT NULL"
            " AND expires_at <= ?1 LIMIT 20");
    if (!s) return;
    sqlite3_bind_int64(s, 1, now);
    cJSON *ids = cJSON_CreateArray();
    while (sqlite3_step(s) == SQLITE_ROW)
        cJSON_AddItemToArray(ids, cJSON_CreateString(keng_store_text(s, 0)));
    sqlite3_reset(s);
    for (const cJSON *id = ids->child; id; id = id->next) {
        int rc = keng_store_begin(st);
        sqlite3_stmt *u = keng_store_stmt(
            st, "UPDATE alerts SET status = 'expired', revision = revision + 1, updated_at = ?2"
                " WHERE id = ?1 AND status = 'published'");
        sqlite3_stmt *r = keng_store_stmt(
            st, "INSERT INTO alert_revisions(alert_id, revision, status, event, doc, actor,"
                " created_at) SELECT id, revision, status, 'expire', doc, 'keng', ?2 FROM alerts"
                " WHERE id = ?1");
        sqlite3_stmt *l = keng_store_stmt(
            st, "UPDATE relays SET state = 'closed' WHERE alert_id = ?1 AND state = 'waiting'");
        sqlite3_stmt *stmts[] = {u, r, l};
        for (int i = 0; i < 3 && !rc; i++) {
            if (!stmts[i]) {
                rc = -EIO;
                break;
            }
            sqlite3_bind_text(stmts[i], 1, id->valuestring, -1, SQLITE_TRANSIENT);
            if (i < 2) sqlite3_bind_int64(stmts[i], 2, now);
            rc = sqlite3_step(stmts[i]) == SQLITE_DONE ? 0 : -EIO;
            sqlite3_reset(stmts[i]);
        }
        if (!rc)
            rc = keng_store_commit(st);
        else
            keng_store_rollback(st);
        if (!rc) {
            keng_audit_append(st, "keng", "alert.expire", id->valuestring, NULL);
            keng_info("alert %s expired", id->valuestring);
            keng_api_alert_changed(app, id->valuestring);
        }
    }
    cJSON_Delete(ids);
}

static void cron_live(keng_app *app)
{
    keng_live *l = app->live;
    uint64_t now = uv_now(app->loop);
    for (keng_sse *s = app->sse; s; s = s->next) {
        if (now - s->last_beat >= SSE_HEARTBEAT_MS) {
            keng_http_stream_write(s->req, ": keep-alive\n\n", 14);
            s->last_beat = now;
        }
    }
    if (!l) return;
    /* Rows added by something that did not say so are found within a second. */
    keng_tally_touch(l->tally, NULL);
    for (reach_entry **pp = &l->reach; *pp;) {
        if (!(*pp)->subs && now - (*pp)->used_at >= REACH_KEEP_MS)
            reach_drop(l, pp);
        else
            pp = &(*pp)->next;
    }
    pages_retry(l, NULL); /* those that waited too long are answered now */
    live_kick(l);
}

static void on_cron(uv_timer_t *t)
{
    keng_app *app = t->data;
    int64_t now = keng_time_now();
    cron_relay_timeouts(app, now);
    cron_expire(app, now);
    cron_live(app);
}

void keng_app_start_cron(keng_app *app)
{
    int rc = live_start(app);
    if (rc)
        keng_error("live views: cannot start (%s); deliveries and events answer 503",
                   strerror(-rc));
    uv_timer_init(app->loop, &app->cron);
    app->cron.data = app;
    uv_timer_start(&app->cron, on_cron, CRON_MS, CRON_MS);
}

static void on_cron_closed(uv_handle_t *h)
{
    (void)h;
}

void keng_app_stop_cron(keng_app *app)
{
    sse_close_all(app);
    live_stop(app);
    uv_close((uv_handle_t *)&app->cron, on_cron_closed);
}

/* ---- replies and audit ---- */

void keng_api_alerts_replies(keng_call *c)
{
    int limit, offset;
    if (keng_api_paging(c, &limit, &offset)) return;
    keng_store *st = c->app->store;
    if (alert_or_404(c)) return;
    sqlite3_stmt *s;
    /* Who replied is for officers and admins only: sources stay confidential. */
    int show_who = (c->who.role & KENG_ROLES_STAFF) != 0;
    cJSON *items = cJSON_CreateArray();
    s = keng_store_stmt(st, "SELECT p.id, p.kind, p.text, p.created_at, p.member_id, m.name,"
                            " m.address, m.phone FROM replies p LEFT JOIN members m"
                            " ON m.id = p.member_id WHERE p.alert_id = ?1 ORDER BY p.id"
                            " LIMIT ?2 OFFSET ?3");
    if (s) {
        sqlite3_bind_text(s, 1, c->m.params[0], -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(s, 2, limit);
        sqlite3_bind_int(s, 3, offset);
        while (sqlite3_step(s) == SQLITE_ROW) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddNumberToObject(r, "id", (double)sqlite3_column_int64(s, 0));
            cJSON_AddStringToObject(r, "kind", keng_store_text(s, 1));
            cJSON_AddStringToObject(r, "text", keng_store_text(s, 2));
            char buf[KENG_TIME_RFC3339_MAX];
            if (keng_time_format(sqlite3_column_int64(s, 3), KENG_TZ_VN_MIN, buf, sizeof buf) == 0)
                cJSON_AddStringToObject(r, "created_at", buf);
            if (show_who) {
                cJSON *who = cJSON_AddObjectToObject(r, "from");
                cJSON_AddStringToObject(who, "member", keng_store_text(s, 4));
                cJSON_AddStringToObject(who, "name", keng_store_text(s, 5));
                cJSON_AddStringToObject(who, "address", keng_store_text(s, 6));
                cJSON_AddStringToObject(who, "phone", keng_store_text(s, 7));
            }
            cJSON_AddArrayToObject(r, "media");
            cJSON_AddItemToArray(items, r);
        }
        sqlite3_reset(s);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "items", items);
    keng_http_respond_json(c->req, 200, out);
}

void keng_api_audit_list(keng_call *c)
{
    char v[32];
    int64_t since = 0;
    if (keng_http_query_param(c->req, "since", v, sizeof v) == 0) {
        char *end;
        long long n = strtoll(v, &end, 10);
        if (!*v || *end || n < 0) {
            keng_api_field_error(c, "since", "since must be an audit sequence number (0 or more)");
            return;
        }
        since = n;
    }
    int limit, offset;
    if (keng_api_paging(c, &limit, &offset)) return;
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "items", keng_audit_list(c->app->store, since, limit));
    keng_http_respond_json(c->req, 200, out);
}

void keng_api_audit_verify(keng_call *c)
{
    char why[256] = "";
    int64_t bad = keng_audit_verify(c->app->store, why, sizeof why);
    cJSON *out = cJSON_CreateObject();
    if (bad < 0) {
        cJSON_Delete(out);
        keng_http_respond_error(c->req, 500, "internal", "the audit log could not be read");
        return;
    }
    cJSON_AddBoolToObject(out, "ok", bad == 0);
    if (bad) {
        cJSON_AddNumberToObject(out, "first_bad", (double)bad);
        cJSON_AddStringToObject(out, "reason", why);
    }
    keng_http_respond_json(c->req, 200, out);
}
