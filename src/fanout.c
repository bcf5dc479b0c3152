#include "keng/fanout.h"

#include "keng/auth.h"
#include "keng/channel.h"
#include "keng/log.h"
#include "keng/outbox.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FO_CLAIM_CHUNK 512       /* rows per claim statement */
#define FO_FLUSH_ROWS 500        /* results per write transaction, at most: bounds the stall */
#define FO_FLUSH_MS 20           /* results wait at most this long before they are written */
#define FO_MSG_CACHE 1024        /* message rows kept in memory */
#define FO_MSG_FILES (8u << 20)  /* bytes of their files (keng_channel_ops.load) kept with them */
#define FO_FILE_MAX (4u << 20)   /* bytes of file-channel lines waiting for one write */
#define FO_HOST_BUCKETS 256      /* hosts by hash of scheme://host:port */
#define FO_BODY_MAX (1u << 20)   /* bytes of one request body */
#define FO_BUILD_BATCH 64        /* requests built per thread-pool job */
#define FO_BUILD_FRESH_S 5       /* a request built longer ago is signed again when it starts */
#define FO_BUILD_WAIT_MS 5       /* a batch the pool has not begun by then is built on the loop */
#define FO_BODY_KEEP (64u << 10) /* a released job keeps a body buffer up to this size */
#define FO_CFG_STRS 10           /* the config's strings the engine keeps its own copies of */
#define FO_STALL_MS 1000         /* a receiver at its cap with no answer for this long is stalled */
#define FO_PARK_AHEAD_S 2        /* a receiver keeps parked at most this many seconds of answers */
#define FO_GIVE_BACK_MAX_MS 60000 /* rows of a stalled receiver are given back for at most this */
#define FO_RETRY_LOAD_MS 1000     /* a row whose message could not be loaded just now waits this */
#define FO_HUNG_PROBES 1          /* transfers at once to a receiver whose last one timed out */

typedef struct fo_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    keng_fanout *f;
    struct fo_sock *prev, *next;
} fo_sock;

struct fo_host;

/* A pooled easy handle. ready: it holds the options every transfer sets (start_curl) and, of
 * its last transfer, only options a channel with `reuse` sets again each time: the next
 * delivery of such a channel skips curl_easy_reset and the common options — when it also
 * trusts the same CAs (FO_TRUST_*: a webhook with channels.webhook.ca_file trusts that file,
 * every other transfer the system's). 0: not ready. */
#define FO_TRUST_SYSTEM 1
#define FO_TRUST_WEBHOOK_CA 2
typedef struct fo_easy {
    CURL *e;
    int ready;
} fo_easy;

typedef struct fo_job {
    keng_fanout *f;
    struct fo_host *host;       /* while in flight or parked: the receiver it counts against */
    struct fo_host *dest;       /* the receiver of its transfers, NULL: not capped (set with ops) */
    struct fo_job *next, *prev; /* queue, active list, file batch or free list */
    CURL *easy;                 /* from the engine's pool while the job is in flight */
    int easy_ready;             /* easy holds the common options (see fo_easy) */
    const keng_channel_ops *ops; /* NULL until the job was checked (start_job) */
    keng_channel_msg *msg;
    int msg_gone; /* its message row does not exist (not: could not be read just now) */
    keng_channel_req req;
    int64_t id, created_at;
    char *alert_id, *recipient, *idem_key, *channel; /* point into strs */
    keng_buf strs;   /* the row's strings, one buffer reused across jobs: no malloc per row */
    int addr_shared; /* req.address is the engine's cached parse, not the job's own */
    int attempts;
    char link_kind;
    keng_buf link, resp;
    int truncated;
    uint64_t t0; /* uv_now when the attempt started */
    /* Its request built in the thread pool (keng_channel_ops.build) soon after the claim:
     * building (a batch holds it: it is not released meanwhile), orphan (given back by a stop
     * while building: the batch releases it). A build that failed leaves req.built 0: the
     * request is built again on the loop when the job starts, which reports the error. */
    int building, orphan;
    const keng_channel_ops *bops; /* the channel whose build made its request */
    char errbuf[CURL_ERROR_SIZE];
} fo_job;

/* One receiver (scheme://host:port): transfers in flight to it, and the jobs parked because it
 * has max_per_host already. The engine keeps this cap itself rather than leaving it to curl: a
 * transfer curl queues for a connection has its timeout running, so a receiver that never
 * answers used to make queued deliveries fail without ever being sent.
 *
 * Parked jobs are bounded per receiver by how fast it answers (host_park_max): a receiver that
 * hangs must not fill the engine's memory with its rows, or rows to every other receiver behind
 * them would not be claimed until its transfers time out. Rows over the bound go back to the
 * outbox, untried, due when the receiver may take them (host_give_back_at: spread at its pace,
 * not all at once), and the claim moves on to the others. A receiver that is fast, or busy only
 * now and then, is never bounded: its rate counts only while it had more to do than it could
 * take at once. */
typedef struct fo_host {
    struct fo_host *next; /* hash chain */
    char key[128];
    int inflight, parked;
    fo_job *park_head, *park_tail;
    uint64_t answered; /* uv_now of its last answer (a transfer that ended other than by timing
                          out), or of the start that found it idle: its silence starts there */
    int hung;          /* its last transfer timed out (an answer clears it) */
    int lat_ms;        /* its answers' usual latency (a moving average), 0 not known */
    uint64_t win_t0;   /* answers counted since win_t0 (win_n) give rate, at least 1 s apart */
    int win_n;
    int win_spare;   /* in this window it had a free slot and nothing waiting: rate is demand */
    int rate;        /* answers per second while saturated, last window; -1 not known */
    int64_t slot_ms; /* wall-clock ms of the next row given back, spread at its pace */
} fo_host;

typedef struct fo_result {
    keng_outbox_result r;
    char *error;
    char *alert_heap;      /* the alert id when it does not fit alert_inline */
    char alert_inline[48]; /* no malloc per result; never point at it (the array moves) */
    char *chan_heap;       /* the channel, for on_rows, likewise */
    char chan_inline[16];
    int fallback;
} fo_result;

static const char *res_alert(const fo_result *r)
{
    return r->alert_heap ? r->alert_heap : r->alert_inline;
}

static const char *res_chan(const fo_result *r)
{
    return r->chan_heap ? r->chan_heap : r->chan_inline;
}

static void res_free(fo_result *r)
{
    free(r->error);
    free(r->alert_heap);
    free(r->chan_heap);
}

struct keng_fanout {
    uv_loop_t *loop;
    keng_store *st;
    keng_fanout_config cfg;
    char *strs[FO_CFG_STRS]; /* owned copies of cfg strings */
    CURLM *multi;
    uv_timer_t curl_timer, pump_timer, retry_timer, grace_timer, build_timer;
    uint64_t pump_due; /* uv_now when pump_timer fires; 0 = not armed */
    fo_sock *socks;
    fo_job *q_head, *q_tail, *active, *free_jobs;
    int queued, inflight, njobs;
    /* Easy handles, last in first out: at most max_inflight exist, and the ones reused are the
     * ones still in the CPU cache (a handle per queued job measured 30 % slower in libcurl). */
    fo_easy *easies;
    int neasies;
    keng_hmac_cache *macs; /* webhook secrets, keyed once */
    fo_host *hosts[FO_HOST_BUCKETS];
    uint64_t results[6][3]; /* by channel (fo_channels) and verdict: delivered, retry, dead */
    int parked;             /* jobs waiting for a busy receiver, all hosts */
    /* Jobs waiting for their message's file (keng_channel_ops.load) and the reads under way. */
    fo_job *wait_head, *wait_tail;
    int waiting, loads;
    /* Request builds in the thread pool, one batch at a time (more at once took CPU from the
     * loop and the receivers when there are two cores): the one under way, the ones waiting
     * for it, and the HMAC cache they use (the pool's thread's alone meanwhile). */
    struct fo_build *build_now, *build_next, *build_last;
    keng_hmac_cache *bmacs;
    size_t file_bytes; /* held by cached messages' files, at most about FO_MSG_FILES */
    fo_result *res;
    int nres, res_cap;
    uint64_t res_oldest;
    keng_channel_msg **msgs;
    int nmsgs;
    /* 100,000 rows to one webhook share one address text: parse it once. */
    char *addr_text;
    cJSON *addr_json;
    int addr_refs;
    uint64_t rng;
    /* file channel: lines gather in fpend while one write of fwrite is in flight */
    uv_file fd;
    uv_fs_t freq;
    int fs_busy;
    char *fpath;
    keng_buf fpend, fwrite;
    size_t fwrite_off;
    fo_job *fpend_jobs, *fwrite_jobs;
    /* shutdown */
    int dry; /* the last claim found fewer due rows than it asked for */
    int stopping, stopped, closing;
    void (*done)(void *ud);
    void *done_ud;
    keng_fanout_stats stats;
    uint64_t t_new;
};

static void pump(keng_fanout *f);
static void fill(keng_fanout *f);

/* Parked and waiting jobs are memory too: at this many, nothing more is claimed. */
static int park_full(const keng_fanout *f)
{
    return f->parked + f->waiting >= 4 * f->cfg.max_inflight;
}
static void check_stop(keng_fanout *f);
static void file_kick(keng_fanout *f);

/* ---- small helpers ---------------------------------------------------------------------- */

#define FO_TIMERS 5

/* The engine's timers, for their init and their close. */
static void engine_timers(keng_fanout *f, uv_timer_t *out[FO_TIMERS])
{
    uv_timer_t *all[FO_TIMERS] = {&f->curl_timer, &f->pump_timer, &f->retry_timer, &f->grace_timer,
                                  &f->build_timer};
    memcpy(out, all, sizeof all);
}

static int64_t wall_now(void)
{
    return (int64_t)time(NULL);
}

/* Unix time in milliseconds (next_at is unix seconds; uv_now is the loop's own clock). */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The first whole second (next_at is in seconds) at least ms from now: a retry is never due
 * early (rounding "now + 1 s" down could make it due at once, a Retry-After too soon). */
static int64_t due_after_ms(uint64_t ms)
{
    return (wall_ms() + (int64_t)ms + 999) / 1000;
}

static uint64_t rng_next(keng_fanout *f)
{
    uint64_t x = f->rng; /* xorshift64*: jitter needs spread, not secrecy */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    f->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void schedule_pump(keng_fanout *f, uint64_t delay_ms);

static void on_pump_timer(uv_timer_t *t)
{
    keng_fanout *f = t->data;
    f->pump_due = 0;
    pump(f);
}

static void schedule_pump(keng_fanout *f, uint64_t delay_ms)
{
    if (f->stopped) return;
    uint64_t due = uv_now(f->loop) + delay_ms;
    if (f->pump_due && f->pump_due <= due) return;
    f->pump_due = due;
    uv_timer_start(&f->pump_timer, on_pump_timer, delay_ms, 0);
}

/* ---- channel helpers shared by channel_*.c ---------------------------------------------- */

const keng_channel_ops *keng_channel_find(const char *type)
{
    static const keng_channel_ops *const all[] = {&keng_channel_webhook, &keng_channel_zalo,
                                                  &keng_channel_telegram, &keng_channel_email,
                                                  &keng_channel_file};
    for (size_t i = 0; type && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->type, type) == 0) return all[i];
    return NULL;
}

