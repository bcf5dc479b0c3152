/* Personal links: a leader's relay page /l/TOKEN and a household's reply page /r/TOKEN.
 * A token names one recipient of one alert; it is found by its SHA-256 (recipients.rtoken)
 * and stops working for replies and relays when the alert is closed. */
#include "keng/alert_view.h"
#include "keng/app.h"
#include "keng/audit.h"
#include "keng/fanout.h"
#include "keng/log.h"
#include "keng/norm.h"
#include "keng/publish.h"
#include "keng/pubq.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HEADING_MAX_CP 200 /* a page's heading, in code points: a line or two on a phone */

typedef struct link_target {
    char alert_id[64], member_id[128], via_group[128], role[16], state[16];
    char member_name[256], lang[8];
    char status[16];
    int revision;
    int64_t created_at, published_at, updated_at;
    cJSON *doc;
} link_target;

static int valid_token(const char *t)
{
    if (strlen(t) != KENG_TOKEN_LEN) return 0;
    for (const char *p = t; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

static void respond_page(keng_call *c, const char *tpl, cJSON *data, int status);

/* A link that leads nowhere, as a page a phone can show (templates/web/link.html): 404 when the
 * token is unknown (t NULL), 410 when its alert has ended. What to do instead is on the page. */
static void respond_link_page(keng_call *c, char kind, const link_target *t)
{
    cJSON *d = cJSON_CreateObject();
    cJSON *ward = cJSON_AddObjectToObject(d, "ward");
    cJSON_AddStringToObject(ward, "name", c->app->cfg->ward_name ? c->app->cfg->ward_name : "");
    cJSON_AddStringToObject(ward, "phone", c->app->cfg->ward_phone ? c->app->cfg->ward_phone : "");
    cJSON_AddBoolToObject(d, kind == 'l' ? "leader" : "household", 1);
    if (t) {
        cJSON_AddBoolToObject(d, "ended", 1);
        static const char *const why[] = {"resolved", "cancelled", "expired"};
        for (size_t i = 0; i < sizeof why / sizeof why[0]; i++)
            if (strcmp(t->status, why[i]) == 0) cJSON_AddBoolToObject(d, why[i], 1);
    } else {
        cJSON_AddBoolToObject(d, "unknown", 1);
    }
    respond_page(c, "web/link.html.mustache", d, t ? 410 : 404);
}

/* A page request gets HTML unless the client asks for JSON only (an API client, a script). */
static int page_wants_html(keng_call *c)
{
    const char *acc = keng_http_req_header(c->req, "accept");
    return !(acc && strstr(acc, "application/json") && !strstr(acc, "text/html"));
}

/* Finds the recipient behind the token of kind ('r' or 'l'); answers 404 when unknown, as the
 * link page when html, else as a JSON error. */
static int link_find(keng_call *c, char kind, link_target *t, int html)
{
    memset(t, 0, sizeof *t);
    const char *tok = c->m.params[0];
    char hash[65];
    if (!valid_token(tok)) goto unknown;
    keng_sha256_hex(tok, KENG_TOKEN_LEN, hash);
    sqlite3_stmt *s = keng_store_stmt(
        c->app->store,
        "SELECT r.alert_id, r.member_id, r.via_group, r.role, r.state, m.name, m.lang,"
        " a.status, a.revision, a.doc, a.created_at, coalesce(a.published_at, 0), a.updated_at"
        " FROM recipients r JOIN members m ON m.id = r.member_id JOIN alerts a ON a.id = r.alert_id"
        " WHERE r.rtoken = ?1");
    if (!s) goto unknown;
    sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
    int found = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        found = 1;
        snprintf(t->alert_id, sizeof t->alert_id, "%s", keng_store_text(s, 0));
        snprintf(t->member_id, sizeof t->member_id, "%s", keng_store_text(s, 1));
        snprintf(t->via_group, sizeof t->via_group, "%s", keng_store_text(s, 2));
        snprintf(t->role, sizeof t->role, "%s", keng_store_text(s, 3));
        snprintf(t->state, sizeof t->state, "%s", keng_store_text(s, 4));
        snprintf(t->member_name, sizeof t->member_name, "%s", keng_store_text(s, 5));
        snprintf(t->lang, sizeof t->lang, "%s", keng_store_text(s, 6));
        snprintf(t->status, sizeof t->status, "%s", keng_store_text(s, 7));
        t->revision = sqlite3_column_int(s, 8);
        t->doc = cJSON_Parse(keng_store_text(s, 9));
        t->created_at = sqlite3_column_int64(s, 10);
        t->published_at = sqlite3_column_int64(s, 11);
        t->updated_at = sqlite3_column_int64(s, 12);
    }
    sqlite3_reset(s);
    /* The token must be of the kind of link it is used as (a reply token is no relay token). */
    char expect[KENG_TOKEN_LEN + 1];
    if (found) {
        keng_auth_link_token(c->app->secret, kind, t->alert_id, t->member_id, expect);
        if (t->doc && keng_auth_equal(expect, tok)) return 0;
    }
    cJSON_Delete(t->doc);
    t->doc = NULL;
unknown:
    if (html)
        respond_link_page(c, kind, NULL);
    else
        keng_http_respond_error(c->req, 404, "unknown_link",
                                "this link is not valid; use the link from your message");
    return -1;
}

static int is_closed(const link_target *t)
{
    return strcmp(t->status, "published") != 0;
}

/* The page's heading is the e-mail's subject line (partials/subject_<kind>_<lang>): one wording
 * per kind for every channel, and the kinds without a title (a missing elder, a vehicle, a scam)
 * get one too. Each language is rendered over data of its own, so that the labels inside
 * ("xe máy" / "motorbike") match the sentence around them whatever the recipient's language.
 * Plain text here: the page escapes it once, like any other value. */
static void add_heading(keng_call *c, const cJSON *view, cJSON *d)
{
    static const char *const langs[] = {"vi", "en"};
    cJSON *h = cJSON_CreateObject();
    for (size_t i = 0; i < sizeof langs / sizeof langs[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "subject_%s_%s", keng_alert_tpl_kind(view), langs[i]);
        const keng_tpl *tpl = keng_tplset_partial(c->app->templates, name);
        if (!tpl) continue;
        keng_tpl_ctx tc = {.event = "alert",
                           .lang = langs[i],
                           .ward_name = c->app->cfg->ward_name,
                           .ward_phone = c->app->cfg->ward_phone,
                           .public_url = c->app->cfg->public_url,
                           .tz_offset_min = c->app->cfg->tz_offset_min,
                           .link_kind = ""};
        cJSON *ld = keng_alert_tpl_data(view, &tc);
        keng_buf b;
        keng_buf_init(&b, 0);
        int rc =
            keng_tpl_render_ex(tpl, ld, keng_tplset_partial, c->app->templates, KENG_TPL_PLAIN, &b);
        cJSON_Delete(ld);
        /* A heading is one line: an edited partial's trailing newline goes, an essay is cut. */
        while (!rc && b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == ' '))
            b.data[--b.len] = '\0';
        if (!rc && b.len && keng_tpl_utf8_truncate(&b, HEADING_MAX_CP) >= 0)
            cJSON_AddStringToObject(h, langs[i], b.data);
        keng_buf_free(&b);
    }
    /* Without a Vietnamese heading the page falls back to the alert's title (page_head). */
    if (cJSON_GetObjectItemCaseSensitive(h, "vi"))
        cJSON_AddItemToObject(d, "heading", h);
    else
        cJSON_Delete(h);
}

