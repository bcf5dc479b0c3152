#include "e2e_util.h"
#include "keng/buf.h"

#include "test.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *bin_dir(void)
{
    const char *d = getenv("KENG_BIN_DIR");
    return d && *d ? d : "build";
}

void write_file(const char *path, const void *data, size_t len)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0700);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "wb");
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(fwrite(data, 1, len, f), len);
    fclose(f);
}

char *read_file_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static void spawn(kengd *k, const char *const *extra)
{
    char addr_path[512], log_path[512];
    snprintf(addr_path, sizeof addr_path, "%s/kengd.addr", k->dir);
    snprintf(log_path, sizeof log_path, "%s/kengd.log", k->dir);
    unlink(addr_path);
    const char *argv[64];
    int n = 0;
    char exe[512];
    snprintf(exe, sizeof exe, "%s/kengd", bin_dir());
    argv[n++] = exe;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--data";
    argv[n++] = k->dir;
    argv[n++] = "--groups";
    argv[n++] = k->groups;
    argv[n++] = "--templates";
    argv[n++] = "templates";
    argv[n++] = "--quiet-hours";
    argv[n++] = "off";
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        /* If the test dies on a failed assertion, kengd goes with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=23", 1);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    k->pid = pid;
    long long t0 = now_ms();
    while (now_ms() - t0 < 15000) {
        size_t len;
        char *a = read_file_all(addr_path, &len);
        if (a) {
            char *colon = strrchr(a, ':');
            k->port = colon ? atoi(colon + 1) : 0;
            free(a);
            if (k->port > 0) break;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            char *log = read_file_all(log_path, NULL);
            TEST_FAIL("kengd exited at start: %s", log ? log : "(no log)");
        }
        usleep(20000);
    }
    ASSERT_GT(k->port, 0);
    snprintf(k->url, sizeof k->url, "http://127.0.0.1:%d", k->port);
    char tok_path[512];
    snprintf(tok_path, sizeof tok_path, "%s/admin.token", k->dir);
    char *t = read_file_all(tok_path, NULL);
    ASSERT_NOT_NULL(t);
    t[strcspn(t, "\n")] = '\0';
    snprintf(k->token, sizeof k->token, "%s", t);
    free(t);
}

void kengd_start(kengd *k, const char *groups_dir, const char *const *extra)
{
    memset(k, 0, sizeof *k);
    snprintf(k->dir, sizeof k->dir, "/tmp/keng-e2e-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(k->dir));
    snprintf(k->groups, sizeof k->groups, "%s", groups_dir ? groups_dir : "groups");
    spawn(k, extra);
}

void kengd_restart(kengd *k, const char *const *extra)
{
    spawn(k, extra);
}

static int wait_exit(pid_t pid, int timeout_ms, int *status)
{
    long long t0 = now_ms();
    while (now_ms() - t0 < timeout_ms) {
        if (waitpid(pid, status, WNOHANG) == pid) return 0;
        usleep(10000);
    }
    return -1;
}

void kengd_stop(kengd *k)
{
    if (k->pid <= 0) return;
    kill(k->pid, SIGTERM);
    int st = 0;
    if (wait_exit(k->pid, 15000, &st)) {
        kill(k->pid, SIGKILL);
        waitpid(k->pid, &st, 0);
        k->pid = 0;
        TEST_FAIL("kengd did not stop within 15 s of SIGTERM");
    }
    k->pid = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char log_path[512];
        snprintf(log_path, sizeof log_path, "%s/kengd.log", k->dir);
        char *log = read_file_all(log_path, NULL);
        size_t n = log ? strlen(log) : 0;
        TEST_FAIL("kengd exit status %d (signal %d); log tail:\n%s",
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0,
                  log ? log + (n > 6000 ? n - 6000 : 0) : "");
    }
}

void kengd_kill9(kengd *k)
{
    if (k->pid <= 0) return;
    kill(k->pid, SIGKILL);
    int st;
    waitpid(k->pid, &st, 0);
    k->pid = 0;
}

void rm_rf(const char *dir)
{
    ASSERT(strncmp(dir, "/tmp/keng-", 10) == 0 && !strchr(dir, '\''));
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

void kengd_cleanup(kengd *k)
{
    if (k->pid > 0) kengd_kill9(k);
    rm_rf(k->dir);
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    resp *r = ud;
    size_t len = sz * n;
    char *nb = realloc(r->body, r->len + len + 1);
    if (!nb) return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    resp *r = ud;
    size_t len = sz * n, have = strlen(r->headers);
    if (have + len < sizeof r->headers) {
        memcpy(r->headers + have, p, len);
        r->headers[have + len] = '\0';
    }
    return len;
}

void http(kengd *k, const char *method, const char *path, const char *token, const char *ctype,
          const void *body, size_t len, resp *r)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    ASSERT_NOT_NULL(c);
    char url[4096], auth[256], ct[256];
    snprintf(url, sizeof url, "%s%s", k->url, path);
    struct curl_slist *h = NULL;
    const char *tok = token ? token : k->token;
    if (*tok) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
        h = curl_slist_append(h, auth);
    }
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        h = curl_slist_append(h, ct);
    }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD")) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) TEST_FAIL("%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body) r->json = cJSON_Parse(r->body);
}

void http_json(kengd *k, const char *method, const char *path, const char *json, resp *r)
{
    http(k, method, path, NULL, json ? "application/json" : NULL, json, json ? strlen(json) : 0, r);
}

void resp_free(resp *r)
{
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

const char *resp_header(const resp *r, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = r->headers; *p;) {
        const char *eol = strstr(p, "\r\n");
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(out, outlen, "%.*s", (int)(ll - (size_t)(v - p)), v);
        }
        p += ll + (eol ? 2 : 0);
    }
    return out;
}

int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

size_t tcp_read_all(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    long long t0 = now_ms();
    while (n + 1 < cap) {
        long long left = timeout_ms - (now_ms() - t0);
        if (left <= 0) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0) break;
        ssize_t got = read(fd, buf + n, cap - n - 1);
        if (got <= 0) break;
        n += (size_t)got;
    }
    buf[n] = '\0';
    return n;
}

const cJSON *jget(const cJSON *root, const char *path)
{
    const cJSON *cur = root;
    char key[128];
    while (cur && *path) {
        if (*path == '.') path++;
        if (*path == '[') {
            int idx = atoi(path + 1);
            cur = cJSON_GetArrayItem(cur, idx);
            path = strchr(path, ']');
            if (!path) return NULL;
            path++;
            continue;
        }
        size_t n = strcspn(path, ".[");
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        cur = cJSON_GetObjectItemCaseSensitive(cur, key);
        path += n;
    }
    return cur;
}

const char *jstr(const cJSON *root, const char *path)
{
    return cJSON_GetStringValue(jget(root, path));
}

double jnum(const cJSON *root, const char *path)
{
    const cJSON *v = jget(root, path);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

void fake_start(fake *f, const char *name, const char *dir, const char *const *args)
{
    memset(f, 0, sizeof *f);
    snprintf(f->log, sizeof f->log, "%s/%s.log", dir, name);
    char script[256];
    snprintf(script, sizeof script, "tests/fakes/%s.py", name);
    int pfd[2];
    ASSERT_EQ(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        const char *argv[32];
        int n = 0;
        argv[n++] = "/usr/bin/python3";
        argv[n++] = script;
        argv[n++] = "--log";
        argv[n++] = f->log;
        for (int i = 0; args && args[i] && n < 30; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    f->pid = pid;
    /* The fake prints its port on the first line. */
    char line[64];
    size_t n = 0;
    long long t0 = now_ms();
    while (n + 1 < sizeof line && now_ms() - t0 < 10000) {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) continue;
        if (read(pfd[0], line + n, 1) != 1) break;
        if (line[n] == '\n') break;
        n++;
    }
    line[n] = '\0';
    close(pfd[0]);
    f->port = atoi(line);
    ASSERT_GT(f->port, 0);
}

