#include "keng/publish.h"

#include "keng/alert_view.h"
#include "keng/audit.h"
#include "keng/auth.h"
#include "keng/log.h"
#include "keng/outbox.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sql_link_hash(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const unsigned char *secret = sqlite3_user_data(ctx);
    const char *kind = (const char *)sqlite3_value_text(argv[0]);
    const char *alert = (const char *)sqlite3_value_text(argv[1]);
    const char *member = (const char *)sqlite3_value_text(argv[2]);
    if (!kind || !alert || !member) {
        sqlite3_result_null(ctx);
        return;
    }
    char tok[KENG_TOKEN_LEN + 1], hash[65];
    keng_auth_link_token(secret, kind[0], alert, member, tok);
    keng_sha256_hex(tok, KENG_TOKEN_LEN, hash);
    sqlite3_result_text(ctx, hash, 64, SQLITE_TRANSIENT);
}

int keng_publish_init(keng_store *st, const unsigned char secret[32])
{
    int rc = sqlite3_create_function(keng_store_db(st), "keng_link_hash", 3,
                                     SQLITE_UTF8 | SQLITE_DETERMINISTIC, (void *)secret,
                                     sql_link_hash, NULL, NULL);
    if (rc != SQLITE_OK) return keng_store_errno(rc);
    return keng_store_exec(st, "CREATE TEMP TABLE IF NOT EXISTS tg (id TEXT PRIMARY KEY,"
                               " relay TEXT, leader TEXT, relay_timeout INTEGER, channels TEXT)");
}

int64_t keng_publish_not_before(const keng_config *cfg, const char *urgency, int64_t now)
{
    if (!urgency || !strcmp(urgency, "immediate")) return 0;
    int s = cfg->quiet_start_min, e = cfg->quiet_end_min;
    if (s < 0 || e < 0 || s == e) return 0;
    int64_t local = now + (int64_t)cfg->tz_offset_min * 60;
    int64_t day = local - (local % 86400 + 86400) % 86400;
    int minute = (int)(((local % 86400) + 86400) % 86400 / 60);
    int inside = s < e ? (minute >= s && minute < e) : (minute >= s || minute < e);
    if (!inside) return 0;
    int64_t end_local = day + (int64_t)e * 60;
    if (end_local <= local) end_local += 86400;
    return end_local - (int64_t)cfg->tz_offset_min * 60;
}

int64_t keng_publish_view_not_before(const keng_publish_ctx *c, const cJSON *view)
{
    const char *urgency = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(view, "urgency"));
    return keng_publish_not_before(c->cfg, urgency, c->now);
}

/* Ends the transaction begun by the caller: committed when rc is 0, else rolled back. */
static int tx_end(keng_store *st, int rc)
{
    if (rc) {
        keng_store_rollback(st);
        return rc;
    }
    return keng_store_commit(st);
}

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : keng_store_errno(rc);
}

static const char *tpl_channel(const char *channel)
{
    /* webhook and file carry the default text; the others have length-bound variants. */
    if (!strcmp(channel, "telegram") || !strcmp(channel, "zalo_oa") || !strcmp(channel, "email") ||
        !strcmp(channel, "sms"))
        return channel;
    return NULL;
}

/* The data a message template is rendered over (templates/README.md). */
static cJSON *message_data(const keng_publish_ctx *c, const cJSON *view, const char *event,
                           const char *lang, const char *link_kind, const char *note)
{
    keng_tpl_ctx tc = {
        .event = event,
        .lang = lang,
        .ward_name = c->cfg->ward_name,
        .ward_phone = c->cfg->ward_phone,
        .public_url = c->cfg->public_url,
        .tz_offset_min = c->cfg->tz_offset_min,
        .link_kind = link_kind,
        .leader_note = note,
    };
    return keng_alert_tpl_data(view, &tc);
}

int keng_publish_render(const keng_publish_ctx *c, const cJSON *view, const char *event,
                        const char *lang, const char *channel, const char *link_kind,
                        const char *note, keng_buf *out)
{
    cJSON *data = message_data(c, view, event, lang, link_kind, note);
    if (!data) return -ENOMEM;
    int rc = keng_tplset_render(c->templates, keng_alert_tpl_kind(view), event, lang,
                                channel ? tpl_channel(channel) : NULL, data, out);
    cJSON_Delete(data);
    return rc;
}

/* The HTML part of an e-mail (msg/<kind>.<event>.<lang>.email.html). Shared by every recipient
 * of the message: the link is KENG_LINK_PLACEHOLDER and the first photo's src is
 * KENG_PHOTO_PLACEHOLDER, which the e-mail channel turns into the recipient's link and the
 * inline thumbnail's cid: (or drops with its <img> when the thumbnail cannot be read). Leaves
 * out empty when the language has a text but no e-mail HTML: the channel then builds the HTML
 * from the text. */
/* subject: the message's (message_subject), the HTML's <title> (data "subject"). */
static int render_email_html(const keng_publish_ctx *c, const cJSON *view, const char *event,
                             const char *lang, const char *link_kind, const char *note,
                             const char *subject, keng_buf *out)
{
    cJSON *data = message_data(c, view, event, lang, link_kind, note);
    if (!data) return -ENOMEM;
    int rc = cJSON_AddStringToObject(data, "subject", subject) ? 0 : -ENOMEM;
    if (!rc && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(data, "has_photos")) &&
        !cJSON_AddStringToObject(data, "photo_src", KENG_PHOTO_PLACEHOLDER))
        rc = -ENOMEM;
    if (!rc)
        rc = keng_tplset_render_html(c->templates, keng_alert_tpl_kind(view), event, lang, data,
                                     out);
    cJSON_Delete(data);
    return rc == -ENOENT ? 0 : rc;
}

/* A message's subject: its first line that is not blank (the headline, which says what
 * happened: "🔴 KHẨN – TÌM NGƯỜI ĐI LẠC: …", "✅ ĐÃ TÌM THẤY – …"), else the alert's title. At
 * most 200 bytes, cut on a character boundary. */
