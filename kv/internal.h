/* kv/internal.h: what the files of the kv state machine share. Not for other modules. */
#ifndef KV_INTERNAL_H
#define KV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <leveldb/c.h>

#include "../server/ldb.h"
#include "blob.h"

#include "../common/buf.h"
#include "../common/err.h"
#include "kv.h"
#include "proto/raftfs.pb-c.h"

/* Limits on what a command may carry (bigger: RFS_ETOOBIG in the reply). */
#define KV_MAX_KEY   (64u << 10)
#define KV_MAX_VALUE (16u << 20)

/* SCAN: limit 0 means KV_SCAN_DEFAULT_LIMIT; larger limits are cut to KV_SCAN_MAX_LIMIT.
 * A scan also stops (with `more`) before its reply would pass KV_SCAN_MAX_BYTES of keys and
 * values, so a reply fits in an RPC frame; it always returns at least one pair. */
#define KV_SCAN_DEFAULT_LIMIT 1000u
#define KV_SCAN_MAX_LIMIT     10000u
#define KV_SCAN_MAX_BYTES     (32u << 20)

/* Sessions are swept when the log time has moved this far past the last sweep. */
#define KV_SWEEP_INTERVAL_MS 60000ull

/* LevelDB key prefixes (kv.h, docs/kv.md). */
#define KV_PREFIX_DATA    'd'
#define KV_PREFIX_SESSION 's'
#define KV_PREFIX_META    'm'
#define KV_PREFIX_BUCKET  'b'
#define KV_PREFIX_LOCK    'l'
#define KV_PREFIX_TXN     't'
#define KV_META_APPLIED   "mapplied"
#define KV_META_SWEEP     "msweep"
#define KV_META_CONFIG    "mconfig"
#define KV_META_PREV      "mprev"
#define KV_META_SHARDED   "msharded"
#define KV_META_VBASE     "mvbase"
#define KV_DATA_HDR       3 /* 'd' | bucket u16 BE */
#define KV_VERSION_LEN    8 /* data value: version u64 LE | user value */

/* --- bucket.c: LevelDB keys for user keys --- */

/* Write 'd' | bucket BE | key into out (KV_DATA_HDR + len bytes). */
void kv_key_data(char *out, uint32_t bucket, const void *key, size_t len);

/* Whether key has a non-empty hash tag; if so, part and plen give the text inside it. */
int kv_key_tag(const void *key, size_t len, const char **part, size_t *plen);

/* Bytewise order, as LevelDB's default comparator. */
int kv_key_cmp(const void *a, size_t alen, const void *b, size_t blen);

/* --- batch.c: the pending write batch of one apply call, readable before it is written --- */

/* One key written in the current batch. Owned by the batch; never moves once created. */
struct kv_pending {
    struct kv_pending *next; /* hash chain */
    uint32_t hash;
    int deleted;
    char *val; /* rfs_malloc'd, NULL when deleted */
    size_t vlen;
    size_t klen;
    char key[];
};

/* A LevelDB write batch plus an overlay of the keys it writes, so a later command in the
 * same apply call reads what an earlier one wrote. A batch with wb == NULL is a read-only
 * view of the database (used by queries). */
struct kv_batch {
    struct rfs_ldb *db;
    leveldb_writebatch_t *wb;
    struct kv_pending **slots;
    size_t nslots; /* a power of two, or 0 */
    size_t count;
};

/* A value read through a batch; release it with kv_value_clear. */
struct kv_value {
    const char *data;
    size_t len;
    char *ldb; /* LevelDB-owned copy (leveldb_free), or NULL */
    char *own; /* read from a blob file (rfs_free), or NULL */
};

int kv_batch_init(struct kv_batch *b, struct rfs_ldb *db, int writable);
void kv_batch_close(struct kv_batch *b);

/* Look key up: the batch first, then LevelDB. *found = 0 when absent. Returns 0 or RFS_EIO. */
int kv_batch_get(struct kv_batch *b, const void *key, size_t klen, int *found, struct kv_value *out,
                 char *errmsg);
