/* Cross-group transactions with real processes on 127.0.0.1 (a meta group of one server and
 * two shard groups), driven through routed clients (kv/txn_client.c, docs/txn.md).
 *
 * The bank test (after Jepsen's): N accounts spread over both groups start at 100 each.
 * Transfer threads read two balances and move money between them in a transaction that
 * checks the versions read; reader threads read every account and commit a read-only
 * transaction over all of them with the versions seen, which succeeds only if those reads
 * were one consistent snapshot: its sum must then be exactly N * 100. Run plain, with the
 * groups' links dropping messages, with leaders killed, and with buckets moving between the
 * groups. Afterwards the sum is N * 100 and no account is left locked.
 *
 * Then: a coordinator that dies between each pair of steps (the txn_crash_after hook) leaves
 * locks that the next readers settle, so that the transfer happened entirely or not at all;
 * two transactions on the same keys, at once, of which one commits; and raftfs kv txn. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "common/log.h"
#include "kv/client.h"
#include "kv/kv.h"
#include "meta/client.h"
#include "meta/meta.h"
#include "proto/raftfs.pb-c.h"
#include "tests/lib/cluster.h"
#include "tests/lib/sharded.h"

#define NBUCKETS       64
#define N_ACCTS        8
#define INITIAL        100
#define LEADER_WAIT_MS 15000
#define SETTLE_MS      30000
#define RUN_MS         6000
#define OP_TIMEOUT_MS  8000
#define TRANSFERRERS   2
#define READERS        2
/* Buckets [0, MOVING_LAST] move between the groups in the moving variant; [0, 31] start on
 * group 1 and [32, 63] on group 2. */
#define MOVING_LAST 15

