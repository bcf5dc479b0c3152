#include "keng/tally.h"

#include "keng/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TALLY_CHUNK 256             /* rows per statement: the step checks its time between */
#define TALLY_STEP_NS (2000 * 1000) /* work per loop iteration, about */
#define TALLY_SYNC_DEAD TALLY_CHUNK /* an alert's dead rows re-read at once by touch, at most */
#define TALLY_MAX_CHANNELS 32       /* distinct channel names; the last slot takes the rest */

typedef int64_t tcounts[KENG_TALLY_STATES];

typedef struct talert {
    struct talert *hnext;
    tcounts *n; /* by channel index */
    int nch;
    int queued; /* a recount of it is queued or running */
    char id[];
} talert;

/* A recount of one alert's rows in steps: all of them (verify) or the dead ones (after a touch).
 * Changes of rows it has read already (id <= after) are applied to it as to the live counts. */
typedef struct tjob {
    struct tjob *next;
    int dead_only, started;
    int64_t after;
    tcounts *n;
    int nch;
    char id[];
} tjob;

struct keng_tally {
    uv_loop_t *loop;
    keng_store *st;
    uv_idle_t idle;
    int idle_on, failing;
    void (*on_current)(void *ud);
    void *ud;
    char *chans[TALLY_MAX_CHANNELS];
    int nchans, last_ch;
    talert **b;
    size_t nb, nalerts;
    talert *last;
    int64_t hi; /* rows with id <= hi are counted */
    int seeded; /* the first scan reached the end of the table */
    int tail;   /* rows above hi may exist */
    tjob *checks, *verifies;
    int notify; /* counts changed in the background: on_current at the end of the step */
    keng_tally_stats stats;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static int state_of(const char *status, int attempts)
{
    switch (status[0]) {
    case 'p':
        if (!strcmp(status, "pending"))
            return attempts > 0 ? KENG_FANOUT_FAILED : KENG_FANOUT_PENDING;
        break;
    case 's':
        if (!strcmp(status, "superseded")) return KENG_FANOUT_SUPERSEDED;
        break;
    case 'i':
        if (!strcmp(status, "inflight")) return KENG_FANOUT_INFLIGHT;
        break;
    case 'd':
        if (!strcmp(status, "delivered")) return KENG_FANOUT_DELIVERED;
        if (!strcmp(status, "dead")) return KENG_FANOUT_DEAD;
        break;
    }
    return KENG_TALLY_OTHER;
}

static int chan_index(keng_tally *t, const char *name)
{
    if (t->last_ch < t->nchans && !strcmp(t->chans[t->last_ch], name)) return t->last_ch;
    for (int i = 0; i < t->nchans; i++)
        if (!strcmp(t->chans[i], name)) return t->last_ch = i;
    if (t->nchans == TALLY_MAX_CHANNELS) return TALLY_MAX_CHANNELS - 1;
    /* The last slot is for every name beyond: it is called "other". */
    const char *keep = t->nchans == TALLY_MAX_CHANNELS - 1 ? "other" : name;
    char *s = strdup(keep);
    if (!s) return -ENOMEM;
    t->chans[t->nchans] = s;
    return t->last_ch = t->nchans++;
}

/* Makes (*n)[ch] exist (zeroed). 0 or -ENOMEM. */
static int counts_fit(tcounts **n, int *nch, int ch)
{
    if (ch < *nch) return 0;
    tcounts *m = realloc(*n, (size_t)(ch + 1) * sizeof *m);
    if (!m) return -ENOMEM;
    memset(m + *nch, 0, (size_t)(ch + 1 - *nch) * sizeof *m);
    *n = m;
    *nch = ch + 1;
    return 0;
}

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static talert *alert_find(const keng_tally *t, const char *id)
{
    if (t->last && !strcmp(t->last->id, id)) return t->last;
    if (!t->nb) return NULL;
    for (talert *a = t->b[hash(id) & (t->nb - 1)]; a; a = a->hnext)
        if (!strcmp(a->id, id)) return a;
    return NULL;
}

static talert *alert_get(keng_tally *t, const char *id)
{
    talert *a = alert_find(t, id);
    if (a) return t->last = a;
    if (t->nalerts >= t->nb) { /* grow: load factor at most 1 */
        size_t nb = t->nb ? t->nb * 2 : 64;
        talert **b = calloc(nb, sizeof *b);
        if (!b) return NULL;
        for (size_t i = 0; i < t->nb; i++) {
            while (t->b[i]) {
                talert *x = t->b[i];
                t->b[i] = x->hnext;
                size_t k = hash(x->id) & (nb - 1);
                x->hnext = b[k];
                b[k] = x;
            }
        }
        free(t->b);
        t->b = b;
        t->nb = nb;
    }
    size_t len = strlen(id) + 1;
    a = calloc(1, sizeof *a + len);
    if (!a) return NULL;
    memcpy(a->id, id, len);
    size_t k = hash(id) & (t->nb - 1);
    a->hnext = t->b[k];
    t->b[k] = a;
    t->nalerts++;
    return t->last = a;
}

static void sum_alert(const talert *a, int64_t out[KENG_TALLY_STATES])
{
    for (int c = 0; c < a->nch; c++)
        for (int s = 0; s < KENG_TALLY_STATES; s++)
            out[s] += a->n[c][s];
}

static int64_t active(const talert *a)
{
    int64_t n = 0;
    for (int c = 0; c < a->nch; c++)
        n += a->n[c][KENG_FANOUT_PENDING] + a->n[c][KENG_FANOUT_FAILED] +
             a->n[c][KENG_FANOUT_INFLIGHT];
    return n;
}

static void idle_start(keng_tally *t);

/* ---- background recounts ------------------------------------------------------------------- */

static tjob *job_new(const char *id, int dead_only)
{
    size_t len = strlen(id) + 1;
    tjob *j = calloc(1, sizeof *j + len);
    if (!j) return NULL;
    memcpy(j->id, id, len);
    j->dead_only = dead_only;
    return j;
}

static void job_free(tjob *j)
{
    if (!j) return;
    free(j->n);
    free(j);
}

static void queue_append(tjob **q, tjob *j)
{
    while (*q)
        q = &(*q)->next;
    *q = j;
}

static void verify_alert(keng_tally *t, talert *a)
{
    if (a->queued) return;
    tjob *j = job_new(a->id, 0);
    if (!j) return; /* a check, not a duty: skipped without memory */
    a->queued = 1;
    queue_append(&t->verifies, j);
    idle_start(t);
}

/* The recount is done: compare with (and correct) the live counts. */
static void job_finish(keng_tally *t, tjob *j)
{
    talert *a = alert_get(t, j->id);
    if (!a) return;
    int nch = a->nch > j->nch ? a->nch : j->nch;
    if (counts_fit(&a->n, &a->nch, nch - 1) || counts_fit(&j->n, &j->nch, nch - 1)) return;
    if (j->dead_only) {
        for (int c = 0; c < nch; c++) {
            int64_t live = a->n[c][KENG_FANOUT_DEAD], now = j->n[c][KENG_FANOUT_DEAD];
            if (now < live) { /* re-queued by an officer: pending again, attempts 0 */
                a->n[c][KENG_FANOUT_DEAD] = now;
                a->n[c][KENG_FANOUT_PENDING] += live - now;
                t->stats.requeued += (uint64_t)(live - now);
                t->notify = 1;
            } else if (now > live) {
                verify_alert(t, a);
            }
        }
        return;
    }
    a->queued = 0;
    t->stats.verified++;
    if (memcmp(a->n, j->n, (size_t)nch * sizeof *a->n) == 0) return;
    int64_t had[KENG_TALLY_STATES] = {0}, is[KENG_TALLY_STATES] = {0};
    sum_alert(a, had);
    tcounts *m = a->n;
    a->n = j->n;
    j->n = m; /* freed with the job */
    sum_alert(a, is);
    keng_warn(
        "tally: the delivery counts of %s had drifted (pending %lld→%lld, inflight %lld→%lld, "
        "delivered %lld→%lld, dead %lld→%lld); corrected from the outbox",
        a->id, (long long)(had[0] + had[1]), (long long)(is[0] + is[1]), (long long)had[2],
        (long long)is[2], (long long)had[3], (long long)is[3], (long long)had[4], (long long)is[4]);
    t->stats.corrected++;
    t->notify = 1;
}

/* Reads the next rows of the head job of *q; finishes it at the end. 0 or a negative errno. */
static int job_chunk(keng_tally *t, tjob **q)
{
    tjob *j = *q;
    sqlite3_stmt *s = keng_store_stmt(
        t->st, j->dead_only
                   ? "SELECT id, channel, 'dead', 0 FROM delivery_state INDEXED BY"
                     " delivery_state_dead CROSS JOIN deliveries USING (id, alert_id)"
                     " WHERE status = 'dead' AND alert_id = ?1 AND id > ?2 AND id <= ?3"
                     " ORDER BY id LIMIT ?4"
                   : "SELECT id, channel, status, attempts FROM deliveries JOIN delivery_state"
                     " USING (id, alert_id) WHERE alert_id = ?1 AND id > ?2 AND id <= ?3"
                     " ORDER BY id LIMIT ?4");
    if (!s) return -EIO;
    j->started = 1;
    sqlite3_bind_text(s, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, j->after);
    sqlite3_bind_int64(s, 3, t->hi);
    sqlite3_bind_int(s, 4, TALLY_CHUNK);
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int c = chan_index(t, keng_store_text(s, 1));
        if (c < 0 || counts_fit(&j->n, &j->nch, c)) break;
        j->n[c][state_of(keng_store_text(s, 2), sqlite3_column_int(s, 3))]++;
        j->after = sqlite3_column_int64(s, 0);
        n++;
    }
    sqlite3_reset(s);
    t->stats.rows_read += (uint64_t)n;
    if (rc == SQLITE_ROW) return -ENOMEM;
    if (rc != SQLITE_DONE) return keng_store_errno(rc) ? keng_store_errno(rc) : -EIO;
    if (n == TALLY_CHUNK) return 0;
    *q = j->next;
    job_finish(t, j);
    job_free(j);
    return 0;
}

