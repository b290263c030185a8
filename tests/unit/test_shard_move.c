/* Sharded shard groups moving buckets, with real processes on 127.0.0.1: a meta group and
 * two or three shard groups started with --gid/--meta, driven through the meta client and
 * a routed kv client. The scenarios of MIT 6.824's ShardKV lab (static buckets, join then
 * leave, snapshots, missed configuration changes, concurrent puts during repeated moves
 * with and without an unreliable network, garbage collection, unaffected buckets, partial
 * migration) plus leaders killed in the middle of a migration. Histories of concurrent
 * clients are checked for linearizability (appends make a lost or doubled write visible). */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
#include "raft/raft.h"
#include "tests/lib/cluster.h"
#include "tests/lib/sharded.h"
#include "tests/lib/workload.h"

#define LEADER_WAIT_MS 15000
#define SETTLE_MS      30000
#define NBUCKETS       64

struct fixture {
    bool skipped;
    struct sharded s;
    struct kv_client *rc; /* routed */
    struct workload w;
    bool workload_running;
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
    if (sharded_start(&f->s, errmsg) != 0 ||
        sharded_client(&f->rc, f->s.meta.group, 0, true, 15000, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int bad;
    if (f->workload_running) {
        workload_stop(&f->w);
    }
    workload_free(&f->w);
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

/* Start group gid with n servers (its own data, --gid and --meta). */
static void start_group(struct fixture *f, uint64_t gid, unsigned n, bool proxied,
                        const char *extra)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (sharded_start_group(&f->s, gid, n, proxied, extra, errmsg) != 0) {
        fail_msg("group %llu: %s", (unsigned long long)gid, errmsg);
    }
}

static void join(struct fixture *f, uint64_t gid)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (sharded_join(&f->s, gid, errmsg) != 0) {
        fail_msg("join %llu: %s", (unsigned long long)gid, errmsg);
    }
}

static void leave(struct fixture *f, uint64_t gid)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (sharded_leave(&f->s, gid, errmsg) != 0) {
        fail_msg("leave %llu: %s", (unsigned long long)gid, errmsg);
    }
}

static void move(struct fixture *f, uint32_t first, uint32_t last, uint64_t gid)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (sharded_move(&f->s, first, last, gid, errmsg) != 0) {
        fail_msg("move %u-%u %llu: %s", first, last, (unsigned long long)gid, errmsg);
    }
}

static uint64_t latest_version(struct fixture *f)
{
    char errmsg[RFS_ERRMSG_SIZE];
    uint64_t v = 0;
    if (sharded_latest_version(&f->s, &v, errmsg) != 0) {
        fail_msg("query: %s", errmsg);
    }
    return v;
}

/* How many of group gid's buckets are on their way in (PULLING or GC_OWNER). */
static unsigned in_flight(struct fixture *f, uint64_t gid)
{
    Raftfs__ShardState *st = sharded_state(&f->s, gid);
    unsigned n = 0;
    for (size_t b = 0; st != NULL && b < st->n_states; b++) {
        n += st->states[b] == RAFTFS__BUCKET_STATE__BUCKET_PULLING ||
             st->states[b] == RAFTFS__BUCKET_STATE__BUCKET_GC_OWNER;
    }
    if (st != NULL) {
        raftfs__shard_state__free_unpacked(st, NULL);
    }
    return n;
}

/* Wait until group gid has applied the latest configuration. */
static void wait_applied(struct fixture *f, uint64_t gid)
{
    uint64_t version = latest_version(f);
    uint64_t deadline = now_ms() + SETTLE_MS;
    for (;;) {
        Raftfs__ShardState *st = sharded_state(&f->s, gid);
        bool ok = st != NULL && st->version >= version;
        if (st != NULL) {
            raftfs__shard_state__free_unpacked(st, NULL);
        }
        if (ok) {
            return;
        }
        if (now_ms() > deadline) {
            fail_msg("group %llu did not apply configuration %llu", (unsigned long long)gid,
                     (unsigned long long)version);
        }
        sleep_ms(50);
    }
}

