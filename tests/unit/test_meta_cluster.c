/* A real meta group (three raftfs-meta processes on 127.0.0.1): joins, a move and the
 * version chain seen through the client library, and an id allocator that never hands out
 * an id twice when the leader is killed and comes back (with snapshots every few entries,
 * so the returning server may be caught up by one). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "meta/client.h"
#include "meta/meta.h"
#include "tests/lib/cluster.h"

#define LEADER_WAIT_MS 10000

struct fixture {
    struct cluster c;
    struct kv_client *kc;
};

static int setup_with(void **state, const char *extra)
{
    struct fixture *f = calloc(1, sizeof *f);
    char why[256];
    char errmsg[RFS_ERRMSG_SIZE];
    *state = f;
    if (!cluster_bins_present(why, sizeof why)) {
        return 0;
    }
    if (cluster_start_binary(&f->c, "raftfs-meta", 3, false, extra, errmsg) != 0) {
        fprintf(stderr, "cluster start failed: %s\n", errmsg);
        cluster_destroy(&f->c);
        return -1;
    }
    return kv_client_connect(&f->kc, f->c.group, false, META_GROUP_ID, 10000, 300, errmsg) == 0
               ? 0
               : -1;
}

static int setup_plain(void **state)
{
    return setup_with(state, NULL);
}

static int setup_snapshots(void **state)
{
    return setup_with(state, "--snapshot-every 5 --snapshot-keep 2");
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rv;
    kv_client_free(f->kc);
    for (unsigned i = 0; i < f->c.n; i++) {
        cluster_stop_server(&f->c, i); /* so LeakSanitizer reports reach the logs */
    }
    rv = cluster_sanitizer_errors(&f->c) ? -1 : 0;
    if (rv != 0) {
        cluster_dump_logs(&f->c);
    }
    cluster_destroy(&f->c);
    free(f);
    return rv;
}

static void skip_without_bins(struct fixture *f)
{
    char why[256];
    if (f->c.n == 0 && !cluster_bins_present(why, sizeof why)) {
        fprintf(stderr, "SKIPPED: %s\n", why);
        skip();
    }
}

static int wait_leader(struct fixture *f)
{
    int l = cluster_wait_leader(&f->c, LEADER_WAIT_MS);
    if (l < 0) {
        cluster_dump_logs(&f->c);
        fail_msg("no leader within %d ms", LEADER_WAIT_MS);
    }
    return l;
}

static unsigned count_of(const struct meta_config *cfg, uint64_t gid)
{
    unsigned c = 0;
    for (uint32_t b = 0; b < cfg->nbuckets; b++) {
        c += cfg->buckets[b] == gid;
    }
    return c;
}

static void join_one(struct fixture *f, uint64_t gid, const char *addr, uint64_t want_version)
{
    char errmsg[RFS_ERRMSG_SIZE];
    char *addrs[1] = {(char *)addr};
    struct meta_group_info g = {.gid = gid, .n_addrs = 1, .addrs = addrs};
    struct meta_config cfg;
    int rv = meta_client_join(f->kc, &g, 1, &cfg, errmsg);
    if (rv != 0) {
        cluster_dump_logs(&f->c);
        fail_msg("join %llu: %s", (unsigned long long)gid, errmsg);
    }
    assert_int_equal(cfg.version, want_version);
    meta_config_clear(&cfg);
}

static void test_join_move_and_query_show_the_version_chain(void **state)
{
    struct fixture *f = *state;
    char errmsg[RFS_ERRMSG_SIZE];
    struct meta_config cfg;
    skip_without_bins(f);
    wait_leader(f);
    join_one(f, 1, "127.0.0.1:9001", 1);
    join_one(f, 2, "127.0.0.1:9002", 2);
    assert_int_equal(meta_client_move(f->kc, 0, 31, 1, &cfg, errmsg), 0);
    assert_int_equal(cfg.version, 3);
    meta_config_clear(&cfg);
    assert_int_equal(meta_client_move(f->kc, 0, 64, 1, &cfg, errmsg), RFS_EINVAL);
    assert_non_null(strstr(errmsg, "out of range"));
    assert_int_equal(meta_client_move(f->kc, 0, 1, 3, &cfg, errmsg), RFS_ENOTFOUND);

    assert_int_equal(meta_client_query(f->kc, true, 0, &cfg, errmsg), 0);
    assert_int_equal(cfg.version, 3);
    assert_int_equal(cfg.n_groups, 2);
    assert_string_equal(cfg.groups[1].addrs[0], "127.0.0.1:9002");
    for (uint32_t b = 0; b < 32; b++) {
        assert_int_equal(cfg.buckets[b], 1);
    }
    meta_config_clear(&cfg);
    for (uint64_t v = 0; v <= 3; v++) {
        assert_int_equal(meta_client_query(f->kc, false, v, &cfg, errmsg), 0);
        assert_int_equal(cfg.version, v);
        assert_int_equal(cfg.n_groups, v < 2 ? v : 2);
        assert_int_equal(count_of(&cfg, 1), v == 0 ? 0 : v == 1 ? 64 : 32);
        meta_config_clear(&cfg);
    }
    assert_int_equal(meta_client_query(f->kc, false, 4, &cfg, errmsg), RFS_ENOTFOUND);
}

#define RANGES 40

static void alloc_range(struct fixture *f, uint64_t *first, uint64_t count)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (meta_client_alloc_ids(f->kc, count, first, errmsg) != 0) {
        cluster_dump_logs(&f->c);
        fail_msg("alloc: %s", errmsg);
    }
    assert_true(*first >= 1);
}

static void test_ids_never_repeat_across_leader_kill(void **state)
{
    struct fixture *f = *state;
    uint64_t first[RANGES], count[RANGES];
    char errmsg[RFS_ERRMSG_SIZE];
    int leader;
    unsigned n = 0;
    skip_without_bins(f);
    leader = wait_leader(f);
    for (; n < 15; n++) {
        count[n] = 1 + n * 7;
        alloc_range(f, &first[n], count[n]);
    }
    cluster_signal(&f->c, (unsigned)leader, SIGKILL);
    for (; n < 30; n++) {
        count[n] = 1 + n * 3;
        alloc_range(f, &first[n], count[n]);
    }
    assert_int_equal(cluster_start_server(&f->c, (unsigned)leader, errmsg), 0);
    wait_leader(f);
    leader = wait_leader(f);
    cluster_signal(&f->c, (unsigned)leader, SIGKILL);
    for (; n < RANGES; n++) {
        count[n] = 100;
        alloc_range(f, &first[n], count[n]);
    }
    /* No two ranges overlap. */
    for (unsigned i = 0; i < n; i++) {
        for (unsigned j = i + 1; j < n; j++) {
            bool apart = first[i] + count[i] <= first[j] || first[j] + count[j] <= first[i];
            if (!apart) {
                fail_msg("ranges %u [%llu,+%llu) and %u [%llu,+%llu) overlap", i,
                         (unsigned long long)first[i], (unsigned long long)count[i], j,
                         (unsigned long long)first[j], (unsigned long long)count[j]);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_join_move_and_query_show_the_version_chain,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_ids_never_repeat_across_leader_kill, setup_snapshots,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
