/* Helpers of the fan-out tests: a temp store with messages and deliveries, fake peers started as
 * child processes (tests/fakes/NAME.py on 127.0.0.1 port 0), and an engine run on a private loop
 * that ends with uv_loop_close() == 0. Included by tests/unit/test_fanout*.c only. */
#ifndef KENG_TEST_FANOUT_UTIL_H
#define KENG_TEST_FANOUT_UTIL_H

#include "test.h"

#include "keng/fanout.h"
#include "keng/outbox.h"

#include <arpa/inet.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct fo_env {
    char dir[64];
    char db[128];
    keng_store *st;
    pid_t peers[4];
    int npeers;
    char logs[4][160];
} fo_env;

static void fo_env_init(fo_env *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/keng-fanout-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(e->dir));
    snprintf(e->db, sizeof e->db, "%s/keng.db", e->dir);
    ASSERT_EQ(keng_store_open(e->db, &e->st), 0);
}

static void fo_env_done(fo_env *e)
{
    for (int i = 0; i < e->npeers; i++) {
        kill(e->peers[i], SIGKILL);
        waitpid(e->peers[i], NULL, 0);
    }
    keng_store_close(e->st);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", e->dir);
#ifdef __SANITIZE_ADDRESS__
    /* The runner leaves each test with _exit, which skips LeakSanitizer: check here. */
    __lsan_do_leak_check();
#endif
}

/* The engine's config the tests start from: the file channel in the test's directory, 5 s
 * timeouts, the rest default. */
static keng_fanout_config base_cfg(fo_env *e)
{
    keng_fanout_config c;
    memset(&c, 0, sizeof c);
    c.data_dir = e->dir;
    c.timeout_ms = 5000;
    return c;
}

/* Starts tests/fakes/NAME.py --log DIR/NAME.log [extra args]; returns its port. */
static int fo_peer(fo_env *e, const char *name, const char *a1, const char *a2)
{
    ASSERT_LT(e->npeers, 4);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    char script[128];
    char log[160];
    snprintf(script, sizeof script, "tests/fakes/%s.py", name);
    snprintf(log, sizeof log, "%s/%s.log", e->dir, name);
    memcpy(e->logs[e->npeers], log, sizeof log);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assertion must not leave peers behind */
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        /* Debian's python3: it has python3-aiosmtpd for the SMTP sink. */
        execl("/usr/bin/python3", "python3", script, "--log", log, a1, a2, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[32] = {0};
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read(fds[0], line + n, 1);
        if (r <= 0 || line[n] == '\n') break;
        n++;
    }
    close(fds[0]);
    e->peers[e->npeers++] = pid;
    int port = (int)strtol(line, NULL, 10);
    ASSERT_GT(port, 0);
    return port;
}

