/* POSIX behaviour of a real raftfs mount, operation by operation: success cases and every error
 * case with its exact errno, modes, ownership (root and other users), link counts and the
 * times each call changes. Local ext4 on Linux is the reference.
 *
 * The mount is started with -o allow_other,default_permissions, so other users reach it and
 * the kernel checks the mode bits. Other users are a forked child that drops to OTHER_UID /
 * OTHER_GID (optionally with a supplementary group), runs one call and reports its errno in
 * its exit status (op_as). Times are compared with a short sleep (nap) between the calls;
 * nanosecond timestamps are kept, so every change is visible.
 *
 * Atime: raftfs never updates atime on read or readdir (like -o noatime; docs/fs.md); it is
 * set at creation and by utimensat only, and the tests assert exactly that.
 *
 * One cluster and one mount for the whole file; each test works in a directory of its own.
 * Needs root, /dev/fuse and fusermount3; skipped otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"
#include "tests/lib/sharded.h"
#include "tests/unit/mount_fixture.h"
#include "tests/unit/mount_helper.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE  (1 << 1)
#endif

/* The other users: OTHER and OTHER2 are in no group of the files root makes; GROUP_A is a
 * supplementary group given to OTHER in some calls, GROUP_B one it never has. */
#define OTHER_UID  1000
#define OTHER_GID  1000
#define OTHER2_UID 1001
#define OTHER2_GID 1001
#define GROUP_A    2000
#define GROUP_B    3000

struct fixture {
    struct mount_fixture m; /* the cluster, and its mount with default_permissions */
    char mnt2[320];         /* a second mount of the same cluster, without default_permissions */
    char log2[320];
    pid_t pid2;
};

/* ---- helpers ---- */

static const char *at(const struct fixture *f, const char *rel, char *buf, size_t cap)
{
    if ((size_t)snprintf(buf, cap, "%s/%s", f->m.mnt, rel) >= cap) {
        fail_msg("path too long: %s/%s", f->m.mnt, rel);
    }
    return buf;
}

/* Long enough that two calls on either side get different nanosecond timestamps. */
static void nap(void)
{
    struct timespec ts = {0, 15 * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

#define ATIME(st) ns(&(st).st_atim)
#define MTIME(st) ns(&(st).st_mtim)
#define CTIME(st) ns(&(st).st_ctim)

static struct stat lstat_of(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        fail_msg("lstat %s: %s", path, strerror(errno));
    }
    return st;
}

static void write_file(const char *path, const char *data, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) {
        fail_msg("open %s: %s", path, strerror(errno));
    }
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
    assert_int_equal(close(fd), 0);
}

/* Whether fs.protected_hardlinks is on (links to others' files need read and write). */
static bool protected_hardlinks(void)
{
    FILE *fp = fopen("/proc/sys/fs/protected_hardlinks", "r");
    int on = 0;
    if (fp != NULL) {
        if (fscanf(fp, "%d", &on) != 1) {
            on = 0;
        }
        fclose(fp);
    }
    return on == 1;
}

/* The errno of a call that returned -1 (0 if it succeeded). */
static int err_of(int rv)
{
    return rv == -1 ? errno : 0;
}

/* ---- calls as another user ---- */

enum op_kind {
    OP_READ,      /* open p O_RDONLY and read */
    OP_WRITE,     /* open p O_WRONLY (no truncation) and write "x" at the end */
    OP_TRUNCATE,  /* truncate(p, size) */
    OP_CREATE,    /* open p O_CREAT|O_EXCL with mode */
    OP_MKDIR,     /* mkdir p with mode */
    OP_UNLINK,    /* unlink p */
    OP_RMDIR,     /* rmdir p */
    OP_RENAME,    /* rename p to q */
    OP_LINK,      /* link p to q */
    OP_CHMOD,     /* chmod p mode */
    OP_CHOWN,     /* chown p uid gid (-1 keeps) */
    OP_TOUCH_NOW, /* utimensat(p, NULL) */
    OP_TOUCH_SET, /* utimensat(p, {1, 2}) */
    OP_ACCESS,    /* access(p, mode) */
    OP_STAT,      /* stat p */
    OP_SETXATTR,  /* setxattr(p, q, "v") */
    OP_GETXATTR,  /* getxattr(p, q) */
    OP_OPENDIR,   /* opendir p and read it */
};

struct op {
    enum op_kind kind;
    const char *p, *q;
    unsigned mode;
    uid_t uid;
    gid_t gid;
    off_t size;
};

static int op_run(const struct op *o)
{
    char buf[64];
    int fd, rv = 0;
    switch (o->kind) {
        case OP_READ:
            fd = open(o->p, O_RDONLY);
            if (fd < 0) {
                return errno;
            }
            rv = err_of((int)read(fd, buf, sizeof buf) < 0 ? -1 : 0);
            close(fd);
            return rv;
        case OP_WRITE:
            fd = open(o->p, O_WRONLY | O_APPEND);
            if (fd < 0) {
                return errno;
            }
            rv = err_of(write(fd, "x", 1) == 1 ? 0 : -1);
            if (close(fd) != 0 && rv == 0) {
                rv = errno;
            }
            return rv;
        case OP_TRUNCATE:
            return err_of(truncate(o->p, o->size));
        case OP_CREATE:
            fd = open(o->p, O_WRONLY | O_CREAT | O_EXCL, (mode_t)o->mode);
            if (fd < 0) {
                return errno;
            }
            return err_of(close(fd));
        case OP_MKDIR:
            return err_of(mkdir(o->p, (mode_t)o->mode));
        case OP_UNLINK:
            return err_of(unlink(o->p));
        case OP_RMDIR:
            return err_of(rmdir(o->p));
        case OP_RENAME:
            return err_of(rename(o->p, o->q));
        case OP_LINK:
            return err_of(link(o->p, o->q));
        case OP_CHMOD:
            return err_of(chmod(o->p, (mode_t)o->mode));
        case OP_CHOWN:
            return err_of(chown(o->p, o->uid, o->gid));
        case OP_TOUCH_NOW:
            return err_of(utimensat(AT_FDCWD, o->p, NULL, 0));
        case OP_TOUCH_SET: {
            struct timespec ts[2] = {{1, 0}, {2, 0}};
            return err_of(utimensat(AT_FDCWD, o->p, ts, 0));
        }
        case OP_ACCESS:
            return err_of(access(o->p, (int)o->mode));
        case OP_STAT: {
            struct stat st;
            return err_of(stat(o->p, &st));
        }
        case OP_SETXATTR:
            return err_of(setxattr(o->p, o->q, "v", 1, 0));
        case OP_GETXATTR:
            return err_of(getxattr(o->p, o->q, buf, sizeof buf) < 0 ? -1 : 0);
        case OP_OPENDIR: {
            DIR *d = opendir(o->p);
            if (d == NULL) {
                return errno;
            }
            errno = 0;
            while (readdir(d) != NULL) {
            }
            rv = errno;
            closedir(d);
            return rv;
        }
    }
    return EINVAL;
}

/* Run o in a child as uid/gid with the supplementary group extra_gid (0: none). Returns the
 * call's errno, 0 on success. */
static int op_as(uid_t uid, gid_t gid, gid_t extra_gid, struct op o)
{
    int status;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        gid_t groups[1] = {extra_gid};
        if (setgroups(extra_gid != 0 ? 1 : 0, groups) != 0 || setgid(gid) != 0 ||
            setuid(uid) != 0) {
            _exit(254);
        }
        umask(022);
        _exit(op_run(&o));
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 254);
    return WEXITSTATUS(status);
}

static int other(struct op o)
{
    return op_as(OTHER_UID, OTHER_GID, 0, o);
}

/* ---- the fixture ---- */

