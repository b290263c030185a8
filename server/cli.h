/* server/cli.h: the command line, signal handling and lifetime shared by every Raft server
 * binary. raftfs-shard and raftfs-meta are a descriptor plus a call to
 * rfs_server_cli_main(). */
#ifndef SERVER_CLI_H
#define SERVER_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "sm.h"

struct rfs_server_cli {
    const char *prog;        /* "raftfs-shard": prefix of every message */
    const char *role;        /* "shard": IDENTITY file and log tag */
    const char *summary;     /* the paragraph under the usage line */
    const char *db_name;     /* the state machine's folder inside --data, for --help */
    const char *buckets_doc; /* extra --help line(s) for --buckets, or "" */
    bool has_gid;            /* accepts --gid (else the group id is fixed) */
    bool has_meta;           /* accepts --meta: a sharded group with a bucket mover */
    uint64_t group_id;       /* default (or fixed) group id */
    unsigned long default_buckets;
    unsigned long max_buckets;
    /* Open the state machine in the data directory / close it (safe on NULL). */
    int (*open_sm)(void **sm, const char *dir, uint32_t nbuckets, char *errmsg);
    void (*close_sm)(void *sm);
    /* With has_meta: record whether the store is sharded group gid (0: unsharded). */
    int (*set_sharding)(void *sm, uint64_t gid, char *errmsg);
    const struct rfs_sm_ops *ops;
    /* Optional, for metrics: count the buckets in each BucketState (counts[0..4], indexed
     * by the proto enum) from the event-loop thread. Returns 0 or an RFS_E* code. */
    int (*bucket_counts)(void *sm, uint64_t counts[5]);
};

/* Parse flags (and --config FILE, docs/config.md), open the state machine and the server, run until
 * SIGTERM/SIGINT. Returns the process exit status: 0 clean stop, 1 failure, 2 bad usage. */
int rfs_server_cli_main(const struct rfs_server_cli *cli, int argc, char **argv);

#endif