static void message_subject(const cJSON *view, const keng_buf *text, char *out, size_t outlen)
{
    const char *p = text->data ? text->data : "";
    p += strspn(p, " \t\r\n");
    size_t n = strcspn(p, "\r\n");
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0) {
        p = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(view, "title"));
        if (!p) p = "";
        n = strlen(p);
    }
    if (n > 200) {
        n = 200;
        while (n > 0 && ((unsigned char)p[n] & 0xC0) == 0x80)
            n--;
    }
    snprintf(out, outlen, "%.*s", (int)n, p);
}

/* Renders and stores one message row; *id is its rowid. */
static int message_insert(const keng_publish_ctx *c, const char *alert_id, int revision,
                          const char *event, const cJSON *view, const char *lang,
                          const char *channel, const char *link_kind, const char *note, int64_t *id)
{
    keng_buf text;
    keng_buf_init(&text, 0);
    int rc = keng_publish_render(c, view, event, lang, channel, link_kind, note, &text);
    if (rc) {
        keng_error("publish: rendering %s/%s/%s/%s failed (%s)", keng_alert_tpl_kind(view), event,
                   lang, channel, strerror(-rc));
        keng_buf_free(&text);
        return rc;
    }
    char subject[256];
    message_subject(view, &text, subject, sizeof subject);
    keng_buf html;
    keng_buf_init(&html, 0);
    if (!strcmp(channel, "email") &&
        (rc = render_email_html(c, view, event, lang, link_kind, note, subject, &html))) {
        keng_error("publish: rendering the e-mail HTML %s/%s/%s failed (%s)",
                   keng_alert_tpl_kind(view), event, lang, strerror(-rc));
        keng_buf_free(&html);
        keng_buf_free(&text);
        return rc;
    }
    cJSON *pub = cJSON_Duplicate(view, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(pub, "targets");
    char *alert_json = cJSON_PrintUnformatted(pub);
    cJSON_Delete(pub);
    cJSON *urls = keng_alert_photo_urls(view, c->cfg->public_url);
    char *photos = cJSON_PrintUnformatted(urls);
    cJSON_Delete(urls);
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "INSERT INTO messages(alert_id, revision, event, lang, channel, link_kind, text,"
               " subject, alert_json, photos, note, html) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
               " ON CONFLICT DO UPDATE SET text = excluded.text, subject = excluded.subject,"
               " html = excluded.html RETURNING id");
    rc = -EIO;
    if (s && alert_json && photos) {
        sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(s, 2, revision);
        sqlite3_bind_text(s, 3, event, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, lang, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 5, channel, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 6, link_kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 7, text.data ? text.data : "", (int)text.len, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 8, subject, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 9, alert_json, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 10, photos, -1, SQLITE_TRANSIENT);
        if (note) sqlite3_bind_text(s, 11, note, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 12, html.data ? html.data : "", (int)html.len, SQLITE_TRANSIENT);
        int sr = sqlite3_step(s);
        if (sr == SQLITE_ROW) {
            *id = sqlite3_column_int64(s, 0);
            rc = 0;
        } else {
            rc = keng_store_errno(sr);
        }
        sqlite3_reset(s);
    }
    cJSON_free(alert_json);
    cJSON_free(photos);
    keng_buf_free(&html);
    keng_buf_free(&text);
    return rc;
}

/* Which recipients of an alert a step works on: those that came through via_group (or all when
 * NULL) whose member id is in (lo, hi]. hi is RANGE_END past the last chunk: a bound the index
 * can use, where "or no bound" would make each chunk read to the end of the alert's rows. */
typedef struct range {
    const char *via_group, *lo, *hi;
} range;

/* Greater than any member id: ids are UTF-8, whose bytes never reach 0xff (memcmp order). */
#define RANGE_END "\xff"

static const range ALL_RECIPIENTS = {NULL, "", RANGE_END};

/* The recipients of a range, as SQL: ?1 alert, ?7 group, ?9 lo, ?10 hi. With a group, the
 * group's index (alert, via_group, state, member) gives the range; without, the primary key.
 * The planner, without statistics, takes the primary key's range for the narrower one, and
 * then reads every recipient of the alert for each small group: the index is named. */
#define FROM_ALL "recipients r"
#define FROM_GROUP "recipients r INDEXED BY recipients_group"
#define RANGE_ALL                                                                                  \
    " r.alert_id = ?1 AND r.member_id > ?9 AND r.member_id <= ?10 AND r.state = 'sent'"
#define RANGE_GROUP                                                                                \
    " r.alert_id = ?1 AND r.via_group = ?7 AND r.state = 'sent' AND r.member_id > ?9"              \
    " AND r.member_id <= ?10"

static void bind_range(sqlite3_stmt *s, const char *alert_id, const range *r)
{
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    if (r->via_group) sqlite3_bind_text(s, 7, r->via_group, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 9, r->lo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 10, r->hi, -1, SQLITE_TRANSIENT);
}

/* An existing message row for the combination, else rendered and stored now. */
static int message_ensure(const keng_publish_ctx *c, const char *alert_id, int revision,
                          const char *event, const cJSON *view, const char *lang,
                          const char *channel, const char *link_kind, const char *note)
{
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "SELECT 1 FROM messages WHERE alert_id = ?1 AND revision = ?2 AND event = ?3"
               " AND lang = ?4 AND channel = ?5 AND link_kind = ?6 AND note IS ?7");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, revision);
    sqlite3_bind_text(s, 3, event, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, lang, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 6, link_kind, -1, SQLITE_STATIC);
    if (note) sqlite3_bind_text(s, 7, note, -1, SQLITE_TRANSIENT);
    int have = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    if (have) return 0;
    int64_t id;
    return message_insert(c, alert_id, revision, event, view, lang, channel, link_kind, note, &id);
}