/* The data of a link's pages: the alert as its messages see it, the heading, the recipient's
 * name; and the message text itself unless the page only has to say which alert it is about. */
static cJSON *page_data(keng_call *c, const link_target *t, int with_text)
{
    keng_alert_meta m = {t->alert_id,   t->status,       t->revision,
                         t->created_at, t->published_at, t->updated_at};
    cJSON *view = keng_alert_view(&m, t->doc);
    const char *lang = strcmp(t->lang, "en") == 0 ? "en" : "vi";
    keng_tpl_ctx tc = {.event = "alert",
                       .lang = lang,
                       .ward_name = c->app->cfg->ward_name,
                       .ward_phone = c->app->cfg->ward_phone,
                       .public_url = c->app->cfg->public_url,
                       .tz_offset_min = c->app->cfg->tz_offset_min,
                       .link_kind = ""};
    cJSON *d = keng_alert_tpl_data(view, &tc);
    add_heading(c, view, d);
    if (with_text) {
        keng_publish_ctx pc = {c->app->store, c->app->templates, c->app->cfg, c->app->secret,
                               keng_time_now()};
        keng_buf text;
        keng_buf_init(&text, 0);
        if (keng_publish_render(&pc, view, "alert", lang, NULL, "", NULL, &text) == 0 && text.data)
            cJSON_AddStringToObject(d, "text", text.data);
        keng_buf_free(&text);
    }
    cJSON_Delete(view);
    cJSON *rcp = cJSON_GetObjectItemCaseSensitive(d, "recipient");
    cJSON_AddStringToObject(rcp, "name", t->member_name);
    cJSON_AddBoolToObject(d, "closed", is_closed(t));
    return d;
}

