/* channel email: SMTP through libcurl. One message per delivery:
 *
 *   multipart/alternative
 *   ├── text/plain; charset=UTF-8               the text, with the recipient's link
 *   └── multipart/related; type="text/html"     (only text/html when no thumbnail goes along)
 *       ├── text/html; charset=UTF-8            messages.html from the templates, else a page
 *       │                                       made from the text; the link as a link
 *       └── image/jpeg, inline, Content-ID      the first photo's thumbnail, from DATA/media,
 *                                               shown by the HTML's <img src="cid:…">
 *
 * A UTF-8 Subject as RFC 2047 encoded words, Message-ID from the idempotency key (written as an
 * RFC 5322 dot-atom) so a receiving system can drop a repeat. SMTP 5xx is dead, 4xx and network
 * errors retry. A thumbnail that cannot be read never fails a delivery: the e-mail goes without
 * the image. */
#include "keng/channel.h"
#include "keng/fanout.h"
#include "keng/media.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A thumbnail is a 320-pixel JPEG of some tens of KB; a bigger file is not what we made. */
#define EMAIL_THUMB_MAX (1u << 20)

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

/* "Subject: =?UTF-8?B?…?=", folded before each further encoded word: words of ≤ 39 bytes cut on
 * character boundaries, so every line stays under RFC 5322's 78 characters (and each word under
 * RFC 2047's 75). */
static int subject_header(const char *s, keng_buf *out)
{
    int rc = keng_buf_puts(out, "Subject:");
    size_t len = strlen(s), i = 0;
    while (rc == 0 && i < len) {
        size_t n = len - i > 39 ? 39 : len - i;
        while (n > 0 && i + n < len && ((unsigned char)s[i + n] & 0xC0) == 0x80)
            n--;
        if (n == 0) n = len - i > 39 ? 39 : len - i; /* not UTF-8: cut anywhere */
        unsigned char enc[64];
        int m = EVP_EncodeBlock(enc, (const unsigned char *)s + i, (int)n);
        rc = keng_buf_printf(out, "%s =?UTF-8?B?%.*s?=", i ? "\r\n" : "", m, (const char *)enc);
        i += n;
    }
    return rc;
}

/* The id-left of a Message-ID is an RFC 5322 dot-atom-text: atoms of atext joined by single
 * dots, with no dot at either end. An idempotency key is not always one: a group chat's key holds
 * "group:ID", and member ids may hold dots anywhere after their first character. */
#define MSGID_LEFT_MAX 200

