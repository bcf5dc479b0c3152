/* channel email: SMTP through libcurl. One message per delivery: multipart/alternative with the
 * text and the HTML (messages.html, or a minimal page made from the text), the link in both, a
 * UTF-8 Subject as RFC 2047 encoded words, Message-ID from the idempotency key so a receiving
 * system can drop a repeat. SMTP 5xx is dead, 4xx and network errors retry. */
#include "keng/channel.h"
#include "keng/fanout.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int email_configured(const keng_fanout_config *cfg)
{
    return cfg->smtp_url && cfg->smtp_from && *cfg->smtp_url && *cfg->smtp_from;
}

/* An address we put into SMTP commands and headers: no CR/LF, no angle brackets, one '@'. */
static int address_ok(const char *a)
{
    const char *at = strchr(a, '@');
    if (!at || at == a || !at[1] || strchr(at + 1, '@')) return 0;
    for (const char *p = a; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '<' || *p == '>' || *p == ',' || *p == '"') return 0;
    return strlen(a) < 255;
}

/* "Subject: =?UTF-8?B?…?= =?UTF-8?B?…?=": words of ≤ 45 bytes cut on character boundaries,
 * so each encoded word stays under RFC 2047's 75 characters. */
static int subject_header(const char *s, keng_buf *out)
{
    int rc = keng_buf_puts(out, "Subject:");
    size_t len = strlen(s), i = 0;
    if (len == 0) return rc;
    while (rc == 0 && i < len) {
        size_t n = len - i > 45 ? 45 : len - i;
        while (n > 0 && i + n < len && ((unsigned char)s[i + n] & 0xC0) == 0x80)
            n--;
        unsigned char enc[64];
        int m = EVP_EncodeBlock(enc, (const unsigned char *)s + i, (int)n);
        rc = keng_buf_printf(out, " =?UTF-8?B?%.*s?=", m, (const char *)enc);
        i += n;
    }
    return rc;
}

static int html_escape(keng_buf *b, const char *s)
{
    int rc = 0;
    for (; rc == 0 && *s; s++) {
        switch (*s) {
        case '<':
            rc = keng_buf_puts(b, "&lt;");
            break;
        case '>':
            rc = keng_buf_puts(b, "&gt;");
            break;
        case '&':
            rc = keng_buf_puts(b, "&amp;");
            break;
        case '"':
            rc = keng_buf_puts(b, "&quot;");
            break;
        case '\n':
            rc = keng_buf_puts(b, "<br>\r\n");
            break;
        default:
            rc = keng_buf_append(b, s, 1);
        }
    }
    return rc;
}

static int build_html(const keng_channel_req *req, keng_buf *b)
{
    const keng_channel_msg *m = req->msg;
    int rc = 0;
    if (m->html && *m->html) {
        /* Template HTML may hold the link placeholder too: the recipient's link goes there. */
        const char *h = m->html, *hit;
        while (rc == 0 && (hit = strstr(h, KENG_LINK_PLACEHOLDER))) {
            rc = keng_buf_append(b, h, (size_t)(hit - h));
            if (rc == 0) rc = html_escape(b, req->link_url);
            h = hit + strlen(KENG_LINK_PLACEHOLDER);
        }
        if (rc == 0) rc = keng_buf_puts(b, h);
    } else {
        rc = keng_buf_puts(b, "<!doctype html><html><head><meta charset=\"utf-8\"></head><body>"
                              "<p>");
        keng_buf text;
        keng_buf_init(&text, 0);
        if (rc == 0) rc = keng_channel_text_with_link(req, &text);
        if (rc == 0) rc = html_escape(b, text.data ? text.data : "");
        keng_buf_free(&text);
        if (rc == 0) rc = keng_buf_puts(b, "</p>");
        if (rc == 0 && m->first_photo) {
            rc = keng_buf_puts(b, "<p><img alt=\"\" style=\"max-width:100%\" src=\"");
            if (rc == 0) rc = html_escape(b, m->first_photo);
            if (rc == 0) rc = keng_buf_puts(b, "\"></p>");
        }
        if (rc == 0) rc = keng_buf_puts(b, "</body></html>");
    }
    /* A text from templates carries the note and the link in place already. */
    if (strstr(m->text, KENG_LINK_PLACEHOLDER)) return rc;
    /* The template's HTML is shared by all recipients; the personal link goes after it. */
    if (rc == 0 && m->note && *m->note) {
        rc = keng_buf_puts(b, "\r\n<p>");
        if (rc == 0) rc = html_escape(b, m->note);
        if (rc == 0) rc = keng_buf_puts(b, "</p>");
    }
    if (rc == 0 && req->link_url[0]) {
        rc = keng_buf_puts(b, "\r\n<p><a href=\"");
        if (rc == 0) rc = html_escape(b, req->link_url);
        if (rc == 0) rc = keng_buf_puts(b, "\">");
        if (rc == 0) rc = html_escape(b, req->link_url);
        if (rc == 0) rc = keng_buf_puts(b, "</a></p>");
    }
    return rc;
}

static int add_header(struct curl_slist **h, const char *line)
{
    struct curl_slist *t = curl_slist_append(*h, line);
    if (!t) return -ENOMEM;
    *h = t;
    return 0;
}