/* Renders tpl over data (taken) and answers it with status. Non-zero, having answered nothing,
 * when the page cannot be rendered. */
static int try_page(keng_call *c, const char *tpl, cJSON *data, int status)
{
    keng_buf out;
    keng_buf_init(&out, 4 << 20);
    int rc = keng_tplset_render_file(c->app->templates, tpl, data, &out);
    cJSON_Delete(data);
    if (rc) {
        keng_buf_free(&out);
        return rc;
    }
    keng_http_add_header(c->req, "Cache-Control", "no-store");
    keng_http_add_header(c->req, "Referrer-Policy", "no-referrer");
    keng_http_add_header(c->req, "X-Content-Type-Options", "nosniff");
    size_t n = out.len;
    keng_http_respond_take(c->req, status, "text/html; charset=utf-8", keng_buf_steal(&out), n);
    return 0;
}

static void respond_page(keng_call *c, const char *tpl, cJSON *data, int status)
{
    if (try_page(c, tpl, data, status))
        keng_http_respond_error(c->req, 500, "render_failed", "the page could not be rendered");
}

/* A post to a link that cannot be done as asked. An API client gets the JSON error of DESIGN §8
 * (invalid_field naming the field, when field is set); a form from the page gets a small page
 * (templates/web/form_error.html) with the same status, saying what happened, Vietnamese first,
 * and leading back: a leader who pressed twice must not be left looking at raw JSON. */
typedef struct link_err {
    int status;
    const char *code, *field, *message; /* the JSON answer */
    const char *page_case;              /* the page's flag under "error" */
} link_err;

/* extra (taken, may be NULL): more members for the page's data. */
static void respond_link_error(keng_call *c, int html, char kind, const link_target *t,
                               const link_err *e, cJSON *extra)
{
    if (html) {
        cJSON *d = page_data(c, t, 0);
        cJSON_AddBoolToObject(cJSON_AddObjectToObject(d, "error"), e->page_case, 1);
        char back[KENG_ROUTE_PARAM_LEN + 8];
        snprintf(back, sizeof back, "/%c/%s", kind, c->m.params[0]);
        cJSON_AddStringToObject(d, "back_url", back);
        cJSON_AddBoolToObject(d, kind == 'l' ? "leader" : "household", 1);
        while (extra && extra->child) {
            cJSON *it = cJSON_DetachItemViaPointer(extra, extra->child);
            cJSON_AddItemToObject(d, it->string, it);
        }
        cJSON_Delete(extra);
        /* A templates directory from before this page keeps the JSON answer, not a 500. */
        if (try_page(c, "web/form_error.html.mustache", d, e->status) == 0) return;
    } else {
        cJSON_Delete(extra);
    }
    if (e->field)
        keng_api_field_error(c, e->field, "%s", e->message);
    else
        keng_http_respond_error(c->req, e->status, e->code, "%s", e->message);
}

/* ---- reply page ---- */

void keng_api_reply_page(keng_call *c)
{
    link_target t;
    int html = page_wants_html(c);
    if (link_find(c, 'r', &t, html)) return;
    if (is_closed(&t)) {
        if (html)
            respond_link_page(c, 'r', &t);
        else
            keng_http_respond_error(c->req, 410, "alert_closed",
                                    "this alert is closed; thank you, no more replies are needed");
        cJSON_Delete(t.doc);
        return;
    }
    sqlite3_stmt *s =
        keng_store_stmt(c->app->store, "UPDATE recipients SET seen_at = ?3 WHERE alert_id = ?1"
                                       " AND member_id = ?2 AND seen_at IS NULL");
    if (s) {
        sqlite3_bind_text(s, 1, t.alert_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, t.member_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 3, keng_time_now());
        sqlite3_step(s);
        sqlite3_reset(s);
        if (sqlite3_changes(keng_store_db(c->app->store)) > 0)
            keng_api_alert_changed(c->app, t.alert_id);
    }
    cJSON *d = page_data(c, &t, 1);
    char url[KENG_ROUTE_PARAM_LEN + 64];
    snprintf(url, sizeof url, "/r/%s/replies", c->m.params[0]);
    cJSON_AddStringToObject(d, "reply_post_url", url);
    char q[16];
    cJSON_AddBoolToObject(d, "replied", keng_http_query_param(c->req, "sent", q, sizeof q) == 0);
    respond_page(c, "web/reply.html.mustache", d, 200);
    cJSON_Delete(t.doc);
}

