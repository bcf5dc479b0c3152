#include "keng/http.h"

#include "keng/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>

#define HTTP_FILE_CHUNK (256 * 1024)
#define HTTP_MAX_HEADERS 100
#define HTTP_INPUT_HIGH_WATER (256 * 1024)
#define HTTP_ETAG_MAX 160 /* a quoted ETag, NUL included */

enum req_phase {
    PHASE_IDLE,      /* waiting for the first byte of a request */
    PHASE_HEADERS,   /* request line and headers arriving */
    PHASE_BODY,      /* body arriving */
    PHASE_HANDLING,  /* handed to the handler, no response yet */
    PHASE_STREAMING, /* chunked response under way */
    PHASE_REJECTED,  /* answered before the body was read; the connection closes */
};

/* Why a request was refused before a handler saw it: picks the words of the error. */
enum reject_why {
    WHY_PARSE,        /* not HTTP/1.1 as http-parser reads it */
    WHY_TARGET,       /* not origin-form ("/path") */
    WHY_HEADER_BYTES, /* request line + headers over max_header */
    WHY_HEADER_COUNT, /* more than HTTP_MAX_HEADERS fields */
    WHY_BODY_SIZE,    /* body over the route's limit */
    WHY_BODY_REFUSED, /* the handler's body callback said no */
    WHY_NOMEM,
};

typedef struct conn conn;
typedef struct file_send file_send;

struct keng_http_req {
    conn *c;
    uint64_t id;
    enum req_phase phase;
    char method[16];
    keng_buf url;
    char *path, *query;
    keng_buf hdrs; /* name\0value\0 pairs; names lower-cased */
    int nhdrs;
    int in_value;
    keng_buf body;
    size_t max_body;
    int64_t content_length;
    int body_status; /* HTTP status to answer when the request was refused midway */
    enum reject_why why;
    keng_http_body_cb body_cb;
    void *body_ud;
    keng_http_close_cb close_cb;
    void *close_ud;
    void *data;
    void (*data_free)(void *);
    const char *label;
    keng_buf out_hdrs;
    int status;
    int head;
    int keep_alive;
    int has_body; /* a body follows the headers (chunked or Content-Length > 0) */
    uint64_t t0;
    uint64_t bytes_out;
    file_send *file;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    keng_http_server *srv;
    conn *prev, *next;
    http_parser parser;
    keng_buf in;
    size_t in_off;
    keng_http_req req;
    int closing;
    int handles_open;
    int reading;
    int in_process;
    int dispatch_ready;
    int close_after_write;
    int read_eof;   /* the client half-closed: answer what arrived whole, then close */
    int send_timer; /* the timer watches queued bytes (send_timeout_ms), not the request */
    int writes;
    size_t pending_bytes;
    uint64_t queued;      /* bytes ever handed to uv_write */
    uint64_t sent_mark;   /* bytes the client had acknowledged at the last sign of progress */
    uint64_t stall_since; /* loop time of that progress */
    char remote[64];
};

struct keng_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    keng_http_config cfg;
    conn *conns;
    int nconns;
    uint64_t next_id;
    int shutting_down;
    uv_timer_t grace;
    int grace_open;
    uint64_t deadline;
    void (*done)(void *);
    void *done_ud;
    int done_called;
    void (*observer)(void *, const char *, int, uint64_t);
    void *observer_ud;
};

typedef struct wreq {
    uv_write_t w;
    conn *c;
    char *head;
    char *body;
    size_t len;
} wreq;

struct file_send {
    keng_http_req *req;
    uv_fs_t fs;
    uv_file fd;
    int64_t pos, end;
    char *chunk;
    const char *ctype;        /* borrowed: callers pass literals */
    char etag[HTTP_ETAG_MAX]; /* the strong ETag sent, quoted, or "": what If-Range must equal */
    int aborted;
};

static const http_parser_settings parser_settings;
static void conn_close(conn *c);
static void conn_process(conn *c);
static void req_finish(keng_http_req *r);
static void conn_arm_timer(conn *c);
static void conn_close_after_writes(conn *c);
static void conn_update_reading(conn *c);

void keng_http_limits_default(keng_http_limits *l)
{
    l->max_header = 16 * 1024;
    l->max_body = 1024 * 1024;
    l->header_timeout_ms = 10000;
    l->body_timeout_ms = 30000;
    l->idle_timeout_ms = 300000;
    l->send_timeout_ms = 30000;
    l->max_connections = 4096;
}

