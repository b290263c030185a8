/* One cluster mounted twice (issue 7, "the filesystem shared"): close-to-open consistency
 * between mounts (a file written and closed on A is read whole, with its new size and mtime,
 * by an open on B, also after it was rewritten, shrunk, or rewritten at the same size), a
 * rename or unlink on A seen by B within the entry timeout (measured), concurrent O_APPEND
 * writers in four processes on the two mounts (every record present exactly once and
 * intact), a listing on B while A creates and unlinks names, and statfs (df) reporting the
 * cluster's space and inode counts. Needs root, /dev/fuse and fusermount3; skipped
 * otherwise.
 *
 * One cluster (a meta group, two shard groups of one server) and two raftfs-mount daemons
 * (A at DIR/m from mount_fixture.h, B at DIR/m2) for the whole file, with the default cache
 * timeout (MOUNT_CACHE_TIMEOUT, 1 s). Each test works in a directory of its own. Child
 * processes are waited for with a bound and killed if they overstay; the teardown stops both
 * daemons by pid, unmounts what is left and removes the temp dir. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "tests/lib/proc.h"
#include "tests/unit/mount_fixture.h"
#include "tests/unit/mount_helper.h"

/* The mounts' --cache-timeout (the default), and how much later than it a change made on
 * one mount may show on the other (the kernel's timers, a busy machine). */
#define CACHE_TIMEOUT_MS 1000
#define SLACK_MS         1500
#define CHILD_WAIT_MS    30000

struct shared {
    struct mount_fixture a; /* the cluster and mount A */
    char mnt_b[400];
    char log_b[400];
    pid_t pid_b;
};

/* ---- helpers ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* path = mnt/rel */
static const char *at(const char *mnt, const char *rel, char *buf, size_t cap)
{
    if ((size_t)snprintf(buf, cap, "%s/%s", mnt, rel) >= cap) {
        fail_msg("path too long: %s/%s", mnt, rel);
    }
    return buf;
}

static void write_whole(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* Open path, fstat it into *st, read it whole (up to cap bytes); returns the bytes read. */
static size_t open_stat_read(const char *path, struct stat *st, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    size_t n = 0;
    ssize_t r;
    if (fd < 0) {
        fail_msg("open %s: %s", path, strerror(errno));
    }
    assert_int_equal(fstat(fd, st), 0);
    while (n < cap && (r = read(fd, buf + n, cap - n)) > 0) {
        n += (size_t)r;
    }
    assert_int_equal(close(fd), 0);
    return n;
}

/* A pattern that differs per (seed, i). */
static void fill(char *buf, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (char)('a' + (x >> 16) % 26);
    }
}

/* Wait for a child (forked by the test) up to CHILD_WAIT_MS, killing it past that. Returns
 * its exit code, or -1 if it had to be killed or died of a signal. */
static int child_wait(pid_t pid)
{
    int st = proc_wait(pid, CHILD_WAIT_MS);
    if (st == -2) {
        kill(pid, SIGKILL);
        (void)proc_wait(pid, 5000);
        return -1;
    }
    return st >= 0 && st < 128 ? st : -1;
}

/* ---- the fixture ---- */

/* Unlinked files are deleted 2 s after the unlink when no mount has them open (fs/orphan.h):
 * the df test waits for the inode count to come back. */
static const char *const mount_args[] = {"--orphan-grace-ms", "2000", NULL};

