#include "keng/reach.h"

#include "keng/norm.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { Q_PUB, Q_MEMBERS, Q_DELIVERED, Q_RELAYS, Q_HELD };

static const char *const reach_sql[5] = {
    "SELECT coalesce(published_at, 0) FROM alerts WHERE id = ?1",
    /* In key order: no lookups, unlike grouping by via_group through recipients_group. */
    "SELECT via_group, member_id, seen_at IS NOT NULL, replied_at IS NOT NULL FROM recipients"
    " WHERE alert_id = ?1",
    "SELECT recipient FROM deliveries JOIN delivery_state USING (id, alert_id) WHERE alert_id = ?1"
    " AND status = 'delivered'",
    "SELECT group_id, state, relayed_at, relayed_by FROM relays WHERE alert_id = ?1",
    /* Households of the group (not its leader) that are no recipient yet. */
    "SELECT count(*) FROM memberships j JOIN groups g ON g.id = j.group_id WHERE j.group_id = ?2"
    " AND j.member_id <> coalesce(g.leader, '') AND NOT EXISTS (SELECT 1 FROM recipients x"
    " WHERE x.alert_id = ?1 AND x.member_id = j.member_id)",
};

int keng_reach_sql_store(keng_store *st, keng_reach_sql *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 5; i++)
        if (!(out->s[i] = keng_store_stmt(st, reach_sql[i]))) return -EIO;
    return 0;
}

int keng_reach_sql_prepare(sqlite3 *db, keng_reach_sql *out)
{
    memset(out, 0, sizeof *out);
    out->owned = 1;
    for (int i = 0; i < 5; i++) {
        if (sqlite3_prepare_v3(db, reach_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &out->s[i], NULL) !=
            SQLITE_OK) {
            keng_reach_sql_free(out);
            return -EIO;
        }
    }
    return 0;
}

void keng_reach_sql_free(keng_reach_sql *q)
{
    if (!q || !q->owned) return;
    for (int i = 0; i < 5; i++) {
        sqlite3_finalize(q->s[i]);
        q->s[i] = NULL;
    }
}

/* ---- strings in blocks, and an open-addressing table of them ---- */

typedef struct arena {
    char **blocks;
    size_t nblocks, used, cap;
} arena;

static const char *arena_dup(arena *a, const char *s, size_t len)
{
    if (a->used + len + 1 > a->cap) {
        size_t cap = len + 1 > 65536 ? len + 1 : 65536;
        char **b = realloc(a->blocks, (a->nblocks + 1) * sizeof *b);
        if (!b) return NULL;
        a->blocks = b;
        if (!(b[a->nblocks] = malloc(cap))) return NULL;
        a->nblocks++;
        a->used = 0;
        a->cap = cap;
    }
    char *p = a->blocks[a->nblocks - 1] + a->used;
    memcpy(p, s, len);
    p[len] = '\0';
    a->used += len + 1;
    return p;
}

static void arena_free(arena *a)
{
    for (size_t i = 0; i < a->nblocks; i++)
        free(a->blocks[i]);
    free(a->blocks);
}

typedef struct slot {
    const char *key; /* in the arena; NULL: free */
    uint32_t hash;
    int32_t val;
} slot;

typedef struct table {
    slot *s;
    size_t cap, n; /* cap a power of two */
} table;

static uint32_t hash_str(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* The slot of key: found (key set) or where it goes (key NULL). NULL without memory. */
static slot *table_slot(table *t, const char *key, size_t len, uint32_t h)
{
    if ((t->n + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        slot *s = calloc(cap, sizeof *s);
        if (!s) return NULL;
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->s[i].key) continue;
            size_t k = t->s[i].hash & (cap - 1);
            while (s[k].key)
                k = (k + 1) & (cap - 1);
            s[k] = t->s[i];
        }
        free(t->s);
        t->s = s;
        t->cap = cap;
    }
    size_t k = h & (t->cap - 1);
    while (t->s[k].key && (t->s[k].hash != h || strncmp(t->s[k].key, key, len) || t->s[k].key[len]))
        k = (k + 1) & (t->cap - 1);
    return &t->s[k];
}

static const slot *table_find(const table *t, const char *key, size_t len)
{
    if (!t->cap) return NULL;
    uint32_t h = hash_str(key, len);
    size_t k = h & (t->cap - 1);
    while (t->s[k].key) {
        if (t->s[k].hash == h && !strncmp(t->s[k].key, key, len) && !t->s[k].key[len])
            return &t->s[k];
        k = (k + 1) & (t->cap - 1);
    }
    return NULL;
}

/* ---- the computation ---- */

typedef struct group {
    const char *id, *state, *relayed_by; /* arena */
    int n[5];                            /* recipients, held, seen, replied, delivered */
    int64_t relayed_at;                  /* 0: none */
    int has_relay, has_relayed_at;
} group;

typedef struct work {
    arena a;
    table delivered, groups;
    group *g;
    size_t ng, gcap;
} work;

static group *group_get(work *w, const char *id, size_t len)
{
    uint32_t h = hash_str(id, len);
    slot *s = table_slot(&w->groups, id, len, h);
    if (!s) return NULL;
    if (s->key) return &w->g[s->val];
    if (w->ng == w->gcap) {
        size_t cap = w->gcap ? w->gcap * 2 : 64;
        group *g = realloc(w->g, cap * sizeof *g);
        if (!g) return NULL;
        w->g = g;
        w->gcap = cap;
    }
    const char *key = arena_dup(&w->a, id, len);
    if (!key) return NULL;
    group *g = &w->g[w->ng];
    memset(g, 0, sizeof *g);
    g->id = key;
    s->key = key;
    s->hash = h;
    s->val = (int32_t)w->ng++;
    w->groups.n++;
    return g;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const group *)a)->id, ((const group *)b)->id);
}

