#include "keng/outbox.h"

#include "keng/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int step_done(keng_store *st, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        keng_error("outbox: %s", sqlite3_errmsg(keng_store_db(st)));
        sqlite3_reset(s);
        return keng_store_errno(rc);
    }
    sqlite3_reset(s);
    return 0;
}

int keng_outbox_claim(keng_store *st, int64_t now, int limit,
                      void (*fn)(void *ud, const keng_outbox_row *row), void *ud)
{
    if (limit <= 0) return 0;
    /* Read the due rows in order (the partial index delivery_state_due), then mark exactly the
     * rows read inflight, inside one transaction. The mark goes by runs of consecutive ids (a
     * publication's rows are consecutive: one statement per run, the rowid range, no subquery
     * and no temporary table; a fifth fewer instructions per row than one `id IN (SELECT …
     * LIMIT n)`). The LEFT JOIN: a state without its delivery row, which nothing makes, is still
     * handed out (and goes dead unloaded) rather than claimed forever.
     * UPDATE … RETURNING did it in one statement but buffers every returned row first; this
     * measured a quarter fewer instructions. */
    int64_t *ids = malloc((size_t)limit * sizeof *ids);
    if (!ids) return -ENOMEM;
    int rc = keng_store_begin(st);
    if (rc) {
        free(ids);
        return rc;
    }
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT id, alert_id, revision, event, recipient, channel, contact_index, address,"
            " message_id, link_kind, idem_key, s.attempts, created_at FROM delivery_state s"
            " LEFT JOIN deliveries USING (id, alert_id) WHERE s.status = 'pending'"
            " AND s.next_at <= ?1 ORDER BY s.next_at, s.id LIMIT ?2");
    if (!s) {
        rc = -EIO;
        goto fail;
    }
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int(s, 2, limit);
    int n = 0;
    while (n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *lk = keng_store_text(s, 9);
        keng_outbox_row r = {
            .id = sqlite3_column_int64(s, 0),
            .alert_id = keng_store_text(s, 1),
            .revision = sqlite3_column_int64(s, 2),
            .event = keng_store_text(s, 3),
            .recipient = keng_store_text(s, 4),
            .channel = keng_store_text(s, 5),
            .contact_index = sqlite3_column_int(s, 6),
            .address = keng_store_text(s, 7),
            .message_id = sqlite3_column_int64(s, 8),
            .link_kind = lk[0],
            .idem_key = keng_store_text(s, 10),
            .attempts = sqlite3_column_int(s, 11),
            .created_at = sqlite3_column_int64(s, 12),
        };
        ids[n++] = r.id;
        fn(ud, &r);
    }
    if (n == limit && rc == SQLITE_ROW) rc = SQLITE_DONE; /* LIMIT ?2: no further row */
    if (rc != SQLITE_DONE) {
        keng_error("outbox: claim: %s", sqlite3_errmsg(keng_store_db(st)));
        sqlite3_reset(s);
        rc = keng_store_errno(rc) ? keng_store_errno(rc) : -EIO;
        goto fail;
    }
    sqlite3_reset(s);
    rc = 0;
    s = n > 0 ? keng_store_stmt(st, "UPDATE delivery_state SET status = 'inflight'"
                                    " WHERE id BETWEEN ?1 AND ?2")
              : NULL;
    if (n > 0 && !s) rc = -EIO;
    /* Rows come in (next_at, id) order; a run is ids read one after another that follow each
     * other, so every id in [first, last] was read (and is pending: the same transaction). */
    int marked = 0;
    for (int i = 0; rc == 0 && i < n;) {
        int k = i;
        while (k + 1 < n && ids[k + 1] == ids[k] + 1)
            k++;
        sqlite3_bind_int64(s, 1, ids[i]);
        sqlite3_bind_int64(s, 2, ids[k]);
        if ((rc = step_done(st, s)) == 0) marked += sqlite3_changes(keng_store_db(st));
        i = k + 1;
    }
    if (rc == 0 && marked != n) rc = -EIO; /* cannot happen with one writer; never hand out twice */
    if (rc) goto fail;
    free(ids);
    rc = keng_store_commit(st);
    return rc ? rc : n;
