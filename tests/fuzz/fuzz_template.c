/* fuzz_template: the Mustache compiler and renderer. The input is a template source, then
 * optionally a NUL byte and JSON data to render it with (no NUL: the template renders against
 * an empty object). Every compiled template renders twice (HTML-escaped and plain) with a
 * partial resolver that knows "self" (the template itself, to reach the partial depth limit)
 * and "p" (the data's "p" member compiled as a template); the output then goes through the UTF-8
 * length and truncation helpers. keng_tpl_render_string gets the same source and data. */
#include "keng/buf.h"
#include "keng/log.h"
#include "keng/template.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct parts {
    const keng_tpl *self;
    const keng_tpl *p;
} parts;

static const keng_tpl *partial(void *ud, const char *name)
{
    parts *ps = ud;
    if (!strcmp(name, "self")) return ps->self;
    if (!strcmp(name, "p")) return ps->p;
    return NULL;
}

static int count_partial(void *ud, const char *name, int line)
{
    (void)name;
    (void)line;
    ++*(int *)ud;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    keng_log_set_level(KENG_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) return 0;
    const char *src = (const char *)data;
    const char *nul = memchr(src, '\0', size);
    size_t slen = nul ? (size_t)(nul - src) : size;
    cJSON *json = nul ? cJSON_ParseWithLength(nul + 1, size - slen - 1) : NULL;
    if (!json) json = cJSON_CreateObject();
    if (!json) return 0;

    char err[256] = "";
    keng_tpl *t = NULL, *pt = NULL;
    int crc = keng_tpl_compile(src, slen, &t, err, sizeof err);
    if (crc == 0) {
        const char *psrc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "p"));
        if (psrc && keng_tpl_compile(psrc, strlen(psrc), &pt, err, sizeof err) != 0) pt = NULL;
        parts ps = {t, pt};
        int n = 0;
        (void)keng_tpl_each_partial(t, count_partial, &n);
        keng_buf out;
        keng_buf_init(&out, 256 * 1024);
        for (unsigned flags = 0; flags <= KENG_TPL_PLAIN; flags++) {
            keng_buf_reset(&out);
            int rc = keng_tpl_render_ex(t, json, partial, &ps, flags, &out);
            if (rc && rc != -E2BIG && rc != -ELOOP && rc != -ENOMEM) abort(); /* not documented */
            size_t cp = keng_tpl_utf8_len(out.data ? out.data : "", out.len);
            if (cp > out.len) abort();
            if (out.len && keng_tpl_utf8_truncate(&out, 1 + slen % 200) >= 0 &&
                keng_tpl_utf8_len(out.data, out.len) > 1 + slen % 200)
                abort(); /* truncate promises at most max_cp code points */
        }
        keng_buf_free(&out);
        keng_tpl_free(pt);
        keng_tpl_free(t);
    } else if (crc == -EINVAL && !err[0]) {
        abort(); /* a refused template must say why */
    }

    char *z = malloc(slen + 1);
    if (z) {
        memcpy(z, src, slen);
        z[slen] = '\0';
        keng_buf out;
        keng_buf_init(&out, 256 * 1024);
        (void)keng_tpl_render_string(z, json, cJSON_GetObjectItemCaseSensitive(json, "partials"),
                                     &out, err, sizeof err);
        keng_buf_free(&out);
        free(z);
    }
    cJSON_Delete(json);
    return 0;
}
