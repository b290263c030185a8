/* File locks held in the cluster (docs/locks.md): the lock list's rules (no mounts), then
 * flock and fcntl locks between two mounts of one cluster, through the kernel, with a child
 * process per mount; release at close and at unmount, an interrupted wait, and a mount
 * daemon killed with SIGKILL whose locks go once its lease expires. Mount tests need root,
 * /dev/fuse and fusermount3; skipped otherwise.
 *
 * One cluster and two mounts (raftfs-mount -f, --lease-ms LEASE_MS) for the file; the tests
 * that stop or kill a daemon start a third mount of their own. A "locker" is a child process
 * (fork) that runs lock calls on one file when told to through a pipe and answers through
 * another; every wait for an answer is bounded. The teardown kills the lockers and the
 * daemons by their pids, unmounts what is left and removes the temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/err.h"
#include "fs/lock_list.h"
#include "tests/lib/proc.h"
#include "tests/lib/sharded.h"
#include "tests/unit/mount_fixture.h"
#include "tests/unit/mount_helper.h"

#define LEASE_MS "2000"
#define LEASE    2000
/* How long past the lease a killed mount's locks may take to go (polling, ASan, a slow
 * machine). */
#define MARGIN_MS 4000
/* An answer that must come (a lock call that does not block). */
#define ANSWER_MS 10000
/* How long a call that must block is watched before it is taken as blocked. */
#define BLOCKED_MS  400
#define MAX_LOCKERS 20
/* Blocked waiters in test_many_waiters_leave_the_mount_answering: more than libfuse's
 * default of 10 worker threads. */
#define MANY_WAITERS 12
/* Rounds of each locker in test_lock_excludes_under_contention. */
#define CRIT_ROUNDS 10

/* ---- the lock list, without mounts ---- */

static struct fs_lock lk(uint64_t owner, uint8_t type, uint64_t start, uint64_t end)
{
    struct fs_lock k = {.mount = 7, .owner = owner, .start = start, .end = end, .pid = 42};
    k.type = type;
    k.kind = FS_LOCK_POSIX;
    return k;
}

/* The owner's ranges in l as text, in list order after sorting by start: "0-9w 20-29r". */
static const char *ranges(const struct fs_lock_list *l, uint64_t owner, char *buf, size_t cap)
{
    struct fs_lock v[64];
    unsigned n = 0;
    size_t used = 0;
    for (unsigned i = 0; i < l->n && n < 64; i++) {
        if (l->v[i].owner == owner) {
            v[n++] = l->v[i];
        }
    }
    for (unsigned i = 1; i < n; i++) {
        for (unsigned j = i; j > 0 && v[j].start < v[j - 1].start; j--) {
            struct fs_lock t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    }
    buf[0] = '\0';
    for (unsigned i = 0; i < n && used < cap; i++) {
        used += (size_t)snprintf(buf + used, cap - used, "%s%llu-%llu%c", i ? " " : "",
                                 (unsigned long long)v[i].start, (unsigned long long)v[i].end,
                                 v[i].type == FS_LOCK_WRITE ? 'w' : 'r');
    }
    return buf;
}

static void set(struct fs_lock_list *l, struct fs_lock k, bool unlock)
{
    assert_int_equal(fs_lock_list_set(l, &k, unlock), 0);
}

static void test_list_unlock_of_a_middle_part_splits_the_lock(void **state)
{
    struct fs_lock_list l = {0};
    char buf[256];
    (void)state;
    set(&l, lk(1, FS_LOCK_WRITE, 0, 99), false);
    set(&l, lk(1, FS_LOCK_WRITE, 40, 59), true);
    assert_string_equal(ranges(&l, 1, buf, sizeof buf), "0-39w 60-99w");
    /* a read lock over the hole and part of both sides converts those parts */
    set(&l, lk(1, FS_LOCK_READ, 30, 69), false);
    assert_string_equal(ranges(&l, 1, buf, sizeof buf), "0-29w 30-69r 70-99w");
    /* touching ranges of one type merge; to EOF */
    set(&l, lk(1, FS_LOCK_WRITE, 30, FS_LOCK_EOF), false);
    {
        char want[64];
        snprintf(want, sizeof want, "0-%lluw", (unsigned long long)FS_LOCK_EOF);
        assert_string_equal(ranges(&l, 1, buf, sizeof buf), want);
    }
    fs_lock_list_clear(&l);
}

static void test_list_conflicts_only_between_owners_and_kinds(void **state)
{
    struct fs_lock_list l = {0};
    struct fs_lock q;
    (void)state;
    set(&l, lk(1, FS_LOCK_READ, 0, 9), false);
    set(&l, lk(2, FS_LOCK_READ, 5, 14), false); /* readers share */
    q = lk(3, FS_LOCK_WRITE, 9, 9);
    assert_non_null(fs_lock_list_conflict(&l, &q));
    q = lk(3, FS_LOCK_WRITE, 15, 20);
    assert_null(fs_lock_list_conflict(&l, &q)); /* past both */
    q = lk(1, FS_LOCK_WRITE, 0, 4);
    assert_null(fs_lock_list_conflict(&l, &q)); /* its own lock: converted, no conflict */
    q = lk(3, FS_LOCK_WRITE, 0, 100);
    q.kind = FS_LOCK_FLOCK;
    assert_null(fs_lock_list_conflict(&l, &q)); /* flock and POSIX locks do not meet */
    q = lk(1, FS_LOCK_WRITE, 0, 4);
    q.mount = 8; /* the same owner number on another mount is another owner */
    assert_non_null(fs_lock_list_conflict(&l, &q));
    fs_lock_list_clear(&l);
}

static void test_list_encoding_round_trips_and_rejects_garbage(void **state)
{
    struct fs_lock_list l = {0}, d = {0};
    void *buf;
    size_t len;
    (void)state;
    set(&l, lk(1, FS_LOCK_WRITE, 0, 99), false);
    set(&l, lk(2, FS_LOCK_READ, 200, FS_LOCK_EOF), false);
    assert_int_equal(fs_lock_list_encode(&l, &buf, &len), 0);
    assert_int_equal(fs_lock_list_decode(&d, buf, len), 0);
    assert_int_equal(d.n, 2);
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(d.v[i].mount, l.v[i].mount);
        assert_int_equal(d.v[i].owner, l.v[i].owner);
        assert_int_equal(d.v[i].start, l.v[i].start);
        assert_int_equal(d.v[i].end, l.v[i].end);
        assert_int_equal(d.v[i].pid, l.v[i].pid);
        assert_int_equal(d.v[i].type, l.v[i].type);
        assert_int_equal(d.v[i].kind, l.v[i].kind);
    }
    fs_lock_list_clear(&d);
    assert_int_equal(fs_lock_list_decode(&d, buf, len - 1), -EIO);
    ((unsigned char *)buf)[0] = 9;
    assert_int_equal(fs_lock_list_decode(&d, buf, len), -EIO);
    fs_lock_list_clear(&d);
    rfs_free(buf);
    fs_lock_list_clear(&l);
}

