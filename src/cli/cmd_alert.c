/* keng alert … — create, read, change and follow alerts. Field flags map to alert members
 * (DESIGN.md §6): --person-name → person_name; any flag not known here becomes a string
 * member of the same name so that fields added to kengd later work without a new client. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char usage_text[] =
    "Cách dùng / usage:\n"
    "  keng alert new KIND [--field value …] [--photo FILE …] [--group ID …]\n"
    "                 [--kind-target K …] [--all] [--publish]\n"
    "  keng alert list [--status S] [--kind K] [--since TIME]\n"
    "  keng alert show ID\n"
    "  keng alert preview ID [--channel C] [--lang vi|en] [--event alert|update|resolve|cancel]\n"
    "  keng alert publish ID\n"
    "  keng alert update ID [--field value …] [--note TEXT]\n"
    "  keng alert resolve ID [--resolution TEXT]\n"
    "  keng alert cancel ID [--reason TEXT]\n"
    "  keng alert watch ID                  tiến độ gửi / live delivery progress\n"
    "  keng alert deliveries ID [--status S] [--limit N] [--offset N]\n"
    "  keng alert redeliver ID              gửi lại lượt lỗi / re-queue failed deliveries\n"
    "\n"
    "Loại / KIND: lost_elder, lost_elder_found, suspicious_vehicle, scam_pattern, other.\n"
    "Trường (tùy chọn = tên trường, '-' thay cho '_') / fields (flag = field with '-' for '_'):\n"
    "  lost_elder:  --person-name --age --last-seen-at --last-seen-place [--sex --description\n"
    "               --medical-notes --contact-phone]; found: --direction found --found-at\n"
    "               --found-place --description [--where-staying]\n"
    "  suspicious_vehicle: --vehicle-type --plate|--description [--make-model --color\n"
    "               --seen-at --seen-place --heading]\n"
    "  scam_pattern: --pattern-type --script-summary [--phone-number … --bank-account …\n"
    "               --url … --advice]\n"
    "  other:       --title --body\n"
    "  chung / common: --title --body --urgency --severity --expires-at --public\n"
    "               --footage-from --footage-to --footage-note --lat --lon --radius-m\n"
    "--urgency immediate|expected|future (mặc định / default: lost_elder immediate, còn lại /\n"
    "  others expected). Tin không khẩn chờ hết giờ yên tĩnh (mặc định 22:00–06:00) mới gửi /\n"
    "  alerts that are not immediate wait for the end of the quiet hours (default 22:00–06:00).\n"
    "Giờ như '2026-11-23 06:15' là giờ Việt Nam (+07:00) / such times are Vietnam time.\n"
    "--photo FILE: tải ảnh JPEG hoặc PNG lên trước / uploads a JPEG or PNG first.\n"
    "--group, --kind-target, --all: chọn người nhận / choose who receives it.\n"
    "update thay các trường được nêu (photos, targets thay cả cụm) / update replaces the members\n"
    "  given (photos, targets as a whole).\n"
    "Ở đây --url là trường urls[] của tin báo; địa chỉ kengd ghi trước lệnh / here --url is the\n"
    "  alert field urls[]; give kengd's address before the command:\n"
    "  keng --url http://… alert new …\n";

enum ftype {
    F_STR,
    F_NUM,
    F_ARR,
    F_BOOL,
    F_FOOTAGE,
    F_AREA,
    F_TARGET_GROUP,
    F_TARGET_KIND,
    F_TARGET_ALL,
    F_PHOTO,
    F_NOTE,
    F_SKIP
};

static const struct field {
    const char *flag;
    const char *field;
    enum ftype type;
} fields[] = {
    {"age", "age", F_NUM},
    {"phone-number", "phone_numbers", F_ARR},
    {"phone-numbers", "phone_numbers", F_ARR},
    {"bank-account", "bank_accounts", F_ARR},
    {"bank-accounts", "bank_accounts", F_ARR},
    {"url", "urls", F_ARR},
    {"urls", "urls", F_ARR},
    {"public", "public", F_BOOL},
    {"footage-from", "from", F_FOOTAGE},
    {"footage-to", "to", F_FOOTAGE},
    {"footage-note", "note", F_FOOTAGE},
    {"lat", "lat", F_AREA},
    {"lon", "lon", F_AREA},
    {"radius-m", "radius_m", F_AREA},
    {"radius", "radius_m", F_AREA},
    {"group", "groups", F_TARGET_GROUP},
    {"groups", "groups", F_TARGET_GROUP},
    {"kind-target", "kinds", F_TARGET_KIND},
    {"target-kind", "kinds", F_TARGET_KIND},
    {"all", "all", F_TARGET_ALL},
    {"photo", "photos", F_PHOTO},
    {"note", "update_note", F_NOTE},
    {"publish", NULL, F_SKIP},
    {"kind", NULL, F_SKIP},
};

static const char *const alert_bools[] = {"all", "publish", "public", NULL};

static char *flag_to_field(const char *flag)
{
    char *s = strdup(flag);
    for (char *p = s; p && *p; p++)
        if (*p == '-') *p = '_';
    return s;
}

static int parse_bool(const char *v, int *out)
{
    if (!v || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1") ||
        !strcasecmp(v, "có") || !strcasecmp(v, "co"))
        *out = 1;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcmp(v, "0") ||
             !strcasecmp(v, "không") || !strcasecmp(v, "khong"))
        *out = 0;
    else
        return -1;
    return 0;
}

static int parse_num(const char *flag, const char *v, double *out)
{
    char *end;
    *out = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end) {
        keng_cli_sayf("cần một con số", "needs a number", "--%s '%s'", flag, v ? v : "");
        return KENG_CLI_USAGE;
    }
    return 0;
}

/* Replaces obj[name] by item. */
static void put(cJSON *obj, const char *name, cJSON *item)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
    cJSON_AddItemToObject(obj, name, item);
}