struct fixture {
    bool skipped;
    struct sharded s;
    struct kv_client *rc; /* routed */
    char acct[N_ACCTS][16];
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A client: routed (list is the meta group) or of one group gid. */
static struct kv_client *client_new(const char *list, uint64_t gid, bool routed, unsigned ttl_ms,
                                    enum kv_txn_crash crash)
{
    struct kv_client_options o;
    struct kv_client *c = NULL;
    char buf[512], errmsg[RFS_ERRMSG_SIZE];
    memset(&o, 0, sizeof o);
    snprintf(buf, sizeof buf, "%s", list);
    if ((routed ? kv_client_parse_meta(buf, &o, errmsg)
                : kv_client_parse_servers(buf, &o, errmsg)) != 0) {
        fail_msg("client: %s", errmsg);
    }
    o.group_id = gid;
    o.timeout_ms = OP_TIMEOUT_MS;
    o.attempt_ms = 300;
    o.txn_ttl_ms = ttl_ms;
    o.txn_crash_after = crash;
    if (kv_client_new(&c, &o, errmsg) != 0) {
        fail_msg("client: %s", errmsg);
    }
    return c;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char why[256], errmsg[RFS_ERRMSG_SIZE];
    *state = f;
    if (!cluster_bins_present(why, sizeof why)) {
        f->skipped = true;
        printf("SKIPPED: %s\n", why);
        return 0;
    }
    if (sharded_start(&f->s, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int bad;
    kv_client_free(f->rc);
    bad = sharded_destroy(&f->s);
    free(f);
    return bad == 0 ? 0 : -1;
}

#define SKIP_IF_NEEDED(f)                                                                          \
    do {                                                                                           \
        if ((f)->skipped) {                                                                        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- the cluster ---- */

/* Wait until both groups have applied the latest configuration with no bucket in flight. */
static void wait_settled(struct fixture *f)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (sharded_wait_settled(&f->s, SETTLE_MS, errmsg) != 0) {
        fail_msg("%s", errmsg);
    }
}

static void move(struct fixture *f, uint32_t first, uint32_t last, uint64_t gid)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (sharded_move(&f->s, first, last, gid, errmsg) != 0) {
        fail_msg("move %u-%u %llu: %s", first, last, (unsigned long long)gid, errmsg);
    }
}

/* Accounts named so that two are in buckets [0, MOVING_LAST], two in (MOVING_LAST, 31] and
 * four in [32, 63]. */
static void name_accounts(struct fixture *f)
{
    unsigned want[3] = {2, 2, 4}, have[3] = {0, 0, 0}, n = 0;
    for (unsigned i = 0; n < N_ACCTS && i < 10000; i++) {
        char name[16];
        uint32_t b;
        unsigned range;
        snprintf(name, sizeof name, "acct%u", i);
        b = kv_bucket_of(name, strlen(name), NBUCKETS);
        range = b <= MOVING_LAST ? 0 : b < 32 ? 1 : 2;
        if (have[range] < want[range]) {
            have[range]++;
            snprintf(f->acct[n++], sizeof f->acct[0], "%s", name);
        }
    }
    assert_int_equal(n, N_ACCTS);
}

/* Start both groups (n servers each), join them with buckets [0, 31] on group 1 and the
 * rest on group 2, and put every account at INITIAL. */
static void bank_open(struct fixture *f, unsigned n, bool proxied)
{
    char errmsg[RFS_ERRMSG_SIZE];
    unsigned on[3] = {0, 0, 0};
    f->rc = client_new(f->s.meta.group, 0, true, 0, KV_TXN_CRASH_NONE);
    for (uint64_t gid = 1; gid <= 2; gid++) {
        if (sharded_start_group(&f->s, gid, n, proxied, NULL, errmsg) != 0 ||
            sharded_join(&f->s, gid, errmsg) != 0) {
            fail_msg("group %llu: %s", (unsigned long long)gid, errmsg);
        }
    }
    move(f, 0, 31, 1);
    move(f, 32, NBUCKETS - 1, 2);
    wait_settled(f);
    name_accounts(f);
    for (unsigned i = 0; i < N_ACCTS; i++) {
        uint32_t bucket;
        uint64_t gid, version;
        char val[16];
        snprintf(val, sizeof val, "%d", INITIAL);
        if (kv_client_put(f->rc, f->acct[i], strlen(f->acct[i]), val, strlen(val), NULL, errmsg) !=
            0) {
            fail_msg("put %s: %s", f->acct[i], errmsg);
        }
        assert_int_equal(kv_client_locate(f->rc, f->acct[i], strlen(f->acct[i]), &bucket, &gid,
                                          &version, errmsg),
                         0);
        assert_true(gid == 1 || gid == 2);
        on[gid]++;
    }
    printf("accounts: %u on group 1, %u on group 2\n", on[1], on[2]);
    assert_true(on[1] > 0 && on[2] > 0);
}

/* A balance: 0 with *bal and *version, or the error. */
static int read_balance(struct kv_client *c, const char *key, long *bal, uint64_t *version,
                        char *errmsg)
{
    struct kv_client_value v;
    char buf[32];
    int rv = kv_client_get(c, key, strlen(key), &v, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (!v.found || v.value.len == 0 || v.value.len >= sizeof buf) {
        snprintf(errmsg, RFS_ERRMSG_SIZE, "account %s: %s", key, v.found ? "bad value" : "gone");
        kv_client_value_clear(&v);
        return RFS_ECORRUPT;
    }
    memcpy(buf, v.value.base, v.value.len);
    buf[v.value.len] = '\0';
    *bal = strtol(buf, NULL, 10);
    *version = v.version;
    kv_client_value_clear(&v);
    return 0;
}

/* Every balance by routed gets (which settle locks): their sum. */
static long read_all(struct fixture *f, struct kv_client *c, long *bal)
{
    long sum = 0;
    for (unsigned i = 0; i < N_ACCTS; i++) {
        char errmsg[RFS_ERRMSG_SIZE] = "";
        uint64_t version;
        int rv = read_balance(c, f->acct[i], &bal[i], &version, errmsg);
        if (rv != 0) {
            fail_msg("read %s: %s (%s)", f->acct[i], errmsg, rfs_strerror(rv));
        }
        sum += bal[i];
    }
    return sum;
}

/* No account is locked: a get straight to the group serving it is not refused. */
static void assert_no_locks(struct fixture *f)
{
    for (unsigned i = 0; i < N_ACCTS; i++) {
        char errmsg[RFS_ERRMSG_SIZE] = "";
        struct kv_client_value v;
        uint32_t bucket;
        uint64_t gid, version;
        struct kv_client *c;
        int rv;
        assert_int_equal(kv_client_locate(f->rc, f->acct[i], strlen(f->acct[i]), &bucket, &gid,
                                          &version, errmsg),
                         0);
        c = client_new(f->s.g[gid - 1].group, gid, false, 0, KV_TXN_CRASH_NONE);
        rv = kv_client_get(c, f->acct[i], strlen(f->acct[i]), &v, errmsg);
        kv_client_free(c);
        if (rv != 0) {
            fail_msg("%s at group %llu: %s (%s)", f->acct[i], (unsigned long long)gid,
                     rfs_strerror(rv), errmsg);
        }
        kv_client_value_clear(&v);
    }
}

/* ---- the bank workload ---- */

struct bank {
    struct fixture *f;
    atomic_bool stop;
    atomic_ulong transfers; /* committed */
    atomic_ulong conflicts;
    atomic_ulong unknown;   /* outcome unknown (timeout) */
    atomic_ulong failed;    /* other errors (reads timing out, ...) */
    atomic_ulong snapshots; /* read-only transactions committed */
    atomic_ulong snapshot_conflicts;
    pthread_mutex_t mu; /* protects the strings */
    bool violation;
    char violation_msg[512];
    char last_error[RFS_ERRMSG_SIZE];
};

struct bank_worker {
    struct bank *b;
    unsigned index;
    pthread_t thread;
};

static void bank_error(struct bank *b, int rv, const char *errmsg)
{
    pthread_mutex_lock(&b->mu);
    snprintf(b->last_error, sizeof b->last_error, "%s: %s", rfs_strerror(rv), errmsg);
    pthread_mutex_unlock(&b->mu);
}

static void *transfer_main(void *data)
{
    struct bank_worker *w = data;
    struct bank *b = w->b;
    struct fixture *f = b->f;
    struct kv_client *c = client_new(f->s.meta.group, 0, true, 0, KV_TXN_CRASH_NONE);
    unsigned seed = w->index * 7919u + 11;
    while (!atomic_load(&b->stop)) {
        unsigned i = (unsigned)rand_r(&seed) % N_ACCTS;
        unsigned j = (unsigned)rand_r(&seed) % (N_ACCTS - 1);
        char errmsg[RFS_ERRMSG_SIZE] = "";
        char vi[24], vj[24];
        long bi, bj, amount;
        uint64_t veri, verj;
        int rv;
        j += j >= i;
        rv = read_balance(c, f->acct[i], &bi, &veri, errmsg);
        if (rv == 0) {
            rv = read_balance(c, f->acct[j], &bj, &verj, errmsg);
        }
        if (rv != 0) {
            atomic_fetch_add(&b->failed, 1);
            bank_error(b, rv, errmsg);
            continue;
        }
        amount = 1 + rand_r(&seed) % 10;
        amount = amount > bi ? bi : amount;
        snprintf(vi, sizeof vi, "%ld", bi - amount);
        snprintf(vj, sizeof vj, "%ld", bj + amount);
        {
            struct kv_txn_read r[2] = {{f->acct[i], strlen(f->acct[i]), veri},
                                       {f->acct[j], strlen(f->acct[j]), verj}};
            struct kv_txn_write wr[2] = {
                {f->acct[i], strlen(f->acct[i]), vi, strlen(vi), false},
                {f->acct[j], strlen(f->acct[j]), vj, strlen(vj), false},
            };
            rv = kv_client_txn(c, r, 2, wr, 2, errmsg);
        }
        if (rv == 0) {
            atomic_fetch_add(&b->transfers, 1);
        } else if (rv == RFS_ECONFLICT) {
            atomic_fetch_add(&b->conflicts, 1);
        } else if (rv == RFS_ETIMEDOUT) {
            atomic_fetch_add(&b->unknown, 1);
            bank_error(b, rv, errmsg);
        } else {
            atomic_fetch_add(&b->failed, 1);
            bank_error(b, rv, errmsg);
        }
        sleep_ms((unsigned)rand_r(&seed) % 20);
    }
    kv_client_free(c);
    return NULL;
}

static void *reader_main(void *data)
{
    struct bank_worker *w = data;
    struct bank *b = w->b;
    struct fixture *f = b->f;
    struct kv_client *c = client_new(f->s.meta.group, 0, true, 0, KV_TXN_CRASH_NONE);
    while (!atomic_load(&b->stop)) {
        struct kv_txn_read r[N_ACCTS];
        long bal[N_ACCTS], sum = 0;
        char errmsg[RFS_ERRMSG_SIZE] = "";
        int rv = 0;
        for (unsigned i = 0; i < N_ACCTS && rv == 0; i++) {
            r[i].key = f->acct[i];
            r[i].klen = strlen(f->acct[i]);
            rv = read_balance(c, f->acct[i], &bal[i], &r[i].version, errmsg);
            sum += bal[i];
        }
        if (rv == 0) {
            rv = kv_client_txn(c, r, N_ACCTS, NULL, 0, errmsg);
        }
        if (rv == 0) {
            atomic_fetch_add(&b->snapshots, 1);
            if (sum != N_ACCTS * INITIAL) {
                pthread_mutex_lock(&b->mu);
                if (!b->violation) {
                    size_t used = (size_t)snprintf(b->violation_msg, sizeof b->violation_msg,
                                                   "a committed snapshot sums to %ld:", sum);
                    for (unsigned i = 0; i < N_ACCTS && used < sizeof b->violation_msg; i++) {
                        used += (size_t)snprintf(
                            b->violation_msg + used, sizeof b->violation_msg - used, " %s=%ld@%llu",
                            f->acct[i], bal[i], (unsigned long long)r[i].version);
                    }
                }
                b->violation = true;
                pthread_mutex_unlock(&b->mu);
            }
        } else if (rv == RFS_ECONFLICT) {
            atomic_fetch_add(&b->snapshot_conflicts, 1);
        } else {
            atomic_fetch_add(&b->failed, 1);
            bank_error(b, rv, errmsg);
        }
    }
    kv_client_free(c);
    return NULL;
}

enum bank_fault { BANK_PLAIN, BANK_DROPS, BANK_KILL_LEADERS, BANK_MOVES };

static void bank_run(struct fixture *f, enum bank_fault fault)
{
    struct bank b;
    struct bank_worker workers[TRANSFERRERS + READERS];
    long bal[N_ACCTS], sum;
    unsigned kills = 0, moves = 0;
    uint64_t t0, end;
    SKIP_IF_NEEDED(f);

    bank_open(f, fault == BANK_PLAIN || fault == BANK_MOVES ? 1 : 3, fault == BANK_DROPS);
    if (fault == BANK_DROPS) {
        /* Every link between servers, and every client connection, closes at a chunk read
         * with probability 5/1000. */
        for (unsigned g = 0; g < 2; g++) {
            char reply[128];
            assert_int_equal(cluster_all_links(&f->s.g[g], "drop %s 5"), 0);
            for (unsigned i = 0; i < f->s.g[g].n; i++) {
                assert_int_equal(
                    proxy_ctl_cmd(&f->s.g[g].proxy, reply, sizeof reply, "drop c%u 5", i), 0);
            }
        }
    }
    memset(&b, 0, sizeof b);
    b.f = f;
    pthread_mutex_init(&b.mu, NULL);
    for (unsigned i = 0; i < TRANSFERRERS + READERS; i++) {
        workers[i].b = &b;
        workers[i].index = i;
        assert_int_equal(pthread_create(&workers[i].thread, NULL,
                                        i < TRANSFERRERS ? transfer_main : reader_main,
                                        &workers[i]),
                         0);
    }
    const char *fault_err = NULL;
    t0 = now_ms();
    end = t0 + RUN_MS;
    while (now_ms() < end) {
        if (fault == BANK_KILL_LEADERS) {
            struct cluster *g = &f->s.g[kills % 2];
            int l;
            sleep_ms(800);
            l = cluster_wait_leader(g, LEADER_WAIT_MS);
            if (l < 0) {
                fault_err = "no leader to kill"; /* the workers stop before the failure */
                break;
            }
            cluster_signal(g, (unsigned)l, SIGKILL);
            sleep_ms(300);
            if (cluster_start_server(g, (unsigned)l, NULL) != 0) {
                fault_err = "a killed leader did not restart";
                break;
            }
            kills++;
        } else if (fault == BANK_MOVES) {
            sleep_ms(300);
            move(f, 0, MOVING_LAST, moves % 2 == 0 ? 2 : 1);
            wait_settled(f);
            moves++;
        } else {
            sleep_ms(100);
        }
    }
    atomic_store(&b.stop, true);
    for (unsigned i = 0; i < TRANSFERRERS + READERS; i++) {
        pthread_join(workers[i].thread, NULL);
    }
    if (fault_err != NULL) {
        fail_msg("%s (after %u kills)", fault_err, kills);
    }
    printf("%.1f s: %lu transfers committed, %lu conflicts, %lu outcome unknown; %lu snapshots "
           "committed, %lu conflicts; %lu other failures; %u leaders killed, %u moves\n",
           (now_ms() - t0) / 1000.0, (unsigned long)b.transfers, (unsigned long)b.conflicts,
           (unsigned long)b.unknown, (unsigned long)b.snapshots,
           (unsigned long)b.snapshot_conflicts, (unsigned long)b.failed, kills, moves);
    if (b.last_error[0] != '\0') {
        printf("last failure: %s\n", b.last_error);
    }
    if (fault == BANK_DROPS) {
        assert_int_equal(cluster_heal(&f->s.g[0]), 0);
        assert_int_equal(cluster_heal(&f->s.g[1]), 0);
    }
    if (fault == BANK_MOVES) {
        wait_settled(f);
    }
    pthread_mutex_destroy(&b.mu);
    if (b.violation) {
        fail_msg("%s", b.violation_msg);
    }
    sum = read_all(f, f->rc, bal);
    printf("final balances:");
    for (unsigned i = 0; i < N_ACCTS; i++) {
        printf(" %ld", bal[i]);
    }
    printf(" (sum %ld)\n", sum);
    assert_int_equal(sum, N_ACCTS * INITIAL);
    assert_no_locks(f);
    assert_true(b.transfers > 0);
    assert_true(b.snapshots > 0);
}

static void test_bank(void **state)
{
    bank_run(*state, BANK_PLAIN);
}

static void test_bank_links_dropping_messages(void **state)
{
    bank_run(*state, BANK_DROPS);
}

static void test_bank_leaders_killed(void **state)
{
    bank_run(*state, BANK_KILL_LEADERS);
}

static void test_bank_buckets_moving(void **state)
{
    bank_run(*state, BANK_MOVES);
}

/* ---- a coordinator that dies ---- */

/* The first account of group 1 and of group 2 (by the starting layout). */
static void two_accounts(struct fixture *f, const char **x, const char **y)
{
    *x = f->acct[0];           /* bucket <= MOVING_LAST: group 1 */
    *y = f->acct[N_ACCTS - 1]; /* bucket >= 32: group 2 */
}

static void test_coordinator_dies_between_steps(void **state)
{
    static const enum kv_txn_crash points[] = {
        KV_TXN_CRASH_AFTER_PRIMARY_PREPARE,
        KV_TXN_CRASH_AFTER_PREPARES,
        KV_TXN_CRASH_AFTER_PRIMARY_COMMIT,
        KV_TXN_CRASH_AFTER_SECONDARY_COMMIT,
    };
    struct fixture *f = *state;
    const char *x, *y;
    SKIP_IF_NEEDED(f);
    bank_open(f, 1, false);
    two_accounts(f, &x, &y);
    for (unsigned p = 0; p < sizeof points / sizeof points[0]; p++) {
        struct kv_client *dying = client_new(f->s.meta.group, 0, true, 300, points[p]);
        struct kv_client *reader = client_new(f->s.meta.group, 0, true, 0, KV_TXN_CRASH_NONE);
        bool committed = points[p] >= KV_TXN_CRASH_AFTER_PRIMARY_COMMIT;
        char errmsg[RFS_ERRMSG_SIZE] = "", vx[24], vy[24];
        long bx, by, before[N_ACCTS], after[N_ACCTS];
        uint64_t verx, very, t0, took;
        unsigned ix = 0, iy = N_ACCTS - 1;

        assert_int_equal(read_all(f, f->rc, before), N_ACCTS * INITIAL);
        assert_int_equal(read_balance(f->rc, x, &bx, &verx, errmsg), 0);
        assert_int_equal(read_balance(f->rc, y, &by, &very, errmsg), 0);
        snprintf(vx, sizeof vx, "%ld", bx - 7);
        snprintf(vy, sizeof vy, "%ld", by + 7);
        {
            struct kv_txn_read r[2] = {{x, strlen(x), verx}, {y, strlen(y), very}};
            struct kv_txn_write w[2] = {{x, strlen(x), vx, strlen(vx), false},
                                        {y, strlen(y), vy, strlen(vy), false}};
            assert_int_equal(kv_client_txn(dying, r, 2, w, 2, errmsg), RFS_ESTOPPED);
        }
        kv_client_free(dying);
        /* A fresh reader meets whatever locks are left and settles them. */
        t0 = now_ms();
        assert_int_equal(read_all(f, reader, after), N_ACCTS * INITIAL);
        took = now_ms() - t0;
        kv_client_free(reader);
        printf("died %u: reads settled it in %llu ms; %s\n", p, (unsigned long long)took,
               committed ? "transfer happened" : "transfer did not happen");
        for (unsigned i = 0; i < N_ACCTS; i++) {
            long want = before[i] + (i == ix ? (committed ? -7 : 0) : 0) +
                        (i == iy ? (committed ? 7 : 0) : 0);
            if (after[i] != want) {
                fail_msg("crash point %u: %s is %ld, expected %ld", p, f->acct[i], after[i], want);
            }
        }
        assert_no_locks(f);
    }
}

/* ---- conflicting transactions ---- */

struct racer {
    struct kv_client *c;
    pthread_barrier_t *start;
    const char *k0, *k1; /* written in this order: k0 is the primary */
    uint64_t v0, v1;
    const char *val0, *val1;
    int rv;
    pthread_t thread;
};

static void *racer_main(void *data)
{
    struct racer *r = data;
    char errmsg[RFS_ERRMSG_SIZE];
    struct kv_txn_read rd[2] = {{r->k0, strlen(r->k0), r->v0}, {r->k1, strlen(r->k1), r->v1}};
    struct kv_txn_write wr[2] = {{r->k0, strlen(r->k0), r->val0, strlen(r->val0), false},
                                 {r->k1, strlen(r->k1), r->val1, strlen(r->val1), false}};
    pthread_barrier_wait(r->start);
    r->rv = kv_client_txn(r->c, rd, 2, wr, 2, errmsg);
    return NULL;
}

static void test_conflicting_transactions_one_commits(void **state)
{
    struct fixture *f = *state;
    struct kv_client *c[2];
    const char *x, *y;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    unsigned same_order_wins = 0, opposite_wins = 0;
    const unsigned rounds = 30;
    SKIP_IF_NEEDED(f);
    bank_open(f, 1, false);
    two_accounts(f, &x, &y);
    c[0] = client_new(f->s.meta.group, 0, true, 1000, KV_TXN_CRASH_NONE);
    c[1] = client_new(f->s.meta.group, 0, true, 1000, KV_TXN_CRASH_NONE);

    /* Interleaved by the hook: a transaction holding x (its coordinator gone) makes another
     * on x give up at once, naming x; after the first one's ttl, it goes through. */
    {
        struct kv_client *dying =
            client_new(f->s.meta.group, 0, true, 1000, KV_TXN_CRASH_AFTER_PRIMARY_PREPARE);
        long bx, by;
        uint64_t verx, very;
        struct kv_txn_read r[2];
        struct kv_txn_write w[2] = {{x, strlen(x), "100", 3, false},
                                    {y, strlen(y), "100", 3, false}};
        assert_int_equal(read_balance(f->rc, x, &bx, &verx, errmsg), 0);
        assert_int_equal(read_balance(f->rc, y, &by, &very, errmsg), 0);
        r[0] = (struct kv_txn_read){x, strlen(x), verx};
        r[1] = (struct kv_txn_read){y, strlen(y), very};
        assert_int_equal(kv_client_txn(dying, r, 2, w, 2, errmsg), RFS_ESTOPPED);
        kv_client_free(dying);
        assert_int_equal(kv_client_txn(c[0], r, 2, w, 2, errmsg), RFS_ECONFLICT);
        if (strncmp(errmsg, "conflict on key ", 16) != 0 || strstr(errmsg, x) == NULL) {
            fail_msg("expected a conflict on %s: %s", x, errmsg);
        }
        sleep_ms(1100);
        assert_int_equal(kv_client_txn(c[0], r, 2, w, 2, errmsg), 0);
    }

    for (unsigned round = 0; round < 2 * rounds; round++) {
        bool opposite = round >= rounds;
        pthread_barrier_t start;
        struct racer rc[2];
        long bx, by, bal[N_ACCTS];
        uint64_t verx, very;
        char xa[24], ya[24], xb[24], yb[24];
        unsigned wins = 0;
        assert_int_equal(read_balance(f->rc, x, &bx, &verx, errmsg), 0);
        assert_int_equal(read_balance(f->rc, y, &by, &very, errmsg), 0);
        /* Both read the same versions; one moves 1 from x to y, the other 2. */
        snprintf(xa, sizeof xa, "%ld", bx - 1);
        snprintf(ya, sizeof ya, "%ld", by + 1);
        snprintf(xb, sizeof xb, "%ld", bx - 2);
        snprintf(yb, sizeof yb, "%ld", by + 2);
        pthread_barrier_init(&start, NULL, 2);
        for (unsigned i = 0; i < 2; i++) {
            bool swap = opposite && i == 1;
            rc[i] = (struct racer){.c = c[i], .start = &start};
            rc[i].k0 = swap ? y : x;
            rc[i].k1 = swap ? x : y;
            rc[i].v0 = swap ? very : verx;
            rc[i].v1 = swap ? verx : very;
            rc[i].val0 = i == 0 ? xa : swap ? yb : xb;
            rc[i].val1 = i == 0 ? ya : swap ? xb : yb;
            assert_int_equal(pthread_create(&rc[i].thread, NULL, racer_main, &rc[i]), 0);
        }
        for (unsigned i = 0; i < 2; i++) {
            pthread_join(rc[i].thread, NULL);
            assert_true(rc[i].rv == 0 || rc[i].rv == RFS_ECONFLICT);
            wins += rc[i].rv == 0;
        }
        pthread_barrier_destroy(&start);
        assert_int_equal(read_all(f, f->rc, bal), N_ACCTS * INITIAL);
        if (!opposite) {
            /* Same primary: they meet at its group, one gets the locks or the versions. */
            assert_int_equal(wins, 1);
            same_order_wins += wins;
        } else {
            /* Each may lock its own primary and meet the other's lock: at most one. */
            assert_true(wins <= 1);
            opposite_wins += wins;
        }
    }
    printf("same primary: %u of %u rounds had a winner; opposite primaries: %u of %u\n",
           same_order_wins, rounds, opposite_wins, rounds);
    kv_client_free(c[0]);
    kv_client_free(c[1]);
    assert_no_locks(f);
}

/* ---- raftfs kv txn ---- */

/* Run "raftfs kv --meta M <args>" with stdin from `input` (may be NULL); its first output
 * line into out; returns the exit status. */
static int cli(struct fixture *f, const char *args, const char *input, char *out, size_t cap)
{
    char cmd[2048], in_path[300] = "/dev/null";
    FILE *p;
    int st;
    if (input != NULL) {
        FILE *in;
        snprintf(in_path, sizeof in_path, "%s/cli-input", f->s.meta.dir);
        in = fopen(in_path, "w");
        assert_non_null(in);
        fputs(input, in);
        fclose(in);
    }
    snprintf(cmd, sizeof cmd, "timeout 30 %s/raftfs kv --meta %s --timeout 5000 %s < %s",
             f->s.meta.bin_dir, f->s.meta.group, args, in_path);
    p = popen(cmd, "r");
    assert_non_null(p);
    out[0] = '\0';
    if (fgets(out, (int)cap, p) != NULL) {
        out[strcspn(out, "\n")] = '\0';
    }
    while (fgetc(p) != EOF) {
    }
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli_txn(void **state)
{
    struct fixture *f = *state;
    const char *x, *y;
    char out[256], args[128], script[512];
    unsigned long long vx, vy;
    SKIP_IF_NEEDED(f);
    bank_open(f, 1, false);
    two_accounts(f, &x, &y);
    snprintf(args, sizeof args, "get -v %s", x);
    assert_int_equal(cli(f, args, NULL, out, sizeof out), 0);
    assert_int_equal(sscanf(out, "%llu", &vx), 1);
    assert_non_null(strstr(out, "\t100"));
    snprintf(args, sizeof args, "get -v %s", y);
    assert_int_equal(cli(f, args, NULL, out, sizeof out), 0);
    assert_int_equal(sscanf(out, "%llu", &vy), 1);
    snprintf(script, sizeof script,
             "# move 5 from %s to %s\ncheck %s %llu\ncheck %s %llu\nput %s 95\nput %s 105\n", x, y,
             x, vx, y, vy, x, y);
    assert_int_equal(cli(f, "txn", script, out, sizeof out), 0);
    assert_string_equal(out, "committed");
    snprintf(args, sizeof args, "get %s", y);
    assert_int_equal(cli(f, args, NULL, out, sizeof out), 0);
    assert_string_equal(out, "105");
    /* The same script again: x is no longer at the version checked. */
    assert_int_equal(cli(f, "txn", script, out, sizeof out), 1);
    snprintf(args, sizeof args, "conflict on %s", x);
    assert_string_equal(out, args);
    assert_int_equal(cli(f, "txn", "bogus line\n", out, sizeof out), 2);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_bank),
        T(test_bank_links_dropping_messages),
        T(test_bank_leaders_killed),
        T(test_bank_buckets_moving),
        T(test_coordinator_dies_between_steps),
        T(test_conflicting_transactions_one_commits),
        T(test_cli_txn),
    };
#undef T
    signal(SIGPIPE, SIG_IGN);
    rfs_log_set_level(RFS_LOG_ERROR); /* the client library's reconnect chatter */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
