/* Tests for store: WAL and pragmas at open, migrations (once, atomic, refusing a newer schema),
 * nested write transactions, read snapshots, the prepared-statement cache, the SQLite → errno
 * map, isolation from a second connection, and durability when the process dies mid-write.
 * Each test works in its own temp dir; a second connection is a plain sqlite3 handle. */
#include "test.h"

#include "keng/log.h"
#include "keng/outbox.h"
#include "keng/store.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Expected failures log errors; keep the test output to the failures that matter. */
static void quiet(void)
{
    keng_log_set_level((enum keng_log_level)(KENG_LOG_ERROR + 1));
}

typedef struct st_env {
    char dir[64];
    char db[128];
    keng_store *st;
} st_env;

static void env_init(st_env *e)
{
    memset(e, 0, sizeof *e);
    keng_log_set_level(KENG_LOG_ERROR);
    snprintf(e->dir, sizeof e->dir, "/tmp/keng-store-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(e->dir));
    snprintf(e->db, sizeof e->db, "%s/keng.db", e->dir);
}

static void env_open(st_env *e)
{
    ASSERT_NULL(e->st);
    ASSERT_EQ(keng_store_open(e->db, &e->st), 0);
    ASSERT_NOT_NULL(e->st);
}

static void env_close(st_env *e)
{
    keng_store_close(e->st);
    e->st = NULL;
}

static void env_done(st_env *e)
{
    env_close(e);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    ASSERT_EQ(system(cmd), 0);
}

/* A second, independent connection to the same file. */
static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    return db;
}

static int64_t q_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) TEST_FAIL("prepare %s: %s", sql, sqlite3_errmsg(db));
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) TEST_FAIL("step %s: %d %s", sql, rc, sqlite3_errmsg(db));
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* The first column of the first row as text, into out. */
static const char *q_text(sqlite3 *db, const char *sql, char *out, size_t n)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) TEST_FAIL("prepare %s: %s", sql, sqlite3_errmsg(db));
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) TEST_FAIL("step %s: %d %s", sql, rc, sqlite3_errmsg(db));
    const unsigned char *t = sqlite3_column_text(s, 0);
    snprintf(out, n, "%s", t ? (const char *)t : "(null)");
    sqlite3_finalize(s);
    return out;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) TEST_FAIL("exec %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
}

