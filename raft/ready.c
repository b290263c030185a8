/* Construction, the ready/advance cycle, snapshots taken by the state machine, and the
 * read-only accessors of the Raft core. */
#include "internal.h"

#include <assert.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"

static int config_check(const struct raft_config *cfg, char *errmsg)
{
    if (cfg->id == 0) {
        rfs_errmsg_printf(errmsg, "raft: server id must not be 0");
        return RFS_EINVAL;
    }
    if (cfg->heartbeat_ticks == 0 || cfg->election_ticks <= cfg->heartbeat_ticks) {
        rfs_errmsg_printf(errmsg, "raft: need 0 < heartbeat_ticks (%u) < election_ticks (%u)",
                          cfg->heartbeat_ticks, cfg->election_ticks);
        return RFS_EINVAL;
    }
    if (cfg->max_inflight == 0 || cfg->max_inflight > RAFT_MAX_INFLIGHT) {
        rfs_errmsg_printf(errmsg, "raft: max_inflight %u out of range 1..%d", cfg->max_inflight,
                          RAFT_MAX_INFLIGHT);
        return RFS_EINVAL;
    }
    if (cfg->snapshot_chunk == 0 || cfg->max_msg_bytes == 0) {
        rfs_errmsg_printf(errmsg, "raft: snapshot_chunk and max_msg_bytes must be positive");
        return RFS_EINVAL;
    }
    return 0;
}

/* A new cluster: every initial server writes the same membership entries at indexes
 * 1..n in term 1 and treats them as committed, so that servers added later learn the
 * initial configuration from the log like any other change. */
static int bootstrap_log(struct raft *r, const struct raft_conf *boot)
{
    for (unsigned i = 0; i < boot->n_voters + boot->n_learners; i++) {
        struct raft_conf_change cc = {0};
        uint8_t buf[RAFT_CONF_CHANGE_SIZE];
        int rv;
        cc.type = i < boot->n_voters ? RAFT_CC_ADD_VOTER : RAFT_CC_ADD_LEARNER;
        cc.node = i < boot->n_voters ? boot->voters[i] : boot->learners[i - boot->n_voters];
        raft_conf_change_encode(&cc, buf);
        rv = raft_log_append(&r->log, 1, RAFT_ENTRY_CONF, buf, sizeof buf);
        if (rv != 0) {
            return rv;
        }
    }
    r->log.committed = raft_log_last(&r->log);
    r->term = 1;
    return 0;
}

static int restore_log(struct raft *r, const struct raft_restore *rs, char *errmsg)
{
    raft_index snap_index = 0;
    raft_term snap_term = 0;
    int rv;
    if (rs->snapshot != NULL) {
        snap_index = rs->snapshot->meta.index;
        snap_term = rs->snapshot->meta.term;
        r->base_conf = rs->snapshot->meta.conf;
        r->snap.meta = rs->snapshot->meta;
        if (rs->snapshot->data.len > 0) {
            r->snap.data.base = rfs_malloc(rs->snapshot->data.len);
            if (r->snap.data.base == NULL) {
                return RFS_ENOMEM;
            }
            memcpy(r->snap.data.base, rs->snapshot->data.base, rs->snapshot->data.len);
        }
        r->snap.data.len = rs->snapshot->data.len;
        r->snap.in_sm = rs->snapshot->in_sm;
        r->has_snap = true;
    }
    raft_log_init(&r->log, snap_index, snap_term);
    if (rs->snapshot == NULL && rs->n_entries == 0 && rs->hard_state.term == 0 &&
        rs->bootstrap != NULL) {
        return bootstrap_log(r, rs->bootstrap);
    }
    for (unsigned i = 0; i < rs->n_entries; i++) {
        const struct raft_entry *e = &rs->entries[i];
        if (e->index != snap_index + 1 + i) {
            rfs_errmsg_printf(errmsg, "raft: restored entry %u has index %llu, expected %llu", i,
                              (unsigned long long)e->index,
                              (unsigned long long)(snap_index + 1 + i));
            return RFS_EINVAL;
        }
        rv = raft_log_append(&r->log, e->term, e->type, e->data.base, e->data.len);
        if (rv != 0) {
            return rv;
        }
    }
    r->log.stable = raft_log_last(&r->log);
    r->log.committed = rs->hard_state.commit;
    if (r->log.committed < snap_index) {
        r->log.committed = snap_index;
    }
    if (r->log.committed > raft_log_last(&r->log)) {
        rfs_errmsg_printf(errmsg, "raft: stored commit index %llu is beyond the last entry %llu",
                          (unsigned long long)r->log.committed,
                          (unsigned long long)raft_log_last(&r->log));
        return RFS_EINVAL;
    }
    r->log.applied = rs->applied > snap_index ? rs->applied : snap_index;
    if (r->log.applied > r->log.committed) {
        rfs_errmsg_printf(errmsg, "raft: applied index %llu is beyond commit %llu",
                          (unsigned long long)r->log.applied, (unsigned long long)r->log.committed);
        return RFS_EINVAL;
    }
    r->term = rs->hard_state.term;
    r->vote = rs->hard_state.vote;
    return 0;
}

