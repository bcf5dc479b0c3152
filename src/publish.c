#include "keng/publish.h"

#include "keng/alert_view.h"
#include "keng/auth.h"
#include "keng/log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
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
static int render_email_html(const keng_publish_ctx *c, const cJSON *view, const char *event,
                             const char *lang, const char *link_kind, const char *note,
                             keng_buf *out)
{
    cJSON *data = message_data(c, view, event, lang, link_kind, note);
    if (!data) return -ENOMEM;
    int rc = 0;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(data, "has_photos")) &&
        !cJSON_AddStringToObject(data, "photo_src", KENG_PHOTO_PLACEHOLDER))
        rc = -ENOMEM;
    if (!rc) rc = keng_tplset_render_html(c->templates, keng_alert_tpl_kind(view), event, lang,
                                          data, out);
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
                          const char *channel, const char *link_kind, const char *note,
                          int64_t *id)
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
        (rc = render_email_html(c, view, event, lang, link_kind, note, &html))) {
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

/* One message per (lang, channel, link kind) among the recipients about to get deliveries. */
static int messages_for(const keng_publish_ctx *c, const char *alert_id, int revision,
                        const char *event, const cJSON *view, const char *via_group,
                        const char *note)
{
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "SELECT DISTINCT m.lang, json_extract(m.contacts, '$[0].type'),"
               " CASE r.role WHEN 'leader' THEN 'l' ELSE 'r' END"
               " FROM recipients r JOIN members m ON m.id = r.member_id"
               " WHERE r.alert_id = ?1 AND r.state = 'sent' AND (?2 IS NULL OR r.via_group = ?2)"
               " AND json_array_length(m.contacts) > 0");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    if (via_group) sqlite3_bind_text(s, 2, via_group, -1, SQLITE_TRANSIENT);
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
    for (int i = 0; i < n && !rc; i++) {
        int64_t id;
        rc = message_insert(c, alert_id, revision, event, view, combos[i].lang, combos[i].channel,
                            combos[i].link, note, &id);
    }
    return rc;
}

/* Deliveries for every sent recipient (of via_group, or all), first contact each. */
static int deliveries_for(const keng_publish_ctx *c, const char *alert_id, int revision,
                          const char *event, const char *via_group, const char *note,
                          int64_t next_at, int members_only, int *count)
{
    sqlite3_stmt *s = keng_store_stmt(
        c->st,
        "INSERT OR IGNORE INTO deliveries(alert_id, revision, event, recipient, channel,"
        " contact_index, address, message_id, link_kind, idem_key, status, next_at, created_at)"
        " SELECT ?1, ?2, ?3, r.member_id, json_extract(m.contacts, '$[0].type'), 0,"
        "  json_extract(m.contacts, '$[0]'), msg.id, msg.link_kind,"
        "  ?1 || '.' || ?2 || '.' || r.member_id || '.' || json_extract(m.contacts, '$[0].type'),"
        "  'pending', ?4, ?5"
        " FROM recipients r JOIN members m ON m.id = r.member_id"
        " JOIN messages msg ON msg.alert_id = ?1 AND msg.revision = ?2 AND msg.event = ?3"
        "  AND msg.lang = m.lang AND msg.channel = json_extract(m.contacts, '$[0].type')"
        "  AND msg.link_kind = CASE r.role WHEN 'leader' THEN 'l' ELSE 'r' END"
        "  AND msg.note IS ?6"
        " WHERE r.alert_id = ?1 AND r.state = 'sent' AND (?7 IS NULL OR r.via_group = ?7)"
        "  AND (?8 = 0 OR r.role = 'member') AND json_array_length(m.contacts) > 0");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, revision);
    sqlite3_bind_text(s, 3, event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, next_at);
    sqlite3_bind_int64(s, 5, c->now);
    if (note) sqlite3_bind_text(s, 6, note, -1, SQLITE_TRANSIENT);
    if (via_group) sqlite3_bind_text(s, 7, via_group, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 8, members_only);
    int rc = step_done(s);
    if (!rc) *count += sqlite3_changes(keng_store_db(c->st));
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
                       " channel, contact_index, address, message_id, link_kind, idem_key, status,"
                       " next_at, created_at) VALUES (?,?,?,?,?,?,?,?,'',?,'pending',?,?)");
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
            sqlite3_bind_int64(ins, 10, next_at);
            sqlite3_bind_int64(ins, 11, c->now);
            cJSON_free(addr);
            rc = step_done(ins);
            if (!rc) *count += sqlite3_changes(keng_store_db(c->st));
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
    "(?2 = 0 OR m.lat IS NULL OR m.lon IS NULL OR ((m.lon - ?4) * ?5) * ((m.lon - ?4) * ?5) +"    \
    " ((m.lat - ?3) * 110540.0) * ((m.lat - ?3) * 110540.0) <= ?6 * ?6)"

