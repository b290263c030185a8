/* Deterministic cluster simulation: see sim.h.
 *
 * Time advances one millisecond per step; every 10 ms each live server ticks. A message
 * sent at time t arrives at t + delay (random up to max_delay, so messages reorder), unless
 * dropped; some are delivered twice. Each server's "disk" is what it persisted from its
 * ready batches; a crash throws away the Raft instance and its state machine, and a
 * restart rebuilds both from the disk (state machine from the snapshot, then the log).
 *
 * Checks after every step: one leader per term; commit and applied never go back within
 * a run of a server, and the persisted commit never goes back; logs match (same index and
 * term means same entry and same prefix); a new leader holds every committed entry; every
 * server applies the same entry and reaches the same state at each index; no command is
 * applied at two indexes; a ReadIndex answer covers every write acknowledged before it
 * was asked. */
#include "sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "raft/internal.h"

#define SIM_TICK_MS 10

struct sim_disk {
    struct raft_hard_state hs;
    bool has_snap;
    struct raft_snapshot snap;
    struct raft_entry *ents;
    size_t n;
    size_t cap;
};

struct sim_pending {
    raft_index index;
    raft_term term;
    uint64_t vhash;
};

struct sim_read {
    uint64_t ctx;
    raft_index min_index;
};

struct sim_node {
    raft_id id;
    bool up;
    struct raft *r;
    struct sim_disk disk;
    /* State machine: a hash chain over applied entries. */
    raft_index sm_applied;
    uint64_t sm_hash;
    /* What the state machine made durable itself, for compaction points without bytes
     * (raft_snapshot_take_lazy): a restart starts from here when the disk's snapshot is
     * one of those. */
    raft_index dur_applied;
    uint64_t dur_hash;
    raft_index last_commit;
    raft_index last_applied;
    bool was_leader;
    raft_term leader_term;
    struct sim_pending *props;
    size_t n_props;
    size_t cap_props;
    struct sim_read *reads;
    size_t n_reads;
    size_t cap_reads;
};

struct sim_msg {
    struct raft_message m;
    uint64_t at;
    uint64_t order;
};

struct sim_gentry {
    bool set;
    raft_term term;
    uint8_t type;
    uint64_t dhash;
    uint64_t smhash;
};

struct sim {
    struct sim_options o;
    uint64_t rng;
    uint64_t now;
    unsigned n_nodes;
    struct sim_node nodes[SIM_MAX_NODES + 1];
    struct sim_msg *msgs;
    size_t n_msgs;
    size_t cap_msgs;
    uint64_t msg_order;
    unsigned drop_permille;
    unsigned dup_permille;
    unsigned max_delay;
    bool cut[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];

    struct sim_gentry *glog;
    size_t cap_glog;
    raft_id *term_leader;
    size_t cap_terms;
    /* Value hash -> index applied at, open addressing; and acked values. */
    uint64_t *vkeys;
    raft_index *vidx;
    bool *vacked;
    size_t cap_v;
    size_t n_v;
    raft_index global_commit;
    raft_index max_acked_index;
    uint64_t read_ctx;
    uint64_t value_counter;
    unsigned long reads_done;
    unsigned long msgs_sent;
    unsigned long bytes_sent;
    unsigned long snapshots_installed;
    unsigned long snapshots_supplied; /* bytes made for a compaction point */
    unsigned long steps;
    char violation[512];
};

static uint64_t sim_rand(struct sim *s)
{
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned sim_randn(struct sim *s, unsigned n)
{
    return n == 0 ? 0 : (unsigned)(sim_rand(s) % n);
}

static bool sim_chance(struct sim *s, unsigned per_million)
{
    return sim_rand(s) % 1000000 < per_million;
}

static uint64_t fnv(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 1099511628211ull;
    }
    return h;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "sim: out of memory\n");
        abort();
    }
    return q;
}

