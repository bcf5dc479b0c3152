#include "test.h"

#include "keng/alert_fields.h"
#include "keng/norm.h"

#include <errno.h>

/* now = 2026-11-23T14:30:00+07:00 */
#define NOW (20780LL * 86400 + 7 * 3600 + 30 * 60)

/* JSON with ' for " so the fixtures stay readable. */
static cJSON *J(const char *s)
{
    char *t = strdup(s);
    ASSERT_NOT_NULL(t);
    for (char *p = t; *p; p++)
        if (*p == '\'') *p = '"';
    cJSON *j = cJSON_Parse(t);
    if (!j) TEST_FAIL("bad fixture JSON: %s", t);
    free(t);
    return j;
}

static const char *str(cJSON *o, const char *name)
{
    cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static void expect_ok(cJSON *a)
{
    keng_field_error e;
    int rc = keng_alert_validate(a, NULL, NOW, 0, &e);
    if (rc != 0) TEST_FAIL("rc %d: field \"%s\": %s", rc, e.field, e.message);
}

/* Validates, expects -EINVAL naming field with a message containing msg; frees a. */
static void expect_err_at(cJSON *a, int line, const char *field, const char *msg)
{
    keng_field_error e;
    int rc = keng_alert_validate(a, NULL, NOW, 0, &e);
    char *s = cJSON_PrintUnformatted(a);
    if (rc != -EINVAL) TEST_FAIL("line %d: rc %d, want -EINVAL for %s: %s", line, rc, field, s);
    if (strcmp(e.field, field) != 0 || !strstr(e.message, msg))
        TEST_FAIL("line %d: got field \"%s\" \"%s\", want \"%s\" \"%s\"", line, e.field, e.message,
                  field, msg);
    free(s);
    cJSON_Delete(a);
}
#define expect_err(a, field, msg) expect_err_at((a), __LINE__, (field), (msg))

static const char *MISSING =
    "{'kind':'lost_elder','person_name':' Nguyễn Văn An ','age':78,"
    "'last_seen_at':'2026-11-23 13:00','last_seen_place':'Chợ Hàn, Đà Nẵng',"
    "'contact_phone':'0905 123 456','targets':{'groups':['to-lien-gia-07']}}";
static const char *FOUND =
    "{'kind':'lost_elder','direction':'found','found_at':'2026-11-23T09:00:00+07:00',"
    "'found_place':'Công an phường Hải Châu 1','description':'Cụ ông khoảng 80 tuổi, áo nâu',"
    "'targets':{'all':true}}";
static const char *VEHICLE =
    "{'kind':'suspicious_vehicle','vehicle_type':'motorbike','plate':'29-MĐ1 123.45',"
    "'seen_place':'Kiệt 45 Lê Lợi','targets':{'kinds':['pawnshop','guesthouse']}}";
static const char *SCAM =
    "{'kind':'scam_pattern','pattern_type':'fake_police','script_summary':'Gọi tự xưng công an',"
    "'phone_numbers':['0905.123.456','(+84) 236 3822 123'],"
    "'bank_accounts':['0071 000 123 456'],'urls':['https://vneid-gov.example/login'],"
    "'targets':{'all':true}}";
static const char *OTHER =
    "{'kind':'other','title':'Cảnh báo','body':'Nội dung','targets':{'groups':['khu-pho-2']}}";

static cJSON *without(const char *base, const char *name)
{
    cJSON *a = J(base);
    ASSERT_NOT_NULL(cJSON_GetObjectItemCaseSensitive(a, name));
    cJSON_DeleteItemFromObjectCaseSensitive(a, name);
    return a;
}

/* base with one member replaced by the JSON value v. */
static cJSON *with(const char *base, const char *name, const char *v)
{
    cJSON *a = J(base);
    cJSON *x = J(v);
    if (cJSON_GetObjectItemCaseSensitive(a, name))
        cJSON_ReplaceItemInObjectCaseSensitive(a, name, x);
    else
        cJSON_AddItemToObject(a, name, x);
    return a;
}

TEST(alert_missing_elder_defaults_and_normalization)
{
    cJSON *a = J(MISSING);
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "direction"), "missing");
    ASSERT_STR_EQ(str(a, "urgency"), "immediate");
    ASSERT_STR_EQ(str(a, "severity"), "severe");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(a, "public")));
    ASSERT_STR_EQ(str(a, "expires_at"), "2026-11-26T14:30:00+07:00"); /* + 72 h */
    ASSERT_STR_EQ(str(a, "last_seen_at"), "2026-11-23T13:00:00+07:00");
    ASSERT_STR_EQ(str(a, "person_name"), "Nguyễn Văn An");
    ASSERT_STR_EQ(str(a, "contact_phone"), "+84905123456");
    ASSERT_NULL(cJSON_GetObjectItemCaseSensitive(a, "title")); /* the caller generates it */

    /* Validating the stored result again changes nothing. */
    char *once = cJSON_PrintUnformatted(a);
    expect_ok(a);
    char *twice = cJSON_PrintUnformatted(a);
    ASSERT_STR_EQ(once, twice);
    free(once);
    free(twice);
    cJSON_Delete(a);
}

