/* The client side of kengd's HTTP API: base URL and token resolution, one reused CURL easy
 * handle, capped responses, error printing, and a Server-Sent Events reader. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

static char *dup_trim(const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    char *out = malloc(n + 1);
    if (!out) return NULL;
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

void keng_cli_free(keng_cli *c)
{
    if (!c) return;
    free(c->flag_url);
    free(c->flag_token);
    free(c->url);
    free(c->token);
    if (c->curl) curl_easy_cleanup(c->curl);
    memset(c, 0, sizeof *c);
}

int keng_cli_token_file(keng_cli *c, const char *path)
{
    keng_buf b;
    keng_buf_init(&b, 4096);
    if (keng_cli_read_file(path, 4096, &b)) {
        keng_buf_free(&b);
        return KENG_CLI_FAIL;
    }
    const char *s = b.data ? b.data : "";
    size_t n = strcspn(s, "\r\n");
    char *tok = dup_trim(s, n);
    keng_buf_free(&b);
    if (!tok || !*tok) {
        free(tok);
        return keng_cli_fail("tệp token trống", "the token file is empty", "%s", path);
    }
    free(c->flag_token);
    c->flag_token = tok;
    return KENG_CLI_OK;
}

/* Reads "url = …" and "token = …" from the config file; a missing file is not an error. */
static void read_config(char **url, char **token)
{
    char path[4096];
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(path, sizeof path, "%s/keng/config", xdg);
    else if (home && *home)
        snprintf(path, sizeof path, "%s/.config/keng/config", home);
    else
        return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        if (line[0] == '#' || !eq) continue;
        char *key = dup_trim(line, (size_t)(eq - line));
        char *val = dup_trim(eq + 1, strlen(eq + 1));
        if (key && val && !strcmp(key, "url") && !*url)
            *url = val, val = NULL;
        else if (key && val && !strcmp(key, "token") && !*token)
            *token = val, val = NULL;
        free(key);
        free(val);
    }
    fclose(f);
}

static int resolve(keng_cli *c)
{
    if (c->resolved) return 0;
    char *url = NULL, *token = NULL;
    const char *e;
    if (c->flag_url)
        url = strdup(c->flag_url);
    else if ((e = getenv("KENG_URL")) && *e)
        url = strdup(e);
    if (c->flag_token)
        token = strdup(c->flag_token);
    else if ((e = getenv("KENG_TOKEN")) && *e)
        token = strdup(e);
    if (!url || !token) {
        char *curl_ = NULL, *ctok = NULL;
        read_config(&curl_, &ctok);
        if (!url) url = curl_, curl_ = NULL;
        if (!token) token = ctok, ctok = NULL;
        free(curl_);
        free(ctok);
    }
    if (!url) url = strdup(KENG_CLI_DEFAULT_URL);
    if (!url) {
        free(token);
        return -ENOMEM;
    }
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        url[--n] = '\0';
    c->url = url;
    c->token = token;
    c->resolved = 1;
    return 0;
}

void keng_cli_reply_free(keng_cli_reply *r)
{
    if (!r) return;
    keng_buf_free(&r->raw);
    cJSON_Delete(r->json);
    r->json = NULL;
    r->status = 0;
}

typedef struct sink {
    keng_buf *b;
    int too_big;
} sink;

static size_t on_write(char *p, size_t sz, size_t n, void *ud)
{
    sink *k = ud;
    if (keng_buf_append(k->b, p, sz * n) == 0) return sz * n;
    k->too_big = 1;
    return 0;
}

/* Sets the options every request shares; returns the header list to free. */
static struct curl_slist *setup(keng_cli *c, CURL *h, const char *url, const char *ctype,
                                char *errbuf)
{
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, KENG_CLI_CONNECT_TIMEOUT);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "keng-cli/1");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    struct curl_slist *hd = NULL, *t;
    char line[1024];
    if (c->token) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", c->token);
        if ((t = curl_slist_append(hd, line))) hd = t;
    }
    if (ctype) {
        snprintf(line, sizeof line, "Content-Type: %s", ctype);
        if ((t = curl_slist_append(hd, line))) hd = t;
    }
    /* Large uploads should not wait a second for "100 Continue". */
    if ((t = curl_slist_append(hd, "Expect:"))) hd = t;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    return hd;
}

static int get_handle(keng_cli *c, CURL **h)
{
    if (resolve(c)) return keng_cli_nomem();
    if (!c->curl) c->curl = curl_easy_init();
    if (!c->curl) return keng_cli_say("không khởi động được libcurl", "could not start libcurl");
    *h = c->curl;
    return 0;
}