static void bind_area(sqlite3_stmt *s, const area *a)
{
    sqlite3_bind_int(s, 2, a->on);
    sqlite3_bind_double(s, 3, a->lat);
    sqlite3_bind_double(s, 4, a->lon);
    sqlite3_bind_double(s, 5, a->kx);
    sqlite3_bind_double(s, 6, a->r);
}

int keng_publish_alert(const keng_publish_ctx *c, const char *alert_id, int revision,
                       const cJSON *view, keng_publish_stats *out)
{
    memset(out, 0, sizeof *out);
    const char *urgency = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(view, "urgency"));
    int immediate = urgency && !strcmp(urgency, "immediate");
    int64_t next_at = keng_publish_not_before(c->cfg, urgency, c->now);
    area ar = area_of(view);
    int rc = keng_store_begin(c->st);
    if (rc) return rc;
    if ((rc = resolve_targets(c, view, out))) goto fail;
    /* Leaders first, then households reached directly: a member keeps the strongest way it
     * is reached. Households of leader-relay groups become recipients when relayed. */
    static const char *const passes[] = {
        "INSERT INTO recipients(alert_id, member_id, via_group, role, state, rtoken)"
        " SELECT ?1, tg.leader, tg.id, 'leader', 'sent', keng_link_hash('l', ?1, tg.leader)"
        " FROM temp.tg tg JOIN members m ON m.id = tg.leader WHERE tg.relay = 'leader'"
        "  AND ?2 = ?2 AND ?3 = ?3 AND ?4 = ?4 AND ?5 = ?5 AND ?6 = ?6"
        " ON CONFLICT(alert_id, member_id) DO UPDATE SET role = 'leader', state = 'sent',"
        "  via_group = excluded.via_group, rtoken = excluded.rtoken",
        "INSERT INTO recipients(alert_id, member_id, via_group, role, state, rtoken)"
        " SELECT ?1, j.member_id, tg.id, 'member', 'sent', keng_link_hash('r', ?1, j.member_id)"
        " FROM temp.tg tg JOIN memberships j ON j.group_id = tg.id JOIN members m ON m.id = j.member_id"
        " WHERE tg.relay = 'auto' AND " AREA_SQL
        " ON CONFLICT(alert_id, member_id) DO NOTHING",
    };
    for (size_t i = 0; i < 2 && !rc; i++) {
        sqlite3_stmt *s = keng_store_stmt(c->st, passes[i]);
        if (!s) {
            rc = -EIO;
            break;
        }
        sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
        bind_area(s, &ar);
        rc = step_done(s);
    }
    if (rc) goto fail;
    sqlite3_stmt *s = keng_store_stmt(
        c->st, "INSERT OR IGNORE INTO relays(alert_id, group_id, leader_id, state, due_at)"
               " SELECT ?1, id, leader, 'waiting', CASE WHEN ?2 THEN ?3 + relay_timeout END"
               " FROM temp.tg WHERE relay = 'leader' AND leader IS NOT NULL");
    if (!s) {
        rc = -EIO;
        goto fail;
    }
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, immediate);
    sqlite3_bind_int64(s, 3, c->now);
    if ((rc = step_done(s))) goto fail;
    out->relay_groups = sqlite3_changes(keng_store_db(c->st));
    s = keng_store_stmt(c->st, "SELECT count(*), sum(json_array_length(m.contacts) = 0)"
                               " FROM recipients r JOIN members m ON m.id = r.member_id"
                               " WHERE r.alert_id = ?1");
    if (!s) {
        rc = -EIO;
        goto fail;
    }
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) == SQLITE_ROW) {
        out->recipients = sqlite3_column_int(s, 0);
        out->unreachable = sqlite3_column_int(s, 1);
    }
    sqlite3_reset(s);
    /* Households waiting for their leader: in a relay group and not reached otherwise. */
    s = keng_store_stmt(c->st, "SELECT count(DISTINCT j.member_id) FROM temp.tg tg"
                               " JOIN memberships j ON j.group_id = tg.id"
                               " JOIN members m ON m.id = j.member_id"
                               " WHERE tg.relay = 'leader' AND j.member_id <> tg.leader AND " AREA_SQL
                               " AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.alert_id = ?1"
                               "  AND r.member_id = j.member_id)");
    if (!s) {
        rc = -EIO;
        goto fail;
    }
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
    bind_area(s, &ar);
    if (sqlite3_step(s) == SQLITE_ROW) out->held = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    if ((rc = messages_for(c, alert_id, revision, "alert", view, NULL, NULL))) goto fail;
    if ((rc = deliveries_for(c, alert_id, revision, "alert", NULL, NULL, next_at, 0,
                             &out->deliveries)))
        goto fail;
    if ((rc = group_channels(c, alert_id, revision, "alert", view, NULL, next_at, &out->deliveries)))
        goto fail;
    return keng_store_commit(c->st);
