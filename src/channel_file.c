/* channel file: one JSON line per message in DATA/deliveries.jsonl (DESIGN.md §7) — the example
 * ward's channel, so a first alert reaches nothing outside the machine. The engine gathers the
 * lines and appends them with uv_fs_write (O_APPEND); a line is delivered once written. */
#include "keng/channel.h"
#include "keng/fanout.h"

#include <stdio.h>
#include <time.h>

static int file_configured(const keng_fanout_config *cfg)
{
    return cfg->data_dir != NULL;
}

static int file_line(const keng_channel_req *req, keng_buf *out)
{
    const keng_channel_msg *m = req->msg;
    char at[32];
    time_t now = (time_t)req->now;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON *photos = cJSON_Parse(m->photos);
    char *ph = cJSON_IsArray(photos) ? cJSON_PrintUnformatted(photos) : NULL;
    cJSON_Delete(photos);
    int rc = keng_buf_printf(out, "{\"at\":\"%s\",\"idempotency_key\":", at);
    if (rc == 0) rc = keng_channel_json_str(out, req->idem_key);
    if (rc == 0) rc = keng_buf_puts(out, ",\"recipient\":");
    if (rc == 0) rc = keng_channel_json_str(out, req->recipient);
    if (rc == 0) rc = keng_buf_puts(out, ",\"event\":");
    if (rc == 0) rc = keng_channel_json_str(out, m->event);
    if (rc == 0) rc = keng_buf_puts(out, ",\"alert_id\":");
    if (rc == 0) rc = keng_channel_json_str(out, req->alert_id);
    keng_buf text;
    keng_buf_init(&text, 0);
    if (rc == 0) rc = keng_channel_text_with_link(req, &text);
    if (rc == 0) rc = keng_buf_puts(out, ",\"text\":");
    if (rc == 0) rc = keng_channel_json_str(out, text.data ? text.data : "");
    keng_buf_free(&text);
    if (rc == 0) rc = keng_buf_printf(out, ",\"photos\":%s", ph ? ph : "[]");
    if (rc == 0 && m->note) {
        rc = keng_buf_puts(out, ",\"note\":");
        if (rc == 0) rc = keng_channel_json_str(out, m->note);
    }
    if (rc == 0 && req->link_url[0]) {
        rc = keng_buf_puts(out, req->link_kind == 'l' ? ",\"relay_url\":" : ",\"reply_url\":");
        if (rc == 0) rc = keng_channel_json_str(out, req->link_url);
    }
    if (rc == 0) rc = keng_buf_puts(out, "}\n");
    cJSON_free(ph);
    return rc;
}

const keng_channel_ops keng_channel_file = {
    .type = "file",
    .configured = file_configured,
    .line = file_line,
};
