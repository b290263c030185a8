/* Tests of the kv state machine (kv/kv.h): bucket routing, every operation through apply and
 * query, batches that read their own writes, exactly-once sessions and their expiry, the
 * applied index, snapshots and restore, and repair of an interrupted restore at open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/err.h"
#include "kv/kv.h"
#include "proto/raftfs.pb-c.h"

#define NBUCKETS  64
#define MAX_BATCH 16

struct fixture {
    char dir[64];
    char path[256];
    struct kv_sm *sm;
    raft_index index; /* the last index applied */
    uint64_t time_ms; /* stamped on requests that carry none */
    char errmsg[RFS_ERRMSG_SIZE];
};

/* --- helpers --- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int exists(const char *dir, const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return lstat(path, &st) == 0;
}

static void move(const char *from_dir, const char *from, const char *to_dir, const char *to)
{
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/%s", from_dir, from);
    snprintf(b, sizeof b, "%s/%s", to_dir, to);
    assert_int_equal(rename(a, b), 0);
}

static void touch(const char *dir, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
}

static void make_tmpdir(char *out, size_t size)
{
    snprintf(out, size, "/tmp/test_kv_sm.XXXXXX");
    assert_non_null(mkdtemp(out));
}

static void fixture_open(struct fixture *f)
{
    int rv = kv_sm_open(&f->sm, f->dir, NBUCKETS, f->errmsg);
    if (rv != 0) {
        fail_msg("kv_sm_open: %s", f->errmsg);
    }
    f->index = kv_sm_ops.applied(f->sm);
}

static void fixture_reopen(struct fixture *f)
{
    kv_sm_close(f->sm);
    f->sm = NULL;
    fixture_open(f);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    make_tmpdir(f->dir, sizeof f->dir);
    f->time_ms = 1000;
    fixture_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kv_sm_close(f->sm);
    rm_rf(f->dir);
    free(f);
    return 0;
}

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {0, NULL};
    if (s != NULL) {
        b.data = (uint8_t *)s;
        b.len = strlen(s);
    }
    return b;
}

static Raftfs__KvRequest req(Raftfs__KvOp op, const char *key, const char *value)
{
    Raftfs__KvRequest r = RAFTFS__KV_REQUEST__INIT;
    r.op = op;
    r.key = bin(key);
    r.value = bin(value);
    return r;
}

static struct rfs_buf pack(const Raftfs__KvRequest *r)
{
    struct rfs_buf b;
    b.len = raftfs__kv_request__get_packed_size(r);
    b.base = malloc(b.len + 1);
    assert_non_null(b.base);
    raftfs__kv_request__pack(r, b.base);
    return b;
}

static Raftfs__KvReply *unpack_reply(struct rfs_buf b)
{
    Raftfs__KvReply *r = raftfs__kv_reply__unpack(NULL, b.len, b.base);
    assert_non_null(r);
    return r;
}

static void apply_entries_raw(struct fixture *f, struct raft_entry *e, unsigned n,
                              struct rfs_buf *replies)
{
    int rv = kv_sm_ops.apply(f->sm, e, n, replies, f->errmsg);
    if (rv != 0) {
        fail_msg("apply: %s", f->errmsg);
    }
    if (n > 0) {
        f->index = e[n - 1].index;
    }
}

/* Apply n requests as one batch of consecutive entries; out[i] are the decoded replies. */
static void apply_batch(struct fixture *f, Raftfs__KvRequest **reqs, unsigned n,
                        Raftfs__KvReply **out)
{
    struct raft_entry e[MAX_BATCH];
    struct rfs_buf replies[MAX_BATCH];

    assert_true(n <= MAX_BATCH);
    for (unsigned i = 0; i < n; i++) {
        if (reqs[i]->time_ms == 0) {
            reqs[i]->time_ms = f->time_ms;
        }
        e[i] = (struct raft_entry){
            .term = 1, .index = f->index + 1 + i, .type = RAFT_ENTRY_NORMAL, .data = pack(reqs[i])};
    }
    apply_entries_raw(f, e, n, replies);
    for (unsigned i = 0; i < n; i++) {
        assert_non_null(replies[i].base);
        out[i] = unpack_reply(replies[i]);
        rfs_free(replies[i].base);
        free(e[i].data.base);
    }
}

static Raftfs__KvReply *apply1(struct fixture *f, Raftfs__KvRequest r)
{
    Raftfs__KvRequest *p = &r;
    Raftfs__KvReply *out;
    apply_batch(f, &p, 1, &out);
    return out;
}

/* Apply one request and return the raw reply bytes (malloc'd copy). */
static struct rfs_buf apply1_raw(struct fixture *f, Raftfs__KvRequest r)
{
    struct raft_entry e = {.term = 1, .index = f->index + 1, .type = RAFT_ENTRY_NORMAL};
    struct rfs_buf reply, copy;
    if (r.time_ms == 0) {
        r.time_ms = f->time_ms;
    }
    e.data = pack(&r);
    apply_entries_raw(f, &e, 1, &reply);
    free(e.data.base);
    copy.len = reply.len;
    copy.base = malloc(reply.len + 1);
    memcpy(copy.base, reply.base, reply.len);
    rfs_free(reply.base);
    return copy;
}

static Raftfs__KvReply *query(struct fixture *f, Raftfs__KvRequest r)
{
    struct rfs_buf cmd = pack(&r), reply;
    int rv = kv_sm_ops.query(f->sm, cmd.base, cmd.len, &reply, f->errmsg);
    if (rv != 0) {
        fail_msg("query: %s", f->errmsg);
    }
    free(cmd.base);
    Raftfs__KvReply *out = unpack_reply(reply);
    rfs_free(reply.base);
    return out;
}

static void put(struct fixture *f, const char *key, const char *value)
{
    Raftfs__KvReply *r = apply1(f, req(RAFTFS__KV_OP__KV_PUT, key, value));
    assert_int_equal(r->status, 0);
    raftfs__kv_reply__free_unpacked(r, NULL);
}