static int setup(void **state)
{
    static const char *const extra[] = {"-o", "allow_other,default_permissions", NULL};
    static const char *const extra2[] = {"-o", "allow_other", NULL};
    struct fixture *f = calloc(1, sizeof *f);
    char errmsg[RFS_ERRMSG_SIZE];
    *state = f;
    if (f == NULL || mount_fixture_start(&f->m, "raftfs-posix", NULL, extra) != 0) {
        return -1;
    }
    if (f->m.skipped) {
        return 0;
    }
    /* other users must reach the mount points */
    if (chmod(f->m.dir, 0755) != 0) {
        fprintf(stderr, "setup: chmod %s: %s\n", f->m.dir, strerror(errno));
        return -1;
    }
    snprintf(f->mnt2, sizeof f->mnt2, "%s/m2", f->m.dir);
    snprintf(f->log2, sizeof f->log2, "%s/mount2.log", f->m.dir);
    if (mount_helper_start_args(f->m.bin, f->m.s.meta.group, f->mnt2, extra2, f->log2, &f->pid2,
                                errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        mount_helper_dump_log(f->log2);
        return -1;
    }
    umask(022);
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int bad = 0;
    if (f == NULL) {
        return 0;
    }
    if (!f->m.skipped && f->mnt2[0] != '\0') {
        bad += mount_helper_teardown(f->mnt2, &f->pid2, f->log2);
    }
    bad += mount_fixture_stop(&f->m, f->mnt2[0] != '\0' ? f->mnt2 : NULL);
    free(f);
    return bad == 0 ? 0 : -1;
}

#define SKIP_IF_NEEDED(f)                                                                          \
    do {                                                                                           \
        if ((f)->m.skipped) {                                                                      \
            skip();                                                                                \
        }                                                                                          \
        if ((f)->m.pid == 0 || (f)->pid2 == 0) {                                                   \
            fail_msg("a mount is not running");                                                    \
        }                                                                                          \
    } while (0)

/* A fresh directory mnt/rel of mode (umask aside) for one test. */
static void test_dir(const struct fixture *f, const char *rel, mode_t mode)
{
    char p[512];
    assert_int_equal(mkdir(at(f, rel, p, sizeof p), 0700), 0);
    assert_int_equal(chmod(p, mode), 0);
}

/* ---- getattr, statfs, access ---- */

static void test_getattr_statfs_access(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512];
    struct stat st;
    struct statvfs sv;
    SKIP_IF_NEEDED(f);
    test_dir(f, "ga", 0755);
    write_file(at(f, "ga/f", p, sizeof p), "hello", 0644);
    st = lstat_of(p);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_gid, 0);
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(st.st_size, 5);
    assert_true(st.st_ino != 0);
    /* stat through a descriptor agrees */
    {
        struct stat fst;
        int fd = open(p, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &fst), 0);
        assert_int_equal(fst.st_ino, st.st_ino);
        assert_int_equal(fst.st_size, 5);
        assert_int_equal(close(fd), 0);
    }
    st = lstat_of(at(f, "ga", q, sizeof q));
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_nlink, 2);
    /* errors */
    assert_int_equal(stat(at(f, "ga/missing", q, sizeof q), &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(stat(at(f, "ga/f/x", q, sizeof q), &st), -1);
    assert_int_equal(errno, ENOTDIR);
    /* statfs */
    assert_int_equal(statvfs(f->m.mnt, &sv), 0);
    assert_int_equal(sv.f_namemax, 255);
    assert_int_equal(sv.f_bsize, 65536);
    assert_true(sv.f_blocks > 0);
    assert_true(sv.f_bfree <= sv.f_blocks);
    assert_int_equal(statvfs(at(f, "ga/missing", q, sizeof q), &sv), -1);
    assert_int_equal(errno, ENOENT);
    /* access: root may read and write anything, execute only with some x bit */
    assert_int_equal(access(p, F_OK), 0);
    assert_int_equal(access(p, R_OK | W_OK), 0);
    assert_int_equal(access(p, X_OK), -1);
    assert_int_equal(errno, EACCES);
    assert_int_equal(access(at(f, "ga/missing", q, sizeof q), F_OK), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(access(p, 0100), -1);
    assert_int_equal(errno, EINVAL);
    /* another user: exactly what the "other" bits give */
    assert_int_equal(other((struct op){.kind = OP_ACCESS, .p = p, .mode = R_OK}), 0);
    assert_int_equal(other((struct op){.kind = OP_ACCESS, .p = p, .mode = W_OK}), EACCES);
    assert_int_equal(other((struct op){.kind = OP_ACCESS, .p = p, .mode = X_OK}), EACCES);
    assert_int_equal(chmod(p, 0604), 0);
    assert_int_equal(chown(p, 0, GROUP_A), 0);
    assert_int_equal(chmod(p, 0060), 0);
    /* group bits for a member (by supplementary group), nothing for the others */
    assert_int_equal(op_as(OTHER_UID, OTHER_GID, GROUP_A,
                           (struct op){.kind = OP_ACCESS, .p = p, .mode = R_OK | W_OK}),
                     0);
    assert_int_equal(other((struct op){.kind = OP_ACCESS, .p = p, .mode = R_OK}), EACCES);
    /* a directory without search permission hides its names */
    assert_int_equal(chmod(at(f, "ga", q, sizeof q), 0700), 0);
    assert_int_equal(other((struct op){.kind = OP_STAT, .p = p}), EACCES);
    assert_int_equal(chmod(q, 0755), 0);
    assert_int_equal(other((struct op){.kind = OP_STAT, .p = p}), 0);
}

/* ---- create, mknod, open ---- */

static void test_create_mknod_open(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512], name[300], rel[320];
    struct stat st, dir0, dir1;
    int fd;
    SKIP_IF_NEEDED(f);
    test_dir(f, "cr", 0755);
    dir0 = lstat_of(at(f, "cr", q, sizeof q));
    nap();
    /* a new file: mode minus the umask, the caller's ids, a = m = c, the parent's m/ctime */
    fd = open(at(f, "cr/f", p, sizeof p), O_WRONLY | O_CREAT | O_EXCL, 0666);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    st = lstat_of(p);
    dir1 = lstat_of(q);
    assert_int_equal(st.st_mode, S_IFREG | 0644);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_gid, 0);
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(st.st_size, 0);
    assert_true(ATIME(st) == MTIME(st) && MTIME(st) == CTIME(st));
    assert_true(MTIME(st) > MTIME(dir0));
    assert_true(MTIME(dir1) > MTIME(dir0));
    assert_true(CTIME(dir1) > CTIME(dir0));
    assert_int_equal(ATIME(dir1), ATIME(dir0));
    assert_int_equal(dir1.st_nlink, 2);
    /* O_EXCL on an existing name; O_CREAT alone opens it without touching it */
    assert_int_equal(open(p, O_WRONLY | O_CREAT | O_EXCL, 0644), -1);
    assert_int_equal(errno, EEXIST);
    write_file(p, "data", 0600);
    st = lstat_of(p);
    nap();
    fd = open(p, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    dir0 = lstat_of(p);
    assert_int_equal(dir0.st_size, 4);
    assert_int_equal(dir0.st_mode, S_IFREG | 0644);
    assert_int_equal(MTIME(dir0), MTIME(st));
    assert_int_equal(CTIME(dir0), CTIME(st));
    /* O_TRUNC sets m/ctime (even of an empty file, as on ext4) */
    nap();
    fd = open(p, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    st = lstat_of(p);
    assert_int_equal(st.st_size, 0);
    assert_true(MTIME(st) > MTIME(dir0));
    assert_true(CTIME(st) > CTIME(dir0));
    dir0 = st;
    nap();
    fd = open(p, O_WRONLY | O_TRUNC); /* now empty: still m/ctime */
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    st = lstat_of(p);
    assert_true(MTIME(st) > MTIME(dir0));
    assert_true(CTIME(st) > CTIME(dir0));
    /* errors */
    assert_int_equal(open(at(f, "cr/none/f", q, sizeof q), O_WRONLY | O_CREAT, 0644), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(open(at(f, "cr/missing", q, sizeof q), O_RDONLY), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(open(at(f, "cr/f/x", q, sizeof q), O_WRONLY | O_CREAT, 0644), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(open(at(f, "cr", q, sizeof q), O_WRONLY), -1);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(open(q, O_RDWR | O_CREAT, 0644), -1);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(open(p, O_RDONLY | O_DIRECTORY), -1);
    assert_int_equal(errno, ENOTDIR);
    /* names: 255 bytes work, 256 are too long */
    memset(name, 'n', 255);
    name[255] = '\0';
    snprintf(rel, sizeof rel, "cr/%s", name);
    fd = open(at(f, rel, q, sizeof q), O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(lstat_of(q).st_size, 0);
    snprintf(rel, sizeof rel, "cr/%sn", name);
    assert_int_equal(open(at(f, rel, q, sizeof q), O_WRONLY | O_CREAT, 0644), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(mknod(q, S_IFIFO | 0644, 0), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    /* mknod: a FIFO and a regular file */
    assert_int_equal(mkfifo(at(f, "cr/fifo", q, sizeof q), 0666), 0);
    st = lstat_of(q);
    assert_int_equal(st.st_mode, S_IFIFO | 0644);
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(mkfifo(q, 0644), -1);
    assert_int_equal(errno, EEXIST);
    fd = open(q, O_RDWR | O_NONBLOCK); /* a FIFO opened through the mount works as a pipe */
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "ab", 2), 2);
    {
        char buf[4];
        assert_int_equal(read(fd, buf, sizeof buf), 2);
    }
    assert_int_equal(close(fd), 0);
    assert_int_equal(mknod(at(f, "cr/reg", q, sizeof q), S_IFREG | 0600, 0), 0);
    st = lstat_of(q);
    assert_int_equal(st.st_mode, S_IFREG | 0600);
    assert_int_equal(mknod(at(f, "cr/dev", q, sizeof q), S_IFCHR | 0600, makedev(1, 3)), 0);
    st = lstat_of(q);
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, makedev(1, 3));
    /* another user: no creating in a root 0755 directory; in a 0777 one the file is theirs */
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at(f, "cr/o", q, sizeof q), .mode = 0644}),
        EACCES);
    assert_int_equal(other((struct op){.kind = OP_MKDIR, .p = q, .mode = 0755}), EACCES);
    assert_int_equal(chmod(at(f, "cr", q, sizeof q), 0777), 0);
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at(f, "cr/o", q, sizeof q), .mode = 0666}), 0);
    st = lstat_of(q);
    assert_int_equal(st.st_uid, OTHER_UID);
    assert_int_equal(st.st_gid, OTHER_GID);
    assert_int_equal(st.st_mode, S_IFREG | 0644);
    /* open by another user: the "other" bits of root's 0644 file */
    assert_int_equal(chmod(p, 0644), 0);
    assert_int_equal(other((struct op){.kind = OP_READ, .p = p}), 0);
    assert_int_equal(other((struct op){.kind = OP_WRITE, .p = p}), EACCES);
    assert_int_equal(chmod(p, 0600), 0);
    assert_int_equal(other((struct op){.kind = OP_READ, .p = p}), EACCES);
    assert_int_equal(chmod(p, 0646), 0);
    assert_int_equal(other((struct op){.kind = OP_WRITE, .p = p}), 0);
}

