/* /v1/alerts: create, read, change, publish, resolve, cancel, preview, deliveries, live events. */
#include "keng/alert_view.h"
#include "keng/app.h"
#include "keng/audit.h"
#include "keng/fanout.h"
#include "keng/log.h"
#include "keng/norm.h"
#include "keng/outbox.h"
#include "keng/publish.h"
#include "keng/pubq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct alert_row {
    char id[64];
    char status[16];
    int revision;
    int64_t created_at, published_at, updated_at;
    cJSON *doc;
} alert_row;

static void alert_row_free(alert_row *a)
{
    cJSON_Delete(a->doc);
    a->doc = NULL;
}

/* A row of "SELECT id, status, revision, doc, created_at, coalesce(published_at, 0),
 * updated_at …" (the columns in that order first); a->doc NULL when it does not parse. */
static void alert_row_read(sqlite3_stmt *s, alert_row *a)
{
    memset(a, 0, sizeof *a);
    snprintf(a->id, sizeof a->id, "%s", keng_store_text(s, 0));
    snprintf(a->status, sizeof a->status, "%s", keng_store_text(s, 1));
    a->revision = sqlite3_column_int(s, 2);
    a->doc = cJSON_Parse(keng_store_text(s, 3));
    a->created_at = sqlite3_column_int64(s, 4);
    a->published_at = sqlite3_column_int64(s, 5);
    a->updated_at = sqlite3_column_int64(s, 6);
}

static int alert_load(keng_store *st, const char *id, alert_row *a)
{
    memset(a, 0, sizeof *a);
    sqlite3_stmt *s = keng_store_stmt(st, "SELECT id, status, revision, doc, created_at,"
                                          " coalesce(published_at, 0), updated_at FROM alerts"
                                          " WHERE id = ?");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int rc = -ENOENT;
    if (sqlite3_step(s) == SQLITE_ROW) {
        alert_row_read(s, a);
        rc = a->doc ? 0 : -EILSEQ;
    }
    sqlite3_reset(s);
    return rc;
}

static cJSON *alert_view(const alert_row *a)
{
    keng_alert_meta m = {a->id, a->status, a->revision, a->created_at, a->published_at,
                         a->updated_at};
    return keng_alert_view(&m, a->doc);
}

static int64_t doc_expires(const cJSON *doc)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "expires_at"));
    int64_t t = 0;
    int off;
    if (!s || keng_time_parse(s, KENG_TZ_VN_MIN, &t, &off)) return 0;
    return t;
}