const char *keng_http_status_text(int s)
{
    switch (s) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 460: return "Checksum Mismatch";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* ---- connection life ---- */

static void conn_maybe_free(conn *c)
{
    if (c->handles_open > 0) return;
    keng_http_req *r = &c->req;
    /* A handler still owns the request: it is freed when the handler responds. */
    if (r->phase == PHASE_HANDLING || r->file) return;
    keng_http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    if (r->data_free) r->data_free(r->data);
    keng_buf_free(&c->in);
    keng_buf_free(&r->url);
    keng_buf_free(&r->hdrs);
    keng_buf_free(&r->body);
    keng_buf_free(&r->out_hdrs);
    free(c);
    if (s->shutting_down && s->nconns == 0 && !s->listening && !s->grace_open && s->done &&
        !s->done_called) {
        s->done_called = 1;
        s->done(s->done_ud);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    c->handles_open--;
    conn_maybe_free(c);
}

static void conn_close(conn *c)
{
    if (c->closing) return;
    c->closing = 1;
    keng_http_req *r = &c->req;
    if ((r->phase == PHASE_HANDLING || r->phase == PHASE_STREAMING) && r->close_cb) {
        keng_http_close_cb cb = r->close_cb;
        r->close_cb = NULL;
        cb(r, r->close_ud);
        if (r->phase == PHASE_STREAMING) r->phase = PHASE_IDLE;
    }
    if (r->phase == PHASE_STREAMING) r->phase = PHASE_IDLE;
    if (r->file) r->file->aborted = 1;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_write(uv_write_t *w, int status)
{
    wreq *wr = (wreq *)w;
    conn *c = wr->c;
    c->writes--;
    c->pending_bytes -= wr->len;
    free(wr->head);
    free(wr->body);
    free(wr);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->writes > 0) return;
    /* A file response writes chunk by chunk: it closes when it is done, not between chunks. */
    if (c->close_after_write && !c->req.file)
        conn_close(c);
    else if (c->send_timer)
        conn_arm_timer(c); /* all out: back to the idle timer (or none) */
}

/* The request's own timers (header, body) govern while it arrives; otherwise queued bytes do. */
static int conn_receiving(const conn *c)
{
    return !c->close_after_write && (c->req.phase == PHASE_HEADERS || c->req.phase == PHASE_BODY);
}

/* Counts bytes just handed to uv_write; starts the send timer if none watches them yet. */
static void conn_queued(conn *c, size_t len)
{
    c->writes++;
    c->pending_bytes += len;
    c->queued += len;
    if (!c->send_timer && !conn_receiving(c)) conn_arm_timer(c);
}

/* Queues head + body (both owned, either may be NULL) for the client. */
static int conn_write(conn *c, char *head, size_t hlen, char *body, size_t blen)
{
    if (c->closing) {
        free(head);
        free(body);
        return -EPIPE;
    }
    wreq *wr = malloc(sizeof *wr);
    if (!wr) {
        free(head);
        free(body);
        conn_close(c);
        return -ENOMEM;
    }
    uv_buf_t bufs[2];
    unsigned n = 0;
    if (head && hlen) bufs[n++] = uv_buf_init(head, (unsigned)hlen);
    if (body && blen) bufs[n++] = uv_buf_init(body, (unsigned)blen);
    wr->c = c;
    wr->head = head;
    wr->body = body;
    wr->len = hlen + blen;
    c->req.bytes_out += wr->len;
    int rc = n ? uv_write(&wr->w, (uv_stream_t *)&c->tcp, bufs, n, on_write) : UV_EINVAL;
    if (rc < 0) {
        free(head);
        free(body);
        free(wr);
        if (n) conn_close(c);
        return rc;
    }
    conn_queued(c, wr->len);
    return 0;
}

static uint64_t now_us(conn *c)
{
    return uv_hrtime() / 1000 + 0 * (uintptr_t)c;
}

/* ---- parser callbacks ---- */

static void req_reset(keng_http_req *r)
{
    r->phase = PHASE_IDLE;
    r->method[0] = '\0';
    keng_buf_reset(&r->url);
    r->path = r->query = NULL;
    keng_buf_reset(&r->hdrs);
    r->nhdrs = 0;
    r->in_value = 0;
    keng_buf_free(&r->body);
    r->max_body = r->c->srv->cfg.limits.max_body;
    keng_buf_init(&r->body, r->max_body);
    r->content_length = -1;
    r->body_status = 0;
    r->why = WHY_PARSE;
    r->body_cb = NULL;
    r->body_ud = NULL;
    r->close_cb = NULL;
    r->close_ud = NULL;
    if (r->data_free) r->data_free(r->data);
    r->data_free = NULL;
    r->data = NULL;
    r->label = NULL;
    keng_buf_reset(&r->out_hdrs);
    r->status = 0;
    r->head = 0;
    r->keep_alive = 1;
    r->bytes_out = 0;
    r->file = NULL;
}

static int on_message_begin(http_parser *p)
{
    conn *c = p->data;
    c->req.phase = PHASE_HEADERS;
    c->req.id = ++c->srv->next_id;
    c->req.t0 = now_us(c);
    conn_arm_timer(c);
    return 0;
}

static int header_room(conn *c, size_t n)
{
    keng_http_req *r = &c->req;
    if (r->url.len + r->hdrs.len + n > c->srv->cfg.limits.max_header) {
        r->body_status = 431;
        r->why = WHY_HEADER_BYTES;
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (header_room(c, len) || keng_buf_append(&c->req.url, at, len)) return -1;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    keng_http_req *r = &c->req;
    if (header_room(c, len + 2)) return -1;
    if (r->in_value || r->nhdrs == 0) {
        if (r->nhdrs > 0 && keng_buf_append(&r->hdrs, "", 1)) return -1; /* end previous value */
        if (++r->nhdrs > HTTP_MAX_HEADERS) {
            r->body_status = 431;
            r->why = WHY_HEADER_COUNT;
            return -1;
        }
        r->in_value = 0;
    }
    size_t start = r->hdrs.len;
    if (keng_buf_append(&r->hdrs, at, len)) return -1;
    for (size_t i = start; i < r->hdrs.len; i++)
        if (r->hdrs.data[i] >= 'A' && r->hdrs.data[i] <= 'Z') r->hdrs.data[i] += 32;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    keng_http_req *r = &c->req;
    if (header_room(c, len + 2)) return -1;
    if (!r->in_value) {
        if (keng_buf_append(&r->hdrs, "", 1)) return -1; /* end name */
        r->in_value = 1;
    }
    return keng_buf_append(&r->hdrs, at, len) ? -1 : 0;
}

static int req_split_url(keng_http_req *r)
{
    char *u = r->url.data;
    if (!u || u[0] != '/') return -1; /* only origin-form */
    /* A fragment is the client's own business (clients do not send it): cut it off first, so
     * that a '?' inside it starts no query, with or without a query before it. */
    char *h = strchr(u, '#');
    if (h) *h = '\0';
    r->path = u;
    char *q = strchr(u, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
    } else {
        r->query = u + strlen(u); /* "" */
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    conn *c = p->data;
    keng_http_req *r = &c->req;
    keng_http_server *s = c->srv;
    if (r->nhdrs > 0 && r->in_value && keng_buf_append(&r->hdrs, "", 1)) return -1;
    if (r->nhdrs > 0 && !r->in_value) { /* a name without a value */
        if (keng_buf_append(&r->hdrs, "\0", 2)) return -1;
    }
    if (!r->url.data || req_split_url(r)) {
        r->body_status = 400;
        r->why = WHY_TARGET;
        return -1;
    }
    snprintf(r->method, sizeof r->method, "%s", http_method_str(p->method));
    r->head = p->method == HTTP_HEAD;
    r->keep_alive = http_should_keep_alive(p) && !s->shutting_down;
    r->content_length = (p->flags & F_CONTENTLENGTH) ? (int64_t)p->content_length : -1;
    r->has_body = (p->flags & F_CHUNKED) || r->content_length > 0;
    r->phase = PHASE_BODY;
    conn_arm_timer(c);
    s->cfg.on_headers(r, s->cfg.ud);
    if (r->phase != PHASE_BODY) {
        /* Answered before the body: do not read it, close once the answer is out. Without
         * a body the connection stays usable: the parser finishes the message. */
        return r->has_body ? -1 : 0;
    }
    if (r->content_length >= 0 && !r->body_cb && (uint64_t)r->content_length > r->max_body) {
        r->body_status = 413;
        r->why = WHY_BODY_SIZE;
        return -1;
    }
    const char *expect = keng_http_req_header(r, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        char *m = strdup(cont);
        if (m) conn_write(c, m, sizeof cont - 1, NULL, 0);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    keng_http_req *r = &c->req;
    if (r->body_cb) {
        int st = r->body_cb(r, at, len, r->body_ud);
        if (st) {
            r->body_status = st >= 400 && st <= 599 ? st : 400;
            r->why = WHY_BODY_REFUSED;
            return -1;
        }
        return 0;
    }
    if (r->body.len + len > r->max_body) {
        r->body_status = 413;
        r->why = WHY_BODY_SIZE;
        return -1;
    }
    if (keng_buf_append(&r->body, at, len)) {
        r->body_status = 500;
        r->why = WHY_NOMEM;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    conn *c = p->data;
    c->dispatch_ready = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- timers and reading ---- */

static void conn_reject(conn *c, int status);

/* Bytes the client's TCP has acknowledged: what was queued, less what libuv still holds, less
 * what waits unacknowledged in the kernel's send queue. Counting at libuv alone would miss a
 * slow reader's progress while the kernel buffers megabytes for it. */
static uint64_t conn_bytes_acked(conn *c)
{
    uint64_t n = c->queued - uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
#ifdef TIOCOUTQ
    uv_os_fd_t fd;
    int unacked = 0;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && ioctl(fd, TIOCOUTQ, &unacked) == 0 &&
        unacked > 0 && (uint64_t)unacked <= n)
        n -= (uint64_t)unacked;
#endif
    return n;
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->closing) return;
    if (c->send_timer) {
        /* Queued bytes that do not move: a client that does not read. Bytes that move, however
         * slowly, keep the connection. */
        if (c->writes == 0) {
            conn_arm_timer(c);
            return;
        }
        uint64_t acked = conn_bytes_acked(c), now = uv_now(c->srv->loop);
        if (acked != c->sent_mark) {
            c->sent_mark = acked;
            c->stall_since = now;
        } else if (now - c->stall_since >= (uint64_t)c->srv->cfg.limits.send_timeout_ms) {
            keng_warn("http: %s read nothing for %d ms: connection closed", c->remote,
                      c->srv->cfg.limits.send_timeout_ms);
            conn_close(c);
        }
        return;
    }
    if (c->req.phase == PHASE_HEADERS || c->req.phase == PHASE_BODY) {
        /* At least one byte of a request arrived (that starts PHASE_HEADERS): answer 408. */
        conn_reject(c, 408);
        return;
    }
    conn_close(c); /* idle */
}

/* One timer per connection, for the limit that applies now: while a request arrives, the header
 * deadline or the body silence; while answers are queued, the send timeout (a connection with
 * queued bytes is not idle, whatever its phase); between requests, the idle timeout. */
static void conn_arm_timer(conn *c)
{
    if (c->closing) return;
    const keng_http_limits *l = &c->srv->cfg.limits;
    c->send_timer = 0;
    if (conn_receiving(c) && c->req.phase == PHASE_HEADERS) {
        /* A deadline, not reset by each byte: one byte a second is cut off. */
        uv_timer_start(&c->timer, on_timer, (uint64_t)l->header_timeout_ms, 0);
    } else if (conn_receiving(c)) {
        uv_timer_start(&c->timer, on_timer, (uint64_t)l->body_timeout_ms, 0);
    } else if (c->writes > 0 && l->send_timeout_ms > 0) {
        /* Checked four times a period: closes 1 to 1.25 periods after the last byte moved. */
        uint64_t tick = (uint64_t)l->send_timeout_ms / 4;
        if (tick == 0) tick = 1;
        c->send_timer = 1;
        c->sent_mark = conn_bytes_acked(c);
        c->stall_since = uv_now(c->srv->loop);
        uv_timer_start(&c->timer, on_timer, tick, tick);
    } else if (c->writes == 0 && c->req.phase == PHASE_IDLE && !c->close_after_write) {
        uv_timer_start(&c->timer, on_timer, (uint64_t)l->idle_timeout_ms, 0);
    } else {
        uv_timer_stop(&c->timer);
    }
}

/* No more requests on this connection: it closes once every queued byte is out (at once when
 * none is). Idempotent. */
static void conn_close_after_writes(conn *c)
{
    if (c->closing) return;
    c->close_after_write = 1;
    if (c->writes == 0 && !c->req.file) {
        conn_close(c);
        return;
    }
    conn_update_reading(c);
    if (!c->send_timer) conn_arm_timer(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = h->data;
    keng_buf *in = &c->in;
    /* Room for 64 KiB more; reserved, not written, so an idle connection costs no pages. */
    if (keng_buf_reserve(in, 65536)) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(in->data + in->len, (unsigned)(in->cap - in->len - 1));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn *c = st->data;
    if (nread < 0) {
        if (nread == UV_EOF && c->req.phase != PHASE_STREAMING) {
            /* A half-close: no request comes after this, but those that arrived whole are
             * answered in order and queued answers go out; conn_process closes after that.
             * (A stream's reader that sends EOF has gone: it is closed below.) */
            uv_read_stop(st);
            c->reading = 0;
            c->read_eof = 1;
            conn_process(c);
            return;
        }
        conn_close(c);
        return;
    }
    if (nread == 0) return;
    c->in.len += (size_t)nread;
    c->in.data[c->in.len] = '\0';
    if (c->req.phase == PHASE_BODY) conn_arm_timer(c);
    conn_process(c);
}

static void conn_update_reading(conn *c)
{
    if (c->closing) return;
    int busy = c->req.phase == PHASE_HANDLING || c->req.phase == PHASE_STREAMING;
    int want = !(busy && c->in.len - c->in_off > HTTP_INPUT_HIGH_WATER) &&
               c->req.phase != PHASE_REJECTED && !c->close_after_write && !c->read_eof;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

/* "Unsupported Media Type" → "unsupported_media_type": an error code that fits any status. */
static void status_code_name(int status, char *out, size_t n)
{
    const char *t = keng_http_status_text(status);
    size_t o = 0;
    for (; *t && o + 1 < n; t++)
        out[o++] = *t == ' ' || *t == '-' ? '_' : (*t >= 'A' && *t <= 'Z') ? (char)(*t + 32) : *t;
    out[o] = '\0';
}

/* The error code and message for a request the server refuses before a handler answered. */
static void reject_text(conn *c, int status, char *code, size_t codelen, char *msg, size_t n)
{
    keng_http_req *r = &c->req;
    if (status == 408) {
        snprintf(code, codelen, "request_timeout");
        snprintf(msg, n, "the request did not arrive in time; send it again");
        return;
    }
    if (r->why == WHY_BODY_REFUSED) { /* the route's body callback chose the status */
        switch (status) {
        case 413:
            snprintf(code, codelen, "body_too_large");
            snprintf(msg, n, "the request body is larger than this route accepts");
            return;
        case 415:
            snprintf(code, codelen, "unsupported_media_type");
            snprintf(msg, n,
                     "the request body is not of a type this route accepts; check Content-Type");
            return;
        case 460:
            snprintf(code, codelen, "checksum_mismatch");
            snprintf(msg, n, "the request body does not match its checksum; send it again");
            return;
        case 400:
            snprintf(code, codelen, "bad_request");
            snprintf(msg, n, "the request body was refused: it is not valid for this route");
            return;
        default:
            status_code_name(status, code, codelen);
            snprintf(msg, n, "the request body was refused (%d %s)", status,
                     keng_http_status_text(status));
            return;
        }
    }
    switch (status) {
    case 431:
        snprintf(code, codelen, "headers_too_large");
        if (r->why == WHY_HEADER_COUNT)
            snprintf(msg, n, "the request has more than %d header fields", HTTP_MAX_HEADERS);
        else
            snprintf(msg, n, "the request line and headers are larger than allowed (%zu bytes)",
                     c->srv->cfg.limits.max_header);
        return;
    case 413:
        snprintf(code, codelen, "body_too_large");
        snprintf(msg, n, "the request body is larger than this route accepts (%zu bytes)",
                 r->max_body);
        return;
    case 500:
        snprintf(code, codelen, "internal");
        snprintf(msg, n, "the server is out of memory; try again later");
        return;
    default:
        snprintf(code, codelen, "bad_request");
        snprintf(msg, n, "%s",
                 r->why == WHY_TARGET ? "the request target must be a path that starts with '/'"
                                      : "the request is not valid HTTP/1.1");
        return;
    }
}

/* Answers a request the server refuses itself (limits, timeouts, bad HTTP), then closes. */
static void conn_reject(conn *c, int status)
{
    keng_http_req *r = &c->req;
    if (r->phase != PHASE_REJECTED && r->phase != PHASE_HANDLING) {
        char code[48], msg[160];
        reject_text(c, status, code, sizeof code, msg, sizeof msg);
        r->keep_alive = 0;
        if (r->phase == PHASE_IDLE || !r->path) r->method[0] = '\0';
        r->phase = PHASE_HANDLING;
        keng_http_respond_error(r, status, code, "%s", msg);
    }
    conn_close_after_writes(c);
}

static void conn_process(conn *c)
{
    if (c->in_process) return;
    c->in_process = 1;
    keng_http_req *r = &c->req;
    while (!c->closing && !c->close_after_write) {
        if (r->phase == PHASE_HANDLING || r->phase == PHASE_STREAMING ||
            r->phase == PHASE_REJECTED)
            break;
        size_t avail = c->in.len - c->in_off;
        if (avail == 0) break;
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->in.data + c->in_off, avail);
        c->in_off += n;
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
        } else if (err != HPE_OK) {
            if (r->phase == PHASE_REJECTED) {
                conn_close_after_writes(c);
            } else {
                conn_reject(c, r->body_status ? r->body_status : 400);
            }
            break;
        }
        if (c->dispatch_ready && r->phase == PHASE_REJECTED) {
            /* Answered early and had no body: ready for the next request. */
            c->dispatch_ready = 0;
            req_reset(r);
            http_parser_init(&c->parser, HTTP_REQUEST);
            c->parser.data = c;
            conn_arm_timer(c);
        } else if (c->dispatch_ready) {
            c->dispatch_ready = 0;
            r->phase = PHASE_HANDLING;
            conn_arm_timer(c);
            c->srv->cfg.on_request(r, c->srv->cfg.ud);
        } else if (n == 0) {
            break;
        }
    }
    if (!c->closing) {
        if (c->in_off > 0 && (c->in_off == c->in.len || c->in_off > 65536)) {
            keng_buf_consume(&c->in, c->in_off);
            c->in_off = 0;
        }
        /* 1,000 idle keep-alive connections should not hold 64 KiB each. */
        if (c->in.len == 0 && r->phase == PHASE_IDLE) keng_buf_free(&c->in);
        /* After a half-close, once no handler works on a request, every whole request has been
         * answered: what is left (nothing, or the start of a request) can never end. */
        if (c->read_eof && r->phase != PHASE_HANDLING && r->phase != PHASE_STREAMING)
            conn_close_after_writes(c);
        else
            conn_update_reading(c);
    }
    c->in_process = 0;
}

/* ---- accepting ---- */

static void on_connection(uv_stream_t *ls, int status)
{
    keng_http_server *s = ls->data;
    if (status < 0) {
        keng_warn("http: accept failed: %s", uv_strerror(status));
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    keng_buf_init(&c->in, 0);
    keng_buf_init(&c->req.url, 0);
    keng_buf_init(&c->req.hdrs, 0);
    keng_buf_init(&c->req.body, 0);
    keng_buf_init(&c->req.out_hdrs, 64 * 1024);
    c->req.c = c;
    req_reset(&c->req);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(c->remote, sizeof c->remote, "-");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->remote, sizeof c->remote);
        else if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote, sizeof c->remote);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (s->nconns > s->cfg.limits.max_connections) {
        c->req.phase = PHASE_HANDLING;
        c->req.keep_alive = 0;
        keng_http_add_header(&c->req, "Retry-After", "5");
        keng_http_respond_error(&c->req, 503, "too_many_connections",
                                "the server is at its connection limit; retry shortly");
        return;
    }
    conn_arm_timer(c);
    conn_update_reading(c);
}

int keng_http_server_new(uv_loop_t *loop, const keng_http_config *cfg, keng_http_server **out)
{
    keng_http_server *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->loop = loop;
    s->cfg = *cfg;
    *out = s;
    return 0;
}

int keng_http_server_listen(keng_http_server *s, const char *addr)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host) return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) return -EINVAL;
    struct sockaddr_storage ss;
    int rc;
    if (host[0] == '[') {
        size_t hl = strlen(host);
        if (hl < 2 || host[hl - 1] != ']') return -EINVAL;
        host[hl - 1] = '\0';
        rc = uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)&ss);
    } else {
        rc = uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss);
    }
    if (rc) return rc;
    if ((rc = uv_tcp_init(s->loop, &s->listener))) return rc;
    s->listener.data = s;
    s->listening = 1;
    if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0)) ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection))) {
        return rc;
    }
    return 0;
}

