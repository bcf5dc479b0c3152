#include "keng/alert_fields.h"

#include "keng/norm.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Limits that are part of the contract rather than configuration. */
#define TITLE_MAX 200
#define NAME_MAX_B 200 /* person_name, make_model, color, heading */
#define PLACE_MAX 500  /* last_seen_place, found_place, seen_place, where_staying, place */
#define NOTE_MAX 1000  /* footage_request.note */
#define PLATE_RAW_MAX 32
#define URL_MAX 2048
#define LIST_MAX 20 /* phone_numbers, bank_accounts, urls */
#define TARGET_GROUPS_MAX 1000
#define GROUP_ID_MAX 64
#define MEMBERS_MAX 100    /* top-level members; bounds the duplicate-key scan */
#define FUTURE_SLACK_S 600 /* a "seen at" time may be this far ahead (clock skew) */
#define EXPIRY_MAX_S (90 * 86400)

/* Which alert shapes a member belongs to; lost_elder splits by direction. */
enum {
    S_MISSING = 1,
    S_FOUND = 2,
    S_VEHICLE = 4,
    S_SCAM = 8,
    S_OTHER = 16,
    S_ELDER = S_MISSING | S_FOUND,
    S_ALL = 31,
};

static const struct {
    const char *name;
    unsigned shapes;
} known_members[] = {
    {"kind", S_ALL},
    {"title", S_ALL},
    {"body", S_ALL},
    {"photos", S_ALL},
    {"urgency", S_ALL},
    {"severity", S_ALL},
    {"targets", S_ALL},
    {"area", S_ALL},
    {"expires_at", S_ALL},
    {"public", S_ALL},
    {"footage_request", S_ALL},
    {"direction", S_ELDER},
    {"person_name", S_ELDER},
    {"age", S_ELDER},
    {"sex", S_ELDER},
    {"contact_phone", S_ELDER},
    {"description", S_ELDER | S_VEHICLE},
    {"last_seen_at", S_MISSING},
    {"last_seen_place", S_MISSING},
    {"medical_notes", S_MISSING},
    {"found_at", S_FOUND},
    {"found_place", S_FOUND},
    {"where_staying", S_FOUND},
    {"vehicle_type", S_VEHICLE},
    {"plate", S_VEHICLE},
    {"plate_display", S_VEHICLE},
    {"make_model", S_VEHICLE},
    {"color", S_VEHICLE},
    {"seen_at", S_VEHICLE},
    {"seen_place", S_VEHICLE},
    {"heading", S_VEHICLE},
    {"pattern_type", S_SCAM},
    {"script_summary", S_SCAM},
    {"phone_numbers", S_SCAM},
    {"bank_accounts", S_SCAM},
    {"urls", S_SCAM},
    {"advice", S_SCAM},
};

/* Owned by the server; whatever the client sent there the caller overwrites. */
static const char *const server_members[] = {
    "id",          "status",     "revision",   "created_at",    "published_at", "updated_at",
    "resolved_at", "resolution", "cancelled_at", "cancel_reason", "update_note"};

static const char *const kinds[] = {"lost_elder", "suspicious_vehicle", "scam_pattern", "other",
                                    NULL};
static const char *const directions[] = {"missing", "found", NULL};
static const char *const urgencies[] = {"immediate", "expected", "future", NULL};
static const char *const severities[] = {"extreme", "severe", "moderate", "minor", NULL};
static const char *const sexes[] = {"male", "female", NULL};
static const char *const vehicle_types[] = {"motorbike", "car",   "truck", "electric_bike",
                                            "bicycle",   "other", NULL};
static const char *const pattern_types[] = {"fake_police", "fake_bank", "investment", "job_offer",
                                            "prize",       "loan",      "romance",    "delivery",
                                            "other",       NULL};
static const char *const group_kinds[] = {
    "residential", "inter_household", "pawnshop", "guesthouse", "landlord", "other", NULL};

typedef struct ctx {
    cJSON *a;
    keng_alert_limits lim;
    int64_t now;
    int for_update;
    keng_field_error *err;
    unsigned shape;
    const char *shape_label; /* "a lost_elder alert", … for messages */
} ctx;

