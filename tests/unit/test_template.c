/* Tests for the template module: the official Mustache spec (core modules), our own renderer
 * rules, UTF-8 truncation, and the shipped templates/ set. */
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "keng/template.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    keng_buf b;
    keng_buf_init(&b, 0);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        ASSERT_EQ(keng_buf_append(&b, chunk, n), 0);
    fclose(f);
    return keng_buf_steal(&b);
}

/* Runs every test of one spec file; prints each failure with expected and actual output. */
static void run_spec(const char *file)
{
    char path[256];
    snprintf(path, sizeof path, "../shared/mustache-spec/%s.json", file);
    char *text = slurp(path);
    if (!text) TEST_FAIL("cannot read %s (tests run from the repo root)", path);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    ASSERT_NOT_NULL(doc);
    int failed = 0, total = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(doc, "tests"))
    {
        const char *name = cJSON_GetObjectItem(t, "name")->valuestring;
        const char *tpl = cJSON_GetObjectItem(t, "template")->valuestring;
        const char *want = cJSON_GetObjectItem(t, "expected")->valuestring;
        keng_buf out;
        keng_buf_init(&out, 1 << 20);
        char err[200];
        int rc = keng_tpl_render_string(tpl, cJSON_GetObjectItem(t, "data"),
                                        cJSON_GetObjectItem(t, "partials"), &out, err, sizeof err);
        const char *got = out.data ? out.data : "";
        total++;
        if (rc || strcmp(got, want) != 0) {
            failed++;
            fprintf(stderr,
                    "  %s: \"%s\" failed (rc %d %s)\n    template: [%s]\n"
                    "    expected: [%s]\n    got:      [%s]\n",
                    file, name, rc, err, tpl, want, got);
        }
        keng_buf_free(&out);
    }
    cJSON_Delete(doc);
    printf("  spec %s: %d/%d passed\n", file, total - failed, total);
    ASSERT_GT(total, 0);
    ASSERT_EQ(failed, 0);
}

/* Optional modules ~lambdas, ~inheritance and ~dynamic-names are skipped on purpose: lambdas
 * carry code for other languages, and the other two are extensions keng's templates do not
 * use. */
TEST(template_spec_comments)
{
    run_spec("comments");
}
TEST(template_spec_delimiters)
{
    run_spec("delimiters");
}
TEST(template_spec_interpolation)
{
    run_spec("interpolation");
}
TEST(template_spec_inverted)
{
    run_spec("inverted");
}
TEST(template_spec_partials)
{
    run_spec("partials");
}
TEST(template_spec_sections)
{
    run_spec("sections");
}

/* Renders src with data given as JSON text; returns a malloc'd string (or NULL on error). */
static char *render_json(const char *src, const char *json, int *rc_out)
{
    cJSON *data = json ? cJSON_Parse(json) : NULL;
    if (json) ASSERT_NOT_NULL(data);
    keng_buf out;
    keng_buf_init(&out, 0);
    char err[200];
    int rc = keng_tpl_render_string(src, data, NULL, &out, err, sizeof err);
    cJSON_Delete(data);
    if (rc_out) *rc_out = rc;
    if (rc) {
        keng_buf_free(&out);
        return NULL;
    }
    return keng_buf_steal(&out);
}

static void check(const char *src, const char *json, const char *want)
{
    int rc;
    char *got = render_json(src, json, &rc);
    ASSERT_EQ(rc, 0);
    ASSERT_STR_EQ(got, want);
    free(got);
}

TEST(template_escaping)
{
    check("{{x}}|{{{x}}}|{{&x}}", "{\"x\":\"<a href=\\\"q\\\">&</a>\"}",
          "&lt;a href=&quot;q&quot;&gt;&amp;&lt;/a&gt;|<a href=\"q\">&</a>|<a href=\"q\">&</a>");
    /* Plain mode (messages): no escaping of {{x}}. */
    keng_tpl *t;
    ASSERT_EQ(keng_tpl_compile("{{x}}", 5, &t, NULL, 0), 0);
    cJSON *d = cJSON_Parse("{\"x\":\"Tom & Jerry <3\"}");
    keng_buf out;
    keng_buf_init(&out, 0);
    ASSERT_EQ(keng_tpl_render_ex(t, d, NULL, NULL, KENG_TPL_PLAIN, &out), 0);
    ASSERT_STR_EQ(out.data, "Tom & Jerry <3");
    keng_buf_free(&out);
    cJSON_Delete(d);
    keng_tpl_free(t);
}

TEST(template_sections_lists_and_missing)
{
    check("{{#phones}}- {{.}}\n{{/phones}}", "{\"phones\":[\"0905 111 222\",\"0912 333 444\"]}",
          "- 0905 111 222\n- 0912 333 444\n");
    check("{{#people}}{{name}} ({{age}}){{^last}}, {{/last}}{{/people}}",
          "{\"people\":[{\"name\":\"A\",\"age\":78},{\"name\":\"B\",\"age\":80,\"last\":true}]}",
          "A (78), B (80)");
    check("[{{missing}}][{{a.b.c}}][{{#nope}}x{{/nope}}][{{^nope}}y{{/nope}}]", "{}", "[][][][y]");
    /* Empty strings are falsey, so an optional line disappears. */
    check("{{#note}}Ghi chú: {{note}}\n{{/note}}end", "{\"note\":\"\"}", "end");
    check("{{#note}}Ghi chú: {{note}}\n{{/note}}end", "{\"note\":\"x\"}", "Ghi chú: x\nend");
    /* Numbers: integers without ".0", doubles in shortest form. */
    check("{{a}} {{b}} {{c}} {{d}} {{e}}", "{\"a\":78,\"b\":1.5,\"c\":-0.25,\"d\":1e20,\"e\":0.1}",
          "78 1.5 -0.25 1e+20 0.1");
    check("{{t}} {{f}} {{n}}", "{\"t\":true,\"f\":false,\"n\":null}", "true false ");
    check("no data {{x}}", NULL, "no data ");
}