/* One message per (lang, channel, link kind) among the recipients in r. */
static int messages_for(const keng_publish_ctx *c, const char *alert_id, int revision,
                        const char *event, const cJSON *view, const range *r, const char *note)
{
#define MESSAGES_SQL(from, where)                                                                  \
    "SELECT DISTINCT m.lang, json_extract(m.contacts, '$[0].type'),"                               \
    " CASE r.role WHEN 'leader' THEN 'l' ELSE 'r' END"                                             \
    " FROM " from " JOIN members m ON m.id = r.member_id WHERE " where                             \
    " AND json_array_length(m.contacts) > 0"
    sqlite3_stmt *s = keng_store_stmt(c->st, r->via_group ? MESSAGES_SQL(FROM_GROUP, RANGE_GROUP)
                                                          : MESSAGES_SQL(FROM_ALL, RANGE_ALL));
    if (!s) return -EIO;
    bind_range(s, alert_id, r);
    struct {
        char lang[8], channel[32], link[2];
    } combos[64];
    int n = 0, rc = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (n == 64) { /* 2 languages × 5 channels × 2 link kinds is 20: this is a broken ward */
            keng_error("publish %s: more than 64 language × channel × link combinations; the"
                       " rest get no message",
                       alert_id);
            break;
        }
        snprintf(combos[n].lang, sizeof combos[n].lang, "%s", keng_store_text(s, 0));
        snprintf(combos[n].channel, sizeof combos[n].channel, "%s", keng_store_text(s, 1));
        snprintf(combos[n].link, sizeof combos[n].link, "%s", keng_store_text(s, 2));
        n++;
    }
    sqlite3_reset(s);
    for (int i = 0; i < n && !rc; i++)
        rc = message_ensure(c, alert_id, revision, event, view, combos[i].lang, combos[i].channel,
                            combos[i].link, note);
    return rc;
}

/* Deliveries for every sent recipient in r, first contact each. */
static int deliveries_for(const keng_publish_ctx *c, const char *alert_id, int revision,
                          const char *event, const range *r, const char *note, int64_t next_at,
                          int members_only, int *count)
{
#define DELIVERIES_SQL(from, where)                                                                \
    "INSERT OR IGNORE INTO deliveries(alert_id, revision, event, recipient, channel,"              \
    " contact_index, address, message_id, link_kind, idem_key, created_at)"                        \
    " SELECT ?1, ?2, ?3, r.member_id, json_extract(m.contacts, '$[0].type'), 0,"                   \
    "  json_extract(m.contacts, '$[0]'), msg.id, msg.link_kind,"                                   \
    "  ?1 || '.' || ?2 || '.' || r.member_id || '.' || json_extract(m.contacts, '$[0].type'), ?5"  \
    " FROM " from " JOIN members m ON m.id = r.member_id"                                          \
    " JOIN messages msg ON msg.alert_id = ?1 AND msg.revision = ?2 AND msg.event = ?3"             \
    "  AND msg.lang = m.lang AND msg.channel = json_extract(m.contacts, '$[0].type')"              \
    "  AND msg.link_kind = CASE r.role WHEN 'leader' THEN 'l' ELSE 'r' END"                        \
    "  AND msg.note IS ?6"                                                                         \
    " WHERE " where " AND (?8 = 0 OR r.role = 'member') AND json_array_length(m.contacts) > 0"
    sqlite3_stmt *s = keng_store_stmt(c->st, r->via_group ? DELIVERIES_SQL(FROM_GROUP, RANGE_GROUP)
                                                          : DELIVERIES_SQL(FROM_ALL, RANGE_ALL));
    if (!s) return -EIO;
    bind_range(s, alert_id, r);
    sqlite3_bind_int(s, 2, revision);
    sqlite3_bind_text(s, 3, event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, c->now);
    if (note) sqlite3_bind_text(s, 6, note, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 8, members_only);
    int rc = step_done(s);
    sqlite3 *db = keng_store_db(c->st);
    int64_t added = rc == 0 ? sqlite3_changes(db) : 0;
    if (added > 0) { /* new rowids are consecutive, the last one's and those before (one writer) */
        int n = keng_outbox_add_states(c->st, sqlite3_last_insert_rowid(db) - added, next_at);
        if (n >= 0) *count += n;
        rc = n < 0 ? n : 0;
    }
    return rc;
}