/* Reads the rows above hi (the first scan, then rows added since). 0 or a negative errno. */
static int tail_chunk(keng_tally *t)
{
    sqlite3_stmt *s =
        keng_store_stmt(t->st, "SELECT id, alert_id, channel, status, attempts FROM deliveries"
                               " JOIN delivery_state USING (id, alert_id) WHERE id > ?1"
                               " ORDER BY id LIMIT ?2");
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, t->hi);
    sqlite3_bind_int(s, 2, TALLY_CHUNK);
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        talert *a = alert_get(t, keng_store_text(s, 1));
        int c = a ? chan_index(t, keng_store_text(s, 2)) : -ENOMEM;
        if (c < 0 || counts_fit(&a->n, &a->nch, c)) break;
        a->n[c][state_of(keng_store_text(s, 3), sqlite3_column_int(s, 4))]++;
        t->hi = sqlite3_column_int64(s, 0);
        n++;
    }
    sqlite3_reset(s);
    t->stats.rows_read += (uint64_t)n;
    if (rc == SQLITE_ROW) return -ENOMEM;
    if (rc != SQLITE_DONE) return keng_store_errno(rc) ? keng_store_errno(rc) : -EIO;
    if (n < TALLY_CHUNK) {
        t->tail = 0;
        t->seeded = 1;
    }
    return 0;
}

