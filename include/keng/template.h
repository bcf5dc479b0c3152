/* template: a small Mustache renderer over cJSON, the set of message templates under templates/,
 * and UTF-8 length rules for channels with a size limit.
 *
 * A keng_tpl is compiled once into an op list and is immutable afterwards: any number of threads
 * may render the same compiled template at once (all render state lives on the caller's stack).
 * A keng_tplset owns every template, partial and sample it loaded; it is immutable after load,
 * so a reload builds a new set and swaps the pointer. Nothing here touches the event loop; the
 * functions are plain CPU work callable from any thread.
 *
 * Mustache support: {{name}} (HTML-escaped unless KENG_TPL_PLAIN), {{{raw}}}, {{& raw}},
 * sections, inverted sections, comments, partials (standalone indentation as the spec says),
 * set delimiters, dotted names, {{.}}. Lambdas, inheritance and dynamic names are not supported.
 * Falsey: missing, null, false, [] and "" (so an optional field that is empty hides its line). */
#ifndef KENG_TEMPLATE_H
#define KENG_TEMPLATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "keng/buf.h"

#define KENG_TPL_MAX_SECTION_DEPTH 64    /* nesting of sections within one template */
#define KENG_TPL_MAX_PARTIAL_DEPTH 16    /* partials rendering partials */
#define KENG_TPL_MAX_OUTPUT (4u << 20)   /* bytes one render may produce, whatever the buf cap */
#define KENG_TPL_MAX_SOURCE (256u << 10) /* bytes of one template file */

typedef struct keng_tpl keng_tpl;

/* Compiles src (len bytes, need not be NUL-terminated). On error returns -EINVAL (or -ENOMEM,
 * -E2BIG) and writes "line N: reason" to err. *out is owned by the caller (keng_tpl_free). */
__attribute__((warn_unused_result)) int keng_tpl_compile(const char *src, size_t len,
                                                         keng_tpl **out, char *err, size_t errlen);
void keng_tpl_free(keng_tpl *t);

/* Returns the compiled partial called name, or NULL (a missing partial renders as empty). */
typedef const keng_tpl *(*keng_tpl_partial_fn)(void *ud, const char *name);

/* Render flags. */
#define KENG_TPL_PLAIN 1u /* plain-text output: {{x}} is not HTML-escaped (messages) */

/* Appends the rendering to out. Returns 0, -E2BIG (out's cap or KENG_TPL_MAX_OUTPUT reached),
 * -ELOOP (partials nested deeper than KENG_TPL_MAX_PARTIAL_DEPTH) or -ENOMEM. On error out may
 * hold a partial rendering after what it held before. partials may be NULL. */
__attribute__((warn_unused_result)) int keng_tpl_render(const keng_tpl *t, const cJSON *data,
                                                        keng_tpl_partial_fn partials, void *ud,
                                                        keng_buf *out);
__attribute__((warn_unused_result)) int keng_tpl_render_ex(const keng_tpl *t, const cJSON *data,
                                                           keng_tpl_partial_fn partials, void *ud,
                                                           unsigned flags, keng_buf *out);

/* Compiles src and every partial in partials_obj (an object name → template source; may be
 * NULL), renders with HTML escaping, frees them. Compile errors go to err ("partial 'x': line
 * N: reason" for a partial). */
__attribute__((warn_unused_result)) int keng_tpl_render_string(const char *src, const cJSON *data,
                                                               const cJSON *partials_obj,
                                                               keng_buf *out, char *err,
                                                               size_t errlen);

/* Renders the template file at path for `keng render`: partials come from the directory
 * "partials" beside the file's own directory (templates/msg/x.mustache → templates/partials/),
 * plain text unless the file ends in ".html.mustache". err names the file and line. */
__attribute__((warn_unused_result)) int
keng_tpl_render_path(const char *path, const cJSON *data, keng_buf *out, char *err, size_t errlen);

/* Calls fn for every partial name the template refers to (with the tag's line). Stops and
 * returns fn's value when it is non-zero. */
int keng_tpl_each_partial(const keng_tpl *t, int (*fn)(void *ud, const char *name, int line),
                          void *ud);

/* UTF-8 helpers. Invalid bytes count as one code point each and are never split. */
size_t keng_tpl_utf8_len(const char *s, size_t len);
/* If b holds more than max_cp code points, cuts it at a code-point boundary (dropping trailing
 * whitespace) and appends "…" so that the result is exactly max_cp code points or fewer.
 * Returns 1 if it cut, 0 if b already fitted, or a negative errno. max_cp must be >= 1. */
int keng_tpl_utf8_truncate(keng_buf *b, size_t max_cp);
/* Code-point limit of a channel's text (telegram 1024, zalo_oa 2000, sms 160), 0 if none. */
size_t keng_tpl_channel_limit(const char *channel);

/* ---- The template set: templates/ as a whole (layout in templates/README.md). ---- */

typedef struct keng_tplset keng_tplset;

/* Loads and compiles every template under dir (NULL means "templates"), checks that each
 * kind × event × lang default and e-mail HTML exists, that every partial reference resolves,
 * and renders each message template with the kind's sample data. Returns 0 or
 * -EINVAL/-ENOENT/-ENOMEM with err naming the file and line. */
__attribute__((warn_unused_result)) int keng_tplset_load(const char *dir, keng_tplset **out,
                                                         char *err, size_t errlen);
void keng_tplset_free(keng_tplset *s);

/* Renders the message for kind ("lost_elder", "lost_elder_found", "suspicious_vehicle",
 * "scam_pattern", "other") × event × lang (NULL or unknown → "vi") × channel (may be NULL).
 * Looks up the channel variant, then the default; lang falls back to vi. Plain text (no HTML
 * escaping). The result is cut to the channel's code-point limit (keng_tpl_channel_limit;
 * telegram allows 4096 instead of 1024 when data has no truthy "has_photos", since it then goes
 * out as a message, not a photo caption). -ENOENT if no template. */
__attribute__((warn_unused_result)) int keng_tplset_render(const keng_tplset *s,
                                                           const char *name_kind, const char *event,
                                                           const char *lang, const char *channel,
                                                           const cJSON *data, keng_buf *out);

/* Renders the HTML part of an e-mail, msg/<kind>.<event>.<lang>.email.html, with HTML escaping.
 * The language is the one keng_tplset_render picks for the e-mail's text (lang when it has a
 * text of its own, else vi), so the two parts of an e-mail always agree. -ENOENT when that
 * language has no e-mail HTML (vi and en always have one: the load requires them). */
__attribute__((warn_unused_result)) int keng_tplset_render_html(const keng_tplset *s,
                                                                const char *name_kind,
                                                                const char *event,
                                                                const char *lang,
                                                                const cJSON *data, keng_buf *out);

/* Renders a page such as "web/reply.html" (".mustache" optional) with HTML escaping. -ENOENT
 * if the set has no such file. */
__attribute__((warn_unused_result)) int keng_tplset_render_file(const keng_tplset *s,
                                                                const char *relpath,
                                                                const cJSON *data, keng_buf *out);

/* A keng_tpl_partial_fn over the set's partials/ (ud is the const keng_tplset *), for callers
 * that render a template of their own (keng render) with the ward's partials. */
const keng_tpl *keng_tplset_partial(void *ud, const char *name);

/* The sample data object loaded for kind (templates/samples/<kind>.json), or NULL. Owned by
 * the set. */
const cJSON *keng_tplset_sample(const keng_tplset *s, const char *kind);

#endif