TEST(alert_missing_elder_required)
{
    expect_err(without(MISSING, "person_name"), "person_name", "required");
    expect_err(without(MISSING, "age"), "age", "required");
    expect_err(without(MISSING, "last_seen_at"), "last_seen_at", "required");
    expect_err(without(MISSING, "last_seen_place"), "last_seen_place", "required");
    expect_err(without(MISSING, "targets"), "targets", "required");
    expect_err(with(MISSING, "person_name", "'   '"), "person_name", "must not be empty");
    expect_err(without(MISSING, "kind"), "kind", "kind is required");
}

TEST(alert_found_elder)
{
    cJSON *a = J(FOUND);
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "found_at"), "2026-11-23T09:00:00+07:00");
    ASSERT_STR_EQ(str(a, "urgency"), "immediate");
    cJSON_Delete(a);
    expect_err(without(FOUND, "found_at"), "found_at", "required");
    expect_err(without(FOUND, "found_place"), "found_place", "required");
    expect_err(without(FOUND, "description"), "description", "direction found");
    /* A missing-only field does not fit a found alert. */
    expect_err(with(FOUND, "last_seen_place", "'x'"), "last_seen_place", "not a field");
    expect_err(with(FOUND, "direction", "'lost'"), "direction", "missing or found");
}

TEST(alert_vehicle_plate)
{
    cJSON *a = J(VEHICLE);
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "plate"), "29MD112345");
    ASSERT_STR_EQ(str(a, "plate_display"), "29-MĐ1 123.45");
    ASSERT_STR_EQ(str(a, "urgency"), "expected");
    ASSERT_STR_EQ(str(a, "severity"), "moderate");
    ASSERT_STR_EQ(str(a, "expires_at"), "2026-11-30T14:30:00+07:00"); /* + 168 h */
    /* Stored again: the display form survives. */
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "plate_display"), "29-MĐ1 123.45");
    /* A PATCH of the plate: the old display form must not linger. */
    cJSON_ReplaceItemInObjectCaseSensitive(a, "plate", cJSON_CreateString("30a-999.99"));
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "plate"), "30A99999");
    ASSERT_STR_EQ(str(a, "plate_display"), "30a-999.99");
    cJSON_ReplaceItemInObjectCaseSensitive(a, "plate", cJSON_CreateString("51F99999"));
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "plate_display"), "51F99999");
    /* Plate removed: its display form goes too. */
    cJSON_DeleteItemFromObjectCaseSensitive(a, "plate");
    cJSON_AddStringToObject(a, "description", "Xe Wave màu đỏ, không biển");
    expect_ok(a);
    ASSERT_NULL(cJSON_GetObjectItemCaseSensitive(a, "plate_display"));
    cJSON_Delete(a);

    expect_err(without(VEHICLE, "vehicle_type"), "vehicle_type", "required");
    expect_err(with(VEHICLE, "vehicle_type", "'tank'"), "vehicle_type", "must be one of");
    expect_err(without(VEHICLE, "plate"), "plate", "plate or description");
    expect_err(with(VEHICLE, "plate", "'ABC'"), "plate", "licence plate");
    expect_err(with(VEHICLE, "plate", "29123"), "plate", "must be a string");
    expect_err(with(VEHICLE, "person_name", "'x'"), "person_name",
               "not a field of a suspicious_vehicle alert");
}