/* The target groups' own channels (a group chat): one delivery each, no personal link. */
static int group_channels(const keng_publish_ctx *c, const char *alert_id, int revision,
                          const char *event, const cJSON *view, const char *only_group,
                          int64_t next_at, int *count)
{
    sqlite3_stmt *s = keng_store_stmt(
        c->st, only_group ? "SELECT id, channels FROM groups WHERE id = ?1 AND channels <> '[]'"
                          : "SELECT id, channels FROM tg WHERE channels <> '[]' AND ?1 IS NULL");
    if (!s) return -EIO;
    if (only_group) sqlite3_bind_text(s, 1, only_group, -1, SQLITE_TRANSIENT);
    cJSON *rows = cJSON_CreateArray();
    while (sqlite3_step(s) == SQLITE_ROW) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "id", keng_store_text(s, 0));
        cJSON_AddItemToObject(r, "channels", cJSON_Parse(keng_store_text(s, 1)));
        cJSON_AddItemToArray(rows, r);
    }
    sqlite3_reset(s);
    int rc = 0;
    for (const cJSON *r = rows->child; r && !rc; r = r->next) {
        const char *gid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "id"));
        const cJSON *chs = cJSON_GetObjectItemCaseSensitive(r, "channels");
        int idx = 0;
        for (const cJSON *ch = chs ? chs->child : NULL; ch && !rc; ch = ch->next, idx++) {
            const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ch, "type"));
            if (!type) continue;
            int64_t mid;
            rc = message_insert(c, alert_id, revision, event, view, "vi", type, "", NULL, &mid);
            if (rc) break;
            char recipient[160], key[512];
            snprintf(recipient, sizeof recipient, "group:%s", gid);
            snprintf(key, sizeof key, "%s.%d.%s.%s", alert_id, revision, recipient, type);
            char *addr = cJSON_PrintUnformatted(ch);
            sqlite3_stmt *ins = keng_store_stmt(
                c->st, "INSERT OR IGNORE INTO deliveries(alert_id, revision, event, recipient,"
                       " channel, contact_index, address, message_id, link_kind, idem_key,"
                       " created_at) VALUES (?,?,?,?,?,?,?,?,'',?,?)");
            if (!ins || !addr) {
                cJSON_free(addr);
                rc = -EIO;
                break;
            }
            sqlite3_bind_text(ins, 1, alert_id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(ins, 2, revision);
            sqlite3_bind_text(ins, 3, event, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 4, recipient, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(ins, 5, type, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(ins, 6, idx);
            sqlite3_bind_text(ins, 7, addr, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(ins, 8, mid);
            sqlite3_bind_text(ins, 9, key, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(ins, 10, c->now);
            cJSON_free(addr);
            rc = step_done(ins);
            if (!rc && sqlite3_changes(keng_store_db(c->st)) > 0) {
                rc = keng_outbox_add_state(c->st, sqlite3_last_insert_rowid(keng_store_db(c->st)),
                                           next_at);
                if (!rc) *count += 1;
            }
        }
    }
    cJSON_Delete(rows);
    return rc;
}

static int bind_json_list(sqlite3_stmt *s, int i, const cJSON *targets, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(targets, key);
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    sqlite3_bind_text(s, i, t ? t : "[]", -1, SQLITE_TRANSIENT);
    cJSON_free(t);
    return 0;
}

static int resolve_targets(const keng_publish_ctx *c, const cJSON *view, keng_publish_stats *st)
{
    int rc = keng_store_exec(c->st, "DELETE FROM temp.tg");
    if (rc) return rc;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(view, "targets");
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "INSERT OR IGNORE INTO temp.tg(id, relay, leader, relay_timeout, channels)"
               " WITH RECURSIVE sel(id) AS ("
               "  SELECT id FROM groups WHERE id IN (SELECT value FROM json_each(?1))"
               "   OR kind IN (SELECT value FROM json_each(?2)) OR ?3 = 1"
               "  UNION SELECT g.id FROM groups g JOIN sel ON g.parent = sel.id)"
               " SELECT g.id, g.relay, g.leader, g.relay_timeout, g.channels FROM groups g"
               " WHERE g.id IN (SELECT id FROM sel)");
    if (!s) return -EIO;
    bind_json_list(s, 1, t, "groups");
    bind_json_list(s, 2, t, "kinds");
    sqlite3_bind_int(s, 3, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "all")));
    if ((rc = step_done(s))) return rc;
    st->groups = sqlite3_changes(keng_store_db(c->st));
    return 0;
}

/* The alert's area as SQL parameters: members with coordinates outside the circle are left
 * out (an equirectangular distance, exact enough at a ward's scale). */
typedef struct area {
    int on;
    double lat, lon, r, kx;
} area;

static area area_of(const cJSON *view)
{
    area a = {0};
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(view, "area");
    if (!cJSON_IsObject(o)) return a;
    a.on = 1;
    a.lat = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "lat"));
    a.lon = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "lon"));
    a.r = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "radius_m"));
    a.kx = cos(a.lat * M_PI / 180.0) * 111320.0;
    return a;
}

#define AREA_SQL                                                                                   \
    "(?2 = 0 OR m.lat IS NULL OR m.lon IS NULL OR ((m.lon - ?4) * ?5) * ((m.lon - ?4) * ?5) +"     \
    " ((m.lat - ?3) * 110540.0) * ((m.lat - ?3) * 110540.0) <= ?6 * ?6)"

static void bind_area(sqlite3_stmt *s, const area *a)
{
    sqlite3_bind_int(s, 2, a->on);
    sqlite3_bind_double(s, 3, a->lat);
    sqlite3_bind_double(s, 4, a->lon);
    sqlite3_bind_double(s, 5, a->kx);
    sqlite3_bind_double(s, 6, a->r);
}

/* ---- jobs ---- */

struct keng_publish_job {
    int64_t id;
    char kind[8]; /* alert | event | relay */
    char *alert_id, *event, *group_id, *note, *actor, *cursor;
    int revision, phase, gi;
    int64_t next_at;
    cJSON *view, *groups, *relay_groups;
    keng_publish_stats st;
    /* The item gi of list, as last found: the next step's is its next (cJSON_GetArrayItem walks
     * the list from its head, which over a ward's 2,000 groups made a publication O(groups²)). */
    const cJSON *at_list, *at_item;
    int at_gi;
};

void keng_publish_job_free(keng_publish_job *j)
{
    if (!j) return;
    free(j->alert_id);
    free(j->event);
    free(j->group_id);
    free(j->note);
    free(j->actor);
    free(j->cursor);
    cJSON_Delete(j->view);
    cJSON_Delete(j->groups);
    cJSON_Delete(j->relay_groups);
    free(j);
}

int64_t keng_publish_job_id(const keng_publish_job *j)
{
    return j->id;
}

const char *keng_publish_job_alert(const keng_publish_job *j)
{
    return j->alert_id;
}

void keng_publish_job_stats(const keng_publish_job *j, keng_publish_stats *out)
{
    *out = j->st;
}

static char *dup_col(sqlite3_stmt *s, int col)
{
    return sqlite3_column_type(s, col) == SQLITE_NULL ? NULL : strdup(keng_store_text(s, col));
}