int raft_new(struct raft **out, const struct raft_config *cfg, const struct raft_restore *rs,
             char *errmsg)
{
    struct raft *r;
    int rv = config_check(cfg, errmsg);
    if (rv != 0) {
        return rv;
    }
    r = rfs_calloc(1, sizeof *r);
    if (r == NULL) {
        rfs_errmsg_printf(errmsg, "raft: out of memory");
        return RFS_ENOMEM;
    }
    r->cfg = *cfg;
    r->id = cfg->id;
    r->rng = cfg->seed * 0x2545F4914F6CDD1Dull + cfg->id;
    if (rs != NULL) {
        rv = restore_log(r, rs, errmsg);
        if (rv != 0) {
            goto err;
        }
    } else {
        raft_log_init(&r->log, 0, 0);
    }
    raft_conf_recompute(r, raft_log_last(&r->log), &r->conf, &r->conf_index);
    rv = raft_progress_rebuild(r);
    if (rv != 0) {
        goto err;
    }
    raft_become_follower(r, r->term, 0);
    /* What is on disk; anything restore changed (bootstrap) goes out in the first ready. */
    if (rs != NULL) {
        r->prev_hs = rs->hard_state;
    }
    *out = r;
    return 0;

err:
    if (rv == RFS_ENOMEM) {
        rfs_errmsg_printf(errmsg, "raft: out of memory");
    }
    raft_free(r);
    return rv;
}

void raft_free(struct raft *r)
{
    if (r == NULL) {
        return;
    }
    raft_log_close(&r->log);
    rfs_free(r->prs);
    rfs_free(r->read_reqs);
    rfs_free(r->reads_ready);
    rfs_free(r->snap.data.base);
    rfs_free(r->recv.data.base);
    rfs_free(r->msgs);
    rfs_free(r);
}

static bool hard_state_changed(const struct raft *r)
{
    return r->prev_hs.term != r->term || r->prev_hs.vote != r->vote ||
           r->prev_hs.commit != r->log.committed;
}

bool raft_has_ready(const struct raft *r)
{
    if (r->oom) {
        return false;
    }
    return r->n_msgs > 0 || (r->read_bcast && r->role == RAFT_LEADER) ||
           r->log.stable < raft_log_last(&r->log) || hard_state_changed(r) ||
           r->log.applied < r->log.committed || r->n_reads_ready > 0 || r->install_pending;
}

/* Fill in entry and chunk pointers now that the log will not move until advance. Drop
 * messages whose data no longer exists (compacted, or we are no longer that leader). */