/* A port nothing listens on: bound, read, closed. */
static int fo_dead_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ASSERT_EQ(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

static int64_t fo_message(fo_env *e, const char *alert, const char *event, const char *channel,
                          const char *link_kind, const char *text, const char *photos,
                          const char *subject, const char *note)
{
    sqlite3_stmt *s = keng_store_stmt(
        e->st, "INSERT INTO messages (alert_id, revision, event, lang, channel, link_kind, text,"
               " subject, html, alert_json, photos, note) VALUES (?1, 1, ?2, 'vi', ?3, ?4, ?5,"
               " ?6, '', ?7, ?8, ?9)");
    ASSERT_NOT_NULL(s);
    char alert_json[256];
    snprintf(alert_json, sizeof alert_json,
             "{\"id\":\"%s\",\"kind\":\"lost_elder\",\"person_name\":\"Nguyễn Văn A\","
             "\"revision\":1}",
             alert);
    sqlite3_bind_text(s, 1, alert, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, event, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, link_kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 6, subject ? subject : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 7, alert_json, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 8, photos ? photos : "[]", -1, SQLITE_TRANSIENT);
    if (note) sqlite3_bind_text(s, 9, note, -1, SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_reset(s);
    return sqlite3_last_insert_rowid(keng_store_db(e->st));
}

static int64_t fo_delivery(fo_env *e, const char *alert, const char *recipient, const char *channel,
                           const char *address, int64_t msg, const char *link_kind)
{
    sqlite3_stmt *s = keng_store_stmt(
        e->st, "INSERT INTO deliveries (alert_id, revision, event, recipient, channel, address,"
               " message_id, link_kind, idem_key, created_at) VALUES (?1, 1, 'alert', ?2, ?3,"
               " ?4, ?5, ?6, ?1 || '.1.' || ?2 || '.' || ?3, strftime('%s','now'))");
    ASSERT_NOT_NULL(s);
    sqlite3_bind_text(s, 1, alert, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, recipient, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, address, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 5, msg);
    sqlite3_bind_text(s, 6, link_kind, -1, SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_reset(s);
    int64_t id = sqlite3_last_insert_rowid(keng_store_db(e->st));
    ASSERT_EQ(keng_outbox_add_state(e->st, id, 0), 0);
    return id;
}

typedef struct fo_row {
    char status[16];
    int attempts, last_code, contact_index;
    int64_t next_at, delivered_at;
    char last_error[256];
    char channel[32], idem_key[160];
} fo_row;

static fo_row fo_get(fo_env *e, int64_t id)
{
    fo_row r;
    memset(&r, 0, sizeof r);
    sqlite3_stmt *s = keng_store_stmt(
        e->st, "SELECT status, attempts, IFNULL(last_code, 0), next_at, IFNULL(last_error, ''),"
               " IFNULL(delivered_at, 0), channel, idem_key, contact_index FROM deliveries"
               " JOIN delivery_state USING (id, alert_id) WHERE id = ?1");
    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_step(s) == SQLITE_ROW) {
        snprintf(r.status, sizeof r.status, "%s", keng_store_text(s, 0));
        r.attempts = sqlite3_column_int(s, 1);
        r.last_code = sqlite3_column_int(s, 2);
        r.next_at = sqlite3_column_int64(s, 3);
        snprintf(r.last_error, sizeof r.last_error, "%s", keng_store_text(s, 4));
        r.delivered_at = sqlite3_column_int64(s, 5);
        snprintf(r.channel, sizeof r.channel, "%s", keng_store_text(s, 6));
        snprintf(r.idem_key, sizeof r.idem_key, "%s", keng_store_text(s, 7));
        r.contact_index = sqlite3_column_int(s, 8);
    }
    sqlite3_reset(s);
    return r;
}

/* The integer a query returns (its first column of its first row). */
static int64_t q_count(fo_env *e, const char *sql)
{
    sqlite3_stmt *s;
    ASSERT_EQ(sqlite3_prepare_v2(keng_store_db(e->st), sql, -1, &s, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

static int fo_count(fo_env *e, const char *where)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM deliveries JOIN delivery_state USING (id, alert_id) WHERE %s",
             where);
    return (int)q_count(e, sql);
}

/* Reads a whole (small) file; the caller frees. NULL when missing. */
static char *fo_slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    keng_buf b;
    keng_buf_init(&b, 64u << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        if (keng_buf_append(&b, chunk, n)) break;
    fclose(fp);
    if (!b.data) return strdup("");
    return keng_buf_steal(&b);
}

static int fo_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; p && *p; p++)
        n += *p == '\n';
    return n;
}

/* The n-th (0-based) line of text parsed as JSON; the caller deletes. */
static cJSON *fo_line_json(const char *text, int n)
{
    const char *p = text;
    for (int i = 0; p && i < n; i++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (!p || !*p) return NULL;
    const char *end = strchr(p, '\n');
    return cJSON_ParseWithLength(p, end ? (size_t)(end - p) : strlen(p));
}

/* ---- running the engine on a private loop ---- */

typedef int (*fo_pred)(fo_env *e, void *arg);

typedef struct fo_run {
    fo_env *e;
    keng_fanout *f;
    fo_pred pred;
    void *arg;
    uv_timer_t check;
    uint64_t deadline;
    int met, stopped, done, changes;
    int grace_ms;
    keng_fanout_stats stats;
} fo_run;

static void fo_on_done(void *ud)
{
    ((fo_run *)ud)->done = 1;
}

static void fo_on_done_flag(void *ud)
{
    *(int *)ud = 1;
}

static void fo_on_change(void *ud, const char *alert_id)
{
    (void)alert_id;
    fo_run *r = ud;
    r->changes++;
}

static int fo_link(void *ud, struct keng_hmac_cache *macs, char kind, const char *alert_id,
                   const char *recipient, keng_buf *out)
{
    (void)ud, (void)macs;
    return keng_buf_printf(out, "http://keng.test/%c/%s-%s", kind, alert_id, recipient);
}

static void fo_check(uv_timer_t *t)
{
    fo_run *r = t->data;
    int met = r->pred(r->e, r->arg);
    if (!met && uv_now(t->loop) < r->deadline) return;
    r->met = met;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    keng_fanout_get_stats(r->f, &r->stats);
    r->stopped = 1;
    keng_fanout_stop(r->f, r->grace_ms, fo_on_done, r);
}

/* Default predicate: nothing due or in flight (all delivered, dead, or waiting for later). */
static int fo_idle(fo_env *e, void *arg)
{
    (void)arg;
    return fo_count(e, "status = 'inflight' OR (status = 'pending' AND next_at <= "
                       "strftime('%s','now'))") == 0;
}

/* Runs an engine with cfg until pred holds (checked every 10 ms) or timeout_ms; then stops it
 * and asserts the loop closes with no handle left. Returns whether pred held. */
static int fo_run_engine(fo_env *e, keng_fanout_config *cfg, fo_pred pred, void *arg,
                         int timeout_ms, fo_run *out)
{
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    fo_run r;
    memset(&r, 0, sizeof r);
    r.e = e;
    r.pred = pred ? pred : fo_idle;
    r.arg = arg;
    r.grace_ms = 200;
    cfg->on_change = fo_on_change;
    if (!cfg->link_url) cfg->link_url = fo_link;
    cfg->ud = &r;
    ASSERT_EQ(keng_fanout_new(&loop, e->st, cfg, &r.f), 0);
    keng_fanout_kick(r.f);
    ASSERT_EQ(uv_timer_init(&loop, &r.check), 0);
    r.check.data = &r;
    r.deadline = uv_now(&loop) + (uint64_t)timeout_ms;
    ASSERT_EQ(uv_timer_start(&r.check, fo_check, 10, 10), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT(r.stopped);
    ASSERT(r.done);
    keng_fanout_free(r.f);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    if (out) *out = r;
    return r.met;
}

static long fo_maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

#endif