static void violate(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violate(struct sim *s, const char *fmt, ...)
{
    va_list ap;
    char msg[400];
    if (s->violation[0] != '\0') {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(s->violation, sizeof s->violation, "t=%llums: %s", (unsigned long long)s->now, msg);
}

const char *sim_violation(const struct sim *s)
{
    return s->violation[0] ? s->violation : NULL;
}

void sim_options_default(struct sim_options *o, unsigned n_voters)
{
    memset(o, 0, sizeof *o);
    o->n_voters = n_voters;
    o->election_ticks = 10;
    o->heartbeat_ticks = 1;
    o->max_inflight = 8;
    o->snapshot_chunk = 64;
    o->pre_vote = true;
    o->check_quorum = true;
}

static void sim_core_log(void *data, int level, const char *msg)
{
    struct sim *s = data;
    if (s->o.verbose && level <= RFS_LOG_INFO) {
        fprintf(stderr, "[%6llu] %s\n", (unsigned long long)s->now, msg);
    }
}

/* ---- the simulated disk ---- */

static void entry_copy(struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    dst->data.base = NULL;
    if (src->data.len > 0) {
        dst->data.base = xrealloc(NULL, src->data.len);
        memcpy(dst->data.base, src->data.base, src->data.len);
    }
}

static raft_index disk_first(const struct sim_disk *d)
{
    return (d->has_snap ? d->snap.meta.index : 0) + 1;
}

static void disk_truncate(struct sim_disk *d, raft_index from)
{
    raft_index first = disk_first(d);
    size_t keep = from <= first ? 0 : (size_t)(from - first);
    while (d->n > keep) {
        free(d->ents[--d->n].data.base);
    }
}

static void disk_append(struct sim *s, struct sim_node *nd, const struct raft_entry *e)
{
    struct sim_disk *d = &nd->disk;
    raft_index next = disk_first(d) + d->n;
    if (e->index < disk_first(d)) {
        violate(s, "node %llu: persisting entry %llu below the snapshot",
                (unsigned long long)nd->id, (unsigned long long)e->index);
        return;
    }
    if (e->index > next) {
        violate(s, "node %llu: persisting entry %llu leaves a gap after %llu",
                (unsigned long long)nd->id, (unsigned long long)e->index,
                (unsigned long long)(next - 1));
        return;
    }
    disk_truncate(d, e->index);
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->ents = xrealloc(d->ents, d->cap * sizeof *d->ents);
    }
    entry_copy(&d->ents[d->n++], e);
}

static void disk_save_snapshot(struct sim_disk *d, const struct raft_snapshot *snap)
{
    free(d->snap.data.base);
    d->snap = *snap;
    d->snap.data.base = NULL;
    if (snap->data.len > 0) {
        d->snap.data.base = xrealloc(NULL, snap->data.len);
        memcpy(d->snap.data.base, snap->data.base, snap->data.len);
    }
    d->has_snap = true;
}

/* Keep only entries after the snapshot; if the stored log does not hold the snapshot's
 * last entry with its term, drop it all (the contract in raft.h). */
static void disk_compact(struct sim_disk *d, raft_index index, raft_term term, raft_index old_first)
{
    size_t drop;
    bool matches =
        index >= old_first && index < old_first + d->n && d->ents[index - old_first].term == term;
    if (!matches) {
        for (size_t i = 0; i < d->n; i++) {
            free(d->ents[i].data.base);
        }
        d->n = 0;
        return;
    }
    drop = (size_t)(index - old_first + 1);
    for (size_t i = 0; i < drop; i++) {
        free(d->ents[i].data.base);
    }
    memmove(d->ents, d->ents + drop, (d->n - drop) * sizeof *d->ents);
    d->n -= drop;
}

static void disk_free(struct sim_disk *d)
{
    disk_truncate(d, 0);
    free(d->ents);
    free(d->snap.data.base);
    memset(d, 0, sizeof *d);
}

/* ---- global records ---- */

static struct sim_gentry *glog_at(struct sim *s, raft_index i)
{
    if (i >= s->cap_glog) {
        size_t cap = s->cap_glog ? s->cap_glog : 256;
        while (cap <= i) {
            cap *= 2;
        }
        s->glog = xrealloc(s->glog, cap * sizeof *s->glog);
        memset(s->glog + s->cap_glog, 0, (cap - s->cap_glog) * sizeof *s->glog);
        s->cap_glog = cap;
    }
    return &s->glog[i];
}

static void check_term_leader(struct sim *s, raft_term term, raft_id id)
{
    if (term >= s->cap_terms) {
        size_t cap = s->cap_terms ? s->cap_terms : 64;
        while (cap <= term) {
            cap *= 2;
        }
        s->term_leader = xrealloc(s->term_leader, cap * sizeof *s->term_leader);
        memset(s->term_leader + s->cap_terms, 0, (cap - s->cap_terms) * sizeof *s->term_leader);
        s->cap_terms = cap;
    }
    if (s->term_leader[term] == 0) {
        s->term_leader[term] = id;
    } else if (s->term_leader[term] != id) {
        violate(s, "two leaders in term %llu: %llu and %llu", (unsigned long long)term,
                (unsigned long long)s->term_leader[term], (unsigned long long)id);
    }
}

/* Value table: find the slot of a value hash. */
static size_t vslot(struct sim *s, uint64_t key)
{
    size_t mask = s->cap_v - 1;
    size_t i = (size_t)key & mask;
    while (s->vkeys[i] != 0 && s->vkeys[i] != key) {
        i = (i + 1) & mask;
    }
    return i;
}

static void vgrow(struct sim *s)
{
    uint64_t *keys = s->vkeys;
    raft_index *idx = s->vidx;
    bool *acked = s->vacked;
    size_t old = s->cap_v;
    s->cap_v = old ? old * 2 : 1024;
    s->vkeys = calloc(s->cap_v, sizeof *s->vkeys);
    s->vidx = calloc(s->cap_v, sizeof *s->vidx);
    s->vacked = calloc(s->cap_v, sizeof *s->vacked);
    if (s->vkeys == NULL || s->vidx == NULL || s->vacked == NULL) {
        abort();
    }
    for (size_t i = 0; i < old; i++) {
        if (keys[i] != 0) {
            size_t j = vslot(s, keys[i]);
            s->vkeys[j] = keys[i];
            s->vidx[j] = idx[i];
            s->vacked[j] = acked[i];
        }
    }
    free(keys);
    free(idx);
    free(acked);
}

static size_t vfind_or_add(struct sim *s, uint64_t key)
{
    size_t i;
    if (key == 0) {
        key = 1;
    }
    if ((s->n_v + 1) * 2 > s->cap_v) {
        vgrow(s);
    }
    i = vslot(s, key);
    if (s->vkeys[i] == 0) {
        s->vkeys[i] = key;
        s->vidx[i] = 0;
        s->vacked[i] = false;
        s->n_v++;
    }
    return i;
}

/* ---- state machine ---- */

static uint64_t sm_mix(uint64_t h, uint8_t type, uint64_t dhash)
{
    return (h ^ dhash ^ ((uint64_t)type << 56)) * 0x100000001B3ull + 0x9E3779B97F4A7C15ull;
}

static void sm_snapshot_encode(const struct sim_node *nd, unsigned char out[16])
{
    memcpy(out, &nd->sm_applied, 8);
    memcpy(out + 8, &nd->sm_hash, 8);
}

static void sm_restore(struct sim *s, struct sim_node *nd, const struct raft_snapshot *snap)
{
    struct sim_gentry *g;
    if (snap->data.len != 16) {
        violate(s, "node %llu: snapshot of %zu bytes, expected 16", (unsigned long long)nd->id,
                snap->data.len);
        return;
    }
    memcpy(&nd->sm_applied, snap->data.base, 8);
    memcpy(&nd->sm_hash, (char *)snap->data.base + 8, 8);
    if (nd->sm_applied != snap->meta.index) {
        violate(s, "node %llu: snapshot meta index %llu but state at %llu",
                (unsigned long long)nd->id, (unsigned long long)snap->meta.index,
                (unsigned long long)nd->sm_applied);
    }
    g = glog_at(s, nd->sm_applied);
    if (nd->sm_applied > 0 && g->set && g->smhash != nd->sm_hash) {
        violate(s, "node %llu: snapshot state at %llu differs from what others applied",
                (unsigned long long)nd->id, (unsigned long long)nd->sm_applied);
    }
}

static void sm_apply(struct sim *s, struct sim_node *nd, const struct raft_entry *e)
{
    uint64_t dhash = fnv(e->data.base, e->data.len);
    struct sim_gentry *g;
    if (e->index != nd->sm_applied + 1) {
        violate(s, "node %llu: applied %llu after %llu", (unsigned long long)nd->id,
                (unsigned long long)e->index, (unsigned long long)nd->sm_applied);
        return;
    }
    nd->sm_applied = e->index;
    nd->sm_hash = sm_mix(nd->sm_hash, e->type, dhash);
    g = glog_at(s, e->index);
    if (!g->set) {
        g->set = true;
        g->term = e->term;
        g->type = e->type;
        g->dhash = dhash;
        g->smhash = nd->sm_hash;
        if (e->type == RAFT_ENTRY_NORMAL) {
            size_t v = vfind_or_add(s, dhash);
            if (s->vidx[v] != 0 && s->vidx[v] != e->index) {
                violate(s, "command applied twice: at %llu and %llu",
                        (unsigned long long)s->vidx[v], (unsigned long long)e->index);
            }
            s->vidx[v] = e->index;
        }
    } else if (g->term != e->term || g->dhash != dhash || g->type != e->type ||
               g->smhash != nd->sm_hash) {
        violate(s, "node %llu applied a different entry or state at %llu (term %llu vs %llu)",
                (unsigned long long)nd->id, (unsigned long long)e->index,
                (unsigned long long)e->term, (unsigned long long)g->term);
    }
    /* Acknowledge the proposals this node made at this index. */
    for (size_t i = 0; i < nd->n_props;) {
        struct sim_pending *p = &nd->props[i];
        if (p->index == e->index) {
            if (p->term == e->term && p->vhash == dhash) {
                size_t v = vfind_or_add(s, dhash);
                s->vacked[v] = true;
                if (e->index > s->max_acked_index) {
                    s->max_acked_index = e->index;
                }
            }
            *p = nd->props[--nd->n_props];
        } else if (p->index < e->index) {
            *p = nd->props[--nd->n_props];
        } else {
            i++;
        }
    }
}

/* ---- network ---- */

static void net_enqueue(struct sim *s, const struct raft_message *m, uint64_t at)
{
    struct sim_msg *sm;
    if (s->n_msgs == s->cap_msgs) {
        s->cap_msgs = s->cap_msgs ? s->cap_msgs * 2 : 256;
        s->msgs = xrealloc(s->msgs, s->cap_msgs * sizeof *s->msgs);
    }
    sm = &s->msgs[s->n_msgs++];
    sm->m = *m;
    sm->at = at;
    sm->order = s->msg_order++;
    if (m->n_entries > 0) {
        sm->m.entries = xrealloc(NULL, m->n_entries * sizeof *m->entries);
        for (unsigned i = 0; i < m->n_entries; i++) {
            entry_copy(&sm->m.entries[i], &m->entries[i]);
        }
    } else {
        sm->m.entries = NULL;
    }
    sm->m.data.base = NULL;
    if (m->data.len > 0) {
        sm->m.data.base = xrealloc(NULL, m->data.len);
        memcpy(sm->m.data.base, m->data.base, m->data.len);
    }
}

static void msg_free(struct raft_message *m)
{
    for (unsigned i = 0; i < m->n_entries; i++) {
        free(m->entries[i].data.base);
    }
    free(m->entries);
    free(m->data.base);
}

static void net_send(struct sim *s, const struct raft_message *m)
{
    unsigned copies = 1;
    s->msgs_sent++;
    s->bytes_sent += 64 + m->data.len;
    for (unsigned i = 0; i < m->n_entries; i++) {
        s->bytes_sent += 24 + m->entries[i].data.len;
    }
    if (m->to == 0 || m->to > s->n_nodes) {
        return;
    }
    if (s->drop_permille > 0 && sim_randn(s, 1000) < s->drop_permille) {
        return;
    }
    if (s->dup_permille > 0 && sim_randn(s, 1000) < s->dup_permille) {
        copies = 2;
    }
    for (unsigned c = 0; c < copies; c++) {
        uint64_t delay = 1 + sim_randn(s, s->max_delay > 0 ? s->max_delay : 1);
        net_enqueue(s, m, s->now + delay);
    }
}

/* ---- servers ---- */

static void node_start(struct sim *s, struct sim_node *nd)
{
    struct raft_config cfg;
    struct raft_restore rs;
    struct raft_conf boot;
    char errmsg[RFS_ERRMSG_SIZE];
    int rv;

    raft_config_default(&cfg, nd->id);
    cfg.election_ticks = s->o.election_ticks;
    cfg.heartbeat_ticks = s->o.heartbeat_ticks;
    cfg.max_inflight = s->o.max_inflight;
    cfg.snapshot_chunk = s->o.snapshot_chunk;
    cfg.pre_vote = s->o.pre_vote;
    cfg.check_quorum = s->o.check_quorum;
    cfg.seed = sim_rand(s);
    cfg.logger.data = s;
    cfg.logger.log = sim_core_log;

    memset(&boot, 0, sizeof boot);
    for (unsigned i = 1; i <= s->o.n_voters; i++) {
        boot.voters[boot.n_voters++] = i;
    }
    memset(&rs, 0, sizeof rs);
    rs.hard_state = nd->disk.hs;
    rs.snapshot = nd->disk.has_snap ? &nd->disk.snap : NULL;
    rs.entries = nd->disk.ents;
    rs.n_entries = (unsigned)nd->disk.n;
    /* Spare servers start empty and learn the configuration from a leader. */
    rs.bootstrap = nd->id <= s->o.n_voters ? &boot : NULL;

    nd->sm_applied = 0;
    nd->sm_hash = 0;
    if (nd->disk.has_snap && nd->disk.snap.in_sm) {
        if (nd->dur_applied < nd->disk.snap.meta.index) {
            violate(s,
                    "node %llu: compaction point %llu without bytes, state machine durable "
                    "only at %llu",
                    (unsigned long long)nd->id, (unsigned long long)nd->disk.snap.meta.index,
                    (unsigned long long)nd->dur_applied);
        }
        nd->sm_applied = nd->dur_applied;
        nd->sm_hash = nd->dur_hash;
        rs.applied = nd->dur_applied;
    } else if (nd->disk.has_snap) {
        sm_restore(s, nd, &nd->disk.snap);
    }
    rv = raft_new(&nd->r, &cfg, &rs, errmsg);
    if (rv != 0) {
        violate(s, "node %llu: restart failed: %s", (unsigned long long)nd->id, errmsg);
        nd->r = NULL;
        return;
    }
    nd->up = true;
    nd->last_commit = raft_commit_get(nd->r);
    nd->last_applied = raft_applied_get(nd->r);
    nd->was_leader = false;
    nd->n_props = 0;
    nd->n_reads = 0;
}

static void node_stop(struct sim_node *nd)
{
    raft_free(nd->r);
    nd->r = NULL;
    nd->up = false;
    nd->n_props = 0;
    nd->n_reads = 0;
}

static void handle_reads(struct sim *s, struct sim_node *nd, const struct raft_ready *rd)
{
    for (unsigned i = 0; i < rd->n_reads; i++) {
        const struct raft_read_state *rs = &rd->reads[i];
        for (size_t j = 0; j < nd->n_reads; j++) {
            if (nd->reads[j].ctx != rs->ctx) {
                continue;
            }
            if (rs->index < nd->reads[j].min_index) {
                violate(s,
                        "stale read on %llu: read index %llu but a write at %llu was "
                        "acknowledged before the read began",
                        (unsigned long long)nd->id, (unsigned long long)rs->index,
                        (unsigned long long)nd->reads[j].min_index);
            }
            if (rs->index > s->global_commit && rs->index > raft_commit_get(nd->r)) {
                violate(s, "read index %llu beyond any commit", (unsigned long long)rs->index);
            }
            s->reads_done++;
            nd->reads[j] = nd->reads[--nd->n_reads];
            break;
        }
    }
}

/* Persist, send, apply, advance. With crash_after_write, only a random prefix of the
 * batch reaches the disk and the server dies before sending anything. */
static void node_process(struct sim *s, struct sim_node *nd, bool crash_mid_write)
{
    for (int round = 0; round < 64 && nd->up && raft_has_ready(nd->r); round++) {
        struct raft_ready rd;
        unsigned keep;
        raft_ready(nd->r, &rd);
        keep = crash_mid_write ? sim_randn(s, rd.n_entries + 3) : rd.n_entries + 2;
        if (rd.snapshot != NULL && keep > 0) {
            raft_index old_first = disk_first(&nd->disk);
            disk_save_snapshot(&nd->disk, rd.snapshot);
            disk_compact(&nd->disk, rd.snapshot->meta.index, rd.snapshot->meta.term, old_first);
        }
        for (unsigned i = 0; i < rd.n_entries && i + 1 < keep; i++) {
            disk_append(s, nd, &rd.entries[i]);
        }
        if (rd.has_hard_state && keep >= rd.n_entries + 2) {
            if (rd.hard_state.commit < nd->disk.hs.commit) {
                violate(s, "node %llu: persisted commit went back from %llu to %llu",
                        (unsigned long long)nd->id, (unsigned long long)nd->disk.hs.commit,
                        (unsigned long long)rd.hard_state.commit);
            }
            if (rd.hard_state.term < nd->disk.hs.term) {
                violate(s, "node %llu: persisted term went back", (unsigned long long)nd->id);
            }
            nd->disk.hs = rd.hard_state;
        }
        if (crash_mid_write) {
            node_stop(nd);
            return;
        }
        for (unsigned i = 0; i < rd.n_msgs; i++) {
            net_send(s, &rd.msgs[i]);
        }
        if (rd.snapshot != NULL) {
            sm_restore(s, nd, rd.snapshot);
            s->snapshots_installed++;
        }
        for (unsigned i = 0; i < rd.n_committed; i++) {
            sm_apply(s, nd, &rd.committed[i]);
        }
        handle_reads(s, nd, &rd);
        raft_advance(nd->r, &rd);
        if (s->o.compact_every > 0 &&
            raft_applied_get(nd->r) >= raft_first_index(nd->r) + s->o.compact_every) {
            (void)sim_snapshot(s, nd->id, sim_randn(s, 4));
        }
        if (raft_snapshot_wanted(nd->r)) {
            /* A follower needs the bytes of a compaction point: made now, at the applied
             * index, kept in memory only (the disk keeps the compaction point). */
            unsigned char data[16];
            sm_snapshot_encode(nd, data);
            if (raft_snapshot_take(nd->r, raft_applied_get(nd->r), data, sizeof data,
                                   sim_randn(s, 4)) != 0 ||
                raft_snapshot_wanted(nd->r)) {
                violate(s, "node %llu: could not supply snapshot bytes at %llu",
                        (unsigned long long)nd->id, (unsigned long long)raft_applied_get(nd->r));
            }
            s->snapshots_supplied++;
        }
    }
}

int sim_snapshot(struct sim *s, raft_id id, raft_index keep)
{
    struct sim_node *nd = &s->nodes[id];
    unsigned char data[16];
    raft_index index;
    raft_index old_first;
    const struct raft_snapshot *snap;
    int rv;
    if (!nd->up) {
        return RFS_ESTOPPED;
    }
    index = raft_applied_get(nd->r);
    if (nd->sm_applied != index) {
        violate(s, "node %llu: core applied %llu but state machine %llu", (unsigned long long)id,
                (unsigned long long)index, (unsigned long long)nd->sm_applied);
        return RFS_EINVAL;
    }
    if (sim_randn(s, 2) == 0) {
        /* A compaction point: the state machine syncs itself, no bytes. */
        rv = raft_snapshot_take_lazy(nd->r, index, keep);
        if (rv != 0) {
            return rv;
        }
        nd->dur_applied = nd->sm_applied;
        nd->dur_hash = nd->sm_hash;
    } else {
        sm_snapshot_encode(nd, data);
        rv = raft_snapshot_take(nd->r, index, data, sizeof data, keep);
        if (rv != 0) {
            return rv;
        }
    }
    /* Like the real server: snapshot durable first, then old log dropped. */
    snap = raft_snapshot_get(nd->r);
    old_first = disk_first(&nd->disk);
    disk_save_snapshot(&nd->disk, snap);
    disk_compact(&nd->disk, snap->meta.index, snap->meta.term, old_first);
    return 0;
}

/* ---- invariants ---- */

static bool entries_equal(const struct raft_entry *a, const struct raft_entry *b)
{
    return a->term == b->term && a->type == b->type && a->data.len == b->data.len &&
           (a->data.len == 0 || memcmp(a->data.base, b->data.base, a->data.len) == 0);
}

static void check_log_matching(struct sim *s, struct sim_node *a, struct sim_node *b, bool full)
{
    raft_index lo = raft_first_index(a->r);
    raft_index hi = raft_last_index(a->r);
    raft_index i;
    raft_index stop;
    if (raft_first_index(b->r) > lo) {
        lo = raft_first_index(b->r);
    }
    if (raft_last_index(b->r) < hi) {
        hi = raft_last_index(b->r);
    }
    for (i = hi; i >= lo && i > 0; i--) {
        if (raft_term_at(a->r, i) == raft_term_at(b->r, i)) {
            break;
        }
    }
    if (i < lo || i == 0) {
        return;
    }
    stop = (!full && i > lo + 64) ? i - 64 : lo;
    for (; i >= stop && i > 0; i--) {
        if (!entries_equal(raft_entry_at(a->r, i), raft_entry_at(b->r, i))) {
            violate(s, "log matching: nodes %llu and %llu differ at %llu",
                    (unsigned long long)a->id, (unsigned long long)b->id, (unsigned long long)i);
            return;
        }
    }
}

static void check_leader_completeness(struct sim *s, struct sim_node *nd)
{
    raft_index first = raft_first_index(nd->r);
    if (raft_last_index(nd->r) < s->global_commit) {
        violate(s, "leader %llu of term %llu lacks committed entries: last %llu < commit %llu",
                (unsigned long long)nd->id, (unsigned long long)raft_term_get(nd->r),
                (unsigned long long)raft_last_index(nd->r), (unsigned long long)s->global_commit);
        return;
    }
    for (raft_index i = first; i <= s->global_commit; i++) {
        struct sim_gentry *g = glog_at(s, i);
        if (g->set && raft_term_at(nd->r, i) != g->term) {
            violate(s, "leader %llu of term %llu has term %llu at committed index %llu (term %llu)",
                    (unsigned long long)nd->id, (unsigned long long)raft_term_get(nd->r),
                    (unsigned long long)raft_term_at(nd->r, i), (unsigned long long)i,
                    (unsigned long long)g->term);
            return;
        }
    }
}

static void check_invariants(struct sim *s)
{
    bool full = s->steps % 64 == 0;
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        struct sim_node *nd = &s->nodes[i];
        raft_index commit;
        if (!nd->up) {
            continue;
        }
        commit = raft_commit_get(nd->r);
        if (commit < nd->last_commit) {
            violate(s, "node %u: commit went back from %llu to %llu", i,
                    (unsigned long long)nd->last_commit, (unsigned long long)commit);
        }
        if (raft_applied_get(nd->r) < nd->last_applied) {
            violate(s, "node %u: applied went back", i);
        }
        nd->last_commit = commit;
        nd->last_applied = raft_applied_get(nd->r);
        if (commit > s->global_commit) {
            s->global_commit = commit;
        }
    }
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (!nd->up) {
            continue;
        }
        if (raft_role_get(nd->r) == RAFT_LEADER) {
            raft_term t = raft_term_get(nd->r);
            check_term_leader(s, t, nd->id);
            if (!nd->was_leader || nd->leader_term != t) {
                check_leader_completeness(s, nd);
            }
            nd->was_leader = true;
            nd->leader_term = t;
        } else {
            nd->was_leader = false;
        }
        for (unsigned j = i + 1; j <= s->n_nodes; j++) {
            if (s->nodes[j].up) {
                check_log_matching(s, nd, &s->nodes[j], full);
            }
        }
    }
}

