/* outbox: the SQL of the `deliveries` and `delivery_state` tables (schema: migrations 1 and 4 in
 * src/store.c) — claim due rows, write results in batches, put in-flight rows back after a crash,
 * count and list them for the API, re-queue dead ones. The outbox is the only source of truth of
 * the fan-out; the engine (fanout.c) keeps claimed rows in memory only while they are in flight.
 * Loop thread only.
 *
 * A row of deliveries (what goes where) is written once; its state (status, attempts, next_at,
 * the last answer) is the row of delivery_state with the same id, which whoever inserts
 * deliveries must add in the same transaction (keng_outbox_add_state/_add_states): a delivery
 * without one is never sent.
 *
 * status: pending → inflight → delivered | pending (retry at next_at, attempts > 0) | dead |
 * superseded (not sent: a later message of its alert replaced it before it went, see
 * keng_outbox_superseded). "failed" in counts is a pending row with attempts > 0 (it failed at
 * least once, will retry). */
#ifndef KENG_OUTBOX_H
#define KENG_OUTBOX_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "keng/store.h"

/* One claimed delivery row. The strings are borrowed: valid only during the claim callback. */
typedef struct keng_outbox_row {
    int64_t id;
    const char *alert_id;
    int64_t revision;
    const char *event;
    const char *recipient; /* member id, or "group:ID" */
    const char *channel;   /* webhook | zalo_oa | telegram | email | file */
    int contact_index;
    const char *address; /* the contact object as JSON text */
    int64_t message_id;
    char link_kind; /* 'r' reply, 'l' relay, 0 none */
    const char *idem_key;
    int attempts; /* attempts made before this one */
    int64_t created_at;
} keng_outbox_row;

/* Claims up to limit rows with status 'pending' and next_at <= now (unix seconds), oldest first,
 * marking them 'inflight' in one statement; fn is called once per claimed row (it must copy what
 * it keeps). Returns the number claimed (>= 0) or a negative errno. */
int keng_outbox_claim(keng_store *st, int64_t now, int limit,
                      void (*fn)(void *ud, const keng_outbox_row *row), void *ud);

enum keng_outbox_status {
    KENG_OUTBOX_PENDING = 0, /* retry at next_at (or: put back untried, attempts unchanged) */
    KENG_OUTBOX_DELIVERED,
    KENG_OUTBOX_DEAD,
    KENG_OUTBOX_SUPERSEDED,
};

/* The outcome of one attempt, to be written with keng_outbox_write. */
typedef struct keng_outbox_result {
    int64_t id;
    enum keng_outbox_status status;
    int attempts;      /* new value of the attempts column */
    int64_t next_at;   /* pending: when it may go again (unix seconds) */
    int last_code;     /* HTTP/SMTP status, 0 when none (network error), -1 keep the old */
    const char *error; /* last_error, NULL for none (kept as it was) */
    int64_t delivered_at;
    int64_t latency_ms;
} keng_outbox_result;

/* Writes n results in one transaction (BEGIN IMMEDIATE … COMMIT). 0 or a negative errno. */
int keng_outbox_write(keng_store *st, const keng_outbox_result *res, int n);

/* Contact fallback for a delivery that just went dead (call inside the write transaction or on
 * its own): when the member (or, for "group:ID", the group's channels) has a contact after
 * contact_index, inserts a pending delivery for it (its own channel, contact_index + 1, the same
 * message text — a copy of the message row for the new channel when none was rendered — and the
 * idempotency key ALERT.REVISION.RECIPIENT.NEWCHANNEL). Returns 1 when a row was inserted,
 * 0 when there is no next contact, or a negative errno. */
int keng_outbox_fallback(keng_store *st, int64_t delivery_id, int64_t now);

/* The state of the delivery just inserted with this id: pending, due at next_at. 0 or errno. */
int keng_outbox_add_state(keng_store *st, int64_t id, int64_t next_at);
/* The same for every delivery with an id above after_id: a statement that inserted n rows
 * passes sqlite3_last_insert_rowid - n (new rowids are consecutive: one writer, no
 * AUTOINCREMENT). Returns how many, or a negative errno. */