void keng_channel_req_clear(keng_channel_req *req)
{
    keng_buf_reset(&req->body);
    req->built = 0;
    if (!req->hdr_fixed) curl_slist_free_all(req->headers);
    req->hdr_fixed = 0;
    curl_slist_free_all(req->rcpt);
    curl_mime_free(req->mime);
    req->headers = req->rcpt = NULL;
    req->mime = NULL;
}

int keng_channel_json_esc(keng_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = 0;
    const char *run = s, *end = s + n;
    for (const char *p = s; rc == 0 && p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (p > run) rc = keng_buf_append(b, run, (size_t)(p - run));
        char esc[6] = {'\\', 0};
        size_t en = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            en = 6;
        }
        if (rc == 0) rc = keng_buf_append(b, esc, en);
        run = p + 1;
    }
    if (rc == 0 && end > run) rc = keng_buf_append(b, run, (size_t)(end - run));
    return rc;
}

int keng_channel_json_str(keng_buf *b, const char *s)
{
    int rc = keng_buf_append(b, "\"", 1);
    if (rc == 0) rc = keng_channel_json_esc(b, s, strlen(s));
    if (rc == 0) rc = keng_buf_append(b, "\"", 1);
    return rc;
}

void keng_channel_judge_http(const keng_channel_response *resp, keng_channel_result *res)
{
    res->code = (int)resp->status;
    res->retry_after_s = -1;
    res->error[0] = '\0';
    /* Once a final status has arrived it is the receiver's verdict, whatever ended the transfer
     * after it: a response over the cap, cut (a write error: a 2xx with a huge body was
     * delivered), or an HTTP/2 receiver that answered before reading the whole body and reset
     * the stream, as RFC 9113 §8.1 lets it (NO_ERROR; the client must not discard the
     * response), which this libcurl reports as a stream error or waits on until the timeout.
     * Without a status there is nothing to go on: a failed attempt. */
    if (resp->status < 200 && (resp->truncated || resp->cc != CURLE_OK)) {
        res->verdict = KENG_CH_RETRY;
        snprintf(res->error, sizeof res->error, "%s",
                 resp->truncated                         ? "response too large, no status"
                 : resp->curl_error && *resp->curl_error ? resp->curl_error
                                                         : curl_easy_strerror(resp->cc));
        return;
    }
    long s = resp->status;
    if (s >= 200 && s < 300) {
        res->verdict = KENG_CH_DELIVERED;
        return;
    }
    res->verdict = (s == 408 || s == 429 || s >= 500) ? KENG_CH_RETRY : KENG_CH_DEAD;
    if (res->verdict == KENG_CH_RETRY) res->retry_after_s = resp->retry_after_s;
    /* The first line of the body says more than the status alone (it is the peer's words). */
    size_t n = 0;
    while (n < resp->body_len && n < 160 && resp->body[n] != '\n' && resp->body[n] != '\r')
        n++;
    snprintf(res->error, sizeof res->error, "HTTP %ld%s%.*s", s, n ? ": " : "", (int)n, resp->body);
}

/* Appends s[0, n) to out with every link placeholder replaced by link. */
static int put_linked(keng_buf *out, const char *s, size_t n, const char *link)
{
    size_t pl = strlen(KENG_LINK_PLACEHOLDER);
    const char *end = s + n;
    int rc = 0;
    while (rc == 0 && s < end) {
        const char *hit = memmem(s, (size_t)(end - s), KENG_LINK_PLACEHOLDER, pl);
        const char *stop = hit ? hit : end;
        rc = keng_buf_append(out, s, (size_t)(stop - s));
        if (rc == 0 && hit) rc = keng_buf_puts(out, link);
        s = hit ? hit + pl : end;
    }
    return rc;
}

int keng_channel_text_with_link(const keng_channel_req *req, keng_buf *out)
{
    /* A text rendered from templates holds the recipient's link where the wording wants it
     * (and the leader's note already): put the link there. */
    const char *text = req->msg->text;
    if (strstr(text, KENG_LINK_PLACEHOLDER))
        return put_linked(out, text, strlen(text), req->link_url ? req->link_url : "");
    int rc = keng_buf_puts(out, req->msg->text);
    if (rc == 0 && req->msg->note && *req->msg->note)
        rc = keng_buf_printf(out, "\n\n%s", req->msg->note);
    if (rc == 0 && req->link_url && *req->link_url)
        rc = keng_buf_printf(out, "\n\n%s", req->link_url);
    return rc;
}

/* Units of one code point starting at lead byte c: 1, or 2 for a UTF-16 surrogate pair. */
static size_t cp_units(unsigned char c, int utf16)
{
    return utf16 && c >= 0xF0 ? 2 : 1;
}

static size_t text_units(const char *s, int utf16)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n += cp_units((unsigned char)*s, utf16);
    return n;
}

static int text_cut(const char *s, size_t max, int utf16, keng_buf *out)
{
    if (max == 0) return 0;
    if (text_units(s, utf16) <= max) return keng_buf_puts(out, s);
    size_t units = 0, i = 0;
    while (s[i]) { /* keep whole code points while they and the ellipsis (1 unit) fit */
        size_t u = cp_units((unsigned char)s[i], utf16), len = 1;
        while (s[i + len] && ((unsigned char)s[i + len] & 0xC0) == 0x80)
            len++;
        if (units + u + 1 > max) break;
        units += u;
        i += len;
    }
    int rc = keng_buf_append(out, s, i);
    return rc ? rc : keng_buf_puts(out, "…");
}

int keng_channel_utf8_cut(const char *s, size_t max_chars, keng_buf *out)
{
    return text_cut(s, max_chars, 0, out);
}

/* A text too long whose template placed the link: the words before the link's line are cut, and
 * what ends the message stays whole after them — the link's line (its label and the link) and
 * the lines after it (the ward's duty phone), or, when those take more than half the room, the
 * link's line alone. 1 when done so, 0 when it cannot be (no placeholder, or the line alone does
 * not fit), or a negative errno. */
static int fit_keeping_tail(const keng_channel_req *req, size_t max, int utf16, keng_buf *out)
{
    const char *t = req->msg->text, *hit = strstr(t, KENG_LINK_PLACEHOLDER);
    if (!hit) return 0;
    const char *ls = hit, *le = strchr(hit, '\n');
    while (ls > t && ls[-1] != '\n')
        ls--;
    if (!le) le = hit + strlen(hit);
    size_t head_len = (size_t)(ls - t);
    while (head_len && t[head_len - 1] == '\n')
        head_len--;
    keng_buf keep, head;
    keng_buf_init(&keep, 0);
    keng_buf_init(&head, 0);
    int rc = put_linked(&keep, ls, strlen(ls), req->link_url);
    if (rc == 0 && text_units(keep.data, utf16) + 2 > max / 2) {
        keng_buf_reset(&keep);
        rc = put_linked(&keep, ls, (size_t)(le - ls), req->link_url);
    }
    int done = 0;
    size_t ku = rc == 0 ? text_units(keep.data ? keep.data : "", utf16) + 2 : 0;
    if (rc == 0 && ku < max) {
        rc = put_linked(&head, t, head_len, "");
        if (rc == 0) rc = text_cut(head.data ? head.data : "", max - ku, utf16, out);
        if (rc == 0) rc = keng_buf_printf(out, "\n\n%s", keep.data);
        done = rc == 0;
    }
    keng_buf_free(&keep);
    keng_buf_free(&head);
    return rc ? rc : done;
}

int keng_channel_text_fit(const keng_channel_req *req, size_t max, int utf16, keng_buf *out)
{
    keng_buf full;
    keng_buf_init(&full, 0);
    int rc = keng_channel_text_with_link(req, &full);
    const char *text = full.data ? full.data : "";
    if (rc || text_units(text, utf16) <= max || !req->link_url || !*req->link_url) {
        if (rc == 0) rc = text_cut(text, max, utf16, out);
        keng_buf_free(&full);
        return rc;
    }
    rc = fit_keeping_tail(req, max, utf16, out); /* writes nothing when it returns 0 */
    if (rc) {
        keng_buf_free(&full);
        return rc < 0 ? rc : 0;
    }
    /* Else cut the words, never the household's link, which goes on a line of its own at the
     * end. */
    keng_channel_req bare = *req;
    bare.link_url = "";
    keng_buf_reset(&full);
    rc = keng_channel_text_with_link(&bare, &full);
    size_t link = text_units(req->link_url, utf16) + 2;
    if (rc == 0) rc = text_cut(full.data ? full.data : "", max > link ? max - link : 0, utf16, out);
    if (rc == 0) rc = keng_buf_printf(out, "\n\n%s", req->link_url);
    keng_buf_free(&full);
    return rc;
}

/* ---- message cache ---------------------------------------------------------------------- */

/* Drops a message's file: it is read again if a delivery needs it. */
static void msg_file_drop(keng_fanout *f, keng_channel_msg *m)
{
    f->file_bytes -= m->file.len;
    keng_buf_free(&m->file);
    m->file_state = KENG_MSG_FILE_UNREAD;
}

static void msg_free(keng_fanout *f, keng_channel_msg *m)
{
    if (!m) return;
    free(m->alert_id), free(m->event), free(m->lang), free(m->channel), free(m->text);
    free(m->subject), free(m->html), free(m->alert_json), free(m->photos), free(m->note);
    free(m->first_photo);
    keng_buf_free(&m->webhook_head);
    keng_buf_free(&m->webhook_text);
    msg_file_drop(f, m);
    free(m);
}

static char *dup_col(sqlite3_stmt *s, int col)
{
    return strdup(keng_store_text(s, col));
}

/* The part of a webhook body shared by every recipient of a message, built once. */
static int msg_build_head(keng_channel_msg *m)
{
    keng_buf *b = &m->webhook_head;
    cJSON *alert = cJSON_Parse(m->alert_json);
    cJSON *photos = cJSON_Parse(m->photos);
    int rc = keng_buf_puts(b, "{\"event\":");
    if (rc == 0) rc = keng_channel_json_str(b, m->event);
    if (rc == 0) rc = keng_buf_puts(b, ",\"alert\":");
    if (rc == 0) rc = keng_buf_puts(b, cJSON_IsObject(alert) ? m->alert_json : "null");
    /* "text" differs per recipient (it carries their link): each delivery adds it. */
    if (rc == 0) rc = keng_buf_puts(b, ",\"photos\":[");
    /* A photo goes with the alert and its updates (Telegram's sendPhoto, Zalo's attachment, the
     * e-mail's inline thumbnail); a resolution or a cancellation carries none: a found elder's
     * or a cancelled alert's photo is no longer public (/t/ID.jpg answers 410), and a message
     * pointing at it would be refused or show a broken image. The webhook's list stays whole. */
    int with_photo = !strcmp(m->event, "alert") || !strcmp(m->event, "update");
    int i = 0;
    cJSON *p, *list = cJSON_IsArray(photos) ? photos : NULL;
    cJSON_ArrayForEach(p, list)
    {
        if (!cJSON_IsString(p) || rc) continue;
        if (i++ && (rc = keng_buf_puts(b, ","))) break;
        if ((rc = keng_channel_json_str(b, p->valuestring))) break;
        if (!m->first_photo && with_photo && !(m->first_photo = strdup(p->valuestring)))
            rc = -ENOMEM;
    }
    if (rc == 0) rc = keng_buf_puts(b, "]");
    if (rc == 0 && m->note) {
        rc = keng_buf_puts(b, ",\"note\":");
        if (rc == 0) rc = keng_channel_json_str(b, m->note);
    }
    /* The text as keng_channel_text_with_link makes it, escaped once for every recipient: the
     * placeholders, which escaping leaves as they are, mark where the link goes; without any,
     * the link goes at the end. */
    keng_buf *t = &m->webhook_text;
    if (rc == 0) rc = keng_channel_json_esc(t, m->text, strlen(m->text));
    m->webhook_text_tail = strstr(m->text, KENG_LINK_PLACEHOLDER) == NULL;
    if (rc == 0 && m->webhook_text_tail && m->note && *m->note) {
        rc = keng_channel_json_esc(t, "\n\n", 2);
        if (rc == 0) rc = keng_channel_json_esc(t, m->note, strlen(m->note));
    }
    cJSON_Delete(alert);
    cJSON_Delete(photos);
    return rc;
}

