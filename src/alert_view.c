#include "keng/alert_view.h"

#include "keng/norm.h"

#include <stdio.h>
#include <string.h>

static void add_time(cJSON *o, const char *key, int64_t t, int tz)
{
    char buf[KENG_TIME_RFC3339_MAX];
    if (t > 0 && keng_time_format(t, tz, buf, sizeof buf) == 0)
        cJSON_AddStringToObject(o, key, buf);
}

cJSON *keng_alert_view(const keng_alert_meta *m, const cJSON *doc)
{
    cJSON *v = cJSON_Duplicate(doc, 1);
    if (!v) return NULL;
    static const char *const owned[] = {"id",         "status",       "revision",
                                        "created_at", "published_at", "updated_at"};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(v, owned[i]);
    /* id, kind, status first: easier to read in a terminal. */
    cJSON *head = cJSON_CreateObject();
    cJSON_AddStringToObject(head, "id", m->id);
    cJSON *kind = cJSON_DetachItemFromObjectCaseSensitive(v, "kind");
    if (kind) cJSON_AddItemToObject(head, "kind", kind);
    cJSON_AddStringToObject(head, "status", m->status);
    cJSON_AddNumberToObject(head, "revision", m->revision);
    add_time(head, "created_at", m->created_at, KENG_TZ_VN_MIN);
    add_time(head, "published_at", m->published_at, KENG_TZ_VN_MIN);
    add_time(head, "updated_at", m->updated_at, KENG_TZ_VN_MIN);
    while (v->child) {
        cJSON *it = v->child;
        cJSON_DetachItemViaPointer(v, it);
        cJSON_AddItemToObject(head, it->string, it);
    }
    cJSON_Delete(v);
    return head;
}

const char *keng_alert_tpl_kind(const cJSON *doc)
{
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "kind"));
    const char *dir = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "direction"));
    if (!kind) return "other";
    if (!strcmp(kind, "lost_elder") && dir && !strcmp(dir, "found")) return "lost_elder_found";
    return kind;
}

static const char *label(const char *lang, const char *key, const char *const table[][3])
{
    int en = lang && !strcmp(lang, "en");
    for (int i = 0; table[i][0]; i++)
        if (!strcmp(table[i][0], key)) return table[i][en ? 2 : 1];
    return key;
}

static const char *const sex_labels[][3] = {
    {"male", "nam", "male"}, {"female", "nữ", "female"}, {NULL, NULL, NULL}};
static const char *const vehicle_labels[][3] = {{"motorbike", "xe máy", "motorbike"},
                                                {"car", "ô tô", "car"},
                                                {"truck", "xe tải", "truck"},
                                                {"electric_bike", "xe điện", "electric bike"},
                                                {"bicycle", "xe đạp", "bicycle"},
                                                {"other", "phương tiện khác", "other vehicle"},
                                                {NULL, NULL, NULL}};
static const char *const pattern_labels[][3] = {
    {"fake_police", "giả danh công an", "fake police"},
    {"fake_bank", "giả danh ngân hàng", "fake bank"},
    {"investment", "lừa đầu tư", "investment scam"},
    {"job_offer", "lừa việc làm online", "fake job offer"},
    {"prize", "lừa trúng thưởng", "fake prize"},
    {"loan", "lừa cho vay", "loan scam"},
    {"romance", "lừa tình cảm", "romance scam"},
    {"delivery", "giả danh giao hàng", "fake delivery"},
    {"other", "thủ đoạn khác", "other scam"},
    {NULL, NULL, NULL}};

/* "…_at" RFC 3339 → "…_at_local" "14:30 23/11/2026" in the ward's zone. */
static void add_local(cJSON *o, const char *key, int tz)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    int64_t t;
    int off;
    char out[KENG_TIME_LOCAL_MAX], name[64];
    if (!s || keng_time_parse(s, tz, &t, &off) != 0) return;
    if (keng_time_format_local(t, tz, out, sizeof out) != 0) return;
    snprintf(name, sizeof name, "%s_local", key);
    cJSON_AddStringToObject(o, name, out);
}

/* The national form of a phone number for people to read and dial ("0905 123 456"); a number
 * that is not Vietnamese, or was stored before normalization in a shape it cannot read, shows
 * as it is. */
static cJSON *phone_display(const char *phone)
{
    char out[KENG_NORM_PHONE_DISPLAY_MAX];
    return cJSON_CreateString(keng_norm_phone_display(phone, out, sizeof out) == 0 ? out : phone);
}

/* contact_phone_display and phone_numbers_display beside the stored E.164 fields, which stay as
 * they are: lookups, the webhook's alert object and the API speak E.164. */
