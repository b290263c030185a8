/* Routed kv clients (kv/route.c): a key goes to the group the configuration gives its
 * bucket, and a write resent after WRONG_GROUP keeps its session.
 *
 * Two fixtures. The fake one runs tests/unit/fake_groups.h's meta group and two shard groups
 * in this process, so a test decides which group answers WRONG_GROUP and sees every
 * request's session fields. The real one starts a raftfs-meta and two raftfs-shard groups
 * (tests/lib/sharded.h, one server each) and joins both. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/log.h"
#include "fake_groups.h"
#include "kv/client.h"
#include "kv/kv.h"
#include "meta/client.h"
#include "meta/meta.h"
#include "proto/proto.h"
#include "tests/lib/sharded.h"

#define NBUCKETS  64 /* the real meta group's */
#define SETTLE_MS 20000
#define N_KEYS    120

/* ---- fake groups ---- */

#define FAKE_LOG 64

struct fake_req {
    uint64_t group_id;
    uint64_t client_id;
    uint64_t seq;
    int op;
};

struct fake {
    struct fake_groups g;
    /* Protected by g.mu: */
    bool serves[FAKE_GROUPS_N + 1]; /* else the group answers WRONG_GROUP */
    /* When non-zero: the first WRONG_GROUP answer also moves every bucket to this group in
     * the next configuration (the bucket moved while the request was on its way). */
    uint64_t move_on_wrong;
    struct fake_req log[FAKE_GROUPS_N + 1][FAKE_LOG];
    unsigned n_log[FAKE_GROUPS_N + 1];
    uint64_t next_version; /* of a written key */
};

struct fixture {
    struct fake fake;
    bool skipped;
    struct sharded s;
    struct kv_client *rc; /* routed */
};

/* Locked. */
static void fake_answer(struct fake_groups *g, unsigned gid, const Raftfs__KvRequest *req,
                        const void *raw, size_t raw_len, Raftfs__KvReply *rep, bool *drop)
{
    struct fake *f = g->data;
    (void)raw, (void)raw_len, (void)drop;
    if (f->n_log[gid] < FAKE_LOG) {
        struct fake_req *r = &f->log[gid][f->n_log[gid]++];
        r->group_id = req->group_id;
        r->client_id = req->client_id;
        r->seq = req->seq;
        r->op = (int)req->op;
    }
    if (!f->serves[gid]) {
        rep->status = RFS_EWRONGGROUP;
        rep->error = "fake: bucket not served here";
        if (f->move_on_wrong != 0) {
            for (unsigned b = 0; b < FAKE_GROUPS_NBUCKETS; b++) {
                g->buckets[b] = f->move_on_wrong;
            }
            g->version++;
            f->move_on_wrong = 0;
        }
    } else {
        rep->version = ++f->next_version;
        rep->found = true;
        rep->value.data = (uint8_t *)"v";
        rep->value.len = 1;
    }
}

static int setup_fake(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    char errmsg[RFS_ERRMSG_SIZE];
    *state = fx;
    if (fake_groups_init(&fx->fake.g, fake_answer, &fx->fake, errmsg) != 0) {
        fprintf(stderr, "fake groups: %s\n", errmsg);
        return -1;
    }
    return 0;
}

static int teardown_fake(void **state)
{
    struct fixture *fx = *state;
    kv_client_free(fx->rc);
    fake_groups_close(&fx->fake.g);
    free(fx);
    return 0;
}

static void test_write_resent_after_wrong_group_keeps_its_session(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    uint64_t version = 0;
    struct fake_req first, resent, next;
    unsigned refused;

    fake_groups_set_all(&f->g, 1, 1);
    f->serves[2] = true;  /* group 1 answers WRONG_GROUP: the bucket just moved to group 2 */
    f->move_on_wrong = 2; /* and the next configuration says so */
    fx->rc = fake_groups_client(&f->g, 5000, KV_TXN_CRASH_NONE);

    assert_int_equal(kv_client_put(fx->rc, "k", 1, "v", 1, &version, errmsg), 0);
    assert_int_equal(kv_client_put(fx->rc, "k", 1, "w", 1, &version, errmsg), 0);

    pthread_mutex_lock(&f->g.mu);
    /* Group 1 may be asked again before the rate-limited refresh shows the move. */
    refused = f->n_log[1];
    assert_true(refused >= 1);
    for (unsigned i = 1; i < refused; i++) {
        assert_int_equal(f->log[1][i].client_id, f->log[1][0].client_id);
        assert_int_equal(f->log[1][i].seq, f->log[1][0].seq);
    }
    assert_int_equal(f->n_log[2], 2);
    first = f->log[1][0];
    resent = f->log[2][0];
    next = f->log[2][1];
    assert_int_equal(f->g.version, 2);
    pthread_mutex_unlock(&f->g.mu);
    assert_int_equal(first.group_id, 1);
    assert_int_equal(resent.group_id, 2);
    assert_int_not_equal(first.client_id, 0);
    /* The same write at the new owner: same session, same sequence number. */
    assert_int_equal(resent.client_id, first.client_id);
    assert_int_equal(resent.seq, first.seq);
    /* A definite answer returned the session to the pool: the next write goes on in it. */
    assert_int_equal(next.client_id, first.client_id);
    assert_int_equal(next.seq, first.seq + 1);
}