static int msgid_keeps(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* The key as a dot-atom-text into out. Letters, digits, '-', '_' and dots between two kept
 * characters stay, so the id reads as its delivery in a mail log; every other byte (':', a dot
 * at an end or beside another dot, '=' itself) becomes "=HH". Each output character decodes one
 * way, so two keys never share an id. -ENOSPC when that is longer than MSGID_LEFT_MAX. */
static int msgid_left_encode(const char *key, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0, len = strlen(key);
    if (outlen > MSGID_LEFT_MAX + 1) outlen = MSGID_LEFT_MAX + 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        int keep = msgid_keeps(c) ||
                   (c == '.' && i > 0 && i + 1 < len && msgid_keeps((unsigned char)key[i - 1]) &&
                    msgid_keeps((unsigned char)key[i + 1]));
        size_t need = keep ? 1 : 3;
        if (n + need >= outlen) return -ENOSPC;
        if (keep) {
            out[n++] = (char)c;
        } else {
            out[n++] = '=';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (n == 0) return -EINVAL;
    out[n] = '\0';
    return 0;
}

/* "Message-ID: <LEFT@keng>" from the delivery's idempotency key, the same at every attempt. A
 * key too long to read well in a header (none that keng makes) gives "sha256-HEX" instead: no
 * encoded key looks like that, as keys hold dots between their fields. */
static int message_id_header(const char *key, keng_buf *out)
{
    char left[MSGID_LEFT_MAX + 1];
    int rc = key && *key ? msgid_left_encode(key, left, sizeof left) : -EINVAL;
    if (rc == -ENOSPC) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (!EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
            return -EIO;
        int n = snprintf(left, sizeof left, "sha256-");
        for (unsigned int i = 0; i < mdlen; i++)
            n += snprintf(left + n, sizeof left - (size_t)n, "%02x", md[i]);
        rc = 0;
    }
    return rc ? rc : keng_buf_printf(out, "Message-ID: <%s@keng>", left);
}

/* Appends s escaped for HTML text and attribute values; with br, a newline becomes <br>. */
static int html_escape(keng_buf *b, const char *s, size_t len, int br)
{
    int rc = 0;
    size_t from = 0;
    for (size_t i = 0; rc == 0 && i < len; i++) {
        const char *rep;
        switch (s[i]) {
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '&':
            rep = "&amp;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\n':
            rep = br ? "<br>\n" : NULL;
            break;
        default:
            rep = NULL;
        }
        if (!rep) continue;
        rc = keng_buf_append(b, s + from, i - from);
        if (rc == 0) rc = keng_buf_puts(b, rep);
        from = i + 1;
    }
    return rc ? rc : keng_buf_append(b, s + from, len - from);
}

static const char LINK_ANCHOR[] =
    "<a href=\"" KENG_LINK_PLACEHOLDER "\">" KENG_LINK_PLACEHOLDER "</a>";

/* The HTML when the message has none of its own (an old row, a language without an e-mail
 * template, a copy made for a fallback contact): the text, escaped, with the link as a link.
 * Placeholders stay in for expand(). */
static int page_from_text(const keng_channel_req *req, keng_buf *b)
{
    const keng_channel_msg *m = req->msg;
    int rc = keng_buf_puts(b, "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
                              "<meta name=\"viewport\" content=\"width=device-width, "
                              "initial-scale=1\"></head>\n<body style=\"margin:0;padding:16px;"
                              "font-family:Arial,Helvetica,sans-serif;font-size:17px;"
                              "line-height:1.5;color:#1b1b1b;\">\n<p>");
    const char *t = m->text, *hit;
    int placed = strstr(t, KENG_LINK_PLACEHOLDER) != NULL;
    while (rc == 0 && (hit = strstr(t, KENG_LINK_PLACEHOLDER))) {
        rc = html_escape(b, t, (size_t)(hit - t), 1);
        if (rc == 0) rc = keng_buf_puts(b, LINK_ANCHOR);
        t = hit + strlen(KENG_LINK_PLACEHOLDER);
    }
    if (rc == 0) rc = html_escape(b, t, strlen(t), 1);
    if (rc == 0) rc = keng_buf_puts(b, "</p>\n");
    /* A text from templates carries the note and the link in place already. */
    if (rc == 0 && !placed && m->note && *m->note) {
        rc = keng_buf_puts(b, "<p>");
        if (rc == 0) rc = html_escape(b, m->note, strlen(m->note), 1);
        if (rc == 0) rc = keng_buf_puts(b, "</p>\n");
    }
    /* The photo of an alert or an update (first_photo is NULL for the other events: a
     * resolution no longer shows a person's face). */
    if (rc == 0 && m->first_photo)
        rc =
            keng_buf_puts(b, "<p><img src=\"" KENG_PHOTO_PLACEHOLDER "\" alt=\"\" "
                             "style=\"display:block;max-width:100%;height:auto;border:0;\"></p>\n");
    if (rc == 0 && !placed && req->link_url[0]) rc = keng_buf_printf(b, "<p>%s</p>\n", LINK_ANCHOR);
    if (rc == 0) rc = keng_buf_puts(b, "</body></html>\n");
    return rc;
}

/* The message's own HTML. The link goes where the template put it; a template that did not
 * place it gets it as a last paragraph, as the text does. */
static int page_from_template(const keng_channel_req *req, keng_buf *b)
{
    const char *h = req->msg->html;
    if (strstr(h, KENG_LINK_PLACEHOLDER) || !req->link_url[0]) return keng_buf_puts(b, h);
    const char *end = NULL;
    for (const char *p = h; (p = strchr(p, '<')); p++)
        if (strncasecmp(p, "</body", 6) == 0) end = p;
    if (!end) end = h + strlen(h);
    int rc = keng_buf_append(b, h, (size_t)(end - h));
    if (rc == 0)
        rc = keng_buf_printf(b,
                             "<p style=\"max-width:600px;margin:8px auto;padding:0 16px;"
                             "font-family:Arial,Helvetica,sans-serif;font-size:14px;"
                             "word-break:break-all;\">%s</p>\n",
                             LINK_ANCHOR);
    return rc ? rc : keng_buf_puts(b, end);
}

/* The start of the <img tag that holds the placeholder at ph, or NULL when ph is not inside one. */
static const char *img_start(const char *from, const char *ph)
{
    for (const char *q = ph; q > from;) {
        q--;
        if (*q == '>') return NULL;
        if (*q == '<')
            return strncasecmp(q, "<img", 4) == 0 && q[4] && strchr(" \t\r\n/", q[4]) ? q : NULL;
    }
    return NULL;
}

/* Copies src into out with the placeholders filled: the recipient's link (escaped for HTML), and
 * the photo's "cid:…" — or, without a thumbnail (cid NULL), the <img> holding it left out. */
static int expand(const char *src, const keng_channel_req *req, const char *cid, keng_buf *out)
{
    const size_t llen = strlen(KENG_LINK_PLACEHOLDER), plen = strlen(KENG_PHOTO_PLACEHOLDER);
    const char *p = src;
    int rc = 0;
    while (rc == 0) {
        const char *l = strstr(p, KENG_LINK_PLACEHOLDER), *ph = strstr(p, KENG_PHOTO_PLACEHOLDER);
        if (!l && !ph) break;
        if (l && (!ph || l < ph)) {
            rc = keng_buf_append(out, p, (size_t)(l - p));
            if (rc == 0) rc = html_escape(out, req->link_url, strlen(req->link_url), 0);
            p = l + llen;
        } else if (cid) {
            rc = keng_buf_append(out, p, (size_t)(ph - p));
            if (rc == 0) rc = keng_buf_printf(out, "cid:%s", cid);
            p = ph + plen;
        } else {
            const char *img = img_start(p, ph), *gt = strchr(ph + plen, '>');
            if (img && gt) {
                rc = keng_buf_append(out, p, (size_t)(img - p));
                p = gt + 1;
            } else {
                rc = keng_buf_append(out, p, (size_t)(ph - p));
                p = ph + plen;
            }
        }
    }
    return rc ? rc : keng_buf_puts(out, p);
}

/* The media id in a thumbnail URL, PUBLIC_URL/t/<id>.jpg (alert_view.c), into id. */
static int thumb_id(const char *url, char id[KENG_MEDIA_ID_LEN + 1])
{
    const char *slash = url ? strrchr(url, '/') : NULL;
    if (!slash || slash - url < 2 || slash[-1] != 't' || slash[-2] != '/') return -EINVAL;
    const char *name = slash + 1;
    if (strlen(name) != KENG_MEDIA_ID_LEN + 4 || strcmp(name + KENG_MEDIA_ID_LEN, ".jpg") != 0)
        return -EINVAL;
    memcpy(id, name, KENG_MEDIA_ID_LEN);
    id[KENG_MEDIA_ID_LEN] = '\0';
    return keng_media_valid_id(id) ? 0 : -EINVAL;
}

/* The thumbnail of media id from the store kengd keeps under DATA/media (main.c), into out
 * (its cap stops a file that grew after fstat). On a thread-pool thread (email_load), once per
 * message: the message keeps the bytes for all its e-mails, and no file is read on the loop. */
static int read_thumb(const keng_fanout_config *cfg, const char *id, keng_buf *out)
{
    char dir[PATH_MAX], path[PATH_MAX];
    if (!cfg->data_dir || !*cfg->data_dir) return -ENOENT;
    int n = snprintf(dir, sizeof dir, "%s/media", cfg->data_dir);
    if (n < 0 || (size_t)n >= sizeof dir) return -ENAMETOOLONG;
    int rc = keng_media_path(dir, id, KENG_MEDIA_THUMB_SUFFIX, path, sizeof path);
    if (rc) return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st))
        rc = -errno;
    else if (!S_ISREG(st.st_mode))
        rc = -EISDIR;
    else if (st.st_size <= 0 || (uint64_t)st.st_size > EMAIL_THUMB_MAX)
        rc = -EFBIG;
    char chunk[16384];
    while (rc == 0) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rc = -errno;
        if (r <= 0) break;
        rc = keng_buf_append(out, chunk, (size_t)r);
    }
    close(fd);
    if (rc == 0 && out->len == 0) rc = -ENODATA;
    return rc;
}

