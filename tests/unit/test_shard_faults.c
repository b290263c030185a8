/* A real shard group (three raftfs-shard processes on 127.0.0.1) under faults: leader
 * killed under load, every server restarted, the leader cut off in a minority, a follower
 * far behind a compacted log, a server paused past the election timeout, and a network that
 * drops connections. Concurrent clients record every operation, and each history must be
 * linearizable. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "kv/client.h"
#include "raft/segment.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"
#include "tests/lib/workload.h"

#define LEADER_WAIT_MS 10000

struct fixture {
    struct cluster c;
    struct workload w;
    bool workload_running;
    struct kv_client *kc;
};

static int setup_plain(void **state);
static int setup_proxied(void **state);
static int setup_snapshots(void **state);

static int setup_with(void **state, bool proxied, const char *extra)
{
    struct fixture *f = calloc(1, sizeof *f);
    char why[256];
    char errmsg[RFS_ERRMSG_SIZE];
    *state = f;
    if (!cluster_bins_present(why, sizeof why)) {
        return 0;
    }
    if (cluster_start(&f->c, 3, proxied, extra, errmsg) != 0) {
        fprintf(stderr, "cluster start failed: %s\n", errmsg);
        cluster_destroy(&f->c);
        return -1;
    }
    return 0;
}

static int setup_plain(void **state)
{
    return setup_with(state, false, NULL);
}

static int setup_proxied(void **state)
{
    return setup_with(state, true, NULL);
}

static int setup_snapshots(void **state)
{
    return setup_with(state, false, "--snapshot-every 50 --snapshot-keep 10");
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rv;
    if (f->workload_running) {
        workload_stop(&f->w);
    }
    workload_free(&f->w);
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

static struct kv_client *client_for(const char *group, unsigned timeout_ms)
{
    struct kv_client *kc = NULL;
    char errmsg[RFS_ERRMSG_SIZE];
    assert_int_equal(kv_client_connect(&kc, group, false, 0, timeout_ms, 300, errmsg), 0);
    return kc;
}

static void start_load(struct fixture *f, unsigned clients)
{
    assert_int_equal(workload_start(&f->w, f->c.group, clients, 5, 4000), 0);
    f->workload_running = true;
}

static void finish_load(struct fixture *f)
{
    char explain[2048] = "";
    workload_stop(&f->w);
    f->workload_running = false;
    if (workload_check(&f->w, explain, sizeof explain) != 0) {
        cluster_dump_logs(&f->c);
        fail_msg("not linearizable: %s", explain);
    }
}

static void sleep_ms(unsigned ms)
{
    usleep(ms * 1000u);
}

/* Ops that completed with a definite outcome since `before`. */
static unsigned long progress_since(struct fixture *f, unsigned long before)
{
    return atomic_load(&f->w.ok) - before;
}

static void test_leader_killed_under_load_loses_nothing(void **state)
{
    struct fixture *f = *state;
    int leader;
    unsigned long before;
    skip_without_bins(f);
    leader = wait_leader(f);
    start_load(f, 6);
    sleep_ms(1500);
    assert_true(progress_since(f, 0) > 50);
    cluster_signal(&f->c, (unsigned)leader, SIGKILL);
    before = atomic_load(&f->w.ok);
    sleep_ms(3000);
    /* The majority elected a new leader and progress resumed. */
    assert_true(progress_since(f, before) > 50);
    {
        char errmsg[RFS_ERRMSG_SIZE];
        assert_int_equal(cluster_start_server(&f->c, (unsigned)leader, errmsg), 0);
    }
    sleep_ms(1000);
    finish_load(f);
}

