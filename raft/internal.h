/* Internal state of the Raft core, shared by the files of raft/. Not for other modules. */
#ifndef RAFT_INTERNAL_H
#define RAFT_INTERNAL_H

#include "raft.h"

#define RAFT_MAX_INFLIGHT 256
#define RAFT_LEASE_ROUNDS 16

/* The in-memory log (raft/log.c). Entries ents[0..n) hold indexes snap_index+1 ...
 * Invariants: snap_index <= applied <= committed <= last; stable <= last.
 * `stable` is the last index the caller has persisted (acknowledged by raft_advance). */
struct raft_log {
    struct raft_entry *ents;
    size_t n;
    size_t cap;
    raft_index snap_index;
    raft_term snap_term;
    raft_index committed;
    raft_index applied;
    raft_index stable;
};

enum raft_progress_state {
    RAFT_PR_PROBE = 0, /* one append at a time until the follower's log position is known */
    RAFT_PR_REPLICATE, /* optimistic pipelining, up to max_inflight appends */
    RAFT_PR_SNAPSHOT,  /* sending a snapshot in chunks */
};

/* What the leader knows of one member (raft/progress.c). */
struct raft_progress {
    raft_id id;
    bool learner;
    raft_index match;
    raft_index next;
    enum raft_progress_state state;
    bool probe_sent;    /* PROBE: an append is outstanding; wait for reply or heartbeat */
    bool recent_active; /* heard from since the last CheckQuorum round */
    uint64_t read_ack;  /* highest ReadIndex sequence this member confirmed */
    /* Ring of the last index of each in-flight append (REPLICATE). */
    unsigned inflight_start;
    unsigned inflight_count;
    raft_index inflight[RAFT_MAX_INFLIGHT];
    /* SNAPSHOT: which snapshot and how many of its bytes the member has. */
    raft_index snap_index;
    uint64_t snap_offset;
};

/* A ReadIndex request waiting for a quorum of heartbeat acks (thesis §6.4). */
struct raft_read_req {
    uint64_t ctx;
    raft_index index;
    uint64_t seq; /* 0 while waiting for the leader's first commit in its term */
};

struct raft {
    struct raft_config cfg;
    raft_id id;
    enum raft_role role;
    raft_term term;
    raft_id vote;
    raft_id leader;

    struct raft_log log;

    /* Configuration: base (snapshot's or bootstrap) plus every CONF entry in the log. */
    struct raft_conf base_conf;
    struct raft_conf conf;
    raft_index conf_index;         /* index of the latest CONF entry in the log, or 0 */
    raft_index pending_conf_index; /* leader: no new change until this commits */

    struct raft_progress *prs;
    unsigned n_prs;

    /* Elections. */
    uint64_t ticks; /* raft_tick calls since raft_new: the clock of leases */
    unsigned election_elapsed;
    unsigned heartbeat_elapsed;
    unsigned randomized_timeout;
    uint64_t rng;
    raft_id votes[RAFT_MAX_NODES];
    bool vote_granted[RAFT_MAX_NODES];
    unsigned n_votes;
    raft_id transferee; /* leadership transfer target, 0 if none */

    /* ReadIndex. */
    struct raft_read_req *read_reqs;
    unsigned n_read_reqs;
    unsigned cap_read_reqs;
    uint64_t read_seq;
    bool read_bcast; /* heartbeat needed to confirm new reads */
    /* Leader lease (thesis §6.4.1): the tick each recent heartbeat round was sent at, by its
     * read sequence, and the send tick of the newest round a quorum confirmed. */
    uint64_t lease_round_seq[RAFT_LEASE_ROUNDS];
    uint64_t lease_round_tick[RAFT_LEASE_ROUNDS];
    unsigned lease_round_next;
    bool has_lease;
    uint64_t lease_from_tick;
    bool lease_off; /* a leadership transfer began in this term: no lease reads */
    struct raft_read_state *reads_ready;
    unsigned n_reads_ready;
    unsigned cap_reads_ready;

