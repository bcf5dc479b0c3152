/* What residents receive, checked where it leaves keng: the e-mail's Message-ID (a valid msg-id
 * for every idempotency key, the same at each attempt), the labelled link at the end of a
 * resolution for a household and for a group leader, and Telegram captions of emoji and
 * Vietnamese cut to 1,024 UTF-16 units with the link kept — all through the fan-out engine and
 * the fake peers (tests/fakes). */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "test_fanout_util.h"

#include "keng/alert_view.h"
#include "keng/channel.h"
#include "keng/groups.h"
#include "keng/norm.h"
#include "keng/template.h"

static const char *PHOTOS = "[\"http://keng.test/t/m1.jpg\"]";

/* ---- e-mail Message-ID ---- */

/* RFC 5322 §3.2.3 atext. */
static int atext(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* dot-atom-text = 1*atext *("." 1*atext), over s[0..n). */
static int dot_atom_text(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.') return 0;
        } else if (!atext((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* RFC 5322 §3.6.4 msg-id in its modern form: "<" dot-atom-text "@" dot-atom-text ">". */
static int msg_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 5 || id[0] != '<' || id[n - 1] != '>') return 0;
    const char *at = memchr(id, '@', n);
    if (!at || memchr(at + 1, '@', (size_t)(id + n - at - 1))) return 0;
    return dot_atom_text(id + 1, (size_t)(at - id - 1)) &&
           dot_atom_text(at + 1, (size_t)(id + n - 1 - at - 1));
}

TEST(fanout_msgs_msg_id_checker)
{
    /* The checker the next test relies on tells valid ids from those it must catch. */
    ASSERT(msg_id_ok("<al-1.1.hh-2-071.email@keng>"));
    ASSERT(msg_id_ok("<a=3Ab@keng.test>"));
    ASSERT(!msg_id_ok("<al-1.1.group:to-7.email@keng>"));
    ASSERT(!msg_id_ok("<a..b@keng>"));
    ASSERT(!msg_id_ok("<.a@keng>"));
    ASSERT(!msg_id_ok("<a.@keng>"));
    ASSERT(!msg_id_ok("<a b@keng>"));
    ASSERT(!msg_id_ok("<a@b@keng>"));
    ASSERT(!msg_id_ok("a@keng"));
}

/* The Message-ID the SMTP sink logged for the n-th message to rcpt (0-based), or NULL. */
static char *sink_message_id(const char *log, const char *rcpt, int nth)
{
    for (int i = 0, seen = 0; i < fo_lines(log); i++) {
        cJSON *j = fo_line_json(log, i);
        const char *to =
            cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "rcpt"), 0));
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "message_id"));
        char *out = to && id && !strcmp(to, rcpt) && seen++ == nth ? strdup(id) : NULL;
        cJSON_Delete(j);
        if (out) return out;
    }
    return NULL;
}

/* A group chat's key holds "group:ID" and a member id may hold dots at its end or side by side
 * ("hh..9."): each e-mail still gets a valid msg-id, a different one per delivery, and the same
 * one when the delivery goes out again (at-least-once: here the engine stopped after the SMTP
 * server took the message and before the row said so), so the receiving side can drop it. */
