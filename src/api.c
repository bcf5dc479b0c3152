/* The route table, authentication and the small shared handlers (health, metrics, tokens). */
#include "keng/app.h"
#include "keng/ckpt.h"

#include "keng/log.h"
#include "keng/norm.h"
#include "keng/pubq.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JSON_MAX_DEPTH 32

static void api_healthz(keng_call *c);
static void api_metrics(keng_call *c);
static void api_tokens_create(keng_call *c);

/* The same path may repeat with other methods; a path's routes stay together. */
#define R(m, p, fn, roles, ...)                                                                    \
    {                                                                                              \
        m, p, &(const keng_api_route)                                                              \
        {                                                                                          \
            fn, roles, __VA_ARGS__, 0                                                              \
        }                                                                                          \
    }
/* A GET whose 200 answers are kept until the database changes (keng_api_respond_json). */
#define RC(m, p, fn, roles)                                                                        \
    {                                                                                              \
        m, p, &(const keng_api_route)                                                              \
        {                                                                                          \
            fn, roles, 0, NULL, 1                                                                  \
        }                                                                                          \
    }
static const keng_route routes[] = {
    R("GET", "/healthz", api_healthz, 0, 0, NULL),
    R("GET", "/metrics", api_metrics, 0, 0, NULL),
    R("POST", "/v1/tokens", api_tokens_create, KENG_ROLE_ADMIN, 0, NULL),
    RC("GET", "/v1/groups", keng_api_groups_list, KENG_ROLES_READ),
    R("POST", "/v1/groups", keng_api_groups_create, KENG_ROLE_ADMIN, 0, NULL),
    RC("GET", "/v1/groups/:id", keng_api_groups_get, KENG_ROLES_READ | KENG_ROLE_LEADER),
    R("PUT", "/v1/groups/:id", keng_api_groups_put, KENG_ROLE_ADMIN, 0, NULL),
    R("DELETE", "/v1/groups/:id", keng_api_groups_delete, KENG_ROLE_ADMIN, 0, NULL),
    R("POST", "/v1/groups/:id/import", keng_api_groups_import_csv, KENG_ROLE_ADMIN, KENG_BODY_CSV,
      NULL),
    RC("GET", "/v1/members", keng_api_members_list, KENG_ROLES_READ),
    R("POST", "/v1/members", keng_api_members_create, KENG_ROLES_STAFF, 0, NULL),
    RC("GET", "/v1/members/:id", keng_api_members_get, KENG_ROLES_READ),
    R("PUT", "/v1/members/:id", keng_api_members_put, KENG_ROLES_STAFF, 0, NULL),
    R("POST", "/v1/media", keng_api_media_upload, KENG_ROLES_STAFF, KENG_BODY_IMAGE,
      keng_api_media_upload_headers),
    R("GET", "/v1/media/:id", keng_api_media_get, KENG_ROLES_STAFF, 0, NULL),
    R("GET", "/v1/media/:id/thumb", keng_api_media_thumb, KENG_ROLES_READ, 0, NULL),
    R("GET", "/t/:file", keng_api_public_thumb, 0, 0, NULL),
    R("GET", "/v1/alerts", keng_api_alerts_list, KENG_ROLES_READ, 0, NULL),
    R("POST", "/v1/alerts", keng_api_alerts_create, KENG_ROLES_STAFF, 0, NULL),
    R("GET", "/v1/alerts/:id", keng_api_alerts_get, KENG_ROLES_READ, 0, NULL),
    R("PATCH", "/v1/alerts/:id", keng_api_alerts_patch, KENG_ROLES_STAFF, 0, NULL),
    R("POST", "/v1/alerts/:id/publish", keng_api_alerts_publish, KENG_ROLES_STAFF, 0, NULL),
    R("POST", "/v1/alerts/:id/resolve", keng_api_alerts_resolve, KENG_ROLES_STAFF, 0, NULL),
    R("POST", "/v1/alerts/:id/cancel", keng_api_alerts_cancel, KENG_ROLES_STAFF, 0, NULL),
    R("GET", "/v1/alerts/:id/revisions", keng_api_alerts_revisions, KENG_ROLES_READ, 0, NULL),
    R("GET", "/v1/alerts/:id/preview", keng_api_alerts_preview, KENG_ROLES_READ, 0, NULL),
    R("GET", "/v1/alerts/:id/deliveries", keng_api_alerts_deliveries, KENG_ROLES_READ, 0, NULL),
    R("POST", "/v1/alerts/:id/redeliver", keng_api_alerts_redeliver, KENG_ROLES_STAFF, 0, NULL),
    R("GET", "/v1/alerts/:id/events", keng_api_alerts_events, KENG_ROLES_READ, 0, NULL),
    R("GET", "/v1/alerts/:id/replies", keng_api_alerts_replies, KENG_ROLES_READ, 0, NULL),
    R("GET", "/v1/lookup", keng_api_lookup, KENG_ROLES_READ, 0, NULL),
    R("GET", "/v1/audit", keng_api_audit_list, KENG_ROLES_STAFF, 0, NULL),
    R("GET", "/v1/audit/verify", keng_api_audit_verify, KENG_ROLES_STAFF, 0, NULL),
    R("GET", "/r/:token", keng_api_reply_page, 0, 0, NULL),
    R("POST", "/r/:token/replies", keng_api_reply_post, 0, 64 * 1024, NULL),
    R("GET", "/l/:token", keng_api_relay_page, 0, 0, NULL),
    R("POST", "/l/:token/relay", keng_api_relay_post, 0, 64 * 1024, NULL),
    R("GET", "/r/:token/replies", keng_api_link_form_get, 0, 0, NULL),
    R("GET", "/l/:token/relay", keng_api_link_form_get, 0, 0, NULL),
};
#undef R

