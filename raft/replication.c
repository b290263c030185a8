/* Log replication: appends with fast backtracking, pipelining, commitment, heartbeats
 * carrying ReadIndex confirmations, and snapshots sent in chunks.
 *
 * Happy path: a proposal lands in the leader's log; when the ready batch is built each
 * follower in REPLICATE state gets an append with every new entry (batching), up to
 * max_inflight unacknowledged appends (pipelining). A follower that matches replies with
 * its last index; once a majority (the leader counting itself only after its own write is
 * persisted) holds an entry of the current term, it commits (Raft §5.4.2).
 *
 * Failure modes: a follower whose log diverges rejects with a hint (the last index at or
 * below the probe whose term is not newer than the probe's term) so the leader skips a
 * whole term per round trip. Lost appends in REPLICATE leave a gap that the next append
 * exposes; the follower rejects and the leader falls back to PROBE. A follower behind the
 * leader's first log entry gets the snapshot, one chunk per round trip, resent on each
 * heartbeat until acknowledged. */
#include "internal.h"

#include <assert.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"

static void send_snapshot_chunk(struct raft *r, struct raft_progress *pr)
{
    struct raft_message *m;
    uint64_t len;
    if (!r->has_snap) {
        return;
    }
    if (r->snap.in_sm) {
        /* The bytes are the state machine's: ask for them; a later probe sends them. */
        r->snap_wanted = true;
        return;
    }
    if (pr->state != RAFT_PR_SNAPSHOT || pr->snap_index != r->snap.meta.index) {
        pr->state = RAFT_PR_SNAPSHOT;
        pr->snap_index = r->snap.meta.index;
        pr->snap_offset = 0;
        pr->inflight_count = 0;
        raft_logf(r, RFS_LOG_INFO, "sending snapshot at %llu to %llu",
                  (unsigned long long)pr->snap_index, (unsigned long long)pr->id);
    }
    m = raft_send(r, RAFT_MSG_SNAPSHOT, pr->id);
    if (m == NULL) {
        return;
    }
    len = r->snap.data.len - pr->snap_offset;
    if (len > r->cfg.snapshot_chunk) {
        len = r->cfg.snapshot_chunk;
    }
    m->snap = r->snap.meta;
    m->offset = pr->snap_offset;
    m->data.len = len; /* base resolved when the ready is built */
    m->done = pr->snap_offset + len == r->snap.data.len;
}

/* Send an append to pr if its window allows. With send_if_empty, an append with no
 * entries is sent too (to carry the commit index or probe). */
void raft_send_append(struct raft *r, struct raft_progress *pr, bool send_if_empty)
{
    raft_index last = raft_log_last(&r->log);
    raft_index prev;
    raft_index hi;
    size_t bytes = 0;
    struct raft_message *m;

    if (pr->id == r->id || raft_progress_paused(pr, r->cfg.max_inflight)) {
        return;
    }
    prev = pr->next - 1;
    if (pr->next <= r->log.snap_index) {
        send_snapshot_chunk(r, pr);
        return;
    }
    hi = prev;
    while (hi < last) {
        const struct raft_entry *e = raft_log_get(&r->log, hi + 1);
        if (hi > prev && bytes + e->data.len > r->cfg.max_msg_bytes) {
            break;
        }
        bytes += e->data.len;
        hi++;
    }
    if (hi == prev && !send_if_empty) {
        return;
    }
    m = raft_send(r, RAFT_MSG_APPEND, pr->id);
    if (m == NULL) {
        return;
    }
    m->index = prev;
    m->log_term = raft_log_term(&r->log, prev);
    m->commit = r->log.committed;
    m->n_entries = (unsigned)(hi - prev); /* pointer resolved when the ready is built */
    switch (pr->state) {
        case RAFT_PR_REPLICATE:
            if (hi > prev) {
                pr->next = hi + 1;
                raft_progress_inflight_add(pr, hi);
            }
            break;
        case RAFT_PR_PROBE:
            pr->probe_sent = true;
            break;
        case RAFT_PR_SNAPSHOT:
            break;
    }
}

