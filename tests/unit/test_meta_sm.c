/* Tests of the meta state machine (meta/meta.h) through apply and query: join, leave, move
 * and query semantics, rebalancing with the fewest moves, refusals, the id allocator across
 * reopen, exactly-once retries, and snapshot/restore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "meta/meta.h"
#include "proto/raftfs.pb-c.h"

#define NBUCKETS 64

struct fixture {
    char dir[64];
    struct meta_sm *sm;
    raft_index index;
    char errmsg[RFS_ERRMSG_SIZE];
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void make_tmpdir(char *out, size_t size)
{
    snprintf(out, size, "/tmp/test_meta_sm.XXXXXX");
    assert_non_null(mkdtemp(out));
}

static void fixture_open(struct fixture *f)
{
    if (meta_sm_open(&f->sm, f->dir, NBUCKETS, f->errmsg) != 0) {
        fail_msg("meta_sm_open: %s", f->errmsg);
    }
    f->index = meta_sm_ops.applied(f->sm);
}

static void fixture_reopen(struct fixture *f)
{
    meta_sm_close(f->sm);
    f->sm = NULL;
    fixture_open(f);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    make_tmpdir(f->dir, sizeof f->dir);
    fixture_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    meta_sm_close(f->sm);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* --- helpers --- */

/* Pack a MetaRequest inside a KvRequest of op kvop (malloc'd). */
static struct rfs_buf pack_cmd(const Raftfs__MetaRequest *m, Raftfs__KvOp kvop, uint64_t client,
                               uint64_t seq)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    struct rfs_buf inner, b;
    inner.len = raftfs__meta_request__get_packed_size(m);
    inner.base = malloc(inner.len + 1);
    assert_non_null(inner.base);
    raftfs__meta_request__pack(m, inner.base);
    r.op = kvop;
    r.client_id = client;
    r.seq = seq;
    r.time_ms = 1000;
    r.value.data = inner.base;
    r.value.len = inner.len;
    b.len = raftfs__kv_request__get_packed_size(&r);
    b.base = malloc(b.len + 1);
    assert_non_null(b.base);
    raftfs__kv_request__pack(&r, b.base);
    free(inner.base);
    return b;
}

/* KvReply bytes -> MetaReply (checks that the two statuses agree). */
static Raftfs__MetaReply *unpack_reply(struct rfs_buf b)
{
    Raftfs__KvReply *kr = raftfs__kv_reply__unpack(NULL, b.len, b.base);
    Raftfs__MetaReply *mr;
    assert_non_null(kr);
    mr = raftfs__meta_reply__unpack(NULL, kr->value.len, kr->value.data);
    assert_non_null(mr);
    assert_int_equal(mr->status, kr->status);
    raftfs__kv_reply__free_unpacked(kr, NULL);
    return mr;
}

static Raftfs__MetaReply *write_as(struct fixture *f, const Raftfs__MetaRequest *m, uint64_t client,
                                   uint64_t seq)
{
    struct rfs_buf cmd = pack_cmd(m, RAFTFS__KV_OP__KV_META_WRITE, client, seq);
    struct raft_entry e = {.index = ++f->index, .term = 1, .type = RAFT_ENTRY_NORMAL};
    struct rfs_buf reply;
    Raftfs__MetaReply *r;
    e.data = cmd;
    if (meta_sm_ops.apply(f->sm, &e, 1, &reply, f->errmsg) != 0) {
        fail_msg("apply: %s", f->errmsg);
    }
    free(cmd.base);
    r = unpack_reply(reply);
    rfs_free(reply.base);
    return r;
}

static Raftfs__MetaReply *write_cmd(struct fixture *f, const Raftfs__MetaRequest *m)
{
    return write_as(f, m, 0, 0);
}