static int setup(void **state)
{
    struct shared *s = calloc(1, sizeof *s);
    char errmsg[RFS_ERRMSG_SIZE];
    *state = s;
    if (s == NULL || mount_fixture_start(&s->a, "raftfs-shared", NULL, mount_args) != 0) {
        return -1;
    }
    if (s->a.skipped) {
        return 0;
    }
    snprintf(s->mnt_b, sizeof s->mnt_b, "%s/m2", s->a.dir);
    snprintf(s->log_b, sizeof s->log_b, "%s/mount2.log", s->a.dir);
    if (mount_helper_start_args(s->a.bin, s->a.s.meta.group, s->mnt_b, mount_args, s->log_b,
                                &s->pid_b, errmsg) != 0) {
        fprintf(stderr, "setup: mount B: %s\n", errmsg);
        mount_helper_dump_log(s->log_b);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct shared *s = *state;
    int bad = 0;
    if (s == NULL) {
        return 0;
    }
    if (!s->a.skipped && s->mnt_b[0] != '\0') {
        bad += mount_helper_teardown(s->mnt_b, &s->pid_b, s->log_b);
    }
    bad += mount_fixture_stop(&s->a, s->mnt_b[0] != '\0' ? s->mnt_b : NULL);
    free(s);
    return bad == 0 ? 0 : -1;
}

#define SKIP_IF_NEEDED(s)                                                                          \
    do {                                                                                           \
        if ((s)->a.skipped) {                                                                      \
            skip();                                                                                \
        }                                                                                          \
        if ((s)->a.pid == 0 || (s)->pid_b == 0) {                                                  \
            fail_msg("a mount is not running");                                                    \
        }                                                                                          \
    } while (0)

/* ---- close-to-open ---- */

/* B's view after an open must be what A closed: size, mtime and every byte. */
static void expect_same(const char *pa, const char *pb, const char *want, size_t len)
{
    static char back[4 << 20];
    struct stat sa, sb;
    size_t n;
    assert_true(len <= sizeof back);
    assert_int_equal(stat(pa, &sa), 0);
    n = open_stat_read(pb, &sb, back, sizeof back);
    if (sb.st_size != (off_t)len || n != len) {
        fail_msg("B sees %lld bytes (fstat) and reads %zu, A wrote %zu", (long long)sb.st_size, n,
                 len);
    }
    assert_int_equal(sa.st_size, sb.st_size);
    assert_int_equal(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec);
    assert_int_equal(sa.st_mtim.tv_nsec, sb.st_mtim.tv_nsec);
    assert_int_equal(sa.st_ino, sb.st_ino);
    if (memcmp(back, want, len) != 0) {
        fail_msg("B reads other bytes than A wrote (%zu bytes)", len);
    }
}

static void test_close_to_open_between_mounts(void **state)
{
    enum { BIG = 300000, SMALL = 1234, HUGE = (3 << 20) + 777 };
    struct shared *s = *state;
    char pa[512], pb[512], dir[512];
    static char data[HUGE], back[BIG];
    struct stat st;
    int fd;
    SKIP_IF_NEEDED(s);
    assert_int_equal(mkdir(at(s->a.mnt, "cto", dir, sizeof dir), 0755), 0);
    at(s->a.mnt, "cto/f", pa, sizeof pa);
    at(s->mnt_b, "cto/f", pb, sizeof pb);

    /* written on A, read on B (B never saw the file) */
    fill(data, SMALL, 1);
    write_whole(pa, data, SMALL);
    expect_same(pa, pb, data, SMALL);

    /* B has the name, its attributes and its pages cached: rewritten larger on A */
    fill(data, BIG, 2);
    write_whole(pa, data, BIG);
    expect_same(pa, pb, data, BIG);

    /* several MiB (written behind, several stripes), then shrunk on A */
    fill(data, HUGE, 7);
    write_whole(pa, data, HUGE);
    expect_same(pa, pb, data, HUGE);
    fill(data, SMALL, 3);
    write_whole(pa, data, SMALL);
    expect_same(pa, pb, data, SMALL);

    /* rewritten in place at the same size (only the bytes and the mtime change) */
    fill(data, SMALL, 4);
    fd = open(pa, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, SMALL, 0), SMALL);
    assert_int_equal(close(fd), 0);
    expect_same(pa, pb, data, SMALL);

    /* truncate(2) on A, then appended to: B opens and sees both */
    assert_int_equal(truncate(pa, 10), 0);
    fd = open(pa, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "+tail", 5), 5);
    assert_int_equal(close(fd), 0);
    memcpy(data + 10, "+tail", 5);
    expect_same(pa, pb, data, 15);

    /* and the other way round: B writes, A (which has everything cached) opens */
    fill(data, BIG / 2, 5);
    write_whole(pb, data, BIG / 2);
    expect_same(pb, pa, data, BIG / 2);

    /* a descriptor B keeps open while A rewrites: after A's close, a new open on B sees
     * the new bytes even though the old descriptor is still open */
    fd = open(pb, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, back, sizeof back), BIG / 2);
    fill(data, BIG / 3, 6);
    write_whole(pa, data, BIG / 3);
    expect_same(pa, pb, data, BIG / 3);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(close(fd), 0);
}

