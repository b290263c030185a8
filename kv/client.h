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
/* Default lifetime of a cross-group transaction's locks (kv_client_options.txn_ttl_ms). */
#define KV_TXN_TTL_MS 2000

/* TEST ONLY (kv_client_options.txn_crash_after): where a cross-group kv_client_txn stops, as
 * if its coordinator died there. It returns RFS_ESTOPPED and leaves whatever locks and
 * record exist, for other clients to resolve (docs/txn.md, "Client"). */
enum kv_txn_crash {
    KV_TXN_CRASH_NONE = 0,
    KV_TXN_CRASH_AFTER_PRIMARY_PREPARE,  /* the primary's group prepared, no other */
    KV_TXN_CRASH_AFTER_PREPARES,         /* every group prepared, nothing committed */
    KV_TXN_CRASH_AFTER_PRIMARY_COMMIT,   /* the commit point passed, no secondary committed */
    KV_TXN_CRASH_AFTER_SECONDARY_COMMIT, /* the first secondary group committed */
};

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
    /* Cross-group transactions: how long their locks hold before another client may abort
     * them (ms, default KV_TXN_TTL_MS). A coordinator that dies blocks its keys this long. */
    unsigned txn_ttl_ms;
    enum kv_txn_crash txn_crash_after; /* TEST ONLY, see above; 0 in applications */
};

struct kv_client;

/* In a server list, the place of a server id with no server (a removed one): ids are
 * positions (id i+1 = servers[i]), so later servers keep theirs. */
#define KV_CLIENT_NO_SERVER "-"

/* Parse "A0,A1,A2" into o->servers (pointers into list, which is modified); "-" entries
 * are holes (KV_CLIENT_NO_SERVER), at least one real address is needed. */
int kv_client_parse_servers(char *list, struct kv_client_options *o, char *errmsg);
/* Parse "M0,M1,M2" into o->meta (pointers into list, which is modified). */
int kv_client_parse_meta(char *list, struct kv_client_options *o, char *errmsg);

/* kv_client_new from a comma-separated "host:port,..." list: the servers of one group (gid;
 * 0 = any), or, routed, the meta group's. timeout_ms / attempt_ms 0: the defaults. */
int kv_client_connect(struct kv_client **out, const char *list, bool routed, uint64_t gid,
                      unsigned timeout_ms, unsigned attempt_ms, char *errmsg);

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
    struct kv_pair *pairs; /* keys and values point into reply: do not free them one by one */
    size_t n;
    bool more;   /* stopped at the limit */
    void *reply; /* the decoded reply that holds the bytes */
};
void kv_scan_result_clear(struct kv_scan_result *r);
/* Keys in [start, end) (end NULL: no bound), at most limit (0: server default). */
int kv_client_scan(struct kv_client *c, const void *start, size_t slen, const void *end,
                   size_t elen, unsigned limit, struct kv_scan_result *out, char *errmsg);

/* Like kv_client_scan, but over every bucket group gid serves, no {tag} needed (a plain
 * client: its one group, gid ignored). Keys come in order within the group; a bucket moving
 * meanwhile may be missed or read twice, so this is for background work that goes round
 * again (collectors), not for listings. */
int kv_client_scan_group(struct kv_client *c, uint64_t gid, const void *start, size_t slen,
                         const void *end, size_t elen, unsigned limit, struct kv_scan_result *out,
                         char *errmsg);
/* The groups of the cluster as last read from the meta group (a plain client: one, id 0):
 * up to cap ids into gids, *n of them. Returns 0 or an RFS_E* code with errmsg. */
int kv_client_group_ids(struct kv_client *c, uint64_t *gids, size_t cap, size_t *n, char *errmsg);