void raft_bcast_append(struct raft *r)
{
    for (unsigned i = 0; i < r->n_prs; i++) {
        raft_send_append(r, &r->prs[i], true);
    }
}

void raft_bcast_heartbeat(struct raft *r)
{
    if (r->cfg.lease_reads) {
        /* Every round gets a sequence of its own, so that its acks can renew the lease. */
        unsigned slot = r->lease_round_next++ % RAFT_LEASE_ROUNDS;
        r->read_seq++;
        r->lease_round_seq[slot] = r->read_seq;
        r->lease_round_tick[slot] = r->ticks;
    }
    for (unsigned i = 0; i < r->n_prs; i++) {
        struct raft_progress *pr = &r->prs[i];
        struct raft_message *m;
        if (pr->id == r->id) {
            continue;
        }
        m = raft_send(r, RAFT_MSG_HEARTBEAT, pr->id);
        if (m == NULL) {
            return;
        }
        /* The follower may not have our log past its match: never tell it more. */
        m->commit = pr->match < r->log.committed ? pr->match : r->log.committed;
        m->read_seq = r->read_seq;
        if (pr->state == RAFT_PR_SNAPSHOT) {
            send_snapshot_chunk(r, pr); /* resend the unacknowledged chunk */
        }
    }
    r->read_bcast = false;
}

static void read_assign_pending(struct raft *r)
{
    bool any = false;
    for (unsigned i = 0; i < r->n_read_reqs; i++) {
        if (r->read_reqs[i].seq == 0) {
            if (!any) {
                r->read_seq++;
                any = true;
            }
            r->read_reqs[i].index = r->log.committed;
            r->read_reqs[i].seq = r->read_seq;
        }
    }
    if (any) {
        r->read_bcast = true;
    }
}

/* The value a quorum of the n voters' values has reached: the q-th largest (sorts v
 * descending), or 0 with fewer than q values. */
static uint64_t quorum_value(uint64_t *v, unsigned n, unsigned q)
{
    if (q == 0 || n < q) {
        return 0;
    }
    for (unsigned i = 1; i < n; i++) {
        uint64_t x = v[i];
        unsigned j = i;
        for (; j > 0 && v[j - 1] < x; j--) {
            v[j] = v[j - 1];
        }
        v[j] = x;
    }
    return v[q - 1];
}

/* The highest read sequence a quorum of voters has confirmed (the leader counts as all). */
static uint64_t quorum_read_ack(const struct raft *r)
{
    uint64_t acks[RAFT_MAX_NODES];
    unsigned n = 0;
    for (unsigned i = 0; i < r->n_prs && n < RAFT_MAX_NODES; i++) {
        const struct raft_progress *pr = &r->prs[i];
        if (!pr->learner) {
            acks[n++] = pr->id == r->id ? UINT64_MAX : pr->read_ack;
        }
    }
    return quorum_value(acks, n, raft_conf_quorum(&r->conf));
}

/* A quorum answered heartbeat rounds up to `acked`: each of those members reset its
 * election timer when the round reached it, after the leader sent it, and ignores votes for
 * an election timeout from then on (step_term). So no other leader can be elected within an
 * election timeout of the newest confirmed round's send tick. */
static void renew_lease(struct raft *r, uint64_t acked)
{
    for (unsigned i = 0; i < RAFT_LEASE_ROUNDS; i++) {
        if (r->lease_round_seq[i] != 0 && r->lease_round_seq[i] <= acked &&
            (!r->has_lease || r->lease_round_tick[i] > r->lease_from_tick)) {
            r->has_lease = true;
            r->lease_from_tick = r->lease_round_tick[i];
        }
    }
}