/* Wait until every running group has applied the latest configuration and settled. */
static void wait_settled(struct fixture *f)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (sharded_wait_settled(&f->s, SETTLE_MS, errmsg) != 0) {
        fail_msg("%s", errmsg);
    }
}

static void put_keys(struct fixture *f, const char *prefix, unsigned n, const char *tag)
{
    char errmsg[RFS_ERRMSG_SIZE];
    for (unsigned i = 0; i < n; i++) {
        char key[64], val[64];
        snprintf(key, sizeof key, "%s%u", prefix, i);
        snprintf(val, sizeof val, "%s-%s%u", tag, prefix, i);
        if (kv_client_put(f->rc, key, strlen(key), val, strlen(val), NULL, errmsg) != 0) {
            fail_msg("put %s: %s", key, errmsg);
        }
    }
}

static void check_keys(struct fixture *f, const char *prefix, unsigned n, const char *tag)
{
    char errmsg[RFS_ERRMSG_SIZE];
    for (unsigned i = 0; i < n; i++) {
        char key[64], val[64];
        struct kv_client_value v;
        snprintf(key, sizeof key, "%s%u", prefix, i);
        snprintf(val, sizeof val, "%s-%s%u", tag, prefix, i);
        if (kv_client_get(f->rc, key, strlen(key), &v, errmsg) != 0) {
            fail_msg("get %s: %s", key, errmsg);
        }
        assert_true(v.found);
        assert_int_equal(v.value.len, strlen(val));
        assert_memory_equal(v.value.base, val, strlen(val));
        kv_client_value_clear(&v);
    }
}

static uint64_t owner_of(struct fixture *f, const char *key)
{
    struct meta_config cfg;
    char errmsg[RFS_ERRMSG_SIZE];
    uint64_t gid;
    assert_int_equal(meta_client_query(f->s.mc, true, 0, &cfg, errmsg), 0);
    gid = cfg.buckets[kv_bucket_of(key, strlen(key), cfg.nbuckets)];
    meta_config_clear(&cfg);
    return gid;
}

/* A get straight to group gid with a short timeout: 0, or the error code. */
static int get_from(struct fixture *f, uint64_t gid, const char *key, unsigned timeout_ms)
{
    struct kv_client *c;
    struct kv_client_value v;
    char errmsg[RFS_ERRMSG_SIZE];
    int rv;
    assert_int_equal(sharded_client(&c, f->s.g[gid - 1].group, gid, false, timeout_ms, errmsg), 0);
    rv = kv_client_get(c, key, strlen(key), &v, errmsg);
    if (rv == 0) {
        kv_client_value_clear(&v);
    }
    kv_client_free(c);
    return rv;
}

/* Join, puts, reads after each change; both groups answer only for their buckets. */
static void test_join_leave(void **state)
{
    struct fixture *f = *state;
    SKIP_IF_NEEDED(f);
    start_group(f, 1, 1, false, NULL);
    start_group(f, 2, 1, false, NULL);
    join(f, 1);
    wait_settled(f);
    put_keys(f, "k", 40, "a");
    join(f, 2);
    wait_settled(f);
    check_keys(f, "k", 40, "a");
    /* Each key is served by exactly the group the configuration names. */
    for (unsigned i = 0; i < 40; i++) {
        char key[16];
        uint64_t own;
        snprintf(key, sizeof key, "k%u", i);
        own = owner_of(f, key);
        assert_int_equal(get_from(f, own, key, 3000), 0);
        assert_int_equal(get_from(f, own == 1 ? 2 : 1, key, 3000), RFS_EWRONGGROUP);
    }
    put_keys(f, "k", 40, "b");
    leave(f, 1);
    wait_settled(f);
    /* Group 1 is gone from the configuration: kill it; every key must be at group 2. */
    cluster_destroy(&f->s.g[0]);
    f->s.started[0] = false;
    check_keys(f, "k", 40, "b");
}

