#include "keng/ckpt.h"

#include "keng/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct keng_ckpt {
    uv_loop_t *loop;
    keng_store *st;
    char *path;
    int pages;
    uv_work_t work;
    int busy;        /* a checkpoint is queued or running */
    sqlite3 *db;     /* the worker's own connection, opened on first use (pool thread only) */
    int rc;          /* of the last run, read on the loop after it */
    int log, copied; /* frames in the WAL and frames copied by the last run */
    uint64_t us;
    keng_ckpt_stats stats;
};

static void ckpt_run(uv_work_t *w)
{
    keng_ckpt *c = w->data;
    uint64_t t0 = uv_hrtime();
    c->log = c->copied = 0;
    c->rc = SQLITE_OK;
    if (!c->db) {
        c->rc = sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (c->rc == SQLITE_OK) {
            sqlite3_busy_timeout(c->db, 1000);
            /* A fresh connection has not looked at the file yet: until it does it is not in WAL
             * mode and a checkpoint does nothing (-1 frames). */
            c->rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        }
    }
    if (c->rc == SQLITE_OK)
        c->rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &c->log,
                                          &c->copied);
    c->us = (uv_hrtime() - t0) / 1000;
}

static void ckpt_done(uv_work_t *w, int status)
{
    keng_ckpt *c = w->data;
    c->busy = 0;
    if (status != 0) return; /* cancelled before it ran */
    if (c->rc != SQLITE_OK && c->rc != SQLITE_BUSY) {
        keng_warn("store: checkpoint: %s; the WAL grows until the next one",
                  c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(c->rc));
        if (c->db) {
            sqlite3_close(c->db); /* reopened by the next run */
            c->db = NULL;
        }
        return;
    }
    c->stats.runs++;
    if (c->copied > 0) c->stats.pages += (uint64_t)c->copied;
    if (c->us > c->stats.max_us) c->stats.max_us = c->us;
}

static int on_wal(void *ud, sqlite3 *db, const char *name, int frames)
{
    (void)db, (void)name;
    keng_ckpt *c = ud;
    c->stats.last_wal = frames;
    if (frames < c->pages || c->busy) return SQLITE_OK;
    c->work.data = c;
    if (uv_queue_work(c->loop, &c->work, ckpt_run, ckpt_done) == 0) c->busy = 1;
    return SQLITE_OK;
}

int keng_ckpt_start(uv_loop_t *loop, keng_store *st, const char *path, int pages,
                    keng_ckpt **out)
{
    *out = NULL;
    if (!sqlite3_threadsafe()) return -ENOTSUP;
    keng_ckpt *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return -ENOMEM;
    }
    c->loop = loop;
    c->st = st;
    c->pages = pages > 0 ? pages : 1000;
    /* Replaces the hook sqlite3_wal_autocheckpoint installs: SQLite no longer checkpoints on
     * its own (one hook per connection). */
    sqlite3_wal_hook(keng_store_db(st), on_wal, c);
    *out = c;
    return 0;
}

void keng_ckpt_get_stats(const keng_ckpt *c, keng_ckpt_stats *out)
{
    memset(out, 0, sizeof *out);
    if (c) *out = c->stats;
}

void keng_ckpt_free(keng_ckpt *c)
{
    if (!c) return;
    sqlite3_wal_autocheckpoint(keng_store_db(c->st), 1000);
    if (c->busy) { /* a pool thread still uses c: leaking it is the safe way out */
        keng_warn("store: checkpointer freed with a checkpoint in flight");
        return;
    }
    if (c->db) sqlite3_close(c->db);
    free(c->path);
    free(c);
}
