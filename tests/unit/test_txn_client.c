/* The client side of cross-group transactions against fake groups: what a routed client
 * sends when an operation meets a lock (kv/txn_resolve.c, kv/route.c), and the steps of the
 * two-phase-commit coordinator (kv/txn_client.c) on every answer a group can give.
 *
 * The groups are tests/unit/fake_groups.h's: a meta group and two shard groups in this
 * process. Each test installs a function that answers the groups' requests, and reads back
 * the log of every request each group received. Keys: "a" and "k" are in group 1's buckets,
 * "b" and "p" in group 2's. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/log.h"
#include "fake_groups.h"
#include "kv/client.h"
#include "kv/kv.h"
#include "proto/proto.h"

#define LOG_MAX 256

struct logged {
    unsigned gid;
    int op;
    uint64_t client_id;
    uint64_t seq;
    uint64_t txn_id;
    bool is_primary;
    uint32_t ttl_ms;
    uint64_t lock_deadline;
    char primary[32];
    char keys[64]; /* COMMIT/ABORT keys, or PREPARE/TXN writes then reads, comma-separated */
    uint8_t *raw;  /* the request as received */
    size_t raw_len;
};

struct fake;
/* Answer req at group gid into rep (status 0 and nothing else set by default); set *drop to
 * send no answer. Called with f->g.mu held. */
typedef void (*fake_answer_fn)(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                               Raftfs__KvReply *rep, bool *drop);

struct fake {
    struct fake_groups g;
    /* Protected by g.mu: */
    fake_answer_fn answer;
    unsigned pending_checks;
    bool k_locked;
    Raftfs__TxnState check_state;
    Raftfs__LockInfo lock; /* what ELOCKED answers carry */
    struct logged log[LOG_MAX];
    unsigned n_log;
};

struct fixture {
    struct fake f;
    struct kv_client *c;
};

/* ---- the fake ---- */

static void keys_text(char *out, size_t cap, const ProtobufCBinaryData *keys, size_t n)
{
    size_t used = strlen(out);
    for (size_t i = 0; i < n && used < cap; i++) {
        used += (size_t)snprintf(out + used, cap - used, "%s%.*s", used ? "," : "",
                                 (int)keys[i].len, (const char *)keys[i].data);
    }
}

/* Locked. */
static void fake_log(struct fake *f, unsigned gid, const Raftfs__KvRequest *req, const void *raw,
                     size_t len)
{
    struct logged *l;
    if (f->n_log == LOG_MAX) {
        return;
    }
    l = &f->log[f->n_log++];
    memset(l, 0, sizeof *l);
    l->gid = gid;
    l->op = (int)req->op;
    l->client_id = req->client_id;
    l->seq = req->seq;
    l->txn_id = req->txn_id;
    l->is_primary = req->is_primary;
    l->ttl_ms = req->ttl_ms;
    l->lock_deadline = req->lock_deadline;
    snprintf(l->primary, sizeof l->primary, "%.*s", (int)req->primary.len,
             (const char *)req->primary.data);
    keys_text(l->keys, sizeof l->keys, req->keys, req->n_keys);
    for (size_t i = 0; i < req->n_writes; i++) {
        keys_text(l->keys, sizeof l->keys, &req->writes[i]->key, 1);
    }
    for (size_t i = 0; i < req->n_reads; i++) {
        keys_text(l->keys, sizeof l->keys, &req->reads[i]->key, 1);
    }
    l->raw = malloc(len ? len : 1);
    assert_non_null(l->raw);
    memcpy(l->raw, raw, len);
    l->raw_len = len;
}

/* Locked: every group request is logged, then answered as the test installed. */
static void fake_answer(struct fake_groups *g, unsigned gid, const Raftfs__KvRequest *req,
                        const void *raw, size_t raw_len, Raftfs__KvReply *rep, bool *drop)
{
    struct fake *f = g->data;
    fake_log(f, gid, req, raw, raw_len);
    if (f->answer != NULL) {
        f->answer(f, gid, req, rep, drop);
    }
}

