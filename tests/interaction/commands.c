/* The script commands. Each one acts on the cluster and prints what happened; the list
 * and the meaning of every argument are in docs/testing.md ("Interaction scripts"). */
#include "env.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/alloc.h"
#include "../../common/log.h"

#define STABILIZE_MAX_ROUNDS 500

static void errorf(struct interact_env *env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void errorf(struct interact_env *env, const char *fmt, ...)
{
    va_list ap;
    interact_outf(env->out, "error: ");
    va_start(ap, fmt);
    interact_voutf(env->out, fmt, ap);
    va_end(ap);
    interact_outf(env->out, "\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    if (s == NULL || *s == '\0' || *s == '-') {
        return false;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "true") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(s, "false") == 0) {
        *out = false;
        return true;
    }
    return false;
}

/* The i-th positional argument (a bare word), or NULL. */
static const char *positional(const struct interact_cmd *cmd, unsigned i)
{
    for (unsigned k = 0; k < cmd->n_args; k++) {
        if (!cmd->args[k].has_value && i-- == 0) {
            return cmd->args[k].key;
        }
    }
    return NULL;
}

static unsigned n_positional(const struct interact_cmd *cmd)
{
    unsigned n = 0;
    for (unsigned k = 0; k < cmd->n_args; k++) {
        n += !cmd->args[k].has_value;
    }
    return n;
}

static const struct interact_arg *option(const struct interact_cmd *cmd, const char *key)
{
    for (unsigned k = 0; k < cmd->n_args; k++) {
        if (cmd->args[k].has_value && strcmp(cmd->args[k].key, key) == 0) {
            return &cmd->args[k];
        }
    }
    return NULL;
}

/* A node id argument that names an existing node. */
static struct env_node *node_arg(struct interact_env *env, const char *s)
{
    uint64_t id;
    struct env_node *n;
    if (!parse_u64(s, &id)) {
        errorf(env, "expected a node id, got \"%s\"", s ? s : "");
        return NULL;
    }
    n = env_node_get(env, id);
    if (n == NULL) {
        errorf(env, "no node %llu", (unsigned long long)id);
    }
    return n;
}

/* Positional i as a running node. */
static struct env_node *live_arg(struct interact_env *env, const struct interact_cmd *cmd,
                                 unsigned i)
{
    struct env_node *n = node_arg(env, positional(cmd, i));
    if (n != NULL && n->r == NULL) {
        errorf(env, "node %llu is down", (unsigned long long)n->id);
        return NULL;
    }
    return n;
}

static bool u64_arg(struct interact_env *env, const char *what, const char *s, uint64_t *out)
{
    if (!parse_u64(s, out)) {
        errorf(env, "%s: expected a number, got \"%s\"", what, s ? s : "");
        return false;
    }
    return true;
}

/* An option's single value as a number; absent leaves *out alone. */
static bool u64_opt(struct interact_env *env, const struct interact_cmd *cmd, const char *key,
                    uint64_t *out)
{
    const struct interact_arg *a = option(cmd, key);
    if (a == NULL) {
        return true;
    }
    if (a->n_vals != 1) {
        errorf(env, "%s: expected one value", key);
        return false;
    }
    return u64_arg(env, key, a->vals[0], out);
}

static bool bool_opt(struct interact_env *env, const struct interact_cmd *cmd, const char *key,
                     bool *out)
{
    const struct interact_arg *a = option(cmd, key);
    if (a == NULL) {
        return true;
    }
    if (a->n_vals != 1 || !parse_bool(a->vals[0], out)) {
        errorf(env, "%s: expected true or false", key);
        return false;
    }
    return true;
}