/* ---- names ---- */

/* How long until stat(path) fails with ENOENT (polling every 10 ms, at most 10 s); fails the
 * test if it never does. */
static uint64_t ms_until_gone(const char *path)
{
    uint64_t t0 = now_ms(), t;
    struct stat st;
    for (;;) {
        t = now_ms();
        errno = 0;
        if (stat(path, &st) != 0) {
            if (errno != ENOENT) {
                fail_msg("stat %s: %s", path, strerror(errno));
            }
            return t - t0;
        }
        if (t - t0 > 10000) {
            fail_msg("%s still there after 10 s", path);
        }
        sleep_ms(10);
    }
}

static void test_rename_and_unlink_seen_within_entry_timeout(void **state)
{
    struct shared *s = *state;
    char pa[512], pa2[512], pb[512], pb2[512], buf[64];
    struct stat st;
    uint64_t t_rename, t_unlink, bound = CACHE_TIMEOUT_MS + SLACK_MS;
    SKIP_IF_NEEDED(s);
    assert_int_equal(mkdir(at(s->a.mnt, "names", pa, sizeof pa), 0755), 0);
    write_whole(at(s->a.mnt, "names/old", pa, sizeof pa), "moved", 5);
    write_whole(at(s->a.mnt, "names/doomed", pa2, sizeof pa2), "gone", 4);
    /* B looks both up (the kernel caches the names for the entry timeout) */
    assert_int_equal(stat(at(s->mnt_b, "names/old", pb, sizeof pb), &st), 0);
    assert_int_equal(stat(at(s->mnt_b, "names/doomed", pb2, sizeof pb2), &st), 0);

    /* rename on A: the new name is there on B at once (missing names are not cached), the
     * old one goes within the entry timeout */
    assert_int_equal(rename(at(s->a.mnt, "names/old", pa, sizeof pa),
                            at(s->a.mnt, "names/new", pa2, sizeof pa2)),
                     0);
    assert_int_equal(
        open_stat_read(at(s->mnt_b, "names/new", pb2, sizeof pb2), &st, buf, sizeof buf), 5);
    assert_memory_equal(buf, "moved", 5);
    t_rename = ms_until_gone(at(s->mnt_b, "names/old", pb, sizeof pb));

    /* unlink on A: gone on B within the entry timeout (B looks it up again first: the rename
     * took about as long as the entry timeout) */
    assert_int_equal(stat(at(s->mnt_b, "names/doomed", pb, sizeof pb), &st), 0);
    assert_int_equal(unlink(at(s->a.mnt, "names/doomed", pa, sizeof pa)), 0);
    t_unlink = ms_until_gone(at(s->mnt_b, "names/doomed", pb, sizeof pb));

    /* an open on B of a name it still caches, unlinked on A, fails at once (the inode is
     * read at open) */
    write_whole(at(s->a.mnt, "names/doomed2", pa, sizeof pa), "gone", 4);
    assert_int_equal(stat(at(s->mnt_b, "names/doomed2", pb, sizeof pb), &st), 0);
    assert_int_equal(unlink(pa), 0);
    errno = 0;
    assert_int_equal(open(pb, O_RDONLY), -1);
    assert_int_equal(errno, ENOENT);
    printf("rename seen on the other mount after %llu ms, unlink after %llu ms (bound %llu)\n",
           (unsigned long long)t_rename, (unsigned long long)t_unlink, (unsigned long long)bound);
    assert_true(t_rename <= bound);
    assert_true(t_unlink <= bound);
}

/* ---- O_APPEND from four processes on two mounts ---- */

#define APPENDERS     4
#define APPEND_RECS   150
#define APPEND_MAXLEN 3000

/* Record (w, i): "w:i:len:" then payload bytes, then '\n'; len varies with (w, i). */
static size_t record(unsigned w, unsigned i, char *out)
{
    size_t len = 20 + (w * 131 + i * 37) % (APPEND_MAXLEN - 60);
    int h = snprintf(out, 32, "%u:%u:%zu:", w, i, len);
    fill(out + h, len, w * 100000 + i);
    out[h + len] = '\n';
    return (size_t)h + len + 1;
}