__attribute__((format(printf, 3, 4))) static int fail(ctx *c, const char *field, const char *fmt,
                                                      ...)
{
    if (c->err) {
        snprintf(c->err->field, sizeof c->err->field, "%s", field);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err->message, sizeof c->err->message, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static int nomem(ctx *c)
{
    if (c->err) {
        c->err->field[0] = '\0';
        snprintf(c->err->message, sizeof c->err->message, "out of memory; try again");
    }
    return -ENOMEM;
}

/* What to give, for the "is required" messages. */
static const char *const hints[][2] = {
    {"person_name", "the person's full name"},
    {"age", "the person's age in years"},
    {"last_seen_at", "when the person was last seen, like 2026-11-23 14:30"},
    {"last_seen_place", "where the person was last seen"},
    {"found_at", "when the person was found, like 2026-11-23 14:30"},
    {"found_place", "where the person was found"},
    {"description", "a description that lets people recognise them"},
    {"script_summary", "what the scammers say or do, in a few sentences"},
    {"title", "a short headline"},
    {"body", "the text of the message"},
    {"footage_request.from", "the start of the recording wanted, like 2026-11-23 06:00"},
    {"footage_request.to", "the end of the recording wanted, like 2026-11-23 08:00"},
    {"area.lat", "the latitude of the centre"},
    {"area.lon", "the longitude of the centre"},
    {"area.radius_m", "the radius in metres"},
};

static int missing(ctx *c, const char *field)
{
    /* Members of a nested object are required by the object, not by the kind. */
    const char *who = strchr(field, '.') ? "" : " for ";
    const char *label = *who ? c->shape_label : "";
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++)
        if (!strcmp(field, hints[i][0]))
            return fail(c, field, "%s is required%s%s: give %s", field, who, label, hints[i][1]);
    return fail(c, field, "%s is required%s%s", field, who, label);
}

static int in_list(const char *s, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0) return 1;
    return 0;
}

/* "a, b, c or d" for messages. */
static void list_words(const char *const *list, const char *conj, char *out, size_t len)
{
    size_t n = 0, used = 0;
    while (list[n])
        n++;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? conj : ", ";
        int w = snprintf(out + used, len - used, "%s%s", sep, list[i]);
        if (w < 0 || (size_t)w >= len - used) return;
        used += (size_t)w;
    }
}

static cJSON *get(cJSON *obj, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(obj, name);
}

static int set_string(ctx *c, cJSON *obj, const char *name, const char *value)
{
    cJSON *s = cJSON_CreateString(value);
    if (!s) return nomem(c);
    if (get(obj, name)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, name, s)) {
            cJSON_Delete(s);
            return nomem(c);
        }
    } else if (!cJSON_AddItemToObject(obj, name, s)) {
        cJSON_Delete(s);
        return nomem(c);
    }
    return 0;
}

static int set_array_string(ctx *c, cJSON *arr, int i, const char *value)
{
    cJSON *s = cJSON_CreateString(value);
    if (!s) return nomem(c);
    if (!cJSON_ReplaceItemInArray(arr, i, s)) {
        cJSON_Delete(s);
        return nomem(c);
    }
    return 0;
}

/* Rejects a second copy of a key (cJSON keeps both and would read the first) and removes
 * members that are JSON null, which mean "absent" (a merge patch deletes with null). */
static int tidy_object(ctx *c, cJSON *obj, const char *path)
{
    int n = 0;
    for (cJSON *m = obj->child; m; m = m->next) {
        if (++n > MEMBERS_MAX)
            return fail(c, path, "%s has too many fields (at most %d)", *path ? path : "the alert",
                        MEMBERS_MAX);
        for (cJSON *p = obj->child; p != m; p = p->next)
            if (strcmp(p->string, m->string) == 0)
                return fail(c, m->string, "%s appears twice; give it once", m->string);
    }
    cJSON *m = obj->child;
    while (m) {
        cJSON *next = m->next;
        if (cJSON_IsNull(m)) cJSON_Delete(cJSON_DetachItemViaPointer(obj, m));
        m = next;
    }
    return 0;
}

/* Only the named members may appear in a nested object such as targets. */
static int only_members(ctx *c, cJSON *obj, const char *path, const char *const *names)
{
    for (cJSON *m = obj->child; m; m = m->next) {
        if (in_list(m->string, names)) continue;
        char f[64];
        snprintf(f, sizeof f, "%s.%.40s", path, m->string);
        char words[160];
        list_words(names, " and ", words, sizeof words);
        return fail(c, f, "%s is not a known field; %s has only %s", f, path, words);
    }
    return 0;
}

