#include "keng/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_FILE (1024 * 1024)

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = v ? strdup(v) : NULL;
}

void keng_config_init(keng_config *c)
{
    memset(c, 0, sizeof *c);
    set_str(&c->listen, "127.0.0.1:8080");
    set_str(&c->data_dir, "var");
    set_str(&c->groups_dir, "groups");
    set_str(&c->templates_dir, "templates");
    set_str(&c->public_url, "http://127.0.0.1:8080");
    set_str(&c->ward_name, "Công an phường Hòa Cường Bắc");
    set_str(&c->ward_phone, "0236 3631 113");
    c->quiet_start_min = 22 * 60;
    c->quiet_end_min = 6 * 60;
    c->tz_offset_min = 7 * 60;
    c->max_json_body = 1024 * 1024;
    c->max_image_bytes = 25 * 1024 * 1024;
    c->max_csv_body = 8 * 1024 * 1024;
    c->max_connections = 4096;
    c->header_timeout_ms = 10000;
    c->body_timeout_ms = 30000;
    c->idle_timeout_ms = 300000;
    c->send_timeout_ms = 30000;
    c->shutdown_grace_ms = 10000;
    c->access_log = 1;
    c->footage_max_hours = 12;
    c->expiry_lost_elder_h = 72;
    c->expiry_vehicle_h = 7 * 24;
    c->expiry_scam_h = 30 * 24;
    c->expiry_other_h = 72;
    c->relay_timeout_s = 600;
    c->fanout_max_inflight = 256;
    c->fanout_max_per_host = 64;
    c->fanout_timeout_ms = 15000;
    c->fanout_max_response = 64 * 1024;
    c->fanout_max_attempts = 8;
    c->fanout_backoff_base_ms = 2000;
}

void keng_config_free(keng_config *c)
{
    char **strs[] = {
        &c->listen,         &c->data_dir,          &c->groups_dir,        &c->templates_dir,
        &c->public_url,     &c->config_file,       &c->ward_name,         &c->ward_phone,
        &c->zalo_base_url,  &c->zalo_access_token, &c->telegram_base_url, &c->telegram_bot_token,
        &c->smtp_url,       &c->smtp_from,         &c->smtp_user,         &c->smtp_password,
        &c->webhook_ca_file};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        set_str(strs[i], NULL);
}

int keng_config_parse_quiet(const char *s, int *start_min, int *end_min)
{
    if (strcmp(s, "off") == 0) {
        *start_min = *end_min = -1;
        return 0;
    }
    unsigned h1, m1, h2, m2;
    char tail;
    if (sscanf(s, "%2u:%2u-%2u:%2u%c", &h1, &m1, &h2, &m2, &tail) != 4 || h1 > 23 || h2 > 23 ||
        m1 > 59 || m2 > 59)
        return -EINVAL;
    *start_min = (int)(h1 * 60 + m1);
    *end_min = (int)(h2 * 60 + m2);
    return 0;
}