/* The value of key (NULL when absent) and its version. Caller frees the string. */
static char *get(struct fixture *f, const char *key, uint64_t *version)
{
    Raftfs__KvReply *r = query(f, req(RAFTFS__KV_OP__KV_GET, key, NULL));
    char *v = NULL;
    assert_int_equal(r->status, 0);
    if (r->found) {
        v = strndup((const char *)r->value.data, r->value.len);
    }
    if (version != NULL) {
        *version = r->version;
    }
    raftfs__kv_reply__free_unpacked(r, NULL);
    return v;
}

static void assert_value(struct fixture *f, const char *key, const char *want)
{
    char *v = get(f, key, NULL);
    if (want == NULL) {
        assert_null(v);
    } else {
        assert_non_null(v);
        assert_string_equal(v, want);
    }
    free(v);
}

static Raftfs__KvReply *scan(struct fixture *f, const char *start, const char *end, uint32_t limit)
{
    Raftfs__KvRequest r = req(RAFTFS__KV_OP__KV_SCAN, start, NULL);
    r.end_key = bin(end);
    r.limit = limit;
    return query(f, r);
}

/* The scan's keys joined by spaces. */
static void scan_keys(const Raftfs__KvReply *r, char *out, size_t size)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < r->n_kvs; i++) {
        n += (size_t)snprintf(out + n, size - n, "%s%.*s", i ? " " : "", (int)r->kvs[i]->key.len,
                              (const char *)r->kvs[i]->key.data);
        assert_true(n < size);
    }
}

static uint32_t bucket(const char *key)
{
    return kv_bucket_of(key, strlen(key), NBUCKETS);
}

/* --- bucket routing --- */

static void test_bucket_of_whole_key_is_zlib_crc32(void **state)
{
    (void)state;
    assert_int_equal(kv_bucket_of("123456789", 9, UINT32_MAX), 0xCBF43926u);
    assert_int_equal(kv_bucket_of("123456789", 9, 64), 0xCBF43926u % 64);
    assert_int_equal(kv_bucket_of("k", 1, 1000), 0x0862575Du % 1000);
    assert_int_equal(kv_bucket_of("", 0, 64), 0);
    /* An unclosed brace is not a tag. */
    assert_int_equal(kv_bucket_of("a{b", 3, UINT32_MAX), 0xD923D84Cu);
    assert_int_equal(kv_bucket_of("{", 1, UINT32_MAX), 0x15D54739u);
}

static void test_bucket_of_hash_tag_routes_by_tag(void **state)
{
    (void)state;
    assert_int_equal(kv_bucket_of("{123456789}abc", 14, UINT32_MAX), 0xCBF43926u);
    assert_int_equal(kv_bucket_of("x{user1000}y", 12, UINT32_MAX), 0x125ADB66u);
    /* Only the first tag counts. */
    assert_int_equal(kv_bucket_of("{user1000}{zz}", 14, UINT32_MAX), 0x125ADB66u);
    assert_int_equal(kv_bucket_of("i{user1000}7", 12, 64), kv_bucket_of("d{user1000}x", 12, 64));
}

static void test_bucket_of_empty_tag_uses_whole_key(void **state)
{
    (void)state;
    assert_int_equal(kv_bucket_of("a{}b", 4, UINT32_MAX), 0xC357CF04u);
}

/* --- single operations --- */

static void test_put_get_version_is_entry_index(void **state)
{
    struct fixture *f = *state;
    uint64_t version;

    Raftfs__KvReply *r = apply1(f, req(RAFTFS__KV_OP__KV_PUT, "a", "one"));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->version, 1);
    raftfs__kv_reply__free_unpacked(r, NULL);
    put(f, "b", "two");
    put(f, "a", "three");

    char *v = get(f, "a", &version);
    assert_string_equal(v, "three");
    assert_int_equal(version, 3);
    free(v);
    v = get(f, "b", &version);
    assert_string_equal(v, "two");
    assert_int_equal(version, 2);
    free(v);
    assert_null(get(f, "missing", &version));
    assert_int_equal(version, 0);
}

static void test_append_creates_and_extends(void **state)
{
    struct fixture *f = *state;
    uint64_t version;

    Raftfs__KvReply *r = apply1(f, req(RAFTFS__KV_OP__KV_APPEND, "log", "ab"));
    assert_int_equal(r->status, 0);
    raftfs__kv_reply__free_unpacked(r, NULL);
    r = apply1(f, req(RAFTFS__KV_OP__KV_APPEND, "log", "cd"));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->version, 2);
    raftfs__kv_reply__free_unpacked(r, NULL);

    char *v = get(f, "log", &version);
    assert_string_equal(v, "abcd");
    assert_int_equal(version, 2);
    free(v);
}

static void test_delete_reports_found(void **state)
{
    struct fixture *f = *state;

    put(f, "a", "1");
    Raftfs__KvReply *r = apply1(f, req(RAFTFS__KV_OP__KV_DELETE, "a", NULL));
    assert_int_equal(r->status, 0);
    assert_true(r->found);
    raftfs__kv_reply__free_unpacked(r, NULL);
    assert_value(f, "a", NULL);

    r = apply1(f, req(RAFTFS__KV_OP__KV_DELETE, "a", NULL));
    assert_int_equal(r->status, 0);
    assert_false(r->found);
    raftfs__kv_reply__free_unpacked(r, NULL);
}

