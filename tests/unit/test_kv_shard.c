/* Tests of bucket ownership and migration in the kv state machine (kv/shard.c), with two
 * stores standing for two groups and the migration commands applied by hand, step by step:
 * WRONG_GROUP before and after a move (and never recorded in a session), configurations one
 * version at a time and only when settled, a bucket pulled in small chunks with duplicate
 * and out-of-order chunks ignored, sessions travelling with the bucket (a retry at the new
 * owner is answered, not executed again), versions that keep increasing across a move,
 * garbage collection, and the state surviving a reopen and a snapshot restore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/err.h"
#include "kv/kv.h"
#include "kv_node.h"
#include "proto/raftfs.pb-c.h"

#define NBUCKETS 8

struct fixture {
    struct kv_node a, b;
    char errmsg[RFS_ERRMSG_SIZE];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    kv_node_init(&f->a, "kvshard-a", NBUCKETS, 1);
    kv_node_init(&f->b, "kvshard-b", NBUCKETS, 2);
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

/* Status of a single-key write (client 0 = no session). */
static uint32_t write_op(struct kv_node *n, Raftfs__KvOp op, const char *key, const char *val,
                         uint64_t client, uint64_t seq, uint64_t *version)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep;
    uint32_t status;
    r.op = op;
    r.key.data = (uint8_t *)key;
    r.key.len = strlen(key);
    r.value.data = (uint8_t *)val;
    r.value.len = val ? strlen(val) : 0;
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

/* GET: status; the value into val (cap bytes), "" when absent. */
static uint32_t get(struct kv_node *n, const char *key, char *val, size_t cap, uint64_t *version)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep;
    uint32_t status;
    r.op = RAFTFS__KV_OP__KV_GET;
    r.key.data = (uint8_t *)key;
    r.key.len = strlen(key);
    rep = kv_node_query(n, &r);
    status = rep->status;
    snprintf(val, cap, "%.*s", (int)rep->value.len, (const char *)rep->value.data);
    if (version != NULL) {
        *version = rep->version;
    }
    kv_node_reply_free(rep);
    return status;
}

/* A configuration: buckets[] -> gid, groups 1 and 2 known. */
static uint32_t apply_config(struct kv_node *n, uint64_t version, const uint64_t *owners,
                             size_t nbuckets)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    Raftfs__MetaConfig c = RAFTFS__META_CONFIG__INIT;
    Raftfs__KvReply *rep;
    uint32_t status;
    c.version = version;
    c.n_buckets = nbuckets;
    c.buckets = (uint64_t *)owners;
    r.op = RAFTFS__KV_OP__KV_CONFIG;
    r.config = &c;
    rep = kv_node_apply(n, &r);
    status = rep->status;
    kv_node_reply_free(rep);
    return status;
}

static Raftfs__ShardState *state_of(struct kv_node *n)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep;
    Raftfs__ShardState *st;
    r.op = RAFTFS__KV_OP__KV_SHARD_STATE;
    rep = kv_node_query(n, &r);
    assert_int_equal(rep->status, 0);
    st = raftfs__shard_state__unpack(NULL, rep->value.len, rep->value.data);
    kv_node_reply_free(rep);
    assert_non_null(st);
    return st;
}

static int bucket_state(struct kv_node *n, uint32_t bucket)
{
    Raftfs__ShardState *st = state_of(n);
    int s = (int)st->states[bucket];
    raftfs__shard_state__free_unpacked(st, NULL);
    return s;
}

/* Keys of one bucket: "{t}k0", "{t}k1", ... all share the tag's bucket. */
#define TAG "{t}"

static uint32_t tag_bucket(void)
{
    return kv_bucket_of(TAG, strlen(TAG), NBUCKETS);
}

/* Every bucket on A (version 1), then the tagged bucket moves to B (version 2). */
static void configure_move(struct fixture *f)
{
    uint64_t owners[NBUCKETS];
    for (unsigned i = 0; i < NBUCKETS; i++) {
        owners[i] = 1;
    }
    assert_int_equal(apply_config(&f->a, 1, owners, NBUCKETS), 0);
    assert_int_equal(apply_config(&f->b, 1, owners, NBUCKETS), 0);
    owners[tag_bucket()] = 2;
    assert_int_equal(apply_config(&f->a, 2, owners, NBUCKETS), 0);
    assert_int_equal(apply_config(&f->b, 2, owners, NBUCKETS), 0);
}

