/* kengd: flags and config, the store, the example ward, templates, the HTTP API and the fan-out
 * engine, all on one libuv loop; SIGTERM/SIGINT stop it gracefully, SIGHUP reloads groups/ and
 * templates/. */
#include "keng/app.h"
#include "keng/ckpt.h"
#include "keng/groups.h"
#include "keng/import.h"
#include "keng/log.h"
#include "keng/publish.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static keng_app app;
static keng_config cfg;
static uv_signal_t sig_term, sig_int, sig_hup;
static int stopping;

static void on_signal_closed(uv_handle_t *h)
{
    (void)h;
}

static void close_everything(void *ud)
{
    (void)ud;
    uv_close((uv_handle_t *)&sig_term, on_signal_closed);
    uv_close((uv_handle_t *)&sig_int, on_signal_closed);
    uv_close((uv_handle_t *)&sig_hup, on_signal_closed);
    keng_app_stop_cron(&app);
    keng_app_stop_publish(&app);
}

/* HTTP and the fan-out drain side by side, each within the one grace period: together they
 * take at most shutdown_grace_ms, not the sum. A request answered meanwhile that writes new
 * deliveries leaves them pending in the outbox for the next start. */
static int draining;

static void on_drained(void *ud)
{
    (void)ud;
    if (--draining == 0) close_everything(NULL);
}

static void reload(void)
{
    keng_import_report rep;
    if (keng_import_dir(app.store, cfg.groups_dir, &rep) != 0)
        keng_error("groups: cannot read %s: the groups stay as they were", cfg.groups_dir);
    keng_import_report_free(&rep);
    char err[512];
    keng_tplset *ts = NULL;
    if (keng_tplset_load(cfg.templates_dir, &ts, err, sizeof err) != 0) {
        keng_error("templates: %s; the previous templates stay in use", err);
        return;
    }
    keng_tplset_free(app.templates);
    app.templates = ts;
    keng_info("templates: reloaded from %s", cfg.templates_dir);
}

static void on_signal(uv_signal_t *h, int signum)
{
    if (signum == SIGHUP) {
        keng_info("SIGHUP: reloading groups and templates");
        reload();
        return;
    }
    if (stopping) return;
    stopping = 1;
    keng_info("%s: stopping (up to %d ms for in-flight work)", signum == SIGTERM ? "SIGTERM" : "SIGINT",
              cfg.shutdown_grace_ms);
    (void)h;
    draining = 2;
    keng_app_stop_fanout(&app, cfg.shutdown_grace_ms, on_drained, NULL);
    keng_http_server_shutdown(app.http, cfg.shutdown_grace_ms, on_drained, NULL);
}

static int mkdir_p(const char *dir, mode_t mode)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, mode) != 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(path, mode) != 0 && errno != EEXIST) return -errno;
    return 0;
}