void kv_value_clear(struct kv_value *v);

/* Queue a put or delete (both copied). Returns 0 or RFS_ENOMEM. Nothing reaches LevelDB
 * before kv_batch_write. */
int kv_batch_put(struct kv_batch *b, const void *key, size_t klen, const void *val, size_t vlen);
int kv_batch_put2(struct kv_batch *b, const void *key, size_t klen, const void *v1, size_t l1,
                  const void *v2, size_t l2);
/* Like kv_batch_put, but takes ownership of val (rfs_malloc'd), even on failure. */
int kv_batch_put_owned(struct kv_batch *b, const void *key, size_t klen, char *val, size_t vlen);
int kv_batch_delete(struct kv_batch *b, const void *key, size_t klen);

/* Write the batch: large data values to blob files (synced), then every key in one LevelDB
 * write with wopts. Returns 0, RFS_EIO, RFS_ENOSPC or RFS_ENOMEM. */
int kv_batch_write(struct kv_batch *b, const leveldb_writeoptions_t *wopts, char *errmsg);

/* The batch's entries in key order, for merging into range scans. *out is rfs_malloc'd
 * (caller frees; NULL when empty). Returns 0 or RFS_ENOMEM. */
int kv_batch_sorted(struct kv_batch *b, struct kv_pending ***out, size_t *n);

/* --- cursor.c: a range of LevelDB keys merged with the pending batch --- */

struct kv_cursor {
    leveldb_iterator_t *it;
    const char *hi; /* exclusive upper bound (NULL: none); borrowed */
    size_t hilen;
    struct kv_pending **ov; /* this range's slice of kv_batch_sorted; borrowed */
    size_t nov;
    size_t iov;
    int valid;
    int from_ov; /* the current item comes from the batch */
    const char *key;
    size_t klen;
    const char *val;
    size_t vlen;
    struct kv_blobs *blobs; /* resolves pointers read from LevelDB (NULL: none) */
    char *own;              /* the current value when read from a blob file */
    int err;                /* a blob read failed: the cursor stopped (kv_cursor_close) */
    char errmsg[RFS_ERRMSG_SIZE];
};

/* Position on the first live key in [lo, hi) (hi NULL: unbounded). ropts may carry a
 * LevelDB snapshot. Returns 0 or RFS_ENOMEM; check kv_cursor_close for I/O errors. */
int kv_cursor_open(struct kv_cursor *c, struct rfs_ldb *d, const leveldb_readoptions_t *ropts,
                   const char *lo, size_t lolen, const char *hi, size_t hilen,
                   struct kv_pending **sorted, size_t nsorted);
void kv_cursor_next(struct kv_cursor *c);
/* Returns 0 or RFS_EIO (the iterator's error). Safe on a zeroed cursor. */
int kv_cursor_close(struct kv_cursor *c, char *errmsg);

/* --- ops.c / scan.c: one function per operation --- */

/* Where an operation builds its reply; kv_result_clear frees what it holds. */
struct kv_result {
    Raftfs__KvReply r;
    struct kv_value value; /* backs r.value for GET and CAS conflicts */
    Raftfs__KeyValue *items;
    Raftfs__KeyValue **item_ptrs;
    char *scan_buf;
    Raftfs__LockInfo lock; /* backs r.lock for RFS_ELOCKED */
    char error[RFS_ERRMSG_SIZE];
};

