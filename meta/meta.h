/* meta: the meta group's state machine: the list of bucket configurations and an id
 * allocator, on LevelDB (docs/meta.md).
 *
 * A configuration is {version, buckets[nbuckets] -> group id, groups: id -> addresses}.
 * Version 0 is the empty configuration (no groups, every bucket on group 0); each Join,
 * Leave and Move makes the next version. Commands are raftfs.KvRequest messages whose op is
 * KV_META_WRITE (JOIN, LEAVE, MOVE, ALLOC_IDS) or KV_META_READ (QUERY) and whose value is a
 * packed raftfs.MetaRequest; replies are raftfs.KvReply whose value is a packed
 * raftfs.MetaReply (status and error are also set in the KvReply).
 *
 * LevelDB layout:
 *   'c' | version (u64 big-endian)  ->  packed MetaConfig
 *   's' | client id (u64 big-endian) ->  session: last seq, last log time (u64 LE), reply
 *   'm' "applied" / "buckets" / "latest" / "nextid" / "sweep"  ->  u64 LE */
#ifndef META_H
#define META_H

#include <stddef.h>
#include <stdint.h>

#include "../server/sm.h"

/* The Raft group id of the meta group (shard groups are numbered from 1). */
#define META_GROUP_ID        0
#define META_DEFAULT_BUCKETS 64
#define META_MAX_BUCKETS     65536
/* Most ids one ALLOC_IDS may ask for. */
#define META_MAX_ALLOC (1ull << 32)
/* Sessions idle for longer than this much log time are dropped. */
#define META_SESSION_TTL_MS (60ull * 60 * 1000)

struct meta_sm;

/* Open (creating if needed) the LevelDB database in dir/meta. nbuckets is recorded when the
 * database is created; opening it later with a different nbuckets fails with RFS_EINVAL
 * (errmsg names both numbers). Returns 0, RFS_EINVAL, RFS_EIO, RFS_ECORRUPT, RFS_ENOMEM. */
int meta_sm_open(struct meta_sm **out, const char *dir, uint32_t nbuckets, char *errmsg);
void meta_sm_close(struct meta_sm *sm);

/* The rfs_sm_ops for a struct meta_sm (pass the meta_sm as the `sm` argument). */
extern const struct rfs_sm_ops meta_sm_ops;

/* Rebalance a bucket table in place over the groups gids[0..n) (sorted ascending, distinct):
 * buckets on a group not in gids are reassigned; every group ends with nbuckets/n or one
 * more, moving the fewest buckets. Groups already holding the most buckets keep the larger
 * share (ties: the lower id); a group over its share gives up its highest-numbered buckets
 * first; freed buckets go, lowest-numbered first, to the least loaded group below its share
 * (ties: the lower id). With n == 0 every bucket goes to group 0. Deterministic.
 * Returns 0 or RFS_ENOMEM. */
int meta_rebalance(uint64_t *buckets, uint32_t nbuckets, const uint64_t *gids, unsigned n);

#endif