/* Writes the alert row and a revision row (inside the caller's transaction). */
static int alert_save(keng_store *st, const alert_row *a, const char *event, const char *actor,
                      int insert)
{
    char *doc = cJSON_PrintUnformatted(a->doc);
    if (!doc) return -ENOMEM;
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a->doc, "kind"));
    int pub = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a->doc, "public"));
    sqlite3_stmt *s = keng_store_stmt(
        st, insert ? "INSERT INTO alerts(id, kind, status, revision, doc, created_at, published_at,"
                     " updated_at, expires_at, public) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
                   : "UPDATE alerts SET kind=?2, status=?3, revision=?4, doc=?5, created_at=?6,"
                     " published_at=?7, updated_at=?8, expires_at=?9, public=?10 WHERE id=?1");
    int rc = -EIO;
    if (s) {
        sqlite3_bind_text(s, 1, a->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, kind ? kind : "other", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 3, a->status, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(s, 4, a->revision);
        sqlite3_bind_text(s, 5, doc, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 6, a->created_at);
        if (a->published_at) sqlite3_bind_int64(s, 7, a->published_at);
        sqlite3_bind_int64(s, 8, a->updated_at);
        int64_t exp = doc_expires(a->doc);
        if (exp) sqlite3_bind_int64(s, 9, exp);
        sqlite3_bind_int(s, 10, pub);
        int r = sqlite3_step(s);
        sqlite3_reset(s);
        rc = r == SQLITE_DONE ? 0 : keng_store_errno(r);
    }
    s = keng_store_stmt(st, "INSERT INTO alert_revisions(alert_id, revision, status, event, doc,"
                            " actor, created_at) VALUES (?,?,?,?,?,?,?)");
    if (!rc && s) {
        sqlite3_bind_text(s, 1, a->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(s, 2, a->revision);
        sqlite3_bind_text(s, 3, a->status, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 4, event, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, doc, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 6, actor, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 7, a->updated_at);
        int r = sqlite3_step(s);
        sqlite3_reset(s);
        rc = r == SQLITE_DONE ? 0 : keng_store_errno(r);
    }
    /* Which media the alert uses: the public thumbnail route asks this table. */
    s = keng_store_stmt(st, "INSERT OR IGNORE INTO alert_media(alert_id, media_id)"
                            " SELECT ?1, value FROM json_each(?2, '$.photos')");
    if (!rc && s) {
        sqlite3_bind_text(s, 1, a->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, doc, -1, SQLITE_TRANSIENT);
        int r = sqlite3_step(s);
        sqlite3_reset(s);
        rc = r == SQLITE_DONE ? 0 : keng_store_errno(r);
    }
    cJSON_free(doc);
    return rc;
}

/* Answers 400 naming the field when a photo or a target group does not exist. */
static int check_refs(keng_call *c, const cJSON *doc)
{
    keng_store *st = c->app->store;
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(doc, "photos");
    int i = 0;
    for (const cJSON *p = ps ? ps->child : NULL; p; p = p->next, i++) {
        sqlite3_stmt *s = keng_store_stmt(st, "SELECT 1 FROM media WHERE id = ?");
        if (!s) return -1;
        sqlite3_bind_text(s, 1, p->valuestring, -1, SQLITE_TRANSIENT);
        int ok = sqlite3_step(s) == SQLITE_ROW;
        sqlite3_reset(s);
        if (!ok) {
            char f[32];
            snprintf(f, sizeof f, "photos[%d]", i);
            keng_api_field_error(c, f, "photo %.64s was not uploaded; POST it to /v1/media first",
                                 p->valuestring);
            return -1;
        }
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "targets");
    const cJSON *gs = cJSON_GetObjectItemCaseSensitive(t, "groups");
    i = 0;
    for (const cJSON *g = gs ? gs->child : NULL; g; g = g->next, i++) {
        if (!keng_api_group_exists(c->app, g->valuestring)) {
            char f[48];
            snprintf(f, sizeof f, "targets.groups[%d]", i);
            keng_api_field_error(c, f, "group %.64s does not exist", g->valuestring);
            return -1;
        }
    }
    return 0;
}

static void new_alert_id(char *out, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    time_t local = now + 7 * 3600;
    gmtime_r(&local, &tm);
    char rnd[KENG_TOKEN_LEN + 1];
    if (keng_auth_random_token(rnd)) snprintf(rnd, sizeof rnd, "%08lx", (unsigned long)now);
    snprintf(out, len, "al-%04d%02d%02d-%.6s", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, rnd);
}

static void respond_field_error(keng_call *c, const keng_field_error *e)
{
    keng_api_field_error(c, e->field[0] ? e->field : "alert", "%s", e->message);
}

/* Server-owned members a client may send back (they are ignored) are dropped before storing. */
static void strip_server_fields(cJSON *doc)
{
    static const char *const owned[] = {"id", "status", "revision", "created_at", "published_at",
                                        "updated_at"};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(doc, owned[i]);
}

static void audit(keng_call *c, const char *action, const char *subject, cJSON *detail_take)
{
    keng_audit_append(c->app->store, c->who.name[0] ? c->who.name : keng_role_name(c->who.role),
                      action, subject, detail_take);
}

void keng_api_alerts_create(keng_call *c)
{
    cJSON *doc = keng_api_json_body(c);
    if (!doc) return;
    keng_field_error fe;
    int64_t now = keng_time_now();
    if (keng_alert_validate(doc, &c->app->alert_limits, now, 0, &fe)) {
        respond_field_error(c, &fe);
        cJSON_Delete(doc);
        return;
    }
    strip_server_fields(doc);
    if (check_refs(c, doc)) {
        cJSON_Delete(doc);
        return;
    }
    alert_row a = {.revision = 1, .created_at = now, .updated_at = now, .doc = doc};
    new_alert_id(a.id, sizeof a.id);
    snprintf(a.status, sizeof a.status, "draft");
    keng_store *st = c->app->store;
    int rc = keng_store_begin(st);
    if (!rc) rc = alert_save(st, &a, "create", c->who.name, 1);
    if (!rc) rc = keng_store_commit(st);
    else keng_store_rollback(st);
    if (rc) {
        keng_http_respond_error(c->req, 500, "internal", "the alert could not be stored");
    } else {
        audit(c, "alert.create", a.id, NULL);
        char loc[128];
        snprintf(loc, sizeof loc, "/v1/alerts/%s", a.id);
        keng_http_add_header(c->req, "Location", loc);
        keng_http_respond_json(c->req, 201, alert_view(&a));
    }
    alert_row_free(&a);
}

void keng_api_alerts_list(keng_call *c)
{
    int limit, offset;
    if (keng_api_paging(c, &limit, &offset)) return;
    char status[32] = "", kind[32] = "", since[64] = "";
    int has_status = keng_http_query_param(c->req, "status", status, sizeof status) == 0;
    int has_kind = keng_http_query_param(c->req, "kind", kind, sizeof kind) == 0;
    int64_t since_t = 0;
    if (keng_http_query_param(c->req, "since", since, sizeof since) == 0) {
        int off;
        if (keng_time_parse(since, KENG_TZ_VN_MIN, &since_t, &off)) {
            keng_api_field_error(c, "since", "since must be a time like 2026-11-23T08:00:00+07:00");
            return;
        }
    }
    keng_store *st = c->app->store;
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT count(*) FROM alerts WHERE (?1 IS NULL OR status = ?1)"
            " AND (?2 IS NULL OR kind = ?2) AND created_at >= ?3");
    int total = 0;
    if (s) {
        if (has_status) sqlite3_bind_text(s, 1, status, -1, SQLITE_TRANSIENT);
        if (has_kind) sqlite3_bind_text(s, 2, kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 3, since_t);
        if (sqlite3_step(s) == SQLITE_ROW) total = sqlite3_column_int(s, 0);
        sqlite3_reset(s);
    }
    cJSON *items = cJSON_CreateArray();
    s = keng_store_stmt(st, "SELECT id, status, revision, doc, created_at,"
                            " coalesce(published_at, 0), updated_at FROM alerts"
                            " WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR kind = ?2)"
                            " AND created_at >= ?3 ORDER BY created_at DESC, id LIMIT ?4 OFFSET ?5");
    if (s) {
        if (has_status) sqlite3_bind_text(s, 1, status, -1, SQLITE_TRANSIENT);
        if (has_kind) sqlite3_bind_text(s, 2, kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 3, since_t);
        sqlite3_bind_int(s, 4, limit);
        sqlite3_bind_int(s, 5, offset);
        while (sqlite3_step(s) == SQLITE_ROW) {
            alert_row a;
            alert_row_read(s, &a);
            if (a.doc) cJSON_AddItemToArray(items, alert_view(&a));
            alert_row_free(&a);
        }
        sqlite3_reset(s);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "items", items);
    cJSON_AddNumberToObject(out, "total", total);
    cJSON_AddNumberToObject(out, "limit", limit);
    cJSON_AddNumberToObject(out, "offset", offset);
    keng_http_respond_json(c->req, 200, out);
}