static void test_cas_succeeds_on_match_and_conflicts_otherwise(void **state)
{
    struct fixture *f = *state;

    /* expect_absent on a missing key: succeeds. */
    Raftfs__KvRequest c = req(RAFTFS__KV_OP__KV_CAS, "k", "v1");
    c.expect_absent = 1;
    Raftfs__KvReply *r = apply1(f, c);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->version, 1);
    raftfs__kv_reply__free_unpacked(r, NULL);

    /* expect_absent on a present key: conflict with the current value. */
    c = req(RAFTFS__KV_OP__KV_CAS, "k", "v2");
    c.expect_absent = 1;
    r = apply1(f, c);
    assert_int_equal(r->status, RFS_ECONFLICT);
    assert_int_equal(r->conflict_key.len, 1);
    assert_memory_equal(r->conflict_key.data, "k", 1);
    assert_true(r->found);
    assert_int_equal(r->version, 1);
    assert_int_equal(r->value.len, 2);
    assert_memory_equal(r->value.data, "v1", 2);
    raftfs__kv_reply__free_unpacked(r, NULL);

    /* Wrong expected value: conflict, nothing written. */
    c = req(RAFTFS__KV_OP__KV_CAS, "k", "v3");
    c.expect = bin("nope");
    r = apply1(f, c);
    assert_int_equal(r->status, RFS_ECONFLICT);
    raftfs__kv_reply__free_unpacked(r, NULL);
    assert_value(f, "k", "v1");

    /* Right expected value: swapped. */
    c = req(RAFTFS__KV_OP__KV_CAS, "k", "v4");
    c.expect = bin("v1");
    r = apply1(f, c);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->version, 4);
    raftfs__kv_reply__free_unpacked(r, NULL);
    assert_value(f, "k", "v4");

    /* Expecting a value of a missing key: conflict, found = false. */
    c = req(RAFTFS__KV_OP__KV_CAS, "gone", "x");
    c.expect = bin("");
    r = apply1(f, c);
    assert_int_equal(r->status, RFS_ECONFLICT);
    assert_false(r->found);
    raftfs__kv_reply__free_unpacked(r, NULL);
}

static Raftfs__KvRequest txn(Raftfs__TxnRead **reads, size_t nr, Raftfs__TxnWrite **writes,
                             size_t nw)
{
    Raftfs__KvRequest r = req(RAFTFS__KV_OP__KV_TXN, NULL, NULL);
    r.reads = reads;
    r.n_reads = nr;
    r.writes = writes;
    r.n_writes = nw;
    return r;
}

static Raftfs__TxnRead tread(const char *key, uint64_t version)
{
    Raftfs__TxnRead r = RAFTFS__TXN_READ__INIT;
    r.key = bin(key);
    r.version = version;
    return r;
}

static Raftfs__TxnWrite twrite(const char *key, const char *value, int del)
{
    Raftfs__TxnWrite w = RAFTFS__TXN_WRITE__INIT;
    w.key = bin(key);
    w.value = bin(value);
    w.delete_ = del;
    return w;
}

static void test_txn_commits_all_writes_at_entry_index(void **state)
{
    struct fixture *f = *state;
    uint64_t version;

    put(f, "a", "1"); /* version 1 */
    put(f, "d", "x"); /* version 2 */
    Raftfs__TxnRead r0 = tread("a", 1), r1 = tread("absent", 0);
    Raftfs__TxnRead *reads[] = {&r0, &r1};
    Raftfs__TxnWrite w0 = twrite("a", "2", 0), w1 = twrite("b", "3", 0), w2 = twrite("d", NULL, 1);
    Raftfs__TxnWrite *writes[] = {&w0, &w1, &w2};

    Raftfs__KvReply *r = apply1(f, txn(reads, 2, writes, 3));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->version, 3);
    raftfs__kv_reply__free_unpacked(r, NULL);

    char *v = get(f, "a", &version);
    assert_string_equal(v, "2");
    assert_int_equal(version, 3);
    free(v);
    v = get(f, "b", &version);
    assert_string_equal(v, "3");
    assert_int_equal(version, 3);
    free(v);
    assert_value(f, "d", NULL);
}

static void test_txn_conflict_writes_nothing(void **state)
{
    struct fixture *f = *state;

    put(f, "a", "1"); /* version 1 */
    put(f, "a", "2"); /* version 2: the txn below saw version 1 */
    Raftfs__TxnRead r0 = tread("b", 0), r1 = tread("a", 1);
    Raftfs__TxnRead *reads[] = {&r0, &r1};
    Raftfs__TxnWrite w0 = twrite("b", "new", 0), w1 = twrite("a", "new", 0);
    Raftfs__TxnWrite *writes[] = {&w0, &w1};

    Raftfs__KvReply *r = apply1(f, txn(reads, 2, writes, 2));
    assert_int_equal(r->status, RFS_ECONFLICT);
    assert_int_equal(r->conflict_key.len, 1);
    assert_memory_equal(r->conflict_key.data, "a", 1);
    assert_int_equal(r->version, 2);
    raftfs__kv_reply__free_unpacked(r, NULL);
    assert_value(f, "a", "2");
    assert_value(f, "b", NULL);

    /* A read expecting absence of a present key conflicts too. */
    Raftfs__TxnRead r2 = tread("a", 0);
    Raftfs__TxnRead *reads2[] = {&r2};
    r = apply1(f, txn(reads2, 1, writes, 1));
    assert_int_equal(r->status, RFS_ECONFLICT);
    raftfs__kv_reply__free_unpacked(r, NULL);
    assert_value(f, "b", NULL);
}

/* --- scans --- */

static void test_scan_orders_limits_and_bounds(void **state)
{
    struct fixture *f = *state;
    char keys[512];

    put(f, "b", "2");
    put(f, "d", "4");
    put(f, "a", "1");
    put(f, "c", "3");
    put(f, "e", "5");

    Raftfs__KvReply *r = scan(f, "", NULL, 0);
    scan_keys(r, keys, sizeof keys);
    assert_string_equal(keys, "a b c d e");
    assert_false(r->more);
    assert_int_equal(r->kvs[0]->version, 3);
    assert_int_equal(r->kvs[0]->value.len, 1);
    assert_memory_equal(r->kvs[0]->value.data, "1", 1);
    raftfs__kv_reply__free_unpacked(r, NULL);

    r = scan(f, "b", NULL, 2);
    scan_keys(r, keys, sizeof keys);
    assert_string_equal(keys, "b c");
    assert_true(r->more);
    raftfs__kv_reply__free_unpacked(r, NULL);

    r = scan(f, "b", "d", 0);
    scan_keys(r, keys, sizeof keys);
    assert_string_equal(keys, "b c");
    assert_false(r->more);
    raftfs__kv_reply__free_unpacked(r, NULL);

    /* Exactly limit results left: no more. */
    r = scan(f, "c", NULL, 3);
    scan_keys(r, keys, sizeof keys);
    assert_string_equal(keys, "c d e");
    assert_false(r->more);
    raftfs__kv_reply__free_unpacked(r, NULL);

    /* Empty ranges. */
    r = scan(f, "d", "b", 0);
    assert_int_equal(r->n_kvs, 0);
    raftfs__kv_reply__free_unpacked(r, NULL);
    r = scan(f, "f", NULL, 0);
    assert_int_equal(r->n_kvs, 0);
    raftfs__kv_reply__free_unpacked(r, NULL);
}

