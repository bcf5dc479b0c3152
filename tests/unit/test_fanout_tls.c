/* Fan-out to a webhook receiver over TLS that offers HTTP/2 (nginx on 127.0.0.1, started by the
 * test with a certificate the test makes): the deliveries go as HTTP/2 streams over one
 * connection, the certificate is checked against the configured CA file, and a receiver the CA
 * file does not vouch for gets nothing. */
/* Not every helper of the shared header is used here. */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "test_fanout_util.h"

#include "keng/channel.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#define NGINX "/usr/sbin/nginx"

/* A self-signed certificate for IP 127.0.0.1 (subjectAltName, as curl checks it) and its key,
 * written as PEM to dir/cert.pem and dir/key.pem. */
static void make_cert(const char *dir)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    ASSERT_NOT_NULL(key);
    X509 *x = X509_new();
    ASSERT_NOT_NULL(x);
    ASSERT(X509_set_version(x, 2));
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
    ASSERT(X509_set_pubkey(x, key));
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"keng-test", -1, -1,
                               0);
    ASSERT(X509_set_issuer_name(x, name));
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    const char *exts[][2] = {{"subjectAltName", "IP:127.0.0.1"},
                             {"basicConstraints", "critical,CA:TRUE"},
                             {"keyUsage", "critical,digitalSignature,keyCertSign"}};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *ext = X509V3_EXT_nconf(NULL, &ctx, exts[i][0], exts[i][1]);
        ASSERT_NOT_NULL(ext);
        ASSERT(X509_add_ext(x, ext, -1));
        X509_EXTENSION_free(ext);
    }
    ASSERT(X509_sign(x, key, EVP_sha256()));
    char path[160];
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    FILE *fp = fopen(path, "w");
    ASSERT_NOT_NULL(fp);
    ASSERT(PEM_write_X509(fp, x));
    fclose(fp);
    snprintf(path, sizeof path, "%s/key.pem", dir);
    fp = fopen(path, "w");
    ASSERT_NOT_NULL(fp);
    ASSERT(PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL));
    fclose(fp);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* Until something accepts on 127.0.0.1:port (5 s at most). */
static int wait_listening(int port)
{
    for (int i = 0; i < 500; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
        close(s);
        if (ok) return 1;
        usleep(10 * 1000);
    }
    return 0;
}

/* nginx in one process (no workers left behind if the test dies: PDEATHSIG) on 127.0.0.1 with
 * TLS and HTTP/2, answering 204; each request logged as "PROTOCOL CONNECTION KEY BODY_BYTES" in
 * e->dir/nginx/access.log (e->logs). read_body: it reads the whole request body first, as a
 * receiving application does (the mirror module reads it before the answer); else it answers
 * at once and resets the stream of a body it did not read (RFC 9113 §8.1). Returns its port. */
static int nginx_h2(fo_env *e, int read_body)
{
    ASSERT_EQ(access(NGINX, X_OK), 0); /* Debian's nginx-light: `make deps` installs it */
    ASSERT_LT(e->npeers, 4);
    char prefix[128], conf[160];
    snprintf(prefix, sizeof prefix, "%s/nginx", e->dir);
    ASSERT_EQ(mkdir(prefix, 0700), 0);
    make_cert(e->dir);
    int port = fo_dead_port();
    snprintf(conf, sizeof conf, "%s/nginx.conf", prefix);
    FILE *fp = fopen(conf, "w");
    ASSERT_NOT_NULL(fp);
    fprintf(fp,
            "master_process off;\ndaemon off;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "  log_format k '$server_protocol $connection $http_idempotency_key $request_length';\n"
            "  access_log %s/access.log k;\n"
            "  client_body_buffer_size 64k;\n"
            "  server {\n"
            "    listen 127.0.0.1:%d ssl http2;\n"
            "    ssl_certificate %s/cert.pem;\n"
            "    ssl_certificate_key %s/key.pem;\n"
            "    location / { %s return 204; }\n"
            "    location = /read { internal; return 204; }\n"
            "  }\n"
            "}\n",
            prefix, prefix, prefix, port, e->dir, e->dir,
            read_body ? "mirror /read; mirror_request_body on;" : "");
    fclose(fp);
    snprintf(e->logs[e->npeers], sizeof e->logs[0], "%s/access.log", prefix);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(NGINX, "nginx", "-p", prefix, "-c", conf, "-e", "stderr", (char *)NULL);
        _exit(127);
    }
    e->peers[e->npeers++] = pid;
    ASSERT(wait_listening(port));
    return port;
}