fail:
    free(ids);
    keng_store_rollback(st);
    return rc;
}

int keng_outbox_write(keng_store *st, const keng_outbox_result *res, int n)
{
    if (n <= 0) return 0;
    int rc = keng_store_begin(st);
    if (rc) return rc;
    static const char *const up_sql =
        "UPDATE delivery_state SET status = ?2, attempts = ?3, next_at = ?4,"
        " last_code = CASE WHEN ?5 = -1 THEN last_code ELSE ?5 END,"
        " last_error = COALESCE(?6, last_error), delivered_at = ?7, latency_ms = ?8 WHERE id = ?1";
    static const char *const names[] = {"pending", "delivered", "dead", "superseded"};
    /* Looked up once, not per row (the cache compares SQL text); step_done resets it and the
     * bindings are cleared for each row, as keng_store_stmt would: ?5 to ?8 are optional. */
    sqlite3_stmt *s = keng_store_stmt(st, up_sql);
    if (!s) rc = -EIO;
    for (int i = 0; rc == 0 && i < n; i++) {
        const keng_outbox_result *r = &res[i];
        if (i) sqlite3_clear_bindings(s);
        sqlite3_bind_int64(s, 1, r->id);
        sqlite3_bind_text(s, 2, names[r->status], -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, r->attempts);
        sqlite3_bind_int64(s, 4, r->next_at);
        if (r->last_code) sqlite3_bind_int(s, 5, r->last_code);
        if (r->error) sqlite3_bind_text(s, 6, r->error, -1, SQLITE_STATIC);
        if (r->status == KENG_OUTBOX_DELIVERED) {
            sqlite3_bind_int64(s, 7, r->delivered_at);
            sqlite3_bind_int64(s, 8, r->latency_ms);
        }
        rc = step_done(st, s);
    }
    if (rc) {
        keng_store_rollback(st);
        return rc;
    }
    return keng_store_commit(st);
}

/* The contact list that reaches a recipient: members.contacts, or groups.channels for "group:ID".
 * Returns a parsed array (owned by the caller) or NULL. */
static cJSON *recipient_contacts(keng_store *st, const char *recipient)
{
    int is_group = strncmp(recipient, "group:", 6) == 0;
    sqlite3_stmt *s = keng_store_stmt(st, is_group ? "SELECT channels FROM groups WHERE id = ?1"
                                                   : "SELECT contacts FROM members WHERE id = ?1");
    if (!s) return NULL;
    sqlite3_bind_text(s, 1, is_group ? recipient + 6 : recipient, -1, SQLITE_STATIC);
    cJSON *arr = NULL;
    if (sqlite3_step(s) == SQLITE_ROW) arr = cJSON_Parse(keng_store_text(s, 0));
    sqlite3_reset(s);
    if (arr && !cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        arr = NULL;
    }
    return arr;
}

/* The message for (old message's alert/revision/event/lang/link/note, new channel): the rendered
 * one when publish made it, else a copy of the old text under the new channel. */
static int64_t fallback_message(keng_store *st, int64_t old_id, const char *channel)
{
    sqlite3_stmt *s =
        keng_store_stmt(st, "SELECT n.id FROM messages o JOIN messages n ON n.alert_id = o.alert_id"
                            " AND n.revision = o.revision AND n.event = o.event AND n.lang = o.lang"
                            " AND n.link_kind = o.link_kind AND n.note IS o.note AND n.channel = ?2"
                            " WHERE o.id = ?1");
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, old_id);
    sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    int64_t id = 0;
    if (sqlite3_step(s) == SQLITE_ROW) id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (id) return id;
    s = keng_store_stmt(st, "INSERT INTO messages (alert_id, revision, event, lang, channel,"
                            " link_kind, text, subject, html, alert_json, photos, note)"
                            " SELECT alert_id, revision, event, lang, ?2, link_kind, text, subject,"
                            " html, alert_json, photos, note FROM messages WHERE id = ?1");
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, old_id);
    sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    int rc = step_done(st, s);
    if (rc) return rc;
    if (sqlite3_changes(keng_store_db(st)) == 0) return -ENOENT;
    return sqlite3_last_insert_rowid(keng_store_db(st));
}

