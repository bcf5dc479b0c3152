/* reach: how far one alert got, per group it went through and in total — recipients, held
 * (households of a leader-relay group still waiting for their leader), seen, replied, delivered
 * (recipients with at least one delivered message) — and each group's relay state and times.
 *
 * It reads the alert's recipients and its delivered rows once each, in table order, and joins
 * them in memory (about 0.3 µs per row; one SQL statement with a correlated lookup per recipient
 * took 1.6 µs). The statements belong to one connection: the loop's store, or a worker's own
 * connection in the thread pool, so the same code runs on either thread (one at a time per
 * connection). Owns nothing between calls. */
#ifndef KENG_REACH_H
#define KENG_REACH_H

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "keng/store.h"

typedef struct keng_reach_sql {
    sqlite3_stmt *s[5];
    int owned; /* prepared by keng_reach_sql_prepare: finalized by keng_reach_sql_free */
} keng_reach_sql;

/* The statements of the store's connection (cached by the store). 0 or -EIO. */
int keng_reach_sql_store(keng_store *st, keng_reach_sql *out);
/* The statements prepared on db (persistent), for a worker's connection. 0 or -EIO. */
int keng_reach_sql_prepare(sqlite3 *db, keng_reach_sql *out);
void keng_reach_sql_free(keng_reach_sql *q); /* finalizes prepared ones; store ones stay */

/* {"groups":[{"group","recipients","held","seen","replied","delivered", and with a relay
 * "relay" (state), "relayed_at", "time_to_relay_s", "relayed_by"}, …] (by group id),
 * "total":{"recipients","held","seen","replied","delivered"}}, owned by the caller. NULL without
 * memory or when a read failed. Call it inside a read transaction for one snapshot. */
cJSON *keng_reach_build(keng_reach_sql *q, const char *alert_id);

#endif