enum { LINE = 0, MULTI = 1 };

/* A text member: a string of valid UTF-8, trimmed, without control characters (single-line
 * fields turn tabs and line breaks into spaces, since pasted addresses carry them), at most
 * max bytes. An empty optional text is removed as if absent. *out (optional) borrows the
 * stored value, NULL when absent. */
static int text(ctx *c, cJSON *obj, const char *path, const char *name, int required, size_t max,
                int multi, const char **out)
{
    if (out) *out = NULL;
    cJSON *it = get(obj, name);
    if (!it) return required ? missing(c, path) : 0;
    if (!cJSON_IsString(it)) return fail(c, path, "%s must be a string", path);
    const char *s = it->valuestring;
    size_t len = strlen(s);
    if (!keng_utf8_valid(s, len)) return fail(c, path, "%s is not valid UTF-8 text", path);
    while (len > 0 && strchr(" \t\r\n", s[len - 1]))
        len--;
    while (len > 0 && strchr(" \t\r\n", *s))
        s++, len--;
    if (len == 0) {
        if (required)
            return fail(c, path, "%s must not be empty; it is required for %s", path,
                        c->shape_label);
        cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
        return 0;
    }
    if (len > max)
        return fail(c, path, "%s is too long: at most %zu bytes, it has %zu; shorten it", path, max,
                    len);
    char *t = malloc(len + 1);
    if (!t) return nomem(c);
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b == '\t' || b == '\r' || b == '\n') {
            t[i] = multi ? (char)b : ' ';
        } else if (b < 0x20 || b == 0x7f) {
            free(t);
            return fail(c, path, "%s must not contain control characters", path);
        } else {
            t[i] = (char)b;
        }
    }
    t[len] = '\0';
    int rc = 0;
    if (strcmp(t, it->valuestring) != 0) rc = set_string(c, obj, name, t);
    free(t);
    if (rc) return rc;
    if (out) *out = get(obj, name)->valuestring;
    return 0;
}

/* An enumerated member; def (may be NULL) is stored when it is absent. */
static int choice(ctx *c, cJSON *obj, const char *path, const char *name, int required,
                  const char *const *values, const char *def, const char **out)
{
    if (out) *out = NULL;
    cJSON *it = get(obj, name);
    char words[200];
    list_words(values, " or ", words, sizeof words);
    if (!it) {
        if (def) {
            int rc = set_string(c, obj, name, def);
            if (rc) return rc;
            if (out) *out = get(obj, name)->valuestring;
            return 0;
        }
        if (required)
            return fail(c, path, "%s is required for %s: one of %s", path, c->shape_label, words);
        return 0;
    }
    if (!cJSON_IsString(it) || !in_list(it->valuestring, values))
        return fail(c, path, "%s must be one of %s", path, words);
    if (out) *out = it->valuestring;
    return 0;
}

/* A time member parsed with keng_time_parse and stored back as RFC 3339, in the offset it was
 * given in or +07:00. */
static int time_member(ctx *c, cJSON *obj, const char *path, const char *name, int required,
                       int64_t *t_out, int *present)
{
    *present = 0;
    cJSON *it = get(obj, name);
    if (!it) return required ? missing(c, path) : 0;
    int64_t t;
    int off;
    if (!cJSON_IsString(it) || keng_time_parse(it->valuestring, KENG_TZ_VN_MIN, &t, &off) != 0)
        return fail(c, path,
                    "%s must be a date and time like 2026-11-23T14:30:00+07:00 or "
                    "2026-11-23 14:30 (Vietnam time)",
                    path);
    char s[KENG_TIME_RFC3339_MAX];
    if (keng_time_format(t, off, s, sizeof s) != 0)
        return fail(c, path, "%s is out of range; give a year between 0 and 9999", path);
    if (strcmp(s, it->valuestring) != 0) {
        int rc = set_string(c, obj, name, s);
        if (rc) return rc;
    }
    *t_out = t;
    *present = 1;
    return 0;
}

/* A time of something already seen: allow a little clock skew, not a future. */
static int seen_time(ctx *c, const char *name, int required)
{
    int64_t t;
    int present;
    int rc = time_member(c, c->a, name, name, required, &t, &present);
    if (rc) return rc;
    if (present && t > c->now + FUTURE_SLACK_S)
        return fail(c, name, "%s is in the future; give the time it happened", name);
    return 0;
}