int keng_outbox_fallback(keng_store *st, int64_t delivery_id, int64_t now)
{
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT alert_id, revision, event, recipient, contact_index, message_id, link_kind"
            " FROM deliveries WHERE id = ?1");
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, delivery_id);
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return -ENOENT;
    }
    char *alert_id = strdup(keng_store_text(s, 0));
    int64_t revision = sqlite3_column_int64(s, 1);
    char *event = strdup(keng_store_text(s, 2));
    char *recipient = strdup(keng_store_text(s, 3));
    int index = sqlite3_column_int(s, 4) + 1;
    int64_t old_msg = sqlite3_column_int64(s, 5);
    char *link_kind = strdup(keng_store_text(s, 6));
    sqlite3_reset(s);
    int rc = 0;
    cJSON *contacts = NULL;
    char *address = NULL;
    if (!alert_id || !event || !recipient || !link_kind) {
        rc = -ENOMEM;
        goto out;
    }
    contacts = recipient_contacts(st, recipient);
    cJSON *c = contacts ? cJSON_GetArrayItem(contacts, index) : NULL;
    const char *type = c ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "type")) : NULL;
    if (!type) goto out; /* no next contact: the delivery stays dead, visible to the officer */
    address = cJSON_PrintUnformatted(c);
    if (!address) {
        rc = -ENOMEM;
        goto out;
    }
    /* Already there (a redelivery fails again the same way): that row was re-queued with the
     * rest; a second one under another key would reach the household twice. */
    s = keng_store_stmt(st, "SELECT 1 FROM deliveries WHERE alert_id = ?1 AND recipient = ?2"
                            " AND revision = ?3 AND event = ?4 AND contact_index = ?5");
    if (!s) {
        rc = -EIO;
        goto out;
    }
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, recipient, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, revision);
    sqlite3_bind_text(s, 4, event, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 5, index);
    int exists = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    if (exists) goto out;
    int64_t msg = fallback_message(st, old_msg, type);
    if (msg < 0) {
        rc = (int)msg;
        goto out;
    }
    for (int attempt = 0; attempt < 2 && rc == 0; attempt++) {
        char key[512];
        /* Two contacts of the same channel (two e-mail addresses) would share a key. */
        int kn = attempt == 0 ? snprintf(key, sizeof key, "%s.%lld.%s.%s", alert_id,
                                         (long long)revision, recipient, type)
                              : snprintf(key, sizeof key, "%s.%lld.%s.%s.%d", alert_id,
                                         (long long)revision, recipient, type, index);
        if (kn < 0 || (size_t)kn >= sizeof key) {
            rc = -ENAMETOOLONG;
            break;
        }
        s = keng_store_stmt(st,
                            "INSERT INTO deliveries (alert_id, revision, event, recipient, channel,"
                            " contact_index, address, message_id, link_kind, idem_key, created_at)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                            " ON CONFLICT (idem_key) DO NOTHING");
        if (!s) {
            rc = -EIO;
            break;
        }
        sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, revision);
        sqlite3_bind_text(s, 3, event, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, recipient, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, type, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 6, index);
        sqlite3_bind_text(s, 7, address, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 8, msg);
        sqlite3_bind_text(s, 9, link_kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 10, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 11, now);
        /* The row and its state together or neither: a row left without its state would
         * never be sent, and would stop the next fallback (it exists). */
        if ((rc = keng_store_exec(st, "SAVEPOINT fallback"))) break;
        if ((rc = step_done(st, s)) == 0 && sqlite3_changes(keng_store_db(st)) > 0) {
            rc = keng_outbox_add_state(st, sqlite3_last_insert_rowid(keng_store_db(st)), 0);
            if (rc == 0) rc = 1;
        }
        if (rc < 0) keng_store_exec(st, "ROLLBACK TO fallback");
        int rr = keng_store_exec(st, "RELEASE fallback");
        if (rc >= 0 && rr) rc = rr;
        if (rc) break;
    }