static int transport_error(keng_cli *c, CURLcode rc, const char *errbuf)
{
    const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        keng_cli_sayf("kengd không trả lời kịp", "kengd did not answer in time", "%s: %s", c->url,
                      why);
        keng_cli_sayf("kengd có thể đang quá tải hoặc bị treo; xem nhật ký của nó",
                      "kengd may be overloaded or stuck; see its log", "%s", c->url);
        return KENG_CLI_UNREACHABLE;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        keng_cli_sayf("không kết nối được kengd", "cannot reach kengd", "%s: %s", c->url, why);
        keng_cli_sayf("kengd có đang chạy không, địa chỉ có đúng không?",
                      "is kengd running, is the address right?",
                      "make run; --url, KENG_URL, ~/.config/keng/config");
        return KENG_CLI_UNREACHABLE;
    default:
        return keng_cli_fail("yêu cầu tới kengd không thành công", "the request to kengd failed",
                             "%s: %s", c->url, why);
    }
}

/* Vietnamese for kengd's error codes, which are stable; its messages are English (README). */
static const struct {
    const char *code, *vi;
} error_vi[] = {
    {"unauthorized", "cần một token hợp lệ"},
    {"forbidden", "vai trò của token này không được làm việc này"},
    {"not_found", "không tìm thấy"},
    {"exists", "đã có rồi"},
    {"already_published", "tin báo đã được phát rồi"},
    {"alert_closed", "tin báo đã kết thúc hoặc đã huỷ"},
    {"not_published", "tin báo chưa được phát"},
    {"already_relayed", "đã chuyển tiếp rồi"},
    {"has_children", "nhóm này còn nhóm con"},
    {"invalid_field", "giá trị không hợp lệ"},
    {"invalid_json", "nội dung gửi đi không phải JSON hợp lệ"},
    {"invalid_utf8", "nội dung gửi đi không phải UTF-8 hợp lệ"},
    {"invalid_csv", "tệp CSV có lỗi, chưa nhập gì"},
    {"bad_request", "yêu cầu không hợp lệ"},
    {"bad_path", "đường dẫn không hợp lệ"},
    {"method_not_allowed", "không làm được thao tác này ở đây"},
    {"unsupported_media_type", "sai loại dữ liệu"},
    {"undecodable_image", "không đọc được ảnh"},
    {"too_large", "dữ liệu quá lớn"},
    {"body_too_large", "dữ liệu quá lớn"},
    {"headers_too_large", "phần đầu của yêu cầu quá lớn"},
    {"range_not_satisfiable", "khoảng byte không hợp lệ"},
    {"gone", "không còn nữa"},
    {"busy", "kengd đang bận"},
    {"too_many_connections", "kengd đang có quá nhiều kết nối"},
    {"too_many_watchers", "đang có quá nhiều người theo dõi"},
    {"shutting_down", "kengd đang dừng"},
    {"publish_delayed", "tin báo đã lưu; việc viết tin gửi đang chậm và sẽ tự tiếp tục"},
    {"relay_delayed", "việc chuyển tiếp đang chậm và sẽ tự tiếp tục"},
    {"internal", "lỗi bên trong kengd"},
    {"render_failed", "không dựng được tin nhắn từ mẫu"},
    {"request_timeout", "yêu cầu đến quá chậm"},
    {"checksum_mismatch", "dữ liệu không khớp mã kiểm tra"},
    {"unknown_link", "liên kết không hợp lệ"},
};

static const char *code_vi(const char *code)
{
    for (size_t i = 0; i < sizeof error_vi / sizeof error_vi[0]; i++)
        if (!strcmp(error_vi[i].code, code)) return error_vi[i].vi;
    return "kengd từ chối";
}

static const char *status_text(long status)
{
    static const struct {
        long status;
        const char *text;
    } t[] = {{400, "Bad Request"},
             {401, "Unauthorized"},
             {403, "Forbidden"},
             {404, "Not Found"},
             {405, "Method Not Allowed"},
             {408, "Request Timeout"},
             {409, "Conflict"},
             {410, "Gone"},
             {413, "Content Too Large"},
             {415, "Unsupported Media Type"},
             {422, "Unprocessable Content"},
             {429, "Too Many Requests"},
             {500, "Internal Server Error"},
             {502, "Bad Gateway"},
             {503, "Service Unavailable"},
             {504, "Gateway Timeout"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].status == status) return t[i].text;
    return "";
}

/* The flag of `keng alert new|update` or `keng members add` that sets an API field:
 * person_name → --person-name, targets.groups[1] → --group, footage_request.from →
 * --footage-from. Empty when no flag sets it (the kind is a word, not a flag). */