int keng_publish_job_next(keng_store *st, int64_t after, keng_publish_job **out)
{
    *out = NULL;
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT j.id, kind, alert_id, revision, event, group_id, note, actor, next_at, view,"
            " groups, relay_groups, phase, gi, cursor, n_groups, n_relay_groups, n_recipients,"
            " n_held, n_unreachable, n_deliveries FROM publish_jobs j"
            " JOIN publish_job_state s ON s.job = j.id WHERE j.id > ?1 ORDER BY j.id LIMIT 1");
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, after);
    int sr = sqlite3_step(s), rc = 0;
    if (sr != SQLITE_ROW) {
        sqlite3_reset(s);
        return sr == SQLITE_DONE ? -ENOENT : keng_store_errno(sr);
    }
    keng_publish_job *j = calloc(1, sizeof *j);
    if (!j) {
        sqlite3_reset(s);
        return -ENOMEM;
    }
    j->id = sqlite3_column_int64(s, 0);
    snprintf(j->kind, sizeof j->kind, "%s", keng_store_text(s, 1));
    j->alert_id = dup_col(s, 2);
    j->revision = sqlite3_column_int(s, 3);
    j->event = dup_col(s, 4);
    j->group_id = dup_col(s, 5);
    j->note = dup_col(s, 6);
    j->actor = dup_col(s, 7);
    j->next_at = sqlite3_column_int64(s, 8);
    j->view = cJSON_Parse(keng_store_text(s, 9));
    j->groups = cJSON_Parse(keng_store_text(s, 10));
    j->relay_groups = cJSON_Parse(keng_store_text(s, 11));
    j->phase = sqlite3_column_int(s, 12);
    j->gi = sqlite3_column_int(s, 13);
    j->cursor = dup_col(s, 14);
    j->st.groups = sqlite3_column_int(s, 15);
    j->st.relay_groups = sqlite3_column_int(s, 16);
    j->st.recipients = sqlite3_column_int(s, 17);
    j->st.held = sqlite3_column_int(s, 18);
    j->st.unreachable = sqlite3_column_int(s, 19);
    j->st.deliveries = sqlite3_column_int(s, 20);
    sqlite3_reset(s);
    if (!j->alert_id || !j->event || !j->actor || !j->cursor || !cJSON_IsObject(j->view) ||
        !cJSON_IsArray(j->groups) || !cJSON_IsArray(j->relay_groups))
        rc = -EILSEQ;
    if (rc) {
        keng_publish_job_free(j);
        return rc;
    }
    *out = j;
    return 0;
}

/* Stores a new job; its counts so far from *st. */
static int job_insert(const keng_publish_ctx *c, const char *kind, const char *alert_id,
                      int revision, const char *event, const char *group_id, const char *note,
                      const char *actor, int64_t next_at, const cJSON *view, const char *groups,
                      const char *relay_groups, const keng_publish_stats *st, int64_t *id)
{
    char *vj = cJSON_PrintUnformatted(view);
    sqlite3_stmt *s = keng_store_stmt(
        c->st,
        "INSERT INTO publish_jobs(kind, alert_id, revision, event, group_id, note, actor,"
        " next_at, view, groups, relay_groups, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)");
    sqlite3_stmt *t = keng_store_stmt(
        c->st, "INSERT INTO publish_job_state(job, n_groups, n_relay_groups, n_recipients,"
               " n_unreachable, n_deliveries) VALUES (?,?,?,?,?,?)");
    if (!s || !t || !vj) {
        cJSON_free(vj);
        return s && t ? -ENOMEM : -EIO;
    }
    sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, alert_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 3, revision);
    sqlite3_bind_text(s, 4, event, -1, SQLITE_TRANSIENT);
    if (group_id) sqlite3_bind_text(s, 5, group_id, -1, SQLITE_TRANSIENT);
    if (note) sqlite3_bind_text(s, 6, note, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 7, actor ? actor : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 8, next_at);
    sqlite3_bind_text(s, 9, vj, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 10, groups ? groups : "[]", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 11, relay_groups ? relay_groups : "[]", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 12, c->now);
    cJSON_free(vj);
    int rc = step_done(s);
    if (rc) return rc;
    *id = sqlite3_last_insert_rowid(keng_store_db(c->st));
    sqlite3_bind_int64(t, 1, *id);
    sqlite3_bind_int(t, 2, st->groups);
    sqlite3_bind_int(t, 3, st->relay_groups);
    sqlite3_bind_int(t, 4, st->recipients);
    sqlite3_bind_int(t, 5, st->unreachable);
    sqlite3_bind_int(t, 6, st->deliveries);
    return step_done(t);
}

/* A JSON array of the target groups' ids with that relay mode, in id order. */
static char *tg_ids(const keng_publish_ctx *c, const char *relay)
{
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "SELECT json_group_array(id) FROM (SELECT id FROM temp.tg WHERE relay = ?1"
               " ORDER BY id)");
    if (!s) return NULL;
    sqlite3_bind_text(s, 1, relay, -1, SQLITE_STATIC);
    char *out = sqlite3_step(s) == SQLITE_ROW ? strdup(keng_store_text(s, 0)) : NULL;
    sqlite3_reset(s);
    return out;
}

int keng_publish_begin_alert(const keng_publish_ctx *c, const char *alert_id, int revision,
                             const cJSON *view, const char *actor, int64_t *job)
{
    keng_publish_stats st;
    memset(&st, 0, sizeof st);
    const char *urgency = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(view, "urgency"));
    int immediate = urgency && !strcmp(urgency, "immediate");
    int64_t next_at = keng_publish_view_not_before(c, view);
    char *groups = NULL, *relay_groups = NULL;
    int rc = keng_store_begin(c->st);
    if (rc) return rc;
    if ((rc = resolve_targets(c, view, &st))) goto out;
    /* Leaders now (a member keeps the strongest way it is reached: leaders first), the
     * households of the other groups in the job's chunks. Households of leader-relay groups
     * become recipients when relayed. */
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "INSERT INTO recipients(alert_id, member_id, via_group, role, state, rtoken)"
               " SELECT ?1, tg.leader, tg.id, 'leader', 'sent', keng_link_hash('l', ?1, tg.leader)"
               " FROM temp.tg tg JOIN members m ON m.id = tg.leader WHERE tg.relay = 'leader'"
               " ON CONFLICT(alert_id, member_id) DO UPDATE SET role = 'leader', state = 'sent',"
               "  via_group = excluded.via_group, rtoken = excluded.rtoken");
    if (!s) {
        rc = -EIO;
        goto out;
    }
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    if ((rc = step_done(s))) goto out;
    s = keng_store_stmt(c->st, "INSERT OR IGNORE INTO relays(alert_id, group_id, leader_id, state,"
                               " due_at) SELECT ?1, id, leader, 'waiting',"
                               " CASE WHEN ?2 THEN ?3 + relay_timeout END"
                               " FROM temp.tg WHERE relay = 'leader' AND leader IS NOT NULL");
    if (!s) {
        rc = -EIO;
        goto out;
    }
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, immediate);
    sqlite3_bind_int64(s, 3, c->now);
    if ((rc = step_done(s))) goto out;
    st.relay_groups = sqlite3_changes(keng_store_db(c->st));
    /* Only leaders are recipients yet: these few rows are counted now. */
    s = keng_store_stmt(c->st,
                        "SELECT count(*), coalesce(sum(json_array_length(m.contacts) = 0), 0)"
                        " FROM recipients r JOIN members m ON m.id = r.member_id"
                        " WHERE r.alert_id = ?1");
    if (!s) {
        rc = -EIO;
        goto out;
    }
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) == SQLITE_ROW) {
        st.recipients = sqlite3_column_int(s, 0);
        st.unreachable = sqlite3_column_int(s, 1);
    }
    sqlite3_reset(s);
    if ((rc = messages_for(c, alert_id, revision, "alert", view, &ALL_RECIPIENTS, NULL)) ||
        (rc = deliveries_for(c, alert_id, revision, "alert", &ALL_RECIPIENTS, NULL, next_at, 0,
                             &st.deliveries)) ||
        (rc = group_channels(c, alert_id, revision, "alert", view, NULL, next_at, &st.deliveries)))
        goto out;
    groups = tg_ids(c, "auto");
    relay_groups = tg_ids(c, "leader");
    if (!groups || !relay_groups) {
        rc = -ENOMEM;
        goto out;
    }
    rc = job_insert(c, "alert", alert_id, revision, "alert", NULL, NULL, actor, next_at, view,
                    groups, relay_groups, &st, job);