void fake_stop(fake *f)
{
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        int st;
        if (wait_exit(f->pid, 3000, &st)) {
            kill(f->pid, SIGKILL);
            waitpid(f->pid, &st, 0);
        }
        f->pid = 0;
    }
}

cJSON *fake_log(const fake *f)
{
    cJSON *arr = cJSON_CreateArray();
    size_t len;
    char *s = read_file_all(f->log, &len);
    if (!s) return arr;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        if (j) cJSON_AddItemToArray(arr, j);
    }
    free(s);
    return arr;
}

unsigned char *make_jpeg(int w, int h, size_t *len)
{
    unsigned char *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (unsigned char)(x * 255 / w);
            p[1] = (unsigned char)(y * 255 / h);
            p[2] = (unsigned char)((x + y) & 255);
        }
    tjhandle t = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jl = 0;
    ASSERT_EQ(tjCompress2(t, rgb, w, 0, h, TJPF_RGB, &jpeg, &jl, TJSAMP_420, 90, 0), 0);
    tjDestroy(t);
    free(rgb);
    unsigned char *out = malloc(jl);
    memcpy(out, jpeg, jl);
    tjFree(jpeg);
    *len = jl;
    return out;
}

int wait_for(int (*fn)(void *), void *ud, int timeout_ms)
{
    long long t0 = now_ms();
    int v;
    while (!(v = fn(ud)) && now_ms() - t0 < timeout_ms)
        usleep(50000);
    return v;
}

