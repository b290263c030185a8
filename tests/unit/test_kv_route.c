/* Routed kv clients (kv/route.c): a key goes to the group the configuration gives its
 * bucket, and a write resent after WRONG_GROUP keeps its session.
 *
 * Two fixtures. The fake one runs, in this process, an rpc loop answering as a meta group
 * and two shard groups, so a test decides which group answers WRONG_GROUP and sees every
 * request's session fields. The real one starts a raftfs-meta and two raftfs-shard groups
 * (one server each, --gid and --meta) and joins both. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/log.h"
#include "kv/client.h"
#include "kv/kv.h"
#include "meta/client.h"
#include "meta/meta.h"
#include "proto/proto.h"
#include "rpc/rpc.h"
#include "tests/lib/cluster.h"

#define NBUCKETS       64
#define LEADER_WAIT_MS 15000
#define SETTLE_MS      20000
#define N_KEYS         120

/* ---- fake servers ---- */

#define FAKE_META   0
#define FAKE_GROUPS 2 /* listeners 1 and 2 are groups 1 and 2 */
#define FAKE_LOG    64

struct fake_req {
    uint64_t group_id;
    uint64_t client_id;
    uint64_t seq;
    int op;
};

struct fake;

struct fake_tag {
    struct fake *f;
    unsigned index; /* FAKE_META or a group id */
};

struct fake {
    struct rpc_loop *loop;
    pthread_t thread;
    bool running;
    struct rpc_listener *ls[FAKE_GROUPS + 1];
    struct fake_tag tags[FAKE_GROUPS + 1];
    char addr[FAKE_GROUPS + 1][32];

    pthread_mutex_t mu; /* protects everything below */
    uint64_t version;
    uint64_t buckets[NBUCKETS];
    bool serves[FAKE_GROUPS + 1]; /* else the group answers WRONG_GROUP */
    /* When non-zero: the first WRONG_GROUP answer also moves every bucket to this group in
     * the next configuration (the bucket moved while the request was on its way). */
    uint64_t move_on_wrong;
    unsigned meta_queries;
    struct fake_req log[FAKE_GROUPS + 1][FAKE_LOG];
    unsigned n_log[FAKE_GROUPS + 1];
    uint64_t next_version; /* of a written key */
};

struct fixture {
    struct fake fake;
    bool skipped;
    struct cluster meta;
    struct cluster g[2]; /* gid = index + 1 */
    bool started[2];
    struct kv_client *mc; /* plain client of the meta group */
    struct kv_client *rc; /* routed */
};

static void fake_reply(struct rpc_conn *c, uint64_t req_id, const Raftfs__KvReply *rep)
{
    size_t len = raftfs__kv_reply__get_packed_size(rep);
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    raftfs__kv_reply__pack(rep, buf);
    (void)rpc_conn_send(c, RAFTFS__FRAME_TYPE__FRAME_KV_REPLY, req_id, buf, len);
    free(buf);
}

/* Locked. The configuration: groups 1 and 2 at their listeners. */
static void fake_meta_answer(struct fake *f, struct rpc_conn *c, uint64_t req_id)
{
    Raftfs__KvReply rep = RAFTFS__KV_REPLY__INIT;
    Raftfs__MetaReply mrep = RAFTFS__META_REPLY__INIT;
    Raftfs__MetaConfig cfg = RAFTFS__META_CONFIG__INIT;
    Raftfs__MetaGroup groups[FAKE_GROUPS];
    Raftfs__MetaGroup *gp[FAKE_GROUPS];
    char *addrs[FAKE_GROUPS];
    uint8_t *buf;
    size_t len;

    f->meta_queries++;
    for (unsigned i = 0; i < FAKE_GROUPS; i++) {
        raftfs__meta_group__init(&groups[i]);
        groups[i].gid = i + 1;
        addrs[i] = f->addr[i + 1];
        groups[i].n_addrs = 1;
        groups[i].addrs = &addrs[i];
        gp[i] = &groups[i];
    }
    cfg.version = f->version;
    cfg.n_buckets = NBUCKETS;
    cfg.buckets = f->buckets;
    cfg.n_groups = FAKE_GROUPS;
    cfg.groups = gp;
    mrep.config = &cfg;
    len = raftfs__meta_reply__get_packed_size(&mrep);
    buf = malloc(len ? len : 1);
    assert_non_null(buf);
    raftfs__meta_reply__pack(&mrep, buf);
    rep.value.data = buf;
    rep.value.len = len;
    fake_reply(c, req_id, &rep);
    free(buf);
}