/* s with every bare LF made CRLF: MIME text has CRLF line ends, and curl's quoted-printable
 * encoder keeps a CRLF as a line break but writes a lone LF as "=0A". */
static int crlf(const keng_buf *s, keng_buf *out)
{
    int rc = 0;
    size_t from = 0;
    for (size_t i = 0; rc == 0 && i < s->len; i++) {
        if (s->data[i] != '\n' || (i > 0 && s->data[i - 1] == '\r')) continue;
        rc = keng_buf_append(out, s->data + from, i - from);
        if (rc == 0) rc = keng_buf_append(out, "\r\n", 2);
        from = i + 1;
    }
    if (rc == 0) rc = keng_buf_append(out, s->len ? s->data + from : "", s->len - from);
    return rc;
}

static int add_header(struct curl_slist **h, const char *line)
{
    struct curl_slist *t = curl_slist_append(*h, line);
    if (!t) return -ENOMEM;
    *h = t;
    return 0;
}

/* One leaf part: data (copied by curl), its type and transfer encoding, and headers (taken). */
static int mime_leaf(curl_mime *m, const char *type, const char *data, size_t len,
                     const char *encoder, struct curl_slist *headers)
{
    curl_mimepart *p = curl_mime_addpart(m);
    if (!p) {
        curl_slist_free_all(headers);
        return -ENOMEM;
    }
    CURLcode cc = curl_mime_data(p, data, len);
    if (cc == CURLE_OK) cc = curl_mime_type(p, type);
    if (cc == CURLE_OK) cc = curl_mime_encoder(p, encoder);
    if (cc == CURLE_OK && headers) {
        cc = curl_mime_headers(p, headers, 1);
        headers = NULL; /* the part owns them now */
    }
    curl_slist_free_all(headers);
    return cc == CURLE_OK ? 0 : -ENOMEM;
}