TEST(alert_scam_lists)
{
    cJSON *a = J(SCAM);
    expect_ok(a);
    cJSON *ph = cJSON_GetObjectItemCaseSensitive(a, "phone_numbers");
    ASSERT_STR_EQ(cJSON_GetArrayItem(ph, 0)->valuestring, "+84905123456");
    ASSERT_STR_EQ(cJSON_GetArrayItem(ph, 1)->valuestring, "+842363822123");
    cJSON *ba = cJSON_GetObjectItemCaseSensitive(a, "bank_accounts");
    ASSERT_STR_EQ(cJSON_GetArrayItem(ba, 0)->valuestring, "0071000123456");
    ASSERT_STR_EQ(str(a, "expires_at"), "2026-12-23T14:30:00+07:00"); /* + 720 h */
    ASSERT_STR_EQ(str(a, "severity"), "moderate");
    cJSON_Delete(a);

    expect_err(without(SCAM, "pattern_type"), "pattern_type", "required");
    expect_err(without(SCAM, "script_summary"), "script_summary", "required");
    expect_err(with(SCAM, "phone_numbers", "['0905123456','0123']"), "phone_numbers[1]",
               "phone number");
    expect_err(with(SCAM, "phone_numbers", "'0905123456'"), "phone_numbers", "array");
    expect_err(with(SCAM, "bank_accounts", "['12345']"), "bank_accounts[0]", "6 to 19 digits");
    expect_err(with(SCAM, "urls", "['ftp://x.example']"), "urls[0]", "http");
    expect_err(with(SCAM, "urls", "['https://']"), "urls[0]", "http");
    expect_err(with(SCAM, "urls", "['https://a.example/x y']"), "urls[0]", "http");
    expect_err(with(SCAM, "urls", "[1]"), "urls[0]", "string");
    char big[512] = "[";
    for (int i = 0; i < 21; i++)
        strcat(big, i ? ",'0905123456'" : "'0905123456'");
    strcat(big, "]");
    expect_err(with(SCAM, "phone_numbers", big), "phone_numbers", "at most 20");
}

TEST(alert_other_requires_title_body)
{
    cJSON *a = J(OTHER);
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "expires_at"), "2026-11-26T14:30:00+07:00");
    cJSON_Delete(a);
    expect_err(without(OTHER, "title"), "title", "required");
    expect_err(without(OTHER, "body"), "body", "required");
    char t[260];
    memset(t, 'a', 202);
    t[0] = '\'';
    t[202] = '\'';
    t[203] = '\0';
    expect_err(with(OTHER, "title", t), "title", "at most 200 bytes");
    t[201] = '\'';
    t[202] = '\0';
    a = with(OTHER, "title", t);
    expect_ok(a);
    cJSON_Delete(a);
}

TEST(alert_type_errors)
{
    expect_err(with(MISSING, "age", "'78'"), "age", "age must be an integer from 0 to 130");
    expect_err(with(MISSING, "age", "78.5"), "age", "integer from 0 to 130");
    expect_err(with(MISSING, "age", "131"), "age", "integer from 0 to 130");
    expect_err(with(MISSING, "age", "-1"), "age", "integer from 0 to 130");
    expect_err(with(MISSING, "sex", "'m'"), "sex", "male or female");
    expect_err(with(MISSING, "public", "'yes'"), "public", "true or false");
    expect_err(with(MISSING, "person_name", "42"), "person_name", "must be a string");
    expect_err(with(MISSING, "urgency", "'now'"), "urgency", "immediate, expected or future");
    expect_err(with(MISSING, "severity", "1"), "severity", "extreme, severe, moderate or minor");
    expect_err(with(MISSING, "contact_phone", "'0123'"), "contact_phone", "phone number");
    expect_err(with(MISSING, "last_seen_at", "'yesterday'"), "last_seen_at", "date and time");
    expect_err(with(MISSING, "last_seen_at", "'2026-11-23T25:00:00+07:00'"), "last_seen_at",
               "date and time");
    expect_err(with(MISSING, "kind", "'lost_cat'"), "kind", "must be one of");
    expect_err(with(MISSING, "kind", "7"), "kind", "must be one of");
    expect_err(J("[1,2]"), "", "JSON object");
    cJSON *a = with(MISSING, "age", "0");
    expect_ok(a);
    cJSON_Delete(a);
    a = with(MISSING, "age", "130");
    expect_ok(a);
    cJSON_Delete(a);
}

