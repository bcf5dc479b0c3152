/* The content-addressed photo store; see include/keng/media.h. Thread pool, never the loop. */
#include "keng/media.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads and writes in pieces this large, so a 25 MB photo is not one giant syscall to retry. */
#define MEDIA_IO_CHUNK (1u << 20)

int keng_media_valid_id(const char *id)
{
    if (!id) return 0;
    for (int i = 0; i < KENG_MEDIA_ID_LEN; i++) {
        char ch = id[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return 0;
    }
    return id[KENG_MEDIA_ID_LEN] == '\0';
}

static int path_fmt(char *out, size_t outlen, const char *fmt, const char *a, const char *b,
                    const char *c)
{
    int n = snprintf(out, outlen, fmt, a, b, c);
    if (n < 0) return -EINVAL;
    if ((size_t)n >= outlen) return -ENAMETOOLONG;
    return 0;
}

int keng_media_path(const char *media_dir, const char *sha_hex, const char *suffix, char *out,
                    size_t outlen)
{
    if (!media_dir || !*media_dir || !out || !outlen || !keng_media_valid_id(sha_hex))
        return -EINVAL;
    if (!suffix) suffix = "";
    if (strchr(suffix, '/')) return -EINVAL;
    char shard[3] = {sha_hex[0], sha_hex[1], '\0'};
    int n = snprintf(out, outlen, "%s/%s/%s%s", media_dir, shard, sha_hex, suffix);
    if (n < 0) return -EINVAL;
    if ((size_t)n >= outlen) return -ENAMETOOLONG;
    return 0;
}

/* The shard directory of a media id (MEDIA_DIR/ab). */
static int shard_dir(const char *media_dir, const char *sha_hex, char *out, size_t outlen)
{
    char shard[3] = {sha_hex[0], sha_hex[1], '\0'};
    return path_fmt(out, outlen, "%s/%s%s", media_dir, shard, "");
}

/* A rename is durable only once the directory holding the name is on disk too. */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = fsync(fd) ? -errno : 0;
    close(fd);
    /* Some file systems refuse fsync on a directory; the data itself is safe by then. */
    return rc == -EINVAL ? 0 : rc;
}

static int ensure_shard(const char *media_dir, const char *dir)
{
    if (mkdir(dir, 0700) == 0) return fsync_dir(media_dir);
    if (errno != EEXIST) return -errno;
    struct stat st;
    if (stat(dir, &st)) return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        size_t want = len < MEDIA_IO_CHUNK ? len : MEDIA_IO_CHUNK;
        ssize_t n = write(fd, p, want);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int keng_media_exists(const char *media_dir, const char *sha_hex, const char *suffix, size_t *size)
{
    char path[PATH_MAX];
    int rc = keng_media_path(media_dir, sha_hex, suffix, path, sizeof path);
    if (rc) return rc;
    struct stat st;
    if (stat(path, &st)) return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
    if (!S_ISREG(st.st_mode)) return -EISDIR;
    if (size) *size = (size_t)st.st_size;
    return 1;
}

int keng_media_write(const char *media_dir, const char *sha_hex, const char *suffix,
                     const void *data, size_t len)
{
    char path[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX];
    if (!data && len) return -EINVAL;
    int rc = keng_media_path(media_dir, sha_hex, suffix, path, sizeof path);
    if (rc) return rc;
    size_t have = 0;
    /* Same name means same bytes; the size check only repairs a file truncated behind our back
     * (a rename never leaves a short file, but a restored backup might). */
    rc = keng_media_exists(media_dir, sha_hex, suffix, &have);
    if (rc < 0) return rc;
    if (rc == 1 && have == len) return 0;
    if ((rc = shard_dir(media_dir, sha_hex, dir, sizeof dir))) return rc;
    if ((rc = ensure_shard(media_dir, dir))) return rc;
    /* A dot name: never mistaken for a media id by anyone listing the directory. */
    if ((rc = path_fmt(tmp, sizeof tmp, "%s/.%s%s.XXXXXX", dir, sha_hex, suffix ? suffix : "")))
        return rc;
    int fd = mkostemp(tmp, O_CLOEXEC); /* 0600: photos of residents are not for other users */
    if (fd < 0) return -errno;
    rc = write_all(fd, data, len);
    if (!rc && fsync(fd)) rc = -errno;
    if (close(fd) && !rc) rc = -errno;
    if (!rc && rename(tmp, path)) rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return fsync_dir(dir);
}

int keng_media_adopt(const char *media_dir, const char *sha_hex, const char *suffix,
                     const char *src_path)
{
    char path[PATH_MAX], dir[PATH_MAX];
    if (!src_path) return -EINVAL;
    int rc = keng_media_path(media_dir, sha_hex, suffix, path, sizeof path);
    if (rc) return rc;
    rc = keng_media_exists(media_dir, sha_hex, suffix, NULL);
    if (rc < 0) return rc;
    if (rc == 1) return unlink(src_path) ? -errno : 0;
    if ((rc = shard_dir(media_dir, sha_hex, dir, sizeof dir))) return rc;
    if ((rc = ensure_shard(media_dir, dir))) return rc;
    int fd = open(src_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    rc = fsync(fd) ? -errno : 0;
    close(fd);
    if (rc) return rc;
    if (rename(src_path, path)) return -errno;
    return fsync_dir(dir);
}

/* ---- streaming SHA-256 ---- */

int keng_sha256_init(keng_sha256 *h)
{
    if (!h) return -EINVAL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return -ENOMEM;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return -EIO;
    }
    h->ctx = ctx;
    return 0;
}

int keng_sha256_update(keng_sha256 *h, const void *data, size_t len)
{
    if (!h || !h->ctx || (!data && len)) return -EINVAL;
    if (len == 0) return 0;
    return EVP_DigestUpdate(h->ctx, data, len) == 1 ? 0 : -EIO;
}

int keng_sha256_final_hex(keng_sha256 *h, char out[65])
{
    if (!h || !h->ctx || !out) return -EINVAL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = EVP_DigestFinal_ex(h->ctx, md, &n) == 1 && n == 32;
    keng_sha256_free(h);
    if (!ok) return -EIO;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
    return 0;
}

void keng_sha256_free(keng_sha256 *h)
{
    if (!h || !h->ctx) return;
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}

int keng_sha256_file_hex(const char *path, char out[65])
{
    if (!path || !out) return -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    unsigned char *buf = malloc(MEDIA_IO_CHUNK);
    keng_sha256 h = {0};
    int rc = buf ? keng_sha256_init(&h) : -ENOMEM;
    while (!rc) {
        ssize_t n = read(fd, buf, MEDIA_IO_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            rc = -errno;
        else if (n == 0)
            break;
        else
            rc = keng_sha256_update(&h, buf, (size_t)n);
    }
    if (!rc) rc = keng_sha256_final_hex(&h, out);
    keng_sha256_free(&h);
    free(buf);
    close(fd);
    return rc;
}