/* Locked. */
static void fake_group_answer(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                              struct rpc_conn *c, uint64_t req_id)
{
    Raftfs__KvReply rep = RAFTFS__KV_REPLY__INIT;
    if (f->n_log[gid] < FAKE_LOG) {
        struct fake_req *r = &f->log[gid][f->n_log[gid]++];
        r->group_id = req->group_id;
        r->client_id = req->client_id;
        r->seq = req->seq;
        r->op = (int)req->op;
    }
    if (!f->serves[gid]) {
        rep.status = RFS_EWRONGGROUP;
        rep.error = "fake: bucket not served here";
        if (f->move_on_wrong != 0) {
            for (unsigned b = 0; b < NBUCKETS; b++) {
                f->buckets[b] = f->move_on_wrong;
            }
            f->version++;
            f->move_on_wrong = 0;
        }
    } else {
        rep.version = ++f->next_version;
        rep.found = true;
        rep.value.data = (uint8_t *)"v";
        rep.value.len = 1;
    }
    fake_reply(c, req_id, &rep);
}

static void fake_on_frame(struct rpc_conn *c, uint32_t type, uint64_t req_id, const void *payload,
                          size_t len, void *data)
{
    struct fake_tag *t = data;
    struct fake *f = t->f;
    Raftfs__KvRequest *req;
    if (type != RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST) {
        return;
    }
    req = raftfs__kv_request__unpack(NULL, len, payload);
    if (req == NULL) {
        return;
    }
    pthread_mutex_lock(&f->mu);
    if (t->index == FAKE_META) {
        fake_meta_answer(f, c, req_id);
    } else {
        fake_group_answer(f, t->index, req, c, req_id);
    }
    pthread_mutex_unlock(&f->mu);
    raftfs__kv_request__free_unpacked(req, NULL);
}

static void *fake_main(void *data)
{
    struct fake *f = data;
    (void)rpc_loop_run(f->loop);
    return NULL;
}

static int setup_fake(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    struct fake *f = &fx->fake;
    char errmsg[RFS_ERRMSG_SIZE];
    *state = fx;
    pthread_mutex_init(&f->mu, NULL);
    if (rpc_loop_new(&f->loop, errmsg) != 0) {
        return -1;
    }
    for (unsigned i = 0; i <= FAKE_GROUPS; i++) {
        struct rpc_handler h;
        memset(&h, 0, sizeof h);
        f->tags[i].f = f;
        f->tags[i].index = i;
        h.data = &f->tags[i];
        h.on_frame = fake_on_frame;
        if (rpc_listen(f->loop, "127.0.0.1:0", &h, &f->ls[i], errmsg) != 0) {
            fprintf(stderr, "listen: %s\n", errmsg);
            return -1;
        }
        snprintf(f->addr[i], sizeof f->addr[i], "127.0.0.1:%u", rpc_listener_port(f->ls[i]));
    }
    if (pthread_create(&f->thread, NULL, fake_main, f) != 0) {
        return -1;
    }
    f->running = true;
    return 0;
}

static int teardown_fake(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    kv_client_free(fx->rc);
    if (f->running) {
        rpc_loop_stop(f->loop);
        pthread_join(f->thread, NULL);
    }
    if (f->loop != NULL) {
        rpc_loop_free(f->loop);
    }
    pthread_mutex_destroy(&f->mu);
    free(fx);
    return 0;
}