TEST(alert_photos_targets_area)
{
    const char *h = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char arr[1024];
    snprintf(arr, sizeof arr, "['%s']", h);
    cJSON *a = with(MISSING, "photos", arr);
    expect_ok(a);
    cJSON_Delete(a);
    expect_err(with(MISSING, "photos", "'abc'"), "photos", "array");
    expect_err(with(MISSING, "photos", "['ABCDEF']"), "photos[0]", "64 lower-case hex");
    snprintf(arr, sizeof arr, "['%s','%s']", h, h);
    expect_err(with(MISSING, "photos", arr), "photos[1]", "repeats");
    char many[1024] = "[";
    for (int i = 0; i < 11; i++) {
        char one[80];
        snprintf(one, sizeof one, "%s'%062d%02d'", i ? "," : "", 0, i);
        strcat(many, one);
    }
    strcat(many, "]");
    expect_err(with(MISSING, "photos", many), "photos", "at most 10");

    expect_err(with(MISSING, "targets", "{}"), "targets", "names no one");
    expect_err(with(MISSING, "targets", "{'all':false,'groups':[]}"), "targets", "names no one");
    expect_err(with(MISSING, "targets", "['g1']"), "targets", "must be an object");
    expect_err(with(MISSING, "targets", "{'all':'yes'}"), "targets.all", "true or false");
    expect_err(with(MISSING, "targets", "{'kinds':['school']}"), "targets.kinds[0]", "residential");
    expect_err(with(MISSING, "targets", "{'kinds':['pawnshop','pawnshop']}"), "targets.kinds[1]",
               "repeats");
    expect_err(with(MISSING, "targets", "{'groups':['a b']}"), "targets.groups[0]", "group id");
    expect_err(with(MISSING, "targets", "{'group':['g1']}"), "targets.group", "not a known");
    a = with(MISSING, "targets", "{'kinds':['residential','landlord'],'all':false}");
    expect_ok(a);
    cJSON_Delete(a);

    a = with(MISSING, "area", "{'lat':16.05,'lon':108.2,'radius_m':2000}");
    expect_ok(a);
    cJSON_Delete(a);
    expect_err(with(MISSING, "area", "{'lat':91,'lon':108.2,'radius_m':2000}"), "area.lat",
               "-90 to 90");
    expect_err(with(MISSING, "area", "{'lat':16,'lon':-181,'radius_m':2000}"), "area.lon",
               "-180 to 180");
    expect_err(with(MISSING, "area", "{'lat':16,'lon':108,'radius_m':0}"), "area.radius_m",
               "1 to 50000");
    expect_err(with(MISSING, "area", "{'lat':16,'lon':108,'radius_m':50001}"), "area.radius_m",
               "1 to 50000");
    expect_err(with(MISSING, "area", "{'lat':16,'lon':108}"), "area.radius_m", "required");
    expect_err(with(MISSING, "area", "{'lat':'16','lon':108,'radius_m':5}"), "area.lat", "number");
}

