/* keng alert watch ID — follows an alert's delivery until nothing is pending or in flight.
 * Reads kengd's Server-Sent Events (GET /v1/alerts/ID/events); when the server has no event
 * stream (404) or the stream drops, it polls GET /v1/alerts/ID/deliveries once a second. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WATCH_DONE 100     /* what the event callback returns to end the stream */
#define WATCH_BAR_CELLS 24 /* width of the bar in terminal cells */
#define WATCH_MAX_RETRIES 30

typedef struct watch {
    keng_cli *c;
    const char *id;
    int tty;
    char last[320]; /* the last line drawn, to print plain lines only when something changed */
} watch;

typedef struct counts {
    double pending, inflight, delivered, failed, dead, superseded, total;
} counts;

static counts read_counts(const cJSON *o)
{
    counts k = {keng_cli_num(o, "pending", 0),
                keng_cli_num(o, "inflight", 0),
                keng_cli_num(o, "delivered", 0),
                keng_cli_num(o, "failed", 0),
                keng_cli_num(o, "dead", 0),
                keng_cli_num(o, "superseded", 0),
                0};
    /* failed counts pending rows that were tried already: it is part of pending, not beside. */
    k.total =
        keng_cli_num(o, "total", k.pending + k.inflight + k.delivered + k.dead + k.superseded);
    return k;
}

static int finished(const counts *k)
{
    return k->pending + k->inflight <= 0;
}

static void draw(watch *w, const counts *k)
{
    /* Superseded rows are settled too: a later message of the alert went in their place. */
    double done = k->delivered + k->dead + k->superseded;
    int pct = k->total > 0 ? (int)(100.0 * done / k->total) : 100;
    if (pct > 100) pct = 100;
    if (w->tty) {
        char bar[WATCH_BAR_CELLS * 3 + 1];
        size_t n = 0;
        int full = k->total > 0 ? (int)(WATCH_BAR_CELLS * done / k->total) : WATCH_BAR_CELLS;
        for (int i = 0; i < WATCH_BAR_CELLS; i++) {
            memcpy(bar + n, i < full ? "█" : "░", 3);
            n += 3;
        }
        bar[n] = '\0';
        fprintf(stderr, "\rĐã gửi / sent %.0f/%.0f ▕%s▏ %d%% · lỗi / failed %.0f\033[K",
                k->delivered, k->total, bar, pct, k->failed + k->dead);
        fflush(stderr);
        return;
    }
    char line[320];
    int n =
        snprintf(line, sizeof line,
                 "đã gửi/delivered %.0f/%.0f %d%% · chờ/pending %.0f · đang gửi/inflight %.0f · "
                 "lỗi/failed %.0f · bỏ/dead %.0f",
                 k->delivered, k->total, pct, k->pending, k->inflight, k->failed, k->dead);
    if (k->superseded > 0 && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n,
                 " · không gửi, đã có tin mới hơn/superseded %.0f", k->superseded);
    if (strcmp(line, w->last)) {
        puts(line);
        fflush(stdout);
        snprintf(w->last, sizeof w->last, "%s", line);
    }
}

static void final_line(watch *w, const counts *k)
{
    if (w->tty) fputc('\n', stderr);
    printf("Xong / done: đã gửi/delivered %.0f/%.0f · lỗi/failed %.0f · bỏ/dead %.0f", k->delivered,
           k->total, k->failed, k->dead);
    if (k->superseded > 0) printf(" · không gửi, đã có tin mới hơn/superseded %.0f", k->superseded);
    putchar('\n');
}

/* Handles one progress object; returns WATCH_DONE when delivery is over. */
static int on_counts(watch *w, const cJSON *obj, const char *raw, size_t len)
{
    const cJSON *co = cJSON_GetObjectItemCaseSensitive(obj, "counts");
    if (w->c->json) {
        fwrite(raw, 1, len, stdout);
        putchar('\n');
        fflush(stdout);
    }
    if (!cJSON_IsObject(co)) return 0;
    counts k = read_counts(co);
    if (!w->c->json) draw(w, &k);
    if (!finished(&k)) return 0;
    if (!w->c->json) final_line(w, &k);
    return WATCH_DONE;
}

static int on_event(void *ud, const char *data, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(data, len);
    int rc = j ? on_counts(ud, j, data, len) : 0;
    cJSON_Delete(j);
    return rc;
}

/* GET …/deliveries?limit=1 and treat its counts as one event. */
static int poll_once(watch *w)
{
    keng_buf p;
    keng_buf_init(&p, 4096);
    if (keng_buf_puts(&p, "/v1/alerts/") || keng_cli_buf_esc(&p, w->id) ||
        keng_buf_puts(&p, "/deliveries?limit=1")) {
        keng_buf_free(&p);
        return keng_cli_say("mã tin báo quá dài", "the alert id is too long");
    }
    keng_cli_reply r;
    int rc = keng_cli_request(w->c, "GET", p.data, NULL, NULL, 0, 0, &r);
    keng_buf_free(&p);
    if (!rc) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemReferenceToObject(o, "counts",
                                       cJSON_GetObjectItemCaseSensitive(r.json, "counts"));
        char *s = cJSON_PrintUnformatted(o);
        rc = on_counts(w, o, s ? s : "{}", s ? strlen(s) : 2);
        cJSON_free(s);
        cJSON_Delete(o);
    }
    keng_cli_reply_free(&r);
    return rc;
}

static void pause_a_second(void)
{
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
}

int keng_cli_cmd_alert_watch(keng_cli *c, const char *id)
{
    watch w = {.c = c, .id = id, .tty = isatty(2) && !c->json};
    int rc = poll_once(&w);
    if (rc == WATCH_DONE) return 0;
    if (rc) return rc;
    keng_buf p;
    keng_buf_init(&p, 4096);
    if (keng_buf_puts(&p, "/v1/alerts/") || keng_cli_buf_esc(&p, id) ||
        keng_buf_puts(&p, "/events")) {
        keng_buf_free(&p);
        return keng_cli_say("mã tin báo quá dài", "the alert id is too long");
    }
    int streaming = 1, failures = 0;
    for (;;) {
        if (streaming) {
            long status;
            rc = keng_cli_stream(c, p.data, 404, &status, on_event, &w);
            if (rc == WATCH_DONE) break;
            if (rc == KENG_CLI_FAIL && status == 404)
                streaming = 0; /* no event stream */
            else if (rc == KENG_CLI_FAIL)
                break;
        }
        /* The stream ended or is not there: ask directly, then go on. */
        rc = poll_once(&w);
        if (rc == WATCH_DONE) break;
        if (rc == KENG_CLI_UNREACHABLE && ++failures <= WATCH_MAX_RETRIES) {
            pause_a_second();
            continue;
        }
        if (rc) break;
        failures = 0;
        pause_a_second();
    }
    keng_buf_free(&p);
    if (w.tty && rc != WATCH_DONE) fputc('\n', stderr);
    return rc == WATCH_DONE ? 0 : rc;
}
