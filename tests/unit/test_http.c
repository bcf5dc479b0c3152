/* Tests for http: a keng_http_server on a private loop at 127.0.0.1 port 0, and a plain
 * non-blocking client socket in the same thread. The client never blocks: while it waits it
 * steps the loop (UV_RUN_NOWAIT), so each test is one thread and runs in a fixed order.
 * Covered: request accessors, keep-alive, pipelining, header/body limits (431, 413), chunked
 * and streamed request bodies, malformed requests (400), early answers, 100-continue, JSON
 * errors, files with ETag and Range, chunked responses, timeouts, the connection limit and
 * shutdown, half-closes, and large responses that outlive their request (EOF, idle timer,
 * shutdown). Every test ends with the server shut down and uv_loop_close() == 0. */
#include "test.h"

#include "keng/buf.h"
#include "keng/http.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_NS (3ull * 1000 * 1000 * 1000) /* longest wait for one step of a test */
#define BIG_LEN (8u * 1024 * 1024)          /* "/big": larger than the socket buffers */

/* Byte i of the "/big" body: a period (251) that no buffer size divides, so a lost or repeated
 * piece shows. */
static char big_byte(size_t i)
{
    return (char)('a' + (i % 251) % 26);
}

/* ---- the server side ---- */

typedef struct env {
    uv_loop_t loop;
    keng_http_config cfg;
    keng_http_server *s;
    int port;
    int done;
    uv_timer_t later; /* answers "/later" requests after a short delay */
    keng_http_req *pending;
    keng_http_req *held; /* "/hold": answered when the test says so (hold_answer) */
    char file[64];       /* served at "/file" */
    /* what the handlers saw */
    int nheaders, nrequests, nclosed, requests_when_later_ran;
    char method[16], path[256], query[256], remote[64];
    char x_test[64], x_empty[64], body[256];
    int has_x_empty, has_missing;
    size_t body_len;
    int64_t content_length;
    uint64_t ids[8];
    size_t streamed, stream_calls;
    unsigned stream_sum;
    int stream_abort_at; /* "/stream": answer this status once more bytes than 1000 arrive */
    int stream_second_start;
    char q_b[32], q_c[32], q_d[32];
    int q_missing, q_small;
    int nobserved, observed_status;
    char observed_label[64];
} env;

static void on_later(uv_timer_t *t)
{
    env *e = t->data;
    keng_http_req *r = e->pending;
    e->pending = NULL;
    e->requests_when_later_ran = e->nrequests;
    char q[64];
    snprintf(q, sizeof q, "later %s", keng_http_req_query(r));
    keng_http_respond(r, 200, "text/plain", q, strlen(q));
}

static int on_body_piece(keng_http_req *r, const char *data, size_t len, void *ud)
{
    (void)r;
    env *e = ud;
    e->stream_calls++;
    for (size_t i = 0; i < len; i++)
        e->stream_sum = e->stream_sum * 31 + (unsigned char)data[i];
    e->streamed += len;
    if (e->stream_abort_at && e->streamed > 1000) return e->stream_abort_at;
    return 0;
}

static void on_req_closed(keng_http_req *r, void *ud)
{
    (void)r;
    ((env *)ud)->nclosed++;
}

static void on_headers(keng_http_req *r, void *ud)
{
    env *e = ud;
    e->nheaders++;
    const char *p = keng_http_req_path(r);
    if (!strcmp(p, "/reject")) {
        keng_http_respond_error(r, 404, "not_found", "no such resource: %s", p);
        return;
    }
    if (!strcmp(p, "/stream")) keng_http_req_set_body_stream(r, on_body_piece, e);
    if (!strcmp(p, "/small")) keng_http_req_set_body_limit(r, 8);
    if (!strcmp(p, "/large")) keng_http_req_set_body_limit(r, 4096);
    keng_http_req_on_close(r, on_req_closed, e);
    keng_http_req_set_label(r, "/test");
}

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "(null)");
}

static void on_request(keng_http_req *r, void *ud)
{
    env *e = ud;
    const char *p = keng_http_req_path(r);
    if (e->nrequests < 8) e->ids[e->nrequests] = keng_http_req_id(r);
    e->nrequests++;
    copy(e->method, sizeof e->method, keng_http_req_method(r));
    copy(e->path, sizeof e->path, p);
    copy(e->query, sizeof e->query, keng_http_req_query(r));
    copy(e->remote, sizeof e->remote, keng_http_req_remote(r));
    copy(e->x_test, sizeof e->x_test, keng_http_req_header(r, "x-TEST"));
    const char *xe = keng_http_req_header(r, "x-empty");
    e->has_x_empty = xe != NULL;
    copy(e->x_empty, sizeof e->x_empty, xe);
    e->has_missing = keng_http_req_header(r, "x-missing") != NULL;
    e->content_length = keng_http_req_content_length(r);
    const char *body = keng_http_req_body(r, &e->body_len);
    snprintf(e->body, sizeof e->body, "%.*s", (int)e->body_len, body);

    if (!strcmp(p, "/later")) {
        e->pending = r;
        uv_timer_start(&e->later, on_later, 30, 0);
        return;
    }
    if (!strcmp(p, "/hold")) {
        e->held = r;
        return;
    }
    if (!strcmp(p, "/error")) {
        keng_http_respond_error(r, 422, "bad_field", "field %s is %d characters too long", "name",
                                3);
        return;
    }
    if (!strcmp(p, "/file")) {
        keng_http_respond_file(r, e->file, "text/plain", "v1", "max-age=60");
        return;
    }
    if (!strcmp(p, "/missing")) {
        keng_http_respond_file(r, "/nonexistent/keng-test-file", "text/plain", "v1", NULL);
        return;
    }
    if (!strcmp(p, "/stream")) {
        char msg[64];
        snprintf(msg, sizeof msg, "streamed %zu", e->streamed);
        keng_http_respond(r, 200, "text/plain", msg, strlen(msg));
        return;
    }
    if (!strcmp(p, "/sse")) {
        ASSERT_EQ(keng_http_stream_start(r, 200, "text/event-stream"), 0);
        e->stream_second_start = keng_http_stream_start(r, 200, "text/event-stream");
        ASSERT_EQ(keng_http_stream_write(r, "data: one\n\n", 11), 0);
        ASSERT_EQ(keng_http_stream_write(r, "", 0), 0);
        ASSERT_EQ(keng_http_stream_write(r, "data: two\n\n", 11), 0);
        keng_http_stream_end(r);
        return;
    }
    if (!strcmp(p, "/query")) {
        char small[2];
        keng_http_query_param(r, "b", e->q_b, sizeof e->q_b);
        keng_http_query_param(r, "c", e->q_c, sizeof e->q_c);
        keng_http_query_param(r, "d", e->q_d, sizeof e->q_d);
        e->q_missing = keng_http_query_param(r, "zz", small, sizeof small);
        e->q_small = keng_http_query_param(r, "b", small, sizeof small);
    }
    if (!strcmp(p, "/json")) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", 1);
        keng_http_respond_json(r, 201, o);
        return;
    }
    if (!strcmp(p, "/big")) {
        char *big = malloc(BIG_LEN);
        ASSERT_NOT_NULL(big);
        for (size_t i = 0; i < BIG_LEN; i++)
            big[i] = big_byte(i);
        keng_http_respond_take(r, 200, "application/octet-stream", big, BIG_LEN);
        return;
    }
    if (!strcmp(p, "/headers")) {
        keng_http_add_header(r, "X-Good", "yes");
        keng_http_add_header(r, "X-Bad", "a\r\nSet-Cookie: evil=1");
        keng_http_add_header(r, "X-Bad\r\nInjected", "b");
    }
    /* Everything else: an echo of what arrived. */
    char out[512];
    snprintf(out, sizeof out, "%s %s ?%s #%" PRIu64 " %zu:%s", keng_http_req_method(r), p,
             keng_http_req_query(r), keng_http_req_id(r), e->body_len, e->body);
    keng_http_respond(r, 200, "text/plain", out, strlen(out));
}