static uint32_t bucket(const char *key)
{
    return kv_bucket_of(key, strlen(key), FAKE_GROUPS_NBUCKETS);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE];
    *state = fx;
    if (fake_groups_init(&f->g, fake_answer, f, errmsg) != 0) {
        fprintf(stderr, "fake groups: %s\n", errmsg);
        return -1;
    }
    /* a and k on group 1, b and p on group 2. */
    fake_groups_set_all(&f->g, 1, 1);
    pthread_mutex_lock(&f->g.mu);
    f->g.buckets[bucket("b")] = 2;
    f->g.buckets[bucket("p")] = 2;
    pthread_mutex_unlock(&f->g.mu);
    if (f->g.buckets[bucket("a")] != 1 || f->g.buckets[bucket("k")] != 1) {
        fprintf(stderr, "keys a and k share a bucket with b or p\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    kv_client_free(fx->c);
    fake_groups_close(&f->g);
    for (unsigned i = 0; i < f->n_log; i++) {
        free(f->log[i].raw);
    }
    free(fx);
    return 0;
}

static struct kv_client *routed(struct fixture *fx, unsigned timeout_ms, enum kv_txn_crash crash)
{
    fx->c = fake_groups_client(&fx->f.g, timeout_ms, crash);
    return fx->c;
}

static void set_answer(struct fake *f, fake_answer_fn fn)
{
    pthread_mutex_lock(&f->g.mu);
    f->answer = fn;
    pthread_mutex_unlock(&f->g.mu);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The log as "g1 GET k | g2 CHECK p | ..." (op names short), for one assertion per test. */
static const char *op_name(int op)
{
    switch (op) {
        case RAFTFS__KV_OP__KV_GET:
            return "GET";
        case RAFTFS__KV_OP__KV_PUT:
            return "PUT";
        case RAFTFS__KV_OP__KV_TXN:
            return "TXN";
        case RAFTFS__KV_OP__KV_TXN_PREPARE:
            return "PREPARE";
        case RAFTFS__KV_OP__KV_TXN_COMMIT:
            return "COMMIT";
        case RAFTFS__KV_OP__KV_TXN_ABORT:
            return "ABORT";
        case RAFTFS__KV_OP__KV_TXN_CHECK:
            return "CHECK";
        default:
            return "?";
    }
}

static void trace(struct fake *f, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    pthread_mutex_lock(&f->g.mu);
    for (unsigned i = 0; i < f->n_log && used < cap; i++) {
        const struct logged *l = &f->log[i];
        used += (size_t)snprintf(
            out + used, cap - used, "%sg%u %s%s %s", i ? " | " : "", l->gid, op_name(l->op),
            (l->op == RAFTFS__KV_OP__KV_TXN_COMMIT || l->op == RAFTFS__KV_OP__KV_TXN_ABORT) &&
                    l->is_primary
                ? "*"
                : "",
            l->op == RAFTFS__KV_OP__KV_TXN_CHECK ? l->primary : l->keys);
    }
    pthread_mutex_unlock(&f->g.mu);
}

#define assert_trace(f, expected)                                                                  \
    do {                                                                                           \
        char got_[4096];                                                                           \
        trace((f), got_, sizeof got_);                                                             \
        if (strcmp(got_, (expected)) != 0) {                                                       \
            fail_msg("trace\n  got:      %s\n  expected: %s", got_, (expected));                   \
        }                                                                                          \
    } while (0)

/* The trace is `first`, then `first` again any number of times up to 10 (resent before the
 * rate-limited refresh of the configuration shows the move: kv/route.c), then `rest`. */
static void assert_trace_resent(struct fake *f, const char *first, const char *rest)
{
    char got[4096], want[4096];
    trace(f, got, sizeof got);
    for (unsigned n = 1; n <= 10; n++) {
        size_t used = 0;
        for (unsigned i = 0; i < n; i++) {
            used += (size_t)snprintf(want + used, sizeof want - used, "%s | ", first);
        }
        snprintf(want + used, sizeof want - used, "%s", rest);
        if (strcmp(got, want) == 0) {
            return;
        }
    }
    fail_msg("trace\n  got:      %s\n  expected: (%s | )x1..10 %s", got, first, rest);
}

/* Locked: the lock on key (of transaction 7, primary p, deadline 1234) in an ELOCKED reply. */
static void locked(struct fake *f, Raftfs__KvReply *rep, const char *key)
{
    raftfs__lock_info__init(&f->lock);
    f->lock.key.data = (uint8_t *)key;
    f->lock.key.len = strlen(key);
    f->lock.txn_id = 7;
    f->lock.primary.data = (uint8_t *)"p";
    f->lock.primary.len = 1;
    f->lock.deadline_ms = 1234;
    rep->status = RFS_ELOCKED;
    rep->error = "locked";
    rep->lock = &f->lock;
}

/* ---- meeting a lock ---- */

/* The key is locked until a COMMIT or ABORT of it arrives; CHECK answers f->pending_checks
 * PENDINGs, then f->check_state. */
static void lock_script(struct fake *f, Raftfs__TxnState state, unsigned pending_checks)
{
    pthread_mutex_lock(&f->g.mu);
    f->k_locked = true;
    f->check_state = state;
    f->pending_checks = pending_checks;
    pthread_mutex_unlock(&f->g.mu);
}

static void answer_lock_on_k(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                             Raftfs__KvReply *rep, bool *drop)
{
    (void)drop;
    switch (req->op) {
        case RAFTFS__KV_OP__KV_GET:
        case RAFTFS__KV_OP__KV_PUT:
            assert_int_equal(gid, 1);
            if (f->k_locked) {
                locked(f, rep, "k");
            } else {
                rep->found = true;
                rep->version = 42;
                rep->value.data = (uint8_t *)"v";
                rep->value.len = 1;
            }
            break;
        case RAFTFS__KV_OP__KV_TXN_CHECK:
            assert_int_equal(gid, 2);
            if (f->pending_checks > 0) {
                f->pending_checks--;
                rep->txn_state = RAFTFS__TXN_STATE__TXN_PENDING;
            } else {
                rep->txn_state = f->check_state;
            }
            break;
        case RAFTFS__KV_OP__KV_TXN_COMMIT:
        case RAFTFS__KV_OP__KV_TXN_ABORT:
            assert_int_equal(gid, 1);
            f->k_locked = false;
            break;
        default:
            rep->status = RFS_EPROTO;
    }
}

static void test_get_meeting_committed_lock_rolls_it_forward_and_resends(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    struct kv_client_value v;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    lock_script(f, RAFTFS__TXN_STATE__TXN_COMMITTED, 0);
    set_answer(f, answer_lock_on_k);
    routed(fx, 5000, KV_TXN_CRASH_NONE);

    assert_int_equal(kv_client_get(fx->c, "k", 1, &v, errmsg), 0);
    assert_true(v.found);
    assert_int_equal(v.version, 42);
    kv_client_value_clear(&v);
    assert_trace(f, "g1 GET  | g2 CHECK p | g1 COMMIT k | g1 GET ");
    pthread_mutex_lock(&f->g.mu);
    /* The check names the lock met; settling it carries no session. */
    assert_int_equal(f->log[1].txn_id, 7);
    assert_int_equal(f->log[1].lock_deadline, 1234);
    assert_int_equal(f->log[1].client_id, 0);
    assert_int_equal(f->log[2].txn_id, 7);
    assert_false(f->log[2].is_primary);
    assert_int_equal(f->log[2].client_id, 0);
    /* The resent request is the original, byte for byte. */
    assert_int_equal(f->log[3].raw_len, f->log[0].raw_len);
    assert_memory_equal(f->log[3].raw, f->log[0].raw, f->log[0].raw_len);
    pthread_mutex_unlock(&f->g.mu);
}

static void test_put_meeting_aborted_lock_rolls_it_back_and_resends_same_session(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    lock_script(f, RAFTFS__TXN_STATE__TXN_ABORTED, 0);
    set_answer(f, answer_lock_on_k);
    routed(fx, 5000, KV_TXN_CRASH_NONE);

    assert_int_equal(kv_client_put(fx->c, "k", 1, "x", 1, NULL, errmsg), 0);
    assert_trace(f, "g1 PUT  | g2 CHECK p | g1 ABORT k | g1 PUT ");
    pthread_mutex_lock(&f->g.mu);
    assert_int_not_equal(f->log[0].client_id, 0);
    assert_int_equal(f->log[3].client_id, f->log[0].client_id);
    assert_int_equal(f->log[3].seq, f->log[0].seq);
    assert_int_equal(f->log[3].raw_len, f->log[0].raw_len);
    assert_memory_equal(f->log[3].raw, f->log[0].raw, f->log[0].raw_len);
    pthread_mutex_unlock(&f->g.mu);
}

static void test_pending_lock_is_waited_for_until_settled(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    struct kv_client_value v;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    lock_script(f, RAFTFS__TXN_STATE__TXN_COMMITTED, 3);
    set_answer(f, answer_lock_on_k);
    routed(fx, 5000, KV_TXN_CRASH_NONE);

    assert_int_equal(kv_client_get(fx->c, "k", 1, &v, errmsg), 0);
    kv_client_value_clear(&v);
    assert_trace(f, "g1 GET  | g2 CHECK p | g1 GET  | g2 CHECK p | g1 GET  | g2 CHECK p | "
                    "g1 GET  | g2 CHECK p | g1 COMMIT k | g1 GET ");
}

static void test_lock_pending_past_the_timeout_returns_locked_naming_it(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    struct kv_client_value v;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    uint64_t t0;
    uint64_t took;
    unsigned gets = 0;

    lock_script(f, RAFTFS__TXN_STATE__TXN_COMMITTED, 1000000);
    set_answer(f, answer_lock_on_k);
    routed(fx, 400, KV_TXN_CRASH_NONE);

    t0 = now_ms();
    assert_int_equal(kv_client_get(fx->c, "k", 1, &v, errmsg), RFS_ELOCKED);
    took = now_ms() - t0;
    assert_non_null(strstr(errmsg, "key 'k' is locked by transaction 0000000000000007"));
    assert_non_null(strstr(errmsg, "primary key 'p'"));
    assert_non_null(strstr(errmsg, "pending"));
    pthread_mutex_lock(&f->g.mu);
    for (unsigned i = 0; i < f->n_log; i++) {
        gets += f->log[i].op == RAFTFS__KV_OP__KV_GET;
    }
    pthread_mutex_unlock(&f->g.mu);
    /* Waits of 5, 10, 20, 40, 80, 100, 100 ms fit in 400 ms: a handful of resends, no more. */
    printf("gave up after %llu ms and %u gets\n", (unsigned long long)took, gets);
    assert_true(took >= 250 && took < 1500);
    assert_true(gets >= 4 && gets <= 10);
}

/* ---- the coordinator ---- */

/* Every group answers every transaction op with success. */
static void answer_ok(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                      Raftfs__KvReply *rep, bool *drop)
{
    (void)f, (void)gid, (void)req, (void)rep, (void)drop;
}

static const struct kv_txn_write ab_writes[2] = {
    {.key = "a", .klen = 1, .value = "1", .vlen = 1},
    {.key = "b", .klen = 1, .value = "2", .vlen = 1},
};
static const struct kv_txn_read ab_reads[2] = {{"a", 1, 10}, {"b", 1, 0}};

static void test_two_groups_prepare_primary_first_then_commit(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    set_answer(f, answer_ok);
    routed(fx, 5000, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, ab_reads, 2, ab_writes, 2, errmsg), 0);
    assert_trace(f, "g1 PREPARE a,a | g2 PREPARE b,b | g1 COMMIT* a | g2 COMMIT b");
    pthread_mutex_lock(&f->g.mu);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(f->log[i].client_id, 0);
        assert_int_equal(f->log[i].txn_id, f->log[0].txn_id);
        assert_string_equal(f->log[i].primary, "a");
    }
    assert_int_not_equal(f->log[0].txn_id, 0);
    assert_int_equal(f->log[0].ttl_ms, KV_TXN_TTL_MS);
    pthread_mutex_unlock(&f->g.mu);
}

