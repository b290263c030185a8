/* kv/client.h: the thread-safe client library for one shard group, or for a whole sharded
 * cluster (a routed client).
 *
 * Any number of threads may call into one client at once; their requests travel
 * pipelined over one connection per server. The client finds the leader, follows
 * NOTLEADER hints, and after a timeout or a lost connection retries elsewhere with the
 * same session sequence number, so a write is applied once even if it is sent twice
 * (each write borrows a session from a pool; a session has one write in flight).
 *
 * A routed client (options.n_meta > 0) is given the meta group instead of one group. It
 * caches the latest configuration (meta/client.h), sends each request to the group that
 * the configuration gives the key's bucket (kv_bucket_of in kv/kv.h), and when a bucket
 * has no group yet or a group answers RFS_EWRONGGROUP it refreshes the configuration,
 * backs off and resends the same request bytes, with the same session and sequence
 * number, to whichever group owns the bucket now (docs/kv.md, "Routing").
 *
 * Every call returns 0 or an RFS_E* code, and on failure writes a one-line reason into
 * errmsg (RFS_ERRMSG_SIZE bytes, may be NULL). */
#ifndef KV_CLIENT_H
#define KV_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/err.h"

#define KV_CLIENT_MAX_SERVERS 16

struct kv_client_options {
    unsigned n_servers;
    const char *servers[KV_CLIENT_MAX_SERVERS]; /* host:port, copied */
    uint64_t group_id;                          /* 0: any */
    unsigned timeout_ms;                        /* whole operation, default 10000 */
    unsigned attempt_ms;                        /* one try at one server, default 1000 */
    /* The meta group (host:port, copied). n_meta > 0 makes a routed client: servers and
     * group_id are then not used, and n_servers may be 0. */
    unsigned n_meta;
    const char *meta[KV_CLIENT_MAX_SERVERS];
};

struct kv_client;

/* Parse "A0,A1,A2" into o->servers (pointers into list, which is modified). */
int kv_client_parse_servers(char *list, struct kv_client_options *o, char *errmsg);
/* Parse "M0,M1,M2" into o->meta (pointers into list, which is modified). */
int kv_client_parse_meta(char *list, struct kv_client_options *o, char *errmsg);

/* A plain client needs 1..KV_CLIENT_MAX_SERVERS servers, a routed one 1..KV_CLIENT_MAX_SERVERS
 * meta servers. Nothing is contacted yet (a routed client reads the configuration on its
 * first request). Returns 0, RFS_EINVAL (a bad address), RFS_ENOMEM. */
int kv_client_new(struct kv_client **out, const struct kv_client_options *o, char *errmsg);
/* Frees the client and, for a routed one, its clients of the meta group and of each shard
 * group. No call may be in progress. */
void kv_client_free(struct kv_client *c);

/* A value read from the store; free with kv_client_value_clear(). */
struct kv_client_value {
    bool found;
    uint64_t version;
    struct rfs_buf value;
};
void kv_client_value_clear(struct kv_client_value *v);

/* Linearizable read (ReadIndex on the leader). Missing key: 0 with v->found false. */
int kv_client_get(struct kv_client *c, const void *key, size_t klen, struct kv_client_value *v,
                  char *errmsg);
int kv_client_put(struct kv_client *c, const void *key, size_t klen, const void *val, size_t vlen,
                  uint64_t *version, char *errmsg);
int kv_client_append(struct kv_client *c, const void *key, size_t klen, const void *val,
                     size_t vlen, uint64_t *version, char *errmsg);
/* *found tells whether the key existed. */
int kv_client_delete(struct kv_client *c, const void *key, size_t klen, bool *found, char *errmsg);
/* Put val if the current value equals expect (expect == NULL: if the key is absent).
 * A mismatch returns RFS_ECONFLICT and, if current is not NULL, the current value. */
int kv_client_cas(struct kv_client *c, const void *key, size_t klen, const void *expect,
                  size_t elen, const void *val, size_t vlen, struct kv_client_value *current,
                  char *errmsg);

struct kv_pair {
    struct rfs_buf key;
    struct rfs_buf value;
    uint64_t version;
};
struct kv_scan_result {
    struct kv_pair *pairs;
    size_t n;
    bool more; /* stopped at the limit */
};
void kv_scan_result_clear(struct kv_scan_result *r);
/* Keys in [start, end) (end NULL: no bound), at most limit (0: server default). */
int kv_client_scan(struct kv_client *c, const void *start, size_t slen, const void *end,
                   size_t elen, unsigned limit, struct kv_scan_result *out, char *errmsg);

/* A one-group transaction: applied only if every read key still has the version seen
 * (0: absent). A conflict returns RFS_ECONFLICT and names the key in errmsg. */
struct kv_txn_read {
    const void *key;
    size_t klen;
    uint64_t version;
};
struct kv_txn_write {
    const void *key;
    size_t klen;
    const void *value;
    size_t vlen;
    bool del;
};
int kv_client_txn(struct kv_client *c, const struct kv_txn_read *reads, unsigned n_reads,
                  const struct kv_txn_write *writes, unsigned n_writes, char *errmsg);

/* Routing (the operations above on a routed client): the routing key is the key (get, put,
 * append, delete, cas), the start key (scan: a sharded group scans one bucket, so the start
 * key needs a {hash tag}, else RFS_EINVAL), or the first write's key (txn; with no writes
 * the first read's key). A transaction's keys must all be on one group, e.g. by sharing a
 * {hash tag}: keys on two groups return RFS_EINVAL. Besides the codes of one group, a routed
 * call returns RFS_EWRONGGROUP when its bucket found no serving group before timeout_ms
 * (errmsg says what to check), or the meta group's error when no configuration could be
 * read. */

/* Where a key goes, by the latest configuration (read from the meta group for this call):
 * its bucket, the bucket's group (0: none yet) and the configuration's version. Routed
 * clients only (else RFS_EINVAL). Returns 0 or the meta group's error. */
int kv_client_locate(struct kv_client *c, const void *key, size_t klen, uint32_t *bucket,
                     uint64_t *gid, uint64_t *version, char *errmsg);

/* A generic call for state machines that carry their own messages in KvRequest.value (the
 * meta group, docs/meta.md): sends {op, value} as a write (session, exactly-once) or a
 * linearizable read, and on a definite answer copies the reply's value into *out
 * (rfs_malloc'd, caller frees with rfs_free; set also when the reply has a non-zero status,
 * which is returned with the reply's error in errmsg). Plain clients only: a routed client
 * returns RFS_EINVAL. */
int kv_client_call_value(struct kv_client *c, uint32_t op, const void *value, size_t vlen,
                         bool write, struct rfs_buf *out, char *errmsg);

/* What one server says about itself (no leader needed). */
struct kv_server_status {
    bool reachable;
    char error[128];
    uint64_t id;
    uint64_t group_id;
    int role; /* enum raft_role */
    uint64_t term;
    uint64_t leader;
    uint64_t commit;
    uint64_t applied;
    uint64_t last_index;
    uint64_t snapshot_index;
};
/* Plain clients only: server is an index into options.servers (else RFS_EINVAL). */
int kv_client_status(struct kv_client *c, unsigned server, struct kv_server_status *st);

#endif
