/* kv/txn_client.h: the client side of cross-group transactions (docs/txn.md): a
 * transaction's keys grouped by the group serving them (kv/txn_plan.c), settling a lock that
 * an operation met (kv/txn_resolve.c), and the two-phase-commit coordinator
 * (kv/txn_client.c). Internal to kv/: applications call kv_client_txn. */
#ifndef KV_TXN_CLIENT_H
#define KV_TXN_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "../proto/proto.h"
#include "client.h"
#include "client_internal.h"

/* ---- kv/txn_plan.c: which group gets which keys ---- */

/* One group's share of a transaction. reads and writes point into the plan's messages
 * (whose key and value bytes are the caller's); keys are its distinct keys, read or written
 * (the locks it takes there): the writes' keys, then the reads', each once. */
struct kv_txn_part {
    uint64_t gid;
    bool holds_primary;
    unsigned n_reads;
    Raftfs__TxnRead **reads;
    unsigned n_writes;
    Raftfs__TxnWrite **writes;
    unsigned n_keys;
    ProtobufCBinaryData *keys;
};

struct kv_txn_plan {
    ProtobufCBinaryData primary; /* the first write's key, else the first read's */
    unsigned n_parts;
    struct kv_txn_part *parts; /* parts[0] holds the primary; the others in key order */
    /* Storage the parts point into. */
    Raftfs__TxnRead *read_msgs;
    Raftfs__TxnWrite *write_msgs;
    Raftfs__TxnRead **read_ptrs;
    Raftfs__TxnWrite **write_ptrs;
    ProtobufCBinaryData *key_store;
};

/* Group the transaction's keys: gids[i] is the group of reads[i], gids[n_reads + j] that of
 * writes[j]. The keys and values are borrowed (they must outlive the plan). Needs at least
 * one read or write (else RFS_EINVAL). Returns 0 or RFS_ENOMEM; release with kv_txn_plan_close
 * (safe on a zeroed plan, and after a failure). */
int kv_txn_plan_init(struct kv_txn_plan *p, const struct kv_txn_read *reads, unsigned n_reads,
                     const struct kv_txn_write *writes, unsigned n_writes, const uint64_t *gids);
void kv_txn_plan_close(struct kv_txn_plan *p);
/* The part for group gid, or NULL. */
struct kv_txn_part *kv_txn_plan_part(struct kv_txn_plan *p, uint64_t gid);

/* ---- kv/txn_resolve.c: meeting a lock ---- */

/* Ask the primary's group about the transaction that holds lock (KV_TXN_CHECK, a write:
 * an expired pending transaction becomes ABORTED) and put its state in *state. Returns 0, or
 * the error of the check (transport codes until deadline, or the group's refusal) with the
 * reason in errmsg. */
int kv_txn_resolve_check(struct kv_route *r, const Raftfs__LockInfo *lock, uint64_t deadline,
                         Raftfs__TxnState *state, char *errmsg);
/* Settle the locked key by its transaction's state: COMMITTED rolls it forward, ABORTED
 * back (KV_TXN_COMMIT or KV_TXN_ABORT of that key, is_primary false, to the key's group);
 * another state changes nothing. Returns 0 or the error of the request. */
int kv_txn_resolve_settle(struct kv_route *r, const Raftfs__LockInfo *lock, Raftfs__TxnState state,
                          uint64_t deadline, char *errmsg);
/* kv_txn_resolve_check, then settle the locked key: COMMITTED rolls it forward, ABORTED back
 * (KV_TXN_COMMIT or KV_TXN_ABORT of that key, is_primary false, to the key's group). PENDING
 * changes nothing (the caller waits). Returns as kv_txn_resolve_check. */
int kv_txn_resolve_lock(struct kv_route *r, const Raftfs__LockInfo *lock, uint64_t deadline,
                        Raftfs__TxnState *state, char *errmsg);

/* ---- kv/txn_client.c: the coordinator ---- */

struct kv_txn_client_options {
    unsigned timeout_ms; /* the whole transaction */
    unsigned ttl_ms;     /* lock lifetime */
    enum kv_txn_crash crash_after;
};

/* Run a transaction over several groups by two-phase commit (docs/txn.md), through r.
 * Returns 0 (committed), RFS_ECONFLICT (not committed: "conflict on key K", or aborted
 * because its locks expired), RFS_ETIMEDOUT with "outcome unknown" (the commit point was not
 * confirmed), RFS_ESTOPPED (o->crash_after reached: test only), or another error, before the
 * commit point, meaning not committed. */
int kv_txn_client_run(struct kv_route *r, const struct kv_txn_client_options *o,
                      const struct kv_txn_read *reads, unsigned n_reads,
                      const struct kv_txn_write *writes, unsigned n_writes, char *errmsg);

#endif