static void add_phone_displays(cJSON *a)
{
    const char *cp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "contact_phone"));
    cJSON_DeleteItemFromObjectCaseSensitive(a, "contact_phone_display");
    if (cp) cJSON_AddItemToObject(a, "contact_phone_display", phone_display(cp));
    const cJSON *nums = cJSON_GetObjectItemCaseSensitive(a, "phone_numbers");
    cJSON_DeleteItemFromObjectCaseSensitive(a, "phone_numbers_display");
    if (!cJSON_IsArray(nums)) return;
    cJSON *disp = cJSON_AddArrayToObject(a, "phone_numbers_display");
    for (const cJSON *n = nums->child; disp && n; n = n->next)
        if (cJSON_IsString(n)) cJSON_AddItemToArray(disp, phone_display(n->valuestring));
}

cJSON *keng_alert_photo_urls(const cJSON *doc, const char *public_url)
{
    cJSON *arr = cJSON_CreateArray();
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(doc, "photos");
    for (const cJSON *p = ps ? ps->child : NULL; p; p = p->next) {
        if (!cJSON_IsString(p)) continue;
        char url[2048];
        snprintf(url, sizeof url, "%s/t/%s.jpg", public_url, p->valuestring);
        cJSON_AddItemToArray(arr, cJSON_CreateString(url));
    }
    return arr;
}

cJSON *keng_alert_tpl_data(const cJSON *view, const keng_tpl_ctx *c)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "event", c->event);
    cJSON *a = cJSON_Duplicate(view, 1);
    cJSON_AddItemToObject(d, "alert", a);
    const char *urg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "urgency"));
    cJSON_AddBoolToObject(a, "is_immediate", urg && !strcmp(urg, "immediate"));
    static const char *const times[] = {"expires_at", "last_seen_at", "found_at", "seen_at"};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++)
        add_local(a, times[i], c->tz_offset_min);
    const char *sex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "sex"));
    if (sex) cJSON_AddStringToObject(a, "sex_label", label(c->lang, sex, sex_labels));
    const char *vt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "vehicle_type"));
    if (vt) cJSON_AddStringToObject(a, "vehicle_type_label", label(c->lang, vt, vehicle_labels));
    const char *pt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "pattern_type"));
    if (pt) cJSON_AddStringToObject(a, "pattern_type_label", label(c->lang, pt, pattern_labels));
    add_phone_displays(a);
    if (cJSON_GetObjectItemCaseSensitive(a, "plate") &&
        !cJSON_GetObjectItemCaseSensitive(a, "plate_display"))
        cJSON_AddStringToObject(a, "plate_display",
                                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "plate")));
    cJSON *fr = cJSON_GetObjectItemCaseSensitive(a, "footage_request");
    if (cJSON_IsObject(fr)) {
        add_local(fr, "from", c->tz_offset_min);
        add_local(fr, "to", c->tz_offset_min);
    }
    cJSON *ward = cJSON_AddObjectToObject(d, "ward");
    cJSON_AddStringToObject(ward, "name", c->ward_name ? c->ward_name : "");
    cJSON_AddStringToObject(ward, "phone", c->ward_phone ? c->ward_phone : "");
    cJSON *rcp = cJSON_AddObjectToObject(d, "recipient");
    cJSON_AddStringToObject(rcp, "lang", c->lang);
    if (c->link_kind && !strcmp(c->link_kind, "r"))
        cJSON_AddStringToObject(d, "reply_url", KENG_LINK_PLACEHOLDER);
    else if (c->link_kind && !strcmp(c->link_kind, "l"))
        cJSON_AddStringToObject(d, "relay_url", KENG_LINK_PLACEHOLDER);
    if (c->leader_note && *c->leader_note)
        cJSON_AddStringToObject(d, "leader_note", c->leader_note);
    cJSON *urls = keng_alert_photo_urls(view, c->public_url);
    cJSON *photos = cJSON_AddArrayToObject(d, "photos");
    for (const cJSON *u = urls->child; u; u = u->next) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "url", u->valuestring);
        cJSON_AddItemToArray(photos, p);
    }
    cJSON_AddBoolToObject(d, "has_photos", cJSON_GetArraySize(urls) > 0);
    cJSON_Delete(urls);
    const char *un = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "update_note"));
    if (un) cJSON_AddStringToObject(d, "update_note", un);
    const char *res = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "resolution"));
    if (res) cJSON_AddStringToObject(d, "resolution", res);
    const char *cr = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "cancel_reason"));
    if (cr) cJSON_AddStringToObject(d, "cancel_reason", cr);
    return d;
}