/* ---- read and write ---- */

static void test_read_write(void **state)
{
    struct fixture *f = *state;
    char p[512], buf[64];
    struct stat a, b;
    int fd;
    SKIP_IF_NEEDED(f);
    test_dir(f, "rw", 0755);
    write_file(at(f, "rw/f", p, sizeof p), "0123456789", 0644);
    a = lstat_of(p);
    nap();
    /* read: no time changes (raftfs does not update atime: docs/fs.md) */
    fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof buf), 10);
    assert_int_equal(pread(fd, buf, 4, 8), 2);
    assert_int_equal(pread(fd, buf, 4, 100), 0); /* past the end */
    assert_int_equal(write(fd, "x", 1), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(close(fd), 0);
    b = lstat_of(p);
    assert_int_equal(ATIME(b), ATIME(a));
    assert_int_equal(MTIME(b), MTIME(a));
    assert_int_equal(CTIME(b), CTIME(a));
    /* write: m/ctime, not atime; the size grows */
    nap();
    fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "abc", 3, 9), 3);
    assert_int_equal(read(fd, buf, 1), -1);
    assert_int_equal(errno, EBADF);
    /* past raftfs's largest file (2^50 bytes): EFBIG; an offset that overflows or a negative
     * one: EINVAL (the kernel, as on ext4) */
    assert_int_equal(pwrite(fd, "x", 1, (off_t)1 << 50), -1);
    assert_int_equal(errno, EFBIG);
    assert_int_equal(pwrite(fd, "x", 1, LLONG_MAX), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(pwrite(fd, "x", 1, -1), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(ftruncate(fd, ((off_t)1 << 50) + 1), -1);
    assert_int_equal(errno, EFBIG);
    assert_int_equal(close(fd), 0);
    b = lstat_of(p);
    assert_int_equal(b.st_size, 12);
    assert_int_equal(ATIME(b), ATIME(a));
    assert_true(MTIME(b) > MTIME(a));
    assert_true(CTIME(b) > CTIME(a));
    assert_int_equal(MTIME(b), CTIME(b));
    /* a directory cannot be read as a file */
    fd = open(at(f, "rw", p, sizeof p), O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof buf), -1);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(close(fd), 0);
}

/* ---- setattr: chmod, chown, truncate ---- */

static void test_setattr_chmod_chown_truncate(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512];
    struct stat a, b;
    int fd;
    SKIP_IF_NEEDED(f);
    test_dir(f, "sa", 0777);
    write_file(at(f, "sa/f", p, sizeof p), "0123456789", 0644);
    a = lstat_of(p);
    /* chmod: the mode and ctime, nothing else */
    nap();
    assert_int_equal(chmod(p, 04751), 0);
    b = lstat_of(p);
    assert_int_equal(b.st_mode, S_IFREG | 04751);
    assert_int_equal(ATIME(b), ATIME(a));
    assert_int_equal(MTIME(b), MTIME(a));
    assert_true(CTIME(b) > CTIME(a));
    /* chown by root: the ids and ctime; setuid goes, setgid without group-x stays */
    assert_int_equal(chmod(p, 06745), 0);
    a = lstat_of(p);
    nap();
    assert_int_equal(chown(p, OTHER_UID, GROUP_A), 0);
    b = lstat_of(p);
    assert_int_equal(b.st_uid, OTHER_UID);
    assert_int_equal(b.st_gid, GROUP_A);
    assert_int_equal(b.st_mode, S_IFREG | 02745);
    assert_int_equal(MTIME(b), MTIME(a));
    assert_true(CTIME(b) > CTIME(a));
    /* with group-x, setgid goes too */
    assert_int_equal(chmod(p, 06755), 0);
    assert_int_equal(chown(p, 0, 0), 0);
    assert_int_equal(lstat_of(p).st_mode, S_IFREG | 0755);
    /* chown -1 -1 changes no id, but clears the bits all the same (as on ext4) */
    assert_int_equal(chmod(p, 06755), 0);
    assert_int_equal(chown(p, (uid_t)-1, (gid_t)-1), 0);
    b = lstat_of(p);
    assert_int_equal(b.st_mode, S_IFREG | 0755);
    assert_int_equal(b.st_uid, 0);
    /* a directory keeps its bits on chown */
    test_dir(f, "sa/d", 07755);
    assert_int_equal(chown(at(f, "sa/d", q, sizeof q), OTHER_UID, OTHER_GID), 0);
    assert_int_equal(lstat_of(q).st_mode, S_IFDIR | 07755);
    /* lchown changes the symlink itself */
    assert_int_equal(symlink("f", at(f, "sa/sym", q, sizeof q)), 0);
    assert_int_equal(lchown(q, OTHER_UID, OTHER_GID), 0);
    assert_int_equal(lstat_of(q).st_uid, OTHER_UID);
    assert_int_equal(lstat_of(p).st_uid, 0);
    /* truncate: size, m/ctime; shrinking drops data, growing reads zeros */
    assert_int_equal(chmod(p, 0644), 0);
    a = lstat_of(p);
    nap();
    assert_int_equal(truncate(p, 4), 0);
    b = lstat_of(p);
    assert_int_equal(b.st_size, 4);
    assert_true(MTIME(b) > MTIME(a));
    assert_true(CTIME(b) > CTIME(a));
    assert_int_equal(ATIME(b), ATIME(a));
    assert_int_equal(truncate(p, 6), 0);
    {
        char buf[16];
        fd = open(p, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, buf, sizeof buf), 6);
        assert_memory_equal(buf, "0123\0\0", 6);
        assert_int_equal(close(fd), 0);
    }
    /* same size: m/ctime still change (as on ext4), by name or descriptor */
    a = lstat_of(p);
    nap();
    assert_int_equal(truncate(p, 6), 0);
    b = lstat_of(p);
    assert_true(MTIME(b) > MTIME(a));
    assert_true(CTIME(b) > CTIME(a));
    assert_int_equal(b.st_size, 6);
    nap();
    fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 6), 0);
    assert_int_equal(close(fd), 0);
    a = lstat_of(p);
    assert_true(MTIME(a) > MTIME(b));
    /* truncate errors */
    assert_int_equal(truncate(p, -1), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(truncate(at(f, "sa/d", q, sizeof q), 0), -1);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(truncate(at(f, "sa/missing", q, sizeof q), 0), -1);
    assert_int_equal(errno, ENOENT);
    fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 0), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(close(fd), 0);
    assert_int_equal(chmod(at(f, "sa/missing", q, sizeof q), 0644), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(chown(q, 0, 0), -1);
    assert_int_equal(errno, ENOENT);
    /* another user: truncating a file it may not write */
    assert_int_equal(other((struct op){.kind = OP_TRUNCATE, .p = p, .size = 0}), EACCES);
    assert_int_equal(lstat_of(p).st_size, 6);
}

/* ---- who may chmod and chown ---- */