/* GET /v1/lookup?plate=&phone=&account=: published alerts that name any of them. Each value is
 * normalized first (any everyday spelling of a plate or number lands on the stored form); a value
 * that is no plate, phone or account at all is a 400 naming it. */
void keng_api_lookup(keng_call *c)
{
    char raw[3][128], norm[3][KENG_NORM_ACCOUNT_MAX];
    static const char *const names[3] = {"plate", "phone", "account"};
    static const char *const shapes[3] = {
        "plate must be a Vietnamese licence plate like 30A-123.45 or 29-B1 123.45",
        "phone must be a Vietnamese phone number like 0905 123 456 or +84 905 123 456",
        "account must be a bank account number (6 to 19 digits)"};
    int given = 0;
    for (int i = 0; i < 3; i++) {
        norm[i][0] = '\0';
        int q = keng_http_query_param(c->req, names[i], raw[i], sizeof raw[i]);
        if (q == -ENOENT || (q == 0 && raw[i][0] == '\0')) continue;
        int rc = q;
        if (rc == 0 && i == 0) rc = keng_norm_plate(raw[i], norm[i], sizeof norm[i]);
        if (rc == 0 && i == 1) rc = keng_norm_phone(raw[i], norm[i], sizeof norm[i]);
        if (rc == 0 && i == 2) rc = keng_norm_account(raw[i], norm[i], sizeof norm[i]);
        if (rc) {
            keng_api_field_error(c, names[i], "%s", shapes[i]);
            return;
        }
        given++;
    }
    if (!given) {
        keng_http_respond_error(c->req, 400, "bad_request",
                                "give plate, phone or account to look up");
        return;
    }
    sqlite3_stmt *s = keng_store_stmt(
        c->app->store,
        "SELECT id, status, revision, doc, created_at, coalesce(published_at, 0), updated_at,"
        " ?1 IS NOT NULL AND json_extract(doc, '$.plate') = ?1,"
        " ?2 IS NOT NULL AND (json_extract(doc, '$.contact_phone') = ?2 OR EXISTS (SELECT 1 FROM"
        "  json_each(doc, '$.phone_numbers') WHERE value = ?2)),"
        " ?3 IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(doc, '$.bank_accounts')"
        "  WHERE value = ?3)"
        " FROM alerts WHERE status = 'published' AND (expires_at IS NULL OR expires_at > ?4)"
        " AND json_valid(doc) ORDER BY coalesce(published_at, created_at) DESC, id");
    if (!s) {
        keng_http_respond_error(c->req, 500, "internal", "the lookup could not be run");
        return;
    }
    for (int i = 0; i < 3; i++)
        if (norm[i][0]) sqlite3_bind_text(s, i + 1, norm[i], -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, keng_time_now());
    cJSON *items = cJSON_CreateArray();
    while (sqlite3_step(s) == SQLITE_ROW) {
        int hit[3] = {sqlite3_column_int(s, 7), sqlite3_column_int(s, 8), sqlite3_column_int(s, 9)};
        if (!hit[0] && !hit[1] && !hit[2]) continue;
        alert_row a;
        alert_row_read(s, &a);
        cJSON *v = a.doc ? alert_view(&a) : NULL;
        alert_row_free(&a);
        if (!v) continue;
        cJSON *matched = cJSON_AddArrayToObject(v, "matched");
        for (int i = 0; i < 3; i++)
            if (hit[i]) cJSON_AddItemToArray(matched, cJSON_CreateString(names[i]));
        cJSON_AddItemToArray(items, v);
    }
    sqlite3_reset(s);
    cJSON *out = cJSON_CreateObject();
    cJSON *q = cJSON_AddObjectToObject(out, "query");
    for (int i = 0; i < 3; i++)
        if (norm[i][0]) cJSON_AddStringToObject(q, names[i], norm[i]);
    cJSON_AddItemToObject(out, "items", items);
    cJSON_AddNumberToObject(out, "total", cJSON_GetArraySize(items));
    keng_http_respond_json(c->req, 200, out);
}