void kv_result_init(struct kv_result *res);
void kv_result_clear(struct kv_result *res);
/* Set status and an error string in the reply. */
void kv_result_fail(struct kv_result *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct kv_op_ctx {
    struct kv_sm *sm;
    struct kv_batch *b;
    /* The version of every write of this entry: its log index plus the group's version
     * base (shard.c), so versions keep increasing across bucket moves (0 in queries). */
    uint64_t version;
    uint64_t now_ms; /* the entry's log time (0 in queries) */
};

/* Each returns 0 with the outcome in res->r, or RFS_EIO / RFS_ENOMEM (errmsg). */
int kv_op_get(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
              char *errmsg);
int kv_op_put(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
              char *errmsg);
int kv_op_append(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                 char *errmsg);
int kv_op_delete(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                 char *errmsg);
int kv_op_cas(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
              char *errmsg);
int kv_op_txn(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
              char *errmsg);
int kv_op_scan(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
               char *errmsg);

/* Building blocks for txn.c: read a user key's version; write or erase a user key at
 * x->version. */
int kv_op_read_version(struct kv_op_ctx *x, const ProtobufCBinaryData *key, int *found,
                       uint64_t *version, char *errmsg);
int kv_op_write_value(struct kv_op_ctx *x, const ProtobufCBinaryData *key, const void *val,
                      size_t vlen);
int kv_op_erase_key(struct kv_op_ctx *x, const ProtobufCBinaryData *key);

/* --- txn.c: cross-group transactions, the participant (docs/txn.md) --- */

/* *ok = 0 (with RFS_ELOCKED and the lock in res) if req touches a key locked by a
 * transaction. Returns 0, RFS_EIO, RFS_ECORRUPT, RFS_ENOMEM. */
int kv_txn_unlocked(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                    int *ok, char *errmsg);
/* KV_TXN_PREPARE, KV_TXN_COMMIT, KV_TXN_ABORT, KV_TXN_CHECK. Idempotent. */
int kv_txn_apply(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                 char *errmsg);
int kv_txn_is_op(int op);
/* Count the lock records into sm->n_locks (at load). */
int kv_txn_count_locks(struct kv_sm *sm, char *errmsg);

/* Whether op changes state (and so goes through sessions). */
int kv_op_is_write(int op);
/* Whether op is a migration write (shard.c; no session, no ownership check). */
int kv_op_is_migration(int op);

/* Run one decoded request against the batch (any op). */
int kv_op_run(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
              char *errmsg);

/* Pack a reply into an rfs_malloc'd buffer (base never NULL on success). */
int kv_reply_pack(const Raftfs__KvReply *r, struct rfs_buf *out);

/* A protobuf-c allocator over rfs_malloc (so tests can fail allocations) that sets *failed
 * when an allocation fails. */
void kv_pb_allocator_init(ProtobufCAllocator *a, int *failed);

/* Decode a request; NULL with *nomem = 0 means the bytes are malformed, NULL with
 * *nomem = 1 that memory ran out (which must not be mistaken for bad input: replicas
 * would diverge). Free with kv_request_free. */
Raftfs__KvRequest *kv_request_decode(const void *data, size_t len, int *nomem);
void kv_request_free(Raftfs__KvRequest *req);

/* --- shard.c: bucket ownership and migration (docs/sharding.md) --- */

/* Load the group id, configurations and bucket states from sm->db. */
int kv_shard_load(struct kv_sm *sm, char *errmsg);
void kv_shard_free(struct kv_sm *sm);
uint64_t kv_shard_version(const struct kv_sm *sm);
/* Whether the group serves bucket now (always, when not sharded). */
int kv_shard_serves(const struct kv_sm *sm, uint32_t bucket);
/* 1 if every key of req is in a served bucket; else 0 with WRONG_GROUP (or EINVAL) in res. */
int kv_shard_check(const struct kv_sm *sm, const Raftfs__KvRequest *req, struct kv_result *res);
/* The bucket whose sessions record req (its key; a TXN's first write, else first read). */
uint32_t kv_request_bucket(const struct kv_sm *sm, const Raftfs__KvRequest *req);
/* KV_CONFIG, KV_BUCKET_INSTALL, KV_BUCKET_GC, KV_BUCKET_GCED. Idempotent. */
int kv_shard_apply(struct kv_sm *sm, struct kv_batch *b, raft_index index,
                   const Raftfs__KvRequest *req, struct kv_result *res, char *errmsg);
/* KV_BUCKET_PULL, KV_SHARD_STATE. */
int kv_shard_query(struct kv_sm *sm, const Raftfs__KvRequest *req, struct kv_result *res,
                   char *errmsg);
/* Compact the ranges of buckets deleted by GC (after their batch is written). */
void kv_shard_compact(struct kv_sm *sm);

/* --- session.c: exactly-once sessions --- */

struct kv_session {
    uint64_t last_seq;
    uint64_t last_ms;
    struct kv_value raw; /* the stored record; reply bytes start at raw.data + 16 */
};

/* Look a client's session up through the batch. Returns 0, RFS_EIO, RFS_ECORRUPT. */
int kv_session_get(struct kv_batch *b, uint32_t bucket, uint64_t client_id, int *found,
                   struct kv_session *s, char *errmsg);
void kv_session_clear(struct kv_session *s);
const void *kv_session_reply(const struct kv_session *s, size_t *len);
int kv_session_put(struct kv_batch *b, uint32_t bucket, uint64_t client_id, uint64_t seq,
                   uint64_t time_ms, const void *reply, size_t len);
/* Delete every session idle longer than KV_SESSION_TTL_MS at log time now_ms. */
int kv_session_sweep(struct kv_batch *b, uint64_t now_ms, char *errmsg);

/* --- snapshot.c / swap.c --- */

int kv_snapshot_encode(struct kv_sm *sm, struct rfs_buf *out, raft_index *index, char *errmsg);
/* Check a snapshot without touching anything. Returns 0 or RFS_ECORRUPT (errmsg). */
int kv_snapshot_verify(raft_index index, const void *data, size_t len, uint64_t *count,
                       char *errmsg);
int kv_snapshot_restore(struct kv_sm *sm, raft_index index, const void *data, size_t len,
                        char *errmsg);

/* Paths under dir: dir/db, dir/db.new, dir/db.old, dir/db.new.done. */
#define KV_DB_NAME      "db"
#define KV_DB_NEW_NAME  "db.new"
#define KV_DB_OLD_NAME  "db.old"
#define KV_DB_DONE_NAME "db.new.done"

/* Finish or roll back an interrupted swap (at open, with no database open). */
int kv_swap_recover(const char *dir, char *errmsg);
/* Mark dir/db.new complete (durably), then swap it in (the caller closed dir/db). */
int kv_swap_commit(const char *dir, char *errmsg);
/* Remove path and everything under it; absent is fine. Returns 0 or RFS_EIO. */
int kv_path_remove(const char *path, char *errmsg);
int kv_dir_sync(const char *path, char *errmsg);

/* --- kv_sm.c --- */

struct kv_sm {
    char *dir;
    uint32_t nbuckets;
    struct rfs_ldb db; /* db.db is NULL after a failed restore: every call then fails */
    raft_index applied;
    uint64_t sweep_ms; /* log time of the last session sweep */
    uint64_t vbase;    /* added to the log index to make a write's version (shard.c) */
    /* Sharding (shard.c); all zero/NULL for an unsharded group. */
    int sharded;
    uint64_t gid;
    uint8_t *states;         /* bucket -> enum Raftfs__BucketState */
    Raftfs__MetaConfig *cfg; /* the configuration applied (NULL: version 0) */
    Raftfs__MetaConfig *prev;
    uint8_t *compact; /* buckets to compact after this apply's write */
    unsigned n_compact;
    uint64_t n_locks; /* transaction locks held (txn.c): none, no lock lookups */
};

/* Open sm->dir/db and its blob files into sm->db; close both (safe when closed). */
int kv_sm_db_open(struct kv_sm *sm, char *errmsg);
void kv_sm_db_close(struct kv_sm *sm);

/* (Re)load the cached applied index and sweep time from sm->db. */
int kv_sm_load_meta(struct kv_sm *sm, char *errmsg);

#endif
