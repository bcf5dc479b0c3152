#include "keng/auth.h"

#include "keng/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char hexdigits[] = "0123456789abcdef";

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[in[i] >> 4];
        out[2 * i + 1] = hexdigits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

const char *keng_role_name(enum keng_role r)
{
    switch (r) {
    case KENG_ROLE_VIEWER:
        return "viewer";
    case KENG_ROLE_LEADER:
        return "leader";
    case KENG_ROLE_OFFICER:
        return "officer";
    case KENG_ROLE_ADMIN:
        return "admin";
    default:
        return "none";
    }
}

enum keng_role keng_role_parse(const char *s)
{
    if (!s) return KENG_ROLE_NONE;
    if (!strcmp(s, "viewer")) return KENG_ROLE_VIEWER;
    if (!strcmp(s, "leader")) return KENG_ROLE_LEADER;
    if (!strcmp(s, "officer")) return KENG_ROLE_OFFICER;
    if (!strcmp(s, "admin")) return KENG_ROLE_ADMIN;
    return KENG_ROLE_NONE;
}

int keng_auth_random_token(char out[KENG_TOKEN_LEN + 1])
{
    unsigned char raw[KENG_TOKEN_LEN / 2];
    if (RAND_bytes(raw, sizeof raw) != 1) return -EIO;
    to_hex(raw, sizeof raw, out);
    return 0;
}

void keng_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    to_hex(md, sizeof md, out);
}

void keng_hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t msglen,
                          char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, md, &mdlen);
    to_hex(md, mdlen, out);
}

struct keng_hmac_cache {
    EVP_MAC *mac;
    struct {
        unsigned char *key;
        size_t keylen;
        EVP_MAC_CTX *ctx;
        uint64_t used;
    } e[KENG_HMAC_CACHE];
    uint64_t tick;
};

keng_hmac_cache *keng_hmac_cache_new(void)
{
    keng_hmac_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (!(c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL))) {
        free(c);
        return NULL;
    }
    return c;
}

void keng_hmac_cache_free(keng_hmac_cache *c)
{
    if (!c) return;
    for (int i = 0; i < KENG_HMAC_CACHE; i++) {
        free(c->e[i].key);
        EVP_MAC_CTX_free(c->e[i].ctx);
    }
    EVP_MAC_free(c->mac);
    free(c);
}

/* The context for key, keyed already; NULL when it cannot be made. */
static EVP_MAC_CTX *hmac_ctx_for(keng_hmac_cache *c, const void *key, size_t keylen)
{
    int victim = 0;
    for (int i = 0; i < KENG_HMAC_CACHE; i++) {
        if (c->e[i].key && c->e[i].keylen == keylen && memcmp(c->e[i].key, key, keylen) == 0) {
            c->e[i].used = ++c->tick;
            /* A NULL key re-initialises with the key set before (OpenSSL 3 EVP_MAC_init). */
            return EVP_MAC_init(c->e[i].ctx, NULL, 0, NULL) == 1 ? c->e[i].ctx : NULL;
        }
        if (c->e[i].used < c->e[victim].used) victim = i;
    }
    unsigned char *copy = malloc(keylen ? keylen : 1);
    if (copy) memcpy(copy, key, keylen);
    EVP_MAC_CTX *ctx = copy ? EVP_MAC_CTX_new(c->mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (!ctx || EVP_MAC_init(ctx, key, keylen, params) != 1) {
        free(copy);
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    free(c->e[victim].key);
    EVP_MAC_CTX_free(c->e[victim].ctx);
    c->e[victim].key = copy;
    c->e[victim].keylen = keylen;
    c->e[victim].ctx = ctx;
    c->e[victim].used = ++c->tick;
    return ctx;
}

int keng_hmac_cached_hex(keng_hmac_cache *c, const void *key, size_t keylen, const void *a,
                         size_t alen, const void *b, size_t blen, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t mdlen = 0;
    EVP_MAC_CTX *ctx = c ? hmac_ctx_for(c, key, keylen) : NULL;
    if (ctx) {
        if (EVP_MAC_update(ctx, a, alen) != 1 || (blen && EVP_MAC_update(ctx, b, blen) != 1) ||
            EVP_MAC_final(ctx, md, &mdlen, sizeof md) != 1)
            return -EIO;
        to_hex(md, mdlen, out);
        return 0;
    }
    /* Without a cache: one context for this message only. */
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *one = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    int ok = one && EVP_MAC_init(one, key, keylen, params) == 1 &&
             EVP_MAC_update(one, a, alen) == 1 && (!blen || EVP_MAC_update(one, b, blen) == 1) &&
             EVP_MAC_final(one, md, &mdlen, sizeof md) == 1;
    EVP_MAC_CTX_free(one);
    EVP_MAC_free(mac);
    if (!ok) return -EIO;
    to_hex(md, mdlen, out);
    return 0;
}

void keng_auth_link_token(const unsigned char secret[32], char kind, const char *alert_id,
                          const char *member_id, char out[KENG_TOKEN_LEN + 1])
{
    keng_auth_link_token_cached(NULL, secret, kind, alert_id, member_id, out);
}

void keng_auth_link_token_cached(keng_hmac_cache *c, const unsigned char secret[32], char kind,
                                 const char *alert_id, const char *member_id,
                                 char out[KENG_TOKEN_LEN + 1])
{
    /* "KIND|ALERT|MEMBER", cut at 511 bytes (built by hand: snprintf was a third of a link's
     * cost, and a fan-out builds one link per delivery). */
    char msg[512], mac[65];
    size_t n = 0, la = strlen(alert_id), lm = strlen(member_id);
    msg[n++] = kind;
    msg[n++] = '|';
    if (la > sizeof msg - 1 - n) la = sizeof msg - 1 - n;
    memcpy(msg + n, alert_id, la);
    n += la;
    if (n < sizeof msg - 1) msg[n++] = '|';
    if (lm > sizeof msg - 1 - n) lm = sizeof msg - 1 - n;
    memcpy(msg + n, member_id, lm);
    n += lm;
    msg[n] = '\0';
    if (!c || keng_hmac_cached_hex(c, secret, 32, msg, n, NULL, 0, mac))
        keng_hmac_sha256_hex(secret, 32, msg, n, mac);
    memcpy(out, mac, KENG_TOKEN_LEN);
    out[KENG_TOKEN_LEN] = '\0';
}

int keng_auth_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    size_t n = la < lb ? la : lb;
    for (size_t i = 0; i < n; i++) d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static int write_secret_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    ssize_t w = write(fd, data, len);
    int rc = (w == (ssize_t)len) ? 0 : -EIO;
    if (fsync(fd) != 0) rc = -errno;
    close(fd);
    return rc;
}

int keng_auth_load_secret(const char *data_dir, unsigned char secret[32])
{
    char path[4096];
    snprintf(path, sizeof path, "%s/secret", data_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, secret, 32);
        close(fd);
        if (r != 32) {
            keng_error("auth: %s is damaged (expected 32 bytes); restore it from backup", path);
            return -EILSEQ;
        }
        return 0;
    }
    if (errno != ENOENT) return -errno;
    if (RAND_bytes(secret, 32) != 1) return -EIO;
    return write_secret_file(path, secret, 32);
}