static void test_scan_merges_all_buckets_in_key_order(void **state)
{
    struct fixture *f = *state;
    unsigned used[NBUCKETS] = {0}, nused = 0;
    char key[16];

    /* Insert in a scrambled order; the keys land in many buckets. */
    for (unsigned i = 0; i < 200; i++) {
        unsigned k = (i * 73) % 200;
        snprintf(key, sizeof key, "k%03u", k);
        put(f, key, key);
        if (used[bucket(key)]++ == 0) {
            nused++;
        }
    }
    assert_true(nused > 30);

    /* Page through the 200 keys, 64 at a time, each page starting at the next key. */
    unsigned seen = 0;
    int more = 1;
    while (more) {
        snprintf(key, sizeof key, "k%03u", seen);
        Raftfs__KvReply *r = scan(f, key, NULL, 64);
        more = r->more;
        assert_int_equal(r->n_kvs, more ? 64 : 200 % 64);
        for (size_t i = 0; i < r->n_kvs; i++) {
            snprintf(key, sizeof key, "k%03u", seen++);
            assert_int_equal(r->kvs[i]->key.len, strlen(key));
            assert_memory_equal(r->kvs[i]->key.data, key, strlen(key));
        }
        raftfs__kv_reply__free_unpacked(r, NULL);
    }
    assert_int_equal(seen, 200);

    /* A limit above the hard cap is cut, not refused. */
    Raftfs__KvReply *r = scan(f, "", NULL, 1000000);
    assert_int_equal(r->n_kvs, 200);
    raftfs__kv_reply__free_unpacked(r, NULL);
}

static void test_scan_with_hash_tag_reads_one_bucket(void **state)
{
    struct fixture *f = *state;
    char keys[512];

    assert_int_not_equal(bucket("{t}"), bucket("{u}"));
    put(f, "{t}b", "1");
    put(f, "{t}a", "2");
    put(f, "{u}c", "3"); /* after "{t}" in key order, but another bucket */
    put(f, "zzz", "4");
    put(f, "{t}c", "5");

    Raftfs__KvReply *r = scan(f, "{t}", NULL, 0);
    scan_keys(r, keys, sizeof keys);
    assert_string_equal(keys, "{t}a {t}b {t}c");
    raftfs__kv_reply__free_unpacked(r, NULL);

    r = scan(f, "{t}", "{t}c", 0);
    scan_keys(r, keys, sizeof keys);
    assert_string_equal(keys, "{t}a {t}b");
    raftfs__kv_reply__free_unpacked(r, NULL);

    /* Without a tag, the same range covers every bucket. */
    r = scan(f, "{", NULL, 0);
    scan_keys(r, keys, sizeof keys);
    assert_string_equal(keys, "{t}a {t}b {t}c {u}c");
    raftfs__kv_reply__free_unpacked(r, NULL);
}

/* --- batches --- */

static void test_batch_later_entries_see_earlier_ones(void **state)
{
    struct fixture *f = *state;
    char keys[512];

    put(f, "old", "o"); /* index 1, written before the batch */
    Raftfs__KvRequest p = req(RAFTFS__KV_OP__KV_PUT, "x", "1");       /* 2 */
    Raftfs__KvRequest a1 = req(RAFTFS__KV_OP__KV_APPEND, "log", "a"); /* 3 */
    Raftfs__KvRequest a2 = req(RAFTFS__KV_OP__KV_APPEND, "log", "b"); /* 4 */
    Raftfs__TxnRead tr = tread("x", 2);
    Raftfs__TxnRead *reads[] = {&tr};
    Raftfs__TxnWrite tw = twrite("y", "from-txn", 0);
    Raftfs__TxnWrite *writes[] = {&tw};
    Raftfs__KvRequest t = txn(reads, 1, writes, 1);                    /* 5 */
    Raftfs__KvRequest d = req(RAFTFS__KV_OP__KV_DELETE, "old", NULL);  /* 6 */
    Raftfs__KvRequest d2 = req(RAFTFS__KV_OP__KV_DELETE, "old", NULL); /* 7 */
    Raftfs__KvRequest g = req(RAFTFS__KV_OP__KV_GET, "log", NULL);     /* 8 */
    Raftfs__KvRequest s = req(RAFTFS__KV_OP__KV_SCAN, "", NULL);       /* 9 */
    Raftfs__KvRequest *batch[] = {&p, &a1, &a2, &t, &d, &d2, &g, &s};
    Raftfs__KvReply *r[8];

    apply_batch(f, batch, 8, r);
    assert_int_equal(r[0]->status, 0);
    assert_int_equal(r[2]->version, 4);
    assert_int_equal(r[3]->status, 0); /* saw the put at index 2 */
    assert_true(r[4]->found);
    assert_false(r[5]->found); /* saw the delete at index 6 */
    assert_true(r[6]->found);
    assert_int_equal(r[6]->value.len, 2);
    assert_memory_equal(r[6]->value.data, "ab", 2);
    assert_int_equal(r[6]->version, 4);
    scan_keys(r[7], keys, sizeof keys);
    assert_string_equal(keys, "log x y");
    for (int i = 0; i < 8; i++) {
        raftfs__kv_reply__free_unpacked(r[i], NULL);
    }

    assert_value(f, "log", "ab");
    assert_value(f, "y", "from-txn");
    assert_value(f, "old", NULL);
    assert_int_equal(kv_sm_ops.applied(f->sm), 9);
}