bool raft_lease_valid(const struct raft *r)
{
    /* The round was sent at tick k or later in real time and the check is made before tick
     * now+1; a member that got it ignores votes for election_ticks of its own ticks, which is
     * more than (election_ticks - 1) tick intervals. Two more ticks of margin cover clock
     * rates that differ and a tick that fires late. */
    return r->cfg.lease_reads && r->cfg.check_quorum && r->role == RAFT_LEADER && r->has_lease &&
           !r->lease_off && r->ticks - r->lease_from_tick + 4 <= r->cfg.election_ticks;
}

int raft_read_ready_push(struct raft *r, uint64_t ctx, raft_index index)
{
    if (r->n_reads_ready == r->cap_reads_ready) {
        unsigned cap = r->cap_reads_ready ? r->cap_reads_ready * 2 : 16;
        struct raft_read_state *rs = rfs_realloc(r->reads_ready, cap * sizeof *rs);
        if (rs == NULL) {
            return RFS_ENOMEM;
        }
        r->reads_ready = rs;
        r->cap_reads_ready = cap;
    }
    r->reads_ready[r->n_reads_ready].ctx = ctx;
    r->reads_ready[r->n_reads_ready].index = index;
    r->n_reads_ready++;
    return 0;
}

/* What a quorum has confirmed: renew the lease, and move the reads it covers into the ready
 * list, in order. */
void raft_read_release(struct raft *r)
{
    uint64_t acked = quorum_read_ack(r);
    unsigned done = 0;
    renew_lease(r, acked);
    while (done < r->n_read_reqs) {
        const struct raft_read_req *req = &r->read_reqs[done];
        if (req->seq == 0 || req->seq > acked) {
            break;
        }
        if (raft_read_ready_push(r, req->ctx, req->index) != 0) {
            r->oom = true;
            break;
        }
        done++;
    }
    if (done > 0) {
        memmove(r->read_reqs, r->read_reqs + done, (r->n_read_reqs - done) * sizeof *r->read_reqs);
        r->n_read_reqs -= done;
    }
}

/* Commit by counting replicas, only for entries of the current term (Raft §5.4.2,
 * Figure 8). Returns true if the commit index moved. */
bool raft_maybe_commit(struct raft *r)
{
    raft_index matches[RAFT_MAX_NODES];
    unsigned n = 0;
    raft_index candidate;
    for (unsigned i = 0; i < r->n_prs && n < RAFT_MAX_NODES; i++) {
        if (!r->prs[i].learner) {
            matches[n++] = r->prs[i].match;
        }
    }
    /* held by a majority (0 when there are too few voters: nothing to commit) */
    candidate = quorum_value(matches, n, raft_conf_quorum(&r->conf));
    if (candidate <= r->log.committed || raft_log_term(&r->log, candidate) != r->term) {
        return false;
    }
    raft_commit_to(r, candidate);
    return true;
}

void raft_commit_to(struct raft *r, raft_index index)
{
    bool first_in_term;
    if (index <= r->log.committed) {
        return;
    }
    assert(index <= raft_log_last(&r->log));
    first_in_term = r->role == RAFT_LEADER && raft_log_term(&r->log, r->log.committed) != r->term &&
                    raft_log_term(&r->log, index) == r->term;
    r->log.committed = index;
    if (r->role != RAFT_LEADER) {
        return;
    }
    if (first_in_term) {
        read_assign_pending(r);
    }
    /* A leader removed from the configuration steps down once the change commits
     * (thesis §4.2.2). */
    if (!raft_conf_is_voter(&r->conf, r->id) && r->conf_index <= index) {
        raft_logf(r, RFS_LOG_INFO, "removed from the configuration: stepping down");
        raft_become_follower(r, r->term, 0);
    }
}

