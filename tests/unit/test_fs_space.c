/* A full disk, for real: the shard servers keep their data on a small tmpfs (mounted by the
 * test) and run with --min-free-mb, so that the cluster refuses writes of data before the
 * disk is full. Through a raftfs mount, a file written a MiB at a time must end with ENOSPC
 * (from write, fsync or close) and nothing else; what was written before stays readable and
 * correct; metadata changes (mkdir, create, rename, unlink) still work from the reserve; no
 * server dies. Restarted with a smaller reserve, the servers take writes again and every
 * byte is still there.
 *
 * Needs root (tmpfs and FUSE mounts), /dev/fuse and fusermount3; says SKIPPED otherwise.
 * The teardown stops every process by pid and unmounts the FUSE mount and the tmpfs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"
#include "tests/lib/sharded.h"
#include "tests/unit/mount_helper.h"

#define DISK_MB    192 /* the tmpfs all servers keep their data on */
#define RESERVE_MB 120 /* --min-free-mb: the cluster refuses data below this */
#define MIB        (1u << 20)
#define MAX_MIB    (DISK_MB + 16) /* never write more than the disk could ever hold */

struct fixture {
    bool skipped;
    bool disk_mounted;
    struct sharded s;
    char bin[300];
    char dir[256];
    char disk[320];
    char mnt[320];
    char log[320];
    pid_t pid;
};