static void test_get_and_scan_through_apply_match_query(void **state)
{
    struct fixture *f = *state;

    put(f, "a", "1");
    put(f, "b", "2");
    Raftfs__KvReply *via_log = apply1(f, req(RAFTFS__KV_OP__KV_GET, "b", NULL));
    Raftfs__KvReply *via_query = query(f, req(RAFTFS__KV_OP__KV_GET, "b", NULL));
    assert_int_equal(via_log->found, via_query->found);
    assert_int_equal(via_log->version, via_query->version);
    assert_int_equal(via_log->value.len, via_query->value.len);
    assert_memory_equal(via_log->value.data, via_query->value.data, via_query->value.len);
    raftfs__kv_reply__free_unpacked(via_log, NULL);
    raftfs__kv_reply__free_unpacked(via_query, NULL);

    via_log = apply1(f, req(RAFTFS__KV_OP__KV_SCAN, "", NULL));
    via_query = scan(f, "", NULL, 0);
    assert_int_equal(via_log->n_kvs, 2);
    assert_int_equal(via_query->n_kvs, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(via_log->kvs[i]->version, via_query->kvs[i]->version);
        assert_memory_equal(via_log->kvs[i]->key.data, via_query->kvs[i]->key.data, 1);
    }
    raftfs__kv_reply__free_unpacked(via_log, NULL);
    raftfs__kv_reply__free_unpacked(via_query, NULL);
}

static void test_query_refuses_writes(void **state)
{
    struct fixture *f = *state;
    Raftfs__KvReply *r = query(f, req(RAFTFS__KV_OP__KV_PUT, "a", "1"));
    assert_int_equal(r->status, RFS_EINVAL);
    raftfs__kv_reply__free_unpacked(r, NULL);
    assert_value(f, "a", NULL);
}

/* --- exactly-once sessions --- */

static Raftfs__KvRequest session_req(Raftfs__KvOp op, const char *key, const char *value,
                                     uint64_t client, uint64_t seq)
{
    Raftfs__KvRequest r = req(op, key, value);
    r.client_id = client;
    r.seq = seq;
    return r;
}

static void test_session_retry_returns_same_reply_and_applies_once(void **state)
{
    struct fixture *f = *state;

    struct rfs_buf first = apply1_raw(f, session_req(RAFTFS__KV_OP__KV_APPEND, "log", "x", 42, 1));
    struct rfs_buf again = apply1_raw(f, session_req(RAFTFS__KV_OP__KV_APPEND, "log", "x", 42, 1));
    assert_int_equal(first.len, again.len);
    assert_memory_equal(first.base, again.base, first.len);
    assert_value(f, "log", "x");

    /* A retry in the same batch as the original is caught too. */
    Raftfs__KvRequest a = session_req(RAFTFS__KV_OP__KV_APPEND, "log", "y", 42, 2);
    Raftfs__KvRequest b = session_req(RAFTFS__KV_OP__KV_APPEND, "log", "y", 42, 2);
    Raftfs__KvRequest *batch[] = {&a, &b};
    Raftfs__KvReply *r[2];
    apply_batch(f, batch, 2, r);
    assert_int_equal(r[0]->version, r[1]->version);
    raftfs__kv_reply__free_unpacked(r[0], NULL);
    raftfs__kv_reply__free_unpacked(r[1], NULL);
    assert_value(f, "log", "xy");

    /* The session survives a restart. */
    fixture_reopen(f);
    struct rfs_buf after = apply1_raw(f, session_req(RAFTFS__KV_OP__KV_APPEND, "log", "x", 42, 1));
    Raftfs__KvReply *stale = unpack_reply(after);
    assert_int_equal(stale->status, RFS_ESTALE);
    raftfs__kv_reply__free_unpacked(stale, NULL);
    free(first.base);
    free(again.base);
    free(after.base);
    assert_value(f, "log", "xy");
}

static void test_session_older_seq_is_stale(void **state)
{
    struct fixture *f = *state;

    Raftfs__KvReply *r = apply1(f, session_req(RAFTFS__KV_OP__KV_PUT, "k", "5", 7, 5));
    assert_int_equal(r->status, 0);
    raftfs__kv_reply__free_unpacked(r, NULL);
    r = apply1(f, session_req(RAFTFS__KV_OP__KV_PUT, "k", "4", 7, 4));
    assert_int_equal(r->status, RFS_ESTALE);
    raftfs__kv_reply__free_unpacked(r, NULL);
    assert_value(f, "k", "5");

    /* Other clients and session-less writes are unaffected. */
    r = apply1(f, session_req(RAFTFS__KV_OP__KV_PUT, "k", "1", 8, 1));
    assert_int_equal(r->status, 0);
    raftfs__kv_reply__free_unpacked(r, NULL);
    put(f, "k", "0");
    put(f, "k", "0");
    assert_value(f, "k", "0");
}

static void test_session_expires_after_ttl_of_log_time_not_before(void **state)
{
    struct fixture *f = *state;
    const uint64_t t0 = 10 * 1000;

    Raftfs__KvRequest w = session_req(RAFTFS__KV_OP__KV_APPEND, "log", "a", 9, 3);
    w.time_ms = t0;
    Raftfs__KvReply *r = apply1(f, w);
    raftfs__kv_reply__free_unpacked(r, NULL);

    /* Other traffic exactly TTL later: a sweep runs, but the session is not older than the
     * TTL yet, so a retry is still recognised. */
    Raftfs__KvRequest other = req(RAFTFS__KV_OP__KV_PUT, "other", "1");
    other.time_ms = t0 + KV_SESSION_TTL_MS;
    r = apply1(f, other);
    raftfs__kv_reply__free_unpacked(r, NULL);
    Raftfs__KvRequest retry = session_req(RAFTFS__KV_OP__KV_APPEND, "log", "a", 9, 3);
    retry.time_ms = t0 + KV_SESSION_TTL_MS;
    r = apply1(f, retry);
    assert_int_equal(r->status, 0);
    raftfs__kv_reply__free_unpacked(r, NULL);
    assert_value(f, "log", "a");
    Raftfs__KvRequest older = session_req(RAFTFS__KV_OP__KV_APPEND, "log", "z", 9, 1);
    older.time_ms = t0 + KV_SESSION_TTL_MS;
    r = apply1(f, older);
    assert_int_equal(r->status, RFS_ESTALE);
    raftfs__kv_reply__free_unpacked(r, NULL);

    /* A minute later the next sweep drops it (survives a restart in between: the sweep time
     * is persisted): the retry now executes as a new command. */
    fixture_reopen(f);
    other.time_ms = t0 + KV_SESSION_TTL_MS + 60 * 1000;
    r = apply1(f, other);
    raftfs__kv_reply__free_unpacked(r, NULL);
    retry.time_ms = other.time_ms;
    r = apply1(f, retry);
    assert_int_equal(r->status, 0);
    raftfs__kv_reply__free_unpacked(r, NULL);
    assert_value(f, "log", "aa");
}

