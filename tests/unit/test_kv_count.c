/* Tests of counting data keys by prefix (kv/count.h, the inode count of KV_SPACE): exact
 * counts of small buckets, only the prefix asked, only user data, and an estimate within
 * bounds for a bucket larger than KV_COUNT_EXACT_PER_BUCKET once LevelDB can tell sizes. */
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
#include "common/log.h"
#include "kv/count.h"
#include "kv/kv.h"
#include "proto/raftfs.pb-c.h"

#define NBUCKETS 64
/* Writes in one transaction entry. */
#define TXN_WRITES 500

struct fixture {
    char dir[64];
    struct kv_sm *sm;
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

static void sm_open(struct fixture *f)
{
    if (kv_sm_open(&f->sm, f->dir, NBUCKETS, f->errmsg) != 0) {
        fail_msg("kv_sm_open: %s", f->errmsg);
    }
    f->index = kv_sm_ops.applied(f->sm);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "/tmp/test_kv_count.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    sm_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kv_sm_close(f->sm);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Put keys (NUL-terminated, n of them) with value val in one transaction entry. */
static void put_many(struct fixture *f, char **keys, unsigned n, const char *val)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    Raftfs__TxnWrite *w = calloc(n, sizeof *w), **wp = calloc(n, sizeof *wp);
    struct raft_entry e = {.term = 1, .index = f->index + 1, .type = RAFT_ENTRY_NORMAL};
    struct rfs_buf reply;
    Raftfs__KvReply *rep;
    assert_non_null(w);
    assert_non_null(wp);
    for (unsigned i = 0; i < n; i++) {
        raftfs__txn_write__init(&w[i]);
        w[i].key.data = (uint8_t *)keys[i];
        w[i].key.len = strlen(keys[i]);
        w[i].value.data = (uint8_t *)val;
        w[i].value.len = strlen(val);
        wp[i] = &w[i];
    }
    r.op = RAFTFS__KV_OP__KV_TXN;
    r.n_writes = n;
    r.writes = wp;
    r.time_ms = 1000;
    e.data.len = raftfs__kv_request__get_packed_size(&r);
    e.data.base = malloc(e.data.len);
    assert_non_null(e.data.base);
    raftfs__kv_request__pack(&r, e.data.base);
    if (kv_sm_ops.apply(f->sm, &e, 1, &reply, f->errmsg) != 0) {
        fail_msg("apply: %s", f->errmsg);
    }
    f->index++;
    rep = raftfs__kv_reply__unpack(NULL, reply.len, reply.base);
    assert_non_null(rep);
    assert_int_equal(rep->status, 0);
    raftfs__kv_reply__free_unpacked(rep, NULL);
    rfs_free(reply.base);
    free(e.data.base);
    free(w);
    free(wp);
}

/* Put "<kind>{<tag>}<i>" for i in [0, n) (in entries of TXN_WRITES). */
static void put_keys(struct fixture *f, char kind, const char *tag, unsigned n)
{
    char *keys[TXN_WRITES];
    for (unsigned i = 0; i < n; i += TXN_WRITES) {
        unsigned k = n - i < TXN_WRITES ? n - i : TXN_WRITES;
        for (unsigned j = 0; j < k; j++) {
            keys[j] = malloc(64);
            assert_non_null(keys[j]);
            snprintf(keys[j], 64, "%c{%s}%08u", kind, tag, i + j);
        }
        put_many(f, keys, k, "an inode record of some fifty bytes, about as long");
        for (unsigned j = 0; j < k; j++) {
            free(keys[j]);
        }
    }
}

static uint64_t count(struct fixture *f, const char *prefix, int *exact)
{
    uint64_t n = 0;
    if (kv_sm_count_keys(f->sm, prefix, strlen(prefix), &n, exact, f->errmsg) != 0) {
        fail_msg("count: %s", f->errmsg);
    }
    return n;
}

static void test_small_buckets_are_counted_exactly(void **state)
{
    struct fixture *f = *state;
    int exact = 0;
    assert_int_equal(count(f, "i", &exact), 0);
    assert_true(exact);
    put_keys(f, 'i', "0001", 10);
    put_keys(f, 'i', "abcd", 30);
    put_keys(f, 'c', "0001:0", 7);
    put_keys(f, 'd', "0001", 5);
    assert_int_equal(count(f, "i", &exact), 40);
    assert_true(exact);
    assert_int_equal(count(f, "c", &exact), 7);
    assert_int_equal(count(f, "i{abcd}", &exact), 30);
    assert_int_equal(count(f, "x", &exact), 0);
    /* the whole data: sessions and the applied index are not user keys */
    assert_int_equal(count(f, "", &exact), 52);
    assert_true(exact);
}

static void test_a_big_bucket_is_estimated_within_bounds(void **state)
{
    enum { N = 20000 };
    struct fixture *f = *state;
    int exact = 1;
    uint64_t n;
    put_keys(f, 'i', "beef", N);
    put_keys(f, 'i', "0002", 100);
    /* in LevelDB's memtable, which has no approximate size: counted up to the bound */
    n = count(f, "i", &exact);
    assert_true(n >= 100 + KV_COUNT_EXACT_PER_BUCKET && n <= 100 + N);
    /* reopened: the memtable went to a table file, and the rest is extrapolated */
    kv_sm_close(f->sm);
    f->sm = NULL;
    sm_open(f);
    n = count(f, "i", &exact);
    printf("estimated %llu inode keys of %d\n", (unsigned long long)n, N + 100);
    assert_false(exact);
    assert_true(n >= (N + 100) / 2 && n <= (N + 100) * 2);
    assert_int_equal(count(f, "i{0002}", &exact), 100);
    assert_true(exact);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_small_buckets_are_counted_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_big_bucket_is_estimated_within_bounds, setup,
                                        teardown),
    };
    rfs_log_set_level(RFS_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
