/* router: method + path → route. A pure function over a static table of patterns whose
 * segments are literals or ":name" parameters; no allocation, any thread. */
#ifndef KENG_ROUTER_H
#define KENG_ROUTER_H

#include <stddef.h>

#define KENG_ROUTE_MAX_PARAMS 4
#define KENG_ROUTE_PARAM_LEN 256

typedef struct keng_route {
    const char *method;  /* "GET", "POST", … */
    const char *pattern; /* "/v1/groups/:id"; a last segment ":name*" takes the rest */
    const void *data;    /* the caller's: handler, roles, limits */
} keng_route;

typedef struct keng_route_match {
    const keng_route *route;
    int nparams;
    char params[KENG_ROUTE_MAX_PARAMS][KENG_ROUTE_PARAM_LEN]; /* percent-decoded */
    char allow[128]; /* for 405: the methods the path accepts, "GET, POST" */
} keng_route_match;

/* 0 and m filled; -ENOENT when no pattern matches the path (404); -EPERM when the path matches
 * but not the method (405, m->allow says which do); -EINVAL for a malformed path (400): not
 * starting with '/', a '%' not followed by two hex digits anywhere in it, or a parameter of a
 * pattern the path otherwise fits that decodes to a NUL byte or to more than
 * KENG_ROUTE_PARAM_LEN - 1 bytes. A decoded '/' in a single-segment parameter is no match. */
int keng_router_match(const keng_route *routes, size_t n, const char *method, const char *path,
                      keng_route_match *m);

#endif
