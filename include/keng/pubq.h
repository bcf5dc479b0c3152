/* pubq: runs publish jobs (publish.h) on the loop, a few milliseconds at a time. Each turn of
 * the loop gets one transaction of chunks of households, about budget_ms long, so a request or a
 * fan-out completion waits at most that long behind a publication to 100,000 households; after
 * each transaction the fan-out is told (on_step), so the first households are being sent to
 * while the last are still being written. Jobs run one at a time in id order. At start the jobs
 * a crash or a stop left are taken up again. A job whose transaction fails (a full disk, a
 * template that cannot be rendered) is kept and tried again after a pause that grows (0.5 s to
 * 60 s); meanwhile it holds back the later jobs of its own alert only, not other alerts'.
 *
 * A caller that must answer with a job's counts (the officer's publish request) waits for it
 * with keng_pubq_wait. Loop thread only. */
#ifndef KENG_PUBQ_H
#define KENG_PUBQ_H

#include <stdint.h>
#include <uv.h>

#include "keng/buf.h"
#include "keng/publish.h"

typedef struct keng_pubq keng_pubq;

typedef struct keng_pubq_config {
    int budget_ms; /* loop time per transaction; 0 → 2 */
    int chunk;     /* households per step; 0 → 128 */
    /* The publish context for a step (the template set may change on reload). */
    void (*ctx)(void *ud, keng_publish_ctx *out);
    /* After each committed transaction, with the alert whose job advanced; done != 0 when the
     * job finished (then st holds its counts). */
    void (*on_step)(void *ud, const char *alert_id, int done, const keng_publish_stats *st);
    void *ud;
} keng_pubq_config;

/* Creates the queue and starts on the jobs already stored. 0 or -ENOMEM. */
int keng_pubq_new(uv_loop_t *loop, keng_store *st, const keng_pubq_config *cfg, keng_pubq **out);
/* A job was stored (and committed): start on it. */
void keng_pubq_kick(keng_pubq *q);
/* Calls done(ud, rc, sum) once every job of ids[0..n) is finished: rc 0 and the sum of their
 * counts, or the first error; -ECANCELED when the queue closes first. n == 0 calls at once.
 * 0 or -ENOMEM. */
typedef void (*keng_pubq_done_fn)(void *ud, int rc, const keng_publish_stats *sum);
int keng_pubq_wait(keng_pubq *q, const int64_t *ids, int n, keng_pubq_done_fn done, void *ud);
/* Forgets every wait registered with ud (its caller went away); done is not called. */
void keng_pubq_unwait(keng_pubq *q, void *ud);
/* Jobs not finished (stored), or -1 on error. */
int keng_pubq_pending(keng_pubq *q);
/* Prometheus text: jobs pending, transactions run, loop time in them (total and longest). */
int keng_pubq_metrics(keng_pubq *q, keng_buf *out);
/* Stops: waits get -ECANCELED, unfinished jobs stay stored for the next start; q is freed once
 * its handles are closed (the loop must run). NULL is fine. */
void keng_pubq_close(keng_pubq *q);

#endif