out:
    free(alert_id);
    free(event);
    free(recipient);
    free(link_kind);
    free(address);
    cJSON_Delete(contacts);
    return rc;
}

int keng_outbox_superseded(keng_store *st, const char *alert_id, const char *recipient,
                           int64_t revision, const char *event, int64_t alert_revision,
                           const char *alert_status)
{
    int final = !strcmp(event, "resolve") || !strcmp(event, "cancel");
    int ended = strcmp(alert_status, "published") != 0;
    if (!final && ended) return KENG_OUTBOX_SUPERSEDED_BY;
    if (!final && revision >= alert_revision) return KENG_OUTBOX_SEND; /* the latest: no lookup */
    /* An earlier row "may have reached" the recipient when it was delivered, is in flight, or
     * was tried at all (a timeout may hide a receiver that took it). */
    sqlite3_stmt *s = keng_store_stmt(
        st, final ? "SELECT 1 FROM deliveries d JOIN delivery_state s USING (id, alert_id)"
                    " WHERE d.alert_id = ?1 AND d.recipient = ?2 AND d.revision < ?3"
                    " AND (s.status IN ('delivered', 'inflight') OR s.attempts > 0) LIMIT 1"
                  : "SELECT 1 FROM deliveries WHERE alert_id = ?1 AND recipient = ?2"
                    " AND revision > ?3 LIMIT 1");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, recipient, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, revision);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return keng_store_errno(rc);
    int found = rc == SQLITE_ROW;
    if (final) return found ? KENG_OUTBOX_SEND : KENG_OUTBOX_SUPERSEDED_BY;
    if (found) return KENG_OUTBOX_SUPERSEDED_BY;
    /* No later row for this recipient yet: is one still being written? (publish_jobs holds a
     * few rows, the jobs under way.) */
    s = keng_store_stmt(st, "SELECT 1 FROM publish_jobs WHERE alert_id = ?1 AND revision > ?2"
                            " LIMIT 1");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, revision);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return keng_store_errno(rc);
    return rc == SQLITE_ROW ? KENG_OUTBOX_WAIT : KENG_OUTBOX_SEND;
}

int keng_outbox_recover(keng_store *st)
{
    sqlite3_stmt *s = keng_store_stmt(
        st, "UPDATE delivery_state SET status = 'pending' WHERE status = 'inflight'");
    if (!s) return -EIO;
    int rc = step_done(st, s);
    if (rc) return rc;
    int n = sqlite3_changes(keng_store_db(st));
    if (n) keng_info("outbox: %d deliveries in flight at the last stop go out again", n);
    return n;
}

int keng_outbox_add_states(keng_store *st, int64_t after_id, int64_t next_at)
{
    /* New rows are the ids above the largest before the insert (INTEGER PRIMARY KEY without
     * AUTOINCREMENT: a new rowid is the largest + 1; one writer). */
    sqlite3_stmt *s = keng_store_stmt(st, "INSERT INTO delivery_state (id, alert_id, next_at)"
                                          " SELECT id, alert_id, ?2 FROM deliveries WHERE id > ?1");
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, after_id);
    sqlite3_bind_int64(s, 2, next_at);
    int rc = step_done(st, s);
    return rc ? rc : sqlite3_changes(keng_store_db(st));
}

int keng_outbox_add_state(keng_store *st, int64_t id, int64_t next_at)
{
    int n = keng_outbox_add_states(st, id - 1, next_at); /* id is the largest: just inserted */
    return n < 0 ? n : n == 1 ? 0 : -ENOENT;
}