/* The message row id, from the cache or the store; NULL with *gone 1: there is no such row, with
 * *gone 0: it could not be had just now (a busy store, memory, every cache slot in use). */
static keng_channel_msg *msg_get(keng_fanout *f, int64_t id, int *gone)
{
    *gone = 0;
    for (int i = f->nmsgs - 1; i >= 0; i--)
        if (f->msgs[i]->id == id) return f->msgs[i];
    if (f->nmsgs == FO_MSG_CACHE) { /* keep the ones still in use */
        int k = 0;
        for (int i = 0; i < f->nmsgs; i++) {
            if (f->msgs[i]->refs)
                f->msgs[k++] = f->msgs[i];
            else
                msg_free(f, f->msgs[i]);
        }
        f->nmsgs = k;
        if (k == FO_MSG_CACHE) return NULL;
    }
    sqlite3_stmt *s = keng_store_stmt(
        f->st, "SELECT id, alert_id, event, lang, channel, text, subject, html, alert_json, photos,"
               " note, revision FROM messages WHERE id = ?1");
    if (!s) return NULL;
    sqlite3_bind_int64(s, 1, id);
    keng_channel_msg *m = NULL;
    int sr = sqlite3_step(s);
    *gone = sr == SQLITE_DONE;
    if (sr == SQLITE_ROW && (m = calloc(1, sizeof *m))) {
        m->id = id;
        m->alert_id = dup_col(s, 1), m->event = dup_col(s, 2), m->lang = dup_col(s, 3);
        m->channel = dup_col(s, 4), m->text = dup_col(s, 5), m->subject = dup_col(s, 6);
        m->html = dup_col(s, 7), m->alert_json = dup_col(s, 8), m->photos = dup_col(s, 9);
        if (sqlite3_column_type(s, 10) != SQLITE_NULL) m->note = dup_col(s, 10);
        m->revision = sqlite3_column_int64(s, 11);
        keng_buf_init(&m->webhook_head, 0);
        keng_buf_init(&m->webhook_text, 0);
        keng_buf_init(&m->file, 0);
        m->file_state = KENG_MSG_FILE_UNREAD;
        if (!m->alert_id || !m->event || !m->lang || !m->channel || !m->text || !m->subject ||
            !m->html || !m->alert_json || !m->photos ||
            (sqlite3_column_type(s, 10) != SQLITE_NULL && !m->note) || msg_build_head(m)) {
            msg_free(f, m);
            m = NULL;
        }
    }
    sqlite3_reset(s);
    if (m) f->msgs[f->nmsgs++] = m;
    return m;
}

/* ---- results ---------------------------------------------------------------------------- */

static int push_result(keng_fanout *f, fo_job *j, enum keng_outbox_status status, int attempts,
                       int64_t next_at, int code, const char *error, int64_t latency_ms)
{
    if (f->nres == f->res_cap) {
        int cap = f->res_cap ? f->res_cap * 2 : 256;
        fo_result *r = realloc(f->res, (size_t)cap * sizeof *r);
        if (!r) return -ENOMEM; /* the row stays 'inflight' until the next start recovers it */
        f->res = r;
        f->res_cap = cap;
    }
    fo_result *r = &f->res[f->nres];
    memset(r, 0, sizeof *r);
    r->r.id = j->id;
    r->r.status = status;
    r->r.attempts = attempts;
    r->r.next_at = next_at;
    r->r.last_code = code;
    r->r.latency_ms = latency_ms;
    const char *alert = j->alert_id ? j->alert_id : "";
    size_t alen = strlen(alert);
    if (alen < sizeof r->alert_inline)
        memcpy(r->alert_inline, alert, alen + 1);
    else if (!(r->alert_heap = strdup(alert)))
        return -ENOMEM;
    const char *chan = j->channel ? j->channel : "";
    size_t clen = strlen(chan);
    if (clen < sizeof r->chan_inline)
        memcpy(r->chan_inline, chan, clen + 1);
    else if (!(r->chan_heap = strdup(chan))) {
        free(r->alert_heap);
        return -ENOMEM;
    }
    if (error && !(r->error = strdup(error))) r->error = NULL;
    r->r.error = r->error;
    if (status == KENG_OUTBOX_DELIVERED) r->r.delivered_at = wall_now();
    r->fallback = status == KENG_OUTBOX_DEAD;
    if (status == KENG_OUTBOX_PENDING && !f->stopping) f->dry = 0; /* a retry may be due now */
    if (f->nres++ == 0) f->res_oldest = uv_now(f->loop);
    return 0;
}

/* Writes the gathered results (and the fallbacks of dead ones) and claims due rows, all in one
 * transaction; then tells the app which alerts changed. */
static int flush_and_claim(keng_fanout *f, int want);

/* Tells the app the status changes of the transaction just committed: the n results written
 * (each row was in flight) and the rows claimed (the jobs from claimed on). */
static void report_rows(keng_fanout *f, const fo_result *res, int n, const fo_job *claimed)
{
    if (!f->cfg.on_rows) return;
    keng_fanout_change ch[64];
    int k = 0;
    for (int i = 0; i < n; i++) {
        const keng_outbox_result *r = &res[i].r;
        ch[k++] =
            (keng_fanout_change){r->id, res_alert(&res[i]), res_chan(&res[i]), KENG_FANOUT_INFLIGHT,
                                 r->status == KENG_OUTBOX_DELIVERED    ? KENG_FANOUT_DELIVERED
                                 : r->status == KENG_OUTBOX_DEAD       ? KENG_FANOUT_DEAD
                                 : r->status == KENG_OUTBOX_SUPERSEDED ? KENG_FANOUT_SUPERSEDED
                                 : r->attempts > 0                     ? KENG_FANOUT_FAILED
                                                                       : KENG_FANOUT_PENDING};
        if (k == 64) f->cfg.on_rows(f->cfg.ud, ch, k), k = 0;
    }
    for (const fo_job *j = claimed; j; j = j->next) {
        ch[k++] = (keng_fanout_change){
            j->id, j->alert_id ? j->alert_id : "", j->channel ? j->channel : "",
            j->attempts > 0 ? KENG_FANOUT_FAILED : KENG_FANOUT_PENDING, KENG_FANOUT_INFLIGHT};
        if (k == 64) f->cfg.on_rows(f->cfg.ud, ch, k), k = 0;
    }
    if (k) f->cfg.on_rows(f->cfg.ud, ch, k);
}

static void notify(keng_fanout *f, fo_result *res, int n)
{
    if (!f->cfg.on_change) return;
    const char *seen[16];
    int nseen = 0;
    for (int i = 0; i < n; i++) {
        int dup = 0;
        const char *a = res_alert(&res[i]);
        for (int k = 0; k < nseen && !dup; k++)
            dup = strcmp(seen[k], a) == 0;
        if (dup) continue;
        if (nseen < 16) seen[nseen++] = a;
        f->cfg.on_change(f->cfg.ud, a);
    }
}

/* ---- jobs ------------------------------------------------------------------------------- */

static void easy_put(keng_fanout *f, fo_job *j)
{
    if (f->easies && f->neasies < f->cfg.max_inflight)
        f->easies[f->neasies++] = (fo_easy){j->easy, j->easy_ready};
    else
        curl_easy_cleanup(j->easy);
}

static void job_release(keng_fanout *f, fo_job *j)
{
    keng_channel_req_clear(&j->req);
    if (j->req.body.cap > FO_BODY_KEEP) /* a job on the free list keeps a small one only */
        keng_buf_free(&j->req.body);
    if (j->easy) easy_put(f, j); /* out of the multi handle already */
    j->easy = NULL;
    j->easy_ready = 0;
    j->host = j->dest = NULL;
    j->ops = NULL;
    if (j->addr_shared)
        f->addr_refs--;
    else
        cJSON_Delete(j->req.address);
    j->req.address = NULL;
    j->addr_shared = 0;
    keng_buf_reset(&j->strs);
    j->alert_id = j->recipient = j->idem_key = j->channel = NULL;
    if (j->msg) j->msg->refs--;
    j->msg = NULL;
    j->msg_gone = 0;
    keng_buf_reset(&j->link);
    keng_buf_reset(&j->resp);
    j->truncated = 0;
    j->next = f->free_jobs;
    j->prev = NULL;
    f->free_jobs = j;
}

static fo_job *job_alloc(keng_fanout *f)
{
    fo_job *j = f->free_jobs;
    if (j) {
        f->free_jobs = j->next;
        j->next = NULL;
        return j;
    }
    j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->f = f;
    keng_buf_init(&j->link, 4096);
    keng_buf_init(&j->resp, f->cfg.max_response);
    keng_buf_init(&j->req.body, FO_BODY_MAX);
    keng_buf_init(&j->strs, 64 * 1024);
    f->njobs++;
    return j;
}