static Raftfs__MetaReply *query(struct fixture *f, bool latest, uint64_t version)
{
    Raftfs__MetaRequest m = RAFTFS__META_REQUEST__INIT;
    struct rfs_buf cmd, reply;
    Raftfs__MetaReply *r;
    m.op = RAFTFS__META_OP__META_QUERY;
    m.latest = latest;
    m.version = version;
    cmd = pack_cmd(&m, RAFTFS__KV_OP__KV_META_READ, 0, 0);
    if (meta_sm_ops.query(f->sm, cmd.base, cmd.len, &reply, f->errmsg) != 0) {
        fail_msg("query: %s", f->errmsg);
    }
    free(cmd.base);
    r = unpack_reply(reply);
    rfs_free(reply.base);
    return r;
}

static Raftfs__MetaReply *join_many(struct fixture *f, const uint64_t *gids, unsigned n)
{
    Raftfs__MetaRequest m = RAFTFS__META_REQUEST__INIT;
    Raftfs__MetaGroup g[8], *gp[8];
    char addr[8][32], *ap[8];
    assert_true(n <= 8);
    for (unsigned i = 0; i < n; i++) {
        raftfs__meta_group__init(&g[i]);
        snprintf(addr[i], sizeof addr[i], "10.0.0.%llu:7000", (unsigned long long)gids[i]);
        ap[i] = addr[i];
        g[i].gid = gids[i];
        g[i].n_addrs = 1;
        g[i].addrs = &ap[i];
        gp[i] = &g[i];
    }
    m.op = RAFTFS__META_OP__META_JOIN;
    m.n_groups = n;
    m.groups = gp;
    return write_cmd(f, &m);
}

static Raftfs__MetaReply *join(struct fixture *f, uint64_t gid)
{
    return join_many(f, &gid, 1);
}

static Raftfs__MetaReply *leave(struct fixture *f, uint64_t gid)
{
    Raftfs__MetaRequest m = RAFTFS__META_REQUEST__INIT;
    m.op = RAFTFS__META_OP__META_LEAVE;
    m.gid = gid;
    return write_cmd(f, &m);
}

static Raftfs__MetaReply *move(struct fixture *f, uint32_t first, uint32_t last, uint64_t gid)
{
    Raftfs__MetaRequest m = RAFTFS__META_REQUEST__INIT;
    m.op = RAFTFS__META_OP__META_MOVE;
    m.first_bucket = first;
    m.last_bucket = last;
    m.gid = gid;
    return write_cmd(f, &m);
}

static uint64_t alloc_ids(struct fixture *f, uint64_t count)
{
    Raftfs__MetaRequest m = RAFTFS__META_REQUEST__INIT;
    Raftfs__MetaReply *r;
    uint64_t first;
    m.op = RAFTFS__META_OP__META_ALLOC_IDS;
    m.count = count;
    r = write_cmd(f, &m);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->count, count);
    first = r->first_id;
    raftfs__meta_reply__free_unpacked(r, NULL);
    return first;
}

/* Accept a successful reply; return a malloc'd copy of its bucket table. */
static uint64_t *ok_table(Raftfs__MetaReply *r)
{
    uint64_t *t;
    if (r->status != 0) {
        fail_msg("status %u: %s", r->status, r->error);
    }
    assert_non_null(r->config);
    assert_int_equal(r->config->n_buckets, NBUCKETS);
    t = malloc(NBUCKETS * sizeof *t);
    assert_non_null(t);
    memcpy(t, r->config->buckets, NBUCKETS * sizeof *t);
    raftfs__meta_reply__free_unpacked(r, NULL);
    return t;
}

static void expect_refused(Raftfs__MetaReply *r, uint32_t status, const char *text)
{
    assert_int_equal(r->status, status);
    if (strstr(r->error, text) == NULL) {
        fail_msg("error '%s' does not mention '%s'", r->error, text);
    }
    raftfs__meta_reply__free_unpacked(r, NULL);
}

static unsigned count_of(const uint64_t *t, uint32_t n, uint64_t gid)
{
    unsigned c = 0;
    for (uint32_t b = 0; b < n; b++) {
        c += t[b] == gid;
    }
    return c;
}