static void appender(const char *path, unsigned w)
{
    char rec[APPEND_MAXLEN + 32];
    int fd = open(path, O_WRONLY | O_APPEND);
    if (fd < 0) {
        _exit(2);
    }
    for (unsigned i = 0; i < APPEND_RECS; i++) {
        size_t n = record(w, i, rec);
        if (write(fd, rec, n) != (ssize_t)n) {
            _exit(3);
        }
    }
    _exit(close(fd) == 0 ? 0 : 4);
}

/* Where a damaged record first differs, and what stands there instead. */
static void damage_report(const char *buf, size_t n, size_t pos, const char *rec, size_t rl)
{
    size_t d = 0, end = pos + rl < n ? pos + rl : n;
    while (pos + d < end && buf[pos + d] == rec[d]) {
        d++;
    }
    fprintf(stderr,
            "record at %zu (%zu bytes) differs from byte %zu (file offset %zu, %zu into "
            "its 64 KiB block): found \"",
            pos, rl, d, pos + d, (pos + d) % 65536);
    for (size_t i = pos + d; i < end && i < pos + d + 40; i++) {
        fputc(buf[i] >= 32 && buf[i] < 127 ? buf[i] : '.', stderr);
    }
    fprintf(stderr, "\", expected \"");
    for (size_t i = d; i < rl && i < d + 40; i++) {
        fputc(rec[i] >= 32 && rec[i] < 127 ? rec[i] : '.', stderr);
    }
    fprintf(stderr, "\"\n");
}

/* Whether the other mount reads the same bytes (a damaged record: stored so, or only seen
 * so through one mount's cache?). */
static void other_report(const char *other, const char *buf, size_t n)
{
    char *b2 = malloc(n + 1);
    struct stat st;
    size_t n2, d = 0;
    assert_non_null(b2);
    n2 = open_stat_read(other, &st, b2, n + 1);
    while (d < n && d < n2 && buf[d] == b2[d]) {
        d++;
    }
    if (d == n && n2 == n) {
        fprintf(stderr, "%s reads the same bytes\n", other);
    } else {
        fprintf(stderr, "%s reads %zu bytes, first difference at offset %zu\n", other, n2, d);
    }
    free(b2);
}

/* Opens and closes path over and over (at most OPENS times) while the appenders run: each
 * open syncs the mount's handles of the file, which must never cut a record in two. */
#define OPENS 20000
static void opener(const char *path)
{
    for (int i = 0; i < OPENS; i++) {
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            close(fd);
        }
    }
    _exit(0);
}

/* Check every record of the file at path: each present once, intact. */
static void check_records(const char *path, size_t want_size, const char *other)
{
    static unsigned char seen[APPENDERS][APPEND_RECS];
    char *buf = malloc(want_size + 1), rec[APPEND_MAXLEN + 32];
    struct stat st;
    size_t n, pos = 0, count = 0;
    assert_non_null(buf);
    memset(seen, 0, sizeof seen);
    n = open_stat_read(path, &st, buf, want_size + 1);
    if (n != want_size || st.st_size != (off_t)want_size) {
        free(buf);
        fail_msg("%s: %zu bytes read, size %lld, %zu written", path, n, (long long)st.st_size,
                 want_size);
    }
    while (pos < n) {
        unsigned w, i;
        size_t len, rl;
        if (sscanf(buf + pos, "%u:%u:%zu:", &w, &i, &len) != 3 || w >= APPENDERS ||
            i >= APPEND_RECS) {
            free(buf);
            fail_msg("%s: garbage at offset %zu", path, pos);
        }
        rl = record(w, i, rec);
        if (pos + rl > n || memcmp(buf + pos, rec, rl) != 0) {
            damage_report(buf, n, pos, rec, rl);
            other_report(other, buf, n);
            free(buf);
            fail_msg("%s: record %u:%u at offset %zu is damaged", path, w, i, pos);
        }
        if (seen[w][i]++ != 0) {
            free(buf);
            fail_msg("%s: record %u:%u twice", path, w, i);
        }
        pos += rl;
        count++;
    }
    free(buf);
    assert_int_equal(count, APPENDERS * APPEND_RECS);
}