/* The body (see the top of this file) into req->mime. The top-level type comes from the
 * "Content-Type: multipart/alternative" message header: curl adds the boundary to it. */
static int build_mime(keng_channel_req *req, const keng_buf *text, const keng_buf *html,
                      const keng_buf *thumb, const char *cid)
{
    CURL *e = req->easy;
    curl_mime *top = req->mime = curl_mime_init(e);
    if (!top) return -ENOMEM;
    int rc = mime_leaf(top, "text/plain; charset=UTF-8", text->len ? text->data : "", text->len,
                       "quoted-printable", NULL);
    if (rc == 0 && !cid)
        return mime_leaf(top, "text/html; charset=UTF-8", html->data, html->len, "quoted-printable",
                         NULL);
    curl_mime *rel = rc == 0 ? curl_mime_init(e) : NULL;
    if (rc == 0 && !rel) rc = -ENOMEM;
    if (rc == 0)
        rc = mime_leaf(rel, "text/html; charset=UTF-8", html->data, html->len, "quoted-printable",
                       NULL);
    if (rc == 0) {
        struct curl_slist *h = NULL;
        keng_buf line;
        keng_buf_init(&line, 0);
        rc = keng_buf_printf(&line, "Content-ID: <%s>", cid);
        if (rc == 0) rc = add_header(&h, line.data);
        if (rc == 0) rc = add_header(&h, "Content-Disposition: inline; filename=\"photo.jpg\"");
        keng_buf_free(&line);
        if (rc == 0)
            rc = mime_leaf(rel, "image/jpeg", thumb->data, thumb->len, "base64", h);
        else
            curl_slist_free_all(h);
    }
    curl_mimepart *p = rc == 0 ? curl_mime_addpart(top) : NULL;
    if (rc == 0 && !p) rc = -ENOMEM;
    if (rc == 0 && curl_mime_subparts(p, rel) != CURLE_OK) rc = -ENOMEM;
    if (rc == 0) {
        rel = NULL; /* top owns it from here */
        /* RFC 2387: the root part's type, so that a reader knows what to show. */
        if (curl_mime_type(p, "multipart/related; type=\"text/html\"") != CURLE_OK) rc = -ENOMEM;
    }
    curl_mime_free(rel);
    return rc;
}