static int phone_member(ctx *c, cJSON *obj, const char *name)
{
    cJSON *it = get(obj, name);
    if (!it) return 0;
    char e164[KENG_NORM_PHONE_MAX];
    if (!cJSON_IsString(it) || keng_norm_phone(it->valuestring, e164, sizeof e164) != 0)
        return fail(c, name,
                    "%s must be a Vietnamese phone number, like 0905 123 456 or +84 236 3822 123",
                    name);
    if (strcmp(e164, it->valuestring) == 0) return 0;
    return set_string(c, obj, name, e164);
}

static int is_integer_in(const cJSON *it, double lo, double hi)
{
    return cJSON_IsNumber(it) && isfinite(it->valuedouble) && it->valuedouble >= lo &&
           it->valuedouble <= hi && floor(it->valuedouble) == it->valuedouble;
}

static int number_in(ctx *c, cJSON *obj, const char *path, const char *name, double lo, double hi)
{
    cJSON *it = get(obj, name);
    if (!it) return missing(c, path);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < lo ||
        it->valuedouble > hi)
        return fail(c, path, "%s must be a number from %g to %g", path, lo, hi);
    return 0;
}

/* ---- per kind ---- */

static int check_age_sex(ctx *c, int age_required)
{
    cJSON *age = get(c->a, "age");
    if (!age && age_required) return missing(c, "age");
    if (age && !is_integer_in(age, 0, 130))
        return fail(c, "age", "age must be an integer from 0 to 130");
    return choice(c, c->a, "sex", "sex", 0, sexes, NULL, NULL);
}

static int check_lost_elder(ctx *c)
{
    int rc;
    if (c->shape == S_MISSING) {
        if ((rc = text(c, c->a, "person_name", "person_name", 1, NAME_MAX_B, LINE, NULL)) ||
            (rc = check_age_sex(c, 1)) || (rc = seen_time(c, "last_seen_at", 1)) ||
            (rc = text(c, c->a, "last_seen_place", "last_seen_place", 1, PLACE_MAX, LINE, NULL)) ||
            (rc = text(c, c->a, "description", "description", 0, (size_t)c->lim.max_text, MULTI,
                       NULL)) ||
            (rc = text(c, c->a, "medical_notes", "medical_notes", 0, (size_t)c->lim.max_text, MULTI,
                       NULL)))
            return rc;
    } else {
        if ((rc = seen_time(c, "found_at", 1)) ||
            (rc = text(c, c->a, "found_place", "found_place", 1, PLACE_MAX, LINE, NULL)) ||
            (rc = text(c, c->a, "description", "description", 1, (size_t)c->lim.max_text, MULTI,
                       NULL)) ||
            (rc = text(c, c->a, "person_name", "person_name", 0, NAME_MAX_B, LINE, NULL)) ||
            (rc = check_age_sex(c, 0)) ||
            (rc = text(c, c->a, "where_staying", "where_staying", 0, PLACE_MAX, LINE, NULL)))
            return rc;
    }
    return phone_member(c, c->a, "contact_phone");
}

/* plate is stored normalized for lookups; plate_display keeps what the officer typed. A stored
 * alert comes back with both, so plate_display survives as long as it still names the plate. */
static int check_plate(ctx *c, const char **plate_out)
{
    *plate_out = NULL;
    cJSON *it = get(c->a, "plate");
    cJSON *disp = get(c->a, "plate_display");
    if (disp && !cJSON_IsString(disp))
        return fail(c, "plate_display", "plate_display must be a string");
    if (!it) {
        if (disp) cJSON_DeleteItemFromObjectCaseSensitive(c->a, "plate_display");
        return 0;
    }
    if (!cJSON_IsString(it)) return fail(c, "plate", "plate must be a string");
    const char *typed = it->valuestring;
    char norm[KENG_NORM_PLATE_MAX];
    if (strlen(typed) > PLATE_RAW_MAX || keng_norm_plate(typed, norm, sizeof norm) != 0)
        return fail(c, "plate",
                    "plate must be a Vietnamese licence plate like 30A-123.45, 29-B1 123.45 or "
                    "29A-1234; leave it out and use description if it was not read");
    char shown[PLATE_RAW_MAX + 1];
    int keep_disp = 0;
    if (strcmp(norm, typed) == 0 && disp) {
        char dn[KENG_NORM_PLATE_MAX];
        keep_disp = keng_norm_plate(disp->valuestring, dn, sizeof dn) == 0 && !strcmp(dn, norm);
    }
    int rc;
    if (!keep_disp) {
        /* The typed form, trimmed, is what recipients will read. */
        const char *s = typed;
        size_t len = strlen(s);
        while (len > 0 && s[len - 1] == ' ')
            len--;
        while (len > 0 && *s == ' ')
            s++, len--;
        memcpy(shown, s, len);
        shown[len] = '\0';
        if ((rc = set_string(c, c->a, "plate_display", shown))) return rc;
    }
    if (strcmp(norm, typed) != 0 && (rc = set_string(c, c->a, "plate", norm))) return rc;
    *plate_out = get(c->a, "plate")->valuestring;
    return 0;
}