static void test_list_drops_an_owner_or_a_mount(void **state)
{
    struct fs_lock_list l = {0};
    struct fs_lock other = lk(1, FS_LOCK_READ, 0, 9);
    (void)state;
    other.mount = 8;
    set(&l, lk(1, FS_LOCK_WRITE, 0, 9), false);
    set(&l, lk(1, FS_LOCK_WRITE, 20, 29), false);
    set(&l, lk(2, FS_LOCK_READ, 40, 49), false);
    set(&l, other, false);
    assert_true(fs_lock_list_has_owner(&l, 7, 1, FS_LOCK_POSIX));
    assert_int_equal(fs_lock_list_drop_owner(&l, 7, 1, FS_LOCK_POSIX), 2);
    assert_false(fs_lock_list_has_owner(&l, 7, 1, FS_LOCK_POSIX));
    assert_int_equal(fs_lock_list_drop_mount(&l, 7), 1);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].mount, 8);
    fs_lock_list_clear(&l);
}

/* ---- lockers: a child process per mount ---- */

enum locker_op {
    L_OPEN,  /* open the file into slot */
    L_CLOSE, /* close slot */
    L_FLOCK, /* flock(slot, arg) */
    L_SETLK, /* fcntl(slot, F_SETLK / F_SETLKW (arg 1), type, start, len) */
    L_GETLK, /* fcntl(slot, F_GETLK, type, start, len) */
    L_OFDLK, /* fcntl(slot, F_OFD_SETLK, type, start, len) */
    L_CRIT,  /* arg times: lock the whole file (type 0: F_SETLKW, 1: flock), create the
              * marker file with O_EXCL, unlink it, unlock; rv: how many creates failed */
    L_EXIT,
};

/* The marker of L_CRIT (a local file, outside the mounts): it exists only while its creator
 * holds the lock, so an O_EXCL create that fails means two holders at once. Set before the
 * lockers are forked. */
static char crit_marker[400];

/* One L_CRIT round on fd: 0, 1 if the marker was there, -1 if a lock call failed. */
static int crit_round(int fd, int use_flock)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int bad = 0, m;
    if (use_flock ? flock(fd, LOCK_EX) : fcntl(fd, F_SETLKW, &fl)) {
        return -1;
    }
    m = open(crit_marker, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (m < 0) {
        bad = 1;
    } else {
        struct timespec ts = {0, 2000000L}; /* hold it a moment */
        nanosleep(&ts, NULL);
        close(m);
        unlink(crit_marker);
    }
    fl.l_type = F_UNLCK;
    if (use_flock ? flock(fd, LOCK_UN) : fcntl(fd, F_SETLK, &fl)) {
        return -1;
    }
    return bad;
}

struct locker_cmd {
    int op, slot, arg;
    short type;
    long long start, len;
};

struct locker_res {
    int rv, err;
    short type;
    long long start, len;
    int pid;
};

struct locker {
    pid_t pid;
    int cmd, res; /* our ends of its pipes */
};

static void on_usr1(int sig)
{
    (void)sig; /* only interrupts the call in progress */
}