static int64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static void insert_note(keng_store *st, const char *text)
{
    sqlite3_stmt *s = keng_store_stmt(st, "INSERT INTO notes(text) VALUES (?1)");
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(sqlite3_bind_text(s, 1, text, -1, SQLITE_TRANSIENT), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_reset(s);
}

/* ---- open, pragmas, migrations ---- */

TEST(store_open_sets_wal_and_pragmas)
{
    st_env e;
    env_init(&e);
    ASSERT_EQ(file_size(e.db), -1);
    env_open(&e);
    ASSERT_GT(file_size(e.db), 0);
    sqlite3 *db = keng_store_db(e.st);
    char buf[64];
    ASSERT_STR_EQ(q_text(db, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    ASSERT_EQ(q_int(db, "PRAGMA synchronous"), 1); /* NORMAL */
    ASSERT_EQ(q_int(db, "PRAGMA busy_timeout"), 5000);
    ASSERT_EQ(q_int(db, "PRAGMA temp_store"), 2); /* MEMORY */
    ASSERT_EQ(q_int(db, "PRAGMA cache_size"), -16384);
    ASSERT(sqlite3_get_autocommit(db)); /* no transaction left open by the migrations */
    /* WAL is a property of the file: a plain connection sees it too. */
    sqlite3 *raw = raw_open(e.db);
    ASSERT_STR_EQ(q_text(raw, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    ASSERT_STR_EQ(q_text(raw, "PRAGMA integrity_check", buf, sizeof buf), "ok");
    sqlite3_close(raw);
    ASSERT_GT(keng_store_size(e.st), 0);
    ASSERT_EQ(keng_store_size(e.st),
              q_int(db, "SELECT page_count * page_size FROM pragma_page_count(), "
                        "pragma_page_size()"));
    env_done(&e);
}

TEST(store_open_bad_path)
{
    quiet();
    keng_store *st = (keng_store *)&st; /* must be reset to NULL */
    int rc = keng_store_open("/nonexistent-keng-dir/sub/keng.db", &st);
    ASSERT_LT(rc, 0);
    ASSERT_EQ(rc, -ENOENT);
    ASSERT_NULL(st);
    keng_store_close(NULL); /* NULL is fine */
}

TEST(store_migrations_run_once)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    sqlite3 *db = keng_store_db(e.st);
    int v = keng_store_schema_version(e.st);
    ASSERT_GT(v, 0);
    ASSERT_EQ(q_int(db, "PRAGMA user_version"), v);
    /* The tables of migration 1 that the rest of keng relies on. */
    static const char *const tables[] = {"groups",     "members", "memberships", "tokens",
                                         "media",      "alerts",  "recipients",  "relays",
                                         "messages",   "deliveries", "replies",  "audit"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '%s'",
                 tables[i]);
        if (q_int(db, sql) != 1) TEST_FAIL("table %s missing", tables[i]);
    }
    int64_t nobjects = q_int(db, "SELECT count(*) FROM sqlite_schema");
    ASSERT_EQ(keng_store_exec(e.st, "INSERT INTO groups(id, name, kind, created_at, updated_at)"
                                    " VALUES ('g1', 'Tổ 1', 'residential', 1, 1)"),
              0);
    env_close(&e);
    /* Reopening: no migration runs again (it would fail on CREATE TABLE), data and version kept */
    for (int i = 0; i < 2; i++) {
        env_open(&e);
        db = keng_store_db(e.st);
        ASSERT_EQ(keng_store_schema_version(e.st), v);
        ASSERT_EQ(q_int(db, "PRAGMA user_version"), v);
        ASSERT_EQ(q_int(db, "SELECT count(*) FROM sqlite_schema"), nobjects);
        ASSERT_EQ(q_int(db, "SELECT count(*) FROM groups WHERE id = 'g1' AND name = 'Tổ 1'"), 1);
        env_close(&e);
    }
    env_done(&e);
}

static void on_claim_id(void *ud, const keng_outbox_row *row)
{
    if (ud) *(int64_t *)ud = row->id;
}

/* A database kengd left at schema 3 (state in the deliveries row) moves to 4 with every row's
 * state kept, the old columns gone, and the outbox working on it. */
TEST(store_migration_4_moves_delivery_state)
{
    st_env e;
    env_init(&e);
    ASSERT_EQ(keng_store_open_at(e.db, 3, &e.st), 0);
    ASSERT_EQ(keng_store_schema_version(e.st), 3);
    /* Rows as schema 3 had them: id, alert_id, revision, event, recipient, channel,
     * contact_index, address, message_id, link_kind, idem_key, status, attempts, next_at,
     * last_code, last_error, created_at, delivered_at, latency_ms. */
    ASSERT_EQ(keng_store_exec(
                  e.st,
                  "INSERT INTO deliveries VALUES (1, 'A1', 1, 'alert', 'hh-1', 'webhook', 0,"
                  "  '{}', 1, 'r', 'A1.1.hh-1.webhook', 'delivered', 1, 0, 204, NULL, 100,"
                  "  105, 42);"
                  "INSERT INTO deliveries VALUES (2, 'A1', 1, 'alert', 'hh-2', 'zalo_oa', 0,"
                  "  '{}', 2, 'r', 'A1.1.hh-2.zalo_oa', 'dead', 8, 0, 400, 'Quota exceeded',"
                  "  100, NULL, NULL);"
                  "INSERT INTO deliveries VALUES (3, 'A1', 1, 'alert', 'hh-3', 'webhook', 0,"
                  "  '{}', 1, 'r', 'A1.1.hh-3.webhook', 'pending', 2, 4000000000, 503,"
                  "  'HTTP 503', 100, NULL, NULL);"
                  "INSERT INTO deliveries VALUES (4, 'A1', 1, 'alert', 'hh-4', 'webhook', 0,"
                  "  '{}', 1, 'r', 'A1.1.hh-4.webhook', 'inflight', 0, 0, NULL, NULL, 100,"
                  "  NULL, NULL);"),
              0);
    env_close(&e);
    env_open(&e); /* the current kengd: migration 4 and any later */
    sqlite3 *db = keng_store_db(e.st);
    ASSERT_GE(keng_store_schema_version(e.st), 4);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM pragma_table_info('deliveries')"
                        " WHERE name IN ('status', 'attempts', 'next_at', 'last_code',"
                        " 'last_error', 'delivered_at', 'latency_ms')"),
              0);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM deliveries JOIN delivery_state"
                        " USING (id, alert_id)"),
              4);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM delivery_state WHERE id = 1 AND status ="
                        " 'delivered' AND attempts = 1 AND last_code = 204 AND delivered_at = 105"
                        " AND latency_ms = 42"),
              1);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM delivery_state WHERE id = 2 AND status = 'dead'"
                        " AND attempts = 8 AND last_error = 'Quota exceeded'"),
              1);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM delivery_state WHERE id = 3 AND status ="
                        " 'pending' AND attempts = 2 AND next_at = 4000000000"),
              1);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM deliveries WHERE idem_key = 'A1.1.hh-2.zalo_oa'"
                        " AND recipient = 'hh-2' AND address = '{}'"),
              1);
    /* The outbox reads the moved state: the crash's in-flight row goes back, counts and the dead
     * row's re-queue see what was there. */
    /* The new indexes, not the old ones. */
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN"
                        " ('delivery_state_due', 'delivery_state_dead')"),
              2);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN"
                        " ('deliveries_due', 'deliveries_dead')"),
              0);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM delivery_state WHERE alert_id = 'A1'"), 4);
    /* Nothing due but the crash's in-flight row once it is back (a claim marks it again). */
    ASSERT_EQ(keng_outbox_claim(e.st, 1000, 10, on_claim_id, NULL), 0);
    ASSERT_EQ(keng_outbox_recover(e.st), 1);
    int64_t claimed = 0;
    ASSERT_EQ(keng_outbox_claim(e.st, 1000, 10, on_claim_id, &claimed), 1);
    ASSERT_EQ(claimed, 4);
    ASSERT_EQ(keng_outbox_recover(e.st), 1);
    cJSON *counts = NULL;
    ASSERT_EQ(keng_outbox_counts(e.st, "A1", &counts), 0);
    ASSERT_EQ(cJSON_GetObjectItem(counts, "delivered")->valueint, 1);
    ASSERT_EQ(cJSON_GetObjectItem(counts, "dead")->valueint, 1);
    ASSERT_EQ(cJSON_GetObjectItem(counts, "pending")->valueint, 2);
    ASSERT_EQ(cJSON_GetObjectItem(counts, "failed")->valueint, 1);
    cJSON_Delete(counts);
    ASSERT_EQ(keng_outbox_redeliver(e.st, "A1"), 1);
    ASSERT_EQ(keng_outbox_next_due(e.st, 100), 4000000000);
    env_close(&e);
    sqlite3 *raw = raw_open(e.db);
    char buf[64];
    ASSERT_STR_EQ(q_text(raw, "PRAGMA integrity_check", buf, sizeof buf), "ok");
    sqlite3_close(raw);
    env_done(&e);
}

