/* kv: the shard server's state machine on LevelDB, and (later) the client library.
 *
 * Commands are raftfs.KvRequest messages (proto/raftfs.proto), replies raftfs.KvReply.
 * LevelDB layout (docs/kv.md):
 *   'd' | bucket (u16 big-endian) | user key  ->  version (u64 LE) | value
 *   's' | bucket | client id (u64 big-endian) ->  session: last seq, last log time, reply
 *   'b' | bucket                              ->  bucket state (sharded groups, shard.c)
 *   'm' "applied"                             ->  applied index (u64 LE)
 * A bucket is one contiguous key range, so moving a bucket is a range scan and dropping it
 * a range delete. */
#ifndef KV_H
#define KV_H

#include <stddef.h>
#include <stdint.h>

#include "../server/sm.h"

#define KV_DEFAULT_BUCKETS 64
/* Sessions idle for longer than this much log time are dropped. */
#define KV_SESSION_TTL_MS (60ull * 60 * 1000)

/* The routing part of a key: the text inside the first {...} if there is one (and it is
 * non-empty), else the whole key; bucket = crc32(routing part) % nbuckets (zlib CRC-32). */
uint32_t kv_bucket_of(const void *key, size_t len, uint32_t nbuckets);

struct kv_sm;

/* Open (creating if needed) the LevelDB database in dir/db. Finishes an interrupted
 * restore (docs/kv.md). Returns 0, RFS_EIO (errmsg: LevelDB's reason), RFS_ENOMEM. */
int kv_sm_open(struct kv_sm **out, const char *dir, uint32_t nbuckets, char *errmsg);

/* Make the store that of sharded group gid (gid 0: an unsharded group), recorded in the
 * database: a directory of one kind refuses to be opened as the other, or as another group
 * (RFS_EINVAL, errmsg says what to pass instead). A sharded group serves only the buckets
 * its applied configuration gives it (docs/sharding.md). Call right after kv_sm_open. */
int kv_sm_set_sharding(struct kv_sm *sm, uint64_t gid, char *errmsg);
void kv_sm_close(struct kv_sm *sm);

/* The rfs_sm_ops for a struct kv_sm (pass the kv_sm as the `sm` argument). Besides RFS_EIO,
 * apply, query and snapshot may return RFS_ENOMEM, or RFS_ECORRUPT for a damaged database;
 * from apply, any non-zero code means the server must stop. Rules and formats: docs/kv.md. */
extern const struct rfs_sm_ops kv_sm_ops;

#endif