out:
    free(groups);
    free(relay_groups);
    return tx_end(c->st, rc);
}

/* Earlier messages of alert_id that quiet hours still hold come due now (they have not been
 * tried): the engine finds them superseded (keng_outbox_superseded) and says so, rather than
 * leaving them pending till the morning. For a resolution or a cancellation at once; for an
 * update that leaves at once when its last row is written (before, an alert row due now might
 * find no newer row for its household yet: it would wait, given back each second). */
static int release_held(const keng_publish_ctx *c, const char *alert_id)
{
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "UPDATE delivery_state SET next_at = 0 WHERE alert_id = ?1 AND status ="
               " 'pending' AND attempts = 0 AND next_at > ?2");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, c->now);
    return step_done(s);
}

int keng_publish_begin_event(const keng_publish_ctx *c, const char *alert_id, int revision,
                             const char *event, const cJSON *view, const char *actor, int64_t *job)
{
    keng_publish_stats st;
    memset(&st, 0, sizeof st);
    int rc = keng_store_begin(c->st);
    if (rc) return rc;
    /* A resolution or a cancellation is good news: it may wait for the morning like the
     * alert itself; an update of an immediate alert goes at once. */
    int64_t next_at = keng_publish_view_not_before(c, view);
    int final = !strcmp(event, "resolve") || !strcmp(event, "cancel");
    if (final) {
        sqlite3_stmt *s = keng_store_stmt(
            c->st, "UPDATE relays SET state = 'closed' WHERE alert_id = ? AND state = 'waiting'");
        if (!s)
            rc = -EIO;
        else {
            sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
            rc = step_done(s);
        }
    }
    /* A resolution or cancellation ends the alert: its held messages are superseded at once.
     * (An update that leaves at once does the same when its job is done: job_finish.) */
    if (!rc && final) rc = release_held(c, alert_id);
    if (!rc) {
        /* The groups' own chats that got the alert get the news too (a range of the
         * recipient index: "group;" follows "group:"). */
        sqlite3_stmt *s = keng_store_stmt(
            c->st, "SELECT DISTINCT substr(recipient, 7) FROM deliveries WHERE alert_id = ?1"
                   " AND recipient >= 'group:' AND recipient < 'group;' AND event = 'alert'");
        cJSON *gids = cJSON_CreateArray();
        if (!s)
            rc = -EIO;
        else {
            sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
            while (sqlite3_step(s) == SQLITE_ROW)
                cJSON_AddItemToArray(gids, cJSON_CreateString(keng_store_text(s, 0)));
            sqlite3_reset(s);
        }
        for (const cJSON *g = gids->child; g && !rc; g = g->next)
            rc = group_channels(c, alert_id, revision, event, view, g->valuestring, next_at,
                                &st.deliveries);
        cJSON_Delete(gids);
    }
    if (!rc)
        rc = job_insert(c, "event", alert_id, revision, event, NULL, NULL, actor, next_at, view,
                        NULL, NULL, &st, job);
    return tx_end(c->st, rc);
}

int keng_publish_begin_relay(const keng_publish_ctx *c, const char *alert_id, const char *group_id,
                             int revision, const cJSON *view, const char *note, const char *by,
                             int64_t *job)
{
    int rc = keng_store_begin(c->st);
    if (rc) return rc;
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "UPDATE relays SET state = 'relayed', note = ?3, relayed_at = ?4, relayed_by = ?5"
               " WHERE alert_id = ?1 AND group_id = ?2 AND state = 'waiting'");
    if (!s) rc = -EIO;
    if (!rc) {
        sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, group_id, -1, SQLITE_TRANSIENT);
        if (note && *note) sqlite3_bind_text(s, 3, note, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 4, c->now);
        sqlite3_bind_text(s, 5, by, -1, SQLITE_TRANSIENT);
        rc = step_done(s);
        if (!rc && sqlite3_changes(keng_store_db(c->st)) == 0) rc = -EALREADY;
    }
    int64_t next_at = keng_publish_view_not_before(c, view);
    if (!rc) {
        keng_publish_stats st;
        memset(&st, 0, sizeof st);
        char groups[512];
        cJSON *g = cJSON_CreateArray();
        cJSON_AddItemToArray(g, cJSON_CreateString(group_id));
        if (!cJSON_PrintPreallocated(g, groups, sizeof groups, 0)) rc = -E2BIG;
        cJSON_Delete(g);
        if (!rc)
            rc = job_insert(c, "relay", alert_id, revision, "alert", group_id,
                            note && *note ? note : NULL, by, next_at, view, groups, NULL, &st, job);
    }
    if (rc == -EALREADY) { /* nothing was written: the caller's transaction goes on */
        int cr = keng_store_commit(c->st);
        return cr ? cr : rc;
    }
    return tx_end(c->st, rc);
}