static void on_claim_list(void *ud, const keng_outbox_row *row)
{
    int64_t *ids = ud;
    ids[++ids[0]] = row->id; /* ids[0]: how many */
}

/* A claim marks inflight exactly the rows it hands out, in runs of consecutive ids: rows between
 * them that are not due, not pending or beyond the limit stay as they were. */
TEST(outbox_claim_marks_exactly_the_rows_read)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    sqlite3 *db = keng_store_db(e.st);
    exec_ok(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12)"
                " INSERT INTO deliveries (id, alert_id, revision, event, recipient, channel,"
                " contact_index, address, message_id, link_kind, idem_key, created_at)"
                " SELECT i, 'A1', 1, 'alert', 'hh-' || i, 'webhook', 0, '{}', 1, 'r',"
                " 'A1.1.hh-' || i || '.webhook', 100 FROM n");
    ASSERT_EQ(keng_outbox_add_states(e.st, 0, 500), 12);
    /* 3 and 8 are not due yet, 5 was delivered, 10 is due later than the others: the due order
     * is 1 2 4 6 7 9 11 12 then 10. */
    exec_ok(db, "UPDATE delivery_state SET next_at = 5000 WHERE id IN (3, 8);"
                "UPDATE delivery_state SET status = 'delivered' WHERE id = 5;"
                "UPDATE delivery_state SET next_at = 900 WHERE id = 10");
    int64_t got[16] = {0};
    ASSERT_EQ(keng_outbox_claim(e.st, 1000, 7, on_claim_list, got), 7);
    ASSERT_EQ(got[0], 7);
    const int64_t want[] = {1, 2, 4, 6, 7, 9, 11};
    for (int i = 0; i < 7; i++)
        ASSERT_EQ(got[1 + i], want[i]);
    ASSERT_EQ(q_int(db, "SELECT group_concat(id) = '1,2,4,6,7,9,11' FROM (SELECT id FROM"
                        " delivery_state WHERE status = 'inflight' ORDER BY id)"),
              1);
    ASSERT_EQ(q_int(db, "SELECT group_concat(id) = '3,8,10,12' FROM (SELECT id FROM"
                        " delivery_state WHERE status = 'pending' ORDER BY id)"),
              1);
    /* The rest: 12, then 10; 3 and 8 only once due. */
    memset(got, 0, sizeof got);
    ASSERT_EQ(keng_outbox_claim(e.st, 1000, 50, on_claim_list, got), 2);
    ASSERT_EQ(got[1], 12);
    ASSERT_EQ(got[2], 10);
    ASSERT_EQ(keng_outbox_claim(e.st, 1000, 50, on_claim_list, got), 0);
    memset(got, 0, sizeof got);
    ASSERT_EQ(keng_outbox_claim(e.st, 6000, 50, on_claim_list, got), 2);
    ASSERT_EQ(got[1], 3);
    ASSERT_EQ(got[2], 8);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM delivery_state WHERE status = 'inflight'"), 11);
    ASSERT_EQ(keng_outbox_recover(e.st), 11);
    env_close(&e);
    env_done(&e);
}

