/* alert_fields: validates and normalizes, in place, the JSON object of an alert as an officer
 * posts it (DESIGN.md §6): per-kind required fields, types, enums, lengths, UTF-8, plates and
 * phones to their normalized forms, times to RFC 3339, defaults filled in. Pure: no I/O, no
 * clock (the caller passes now), no global state; uses norm. Any thread.
 *
 * Ownership: the caller owns the cJSON object throughout; validation replaces and adds members
 * of it, so on error the object may be half-normalized and should be discarded. */
#ifndef KENG_ALERT_FIELDS_H
#define KENG_ALERT_FIELDS_H

#include <cjson/cJSON.h>
#include <stdint.h>

typedef struct keng_alert_limits {
    int footage_max_hours;   /* longest footage_request window; 12 */
    int expiry_lost_elder_h; /* default lifetime when expires_at is absent; 72 */
    int expiry_vehicle_h;    /* 168 */
    int expiry_scam_h;       /* 720 */
    int expiry_other_h;      /* 72 */
    int max_photos;          /* 10 */
    int max_text;            /* bytes of body, description, script_summary, …; 4000 */
} keng_alert_limits;

void keng_alert_limits_default(keng_alert_limits *l);

/* The first problem found: field is a path such as "age", "targets.groups[2]" or
 * "footage_request.to" ("" when the whole object is wrong); message is an English sentence
 * for the officer that says what to do. */
typedef struct keng_field_error {
    char field[64];
    char message[256];
} keng_field_error;

/* Validates alert against the rules for its kind and normalizes it in place:
 *  - plate -> normalized ("29A12345"), the text as typed kept in plate_display;
 *  - contact_phone, phone_numbers[] -> E.164; bank_accounts[] -> digits;
 *  - times -> RFC 3339 with the offset given, or +07:00 when none was;
 *  - strings trimmed of surrounding white space; JSON null members removed (absent);
 *  - defaults: direction "missing" (lost_elder), urgency, severity, public false,
 *    expires_at = now + the kind's expiry.
 * Server-owned members (id, status, revision, created_at, published_at, updated_at) are left
 * alone; any other unknown member is an error. for_update is 1 when alert is a stored alert
 * merged with a PATCH: the rules are the same, only the wording of an expired expires_at
 * changes. now is unix seconds. lim may be NULL for the defaults.
 * Returns 0; -EINVAL with *err filled (err may be NULL); -ENOMEM. */
__attribute__((warn_unused_result)) int keng_alert_validate(cJSON *alert,
                                                            const keng_alert_limits *lim,
                                                            int64_t now, int for_update,
                                                            keng_field_error *err);

#endif
