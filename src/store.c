#include "keng/store.h"

#include "keng/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_MAX_STMTS 256

struct keng_store {
    sqlite3 *db;
    int tx_depth;
    int nstmts;
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } stmts[STORE_MAX_STMTS];
};

/* Each entry moves the schema from version i to i + 1; never edit a released one, append. */
static const char *const migrations[] = {
    /* 1: groups, members, tokens, media, alerts, outbox, audit */
    "CREATE TABLE groups ("
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, label TEXT,"
    "  parent TEXT, leader TEXT, relay TEXT NOT NULL DEFAULT 'auto',"
    "  relay_timeout INTEGER NOT NULL DEFAULT 600, channels TEXT NOT NULL DEFAULT '[]',"
    "  source TEXT NOT NULL DEFAULT 'api', created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX groups_kind ON groups(kind);"
    "CREATE TABLE members ("
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL, address TEXT, phone TEXT,"
    "  lang TEXT NOT NULL DEFAULT 'vi', camera INTEGER NOT NULL DEFAULT 0, lat REAL, lon REAL,"
    "  contacts TEXT NOT NULL DEFAULT '[]', source TEXT NOT NULL DEFAULT 'api',"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE memberships ("
    "  group_id TEXT NOT NULL, member_id TEXT NOT NULL, PRIMARY KEY (group_id, member_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX memberships_member ON memberships(member_id);"
    "CREATE TABLE tokens ("
    "  hash BLOB PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',"
    "  group_id TEXT, created_at INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE media ("
    "  id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, mime TEXT NOT NULL, size INTEGER NOT NULL,"
    "  width INTEGER NOT NULL, height INTEGER NOT NULL, thumb_size INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL, created_by TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE alerts ("
    "  id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, revision INTEGER NOT NULL,"
    "  doc TEXT NOT NULL, created_at INTEGER NOT NULL, published_at INTEGER,"
    "  updated_at INTEGER NOT NULL, expires_at INTEGER, public INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX alerts_status ON alerts(status, created_at);"
    "CREATE TABLE alert_revisions ("
    "  alert_id TEXT NOT NULL, revision INTEGER NOT NULL, status TEXT NOT NULL, event TEXT NOT NULL,"
    "  doc TEXT NOT NULL, actor TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (alert_id, revision)) WITHOUT ROWID;"
    "CREATE TABLE alert_media (alert_id TEXT NOT NULL, media_id TEXT NOT NULL,"
    "  PRIMARY KEY (alert_id, media_id)) WITHOUT ROWID;"
    "CREATE INDEX alert_media_media ON alert_media(media_id);"
    /* Who an alert reached and how: one row per (alert, member). via_group is the group it came
     * through; role 'leader' rows get the relay link. Households of a leader-relay group get a
     * row when the leader (or the timeout) relays. rtoken: SHA-256 of the link token. */
    "CREATE TABLE recipients ("
    "  alert_id TEXT NOT NULL, member_id TEXT NOT NULL, via_group TEXT NOT NULL,"
    "  role TEXT NOT NULL DEFAULT 'member', state TEXT NOT NULL DEFAULT 'sent',"
    "  rtoken TEXT NOT NULL DEFAULT '', seen_at INTEGER, replied_at INTEGER,"
    "  PRIMARY KEY (alert_id, member_id)) WITHOUT ROWID;"
    "CREATE INDEX recipients_group ON recipients(alert_id, via_group, state);"
    "CREATE INDEX recipients_token ON recipients(rtoken);"
    "CREATE TABLE relays ("
    "  alert_id TEXT NOT NULL, group_id TEXT NOT NULL, leader_id TEXT NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'waiting', note TEXT, due_at INTEGER,"
    "  relayed_at INTEGER, relayed_by TEXT, PRIMARY KEY (alert_id, group_id)) WITHOUT ROWID;"
    "CREATE INDEX relays_due ON relays(state, due_at);"
    /* A message rendered once per (alert revision, event, language, channel, link kind);
     * deliveries point at it, so 100,000 recipients do not mean 100,000 copies of the text. */
    "CREATE TABLE messages ("
    "  id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, revision INTEGER NOT NULL,"
    "  event TEXT NOT NULL, lang TEXT NOT NULL, channel TEXT NOT NULL, link_kind TEXT NOT NULL,"
    "  text TEXT NOT NULL, subject TEXT NOT NULL DEFAULT '', html TEXT NOT NULL DEFAULT '',"
    "  alert_json TEXT NOT NULL, photos TEXT NOT NULL DEFAULT '[]', note TEXT,"
    "  UNIQUE (alert_id, revision, event, lang, channel, link_kind, note));"
    /* The outbox. status: pending → inflight → delivered | pending (retry at next_at) | dead.
     * recipient is a member id, or "group:ID" for a group's own channel. Migration 4 moves
     * status, attempts, next_at, last_code, last_error, delivered_at and latency_ms to
     * delivery_state (one row per delivery, same id). */
    "CREATE TABLE deliveries ("
    "  id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, revision INTEGER NOT NULL,"
    "  event TEXT NOT NULL, recipient TEXT NOT NULL, channel TEXT NOT NULL,"
    "  contact_index INTEGER NOT NULL DEFAULT 0, address TEXT NOT NULL,"
    "  message_id INTEGER NOT NULL, link_kind TEXT NOT NULL DEFAULT '',"
    "  idem_key TEXT NOT NULL UNIQUE, status TEXT NOT NULL DEFAULT 'pending',"
    "  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0,"
    "  last_code INTEGER, last_error TEXT, created_at INTEGER NOT NULL,"
    "  delivered_at INTEGER, latency_ms INTEGER);"
    /* Only pending rows are due: a delivered row leaves this index once instead of moving
     * within it at every status change (the outbox's hot path). */
    "CREATE INDEX deliveries_due ON deliveries(next_at) WHERE status = 'pending';"
    "CREATE INDEX deliveries_alert ON deliveries(alert_id, status);"
    "CREATE INDEX deliveries_recipient ON deliveries(alert_id, recipient);"
    "CREATE TABLE replies ("
    "  id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, member_id TEXT NOT NULL,"
    "  kind TEXT NOT NULL, text TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);"
    "CREATE INDEX replies_alert ON replies(alert_id, id);"
    "CREATE TABLE audit ("
    "  seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,"
    "  subject TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '{}',"
    "  prev_hash TEXT NOT NULL, hash TEXT NOT NULL);",
    /* 2: the outbox's per-alert index without status. A delivery changes status twice (claim,
     * result); with status in the key its entry moved twice, a quarter of the fan-out's database
     * time. By alert_id alone (rowid appended) it never moves and lists come out in id order;
     * the rare dead rows, which an officer re-queues, have a small index of their own. */
    "DROP INDEX deliveries_alert;"
    "CREATE INDEX deliveries_alert ON deliveries(alert_id);"
    "CREATE INDEX deliveries_dead ON deliveries(alert_id) WHERE status = 'dead';",
    /* 3: publish jobs. Publishing to a whole ward is done a few hundred households at a time
     * between loop turns (publish.h). A job is what a publication, relay or update needs (its
     * view, its groups: written once) and where it stands (publish_job_state: phase, group
     * index, last member id done, counts so far: rewritten with each chunk, so it is small).
     * Stored with the alert's revision, deleted when done: a publication cut by a crash goes
     * on from its last chunk at the next start. */
    "CREATE TABLE publish_jobs ("
    "  id INTEGER PRIMARY KEY, kind TEXT NOT NULL, alert_id TEXT NOT NULL,"
    "  revision INTEGER NOT NULL, event TEXT NOT NULL, group_id TEXT, note TEXT,"
    "  actor TEXT NOT NULL DEFAULT '', next_at INTEGER NOT NULL DEFAULT 0, view TEXT NOT NULL,"
    "  groups TEXT NOT NULL DEFAULT '[]', relay_groups TEXT NOT NULL DEFAULT '[]',"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE publish_job_state ("
    "  job INTEGER PRIMARY KEY REFERENCES publish_jobs(id) ON DELETE CASCADE,"
    "  phase INTEGER NOT NULL DEFAULT 0, gi INTEGER NOT NULL DEFAULT 0,"
    "  cursor TEXT NOT NULL DEFAULT '', n_groups INTEGER NOT NULL DEFAULT 0,"
    "  n_relay_groups INTEGER NOT NULL DEFAULT 0, n_recipients INTEGER NOT NULL DEFAULT 0,"
    "  n_held INTEGER NOT NULL DEFAULT 0, n_unreachable INTEGER NOT NULL DEFAULT 0,"
    "  n_deliveries INTEGER NOT NULL DEFAULT 0);",
    /* 4: a delivery's state apart from the delivery. A row of deliveries is written once, by
     * publish (what goes where: recipient, address, key, message); what happens to it (status,
     * attempts, when next, the last answer) changes twice per delivery and lives in a narrow row
     * of delivery_state with the same id, so the fan-out rewrites some 50 bytes per change
     * instead of the whole 200-300 byte row (half the outbox's database time per delivery). */
    "CREATE TABLE delivery_state ("
    "  id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',"
    "  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0,"
    "  last_code INTEGER, last_error TEXT, delivered_at INTEGER, latency_ms INTEGER);"
    "INSERT INTO delivery_state (id, alert_id, status, attempts, next_at, last_code, last_error,"
    "  delivered_at, latency_ms) SELECT id, alert_id, status, attempts, next_at, last_code,"
    "  last_error, delivered_at, latency_ms FROM deliveries;"
    "DROP INDEX deliveries_due;"
    "DROP INDEX deliveries_dead;"
    "ALTER TABLE deliveries DROP COLUMN status;"
    "ALTER TABLE deliveries DROP COLUMN attempts;"
    "ALTER TABLE deliveries DROP COLUMN next_at;"
    "ALTER TABLE deliveries DROP COLUMN last_code;"
    "ALTER TABLE deliveries DROP COLUMN last_error;"
    "ALTER TABLE deliveries DROP COLUMN delivered_at;"
    "ALTER TABLE deliveries DROP COLUMN latency_ms;"
    /* Only pending rows are due (see 1). An alert's dead rows (an officer re-queues them) by
     * their own small index, hence the alert's id here too: readers join on (id, alert_id). */
    "CREATE INDEX delivery_state_due ON delivery_state(next_at) WHERE status = 'pending';"
    "CREATE INDEX delivery_state_dead ON delivery_state(alert_id, id) WHERE status = 'dead';",
};

int keng_store_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_TOOBIG:
        return -E2BIG;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EILSEQ;
    default:
        return -EIO;
    }
}