/* A transaction: applied only if every read key still has the version seen (0: absent),
 * and then all writes take effect at once, or none does (docs/txn.md). A conflict returns
 * RFS_ECONFLICT and names the key in errmsg ("conflict on key K"). With no writes it checks
 * that the versions were all current at one moment. On a routed client the keys may live on
 * any groups: keys of one group go in one KV_TXN request, keys of several groups through
 * two-phase commit, the client acting as coordinator. Besides the codes of a single
 * request, a cross-group transaction returns RFS_ECONFLICT when another transaction holds
 * one of its keys (it does not wait) or when it was aborted because its locks expired before
 * it committed, and RFS_ETIMEDOUT with "outcome unknown" in errmsg when the commit point
 * could not be confirmed before timeout_ms (it may or may not have committed). */
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
/* kv_client_txn that also tells the version every written key now has, when the
 * transaction went as one request to one group (*version 0 otherwise: two-phase commit, no
 * writes, or a failure). */
int kv_client_txn_ex(struct kv_client *c, const struct kv_txn_read *reads, unsigned n_reads,
                     const struct kv_txn_write *writes, unsigned n_writes, uint64_t *version,
                     char *errmsg);

/* Routing (the operations above on a routed client): the routing key is the key (get, put,
 * append, delete, cas), the start key (scan: a sharded group scans one bucket, so the start
 * key needs a {hash tag}, else RFS_EINVAL), or for a transaction each key (see
 * kv_client_txn). Besides the codes of one group, a routed call returns RFS_EWRONGGROUP when
 * its bucket found no serving group before timeout_ms (errmsg says what to check), or the
 * meta group's error when no configuration could be read.
 *
 * Locks: an operation that meets a key locked by a cross-group transaction in progress
 * (RFS_ELOCKED from the group) asks the transaction's primary group for its state, rolls
 * the lock forward or back if the transaction is decided (or has expired), else waits a
 * little, and resends the same request, until timeout_ms; then it returns RFS_ELOCKED naming
 * the key and the transaction. A plain client returns RFS_ELOCKED at once. */

/* A transaction as text (raftfs kv txn), one command a line: "check KEY VERSION" (a read
 * with the version seen, 0: absent), "put KEY VALUE" (VALUE: the rest of the line after one
 * space, may be empty or hold spaces), "del KEY". Blank lines and lines starting with '#'
 * (after spaces) are skipped. Keys are at most KV_TXN_SCRIPT_MAX_KEY bytes. */
#define KV_TXN_SCRIPT_MAX_KEY 1024
struct kv_txn_script {
    struct kv_txn_read *reads;
    unsigned n_reads;
    struct kv_txn_write *writes;
    unsigned n_writes;
    char *text; /* the copy of the script the keys and values point into */
};
/* Parse text[0..len) (copied) into s. Returns 0, RFS_ENOMEM, or RFS_EINVAL with "line N:
 * reason" in errmsg. Release with kv_txn_script_clear (also after a failure). */
int kv_txn_script_parse(struct kv_txn_script *s, const char *text, size_t len, char *errmsg);
void kv_txn_script_clear(struct kv_txn_script *s);

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

/* A membership change of the client's group (docs/deploy.md), sent to its leader and
 * answered once committed: change 1 adds server `node` at `addr` as a learner, 2 makes it a
 * voter (a learner that has caught up, unless force; addr may be NULL), 3 removes it
 * (addr NULL). A change already in effect succeeds with a note ("server 4 is already a
 * voter") in note (RFS_ERRMSG_SIZE bytes, may be NULL). Returns 0, RFS_EINVAL (refused:
 * errmsg says why), RFS_EBUSY (the learner has not caught up), RFS_ECONFPENDING (another
 * change is not committed yet), or a transport error. Plain clients only. */
int kv_client_conf_change(struct kv_client *c, uint64_t node, unsigned change, const char *addr,
                          bool force, char *note, char *errmsg);

/* One member of a group's configuration, as a server sees it. */
struct kv_member {
    uint64_t id;
    bool learner;
    char addr[128];
    uint64_t match; /* the leader's match index for it; 0 from a follower */
};

/* What one server says about itself (no leader needed). */
struct kv_server_status {
    bool reachable;
    char error[128];
    char addr[128]; /* where it listens */
    bool removed;   /* it saw itself removed from the group */
    unsigned n_members;
    struct kv_member members[32];
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