/* A routed client of the fake meta group. */
static struct kv_client *fake_routed(struct fake *f, unsigned timeout_ms)
{
    struct kv_client_options o;
    struct kv_client *c = NULL;
    char errmsg[RFS_ERRMSG_SIZE];
    memset(&o, 0, sizeof o);
    o.n_meta = 1;
    o.meta[0] = f->addr[FAKE_META];
    o.timeout_ms = timeout_ms;
    o.attempt_ms = 200;
    assert_int_equal(kv_client_new(&c, &o, errmsg), 0);
    return c;
}

static void fake_set_all(struct fake *f, uint64_t version, uint64_t gid)
{
    pthread_mutex_lock(&f->mu);
    f->version = version;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        f->buckets[b] = gid;
    }
    pthread_mutex_unlock(&f->mu);
}

static void test_write_resent_after_wrong_group_keeps_its_session(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    uint64_t version = 0;
    struct fake_req first, resent, next;
    unsigned refused;

    fake_set_all(f, 1, 1);
    f->serves[2] = true;  /* group 1 answers WRONG_GROUP: the bucket just moved to group 2 */
    f->move_on_wrong = 2; /* and the next configuration says so */
    fx->rc = fake_routed(f, 5000);

    assert_int_equal(kv_client_put(fx->rc, "k", 1, "v", 1, &version, errmsg), 0);
    assert_int_equal(kv_client_put(fx->rc, "k", 1, "w", 1, &version, errmsg), 0);

    pthread_mutex_lock(&f->mu);
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
    assert_int_equal(f->version, 2);
    pthread_mutex_unlock(&f->mu);
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

    fake_set_all(f, 0, 0);
    fx->rc = fake_routed(f, 400);

    assert_int_equal(kv_client_put(fx->rc, "k", 1, "v", 1, NULL, errmsg), RFS_EWRONGGROUP);
    assert_non_null(strstr(errmsg, "served by no group"));
    assert_non_null(strstr(errmsg, "raftfs meta join"));
    pthread_mutex_lock(&f->mu);
    queries = f->meta_queries;
    assert_int_equal(f->n_log[1] + f->n_log[2], 0);
    pthread_mutex_unlock(&f->mu);
    /* Refreshed while waiting, at most one query per 50 ms. */
    assert_true(queries >= 2);
    assert_true(queries <= 400 / 50 + 2);

    assert_int_equal(kv_client_locate(fx->rc, "k", 1, &bucket, &gid, &version, errmsg), 0);
    assert_int_equal(bucket, kv_bucket_of("k", 1, NBUCKETS));
    assert_int_equal(gid, 0);
    assert_int_equal(version, 0);
}

static void test_group_that_never_serves_returns_wrong_group_naming_it(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    struct kv_client_value v;

    fake_set_all(f, 3, 1);
    fx->rc = fake_routed(f, 300);

    assert_int_equal(kv_client_get(fx->rc, "k", 1, &v, errmsg), RFS_EWRONGGROUP);
    assert_non_null(strstr(errmsg, "on group 1 in configuration 3"));
    pthread_mutex_lock(&f->mu);
    assert_true(f->n_log[1] >= 2); /* retried */
    assert_int_equal(f->log[1][0].client_id, 0);
    pthread_mutex_unlock(&f->mu);
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
    uint32_t ba = kv_bucket_of("a", 1, NBUCKETS);
    uint32_t bb = kv_bucket_of("b", 1, NBUCKETS);

    assert_int_not_equal(ba, bb);
    fake_set_all(f, 1, 1);
    pthread_mutex_lock(&f->mu);
    f->serves[1] = f->serves[2] = true;
    f->buckets[bb] = 2;
    pthread_mutex_unlock(&f->mu);
    fx->rc = fake_routed(f, 10000);

    assert_int_equal(kv_client_txn(fx->rc, NULL, 0, w, 2, errmsg), 0);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->n_log[1], 2);
    assert_int_equal(f->log[1][0].op, RAFTFS__KV_OP__KV_TXN_PREPARE);
    assert_int_equal(f->log[1][1].op, RAFTFS__KV_OP__KV_TXN_COMMIT);
    assert_int_equal(f->n_log[2], 2);
    assert_int_equal(f->log[2][0].op, RAFTFS__KV_OP__KV_TXN_PREPARE);
    assert_int_equal(f->log[2][1].op, RAFTFS__KV_OP__KV_TXN_COMMIT);
    pthread_mutex_unlock(&f->mu);
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

    fx->rc = fake_routed(f, 1000);
    assert_int_equal(
        kv_client_call_value(fx->rc, RAFTFS__KV_OP__KV_META_READ, "", 0, false, &out, errmsg),
        RFS_EINVAL);
    assert_int_equal(kv_client_status(fx->rc, 0, &st), RFS_EINVAL);

    memset(&o, 0, sizeof o);
    o.n_servers = 1;
    o.servers[0] = f->addr[1];
    assert_int_equal(kv_client_new(&plain, &o, errmsg), 0);
    assert_int_equal(kv_client_locate(plain, "k", 1, &bucket, &gid, &version, errmsg), RFS_EINVAL);
    kv_client_free(plain);
}