/* A plain form post (application/x-www-form-urlencoded) as a JSON object of strings. */
static cJSON *form_body(keng_call *c)
{
    size_t len;
    const char *b = keng_http_req_body(c->req, &len);
    cJSON *o = cJSON_CreateObject();
    const char *p = b, *end = b + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(seg_end - p));
        char key[64], *val = malloc((size_t)(seg_end - p) + 1);
        if (!val) break;
        if (eq && keng_http_urldecode(p, (size_t)(eq - p), key, sizeof key, 1) == 0 &&
            keng_http_urldecode(eq + 1, (size_t)(seg_end - eq - 1), val, (size_t)(seg_end - p) + 1,
                                1) == 0) {
            cJSON_DeleteItemFromObjectCaseSensitive(o, key);
            cJSON_AddStringToObject(o, key, val);
        }
        free(val);
        p = seg_end + 1;
    }
    return o;
}

static int is_form(keng_call *c)
{
    const char *ct = keng_http_req_header(c->req, "content-type");
    return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

/* After a form on the link's page: back to the page (303), with query (may be ""). */
static void see_other(keng_call *c, char kind, const char *query)
{
    char loc[KENG_ROUTE_PARAM_LEN + 64];
    snprintf(loc, sizeof loc, "/%c/%s%s", kind, c->m.params[0], query);
    keng_http_add_header(c->req, "Location", loc);
    keng_http_respond(c->req, 303, "text/plain; charset=utf-8", "", 0);
}

void keng_api_link_form_get(keng_call *c)
{
    /* The path says which link: /r/TOKEN/replies or /l/TOKEN/relay. The page itself checks
     * the token; this only leads there. */
    see_other(c, keng_http_req_path(c->req)[1] == 'l' ? 'l' : 'r', "");
}

/* A form post that asks for an answer a person can read: errors go back as a page. A script
 * posting a form with "Accept: application/json" keeps JSON, as for the pages themselves. */
static int form_wants_html(keng_call *c)
{
    return is_form(c) && page_wants_html(c);
}

/* Characters (code points): what a page's maxlength counts, and a person too (a Vietnamese
 * letter with its marks is two or three bytes). */
static size_t utf8_chars(const char *s)
{
    return keng_tpl_utf8_len(s, strlen(s));
}

/* A text field a person typed: valid UTF-8 of at most max characters. */
static int text_ok(const cJSON *v, size_t max)
{
    return cJSON_IsString(v) && keng_utf8_valid(v->valuestring, strlen(v->valuestring)) &&
           utf8_chars(v->valuestring) <= max;
}

static int blank(const char *s)
{
    for (; *s; s++)
        if (!strchr(" \t\r\n", *s)) return 0;
    return 1;
}

void keng_api_reply_post(keng_call *c)
{
    int form = is_form(c), html = form_wants_html(c);
    cJSON *body = form ? form_body(c) : keng_api_json_body(c);
    if (!body) return;
    link_target t;
    if (link_find(c, 'r', &t, html)) {
        cJSON_Delete(body);
        return;
    }
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "kind"));
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(body, "text");
    link_err e = {400, "invalid_field", "text", NULL, NULL};
    if (is_closed(&t) && html) {
        respond_link_page(c, 'r', &t);
    } else if (is_closed(&t)) {
        keng_http_respond_error(c->req, 410, "alert_closed",
                                "this alert is closed; thank you, no more replies are needed");
    } else if (!kind ||
               (strcmp(kind, "tip") && strcmp(kind, "nothing_seen") && strcmp(kind, "footage"))) {
        e.field = "kind";
        e.message = "kind must be tip, nothing_seen or footage";
        e.page_case = "kind_invalid";
        respond_link_error(c, html, 'r', &t, &e, NULL);
    } else if (text && !text_ok(text, 4000)) {
        e.message = "text must be at most 4000 characters of UTF-8";
        e.page_case = cJSON_IsString(text) && utf8_chars(text->valuestring) > 4000 ? "text_too_long"
                                                                                   : "text_invalid";
        respond_link_error(c, html, 'r', &t, &e, NULL);
    } else if (!strcmp(kind, "tip") && (!text || blank(text->valuestring))) {
        /* Blank counts as empty: a phone that ignores "required" sends the textarea as typed. */
        e.message = "a tip needs some text: what, where, when";
        e.page_case = "tip_empty";
        respond_link_error(c, html, 'r', &t, &e, NULL);
    } else {
        keng_store *st = c->app->store;
        int64_t now = keng_time_now(), id = 0;
        int rc = keng_store_begin(st);
        sqlite3_stmt *s = keng_store_stmt(st, "INSERT INTO replies(alert_id, member_id, kind, text,"
                                              " created_at) VALUES (?,?,?,?,?)");
        if (!rc && s) {
            sqlite3_bind_text(s, 1, t.alert_id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(s, 2, t.member_id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(s, 3, kind, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(s, 4, text ? text->valuestring : "", -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(s, 5, now);
            rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -EIO;
            sqlite3_reset(s);
            id = sqlite3_last_insert_rowid(keng_store_db(st));
        }
        s = keng_store_stmt(
            st, "UPDATE recipients SET replied_at = ?3,"
                " seen_at = coalesce(seen_at, ?3) WHERE alert_id = ?1 AND member_id = ?2");
        if (!rc && s) {
            sqlite3_bind_text(s, 1, t.alert_id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(s, 2, t.member_id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(s, 3, now);
            rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -EIO;
            sqlite3_reset(s);
        }
        if (!rc)
            rc = keng_store_commit(st);
        else
            keng_store_rollback(st);
        if (rc) {
            link_err ie = {500, "internal", NULL, "your reply could not be stored; try again",
                           "internal"};
            respond_link_error(c, html, 'r', &t, &ie, NULL);
        } else {
            /* The audit names the reply, not who sent it: sources stay confidential. */
            cJSON *d = cJSON_CreateObject();
            cJSON_AddNumberToObject(d, "reply", (double)id);
            cJSON_AddStringToObject(d, "kind", kind);
            keng_audit_append(st, "household", "reply.create", t.alert_id, d);
            keng_api_alert_changed(c->app, t.alert_id);
            if (form) {
                see_other(c, 'r', "?sent=1");
            } else {
                cJSON *out = cJSON_CreateObject();
                cJSON_AddNumberToObject(out, "id", (double)id);
                cJSON_AddStringToObject(out, "kind", kind);
                cJSON_AddStringToObject(out, "message", "Cảm ơn bạn! / Thank you!");
                keng_http_respond_json(c->req, 201, out);
            }
        }
    }
    cJSON_Delete(t.doc);
    cJSON_Delete(body);
}

/* ---- leader relay ---- */

static int household_count(keng_store *st, const char *alert_id, const char *leader)
{
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT count(DISTINCT j.member_id) FROM relays l JOIN memberships j"
            " ON j.group_id = l.group_id WHERE l.alert_id = ?1 AND l.leader_id = ?2"
            " AND l.state = 'waiting' AND j.member_id <> ?2 AND NOT EXISTS (SELECT 1 FROM"
            " recipients x WHERE x.alert_id = ?1 AND x.member_id = j.member_id)");
    if (!s) return 0;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, leader, -1, SQLITE_TRANSIENT);
    int n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_reset(s);
    return n;
}

/* When the leader's groups were relayed (0 if never), whether any is still waiting, and whether
 * the last relay was keng's own after the relay timeout rather than the leader's. */
static int64_t relayed_at(keng_store *st, const char *alert_id, const char *leader, int *waiting,
                          int *by_keng)
{
    /* SQLite takes the bare column relayed_by from the row that holds max(relayed_at). */
    sqlite3_stmt *s =
        keng_store_stmt(st, "SELECT max(relayed_at), relayed_by, sum(state = 'waiting') FROM relays"
                            " WHERE alert_id = ?1 AND leader_id = ?2");
    int64_t at = 0;
    *waiting = 0;
    *by_keng = 0;
    if (!s) return 0;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, leader, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) == SQLITE_ROW) {
        at = sqlite3_column_int64(s, 0);
        *by_keng = strcmp(keng_store_text(s, 1), "keng") == 0;
        *waiting = sqlite3_column_int(s, 2);
    }
    sqlite3_reset(s);
    return at;
}

/* relayed_at_local and relayed_auto for the relay pages, once nothing is left to relay. */
static void add_relayed(keng_call *c, const link_target *t, cJSON *d, int *waiting)
{
    int by_keng;
    int64_t at = relayed_at(c->app->store, t->alert_id, t->member_id, waiting, &by_keng);
    if (!at || *waiting) return;
    char local[KENG_TIME_LOCAL_MAX];
    if (keng_time_format_local(at, c->app->cfg->tz_offset_min, local, sizeof local) == 0)
        cJSON_AddStringToObject(d, "relayed_at_local", local);
    if (by_keng) cJSON_AddBoolToObject(d, "relayed_auto", 1);
}

void keng_api_relay_page(keng_call *c)
{
    link_target t;
    int html = page_wants_html(c);
    if (link_find(c, 'l', &t, html)) return;
    if (is_closed(&t)) {
        if (html)
            respond_link_page(c, 'l', &t);
        else
            keng_http_respond_error(c->req, 410, "alert_closed",
                                    "this alert is closed; nothing to pass on");
        cJSON_Delete(t.doc);
        return;
    }
    cJSON *d = page_data(c, &t, 1);
    char url[KENG_ROUTE_PARAM_LEN + 64];
    snprintf(url, sizeof url, "/l/%s/relay", c->m.params[0]);
    cJSON_AddStringToObject(d, "relay_post_url", url);
    cJSON_AddNumberToObject(d, "household_count",
                            household_count(c->app->store, t.alert_id, t.member_id));
    int waiting;
    add_relayed(c, &t, d, &waiting);
    respond_page(c, "web/relay.html.mustache", d, 200);
    cJSON_Delete(t.doc);
}

/* Relays every waiting group of a leader (or, from the timeout, one group), in one
 * transaction: a publish job each, whose ids go to *jobs (malloc'd; the caller frees it). The
 * number of groups, or a negative errno. The jobs write the audit lines when done. */
int keng_api_relay_groups(keng_app *app, const char *alert_id, const char *leader,
                          const char *only_group, const char *note, const char *by, int64_t **jobs)
{
    *jobs = NULL;
    keng_store *st = app->store;
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT group_id FROM relays WHERE alert_id = ?1 AND state = 'waiting'"
            " AND (?2 IS NULL OR leader_id = ?2) AND (?3 IS NULL OR group_id = ?3)");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    if (leader) sqlite3_bind_text(s, 2, leader, -1, SQLITE_TRANSIENT);
    if (only_group) sqlite3_bind_text(s, 3, only_group, -1, SQLITE_TRANSIENT);
    cJSON *groups = cJSON_CreateArray();
    while (sqlite3_step(s) == SQLITE_ROW)
        cJSON_AddItemToArray(groups, cJSON_CreateString(keng_store_text(s, 0)));
    sqlite3_reset(s);
    int rc = 0, done = 0;
    s = keng_store_stmt(st, "SELECT status, revision, doc, created_at, coalesce(published_at, 0),"
                            " updated_at FROM alerts WHERE id = ?");
    cJSON *view = NULL;
    if (s) {
        sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) == SQLITE_ROW) {
            cJSON *doc = cJSON_Parse(keng_store_text(s, 2));
            char status[16];
            snprintf(status, sizeof status, "%s", keng_store_text(s, 0));
            keng_alert_meta m = {alert_id,
                                 status,
                                 sqlite3_column_int(s, 1),
                                 sqlite3_column_int64(s, 3),
                                 sqlite3_column_int64(s, 4),
                                 sqlite3_column_int64(s, 5)};
            if (doc) view = keng_alert_view(&m, doc);
            cJSON_Delete(doc);
        }
        sqlite3_reset(s);
    }
    if (!view) rc = -ENOENT;
    int revision =
        view ? (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(view, "revision")) : 0;
    keng_publish_ctx pc = {st, app->templates, app->cfg, app->secret, keng_time_now()};
    int n = cJSON_GetArraySize(groups);
    if (!rc && n > 0 && !(*jobs = calloc((size_t)n, sizeof **jobs))) rc = -ENOMEM;
    if (!rc && n > 0) rc = keng_store_begin(st);
    for (const cJSON *g = groups->child; g && !rc; g = g->next) {
        int r = keng_publish_begin_relay(&pc, alert_id, g->valuestring, revision, view, note, by,
                                         &(*jobs)[done]);
        if (r == -EALREADY) continue;
        if (r)
            rc = r;
        else
            done++;
    }
    if (n > 0 && *jobs) {
        if (!rc)
            rc = keng_store_commit(st);
        else
            keng_store_rollback(st);
    }
    cJSON_Delete(groups);
    cJSON_Delete(view);
    if (rc) {
        free(*jobs);
        *jobs = NULL;
        return rc;
    }
    if (done) {
        keng_pubq_kick(app->pubq);
        keng_api_alert_changed(app, alert_id);
    }
    return done;
}