/* ---- driving time ---- */

static int msg_cmp(const void *a, const void *b)
{
    const struct sim_msg *x = a;
    const struct sim_msg *y = b;
    if (x->at != y->at) {
        return x->at < y->at ? -1 : 1;
    }
    return x->order < y->order ? -1 : (x->order > y->order);
}

static void deliver_due(struct sim *s)
{
    size_t n_due = 0;
    struct sim_msg *due;
    size_t kept = 0;
    for (size_t i = 0; i < s->n_msgs; i++) {
        if (s->msgs[i].at <= s->now) {
            n_due++;
        }
    }
    if (n_due == 0) {
        return;
    }
    due = xrealloc(NULL, n_due * sizeof *due);
    n_due = 0;
    for (size_t i = 0; i < s->n_msgs; i++) {
        if (s->msgs[i].at <= s->now) {
            due[n_due++] = s->msgs[i];
        } else {
            s->msgs[kept++] = s->msgs[i];
        }
    }
    s->n_msgs = kept;
    qsort(due, n_due, sizeof *due, msg_cmp);
    for (size_t i = 0; i < n_due; i++) {
        struct raft_message *m = &due[i].m;
        struct sim_node *to = &s->nodes[m->to];
        if (to->up && m->from <= s->n_nodes && !s->cut[m->from][m->to]) {
            raft_step(to->r, m);
        }
        msg_free(m);
    }
    free(due);
}