static void locker_serve(const char *path, int cmd, int res)
{
    int fds[4] = {-1, -1, -1, -1};
    struct sigaction sa;
    struct locker_cmd c;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: a blocked F_SETLKW returns EINTR */
    sigaction(SIGUSR1, &sa, NULL);
    while (read(cmd, &c, sizeof c) == (ssize_t)sizeof c) {
        struct locker_res r;
        struct flock fl;
        memset(&r, 0, sizeof r);
        memset(&fl, 0, sizeof fl);
        fl.l_type = c.type;
        fl.l_whence = SEEK_SET;
        fl.l_start = (off_t)c.start;
        fl.l_len = (off_t)c.len;
        switch (c.op) {
            case L_OPEN:
                r.rv = fds[c.slot] = open(path, O_RDWR | O_CREAT, 0644);
                break;
            case L_CLOSE:
                r.rv = close(fds[c.slot]);
                fds[c.slot] = -1;
                break;
            case L_FLOCK:
                r.rv = flock(fds[c.slot], c.arg);
                break;
            case L_SETLK:
                r.rv = fcntl(fds[c.slot], c.arg ? F_SETLKW : F_SETLK, &fl);
                break;
            case L_OFDLK:
                r.rv = fcntl(fds[c.slot], F_OFD_SETLK, &fl);
                break;
            case L_CRIT:
                for (int i = 0; i < c.arg && r.rv >= 0; i++) {
                    int b = crit_round(fds[c.slot], c.type);
                    r.rv = b < 0 ? -1 : r.rv + b;
                }
                break;
            case L_GETLK:
                r.rv = fcntl(fds[c.slot], F_GETLK, &fl);
                r.type = fl.l_type;
                r.start = (long long)fl.l_start;
                r.len = (long long)fl.l_len;
                r.pid = (int)fl.l_pid;
                break;
            default:
                _exit(0);
        }
        r.err = r.rv < 0 ? errno : 0;
        if (write(res, &r, sizeof r) != (ssize_t)sizeof r) {
            _exit(1);
        }
    }
    _exit(0);
}

/* The fixture: the cluster, two mounts, and every locker started (killed in the teardown). */
struct fixture {
    struct mount_fixture m;
    char mnt2[400], log2[400];
    pid_t pid2;
    char mnt3[400], log3[400];
    pid_t pid3;
    struct locker lockers[MAX_LOCKERS];
    unsigned n_lockers;
};

/* A locker on path with the file open in slot 0. */
static struct locker *locker_start(struct fixture *f, const char *path)
{
    int cmd[2], res[2];
    struct locker *l;
    assert_true(f->n_lockers < MAX_LOCKERS);
    assert_int_equal(pipe2(cmd, O_CLOEXEC), 0);
    assert_int_equal(pipe2(res, O_CLOEXEC), 0);
    l = &f->lockers[f->n_lockers];
    l->pid = fork();
    assert_true(l->pid >= 0);
    if (l->pid == 0) {
        /* gone with the test; and no other locker's pipes held open */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (unsigned i = 0; i < f->n_lockers; i++) {
            close(f->lockers[i].cmd);
            close(f->lockers[i].res);
        }
        close(cmd[1]);
        close(res[0]);
        locker_serve(path, cmd[0], res[1]);
    }
    f->n_lockers++;
    close(cmd[0]);
    close(res[1]);
    l->cmd = cmd[1];
    l->res = res[0];
    return l;
}

static void locker_send(struct locker *l, struct locker_cmd c)
{
    assert_int_equal(write(l->cmd, &c, sizeof c), (ssize_t)sizeof c);
}

/* The answer to the last command, if it comes within ms: true with *r. */
static bool locker_answer(struct locker *l, int ms, struct locker_res *r)
{
    struct pollfd p = {.fd = l->res, .events = POLLIN};
    int n = poll(&p, 1, ms);
    if (n <= 0) {
        return false;
    }
    assert_int_equal(read(l->res, r, sizeof *r), (ssize_t)sizeof *r);
    return true;
}

/* Run a command that must answer: its rv, with errno in *err (may be NULL). */
static int locker_do(struct locker *l, struct locker_cmd c, struct locker_res *out)
{
    struct locker_res r;
    locker_send(l, c);
    if (!locker_answer(l, ANSWER_MS, &r)) {
        fail_msg("locker %d: no answer to op %d within %d ms", (int)l->pid, c.op, ANSWER_MS);
    }
    if (out != NULL) {
        *out = r;
    }
    return r.rv < 0 ? -r.err : r.rv;
}

static int do_open(struct locker *l, int slot)
{
    struct locker_cmd c = {.op = L_OPEN, .slot = slot};
    return locker_do(l, c, NULL) >= 0 ? 0 : -1;
}

static int do_close(struct locker *l, int slot)
{
    struct locker_cmd c = {.op = L_CLOSE, .slot = slot};
    return locker_do(l, c, NULL);
}

static int do_flock(struct locker *l, int op)
{
    struct locker_cmd c = {.op = L_FLOCK, .arg = op};
    return locker_do(l, c, NULL);
}

static struct locker_cmd setlk_cmd(short type, long long start, long long len, bool wait)
{
    struct locker_cmd c = {.op = L_SETLK, .type = type, .start = start, .len = len};
    c.arg = wait;
    return c;
}

static int do_setlk(struct locker *l, short type, long long start, long long len)
{
    return locker_do(l, setlk_cmd(type, start, len, false), NULL);
}

/* SIGKILL every locker and reap them within wait_ms in all. One stuck in a request its mount
 * does not answer cannot die before the mount's daemon stops: it is kept, for the group's
 * teardown to reap after stopping the daemons. */
static void locker_kill_all(struct fixture *f, int wait_ms)
{
    long long end = proc_now_ms() + wait_ms;
    unsigned kept = 0;
    for (unsigned i = 0; i < f->n_lockers; i++) {
        kill(f->lockers[i].pid, SIGKILL);
    }
    for (unsigned i = 0; i < f->n_lockers; i++) {
        struct locker *l = &f->lockers[i];
        long long left = end - proc_now_ms();
        if (proc_wait(l->pid, left > 0 ? (int)left : 0) == -2) {
            fprintf(stderr, "locker %d does not exit yet\n", (int)l->pid);
            f->lockers[kept++] = *l;
            continue;
        }
        close(l->cmd);
        close(l->res);
    }
    f->n_lockers = kept;
}