/* The bound of the next chunk: the n-th id after lo in the list (members of a group, or
 * recipients of the alert), or RANGE_END when fewer are left. *hi is malloc'd. */
static int chunk_hi(const keng_publish_ctx *c, const char *alert_id, const char *group_id,
                    const char *lo, int n, char **hi)
{
    sqlite3_stmt *s = keng_store_stmt(
        c->st, group_id ? "SELECT member_id FROM memberships WHERE group_id = ?1 AND member_id > ?2"
                          " ORDER BY member_id LIMIT 1 OFFSET ?3"
                        : "SELECT member_id FROM recipients WHERE alert_id = ?1 AND member_id > ?2"
                          " ORDER BY member_id LIMIT 1 OFFSET ?3");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, group_id ? group_id : alert_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, lo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 3, n - 1);
    int sr = sqlite3_step(s);
    *hi = strdup(sr == SQLITE_ROW ? keng_store_text(s, 0) : RANGE_END);
    sqlite3_reset(s);
    if (sr != SQLITE_ROW && sr != SQLITE_DONE) return keng_store_errno(sr);
    return *hi ? 0 : -ENOMEM;
}

/* Households of group r->via_group in (lo, hi] become recipients and get their deliveries. */
static int step_group(const keng_publish_ctx *c, keng_publish_job *j, const range *r, int relay)
{
    area ar = area_of(j->view);
    sqlite3_stmt *s = keng_store_stmt(
        c->st,
        "INSERT INTO recipients(alert_id, member_id, via_group, role, state, rtoken)"
        " SELECT ?1, j.member_id, ?7, 'member', 'sent', keng_link_hash('r', ?1, j.member_id)"
        " FROM memberships j JOIN members m ON m.id = j.member_id"
        " WHERE j.group_id = ?7 AND j.member_id > ?8 AND j.member_id <= ?9"
        " AND (?10 = 0 OR j.member_id <> coalesce((SELECT leader FROM groups"
        "  WHERE id = ?7), '')) AND " AREA_SQL " ON CONFLICT(alert_id, member_id) DO NOTHING");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, j->alert_id, -1, SQLITE_TRANSIENT);
    bind_area(s, &ar);
    sqlite3_bind_text(s, 7, r->via_group, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 8, r->lo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 9, r->hi, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 10, relay);
    int rc = step_done(s);
    if (rc) return rc;
    int added = sqlite3_changes(keng_store_db(c->st));
    j->st.recipients += added;
    if (added) {
        s = keng_store_stmt(c->st, "SELECT count(*) FROM " FROM_GROUP " JOIN members m"
                                   " ON m.id = r.member_id WHERE" RANGE_GROUP
                                   " AND json_array_length(m.contacts) = 0");
        if (!s) return -EIO;
        bind_range(s, j->alert_id, r);
        if (sqlite3_step(s) == SQLITE_ROW) j->st.unreachable += sqlite3_column_int(s, 0);
        sqlite3_reset(s);
        if ((rc = messages_for(c, j->alert_id, j->revision, j->event, j->view, r, j->note)))
            return rc;
        rc = deliveries_for(c, j->alert_id, j->revision, j->event, r, j->note, j->next_at, 1,
                            &j->st.deliveries);
    }
    return rc;
}

/* Households of leader-relay group r->via_group in (lo, hi] that wait for their leader: not
 * reached otherwise, and not counted with an earlier relay group already. */
static int step_held(const keng_publish_ctx *c, keng_publish_job *j, const range *r)
{
    area ar = area_of(j->view);
    cJSON *earlier = cJSON_CreateArray();
    int i = 0;
    for (const cJSON *g = j->relay_groups->child; g && i < j->gi; g = g->next, i++)
        cJSON_AddItemToArray(earlier, cJSON_CreateString(g->valuestring));
    char *ej = cJSON_PrintUnformatted(earlier);
    cJSON_Delete(earlier);
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "SELECT count(*) FROM memberships j JOIN members m ON m.id = j.member_id"
               " WHERE j.group_id = ?7 AND j.member_id > ?8 AND j.member_id <= ?9"
               " AND j.member_id <> coalesce((SELECT leader FROM groups WHERE id = ?7), '')"
               " AND " AREA_SQL " AND NOT EXISTS (SELECT 1 FROM recipients r"
               "  WHERE r.alert_id = ?1 AND r.member_id = j.member_id)"
               " AND NOT EXISTS (SELECT 1 FROM memberships k WHERE k.member_id = j.member_id"
               "  AND k.group_id IN (SELECT value FROM json_each(?10)))");
    if (!s || !ej) {
        cJSON_free(ej);
        return s ? -ENOMEM : -EIO;
    }
    sqlite3_bind_text(s, 1, j->alert_id, -1, SQLITE_TRANSIENT);
    bind_area(s, &ar);
    sqlite3_bind_text(s, 7, r->via_group, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 8, r->lo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 9, r->hi, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 10, ej, -1, SQLITE_TRANSIENT);
    cJSON_free(ej);
    int sr = sqlite3_step(s);
    if (sr == SQLITE_ROW) j->st.held += sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return sr == SQLITE_ROW ? 0 : keng_store_errno(sr);
}

static int job_save(const keng_publish_ctx *c, const keng_publish_job *j)
{
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "UPDATE publish_job_state SET phase = ?2, gi = ?3, cursor = ?4, n_recipients = ?5,"
               " n_held = ?6, n_unreachable = ?7, n_deliveries = ?8 WHERE job = ?1");
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, j->id);
    sqlite3_bind_int(s, 2, j->phase);
    sqlite3_bind_int(s, 3, j->gi);
    sqlite3_bind_text(s, 4, j->cursor, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 5, j->st.recipients);
    sqlite3_bind_int(s, 6, j->st.held);
    sqlite3_bind_int(s, 7, j->st.unreachable);
    sqlite3_bind_int(s, 8, j->st.deliveries);
    return step_done(s);
}

