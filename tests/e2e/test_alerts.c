/* End to end: alerts with photos, their lifecycle, publish into the outbox, relay and reply. */
#include "../e2e_util.h"
#include "../test.h"

#include <time.h>
#include <unistd.h>

static const char *LOST =
    "{\"kind\":\"lost_elder\",\"person_name\":\"Nguyễn Thị Tám\",\"age\":78,\"sex\":\"female\","
    "\"last_seen_at\":\"2026-11-23T06:15:00+07:00\",\"last_seen_place\":\"đầu kiệt 45 Núi Thành\","
    "\"description\":\"Áo bà ba nâu, tóc bạc búi sau gáy\",\"contact_phone\":\"0905 123 456\","
    "%s\"targets\":{\"groups\":[\"%s\"]}}";

static void create_alert(kengd *k, const char *extra, const char *group, char id[64])
{
    char body[2048];
    snprintf(body, sizeof body, LOST, extra, group);
    resp r;
    http_json(k, "POST", "/v1/alerts", body, &r);
    if (r.status != 201) TEST_FAIL("create: %ld %s", r.status, r.body);
    snprintf(id, 64, "%s", jstr(r.json, "id"));
    ASSERT_STR_EQ(jstr(r.json, "status"), "draft");
    resp_free(&r);
}

static char *deliveries_jsonl(kengd *k)
{
    char p[512];
    snprintf(p, sizeof p, "%s/deliveries.jsonl", k->dir);
    char *s = read_file_all(p, NULL);
    return s ? s : strdup("");
}

typedef struct {
    kengd *k;
    const char *alert;
    int want;
} wait_ctx;

static int all_delivered(void *ud)
{
    wait_ctx *w = ud;
    char path[256];
    snprintf(path, sizeof path, "/v1/alerts/%s/deliveries?limit=1", w->alert);
    resp r;
    http(w->k, "GET", path, NULL, NULL, NULL, 0, &r);
    int ok = jnum(r.json, "counts.delivered") >= w->want && jnum(r.json, "counts.pending") == 0 &&
             jnum(r.json, "counts.inflight") == 0;
    resp_free(&r);
    return ok;
}

/* Finds the link of kind ('r'/'l') sent to recipient in deliveries.jsonl: the token. */
static int find_token(kengd *k, const char *recipient, const char *alert, char kind, char tok[40])
{
    char *s = deliveries_jsonl(k);
    int found = 0;
    for (char *line = strtok(s, "\n"); line && !found; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        if (j && !strcmp(jstr(j, "recipient"), recipient) && !strcmp(jstr(j, "alert_id"), alert)) {
            const char *url = jstr(j, kind == 'l' ? "relay_url" : "reply_url");
            const char *mark = kind == 'l' ? "/l/" : "/r/";
            const char *p = url ? strstr(url, mark) : NULL;
            if (p) {
                snprintf(tok, 40, "%s", p + 3);
                found = 1;
            }
        }
        cJSON_Delete(j);
    }
    free(s);
    return found;
}