/* Loads :id or answers 404; 0 on success. */
static int load_or_404(keng_call *c, alert_row *a)
{
    int rc = alert_load(c->app->store, c->m.params[0], a);
    if (rc == -ENOENT) {
        keng_http_respond_error(c->req, 404, "not_found", "no such alert: %s", c->m.params[0]);
        return -1;
    }
    if (rc) {
        keng_http_respond_error(c->req, 500, "internal", "the alert could not be read");
        return -1;
    }
    return 0;
}

/* The alert as it was at revision rev: the stored revision row over the current row's ids. */
static int revision_load(keng_store *st, alert_row *a, int rev, char *event, size_t eventlen,
                         char *actor, size_t actorlen)
{
    sqlite3_stmt *s = keng_store_stmt(st, "SELECT status, event, doc, actor, created_at FROM"
                                          " alert_revisions WHERE alert_id = ?1 AND revision = ?2");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, a->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, rev);
    int rc = -ENOENT;
    if (sqlite3_step(s) == SQLITE_ROW) {
        cJSON *doc = cJSON_Parse(keng_store_text(s, 2));
        if (doc) {
            cJSON_Delete(a->doc);
            a->doc = doc;
            snprintf(a->status, sizeof a->status, "%s", keng_store_text(s, 0));
            a->revision = rev;
            a->updated_at = sqlite3_column_int64(s, 4);
            snprintf(event, eventlen, "%s", keng_store_text(s, 1));
            snprintf(actor, actorlen, "%s", keng_store_text(s, 3));
            rc = 0;
        } else {
            rc = -EILSEQ;
        }
    }
    sqlite3_reset(s);
    return rc;
}

/* GET /v1/alerts/ID, or ?revision=N for the alert as it was then (every revision is kept). */
void keng_api_alerts_get(keng_call *c)
{
    alert_row a;
    if (load_or_404(c, &a)) return;
    char q[16], event[32], actor[160];
    if (keng_http_query_param(c->req, "revision", q, sizeof q) == 0) {
        char *end;
        long rev = strtol(q, &end, 10);
        if (*end || end == q || rev < 1 || rev > a.revision) {
            keng_api_field_error(c, "revision", "revision must be a number from 1 to %d",
                                 a.revision);
            alert_row_free(&a);
            return;
        }
        int rc = revision_load(c->app->store, &a, (int)rev, event, sizeof event, actor,
                               sizeof actor);
        if (rc) {
            keng_http_respond_error(c->req, 404, "not_found", "revision %ld of %s is not stored",
                                    rev, a.id);
            alert_row_free(&a);
            return;
        }
    }
    keng_http_respond_json(c->req, 200, alert_view(&a));
    alert_row_free(&a);
}

