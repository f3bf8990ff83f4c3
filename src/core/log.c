/* Logging to stderr with a level threshold. */
#include "citadel/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum cit_log_level threshold = CIT_LOG_INFO;

void cit_log_set_level(enum cit_log_level lvl)
{
    threshold = lvl;
}

void cit_log(enum cit_log_level lvl, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    va_list ap;
    if (lvl < threshold) return;
    fprintf(stderr, "citadel: %s: ", names[lvl]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cit_utc_seconds(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%lld", (long long)t);
}

uint64_t cit_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