static int has_work(const keng_tally *t)
{
    return t->tail || t->checks || t->verifies;
}

static void on_idle(uv_idle_t *h)
{
    keng_tally *t = h->data;
    int was = keng_tally_current(t), rc = 0;
    uint64_t t0 = uv_hrtime(), dt;
    do {
        if (t->tail)
            rc = tail_chunk(t);
        else if (t->checks)
            rc = job_chunk(t, &t->checks);
        else if (t->verifies)
            rc = job_chunk(t, &t->verifies);
        else
            break;
    } while (rc == 0 && (dt = uv_hrtime() - t0) < TALLY_STEP_NS);
    dt = (uv_hrtime() - t0) / 1000;
    t->stats.steps++;
    if (dt > t->stats.step_max_us) t->stats.step_max_us = dt;
    if (rc) {
        /* Reads of a WAL database fail only when the disk does: try again at the next touch
         * (kengd touches every second), without spinning meanwhile. */
        if (!t->failing)
            keng_error("tally: reading the outbox failed (%s); the counts wait", strerror(-rc));
        t->failing = 1;
    } else {
        t->failing = 0;
    }
    if (rc || !has_work(t)) {
        uv_idle_stop(&t->idle);
        t->idle_on = 0;
    }
    if ((!was && keng_tally_current(t)) || t->notify) {
        t->notify = 0;
        if (t->on_current) t->on_current(t->ud);
    }
}

