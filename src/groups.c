#include "keng/groups.h"

#include "keng/norm.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* alerts.relay_timeout_s: for groups that do not give their own (set once at start). */
static int default_relay_timeout = 600;

void keng_groups_set_default_relay_timeout(int seconds)
{
    if (seconds >= 30 && seconds <= 86400) default_relay_timeout = seconds;
}

static const char *const group_kinds[] = {"residential", "inter_household", "pawnshop",
                                          "guesthouse",  "landlord",        "other"};

static int verr(keng_verr *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int verr(keng_verr *e, const char *field, const char *fmt, ...)
{
    snprintf(e->field, sizeof e->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

int keng_groups_valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                 (i > 0 && (ch == '-' || ch == '_' || ch == '.'));
        if (!ok) return 0;
    }
    return 1;
}

static int in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return 1;
    return 0;
}

/* A string member: NULL when absent; -1 via *bad when present but not a valid string. */
static const char *str_field(const cJSON *o, const char *name, size_t maxlen, int required,
                             keng_verr *e, const char *prefix, int *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    char f[96];
    snprintf(f, sizeof f, "%s%s", prefix, name);
    if (!v || cJSON_IsNull(v)) {
        if (required) {
            verr(e, f, "%s is required", f);
            *bad = 1;
        }
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        verr(e, f, "%s must be a string", f);
        *bad = 1;
        return NULL;
    }
    size_t n = strlen(v->valuestring);
    if ((required && n == 0) || n > maxlen) {
        verr(e, f, "%s must be 1 to %zu bytes long", f, maxlen);
        *bad = 1;
        return NULL;
    }
    if (!keng_utf8_valid(v->valuestring, n)) {
        verr(e, f, "%s is not valid UTF-8", f);
        *bad = 1;
        return NULL;
    }
    return v->valuestring;
}

/* Refuses unknown fields and fields given twice (cJSON keeps both and lookups see only the
 * first: "members" twice would silently drop a list). n <= 32: a bit per known field. */
static int check_unknown(const cJSON *o, const char *const *known, size_t n, const char *prefix,
                         keng_verr *e)
{
    uint32_t seen = 0;
    for (const cJSON *it = o->child; it; it = it->next) {
        size_t k = 0;
        while (k < n && strcmp(it->string, known[k]) != 0) k++;
        if (k < n && !(seen & (UINT32_C(1) << k))) {
            seen |= UINT32_C(1) << k;
            continue;
        }
        char f[96];
        snprintf(f, sizeof f, "%s%s", prefix, it->string);
        if (k == n) return verr(e, f, "unknown field %s (check the spelling)", f);
        return verr(e, f, "%s appears twice; give it once", f);
    }
    return 0;
}

int keng_contact_validate(const cJSON *c, const char *where, keng_verr *e)
{
    static const char *const known[] = {"type", "url", "secret", "user_id", "chat_id", "address",
                                        "label"};
    char p[96];
    snprintf(p, sizeof p, "%s.", where);
    if (!cJSON_IsObject(c)) return verr(e, where, "%s must be an object with a type", where);
    if (check_unknown(c, known, sizeof known / sizeof known[0], p, e)) return -EINVAL;
    int bad = 0;
    const char *type = str_field(c, "type", 32, 1, e, p, &bad);
    if (bad) return -EINVAL;
    str_field(c, "label", 100, 0, e, p, &bad);
    if (bad) return -EINVAL;
    if (!strcmp(type, "webhook")) {
        const char *url = str_field(c, "url", 2000, 1, e, p, &bad);
        if (bad) return -EINVAL;
        if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
            return verr(e, "url", "%surl must start with http:// or https://", p);
        str_field(c, "secret", 256, 0, e, p, &bad);
    } else if (!strcmp(type, "zalo_oa")) {
        str_field(c, "user_id", 64, 1, e, p, &bad);
    } else if (!strcmp(type, "telegram")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "chat_id");
        if (!cJSON_IsNumber(id)) str_field(c, "chat_id", 64, 1, e, p, &bad);
    } else if (!strcmp(type, "email")) {
        const char *a = str_field(c, "address", 254, 1, e, p, &bad);
        if (!bad && (!strchr(a, '@') || strpbrk(a, " \r\n<>,")))
            return verr(e, "address", "%saddress is not an e-mail address", p);
    } else if (strcmp(type, "file") != 0) {
        return verr(e, "type", "%stype must be webhook, zalo_oa, telegram, email or file", p);
    }
    return bad ? -EINVAL : 0;
}