int keng_outbox_add_states(keng_store *st, int64_t after_id, int64_t next_at);

/* Whether a delivery about to go is still wanted: of an alert at revision alert_revision (its
 * current one) in status alert_status, the row of (revision, event) for recipient.
 * KENG_OUTBOX_SUPERSEDED_BY: an alert or update of an alert that has ended (resolved, cancelled,
 * expired), or for a recipient with a row of a later revision (the newer message tells all); a
 * resolution or cancellation to a recipient no earlier message of the alert may have reached
 * (none delivered, in flight or tried: quiet hours held the alert, or it was superseded).
 * KENG_OUTBOX_WAIT: an older revision's row while a publish job still writes a later revision
 * (its row for this recipient may be still to come). KENG_OUTBOX_SEND, or a negative errno. */
enum { KENG_OUTBOX_SEND = 0, KENG_OUTBOX_SUPERSEDED_BY = 1, KENG_OUTBOX_WAIT = 2 };
int keng_outbox_superseded(keng_store *st, const char *alert_id, const char *recipient,
                           int64_t revision, const char *event, int64_t alert_revision,
                           const char *alert_status);

/* Start of kengd: rows left 'inflight' by a crash go back to 'pending' (attempts unchanged).
 * Returns how many rows were recovered, or a negative errno. */
int keng_outbox_recover(keng_store *st);

/* Counts of one alert's deliveries: {"pending":n,"inflight":n,"delivered":n,"failed":n,"dead":n,
 * "total":n,"by_channel":{"webhook":{"pending":n,…},…}}. alert_id NULL = all alerts.
 * *out is owned by the caller. 0 or a negative errno. */
int keng_outbox_counts(keng_store *st, const char *alert_id, cJSON **out);

/* One page of an alert's deliveries, ordered by id. status NULL = any; "failed" = pending with
 * attempts > 0. *items (owned by the caller) is an array of {"id","recipient","channel",
 * "contact_index","status","attempts","next_at","last_code","last_error","delivered_at",
 * "latency_ms","event","revision"}; *total the number of matching rows (total NULL: not
 * counted, which saves reading every row of the alert). 0 or a negative errno. */
int keng_outbox_list(keng_store *st, const char *alert_id, const char *status, int limit,
                     int offset, cJSON **items, int *total);

/* The same page read in bounded steps, for the loop: no step looks at more than budget rows
 * (with status NULL, 8 × budget entries of the alert's index, which cost far less). Fill in
 * alert_id, status, limit, skip (the offset) and items (an empty array, owned by the caller),
 * the rest zero; call until it returns 1 (the page is complete); 0: more steps are needed; or a
 * negative errno. The strings are borrowed for the whole walk. Rows changed between steps are
 * seen as they are when the walk reaches them. */
typedef struct keng_outbox_walk {
    const char *alert_id, *status;
    int limit, skip;
    cJSON *items;
    int got, end;  /* items added; no rows left */
    int64_t after; /* rows with id <= after were looked at */
} keng_outbox_walk;
int keng_outbox_list_step(keng_store *st, keng_outbox_walk *w, int budget);

/* An officer's re-queue: the alert's dead rows go back to pending, attempts 0, next_at 0 —
 * but not a row whose household a later contact of the same message reached (delivered).
 * Returns how many, or a negative errno. The caller kicks the engine afterwards. */
int keng_outbox_redeliver(keng_store *st, const char *alert_id);

/* The earliest next_at of pending rows that are due after now, or 0 when there is none;
 * negative errno on error. The engine arms its retry timer with it. */
int64_t keng_outbox_next_due(keng_store *st, int64_t now);

/* At start: deliveries held by quiet hours (pending, never tried, due later than now) are due
 * at not_before instead — the end of the quiet hours in force now, or now when there are none;
 * so are the rows that publish jobs cut by the stop have still to write. Returns how many
 * deliveries moved, or a negative errno. */
int keng_outbox_rehold(keng_store *st, int64_t now, int64_t not_before);

#endif
