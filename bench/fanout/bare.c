/* The baseline: a bare libcurl-multi client on the libuv socket API (one CURLM, a uv_poll_t per
 * socket, one uv_timer_t), no database, posting N webhook bodies shaped like the engine's to URL
 * with the same concurrency limits. Prints one line: "bare N SECONDS DELIVERIES_PER_S ...". */
#include "common.h"

#include <curl/curl.h>
#include <stdlib.h>

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
} sock_ctx;

static CURLM *multi;
static uv_loop_t *loop;
static uv_timer_t timer;
static const char *url;
static int total, started, finished, ok, inflight, max_inflight = 256;
/* Transfers beyond the per-host connection limit wait inside curl, which costs it dearly (its
 * pending list is walked at every transfer end): the engine never hands curl more than the
 * per-host cap for one host, so neither does the reference. */
static const int max_per_host = 64;
static CURL *pool[1024];
static int npool;
static uint64_t t0, t_first;

static size_t on_write(char *p, size_t s, size_t n, void *ud)
{
    (void)p, (void)ud;
    return s * n;
}

typedef struct xfer {
    CURL *e;
    struct curl_slist *h;
    char body[1024];
} xfer;

static void start_one(void)
{
    CURL *e = npool ? pool[--npool] : curl_easy_init();
    curl_easy_reset(e);
    xfer *x = malloc(sizeof *x); /* like the engine: per-transfer body and header list */
    x->e = e;
    int i = started++;
    snprintf(x->body, sizeof x->body,
             "{\"event\":\"alert\",\"alert\":%s,\"photos\":%s,\"text\":\"%s\\n\\n"
             "http://127.0.0.1:8080/r/%032x\",\"reply_url\":\"http://127.0.0.1:8080/r/"
             "%032x\"}",
             BENCH_ALERT, BENCH_PHOTOS, BENCH_TEXT, (unsigned)i, (unsigned)i);
    char key[96];
    snprintf(key, sizeof key, "Idempotency-Key: A1.1.hh-%06d.webhook", i);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    h = curl_slist_append(h, "User-Agent: kengd/1"); /* as the engine's webhook requests */
    h = curl_slist_append(h, key);
    h = curl_slist_append(h, "Keng-Signature: t=1700000000,v1=0000000000000000000000000000000000"
                             "000000000000000000000000000000");
    x->h = h;
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_multi_add_handle(multi, e);
    inflight++;
}

static void drain(void)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *e = m->easy_handle;
        CURLcode cc = m->data.result;
        long code = 0;
        xfer *x = NULL;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        if (cc == CURLE_OK && code / 100 == 2) {
            ok++;
            if (!t_first) t_first = uv_hrtime();
        }
        curl_multi_remove_handle(multi, e);
        curl_slist_free_all(x->h);
        free(x);
        pool[npool++] = e;
        inflight--;
        finished++;
    }
    while (started < total && inflight < max_inflight && inflight < max_per_host)
        start_one();
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx *c = h->data;
    int flags = status < 0 ? CURL_CSELECT_ERR : 0, running;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(multi, c->fd, flags, &running);
    drain();
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *u, void *sp)
{
    (void)e, (void)u;
    sock_ctx *c = sp;
    if (what == CURL_POLL_REMOVE) {
        if (c) {
            curl_multi_assign(multi, s, NULL);
            uv_close((uv_handle_t *)&c->poll, on_closed);
        }
        return 0;
    }
    if (!c) {
        c = calloc(1, sizeof *c);
        c->fd = s;
        uv_poll_init_socket(loop, &c->poll, s);
        c->poll.data = c;
        curl_multi_assign(multi, s, c);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&c->poll, ev, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    (void)t;
    int running;
    curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain();
}

static int on_timer(CURLM *m, long ms, void *u)
{
    (void)m, (void)u;
    if (ms < 0)
        uv_timer_stop(&timer);
    else
        uv_timer_start(&timer, on_timeout, ms ? (uint64_t)ms : 1, 0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bare URL N\n");
        return 2;
    }
    url = argv[1];
    total = (int)strtol(argv[2], NULL, 10);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    uv_loop_t l;
    loop = &l;
    uv_loop_init(loop);
    bench_stall stall;
    bench_stall_start(loop, &stall);
    uv_timer_init(loop, &timer);
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 256L);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_per_host);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 256L);
    t0 = uv_hrtime();
    uint64_t cpu0 = bench_thread_cpu_ns(), usr0, sys0, usr1, sys1;
    bench_thread_usr_sys_ns(&usr0, &sys0);
    while (started < total && inflight < max_inflight && inflight < max_per_host)
        start_one();
    while (finished < total)
        uv_run(loop, UV_RUN_ONCE);
    uint64_t t1 = uv_hrtime(), cpu1 = bench_thread_cpu_ns();
    bench_thread_usr_sys_ns(&usr1, &sys1);
    double s = (double)(t1 - t0) / 1e9;
    printf("bare n=%d ok=%d seconds=%.3f per_s=%.0f cpu_us=%.2f usr_us=%.2f sys_us=%.2f "
           "first_ms=%.2f max_stall_ms=%.2f rss_kb=%ld\n",
           total, ok, s, ok / s, (double)(cpu1 - cpu0) / 1e3 / total,
           (double)(usr1 - usr0) / 1e3 / total, (double)(sys1 - sys0) / 1e3 / total,
           t_first ? (double)(t_first - t0) / 1e6 : -1.0, (double)stall.max_ns / 1e6,
           bench_rss_peak_kb());
    return ok == total ? 0 : 1;
}
