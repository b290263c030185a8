/* A shard group of real raftfs-shard processes on 127.0.0.1 for multi-process tests,
 * optionally with every server-to-server link (one per direction) and every client link
 * going through one raftfs-proxy process, so a test can cut, delay or reset any link.
 *
 * Everything is bounded in time; cluster_destroy() stops every process by the pid it
 * started and removes the data directory (kept if RAFTFS_KEEP_TEST_DIRS is set), and is
 * safe to call from a teardown whatever state the test left. */
#ifndef RFS_TESTS_CLUSTER_H
#define RFS_TESTS_CLUSTER_H

#include <stdbool.h>
#include <sys/types.h>

#include "tests/lib/proxy_ctl.h"

#define CLUSTER_MAX 5

struct cluster {
    unsigned n;
    bool proxied;
    char dir[256];
    char bin_dir[256];
    int port[CLUSTER_MAX];                   /* real listen port of server i */
    int link_port[CLUSTER_MAX][CLUSTER_MAX]; /* proxy port server i uses to reach j */
    int client_port[CLUSTER_MAX];            /* port clients use to reach server i */
    pid_t pid[CLUSTER_MAX];                  /* 0 when not running */
    unsigned n_peers[CLUSTER_MAX]; /* length of server i's --peers (n at its first start) */
    bool join[CLUSTER_MAX];        /* server i was added to a running group (--join) */
    char group[512];               /* client address list "127.0.0.1:p,..." */
    char extra[256];               /* extra server flags, space separated */
    char binary[64];               /* server program in bin_dir: raftfs-shard */
    struct proxy_ctl proxy;
};

/* Where the binaries are: $RAFTFS_BIN_DIR or build/asan/bin. Returns false (with a
 * message for "SKIPPED: ...") if raftfs-shard or raftfs-meta is not there. */
bool cluster_bins_present(char *why, size_t cap);

/* Start n servers (fast timers: 10 ms ticks). extra: more raftfs-shard flags, or NULL.
 * Returns 0 or an RFS_E* code with errmsg. */
int cluster_start(struct cluster *c, unsigned n, bool proxied, const char *extra, char *errmsg);
/* cluster_start for another server program with raftfs-shard's flags (raftfs-meta). */
int cluster_start_binary(struct cluster *c, const char *binary, unsigned n, bool proxied,
                         const char *extra, char *errmsg);
/* (Re)start server i with its existing data directory. */
int cluster_start_server(struct cluster *c, unsigned i, char *errmsg);
/* Start one more server (index c->n, Raft id c->n + 1; not proxied clusters only) on a new
 * port with --join and an empty data directory: it waits to be added by a membership change
 * (raftfs group add-learner). Its --peers lists every server's address so far, dead ones
 * included; the others keep theirs. c->group gets its address appended. */
int cluster_add_server(struct cluster *c, char *errmsg);
/* Send sig to server i (SIGKILL: it is reaped and marked stopped; SIGSTOP/SIGCONT: it
 * stays). */
void cluster_signal(struct cluster *c, unsigned i, int sig);
/* Stop server i with SIGTERM; returns its exit status (see proc_stop). */
int cluster_stop_server(struct cluster *c, unsigned i);
void cluster_destroy(struct cluster *c);

/* The 0-based index of the server every reachable server agrees leads (a majority
 * reporting the same leader), or -1 after timeout_ms. */
int cluster_wait_leader(struct cluster *c, int timeout_ms);

/* Proxy control (proxied clusters only). Directions follow the proxy: the link from i to
 * j carries i's messages to j. */
int cluster_link(struct cluster *c, unsigned from, unsigned to, const char *cmd);
/* Cut (blackhole) every link to and from server i, both directions; heal undoes it. */
int cluster_isolate(struct cluster *c, unsigned i);
int cluster_heal(struct cluster *c);
/* Apply a proxy command ("drop N 50", "delay N 1 5") to every link: the route name is
 * substituted for %s. */
int cluster_all_links(struct cluster *c, const char *fmt);

/* Path of server i's log file. */
void cluster_log_path(const struct cluster *c, unsigned i, char *out, size_t cap);
/* Whether a line of server i's log contains `what`. */
bool cluster_log_contains(const struct cluster *c, unsigned i, const char *what);
/* How many servers' logs contain an AddressSanitizer, LeakSanitizer or UBSan report
 * (printed to stderr). Call before cluster_destroy so a test fails on them. */
int cluster_sanitizer_errors(const struct cluster *c);

/* Print the last lines of every server's log to stderr (for a failing test). */
void cluster_dump_logs(const struct cluster *c);

#endif