/* How many lines of the file at path contain needle. */
static int log_count_lines(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "r");
    char line[1024];
    int n = 0;
    if (fp == NULL) {
        return 0;
    }
    while (fgets(line, sizeof line, fp) != NULL) {
        n += strstr(line, needle) != NULL;
    }
    fclose(fp);
    return n;
}

/* ---- the fixture ---- */

static const char *const mount_args[] = {"--lease-ms", LEASE_MS, NULL};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char errmsg[RFS_ERRMSG_SIZE];
    *state = f;
    if (f == NULL || mount_fixture_start(&f->m, "raftfs-locks", NULL, mount_args) != 0) {
        return f == NULL ? -1 : 0; /* the tests fail on the missing mount; teardown cleans */
    }
    if (f->m.skipped) {
        return 0;
    }
    snprintf(f->mnt2, sizeof f->mnt2, "%s/m2", f->m.dir);
    snprintf(f->log2, sizeof f->log2, "%s/mount2.log", f->m.dir);
    snprintf(f->mnt3, sizeof f->mnt3, "%s/m3", f->m.dir);
    snprintf(f->log3, sizeof f->log3, "%s/mount3.log", f->m.dir);
    if (mount_helper_start_args(f->m.bin, f->m.s.meta.group, f->mnt2, mount_args, f->log2, &f->pid2,
                                errmsg) != 0) {
        fprintf(stderr, "setup: second mount: %s\n", errmsg);
        mount_helper_dump_log(f->log2);
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int bad = 0;
    if (f == NULL) {
        return 0;
    }
    if (f->pid3 > 0) {
        kill(f->pid3, SIGCONT); /* a test may have stopped it */
    }
    locker_kill_all(f, 2000);
    if (f->mnt2[0] != '\0') {
        bad += mount_helper_teardown(f->mnt3, &f->pid3, f->log3);
        bad += mount_helper_teardown(f->mnt2, &f->pid2, f->log2);
    }
    /* m3 was killed or stopped above; check the other mount points before removing */
    if (f->mnt3[0] != '\0' && mount_helper_is_mount_point(f->mnt3)) {
        fprintf(stderr, "teardown: %s still mounted\n", f->mnt3);
        bad++;
    }
    bad += mount_fixture_stop(&f->m, f->mnt2);
    locker_kill_all(f, 5000); /* any stuck in a mount's request could exit once it stopped */
    if (f->n_lockers > 0) {
        bad++;
    }
    free(f);
    return bad == 0 ? 0 : -1;
}

/* Between tests: every locker gone (their closes drop what they held). */
static int test_setup(void **state)
{
    (void)state;
    return 0;
}

/* After each test: its lockers killed, and mount 3 stopped if the test left it running. */
static int test_teardown(void **state)
{
    struct fixture *f = *state;
    int bad = 0;
    if (f->pid3 > 0) {
        kill(f->pid3, SIGCONT); /* a test may have stopped it */
    }
    locker_kill_all(f, 5000);
    if (f->pid3 > 0) {
        bad = mount_helper_teardown(f->mnt3, &f->pid3, f->log3);
    }
    return bad == 0 ? 0 : -1;
}

#define SKIP_IF_NEEDED(f)                                                                          \
    do {                                                                                           \
        if ((f)->m.skipped) {                                                                      \
            skip();                                                                                \
        }                                                                                          \
        if ((f)->m.pid == 0 || (f)->pid2 == 0) {                                                   \
            fail_msg("the mounts are not running");                                                \
        }                                                                                          \
    } while (0)

/* Two lockers on file name, a on mount point ma and b on mb, each with it open in slot 0
 * (created through ma). */