/* Appends j to the list head … tail (the queue, the jobs waiting for a file, a host's parked). */
static void job_append(fo_job **head, fo_job **tail, fo_job *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static void on_claim(void *ud, const keng_outbox_row *row)
{
    keng_fanout *f = ud;
    fo_job *j = job_alloc(f);
    if (!j) {
        keng_error("fanout: out of memory; delivery %" PRId64 " waits for a restart", row->id);
        return;
    }
    j->id = row->id;
    j->created_at = row->created_at;
    j->attempts = row->attempts;
    j->link_kind = row->link_kind;
    size_t la = strlen(row->alert_id) + 1, lr = strlen(row->recipient) + 1;
    size_t lk = strlen(row->idem_key) + 1, lc = strlen(row->channel) + 1;
    if (keng_buf_append(&j->strs, row->alert_id, la) == 0 &&
        keng_buf_append(&j->strs, row->recipient, lr) == 0 &&
        keng_buf_append(&j->strs, row->idem_key, lk) == 0 &&
        keng_buf_append(&j->strs, row->channel, lc) == 0) {
        j->alert_id = j->strs.data; /* pointers only after the last append: it may move */
        j->recipient = j->alert_id + la;
        j->idem_key = j->recipient + lr;
        j->channel = j->idem_key + lk;
    } /* else NULLs: start_job makes it dead with a reason */
    if (f->addr_text && strcmp(f->addr_text, row->address) == 0) {
        j->req.address = f->addr_json;
    } else if (f->addr_refs == 0) {
        free(f->addr_text);
        cJSON_Delete(f->addr_json);
        f->addr_text = strdup(row->address);
        f->addr_json = f->addr_text ? cJSON_Parse(row->address) : NULL;
        j->req.address = f->addr_json;
    } else {
        j->req.address = cJSON_Parse(row->address);
    }
    if (j->req.address && j->req.address == f->addr_json) {
        j->addr_shared = 1;
        f->addr_refs++;
    }
    j->msg = msg_get(f, row->message_id, &j->msg_gone);
    if (j->msg) j->msg->refs++;
    job_append(&f->q_head, &f->q_tail, j);
    f->queued++;
}

static const char *const fo_channels[6] = {"webhook", "zalo_oa", "telegram",
                                           "email",   "file",    "other"};

static void count_result(keng_fanout *f, const fo_job *j, int verdict)
{
    int c = 0;
    while (c < 5 && (!j->channel || strcmp(j->channel, fo_channels[c]) != 0))
        c++;
    f->results[c][verdict]++;
}

static void retry_or_dead(keng_fanout *f, fo_job *j, int code, long retry_after_s,
                          const char *error, int64_t latency_ms)
{
    int attempts = j->attempts + 1;
    if (attempts >= f->cfg.max_attempts) {
        char msg[320];
        snprintf(msg, sizeof msg, "gave up after %d attempts: %s", attempts, error);
        f->stats.dead++;
        count_result(f, j, 2);
        push_result(f, j, KENG_OUTBOX_DEAD, attempts, 0, code, msg, latency_ms);
        return;
    }
    count_result(f, j, 1);
    uint64_t delay_ms;
    int64_t max_s = f->cfg.backoff_max_ms / 1000;
    if (retry_after_s >= 0) {
        delay_ms = 1000u * (uint64_t)(retry_after_s < max_s ? retry_after_s : max_s);
    } else {
        /* Full jitter: uniform in [0, min(max, base * 2^(attempts-1))]. */
        uint64_t cap = (uint64_t)f->cfg.backoff_base_ms;
        for (int i = 1; i < attempts && cap < (uint64_t)f->cfg.backoff_max_ms; i++)
            cap *= 2;
        if (cap > (uint64_t)f->cfg.backoff_max_ms) cap = (uint64_t)f->cfg.backoff_max_ms;
        delay_ms = rng_next(f) % (cap + 1);
    }
    f->stats.retried++;
    push_result(f, j, KENG_OUTBOX_PENDING, attempts, due_after_ms(delay_ms), code, error,
                latency_ms);
}

static void finish(keng_fanout *f, fo_job *j, const keng_channel_result *res)
{
    int64_t latency = (int64_t)(uv_now(f->loop) - j->t0);
    switch (res->verdict) {
    case KENG_CH_DELIVERED:
        if (!f->stats.first_delivery_ms) f->stats.first_delivery_ms = uv_now(f->loop) - f->t_new;
        f->stats.delivered++;
        count_result(f, j, 0);
        push_result(f, j, KENG_OUTBOX_DELIVERED, j->attempts + 1, 0, res->code, NULL, latency);
        break;
    case KENG_CH_RETRY:
        retry_or_dead(f, j, res->code, res->retry_after_s, res->error, latency);
        break;
    case KENG_CH_DEAD:
        f->stats.dead++;
        count_result(f, j, 2);
        push_result(f, j, KENG_OUTBOX_DEAD, j->attempts + 1, 0, res->code, res->error, latency);
        break;
    }
}

/* Dead without an attempt (unconfigured channel, unknown type, bad row). */
static void fail_now(keng_fanout *f, fo_job *j, const char *error)
{
    keng_channel_result r = {.verdict = KENG_CH_DEAD, .retry_after_s = -1};
    snprintf(r.error, sizeof r.error, "%s", error);
    j->t0 = uv_now(f->loop);
    finish(f, j, &r);
    job_release(f, j);
}

/* Back to pending untried (attempts, last code and error as they were), due at next_at (0: at
 * once), and released — by its batch when its request is being built. For a stop, a receiver
 * that holds too many, or a message that could not be loaded just now. */
static void give_back(keng_fanout *f, fo_job *j, int64_t next_at)
{
    j->host = NULL;
    push_result(f, j, KENG_OUTBOX_PENDING, j->attempts, next_at, -1, NULL, 0);
    if (j->building)
        j->orphan = 1; /* its batch releases it */
    else
        job_release(f, j);
}

static void active_add(keng_fanout *f, fo_job *j)
{
    j->prev = NULL;
    j->next = f->active;
    if (f->active) f->active->prev = j;
    f->active = j;
    f->inflight++;
}

static void active_remove(keng_fanout *f, fo_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        f->active = j->next;
    if (j->next) j->next->prev = j->prev;
    j->next = j->prev = NULL;
    f->inflight--;
}

/* ---- receivers -------------------------------------------------------------------------- */

/* "scheme://host:port" of url, lower case, without user info or path. */
static void host_key(const char *url, char *out, size_t outlen)
{
    const char *a = strstr(url, "://");
    size_t n = 0;
    if (a) {
        for (const char *p = url; p < a && n + 1 < outlen; p++)
            out[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
        a += 3;
    } else {
        a = url;
    }
    const char *end = a + strcspn(a, "/?#");
    const char *at = memchr(a, '@', (size_t)(end - a));
    while (at) { /* the last '@' ends the user info */
        a = at + 1;
        at = memchr(a, '@', (size_t)(end - a));
    }
    if (n + 3 < outlen) out[n++] = ':', out[n++] = '/', out[n++] = '/';
    for (const char *p = a; p < end && n + 1 < outlen; p++)
        out[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    out[n] = '\0';
}

/* The URL a job's transfer goes to, as far as the cap is concerned; NULL: not capped. */
static const char *job_origin(const keng_fanout *f, const fo_job *j)
{
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j->req.address, "url"));
    if (url) return url;
    if (!strcmp(j->ops->type, "zalo_oa")) return f->cfg.zalo_base_url;
    if (!strcmp(j->ops->type, "telegram")) return f->cfg.telegram_base_url;
    if (!strcmp(j->ops->type, "email")) return f->cfg.smtp_url;
    return NULL;
}

/* Stalled: no answer for a second, or for twice its usual latency if that is longer (a mail
 * server that takes 1.5 s a message is slow, not stalled). */
static int host_stalled(const fo_host *h, uint64_t now)
{
    uint64_t quiet = now - h->answered, limit = 2u * (uint64_t)h->lat_ms;
    return quiet >= (limit > FO_STALL_MS ? limit : FO_STALL_MS);
}

/* Transfers h may have at once: max_per_host, or a probe while its last transfer timed out
 * (four hung receivers would otherwise hold all 256 of the engine's slots, round after round of
 * timeouts, and every other receiver wait for them). */
static int host_cap(const keng_fanout *f, const fo_host *h)
{
    return h->hung && FO_HUNG_PROBES < f->cfg.max_per_host ? FO_HUNG_PROBES : f->cfg.max_per_host;
}

/* The parked jobs h may hold: the answers it gives in FO_PARK_AHEAD_S (at least its cap, so
 * that its slots stay busy); its cap when it is stalled; no bound of its own (the engine's)
 * while its rate is not known. */
static int host_park_max(const keng_fanout *f, const fo_host *h, uint64_t now)
{
    int floor = host_cap(f, h);
    if (host_stalled(h, now)) return floor;
    if (h->rate < 0) return INT_MAX;
    int64_t n = (int64_t)h->rate * FO_PARK_AHEAD_S;
    return n <= floor ? floor : n > INT_MAX ? INT_MAX : (int)n;
}

/* When a row h cannot hold now is due again (unix seconds): not before its silence has lasted
 * as long again (1 s to 60 s: a receiver down for long is asked less and less often), and one
 * row per slot of its pace after the last one given back (1 / its rate; a hung one's at best:
 * its timeout per transfer slot), so that a long backlog comes back as the receiver can take
 * it, not all at once to be claimed and given back again. Rows past 60 s ahead share that. */
static int64_t host_give_back_at(keng_fanout *f, fo_host *h, uint64_t now)
{
    uint64_t quiet = now - h->answered;
    if (quiet < 1000) quiet = 1000;
    if (quiet > FO_GIVE_BACK_MAX_MS) quiet = FO_GIVE_BACK_MAX_MS;
    int64_t wall = wall_ms(), at = wall + (int64_t)quiet;
    if (h->slot_ms > at) at = h->slot_ms;
    int64_t horizon = wall + FO_GIVE_BACK_MAX_MS;
    if (at > horizon) {
        at = horizon;
    } else {
        int64_t step = h->rate > 0 ? 1000 / h->rate : (int64_t)f->cfg.timeout_ms / host_cap(f, h);
        h->slot_ms = at + (step > 0 ? step : 1);
    }
    return (at + 999) / 1000;
}

/* A transfer to h ended after latency_ms; answered: not by timing out (a refusal is an answer:
 * it frees the slot at once). Counts its answers per second, in windows of at least 1 s. */
static void host_ended(keng_fanout *f, fo_host *h, int answered, int64_t latency_ms)
{
    uint64_t now = uv_now(f->loop);
    if (answered) {
        h->answered = now;
        h->hung = 0;
        h->win_n++;
        int l = latency_ms > 0 ? (latency_ms > 600000 ? 600000 : (int)latency_ms) : 0;
        h->lat_ms = h->lat_ms ? (7 * h->lat_ms + l) / 8 : (l ? l : 1);
    } else {
        h->hung = 1;
    }
    if (now - h->win_t0 >= 1000) {
        uint64_t r = (uint64_t)h->win_n * 1000u / (now - h->win_t0);
        h->rate = h->win_spare ? -1 : r > INT_MAX ? INT_MAX : (int)r;
        h->win_t0 = now;
        h->win_n = 0;
        h->win_spare = 0;
    }
}

/* A transfer to h starts. One that finds it idle after a silence starts its clocks afresh: an
 * hour's pause is not a stall — unless its last transfer timed out (it is still hung). */
static void host_started(keng_fanout *f, fo_host *h)
{
    uint64_t now = uv_now(f->loop);
    if (h->inflight++ == 0 && !h->hung && now - h->answered >= FO_STALL_MS) {
        h->answered = h->win_t0 = now;
        h->win_n = 0;
        h->win_spare = 0;
        h->rate = -1;
    }
}

static fo_host *host_get(keng_fanout *f, const char *url)
{
    char key[128];
    host_key(url, key, sizeof key);
    uint32_t hsh = 2166136261u;
    for (const char *p = key; *p; p++)
        hsh = (hsh ^ (unsigned char)*p) * 16777619u;
    fo_host **b = &f->hosts[hsh % FO_HOST_BUCKETS];
    for (fo_host *h = *b; h; h = h->next)
        if (!strcmp(h->key, key)) return h;
    fo_host *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    memcpy(h->key, key, sizeof key);
    h->answered = h->win_t0 = uv_now(f->loop);
    h->rate = -1;
    h->next = *b;
    *b = h;
    return h;
}

static void host_free_all(keng_fanout *f)
{
    for (int i = 0; i < FO_HOST_BUCKETS; i++) {
        while (f->hosts[i]) {
            fo_host *h = f->hosts[i];
            f->hosts[i] = h->next;
            free(h);
        }
    }
}

/* A transfer to j's host ended: the next job parked for it goes to the head of the queue. */
static void host_done(keng_fanout *f, fo_job *j)
{
    fo_host *h = j->host;
    j->host = NULL;
    if (!h) return;
    h->inflight--;
    fo_job *p = h->park_head;
    if (!p) {
        h->win_spare = 1; /* nothing waited for this slot: what it answers is all there was */
        return;
    }
    h->park_head = p->next;
    if (!h->park_head) h->park_tail = NULL;
    h->parked--;
    f->parked--;
    p->host = NULL;
    p->next = f->q_head;
    f->q_head = p;
    if (!f->q_tail) f->q_tail = p;
    f->queued++;
}

/* Parks j until one of h's transfers ends, or gives it back when h holds all it may. */
static void host_park(keng_fanout *f, fo_host *h, fo_job *j)
{
    uint64_t now = uv_now(f->loop);
    if (h->parked >= host_park_max(f, h, now)) {
        f->stats.deferred++;
        give_back(f, j, host_give_back_at(f, h, now));
        return;
    }
    j->host = h;
    job_append(&h->park_head, &h->park_tail, j);
    h->parked++;
    f->parked++;
}

/* Receivers holding more parked jobs than host_park_max (one that stalled after they were
 * parked) give the rest back, last parked first: run when parked jobs stop the claim, so that
 * rows to other receivers are claimed. */
static void host_shed(keng_fanout *f)
{
    uint64_t now = uv_now(f->loop);
    for (int i = 0; i < FO_HOST_BUCKETS; i++) {
        for (fo_host *h = f->hosts[i]; h; h = h->next) {
            int max = h->parked ? host_park_max(f, h, now) : INT_MAX;
            if (h->parked <= max) continue;
            fo_job *keep = NULL, *j = h->park_head;
            for (int k = 0; k < max; k++)
                keep = j, j = j->next;
            if (keep)
                keep->next = NULL;
            else
                h->park_head = NULL;
            h->park_tail = keep;
            while (j) {
                fo_job *next = j->next;
                h->parked--;
                f->parked--;
                f->stats.deferred++;
                give_back(f, j, host_give_back_at(f, h, now));
                j = next;
            }
        }
    }
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    fo_job *j = ud;
    size_t len = size * n;
    if (keng_buf_append(&j->resp, p, len)) {
        j->truncated = 1;
        return 0; /* CURLE_WRITE_ERROR ends the transfer: the cap holds */
    }
    return len;
}

static int start_curl(keng_fanout *f, fo_job *j, char *err, size_t errlen)
{
    if (!j->easy && f->neasies) {
        fo_easy *p = &f->easies[--f->neasies];
        j->easy = p->e;
        j->easy_ready = p->ready;
    } else if (!j->easy) {
        j->easy = curl_easy_init();
        j->easy_ready = 0;
    }
    if (!j->easy) return -ENOMEM;
    CURL *e = j->easy;
    /* The reset and the options below measured a tenth of the engine's own work per delivery
     * (the protocol list is parsed each time): a handle that holds them keeps them. */
    int trust = f->cfg.webhook_ca_file && j->ops == &keng_channel_webhook ? FO_TRUST_WEBHOOK_CA
                                                                          : FO_TRUST_SYSTEM;
    if (j->easy_ready != trust || !j->ops->reuse) {
        curl_easy_reset(e);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)f->cfg.timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)f->cfg.timeout_ms);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,smtp,smtps");
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        /* Only hosts the configuration names: no proxy from the environment (http_proxy,
         * all_proxy), which curl would otherwise look up for every transfer. */
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        /* Kept only from webhook to webhook: a handle that trusted other CAs is reset. */
        if (trust == FO_TRUST_WEBHOOK_CA)
            curl_easy_setopt(e, CURLOPT_CAINFO, f->cfg.webhook_ca_file);
    }
    j->easy_ready = 0; /* until prepare has set all it sets: a failure half-way resets it */
    j->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
    j->req.easy = e;
    int rc = j->ops->prepare(&j->req, err, errlen);
    if (rc) return rc;
    /* HTTP/2 where a TLS receiver offers it (ALPN): the transfers to it then wait for its first
     * connection and share it, rather than each opening one before the answer says h2.
     * Not for http://: HTTP/1.1 there, and nothing to wait for. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT,
                     j->dest && strncmp(j->dest->key, "https://", 8) == 0 ? 1L : 0L);
    CURLMcode mc = curl_multi_add_handle(f->multi, e);
    if (mc != CURLM_OK) {
        snprintf(err, errlen, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        return -EIO;
    }
    j->easy_ready = j->ops->reuse ? trust : 0;
    return 0;
}

/* Its row's strings and its message are in memory (when not, check_job gives it back). */
static int job_loaded(const fo_job *j)
{
    return j->msg && j->alert_id && j->recipient && j->idem_key && j->channel;
}

