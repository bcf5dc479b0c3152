/* alert_view: what an alert looks like from outside — its public JSON, and the data its
 * message templates are rendered over (local times, labels by language). Pure functions over
 * cJSON; any thread. Results are new objects owned by the caller. */
#ifndef KENG_ALERT_VIEW_H
#define KENG_ALERT_VIEW_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "keng/channel.h" /* KENG_LINK_PLACEHOLDER */

typedef struct keng_alert_meta {
    const char *id, *status;
    int revision;
    int64_t created_at, published_at, updated_at;
} keng_alert_meta;

/* The alert as the API shows it: the stored fields plus id, status, revision and times. */
cJSON *keng_alert_view(const keng_alert_meta *meta, const cJSON *doc);
/* The template name of an alert's kind: lost_elder_found for a found elder, else its kind. */
const char *keng_alert_tpl_kind(const cJSON *doc);

typedef struct keng_tpl_ctx {
    const char *event; /* alert|update|resolve|cancel */
    const char *lang;  /* vi|en */
    const char *ward_name, *ward_phone;
    const char *public_url;
    int tz_offset_min;
    const char *link_kind; /* "r" reply, "l" relay, "" none */
    const char *leader_note;
} keng_tpl_ctx;

/* Template data (templates/README.md describes the model). */
cJSON *keng_alert_tpl_data(const cJSON *view, const keng_tpl_ctx *ctx);
/* Thumbnail URLs of the alert's photos, as a JSON array of strings. */
cJSON *keng_alert_photo_urls(const cJSON *doc, const char *public_url);

#endif