static cJSON *sub_object(cJSON *obj, const char *name)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsObject(o) ? o : cJSON_AddObjectToObject(obj, name);
}

static cJSON *sub_array(cJSON *obj, const char *name)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsArray(o) ? o : cJSON_AddArrayToObject(obj, name);
}

/* ---- photos ---- */

static const char *image_type(const char *path, const keng_buf *b)
{
    const unsigned char *p = (const unsigned char *)b->data;
    if (b->len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return "image/jpeg";
    if (b->len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return "image/png";
    const char *dot = strrchr(path, '.');
    if (dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"))) return "image/jpeg";
    if (dot && !strcasecmp(dot, ".png")) return "image/png";
    return NULL;
}

/* Uploads one photo; appends its media id to photos. */
static int upload_photo(keng_cli *c, const char *path, cJSON *photos)
{
    keng_buf b;
    keng_buf_init(&b, KENG_CLI_MAX_FILE);
    if (keng_cli_read_file(path, KENG_CLI_MAX_FILE, &b)) {
        keng_buf_free(&b);
        return KENG_CLI_FAIL;
    }
    const char *ct = image_type(path, &b);
    if (!ct) {
        keng_buf_free(&b);
        return keng_cli_fail("không phải ảnh JPEG hay PNG", "not a JPEG or PNG photo", "%s", path);
    }
    keng_cli_reply r;
    int rc = keng_cli_request(c, "POST", "/v1/media", ct, b.data ? b.data : "", b.len, 0, &r);
    keng_buf_free(&b);
    const char *id = keng_cli_str(r.json, "id");
    if (!rc && !*id)
        rc = keng_cli_fail("kengd không trả về mã của ảnh", "kengd returned no id for the photo",
                           "%s", path);
    if (!rc)
        cJSON_AddItemToArray(photos, cJSON_CreateString(id));
    else
        keng_cli_sayf("chưa tải ảnh lên được; chưa tạo tin báo nào",
                      "the photo was not uploaded; nothing was created", "%s", path);
    keng_cli_reply_free(&r);
    return rc;
}

/* Builds the alert object (or PATCH body) from the options. Photos are uploaded here, after
 * every other option was checked, so a typo does not leave orphan uploads behind. */
static int build_doc(keng_cli *c, const keng_cli_args *a, cJSON *doc)
{
    cJSON *photos = NULL;
    for (int i = 0; i < a->nopt; i++) {
        const char *flag = a->opt[i].name, *v = a->opt[i].val;
        const struct field *f = NULL;
        for (size_t k = 0; k < sizeof fields / sizeof fields[0] && !f; k++)
            if (!strcmp(fields[k].flag, flag)) f = &fields[k];
        enum ftype t = f ? f->type : F_STR;
        double d;
        int on, rc;
        switch (t) {
        case F_SKIP:
        case F_PHOTO:
            break;
        case F_STR: {
            char *name = flag_to_field(flag);
            if (!name) return keng_cli_nomem();
            if (!v) {
                keng_cli_sayf("thiếu giá trị", "needs a value", "--%s", flag);
                free(name);
                return KENG_CLI_USAGE;
            }
            put(doc, name, cJSON_CreateString(v));
            free(name);
            break;
        }
        case F_NOTE:
            put(doc, f->field, cJSON_CreateString(v));
            break;
        case F_NUM:
            if ((rc = parse_num(flag, v, &d))) return rc;
            put(doc, f->field, cJSON_CreateNumber(d));
            break;
        case F_ARR:
            cJSON_AddItemToArray(sub_array(doc, f->field), cJSON_CreateString(v));
            break;
        case F_BOOL:
            if (parse_bool(v, &on)) {
                keng_cli_sayf("hãy ghi true hoặc false", "say true or false", "--%s=%s", flag, v);
                return KENG_CLI_USAGE;
            }
            put(doc, f->field, cJSON_CreateBool(on));
            break;
        case F_FOOTAGE:
            put(sub_object(doc, "footage_request"), f->field, cJSON_CreateString(v));
            break;
        case F_AREA:
            if ((rc = parse_num(flag, v, &d))) return rc;
            put(sub_object(doc, "area"), f->field, cJSON_CreateNumber(d));
            break;
        case F_TARGET_GROUP:
        case F_TARGET_KIND:
            cJSON_AddItemToArray(sub_array(sub_object(doc, "targets"), f->field),
                                 cJSON_CreateString(v));
            break;
        case F_TARGET_ALL:
            if (parse_bool(v, &on)) {
                keng_cli_sayf("hãy ghi true hoặc false", "say true or false", "--all=%s", v);
                return KENG_CLI_USAGE;
            }
            put(sub_object(doc, "targets"), "all", cJSON_CreateBool(on));
            break;
        }
    }
    for (int i = 0; i < a->nopt; i++) {
        if (strcmp(a->opt[i].name, "photo")) continue;
        if (!photos) photos = sub_array(doc, "photos");
        int rc = upload_photo(c, a->opt[i].val, photos);
        if (rc) return rc;
    }
    return 0;
}

/* ---- helpers ---- */

static int alert_path(keng_buf *p, const char *id, const char *suffix)
{
    keng_buf_init(p, 4096);
    if (keng_buf_puts(p, "/v1/alerts/") || keng_cli_buf_esc(p, id) ||
        (suffix && keng_buf_puts(p, suffix))) {
        keng_buf_free(p);
        return keng_cli_say("mã tin báo quá dài", "the alert id is too long");
    }
    return 0;
}

/* The line that names an alert in a list: its title, else its kind's key fields. */
void keng_cli_alert_summary(const cJSON *a, char *out, size_t len)
{
    const char *title = keng_cli_str(a, "title"), *kind = keng_cli_str(a, "kind");
    char age[32];
    keng_cli_value_text(cJSON_GetObjectItemCaseSensitive(a, "age"), age, sizeof age);
    if (*title) {
        snprintf(out, len, "%s", title);
    } else if (!strcmp(kind, "lost_elder")) {
        const char *dir = keng_cli_str(a, "direction");
        snprintf(out, len, "%s%s%s%s%s", !strcmp(dir, "found") ? "tìm người nhà / found: " : "",
                 keng_cli_str(a, "person_name"), *age ? " (" : "", age, *age ? ")" : "");
    } else if (!strcmp(kind, "suspicious_vehicle")) {
        const char *plate = keng_cli_str(a, "plate_display");
        if (!*plate) plate = keng_cli_str(a, "plate");
        snprintf(out, len, "%s %s %s", keng_cli_str(a, "vehicle_type"), plate,
                 keng_cli_str(a, "color"));
    } else if (!strcmp(kind, "scam_pattern")) {
        snprintf(out, len, "%s: %s", keng_cli_str(a, "pattern_type"),
                 keng_cli_str(a, "script_summary"));
    } else {
        snprintf(out, len, "%s", keng_cli_str(a, "body"));
    }
}

static const char *status_label(const char *status)
{
    static const struct {
        const char *en, *both;
    } t[] = {{"draft", "nháp / draft"},
             {"published", "đã phát / published"},
             {"resolved", "đã kết thúc / resolved"},
             {"cancelled", "đã huỷ / cancelled"},
             {"expired", "hết hạn / expired"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(t[i].en, status)) return t[i].both;
    return status;
}

/* kengd's times are RFC 3339 in the ward's offset ("2026-12-06T06:00:00+07:00"); an officer reads
 * "06:00 06/12/2026 (+07:00)". Anything else is shown as it came. */
static void local_time_text(const char *iso, char *out, size_t len)
{
    int y, mo, d, h, mi;
    char zone[8] = "";
    if (sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%*2d%7s", &y, &mo, &d, &h, &mi, zone) >= 5)
        snprintf(out, len, "%02d:%02d %02d/%02d/%04d%s%s%s", h, mi, d, mo, y, *zone ? " (" : "",
                 zone, *zone ? ")" : "");
    else
        snprintf(out, len, "%s", iso);
}

/* During quiet hours kengd holds the messages of an alert that is not immediate
 * (fanout.quiet_until): the officer must not think they went. An update with urgency immediate
 * goes at once, so that is the way to reach people now; a resolution or cancellation has none. */
static void print_quiet_hold(const cJSON *view, const cJSON *fanout, const char *event)
{
    const char *until = keng_cli_str(fanout, "quiet_until");
    if (!*until) return;
    char when[64];
    local_time_text(until, when, sizeof when);
    printf("  Giờ yên tĩnh, tin chờ đến / quiet hours, messages wait until: %s\n", when);
    if (!strcmp(event, "publish") || !strcmp(event, "update"))
        printf("  Cần gửi ngay, gửi bản cập nhật khẩn / to send now, send an immediate update:\n"
               "    keng alert update %s --urgency immediate\n",
               keng_cli_str(view, "id"));
}

/* event publish: the publication, which chooses the recipients; an update, resolve or cancel
 * only writes one message to each of those same recipients (kengd counts no groups or
 * recipients for it), so for those the number of messages is what means something. */
static void print_fanout(const char *verb, const cJSON *view, const char *event)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(view, "fanout");
    printf("%s %s (bản / revision %.0f, %s)\n", verb, keng_cli_str(view, "id"),
           keng_cli_num(view, "revision", 0), status_label(keng_cli_str(view, "status")));
    if (!f) return;
    if (strcmp(event, "publish")) {
        double n = keng_cli_num(f, "deliveries", 0);
        if (n > 0)
            printf("  Lượt gửi / deliveries:       %.0f (tới những người đã nhận thông báo / "
                   "to the same recipients as the alert)\n",
                   n);
        else
            printf("  Không có tin nào cần gửi: chưa ai nhận thông báo này / nothing to send: no "
                   "one had received this alert\n");
    } else {
        printf("  Nhóm / groups:               %.0f\n", keng_cli_num(f, "groups", 0));
        printf("  Người nhận / recipients:     %.0f\n", keng_cli_num(f, "recipients", 0));
        printf("  Lượt gửi / deliveries:       %.0f\n", keng_cli_num(f, "deliveries", 0));
        double held = keng_cli_num(f, "held", 0), unreach = keng_cli_num(f, "unreachable", 0);
        if (held) printf("  Chờ tổ trưởng / held for leader relay: %.0f\n", held);
        if (unreach) printf("  Không liên lạc được / unreachable: %.0f\n", unreach);
    }
    print_quiet_hold(view, f, event);
}

/* POSTs body (may be NULL) to /v1/alerts/ID/<event> and prints the fan-out summary. */
static int lifecycle(keng_cli *c, const char *id, const char *event, const cJSON *body,
                     const char *verb)
{
    keng_buf p;
    char suffix[32];
    snprintf(suffix, sizeof suffix, "/%s", event);
    if (alert_path(&p, id, suffix)) return KENG_CLI_FAIL;
    keng_cli_reply r;
    int rc = keng_cli_request_json(c, "POST", p.data, body, &r);
    keng_buf_free(&p);
    if (!rc && c->json)
        keng_cli_print_raw(&r);
    else if (!rc)
        print_fanout(verb, r.json, event);
    keng_cli_reply_free(&r);
    return rc;
}

/* ---- subcommands ---- */

static int cmd_new(keng_cli *c, const keng_cli_args *a)
{
    const char *kind = a->npos ? a->pos[0] : keng_cli_args_get(a, "kind");
    if (!kind || a->npos > 1) {
        if (kind)
            keng_cli_sayf("thừa tham số", "unexpected argument", "'%s'", a->pos[1]);
        else
            keng_cli_say("alert new cần loại tin báo (KIND)", "alert new needs a KIND");
        return keng_cli_usage(usage_text, 0);
    }
    cJSON *doc = cJSON_CreateObject();
    char *k = flag_to_field(kind);
    int rc = 0;
    if (k && !strcmp(k, "lost_elder_found")) {
        cJSON_AddStringToObject(doc, "kind", "lost_elder");
        cJSON_AddStringToObject(doc, "direction", "found");
    } else if (k) {
        cJSON_AddStringToObject(doc, "kind", k);
    } else {
        rc = keng_cli_nomem();
    }
    free(k);
    if (!rc) rc = build_doc(c, a, doc);
    if (rc == KENG_CLI_USAGE) rc = keng_cli_usage(usage_text, 0);
    keng_cli_reply r = {0};
    c->fields_are_flags = 1;
    if (!rc) rc = keng_cli_request_json(c, "POST", "/v1/alerts", doc, &r);
    cJSON_Delete(doc);
    if (rc) {
        keng_cli_reply_free(&r);
        return rc;
    }
    char id[256];
    snprintf(id, sizeof id, "%s", keng_cli_str(r.json, "id"));
    int publish = keng_cli_args_has(a, "publish");
    if (c->json && !publish)
        keng_cli_print_raw(&r);
    else if (!c->json)
        puts(id);
    keng_cli_reply_free(&r);
    if (publish) rc = lifecycle(c, id, "publish", NULL, "Đã phát / published");
    return rc;
}

static int cmd_list(keng_cli *c, const keng_cli_args *a)
{
    static const char *const known[] = {"status", "kind", "since", NULL};
    if (keng_cli_args_check(a, known, 0)) return keng_cli_usage(usage_text, 0);
    keng_buf p;
    keng_buf_init(&p, 4096);
    cJSON *all = NULL;
    int rc = 0;
    if (keng_cli_buf_path_query(&p, "/v1/alerts", a, known))
        rc = keng_cli_say("truy vấn quá dài", "the query is too long");
    if (!rc) rc = keng_cli_get_all(c, p.data, &all);
    keng_buf_free(&p);
    if (rc) return rc;
    if (c->json) {
        keng_cli_print_json(all);
        cJSON_Delete(all);
        return 0;
    }
    static const char *const head[] = {"Mã / ID",   "Loại / Kind",       "Trạng thái / Status",
                                       "Bản / Rev", "Tạo lúc / Created", "Nội dung / Summary"};
    keng_cli_table t;
    keng_cli_table_init(&t, 6, head);
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(all, "items"))
    {
        char rev[16], created[64], sum[512];
        keng_cli_value_text(cJSON_GetObjectItemCaseSensitive(it, "revision"), rev, sizeof rev);
        keng_cli_value_text(cJSON_GetObjectItemCaseSensitive(it, "created_at"), created,
                            sizeof created);
        keng_cli_alert_summary(it, sum, sizeof sum);
        const char *row[] = {keng_cli_str(it, "id"),
                             keng_cli_str(it, "kind"),
                             keng_cli_str(it, "status"),
                             rev,
                             created,
                             sum};
        keng_cli_table_row(&t, row);
    }
    keng_cli_table_print(&t);
    printf("%.0f tin báo / alerts\n", keng_cli_num(all, "total", 0));
    cJSON_Delete(all);
    return 0;
}

static int get_and(keng_cli *c, const char *id, const char *suffix, keng_cli_reply *r)
{
    keng_buf p;
    if (alert_path(&p, id, suffix)) {
        memset(r, 0, sizeof *r);
        return KENG_CLI_FAIL;
    }
    int rc = keng_cli_request(c, "GET", p.data, NULL, NULL, 0, 0, r);
    keng_buf_free(&p);
    return rc;
}

static int cmd_show(keng_cli *c, const keng_cli_args *a)
{
    if (keng_cli_args_check(a, NULL, 1) || a->npos != 1) return keng_cli_usage(usage_text, 0);
    keng_cli_reply r;
    int rc = get_and(c, a->pos[0], NULL, &r);
    if (!rc && c->json) {
        keng_cli_print_raw(&r);
    } else if (!rc) {
        char sum[512];
        keng_cli_alert_summary(r.json, sum, sizeof sum);
        printf("Tin báo / Alert %s — %s\n", keng_cli_str(r.json, "id"), sum);
        static const char *const order[] = {"kind",       "status",       "revision",
                                            "created_at", "published_at", "updated_at"};
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(r.json, order[i]);
            char t[256];
            if (v && !cJSON_IsNull(v))
                printf("  %-18s %s\n", order[i], keng_cli_value_text(v, t, sizeof t));
        }
        static const char *const skip[] = {"id",         "kind",         "status",     "revision",
                                           "created_at", "published_at", "updated_at", NULL};
        keng_cli_print_fields(r.json, skip);
    }
    keng_cli_reply_free(&r);
    return rc;
}

static int cmd_preview(keng_cli *c, const keng_cli_args *a)
{
    static const char *const known[] = {"channel", "lang", "event", NULL};
    if (keng_cli_args_check(a, known, 1) || a->npos != 1) return keng_cli_usage(usage_text, 0);
    keng_buf q;
    keng_buf_init(&q, 1024);
    if (keng_cli_buf_path_query(&q, "/preview", a, known)) {
        keng_buf_free(&q);
        return keng_cli_say("truy vấn quá dài", "the query is too long");
    }
    keng_cli_reply r;
    int rc = get_and(c, a->pos[0], q.data, &r);
    keng_buf_free(&q);
    if (!rc && c->json) {
        keng_cli_print_raw(&r);
    } else if (!rc) {
        const char *text = keng_cli_str(r.json, "text");
        size_t n = strlen(text);
        fputs(text, stdout);
        if (!n || text[n - 1] != '\n') putchar('\n');
    }
    keng_cli_reply_free(&r);
    return rc;
}

static int cmd_update(keng_cli *c, const keng_cli_args *a)
{
    if (a->npos != 1) return keng_cli_usage(usage_text, 0);
    cJSON *doc = cJSON_CreateObject();
    int rc = build_doc(c, a, doc);
    if (rc == KENG_CLI_USAGE) rc = keng_cli_usage(usage_text, 0);
    if (!rc && !doc->child) {
        keng_cli_say("alert update cần ít nhất một trường để sửa",
                     "alert update needs at least one field to change");
        rc = keng_cli_usage(usage_text, 0);
    }
    keng_buf p;
    if (!rc) rc = alert_path(&p, a->pos[0], NULL);
    if (!rc) {
        keng_cli_reply r;
        c->fields_are_flags = 1;
        rc = keng_cli_request_json(c, "PATCH", p.data, doc, &r);
        keng_buf_free(&p);
        if (!rc && c->json)
            keng_cli_print_raw(&r);
        else if (!rc)
            print_fanout("Đã cập nhật / updated", r.json, "update");
        keng_cli_reply_free(&r);
    }
    cJSON_Delete(doc);
    return rc;
}

/* resolve / cancel: one optional text member in the body. */
static int cmd_close(keng_cli *c, const keng_cli_args *a, const char *event, const char *member,
                     const char *verb)
{
    const char *const known[] = {member, NULL};
    if (keng_cli_args_check(a, known, 1) || a->npos != 1) return keng_cli_usage(usage_text, 0);
    cJSON *body = cJSON_CreateObject();
    const char *v = keng_cli_args_get(a, member);
    if (v) cJSON_AddStringToObject(body, member, v);
    int rc = lifecycle(c, a->pos[0], event, body, verb);
    cJSON_Delete(body);
    return rc;
}

static void print_counts(const cJSON *counts)
{
    printf("Đã gửi / delivered %.0f · đang chờ / pending %.0f · đang gửi / inflight %.0f · "
           "lỗi, thử lại / failed %.0f · bỏ / dead %.0f · tổng / total %.0f\n",
           keng_cli_num(counts, "delivered", 0), keng_cli_num(counts, "pending", 0),
           keng_cli_num(counts, "inflight", 0), keng_cli_num(counts, "failed", 0),
           keng_cli_num(counts, "dead", 0), keng_cli_num(counts, "total", 0));
}

static int cmd_deliveries(keng_cli *c, const keng_cli_args *a)
{
    static const char *const known[] = {"status", "limit", "offset", NULL};
    if (keng_cli_args_check(a, known, 1) || a->npos != 1) return keng_cli_usage(usage_text, 0);
    keng_buf q;
    keng_buf_init(&q, 1024);
    if (keng_cli_buf_path_query(&q, "/deliveries", a, known)) {
        keng_buf_free(&q);
        return keng_cli_say("truy vấn quá dài", "the query is too long");
    }
    keng_cli_reply r;
    int rc = get_and(c, a->pos[0], q.data, &r);
    keng_buf_free(&q);
    if (!rc && c->json) {
        keng_cli_print_raw(&r);
    } else if (!rc) {
        print_counts(cJSON_GetObjectItemCaseSensitive(r.json, "counts"));
        static const char *const head[] = {
            "#",           "Người nhận / Recipient", "Kênh / Channel", "Trạng thái / Status",
            "Lần / Tries", "Sự kiện / Event",        "Lỗi / Error"};
        keng_cli_table t;
        keng_cli_table_init(&t, 7, head);
        const cJSON *it, *items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
        cJSON_ArrayForEach(it, items)
        {
            char id[32], tries[16], err[256];
            keng_cli_value_text(cJSON_GetObjectItemCaseSensitive(it, "id"), id, sizeof id);
            keng_cli_value_text(cJSON_GetObjectItemCaseSensitive(it, "attempts"), tries,
                                sizeof tries);
            keng_cli_value_text(cJSON_GetObjectItemCaseSensitive(it, "last_error"), err,
                                sizeof err);
            const char *row[] = {id,
                                 keng_cli_str(it, "recipient"),
                                 keng_cli_str(it, "channel"),
                                 keng_cli_str(it, "status"),
                                 tries,
                                 keng_cli_str(it, "event"),
                                 err};
            keng_cli_table_row(&t, row);
        }
        keng_cli_table_print(&t);
        int shown = cJSON_GetArraySize(items);
        double total = keng_cli_num(r.json, "total", shown);
        if (total > shown)
            printf("Đang hiện %d / %.0f; xem thêm bằng --limit và --offset / %d of %.0f shown; "
                   "use --limit and --offset for more\n",
                   shown, total, shown, total);
    }
    keng_cli_reply_free(&r);
    return rc;
}

static int cmd_redeliver(keng_cli *c, const keng_cli_args *a)
{
    if (keng_cli_args_check(a, NULL, 1) || a->npos != 1) return keng_cli_usage(usage_text, 0);
    keng_buf p;
    if (alert_path(&p, a->pos[0], "/redeliver")) return KENG_CLI_FAIL;
    keng_cli_reply r;
    int rc = keng_cli_request_json(c, "POST", p.data, NULL, &r);
    keng_buf_free(&p);
    if (!rc && c->json)
        keng_cli_print_raw(&r);
    else if (!rc)
        printf("Đã xếp gửi lại / requeued: %.0f\n", keng_cli_num(r.json, "requeued", 0));
    keng_cli_reply_free(&r);
    return rc;
}

int keng_cli_cmd_alert(keng_cli *c, int argc, char **argv)
{
    if (argc < 1) return keng_cli_usage(usage_text, 0);
    const char *sub = argv[0];
    int fields = !strcmp(sub, "new") || !strcmp(sub, "create") || !strcmp(sub, "update");
    keng_cli_args a;
    int rc = keng_cli_args_parse(c, argc - 1, argv + 1, fields ? alert_bools : NULL, fields, &a);
    if (rc) {
        keng_cli_args_free(&a);
        return rc == KENG_CLI_USAGE ? keng_cli_usage(usage_text, 0) : rc;
    }
    if (a.help || !strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help"))
        rc = keng_cli_usage(usage_text, 1);
    else if (!strcmp(sub, "new") || !strcmp(sub, "create"))
        rc = cmd_new(c, &a);
    else if (!strcmp(sub, "list"))
        rc = cmd_list(c, &a);
    else if (!strcmp(sub, "show") || !strcmp(sub, "get"))
        rc = cmd_show(c, &a);
    else if (!strcmp(sub, "preview"))
        rc = cmd_preview(c, &a);
    else if (!strcmp(sub, "update"))
        rc = cmd_update(c, &a);
    else if (!strcmp(sub, "resolve"))
        rc = cmd_close(c, &a, "resolve", "resolution", "Đã kết thúc / resolved");
    else if (!strcmp(sub, "cancel"))
        rc = cmd_close(c, &a, "cancel", "reason", "Đã huỷ / cancelled");
    else if (!strcmp(sub, "deliveries"))
        rc = cmd_deliveries(c, &a);
    else if (!strcmp(sub, "redeliver"))
        rc = cmd_redeliver(c, &a);
    else if (!strcmp(sub, "publish") || !strcmp(sub, "watch")) {
        if (keng_cli_args_check(&a, NULL, 1) || a.npos != 1)
            rc = keng_cli_usage(usage_text, 0);
        else if (!strcmp(sub, "watch"))
            rc = keng_cli_cmd_alert_watch(c, a.pos[0]);
        else
            rc = lifecycle(c, a.pos[0], "publish", NULL, "Đã phát / published");
    } else {
        keng_cli_sayf("không có lệnh này", "unknown command", "alert %s", sub);
        rc = keng_cli_usage(usage_text, 0);
    }
    keng_cli_args_free(&a);
    return rc;
}
