/* The Raft core: roles, elections (PreVote, CheckQuorum, leadership transfer), the
 * message dispatcher and the public entry points for commands.
 *
 * Every role change goes through one become_*() function that resets that role's state
 * (as etcd's raft.go does), and is logged at INFO. Terms are handled once, at the top of
 * raft_step(), before the role-specific handlers see a message. */
#include "internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"

void raft_config_default(struct raft_config *cfg, raft_id id)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->id = id;
    cfg->election_ticks = 10;
    cfg->heartbeat_ticks = 1;
    cfg->max_inflight = 64;
    cfg->max_msg_bytes = 1 << 20;
    cfg->snapshot_chunk = 256 << 10;
    cfg->pre_vote = true;
    cfg->check_quorum = true;
    cfg->lease_reads = true;
    cfg->seed = id;
}

void raft_logf(struct raft *r, int level, const char *fmt, ...)
{
    char msg[512];
    char line[600];
    va_list ap;
    if (r->cfg.logger.log == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "%llu [term %llu %s] %s", (unsigned long long)r->id,
             (unsigned long long)r->term, raft_role_name(r->role), msg);
    r->cfg.logger.log(r->cfg.logger.data, level, line);
}

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
        case RAFT_FOLLOWER:
            return "follower";
        case RAFT_PRE_CANDIDATE:
            return "pre-candidate";
        case RAFT_CANDIDATE:
            return "candidate";
        case RAFT_LEADER:
            return "leader";
    }
    return "?";
}

const char *raft_msg_type_name(int type)
{
    static const char *const names[] = {
        "?",
        "APPEND",
        "APPEND_RESP",
        "VOTE",
        "VOTE_RESP",
        "PREVOTE",
        "PREVOTE_RESP",
        "HEARTBEAT",
        "HEARTBEAT_RESP",
        "SNAPSHOT",
        "SNAPSHOT_RESP",
        "TIMEOUT_NOW",
    };
    if (type < 1 || type > RAFT_MSG_TIMEOUT_NOW) {
        return "?";
    }
    return names[type];
}

/* splitmix64: small, seedable and good enough for election jitter. */
static uint64_t rng_next(struct raft *r)
{
    uint64_t z = (r->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void reset_randomized_timeout(struct raft *r)
{
    r->randomized_timeout = r->cfg.election_ticks + (unsigned)(rng_next(r) % r->cfg.election_ticks);
}

/* Queue a message; entries/chunk pointers are filled in when the ready is built. */
struct raft_message *raft_send(struct raft *r, uint8_t type, raft_id to)
{
    struct raft_message *m;
    if (r->n_msgs == r->cap_msgs) {
        unsigned cap = r->cap_msgs ? r->cap_msgs * 2 : 16;
        struct raft_message *msgs = rfs_realloc(r->msgs, cap * sizeof *msgs);
        if (msgs == NULL) {
            r->oom = true;
            return NULL;
        }
        r->msgs = msgs;
        r->cap_msgs = cap;
    }
    m = &r->msgs[r->n_msgs++];
    memset(m, 0, sizeof *m);
    m->type = type;
    m->from = r->id;
    m->to = to;
    m->term = r->term;
    return m;
}

static bool promotable(const struct raft *r)
{
    return raft_conf_is_voter(&r->conf, r->id);
}

static void reset_role_state(struct raft *r, raft_term term)
{
    if (r->term != term) {
        r->term = term;
        r->vote = 0;
    }
    r->leader = 0;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->transferee = 0;
    r->n_votes = 0;
    reset_randomized_timeout(r);
    /* Pending reads die with the role; their callers time out and retry. */
    r->n_read_reqs = 0;
    r->read_bcast = false;
    /* A lease is earned again by heartbeat rounds of the new role. */
    memset(r->lease_round_seq, 0, sizeof r->lease_round_seq);
    r->has_lease = false;
    r->lease_off = false;
}

void raft_become_follower(struct raft *r, raft_term term, raft_id leader)
{
    enum raft_role old = r->role;
    raft_id old_leader = r->leader;
    raft_term old_term = r->term;
    reset_role_state(r, term);
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    if (old != RAFT_FOLLOWER || old_term != term || old_leader != leader) {
        raft_logf(r, RFS_LOG_INFO, "became follower at term %llu, leader %llu",
                  (unsigned long long)term, (unsigned long long)leader);
    }
}

static void become_pre_candidate(struct raft *r)
{
    /* PreVote (thesis §9.6): ask first, without disturbing anyone's term. */
    r->role = RAFT_PRE_CANDIDATE;
    r->leader = 0;
    r->n_votes = 0;
    r->election_elapsed = 0;
    reset_randomized_timeout(r);
    raft_logf(r, RFS_LOG_INFO, "became pre-candidate");
}

static void become_candidate(struct raft *r)
{
    assert(r->role != RAFT_LEADER);
    reset_role_state(r, r->term + 1);
    r->role = RAFT_CANDIDATE;
    r->vote = r->id;
    raft_logf(r, RFS_LOG_INFO, "became candidate");
}

static void become_leader(struct raft *r)
{
    raft_index last = raft_log_last(&r->log);
    assert(r->role == RAFT_CANDIDATE);
    reset_role_state(r, r->term);
    r->role = RAFT_LEADER;
    r->leader = r->id;
    for (unsigned i = 0; i < r->n_prs; i++) {
        struct raft_progress *pr = &r->prs[i];
        raft_progress_reset(pr, last + 1);
        pr->recent_active = true;
        if (pr->id == r->id) {
            pr->match = r->log.stable;
            pr->state = RAFT_PR_REPLICATE;
        }
    }
    /* A no-op in the new term lets the leader commit (Raft §8), and no membership change
     * may start before it commits: it covers any change left by the previous leader. */
    if (raft_log_append(&r->log, r->term, RAFT_ENTRY_NOOP, NULL, 0) != 0) {
        r->oom = true;
        return;
    }
    r->pending_conf_index = raft_log_last(&r->log);
    raft_logf(r, RFS_LOG_INFO, "became leader");
    raft_bcast_append(r);
}

static unsigned count_votes(struct raft *r, bool granted)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->n_votes; i++) {
        if (r->vote_granted[i] == granted && raft_conf_is_voter(&r->conf, r->votes[i])) {
            n++;
        }
    }
    return n;
}