static void test_appends_from_four_processes_on_two_mounts(void **state)
{
    struct shared *s = *state;
    char pa[512], pb[512], rec[APPEND_MAXLEN + 32];
    pid_t pids[APPENDERS], openers[2];
    size_t total = 0;
    int bad = 0;
    uint64_t t0;
    SKIP_IF_NEEDED(s);
    assert_int_equal(mkdir(at(s->a.mnt, "app", pa, sizeof pa), 0755), 0);
    write_whole(at(s->a.mnt, "app/log", pa, sizeof pa), "", 0);
    at(s->mnt_b, "app/log", pb, sizeof pb);
    for (unsigned w = 0; w < APPENDERS; w++) {
        for (unsigned i = 0; i < APPEND_RECS; i++) {
            total += record(w, i, rec);
        }
    }
    t0 = now_ms();
    for (unsigned w = 0; w < 2; w++) {
        openers[w] = fork();
        assert_true(openers[w] >= 0);
        if (openers[w] == 0) {
            opener(w == 0 ? pa : pb);
        }
    }
    for (unsigned w = 0; w < APPENDERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            appender(w % 2 == 0 ? pa : pb, w);
        }
    }
    for (unsigned w = 0; w < APPENDERS; w++) {
        int st = child_wait(pids[w]);
        if (st != 0) {
            fprintf(stderr, "appender %u ended with %d\n", w, st);
            bad++;
        }
    }
    for (unsigned w = 0; w < 2; w++) {
        kill(openers[w], SIGKILL);
        (void)child_wait(openers[w]);
    }
    printf("%d appenders x %d records in %llu ms\n", APPENDERS, APPEND_RECS,
           (unsigned long long)(now_ms() - t0));
    assert_int_equal(bad, 0);
    check_records(pa, total, pb);
    check_records(pb, total, pa);
}

/* ---- a listing on B while A changes the directory ---- */

#define LIST_STAY  60
#define LIST_CHURN 200

static void churner(const char *dir)
{
    char p[600];
    for (int i = 0; i < LIST_CHURN; i++) {
        int fd;
        snprintf(p, sizeof p, "%s/tmp-%03d", dir, i);
        fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || close(fd) != 0) {
            _exit(2);
        }
        if (i >= 3) {
            snprintf(p, sizeof p, "%s/tmp-%03d", dir, i - 3);
            if (unlink(p) != 0) {
                _exit(3);
            }
        }
    }
    _exit(0);
}

/* One listing of dir: every stay-NNN exactly once, no name twice, nothing else but tmp-NNN
 * names. Returns the tmp names seen. */
static int list_once(const char *dir)
{
    unsigned char stay[LIST_STAY] = {0}, tmp[LIST_CHURN] = {0};
    DIR *d = opendir(dir);
    struct dirent *de;
    int n_tmp = 0;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        int i;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if (sscanf(de->d_name, "stay-%d", &i) == 1 && i >= 0 && i < LIST_STAY) {
            if (stay[i]++ != 0) {
                fail_msg("%s listed twice", de->d_name);
            }
        } else if (sscanf(de->d_name, "tmp-%d", &i) == 1 && i >= 0 && i < LIST_CHURN) {
            if (tmp[i]++ != 0) {
                fail_msg("%s listed twice", de->d_name);
            }
            n_tmp++;
        } else {
            fail_msg("unexpected name %s", de->d_name);
        }
    }
    assert_int_equal(closedir(d), 0);
    for (int i = 0; i < LIST_STAY; i++) {
        if (stay[i] != 1) {
            fail_msg("stay-%03d listed %u times", i, stay[i]);
        }
    }
    return n_tmp;
}