static void test_bucket_without_group_returns_wrong_group(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    uint32_t bucket;
    uint64_t gid, version;
    unsigned queries;

    fake_groups_set_all(&f->g, 0, 0);
    fx->rc = fake_groups_client(&f->g, 400, KV_TXN_CRASH_NONE);

    assert_int_equal(kv_client_put(fx->rc, "k", 1, "v", 1, NULL, errmsg), RFS_EWRONGGROUP);
    assert_non_null(strstr(errmsg, "served by no group"));
    assert_non_null(strstr(errmsg, "raftfs meta join"));
    pthread_mutex_lock(&f->g.mu);
    queries = f->g.meta_queries;
    assert_int_equal(f->n_log[1] + f->n_log[2], 0);
    pthread_mutex_unlock(&f->g.mu);
    /* Refreshed while waiting, at most one query per 50 ms. */
    assert_true(queries >= 2);
    assert_true(queries <= 400 / 50 + 2);

    assert_int_equal(kv_client_locate(fx->rc, "k", 1, &bucket, &gid, &version, errmsg), 0);
    assert_int_equal(bucket, kv_bucket_of("k", 1, FAKE_GROUPS_NBUCKETS));
    assert_int_equal(gid, 0);
    assert_int_equal(version, 0);
}

static void test_group_that_never_serves_returns_wrong_group_naming_it(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    struct kv_client_value v;

    fake_groups_set_all(&f->g, 3, 1);
    fx->rc = fake_groups_client(&f->g, 300, KV_TXN_CRASH_NONE);

    assert_int_equal(kv_client_get(fx->rc, "k", 1, &v, errmsg), RFS_EWRONGGROUP);
    assert_non_null(strstr(errmsg, "on group 1 in configuration 3"));
    pthread_mutex_lock(&f->g.mu);
    assert_true(f->n_log[1] >= 2); /* retried */
    assert_int_equal(f->log[1][0].client_id, 0);
    pthread_mutex_unlock(&f->g.mu);
}

/* Keys on two groups: two-phase commit, each group sent its part (tests/unit/test_txn_client.c
 * covers the steps). */
static void test_txn_across_groups_goes_to_each_group(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    struct kv_txn_write w[2] = {
        {.key = "a", .klen = 1, .value = "1", .vlen = 1},
        {.key = "b", .klen = 1, .value = "2", .vlen = 1},
    };
    uint32_t ba = kv_bucket_of("a", 1, FAKE_GROUPS_NBUCKETS);
    uint32_t bb = kv_bucket_of("b", 1, FAKE_GROUPS_NBUCKETS);

    assert_int_not_equal(ba, bb);
    fake_groups_set_all(&f->g, 1, 1);
    pthread_mutex_lock(&f->g.mu);
    f->serves[1] = f->serves[2] = true;
    f->g.buckets[bb] = 2;
    pthread_mutex_unlock(&f->g.mu);
    fx->rc = fake_groups_client(&f->g, 10000, KV_TXN_CRASH_NONE);

    assert_int_equal(kv_client_txn(fx->rc, NULL, 0, w, 2, errmsg), 0);
    pthread_mutex_lock(&f->g.mu);
    assert_int_equal(f->n_log[1], 2);
    assert_int_equal(f->log[1][0].op, RAFTFS__KV_OP__KV_TXN_PREPARE);
    assert_int_equal(f->log[1][1].op, RAFTFS__KV_OP__KV_TXN_COMMIT);
    assert_int_equal(f->n_log[2], 2);
    assert_int_equal(f->log[2][0].op, RAFTFS__KV_OP__KV_TXN_PREPARE);
    assert_int_equal(f->log[2][1].op, RAFTFS__KV_OP__KV_TXN_COMMIT);
    pthread_mutex_unlock(&f->g.mu);
}

