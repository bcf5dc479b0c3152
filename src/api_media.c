/* /v1/media (upload, original, thumbnail) and the public thumbnails at /t/ID.jpg.
 *
 * An upload is hashed, thumbnailed and written on the libuv thread pool; the loop thread only
 * checks headers, inserts the row and answers. The worker reads the request body in place: the
 * request (and its body) stays valid until we respond, and we respond only after the work. */
#include "keng/app.h"
#include "keng/log.h"
#include "keng/media.h"
#include "keng/thumb.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The public copy must stop circulating soon after an alert is withdrawn (410), so shared caches
 * may keep it only briefly. */
#define PUBLIC_THUMB_CACHE "public, max-age=300"
/* Originals and staff thumbnails never change under an id, but access is by token: no sharing. */
#define PRIVATE_CACHE "private, max-age=3600"

typedef struct upload_job {
    uv_work_t work;
    keng_call *c;
    const unsigned char *body; /* borrowed from the request, see above */
    size_t len;
    const char *media_dir; /* the app's: it outlives every request */
    char sha[65];
    keng_thumb_info info;
    size_t thumb_size;
    int rc;       /* 0, or the first error */
    int thumb_rc; /* nonzero when rc came from decoding (the user's fault), not from the disk */
} upload_job;

/* The content types we accept, compared without parameters ("image/jpeg; q=1" is fine). */
static int image_type_ok(const char *ct)
{
    if (!ct) return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    static const char *const ok[] = {"image/jpeg", "image/png"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t n = strlen(ok[i]);
        if (strncasecmp(ct, ok[i], n) == 0 &&
            (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t'))
            return 1;
    }
    return 0;
}

static void respond_bad_type(keng_call *c)
{
    keng_http_respond_error(c->req, 415, "unsupported_media_type",
                            "send the photo as the raw body with Content-Type image/jpeg or "
                            "image/png");
}

/* Optional on_headers hook of the upload route: refuses a wrong type before 25 MB arrive. */
void keng_api_media_upload_headers(keng_call *c)
{
    if (!image_type_ok(keng_http_req_header(c->req, "content-type"))) respond_bad_type(c);
}

static void upload_work(uv_work_t *w)
{
    upload_job *j = w->data;
    keng_sha256_hex(j->body, j->len, j->sha);
    size_t orig_size = 0, thumb_size = 0;
    /* A photo sent again (a retry, or the same picture for a second alert): the files are
     * there, so the headers are enough to answer; no decode, no write. */
    if (keng_media_exists(j->media_dir, j->sha, NULL, &orig_size) == 1 && orig_size == j->len &&
        keng_media_exists(j->media_dir, j->sha, KENG_MEDIA_THUMB_SUFFIX, &thumb_size) == 1 &&
        thumb_size > 0 && keng_thumb_probe(j->body, j->len, &j->info) == 0) {
        j->thumb_size = thumb_size;
        return;
    }
    unsigned char *thumb = NULL;
    size_t tlen = 0;
    int rc = keng_thumb_make(j->body, j->len, KENG_THUMB_DEFAULT_SIDE, KENG_THUMB_DEFAULT_QUALITY,
                             &thumb, &tlen, &j->info);
    if (rc) {
        j->rc = rc;
        j->thumb_rc = 1;
        return;
    }
    /* The original first: a thumbnail without its original would be served to the public with
     * nothing behind it for the officers. */
    rc = keng_media_write(j->media_dir, j->sha, NULL, j->body, j->len);
    if (!rc) rc = keng_media_write(j->media_dir, j->sha, KENG_MEDIA_THUMB_SUFFIX, thumb, tlen);
    free(thumb);
    j->thumb_size = tlen;
    j->rc = rc;
}

/* A known mime as a string literal: keng_http_respond_file borrows its ctype. */
static const char *mime_literal(const char *m)
{
    if (m && strcmp(m, "image/png") == 0) return "image/png";
    if (m && strcmp(m, "image/jpeg") == 0) return "image/jpeg";
    return "application/octet-stream";
}

static int media_insert(keng_call *c, const upload_job *j, int *created)
{
    sqlite3_stmt *s = keng_store_stmt(
        c->app->store, "INSERT OR IGNORE INTO media(id, sha256, mime, size, width, height,"
                       " thumb_size, created_at, created_by) VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6,"
                       " ?7, ?8)");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, j->sha, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, mime_literal(j->info.mime), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)j->len);
    sqlite3_bind_int(s, 4, j->info.width);
    sqlite3_bind_int(s, 5, j->info.height);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)j->thumb_size);
    sqlite3_bind_int64(s, 7, (sqlite3_int64)time(NULL));
    sqlite3_bind_text(s, 8, c->who.name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *created = sqlite3_changes(keng_store_db(c->app->store)) > 0;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : keng_store_errno(rc);
}