static void resolve_messages(struct raft *r)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < r->n_msgs; i++) {
        struct raft_message *m = &r->msgs[i];
        bool keep = true;
        if (m->type == RAFT_MSG_APPEND && m->n_entries > 0) {
            keep = r->role == RAFT_LEADER && m->term == r->term && m->index >= r->log.snap_index &&
                   m->index + m->n_entries <= raft_log_last(&r->log);
            if (keep) {
                m->entries = raft_log_get(&r->log, m->index + 1);
            }
        } else if (m->type == RAFT_MSG_SNAPSHOT) {
            keep = r->has_snap && m->snap.index == r->snap.meta.index &&
                   m->offset + m->data.len <= r->snap.data.len;
            if (keep) {
                m->data.base = m->data.len > 0 ? (char *)r->snap.data.base + m->offset : NULL;
            }
        }
        if (keep) {
            r->msgs[kept++] = *m;
        }
    }
    r->n_msgs = kept;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    raft_index last;
    assert(!r->in_ready);
    memset(rd, 0, sizeof *rd);
    if (r->read_bcast && r->role == RAFT_LEADER) {
        raft_bcast_heartbeat(r);
    }
    if (r->role == RAFT_LEADER) {
        /* Proposals since the last batch go out together (batching). */
        for (unsigned i = 0; i < r->n_prs; i++) {
            struct raft_progress *pr = &r->prs[i];
            while (pr->next <= raft_log_last(&r->log) &&
                   !raft_progress_paused(pr, r->cfg.max_inflight) && pr->id != r->id) {
                raft_index before = pr->next;
                bool was_probe = pr->state == RAFT_PR_PROBE;
                raft_send_append(r, pr, false);
                if (was_probe || pr->next == before) {
                    break;
                }
            }
        }
    }
    resolve_messages(r);
    last = raft_log_last(&r->log);

    rd->hard_state.term = r->term;
    rd->hard_state.vote = r->vote;
    rd->hard_state.commit = r->log.committed;
    rd->has_hard_state = hard_state_changed(r);
    if (r->log.stable < last) {
        rd->entries = raft_log_get(&r->log, r->log.stable + 1);
        rd->n_entries = (unsigned)(last - r->log.stable);
    }
    if (r->install_pending) {
        rd->snapshot = &r->snap;
    }
    rd->msgs = r->msgs;
    rd->n_msgs = r->n_msgs;
    if (r->log.applied < r->log.committed) {
        rd->committed = raft_log_get(&r->log, r->log.applied + 1);
        rd->n_committed = (unsigned)(r->log.committed - r->log.applied);
    }
    rd->reads = r->reads_ready;
    rd->n_reads = r->n_reads_ready;
    rd->role = r->role;
    rd->leader = r->leader;
    rd->term = r->term;

    r->in_ready = true;
    r->ready_last_entry = last;
    r->ready_last_committed = r->log.committed;
}

void raft_advance(struct raft *r, struct raft_ready *rd)
{
    assert(r->in_ready);
    r->in_ready = false;
    r->log.stable = r->ready_last_entry;
    r->log.applied = r->ready_last_committed;
    if (rd->has_hard_state) {
        r->prev_hs = rd->hard_state;
    }
    r->install_pending = false;
    r->n_msgs = 0;
    r->n_reads_ready = 0;
    if (r->role == RAFT_LEADER) {
        /* The leader counts its own copy only once it is durable (thesis §10.2.1). */
        struct raft_progress *self = raft_progress_find(r, r->id);
        if (self != NULL && self->match < r->log.stable) {
            self->match = r->log.stable;
            self->next = r->log.stable + 1;
            if (raft_maybe_commit(r) && r->role == RAFT_LEADER) {
                raft_bcast_append(r);
            }
        }
    }
}

