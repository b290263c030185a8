/* Files unlinked while open (fs/orphan.h), through real mounts of one cluster: the open
 * descriptors go on reading, writing and truncating; another mount no longer lists the name;
 * the data goes at the last close (the block keys are checked in the cluster), or, for a file
 * no mount holds open, after the grace period; a mount daemon killed while holding an unlinked
 * file open leaves it to another mount's collector.
 *
 * Both mounts run with --orphan-grace-ms 4000 (past two collector scans) and --lease-ms 1000.
 * Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/err.h"
#include "fs/keys.h"
#include "kv/client.h"
#include "tests/lib/sharded.h"
#include "tests/unit/mount_fixture.h"
#include "tests/unit/mount_helper.h"

#define GRACE_MS "4000"
#define DATA_LEN (3u << 20) /* three stripes */
#define WAIT_MS  20000

struct fixture {
    struct mount_fixture m;
    char mnt2[320], log2[320];
    pid_t pid2;
    struct kv_client *kc; /* routed: to look at the keys */
};

static const char *const mount_args[] = {"--orphan-grace-ms", GRACE_MS, "--lease-ms", "1000", NULL};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char errmsg[RFS_ERRMSG_SIZE];
    assert_non_null(f);
    *state = f;
    if (mount_fixture_start(&f->m, "test_fs_orphans", NULL, mount_args) != 0) {
        return -1;
    }
    if (f->m.skipped) {
        return 0;
    }
    snprintf(f->mnt2, sizeof f->mnt2, "%s/m2", f->m.dir);
    snprintf(f->log2, sizeof f->log2, "%s/mount2.log", f->m.dir);
    if (mount_helper_start_args(f->m.bin, f->m.s.meta.group, f->mnt2, mount_args, f->log2, &f->pid2,
                                errmsg) != 0 ||
        sharded_client(&f->kc, f->m.s.meta.group, 0, true, 10000, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int problems = 0;
    kv_client_free(f->kc);
    if (!f->m.skipped) {
        problems += mount_helper_teardown(f->mnt2, &f->pid2, f->log2);
    }
    problems += mount_fixture_stop(&f->m, f->mnt2);
    free(f);
    return problems == 0 ? 0 : -1;
}

#define SKIP_IF_NEEDED(f)                                                                          \
    do {                                                                                           \
        if ((f)->m.skipped) {                                                                      \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void path_of(const char *mnt, const char *rel, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", mnt, rel);
    assert_true(n > 0 && (size_t)n < cap);
}

static void fill(char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (char)(seed * 7 + i * 13 + (i >> 12));
    }
}

/* How many data blocks of ino the cluster holds (the first stripes). */
static size_t blocks_of(struct fixture *f, uint64_t ino)
{
    char lo[FS_KEY_MAX], hi[FS_KEY_MAX + 1], errmsg[RFS_ERRMSG_SIZE];
    size_t n = 0;
    for (uint64_t stripe = 0; stripe < 4; stripe++) {
        struct kv_scan_result res;
        size_t lolen = fs_key_block(lo, ino, stripe * FS_STRIPE_BLOCKS);
        size_t hilen = fs_key_block(hi, ino, stripe * FS_STRIPE_BLOCKS + FS_STRIPE_BLOCKS - 1);
        hi[hilen++] = '\0';
        if (kv_client_scan(f->kc, lo, lolen, hi, hilen, 100, &res, errmsg) != 0) {
            fail_msg("scan: %s", errmsg);
        }
        n += res.n;
        kv_scan_result_clear(&res);
    }
    return n;
}

static bool inode_exists(struct fixture *f, uint64_t ino)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_client_value v;
    bool found;
    if (kv_client_get(f->kc, key, fs_key_inode(key, ino), &v, errmsg) != 0) {
        fail_msg("get: %s", errmsg);
    }
    found = v.found;
    kv_client_value_clear(&v);
    return found;
}

/* Wait until ino's inode and blocks are gone; false after WAIT_MS. */
static bool wait_gone(struct fixture *f, uint64_t ino)
{
    for (unsigned i = 0; i < WAIT_MS / 100; i++) {
        if (!inode_exists(f, ino) && blocks_of(f, ino) == 0) {
            return true;
        }
        usleep(100 * 1000);
    }
    return false;
}

static bool listed(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        found |= strcmp(e->d_name, name) == 0;
    }
    closedir(d);
    return found;
}