TEST(template_utf8_byte_exact)
{
    const char *vi = "Cụ bà Nguyễn Thị Tám, 78 tuổi, mặc áo bà ba màu nâu — đi lạc ở chợ Hàn 🙏";
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "s", vi);
    keng_buf out;
    keng_buf_init(&out, 0);
    char err[100];
    ASSERT_EQ(
        keng_tpl_render_string("«{{s}}» {{{s}}} Tìm người thân", d, NULL, &out, err, sizeof err),
        0);
    keng_buf want;
    keng_buf_init(&want, 0);
    ASSERT_EQ(keng_buf_printf(&want, "«%s» %s Tìm người thân", vi, vi), 0);
    ASSERT_EQ(out.len, want.len);
    ASSERT_EQ(memcmp(out.data, want.data, want.len), 0);
    keng_buf_free(&out);
    keng_buf_free(&want);
    cJSON_Delete(d);
}

static void compile_err(const char *src, const char *want_sub)
{
    keng_tpl *t = (keng_tpl *)1;
    char err[200] = "";
    ASSERT_EQ(keng_tpl_compile(src, strlen(src), &t, err, sizeof err), -EINVAL);
    ASSERT_NULL(t);
    ASSERT_STR_CONTAINS(err, want_sub);
}

TEST(template_compile_errors)
{
    compile_err("a\n{{#x}}\nb", "line 2: section 'x' is never closed");
    compile_err("{{#a.b}}\n\n{{/a.c}}", "line 3: closing tag 'a.c' does not match section 'a.b' "
                                        "opened on line 1");
    compile_err("x\n\n{{/x}}", "line 3: closing tag 'x' without an open section");
    compile_err("{{=<% =}}", "line 1: bad set-delimiter");
    compile_err("{{=a b c=}}", "bad set-delimiter");
    compile_err("ok\n{{x", "line 2: tag '{{' is never closed");
    compile_err("{{{x}}", "never closed");
    compile_err("{{}}", "empty tag name");
    compile_err("{{a..b}}", "bad dotted name");
    compile_err("{{a b}}", "space in tag name");
}