static int64_t https_rows(fo_env *e, int port, int n)
{
    int64_t m = fo_message(e, "A1", "alert", "webhook", "r", "Tìm người đi lạc", NULL, NULL, NULL);
    char addr[160];
    snprintf(addr, sizeof addr, "{\"type\":\"webhook\",\"url\":\"https://127.0.0.1:%d/hook\"}",
             port);
    int64_t first = 0;
    for (int i = 0; i < n; i++) {
        char rec[16];
        snprintf(rec, sizeof rec, "hh-%d", i);
        int64_t id = fo_delivery(e, "A1", rec, "webhook", addr, m, "r");
        if (!first) first = id;
    }
    return first;
}

/* The engine's config for these tests: webhook certificates checked against the test's own
 * (ca: 160 bytes, holds its path), short timeouts and retries. */
static keng_fanout_config tls_cfg(fo_env *e, char *ca)
{
    keng_fanout_config c = base_cfg(e);
    c.timeout_ms = 3000; /* this libcurl may wait for the end of a stream reset early */
    c.backoff_base_ms = 100;
    snprintf(ca, 160, "%s/cert.pem", e->dir);
    c.webhook_ca_file = ca;
    return c;
}

static int all_delivered(fo_env *e, void *arg)
{
    return fo_count(e, "status = 'delivered'") == *(int *)arg;
}

/* n deliveries to an HTTP/2 receiver over TLS, checked against the CA file: every one
 * delivered, each key received (more than once only for a retried row: at least once), every
 * request HTTP/2, and on one connection or very few (the transfers wait for the first one's ALPN
 * answer instead of each opening its own: without that, 40-64 of them). Debian's libcurl 7.88
 * now and then ends an HTTP/2 POST to nginx with a stream error, before the answer (a retry) or
 * after it (the status decides), or waits until the timeout: `curl --http2 --parallel` does the
 * same. */
static void h2_fanout(fo_env *e, int read_body, int n)
{
    int port = nginx_h2(e, read_body);
    https_rows(e, port, n);
    char ca[160];
    keng_fanout_config c = tls_cfg(e, ca);
    fo_run run;
    ASSERT(fo_run_engine(e, &c, all_delivered, &n, 20000, &run));
    ASSERT_EQ(fo_count(e, "status = 'delivered' AND last_code = 204"), n);
    int retries = (int)q_count(e, "SELECT SUM(attempts - 1) FROM delivery_state");
    ASSERT_LT(retries, n / 10);
    char *log = fo_slurp(e->logs[0]);
    ASSERT_NOT_NULL(log);
    ASSERT(fo_lines(log) >= n && fo_lines(log) <= n + retries);
    char conns[4][32] = {{0}};
    int nconns = 0, distinct = 0;
    char *seen = calloc((size_t)n, 1);
    ASSERT_NOT_NULL(seen);
    for (const char *line = log; *line;) {
        const char *end = strchr(line, '\n');
        ASSERT_NOT_NULL(end);
        char proto[16], conn[32], key[64];
        long len = 0;
        ASSERT_EQ(sscanf(line, "%15s %31s %63s %ld", proto, conn, key, &len), 4);
        ASSERT_STR_EQ(proto, "HTTP/2.0");
        int known = 0;
        for (int i = 0; i < nconns && !known; i++)
            known = strcmp(conns[i], conn) == 0;
        if (!known) {
            ASSERT_LT(nconns, 4);
            memcpy(conns[nconns++], conn, sizeof conn);
        }
        int hh = -1;
        ASSERT_EQ(sscanf(key, "A1.1.hh-%d.webhook", &hh), 1);
        ASSERT(hh >= 0 && hh < n);
        distinct += seen[hh]++ == 0;
        ASSERT_GT(len, 0);
        line = end + 1;
    }
    ASSERT_EQ(distinct, n);
    free(seen);
    free(log);
}

TEST(fanout_webhook_over_tls_uses_http2_on_one_connection)
{
    fo_env e;
    fo_env_init(&e);
    h2_fanout(&e, 1, 200);
    fo_env_done(&e);
}

TEST(fanout_webhook_http2_answer_before_the_body_is_read_is_delivered)
{
    /* The receiver answers 204 at once and resets each stream whose body it did not read: the
     * answer stands (RFC 9113 §8.1), so each is delivered, not retried until dead (before the
     * status decided, most of these deliveries failed here). */
    fo_env e;
    fo_env_init(&e);
    h2_fanout(&e, 0, 100);
    fo_env_done(&e);
}

