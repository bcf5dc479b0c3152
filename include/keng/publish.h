/* publish: turns an alert event into outbox rows — resolves targets (groups by id, by kind or
 * all, with their child groups; members deduplicated; leader-relay groups hold their households
 * until the leader relays), renders each message once per (language, channel, link kind) from
 * templates, and inserts one delivery per (recipient, channel), a chunk of households at a time.
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

/* Publishing is done in two parts, so that an alert to a whole ward never holds the loop:
 *
 * begin_*: in one short transaction (or inside the caller's), the part whose size is the number
 * of groups, not of households — targets, leaders, relays, the groups' own chats — and a
 * publish_jobs row for the rest. *job is its id.
 * job_step: inside the caller's transaction, the next chunk of at most max_rows households:
 * recipients, their messages (rendered once per language × channel × link kind) and their
 * outbox rows; the row records how far it got and the counts so far. The last step writes the
 * audit line (alert.publish, alert.update|resolve|cancel, relay.leader|relay.timeout, by actor)
 * and deletes the row. A job cut by a crash goes on from its last committed step; every insert
 * is idempotent, so a step repeated after a failed commit adds nothing twice.
 *
 * Jobs must run in id order (pubq.h does): an update's job walks the recipients that the
 * alert's job has written before it. */
typedef struct keng_publish_job keng_publish_job;

/* First publication (event "alert") of alert_id at revision, whose API view is view. */
int keng_publish_begin_alert(const keng_publish_ctx *c, const char *alert_id, int revision,
                             const cJSON *view, const char *actor, int64_t *job);
/* update / resolve / cancel: exactly the recipients the alert reached (state sent). */
int keng_publish_begin_event(const keng_publish_ctx *c, const char *alert_id, int revision,
                             const char *event, const cJSON *view, const char *actor, int64_t *job);
/* A leader (or the timeout, by "keng") relays: held households of group_id get the alert with
 * the note. -EALREADY when the group is not waiting (relayed already, or closed). */
int keng_publish_begin_relay(const keng_publish_ctx *c, const char *alert_id, const char *group_id,
                             int revision, const cJSON *view, const char *note, const char *by,
                             int64_t *job);
/* The first job with an id above after; -ENOENT when there is none. */
int keng_publish_job_next(keng_store *st, int64_t after, keng_publish_job **out);
int keng_publish_job_step(const keng_publish_ctx *c, keng_publish_job *j, int max_rows, int *done);
int64_t keng_publish_job_id(const keng_publish_job *j);
const char *keng_publish_job_alert(const keng_publish_job *j);
void keng_publish_job_stats(const keng_publish_job *j, keng_publish_stats *out);
void keng_publish_job_free(keng_publish_job *j);

/* begin_alert and every step at once, in one transaction (tests and tools; kengd uses pubq). */
int keng_publish_alert(const keng_publish_ctx *c, const char *alert_id, int revision,
                       const cJSON *view, keng_publish_stats *out);
/* Quiet hours: when the alert's urgency may wait and now is inside the window, the time it
 * ends; else 0 (send now). */
int64_t keng_publish_not_before(const keng_config *cfg, const char *urgency, int64_t now);
/* The same for the alert whose API view is view, at c->now: the next_at that begin_alert,
 * begin_event and begin_relay give the messages they write — what the officer is told. */
int64_t keng_publish_view_not_before(const keng_publish_ctx *c, const cJSON *view);
/* Renders the message for (event, lang, channel) as recipients see it (preview). */
int keng_publish_render(const keng_publish_ctx *c, const cJSON *view, const char *event,
                        const char *lang, const char *channel, const char *link_kind,
                        const char *note, keng_buf *out);

#endif
