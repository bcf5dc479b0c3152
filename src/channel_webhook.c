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

/* "SECONDS." of t (>= 0; a clock before 1970 signs as 0) into out[24]; its length. By hand:
 * snprintf was a tenth of the engine's own work per delivery left after the HMACs. */
static int unix_dot(char *out, int64_t t)
{
    char rev[24];
    int n = 0;
    uint64_t v = t > 0 ? (uint64_t)t : 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '.';
    out[n + 1] = '\0';
    return n + 1;
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

static const char *webhook_url(const keng_channel_req *req)
{
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req->address, "url"));
    return url && (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) ? url
                                                                                        : NULL;
}

/* The body (the message's head and text with the recipient's link), the header lines and the
 * signature; any thread (keng_channel_ops.build). */
static int webhook_build(keng_channel_req *req, struct keng_hmac_cache *macs, char *err,
                         size_t errlen)
{
    const char *secret =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req->address, "secret"));
    if (!webhook_url(req)) {
        snprintf(err, errlen, "webhook contact has no http(s) url");
        return -EINVAL;
    }
    keng_buf *b = &req->body;
    keng_buf_reset(b);
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
    /* The header list lives in the request (no allocation per delivery): two fixed lines, the
     * key, and the signature when the contact has a secret. */
    char *key = req->hdr_line[0], *sig = req->hdr_line[1];
    size_t klen = strlen(req->idem_key);
    if (17 + klen >= KENG_REQ_HDR_LINE) {
        snprintf(err, errlen, "idempotency key too long");
        return -EINVAL;
    }
    memcpy(key, "Idempotency-Key: ", 17);
    memcpy(key + 17, req->idem_key, klen + 1);
    struct curl_slist *h = req->hdr;
    h[0] = (struct curl_slist){(char *)"Content-Type: application/json", &h[1]};
    h[1] = (struct curl_slist){(char *)"Expect:", &h[2]}; /* no 100-continue round trip */
    /* Firewalls in front of receivers often refuse requests without one (a 403: dead). A line
     * of the list: curl's own CURLOPT_USERAGENT formatted it anew for every request. */
    h[2] = (struct curl_slist){(char *)"User-Agent: kengd/1", &h[3]};
    h[3] = (struct curl_slist){key, NULL};
    if (secret) {
        char ts[24], mac[65];
        int tn = unix_dot(ts, req->now);
        if (keng_hmac_cached_hex(macs, secret, strlen(secret), ts, (size_t)tn, b->data, b->len,
                                 mac)) {
            snprintf(err, errlen, "cannot sign the body");
            return -EIO;
        }
        size_t at = line_cat(sig, 0, KENG_REQ_HDR_LINE, "Keng-Signature: t=", 18);
        at = line_cat(sig, at, KENG_REQ_HDR_LINE, ts, (size_t)tn - 1); /* without its '.' */
        at = line_cat(sig, at, KENG_REQ_HDR_LINE, ",v1=", 4);
        line_cat(sig, at, KENG_REQ_HDR_LINE, mac, 64);
        h[3].next = &h[4];
        h[4] = (struct curl_slist){sig, NULL};
    }
    req->hdr_fixed = 1;
    req->headers = h;
    req->built = 1;
    return 0;
}

/* Builds here unless the engine had it built in the thread pool; then attaches. */
static int webhook_prepare(keng_channel_req *req, char *err, size_t errlen)
{
    int rc = req->built ? 0 : webhook_build(req, req->macs, err, errlen);
    if (rc) return rc;
    CURL *e = req->easy;
    curl_easy_setopt(e, CURLOPT_URL, webhook_url(req));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body.data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len);
    return 0;
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
    .build = webhook_build,
    .prepare = webhook_prepare,
    .judge = webhook_judge,
    .reuse = 1,
};
