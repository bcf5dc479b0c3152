/* store: the SQLite database at DATA/keng.db — schema migrations (PRAGMA user_version), a cache of
 * prepared statements, and write transactions (BEGIN IMMEDIATE). Loop thread only: SQLite calls
 * are short; callers batch many small writes into one transaction and split huge ones.
 * The store owns the connection and every cached statement; keng_store_close releases them. */
#ifndef KENG_STORE_H
#define KENG_STORE_H

#include <sqlite3.h>
#include <stdint.h>

typedef struct keng_store keng_store;

/* Opens (creating if needed) the database at path, sets WAL, synchronous=NORMAL, busy_timeout,
 * foreign keys, and runs the migrations. 0 or a negative errno; on error *out is NULL. */
__attribute__((warn_unused_result)) int keng_store_open(const char *path, keng_store **out);
/* The same, migrating no further than schema version (a database as an older kengd left it, for
 * the tests of a migration); a database already past it is opened as it is. */
__attribute__((warn_unused_result)) int keng_store_open_at(const char *path, int version,
                                                          keng_store **out);
void keng_store_close(keng_store *st); /* NULL is fine; checkpoints the WAL */

sqlite3 *keng_store_db(keng_store *st);
int keng_store_schema_version(keng_store *st);

/* A cached statement for sql (the text is the key; pass string literals). The statement is reset
 * and its bindings cleared before it is returned. NULL on a prepare error (logged). */
sqlite3_stmt *keng_store_stmt(keng_store *st, const char *sql);

/* Write transactions. begin is BEGIN IMMEDIATE; they nest by counting (only the outermost
 * commits). 0 or a negative errno. rollback undoes the outermost transaction. */
__attribute__((warn_unused_result)) int keng_store_begin(keng_store *st);
__attribute__((warn_unused_result)) int keng_store_commit(keng_store *st);
void keng_store_rollback(keng_store *st);

/* A read transaction (plain BEGIN: it becomes a write one at the first write). A request's
 * reads then share one snapshot and one lock instead of one per statement. Ended by commit. */
__attribute__((warn_unused_result)) int keng_store_begin_read(keng_store *st);

/* Runs one statement without results (DDL, PRAGMA). 0 or a negative errno. */
int keng_store_exec(keng_store *st, const char *sql);

/* SQLite result code → negative errno (-EBUSY, -ENOSPC, -EEXIST for constraint, -EIO …). */
int keng_store_errno(int sqlite_rc);

/* Size of the database file in bytes (page_count * page_size). */
int64_t keng_store_size(keng_store *st);

/* A text column as a C string, "" for NULL (borrowed: valid until the next step/reset). */
const char *keng_store_text(sqlite3_stmt *s, int col);

#endif