/* The job's audit line, then the job is gone. */
static int job_finish(const keng_publish_ctx *c, const keng_publish_job *j)
{
    cJSON *d = cJSON_CreateObject();
    char action[32];
    if (!strcmp(j->kind, "alert")) {
        snprintf(action, sizeof action, "alert.publish");
        cJSON_AddNumberToObject(d, "revision", j->revision);
        cJSON_AddNumberToObject(d, "groups", j->st.groups);
        cJSON_AddNumberToObject(d, "relay_groups", j->st.relay_groups);
        cJSON_AddNumberToObject(d, "recipients", j->st.recipients);
        cJSON_AddNumberToObject(d, "held", j->st.held);
        cJSON_AddNumberToObject(d, "unreachable", j->st.unreachable);
        cJSON_AddNumberToObject(d, "deliveries", j->st.deliveries);
    } else if (!strcmp(j->kind, "relay")) {
        snprintf(action, sizeof action, "%s",
                 strcmp(j->actor, "keng") ? "relay.leader" : "relay.timeout");
        cJSON_AddStringToObject(d, "group", j->group_id ? j->group_id : "");
        cJSON_AddNumberToObject(d, "households", j->st.recipients);
        cJSON_AddNumberToObject(d, "deliveries", j->st.deliveries);
        if (j->note) cJSON_AddBoolToObject(d, "note", 1);
    } else {
        snprintf(action, sizeof action, "alert.%s", j->event);
        cJSON_AddNumberToObject(d, "revision", j->revision);
        cJSON_AddNumberToObject(d, "deliveries", j->st.deliveries);
    }
    if (keng_audit_append(c->st, j->actor, action, j->alert_id, d) < 0) return -EIO;
    if (!strcmp(j->kind, "event") && !strcmp(j->event, "update") && j->next_at == 0) {
        int rc = release_held(c, j->alert_id);
        if (rc) return rc;
    }
    sqlite3_stmt *s = keng_store_stmt(c->st, "DELETE FROM publish_jobs WHERE id = ?1");
    sqlite3_stmt *t = keng_store_stmt(c->st, "DELETE FROM publish_job_state WHERE job = ?1");
    if (!s || !t) return -EIO;
    sqlite3_bind_int64(s, 1, j->id);
    sqlite3_bind_int64(t, 1, j->id);
    int rc = step_done(t);
    return rc ? rc : step_done(s);
}

int keng_publish_job_step(const keng_publish_ctx *c, keng_publish_job *j, int max_rows, int *done)
{
    *done = 0;
    if (max_rows < 1) max_rows = 1;
    /* The list this phase walks: the job's groups (households), its relay groups (held), or
     * the alert's recipients (an update, a resolution, a cancellation). */
    const cJSON *list = NULL;
    int held = 0;
    if (!strcmp(j->kind, "alert") || !strcmp(j->kind, "relay")) {
        held = j->phase == 1;
        list = held ? j->relay_groups : j->groups;
    }
    const char *gid = NULL;
    if (list) {
        const cJSON *g;
        if (j->at_list == list && j->at_item && j->at_gi == j->gi)
            g = j->at_item;
        else if (j->at_list == list && j->at_item && j->at_gi + 1 == j->gi)
            g = j->at_item->next;
        else
            g = cJSON_GetArrayItem(list, j->gi);
        j->at_list = list;
        j->at_item = g;
        j->at_gi = j->gi;
        if (!g) { /* this phase is done */
            if (!strcmp(j->kind, "alert") && j->phase == 0) {
                j->phase = 1;
                j->gi = 0;
                free(j->cursor);
                j->cursor = strdup("");
                if (!j->cursor) return -ENOMEM;
                return job_save(c, j);
            }
            *done = 1;
            return job_finish(c, j);
        }
        gid = cJSON_GetStringValue(g);
        if (!gid) return -EILSEQ;
    }
    char *hi = NULL;
    int rc = chunk_hi(c, j->alert_id, gid, j->cursor, max_rows, &hi);
    if (rc) {
        free(hi);
        return rc;
    }
    range r = {gid, j->cursor, hi};
    if (!list) {
        rc = messages_for(c, j->alert_id, j->revision, j->event, j->view, &r, NULL);
        if (!rc)
            rc = deliveries_for(c, j->alert_id, j->revision, j->event, &r, NULL, j->next_at, 0,
                                &j->st.deliveries);
    } else if (held)
        rc = step_held(c, j, &r);
    else
        rc = step_group(c, j, &r, !strcmp(j->kind, "relay"));
    if (rc) {
        free(hi);
        return rc;
    }
    if (!strcmp(hi, RANGE_END)) { /* the end of this list */
        free(hi);
        if (!list) {
            *done = 1;
            return job_finish(c, j);
        }
        j->gi++;
        hi = strdup("");
        if (!hi) return -ENOMEM;
    }
    free(j->cursor);
    j->cursor = hi;
    return job_save(c, j);
}

/* Everything at once, in one transaction: for callers without a loop (tests, tools). */
static int run_all(const keng_publish_ctx *c, int64_t id, keng_publish_stats *out)
{
    int rc = keng_store_begin(c->st);
    if (rc) return rc;
    keng_publish_job *j = NULL;
    if (!(rc = keng_publish_job_next(c->st, id - 1, &j)) && j->id != id) rc = -ENOENT;
    for (int done = 0; !rc && !done;)
        rc = keng_publish_job_step(c, j, 1 << 20, &done);
    if (!rc) keng_publish_job_stats(j, out);
    keng_publish_job_free(j);
    return tx_end(c->st, rc);
}

int keng_publish_alert(const keng_publish_ctx *c, const char *alert_id, int revision,
                       const cJSON *view, keng_publish_stats *out)
{
    memset(out, 0, sizeof *out);
    int64_t id;
    int rc = keng_store_begin(c->st);
    if (!rc) rc = keng_publish_begin_alert(c, alert_id, revision, view, "", &id);
    if (!rc) rc = run_all(c, id, out);
    return tx_end(c->st, rc);
}