    /* Snapshot this server holds (to send, and for restarts). */
    bool has_snap;
    struct raft_snapshot snap;
    bool snap_wanted; /* a follower needs a snapshot and snap.in_sm: ask the server */
    /* Snapshot being received in chunks. */
    bool recv_active;
    struct raft_snapshot recv;
    uint64_t recv_cap;
    /* Received snapshot waiting to be handed in the next ready. */
    bool install_pending;

    /* Outgoing messages. */
    struct raft_message *msgs;
    unsigned n_msgs;
    unsigned cap_msgs;
    bool oom; /* an allocation failed; the instance stops making progress */

    /* Last hard state handed out in a ready. */
    struct raft_hard_state prev_hs;
    /* What the current ready contains, for raft_advance. */
    bool in_ready;
    raft_index ready_last_entry;
    raft_index ready_last_committed;
};

/* log.c */
int raft_log_init(struct raft_log *l, raft_index snap_index, raft_term snap_term);
void raft_log_close(struct raft_log *l);
raft_index raft_log_last(const struct raft_log *l);
raft_term raft_log_last_term(const struct raft_log *l);
raft_term raft_log_term(const struct raft_log *l, raft_index i);
struct raft_entry *raft_log_get(const struct raft_log *l, raft_index i);
int raft_log_append(struct raft_log *l, raft_term term, uint8_t type, const void *data, size_t len);
void raft_log_truncate_from(struct raft_log *l, raft_index from);
void raft_log_compact_to(struct raft_log *l, raft_index index);
void raft_log_reset(struct raft_log *l, raft_index snap_index, raft_term snap_term);
bool raft_log_up_to_date(const struct raft_log *l, raft_index index, raft_term term);

/* conf.c */
void raft_conf_recompute(struct raft *r, raft_index upto, struct raft_conf *out,
                         raft_index *conf_index);
unsigned raft_conf_quorum(const struct raft_conf *c);

/* progress.c */
int raft_progress_rebuild(struct raft *r);
struct raft_progress *raft_progress_find(struct raft *r, raft_id id);
void raft_progress_reset(struct raft_progress *pr, raft_index next);
void raft_progress_become_probe(struct raft_progress *pr);
void raft_progress_become_replicate(struct raft_progress *pr);
bool raft_progress_paused(const struct raft_progress *pr, unsigned max_inflight);
void raft_progress_inflight_add(struct raft_progress *pr, raft_index last);
void raft_progress_inflight_free_to(struct raft_progress *pr, raft_index index);
void raft_progress_inflight_free_first(struct raft_progress *pr);

/* core.c */
void raft_logf(struct raft *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct raft_message *raft_send(struct raft *r, uint8_t type, raft_id to);
void raft_become_follower(struct raft *r, raft_term term, raft_id leader);

/* replication.c */
void raft_send_append(struct raft *r, struct raft_progress *pr, bool send_if_empty);
void raft_bcast_append(struct raft *r);
void raft_bcast_heartbeat(struct raft *r);
bool raft_maybe_commit(struct raft *r);
void raft_leader_step(struct raft *r, const struct raft_message *m);
void raft_handle_append(struct raft *r, const struct raft_message *m);
void raft_handle_heartbeat(struct raft *r, const struct raft_message *m);
void raft_handle_snapshot(struct raft *r, const struct raft_message *m);
void raft_commit_to(struct raft *r, raft_index index);
/* Renew the lease and release the waiting reads by what a quorum has confirmed. */
void raft_read_release(struct raft *r);
/* Whether the leader may answer a read from its commit index at once (raft/replication.c). */
bool raft_lease_valid(const struct raft *r);
/* Queue a confirmed read for the next ready batch. */
int raft_read_ready_push(struct raft *r, uint64_t ctx, raft_index index);

#endif
