/* The fan-out engine wired to the app: configuration from keng_config, reply/relay links from
 * derived tokens, progress to live subscribers. */
#include "keng/app.h"
#include "keng/fanout.h"
#include "keng/log.h"
#include "keng/norm.h"
#include "keng/outbox.h"
#include "keng/publish.h"
#include "keng/pubq.h"

#include <errno.h>
#include <string.h>

/* On the loop or in the thread pool (keng_fanout_config.link_url): macs is the caller's. */
static int link_url(void *ud, keng_hmac_cache *macs, char kind, const char *alert_id,
                    const char *recipient, keng_buf *out)
{
    keng_app *app = ud;
    char tok[KENG_TOKEN_LEN + 1];
    keng_auth_link_token_cached(macs, app->secret, kind, alert_id, recipient, tok);
    char mid[3] = {'/', kind, '/'};
    int rc = keng_buf_puts(out, app->cfg->public_url);
    if (rc == 0) rc = keng_buf_append(out, mid, sizeof mid);
    return rc ? rc : keng_buf_append(out, tok, KENG_TOKEN_LEN);
}

static void on_change(void *ud, const char *alert_id)
{
    keng_api_alert_progress(ud, alert_id);
}

static void on_rows(void *ud, const keng_fanout_change *rows, int n)
{
    keng_api_delivery_rows(ud, rows, n);
}

static int counts(void *ud, cJSON **out)
{
    return keng_api_delivery_counts(ud, out);
}

static void publish_ctx(void *ud, keng_publish_ctx *out)
{
    keng_app *app = ud;
    keng_publish_ctx c = {app->store, app->templates, app->cfg, app->secret, keng_time_now()};
    *out = c;
}

/* A chunk of households is in the outbox: send, and let live views know. */
static void on_publish_step(void *ud, const char *alert_id, int done,
                            const keng_publish_stats *st)
{
    keng_app *app = ud;
    if (app->fanout) keng_fanout_kick(app->fanout);
    keng_api_alert_changed(app, alert_id);
    if (done)
        keng_info("publish %s: a job done (publication, relay or update): %d new recipients,"
                  " %d held for relay, %d deliveries",
                  alert_id, st->recipients, st->held, st->deliveries);
}

int keng_app_start_fanout(keng_app *app)
{
    const keng_config *c = app->cfg;
    int rc = keng_outbox_recover(app->store);
    if (rc < 0) return rc;
    if (rc > 0) keng_info("fanout: %d deliveries were in flight at the last stop; sending again", rc);
    int64_t now = keng_time_now();
    rc = keng_outbox_rehold(app->store, now, keng_publish_not_before(c, "expected", now));
    if (rc < 0) return rc;
    if (rc > 0)
        keng_info("fanout: %d deliveries held for quiet hours now follow the current quiet hours"
                  " (%s)",
                  rc, c->quiet_start_min < 0 ? "off: they go now" : "held until they end");
    keng_fanout_config fc;
    memset(&fc, 0, sizeof fc);
    fc.data_dir = c->data_dir;
    fc.zalo_base_url = c->zalo_base_url;
    fc.zalo_access_token = c->zalo_access_token;
    fc.telegram_base_url = c->telegram_base_url;
    fc.telegram_bot_token = c->telegram_bot_token;
    fc.smtp_url = c->smtp_url;
    fc.smtp_from = c->smtp_from;
    fc.smtp_user = c->smtp_user;
    fc.smtp_password = c->smtp_password;
    fc.webhook_ca_file = c->webhook_ca_file;
    fc.max_inflight = c->fanout_max_inflight;
    fc.max_per_host = c->fanout_max_per_host;
    fc.timeout_ms = c->fanout_timeout_ms;
    fc.max_attempts = c->fanout_max_attempts;
    fc.backoff_base_ms = c->fanout_backoff_base_ms;
    fc.max_response = c->fanout_max_response > 0 ? (size_t)c->fanout_max_response : 0;
    fc.link_url = link_url;
    fc.on_change = on_change;
    fc.on_rows = on_rows;
    fc.counts = counts;
    fc.ud = app;
    rc = keng_fanout_new(app->loop, app->store, &fc, &app->fanout);
    if (rc) return rc;
    keng_fanout_kick(app->fanout);
    keng_pubq_config pq;
    memset(&pq, 0, sizeof pq);
    pq.ctx = publish_ctx;
    pq.on_step = on_publish_step;
    pq.ud = app;
    if ((rc = keng_pubq_new(app->loop, app->store, &pq, &app->pubq))) return rc;
    int left = keng_pubq_pending(app->pubq);
    if (left > 0) keng_info("publish: %d publications were cut by the last stop; going on", left);
    return 0;
}

void keng_app_stop_publish(keng_app *app)
{
    keng_pubq_close(app->pubq);
    app->pubq = NULL;
}

void keng_app_stop_fanout(keng_app *app, int grace_ms, void (*done)(void *), void *ud)
{
    keng_fanout_stop(app->fanout, grace_ms, done, ud);
}

void keng_app_free_fanout(keng_app *app)
{
    keng_fanout_free(app->fanout);
    app->fanout = NULL;
}

int keng_api_fanout_metrics(keng_app *app, keng_buf *out)
{
    int rc = app->fanout ? keng_fanout_metrics(app->fanout, out) : 0;
    if (!rc) rc = keng_pubq_metrics(app->pubq, out);
    return rc ? rc : keng_api_live_metrics(app, out);
}