/* Pull the tagged bucket from A into B in chunks of `limit` bytes; returns chunks used. */
static unsigned pull_all(struct fixture *f, uint32_t limit, bool replay)
{
    uint8_t key[256];
    size_t klen = 3;
    unsigned chunks = 0;
    key[0] = 'd';
    key[1] = (uint8_t)(tag_bucket() >> 8);
    key[2] = (uint8_t)tag_bucket();
    for (;;) {
        Raftfs__KvRequest p = RAFTFS__KV_REQUEST__INIT, in = RAFTFS__KV_REQUEST__INIT;
        Raftfs__KvReply *got, *rep;
        bool more;
        p.op = RAFTFS__KV_OP__KV_BUCKET_PULL;
        p.config_version = 2;
        p.bucket = tag_bucket();
        p.key.data = key;
        p.key.len = klen;
        p.limit = limit;
        got = kv_node_query(&f->a, &p);
        assert_int_equal(got->status, 0);
        in.op = RAFTFS__KV_OP__KV_BUCKET_INSTALL;
        in.config_version = 2;
        in.bucket = tag_bucket();
        in.key = p.key;
        in.kvs = got->kvs;
        in.n_kvs = got->n_kvs;
        in.done = !got->more;
        in.end_key = got->next_key;
        rep = kv_node_apply(&f->b, &in);
        assert_int_equal(rep->status, 0);
        assert_true(rep->found); /* accepted */
        kv_node_reply_free(rep);
        if (replay) {
            /* The same chunk again (a new leader re-proposing it): ignored. */
            rep = kv_node_apply(&f->b, &in);
            assert_int_equal(rep->status, 0);
            assert_false(rep->found);
            kv_node_reply_free(rep);
        }
        chunks++;
        more = got->more;
        if (more) {
            assert_true(got->next_key.len <= sizeof key);
            memcpy(key, got->next_key.data, got->next_key.len);
            klen = got->next_key.len;
        }
        kv_node_reply_free(got);
        if (!more) {
            return chunks;
        }
    }
}

static void test_unsharded_serves_everything(void **state)
{
    struct fixture *f = *state;
    struct kv_node u;
    char val[64];
    kv_node_init(&u, "kvshard-u", NBUCKETS, 0);
    assert_int_equal(write_op(&u, RAFTFS__KV_OP__KV_PUT, "x", "1", 0, 0, NULL), 0);
    assert_int_equal(get(&u, "x", val, sizeof val, NULL), 0);
    assert_string_equal(val, "1");
    /* Once it holds data, it cannot become a sharded group's store. */
    assert_int_equal(kv_sm_set_sharding(u.sm, 3, f->errmsg), RFS_EINVAL);
    kv_node_destroy(&u);
}

static void test_sharding_identity_is_kept(void **state)
{
    struct fixture *f = *state;
    kv_sm_close(f->a.sm);
    assert_int_equal(kv_sm_open(&f->a.sm, f->a.dir, NBUCKETS, f->errmsg), 0);
    assert_int_equal(kv_sm_set_sharding(f->a.sm, 2, f->errmsg), RFS_EINVAL);
    assert_non_null(strstr(f->errmsg, "group 1"));
    assert_int_equal(kv_sm_set_sharding(f->a.sm, 0, f->errmsg), RFS_EINVAL);
    assert_non_null(strstr(f->errmsg, "--gid 1"));
    assert_int_equal(kv_sm_set_sharding(f->a.sm, 1, f->errmsg), 0);
}

static void test_wrong_group_until_configured(void **state)
{
    struct fixture *f = *state;
    uint64_t owners[NBUCKETS];
    char val[64];
    assert_int_equal(write_op(&f->a, RAFTFS__KV_OP__KV_PUT, "x", "1", 7, 1, NULL), RFS_EWRONGGROUP);
    assert_int_equal(get(&f->a, "x", val, sizeof val, NULL), RFS_EWRONGGROUP);
    for (unsigned i = 0; i < NBUCKETS; i++) {
        owners[i] = 1;
    }
    /* Only the next version is taken; a skipped or repeated one changes nothing. */
    assert_int_equal(apply_config(&f->a, 2, owners, NBUCKETS), 0);
    assert_int_equal(bucket_state(&f->a, 0), RAFTFS__BUCKET_STATE__BUCKET_NOT_OWNED);
    assert_int_equal(apply_config(&f->a, 1, owners, NBUCKETS - 1), RFS_EINVAL);
    assert_int_equal(apply_config(&f->a, 1, owners, NBUCKETS), 0);
    assert_int_equal(bucket_state(&f->a, 0), RAFTFS__BUCKET_STATE__BUCKET_SERVING);
    /* The refused write was not recorded: the same seq now executes. */
    assert_int_equal(write_op(&f->a, RAFTFS__KV_OP__KV_PUT, "x", "1", 7, 1, NULL), 0);
    assert_int_equal(get(&f->a, "x", val, sizeof val, NULL), 0);
    assert_string_equal(val, "1");
    assert_int_equal(apply_config(&f->b, 1, owners, NBUCKETS), 0);
    assert_int_equal(get(&f->b, "x", val, sizeof val, NULL), RFS_EWRONGGROUP);
}