static void call_free(void *p)
{
    keng_call *c = p;
    if (c->state_free) c->state_free(c->state);
    free(c);
}

static void jobs_done(void *ud, int rc, const keng_publish_stats *sum)
{
    keng_call *c = ud;
    keng_http_req_on_close(c->req, NULL, NULL);
    c->after_jobs(c, rc, sum);
}

static void jobs_client_gone(keng_http_req *req, void *ud)
{
    keng_call *c = ud;
    keng_pubq_unwait(c->app->pubq, c);
    /* Nobody reads it; it ends the request. The jobs go on. */
    keng_http_respond(req, 499, "text/plain", "", 0);
}

void keng_api_after_jobs(keng_call *c, const int64_t *ids, int n,
                         void (*after)(keng_call *c, int rc, const keng_publish_stats *sum))
{
    c->after_jobs = after;
    keng_http_req_on_close(c->req, jobs_client_gone, c);
    if (!c->app->pubq || keng_pubq_wait(c->app->pubq, ids, n, jobs_done, c) != 0) {
        keng_publish_stats zero;
        memset(&zero, 0, sizeof zero);
        jobs_done(c, c->app->pubq ? -ENOMEM : -ECANCELED, &zero);
    }
}

static int bearer(const keng_http_req *req, const char **tok)
{
    const char *h = keng_http_req_header(req, "authorization");
    if (!h) return -ENOENT;
    if (strncasecmp(h, "Bearer ", 7) != 0) return -EINVAL;
    h += 7;
    while (*h == ' ')
        h++;
    *tok = h;
    return 0;
}

/* Bearer tokens seen lately, so that a busy client does not cost a SELECT per request.
 * Tokens cannot be revoked through the API yet; the short lifetime bounds any staleness. */
#define TOKEN_CACHE_SLOTS 64
#define TOKEN_CACHE_MS 30000
static struct {
    char token[KENG_TOKEN_LEN + 1];
    keng_principal who;
    uint64_t until;
} token_cache[TOKEN_CACHE_SLOTS];