static void test_chmod_chown_permissions(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512];
    struct stat st;
    SKIP_IF_NEEDED(f);
    test_dir(f, "perm", 0777);
    write_file(at(f, "perm/root", p, sizeof p), "r", 0644);
    /* not the owner: EPERM for chmod, chown and explicit times */
    assert_int_equal(other((struct op){.kind = OP_CHMOD, .p = p, .mode = 0666}), EPERM);
    assert_int_equal(
        other((struct op){.kind = OP_CHOWN, .p = p, .uid = OTHER_UID, .gid = (gid_t)-1}), EPERM);
    assert_int_equal(
        other((struct op){.kind = OP_CHOWN, .p = p, .uid = (uid_t)-1, .gid = OTHER_GID}), EPERM);
    assert_int_equal(lstat_of(p).st_mode, S_IFREG | 0644);
    /* the owner: chmod yes, giving the file away no */
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at(f, "perm/mine", q, sizeof q), .mode = 0644}),
        0);
    assert_int_equal(other((struct op){.kind = OP_CHMOD, .p = q, .mode = 0600}), 0);
    assert_int_equal(lstat_of(q).st_mode, S_IFREG | 0600);
    assert_int_equal(
        other((struct op){.kind = OP_CHOWN, .p = q, .uid = OTHER2_UID, .gid = (gid_t)-1}), EPERM);
    assert_int_equal(other((struct op){.kind = OP_CHOWN, .p = q, .uid = 0, .gid = (gid_t)-1}),
                     EPERM);
    /* ... chown to its own uid is allowed (no change) */
    assert_int_equal(
        other((struct op){.kind = OP_CHOWN, .p = q, .uid = OTHER_UID, .gid = (gid_t)-1}), 0);
    /* the group: to one it is in (supplementary) yes, to another no */
    assert_int_equal(op_as(OTHER_UID, OTHER_GID, GROUP_A,
                           (struct op){.kind = OP_CHOWN, .p = q, .uid = (uid_t)-1, .gid = GROUP_A}),
                     0);
    assert_int_equal(lstat_of(q).st_gid, GROUP_A);
    assert_int_equal(op_as(OTHER_UID, OTHER_GID, GROUP_A,
                           (struct op){.kind = OP_CHOWN, .p = q, .uid = (uid_t)-1, .gid = GROUP_B}),
                     EPERM);
    assert_int_equal(lstat_of(q).st_gid, GROUP_A);
    /* a chgrp by the owner clears setuid, and setgid when group-x is set */
    assert_int_equal(chmod(q, 06750), 0);
    assert_int_equal(
        other((struct op){.kind = OP_CHOWN, .p = q, .uid = (uid_t)-1, .gid = OTHER_GID}), 0);
    st = lstat_of(q);
    assert_int_equal(st.st_gid, OTHER_GID);
    assert_int_equal(st.st_mode, S_IFREG | 0750);
    /* chmod g+s by the owner outside the file's group: the bit is silently dropped */
    assert_int_equal(chown(q, OTHER_UID, GROUP_B), 0);
    assert_int_equal(other((struct op){.kind = OP_CHMOD, .p = q, .mode = 02755}), 0);
    assert_int_equal(lstat_of(q).st_mode, S_IFREG | 0755);
    /* ... inside it (supplementary group), it stays */
    assert_int_equal(chown(q, OTHER_UID, GROUP_A), 0);
    assert_int_equal(
        op_as(OTHER_UID, OTHER_GID, GROUP_A, (struct op){.kind = OP_CHMOD, .p = q, .mode = 02755}),
        0);
    assert_int_equal(lstat_of(q).st_mode, S_IFREG | 02755);
    /* ... and setuid by the owner stays */
    assert_int_equal(other((struct op){.kind = OP_CHMOD, .p = q, .mode = 04755}), 0);
    assert_int_equal(lstat_of(q).st_mode, S_IFREG | 04755);
    /* on a directory outside its group too (as ext4: setattr_prepare) */
    assert_int_equal(
        other((struct op){.kind = OP_MKDIR, .p = at(f, "perm/d", q, sizeof q), .mode = 0755}), 0);
    assert_int_equal(chown(q, OTHER_UID, GROUP_B), 0);
    assert_int_equal(other((struct op){.kind = OP_CHMOD, .p = q, .mode = 02755}), 0);
    assert_int_equal(lstat_of(q).st_mode, S_IFDIR | 0755);
}

/* ---- a write or truncate by another user clears setuid/setgid ---- */

static void test_write_by_non_owner_clears_setid(void **state)
{
    struct fixture *f = *state;
    char p[512];
    struct stat st;
    SKIP_IF_NEEDED(f);
    test_dir(f, "kp", 0755);
    write_file(at(f, "kp/f", p, sizeof p), "data", 0644);
    /* root's own write keeps the bits (CAP_FSETID) */
    assert_int_equal(chmod(p, 06777), 0);
    write_file(p, "root", 0644);
    assert_int_equal(lstat_of(p).st_mode, S_IFREG | 06777);
    /* another user's write clears setuid, and setgid with group-x */
    assert_int_equal(other((struct op){.kind = OP_WRITE, .p = p}), 0);
    st = lstat_of(p);
    assert_int_equal(st.st_mode, S_IFREG | 0777);
    assert_int_equal(st.st_size, 5);
    /* setgid without group-x: cleared by a writer outside the file's group, kept by a member
     * (as on ext4 since Linux 6.2) */
    assert_int_equal(chmod(p, 06767), 0);
    assert_int_equal(other((struct op){.kind = OP_WRITE, .p = p}), 0);
    assert_int_equal(lstat_of(p).st_mode, S_IFREG | 0767);
    assert_int_equal(chown(p, 0, OTHER_GID), 0);
    assert_int_equal(chmod(p, 06767), 0);
    assert_int_equal(other((struct op){.kind = OP_WRITE, .p = p}), 0);
    assert_int_equal(lstat_of(p).st_mode, S_IFREG | 02767);
    assert_int_equal(chown(p, 0, 0), 0);
    /* truncate by another user does the same */
    assert_int_equal(chmod(p, 06777), 0);
    assert_int_equal(other((struct op){.kind = OP_TRUNCATE, .p = p, .size = 1}), 0);
    st = lstat_of(p);
    assert_int_equal(st.st_mode, S_IFREG | 0777);
    assert_int_equal(st.st_size, 1);
    assert_int_equal(st.st_uid, 0);
}

/* ---- utimensat ---- */

static void test_utimens(void **state)
{
    struct fixture *f = *state;
    char p[512];
    struct stat a, b;
    struct timespec ts[2];
    int64_t before;
    SKIP_IF_NEEDED(f);
    test_dir(f, "ut", 0777);
    write_file(at(f, "ut/f", p, sizeof p), "t", 0644);
    /* explicit times, to the nanosecond; ctime is now */
    a = lstat_of(p);
    nap();
    ts[0] = (struct timespec){1000000000, 123456789};
    ts[1] = (struct timespec){1500000000, 987654321};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    b = lstat_of(p);
    assert_int_equal(ATIME(b), ns(&ts[0]));
    assert_int_equal(MTIME(b), ns(&ts[1]));
    assert_true(CTIME(b) > CTIME(a));
    /* UTIME_OMIT keeps one, UTIME_NOW sets the other to now */
    a = b;
    nap();
    before = ATIME(a);
    ts[0].tv_nsec = UTIME_OMIT;
    ts[1].tv_nsec = UTIME_NOW;
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    b = lstat_of(p);
    assert_int_equal(ATIME(b), before);
    assert_true(MTIME(b) > CTIME(a));
    assert_true(CTIME(b) > CTIME(a));
    ts[0] = (struct timespec){7, 7};
    ts[1].tv_nsec = UTIME_OMIT;
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    a = b;
    b = lstat_of(p);
    assert_int_equal(ATIME(b), 7000000007);
    assert_int_equal(MTIME(b), MTIME(a));
    /* both omitted: nothing changes, not even ctime */
    a = b;
    nap();
    ts[0].tv_nsec = ts[1].tv_nsec = UTIME_OMIT;
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    b = lstat_of(p);
    assert_int_equal(CTIME(b), CTIME(a));
    /* NULL: all three are now, and equal */
    assert_int_equal(utimensat(AT_FDCWD, p, NULL, 0), 0);
    b = lstat_of(p);
    assert_true(ATIME(b) > CTIME(a));
    assert_int_equal(ATIME(b), MTIME(b));
    assert_int_equal(MTIME(b), CTIME(b));
    /* through a descriptor */
    {
        int fd = open(p, O_RDONLY);
        ts[0] = (struct timespec){5, 0};
        ts[1] = (struct timespec){6, 0};
        assert_true(fd >= 0);
        assert_int_equal(futimens(fd, ts), 0);
        assert_int_equal(close(fd), 0);
        b = lstat_of(p);
        assert_int_equal(ATIME(b), 5000000000);
        assert_int_equal(MTIME(b), 6000000000);
    }
    /* errors */
    ts[0].tv_nsec = 1000000000;
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), -1);
    assert_int_equal(errno, EINVAL);
    {
        char q[512];
        assert_int_equal(utimensat(AT_FDCWD, at(f, "ut/missing", q, sizeof q), NULL, 0), -1);
        assert_int_equal(errno, ENOENT);
    }
    /* another user: "now" needs write permission, explicit times ownership */
    assert_int_equal(other((struct op){.kind = OP_TOUCH_NOW, .p = p}), EACCES);
    assert_int_equal(other((struct op){.kind = OP_TOUCH_SET, .p = p}), EPERM);
    assert_int_equal(chmod(p, 0666), 0);
    assert_int_equal(other((struct op){.kind = OP_TOUCH_NOW, .p = p}), 0);
    assert_int_equal(other((struct op){.kind = OP_TOUCH_SET, .p = p}), EPERM);
    assert_int_equal(chown(p, OTHER_UID, OTHER_GID), 0);
    assert_int_equal(other((struct op){.kind = OP_TOUCH_SET, .p = p}), 0);
    b = lstat_of(p);
    assert_int_equal(ATIME(b), 1000000000);
    assert_int_equal(MTIME(b), 2000000000);
}