int db_integrity_ok(const char *dir, char *why, size_t whylen)
{
    char path[600];
    snprintf(path, sizeof path, "%s/keng.db", dir);
    snprintf(why, whylen, "?");
    sqlite3 *db = NULL;
    /* Read-write: after kill -9 the WAL must be recovered, as kengd itself would on restart. */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        snprintf(why, whylen, "open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return 0;
    }
    sqlite3_stmt *s = NULL;
    int ok = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK) {
        snprintf(why, whylen, "integrity_check: %s", sqlite3_errmsg(db));
    } else {
        size_t n = 0;
        why[0] = '\0';
        int rows = 0, rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            rows++;
            if (n < whylen)
                n += (size_t)snprintf(why + n, whylen - n, "%s%s", n ? "; " : "", t ? t : "");
        }
        if (rc != SQLITE_DONE)
            snprintf(why, whylen, "integrity_check: %s", sqlite3_errmsg(db));
        else
            ok = rows == 1 && strcmp(why, "ok") == 0;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return ok;
}

/* ---- a ward as group files ---- */

void ward_group_begin(keng_buf *b, const char *gid, const char *relay, const char *leader,
                      const char *extra)
{
    keng_buf_init(b, 0);
    int rc = keng_buf_printf(b,
                             "{\"id\":\"%s\",\"name\":\"Tổ %s\",\"kind\":\"inter_household\","
                             "\"relay\":\"%s\"",
                             gid, gid, relay);
    if (leader) rc |= keng_buf_printf(b, ",\"leader\":\"%s\"", leader);
    if (extra) rc |= keng_buf_puts(b, extra);
    rc |= keng_buf_puts(b, ",\"members\":[");
    ASSERT_EQ(rc, 0);
}

static void ward_sep(keng_buf *b)
{
    if (b->data[b->len - 1] != '[') ASSERT_EQ(keng_buf_puts(b, ","), 0);
}

void ward_member(keng_buf *b, const char *id, const char *contacts)
{
    ward_sep(b);
    ASSERT_EQ(
        keng_buf_printf(b, "{\"id\":\"%s\",\"name\":\"Hộ %s\",\"contacts\":%s}", id, id, contacts),
        0);
}

void ward_member_ref(keng_buf *b, const char *id)
{
    ward_sep(b);
    ASSERT_EQ(keng_buf_printf(b, "\"%s\"", id), 0);
}

void ward_group_end(keng_buf *b, const char *dir, const char *gid)
{
    ASSERT_EQ(keng_buf_puts(b, "]}"), 0);
    char p[512];
    snprintf(p, sizeof p, "%s/%s.json", dir, gid);
    write_file(p, b->data, b->len);
    keng_buf_free(b);
}

int assert_each_once_but_inflight(const cJSON *log, const char *alert_id, int n,
                                  const cJSON *inflight)
{
    cJSON *per_key = cJSON_CreateObject();
    char prefix[160];
    snprintf(prefix, sizeof prefix, "%s.", alert_id);
    for (const cJSON *e = log->child; e; e = e->next) {
        const char *key = jstr(e, "key");
        if (!key || strncmp(key, prefix, strlen(prefix)) != 0)
            TEST_FAIL("a request with key %s", key ? key : "(none)");
        if (!cJSON_IsTrue(jget(e, "sig_ok"))) TEST_FAIL("bad signature on %s", key);
        cJSON *c = cJSON_GetObjectItemCaseSensitive(per_key, key);
        if (c)
            cJSON_SetNumberValue(c, c->valuedouble + 1);
        else
            cJSON_AddNumberToObject(per_key, key, 1);
    }
    ASSERT_EQ(cJSON_GetArraySize(per_key), n);
    int repeats = 0;
    for (const cJSON *c = per_key->child; c; c = c->next) {
        if (c->valuedouble <= 1) continue;
        if (!cJSON_GetObjectItemCaseSensitive(inflight, c->string))
            TEST_FAIL("%s was sent %.0f times but was not in flight at the kill", c->string,
                      c->valuedouble);
        if (c->valuedouble > 2)
            TEST_FAIL("%s was sent %.0f times across one kill", c->string, c->valuedouble);
        repeats++;
    }
    cJSON_Delete(per_key);
    return repeats;
}

cJSON *alert_deliveries(kengd *k, const char *alert, const char *query)
{
    char p[512];
    snprintf(p, sizeof p, "/v1/alerts/%s/deliveries%s%s", alert, query ? "?" : "",
             query ? query : "");
    resp r;
    http(k, "GET", p, NULL, NULL, NULL, 0, &r);
    if (r.status != 200) TEST_FAIL("GET %s: %ld %s", p, r.status, r.body);
    cJSON *j = r.json;
    r.json = NULL;
    resp_free(&r);
    ASSERT_NOT_NULL(j);
    return j;
}

long long quiet_window_around_now(char flag[32])
{
    long long local = (long long)time(NULL) + 7 * 3600;
    int m = (int)(local % 86400 / 60);
    int from = (m + 1440 - 60) % 1440, to = (m + 60) % 1440;
    snprintf(flag, 32, "%02d:%02d-%02d:%02d", from / 60, from % 60, to / 60, to % 60);
    long long end_local = local - local % 86400 + to * 60;
    if (end_local <= local) end_local += 86400;
    return end_local - 7 * 3600;
}
