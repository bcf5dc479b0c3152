/* Tests for router: literal and ":name" segments, "rest" parameters, 404 versus 405 (with the
 * Allow list), HEAD answered by GET routes, percent-decoding of parameters and its limits,
 * trailing slashes, malformed paths, table order, and a large table. Pure functions: no loop. */
#include "test.h"

#include "keng/router.h"

#include <errno.h>

/* data points at a distinct int per route so a test can tell which one matched. */
static const int D[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static const keng_route routes[] = {
    {"GET", "/", &D[0]},
    {"GET", "/healthz", &D[1]},
    {"GET", "/v1/groups", &D[2]},
    {"POST", "/v1/groups", &D[3]},
    {"GET", "/v1/groups/:id", &D[4]},
    {"PUT", "/v1/groups/:id", &D[5]},
    {"DELETE", "/v1/groups/:id", &D[6]},
    {"POST", "/v1/groups/:id/import", &D[7]},
    {"GET", "/v1/media/:id", &D[8]},
    {"GET", "/v1/media/:id/thumb", &D[9]},
    {"POST", "/v1/alerts/:id/publish", &D[10]},
    {"GET", "/v1/a/:x/b/:y", &D[11]},
    {"GET", "/files/:path*", &D[12]},
    {"GET", "/p4/:a/:b/:c/:d", &D[13]},
    {"GET", "/p5/:a/:b/:c/:d/:e", &D[14]},
};
#define NROUTES (sizeof routes / sizeof routes[0])

/* The index of the matched route in routes[]. */
static int match(const char *method, const char *path, keng_route_match *m)
{
    int rc = keng_router_match(routes, NROUTES, method, path, m);
    if (rc) return rc;
    ASSERT_NOT_NULL(m->route);
    return *(const int *)m->route->data;
}

/* ---- literal paths ---- */

TEST(router_exact_match)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/healthz", &m), 1);
    ASSERT(m.route == &routes[1]);
    ASSERT_EQ(m.nparams, 0);
    ASSERT_STR_EQ(m.route->pattern, "/healthz");
    ASSERT_EQ(match("GET", "/v1/groups", &m), 2);
    ASSERT_EQ(m.nparams, 0);
    ASSERT_EQ(match("POST", "/v1/groups", &m), 3);
    ASSERT_EQ(m.nparams, 0);
}

TEST(router_root_path)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/", &m), 0);
    ASSERT(m.route == &routes[0]);
    ASSERT_EQ(m.nparams, 0);
    /* "/" matches only itself, not as a prefix of everything. */
    ASSERT_EQ(match("GET", "/nothing", &m), -ENOENT);
    ASSERT_EQ(match("GET", "//", &m), -ENOENT);
}

TEST(router_literal_is_whole_segment)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/healthzz", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/health", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/HEALTHZ", &m), -ENOENT); /* case-sensitive */
    ASSERT_EQ(match("GET", "/v1/groupsx", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/v1", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/healthz/extra", &m), -ENOENT);
}

/* ---- parameters ---- */

TEST(router_one_param)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/v1/groups/g-42", &m), 4);
    ASSERT_EQ(m.nparams, 1);
    ASSERT_STR_EQ(m.params[0], "g-42");
    ASSERT_EQ(match("PUT", "/v1/groups/x", &m), 5);
    ASSERT_EQ(m.nparams, 1);
    ASSERT_STR_EQ(m.params[0], "x");
    ASSERT_EQ(match("POST", "/v1/groups/abc/import", &m), 7);
    ASSERT_EQ(m.nparams, 1);
    ASSERT_STR_EQ(m.params[0], "abc");
    ASSERT_EQ(match("POST", "/v1/alerts/A1/publish", &m), 10);
    ASSERT_EQ(m.nparams, 1);
    ASSERT_STR_EQ(m.params[0], "A1");
}

