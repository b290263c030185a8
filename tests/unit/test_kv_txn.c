/* Tests of the transaction participant in the kv state machine (kv/txn.c, docs/txn.md), with
 * the commands applied by hand: prepare locks keys and checks read versions; every operation
 * on a locked key is refused with ELOCKED (and not recorded in the session); commit applies
 * the intents, abort drops them; the record decides (commit and abort/check race in one log,
 * one wins); an expired owner is aborted by CHECK; a secondary is rolled forward after the
 * primary commits; locks survive a restart and a snapshot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "kv_node.h"

#define NBUCKETS 8
#define TXN      0x1234ull

struct fixture {
    struct kv_node a, b;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    kv_node_init(&f->a, "kvtxn-a", NBUCKETS, 0);
    kv_node_init(&f->b, "kvtxn-b", NBUCKETS, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kv_node_destroy(&f->a);
    kv_node_destroy(&f->b);
    free(f);
    return 0;
}

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* Status of a write; *version the reply's version. client 0: no session. */
static uint32_t put(struct kv_node *n, const char *key, const char *val, uint64_t client,
                    uint64_t seq, uint64_t *version)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep;
    uint32_t status;
    r.op = RAFTFS__KV_OP__KV_PUT;
    r.key = bin(key);
    r.value = bin(val);
    r.client_id = client;
    r.seq = seq;
    rep = kv_node_apply(n, &r);
    status = rep->status;
    if (version != NULL) {
        *version = rep->version;
    }
    kv_node_reply_free(rep);
    return status;
}

/* GET: status, value into val, version; on ELOCKED the lock's txn id into *locker. */
static uint32_t get(struct kv_node *n, const char *key, char *val, size_t cap, uint64_t *version,
                    uint64_t *locker)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep;
    uint32_t status;
    r.op = RAFTFS__KV_OP__KV_GET;
    r.key = bin(key);
    rep = kv_node_query(n, &r);
    status = rep->status;
    snprintf(val, cap, "%.*s", (int)rep->value.len, (const char *)rep->value.data);
    if (version != NULL) {
        *version = rep->version;
    }
    if (locker != NULL) {
        *locker = rep->lock != NULL ? rep->lock->txn_id : 0;
        if (rep->lock != NULL) {
            assert_int_equal(rep->lock->key.len, strlen(key));
            assert_memory_equal(rep->lock->key.data, key, strlen(key));
        }
    }
    kv_node_reply_free(rep);
    return status;
}

struct txn_keys {
    const char *reads[4];
    uint64_t versions[4];
    unsigned n_reads;
    const char *writes[4];
    const char *values[4]; /* NULL: delete */
    unsigned n_writes;
};

/* PREPARE; returns the status, *state the txn_state. */
static uint32_t prepare(struct kv_node *n, uint64_t txn, const char *primary, uint32_t ttl,
                        const struct txn_keys *k, int *state)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    Raftfs__TxnRead rd[4], *rdp[4];
    Raftfs__TxnWrite wr[4], *wrp[4];
    Raftfs__KvReply *rep;
    uint32_t status;
    for (unsigned i = 0; i < k->n_reads; i++) {
        raftfs__txn_read__init(&rd[i]);
        rd[i].key = bin(k->reads[i]);
        rd[i].version = k->versions[i];
        rdp[i] = &rd[i];
    }
    for (unsigned i = 0; i < k->n_writes; i++) {
        raftfs__txn_write__init(&wr[i]);
        wr[i].key = bin(k->writes[i]);
        if (k->values[i] != NULL) {
            wr[i].value = bin(k->values[i]);
        } else {
            wr[i].delete_ = true;
        }
        wrp[i] = &wr[i];
    }
    r.op = RAFTFS__KV_OP__KV_TXN_PREPARE;
    r.txn_id = txn;
    r.primary = bin(primary);
    r.ttl_ms = ttl;
    r.n_reads = k->n_reads;
    r.reads = rdp;
    r.n_writes = k->n_writes;
    r.writes = wrp;
    rep = kv_node_apply(n, &r);
    status = rep->status;
    if (state != NULL) {
        *state = (int)rep->txn_state;
    }
    kv_node_reply_free(rep);
    return status;
}