TEST(fanout_msgs_email_message_id_is_valid_and_stable)
{
    fo_env e;
    fo_env_init(&e);
    int port = fo_peer(&e, "smtp_sink", NULL, NULL);
    const char *alert = "al-20261126-0007";
    int64_t m = fo_message(&e, alert, "alert", "email", "r", "Tìm cụ bà Nguyễn Thị Tám", NULL,
                           "Tìm người đi lạc", NULL);
    int64_t mg = fo_message(&e, alert, "alert", "email", "", "Tìm cụ bà Nguyễn Thị Tám", NULL,
                            "Tìm người đi lạc", NULL);
    static const struct {
        const char *recipient, *address;
        int group;
    } to[] = {
        {"group:to-lien-gia-07", "to7@ward.test", 1},
        {"hh-2-071", "binh@ward.test", 0},
        {"hh..9.", "dots@ward.test", 0},
        /* A valid member id whose key, every dot encoded, is too long to read: a digest. */
        {"x...............................................................", "long@ward.test", 0},
    };
    enum { N = sizeof to / sizeof to[0] };
    int64_t ids[N];
    for (int i = 1; i < N; i++)
        ASSERT(keng_groups_valid_id(to[i].recipient));
    for (int i = 0; i < N; i++) {
        char addr[128];
        snprintf(addr, sizeof addr, "{\"type\":\"email\",\"address\":\"%s\"}", to[i].address);
        ids[i] = fo_delivery(&e, alert, to[i].recipient, "email", addr, to[i].group ? mg : m,
                             to[i].group ? "" : "r");
    }
    keng_fanout_config c = base_cfg(&e);
    char url[64];
    snprintf(url, sizeof url, "smtp://127.0.0.1:%d", port);
    c.smtp_url = url;
    c.smtp_from = "keng@ward.test";
    ASSERT(fo_run_engine(&e, &c, NULL, NULL, 8000, NULL));
    for (int i = 0; i < N; i++)
        ASSERT_STR_EQ(fo_get(&e, ids[i]).status, "delivered");
    /* The second attempt of every delivery. */
    char sql[160];
    for (int i = 0; i < N; i++) {
        snprintf(sql, sizeof sql,
                 "UPDATE delivery_state SET status = 'pending', next_at = 0 WHERE id = %lld",
                 (long long)ids[i]);
        ASSERT_EQ(keng_store_exec(e.st, sql), 0);
    }
    ASSERT(fo_run_engine(&e, &c, NULL, NULL, 8000, NULL));
    char *log = fo_slurp(e.logs[0]);
    ASSERT_EQ(fo_lines(log), 2 * N);
    char *first[N];
    for (int i = 0; i < N; i++) {
        first[i] = sink_message_id(log, to[i].address, 0);
        char *again = sink_message_id(log, to[i].address, 1);
        ASSERT_NOT_NULL(first[i]);
        ASSERT_NOT_NULL(again);
        if (!msg_id_ok(first[i]))
            TEST_FAIL("%s: Message-ID %s is not a valid msg-id", to[i].recipient, first[i]);
        ASSERT_STR_EQ(again, first[i]);
        for (int k = 0; k < i; k++)
            ASSERT(strcmp(first[k], first[i]) != 0);
        free(again);
    }
    /* An ordinary key reads as itself in a mail log. */
    ASSERT_STR_EQ(first[1], "<al-20261126-0007.1.hh-2-071.email@keng>");
    ASSERT(strstr(first[0], "to-lien-gia-07") != NULL);
    ASSERT_EQ(strncmp(first[3], "<sha256-", 8), 0);
    for (int i = 0; i < N; i++)
        free(first[i]);
    free(log);
    fo_env_done(&e);
}

/* ---- a resolution's last lines ---- */

/* A resolution of a lost-elder alert as publish renders it, for one link kind ("r", "l", ""). */
static char *resolution_text(keng_tplset *s, const char *link_kind)
{
    cJSON *view = cJSON_Parse(
        "{\"id\":\"A1\",\"kind\":\"lost_elder\",\"status\":\"resolved\",\"revision\":3,"
        "\"person_name\":\"Nguyễn Thị Tám\",\"age\":78,\"contact_phone\":\"+84905123456\","
        "\"resolution\":\"Cụ đã được tìm thấy an toàn.\",\"photos\":[]}");
    ASSERT_NOT_NULL(view);
    keng_tpl_ctx ctx = {.event = "resolve",
                        .lang = "vi",
                        .ward_name = "Công an phường Hòa Cường Bắc",
                        .ward_phone = "0236 3621 113",
                        .public_url = "http://keng.test",
                        .tz_offset_min = KENG_TZ_VN_MIN,
                        .link_kind = link_kind};
    cJSON *d = keng_alert_tpl_data(view, &ctx);
    keng_buf out;
    keng_buf_init(&out, 0);
    ASSERT_EQ(keng_tplset_render(s, "lost_elder", "resolve", "vi", NULL, d, &out), 0);
    cJSON_Delete(d);
    cJSON_Delete(view);
    return keng_buf_steal(&out);
}