static int email_prepare(keng_channel_req *req, char *err, size_t errlen)
{
    const keng_fanout_config *cfg = req->cfg;
    const keng_channel_msg *m = req->msg;
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
    keng_buf text, src, html, line, ttext, thtml;
    keng_buf_init(&text, 0);
    keng_buf_init(&src, 0);
    keng_buf_init(&html, 0);
    keng_buf_init(&ttext, 0);
    keng_buf_init(&thtml, 0);
    keng_buf_init(&line, 8192);
    CURL *e = req->easy;
    int rc = keng_channel_text_with_link(req, &text);
    if (rc == 0)
        rc = m->html && *m->html ? page_from_template(req, &src) : page_from_text(req, &src);
    /* The thumbnail goes along only when the HTML shows it. */
    char id[KENG_MEDIA_ID_LEN + 1], cid[KENG_MEDIA_ID_LEN + 32];
    int with_thumb = rc == 0 && src.data && strstr(src.data, KENG_PHOTO_PLACEHOLDER) &&
                     m->file_state == KENG_MSG_FILE_READ && m->file.len > 0 &&
                     thumb_id(m->first_photo, id) == 0;
    if (with_thumb) snprintf(cid, sizeof cid, "%s.thumb@keng", id);
    if (rc == 0) rc = expand(src.data ? src.data : "", req, with_thumb ? cid : NULL, &html);
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
    if (rc == 0) rc = message_id_header(req->idem_key, &line);
    if (rc == 0) rc = add_header(&req->headers, line.data);
    keng_buf_reset(&line);
    if (rc == 0) rc = subject_header(m->subject[0] ? m->subject : "keng", &line);
    if (rc == 0) rc = add_header(&req->headers, line.data);
    if (rc == 0) rc = add_header(&req->headers, "Content-Type: multipart/alternative");
    keng_buf_reset(&line);
    if (rc == 0) rc = keng_buf_printf(&line, "<%s>", to);
    if (rc == 0) rc = add_header(&req->rcpt, line.data);
    keng_buf_reset(&line);
    if (rc == 0) rc = keng_buf_printf(&line, "<%s>", cfg->smtp_from);
    if (rc == 0) rc = crlf(&text, &ttext);
    if (rc == 0) rc = crlf(&html, &thtml);
    if (rc == 0) rc = build_mime(req, &ttext, &thtml, &m->file, with_thumb ? cid : NULL);
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
    keng_buf_free(&src);
    keng_buf_free(&html);
    keng_buf_free(&ttext);
    keng_buf_free(&thtml);
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

/* The message's first photo's thumbnail, when it is one of ours (PUBLIC_URL/t/ID.jpg). */
static int email_load(const keng_fanout_config *cfg, const keng_channel_msg *m, keng_buf *out)
{
    char id[KENG_MEDIA_ID_LEN + 1];
    if (thumb_id(m->first_photo, id)) return -ENOENT;
    keng_buf_init(out, EMAIL_THUMB_MAX);
    return read_thumb(cfg, id, out);
}

const keng_channel_ops keng_channel_email = {
    .type = "email",
    .configured = email_configured,
    .prepare = email_prepare,
    .judge = email_judge,
    .load = email_load,
};
