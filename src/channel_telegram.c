/* channel telegram: Bot API sendPhoto (thumbnail URL, caption ≤ 1024 characters) or sendMessage
 * (text ≤ 4096) when the message has no photo. {"ok":false,"error_code":429,"parameters":
 * {"retry_after":N}} retries after N seconds; other 4xx are dead with Telegram's description. */
#include "keng/channel.h"
#include "keng/fanout.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define TELEGRAM_CAPTION_MAX 1024
#define TELEGRAM_TEXT_MAX 4096

static int telegram_configured(const keng_fanout_config *cfg)
{
    return cfg->telegram_base_url && cfg->telegram_bot_token && *cfg->telegram_bot_token;
}

static int telegram_prepare(keng_channel_req *req, char *err, size_t errlen)
{
    cJSON *chat = cJSON_GetObjectItemCaseSensitive(req->address, "chat_id");
    if (!(cJSON_IsString(chat) && *chat->valuestring) && !cJSON_IsNumber(chat)) {
        snprintf(err, errlen, "telegram contact has no chat_id");
        return -EINVAL;
    }
    const keng_fanout_config *cfg = req->cfg;
    const char *photo = req->msg->first_photo;
    keng_buf cut, url;
    keng_buf_init(&cut, 0);
    keng_buf_init(&url, 4096);
    keng_buf *b = &req->body;
    /* Telegram's limits count UTF-16 units: an emoji is two. */
    int rc = keng_channel_text_fit(req, photo ? TELEGRAM_CAPTION_MAX : TELEGRAM_TEXT_MAX, 1, &cut);
    if (rc == 0) rc = keng_buf_puts(b, "{\"chat_id\":");
    if (rc == 0 && cJSON_IsString(chat)) rc = keng_channel_json_str(b, chat->valuestring);
    if (rc == 0 && !cJSON_IsString(chat)) rc = keng_buf_printf(b, "%.0f", chat->valuedouble);
    if (rc == 0 && photo) {
        rc = keng_buf_puts(b, ",\"photo\":");
        if (rc == 0) rc = keng_channel_json_str(b, photo);
    }
    if (rc == 0) rc = keng_buf_puts(b, photo ? ",\"caption\":" : ",\"text\":");
    if (rc == 0) rc = keng_channel_json_str(b, cut.len ? cut.data : "");
    if (rc == 0) rc = keng_buf_puts(b, "}");
    if (rc == 0)
        rc = keng_buf_printf(&url, "%s/bot%s/%s", cfg->telegram_base_url, cfg->telegram_bot_token,
                             photo ? "sendPhoto" : "sendMessage");
    struct curl_slist *h = NULL, *t = NULL;
    if (rc == 0 && (t = curl_slist_append(h, "Content-Type: application/json"))) h = t;
    if (rc == 0 && t && (t = curl_slist_append(h, "Expect:"))) h = t;
    if (rc == 0 && !t) rc = -ENOMEM;
    if (rc == 0) {
        req->headers = h;
        curl_easy_setopt(req->easy, CURLOPT_URL, url.data);
        curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, b->data);
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->len);
    } else {
        curl_slist_free_all(h);
        snprintf(err, errlen, "cannot build the telegram request");
    }
    keng_buf_free(&cut);
    keng_buf_free(&url);
    return rc;
}

static void telegram_judge(const keng_channel_req *req, const keng_channel_response *resp,
                           keng_channel_result *res)
{
    (void)req;
    keng_channel_judge_http(resp, res);
    if (resp->cc != CURLE_OK || resp->truncated) return;
    cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
    cJSON *ok = cJSON_GetObjectItemCaseSensitive(j, "ok");
    if (cJSON_IsTrue(ok) && res->verdict == KENG_CH_DELIVERED) {
        cJSON_Delete(j);
        return;
    }
    if (cJSON_IsFalse(ok)) {
        cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "error_code");
        const char *desc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "description"));
        cJSON *ra = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "parameters"), "retry_after");
        int c = cJSON_IsNumber(code) ? code->valueint : (int)resp->status;
        res->verdict = (c == 429 || c >= 500 || resp->status >= 500) ? KENG_CH_RETRY : KENG_CH_DEAD;
        if (res->verdict == KENG_CH_RETRY && cJSON_IsNumber(ra) && ra->valueint >= 0)
            res->retry_after_s = ra->valueint;
        snprintf(res->error, sizeof res->error, "telegram %d: %s", c,
                 desc ? desc : "(no description)");
    } else if (res->verdict == KENG_CH_DELIVERED) {
        res->verdict = KENG_CH_RETRY;
        snprintf(res->error, sizeof res->error, "telegram: unexpected response: %.120s",
                 resp->body);
    }
    cJSON_Delete(j);
}

const keng_channel_ops keng_channel_telegram = {
    .type = "telegram",
    .configured = telegram_configured,
    .prepare = telegram_prepare,
    .judge = telegram_judge,
    .reuse = 1,
};