static int add_count(cJSON *obj, const char *key, int64_t n)
{
    cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (it) {
        cJSON_SetNumberValue(it, it->valuedouble + (double)n);
        return 0;
    }
    return cJSON_AddNumberToObject(obj, key, (double)n) ? 0 : -ENOMEM;
}

static cJSON *new_counts(void)
{
    static const char *const keys[] = {"pending", "inflight", "delivered",
                                       "failed",  "dead",     "superseded"};
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!cJSON_AddNumberToObject(o, keys[i], 0)) {
            cJSON_Delete(o);
            return NULL;
        }
    return o;
}

int keng_outbox_counts(keng_store *st, const char *alert_id, cJSON **out)
{
    *out = NULL;
    sqlite3_stmt *s =
        alert_id ? keng_store_stmt(st, "SELECT channel, status, attempts > 0, COUNT(*) FROM"
                                       " deliveries JOIN delivery_state USING (id, alert_id)"
                                       " WHERE alert_id = ?1 GROUP BY 1, 2, 3")
                 : keng_store_stmt(st, "SELECT channel, status, attempts > 0, COUNT(*) FROM"
                                       " deliveries JOIN delivery_state USING (id, alert_id)"
                                       " GROUP BY 1, 2, 3");
    if (!s) return -EIO;
    if (alert_id) sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_STATIC);
    cJSON *root = new_counts(), *by = cJSON_CreateObject();
    int rc = root && by ? 0 : -ENOMEM, step;
    int64_t total = 0;
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *ch = keng_store_text(s, 0), *status = keng_store_text(s, 1);
        int failed = sqlite3_column_int(s, 2) && strcmp(status, "pending") == 0;
        int64_t n = sqlite3_column_int64(s, 3);
        cJSON *c = cJSON_GetObjectItemCaseSensitive(by, ch);
        if (!c) {
            c = new_counts();
            if (!c || !cJSON_AddItemToObject(by, ch, c)) {
                cJSON_Delete(c);
                rc = -ENOMEM;
                break;
            }
        }
        if ((rc = add_count(root, status, n)) || (rc = add_count(c, status, n))) break;
        if (failed && ((rc = add_count(root, "failed", n)) || (rc = add_count(c, "failed", n))))
            break;
        total += n;
    }
    if (rc == 0 && step != SQLITE_DONE) rc = keng_store_errno(step);
    sqlite3_reset(s);
    if (rc == 0 && (!cJSON_AddNumberToObject(root, "total", (double)total) ||
                    !cJSON_AddItemToObject(root, "by_channel", by))) {
        rc = -ENOMEM;
        by = NULL;
    } else if (rc == 0) {
        by = NULL; /* owned by root now */
    }
    cJSON_Delete(by);
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }
    *out = root;
    return 0;
}

/* One delivery row as the API shows it; s is at a row of ROW_COLS. */
#define ROW_COLS                                                                                   \
    "id, recipient, channel, contact_index, status, attempts, next_at, last_code, last_error,"     \
    " delivered_at, latency_ms, event, revision"

static int row_json(sqlite3_stmt *s, cJSON *arr)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return -ENOMEM;
    }
    const char *st_text = keng_store_text(s, 4);
    int attempts = sqlite3_column_int(s, 5);
    int ok =
        cJSON_AddNumberToObject(o, "id", (double)sqlite3_column_int64(s, 0)) &&
        cJSON_AddStringToObject(o, "recipient", keng_store_text(s, 1)) &&
        cJSON_AddStringToObject(o, "channel", keng_store_text(s, 2)) &&
        cJSON_AddNumberToObject(o, "contact_index", sqlite3_column_int(s, 3)) &&
        cJSON_AddStringToObject(
            o, "status", strcmp(st_text, "pending") == 0 && attempts > 0 ? "failed" : st_text) &&
        cJSON_AddNumberToObject(o, "attempts", attempts) &&
        cJSON_AddNumberToObject(o, "next_at", (double)sqlite3_column_int64(s, 6)) &&
        cJSON_AddStringToObject(o, "event", keng_store_text(s, 11)) &&
        cJSON_AddNumberToObject(o, "revision", (double)sqlite3_column_int64(s, 12));
    static const struct {
        int col;
        const char *name;
    } opt[] = {{7, "last_code"}, {8, "last_error"}, {9, "delivered_at"}, {10, "latency_ms"}};
    for (size_t i = 0; ok && i < sizeof opt / sizeof opt[0]; i++) {
        int t = sqlite3_column_type(s, opt[i].col);
        if (t == SQLITE_NULL)
            ok = cJSON_AddNullToObject(o, opt[i].name) != NULL;
        else if (t == SQLITE_TEXT)
            ok = cJSON_AddStringToObject(o, opt[i].name, keng_store_text(s, opt[i].col)) != NULL;
        else
            ok = cJSON_AddNumberToObject(o, opt[i].name,
                                         (double)sqlite3_column_int64(s, opt[i].col)) != NULL;
    }
    return ok ? 0 : -ENOMEM;
}