static const char *line_text(const char *log, const char *recipient, cJSON **hold)
{
    for (int i = 0; i < fo_lines(log); i++) {
        cJSON *j = fo_line_json(log, i);
        const char *r = cJSON_GetStringValue(cJSON_GetObjectItem(j, "recipient"));
        if (r && !strcmp(r, recipient)) {
            *hold = j;
            return cJSON_GetStringValue(cJSON_GetObjectItem(j, "text"));
        }
        cJSON_Delete(j);
    }
    TEST_FAIL("no message to %s", recipient);
}

/* "Found safe" as a household, a group leader and a group chat read it (file channel, and
 * Telegram through keng_channel_text_fit): the link is on a labelled line above the footer, not
 * bare at the end; the leader is told there is nothing to pass on and gets no relay call. */
TEST(fanout_msgs_resolution_link_is_labelled)
{
    fo_env e;
    fo_env_init(&e);
    int tg = fo_peer(&e, "telegram", "--token", "123:abc");
    keng_tplset *s;
    char err[256];
    ASSERT_EQ(keng_tplset_load("templates", &s, err, sizeof err), 0);
    char *hh = resolution_text(s, "r"), *lead = resolution_text(s, "l"),
         *chat = resolution_text(s, "");
    keng_tplset_free(s);
    ASSERT_STR_CONTAINS(hh, KENG_LINK_PLACEHOLDER);
    ASSERT_STR_CONTAINS(lead, KENG_LINK_PLACEHOLDER);
    ASSERT(!strstr(chat, KENG_LINK_PLACEHOLDER));
    ASSERT(!strstr(chat, "Tình trạng thông báo"));
    int64_t mh = fo_message(&e, "A1", "resolve", "file", "r", hh, NULL, NULL, NULL);
    int64_t ml = fo_message(&e, "A1", "resolve", "file", "l", lead, NULL, NULL, NULL);
    int64_t mt = fo_message(&e, "A1", "resolve", "telegram", "r", hh, PHOTOS, NULL, NULL);
    fo_delivery(&e, "A1", "hh-1", "file", "{\"type\":\"file\"}", mh, "r");
    fo_delivery(&e, "A1", "hh-lead", "file", "{\"type\":\"file\"}", ml, "l");
    int64_t dt = fo_delivery(&e, "A1", "hh-2", "telegram",
                             "{\"type\":\"telegram\",\"chat_id\":\"-100777\"}", mt, "r");
    keng_fanout_config c = base_cfg(&e);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", tg);
    c.telegram_base_url = base;
    c.telegram_bot_token = "123:abc";
    ASSERT(fo_run_engine(&e, &c, NULL, NULL, 5000, NULL));
    ASSERT_STR_EQ(fo_get(&e, dt).status, "delivered");

    char path[160];
    snprintf(path, sizeof path, "%s/deliveries.jsonl", e.dir);
    char *log = fo_slurp(path);
    ASSERT_NOT_NULL(log);
    cJSON *j;
    const char *t = line_text(log, "hh-1", &j);
    ASSERT_STR_CONTAINS(t, "\n🔗 Tình trạng thông báo: http://keng.test/r/A1-hh-1\n—\n");
    ASSERT(!strstr(t, "\n\nhttp://"));
    ASSERT(!strstr(t, "Báo tin hoặc bấm")); /* no call to reply to an ended alert */
    cJSON_Delete(j);
    t = line_text(log, "hh-lead", &j);
    ASSERT_STR_CONTAINS(t, "không cần chuyển tiếp");
    ASSERT_STR_CONTAINS(t, "\n🔗 Tình trạng thông báo: http://keng.test/l/A1-hh-lead\n—\n");
    ASSERT(!strstr(t, "chuyển tiếp tới các hộ"));
    ASSERT(!strstr(t, "\n\nhttp://"));
    cJSON_Delete(j);
    free(log);

    /* Telegram: a resolution goes without the photo (sendMessage), with the same line. */
    log = fo_slurp(e.logs[0]);
    ASSERT_EQ(fo_lines(log), 1);
    j = fo_line_json(log, 0);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(j, "path")), "/bot123:abc/sendMessage");
    t = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "body"), "text"));
    ASSERT_STR_CONTAINS(t, "\n🔗 Tình trạng thông báo: http://keng.test/r/A1-hh-2\n—\n");
    ASSERT(!strstr(t, "\n\nhttp://"));
    cJSON_Delete(j);
    free(log);
    free(hh);
    free(lead);
    free(chat);
    fo_env_done(&e);
}

