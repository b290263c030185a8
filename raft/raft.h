/* raft: a Raft consensus core with no sockets, threads, clock or disk, plus its durable
 * log storage (raft/log_store.h).
 *
 * Conventions for the whole header:
 * - Functions that can fail return 0 or a positive RFS_E* code (common/err.h).
 * - The core is driven by one thread. Time enters only through raft_tick(); messages
 *   through raft_step(); commands through raft_propose*(). Work leaves through
 *   raft_ready(): persist its entries and hard state (one sync), then send its messages,
 *   then apply its committed entries, then call raft_advance(). No other call may be made
 *   on the instance between raft_ready() and raft_advance().
 * - Everything inside a ready batch (entries, messages, snapshot) belongs to the core and
 *   stays valid until raft_advance().
 * - Byte buffers passed in are copied unless a comment says otherwise.
 */
#ifndef RAFT_H
#define RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/err.h"

typedef uint64_t raft_index;
typedef uint64_t raft_term;
typedef uint64_t raft_id; /* a server's id; 0 means "none" */

#define RAFT_MAX_NODES 16

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* application command */
    RAFT_ENTRY_NOOP = 1,   /* appended by a new leader (Raft §8); nothing to apply */
    RAFT_ENTRY_CONF = 2,   /* membership change, see struct raft_conf_change */
};

struct raft_entry {
    raft_term term;
    raft_index index;
    uint8_t type; /* enum raft_entry_type */
    struct rfs_buf data;
};

/* Durable per-server state (Raft Figure 2) plus the commit index. */
struct raft_hard_state {
    raft_term term;
    raft_id vote;
    raft_index commit;
};

/* A configuration: the voters and the learners (non-voting members). */
struct raft_conf {
    unsigned n_voters;
    unsigned n_learners;
    raft_id voters[RAFT_MAX_NODES];
    raft_id learners[RAFT_MAX_NODES];
};

enum raft_conf_change_type {
    RAFT_CC_ADD_LEARNER = 1, /* new member that receives the log but does not vote */
    RAFT_CC_ADD_VOTER = 2,   /* new voter, or promotion of a learner */
    RAFT_CC_REMOVE = 3,      /* remove a voter or a learner */
};

/* Bytes of application context a change may carry (etcd's ConfChange.Context); raftfs
 * puts the member's address there. */
#define RAFT_CONF_CONTEXT_MAX 256

struct raft_conf_change {
    uint8_t type; /* enum raft_conf_change_type */
    raft_id node;
    /* Optional, opaque to the core: stored in the entry after the fixed part. When
     * decoded, context points into the entry's data (valid as long as the entry). */
    const void *context;
    size_t context_len; /* at most RAFT_CONF_CONTEXT_MAX */
};

struct raft_snapshot_meta {
    raft_index index; /* last index the snapshot covers */
    raft_term term;   /* term of that entry */
    struct raft_conf conf;
};

struct raft_snapshot {
    struct raft_snapshot_meta meta;
    struct rfs_buf data; /* the state machine's bytes */
    /* No bytes here: the state machine holds the state at meta.index durably itself (a
     * compaction point, raft_snapshot_take_lazy); data is empty. */
    bool in_sm;
};

enum raft_msg_type {
    RAFT_MSG_APPEND = 1,
    RAFT_MSG_APPEND_RESP,
    RAFT_MSG_VOTE,
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_PREVOTE,
    RAFT_MSG_PREVOTE_RESP,
    RAFT_MSG_HEARTBEAT,
    RAFT_MSG_HEARTBEAT_RESP,
    RAFT_MSG_SNAPSHOT, /* one chunk of a snapshot */
    RAFT_MSG_SNAPSHOT_RESP,
    RAFT_MSG_TIMEOUT_NOW, /* leadership transfer: campaign now */
};

/* One message. Which fields matter depends on the type:
 * APPEND:         index/log_term = the entry before `entries`, entries, commit
 * APPEND_RESP:    reject; index = last index matched (accept) or the rejected index;
 *                 hint_index/hint_term = follower's guess of where logs agree
 * VOTE, PREVOTE:  index/log_term = candidate's last entry; transfer
 * *_VOTE_RESP:    reject
 * HEARTBEAT:      commit, read_seq
 * HEARTBEAT_RESP: read_seq echoed
 * SNAPSHOT:       snap (meta), offset, data = bytes at offset, done = last chunk
 * SNAPSHOT_RESP:  reject, offset = bytes received so far, index = snapshot index
 * TIMEOUT_NOW:    nothing beyond term
 */