static void idle_start(keng_tally *t)
{
    if (t->idle_on) return;
    uv_idle_start(&t->idle, on_idle);
    t->idle_on = 1;
}

/* ---- API -------------------------------------------------------------------------------- */

int keng_tally_new(uv_loop_t *loop, keng_store *st, void (*on_current)(void *ud), void *ud,
                   keng_tally **out)
{
    *out = NULL;
    keng_tally *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    t->loop = loop;
    t->st = st;
    t->on_current = on_current;
    t->ud = ud;
    t->tail = 1;
    uv_idle_init(loop, &t->idle);
    t->idle.data = t;
    idle_start(t);
    *out = t;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    keng_tally *t = h->data;
    for (size_t i = 0; i < t->nb; i++) {
        while (t->b[i]) {
            talert *a = t->b[i];
            t->b[i] = a->hnext;
            free(a->n);
            free(a);
        }
    }
    free(t->b);
    tjob *qs[2] = {t->checks, t->verifies};
    for (int k = 0; k < 2; k++) {
        while (qs[k]) {
            tjob *j = qs[k];
            qs[k] = j->next;
            job_free(j);
        }
    }
    for (int i = 0; i < t->nchans; i++)
        free(t->chans[i]);
    free(t);
}

void keng_tally_close(keng_tally *t)
{
    if (!t) return;
    uv_idle_stop(&t->idle);
    uv_close((uv_handle_t *)&t->idle, on_closed);
}

/* A change applies to the recount in progress (the head of q) when it has read that row. */
static void job_apply(tjob *j, const talert *a, const keng_fanout_change *r, int c)
{
    if (!j || !j->started || r->id > j->after || strcmp(j->id, a->id)) return;
    if (counts_fit(&j->n, &j->nch, c)) return;
    if (!j->dead_only) {
        j->n[c][r->from]--;
        j->n[c][r->to]++;
    } else if (r->to == KENG_FANOUT_DEAD) {
        j->n[c][KENG_FANOUT_DEAD]++;
    } else if (r->from == KENG_FANOUT_DEAD) {
        j->n[c][KENG_FANOUT_DEAD]--;
    }
}

void keng_tally_rows(keng_tally *t, const keng_fanout_change *rows, int n)
{
    if (!t) return;
    for (int i = 0; i < n; i++) {
        const keng_fanout_change *r = &rows[i];
        /* A row that died may have a new one for the next contact (keng_outbox_fallback, in the
         * same transaction): a look above hi finds it. */
        if (r->to == KENG_FANOUT_DEAD && !t->tail) {
            t->tail = 1;
            idle_start(t);
        }
        if (r->id > t->hi) continue; /* not read yet: the scan will read it as it is */
        talert *a = alert_find(t, r->alert_id);
        if (a) t->last = a;
        int c = a ? chan_index(t, r->channel) : -ENOENT;
        if (c < 0 || counts_fit(&a->n, &a->nch, c)) continue;
        a->n[c][r->from]--;
        a->n[c][r->to]++;
        job_apply(t->checks, a, r, c);
        job_apply(t->verifies, a, r, c);
        if (a->n[c][r->from] < 0)
            verify_alert(t, a); /* a change the tally never heard of came first */
        else if ((r->to == KENG_FANOUT_DELIVERED || r->to == KENG_FANOUT_DEAD ||
                  r->to == KENG_FANOUT_SUPERSEDED) &&
                 active(a) == 0)
            verify_alert(t, a); /* settled: a good moment to check against the outbox */
    }
}

void keng_tally_touch(keng_tally *t, const char *alert_id)
{
    if (!t) return;
    t->tail = 1; /* rows may have been added: one cheap look above hi */
    talert *a = alert_id ? alert_find(t, alert_id) : NULL;
    int64_t dead = 0;
    for (int c = 0; a && c < a->nch; c++)
        dead += a->n[c][KENG_FANOUT_DEAD];
    if (dead > 0) {
        int queued = 0;
        for (tjob *j = t->checks; j && !queued; j = j->next)
            queued = !strcmp(j->id, alert_id);
        tjob *q = queued ? NULL : job_new(alert_id, 1);
        /* Outside a transaction, a few dead rows are re-read now: the engine may claim the
         * re-queued rows before the next loop iteration. Else (or if more are dead than the
         * counts say) the rest in the background; the tally is behind until then. */
        if (q && dead <= TALLY_SYNC_DEAD && sqlite3_get_autocommit(keng_store_db(t->st)) &&
            job_chunk(t, &q) == 0 && !q && t->notify) {
            t->notify = 0;
            if (t->on_current) t->on_current(t->ud);
        }
        if (q) queue_append(&t->checks, q);
    }
    idle_start(t);
}

