/* Interaction tests: a scripted cluster of real Raft cores whose every step is printed, so
 * scripts in testdata/ can be compared with golden transcripts (docs/testing.md). */
#ifndef INTERACT_H
#define INTERACT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "../../raft/raft.h"

/* A growing text buffer; the transcript of one command. */
struct interact_out {
    char *buf;
    size_t len;
    size_t cap;
};

void interact_out_init(struct interact_out *o);
void interact_out_close(struct interact_out *o);
void interact_out_reset(struct interact_out *o);
void interact_outf(struct interact_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void interact_voutf(struct interact_out *o, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* One argument of a command line: `key`, `key=value` or `key=(v1,v2,...)`. A bare word
 * (a node id, a payload) is an argument with a key and no values. */
#define INTERACT_MAX_VALS 16
#define INTERACT_MAX_ARGS 32

struct interact_arg {
    char *key;
    bool has_value; /* written as key=... (a list may be empty) */
    unsigned n_vals;
    char *vals[INTERACT_MAX_VALS];
};

/* A parsed command line. The strings point into `line`, which the command owns. */
struct interact_cmd {
    char *line;
    const char *name;
    unsigned n_args;
    struct interact_arg args[INTERACT_MAX_ARGS];
};

/* Parse text (copied) into cmd. Returns 0 or RFS_EINVAL with a reason in errmsg. */
int interact_cmd_parse(struct interact_cmd *cmd, const char *text, char *errmsg);
void interact_cmd_close(struct interact_cmd *cmd);

/* Formatting of core objects for transcripts (fmt.c). */
void interact_fmt_entry(struct interact_out *o, const struct raft_entry *e);
void interact_fmt_msg(struct interact_out *o, const struct raft_message *m);
void interact_fmt_conf(struct interact_out *o, const struct raft_conf *c);
void interact_fmt_bytes(struct interact_out *o, const void *data, size_t len);

struct interact_env;

/* A fresh, empty cluster. Returns NULL when out of memory. */
struct interact_env *interact_env_new(void);
void interact_env_free(struct interact_env *env);

/* Run one command against env; its transcript is appended to out. Never empty: a command
 * with nothing else to say prints "ok". */
void interact_env_run(struct interact_env *env, const struct interact_cmd *cmd,
                      struct interact_out *out);

#endif
