/* server: one Raft server process's plumbing: the Raft core, its log store, a state
 * machine (server/sm.h) and the rpc/ event loop, wired together. kv/ and meta/ binaries
 * are thin mains around it. */
#ifndef SERVER_H
#define SERVER_H

#include <stdint.h>

#include "../raft/raft.h"
#include "../rpc/rpc.h"
#include "sm.h"

#define SERVER_MAX_PEERS 16

/* Bytes of values a write may carry while space is low (see min_free_mb). */
#define SERVER_LOW_SPACE_ALLOWANCE 4096u

/* A learner is promoted to voter only once the leader's match index for it is within this
 * many entries of the leader's last one (unless forced). */
#define SERVER_CATCH_UP_ENTRIES 100

struct rfs_server_config {
    uint64_t group_id;
    raft_id id; /* 1-based position in peers */
    unsigned n_peers;
    /* "host:port"; server i+1 listens on peers[i]; "-" for a position with no server.
     * DIR/peers (server/addrs.h) and membership changes add to and override these. */
    const char *peers[SERVER_MAX_PEERS];
    const char *data_dir;     /* raft log under data_dir/raft */
    unsigned tick_ms;         /* default 50 */
    unsigned election_ticks;  /* default 10 */
    unsigned heartbeat_ticks; /* default 2 */
    uint64_t snapshot_every;  /* entries between snapshots, default 10000 */
    uint64_t keep_entries;    /* entries kept behind a snapshot, default 1000 */
    /* Also a snapshot once this many bytes of entries (default 64 MiB) and twice the last
     * snapshot's size have been logged since the last one; then at most a quarter of it is
     * kept behind the snapshot. Bounds a log of large entries (file data). */
    uint64_t snapshot_bytes;
    /* Writes carrying more than SERVER_LOW_SPACE_ALLOWANCE bytes of values are refused with
     * RFS_ENOSPC while the data directory's file system has less than this free (MiB;
     * default 64, 0: never). Smaller ones (metadata: deleting, renaming, truncating) go on,
     * from the reserve, so that space can be freed. */
    uint64_t min_free_mb;
    const struct rfs_sm_ops *sm_ops;
    void *sm;
    const char *role_name; /* "shard" or "meta", for logs and errors */
    /* A new server for a running group: with nothing stored, start with no configuration
     * and wait for a leader to add it (no bootstrap from peers). With a log, no effect. */
    bool join;
};

void rfs_server_config_default(struct rfs_server_config *cfg);

struct rfs_server;

/* Open the data directory (refusing one that belongs to another group or server),
 * recover the log and the state machine, and listen on peers[id-1].
 * Returns 0, RFS_EBUSY (address in use or data dir locked), RFS_EINVAL (bad config or a
 * data directory of another group), RFS_ECORRUPT, RFS_EIO, RFS_ENOMEM; errmsg says what
 * to do about it. */
int rfs_server_new(struct rfs_server **out, struct rpc_loop *loop,
                   const struct rfs_server_config *cfg, char *errmsg);
void rfs_server_free(struct rfs_server *s);

/* What rfs_server_stats() reports: a copy of the Raft state and the server's counters. */
struct rfs_metrics_requests;
struct rfs_server_stats {
    uint64_t group_id;
    raft_id id;
    enum raft_role role;
    raft_term term;
    raft_id leader; /* 0: none known */
    raft_index commit, applied, first_index, last_index, snapshot_index;
    uint64_t snapshots_taken;     /* by this server, from its state machine */
    uint64_t snapshots_installed; /* received from a leader */
    uint64_t log_disk_bytes;      /* bytes allocated by the files in DIR/raft */
    unsigned log_files;
    unsigned client_conns;
    uint64_t pending_writes, pending_reads;
    /* Requests answered so far; points into the server, valid until it runs again. */
    const struct rfs_metrics_requests *requests;
};

/* Fill *out (from the loop thread; reads the raft directory to size the log). */
void rfs_server_stats(const struct rfs_server *s, struct rfs_server_stats *out);

/* Non-zero once the server hit an error it cannot continue after (a failed log write);
 * the loop has been stopped and errmsg holds the reason. */
int rfs_server_failed(const struct rfs_server *s, char *errmsg);

#endif
