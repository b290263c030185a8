/* A sharded cluster of real processes for multi-process tests: a meta group (one
 * raftfs-meta) and up to SHARDED_MAX_GROUPS shard groups started with --gid/--meta (gid =
 * index + 1), a meta-group client, and the waits the tests need (a configuration applied,
 * every bucket settled). Built on tests/lib/cluster.h; every call is bounded in time and
 * returns 0 or an RFS_E* code with errmsg (no cmocka here). */
#ifndef RFS_TESTS_SHARDED_H
#define RFS_TESTS_SHARDED_H

#include <stdbool.h>
#include <stdint.h>

#include "kv/client.h"
#include "proto/raftfs.pb-c.h"
#include "tests/lib/cluster.h"

#define SHARDED_MAX_GROUPS 3

struct sharded {
    struct cluster meta;
    struct cluster g[SHARDED_MAX_GROUPS]; /* gid = index + 1 */
    bool started[SHARDED_MAX_GROUPS];
    bool down[SHARDED_MAX_GROUPS]; /* deliberately not running: not waited for */
    struct kv_client *mc;          /* the meta group */
};

/* Start the meta group (one server) and its client. */
int sharded_start(struct sharded *s, char *errmsg);
/* Start group gid with n servers (extra: more raftfs-shard flags, or NULL) and wait for its
 * leader. */
int sharded_start_group(struct sharded *s, uint64_t gid, unsigned n, bool proxied,
                        const char *extra, char *errmsg);
/* Start the meta group and groups 1..groups (servers_per_group servers each, proxied and extra
 * as for sharded_start_group), join them all, and wait up to settle_ms until they settle. On
 * failure whatever started is left for sharded_destroy. */
int sharded_start_joined(struct sharded *s, unsigned groups, unsigned servers_per_group,
                         bool proxied, const char *extra, unsigned settle_ms, char *errmsg);
/* Stop everything (servers by SIGTERM first, so sanitizer reports reach the logs) and
 * return how many logs hold a sanitizer report. Safe on a zeroed struct. */
int sharded_destroy(struct sharded *s);

/* A client of a group's servers ("host:port,..."), or a routed one over the meta group's. */
int sharded_client(struct kv_client **out, const char *list, uint64_t gid, bool routed,
                   unsigned timeout_ms, char *errmsg);

int sharded_join(struct sharded *s, uint64_t gid, char *errmsg);
int sharded_leave(struct sharded *s, uint64_t gid, char *errmsg);
int sharded_move(struct sharded *s, uint32_t first, uint32_t last, uint64_t gid, char *errmsg);
int sharded_latest_version(struct sharded *s, uint64_t *version, char *errmsg);

/* Group gid's shard state (KV_SHARD_STATE), or NULL if it did not answer. Free with
 * raftfs__shard_state__free_unpacked(st, NULL). */
Raftfs__ShardState *sharded_state(struct sharded *s, uint64_t gid);
/* Whether group gid has applied `version` with no bucket in flight. */
bool sharded_group_settled(struct sharded *s, uint64_t gid, uint64_t version);
/* Wait until every started group that is not down has applied the latest configuration
 * and settled; on timeout dump the groups' logs and return RFS_ETIMEDOUT. */
int sharded_wait_settled(struct sharded *s, unsigned timeout_ms, char *errmsg);

#endif
