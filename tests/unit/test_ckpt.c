/* The checkpointer (ckpt.h): WAL pages move into keng.db on a pool thread, the loop's commits
 * never checkpoint themselves, and the data is all there afterwards. */
#include "test.h"

#include "keng/ckpt.h"
#include "keng/store.h"

#include <sys/stat.h>
#include <unistd.h>

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void fill(keng_store *st, int txs, int rows_per_tx)
{
    char big[2048];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int t = 0; t < txs; t++) {
        ASSERT_EQ(keng_store_begin(st), 0);
        for (int i = 0; i < rows_per_tx; i++) {
            sqlite3_stmt *s = keng_store_stmt(st, "INSERT INTO audit (at, actor, action, detail,"
                                                  " prev_hash, hash) VALUES (1, 't', 'fill', ?1,"
                                                  " '', '')");
            ASSERT(s);
            sqlite3_bind_text(s, 1, big, -1, SQLITE_STATIC);
            ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
        }
        ASSERT_EQ(keng_store_commit(st), 0);
    }
}

TEST(ckpt_runs_in_the_pool_and_keeps_every_row)
{
    char dir[] = "/tmp/keng-ckpt-XXXXXX", db[256], wal[280];
    ASSERT(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/keng.db", dir);
    snprintf(wal, sizeof wal, "%s-wal", db);
    keng_store *st;
    ASSERT_EQ(keng_store_open(db, &st), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    keng_ckpt *c;
    ASSERT_EQ(keng_ckpt_start(&loop, st, db, 100, &c), 0);
    long db_before = file_size(db);
    /* Each round writes 300 rows of 2 KB (150+ pages) in 10 commits: past the mark of 100. */
    for (int round = 0; round < 4; round++) {
        fill(st, 10, 30);
        uv_run(&loop, UV_RUN_DEFAULT); /* returns once the queued checkpoint is done */
    }
    keng_ckpt_stats s;
    keng_ckpt_get_stats(c, &s);
    ASSERT_EQ(s.runs, 4); /* one per round: never two at once, never none */
    ASSERT_GE(s.pages, 100);
    ASSERT_GT(file_size(db), db_before); /* pages reached the database file itself */
    fill(st, 1, 1); /* may queue one more: the loop runs it before the checkpointer goes */
    uv_run(&loop, UV_RUN_DEFAULT);
    keng_ckpt_free(c);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    sqlite3_stmt *q = keng_store_stmt(st, "SELECT count(*) FROM audit WHERE action = 'fill'");
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(q, 0), 1201);
    sqlite3_reset(q);
    keng_store_close(st);
    /* Reopened from the files alone: everything is there and the database is sound. */
    ASSERT_EQ(keng_store_open(db, &st), 0);
    q = keng_store_stmt(st, "PRAGMA integrity_check");
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    ASSERT_STR_EQ((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_reset(q);
    q = keng_store_stmt(st, "SELECT count(*) FROM audit WHERE action = 'fill'");
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(q, 0), 1201);
    sqlite3_reset(q);
    keng_store_close(st);
    unlink(db), unlink(wal);
    char shm[280];
    snprintf(shm, sizeof shm, "%s-shm", db);
    unlink(shm);
    ASSERT_EQ(rmdir(dir), 0);
}

TEST(ckpt_one_at_a_time_and_finished_on_the_loop)
{
    char dir[] = "/tmp/keng-ckpt-XXXXXX", db[256];
    ASSERT(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/keng.db", dir);
    keng_store *st;
    ASSERT_EQ(keng_store_open(db, &st), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    keng_ckpt *c;
    ASSERT_EQ(keng_ckpt_start(&loop, st, db, 100, &c), 0);
    /* Far past the mark, many commits: one checkpoint is queued, and it is only counted once
     * the loop has run its completion (the commits themselves never checkpoint). */
    fill(st, 20, 30);
    keng_ckpt_stats s;
    keng_ckpt_get_stats(c, &s);
    ASSERT_EQ(s.runs, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    keng_ckpt_get_stats(c, &s);
    ASSERT_EQ(s.runs, 1);
    keng_ckpt_free(c);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    keng_store_close(st);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ASSERT_EQ(system(cmd), 0);
}