/* A dead group does not block the buckets of the others (6.824 "static shards"). */
static void test_static_buckets(void **state)
{
    struct fixture *f = *state;
    unsigned served = 0;
    SKIP_IF_NEEDED(f);
    start_group(f, 1, 1, false, NULL);
    start_group(f, 2, 1, false, NULL);
    join(f, 1);
    join(f, 2);
    wait_settled(f);
    put_keys(f, "s", 30, "a");
    cluster_signal(&f->s.g[1], 0, SIGKILL);
    f->s.down[1] = true;
    for (unsigned i = 0; i < 30; i++) {
        char key[16];
        snprintf(key, sizeof key, "s%u", i);
        if (owner_of(f, key) == 1) {
            assert_int_equal(get_from(f, 1, key, 3000), 0);
            served++;
        }
    }
    assert_true(served > 0);
    assert_int_equal(cluster_start_server(&f->s.g[1], 0, NULL), 0);
    f->s.down[1] = false;
    check_keys(f, "s", 30, "a");
}

/* A scan of one group's own buckets (kv_client_scan_group, no tag): each key comes from the
 * group that owns it, and the groups together give every key once. */
static void test_local_scan_reads_each_groups_buckets(void **state)
{
    struct fixture *f = *state;
    char errmsg[RFS_ERRMSG_SIZE];
    uint64_t gids[8];
    size_t ngids = 0, total = 0;
    SKIP_IF_NEEDED(f);
    start_group(f, 1, 1, false, NULL);
    start_group(f, 2, 1, false, NULL);
    join(f, 1);
    join(f, 2);
    wait_settled(f);
    put_keys(f, "l", 40, "a");
    assert_int_equal(kv_client_group_ids(f->rc, gids, 8, &ngids, errmsg), 0);
    assert_int_equal(ngids, 2);
    for (size_t g = 0; g < ngids; g++) {
        struct kv_scan_result res;
        if (kv_client_scan_group(f->rc, gids[g], "l", 1, "m", 1, 1000, &res, errmsg) != 0) {
            fail_msg("scan of group %llu: %s", (unsigned long long)gids[g], errmsg);
        }
        assert_true(res.n > 0);
        for (size_t i = 0; i < res.n; i++) {
            char key[32];
            snprintf(key, sizeof key, "%.*s", (int)res.pairs[i].key.len,
                     (const char *)res.pairs[i].key.base);
            char want[64];
            snprintf(want, sizeof want, "a-%s", key);
            assert_int_equal(owner_of(f, key), gids[g]);
            assert_int_equal(res.pairs[i].value.len, strlen(want));
            assert_memory_equal(res.pairs[i].value.base, want, strlen(want));
        }
        total += res.n;
        kv_scan_result_clear(&res);
    }
    assert_int_equal(total, 40);
}

/* Join two groups in one configuration while one of them is down: the buckets bound for
 * the live one arrive and serve there (partial migration), the ones bound for the dead one
 * are stuck, and the buckets that stay put keep serving throughout (unaffected). */