/* COMMIT / ABORT / CHECK; returns the status, *state the txn_state. */
static uint32_t settle(struct kv_node *n, Raftfs__KvOp op, uint64_t txn, const char *primary,
                       bool is_primary, const char **keys, unsigned n_keys, uint64_t deadline,
                       int *state)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    ProtobufCBinaryData kb[4];
    Raftfs__KvReply *rep;
    uint32_t status;
    for (unsigned i = 0; i < n_keys; i++) {
        kb[i] = bin(keys[i]);
    }
    r.op = op;
    r.txn_id = txn;
    r.primary = bin(primary);
    r.is_primary = is_primary;
    r.n_keys = n_keys;
    r.keys = kb;
    r.lock_deadline = deadline;
    rep = kv_node_apply(n, &r);
    status = rep->status;
    if (state != NULL) {
        *state = (int)rep->txn_state;
    }
    kv_node_reply_free(rep);
    return status;
}

static void test_prepare_commit(void **state)
{
    struct fixture *f = *state;
    struct txn_keys k = {0};
    const char *keys[] = {"x", "y"};
    uint64_t vx, vy, v, locker;
    char val[64];
    int st;
    assert_int_equal(put(&f->a, "x", "1", 0, 0, &vx), 0);
    assert_int_equal(put(&f->a, "y", "2", 0, 0, &vy), 0);
    k = (struct txn_keys){.reads = {"x", "y"},
                          .versions = {vx, vy},
                          .n_reads = 2,
                          .writes = {"x", "y"},
                          .values = {"10", "20"},
                          .n_writes = 2};
    assert_int_equal(prepare(&f->a, TXN, "x", 1000, &k, &st), 0);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_PENDING);
    /* A repeated prepare (a retry) changes nothing and succeeds. */
    assert_int_equal(prepare(&f->a, TXN, "x", 1000, &k, NULL), 0);

    /* Everybody else meets the locks. */
    assert_int_equal(get(&f->a, "x", val, sizeof val, NULL, &locker), RFS_ELOCKED);
    assert_int_equal(locker, TXN);
    assert_int_equal(put(&f->a, "y", "other", 0, 0, NULL), RFS_ELOCKED);
    /* A session write refused for the lock is not recorded: the same seq runs later. */
    assert_int_equal(put(&f->a, "y", "s1", 77, 1, NULL), RFS_ELOCKED);
    {
        struct txn_keys k2 = {.writes = {"y"}, .values = {"z"}, .n_writes = 1};
        assert_int_equal(prepare(&f->a, TXN + 1, "y", 1000, &k2, NULL), RFS_ELOCKED);
    }
    assert_int_equal(get(&f->a, "z", val, sizeof val, NULL, NULL), 0); /* others are free */

    assert_int_equal(settle(&f->a, RAFTFS__KV_OP__KV_TXN_COMMIT, TXN, "x", true, keys, 2, 0, &st),
                     0);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_COMMITTED);
    assert_int_equal(get(&f->a, "x", val, sizeof val, &v, NULL), 0);
    assert_string_equal(val, "10");
    assert_true(v > vy);
    assert_int_equal(get(&f->a, "y", val, sizeof val, NULL, NULL), 0);
    assert_string_equal(val, "20");
    /* The decided record: CHECK says so, ABORT cannot undo it, COMMIT again is harmless. */
    assert_int_equal(settle(&f->a, RAFTFS__KV_OP__KV_TXN_CHECK, TXN, "x", true, NULL, 0, 0, &st),
                     0);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_COMMITTED);
    assert_int_equal(settle(&f->a, RAFTFS__KV_OP__KV_TXN_ABORT, TXN, "x", true, keys, 2, 0, &st),
                     0);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_COMMITTED);
    assert_int_equal(settle(&f->a, RAFTFS__KV_OP__KV_TXN_COMMIT, TXN, "x", true, keys, 2, 0, &st),
                     0);
    assert_int_equal(get(&f->a, "x", val, sizeof val, NULL, NULL), 0);
    assert_string_equal(val, "10");
    /* The session write now executes. */
    assert_int_equal(put(&f->a, "y", "s1", 77, 1, NULL), 0);
    assert_int_equal(get(&f->a, "y", val, sizeof val, NULL, NULL), 0);
    assert_string_equal(val, "s1");
}