/* ---- mkdir and rmdir ---- */

static void test_mkdir_rmdir(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512], name[300], rel[320];
    struct stat a, b, st;
    SKIP_IF_NEEDED(f);
    test_dir(f, "md", 0755);
    a = lstat_of(at(f, "md", q, sizeof q));
    nap();
    assert_int_equal(mkdir(at(f, "md/d", p, sizeof p), 0777), 0);
    st = lstat_of(p);
    b = lstat_of(q);
    assert_int_equal(st.st_mode, S_IFDIR | 0755);
    assert_int_equal(st.st_nlink, 2);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_gid, 0);
    assert_true(ATIME(st) == MTIME(st) && MTIME(st) == CTIME(st));
    assert_int_equal(b.st_nlink, 3); /* the new ".." */
    assert_true(MTIME(b) > MTIME(a));
    assert_true(CTIME(b) > CTIME(a));
    /* subdirectories count, files do not */
    assert_int_equal(mkdir(at(f, "md/d/s1", p, sizeof p), 0755), 0);
    assert_int_equal(mkdir(at(f, "md/d/s2", p, sizeof p), 0755), 0);
    write_file(at(f, "md/d/file", p, sizeof p), "", 0644);
    assert_int_equal(lstat_of(at(f, "md/d", p, sizeof p)).st_nlink, 4);
    /* errors */
    assert_int_equal(mkdir(p, 0755), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(mkdir(at(f, "md/d/file", p, sizeof p), 0755), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(mkdir(at(f, "md/none/x", p, sizeof p), 0755), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(mkdir(at(f, "md/d/file/x", p, sizeof p), 0755), -1);
    assert_int_equal(errno, ENOTDIR);
    memset(name, 'd', 255);
    name[255] = '\0';
    snprintf(rel, sizeof rel, "md/%s", name);
    assert_int_equal(mkdir(at(f, rel, p, sizeof p), 0755), 0);
    assert_int_equal(rmdir(p), 0);
    snprintf(rel, sizeof rel, "md/%sd", name);
    assert_int_equal(mkdir(at(f, rel, p, sizeof p), 0755), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(rmdir(p), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(rmdir(at(f, "md/d", p, sizeof p)), -1);
    assert_int_equal(errno, ENOTEMPTY);
    assert_int_equal(rmdir(at(f, "md/d/file", p, sizeof p)), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(rmdir(at(f, "md/d/missing", p, sizeof p)), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(rmdir(at(f, "md/d/s1/.", p, sizeof p)), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(rmdir(at(f, "md/d/s1/..", p, sizeof p)), -1);
    assert_int_equal(errno, ENOTEMPTY);
    /* rmdir: the parent loses a link, gets m/ctime */
    a = lstat_of(at(f, "md/d", q, sizeof q));
    nap();
    assert_int_equal(rmdir(at(f, "md/d/s1", p, sizeof p)), 0);
    b = lstat_of(q);
    assert_int_equal(b.st_nlink, 3);
    assert_true(MTIME(b) > MTIME(a));
    assert_true(CTIME(b) > CTIME(a));
    assert_int_equal(lstat(p, &st), -1);
    assert_int_equal(errno, ENOENT);
    /* another user: no removing from a root 0755 directory */
    assert_int_equal(other((struct op){.kind = OP_RMDIR, .p = at(f, "md/d/s2", p, sizeof p)}),
                     EACCES);
    assert_int_equal(lstat_of(p).st_nlink, 2);
}

/* ---- link and unlink ---- */

static void test_link_unlink(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512], d[512];
    struct stat a, b, da, db;
    SKIP_IF_NEEDED(f);
    test_dir(f, "ln", 0755);
    test_dir(f, "ln/sub", 0755);
    write_file(at(f, "ln/f", p, sizeof p), "linked", 0644);
    a = lstat_of(p);
    da = lstat_of(at(f, "ln/sub", d, sizeof d));
    nap();
    /* link: the inode's nlink and ctime (not mtime), the new parent's m/ctime */
    assert_int_equal(link(p, at(f, "ln/sub/g", q, sizeof q)), 0);
    b = lstat_of(q);
    db = lstat_of(d);
    assert_int_equal(b.st_ino, a.st_ino);
    assert_int_equal(b.st_nlink, 2);
    assert_int_equal(lstat_of(p).st_nlink, 2);
    assert_int_equal(MTIME(b), MTIME(a));
    assert_int_equal(ATIME(b), ATIME(a));
    assert_true(CTIME(b) > CTIME(a));
    assert_true(MTIME(db) > MTIME(da));
    assert_true(CTIME(db) > CTIME(da));
    assert_int_equal(db.st_nlink, 2);
    /* errors */
    assert_int_equal(link(p, q), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(link(at(f, "ln/missing", d, sizeof d), at(f, "ln/x", q, sizeof q)), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(link(p, at(f, "ln/none/x", q, sizeof q)), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(link(at(f, "ln/sub", d, sizeof d), at(f, "ln/x", q, sizeof q)), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(link(p, at(f, "ln/f/x", q, sizeof q)), -1);
    assert_int_equal(errno, ENOTDIR);
    /* another user: no link into a root 0755 directory (of a file it may write: otherwise
     * fs.protected_hardlinks, on here, says EPERM first) */
    assert_int_equal(chmod(p, 0666), 0);
    assert_int_equal(other((struct op){.kind = OP_LINK, .p = p, .q = at(f, "ln/o", q, sizeof q)}),
                     EACCES);
    assert_int_equal(chmod(p, 0644), 0);
    if (protected_hardlinks()) {
        assert_int_equal(chmod(at(f, "ln/sub", d, sizeof d), 0777), 0);
        assert_int_equal(
            other((struct op){.kind = OP_LINK, .p = p, .q = at(f, "ln/sub/o", q, sizeof q)}),
            EPERM);
        assert_int_equal(chmod(d, 0755), 0);
    }
    /* unlink: one name fewer, the inode's ctime, the parent's m/ctime */
    a = lstat_of(p);
    da = lstat_of(at(f, "ln/sub", d, sizeof d));
    nap();
    assert_int_equal(unlink(at(f, "ln/sub/g", q, sizeof q)), 0);
    b = lstat_of(p);
    db = lstat_of(d);
    assert_int_equal(b.st_nlink, 1);
    assert_true(CTIME(b) > CTIME(a));
    assert_int_equal(MTIME(b), MTIME(a));
    assert_true(MTIME(db) > MTIME(da));
    assert_true(CTIME(db) > CTIME(da));
    assert_int_equal(lstat(q, &b), -1);
    assert_int_equal(errno, ENOENT);
    /* unlink errors */
    assert_int_equal(unlink(q), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(unlink(at(f, "ln/sub", q, sizeof q)), -1);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(unlink(at(f, "ln/f/x", q, sizeof q)), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(other((struct op){.kind = OP_UNLINK, .p = p}), EACCES);
    /* the last name: gone */
    assert_int_equal(unlink(p), 0);
    assert_int_equal(lstat(p, &b), -1);
    assert_int_equal(errno, ENOENT);
}

/* ---- rename ---- */

static void test_rename(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512], d1[512], d2[512];
    struct stat a, b, pa1, pa2, pb1, pb2, st;
    SKIP_IF_NEEDED(f);
    test_dir(f, "rn", 0755);
    test_dir(f, "rn/a", 0755);
    test_dir(f, "rn/b", 0755);
    at(f, "rn/a", d1, sizeof d1);
    at(f, "rn/b", d2, sizeof d2);
    /* a file between parents: its ctime (not mtime), both parents' m/ctime */
    write_file(at(f, "rn/a/f", p, sizeof p), "moved", 0644);
    a = lstat_of(p);
    pa1 = lstat_of(d1);
    pa2 = lstat_of(d2);
    nap();
    assert_int_equal(rename(p, at(f, "rn/b/g", q, sizeof q)), 0);
    b = lstat_of(q);
    pb1 = lstat_of(d1);
    pb2 = lstat_of(d2);
    assert_int_equal(b.st_ino, a.st_ino);
    assert_int_equal(MTIME(b), MTIME(a));
    assert_true(CTIME(b) > CTIME(a));
    assert_true(MTIME(pb1) > MTIME(pa1) && CTIME(pb1) > CTIME(pa1));
    assert_true(MTIME(pb2) > MTIME(pa2) && CTIME(pb2) > CTIME(pa2));
    assert_int_equal(lstat(p, &st), -1);
    assert_int_equal(errno, ENOENT);
    /* a directory between parents: ".." moves a link */
    test_dir(f, "rn/a/dir", 0755);
    assert_int_equal(lstat_of(d1).st_nlink, 3);
    assert_int_equal(lstat_of(d2).st_nlink, 2);
    assert_int_equal(rename(at(f, "rn/a/dir", p, sizeof p), at(f, "rn/b/dir", q, sizeof q)), 0);
    assert_int_equal(lstat_of(d1).st_nlink, 2);
    assert_int_equal(lstat_of(d2).st_nlink, 3);
    assert_int_equal(lstat_of(at(f, "rn/b/dir/..", p, sizeof p)).st_ino, lstat_of(d2).st_ino);
    /* over an empty directory in the other parent: the replaced one's link goes */
    test_dir(f, "rn/a/empty", 0755);
    assert_int_equal(rename(at(f, "rn/b/dir", p, sizeof p), at(f, "rn/a/empty", q, sizeof q)), 0);
    assert_int_equal(lstat_of(d1).st_nlink, 3);
    assert_int_equal(lstat_of(d2).st_nlink, 2);
    /* over a file with another name: that inode loses a link and gets a new ctime */
    write_file(at(f, "rn/b/victim", p, sizeof p), "v", 0644);
    assert_int_equal(link(p, at(f, "rn/b/victim2", q, sizeof q)), 0);
    a = lstat_of(q);
    nap();
    write_file(at(f, "rn/b/src", d1, sizeof d1), "s", 0644);
    assert_int_equal(rename(d1, p), 0);
    b = lstat_of(q);
    assert_int_equal(b.st_nlink, 1);
    assert_true(CTIME(b) > CTIME(a));
    assert_int_equal(lstat_of(p).st_size, 1);
    assert_int_not_equal(lstat_of(p).st_ino, b.st_ino);
    /* two names of one inode: nothing happens */
    assert_int_equal(link(q, at(f, "rn/b/same", d1, sizeof d1)), 0);
    assert_int_equal(rename(q, d1), 0);
    assert_int_equal(lstat_of(q).st_nlink, 2);
    assert_int_equal(lstat_of(d1).st_nlink, 2);
    /* errors */
    at(f, "rn/a", d1, sizeof d1);
    assert_int_equal(rename(at(f, "rn/missing", p, sizeof p), at(f, "rn/x", q, sizeof q)), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(rename(at(f, "rn/b/victim", p, sizeof p), at(f, "rn/none/x", q, sizeof q)),
                     -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(rename(p, at(f, "rn/a", q, sizeof q)), -1);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(rename(at(f, "rn/a", q, sizeof q), p), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(rename(at(f, "rn/b", q, sizeof q), d1), -1); /* a holds "empty" */
    assert_int_equal(errno, ENOTEMPTY);
    assert_int_equal(rename(d1, at(f, "rn/a/empty/in", q, sizeof q)), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(rename(p, at(f, "rn/b/victim/x", q, sizeof q)), -1);
    assert_int_equal(errno, ENOTDIR);
    /* RENAME_NOREPLACE */
    assert_int_equal(
        renameat2(AT_FDCWD, p, AT_FDCWD, at(f, "rn/b/victim2", q, sizeof q), RENAME_NOREPLACE), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(
        renameat2(AT_FDCWD, p, AT_FDCWD, at(f, "rn/b/new", q, sizeof q), RENAME_NOREPLACE), 0);
    /* RENAME_EXCHANGE: a file and a directory in different parents swap; links follow */
    a = lstat_of(q);                                /* rn/b/new, a file */
    b = lstat_of(at(f, "rn/a/empty", p, sizeof p)); /* a directory */
    pa1 = lstat_of(d1);
    pa2 = lstat_of(d2);
    nap();
    assert_int_equal(renameat2(AT_FDCWD, q, AT_FDCWD, p, RENAME_EXCHANGE), 0);
    assert_int_equal(lstat_of(p).st_ino, a.st_ino);
    assert_int_equal(lstat_of(q).st_ino, b.st_ino);
    pb1 = lstat_of(d1);
    pb2 = lstat_of(d2);
    assert_int_equal(pb1.st_nlink, pa1.st_nlink - 1);
    assert_int_equal(pb2.st_nlink, pa2.st_nlink + 1);
    assert_true(CTIME(pb1) > CTIME(pa1) && MTIME(pb2) > MTIME(pa2));
    st = lstat_of(p);
    assert_true(CTIME(st) > CTIME(a));
    st = lstat_of(q);
    assert_true(CTIME(st) > CTIME(b));
    assert_int_equal(lstat_of(at(f, "rn/b/new/..", d1, sizeof d1)).st_ino, pb2.st_ino);
    at(f, "rn/a", d1, sizeof d1);
    assert_int_equal(
        renameat2(AT_FDCWD, p, AT_FDCWD, at(f, "rn/a/missing", q, sizeof q), RENAME_EXCHANGE), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(renameat2(AT_FDCWD, p, AT_FDCWD, at(f, "rn/b/victim", q, sizeof q),
                               RENAME_EXCHANGE | RENAME_NOREPLACE),
                     -1);
    assert_int_equal(errno, EINVAL);
    /* another user: no renaming in root's 0755 directories */
    assert_int_equal(other((struct op){.kind = OP_RENAME,
                                       .p = at(f, "rn/a/empty", q, sizeof q),
                                       .q = at(f, "rn/b/o", p, sizeof p)}),
                     EACCES);
}

/* ---- a sticky directory ---- */

static void test_sticky_directory(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512], r[512];
    SKIP_IF_NEEDED(f);
    test_dir(f, "st", 01777);
    assert_int_equal(lstat_of(at(f, "st", p, sizeof p)).st_mode, S_IFDIR | 01777);
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at(f, "st/a", p, sizeof p), .mode = 0666}), 0);
    assert_int_equal(
        op_as(OTHER2_UID, OTHER2_GID, 0,
              (struct op){.kind = OP_CREATE, .p = at(f, "st/b", q, sizeof q), .mode = 0666}),
        0);
    assert_int_equal(chmod(p, 0666), 0); /* writable by all: still not removable by them */
    /* not the file's owner nor the directory's: EPERM for unlink and rename */
    assert_int_equal(op_as(OTHER2_UID, OTHER2_GID, 0, (struct op){.kind = OP_UNLINK, .p = p}),
                     EPERM);
    assert_int_equal(op_as(OTHER2_UID, OTHER2_GID, 0,
                           (struct op){.kind = OP_RENAME, .p = p, .q = at(f, "st/c", r, sizeof r)}),
                     EPERM);
    /* ... nor replace it by a rename */
    assert_int_equal(
        op_as(OTHER2_UID, OTHER2_GID, 0, (struct op){.kind = OP_RENAME, .p = q, .q = p}), EPERM);
    /* but it may write it */
    assert_int_equal(op_as(OTHER2_UID, OTHER2_GID, 0, (struct op){.kind = OP_WRITE, .p = p}), 0);
    /* the owner may rename and remove its own file; root anything */
    assert_int_equal(
        other((struct op){.kind = OP_RENAME, .p = p, .q = at(f, "st/a2", r, sizeof r)}), 0);
    assert_int_equal(other((struct op){.kind = OP_UNLINK, .p = r}), 0);
    assert_int_equal(unlink(q), 0);
    /* a directory in it: the same rule for rmdir */
    assert_int_equal(
        other((struct op){.kind = OP_MKDIR, .p = at(f, "st/d", p, sizeof p), .mode = 0777}), 0);
    assert_int_equal(op_as(OTHER2_UID, OTHER2_GID, 0, (struct op){.kind = OP_RMDIR, .p = p}),
                     EPERM);
    assert_int_equal(other((struct op){.kind = OP_RMDIR, .p = p}), 0);
    /* the directory's owner may remove others' files */
    assert_int_equal(chown(at(f, "st", r, sizeof r), OTHER2_UID, OTHER2_GID), 0);
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at(f, "st/e", p, sizeof p), .mode = 0644}), 0);
    assert_int_equal(op_as(OTHER2_UID, OTHER2_GID, 0, (struct op){.kind = OP_UNLINK, .p = p}), 0);
}

/* ---- setgid directories ---- */

static void test_setgid_directory(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512];
    struct stat st;
    SKIP_IF_NEEDED(f);
    test_dir(f, "sg", 0777);
    assert_int_equal(chown(at(f, "sg", q, sizeof q), 0, GROUP_A), 0);
    assert_int_equal(chmod(q, 02777), 0);
    assert_int_equal(lstat_of(q).st_mode, S_IFDIR | 02777);
    /* root's file takes the directory's group; a subdirectory also its setgid bit */
    write_file(at(f, "sg/f", p, sizeof p), "", 0644);
    st = lstat_of(p);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_gid, GROUP_A);
    assert_int_equal(st.st_mode, S_IFREG | 0644);
    assert_int_equal(mkdir(at(f, "sg/d", p, sizeof p), 0755), 0);
    st = lstat_of(p);
    assert_int_equal(st.st_gid, GROUP_A);
    assert_int_equal(st.st_mode, S_IFDIR | 02755);
    /* a user outside the group: the file is still the directory's group */
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at(f, "sg/o", p, sizeof p), .mode = 0644}), 0);
    st = lstat_of(p);
    assert_int_equal(st.st_uid, OTHER_UID);
    assert_int_equal(st.st_gid, GROUP_A);
    assert_int_equal(
        other((struct op){.kind = OP_MKDIR, .p = at(f, "sg/od", p, sizeof p), .mode = 0755}), 0);
    st = lstat_of(p);
    assert_int_equal(st.st_gid, GROUP_A);
    assert_int_equal(st.st_mode, S_IFDIR | 02755);
    /* ... but it may not make a setgid-executable file of a group it is not in */
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at(f, "sg/ox", p, sizeof p), .mode = 02755}), 0);
    st = lstat_of(p);
    assert_int_equal(st.st_gid, GROUP_A);
    assert_int_equal(st.st_mode, S_IFREG | 0755);
    /* a member may */
    assert_int_equal(
        op_as(OTHER_UID, OTHER_GID, GROUP_A,
              (struct op){.kind = OP_CREATE, .p = at(f, "sg/mx", p, sizeof p), .mode = 02755}),
        0);
    assert_int_equal(lstat_of(p).st_mode, S_IFREG | 02755);
    /* without the bit, the creator's group */
    assert_int_equal(chmod(q, 0777), 0);
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at(f, "sg/plain", p, sizeof p), .mode = 0644}),
        0);
    assert_int_equal(lstat_of(p).st_gid, OTHER_GID);
}