static void field_flag(const char *field, char *out, size_t len)
{
    /* First match wins: a prefix ending in '.' keeps the rest of the name after the flag. */
    static const struct {
        const char *prefix, *flag; /* flag NULL: none */
    } special[] = {
        {"photos", "photo"},
        {"targets.groups", "group"},
        {"targets.kinds", "kind-target"},
        {"targets.all", "all"},
        {"targets", NULL},
        {"footage_request.", "footage-"},
        {"footage_request", NULL},
        {"area.", ""},
        {"area", NULL},
        {"phone_numbers", "phone-number"},
        {"bank_accounts", "bank-account"},
        {"urls", "url"},
        {"update_note", "note"},
        {"groups", "group"},
        {"kind", NULL},
        {"alert", NULL},
    };
    out[0] = '\0';
    const char *rest = field, *flag = "";
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
        size_t n = strlen(special[i].prefix);
        if (strncmp(field, special[i].prefix, n)) continue;
        if (!special[i].flag) return;
        flag = special[i].flag;
        rest = special[i].prefix[n - 1] == '.' ? field + n : "";
        break;
    }
    int k = snprintf(out, len, "--%s", flag);
    for (const char *p = rest; k > 0 && (size_t)k + 1 < len && *p && *p != '['; p++) {
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '_') {
            out[0] = '\0'; /* a nested name that no flag sets */
            return;
        }
        out[k++] = *p == '_' ? '-' : *p;
        out[k] = '\0';
    }
}

/* The server's refusal, Vietnamese first, and what to do about it. */
static void print_server_error(keng_cli *c, const keng_cli_reply *r)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const char *msg = keng_cli_str(e, "message"), *code = keng_cli_str(e, "code");
    const char *field = keng_cli_str(e, "field");
    int from_kengd = *msg || *code;
    if (from_kengd) {
        fprintf(stderr, "keng: %s / %s (%s)\n", code_vi(code), *msg ? msg : "refused",
                *code ? code : "error");
        if (*field) {
            char flag[96] = "";
            if (c->fields_are_flags) field_flag(field, flag, sizeof flag);
            fprintf(stderr, "keng: trường / field: %s%s%s%s\n", field, *flag ? " (" : "", flag,
                    *flag ? ")" : "");
        }
    } else {
        const char *body = r->raw.data ? r->raw.data : "";
        int n = (int)strcspn(body, "\r\n");
        if (n > 300) n = 300;
        const char *st = status_text(r->status);
        fprintf(stderr, "keng: máy chủ trả lời HTTP %ld / the server answered HTTP %ld%s%s%s%.*s\n",
                r->status, r->status, *st ? " " : "", st, n ? ": " : "", n, body);
        /* kengd words every refusal as JSON: a bare one came from something else on the way. */
        keng_cli_sayf("không phải câu trả lời của kengd: sai địa chỉ, hay kengd sau proxy đã dừng?",
                      "not an answer from kengd: wrong address, or is kengd behind a proxy down?",
                      "%s", c->url);
        return;
    }
    if (r->status == 401 && !c->token)
        keng_cli_sayf("chưa gửi token nào", "no token was sent",
                      "--token-file var/admin.token, --token, KENG_TOKEN, ~/.config/keng/config");
    else if (r->status == 401)
        keng_cli_sayf("kengd không nhận token này", "kengd does not accept this token",
                      "--token-file, --token, KENG_TOKEN, ~/.config/keng/config");
    else if (r->status == 403)
        keng_cli_say("hãy dùng token có vai trò được làm việc này (keng token create --role …)",
                     "use a token whose role may do this (keng token create --role …)");
    else if (!strcmp(code, "publish_delayed"))
        keng_cli_say("đừng phát lại; theo dõi bằng keng alert watch ID",
                     "do not publish again; follow it with keng alert watch ID");
    else if (r->status == 429 || !strcmp(code, "busy") || !strcmp(code, "too_many_connections") ||
             !strcmp(code, "shutting_down"))
        keng_cli_say("thử lại sau ít phút", "try again in a moment");
    else if (r->status >= 500)
        keng_cli_say("lỗi nằm ở kengd, không phải ở lệnh: xem nhật ký của kengd rồi thử lại",
                     "the fault is in kengd, not in the command: see kengd's log, then try again");
}