static void test_routed_client_refuses_group_calls(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    struct rfs_buf out;
    struct kv_server_status st;
    struct kv_client_options o;
    struct kv_client *plain = NULL;
    uint32_t bucket;
    uint64_t gid, version;

    fx->rc = fake_groups_client(&f->g, 1000, KV_TXN_CRASH_NONE);
    assert_int_equal(
        kv_client_call_value(fx->rc, RAFTFS__KV_OP__KV_META_READ, "", 0, false, &out, errmsg),
        RFS_EINVAL);
    assert_int_equal(kv_client_status(fx->rc, 0, &st), RFS_EINVAL);

    memset(&o, 0, sizeof o);
    o.n_servers = 1;
    o.servers[0] = f->g.addr[1];
    assert_int_equal(kv_client_new(&plain, &o, errmsg), 0);
    assert_int_equal(kv_client_locate(plain, "k", 1, &bucket, &gid, &version, errmsg), RFS_EINVAL);
    kv_client_free(plain);
}

/* ---- real processes ---- */

/* A client of `list`: routed (list is the meta group) or plain for group gid. */
static struct kv_client *client_of(const char *list, uint64_t gid, bool routed)
{
    struct kv_client *c = NULL;
    char errmsg[RFS_ERRMSG_SIZE];
    if (sharded_client(&c, list, gid, routed, SETTLE_MS, errmsg) != 0) {
        fail_msg("client: %s", errmsg);
    }
    return c;
}

static int setup_real(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    char why[256], errmsg[RFS_ERRMSG_SIZE];
    *state = fx;
    if (!cluster_bins_present(why, sizeof why)) {
        fx->skipped = true;
        fprintf(stderr, "SKIPPED: %s\n", why);
        return 0;
    }
    if (sharded_start(&fx->s, errmsg) != 0 ||
        sharded_start_group(&fx->s, 1, 1, false, NULL, errmsg) != 0 ||
        sharded_start_group(&fx->s, 2, 1, false, NULL, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        cluster_dump_logs(&fx->s.meta);
        cluster_dump_logs(&fx->s.g[0]);
        cluster_dump_logs(&fx->s.g[1]);
        return -1;
    }
    return 0;
}

static int teardown_real(void **state)
{
    struct fixture *fx = *state;
    int bad;
    kv_client_free(fx->rc);
    bad = sharded_destroy(&fx->s);
    free(fx);
    return bad == 0 ? 0 : -1;
}

/* Both groups joined; the routed client ready. */
static void start_both(struct fixture *fx)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (fx->skipped) {
        skip();
    }
    fx->rc = client_of(fx->s.meta.group, 0, true);
    for (uint64_t gid = 1; gid <= 2; gid++) {
        if (sharded_join(&fx->s, gid, errmsg) != 0) {
            fail_msg("join %llu: %s", (unsigned long long)gid, errmsg);
        }
    }
}

static int key_of(char *out, size_t cap, unsigned i)
{
    /* Every fourth key has a hash tag: it routes by the tag alone. */
    return i % 4 == 0 ? snprintf(out, cap, "{user%u}:name", i / 4)
                      : snprintf(out, cap, "route-%u", i);
}

static void put_all(struct fixture *fx, const char *prefix)
{
    for (unsigned i = 0; i < N_KEYS; i++) {
        char key[64], val[64], errmsg[RFS_ERRMSG_SIZE];
        int klen = key_of(key, sizeof key, i);
        int vlen = snprintf(val, sizeof val, "%s%u", prefix, i);
        int rv = kv_client_put(fx->rc, key, (size_t)klen, val, (size_t)vlen, NULL, errmsg);
        if (rv != 0) {
            cluster_dump_logs(&fx->s.g[0]);
            cluster_dump_logs(&fx->s.g[1]);
            fail_msg("put %s: %s", key, errmsg);
        }
    }
}

/* Once both groups have applied the latest configuration and settled (a group serves a
 * bucket only then), every key: locate agrees with kv_bucket_of and that configuration, the
 * routed client reads `prefix`i, the owning group's own servers have it, and the other
 * group refuses it with WRONG_GROUP. Returns how many keys each group holds. */
