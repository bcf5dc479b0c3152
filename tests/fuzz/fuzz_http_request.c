/* fuzz_http_request: the request side of src/http.c, driven for real. One keng_http_server
 * listens on 127.0.0.1:0 for the whole run; each input is one client connection on loopback
 * that writes the bytes (whole, or in small pieces so parser callbacks see split tokens),
 * half-closes, and reads the answers until the server closes. The loop runs until the
 * connection and every handler timer are gone, so LeakSanitizer sees each iteration whole.
 *
 * The handlers pick their behaviour from the path, so the fuzzer reaches every answer path of
 * http.c: early answers in on_headers (with and without a body left unread), body limits,
 * streamed bodies that abort midway, chunked responses, files with Range/ETag, answers given
 * later from a timer (the client may be gone by then), JSON echo and response headers built
 * from request headers.
 *
 * A connection still open after the client's EOF is a finding too (the server would hold it
 * until its idle timeout). One such case is known (tests/fuzz/crashes/
 * http_request-file-eof-linger, see README.md), so by default the harness counts connections
 * quiet for GUARD_MS, cuts them by restarting the server, and fuzzes on; KENG_FUZZ_STRICT=1
 * aborts instead after GUARD_STRICT_MS, and KENG_FUZZ_LINGER_DIR=DIR keeps each such input. */
#include "keng/http.h"
#include "keng/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Quiet time after which a connection counts as lingering: short, since the known linger
 * costs this much per input; re-armed whenever the client sees progress. Strict mode waits
 * longer before it aborts, so that a busy machine does not make a false finding. */
#define GUARD_MS 50
#define GUARD_STRICT_MS 2000

static uv_loop_t loop;
static keng_http_server *server;
static int port;
static char file_path[64];
static uv_timer_t guard;
static int pending_defers; /* handler timers not yet closed */
static int strict;         /* KENG_FUZZ_STRICT=1: a lingering connection aborts */
static int lingered;       /* the guard fired during this input */
static long lingers;       /* ... and during the whole run */
static long lingers_file;  /* ... of which the input asked for a file response */
static int last_was_file;  /* this input asked for one */
static const char *linger_dir; /* KENG_FUZZ_LINGER_DIR: keep the inputs that lingered there */
static const uint8_t *cur_data;
static size_t cur_size;

/* ---- handlers ---- */

typedef struct stream_state {
    size_t seen;
} stream_state;

typedef struct defer {
    uv_timer_t timer;
    keng_http_req *req;
} defer;

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int on_body_piece(keng_http_req *req, const char *data, size_t len, void *ud)
{
    (void)ud;
    stream_state *st = keng_http_req_data(req);
    st->seen += len;
    if (len && data[0] == 'X') return 422; /* the handler refuses what it sees midway */
    if (len && data[0] == 'x') return 7;   /* a nonsense status: http.c must turn it into 400 */
    return st->seen > 64 ? 413 : 0;
}

static void on_req_closed(keng_http_req *req, void *ud)
{
    (void)req;
    (void)ud;
}

static void on_headers(keng_http_req *req, void *ud)
{
    (void)ud;
    const char *path = keng_http_req_path(req);
    char tmp[256];
    /* Every getter, over whatever the parser produced. */
    (void)keng_http_req_method(req);
    (void)keng_http_req_query(req);
    (void)keng_http_req_remote(req);
    (void)keng_http_req_id(req);
    (void)keng_http_req_content_length(req);
    (void)keng_http_req_header(req, "host");
    (void)keng_http_req_header(req, "Content-Type");
    (void)keng_http_req_header(req, "transfer-encoding");
    (void)keng_http_query_param(req, "a", tmp, 8);
    (void)keng_http_query_param(req, "q", tmp, sizeof tmp);
    (void)keng_http_urldecode(path, strlen(path), tmp, sizeof tmp, 0);
    keng_http_req_set_label(req, "fuzz");

    if (starts(path, "/early-empty")) {
        keng_http_respond(req, 204, NULL, NULL, 0);
    } else if (starts(path, "/early")) {
        keng_http_add_header(req, "X-Why", "early");
        keng_http_respond_error(req, 403, "forbidden", "early answer for %.40s", path);
    } else if (starts(path, "/small")) {
        keng_http_req_set_body_limit(req, 16);
    } else if (starts(path, "/stream")) {
        stream_state *st = calloc(1, sizeof *st);
        if (!st) abort();
        keng_http_req_set_data(req, st, free);
        keng_http_req_set_body_stream(req, on_body_piece, NULL);
    } else if (starts(path, "/close")) {
        keng_http_req_on_close(req, on_req_closed, NULL);
    }
}