static void test_full_restart_keeps_every_acknowledged_write(void **state)
{
    struct fixture *f = *state;
    char errmsg[RFS_ERRMSG_SIZE];
    skip_without_bins(f);
    wait_leader(f);
    f->kc = client_for(f->c.group, 10000);
    for (int i = 0; i < 200; i++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "restart-%d", i);
        snprintf(val, sizeof val, "value-%d", i);
        assert_int_equal(kv_client_put(f->kc, key, strlen(key), val, strlen(val), NULL, errmsg), 0);
    }
    kv_client_free(f->kc);
    f->kc = NULL;
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(cluster_stop_server(&f->c, i), 0); /* clean exit on SIGTERM */
    }
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(cluster_start_server(&f->c, i, errmsg), 0);
    }
    wait_leader(f);
    f->kc = client_for(f->c.group, 10000);
    for (int i = 0; i < 200; i++) {
        char key[32], val[32];
        struct kv_client_value v;
        snprintf(key, sizeof key, "restart-%d", i);
        snprintf(val, sizeof val, "value-%d", i);
        assert_int_equal(kv_client_get(f->kc, key, strlen(key), &v, errmsg), 0);
        assert_true(v.found);
        assert_int_equal(v.value.len, strlen(val));
        assert_memory_equal(v.value.base, val, v.value.len);
        kv_client_value_clear(&v);
    }
}

/* Put n keys "<prefix><i>" whose values are the keys themselves. */
static void put_keys(struct fixture *f, const char *prefix, int n)
{
    char errmsg[RFS_ERRMSG_SIZE];
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s%d", prefix, i);
        assert_int_equal(kv_client_put(f->kc, key, strlen(key), key, strlen(key), NULL, errmsg), 0);
    }
}

/* Every key put_keys wrote reads back whole. */
static void expect_keys(struct fixture *f, const char *prefix, int n)
{
    char errmsg[RFS_ERRMSG_SIZE];
    for (int i = 0; i < n; i++) {
        char key[64];
        struct kv_client_value v;
        snprintf(key, sizeof key, "%s%d", prefix, i);
        assert_int_equal(kv_client_get(f->kc, key, strlen(key), &v, errmsg), 0);
        assert_true(v.found);
        assert_int_equal(v.value.len, strlen(key));
        assert_memory_equal(v.value.base, key, v.value.len);
        kv_client_value_clear(&v);
    }
}

/* Cut server i's newest log segment after its last entry record, dropping the commit
 * records written after it: what a power cut does to records written without a sync. */
static void drop_commit_records_after_last_entry(struct fixture *f, unsigned i)
{
    char dir[512], path[1024], newest[256] = "";
    struct dirent *e;
    size_t off = 0, keep = 0, size;
    uint8_t *buf;
    DIR *d;
    FILE *fp;
    snprintf(dir, sizeof dir, "%s/s%u/raft", f->c.dir, i);
    d = opendir(dir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "seg-", 4) == 0 && strcmp(e->d_name, newest) > 0) {
            snprintf(newest, sizeof newest, "%s", e->d_name);
        }
    }
    closedir(d);
    assert_true(newest[0] != '\0');
    snprintf(path, sizeof path, "%s/%s", dir, newest);
    fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    size = (size_t)ftell(fp);
    rewind(fp);
    buf = malloc(size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, size, fp), size);
    fclose(fp);
    for (;;) {
        struct raft_record rec;
        const char *why = NULL;
        if (raft_segment_decode(buf, size, off, &rec, &why) != RAFT_SEGMENT_OK) {
            break;
        }
        off += rec.size;
        if (rec.type == RAFT_RECORD_ENTRY) {
            keep = off;
        }
    }
    free(buf);
    assert_true(keep > 0 && keep < size); /* commit records followed the last entry */
    assert_int_equal(truncate(path, (off_t)keep), 0);
}

/* Through a client of its own: put_keys, then disconnect (servers are about to restart). */
static void put_keys_and_disconnect(struct fixture *f, const char *prefix, int n)
{
    f->kc = client_for(f->c.group, 10000);
    put_keys(f, prefix, n);
    kv_client_free(f->kc);
    f->kc = NULL;
}

