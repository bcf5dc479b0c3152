/* Tests for media: the content-addressed store (paths, atomic and idempotent writes, adoption)
 * and streaming SHA-256 against the FIPS 180-2 vectors. Each test works in its own temp dir. */
#include "test.h"

#include "keng/media.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static const char ID_ABC[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

static char *tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/keng-media-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(dir));
    return dir;
}

static void rm_rf(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

/* Reads a whole file (caller frees); *len its size. NULL when it cannot be opened. */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    ASSERT_EQ(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ASSERT_GE(n, 0);
    rewind(f);
    unsigned char *p = malloc((size_t)n + 1);
    ASSERT_NOT_NULL(p);
    ASSERT_EQ(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* Names in dir other than . and .. */
static int count_entries(const char *dir, int *hidden)
{
    DIR *d = opendir(dir);
    ASSERT_NOT_NULL(d);
    int n = 0;
    if (hidden) *hidden = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        if (hidden && e->d_name[0] == '.') (*hidden)++;
    }
    closedir(d);
    return n;
}

static void oneshot_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    ASSERT_EQ(EVP_Digest(p, n, md, &mlen, EVP_sha256(), NULL), 1);
    ASSERT_EQ(mlen, 32);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- ids and paths ---- */

TEST(media_valid_id)
{
    ASSERT_EQ(keng_media_valid_id(ID_ABC), 1);
    char upper[65];
    memcpy(upper, ID_ABC, 65);
    upper[0] = 'B';
    ASSERT_EQ(keng_media_valid_id(upper), 0);
    ASSERT_EQ(keng_media_valid_id(NULL), 0);
    ASSERT_EQ(keng_media_valid_id(""), 0);
    char shorter[65];
    memcpy(shorter, ID_ABC, 63);
    shorter[63] = '\0';
    ASSERT_EQ(keng_media_valid_id(shorter), 0);
    char longer[66];
    memcpy(longer, ID_ABC, 64);
    longer[64] = 'a';
    longer[65] = '\0';
    ASSERT_EQ(keng_media_valid_id(longer), 0);
    char dots[65];
    memcpy(dots, ID_ABC, 65);
    memcpy(dots, "../", 3);
    ASSERT_EQ(keng_media_valid_id(dots), 0);
    char g[65];
    memcpy(g, ID_ABC, 65);
    g[63] = 'g';
    ASSERT_EQ(keng_media_valid_id(g), 0);
    ASSERT_EQ(keng_media_valid_id("ba7816bf.jpg"), 0);
}

TEST(media_path_layout)
{
    char p[PATH_MAX];
    ASSERT_EQ(keng_media_path("/data/media", ID_ABC, NULL, p, sizeof p), 0);
    ASSERT_STR_EQ(p, "/data/media/ba/"
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ASSERT_EQ(keng_media_path("/data/media", ID_ABC, "", p, sizeof p), 0);
    ASSERT_STR_EQ(p, "/data/media/ba/"
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ASSERT_EQ(keng_media_path("/data/media", ID_ABC, KENG_MEDIA_THUMB_SUFFIX, p, sizeof p), 0);
    ASSERT_STR_EQ(p, "/data/media/ba/"
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.thumb.jpg");
}

TEST(media_path_errors)
{
    char p[PATH_MAX];
    ASSERT_EQ(keng_media_path("/m", "../../etc/passwd", NULL, p, sizeof p), -EINVAL);
    ASSERT_EQ(keng_media_path("/m", ID_ABC, "/../x", p, sizeof p), -EINVAL);
    ASSERT_EQ(keng_media_path(NULL, ID_ABC, NULL, p, sizeof p), -EINVAL);
    ASSERT_EQ(keng_media_path("", ID_ABC, NULL, p, sizeof p), -EINVAL);
    /* "/m/ba/" + 64 = 70 chars: 70 does not fit in 70 bytes, 71 does. */
    char small[71];
    ASSERT_EQ(keng_media_path("/m", ID_ABC, NULL, small, 70), -ENAMETOOLONG);
    ASSERT_EQ(keng_media_path("/m", ID_ABC, NULL, small, 71), 0);
    ASSERT_EQ(strlen(small), 70);
}

/* ---- writing ---- */

TEST(media_write_creates_file_0600)
{
    char *dir = tmpdir();
    ASSERT_EQ(keng_media_write(dir, ID_ABC, NULL, "abc", 3), 0);
    char p[PATH_MAX];
    ASSERT_EQ(keng_media_path(dir, ID_ABC, NULL, p, sizeof p), 0);
    size_t n;
    unsigned char *got = slurp(p, &n);
    ASSERT_NOT_NULL(got);
    ASSERT_EQ(n, 3);
    ASSERT(memcmp(got, "abc", 3) == 0);
    free(got);
    struct stat st;
    ASSERT_EQ(stat(p, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    char shard[PATH_MAX];
    snprintf(shard, sizeof shard, "%s/ba", dir);
    ASSERT_EQ(stat(shard, &st), 0);
    ASSERT(S_ISDIR(st.st_mode));
    ASSERT_EQ(st.st_mode & 0777, 0700);
    int hidden;
    ASSERT_EQ(count_entries(shard, &hidden), 1); /* no temp file left behind */
    ASSERT_EQ(hidden, 0);
    size_t sz = 0;
    ASSERT_EQ(keng_media_exists(dir, ID_ABC, NULL, &sz), 1);
    ASSERT_EQ(sz, 3);
    ASSERT_EQ(keng_media_exists(dir, ID_ABC, KENG_MEDIA_THUMB_SUFFIX, NULL), 0);
    rm_rf(dir);
}

TEST(media_write_same_bytes_is_noop)
{
    char *dir = tmpdir();
    ASSERT_EQ(keng_media_write(dir, ID_ABC, NULL, "abc", 3), 0);
    char p[PATH_MAX];
    ASSERT_EQ(keng_media_path(dir, ID_ABC, NULL, p, sizeof p), 0);
    struct stat a, b;
    ASSERT_EQ(stat(p, &a), 0);
    ASSERT_EQ(keng_media_write(dir, ID_ABC, NULL, "abc", 3), 0);
    ASSERT_EQ(stat(p, &b), 0);
    ASSERT_EQ(a.st_ino, b.st_ino); /* not rewritten: the same file, not a renamed copy */
    char shard[PATH_MAX];
    snprintf(shard, sizeof shard, "%s/ba", dir);
    ASSERT_EQ(count_entries(shard, NULL), 1);
    ASSERT_EQ(count_entries(dir, NULL), 1);
    rm_rf(dir);
}

TEST(media_write_original_and_thumb_side_by_side)
{
    char *dir = tmpdir();
    static const unsigned char thumb[] = {0xff, 0xd8, 0xff, 0xd9};
    ASSERT_EQ(keng_media_write(dir, ID_ABC, NULL, "abc", 3), 0);
    ASSERT_EQ(keng_media_write(dir, ID_ABC, KENG_MEDIA_THUMB_SUFFIX, thumb, sizeof thumb), 0);
    char p[PATH_MAX];
    ASSERT_EQ(keng_media_path(dir, ID_ABC, KENG_MEDIA_THUMB_SUFFIX, p, sizeof p), 0);
    size_t n;
    unsigned char *got = slurp(p, &n);
    ASSERT_NOT_NULL(got);
    ASSERT_EQ(n, sizeof thumb);
    ASSERT(memcmp(got, thumb, n) == 0);
    free(got);
    char shard[PATH_MAX];
    snprintf(shard, sizeof shard, "%s/ba", dir);
    ASSERT_EQ(count_entries(shard, NULL), 2);
    rm_rf(dir);
}

TEST(media_write_repairs_truncated_file)
{
    char *dir = tmpdir();
    ASSERT_EQ(keng_media_write(dir, ID_ABC, NULL, "abc", 3), 0);
    char p[PATH_MAX];
    ASSERT_EQ(keng_media_path(dir, ID_ABC, NULL, p, sizeof p), 0);
    ASSERT_EQ(truncate(p, 1), 0);
    ASSERT_EQ(keng_media_write(dir, ID_ABC, NULL, "abc", 3), 0);
    size_t n;
    unsigned char *got = slurp(p, &n);
    ASSERT_NOT_NULL(got);
    ASSERT_EQ(n, 3);
    ASSERT(memcmp(got, "abc", 3) == 0);
    free(got);
    rm_rf(dir);
}

TEST(media_write_empty_and_large)
{
    char *dir = tmpdir();
    static const char e[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    ASSERT_EQ(keng_media_write(dir, e, NULL, NULL, 0), 0);
    ASSERT_EQ(keng_media_exists(dir, e, NULL, NULL), 1);
    /* Larger than the I/O chunk, so the write loop goes round. */
    size_t n = (3u << 20) + 17;
    unsigned char *big = malloc(n);
    ASSERT_NOT_NULL(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 131 + (i >> 9));
    char id[65];
    oneshot_hex(big, n, id);
    ASSERT_EQ(keng_media_write(dir, id, NULL, big, n), 0);
    char p[PATH_MAX], fh[65];
    ASSERT_EQ(keng_media_path(dir, id, NULL, p, sizeof p), 0);
    ASSERT_EQ(keng_sha256_file_hex(p, fh), 0);
    ASSERT_STR_EQ(fh, id);
    free(big);
    rm_rf(dir);
}

TEST(media_write_errors)
{
    char *dir = tmpdir();
    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    ASSERT_EQ(keng_media_write(missing, ID_ABC, NULL, "abc", 3), -ENOENT);
    ASSERT_EQ(keng_media_write(dir, "not-an-id", NULL, "abc", 3), -EINVAL);
    ASSERT_EQ(keng_media_write(dir, ID_ABC, NULL, NULL, 3), -EINVAL);
    /* A file where the shard directory should be. */
    char shard[PATH_MAX];
    snprintf(shard, sizeof shard, "%s/ba", dir);
    int fd = open(shard, O_CREAT | O_WRONLY, 0600);
    ASSERT_GE(fd, 0);
    close(fd);
    ASSERT_EQ(keng_media_write(dir, ID_ABC, NULL, "abc", 3), -ENOTDIR);
    ASSERT_EQ(count_entries(dir, NULL), 1);
    rm_rf(dir);
}

/* A reader never sees a partial photo under its final name: either no file or all of it. */
typedef struct race {
    const char *dir;
    char ids[8][65];
    size_t len;
    const unsigned char *data[8];
    volatile int done;
    int torn;
} race;

static void *race_writer(void *p)
{
    race *r = p;
    for (int i = 0; i < 8; i++)
        if (keng_media_write(r->dir, r->ids[i], NULL, r->data[i], r->len)) r->torn = -1;
    r->done = 1;
    return NULL;
}

TEST_TIMEOUT(media_write_is_atomic_for_readers, 60)
{
    race r = {.dir = tmpdir(), .len = 1u << 20};
    unsigned char *bufs[8];
    for (int i = 0; i < 8; i++) {
        bufs[i] = malloc(r.len);
        ASSERT_NOT_NULL(bufs[i]);
        memset(bufs[i], 'a' + i, r.len);
        r.data[i] = bufs[i];
        oneshot_hex(bufs[i], r.len, r.ids[i]);
    }
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, race_writer, &r), 0);
    long polls = 0;
    while (!r.done) {
        for (int i = 0; i < 8; i++) {
            size_t sz = 0;
            int rc = keng_media_exists(r.dir, r.ids[i], NULL, &sz);
            ASSERT_GE(rc, 0);
            if (rc == 1 && sz != r.len) r.torn = 1;
        }
        polls++;
    }
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(r.torn, 0);
    ASSERT_GT(polls, 0);
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ(keng_media_exists(r.dir, r.ids[i], NULL, NULL), 1);
        free(bufs[i]);
    }
    rm_rf(r.dir);
}

/* Two uploads of the same photo at once both succeed and leave one intact file. */
typedef struct same {
    const char *dir;
    const char *id;
    const unsigned char *data;
    size_t len;
    int rc;
} same;

static void *same_writer(void *p)
{
    same *s = p;
    s->rc = keng_media_write(s->dir, s->id, NULL, s->data, s->len);
    return NULL;
}

TEST(media_write_concurrent_same_id)
{
    char *dir = tmpdir();
    size_t n = 512 * 1024;
    unsigned char *buf = malloc(n);
    ASSERT_NOT_NULL(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i ^ (i >> 8));
    char id[65];
    oneshot_hex(buf, n, id);
    same s[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        s[i] = (same){dir, id, buf, n, 1};
        ASSERT_EQ(pthread_create(&t[i], NULL, same_writer, &s[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
        ASSERT_EQ(s[i].rc, 0);
    }
    char p[PATH_MAX], fh[65], shard[PATH_MAX];
    ASSERT_EQ(keng_media_path(dir, id, NULL, p, sizeof p), 0);
    ASSERT_EQ(keng_sha256_file_hex(p, fh), 0);
    ASSERT_STR_EQ(fh, id);
    snprintf(shard, sizeof shard, "%s/%.2s", dir, id);
    ASSERT_EQ(count_entries(shard, NULL), 1);
    free(buf);
    rm_rf(dir);
}

TEST(media_adopt_moves_or_drops)
{
    char *dir = tmpdir();
    char src[PATH_MAX], p[PATH_MAX];
    snprintf(src, sizeof src, "%s/upload.part", dir);
    FILE *f = fopen(src, "wb");
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(fwrite("abc", 1, 3, f), 3);
    fclose(f);
    ASSERT_EQ(keng_media_adopt(dir, ID_ABC, NULL, src), 0);
    ASSERT_EQ(access(src, F_OK), -1);
    ASSERT_EQ(keng_media_path(dir, ID_ABC, NULL, p, sizeof p), 0);
    char fh[65];
    ASSERT_EQ(keng_sha256_file_hex(p, fh), 0);
    ASSERT_STR_EQ(fh, ID_ABC);
    /* The same photo again: the stored one stays, the new copy goes. */
    f = fopen(src, "wb");
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(fwrite("abc", 1, 3, f), 3);
    fclose(f);
    struct stat a, b;
    ASSERT_EQ(stat(p, &a), 0);
    ASSERT_EQ(keng_media_adopt(dir, ID_ABC, NULL, src), 0);
    ASSERT_EQ(access(src, F_OK), -1);
    ASSERT_EQ(stat(p, &b), 0);
    ASSERT_EQ(a.st_ino, b.st_ino);
    /* Nothing to adopt is an error, stored or not. */
    ASSERT_EQ(keng_media_adopt(dir, ID_ABC, NULL, src), -ENOENT);
    ASSERT_EQ(keng_media_adopt(dir, ID_ABC, KENG_MEDIA_THUMB_SUFFIX, src), -ENOENT);
    rm_rf(dir);
}

/* ---- streaming SHA-256 ---- */

static const struct {
    const char *msg;
    const char *hex;
} VECTORS[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
};

TEST(sha256_stream_known_vectors)
{
    for (size_t v = 0; v < sizeof VECTORS / sizeof VECTORS[0]; v++) {
        const char *m = VECTORS[v].msg;
        size_t n = strlen(m);
        /* Whole, byte by byte, and in uneven pieces: all the same digest. */
        for (size_t step = 1; step <= n + 1; step += (step < 3 ? 1 : 7)) {
            keng_sha256 h = {0};
            ASSERT_EQ(keng_sha256_init(&h), 0);
            for (size_t off = 0; off < n; off += step) {
                size_t k = n - off < step ? n - off : step;
                ASSERT_EQ(keng_sha256_update(&h, m + off, k), 0);
            }
            char out[65];
            ASSERT_EQ(keng_sha256_final_hex(&h, out), 0);
            ASSERT_STR_EQ(out, VECTORS[v].hex);
            ASSERT_NULL(h.ctx);
            char one[65];
            oneshot_hex(m, n, one);
            ASSERT_STR_EQ(out, one);
        }
    }
}

TEST(sha256_stream_million_a)
{
    char chunk[1000];
    memset(chunk, 'a', sizeof chunk);
    keng_sha256 h = {0};
    ASSERT_EQ(keng_sha256_init(&h), 0);
    for (int i = 0; i < 1000; i++)
        ASSERT_EQ(keng_sha256_update(&h, chunk, sizeof chunk), 0);
    char out[65];
    ASSERT_EQ(keng_sha256_final_hex(&h, out), 0);
    ASSERT_STR_EQ(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(sha256_stream_misuse)
{
    keng_sha256 h = {0};
    char out[65];
    ASSERT_EQ(keng_sha256_update(&h, "x", 1), -EINVAL); /* not started */
    ASSERT_EQ(keng_sha256_final_hex(&h, out), -EINVAL);
    ASSERT_EQ(keng_sha256_init(NULL), -EINVAL);
    ASSERT_EQ(keng_sha256_init(&h), 0);
    ASSERT_EQ(keng_sha256_update(&h, NULL, 1), -EINVAL);
    ASSERT_EQ(keng_sha256_update(&h, NULL, 0), 0);
    ASSERT_EQ(keng_sha256_final_hex(&h, out), 0);
    ASSERT_STR_EQ(out, VECTORS[0].hex);
    ASSERT_EQ(keng_sha256_final_hex(&h, out), -EINVAL); /* finished */
    keng_sha256_free(&h);
    keng_sha256_free(NULL);
    /* Abandoned halfway: free releases it (ASan would report the leak otherwise). */
    ASSERT_EQ(keng_sha256_init(&h), 0);
    ASSERT_EQ(keng_sha256_update(&h, "abc", 3), 0);
    keng_sha256_free(&h);
    ASSERT_NULL(h.ctx);
}

TEST(sha256_file)
{
    char *dir = tmpdir();
    char p[PATH_MAX], out[65];
    snprintf(p, sizeof p, "%s/f", dir);
    FILE *f = fopen(p, "wb");
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(fwrite(VECTORS[2].msg, 1, strlen(VECTORS[2].msg), f), strlen(VECTORS[2].msg));
    fclose(f);
    ASSERT_EQ(keng_sha256_file_hex(p, out), 0);
    ASSERT_STR_EQ(out, VECTORS[2].hex);
    snprintf(p, sizeof p, "%s/missing", dir);
    ASSERT_EQ(keng_sha256_file_hex(p, out), -ENOENT);
    rm_rf(dir);
}