TEST(store_refuses_newer_schema)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    int v = keng_store_schema_version(e.st);
    env_close(&e);
    sqlite3 *raw = raw_open(e.db);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
    exec_ok(raw, sql);
    sqlite3_close(raw);
    quiet();
    keng_store *st = (keng_store *)&st;
    ASSERT_EQ(keng_store_open(e.db, &st), -EPROTO);
    ASSERT_NULL(st);
    /* and left the file alone */
    raw = raw_open(e.db);
    ASSERT_EQ(q_int(raw, "PRAGMA user_version"), v + 1);
    sqlite3_close(raw);
    env_done(&e);
}

TEST(store_failed_migration_is_rolled_back)
{
    st_env e;
    env_init(&e);
    /* A file at version 0 that already has a table of migration 1: the migration fails halfway
     * (after nothing, or after some CREATEs) and must leave no trace. */
    sqlite3 *raw = NULL;
    ASSERT_EQ(sqlite3_open(e.db, &raw), SQLITE_OK);
    exec_ok(raw, "CREATE TABLE tokens(x); INSERT INTO tokens VALUES (42);");
    sqlite3_close(raw);
    quiet();
    keng_store *st = (keng_store *)&st;
    int rc = keng_store_open(e.db, &st);
    ASSERT_LT(rc, 0);
    ASSERT_NULL(st);
    raw = raw_open(e.db);
    ASSERT_EQ(q_int(raw, "PRAGMA user_version"), 0);
    ASSERT_EQ(q_int(raw, "SELECT count(*) FROM sqlite_schema WHERE name IN "
                         "('groups', 'members', 'memberships', 'groups_kind')"),
              0);
    ASSERT_EQ(q_int(raw, "SELECT x FROM tokens"), 42);
    sqlite3_close(raw);
    env_done(&e);
}

TEST(store_close_checkpoints_wal)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", e.db);
    ASSERT_EQ(keng_store_exec(e.st, "CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)"), 0);
    for (int i = 0; i < 50; i++) insert_note(e.st, "một dòng");
    ASSERT_GT(file_size(wal), 0);
    env_close(&e);
    ASSERT_LE(file_size(wal), 0); /* truncated or removed */
    sqlite3 *raw = raw_open(e.db);
    ASSERT_EQ(q_int(raw, "SELECT count(*) FROM notes"), 50);
    sqlite3_close(raw);
    env_done(&e);
}

/* ---- transactions ---- */

TEST(store_nested_commit)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    ASSERT_EQ(keng_store_exec(e.st, "CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)"), 0);
    sqlite3 *db = keng_store_db(e.st);
    sqlite3 *other = raw_open(e.db);

    ASSERT_EQ(keng_store_begin(e.st), 0);
    ASSERT(!sqlite3_get_autocommit(db));
    insert_note(e.st, "outer");
    ASSERT_EQ(keng_store_begin(e.st), 0);
    insert_note(e.st, "inner");
    ASSERT_EQ(keng_store_commit(e.st), 0); /* inner: nothing committed yet */
    ASSERT(!sqlite3_get_autocommit(db));
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 0);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM notes"), 2); /* own writes are visible */
    ASSERT_EQ(keng_store_commit(e.st), 0); /* outer */
    ASSERT(sqlite3_get_autocommit(db));
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 2);

    /* Three levels deep, committed in order. */
    for (int i = 0; i < 3; i++) ASSERT_EQ(keng_store_begin(e.st), 0);
    insert_note(e.st, "deep");
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(keng_store_commit(e.st), 0);
        ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 2);
    }
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 3);

    /* A commit without a begin is a caller error. */
    ASSERT_EQ(keng_store_commit(e.st), -EINVAL);
    sqlite3_close(other);
    env_done(&e);
}

