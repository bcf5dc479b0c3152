/* config: kengd's settings from defaults, then the --config JSON file, then KENG_* environment,
 * then flags (each later source wins). Start-up only; the result is read-only afterwards.
 * Strings are owned by the config; keng_config_free releases them. */
#ifndef KENG_CONFIG_H
#define KENG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct keng_config {
    char *listen;      /* 127.0.0.1:8080 */
    char *data_dir;    /* var */
    char *groups_dir;  /* groups */
    char *templates_dir; /* templates */
    char *public_url;  /* http://<listen host>:<port>, see keng_config_derive_public_url */
    int public_url_given; /* set by --public-url, KENG_PUBLIC_URL or the config file */
    char *config_file; /* or NULL */
    int quiet_start_min, quiet_end_min; /* minutes after local midnight; both -1 = off */
    int tz_offset_min; /* +420, Asia/Ho_Chi_Minh */
    char *ward_name, *ward_phone;
    /* limits */
    size_t max_json_body;   /* 1 MiB */
    size_t max_image_bytes; /* 25 MiB */
    size_t max_csv_body;    /* 8 MiB */
    int max_connections;
    int header_timeout_ms, body_timeout_ms, idle_timeout_ms, send_timeout_ms;
    int shutdown_grace_ms; /* 10000 */
    int access_log;
    /* alerts */
    int footage_max_hours;
    int expiry_lost_elder_h, expiry_vehicle_h, expiry_scam_h, expiry_other_h;
    int relay_timeout_s; /* default for groups that do not say: 600 */
    /* channels: off while NULL */
    char *zalo_base_url, *zalo_access_token;
    char *telegram_base_url, *telegram_bot_token;
    char *smtp_url, *smtp_from, *smtp_user, *smtp_password;
    char *webhook_ca_file; /* NULL: webhook receivers checked against the system's CAs */
    int fanout_max_inflight, fanout_max_per_host, fanout_timeout_ms, fanout_max_attempts;
    int fanout_max_response; /* bytes of a receiver's answer kept (the rest is cut) */
    int fanout_backoff_base_ms;
} keng_config;

void keng_config_init(keng_config *c); /* defaults */
void keng_config_free(keng_config *c);
/* Applies argv (and, first, the config file named by --config or KENG_CONFIG, then KENG_*
 * environment). On error returns -EINVAL and writes a sentence for the user into err. */
int keng_config_load(keng_config *c, int argc, char **argv, char *err, size_t errlen);
/* "HH:MM-HH:MM" or "off" → minutes; -EINVAL when malformed. */
int keng_config_parse_quiet(const char *s, int *start_min, int *end_min);
void keng_config_usage(void);
/* When no source gave public_url, derives it from the listen address and the port actually bound
 * (port > 0; else the port of --listen), so that links in messages point where kengd listens:
 * "127.0.0.1:9090" gives http://127.0.0.1:9090, "[::1]:9090" http://[::1]:9090. A wildcard host
 * (0.0.0.0, [::]) cannot be reached by that name, so 127.0.0.1 stands in and *wildcard is set:
 * the caller should warn that --public-url must be set for a real deployment.
 * Returns 1 when it derived the URL, 0 when public_url was given (left alone), -ENOMEM. */
int keng_config_derive_public_url(keng_config *c, int port, int *wildcard);

#endif
