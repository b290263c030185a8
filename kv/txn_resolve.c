/* kv/txn_resolve.c: settling a lock that an operation met (docs/txn.md, "Meeting a lock").
 *
 * A lock names its transaction and the primary key, whose bucket holds the transaction's
 * record. KV_TXN_CHECK to the primary's group reads the record through that group's log,
 * and aborts it there if the transaction is still pending past its deadline (by that
 * group's log time, so no client clock is trusted). The answer decides the key: COMMITTED
 * applies the lock's intent (KV_TXN_COMMIT of that key alone), ABORTED drops the lock
 * (KV_TXN_ABORT). Both are idempotent, so two clients settling the same lock, or a client
 * racing the coordinator, do no harm. PENDING is left alone: the owner is alive and in
 * its time, and the caller waits and retries.
 *
 * These requests carry no session (client_id 0): each is idempotent by itself. They are
 * routed by key (the check by the primary key, the commit or abort by the locked key), so
 * a bucket that moved is followed like any other request. */
#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "txn_client.h"

/* Send req by its routing key until deadline; 0 with the reply's state, or an error. */
static int resolve_send(struct kv_route *r, Raftfs__KvRequest *req, uint64_t deadline,
                        Raftfs__TxnState *state, char *errmsg)
{
    struct kv_route_opts rc;
    Raftfs__KvReply *rep = NULL;
    int rv;
    memset(&rc, 0, sizeof rc);
    rc.deadline_ms = deadline;
    rv = kv_route_call(r, req, &rc, &rep, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = (int)rep->status;
    *state = rep->txn_state;
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "%s",
                          rep->error != NULL && rep->error[0] != '\0' ? rep->error
                                                                      : rfs_strerror(rv));
    }
    raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    return rv;
}

int kv_txn_resolve_check(struct kv_route *r, const Raftfs__LockInfo *lock, uint64_t deadline,
                         Raftfs__TxnState *state, char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    int rv;
    *state = RAFTFS__TXN_STATE__TXN_UNKNOWN;
    req.op = RAFTFS__KV_OP__KV_TXN_CHECK;
    req.txn_id = lock->txn_id;
    req.primary = lock->primary;
    req.lock_deadline = lock->deadline_ms;
    rv = resolve_send(r, &req, deadline, state, errmsg);
    if (rv == 0 && *state != RAFTFS__TXN_STATE__TXN_PENDING &&
        *state != RAFTFS__TXN_STATE__TXN_COMMITTED && *state != RAFTFS__TXN_STATE__TXN_ABORTED) {
        rfs_errmsg_printf(errmsg, "the primary's group answered state %d", (int)*state);
        rv = RFS_EPROTO;
    }
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "checking transaction %016llx at its primary key's group",
                         (unsigned long long)lock->txn_id);
    }
    return rv;
}

int kv_txn_resolve_settle(struct kv_route *r, const Raftfs__LockInfo *lock, Raftfs__TxnState state,
                          uint64_t deadline, char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__TxnState ignored;
    ProtobufCBinaryData key = lock->key;
    bool forward = state == RAFTFS__TXN_STATE__TXN_COMMITTED;
    int rv;
    if (state != RAFTFS__TXN_STATE__TXN_COMMITTED && state != RAFTFS__TXN_STATE__TXN_ABORTED) {
        return 0;
    }
    req.op = forward ? RAFTFS__KV_OP__KV_TXN_COMMIT : RAFTFS__KV_OP__KV_TXN_ABORT;
    req.txn_id = lock->txn_id;
    req.primary = lock->primary;
    req.is_primary = false;
    req.n_keys = 1;
    req.keys = &key;
    rv = resolve_send(r, &req, deadline, &ignored, errmsg);
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "rolling key '%.*s' %s for transaction %016llx",
                         (int)(key.len < 100 ? key.len : 100), (const char *)key.data,
                         forward ? "forward" : "back", (unsigned long long)lock->txn_id);
        return rv;
    }
    rfs_debugf("transaction %016llx: key '%.*s' rolled %s", (unsigned long long)lock->txn_id,
               (int)(key.len < 100 ? key.len : 100), (const char *)key.data,
               forward ? "forward" : "back");
    return 0;
}

int kv_txn_resolve_lock(struct kv_route *r, const Raftfs__LockInfo *lock, uint64_t deadline,
                        Raftfs__TxnState *state, char *errmsg)
{
    int rv = kv_txn_resolve_check(r, lock, deadline, state, errmsg);
    if (rv != 0) {
        return rv;
    }
    return kv_txn_resolve_settle(r, lock, *state, deadline, errmsg);
}
