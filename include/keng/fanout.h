/* fanout: the engine that drains the outbox (deliveries table, see outbox.h). One CURLM driven by
 * the curl multi socket API on the kengd libuv loop: a uv_poll_t per socket, one uv_timer_t for
 * curl, no thread per request and no curl_multi_perform loop. Due rows are claimed in chunks into
 * memory (status 'inflight'), sent through their channel (channel.h), and their results written
 * back in batches (one transaction per ≤ 500 rows / ≤ 20 ms). A retry timer wakes the engine for
 * the earliest next_at. The engine owns its multi handle, easy handles, poll/timer handles and the
 * in-memory copies of claimed rows and messages. Its functions are for the loop thread only;
 * pure work runs in libuv's thread pool: a message's file (keng_channel_ops.load) and, in
 * batches of up to 64 just-claimed deliveries, one batch at a time, their links and requests
 * (keng_channel_ops.build: the webhook's body and signature), so that the loop mostly moves
 * bytes.
 *
 * Delivery semantics: 2xx delivered; 408/429/5xx/network errors/timeouts/over-size responses
 * retry with exponential backoff and full jitter (Retry-After and Telegram's retry_after
 * honoured); other 4xx and the max_attempts-th failure are dead, after which the recipient's next
 * contact (if any) gets a new pending delivery. A channel that is not configured makes its
 * deliveries dead at once ("channel zalo_oa is not configured"): no host is ever contacted that
 * no configuration names. */
#ifndef KENG_FANOUT_H
#define KENG_FANOUT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "keng/buf.h"
#include "keng/store.h"

typedef struct keng_fanout keng_fanout;
struct cJSON;
struct keng_hmac_cache;

/* A delivery row's status as the outbox counts it (keng_outbox_counts): "failed" is a pending
 * row that was tried before. */
enum keng_fanout_state {
    KENG_FANOUT_PENDING = 0, /* 'pending', attempts 0 */
    KENG_FANOUT_FAILED,      /* 'pending', attempts > 0: waits for its retry */
    KENG_FANOUT_INFLIGHT,
    KENG_FANOUT_DELIVERED,
    KENG_FANOUT_DEAD,
    KENG_FANOUT_SUPERSEDED, /* not sent: a later message of its alert replaced it */
};

/* One row's status change, committed. The strings are borrowed for the callback only. */
typedef struct keng_fanout_change {
    int64_t id; /* deliveries.id */
    const char *alert_id, *channel;
    enum keng_fanout_state from, to;
} keng_fanout_change;

typedef struct keng_fanout_config {
    const char *data_dir; /* the file channel appends to DATA/deliveries.jsonl */
    const char *zalo_base_url, *zalo_access_token;      /* zalo_oa off when either is NULL */
    const char *telegram_base_url, *telegram_bot_token; /* telegram off when either is NULL;
                                                           real base: https://api.telegram.org */
    const char *smtp_url, *smtp_from;                   /* email off when either is NULL;
                                                           smtp://host:port or smtps:// */
    const char *smtp_user, *smtp_password;              /* optional */
    /* PEM file of the CAs that webhook receivers' certificates are checked against, in place
     * of the system's (receivers of the ward's own with a private CA); NULL: the system's.
     * Zalo, Telegram and SMTP servers are always checked against the system's. */
    const char *webhook_ca_file;
    int max_inflight;    /* transfers at once, all hosts; 0 → 256 */
    int max_per_host;    /* connections per host; 0 → 64 */
    int timeout_ms;      /* per transfer; 0 → 15000 */
    int max_attempts;    /* the n-th failure is dead; 0 → 8 */
    int backoff_base_ms; /* first retry within [0, base]; 0 → 2000 */
    int backoff_max_ms;  /* cap of the backoff and of Retry-After; 0 → 3600000 */
    size_t max_response; /* a bigger response is cut off and fails that attempt; 0 → 64 KiB */
    /* Builds the absolute reply ('r') or relay ('l') URL for a recipient into out; 0 or a
     * negative errno. NULL: messages carry no link. It runs on the loop or on a thread-pool
     * thread, several at once: for HMACs it uses macs (its caller's own), and it reads nothing
     * that changes. */
    int (*link_url)(void *ud, struct keng_hmac_cache *macs, char link_kind, const char *alert_id,
                    const char *recipient, keng_buf *out);
    /* Called on the loop after a batch of status changes of an alert was written (SSE, stats).
     * Reentrancy: it may read the store and call keng_fanout_kick, not stop/free. */
    void (*on_change)(void *ud, const char *alert_id);
    /* Optional, called on the loop after each commit (before on_change) with every row whose
     * status it changed: claims (pending or failed → inflight) and results (inflight → pending,
     * failed, delivered, dead), in batches, so that counts can be kept without reading the
     * outbox. Rows it inserts (a dead row's contact fallback) are new rows, not changes: they
     * are not reported. Same reentrancy as on_change. */
    void (*on_rows)(void *ud, const keng_fanout_change *rows, int n);
    /* Optional: the counts of all deliveries for keng_fanout_metrics, in keng_outbox_counts'
     * shape (*out owned by the caller; 0 or a negative errno). NULL: keng_outbox_counts groups
     * the whole outbox at each call. */
    int (*counts)(void *ud, struct cJSON **out);
    void *ud;
} keng_fanout_config;

/* Creates the engine on loop. The config is copied (strings included). It does not recover
 * 'inflight' rows: kengd calls keng_outbox_recover before, once, at start. 0 or a negative
 * errno; *out is NULL on error. Call keng_fanout_kick to start draining. */
__attribute__((warn_unused_result)) int
keng_fanout_new(uv_loop_t *loop, keng_store *st, const keng_fanout_config *cfg, keng_fanout **out);

/* New pending rows exist (publish, relay, redeliver): drain soon. Cheap and coalesced — many kicks
 * in one loop iteration cost one claim on the next. */
void keng_fanout_kick(keng_fanout *f);

/* Shutdown (SIGTERM): claims nothing more, puts claimed rows not yet started back to pending,
 * lets transfers in flight finish for up to grace_ms, then aborts the rest (back to pending,
 * attempts unchanged), writes every result, closes all handles; done(ud) is called after the
 * last uv_close callback. Call once. */
void keng_fanout_stop(keng_fanout *f, int grace_ms, void (*done)(void *ud), void *ud);

/* Frees the engine, after stop's done (or before the loop ever ran it). NULL is fine. */
void keng_fanout_free(keng_fanout *f);

/* Appends Prometheus text: keng_deliveries{channel,status} from the outbox, plus the engine's
 * own counters (attempts, results by verdict, in flight, queued). 0 or a negative errno. */
int keng_fanout_metrics(keng_fanout *f, keng_buf *out);

/* Engine statistics (for tests and the bench). */
typedef struct keng_fanout_stats {
    uint64_t started, delivered, retried, dead, written, flushes, claims;
    uint64_t db_ns,
        db_max_ns; /* time in outbox transactions (claims + result writes): total, max */
    int inflight, queued;
    uint64_t first_delivery_ms; /* loop time of the first 2xx since keng_fanout_new, 0 = none */
    uint64_t build_late; /* request batches the busy thread pool had not begun: built on the loop */
    uint64_t deferred;   /* rows given back untried: their receiver held all the parked it may */
    uint64_t given_back; /* rows given back untried: their message could not be loaded just now */
    uint64_t superseded; /* rows not sent: a later message of their alert replaced them */
    uint64_t waited;     /* rows given back untried: a later revision was still being written */
} keng_fanout_stats;
void keng_fanout_get_stats(keng_fanout *f, keng_fanout_stats *out);

#endif