static int contacts_validate(cJSON *o, const char *field, keng_verr *e)
{
    cJSON *cs = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!cs) {
        cJSON_AddItemToObject(o, field, cJSON_CreateArray());
        return 0;
    }
    if (!cJSON_IsArray(cs) || cJSON_GetArraySize(cs) > 10)
        return verr(e, field, "%s must be a list of at most 10 contacts", field);
    int i = 0;
    for (const cJSON *c = cs->child; c; c = c->next, i++) {
        char w[64];
        snprintf(w, sizeof w, "%s[%d]", field, i);
        if (keng_contact_validate(c, w, e)) return -EINVAL;
    }
    return 0;
}

static int number_field(cJSON *o, const char *name, double lo, double hi, keng_verr *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return verr(e, name, "%s must be a number from %g to %g", name, lo, hi);
    return 0;
}

int keng_member_validate(cJSON *m, int allow_groups, keng_verr *e)
{
    static const char *const known[] = {"id",  "name", "address",  "phone",  "lang",
                                        "camera", "lat", "lon", "contacts", "groups"};
    if (!cJSON_IsObject(m)) return verr(e, "member", "a member must be an object");
    if (check_unknown(m, known, sizeof known / sizeof known[0] - !allow_groups, "", e))
        return -EINVAL;
    int bad = 0;
    const char *id = str_field(m, "id", 64, 1, e, "", &bad);
    if (bad) return -EINVAL;
    if (!keng_groups_valid_id(id))
        return verr(e, "id", "id \"%.64s\" may hold only a-z, 0-9, '.', '_' and '-'", id);
    str_field(m, "name", 200, 1, e, "", &bad);
    if (!bad) str_field(m, "address", 300, 0, e, "", &bad);
    if (bad) return -EINVAL;
    const char *phone = str_field(m, "phone", 40, 0, e, "", &bad);
    if (bad) return -EINVAL;
    if (phone && *phone) {
        char norm[32];
        if (keng_norm_phone(phone, norm, sizeof norm))
            return verr(e, "phone",
                        "phone \"%.40s\" is not a Vietnamese number (e.g. 0905 123 456)", phone);
        cJSON_ReplaceItemInObjectCaseSensitive(m, "phone", cJSON_CreateString(norm));
    }
    const char *lang = str_field(m, "lang", 8, 0, e, "", &bad);
    if (bad) return -EINVAL;
    if (!lang) cJSON_AddStringToObject(m, "lang", "vi");
    else if (strcmp(lang, "vi") && strcmp(lang, "en"))
        return verr(e, "lang", "lang must be vi or en");
    const cJSON *cam = cJSON_GetObjectItemCaseSensitive(m, "camera");
    if (!cam) cJSON_AddFalseToObject(m, "camera");
    else if (!cJSON_IsBool(cam)) return verr(e, "camera", "camera must be true or false");
    if (number_field(m, "lat", -90, 90, e) || number_field(m, "lon", -180, 180, e))
        return -EINVAL;
    if (contacts_validate(m, "contacts", e)) return -EINVAL;
    const cJSON *gs = cJSON_GetObjectItemCaseSensitive(m, "groups");
    if (gs) {
        if (!cJSON_IsArray(gs)) return verr(e, "groups", "groups must be a list of group ids");
        for (const cJSON *g = gs->child; g; g = g->next)
            if (!cJSON_IsString(g) || !keng_groups_valid_id(g->valuestring))
                return verr(e, "groups", "groups must be a list of group ids");
    }
    return 0;
}