static void check_placement(struct fixture *fx, const char *prefix, unsigned held[2])
{
    struct kv_client *plain[2];
    struct meta_config cfg;
    char errmsg[RFS_ERRMSG_SIZE];

    if (sharded_wait_settled(&fx->s, SETTLE_MS, errmsg) != 0) {
        fail_msg("%s", errmsg);
    }
    assert_int_equal(meta_client_query(fx->s.mc, true, 0, &cfg, errmsg), 0);
    assert_int_equal(cfg.nbuckets, NBUCKETS);
    plain[0] = client_of(fx->s.g[0].group, 1, false);
    plain[1] = client_of(fx->s.g[1].group, 2, false);
    held[0] = held[1] = 0;
    for (unsigned i = 0; i < N_KEYS; i++) {
        char key[64], want[64];
        struct kv_client_value v;
        uint32_t bucket;
        uint64_t gid, version;
        unsigned owner;
        int klen = key_of(key, sizeof key, i);
        int wlen = snprintf(want, sizeof want, "%s%u", prefix, i);

        assert_int_equal(
            kv_client_locate(fx->rc, key, (size_t)klen, &bucket, &gid, &version, errmsg), 0);
        assert_int_equal(bucket, kv_bucket_of(key, (size_t)klen, NBUCKETS));
        assert_int_equal(version, cfg.version);
        assert_int_equal(gid, cfg.buckets[bucket]);
        assert_true(gid == 1 || gid == 2);
        owner = (unsigned)gid - 1;
        if (i % 4 == 0) {
            char tag[32];
            int tlen = snprintf(tag, sizeof tag, "user%u", i / 4);
            assert_int_equal(bucket, kv_bucket_of(tag, (size_t)tlen, NBUCKETS));
        }

        assert_int_equal(kv_client_get(fx->rc, key, (size_t)klen, &v, errmsg), 0);
        assert_true(v.found);
        assert_memory_equal(v.value.base, want, (size_t)wlen);
        kv_client_value_clear(&v);

        assert_int_equal(kv_client_get(plain[owner], key, (size_t)klen, &v, errmsg), 0);
        assert_true(v.found);
        assert_int_equal(v.value.len, (size_t)wlen);
        assert_memory_equal(v.value.base, want, (size_t)wlen);
        kv_client_value_clear(&v);
        held[owner]++;

        assert_int_equal(kv_client_get(plain[1 - owner], key, (size_t)klen, &v, errmsg),
                         RFS_EWRONGGROUP);
    }
    kv_client_free(plain[0]);
    kv_client_free(plain[1]);
    meta_config_clear(&cfg);
}

static void test_keys_land_in_the_group_the_configuration_names(void **state)
{
    struct fixture *fx = *state;
    unsigned held[2];
    start_both(fx);

    put_all(fx, "v");

    check_placement(fx, "v", held);
    /* Two groups split 64 buckets evenly: neither is left without keys. */
    assert_true(held[0] > 0);
    assert_true(held[1] > 0);
}

static void test_keys_follow_their_bucket_to_another_group(void **state)
{
    struct fixture *fx = *state;
    char errmsg[RFS_ERRMSG_SIZE];
    unsigned held[2];
    start_both(fx);
    put_all(fx, "v");

    /* Every bucket to group 2, then half of them back to group 1. */
    assert_int_equal(sharded_move(&fx->s, 0, NBUCKETS - 1, 2, errmsg), 0);
    put_all(fx, "w");
    check_placement(fx, "w", held);
    assert_int_equal(held[0], 0);
    assert_int_equal(held[1], N_KEYS);

    assert_int_equal(sharded_move(&fx->s, 0, NBUCKETS / 2 - 1, 1, errmsg), 0);
    check_placement(fx, "w", held);
    assert_true(held[0] > 0);
    assert_true(held[1] > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_resent_after_wrong_group_keeps_its_session,
                                        setup_fake, teardown_fake),
        cmocka_unit_test_setup_teardown(test_bucket_without_group_returns_wrong_group, setup_fake,
                                        teardown_fake),
        cmocka_unit_test_setup_teardown(test_group_that_never_serves_returns_wrong_group_naming_it,
                                        setup_fake, teardown_fake),
        cmocka_unit_test_setup_teardown(test_txn_across_groups_goes_to_each_group, setup_fake,
                                        teardown_fake),
        cmocka_unit_test_setup_teardown(test_routed_client_refuses_group_calls, setup_fake,
                                        teardown_fake),
        cmocka_unit_test_setup_teardown(test_keys_land_in_the_group_the_configuration_names,
                                        setup_real, teardown_real),
        cmocka_unit_test_setup_teardown(test_keys_follow_their_bucket_to_another_group, setup_real,
                                        teardown_real),
    };
    rfs_log_set_level(RFS_LOG_ERROR); /* the client library's reconnect chatter */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