/* What keeps j from being sent at all, into err (NULL: nothing; *ops: its channel). */
static const char *job_fault(const keng_fanout *f, const fo_job *j, const keng_channel_ops **ops,
                             char *err, size_t errlen)
{
    *ops = j->channel ? keng_channel_find(j->channel) : NULL;
    if (j->msg_gone) return "the delivery's message does not exist";
    if (!*ops) {
        snprintf(err, errlen, "unknown channel type %s", j->channel);
        return err;
    }
    if (!(*ops)->configured(&f->cfg)) {
        snprintf(err, errlen, "channel %s is not configured", (*ops)->type);
        return err;
    }
    if (!cJSON_IsObject(j->req.address)) return "contact address is not a JSON object";
    return NULL;
}

/* m's alert's revision and status as they are now, give or take a second: read once a second
 * per message at most, so that deliveries of the latest revision cost no lookup. */
static void msg_alert(keng_fanout *f, keng_channel_msg *m)
{
    uint64_t now = uv_now(f->loop);
    if (m->alert_read && now - m->alert_read < 1000) return;
    sqlite3_stmt *s = keng_store_stmt(f->st, "SELECT revision, status FROM alerts WHERE id = ?1");
    if (!s) return; /* as it was: "" (unknown) sends */
    sqlite3_bind_text(s, 1, m->alert_id, -1, SQLITE_STATIC);
    m->alert_status[0] = '\0';
    if (sqlite3_step(s) == SQLITE_ROW) {
        m->alert_revision = sqlite3_column_int64(s, 0);
        snprintf(m->alert_status, sizeof m->alert_status, "%s", keng_store_text(s, 1));
    }
    sqlite3_reset(s);
    m->alert_read = now ? now : 1;
}

/* Whether j, about to go, was replaced by a later message of its alert or must wait for one
 * still being written (keng_outbox_superseded: KENG_OUTBOX_*); into why when superseded. Rows of
 * an alert kengd does not know (the engine's own tests) go. */
static int job_superseded(keng_fanout *f, fo_job *j, char *why, size_t whylen)
{
    keng_channel_msg *m = j->msg;
    msg_alert(f, m);
    if (!m->alert_status[0]) return KENG_OUTBOX_SEND;
    int sup = keng_outbox_superseded(f->st, j->alert_id, j->recipient, m->revision, m->event,
                                     m->alert_revision, m->alert_status);
    if (sup != KENG_OUTBOX_SUPERSEDED_BY) /* a failed lookup sends: at least once */
        return sup == KENG_OUTBOX_WAIT ? sup : KENG_OUTBOX_SEND;
    if (!strcmp(m->event, "resolve") || !strcmp(m->event, "cancel"))
        snprintf(why, whylen, "not sent: no earlier message of the alert reached %s", j->recipient);
    else if (strcmp(m->alert_status, "published") != 0)
        snprintf(why, whylen, "not sent: the alert was %s before this message went",
                 m->alert_status);
    else
        snprintf(why, whylen, "not sent: revision %" PRId64 " of the alert replaced it",
                 m->alert_revision);
    return KENG_OUTBOX_SUPERSEDED_BY;
}

/* Checks a job the first time it comes up and finds its receiver; 0, or -1 when it was made dead,
 * given back or superseded (and released). A job parked for a busy receiver comes back with ops
 * set: not checked again. */
static int check_job(keng_fanout *f, fo_job *j)
{
    char err[256];
    const keng_channel_ops *ops;
    if (!j->msg_gone && !job_loaded(j)) {
        /* Its message or its strings could not be had just now (a busy store, memory, every
         * cached message in use): that says nothing of the delivery, so no attempt is spent. */
        f->stats.given_back++;
        give_back(f, j, due_after_ms(FO_RETRY_LOAD_MS));
        return -1;
    }
    const char *fault = job_fault(f, j, &ops, err, sizeof err);
    if (fault) {
        fail_now(f, j, fault);
        return -1;
    }
    switch (job_superseded(f, j, err, sizeof err)) {
    case KENG_OUTBOX_SUPERSEDED_BY:
        f->stats.superseded++;
        push_result(f, j, KENG_OUTBOX_SUPERSEDED, j->attempts, 0, -1, err, 0);
        job_release(f, j);
        return -1;
    case KENG_OUTBOX_WAIT: /* its recipient's newer row may be written next: a second later */
        f->stats.waited++;
        give_back(f, j, due_after_ms(FO_RETRY_LOAD_MS));
        return -1;
    }
    j->ops = ops;
    const char *origin = ops->line ? NULL : job_origin(f, j);
    j->dest = origin ? host_get(f, origin) : NULL;
    return 0;
}

/* ---- a message's file, read in the thread pool (keng_channel_ops.load) --------------------- */

typedef struct fo_load {
    uv_work_t work;
    keng_fanout *f;
    keng_channel_msg *m;
    const keng_channel_ops *ops;
    keng_buf out;
    int rc;
} fo_load;

static void load_work(uv_work_t *w)
{
    fo_load *l = w->data;
    l->rc = l->ops->load(&l->f->cfg, l->m, &l->out);
}

/* After thread-pool work (a file read, a request batch): a stop may now finish, or jobs start. */
static void pool_done(keng_fanout *f)
{
    if (f->stopping)
        check_stop(f);
    else
        fill(f);
}

/* The jobs that waited for a file go first, in the order they came; those still
 * waiting come back to the list when start_job sees them. */
static void requeue_waiting(keng_fanout *f)
{
    if (!f->wait_head) return;
    f->wait_tail->next = f->q_head;
    f->q_head = f->wait_head;
    if (!f->q_tail) f->q_tail = f->wait_tail;
    f->queued += f->waiting;
    f->wait_head = f->wait_tail = NULL;
    f->waiting = 0;
}

static void load_done(uv_work_t *w, int status)
{
    fo_load *l = w->data;
    keng_fanout *f = l->f;
    keng_channel_msg *m = l->m;
    if (status == 0 && l->rc == 0 && l->out.len > 0) {
        /* Room first: the files of messages no delivery holds go (oldest first). */
        for (int i = 0; i < f->nmsgs && f->file_bytes + l->out.len > FO_MSG_FILES; i++)
            if (!f->msgs[i]->refs && f->msgs[i]->file_state == KENG_MSG_FILE_READ)
                msg_file_drop(f, f->msgs[i]);
        m->file = l->out;
        m->file_state = KENG_MSG_FILE_READ;
        f->file_bytes += m->file.len;
    } else {
        keng_buf_free(&l->out);
        m->file_state = KENG_MSG_FILE_NONE; /* its deliveries go without it */
        if (status == 0 && l->rc != -ENOENT)
            keng_warn("fanout: message %" PRId64 ": its %s file cannot be read (%s); sent without",
                      m->id, l->ops->type, strerror(-l->rc));
    }
    m->refs--;
    f->loads--;
    free(l);
    requeue_waiting(f);
    pool_done(f);
}