TEST(router_param_then_literal)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/v1/media/abc", &m), 8);
    ASSERT_EQ(m.nparams, 1);
    ASSERT_STR_EQ(m.params[0], "abc");
    ASSERT_EQ(match("GET", "/v1/media/abc/thumb", &m), 9);
    ASSERT_EQ(m.nparams, 1);
    ASSERT_STR_EQ(m.params[0], "abc");
    ASSERT_EQ(match("GET", "/v1/media/abc/thumbs", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/v1/media/abc/thumb/more", &m), -ENOENT);
}

TEST(router_two_params)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/v1/a/first/b/second", &m), 11);
    ASSERT_EQ(m.nparams, 2);
    ASSERT_STR_EQ(m.params[0], "first");
    ASSERT_STR_EQ(m.params[1], "second");
    ASSERT_EQ(match("GET", "/v1/a/first/c/second", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/v1/a/first/b", &m), -ENOENT);
}

TEST(router_max_params)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/p4/1/2/3/4", &m), 13);
    ASSERT_EQ(m.nparams, KENG_ROUTE_MAX_PARAMS);
    ASSERT_STR_EQ(m.params[0], "1");
    ASSERT_STR_EQ(m.params[3], "4");
    /* A pattern with more parameters than there is room for never matches. */
    ASSERT_EQ(match("GET", "/p5/1/2/3/4/5", &m), -ENOENT);
}

TEST(router_empty_param_does_not_match)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/v1/groups//import", &m), -ENOENT);
    ASSERT_EQ(match("POST", "/v1/groups//import", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/v1/a//b/y", &m), -ENOENT);
}

TEST(router_rest_param)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/files/a", &m), 12);
    ASSERT_EQ(m.nparams, 1);
    ASSERT_STR_EQ(m.params[0], "a");
    ASSERT_EQ(match("GET", "/files/a/b/c.txt", &m), 12);
    ASSERT_EQ(m.nparams, 1);
    ASSERT_STR_EQ(m.params[0], "a/b/c.txt");
    ASSERT_EQ(match("GET", "/files/dir/", &m), 12); /* the rest is taken as it is */
    ASSERT_STR_EQ(m.params[0], "dir/");
    /* The rest must not be empty. */
    ASSERT_EQ(match("GET", "/files/", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/files", &m), -ENOENT);
}

/* ---- 404 versus 405 ---- */

TEST(router_unknown_path_404)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/v2/groups", &m), -ENOENT);
    ASSERT_NULL(m.route);
    ASSERT_STR_EQ(m.allow, "");
    ASSERT_EQ(match("DELETE", "/nope", &m), -ENOENT);
    ASSERT_STR_EQ(m.allow, "");
}

TEST(router_method_mismatch_405_allow)
{
    keng_route_match m;
    ASSERT_EQ(match("PATCH", "/v1/groups/g1", &m), -EPERM);
    ASSERT_NULL(m.route);
    ASSERT_STR_EQ(m.allow, "GET, PUT, DELETE");
    ASSERT_EQ(match("DELETE", "/v1/groups", &m), -EPERM);
    ASSERT_STR_EQ(m.allow, "GET, POST");
    ASSERT_EQ(match("GET", "/v1/alerts/A1/publish", &m), -EPERM);
    ASSERT_STR_EQ(m.allow, "POST");
    ASSERT_EQ(match("POST", "/healthz", &m), -EPERM);
    ASSERT_STR_EQ(m.allow, "GET");
}

TEST(router_method_is_case_sensitive)
{
    keng_route_match m;
    ASSERT_EQ(match("get", "/healthz", &m), -EPERM);
    ASSERT_STR_EQ(m.allow, "GET");
}

TEST(router_head_uses_get_routes)
{
    keng_route_match m;
    ASSERT_EQ(match("HEAD", "/healthz", &m), 1);
    ASSERT_EQ(match("HEAD", "/v1/groups/g7", &m), 4);
    ASSERT_EQ(m.nparams, 1);
    ASSERT_STR_EQ(m.params[0], "g7");
    /* A path with no GET route does not answer HEAD. */
    ASSERT_EQ(match("HEAD", "/v1/alerts/A1/publish", &m), -EPERM);
    ASSERT_STR_EQ(m.allow, "POST");
}

TEST(router_allow_lists_each_method_once)
{
    static const keng_route t[] = {
        {"GET", "/x/:id", NULL},   {"GET", "/x/:id", NULL},    {"PUT", "/x/:id", NULL},
        {"PUT", "/x/fixed", NULL}, {"POST", "/x/fixed", NULL},
    };
    keng_route_match m;
    ASSERT_EQ(keng_router_match(t, 5, "PATCH", "/x/fixed", &m), -EPERM);
    ASSERT_STR_EQ(m.allow, "GET, PUT, POST");
    ASSERT_EQ(keng_router_match(t, 5, "PATCH", "/x/other", &m), -EPERM);
    ASSERT_STR_EQ(m.allow, "GET, PUT");
}

TEST(router_allow_compares_whole_methods)
{
    /* A method that is a part of one already listed (LOCK in UNLOCK) is listed too. */
    static const keng_route t[] = {
        {"UNLOCK", "/r", NULL}, {"LOCK", "/r", NULL}, {"GETX", "/r", NULL},
        {"GET", "/r", NULL},    {"LOCK", "/r", NULL}, {"ET", "/r", NULL},
    };
    keng_route_match m;
    ASSERT_EQ(keng_router_match(t, 6, "PATCH", "/r", &m), -EPERM);
    ASSERT_STR_EQ(m.allow, "UNLOCK, LOCK, GETX, GET, ET");
}

TEST(router_match_after_mismatches_wins)
{
    /* Methods that do not fit come first; the one that does still matches. */
    static const keng_route t[] = {
        {"POST", "/y", NULL}, {"PUT", "/y", NULL}, {"DELETE", "/y", NULL}, {"GET", "/y", NULL}};
    keng_route_match m;
    ASSERT_EQ(keng_router_match(t, 4, "GET", "/y", &m), 0);
    ASSERT(m.route == &t[3]);
    ASSERT_EQ(m.nparams, 0);
}

TEST(router_first_route_in_table_wins)
{
    static const keng_route t[] = {
        {"GET", "/a/:x", &D[1]},
        {"GET", "/a/lit", &D[2]},
    };
    keng_route_match m;
    ASSERT_EQ(keng_router_match(t, 2, "GET", "/a/lit", &m), 0);
    ASSERT(m.route == &t[0]);
    ASSERT_EQ(m.nparams, 1);
    ASSERT_STR_EQ(m.params[0], "lit");
}

TEST(router_empty_table)
{
    keng_route_match m;
    ASSERT_EQ(keng_router_match(routes, 0, "GET", "/healthz", &m), -ENOENT);
    ASSERT_NULL(m.route);
}

/* ---- path shape ---- */

TEST(router_trailing_slash_is_another_path)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/healthz/", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/v1/groups/", &m), -ENOENT); /* not "/v1/groups", not an empty :id */
    ASSERT_EQ(match("GET", "/v1/groups/g1/", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/v1//groups", &m), -ENOENT);
}

TEST(router_query_string_is_not_stripped)
{
    /* The router takes the path alone (keng_http_req_path has no query); a '?' that reaches
     * it is part of a segment. */
    keng_route_match m;
    ASSERT_EQ(match("GET", "/healthz?x=1", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/v1/groups/g1?x=1", &m), 4);
    ASSERT_STR_EQ(m.params[0], "g1?x=1");
}

TEST(router_malformed_path_einval)
{
    keng_route_match m;
    ASSERT_EQ(keng_router_match(routes, NROUTES, "GET", NULL, &m), -EINVAL);
    ASSERT_EQ(match("GET", "", &m), -EINVAL);
    ASSERT_EQ(match("GET", "healthz", &m), -EINVAL);
    ASSERT_EQ(match("GET", "*", &m), -EINVAL);
    ASSERT_EQ(match("GET", "http://host/healthz", &m), -EINVAL);
    ASSERT_NULL(m.route);
}

/* ---- percent-encoding ---- */

TEST(router_param_percent_decoded)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/v1/groups/a%20b", &m), 4);
    ASSERT_STR_EQ(m.params[0], "a b");
    ASSERT_EQ(match("GET", "/v1/groups/%E1%BA%A1", &m), 4); /* UTF-8 "ạ" */
    ASSERT_STR_EQ(m.params[0], "\xE1\xBA\xA1");
    ASSERT_EQ(match("GET", "/v1/groups/a%2fb%2Fc", &m), -ENOENT); /* see the next test */
    /* '+' is a plus in a path, not a space. */
    ASSERT_EQ(match("GET", "/v1/groups/a+b", &m), 4);
    ASSERT_STR_EQ(m.params[0], "a+b");
    ASSERT_EQ(match("GET", "/v1/a/%41/b/%62", &m), 11);
    ASSERT_STR_EQ(m.params[0], "A");
    ASSERT_STR_EQ(m.params[1], "b");
}

TEST(router_encoded_slash_not_a_segment)
{
    keng_route_match m;
    /* "%2F" in a single segment would let ":id" smuggle a '/' to the handler. */
    ASSERT_EQ(match("GET", "/v1/groups/..%2F..%2Fetc", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/v1/groups/%2F", &m), -ENOENT);
    /* A rest parameter takes slashes anyway, so an encoded one is fine there. */
    ASSERT_EQ(match("GET", "/files/a%2Fb/c", &m), 12);
    ASSERT_STR_EQ(m.params[0], "a/b/c");
}

TEST(router_literal_segments_not_decoded)
{
    keng_route_match m;
    ASSERT_EQ(match("GET", "/%68ealthz", &m), -ENOENT); /* "%68" is 'h' */
}

TEST(router_bad_percent_encoding_rejected)
{
    /* A malformed path is -EINVAL (400), as router.h promises, not "no such resource". */
    static const struct {
        const char *method, *path;
    } bad[] = {
        {"GET", "/v1/groups/%zz"},
        {"GET", "/v1/groups/%4"},
        {"GET", "/v1/groups/abc%"},
        {"GET", "/v1/groups/%"},
        {"GET", "/v1/groups/%00"},
        {"GET", "/v1/groups/a%00b"},
        {"GET", "/files/x%g1"},
        {"GET", "/files/a/b%00"},
        {"POST", "/v1/groups/%zz/import"}, /* a parameter before a literal */
        {"PATCH", "/v1/groups/%4"},        /* the method does not fit either: still 400 */
        {"GET", "/v1/a/ok/b/%G0"},         /* the second parameter */
        {"GET", "/nothing/%zz"},           /* a bad escape where no pattern fits: still 400 */
        {"GET", "/%"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keng_route_match m;
        int rc = keng_router_match(routes, NROUTES, bad[i].method, bad[i].path, &m);
        if (rc != -EINVAL) TEST_FAIL("%s %s: rc %d", bad[i].method, bad[i].path, rc);
        ASSERT_NULL(m.route);
    }
    /* Well-formed escapes where no pattern matches are still 404. */
    keng_route_match m;
    ASSERT_EQ(match("GET", "/nothing/%00", &m), -ENOENT);
    ASSERT_EQ(match("GET", "/v1/groups/a%2Fb", &m), -ENOENT);
}

TEST(router_param_length_limit)
{
    keng_route_match m;
    char path[1024];
    /* KENG_ROUTE_PARAM_LEN includes the NUL: 255 decoded bytes fit, 256 do not. */
    int n = snprintf(path, sizeof path, "/v1/groups/");
    memset(path + n, 'a', KENG_ROUTE_PARAM_LEN - 1);
    path[n + KENG_ROUTE_PARAM_LEN - 1] = '\0';
    ASSERT_EQ(match("GET", path, &m), 4);
    ASSERT_EQ(strlen(m.params[0]), KENG_ROUTE_PARAM_LEN - 1);
    path[n + KENG_ROUTE_PARAM_LEN - 1] = 'a';
    path[n + KENG_ROUTE_PARAM_LEN] = '\0';
    /* One more is a malformed path (400), documented in router.h, not "no such resource". */
    ASSERT_EQ(match("GET", path, &m), -EINVAL);
    ASSERT_NULL(m.route);
    ASSERT_EQ(match("DELETE", path, &m), -EINVAL);
    /* Too long under a rest parameter as well. */
    n = snprintf(path, sizeof path, "/files/");
    memset(path + n, 'b', KENG_ROUTE_PARAM_LEN);
    path[n + KENG_ROUTE_PARAM_LEN] = '\0';
    ASSERT_EQ(match("GET", path, &m), -EINVAL);
    n = snprintf(path, sizeof path, "/v1/groups/");
    /* The limit is on the decoded length: 255 x "%41" (765 bytes raw) fits. */
    char *p = path + n;
    for (int i = 0; i < KENG_ROUTE_PARAM_LEN - 1; i++, p += 3)
        memcpy(p, "%41", 3);
    *p = '\0';
    ASSERT_EQ(match("GET", path, &m), 4);
    ASSERT_EQ(strlen(m.params[0]), KENG_ROUTE_PARAM_LEN - 1);
    ASSERT_EQ(m.params[0][0], 'A');
    memcpy(p, "%41", 4); /* 256 decoded bytes */
    ASSERT_EQ(match("GET", path, &m), -EINVAL);
}

TEST(router_long_path_no_overflow)
{
    /* A long path of many segments against every pattern: no match, no crash. */
    static char path[64 * 1024];
    size_t n = 0;
    while (n + 3 < sizeof path) {
        memcpy(path + n, "/ab", 3);
        n += 3;
    }
    path[n] = '\0';
    keng_route_match m;
    ASSERT_EQ(match("GET", path, &m), -ENOENT);
    /* Under a rest parameter it is too long for the buffer: a malformed path. */
    memcpy(path, "/files", 6);
    ASSERT_EQ(match("GET", path, &m), -EINVAL);
}

/* ---- many routes ---- */

TEST(router_many_routes)
{
    enum { N = 300 };
    static char pats[N][48];
    static keng_route t[N];
    static const char *methods[] = {"GET", "POST", "PUT"};
    static int ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = i;
        /* Each path has all three methods on consecutive rows; even thirds take a parameter. */
        int pathno = i / 3;
        if (pathno % 2)
            snprintf(pats[i], sizeof pats[i], "/r%d/items", pathno);
        else
            snprintf(pats[i], sizeof pats[i], "/r%d/items/:item", pathno);
        t[i] = (keng_route){methods[i % 3], pats[i], &ids[i]};
    }
    for (int i = 0; i < N; i++) {
        char path[64];
        int pathno = i / 3;
        if (pathno % 2)
            snprintf(path, sizeof path, "/r%d/items", pathno);
        else
            snprintf(path, sizeof path, "/r%d/items/it-%d", pathno, i);
        keng_route_match m;
        ASSERT_EQ(keng_router_match(t, N, methods[i % 3], path, &m), 0);
        ASSERT_EQ(*(const int *)m.route->data, i);
        if (pathno % 2) {
            ASSERT_EQ(m.nparams, 0);
        } else {
            char want[32];
            snprintf(want, sizeof want, "it-%d", i);
            ASSERT_EQ(m.nparams, 1);
            ASSERT_STR_EQ(m.params[0], want);
        }
        ASSERT_EQ(keng_router_match(t, N, "DELETE", path, &m), -EPERM);
        ASSERT_STR_EQ(m.allow, "GET, POST, PUT");
    }
    keng_route_match m;
    ASSERT_EQ(keng_router_match(t, N, "GET", "/r100/items", &m), -ENOENT);
    ASSERT_EQ(keng_router_match(t, N, "GET", "/r1/items/x", &m), -ENOENT);
}