static int write_addr_file(int port)
{
    char path[4096], tmp[4200], line[300];
    snprintf(path, sizeof path, "%s/kengd.addr", cfg.data_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const char *colon = strrchr(cfg.listen, ':');
    snprintf(line, sizeof line, "%.*s:%d\n", (int)(colon - cfg.listen), cfg.listen, port);
    FILE *f = fopen(tmp, "w");
    if (!f) return -errno;
    fputs(line, f);
    fclose(f);
    return rename(tmp, path) == 0 ? 0 : -errno;
}

int main(int argc, char **argv)
{
    char err[512];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            keng_config_usage();
            return 0;
        }
    }
    const char *lvl = getenv("KENG_LOG");
    if (lvl && !strcmp(lvl, "debug")) keng_log_set_level(KENG_LOG_DEBUG);
    if (lvl && !strcmp(lvl, "warn")) keng_log_set_level(KENG_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    keng_config_init(&cfg);
    if (keng_config_load(&cfg, argc, argv, err, sizeof err)) {
        fprintf(stderr, "kengd: %s\n", err);
        keng_config_free(&cfg);
        return 2;
    }
    int rc;
    char dbpath[4096];
    app.loop = uv_default_loop();
    app.cfg = &cfg;
    app.started_at = (int64_t)time(NULL);
    snprintf(app.media_dir, sizeof app.media_dir, "%s/media", cfg.data_dir);
    snprintf(dbpath, sizeof dbpath, "%s/keng.db", cfg.data_dir);
    if ((rc = mkdir_p(cfg.data_dir, 0700)) || (rc = mkdir_p(app.media_dir, 0700))) {
        fprintf(stderr, "kengd: cannot create the data directory %s: %s\n", cfg.data_dir,
                strerror(-rc));
        return 1;
    }
    if ((rc = keng_store_open(dbpath, &app.store))) {
        fprintf(stderr, "kengd: cannot open the database %s: %s\n", dbpath, strerror(-rc));
        return 1;
    }
    if ((rc = keng_ckpt_start(app.loop, app.store, dbpath, 1000, &app.ckpt)))
        keng_warn("store: checkpoints stay on the loop (%s)", strerror(-rc));
    if ((rc = keng_auth_load_secret(cfg.data_dir, app.secret)) ||
        (rc = keng_auth_ensure_admin(app.store, cfg.data_dir)) ||
        (rc = keng_publish_init(app.store, app.secret))) {
        fprintf(stderr, "kengd: cannot set up tokens in %s: %s\n", cfg.data_dir, strerror(-rc));
        return 1;
    }
    if ((rc = keng_tplset_load(cfg.templates_dir, &app.templates, err, sizeof err))) {
        fprintf(stderr, "kengd: templates: %s\n", err);
        return 1;
    }
    keng_groups_set_default_relay_timeout(cfg.relay_timeout_s);
    keng_import_report rep;
    if ((rc = keng_import_dir(app.store, cfg.groups_dir, &rep)))
        keng_warn("groups: cannot read %s (%s); starting without file groups", cfg.groups_dir,
                  strerror(-rc));
    keng_import_report_free(&rep);
    keng_alert_limits_default(&app.alert_limits);
    app.alert_limits.footage_max_hours = cfg.footage_max_hours;
    app.alert_limits.expiry_lost_elder_h = cfg.expiry_lost_elder_h;
    app.alert_limits.expiry_vehicle_h = cfg.expiry_vehicle_h;
    app.alert_limits.expiry_scam_h = cfg.expiry_scam_h;
    app.alert_limits.expiry_other_h = cfg.expiry_other_h;
    if ((rc = keng_app_start_fanout(&app))) {
        fprintf(stderr, "kengd: cannot start the fan-out engine: %s\n", strerror(-rc));
        return 1;
    }
    keng_app_start_cron(&app);
    keng_http_config hc;
    keng_api_http_config(&app, &hc);
    if ((rc = keng_http_server_new(app.loop, &hc, &app.http)) ||
        (rc = keng_http_server_listen(app.http, cfg.listen))) {
        fprintf(stderr, "kengd: cannot listen on %s: %s\n", cfg.listen, uv_strerror(rc));
        return 1;
    }
    keng_api_observe(&app, app.http);
    int port = keng_http_server_port(app.http);
    write_addr_file(port);
    int wildcard = 0;
    if (keng_config_derive_public_url(&cfg, port, &wildcard) == 1 && wildcard)
        keng_warn("no --public-url given and --listen %s takes every address: links in messages "
                  "say %s, which only this machine can open. Set --public-url (or "
                  "KENG_PUBLIC_URL) to the address residents' phones reach, e.g. "
                  "https://canhbao.example.vn",
                  cfg.listen, cfg.public_url);
    keng_info("kengd listening on %.*s:%d, data in %s, public URL %s",
              (int)(strrchr(cfg.listen, ':') - cfg.listen), cfg.listen, port, cfg.data_dir,
              cfg.public_url);
    uv_signal_init(app.loop, &sig_term);
    uv_signal_init(app.loop, &sig_int);
    uv_signal_init(app.loop, &sig_hup);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_hup, on_signal, SIGHUP);

    uv_run(app.loop, UV_RUN_DEFAULT);

    keng_http_server_free(app.http);
    keng_app_free_fanout(&app);
    keng_tplset_free(app.templates);
    keng_ckpt_free(app.ckpt);
    keng_store_close(app.store);
    rc = uv_loop_close(app.loop);
    if (rc) keng_warn("loop closed with handles still open");
    keng_config_free(&cfg);
    keng_info("kengd stopped");
    return 0;
}