/* Answers the held "/hold" request now: "held QUERY". */
static void hold_answer(env *e)
{
    ASSERT_NOT_NULL(e->held);
    keng_http_req *r = e->held;
    e->held = NULL;
    char q[64];
    snprintf(q, sizeof q, "held %s", keng_http_req_query(r));
    keng_http_respond(r, 200, "text/plain", q, strlen(q));
}

static void observe(void *ud, const char *label, int status, uint64_t us)
{
    (void)us;
    env *e = ud;
    e->nobserved++;
    e->observed_status = status;
    copy(e->observed_label, sizeof e->observed_label, label);
}

/* Defaults, with short timeouts so a stuck test fails fast; change e->cfg, then env_start. */
static void env_init(env *e)
{
    memset(e, 0, sizeof *e);
    ASSERT_EQ(uv_loop_init(&e->loop), 0);
    keng_http_limits_default(&e->cfg.limits);
    e->cfg.on_headers = on_headers;
    e->cfg.on_request = on_request;
    e->cfg.ud = e;
}

static void env_start(env *e)
{
    ASSERT_EQ(keng_http_server_new(&e->loop, &e->cfg, &e->s), 0);
    keng_http_set_observer(e->s, observe, e);
    ASSERT_EQ(keng_http_server_listen(e->s, "127.0.0.1:0"), 0);
    e->port = keng_http_server_port(e->s);
    ASSERT_GT(e->port, 0);
    ASSERT_EQ(uv_timer_init(&e->loop, &e->later), 0);
    e->later.data = e;
}

static void on_shutdown_done(void *ud)
{
    ((env *)ud)->done++;
}

/* One turn of the loop, after waiting (10 ms at most) for the loop or for fd (may be -1). */
static void env_step(env *e, int fd)
{
    struct pollfd p[2] = {{.fd = uv_backend_fd(&e->loop), .events = POLLIN},
                          {.fd = fd, .events = POLLIN}};
    int t = uv_backend_timeout(&e->loop);
    if (t < 0 || t > 10) t = 10;
    poll(p, 2, t);
    uv_run(&e->loop, UV_RUN_NOWAIT);
}

/* Runs the loop for ms milliseconds; the client reads nothing meanwhile. */
static void env_wait(env *e, int ms)
{
    uint64_t until = uv_hrtime() + (uint64_t)ms * 1000 * 1000;
    while (uv_hrtime() < until)
        env_step(e, -1);
}

/* Shuts the server down and runs the loop dry: done once, no handle left. */
static void env_done(env *e)
{
    keng_http_server_shutdown(e->s, 500, on_shutdown_done, e);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(e->done, 1);
    ASSERT_EQ(keng_http_server_connections(e->s), 0);
    keng_http_server_free(e->s);
    uv_close((uv_handle_t *)&e->later, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&e->loop), 0);
    if (e->file[0]) unlink(e->file);
}

/* ---- the client side ---- */

typedef struct client {
    int fd;
    keng_buf in; /* received, not yet taken as a response */
    int eof;
} client;

typedef struct resp {
    int status;
    char head[16384]; /* status line and headers */
    keng_buf body;    /* de-chunked */
} resp;

static void cl_open(env *e, client *c)
{
    (void)e;
    memset(c, 0, sizeof *c);
    keng_buf_init(&c->in, 0);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(c->fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)e->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* A loopback connect completes from the backlog, before the server accepts. */
    ASSERT_EQ(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK), 0);
}

static void cl_close(client *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    keng_buf_free(&c->in);
}

static void cl_send(env *e, client *c, const void *data, size_t len)
{
    const char *p = data;
    uint64_t deadline = uv_hrtime() + WAIT_NS;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            TEST_FAIL("send: %s", strerror(errno));
        if (uv_hrtime() > deadline) TEST_FAIL("send: the server does not read");
        env_step(e, -1);
    }
}

static void cl_sends(env *e, client *c, const char *s)
{
    cl_send(e, c, s, strlen(s));
}

/* One step of the loop, then whatever the socket has. */
static void cl_fill(env *e, client *c)
{
    env_step(e, c->fd);
    for (;;) {
        char tmp[65536];
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n > 0) {
            ASSERT_EQ(keng_buf_append(&c->in, tmp, (size_t)n), 0);
            continue;
        }
        if (n == 0 || errno == ECONNRESET)
            c->eof = 1;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            TEST_FAIL("recv: %s", strerror(errno));
        return;
    }
}