TEST(template_depth_limits)
{
    /* 64 nested sections compile; 65 do not. */
    keng_buf src;
    keng_buf_init(&src, 0);
    for (int i = 0; i < 64; i++)
        ASSERT_EQ(keng_buf_printf(&src, "{{#s%d}}", i), 0);
    for (int i = 63; i >= 0; i--)
        ASSERT_EQ(keng_buf_printf(&src, "{{/s%d}}", i), 0);
    keng_tpl *t;
    ASSERT_EQ(keng_tpl_compile(src.data, src.len, &t, NULL, 0), 0);
    keng_tpl_free(t);
    keng_buf_reset(&src);
    for (int i = 0; i < 65; i++)
        ASSERT_EQ(keng_buf_printf(&src, "{{#s%d}}", i), 0);
    for (int i = 64; i >= 0; i--)
        ASSERT_EQ(keng_buf_printf(&src, "{{/s%d}}", i), 0);
    char err[200];
    ASSERT_EQ(keng_tpl_compile(src.data, src.len, &t, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "nested deeper than 64");
    keng_buf_free(&src);

    /* A partial that includes itself forever stops with -ELOOP. */
    cJSON *partials = cJSON_Parse("{\"p\":\"x{{>p}}\"}");
    keng_buf out;
    keng_buf_init(&out, 0);
    ASSERT_EQ(keng_tpl_render_string("{{>p}}", NULL, partials, &out, err, sizeof err), -ELOOP);
    keng_buf_free(&out);
    cJSON_Delete(partials);

    /* Exponential partials hit the output cap, not the memory of the machine. */
    partials = cJSON_Parse("{\"p\":\"{{>q}}{{>q}}{{>q}}{{>q}}\",\"q\":\"{{>r}}{{>r}}{{>r}}{{>r}}\","
                           "\"r\":\"{{>s}}{{>s}}{{>s}}{{>s}}\",\"s\":\"{{>u}}{{>u}}{{>u}}{{>u}}\","
                           "\"u\":\"{{>v}}{{>v}}{{>v}}{{>v}}\",\"v\":\"{{>w}}{{>w}}{{>w}}{{>w}}\","
                           "\"w\":\"{{>z}}{{>z}}{{>z}}{{>z}}\",\"z\":\"0123456789012345678901234567"
                           "8901234567890123456789012345678901234567890123456789012345678901234"
                           "56789012345678901234567890123456789\"}");
    keng_buf_init(&out, 0);
    ASSERT_EQ(
        keng_tpl_render_string("{{>p}}{{>p}}{{>p}}{{>p}}", NULL, partials, &out, err, sizeof err),
        -E2BIG);
    ASSERT_LE(out.len, KENG_TPL_MAX_OUTPUT);
    keng_buf_free(&out);
    /* And the buf's own cap applies first. */
    keng_buf_init(&out, 1000);
    ASSERT_EQ(keng_tpl_render_string("{{>z}}{{>z}}{{>z}}{{>z}}{{>z}}{{>z}}{{>z}}{{>z}}{{>z}}", NULL,
                                     partials, &out, err, sizeof err),
              -E2BIG);
    ASSERT_LE(out.len, 1000);
    keng_buf_free(&out);
    cJSON_Delete(partials);
}

TEST(template_partial_indentation_nests)
{
    /* A standalone partial at column 0 inside an indented partial inherits the indentation;
     * an inline one does not indent its lines. */
    cJSON *partials = cJSON_Parse("{\"outer\":\"a\\n{{>inner}}\\nb{{>inline}}\\n\","
                                  "\"inner\":\"1\\n2\\n\",\"inline\":\"x\\ny\"}");
    keng_buf out;
    keng_buf_init(&out, 0);
    char err[100];
    ASSERT_EQ(keng_tpl_render_string("  {{>outer}}\nend", NULL, partials, &out, err, sizeof err),
              0);
    ASSERT_STR_EQ(out.data, "  a\n  1\n  2\n  bx\ny\nend");
    keng_buf_free(&out);
    cJSON_Delete(partials);
}

TEST(template_render_many_times)
{
    const char *src = "{{#items}}<{{.}}>{{/items}}";
    keng_tpl *t;
    ASSERT_EQ(keng_tpl_compile(src, strlen(src), &t, NULL, 0), 0);
    cJSON *a = cJSON_Parse("{\"items\":[1,2]}"), *b = cJSON_Parse("{\"items\":[\"x\"]}");
    for (int i = 0; i < 3; i++) {
        keng_buf out;
        keng_buf_init(&out, 0);
        ASSERT_EQ(keng_tpl_render(t, i % 2 ? b : a, NULL, NULL, &out), 0);
        ASSERT_STR_EQ(out.data, i % 2 ? "<x>" : "<1><2>");
        keng_buf_free(&out);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    keng_tpl_free(t);
}

TEST(template_utf8_truncate)
{
    keng_buf b;
    keng_buf_init(&b, 0);
    ASSERT_EQ(keng_buf_puts(&b, "Tám"), 0);
    ASSERT_EQ(keng_tpl_utf8_len(b.data, b.len), 3);
    ASSERT_EQ(keng_tpl_utf8_truncate(&b, 3), 0);
    ASSERT_STR_EQ(b.data, "Tám");
    ASSERT_EQ(keng_tpl_utf8_truncate(&b, 2), 1);
    ASSERT_STR_EQ(b.data, "T…");
    keng_buf_reset(&b);
    /* "ệ" is 3 bytes, never split; the result is exactly the limit in code points. */
    ASSERT_EQ(keng_buf_puts(&b, "Nguyễn Thị Tám đi lạc"), 0);
    ASSERT_EQ(keng_tpl_utf8_truncate(&b, 6), 1);
    ASSERT_STR_EQ(b.data, "Nguyễ…");
    ASSERT_EQ(keng_tpl_utf8_len(b.data, b.len), 6);
    keng_buf_reset(&b);
    /* Trailing spaces before the cut go. */
    ASSERT_EQ(keng_buf_puts(&b, "ab   cdef"), 0);
    ASSERT_EQ(keng_tpl_utf8_truncate(&b, 5), 1);
    ASSERT_STR_EQ(b.data, "ab…");
    keng_buf_reset(&b);
    /* Invalid bytes count one each and do not swallow their neighbours. */
    ASSERT_EQ(keng_buf_append(&b,
                              "a\xe1\x80"
                              "bc\xff",
                              6),
              0);
    ASSERT_EQ(keng_tpl_utf8_len(b.data, b.len), 6);
    ASSERT_EQ(keng_tpl_utf8_truncate(&b, 1), 1);
    ASSERT_STR_EQ(b.data, "…");
    keng_buf_free(&b);
    /* 4-byte emoji. */
    keng_buf_init(&b, 0);
    ASSERT_EQ(keng_buf_puts(&b, "🙏🙏🙏"), 0);
    ASSERT_EQ(keng_tpl_utf8_len(b.data, b.len), 3);
    ASSERT_EQ(keng_tpl_utf8_truncate(&b, 2), 1);
    ASSERT_STR_EQ(b.data, "🙏…");
    keng_buf_free(&b);
    ASSERT_EQ(keng_tpl_channel_limit("telegram"), 1024);
    ASSERT_EQ(keng_tpl_channel_limit("zalo_oa"), 2000);
    ASSERT_EQ(keng_tpl_channel_limit("sms"), 160);
    ASSERT_EQ(keng_tpl_channel_limit("webhook"), 0);
    ASSERT_EQ(keng_tpl_channel_limit(NULL), 0);
}

/* ---- the shipped template set ---- */

static keng_tplset *load_set(void)
{
    keng_tplset *s;
    char err[512] = "";
    int rc = keng_tplset_load("templates", &s, err, sizeof err);
    if (rc) TEST_FAIL("keng_tplset_load: %d %s", rc, err);
    return s;
}

static char *render_msg(keng_tplset *s, const char *kind, const char *event, const char *lang,
                        const char *channel)
{
    cJSON *d = cJSON_Duplicate(keng_tplset_sample(s, kind), 1);
    ASSERT_NOT_NULL(d);
    cJSON_AddStringToObject(d, "event", event);
    keng_buf out;
    keng_buf_init(&out, 0);
    int rc = keng_tplset_render(s, kind, event, lang, channel, d, &out);
    cJSON_Delete(d);
    if (rc) TEST_FAIL("render %s.%s.%s.%s: %d", kind, event, lang, channel ? channel : "", rc);
    return keng_buf_steal(&out);
}

TEST(template_set_loads_and_renders_everything)
{
    keng_tplset *s = load_set();
    static const char *kinds[] = {"lost_elder", "lost_elder_found", "suspicious_vehicle",
                                  "scam_pattern", "other"};
    static const char *events[] = {"alert", "update", "resolve", "cancel"};
    static const char *langs[] = {"vi", "en"};
    static const char *channels[] = {NULL, "telegram", "zalo_oa", "email", "sms", "webhook"};
    for (size_t k = 0; k < 5; k++)
        for (size_t e = 0; e < 4; e++)
            for (size_t l = 0; l < 2; l++)
                for (size_t c = 0; c < 6; c++) {
                    char *m = render_msg(s, kinds[k], events[e], langs[l], channels[c]);
                    size_t cps = keng_tpl_utf8_len(m, strlen(m));
                    size_t lim = keng_tpl_channel_limit(channels[c]);
                    const cJSON *hp =
                        cJSON_GetObjectItem(keng_tplset_sample(s, kinds[k]), "has_photos");
                    if (lim == 1024 && !cJSON_IsTrue(hp)) lim = 4096;
                    if (lim) ASSERT_LE(cps, lim);
                    /* With the samples nothing is cut, so the reply link always survives. */
                    if (lim && e < 2 && !strstr(m, "/r/"))
                        TEST_FAIL("%s.%s.%s.%s lost its link: %s", kinds[k], events[e], langs[l],
                                  channels[c], m);
                    ASSERT_GT(cps, 10);
                    /* No unrendered tags, no escaped entities in plain text. */
                    ASSERT(!strstr(m, "{{") && !strstr(m, "&amp;") && !strstr(m, "&quot;"));
                    /* SMS variants should fit without being cut. */
                    if (channels[c] && strcmp(channels[c], "sms") == 0 && strstr(m, "…"))
                        TEST_FAIL("sms %s.%s.%s was cut: %s", kinds[k], events[e], langs[l], m);
                    free(m);
                }
    keng_tplset_free(s);
}

TEST(template_set_wording)
{
    keng_tplset *s = load_set();
    char *m = render_msg(s, "lost_elder", "alert", "vi", NULL);
    ASSERT_STR_CONTAINS(m, "Nguyễn Thị Tám");
    ASSERT_STR_CONTAINS(m, "78 tuổi");
    ASSERT_STR_CONTAINS(m, "TÌM NGƯỜI ĐI LẠC");
    ASSERT_STR_CONTAINS(m, "/r/");
    free(m);
    m = render_msg(s, "lost_elder", "alert", "en", NULL);
    ASSERT_STR_CONTAINS(m, "MISSING PERSON");
    free(m);
    /* An unknown language falls back to Vietnamese. */
    m = render_msg(s, "lost_elder", "alert", "fr", NULL);
    ASSERT_STR_CONTAINS(m, "TÌM NGƯỜI ĐI LẠC");
    free(m);
    m = render_msg(s, "suspicious_vehicle", "alert", "vi", NULL);
    ASSERT_STR_CONTAINS(m, "29-B1 123.45");
    free(m);
    m = render_msg(s, "scam_pattern", "alert", "vi", NULL);
    ASSERT_STR_CONTAINS(m, "0889 123 456");
    free(m);
    m = render_msg(s, "lost_elder", "resolve", "vi", NULL);
    ASSERT_STR_CONTAINS(m, "an toàn");
    free(m);
    /* The SMS variant differs from the default and is short. */
    m = render_msg(s, "lost_elder", "alert", "vi", "sms");
    ASSERT_LE(keng_tpl_utf8_len(m, strlen(m)), 160);
    free(m);
    keng_buf out;
    keng_buf_init(&out, 0);
    ASSERT_EQ(
        keng_tplset_render(s, "nope", "alert", "vi", NULL, keng_tplset_sample(s, "other"), &out),
        -ENOENT);
    keng_buf_free(&out);
    keng_tplset_free(s);
}

TEST(template_set_leader_relay_and_note)
{
    keng_tplset *s = load_set();
    cJSON *d = cJSON_Duplicate(keng_tplset_sample(s, "lost_elder"), 1);
    cJSON_DeleteItemFromObject(d, "reply_url");
    cJSON_AddStringToObject(d, "relay_url", "http://x/l/LEADERTOKEN");
    keng_buf out;
    keng_buf_init(&out, 0);
    ASSERT_EQ(keng_tplset_render(s, "lost_elder", "alert", "vi", "zalo_oa", d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "chuyển tiếp tới các hộ trong tổ: http://x/l/LEADERTOKEN");
    ASSERT(!strstr(out.data, "/r/"));
    ASSERT(!strstr(out.data, "📝"));
    /* A household gets the leader's note on top. */
    cJSON_DeleteItemFromObject(d, "relay_url");
    cJSON_AddStringToObject(d, "reply_url", "http://x/r/HH");
    cJSON_AddStringToObject(d, "leader_note", "Nhà ai gần chợ để ý giúp");
    cJSON_AddStringToObject(d, "relayed_by", "Tổ trưởng Trần Văn Bình");
    keng_buf_reset(&out);
    ASSERT_EQ(keng_tplset_render(s, "lost_elder", "alert", "vi", NULL, d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "\n📝 Tổ trưởng Trần Văn Bình nhắn: “Nhà ai gần chợ để ý giúp”\n");
    ASSERT_STR_CONTAINS(out.data, "http://x/r/HH");
    /* No blank line where the optional parts are absent. */
    ASSERT(!strstr(out.data, "\n\n\n"));
    keng_buf_free(&out);
    cJSON_Delete(d);
    keng_tplset_free(s);
}

TEST(template_set_long_text_is_cut_for_telegram)
{
    keng_tplset *s = load_set();
    cJSON *d = cJSON_Duplicate(keng_tplset_sample(s, "other"), 1);
    cJSON *alert = cJSON_GetObjectItem(d, "alert");
    keng_buf body;
    keng_buf_init(&body, 0);
    for (int i = 0; i < 400; i++)
        ASSERT_EQ(keng_buf_puts(&body, "Đường "), 0);
    cJSON_ReplaceItemInObject(alert, "body", cJSON_CreateString(body.data));
    keng_buf_free(&body);
    keng_buf out;
    keng_buf_init(&out, 0);
    cJSON_ReplaceItemInObject(d, "has_photos", cJSON_CreateTrue());
    ASSERT_EQ(keng_buf_puts(&out, "prefix:"), 0);
    ASSERT_EQ(keng_tplset_render(s, "other", "alert", "vi", "telegram", d, &out), 0);
    ASSERT_EQ(strncmp(out.data, "prefix:", 7), 0);
    ASSERT_EQ(keng_tpl_utf8_len(out.data + 7, out.len - 7), 1024);
    ASSERT_STR_CONTAINS(out.data + out.len - 3, "…");
    keng_buf_reset(&out);
    ASSERT_EQ(keng_tplset_render(s, "other", "alert", "vi", "email", d, &out), 0);
    ASSERT_GT(keng_tpl_utf8_len(out.data, out.len), 2400);
    ASSERT(!strstr(out.data, "…"));
    /* Without a photo Telegram sends a message, which may hold 4096. */
    keng_buf_reset(&out);
    cJSON_ReplaceItemInObject(d, "has_photos", cJSON_CreateFalse());
    ASSERT_EQ(keng_tplset_render(s, "other", "alert", "vi", "telegram", d, &out), 0);
    ASSERT_GT(keng_tpl_utf8_len(out.data, out.len), 2400);
    ASSERT(!strstr(out.data, "…"));
    keng_buf_reset(&out);
    ASSERT_EQ(keng_tplset_render(s, "other", "alert", "vi", "sms", d, &out), 0);
    ASSERT_LE(keng_tpl_utf8_len(out.data, out.len), 160);
    keng_buf_free(&out);
    cJSON_Delete(d);
    keng_tplset_free(s);
}

TEST(template_set_web_pages)
{
    keng_tplset *s = load_set();
    cJSON *d = cJSON_Duplicate(keng_tplset_sample(s, "lost_elder"), 1);
    cJSON_AddStringToObject(d, "text", "Cụ bà <Tám> & cháu");
    cJSON_AddStringToObject(d, "reply_post_url", "/r/TOKEN123/replies");
    keng_buf out;
    keng_buf_init(&out, 0);
    ASSERT_EQ(keng_tplset_render_file(s, "web/reply.html", d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "<form");
    ASSERT_STR_CONTAINS(out.data, "action=\"/r/TOKEN123/replies\"");
    ASSERT_STR_CONTAINS(out.data, "Tôi có thông tin");
    ASSERT_STR_CONTAINS(out.data, "Không thấy gì");
    ASSERT_STR_CONTAINS(out.data, "Cụ bà &lt;Tám&gt; &amp; cháu");
    ASSERT(!strstr(out.data, "{{"));
    keng_buf_reset(&out);
    cJSON_AddStringToObject(d, "relay_post_url", "/l/TOK/relay");
    cJSON_AddNumberToObject(d, "household_count", 42);
    ASSERT_EQ(keng_tplset_render_file(s, "web/relay.html.mustache", d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "Chuyển tiếp tới 42 hộ");
    ASSERT_STR_CONTAINS(out.data, "action=\"/l/TOK/relay\"");
    ASSERT(!strstr(out.data, "Đã chuyển tiếp lúc"));
    keng_buf_reset(&out);
    cJSON_AddStringToObject(d, "relayed_at_local", "07:42 26/11/2026");
    ASSERT_EQ(keng_tplset_render_file(s, "web/relay.html", d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "Đã chuyển tiếp lúc 07:42 26/11/2026");
    keng_buf_free(&out);
    keng_buf_init(&out, 0);
    ASSERT_EQ(keng_tplset_render_file(s, "web/nope.html", d, &out), -ENOENT);
    keng_buf_free(&out);
    cJSON_Delete(d);
    keng_tplset_free(s);
}

/* keng render: one file, the partials beside it, plain for messages, escaped for pages. */
TEST(template_render_path)
{
    cJSON *d = cJSON_Parse("{\"alert\":{\"title\":\"A & B\",\"body\":\"x\"},"
                           "\"ward\":{\"name\":\"W\",\"phone\":\"1\"}}");
    keng_buf out;
    keng_buf_init(&out, 0);
    char err[300];
    ASSERT_EQ(
        keng_tpl_render_path("templates/msg/other.alert.vi.mustache", d, &out, err, sizeof err), 0);
    ASSERT_STR_CONTAINS(out.data, "THÔNG BÁO: A & B\n");
    ASSERT_STR_CONTAINS(out.data, "W · Trực ban: 1");
    keng_buf_reset(&out);
    ASSERT_EQ(keng_tpl_render_path("templates/web/relay.html.mustache", d, &out, err, sizeof err),
              0);
    ASSERT_STR_CONTAINS(out.data, "<h1>A &amp; B</h1>");
    keng_buf_reset(&out);
    ASSERT_EQ(keng_tpl_render_path("templates/msg/nope.mustache", d, &out, err, sizeof err),
              -ENOENT);
    ASSERT_STR_CONTAINS(err, "templates/msg/nope.mustache: ");
    keng_buf_free(&out);
    cJSON_Delete(d);
}

struct thread_arg {
    const keng_tplset *s;
    const cJSON *data;
    const char *want;
    int bad;
};

static void *render_loop(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < 200; i++) {
        keng_buf out;
        keng_buf_init(&out, 0);
        if (keng_tplset_render(a->s, "lost_elder", "alert", "vi", "zalo_oa", a->data, &out) ||
            strcmp(out.data, a->want) != 0)
            a->bad++;
        keng_buf_free(&out);
    }
    return NULL;
}

/* One loaded set, rendered from several threads at once, gives the same text every time. */
TEST(template_set_threads_share_one_set)
{
    keng_tplset *s = load_set();
    const cJSON *d = keng_tplset_sample(s, "lost_elder");
    keng_buf want;
    keng_buf_init(&want, 0);
    ASSERT_EQ(keng_tplset_render(s, "lost_elder", "alert", "vi", "zalo_oa", d, &want), 0);
    pthread_t th[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){s, d, want.data, 0};
        ASSERT_EQ(pthread_create(&th[i], NULL, render_loop, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
        ASSERT_EQ(args[i].bad, 0);
    }
    keng_buf_free(&want);
    keng_tplset_free(s);
}

/* Copies templates/ into a temporary directory so that a test can break one file. */
static void copy_set(const char *dst)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r templates %s", dst, dst);
    ASSERT_EQ(system(cmd), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    fputs(text, f);
    fclose(f);
}

TEST(template_set_broken_files_are_reported)
{
    char dir[64], path[128], err[512];
    keng_tplset *s;
    snprintf(dir, sizeof dir, "/tmp/keng-tpl-test-%d", (int)getpid());

    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/other.cancel.en.mustache", dir);
    write_file(path, "Cancelled\n{{#alert}}\n{{title}}\n");
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
    ASSERT_NULL(s);
    ASSERT_STR_CONTAINS(err, "msg/other.cancel.en.mustache: line 2: section 'alert' is never");

    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/other.update.vi.mustache", dir);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "msg/other.update.vi.mustache: missing");

    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/other.alert.vi.zalo_oa.mustache", dir);
    write_file(path, "x\n{{> no_such_partial}}\n");
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "other.alert.vi.zalo_oa.mustache: line 2: partial 'no_such_partial'");

    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/other.alret.vi.mustache", dir);
    write_file(path, "x");
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "unknown event 'alret'");

    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/other.alert.vi.sms.mustache", dir);
    write_file(path, "{{#nothing}}x{{/nothing}}\n");
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "renders to nothing");

    copy_set(dir);
    snprintf(path, sizeof path, "%s/samples/scam_pattern.json", dir);
    write_file(path, "{\n\"alert\": {\n,}");
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "scam_pattern.json: line 3");

    /* A channel variant wins over the default, and the set is self-contained after load. */
    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/other.alert.en.email.mustache", dir);
    write_file(path, "EMAIL {{alert.title}} & {{ward.name}}\n");
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), 0);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    ASSERT_EQ(system(path), 0);
    keng_buf out;
    keng_buf_init(&out, 0);
    cJSON *d = cJSON_Parse("{\"alert\":{\"title\":\"T\"},\"ward\":{\"name\":\"W\"}}");
    ASSERT_EQ(keng_tplset_render(s, "other", "alert", "en", "email", d, &out), 0);
    ASSERT_STR_EQ(out.data, "EMAIL T & W\n");
    keng_buf_reset(&out);
    ASSERT_EQ(keng_tplset_render(s, "other", "alert", "en", "telegram", d, &out), 0);
    ASSERT(strncmp(out.data, "EMAIL", 5) != 0);
    keng_buf_free(&out);
    cJSON_Delete(d);
    keng_tplset_free(s);
}

/* The pages kengd serves must be there at start-up, like the messages: the link page too. */
TEST(template_set_web_pages_are_required)
{
    char dir[64], path[160], err[512];
    keng_tplset *s;
    snprintf(dir, sizeof dir, "/tmp/keng-tpl-web-%d", (int)getpid());
    static const char *const pages[] = {"link", "reply", "relay"};
    for (int i = 0; i < 3; i++) {
        copy_set(dir);
        snprintf(path, sizeof path, "%s/web/%s.html.mustache", dir, pages[i]);
        ASSERT_EQ(unlink(path), 0);
        ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
        ASSERT_NULL(s);
        snprintf(path, sizeof path, "web/%s.html.mustache: missing", pages[i]);
        ASSERT_STR_CONTAINS(err, path);
    }
    snprintf(path, sizeof path, "rm -rf %s", dir);
    ASSERT_EQ(system(path), 0);

    /* The shipped link page: both languages, the duty phone, per case. */
    ASSERT_EQ(keng_tplset_load("templates", &s, err, sizeof err), 0);
    keng_buf out;
    keng_buf_init(&out, 0);
    cJSON *d = cJSON_Parse("{\"ward\":{\"name\":\"Công an phường X\",\"phone\":\"0236 1\"},"
                           "\"unknown\":true,\"household\":true}");
    ASSERT_EQ(keng_tplset_render_file(s, "web/link.html", d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "Đường dẫn này không còn hiệu lực");
    ASSERT_STR_CONTAINS(out.data, "This link does not work");
    ASSERT_STR_CONTAINS(out.data, "href=\"tel:0236 1\"");
    ASSERT(strncmp(out.data, "<!doctype html>", 15) == 0);
    cJSON_Delete(d);
    keng_buf_reset(&out);
    d = cJSON_Parse("{\"ward\":{\"name\":\"W\",\"phone\":\"1\"},\"ended\":true,\"resolved\":true,"
                    "\"leader\":true}");
    ASSERT_EQ(keng_tplset_render_file(s, "web/link.html", d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "Vụ việc đã được giải quyết");
    ASSERT_STR_CONTAINS(out.data, "không cần chuyển tiếp");
    ASSERT(!strstr(out.data, "Đường dẫn không hợp lệ"));
    cJSON_Delete(d);
    keng_buf_free(&out);
    keng_tplset_free(s);
}

/* ---- e-mail HTML: msg/<kind>.<event>.<lang>.email.html ---- */

TEST(template_set_email_html_is_required_and_checked)
{
    char dir[64], path[160], err[512];
    keng_tplset *s;
    snprintf(dir, sizeof dir, "/tmp/keng-tpl-html-%d", (int)getpid());

    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/scam_pattern.resolve.en.email.html.mustache", dir);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
    ASSERT_NULL(s);
    ASSERT_STR_CONTAINS(err, "msg/scam_pattern.resolve.en.email.html.mustache: missing");

    /* Only e-mail has an HTML part: another five-part name is a typo. */
    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/other.alert.vi.sms.html.mustache", dir);
    write_file(path, "<p>x</p>\n");
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "other.alert.vi.sms.html.mustache: name must be");

    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/other.alert.vi.email.html.mustache", dir);
    write_file(path, "<p>\n{{#alert}}\n</p>\n");
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "other.alert.vi.email.html.mustache: line 2: section 'alert'");

    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/other.update.en.email.html.mustache", dir);
    write_file(path, "x\n{{> email_nope}}\n");
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "other.update.en.email.html.mustache: line 2: partial 'email_nope'");

    /* A language with a text of its own but no e-mail HTML: no HTML (the channel makes one from
     * the text), never the Vietnamese HTML under a French text. */
    copy_set(dir);
    snprintf(path, sizeof path, "%s/msg/other.alert.fr.mustache", dir);
    write_file(path, "Avis: {{alert.title}}\n");
    ASSERT_EQ(keng_tplset_load(dir, &s, err, sizeof err), 0);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    ASSERT_EQ(system(path), 0);
    keng_buf out;
    keng_buf_init(&out, 0);
    const cJSON *d = keng_tplset_sample(s, "other");
    ASSERT_EQ(keng_tplset_render_html(s, "other", "alert", "fr", d, &out), -ENOENT);
    ASSERT_EQ(keng_tplset_render_html(s, "other", "alert", "de", d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "<html lang=\"vi\">");
    keng_buf_free(&out);
    keng_tplset_free(s);
}

TEST(template_set_email_html_renders)
{
    keng_tplset *s = load_set();
    static const char *kinds[] = {"lost_elder", "lost_elder_found", "suspicious_vehicle",
                                  "scam_pattern", "other"};
    static const char *events[] = {"alert", "update", "resolve", "cancel"};
    static const char *langs[] = {"vi", "en"};
    keng_buf out;
    keng_buf_init(&out, 0);
    for (size_t k = 0; k < 5; k++)
        for (size_t e = 0; e < 4; e++)
            for (size_t l = 0; l < 2; l++) {
                /* As publish renders it: placeholders for the link and the photo. */
                cJSON *d = cJSON_Duplicate(keng_tplset_sample(s, kinds[k]), 1);
                ASSERT_NOT_NULL(d);
                cJSON_ReplaceItemInObject(d, "event", cJSON_CreateString(events[e]));
                cJSON_ReplaceItemInObject(d, "reply_url", cJSON_CreateString("@@KENG_LINK@@"));
                cJSON_AddStringToObject(d, "photo_src", "@@KENG_PHOTO@@");
                keng_buf_reset(&out);
                ASSERT_EQ(keng_tplset_render_html(s, kinds[k], events[e], langs[l], d, &out), 0);
                cJSON_Delete(d);
                const char *h = out.data;
                ASSERT_EQ(strncmp(h, "<!doctype html>\n", 16), 0);
                ASSERT_STR_CONTAINS(h, l ? "<html lang=\"en\">" : "<html lang=\"vi\">");
                ASSERT_STR_CONTAINS(h, "Công an phường Hòa Cường Bắc");
                ASSERT_STR_CONTAINS(h, "0236 3621 113");
                ASSERT_STR_CONTAINS(h, "</body>\n</html>\n");
                ASSERT(!strstr(h, "{{") && !strstr(h, "}}"));
                if (e < 2) {
                    /* The reply link as a button, and the photo shown inline. */
                    ASSERT_STR_CONTAINS(h, "<a href=\"@@KENG_LINK@@\"");
                    ASSERT_STR_CONTAINS(h, "<img src=\"@@KENG_PHOTO@@\"");
                } else {
                    /* A resolution or a cancellation shows nobody's face any more. */
                    ASSERT(!strstr(h, "<img") && !strstr(h, "@@KENG_PHOTO@@"));
                }
            }
    /* Values are HTML-escaped; the wording is the ward's. */
    cJSON *d = cJSON_Duplicate(keng_tplset_sample(s, "lost_elder"), 1);
    cJSON *a = cJSON_GetObjectItem(d, "alert");
    cJSON_ReplaceItemInObject(a, "person_name", cJSON_CreateString("Bà \"Tám\" & <cháu>"));
    keng_buf_reset(&out);
    ASSERT_EQ(keng_tplset_render_html(s, "lost_elder", "alert", "vi", d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "<b>Bà &quot;Tám&quot; &amp; &lt;cháu&gt;</b>");
    ASSERT_STR_CONTAINS(out.data, "nhờ bà con để ý, giúp tìm người đi lạc");
    ASSERT_STR_CONTAINS(out.data, "Báo tin hoặc bấm “Không thấy gì”");
    keng_buf_reset(&out);
    ASSERT_EQ(keng_tplset_render_html(s, "lost_elder", "resolve", "vi", d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "xin đừng chia sẻ tiếp ảnh và thông tin cá nhân của cụ");
    cJSON_Delete(d);
    keng_buf_free(&out);
    keng_tplset_free(s);
}

/* ---- what residents read, over the data kengd makes (keng_alert_tpl_data) ---- */

#include "keng/alert_view.h"

/* Template data for a view, as publish makes it. */
static cJSON *tpl_data(const char *view_json, const char *event, const char *lang,
                       const char *link_kind)
{
    cJSON *view = cJSON_Parse(view_json);
    ASSERT_NOT_NULL(view);
    keng_tpl_ctx ctx = {.event = event,
                        .lang = lang,
                        .ward_name = "Công an phường Hòa Cường Bắc",
                        .ward_phone = "0236 3621 113",
                        .public_url = "http://keng.test",
                        .tz_offset_min = 420,
                        .link_kind = link_kind};
    cJSON *d = keng_alert_tpl_data(view, &ctx);
    cJSON_Delete(view);
    ASSERT_NOT_NULL(d);
    return d;
}

static const char ELDER_VIEW[] =
    "{\"id\":\"al-1\",\"kind\":\"lost_elder\",\"status\":\"published\",\"revision\":1,"
    "\"person_name\":\"Nguyễn Thị Tám\",\"age\":78,\"last_seen_at\":\"2026-11-26T06:15:00+07:00\","
    "\"last_seen_place\":\"kiệt 45 Núi Thành\",\"contact_phone\":\"+84905123456\",\"photos\":[]}";
static const char FOUND_VIEW[] =
    "{\"id\":\"al-2\",\"kind\":\"lost_elder\",\"direction\":\"found\",\"status\":\"published\","
    "\"revision\":1,\"found_at\":\"2026-11-26T06:15:00+07:00\",\"found_place\":\"chợ Hòa Cường\","
    "\"description\":\"Cụ ông, áo trắng\",\"contact_phone\":\"+842363621114\",\"photos\":[]}";
static const char SCAM_VIEW[] =
    "{\"id\":\"al-3\",\"kind\":\"scam_pattern\",\"status\":\"published\",\"revision\":1,"
    "\"pattern_type\":\"fake_police\",\"script_summary\":\"Gọi điện xưng công an\","
    "\"phone_numbers\":[\"+84889123456\",\"+842438251234\",\"+12025550100\"],\"photos\":[]}";

/* Numbers are stored E.164 and stay so in the data (the webhook's alert object, lookups); what
 * residents read is the national form they dial. */
TEST(template_phones_reach_residents_in_national_form)
{
    cJSON *d = tpl_data(ELDER_VIEW, "alert", "vi", "r");
    const cJSON *a = cJSON_GetObjectItem(d, "alert");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(a, "contact_phone")), "+84905123456");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(a, "contact_phone_display")),
                  "0905 123 456");
    cJSON_Delete(d);
    d = tpl_data(SCAM_VIEW, "alert", "vi", "r");
    a = cJSON_GetObjectItem(d, "alert");
    const cJSON *raw = cJSON_GetObjectItem(a, "phone_numbers");
    const cJSON *disp = cJSON_GetObjectItem(a, "phone_numbers_display");
    ASSERT_EQ(cJSON_GetArraySize(raw), 3);
    ASSERT_STR_EQ(cJSON_GetArrayItem(raw, 0)->valuestring, "+84889123456");
    ASSERT_EQ(cJSON_GetArraySize(disp), 3);
    ASSERT_STR_EQ(cJSON_GetArrayItem(disp, 0)->valuestring, "0889 123 456");
    ASSERT_STR_EQ(cJSON_GetArrayItem(disp, 1)->valuestring, "024 3825 1234");
    /* Not a Vietnamese number (never stored so, but data can be old): shown as it is. */
    ASSERT_STR_EQ(cJSON_GetArrayItem(disp, 2)->valuestring, "+12025550100");
    cJSON_Delete(d);

    keng_tplset *s = load_set();
    static const struct {
        const char *view, *kind, *want;
    } cases[] = {
        {ELDER_VIEW, "lost_elder", "0905 123 456"},
        {FOUND_VIEW, "lost_elder_found", "0236 3621 114"},
        {SCAM_VIEW, "scam_pattern", "0889 123 456"},
    };
    static const char *channels[] = {NULL, "telegram", "zalo_oa", "email", "sms"};
    static const char *events[] = {"alert", "update"};
    static const char *langs[] = {"vi", "en"};
    keng_buf out;
    keng_buf_init(&out, 0);
    for (size_t c = 0; c < 3; c++)
        for (size_t e = 0; e < 2; e++)
            for (size_t l = 0; l < 2; l++) {
                d = tpl_data(cases[c].view, events[e], langs[l], "r");
                for (size_t ch = 0; ch <= 5; ch++) {
                    keng_buf_reset(&out);
                    if (ch == 5)
                        ASSERT_EQ(
                            keng_tplset_render_html(s, cases[c].kind, events[e], langs[l], d, &out),
                            0);
                    else
                        ASSERT_EQ(keng_tplset_render(s, cases[c].kind, events[e], langs[l],
                                                     channels[ch], d, &out),
                                  0);
                    const char *m = out.data;
                    if (strstr(m, "+84"))
                        TEST_FAIL("%s.%s.%s.%s shows an E.164 number: %s", cases[c].kind, events[e],
                                  langs[l], ch == 5 ? "email.html" : channels[ch], m);
                    /* SMS variants carry no numbers of their own, the rest do. */
                    if (ch != 4 && !strstr(m, cases[c].want))
                        TEST_FAIL("%s.%s.%s.%s lacks %s: %s", cases[c].kind, events[e], langs[l],
                                  ch == 5 ? "email.html" : channels[ch], cases[c].want, m);
                }
                cJSON_Delete(d);
            }
    /* Hand-written data without the display fields (keng render's samples) still shows the
     * number it has. */
    d = cJSON_Duplicate(keng_tplset_sample(s, "lost_elder"), 1);
    cJSON *a2 = cJSON_GetObjectItem(d, "alert");
    cJSON_DeleteItemFromObject(a2, "contact_phone_display");
    cJSON_ReplaceItemInObject(a2, "contact_phone", cJSON_CreateString("0905 777 888"));
    keng_buf_reset(&out);
    ASSERT_EQ(keng_tplset_render(s, "lost_elder", "alert", "vi", NULL, d, &out), 0);
    ASSERT_STR_CONTAINS(out.data, "gia đình: 0905 777 888 hoặc công an phường");
    cJSON_Delete(d);
    keng_buf_free(&out);
    keng_tplset_free(s);
}

