/* publish: turns an alert event into outbox rows, in one transaction — resolves targets (groups
 * by id, by kind or all, with their child groups; members deduplicated; leader-relay groups
 * hold their households until the leader relays), renders each message once per (language,
 * channel, link kind) from templates, and inserts one delivery per (recipient, channel).
 * Sending is the fan-out engine's job. Loop thread (store); no network. */
#ifndef KENG_PUBLISH_H
#define KENG_PUBLISH_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "keng/config.h"
#include "keng/store.h"
#include "keng/template.h"

typedef struct keng_publish_ctx {
    keng_store *st;
    const keng_tplset *templates;
    const keng_config *cfg;
    const unsigned char *secret; /* 32 bytes: link tokens */
    int64_t now;
} keng_publish_ctx;

typedef struct keng_publish_stats {
    int groups;       /* target groups, children included */
    int relay_groups; /* of them, waiting for their leader */
    int recipients;   /* members reached now */
    int held;         /* households waiting for a leader's relay */
    int unreachable;  /* members without any contact */
    int deliveries;   /* outbox rows written */
} keng_publish_stats;

/* Registers the SQL function keng_link_hash(kind, alert, member) on the store's connection:
 * SHA-256 hex of the derived link token (auth.h), what recipients.rtoken holds. Once, at start. */
int keng_publish_init(keng_store *st, const unsigned char secret[32]);

/* First publication (event "alert") of alert_id at revision, whose API view is view. */
int keng_publish_alert(const keng_publish_ctx *c, const char *alert_id, int revision,
                       const cJSON *view, keng_publish_stats *out);
/* update / resolve / cancel: exactly the recipients the alert reached (state sent). */
int keng_publish_event(const keng_publish_ctx *c, const char *alert_id, int revision,
                       const char *event, const cJSON *view, keng_publish_stats *out);
/* A leader (or the timeout) relays: held households of group_id get the alert with the note. */
int keng_publish_relay(const keng_publish_ctx *c, const char *alert_id, const char *group_id,
                       int revision, const cJSON *view, const char *note, const char *by,
                       keng_publish_stats *out);
/* Quiet hours: when the alert's urgency may wait and now is inside the window, the time it
 * ends; else 0 (send now). */
int64_t keng_publish_not_before(const keng_config *cfg, const char *urgency, int64_t now);
/* Renders the message for (event, lang, channel) as recipients see it (preview). */
int keng_publish_render(const keng_publish_ctx *c, const cJSON *view, const char *event,
                        const char *lang, const char *channel, const char *link_kind,
                        const char *note, keng_buf *out);

#endif