/* Value of header name in a response head, copied to out; 0 when absent. */
static int resp_header(const resp *r, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    for (const char *l = strstr(r->head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *line = l + 2;
        if (strncasecmp(line, name, nlen) || line[nlen] != ':') continue;
        const char *v = line + nlen + 1;
        while (*v == ' ')
            v++;
        size_t vlen = (size_t)(strstr(v, "\r\n") - v);
        snprintf(out, outlen, "%.*s", (int)vlen, v);
        return 1;
    }
    return 0;
}

/* Asserts header name has exactly value want. */
#define ASSERT_HEADER(r, name, want)                                                               \
    do {                                                                                           \
        char v_[256];                                                                              \
        if (!resp_header((r), (name), v_, sizeof v_))                                              \
            TEST_FAIL("no %s header in: %s", (name), (r)->head);                                   \
        ASSERT_STR_EQ(v_, (want));                                                                 \
    } while (0)
#define ASSERT_NO_HEADER(r, name)                                                                  \
    do {                                                                                           \
        char v_[256];                                                                              \
        if (resp_header((r), (name), v_, sizeof v_))                                               \
            TEST_FAIL("unexpected %s: %s header in: %s", (name), v_, (r)->head);                   \
    } while (0)

/* The size of a complete response at the start of in, or 0 when more bytes are needed. */
static size_t resp_parse(const char *in, size_t len, int eof, int head_req, resp *r)
{
    if (len == 0) return 0;
    const char *end = memmem(in, len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t hlen = (size_t)(end - in) + 4;
    ASSERT_LT(hlen, sizeof r->head);
    memcpy(r->head, in, hlen);
    r->head[hlen] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1) TEST_FAIL("status line: %s", r->head);
    keng_buf_free(&r->body);
    keng_buf_init(&r->body, 0);
    char v[64];
    if (r->status < 200 || r->status == 204 || r->status == 304 || head_req) return hlen;
    if (resp_header(r, "content-length", v, sizeof v)) {
        size_t cl = strtoull(v, NULL, 10);
        if (len - hlen < cl) return 0;
        if (cl) ASSERT_EQ(keng_buf_append(&r->body, in + hlen, cl), 0);
        return hlen + cl;
    }
    if (resp_header(r, "transfer-encoding", v, sizeof v)) {
        ASSERT_STR_EQ(v, "chunked");
        size_t pos = hlen;
        for (;;) {
            const char *crlf = memmem(in + pos, len - pos, "\r\n", 2);
            if (!crlf) return 0;
            char *hex_end;
            size_t n = strtoul(in + pos, &hex_end, 16);
            ASSERT(hex_end == crlf);
            pos = (size_t)(crlf - in) + 2;
            if (len - pos < n + 2) return 0;
            ASSERT(memcmp(in + pos + n, "\r\n", 2) == 0);
            if (n == 0) return pos + 2;
            ASSERT_EQ(keng_buf_append(&r->body, in + pos, n), 0);
            pos += n + 2;
        }
    }
    if (!eof) return 0; /* no length: the body runs to the end of the connection */
    if (len > hlen) ASSERT_EQ(keng_buf_append(&r->body, in + hlen, len - hlen), 0);
    return len;
}

/* Reads one whole response (head_req: the request was HEAD, no body follows). */
static void cl_read(env *e, client *c, resp *r, int head_req)
{
    memset(r, 0, sizeof *r);
    keng_buf_init(&r->body, 0);
    uint64_t deadline = uv_hrtime() + WAIT_NS;
    for (;;) {
        size_t n = resp_parse(c->in.data, c->in.len, c->eof, head_req, r);
        if (n) {
            keng_buf_consume(&c->in, n);
            return;
        }
        /* At most 300 bytes of what came: a large body would drown the message. */
        int shown = c->in.len > 300 ? 300 : (int)c->in.len;
        if (c->eof)
            TEST_FAIL("connection closed before a whole response (%zu bytes): \"%.*s\"", c->in.len,
                      shown, c->in.data ? c->in.data : "");
        if (uv_hrtime() > deadline)
            TEST_FAIL("no whole response in time (%zu bytes): \"%.*s\"", c->in.len, shown,
                      c->in.data ? c->in.data : "");
        cl_fill(e, c);
    }
}

static const char *resp_body(const resp *r)
{
    return r->body.data ? r->body.data : "";
}

static void resp_free(resp *r)
{
    keng_buf_free(&r->body);
}

/* Asserts r is the whole "/big" body, every byte in its place. */
static void assert_big_body(const resp *r)
{
    ASSERT_EQ(r->status, 200);
    ASSERT_EQ(r->body.len, BIG_LEN);
    for (size_t i = 0; i < BIG_LEN; i++)
        if (r->body.data[i] != big_byte(i)) TEST_FAIL("byte %zu of the body is wrong", i);
}

/* Sends a request and reads its response. */
static void cl_roundtrip(env *e, client *c, const char *req, resp *r)
{
    cl_sends(e, c, req);
    cl_read(e, c, r, !strncmp(req, "HEAD ", 5));
}

/* Asserts the server closes the connection (EOF or reset) with nothing more sent. */
static void cl_expect_closed(env *e, client *c)
{
    uint64_t deadline = uv_hrtime() + WAIT_NS;
    while (!c->eof) {
        if (uv_hrtime() > deadline) TEST_FAIL("the server kept the connection open");
        cl_fill(e, c);
    }
    if (c->in.len)
        TEST_FAIL("unexpected bytes before the close: \"%.*s\"", (int)c->in.len, c->in.data);
}

/* Parses a JSON error body and checks its shape {"error":{"code","message"}}; code NULL: any. */
static void assert_error_body(const resp *r, const char *code)
{
    ASSERT_HEADER(r, "content-type", "application/json; charset=utf-8");
    cJSON *j = cJSON_Parse(resp_body(r));
    if (!j) TEST_FAIL("not JSON: %s", resp_body(r));
    ASSERT_EQ(cJSON_GetArraySize(j), 1);
    cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    ASSERT(cJSON_IsObject(err));
    ASSERT_EQ(cJSON_GetArraySize(err), 2);
    cJSON *c = cJSON_GetObjectItemCaseSensitive(err, "code");
    cJSON *m = cJSON_GetObjectItemCaseSensitive(err, "message");
    ASSERT(cJSON_IsString(c));
    ASSERT(cJSON_IsString(m));
    if (code) ASSERT_STR_EQ(c->valuestring, code);
    ASSERT_GT(strlen(c->valuestring), 0);
    ASSERT_GT(strlen(m->valuestring), 0);
    cJSON_Delete(j);
}

/* ---- pure helpers ---- */

TEST(http_urldecode)
{
    char out[16];
    ASSERT_EQ(keng_http_urldecode("a%20b", 5, out, sizeof out, 0), 0);
    ASSERT_STR_EQ(out, "a b");
    ASSERT_EQ(keng_http_urldecode("a+b", 3, out, sizeof out, 0), 0);
    ASSERT_STR_EQ(out, "a+b");
    ASSERT_EQ(keng_http_urldecode("a+b", 3, out, sizeof out, 1), 0);
    ASSERT_STR_EQ(out, "a b");
    ASSERT_EQ(keng_http_urldecode("%e1%BA%a1", 9, out, sizeof out, 0), 0);
    ASSERT_STR_EQ(out, "\xE1\xBA\xA1");
    ASSERT_EQ(keng_http_urldecode("abcdef", 3, out, sizeof out, 0), 0); /* len, not strlen */
    ASSERT_STR_EQ(out, "abc");
    ASSERT_EQ(keng_http_urldecode("", 0, out, sizeof out, 0), 0);
    ASSERT_STR_EQ(out, "");
    ASSERT_EQ(keng_http_urldecode("%", 1, out, sizeof out, 0), -EINVAL);
    ASSERT_EQ(keng_http_urldecode("%4", 2, out, sizeof out, 0), -EINVAL);
    ASSERT_EQ(keng_http_urldecode("%41", 2, out, sizeof out, 0), -EINVAL); /* cut by len */
    ASSERT_EQ(keng_http_urldecode("%zz", 3, out, sizeof out, 0), -EINVAL);
    ASSERT_EQ(keng_http_urldecode("a%00", 4, out, sizeof out, 0), -EINVAL);
    /* Room for the NUL: 3 bytes hold 2 characters. */
    ASSERT_EQ(keng_http_urldecode("ab", 2, out, 3, 0), 0);
    ASSERT_EQ(keng_http_urldecode("abc", 3, out, 3, 0), -E2BIG);
    ASSERT_EQ(keng_http_urldecode("a", 1, out, 0, 0), -E2BIG);
}

TEST(http_status_text)
{
    ASSERT_STR_EQ(keng_http_status_text(200), "OK");
    ASSERT_STR_EQ(keng_http_status_text(206), "Partial Content");
    ASSERT_STR_EQ(keng_http_status_text(304), "Not Modified");
    ASSERT_STR_EQ(keng_http_status_text(404), "Not Found");
    ASSERT_STR_EQ(keng_http_status_text(413), "Content Too Large");
    ASSERT_STR_EQ(keng_http_status_text(431), "Request Header Fields Too Large");
    ASSERT_STR_EQ(keng_http_status_text(599), "Unknown");
}

TEST(http_limits_default)
{
    keng_http_limits l;
    keng_http_limits_default(&l);
    ASSERT_EQ(l.max_header, 16 * 1024);
    ASSERT_EQ(l.max_body, 1024 * 1024);
    ASSERT_GT(l.header_timeout_ms, 0);
    ASSERT_GT(l.body_timeout_ms, 0);
    ASSERT_GT(l.idle_timeout_ms, 0);
    ASSERT_GT(l.send_timeout_ms, 0);
    ASSERT_GT(l.max_connections, 0);
}

TEST(http_listen_bad_address)
{
    env e;
    env_init(&e);
    ASSERT_EQ(keng_http_server_new(&e.loop, &e.cfg, &e.s), 0);
    ASSERT_EQ(keng_http_server_listen(e.s, "127.0.0.1"), -EINVAL);
    ASSERT_EQ(keng_http_server_listen(e.s, ":80"), -EINVAL);
    ASSERT_EQ(keng_http_server_listen(e.s, "127.0.0.1:99999"), -EINVAL);
    ASSERT_EQ(keng_http_server_listen(e.s, "127.0.0.1:8x"), -EINVAL);
    ASSERT_EQ(keng_http_server_listen(e.s, "[::1:80"), -EINVAL);
    ASSERT_LT(keng_http_server_listen(e.s, "not-an-ip:80"), 0);
    keng_http_server_free(e.s);
    ASSERT_EQ(uv_loop_close(&e.loop), 0);
}

/* ---- one request ---- */

TEST_TIMEOUT(http_get_simple, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c,
                 "GET /echo?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Test: hello world\r\n"
                 "X-Empty:\r\n\r\n",
                 &r);
    ASSERT(!strncmp(r.head, "HTTP/1.1 200 OK\r\n", 17));
    ASSERT_HEADER(&r, "content-type", "text/plain");
    ASSERT_HEADER(&r, "connection", "keep-alive");
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", r.body.len);
    ASSERT_HEADER(&r, "content-length", cl);
    ASSERT_STR_EQ(resp_body(&r), "GET /echo ?a=1&b=2 #1 0:");
    ASSERT_EQ(e.nheaders, 1);
    ASSERT_EQ(e.nrequests, 1);
    ASSERT_STR_EQ(e.method, "GET");
    ASSERT_STR_EQ(e.path, "/echo");
    ASSERT_STR_EQ(e.query, "a=1&b=2");
    ASSERT_STR_EQ(e.remote, "127.0.0.1");
    ASSERT_STR_EQ(e.x_test, "hello world"); /* looked up case-insensitively */
    ASSERT(e.has_x_empty);
    ASSERT_STR_EQ(e.x_empty, "");
    ASSERT(!e.has_missing);
    ASSERT_EQ(e.content_length, -1);
    ASSERT_EQ(e.body_len, 0);
    ASSERT_EQ(e.nobserved, 1);
    ASSERT_EQ(e.observed_status, 200);
    ASSERT_STR_EQ(e.observed_label, "/test");
    ASSERT_EQ(e.nclosed, 0);
    ASSERT_EQ(keng_http_server_connections(e.s), 1);
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_post_body_buffered, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
                 &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "POST /echo ? #1 11:hello world");
    ASSERT_EQ(e.content_length, 11);
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_request_split_byte_by_byte, 10)
{
    /* Every callback of the parser sees one byte at a time: names and values are put together
     * across reads. */
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    const char *req = "POST /echo?k=v HTTP/1.1\r\nHost: x\r\nX-Test: split value\r\n"
                      "X-Empty: \r\nContent-Length: 4\r\n\r\nbody";
    for (const char *p = req; *p; p++) {
        cl_send(&e, &c, p, 1);
        env_step(&e, -1);
    }
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "POST /echo ?k=v #1 4:body");
    ASSERT_STR_EQ(e.x_test, "split value");
    ASSERT(e.has_x_empty);
    ASSERT_STR_EQ(e.x_empty, "");
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_query_params, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, "GET /query?a=1&b=x%20y&c&d=a+b%2Bc&&e= HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(e.query, "a=1&b=x%20y&c&d=a+b%2Bc&&e=");
    ASSERT_STR_EQ(e.q_b, "x y");
    ASSERT_STR_EQ(e.q_c, "");
    ASSERT_STR_EQ(e.q_d, "a b+c");
    ASSERT_EQ(e.q_missing, -ENOENT);
    ASSERT_EQ(e.q_small, -E2BIG);
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_fragment_stripped, 10)
{
    /* A fragment is the client's business: cut off with or without a query, and a '?' inside
     * it does not start one. */
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    static const struct {
        const char *target, *path, *query;
    } cases[] = {
        {"/echo#frag", "/echo", ""},
        {"/echo?a=1#frag", "/echo", "a=1"},
        {"/echo#x?y=1", "/echo", ""},
        {"/echo?#", "/echo", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char req[256];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].target);
        resp r;
        cl_roundtrip(&e, &c, req, &r);
        if (r.status != 200) TEST_FAIL("%s: status %d", cases[i].target, r.status);
        ASSERT_STR_EQ(e.path, cases[i].path);
        ASSERT_STR_EQ(e.query, cases[i].query);
        resp_free(&r);
    }
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_head_has_no_body, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(e.method, "HEAD");
    char cl[32];
    ASSERT(resp_header(&r, "content-length", cl, sizeof cl));
    ASSERT_GT(atoi(cl), 0); /* the length a GET would have */
    resp_free(&r);
    /* No body bytes follow: the next response starts right after the head. */
    cl_roundtrip(&e, &c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "GET /echo ? #2 0:");
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_response_header_injection_refused, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, "GET /headers HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_HEADER(&r, "x-good", "yes");
    ASSERT_NO_HEADER(&r, "x-bad");
    ASSERT_NO_HEADER(&r, "set-cookie");
    ASSERT_NO_HEADER(&r, "injected");
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_error_json_shape, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, "GET /error HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 422);
    ASSERT(!strncmp(r.head, "HTTP/1.1 422 Unprocessable Content\r\n", 36));
    assert_error_body(&r, "bad_field");
    ASSERT_STR_CONTAINS(resp_body(&r), "\"message\":\"field name is 3 characters too long\"");
    ASSERT_EQ(resp_body(&r)[r.body.len - 1], '\n');
    ASSERT_HEADER(&r, "connection", "keep-alive"); /* an error from a handler keeps it open */
    resp_free(&r);
    cl_roundtrip(&e, &c, "GET /json HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 201);
    ASSERT_HEADER(&r, "content-type", "application/json; charset=utf-8");
    ASSERT_STR_EQ(resp_body(&r), "{\"ok\":true}\n");
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

/* ---- keep-alive and pipelining ---- */

TEST_TIMEOUT(http_keepalive_two_requests, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, "GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_HEADER(&r, "connection", "keep-alive");
    ASSERT_STR_EQ(resp_body(&r), "GET /echo ?n=1 #1 0:");
    resp_free(&r);
    cl_roundtrip(&e, &c, "POST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "POST /echo ?n=2 #2 3:abc");
    resp_free(&r);
    ASSERT_EQ(e.nrequests, 2);
    ASSERT_EQ(e.ids[1], e.ids[0] + 1);
    ASSERT_EQ(keng_http_server_connections(e.s), 1); /* the same connection both times */
    /* Connection: close from the client: answered, then closed. */
    cl_roundtrip(&e, &c, "GET /echo?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_HEADER(&r, "connection", "close");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_1_0_closes, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /echo HTTP/1.0\r\n\r\n");
    resp r;
    /* The answer is HTTP/1.1 (as RFC 9110 allows) with Connection: close. */
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_HEADER(&r, "connection", "close");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_pipelined_answered_in_order, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    /* Three requests in one write; the first is answered 30 ms later, from a timer. */
    cl_sends(&e, &c,
             "GET /later?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
             "POST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
             "GET /echo?n=3 HTTP/1.1\r\nHost: x\r\n\r\n");
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "later n=1");
    resp_free(&r);
    /* One request at a time: the next ones were not handed out while the first was open. */
    ASSERT_EQ(e.requests_when_later_ran, 1);
    cl_read(&e, &c, &r, 0);
    ASSERT_STR_EQ(resp_body(&r), "POST /echo ?n=2 #2 5:hello");
    resp_free(&r);
    cl_read(&e, &c, &r, 0);
    ASSERT_STR_EQ(resp_body(&r), "GET /echo ?n=3 #3 0:");
    resp_free(&r);
    ASSERT_EQ(e.nrequests, 3);
    ASSERT_EQ(c.in.len, 0);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_pipelined_after_early_answer, 10)
{
    /* An early answer from on_headers to a request without a body leaves the connection
     * usable, also for a request already waiting behind it. */
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c,
             "GET /reject HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n");
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 404);
    ASSERT_HEADER(&r, "connection", "keep-alive");
    assert_error_body(&r, "not_found");
    resp_free(&r);
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "GET /echo ?n=2 #2 0:");
    resp_free(&r);
    ASSERT_EQ(e.nheaders, 2);
    ASSERT_EQ(e.nrequests, 1); /* on_request never saw the rejected one */
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_pipelined_after_half_close, 10)
{
    /* Three requests in one write, then the client shuts down its side while the first is being
     * handled: every request that arrived whole is answered, in order, then the server closes.
     * The first is answered only once the server has surely read the EOF, so the last answer
     * must say "close". */
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c,
             "GET /hold?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
             "POST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
             "GET /echo?n=3 HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_EQ(shutdown(c.fd, SHUT_WR), 0);
    uint64_t deadline = uv_hrtime() + WAIT_NS;
    while (!e.held && uv_hrtime() < deadline)
        env_step(&e, -1);
    ASSERT_NOT_NULL(e.held);
    for (int i = 0; i < 5; i++) /* the FIN is there: a turn or two of the loop reads it */
        env_step(&e, -1);
    ASSERT_EQ(e.nrequests, 1); /* one at a time */
    hold_answer(&e);
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "held n=1");
    ASSERT_HEADER(&r, "connection", "keep-alive"); /* more requests wait behind it */
    resp_free(&r);
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "POST /echo ?n=2 #2 5:hello");
    resp_free(&r);
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "GET /echo ?n=3 #3 0:");
    ASSERT_HEADER(&r, "connection", "close");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nrequests, 3);
    ASSERT_EQ(e.nclosed, 0); /* a half-close is not a client gone */
    cl_close(&c);
    /* The same with the first answered from a timer, whenever the EOF is read: all answered,
     * in order, then closed. */
    cl_open(&e, &c);
    cl_sends(&e, &c,
             "GET /later?n=4 HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /echo?n=5 HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_EQ(shutdown(c.fd, SHUT_WR), 0);
    cl_read(&e, &c, &r, 0);
    ASSERT_STR_EQ(resp_body(&r), "later n=4");
    resp_free(&r);
    cl_read(&e, &c, &r, 0);
    ASSERT_STR_EQ(resp_body(&r), "GET /echo ?n=5 #5 0:");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    cl_close(&c);
    /* A whole request and the start of another, then EOF: the first is answered; the second
     * can never end, and the connection closes. */
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /echo?n=6 HTTP/1.1\r\nHost: x\r\n\r\nGET /ech");
    ASSERT_EQ(shutdown(c.fd, SHUT_WR), 0);
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "GET /echo ?n=6 #6 0:");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nrequests, 6);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_early_answer_with_body_closes, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, "POST /reject HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_HEADER(&r, "connection", "close"); /* the body was not read */
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nrequests, 0);
    cl_close(&c);
    env_done(&e);
}