static int item_add(keng_store *st, cJSON *arr, int64_t id)
{
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT " ROW_COLS " FROM deliveries JOIN delivery_state USING (id, alert_id)"
            " WHERE id = ?1");
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, id);
    int step = sqlite3_step(s);
    int rc = step == SQLITE_ROW    ? row_json(s, arr)
             : step == SQLITE_DONE ? 0
                                   : keng_store_errno(step);
    sqlite3_reset(s);
    return rc;
}

int keng_outbox_list_step(keng_store *st, keng_outbox_walk *w, int budget)
{
    if (!w->alert_id || w->limit < 0 || w->skip < 0 || !w->items || budget <= 0) return -EINVAL;
    if (w->got >= w->limit || w->end) return 1;
    int any = !w->status, dead = !any && strcmp(w->status, "dead") == 0;
    int failed = !any && strcmp(w->status, "failed") == 0;
    /* Any status: the alert's index alone (its rowids), a few µs per thousand rows. Dead: the
     * alert's entries in the small index of dead rows. Else the rows themselves, in id order. */
    sqlite3_stmt *s = keng_store_stmt(
        st, any    ? "SELECT id, '', 0 FROM deliveries WHERE alert_id = ?1 AND id > ?2"
                     " ORDER BY id LIMIT ?3"
            : dead ? "SELECT id, 'dead', 0 FROM delivery_state WHERE alert_id = ?1"
                     " AND status = 'dead' AND id > ?2 ORDER BY id LIMIT ?3"
                   : "SELECT id, status, attempts FROM deliveries JOIN delivery_state"
                     " USING (id, alert_id) WHERE alert_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
    if (!s) return -EIO;
    int lim = any && budget < (1 << 27) ? budget * 8 : budget;
    sqlite3_bind_text(s, 1, w->alert_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, w->after);
    sqlite3_bind_int(s, 3, lim);
    int rc = 0, step = SQLITE_DONE, n = 0;
    while (w->got < w->limit && (step = sqlite3_step(s)) == SQLITE_ROW) {
        n++;
        w->after = sqlite3_column_int64(s, 0);
        if (!any && !dead) {
            const char *status = keng_store_text(s, 1);
            int match = failed ? strcmp(status, "pending") == 0 && sqlite3_column_int(s, 2) > 0
                               : strcmp(status, w->status) == 0;
            if (!match) continue;
        }
        if (w->skip > 0) {
            w->skip--;
            continue;
        }
        if ((rc = item_add(st, w->items, w->after))) break;
        w->got++;
    }
    if (rc == 0 && w->got < w->limit && step != SQLITE_DONE)
        rc = keng_store_errno(step) ? keng_store_errno(step) : -EIO;
    sqlite3_reset(s);
    if (rc) return rc;
    if (w->got < w->limit && n < lim) w->end = 1;
    return w->got >= w->limit || w->end;
}

int keng_outbox_list(keng_store *st, const char *alert_id, const char *status, int limit,
                     int offset, cJSON **items, int *total)
{
    *items = NULL;
    if (total) *total = 0;
    if (!alert_id || limit < 0 || offset < 0) return -EINVAL;
    if (total) {
        sqlite3_stmt *s = keng_store_stmt(
            st, "SELECT COUNT(*) FROM deliveries JOIN delivery_state USING (id, alert_id)"
                " WHERE alert_id = ?1 AND (?2 IS NULL OR"
                " (?2 = 'failed' AND status = 'pending' AND attempts > 0) OR status = ?2)");
        if (!s) return -EIO;
        sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_STATIC);
        if (status) sqlite3_bind_text(s, 2, status, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW) *total = sqlite3_column_int(s, 0);
        sqlite3_reset(s);
    }
    keng_outbox_walk w = {.alert_id = alert_id, .status = status, .limit = limit, .skip = offset};
    if (!(w.items = cJSON_CreateArray())) return -ENOMEM;
    int rc;
    while ((rc = keng_outbox_list_step(st, &w, 1 << 20)) == 0)
        ;
    if (rc < 0) {
        cJSON_Delete(w.items);
        return rc;
    }
    *items = w.items;
    return 0;
}