static int check_vehicle(ctx *c)
{
    int rc;
    const char *plate, *desc;
    if ((rc = choice(c, c->a, "vehicle_type", "vehicle_type", 1, vehicle_types, NULL, NULL)) ||
        (rc = check_plate(c, &plate)) ||
        (rc =
             text(c, c->a, "description", "description", 0, (size_t)c->lim.max_text, MULTI, &desc)))
        return rc;
    if (!plate && !desc)
        return fail(c, "plate",
                    "plate or description is required for a suspicious_vehicle alert: give the "
                    "plate, or describe the vehicle if the plate was not read");
    if ((rc = text(c, c->a, "make_model", "make_model", 0, NAME_MAX_B, LINE, NULL)) ||
        (rc = text(c, c->a, "color", "color", 0, NAME_MAX_B, LINE, NULL)) ||
        (rc = seen_time(c, "seen_at", 0)) ||
        (rc = text(c, c->a, "seen_place", "seen_place", 0, PLACE_MAX, LINE, NULL)) ||
        (rc = text(c, c->a, "heading", "heading", 0, NAME_MAX_B, LINE, NULL)))
        return rc;
    return 0;
}

/* An http(s) URL as a scam message carries it: scheme, a host, no white space. */
static int url_ok(const char *s)
{
    size_t len = strlen(s);
    if (len > URL_MAX || !keng_utf8_valid(s, len)) return 0;
    size_t skip;
    if (strncasecmp(s, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b <= 0x20 || b == 0x7f) return 0;
    }
    const char *host = s + skip;
    size_t hl = strcspn(host, "/?#");
    const char *at = memchr(host, '@', hl);
    if (at) {
        hl -= (size_t)(at + 1 - host);
        host = at + 1;
    }
    return hl > 0 && host[0] != ':' && host[0] != '.';
}

enum list_kind { L_PHONE, L_ACCOUNT, L_URL };

static int check_list(ctx *c, const char *name, enum list_kind kind)
{
    cJSON *arr = get(c->a, name);
    if (!arr) return 0;
    if (!cJSON_IsArray(arr)) return fail(c, name, "%s must be an array of strings", name);
    int n = cJSON_GetArraySize(arr);
    if (n > LIST_MAX) return fail(c, name, "%s has %d entries; at most %d", name, n, LIST_MAX);
    for (int i = 0; i < n; i++) {
        cJSON *it = cJSON_GetArrayItem(arr, i);
        char path[64];
        snprintf(path, sizeof path, "%s[%d]", name, i);
        if (!cJSON_IsString(it)) return fail(c, path, "%s must be a string", path);
        char out[KENG_NORM_ACCOUNT_MAX];
        int rc;
        switch (kind) {
        case L_PHONE:
            if (keng_norm_phone(it->valuestring, out, sizeof out) != 0)
                return fail(c, path,
                            "%s must be a Vietnamese phone number, like 0905 123 456 or "
                            "+84 905 123 456",
                            path);
            break;
        case L_ACCOUNT:
            if (keng_norm_account(it->valuestring, out, sizeof out) != 0)
                return fail(c, path, "%s must be a bank account number of 6 to 19 digits", path);
            break;
        case L_URL:
            if (!url_ok(it->valuestring))
                return fail(c, path,
                            "%s must be a web address starting with http:// or https://, "
                            "without spaces",
                            path);
            continue;
        }
        if (strcmp(out, it->valuestring) != 0 && (rc = set_array_string(c, arr, i, out))) return rc;
    }
    return 0;
}

