/* Benchmark of thumb (keng_thumb_make) against the tools people would otherwise use.
 *
 *   bench_thumb DIR [ROUNDS]   make DIR/12mp.jpg and DIR/2mp.jpg (photo-like, quality 90, 4:2:0),
 *                              time everything, print a Markdown report on stdout
 *   bench_thumb one IN OUT     one thumbnail as a process (to compare process against process)
 *
 * In-process numbers are the median of ROUNDS calls on bytes already in memory (what the daemon
 * does: the upload is in memory when the thread-pool job starts). Tools are timed as processes
 * (posix_spawn .. waitpid, like hyperfine), round-robin so that a noisy neighbour on the shared
 * machine hurts every contender alike. Run through bench/thumb/run.sh. */
#include "keng/thumb.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int read_file(const char *path, unsigned char **p, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -errno;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return -EIO;
    }
    long sz = ftell(f);
    rewind(f);
    *p = malloc(sz > 0 ? (size_t)sz : 1);
    if (!*p || sz < 0 || fread(*p, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(*p);
        return -EIO;
    }
    fclose(f);
    *n = (size_t)sz;
    return 0;
}

static int write_file(const char *path, const unsigned char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -errno;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -EIO;
}

/* A photo-like picture: smooth light falloff, textures of several frequencies, hard-edged objects
 * and sensor noise, so the entropy decoder does the work it does on a real phone photo (a flat
 * picture would make every decoder look instant). */