static unsigned moved(const uint64_t *a, const uint64_t *b, uint32_t n)
{
    unsigned c = 0;
    for (uint32_t i = 0; i < n; i++) {
        c += a[i] != b[i];
    }
    return c;
}

/* --- tests --- */

static void test_empty_config_maps_every_bucket_to_group_0(void **state)
{
    struct fixture *f = *state;
    Raftfs__MetaReply *r = query(f, true, 0);
    assert_int_equal(r->config->version, 0);
    assert_int_equal(r->config->n_groups, 0);
    assert_int_equal(r->config->n_buckets, NBUCKETS);
    for (unsigned b = 0; b < NBUCKETS; b++) {
        assert_int_equal(r->config->buckets[b], 0);
    }
    raftfs__meta_reply__free_unpacked(r, NULL);
}

static void test_first_join_takes_every_bucket(void **state)
{
    struct fixture *f = *state;
    Raftfs__MetaReply *r = join(f, 5);
    assert_int_equal(r->config->version, 1);
    assert_int_equal(r->config->n_groups, 1);
    assert_int_equal(r->config->groups[0]->gid, 5);
    assert_string_equal(r->config->groups[0]->addrs[0], "10.0.0.5:7000");
    uint64_t *t = ok_table(r);
    assert_int_equal(count_of(t, NBUCKETS, 5), NBUCKETS);
    free(t);
}

static void test_second_join_moves_exactly_half(void **state)
{
    struct fixture *f = *state;
    uint64_t *t1 = ok_table(join(f, 1));
    uint64_t *t2 = ok_table(join(f, 2));
    assert_int_equal(moved(t1, t2, NBUCKETS), 32);
    assert_int_equal(count_of(t2, NBUCKETS, 1), 32);
    assert_int_equal(count_of(t2, NBUCKETS, 2), 32);
    /* The highest-numbered buckets move. */
    assert_int_equal(t2[0], 1);
    assert_int_equal(t2[63], 2);
    free(t1);
    free(t2);
}

static void test_third_join_moves_fewest_and_balances(void **state)
{
    struct fixture *f = *state;
    free(ok_table(join(f, 1)));
    uint64_t *t2 = ok_table(join(f, 2));
    uint64_t *t3 = ok_table(join(f, 3));
    unsigned m = moved(t2, t3, NBUCKETS);
    assert_true(m == 21 || m == 22);
    assert_int_equal(count_of(t3, NBUCKETS, 3), m);
    for (uint64_t g = 1; g <= 3; g++) {
        unsigned c = count_of(t3, NBUCKETS, g);
        assert_true(c == 21 || c == 22);
    }
    free(t2);
    free(t3);
}

static void test_join_of_several_groups_at_once_balances(void **state)
{
    struct fixture *f = *state;
    static const uint64_t gids[] = {7, 3, 9, 4};
    Raftfs__MetaReply *r = join_many(f, gids, 4);
    assert_int_equal(r->config->version, 1);
    assert_int_equal(r->config->n_groups, 4);
    assert_int_equal(r->config->groups[0]->gid, 3); /* sorted by id */
    uint64_t *t = ok_table(r);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(count_of(t, NBUCKETS, gids[i]), 16);
    }
    free(t);
}

static void test_leave_moves_only_the_leavers_buckets(void **state)
{
    struct fixture *f = *state;
    free(ok_table(join(f, 1)));
    free(ok_table(join(f, 2)));
    uint64_t *before = ok_table(join(f, 3));
    uint64_t *after = ok_table(leave(f, 2));
    unsigned leaver = count_of(before, NBUCKETS, 2);
    assert_int_equal(moved(before, after, NBUCKETS), leaver);
    for (unsigned b = 0; b < NBUCKETS; b++) {
        if (before[b] != 2) {
            assert_int_equal(after[b], before[b]);
        }
    }
    assert_int_equal(count_of(after, NBUCKETS, 1), 32);
    assert_int_equal(count_of(after, NBUCKETS, 3), 32);
    free(before);
    free(after);
}