static void test_unlinked_while_open_stays_usable_until_the_last_close(void **state)
{
    struct fixture *f = *state;
    static char data[DATA_LEN], back[DATA_LEN];
    char path[400], path2[400];
    struct stat st;
    int fd, fd2;
    uint64_t ino;
    SKIP_IF_NEEDED(f);

    path_of(f->m.mnt, "open-then-unlinked", path, sizeof path);
    path_of(f->mnt2, "open-then-unlinked", path2, sizeof path2);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    fd2 = open(path, O_RDONLY); /* a second descriptor on the same mount */
    assert_true(fd2 >= 0);
    fill(data, sizeof data, 1);
    assert_int_equal(write(fd, data, sizeof data), (ssize_t)sizeof data);
    assert_int_equal(fsync(fd), 0);
    assert_int_equal(fstat(fd, &st), 0);
    ino = st.st_ino;
    assert_true(blocks_of(f, ino) >= 48);

    assert_int_equal(unlink(path), 0);
    /* Gone by name on both mounts (the other within its entry timeout). */
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_false(listed(f->m.mnt, "open-then-unlinked"));
    for (unsigned i = 0; i < 50 && stat(path2, &st) == 0; i++) {
        usleep(100 * 1000);
    }
    assert_int_equal(stat(path2, &st), -1);
    assert_false(listed(f->mnt2, "open-then-unlinked"));

    /* Still readable, writable and truncatable through the descriptors. */
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_nlink, 0);
    assert_int_equal(st.st_size, DATA_LEN);
    assert_int_equal(pread(fd2, back, sizeof back, 0), (ssize_t)sizeof back);
    assert_memory_equal(back, data, sizeof data);
    /* Past the grace period: the other mount's collector leaves it alone (this mount's hold,
     * written with the unlink). */
    usleep(6 * 1000 * 1000);
    fill(data, 4096, 2);
    assert_int_equal(pwrite(fd, data, 4096, 1000), 4096);
    assert_int_equal(ftruncate(fd, 2u << 20), 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 2u << 20);
    assert_int_equal(pread(fd2, back, sizeof back, 0), (ssize_t)(2u << 20));
    assert_memory_equal(back + 1000, data, 4096);
    assert_true(inode_exists(f, ino));
    assert_true(blocks_of(f, ino) >= 32);

    /* The last close deletes it. */
    assert_int_equal(close(fd), 0);
    assert_true(inode_exists(f, ino)); /* fd2 still holds it */
    assert_int_equal(close(fd2), 0);
    assert_true(wait_gone(f, ino));
}

static void test_unlinked_file_not_open_goes_after_the_grace_period(void **state)
{
    struct fixture *f = *state;
    static char data[DATA_LEN];
    char path[400];
    struct stat st;
    int fd;
    uint64_t ino;
    SKIP_IF_NEEDED(f);

    /* Written through one mount, unlinked through the other. */
    path_of(f->m.mnt, "plain", path, sizeof path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    fill(data, sizeof data, 3);
    assert_int_equal(write(fd, data, sizeof data), (ssize_t)sizeof data);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(close(fd), 0);
    ino = st.st_ino;
    assert_true(blocks_of(f, ino) >= 48);
    path_of(f->mnt2, "plain", path, sizeof path);
    assert_int_equal(unlink(path), 0);
    assert_true(wait_gone(f, ino));
}

static void test_open_on_one_mount_unlinked_on_the_other(void **state)
{
    struct fixture *f = *state;
    static char data[DATA_LEN], back[DATA_LEN];
    char path[400], path2[400];
    struct stat st;
    uint64_t ino;
    int fd;
    SKIP_IF_NEEDED(f);

    path_of(f->m.mnt, "shared", path, sizeof path);
    path_of(f->mnt2, "shared", path2, sizeof path2);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    fill(data, sizeof data, 5);
    assert_int_equal(write(fd, data, sizeof data), (ssize_t)sizeof data);
    assert_int_equal(fsync(fd), 0);
    assert_int_equal(fstat(fd, &st), 0);
    ino = st.st_ino;
    for (unsigned i = 0; i < 50 && stat(path2, &st) != 0; i++) {
        usleep(100 * 1000);
    }
    assert_int_equal(unlink(path2), 0);
    /* Mount 1's collector finds the orphan open here and holds it: past the grace period
     * (and past mount 2's look at it) it still reads whole. */
    usleep(7 * 1000 * 1000);
    assert_int_equal(pread(fd, back, sizeof back, 0), (ssize_t)sizeof back);
    assert_memory_equal(back, data, sizeof data);
    assert_true(inode_exists(f, ino));
    assert_int_equal(close(fd), 0);
    assert_true(wait_gone(f, ino));
}

static void test_killed_holder_leaves_it_to_another_collector(void **state)
{
    struct fixture *f = *state;
    static char data[DATA_LEN];
    char path[400], cmd[800], out[256];
    uint64_t ino;
    struct stat st;
    SKIP_IF_NEEDED(f);

    /* A child process on mount 2 writes, unlinks and keeps the file open; then mount 2's
     * daemon is killed: nobody ever closes it there. */
    path_of(f->mnt2, "held", path, sizeof path);
    fill(data, sizeof data, 4);
    {
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, sizeof data), (ssize_t)sizeof data);
        assert_int_equal(fsync(fd), 0);
        assert_int_equal(fstat(fd, &st), 0);
        ino = st.st_ino;
        assert_int_equal(unlink(path), 0);
        assert_int_equal(kill(f->pid2, SIGKILL), 0);
        usleep(200 * 1000);
        close(fd); /* ENOTCONN: the daemon is gone */
    }
    snprintf(cmd, sizeof cmd, "fusermount3 -uz %s", f->mnt2);
    (void)mount_helper_sh(f->m.dir, cmd, out, sizeof out);
    (void)mount_helper_stop(f->mnt2, &f->pid2); /* reaps the daemon */
    assert_true(inode_exists(f, ino));
    /* Mount 1's collector finds the orphan past its grace period. */
    assert_true(wait_gone(f, ino));
}