/* A list of node ids, `key=(1,2)` or `key=1`. */
static bool ids_opt(struct interact_env *env, const struct interact_cmd *cmd, const char *key,
                    raft_id *ids, unsigned *n)
{
    const struct interact_arg *a = option(cmd, key);
    *n = 0;
    if (a == NULL) {
        return true;
    }
    for (unsigned i = 0; i < a->n_vals; i++) {
        if (!parse_u64(a->vals[i], &ids[i]) || ids[i] == 0) {
            errorf(env, "%s: bad node id \"%s\"", key, a->vals[i]);
            return false;
        }
    }
    *n = a->n_vals;
    return true;
}

/* add-nodes N [voters=(..)] [learners=(..)] [index=I] [empty] [election=E] [heartbeat=H]
 *           [prevote=B] [checkquorum=B] [inflight=N] [max-msg-bytes=N] [snapshot-chunk=N] */
static void cmd_add_nodes(struct interact_env *env, const struct interact_cmd *cmd)
{
    uint64_t count;
    uint64_t index = 0;
    uint64_t v;
    struct raft_config cfg;
    struct raft_conf conf;
    bool empty = false;
    raft_id first = env->n_nodes + 1;

    if (!u64_arg(env, "count", positional(cmd, 0), &count)) {
        return;
    }
    for (unsigned i = 1; i < n_positional(cmd); i++) {
        if (strcmp(positional(cmd, i), "empty") != 0) {
            errorf(env, "unknown flag %s", positional(cmd, i));
            return;
        }
        empty = true;
    }
    if (count == 0 || env->n_nodes + count > RAFT_MAX_NODES) {
        errorf(env, "can add 1..%u nodes", RAFT_MAX_NODES - env->n_nodes);
        return;
    }
    raft_config_default(&cfg, 1);
    memset(&conf, 0, sizeof conf);
    if (!ids_opt(env, cmd, "voters", conf.voters, &conf.n_voters) ||
        !ids_opt(env, cmd, "learners", conf.learners, &conf.n_learners) ||
        !u64_opt(env, cmd, "index", &index)) {
        return;
    }
    if (option(cmd, "voters") == NULL && option(cmd, "learners") == NULL) {
        for (uint64_t i = 0; i < count; i++) {
            conf.voters[conf.n_voters++] = first + i;
        }
    }
    v = cfg.election_ticks;
    if (!u64_opt(env, cmd, "election", &v)) {
        return;
    }
    cfg.election_ticks = (unsigned)v;
    v = cfg.heartbeat_ticks;
    if (!u64_opt(env, cmd, "heartbeat", &v)) {
        return;
    }
    cfg.heartbeat_ticks = (unsigned)v;
    v = cfg.max_inflight;
    if (!u64_opt(env, cmd, "inflight", &v)) {
        return;
    }
    cfg.max_inflight = (unsigned)v;
    v = cfg.max_msg_bytes;
    if (!u64_opt(env, cmd, "max-msg-bytes", &v)) {
        return;
    }
    cfg.max_msg_bytes = v;
    v = cfg.snapshot_chunk;
    if (!u64_opt(env, cmd, "snapshot-chunk", &v)) {
        return;
    }
    cfg.snapshot_chunk = v;
    /* Scripts show the ReadIndex rounds unless they ask for leases. */
    cfg.lease_reads = false;
    if (!bool_opt(env, cmd, "prevote", &cfg.pre_vote) ||
        !bool_opt(env, cmd, "checkquorum", &cfg.check_quorum) ||
        !bool_opt(env, cmd, "lease", &cfg.lease_reads)) {
        return;
    }

    for (uint64_t i = 0; i < count; i++) {
        struct env_node *n = &env->nodes[env->n_nodes];
        memset(n, 0, sizeof *n);
        n->id = first + i;
        n->env = env;
        n->cfg = cfg;
        n->cfg.id = n->id;
        n->cfg.seed = n->id;
        n->has_bootstrap = !empty;
        n->bootstrap = conf;
        if (!empty && index > 0) {
            /* Started from a snapshot at `index`, as if restored from a backup. */
            struct raft_snapshot snap;
            memset(&snap, 0, sizeof snap);
            snap.meta.index = index;
            snap.meta.term = 1;
            snap.meta.conf = conf;
            env_disk_set_snapshot(&n->disk, &snap);
            n->disk.hs.term = 1;
            n->disk.hs.commit = index;
        }
        env->n_nodes++;
        if (env_node_start(n) != 0) {
            return;
        }
        interact_outf(env->out, "%llu: ", (unsigned long long)n->id);
        if (empty) {
            interact_outf(env->out, "empty, waiting to be added\n");
            continue;
        }
        interact_fmt_conf(env->out, &conf);
        if (index > 0) {
            interact_outf(env->out, " snapshot=1/%llu", (unsigned long long)index);
        }
        interact_outf(env->out, "\n");
    }
}

