#include "log.h"

#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Set once in main before any thread starts; read-only afterwards. */
static enum rfs_log_level log_level = RFS_LOG_INFO;
static char log_tag[64] = "raftfs";

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};

void rfs_log_set_level(enum rfs_log_level level)
{
    log_level = level;
}

void rfs_log_set_tag(const char *tag)
{
    snprintf(log_tag, sizeof log_tag, "%s", tag);
}

int rfs_log_enabled(enum rfs_log_level level)
{
    return level <= log_level;
}

int rfs_log_level_parse(const char *name, enum rfs_log_level *out)
{
    for (int i = 0; i <= RFS_LOG_TRACE; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum rfs_log_level)i;
            return 0;
        }
    }
    return RFS_EINVAL;
}

void rfs_log_write(enum rfs_log_level level, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    char when[32];
    struct timespec ts;
    struct tm tm;
    const char *base = strrchr(file, '/');
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line so lines from different threads do not interleave. */
    fprintf(stderr, "%s.%03ldZ %-5s %s %s:%d %s\n", when, ts.tv_nsec / 1000000, level_names[level],
            log_tag, base ? base + 1 : file, line, msg);
}
