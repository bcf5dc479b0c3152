/* channel zalo_oa: a Zalo Official Account API v3 consultation message to a follower
 * (POST {base}/v3.0/oa/message/cs, header access_token). Text with the link; with a photo, a
 * media template carrying the thumbnail URL. Zalo answers HTTP 200 with {"error":0,…}; a non-zero
 * error is a failure with Zalo's message kept. Only the per-minute rate limit (-32) is retried:
 * the daily quota and user-window errors do not heal in minutes, so they go dead and the
 * recipient's next contact takes over. */
#include "keng/channel.h"
#include "keng/fanout.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define ZALO_TEXT_MAX 2000
#define ZALO_RATE_LIMIT (-32)

static int zalo_configured(const keng_fanout_config *cfg)
{
    return cfg->zalo_base_url && cfg->zalo_access_token && *cfg->zalo_access_token;
}

static int zalo_prepare(keng_channel_req *req, char *err, size_t errlen)
{
    const char *user =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req->address, "user_id"));
    if (!user || !*user) {
        snprintf(err, errlen, "zalo_oa contact has no user_id");
        return -EINVAL;
    }
    const keng_fanout_config *cfg = req->cfg;
    keng_buf line;
    keng_buf_init(&line, 4096);
    keng_buf *b = &req->body;
    keng_buf cut;
    keng_buf_init(&cut, 0);
    int rc = keng_channel_text_fit(req, ZALO_TEXT_MAX, 0, &cut);
    if (rc == 0) rc = keng_buf_puts(b, "{\"recipient\":{\"user_id\":");
    if (rc == 0) rc = keng_channel_json_str(b, user);
    if (rc == 0) rc = keng_buf_puts(b, "},\"message\":{\"text\":");
    if (rc == 0) rc = keng_channel_json_str(b, cut.len ? cut.data : "");
    if (rc == 0 && req->msg->first_photo) {
        rc = keng_buf_puts(b, ",\"attachment\":{\"type\":\"template\",\"payload\":{"
                              "\"template_type\":\"media\",\"elements\":[{\"media_type\":"
                              "\"image\",\"url\":");
        if (rc == 0) rc = keng_channel_json_str(b, req->msg->first_photo);
        if (rc == 0) rc = keng_buf_puts(b, "}]}}");
    }
    if (rc == 0) rc = keng_buf_puts(b, "}}");
    if (rc == 0) rc = keng_buf_printf(&line, "%s/v3.0/oa/message/cs", cfg->zalo_base_url);
    struct curl_slist *h = NULL, *t = NULL;
    keng_buf tok;
    keng_buf_init(&tok, 4096);
    if (rc == 0) rc = keng_buf_printf(&tok, "access_token: %s", cfg->zalo_access_token);
    if (rc == 0 && (t = curl_slist_append(h, "Content-Type: application/json"))) h = t;
    if (rc == 0 && t && (t = curl_slist_append(h, "Expect:"))) h = t;
    if (rc == 0 && t && (t = curl_slist_append(h, tok.data))) h = t;
    if (rc == 0 && !t) rc = -ENOMEM;
    if (rc == 0) {
        req->headers = h;
        curl_easy_setopt(req->easy, CURLOPT_URL, line.data);
        curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, b->data);
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->len);
    } else {
        curl_slist_free_all(h);
        snprintf(err, errlen, "cannot build the zalo_oa request");
    }
    keng_buf_free(&cut);
    keng_buf_free(&line);
    keng_buf_free(&tok);
    return rc;
}

static void zalo_judge(const keng_channel_req *req, const keng_channel_response *resp,
                       keng_channel_result *res)
{
    (void)req;
    keng_channel_judge_http(resp, res);
    if (res->verdict != KENG_CH_DELIVERED) return;
    cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
    if (!cJSON_IsNumber(e)) {
        res->verdict = KENG_CH_RETRY;
        snprintf(res->error, sizeof res->error, "zalo_oa: unexpected response: %.120s", resp->body);
    } else if (e->valueint != 0) {
        res->verdict = e->valueint == ZALO_RATE_LIMIT ? KENG_CH_RETRY : KENG_CH_DEAD;
        if (e->valueint == ZALO_RATE_LIMIT) res->retry_after_s = 60;
        snprintf(res->error, sizeof res->error, "zalo_oa error %d: %s", e->valueint,
                 m ? m : "(no message)");
    }
    cJSON_Delete(j);
}

const keng_channel_ops keng_channel_zalo = {
    .type = "zalo_oa",
    .configured = zalo_configured,
    .prepare = zalo_prepare,
    .judge = zalo_judge,
    .reuse = 1,
};