static void respond_thumb_error(keng_call *c, int rc, const keng_thumb_info *info)
{
    const char *why = keng_thumb_strerror(rc);
    switch (rc) {
    case -EMEDIUMTYPE:
        keng_http_respond_error(c->req, 415, "unsupported_media_type", "%s", why);
        break;
    case -EBADMSG:
        keng_http_respond_error(c->req, 422, "undecodable_image", "%s", why);
        break;
    case -EFBIG: /* too large, not broken (DESIGN §8): 413 like the byte limit */
        if (info->width > 0 && info->height > 0)
            keng_http_respond_error(
                c->req, 413, "too_large",
                "the photo is %d x %d pixels, more than the limit of %u megapixels; send a "
                "smaller copy (a phone's normal camera setting, or \"medium\" size when sharing)",
                info->width, info->height, KENG_THUMB_MAX_PIXELS / 1000000u);
        else
            keng_http_respond_error(c->req, 413, "too_large", "%s", why);
        break;
    case -E2BIG:
        keng_http_respond_error(c->req, 413, "too_large", "%s", why);
        break;
    case -ENOMEM:
        keng_http_add_header(c->req, "Retry-After", "5");
        keng_http_respond_error(c->req, 503, "busy", "%s", why);
        break;
    default:
        keng_http_respond_error(c->req, 500, "internal", "%s", why);
    }
}

static void upload_done(uv_work_t *w, int status)
{
    upload_job *j = w->data;
    keng_call *c = j->c;
    int created = 0, rc;
    if (status) {
        keng_http_respond_error(c->req, 503, "busy", "the photo was not processed; send it again");
    } else if (j->rc && j->thumb_rc) {
        respond_thumb_error(c, j->rc, &j->info);
    } else if (j->rc) {
        keng_warn("media: storing %s (%zu bytes) failed: %s", j->sha, j->len, strerror(-j->rc));
        keng_http_respond_error(c->req, j->rc == -ENOSPC ? 503 : 500, "storage",
                                "the photo could not be stored (%s); tell the administrator",
                                strerror(-j->rc));
    } else if ((rc = media_insert(c, j, &created))) {
        keng_warn("media: recording %s failed: %s", j->sha, strerror(-rc));
        keng_http_respond_error(c->req, 500, "internal", "the photo could not be recorded");
    } else {
        if (created)
            keng_info("media: %s stored %s (%s, %dx%d, %zu bytes)", c->who.name, j->sha,
                      mime_literal(j->info.mime), j->info.width, j->info.height, j->len);
        char url[128];
        snprintf(url, sizeof url, "/v1/media/%s/thumb", j->sha);
        cJSON *out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "id", j->sha);
        cJSON_AddStringToObject(out, "sha256", j->sha);
        cJSON_AddStringToObject(out, "mime", mime_literal(j->info.mime));
        cJSON_AddNumberToObject(out, "width", j->info.width);
        cJSON_AddNumberToObject(out, "height", j->info.height);
        cJSON_AddNumberToObject(out, "size", (double)j->len);
        cJSON_AddStringToObject(out, "thumb_url", url);
        char loc[96];
        snprintf(loc, sizeof loc, "/v1/media/%s", j->sha);
        keng_http_add_header(c->req, "Location", loc);
        keng_http_respond_json(c->req, created ? 201 : 200, out);
    }
    /* c may be gone now (responding ends the request); j is ours. */
    free(j);
}

void keng_api_media_upload(keng_call *c)
{
    if (!image_type_ok(keng_http_req_header(c->req, "content-type"))) {
        respond_bad_type(c);
        return;
    }
    size_t len = 0;
    const char *body = keng_http_req_body(c->req, &len);
    if (!body || len == 0) {
        keng_http_respond_error(c->req, 415, "unsupported_media_type",
                                "the body is empty: send the photo's bytes as the raw body");
        return;
    }
    upload_job *j = calloc(1, sizeof *j);
    if (!j) {
        keng_http_respond_error(c->req, 503, "busy", "out of memory; send the photo again");
        return;
    }
    j->c = c;
    j->body = (const unsigned char *)body;
    j->len = len;
    j->media_dir = c->app->media_dir;
    j->work.data = j;
    int rc = uv_queue_work(c->app->loop, &j->work, upload_work, upload_done);
    if (rc) {
        free(j);
        keng_http_respond_error(c->req, 503, "busy", "the photo could not be queued (%s)",
                                uv_strerror(rc));
    }
}

/* ---- reading ---- */

