/* ckpt: WAL checkpoints off the loop. SQLite's automatic checkpoint runs inside the COMMIT that
 * crosses its threshold, on the loop thread: copying some megabytes of pages into keng.db and an
 * fsync measured 15-25 ms of stall in the middle of a fan-out. With a checkpointer the loop's
 * connection only notices the WAL's size (its wal hook, after each commit) and a worker in the
 * libuv thread pool, with a connection of its own, runs a PASSIVE checkpoint, which never blocks
 * the writer. Loop thread for the API; the checkpoint itself on a pool thread.
 *
 * Lifetime: start after keng_store_open; free after the loop has run dry (a checkpoint in the
 * pool keeps the loop alive until it is done) and before keng_store_close. */
#ifndef KENG_CKPT_H
#define KENG_CKPT_H

#include <stdint.h>
#include <uv.h>

#include "keng/store.h"

typedef struct keng_ckpt keng_ckpt;

typedef struct keng_ckpt_stats {
    uint64_t runs;        /* checkpoints finished */
    uint64_t pages;       /* WAL frames copied into the database by them */
    uint64_t max_us;      /* the longest one (on the pool thread, not the loop) */
    int64_t last_wal;     /* frames in the WAL at the last commit */
} keng_ckpt_stats;

/* Turns SQLite's automatic checkpoint off for st and checkpoints in the pool whenever the WAL
 * holds at least pages frames (SQLite's default is 1000). path is the database file. 0, or
 * -ENOTSUP when this SQLite is built without threads (the automatic checkpoint stays on), or
 * -ENOMEM. */
int keng_ckpt_start(uv_loop_t *loop, keng_store *st, const char *path, int pages,
                    keng_ckpt **out);
void keng_ckpt_get_stats(const keng_ckpt *c, keng_ckpt_stats *out);
/* Puts SQLite's automatic checkpoint back and frees c. No checkpoint may be in flight. */
void keng_ckpt_free(keng_ckpt *c);

#endif