static void handle_append_resp(struct raft *r, struct raft_progress *pr,
                               const struct raft_message *m)
{
    pr->recent_active = true;
    if (m->reject) {
        raft_index next;
        /* Stale rejections are for appends we already replaced. */
        if (pr->state == RAFT_PR_REPLICATE && m->index <= pr->match) {
            return;
        }
        if (pr->state == RAFT_PR_PROBE && m->index != pr->next - 1) {
            return;
        }
        if (pr->state == RAFT_PR_SNAPSHOT) {
            return;
        }
        /* Fast backtracking: jump to the follower's hint, then further back over any of
         * our entries whose term is newer than the follower's at that point. */
        next = m->hint_index;
        if (m->hint_term > 0) {
            while (next > r->log.snap_index && raft_log_term(&r->log, next) > m->hint_term) {
                next--;
            }
        }
        next++;
        if (next > m->index) {
            next = m->index;
        }
        if (next <= pr->match) {
            next = pr->match + 1;
        }
        raft_progress_become_probe(pr);
        pr->next = next;
        raft_logf(r, RFS_LOG_DEBUG, "%llu rejected append at %llu (hint %llu/%llu): next %llu",
                  (unsigned long long)pr->id, (unsigned long long)m->index,
                  (unsigned long long)m->hint_index, (unsigned long long)m->hint_term,
                  (unsigned long long)next);
        raft_send_append(r, pr, true);
        return;
    }
    if (m->index > pr->match) {
        pr->match = m->index;
        if (pr->next <= m->index) {
            pr->next = m->index + 1;
        }
        raft_progress_inflight_free_to(pr, m->index);
        if (pr->state == RAFT_PR_PROBE) {
            raft_progress_become_replicate(pr);
        } else if (pr->state == RAFT_PR_SNAPSHOT && pr->match >= pr->snap_index) {
            raft_progress_become_probe(pr);
            raft_progress_become_replicate(pr);
        }
        if (raft_maybe_commit(r) && r->role == RAFT_LEADER) {
            raft_bcast_append(r);
        }
        if (r->role != RAFT_LEADER) {
            return;
        }
        if (pr->id == r->transferee && pr->match == raft_log_last(&r->log)) {
            raft_logf(r, RFS_LOG_INFO, "%llu caught up: sending TIMEOUT_NOW",
                      (unsigned long long)pr->id);
            (void)raft_send(r, RAFT_MSG_TIMEOUT_NOW, pr->id);
        }
    } else if (pr->state == RAFT_PR_PROBE) {
        pr->probe_sent = false;
    }
    /* Keep the pipeline full. */
    while (pr->next <= raft_log_last(&r->log) && !raft_progress_paused(pr, r->cfg.max_inflight)) {
        raft_index before = pr->next;
        bool was_probe = pr->state == RAFT_PR_PROBE;
        raft_send_append(r, pr, false);
        if (was_probe || pr->next == before) {
            break;
        }
    }
}

static void handle_snapshot_resp(struct raft *r, struct raft_progress *pr,
                                 const struct raft_message *m)
{
    pr->recent_active = true;
    if (pr->state != RAFT_PR_SNAPSHOT || m->index != pr->snap_index) {
        return;
    }
    if (m->done) {
        raft_logf(r, RFS_LOG_INFO, "%llu installed snapshot at %llu", (unsigned long long)pr->id,
                  (unsigned long long)m->index);
        if (pr->match < m->index) {
            pr->match = m->index;
        }
        raft_progress_become_probe(pr);
        raft_send_append(r, pr, true);
        return;
    }
    if (m->offset == pr->snap_offset && !m->reject) {
        return; /* duplicate acknowledgement */
    }
    pr->snap_offset = m->offset <= r->snap.data.len ? m->offset : 0;
    send_snapshot_chunk(r, pr);
}