/* GET /v1/alerts/ID/revisions: every revision, oldest first: what changed, when, by whom. */
void keng_api_alerts_revisions(keng_call *c)
{
    alert_row a;
    if (load_or_404(c, &a)) return;
    sqlite3_stmt *s = keng_store_stmt(c->app->store,
                                      "SELECT revision, status, event, doc, actor, created_at FROM"
                                      " alert_revisions WHERE alert_id = ?1 ORDER BY revision");
    cJSON *items = cJSON_CreateArray();
    if (s) {
        sqlite3_bind_text(s, 1, a.id, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(s) == SQLITE_ROW) {
            alert_row r = a;
            r.doc = cJSON_Parse(keng_store_text(s, 3));
            if (!r.doc) continue;
            r.revision = sqlite3_column_int(s, 0);
            snprintf(r.status, sizeof r.status, "%s", keng_store_text(s, 1));
            r.updated_at = sqlite3_column_int64(s, 5);
            cJSON *o = cJSON_CreateObject();
            char when[KENG_TIME_RFC3339_MAX];
            keng_time_format(r.updated_at, KENG_TZ_VN_MIN, when, sizeof when);
            cJSON_AddNumberToObject(o, "revision", r.revision);
            cJSON_AddStringToObject(o, "event", keng_store_text(s, 2));
            cJSON_AddStringToObject(o, "status", r.status);
            cJSON_AddStringToObject(o, "actor", keng_store_text(s, 4));
            cJSON_AddStringToObject(o, "at", when);
            cJSON_AddItemToObject(o, "alert", alert_view(&r));
            cJSON_AddItemToArray(items, o);
            cJSON_Delete(r.doc);
        }
        sqlite3_reset(s);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "alert", a.id);
    cJSON_AddItemToObject(out, "items", items);
    cJSON_AddNumberToObject(out, "total", cJSON_GetArraySize(items));
    keng_http_respond_json(c->req, 200, out);
    alert_row_free(&a);
}

static keng_publish_ctx publish_ctx(keng_app *app)
{
    keng_publish_ctx p = {app->store, app->templates, app->cfg, app->secret, keng_time_now()};
    return p;
}

static cJSON *stats_json(const keng_publish_stats *ps)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "groups", ps->groups);
    cJSON_AddNumberToObject(o, "relay_groups", ps->relay_groups);
    cJSON_AddNumberToObject(o, "recipients", ps->recipients);
    cJSON_AddNumberToObject(o, "held", ps->held);
    cJSON_AddNumberToObject(o, "unreachable", ps->unreachable);
    cJSON_AddNumberToObject(o, "deliveries", ps->deliveries);
    return o;
}

/* What a publication or a change answers with once its job is done (c->state). */
typedef struct fanout_answer {
    cJSON *view;         /* the alert as stored */
    int64_t quiet_until; /* its messages wait until then (quiet hours); 0: they go now */
} fanout_answer;

static void fanout_answer_free(void *p)
{
    fanout_answer *fa = p;
    if (!fa) return;
    cJSON_Delete(fa->view);
    free(fa);
}

/* Hands view to the call's answer; 0, or -ENOMEM after freeing view. */
static int fanout_answer_set(keng_call *c, cJSON *view, int64_t quiet_until)
{
    fanout_answer *fa = calloc(1, sizeof *fa);
    if (!fa) {
        cJSON_Delete(view);
        return -ENOMEM;
    }
    fa->view = view;
    fa->quiet_until = quiet_until;
    c->state = fa;
    c->state_free = fanout_answer_free;
    return 0;
}

/* An officer who publishes at 23:00 must learn that nothing leaves before the quiet hours end:
 * when, for people (the ward's offset) and for programs (unix seconds); null when nothing waits. */
static void add_quiet_until(cJSON *fanout, int64_t until, int tz_offset_min)
{
    char when[KENG_TIME_RFC3339_MAX];
    if (until > 0 && keng_time_format(until, tz_offset_min, when, sizeof when) == 0) {
        cJSON_AddStringToObject(fanout, "quiet_until", when);
        cJSON_AddNumberToObject(fanout, "quiet_until_unix", (double)until);
    } else {
        cJSON_AddNullToObject(fanout, "quiet_until");
        cJSON_AddNullToObject(fanout, "quiet_until_unix");
    }
}

