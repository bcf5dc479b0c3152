/* auth: tokens, roles and signatures. Pure functions over OpenSSL (SHA-256, HMAC, random), plus
 * token lookups in the store. Loop thread for the store parts; the pure parts on any thread.
 *
 * API tokens are 128-bit random, shown once, stored as SHA-256. Reply (/r/) and relay (/l/) link
 * tokens are derived, not stored: HMAC-SHA256(server secret, kind|alert|member) cut to 128 bits,
 * so the outbox can rebuild a link after a restart without the database holding the token. */
#ifndef KENG_AUTH_H
#define KENG_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "keng/store.h"

#define KENG_TOKEN_LEN 32 /* 128 bits as lowercase hex, without the NUL */

enum keng_role {
    KENG_ROLE_NONE = 0,
    KENG_ROLE_VIEWER = 1 << 0,
    KENG_ROLE_LEADER = 1 << 1,
    KENG_ROLE_OFFICER = 1 << 2,
    KENG_ROLE_ADMIN = 1 << 3,
};
#define KENG_ROLES_STAFF (KENG_ROLE_OFFICER | KENG_ROLE_ADMIN)
#define KENG_ROLES_READ (KENG_ROLE_VIEWER | KENG_ROLE_OFFICER | KENG_ROLE_ADMIN)

const char *keng_role_name(enum keng_role r);
enum keng_role keng_role_parse(const char *s); /* KENG_ROLE_NONE when unknown */

/* Fills out with KENG_TOKEN_LEN hex chars + NUL from a CSPRNG. 0 or -EIO. */
int keng_auth_random_token(char out[KENG_TOKEN_LEN + 1]);
/* SHA-256 of s as 64 hex chars + NUL. */
void keng_sha256_hex(const void *data, size_t len, char out[65]);
/* HMAC-SHA256(key, msg) as 64 hex chars + NUL. */
void keng_hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t msglen,
                          char out[65]);
/* A small cache of keyed HMAC-SHA256 contexts, one per key (webhook secrets): the key schedule
 * is done once per key, not per message (0.8 µs instead of 1.7 µs for a 1 KB body). Holds at
 * most KENG_HMAC_CACHE keys, least recently used out first; owns copies of the keys. One thread
 * (the loop) per cache. */
#define KENG_HMAC_CACHE 16
typedef struct keng_hmac_cache keng_hmac_cache;
keng_hmac_cache *keng_hmac_cache_new(void); /* NULL when out of memory */
void keng_hmac_cache_free(keng_hmac_cache *c);
/* HMAC-SHA256(key, a || b) as 64 hex chars + NUL (b may be NULL with blen 0). With c NULL, or
 * when the cache cannot hold the key, computes it without the cache. 0 or -EIO. */
int keng_hmac_cached_hex(keng_hmac_cache *c, const void *key, size_t keylen, const void *a,
                         size_t alen, const void *b, size_t blen, char out[65]);
/* Derived link token for kind 'r' (reply) or 'l' (relay). */
void keng_auth_link_token(const unsigned char secret[32], char kind, const char *alert_id,
                          const char *member_id, char out[KENG_TOKEN_LEN + 1]);
/* The same with the key schedule of secret kept in c (NULL: none). */
void keng_auth_link_token_cached(keng_hmac_cache *c, const unsigned char secret[32], char kind,
                                 const char *alert_id, const char *member_id,
                                 char out[KENG_TOKEN_LEN + 1]);
/* Constant-time comparison of two NUL-terminated strings of equal length. */
int keng_auth_equal(const char *a, const char *b);

/* Loads DATA/secret (32 random bytes, created 0600 on first start). 0 or a negative errno. */
int keng_auth_load_secret(const char *data_dir, unsigned char secret[32]);

/* Creates an API token (role, name, optional group), stores its hash, returns it in out. */
int keng_auth_token_create(keng_store *st, enum keng_role role, const char *name,
                           const char *group_id, char out[KENG_TOKEN_LEN + 1]);
/* Looks a bearer token up. 0 with role/name/group filled, -ENOENT when unknown or revoked. */
typedef struct keng_principal {
    enum keng_role role;
    char name[128];
    char group_id[128];
} keng_principal;
int keng_auth_token_lookup(keng_store *st, const char *token, keng_principal *out);

/* On first start: creates an admin token into DATA/admin.token (0600) if no admin exists. */
int keng_auth_ensure_admin(keng_store *st, const char *data_dir);

#endif