static void test_listing_while_the_other_mount_changes_the_directory(void **state)
{
    struct shared *s = *state;
    char da[512], db[512], p[600];
    pid_t pid;
    int lists = 0, st;
    uint64_t t0;
    SKIP_IF_NEEDED(s);
    assert_int_equal(mkdir(at(s->a.mnt, "ls", da, sizeof da), 0755), 0);
    at(s->mnt_b, "ls", db, sizeof db);
    for (int i = 0; i < LIST_STAY; i++) {
        snprintf(p, sizeof p, "%s/stay-%03d", da, i);
        write_whole(p, "", 0);
    }
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        churner(da);
    }
    t0 = now_ms();
    /* list on B until the churner is done (at least 3 times, at most 20 s) */
    while (lists < 3 || (proc_alive(pid) && now_ms() - t0 < 20000)) {
        (void)list_once(db);
        lists++;
    }
    st = child_wait(pid);
    assert_int_equal(st, 0);
    /* at the end B lists exactly the names A left, once the cache timeout has passed */
    sleep_ms(CACHE_TIMEOUT_MS + 100);
    assert_int_equal(list_once(db), 3);
    printf("%d listings during %d creates and unlinks\n", lists, 2 * LIST_CHURN - 3);
}

/* ---- statfs ---- */

struct df {
    uint64_t used, avail; /* bytes */
    uint64_t files_used, files;
};

static void df_of(const char *mnt, struct df *d)
{
    struct statvfs v;
    assert_int_equal(statvfs(mnt, &v), 0);
    assert_true(v.f_blocks >= v.f_bfree);
    assert_true(v.f_files >= v.f_ffree);
    d->used = (uint64_t)(v.f_blocks - v.f_bfree) * v.f_frsize;
    d->avail = (uint64_t)v.f_bavail * v.f_frsize;
    d->files_used = (uint64_t)(v.f_files - v.f_ffree);
    d->files = (uint64_t)v.f_files;
}

/* Poll df of mnt (every 100 ms, at most ms) until pred holds; returns the last reading. */
static bool df_until(const char *mnt, unsigned ms, struct df *d,
                     bool (*pred)(const struct df *, const void *), const void *arg)
{
    uint64_t t0 = now_ms();
    for (;;) {
        df_of(mnt, d);
        if (pred(d, arg)) {
            return true;
        }
        if (now_ms() - t0 > ms) {
            return false;
        }
        sleep_ms(100);
    }
}

/* df once the inode count has held still for 5 s (at most 30 s): files the earlier tests
 * unlinked still count until their mount's collector purges them (2 s grace, a scan every
 * 2 s), and a base taken before that would shrink under this test. */
static void df_settled(const char *mnt, struct df *d)
{
    uint64_t t0 = now_ms(), since = t0, last;
    df_of(mnt, d);
    last = d->files_used;
    while (now_ms() - since < 5000) {
        if (now_ms() - t0 > 30000) {
            fail_msg("df -i never settled: %llu inodes used", (unsigned long long)last);
        }
        sleep_ms(500);
        df_of(mnt, d);
        if (d->files_used != last) {
            last = d->files_used;
            since = now_ms();
        }
    }
}

static bool files_at_least(const struct df *d, const void *arg)
{
    return d->files_used >= *(const uint64_t *)arg;
}

static bool files_at_most(const struct df *d, const void *arg)
{
    return d->files_used <= *(const uint64_t *)arg;
}

static bool used_at_least(const struct df *d, const void *arg)
{
    return d->used >= *(const uint64_t *)arg;
}

static bool used_at_most(const struct df *d, const void *arg)
{
    return d->used <= *(const uint64_t *)arg;
}

