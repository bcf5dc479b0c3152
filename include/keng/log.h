/* log: one line per event to stderr, "2026-11-23T09:00:00.123Z level message". Any thread.
 * The level is set once at start (KENG_LOG=debug|info|warn|error). */
#ifndef KENG_LOG_H
#define KENG_LOG_H

enum keng_log_level { KENG_LOG_DEBUG, KENG_LOG_INFO, KENG_LOG_WARN, KENG_LOG_ERROR };

void keng_log_set_level(enum keng_log_level lvl);
enum keng_log_level keng_log_get_level(void);
void keng_log(enum keng_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define keng_debug(...) keng_log(KENG_LOG_DEBUG, __VA_ARGS__)
#define keng_info(...) keng_log(KENG_LOG_INFO, __VA_ARGS__)
#define keng_warn(...) keng_log(KENG_LOG_WARN, __VA_ARGS__)
#define keng_error(...) keng_log(KENG_LOG_ERROR, __VA_ARGS__)

#endif
