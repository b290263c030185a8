/* kv/txn_client.c: the coordinator of a transaction over several groups: two-phase commit
 * run by the client, every participant a Raft group, the decision kept in a record beside
 * the primary key (docs/txn.md).
 *
 * Happy path: pick a random txn id; group the keys by the cached configuration (the
 * primary's group first); prepare every group in that order (KV_TXN_PREPARE: each group
 * checks the read versions and locks its keys, the primary's group also writes the record
 * PENDING); commit the primary (KV_TXN_COMMIT, is_primary: the record becomes COMMITTED and
 * that group's intents apply; this is the commit point); commit the other groups
 * (is_primary false); return 0. Every request is idempotent and carries no session.
 *
 * Failure modes:
 * - A prepare meets another transaction's lock (ELOCKED): KV_TXN_CHECK asks its primary's
 *   group. Decided (or expired, which the check turns into ABORTED): settle that key and
 *   prepare again. Pending: the owner is alive, so give up rather than wait (of two
 *   conflicting transactions at most one commits, and nobody waits on a lock holder that
 *   may be dead): abort our own transaction, return RFS_ECONFLICT naming the key.
 * - A prepare finds a read version changed, or our record already aborted (ECONFLICT):
 *   abort, return RFS_ECONFLICT naming the key.
 * - A group answers WRONG_GROUP (a bucket moved meanwhile): read the configuration again,
 *   group the keys again and resend the phase to every group: prepare and commit are
 *   idempotent per key, and the locks and record moved with their buckets.
 * - The primary commit finds the record ABORTED (our locks expired and a reader aborted
 *   us): roll back the other groups' locks and return RFS_ECONFLICT.
 * - No answer to the primary commit: resend until the timeout, then RFS_ETIMEDOUT,
 *   "outcome unknown".
 * - A secondary group cannot be reached: the outcome is decided, so return 0 with a
 *   warning; whoever meets those locks rolls them forward.
 * Aborting sends KV_TXN_ABORT to the primary's group first (the record becomes ABORTED, so a
 * late prepare cannot revive it), then to the other groups that were sent a prepare. Aborts
 * and secondary commits get at least CLEANUP_MIN_MS even when the timeout has passed.
 *
 * options.crash_after stops the coordinator between two steps and returns RFS_ESTOPPED, to
 * test what others do with the locks of a dead coordinator. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../common/random.h"
#include "../rpc/rpc.h"
#include "txn_client.h"

#define CLEANUP_MIN_MS 500u
#define REPLAN_MIN_MS  10u
#define REPLAN_MAX_MS  200u
#define KEY_SHOWN(k)   (int)((k)->len < 100 ? (k)->len : 100), (const char *)(k)->data

struct coord {
    struct kv_route *r;
    const struct kv_txn_client_options *o;
    const struct kv_txn_read *reads;
    unsigned n_reads;
    const struct kv_txn_write *writes;
    unsigned n_writes;
    ProtobufCBinaryData *keys; /* reads' keys, then writes' (for kv_route_groups) */
    uint64_t *gids;
    uint64_t version; /* of the configuration the plan was made by */
    struct kv_txn_plan plan;
    uint64_t txn_id;
    uint64_t started;
    uint64_t deadline;
    unsigned replan_wait;
    bool maybe_locked; /* a prepare took effect, or may have */
    uint64_t *sent;    /* groups sent a prepare */
    unsigned n_sent;
    unsigned cap_sent;
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static const char *crash_name(enum kv_txn_crash c)
{
    switch (c) {
        case KV_TXN_CRASH_AFTER_PRIMARY_PREPARE:
            return "after the primary's prepare";
        case KV_TXN_CRASH_AFTER_PREPARES:
            return "after every prepare";
        case KV_TXN_CRASH_AFTER_PRIMARY_COMMIT:
            return "after the primary commit";
        case KV_TXN_CRASH_AFTER_SECONDARY_COMMIT:
            return "after the first secondary commit";
        default:
            return "nowhere";
    }
}

/* The test hook: RFS_ESTOPPED if the coordinator is to die at point. */
static int crash_at(struct coord *co, enum kv_txn_crash point, char *errmsg)
{
    if (co->o->crash_after != point) {
        return 0;
    }
    rfs_errmsg_printf(errmsg, "transaction %016llx stopped %s (txn_crash_after, a test hook)",
                      (unsigned long long)co->txn_id, crash_name(point));
    return RFS_ESTOPPED;
}