static void test_unaffected_and_partial(void **state)
{
    struct fixture *f = *state;
    unsigned stuck = 0, moved = 0, kept = 0;
    char errmsg[RFS_ERRMSG_SIZE];
    struct meta_group_info gs[2];
    char lists[2][512], *addrs[2][CLUSTER_MAX];
    SKIP_IF_NEEDED(f);
    start_group(f, 1, 1, false, NULL);
    start_group(f, 2, 1, false, NULL);
    start_group(f, 3, 1, false, NULL);
    join(f, 1);
    wait_settled(f);
    put_keys(f, "u", 60, "a");
    cluster_signal(&f->s.g[2], 0, SIGKILL); /* group 3 is down before it can pull */
    f->s.down[2] = true;
    for (unsigned i = 0; i < 2; i++) {
        char *save = NULL;
        snprintf(lists[i], sizeof lists[i], "%s", f->s.g[i + 1].group);
        gs[i].gid = i + 2;
        gs[i].n_addrs = 0;
        gs[i].addrs = addrs[i];
        for (char *t = strtok_r(lists[i], ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            addrs[i][gs[i].n_addrs++] = t;
        }
    }
    assert_int_equal(meta_client_join(f->s.mc, gs, 2, NULL, errmsg), 0);
    wait_applied(f, 1);
    for (unsigned i = 0; i < 60; i++) {
        char key[16], val[16];
        uint64_t own;
        snprintf(key, sizeof key, "u%u", i);
        own = owner_of(f, key);
        if (own == 3) {
            assert_int_not_equal(get_from(f, 1, key, 300), 0);
            stuck++;
        } else {
            /* The routed client waits out the move (if any) and must get through. */
            snprintf(val, sizeof val, "b%u", i);
            if (kv_client_put(f->rc, key, strlen(key), val, strlen(val), NULL, errmsg) != 0) {
                fail_msg("put %s (group %llu): %s", key, (unsigned long long)own, errmsg);
            }
            assert_int_equal(get_from(f, own, key, 3000), 0);
            own == 2 ? moved++ : kept++;
        }
    }
    printf("%u keys on buckets that stayed, %u moved to the live group, %u stuck\n", kept, moved,
           stuck);
    assert_true(stuck > 0 && moved > 0 && kept > 0);
    assert_int_equal(cluster_start_server(&f->s.g[2], 0, NULL), 0);
    f->s.down[2] = false;
    wait_settled(f);
    for (unsigned i = 0; i < 60; i++) {
        char key[16], val[16];
        struct kv_client_value v;
        snprintf(key, sizeof key, "u%u", i);
        assert_int_equal(kv_client_get(f->rc, key, strlen(key), &v, errmsg), 0);
        if (owner_of(f, key) == 3) {
            snprintf(val, sizeof val, "a-u%u", i);
        } else {
            snprintf(val, sizeof val, "b%u", i);
        }
        assert_true(v.found);
        assert_int_equal(v.value.len, strlen(val));
        assert_memory_equal(v.value.base, val, strlen(val));
        kv_client_value_clear(&v);
    }
}

static unsigned long long dir_bytes(const char *path)
{
    unsigned long long total = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        char p[1024];
        struct stat st;
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            total += (unsigned long long)st.st_size;
        }
    }
    closedir(d);
    return total;
}

/* After its buckets move away, the old owner deletes them: its LevelDB shrinks. */
static void test_gc_shrinks_storage(void **state)
{
    struct fixture *f = *state;
    char path[512], errmsg[RFS_ERRMSG_SIZE];
    static char val[8192];
    unsigned long long before, after;
    SKIP_IF_NEEDED(f);
    start_group(f, 1, 1, false, NULL);
    start_group(f, 2, 1, false, NULL);
    join(f, 1);
    wait_settled(f);
    join(f, 2);
    move(f, 0, NBUCKETS - 1, 1);
    wait_settled(f);
    memset(val, 'x', sizeof val);
    for (unsigned i = 0; i < 400; i++) {
        char key[16];
        snprintf(key, sizeof key, "g%u", i);
        assert_int_equal(kv_client_put(f->rc, key, strlen(key), val, sizeof val, NULL, errmsg), 0);
    }
    snprintf(path, sizeof path, "%s/s0/db", f->s.g[0].dir);
    before = dir_bytes(path);
    move(f, 0, NBUCKETS - 1, 2);
    wait_settled(f);
    /* The values are in blob files (kv/blob.h), which the collector empties within a few
     * seconds of the deletes. */
    for (unsigned i = 0; i < 100; i++) {
        after = dir_bytes(path);
        if (after < before / 4) {
            break;
        }
        usleep(100 * 1000);
    }
    printf("group 1 LevelDB and blob files: %llu bytes before the move, %llu after\n", before,
           after);
    assert_true(before > 400ull * sizeof val / 2);
    assert_true(after < before / 4);
    /* Group 1 serves nothing now; group 2 has all of it. */
    assert_int_equal(get_from(f, 1, "g7", 2000), RFS_EWRONGGROUP);
    for (unsigned i = 0; i < 400; i += 37) {
        char key[16];
        struct kv_client_value v;
        snprintf(key, sizeof key, "g%u", i);
        assert_int_equal(kv_client_get(f->rc, key, strlen(key), &v, errmsg), 0);
        assert_int_equal(v.value.len, sizeof val);
        kv_client_value_clear(&v);
    }
}