static void test_move_in_chunks_with_sessions(void **state)
{
    struct fixture *f = *state;
    uint64_t owners[NBUCKETS], v_before, v_after, v;
    char val[64];
    unsigned chunks;
    assert_int_equal(apply_config(&f->a, 1, (uint64_t[NBUCKETS]){1, 1, 1, 1, 1, 1, 1, 1}, NBUCKETS),
                     0);
    assert_int_equal(apply_config(&f->b, 1, (uint64_t[NBUCKETS]){1, 1, 1, 1, 1, 1, 1, 1}, NBUCKETS),
                     0);
    /* Pad A's log so its versions run ahead of B's. */
    for (unsigned i = 0; i < 100; i++) {
        char key[32];
        snprintf(key, sizeof key, TAG "k%u", i);
        assert_int_equal(write_op(&f->a, RAFTFS__KV_OP__KV_PUT, key, "v", 0, 0, NULL), 0);
    }
    /* Client 9's append: applied at A; its reply is "lost", it will retry at B. */
    assert_int_equal(write_op(&f->a, RAFTFS__KV_OP__KV_APPEND, TAG "log", "+1", 9, 5, &v_before),
                     0);
    for (unsigned i = 0; i < NBUCKETS; i++) {
        owners[i] = 1;
    }
    owners[tag_bucket()] = 2;
    assert_int_equal(apply_config(&f->a, 2, owners, NBUCKETS), 0);
    assert_int_equal(apply_config(&f->b, 2, owners, NBUCKETS), 0);
    assert_int_equal(bucket_state(&f->a, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_BE_PULLED);
    assert_int_equal(bucket_state(&f->b, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_PULLING);
    /* Neither serves it while it moves; the others stay with A. */
    assert_int_equal(write_op(&f->a, RAFTFS__KV_OP__KV_APPEND, TAG "log", "+1", 9, 5, NULL),
                     RFS_EWRONGGROUP);
    assert_int_equal(get(&f->b, TAG "k1", val, sizeof val, NULL), RFS_EWRONGGROUP);
    /* A next configuration waits until the move settles. */
    assert_int_equal(apply_config(&f->a, 3, owners, NBUCKETS), RFS_EBUSY);

    chunks = pull_all(f, 200, true);
    assert_true(chunks > 5);
    assert_int_equal(bucket_state(&f->b, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_GC_OWNER);
    for (unsigned i = 0; i < 100; i++) {
        char key[32];
        snprintf(key, sizeof key, TAG "k%u", i);
        assert_int_equal(get(&f->b, key, val, sizeof val, NULL), 0);
        assert_string_equal(val, "v");
    }
    assert_int_equal(get(&f->b, TAG "log", val, sizeof val, &v), 0);
    assert_string_equal(val, "+1");
    assert_int_equal(v, v_before); /* versions travel with the records */
    /* The retry at the new owner is answered from the session that moved: not applied twice. */
    assert_int_equal(write_op(&f->b, RAFTFS__KV_OP__KV_APPEND, TAG "log", "+1", 9, 5, &v_after), 0);
    assert_int_equal(v_after, v_before);
    assert_int_equal(get(&f->b, TAG "log", val, sizeof val, NULL), 0);
    assert_string_equal(val, "+1");
    /* A new write at B gets a version above every installed one, though B's log is short. */
    assert_true(f->b.index < v_before);
    assert_int_equal(write_op(&f->b, RAFTFS__KV_OP__KV_APPEND, TAG "log", "+2", 9, 6, &v_after), 0);
    assert_true(v_after > v_before);

    /* GC at A (and again: idempotent), then B settles and takes the next configuration. */
    for (int i = 0; i < 2; i++) {
        Raftfs__KvRequest g = RAFTFS__KV_REQUEST__INIT;
        Raftfs__KvReply *rep;
        g.op = RAFTFS__KV_OP__KV_BUCKET_GC;
        g.config_version = 2;
        g.bucket = tag_bucket();
        rep = kv_node_apply(&f->a, &g);
        assert_int_equal(rep->status, 0);
        assert_false(rep->more);
        kv_node_reply_free(rep);
    }
    assert_int_equal(bucket_state(&f->a, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_NOT_OWNED);
    {
        Raftfs__KvRequest p = RAFTFS__KV_REQUEST__INIT;
        Raftfs__KvReply *rep;
        p.op = RAFTFS__KV_OP__KV_BUCKET_PULL;
        p.config_version = 2;
        p.bucket = tag_bucket();
        rep = kv_node_query(&f->a, &p);
        assert_int_equal(rep->status, RFS_ESTALE);
        kv_node_reply_free(rep);
    }
    assert_int_equal(apply_config(&f->b, 3, owners, NBUCKETS), RFS_EBUSY);
    {
        Raftfs__KvRequest g = RAFTFS__KV_REQUEST__INIT;
        Raftfs__KvReply *rep;
        g.op = RAFTFS__KV_OP__KV_BUCKET_GCED;
        g.config_version = 2;
        g.bucket = tag_bucket();
        rep = kv_node_apply(&f->b, &g);
        assert_int_equal(rep->status, 0);
        kv_node_reply_free(rep);
    }
    assert_int_equal(bucket_state(&f->b, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_SERVING);
    assert_int_equal(apply_config(&f->b, 3, owners, NBUCKETS), 0);
    assert_int_equal(apply_config(&f->a, 3, owners, NBUCKETS), 0);

    /* The state survives a reopen. */
    kv_node_close(&f->b);
    kv_node_open(&f->b);
    assert_int_equal(bucket_state(&f->b, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_SERVING);
    assert_int_equal(get(&f->b, TAG "log", val, sizeof val, NULL), 0);
    assert_string_equal(val, "+1+2");
    assert_int_equal(get(&f->b, "other", val, sizeof val, NULL),
                     kv_bucket_of("other", 5, NBUCKETS) == tag_bucket() ? 0 : RFS_EWRONGGROUP);
}

static void test_pull_checks_version_and_chunk_order(void **state)
{
    struct fixture *f = *state;
    Raftfs__KvRequest p = RAFTFS__KV_REQUEST__INIT, in = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KeyValue kv = RAFTFS__KEY_VALUE__INIT, *kvp = &kv;
    Raftfs__KvReply *rep;
    uint8_t start[3] = {'d', 0, 0};
    uint8_t other[3] = {'d', 0, 0};
    start[2] = (uint8_t)tag_bucket();
    other[2] = (uint8_t)((tag_bucket() + 1) % NBUCKETS);
    /* The old owner has not applied version 2 yet: "not yet". */
    p.op = RAFTFS__KV_OP__KV_BUCKET_PULL;
    p.config_version = 2;
    p.bucket = tag_bucket();
    p.key.data = start;
    p.key.len = 3;
    rep = kv_node_query(&f->a, &p);
    assert_int_equal(rep->status, RFS_EBUSY);
    kv_node_reply_free(rep);
    configure_move(f);
    /* A chunk that does not start at the resume point is ignored. */
    in.op = RAFTFS__KV_OP__KV_BUCKET_INSTALL;
    in.config_version = 2;
    in.bucket = tag_bucket();
    in.key.data = (uint8_t *)"d\x00\x05zzz";
    in.key.len = 6;
    in.done = true;
    rep = kv_node_apply(&f->b, &in);
    assert_int_equal(rep->status, 0);
    assert_false(rep->found);
    kv_node_reply_free(rep);
    assert_int_equal(bucket_state(&f->b, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_PULLING);
    /* A record of another bucket is refused. */
    in.key.data = start;
    in.key.len = 3;
    kv.key.data = other;
    kv.key.len = 3;
    kv.value.data = (uint8_t *)"01234567";
    kv.value.len = 8;
    in.kvs = &kvp;
    in.n_kvs = 1;
    rep = kv_node_apply(&f->b, &in);
    assert_int_equal(rep->status, RFS_EINVAL);
    kv_node_reply_free(rep);
    assert_int_equal(bucket_state(&f->b, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_PULLING);
    /* An empty bucket moves in one chunk. */
    assert_int_equal(pull_all(f, 0, false), 1);
    assert_int_equal(bucket_state(&f->b, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_GC_OWNER);
}

static void test_snapshot_keeps_bucket_states(void **state)
{
    struct fixture *f = *state;
    struct rfs_buf snap;
    raft_index index;
    struct kv_node c;
    char val[64];
    configure_move(f);
    assert_int_equal(kv_sm_ops.snapshot(f->a.sm, &snap, &index, f->errmsg), 0);
    kv_node_init(&c, "kvshard-c", NBUCKETS, 1);
    assert_int_equal(kv_sm_ops.restore(c.sm, index, snap.base, snap.len, f->errmsg), 0);
    rfs_free(snap.base);
    c.index = index;
    assert_int_equal(bucket_state(&c, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_BE_PULLED);
    assert_int_equal(get(&c, TAG "x", val, sizeof val, NULL), RFS_EWRONGGROUP);
    {
        Raftfs__ShardState *st = state_of(&c);
        assert_int_equal(st->version, 2);
        assert_non_null(st->prev);
        assert_int_equal(st->prev->version, 1);
        raftfs__shard_state__free_unpacked(st, NULL);
    }
    kv_node_destroy(&c);
}

/* A transaction's lock and record are records of their bucket: they move with it, and the
 * new owner settles the transaction. */
static void test_locks_move_with_bucket(void **state)
{
    struct fixture *f = *state;
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    Raftfs__TxnWrite w = RAFTFS__TXN_WRITE__INIT, *wp = &w;
    ProtobufCBinaryData key = {strlen(TAG "acct"), (uint8_t *)TAG "acct"};
    Raftfs__KvReply *rep;
    char val[64];
    uint64_t owners[NBUCKETS];
    for (unsigned i = 0; i < NBUCKETS; i++) {
        owners[i] = 1;
    }
    assert_int_equal(apply_config(&f->a, 1, owners, NBUCKETS), 0);
    assert_int_equal(apply_config(&f->b, 1, owners, NBUCKETS), 0);
    w.key = key;
    w.value.data = (uint8_t *)"100";
    w.value.len = 3;
    r.op = RAFTFS__KV_OP__KV_TXN_PREPARE;
    r.txn_id = 42;
    r.primary = key;
    r.ttl_ms = 60000;
    r.n_writes = 1;
    r.writes = &wp;
    rep = kv_node_apply(&f->a, &r);
    assert_int_equal(rep->status, 0);
    kv_node_reply_free(rep);
    owners[tag_bucket()] = 2;
    assert_int_equal(apply_config(&f->a, 2, owners, NBUCKETS), 0);
    assert_int_equal(apply_config(&f->b, 2, owners, NBUCKETS), 0);
    pull_all(f, 0, false);
    assert_int_equal(get(&f->b, TAG "acct", val, sizeof val, NULL), RFS_ELOCKED);
    /* The record came along: the commit of the primary succeeds at the new owner. */
    memset(&r, 0, sizeof r);
    raftfs__kv_request__init(&r);
    r.op = RAFTFS__KV_OP__KV_TXN_COMMIT;
    r.txn_id = 42;
    r.primary = key;
    r.is_primary = true;
    r.n_keys = 1;
    r.keys = &key;
    rep = kv_node_apply(&f->b, &r);
    assert_int_equal(rep->status, 0);
    assert_int_equal(rep->txn_state, RAFTFS__TXN_STATE__TXN_COMMITTED);
    kv_node_reply_free(rep);
    assert_int_equal(get(&f->b, TAG "acct", val, sizeof val, NULL), 0);
    assert_string_equal(val, "100");
    /* The old owner's copy (lock included) is deleted by GC; its other keys stay usable. */
    memset(&r, 0, sizeof r);
    raftfs__kv_request__init(&r);
    r.op = RAFTFS__KV_OP__KV_BUCKET_GC;
    r.config_version = 2;
    r.bucket = tag_bucket();
    rep = kv_node_apply(&f->a, &r);
    assert_int_equal(rep->status, 0);
    kv_node_reply_free(rep);
    assert_int_equal(bucket_state(&f->a, tag_bucket()), RAFTFS__BUCKET_STATE__BUCKET_NOT_OWNED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unsharded_serves_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sharding_identity_is_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_group_until_configured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move_in_chunks_with_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_checks_version_and_chunk_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_keeps_bucket_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locks_move_with_bucket, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