int keng_http_server_port(keng_http_server *s)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len)) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

int keng_http_server_connections(keng_http_server *s)
{
    return s->nconns;
}

static void server_check_done(keng_http_server *s)
{
    if (s->shutting_down && s->nconns == 0 && !s->listening && !s->grace_open && s->done &&
        !s->done_called) {
        s->done_called = 1;
        s->done(s->done_ud);
    }
}

static void on_grace_closed(uv_handle_t *h)
{
    keng_http_server *s = h->data;
    s->grace_open = 0;
    server_check_done(s);
}

static void on_listener_closed(uv_handle_t *h)
{
    keng_http_server *s = h->data;
    s->listening = 0;
    server_check_done(s);
}

static void server_close_idle(keng_http_server *s, int all)
{
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        enum req_phase ph = c->req.phase;
        if (all || ph == PHASE_STREAMING)
            conn_close(c);
        else if (ph == PHASE_IDLE)
            conn_close_after_writes(c); /* an answer still queued goes out whole first */
    }
}

static void on_grace_check(uv_timer_t *t)
{
    keng_http_server *s = t->data;
    int cut = uv_now(s->loop) >= s->deadline;
    server_close_idle(s, cut);
    int busy = 0;
    for (conn *c = s->conns; c; c = c->next)
        if (!c->closing) busy = 1;
    if (!busy && !uv_is_closing((uv_handle_t *)t)) uv_close((uv_handle_t *)t, on_grace_closed);
}