static void record_vote(struct raft *r, raft_id from, bool granted)
{
    for (unsigned i = 0; i < r->n_votes; i++) {
        if (r->votes[i] == from) {
            return; /* duplicate */
        }
    }
    if (r->n_votes < RAFT_MAX_NODES) {
        r->votes[r->n_votes] = from;
        r->vote_granted[r->n_votes] = granted;
        r->n_votes++;
    }
}

static void campaign(struct raft *r, bool pre, bool transfer)
{
    uint8_t type;
    raft_term term;
    if (!promotable(r)) {
        return;
    }
    if (pre) {
        become_pre_candidate(r);
        type = RAFT_MSG_PREVOTE;
        term = r->term + 1;
    } else {
        become_candidate(r);
        type = RAFT_MSG_VOTE;
        term = r->term;
    }
    record_vote(r, r->id, true);
    if (count_votes(r, true) >= raft_conf_quorum(&r->conf)) {
        /* Single voter: won already. */
        if (pre) {
            campaign(r, false, transfer);
        } else {
            become_leader(r);
        }
        return;
    }
    for (unsigned i = 0; i < r->conf.n_voters; i++) {
        raft_id to = r->conf.voters[i];
        struct raft_message *m;
        if (to == r->id) {
            continue;
        }
        m = raft_send(r, type, to);
        if (m == NULL) {
            return;
        }
        m->term = term;
        m->index = raft_log_last(&r->log);
        m->log_term = raft_log_last_term(&r->log);
        m->transfer = transfer;
    }
}

void raft_campaign(struct raft *r)
{
    if (r->role == RAFT_LEADER) {
        return;
    }
    campaign(r, r->cfg.pre_vote, false);
}

static void tick_election(struct raft *r)
{
    r->election_elapsed++;
    if (promotable(r) && r->election_elapsed >= r->randomized_timeout) {
        r->election_elapsed = 0;
        campaign(r, r->cfg.pre_vote, false);
    }
}