/* ---- real processes ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A client of `list`: routed (list is the meta group) or plain for group gid. */
static struct kv_client *client_of(const char *list, uint64_t gid, bool routed)
{
    struct kv_client_options o;
    struct kv_client *c = NULL;
    char buf[512], errmsg[RFS_ERRMSG_SIZE];
    memset(&o, 0, sizeof o);
    snprintf(buf, sizeof buf, "%s", list);
    if (routed) {
        assert_int_equal(kv_client_parse_meta(buf, &o, errmsg), 0);
    } else {
        assert_int_equal(kv_client_parse_servers(buf, &o, errmsg), 0);
    }
    o.group_id = gid;
    o.timeout_ms = SETTLE_MS;
    o.attempt_ms = 300;
    if (kv_client_new(&c, &o, errmsg) != 0) {
        fail_msg("client: %s", errmsg);
    }
    return c;
}

static void join(struct fixture *fx, uint64_t gid)
{
    char *addrs[1] = {fx->g[gid - 1].group}; /* one server */
    struct meta_group_info g = {.gid = gid, .n_addrs = 1, .addrs = addrs};
    char errmsg[RFS_ERRMSG_SIZE];
    if (meta_client_join(fx->mc, &g, 1, NULL, errmsg) != 0) {
        fail_msg("join %llu: %s", (unsigned long long)gid, errmsg);
    }
}

static int setup_real(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    char why[256], errmsg[RFS_ERRMSG_SIZE], flags[256];
    *state = fx;
    if (!cluster_bins_present(why, sizeof why)) {
        fx->skipped = true;
        fprintf(stderr, "SKIPPED: %s\n", why);
        return 0;
    }
    if (cluster_start_binary(&fx->meta, "raftfs-meta", 1, false, NULL, errmsg) != 0) {
        fprintf(stderr, "meta start failed: %s\n", errmsg);
        return -1;
    }
    for (unsigned i = 0; i < 2; i++) {
        snprintf(flags, sizeof flags, "--gid %u --meta %.200s", i + 1, fx->meta.group);
        fx->started[i] = true;
        if (cluster_start(&fx->g[i], 1, false, flags, errmsg) != 0) {
            fprintf(stderr, "group %u start failed: %s\n", i + 1, errmsg);
            return -1;
        }
    }
    return 0;
}

static int teardown_real(void **state)
{
    struct fixture *fx = *state;
    int bad = 0;
    kv_client_free(fx->rc);
    kv_client_free(fx->mc);
    for (unsigned i = 0; i < 2; i++) {
        if (fx->started[i]) {
            for (unsigned j = 0; j < fx->g[i].n; j++) {
                cluster_stop_server(&fx->g[i], j); /* so LeakSanitizer reports reach the logs */
            }
            bad += cluster_sanitizer_errors(&fx->g[i]);
            if (bad != 0) {
                cluster_dump_logs(&fx->g[i]);
            }
            cluster_destroy(&fx->g[i]);
        }
    }
    for (unsigned j = 0; j < fx->meta.n; j++) {
        cluster_stop_server(&fx->meta, j);
    }
    bad += cluster_sanitizer_errors(&fx->meta);
    cluster_destroy(&fx->meta);
    free(fx);
    return bad == 0 ? 0 : -1;
}