static void two_lockers(struct fixture *f, const char *ma, const char *mb, const char *name,
                        struct locker **a, struct locker **b)
{
    char pa[512], pb[512];
    int fd;
    snprintf(pa, sizeof pa, "%s/%s", ma, name);
    snprintf(pb, sizeof pb, "%s/%s", mb, name);
    fd = open(pa, O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    *a = locker_start(f, pa);
    *b = locker_start(f, pb);
    assert_int_equal(do_open(*a, 0), 0);
    assert_int_equal(do_open(*b, 0), 0);
}

/* ---- tests through the mounts ---- */

static void test_flock_excludes_across_mounts(void **state)
{
    struct fixture *f = *state;
    struct locker *a, *b;
    struct locker_res r;
    struct locker_cmd c = {.op = L_FLOCK, .arg = LOCK_EX};
    long long t0;
    SKIP_IF_NEEDED(f);
    two_lockers(f, f->m.mnt, f->mnt2, "flock", &a, &b);
    assert_int_equal(do_flock(a, LOCK_EX), 0);
    assert_int_equal(do_flock(b, LOCK_EX | LOCK_NB), -EWOULDBLOCK);
    assert_int_equal(do_flock(b, LOCK_SH | LOCK_NB), -EWOULDBLOCK);
    /* a blocking flock waits until the holder lets go */
    locker_send(b, c);
    assert_false(locker_answer(b, BLOCKED_MS, &r));
    t0 = proc_now_ms();
    assert_int_equal(do_flock(a, LOCK_UN), 0);
    assert_true(locker_answer(b, ANSWER_MS, &r));
    assert_int_equal(r.rv, 0);
    printf("blocked flock granted %lld ms after the unlock\n", proc_now_ms() - t0);
    assert_int_equal(do_flock(a, LOCK_SH | LOCK_NB), -EWOULDBLOCK);
    /* shared locks share, but exclude an exclusive one */
    assert_int_equal(do_flock(b, LOCK_SH), 0); /* b converts its own lock */
    assert_int_equal(do_flock(a, LOCK_SH | LOCK_NB), 0);
    assert_int_equal(do_flock(a, LOCK_EX | LOCK_NB), -EWOULDBLOCK);
    assert_int_equal(do_flock(b, LOCK_EX | LOCK_NB), -EWOULDBLOCK);
    assert_int_equal(do_flock(b, LOCK_UN), 0);
    assert_int_equal(do_flock(a, LOCK_EX | LOCK_NB), 0);
}

static void test_fcntl_ranges_across_mounts(void **state)
{
    struct fixture *f = *state;
    struct locker *a, *b;
    struct locker_res r;
    struct locker_cmd get = {.op = L_GETLK, .type = F_WRLCK, .start = 0, .len = 10};
    SKIP_IF_NEEDED(f);
    two_lockers(f, f->m.mnt, f->mnt2, "ranges", &a, &b);
    assert_int_equal(do_setlk(a, F_WRLCK, 0, 100), 0);
    /* overlapping: refused, whatever the type */
    assert_int_equal(do_setlk(b, F_WRLCK, 50, 100), -EAGAIN);
    assert_int_equal(do_setlk(b, F_RDLCK, 99, 1), -EAGAIN);
    /* next to it: fine */
    assert_int_equal(do_setlk(b, F_WRLCK, 100, 100), 0);
    /* F_GETLK names the holder: type, range, pid */
    assert_int_equal(locker_do(b, get, &r), 0);
    assert_int_equal(r.type, F_WRLCK);
    assert_int_equal(r.start, 0);
    assert_int_equal(r.len, 100);
    assert_int_equal(r.pid, (int)a->pid);
    get.start = 150;
    assert_int_equal(locker_do(a, get, &r), 0);
    assert_int_equal(r.type, F_WRLCK);
    assert_int_equal(r.start, 100);
    assert_int_equal(r.len, 100);
    assert_int_equal(r.pid, (int)b->pid);
    get.start = 500; /* nobody there */
    assert_int_equal(locker_do(a, get, &r), 0);
    assert_int_equal(r.type, F_UNLCK);
    /* unlocking part of a range keeps the rest */
    assert_int_equal(do_setlk(a, F_UNLCK, 0, 50), 0);
    assert_int_equal(do_setlk(b, F_WRLCK, 0, 50), 0);
    assert_int_equal(do_setlk(b, F_WRLCK, 50, 10), -EAGAIN);
    get.start = 60;
    assert_int_equal(locker_do(b, get, &r), 0);
    assert_int_equal(r.type, F_WRLCK);
    assert_int_equal(r.start, 50);
    assert_int_equal(r.len, 50);
    /* read locks share; a write lock (or an upgrade) waits for the readers */
    assert_int_equal(do_setlk(a, F_RDLCK, 1000, 100), 0);
    assert_int_equal(do_setlk(b, F_RDLCK, 1050, 100), 0);
    assert_int_equal(do_setlk(a, F_WRLCK, 1000, 100), -EAGAIN);
    get.type = F_RDLCK;
    get.start = 1000;
    get.len = 10;
    assert_int_equal(locker_do(b, get, &r), 0); /* a reader conflicts with no reader */
    assert_int_equal(r.type, F_UNLCK);
    /* to the end of the file (l_len 0) */
    assert_int_equal(do_setlk(a, F_WRLCK, 1 << 20, 0), 0);
    assert_int_equal(do_setlk(b, F_RDLCK, 1LL << 40, 1), -EAGAIN);
    get.type = F_WRLCK;
    get.start = 1LL << 30;
    assert_int_equal(locker_do(b, get, &r), 0);
    assert_int_equal(r.start, 1 << 20);
    assert_int_equal(r.len, 0);
}

/* A blocked F_SETLKW gets the lock when the holder unlocks, and EINTR when a signal comes. */
static void test_setlkw_waits_and_is_interrupted(void **state)
{
    struct fixture *f = *state;
    struct locker *a, *b;
    struct locker_res r;
    SKIP_IF_NEEDED(f);
    two_lockers(f, f->m.mnt, f->mnt2, "wait", &a, &b);
    assert_int_equal(do_setlk(a, F_WRLCK, 0, 10), 0);
    locker_send(b, setlk_cmd(F_WRLCK, 5, 10, true));
    assert_false(locker_answer(b, BLOCKED_MS, &r));
    assert_int_equal(kill(b->pid, SIGUSR1), 0);
    assert_true(locker_answer(b, ANSWER_MS, &r));
    assert_int_equal(r.rv, -1);
    assert_int_equal(r.err, EINTR);
    /* waiting again, then granted once a lets go of the part b wants */
    locker_send(b, setlk_cmd(F_WRLCK, 5, 10, true));
    assert_false(locker_answer(b, BLOCKED_MS, &r));
    assert_int_equal(do_setlk(a, F_UNLCK, 5, 0), 0);
    assert_true(locker_answer(b, ANSWER_MS, &r));
    assert_int_equal(r.rv, 0);
    assert_int_equal(do_setlk(a, F_WRLCK, 0, 5), 0); /* a kept [0, 5) */
    assert_int_equal(do_setlk(a, F_WRLCK, 5, 1), -EAGAIN);
}

/* Closing any descriptor of the file drops the process's POSIX locks on it; the release of
 * the file description drops its flock. */
static void test_close_releases_locks(void **state)
{
    struct fixture *f = *state;
    struct locker *a, *b;
    bool got = false;
    SKIP_IF_NEEDED(f);
    two_lockers(f, f->m.mnt, f->mnt2, "close", &a, &b);
    assert_int_equal(do_setlk(a, F_WRLCK, 0, 0), 0);
    assert_int_equal(do_flock(a, LOCK_EX), 0);
    assert_int_equal(do_setlk(b, F_WRLCK, 0, 1), -EAGAIN);
    assert_int_equal(do_open(a, 1), 0);
    assert_int_equal(do_close(a, 1), 0); /* another descriptor */
    assert_int_equal(do_setlk(b, F_WRLCK, 0, 1), 0);
    /* the flock stays with slot 0's file description until it is closed (the release
     * comes after close(2) returns: bounded retries) */
    assert_int_equal(do_flock(b, LOCK_EX | LOCK_NB), -EWOULDBLOCK);
    assert_int_equal(do_close(a, 0), 0);
    for (int i = 0; i < 100 && !got; i++) {
        int rv = do_flock(b, LOCK_EX | LOCK_NB);
        got = rv == 0;
        if (!got) {
            assert_int_equal(rv, -EWOULDBLOCK);
            usleep(20000);
        }
    }
    assert_true(got);
}

/* An open file description lock (F_OFD_SETLK) excludes across mounts and goes at the last
 * close of its description, not at the close of another descriptor of the process. */
static void test_ofd_lock_goes_with_its_description(void **state)
{
    struct fixture *f = *state;
    struct locker *a, *b;
    struct locker_cmd c = {.op = L_OFDLK, .type = F_WRLCK, .start = 0, .len = 10};
    int rv = -EAGAIN;
    SKIP_IF_NEEDED(f);
    two_lockers(f, f->m.mnt, f->mnt2, "ofd", &a, &b);
    assert_int_equal(locker_do(a, c, NULL), 0);
    assert_int_equal(do_setlk(b, F_WRLCK, 5, 10), -EAGAIN);
    assert_int_equal(do_open(a, 1), 0);
    assert_int_equal(do_close(a, 1), 0); /* not its description */
    assert_int_equal(do_setlk(b, F_WRLCK, 5, 10), -EAGAIN);
    /* closing the description's last descriptor drops it */
    assert_int_equal(do_open(a, 2), 0);
    assert_int_equal(do_close(a, 0), 0);
    /* (the release comes after close(2) returns: bounded retries) */
    for (int i = 0; i < 100 && rv == -EAGAIN; i++) {
        rv = do_setlk(b, F_WRLCK, 5, 10);
        if (rv == -EAGAIN) {
            usleep(20000);
        }
    }
    assert_int_equal(rv, 0);
    {
        struct locker_cmd c2 = setlk_cmd(F_WRLCK, 100, 10, false);
        c2.slot = 2;
        assert_int_equal(locker_do(a, c2, NULL), 0);
    }
    assert_int_equal(do_setlk(b, F_WRLCK, 100, 10), -EAGAIN);
}

/* More blocked flock waiters on one mount than the session has worker threads: the mount
 * still answers (the holder's unlock gets through), and every waiter gets the lock in turn. */
static void test_many_waiters_leave_the_mount_answering(void **state)
{
    struct fixture *f = *state;
    struct locker *a, *w[MANY_WAITERS];
    struct locker_cmd ex = {.op = L_FLOCK, .arg = LOCK_EX};
    struct locker_res r;
    char p1[512];
    bool granted[MANY_WAITERS] = {false};
    long long t0 = proc_now_ms();
    SKIP_IF_NEEDED(f);
    snprintf(p1, sizeof p1, "%s/many", f->m.mnt);
    a = locker_start(f, p1);
    assert_int_equal(do_open(a, 0), 0);
    assert_int_equal(do_flock(a, LOCK_EX), 0);
    for (int i = 0; i < MANY_WAITERS; i++) {
        w[i] = locker_start(f, p1); /* the same mount as the holder */
        assert_int_equal(do_open(w[i], 0), 0);
        locker_send(w[i], ex);
    }
    assert_false(locker_answer(w[MANY_WAITERS - 1], BLOCKED_MS, &r));
    assert_int_equal(do_flock(a, LOCK_UN), 0);
    /* one at a time: whoever has it lets go */
    for (int n = 0; n < MANY_WAITERS; n++) {
        int got = -1;
        for (long long end = proc_now_ms() + ANSWER_MS; got < 0 && proc_now_ms() < end;) {
            for (int i = 0; i < MANY_WAITERS && got < 0; i++) {
                if (!granted[i] && locker_answer(w[i], 1, &r)) {
                    assert_int_equal(r.rv, 0);
                    got = i;
                }
            }
        }
        if (got < 0) {
            fail_msg("waiter %d of %d not granted within %d ms", n + 1, MANY_WAITERS, ANSWER_MS);
        }
        granted[got] = true;
        for (int i = 0; i < MANY_WAITERS; i++) { /* nobody else holds it meanwhile */
            assert_true(granted[i] || !locker_answer(w[i], 0, &r));
        }
        assert_int_equal(do_flock(w[got], LOCK_UN), 0);
    }
    printf("%d waiters served in turn in %lld ms\n", MANY_WAITERS, proc_now_ms() - t0);
}

/* Two processes per mount take turns in a critical section guarded by one lock, POSIX then
 * flock: never two inside at once. */
static void test_lock_excludes_under_contention(void **state)
{
    struct fixture *f = *state;
    struct locker *l[4];
    struct locker_res r;
    char p1[512], p2[512];
    long long t0 = proc_now_ms();
    int fd;
    SKIP_IF_NEEDED(f);
    snprintf(crit_marker, sizeof crit_marker, "%s/crit.marker", f->m.dir);
    snprintf(p1, sizeof p1, "%s/crit", f->m.mnt);
    snprintf(p2, sizeof p2, "%s/crit", f->mnt2);
    fd = open(p1, O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    for (int i = 0; i < 4; i++) {
        l[i] = locker_start(f, i % 2 ? p2 : p1);
        assert_int_equal(do_open(l[i], 0), 0);
    }
    for (short kind = 0; kind < 2; kind++) {
        struct locker_cmd c = {.op = L_CRIT, .arg = CRIT_ROUNDS, .type = kind};
        for (int i = 0; i < 4; i++) {
            locker_send(l[i], c);
        }
        for (int i = 0; i < 4; i++) {
            if (!locker_answer(l[i], 30000, &r)) {
                fail_msg("locker %d: %d rounds not done within 30 s", i, CRIT_ROUNDS);
            }
            assert_int_equal(r.rv, 0);
        }
    }
    printf("4 x %d rounds of POSIX locks, then of flock, in %lld ms\n", CRIT_ROUNDS,
           proc_now_ms() - t0);
}

/* Start mount 3 (the mount a test stops or kills). */
static void start_mount3(struct fixture *f)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (mount_helper_start_args(f->m.bin, f->m.s.meta.group, f->mnt3, mount_args, f->log3, &f->pid3,
                                errmsg) != 0) {
        mount_helper_dump_log(f->log3);
        fail_msg("third mount: %s", errmsg);
    }
}

/* A clean unmount drops the mount's locks at once: no wait for the lease. A wait in
 * progress on that mount does not hold the daemon up. */
static void test_unmount_releases_locks_at_once(void **state)
{
    struct fixture *f = *state;
    struct locker *a, *b, *c;
    struct locker_res r;
    char p3[512];
    long long t0;
    int expired;
    SKIP_IF_NEEDED(f);
    start_mount3(f);
    two_lockers(f, f->mnt3, f->mnt2, "unmount", &a, &b);
    snprintf(p3, sizeof p3, "%s/unmount", f->mnt3);
    c = locker_start(f, p3);
    assert_int_equal(do_open(c, 0), 0);
    assert_int_equal(do_flock(a, LOCK_EX), 0);
    assert_int_equal(do_setlk(a, F_WRLCK, 0, 0), 0);
    assert_int_equal(do_flock(b, LOCK_EX | LOCK_NB), -EWOULDBLOCK);
    locker_send(c, setlk_cmd(F_WRLCK, 0, 1, true));
    assert_false(locker_answer(c, BLOCKED_MS, &r));
    expired = log_count_lines(f->log2, "taken for dead");
    t0 = proc_now_ms();
    assert_int_equal(mount_helper_stop(f->mnt3, &f->pid3), 0); /* SIGTERM: unmounts */
    assert_false(mount_helper_log_has_sanitizer_report(f->log3));
    assert_true(locker_answer(c, ANSWER_MS, &r)); /* the wait ended with the session */
    assert_int_equal(r.rv, -1);
    assert_int_equal(do_flock(b, LOCK_EX | LOCK_NB), 0);
    assert_int_equal(do_setlk(b, F_WRLCK, 0, 0), 0);
    printf("locks free %lld ms after the unmount began (lease %d ms)\n", proc_now_ms() - t0, LEASE);
    /* freed by the unmount, not by b's mount taking mount 3 for dead (which it logs) */
    assert_int_equal(log_count_lines(f->log2, "taken for dead"), expired);
}

/* The holder's daemon killed with SIGKILL: its locks go once its lease expires. */
static void test_killed_mount_loses_its_locks_after_the_lease(void **state)
{
    struct fixture *f = *state;
    struct locker *a, *b;
    struct locker_res r;
    struct locker_cmd fl = {.op = L_FLOCK, .arg = LOCK_EX};
    long long t0, waited;
    SKIP_IF_NEEDED(f);
    start_mount3(f);
    two_lockers(f, f->mnt3, f->mnt2, "killed", &a, &b);
    assert_int_equal(do_flock(a, LOCK_EX), 0);
    assert_int_equal(do_setlk(a, F_WRLCK, 0, 100), 0);

    assert_int_equal(proc_kill(f->pid3, SIGKILL), 0);
    assert_true(proc_wait(f->pid3, 5000) >= 0);
    f->pid3 = 0;
    t0 = proc_now_ms();
    /* not at once: the lease has not expired */
    assert_int_equal(do_setlk(b, F_WRLCK, 50, 10), -EAGAIN);
    assert_int_equal(do_flock(b, LOCK_EX | LOCK_NB), -EWOULDBLOCK);
    /* a blocking wait gets both once the lease is over */
    locker_send(b, setlk_cmd(F_WRLCK, 50, 10, true));
    if (!locker_answer(b, LEASE + MARGIN_MS, &r)) {
        fail_msg("F_SETLKW not granted %d ms after the holder's daemon was killed",
                 LEASE + MARGIN_MS);
    }
    waited = proc_now_ms() - t0;
    assert_int_equal(r.rv, 0);
    locker_send(b, fl);
    assert_true(locker_answer(b, ANSWER_MS, &r));
    assert_int_equal(r.rv, 0);
    printf("locks of the killed mount free after %lld ms (lease %d ms)\n", waited, LEASE);
    assert_true(waited >= LEASE / 2);
    mount_helper_force_unmount(f->mnt3);
}

/* The holder's daemon stopped (SIGSTOP) for longer than its lease: another mount takes its
 * locks; when it runs again it finds its record deleted, says so in its log, registers
 * again, and locks anew. */
static void test_paused_mount_loses_its_locks_and_registers_again(void **state)
{
    struct fixture *f = *state;
    struct locker *a, *b;
    struct locker_res r;
    int rv = -ENOLCK;
    SKIP_IF_NEEDED(f);
    start_mount3(f);
    two_lockers(f, f->mnt3, f->mnt2, "paused", &a, &b);
    assert_int_equal(do_setlk(a, F_WRLCK, 0, 10), 0);
    assert_int_equal(proc_kill(f->pid3, SIGSTOP), 0);
    /* nothing touches mount 3 while its daemon is stopped */
    locker_send(b, setlk_cmd(F_WRLCK, 0, 10, true));
    if (!locker_answer(b, LEASE + MARGIN_MS, &r)) {
        kill(f->pid3, SIGCONT);
        fail_msg("F_SETLKW not granted while the holder's daemon was stopped");
    }
    assert_int_equal(r.rv, 0);
    assert_int_equal(proc_kill(f->pid3, SIGCONT), 0);
    /* a's lock is gone; until the daemon has renewed (under a new id), a may get ENOLCK */
    for (int i = 0; i < 100 && (rv == -ENOLCK || rv == -EAGAIN); i++) {
        rv = do_setlk(a, F_WRLCK, 20, 10);
        if (rv != 0) {
            usleep(20000);
        }
    }
    assert_int_equal(rv, 0);
    assert_int_equal(do_setlk(a, F_WRLCK, 0, 10), -EAGAIN); /* b has it now */
    assert_int_equal(do_setlk(b, F_WRLCK, 20, 10), -EAGAIN);
    assert_true(log_count_lines(f->log3, "was deleted by another mount") > 0);
}

/* How many mounts have a lease record (fs/keys.h: s{leases} + id), or -1. */
static int lease_records(struct kv_client *c)
{
    static const char lo[] = "s{leases}", hi[] = "s{leases}\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    struct kv_scan_result res = {0};
    char errmsg[RFS_ERRMSG_SIZE];
    int n = -1;
    if (kv_client_scan(c, lo, sizeof lo - 1, hi, sizeof hi - 1, 0, &res, errmsg) == 0) {
        n = (int)res.n;
    }
    kv_scan_result_clear(&res);
    return n;
}

/* A mount killed while holding no lock: nobody meets its locks, yet its record goes (the
 * other mounts sweep the records about once a lease). */
static void test_dead_mount_record_is_swept(void **state)
{
    struct fixture *f = *state;
    struct kv_client *c = NULL;
    char errmsg[RFS_ERRMSG_SIZE];
    long long t0, end;
    int n = -1;
    SKIP_IF_NEEDED(f);
    if (sharded_client(&c, f->m.s.meta.group, 0, true, 5000, errmsg) != 0) {
        fail_msg("client: %s", errmsg);
    }
    start_mount3(f);
    n = lease_records(c);
    printf("%d lease records with three mounts\n", n);
    if (n != 3) {
        kv_client_free(c);
        fail_msg("%d lease records with three mounts", n);
    }
    assert_int_equal(proc_kill(f->pid3, SIGKILL), 0);
    assert_true(proc_wait(f->pid3, 5000) >= 0);
    f->pid3 = 0;
    mount_helper_force_unmount(f->mnt3);
    t0 = proc_now_ms();
    /* first seen by a sweep within a lease, deleted by a sweep a lease later */
    end = t0 + 3 * LEASE + MARGIN_MS;
    while ((n = lease_records(c)) != 2 && proc_now_ms() < end) {
        usleep(100000);
    }
    kv_client_free(c);
    printf("the killed mount's record swept after %lld ms (lease %d ms)\n", proc_now_ms() - t0,
           LEASE);
    assert_int_equal(n, 2);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_list_unlock_of_a_middle_part_splits_the_lock),
        cmocka_unit_test(test_list_conflicts_only_between_owners_and_kinds),
        cmocka_unit_test(test_list_encoding_round_trips_and_rejects_garbage),
        cmocka_unit_test(test_list_drops_an_owner_or_a_mount),
    };
    const struct CMUnitTest mounted[] = {
        cmocka_unit_test_setup_teardown(test_flock_excludes_across_mounts, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_fcntl_ranges_across_mounts, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_setlkw_waits_and_is_interrupted, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_close_releases_locks, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_many_waiters_leave_the_mount_answering, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_lock_excludes_under_contention, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_ofd_lock_goes_with_its_description, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_unmount_releases_locks_at_once, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_killed_mount_loses_its_locks_after_the_lease,
                                        test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_paused_mount_loses_its_locks_and_registers_again,
                                        test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_dead_mount_record_is_swept, test_setup, test_teardown),
    };
    int failed = cmocka_run_group_tests_name("lock list", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("locks through mounts", mounted, setup, teardown);
    return failed;
}
