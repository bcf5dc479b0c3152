/* /v1/groups and /v1/members. */
#include "keng/app.h"
#include "keng/groups.h"
#include "keng/import.h"
#include "keng/log.h"

#include <errno.h>
#include <string.h>

int keng_api_group_exists(keng_app *app, const char *id)
{
    return keng_group_exists(app->store, id);
}

static void respond_list(keng_call *c, cJSON *items, int total, int limit, int offset)
{
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "items", items);
    cJSON_AddNumberToObject(out, "total", total);
    cJSON_AddNumberToObject(out, "limit", limit);
    cJSON_AddNumberToObject(out, "offset", offset);
    keng_api_respond_json(c, 200, out);
}

static int query_id(keng_call *c, const char *name, char *out, size_t len, const char **val)
{
    int rc = keng_http_query_param(c->req, name, out, len);
    *val = NULL;
    if (rc == -ENOENT) return 0;
    if (rc || !*out) {
        keng_api_field_error(c, name, "%s must be a non-empty value", name);
        return -1;
    }
    *val = out;
    return 0;
}

void keng_api_groups_list(keng_call *c)
{
    int limit, offset, total;
    char kb[64], pb[128];
    const char *kind, *parent;
    if (keng_api_paging(c, &limit, &offset) || query_id(c, "kind", kb, sizeof kb, &kind) ||
        query_id(c, "parent", pb, sizeof pb, &parent))
        return;
    cJSON *items = keng_groups_list(c->app->store, kind, parent, limit, offset, &total);
    respond_list(c, items, total, limit, offset);
}

/* Checks references of a validated group against the store; answers and returns -1 if bad. */
static int group_refs_ok(keng_call *c, cJSON *g)
{
    keng_store *st = c->app->store;
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "id"));
    const char *parent = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "parent"));
    if (parent && !keng_group_exists(st, parent)) {
        keng_api_field_error(c, "parent", "the parent group %s does not exist", parent);
        return -1;
    }
    if (parent && keng_group_parent_cycle(st, id, parent)) {
        keng_api_field_error(c, "parent", "making %s the parent of %s would make a cycle", parent,
                             id);
        return -1;
    }
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(g, "members");
    int i = 0;
    for (cJSON *m = ms ? ms->child : NULL; m; m = m->next, i++) {
        char f[48];
        snprintf(f, sizeof f, "members[%d]", i);
        if (cJSON_IsString(m)) {
            if (!keng_member_exists(st, m->valuestring)) {
                keng_api_field_error(c, f, "member %s does not exist; define it as an object",
                                     m->valuestring);
                return -1;
            }
            continue;
        }
        keng_verr e;
        if (keng_member_validate(m, 0, &e)) {
            keng_api_field_error(c, f, "%s: %s", f, e.message);
            return -1;
        }
    }
    const char *leader = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "leader"));
    if (leader && !ms) {
        keng_api_field_error(c, "leader", "list the leader among the members");
        return -1;
    }
    return 0;
}

static int group_store(keng_call *c, cJSON *g)
{
    keng_store *st = c->app->store;
    int rc = keng_store_begin(st);
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(g, "members");
    for (const cJSON *m = ms ? ms->child : NULL; m && !rc; m = m->next)
        if (cJSON_IsObject(m)) rc = keng_member_upsert(st, m, "api");
    if (!rc) rc = keng_group_upsert(st, g, "api");
    if (!rc && ms)
        rc = keng_group_set_members(st, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "id")),
                                    ms);
    if (!rc) return keng_store_commit(st);
    keng_store_rollback(st);
    return rc;
}

static void group_write(keng_call *c, int create)
{
    cJSON *g = keng_api_json_body(c);
    if (!g) return;
    keng_verr e;
    if (!create) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "id"));
        if (!id) cJSON_AddStringToObject(g, "id", c->m.params[0]);
        else if (strcmp(id, c->m.params[0])) {
            keng_api_field_error(c, "id", "the id in the body differs from the one in the path");
            cJSON_Delete(g);
            return;
        }
        if (!keng_group_exists(c->app->store, c->m.params[0])) {
            keng_http_respond_error(c->req, 404, "not_found", "no such group: %s", c->m.params[0]);
            cJSON_Delete(g);
            return;
        }
    }
    if (keng_group_validate(g, &e)) {
        keng_api_field_error(c, e.field, "%s", e.message);
    } else if (group_refs_ok(c, g) == 0) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "id"));
        if (create && keng_group_exists(c->app->store, id)) {
            keng_http_respond_error(c->req, 409, "exists",
                                    "group %s exists already; use PUT /v1/groups/%s", id, id);
        } else if (group_store(c, g)) {
            keng_http_respond_error(c->req, 500, "internal", "the group could not be stored");
        } else {
            keng_http_respond_json(c->req, create ? 201 : 200,
                                   keng_group_get(c->app->store, id, 1));
        }
    }
    cJSON_Delete(g);
}

void keng_api_groups_create(keng_call *c)
{
    group_write(c, 1);
}

void keng_api_groups_put(keng_call *c)
{
    group_write(c, 0);
}