/* ---- limits ---- */

TEST_TIMEOUT(http_headers_too_large_431, 10)
{
    env e;
    env_init(&e);
    e.cfg.limits.max_header = 1024;
    env_start(&e);
    client c;
    cl_open(&e, &c);
    char big[4096];
    char pad[2048];
    /* Under the limit: fine. */
    memset(pad, 'a', 600);
    pad[600] = '\0';
    snprintf(big, sizeof big, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", pad);
    resp r;
    cl_roundtrip(&e, &c, big, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    /* Over it: 431, then the connection closes. */
    memset(pad, 'a', 2000);
    pad[2000] = '\0';
    snprintf(big, sizeof big, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", pad);
    cl_roundtrip(&e, &c, big, &r);
    ASSERT_EQ(r.status, 431);
    ASSERT_HEADER(&r, "connection", "close");
    assert_error_body(&r, "headers_too_large");
    /* The message names the limit configured, not the default. */
    ASSERT_STR_CONTAINS(resp_body(&r), "(1024 bytes)");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nheaders, 1); /* the handler never saw the big one */
    ASSERT_EQ(e.nrequests, 1);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_long_url_431, 10)
{
    env e;
    env_init(&e);
    e.cfg.limits.max_header = 1024;
    env_start(&e);
    client c;
    cl_open(&e, &c);
    char req[4096];
    int n = snprintf(req, sizeof req, "GET /echo?q=");
    memset(req + n, 'u', 2000);
    snprintf(req + n + 2000, sizeof req - (size_t)n - 2000, " HTTP/1.1\r\nHost: x\r\n\r\n");
    resp r;
    cl_roundtrip(&e, &c, req, &r);
    ASSERT_EQ(r.status, 431);
    assert_error_body(&r, "headers_too_large");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nheaders, 0);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_too_many_headers_431, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    keng_buf b;
    keng_buf_init(&b, 0);
    ASSERT_EQ(keng_buf_puts(&b, "GET /echo HTTP/1.1\r\n"), 0);
    for (int i = 0; i < 150; i++)
        ASSERT_EQ(keng_buf_printf(&b, "X-H%d: v\r\n", i), 0);
    ASSERT_EQ(keng_buf_puts(&b, "\r\n"), 0);
    resp r;
    cl_roundtrip(&e, &c, b.data, &r);
    keng_buf_free(&b);
    ASSERT_EQ(r.status, 431);
    assert_error_body(&r, "headers_too_large");
    ASSERT_STR_CONTAINS(resp_body(&r), "more than 100 header fields");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nheaders, 0);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_body_too_large_413, 10)
{
    env e;
    env_init(&e);
    e.cfg.limits.max_body = 64;
    env_start(&e);
    client c;
    cl_open(&e, &c);
    /* Exactly the limit is fine. */
    char req[512];
    char body[65];
    memset(body, 'b', 64);
    body[64] = '\0';
    snprintf(req, sizeof req, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\n\r\n%s",
             body);
    resp r;
    cl_roundtrip(&e, &c, req, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(e.body_len, 64);
    resp_free(&r);
    /* A declared length over it is refused from the headers alone: the body is never sent. */
    cl_roundtrip(&e, &c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n", &r);
    ASSERT_EQ(r.status, 413);
    ASSERT_HEADER(&r, "connection", "close");
    assert_error_body(&r, "body_too_large");
    ASSERT_STR_CONTAINS(resp_body(&r), "(64 bytes)");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nrequests, 1);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_route_body_limit, 10)
{
    /* on_headers changes the limit per request: "/small" takes 8 bytes, "/large" 4096 where
     * the server default is 64. */
    env e;
    env_init(&e);
    e.cfg.limits.max_body = 64;
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    char req[1024];
    char body[201];
    memset(body, 'z', 200);
    body[200] = '\0';
    snprintf(req, sizeof req, "POST /large HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n%s",
             body);
    cl_roundtrip(&e, &c, req, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(e.body_len, 200);
    resp_free(&r);
    cl_roundtrip(&e, &c, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n", &r);
    ASSERT_EQ(r.status, 413);
    resp_free(&r);
    cl_expect_closed(&e, &c);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_chunked_body_too_large_413, 10)
{
    env e;
    env_init(&e);
    e.cfg.limits.max_body = 16;
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c,
                 "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
                 &r);
    ASSERT_EQ(r.status, 413);
    ASSERT_HEADER(&r, "connection", "close");
    assert_error_body(&r, "body_too_large");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nrequests, 0);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_max_connections_503, 10)
{
    env e;
    env_init(&e);
    e.cfg.limits.max_connections = 1;
    env_start(&e);
    client a, b;
    cl_open(&e, &a);
    resp r;
    cl_roundtrip(&e, &a, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", &r); /* a is accepted */
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    cl_open(&e, &b);
    cl_read(&e, &b, &r, 0);
    ASSERT_EQ(r.status, 503);
    ASSERT_HEADER(&r, "retry-after", "5");
    ASSERT_HEADER(&r, "connection", "close");
    assert_error_body(&r, "too_many_connections");
    resp_free(&r);
    cl_expect_closed(&e, &b);
    cl_close(&b);
    /* The first connection still works. */
    cl_roundtrip(&e, &a, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    cl_close(&a);
    env_done(&e);
}

/* ---- request bodies ---- */

TEST_TIMEOUT(http_chunked_body_reassembled, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    /* Chunks arrive in separate writes, one of them cut in its size line. */
    cl_sends(&e, &c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    cl_sends(&e, &c, "6\r\nhello \r\n");
    env_step(&e, -1);
    cl_sends(&e, &c, "8;ext=1\r\nchunked \r\n");
    env_step(&e, -1);
    cl_sends(&e, &c, "5");
    env_step(&e, -1);
    cl_sends(&e, &c, "\r\nworld\r\n0\r\n\r\n");
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "POST /echo ? #1 19:hello chunked world");
    ASSERT_EQ(e.content_length, -1);
    resp_free(&r);
    /* And the connection goes on. */
    cl_roundtrip(&e, &c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_streaming_body_callback, 10)
{
    /* A streamed body is not buffered and not held to max_body: 200 KB where the limit is 1 KB,
     * sent in pieces of 7 KB. */
    env e;
    env_init(&e);
    e.cfg.limits.max_body = 1024;
    env_start(&e);
    client c;
    cl_open(&e, &c);
    enum { TOTAL = 200 * 1024, PIECE = 7 * 1024 };
    char *body = malloc(TOTAL);
    ASSERT_NOT_NULL(body);
    unsigned want = 0;
    for (size_t i = 0; i < TOTAL; i++) {
        body[i] = (char)('a' + (i * 7) % 26);
        want = want * 31 + (unsigned char)body[i];
    }
    char head[128];
    snprintf(head, sizeof head, "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
             TOTAL);
    cl_sends(&e, &c, head);
    for (size_t off = 0; off < TOTAL; off += PIECE) {
        cl_send(&e, &c, body + off, off + PIECE > TOTAL ? TOTAL - off : PIECE);
        env_step(&e, -1);
    }
    free(body);
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    char msg[64];
    snprintf(msg, sizeof msg, "streamed %d", TOTAL);
    ASSERT_STR_EQ(resp_body(&r), msg);
    ASSERT_EQ(e.streamed, TOTAL);
    ASSERT_EQ(e.stream_sum, want); /* every byte, in order */
    ASSERT_GT(e.stream_calls, 1);
    ASSERT_EQ(e.body_len, 0); /* nothing buffered */
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_streaming_body_chunked, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c,
                 "POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
                 &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "streamed 7");
    unsigned want = 0;
    for (const char *p = "abcdefg"; *p; p++)
        want = want * 31 + (unsigned char)*p;
    ASSERT_EQ(e.stream_sum, want);
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

/* "/stream" with a body callback that refuses the body midway with status abort_at. */
static void expect_body_refused(int abort_at, int want_status, const char *want_code,
                                const char *want_msg)
{
    env e;
    env_init(&e);
    e.stream_abort_at = abort_at;
    env_start(&e);
    client c;
    cl_open(&e, &c);
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n");
    memset(req + n, 'x', 2000);
    req[n + 2000] = '\0';
    resp r;
    cl_roundtrip(&e, &c, req, &r);
    if (r.status != want_status) TEST_FAIL("refused with %d: status %d", abort_at, r.status);
    ASSERT_HEADER(&r, "connection", "close");
    /* The code and the message fit the status; the request was valid HTTP. */
    assert_error_body(&r, want_code);
    ASSERT_STR_CONTAINS(resp_body(&r), want_msg);
    if (strstr(resp_body(&r), "HTTP/1.1")) TEST_FAIL("misleading message: %s", resp_body(&r));
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nrequests, 0);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_streaming_body_abort, 10)
{
    /* The body callback refuses the body midway: answered with its status, connection closed. */
    expect_body_refused(415, 415, "unsupported_media_type", "not of a type");
    expect_body_refused(413, 413, "body_too_large", "larger than");
    expect_body_refused(460, 460, "checksum_mismatch", "checksum");
    expect_body_refused(422, 422, "unprocessable_content", "422");
    expect_body_refused(1, 400, "bad_request", "refused"); /* not an HTTP status: 400 */
}

TEST_TIMEOUT(http_expect_100_continue, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c,
             "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 100);
    ASSERT_EQ(e.nrequests, 0);
    resp_free(&r);
    cl_sends(&e, &c, "hello");
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "POST /echo ? #1 5:hello");
    resp_free(&r);
    /* Refused from the headers: no 100, the final answer at once. */
    cl_sends(&e, &c,
             "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
             "Content-Length: 99999999\r\n\r\n");
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 413);
    resp_free(&r);
    cl_expect_closed(&e, &c);
    cl_close(&c);
    env_done(&e);
}

/* ---- malformed requests ---- */

static void expect_400(const char *req)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, req, &r);
    if (r.status != 400) TEST_FAIL("%s: status %d", req, r.status);
    ASSERT_HEADER(&r, "connection", "close");
    assert_error_body(&r, "bad_request");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nrequests, 0);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_malformed_request_line_400, 10)
{
    /* (http-parser, built without HTTP_PARSER_STRICT, takes "HTTX/1.1": not tested here.) */
    expect_400("GET /echo FOO/1.1\r\nHost: x\r\n\r\n");
    expect_400("GET /echo HTTP/1.x\r\nHost: x\r\n\r\n");
    expect_400("NOPE /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_400("123 / HTTP/1.1\r\n\r\n");
    expect_400("GET /ec ho HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_400("GET /echo HTTP/1.1\r\nBad Header\r\n\r\n");
}

TEST_TIMEOUT(http_non_origin_form_400, 10)
{
    /* Only origin-form ("/path"): absolute-form and "*" are refused. */
    expect_400("GET http://example.com/echo HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_400("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
}

TEST_TIMEOUT(http_bad_framing_400, 10)
{
    expect_400("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
    expect_400("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
               "abcd");
    expect_400("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               "zz\r\nabc\r\n0\r\n\r\n");
}

TEST_TIMEOUT(http_malformed_after_good_request, 10)
{
    /* A good request answered, then garbage on the same connection: 400 and closed. */
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02garbage\r\n\r\n");
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 400);
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nrequests, 1);
    cl_close(&c);
    env_done(&e);
}

/* ---- files ---- */

static void make_file(env *e)
{
    snprintf(e->file, sizeof e->file, "/tmp/keng-http-XXXXXX");
    int fd = mkstemp(e->file);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "0123456789abcdef", 16), 16);
    close(fd);
}

/* GET /file with one extra header line (or none) on the kept-alive connection c. */
static void get_file(env *e, client *c, const char *method, const char *extra, resp *r)
{
    char req[512];
    snprintf(req, sizeof req, "%s /file HTTP/1.1\r\nHost: x\r\n%s\r\n", method, extra);
    cl_roundtrip(e, c, req, r);
}

TEST_TIMEOUT(http_file_full_and_etag, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    make_file(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    get_file(&e, &c, "GET", "", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "0123456789abcdef");
    ASSERT_HEADER(&r, "content-length", "16");
    ASSERT_HEADER(&r, "content-type", "text/plain");
    ASSERT_HEADER(&r, "etag", "\"v1\"");
    ASSERT_HEADER(&r, "accept-ranges", "bytes");
    ASSERT_HEADER(&r, "cache-control", "max-age=60");
    ASSERT_HEADER(&r, "connection", "keep-alive");
    resp_free(&r);
    get_file(&e, &c, "GET", "If-None-Match: \"v1\"\r\n", &r);
    ASSERT_EQ(r.status, 304);
    ASSERT_HEADER(&r, "etag", "\"v1\"");
    ASSERT_NO_HEADER(&r, "content-length");
    resp_free(&r);
    get_file(&e, &c, "GET", "If-None-Match: \"v0\", \"v1\"\r\n", &r);
    ASSERT_EQ(r.status, 304);
    resp_free(&r);
    get_file(&e, &c, "GET", "If-None-Match: *\r\n", &r);
    ASSERT_EQ(r.status, 304);
    resp_free(&r);
    get_file(&e, &c, "GET", "If-None-Match: \"v2\"\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "0123456789abcdef");
    resp_free(&r);
    get_file(&e, &c, "HEAD", "", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_HEADER(&r, "content-length", "16");
    resp_free(&r);
    /* After HEAD no body bytes may follow: the next answer starts cleanly. */
    get_file(&e, &c, "GET", "", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "0123456789abcdef");
    resp_free(&r);
    ASSERT_EQ(keng_http_server_connections(e.s), 1);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_file_range, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    make_file(&e);
    client c;
    cl_open(&e, &c);
    static const struct {
        const char *range, *body, *content_range;
    } cases[] = {
        {"bytes=0-3", "0123", "bytes 0-3/16"},
        {"bytes=10-", "abcdef", "bytes 10-15/16"},
        {"bytes=-4", "cdef", "bytes 12-15/16"},
        {"bytes=-100", "0123456789abcdef", "bytes 0-15/16"},
        {"bytes=14-99", "ef", "bytes 14-15/16"},
        {"bytes=15-15", "f", "bytes 15-15/16"},
    };
    resp r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char h[64];
        snprintf(h, sizeof h, "Range: %s\r\n", cases[i].range);
        get_file(&e, &c, "GET", h, &r);
        if (r.status != 206) TEST_FAIL("%s: status %d", cases[i].range, r.status);
        ASSERT_STR_EQ(resp_body(&r), cases[i].body);
        ASSERT_HEADER(&r, "content-range", cases[i].content_range);
        char cl[32];
        snprintf(cl, sizeof cl, "%zu", strlen(cases[i].body));
        ASSERT_HEADER(&r, "content-length", cl);
        resp_free(&r);
    }
    /* Outside the file: 416 with the size. */
    get_file(&e, &c, "GET", "Range: bytes=16-20\r\n", &r);
    ASSERT_EQ(r.status, 416);
    ASSERT_HEADER(&r, "content-range", "bytes */16");
    assert_error_body(&r, "range_not_satisfiable");
    resp_free(&r);
    /* Ranges it does not handle are ignored: the whole file. */
    static const char *ignored[] = {"bytes=0-1,4-5", "items=0-3", "bytes=5-2", "bytes=x-3"};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
        char h[64];
        snprintf(h, sizeof h, "Range: %s\r\n", ignored[i]);
        get_file(&e, &c, "GET", h, &r);
        if (r.status != 200) TEST_FAIL("%s: status %d", ignored[i], r.status);
        ASSERT_STR_EQ(resp_body(&r), "0123456789abcdef");
        ASSERT_NO_HEADER(&r, "content-range");
        resp_free(&r);
    }
    /* If-Range: the range only while the ETag still matches. */
    get_file(&e, &c, "GET", "Range: bytes=0-3\r\nIf-Range: \"v1\"\r\n", &r);
    ASSERT_EQ(r.status, 206);
    ASSERT_STR_EQ(resp_body(&r), "0123");
    resp_free(&r);
    get_file(&e, &c, "GET", "Range: bytes=0-3\r\nIf-Range: \"v0\"\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "0123456789abcdef");
    resp_free(&r);
    ASSERT_EQ(keng_http_server_connections(e.s), 1);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_file_if_range_exact, 10)
{
    /* If-Range is compared whole with the strong ETag: anything else (a part of it, a weak
     * tag, a date, some other text of the response) gives the whole file. */
    env e;
    env_init(&e);
    env_start(&e);
    make_file(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    get_file(&e, &c, "GET", "Range: bytes=0-3\r\nIf-Range: \"v1\"\r\n", &r);
    ASSERT_EQ(r.status, 206);
    ASSERT_STR_EQ(resp_body(&r), "0123");
    resp_free(&r);
    static const char *no[] = {"bytes",
                               "\"v1",
                               "v1",
                               "\"v1\"x",
                               "\"v1\", \"v2\"",
                               "W/\"v1\"",
                               "Accept-Ranges",
                               "max-age=60",
                               "Thu, 01 Jan 1970 00:00:00 GMT",
                               "\"\"",
                               "\""};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        char h[128];
        snprintf(h, sizeof h, "Range: bytes=0-3\r\nIf-Range: %s\r\n", no[i]);
        get_file(&e, &c, "GET", h, &r);
        if (r.status != 200) TEST_FAIL("If-Range: %s: status %d", no[i], r.status);
        ASSERT_STR_EQ(resp_body(&r), "0123456789abcdef");
        ASSERT_NO_HEADER(&r, "content-range");
        resp_free(&r);
    }
    ASSERT_EQ(keng_http_server_connections(e.s), 1);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_file_missing_404, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 404);
    assert_error_body(&r, "not_found");
    resp_free(&r);
    cl_roundtrip(&e, &c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

/* ---- streamed responses ---- */

TEST_TIMEOUT(http_chunked_response, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_HEADER(&r, "content-type", "text/event-stream");
    ASSERT_HEADER(&r, "transfer-encoding", "chunked");
    ASSERT_HEADER(&r, "cache-control", "no-cache");
    ASSERT_NO_HEADER(&r, "content-length");
    ASSERT_STR_EQ(resp_body(&r), "data: one\n\ndata: two\n\n");
    ASSERT_EQ(e.stream_second_start, -EINVAL);
    resp_free(&r);
    cl_roundtrip(&e, &c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    cl_close(&c);
    env_done(&e);
}

/* ---- timeouts ---- */

TEST_TIMEOUT(http_header_timeout_408, 10)
{
    env e;
    env_init(&e);
    e.cfg.limits.header_timeout_ms = 200;
    env_start(&e);
    /* Headers that never end: a 408 in JSON, then the connection closes. */
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /echo HTTP/1.1\r\nHost: x\r\n");
    uint64_t t0 = uv_hrtime();
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_GE(uv_hrtime() - t0, 150ull * 1000 * 1000);
    ASSERT_EQ(r.status, 408);
    ASSERT_HEADER(&r, "connection", "close");
    assert_error_body(&r, "request_timeout");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nheaders, 0);
    ASSERT_EQ(e.nobserved, 1); /* logged like any request */
    ASSERT_EQ(e.observed_status, 408);
    cl_close(&c);
    /* The same headers sent one byte every 20 ms: the deadline is not pushed back by each byte,
     * so the connection is cut long before the (300-byte) request ends. */
    cl_open(&e, &c);
    char req[512];
    int n = snprintf(req, sizeof req, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    memset(req + n, 'p', 200);
    snprintf(req + n + 200, sizeof req - (size_t)n - 200, "\r\n\r\n");
    size_t sent = 0;
    for (; req[sent] && !c.eof; sent++) {
        if (send(c.fd, req + sent, 1, MSG_NOSIGNAL) != 1) break; /* reset by the server */
        uint64_t until = uv_hrtime() + 20 * 1000 * 1000;
        while (!c.eof && uv_hrtime() < until)
            cl_fill(&e, &c);
    }
    ASSERT_LT(sent, strlen(req));
    ASSERT_EQ(e.nheaders, 0);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_body_timeout_408, 10)
{
    env e;
    env_init(&e);
    e.cfg.limits.body_timeout_ms = 200;
    env_start(&e);
    client c;
    cl_open(&e, &c);
    /* 3 of 10 bytes, then silence. */
    resp r;
    cl_roundtrip(&e, &c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", &r);
    ASSERT_EQ(r.status, 408);
    ASSERT_HEADER(&r, "connection", "close");
    assert_error_body(&r, "request_timeout");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nrequests, 0);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_idle_timeout_closes, 10)
{
    env e;
    env_init(&e);
    e.cfg.limits.idle_timeout_ms = 200;
    env_start(&e);
    /* After a request, a kept-alive connection with nothing more to do. */
    client c;
    cl_open(&e, &c);
    resp r;
    cl_roundtrip(&e, &c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    cl_expect_closed(&e, &c);
    cl_close(&c);
    /* A connection that never sends a byte. */
    cl_open(&e, &c);
    cl_expect_closed(&e, &c);
    cl_close(&c);
    ASSERT_EQ(keng_http_server_connections(e.s), 0);
    env_done(&e);
}

/* ---- the client leaves, the server stops ---- */

TEST_TIMEOUT(http_client_gone_while_handling, 10)
{
    /* The client leaves while "/later" is being handled: the close callback runs, the late
     * response is dropped, and the connection is freed once the handler has answered. */
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /later?n=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    uint64_t deadline = uv_hrtime() + WAIT_NS;
    while (e.nrequests == 0 && uv_hrtime() < deadline)
        env_step(&e, -1);
    ASSERT_EQ(e.nrequests, 1);
    /* A reset rather than a FIN, so the server sees an error and not a half-close. */
    struct linger lg = {1, 0};
    ASSERT_EQ(setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    cl_close(&c);
    deadline = uv_hrtime() + WAIT_NS;
    while ((e.pending || keng_http_server_connections(e.s)) && uv_hrtime() < deadline)
        env_step(&e, -1);
    ASSERT_NULL(e.pending); /* answered (into the void) */
    ASSERT_EQ(e.nclosed, 1);
    ASSERT_EQ(keng_http_server_connections(e.s), 0);
    env_done(&e);
}

TEST_TIMEOUT(http_half_close_still_answered, 10)
{
    /* The client sends its request and shuts down its side while the handler works: the
     * answer still goes out, then the server closes. */
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /later?n=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    uint64_t deadline = uv_hrtime() + WAIT_NS;
    while (e.nrequests == 0 && uv_hrtime() < deadline)
        env_step(&e, -1);
    ASSERT_EQ(e.nrequests, 1);
    ASSERT_EQ(shutdown(c.fd, SHUT_WR), 0);
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "later n=1");
    resp_free(&r);
    cl_expect_closed(&e, &c);
    ASSERT_EQ(e.nclosed, 0); /* a half-close is not a client gone */
    cl_close(&c);
    env_done(&e);
}

/* ---- responses larger than the socket buffers ---- */

TEST_TIMEOUT(http_big_response_after_half_close, 10)
{
    /* The client sends its request and shuts down its side at once; the 8 MiB answer is still
     * being written when the EOF arrives: it goes out whole, then the server closes. */
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_EQ(shutdown(c.fd, SHUT_WR), 0);
    resp r;
    cl_read(&e, &c, &r, 0);
    assert_big_body(&r);
    resp_free(&r);
    cl_expect_closed(&e, &c);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_big_response_outlives_idle_timeout, 10)
{
    /* A connection whose answer is still queued is not idle: the client reads nothing for
     * 500 ms with a 200 ms idle timeout, then gets the whole body; after that it is idle and
     * closed. */
    env e;
    env_init(&e);
    e.cfg.limits.idle_timeout_ms = 200;
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    env_wait(&e, 500);
    ASSERT_EQ(keng_http_server_connections(e.s), 1);
    resp r;
    cl_read(&e, &c, &r, 0);
    assert_big_body(&r);
    ASSERT_HEADER(&r, "connection", "keep-alive");
    resp_free(&r);
    cl_expect_closed(&e, &c); /* the idle timeout, now that nothing is queued */
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_send_timeout_cuts_stalled_reader, 20)
{
    /* send_timeout_ms governs a client that does not read. One that trickles (32 KiB every
     * 100 ms, for 2.5 times the limit) is slow but reading, though the kernel buffers megabytes
     * for it and the server's own queue does not move: it keeps its connection and then gets
     * the whole body. One that reads nothing is cut once nothing moved for the limit. The idle
     * timeout (shorter) plays no part while bytes are queued. */
    enum { LIMIT_MS = 1000 };
    env e;
    env_init(&e);
    e.cfg.limits.send_timeout_ms = LIMIT_MS;
    e.cfg.limits.idle_timeout_ms = 100;
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    uint64_t t0 = uv_hrtime();
    while (uv_hrtime() - t0 < 5ull * LIMIT_MS / 2 * 1000 * 1000) {
        env_wait(&e, 100);
        char tmp[32 * 1024];
        ssize_t n = recv(c.fd, tmp, sizeof tmp, 0);
        if (n == 0) TEST_FAIL("closed after %zu bytes", c.in.len);
        if (n > 0) ASSERT_EQ(keng_buf_append(&c.in, tmp, (size_t)n), 0);
    }
    ASSERT_EQ(keng_http_server_connections(e.s), 1);
    ASSERT_LT(c.in.len, BIG_LEN / 2); /* still far from done */
    resp r;
    cl_read(&e, &c, &r, 0);
    assert_big_body(&r);
    resp_free(&r);
    cl_expect_closed(&e, &c); /* then idle: 100 ms */
    cl_close(&c);
    /* A reader that reads nothing. */
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    t0 = uv_hrtime();
    uint64_t deadline = t0 + 2 * WAIT_NS;
    while (e.nrequests < 2 || keng_http_server_connections(e.s) > 0) {
        if (uv_hrtime() > deadline) TEST_FAIL("the stalled connection was kept");
        env_step(&e, -1);
    }
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    ASSERT_GE(ms, LIMIT_MS); /* the limit counts from the last byte that moved */
    ASSERT_LT(ms, 4 * LIMIT_MS);
    cl_close(&c);
    env_done(&e);
}

TEST_TIMEOUT(http_shutdown_drains_queued_response, 10)
{
    /* Shutdown closes idle connections, but one whose answer is still queued is not idle: the
     * answer goes out whole first. */
    env e;
    env_init(&e);
    env_start(&e);
    client c;
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    uint64_t deadline = uv_hrtime() + WAIT_NS;
    while (e.nrequests == 0 && uv_hrtime() < deadline)
        env_step(&e, -1);
    ASSERT_EQ(e.nrequests, 1);
    keng_http_server_shutdown(e.s, 3000, on_shutdown_done, &e);
    env_wait(&e, 100);
    resp r;
    cl_read(&e, &c, &r, 0);
    assert_big_body(&r);
    resp_free(&r);
    cl_expect_closed(&e, &c);
    cl_close(&c);
    deadline = uv_hrtime() + WAIT_NS;
    while (!e.done && uv_hrtime() < deadline)
        env_step(&e, -1);
    ASSERT_EQ(e.done, 1);
    env_done(&e);
}

TEST_TIMEOUT(http_shutdown_lets_inflight_finish, 10)
{
    env e;
    env_init(&e);
    env_start(&e);
    client c, idle;
    cl_open(&e, &idle);
    cl_open(&e, &c);
    cl_sends(&e, &c, "GET /later?n=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    uint64_t deadline = uv_hrtime() + WAIT_NS;
    while (e.nrequests == 0 && uv_hrtime() < deadline)
        env_step(&e, -1);
    ASSERT_EQ(e.nrequests, 1);
    ASSERT_EQ(keng_http_server_connections(e.s), 2);
    keng_http_server_shutdown(e.s, 3000, on_shutdown_done, &e);
    /* The idle connection is closed at once; the busy one gets its answer, then is closed. */
    cl_expect_closed(&e, &idle);
    cl_close(&idle);
    resp r;
    cl_read(&e, &c, &r, 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_body(&r), "later n=1");
    ASSERT_HEADER(&r, "connection", "close"); /* the server is going away: it says so */
    resp_free(&r);
    cl_expect_closed(&e, &c);
    cl_close(&c);
    deadline = uv_hrtime() + WAIT_NS;
    while (!e.done && uv_hrtime() < deadline)
        env_step(&e, -1);
    ASSERT_EQ(e.done, 1);
    /* Nothing listens any more. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)e.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof a), -1);
    ASSERT_EQ(errno, ECONNREFUSED);
    close(fd);
    env_done(&e); /* a second shutdown is a no-op */
}