void raft_leader_step(struct raft *r, const struct raft_message *m)
{
    struct raft_progress *pr = raft_progress_find(r, m->from);
    if (pr == NULL) {
        return; /* not a member (any more) */
    }
    switch (m->type) {
        case RAFT_MSG_APPEND_RESP:
            handle_append_resp(r, pr, m);
            break;
        case RAFT_MSG_HEARTBEAT_RESP:
            pr->recent_active = true;
            pr->probe_sent = false;
            if (m->read_seq > pr->read_ack) {
                pr->read_ack = m->read_seq;
                raft_read_release(r);
            }
            if (pr->state == RAFT_PR_REPLICATE && pr->inflight_count >= r->cfg.max_inflight) {
                raft_progress_inflight_free_first(pr);
            }
            if (pr->match < raft_log_last(&r->log)) {
                /* Even with nothing new to send: an empty append exposes appends lost in
                 * the pipeline (the follower rejects, and we fall back to probing). */
                raft_send_append(r, pr, true);
            }
            break;
        case RAFT_MSG_SNAPSHOT_RESP:
            handle_snapshot_resp(r, pr, m);
            break;
        default:
            break;
    }
}

static void append_reply(struct raft *r, const struct raft_message *m, bool reject,
                         raft_index index, raft_index hint_index, raft_term hint_term)
{
    struct raft_message *resp = raft_send(r, RAFT_MSG_APPEND_RESP, m->from);
    if (resp == NULL) {
        return;
    }
    resp->reject = reject;
    resp->index = index;
    resp->hint_index = hint_index;
    resp->hint_term = hint_term;
}

static void apply_conf_entries(struct raft *r, raft_index from)
{
    bool changed = false;
    for (raft_index i = from; i <= raft_log_last(&r->log); i++) {
        const struct raft_entry *e = raft_log_get(&r->log, i);
        struct raft_conf_change cc;
        if (e->type != RAFT_ENTRY_CONF) {
            continue;
        }
        r->conf_index = i;
        if (raft_conf_change_decode(e->data.base, e->data.len, &cc) == 0) {
            (void)raft_conf_apply(&r->conf, &cc);
        }
        changed = true;
    }
    if (changed && raft_progress_rebuild(r) != 0) {
        r->oom = true;
    }
}

void raft_handle_append(struct raft *r, const struct raft_message *m)
{
    raft_index last_new = m->index + m->n_entries;
    raft_index conflict = 0;
    if (m->index < r->log.committed) {
        /* Everything up to our commit index already matches the leader's log. */
        append_reply(r, m, false, r->log.committed, 0, 0);
        return;
    }
    if (raft_log_term(&r->log, m->index) != m->log_term || m->index > raft_log_last(&r->log)) {
        /* Hint: the last index at or below the probe whose term is not newer than the
         * probe's, so the leader can skip past our conflicting term. */
        raft_index hint = m->index < raft_log_last(&r->log) ? m->index : raft_log_last(&r->log);
        while (hint > r->log.snap_index && raft_log_term(&r->log, hint) > m->log_term) {
            hint--;
        }
        append_reply(r, m, true, m->index, hint, raft_log_term(&r->log, hint));
        return;
    }
    for (unsigned i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (raft_log_term(&r->log, e->index) != e->term) {
            conflict = e->index;
            break;
        }
    }
    if (conflict != 0) {
        bool had_conf = false;
        if (conflict <= raft_log_last(&r->log)) {
            raft_logf(r, RFS_LOG_DEBUG, "truncating log from %llu", (unsigned long long)conflict);
            had_conf = r->conf_index >= conflict;
            raft_log_truncate_from(&r->log, conflict);
            if (had_conf) {
                raft_conf_recompute(r, raft_log_last(&r->log), &r->conf, &r->conf_index);
                if (raft_progress_rebuild(r) != 0) {
                    r->oom = true;
                    return;
                }
            }
        }
        for (raft_index i = conflict; i <= last_new; i++) {
            const struct raft_entry *e = &m->entries[i - m->index - 1];
            if (raft_log_append(&r->log, e->term, e->type, e->data.base, e->data.len) != 0) {
                r->oom = true;
                return;
            }
        }
        apply_conf_entries(r, conflict);
    }
    raft_commit_to(r, m->commit < last_new ? m->commit : last_new);
    append_reply(r, m, false, last_new, 0, 0);
}

