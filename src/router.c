#include "keng/router.h"

#include "keng/http.h"

#include <errno.h>
#include <string.h>

/* Matches one pattern; fills params. 1 on a match. */
static int match_one(const char *pat, const char *path, keng_route_match *m)
{
    int np = 0;
    while (*pat && *path) {
        if (*pat != '/' || *path != '/') return 0;
        pat++;
        path++;
        const char *pe = strchr(pat, '/');
        size_t plen = pe ? (size_t)(pe - pat) : strlen(pat);
        const char *se = strchr(path, '/');
        size_t slen = se ? (size_t)(se - path) : strlen(path);
        if (plen > 0 && pat[0] == ':') {
            int rest = pat[plen - 1] == '*';
            if (rest) slen = strlen(path);
            if (slen == 0 || np == KENG_ROUTE_MAX_PARAMS) return 0;
            if (keng_http_urldecode(path, slen, m->params[np], KENG_ROUTE_PARAM_LEN, 0)) return 0;
            /* A decoded '/' in a single segment is not a segment. */
            if (!rest && strchr(m->params[np], '/')) return 0;
            np++;
        } else if (plen != slen || memcmp(pat, path, plen) != 0) {
            return 0;
        }
        pat += plen;
        path += slen;
    }
    if (*pat || *path) return 0;
    m->nparams = np;
    return 1;
}

int keng_router_match(const keng_route *routes, size_t n, const char *method, const char *path,
                      keng_route_match *m)
{
    memset(m, 0, sizeof *m);
    if (!path || path[0] != '/') return -EINVAL;
    int path_hit = 0;
    size_t alen = 0;
    for (size_t i = 0; i < n; i++) {
        keng_route_match tmp;
        if (!match_one(routes[i].pattern, path, &tmp)) continue;
        int head_ok = strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0;
        if (strcmp(routes[i].method, method) == 0 || head_ok) {
            char allow[sizeof m->allow];
            memcpy(allow, m->allow, sizeof allow);
            *m = tmp;
            memcpy(m->allow, allow, sizeof allow);
            m->route = &routes[i];
            return 0;
        }
        path_hit = 1;
        size_t ml = strlen(routes[i].method);
        if (!strstr(m->allow, routes[i].method) && alen + ml + 3 < sizeof m->allow) {
            if (alen) {
                memcpy(m->allow + alen, ", ", 2);
                alen += 2;
            }
            memcpy(m->allow + alen, routes[i].method, ml + 1);
            alen += ml;
        }
    }
    return path_hit ? -EPERM : -ENOENT;
}