/* A resolution or a cancellation: the personal link is on a labelled line (it opens a page that
 * says the alert has ended), never bare at the end and never a call to reply; a leader is told
 * there is nothing to pass on, with no relay call; a group chat (no link) gets neither. */
TEST(template_closing_messages_label_the_link)
{
    keng_tplset *s = load_set();
    static const char *views[] = {ELDER_VIEW, FOUND_VIEW, SCAM_VIEW};
    static const char *kinds[] = {"lost_elder", "lost_elder_found", "scam_pattern"};
    static const char *events[] = {"resolve", "cancel"};
    static const char *langs[] = {"vi", "en"};
    static const char *channels[] = {NULL, "telegram", "zalo_oa", "email"};
    static const char *label[] = {"🔗 Tình trạng thông báo: " KENG_LINK_PLACEHOLDER "\n",
                                  "🔗 Alert status: " KENG_LINK_PLACEHOLDER "\n"};
    static const char *no_relay[] = {"Tổ trưởng không cần chuyển tiếp tin này",
                                     "Group leader: nothing to pass on"};
    static const char *relay_call[] = {"chuyển tiếp tới các hộ", "pass the alert on"};
    static const char *reply_call[] = {"Báo tin hoặc bấm", "Send a tip"};
    keng_buf out;
    keng_buf_init(&out, 0);
    for (size_t k = 0; k < 3; k++)
        for (size_t e = 0; e < 2; e++)
            for (size_t l = 0; l < 2; l++)
                for (int lk = 0; lk < 3; lk++) {
                    const char *link_kind = lk == 0 ? "r" : lk == 1 ? "l" : "";
                    cJSON *d = tpl_data(views[k], events[e], langs[l], link_kind);
                    cJSON_AddStringToObject(d, "resolution", "Đã xong.");
                    for (size_t c = 0; c < 5; c++) {
                        keng_buf_reset(&out);
                        int html = c == 4;
                        if (html)
                            ASSERT_EQ(
                                keng_tplset_render_html(s, kinds[k], events[e], langs[l], d, &out),
                                0);
                        else
                            ASSERT_EQ(keng_tplset_render(s, kinds[k], events[e], langs[l],
                                                         channels[c], d, &out),
                                      0);
                        const char *m = out.data;
                        const char *at = strstr(m, KENG_LINK_PLACEHOLDER);
                        if (!*link_kind) {
                            ASSERT_NULL(at);
                            ASSERT(!strstr(m, html ? "🔗" : "🔗 "));
                            continue;
                        }
                        if (!at)
                            TEST_FAIL("%s.%s.%s.%s (%s): no link in place: %s", kinds[k], events[e],
                                      langs[l], html ? "email.html" : channels[c], link_kind, m);
                        if (html) {
                            ASSERT_STR_CONTAINS(m, l ? "🔗 Alert status: <a href=\"@@KENG_LINK@@\""
                                                     : "🔗 Tình trạng thông báo: <a "
                                                       "href=\"@@KENG_LINK@@\"");
                        } else {
                            ASSERT_STR_CONTAINS(m, label[l]);
                            /* The footer follows the link: it is not the message's end. */
                            ASSERT_STR_CONTAINS(at, "\n—\n");
                        }
                        ASSERT(!strstr(m, reply_call[l]));
                        ASSERT(!strstr(m, relay_call[l]));
                        if (lk == 1)
                            ASSERT_STR_CONTAINS(m, no_relay[l]);
                        else
                            ASSERT(!strstr(m, no_relay[l]));
                    }
                    cJSON_Delete(d);
                }
    keng_buf_free(&out);
    keng_tplset_free(s);
}
