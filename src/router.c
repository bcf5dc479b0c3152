#include "keng/router.h"

#include "keng/http.h"

#include <errno.h>
#include <string.h>

static int is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* Every '%' must start two hex digits (RFC 3986 pct-encoded), in literal segments too. */
static int path_escapes_ok(const char *path)
{
    for (const char *p = strchr(path, '%'); p; p = strchr(p + 1, '%'))
        if (!is_hex(p[1]) || !is_hex(p[2])) return 0;
    return 1;
}

/* Matches one pattern; fills params. 1 on a match, 0 when the path has another shape, -EINVAL
 * when it has this pattern's shape but a parameter cannot be taken (%00, or longer than
 * KENG_ROUTE_PARAM_LEN - 1 bytes once decoded). */
static int match_one(const char *pat, const char *path, keng_route_match *m)
{
    int np = 0, bad = 0;
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
            /* A parameter that does not decode is an error only if the rest of the path fits
             * this pattern too: go on matching, decide at the end. */
            if (keng_http_urldecode(path, slen, m->params[np], KENG_ROUTE_PARAM_LEN, 0))
                bad = 1;
            else if (!rest && strchr(m->params[np], '/'))
                return 0; /* a decoded '/' in a single segment is not a segment */
            np++;
        } else if (plen != slen || memcmp(pat, path, plen) != 0) {
            return 0;
        }
        pat += plen;
        path += slen;
    }
    if (*pat || *path) return 0;
    if (bad) return -EINVAL;
    m->nparams = np;
    return 1;
}

/* Whether allow ("GET, POST") lists method as a whole token: "LOCK" is not in "UNLOCK". */
static int allow_has(const char *allow, const char *method)
{
    size_t ml = strlen(method);
    for (const char *p = allow; *p;) {
        const char *sep = strstr(p, ", ");
        size_t tl = sep ? (size_t)(sep - p) : strlen(p);
        if (tl == ml && memcmp(p, method, ml) == 0) return 1;
        if (!sep) break;
        p = sep + 2;
    }
    return 0;
}

int keng_router_match(const keng_route *routes, size_t n, const char *method, const char *path,
                      keng_route_match *m)
{
    memset(m, 0, sizeof *m);
    if (!path || path[0] != '/' || !path_escapes_ok(path)) return -EINVAL;
    int path_hit = 0, bad_param = 0;
    size_t alen = 0;
    for (size_t i = 0; i < n; i++) {
        keng_route_match tmp;
        int rc = match_one(routes[i].pattern, path, &tmp);
        if (rc < 0) bad_param = 1;
        if (rc <= 0) continue;
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
        if (!allow_has(m->allow, routes[i].method) && alen + ml + 3 < sizeof m->allow) {
            if (alen) {
                memcpy(m->allow + alen, ", ", 2);
                alen += 2;
            }
            memcpy(m->allow + alen, routes[i].method, ml + 1);
            alen += ml;
        }
    }
    /* A route that takes the path as it is says more (405) than one it does not fit (400). */
    if (path_hit) return -EPERM;
    return bad_param ? -EINVAL : -ENOENT;
}