/* The answer to a publication or a change once its job is done: the alert with the counts of
 * the fan-out it started and, during quiet hours, until when its messages wait. */
static void answer_with_counts(keng_call *c, int rc, const keng_publish_stats *ps)
{
    fanout_answer *fa = c->state;
    cJSON *view = fa->view;
    int64_t quiet_until = fa->quiet_until;
    fa->view = NULL;
    fanout_answer_free(fa);
    c->state = NULL;
    c->state_free = NULL;
    if (rc) {
        keng_http_respond_error(c->req, 503, "publish_delayed",
                                "alert %s is stored; writing its messages is held up (%s) and "
                                "goes on by itself: follow it in GET /v1/alerts/%s/deliveries",
                                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(view, "id")),
                                strerror(-rc),
                                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(view, "id")));
        cJSON_Delete(view);
        return;
    }
    cJSON *fanout = stats_json(ps);
    add_quiet_until(fanout, quiet_until, c->app->cfg->tz_offset_min);
    cJSON_AddItemToObject(view, "fanout", fanout);
    keng_http_respond_json(c->req, 200, view);
}

/* Stores a new revision of an alert and, when it was published, its event's publish job, in one
 * transaction; answers when the job is done. */
static void revise_and_fan_out(keng_call *c, alert_row *a, const char *event, const char *status)
{
    keng_store *st = c->app->store;
    int64_t now = keng_time_now();
    a->revision++;
    a->updated_at = now;
    if (status != a->status) snprintf(a->status, sizeof a->status, "%s", status);
    cJSON *view = alert_view(a);
    keng_publish_ctx pc = publish_ctx(c->app);
    int64_t job = 0;
    const char *actor = c->who.name[0] ? c->who.name : keng_role_name(c->who.role);
    int rc = keng_store_begin(st);
    if (!rc) rc = alert_save(st, a, event, c->who.name, 0);
    if (!rc && a->published_at)
        rc = keng_publish_begin_event(&pc, a->id, a->revision, event, view, actor, &job);
    if (!rc && !job) {
        /* A draft changed: nothing to send; said here, not by a job. */
        char action[32];
        snprintf(action, sizeof action, "alert.%s", event);
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "revision", a->revision);
        cJSON_AddNumberToObject(d, "deliveries", 0);
        audit(c, action, a->id, d);
    }
    if (!rc) rc = keng_store_commit(st);
    else keng_store_rollback(st);
    if (rc) {
        keng_http_respond_error(c->req, 500, "internal", "the change could not be stored");
        cJSON_Delete(view);
        return;
    }
    keng_api_alert_changed(c->app, a->id);
    /* The job's messages wait for the same end of the quiet hours that begin_event gave them. */
    int oom = fanout_answer_set(c, view, job ? keng_publish_view_not_before(&pc, view) : 0);
    keng_pubq_kick(c->app->pubq);
    if (oom)
        keng_http_respond_error(c->req, 500, "internal", "out of memory");
    else
        keng_api_after_jobs(c, &job, job ? 1 : 0, answer_with_counts);
}

static int is_final(const char *status)
{
    return !strcmp(status, "resolved") || !strcmp(status, "cancelled") || !strcmp(status, "expired");
}

void keng_api_alerts_patch(keng_call *c)
{
    cJSON *patch = keng_api_json_body(c);
    if (!patch) return;
    alert_row a;
    if (load_or_404(c, &a)) {
        cJSON_Delete(patch);
        return;
    }
    if (is_final(a.status)) {
        keng_http_respond_error(c->req, 409, "alert_closed",
                                "alert %s is %s; create a new alert instead", a.id, a.status);
        goto out;
    }
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(patch, "kind");
    const char *old_kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a.doc, "kind"));
    if (kind && (!cJSON_IsString(kind) || strcmp(kind->valuestring, old_kind))) {
        keng_api_field_error(c, "kind", "the kind of an alert cannot change; cancel it and create a "
                                        "new one");
        goto out;
    }
    strip_server_fields(patch);
    /* Merge: each member replaces the stored one; null removes it (RFC 7396, one level). */
    cJSON *merged = cJSON_Duplicate(a.doc, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(merged, "update_note");
    for (cJSON *it = patch->child; it; it = it->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(merged, it->string);
        if (!cJSON_IsNull(it)) cJSON_AddItemToObject(merged, it->string, cJSON_Duplicate(it, 1));
    }
    /* update_note is said once, for this revision's message. */
    cJSON *note = cJSON_DetachItemFromObjectCaseSensitive(merged, "update_note");
    keng_field_error fe;
    if (note && (!cJSON_IsString(note) || strlen(note->valuestring) > 2000 ||
                 !keng_utf8_valid(note->valuestring, strlen(note->valuestring)))) {
        keng_api_field_error(c, "update_note", "update_note must be text of at most 2000 bytes");
        cJSON_Delete(merged);
        cJSON_Delete(note);
        goto out;
    }
    if (keng_alert_validate(merged, &c->app->alert_limits, keng_time_now(), 1, &fe)) {
        respond_field_error(c, &fe);
        cJSON_Delete(merged);
        cJSON_Delete(note);
        goto out;
    }
    if (check_refs(c, merged)) {
        cJSON_Delete(merged);
        cJSON_Delete(note);
        goto out;
    }
    if (note) cJSON_AddItemToObject(merged, "update_note", note);
    cJSON_Delete(a.doc);
    a.doc = merged;
    revise_and_fan_out(c, &a, "update", a.status);
out:
    alert_row_free(&a);
    cJSON_Delete(patch);
}