static void cmd_campaign(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    if (r != NULL) {
        raft_campaign(r);
    }
}

static void cmd_propose(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    const char *data = positional(cmd, 1);
    raft_index index;
    int rv;
    if (r == NULL) {
        return;
    }
    if (data == NULL) {
        errorf(env, "usage: propose ID DATA");
        return;
    }
    rv = raft_propose(r, data, strlen(data), &index);
    if (rv != 0) {
        errorf(env, "%s", rfs_strerror(rv));
        return;
    }
    interact_outf(env->out, "ok index=%llu\n", (unsigned long long)index);
}

static void cmd_propose_conf_change(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    const char *type = positional(cmd, 1);
    struct raft_conf_change cc = {0};
    raft_index index;
    int rv;
    if (r == NULL) {
        return;
    }
    if (type == NULL || !parse_u64(positional(cmd, 2), &cc.node)) {
        errorf(env, "usage: propose-conf-change ID add-learner|add-voter|remove NODE");
        return;
    }
    if (strcmp(type, "add-learner") == 0) {
        cc.type = RAFT_CC_ADD_LEARNER;
    } else if (strcmp(type, "add-voter") == 0) {
        cc.type = RAFT_CC_ADD_VOTER;
    } else if (strcmp(type, "remove") == 0) {
        cc.type = RAFT_CC_REMOVE;
    } else {
        errorf(env, "unknown change %s", type);
        return;
    }
    rv = raft_propose_conf(r, &cc, &index);
    if (rv != 0) {
        errorf(env, "%s", rfs_strerror(rv));
        return;
    }
    interact_outf(env->out, "ok index=%llu\n", (unsigned long long)index);
}

/* tick ID [N]: N raw ticks (default 1). */
static void cmd_tick(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    uint64_t n = 1;
    if (r == NULL || (positional(cmd, 1) != NULL && !u64_arg(env, "n", positional(cmd, 1), &n))) {
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        raft_tick(r);
    }
}

/* tick-heartbeat ID [N]: N heartbeat intervals (default 1). */
static void cmd_tick_heartbeat(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    uint64_t n = 1;
    if (r == NULL || (positional(cmd, 1) != NULL && !u64_arg(env, "n", positional(cmd, 1), &n))) {
        return;
    }
    for (uint64_t i = 0; i < n * node->cfg.heartbeat_ticks; i++) {
        raft_tick(r);
    }
}

/* tick-election ID: tick until the node acts on an election timeout (campaigns, or as
 * leader steps down for lack of quorum or ends a leadership transfer), logged at INFO. The timeout
 * is random in [e, 2e), so this stops within 2e ticks; it prints how many it took. */
static void cmd_tick_election(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    unsigned limit;
    unsigned i;
    if (r == NULL) {
        return;
    }
    limit = 2 * node->cfg.election_ticks;
    for (i = 1; i <= limit; i++) {
        unsigned before = env->info_lines;
        raft_tick(r);
        if (env->info_lines != before) {
            break;
        }
    }
    interact_outf(env->out, "ticked %u\n", i > limit ? limit : i);
}

