/* media: the photo store under DATA/media. Files are content-addressed by SHA-256, so a photo
 * uploaded twice (or attached to ten alerts) is kept once and its name proves its contents:
 *   MEDIA_DIR/<sha[0:2]>/<sha>             the original, as uploaded
 *   MEDIA_DIR/<sha[0:2]>/<sha>.thumb.jpg   its thumbnail
 * Writes are atomic (temp file in the same directory, fsync, rename, fsync of the directory), so a
 * crash leaves either the whole file or none, never half a photo under a valid name.
 *
 * Floor 2: plain POSIX file I/O and OpenSSL, no loop, no HTTP, no database. The functions block on
 * the disk, so they run on the libuv thread pool (uv_queue_work), never on the loop thread; they
 * hold no globals and are safe on any thread. The database row of a photo is the caller's.
 *
 * Ownership: the store owns nothing in memory between calls. keng_sha256 contexts belong to their
 * caller: every keng_sha256_init is paired with final_hex or free. */
#ifndef KENG_MEDIA_H
#define KENG_MEDIA_H

#include <stddef.h>

#define KENG_MEDIA_ID_LEN 64 /* a media id is the SHA-256 of the original, lowercase hex */
#define KENG_MEDIA_THUMB_SUFFIX ".thumb.jpg"

/* 1 when id is exactly 64 lowercase hex characters (a media id), else 0. Also the guard that
 * keeps "..", "/" and friends out of paths built from URLs. */
int keng_media_valid_id(const char *id);

/* Writes MEDIA_DIR/<sha[0:2]>/<sha><suffix> into out (suffix NULL or "" for the original).
 * 0, -EINVAL (bad id, or a suffix with '/'), or -ENAMETOOLONG when out is too small. */
__attribute__((warn_unused_result)) int keng_media_path(const char *media_dir, const char *sha_hex,
                                                        const char *suffix, char *out,
                                                        size_t outlen);

/* Stores len bytes under <sha><suffix>, creating the <sha[0:2]> directory if needed. When a file
 * of that name and size exists already it is left alone (0): same name, same bytes. The caller
 * vouches that sha_hex is the SHA-256 of the original. 0 or a negative errno (-ENOSPC, -EIO …). */
__attribute__((warn_unused_result)) int keng_media_write(const char *media_dir, const char *sha_hex,
                                                         const char *suffix, const void *data,
                                                         size_t len);

/* Moves a finished file (e.g. an assembled resumable upload, on the same file system) into the
 * store as <sha><suffix>: fsync, rename, fsync of the directory. If the target exists already,
 * src is removed instead. 0 or a negative errno (-EXDEV when src is on another file system). */
__attribute__((warn_unused_result)) int keng_media_adopt(const char *media_dir, const char *sha_hex,
                                                         const char *suffix, const char *src_path);

/* 1 when <sha><suffix> is in the store, 0 when not, or a negative errno (bad id …). If size is
 * not NULL it receives the file's size. */
int keng_media_exists(const char *media_dir, const char *sha_hex, const char *suffix, size_t *size);

/* Streaming SHA-256 (OpenSSL EVP), for bodies that arrive in pieces (resumable uploads). */
typedef struct keng_sha256 {
    void *ctx; /* EVP_MD_CTX *, NULL when not started or finished */
} keng_sha256;

/* 0, -ENOMEM, or -EIO. */
__attribute__((warn_unused_result)) int keng_sha256_init(keng_sha256 *h);
/* 0, -EINVAL (not started), or -EIO. */
__attribute__((warn_unused_result)) int keng_sha256_update(keng_sha256 *h, const void *data,
                                                           size_t len);
/* Writes the digest as 64 lowercase hex + NUL and releases the context (also on error).
 * 0, -EINVAL (not started), or -EIO. */
__attribute__((warn_unused_result)) int keng_sha256_final_hex(keng_sha256 *h, char out[65]);
/* Abandons a context; NULL, never-started and finished contexts are fine. */
void keng_sha256_free(keng_sha256 *h);

/* SHA-256 of a whole file, read in pieces (re-hashing an upload after a restart). 0 or errno. */
__attribute__((warn_unused_result)) int keng_sha256_file_hex(const char *path, char out[65]);

#endif