static void on_defer_closed(uv_handle_t *h)
{
    free(h->data);
    pending_defers--;
}

static void on_defer(uv_timer_t *t)
{
    defer *d = t->data;
    keng_http_respond(d->req, 202, "text/plain", "later\n", 6);
    uv_close((uv_handle_t *)&d->timer, on_defer_closed);
}

static void on_request(keng_http_req *req, void *ud)
{
    (void)ud;
    const char *path = keng_http_req_path(req);
    size_t blen;
    const char *body = keng_http_req_body(req, &blen);

    if (starts(path, "/sse")) {
        if (keng_http_stream_start(req, 200, "text/event-stream") == 0) {
            (void)keng_http_stream_write(req, "data: hello\n\n", 13);
            (void)keng_http_stream_write(req, body, blen);
            (void)keng_http_stream_write(req, "", 0);
        }
        keng_http_stream_end(req);
        if (keng_http_stream_write(req, "x", 1) != -EPIPE) abort(); /* the stream is over */
    } else if (starts(path, "/file")) {
        last_was_file = 1;
        keng_http_respond_file(req, file_path, "text/plain", "v1", "no-cache");
    } else if (starts(path, "/nofile")) {
        last_was_file = 1;
        keng_http_respond_file(req, "/nonexistent/keng-fuzz", "text/plain", NULL, NULL);
    } else if (starts(path, "/defer")) {
        defer *d = calloc(1, sizeof *d);
        if (!d) abort();
        d->req = req;
        d->timer.data = d;
        uv_timer_init(&loop, &d->timer);
        uv_timer_start(&d->timer, on_defer, 0, 0);
        pending_defers++;
    } else if (starts(path, "/json")) {
        cJSON *j = cJSON_ParseWithLength(body, blen);
        if (j) keng_http_respond_json(req, 200, j);
        else keng_http_respond_error(req, 400, "bad_json", "the body is not JSON");
    } else {
        const char *echo = keng_http_req_header(req, "x-echo");
        if (echo) keng_http_add_header(req, "X-Echo", echo);
        keng_http_respond(req, 200, "text/plain", "ok\n", 3);
    }
}

/* ---- the client, on the same loop ---- */

typedef struct client {
    uv_poll_t poll;
    int fd;
    const uint8_t *data;
    size_t len, off;
    size_t piece; /* bytes per send; the whole input when 0 */
    int shut;
    int done;
} client;

static void on_client_closed(uv_handle_t *h)
{
    client *cl = h->data;
    close(cl->fd);
    cl->done = 1;
}

static void client_finish(client *cl)
{
    uv_poll_stop(&cl->poll);
    uv_close((uv_handle_t *)&cl->poll, on_client_closed);
}

static void on_guard(uv_timer_t *t);

static void on_client_io(uv_poll_t *p, int status, int events)
{
    client *cl = p->data;
    if (!strict) {
        uv_update_time(&loop);
        uv_timer_start(&guard, on_guard, GUARD_MS, 0);
    }
    if (status < 0) {
        client_finish(cl);
        return;
    }
    if (events & UV_READABLE) {
        char sink[16384];
        ssize_t n = recv(cl->fd, sink, sizeof sink, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            client_finish(cl);
            return;
        }
    }
    if ((events & UV_WRITABLE) && !cl->shut) {
        size_t want = cl->len - cl->off;
        if (cl->piece && want > cl->piece) want = cl->piece;
        if (want) {
            ssize_t n = send(cl->fd, cl->data + cl->off, want, MSG_NOSIGNAL);
            if (n > 0) cl->off += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) cl->off = cl->len; /* reset */
        }
        if (cl->off == cl->len) {
            shutdown(cl->fd, SHUT_WR);
            cl->shut = 1;
            uv_poll_start(&cl->poll, UV_READABLE, on_client_io);
        }
    }
}