int keng_group_validate(cJSON *g, keng_verr *e)
{
    static const char *const known[] = {"id",    "name",          "kind",     "label",  "parent",
                                        "leader", "relay",        "relay_timeout", "channels",
                                        "members"};
    if (!cJSON_IsObject(g)) return verr(e, "group", "a group must be a JSON object");
    if (check_unknown(g, known, sizeof known / sizeof known[0], "", e)) return -EINVAL;
    int bad = 0;
    const char *id = str_field(g, "id", 64, 1, e, "", &bad);
    if (bad) return -EINVAL;
    if (!keng_groups_valid_id(id))
        return verr(e, "id", "id \"%.64s\" may hold only a-z, 0-9, '.', '_' and '-'", id);
    str_field(g, "name", 200, 1, e, "", &bad);
    if (bad) return -EINVAL;
    const char *kind = str_field(g, "kind", 32, 1, e, "", &bad);
    if (bad) return -EINVAL;
    if (!in_list(kind, group_kinds, sizeof group_kinds / sizeof group_kinds[0]))
        return verr(e, "kind", "kind must be residential, inter_household, pawnshop, guesthouse, "
                               "landlord or other");
    const char *label = str_field(g, "label", 100, 0, e, "", &bad);
    if (bad) return -EINVAL;
    if (!strcmp(kind, "other") && !label)
        return verr(e, "label", "a group of kind other needs a label (e.g. \"trường học\")");
    const char *parent = str_field(g, "parent", 64, 0, e, "", &bad);
    if (bad) return -EINVAL;
    if (parent && (!keng_groups_valid_id(parent) || !strcmp(parent, id)))
        return verr(e, "parent", "parent must be the id of another group");
    const char *leader = str_field(g, "leader", 64, 0, e, "", &bad);
    if (bad) return -EINVAL;
    const char *relay = str_field(g, "relay", 16, 0, e, "", &bad);
    if (bad) return -EINVAL;
    if (!relay) cJSON_AddStringToObject(g, "relay", "auto");
    else if (strcmp(relay, "auto") && strcmp(relay, "leader"))
        return verr(e, "relay", "relay must be auto or leader");
    if (relay && !strcmp(relay, "leader") && !leader)
        return verr(e, "leader", "relay: leader needs a leader (a member id of the group)");
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(g, "relay_timeout");
    if (!rt) cJSON_AddNumberToObject(g, "relay_timeout", default_relay_timeout);
    else if (!cJSON_IsNumber(rt) || rt->valuedouble < 30 || rt->valuedouble > 86400 ||
             rt->valuedouble != (double)(int)rt->valuedouble)
        return verr(e, "relay_timeout", "relay_timeout must be whole seconds from 30 to 86400");
    if (contacts_validate(g, "channels", e)) return -EINVAL;
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(g, "members");
    if (ms && !cJSON_IsArray(ms))
        return verr(e, "members", "members must be a list of member objects or ids");
    /* The leader must be listed in the same object, whether or not "members" is there: the
     * API refuses a leader without members too, and a leader checked nowhere is how a relay
     * group ends up relaying through nobody. */
    if (leader) {
        int found = 0;
        for (const cJSON *m = ms ? ms->child : NULL; m && !found; m = m->next) {
            const char *mid = cJSON_IsString(m) ? m->valuestring
                              : cJSON_IsObject(m)
                                  ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"))
                                  : NULL;
            found = mid && !strcmp(mid, leader);
        }
        if (!ms)
            return verr(e, "leader",
                        "the leader %.64s must be listed among the group's members, but the group "
                        "has no members list (add \"members\": [\"%.64s\", …])",
                        leader, leader);
        if (!found)
            return verr(e, "leader", "the leader %.64s is not among the group's members", leader);
    }
    return 0;
}