struct raft_message {
    uint8_t type; /* enum raft_msg_type */
    raft_id from;
    raft_id to;
    raft_term term;
    raft_index index;
    raft_term log_term;
    raft_index commit;
    bool reject;
    bool transfer;
    bool done;
    raft_index hint_index;
    raft_term hint_term;
    uint64_t read_seq;
    uint64_t offset;
    struct raft_snapshot_meta snap;
    struct rfs_buf data;
    unsigned n_entries;
    struct raft_entry *entries;
};

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRE_CANDIDATE,
    RAFT_CANDIDATE,
    RAFT_LEADER,
};

/* A confirmed linearizable read: every command committed before raft_read_index() was
 * called is at or below `index`; serve the read once applied >= index. */
struct raft_read_state {
    uint64_t ctx;
    raft_index index;
};

/* A batch of work for the caller, from raft_ready(). */
struct raft_ready {
    /* Persist first, with one sync covering all of it. */
    bool has_hard_state;
    struct raft_hard_state hard_state;
    /* Entries to append. If entries[0].index is at or below the last stored index, the
     * stored log from entries[0].index on is replaced. */
    unsigned n_entries;
    struct raft_entry *entries;
    /* A snapshot received from the leader: persist it, discard the stored log up to its
     * index (all of it if the stored log does not match), and restore the state machine
     * from it before applying `committed`. */
    struct raft_snapshot *snapshot;

    /* Then send these (they may depend on what was persisted). */
    unsigned n_msgs;
    struct raft_message *msgs;

    /* Then apply these, in order. */
    unsigned n_committed;
    struct raft_entry *committed;

    /* Reads confirmed by a quorum of heartbeats. */
    unsigned n_reads;
    struct raft_read_state *reads;

    /* Soft state, for information. */
    enum raft_role role;
    raft_id leader;
    raft_term term;
};

/* Log lines from the core go here, so a simulation can capture them. */
struct raft_logger {
    void *data;
    void (*log)(void *data, int level, const char *msg); /* level: enum rfs_log_level */
};

struct raft_config {
    raft_id id;
    unsigned election_ticks;  /* election timeout is random in [e, 2e) ticks */
    unsigned heartbeat_ticks; /* leader sends heartbeats every h ticks; h < e */
    unsigned max_inflight;    /* appends in flight per follower (pipelining window) */
    size_t max_msg_bytes;     /* soft cap on entry bytes per append message */
    size_t snapshot_chunk;    /* bytes per snapshot chunk */
    bool pre_vote;
    bool check_quorum;
    /* Leader lease reads (needs check_quorum): while a quorum answered a heartbeat round
     * sent less than election_ticks - 3 ticks ago, raft_read_index answers at once. Safe
     * as long as every server's ticks keep pace with real time within that margin: the
     * caller must not let ticks fall behind (catch up after a pause before reading). */
    bool lease_reads;
    uint64_t seed; /* randomness for election timeouts */
    struct raft_logger logger;
};

/* Fill cfg with defaults (election 10 ticks, heartbeat 1, window 64, 1 MiB messages,
 * 256 KiB snapshot chunks, PreVote, CheckQuorum and lease reads on). */
void raft_config_default(struct raft_config *cfg, raft_id id);

/* What a server found on disk at start. All pointers are borrowed; the core copies. */
struct raft_restore {
    struct raft_hard_state hard_state;
    const struct raft_snapshot *snapshot; /* NULL if none; data may be empty */
    const struct raft_entry *entries;     /* consecutive, starting after the snapshot */
    unsigned n_entries;
    const struct raft_conf *bootstrap; /* initial configuration if nothing is stored */
    raft_index applied; /* the state machine's durable applied index (0: the snapshot's) */
};

struct raft;

/* Create an instance. `restore` may be NULL for an empty server that waits to be added
 * by a leader. Returns 0, RFS_ENOMEM, or RFS_EINVAL (reason in errmsg). */
int raft_new(struct raft **out, const struct raft_config *cfg, const struct raft_restore *restore,
             char *errmsg);
void raft_free(struct raft *r);

/* Advance logical time by one tick. */
void raft_tick(struct raft *r);

/* Deliver a message from a peer. Messages from unknown terms, stale or duplicated, are
 * handled as Raft says (ignored or answered); never an error. */
void raft_step(struct raft *r, const struct raft_message *m);

/* Append a command. Leader only: RFS_ENOTLEADER otherwise, RFS_ETRANSFER while handing
 * leadership over. On success *index is the entry's log index. */
int raft_propose(struct raft *r, const void *data, size_t len, raft_index *index);

/* Propose a membership change (one at a time: RFS_ECONFPENDING while one is uncommitted;
 * RFS_EINVAL for a change that makes no sense, such as removing the last voter, or a
 * context over RAFT_CONF_CONTEXT_MAX). The context is copied into the entry. */
int raft_propose_conf(struct raft *r, const struct raft_conf_change *cc, raft_index *index);