/* Bytes of the files in dir (not recursive). */
static unsigned long long dir_bytes(const char *dir)
{
    unsigned long long total = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        char p[600];
        struct stat st;
        if (e->d_name[0] != '.' &&
            (size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < sizeof p &&
            stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            total += (unsigned long long)st.st_size;
        }
    }
    closedir(d);
    return total;
}

/* The state machines of both groups: LevelDB and blob files (not the Raft logs). */
static unsigned long long groups_bytes(struct fixture *f)
{
    unsigned long long total = 0;
    for (unsigned g = 0; g < 2; g++) {
        char dir[400];
        snprintf(dir, sizeof dir, "%s/s0/db", f->m.s.g[g].dir);
        total += dir_bytes(dir);
    }
    return total;
}

/* What df shows as used on mnt (the cluster's, fs/space.c). */
static unsigned long long df_used(const char *mnt)
{
    struct statvfs sv;
    assert_int_equal(statvfs(mnt, &sv), 0);
    return (unsigned long long)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
}

static void test_deleted_data_gives_the_space_back(void **state)
{
    struct fixture *f = *state;
    static char chunk[1 << 20];
    const unsigned mib = 200;
    unsigned long long before, full, after = 0, df_before, df_full, df_after = 0;
    char path[400];
    int fd;
    SKIP_IF_NEEDED(f);

    before = groups_bytes(f);
    df_before = df_used(f->mnt2);
    path_of(f->m.mnt, "big", path, sizeof path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    for (unsigned i = 0; i < mib; i++) {
        fill(chunk, sizeof chunk, i);
        assert_int_equal(write(fd, chunk, sizeof chunk), (ssize_t)sizeof chunk);
    }
    assert_int_equal(close(fd), 0);
    full = groups_bytes(f);
    assert_true(full >= before + (unsigned long long)mib * (1 << 20));
    /* df (the other mount's) sees it within seconds: a statfs answer is cached for a second */
    for (unsigned i = 0; i < 100; i++) {
        df_full = df_used(f->mnt2);
        if (df_full >= df_before + (unsigned long long)mib * (1 << 20)) {
            break;
        }
        usleep(100 * 1000);
    }
    assert_true(df_full >= df_before + (unsigned long long)mib * (1 << 20));
    assert_int_equal(unlink(path), 0);
    /* The unlink left no handle open here: the collector deletes it past the grace period
     * (4 s), and the shard servers' blob collectors free the files within seconds. */
    for (unsigned i = 0; i < 600; i++) {
        after = groups_bytes(f);
        if (after < before + (16ull << 20)) {
            break;
        }
        usleep(100 * 1000);
    }
    printf("groups' LevelDB and blob files: %llu MiB before, %llu MiB with the file, %llu MiB "
           "after deleting it\n",
           before >> 20, full >> 20, after >> 20);
    assert_true(after < before + (16ull << 20));
    /* df back to where it was: besides LevelDB and the blob files it counts the servers' Raft
     * logs and snapshots, which a new small snapshot (the state shrank) gives back */
    for (unsigned i = 0; i < 600; i++) {
        df_after = df_used(f->mnt2);
        if (df_after < df_before + (32ull << 20)) {
            break;
        }
        usleep(100 * 1000);
    }
    printf("df used: %llu MiB before, %llu MiB with the file, %llu MiB after deleting it\n",
           df_before >> 20, df_full >> 20, df_after >> 20);
    assert_true(df_after < df_before + (32ull << 20));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unlinked_while_open_stays_usable_until_the_last_close,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlinked_file_not_open_goes_after_the_grace_period,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_on_one_mount_unlinked_on_the_other, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_killed_holder_leaves_it_to_another_collector, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deleted_data_gives_the_space_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