int keng_store_exec(keng_store *st, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        keng_error("store: %s (in: %.80s)", msg ? msg : sqlite3_errstr(rc), sql);
        sqlite3_free(msg);
        return keng_store_errno(rc);
    }
    return 0;
}

static int store_user_version(keng_store *st)
{
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

int keng_store_schema_version(keng_store *st)
{
    return store_user_version(st);
}

static int store_migrate(keng_store *st, int upto)
{
    int have = store_user_version(st);
    int latest = (int)(sizeof migrations / sizeof migrations[0]);
    int want = upto > 0 && upto < latest ? upto : latest;
    if (have < 0) return -EIO;
    if (have > latest) {
        keng_error("store: database schema %d is newer than this kengd (%d); upgrade kengd", have,
                   latest);
        return -EPROTO;
    }
    for (int v = have; v < want; v++) {
        int rc = keng_store_begin(st);
        if (rc) return rc;
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
        if ((rc = keng_store_exec(st, migrations[v])) || (rc = keng_store_exec(st, pragma))) {
            keng_store_rollback(st);
            return rc;
        }
        if ((rc = keng_store_commit(st))) return rc;
        keng_info("store: migrated schema to version %d", v + 1);
    }
    return 0;
}

static int store_open(const char *path, int upto, keng_store **out)
{
    *out = NULL;
    keng_store *st = calloc(1, sizeof *st);
    if (!st) return -ENOMEM;
    static int configured;
    if (!configured) {
        /* Before SQLite's first use: no global memory statistics, so no global mutex around
         * every malloc (8 % of the outbox's instructions). Fails harmlessly if too late. */
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
        configured = 1;
    }
    int rc = sqlite3_open_v2(path, &st->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        keng_error("store: cannot open %s: %s", path, st->db ? sqlite3_errmsg(st->db) : "no memory");
        rc = keng_store_errno(rc);
        keng_store_close(st);
        return rc;
    }
    sqlite3_busy_timeout(st->db, 5000);
    if ((rc = keng_store_exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                  "PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY;"
                                  "PRAGMA cache_size=-16384;")) ||
        (rc = store_migrate(st, upto))) {
        keng_store_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

int keng_store_open(const char *path, keng_store **out)
{
    return store_open(path, 0, out);
}

int keng_store_open_at(const char *path, int version, keng_store **out)
{
    return store_open(path, version > 0 ? version : 1, out);
}

void keng_store_close(keng_store *st)
{
    if (!st) return;
    for (int i = 0; i < st->nstmts; i++) sqlite3_finalize(st->stmts[i].stmt);
    if (st->db) {
        sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(st->db);
    }
    free(st);
}

sqlite3 *keng_store_db(keng_store *st)
{
    return st->db;
}

sqlite3_stmt *keng_store_stmt(keng_store *st, const char *sql)
{
    for (int i = 0; i < st->nstmts; i++) {
        if (st->stmts[i].sql == sql || strcmp(st->stmts[i].sql, sql) == 0) {
            sqlite3_stmt *s = st->stmts[i].stmt;
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            return s;
        }
    }
    if (st->nstmts == STORE_MAX_STMTS) {
        keng_error("store: statement cache full");
        return NULL;
    }
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) {
        keng_error("store: prepare failed: %s (in: %.120s)", sqlite3_errmsg(st->db), sql);
        return NULL;
    }
    st->stmts[st->nstmts].sql = sql;
    st->stmts[st->nstmts].stmt = s;
    st->nstmts++;
    return s;
}

int keng_store_begin(keng_store *st)
{
    if (st->tx_depth++ > 0) return 0;
    int rc = keng_store_exec(st, "BEGIN IMMEDIATE");
    if (rc) st->tx_depth = 0;
    return rc;
}

int keng_store_begin_read(keng_store *st)
{
    if (st->tx_depth++ > 0) return 0;
    int rc = keng_store_exec(st, "BEGIN");
    if (rc) st->tx_depth = 0;
    return rc;
}

int keng_store_commit(keng_store *st)
{
    if (st->tx_depth == 0) return -EINVAL;
    if (--st->tx_depth > 0) return 0;
    int rc = keng_store_exec(st, "COMMIT");
    if (rc) {
        keng_store_exec(st, "ROLLBACK");
    }
    return rc;
}

void keng_store_rollback(keng_store *st)
{
    if (st->tx_depth == 0) return;
    st->tx_depth = 0;
    if (!sqlite3_get_autocommit(st->db)) keng_store_exec(st, "ROLLBACK");
}

int64_t keng_store_size(keng_store *st)
{
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()");
    int64_t n = 0;
    if (s && sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    if (s) sqlite3_reset(s);
    return n;
}

const char *keng_store_text(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    return t ? (const char *)t : "";
}