/* Starts reading j's message's file; the message stays in the cache until it is read. */
static void load_start(keng_fanout *f, fo_job *j)
{
    keng_channel_msg *m = j->msg;
    fo_load *l = calloc(1, sizeof *l);
    m->file_state = KENG_MSG_FILE_NONE; /* unless the read can start */
    if (!l) return;
    l->f = f;
    l->m = m;
    l->ops = j->ops;
    l->work.data = l;
    keng_buf_init(&l->out, 0);
    if (uv_queue_work(f->loop, &l->work, load_work, load_done)) {
        free(l);
        return;
    }
    m->file_state = KENG_MSG_FILE_READING;
    m->refs++;
    f->loads++;
}

/* ---- requests built in the thread pool (keng_channel_ops.build) ---------------------------- */

/* The request's inputs as prepare and build read them; now is the signature's time. */
static void req_fill(keng_fanout *f, fo_job *j)
{
    j->req.cfg = &f->cfg;
    j->req.macs = f->macs;
    j->req.msg = j->msg;
    j->req.delivery_id = j->id;
    j->req.alert_id = j->alert_id;
    j->req.recipient = j->recipient;
    j->req.idem_key = j->idem_key;
    j->req.link_kind = j->link_kind;
    j->req.link_url = j->link.len ? j->link.data : "";
    j->req.now = wall_now();
}

/* j's reply or relay link into j->link (empty: the message has none); macs: the caller's
 * thread's. 0 or a negative errno. */
static int job_link(keng_fanout *f, fo_job *j, keng_hmac_cache *macs)
{
    keng_buf_reset(&j->link);
    if (!j->link_kind || !f->cfg.link_url) return 0;
    return f->cfg.link_url(f->cfg.ud, macs, j->link_kind, j->alert_id, j->recipient, &j->link);
}

typedef struct fo_build {
    uv_work_t work;
    keng_fanout *f;
    struct fo_build *next; /* waiting for the one under way */
    int n;
    fo_job *jobs[FO_BUILD_BATCH];
} fo_build;

/* Pool thread: links, bodies, header lines and signatures. Reads only what a claimed job does
 * not change until it starts (its strings, message, address, cfg) and writes only the job's
 * link, request and errbuf, which the loop leaves alone while the job is building. */
static void build_work(uv_work_t *w)
{
    fo_build *b = w->data;
    /* Batch priority while it builds (the pool's thread gets its policy back after): on two
     * cores a waking builder preempted the loop, which then kept a request waiting 20 ms. */
    struct sched_param sp = {0};
    int batch = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp) == 0;
    for (int i = 0; i < b->n; i++) {
        fo_job *j = b->jobs[i];
        if (job_link(b->f, j, b->f->bmacs)) continue; /* built on the loop: it reports it */
        j->req.link_url = j->link.len ? j->link.data : "";
        if (j->bops->build(&j->req, b->f->bmacs, j->errbuf, sizeof j->errbuf)) j->req.built = 0;
    }
    if (batch) pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
}

/* Ends batch b: its jobs are built (or left to the loop) and those a stop gave back go. */
static void build_end(keng_fanout *f, fo_build *b, int ran)
{
    for (int i = 0; i < b->n; i++) {
        fo_job *j = b->jobs[i];
        j->building = 0;
        if (!ran) j->req.built = 0;
        if (j->orphan) {
            j->orphan = 0;
            job_release(f, j);
        }
    }
    free(b);
}

static void build_done(uv_work_t *w, int status);
static void on_build_late(uv_timer_t *t);

/* The pool is shared (uploads, checkpoints, file reads): a batch it has not begun after
 * FO_BUILD_WAIT_MS is taken back, and it and the batches after it are built on the loop as
 * their jobs start, so that a busy pool does not hold the deliveries up. */
static void on_build_late(uv_timer_t *t)
{
    keng_fanout *f = t->data;
    if (!f->build_now || uv_cancel((uv_req_t *)&f->build_now->work) != 0) return; /* running */
    f->stats.build_late++;
    while (f->build_next) { /* build_done (UV_ECANCELED) follows for the one taken back */
        fo_build *b = f->build_next;
        f->build_next = b->next;
        build_end(f, b, 0);
    }
    f->build_last = NULL;
}

/* Starts the next waiting batch, if none is under way (a stop ends them unbuilt). */
static void build_next(keng_fanout *f)
{
    while (!f->build_now && f->build_next) {
        fo_build *b = f->build_next;
        if (!(f->build_next = b->next)) f->build_last = NULL;
        if (f->stopping)
            build_end(f, b, 0);
        else if (uv_queue_work(f->loop, &b->work, build_work, build_done) == 0) {
            f->build_now = b;
            uv_timer_start(&f->build_timer, on_build_late, FO_BUILD_WAIT_MS, 0);
        } else {
            build_end(f, b, 0); /* built on the loop when they start */
        }
    }
}

static void build_done(uv_work_t *w, int status)
{
    fo_build *b = w->data;
    keng_fanout *f = b->f;
    f->build_now = NULL;
    uv_timer_stop(&f->build_timer);
    build_end(f, b, status == 0);
    build_next(f);
    pool_done(f);
}

static void build_queue(keng_fanout *f, fo_build *b)
{
    b->next = NULL;
    if (f->build_last)
        f->build_last->next = b;
    else
        f->build_next = b;
    f->build_last = b;
    build_next(f);
}

/* Has the requests of the jobs from j on (just claimed) built in the pool, a batch at a time,
 * for the channels that can. For a webhook, the link, the body and the signature (two HMACs)
 * took 3.3 of the loop's 39 µs per delivery (bench/fanout.md). Jobs it does not take are built
 * on the loop when they start. */
static void build_submit(keng_fanout *f, fo_job *j)
{
    fo_build *b = NULL;
    char err[256];
    for (; j; j = j->next) {
        const keng_channel_ops *ops;
        if (!job_loaded(j) || job_fault(f, j, &ops, err, sizeof err) || !ops->build)
            continue; /* check_job says */
        if (!b) {
            if (!f->bmacs || !(b = calloc(1, sizeof *b))) return;
            b->f = f;
            b->work.data = b;
        }
        keng_buf_reset(&j->link);
        req_fill(f, j);
        j->bops = ops;
        j->building = 1;
        b->jobs[b->n++] = j;
        if (b->n == FO_BUILD_BATCH) {
            build_queue(f, b);
            b = NULL;
        }
    }
    if (b) build_queue(f, b);
}

/* Starts one queued job: a curl transfer, a file line, or an immediate verdict. */
static void start_job(keng_fanout *f, fo_job *j)
{
    char err[256];
    if (!j->ops && check_job(f, j)) return;
    if (j->ops->load && j->msg->file_state == KENG_MSG_FILE_UNREAD) load_start(f, j);
    if (j->ops->load && j->msg->file_state == KENG_MSG_FILE_READING) {
        job_append(&f->wait_head, &f->wait_tail, j); /* back in the queue once it is read */
        f->waiting++;
        return;
    }
    fo_host *h = j->dest;
    /* Parked before a request is built here (a webhook's was built in the pool after the claim,
     * and is built again only when it sat parked over FO_BUILD_FRESH_S). */
    if (h && h->inflight >= host_cap(f, h)) { /* waits for one of that host's transfers */
        host_park(f, h, j);
        return;
    }
    if (j->ops->line && f->fpend.len >= FO_FILE_MAX) { /* the disk is slower than us: wait */
        j->next = f->q_head;
        f->q_head = j;
        if (!f->q_tail) f->q_tail = j;
        f->queued++;
        return;
    }
    /* Built in the pool after the claim, unless that failed or was long ago (it sat parked for
     * a slow receiver: its signature's time would be old): then here. */
    if (!j->req.built || wall_now() - j->req.now > FO_BUILD_FRESH_S) {
        j->req.built = 0;
        if (job_link(f, j, f->macs)) {
            fail_now(f, j, "cannot build the reply/relay link");
            return;
        }
        req_fill(f, j);
    }
    j->t0 = uv_now(f->loop);
    f->stats.started++;
    if (j->ops->line) {
        size_t before = f->fpend.len;
        if (j->ops->line(&j->req, &f->fpend)) {
            f->fpend.len = before;
            fail_now(f, j, "cannot format the file line");
            return;
        }
        f->inflight++; /* in flight on the file batch list, not the active (curl) list */
        j->next = f->fpend_jobs;
        f->fpend_jobs = j;
        file_kick(f);
        return;
    }
    err[0] = '\0';
    if (start_curl(f, j, err, sizeof err)) {
        fail_now(f, j, err[0] ? err : "cannot build the request");
        return;
    }
    if (h) {
        host_started(f, h);
        j->host = h;
    }
    active_add(f, j);
}

static void fill(keng_fanout *f)
{
    while (!f->stopping && f->q_head && f->inflight < f->cfg.max_inflight) {
        fo_job *j = f->q_head;
        /* Its request is being built in the pool, and so, most likely, are those claimed after
         * it: build_done fills again. (Taking them out to wait one by one cost more than the
         * build saved.) */
        if (j->building) break;
        f->q_head = j->next;
        if (!f->q_head) f->q_tail = NULL;
        f->queued--;
        j->next = NULL;
        int before = f->queued;
        start_job(f, j);
        if (f->queued > before) break; /* put back: file batch full */
    }
    if (f->nres >= FO_FLUSH_ROWS ||
        (!f->stopping && !f->dry && f->queued < f->cfg.max_inflight && !park_full(f)))
        schedule_pump(f, 0);
    else if (f->nres)
        schedule_pump(f, FO_FLUSH_MS);
    else if (!f->stopping && park_full(f))
        schedule_pump(f, FO_STALL_MS); /* host_shed, should a receiver stall meanwhile */
}

/* ---- curl on the loop ------------------------------------------------------------------- */

static void drain(keng_fanout *f)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(f->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *e = m->easy_handle;
        CURLcode cc = m->data.result;
        fo_job *j = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&j);
        CURLMcode mc = curl_multi_remove_handle(f->multi, e);
        if (mc != CURLM_OK)
            keng_warn("fanout: curl_multi_remove_handle: %s", curl_multi_strerror(mc));
        if (!j) continue;
        long status = 0;
        curl_off_t ra = -1;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK || ra <= 0) ra = -1;
        keng_channel_response resp = {
            .cc = cc,
            .status = status,
            .retry_after_s = (long)ra,
            .body = j->resp.len ? j->resp.data : "",
            .body_len = j->resp.len,
            .truncated = j->truncated,
            .curl_error = j->errbuf,
        };
        keng_channel_result res = {.verdict = KENG_CH_DEAD, .retry_after_s = -1};
        j->ops->judge(&j->req, &resp, &res);
        active_remove(f, j);
        if (j->host)
            host_ended(f, j->host, cc != CURLE_OPERATION_TIMEDOUT,
                       (int64_t)(uv_now(f->loop) - j->t0));
        host_done(f, j);
        finish(f, j, &res);
        job_release(f, j);
    }
    fill(f);
    check_stop(f);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    fo_sock *ks = h->data;
    keng_fanout *f = ks->f;
    int flags = 0, running;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    /* ks may be closed by the socket callback inside socket_action: do not touch it after. */
    CURLMcode mc = curl_multi_socket_action(f->multi, ks->fd, flags, &running);
    if (mc != CURLM_OK) keng_warn("fanout: curl_multi_socket_action: %s", curl_multi_strerror(mc));
    drain(f);
}