static void test_one_group_is_a_single_request(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    struct kv_txn_write w[2] = {{.key = "a", .klen = 1}, {.key = "k", .klen = 1}};

    set_answer(f, answer_ok);
    routed(fx, 5000, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, NULL, 0, w, 2, errmsg), 0);
    assert_trace(f, "g1 TXN a,k");
}

/* Group 1 refuses the single request: b's bucket moved to group 2 meanwhile. */
static void answer_txn_then_moved(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                                  Raftfs__KvReply *rep, bool *drop)
{
    (void)gid, (void)drop;
    if (req->op == RAFTFS__KV_OP__KV_TXN) {
        f->g.buckets[bucket("b")] = 2;
        f->g.version++;
        rep->status = RFS_EWRONGGROUP;
    }
}

static void test_one_group_request_whose_keys_moved_apart_goes_two_phase(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    pthread_mutex_lock(&f->g.mu);
    f->g.buckets[bucket("b")] = 1;
    pthread_mutex_unlock(&f->g.mu);
    set_answer(f, answer_txn_then_moved);
    routed(fx, 5000, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, NULL, 0, ab_writes, 2, errmsg), 0);
    assert_trace_resent(f, "g1 TXN a,b",
                        "g1 PREPARE a | g2 PREPARE b | g1 COMMIT* a | g2 COMMIT b");
}

