/* server/mover.h: the bucket mover of a sharded shard server (docs/sharding.md).
 *
 * A thread in every server of a sharded group; it acts only while its server leads. It
 * polls the meta group for the configuration after the group's current one and proposes
 * it to the group's log; it pulls each bucket the group gained from the bucket's old owner
 * in chunks and proposes each chunk; and it tells the old owner when to delete its copy.
 * It talks to its own group, the meta group and the other groups as a client (kv/client.h),
 * so the server's event loop is not involved, and every step it proposes is idempotent in
 * the state machine (kv/shard.c): a new leader's mover simply carries on. */
#ifndef SERVER_MOVER_H
#define SERVER_MOVER_H

#include <stdint.h>

#include "../kv/client.h"

struct rfs_mover_config {
    uint64_t gid;
    unsigned self; /* this server's 0-based position in peers */
    unsigned n_peers;
    const char *peers[KV_CLIENT_MAX_SERVERS];
    unsigned n_meta;
    const char *meta[KV_CLIENT_MAX_SERVERS];
    unsigned poll_ms;     /* default 20 */
    unsigned chunk_bytes; /* records per pull, in bytes; default 1 MiB */
};

struct rfs_mover;

/* Start the thread (strings are copied). Returns 0, RFS_EINVAL, RFS_ENOMEM. */
int rfs_mover_start(struct rfs_mover **out, const struct rfs_mover_config *cfg, char *errmsg);
/* What the mover has done since it started (counted by this server's mover only, so only
 * while this server led its group). */
struct rfs_mover_stats {
    uint64_t pulled_records, pulled_bytes;       /* read from old owners (keys + values) */
    uint64_t installed_records, installed_bytes; /* of those, committed in this group */
    uint64_t buckets_pulled;                     /* buckets whose last chunk was installed */
    uint64_t buckets_settled; /* moves finished here: the old copy deleted (GCED committed) */
    uint64_t configs_applied; /* configurations proposed to this group and committed */
    uint64_t step_errors;     /* steps that failed (retried in a later round) */
};

/* A consistent-enough copy of the counters (each read atomically). Any thread. */
void rfs_mover_stats_get(struct rfs_mover *m, struct rfs_mover_stats *out);
/* Stop and join the thread (waits for a call in flight, at most about a second). */
void rfs_mover_stop(struct rfs_mover *m);

#endif
