/* cli: the `keng` command-line client — shared state, argument parsing, the HTTP helper (one
 * libcurl easy handle per process) and output helpers used by the command files (cmd_*.c).
 * Owns the process's CURL handle, the resolved base URL and token. Single-threaded: everything
 * runs on the main thread of the short-lived keng process.
 *
 * Exit codes: 0 success, 1 the server (or a local file) said no, 2 kengd unreachable,
 * 64 usage error (EX_USAGE). Commands return one of these; main() exits with it. */
#ifndef KENG_CLI_H
#define KENG_CLI_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "keng/buf.h"

#define KENG_CLI_OK 0
#define KENG_CLI_FAIL 1
#define KENG_CLI_UNREACHABLE 2
#define KENG_CLI_USAGE 64

#define KENG_CLI_MAX_RESPONSE (64u << 20) /* bytes of one HTTP response body */
#define KENG_CLI_MAX_FILE (256u << 20)    /* bytes of a local file we upload or read */
#define KENG_CLI_CONNECT_TIMEOUT 5L       /* seconds */
#define KENG_CLI_TIMEOUT 300L             /* seconds for a whole ordinary request */
#define KENG_CLI_DEFAULT_URL "http://127.0.0.1:8080"
#define KENG_CLI_PAGE 1000 /* items per page when following pagination */

typedef struct keng_cli {
    /* Flags win over the environment, which wins over the config file. */
    char *flag_url, *flag_token;
    int json;     /* --json: print the server's JSON as is */
    int resolved; /* url and token below are final */
    char *url;    /* base URL without a trailing '/' */
    char *token;  /* may be NULL: the request then goes without Authorization */
    void *curl;   /* CURL *, created on first request */
    /* The request's fields came from flags (alert new|update, members add): a field kengd
     * refuses is named with its flag too. */
    int fields_are_flags;
} keng_cli;

void keng_cli_free(keng_cli *c);

/* Sets the token from the first line of a file; prints the reason and returns KENG_CLI_FAIL
 * when it cannot be read. */
int keng_cli_token_file(keng_cli *c, const char *path);

/* ---- arguments ---- */

typedef struct keng_cli_opt {
    const char *name; /* without the leading "--" */
    const char *val;  /* NULL for a boolean flag given without "=value" */
} keng_cli_opt;

typedef struct keng_cli_args {
    keng_cli_opt *opt;
    int nopt;
    char **pos; /* positional arguments, borrowed from argv */
    int npos;
    int help; /* --help or -h was given */
} keng_cli_args;

/* Splits argv into options and positionals. Every "--name" takes the next word as its value,
 * except the names in bools (NULL-terminated, may be NULL), which take a value only in the
 * "--name=value" form. The common flags (--json, --token, --token-file, and --url unless
 * url_is_field) are applied to c and not returned. "--" ends options. Prints the problem and
 * returns KENG_CLI_USAGE or KENG_CLI_FAIL on error. */
int keng_cli_args_parse(keng_cli *c, int argc, char **argv, const char *const *bools,
                        int url_is_field, keng_cli_args *a);
void keng_cli_args_free(keng_cli_args *a);
/* Names the first option not in known (NULL-terminated), or the first positional beyond
 * max_pos, on stderr; returns KENG_CLI_USAGE, or 0. */
int keng_cli_args_check(const keng_cli_args *a, const char *const *known, int max_pos);
/* The last value of --name, or NULL. */
const char *keng_cli_args_get(const keng_cli_args *a, const char *name);
/* 1 if --name was given at all. */
int keng_cli_args_has(const keng_cli_args *a, const char *name);

/* Prints text to stdout (help) or "keng: msg" and text to stderr (usage error). */
int keng_cli_usage(const char *text, int to_stdout);
/* What keng tells a person on stderr is Vietnamese first, English second — the officer who
 * reads it at 2 a.m. may stop after the first half — in one shape: "keng: VI / EN", then, for
 * what needs no translation (a path, an id, a flag, a reason from the system), ": DETAIL". */