TEST(store_nested_rollback)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    ASSERT_EQ(keng_store_exec(e.st, "CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)"), 0);
    sqlite3 *db = keng_store_db(e.st);
    insert_note(e.st, "kept");

    /* Rollback after an inner commit undoes the inner writes as well as the outer ones. */
    ASSERT_EQ(keng_store_begin(e.st), 0);
    insert_note(e.st, "outer");
    ASSERT_EQ(keng_store_begin(e.st), 0);
    insert_note(e.st, "inner");
    ASSERT_EQ(keng_store_commit(e.st), 0);
    keng_store_rollback(e.st);
    ASSERT(sqlite3_get_autocommit(db));
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM notes"), 1);

    /* Rollback from the inner level ends the whole transaction: the outer commit then finds
     * nothing to commit and says so. */
    ASSERT_EQ(keng_store_begin(e.st), 0);
    insert_note(e.st, "outer");
    ASSERT_EQ(keng_store_begin(e.st), 0);
    insert_note(e.st, "inner");
    keng_store_rollback(e.st);
    ASSERT(sqlite3_get_autocommit(db));
    ASSERT_EQ(keng_store_commit(e.st), -EINVAL);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM notes"), 1);

    /* Rollback with nothing open is harmless; the store is usable afterwards. */
    keng_store_rollback(e.st);
    ASSERT_EQ(keng_store_begin(e.st), 0);
    insert_note(e.st, "after");
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM notes"), 2);
    char buf[32];
    ASSERT_STR_EQ(q_text(db, "SELECT group_concat(text, ',') FROM (SELECT text FROM notes "
                             "ORDER BY id)",
                         buf, sizeof buf),
                  "kept,after");
    env_done(&e);
}

TEST(store_begin_is_immediate)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    ASSERT_EQ(keng_store_exec(e.st, "CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)"), 0);
    sqlite3 *other = raw_open(e.db);
    sqlite3_busy_timeout(other, 0);
    /* begin takes the write lock at once: another writer is refused before we write anything */
    ASSERT_EQ(keng_store_begin(e.st), 0);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_BUSY);
    /* … but WAL readers are not blocked by it */
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 0);
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    /* Now the other connection holds the lock: begin fails with -EBUSY after the busy timeout
     * and leaves no transaction (or nesting count) behind. */
    sqlite3_busy_timeout(keng_store_db(e.st), 50);
    quiet();
    ASSERT_EQ(keng_store_begin(e.st), -EBUSY);
    ASSERT(sqlite3_get_autocommit(keng_store_db(e.st)));
    ASSERT_EQ(keng_store_commit(e.st), -EINVAL);
    /* A write outside a transaction meets the same lock: -EBUSY as well. */
    ASSERT_EQ(keng_store_exec(e.st, "INSERT INTO notes(text) VALUES ('x')"), -EBUSY);
    exec_ok(other, "COMMIT");
    ASSERT_EQ(keng_store_begin(e.st), 0);
    insert_note(e.st, "now");
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 1);
    sqlite3_close(other);
    env_done(&e);
}

TEST(store_second_connection_sees_committed_only)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    ASSERT_EQ(keng_store_exec(e.st, "CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)"), 0);
    sqlite3 *other = raw_open(e.db);
    ASSERT_EQ(keng_store_begin(e.st), 0);
    for (int i = 0; i < 100; i++) insert_note(e.st, "pending");
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 0);
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 100);

    /* A reader with an open snapshot keeps it while the store commits more. */
    exec_ok(other, "BEGIN");
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 100);
    ASSERT_EQ(keng_store_begin(e.st), 0);
    insert_note(e.st, "later");
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 100);
    exec_ok(other, "COMMIT");
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes"), 101);

    /* A rolled back transaction never becomes visible. */
    ASSERT_EQ(keng_store_begin(e.st), 0);
    insert_note(e.st, "gone");
    keng_store_rollback(e.st);
    ASSERT_EQ(q_int(other, "SELECT count(*) FROM notes WHERE text = 'gone'"), 0);
    sqlite3_close(other);
    env_done(&e);
}

