/* channel webhook: a signed JSON POST to the contact's url (DESIGN.md §7). The body is the
 * message's shared head plus the recipient's link; the signature covers "t.body" so a receiver
 * can refuse replays older than it likes. */
#include "keng/auth.h"
#include "keng/channel.h"
#include "keng/fanout.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int webhook_configured(const keng_fanout_config *cfg)
{
    (void)cfg; /* the contact carries url and secret */
    return 1;
}

/* Appends n bytes of s to the header line at offset at, cut to fit size as snprintf would (the
 * per-delivery headers were three snprintf calls); returns the new length. */
static size_t line_cat(char *line, size_t at, size_t size, const char *s, size_t n)
{
    if (n > size - 1 - at) n = size - 1 - at;
    memcpy(line + at, s, n);
    line[at + n] = '\0';
    return at + n;
}

/* Appends the link escaped for JSON: escaped the first time, copied from where that went after
 * (*at, *n: 0 until then). A link goes in the text and in reply_url, or more than once. */
static int put_link(keng_buf *b, const char *link, size_t len, size_t *at, size_t *n)
{
    if (*n) { /* reserved first: the copy's source is in b and must not move */
        int rc = keng_buf_reserve(b, *n);
        return rc ? rc : keng_buf_append(b, b->data + *at, *n);
    }
    *at = b->len;
    int rc = keng_channel_json_esc(b, link, len);
    *n = b->len - *at;
    return rc;
}

static int webhook_prepare(keng_channel_req *req, char *err, size_t errlen)
{
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req->address, "url"));
    const char *secret =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req->address, "secret"));
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        snprintf(err, errlen, "webhook contact has no http(s) url");
        return -EINVAL;
    }
    keng_buf *b = &req->body;
    const keng_channel_msg *m = req->msg;
    const char *link = req->link_url;
    size_t link_len = strlen(link), link_at = 0, link_n = 0;
    int rc = keng_buf_append(b, m->webhook_head.data, m->webhook_head.len);
    if (rc == 0) rc = keng_buf_puts(b, ",\"text\":\"");
    /* The message's text, escaped once for all recipients, with this one's link in it. */
    const char *txt = m->webhook_text.data ? m->webhook_text.data : "";
    if (m->webhook_text_tail) {
        if (rc == 0) rc = keng_buf_append(b, txt, m->webhook_text.len);
        if (rc == 0 && link_len) rc = keng_buf_puts(b, "\\n\\n");
        if (rc == 0) rc = put_link(b, link, link_len, &link_at, &link_n);
    } else {
        const size_t pl = strlen(KENG_LINK_PLACEHOLDER);
        const char *hit;
        while (rc == 0 && (hit = strstr(txt, KENG_LINK_PLACEHOLDER))) {
            rc = keng_buf_append(b, txt, (size_t)(hit - txt));
            if (rc == 0) rc = put_link(b, link, link_len, &link_at, &link_n);
            txt = hit + pl;
        }
        if (rc == 0) rc = keng_buf_puts(b, txt);
    }
    if (rc == 0) rc = keng_buf_puts(b, "\"");
    if (rc == 0 && req->link_url[0]) {
        rc = keng_buf_puts(b, req->link_kind == 'l' ? ",\"relay_url\":" : ",\"reply_url\":");
        if (rc == 0) rc = keng_buf_puts(b, "\"");
        if (rc == 0) rc = put_link(b, link, link_len, &link_at, &link_n);
        if (rc == 0) rc = keng_buf_puts(b, "\"");
    }
    if (rc == 0) rc = keng_buf_puts(b, "}");
    if (rc) {
        snprintf(err, errlen, "webhook body too large");
        return rc;
    }
    char line[512];
    struct curl_slist *h = NULL, *t;
#define ADD_HEADER(s)                                                                              \
    do {                                                                                           \
        if (!(t = curl_slist_append(h, (s)))) goto nomem;                                          \
        h = t;                                                                                     \
    } while (0)
    ADD_HEADER("Content-Type: application/json");
    ADD_HEADER("Expect:"); /* no 100-continue round trip */
    size_t at = line_cat(line, 0, sizeof line, "Idempotency-Key: ", 17);
    line_cat(line, at, sizeof line, req->idem_key, strlen(req->idem_key));
    ADD_HEADER(line);
    if (secret) {
        char ts[24], mac[65];
        int tn = snprintf(ts, sizeof ts, "%lld.", (long long)req->now);
        if (keng_hmac_cached_hex(req->macs, secret, strlen(secret), ts, (size_t)tn, b->data,
                                 b->len, mac)) {
            curl_slist_free_all(h);
            snprintf(err, errlen, "cannot sign the body");
            return -EIO;
        }
        at = line_cat(line, 0, sizeof line, "Keng-Signature: t=", 18);
        at = line_cat(line, at, sizeof line, ts, (size_t)tn - 1); /* without its '.' */
        at = line_cat(line, at, sizeof line, ",v1=", 4);
        line_cat(line, at, sizeof line, mac, 64);
        ADD_HEADER(line);
    }
#undef ADD_HEADER
    req->headers = h;
    CURL *e = req->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, b->data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->len);
    return 0;
nomem:
    curl_slist_free_all(h);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

static void webhook_judge(const keng_channel_req *req, const keng_channel_response *resp,
                          keng_channel_result *res)
{
    (void)req;
    keng_channel_judge_http(resp, res);
}

const keng_channel_ops keng_channel_webhook = {
    .type = "webhook",
    .configured = webhook_configured,
    .prepare = webhook_prepare,
    .judge = webhook_judge,
    .reuse = 1,
};