TEST(alert_unknown_and_server_fields)
{
    expect_err(with(MISSING, "colour", "'red'"), "colour", "not a known alert field");
    expect_err(with(MISSING, "Kind", "'x'"), "Kind", "not a known alert field");
    expect_err(with(OTHER, "plate", "'30A-123.45'"), "plate",
               "not a field of an alert of kind other");
    cJSON *a = J(MISSING);
    cJSON_AddStringToObject(a, "id", "al_123");
    cJSON_AddStringToObject(a, "status", "draft");
    cJSON_AddNumberToObject(a, "revision", 3);
    cJSON_AddStringToObject(a, "created_at", "whatever the server wrote");
    cJSON_AddStringToObject(a, "published_at", "x");
    cJSON_AddStringToObject(a, "updated_at", "y");
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "id"), "al_123");
    ASSERT_STR_EQ(str(a, "created_at"), "whatever the server wrote");
    cJSON_Delete(a);
    /* A key given twice is refused rather than silently using one of them. */
    expect_err(J("{'kind':'other','title':'a','title':'b','body':'c','targets':{'all':true}}"),
               "title", "twice");
    /* null means absent. */
    a = with(MISSING, "sex", "null");
    expect_ok(a);
    ASSERT_NULL(cJSON_GetObjectItemCaseSensitive(a, "sex"));
    cJSON_Delete(a);
    expect_err(with(MISSING, "age", "null"), "age", "required");
}

TEST(alert_text_rules)
{
    /* Invalid UTF-8 passes cJSON's parser untouched; it must stop here. */
    cJSON *a = J(OTHER);
    cJSON_ReplaceItemInObjectCaseSensitive(a, "body", cJSON_CreateString("abc \xC0\xAF"));
    expect_err(a, "body", "UTF-8");
    expect_err(with(OTHER, "body", "'a\\u0001b'"), "body", "control characters");
    a = with(OTHER, "title", "'Dòng một\\nDòng hai\\t'");
    cJSON_ReplaceItemInObjectCaseSensitive(a, "body", cJSON_CreateString("l1\nl2"));
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "title"), "Dòng một Dòng hai");
    ASSERT_STR_EQ(str(a, "body"), "l1\nl2");
    cJSON_Delete(a);
    /* An empty optional text is dropped, not stored. */
    a = with(MISSING, "medical_notes", "'  '");
    expect_ok(a);
    ASSERT_NULL(cJSON_GetObjectItemCaseSensitive(a, "medical_notes"));
    cJSON_Delete(a);
    /* max_text is configurable. */
    keng_alert_limits lim;
    keng_alert_limits_default(&lim);
    ASSERT_EQ(lim.max_text, 4000);
    lim.max_text = 5;
    a = with(OTHER, "body", "'123456'");
    keng_field_error e;
    ASSERT_EQ(keng_alert_validate(a, &lim, NOW, 0, &e), -EINVAL);
    ASSERT_STR_EQ(e.field, "body");
    ASSERT_STR_CONTAINS(e.message, "at most 5 bytes");
    cJSON_Delete(a);
}

TEST(alert_times)
{
    cJSON *a = with(MISSING, "last_seen_at", "'2026-11-23T06:00:00Z'");
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "last_seen_at"), "2026-11-23T06:00:00Z"); /* the given offset kept */
    cJSON_Delete(a);
    a = with(MISSING, "last_seen_at", "'2026-11-23T14:35:00.250+07:00'"); /* 5 min ahead */
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "last_seen_at"), "2026-11-23T14:35:00+07:00");
    cJSON_Delete(a);
    expect_err(with(MISSING, "last_seen_at", "'2026-11-23T14:41:00+07:00'"), "last_seen_at",
               "in the future");
    expect_err(with(FOUND, "found_at", "'2026-11-24 09:00'"), "found_at", "in the future");
    expect_err(with(VEHICLE, "seen_at", "'2026-11-25 09:00'"), "seen_at", "in the future");
    expect_err(with(MISSING, "last_seen_at", "'2026-02-29 10:00'"), "last_seen_at",
               "date and time");

    a = with(MISSING, "expires_at", "'2026-11-24 08:00'");
    expect_ok(a);
    ASSERT_STR_EQ(str(a, "expires_at"), "2026-11-24T08:00:00+07:00");
    cJSON_Delete(a);
    a = with(MISSING, "expires_at", "'2027-02-21T14:30:00+07:00'"); /* exactly 90 days */
    expect_ok(a);
    cJSON_Delete(a);
    expect_err(with(MISSING, "expires_at", "'2027-02-21T14:31:00+07:00'"), "expires_at", "90 days");
    expect_err(with(MISSING, "expires_at", "'2026-11-23T14:30:00+07:00'"), "expires_at",
               "in the future");
    expect_err(with(MISSING, "expires_at", "12345"), "expires_at", "date and time");

    /* On update an expired alert gets its own wording. */
    a = with(MISSING, "expires_at", "'2026-11-23T10:00:00+07:00'");
    keng_field_error e;
    ASSERT_EQ(keng_alert_validate(a, NULL, NOW, 1, &e), -EINVAL);
    ASSERT_STR_EQ(e.field, "expires_at");
    ASSERT_STR_CONTAINS(e.message, "has passed");
    cJSON_Delete(a);
}