fail:
    keng_store_rollback(c->st);
    return rc;
}

int keng_publish_event(const keng_publish_ctx *c, const char *alert_id, int revision,
                       const char *event, const cJSON *view, keng_publish_stats *out)
{
    memset(out, 0, sizeof *out);
    int rc = keng_store_begin(c->st);
    if (rc) return rc;
    const char *urgency = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(view, "urgency"));
    /* A resolution or a cancellation is good news: it may wait for the morning like the
     * alert itself; an update of an immediate alert goes at once. */
    int64_t next_at = keng_publish_not_before(c->cfg, urgency, c->now);
    if (!strcmp(event, "resolve") || !strcmp(event, "cancel")) {
        sqlite3_stmt *s = keng_store_stmt(
            c->st, "UPDATE relays SET state = 'closed' WHERE alert_id = ? AND state = 'waiting'");
        if (!s) rc = -EIO;
        else {
            sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
            rc = step_done(s);
        }
    }
    if (!rc) rc = messages_for(c, alert_id, revision, event, view, NULL, NULL);
    if (!rc)
        rc = deliveries_for(c, alert_id, revision, event, NULL, NULL, next_at, 0, &out->deliveries);
    if (!rc) {
        /* The groups' own chats that got the alert get the news too. */
        sqlite3_stmt *s = keng_store_stmt(
            c->st, "SELECT DISTINCT substr(recipient, 7) FROM deliveries"
                   " WHERE alert_id = ?1 AND event = 'alert' AND recipient LIKE 'group:%'");
        cJSON *gids = cJSON_CreateArray();
        if (s) {
            sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
            while (sqlite3_step(s) == SQLITE_ROW)
                cJSON_AddItemToArray(gids, cJSON_CreateString(keng_store_text(s, 0)));
            sqlite3_reset(s);
        }
        for (const cJSON *g = gids->child; g && !rc; g = g->next)
            rc = group_channels(c, alert_id, revision, event, view, g->valuestring, next_at,
                                &out->deliveries);
        cJSON_Delete(gids);
    }
    if (rc) {
        keng_store_rollback(c->st);
        return rc;
    }
    return keng_store_commit(c->st);
}

int keng_publish_relay(const keng_publish_ctx *c, const char *alert_id, const char *group_id,
                       int revision, const cJSON *view, const char *note, const char *by,
                       keng_publish_stats *out)
{
    memset(out, 0, sizeof *out);
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
    if (!rc) {
        /* The group's households not reached some other way become recipients now. */
        s = keng_store_stmt(
            c->st, "INSERT INTO recipients(alert_id, member_id, via_group, role, state, rtoken)"
                   " SELECT ?1, j.member_id, ?7, 'member', 'sent', keng_link_hash('r', ?1, j.member_id)"
                   " FROM memberships j JOIN members m ON m.id = j.member_id"
                   " JOIN groups g ON g.id = j.group_id"
                   " WHERE j.group_id = ?7 AND j.member_id <> coalesce(g.leader, '') AND " AREA_SQL
                   " ON CONFLICT(alert_id, member_id) DO NOTHING");
        if (!s) rc = -EIO;
        else {
            area ar = area_of(view);
            sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_TRANSIENT);
            bind_area(s, &ar);
            sqlite3_bind_text(s, 7, group_id, -1, SQLITE_TRANSIENT);
            rc = step_done(s);
            out->recipients = sqlite3_changes(keng_store_db(c->st));
        }
    }
    const char *n = note && *note ? note : NULL;
    const char *urgency = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(view, "urgency"));
    int64_t next_at = keng_publish_not_before(c->cfg, urgency, c->now);
    if (!rc) rc = messages_for(c, alert_id, revision, "alert", view, group_id, n);
    if (!rc)
        rc = deliveries_for(c, alert_id, revision, "alert", group_id, n, next_at, 1,
                            &out->deliveries);
    if (rc) {
        keng_store_rollback(c->st);
        return rc;
    }
    return keng_store_commit(c->st);
}