static void on_guard(uv_timer_t *t)
{
    (void)t;
    if (strict) {
        fprintf(stderr, "fuzz_http_request: %d connection(s) still open %d ms after the client's "
                        "EOF\n", keng_http_server_connections(server), GUARD_STRICT_MS);
        abort();
    }
    if (lingers++ == 0)
        fprintf(stderr, "fuzz_http_request: a connection lingers after the client's EOF (known "
                        "finding, see tests/fuzz/README.md); restarting the server, fuzzing on\n");
    lingered = 1;
    lingers_file += last_was_file;
    if (linger_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/linger-%ld%s", linger_dir, lingers,
                 last_was_file ? "-file" : "");
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(cur_data, 1, cur_size, f);
            fclose(f);
        }
    }
}

static void at_exit(void)
{
    if (lingers)
        fprintf(stderr, "fuzz_http_request: %ld input(s) left a lingering connection, %ld of them "
                        "after a file response\n", lingers, lingers_file);
}

static void server_start(void)
{
    keng_http_config cfg;
    memset(&cfg, 0, sizeof cfg);
    keng_http_limits_default(&cfg.limits);
    cfg.limits.max_body = 4096; /* small enough for inputs to cross it */
    cfg.on_headers = on_headers;
    cfg.on_request = on_request;
    if (keng_http_server_new(&loop, &cfg, &server)) abort();
    if (keng_http_server_listen(server, "127.0.0.1:0")) abort();
    port = keng_http_server_port(server);
}

static void on_server_down(void *ud)
{
    *(int *)ud = 1;
}

/* Cuts whatever connection lingers: a graceful shutdown with no grace, then a new server. */
static void server_restart(void)
{
    int down = 0;
    keng_http_server_shutdown(server, 0, on_server_down, &down);
    while (!down || pending_defers > 0) uv_run(&loop, UV_RUN_ONCE);
    keng_http_server_free(server);
    server_start();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    keng_log_set_level(KENG_LOG_ERROR);
    const char *env = getenv("KENG_FUZZ_STRICT");
    strict = env && env[0] == '1';
    linger_dir = getenv("KENG_FUZZ_LINGER_DIR");
    if (uv_loop_init(&loop)) abort();
    uv_timer_init(&loop, &guard);
    server_start();
    atexit(at_exit);

    /* The file behind /file: 1000 bytes for Range requests to cut. It is unlinked at once and
     * served through /proc/self/fd, so that no run, even one that crashes, leaves it behind. */
    char tmpl[] = "/tmp/keng-fuzz-http-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) abort();
    unlink(tmpl);
    char block[1000];
    for (size_t i = 0; i < sizeof block; i++) block[i] = (char)('a' + i % 26);
    if (write(fd, block, sizeof block) != (ssize_t)sizeof block) abort();
    snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", fd);
    return 0;
}

static uint32_t fnv1a(const uint8_t *d, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 16777619u;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{

    client cl;
    memset(&cl, 0, sizeof cl);
    cl.data = cur_data = data;
    cl.len = cur_size = size;
    /* A quarter of the inputs go whole; the rest in pieces of 1..61 bytes, chosen from the
     * bytes themselves so that a reproducer replays the same way. */
    uint32_t h = fnv1a(data, size);
    cl.piece = (h & 3) == 0 ? 0 : 1 + (h >> 8) % 61;

    cl.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (cl.fd < 0) abort();
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Completes in the kernel's backlog at once: loopback, a listening socket. */
    if (connect(cl.fd, (struct sockaddr *)&sa, sizeof sa)) abort();
    int one = 1;
    setsockopt(cl.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(cl.fd, F_SETFL, fcntl(cl.fd, F_GETFL) | O_NONBLOCK);
    if (uv_poll_init(&loop, &cl.poll, cl.fd)) abort();
    cl.poll.data = &cl;
    uv_poll_start(&cl.poll, UV_READABLE | UV_WRITABLE, on_client_io);

    lingered = 0;
    last_was_file = 0;
    uv_update_time(&loop); /* the loop's clock stood still between inputs */
    uv_timer_start(&guard, on_guard, strict ? GUARD_STRICT_MS : GUARD_MS, 0);
    /* The client is done only once the server closed its side, that is after the accept. */
    while (!cl.done || pending_defers > 0 || keng_http_server_connections(server) > 0) {
        uv_run(&loop, UV_RUN_ONCE);
        if (lingered) {
            server_restart(); /* the client then sees the close and finishes */
            lingered = 0;
        }
    }
    uv_timer_stop(&guard);
    return 0;
}
