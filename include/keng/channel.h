/* channel: what a delivery channel is to the fan-out engine — a small table of functions that
 * builds one request (a curl easy handle, or a line for the file channel) from a message row, a
 * delivery row and a link, and judges the response (delivered / retry, maybe after N seconds /
 * dead, with the reason). One file per channel (src/channel_*.c); none of them touches the loop,
 * the store or the multi handle: the engine (fanout.c) owns those. Loop thread only.
 *
 * Ownership: everything a channel attaches to a keng_channel_req (body, headers, mime) lives in
 * the req and is released by keng_channel_req_clear, called by the engine after each transfer. */
#ifndef KENG_CHANNEL_H
#define KENG_CHANNEL_H

/* The placeholder that stands for the recipient's own reply or relay link in a message rendered
 * from templates; keng_channel_text_with_link puts each delivery's link in its place. */
#define KENG_LINK_PLACEHOLDER "@@KENG_LINK@@"
/* The src of the first photo in an e-mail's HTML (template data "photo_src"): the e-mail channel
 * puts the cid: of the inline thumbnail there, or drops the <img> when it cannot read it. */
#define KENG_PHOTO_PLACEHOLDER "@@KENG_PHOTO@@"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdint.h>

#include "keng/buf.h"

typedef struct keng_fanout_config keng_fanout_config;

/* A message row (messages table), loaded once and shared by all deliveries pointing at it.
 * webhook_head caches the part of the webhook body that is the same for every recipient. */
typedef struct keng_channel_msg {
    int64_t id, revision;
    char *alert_id, *event, *lang, *channel, *text, *subject, *html, *alert_json, *photos;
    char *note;        /* NULL when none */
    char *first_photo; /* first URL of photos; NULL when none or the event is not alert/update */
    keng_buf webhook_head; /* {"event":…,"alert":…,"text":…,"photos":[…] (no closing brace) */
    /* The text of keng_channel_text_with_link escaped for a JSON string (no quotes), with
     * KENG_LINK_PLACEHOLDER where the link goes; webhook_text_tail: none in the text, the link
     * goes at the end after a blank line (when there is one). */
    keng_buf webhook_text;
    int webhook_text_tail;
    int refs;
    /* The engine's: its alert's current revision and status ("" unknown: no such alert), read
     * at most once a second (alert_read, uv_now), to tell a superseded delivery cheaply. */
    int64_t alert_revision;
    char alert_status[16];
    uint64_t alert_read;
    /* What the channel's load op read from disk for this message (e-mail: the first photo's
     * thumbnail), read once per message in the thread pool before its first delivery. */
    keng_buf file;
    enum {
        KENG_MSG_FILE_UNREAD,
        KENG_MSG_FILE_READING,
        KENG_MSG_FILE_READ,
        KENG_MSG_FILE_NONE
    } file_state;
} keng_channel_msg;

/* One delivery being attempted. The engine fills the inputs; the channel the outputs. */
#define KENG_REQ_HDRS 5
#define KENG_REQ_HDR_LINE 320

typedef struct keng_channel_req {
    /* inputs (borrowed) */
    const keng_fanout_config *cfg;
    const keng_channel_msg *msg;
    int64_t delivery_id;
    const char *alert_id, *recipient, *idem_key;
    char link_kind;       /* 'r', 'l' or 0 */
    const char *link_url; /* "" when none */
    cJSON *address;       /* the contact object */
    int64_t now;          /* unix seconds */
    CURL *easy;           /* with timeouts/private/write callback set; the options of an earlier
                           * transfer stay only when this channel has `reuse` */
    struct keng_hmac_cache *macs; /* the engine's keyed HMAC contexts (webhook signatures) */
    /* built by the channel, released by keng_channel_req_clear */
    keng_buf body;
    struct curl_slist *headers; /* from curl_slist_append, or into hdr when hdr_fixed */
    /* Header lines without an allocation (the webhook's, once per delivery): nodes and their
     * text live here, in the job, for as long as curl reads them. */
    struct curl_slist hdr[KENG_REQ_HDRS];
    char hdr_line[2][KENG_REQ_HDR_LINE];
    int hdr_fixed;
    int built; /* build ran (body and header lines made): prepare only attaches them */
    struct curl_slist *rcpt;
    curl_mime *mime;
} keng_channel_req;

enum keng_channel_verdict { KENG_CH_DELIVERED, KENG_CH_RETRY, KENG_CH_DEAD };

/* The judgement of one response. */
typedef struct keng_channel_result {
    enum keng_channel_verdict verdict;
    long retry_after_s; /* RETRY: at least this many seconds; -1 = use the backoff */
    int code;           /* HTTP or SMTP status, 0 for none */
    char error[256];    /* "" when delivered */
} keng_channel_result;