TEST(store_begin_read_shares_one_snapshot)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    ASSERT_EQ(keng_store_exec(e.st, "CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)"), 0);
    insert_note(e.st, "one");
    sqlite3 *db = keng_store_db(e.st);
    sqlite3 *other = raw_open(e.db);
    ASSERT_EQ(keng_store_begin_read(e.st), 0);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM notes"), 1);
    exec_ok(other, "INSERT INTO notes(text) VALUES ('two')"); /* not blocked by our reader */
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM notes"), 1);   /* same snapshot */
    ASSERT_EQ(keng_store_begin(e.st), 0);                    /* nests */
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT(!sqlite3_get_autocommit(db));
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT(sqlite3_get_autocommit(db));
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM notes"), 2);
    sqlite3_close(other);
    env_done(&e);
}

/* ---- statement cache ---- */

TEST(store_stmt_cache)
{
    static const char SQL_SEL[] = "SELECT ?1 IS NULL, ?1";
    st_env e;
    env_init(&e);
    env_open(&e);
    sqlite3_stmt *a = keng_store_stmt(e.st, SQL_SEL);
    ASSERT_NOT_NULL(a);
    ASSERT_EQ(sqlite3_bind_int(a, 1, 7), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(a), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(a, 0), 0);
    ASSERT_EQ(sqlite3_column_int(a, 1), 7);
    /* Same SQL: the same statement, reset (steppable from the start) with bindings cleared;
     * the caller did not even reset it. */
    sqlite3_stmt *b = keng_store_stmt(e.st, SQL_SEL);
    ASSERT(a == b);
    ASSERT_EQ(sqlite3_stmt_busy(b), 0);
    ASSERT_EQ(sqlite3_step(b), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(b, 0), 1); /* ?1 is NULL again */
    sqlite3_reset(b);
    /* The text is the key, not the pointer. */
    char copy[sizeof SQL_SEL];
    memcpy(copy, SQL_SEL, sizeof copy);
    ASSERT((const char *)copy != SQL_SEL);
    ASSERT(keng_store_stmt(e.st, copy) == a);
    /* Other SQL: another statement. */
    sqlite3_stmt *c = keng_store_stmt(e.st, "SELECT 2");
    ASSERT_NOT_NULL(c);
    ASSERT(c != a);
    ASSERT(keng_store_stmt(e.st, "SELECT 2") == c);
    ASSERT(sqlite3_stmt_readonly(c));

    /* A statement in the middle of its rows starts over when fetched again. */
    ASSERT_EQ(keng_store_exec(e.st, "CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)"), 0);
    insert_note(e.st, "a");
    insert_note(e.st, "b");
    sqlite3_stmt *l = keng_store_stmt(e.st, "SELECT text FROM notes ORDER BY id");
    ASSERT_EQ(sqlite3_step(l), SQLITE_ROW);
    ASSERT_STR_EQ(keng_store_text(l, 0), "a");
    ASSERT_EQ(sqlite3_step(l), SQLITE_ROW);
    ASSERT_STR_EQ(keng_store_text(l, 0), "b");
    l = keng_store_stmt(e.st, "SELECT text FROM notes ORDER BY id");
    ASSERT_EQ(sqlite3_step(l), SQLITE_ROW);
    ASSERT_STR_EQ(keng_store_text(l, 0), "a");
    sqlite3_reset(l);

    /* keng_store_text turns NULL into "" */
    sqlite3_stmt *n = keng_store_stmt(e.st, "SELECT NULL, 'x'");
    ASSERT_EQ(sqlite3_step(n), SQLITE_ROW);
    ASSERT_STR_EQ(keng_store_text(n, 0), "");
    ASSERT_STR_EQ(keng_store_text(n, 1), "x");
    sqlite3_reset(n);

    /* A prepare error is NULL, and is not cached as a statement. */
    quiet();
    ASSERT_NULL(keng_store_stmt(e.st, "SELEC nonsense"));
    ASSERT_NULL(keng_store_stmt(e.st, "SELECT * FROM no_such_table"));
    env_done(&e);
}

TEST(store_stmt_cache_survives_schema_change)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    ASSERT_EQ(keng_store_exec(e.st, "CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)"), 0);
    insert_note(e.st, "a");
    sqlite3_stmt *s = keng_store_stmt(e.st, "SELECT count(*) FROM notes");
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(s, 0), 1);
    /* A migration-like change under a cached statement: SQLite re-prepares it. */
    ASSERT_EQ(keng_store_exec(e.st, "ALTER TABLE notes ADD COLUMN extra TEXT"), 0);
    ASSERT(keng_store_stmt(e.st, "SELECT count(*) FROM notes") == s);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(s, 0), 1);
    sqlite3_reset(s);
    env_done(&e);
}