static void test_prepare_conflict_writes_nothing(void **state)
{
    struct fixture *f = *state;
    uint64_t vx;
    char val[64];
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep;
    struct txn_keys k;
    assert_int_equal(put(&f->a, "x", "1", 0, 0, &vx), 0);
    k = (struct txn_keys){.reads = {"x"},
                          .versions = {vx + 1},
                          .n_reads = 1,
                          .writes = {"w"},
                          .values = {"v"},
                          .n_writes = 1};
    assert_int_equal(prepare(&f->a, TXN, "w", 1000, &k, NULL), RFS_ECONFLICT);
    assert_int_equal(get(&f->a, "x", val, sizeof val, NULL, NULL), 0);
    assert_int_equal(get(&f->a, "w", val, sizeof val, NULL, NULL), 0);
    /* A scan over the keys meets no lock either; after a prepare it does. */
    k.versions[0] = vx;
    assert_int_equal(prepare(&f->a, TXN, "w", 1000, &k, NULL), 0);
    r.op = RAFTFS__KV_OP__KV_SCAN;
    r.key = bin("a");
    r.end_key = bin("z");
    rep = kv_node_query(&f->a, &r);
    assert_int_equal(rep->status, RFS_ELOCKED);
    assert_non_null(rep->lock);
    kv_node_reply_free(rep);
    r.end_key = bin("b");
    rep = kv_node_query(&f->a, &r);
    assert_int_equal(rep->status, 0);
    kv_node_reply_free(rep);
}

static void test_abort_and_expiry(void **state)
{
    struct fixture *f = *state;
    const char *keys[] = {"x"};
    struct txn_keys k = {.writes = {"x"}, .values = {"new"}, .n_writes = 1};
    char val[64];
    int st;
    assert_int_equal(put(&f->a, "x", "old", 0, 0, NULL), 0);
    /* Aborted by its owner: the locks go, the record stays ABORTED for good. */
    assert_int_equal(prepare(&f->a, TXN, "x", 500, &k, NULL), 0);
    assert_int_equal(settle(&f->a, RAFTFS__KV_OP__KV_TXN_ABORT, TXN, "x", true, keys, 1, 0, &st),
                     0);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_ABORTED);
    assert_int_equal(get(&f->a, "x", val, sizeof val, NULL, NULL), 0);
    assert_string_equal(val, "old");
    assert_int_equal(prepare(&f->a, TXN, "x", 500, &k, &st), RFS_ECONFLICT);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_ABORTED);
    assert_int_equal(settle(&f->a, RAFTFS__KV_OP__KV_TXN_COMMIT, TXN, "x", true, keys, 1, 0, &st),
                     RFS_ECONFLICT);

    /* An owner past its deadline (log time 1000 + 500) is aborted by CHECK. */
    f->a.time_ms = 1000;
    assert_int_equal(prepare(&f->a, TXN + 1, "x", 500, &k, NULL), 0);
    f->a.time_ms = 1400;
    assert_int_equal(
        settle(&f->a, RAFTFS__KV_OP__KV_TXN_CHECK, TXN + 1, "x", true, NULL, 0, 0, &st), 0);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_PENDING);
    f->a.time_ms = 1600;
    assert_int_equal(
        settle(&f->a, RAFTFS__KV_OP__KV_TXN_CHECK, TXN + 1, "x", true, NULL, 0, 0, &st), 0);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_ABORTED);
    /* The owner's late commit loses; the lock is rolled back by whoever meets it. */
    assert_int_equal(
        settle(&f->a, RAFTFS__KV_OP__KV_TXN_COMMIT, TXN + 1, "x", true, keys, 1, 0, &st),
        RFS_ECONFLICT);
    assert_int_equal(get(&f->a, "x", val, sizeof val, NULL, NULL), RFS_ELOCKED);
    assert_int_equal(
        settle(&f->a, RAFTFS__KV_OP__KV_TXN_ABORT, TXN + 1, "x", false, keys, 1, 0, &st), 0);
    assert_int_equal(get(&f->a, "x", val, sizeof val, NULL, NULL), 0);
    assert_string_equal(val, "old");

    /* No record at all (its prepare never reached the primary's group): pending until the
     * lock's deadline, then aborted, and a late prepare cannot revive it. */
    assert_int_equal(
        settle(&f->a, RAFTFS__KV_OP__KV_TXN_CHECK, TXN + 2, "x", true, NULL, 0, 5000, &st), 0);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_PENDING);
    assert_int_equal(
        settle(&f->a, RAFTFS__KV_OP__KV_TXN_CHECK, TXN + 2, "x", true, NULL, 0, 1000, &st), 0);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_ABORTED);
    assert_int_equal(prepare(&f->a, TXN + 2, "x", 500, &k, &st), RFS_ECONFLICT);
}

