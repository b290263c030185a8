/* common/config.h: the configuration file shared by every raftfs binary (docs/config.md).
 *
 * A file is lines of `key = value`, where key is a long flag's name without "--"
 * (`peers = 127.0.0.1:7001,127.0.0.1:7002`), with blank lines and comments (a line
 * starting with '#', or " #" after a value). Its settings become extra command-line
 * arguments placed before the real ones, so a flag on the command line overrides the file
 * and each program keeps one option parser. An unknown key, a key given twice or a value of
 * the wrong kind is an error naming the file and line. */
#ifndef RFS_CONFIG_H
#define RFS_CONFIG_H

#include <stddef.h>

#define RFS_CONFIG_MAX_BYTES (1u << 20) /* a larger file is refused */
#define RFS_CONFIG_MAX_LINE  4096

enum rfs_config_type {
    RFS_CONFIG_STRING, /* any non-empty text */
    RFS_CONFIG_UINT,   /* a whole number (decimal) */
    RFS_CONFIG_NUMBER, /* a non-negative decimal number (seconds: 0.5) */
    RFS_CONFIG_BOOL,   /* true|false|yes|no|on|off|1|0; true adds the flag, false nothing */
};

/* A key the file may set. flag NULL: the argument is "--name=value" ("--name" for a
 * bool); otherwise flag and value as two arguments ("-o", "allow_other"), or the flag
 * alone for a bool. */
struct rfs_config_key {
    const char *name;
    enum rfs_config_type type;
    const char *flag;
};

/* Called for each setting in file order; line is 1-based. Return 0 to go on, or non-zero
 * to stop (returned by rfs_config_parse after writing "FILE:LINE: " into errmsg, to which
 * the callback may have written the rest). */
typedef int (*rfs_config_cb)(void *data, const struct rfs_config_key *key, const char *value,
                             unsigned line, char *errmsg);

/* Parse text (len bytes, the contents of `path`, which names it in messages). Returns 0,
 * RFS_EINVAL with errmsg "path:line: what is wrong", or the callback's code. */
int rfs_config_parse(const char *path, const char *text, size_t len,
                     const struct rfs_config_key *keys, unsigned n_keys, rfs_config_cb cb,
                     void *data, char *errmsg);

/* A command line with a config file's settings merged in. */
struct rfs_config_args {
    int argc;
    char **argv;   /* argv[0], the file's arguments, then the command line's without --config */
    char **origin; /* origin[i]: "FILE:LINE" for an argument from the file, else NULL */
    int n_from_file;
};

/* Look for "--config FILE" or "--config=FILE" in argv (at most once) and build *out: without
 * one, a copy of argv. Strings are copied; release with rfs_config_args_close. Returns 0;
 * RFS_EINVAL (a setting is wrong, or --config has no file or is given twice), RFS_EIO (the
 * file cannot be read), RFS_ETOOBIG, RFS_ENOMEM; errmsg says which file and line. */
int rfs_config_args_init(struct rfs_config_args *out, int argc, char *const *argv,
                         const struct rfs_config_key *keys, unsigned n_keys, char *errmsg);
/* Safe on a zeroed struct. */
void rfs_config_args_close(struct rfs_config_args *a);

/* Where argument i came from: "FILE:LINE" or NULL (the command line, or out of range). */
const char *rfs_config_args_origin(const struct rfs_config_args *a, int i);

#endif