/* Snapshots every few entries, config changes and restarts of every server. */
static void test_snapshot_restart(void **state)
{
    struct fixture *f = *state;
    SKIP_IF_NEEDED(f);
    start_group(f, 1, 3, false, "--snapshot-every 20 --snapshot-keep 5");
    start_group(f, 2, 3, false, "--snapshot-every 20 --snapshot-keep 5");
    join(f, 1);
    wait_settled(f);
    put_keys(f, "p", 30, "a");
    join(f, 2);
    put_keys(f, "q", 30, "a");
    leave(f, 1);
    put_keys(f, "p", 30, "b");
    join(f, 1);
    wait_settled(f);
    for (unsigned g = 0; g < 2; g++) {
        for (unsigned i = 0; i < 3; i++) {
            assert_int_equal(cluster_stop_server(&f->s.g[g], i), 0);
        }
    }
    for (unsigned g = 0; g < 2; g++) {
        for (unsigned i = 0; i < 3; i++) {
            assert_int_equal(cluster_start_server(&f->s.g[g], i, NULL), 0);
        }
    }
    check_keys(f, "p", 30, "b");
    check_keys(f, "q", 30, "a");
    move(f, 0, 40, 2);
    wait_settled(f);
    check_keys(f, "p", 30, "b");
    check_keys(f, "q", 30, "a");
}

/* A server down through several configuration changes catches up and can then be part of
 * the majority that serves (6.824 "miss change"). */
static void test_missed_changes(void **state)
{
    struct fixture *f = *state;
    SKIP_IF_NEEDED(f);
    start_group(f, 1, 3, false, "--snapshot-every 15 --snapshot-keep 3");
    start_group(f, 2, 1, false, NULL);
    join(f, 1);
    wait_settled(f);
    put_keys(f, "m", 30, "a");
    cluster_signal(&f->s.g[0], 0, SIGKILL);
    join(f, 2);
    put_keys(f, "m", 30, "b");
    leave(f, 2);
    wait_settled(f);
    join(f, 2);
    move(f, 10, 30, 2);
    put_keys(f, "m", 30, "c");
    wait_settled(f);
    assert_int_equal(cluster_start_server(&f->s.g[0], 0, NULL), 0);
    sleep_ms(1500);
    /* Server 0 plus one other must now hold everything. */
    cluster_signal(&f->s.g[0], cluster_wait_leader(&f->s.g[0], LEADER_WAIT_MS) == 1 ? 2 : 1,
                   SIGKILL);
    check_keys(f, "m", 30, "c");
}