static void cmd_process_ready(struct interact_env *env, const struct interact_cmd *cmd)
{
    unsigned n = n_positional(cmd);
    if (n == 0) {
        errorf(env, "usage: process-ready ID...");
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        struct env_node *node = node_arg(env, positional(cmd, i));
        if (node == NULL) {
            return;
        }
        env_process_ready(env, node);
    }
}

/* deliver-msgs [ID...] [drop=(ID...)] */
static void cmd_deliver_msgs(struct interact_env *env, const struct interact_cmd *cmd)
{
    raft_id drop[INTERACT_MAX_VALS];
    unsigned n_drop;
    unsigned n = n_positional(cmd);
    if (!ids_opt(env, cmd, "drop", drop, &n_drop)) {
        return;
    }
    for (unsigned i = 0; i < n_drop; i++) {
        env_deliver(env, drop[i], true);
    }
    if (n == 0 && n_drop == 0) {
        for (raft_id id = 1; id <= env->n_nodes; id++) {
            env_deliver(env, id, false);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        struct env_node *node = node_arg(env, positional(cmd, i));
        if (node == NULL) {
            return;
        }
        env_deliver(env, node->id, false);
    }
}

/* stabilize [ID...]: handle readies and deliver messages among the given nodes (all by
 * default) until none has anything left to do. */
static void cmd_stabilize(struct interact_env *env, const struct interact_cmd *cmd)
{
    raft_id ids[RAFT_MAX_NODES];
    unsigned n = n_positional(cmd);
    if (n > RAFT_MAX_NODES) {
        errorf(env, "too many nodes");
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        struct env_node *node = node_arg(env, positional(cmd, i));
        if (node == NULL) {
            return;
        }
        ids[i] = node->id;
    }
    if (n == 0) {
        for (raft_id id = 1; id <= env->n_nodes; id++) {
            ids[n++] = id;
        }
    }
    for (unsigned round = 0; round < STABILIZE_MAX_ROUNDS; round++) {
        bool busy = false;
        for (unsigned i = 0; i < n; i++) {
            struct env_node *node = env_node_get(env, ids[i]);
            if (node->r != NULL && raft_has_ready(node->r)) {
                env_process_ready(env, node);
                busy = true;
            }
        }
        for (unsigned i = 0; i < n; i++) {
            busy |= env_deliver(env, ids[i], false);
        }
        if (!busy) {
            return;
        }
    }
    errorf(env, "not stable after %d rounds", STABILIZE_MAX_ROUNDS);
}

static void cmd_status(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = node_arg(env, positional(cmd, 0));
    struct raft *r;
    struct rfs_buf blob;
    if (node == NULL) {
        return;
    }
    r = node->r;
    if (r == NULL) {
        interact_outf(env->out, "%llu: down\n", (unsigned long long)node->id);
        return;
    }
    interact_outf(env->out, "%llu: %s term=%llu leader=%llu commit=%llu applied=%llu\n",
                  (unsigned long long)node->id, raft_role_name(raft_role_get(r)),
                  (unsigned long long)raft_term_get(r), (unsigned long long)raft_leader_get(r),
                  (unsigned long long)raft_commit_get(r), (unsigned long long)raft_applied_get(r));
    interact_outf(env->out, "  log %llu..%llu ", (unsigned long long)raft_first_index(r),
                  (unsigned long long)raft_last_index(r));
    interact_fmt_conf(env->out, raft_conf_get(r));
    interact_outf(env->out, "\n");
    if (raft_role_get(r) == RAFT_LEADER) {
        const struct raft_conf *c = raft_conf_get(r);
        interact_outf(env->out, "  match");
        for (raft_id id = 1; id <= RAFT_MAX_NODES; id++) {
            if (raft_conf_is_voter(c, id) || raft_conf_is_learner(c, id)) {
                interact_outf(env->out, " %llu=%llu", (unsigned long long)id,
                              (unsigned long long)raft_match_get(r, id));
            }
        }
        interact_outf(env->out, "\n");
    }
    if (env_sm_blob(&node->sm, node->sm.applied, &blob) == 0) {
        interact_outf(env->out, "  state machine applied=%llu data=\"",
                      (unsigned long long)node->sm.applied);
        interact_fmt_bytes(env->out, blob.base, blob.len);
        interact_outf(env->out, "\"\n");
        rfs_free(blob.base);
    }
}

static void cmd_raft_log(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    raft_index first;
    if (r == NULL) {
        return;
    }
    first = raft_first_index(r);
    if (first > 1) {
        interact_outf(env->out, "compacted through %llu/%llu\n",
                      (unsigned long long)raft_term_at(r, first - 1),
                      (unsigned long long)(first - 1));
    }
    if (raft_last_index(r) < first) {
        interact_outf(env->out, "no entries\n");
    }
    for (raft_index i = first; i <= raft_last_index(r); i++) {
        interact_fmt_entry(env->out, raft_entry_at(r, i));
        interact_outf(env->out, "\n");
    }
}

static void cmd_disk(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = node_arg(env, positional(cmd, 0));
    if (node != NULL) {
        env_print_disk(env, node);
    }
}

static void cmd_crash(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    if (node != NULL) {
        env_node_crash(node);
    }
}

static void cmd_restart(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = node_arg(env, positional(cmd, 0));
    if (node == NULL) {
        return;
    }
    if (node->r != NULL) {
        errorf(env, "node %llu is running", (unsigned long long)node->id);
        return;
    }
    if (env_node_start(node) == 0) {
        interact_outf(env->out, "restarted from disk: ");
        env_print_disk(env, node);
    }
}

/* compact ID INDEX [keep=K]: the state machine snapshots itself at INDEX.
 * compact-lazy ID INDEX [keep=K]: a compaction point without bytes (the state machine holds
 * its state durably); a follower that needs a snapshot then waits for supply-snapshot. */
static void compact(struct interact_env *env, const struct interact_cmd *cmd, bool lazy)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    uint64_t index;
    uint64_t keep = 0;
    struct rfs_buf blob = {NULL, 0};
    int rv;
    if (r == NULL || !u64_arg(env, "index", positional(cmd, 1), &index) ||
        !u64_opt(env, cmd, "keep", &keep)) {
        return;
    }
    if (lazy) {
        rv = raft_snapshot_take_lazy(r, index, keep);
    } else if (env_sm_blob(&node->sm, index, &blob) != 0) {
        errorf(env, "state machine cannot produce a snapshot at %llu", (unsigned long long)index);
        return;
    } else {
        rv = raft_snapshot_take(r, index, blob.base, blob.len, keep);
        rfs_free(blob.base);
    }
    if (rv != 0) {
        errorf(env, "%s", rfs_strerror(rv));
        return;
    }
    /* The snapshot is durable before the log below it is dropped from the disk. */
    env_disk_set_snapshot(&node->disk, raft_snapshot_get(r));
}