/* ---- symlink and readlink ---- */

static void test_symlink_readlink(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512], buf[64];
    struct stat st, a, b;
    SKIP_IF_NEEDED(f);
    test_dir(f, "sl", 0755);
    a = lstat_of(at(f, "sl", q, sizeof q));
    nap();
    assert_int_equal(symlink("target/file", at(f, "sl/l", p, sizeof p)), 0);
    st = lstat_of(p);
    b = lstat_of(q);
    assert_int_equal(st.st_mode, S_IFLNK | 0777);
    assert_int_equal(st.st_size, 11);
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(st.st_uid, 0);
    assert_true(ATIME(st) == MTIME(st) && MTIME(st) == CTIME(st));
    assert_true(MTIME(b) > MTIME(a) && CTIME(b) > CTIME(a));
    assert_int_equal(readlink(p, buf, sizeof buf), 11);
    assert_memory_equal(buf, "target/file", 11);
    assert_int_equal(readlink(p, buf, 4), 4); /* truncated, no NUL */
    assert_memory_equal(buf, "targ", 4);
    /* errors */
    assert_int_equal(symlink("x", p), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(symlink("", at(f, "sl/empty", q, sizeof q)), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(readlink(at(f, "sl", q, sizeof q), buf, sizeof buf), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(readlink(at(f, "sl/missing", q, sizeof q), buf, sizeof buf), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(stat(p, &st), -1); /* dangling */
    assert_int_equal(errno, ENOENT);
    /* loops */
    assert_int_equal(symlink("loop2", at(f, "sl/loop1", p, sizeof p)), 0);
    assert_int_equal(symlink("loop1", at(f, "sl/loop2", q, sizeof q)), 0);
    assert_int_equal(open(p, O_RDONLY), -1);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(stat(q, &st), -1);
    assert_int_equal(errno, ELOOP);
    write_file(at(f, "sl/file", q, sizeof q), "x", 0644);
    assert_int_equal(symlink("file", at(f, "sl/tofile", p, sizeof p)), 0);
    assert_int_equal(open(p, O_RDONLY | O_NOFOLLOW), -1);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(lstat_of(p).st_size, 4);
    /* chmod follows the link */
    assert_int_equal(chmod(p, 0600), 0);
    assert_int_equal(lstat_of(q).st_mode, S_IFREG | 0600);
    assert_int_equal(lstat_of(p).st_mode, S_IFLNK | 0777);
}

/* ---- readdir ---- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_readdir(void **state)
{
    struct fixture *f = *state;
    char p[512], *names[8];
    unsigned char types[8];
    size_t n = 0;
    struct stat a, b;
    DIR *dir;
    struct dirent *de;
    SKIP_IF_NEEDED(f);
    test_dir(f, "rd", 0755);
    test_dir(f, "rd/sub", 0755);
    write_file(at(f, "rd/file", p, sizeof p), "", 0644);
    assert_int_equal(symlink("file", at(f, "rd/link", p, sizeof p)), 0);
    assert_int_equal(mkfifo(at(f, "rd/fifo", p, sizeof p), 0644), 0);
    write_file(at(f, "rd/gone", p, sizeof p), "", 0644);
    assert_int_equal(unlink(p), 0);
    a = lstat_of(at(f, "rd", p, sizeof p));
    nap();
    dir = opendir(p);
    assert_non_null(dir);
    while ((de = readdir(dir)) != NULL && n < 8) {
        names[n] = strdup(de->d_name);
        types[n] = de->d_type;
        n++;
    }
    assert_int_equal(closedir(dir), 0);
    assert_int_equal(n, 6);
    /* sort the types along with the names */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (cmp_names(&names[j], &names[i]) < 0) {
                char *t = names[i];
                unsigned char tt = types[i];
                names[i] = names[j], names[j] = t;
                types[i] = types[j], types[j] = tt;
            }
        }
    }
    assert_string_equal(names[0], ".");
    assert_string_equal(names[1], "..");
    assert_string_equal(names[2], "fifo");
    assert_int_equal(types[2], DT_FIFO);
    assert_string_equal(names[3], "file");
    assert_int_equal(types[3], DT_REG);
    assert_string_equal(names[4], "link");
    assert_int_equal(types[4], DT_LNK);
    assert_string_equal(names[5], "sub");
    assert_int_equal(types[5], DT_DIR);
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    /* listing changes no time of the directory (no atime updates) */
    b = lstat_of(p);
    assert_int_equal(ATIME(b), ATIME(a));
    assert_int_equal(MTIME(b), MTIME(a));
    assert_int_equal(CTIME(b), CTIME(a));
    /* errors */
    assert_null(opendir(at(f, "rd/file", p, sizeof p)));
    assert_int_equal(errno, ENOTDIR);
    assert_null(opendir(at(f, "rd/missing", p, sizeof p)));
    assert_int_equal(errno, ENOENT);
    assert_int_equal(chmod(at(f, "rd/sub", p, sizeof p), 0711), 0);
    assert_int_equal(other((struct op){.kind = OP_OPENDIR, .p = p}), EACCES);
    assert_int_equal(other((struct op){.kind = OP_OPENDIR, .p = at(f, "rd", p, sizeof p)}), 0);
    at(f, "rd/sub", p, sizeof p);
    dir = opendir(p); /* root: still readable */
    assert_non_null(dir);
    assert_int_equal(closedir(dir), 0);
}