int keng_cli_request(keng_cli *c, const char *method, const char *path, const char *ctype,
                     const void *body, size_t len, long quiet_status, keng_cli_reply *r)
{
    memset(r, 0, sizeof *r);
    keng_buf_init(&r->raw, KENG_CLI_MAX_RESPONSE);
    CURL *h;
    int rc = get_handle(c, &h);
    if (rc) return rc;
    keng_buf url;
    keng_buf_init(&url, 64 * 1024);
    if (keng_buf_puts(&url, c->url) || keng_buf_puts(&url, path)) {
        keng_buf_free(&url);
        return keng_cli_say("đường dẫn quá dài", "the request path is too long");
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hd = setup(c, h, url.data, ctype, errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, KENG_CLI_TIMEOUT);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body || strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? (const char *)body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
    }
    if (!strcmp(method, "HEAD")) curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    sink k = {&r->raw, 0};
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &k);
    CURLcode cr = curl_easy_perform(h);
    curl_slist_free_all(hd);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    keng_buf_free(&url);
    if (cr == CURLE_WRITE_ERROR && k.too_big)
        return keng_cli_fail("câu trả lời của kengd quá lớn", "kengd's answer is too large",
                             "> %u MB", KENG_CLI_MAX_RESPONSE >> 20);
    if (cr != CURLE_OK) return transport_error(c, cr, errbuf);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->raw.len) r->json = cJSON_ParseWithLength(r->raw.data, r->raw.len);
    if (r->status >= 200 && r->status < 300) return KENG_CLI_OK;
    if (r->status != quiet_status) print_server_error(c, r);
    return KENG_CLI_FAIL;
}

int keng_cli_request_json(keng_cli *c, const char *method, const char *path, const cJSON *body,
                          keng_cli_reply *r)
{
    char *s = body ? cJSON_PrintUnformatted(body) : NULL;
    if (body && !s) {
        memset(r, 0, sizeof *r);
        return keng_cli_nomem();
    }
    int rc = keng_cli_request(c, method, path, body ? "application/json" : NULL, s,
                              s ? strlen(s) : 0, 0, r);
    free(s);
    return rc;
}

/* ---- Server-Sent Events ---- */

typedef struct sse {
    keng_buf line; /* the line being received */
    keng_buf data; /* data of the event being assembled */
    keng_buf err;  /* body of a non-2xx answer */
    CURL *h;
    int ok; /* 2xx: parse events; else collect the error body */
    int checked;
    int stop; /* what on_data returned */
    int (*on_data)(void *ud, const char *data, size_t len);
    void *ud;
} sse;

/* One complete line (without its end); an empty line dispatches the event. */
static int sse_line(sse *s, const char *p, size_t n)
{
    if (n == 0) {
        if (s->data.len) {
            s->stop = s->on_data(s->ud, s->data.data, s->data.len);
            keng_buf_reset(&s->data);
            if (s->stop) return -1;
        }
        return 0;
    }
    if (n >= 5 && !memcmp(p, "data:", 5)) {
        p += 5, n -= 5;
        if (n && *p == ' ') p++, n--;
        if (s->data.len && keng_buf_append(&s->data, "\n", 1)) return -1;
        if (keng_buf_append(&s->data, p, n)) return -1;
    }
    return 0; /* comments (keep-alives), event:, id:, retry: need nothing here */
}

static size_t sse_write(char *p, size_t sz, size_t n, void *ud)
{
    sse *s = ud;
    size_t len = sz * n;
    if (!s->checked) {
        long status = 0;
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
        s->ok = status >= 200 && status < 300;
        s->checked = 1;
    }
    if (!s->ok) return keng_buf_append(&s->err, p, len) ? 0 : len;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n') {
            size_t l = s->line.len;
            if (l && s->line.data[l - 1] == '\r') l--;
            if (sse_line(s, s->line.data, l)) return 0;
            keng_buf_reset(&s->line);
        } else if (keng_buf_append(&s->line, p + i, 1)) {
            return 0;
        }
    }
    return len;
}