static void cmd_compact(struct interact_env *env, const struct interact_cmd *cmd)
{
    compact(env, cmd, false);
}

static void cmd_compact_lazy(struct interact_env *env, const struct interact_cmd *cmd)
{
    compact(env, cmd, true);
}

/* supply-snapshot ID: if the core wants snapshot bytes, the state machine makes them at the
 * applied index (kept in memory only, as the server does). */
static void cmd_supply_snapshot(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    raft_index applied;
    struct rfs_buf blob;
    int rv;
    if (r == NULL) {
        return;
    }
    if (!raft_snapshot_wanted(r)) {
        interact_outf(env->out, "not wanted\n");
        return;
    }
    applied = raft_applied_get(r);
    if (env_sm_blob(&node->sm, applied, &blob) != 0) {
        errorf(env, "state machine cannot produce a snapshot at %llu", (unsigned long long)applied);
        return;
    }
    rv = raft_snapshot_take(r, applied, blob.base, blob.len, 0);
    rfs_free(blob.base);
    if (rv != 0) {
        errorf(env, "%s", rfs_strerror(rv));
        return;
    }
    interact_outf(env->out, "supplied %zu bytes at %llu; wanted now %s\n", blob.len,
                  (unsigned long long)applied, raft_snapshot_wanted(r) ? "yes" : "no");
}

