/* The scripted cluster behind the interaction commands: nodes with an in-memory disk and
 * state machine, and a network queue that moves messages only when a command says so.
 * Internal to tests/interaction/. */
#ifndef INTERACT_ENV_H
#define INTERACT_ENV_H

#include "interact.h"

/* One applied command in the state machine. */
struct env_sm_item {
    raft_index index;
    struct rfs_buf data; /* owned */
};

/* What survives a crash: exactly what the node persisted from its ready batches.
 * ents[i] has index first + i, where first = snap.meta.index + 1 (or 1 without one). */
struct env_disk {
    struct raft_hard_state hs;
    bool has_snap;
    struct raft_snapshot snap; /* data owned */
    struct raft_entry *ents;   /* data owned */
    unsigned n_ents;
    unsigned cap_ents;
};

/* The state machine: a list of the applied NORMAL payloads. Its snapshot blob is the
 * payloads joined with ','; `base` is the blob it was last restored from. */
struct env_sm {
    struct rfs_buf base; /* owned */
    raft_index base_index;
    struct env_sm_item *items;
    unsigned n_items;
    unsigned cap_items;
    raft_index applied;
};

struct env_node {
    raft_id id;
    struct interact_env *env;
    struct raft *r; /* NULL while crashed */
    struct raft_config cfg;
    bool has_bootstrap; /* false: started empty, waiting to be added by a leader */
    struct raft_conf bootstrap;
    struct env_disk disk;
    struct env_sm sm;
    bool isolated; /* messages to and from it are dropped on delivery */
};

struct interact_env {
    struct env_node nodes[RAFT_MAX_NODES]; /* nodes[i] has id i + 1 */
    unsigned n_nodes;
    /* Messages sent and not yet delivered, oldest first (deep copies, owned). */
    struct raft_message *net;
    unsigned n_net;
    unsigned cap_net;
    int level;                /* log lines above this level are not printed */
    unsigned info_lines;      /* INFO-or-more-severe lines logged so far, printed or not */
    struct interact_out *out; /* transcript of the running command */
    int indent;               /* indentation of log lines */
};

/* env.c */
struct env_node *env_node_get(struct interact_env *env, raft_id id);
/* Start n->r from n's disk (or empty). Prints an error and returns non-zero on failure. */
int env_node_start(struct env_node *n);
void env_node_crash(struct env_node *n);
/* ready -> persist -> send -> apply -> advance, printing each step. */
void env_process_ready(struct interact_env *env, struct env_node *n);
/* Deliver (or, with drop, discard) every queued message addressed to `to`. Returns
 * whether there was any. */
bool env_deliver(struct interact_env *env, raft_id to, bool drop);
bool env_has_msgs_to(const struct interact_env *env, raft_id to);
/* The state machine's blob as of `index` (at or after its base); caller frees base. */
int env_sm_blob(const struct env_sm *sm, raft_index index, struct rfs_buf *out);
void env_disk_set_snapshot(struct env_disk *d, const struct raft_snapshot *snap);
raft_index env_disk_last(const struct env_disk *d);
void env_print_disk(struct interact_env *env, const struct env_node *n);

#endif