static int check_scam(ctx *c)
{
    int rc;
    if ((rc = choice(c, c->a, "pattern_type", "pattern_type", 1, pattern_types, NULL, NULL)) ||
        (rc = text(c, c->a, "script_summary", "script_summary", 1, (size_t)c->lim.max_text, MULTI,
                   NULL)) ||
        (rc = check_list(c, "phone_numbers", L_PHONE)) ||
        (rc = check_list(c, "bank_accounts", L_ACCOUNT)) || (rc = check_list(c, "urls", L_URL)) ||
        (rc = text(c, c->a, "advice", "advice", 0, (size_t)c->lim.max_text, MULTI, NULL)))
        return rc;
    return 0;
}

/* ---- common members ---- */

static int is_media_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return 0;
    return n == 64;
}

static int check_photos(ctx *c)
{
    cJSON *arr = get(c->a, "photos");
    if (!arr) return 0;
    if (!cJSON_IsArray(arr))
        return fail(c, "photos", "photos must be an array of media ids from POST /v1/media");
    int n = cJSON_GetArraySize(arr);
    if (n > c->lim.max_photos)
        return fail(c, "photos", "photos has %d entries; at most %d photos per alert", n,
                    c->lim.max_photos);
    int i = 0;
    for (cJSON *it = arr->child; it; it = it->next, i++) {
        char path[32];
        snprintf(path, sizeof path, "photos[%d]", i);
        if (!cJSON_IsString(it) || !is_media_id(it->valuestring))
            return fail(c, path,
                        "%s must be a media id (64 lower-case hex characters) as returned by "
                        "POST /v1/media",
                        path);
        for (cJSON *p = arr->child; p != it; p = p->next)
            if (strcmp(p->valuestring, it->valuestring) == 0)
                return fail(c, path, "%s repeats an earlier photo; give each photo once", path);
    }
    return 0;
}

static int is_group_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char ch = s[n];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    return n > 0 && n <= GROUP_ID_MAX;
}

static int check_targets(ctx *c)
{
    static const char *const names[] = {"groups", "kinds", "all", NULL};
    cJSON *t = get(c->a, "targets");
    if (!t)
        return fail(c, "targets",
                    "targets is required: name groups, group kinds, or \"all\": true");
    if (!cJSON_IsObject(t))
        return fail(c, "targets",
                    "targets must be an object like {\"groups\": [\"to-lien-gia-07\"]}, "
                    "{\"kinds\": [\"pawnshop\"]} or {\"all\": true}");
    int rc;
    if ((rc = tidy_object(c, t, "targets")) || (rc = only_members(c, t, "targets", names)))
        return rc;
    int count = 0;
    cJSON *groups = get(t, "groups");
    if (groups) {
        if (!cJSON_IsArray(groups))
            return fail(c, "targets.groups", "targets.groups must be an array of group ids");
        int n = cJSON_GetArraySize(groups);
        if (n > TARGET_GROUPS_MAX)
            return fail(c, "targets.groups", "targets.groups has %d entries; at most %d", n,
                        TARGET_GROUPS_MAX);
        int i = 0;
        for (cJSON *g = groups->child; g; g = g->next, i++) {
            char path[48];
            snprintf(path, sizeof path, "targets.groups[%d]", i);
            if (!cJSON_IsString(g) || !is_group_id(g->valuestring))
                return fail(c, path,
                            "%s must be a group id: 1 to %d letters, digits, '-', '_' or '.'", path,
                            GROUP_ID_MAX);
        }
        count += n;
    }
    cJSON *kl = get(t, "kinds");
    if (kl) {
        char words[160];
        list_words(group_kinds, " or ", words, sizeof words);
        if (!cJSON_IsArray(kl))
            return fail(c, "targets.kinds", "targets.kinds must be an array of: %s", words);
        int i = 0;
        for (cJSON *k = kl->child; k; k = k->next, i++) {
            char path[48];
            snprintf(path, sizeof path, "targets.kinds[%d]", i);
            if (!cJSON_IsString(k) || !in_list(k->valuestring, group_kinds))
                return fail(c, path, "%s must be one of %s", path, words);
            for (cJSON *p = kl->child; p != k; p = p->next)
                if (!strcmp(p->valuestring, k->valuestring))
                    return fail(c, path, "%s repeats %s; give each kind once", path,
                                k->valuestring);
        }
        count += i;
    }
    cJSON *all = get(t, "all");
    if (all) {
        if (!cJSON_IsBool(all)) return fail(c, "targets.all", "targets.all must be true or false");
        if (cJSON_IsTrue(all)) count++;
    }
    if (count == 0)
        return fail(c, "targets",
                    "targets names no one: give at least one group, group kind, or \"all\": true");
    return 0;
}