static void step_once(struct sim *s)
{
    s->now++;
    s->steps++;
    deliver_due(s);
    if (s->now % SIM_TICK_MS == 0) {
        for (unsigned i = 1; i <= s->n_nodes; i++) {
            if (s->nodes[i].up) {
                raft_tick(s->nodes[i].r);
            }
        }
    }
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        if (s->nodes[i].up) {
            node_process(s, &s->nodes[i], false);
        }
    }
    check_invariants(s);
}

void sim_run(struct sim *s, unsigned ms)
{
    for (unsigned i = 0; i < ms && s->violation[0] == '\0'; i++) {
        step_once(s);
    }
}

/* ---- public API ---- */

struct sim *sim_new(const struct sim_options *o, uint64_t seed)
{
    struct sim *s = calloc(1, sizeof *s);
    if (s == NULL) {
        abort();
    }
    s->o = *o;
    s->rng = seed * 0xD1B54A32D192ED03ull + 12345;
    s->n_nodes = o->n_voters + o->n_spare;
    if (s->n_nodes > SIM_MAX_NODES || s->n_nodes == 0) {
        fprintf(stderr, "sim: 1..%d nodes supported\n", SIM_MAX_NODES);
        abort();
    }
    s->max_delay = 1;
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        s->nodes[i].id = i;
        node_start(s, &s->nodes[i]);
    }
    return s;
}