TEST(fanout_webhook_over_tls_refuses_a_certificate_it_cannot_check)
{
    /* The same receiver, but no CA file: its self-signed certificate is not among the system's
     * CAs. The delivery is not made (nothing reaches the receiver), it is kept for a retry with
     * the reason, not lost. */
    fo_env e;
    fo_env_init(&e);
    int port = nginx_h2(&e, 1);
    int64_t id = https_rows(&e, port, 1);
    char ca[160];
    keng_fanout_config c = tls_cfg(&e, ca);
    c.webhook_ca_file = NULL;
    c.backoff_base_ms = 60000; /* the retry does not come within the test */
    fo_run run;
    ASSERT(fo_run_engine(&e, &c, NULL, NULL, 10000, &run));
    fo_row r = fo_get(&e, id);
    ASSERT_STR_EQ(r.status, "pending");
    ASSERT_EQ(r.attempts, 1);
    ASSERT_EQ(r.last_code, 0);
    ASSERT(strstr(r.last_error, "certificate") != NULL);
    char *log = fo_slurp(e.logs[0]);
    ASSERT_EQ(log ? fo_lines(log) : 0, 0);
    free(log);
    fo_env_done(&e);
}

TEST(fanout_judge_a_status_decides_even_when_the_transfer_failed_after_it)
{
    /* What an HTTP/2 stream reset (or a timeout) after the answer leaves the judge: the status
     * stands; before any status, a failed attempt. */
    struct {
        CURLcode cc;
        long status;
        enum keng_channel_verdict want;
    } cases[] = {
        {CURLE_HTTP2_STREAM, 204, KENG_CH_DELIVERED},
        {CURLE_OPERATION_TIMEDOUT, 200, KENG_CH_DELIVERED},
        {CURLE_HTTP2_STREAM, 0, KENG_CH_RETRY},
        {CURLE_OPERATION_TIMEDOUT, 0, KENG_CH_RETRY},
        {CURLE_HTTP2_STREAM, 503, KENG_CH_RETRY},
        {CURLE_HTTP2_STREAM, 400, KENG_CH_DEAD},
        {CURLE_OK, 204, KENG_CH_DELIVERED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        keng_channel_response resp = {.cc = cases[i].cc,
                                      .status = cases[i].status,
                                      .retry_after_s = -1,
                                      .body = "",
                                      .curl_error = "Stream error in the HTTP/2 framing layer"};
        keng_channel_result res;
        memset(&res, 0, sizeof res);
        keng_channel_judge_http(&resp, &res);
        ASSERT_EQ(res.verdict, cases[i].want);
        ASSERT_EQ(res.code, (int)cases[i].status);
        if (cases[i].status == 0) ASSERT(strstr(res.error, "Stream error") != NULL);
    }
}

TEST(fanout_webhook_ca_file_is_only_the_webhooks_and_always_theirs)
{
    /* Zalo and the TLS webhook share two easy handles: a handle that last went to Zalo (the
     * system's CAs) must trust the CA file again for the webhook, and the other way round. */
    fo_env e;
    fo_env_init(&e);
    int port = nginx_h2(&e, 1);
    int zport = fo_peer(&e, "zalo", "--token", "oa-token");
    int64_t wm = fo_message(&e, "A1", "alert", "webhook", "r", "Tìm xe", NULL, NULL, NULL);
    int64_t zm = fo_message(&e, "A2", "alert", "zalo_oa", "r", "Tìm xe", NULL, NULL, NULL);
    char waddr[160];
    snprintf(waddr, sizeof waddr, "{\"type\":\"webhook\",\"url\":\"https://127.0.0.1:%d/hook\"}",
             port);
    for (int i = 0; i < 20; i++) { /* one after the other: the handles go back and forth */
        char rec[16];
        snprintf(rec, sizeof rec, "hh-%d", i);
        fo_delivery(&e, "A1", rec, "webhook", waddr, wm, "r");
        fo_delivery(&e, "A2", rec, "zalo_oa", "{\"type\":\"zalo_oa\",\"user_id\":\"84123\"}", zm,
                    "r");
    }
    char ca[160], zbase[64];
    snprintf(zbase, sizeof zbase, "http://127.0.0.1:%d", zport);
    keng_fanout_config c = tls_cfg(&e, ca);
    c.max_inflight = 2;
    c.zalo_base_url = zbase;
    c.zalo_access_token = "oa-token";
    int n = 40;
    fo_run run;
    ASSERT(fo_run_engine(&e, &c, all_delivered, &n, 20000, &run));
    ASSERT_EQ(fo_count(&e, "status = 'delivered' AND channel = 'zalo_oa'"), 20);
    ASSERT_EQ(fo_count(&e, "last_error LIKE '%certificate%'"), 0);
    fo_env_done(&e);
}