static const char *jstr(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static void bind_opt_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static void bind_json(sqlite3_stmt *s, int i, const cJSON *v)
{
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    if (t)
        sqlite3_bind_text(s, i, t, -1, cJSON_free);
    else
        sqlite3_bind_text(s, i, "[]", -1, SQLITE_STATIC);
}

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : keng_store_errno(rc);
}

int keng_member_upsert(keng_store *st, const cJSON *m, const char *source)
{
    sqlite3_stmt *s = keng_store_stmt(
        st, "INSERT INTO members(id, name, address, phone, lang, camera, lat, lon, contacts, source,"
            " created_at, updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?11)"
            " ON CONFLICT(id) DO UPDATE SET name=?2, address=?3, phone=?4, lang=?5, camera=?6,"
            " lat=?7, lon=?8, contacts=?9, source=?10, updated_at=?11");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, jstr(m, "id"), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, jstr(m, "name"), -1, SQLITE_TRANSIENT);
    bind_opt_text(s, 3, jstr(m, "address"));
    bind_opt_text(s, 4, jstr(m, "phone"));
    sqlite3_bind_text(s, 5, jstr(m, "lang") ? jstr(m, "lang") : "vi", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 6, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "camera")));
    const cJSON *lat = cJSON_GetObjectItemCaseSensitive(m, "lat");
    const cJSON *lon = cJSON_GetObjectItemCaseSensitive(m, "lon");
    if (cJSON_IsNumber(lat)) sqlite3_bind_double(s, 7, lat->valuedouble);
    if (cJSON_IsNumber(lon)) sqlite3_bind_double(s, 8, lon->valuedouble);
    bind_json(s, 9, cJSON_GetObjectItemCaseSensitive(m, "contacts"));
    sqlite3_bind_text(s, 10, source, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 11, (sqlite3_int64)time(NULL));
    return step_done(s);
}

int keng_group_upsert(keng_store *st, const cJSON *g, const char *source)
{
    sqlite3_stmt *s = keng_store_stmt(
        st, "INSERT INTO groups(id, name, kind, label, parent, leader, relay, relay_timeout,"
            " channels, source, created_at, updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?11)"
            " ON CONFLICT(id) DO UPDATE SET name=?2, kind=?3, label=?4, parent=?5, leader=?6,"
            " relay=?7, relay_timeout=?8, channels=?9, source=?10, updated_at=?11");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, jstr(g, "id"), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, jstr(g, "name"), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, jstr(g, "kind"), -1, SQLITE_TRANSIENT);
    bind_opt_text(s, 4, jstr(g, "label"));
    bind_opt_text(s, 5, jstr(g, "parent"));
    bind_opt_text(s, 6, jstr(g, "leader"));
    sqlite3_bind_text(s, 7, jstr(g, "relay") ? jstr(g, "relay") : "auto", -1, SQLITE_TRANSIENT);
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(g, "relay_timeout");
    sqlite3_bind_int(s, 8, cJSON_IsNumber(rt) ? rt->valueint : default_relay_timeout);
    bind_json(s, 9, cJSON_GetObjectItemCaseSensitive(g, "channels"));
    sqlite3_bind_text(s, 10, source, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 11, (sqlite3_int64)time(NULL));
    return step_done(s);
}

int keng_group_add_member(keng_store *st, const char *group_id, const char *member_id)
{
    sqlite3_stmt *s = keng_store_stmt(
        st, "INSERT OR IGNORE INTO memberships(group_id, member_id) VALUES (?, ?)");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, group_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, member_id, -1, SQLITE_TRANSIENT);
    return step_done(s);
}

