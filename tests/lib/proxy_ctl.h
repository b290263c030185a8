/* Client side of bin/raftfs-proxy for tests: start the process, send control commands,
 * stop it. The commands and their semantics are in tests/lib/proxy.h and
 * docs/testing-tools.md.
 *
 * Typical use, with every step bounded in time and proxy_ctl_stop in the teardown:
 *
 *     struct proxy_ctl pc;
 *     proxy_ctl_start(&pc, bin, (const char *[]){"--route", "n1=127.0.0.1:0=127.0.0.1:7001",
 *                     NULL}, NULL, 5000, errmsg);
 *     int port = proxy_ctl_route_port(&pc, "n1");
 *     proxy_ctl_cmd(&pc, reply, sizeof reply, "cut n1 both");
 *     ...
 *     proxy_ctl_stop(&pc, 2000);
 */
#ifndef RFS_TESTS_PROXY_CTL_H
#define RFS_TESTS_PROXY_CTL_H

#include <stddef.h>
#include <sys/types.h>

/* How long proxy_ctl_cmd waits for a connection and a reply. */
#define PROXY_CTL_TIMEOUT_MS 5000

struct proxy_ctl {
    pid_t pid;         /* 0 when not running */
    int control_port;  /* 0 when not running */
    char banner[2048]; /* the lines the proxy printed on start */
};

/* Write the path of the proxy binary into out: "$RAFTFS_BIN_DIR/raftfs-proxy", or
 * "build/asan/bin/raftfs-proxy" when the variable is unset. Returns 0, or RFS_ENOTFOUND
 * if no executable is there (out is written either way). */
int proxy_ctl_bin_path(char *out, size_t cap);

/* Start bin with "--control 127.0.0.1:0" followed by args (NULL-terminated list, may be
 * NULL), stderr appended to log_path (NULL: the caller's stderr), and read its start lines
 * from a pipe on its stdout for up to timeout_ms. On success pc holds the pid, the control
 * port and the banner; on failure the process, if any, has been stopped and pc->pid is 0.
 * Returns 0, RFS_ENOTFOUND (cannot execute bin), RFS_ETIMEDOUT or RFS_EIO. */
int proxy_ctl_start(struct proxy_ctl *pc, const char *bin, const char *const *args,
                    const char *log_path, int timeout_ms, char *errmsg);

/* Listen port of a route given with --route, read from the banner; -1 if absent. */
int proxy_ctl_route_port(const struct proxy_ctl *pc, const char *name);

/* Send one command line (printf-style, no newline) over a fresh control connection and
 * read the one-line reply into reply (cap bytes, newline removed; may be NULL). Returns 0
 * for an "ok" reply, RFS_EINVAL for an "err" reply, RFS_ETIMEDOUT or RFS_EIO when the
 * proxy could not be reached or did not answer within PROXY_CTL_TIMEOUT_MS. */
int proxy_ctl_cmd(const struct proxy_ctl *pc, char *reply, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The same against a bare control port, with an explicit timeout. */
int proxy_ctl_send(int control_port, const char *line, char *reply, size_t cap, int timeout_ms);

/* Stop the proxy by its pid (SIGTERM, up to timeout_ms, then SIGKILL; reaped either way)
 * and clear pc. Returns the status as proc_stop() does, or -1 if it was not running. Safe to
 * call twice and on a zeroed struct. */
int proxy_ctl_stop(struct proxy_ctl *pc, int timeout_ms);

#endif
