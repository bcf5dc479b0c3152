/* Live progress (Server-Sent Events), reach statistics, replies, the audit log API, and the
 * periodic work: relay timeouts, expiry, event flushing. */
#include "keng/app.h"
#include "keng/audit.h"
#include "keng/fanout.h"
#include "keng/log.h"
#include "keng/norm.h"
#include "keng/outbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CRON_MS 1000
#define SSE_MIN_GAP_MS 250
#define SSE_HEARTBEAT_MS 15000
#define SSE_MAX_SUBSCRIBERS 256
#define SSE_MAX_QUEUED (256 * 1024)

typedef struct keng_sse {
    struct keng_sse *next;
    keng_app *app;
    keng_http_req *req;
    char alert_id[KENG_ROUTE_PARAM_LEN];
    uint64_t last_sent, last_beat;
    int dirty;
} keng_sse;

int keng_api_relay_groups(keng_app *app, const char *alert_id, const char *leader,
                          const char *only_group, const char *note, const char *by,
                          int *households);

cJSON *keng_api_alert_reach(keng_app *app, const char *alert_id)
{
    keng_store *st = app->store;
    cJSON *out = cJSON_CreateObject();
    cJSON *groups = cJSON_AddArrayToObject(out, "groups");
    int64_t published = 0;
    sqlite3_stmt *s = keng_store_stmt(st, "SELECT coalesce(published_at, 0) FROM alerts WHERE id = ?");
    if (s) {
        sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) == SQLITE_ROW) published = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    s = keng_store_stmt(
        st, "SELECT r.via_group, count(*),"
            " CASE WHEN l.state = 'waiting' THEN (SELECT count(*) FROM memberships j"
            "  JOIN groups g ON g.id = j.group_id WHERE j.group_id = r.via_group"
            "  AND j.member_id <> coalesce(g.leader, '') AND NOT EXISTS (SELECT 1 FROM recipients x"
            "  WHERE x.alert_id = r.alert_id AND x.member_id = j.member_id)) ELSE 0 END,"
            " sum(r.seen_at IS NOT NULL),"
            " sum(r.replied_at IS NOT NULL), sum(EXISTS (SELECT 1 FROM deliveries d"
            "  WHERE d.alert_id = r.alert_id AND d.recipient = r.member_id"
            "  AND d.status = 'delivered')),"
            " l.state, l.relayed_at, l.relayed_by"
            " FROM recipients r LEFT JOIN relays l ON l.alert_id = r.alert_id"
            "  AND l.group_id = r.via_group"
            " WHERE r.alert_id = ?1 GROUP BY r.via_group ORDER BY r.via_group");
    int tot[5] = {0};
    if (s) {
        sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(s) == SQLITE_ROW) {
            cJSON *g = cJSON_CreateObject();
            cJSON_AddStringToObject(g, "group", keng_store_text(s, 0));
            int v[5];
            static const char *const names[] = {"recipients", "held", "seen", "replied",
                                                "delivered"};
            for (int i = 0; i < 5; i++) {
                v[i] = sqlite3_column_int(s, i + 1);
                tot[i] += v[i];
                cJSON_AddNumberToObject(g, names[i], v[i]);
            }
            if (sqlite3_column_type(s, 6) != SQLITE_NULL) {
                cJSON_AddStringToObject(g, "relay", keng_store_text(s, 6));
                if (sqlite3_column_type(s, 7) != SQLITE_NULL) {
                    int64_t at = sqlite3_column_int64(s, 7);
                    char buf[KENG_TIME_RFC3339_MAX];
                    if (keng_time_format(at, KENG_TZ_VN_MIN, buf, sizeof buf) == 0)
                        cJSON_AddStringToObject(g, "relayed_at", buf);
                    if (published) cJSON_AddNumberToObject(g, "time_to_relay_s", (double)(at - published));
                    cJSON_AddStringToObject(g, "relayed_by", keng_store_text(s, 8));
                }
            }
            cJSON_AddItemToArray(groups, g);
        }
        sqlite3_reset(s);
    }
    cJSON *t = cJSON_CreateObject();
    static const char *const names[] = {"recipients", "held", "seen", "replied", "delivered"};
    for (int i = 0; i < 5; i++) cJSON_AddNumberToObject(t, names[i], tot[i]);
    cJSON_AddItemToObject(out, "total", t);
    return out;
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