static bool quorum_active(struct raft *r)
{
    unsigned active = 0;
    for (unsigned i = 0; i < r->n_prs; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (pr->learner) {
            continue;
        }
        if (pr->id == r->id || pr->recent_active) {
            active++;
        }
        pr->recent_active = false;
    }
    return active >= raft_conf_quorum(&r->conf);
}

static void tick_heartbeat(struct raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->cfg.election_ticks) {
        r->election_elapsed = 0;
        /* CheckQuorum (thesis §6.2): a leader that has not heard from a majority for an
         * election timeout steps down, so clients stop waiting on it. */
        if (r->cfg.check_quorum && !quorum_active(r)) {
            raft_logf(r, RFS_LOG_INFO, "stepping down: quorum not active");
            raft_become_follower(r, r->term, 0);
            return;
        }
        if (r->transferee != 0) {
            raft_logf(r, RFS_LOG_INFO, "leadership transfer to %llu timed out",
                      (unsigned long long)r->transferee);
            r->transferee = 0;
        }
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        raft_bcast_heartbeat(r);
    }
}

void raft_tick(struct raft *r)
{
    r->ticks++;
    if (r->role == RAFT_LEADER) {
        tick_heartbeat(r);
    } else {
        tick_election(r);
    }
}

static void handle_vote_request(struct raft *r, const struct raft_message *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can_vote =
        r->vote == m->from || (r->vote == 0 && r->leader == 0) || (pre && m->term > r->term);
    struct raft_message *resp;
    uint8_t type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    if (can_vote && raft_log_up_to_date(&r->log, m->index, m->log_term)) {
        resp = raft_send(r, type, m->from);
        if (resp != NULL) {
            resp->term = m->term;
        }
        if (!pre) {
            r->election_elapsed = 0;
            r->vote = m->from;
        }
        raft_logf(r, RFS_LOG_DEBUG, "granted %s to %llu at term %llu", raft_msg_type_name(m->type),
                  (unsigned long long)m->from, (unsigned long long)m->term);
    } else {
        resp = raft_send(r, type, m->from);
        if (resp != NULL) {
            resp->reject = true;
        }
    }
}

static void handle_vote_response(struct raft *r, const struct raft_message *m)
{
    bool pre = r->role == RAFT_PRE_CANDIDATE;
    unsigned q = raft_conf_quorum(&r->conf);
    if ((pre && m->type != RAFT_MSG_PREVOTE_RESP) || (!pre && m->type != RAFT_MSG_VOTE_RESP)) {
        return;
    }
    record_vote(r, m->from, !m->reject);
    if (count_votes(r, true) >= q) {
        if (pre) {
            campaign(r, false, false);
        } else {
            become_leader(r);
        }
    } else if (count_votes(r, false) >= q) {
        raft_become_follower(r, r->term, 0);
    }
}

static void candidate_step(struct raft *r, const struct raft_message *m)
{
    switch (m->type) {
        case RAFT_MSG_APPEND:
        case RAFT_MSG_HEARTBEAT:
        case RAFT_MSG_SNAPSHOT:
            /* A leader exists for this term (or, for a pre-candidate, at least ours). */
            raft_become_follower(r, m->term, m->from);
            if (m->type == RAFT_MSG_APPEND) {
                raft_handle_append(r, m);
            } else if (m->type == RAFT_MSG_HEARTBEAT) {
                raft_handle_heartbeat(r, m);
            } else {
                raft_handle_snapshot(r, m);
            }
            break;
        case RAFT_MSG_VOTE_RESP:
        case RAFT_MSG_PREVOTE_RESP:
            handle_vote_response(r, m);
            break;
        default:
            break;
    }
}

static void follower_step(struct raft *r, const struct raft_message *m)
{
    switch (m->type) {
        case RAFT_MSG_APPEND:
            r->election_elapsed = 0;
            r->leader = m->from;
            raft_handle_append(r, m);
            break;
        case RAFT_MSG_HEARTBEAT:
            r->election_elapsed = 0;
            r->leader = m->from;
            raft_handle_heartbeat(r, m);
            break;
        case RAFT_MSG_SNAPSHOT:
            r->election_elapsed = 0;
            r->leader = m->from;
            raft_handle_snapshot(r, m);
            break;
        case RAFT_MSG_TIMEOUT_NOW:
            raft_logf(r, RFS_LOG_INFO, "leadership transfer from %llu: campaigning",
                      (unsigned long long)m->from);
            campaign(r, false, true);
            break;
        default:
            break;
    }
}

