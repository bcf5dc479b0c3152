/* app: the domain layer's shared state and the HTTP API glue (floor 4). One keng_app per kengd,
 * owned by main.c, used on the loop thread only. Handlers (api_*.c) receive a keng_call that
 * lives until the request is answered.
 *
 * Handler contract: a handler answers exactly once, now or later, with keng_http_respond*().
 * It may keep per-request state in call->state (freed by call->state_free when the request ends).
 */
#ifndef KENG_APP_H
#define KENG_APP_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <uv.h>

#include "keng/alert_fields.h"
#include "keng/auth.h"
#include "keng/config.h"
#include "keng/http.h"
#include "keng/router.h"
#include "keng/store.h"
#include "keng/template.h"

struct keng_fanout;
struct keng_fanout_change;
struct keng_sse;
struct keng_live;

#define KENG_METRIC_SLOTS 256

typedef struct keng_app {
    uv_loop_t *loop;
    keng_config *cfg;
    keng_store *store;
    struct keng_ckpt *ckpt; /* WAL checkpoints in the thread pool (ckpt.h) */
    keng_http_server *http;
    struct keng_fanout *fanout;
    struct keng_pubq *pubq; /* publish jobs, a chunk of households per loop turn (pubq.h) */
    keng_tplset *templates;
    unsigned char secret[32];
    keng_alert_limits alert_limits;
    char media_dir[4096];
    int64_t started_at;
    struct {
        const char *label;
        int status;
        uint64_t count;
        uint64_t us_sum;
    } metrics[KENG_METRIC_SLOTS];
    int nmetrics;
    struct keng_sse *sse;   /* live event subscribers (api_live.c) */
    struct keng_live *live; /* delivery counts, reach, pages for live views (api_live.c) */
    uv_timer_t cron;        /* relay timeouts, expiry (api_live.c) */
} keng_app;

typedef struct keng_call keng_call;
struct keng_publish_stats;
typedef void (*keng_api_fn)(keng_call *c);

typedef struct keng_api_route {
    keng_api_fn fn;
    unsigned roles;  /* allowed roles; 0 = no authentication (public) */
    size_t max_body; /* 0 = the JSON default */
    /* optional: called when headers are complete, before the body (e.g. to set a stream) */
    keng_api_fn on_headers;
    /* 1: a GET whose answer depends only on the database and the caller's role and group; its
     * 200 answers (through keng_api_respond_json) are kept until the database changes. */
    int cache;
} keng_api_route;

struct keng_call {
    keng_app *app;
    keng_http_req *req;
    keng_principal who;
    keng_route_match m;
    const keng_api_route *route;
    void *state;
    void (*state_free)(void *);
    /* keng_api_after_jobs: how to answer once the publish jobs are done */
    void (*after_jobs)(keng_call *c, int rc, const struct keng_publish_stats *sum);
};

/* Wires the HTTP server callbacks to the route table. */
void keng_api_http_config(keng_app *app, keng_http_config *hc);
/* Parses the request body as a JSON object (UTF-8 checked, depth bounded). On error it has
 * already answered 400/415 and returns NULL. The caller owns the result. */
cJSON *keng_api_json_body(keng_call *c);
/* Answers c once the publish jobs ids[0..n) are done (pubq.h): after(c, rc, sum) then responds
 * (rc 0 with the jobs' summed counts; an error when the jobs are held up — they go on — or
 * kengd stops first). If the client goes away meanwhile, nothing is called. */
void keng_api_after_jobs(keng_call *c, const int64_t *ids, int n,
                         void (*after)(keng_call *c, int rc, const struct keng_publish_stats *sum));