void raft_handle_heartbeat(struct raft *r, const struct raft_message *m)
{
    struct raft_message *resp;
    raft_index commit = m->commit;
    if (commit > raft_log_last(&r->log)) {
        commit = raft_log_last(&r->log);
    }
    raft_commit_to(r, commit);
    resp = raft_send(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
    if (resp != NULL) {
        resp->read_seq = m->read_seq;
    }
}

static void snapshot_reply(struct raft *r, const struct raft_message *m, bool reject,
                           uint64_t offset, bool done)
{
    struct raft_message *resp = raft_send(r, RAFT_MSG_SNAPSHOT_RESP, m->from);
    if (resp == NULL) {
        return;
    }
    resp->index = m->snap.index;
    resp->reject = reject;
    resp->offset = offset;
    resp->done = done;
}

static void snapshot_install(struct raft *r)
{
    const struct raft_snapshot_meta *meta = &r->recv.meta;
    raft_logf(r, RFS_LOG_INFO, "installing snapshot at %llu term %llu",
              (unsigned long long)meta->index, (unsigned long long)meta->term);
    raft_log_reset(&r->log, meta->index, meta->term);
    r->base_conf = meta->conf;
    r->conf = meta->conf;
    r->conf_index = 0;
    if (raft_progress_rebuild(r) != 0) {
        r->oom = true;
    }
    rfs_free(r->snap.data.base);
    r->snap = r->recv;
    r->has_snap = true;
    r->recv_active = false;
    memset(&r->recv, 0, sizeof r->recv);
    r->recv_cap = 0;
    r->install_pending = true;
}

void raft_handle_snapshot(struct raft *r, const struct raft_message *m)
{
    if (m->snap.index <= r->log.committed) {
        /* Already have it (or more): tell the leader to move on. */
        snapshot_reply(r, m, false, m->offset + m->data.len, true);
        return;
    }
    if (raft_log_term(&r->log, m->snap.index) == m->snap.term) {
        /* Our log already holds the snapshot's last entry (perhaps since an earlier chunk
         * arrived): keep the entries after it and just commit (Raft Figure 13 step 6). */
        if (r->recv_active) {
            rfs_free(r->recv.data.base);
            memset(&r->recv, 0, sizeof r->recv);
            r->recv_cap = 0;
            r->recv_active = false;
        }
        raft_commit_to(r, m->snap.index);
        snapshot_reply(r, m, false, m->offset + m->data.len, true);
        return;
    }
    if (!r->recv_active || r->recv.meta.index != m->snap.index ||
        r->recv.meta.term != m->snap.term) {
        if (m->offset != 0) {
            snapshot_reply(r, m, true, 0, false);
            return;
        }
        rfs_free(r->recv.data.base);
        memset(&r->recv, 0, sizeof r->recv);
        r->recv_cap = 0;
        r->recv.meta = m->snap;
        r->recv_active = true;
    }
    if (m->offset != r->recv.data.len) {
        snapshot_reply(r, m, true, r->recv.data.len, false);
        return;
    }
    if (m->data.len > 0) {
        if (r->recv.data.len + m->data.len > r->recv_cap) {
            uint64_t cap = (r->recv.data.len + m->data.len) * 2;
            void *p = rfs_realloc(r->recv.data.base, cap);
            if (p == NULL) {
                r->oom = true;
                return;
            }
            r->recv.data.base = p;
            r->recv_cap = cap;
        }
        memcpy((char *)r->recv.data.base + r->recv.data.len, m->data.base, m->data.len);
        r->recv.data.len += m->data.len;
    }
    if (!m->done) {
        snapshot_reply(r, m, false, r->recv.data.len, false);
        return;
    }
    snapshot_install(r);
    /* Sent after the snapshot is persisted: it is in the same ready batch. */
    snapshot_reply(r, m, false, r->snap.data.len, true);
}