/* Both groups running and joined; clients ready. */
static void start_both(struct fixture *fx)
{
    if (fx->skipped) {
        skip();
    }
    if (cluster_wait_leader(&fx->meta, LEADER_WAIT_MS) < 0 ||
        cluster_wait_leader(&fx->g[0], LEADER_WAIT_MS) < 0 ||
        cluster_wait_leader(&fx->g[1], LEADER_WAIT_MS) < 0) {
        cluster_dump_logs(&fx->meta);
        cluster_dump_logs(&fx->g[0]);
        cluster_dump_logs(&fx->g[1]);
        fail_msg("no leader within %d ms", LEADER_WAIT_MS);
    }
    fx->mc = client_of(fx->meta.group, META_GROUP_ID, false);
    fx->rc = client_of(fx->meta.group, 0, true);
    join(fx, 1);
    join(fx, 2);
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
            cluster_dump_logs(&fx->g[0]);
            cluster_dump_logs(&fx->g[1]);
            fail_msg("put %s: %s", key, errmsg);
        }
    }
}

/* Read key from group gid's own servers until the answer is not WRONG_GROUP or `want`, or
 * the time is up (a group serves a bucket only once it has applied the configuration). */
static int plain_get(struct kv_client *c, const char *key, int want, struct kv_client_value *v)
{
    uint64_t deadline = now_ms() + SETTLE_MS;
    char errmsg[RFS_ERRMSG_SIZE];
    int rv;
    for (;;) {
        rv = kv_client_get(c, key, strlen(key), v, errmsg);
        if (rv == want || now_ms() >= deadline) {
            return rv;
        }
        kv_client_value_clear(v);
        sleep_ms(20);
    }
}

/* Every key: locate agrees with kv_bucket_of and the latest configuration, the routed client
 * reads `prefix`i, the owning group's own servers have it, and the other group refuses it
 * with WRONG_GROUP. Returns how many keys each group holds. */
static void check_placement(struct fixture *fx, const char *prefix, unsigned held[2])
{
    struct kv_client *plain[2];
    struct meta_config cfg;
    char errmsg[RFS_ERRMSG_SIZE];

    assert_int_equal(meta_client_query(fx->mc, true, 0, &cfg, errmsg), 0);
    assert_int_equal(cfg.nbuckets, NBUCKETS);
    plain[0] = client_of(fx->g[0].group, 1, false);
    plain[1] = client_of(fx->g[1].group, 2, false);
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

        assert_int_equal(plain_get(plain[owner], key, 0, &v), 0);
        assert_true(v.found);
        assert_int_equal(v.value.len, (size_t)wlen);
        assert_memory_equal(v.value.base, want, (size_t)wlen);
        kv_client_value_clear(&v);
        held[owner]++;

        assert_int_equal(plain_get(plain[1 - owner], key, RFS_EWRONGGROUP, &v), RFS_EWRONGGROUP);
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
    struct meta_config cfg;
    unsigned held[2];
    start_both(fx);
    put_all(fx, "v");

    /* Every bucket to group 2, then half of them back to group 1. */
    assert_int_equal(meta_client_move(fx->mc, 0, NBUCKETS - 1, 2, &cfg, errmsg), 0);
    meta_config_clear(&cfg);
    put_all(fx, "w");
    check_placement(fx, "w", held);
    assert_int_equal(held[0], 0);
    assert_int_equal(held[1], N_KEYS);

    assert_int_equal(meta_client_move(fx->mc, 0, NBUCKETS / 2 - 1, 1, &cfg, errmsg), 0);
    meta_config_clear(&cfg);
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