int keng_auth_token_create(keng_store *st, enum keng_role role, const char *name,
                           const char *group_id, char out[KENG_TOKEN_LEN + 1])
{
    char hash[65];
    int rc = keng_auth_random_token(out);
    if (rc) return rc;
    keng_sha256_hex(out, KENG_TOKEN_LEN, hash);
    sqlite3_stmt *s = keng_store_stmt(
        st, "INSERT INTO tokens(hash, role, name, group_id, created_at) VALUES (?,?,?,?,?)");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, keng_role_name(role), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, name ? name : "", -1, SQLITE_TRANSIENT);
    if (group_id && *group_id)
        sqlite3_bind_text(s, 4, group_id, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, 4);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)time(NULL));
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : keng_store_errno(rc);
}

int keng_auth_token_lookup(keng_store *st, const char *token, keng_principal *out)
{
    char hash[65];
    memset(out, 0, sizeof *out);
    if (strlen(token) != KENG_TOKEN_LEN) return -ENOENT;
    keng_sha256_hex(token, KENG_TOKEN_LEN, hash);
    sqlite3_stmt *s = keng_store_stmt(
        st, "SELECT role, name, coalesce(group_id, '') FROM tokens WHERE hash = ? AND revoked = 0");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
    int rc = -ENOENT;
    if (sqlite3_step(s) == SQLITE_ROW) {
        out->role = keng_role_parse(keng_store_text(s, 0));
        snprintf(out->name, sizeof out->name, "%s", keng_store_text(s, 1));
        snprintf(out->group_id, sizeof out->group_id, "%s", keng_store_text(s, 2));
        rc = out->role == KENG_ROLE_NONE ? -ENOENT : 0;
    }
    sqlite3_reset(s);
    return rc;
}

int keng_auth_ensure_admin(keng_store *st, const char *data_dir)
{
    sqlite3_stmt *s = keng_store_stmt(st, "SELECT count(*) FROM tokens WHERE role = 'admin'");
    if (!s) return -EIO;
    int have = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_reset(s);
    if (have > 0) return 0;
    char token[KENG_TOKEN_LEN + 1], path[4096], line[KENG_TOKEN_LEN + 2];
    int rc = keng_auth_token_create(st, KENG_ROLE_ADMIN, "first admin", NULL, token);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/admin.token", data_dir);
    unlink(path);
    snprintf(line, sizeof line, "%s\n", token);
    rc = write_secret_file(path, line, strlen(line));
    if (rc == 0) keng_info("auth: created the first admin token in %s (mode 0600)", path);
    return rc;
}
