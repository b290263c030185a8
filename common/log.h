/* Leveled logging to stderr: one line per event with time, level, module and file:line. */
#ifndef RFS_LOG_H
#define RFS_LOG_H

enum rfs_log_level {
    RFS_LOG_ERROR = 0,
    RFS_LOG_WARN,
    RFS_LOG_INFO,
    RFS_LOG_DEBUG,
    RFS_LOG_TRACE,
};

/* Set once in main (before threads start): lines above this level are dropped. */
void rfs_log_set_level(enum rfs_log_level level);
/* Set once in main: a tag such as "shard g1/n2" printed on every line. */
void rfs_log_set_tag(const char *tag);
int rfs_log_enabled(enum rfs_log_level level);
/* Parse "error|warn|info|debug|trace"; returns 0 or RFS_EINVAL. */
int rfs_log_level_parse(const char *name, enum rfs_log_level *out);

void rfs_log_write(enum rfs_log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define RFS_LOG(level, ...)                                                                        \
    do {                                                                                           \
        if (rfs_log_enabled(level)) {                                                              \
            rfs_log_write(level, __FILE__, __LINE__, __VA_ARGS__);                                 \
        }                                                                                          \
    } while (0)

#define rfs_errorf(...) RFS_LOG(RFS_LOG_ERROR, __VA_ARGS__)
#define rfs_warnf(...)  RFS_LOG(RFS_LOG_WARN, __VA_ARGS__)
#define rfs_infof(...)  RFS_LOG(RFS_LOG_INFO, __VA_ARGS__)
#define rfs_debugf(...) RFS_LOG(RFS_LOG_DEBUG, __VA_ARGS__)
#define rfs_tracef(...) RFS_LOG(RFS_LOG_TRACE, __VA_ARGS__)

#endif