void keng_api_alerts_publish(keng_call *c)
{
    alert_row a;
    if (load_or_404(c, &a)) return;
    if (strcmp(a.status, "draft") != 0) {
        keng_http_respond_error(c->req, 409, "already_published",
                                "alert %s is %s already; use PATCH to update it", a.id, a.status);
        alert_row_free(&a);
        return;
    }
    int64_t now = keng_time_now();
    int64_t exp = doc_expires(a.doc);
    if (exp && exp <= now) {
        keng_api_field_error(c, "expires_at", "the alert expired before it was published; set a "
                                              "later expires_at with PATCH");
        alert_row_free(&a);
        return;
    }
    keng_store *st = c->app->store;
    a.revision++;
    a.published_at = a.updated_at = now;
    snprintf(a.status, sizeof a.status, "published");
    cJSON *view = alert_view(&a);
    keng_publish_ctx pc = publish_ctx(c->app);
    int64_t job = 0;
    const char *actor = c->who.name[0] ? c->who.name : keng_role_name(c->who.role);
    int rc = keng_store_begin(st);
    if (!rc) rc = alert_save(st, &a, "publish", c->who.name, 0);
    if (!rc) rc = keng_publish_begin_alert(&pc, a.id, a.revision, view, actor, &job);
    if (!rc) rc = keng_store_commit(st);
    else keng_store_rollback(st);
    if (rc) {
        keng_error("publish %s failed: %s", a.id, strerror(-rc));
        keng_http_respond_error(c->req, 500, "internal", "the alert could not be published");
        cJSON_Delete(view);
    } else {
        /* Leaders, relays and group chats are in the outbox; the households follow in the job's
         * chunks, each sent as soon as it is written. */
        if (c->app->fanout) keng_fanout_kick(c->app->fanout);
        keng_api_alert_changed(c->app, a.id);
        int oom = fanout_answer_set(c, view, keng_publish_view_not_before(&pc, view));
        keng_pubq_kick(c->app->pubq);
        if (oom)
            keng_http_respond_error(c->req, 500, "internal", "out of memory");
        else
            keng_api_after_jobs(c, &job, 1, answer_with_counts);
    }
    alert_row_free(&a);
}

/* resolve and cancel: an optional JSON body with "resolution" / "reason". */
static void close_alert(keng_call *c, const char *event, const char *status, const char *field,
                        const char *doc_field)
{
    size_t len;
    keng_http_req_body(c->req, &len);
    cJSON *body = len ? keng_api_json_body(c) : cJSON_CreateObject();
    if (!body) return;
    alert_row a;
    if (load_or_404(c, &a)) {
        cJSON_Delete(body);
        return;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, field);
    if (is_final(a.status)) {
        keng_http_respond_error(c->req, 409, "alert_closed", "alert %s is %s already", a.id,
                                a.status);
    } else if (!strcmp(event, "resolve") && strcmp(a.status, "published") != 0) {
        keng_http_respond_error(c->req, 409, "not_published",
                                "only a published alert can be resolved; cancel a draft instead");
    } else if (v && (!cJSON_IsString(v) || strlen(v->valuestring) > 2000 ||
                     !keng_utf8_valid(v->valuestring, strlen(v->valuestring)))) {
        keng_api_field_error(c, field, "%s must be text of at most 2000 bytes", field);
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(a.doc, "update_note");
        if (v) cJSON_AddStringToObject(a.doc, doc_field, v->valuestring);
        revise_and_fan_out(c, &a, event, status);
    }
    alert_row_free(&a);
    cJSON_Delete(body);
}