static void cmd_read_index(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    uint64_t ctx;
    int rv;
    if (r == NULL || !u64_arg(env, "ctx", positional(cmd, 1), &ctx)) {
        return;
    }
    rv = raft_read_index(r, ctx);
    if (rv != 0) {
        errorf(env, "%s", rfs_strerror(rv));
    }
}

static void cmd_transfer_leadership(struct interact_env *env, const struct interact_cmd *cmd)
{
    struct env_node *node = live_arg(env, cmd, 0);
    struct raft *r = node != NULL ? node->r : NULL;
    uint64_t to;
    int rv;
    if (r == NULL || !u64_arg(env, "to", positional(cmd, 1), &to)) {
        return;
    }
    rv = raft_transfer_leader(r, to);
    if (rv != 0) {
        errorf(env, "%s", rfs_strerror(rv));
    }
}

static void cmd_isolate(struct interact_env *env, const struct interact_cmd *cmd)
{
    for (unsigned i = 0; i < n_positional(cmd); i++) {
        struct env_node *node = node_arg(env, positional(cmd, i));
        if (node == NULL) {
            return;
        }
        node->isolated = true;
    }
}

static void cmd_heal(struct interact_env *env, const struct interact_cmd *cmd)
{
    (void)cmd;
    for (unsigned i = 0; i < env->n_nodes; i++) {
        env->nodes[i].isolated = false;
    }
}

static void cmd_log_level(struct interact_env *env, const struct interact_cmd *cmd)
{
    enum rfs_log_level level;
    const char *name = positional(cmd, 0);
    if (name == NULL || rfs_log_level_parse(name, &level) != 0) {
        errorf(env, "usage: log-level error|warn|info|debug|trace");
        return;
    }
    env->level = (int)level;
}

struct command {
    const char *name;
    void (*run)(struct interact_env *env, const struct interact_cmd *cmd);
};

static const struct command commands[] = {
    {"add-nodes", cmd_add_nodes},
    {"campaign", cmd_campaign},
    {"propose", cmd_propose},
    {"propose-conf-change", cmd_propose_conf_change},
    {"tick", cmd_tick},
    {"tick-heartbeat", cmd_tick_heartbeat},
    {"tick-election", cmd_tick_election},
    {"process-ready", cmd_process_ready},
    {"deliver-msgs", cmd_deliver_msgs},
    {"stabilize", cmd_stabilize},
    {"status", cmd_status},
    {"raft-log", cmd_raft_log},
    {"disk", cmd_disk},
    {"crash", cmd_crash},
    {"restart", cmd_restart},
    {"compact", cmd_compact},
    {"compact-lazy", cmd_compact_lazy},
    {"supply-snapshot", cmd_supply_snapshot},
    {"read-index", cmd_read_index},
    {"transfer-leadership", cmd_transfer_leadership},
    {"isolate", cmd_isolate},
    {"heal", cmd_heal},
    {"log-level", cmd_log_level},
};

void interact_env_run(struct interact_env *env, const struct interact_cmd *cmd,
                      struct interact_out *out)
{
    size_t start = out->len;
    bool found = false;
    env->out = out;
    env->indent = 0;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, cmd->name) == 0) {
            commands[i].run(env, cmd);
            found = true;
            break;
        }
    }
    if (!found) {
        errorf(env, "unknown command %s", cmd->name);
    }
    if (out->len == start) {
        interact_outf(out, "ok\n");
    }
    env->out = NULL;
}