int keng_cli_stream(keng_cli *c, const char *path, long quiet_status, long *status,
                    int (*on_data)(void *ud, const char *data, size_t len), void *ud)
{
    *status = 0;
    CURL *h;
    int rc = get_handle(c, &h);
    if (rc) return rc;
    keng_buf url;
    keng_buf_init(&url, 64 * 1024);
    if (keng_buf_puts(&url, c->url) || keng_buf_puts(&url, path)) {
        keng_buf_free(&url);
        return keng_cli_say("đường dẫn quá dài", "the request path is too long");
    }
    sse s = {.h = h, .on_data = on_data, .ud = ud};
    keng_buf_init(&s.line, 1u << 20);
    keng_buf_init(&s.data, 16u << 20);
    keng_buf_init(&s.err, 1u << 20);
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hd = setup(c, h, url.data, NULL, errbuf), *t;
    if ((t = curl_slist_append(hd, "Accept: text/event-stream"))) hd = t;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    /* No overall timeout: a watch lasts as long as the delivery does. */
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sse_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    CURLcode cr = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hd);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    keng_buf_free(&url);
    if (s.stop) {
        rc = s.stop;
    } else if (cr != CURLE_OK && !(cr == CURLE_WRITE_ERROR && !s.ok)) {
        rc = cr == CURLE_WRITE_ERROR
                 ? keng_cli_fail("một sự kiện từ kengd quá lớn",
                                 "an event from kengd was too large", "%s", path)
                 : transport_error(c, cr, errbuf);
    } else if (*status < 200 || *status >= 300) {
        rc = KENG_CLI_FAIL;
        if (*status != quiet_status) {
            keng_cli_reply r = {.status = *status, .raw = s.err};
            r.json = s.err.len ? cJSON_ParseWithLength(s.err.data, s.err.len) : NULL;
            print_server_error(c, &r);
            cJSON_Delete(r.json);
        }
    } else {
        rc = 0;
    }
    keng_buf_free(&s.line);
    keng_buf_free(&s.data);
    keng_buf_free(&s.err);
    return rc;
}

/* ---- escaping ---- */

int keng_cli_buf_esc(keng_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int rc;
        if (isalnum(*p) || strchr("-._~", *p)) {
            rc = keng_buf_append(b, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc = keng_buf_append(b, e, 3);
        }
        if (rc) return rc;
    }
    return 0;
}

int keng_cli_buf_query(keng_buf *b, const char *name, const char *value)
{
    if (!value) return 0;
    int rc = keng_buf_puts(b, b->len && memchr(b->data, '?', b->len) ? "&" : "?");
    if (!rc) rc = keng_cli_buf_esc(b, name);
    if (!rc) rc = keng_buf_puts(b, "=");
    if (!rc) rc = keng_cli_buf_esc(b, value);
    return rc;
}

int keng_cli_buf_path_query(keng_buf *b, const char *path, const keng_cli_args *a,
                            const char *const *names)
{
    int rc = keng_buf_puts(b, path);
    for (size_t i = 0; rc == 0 && names[i]; i++)
        rc = keng_cli_buf_query(b, names[i], keng_cli_args_get(a, names[i]));
    return rc;
}

int keng_cli_get_all(keng_cli *c, const char *path, cJSON **out)
{
    *out = NULL;
    cJSON *all = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(all, "items");
    if (!items) {
        cJSON_Delete(all);
        return keng_cli_nomem();
    }
    int offset = 0, total = 0, rc = 0;
    for (;;) {
        keng_buf p;
        keng_buf_init(&p, 64 * 1024);
        char lim[16], off[16];
        snprintf(lim, sizeof lim, "%d", KENG_CLI_PAGE);
        snprintf(off, sizeof off, "%d", offset);
        if (keng_buf_puts(&p, path) || keng_cli_buf_query(&p, "limit", lim) ||
            keng_cli_buf_query(&p, "offset", off)) {
            keng_buf_free(&p);
            rc = keng_cli_say("đường dẫn quá dài", "the request path is too long");
            break;
        }
        keng_cli_reply r;
        rc = keng_cli_request(c, "GET", p.data, NULL, NULL, 0, 0, &r);
        keng_buf_free(&p);
        cJSON *page = cJSON_GetObjectItemCaseSensitive(r.json, "items");
        if (!rc && !cJSON_IsArray(page))
            rc = keng_cli_fail("kengd trả lời mà không có danh sách",
                               "kengd answered without an "
                               "item list",
                               "%s", path);
        if (rc) {
            keng_cli_reply_free(&r);
            break;
        }
        total = (int)keng_cli_num(r.json, "total", 0);
        int got = 0;
        cJSON *it;
        while ((it = cJSON_DetachItemFromArray(page, 0)) != NULL) {
            cJSON_AddItemToArray(items, it);
            got++;
        }
        keng_cli_reply_free(&r);
        offset += got;
        if (got == 0 || offset >= total) break;
    }
    if (rc) {
        cJSON_Delete(all);
        return rc;
    }
    cJSON_AddNumberToObject(all, "total", total > offset ? total : offset);
    cJSON_AddNumberToObject(all, "limit", offset);
    cJSON_AddNumberToObject(all, "offset", 0);
    *out = all;
    return 0;
}

void keng_cli_print_json(const cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (s) puts(s);
    free(s);
}