/* Group 2 finds b's version changed. */
static void answer_conflict_at_2(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                                 Raftfs__KvReply *rep, bool *drop)
{
    (void)f, (void)drop;
    if (req->op == RAFTFS__KV_OP__KV_TXN_PREPARE && gid == 2) {
        rep->status = RFS_ECONFLICT;
        rep->conflict_key.data = (uint8_t *)"b";
        rep->conflict_key.len = 1;
    }
}

static void test_prepare_conflict_aborts_primary_group_first(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    set_answer(f, answer_conflict_at_2);
    routed(fx, 5000, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, ab_reads, 2, ab_writes, 2, errmsg), RFS_ECONFLICT);
    assert_string_equal(errmsg, "conflict on key b");
    assert_trace(f, "g1 PREPARE a,a | g2 PREPARE b,b | g1 ABORT* a | g2 ABORT b");
}

/* Group 1 (the primary's) finds a's version changed. */
static void answer_conflict_at_1(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                                 Raftfs__KvReply *rep, bool *drop)
{
    (void)f, (void)drop;
    if (req->op == RAFTFS__KV_OP__KV_TXN_PREPARE && gid == 1) {
        rep->status = RFS_ECONFLICT;
        rep->conflict_key.data = (uint8_t *)"a";
        rep->conflict_key.len = 1;
    }
}