/* Primary on A, secondary on B: after the primary commits, B's lock is rolled forward by a
 * reader that checked the record, exactly once. */
static void test_secondary_rolled_forward(void **state)
{
    struct fixture *f = *state;
    const char *pk[] = {"p"}, *sk[] = {"s"};
    struct txn_keys ka = {.writes = {"p"}, .values = {"P"}, .n_writes = 1};
    struct txn_keys kb = {.writes = {"s"}, .values = {"S"}, .n_writes = 1};
    char val[64];
    uint64_t v1, v2;
    int st;
    assert_int_equal(prepare(&f->a, TXN, "p", 1000, &ka, NULL), 0);
    assert_int_equal(prepare(&f->b, TXN, "p", 1000, &kb, NULL), 0);
    assert_int_equal(settle(&f->a, RAFTFS__KV_OP__KV_TXN_COMMIT, TXN, "p", true, pk, 1, 0, &st), 0);
    /* The coordinator died here. A reader of s meets the lock and asks the primary. */
    assert_int_equal(get(&f->b, "s", val, sizeof val, NULL, NULL), RFS_ELOCKED);
    assert_int_equal(settle(&f->a, RAFTFS__KV_OP__KV_TXN_CHECK, TXN, "p", true, NULL, 0, 0, &st),
                     0);
    assert_int_equal(st, RAFTFS__TXN_STATE__TXN_COMMITTED);
    assert_int_equal(settle(&f->b, RAFTFS__KV_OP__KV_TXN_COMMIT, TXN, "p", false, sk, 1, 0, &st),
                     0);
    assert_int_equal(get(&f->b, "s", val, sizeof val, &v1, NULL), 0);
    assert_string_equal(val, "S");
    /* Rolling forward again (another reader, or the coordinator's retry) changes nothing. */
    assert_int_equal(settle(&f->b, RAFTFS__KV_OP__KV_TXN_COMMIT, TXN, "p", false, sk, 1, 0, &st),
                     0);
    assert_int_equal(get(&f->b, "s", val, sizeof val, &v2, NULL), 0);
    assert_int_equal(v1, v2);
    assert_int_equal(get(&f->a, "p", val, sizeof val, NULL, NULL), 0);
    assert_string_equal(val, "P");
}

static void test_locks_survive_restart_and_snapshot(void **state)
{
    struct fixture *f = *state;
    struct txn_keys k = {.writes = {"x"}, .values = {"v"}, .n_writes = 1};
    struct rfs_buf snap;
    raft_index index;
    char val[64], errmsg[RFS_ERRMSG_SIZE];
    uint64_t locker;
    assert_int_equal(prepare(&f->a, TXN, "x", 1000, &k, NULL), 0);
    kv_node_close(&f->a);
    kv_node_open(&f->a);
    assert_int_equal(get(&f->a, "x", val, sizeof val, NULL, &locker), RFS_ELOCKED);
    assert_int_equal(locker, TXN);
    assert_int_equal(kv_sm_ops.snapshot(f->a.sm, &snap, &index, errmsg), 0);
    assert_int_equal(kv_sm_ops.restore(f->b.sm, index, snap.base, snap.len, errmsg), 0);
    rfs_free(snap.base);
    f->b.index = index;
    assert_int_equal(get(&f->b, "x", val, sizeof val, NULL, &locker), RFS_ELOCKED);
    assert_int_equal(locker, TXN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prepare_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_conflict_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_and_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secondary_rolled_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locks_survive_restart_and_snapshot, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