TEST(store_stmt_cache_is_bounded)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    quiet();
    enum { MANY = 300 };
    static char sql[MANY][32]; /* the cache borrows the text: it must outlive the store */
    int got = 0;
    sqlite3_stmt *first = NULL;
    for (int i = 0; i < MANY; i++) {
        snprintf(sql[i], sizeof sql[i], "SELECT %d", i);
        sqlite3_stmt *s = keng_store_stmt(e.st, sql[i]);
        if (i == 0) first = s;
        if (!s) break;
        got++;
    }
    ASSERT_GT(got, 16);
    ASSERT_LT(got, MANY); /* a full cache refuses instead of growing without bound */
    /* what is cached stays usable */
    ASSERT(keng_store_stmt(e.st, sql[0]) == first);
    ASSERT_EQ(sqlite3_step(first), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(first, 0), 0);
    sqlite3_reset(first);
    env_done(&e);
}

/* ---- errors ---- */

TEST(store_errno_map)
{
    static const struct {
        int rc, want;
    } cases[] = {
        {SQLITE_OK, 0},
        {SQLITE_ROW, 0},
        {SQLITE_DONE, 0},
        {SQLITE_BUSY, -EBUSY},
        {SQLITE_BUSY_SNAPSHOT, -EBUSY},
        {SQLITE_BUSY_TIMEOUT, -EBUSY},
        {SQLITE_LOCKED, -EBUSY},
        {SQLITE_LOCKED_SHAREDCACHE, -EBUSY},
        {SQLITE_NOMEM, -ENOMEM},
        {SQLITE_FULL, -ENOSPC},
        {SQLITE_CONSTRAINT, -EEXIST},
        {SQLITE_CONSTRAINT_UNIQUE, -EEXIST},
        {SQLITE_CONSTRAINT_PRIMARYKEY, -EEXIST},
        {SQLITE_CONSTRAINT_NOTNULL, -EEXIST},
        {SQLITE_READONLY, -EACCES},
        {SQLITE_READONLY_DBMOVED, -EACCES},
        {SQLITE_PERM, -EACCES},
        {SQLITE_AUTH, -EACCES},
        {SQLITE_CANTOPEN, -ENOENT},
        {SQLITE_CANTOPEN_ISDIR, -ENOENT},
        {SQLITE_TOOBIG, -E2BIG},
        {SQLITE_CORRUPT, -EILSEQ},
        {SQLITE_NOTADB, -EILSEQ},
        {SQLITE_ERROR, -EIO},
        {SQLITE_IOERR, -EIO},
        {SQLITE_IOERR_FSYNC, -EIO},
        {SQLITE_MISMATCH, -EIO},
        {SQLITE_MISUSE, -EIO},
        {SQLITE_RANGE, -EIO},
        {SQLITE_SCHEMA, -EIO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = keng_store_errno(cases[i].rc);
        if (got != cases[i].want)
            TEST_FAIL("keng_store_errno(%d \"%s\") = %d, want %d", cases[i].rc,
                      sqlite3_errstr(cases[i].rc), got, cases[i].want);
        ASSERT_LE(got, 0);
    }
}

TEST(store_errno_from_real_errors)
{
    st_env e;
    env_init(&e);
    env_open(&e);
    quiet();
    ASSERT_EQ(keng_store_exec(e.st, "CREATE TABLE u(id TEXT PRIMARY KEY, n INTEGER NOT NULL)"), 0);
    ASSERT_EQ(keng_store_exec(e.st, "INSERT INTO u VALUES ('a', 1)"), 0);
    /* duplicate key and NOT NULL: constraint → -EEXIST, through exec and through a statement */
    ASSERT_EQ(keng_store_exec(e.st, "INSERT INTO u VALUES ('a', 2)"), -EEXIST);
    ASSERT_EQ(keng_store_exec(e.st, "INSERT INTO u VALUES ('b', NULL)"), -EEXIST);
    sqlite3_stmt *s = keng_store_stmt(e.st, "INSERT INTO u VALUES (?1, 3)");
    ASSERT_NOT_NULL(s);
    sqlite3_bind_text(s, 1, "a", -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    ASSERT_EQ(rc & 0xff, SQLITE_CONSTRAINT);
    ASSERT_EQ(keng_store_errno(rc), -EEXIST);
    /* a syntax error or a missing table is a plain -EIO */
    ASSERT_EQ(keng_store_exec(e.st, "INSERT INTO nowhere VALUES (1)"), -EIO);
    ASSERT_EQ(keng_store_exec(e.st, "THIS IS NOT SQL"), -EIO);
    /* A failed statement inside a transaction does not end it: the rest still commits. */
    ASSERT_EQ(keng_store_begin(e.st), 0);
    ASSERT_EQ(keng_store_exec(e.st, "INSERT INTO u VALUES ('c', 4)"), 0);
    ASSERT_EQ(keng_store_exec(e.st, "INSERT INTO u VALUES ('a', 5)"), -EEXIST);
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT_EQ(q_int(keng_store_db(e.st), "SELECT count(*) FROM u"), 2);
    ASSERT_EQ(q_int(keng_store_db(e.st), "SELECT n FROM u WHERE id = 'a'"), 1);
    env_done(&e);
}

TEST(store_open_not_a_database)
{
    st_env e;
    env_init(&e);
    FILE *f = fopen(e.db, "wb");
    ASSERT_NOT_NULL(f);
    for (int i = 0; i < 64; i++) fputs("this is not an SQLite file, just text. ", f);
    fclose(f);
    quiet();
    keng_store *st = (keng_store *)&st;
    ASSERT_EQ(keng_store_open(e.db, &st), -EILSEQ);
    ASSERT_NULL(st);
    env_done(&e);
}

/* ---- durability ---- */

/* The child opens the store, commits one row, then starts a transaction big enough to spill
 * pages into the WAL (a small page cache), tells the parent, and waits to be killed. */
static void crash_child(const char *db, int ready_fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(10);
    keng_store *st = NULL;
    if (keng_store_open(db, &st)) _exit(2);
    if (keng_store_exec(st, "CREATE TABLE crash(id INTEGER PRIMARY KEY, tag TEXT, pad BLOB)"))
        _exit(3);
    if (keng_store_begin(st)) _exit(4);
    if (keng_store_exec(st, "INSERT INTO crash(tag, pad) VALUES ('committed', zeroblob(100))"))
        _exit(5);
    if (keng_store_commit(st)) _exit(6);
    if (keng_store_exec(st, "PRAGMA cache_size = 10")) _exit(7);
    if (keng_store_begin(st)) _exit(8);
    for (int i = 0; i < 2000; i++) {
        sqlite3_stmt *s = keng_store_stmt(st, "INSERT INTO crash(tag, pad) VALUES"
                                              " ('uncommitted', randomblob(300))");
        if (!s || sqlite3_step(s) != SQLITE_DONE) _exit(9);
    }
    if (keng_store_exec(st, "UPDATE crash SET tag = 'changed' WHERE tag = 'committed'")) _exit(10);
    char c = 'r';
    if (write(ready_fd, &c, 1) != 1) _exit(11);
    for (;;) pause();
}

TEST_TIMEOUT(store_crash_mid_transaction, 15)
{
    st_env e;
    env_init(&e);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        crash_child(e.db, fds[1]);
        _exit(1);
    }
    close(fds[1]);
    char c = 0;
    ssize_t n = read(fds[0], &c, 1);
    close(fds[0]);
    if (n != 1) {
        int status = 0;
        waitpid(pid, &status, 0);
        TEST_FAIL("child failed before the crash point: status %d", status);
    }
    ASSERT_EQ(c, 'r');
    /* The uncommitted transaction reached the WAL file (not just memory). */
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", e.db);
    ASSERT_GT(file_size(wal), 100 * 1024);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGKILL);

    env_open(&e);
    sqlite3 *db = keng_store_db(e.st);
    ASSERT_GT(keng_store_schema_version(e.st), 0);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM crash WHERE tag = 'committed'"), 1);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM crash WHERE tag <> 'committed'"), 0);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM crash"), 1);
    char buf[64];
    ASSERT_STR_EQ(q_text(db, "PRAGMA integrity_check", buf, sizeof buf), "ok");
    /* and the store writes normally after recovery */
    ASSERT_EQ(keng_store_begin(e.st), 0);
    ASSERT_EQ(keng_store_exec(e.st, "INSERT INTO crash(tag) VALUES ('after')"), 0);
    ASSERT_EQ(keng_store_commit(e.st), 0);
    ASSERT_EQ(q_int(db, "SELECT count(*) FROM crash"), 2);
    env_done(&e);
}