static void sent_add(struct coord *co, uint64_t gid)
{
    for (unsigned i = 0; i < co->n_sent; i++) {
        if (co->sent[i] == gid) {
            return;
        }
    }
    if (co->n_sent == co->cap_sent) {
        unsigned cap = co->cap_sent ? co->cap_sent * 2 : 4;
        uint64_t *s = rfs_realloc(co->sent, cap * sizeof *s);
        if (s == NULL) {
            return; /* that group's locks are then left to expire */
        }
        co->sent = s;
        co->cap_sent = cap;
    }
    co->sent[co->n_sent++] = gid;
}

static bool sent_has(const struct coord *co, uint64_t gid)
{
    for (unsigned i = 0; i < co->n_sent; i++) {
        if (co->sent[i] == gid) {
            return true;
        }
    }
    return false;
}

/* Group the keys by the cached configuration, waiting (and refreshing) while a bucket has
 * no group. Returns 0, or an error once the deadline passed. */
static int coord_plan(struct coord *co, char *errmsg)
{
    unsigned wait = REPLAN_MIN_MS;
    for (;;) {
        unsigned n = co->n_reads + co->n_writes;
        unsigned missing = n;
        uint64_t now;
        int rv = kv_route_groups(co->r, co->keys, n, co->gids, &co->version, errmsg);
        for (unsigned i = 0; rv == 0 && i < n && missing == n; i++) {
            if (co->gids[i] == 0) {
                missing = i;
            }
        }
        if (rv == 0 && missing == n) {
            kv_txn_plan_close(&co->plan);
            rv = kv_txn_plan_init(&co->plan, co->reads, co->n_reads, co->writes, co->n_writes,
                                  co->gids);
            if (rv != 0) {
                rfs_errmsg_printf(errmsg, "out of memory");
            }
            return rv;
        }
        now = rpc_now_ms();
        if (rv == RFS_ENOMEM || now >= co->deadline) {
            if (rv == 0) {
                rv = RFS_EWRONGGROUP;
                rfs_errmsg_printf(errmsg,
                                  "key '%.*s' is in a bucket served by no group (configuration "
                                  "%llu): join a group with raftfs meta join",
                                  KEY_SHOWN(&co->keys[missing]), (unsigned long long)co->version);
            }
            return rv;
        }
        kv_route_refresh(co->r);
        sleep_ms(co->deadline - now < wait ? (unsigned)(co->deadline - now) : wait);
        wait = wait * 2 < REPLAN_MAX_MS ? wait * 2 : REPLAN_MAX_MS;
    }
}

/* After a WRONG_GROUP: a newer configuration, or a pause, then group the keys again. */
static int coord_replan(struct coord *co, char *errmsg)
{
    uint64_t before = co->version;
    uint64_t now = rpc_now_ms();
    kv_route_refresh(co->r);
    if (now >= co->deadline) {
        rfs_errmsg_printf(errmsg, "a bucket of the transaction kept moving (configuration %llu)",
                          (unsigned long long)co->version);
        return RFS_EWRONGGROUP;
    }
    if (kv_route_groups(co->r, co->keys, 0, co->gids, &co->version, errmsg) == 0 &&
        co->version == before) {
        /* The group has not caught up with the configuration yet, or ours is old and the
         * meta group was asked a moment ago by another thread: wait a little. */
        sleep_ms(co->deadline - now < co->replan_wait ? (unsigned)(co->deadline - now)
                                                      : co->replan_wait);
        co->replan_wait = co->replan_wait * 2 < REPLAN_MAX_MS ? co->replan_wait * 2 : REPLAN_MAX_MS;
    } else {
        co->replan_wait = REPLAN_MIN_MS;
    }
    return coord_plan(co, errmsg);
}

/* Send op for part to its group, until deadline. Returns the route's code; 0 with the reply
 * (whatever its status) in *out. *unknown is set if an attempt got no answer. */
static int coord_send(struct coord *co, const struct kv_txn_part *part, Raftfs__KvOp op,
                      bool is_primary, uint64_t deadline, Raftfs__KvReply **out, bool *unknown,
                      char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    struct kv_route_opts rc;
    int rv;
    req.op = op;
    req.txn_id = co->txn_id;
    req.primary = co->plan.primary;
    if (op == RAFTFS__KV_OP__KV_TXN_PREPARE) {
        req.ttl_ms = co->o->ttl_ms;
        req.n_reads = part->n_reads;
        req.reads = part->reads;
        req.n_writes = part->n_writes;
        req.writes = part->writes;
    } else {
        req.is_primary = is_primary;
        req.n_keys = part->n_keys;
        req.keys = part->keys;
    }
    memset(&rc, 0, sizeof rc);
    rc.gid = part->gid;
    rc.deadline_ms = deadline;
    rv = kv_route_call(co->r, &req, &rc, out, errmsg);
    if (unknown != NULL && rc.unknown) {
        *unknown = true;
    }
    return rv;
}