void keng_api_groups_get(keng_call *c)
{
    if (c->who.role == KENG_ROLE_LEADER && strcmp(c->who.group_id, c->m.params[0]) != 0) {
        keng_http_respond_error(c->req, 403, "forbidden", "a leader sees only their own group");
        return;
    }
    cJSON *g = keng_group_get(c->app->store, c->m.params[0], 1);
    if (!g) {
        keng_http_respond_error(c->req, 404, "not_found", "no such group: %s", c->m.params[0]);
        return;
    }
    keng_api_respond_json(c, 200, g);
}

void keng_api_groups_delete(keng_call *c)
{
    int rc = keng_group_delete(c->app->store, c->m.params[0]);
    if (rc == -ENOENT)
        keng_http_respond_error(c->req, 404, "not_found", "no such group: %s", c->m.params[0]);
    else if (rc == -EBUSY)
        keng_http_respond_error(c->req, 409, "has_children",
                                "group %s is the parent of other groups; move or delete them first",
                                c->m.params[0]);
    else if (rc)
        keng_http_respond_error(c->req, 500, "internal", "the group could not be deleted");
    else
        keng_http_respond(c->req, 204, NULL, NULL, 0);
}

void keng_api_groups_import_csv(keng_call *c)
{
    const char *ct = keng_http_req_header(c->req, "content-type");
    if (!ct || strncmp(ct, "text/csv", 8) != 0) {
        keng_http_respond_error(c->req, 415, "unsupported_media_type",
                                "send the households as text/csv");
        return;
    }
    size_t len;
    const char *body = keng_http_req_body(c->req, &len);
    char err[512];
    int n = 0;
    int rc = keng_import_csv(c->app->store, c->m.params[0], body, len, &n, err, sizeof err);
    if (rc == -ENOENT) {
        keng_http_respond_error(c->req, 404, "not_found", "%s", err);
    } else if (rc == -EINVAL) {
        keng_http_respond_error(c->req, 400, "invalid_csv", "%s; nothing was imported", err);
    } else if (rc) {
        keng_http_respond_error(c->req, 500, "internal", "%s", err);
    } else {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "imported", n);
        cJSON_AddStringToObject(out, "group", c->m.params[0]);
        keng_http_respond_json(c->req, 200, out);
    }
}

void keng_api_members_list(keng_call *c)
{
    int limit, offset, total;
    char gb[128];
    const char *group;
    if (keng_api_paging(c, &limit, &offset) || query_id(c, "group", gb, sizeof gb, &group)) return;
    cJSON *items = keng_members_list(c->app->store, group, limit, offset, &total);
    respond_list(c, items, total, limit, offset);
}

static void member_write(keng_call *c, int create)
{
    cJSON *m = keng_api_json_body(c);
    if (!m) return;
    keng_store *st = c->app->store;
    if (!create) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
        if (!id) cJSON_AddStringToObject(m, "id", c->m.params[0]);
        else if (strcmp(id, c->m.params[0])) {
            keng_api_field_error(c, "id", "the id in the body differs from the one in the path");
            goto out;
        }
        if (!keng_member_exists(st, c->m.params[0])) {
            keng_http_respond_error(c->req, 404, "not_found", "no such member: %s", c->m.params[0]);
            goto out;
        }
    }
    keng_verr e;
    if (keng_member_validate(m, 1, &e)) {
        keng_api_field_error(c, e.field, "%s", e.message);
        goto out;
    }
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
    if (create && keng_member_exists(st, id)) {
        keng_http_respond_error(c->req, 409, "exists",
                                "member %s exists already; use PUT /v1/members/%s", id, id);
        goto out;
    }
    const cJSON *gs = cJSON_GetObjectItemCaseSensitive(m, "groups");
    int i = 0;
    for (const cJSON *g = gs ? gs->child : NULL; g; g = g->next, i++) {
        if (!keng_group_exists(st, g->valuestring)) {
            char f[32];
            snprintf(f, sizeof f, "groups[%d]", i);
            keng_api_field_error(c, f, "group %s does not exist", g->valuestring);
            goto out;
        }
    }
    int rc = keng_store_begin(st);
    if (!rc) rc = keng_member_upsert(st, m, "api");
    if (!rc && gs) rc = keng_member_set_groups(st, id, gs);
    if (!rc) rc = keng_store_commit(st);
    else keng_store_rollback(st);
    if (rc)
        keng_http_respond_error(c->req, 500, "internal", "the member could not be stored");
    else
        keng_http_respond_json(c->req, create ? 201 : 200, keng_member_get(st, id));
out:
    cJSON_Delete(m);
}

void keng_api_members_create(keng_call *c)
{
    member_write(c, 1);
}

void keng_api_members_put(keng_call *c)
{
    member_write(c, 0);
}

void keng_api_members_get(keng_call *c)
{
    cJSON *m = keng_member_get(c->app->store, c->m.params[0]);
    if (!m) {
        keng_http_respond_error(c->req, 404, "not_found", "no such member: %s", c->m.params[0]);
        return;
    }
    keng_api_respond_json(c, 200, m);
}