/* ---- Telegram captions of emoji and Vietnamese ---- */

#define CAPTION_MAX 1024

/* Telegram's length: UTF-16 code units, two for a code point above U+FFFF (a 4-byte sequence). */
static size_t u16_units(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80) n += *p >= 0xF0 ? 2 : 1;
    return n;
}

static size_t code_points(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += (*p & 0xC0) != 0x80;
    return n;
}

/* A message's last lines as templates write them: the link on a labelled line, the footer. */
#define TAIL_BEFORE "\n👉 Báo tin: "
#define TAIL_AFTER "\n—\nCông an phường Hòa Cường Bắc · Trực ban: 0236 3621 113"

/* body + tail with the recipient's link in place (what a caption is before any cut). */
static char *with_link(const char *body, const char *link)
{
    keng_buf b;
    keng_buf_init(&b, 0);
    ASSERT_EQ(keng_buf_printf(&b, "%s" TAIL_BEFORE "%s" TAIL_AFTER, body, link), 0);
    return keng_buf_steal(&b);
}

static char *message_text(const char *body)
{
    return with_link(body, KENG_LINK_PLACEHOLDER);
}

typedef struct caption_case {
    const char *name, *chat;
    keng_buf body;
    char link[64];
    int64_t delivery;
} caption_case;