static int check_area(ctx *c)
{
    static const char *const names[] = {"lat", "lon", "radius_m", NULL};
    cJSON *a = get(c->a, "area");
    if (!a) return 0;
    if (!cJSON_IsObject(a))
        return fail(c, "area",
                    "area must be an object like {\"lat\": 16.05, \"lon\": 108.2, "
                    "\"radius_m\": 2000}");
    int rc;
    if ((rc = tidy_object(c, a, "area")) || (rc = only_members(c, a, "area", names)) ||
        (rc = number_in(c, a, "area.lat", "lat", -90, 90)) ||
        (rc = number_in(c, a, "area.lon", "lon", -180, 180)) ||
        (rc = number_in(c, a, "area.radius_m", "radius_m", 1, 50000)))
        return rc;
    return 0;
}

static int expiry_hours(ctx *c, const char *kind)
{
    if (!strcmp(kind, "lost_elder")) return c->lim.expiry_lost_elder_h;
    if (!strcmp(kind, "suspicious_vehicle")) return c->lim.expiry_vehicle_h;
    if (!strcmp(kind, "scam_pattern")) return c->lim.expiry_scam_h;
    return c->lim.expiry_other_h;
}

static int check_expires(ctx *c, const char *kind)
{
    int64_t t;
    int present, rc;
    if ((rc = time_member(c, c->a, "expires_at", "expires_at", 0, &t, &present))) return rc;
    if (!present) {
        char s[KENG_TIME_RFC3339_MAX];
        int64_t def = c->now + (int64_t)expiry_hours(c, kind) * 3600;
        if (keng_time_format(def, KENG_TZ_VN_MIN, s, sizeof s) != 0)
            return fail(c, "expires_at", "the server clock is out of range");
        return set_string(c, c->a, "expires_at", s);
    }
    if (t <= c->now) {
        if (c->for_update)
            return fail(c, "expires_at",
                        "expires_at has passed; give a later expires_at to keep the alert "
                        "running");
        return fail(c, "expires_at",
                    "expires_at must be in the future; give a later time or leave it out for "
                    "the default");
    }
    if (t - c->now > EXPIRY_MAX_S)
        return fail(c, "expires_at", "expires_at is more than 90 days ahead; give an earlier time");
    return 0;
}

static int check_footage(ctx *c)
{
    static const char *const names[] = {"from", "to", "note", "place", NULL};
    cJSON *f = get(c->a, "footage_request");
    if (!f) return 0;
    if (!cJSON_IsObject(f))
        return fail(c, "footage_request",
                    "footage_request must be an object with from, to, note and place");
    int rc;
    if ((rc = tidy_object(c, f, "footage_request")) ||
        (rc = only_members(c, f, "footage_request", names)))
        return rc;
    int64_t from, to;
    int pf, pt;
    const char *place;
    if ((rc = time_member(c, f, "footage_request.from", "from", 1, &from, &pf)) ||
        (rc = time_member(c, f, "footage_request.to", "to", 1, &to, &pt)) ||
        (rc = text(c, f, "footage_request.note", "note", 0, NOTE_MAX, MULTI, NULL)) ||
        (rc = text(c, f, "footage_request.place", "place", 0, PLACE_MAX, LINE, &place)))
        return rc;
    if (to <= from)
        return fail(c, "footage_request.to", "footage_request.to must be later than from");
    if (to - from > (int64_t)c->lim.footage_max_hours * 3600)
        return fail(c, "footage_request.to",
                    "the footage window is longer than %d hours; ask for a shorter stretch of "
                    "recording",
                    c->lim.footage_max_hours);
    if (!place && !get(c->a, "last_seen_place") && !get(c->a, "seen_place") &&
        !get(c->a, "found_place"))
        return fail(c, "footage_request.place",
                    "footage_request needs a place: say which street or building the cameras "
                    "should cover");
    return 0;
}

void keng_alert_limits_default(keng_alert_limits *l)
{
    l->footage_max_hours = 12;
    l->expiry_lost_elder_h = 72;
    l->expiry_vehicle_h = 168;
    l->expiry_scam_h = 720;
    l->expiry_other_h = 72;
    l->max_photos = 10;
    l->max_text = 4000;
}