/* ---- extended attributes ---- */

static void test_xattrs(void **state)
{
    struct fixture *f = *state;
    char p[512], buf[256];
    struct stat a, b;
    SKIP_IF_NEEDED(f);
    test_dir(f, "xa", 0755);
    write_file(at(f, "xa/f", p, sizeof p), "x", 0644);
    a = lstat_of(p);
    nap();
    /* set: ctime only */
    assert_int_equal(setxattr(p, "user.one", "value1", 6, 0), 0);
    b = lstat_of(p);
    assert_true(CTIME(b) > CTIME(a));
    assert_int_equal(MTIME(b), MTIME(a));
    assert_int_equal(ATIME(b), ATIME(a));
    assert_int_equal(getxattr(p, "user.one", buf, sizeof buf), 6);
    assert_memory_equal(buf, "value1", 6);
    assert_int_equal(getxattr(p, "user.one", NULL, 0), 6);
    assert_int_equal(getxattr(p, "user.one", buf, 3), -1);
    assert_int_equal(errno, ERANGE);
    assert_int_equal(setxattr(p, "user.two", "", 0, 0), 0);
    assert_int_equal(getxattr(p, "user.two", buf, sizeof buf), 0);
    assert_int_equal(listxattr(p, buf, sizeof buf), 18);
    assert_true(memcmp(buf, "user.one\0user.two\0", 18) == 0 ||
                memcmp(buf, "user.two\0user.one\0", 18) == 0);
    assert_int_equal(listxattr(p, NULL, 0), 18);
    assert_int_equal(listxattr(p, buf, 4), -1);
    assert_int_equal(errno, ERANGE);
    /* flags */
    assert_int_equal(setxattr(p, "user.one", "v", 1, XATTR_CREATE), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(setxattr(p, "user.three", "v", 1, XATTR_REPLACE), -1);
    assert_int_equal(errno, ENODATA);
    assert_int_equal(setxattr(p, "user.one", "new", 3, XATTR_REPLACE), 0);
    assert_int_equal(getxattr(p, "user.one", buf, sizeof buf), 3);
    /* get and remove of a missing one, other namespaces */
    assert_int_equal(getxattr(p, "user.none", buf, sizeof buf), -1);
    assert_int_equal(errno, ENODATA);
    assert_int_equal(removexattr(p, "user.none"), -1);
    assert_int_equal(errno, ENODATA);
    assert_int_equal(setxattr(p, "bogus.x", "v", 1, 0), -1);
    assert_int_equal(errno, EOPNOTSUPP);
    assert_int_equal(setxattr(p, "trusted.t", "v", 1, 0), 0);
    /* remove: ctime */
    a = lstat_of(p);
    nap();
    assert_int_equal(removexattr(p, "user.two"), 0);
    b = lstat_of(p);
    assert_true(CTIME(b) > CTIME(a));
    assert_int_equal(getxattr(p, "user.two", buf, sizeof buf), -1);
    assert_int_equal(errno, ENODATA);
    /* another user: reads what it may read; changes only with write permission; trusted.*
     * is root's */
    assert_int_equal(other((struct op){.kind = OP_GETXATTR, .p = p, .q = "user.one"}), 0);
    assert_int_equal(other((struct op){.kind = OP_SETXATTR, .p = p, .q = "user.o"}), EACCES);
    assert_int_equal(other((struct op){.kind = OP_SETXATTR, .p = p, .q = "trusted.o"}), EPERM);
    assert_int_equal(other((struct op){.kind = OP_GETXATTR, .p = p, .q = "trusted.t"}), ENODATA);
    assert_int_equal(chmod(p, 0600), 0);
    assert_int_equal(other((struct op){.kind = OP_GETXATTR, .p = p, .q = "user.one"}), EACCES);
    assert_int_equal(chmod(p, 0666), 0);
    assert_int_equal(other((struct op){.kind = OP_SETXATTR, .p = p, .q = "user.o"}), 0);
    /* the attributes go with the file */
    assert_int_equal(getxattr(at(f, "xa/missing", buf, sizeof buf), "user.one", NULL, 0), -1);
    assert_int_equal(errno, ENOENT);
}

/* ---- without default_permissions: the filesystem's own checks ---- */

/* path = mnt2/rel */
static const char *at2(const struct fixture *f, const char *rel, char *buf, size_t cap)
{
    if ((size_t)snprintf(buf, cap, "%s/%s", f->mnt2, rel) >= cap) {
        fail_msg("path too long: %s/%s", f->mnt2, rel);
    }
    return buf;
}

/* Mounted with allow_other alone, the kernel leaves permission checks to raftfs (lookups
 * aside): every change must still be refused exactly as the modes say. */
static void test_checks_without_default_permissions(void **state)
{
    struct fixture *f = *state;
    char p[512], q[512], r[512];
    SKIP_IF_NEEDED(f);
    test_dir(f, "nd", 0755);
    test_dir(f, "nd/d", 0755);
    test_dir(f, "nd/open", 0777);
    test_dir(f, "nd/open2", 0777);
    write_file(at(f, "nd/f", p, sizeof p), "root's", 0666);
    write_file(at(f, "nd/ro", p, sizeof p), "root's", 0644);
    /* creating, removing, renaming and linking in root's 0755 directory */
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at2(f, "nd/new", p, sizeof p), .mode = 0644}),
        EACCES);
    assert_int_equal(other((struct op){.kind = OP_MKDIR, .p = p, .mode = 0755}), EACCES);
    assert_int_equal(other((struct op){.kind = OP_UNLINK, .p = at2(f, "nd/f", p, sizeof p)}),
                     EACCES);
    assert_int_equal(other((struct op){.kind = OP_RMDIR, .p = at2(f, "nd/d", q, sizeof q)}),
                     EACCES);
    assert_int_equal(
        other((struct op){.kind = OP_RENAME, .p = p, .q = at2(f, "nd/g", q, sizeof q)}), EACCES);
    assert_int_equal(
        other((struct op){.kind = OP_RENAME, .p = p, .q = at2(f, "nd/open/g", q, sizeof q)}),
        EACCES);
    assert_int_equal(other((struct op){.kind = OP_LINK, .p = p, .q = at2(f, "nd/h", q, sizeof q)}),
                     EACCES);
    assert_int_equal(lstat_of(at(f, "nd/f", p, sizeof p)).st_nlink, 1);
    assert_int_equal(lstat_of(at(f, "nd/d", p, sizeof p)).st_nlink, 2);
    /* a directory it may not write cannot change parent (its ".." would) */
    test_dir(f, "nd/open/rootdir", 0755);
    assert_int_equal(other((struct op){.kind = OP_RENAME,
                                       .p = at2(f, "nd/open/rootdir", p, sizeof p),
                                       .q = at2(f, "nd/open2/rootdir", q, sizeof q)}),
                     EACCES);
    assert_int_equal(
        other((struct op){.kind = OP_RENAME, .p = p, .q = at2(f, "nd/open/renamed", q, sizeof q)}),
        0);
    /* attributes and data */
    at2(f, "nd/ro", p, sizeof p);
    assert_int_equal(other((struct op){.kind = OP_WRITE, .p = p}), EACCES);
    assert_int_equal(other((struct op){.kind = OP_TRUNCATE, .p = p, .size = 0}), EACCES);
    assert_int_equal(other((struct op){.kind = OP_READ, .p = p}), 0);
    assert_int_equal(other((struct op){.kind = OP_CHMOD, .p = p, .mode = 0666}), EPERM);
    assert_int_equal(
        other((struct op){.kind = OP_CHOWN, .p = p, .uid = OTHER_UID, .gid = (gid_t)-1}), EPERM);
    assert_int_equal(other((struct op){.kind = OP_TOUCH_NOW, .p = p}), EACCES);
    assert_int_equal(other((struct op){.kind = OP_TOUCH_SET, .p = p}), EPERM);
    assert_int_equal(other((struct op){.kind = OP_SETXATTR, .p = p, .q = "user.x"}), EACCES);
    assert_int_equal(lstat_of(at(f, "nd/ro", q, sizeof q)).st_mode, S_IFREG | 0644);
    /* a sticky directory */
    test_dir(f, "nd/st", 01777);
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at2(f, "nd/st/a", p, sizeof p), .mode = 0666}),
        0);
    assert_int_equal(op_as(OTHER2_UID, OTHER2_GID, 0, (struct op){.kind = OP_UNLINK, .p = p}),
                     EPERM);
    assert_int_equal(
        op_as(OTHER2_UID, OTHER2_GID, 0,
              (struct op){.kind = OP_RENAME, .p = p, .q = at2(f, "nd/st/b", r, sizeof r)}),
        EPERM);
    assert_int_equal(other((struct op){.kind = OP_UNLINK, .p = p}), 0);
    /* the owner of a file in a 0777 directory: everything */
    assert_int_equal(
        other((struct op){.kind = OP_CREATE, .p = at2(f, "nd/open/o", p, sizeof p), .mode = 0644}),
        0);
    assert_int_equal(other((struct op){.kind = OP_CHMOD, .p = p, .mode = 0600}), 0);
    assert_int_equal(other((struct op){.kind = OP_TOUCH_SET, .p = p}), 0);
    assert_int_equal(
        other((struct op){.kind = OP_LINK, .p = p, .q = at2(f, "nd/open/o2", q, sizeof q)}), 0);
    assert_int_equal(other((struct op){.kind = OP_UNLINK, .p = q}), 0);
    assert_int_equal(other((struct op){.kind = OP_UNLINK, .p = p}), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_getattr_statfs_access),
        cmocka_unit_test(test_create_mknod_open),
        cmocka_unit_test(test_read_write),
        cmocka_unit_test(test_setattr_chmod_chown_truncate),
        cmocka_unit_test(test_chmod_chown_permissions),
        cmocka_unit_test(test_write_by_non_owner_clears_setid),
        cmocka_unit_test(test_utimens),
        cmocka_unit_test(test_mkdir_rmdir),
        cmocka_unit_test(test_link_unlink),
        cmocka_unit_test(test_rename),
        cmocka_unit_test(test_sticky_directory),
        cmocka_unit_test(test_setgid_directory),
        cmocka_unit_test(test_symlink_readlink),
        cmocka_unit_test(test_readdir),
        cmocka_unit_test(test_xattrs),
        cmocka_unit_test(test_checks_without_default_permissions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