static void test_df_reports_the_clusters_space_and_inodes(void **state)
{
    enum { NFILES = 20, BIG = 32 << 20, CHUNK = 1 << 20 };
    struct shared *s = *state;
    char p[512], pb[512];
    struct df base, d, local;
    struct statvfs lv;
    /* one --min-free-mb reserve (the default), and how far df may be off from a statvfs made
     * a moment later (the servers and the mount cache for a second; others use the disk) */
    uint64_t want, expect, reserve = 64ull << 20, slack;
    static char chunk[CHUNK];
    int fd;
    SKIP_IF_NEEDED(s);
    assert_int_equal(mkdir(at(s->a.mnt, "df", p, sizeof p), 0755), 0);
    df_settled(s->a.mnt, &base);
    assert_true(base.files_used >= 1); /* the root at least */
    assert_true(base.used > 0);

    /* free space: both groups keep their data in this temp dir's filesystem, so the cluster
     * has what that filesystem has (less the --min-free-mb reserve), not twice it */
    assert_int_equal(statvfs(s->a.dir, &lv), 0);
    local.avail = (uint64_t)lv.f_bavail * lv.f_frsize;
    expect = local.avail > reserve ? local.avail - reserve : 0;
    slack = local.avail / 10 + (256u << 20);
    if (base.avail > expect + slack || base.avail + slack < expect) {
        fail_msg("df shows %llu MiB free; the servers' filesystem has %llu MiB",
                 (unsigned long long)(base.avail >> 20), (unsigned long long)(local.avail >> 20));
    }

    /* inodes: NFILES files made on B show on A within seconds, and go when unlinked */
    for (int i = 0; i < NFILES; i++) {
        snprintf(p, sizeof p, "df/f%02d", i);
        write_whole(at(s->mnt_b, p, pb, sizeof pb), "x", 1);
    }
    want = base.files_used + NFILES;
    if (!df_until(s->a.mnt, 5000, &d, files_at_least, &want)) {
        fail_msg("df -i: %llu inodes used, %llu before %d creates",
                 (unsigned long long)d.files_used, (unsigned long long)base.files_used, NFILES);
    }
    for (int i = 0; i < NFILES; i++) {
        snprintf(p, sizeof p, "df/f%02d", i);
        assert_int_equal(unlink(at(s->mnt_b, p, pb, sizeof pb)), 0);
    }
    /* They are orphans until a collector deletes them: 2 s of grace, a scan every 2 s. */
    want = base.files_used;
    if (!df_until(s->a.mnt, 15000, &d, files_at_most, &want)) {
        fail_msg("df -i: %llu inodes used after unlinking, %llu before",
                 (unsigned long long)d.files_used, (unsigned long long)base.files_used);
    }

    /* space: a 32 MiB file shows as used within seconds (at least its data; the groups'
     * Raft logs hold it once more until they are compacted) */
    df_of(s->a.mnt, &base);
    fd = open(at(s->a.mnt, "df/big", p, sizeof p), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    for (size_t off = 0; off < BIG; off += CHUNK) {
        for (size_t i = 0; i < CHUNK; i++) {
            chunk[i] = (char)(rand() & 0xff); /* incompressible */
        }
        assert_int_equal(write(fd, chunk, CHUNK), CHUNK);
    }
    assert_int_equal(close(fd), 0);
    want = base.used + BIG - (BIG >> 4);
    if (!df_until(s->mnt_b, 8000, &d, used_at_least, &want)) {
        fail_msg("df: %llu MiB used after writing 32 MiB, %llu MiB before",
                 (unsigned long long)(d.used >> 20), (unsigned long long)(base.used >> 20));
    }
    printf("df: %llu MiB used before, %llu MiB after writing 32 MiB\n",
           (unsigned long long)(base.used >> 20), (unsigned long long)(d.used >> 20));

    /* deleted: the inode goes at once; the space only when the file's blocks are collected
     * and the groups' storage compacts (issue 7's collector). Wait a little and report. */
    df_of(s->a.mnt, &base);
    assert_int_equal(unlink(p), 0);
    want = base.files_used - 1; /* an orphan until the collector's next scan past the grace */
    assert_true(df_until(s->a.mnt, 15000, &d, files_at_most, &want));
    want = base.used - (BIG >> 1);
    if (df_until(s->a.mnt, 3000, &d, used_at_most, &want)) {
        printf("df: the deleted file's space was freed (%llu MiB used)\n",
               (unsigned long long)(d.used >> 20));
    } else {
        printf("NOTE: df: %llu MiB used 3 s after deleting 32 MiB (%llu MiB before): deleted "
               "data is not collected yet\n",
               (unsigned long long)(d.used >> 20), (unsigned long long)(base.used >> 20));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_to_open_between_mounts),
        cmocka_unit_test(test_rename_and_unlink_seen_within_entry_timeout),
        cmocka_unit_test(test_appends_from_four_processes_on_two_mounts),
        cmocka_unit_test(test_listing_while_the_other_mount_changes_the_directory),
        cmocka_unit_test(test_df_reports_the_clusters_space_and_inodes),
    };
    rfs_log_set_level(RFS_LOG_ERROR);
    return cmocka_run_group_tests(tests, setup, teardown);
}