/* The last uv_close callback of a stopped engine reports done. */
static void closed_one(keng_fanout *f)
{
    if (--f->closing == 0 && f->stopped && f->done) f->done(f->done_ud);
}

static void on_sock_closed(uv_handle_t *h)
{
    fo_sock *ks = h->data;
    keng_fanout *f = ks->f;
    free(ks);
    closed_one(f);
}

static void sock_close(keng_fanout *f, fo_sock *ks)
{
    if (ks->prev)
        ks->prev->next = ks->next;
    else
        f->socks = ks->next;
    if (ks->next) ks->next->prev = ks->prev;
    f->closing++;
    uv_close((uv_handle_t *)&ks->poll, on_sock_closed);
}

static int on_curl_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    keng_fanout *f = userp;
    fo_sock *ks = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (ks) {
            curl_multi_assign(f->multi, s, NULL);
            sock_close(f, ks);
        }
        return 0;
    }
    if (!ks) {
        ks = calloc(1, sizeof *ks);
        if (!ks) return -1;
        int rc = uv_poll_init_socket(f->loop, &ks->poll, s);
        if (rc) {
            keng_warn("fanout: uv_poll_init_socket(%d): %s", (int)s, uv_strerror(rc));
            free(ks);
            return -1;
        }
        ks->fd = s;
        ks->f = f;
        ks->poll.data = ks;
        ks->next = f->socks;
        if (f->socks) f->socks->prev = ks;
        f->socks = ks;
        CURLMcode mc = curl_multi_assign(f->multi, s, ks);
        if (mc != CURLM_OK) keng_warn("fanout: curl_multi_assign: %s", curl_multi_strerror(mc));
    }
    int ev = 0;
    if (what & CURL_POLL_IN) ev |= UV_READABLE;
    if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
    int rc = uv_poll_start(&ks->poll, ev, on_poll);
    if (rc) {
        keng_warn("fanout: uv_poll_start: %s", uv_strerror(rc));
        return -1;
    }
    return 0;
}

static void on_curl_timeout(uv_timer_t *t)
{
    keng_fanout *f = t->data;
    int running;
    CURLMcode mc = curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (mc != CURLM_OK) keng_warn("fanout: curl_multi_socket_action: %s", curl_multi_strerror(mc));
    drain(f);
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    keng_fanout *f = userp;
    /* Never call curl from here: only arm the timer; its callback calls socket_action. */
    if (timeout_ms < 0)
        uv_timer_stop(&f->curl_timer);
    else
        uv_timer_start(&f->curl_timer, on_curl_timeout, timeout_ms ? (uint64_t)timeout_ms : 1, 0);
    return 0;
}

/* ---- file channel ------------------------------------------------------------------------ */

static void file_done(keng_fanout *f, fo_job *list, int error)
{
    char msg[256];
    if (error) snprintf(msg, sizeof msg, "cannot write %s: %s", f->fpath, uv_strerror(error));
    while (list) {
        fo_job *j = list;
        list = j->next;
        f->inflight--;
        keng_channel_result r = {.verdict = error ? KENG_CH_RETRY : KENG_CH_DELIVERED,
                                 .retry_after_s = -1};
        if (error) snprintf(r.error, sizeof r.error, "%s", msg);
        finish(f, j, &r);
        job_release(f, j);
    }
}

static void on_file_write(uv_fs_t *req);

static void file_write_more(keng_fanout *f)
{
    uv_buf_t b =
        uv_buf_init(f->fwrite.data + f->fwrite_off, (unsigned)(f->fwrite.len - f->fwrite_off));
    int rc = uv_fs_write(f->loop, &f->freq, f->fd, &b, 1, -1, on_file_write);
    if (rc) {
        fo_job *l = f->fwrite_jobs;
        f->fwrite_jobs = NULL;
        file_done(f, l, rc);
        return;
    }
    f->fs_busy = 1;
}

static void on_file_write(uv_fs_t *req)
{
    keng_fanout *f = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    f->fs_busy = 0;
    if (n >= 0 && f->fwrite_off + (size_t)n < f->fwrite.len) { /* short write: the rest */
        f->fwrite_off += (size_t)n;
        file_write_more(f);
        return;
    }
    fo_job *l = f->fwrite_jobs;
    f->fwrite_jobs = NULL;
    keng_buf_reset(&f->fwrite);
    file_done(f, l, n < 0 ? (int)n : 0);
    file_kick(f);
    fill(f);
    check_stop(f);
}

static void on_file_open(uv_fs_t *req)
{
    keng_fanout *f = req->data;
    ssize_t fd = req->result;
    uv_fs_req_cleanup(req);
    f->fs_busy = 0;
    if (fd < 0) {
        keng_warn("fanout: cannot open %s: %s", f->fpath, uv_strerror((int)fd));
        fo_job *l = f->fpend_jobs;
        f->fpend_jobs = NULL;
        keng_buf_reset(&f->fpend);
        file_done(f, l, (int)fd);
        fill(f);
        check_stop(f);
        return;
    }
    f->fd = (uv_file)fd;
    file_kick(f);
}

static void file_kick(keng_fanout *f)
{
    if (f->fs_busy || !f->fpend_jobs) return;
    f->freq.data = f;
    if (f->fd < 0) {
        int rc = uv_fs_open(f->loop, &f->freq, f->fpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                            0640, on_file_open);
        if (rc) {
            fo_job *l = f->fpend_jobs;
            f->fpend_jobs = NULL;
            keng_buf_reset(&f->fpend);
            file_done(f, l, rc);
            return;
        }
        f->fs_busy = 1;
        return;
    }
    keng_buf tmp = f->fwrite; /* swap: the batch gathered so far goes out in one write */
    f->fwrite = f->fpend;
    f->fpend = tmp;
    f->fwrite_off = 0;
    f->fwrite_jobs = f->fpend_jobs;
    f->fpend_jobs = NULL;
    file_write_more(f);
}

/* ---- pump: write results, claim rows, arm the retry timer --------------------------------- */

static void on_retry_timer(uv_timer_t *t)
{
    keng_fanout *f = t->data;
    f->dry = 0;
    schedule_pump(f, 0);
}

/* now is the time the last claim used: a row not due then must wake us even when the clock has
 * moved past its next_at since. */
static void arm_retry(keng_fanout *f, int64_t now)
{
    int64_t next = keng_outbox_next_due(f->st, now);
    if (next <= 0) return;
    int64_t ms = next * 1000 - wall_ms();
    uv_timer_start(&f->retry_timer, on_retry_timer, ms > 0 ? (uint64_t)ms : 1, 0);
}

static int flush_and_claim_timed(keng_fanout *f, int want);

static int flush_and_claim(keng_fanout *f, int want)
{
    uint64_t t0 = uv_hrtime();
    int rc = flush_and_claim_timed(f, want);
    uint64_t dt = uv_hrtime() - t0;
    f->stats.db_ns += dt;
    if (dt > f->stats.db_max_ns) f->stats.db_max_ns = dt;
    return rc;
}

static int flush_and_claim_timed(keng_fanout *f, int want)
{
    int n = f->nres < FO_FLUSH_ROWS ? f->nres : FO_FLUSH_ROWS;
    if (n == 0 && want == 0) return 0;
    int rc = keng_store_begin(f->st), claimed = 0;
    if (rc) return rc;
    if (n) {
        keng_outbox_result rows[FO_FLUSH_ROWS];
        for (int i = 0; i < n; i++)
            rows[i] = f->res[i].r;
        rc = keng_outbox_write(f->st, rows, n);
    }
    int64_t now = wall_now();
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!f->res[i].fallback) continue;
        int fb = keng_outbox_fallback(f->st, f->res[i].r.id, now);
        if (fb < 0) {
            keng_warn("fanout: contact fallback of delivery %" PRId64 ": %s", f->res[i].r.id,
                      strerror(-fb));
        } else if (fb > 0 && !f->stopping) {
            f->dry = 0;
            if (want == 0) want = FO_CLAIM_CHUNK;
        }
    }
    fo_job *tail_before = f->q_tail;
    int queued_before = f->queued;
    if (rc == 0 && want > 0) {
        claimed = keng_outbox_claim(f->st, now, want, on_claim, f);
        if (claimed < 0) rc = claimed;
    }
    if (rc == 0)
        rc = keng_store_commit(f->st);
    else
        keng_store_rollback(f->st);
    if (rc) {
        keng_error("fanout: outbox write failed (%s); will try again", strerror(-rc));
        /* Claimed rows were rolled back to pending: drop their in-memory copies. */
        fo_job *j = tail_before ? tail_before->next : f->q_head;
        if (tail_before)
            tail_before->next = NULL;
        else
            f->q_head = NULL;
        f->q_tail = tail_before;
        f->queued = queued_before;
        while (j) {
            fo_job *next = j->next;
            job_release(f, j);
            j = next;
        }
        return rc;
    }
    if (claimed > 0) build_submit(f, tail_before ? tail_before->next : f->q_head);
    f->stats.written += (uint64_t)n;
    if (n) f->stats.flushes++;
    if (want) f->stats.claims++;
    report_rows(f, f->res, n, claimed > 0 ? (tail_before ? tail_before->next : f->q_head) : NULL);
    notify(f, f->res, n);
    for (int i = 0; i < n; i++)
        res_free(&f->res[i]);
    if (n) memmove(f->res, f->res + n, (size_t)(f->nres - n) * sizeof *f->res);
    f->nres -= n;
    if (f->nres) f->res_oldest = uv_now(f->loop);
    if (want > 0 && claimed < want) { /* ran dry: sleep until a kick or the next retry */
        f->dry = 1;
        arm_retry(f, now);
    }
    return 0;
}