/* Term rules applied to every message before the role sees it (Raft §5.1, with the
 * PreVote and CheckQuorum refinements of thesis §9.6). Returns false to drop m. */
static bool step_term(struct raft *r, const struct raft_message *m)
{
    if (m->term > r->term) {
        bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
        if (vote_req && !m->transfer && r->cfg.check_quorum &&
            ((r->leader != 0 && r->election_elapsed < r->cfg.election_ticks) ||
             (r->cfg.lease_reads && r->ticks < r->cfg.election_ticks))) {
            /* We heard from a leader recently: do not let a disruptive server depose it.
             * The same holds for an election timeout after a restart, since we may have
             * heard from one just before: leaders' read leases count on it. */
            raft_logf(r, RFS_LOG_DEBUG, "ignoring %s from %llu at term %llu: %s",
                      raft_msg_type_name(m->type), (unsigned long long)m->from,
                      (unsigned long long)m->term,
                      r->leader != 0 ? "leader lease" : "started less than an election ago");
            return false;
        }
        if (m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)) {
            /* Pre-votes never change terms. */
            return true;
        }
        if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
            m->type == RAFT_MSG_SNAPSHOT) {
            raft_become_follower(r, m->term, m->from);
        } else {
            raft_become_follower(r, m->term, 0);
        }
        return true;
    }
    if (m->term < r->term) {
        if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
            (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
            /* A stale leader: tell it our term so it steps down. Without this, a node that
             * was partitioned and pre-voted in vain could wait forever. */
            (void)raft_send(r, RAFT_MSG_APPEND_RESP, m->from);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            struct raft_message *resp = raft_send(r, RAFT_MSG_PREVOTE_RESP, m->from);
            if (resp != NULL) {
                resp->reject = true;
            }
        }
        return false;
    }
    return true;
}

/* Messages come from the network: never let one that no correct peer could send reach the
 * handlers, whose invariants (term 0 means "no entry") it would break. */
static bool message_valid(const struct raft_message *m)
{
    if (m->term == 0) {
        return false;
    }
    for (unsigned i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->term == 0 || e->term > m->term || e->index != m->index + 1 + i ||
            (i > 0 && e->term < m->entries[i - 1].term) || e->term < m->log_term) {
            return false;
        }
    }
    if (m->type == RAFT_MSG_SNAPSHOT &&
        (m->snap.index == 0 || m->snap.term == 0 || m->snap.term > m->term ||
         m->snap.conf.n_voters == 0 || m->snap.conf.n_voters > RAFT_MAX_NODES ||
         m->snap.conf.n_learners > RAFT_MAX_NODES)) {
        return false;
    }
    return true;
}

void raft_step(struct raft *r, const struct raft_message *m)
{
    assert(!r->in_ready);
    if (r->oom || m->to != r->id || m->from == r->id || m->from == 0) {
        return;
    }
    if (!message_valid(m)) {
        raft_logf(r, RFS_LOG_WARN, "dropping malformed %s from %llu", raft_msg_type_name(m->type),
                  (unsigned long long)m->from);
        return;
    }
    if (!step_term(r, m)) {
        return;
    }
    if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
        handle_vote_request(r, m);
        return;
    }
    switch (r->role) {
        case RAFT_LEADER:
            raft_leader_step(r, m);
            break;
        case RAFT_CANDIDATE:
        case RAFT_PRE_CANDIDATE:
            candidate_step(r, m);
            break;
        case RAFT_FOLLOWER:
            follower_step(r, m);
            break;
    }
}

static int append_as_leader(struct raft *r, uint8_t type, const void *data, size_t len,
                            raft_index *index)
{
    int rv;
    if (r->role != RAFT_LEADER) {
        return RFS_ENOTLEADER;
    }
    if (r->transferee != 0) {
        return RFS_ETRANSFER;
    }
    if (r->oom) {
        return RFS_ENOMEM;
    }
    rv = raft_log_append(&r->log, r->term, type, data, len);
    if (rv != 0) {
        return rv;
    }
    if (index != NULL) {
        *index = raft_log_last(&r->log);
    }
    /* Sent when the ready is built, so many proposals share one append (batching). */
    return 0;
}