TEST(fanout_msgs_telegram_emoji_caption_fits_in_utf16_units)
{
    fo_env e;
    fo_env_init(&e);
    int port = fo_peer(&e, "telegram", "--token", "123:abc");
    /* One line of an alert, full of what Telegram counts twice: 🔴 👵 🏻 🙏 are above
     * U+FFFF; ℹ️ (U+2139 U+FE0F) and the Vietnamese letters are one unit each. */
    static const char SEG[] = "🔴👵🏻🙏 Tìm cụ bà Tám, ℹ️ áo bà ba nâu. ";
    caption_case cs[4] = {
        {.name = "over only in UTF-16", .chat = "-1001"},
        {.name = "exactly 1024 units", .chat = "-1002"},
        {.name = "1025 units", .chat = "-1003"},
        {.name = "an emoji across the limit", .chat = "-1004"},
    };
    for (int i = 0; i < 4; i++) {
        keng_buf_init(&cs[i].body, 0);
        snprintf(cs[i].link, sizeof cs[i].link, "http://keng.test/r/A%d-hh-%d", i + 1, i + 1);
    }
    /* 0: fewer than 1024 code points but more than 1024 UTF-16 units: a cut that counted code
     * points would send it whole, and Telegram would refuse it. */
    char *full;
    for (;;) {
        ASSERT_EQ(keng_buf_puts(&cs[0].body, SEG), 0);
        full = with_link(cs[0].body.data, cs[0].link);
        size_t cp = code_points(full) + code_points(SEG);
        free(full);
        if (cp > CAPTION_MAX) break;
    }
    full = with_link(cs[0].body.data, cs[0].link);
    ASSERT_LE(code_points(full), CAPTION_MAX);
    ASSERT_GT(u16_units(full), CAPTION_MAX);
    free(full);
    /* 1 and 2: filled with "ạ" to exactly 1024 units, then one more. */
    for (int k = 0; k < 20; k++)
        ASSERT_EQ(keng_buf_puts(&cs[1].body, SEG), 0);
    for (;;) {
        full = with_link(cs[1].body.data, cs[1].link);
        size_t u = u16_units(full);
        free(full);
        if (u == CAPTION_MAX) break;
        ASSERT_LT(u, CAPTION_MAX);
        ASSERT_EQ(keng_buf_puts(&cs[1].body, "ạ"), 0);
    }
    ASSERT_EQ(keng_buf_puts(&cs[2].body, cs[1].body.data), 0);
    ASSERT_EQ(keng_buf_puts(&cs[2].body, "ạ"), 0);
    /* 3: emoji only, so the room left at the cut is too small for the next one. */
    for (int k = 0; k < 600; k++)
        ASSERT_EQ(keng_buf_puts(&cs[3].body, "🙏"), 0);

    for (int i = 0; i < 4; i++) {
        char alert[16], rec[16];
        snprintf(alert, sizeof alert, "A%d", i + 1);
        snprintf(rec, sizeof rec, "hh-%d", i + 1);
        char *text = message_text(cs[i].body.data);
        int64_t m = fo_message(&e, alert, "alert", "telegram", "r", text, PHOTOS, NULL, NULL);
        free(text);
        char addr[96];
        snprintf(addr, sizeof addr, "{\"type\":\"telegram\",\"chat_id\":\"%s\"}", cs[i].chat);
        cs[i].delivery = fo_delivery(&e, alert, rec, "telegram", addr, m, "r");
    }
    keng_fanout_config c = base_cfg(&e);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    c.telegram_base_url = base;
    c.telegram_bot_token = "123:abc";
    ASSERT(fo_run_engine(&e, &c, NULL, NULL, 5000, NULL));

    char *log = fo_slurp(e.logs[0]);
    ASSERT_EQ(fo_lines(log), 4);
    for (int i = 0; i < 4; i++) {
        fo_row r = fo_get(&e, cs[i].delivery);
        if (strcmp(r.status, "delivered") != 0)
            TEST_FAIL("%s: %s %d %s", cs[i].name, r.status, r.last_code, r.last_error);
        const char *cap = NULL, *photo = NULL, *path = NULL;
        cJSON *hold = NULL;
        for (int l = 0; l < 4 && !cap; l++) {
            cJSON *j = fo_line_json(log, l);
            cJSON *body = cJSON_GetObjectItem(j, "body");
            const char *chat = cJSON_GetStringValue(cJSON_GetObjectItem(body, "chat_id"));
            if (chat && !strcmp(chat, cs[i].chat)) {
                hold = j;
                path = cJSON_GetStringValue(cJSON_GetObjectItem(j, "path"));
                photo = cJSON_GetStringValue(cJSON_GetObjectItem(body, "photo"));
                cap = cJSON_GetStringValue(cJSON_GetObjectItem(body, "caption"));
            } else {
                cJSON_Delete(j);
            }
        }
        ASSERT_NOT_NULL(cap);
        ASSERT_STR_EQ(path, "/bot123:abc/sendPhoto");
        ASSERT_STR_EQ(photo, "http://keng.test/t/m1.jpg");
        ASSERT(keng_utf8_valid(cap, strlen(cap)));
        size_t units = u16_units(cap);
        if (units > CAPTION_MAX) TEST_FAIL("%s: %zu UTF-16 units", cs[i].name, units);
        full = with_link(cs[i].body.data, cs[i].link);
        if (i == 1) {
            ASSERT_STR_EQ(cap, full); /* fits to the unit: nothing cut */
        } else {
            /* Cut: the words (the text without its link), on a character boundary, then "…"
             * and what ends the message, whole: the link's line and the footer. */
            char end[256];
            snprintf(end, sizeof end, "…\n\n%s%s" TAIL_AFTER, TAIL_BEFORE + 1, cs[i].link);
            size_t cl = strlen(cap), el = strlen(end);
            ASSERT_GT(cl, el);
            if (strcmp(cap + cl - el, end) != 0)
                TEST_FAIL("%s: the caption does not end with its link: …%s", cs[i].name,
                          cap + (cl > 80 ? cl - 80 : 0));
            char *bare = with_link(cs[i].body.data, "");
            ASSERT_LE(cl - el, strlen(bare));
            ASSERT_EQ(memcmp(cap, bare, cl - el), 0);
            free(bare);
            /* The room is used: at most the one unit an emoji could not take is left over. */
            ASSERT_GE(units, CAPTION_MAX - 1);
        }
        free(full);
        cJSON_Delete(hold);
    }
    free(log);
    for (int i = 0; i < 4; i++)
        keng_buf_free(&cs[i].body);
    fo_env_done(&e);
}