/* Clients write while buckets move back and forth; the history must be linearizable. */
static void moves_under_load(struct fixture *f, bool unreliable, bool kill_leaders)
{
    char explain[2048];
    unsigned mid_migration = 0;
    SKIP_IF_NEEDED(f);
    /* Small pull chunks, so a bucket moves in many steps that a crash can cut between. */
    start_group(f, 1, 3, unreliable, "--move-chunk 2048");
    start_group(f, 2, 3, unreliable, "--move-chunk 2048");
    join(f, 1);
    wait_settled(f);
    {
        static char val[1000];
        char errmsg[RFS_ERRMSG_SIZE];
        memset(val, 'v', sizeof val);
        for (unsigned i = 0; i < 300; i++) {
            char key[16];
            snprintf(key, sizeof key, "bulk%u", i);
            if (kv_client_put(f->rc, key, strlen(key), val, sizeof val, NULL, errmsg) != 0) {
                fail_msg("put %s: %s", key, errmsg);
            }
        }
    }
    join(f, 2);
    wait_settled(f);
    if (unreliable) {
        assert_int_equal(cluster_all_links(&f->s.g[0], "drop %s 5"), 0);
        assert_int_equal(cluster_all_links(&f->s.g[1], "drop %s 5"), 0);
    }
    assert_int_equal(workload_start_on(&f->w, f->s.meta.group, true, 4, 8, 8000), 0);
    f->workload_running = true;
    for (unsigned round = 0; round < 4; round++) {
        move(f, 0, NBUCKETS - 1, round % 2 == 0 ? 2 : 1);
        if (kill_leaders) {
            int l1, l2;
            sleep_ms(30);
            mid_migration += in_flight(f, round % 2 == 0 ? 2 : 1) > 0;
            l1 = cluster_wait_leader(&f->s.g[0], LEADER_WAIT_MS);
            l2 = cluster_wait_leader(&f->s.g[1], LEADER_WAIT_MS);
            assert_true(l1 >= 0 && l2 >= 0);
            cluster_signal(&f->s.g[0], (unsigned)l1, SIGKILL);
            cluster_signal(&f->s.g[1], (unsigned)l2, SIGKILL);
            sleep_ms(400);
            assert_int_equal(cluster_start_server(&f->s.g[0], (unsigned)l1, NULL), 0);
            assert_int_equal(cluster_start_server(&f->s.g[1], (unsigned)l2, NULL), 0);
        } else {
            sleep_ms(300);
        }
        wait_settled(f);
    }
    if (kill_leaders) {
        /* The crashes must have cut into migrations, not only followed them. */
        printf("leaders killed during a migration in %u of 4 rounds\n", mid_migration);
        assert_true(mid_migration > 0);
    }
    if (unreliable) {
        assert_int_equal(cluster_heal(&f->s.g[0]), 0);
        assert_int_equal(cluster_heal(&f->s.g[1]), 0);
    }
    sleep_ms(300);
    workload_stop(&f->w);
    f->workload_running = false;
    printf("%lu operations with an outcome, %lu timed out\n", (unsigned long)f->w.ok,
           (unsigned long)f->w.failed);
    assert_true(f->w.ok > 20);
    if (workload_check(&f->w, explain, sizeof explain) != 0) {
        cluster_dump_logs(&f->s.g[0]);
        cluster_dump_logs(&f->s.g[1]);
        fail_msg("not linearizable: %s", explain);
    }
    for (unsigned i = 0; i < 300; i += 7) {
        char key[16], errmsg[RFS_ERRMSG_SIZE];
        struct kv_client_value v;
        snprintf(key, sizeof key, "bulk%u", i);
        assert_int_equal(kv_client_get(f->rc, key, strlen(key), &v, errmsg), 0);
        assert_true(v.found);
        assert_int_equal(v.value.len, 1000);
        kv_client_value_clear(&v);
    }
}

static void test_moves_under_load(void **state)
{
    moves_under_load(*state, false, false);
}

static void test_moves_under_load_unreliable(void **state)
{
    moves_under_load(*state, true, false);
}

static void test_kill_leaders_mid_migration(void **state)
{
    moves_under_load(*state, false, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_join_leave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_scan_reads_each_groups_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unaffected_and_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_shrinks_storage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missed_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moves_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moves_under_load_unreliable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_leaders_mid_migration, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    rfs_log_set_level(RFS_LOG_ERROR); /* the client library's reconnect chatter */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