static int snapshot_take(struct raft *r, raft_index index, const void *data, size_t len, bool in_sm,
                         raft_index keep_entries)
{
    struct raft_snapshot snap;
    raft_index compact_to;
    raft_index unused;
    /* Bytes for a compaction point the core already has (a follower wants them). */
    bool fill = !in_sm && r->has_snap && r->snap.in_sm && index == r->snap.meta.index;
    assert(!r->in_ready);
    if (index > r->log.applied ||
        (!fill && (index <= r->log.snap_index || (r->has_snap && index <= r->snap.meta.index)))) {
        return RFS_EINVAL;
    }
    memset(&snap, 0, sizeof snap);
    if (fill) {
        snap.meta = r->snap.meta;
    } else {
        snap.meta.index = index;
        snap.meta.term = raft_log_term(&r->log, index);
        raft_conf_recompute(r, index, &snap.meta.conf, &unused);
    }
    snap.in_sm = in_sm;
    if (len > 0) {
        snap.data.base = rfs_malloc(len);
        if (snap.data.base == NULL) {
            return RFS_ENOMEM;
        }
        memcpy(snap.data.base, data, len);
    }
    snap.data.len = len;
    rfs_free(r->snap.data.base);
    r->snap = snap;
    r->has_snap = true;
    if (!in_sm) {
        r->snap_wanted = false;
    }

    compact_to = index > keep_entries ? index - keep_entries : 0;
    if (compact_to > r->log.snap_index) {
        raft_conf_recompute(r, compact_to, &r->base_conf, &unused);
        raft_log_compact_to(&r->log, compact_to);
    }
    if (in_sm) {
        raft_logf(r, RFS_LOG_INFO,
                  "snapshot at %llu (held by the state machine), log compacted "
                  "to %llu",
                  (unsigned long long)index, (unsigned long long)r->log.snap_index);
    } else {
        raft_logf(r, RFS_LOG_INFO, "snapshot at %llu (%zu bytes), log compacted to %llu",
                  (unsigned long long)index, len, (unsigned long long)r->log.snap_index);
    }
    return 0;
}

int raft_snapshot_take(struct raft *r, raft_index index, const void *data, size_t len,
                       raft_index keep_entries)
{
    return snapshot_take(r, index, data, len, false, keep_entries);
}

int raft_snapshot_take_lazy(struct raft *r, raft_index index, raft_index keep_entries)
{
    return snapshot_take(r, index, NULL, 0, true, keep_entries);
}

bool raft_snapshot_wanted(const struct raft *r)
{
    return r->has_snap && r->snap.in_sm && r->snap_wanted && r->role == RAFT_LEADER;
}

const struct raft_snapshot *raft_snapshot_get(const struct raft *r)
{
    return r->has_snap ? &r->snap : NULL;
}

int raft_error(const struct raft *r)
{
    return r->oom ? RFS_ENOMEM : 0;
}

raft_id raft_id_get(const struct raft *r)
{
    return r->id;
}

enum raft_role raft_role_get(const struct raft *r)
{
    return r->role;
}

raft_term raft_term_get(const struct raft *r)
{
    return r->term;
}

raft_id raft_leader_get(const struct raft *r)
{
    return r->leader;
}

raft_index raft_commit_get(const struct raft *r)
{
    return r->log.committed;
}

raft_index raft_applied_get(const struct raft *r)
{
    return r->log.applied;
}

raft_index raft_first_index(const struct raft *r)
{
    return r->log.snap_index + 1;
}

raft_index raft_last_index(const struct raft *r)
{
    return raft_log_last(&r->log);
}

raft_term raft_term_at(const struct raft *r, raft_index i)
{
    return raft_log_term(&r->log, i);
}

const struct raft_entry *raft_entry_at(const struct raft *r, raft_index i)
{
    return raft_log_get(&r->log, i);
}

const struct raft_conf *raft_conf_get(const struct raft *r)
{
    return &r->conf;
}

raft_index raft_match_get(const struct raft *r, raft_id peer)
{
    if (r->role != RAFT_LEADER) {
        return 0;
    }
    for (unsigned i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id == peer) {
            return r->prs[i].match;
        }
    }
    return 0;
}