/* Once the restarted group has a leader, through a new client: expect_keys. */
static void reconnect_and_expect_keys(struct fixture *f, const char *prefix, int n)
{
    wait_leader(f);
    f->kc = client_for(f->c.group, 10000);
    expect_keys(f, prefix, n);
}

/* A batch that only raises the commit index is written without a sync, so a power cut can
 * leave the state machine (LevelDB) ahead of the commit index in the log. Every server must
 * still start (raising the commit index to what it applied) and keep every write. */
static void test_servers_start_after_losing_unsynced_commit_records(void **state)
{
    struct fixture *f = *state;
    char errmsg[RFS_ERRMSG_SIZE];
    skip_without_bins(f);
    wait_leader(f);
    put_keys_and_disconnect(f, "lost-commit-", 50);
    sleep_ms(500); /* heartbeats carry the last commit index to the followers */
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(cluster_stop_server(&f->c, i), 0);
        drop_commit_records_after_last_entry(f, i);
    }
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(cluster_start_server(&f->c, i, errmsg), 0);
    }
    reconnect_and_expect_keys(f, "lost-commit-", 50);
    for (unsigned i = 0; i < 3; i++) {
        if (!proc_alive(f->c.pid[i]) ||
            !cluster_log_contains(&f->c, i, "raised to the state machine's")) {
            cluster_dump_logs(&f->c);
            fail_msg("server %u did not start with its commit index raised", i);
        }
    }
    assert_int_equal(kv_client_put(f->kc, "after", 5, "x", 1, NULL, errmsg), 0);
}

/* With a snapshot every 50 entries, the shard servers compact by making LevelDB durable
 * and saving only the index (no state serialised); killed with SIGKILL and started again,
 * each starts from its database and log, and every acknowledged write is there. */
static void test_restart_after_compactions_without_snapshot_bytes(void **state)
{
    struct fixture *f = *state;
    char errmsg[RFS_ERRMSG_SIZE];
    skip_without_bins(f);
    wait_leader(f);
    put_keys_and_disconnect(f, "compacted-", 300);
    for (unsigned i = 0; i < 3; i++) {
        if (!cluster_log_contains(&f->c, i, "held by the state machine")) {
            cluster_dump_logs(&f->c);
            fail_msg("server %u made no compaction point without bytes", i);
        }
        cluster_signal(&f->c, i, SIGKILL);
    }
    for (unsigned i = 0; i < 3; i++) {
        cluster_stop_server(&f->c, i); /* reaps the killed process */
        assert_int_equal(cluster_start_server(&f->c, i, errmsg), 0);
    }
    reconnect_and_expect_keys(f, "compacted-", 300);
    for (unsigned i = 0; i < 3; i++) {
        assert_true(proc_alive(f->c.pid[i]));
    }
}

static void test_leader_cut_off_in_minority_stops_serving(void **state)
{
    struct fixture *f = *state;
    int old;
    int next;
    char errmsg[RFS_ERRMSG_SIZE];
    char direct[64];
    struct kv_client *alone;
    skip_without_bins(f);
    old = wait_leader(f);
    start_load(f, 4);
    sleep_ms(800);
    assert_int_equal(cluster_isolate(&f->c, (unsigned)old), 0);
    /* The majority moves on without it. */
    sleep_ms(1500);
    next = wait_leader(f);
    assert_int_not_equal(next, old);
    /* The old leader, asked directly, does not accept writes (CheckQuorum: it stepped down). */
    snprintf(direct, sizeof direct, "127.0.0.1:%d", f->c.port[old]);
    alone = client_for(direct, 1500);
    assert_int_not_equal(kv_client_put(alone, "minority", 8, "x", 1, NULL, errmsg), 0);
    kv_client_free(alone);
    {
        unsigned long before = atomic_load(&f->w.ok);
        sleep_ms(1000);
        assert_true(progress_since(f, before) > 20);
    }
    assert_int_equal(cluster_heal(&f->c), 0);
    sleep_ms(1500);
    finish_load(f);
    /* The old leader catches up. */
    {
        struct kv_client *kc = client_for(f->c.group, 5000);
        struct kv_server_status lead, st;
        bool caught_up = false;
        for (int i = 0; i < 100 && !caught_up; i++) {
            if (kv_client_status(kc, (unsigned)next, &lead) == 0 &&
                kv_client_status(kc, (unsigned)old, &st) == 0 && st.applied >= lead.commit &&
                lead.commit > 0) {
                caught_up = true;
            } else {
                sleep_ms(50);
            }
        }
        kv_client_free(kc);
        assert_true(caught_up);
    }
}