/* The transfer as the engine saw it, handed to judge(). */
typedef struct keng_channel_response {
    CURLcode cc;
    long status;        /* CURLINFO_RESPONSE_CODE */
    long retry_after_s; /* CURLINFO_RETRY_AFTER, -1 when absent */
    const char *body;   /* "" when empty; cut at the configured cap */
    size_t body_len;
    int truncated;          /* the response was bigger than the cap */
    const char *curl_error; /* CURLOPT_ERRORBUFFER text */
} keng_channel_response;

typedef struct keng_channel_ops {
    const char *type; /* the `type` of a contact object and the deliveries.channel value */
    /* 1 when the config names what this channel needs (base URL and token, SMTP server …). */
    int (*configured)(const keng_fanout_config *cfg);
    /* Sets URL, method, headers and body on req->easy. 0 or a negative errno (then: dead, with
     * err filled). NULL for the file channel. */
    int (*prepare)(keng_channel_req *req, char *err, size_t errlen);
    /* NULL, or the part of prepare that needs no curl handle — body, header lines, signature
     * — which the engine runs on a thread-pool thread, for a batch of deliveries at once, soon
     * after their claim (it sets req->built; prepare then only attaches what it made). It
     * reads req's inputs and writes only req's body and hdr*, and takes its HMACs from macs
     * (the batch's own, not req->macs). 0 or a negative errno with err filled. */
    int (*build)(keng_channel_req *req, struct keng_hmac_cache *macs, char *err, size_t errlen);
    /* Judges a finished transfer. NULL for the file channel. */
    void (*judge)(const keng_channel_req *req, const keng_channel_response *resp,
                  keng_channel_result *res);
    /* The file channel instead appends one line (JSON + '\n') to out. */
    int (*line)(const keng_channel_req *req, keng_buf *out);
    /* NULL, or what prepare needs from disk, read into out (empty; set its cap) on a thread-pool
     * thread once per message, before the message's first delivery is prepared (which then finds
     * it in msg->file; file_state NONE when this failed or there is nothing to read). It may only
     * read cfg and m's strings, which do not change. 0 or a negative errno. */
    int (*load)(const keng_fanout_config *cfg, const keng_channel_msg *m, keng_buf *out);
    /* 1 when prepare sets no options but CURLOPT_URL, _HTTPHEADER, _POSTFIELDS and
     * _POSTFIELDSIZE_LARGE, all four each time: a handle such a channel used goes to the next
     * delivery of such a channel as it is, without curl_easy_reset. 0: reset before each use. */
    int reuse;
} keng_channel_ops;

extern const keng_channel_ops keng_channel_webhook;
extern const keng_channel_ops keng_channel_zalo;
extern const keng_channel_ops keng_channel_telegram;
extern const keng_channel_ops keng_channel_email;
extern const keng_channel_ops keng_channel_file;

/* The channel for a type name, NULL when unknown. */
const keng_channel_ops *keng_channel_find(const char *type);

/* Releases what a channel attached to req (body, header and recipient lists, mime). */
void keng_channel_req_clear(keng_channel_req *req);

/* Shared helpers for channels. */
/* Appends s as a JSON string literal (quotes, escapes) to b. */
int keng_channel_json_str(keng_buf *b, const char *s);
/* Appends the n bytes of s escaped as inside a JSON string, without the quotes. */
int keng_channel_json_esc(keng_buf *b, const char *s, size_t n);
/* The generic HTTP judgement by the final status: 2xx delivered; 408, 429 and 5xx retry
 * (Retry-After honoured); other 4xx dead. A status decides even when the transfer failed after
 * it (an over-size response cut, an HTTP/2 stream reset after an early answer); a network error
 * or timeout before any status is a failed attempt (retry). */
void keng_channel_judge_http(const keng_channel_response *resp, keng_channel_result *res);
/* The text plus the link on its own line (reply or relay URL), into out. */
int keng_channel_text_with_link(const keng_channel_req *req, keng_buf *out);
/* Copies at most max_chars UTF-8 characters of s into out, ending with "…" when cut. */
int keng_channel_utf8_cut(const char *s, size_t max_chars, keng_buf *out);
/* The text with the recipient's link (as keng_channel_text_with_link) in at most max characters
 * — code points, or UTF-16 units when utf16 (Telegram counts those: an emoji is 2). When it must
 * be cut, the words are cut (ending with "…") and the link is kept whole on its own last line. */
int keng_channel_text_fit(const keng_channel_req *req, size_t max, int utf16, keng_buf *out);

#endif