static void test_conflict_at_the_primary_group_sends_nothing_more(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    set_answer(f, answer_conflict_at_1);
    routed(fx, 5000, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, ab_reads, 2, ab_writes, 2, errmsg), RFS_ECONFLICT);
    assert_string_equal(errmsg, "conflict on key a");
    assert_trace(f, "g1 PREPARE a,a");
}

/* Group 2's b is locked by transaction 7 (primary p, on group 2): CHECK says f->check_state;
 * settling it unlocks b. */
static void answer_b_locked(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                            Raftfs__KvReply *rep, bool *drop)
{
    (void)drop;
    if (req->op == RAFTFS__KV_OP__KV_TXN_PREPARE && gid == 2 && f->k_locked) {
        locked(f, rep, "b");
    } else if (req->op == RAFTFS__KV_OP__KV_TXN_CHECK) {
        assert_int_equal(req->txn_id, 7);
        rep->txn_state = f->check_state;
    } else if (req->txn_id == 7) {
        f->k_locked = false; /* the other transaction's key settled */
    }
}

static void test_prepare_meeting_a_live_lock_gives_up_with_conflict(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    lock_script(f, RAFTFS__TXN_STATE__TXN_PENDING, 0);
    set_answer(f, answer_b_locked);
    routed(fx, 5000, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, NULL, 0, ab_writes, 2, errmsg), RFS_ECONFLICT);
    assert_non_null(strstr(errmsg, "conflict on key b"));
    assert_non_null(strstr(errmsg, "0000000000000007"));
    assert_trace(f, "g1 PREPARE a | g2 PREPARE b | g2 CHECK p | g1 ABORT* a | g2 ABORT b");
}