static uint64_t cleanup_deadline(const struct coord *co)
{
    uint64_t floor = rpc_now_ms() + CLEANUP_MIN_MS;
    return co->deadline > floor ? co->deadline : floor;
}

/* Abort our transaction: the primary's group first, then the others sent a prepare. Best
 * effort: what fails is left to expire and be rolled back by whoever meets it. */
static void coord_abort(struct coord *co)
{
    uint64_t deadline = cleanup_deadline(co);
    if (!co->maybe_locked) {
        return; /* nothing was written anywhere */
    }
    for (unsigned g = 0; g < co->plan.n_parts; g++) {
        const struct kv_txn_part *part = &co->plan.parts[g];
        Raftfs__KvReply *rep = NULL;
        char why[RFS_ERRMSG_SIZE] = "";
        int rv;
        if (g > 0 && !sent_has(co, part->gid)) {
            continue;
        }
        rv = coord_send(co, part, RAFTFS__KV_OP__KV_TXN_ABORT, part->holds_primary, deadline, &rep,
                        NULL, why);
        if (rv == 0 && rep->status != 0) {
            rv = (int)rep->status;
            snprintf(why, sizeof why, "%s", rep->error ? rep->error : rfs_strerror(rv));
        }
        if (rv == 0 && part->holds_primary && rep->txn_state == RAFTFS__TXN_STATE__TXN_COMMITTED) {
            /* Cannot be: only this coordinator commits, and it did not. */
            rfs_errorf("transaction %016llx: abort found the record committed",
                       (unsigned long long)co->txn_id);
        }
        if (rv != 0) {
            rfs_infof("transaction %016llx: abort at group %llu: %s (its locks expire in %u "
                      "ms)",
                      (unsigned long long)co->txn_id, (unsigned long long)part->gid, why,
                      co->o->ttl_ms);
        }
        if (rep != NULL) {
            raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
        }
    }
}

/* A prepare met another transaction's lock: settle it if that transaction is decided or
 * expired (0: prepare again), else RFS_ECONFLICT. */
static int coord_meet_lock(struct coord *co, const Raftfs__KvReply *rep, char *errmsg)
{
    const Raftfs__LockInfo *l = rep->lock;
    Raftfs__TxnState state;
    int rv;
    if (l == NULL || l->txn_id == co->txn_id) {
        rfs_errmsg_printf(errmsg, "a group answered ELOCKED without another transaction's lock");
        return RFS_EPROTO;
    }
    rv = kv_txn_resolve_check(co->r, l, co->deadline, &state, errmsg);
    if (rv == 0 && state == RAFTFS__TXN_STATE__TXN_PENDING) {
        rfs_errmsg_printf(errmsg,
                          "conflict on key %.*s (locked by transaction %016llx, in progress)",
                          KEY_SHOWN(&l->key), (unsigned long long)l->txn_id);
        return RFS_ECONFLICT;
    }
    if (rv == 0) {
        rv = kv_txn_resolve_settle(co->r, l, state, co->deadline, errmsg);
    }
    return rv;
}

/* A refused prepare (rep->status != 0, not WRONG_GROUP or ELOCKED): the code and message. */
static int prepare_refused(const struct coord *co, const Raftfs__KvReply *rep, char *errmsg)
{
    int rv = (int)rep->status;
    if (rv == RFS_ECONFLICT && rep->txn_state == RAFTFS__TXN_STATE__TXN_ABORTED) {
        rfs_errmsg_printf(errmsg,
                          "conflict on key %.*s: the transaction was aborted by another client "
                          "(its locks expired)",
                          KEY_SHOWN(&co->plan.primary));
    } else if (rv == RFS_ECONFLICT && rep->conflict_key.len > 0) {
        rfs_errmsg_printf(errmsg, "conflict on key %.*s", KEY_SHOWN(&rep->conflict_key));
    } else {
        rfs_errmsg_printf(errmsg, "%s",
                          rep->error != NULL && rep->error[0] ? rep->error : rfs_strerror(rv));
    }
    return rv;
}

/* Phase 1. Returns 0 when every group is prepared; otherwise the transaction is aborted
 * (or RFS_ESTOPPED: left as it is). */