/* --- the applied index and malformed input --- */

static void test_applied_index_persists_and_counts_noop_and_conf(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(kv_sm_ops.applied(f->sm), 0);
    put(f, "a", "1");
    put(f, "b", "2");
    struct raft_entry e[2] = {
        {.term = 2, .index = 3, .type = RAFT_ENTRY_NOOP},
        {.term = 2, .index = 4, .type = RAFT_ENTRY_CONF},
    };
    struct rfs_buf replies[2];
    apply_entries_raw(f, e, 2, replies);
    assert_null(replies[0].base);
    assert_null(replies[1].base);
    assert_int_equal(kv_sm_ops.applied(f->sm), 4);

    fixture_reopen(f);
    assert_int_equal(kv_sm_ops.applied(f->sm), 4);
    assert_value(f, "b", "2");
}

static void test_malformed_command_replies_eproto_and_advances(void **state)
{
    struct fixture *f = *state;
    static unsigned char junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
    struct raft_entry e[2] = {
        {.term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL, .data = {junk, sizeof junk}},
        {.term = 1, .index = 2, .type = RAFT_ENTRY_NORMAL},
    };
    Raftfs__KvRequest unknown = req(99, "a", "b");
    e[1].data = pack(&unknown);
    struct rfs_buf replies[2];

    apply_entries_raw(f, e, 2, replies);
    for (int i = 0; i < 2; i++) {
        Raftfs__KvReply *r = unpack_reply(replies[i]);
        assert_int_equal(r->status, RFS_EPROTO);
        assert_true(strlen(r->error) > 0);
        raftfs__kv_reply__free_unpacked(r, NULL);
        rfs_free(replies[i].base);
    }
    free(e[1].data.base);
    assert_int_equal(kv_sm_ops.applied(f->sm), 2);

    /* A malformed query gets the same treatment. */
    struct rfs_buf reply;
    assert_int_equal(kv_sm_ops.query(f->sm, junk, sizeof junk, &reply, f->errmsg), 0);
    Raftfs__KvReply *r = unpack_reply(reply);
    assert_int_equal(r->status, RFS_EPROTO);
    raftfs__kv_reply__free_unpacked(r, NULL);
    rfs_free(reply.base);
}

static void test_too_big_key_or_value_replies_etoobig(void **state)
{
    struct fixture *f = *state;
    size_t big_key = (64u << 10) + 1, big_value = (16u << 20) + 1;
    char *buf = malloc(big_value + 1);
    memset(buf, 'x', big_value);

    buf[big_key] = '\0';
    Raftfs__KvReply *r = apply1(f, req(RAFTFS__KV_OP__KV_PUT, buf, "v"));
    assert_int_equal(r->status, RFS_ETOOBIG);
    raftfs__kv_reply__free_unpacked(r, NULL);
    buf[big_key] = 'x';

    buf[big_value] = '\0';
    r = apply1(f, req(RAFTFS__KV_OP__KV_PUT, "k", buf));
    assert_int_equal(r->status, RFS_ETOOBIG);
    raftfs__kv_reply__free_unpacked(r, NULL);

    /* An append that would grow past the limit is refused as well. */
    buf[big_value - 1] = '\0';
    r = apply1(f, req(RAFTFS__KV_OP__KV_PUT, "k", buf));
    assert_int_equal(r->status, 0);
    raftfs__kv_reply__free_unpacked(r, NULL);
    r = apply1(f, req(RAFTFS__KV_OP__KV_APPEND, "k", "yy"));
    assert_int_equal(r->status, RFS_ETOOBIG);
    raftfs__kv_reply__free_unpacked(r, NULL);
    free(buf);
    assert_int_equal(kv_sm_ops.applied(f->sm), 4);
}

/* --- snapshots --- */

/* Some state with data in several buckets, values large enough for blob files
 * (kv/blob.h) and a session. */
static void fill(struct fixture *f)
{
    char key[16], *big = malloc(70001);
    assert_non_null(big);
    for (unsigned i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "key%02u", i);
        put(f, key, key + 3);
    }
    for (unsigned i = 0; i < 3; i++) {
        for (unsigned j = 0; j < 70000; j++) {
            big[j] = (char)('a' + (i + j * 7) % 26);
        }
        big[70000] = '\0';
        snprintf(key, sizeof key, "big%u", i);
        put(f, key, big);
    }
    free(big);
    put(f, "{t}a", "tagged");
    Raftfs__KvReply *r = apply1(f, session_req(RAFTFS__KV_OP__KV_PUT, "s", "1", 77, 1));
    raftfs__kv_reply__free_unpacked(r, NULL);
}

static void assert_same_state(struct fixture *a, struct fixture *b)
{
    Raftfs__KvReply *x = scan(a, "", NULL, 0), *y = scan(b, "", NULL, 0);
    assert_int_equal(x->n_kvs, y->n_kvs);
    for (size_t i = 0; i < x->n_kvs; i++) {
        assert_int_equal(x->kvs[i]->key.len, y->kvs[i]->key.len);
        assert_memory_equal(x->kvs[i]->key.data, y->kvs[i]->key.data, x->kvs[i]->key.len);
        assert_int_equal(x->kvs[i]->value.len, y->kvs[i]->value.len);
        assert_memory_equal(x->kvs[i]->value.data, y->kvs[i]->value.data, x->kvs[i]->value.len);
        assert_int_equal(x->kvs[i]->version, y->kvs[i]->version);
    }
    raftfs__kv_reply__free_unpacked(x, NULL);
    raftfs__kv_reply__free_unpacked(y, NULL);
    assert_int_equal(kv_sm_ops.applied(a->sm), kv_sm_ops.applied(b->sm));
}

static void take_snapshot(struct fixture *f, struct rfs_buf *snap, raft_index *index)
{
    int rv = kv_sm_ops.snapshot(f->sm, snap, index, f->errmsg);
    if (rv != 0) {
        fail_msg("snapshot: %s", f->errmsg);
    }
}