void keng_http_server_shutdown(keng_http_server *s, int grace_ms, void (*done)(void *), void *ud)
{
    if (s->shutting_down) return;
    s->shutting_down = 1;
    s->done = done;
    s->done_ud = ud;
    if (s->listening) uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    server_close_idle(s, 0);
    uv_timer_init(s->loop, &s->grace);
    s->grace.data = s;
    s->grace_open = 1;
    s->deadline = uv_now(s->loop) + (uint64_t)grace_ms;
    /* Checks every 20 ms whether in-flight requests are done; cuts the rest at the deadline. */
    uv_timer_start(&s->grace, on_grace_check, 0, 20);
}

void keng_http_server_free(keng_http_server *s)
{
    free(s);
}

void keng_http_set_observer(keng_http_server *s,
                            void (*cb)(void *ud, const char *label, int status, uint64_t us),
                            void *ud)
{
    s->observer = cb;
    s->observer_ud = ud;
}

/* ---- request accessors ---- */

const char *keng_http_req_method(const keng_http_req *r)
{
    return r->method;
}

const char *keng_http_req_path(const keng_http_req *r)
{
    return r->path ? r->path : "/";
}

const char *keng_http_req_query(const keng_http_req *r)
{
    return r->query ? r->query : "";
}

const char *keng_http_req_header(const keng_http_req *r, const char *name)
{
    const char *p = r->hdrs.data;
    if (!p) return NULL;
    const char *end = p + r->hdrs.len;
    for (int i = 0; p && i < r->nhdrs && p < end; i++) {
        const char *v = p + strlen(p) + 1;
        if (v > end) break;
        if (strcasecmp(p, name) == 0) return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

const char *keng_http_req_remote(const keng_http_req *r)
{
    return r->c->remote;
}

const char *keng_http_req_body(const keng_http_req *r, size_t *len)
{
    if (len) *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

int64_t keng_http_req_content_length(const keng_http_req *r)
{
    return r->content_length;
}

uint64_t keng_http_req_id(const keng_http_req *r)
{
    return r->id;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int keng_http_urldecode(const char *in, size_t len, char *out, size_t outlen, int form)
{
    size_t o = 0;
    if (outlen == 0) return -E2BIG;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)in[i];
        if (ch == '%') {
            if (i + 2 >= len) return -EINVAL;
            int h = hexval(in[i + 1]), l = hexval(in[i + 2]);
            if (h < 0 || l < 0) return -EINVAL;
            ch = h * 16 + l;
            i += 2;
        } else if (ch == '+' && form) {
            ch = ' ';
        }
        if (ch == 0) return -EINVAL;
        if (o + 1 >= outlen) return -E2BIG;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return 0;
}

int keng_http_query_param(const keng_http_req *r, const char *name, char *out, size_t outlen)
{
    const char *q = keng_http_req_query(r);
    size_t nlen = strlen(name);
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t seg = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', seg);
        size_t klen = eq ? (size_t)(eq - q) : seg;
        if (klen == nlen && memcmp(q, name, nlen) == 0) {
            if (!eq) {
                if (outlen == 0) return -E2BIG;
                out[0] = '\0';
                return 0;
            }
            return keng_http_urldecode(eq + 1, seg - klen - 1, out, outlen, 1);
        }
        q += seg;
        if (*q == '&') q++;
    }
    return -ENOENT;
}

void keng_http_req_set_body_limit(keng_http_req *r, size_t max)
{
    r->max_body = max;
    r->body.max = max;
}

void keng_http_req_set_body_stream(keng_http_req *r, keng_http_body_cb cb, void *ud)
{
    r->body_cb = cb;
    r->body_ud = ud;
}

void keng_http_req_on_close(keng_http_req *r, keng_http_close_cb cb, void *ud)
{
    r->close_cb = cb;
    r->close_ud = ud;
}

void keng_http_req_set_data(keng_http_req *r, void *data, void (*free_fn)(void *))
{
    if (r->data_free) r->data_free(r->data);
    r->data = data;
    r->data_free = free_fn;
}

void *keng_http_req_data(const keng_http_req *r)
{
    return r->data;
}

void keng_http_req_set_label(keng_http_req *r, const char *label)
{
    r->label = label;
}

const char *keng_http_req_label(const keng_http_req *r)
{
    return r->label ? r->label : "other";
}

size_t keng_http_req_pending_bytes(const keng_http_req *r)
{
    return r->c->pending_bytes;
}

/* ---- responses ---- */

void keng_http_add_header(keng_http_req *r, const char *name, const char *value)
{
    /* CR/LF in a value would split the response: refuse such a header. */
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return;
    if (keng_buf_printf(&r->out_hdrs, "%s: %s\r\n", name, value))
        keng_warn("http: response header %s dropped (too many headers)", name);
}

/* Whether the connection stays open after this answer, decided as it is sent so that the
 * Connection header tells the truth: not when the server is shutting down, nor when the client
 * half-closed and no further request is waiting. */
static int req_keep_alive(keng_http_req *r)
{
    conn *c = r->c;
    if (c->srv->shutting_down || c->close_after_write || (c->read_eof && c->in_off >= c->in.len))
        r->keep_alive = 0;
    return r->keep_alive;
}

/* The status line and headers; content_length < 0 means chunked. */
static char *build_head(keng_http_req *r, int status, const char *ctype, int64_t content_length,
                        size_t *hlen)
{
    req_keep_alive(r);
    keng_buf h;
    keng_buf_init(&h, 0);
    int rc = keng_buf_printf(&h, "HTTP/1.1 %d %s\r\n", status, keng_http_status_text(status));
    if (!rc && ctype) rc = keng_buf_printf(&h, "Content-Type: %s\r\n", ctype);
    if (!rc && content_length >= 0 && status != 304 && status != 204)
        rc = keng_buf_printf(&h, "Content-Length: %" PRId64 "\r\n", content_length);
    if (!rc && content_length < 0) rc = keng_buf_puts(&h, "Transfer-Encoding: chunked\r\n");
    if (!rc)
        rc = keng_buf_puts(&h, r->keep_alive ? "Connection: keep-alive\r\n"
                                             : "Connection: close\r\n");
    if (!rc && r->out_hdrs.len) rc = keng_buf_append(&h, r->out_hdrs.data, r->out_hdrs.len);
    if (!rc) rc = keng_buf_puts(&h, "\r\n");
    if (rc) {
        keng_buf_free(&h);
        return NULL;
    }
    *hlen = h.len;
    return keng_buf_steal(&h);
}

static void req_log(keng_http_req *r)
{
    conn *c = r->c;
    keng_http_server *s = c->srv;
    uint64_t us = now_us(c) - r->t0;
    if (s->observer) s->observer(s->observer_ud, keng_http_req_label(r), r->status, us);
    if (s->cfg.access_log)
        keng_info("%s \"%s %.200s\" %d %" PRIu64 " %.1fms", c->remote, r->method[0] ? r->method : "-",
                  r->path ? r->path : "-", r->status, r->bytes_out, (double)us / 1000.0);
}

/* The request is over: log it, get ready for the next one on the connection. */
static void req_finish(keng_http_req *r)
{
    conn *c = r->c;
    req_log(r);
    int keep = r->keep_alive;
    if (c->closing) {
        r->phase = PHASE_IDLE;
        r->file = NULL;
        conn_maybe_free(c);
        return;
    }
    req_reset(r);
    if (!keep || c->close_after_write) {
        conn_close_after_writes(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    conn_arm_timer(c);
    conn_process(c);
}

static int req_can_respond(keng_http_req *r)
{
    if (r->phase == PHASE_BODY) {
        r->phase = PHASE_REJECTED; /* early answer: a body is left unread, the connection closes */
        if (r->has_body) r->keep_alive = 0;
        return 1;
    }
    return r->phase == PHASE_HANDLING;
}

void keng_http_respond_take(keng_http_req *r, int status, const char *ctype, char *body,
                            size_t len)
{
    if (!req_can_respond(r)) {
        free(body);
        return;
    }
    int rejected = r->phase == PHASE_REJECTED;
    r->status = status;
    size_t hlen = 0;
    char *head = build_head(r, status, ctype, (int64_t)len, &hlen);
    if (r->head || status == 304 || status == 204) {
        free(body);
        body = NULL;
        len = 0;
    }
    if (head) conn_write(r->c, head, hlen, body, len);
    else free(body);
    if (rejected) {
        req_log(r);
        if (!r->keep_alive) conn_close_after_writes(r->c);
        return;
    }
    req_finish(r);
}

void keng_http_respond(keng_http_req *r, int status, const char *ctype, const void *body,
                       size_t len)
{
    char *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy) {
            keng_http_respond_take(r, 500, NULL, NULL, 0);
            return;
        }
        memcpy(copy, body, len);
    }
    keng_http_respond_take(r, status, ctype, copy, len);
}

void keng_http_respond_json(keng_http_req *r, int status, cJSON *take)
{
    char *s = take ? cJSON_PrintUnformatted(take) : NULL;
    cJSON_Delete(take);
    if (!s) {
        keng_http_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    size_t n = strlen(s);
    /* Append a newline so curl output in a terminal ends cleanly. */
    char *t = realloc(s, n + 2);
    if (t) {
        t[n++] = '\n';
        t[n] = '\0';
        s = t;
    }
    keng_http_respond_take(r, status, "application/json; charset=utf-8", s, n);
}

void keng_http_respond_error(keng_http_req *r, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", msg);
    keng_http_respond_json(r, status, root);
}

/* ---- streaming ---- */

int keng_http_stream_start(keng_http_req *r, int status, const char *ctype)
{
    if (r->phase != PHASE_HANDLING) return -EINVAL;
    r->status = status;
    keng_http_add_header(r, "Cache-Control", "no-cache");
    size_t hlen;
    char *head = build_head(r, status, ctype, -1, &hlen);
    if (!head) return -ENOMEM;
    r->phase = PHASE_STREAMING;
    return conn_write(r->c, head, hlen, NULL, 0);
}

int keng_http_stream_write(keng_http_req *r, const void *data, size_t len)
{
    if (r->phase != PHASE_STREAMING || r->c->closing) return -EPIPE;
    if (len == 0) return 0;
    char *chunk = malloc(len + 32);
    if (!chunk) return -ENOMEM;
    int n = snprintf(chunk, 32, "%zx\r\n", len);
    memcpy(chunk + n, data, len);
    memcpy(chunk + n + len, "\r\n", 2);
    return conn_write(r->c, chunk, (size_t)n + len + 2, NULL, 0);
}

void keng_http_stream_end(keng_http_req *r)
{
    if (r->phase != PHASE_STREAMING) return;
    char *last = strdup("0\r\n\r\n");
    if (last) conn_write(r->c, last, 5, NULL, 0);
    r->phase = PHASE_HANDLING;
    req_finish(r);
}

/* ---- files ---- */

static void file_release(file_send *f)
{
    if (f->fd >= 0) {
        uv_fs_t close_req;
        uv_fs_close(NULL, &close_req, f->fd, NULL); /* a close of a regular file does not block */
        uv_fs_req_cleanup(&close_req);
    }
    f->req->file = NULL;
    free(f->chunk);
    free(f);
}

static void file_done(file_send *f, int status_if_unsent)
{
    keng_http_req *r = f->req;
    file_release(f);
    if (status_if_unsent) {
        if (status_if_unsent == 404)
            keng_http_respond_error(r, 404, "not_found", "no such file");
        else
            keng_http_respond_error(r, status_if_unsent, "internal", "the file could not be read");
        return;
    }
    if (r->c->closing) {
        r->phase = PHASE_IDLE;
        conn_maybe_free(r->c);
        return;
    }
    req_finish(r);
}

static void file_read_next(file_send *f);

static void on_file_chunk_written(uv_write_t *w, int status)
{
    wreq *wr = (wreq *)w;
    conn *c = wr->c;
    file_send *f = c->req.file;
    c->writes--;
    c->pending_bytes -= wr->len;
    free(wr);
    if (c->writes == 0 && c->send_timer && !c->closing) conn_arm_timer(c);
    if (!f) return;
    if (status < 0 || f->aborted) {
        if (!c->closing) conn_close(c);
        file_done(f, 0);
        return;
    }
    file_read_next(f);
}

static void on_file_read(uv_fs_t *req)
{
    file_send *f = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    conn *c = f->req->c;
    if (f->aborted || c->closing) {
        file_done(f, 0);
        return;
    }
    if (n <= 0) { /* the file shrank under us: cut the connection, the length was promised */
        c->close_after_write = 1;
        file_done(f, 0);
        return;
    }
    f->pos += n;
    wreq *wr = malloc(sizeof *wr);
    if (!wr) {
        conn_close(c);
        file_done(f, 0);
        return;
    }
    wr->c = c;
    wr->head = wr->body = NULL;
    wr->len = (size_t)n;
    f->req->bytes_out += (size_t)n;
    uv_buf_t b = uv_buf_init(f->chunk, (unsigned)n);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_file_chunk_written) < 0) {
        free(wr);
        conn_close(c);
        file_done(f, 0);
        return;
    }
    conn_queued(c, (size_t)n);
}

static void file_read_next(file_send *f)
{
    if (f->pos >= f->end) {
        file_done(f, 0);
        return;
    }
    int64_t want = f->end - f->pos;
    if (want > HTTP_FILE_CHUNK) want = HTTP_FILE_CHUNK;
    uv_buf_t b = uv_buf_init(f->chunk, (unsigned)want);
    f->fs.data = f;
    if (uv_fs_read(f->req->c->srv->loop, &f->fs, f->fd, &b, 1, f->pos, on_file_read) < 0)
        file_done(f, 0);
}

/* Parses "bytes=a-b", "bytes=a-", "bytes=-n" against size. 0 ok, -1 unsatisfiable, 1 ignore. */
static int parse_range(const char *h, int64_t size, int64_t *from, int64_t *to)
{
    if (strncmp(h, "bytes=", 6) != 0 || strchr(h, ',')) return 1;
    const char *p = h + 6;
    char *end;
    if (*p == '-') {
        long long n = strtoll(p + 1, &end, 10);
        if (*end || n <= 0) return -1;
        if (size == 0) return -1;
        *from = n >= size ? 0 : size - n;
        *to = size - 1;
        return 0;
    }
    if (*p < '0' || *p > '9') return 1;
    long long a = strtoll(p, &end, 10);
    if (*end != '-') return 1;
    p = end + 1;
    long long b = size - 1;
    if (*p) {
        b = strtoll(p, &end, 10);
        if (*end || b < a) return 1;
        if (b >= size) b = size - 1;
    }
    if (a >= size) return -1;
    *from = a;
    *to = b;
    return 0;
}

/* If-Range (RFC 9110 13.1.5): the range is served only when the validator is exactly the strong
 * ETag being sent; anything else (a weak tag, a date: no Last-Modified is sent) means "the whole
 * file". No If-Range: the range holds. */
static int if_range_holds(const keng_http_req *r, const file_send *f)
{
    const char *v = keng_http_req_header(r, "if-range");
    if (!v) return 1;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return f->etag[0] && strlen(f->etag) == n && memcmp(v, f->etag, n) == 0;
}

static void on_file_open(uv_fs_t *req)
{
    file_send *f = req->data;
    keng_http_req *r = f->req;
    int fd = (int)req->result;
    uv_fs_req_cleanup(req);
    if (fd < 0) {
        file_done(f, fd == UV_ENOENT ? 404 : 500);
        return;
    }
    f->fd = fd;
    if (f->aborted || r->c->closing) {
        file_done(f, 0);
        return;
    }
    uv_fs_t st;
    /* fstat of an open descriptor does not touch the disk in practice: done inline. */
    if (uv_fs_fstat(NULL, &st, fd, NULL) < 0) {
        uv_fs_req_cleanup(&st);
        file_done(f, 500);
        return;
    }
    int64_t size = (int64_t)st.statbuf.st_size;
    uv_fs_req_cleanup(&st);
    int64_t from = 0, to = size - 1;
    int status = 200;
    const char *range = keng_http_req_header(r, "range");
    if (range && if_range_holds(r, f)) {
        int pr = parse_range(range, size, &from, &to);
        if (pr < 0) {
            char cr[64];
            snprintf(cr, sizeof cr, "bytes */%" PRId64, size);
            keng_http_add_header(r, "Content-Range", cr);
            file_release(f);
            keng_http_respond_error(r, 416, "range_not_satisfiable",
                                    "the requested range is outside the file (%" PRId64 " bytes)",
                                    size);
            return;
        }
        if (pr == 0) {
            status = 206;
            char cr[96];
            snprintf(cr, sizeof cr, "bytes %" PRId64 "-%" PRId64 "/%" PRId64, from, to, size);
            keng_http_add_header(r, "Content-Range", cr);
        }
    }
    f->pos = from;
    f->end = to + 1;
    r->status = status;
    size_t hlen;
    char *head = build_head(r, status, f->ctype, f->end - f->pos, &hlen);
    if (!head) {
        file_done(f, 500);
        return;
    }
    conn_write(r->c, head, hlen, NULL, 0);
    if (r->head || f->pos >= f->end) {
        file_done(f, 0);
        return;
    }
    f->chunk = malloc(HTTP_FILE_CHUNK);
    if (!f->chunk) {
        conn_close(r->c);
        file_done(f, 0);
        return;
    }
    file_read_next(f);
}

void keng_http_respond_file(keng_http_req *r, const char *path, const char *ctype,
                            const char *etag, const char *cache_control)
{
    if (!req_can_respond(r)) return;
    if (cache_control) keng_http_add_header(r, "Cache-Control", cache_control);
    keng_http_add_header(r, "Accept-Ranges", "bytes");
    char q[HTTP_ETAG_MAX] = "";
    if (etag) {
        snprintf(q, sizeof q, "\"%s\"", etag);
        keng_http_add_header(r, "ETag", q);
        const char *inm = keng_http_req_header(r, "if-none-match");
        if (inm && (strstr(inm, q) || strcmp(inm, "*") == 0)) {
            keng_http_respond_take(r, 304, NULL, NULL, 0);
            return;
        }
    }
    file_send *f = calloc(1, sizeof *f);
    if (!f) {
        keng_http_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    f->req = r;
    f->fd = -1;
    f->ctype = ctype;
    memcpy(f->etag, q, sizeof f->etag);
    r->file = f;
    f->fs.data = f;
    if (uv_fs_open(r->c->srv->loop, &f->fs, path, O_RDONLY | O_CLOEXEC, 0, on_file_open) < 0) {
        file_done(f, 404);
    }
}
