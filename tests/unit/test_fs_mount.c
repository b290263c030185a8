/* raftfs-mount over a real cluster (a meta group and two shard groups of one server each),
 * through the kernel: the shell session, POSIX errors of the namespace calls, renames,
 * links, symlinks, FIFOs, truncation and sparse writes, a large directory listing, a second
 * mount and a remount seeing the same tree, extended attributes, "..", and a mount of an
 * unreachable cluster that must fail without leaving a mount. Needs root, /dev/fuse and
 * fusermount3; skipped otherwise.
 *
 * One cluster and one mount (raftfs-mount -f as a child process) for the whole file; each
 * test works in a directory of its own. The teardown always stops the daemons by their pids,
 * unmounts with fusermount3 -u -z whatever is still mounted, and removes the directories. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"
#include "tests/lib/sharded.h"
#include "tests/unit/mount_fixture.h"
#include "tests/unit/mount_helper.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

#define STOP_WAIT_MS 15000

/* ---- helpers ---- */

static bool file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "r");
    char buf[8192];
    size_t n;
    if (fp == NULL) {
        return false;
    }
    n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return strstr(buf, needle) != NULL;
}

/* path = mnt/rel */
static const char *at(const struct mount_fixture *f, const char *rel, char *buf, size_t cap)
{
    if ((size_t)snprintf(buf, cap, "%s/%s", f->mnt, rel) >= cap) {
        fail_msg("path too long: %s/%s", f->mnt, rel);
    }
    return buf;
}

static void write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
    assert_int_equal(close(fd), 0);
}

/* The whole file (up to cap - 1 bytes, NUL-terminated); returns its length. */
static size_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    size_t n = 0;
    ssize_t r;
    assert_true(fd >= 0);
    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0) {
        n += (size_t)r;
    }
    buf[n] = '\0';
    assert_int_equal(close(fd), 0);
    return n;
}

static void make_dir(const struct mount_fixture *f, const char *rel)
{
    char p[512];
    assert_int_equal(mkdir(at(f, rel, p, sizeof p), 0755), 0);
}

/* ---- the fixture ---- */

static int setup(void **state)
{
    struct mount_fixture *f = calloc(1, sizeof *f);
    *state = f;
    return f == NULL ? -1 : mount_fixture_start(f, "raftfs-mount", NULL, NULL);
}

static int teardown(void **state)
{
    struct mount_fixture *f = *state;
    char m2[400];
    int bad;
    snprintf(m2, sizeof m2, "%s/m2", f->dir); /* test_remount_sees_the_same_tree's */
    bad = mount_fixture_stop(f, m2);
    free(f);
    return bad == 0 ? 0 : -1;
}

#define SKIP_IF_NEEDED(f)                                                                          \
    do {                                                                                           \
        if ((f)->skipped) {                                                                        \
            skip();                                                                                \
        }                                                                                          \
        if ((f)->pid == 0) {                                                                       \
            fail_msg("the mount is not running");                                                  \
        }                                                                                          \
    } while (0)

/* ---- tests ---- */