static void fill(unsigned char *buf, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *bins = getenv("RAFTFS_BIN_DIR");
    const char *old_tmp = getenv("TMPDIR");
    char why[512], errmsg[RFS_ERRMSG_SIZE], extra[64], opts[32], saved[512] = "";
    int rv;
    *state = f;
    snprintf(f->bin, sizeof f->bin, "%s/raftfs-mount", bins != NULL ? bins : "build/asan/bin");
    if (!cluster_bins_present(why, sizeof why) ||
        !mount_helper_usable(f->bin, NULL, why, sizeof why)) {
        f->skipped = true;
        printf("SKIPPED: %s\n", why);
        return 0;
    }
    if (tmpdir_make("raftfs-space", f->dir, sizeof f->dir, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        return -1;
    }
    snprintf(f->disk, sizeof f->disk, "%s/disk", f->dir);
    snprintf(f->mnt, sizeof f->mnt, "%s/m", f->dir);
    snprintf(f->log, sizeof f->log, "%s/mount.log", f->dir);
    snprintf(opts, sizeof opts, "size=%um", DISK_MB);
    if (mkdir(f->disk, 0700) != 0 || mount("raftfs-test", f->disk, "tmpfs", 0, opts) != 0) {
        f->skipped = true;
        printf("SKIPPED: cannot mount a tmpfs at %s (%s)\n", f->disk, strerror(errno));
        return 0;
    }
    f->disk_mounted = true;
    /* every server's data directory goes under TMPDIR: the small disk */
    if (old_tmp != NULL) {
        snprintf(saved, sizeof saved, "%s", old_tmp);
    }
    setenv("TMPDIR", f->disk, 1);
    snprintf(extra, sizeof extra, "--min-free-mb %u", RESERVE_MB);
    rv = sharded_start_joined(&f->s, 2, 1, false, extra, 30000, errmsg);
    if (saved[0] != '\0') {
        setenv("TMPDIR", saved, 1);
    } else {
        unsetenv("TMPDIR");
    }
    if (rv != 0 ||
        mount_helper_start(f->bin, f->s.meta.group, f->mnt, f->log, &f->pid, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        mount_helper_dump_log(f->log);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int bad = 0;
    if (f->pid != 0 || mount_helper_is_mount_point(f->mnt)) {
        bad += mount_helper_teardown(f->mnt, &f->pid, f->log);
    }
    bad += sharded_destroy(&f->s);
    if (f->disk_mounted && umount2(f->disk, MNT_DETACH) != 0) {
        fprintf(stderr, "teardown: umount %s: %s\n", f->disk, strerror(errno));
        bad++;
    }
    if (f->dir[0] != '\0') {
        if (mount_helper_is_mount_point(f->mnt)) {
            fprintf(stderr, "teardown: %s is still mounted; left in place\n", f->mnt);
            bad++;
        } else if (getenv("RAFTFS_KEEP_TEST_DIRS") == NULL) {
            tmpdir_remove(f->dir);
        }
    }
    free(f);
    return bad == 0 ? 0 : -1;
}

/* Replace the --min-free-mb value in a server's flags (the rest: --gid, --meta, ...). */
static void set_reserve(char *extra, size_t cap, unsigned mb)
{
    char *p = strstr(extra, "--min-free-mb "), rest[256], out[600];
    size_t head;
    assert_non_null(p);
    head = (size_t)(p - extra);
    p += strlen("--min-free-mb ");
    p += strspn(p, "0123456789");
    snprintf(rest, sizeof rest, "%s", p);
    snprintf(out, sizeof out, "%.*s--min-free-mb %u%s", (int)head, extra, mb, rest);
    assert_true(strlen(out) < cap);
    memcpy(extra, out, strlen(out) + 1);
}

static void write_all(const char *path, const unsigned char *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    assert_int_equal(fsync(fd), 0);
    assert_int_equal(close(fd), 0);
}

static void expect_contents(const char *path, const unsigned char *data, size_t n)
{
    unsigned char *got = malloc(n + 1);
    int fd = open(path, O_RDONLY);
    size_t have = 0;
    ssize_t r;
    assert_non_null(got);
    assert_true(fd >= 0);
    while (have <= n && (r = read(fd, got + have, n + 1 - have)) > 0) {
        have += (size_t)r;
    }
    assert_int_equal(close(fd), 0);
    assert_int_equal(have, n);
    assert_memory_equal(got, data, n);
    free(got);
}

/* Write MiB after MiB (fsync every 4) until the cluster refuses; returns the MiB that went
 * in before the refusal, and checks the refusal is ENOSPC. */
static unsigned fill_until_refused(const char *path, const unsigned char *chunk)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    unsigned done = 0;
    int err = 0;
    assert_true(fd >= 0);
    for (unsigned i = 0; i < MAX_MIB && err == 0; i++) {
        if (write(fd, chunk, MIB) != (ssize_t)MIB) {
            err = errno;
        } else if (i % 4 == 3 && fsync(fd) != 0) {
            err = errno;
        } else {
            done++;
        }
    }
    if (close(fd) != 0 && err == 0) {
        err = errno;
    }
    printf("refused after %u MiB: %s\n", done, strerror(err));
    assert_int_equal(err, ENOSPC);
    return done;
}

static void test_full_disk_refuses_data_keeps_metadata_and_data(void **state)
{
    struct fixture *f = *state;
    char keep[400], big[400], d[400], small[400], moved[400], errmsg[RFS_ERRMSG_SIZE];
    unsigned char *kept = malloc(3 * MIB), *chunk = malloc(MIB);
    unsigned mib;
    if (f->skipped) {
        skip();
    }
    assert_non_null(kept);
    assert_non_null(chunk);
    fill(kept, 3 * MIB, 1);
    fill(chunk, MIB, 2);
    snprintf(keep, sizeof keep, "%s/keep", f->mnt);
    snprintf(big, sizeof big, "%s/big", f->mnt);
    snprintf(d, sizeof d, "%s/d", f->mnt);
    snprintf(small, sizeof small, "%s/d/small", f->mnt);
    snprintf(moved, sizeof moved, "%s/d/moved", f->mnt);
    write_all(keep, kept, 3 * MIB);

    mib = fill_until_refused(big, chunk);
    assert_true(mib < MAX_MIB);

    /* what was there is intact; metadata changes go on from the reserve */
    expect_contents(keep, kept, 3 * MIB);
    assert_int_equal(mkdir(d, 0755), 0);
    write_all(small, (const unsigned char *)"tiny", 4);
    assert_int_equal(rename(small, moved), 0);
    expect_contents(moved, (const unsigned char *)"tiny", 4);
    assert_int_equal(unlink(moved), 0);
    /* a write of data is still refused (by write, or when it is flushed by fsync) */
    {
        int fd = open(big, O_WRONLY | O_APPEND);
        int rv;
        assert_true(fd >= 0);
        rv = write(fd, chunk, MIB) == (ssize_t)MIB ? fsync(fd) : -1;
        assert_int_equal(rv, -1);
        assert_int_equal(errno, ENOSPC);
        close(fd);
    }
    /* no server died */
    for (unsigned g = 0; g < 2; g++) {
        assert_true(f->s.g[g].pid[0] != 0 && kill(f->s.g[g].pid[0], 0) == 0);
    }

    /* A smaller reserve (as after freeing space): writes go in again, nothing was lost. */
    for (unsigned g = 0; g < 2; g++) {
        assert_int_equal(cluster_stop_server(&f->s.g[g], 0), 0);
        set_reserve(f->s.g[g].extra, sizeof f->s.g[g].extra, 8);
        if (cluster_start_server(&f->s.g[g], 0, errmsg) != 0) {
            fail_msg("restart: %s", errmsg);
        }
        if (cluster_wait_leader(&f->s.g[g], 20000) < 0) {
            cluster_dump_logs(&f->s.g[g]);
            fail_msg("group %u has no leader after its restart", g + 1);
        }
    }
    fill(chunk, MIB, 3);
    {
        char again[400];
        snprintf(again, sizeof again, "%s/again", f->mnt);
        write_all(again, chunk, MIB);
        expect_contents(again, chunk, MIB);
    }
    expect_contents(keep, kept, 3 * MIB);
    free(kept);
    free(chunk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_disk_refuses_data_keeps_metadata_and_data),
    };
    rfs_log_set_level(RFS_LOG_ERROR);
    return cmocka_run_group_tests(tests, setup, teardown);
}
