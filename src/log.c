#include "keng/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum keng_log_level log_level = KENG_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void keng_log_set_level(enum keng_log_level lvl)
{
    log_level = lvl;
}

enum keng_log_level keng_log_get_level(void)
{
    return log_level;
}

void keng_log(enum keng_log_level lvl, const char *fmt, ...)
{
    if (lvl < log_level) return;
    struct timespec ts;
    struct tm tm;
    char line[2048], stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so that lines from threads do not interleave. */
    fprintf(stderr, "%s.%03ldZ %s %s\n", stamp, ts.tv_nsec / 1000000, level_names[lvl], line);
}
