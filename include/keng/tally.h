/* tally: how many deliveries each alert has in each status and channel, kept in memory, so that
 * live views (Server-Sent Events), the deliveries list and /metrics never group the outbox: one
 * alert of 100,000 rows took 70-200 ms of loop per count, four times a second with a viewer.
 * Loop thread only.
 *
 * The counts cover the rows with id <= hi. They start at zero and catch up by reading the
 * deliveries table in id order, a few hundred rows at a time and about 2 ms per loop iteration (an
 * idle handle), so reading even millions of rows never stalls the loop; rows added later
 * (publish, relay, a contact fallback) are new ids above hi and are found the same way. Status
 * changes of counted rows come from the fan-out engine (keng_fanout_config.on_rows, right after
 * its commit) and are applied at once; a change of a row not counted yet is ignored, since the
 * scan reads the row as it is by then. What changes rows outside the engine (an officer's
 * redelivery of dead rows) is found by re-reading that alert's dead rows after keng_tally_touch.
 * As a check against drift, each alert is recounted in the background (the same small steps)
 * once its fan-out has settled; a difference is corrected and logged.
 *
 * The tally owns its map, its channel names and its idle handle. keng_tally_close stops it and
 * frees it in the handle's close callback. */
#ifndef KENG_TALLY_H
#define KENG_TALLY_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <uv.h>

#include "keng/fanout.h"
#include "keng/store.h"

typedef struct keng_tally keng_tally;

/* The states of enum keng_fanout_state, then KENG_TALLY_OTHER: rows of any other status (they
 * count in "total" only). */
#define KENG_TALLY_OTHER 6
#define KENG_TALLY_STATES 7

/* Creates the tally and starts its first scan of the outbox. on_current(ud) (may be NULL) runs on
 * the loop whenever the counts caught up after having been behind (first scan done, added rows
 * read, a redelivery found) or were corrected. 0 or -ENOMEM; *out is NULL on error. */
__attribute__((warn_unused_result)) int keng_tally_new(uv_loop_t *loop, keng_store *st,
                                                       void (*on_current)(void *ud), void *ud,
                                                       keng_tally **out);
/* Stops the scans and frees t once its handle is closed (the loop must run). NULL is fine. */
void keng_tally_close(keng_tally *t);

/* Status changes the engine committed (keng_fanout_config.on_rows). */
void keng_tally_rows(keng_tally *t, const keng_fanout_change *rows, int n);

/* Deliveries of alert_id changed outside the engine: rows added (publish, relay) or dead rows
 * re-queued (redeliver). NULL: rows may have been added anywhere. The dead rows are re-read at
 * once when there are few and no transaction is open, else in the background (the tally is
 * then behind until done); added rows in the background. */
void keng_tally_touch(keng_tally *t, const char *alert_id);

/* 1 when the counts take in every committed row and change (nothing to catch up on). */
int keng_tally_current(const keng_tally *t);
/* 1 when the counts take in every row with an id up to upto and their changes (rows added
 * later may still be read): what an answer about the rows that existed when it was asked needs,
 * even while a publication keeps adding rows. */
int keng_tally_covers(const keng_tally *t, int64_t upto);

/* One alert's rows by state, summed over channels (zeros for an alert without rows).
 * 0, or -EAGAIN before the first scan has ended. */
int keng_tally_get(const keng_tally *t, const char *alert_id, int64_t out[KENG_TALLY_STATES]);

/* keng_outbox_counts' JSON ({"pending","inflight","delivered","failed","dead","total",
 * "by_channel"}) for alert_id, or for all rows (NULL). *out is owned by the caller.
 * 0, -EAGAIN before the first scan has ended, or -ENOMEM. */
int keng_tally_counts(const keng_tally *t, const char *alert_id, cJSON **out);

/* Recounts alert_id's rows in the background and corrects the counts if they drifted. */
void keng_tally_verify(keng_tally *t, const char *alert_id);

typedef struct keng_tally_stats {
    uint64_t rows_read;   /* by every scan */
    uint64_t steps;       /* idle callbacks that did work */
    uint64_t step_max_us; /* the longest one */
    uint64_t verified;    /* alerts recounted */
    uint64_t corrected;   /* … of which had drifted */
    uint64_t requeued;    /* dead rows found re-queued by touch */
    int64_t hi;           /* rows with id <= hi are counted */
    size_t alerts;        /* alerts in the map */
} keng_tally_stats;
void keng_tally_get_stats(const keng_tally *t, keng_tally_stats *out);

#endif
