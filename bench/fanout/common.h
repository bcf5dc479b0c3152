/* Shared by the fan-out benchmark programs: the message both clients post, loop-stall sampling
 * (busy time per loop iteration from libuv's idle-time metric) and peak RSS. */
#ifndef KENG_BENCH_FANOUT_COMMON_H
#define KENG_BENCH_FANOUT_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#define BENCH_TEXT                                                                                                      \
    "[KHẨN] Tìm người già đi lạc: Ông Nguyễn Văn A, 78 tuổi, mặc áo sơ mi xanh, quần tây đen, " \
    "đi lạc từ chợ Hàn lúc 07:30 sáng nay. Ai thấy xin báo Công an phường Hải Châu 1."
#define BENCH_ALERT                                                                                \
    "{\"id\":\"A1\",\"kind\":\"lost_elder\",\"status\":\"published\",\"revision\":1,"              \
    "\"person_name\":\"Nguyễn Văn A\",\"age\":78,\"last_seen_place\":\"Chợ Hàn\"}"
#define BENCH_PHOTOS "[\"http://127.0.0.1:8080/t/0123456789abcdef.jpg\"]"

typedef struct bench_stall {
    uv_prepare_t prep;
    uint64_t last_t, last_idle, max_ns;
    int started;
} bench_stall;

static void bench_stall_cb(uv_prepare_t *h)
{
    bench_stall *s = h->data;
    uint64_t t = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);
    if (s->started) {
        uint64_t busy = (t - s->last_t) - (idle - s->last_idle);
        if (busy > s->max_ns) s->max_ns = busy;
    }
    s->started = 1;
    s->last_t = t;
    s->last_idle = idle;
}

/* Call right after uv_loop_init. */
static void bench_stall_start(uv_loop_t *loop, bench_stall *s)
{
    memset(s, 0, sizeof *s);
    uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
    uv_prepare_init(loop, &s->prep);
    s->prep.data = s;
    uv_prepare_start(&s->prep, bench_stall_cb);
    uv_unref((uv_handle_t *)&s->prep);
}

/* CPU time of the calling thread (the loop's), in nanoseconds: less noisy on a shared VM than
 * throughput, and it leaves out the checkpointer's thread. */
static uint64_t bench_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The calling thread's user and system CPU so far, in ns (getrusage RUSAGE_THREAD). */
static void bench_thread_usr_sys_ns(uint64_t *usr, uint64_t *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    *usr = (uint64_t)ru.ru_utime.tv_sec * 1000000000u + (uint64_t)ru.ru_utime.tv_usec * 1000u;
    *sys = (uint64_t)ru.ru_stime.tv_sec * 1000000000u + (uint64_t)ru.ru_stime.tv_usec * 1000u;
}

static long bench_rss_peak_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

#endif