void sim_free(struct sim *s)
{
    if (s == NULL) {
        return;
    }
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        node_stop(&s->nodes[i]);
        disk_free(&s->nodes[i].disk);
        free(s->nodes[i].props);
        free(s->nodes[i].reads);
    }
    for (size_t i = 0; i < s->n_msgs; i++) {
        msg_free(&s->msgs[i].m);
    }
    free(s->msgs);
    free(s->glog);
    free(s->term_leader);
    free(s->vkeys);
    free(s->vidx);
    free(s->vacked);
    free(s);
}

void sim_set_unreliable(struct sim *s, unsigned drop_permille, unsigned dup_permille,
                        unsigned max_delay_ms)
{
    s->drop_permille = drop_permille;
    s->dup_permille = dup_permille;
    s->max_delay = max_delay_ms > 0 ? max_delay_ms : 1;
}

void sim_cut(struct sim *s, raft_id from, raft_id to, bool cut)
{
    s->cut[from][to] = cut;
}

void sim_disconnect(struct sim *s, raft_id id)
{
    for (unsigned j = 1; j <= s->n_nodes; j++) {
        s->cut[id][j] = s->cut[j][id] = true;
    }
}

void sim_connect(struct sim *s, raft_id id)
{
    for (unsigned j = 1; j <= s->n_nodes; j++) {
        s->cut[id][j] = s->cut[j][id] = false;
    }
}