static const char *col_text(sqlite3_stmt *s, int col, size_t *len)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    *len = t ? (size_t)sqlite3_column_bytes(s, col) : 0;
    return t ? t : "";
}

static void stmt_start(sqlite3_stmt *s, const char *alert_id)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    sqlite3_bind_text(s, 1, alert_id, -1, SQLITE_STATIC);
}

static int gather(keng_reach_sql *q, const char *alert_id, work *w, int64_t *published)
{
    int rc;
    sqlite3_stmt *s = q->s[Q_PUB];
    stmt_start(s, alert_id);
    *published = (rc = sqlite3_step(s)) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return -EIO;
    /* Recipients with a delivered message. */
    s = q->s[Q_DELIVERED];
    stmt_start(s, alert_id);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t len;
        const char *r = col_text(s, 0, &len);
        uint32_t h = hash_str(r, len);
        slot *sl = table_slot(&w->delivered, r, len, h);
        if (!sl) break;
        if (sl->key) continue;
        if (!(sl->key = arena_dup(&w->a, r, len))) break;
        sl->hash = h;
        w->delivered.n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return rc == SQLITE_ROW ? -ENOMEM : -EIO;
    s = q->s[Q_MEMBERS];
    stmt_start(s, alert_id);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t glen, mlen;
        const char *gid = col_text(s, 0, &glen);
        group *g = group_get(w, gid, glen);
        if (!g) break;
        const char *m = col_text(s, 1, &mlen);
        g->n[0]++;
        g->n[2] += sqlite3_column_int(s, 2) != 0;
        g->n[3] += sqlite3_column_int(s, 3) != 0;
        g->n[4] += table_find(&w->delivered, m, mlen) != NULL;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return rc == SQLITE_ROW ? -ENOMEM : -EIO;
    s = q->s[Q_RELAYS];
    stmt_start(s, alert_id);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t len, slen, blen;
        const char *gid = col_text(s, 0, &len);
        const slot *sl = table_find(&w->groups, gid, len);
        if (!sl) continue; /* no recipient through it: not shown */
        group *g = &w->g[sl->val];
        const char *state = col_text(s, 1, &slen), *by = col_text(s, 3, &blen);
        g->has_relay = 1;
        if (!(g->state = arena_dup(&w->a, state, slen)) ||
            !(g->relayed_by = arena_dup(&w->a, by, blen)))
            break;
        if ((g->has_relayed_at = sqlite3_column_type(s, 2) != SQLITE_NULL))
            g->relayed_at = sqlite3_column_int64(s, 2);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return rc == SQLITE_ROW ? -ENOMEM : -EIO;
    s = q->s[Q_HELD];
    for (size_t i = 0; i < w->ng; i++) {
        group *g = &w->g[i];
        if (!g->has_relay || strcmp(g->state, "waiting")) continue;
        stmt_start(s, alert_id);
        sqlite3_bind_text(s, 2, g->id, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) g->n[1] = sqlite3_column_int(s, 0);
        sqlite3_reset(s);
        if (rc != SQLITE_ROW) return -EIO;
    }
    return 0;
}

cJSON *keng_reach_build(keng_reach_sql *q, const char *alert_id)
{
    work w;
    memset(&w, 0, sizeof w);
    int64_t published = 0;
    int rc = gather(q, alert_id, &w, &published);
    static const char *const names[] = {"recipients", "held", "seen", "replied", "delivered"};
    cJSON *out = rc ? NULL : cJSON_CreateObject();
    cJSON *groups = out ? cJSON_AddArrayToObject(out, "groups") : NULL;
    int ok = groups != NULL, tot[5] = {0};
    if (ok && w.ng) qsort(w.g, w.ng, sizeof *w.g, by_id);
    for (size_t i = 0; ok && i < w.ng; i++) {
        const group *g = &w.g[i];
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToArray(groups, o) && cJSON_AddStringToObject(o, "group", g->id);
        for (int k = 0; ok && k < 5; k++) {
            tot[k] += g->n[k];
            ok = cJSON_AddNumberToObject(o, names[k], g->n[k]) != NULL;
        }
        if (!ok || !g->has_relay) continue;
        ok = cJSON_AddStringToObject(o, "relay", g->state) != NULL;
        if (!ok || !g->has_relayed_at) continue;
        char buf[KENG_TIME_RFC3339_MAX];
        if (keng_time_format(g->relayed_at, KENG_TZ_VN_MIN, buf, sizeof buf) == 0)
            ok = cJSON_AddStringToObject(o, "relayed_at", buf) != NULL;
        if (ok && published)
            ok = cJSON_AddNumberToObject(o, "time_to_relay_s",
                                         (double)(g->relayed_at - published)) != NULL;
        if (ok) ok = cJSON_AddStringToObject(o, "relayed_by", g->relayed_by) != NULL;
    }
    cJSON *t = ok ? cJSON_AddObjectToObject(out, "total") : NULL;
    for (int k = 0; t && k < 5; k++)
        if (!cJSON_AddNumberToObject(t, names[k], tot[k])) t = NULL;
    if (!t) {
        cJSON_Delete(out);
        out = NULL;
    }
    arena_free(&w.a);
    free(w.delivered.s);
    free(w.groups.s);
    free(w.g);
    return out;
}
