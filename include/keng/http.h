/* http: an HTTP/1.1 server on libuv and http-parser. It knows requests and responses and
 * nothing of alerts: keep-alive, pipelined requests answered in order (one request at a time
 * per connection; the parser is paused while a handler works), header and body limits, header,
 * body, send and idle timeouts, streaming request bodies, chunked and Server-Sent-Events
 * responses, files with Range and ETag, one access-log line per request. Loop thread only.
 *
 * Closing: a connection closes only once its queued answers are written (a connection with
 * bytes queued is not idle). After a client's half-close (EOF) every request that arrived whole
 * is still answered, in order, then the connection closes. Responses say "Connection: close"
 * during shutdown, and after a half-close when no further request is waiting.
 *
 * Ownership: the server owns connections and requests. A request handed to a handler stays
 * valid until the handler finishes it with one keng_http_respond*() call (or stream_end), even
 * if the client went away meanwhile (then the response is dropped). Strings returned by getters
 * are borrowed from the request. */
#ifndef KENG_HTTP_H
#define KENG_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "keng/buf.h"

struct cJSON;
typedef struct keng_http_server keng_http_server;
typedef struct keng_http_req keng_http_req;

typedef struct keng_http_limits {
    size_t max_header;     /* bytes of request line + headers: 16 KiB → 431 */
    size_t max_body;       /* default per request: 1 MiB → 413; routes may change it */
    int header_timeout_ms; /* from the first byte of a request to the end of its headers → 408 */
    int body_timeout_ms;   /* longest silence while a body is arriving → 408 */
    int idle_timeout_ms;   /* keep-alive connection with no request and nothing queued */
    int send_timeout_ms;   /* longest time queued response bytes may not move (a client that
                              does not read; streams too) before the cut; 0: no limit */
    int max_connections;   /* more are answered 503 and closed */
} keng_http_limits;

void keng_http_limits_default(keng_http_limits *l);

/* Called when a request's headers are complete. The handler may set the body policy with
 * keng_http_req_set_body_limit / set_body_stream, attach data, or respond at once (an early
 * rejection: the connection is then closed after the response, the body is not read). */
typedef void (*keng_http_headers_cb)(keng_http_req *req, void *ud);
/* Called when the body has arrived: the handler must respond (now or later). */
typedef void (*keng_http_request_cb)(keng_http_req *req, void *ud);
/* Streaming body: each piece as it arrives; return non-zero to abort with that HTTP status. */
typedef int (*keng_http_body_cb)(keng_http_req *req, const char *data, size_t len, void *ud);
/* Called when the client goes away before the handler finished the request. */
typedef void (*keng_http_close_cb)(keng_http_req *req, void *ud);

typedef struct keng_http_config {
    keng_http_limits limits;
    keng_http_headers_cb on_headers;
    keng_http_request_cb on_request;
    void *ud;
    int access_log; /* one line per request to the log */
} keng_http_config;

int keng_http_server_new(uv_loop_t *loop, const keng_http_config *cfg, keng_http_server **out);
/* addr "127.0.0.1:8080" (port 0 picks one). 0 or a negative errno. */
int keng_http_server_listen(keng_http_server *s, const char *addr);
int keng_http_server_port(keng_http_server *s);
/* Stops accepting, closes idle connections, lets in-flight requests finish; calls done once no
 * connection and no handle is left (at the latest after grace_ms, when the rest are cut). */
void keng_http_server_shutdown(keng_http_server *s, int grace_ms, void (*done)(void *), void *ud);
void keng_http_server_free(keng_http_server *s); /* after shutdown's done */
int keng_http_server_connections(keng_http_server *s);

/* Request accessors. */
const char *keng_http_req_method(const keng_http_req *r); /* "GET" */
const char *keng_http_req_path(const keng_http_req *r);   /* decoded? no: raw path, no query */
const char *keng_http_req_query(const keng_http_req *r);  /* raw query without '?', or "" */
const char *keng_http_req_header(const keng_http_req *r, const char *name); /* or NULL */
const char *keng_http_req_remote(const keng_http_req *r);
const char *keng_http_req_body(const keng_http_req *r, size_t *len); /* buffered body */
int64_t keng_http_req_content_length(const keng_http_req *r);        /* -1 when unknown */
uint64_t keng_http_req_id(const keng_http_req *r);
/* Copies the decoded value of query parameter name into out; 0, -ENOENT, or -E2BIG. */
int keng_http_query_param(const keng_http_req *r, const char *name, char *out, size_t outlen);
/* Percent-decoding of a path segment or form value ('+' as space when form != 0). */
int keng_http_urldecode(const char *in, size_t len, char *out, size_t outlen, int form);

void keng_http_req_set_body_limit(keng_http_req *r, size_t max);
void keng_http_req_set_body_stream(keng_http_req *r, keng_http_body_cb cb, void *ud);
void keng_http_req_on_close(keng_http_req *r, keng_http_close_cb cb, void *ud);
/* Attaches handler data; free_fn (may be NULL) runs when the request is over. */
void keng_http_req_set_data(keng_http_req *r, void *data, void (*free_fn)(void *));
void *keng_http_req_data(const keng_http_req *r);
/* A label for the access log and metrics (the route pattern), borrowed: pass a literal. */
void keng_http_req_set_label(keng_http_req *r, const char *label);
const char *keng_http_req_label(const keng_http_req *r);

/* Responses. Headers added before respond go out with it. respond copies body. */
void keng_http_add_header(keng_http_req *r, const char *name, const char *value);
void keng_http_respond(keng_http_req *r, int status, const char *ctype, const void *body,
                       size_t len);
void keng_http_respond_take(keng_http_req *r, int status, const char *ctype, char *body,
                            size_t len);
void keng_http_respond_json(keng_http_req *r, int status, struct cJSON *take);
void keng_http_respond_error(keng_http_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Serves a file with ETag / If-None-Match (304) and Range (206, 416), read through uv_fs. */
void keng_http_respond_file(keng_http_req *r, const char *path, const char *ctype,
                            const char *etag, const char *cache_control);
/* Chunked streaming response (SSE: ctype "text/event-stream"). write returns -EPIPE once the
 * client is gone. end finishes the request. */
int keng_http_stream_start(keng_http_req *r, int status, const char *ctype);
int keng_http_stream_write(keng_http_req *r, const void *data, size_t len);
void keng_http_stream_end(keng_http_req *r);
/* Bytes queued for the client but not yet written (for back-pressure on streams). */
size_t keng_http_req_pending_bytes(const keng_http_req *r);

const char *keng_http_status_text(int status);
/* Called once per finished request, for metrics (route label, status, microseconds). */
void keng_http_set_observer(keng_http_server *s,
                            void (*cb)(void *ud, const char *label, int status, uint64_t us),
                            void *ud);

#endif