int keng_outbox_redeliver(keng_store *st, const char *alert_id)
{
    if (!alert_id) return -EINVAL;
    /* Not a dead row whose household a later contact of the same message reached (its
     * fallback was delivered): the household has the message, and would get it twice. */
    sqlite3_stmt *s = keng_store_stmt(
        st, "UPDATE delivery_state SET status = 'pending', attempts = 0, next_at = 0"
            " WHERE alert_id = ?1 AND status = 'dead' AND NOT EXISTS (SELECT 1 FROM deliveries d"
            " JOIN deliveries o ON o.alert_id = d.alert_id AND o.recipient = d.recipient"
            " AND o.revision = d.revision AND o.event = d.event"
            " AND o.contact_index > d.contact_index JOIN delivery_state os"
            " ON os.id = o.id AND os.alert_id = o.alert_id"
            " WHERE d.id = delivery_state.id AND os.status = 'delivered')");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_STATIC);
    int rc = step_done(st, s);
    return rc ? rc : sqlite3_changes(keng_store_db(st));
}

int keng_outbox_rehold(keng_store *st, int64_t now, int64_t not_before)
{
    /* A pending row never tried whose time is still to come is one quiet hours held (a retry
     * has attempts > 0): it waits for the quiet hours in force now, not the ones it met. A row
     * of an immediate alert goes now: quiet hours do not hold those (a row of one due later was
     * given back by the engine, its receiver hanging, or held before an update made the alert
     * immediate: the engine then finds it superseded). */
#define WHEN_DUE                                                                                   \
    "CASE WHEN alert_id IN (SELECT id FROM alerts WHERE json_extract(doc, '$.urgency') ="          \
    " 'immediate') THEN 0 ELSE ?2 END"
    sqlite3_stmt *s = keng_store_stmt(
        st, "UPDATE delivery_state SET next_at = " WHEN_DUE " WHERE status = 'pending' AND"
            " next_at > ?1 AND attempts = 0 AND next_at <> " WHEN_DUE);
#undef WHEN_DUE
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int64(s, 2, not_before > now ? not_before : 0);
    int rc = step_done(st, s);
    if (rc) return rc;
    int n = sqlite3_changes(keng_store_db(st));
    /* Publish jobs cut by the stop write the rest of their rows with the same time. */
    s = keng_store_stmt(st, "UPDATE publish_jobs SET next_at = ?2 WHERE next_at > ?1"
                            " AND next_at <> ?2");
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int64(s, 2, not_before > now ? not_before : 0);
    rc = step_done(st, s);
    return rc ? rc : n;
}

int64_t keng_outbox_next_due(keng_store *st, int64_t now)
{
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT MIN(next_at) FROM delivery_state WHERE status = 'pending' AND next_at > ?1");
    if (!s) return -EIO;
    sqlite3_bind_int64(s, 1, now);
    int64_t v = 0;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) return keng_store_errno(rc);
    return v;
}