TEST(alert_footage_request)
{
    cJSON *a = with(MISSING, "footage_request",
                    "{'from':'2026-11-23 06:00','to':'2026-11-23T18:00:00+07:00',"
                    "'note':'Camera trước cửa'}");
    expect_ok(a); /* 12 h, place from last_seen_place */
    cJSON *f = cJSON_GetObjectItemCaseSensitive(a, "footage_request");
    ASSERT_STR_EQ(str(f, "from"), "2026-11-23T06:00:00+07:00");
    cJSON_Delete(a);
    expect_err(with(MISSING, "footage_request",
                    "{'from':'2026-11-23 05:00','to':'2026-11-23T18:00:00+07:00'}"),
               "footage_request.to", "longer than 12 hours");
    expect_err(
        with(MISSING, "footage_request", "{'from':'2026-11-23 05:00','to':'2026-11-23 05:00'}"),
        "footage_request.to", "later than from");
    expect_err(with(MISSING, "footage_request", "{'to':'2026-11-23 05:00'}"),
               "footage_request.from", "required");
    expect_err(with(MISSING, "footage_request", "{'from':'x','to':'2026-11-23 05:00'}"),
               "footage_request.from", "date and time");
    expect_err(with(MISSING, "footage_request",
                    "{'from':'2026-11-23 05:00','to':'2026-11-23 06:00','cam':1}"),
               "footage_request.cam", "not a known field");
    expect_err(with(MISSING, "footage_request", "'yesterday'"), "footage_request", "object");

    /* A vehicle alert without seen_place must name the place in the request. */
    cJSON *v = without(VEHICLE, "seen_place");
    cJSON_AddItemToObject(v, "footage_request",
                          J("{'from':'2026-11-23 05:00','to':'2026-11-23 06:00'}"));
    expect_err(v, "footage_request.place", "needs a place");
    v = without(VEHICLE, "seen_place");
    cJSON_AddItemToObject(v, "footage_request",
                          J("{'from':'2026-11-23 05:00','to':'2026-11-23 06:00',"
                            "'place':'Ngã tư Lê Lợi – Hùng Vương'}"));
    expect_ok(v);
    cJSON_Delete(v);
    /* The window limit is configurable. */
    keng_alert_limits lim;
    keng_alert_limits_default(&lim);
    lim.footage_max_hours = 1;
    a = with(MISSING, "footage_request", "{'from':'2026-11-23 05:00','to':'2026-11-23 06:30'}");
    keng_field_error e;
    ASSERT_EQ(keng_alert_validate(a, &lim, NOW, 0, &e), -EINVAL);
    ASSERT_STR_EQ(e.field, "footage_request.to");
    cJSON_Delete(a);
}

TEST(alert_limits_default)
{
    keng_alert_limits l;
    keng_alert_limits_default(&l);
    ASSERT_EQ(l.footage_max_hours, 12);
    ASSERT_EQ(l.expiry_lost_elder_h, 72);
    ASSERT_EQ(l.expiry_vehicle_h, 168);
    ASSERT_EQ(l.expiry_scam_h, 720);
    ASSERT_EQ(l.expiry_other_h, 72);
    ASSERT_EQ(l.max_photos, 10);
    ASSERT_EQ(l.max_text, 4000);
    /* err may be NULL. */
    cJSON *a = J("{}");
    ASSERT_EQ(keng_alert_validate(a, NULL, NOW, 0, NULL), -EINVAL);
    cJSON_Delete(a);
}