TEST_TIMEOUT(e2e_alert_lifecycle_with_photos, 60)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    resp r;
    /* a photo: JPEG in, sha256 id out, thumbnail 320 px */
    size_t jl;
    unsigned char *jpeg = make_jpeg(1600, 1200, &jl);
    http(&k, "POST", "/v1/media", NULL, "image/jpeg", jpeg, jl, &r);
    ASSERT_EQ(r.status, 201);
    char media[80];
    snprintf(media, sizeof media, "%s", jstr(r.json, "id"));
    ASSERT_EQ(strlen(media), 64);
    ASSERT_EQ(jnum(r.json, "width"), 1600);
    resp_free(&r);
    http(&k, "POST", "/v1/media", NULL, "image/jpeg", jpeg, jl / 2, &r);
    ASSERT_EQ(r.status, 422);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "undecodable_image");
    resp_free(&r);
    http(&k, "POST", "/v1/media", NULL, "image/jpeg", "hello, not a photo", 18, &r);
    ASSERT_EQ(r.status, 415);
    resp_free(&r);
    free(jpeg);
    char path[256], extra[200];
    snprintf(path, sizeof path, "/t/%s.jpg", media);
    /* validation names the field */
    http_json(&k, "POST", "/v1/alerts",
              "{\"kind\":\"lost_elder\",\"age\":78,\"targets\":{\"all\":true}}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "person_name");
    resp_free(&r);
    http_json(&k, "POST", "/v1/alerts",
              "{\"kind\":\"suspicious_vehicle\",\"vehicle_type\":\"motorbike\",\"plate\":\"ABC\","
              "\"targets\":{\"all\":true}}",
              &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "plate");
    resp_free(&r);
    snprintf(extra, sizeof extra, "\"photos\":[\"%064d\"],", 0);
    char body[2048];
    snprintf(body, sizeof body, LOST, extra, "khu-pho-1");
    http_json(&k, "POST", "/v1/alerts", body, &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "photos[0]");
    resp_free(&r);
    snprintf(extra, sizeof extra, "\"photos\":[\"%s\"],", media);
    char id[64];
    create_alert(&k, extra, "cam-do", id);
    /* a draft's photo is not public */
    http(&k, "GET", path, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
    /* preview: the exact text, per channel and language */
    char p2[256];
    snprintf(p2, sizeof p2, "/v1/alerts/%s/preview?channel=telegram&lang=vi", id);
    http(&k, "GET", p2, NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(jstr(r.json, "text"), "Nguyễn Thị Tám");
    ASSERT_LE(jnum(r.json, "length"), 1024);
    resp_free(&r);
    snprintf(p2, sizeof p2, "/v1/alerts/%s/preview?channel=email&lang=en&event=resolve", id);
    http(&k, "GET", p2, NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(jstr(r.json, "text"), "Nguyễn Thị Tám");
    resp_free(&r);
    snprintf(p2, sizeof p2, "/v1/alerts/%s/preview?channel=pigeon", id);
    http(&k, "GET", p2, NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 400);
    resp_free(&r);
    /* publish: pawnshops (auto) get it at once, through the file channel */
    snprintf(p2, sizeof p2, "/v1/alerts/%s/publish", id);
    http_json(&k, "POST", p2, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(jstr(r.json, "status"), "published");
    ASSERT_EQ(jnum(r.json, "fanout.recipients"), 6);
    ASSERT_EQ(jnum(r.json, "fanout.deliveries"), 7); /* 6 shops + the group's own chat */
    resp_free(&r);
    http_json(&k, "POST", p2, NULL, &r);
    ASSERT_EQ(r.status, 409);
    resp_free(&r);
    wait_ctx w = {&k, id, 7};
    ASSERT(wait_for(all_delivered, &w, 10000));
    char *lines = deliveries_jsonl(&k);
    ASSERT_STR_CONTAINS(lines, "Nguyễn Thị Tám");
    ASSERT(strstr(lines, "@@KENG_LINK@@") == NULL);
    ASSERT_STR_CONTAINS(lines, "/r/");
    free(lines);
    http(&k, "GET", path, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    char ct[64];
    ASSERT_STR_EQ(resp_header(&r, "Content-Type", ct, sizeof ct), "image/jpeg");
    resp_free(&r);
    /* update: a new revision, reaching the same 7 */
    char p3[256];
    snprintf(p3, sizeof p3, "/v1/alerts/%s", id);
    http_json(&k, "PATCH", p3,
              "{\"description\":\"Áo bà ba nâu, quần đen, dép tổ ong\","
              "\"update_note\":\"Có người thấy cụ ở chợ Hòa Cường lúc 7 giờ 30.\"}",
              &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(jnum(r.json, "revision"), 3);
    ASSERT_EQ(jnum(r.json, "fanout.deliveries"), 7);
    resp_free(&r);
    http_json(&k, "PATCH", p3, "{\"kind\":\"scam_pattern\"}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "kind");
    resp_free(&r);
    http_json(&k, "PATCH", p3, "{\"age\":\"old\"}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "age");
    resp_free(&r);
    /* resolve: the found person's photo stops being public */
    snprintf(p2, sizeof p2, "/v1/alerts/%s/resolve", id);
    http_json(&k, "POST", p2, "{\"resolution\":\"Cụ đã được tìm thấy an toàn.\"}", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(jstr(r.json, "status"), "resolved");
    resp_free(&r);
    http(&k, "GET", path, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 410);
    resp_free(&r);
    http_json(&k, "POST", p2, NULL, &r);
    ASSERT_EQ(r.status, 409);
    resp_free(&r);
    http_json(&k, "PATCH", p3, "{\"age\":79}", &r);
    ASSERT_EQ(r.status, 409);
    resp_free(&r);
    w.want = 21;
    ASSERT(wait_for(all_delivered, &w, 10000));
    /* every revision is kept; the list filters */
    http(&k, "GET", "/v1/alerts?status=resolved&kind=lost_elder", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "total"), 1);
    ASSERT_EQ(jnum(r.json, "items[0].revision"), 4);
    resp_free(&r);
    http(&k, "GET", "/v1/alerts?status=draft", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "total"), 0);
    resp_free(&r);
    /* ... and readable: the history, and the alert as it was at any revision */
    snprintf(p2, sizeof p2, "/v1/alerts/%s/revisions", id);
    http(&k, "GET", p2, NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(jnum(r.json, "total"), 4);
    ASSERT_STR_EQ(jstr(r.json, "items[0].status"), "draft");
    ASSERT_STR_EQ(jstr(r.json, "items[1].status"), "published");
    ASSERT_EQ(jnum(r.json, "items[2].revision"), 3);
    ASSERT_STR_EQ(jstr(r.json, "items[2].alert.description"), "Áo bà ba nâu, quần đen, dép tổ ong");
    ASSERT_STR_EQ(jstr(r.json, "items[3].status"), "resolved");
    resp_free(&r);
    snprintf(p2, sizeof p2, "/v1/alerts/%s?revision=1", id);
    http(&k, "GET", p2, NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(jnum(r.json, "revision"), 1);
    ASSERT_STR_EQ(jstr(r.json, "status"), "draft");
    ASSERT_STR_EQ(jstr(r.json, "description"), "Áo bà ba nâu, tóc bạc búi sau gáy");
    resp_free(&r);
    snprintf(p2, sizeof p2, "/v1/alerts/%s?revision=9", id);
    http(&k, "GET", p2, NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(jstr(r.json, "error.field"), "revision");
    resp_free(&r);
    /* the original is for staff; the audit chain holds */
    snprintf(p2, sizeof p2, "/v1/media/%s", media);
    http(&k, "GET", p2, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    http(&k, "GET", "/v1/audit/verify", NULL, NULL, NULL, 0, &r);
    ASSERT(cJSON_IsTrue(jget(r.json, "ok")));
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST_TIMEOUT(e2e_cancel_a_vehicle_alert_and_expiry, 60)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    resp r;
    http_json(&k, "POST", "/v1/alerts",
              "{\"kind\":\"suspicious_vehicle\",\"vehicle_type\":\"motorbike\",\"plate\":\"29-B1 "
              "123.45\","
              "\"color\":\"đỏ\",\"make_model\":\"Honda Wave\",\"urgency\":\"immediate\","
              "\"targets\":{\"kinds\":[\"pawnshop\"]}}",
              &r);
    ASSERT_EQ(r.status, 201);
    ASSERT_STR_EQ(jstr(r.json, "plate"), "29B112345");
    ASSERT_STR_EQ(jstr(r.json, "plate_display"), "29-B1 123.45");
    char id[64], p[256];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    resp_free(&r);
    snprintf(p, sizeof p, "/v1/alerts/%s/cancel", id);
    http_json(&k, "POST", p, "{\"reason\":\"Đăng nhầm biển số\"}", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(jstr(r.json, "status"), "cancelled");
    ASSERT_EQ(jnum(r.json, "fanout.deliveries"), 0); /* a draft reached nobody */
    resp_free(&r);
    /* expiry: an alert whose expires_at passes becomes expired by itself */
    char body[1024];
    long long soon = (long long)time(NULL) + 2;
    struct tm tm;
    time_t t = (time_t)soon;
    gmtime_r(&t, &tm);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof body,
             "{\"kind\":\"scam_pattern\",\"pattern_type\":\"fake_police\",\"script_summary\":"
             "\"Gọi điện xưng công an, yêu cầu chuyển tiền\",\"phone_numbers\":[\"0812 345 678\"],"
             "\"expires_at\":\"%s\",\"targets\":{\"groups\":[\"truong-hoc\"]}}",
             when);
    http_json(&k, "POST", "/v1/alerts", body, &r);
    ASSERT_EQ(r.status, 201);
    ASSERT_STR_EQ(jstr(r.json, "phone_numbers[0]"), "+84812345678");
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    resp_free(&r);
    snprintf(p, sizeof p, "/v1/alerts/%s/publish", id);
    http_json(&k, "POST", p, NULL, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    sleep(4);
    snprintf(p, sizeof p, "/v1/alerts/%s", id);
    http(&k, "GET", p, NULL, NULL, NULL, 0, &r);
    ASSERT_STR_EQ(jstr(r.json, "status"), "expired");
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

TEST_TIMEOUT(e2e_leader_relay_and_household_reply, 60)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    char id[64];
    create_alert(&k, "", "to-lien-gia-07", id);
    char p[256];
    snprintf(p, sizeof p, "/v1/alerts/%s/publish", id);
    resp r;
    http_json(&k, "POST", p, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(jnum(r.json, "fanout.recipients"), 1); /* only the leader, first */
    ASSERT_EQ(jnum(r.json, "fanout.held"), 19);
    resp_free(&r);
    wait_ctx w = {&k, id, 1};
    ASSERT(wait_for(all_delivered, &w, 10000));
    char ltok[40], rtok[40];
    ASSERT(find_token(&k, "hh-2-071", id, 'l', ltok));
    /* the relay page, as the leader's phone shows it */
    char lp[128];
    snprintf(lp, sizeof lp, "/l/%s", ltok);
    http(&k, "GET", lp, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "Chuyển tiếp tới 19 hộ");
    ASSERT_STR_CONTAINS(r.body, "Nguyễn Thị Tám");
    resp_free(&r);
    http(&k, "GET", "/l/0123456789abcdef0123456789abcdef", "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
    /* a plain form post, as from a cheap phone without JavaScript */
    snprintf(lp, sizeof lp, "/l/%s/relay", ltok);
    const char *form = "note=Nh%C3%A0+ai+g%E1%BA%A7n+ch%E1%BB%A3+%C4%91%E1%BB%83+%C3%BD+gi%C3%BAp";
    http(&k, "POST", lp, "", "application/x-www-form-urlencoded", form, strlen(form), &r);
    ASSERT_EQ(r.status, 303);
    resp_free(&r);
    http(&k, "POST", lp, "", "application/json", "{}", 2, &r);
    ASSERT_EQ(r.status, 409);
    resp_free(&r);
    w.want = 20;
    ASSERT(wait_for(all_delivered, &w, 10000));
    char *lines = deliveries_jsonl(&k);
    ASSERT_STR_CONTAINS(lines, "Nhà ai gần chợ để ý giúp");
    free(lines);
    ASSERT(find_token(&k, "hh-2-072", id, 'r', rtok));
    /* a relay token is no reply token and the other way round */
    snprintf(lp, sizeof lp, "/r/%s", ltok);
    http(&k, "GET", lp, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);
    snprintf(lp, sizeof lp, "/r/%s", rtok);
    http(&k, "GET", lp, "", NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "Tôi có thông tin");
    resp_free(&r);
    snprintf(lp, sizeof lp, "/r/%s/replies", rtok);
    const char *tip = "{\"kind\":\"tip\",\"text\":\"Thấy cụ đi về phía cầu Tiên Sơn lúc 7 giờ\"}";
    http(&k, "POST", lp, "", "application/json", tip, strlen(tip), &r);
    ASSERT_EQ(r.status, 201);
    resp_free(&r);
    http(&k, "POST", lp, "", "application/json", "{\"kind\":\"gossip\"}", 17, &r);
    ASSERT_EQ(r.status, 400);
    resp_free(&r);
    /* reach: relayed with the time it took, seen, replied */
    snprintf(p, sizeof p, "/v1/alerts/%s/deliveries", id);
    http(&k, "GET", p, NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "reach.total.seen"), 1);
    ASSERT_EQ(jnum(r.json, "reach.total.replied"), 1);
    ASSERT_EQ(jnum(r.json, "reach.total.held"), 0);
    ASSERT_STR_EQ(jstr(r.json, "reach.groups[0].relay"), "relayed");
    ASSERT_GE(jnum(r.json, "reach.groups[0].time_to_relay_s"), 0);
    resp_free(&r);
    /* who replied: officers yes, viewers no */
    snprintf(p, sizeof p, "/v1/alerts/%s/replies", id);
    http(&k, "GET", p, NULL, NULL, NULL, 0, &r);
    ASSERT_STR_EQ(jstr(r.json, "items[0].from.member"), "hh-2-072");
    resp_free(&r);
    http_json(&k, "POST", "/v1/tokens", "{\"role\":\"viewer\"}", &r);
    char viewer[64];
    snprintf(viewer, sizeof viewer, "%s", jstr(r.json, "token"));
    resp_free(&r);
    http(&k, "GET", p, viewer, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_NULL(jget(r.json, "items[0].from"));
    ASSERT_STR_CONTAINS(jstr(r.json, "items[0].text"), "cầu Tiên Sơn");
    resp_free(&r);
    /* once resolved the link answers that it is closed */
    snprintf(p, sizeof p, "/v1/alerts/%s/resolve", id);
    http_json(&k, "POST", p, NULL, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    http(&k, "POST", lp, "", "application/json", "{\"kind\":\"nothing_seen\"}", 23, &r);
    ASSERT_EQ(r.status, 410);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

/* Publishes body and returns the alert id in id. */
static void publish_new(kengd *k, const char *body, char id[64])
{
    resp r;
    http_json(k, "POST", "/v1/alerts", body, &r);
    if (r.status != 201) TEST_FAIL("create: %ld %s", r.status, r.body);
    snprintf(id, 64, "%s", jstr(r.json, "id"));
    resp_free(&r);
    char p[256];
    snprintf(p, sizeof p, "/v1/alerts/%s/publish", id);
    http_json(k, "POST", p, NULL, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
}

TEST_TIMEOUT(e2e_lookup_plate_phone_account_in_any_spelling, 60)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    char bike[64], scam[64], draft[64], p[512];
    publish_new(&k,
                "{\"kind\":\"suspicious_vehicle\",\"vehicle_type\":\"motorbike\",\"plate\":"
                "\"29-MĐ1 123.45\",\"color\":\"đen\",\"urgency\":\"immediate\","
                "\"targets\":{\"kinds\":[\"pawnshop\"]}}",
                bike);
    publish_new(
        &k,
        "{\"kind\":\"scam_pattern\",\"pattern_type\":\"fake_police\",\"script_summary\":"
        "\"Gọi điện xưng công an phường, yêu cầu chuyển tiền để 'xác minh'\","
        "\"phone_numbers\":[\"0812 345 678\",\"+84 905 111 222\"],"
        "\"bank_accounts\":[\"0071 000.123-456\"],\"targets\":{\"groups\":[\"truong-hoc\"]}}",
        scam);
    resp r;
    /* A draft names the same plate but is not active. */
    http_json(&k, "POST", "/v1/alerts",
              "{\"kind\":\"suspicious_vehicle\",\"vehicle_type\":\"motorbike\",\"plate\":"
              "\"29MD112345\",\"targets\":{\"kinds\":[\"pawnshop\"]}}",
              &r);
    ASSERT_EQ(r.status, 201);
    snprintf(draft, sizeof draft, "%s", jstr(r.json, "id"));
    resp_free(&r);

    /* The plate as typed differently: lower case, Đ read as D, other separators. */
    http(&k, "GET", "/v1/lookup?plate=29-md1%20123.45", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(jstr(r.json, "query.plate"), "29MD112345");
    ASSERT_EQ(jnum(r.json, "total"), 1);
    ASSERT_STR_EQ(jstr(r.json, "items[0].id"), bike);
    ASSERT_STR_EQ(jstr(r.json, "items[0].matched[0]"), "plate");
    resp_free(&r);
    /* A phone in national form finds the scam stored in E.164; so does the account. */
    http(&k, "GET", "/v1/lookup?phone=0905.111.222", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(jnum(r.json, "total"), 1);
    ASSERT_STR_EQ(jstr(r.json, "items[0].id"), scam);
    ASSERT_STR_EQ(jstr(r.json, "items[0].matched[0]"), "phone");
    resp_free(&r);
    http(&k, "GET", "/v1/lookup?account=0071000123456&plate=30A-999.99", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "total"), 1);
    ASSERT_STR_EQ(jstr(r.json, "items[0].matched[0]"), "account");
    resp_free(&r);
    /* Nothing names it: an empty list, not an error. */
    http(&k, "GET", "/v1/lookup?plate=51F-999.99", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(jnum(r.json, "total"), 0);
    resp_free(&r);
    /* Not a plate at all, or no question: 400 naming the field. */
    http(&k, "GET", "/v1/lookup?plate=xe%20m%C3%A0u%20%C4%91en", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_CONTAINS(r.body, "plate");
    resp_free(&r);
    http(&k, "GET", "/v1/lookup", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 400);
    resp_free(&r);
    http(&k, "GET", "/v1/lookup?plate=29MD112345", "", NULL, NULL, 0, &r); /* no token */
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    /* Once cancelled, the bike is no longer named. */
    snprintf(p, sizeof p, "/v1/alerts/%s/cancel", bike);
    http_json(&k, "POST", p, "{\"reason\":\"Đã tìm thấy xe\"}", &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    http(&k, "GET", "/v1/lookup?plate=29MD112345", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "total"), 0);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

/* ---- quiet hours in the answer ---- */

/* The quiet window of quiet_window_around_now (e2e_util), and its end as kengd words it
 * ("2026-12-06T06:00:00+07:00"). */
static void quiet_window_iso(char flag[32], long long *end, char *iso, size_t isolen)
{
    *end = quiet_window_around_now(flag);
    time_t t = (time_t)(*end + 7 * 3600);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(iso, isolen, "%Y-%m-%dT%H:%M:00+07:00", &tm);
}

/* POST /v1/alerts/ID/ACTION (body may be NULL); asserts 200. */
static void lifecycle_ok(kengd *k, const char *id, const char *action, const char *body, resp *r)
{
    char p[256];
    snprintf(p, sizeof p, "/v1/alerts/%s/%s", id, action);
    http_json(k, "POST", p, body, r);
    if (r->status != 200) TEST_FAIL("%s %s: %ld %s", action, id, r->status, r->body);
}

static void assert_not_held(const resp *r)
{
    ASSERT(cJSON_IsNull(jget(r->json, "fanout.quiet_until")));
    ASSERT(cJSON_IsNull(jget(r->json, "fanout.quiet_until_unix")));
}

typedef struct {
    kengd *k;
    const char *alert;
    const char *event;
} event_wait;

/* Every delivery of the alert for this event is delivered (and there is at least one). */
static int event_delivered(void *ud)
{
    event_wait *w = ud;
    cJSON *d = alert_deliveries(w->k, w->alert, "limit=1000");
    int n = 0, done = 0;
    for (const cJSON *it = jget(d, "items")->child; it; it = it->next) {
        if (strcmp(jstr(it, "event"), w->event)) continue;
        n++;
        done += !strcmp(jstr(it, "status"), "delivered");
    }
    cJSON_Delete(d);
    return n > 0 && done == n;
}

TEST_TIMEOUT(e2e_quiet_hours_answer_says_until_when, 60)
{
    char quiet[32], iso[40];
    long long end;
    quiet_window_iso(quiet, &end, iso, sizeof iso);
    const char *extra[] = {"--quiet-hours", quiet, NULL};
    kengd k;
    kengd_start(&k, NULL, extra);
    resp r;
    /* An expected alert waits: the answer names the end of the quiet hours, both ways. */
    char held[64];
    create_alert(&k, "\"urgency\":\"expected\",", "khu-pho-2", held);
    lifecycle_ok(&k, held, "publish", NULL, &r);
    ASSERT_GT(jnum(r.json, "fanout.deliveries"), 0);
    ASSERT_STR_EQ(jstr(r.json, "fanout.quiet_until"), iso);
    ASSERT_EQ((long long)jnum(r.json, "fanout.quiet_until_unix"), end);
    int written = (int)jnum(r.json, "fanout.deliveries");
    resp_free(&r);
    /* ... and says true: every message it wrote is due then, none has gone. */
    cJSON *d = alert_deliveries(&k, held, "limit=1000");
    ASSERT_EQ(jnum(d, "counts.total"), written);
    ASSERT_EQ(jnum(d, "counts.pending"), written);
    for (const cJSON *it = jget(d, "items")->child; it; it = it->next) {
        ASSERT_EQ((long long)jnum(it, "next_at"), end);
        ASSERT_EQ(jnum(it, "attempts"), 0);
    }
    cJSON_Delete(d);

    /* An immediate one (a lost elder's default) is not held. */
    char now_id[64];
    create_alert(&k, "", "khu-pho-2", now_id);
    lifecycle_ok(&k, now_id, "publish", NULL, &r);
    ASSERT_STR_EQ(jstr(r.json, "urgency"), "immediate");
    ASSERT_GT(jnum(r.json, "fanout.deliveries"), 0);
    assert_not_held(&r);
    resp_free(&r);

    /* What keng prints as the way to send now: an update with urgency immediate goes at once. */
    char p[256];
    snprintf(p, sizeof p, "/v1/alerts/%s", held);
    http_json(&k, "PATCH", p, "{\"urgency\":\"immediate\",\"update_note\":\"Gửi ngay\"}", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_GT(jnum(r.json, "fanout.deliveries"), 0);
    assert_not_held(&r);
    resp_free(&r);
    event_wait w = {&k, held, "update"};
    ASSERT(wait_for(event_delivered, &w, 10000));

    /* A resolution of an expected alert is held like the alert (good news waits for morning). */
    char later[64];
    create_alert(&k, "\"urgency\":\"expected\",", "khu-pho-2", later);
    lifecycle_ok(&k, later, "publish", NULL, &r);
    resp_free(&r);
    lifecycle_ok(&k, later, "resolve", "{\"resolution\":\"Đã tìm thấy\"}", &r);
    ASSERT_STR_EQ(jstr(r.json, "status"), "resolved");
    ASSERT_STR_EQ(jstr(r.json, "fanout.quiet_until"), iso);
    ASSERT_EQ((long long)jnum(r.json, "fanout.quiet_until_unix"), end);
    resp_free(&r);

    /* A draft cancelled writes no message: nothing waits. */
    char draft[64];
    create_alert(&k, "\"urgency\":\"expected\",", "khu-pho-2", draft);
    lifecycle_ok(&k, draft, "cancel", NULL, &r);
    ASSERT_EQ(jnum(r.json, "fanout.deliveries"), 0);
    assert_not_held(&r);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}