static int token_lookup(keng_app *app, const char *tok, keng_principal *who)
{
    if (strlen(tok) != KENG_TOKEN_LEN) return -ENOENT;
    uint64_t now = uv_now(app->loop);
    unsigned h = 0;
    for (const char *p = tok; *p; p++)
        h = h * 31 + (unsigned char)*p;
    h %= TOKEN_CACHE_SLOTS;
    if (token_cache[h].until > now && keng_auth_equal(token_cache[h].token, tok)) {
        *who = token_cache[h].who;
        return 0;
    }
    int rc = keng_auth_token_lookup(app->store, tok, who);
    if (rc == 0) {
        memcpy(token_cache[h].token, tok, KENG_TOKEN_LEN + 1);
        token_cache[h].who = *who;
        token_cache[h].until = now + TOKEN_CACHE_MS;
    }
    return rc;
}

static void on_headers(keng_http_req *req, void *ud)
{
    keng_app *app = ud;
    keng_call *c = calloc(1, sizeof *c);
    if (!c) {
        keng_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    c->app = app;
    c->req = req;
    keng_http_req_set_data(req, c, call_free);
    int rc = keng_router_match(routes, sizeof routes / sizeof routes[0], keng_http_req_method(req),
                               keng_http_req_path(req), &c->m);
    if (rc == -ENOENT) {
        keng_http_req_set_label(req, "not_found");
        keng_http_respond_error(req, 404, "not_found", "no such resource: %.200s",
                                keng_http_req_path(req));
        return;
    }
    if (rc == -EPERM) {
        keng_http_req_set_label(req, "method_not_allowed");
        keng_http_add_header(req, "Allow", c->m.allow);
        keng_http_respond_error(req, 405, "method_not_allowed", "%s is not allowed here; use %s",
                                keng_http_req_method(req), c->m.allow);
        return;
    }
    if (rc) {
        keng_http_respond_error(req, 400, "bad_path", "the path is malformed");
        return;
    }
    c->route = c->m.route->data;
    keng_http_req_set_label(req, c->m.route->pattern);
    if (c->route->roles) {
        const char *tok = NULL;
        rc = bearer(req, &tok);
        if (rc == 0) rc = token_lookup(app, tok, &c->who);
        if (rc) {
            keng_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"keng\"");
            keng_http_respond_error(req, 401, "unauthorized",
                                    "a valid token is needed: send Authorization: Bearer TOKEN");
            return;
        }
        if (!(c->who.role & c->route->roles)) {
            keng_http_respond_error(req, 403, "forbidden", "the %s role may not do this",
                                    keng_role_name(c->who.role));
            return;
        }
    }
    size_t max = c->route->max_body == KENG_BODY_CSV     ? app->cfg->max_csv_body
                 : c->route->max_body == KENG_BODY_IMAGE ? app->cfg->max_image_bytes
                 : c->route->max_body                    ? c->route->max_body
                                                         : app->cfg->max_json_body;
    keng_http_req_set_body_limit(req, max);
    if (c->route->on_headers) c->route->on_headers(c);
}

/* ---- answers kept until the database changes ---------------------------------------------
 * sqlite3_total_changes64 counts every row any statement of this connection (the only writer)
 * inserted, updated or deleted: an answer stored at one count is still right at the same
 * count. A fan-out writes all the time, so during one the cache mostly misses; between them,
 * the reads leaders' phones and dashboards repeat are answered without touching SQLite. */
#define RCACHE_SLOTS 256
#define RCACHE_MAX_BODY (16 * 1024)
static struct {
    char *key, *body;
    size_t len;
    int64_t gen;
} rcache[RCACHE_SLOTS];