static int check_members(ctx *c)
{
    for (cJSON *m = c->a->child; m; m = m->next) {
        int is_server = 0;
        for (size_t i = 0; i < sizeof server_members / sizeof server_members[0]; i++)
            if (!strcmp(m->string, server_members[i])) is_server = 1;
        if (is_server) continue;
        unsigned shapes = 0;
        for (size_t i = 0; i < sizeof known_members / sizeof known_members[0]; i++)
            if (!strcmp(m->string, known_members[i].name)) shapes = known_members[i].shapes;
        if (shapes & c->shape) continue;
        char f[64];
        snprintf(f, sizeof f, "%.63s", m->string);
        if (shapes) return fail(c, f, "%s is not a field of %s; remove it", f, c->shape_label);
        return fail(c, f, "%s is not a known alert field; check its spelling or remove it", f);
    }
    return 0;
}

int keng_alert_validate(cJSON *alert, const keng_alert_limits *lim, int64_t now, int for_update,
                        keng_field_error *err)
{
    ctx c = {.a = alert, .now = now, .for_update = for_update, .err = err};
    if (lim)
        c.lim = *lim;
    else
        keng_alert_limits_default(&c.lim);
    if (err) err->field[0] = err->message[0] = '\0';
    if (!alert || !cJSON_IsObject(alert)) return fail(&c, "", "the alert must be a JSON object");
    int rc;
    if ((rc = tidy_object(&c, alert, ""))) return rc;

    char words[120];
    list_words(kinds, " or ", words, sizeof words);
    cJSON *k = get(alert, "kind");
    if (!k) return fail(&c, "kind", "kind is required: one of %s", words);
    if (!cJSON_IsString(k) || !in_list(k->valuestring, kinds))
        return fail(&c, "kind", "kind must be one of %s", words);
    const char *kind = k->valuestring;
    c.shape_label = "an alert of kind other";
    if (!strcmp(kind, "lost_elder")) {
        c.shape_label = "a lost_elder alert";
        const char *dir;
        if ((rc = choice(&c, alert, "direction", "direction", 0, directions, "missing", &dir)))
            return rc;
        c.shape = strcmp(dir, "found") == 0 ? S_FOUND : S_MISSING;
        if (c.shape == S_FOUND) c.shape_label = "a lost_elder alert with direction found";
    } else if (!strcmp(kind, "suspicious_vehicle")) {
        c.shape = S_VEHICLE;
        c.shape_label = "a suspicious_vehicle alert";
    } else if (!strcmp(kind, "scam_pattern")) {
        c.shape = S_SCAM;
        c.shape_label = "a scam_pattern alert";
    } else {
        c.shape = S_OTHER;
    }
    if ((rc = check_members(&c))) return rc;

    int other = c.shape == S_OTHER;
    switch (c.shape) {
    case S_MISSING:
    case S_FOUND:
        rc = check_lost_elder(&c);
        break;
    case S_VEHICLE:
        rc = check_vehicle(&c);
        break;
    case S_SCAM:
        rc = check_scam(&c);
        break;
    default:
        rc = 0;
    }
    if (rc) return rc;
    /* For the other kinds the caller writes a title from the fields when there is none. */
    if ((rc = text(&c, alert, "title", "title", other, TITLE_MAX, LINE, NULL)) ||
        (rc = text(&c, alert, "body", "body", other, (size_t)c.lim.max_text, MULTI, NULL)))
        return rc;
    int elder = c.shape & S_ELDER;
    if ((rc = choice(&c, alert, "urgency", "urgency", 0, urgencies,
                     elder ? "immediate" : "expected", NULL)) ||
        (rc = choice(&c, alert, "severity", "severity", 0, severities,
                     elder ? "severe" : "moderate", NULL)) ||
        (rc = check_photos(&c)) || (rc = check_targets(&c)) || (rc = check_area(&c)))
        return rc;
    cJSON *pub = get(alert, "public");
    if (!pub) {
        if (!cJSON_AddFalseToObject(alert, "public")) return nomem(&c);
    } else if (!cJSON_IsBool(pub)) {
        return fail(&c, "public", "public must be true or false");
    }
    if ((rc = check_expires(&c, kind)) || (rc = check_footage(&c))) return rc;
    return 0;
}