/* ---- Server-Sent Events ---- */

static void sse_send(keng_sse *sub, const char *event)
{
    keng_app *app = sub->app;
    if (keng_http_req_pending_bytes(sub->req) > SSE_MAX_QUEUED) {
        sub->dirty = 1; /* a slow reader gets fewer, newer updates, never a growing queue */
        return;
    }
    cJSON *counts = NULL;
    if (keng_outbox_counts(app->store, sub->alert_id, &counts)) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "alert", sub->alert_id);
    cJSON_AddItemToObject(o, "counts", counts);
    cJSON_AddItemToObject(o, "reach", keng_api_alert_reach(app, sub->alert_id));
    sqlite3_stmt *s = keng_store_stmt(app->store, "SELECT status, revision FROM alerts WHERE id = ?");
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
    if (keng_buf_printf(&b, "event: %s\ndata: %s\n\n", event, json) == 0)
        keng_http_stream_write(sub->req, b.data, b.len);
    keng_buf_free(&b);
    cJSON_free(json);
    sub->last_sent = uv_now(app->loop);
    sub->dirty = 0;
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
    sse_unlink(sub->app, sub);
    free(sub);
}

void keng_api_alerts_events(keng_call *c)
{
    keng_app *app = c->app;
    int n = 0;
    for (keng_sse *s = app->sse; s; s = s->next) n++;
    if (n >= SSE_MAX_SUBSCRIBERS) {
        keng_http_add_header(c->req, "Retry-After", "10");
        keng_http_respond_error(c->req, 429, "too_many_watchers",
                                "too many live views are open; retry in a moment");
        return;
    }
    if (alert_or_404(c)) return;
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
    keng_http_stream_write(c->req, "retry: 2000\n\n", 13);
    sse_send(sub, "progress");
}

void keng_api_alert_changed(keng_app *app, const char *alert_id)
{
    uint64_t now = uv_now(app->loop);
    for (keng_sse *s = app->sse; s; s = s->next) {
        if (strcmp(s->alert_id, alert_id) != 0) continue;
        if (now - s->last_sent >= SSE_MIN_GAP_MS)
            sse_send(s, "progress");
        else
            s->dirty = 1;
    }
}

static void sse_tick(keng_app *app)
{
    uint64_t now = uv_now(app->loop);
    for (keng_sse *s = app->sse; s; s = s->next) {
        if (s->dirty && now - s->last_sent >= SSE_MIN_GAP_MS) sse_send(s, "progress");
        if (now - s->last_beat >= SSE_HEARTBEAT_MS) {
            keng_http_stream_write(s->req, ": keep-alive\n\n", 14);
            s->last_beat = now;
        }
    }
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
        int households = 0;
        int rc = keng_api_relay_groups(app, alert, NULL, group, NULL, "keng", &households);
        if (rc > 0)
            keng_info("relay: the leader of %s did not relay %s in time; keng relayed it to %d "
                      "households", group, alert, households);
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
        if (!rc) rc = keng_store_commit(st);
        else keng_store_rollback(st);
        if (!rc) {
            keng_audit_append(st, "keng", "alert.expire", id->valuestring, NULL);
            keng_info("alert %s expired", id->valuestring);
            keng_api_alert_changed(app, id->valuestring);
        }
    }
    cJSON_Delete(ids);
}

static void on_cron(uv_timer_t *t)
{
    keng_app *app = t->data;
    int64_t now = keng_time_now();
    cron_relay_timeouts(app, now);
    cron_expire(app, now);
    sse_tick(app);
}

void keng_app_start_cron(keng_app *app)
{
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