static int rcache_key(const keng_call *c, char *out, size_t len)
{
    const char *q = keng_http_req_query(c->req);
    int n = snprintf(out, len, "%d|%s|%s%s%s", (int)c->who.role, c->who.group_id,
                     keng_http_req_path(c->req), *q ? "?" : "", q);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

static unsigned rcache_slot(const char *key)
{
    uint32_t h = 2166136261u;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % RCACHE_SLOTS;
}

/* 1 when answered from the cache. */
static int rcache_answer(keng_call *c)
{
    char key[1024];
    if (rcache_key(c, key, sizeof key)) return 0;
    unsigned i = rcache_slot(key);
    if (!rcache[i].key || strcmp(rcache[i].key, key) != 0 ||
        rcache[i].gen != sqlite3_total_changes64(keng_store_db(c->app->store)))
        return 0;
    char *body = malloc(rcache[i].len + 1);
    if (!body) return 0;
    memcpy(body, rcache[i].body, rcache[i].len);
    keng_http_respond_take(c->req, 200, "application/json; charset=utf-8", body, rcache[i].len);
    return 1;
}

void keng_api_respond_json(keng_call *c, int status, cJSON *take)
{
    if (status != 200 || !c->route->cache) {
        keng_http_respond_json(c->req, status, take);
        return;
    }
    char *s = take ? cJSON_PrintUnformatted(take) : NULL;
    cJSON_Delete(take);
    size_t n = s ? strlen(s) : 0;
    char *t = s ? realloc(s, n + 2) : NULL;
    if (!t) {
        free(s);
        keng_http_respond_error(c->req, 500, "internal", "out of memory");
        return;
    }
    t[n++] = '\n'; /* as keng_http_respond_json: curl output in a terminal ends cleanly */
    t[n] = '\0';
    char key[1024];
    if (n <= RCACHE_MAX_BODY && rcache_key(c, key, sizeof key) == 0) {
        unsigned i = rcache_slot(key);
        char *k = strdup(key), *b = malloc(n);
        if (k && b) {
            memcpy(b, t, n);
            free(rcache[i].key);
            free(rcache[i].body);
            rcache[i].key = k;
            rcache[i].body = b;
            rcache[i].len = n;
            rcache[i].gen = sqlite3_total_changes64(keng_store_db(c->app->store));
        } else {
            free(k);
            free(b);
        }
    }
    keng_http_respond_take(c->req, 200, "application/json; charset=utf-8", t, n);
}

static void on_request(keng_http_req *req, void *ud)
{
    (void)ud;
    keng_call *c = keng_http_req_data(req);
    if (c->route->cache && rcache_answer(c)) return;
    /* A GET's reads share one snapshot: one lock round trip instead of one per statement. */
    keng_store *st = c->app->store; /* c is gone once the handler has answered */
    int read_tx = !strcmp(keng_http_req_method(req), "GET") && keng_store_begin_read(st) == 0;
    c->route->fn(c);
    if (read_tx && keng_store_commit(st))
        keng_warn("store: a read transaction did not end cleanly");
}

static void observe(void *ud, const char *label, int status, uint64_t us)
{
    keng_app *app = ud;
    for (int i = 0; i < app->nmetrics; i++) {
        if (app->metrics[i].label == label && app->metrics[i].status == status) {
            app->metrics[i].count++;
            app->metrics[i].us_sum += us;
            return;
        }
    }
    if (app->nmetrics == KENG_METRIC_SLOTS) return;
    app->metrics[app->nmetrics].label = label;
    app->metrics[app->nmetrics].status = status;
    app->metrics[app->nmetrics].count = 1;
    app->metrics[app->nmetrics].us_sum = us;
    app->nmetrics++;
}

void keng_api_http_config(keng_app *app, keng_http_config *hc)
{
    memset(hc, 0, sizeof *hc);
    keng_http_limits_default(&hc->limits);
    hc->limits.max_body = app->cfg->max_json_body;
    hc->limits.max_connections = app->cfg->max_connections;
    hc->limits.header_timeout_ms = app->cfg->header_timeout_ms;
    hc->limits.body_timeout_ms = app->cfg->body_timeout_ms;
    hc->limits.idle_timeout_ms = app->cfg->idle_timeout_ms;
    hc->limits.send_timeout_ms = app->cfg->send_timeout_ms;
    hc->on_headers = on_headers;
    hc->on_request = on_request;
    hc->ud = app;
    hc->access_log = app->cfg->access_log;
}

void keng_api_observe(keng_app *app, keng_http_server *s)
{
    keng_http_set_observer(s, observe, app);
}

/* ---- shared helpers ---- */

cJSON *keng_api_json_body(keng_call *c)
{
    size_t len;
    const char *body = keng_http_req_body(c->req, &len);
    const char *ct = keng_http_req_header(c->req, "content-type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0) {
        keng_http_respond_error(c->req, 415, "unsupported_media_type",
                                "send the body as application/json");
        return NULL;
    }
    if (len == 0) {
        keng_http_respond_error(c->req, 400, "invalid_json",
                                "the body is empty; send a JSON object");
        return NULL;
    }
    if (!keng_utf8_valid(body, len)) {
        keng_http_respond_error(c->req, 400, "invalid_utf8", "the body is not valid UTF-8");
        return NULL;
    }
    /* cJSON recurses per nesting level: bound the depth before parsing. */
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = body[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '{' || ch == '[') {
            if (++depth > JSON_MAX_DEPTH) {
                keng_http_respond_error(c->req, 400, "invalid_json",
                                        "the JSON is nested deeper than %d levels", JSON_MAX_DEPTH);
                return NULL;
            }
        } else if (ch == '}' || ch == ']') {
            depth--;
        }
    }
    const char *end = NULL;
    /* len + 1: the body buffer is NUL-terminated, and cJSON checks the NUL after the value. */
    cJSON *j = memchr(body, 0, len) ? NULL : cJSON_ParseWithLengthOpts(body, len + 1, &end, 1);
    if (!j) {
        size_t off = end ? (size_t)(end - body) : 0;
        keng_http_respond_error(c->req, 400, "invalid_json",
                                "the body is not valid JSON (error near byte %zu)", off);
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        keng_http_respond_error(c->req, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return j;
}

void keng_api_field_error(keng_call *c, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "code", "invalid_field");
    cJSON_AddStringToObject(err, "message", msg);
    cJSON_AddStringToObject(err, "field", field);
    keng_http_respond_json(c->req, 400, root);
}

static int query_int(keng_call *c, const char *name, int def, int min, int max, int *out)
{
    char v[32];
    int rc = keng_http_query_param(c->req, name, v, sizeof v);
    if (rc == -ENOENT) {
        *out = def;
        return 0;
    }
    char *end;
    long n = rc ? -1 : strtol(v, &end, 10);
    if (rc || !*v || *end || n < min || n > max) {
        keng_api_field_error(c, name, "%s must be a whole number from %d to %d", name, min, max);
        return -1;
    }
    *out = (int)n;
    return 0;
}

int keng_api_paging(keng_call *c, int *limit, int *offset)
{
    if (query_int(c, "limit", 50, 1, 1000, limit)) return -1;
    if (query_int(c, "offset", 0, 0, 1000000000, offset)) return -1;
    return 0;
}

int keng_api_metrics(keng_app *app, keng_buf *out)
{
    int rc =
        keng_buf_puts(out, "# HELP keng_http_requests_total HTTP requests by route and status.\n"
                           "# TYPE keng_http_requests_total counter\n");
    for (int i = 0; i < app->nmetrics && !rc; i++)
        rc = keng_buf_printf(out, "keng_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                             app->metrics[i].label, app->metrics[i].status,
                             (unsigned long long)app->metrics[i].count);
    if (!rc)
        rc = keng_buf_puts(out, "# HELP keng_http_request_seconds_sum Time spent answering.\n"
                                "# TYPE keng_http_request_seconds_sum counter\n");
    for (int i = 0; i < app->nmetrics && !rc; i++)
        rc = keng_buf_printf(
            out, "keng_http_request_seconds_sum{route=\"%s\",status=\"%d\"} %.6f\n",
            app->metrics[i].label, app->metrics[i].status, (double)app->metrics[i].us_sum / 1e6);
    if (!rc)
        rc = keng_buf_printf(out,
                             "# HELP keng_http_connections Open HTTP connections.\n"
                             "# TYPE keng_http_connections gauge\n"
                             "keng_http_connections %d\n"
                             "# HELP keng_db_size_bytes Size of the SQLite database.\n"
                             "# TYPE keng_db_size_bytes gauge\n"
                             "keng_db_size_bytes %lld\n",
                             keng_http_server_connections(app->http),
                             (long long)keng_store_size(app->store));
    keng_ckpt_stats ck;
    keng_ckpt_get_stats(app->ckpt, &ck);
    if (!rc)
        rc = keng_buf_printf(out,
                             "# HELP keng_db_wal_frames Pages in the write-ahead log at the last"
                             " commit.\n"
                             "# TYPE keng_db_wal_frames gauge\n"
                             "keng_db_wal_frames %lld\n"
                             "# HELP keng_db_checkpoints_total WAL checkpoints run off the loop.\n"
                             "# TYPE keng_db_checkpoints_total counter\n"
                             "keng_db_checkpoints_total %llu\n",
                             (long long)ck.last_wal, (unsigned long long)ck.runs);
    return rc;
}

/* ---- health, metrics, tokens ---- */

static void api_healthz(keng_call *c)
{
    static const char ok[] = "{\"ok\":true}\n";
    keng_http_respond(c->req, 200, "application/json", ok, sizeof ok - 1);
}

static void api_metrics(keng_call *c)
{
    keng_buf out;
    keng_buf_init(&out, 4 << 20);
    int rc = keng_api_metrics(c->app, &out);
    if (!rc) rc = keng_api_fanout_metrics(c->app, &out);
    if (rc) {
        keng_buf_free(&out);
        keng_http_respond_error(c->req, 500, "internal", "metrics could not be produced");
        return;
    }
    size_t n = out.len;
    keng_http_respond_take(c->req, 200, "text/plain; version=0.0.4; charset=utf-8",
                           keng_buf_steal(&out), n);
}

static void api_tokens_create(keng_call *c)
{
    cJSON *j = keng_api_json_body(c);
    if (!j) return;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(j, "role");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    const cJSON *group = cJSON_GetObjectItemCaseSensitive(j, "group");
    enum keng_role r = cJSON_IsString(role) ? keng_role_parse(role->valuestring) : KENG_ROLE_NONE;
    if (r == KENG_ROLE_NONE) {
        keng_api_field_error(c, "role", "role must be one of admin, officer, leader, viewer");
    } else if (name && (!cJSON_IsString(name) || strlen(name->valuestring) > 120)) {
        keng_api_field_error(c, "name", "name must be a string of at most 120 bytes");
    } else if (r == KENG_ROLE_LEADER && !cJSON_IsString(group)) {
        keng_api_field_error(c, "group", "a leader token is scoped to a group: give its id");
    } else if (group &&
               (!cJSON_IsString(group) || !keng_api_group_exists(c->app, group->valuestring))) {
        keng_api_field_error(c, "group", "no such group");
    } else {
        char tok[KENG_TOKEN_LEN + 1];
        int rc = keng_auth_token_create(c->app->store, r, name ? name->valuestring : "",
                                        cJSON_IsString(group) ? group->valuestring : NULL, tok);
        if (rc) {
            keng_http_respond_error(c->req, 500, "internal", "the token could not be stored");
        } else {
            cJSON *out = cJSON_CreateObject();
            cJSON_AddStringToObject(out, "token", tok);
            cJSON_AddStringToObject(out, "role", keng_role_name(r));
            if (cJSON_IsString(group)) cJSON_AddStringToObject(out, "group", group->valuestring);
            keng_info("auth: %s created a %s token \"%s\"", c->who.name, keng_role_name(r),
                      name ? name->valuestring : "");
            keng_http_respond_json(c->req, 201, out);
        }
    }
    cJSON_Delete(j);
}
