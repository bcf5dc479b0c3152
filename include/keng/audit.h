/* audit: the hash-chained audit log. Each entry's hash is SHA-256 over the previous entry's
 * hash and the entry's own fields, so an edited, removed or reordered entry breaks the chain
 * from there on, and keng_audit_verify names the first bad one. Loop thread (store). */
#ifndef KENG_AUDIT_H
#define KENG_AUDIT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "keng/store.h"

/* Appends an entry (inside or outside a transaction). detail_take: a JSON object or NULL,
 * consumed. Returns the new sequence number, or a negative errno. */
int64_t keng_audit_append(keng_store *st, const char *actor, const char *action,
                          const char *subject, cJSON *detail_take);
/* Entries with seq > since, at most limit, as a JSON array. */
cJSON *keng_audit_list(keng_store *st, int64_t since, int limit);
/* 0 when the whole chain holds; else the seq of the first bad entry (> 0); < 0 on error. */
int64_t keng_audit_verify(keng_store *st, char *why, size_t whylen);

#endif