static int coord_prepare(struct coord *co, char *errmsg)
{
    bool primary_done = false;
    int rv = 0;
    for (;;) {
        bool replan = false;
        for (unsigned g = 0; g < co->plan.n_parts && !replan;) {
            const struct kv_txn_part *part = &co->plan.parts[g];
            Raftfs__KvReply *rep = NULL;
            bool unknown = false;
            bool again = false;
            sent_add(co, part->gid);
            rv = coord_send(co, part, RAFTFS__KV_OP__KV_TXN_PREPARE, false, co->deadline, &rep,
                            &unknown, errmsg);
            co->maybe_locked |=
                unknown || (rv != 0 && rv != RFS_EWRONGGROUP) || (rv == 0 && rep->status == 0);
            if (rv == RFS_EWRONGGROUP || (rv == 0 && rep->status == RFS_EWRONGGROUP)) {
                replan = true;
            } else if (rv == 0 && rep->status == RFS_ELOCKED) {
                rv = coord_meet_lock(co, rep, errmsg);
                again = true; /* prepare this group again */
            } else if (rv == 0 && rep->status != 0) {
                rv = prepare_refused(co, rep, errmsg);
            } else if (rv == 0 && part->holds_primary && !primary_done) {
                primary_done = true;
                rv = crash_at(co, KV_TXN_CRASH_AFTER_PRIMARY_PREPARE, errmsg);
            }
            if (rep != NULL) {
                raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
            }
            if (rv == 0 && !replan && (again || g + 1 < co->plan.n_parts) &&
                rpc_now_ms() >= co->deadline) {
                rv = RFS_ETIMEDOUT;
                rfs_errmsg_printf(errmsg, "timed out after %llu ms",
                                  (unsigned long long)(rpc_now_ms() - co->started));
            }
            if (rv != 0 && rv != RFS_EWRONGGROUP) {
                if (rv != RFS_ESTOPPED && rv != RFS_ECONFLICT) {
                    rfs_errmsg_wrapf(errmsg, "prepare at group %llu",
                                     (unsigned long long)part->gid);
                }
                if (rv != RFS_ESTOPPED) {
                    coord_abort(co);
                }
                return rv;
            }
            if (!again) {
                g++;
            }
        }
        if (!replan) {
            return crash_at(co, KV_TXN_CRASH_AFTER_PREPARES, errmsg);
        }
        rv = coord_replan(co, errmsg);
        if (rv != 0) {
            rfs_errmsg_wrapf(errmsg, "preparing");
            coord_abort(co);
            return rv;
        }
    }
}

/* Phase 2: the commit point. 0 when the record is COMMITTED. */
static int coord_commit_primary(struct coord *co, char *errmsg)
{
    bool unknown = false;
    for (;;) {
        const struct kv_txn_part *part = &co->plan.parts[0];
        Raftfs__KvReply *rep = NULL;
        int rv = coord_send(co, part, RAFTFS__KV_OP__KV_TXN_COMMIT, true, co->deadline, &rep,
                            &unknown, errmsg);
        if (rv == RFS_EWRONGGROUP || (rv == 0 && rep->status == RFS_EWRONGGROUP)) {
            if (rep != NULL) {
                raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
            }
            rv = coord_replan(co, errmsg);
            if (rv == 0) {
                continue;
            }
        } else if (rv == 0) {
            rv = (int)rep->status;
            if (rv == RFS_ECONFLICT && rep->txn_state == RAFTFS__TXN_STATE__TXN_ABORTED) {
                rfs_errmsg_printf(errmsg,
                                  "transaction aborted: its locks expired before it "
                                  "committed (ttl %u ms)",
                                  co->o->ttl_ms);
            } else if (rv != 0) {
                rfs_errmsg_printf(errmsg, "%s",
                                  rep->error != NULL && rep->error[0] ? rep->error
                                                                      : rfs_strerror(rv));
            }
            raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
            if (rv == 0) {
                return 0;
            }
            if (rv != RFS_ECONFLICT) {
                rfs_errmsg_wrapf(errmsg, "commit at group %llu", (unsigned long long)part->gid);
            }
            coord_abort(co); /* refused: the record is not committed */
            return rv;
        }
        /* No definite answer by the deadline. */
        if (unknown || rv == RFS_ENOMEM) {
            rfs_errmsg_wrapf(errmsg,
                             "transaction %016llx: outcome unknown (the commit at group %llu "
                             "was not confirmed)",
                             (unsigned long long)co->txn_id, (unsigned long long)part->gid);
            return rv == RFS_ENOMEM ? rv : RFS_ETIMEDOUT;
        }
        rfs_errmsg_wrapf(errmsg, "not committed: commit at group %llu",
                         (unsigned long long)part->gid);
        return rv;
    }
}