void sim_partition(struct sim *s, uint32_t mask)
{
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        for (unsigned j = 1; j <= s->n_nodes; j++) {
            s->cut[i][j] = ((mask >> i) & 1) != ((mask >> j) & 1);
        }
    }
}

void sim_heal(struct sim *s)
{
    memset(s->cut, 0, sizeof s->cut);
}

void sim_crash(struct sim *s, raft_id id)
{
    if (s->nodes[id].up) {
        node_stop(&s->nodes[id]);
    }
}

void sim_crash_mid_write(struct sim *s, raft_id id)
{
    struct sim_node *nd = &s->nodes[id];
    if (!nd->up) {
        return;
    }
    if (raft_has_ready(nd->r)) {
        node_process(s, nd, true);
    }
    if (nd->up) {
        node_stop(nd);
    }
}

void sim_restart(struct sim *s, raft_id id)
{
    if (!s->nodes[id].up) {
        node_start(s, &s->nodes[id]);
    }
}

bool sim_is_up(const struct sim *s, raft_id id)
{
    return s->nodes[id].up;
}

raft_id sim_leader(const struct sim *s)
{
    raft_id best = 0;
    raft_term best_term = 0;
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        const struct sim_node *nd = &s->nodes[i];
        if (nd->up && raft_role_get(nd->r) == RAFT_LEADER && raft_term_get(nd->r) >= best_term) {
            best = nd->id;
            best_term = raft_term_get(nd->r);
        }
    }
    return best;
}

unsigned sim_count_leaders(const struct sim *s)
{
    unsigned n = 0;
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        if (s->nodes[i].up && raft_role_get(s->nodes[i].r) == RAFT_LEADER) {
            n++;
        }
    }
    return n;
}

static bool node_reachable_leader(const struct sim *s, raft_id id)
{
    unsigned peers = 0;
    for (unsigned j = 1; j <= s->n_nodes; j++) {
        if (j != id && s->nodes[j].up && !s->cut[id][j]) {
            peers++;
        }
    }
    return peers > 0 || s->o.n_voters == 1;
}

raft_id sim_wait_leader(struct sim *s, unsigned max_ms)
{
    for (unsigned t = 0; t < max_ms && s->violation[0] == '\0'; t += SIM_TICK_MS) {
        raft_id l = sim_leader(s);
        if (l != 0 && node_reachable_leader(s, l)) {
            return l;
        }
        sim_run(s, SIM_TICK_MS);
    }
    return 0;
}

int sim_propose(struct sim *s, raft_id id, const char *value, raft_index *index)
{
    struct sim_node *nd = &s->nodes[id];
    raft_index idx;
    int rv;
    if (!nd->up) {
        return RFS_ESTOPPED;
    }
    rv = raft_propose(nd->r, value, strlen(value), &idx);
    if (rv != 0) {
        return rv;
    }
    if (nd->n_props == nd->cap_props) {
        nd->cap_props = nd->cap_props ? nd->cap_props * 2 : 16;
        nd->props = xrealloc(nd->props, nd->cap_props * sizeof *nd->props);
    }
    nd->props[nd->n_props].index = idx;
    nd->props[nd->n_props].term = raft_term_get(nd->r);
    nd->props[nd->n_props].vhash = fnv(value, strlen(value));
    nd->n_props++;
    (void)vfind_or_add(s, fnv(value, strlen(value)));
    if (index != NULL) {
        *index = idx;
    }
    return 0;
}