/* One table drives flags, environment and the config file. */
enum opt_kind { OPT_STR, OPT_INT, OPT_SIZE, OPT_QUIET, OPT_BOOL };
struct opt {
    const char *flag; /* --listen; env is KENG_ + upper(flag) */
    const char *json; /* dotted key in the config file */
    enum opt_kind kind;
    size_t off;
};
#define O(f) offsetof(keng_config, f)
static const struct opt opts[] = {
    {"listen", "listen", OPT_STR, O(listen)},
    {"data", "data", OPT_STR, O(data_dir)},
    {"groups", "groups", OPT_STR, O(groups_dir)},
    {"templates", "templates", OPT_STR, O(templates_dir)},
    {"public-url", "public_url", OPT_STR, O(public_url)},
    {"quiet-hours", "quiet_hours", OPT_QUIET, 0},
    {"ward-name", "ward.name", OPT_STR, O(ward_name)},
    {"ward-phone", "ward.phone", OPT_STR, O(ward_phone)},
    {"max-json-body", "limits.max_json_body", OPT_SIZE, O(max_json_body)},
    {"max-image-bytes", "limits.max_image_bytes", OPT_SIZE, O(max_image_bytes)},
    {"max-csv-body", "limits.max_csv_body", OPT_SIZE, O(max_csv_body)},
    {"max-connections", "limits.max_connections", OPT_INT, O(max_connections)},
    {"header-timeout-ms", "limits.header_timeout_ms", OPT_INT, O(header_timeout_ms)},
    {"body-timeout-ms", "limits.body_timeout_ms", OPT_INT, O(body_timeout_ms)},
    {"idle-timeout-ms", "limits.idle_timeout_ms", OPT_INT, O(idle_timeout_ms)},
    {"send-timeout-ms", "limits.send_timeout_ms", OPT_INT, O(send_timeout_ms)},
    {"shutdown-grace-ms", "limits.shutdown_grace_ms", OPT_INT, O(shutdown_grace_ms)},
    {"access-log", "access_log", OPT_BOOL, O(access_log)},
    {"footage-max-hours", "alerts.footage_max_hours", OPT_INT, O(footage_max_hours)},
    {"expiry-lost-elder-h", "alerts.expiry_hours.lost_elder", OPT_INT, O(expiry_lost_elder_h)},
    {"expiry-vehicle-h", "alerts.expiry_hours.suspicious_vehicle", OPT_INT, O(expiry_vehicle_h)},
    {"expiry-scam-h", "alerts.expiry_hours.scam_pattern", OPT_INT, O(expiry_scam_h)},
    {"expiry-other-h", "alerts.expiry_hours.other", OPT_INT, O(expiry_other_h)},
    {"relay-timeout-s", "alerts.relay_timeout_s", OPT_INT, O(relay_timeout_s)},
    {"zalo-base-url", "channels.zalo_oa.base_url", OPT_STR, O(zalo_base_url)},
    {"zalo-access-token", "channels.zalo_oa.access_token", OPT_STR, O(zalo_access_token)},
    {"telegram-base-url", "channels.telegram.base_url", OPT_STR, O(telegram_base_url)},
    {"telegram-bot-token", "channels.telegram.bot_token", OPT_STR, O(telegram_bot_token)},
    {"smtp-url", "channels.email.smtp_url", OPT_STR, O(smtp_url)},
    {"smtp-from", "channels.email.from", OPT_STR, O(smtp_from)},
    {"smtp-user", "channels.email.user", OPT_STR, O(smtp_user)},
    {"smtp-password", "channels.email.password", OPT_STR, O(smtp_password)},
    {"webhook-ca-file", "channels.webhook.ca_file", OPT_STR, O(webhook_ca_file)},
    {"fanout-max-inflight", "fanout.max_inflight", OPT_INT, O(fanout_max_inflight)},
    {"fanout-max-per-host", "fanout.max_per_host", OPT_INT, O(fanout_max_per_host)},
    {"fanout-timeout-ms", "fanout.timeout_ms", OPT_INT, O(fanout_timeout_ms)},
    {"fanout-max-response", "fanout.max_response", OPT_INT, O(fanout_max_response)},
    {"fanout-max-attempts", "fanout.max_attempts", OPT_INT, O(fanout_max_attempts)},
    {"fanout-backoff-base-ms", "fanout.backoff_base_ms", OPT_INT, O(fanout_backoff_base_ms)},
};
#undef O

static int apply(keng_config *c, const struct opt *o, const char *v, const char *src, char *err,
                 size_t errlen)
{
    char *p = (char *)c + o->off;
    char *end;
    switch (o->kind) {
    case OPT_STR:
        set_str((char **)p, v);
        if (o->off == offsetof(keng_config, public_url)) c->public_url_given = 1;
        return 0;
    case OPT_QUIET:
        if (keng_config_parse_quiet(v, &c->quiet_start_min, &c->quiet_end_min) == 0) return 0;
        snprintf(err, errlen, "%s: quiet-hours must be HH:MM-HH:MM or off, not \"%s\"", src, v);
        return -EINVAL;
    case OPT_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "on"))
            *(int *)p = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "off"))
            *(int *)p = 0;
        else
            break;
        return 0;
    case OPT_INT: {
        long n = strtol(v, &end, 10);
        if (*v && !*end && n >= 0 && n <= 1000000000L) {
            *(int *)p = (int)n;
            return 0;
        }
        break;
    }
    case OPT_SIZE: {
        unsigned long long n = strtoull(v, &end, 10);
        if (*v && *v != '-' && !*end) {
            *(size_t *)p = (size_t)n;
            return 0;
        }
        break;
    }
    }
    snprintf(err, errlen, "%s: %s has a bad value \"%s\"", src, o->flag, v);
    return -EINVAL;
}

static const cJSON *json_path(const cJSON *root, const char *dotted)
{
    char key[128];
    const cJSON *cur = root;
    while (cur && *dotted) {
        const char *dot = strchr(dotted, '.');
        size_t n = dot ? (size_t)(dot - dotted) : strlen(dotted);
        if (n >= sizeof key) return NULL;
        memcpy(key, dotted, n);
        key[n] = '\0';
        cur = cJSON_GetObjectItemCaseSensitive(cur, key);
        dotted += n + (dot ? 1 : 0);
    }
    return cur;
}