int keng_cli_say(const char *vi, const char *en); /* returns KENG_CLI_FAIL */
void keng_cli_sayf(const char *vi, const char *en, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* keng_cli_sayf, then returns KENG_CLI_FAIL. */
int keng_cli_fail(const char *vi, const char *en, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "keng: hết bộ nhớ / out of memory"; returns KENG_CLI_FAIL. */
int keng_cli_nomem(void);

/* ---- HTTP ---- */

typedef struct keng_cli_reply {
    long status;
    keng_buf raw;
    cJSON *json; /* parsed body when it is JSON, else NULL */
} keng_cli_reply;

void keng_cli_reply_free(keng_cli_reply *r);

/* One request to kengd. path is appended to the base URL (already escaped; see
 * keng_cli_buf_esc). body may be NULL. Returns KENG_CLI_OK for a 2xx reply (r filled);
 * otherwise prints the server's error (or the transport problem) and returns KENG_CLI_FAIL or
 * KENG_CLI_UNREACHABLE, r still filled with whatever arrived. quiet_status: a status that is
 * returned as KENG_CLI_FAIL without printing (e.g. 404 when the caller falls back), or 0. */
int keng_cli_request(keng_cli *c, const char *method, const char *path, const char *ctype,
                     const void *body, size_t len, long quiet_status, keng_cli_reply *r);
/* A request with a JSON body (NULL for none); the body is not consumed. */
int keng_cli_request_json(keng_cli *c, const char *method, const char *path, const cJSON *body,
                          keng_cli_reply *r);

/* GETs path (which may hold a query) page by page (limit=KENG_CLI_PAGE&offset=…) until every
 * item arrived; *out gets {"items":[…],"total":n,"limit":n,"offset":0}. Returns like
 * keng_cli_request. */
int keng_cli_get_all(keng_cli *c, const char *path, cJSON **out);
/* Prints a JSON value compactly on one line (the --json output of merged results). */
void keng_cli_print_json(const cJSON *j);

/* Streams a GET (Server-Sent Events). on_data is called with each event's data (all its
 * "data:" lines joined by '\n'); returning non-zero stops the stream, and that value is
 * returned. Returns 0 when the server closed the stream, KENG_CLI_FAIL with *status set for
 * a non-2xx answer (the error body is not printed when status == quiet_status), or
 * KENG_CLI_UNREACHABLE. */
int keng_cli_stream(keng_cli *c, const char *path, long quiet_status, long *status,
                    int (*on_data)(void *ud, const char *data, size_t len), void *ud);

/* Appends s percent-encoded for a path segment or query value. */
int keng_cli_buf_esc(keng_buf *b, const char *s);
/* Appends "?name=value" or "&name=value" (escaped) when value is not NULL. */
int keng_cli_buf_query(keng_buf *b, const char *name, const char *value);
/* path, then one query parameter per option of names (NULL-terminated) that a gives. */
int keng_cli_buf_path_query(keng_buf *b, const char *path, const keng_cli_args *a,
                            const char *const *names);

/* ---- files ---- */

/* Reads a whole file (at most max bytes) into b; prints the reason and returns KENG_CLI_FAIL. */
int keng_cli_read_file(const char *path, size_t max, keng_buf *b);
/* Parses a JSON file; on a syntax error names the line. NULL after printing the problem. */
cJSON *keng_cli_read_json(const char *path);

/* ---- output ---- */

/* Prints the reply body as is (with a final newline) — the --json output. */
void keng_cli_print_raw(const keng_cli_reply *r);

/* A table of text cells, printed with columns aligned by UTF-8 code points. */
typedef struct keng_cli_table {
    int ncol;
    int nrow;
    int cap;
    char **cells; /* nrow * ncol, owned */
} keng_cli_table;

void keng_cli_table_init(keng_cli_table *t, int ncol, const char *const *header);
/* Adds a row of ncol cells (NULL prints as empty); each is copied. */
void keng_cli_table_row(keng_cli_table *t, const char *const *cells);
void keng_cli_table_print(keng_cli_table *t); /* prints and frees */

/* Text of a JSON value for a table cell or a "key: value" line (strings as is, numbers without
 * a trailing ".0", booleans "có / yes" or "không / no", arrays of scalars joined by ", ", anything
 * else as compact JSON). Writes into out (truncated to len). */
const char *keng_cli_value_text(const cJSON *v, char *out, size_t len);
/* "key: value" lines for every non-null member of obj except the names in skip (NULL-terminated,
 * may be NULL). */
void keng_cli_print_fields(const cJSON *obj, const char *const *skip);
/* A string member of obj, or "" */
const char *keng_cli_str(const cJSON *obj, const char *name);
/* The line that names an alert in a list: its title, else its kind's key fields. */
void keng_cli_alert_summary(const cJSON *a, char *out, size_t len);
/* A numeric member of obj, or def. */
double keng_cli_num(const cJSON *obj, const char *name, double def);

/* ---- commands: argv starts after the command word ---- */

int keng_cli_cmd_groups(keng_cli *c, int argc, char **argv);
int keng_cli_cmd_members(keng_cli *c, int argc, char **argv);
int keng_cli_cmd_alert(keng_cli *c, int argc, char **argv);
int keng_cli_cmd_alert_watch(keng_cli *c, const char *id);
int keng_cli_cmd_token(keng_cli *c, int argc, char **argv);
int keng_cli_cmd_render(keng_cli *c, int argc, char **argv);
int keng_cli_cmd_health(keng_cli *c, int argc, char **argv);
int keng_cli_cmd_lookup(keng_cli *c, int argc, char **argv);
int keng_cli_cmd_audit(keng_cli *c, int argc, char **argv);

#endif