int keng_group_set_members(keng_store *st, const char *group_id, const cJSON *members)
{
    sqlite3_stmt *s = keng_store_stmt(st, "DELETE FROM memberships WHERE group_id = ?");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, group_id, -1, SQLITE_TRANSIENT);
    int rc = step_done(s);
    for (const cJSON *m = members ? members->child : NULL; m && !rc; m = m->next) {
        const char *mid = cJSON_IsString(m) ? m->valuestring : jstr(m, "id");
        if (mid) rc = keng_group_add_member(st, group_id, mid);
    }
    return rc;
}

int keng_group_set_file_members(keng_store *st, const char *group_id, const char *const *ids,
                                size_t n)
{
    /* Correlated, so each of the group's memberships costs one primary-key lookup in members,
     * not a scan of every file member of the ward per group. */
    sqlite3_stmt *s = keng_store_stmt(
        st, "DELETE FROM memberships WHERE group_id = ?1 AND EXISTS (SELECT 1 FROM members m"
            " WHERE m.id = memberships.member_id AND m.source GLOB 'file:*')");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, group_id, -1, SQLITE_TRANSIENT);
    int rc = step_done(s);
    for (size_t i = 0; i < n && !rc; i++) rc = keng_group_add_member(st, group_id, ids[i]);
    return rc;
}

int keng_member_set_groups(keng_store *st, const char *member_id, const cJSON *groups)
{
    sqlite3_stmt *s = keng_store_stmt(st, "DELETE FROM memberships WHERE member_id = ?");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, member_id, -1, SQLITE_TRANSIENT);
    int rc = step_done(s);
    for (const cJSON *g = groups ? groups->child : NULL; g && !rc; g = g->next)
        rc = keng_group_add_member(st, g->valuestring, member_id);
    return rc;
}

static int exists(keng_store *st, const char *sql, const char *id)
{
    sqlite3_stmt *s = keng_store_stmt(st, sql);
    if (!s) return 0;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int found = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return found;
}

int keng_group_exists(keng_store *st, const char *id)
{
    return exists(st, "SELECT 1 FROM groups WHERE id = ?", id);
}

int keng_member_exists(keng_store *st, const char *id)
{
    return exists(st, "SELECT 1 FROM members WHERE id = ?", id);
}

int keng_group_parent_cycle(keng_store *st, const char *id, const char *parent)
{
    char cur[128];
    snprintf(cur, sizeof cur, "%s", parent);
    for (int hops = 0; hops < 64; hops++) {
        if (!strcmp(cur, id)) return 1;
        sqlite3_stmt *s = keng_store_stmt(st, "SELECT parent FROM groups WHERE id = ?");
        if (!s) return 0;
        sqlite3_bind_text(s, 1, cur, -1, SQLITE_TRANSIENT);
        int more = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL;
        if (more) snprintf(cur, sizeof cur, "%s", keng_store_text(s, 0));
        sqlite3_reset(s);
        if (!more) return 0;
    }
    return 1; /* deeper than any real ward: treat as a cycle */
}

static cJSON *parse_col_json(sqlite3_stmt *s, int col)
{
    cJSON *j = cJSON_Parse(keng_store_text(s, col));
    return j ? j : cJSON_CreateArray();
}

static cJSON *group_row(sqlite3_stmt *s)
{
    /* id, name, kind, label, parent, leader, relay, relay_timeout, channels, source, nmembers */
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "id", keng_store_text(s, 0));
    cJSON_AddStringToObject(g, "name", keng_store_text(s, 1));
    cJSON_AddStringToObject(g, "kind", keng_store_text(s, 2));
    if (sqlite3_column_type(s, 3) != SQLITE_NULL)
        cJSON_AddStringToObject(g, "label", keng_store_text(s, 3));
    if (sqlite3_column_type(s, 4) != SQLITE_NULL)
        cJSON_AddStringToObject(g, "parent", keng_store_text(s, 4));
    if (sqlite3_column_type(s, 5) != SQLITE_NULL)
        cJSON_AddStringToObject(g, "leader", keng_store_text(s, 5));
    cJSON_AddStringToObject(g, "relay", keng_store_text(s, 6));
    cJSON_AddNumberToObject(g, "relay_timeout", sqlite3_column_int(s, 7));
    cJSON_AddItemToObject(g, "channels", parse_col_json(s, 8));
    cJSON_AddStringToObject(g, "source", keng_store_text(s, 9));
    cJSON_AddNumberToObject(g, "member_count", sqlite3_column_int(s, 10));
    return g;
}