/* Ask for a linearizable read point (ReadIndex, thesis §6.4). Leader only. The answer
 * comes later as a raft_read_state with the same ctx, or never if leadership is lost
 * (the caller retries elsewhere after a timeout). */
int raft_read_index(struct raft *r, uint64_t ctx);

/* Hand leadership to `target` (thesis §3.10). Leader only. Proposals are refused until
 * the transfer ends (success, or an election timeout). */
int raft_transfer_leader(struct raft *r, raft_id target);

/* Start an election now (tests and tools). */
void raft_campaign(struct raft *r);

bool raft_has_ready(const struct raft *r);
/* Collect pending work. Call raft_advance() when done with it. */
void raft_ready(struct raft *r, struct raft_ready *rd);
/* Acknowledge that rd was persisted, sent and applied. */
void raft_advance(struct raft *r, struct raft_ready *rd);

/* The state machine has applied everything up to `index` (which must be the applied
 * index) and produced `data` (copied) that reproduces it. The core keeps the snapshot to
 * send to lagging followers and drops log entries up to index - keep_entries.
 * Returns RFS_EINVAL if index is beyond applied or at or before the last snapshot. */
int raft_snapshot_take(struct raft *r, raft_index index, const void *data, size_t len,
                       raft_index keep_entries);

/* A compaction point without bytes: the state machine has made everything up to `index`
 * (the applied index) durable on its own, so the log up to index - keep_entries may go.
 * When a follower then needs a snapshot, raft_snapshot_wanted() turns true and the server
 * supplies the bytes with raft_snapshot_take() at the applied index (which may equal this
 * one). Saves serialising the whole state (and writing it out) at every compaction.
 * Returns as raft_snapshot_take. */
int raft_snapshot_take_lazy(struct raft *r, raft_index index, raft_index keep_entries);

/* Whether a follower needs a snapshot and the core holds none with bytes: the server should
 * call raft_snapshot_take() with the state machine's bytes at the applied index. */
bool raft_snapshot_wanted(const struct raft *r);

/* The snapshot the core holds (NULL if none); valid until the next call. */
const struct raft_snapshot *raft_snapshot_get(const struct raft *r);

/* 0 while healthy; RFS_ENOMEM once an allocation failed inside raft_step/raft_tick or a
 * ready cycle. A failed instance makes no further progress (raft_has_ready() is false):
 * the server must stop and restart from its log store. */
int raft_error(const struct raft *r);

/* Read-only accessors. */
raft_id raft_id_get(const struct raft *r);
enum raft_role raft_role_get(const struct raft *r);
raft_term raft_term_get(const struct raft *r);
raft_id raft_leader_get(const struct raft *r);
raft_index raft_commit_get(const struct raft *r);
raft_index raft_applied_get(const struct raft *r);
raft_index raft_first_index(const struct raft *r); /* first entry in memory */
raft_index raft_last_index(const struct raft *r);
/* Term of entry i, or 0 if unknown (compacted and not the snapshot point, or beyond). */
raft_term raft_term_at(const struct raft *r, raft_index i);
/* Entry i if it is in memory, else NULL. */
const struct raft_entry *raft_entry_at(const struct raft *r, raft_index i);
const struct raft_conf *raft_conf_get(const struct raft *r);
/* Match index the leader has recorded for `peer` (0 if unknown or not leader). */
raft_index raft_match_get(const struct raft *r, raft_id peer);

const char *raft_role_name(enum raft_role role);
const char *raft_msg_type_name(int type);

/* Encode/decode a membership change as the data of a RAFT_ENTRY_CONF entry: type (1 byte),
 * node (8 bytes, little-endian), then the context bytes. Entries written before contexts
 * existed are exactly the 9 fixed bytes and decode with no context. */
#define RAFT_CONF_CHANGE_SIZE 9
/* Bytes raft_conf_change_encode writes: RAFT_CONF_CHANGE_SIZE + cc->context_len. */
size_t raft_conf_change_size(const struct raft_conf_change *cc);
/* out has room for raft_conf_change_size(cc) bytes; cc->context_len must be at most
 * RAFT_CONF_CONTEXT_MAX. */
void raft_conf_change_encode(const struct raft_conf_change *cc, uint8_t *out);
/* RFS_EINVAL for a bad type, node 0, fewer than 9 bytes or a context over the maximum.
 * cc->context points into data (NULL when there is none). */
int raft_conf_change_decode(const void *data, size_t len, struct raft_conf_change *cc);

/* Configuration helpers. */
bool raft_conf_is_voter(const struct raft_conf *c, raft_id id);
bool raft_conf_is_learner(const struct raft_conf *c, raft_id id);
/* Apply a change to c; RFS_EINVAL if it does not apply (unknown node, too many nodes,
 * removing the last voter). */
int raft_conf_apply(struct raft_conf *c, const struct raft_conf_change *cc);

#endif