static void test_last_leave_maps_every_bucket_to_group_0(void **state)
{
    struct fixture *f = *state;
    free(ok_table(join(f, 1)));
    uint64_t *t = ok_table(leave(f, 1));
    assert_int_equal(count_of(t, NBUCKETS, 0), NBUCKETS);
    free(t);
}

static void test_move_range_then_query_shows_version_chain(void **state)
{
    struct fixture *f = *state;
    free(ok_table(join(f, 1)));
    free(ok_table(join(f, 2)));
    uint64_t *t = ok_table(move(f, 32, 40, 1));
    assert_int_equal(count_of(t, NBUCKETS, 1), 41);
    free(t);
    t = ok_table(move(f, 63, 63, 1));
    assert_int_equal(t[63], 1);
    free(t);

    Raftfs__MetaReply *latest = query(f, true, 0);
    assert_int_equal(latest->config->version, 4);
    raftfs__meta_reply__free_unpacked(latest, NULL);
    for (uint64_t v = 0; v <= 4; v++) {
        Raftfs__MetaReply *r = query(f, false, v);
        assert_int_equal(r->status, 0);
        assert_int_equal(r->config->version, v);
        assert_int_equal(r->config->n_groups, v == 0 ? 0 : v == 1 ? 1 : 2);
        if (v == 2) {
            assert_int_equal(count_of(r->config->buckets, NBUCKETS, 1), 32);
        }
        raftfs__meta_reply__free_unpacked(r, NULL);
    }
    expect_refused(query(f, false, 5), RFS_ENOTFOUND, "no configuration version 5");
}

static void test_refusals_name_the_problem_and_change_nothing(void **state)
{
    struct fixture *f = *state;
    free(ok_table(join(f, 1)));
    expect_refused(join(f, 1), RFS_EINVAL, "already joined");
    expect_refused(join(f, 0), RFS_EINVAL, "reserved");
    expect_refused(leave(f, 9), RFS_ENOTFOUND, "group 9 is not joined");
    expect_refused(move(f, 0, 64, 1), RFS_EINVAL, "bucket 64 out of range");
    expect_refused(move(f, 5, 4, 1), RFS_EINVAL, "empty bucket range");
    expect_refused(move(f, 0, 3, 2), RFS_ENOTFOUND, "group 2 is not joined");
    {
        static const uint64_t twice[] = {4, 4};
        expect_refused(join_many(f, twice, 2), RFS_EINVAL, "given twice");
    }
    {
        Raftfs__MetaRequest m = RAFTFS__META_REQUEST__INIT;
        m.op = RAFTFS__META_OP__META_ALLOC_IDS;
        expect_refused(write_cmd(f, &m), RFS_EINVAL, "count 0");
        m.op = RAFTFS__META_OP__META_QUERY;
        expect_refused(write_cmd(f, &m), RFS_EINVAL, "QUERY is a read");
    }
    Raftfs__MetaReply *r = query(f, true, 0);
    assert_int_equal(r->config->version, 1);
    raftfs__meta_reply__free_unpacked(r, NULL);
}

static void test_malformed_command_is_refused_and_advances(void **state)
{
    struct fixture *f = *state;
    static const char junk[] = "\xff\xff\xff";
    struct raft_entry e = {.index = ++f->index, .term = 1, .type = RAFT_ENTRY_NORMAL};
    struct rfs_buf reply;
    e.data.base = (void *)junk;
    e.data.len = 3;
    assert_int_equal(meta_sm_ops.apply(f->sm, &e, 1, &reply, f->errmsg), 0);
    Raftfs__KvReply *kr = raftfs__kv_reply__unpack(NULL, reply.len, reply.base);
    assert_non_null(kr);
    assert_int_equal(kr->status, RFS_EPROTO);
    raftfs__kv_reply__free_unpacked(kr, NULL);
    rfs_free(reply.base);
    assert_int_equal(meta_sm_ops.applied(f->sm), f->index);
}