unsigned sim_n_applied(const struct sim *s, raft_index index, char *value, size_t cap)
{
    unsigned n = 0;
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        const struct sim_node *nd = &s->nodes[i];
        if (nd->up && nd->sm_applied >= index) {
            n++;
            if (value != NULL && cap > 0) {
                const struct raft_entry *e = raft_entry_at(nd->r, index);
                value[0] = '\0';
                if (e != NULL) {
                    size_t len = e->data.len < cap - 1 ? e->data.len : cap - 1;
                    memcpy(value, e->data.base, len);
                    value[len] = '\0';
                }
            }
        }
    }
    return n;
}

bool sim_acked(const struct sim *s, const char *value)
{
    uint64_t key = fnv(value, strlen(value));
    struct sim *ms = (struct sim *)s;
    size_t i;
    if (key == 0) {
        key = 1;
    }
    if (s->cap_v == 0) {
        return false;
    }
    i = vslot(ms, key);
    return s->vkeys[i] == key && s->vacked[i];
}

raft_index sim_one(struct sim *s, const char *value, unsigned expected_nodes, unsigned max_ms)
{
    uint64_t start = s->now;
    unsigned attempt = 0;
    while (s->now < start + max_ms && s->violation[0] == '\0') {
        raft_index index = 0;
        char v[256];
        /* A retry is a new command: the first attempt may still commit later. */
        if (attempt++ == 0) {
            snprintf(v, sizeof v, "%s", value);
        } else {
            snprintf(v, sizeof v, "%s#%u", value, attempt);
        }
        for (unsigned i = 1; i <= s->n_nodes; i++) {
            if (s->nodes[i].up && raft_role_get(s->nodes[i].r) == RAFT_LEADER &&
                sim_propose(s, i, v, &index) == 0) {
                break;
            }
            index = 0;
        }
        if (index != 0) {
            uint64_t t0 = s->now;
            uint64_t vh = fnv(v, strlen(v));
            while (s->now < t0 + 2000 && s->violation[0] == '\0') {
                sim_run(s, SIM_TICK_MS);
                if (sim_n_applied(s, index, NULL, 0) >= expected_nodes && glog_at(s, index)->set &&
                    glog_at(s, index)->dhash == vh) {
                    return index;
                }
            }
        } else {
            sim_run(s, 50);
        }
    }
    return 0;
}

int sim_propose_conf(struct sim *s, raft_id leader, uint8_t type, raft_id node)
{
    struct raft_conf_change cc = {.type = type, .node = node};
    if (!s->nodes[leader].up) {
        return RFS_ESTOPPED;
    }
    return raft_propose_conf(s->nodes[leader].r, &cc, NULL);
}

int sim_transfer(struct sim *s, raft_id leader, raft_id target)
{
    if (!s->nodes[leader].up) {
        return RFS_ESTOPPED;
    }
    return raft_transfer_leader(s->nodes[leader].r, target);
}

int sim_read(struct sim *s, raft_id id)
{
    struct sim_node *nd = &s->nodes[id];
    uint64_t ctx = ++s->read_ctx;
    int rv;
    if (!nd->up) {
        return RFS_ESTOPPED;
    }
    rv = raft_read_index(nd->r, ctx);
    if (rv != 0) {
        return rv;
    }
    if (nd->n_reads == nd->cap_reads) {
        nd->cap_reads = nd->cap_reads ? nd->cap_reads * 2 : 16;
        nd->reads = xrealloc(nd->reads, nd->cap_reads * sizeof *nd->reads);
    }
    nd->reads[nd->n_reads].ctx = ctx;
    nd->reads[nd->n_reads].min_index = s->max_acked_index;
    nd->n_reads++;
    return 0;
}

unsigned long sim_reads_done(const struct sim *s)
{
    return s->reads_done;
}

struct raft *sim_raft(struct sim *s, raft_id id)
{
    return s->nodes[id].up ? s->nodes[id].r : NULL;
}

raft_index sim_applied(const struct sim *s, raft_id id)
{
    return s->nodes[id].sm_applied;
}

raft_index sim_max_commit(const struct sim *s)
{
    return s->global_commit;
}

unsigned long sim_msgs_sent(const struct sim *s)
{
    return s->msgs_sent;
}

unsigned long sim_bytes_sent(const struct sim *s)
{
    return s->bytes_sent;
}

uint64_t sim_now(const struct sim *s)
{
    return s->now;
}

unsigned long sim_snapshots_installed(const struct sim *s)
{
    return s->snapshots_installed;
}

unsigned long sim_snapshots_supplied(const struct sim *s)
{
    return s->snapshots_supplied;
}

/* Print every server's state, for debugging a failed seed. */
void sim_dump(const struct sim *s, FILE *f)
{
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        const struct sim_node *nd = &s->nodes[i];
        const struct raft *r = nd->r;
        if (!nd->up) {
            fprintf(f, "node %u: down\n", i);
            continue;
        }
        fprintf(f,
                "node %u: %s term %llu leader %llu first %llu last %llu commit %llu "
                "applied %llu sm %llu\n",
                i, raft_role_name(r->role), (unsigned long long)r->term,
                (unsigned long long)r->leader, (unsigned long long)raft_first_index(r),
                (unsigned long long)raft_last_index(r), (unsigned long long)r->log.committed,
                (unsigned long long)r->log.applied, (unsigned long long)nd->sm_applied);
        if (r->role != RAFT_LEADER) {
            continue;
        }
        for (unsigned k = 0; k < r->n_prs; k++) {
            const struct raft_progress *pr = &r->prs[k];
            fprintf(f,
                    "  pr %llu%s: state %d match %llu next %llu probe_sent %d inflight %u "
                    "snap %llu/%llu\n",
                    (unsigned long long)pr->id, pr->learner ? " (learner)" : "", pr->state,
                    (unsigned long long)pr->match, (unsigned long long)pr->next, pr->probe_sent,
                    pr->inflight_count, (unsigned long long)pr->snap_index,
                    (unsigned long long)pr->snap_offset);
        }
    }
}