static void test_snapshot_restores_into_fresh_directory(void **state)
{
    struct fixture *f = *state;
    struct fixture g = {.time_ms = 1000};
    struct rfs_buf snap;
    raft_index index;

    fill(f);
    take_snapshot(f, &snap, &index);
    assert_int_equal(index, kv_sm_ops.applied(f->sm));

    make_tmpdir(g.dir, sizeof g.dir);
    fixture_open(&g);
    put(&g, "only-in-g", "gone after restore");
    assert_int_equal(kv_sm_ops.restore(g.sm, index, snap.base, snap.len, g.errmsg), 0);
    g.index = kv_sm_ops.applied(g.sm);
    assert_same_state(f, &g);
    assert_value(&g, "only-in-g", NULL);
    {
        /* The large values were restored into blob files, not into LevelDB. */
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/db/blob-00000001", g.dir);
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size >= 3 * 70000);
    }
    assert_false(exists(g.dir, "db.new"));
    assert_false(exists(g.dir, "db.old"));
    assert_false(exists(g.dir, "db.new.done"));

    /* Sessions came along: a retry of client 77's seq 1 is recognised. */
    Raftfs__KvReply *r = apply1(&g, session_req(RAFTFS__KV_OP__KV_PUT, "s", "2", 77, 1));
    assert_int_equal(r->status, 0);
    raftfs__kv_reply__free_unpacked(r, NULL);
    assert_value(&g, "s", "1");

    /* And the restored state is durable. */
    fixture_reopen(&g);
    assert_int_equal(kv_sm_ops.applied(g.sm), index + 1);
    assert_value(&g, "{t}a", "tagged");

    rfs_free(snap.base);
    kv_sm_close(g.sm);
    rm_rf(g.dir);
}

static void expect_corrupt(struct fixture *f, raft_index index, const void *data, size_t len)
{
    int rv = kv_sm_ops.restore(f->sm, index, data, len, f->errmsg);
    assert_int_equal(rv, RFS_ECORRUPT);
    assert_true(strlen(f->errmsg) > 0);
}

static void test_restore_rejects_corrupt_snapshot_and_keeps_state(void **state)
{
    struct fixture *f = *state;
    struct rfs_buf snap;
    raft_index index;

    fill(f);
    take_snapshot(f, &snap, &index);
    put(f, "after", "snapshot");
    unsigned char *copy = malloc(snap.len);

    /* Flip one bit anywhere: header, record header, key, value. */
    size_t offsets[] = {0, 9, 13, 17, 25, 33, snap.len / 2, snap.len - 1};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        memcpy(copy, snap.base, snap.len);
        copy[offsets[i]] ^= 0x10;
        expect_corrupt(f, index, copy, snap.len);
    }
    /* Truncated anywhere, or with bytes after the end. */
    expect_corrupt(f, index, snap.base, snap.len - 1);
    expect_corrupt(f, index, snap.base, 31);
    expect_corrupt(f, index, snap.base, 0);
    /* Claimed at another index. */
    expect_corrupt(f, index + 1, snap.base, snap.len);

    /* The old state still answers, including what came after the snapshot. */
    assert_value(f, "after", "snapshot");
    assert_value(f, "key07", "07");
    assert_int_equal(kv_sm_ops.applied(f->sm), index + 1);
    assert_false(exists(f->dir, "db.new"));
    free(copy);
    rfs_free(snap.base);
}

/* Build a complete new database (the state of `src` restored) as dst/db.new. */
static void stage_db_new(struct fixture *src, const char *dst, raft_index *index)
{
    struct fixture tmp = {.time_ms = 1000};
    struct rfs_buf snap;

    take_snapshot(src, &snap, index);
    make_tmpdir(tmp.dir, sizeof tmp.dir);
    fixture_open(&tmp);
    assert_int_equal(kv_sm_ops.restore(tmp.sm, *index, snap.base, snap.len, tmp.errmsg), 0);
    kv_sm_close(tmp.sm);
    move(tmp.dir, "db", dst, "db.new");
    rm_rf(tmp.dir);
    rfs_free(snap.base);
}

enum crash_state {
    CRASH_INCOMPLETE,      /* db.new, no marker */
    CRASH_BEFORE_RENAMES,  /* marker, db, db.new */
    CRASH_BETWEEN_RENAMES, /* marker, db.old, db.new */
    CRASH_AFTER_RENAMES,   /* marker, db.old, db */
    CRASH_DURING_CLEANUP,  /* db.old, db, no marker */
};

static void crash_case(void **state, enum crash_state cs)
{
    struct fixture *f = *state;
    struct fixture src = {.time_ms = 1000};
    raft_index index;

    make_tmpdir(src.dir, sizeof src.dir);
    fixture_open(&src);
    fill(&src);
    put(f, "mine", "old state");
    stage_db_new(&src, f->dir, &index);

    kv_sm_close(f->sm);
    f->sm = NULL;
    switch (cs) {
        case CRASH_INCOMPLETE:
            break;
        case CRASH_BEFORE_RENAMES:
            touch(f->dir, "db.new.done");
            break;
        case CRASH_BETWEEN_RENAMES:
            touch(f->dir, "db.new.done");
            move(f->dir, "db", f->dir, "db.old");
            break;
        case CRASH_AFTER_RENAMES:
            touch(f->dir, "db.new.done");
            move(f->dir, "db", f->dir, "db.old");
            move(f->dir, "db.new", f->dir, "db");
            break;
        case CRASH_DURING_CLEANUP:
            move(f->dir, "db", f->dir, "db.old");
            move(f->dir, "db.new", f->dir, "db");
            break;
    }
    fixture_open(f);
    if (cs == CRASH_INCOMPLETE) {
        assert_value(f, "mine", "old state");
        assert_int_equal(kv_sm_ops.applied(f->sm), 1);
    } else {
        assert_same_state(&src, f);
        assert_value(f, "mine", NULL);
        assert_int_equal(kv_sm_ops.applied(f->sm), index);
    }
    assert_false(exists(f->dir, "db.new"));
    assert_false(exists(f->dir, "db.old"));
    assert_false(exists(f->dir, "db.new.done"));
    assert_true(exists(f->dir, "db"));

    kv_sm_close(src.sm);
    rm_rf(src.dir);
}