#define GROUP_COLS                                                                                 \
    "g.id, g.name, g.kind, g.label, g.parent, g.leader, g.relay, g.relay_timeout, g.channels,"    \
    " g.source, (SELECT count(*) FROM memberships m WHERE m.group_id = g.id)"

cJSON *keng_group_get(keng_store *st, const char *id, int with_members)
{
    sqlite3_stmt *s = keng_store_stmt(st, "SELECT " GROUP_COLS " FROM groups g WHERE g.id = ?");
    if (!s) return NULL;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    cJSON *g = sqlite3_step(s) == SQLITE_ROW ? group_row(s) : NULL;
    sqlite3_reset(s);
    if (g && with_members) {
        cJSON *ms = cJSON_AddArrayToObject(g, "members");
        s = keng_store_stmt(st, "SELECT member_id FROM memberships WHERE group_id = ?"
                                " ORDER BY member_id");
        if (s) {
            sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
            while (sqlite3_step(s) == SQLITE_ROW)
                cJSON_AddItemToArray(ms, cJSON_CreateString(keng_store_text(s, 0)));
            sqlite3_reset(s);
        }
        cJSON *kids = cJSON_AddArrayToObject(g, "children");
        s = keng_store_stmt(st, "SELECT id FROM groups WHERE parent = ? ORDER BY id");
        if (s) {
            sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
            while (sqlite3_step(s) == SQLITE_ROW)
                cJSON_AddItemToArray(kids, cJSON_CreateString(keng_store_text(s, 0)));
            sqlite3_reset(s);
        }
    }
    return g;
}

static int count_rows(keng_store *st, const char *sql, const char *a, const char *b)
{
    sqlite3_stmt *s = keng_store_stmt(st, sql);
    if (!s) return 0;
    bind_opt_text(s, 1, a);
    bind_opt_text(s, 2, b);
    int n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_reset(s);
    return n;
}

cJSON *keng_groups_list(keng_store *st, const char *kind, const char *parent, int limit,
                        int offset, int *total)
{
    *total = count_rows(st, "SELECT count(*) FROM groups WHERE (?1 IS NULL OR kind = ?1)"
                            " AND (?2 IS NULL OR parent = ?2)",
                        kind, parent);
    cJSON *items = cJSON_CreateArray();
    sqlite3_stmt *s = keng_store_stmt(st, "SELECT " GROUP_COLS " FROM groups g"
                                          " WHERE (?1 IS NULL OR g.kind = ?1)"
                                          " AND (?2 IS NULL OR g.parent = ?2)"
                                          " ORDER BY g.id LIMIT ?3 OFFSET ?4");
    if (!s) return items;
    bind_opt_text(s, 1, kind);
    bind_opt_text(s, 2, parent);
    sqlite3_bind_int(s, 3, limit);
    sqlite3_bind_int(s, 4, offset);
    while (sqlite3_step(s) == SQLITE_ROW) cJSON_AddItemToArray(items, group_row(s));
    sqlite3_reset(s);
    return items;
}