/* Rebalance alone: random joins and leaves keep sizes within one, move exactly the
 * orphaned and surplus buckets, and the same operations give the same table. */
static void test_random_membership_stays_balanced_and_deterministic(void **state)
{
    (void)state;
    enum { N = 61, ROUNDS = 400 };
    uint64_t a[N] = {0}, b[N] = {0};
    uint64_t gids[16];
    unsigned n = 0;
    unsigned seed = 12345;
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t prev[N];
        seed = seed * 1103515245u + 12345u;
        unsigned r = (seed >> 16) & 0x7fff;
        if (n == 0 || (n < 16 && r % 3 != 0)) {
            uint64_t g = 1 + r % 40;
            bool dup = false;
            for (unsigned i = 0; i < n; i++) {
                dup |= gids[i] == g;
            }
            if (dup) {
                continue;
            }
            unsigned i = n++;
            while (i > 0 && gids[i - 1] > g) {
                gids[i] = gids[i - 1];
                i--;
            }
            gids[i] = g;
        } else {
            unsigned k = r % n;
            memmove(&gids[k], &gids[k + 1], (n - k - 1) * sizeof gids[0]);
            n--;
        }
        memcpy(prev, a, sizeof prev);
        assert_int_equal(meta_rebalance(a, N, gids, n), 0);
        assert_int_equal(meta_rebalance(b, N, gids, n), 0);
        assert_memory_equal(a, b, sizeof a);
        /* The fewest moves: orphans plus the surplus over the larger share. */
        unsigned orphans = 0, lo = N, hi = 0;
        for (unsigned i = 0; i < N; i++) {
            bool known = false;
            for (unsigned j = 0; j < n; j++) {
                known |= prev[i] == gids[j];
            }
            orphans += !known;
        }
        for (unsigned j = 0; j < n; j++) {
            unsigned c = count_of(a, N, gids[j]);
            lo = c < lo ? c : lo;
            hi = c > hi ? c : hi;
        }
        if (n > 0) {
            assert_true(hi - lo <= 1);
            assert_true(moved(prev, a, N) <= orphans + (n > 0 ? N : 0));
            /* No bucket of a group within its share moves: moves = orphans + surplus. */
            unsigned surplus = 0, share_hi = N / n + (N % n ? 1 : 0);
            for (unsigned j = 0; j < n; j++) {
                unsigned c = count_of(prev, N, gids[j]);
                surplus += c > share_hi ? c - share_hi : 0;
            }
            assert_true(moved(prev, a, N) >= orphans + surplus);
            assert_true(moved(prev, a, N) <= orphans + surplus + n);
        } else {
            assert_int_equal(count_of(a, N, 0), N);
        }
    }
}

static void test_alloc_ids_never_repeat_across_reopen(void **state)
{
    struct fixture *f = *state;
    uint64_t a = alloc_ids(f, 10);
    uint64_t b = alloc_ids(f, 1);
    assert_int_equal(a, 1);
    assert_int_equal(b, 11);
    fixture_reopen(f);
    uint64_t c = alloc_ids(f, 1000);
    assert_int_equal(c, 12);
    fixture_reopen(f);
    assert_int_equal(alloc_ids(f, 1), 1012);
}

static void test_retry_of_same_seq_gets_same_reply_once(void **state)
{
    struct fixture *f = *state;
    Raftfs__MetaRequest m = RAFTFS__META_REQUEST__INIT;
    Raftfs__MetaReply *r1, *r2, *r3;
    m.op = RAFTFS__META_OP__META_ALLOC_IDS;
    m.count = 5;
    r1 = write_as(f, &m, 77, 1);
    r2 = write_as(f, &m, 77, 1);
    assert_int_equal(r1->first_id, r2->first_id);
    fixture_reopen(f);
    r3 = write_as(f, &m, 77, 1); /* sessions survive a restart */
    assert_int_equal(r3->first_id, r1->first_id);
    assert_int_equal(alloc_ids(f, 1), r1->first_id + 5);
    raftfs__meta_reply__free_unpacked(r1, NULL);
    raftfs__meta_reply__free_unpacked(r2, NULL);
    raftfs__meta_reply__free_unpacked(r3, NULL);
    r1 = write_as(f, &m, 77, 0);
    assert_int_equal(r1->status, RFS_ESTALE);
    raftfs__meta_reply__free_unpacked(r1, NULL);
}