static void test_open_removes_incomplete_restore(void **state)
{
    crash_case(state, CRASH_INCOMPLETE);
}

static void test_open_finishes_restore_marked_done_before_renames(void **state)
{
    crash_case(state, CRASH_BEFORE_RENAMES);
}

static void test_open_finishes_restore_between_renames(void **state)
{
    crash_case(state, CRASH_BETWEEN_RENAMES);
}

static void test_open_finishes_restore_after_renames(void **state)
{
    crash_case(state, CRASH_AFTER_RENAMES);
}

static void test_open_removes_leftover_old_database(void **state)
{
    crash_case(state, CRASH_DURING_CLEANUP);
}

/* --- allocation failures --- */

static void test_allocation_failure_fails_apply_whole_and_leaves_state(void **state)
{
    struct fixture *f = *state;
    unsigned failures = 0;
    int rv = 0;

    put(f, "seed", "s"); /* version 1 */
    do {
        Raftfs__KvRequest a = session_req(RAFTFS__KV_OP__KV_APPEND, "log", "x", 5, 1);
        Raftfs__KvRequest p = req(RAFTFS__KV_OP__KV_PUT, "{t}k", "v");
        Raftfs__TxnRead tr = tread("seed", 1);
        Raftfs__TxnRead *reads[] = {&tr};
        Raftfs__TxnWrite tw = twrite("t", "w", 0);
        Raftfs__TxnWrite *writes[] = {&tw};
        Raftfs__KvRequest t = txn(reads, 1, writes, 1);
        Raftfs__KvRequest sc = req(RAFTFS__KV_OP__KV_SCAN, "", NULL);
        Raftfs__KvRequest g = req(RAFTFS__KV_OP__KV_GET, "log", NULL);
        Raftfs__KvRequest *batch[] = {&a, &p, &t, &sc, &g};
        struct raft_entry e[5];
        struct rfs_buf replies[5];

        for (unsigned i = 0; i < 5; i++) {
            batch[i]->time_ms = 2 * KV_SESSION_TTL_MS; /* a session sweep runs too */
            e[i] = (struct raft_entry){.term = 1,
                                       .index = f->index + 1 + i,
                                       .type = RAFT_ENTRY_NORMAL,
                                       .data = pack(batch[i])};
        }
        rfs_alloc_fail_after(failures + 1, 0);
        rv = kv_sm_ops.apply(f->sm, e, 5, replies, f->errmsg);
        rfs_alloc_fail_after(0, 0);
        if (rv == 0) {
            f->index += 5;
            for (unsigned i = 0; i < 5; i++) {
                Raftfs__KvReply *r = unpack_reply(replies[i]);
                assert_int_equal(r->status, 0);
                raftfs__kv_reply__free_unpacked(r, NULL);
                rfs_free(replies[i].base);
            }
        } else {
            assert_int_equal(rv, RFS_ENOMEM);
            for (unsigned i = 0; i < 5; i++) {
                assert_null(replies[i].base);
            }
            assert_int_equal(kv_sm_ops.applied(f->sm), f->index);
            failures++;
        }
        for (unsigned i = 0; i < 5; i++) {
            free(e[i].data.base);
        }
    } while (rv != 0);
    assert_true(failures > 10);
    assert_value(f, "log", "x");
    assert_value(f, "t", "w");

    /* Queries and snapshots report ENOMEM too, and leak nothing. */
    Raftfs__KvRequest sc = req(RAFTFS__KV_OP__KV_SCAN, "", NULL);
    struct rfs_buf cmd = pack(&sc), reply, snap;
    raft_index index;
    for (unsigned n = 1;; n++) {
        rfs_alloc_fail_after(n, 0);
        rv = kv_sm_ops.query(f->sm, cmd.base, cmd.len, &reply, f->errmsg);
        rfs_alloc_fail_after(0, 0);
        if (rv == 0) {
            rfs_free(reply.base);
            break;
        }
        assert_int_equal(rv, RFS_ENOMEM);
    }
    free(cmd.base);
    for (unsigned n = 1;; n++) {
        rfs_alloc_fail_after(n, 0);
        rv = kv_sm_ops.snapshot(f->sm, &snap, &index, f->errmsg);
        rfs_alloc_fail_after(0, 0);
        if (rv == 0) {
            rfs_free(snap.base);
            break;
        }
        assert_int_equal(rv, RFS_ENOMEM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_of_whole_key_is_zlib_crc32),
        cmocka_unit_test(test_bucket_of_hash_tag_routes_by_tag),
        cmocka_unit_test(test_bucket_of_empty_tag_uses_whole_key),
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_put_get_version_is_entry_index),
        T(test_append_creates_and_extends),
        T(test_delete_reports_found),
        T(test_cas_succeeds_on_match_and_conflicts_otherwise),
        T(test_txn_commits_all_writes_at_entry_index),
        T(test_txn_conflict_writes_nothing),
        T(test_scan_orders_limits_and_bounds),
        T(test_scan_merges_all_buckets_in_key_order),
        T(test_scan_with_hash_tag_reads_one_bucket),
        T(test_batch_later_entries_see_earlier_ones),
        T(test_get_and_scan_through_apply_match_query),
        T(test_query_refuses_writes),
        T(test_session_retry_returns_same_reply_and_applies_once),
        T(test_session_older_seq_is_stale),
        T(test_session_expires_after_ttl_of_log_time_not_before),
        T(test_applied_index_persists_and_counts_noop_and_conf),
        T(test_malformed_command_replies_eproto_and_advances),
        T(test_too_big_key_or_value_replies_etoobig),
        T(test_snapshot_restores_into_fresh_directory),
        T(test_restore_rejects_corrupt_snapshot_and_keeps_state),
        T(test_open_removes_incomplete_restore),
        T(test_open_finishes_restore_marked_done_before_renames),
        T(test_open_finishes_restore_between_renames),
        T(test_open_finishes_restore_after_renames),
        T(test_open_removes_leftover_old_database),
        T(test_allocation_failure_fails_apply_whole_and_leaves_state),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