/* c->state: the number of groups relayed, or -(n + 1) when the leader used the page's form. */
static void relay_answer(keng_call *c, int rc, const keng_publish_stats *sum)
{
    intptr_t v = (intptr_t)c->state;
    c->state = NULL;
    if (rc) {
        char why[256];
        snprintf(why, sizeof why,
                 "the relay is stored; writing the households' messages is held up (%s) and goes "
                 "on by itself",
                 strerror(-rc));
        link_err e = {503, "relay_delayed", NULL, why, "relay_delayed"};
        link_target t;
        memset(&t, 0, sizeof t);
        int html = v < 0 && form_wants_html(c);
        /* The page names the alert: look the link up again (it answers itself if it is gone). */
        if (html && link_find(c, 'l', &t, 1)) return;
        respond_link_error(c, html, 'l', &t, &e, NULL);
        if (html) cJSON_Delete(t.doc);
    } else if (v < 0) {
        see_other(c, 'l', "");
    } else {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "groups", (double)v);
        cJSON_AddNumberToObject(out, "households", sum->recipients);
        keng_http_respond_json(c->req, 200, out);
    }
}

void keng_api_relay_post(keng_call *c)
{
    int form = is_form(c), html = form_wants_html(c);
    size_t len;
    keng_http_req_body(c->req, &len);
    cJSON *body = form ? form_body(c) : len ? keng_api_json_body(c) : cJSON_CreateObject();
    if (!body) return;
    link_target t;
    if (link_find(c, 'l', &t, html)) {
        cJSON_Delete(body);
        return;
    }
    const cJSON *note = cJSON_GetObjectItemCaseSensitive(body, "note");
    int waiting;
    cJSON *relayed = cJSON_CreateObject();
    add_relayed(c, &t, relayed, &waiting);
    if (is_closed(&t) && html) {
        respond_link_page(c, 'l', &t);
    } else if (is_closed(&t)) {
        keng_http_respond_error(c->req, 410, "alert_closed",
                                "this alert is closed; nothing to pass on");
    } else if (note && !text_ok(note, 1000)) {
        link_err e = {400, "invalid_field", "note", "note must be at most 1000 characters of text",
                      cJSON_IsString(note) && utf8_chars(note->valuestring) > 1000
                          ? "note_too_long"
                          : "note_invalid"};
        respond_link_error(c, html, 'l', &t, &e, NULL);
    } else if (!waiting) {
        /* Pressed twice, or keng relayed after the timeout: the page says when, and by whom. */
        link_err e = {409, "already_relayed", NULL,
                      "this alert was passed on already; nothing more to do", "already_relayed"};
        respond_link_error(c, html, 'l', &t, &e, relayed);
        relayed = NULL;
    } else {
        char by[200];
        snprintf(by, sizeof by, "leader:%s", t.member_id);
        int64_t *jobs = NULL;
        int rc = keng_api_relay_groups(c->app, t.alert_id, t.member_id, NULL,
                                       note ? note->valuestring : NULL, by, &jobs);
        if (rc < 0) {
            link_err e = {500, "internal", NULL, "the relay could not be stored; try again",
                          "internal"};
            respond_link_error(c, html, 'l', &t, &e, NULL);
        } else {
            /* Answered once the households' messages are in the outbox. */
            c->state = (void *)(intptr_t)(form ? -rc - 1 : rc);
            keng_api_after_jobs(c, jobs, rc, relay_answer);
        }
        free(jobs);
    }
    cJSON_Delete(relayed);
    cJSON_Delete(t.doc);
    cJSON_Delete(body);
}