/* The row's mime, or NULL (answered 404) when the id is not a stored photo. */
static const char *media_lookup(keng_call *c, const char *id)
{
    if (keng_media_valid_id(id)) {
        sqlite3_stmt *s = keng_store_stmt(c->app->store, "SELECT mime FROM media WHERE id = ?");
        if (s) {
            sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
            const char *mime = NULL;
            if (sqlite3_step(s) == SQLITE_ROW) mime = mime_literal(keng_store_text(s, 0));
            sqlite3_reset(s);
            if (mime) return mime;
        }
    }
    keng_http_respond_error(c->req, 404, "not_found", "no such photo: %.80s", id);
    return NULL;
}

static void serve(keng_call *c, const char *id, const char *suffix, const char *ctype,
                  const char *cache)
{
    char path[PATH_MAX], etag[80];
    if (keng_media_path(c->app->media_dir, id, suffix, path, sizeof path)) {
        keng_http_respond_error(c->req, 404, "not_found", "no such photo: %.80s", id);
        return;
    }
    /* Distinct tags: the thumbnail and the original are different bytes. */
    snprintf(etag, sizeof etag, "%s%s", id, suffix ? "-thumb" : "");
    /* Never let a browser guess a type for bytes a stranger uploaded. */
    keng_http_add_header(c->req, "X-Content-Type-Options", "nosniff");
    keng_http_respond_file(c->req, path, ctype, etag, cache);
}

void keng_api_media_get(keng_call *c)
{
    const char *id = c->m.params[0];
    const char *mime = media_lookup(c, id);
    if (mime) serve(c, id, NULL, mime, PRIVATE_CACHE);
}

void keng_api_media_thumb(keng_call *c)
{
    const char *id = c->m.params[0];
    if (media_lookup(c, id)) serve(c, id, KENG_MEDIA_THUMB_SUFFIX, "image/jpeg", PRIVATE_CACHE);
}

enum exposure { EXPOSE_NONE, EXPOSE_GONE, EXPOSE_SHOW };

/* Whether one alert lets its photos be public. A lost elder's face is withdrawn once they are
 * found (resolved) or the alert lapsed; a cancelled alert withdraws its photos whatever its kind;
 * other closed alerts stay on record. Drafts were never public. */
static enum exposure alert_exposure(const char *kind, const char *status)
{
    int elder = strcmp(kind, "lost_elder") == 0;
    if (strcmp(status, "published") == 0) return EXPOSE_SHOW;
    if (strcmp(status, "cancelled") == 0) return EXPOSE_GONE;
    if (strcmp(status, "resolved") == 0 || strcmp(status, "expired") == 0)
        return elder ? EXPOSE_GONE : EXPOSE_SHOW;
    return EXPOSE_NONE;
}

/* The most public use of a photo across every alert that has it. */
static int media_exposure(keng_app *app, const char *id, enum exposure *out)
{
    sqlite3_stmt *s =
        keng_store_stmt(app->store, "SELECT a.kind, a.status FROM alert_media am"
                                    " JOIN alerts a ON a.id = am.alert_id WHERE am.media_id = ?");
    if (!s) return -EIO;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    enum exposure best = EXPOSE_NONE;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        enum exposure e = alert_exposure(keng_store_text(s, 0), keng_store_text(s, 1));
        if (e > best) best = e;
        if (best == EXPOSE_SHOW) break;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return keng_store_errno(rc);
    *out = best;
    return 0;
}

void keng_api_public_thumb(keng_call *c)
{
    const char *file = c->m.params[0];
    char id[KENG_MEDIA_ID_LEN + 1];
    size_t n = file ? strlen(file) : 0;
    enum exposure e = EXPOSE_NONE;
    int rc = 0;
    if (n == KENG_MEDIA_ID_LEN + 4 && strcmp(file + KENG_MEDIA_ID_LEN, ".jpg") == 0) {
        memcpy(id, file, KENG_MEDIA_ID_LEN);
        id[KENG_MEDIA_ID_LEN] = '\0';
        if (keng_media_valid_id(id)) rc = media_exposure(c->app, id, &e);
    }
    if (rc) {
        keng_http_respond_error(c->req, 500, "internal", "the photo could not be looked up");
    } else if (e == EXPOSE_SHOW) {
        serve(c, id, KENG_MEDIA_THUMB_SUFFIX, "image/jpeg", PUBLIC_THUMB_CACHE);
    } else if (e == EXPOSE_GONE) {
        keng_http_add_header(c->req, "Cache-Control", PUBLIC_THUMB_CACHE);
        keng_http_respond_error(c->req, 410, "gone",
                                "this photo was withdrawn: the alert was closed or cancelled");
    } else {
        /* Not cached: a draft's photo becomes public the moment the alert is published. */
        keng_http_add_header(c->req, "Cache-Control", "no-store");
        keng_http_respond_error(c->req, 404, "not_found", "no such photo");
    }
}
