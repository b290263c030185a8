/* A deterministic simulation of a Raft cluster: the real core, a simulated network that
 * drops, duplicates, delays, reorders and partitions, a simulated disk where a crash loses
 * everything not yet synced, and safety invariants checked after every step. */
#ifndef SIM_H
#define SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "raft/raft.h"

#define SIM_MAX_NODES 8

struct sim;

struct sim_options {
    unsigned n_voters; /* initial voters, ids 1..n_voters */
    unsigned n_spare;  /* extra empty servers (ids after the voters) for membership tests */
    unsigned election_ticks;
    unsigned heartbeat_ticks;
    unsigned max_inflight;
    size_t snapshot_chunk;
    bool pre_vote;
    bool check_quorum;
    unsigned compact_every; /* take a snapshot when this many entries are applied; 0 = never */
    bool verbose;           /* print core log lines (INFO) to stderr */
};

void sim_options_default(struct sim_options *o, unsigned n_voters);

struct sim *sim_new(const struct sim_options *o, uint64_t seed);
void sim_free(struct sim *s);

/* Network behaviour. Rates are per message, in parts per thousand. */
void sim_set_unreliable(struct sim *s, unsigned drop_permille, unsigned dup_permille,
                        unsigned max_delay_ms);
/* Cut every link to and from id (both directions), or restore them. */
void sim_disconnect(struct sim *s, raft_id id);
void sim_connect(struct sim *s, raft_id id);
/* Cut one direction only. */
void sim_cut(struct sim *s, raft_id from, raft_id to, bool cut);
/* Split into two sides: nodes whose bit is set in mask, and the rest. */
void sim_partition(struct sim *s, uint32_t mask);
void sim_heal(struct sim *s);

/* Crash (lose everything not synced) and restart from the simulated disk. */
void sim_crash(struct sim *s, raft_id id);
void sim_restart(struct sim *s, raft_id id);
bool sim_is_up(const struct sim *s, raft_id id);
/* A crash in the middle of writing a ready batch: a random prefix of it survives. */
void sim_crash_mid_write(struct sim *s, raft_id id);

/* Advance simulated time by ms milliseconds (one tick is 10 ms), delivering messages
 * and processing ready batches. Stops early on an invariant violation. */
void sim_run(struct sim *s, unsigned ms);

/* The up node that is leader in the highest term, or 0. */
raft_id sim_leader(const struct sim *s);
/* Run until exactly one leader stands among connected up nodes, at most max_ms. */
raft_id sim_wait_leader(struct sim *s, unsigned max_ms);
/* All nodes that are up and believe they are leader, as a count. */
unsigned sim_count_leaders(const struct sim *s);

/* Propose value on node id. Returns 0 and the index, or the core's error. */
int sim_propose(struct sim *s, raft_id id, const char *value, raft_index *index);
/* Propose on whichever node is leader, retrying until some node applies it or max_ms
 * passes (like 6.824's one()). Returns the index, or 0 on failure. Each retry is a new
 * command, so duplicates can only come from the core. */
raft_index sim_one(struct sim *s, const char *value, unsigned expected_nodes, unsigned max_ms);
/* How many nodes have applied index, and whether they agree; *value gets the data. */
unsigned sim_n_applied(const struct sim *s, raft_index index, char *value, size_t cap);
/* Was this value acknowledged (applied by the node that proposed it)? */
bool sim_acked(const struct sim *s, const char *value);

int sim_propose_conf(struct sim *s, raft_id leader, uint8_t type, raft_id node);
int sim_transfer(struct sim *s, raft_id leader, raft_id target);
/* Ask for a ReadIndex on id; the result is checked against the acked writes. */
int sim_read(struct sim *s, raft_id id);
unsigned long sim_reads_done(const struct sim *s);

/* Take a snapshot on id at its applied index now. */
int sim_snapshot(struct sim *s, raft_id id, raft_index keep);

struct raft *sim_raft(struct sim *s, raft_id id);
raft_index sim_applied(const struct sim *s, raft_id id);
raft_index sim_max_commit(const struct sim *s);
unsigned long sim_msgs_sent(const struct sim *s);
unsigned long sim_bytes_sent(const struct sim *s);
uint64_t sim_now(const struct sim *s);
unsigned long sim_snapshots_installed(const struct sim *s);
/* Snapshot bytes made on request for a compaction point without them. */
unsigned long sim_snapshots_supplied(const struct sim *s);

void sim_dump(const struct sim *s, FILE *f);

/* The first invariant violation seen, or NULL. */
const char *sim_violation(const struct sim *s);

/* Heal, restart every node and run until every member has applied the leader's commit
 * and every acknowledged value is applied. Returns 0, or -1 with a violation recorded. */
int sim_converge(struct sim *s, unsigned max_ms);

/* A random run: faults and proposals chosen by the seed. Returns 0 or -1. */
struct sim_random_options {
    unsigned steps; /* milliseconds of simulated time */
    bool membership;
    bool unreliable;
};
int sim_random_run(struct sim *s, const struct sim_random_options *ro);

#endif
