/* Keyed HMAC contexts (auth.h): RFC 4231 vectors, a message in two parts, more keys than the
 * cache holds, binary keys, and link tokens with and without the cache. */
#include "test.h"

#include "keng/auth.h"

/* RFC 4231 test case 2. */
static const char JEFE_MAC[] = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
static const char JEFE_MSG[] = "what do ya want for nothing?";

TEST(hmac_cache_rfc4231_vector_cached_uncached_and_split)
{
    char out[65];
    keng_hmac_sha256_hex("Jefe", 4, JEFE_MSG, strlen(JEFE_MSG), out);
    ASSERT_STR_EQ(out, JEFE_MAC);
    ASSERT_EQ(keng_hmac_cached_hex(NULL, "Jefe", 4, JEFE_MSG, strlen(JEFE_MSG), NULL, 0, out), 0);
    ASSERT_STR_EQ(out, JEFE_MAC);
    keng_hmac_cache *c = keng_hmac_cache_new();
    ASSERT(c);
    for (int i = 0; i < 3; i++) { /* the second and third reuse the keyed context */
        memset(out, 0, sizeof out);
        ASSERT_EQ(keng_hmac_cached_hex(c, "Jefe", 4, JEFE_MSG, strlen(JEFE_MSG), NULL, 0, out), 0);
        ASSERT_STR_EQ(out, JEFE_MAC);
    }
    /* The webhook signature signs "t." then the body: two parts, the same MAC as one. */
    ASSERT_EQ(keng_hmac_cached_hex(c, "Jefe", 4, JEFE_MSG, 10, JEFE_MSG + 10,
                                   strlen(JEFE_MSG) - 10, out),
              0);
    ASSERT_STR_EQ(out, JEFE_MAC);
    keng_hmac_cache_free(c);
}

TEST(hmac_cache_more_keys_than_slots_stay_correct)
{
    keng_hmac_cache *c = keng_hmac_cache_new();
    ASSERT(c);
    char key[32], want[65], got[65];
    const char msg[] = "{\"event\":\"alert\",\"text\":\"Tìm người đi lạc\"}";
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 3 * KENG_HMAC_CACHE; i++) {
            int n = snprintf(key, sizeof key, "secret-%d", i % (KENG_HMAC_CACHE + 5));
            keng_hmac_sha256_hex(key, (size_t)n, msg, sizeof msg - 1, want);
            ASSERT_EQ(keng_hmac_cached_hex(c, key, (size_t)n, msg, sizeof msg - 1, NULL, 0, got),
                      0);
            ASSERT_STR_EQ(got, want);
        }
    }
    /* Keys that are prefixes of each other, and binary keys with NUL bytes, are distinct. */
    static const unsigned char k1[4] = {'a', 0, 'b', 0}, k2[4] = {'a', 0, 'c', 0};
    keng_hmac_sha256_hex(k1, 4, msg, 5, want);
    ASSERT_EQ(keng_hmac_cached_hex(c, k1, 4, msg, 5, NULL, 0, got), 0);
    ASSERT_STR_EQ(got, want);
    keng_hmac_sha256_hex(k2, 4, msg, 5, want);
    ASSERT_EQ(keng_hmac_cached_hex(c, k2, 4, msg, 5, NULL, 0, got), 0);
    ASSERT_STR_EQ(got, want);
    keng_hmac_sha256_hex("secret-1", 7, msg, 5, want); /* "secret-" vs "secret-1" */
    ASSERT_EQ(keng_hmac_cached_hex(c, "secret-1", 7, msg, 5, NULL, 0, got), 0);
    ASSERT_STR_EQ(got, want);
    keng_hmac_cache_free(c);
}

TEST(hmac_link_token_same_with_and_without_cache)
{
    unsigned char secret[32];
    for (int i = 0; i < 32; i++) secret[i] = (unsigned char)(i * 7); /* secret[0] is NUL */
    keng_hmac_cache *c = keng_hmac_cache_new();
    ASSERT(c);
    char a[KENG_TOKEN_LEN + 1], b[KENG_TOKEN_LEN + 1], other[KENG_TOKEN_LEN + 1];
    keng_auth_link_token(secret, 'r', "A-2026-0042", "hh-0107", a);
    keng_auth_link_token_cached(c, secret, 'r', "A-2026-0042", "hh-0107", b);
    ASSERT_STR_EQ(a, b);
    ASSERT_EQ(strlen(a), KENG_TOKEN_LEN);
    keng_auth_link_token_cached(c, secret, 'l', "A-2026-0042", "hh-0107", other);
    ASSERT(strcmp(a, other) != 0); /* the kind is part of the token */
    keng_auth_link_token_cached(c, secret, 'r', "A-2026-0042", "hh-0108", other);
    ASSERT(strcmp(a, other) != 0);
    keng_hmac_cache_free(c);
    keng_hmac_cache_free(NULL);
}