static void pump(keng_fanout *f)
{
    int want = 0;
    if (!f->stopping && park_full(f)) host_shed(f);
    if (!f->stopping && !f->dry && f->queued < f->cfg.max_inflight && !park_full(f)) {
        want = 2 * f->cfg.max_inflight - f->queued;
        if (want > FO_CLAIM_CHUNK) want = FO_CLAIM_CHUNK;
    }
    if (flush_and_claim(f, want)) {
        schedule_pump(f, 1000); /* the database is busy or full: back off a little */
        return;
    }
    if (f->stopping) {
        if (f->nres) schedule_pump(f, 0);
        check_stop(f);
        return;
    }
    fill(f);
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static char *cfg_dup(keng_fanout *f, int i, const char *s)
{
    if (!s) return NULL;
    f->strs[i] = strdup(s);
    return f->strs[i];
}

int keng_fanout_new(uv_loop_t *loop, keng_store *st, const keng_fanout_config *cfg,
                    keng_fanout **out)
{
    *out = NULL;
    if (!loop || !st || !cfg) return -EINVAL;
    keng_fanout *f = calloc(1, sizeof *f);
    if (!f) return -ENOMEM;
    f->loop = loop;
    f->st = st;
    f->cfg = *cfg;
    /* The engine's own copies of the config's strings, in place of the caller's. */
    const char **own[] = {&f->cfg.data_dir,           &f->cfg.zalo_base_url,
                          &f->cfg.zalo_access_token,  &f->cfg.telegram_base_url,
                          &f->cfg.telegram_bot_token, &f->cfg.smtp_url,
                          &f->cfg.smtp_from,          &f->cfg.smtp_user,
                          &f->cfg.smtp_password,      &f->cfg.webhook_ca_file};
    _Static_assert(sizeof own / sizeof own[0] == FO_CFG_STRS, "one slot of strs per string");
    for (int i = 0; i < FO_CFG_STRS; i++)
        if (*own[i] && !(*own[i] = cfg_dup(f, i, *own[i]))) goto nomem;
    if (f->cfg.max_inflight <= 0) f->cfg.max_inflight = 256;
    if (f->cfg.max_per_host <= 0) f->cfg.max_per_host = 64;
    if (f->cfg.timeout_ms <= 0) f->cfg.timeout_ms = 15000;
    if (f->cfg.max_attempts <= 0) f->cfg.max_attempts = 8;
    if (f->cfg.backoff_base_ms <= 0) f->cfg.backoff_base_ms = 2000;
    if (f->cfg.backoff_max_ms <= 0) f->cfg.backoff_max_ms = 3600000;
    if (f->cfg.max_response == 0) f->cfg.max_response = 64 * 1024;
    f->msgs = calloc(FO_MSG_CACHE, sizeof *f->msgs);
    f->easies = calloc((size_t)f->cfg.max_inflight, sizeof *f->easies);
    f->macs = keng_hmac_cache_new();
    f->bmacs = keng_hmac_cache_new(); /* NULL: requests are built on the loop */
    if (!f->msgs || !f->easies || !f->macs) goto nomem;
    f->fd = -1;
    keng_buf_init(&f->fpend, 0);
    keng_buf_init(&f->fwrite, 0);
    if (f->cfg.data_dir) {
        keng_buf p;
        keng_buf_init(&p, 4096);
        if (keng_buf_printf(&p, "%s/deliveries.jsonl", f->cfg.data_dir)) {
            keng_buf_free(&p);
            goto nomem;
        }
        f->fpath = keng_buf_steal(&p);
        if (!f->fpath) goto nomem;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    f->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^ 1;
    f->multi = curl_multi_init();
    if (!f->multi) goto nomem;
    CURLMcode mc;
    if ((mc = curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket)) ||
        (mc = curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f)) ||
        (mc = curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer)) ||
        (mc = curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f)) ||
        (mc = curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                                (long)f->cfg.max_inflight)) ||
        (mc = curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                                (long)f->cfg.max_per_host)) ||
        (mc = curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)f->cfg.max_inflight)) ||
        (mc = curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX))) {
        keng_error("fanout: curl_multi_setopt: %s", curl_multi_strerror(mc));
        curl_multi_cleanup(f->multi);
        f->multi = NULL;
        keng_fanout_free(f);
        return -EINVAL;
    }
    uv_timer_t *timers[FO_TIMERS];
    engine_timers(f, timers);
    for (size_t i = 0; i < FO_TIMERS; i++) {
        uv_timer_init(loop, timers[i]); /* cannot fail on unix */
        timers[i]->data = f;
    }
    f->t_new = uv_now(loop);
    *out = f;
    return 0;
nomem:
    keng_fanout_free(f);
    return -ENOMEM;
}

void keng_fanout_kick(keng_fanout *f)
{
    if (!f || f->stopping) return;
    /* A kick may follow a new revision or the end of an alert: its messages look again. */
    for (int i = 0; i < f->nmsgs; i++)
        f->msgs[i]->alert_read = 0;
    f->dry = 0;
    schedule_pump(f, 0);
}

static void on_timer_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

static void finish_stop(keng_fanout *f)
{
    f->stopped = 1;
    while (f->nres) /* write everything; a failing disk cannot hold up the exit forever */
        if (flush_and_claim(f, 0)) break;
    for (int i = 0; i < f->nres; i++)
        res_free(&f->res[i]);
    f->nres = 0;
    /* curl closes its connections here and may call the socket callback to remove polls. */
    CURLMcode mc = curl_multi_cleanup(f->multi);
    if (mc != CURLM_OK) keng_warn("fanout: curl_multi_cleanup: %s", curl_multi_strerror(mc));
    f->multi = NULL;
    while (f->socks)
        sock_close(f, f->socks);
    if (f->fd >= 0) {
        uv_fs_t req;
        uv_fs_close(NULL, &req, f->fd, NULL); /* synchronous: a close at exit, after the writes */
        uv_fs_req_cleanup(&req);
        f->fd = -1;
    }
    uv_timer_t *timers[FO_TIMERS];
    engine_timers(f, timers);
    for (size_t i = 0; i < FO_TIMERS; i++) {
        f->closing++;
        uv_close((uv_handle_t *)timers[i], on_timer_closed);
    }
}

static void check_stop(keng_fanout *f)
{
    if (!f->stopping || f->stopped) return;
    if (f->inflight || f->fs_busy || f->loads || f->build_now) return;
    finish_stop(f);
}

static void on_grace(uv_timer_t *t)
{
    keng_fanout *f = t->data;
    int n = 0;
    while (f->active) {
        fo_job *j = f->active;
        CURLMcode mc = curl_multi_remove_handle(f->multi, j->easy);
        if (mc != CURLM_OK) keng_warn("fanout: remove: %s", curl_multi_strerror(mc));
        active_remove(f, j);
        j->host = NULL; /* the parked ones go back below, with the queue */
        push_result(f, j, KENG_OUTBOX_PENDING, j->attempts, 0, -1, NULL, 0);
        job_release(f, j);
        n++;
    }
    if (n) keng_warn("fanout: %d deliveries still in flight at shutdown go out after restart", n);
    check_stop(f);
}

/* Every job of the list from j on back to pending, as it was claimed, and released. */
static void unclaim_all(keng_fanout *f, fo_job *j)
{
    while (j) {
        fo_job *next = j->next;
        give_back(f, j, 0);
        j = next;
    }
}

void keng_fanout_stop(keng_fanout *f, int grace_ms, void (*done)(void *ud), void *ud)
{
    if (!f || f->stopping) return;
    f->stopping = 1;
    f->done = done;
    f->done_ud = ud;
    uv_timer_stop(&f->retry_timer);
    /* Claimed, never started: back to pending as they were. Queued, waiting for their
     * message's file, parked for a busy receiver. */
    unclaim_all(f, f->q_head);
    f->q_head = f->q_tail = NULL;
    f->queued = 0;
    unclaim_all(f, f->wait_head);
    f->wait_head = f->wait_tail = NULL;
    f->waiting = 0;
    for (int i = 0; i < FO_HOST_BUCKETS; i++) {
        for (fo_host *h = f->hosts[i]; h; h = h->next) {
            unclaim_all(f, h->park_head);
            h->park_head = h->park_tail = NULL;
            h->parked = 0;
        }
    }
    f->parked = 0;
    if (f->inflight || f->fs_busy)
        uv_timer_start(&f->grace_timer, on_grace, grace_ms > 0 ? (uint64_t)grace_ms : 1, 0);
    check_stop(f);
}

void keng_fanout_free(keng_fanout *f)
{
    if (!f) return;
    if (f->build_now || f->build_next) { /* a pool thread would use f: stop's done comes after */
        keng_error("fanout: freed with request builds under way; left allocated");
        return;
    }
    if (f->multi) curl_multi_cleanup(f->multi); /* only when new failed half-way */
    while (f->free_jobs) {
        fo_job *j = f->free_jobs;
        f->free_jobs = j->next;
        keng_buf_free(&j->link);
        keng_buf_free(&j->resp);
        keng_buf_free(&j->req.body);
        keng_buf_free(&j->strs);
        free(j);
    }
    for (int i = 0; f->msgs && i < f->nmsgs; i++)
        msg_free(f, f->msgs[i]);
    free(f->msgs);
    while (f->neasies > 0) {
        fo_easy *p = &f->easies[--f->neasies];
        curl_easy_cleanup(p->e);
    }
    keng_hmac_cache_free(f->bmacs);
    free(f->easies);
    keng_hmac_cache_free(f->macs);
    host_free_all(f);
    free(f->res);
    free(f->addr_text);
    cJSON_Delete(f->addr_json);
    keng_buf_free(&f->fpend);
    keng_buf_free(&f->fwrite);
    free(f->fpath);
    for (int i = 0; i < FO_CFG_STRS; i++)
        free(f->strs[i]);
    free(f);
}

void keng_fanout_get_stats(keng_fanout *f, keng_fanout_stats *out)
{
    *out = f->stats;
    out->inflight = f->inflight;
    out->queued = f->queued + f->parked;
}

int keng_fanout_metrics(keng_fanout *f, keng_buf *out)
{
    cJSON *counts = NULL;
    int rc = f->cfg.counts ? f->cfg.counts(f->cfg.ud, &counts)
                           : keng_outbox_counts(f->st, NULL, &counts);
    if (rc) return rc;
    rc = keng_buf_puts(out, "# HELP keng_deliveries Deliveries in the outbox by channel and"
                            " status (failed: pending after a failed attempt).\n"
                            "# TYPE keng_deliveries gauge\n");
    cJSON *ch, *by = cJSON_GetObjectItemCaseSensitive(counts, "by_channel");
    cJSON_ArrayForEach(ch, by)
    {
        cJSON *n;
        cJSON_ArrayForEach(n, ch)
        {
            if (rc == 0)
                rc = keng_buf_printf(out, "keng_deliveries{channel=\"%s\",status=\"%s\"} %.0f\n",
                                     ch->string, n->string, n->valuedouble);
        }
    }
    cJSON_Delete(counts);
    if (rc == 0)
        rc = keng_buf_printf(
            out,
            "# TYPE keng_fanout_attempts_total counter\nkeng_fanout_attempts_total %" PRIu64 "\n"
            "# TYPE keng_fanout_results_total counter\n"
            "keng_fanout_results_total{verdict=\"delivered\"} %" PRIu64 "\n"
            "keng_fanout_results_total{verdict=\"retry\"} %" PRIu64 "\n"
            "keng_fanout_results_total{verdict=\"dead\"} %" PRIu64 "\n"
            "# TYPE keng_fanout_inflight gauge\nkeng_fanout_inflight %d\n"
            "# TYPE keng_fanout_queued gauge\nkeng_fanout_queued %d\n"
            "# HELP keng_fanout_given_back_total Claimed rows put back untried, by reason.\n"
            "# TYPE keng_fanout_given_back_total counter\n"
            "keng_fanout_given_back_total{reason=\"receiver_busy\"} %" PRIu64 "\n"
            "keng_fanout_given_back_total{reason=\"message_unavailable\"} %" PRIu64 "\n"
            "keng_fanout_given_back_total{reason=\"newer_revision_being_written\"} %" PRIu64 "\n",
            f->stats.started, f->stats.delivered, f->stats.retried, f->stats.dead, f->inflight,
            f->queued, f->stats.deferred, f->stats.given_back, f->stats.waited);
    if (rc == 0)
        rc = keng_buf_puts(out, "# HELP keng_fanout_channel_results_total Attempts ended, by"
                                " channel and verdict (retry: failed, tried again later).\n"
                                "# TYPE keng_fanout_channel_results_total counter\n");
    static const char *const verdicts[3] = {"delivered", "retry", "dead"};
    for (int c = 0; c < 6 && rc == 0; c++)
        for (int v = 0; v < 3 && rc == 0; v++)
            if (c < 5 || f->results[c][v])
                rc = keng_buf_printf(out,
                                     "keng_fanout_channel_results_total{channel=\"%s\","
                                     "verdict=\"%s\"} %" PRIu64 "\n",
                                     fo_channels[c], verdicts[v], f->results[c][v]);
    return rc;
}