void keng_api_alerts_resolve(keng_call *c)
{
    close_alert(c, "resolve", "resolved", "resolution", "resolution");
}

void keng_api_alerts_cancel(keng_call *c)
{
    close_alert(c, "cancel", "cancelled", "reason", "cancel_reason");
}

void keng_api_alerts_preview(keng_call *c)
{
    char channel[32] = "webhook", lang[8] = "vi", event[16] = "alert";
    keng_http_query_param(c->req, "channel", channel, sizeof channel);
    keng_http_query_param(c->req, "lang", lang, sizeof lang);
    keng_http_query_param(c->req, "event", event, sizeof event);
    static const char *const channels[] = {"webhook", "zalo_oa", "telegram", "email", "file", "sms"};
    static const char *const events[] = {"alert", "update", "resolve", "cancel"};
    int ok = 0;
    for (size_t i = 0; i < sizeof channels / sizeof channels[0]; i++) ok |= !strcmp(channel, channels[i]);
    if (!ok) {
        keng_api_field_error(c, "channel", "channel must be webhook, zalo_oa, telegram, email, file or sms");
        return;
    }
    if (strcmp(lang, "vi") && strcmp(lang, "en")) {
        keng_api_field_error(c, "lang", "lang must be vi or en");
        return;
    }
    ok = 0;
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) ok |= !strcmp(event, events[i]);
    if (!ok) {
        keng_api_field_error(c, "event", "event must be alert, update, resolve or cancel");
        return;
    }
    alert_row a;
    if (load_or_404(c, &a)) return;
    cJSON *view = alert_view(&a);
    keng_publish_ctx pc = publish_ctx(c->app);
    keng_buf text;
    keng_buf_init(&text, 0);
    int rc = keng_publish_render(&pc, view, event, lang, channel, "r", NULL, &text);
    if (rc) {
        keng_http_respond_error(c->req, 500, "render_failed", "the message could not be rendered: %s",
                                strerror(-rc));
    } else {
        /* Show the link as a recipient would see it, with a sample token. */
        keng_buf shown;
        keng_buf_init(&shown, 0);
        const char *p = text.data ? text.data : "";
        const char *hit;
        char url[512];
        snprintf(url, sizeof url, "%s/r/%s", c->app->cfg->public_url, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        while ((hit = strstr(p, KENG_LINK_PLACEHOLDER)) != NULL) {
            if (keng_buf_append(&shown, p, (size_t)(hit - p)) || keng_buf_puts(&shown, url)) break;
            p = hit + strlen(KENG_LINK_PLACEHOLDER);
        }
        if (keng_buf_puts(&shown, p)) rc = -ENOMEM;
        cJSON *out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "text", shown.data ? shown.data : "");
        cJSON_AddStringToObject(out, "channel", channel);
        cJSON_AddStringToObject(out, "lang", lang);
        cJSON_AddStringToObject(out, "event", event);
        cJSON_AddNumberToObject(out, "length", (double)keng_tpl_utf8_len(shown.data ? shown.data : "", shown.len));
        keng_buf_free(&shown);
        keng_http_respond_json(c->req, 200, out);
    }
    keng_buf_free(&text);
    cJSON_Delete(view);
    alert_row_free(&a);
}

void keng_api_alerts_deliveries(keng_call *c)
{
    int limit, offset;
    if (keng_api_paging(c, &limit, &offset)) return;
    alert_row a;
    if (load_or_404(c, &a)) return;
    alert_row_free(&a);
    char status[32];
    const char *sf = keng_http_query_param(c->req, "status", status, sizeof status) == 0 ? status : NULL;
    /* Counts and reach from memory, the page in steps: api_live.c. */
    keng_api_deliveries_page(c, sf, limit, offset);
}

void keng_api_alerts_redeliver(keng_call *c)
{
    alert_row a;
    if (load_or_404(c, &a)) return;
    alert_row_free(&a);
    int n = keng_outbox_redeliver(c->app->store, c->m.params[0]);
    if (n < 0) {
        keng_http_respond_error(c->req, 500, "internal", "the deliveries could not be re-queued");
        return;
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "requeued", n);
    audit(c, "alert.redeliver", c->m.params[0], cJSON_Duplicate(d, 1));
    if (c->app->fanout) keng_fanout_kick(c->app->fanout);
    keng_api_alert_changed(c->app, c->m.params[0]);
    keng_http_respond_json(c->req, 200, d);
}