/* The acceptance session, as a new user would type it. */
static void test_shell_session_behaves_as_on_local_disk(void **state)
{
    struct mount_fixture *f = *state;
    char out[4096], p[512];
    SKIP_IF_NEEDED(f);
    assert_int_equal(mount_helper_sh(f->mnt,
                                     "umask 022; echo hi > a; cat a; mkdir d; mv a d/; "
                                     "ls -l d | tail -n +2 | awk '{print $1, $2, $5, $9}'; rm -r d",
                                     out, sizeof out),
                     0);
    assert_string_equal(out, "hi\n-rw-r--r-- 1 3 a\n");
    errno = 0;
    assert_int_equal(access(at(f, "d", p, sizeof p), F_OK), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(access(at(f, "a", p, sizeof p), F_OK), -1);
}

static void test_errors_are_posix(void **state)
{
    struct mount_fixture *f = *state;
    char p[512], q[512], name[300], longname[600];
    int fd;
    SKIP_IF_NEEDED(f);
    make_dir(f, "e");
    /* ENOENT */
    assert_int_equal(open(at(f, "e/missing", p, sizeof p), O_RDONLY), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(unlink(p), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(mkdir(at(f, "e/missing/x", p, sizeof p), 0755), -1);
    assert_int_equal(errno, ENOENT);
    /* EEXIST */
    make_dir(f, "e/d");
    assert_int_equal(mkdir(at(f, "e/d", p, sizeof p), 0755), -1);
    assert_int_equal(errno, EEXIST);
    fd = open(at(f, "e/f", p, sizeof p), O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(open(p, O_WRONLY | O_CREAT | O_EXCL, 0644), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(mkdir(p, 0755), -1);
    assert_int_equal(errno, EEXIST);
    /* ENOTDIR */
    assert_int_equal(open(at(f, "e/f/x", p, sizeof p), O_WRONLY | O_CREAT, 0644), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(mkdir(p, 0755), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(rmdir(at(f, "e/f", p, sizeof p)), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_null(opendir(p));
    assert_int_equal(errno, ENOTDIR);
    /* EISDIR */
    assert_int_equal(open(at(f, "e/d", p, sizeof p), O_WRONLY), -1);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(unlink(p), -1);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(rename(at(f, "e/d", p, sizeof p), at(f, "e/f", q, sizeof q)), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(rename(at(f, "e/f", p, sizeof p), at(f, "e/d", q, sizeof q)), -1);
    assert_int_equal(errno, EISDIR);
    /* ENOTEMPTY */
    make_dir(f, "e/d/sub");
    assert_int_equal(rmdir(at(f, "e/d", p, sizeof p)), -1);
    assert_true(errno == ENOTEMPTY);
    make_dir(f, "e/d2");
    assert_int_equal(rename(at(f, "e/d2", p, sizeof p), at(f, "e/d", q, sizeof q)), -1);
    assert_int_equal(errno, ENOTEMPTY);
    /* EINVAL: a directory into itself */
    assert_int_equal(rename(at(f, "e/d", p, sizeof p), at(f, "e/d/sub/x", q, sizeof q)), -1);
    assert_int_equal(errno, EINVAL);
    /* ENAMETOOLONG past 255 bytes; 255 is fine */
    memset(name, 'n', 255);
    name[255] = '\0';
    snprintf(longname, sizeof longname, "e/%s", name);
    fd = open(at(f, longname, p, sizeof p), O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(unlink(p), 0);
    snprintf(longname, sizeof longname, "e/%sn", name);
    assert_int_equal(open(at(f, longname, p, sizeof p), O_WRONLY | O_CREAT, 0644), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(mkdir(p, 0755), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(stat(p, &(struct stat){0}), -1);
    assert_int_equal(errno, ENAMETOOLONG);
}

static void test_rename_over_existing_and_noreplace(void **state)
{
    struct mount_fixture *f = *state;
    char p[512], q[512], buf[64];
    struct stat a, b;
    SKIP_IF_NEEDED(f);
    make_dir(f, "r");
    make_dir(f, "r/other");
    write_file(at(f, "r/src", p, sizeof p), "source");
    write_file(at(f, "r/dst", q, sizeof q), "old target");
    assert_int_equal(stat(p, &a), 0);
    /* over an existing file: the target now names the source's inode */
    assert_int_equal(rename(p, q), 0);
    assert_int_equal(stat(p, &b), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(stat(q, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino);
    assert_int_equal(read_file(q, buf, sizeof buf), 6);
    assert_string_equal(buf, "source");
    /* NOREPLACE: refused over a name, allowed to a free one (in another directory too) */
    write_file(at(f, "r/x", p, sizeof p), "x");
    assert_int_equal(renameat2(AT_FDCWD, p, AT_FDCWD, q, RENAME_NOREPLACE), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(
        renameat2(AT_FDCWD, p, AT_FDCWD, at(f, "r/other/y", q, sizeof q), RENAME_NOREPLACE), 0);
    assert_int_equal(stat(q, &b), 0);
    assert_int_equal(stat(p, &b), -1);
    /* a directory to another parent keeps its contents */
    make_dir(f, "r/dir");
    write_file(at(f, "r/dir/inside", p, sizeof p), "in");
    assert_int_equal(rename(at(f, "r/dir", p, sizeof p), at(f, "r/other/dir", q, sizeof q)), 0);
    assert_int_equal(read_file(at(f, "r/other/dir/inside", p, sizeof p), buf, sizeof buf), 2);
}

static void test_symlink_hard_link_chmod_fifo(void **state)
{
    struct mount_fixture *f = *state;
    char p[512], q[512], buf[256];
    struct stat st;
    SKIP_IF_NEEDED(f);
    make_dir(f, "l");
    /* symlink and readlink */
    assert_int_equal(symlink("some/where/else", at(f, "l/sym", p, sizeof p)), 0);
    assert_int_equal(readlink(p, buf, sizeof buf), 15);
    assert_memory_equal(buf, "some/where/else", 15);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(st.st_size, 15);
    assert_int_equal(stat(p, &st), -1); /* dangling */
    assert_int_equal(errno, ENOENT);
    write_file(at(f, "l/file", p, sizeof p), "through the link");
    assert_int_equal(symlink("file", at(f, "l/tofile", q, sizeof q)), 0);
    assert_int_equal(read_file(q, buf, sizeof buf), 16);
    assert_string_equal(buf, "through the link");
    assert_int_equal(symlink("x", q), -1);
    assert_int_equal(errno, EEXIST);
    /* hard link: one inode, two names, link count 2 */
    assert_int_equal(link(p, at(f, "l/hard", q, sizeof q)), 0);
    assert_int_equal(stat(q, &st), 0);
    assert_int_equal(st.st_nlink, 2);
    assert_int_equal(read_file(q, buf, sizeof buf), 16);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(stat(q, &st), 0);
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(link(at(f, "l", p, sizeof p), at(f, "l/dirlink", q, sizeof q)), -1);
    assert_int_equal(errno, EPERM);
    /* chmod */
    assert_int_equal(chmod(at(f, "l/hard", p, sizeof p), 0640), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_true(S_ISREG(st.st_mode));
    /* a FIFO */
    assert_int_equal(mkfifo(at(f, "l/fifo", p, sizeof p), 0600), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(unlink(p), 0);
}

static void test_truncate_and_sparse_write(void **state)
{
    struct mount_fixture *f = *state;
    char p[512], buf[256];
    static char big[200001];
    struct stat st;
    int fd;
    SKIP_IF_NEEDED(f);
    make_dir(f, "t");
    write_file(at(f, "t/f", p, sizeof p), "hello world");
    assert_int_equal(truncate(p, 5), 0);
    assert_int_equal(read_file(p, buf, sizeof buf), 5);
    assert_string_equal(buf, "hello");
    assert_int_equal(truncate(p, 8), 0); /* grows with zeros */
    assert_int_equal(read_file(p, buf, sizeof buf), 8);
    assert_memory_equal(buf, "hello\0\0\0", 8);
    /* O_TRUNC on open */
    fd = open(p, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 0);
    /* ftruncate and a write far past the end: the hole reads as zeros */
    assert_int_equal(ftruncate(fd, 3), 0);
    assert_int_equal(pwrite(fd, "end", 3, 199997), 3);
    assert_int_equal(close(fd), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 200000);
    assert_int_equal(read_file(p, big, sizeof big), 200000);
    for (size_t i = 0; i < 199997; i++) {
        if (big[i] != 0) {
            fail_msg("byte %zu is %d, not 0", i, big[i]);
        }
    }
    assert_memory_equal(big + 199997, "end", 3);
    /* O_APPEND */
    fd = open(p, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "!", 1), 1);
    assert_int_equal(close(fd), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 200001);
}

/* A few hundred names: every one listed exactly once, with "." and "..". */
static void test_readdir_lists_every_name_once(void **state)
{
    enum { N = 300 };
    struct mount_fixture *f = *state;
    char p[512], name[64];
    unsigned char seen[N] = {0};
    unsigned dots = 0;
    DIR *dir;
    struct dirent *de;
    SKIP_IF_NEEDED(f);
    make_dir(f, "big");
    for (int i = 0; i < N; i++) {
        int fd;
        snprintf(name, sizeof name, "big/entry-%03d", i);
        fd = open(at(f, name, p, sizeof p), O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_true(fd >= 0);
        assert_int_equal(close(fd), 0);
    }
    dir = opendir(at(f, "big", p, sizeof p));
    assert_non_null(dir);
    for (int pass = 0; pass < 2; pass++) {
        while ((de = readdir(dir)) != NULL) {
            int i;
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
                dots++;
                continue;
            }
            assert_int_equal(sscanf(de->d_name, "entry-%d", &i), 1);
            assert_true(i >= 0 && i < N);
            assert_int_equal(de->d_type, DT_REG);
            seen[i]++;
        }
        for (int i = 0; i < N; i++) {
            if (seen[i] != pass + 1) {
                fail_msg("pass %d: entry-%03d listed %u times", pass, i, seen[i]);
            }
        }
        rewinddir(dir); /* a second listing through the same handle */
    }
    assert_int_equal(dots, 4);
    /* Names removed and added in the middle of a listing: no name twice, none of the others
     * missed. */
    memset(seen, 0, sizeof seen);
    for (int k = 0; k < 20; k++) {
        de = readdir(dir);
        assert_non_null(de);
        if (strncmp(de->d_name, "entry-", 6) == 0) {
            seen[atoi(de->d_name + 6)]++;
        }
    }
    for (int i = N - 50; i < N; i++) {
        snprintf(name, sizeof name, "big/entry-%03d", i);
        assert_int_equal(unlink(at(f, name, p, sizeof p)), 0);
        snprintf(name, sizeof name, "big/new-%03d", i);
        write_file(at(f, name, p, sizeof p), "");
    }
    while ((de = readdir(dir)) != NULL) {
        if (strncmp(de->d_name, "entry-", 6) == 0) {
            seen[atoi(de->d_name + 6)]++;
        }
    }
    for (int i = 0; i < N; i++) {
        if (seen[i] > 1 || (i < N - 50 && seen[i] != 1)) {
            fail_msg("changed directory: entry-%03d listed %u times", i, seen[i]);
        }
    }
    assert_int_equal(closedir(dir), 0);
}

/* Writes still buffered in an open file count for stat by name, another descriptor, and
 * a later utimens (close must not move the mtime it set). */
static void test_open_file_is_seen_within_the_mount(void **state)
{
    struct mount_fixture *f = *state;
    char p[512], data[5000], back[5200];
    struct timespec times[2] = {{.tv_sec = 1000}, {.tv_sec = 2000, .tv_nsec = 5}};
    struct stat st;
    int fd, fd2;
    SKIP_IF_NEEDED(f);
    make_dir(f, "o");
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (char)('a' + i % 26);
    }
    fd = open(at(f, "o/w", p, sizeof p), O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, sizeof data), (ssize_t)sizeof data);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, sizeof data);
    fd2 = open(p, O_RDONLY);
    assert_true(fd2 >= 0);
    assert_int_equal(read(fd2, back, sizeof back), (ssize_t)sizeof data);
    assert_memory_equal(back, data, sizeof data);
    assert_int_equal(pwrite(fd, "tail", 4, sizeof data), 4);
    assert_int_equal(pread(fd2, back, sizeof back, sizeof data), 4);
    assert_memory_equal(back, "tail", 4);
    assert_int_equal(futimens(fd, times), 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(close(fd2), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, sizeof data + 4);
    assert_int_equal(st.st_mtim.tv_sec, 2000);
    assert_int_equal(st.st_mtim.tv_nsec, 5);
    assert_int_equal(st.st_atim.tv_sec, 1000);
}

/* The shell tools of the issue on a small source tree (the repository's fs/ when the test
 * runs from the repository, as make does): cp -r and diff -r, tar in and out, dd and
 * sha256sum, ln -s, mv, rm -r. */
static void test_shell_tools_copy_and_compare(void **state)
{
    struct mount_fixture *f = *state;
    char cwd[1024], src[1100], cmd[4096], out[4096];
    SKIP_IF_NEEDED(f);
    if (getcwd(cwd, sizeof cwd) == NULL) {
        skip();
    }
    snprintf(src, sizeof src, "%s/fs", cwd);
    if (access(src, R_OK) != 0) {
        printf("SKIPPED: %s is not there (run from the repository)\n", src);
        skip();
    }
    snprintf(cmd, sizeof cmd,
             "set -e; S='%s'; T='%s'; mkdir sh; cp -r \"$S\" sh/src; diff -r \"$S\" sh/src; "
             "mkdir sh/x; tar cf - -C \"$S\" . | tar xf - -C sh/x; diff -r \"$S\" sh/x; "
             "tar cf \"$T/out.tar\" -C sh src; mkdir \"$T/untar\"; "
             "tar xf \"$T/out.tar\" -C \"$T/untar\"; diff -r \"$S\" \"$T/untar/src\"; "
             "dd if=/dev/urandom of=\"$T/rand\" bs=1M count=8 status=none; "
             "dd if=\"$T/rand\" of=sh/rand bs=1M status=none; "
             "test \"$(sha256sum < \"$T/rand\")\" = \"$(sha256sum < sh/rand)\"; "
             "ln -s src/fs.h sh/l; cmp sh/l \"$S/fs.h\"; mv sh/src sh/moved; "
             "diff -r \"$S\" sh/moved; rm -r sh; echo done",
             src, f->dir);
    if (mount_helper_sh(f->mnt, cmd, out, sizeof out) != 0 || strcmp(out, "done\n") != 0) {
        fail_msg("shell tools: %s", out);
    }
}

/* A few MiB written in 64 KiB pieces (as cp does) and read back, through the mount. */
static void test_large_file_round_trip(void **state)
{
    enum { SIZE = 3 * 1024 * 1024 + 123, CHUNK = 64 * 1024 };
    struct mount_fixture *f = *state;
    char p[512];
    unsigned char *data = malloc(SIZE), *back = malloc(SIZE);
    uint32_t x = 12345;
    struct stat st;
    size_t n = 0;
    ssize_t r;
    int fd;
    SKIP_IF_NEEDED(f);
    assert_non_null(data);
    assert_non_null(back);
    for (size_t i = 0; i < SIZE; i++) {
        x = x * 1103515245 + 12345;
        data[i] = (unsigned char)(x >> 16);
    }
    fd = open(at(f, "large", p, sizeof p), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    for (size_t off = 0; off < SIZE; off += CHUNK) {
        size_t len = SIZE - off < CHUNK ? SIZE - off : CHUNK;
        assert_int_equal(write(fd, data + off, len), (ssize_t)len);
    }
    assert_int_equal(fsync(fd), 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, SIZE);
    fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    while (n < SIZE && (r = read(fd, back + n, SIZE - n)) > 0) {
        n += (size_t)r;
    }
    assert_int_equal(close(fd), 0);
    assert_int_equal(n, SIZE);
    assert_true(memcmp(data, back, SIZE) == 0);
    free(data);
    free(back);
}

/* A cluster that does not answer: the daemon says so and exits without mounting. */
static void test_unreachable_cluster_is_not_mounted(void **state)
{
    struct mount_fixture *f = *state;
    char mnt[400], log[400], meta[64], errmsg[RFS_ERRMSG_SIZE];
    char *argv[] = {f->bin, "--meta", meta, mnt, "-f", "--timeout", "1500", NULL};
    pid_t pid;
    int port = free_port(), st;
    SKIP_IF_NEEDED(f);
    assert_true(port > 0);
    snprintf(meta, sizeof meta, "127.0.0.1:%d", port);
    snprintf(mnt, sizeof mnt, "%s/dead", f->dir);
    snprintf(log, sizeof log, "%s/dead.log", f->dir);
    assert_int_equal(mkdir(mnt, 0755), 0);
    assert_int_equal(proc_spawn(argv, log, &pid, errmsg), 0);
    st = proc_wait(pid, 30000);
    if (st == -2) {
        proc_stop(pid, STOP_WAIT_MS);
        mount_helper_force_unmount(mnt);
        fail_msg("raftfs-mount of a dead cluster still runs after 30 s");
    }
    assert_true(st > 0);
    assert_false(mount_helper_is_mount_point(mnt));
    assert_true(file_contains(log, "did not answer"));
    assert_true(file_contains(log, "not mounting"));
    assert_false(mount_helper_log_has_sanitizer_report(log));
    assert_int_equal(rmdir(mnt), 0);
}

/* A second mount sees the tree; so does the first after an unmount and a remount. */
static void test_remount_sees_the_same_tree(void **state)
{
    struct mount_fixture *f = *state;
    char p[512], m2[400], log2[400], buf[64], errmsg[RFS_ERRMSG_SIZE];
    pid_t pid2 = 0;
    int st, fd;
    SKIP_IF_NEEDED(f);
    make_dir(f, "keep");
    make_dir(f, "keep/sub");
    write_file(at(f, "keep/sub/file", p, sizeof p), "persistent");
    assert_int_equal(symlink("sub/file", at(f, "keep/link", p, sizeof p)), 0);

    snprintf(m2, sizeof m2, "%s/m2", f->dir);
    snprintf(log2, sizeof log2, "%s/mount2.log", f->dir);
    /* a second, read-only mount (-o ro passes through to the kernel) */
    {
        static const char *const ro[] = {"-o", "ro", NULL};
        if (mount_helper_start_args(f->bin, f->s.meta.group, m2, ro, log2, &pid2, errmsg) != 0) {
            mount_helper_dump_log(log2);
            fail_msg("second mount: %s", errmsg);
        }
    }
    snprintf(p, sizeof p, "%s/keep/link", m2);
    st = (int)read_file(p, buf, sizeof buf);
    assert_int_equal(st, 10);
    assert_string_equal(buf, "persistent");
    assert_int_equal(open(p, O_WRONLY), -1);
    assert_int_equal(errno, EROFS);
    snprintf(p, sizeof p, "%s/keep/new", m2);
    assert_int_equal(open(p, O_WRONLY | O_CREAT, 0644), -1);
    assert_int_equal(errno, EROFS);
    assert_int_equal(mkdir(p, 0755), -1);
    assert_int_equal(errno, EROFS);
    st = mount_helper_stop(m2, &pid2);
    assert_false(mount_helper_log_has_sanitizer_report(log2));
    assert_int_equal(st, 0);
    assert_false(mount_helper_is_mount_point(m2));

    /* SIGTERM unmounts cleanly, writing out what an open file still buffers; a new daemon on
     * the same mount point sees the same tree. */
    fd = open(at(f, "keep/open", p, sizeof p), O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "buffered", 8), 8);
    assert_int_equal(mount_helper_stop(f->mnt, &f->pid), 0);
    close(fd); /* the mount is gone: its error does not matter */
    assert_false(mount_helper_is_mount_point(f->mnt));
    assert_false(mount_helper_log_has_sanitizer_report(f->log));
    if (mount_helper_start(f->bin, f->s.meta.group, f->mnt, f->log, &f->pid, errmsg) != 0) {
        mount_helper_dump_log(f->log);
        fail_msg("remount: %s", errmsg);
    }
    assert_int_equal(read_file(at(f, "keep/sub/file", p, sizeof p), buf, sizeof buf), 10);
    assert_string_equal(buf, "persistent");
    assert_int_equal(readlink(at(f, "keep/link", p, sizeof p), buf, sizeof buf), 8);
    assert_int_equal(read_file(at(f, "keep/open", p, sizeof p), buf, sizeof buf), 8);
    assert_string_equal(buf, "buffered");
}

/* setxattr(2) and friends through the kernel, with its size probes and errors. */
static void test_xattrs_through_the_mount(void **state)
{
    struct mount_fixture *f = *state;
    char p[512], q[512], buf[256];
    struct stat before, after;
    ssize_t n;
    SKIP_IF_NEEDED(f);
    make_dir(f, "xa");
    write_file(at(f, "xa/file", p, sizeof p), "data");
    errno = 0;
    assert_int_equal(getxattr(p, "user.a", buf, sizeof buf), -1);
    assert_int_equal(errno, ENODATA);
    assert_int_equal(listxattr(p, NULL, 0), 0);
    assert_int_equal(stat(p, &before), 0);
    usleep(20000);
    assert_int_equal(setxattr(p, "user.a", "hello", 5, 0), 0);
    assert_int_equal(stat(p, &after), 0);
    assert_true(after.st_ctim.tv_sec > before.st_ctim.tv_sec ||
                (after.st_ctim.tv_sec == before.st_ctim.tv_sec &&
                 after.st_ctim.tv_nsec > before.st_ctim.tv_nsec));
    /* size probe, too small, the value */
    assert_int_equal(getxattr(p, "user.a", NULL, 0), 5);
    errno = 0;
    assert_int_equal(getxattr(p, "user.a", buf, 2), -1);
    assert_int_equal(errno, ERANGE);
    memset(buf, 0, sizeof buf);
    assert_int_equal(getxattr(p, "user.a", buf, sizeof buf), 5);
    assert_string_equal(buf, "hello");
    /* flags */
    errno = 0;
    assert_int_equal(setxattr(p, "user.a", "x", 1, XATTR_CREATE), -1);
    assert_int_equal(errno, EEXIST);
    errno = 0;
    assert_int_equal(setxattr(p, "user.b", "x", 1, XATTR_REPLACE), -1);
    assert_int_equal(errno, ENODATA);
    assert_int_equal(setxattr(p, "user.b", "bee", 3, XATTR_CREATE), 0);
    assert_int_equal(setxattr(p, "trusted.t", "t", 1, 0), 0);
    /* a namespace not kept */
    errno = 0;
    assert_int_equal(setxattr(p, "os2.x", "x", 1, 0), -1);
    assert_int_equal(errno, EOPNOTSUPP);
    /* list: probe, too small, the names */
    static const char want[] = "trusted.t\0user.a\0user.b";
    assert_int_equal(listxattr(p, NULL, 0), (ssize_t)sizeof want);
    errno = 0;
    assert_int_equal(listxattr(p, buf, 3), -1);
    assert_int_equal(errno, ERANGE);
    n = listxattr(p, buf, sizeof buf);
    assert_int_equal(n, (ssize_t)sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    /* remove */
    assert_int_equal(removexattr(p, "user.a"), 0);
    errno = 0;
    assert_int_equal(removexattr(p, "user.a"), -1);
    assert_int_equal(errno, ENODATA);
    errno = 0;
    assert_int_equal(getxattr(p, "user.a", buf, sizeof buf), -1);
    assert_int_equal(errno, ENODATA);
    /* a directory, and a second name of the file that sees the same attributes */
    assert_int_equal(setxattr(at(f, "xa", q, sizeof q), "user.dir", "d", 1, 0), 0);
    assert_int_equal(getxattr(q, "user.dir", buf, sizeof buf), 1);
    assert_int_equal(link(p, at(f, "xa/link", q, sizeof q)), 0);
    assert_int_equal(getxattr(q, "user.b", buf, sizeof buf), 3);
    assert_memory_equal(buf, "bee", 3);
}

/* ".." in a listing names the parent directory (readdir's d_ino), at any depth. */
static void test_dotdot_lists_the_parent(void **state)
{
    struct mount_fixture *f = *state;
    char p[512];
    struct stat top, d, sub;
    DIR *dir;
    struct dirent *de;
    SKIP_IF_NEEDED(f);
    make_dir(f, "dd");
    make_dir(f, "dd/sub");
    assert_int_equal(stat(f->mnt, &top), 0);
    assert_int_equal(stat(at(f, "dd", p, sizeof p), &d), 0);
    assert_int_equal(stat(at(f, "dd/sub", p, sizeof p), &sub), 0);
    assert_true(d.st_ino != sub.st_ino);
    struct {
        const char *rel;
        ino_t dot, dotdot;
    } cases[] = {{"dd/sub", sub.st_ino, d.st_ino}, {"dd", d.st_ino, top.st_ino}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        unsigned dots = 0;
        dir = opendir(at(f, cases[c].rel, p, sizeof p));
        assert_non_null(dir);
        while ((de = readdir(dir)) != NULL) {
            if (strcmp(de->d_name, ".") == 0) {
                assert_int_equal(de->d_ino, cases[c].dot);
                dots++;
            } else if (strcmp(de->d_name, "..") == 0) {
                assert_int_equal(de->d_ino, cases[c].dotdot);
                dots++;
            }
        }
        assert_int_equal(closedir(dir), 0);
        assert_int_equal(dots, 2);
    }
    /* and through the kernel's own resolution */
    assert_int_equal(stat(at(f, "dd/sub/..", p, sizeof p), &sub), 0);
    assert_int_equal(sub.st_ino, d.st_ino);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shell_session_behaves_as_on_local_disk),
        cmocka_unit_test(test_errors_are_posix),
        cmocka_unit_test(test_rename_over_existing_and_noreplace),
        cmocka_unit_test(test_symlink_hard_link_chmod_fifo),
        cmocka_unit_test(test_truncate_and_sparse_write),
        cmocka_unit_test(test_readdir_lists_every_name_once),
        cmocka_unit_test(test_open_file_is_seen_within_the_mount),
        cmocka_unit_test(test_large_file_round_trip),
        cmocka_unit_test(test_xattrs_through_the_mount),
        cmocka_unit_test(test_dotdot_lists_the_parent),
        cmocka_unit_test(test_shell_tools_copy_and_compare),
        cmocka_unit_test(test_unreachable_cluster_is_not_mounted),
        cmocka_unit_test(test_remount_sees_the_same_tree),
    };
    rfs_log_set_level(RFS_LOG_ERROR);
    /* One cluster and one mount for the whole file: the tests use directories of their own. */
    return cmocka_run_group_tests(tests, setup, teardown);
}