static void test_reopen_with_other_bucket_count_is_refused(void **state)
{
    struct fixture *f = *state;
    struct meta_sm *other = NULL;
    meta_sm_close(f->sm);
    f->sm = NULL;
    assert_int_equal(meta_sm_open(&other, f->dir, 32, f->errmsg), RFS_EINVAL);
    assert_null(other);
    assert_non_null(strstr(f->errmsg, "created with 64 buckets"));
    fixture_open(f);
}

static void test_snapshot_restores_into_fresh_directory(void **state)
{
    struct fixture *f = *state;
    struct fixture g = {0};
    struct rfs_buf snap;
    raft_index idx;
    free(ok_table(join(f, 1)));
    free(ok_table(join(f, 2)));
    free(ok_table(move(f, 0, 3, 2)));
    uint64_t first = alloc_ids(f, 100);
    assert_int_equal(meta_sm_ops.snapshot(f->sm, &snap, &idx, f->errmsg), 0);
    assert_int_equal(idx, f->index);

    make_tmpdir(g.dir, sizeof g.dir);
    fixture_open(&g);
    free(ok_table(join(&g, 9))); /* replaced by the restore */
    /* A damaged snapshot is refused and changes nothing. */
    ((char *)snap.base)[snap.len / 2] ^= 1;
    assert_int_equal(meta_sm_ops.restore(g.sm, idx, snap.base, snap.len, g.errmsg), RFS_ECORRUPT);
    ((char *)snap.base)[snap.len / 2] ^= 1;
    Raftfs__MetaReply *r = query(&g, true, 0);
    assert_int_equal(r->config->groups[0]->gid, 9);
    raftfs__meta_reply__free_unpacked(r, NULL);

    if (meta_sm_ops.restore(g.sm, idx, snap.base, snap.len, g.errmsg) != 0) {
        fail_msg("restore: %s", g.errmsg);
    }
    rfs_free(snap.base);
    g.index = idx;
    assert_int_equal(meta_sm_ops.applied(g.sm), idx);
    fixture_reopen(&g);
    for (uint64_t v = 0; v <= 3; v++) {
        Raftfs__MetaReply *a = query(f, false, v), *b = query(&g, false, v);
        assert_int_equal(a->config->version, b->config->version);
        assert_int_equal(a->config->n_groups, b->config->n_groups);
        assert_memory_equal(a->config->buckets, b->config->buckets,
                            NBUCKETS * sizeof a->config->buckets[0]);
        raftfs__meta_reply__free_unpacked(a, NULL);
        raftfs__meta_reply__free_unpacked(b, NULL);
    }
    assert_int_equal(alloc_ids(&g, 1), first + 100);
    meta_sm_close(g.sm);
    nftw(g.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_empty_config_maps_every_bucket_to_group_0),
        T(test_first_join_takes_every_bucket),
        T(test_second_join_moves_exactly_half),
        T(test_third_join_moves_fewest_and_balances),
        T(test_join_of_several_groups_at_once_balances),
        T(test_leave_moves_only_the_leavers_buckets),
        T(test_last_leave_maps_every_bucket_to_group_0),
        T(test_move_range_then_query_shows_version_chain),
        T(test_refusals_name_the_problem_and_change_nothing),
        T(test_malformed_command_is_refused_and_advances),
        T(test_random_membership_stays_balanced_and_deterministic),
        T(test_alloc_ids_never_repeat_across_reopen),
        T(test_retry_of_same_seq_gets_same_reply_once),
        T(test_reopen_with_other_bucket_count_is_refused),
        T(test_snapshot_restores_into_fresh_directory),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