static void test_prepare_meeting_an_expired_lock_settles_it_and_goes_on(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    /* The check aborts it: its time was up. */
    lock_script(f, RAFTFS__TXN_STATE__TXN_ABORTED, 0);
    set_answer(f, answer_b_locked);
    routed(fx, 5000, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, NULL, 0, ab_writes, 2, errmsg), 0);
    assert_trace(f, "g1 PREPARE a | g2 PREPARE b | g2 CHECK p | g2 ABORT b | g2 PREPARE b | "
                    "g1 COMMIT* a | g2 COMMIT b");
}

/* The primary commit finds the record aborted (a reader aborted it after its ttl). */
static void answer_commit_aborted(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                                  Raftfs__KvReply *rep, bool *drop)
{
    (void)f, (void)gid, (void)drop;
    if (req->op == RAFTFS__KV_OP__KV_TXN_COMMIT && req->is_primary) {
        rep->status = RFS_ECONFLICT;
        rep->txn_state = RAFTFS__TXN_STATE__TXN_ABORTED;
    }
}

static void test_primary_commit_finding_it_aborted_rolls_back_the_others(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    set_answer(f, answer_commit_aborted);
    routed(fx, 5000, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, NULL, 0, ab_writes, 2, errmsg), RFS_ECONFLICT);
    assert_non_null(strstr(errmsg, "transaction aborted: its locks expired before it committed"));
    assert_trace(f, "g1 PREPARE a | g2 PREPARE b | g1 COMMIT* a | g1 ABORT* a | g2 ABORT b");
}

/* The primary commit gets no answer. */
static void answer_commit_lost(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                               Raftfs__KvReply *rep, bool *drop)
{
    (void)f, (void)gid, (void)rep;
    *drop = req->op == RAFTFS__KV_OP__KV_TXN_COMMIT && req->is_primary;
}

static void test_primary_commit_without_answer_is_outcome_unknown(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    unsigned commits = 0;

    set_answer(f, answer_commit_lost);
    routed(fx, 900, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, NULL, 0, ab_writes, 2, errmsg), RFS_ETIMEDOUT);
    assert_non_null(strstr(errmsg, "outcome unknown"));
    pthread_mutex_lock(&f->g.mu);
    for (unsigned i = 0; i < f->n_log; i++) {
        commits += f->log[i].op == RAFTFS__KV_OP__KV_TXN_COMMIT;
        /* Never aborted: it may have committed. */
        assert_int_not_equal(f->log[i].op, RAFTFS__KV_OP__KV_TXN_ABORT);
    }
    pthread_mutex_unlock(&f->g.mu);
    assert_true(commits >= 2); /* resent */
}

/* A secondary group refuses its commit: the transaction is committed all the same. */
static void answer_secondary_fails(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                                   Raftfs__KvReply *rep, bool *drop)
{
    (void)f, (void)drop;
    if (req->op == RAFTFS__KV_OP__KV_TXN_COMMIT && gid == 2) {
        /* A definite refusal (RFS_EIO or RFS_ECORRUPT would be retried at another server:
         * they mean that server's storage failed). */
        rep->status = RFS_EINVAL;
    }
}