static bool converged(struct sim *s, char *why, size_t cap)
{
    raft_id l = sim_leader(s);
    struct raft *lr;
    const struct raft_conf *c;
    raft_index commit;
    if (l == 0) {
        snprintf(why, cap, "no leader");
        return false;
    }
    lr = s->nodes[l].r;
    commit = raft_commit_get(lr);
    if (raft_term_at(lr, commit) != raft_term_get(lr) || commit != raft_last_index(lr)) {
        snprintf(why, cap, "leader %llu has not committed its log (commit %llu last %llu)",
                 (unsigned long long)l, (unsigned long long)commit,
                 (unsigned long long)raft_last_index(lr));
        return false;
    }
    if (commit < s->max_acked_index) {
        snprintf(why, cap, "acked index %llu beyond commit %llu",
                 (unsigned long long)s->max_acked_index, (unsigned long long)commit);
        return false;
    }
    c = raft_conf_get(lr);
    for (unsigned k = 0; k < c->n_voters + c->n_learners; k++) {
        raft_id id = k < c->n_voters ? c->voters[k] : c->learners[k - c->n_voters];
        if (id > s->n_nodes || s->nodes[id].sm_applied < commit) {
            snprintf(why, cap, "member %llu applied %llu < %llu", (unsigned long long)id,
                     id <= s->n_nodes ? (unsigned long long)s->nodes[id].sm_applied : 0ull,
                     (unsigned long long)commit);
            return false;
        }
    }
    return true;
}

int sim_converge(struct sim *s, unsigned max_ms)
{
    char why[200] = "";
    sim_heal(s);
    sim_set_unreliable(s, 0, 0, 1);
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        sim_restart(s, i);
    }
    for (unsigned t = 0; t < max_ms && s->violation[0] == '\0'; t += SIM_TICK_MS) {
        if (converged(s, why, sizeof why)) {
            break;
        }
        sim_run(s, SIM_TICK_MS);
    }
    if (s->violation[0] == '\0' && !converged(s, why, sizeof why)) {
        violate(s, "no convergence after healing: %s", why);
        if (s->o.verbose) {
            sim_dump(s, stderr);
        }
    }
    /* Every acknowledged value must be in the applied log at its index. */
    for (size_t i = 0; i < s->cap_v && s->violation[0] == '\0'; i++) {
        if (s->vkeys[i] != 0 && s->vacked[i]) {
            struct sim_gentry *g = glog_at(s, s->vidx[i]);
            if (s->vidx[i] == 0 || !g->set || g->dhash != s->vkeys[i]) {
                violate(s, "acknowledged command lost (index %llu)",
                        (unsigned long long)s->vidx[i]);
            }
        }
    }
    if (s->violation[0] == '\0') {
        check_invariants(s);
    }
    return s->violation[0] ? -1 : 0;
}

/* ---- randomized runs ---- */

static raft_id random_node(struct sim *s)
{
    return 1 + sim_randn(s, s->n_nodes);
}

/* Any up node that believes it leads, of any term: a deposed leader that has not heard of
 * its successor yet must not answer reads from its stale state. */
static raft_id random_believed_leader(struct sim *s)
{
    raft_id ids[SIM_MAX_NODES];
    unsigned n = 0;
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        if (s->nodes[i].up && raft_role_get(s->nodes[i].r) == RAFT_LEADER) {
            ids[n++] = s->nodes[i].id;
        }
    }
    return n == 0 ? 0 : ids[sim_randn(s, n)];
}

static unsigned count_up(const struct sim *s)
{
    unsigned n = 0;
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        n += s->nodes[i].up;
    }
    return n;
}

static void random_conf_change(struct sim *s, raft_id l)
{
    const struct raft_conf *c;
    raft_id pick = random_node(s);
    if (!s->nodes[l].up) {
        return;
    }
    c = raft_conf_get(s->nodes[l].r);
    if (raft_conf_is_learner(c, pick)) {
        (void)sim_propose_conf(s, l, RAFT_CC_ADD_VOTER, pick);
    } else if (raft_conf_is_voter(c, pick)) {
        if (c->n_voters > s->o.n_voters && pick != l) {
            (void)sim_propose_conf(s, l, RAFT_CC_REMOVE, pick);
        }
    } else {
        (void)sim_propose_conf(s, l, RAFT_CC_ADD_LEARNER, pick);
    }
}

int sim_random_run(struct sim *s, const struct sim_random_options *ro)
{
    if (ro->unreliable) {
        sim_set_unreliable(s, sim_randn(s, 100), sim_randn(s, 50), 1 + sim_randn(s, 30));
    } else {
        sim_set_unreliable(s, 0, 0, 1 + sim_randn(s, 5));
    }
    for (unsigned t = 0; t < ro->steps && s->violation[0] == '\0'; t++) {
        raft_id l = sim_leader(s);
        unsigned up = count_up(s);
        if (l != 0 && sim_chance(s, 100000)) {
            char v[64];
            snprintf(v, sizeof v, "v%llu", (unsigned long long)++s->value_counter);
            (void)sim_propose(s, l, v, NULL);
        }
        if (l != 0 && sim_chance(s, 20000)) {
            (void)sim_read(s, random_believed_leader(s));
        }
        if (sim_chance(s, 600) && up > s->n_nodes / 2 + 1) {
            sim_crash(s, random_node(s));
        }
        if (sim_chance(s, 300) && up > s->n_nodes / 2 + 1) {
            sim_crash_mid_write(s, random_node(s));
        }
        if (sim_chance(s, 4000)) {
            sim_restart(s, random_node(s));
        }
        if (sim_chance(s, 500)) {
            sim_partition(s, (uint32_t)sim_rand(s));
        }
        if (sim_chance(s, 300)) {
            sim_disconnect(s, random_node(s));
        }
        if (sim_chance(s, 2500)) {
            sim_heal(s);
        }
        if (l != 0 && sim_chance(s, 400)) {
            (void)sim_transfer(s, l, random_node(s));
        }
        if (l != 0 && ro->membership && sim_chance(s, 1000)) {
            random_conf_change(s, l);
        }
        step_once(s);
    }
    if (s->violation[0] != '\0') {
        return -1;
    }
    return sim_converge(s, 30000);
}