int raft_propose(struct raft *r, const void *data, size_t len, raft_index *index)
{
    assert(!r->in_ready);
    return append_as_leader(r, RAFT_ENTRY_NORMAL, data, len, index);
}

int raft_propose_conf(struct raft *r, const struct raft_conf_change *cc, raft_index *index)
{
    uint8_t buf[RAFT_CONF_CHANGE_SIZE + RAFT_CONF_CONTEXT_MAX];
    struct raft_conf next = r->conf;
    int rv;
    assert(!r->in_ready);
    if (r->role != RAFT_LEADER) {
        return RFS_ENOTLEADER;
    }
    if (r->pending_conf_index > r->log.committed) {
        return RFS_ECONFPENDING;
    }
    if (cc->node == 0 || cc->context_len > RAFT_CONF_CONTEXT_MAX ||
        (cc->context_len > 0 && cc->context == NULL) || raft_conf_apply(&next, cc) != 0) {
        return RFS_EINVAL;
    }
    raft_conf_change_encode(cc, buf);
    rv = append_as_leader(r, RAFT_ENTRY_CONF, buf, raft_conf_change_size(cc), index);
    if (rv != 0) {
        return rv;
    }
    r->conf = next;
    r->conf_index = raft_log_last(&r->log);
    r->pending_conf_index = r->conf_index;
    rv = raft_progress_rebuild(r);
    if (rv != 0) {
        r->oom = true;
        return rv;
    }
    raft_logf(r, RFS_LOG_INFO, "proposed conf change %u node %llu at %llu", cc->type,
              (unsigned long long)cc->node, (unsigned long long)r->conf_index);
    return 0;
}

int raft_read_index(struct raft *r, uint64_t ctx)
{
    struct raft_read_req *req;
    /* The read index is our commit index, but only once an entry of our own term has
     * committed: before that we may not know the latest commit (thesis §6.4 step 1). */
    bool own_commit = raft_log_term(&r->log, r->log.committed) == r->term;
    assert(!r->in_ready);
    if (r->role != RAFT_LEADER) {
        return RFS_ENOTLEADER;
    }
    if (own_commit && raft_lease_valid(r)) {
        /* No other leader can be elected yet: no heartbeat round (thesis §6.4.1). */
        return raft_read_ready_push(r, ctx, r->log.committed);
    }
    if (r->n_read_reqs == r->cap_read_reqs) {
        unsigned cap = r->cap_read_reqs ? r->cap_read_reqs * 2 : 16;
        struct raft_read_req *reqs = rfs_realloc(r->read_reqs, cap * sizeof *reqs);
        if (reqs == NULL) {
            return RFS_ENOMEM;
        }
        r->read_reqs = reqs;
        r->cap_read_reqs = cap;
    }
    req = &r->read_reqs[r->n_read_reqs++];
    req->ctx = ctx;
    req->index = 0;
    req->seq = 0;
    if (own_commit) {
        req->index = r->log.committed;
        req->seq = ++r->read_seq;
        r->read_bcast = true;
    }
    raft_read_release(r);
    return 0;
}

int raft_transfer_leader(struct raft *r, raft_id target)
{
    struct raft_progress *pr;
    assert(!r->in_ready);
    if (r->role != RAFT_LEADER) {
        return RFS_ENOTLEADER;
    }
    if (target == r->id) {
        return 0;
    }
    if (!raft_conf_is_voter(&r->conf, target)) {
        return RFS_EINVAL;
    }
    pr = raft_progress_find(r, target);
    if (pr == NULL) {
        return RFS_EINVAL;
    }
    r->transferee = target;
    r->election_elapsed = 0; /* the transfer must finish within one election timeout */
    /* The target's campaign overrides the members' lease (step_term), and its TIMEOUT_NOW
     * may arrive late: no lease reads for the rest of this term. */
    r->lease_off = true;
    raft_logf(r, RFS_LOG_INFO, "transferring leadership to %llu", (unsigned long long)target);
    if (pr->match == raft_log_last(&r->log)) {
        (void)raft_send(r, RAFT_MSG_TIMEOUT_NOW, target);
    } else {
        raft_send_append(r, pr, true);
    }
    return 0;
}
