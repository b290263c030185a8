/* Blob files (kv/blob.h) in a real 3-server group of raftfs-shard processes: large values
 * acknowledged to the client survive kill -9 of every server at once; a damaged blob record
 * stops the server that reads it with a message naming the file, and the group goes on
 * serving the value whole from the others; deleted values' files go away.
 *
 * Every wait is bounded; the servers are stopped by the pids the test started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "kv/client.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"

#define N_SERVERS 3
#define GROUP_ID  1
#define N_KEYS    48
#define VAL_LEN   (64u << 10)

struct fixture {
    bool skip;
    char why[300];
    struct cluster c;
    bool started;
    struct kv_client *kc;
    char errmsg[RFS_ERRMSG_SIZE];
};

static int client_open(struct fixture *f)
{
    struct kv_client_options o;
    char group[512];

    memset(&o, 0, sizeof o);
    snprintf(group, sizeof group, "%s", f->c.group);
    if (kv_client_parse_servers(group, &o, f->errmsg) != 0) {
        return -1;
    }
    o.group_id = GROUP_ID;
    o.timeout_ms = 15000;
    o.attempt_ms = 1000;
    return kv_client_new(&f->kc, &o, f->errmsg);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    if (!cluster_bins_present(f->why, sizeof f->why)) {
        f->skip = true;
        return 0;
    }
    f->started = true;
    if (cluster_start(&f->c, N_SERVERS, false, NULL, f->errmsg) != 0 || client_open(f) != 0) {
        fprintf(stderr, "setup: %s\n", f->errmsg);
        cluster_destroy(&f->c);
        free(f);
        *state = NULL;
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f == NULL) {
        return 0;
    }
    kv_client_free(f->kc);
    if (f->started) {
        cluster_destroy(&f->c);
    }
    free(f);
    return 0;
}

#define SKIP_IF_NEEDED(f)                                                                          \
    do {                                                                                           \
        if ((f)->skip) {                                                                           \
            printf("SKIPPED: %s\n", (f)->why);                                                     \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void value_of(unsigned n, unsigned gen, char *out)
{
    for (size_t i = 0; i < VAL_LEN; i++) {
        out[i] = (char)(n * 17 + gen * 5 + i * 31 + (i >> 9));
    }
}

static void put(struct fixture *f, unsigned n, unsigned gen)
{
    static char val[VAL_LEN];
    char key[32];
    value_of(n, gen, val);
    snprintf(key, sizeof key, "blob%03u", n);
    if (kv_client_put(f->kc, key, strlen(key), val, VAL_LEN, NULL, f->errmsg) != 0) {
        fail_msg("put %s: %s", key, f->errmsg);
    }
}

static void expect(struct fixture *f, unsigned n, unsigned gen)
{
    static char want[VAL_LEN];
    struct kv_client_value v;
    char key[32];
    snprintf(key, sizeof key, "blob%03u", n);
    if (kv_client_get(f->kc, key, strlen(key), &v, f->errmsg) != 0) {
        fail_msg("get %s: %s", key, f->errmsg);
    }
    value_of(n, gen, want);
    assert_true(v.found);
    assert_int_equal(v.value.len, VAL_LEN);
    assert_memory_equal(v.value.base, want, VAL_LEN);
    kv_client_value_clear(&v);
}

/* Blob files in server i's database directory: how many, and (if path) the first one's
 * path. */
static unsigned blob_files(struct fixture *f, unsigned i, char *path, size_t cap)
{
    char dir[512];
    unsigned n = 0;
    struct dirent *e;
    DIR *d;
    snprintf(dir, sizeof dir, "%s/s%u/db", f->c.dir, i);
    d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "blob-", 5) == 0) {
            if (n++ == 0 && path != NULL) {
                int w = snprintf(path, cap, "%s/%s", dir, e->d_name);
                assert_true(w > 0 && (size_t)w < cap);
            }
        }
    }
    closedir(d);
    return n;
}

static unsigned long long tree_bytes_at(const char *dir)
{
    unsigned long long total = 0;
    struct dirent *e;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        char p[1024];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            (size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= sizeof p ||
            lstat(p, &st) != 0) {
            continue;
        }
        total += S_ISDIR(st.st_mode) ? tree_bytes_at(p) : (unsigned long long)st.st_size;
    }
    closedir(d);
    return total;
}

/* Bytes of every file under server i's data directory (Raft log, snapshot, LevelDB, blobs). */
static unsigned long long tree_bytes(struct fixture *f, unsigned i)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/s%u", f->c.dir, i);
    return tree_bytes_at(dir);
}

static void test_values_survive_kill_9_of_every_server(void **state)
{
    struct fixture *f = *state;
    SKIP_IF_NEEDED(f);

    for (unsigned n = 0; n < N_KEYS; n++) {
        put(f, n, 0);
    }
    for (unsigned i = 0; i < N_SERVERS; i++) {
        assert_true(blob_files(f, i, NULL, 0) >= 1);
        cluster_signal(&f->c, i, SIGKILL);
    }
    for (unsigned i = 0; i < N_SERVERS; i++) {
        if (cluster_start_server(&f->c, i, f->errmsg) != 0) {
            fail_msg("restart %u: %s", i, f->errmsg);
        }
    }
    assert_true(cluster_wait_leader(&f->c, 20000) >= 0);
    for (unsigned n = 0; n < N_KEYS; n++) {
        expect(f, n, 0);
    }
    assert_int_equal(cluster_sanitizer_errors(&f->c), 0);
}

