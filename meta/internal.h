/* meta/internal.h: what the files of the meta state machine share. Not for other modules. */
#ifndef META_INTERNAL_H
#define META_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <leveldb/c.h>

#include "../server/ldb.h"

#include "../common/buf.h"
#include "../common/err.h"
#include "meta.h"
#include "proto/raftfs.pb-c.h"

/* Sessions are swept when the log time has moved this far past the last sweep. */
#define META_SWEEP_INTERVAL_MS 60000ull

#define META_PREFIX_CONFIG  'c'
#define META_PREFIX_SESSION 's'
#define META_KEY_APPLIED    "mapplied"
#define META_KEY_BUCKETS    "mbuckets"
#define META_KEY_LATEST     "mlatest"
#define META_KEY_NEXTID     "mnextid"
#define META_KEY_SWEEP      "msweep"
#define META_DB_NAME        "meta"

/* One client's exactly-once session (as in kv/session.c). */
struct meta_session {
    uint64_t client_id;
    uint64_t last_seq;
    uint64_t last_ms;
    struct rfs_buf reply; /* rfs_malloc'd */
};

struct meta_sm {
    char *dir;
    uint32_t nbuckets;
    struct rfs_ldb ldb; /* ldb.db is NULL after a failed reload: every call then fails */
    /* A cache of what the database holds, reloaded by meta_sm_load. */
    raft_index applied;
    uint64_t next_id; /* the next id ALLOC_IDS hands out (ids start at 1) */
    uint64_t sweep_ms;
    Raftfs__MetaConfig *latest; /* never NULL once loaded; protobuf-c owned */
    struct meta_session *sessions;
    size_t n_sessions, cap_sessions;
};

/* --- meta_sm.c --- */

/* (Re)load the cache from the database. Returns 0, RFS_EIO, RFS_ECORRUPT, RFS_ENOMEM. */
int meta_sm_load(struct meta_sm *sm, char *errmsg);
void meta_config_key(char out[9], uint64_t version);
/* The version-0 configuration: every bucket on group 0, no groups (protobuf-c owned). */
int meta_config_empty(uint32_t nbuckets, Raftfs__MetaConfig **out);
/* Pack m into an rfs_malloc'd buffer (base never NULL). Returns 0 or RFS_ENOMEM. */
int meta_pack(const ProtobufCMessage *m, struct rfs_buf *out);

/* --- ops.c: one function per MetaOp; each fills rep (status, error, config, ids) --- */

/* The pieces of a reply an op built; meta_result_clear frees them. */
struct meta_result {
    Raftfs__MetaReply r;
    Raftfs__MetaConfig *owned_cfg; /* unpacked config backing r.config, or NULL */
    char error[RFS_ERRMSG_SIZE];
};
void meta_result_init(struct meta_result *res);
void meta_result_clear(struct meta_result *res);

/* Run a write op, queuing its effects in wb and updating the cache. Returns 0 (outcome in
 * res) or RFS_ENOMEM. */
int meta_op_write(struct meta_sm *sm, leveldb_writebatch_t *wb, const Raftfs__MetaRequest *req,
                  struct meta_result *res);
/* QUERY. Returns 0 (outcome in res), RFS_EIO, RFS_ECORRUPT, RFS_ENOMEM. */
int meta_op_query(struct meta_sm *sm, const Raftfs__MetaRequest *req, struct meta_result *res,
                  char *errmsg);

/* --- snapshot.c --- */

int meta_snapshot_encode(struct meta_sm *sm, struct rfs_buf *out, raft_index *index, char *errmsg);
int meta_snapshot_restore(struct meta_sm *sm, raft_index index, const void *data, size_t len,
                          char *errmsg);

#endif
