/* End-to-end test helpers: start kengd on 127.0.0.1 (a port it picks) with a temporary data
 * directory, talk HTTP to it with libcurl or a raw socket, start fake peers, stop it all. */
#ifndef KENG_E2E_UTIL_H
#define KENG_E2E_UTIL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct kengd {
    pid_t pid;
    int port;
    char dir[256];  /* temporary data directory */
    char url[64];   /* http://127.0.0.1:PORT */
    char token[64]; /* the admin token */
    char groups[512];
} kengd;

typedef struct resp {
    long status;
    char *body;
    size_t len;
    char headers[8192];
    cJSON *json; /* parsed body, when it is JSON */
} resp;

/* Starts kengd; groups_dir NULL = the example ward; extra: NULL-terminated extra flags. */
void kengd_start(kengd *k, const char *groups_dir, const char *const *extra);
/* Restarts on the same data directory (and port 0 again). */
void kengd_restart(kengd *k, const char *const *extra);
/* SIGTERM and wait; asserts a clean exit (status 0: no leak under ASan). Keeps the dir. */
void kengd_stop(kengd *k);
void kengd_kill9(kengd *k);
/* Removes the data directory. */
void kengd_cleanup(kengd *k);

/* An HTTP request; token NULL = the admin token, "" = none. */
void http(kengd *k, const char *method, const char *path, const char *token, const char *ctype,
          const void *body, size_t len, resp *r);
void http_json(kengd *k, const char *method, const char *path, const char *json, resp *r);
void resp_free(resp *r);
/* A header value of the response (case-insensitive name), or "" */
const char *resp_header(const resp *r, const char *name, char *out, size_t outlen);

/* Raw TCP to kengd. */
int tcp_connect(int port);
/* Reads until the peer closes or timeout_ms passes; returns bytes read. */
size_t tcp_read_all(int fd, char *buf, size_t cap, int timeout_ms);

/* JSON path lookup "a.b[2].c"; NULL when absent. */
const cJSON *jget(const cJSON *root, const char *path);
const char *jstr(const cJSON *root, const char *path);
double jnum(const cJSON *root, const char *path);

/* A fake peer (tests/fakes/NAME.py) on 127.0.0.1 port 0; its JSON-lines log in dir/NAME.log. */
typedef struct fake {
    pid_t pid;
    int port;
    char log[512];
} fake;
void fake_start(fake *f, const char *name, const char *dir, const char *const *args);
void fake_stop(fake *f);
/* The fake's log lines as a JSON array. */
cJSON *fake_log(const fake *f);

/* Removes a temporary directory of a test (only under /tmp/keng-). */
void rm_rf(const char *dir);
/* Writes a file (mkdir -p of its directory). */
void write_file(const char *path, const void *data, size_t len);
char *read_file_all(const char *path, size_t *len);
/* A small valid JPEG (w x h, a gradient) made with TurboJPEG; free() it. */
unsigned char *make_jpeg(int w, int h, size_t *len);
/* Polls fn(ud) every 50 ms until it returns non-zero or timeout_ms passes; returns its value. */
int wait_for(int (*fn)(void *), void *ud, int timeout_ms);
long long now_ms(void);
/* PRAGMA integrity_check of DIR/keng.db through libsqlite3 (kengd stopped or killed): 1 when
 * SQLite answers "ok", else 0 with what it answered (or why it could not open) in why. */
int db_integrity_ok(const char *dir, char *why, size_t whylen);

/* GET /v1/alerts/ALERT/deliveries[?query] with the admin token: the answer's JSON (counts,
 * reach, items, total; cJSON_Delete it); fails the test on anything but 200. */
cJSON *alert_deliveries(kengd *k, const char *alert, const char *query);

/* The receiver's log after a kill -9 and a restart (at-least-once): every request signed and
 * keyed "ALERT_ID.…"; n distinct keys; a key sent twice only when inflight (an object whose
 * names are keys) has it, never three times. Returns the repeats. */
int assert_each_once_but_inflight(const cJSON *log, const char *alert_id, int n,
                                  const cJSON *inflight);

/* A ward as group files (groups/README.md): ward_group_begin, members, ward_group_end writes
 * DIR/GID.json. leader (may be NULL) is the group's leader; extra (may be NULL) more members of
 * the group object, e.g. ",\"channels\":[...]". */
struct keng_buf;
void ward_group_begin(struct keng_buf *b, const char *gid, const char *relay, const char *leader,
                      const char *extra);
/* A member defined in this group, reached by contacts (a JSON array). */
void ward_member(struct keng_buf *b, const char *id, const char *contacts);
/* A member defined in another group's file, by id. */
void ward_member_ref(struct keng_buf *b, const char *id);
void ward_group_end(struct keng_buf *b, const char *dir, const char *gid);

/* A --quiet-hours value (into flag, 32 bytes) from an hour ago to an hour ahead in kengd's time
 * (UTC+7, no DST): now is inside it at any hour, across midnight too. Returns when it ends (unix
 * seconds); the ward's local time of that is the return value + 7 × 3600. */
long long quiet_window_around_now(char flag[32]);

#endif