static void test_follower_far_behind_catches_up_by_snapshot(void **state)
{
    struct fixture *f = *state;
    int leader;
    unsigned lag;
    char errmsg[RFS_ERRMSG_SIZE];
    struct kv_server_status st, lead;
    bool caught_up = false;
    skip_without_bins(f);
    leader = wait_leader(f);
    lag = ((unsigned)leader + 1) % 3;
    assert_int_equal(cluster_stop_server(&f->c, lag), 0);
    f->kc = client_for(f->c.group, 10000);
    for (int i = 0; i < 600; i++) {
        char key[32];
        snprintf(key, sizeof key, "snap-%d", i % 50);
        assert_int_equal(kv_client_put(f->kc, key, strlen(key), "v", 1, NULL, errmsg), 0);
    }
    assert_int_equal(cluster_start_server(&f->c, lag, errmsg), 0);
    for (int i = 0; i < 200 && !caught_up; i++) {
        if (kv_client_status(f->kc, (unsigned)leader, &lead) == 0 &&
            kv_client_status(f->kc, lag, &st) == 0 && st.applied >= lead.commit) {
            caught_up = true;
        } else {
            sleep_ms(50);
        }
    }
    if (!caught_up) {
        cluster_dump_logs(&f->c);
    }
    assert_true(caught_up);
    /* It got there through the leader's snapshot (its own log could not have). */
    {
        char logp[300];
        char cmd[400];
        cluster_log_path(&f->c, lag, logp, sizeof logp);
        snprintf(cmd, sizeof cmd, "grep -q 'installing snapshot' '%s'", logp);
        assert_int_equal(system(cmd), 0);
    }
    assert_true(st.snapshot_index > 0);
}

static void test_paused_server_resumes_and_rejoins(void **state)
{
    struct fixture *f = *state;
    int leader;
    int next;
    skip_without_bins(f);
    leader = wait_leader(f);
    start_load(f, 4);
    sleep_ms(500);
    cluster_signal(&f->c, (unsigned)leader, SIGSTOP);
    sleep_ms(1500); /* many election timeouts (150-300 ms) */
    next = wait_leader(f);
    assert_int_not_equal(next, leader);
    cluster_signal(&f->c, (unsigned)leader, SIGCONT);
    sleep_ms(1500);
    finish_load(f);
    assert_true(proc_alive(f->c.pid[leader]));
}

struct direct_get {
    struct kv_client *kc;
    int rv;
    struct kv_client_value v;
};

static void *direct_get_thread(void *arg)
{
    struct direct_get *g = arg;
    char errmsg[RFS_ERRMSG_SIZE];
    g->rv = kv_client_get(g->kc, "lease", 5, &g->v, errmsg);
    return NULL;
}

/* A leader answers reads from its lease without asking the others; a process that was
 * stopped must see how long it was stopped before it does. Here the leader is cut off and
 * stopped; the others elect a new leader, which commits a new value; a read then waits in the
 * stopped leader's socket, and the leader resumes. Counting ticks by timer callbacks, it would
 * think one tick had passed and answer the old value from its lease. */