static cJSON *member_row(sqlite3_stmt *s)
{
    /* id, name, address, phone, lang, camera, lat, lon, contacts, source, groups(csv) */
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", keng_store_text(s, 0));
    cJSON_AddStringToObject(m, "name", keng_store_text(s, 1));
    if (sqlite3_column_type(s, 2) != SQLITE_NULL)
        cJSON_AddStringToObject(m, "address", keng_store_text(s, 2));
    if (sqlite3_column_type(s, 3) != SQLITE_NULL)
        cJSON_AddStringToObject(m, "phone", keng_store_text(s, 3));
    cJSON_AddStringToObject(m, "lang", keng_store_text(s, 4));
    cJSON_AddBoolToObject(m, "camera", sqlite3_column_int(s, 5));
    if (sqlite3_column_type(s, 6) != SQLITE_NULL)
        cJSON_AddNumberToObject(m, "lat", sqlite3_column_double(s, 6));
    if (sqlite3_column_type(s, 7) != SQLITE_NULL)
        cJSON_AddNumberToObject(m, "lon", sqlite3_column_double(s, 7));
    cJSON_AddItemToObject(m, "contacts", parse_col_json(s, 8));
    cJSON_AddStringToObject(m, "source", keng_store_text(s, 9));
    cJSON *gs = cJSON_AddArrayToObject(m, "groups");
    const char *csv = keng_store_text(s, 10);
    while (*csv) {
        const char *comma = strchr(csv, ',');
        size_t n = comma ? (size_t)(comma - csv) : strlen(csv);
        char id[128];
        snprintf(id, sizeof id, "%.*s", (int)n, csv);
        cJSON_AddItemToArray(gs, cJSON_CreateString(id));
        csv += n + (comma ? 1 : 0);
    }
    return m;
}

#define MEMBER_COLS                                                                                \
    "m.id, m.name, m.address, m.phone, m.lang, m.camera, m.lat, m.lon, m.contacts, m.source,"     \
    " (SELECT group_concat(group_id) FROM (SELECT group_id FROM memberships x"                    \
    "  WHERE x.member_id = m.id ORDER BY group_id))"

cJSON *keng_member_get(keng_store *st, const char *id)
{
    sqlite3_stmt *s = keng_store_stmt(st, "SELECT " MEMBER_COLS " FROM members m WHERE m.id = ?");
    if (!s) return NULL;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    cJSON *m = sqlite3_step(s) == SQLITE_ROW ? member_row(s) : NULL;
    sqlite3_reset(s);
    return m;
}

cJSON *keng_members_list(keng_store *st, const char *group, int limit, int offset, int *total)
{
    cJSON *items = cJSON_CreateArray();
    sqlite3_stmt *s;
    if (group) {
        *total = count_rows(st, "SELECT count(*) FROM memberships WHERE group_id = ?1", group,
                            NULL);
        s = keng_store_stmt(st, "SELECT " MEMBER_COLS " FROM memberships j"
                                " JOIN members m ON m.id = j.member_id WHERE j.group_id = ?1"
                                " ORDER BY m.id LIMIT ?2 OFFSET ?3");
    } else {
        *total = count_rows(st, "SELECT count(*) FROM members", NULL, NULL);
        s = keng_store_stmt(st, "SELECT " MEMBER_COLS " FROM members m WHERE ?1 IS NULL"
                                " ORDER BY m.id LIMIT ?2 OFFSET ?3");
    }
    if (!s) return items;
    bind_opt_text(s, 1, group);
    sqlite3_bind_int(s, 2, limit);
    sqlite3_bind_int(s, 3, offset);
    while (sqlite3_step(s) == SQLITE_ROW) cJSON_AddItemToArray(items, member_row(s));
    sqlite3_reset(s);
    return items;
}

int keng_group_delete(keng_store *st, const char *id)
{
    if (!keng_group_exists(st, id)) return -ENOENT;
    if (exists(st, "SELECT 1 FROM groups WHERE parent = ?", id)) return -EBUSY;
    int rc = keng_store_begin(st);
    if (rc) return rc;
    sqlite3_stmt *s = keng_store_stmt(st, "DELETE FROM memberships WHERE group_id = ?");
    if (s) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        rc = step_done(s);
    }
    s = keng_store_stmt(st, "DELETE FROM groups WHERE id = ?");
    if (!rc && s) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        rc = step_done(s);
    }
    if (rc) {
        keng_store_rollback(st);
        return rc;
    }
    return keng_store_commit(st);
}