static void test_secondary_commit_failing_still_returns_committed(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    set_answer(f, answer_secondary_fails);
    routed(fx, 5000, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, NULL, 0, ab_writes, 2, errmsg), 0);
    assert_trace(f, "g1 PREPARE a | g2 PREPARE b | g1 COMMIT* a | g2 COMMIT b");
}

/* Group 2 refuses the first prepare: b's bucket has just moved to group 1. */
static void answer_b_moves_to_1(struct fake *f, unsigned gid, const Raftfs__KvRequest *req,
                                Raftfs__KvReply *rep, bool *drop)
{
    (void)drop;
    if (gid == 2 && req->op == RAFTFS__KV_OP__KV_TXN_PREPARE) {
        f->g.buckets[bucket("b")] = 1;
        f->g.version++;
        rep->status = RFS_EWRONGGROUP;
    }
}

static void test_bucket_moving_during_prepare_is_followed(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";

    set_answer(f, answer_b_moves_to_1);
    routed(fx, 5000, KV_TXN_CRASH_NONE);
    assert_int_equal(kv_client_txn(fx->c, NULL, 0, ab_writes, 2, errmsg), 0);
    /* Grouped again: both keys at group 1, prepared (again) and committed there. */
    assert_trace_resent(f, "g1 PREPARE a | g2 PREPARE b", "g1 PREPARE a,b | g1 COMMIT* a,b");
}

/* The crash hook stops the coordinator between two steps, leaving what it did. */
static void crash_case(struct fixture *fx, enum kv_txn_crash crash, const char *expected)
{
    struct fake *f = &fx->f;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    set_answer(f, answer_ok);
    routed(fx, 5000, crash);
    assert_int_equal(kv_client_txn(fx->c, NULL, 0, ab_writes, 2, errmsg), RFS_ESTOPPED);
    assert_non_null(strstr(errmsg, "test hook"));
    assert_trace(f, expected);
}

static void test_crash_after_primary_prepare(void **state)
{
    crash_case(*state, KV_TXN_CRASH_AFTER_PRIMARY_PREPARE, "g1 PREPARE a");
}

static void test_crash_after_prepares(void **state)
{
    crash_case(*state, KV_TXN_CRASH_AFTER_PREPARES, "g1 PREPARE a | g2 PREPARE b");
}

static void test_crash_after_primary_commit(void **state)
{
    crash_case(*state, KV_TXN_CRASH_AFTER_PRIMARY_COMMIT,
               "g1 PREPARE a | g2 PREPARE b | g1 COMMIT* a");
}

static void test_crash_after_secondary_commit(void **state)
{
    crash_case(*state, KV_TXN_CRASH_AFTER_SECONDARY_COMMIT,
               "g1 PREPARE a | g2 PREPARE b | g1 COMMIT* a | g2 COMMIT b");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_get_meeting_committed_lock_rolls_it_forward_and_resends),
        T(test_put_meeting_aborted_lock_rolls_it_back_and_resends_same_session),
        T(test_pending_lock_is_waited_for_until_settled),
        T(test_lock_pending_past_the_timeout_returns_locked_naming_it),
        T(test_two_groups_prepare_primary_first_then_commit),
        T(test_one_group_is_a_single_request),
        T(test_one_group_request_whose_keys_moved_apart_goes_two_phase),
        T(test_prepare_conflict_aborts_primary_group_first),
        T(test_conflict_at_the_primary_group_sends_nothing_more),
        T(test_prepare_meeting_a_live_lock_gives_up_with_conflict),
        T(test_prepare_meeting_an_expired_lock_settles_it_and_goes_on),
        T(test_primary_commit_finding_it_aborted_rolls_back_the_others),
        T(test_primary_commit_without_answer_is_outcome_unknown),
        T(test_secondary_commit_failing_still_returns_committed),
        T(test_bucket_moving_during_prepare_is_followed),
        T(test_crash_after_primary_prepare),
        T(test_crash_after_prepares),
        T(test_crash_after_primary_commit),
        T(test_crash_after_secondary_commit),
    };
#undef T
    rfs_log_set_level(RFS_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