static uint32_t xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static unsigned char *make_photo(int w, int h, uint32_t seed)
{
    unsigned char *px = malloc((size_t)w * (size_t)h * 3);
    if (!px) return NULL;
    uint32_t s = seed;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            unsigned char *p = px + ((size_t)y * (size_t)w + (size_t)x) * 3;
            int base = 60 + 120 * x / w + 40 * y / h;
            /* cheap "texture": integer hash of coarse cells plus fine stripes */
            int cell =
                (int)((((uint32_t)(x / 37) * 2654435761u) ^ ((uint32_t)(y / 23) * 40503u)) >> 27);
            int stripes = ((x * 3 + y * 2) / 5) % 7 * 3;
            int noise = (int)(xorshift(&s) % 25) - 12;
            int v[3] = {base + cell * 2 + stripes + noise, base - 20 + cell + noise + (y % 11),
                        base / 2 + 40 + stripes + noise};
            for (int c = 0; c < 3; c++)
                p[c] = (unsigned char)(v[c] < 0 ? 0 : v[c] > 255 ? 255 : v[c]);
        }
    }
    /* a few solid objects with hard edges */
    for (int k = 0; k < 40; k++) {
        int ow = (int)(xorshift(&s) % (uint32_t)(w / 5)) + 8,
            oh = (int)(xorshift(&s) % (uint32_t)(h / 5)) + 8;
        int ox = (int)(xorshift(&s) % (uint32_t)(w - ow)),
            oy = (int)(xorshift(&s) % (uint32_t)(h - oh));
        unsigned char col[3] = {(unsigned char)xorshift(&s), (unsigned char)xorshift(&s),
                                (unsigned char)xorshift(&s)};
        for (int y = oy; y < oy + oh; y++)
            for (int x = ox; x < ox + ow; x++) {
                unsigned char *p = px + ((size_t)y * (size_t)w + (size_t)x) * 3;
                int n = (int)(xorshift(&s) % 17) - 8;
                for (int c = 0; c < 3; c++) {
                    int v = col[c] + n;
                    p[c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
    }
    return px;
}

static int gen(const char *path, int w, int h, uint32_t seed)
{
    unsigned char *px = make_photo(w, h, seed);
    if (!px) return -ENOMEM;
    tjhandle tj = tjInitCompress();
    unsigned char *jpg = NULL;
    unsigned long len = 0;
    int rc = tj && tjCompress2(tj, px, w, 0, h, TJPF_RGB, &jpg, &len, TJSAMP_420, 90, 0) == 0
                 ? write_file(path, jpg, len)
                 : -EIO;
    tjFree(jpg);
    if (tj) tjDestroy(tj);
    free(px);
    return rc;
}

/* Time one process run; stdout and stderr go to /dev/null. Negative on failure. */
static double run_proc(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    double t0 = now_ms();
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    double t = now_ms() - t0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? t : -1;
}

static int available(const char *prog)
{
    char *argv[] = {(char *)"sh", (char *)"-c", NULL, NULL};
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s", prog);
    argv[2] = cmd;
    return run_proc(argv) >= 0;
}

typedef struct photo {
    unsigned char *p;
    size_t n;
} photo;

struct job {
    const photo *ph;
    int count;
    int rc;
};

static void *thumb_jobs(void *arg)
{
    struct job *j = arg;
    for (int i = 0; i < j->count && j->rc == 0; i++) {
        unsigned char *out;
        size_t n;
        j->rc = keng_thumb_make(j->ph->p, j->ph->n, 320, 80, &out, &n, NULL);
        if (j->rc == 0) free(out);
    }
    return NULL;
}

/* Four photos arrive at once: wall time with 1 worker thread and with 2 (the machine's cores). */
static double burst(const photo *ph, int threads)
{
    struct job jobs[2] = {{ph, 4 / threads, 0}, {ph, 4 / threads, 0}};
    pthread_t t[2];
    double t0 = now_ms();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, thumb_jobs, &jobs[i]);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double dt = now_ms() - t0;
    return jobs[0].rc || jobs[1].rc ? -1 : dt;
}

enum { T_OURS, T_OURS_PROC, T_DJPEG, T_VIPS, T_IM, T_IM_HINT, T_N };
static const char *const tool_name[T_N] = {
    "keng_thumb_make, in process",
    "keng_thumb_make, as a process (`bench_thumb one`)",
    "`djpeg -scale` (decode-only floor, same DCT scale as ours)",
    "`vipsthumbnail --size 320`",
    "`convert -thumbnail 320x320`",
    "`convert -define jpeg:size=640x640 -thumbnail 320x320`",
};

static int bench_one(const char *self, const char *dir, const char *label, const char *file,
                     int rounds)
{
    char in[512], out_ours[512], out_vips[512], out_im[512];
    snprintf(in, sizeof in, "%s/%s", dir, file);
    snprintf(out_ours, sizeof out_ours, "%s/out-ours.jpg", dir);
    snprintf(out_vips, sizeof out_vips, "%s/out-vips.jpg[Q=80]", dir);
    snprintf(out_im, sizeof out_im, "%s/out-im.jpg", dir);
    photo ph;
    if (read_file(in, &ph.p, &ph.n) != 0) return -1;
    keng_thumb_info info;
    if (keng_thumb_probe(ph.p, ph.n, &info) != 0) return -1;
    /* djpeg at the DCT scale thumb picks (the smallest N/8 that still covers 320): 1/8 for
     * 12 MP, 1/4 for 2 MP. Its output is the decode alone, so it is the floor for ours. */
    int lng = info.width > info.height ? info.width : info.height, num = 1;
    while (num < 8 && (lng * num + 7) / 8 < 320)
        num++;
    char scale[8];
    snprintf(scale, sizeof scale, "%d/8", num);
    if (num == 2 || num == 4) snprintf(scale, sizeof scale, "1/%d", 8 / num);

    char *argv[T_N][16] = {
        [T_OURS_PROC] = {(char *)self, (char *)"one", in, out_ours, NULL},
        [T_DJPEG] = {(char *)"djpeg", (char *)"-scale", scale, (char *)"-outfile",
                     (char *)"/dev/null", in, NULL},
        [T_VIPS] = {(char *)"vipsthumbnail", (char *)"--size", (char *)"320", (char *)"-o",
                    out_vips, in, NULL},
        [T_IM] = {(char *)"/usr/bin/convert", in, (char *)"-thumbnail", (char *)"320x320",
                  (char *)"-quality", (char *)"80", out_im, NULL},
        [T_IM_HINT] = {(char *)"/usr/bin/convert", (char *)"-define", (char *)"jpeg:size=640x640",
                       in, (char *)"-thumbnail", (char *)"320x320", (char *)"-quality",
                       (char *)"80", out_im, NULL},
    };
    int have[T_N] = {1,
                     1,
                     available("djpeg"),
                     available("vipsthumbnail"),
                     access("/usr/bin/convert", X_OK) == 0,
                     access("/usr/bin/convert", X_OK) == 0};
    /* ImageMagick decodes the whole 12 MP picture: a few rounds say enough and spare the CPU. */
    int want[T_N] = {rounds, rounds, rounds, rounds, rounds < 5 ? rounds : 5, rounds};
    double *t[T_N];
    int got[T_N] = {0};
    for (int k = 0; k < T_N; k++)
        t[k] = calloc((size_t)rounds, sizeof(double));

    unsigned char *thumb;
    size_t thumb_len;
    if (keng_thumb_make(ph.p, ph.n, 320, 80, &thumb, &thumb_len, &info) != 0) return -1;
    free(thumb);
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < T_N; k++) {
            if (!have[k] || r >= want[k]) continue;
            double dt;
            if (k == T_OURS) {
                double t0 = now_ms();
                if (keng_thumb_make(ph.p, ph.n, 320, 80, &thumb, &thumb_len, NULL) != 0) return -1;
                dt = now_ms() - t0;
                free(thumb);
            } else {
                dt = run_proc(argv[k]);
                if (dt < 0) {
                    fprintf(stderr, "%s failed; leaving it out\n", argv[k][0]);
                    have[k] = 0;
                    continue;
                }
            }
            t[k][got[k]++] = dt;
        }
    }
    double med[T_N] = {0};
    for (int k = 0; k < T_N; k++)
        if (got[k]) med[k] = median(t[k], got[k]);

    double b1[5], b2[5];
    for (int r = 0; r < 5; r++) {
        b1[r] = burst(&ph, 1);
        b2[r] = burst(&ph, 2);
    }
    double m1 = median(b1, 5), m2 = median(b2, 5);

    printf("### %s: %dx%d, %zu bytes\n\n", label, info.width, info.height, ph.n);
    printf("| what | median ms | runs | vs ours in process |\n|---|---:|---:|---:|\n");
    for (int k = 0; k < T_N; k++) {
        if (!got[k]) {
            printf("| %s | not installed | 0 | |\n", tool_name[k]);
            continue;
        }
        if (k == T_DJPEG)
            printf("| `djpeg -scale %s` (decode-only floor, same DCT scale as ours)", scale);
        else
            printf("| %s", tool_name[k]);
        printf(" | %.2f | %d | %.2fx |\n", med[k], got[k], med[k] / med[T_OURS]);
    }
    printf("\n");
    if (got[T_DJPEG])
        printf("- ours / djpeg -scale %s floor: in process %.2f, as a process %.2f (goal <= 1.2)\n",
               scale, med[T_OURS] / med[T_DJPEG], med[T_OURS_PROC] / med[T_DJPEG]);
    if (got[T_VIPS])
        printf("- vipsthumbnail / ours: in process %.1fx, as a process %.1fx (goal >= 2.5)\n",
               med[T_VIPS] / med[T_OURS], med[T_VIPS] / med[T_OURS_PROC]);
    printf("- 4 photos at once: 1 thread %.1f ms, 2 threads %.1f ms: %.2fx, %.0f photos/s\n\n", m1,
           m2, m1 / m2, 4000.0 / m2);
    for (int k = 0; k < T_N; k++)
        free(t[k]);
    free(ph.p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "one") == 0) {
        /* mmap, not read into fresh heap: a new process pays a page fault per 4 KiB it writes,
         * which a daemon that already holds the upload never pays (and djpeg streams through
         * one small reused buffer). */
        int fd = open(argv[2], O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0) return 1;
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        close(fd);
        if (map == MAP_FAILED) return 1;
        unsigned char *out;
        size_t n;
        int rc = keng_thumb_make(map, (size_t)st.st_size, 320, 80, &out, &n, NULL);
        munmap(map, (size_t)st.st_size);
        if (rc) {
            fprintf(stderr, "%s: %s\n", argv[2], keng_thumb_strerror(rc));
            return 1;
        }
        rc = write_file(argv[3], out, n);
        free(out);
        return rc ? 1 : 0;
    }
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s DIR [ROUNDS] | %s one IN OUT\n", argv[0], argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int rounds = argc == 3 ? (int)strtol(argv[2], NULL, 10) : 21;
    if (rounds < 1 || rounds > 1000) rounds = 21;
    char p12[512], p2[512];
    snprintf(p12, sizeof p12, "%s/12mp.jpg", dir);
    snprintf(p2, sizeof p2, "%s/2mp.jpg", dir);
    if (gen(p12, 4000, 3000, 1) != 0 || gen(p2, 1600, 1200, 2) != 0) {
        fprintf(stderr, "cannot write test photos into %s\n", dir);
        return 1;
    }
    char self[512];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) return 1;
    self[sl] = 0;
    printf("Thumbnail to longest side 320, JPEG quality 80; median of up to %d rounds, tools "
           "round-robin.\n\n",
           rounds);
    if (bench_one(self, dir, "12 MP", "12mp.jpg", rounds) != 0) return 1;
    if (bench_one(self, dir, "2 MP", "2mp.jpg", rounds) != 0) return 1;
    return 0;
}