static void test_damaged_record_stops_the_reader_and_others_serve(void **state)
{
    struct fixture *f = *state;
    char path[512];
    unsigned char c;
    int leader, fd;
    SKIP_IF_NEEDED(f);

    for (unsigned n = 0; n < 4; n++) {
        put(f, n, 0);
    }
    leader = cluster_wait_leader(&f->c, 10000);
    assert_true(leader >= 0);
    /* The leader serves reads: flip a byte inside the first value of its first file. */
    assert_true(blob_files(f, (unsigned)leader, path, sizeof path) >= 1);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, 8 + 100), 1);
    c ^= 0xff;
    assert_int_equal(pwrite(fd, &c, 1, 8 + 100), 1);
    close(fd);

    /* The read goes to the leader, which finds the damage and stops; the client retries at
     * the new leader and gets the value whole. */
    expect(f, 0, 0);
    for (unsigned i = 0; i < 100 && !cluster_log_contains(&f->c, (unsigned)leader, "stopping");
         i++) {
        usleep(50 * 1000);
    }
    assert_true(cluster_log_contains(&f->c, (unsigned)leader, "stopping"));
    assert_true(cluster_log_contains(&f->c, (unsigned)leader, "checksum"));
    assert_true(cluster_log_contains(&f->c, (unsigned)leader, "blob-00000001"));
    for (unsigned n = 1; n < 4; n++) {
        expect(f, n, 0);
    }
}

static void test_deleted_values_files_go(void **state)
{
    struct fixture *f = *state;
    static char val[1 << 20];
    const unsigned n_big = 72; /* 72 MiB: past the 64 MiB at which a file is sealed */
    SKIP_IF_NEEDED(f);

    memset(val, 'v', sizeof val);
    for (unsigned n = 0; n < n_big; n++) {
        char key[32];
        snprintf(key, sizeof key, "mib%03u", n);
        if (kv_client_put(f->kc, key, strlen(key), val, sizeof val, NULL, f->errmsg) != 0) {
            fail_msg("put %s: %s", key, f->errmsg);
        }
    }
    /* A put returns once the leader applied it; a follower may still be applying (or
     * installing a snapshot of) the last values, so give every server up to 30 s to reach
     * its second file. */
    for (unsigned t = 0; t < 300; t++) {
        unsigned done = 0;
        for (unsigned i = 0; i < N_SERVERS; i++) {
            done += blob_files(f, i, NULL, 0) >= 2;
        }
        if (done == N_SERVERS) {
            break;
        }
        usleep(100 * 1000);
    }
    for (unsigned i = 0; i < N_SERVERS; i++) {
        unsigned n = blob_files(f, i, NULL, 0);
        if (n < 2) {
            fail_msg("server %u has %u blob file(s) 30 s after 72 MiB of puts (want 2 or more)", i,
                     n);
        }
    }
    for (unsigned n = 0; n < n_big; n++) {
        char key[32];
        snprintf(key, sizeof key, "mib%03u", n);
        assert_int_equal(kv_client_delete(f->kc, key, strlen(key), NULL, f->errmsg), 0);
    }
    /* The collector runs every 2 s at most (and no more often than 20 times its own last run,
     * which is slow under a sanitizer): within 30 s every server is down to one newest file,
     * nearly empty (the one that held the last values is sealed and goes too). */
    for (unsigned t = 0; t < 300; t++) {
        unsigned done = 0;
        for (unsigned i = 0; i < N_SERVERS; i++) {
            char path[512];
            struct stat st;
            done += blob_files(f, i, path, sizeof path) == 1 && stat(path, &st) == 0 &&
                    st.st_size < (1 << 20);
        }
        if (done == N_SERVERS) {
            break;
        }
        usleep(100 * 1000);
    }
    for (unsigned i = 0; i < N_SERVERS; i++) {
        char path[512];
        struct stat st;
        assert_int_equal(blob_files(f, i, path, sizeof path), 1);
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size < (1 << 20));
    }
    /* The Raft logs: 72 MiB of entries made a snapshot (by bytes) and dropped the segments
     * behind it; the state then shrank to nothing, so a new, small snapshot replaced the big
     * one. Every server's whole data directory is back under 80 MiB (one 64 MiB segment, the
     * one being written, stays). */
    for (unsigned t = 0; t < 100; t++) {
        unsigned long long most = 0;
        for (unsigned i = 0; i < N_SERVERS; i++) {
            unsigned long long b = tree_bytes(f, i);
            most = b > most ? b : most;
        }
        if (most < (80ull << 20)) {
            break;
        }
        usleep(100 * 1000);
    }
    for (unsigned i = 0; i < N_SERVERS; i++) {
        unsigned long long b = tree_bytes(f, i);
        printf("server %u: %llu MiB in its data directory after the deletes\n", i, b >> 20);
        assert_true(b < (80ull << 20));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_values_survive_kill_9_of_every_server, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_damaged_record_stops_the_reader_and_others_serve,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_values_files_go, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
