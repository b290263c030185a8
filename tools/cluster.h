/* tools/cluster.h: `raftfs cluster` (up, status, down), a whole cluster on 127.0.0.1 run as
 * background processes, with its state in one directory (docs/cluster.md).
 *
 * cluster_conf.c reads and writes DIR/cluster.conf (every server: role, group, id, address,
 * data directory, pid file, log); cluster_proc.c starts daemons, checks and stops them by pid;
 * cluster_probe.c asks the servers how they are; cluster_up.c, cluster_status.c and
 * cluster_cmd.c (options, help, down) are the subcommands. Functions that can fail return 0 or
 * an RFS_E* code and write one line into errmsg (RFS_ERRMSG_SIZE bytes). */
#ifndef TOOLS_CLUSTER_H
#define TOOLS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kv/client.h"

#define CLUSTER_PATH_MAX     256
#define CLUSTER_MAX_GROUPS   9
#define CLUSTER_MAX_REPLICAS 7
#define CLUSTER_MAX_SERVERS  ((CLUSTER_MAX_GROUPS + 1) * CLUSTER_MAX_REPLICAS)
#define CLUSTER_CONF_NAME    "cluster.conf"

enum cluster_role { CLUSTER_META, CLUSTER_SHARD };

/* One server process. Paths are absolute. */
struct cluster_server {
    enum cluster_role role;
    unsigned gid; /* shard group id (from 1); 0 for the meta group */
    unsigned id;  /* position in its group's --peers */
    char addr[64];
    char data[CLUSTER_PATH_MAX];
    char pidfile[CLUSTER_PATH_MAX];
    char log[CLUSTER_PATH_MAX];
};

/* What DIR/cluster.conf holds. */
struct cluster_conf {
    char dir[CLUSTER_PATH_MAX]; /* absolute */
    unsigned groups, replicas, buckets;
    char mnt[CLUSTER_PATH_MAX];           /* the mount point ("" with --no-mount) */
    char mount_pidfile[CLUSTER_PATH_MAX]; /* raftfs-mount's */
    char mount_log[CLUSTER_PATH_MAX];
    unsigned n;
    struct cluster_server servers[CLUSTER_MAX_SERVERS]; /* meta first, then group by group */
};

/* ---- cluster_conf.c ---- */

/* Lay out a new cluster in dir (absolute): servers, data, pid and log paths, free ports
 * (bound to port 0 and remembered). Nothing is written. */
int cluster_conf_plan(struct cluster_conf *c, const char *dir, unsigned groups, unsigned replicas,
                      unsigned buckets, const char *mnt, char *errmsg);
/* Read DIR/cluster.conf. RFS_ENOTFOUND if there is none, RFS_ECORRUPT on a bad line. */
int cluster_conf_load(struct cluster_conf *c, const char *dir, char *errmsg);
/* Write DIR/cluster.conf (atomically: a temporary file renamed over it). */
int cluster_conf_save(const struct cluster_conf *c, char *errmsg);
/* "127.0.0.1:p,..." of group gid (0: the meta group) into out. */
void cluster_conf_group_addrs(const struct cluster_conf *c, unsigned gid, char *out, size_t cap);
/* "meta-0", "g1-2": the server's name in messages and file names. */
void cluster_server_name(const struct cluster_server *s, char *out, size_t cap);

/* ---- cluster_proc.c ---- */

/* Start argv as a daemon: its own session, stdin from /dev/null, stdout and stderr appended to
 * log, its pid written to pidfile. Returns 0 once exec succeeded, with *pid. */
int cluster_proc_start(char *const argv[], const char *log, const char *pidfile, pid_t *pid,
                       char *errmsg);
/* The pid in pidfile if that process runs (not a zombie) and one of its arguments is marker
 * (its data directory or mount point, so a pid reused by another program is not ours); else 0. */
pid_t cluster_proc_running(const char *pidfile, const char *marker);
/* Whether pid runs (a zombie does not). */
bool cluster_proc_alive(pid_t pid);
/* SIGTERM to each pid, up to timeout_ms for them to exit, then SIGKILL to the rest (and up to
 * 5 s more). Returns how many needed SIGKILL. */
unsigned cluster_proc_stop(const pid_t *pids, unsigned n, int timeout_ms);
/* A port on 127.0.0.1 free a moment ago (bound to port 0), or -1. */
int cluster_proc_free_port(char *errmsg);
/* Whether path is a mount point, from /proc/self/mountinfo. */
bool cluster_proc_mounted(const char *path);
/* Run argv (a short command such as fusermount3) and wait up to timeout_ms; its exit status,
 * or -1 if it could not run or did not finish. */
int cluster_proc_run(char *const argv[], int timeout_ms);
/* Copy the last n lines of path to stderr, indented. */
void cluster_proc_tail(const char *path, unsigned n);
/* mkdir -p path. */
int cluster_mkdirs(const char *path, char *errmsg);
/* CLOCK_MONOTONIC in milliseconds; sleep ms. */
long long cluster_now_ms(void);
void cluster_sleep_ms(unsigned ms);

/* ---- cluster_probe.c ---- */

/* What one group looks like right now: st (c->replicas entries, may be NULL) gets each
 * server's answer to the status call. */
struct cluster_group_health {
    unsigned up; /* servers answering */
    bool leader; /* one of them says it leads */
    int down;    /* the index in the group of a server not answering, or -1 */
};
void cluster_probe_group(const struct cluster_conf *c, unsigned gid, struct kv_server_status *st,
                         struct cluster_group_health *h);
/* How many buckets answer a read at the group the latest configuration gives them (each tried
 * once, attempt_ms at most; none after deadline_ms, a cluster_now_ms() time). */
int cluster_probe_buckets(const struct cluster_conf *c, unsigned attempt_ms, long long deadline_ms,
                          unsigned *serving, char *errmsg);

/* ---- the subcommands; each returns the exit status ---- */

struct cluster_opts {
    char dir[CLUSTER_PATH_MAX]; /* absolute */
    unsigned groups, replicas, buckets;
    bool groups_set, replicas_set, buckets_set;
    char mnt[CLUSTER_PATH_MAX]; /* absolute */
    bool mnt_set;               /* --mount given (else mnt is ./mnt) */
    bool no_mount;
    bool purge;
    unsigned timeout_s;                  /* each wait */
    char bin[CLUSTER_PATH_MAX];          /* where raftfs-meta, -shard, -mount are */
    const char *prog;                    /* how we were called, for the hints we print */
    char dir_hint[CLUSTER_PATH_MAX + 8]; /* " --dir DIR" in those hints ("" for the default) */
};

int cluster_up(const struct cluster_opts *o);
/* path relative to the working directory when it is under it, for the hints we print
 * (cluster_cmd.c). */
const char *cluster_shorten(const char *path);
int cluster_status(const struct cluster_opts *o);
int cluster_down(const struct cluster_opts *o);

#endif
