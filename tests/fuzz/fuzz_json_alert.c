/* fuzz_json_alert: keng_alert_validate over any JSON an officer's client could post to
 * POST /v1/alerts or PATCH /v1/alerts/ID. Beside "never crash, never leak", it checks one
 * property of the contract in alert_fields.h: an alert that validated is a stored alert, and a
 * stored alert must validate again as an update (for_update = 1, same clock) — otherwise a
 * published alert could never be patched. The clock is fixed so that a reproducer replays. */
#include "keng/alert_fields.h"
#include "keng/log.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NOW INT64_C(1795000000) /* 2026-11-17T09:06:40Z */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    keng_log_set_level(KENG_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) return 0;
    cJSON *a = cJSON_ParseWithLength((const char *)data, size);
    if (!a) return 0;
    keng_alert_limits lim;
    keng_alert_limits_default(&lim);
    keng_field_error err;

    cJSON *patch = cJSON_Duplicate(a, 1);
    if (patch) {
        (void)keng_alert_validate(patch, &lim, NOW, 1, NULL); /* err may be NULL */
        cJSON_Delete(patch);
    }
    if (keng_alert_validate(a, NULL, NOW, 0, &err) == 0) {
        cJSON *again = cJSON_Duplicate(a, 1);
        if (again && keng_alert_validate(again, &lim, NOW, 1, &err) != 0) {
            char *s = cJSON_PrintUnformatted(a);
            fprintf(stderr, "fuzz_json_alert: a validated alert fails as an update: %s: %s\n%s\n",
                    err.field, err.message, s ? s : "?");
            abort();
        }
        cJSON_Delete(again);
    }
    cJSON_Delete(a);
    return 0;
}