/* Answers status with the JSON take (owned); a 200 of a cached route is kept for later GETs. */
void keng_api_respond_json(keng_call *c, int status, cJSON *take);
/* 400 with code "invalid_field" naming the field. */
void keng_api_field_error(keng_call *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reads limit/offset query parameters (defaults 50/0, limit ≤ 1000). -1 after answering 400. */
int keng_api_paging(keng_call *c, int *limit, int *offset);
/* Prometheus text for /metrics: the HTTP part, and the fan-out engine's. */
int keng_api_metrics(keng_app *app, keng_buf *out);
int keng_api_fanout_metrics(keng_app *app, keng_buf *out);
int keng_api_live_metrics(keng_app *app, keng_buf *out); /* counts kept, reach, live events */

void keng_api_observe(keng_app *app, keng_http_server *s);

/* Body limit selectors for keng_api_route.max_body (else a byte count; 0 = JSON default). */
#define KENG_BODY_CSV 1
#define KENG_BODY_IMAGE 2

/* The fan-out engine, the publish jobs and the periodic work, wired to the app (app_fanout.c,
 * app_cron.c). Publish jobs run until stop_publish, after HTTP has drained: a publish request
 * waiting for its job is answered first. */
int keng_app_start_fanout(keng_app *app);
void keng_app_stop_publish(keng_app *app);
void keng_app_stop_fanout(keng_app *app, int grace_ms, void (*done)(void *), void *ud);
void keng_app_free_fanout(keng_app *app);
void keng_app_start_cron(keng_app *app);
void keng_app_stop_cron(keng_app *app);

/* Handlers, by resource file. */
void keng_api_groups_list(keng_call *c);
void keng_api_groups_create(keng_call *c);
void keng_api_groups_get(keng_call *c);
void keng_api_groups_put(keng_call *c);
void keng_api_groups_delete(keng_call *c);
void keng_api_groups_import_csv(keng_call *c);
void keng_api_members_list(keng_call *c);
void keng_api_members_create(keng_call *c);
void keng_api_members_get(keng_call *c);
void keng_api_members_put(keng_call *c);
void keng_api_media_upload(keng_call *c);
void keng_api_media_upload_headers(keng_call *c); /* on_headers: 415 before the body arrives */
void keng_api_media_get(keng_call *c);
void keng_api_media_thumb(keng_call *c);
void keng_api_public_thumb(keng_call *c);
void keng_api_alerts_create(keng_call *c);
void keng_api_alerts_list(keng_call *c);
void keng_api_alerts_get(keng_call *c);
void keng_api_alerts_patch(keng_call *c);
void keng_api_alerts_publish(keng_call *c);
void keng_api_alerts_resolve(keng_call *c);
void keng_api_alerts_cancel(keng_call *c);
void keng_api_alerts_preview(keng_call *c);
void keng_api_alerts_deliveries(keng_call *c);
void keng_api_alerts_redeliver(keng_call *c);
void keng_api_alerts_events(keng_call *c);
void keng_api_alerts_replies(keng_call *c);
void keng_api_lookup(keng_call *c);
void keng_api_alerts_revisions(keng_call *c);
void keng_api_audit_list(keng_call *c);
void keng_api_audit_verify(keng_call *c);
void keng_api_reply_page(keng_call *c);
void keng_api_reply_post(keng_call *c);
void keng_api_relay_page(keng_call *c);
void keng_api_relay_post(keng_call *c);
/* GET of a form's target (a reload, a copied address): back to the link's page. */
void keng_api_link_form_get(keng_call *c);

/* Shared between resource files. */
int keng_api_group_exists(keng_app *app, const char *id);
/* An alert's deliveries or replies changed outside the fan-out engine (rows added, dead rows
 * re-queued, seen, replied, relayed, status): catch up and wake its live viewers (throttled). */
void keng_api_alert_changed(keng_app *app, const char *alert_id);
/* The fan-out engine wrote results of alert_id (its on_change): wake its live viewers. */
void keng_api_alert_progress(keng_app *app, const char *alert_id);
/* The engine's committed status changes (its on_rows): kept in the delivery counts. */
void keng_api_delivery_rows(keng_app *app, const struct keng_fanout_change *rows, int n);
/* Counts of all deliveries in keng_outbox_counts' shape, from memory (for /metrics). */
int keng_api_delivery_counts(keng_app *app, cJSON **out);
/* GET /v1/alerts/ID/deliveries after its checks: answers now or, for a big alert, a little later
 * without holding up the loop. status NULL = any. */
void keng_api_deliveries_page(keng_call *c, const char *status, int limit, int offset);
/* Per group and in total: recipients, held, delivered, seen, replied, relay times. */
cJSON *keng_api_alert_reach(keng_app *app, const char *alert_id);

#endif