static int load_file(keng_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open the config file %s: %s", path, strerror(errno));
        return -EINVAL;
    }
    char *data = malloc(CONFIG_MAX_FILE + 1);
    size_t n = data ? fread(data, 1, CONFIG_MAX_FILE + 1, f) : 0;
    fclose(f);
    if (!data || n > CONFIG_MAX_FILE) {
        free(data);
        snprintf(err, errlen, "%s: the config file is larger than 1 MB", path);
        return -EINVAL;
    }
    data[n] = '\0';
    const char *epos = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, n, &epos, 0);
    if (!root || !cJSON_IsObject(root)) {
        int line = 1;
        for (const char *q = data; epos && q < epos; q++)
            line += *q == '\n';
        snprintf(err, errlen, "%s:%d: the config file is not a valid JSON object", path, line);
        free(data);
        cJSON_Delete(root);
        return -EINVAL;
    }
    free(data);
    int rc = 0;
    for (size_t i = 0; i < sizeof opts / sizeof opts[0] && !rc; i++) {
        const cJSON *v = json_path(root, opts[i].json);
        if (!v) continue;
        char num[64];
        const char *s = NULL;
        if (cJSON_IsString(v))
            s = v->valuestring;
        else if (cJSON_IsBool(v))
            s = cJSON_IsTrue(v) ? "1" : "0";
        else if (cJSON_IsNumber(v)) {
            snprintf(num, sizeof num, "%.0f", v->valuedouble);
            s = num;
        }
        if (!s) {
            snprintf(err, errlen, "%s: %s must be a string or a number", path, opts[i].json);
            rc = -EINVAL;
            break;
        }
        rc = apply(c, &opts[i], s, path, err, errlen);
    }
    cJSON_Delete(root);
    return rc;
}

void keng_config_usage(void)
{
    fprintf(stderr,
            "usage: kengd [--listen ADDR:PORT] [--data DIR] [--groups DIR] [--templates DIR]\n"
            "             [--public-url URL] [--quiet-hours HH:MM-HH:MM|off] [--config FILE]\n"
            "Every flag may also be given as KENG_<FLAG> in the environment\n"
            "(e.g. KENG_PUBLIC_URL). Other settings:");
    for (size_t i = 5; i < sizeof opts / sizeof opts[0]; i++)
        fprintf(stderr, " --%s", opts[i].flag);
    fprintf(stderr, "\n");
}

int keng_config_derive_public_url(keng_config *c, int port, int *wildcard)
{
    if (wildcard) *wildcard = 0;
    if (c->public_url_given) return 0;
    const char *listen = c->listen ? c->listen : "";
    const char *colon = strrchr(listen, ':');
    size_t hl = colon ? (size_t)(colon - listen) : strlen(listen);
    if (port <= 0 && colon) port = atoi(colon + 1);
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(hl < sizeof host ? hl : sizeof host - 1), listen);
    /* Every spelling of "any address" that --listen accepts (uv_ip4_addr / uv_ip6_addr). */
    static const char *const any[] = {"", "0.0.0.0", "[::]", "[0:0:0:0:0:0:0:0]", "[::0]"};
    int is_any = 0;
    for (size_t i = 0; i < sizeof any / sizeof any[0]; i++)
        if (strcmp(host, any[i]) == 0) is_any = 1;
    if (is_any) snprintf(host, sizeof host, "127.0.0.1");
    if (wildcard) *wildcard = is_any;
    char url[300];
    snprintf(url, sizeof url, "http://%s:%d", host, port > 0 ? port : 8080);
    char *dup = strdup(url);
    if (!dup) return -ENOMEM;
    free(c->public_url);
    c->public_url = dup;
    return 1;
}

int keng_config_load(keng_config *c, int argc, char **argv, char *err, size_t errlen)
{
    const char *cfg = getenv("KENG_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            cfg = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            cfg = argv[i] + 9;
    }
    if (cfg) {
        set_str(&c->config_file, cfg);
        int rc = load_file(c, cfg, err, errlen);
        if (rc) return rc;
    }
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        char env[64] = "KENG_";
        size_t k = 5;
        for (const char *f = opts[i].flag; *f && k < sizeof env - 1; f++)
            env[k++] = *f == '-' ? '_' : (char)(*f >= 'a' && *f <= 'z' ? *f - 32 : *f);
        env[k] = '\0';
        const char *v = getenv(env);
        if (v && apply(c, &opts[i], v, env, err, errlen)) return -EINVAL;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument \"%s\" (flags start with --)", a);
            return -EINVAL;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        if (n == 6 && !strncmp(a, "config", 6)) {
            if (!eq) i++;
            continue;
        }
        const struct opt *o = NULL;
        for (size_t j = 0; j < sizeof opts / sizeof opts[0]; j++)
            if (strlen(opts[j].flag) == n && !strncmp(opts[j].flag, a, n)) o = &opts[j];
        if (!o) {
            snprintf(err, errlen, "unknown flag --%.*s (see kengd --help)", (int)n, a);
            return -EINVAL;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            snprintf(err, errlen, "--%s needs a value", o->flag);
            return -EINVAL;
        }
        if (apply(c, o, v, "command line", err, errlen)) return -EINVAL;
    }
    size_t ul = strlen(c->public_url);
    while (ul > 0 && c->public_url[ul - 1] == '/')
        c->public_url[--ul] = '\0';
    /* Found out at start, not at the first alert: every webhook over TLS would fail on it. */
    if (c->webhook_ca_file) {
        FILE *f = fopen(c->webhook_ca_file, "rb");
        if (!f) {
            snprintf(err, errlen,
                     "channels.webhook.ca_file: cannot read %s (%s); webhook receivers over TLS "
                     "could not be checked: fix the path, or leave the setting out to use the "
                     "system's CAs",
                     c->webhook_ca_file, strerror(errno));
            return -EINVAL;
        }
        fclose(f);
    }
    return 0;
}