static void test_paused_leader_does_not_read_from_an_expired_lease(void **state)
{
    struct fixture *f = *state;
    char errmsg[RFS_ERRMSG_SIZE];
    char direct[64];
    struct direct_get g;
    pthread_t th;
    int old, next;
    skip_without_bins(f);
    old = wait_leader(f);
    f->kc = client_for(f->c.group, 10000);
    assert_int_equal(kv_client_put(f->kc, "lease", 5, "old", 3, NULL, errmsg), 0);
    memset(&g, 0, sizeof g);
    snprintf(direct, sizeof direct, "127.0.0.1:%d", f->c.port[old]);
    g.kc = client_for(direct, 2000);
    /* connected, and the lease in use: the old leader answers at once */
    assert_int_equal(kv_client_get(g.kc, "lease", 5, &g.v, errmsg), 0);
    assert_true(g.v.found && g.v.value.len == 3 && memcmp(g.v.value.base, "old", 3) == 0);
    kv_client_value_clear(&g.v);
    assert_int_equal(cluster_isolate(&f->c, (unsigned)old), 0);
    cluster_signal(&f->c, (unsigned)old, SIGSTOP);
    sleep_ms(1500);
    next = wait_leader(f);
    assert_int_not_equal(next, old);
    assert_int_equal(kv_client_put(f->kc, "lease", 5, "new", 3, NULL, errmsg), 0);
    assert_int_equal(pthread_create(&th, NULL, direct_get_thread, &g), 0);
    sleep_ms(300); /* the request waits in the stopped leader's socket */
    cluster_signal(&f->c, (unsigned)old, SIGCONT);
    assert_int_equal(pthread_join(th, NULL), 0);
    if (g.rv == 0) {
        /* an answer is only allowed if it is the value acknowledged before the read */
        assert_true(g.v.found);
        assert_int_equal(g.v.value.len, 3);
        assert_memory_equal(g.v.value.base, "new", 3);
    }
    kv_client_value_clear(&g.v);
    kv_client_free(g.kc);
    assert_int_equal(cluster_heal(&f->c), 0);
}

static void test_linearizable_while_links_drop_and_delay(void **state)
{
    struct fixture *f = *state;
    skip_without_bins(f);
    wait_leader(f);
    assert_int_equal(cluster_all_links(&f->c, "delay %s 0 5"), 0);
    assert_int_equal(cluster_all_links(&f->c, "drop %s 3"), 0);
    {
        char reply[128];
        for (unsigned i = 0; i < 3; i++) {
            proxy_ctl_cmd(&f->c.proxy, reply, sizeof reply, "drop c%u 5", i);
        }
    }
    start_load(f, 6);
    sleep_ms(4000);
    assert_int_equal(cluster_heal(&f->c), 0);
    sleep_ms(1000);
    finish_load(f);
    assert_true(atomic_load(&f->w.ok) > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_leader_killed_under_load_loses_nothing, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_full_restart_keeps_every_acknowledged_write,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_servers_start_after_losing_unsynced_commit_records,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_restart_after_compactions_without_snapshot_bytes,
                                        setup_snapshots, teardown),
        cmocka_unit_test_setup_teardown(test_leader_cut_off_in_minority_stops_serving,
                                        setup_proxied, teardown),
        cmocka_unit_test_setup_teardown(test_follower_far_behind_catches_up_by_snapshot,
                                        setup_snapshots, teardown),
        cmocka_unit_test_setup_teardown(test_paused_server_resumes_and_rejoins, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_paused_leader_does_not_read_from_an_expired_lease,
                                        setup_proxied, teardown),
        cmocka_unit_test_setup_teardown(test_linearizable_while_links_drop_and_delay, setup_proxied,
                                        teardown),
    };
    rfs_log_set_level(RFS_LOG_ERROR); /* the client library's reconnect chatter */
    return cmocka_run_group_tests_name("shard_faults", tests, NULL, NULL);
}