static int email_prepare(keng_channel_req *req, char *err, size_t errlen)
{
    const keng_fanout_config *cfg = req->cfg;
    const char *to =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req->address, "address"));
    if (!to || !address_ok(to)) {
        snprintf(err, errlen, "email contact has no valid address");
        return -EINVAL;
    }
    if (!address_ok(cfg->smtp_from)) {
        snprintf(err, errlen, "smtp_from is not a plain address");
        return -EINVAL;
    }
    keng_buf text, html, line;
    keng_buf_init(&text, 0);
    keng_buf_init(&html, 0);
    keng_buf_init(&line, 8192);
    CURL *e = req->easy;
    int rc = keng_channel_text_with_link(req, &text);
    if (rc == 0) rc = build_html(req, &html);
    char date[64];
    time_t now = (time_t)req->now;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "Date: %a, %d %b %Y %H:%M:%S +0000", &tm);
    if (rc == 0) rc = add_header(&req->headers, date);
    if (rc == 0) rc = keng_buf_printf(&line, "To: <%s>", to);
    if (rc == 0) rc = add_header(&req->headers, line.data);
    keng_buf_reset(&line);
    if (rc == 0) rc = keng_buf_printf(&line, "From: <%s>", cfg->smtp_from);
    if (rc == 0) rc = add_header(&req->headers, line.data);
    keng_buf_reset(&line);
    if (rc == 0) rc = keng_buf_printf(&line, "Message-ID: <%s@keng>", req->idem_key);
    if (rc == 0) rc = add_header(&req->headers, line.data);
    keng_buf_reset(&line);
    if (rc == 0) rc = subject_header(req->msg->subject[0] ? req->msg->subject : "keng", &line);
    if (rc == 0) rc = add_header(&req->headers, line.data);
    keng_buf_reset(&line);
    if (rc == 0) rc = keng_buf_printf(&line, "<%s>", to);
    if (rc == 0) rc = add_header(&req->rcpt, line.data);
    keng_buf_reset(&line);
    if (rc == 0) rc = keng_buf_printf(&line, "<%s>", cfg->smtp_from);
    if (rc == 0) {
        curl_mime *mime = req->mime = curl_mime_init(e);
        curl_mime *alt = mime ? curl_mime_init(e) : NULL;
        curl_mimepart *p;
        struct curl_slist *disp = NULL;
        if (!mime || !alt) rc = -ENOMEM;
        if (rc == 0 && (p = curl_mime_addpart(alt))) { /* plain text first: the fallback */
            curl_mime_data(p, text.len ? text.data : "", CURL_ZERO_TERMINATED);
            curl_mime_type(p, "text/plain; charset=utf-8");
            curl_mime_encoder(p, "quoted-printable");
        } else {
            rc = -ENOMEM;
        }
        if (rc == 0 && (p = curl_mime_addpart(alt))) {
            curl_mime_data(p, html.data, CURL_ZERO_TERMINATED);
            curl_mime_type(p, "text/html; charset=utf-8");
            curl_mime_encoder(p, "quoted-printable");
        } else {
            rc = -ENOMEM;
        }
        if (rc == 0 && (p = curl_mime_addpart(mime))) {
            curl_mime_subparts(p, alt); /* mime owns alt from here */
            alt = NULL;
            curl_mime_type(p, "multipart/alternative");
            if (add_header(&disp, "Content-Disposition: inline") == 0)
                curl_mime_headers(p, disp, 1);
            else
                rc = -ENOMEM;
        } else {
            rc = -ENOMEM;
        }
        curl_mime_free(alt);
    }
    if (rc == 0) {
        curl_easy_setopt(e, CURLOPT_URL, cfg->smtp_url);
        curl_easy_setopt(e, CURLOPT_MAIL_FROM, line.data);
        curl_easy_setopt(e, CURLOPT_MAIL_RCPT, req->rcpt);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
        curl_easy_setopt(e, CURLOPT_MIMEPOST, req->mime);
        if (cfg->smtp_user) curl_easy_setopt(e, CURLOPT_USERNAME, cfg->smtp_user);
        if (cfg->smtp_password) curl_easy_setopt(e, CURLOPT_PASSWORD, cfg->smtp_password);
        /* smtp:// upgrades with STARTTLS when the server offers it; smtps:// is TLS from the
         * start. Credentials never go out in the clear when TLS is available. */
        curl_easy_setopt(e, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
    } else {
        snprintf(err, errlen, "cannot build the e-mail");
    }
    keng_buf_free(&text);
    keng_buf_free(&html);
    keng_buf_free(&line);
    return rc;
}

static void email_judge(const keng_channel_req *req, const keng_channel_response *resp,
                        keng_channel_result *res)
{
    (void)req;
    res->code = (int)resp->status;
    res->retry_after_s = -1;
    res->error[0] = '\0';
    if (resp->cc == CURLE_OK) {
        res->verdict = KENG_CH_DELIVERED;
        return;
    }
    res->verdict = (resp->status >= 500 && resp->status < 600) || resp->cc == CURLE_LOGIN_DENIED
                       ? KENG_CH_DEAD
                       : KENG_CH_RETRY;
    snprintf(res->error, sizeof res->error, "smtp: %s",
             resp->curl_error && *resp->curl_error ? resp->curl_error
                                                   : curl_easy_strerror(resp->cc));
}

const keng_channel_ops keng_channel_email = {
    .type = "email",
    .configured = email_configured,
    .prepare = email_prepare,
    .judge = email_judge,
};
