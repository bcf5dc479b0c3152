/* groups: the ward's groups and members (households, businesses) — validation of their JSON
 * shape, upserts into the store, and their JSON views. Used by the API, the groups/ importer
 * and the CSV importer alike, so that all three accept and refuse exactly the same things.
 * Loop thread (store). Functions that take a cJSON * borrow it unless named _take. */
#ifndef KENG_GROUPS_H
#define KENG_GROUPS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "keng/store.h"

typedef struct keng_verr {
    char field[96];
    char message[256];
} keng_verr;

/* Member/group ids: 1–64 of [a-z0-9._-], starting with a letter or digit. */
int keng_groups_valid_id(const char *id);
/* Checks a contact object ({"type":"webhook","url":…} …) in place. 0 or -EINVAL with e filled. */
int keng_contact_validate(const cJSON *c, const char *where, keng_verr *e);

/* Validates a member object in place: normalizes phone to E.164, fills defaults (lang vi,
 * camera false, contacts []). allow_groups: accept a "groups": [ids] member (the API). */
int keng_member_validate(cJSON *m, int allow_groups, keng_verr *e);
/* Validates a group object's own fields in place (members are checked by the caller, entries
 * may be member objects or id strings). Defaults: relay auto, relay_timeout 600, channels [].
 * A "leader" must be one of the entries of the object's own "members" list (refused when the
 * list is missing); relay: leader needs a leader. Every object (group, member, contact) is
 * refused when it names a field twice. */
int keng_group_validate(cJSON *g, keng_verr *e);

/* Upserts (inside the caller's transaction). source: "api" or "file:NAME". */
int keng_member_upsert(keng_store *st, const cJSON *m, const char *source);
int keng_group_upsert(keng_store *st, const cJSON *g, const char *source);
/* Replaces the group's membership with ids (a cJSON array of strings or member objects): the
 * API's PUT /v1/groups, which governs the whole list. */
int keng_group_set_members(keng_store *st, const char *group_id, const cJSON *members);
/* The groups/ importer's rule (see keng/import.h): the group's memberships of members whose
 * source is a file ("file:NAME") become exactly ids[0..n); memberships of members from the API
 * ("api") or a CSV import ("csv") are left alone. Inside the caller's transaction, after the
 * import's member upserts (the sources must be the final ones). */
int keng_group_set_file_members(keng_store *st, const char *group_id, const char *const *ids,
                                size_t n);
int keng_group_add_member(keng_store *st, const char *group_id, const char *member_id);
/* Replaces the member's groups with ids (array of strings). */
int keng_member_set_groups(keng_store *st, const char *member_id, const cJSON *groups);

int keng_group_exists(keng_store *st, const char *id);
int keng_member_exists(keng_store *st, const char *id);
/* 1 if making parent the parent of id would make a cycle (or parent == id). */
int keng_group_parent_cycle(keng_store *st, const char *id, const char *parent);

/* JSON views; NULL when not found. with_members: add the member id list to a group. */
cJSON *keng_group_get(keng_store *st, const char *id, int with_members);
cJSON *keng_member_get(keng_store *st, const char *id);
/* Lists with filters (NULL = any) and paging; *total is the count before paging. */
cJSON *keng_groups_list(keng_store *st, const char *kind, const char *parent, int limit,
                        int offset, int *total);
cJSON *keng_members_list(keng_store *st, const char *group, int limit, int offset, int *total);

/* Deletes a group and its memberships. -ENOENT, -EBUSY (it has child groups), 0. */
int keng_group_delete(keng_store *st, const char *id);

/* The relay_timeout of groups that do not give one (config alerts.relay_timeout_s, 30..86400;
 * other values are ignored). Call at start, before importing. */
void keng_groups_set_default_relay_timeout(int seconds);

#endif