/* Phase 3: the decision is made; apply it at the other groups. Failures are logged. */
static int coord_commit_secondaries(struct coord *co, char *errmsg)
{
    bool all = false; /* after a re-plan: every group (keys may have moved in or out) */
    bool first = true;
    int rv;
    for (;;) {
        uint64_t deadline = cleanup_deadline(co);
        bool replan = false;
        for (unsigned g = all ? 0 : 1; g < co->plan.n_parts && !replan; g++) {
            const struct kv_txn_part *part = &co->plan.parts[g];
            Raftfs__KvReply *rep = NULL;
            char why[RFS_ERRMSG_SIZE] = "";
            rv = coord_send(co, part, RAFTFS__KV_OP__KV_TXN_COMMIT, false, deadline, &rep, NULL,
                            why);
            if (rv == RFS_EWRONGGROUP || (rv == 0 && rep->status == RFS_EWRONGGROUP)) {
                replan = true;
            } else if (rv == 0 && rep->status != 0) {
                rv = (int)rep->status;
                snprintf(why, sizeof why, "%s", rep->error ? rep->error : rfs_strerror(rv));
            }
            if (rep != NULL) {
                raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
            }
            if (rv != 0 && !replan) {
                rfs_warnf("transaction %016llx committed, but group %llu did not confirm its "
                          "part (%s): its locks will be rolled forward by whoever meets them",
                          (unsigned long long)co->txn_id, (unsigned long long)part->gid, why);
            } else if (rv == 0 && first) {
                first = false;
                rv = crash_at(co, KV_TXN_CRASH_AFTER_SECONDARY_COMMIT, errmsg);
                if (rv != 0) {
                    return rv;
                }
            }
        }
        if (!replan) {
            return 0;
        }
        if (coord_replan(co, errmsg) != 0) {
            rfs_warnf("transaction %016llx committed, but its other groups could not be "
                      "found (%s): their locks will be rolled forward by whoever meets them",
                      (unsigned long long)co->txn_id, errmsg);
            errmsg[0] = '\0';
            return 0;
        }
        all = true;
    }
}

int kv_txn_client_run(struct kv_route *r, const struct kv_txn_client_options *o,
                      const struct kv_txn_read *reads, unsigned n_reads,
                      const struct kv_txn_write *writes, unsigned n_writes, char *errmsg)
{
    struct coord co;
    unsigned n = n_reads + n_writes;
    char why[RFS_ERRMSG_SIZE] = "";
    int rv;

    if (n == 0) {
        return 0;
    }
    memset(&co, 0, sizeof co);
    co.r = r;
    co.o = o;
    co.reads = reads;
    co.n_reads = n_reads;
    co.writes = writes;
    co.n_writes = n_writes;
    co.txn_id = rfs_random_u64();
    co.started = rpc_now_ms();
    co.deadline = co.started + o->timeout_ms;
    co.replan_wait = REPLAN_MIN_MS;
    co.keys = rfs_calloc(n, sizeof *co.keys);
    co.gids = rfs_calloc(n, sizeof *co.gids);
    if (co.keys == NULL || co.gids == NULL) {
        rv = RFS_ENOMEM;
        snprintf(why, sizeof why, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < n_reads; i++) {
        co.keys[i].data = (uint8_t *)reads[i].key;
        co.keys[i].len = reads[i].klen;
    }
    for (unsigned i = 0; i < n_writes; i++) {
        co.keys[n_reads + i].data = (uint8_t *)writes[i].key;
        co.keys[n_reads + i].len = writes[i].klen;
    }
    rv = coord_plan(&co, why);
    if (rv == 0) {
        rv = coord_prepare(&co, why);
    }
    if (rv == 0) {
        rv = coord_commit_primary(&co, why);
    }
    if (rv == 0) {
        rv = crash_at(&co, KV_TXN_CRASH_AFTER_PRIMARY_COMMIT, why);
    }
    if (rv == 0) {
        rv = coord_commit_secondaries(&co, why);
    }
out:
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "%s", why);
    }
    rfs_debugf("transaction %016llx over %u groups: %s after %llu ms",
               (unsigned long long)co.txn_id, co.plan.n_parts, rv == 0 ? "committed" : why,
               (unsigned long long)(rpc_now_ms() - co.started));
    kv_txn_plan_close(&co.plan);
    rfs_free(co.sent);
    rfs_free(co.keys);
    rfs_free(co.gids);
    return rv;
}