int keng_tally_current(const keng_tally *t)
{
    return t && t->seeded && !t->tail && !t->checks;
}

int keng_tally_covers(const keng_tally *t, int64_t upto)
{
    return t && t->seeded && t->hi >= upto && !t->checks;
}

int keng_tally_get(const keng_tally *t, const char *alert_id, int64_t out[KENG_TALLY_STATES])
{
    memset(out, 0, KENG_TALLY_STATES * sizeof *out);
    if (!t || !t->seeded) return -EAGAIN;
    const talert *a = alert_find(t, alert_id);
    if (a) sum_alert(a, out);
    return 0;
}

static int add_states(cJSON *o, const int64_t n[KENG_TALLY_STATES])
{
#define POS(x) ((double)((x) > 0 ? (x) : 0))
    return cJSON_AddNumberToObject(o, "pending", POS(n[0] + n[1])) &&
                   cJSON_AddNumberToObject(o, "inflight", POS(n[2])) &&
                   cJSON_AddNumberToObject(o, "delivered", POS(n[3])) &&
                   cJSON_AddNumberToObject(o, "failed", POS(n[1])) &&
                   cJSON_AddNumberToObject(o, "dead", POS(n[4])) &&
                   cJSON_AddNumberToObject(o, "superseded", POS(n[5]))
               ? 0
               : -ENOMEM;
#undef POS
}

static void add_alert(const talert *a, tcounts *by)
{
    for (int c = 0; c < a->nch; c++)
        for (int s = 0; s < KENG_TALLY_STATES; s++)
            by[c][s] += a->n[c][s];
}

int keng_tally_counts(const keng_tally *t, const char *alert_id, cJSON **out)
{
    *out = NULL;
    if (!t || !t->seeded) return -EAGAIN;
    tcounts by[TALLY_MAX_CHANNELS];
    memset(by, 0, sizeof by);
    if (alert_id) {
        const talert *a = alert_find(t, alert_id);
        if (a) add_alert(a, by);
    } else {
        for (size_t i = 0; i < t->nb; i++)
            for (const talert *a = t->b[i]; a; a = a->hnext)
                add_alert(a, by);
    }
    /* Channels with rows, by name (as GROUP BY gave them). */
    int order[TALLY_MAX_CHANNELS], k = 0;
    int64_t sum[KENG_TALLY_STATES] = {0};
    for (int c = 0; c < t->nchans; c++) {
        int64_t rows = 0;
        for (int s = 0; s < KENG_TALLY_STATES; s++) {
            rows += by[c][s];
            sum[s] += by[c][s];
        }
        if (rows <= 0) continue;
        int i = k++;
        while (i > 0 && strcmp(t->chans[order[i - 1]], t->chans[c]) > 0) {
            order[i] = order[i - 1];
            i--;
        }
        order[i] = c;
    }
    int64_t total = 0;
    for (int s = 0; s < KENG_TALLY_STATES; s++)
        total += sum[s];
    cJSON *root = cJSON_CreateObject(), *bc = NULL;
    int rc = root ? add_states(root, sum) : -ENOMEM;
    if (!rc && !cJSON_AddNumberToObject(root, "total", (double)(total > 0 ? total : 0)))
        rc = -ENOMEM;
    if (!rc && !(bc = cJSON_AddObjectToObject(root, "by_channel"))) rc = -ENOMEM;
    for (int i = 0; !rc && i < k; i++) {
        cJSON *o = cJSON_AddObjectToObject(bc, t->chans[order[i]]);
        rc = o ? add_states(o, by[order[i]]) : -ENOMEM;
    }
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }
    *out = root;
    return 0;
}

void keng_tally_verify(keng_tally *t, const char *alert_id)
{
    talert *a = t && alert_id ? alert_find(t, alert_id) : NULL;
    if (a) verify_alert(t, a);
}

void keng_tally_get_stats(const keng_tally *t, keng_tally_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!t) return;
    *out = t->stats;
    out->hi = t->hi;
    out->alerts = t->nalerts;
}
