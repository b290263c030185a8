/* Long exercisers through a real raftfs mount (issue 6, "Tests"), over a real cluster (a meta
 * group and two shard groups of one server each):
 * - a seeded random file exerciser: one file, several descriptors open on it at once (O_RDWR,
 *   one O_APPEND, one O_RDONLY; now and then closed and reopened, sometimes with O_TRUNC),
 *   random pwrite, pread, ftruncate, appends, fsync and fstat, each checked at once against an
 *   in-memory model of the file, and the whole file compared every CHECK_EVERY steps;
 * - a 256 MiB file written with dd and checked with sha256sum, again after a remount.
 * Needs root, /dev/fuse and fusermount3; skipped otherwise.
 *
 * RAFTFS_SEED=<n> replays the exerciser's sequence of operations (default: a fixed seed);
 * RAFTFS_EXERCISE_STEPS=<n> changes its step count, RAFTFS_EXERCISE_SECONDS=<s> its time
 * bound. A failure prints the seed, the step and the last operations.
 *
 * One cluster and one mount (raftfs-mount -f as a child process) for the whole file; each
 * test works in a directory of its own. The teardown closes what the exerciser left open,
 * stops the daemon by its pid, unmounts with fusermount3 -u -z whatever is still mounted, and
 * removes the directories (never a tree that is still mounted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"
#include "tests/lib/sharded.h"
#include "tests/unit/mount_fixture.h"
#include "tests/unit/mount_helper.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

/* The file exerciser's defaults (RAFTFS_EXERCISE_STEPS / _SECONDS override them). */
#define EX_STEPS       40000
#define EX_SECONDS     150
#define EX_CHECK_EVERY 500

#define EX_NFDS      5 /* 0..2 O_RDWR, 3 O_RDWR|O_APPEND, 4 O_RDONLY */
#define EX_APPEND_FD 3
#define EX_RDONLY_FD 4
#define EX_WINDOW    (4 * MIB)   /* random offsets fall in [0, EX_WINDOW) ... */
#define EX_MAX_SIZE  (5 * MIB)   /* ... appends and growing truncates stop here ... */
#define EX_MAX_WRITE (200 * KIB) /* ... a write is 1 byte .. 200 KiB ... */
#define EX_MODEL_CAP (6 * MIB)   /* ... so the file never passes this */
#define EX_BLOCK     (64 * KIB)  /* fs/: FS_BLOCK_SIZE */
#define EX_STRIPE    (1 * MIB)   /* fs/: 16 blocks */
#define EX_HISTORY   24          /* operations printed on a failure */

struct fixture {
    struct mount_fixture m; /* the cluster and the mount */
    /* What a failed exerciser leaves behind, closed and freed by the teardown. */
    int fds[EX_NFDS]; /* -1 when closed */
    unsigned char *model, *scratch;
    void *ex;
};

/* ---- helpers ---- */

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static uint64_t rng_below(uint64_t *x, uint64_t n)
{
    return rng_next(x) % n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? strtol(v, NULL, 10) : dflt;
}

/* ---- the fixture ---- */

static int setup(void **state)
{
    static const char *const tools[] = {"dd", "sha256sum", NULL};
    struct fixture *f = calloc(1, sizeof *f);
    *state = f;
    if (f == NULL) {
        return -1;
    }
    for (int i = 0; i < EX_NFDS; i++) {
        f->fds[i] = -1;
    }
    return mount_fixture_start(&f->m, "raftfs-exercise", tools, NULL);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int bad;
    if (f == NULL) {
        return 0;
    }
    for (int i = 0; i < EX_NFDS; i++) {
        if (f->fds[i] >= 0) {
            close(f->fds[i]);
            f->fds[i] = -1;
        }
    }
    free(f->model);
    free(f->scratch);
    free(f->ex);
    bad = mount_fixture_stop(&f->m, NULL);
    free(f);
    return bad == 0 ? 0 : -1;
}

#define SKIP_IF_NEEDED(f)                                                                          \
    do {                                                                                           \
        if ((f)->m.skipped) {                                                                      \
            skip();                                                                                \
        }                                                                                          \
        if ((f)->m.pid == 0) {                                                                     \
            fail_msg("the mount is not running");                                                  \
        }                                                                                          \
    } while (0)

/* ---- 1. the random file exerciser ---- */

enum ex_op { EX_PWRITE, EX_PREAD, EX_APPEND, EX_TRUNCATE, EX_FSYNC, EX_FSTAT, EX_REOPEN, EX_OPS };

static const char *const ex_op_names[EX_OPS] = {"pwrite", "pread", "append", "ftruncate",
                                                "fsync",  "fstat", "reopen"};

/* Out of 100. */
static const unsigned ex_weight[EX_OPS] = {32, 28, 9, 8, 5, 13, 5};

/* The exerciser's state: the model is the file as it must be; bytes past size are zero. */
struct ex {
    struct fixture *f;
    uint64_t seed, x;
    long step;
    char path[420];
    unsigned char *model; /* EX_MODEL_CAP bytes */
    unsigned char *buf;   /* EX_MODEL_CAP bytes: reads and writes */
    size_t size;
    size_t max_size;
    unsigned done[EX_OPS];
    unsigned holes, eof_reads, o_truncs, whole_checks;
    char history[EX_HISTORY][160]; /* the last operations, a ring */
};

static const int ex_flags[EX_NFDS] = {O_RDWR, O_RDWR, O_RDWR, O_RDWR | O_APPEND, O_RDONLY};

static void ex_note(struct ex *e, const char *fmt, ...)
{
    char *h = e->history[e->step % EX_HISTORY];
    int n = snprintf(h, sizeof e->history[0], "step %ld: ", e->step);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h + n, sizeof e->history[0] - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Fail with the seed, the step and the last operations. */
static void ex_fail(struct ex *e, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    fprintf(stderr, "file exerciser: the last operations (model size %zu):\n", e->size);
    for (long s = e->step - EX_HISTORY + 1; s <= e->step; s++) {
        if (s >= 0 && e->history[s % EX_HISTORY][0] != '\0') {
            fprintf(stderr, "  %s\n", e->history[s % EX_HISTORY]);
        }
    }
    fail_msg("file exerciser: seed %llu, step %ld: %s (replay: RAFTFS_SEED=%llu "
             "RAFTFS_EXERCISE_STEPS=%ld)",
             (unsigned long long)e->seed, e->step, what, (unsigned long long)e->seed, e->step);
}

static void ex_open(struct ex *e, int i, bool trunc)
{
    int fd = open(e->path, ex_flags[i] | (trunc ? O_TRUNC : 0));
    if (fd < 0) {
        ex_fail(e, "open fd%d%s: %s", i, trunc ? " O_TRUNC" : "", strerror(errno));
    }
    e->f->fds[i] = fd;
}

/* An offset that often lands near a block or stripe boundary, or near (and past) the end. */
static size_t ex_offset(struct ex *e)
{
    int64_t off;
    switch (rng_below(&e->x, 5)) {
        case 0:
        case 1:
            off = (int64_t)rng_below(&e->x, EX_WINDOW);
            break;
        case 2: /* around a stripe boundary */
            off = (int64_t)(rng_below(&e->x, EX_WINDOW / EX_STRIPE) + 1) * EX_STRIPE +
                  (int64_t)rng_below(&e->x, 2 * 70000) - 70000;
            break;
        case 3: /* around a block boundary */
            off = (int64_t)rng_below(&e->x, EX_WINDOW / EX_BLOCK) * EX_BLOCK +
                  (int64_t)rng_below(&e->x, 600) - 300;
            break;
        default: /* around the end, often past it */
            off = (int64_t)e->size + (int64_t)rng_below(&e->x, 400 * KIB) - 100 * (int64_t)KIB;
            break;
    }
    if (off < 0) {
        off = 0;
    }
    return (size_t)off < EX_WINDOW ? (size_t)off : EX_WINDOW - 1 - rng_below(&e->x, 1000);
}

/* 1 byte .. 200 KiB, mostly small, sometimes exactly a block. */
static size_t ex_length(struct ex *e)
{
    switch (rng_below(&e->x, 12)) {
        case 0:
            return 1;
        case 1:
            return EX_BLOCK;
        case 2:
            return EX_MAX_WRITE;
        case 3:
        case 4:
        case 5:
        case 6:
            return 1 + rng_below(&e->x, 512);
        case 7:
        case 8:
        case 9:
            return 1 + rng_below(&e->x, 16 * KIB);
        default:
            return 1 + rng_below(&e->x, EX_MAX_WRITE);
    }
}

static void ex_fill(struct ex *e, unsigned char *p, size_t len)
{
    uint64_t y = rng_next(&e->x) | 1;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = rng_next(&y);
        memcpy(p + i, &v, len - i < 8 ? len - i : 8);
    }
}

static void ex_model_write(struct ex *e, size_t off, const unsigned char *p, size_t len)
{
    assert_true(off + len <= EX_MODEL_CAP);
    if (off > e->size) {
        e->holes++;
    }
    memcpy(e->model + off, p, len);
    if (off + len > e->size) {
        e->size = off + len;
    }
    if (e->size > e->max_size) {
        e->max_size = e->size;
    }
}

static void ex_model_truncate(struct ex *e, size_t size)
{
    assert_true(size <= EX_MODEL_CAP);
    if (size < e->size) {
        memset(e->model + size, 0, e->size - size);
    }
    e->size = size;
    if (e->size > e->max_size) {
        e->max_size = e->size;
    }
}

/* Compare n bytes read at off with the model; the first difference fails. */
static void ex_compare(struct ex *e, const char *what, size_t off, const unsigned char *got,
                       size_t n)
{
    if (memcmp(got, e->model + off, n) == 0) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (got[i] != e->model[off + i]) {
            size_t j = i;
            while (j < n && got[j] != e->model[off + j]) {
                j++;
            }
            ex_fail(e,
                    "%s: byte %zu (block %zu, stripe %zu) is %#x, the model says %#x "
                    "(%zu differing bytes from there)",
                    what, off + i, (off + i) / EX_BLOCK, (off + i) / EX_STRIPE, got[i],
                    e->model[off + i], j - i);
        }
    }
}

/* Read the whole file through fd i in pieces of up to 1 MiB and compare, then read at EOF. */
static void ex_check_whole(struct ex *e, int i)
{
    size_t off = 0;
    ssize_t r;
    e->whole_checks++;
    while (off < e->size) {
        size_t want = e->size - off < MIB ? e->size - off : MIB;
        r = pread(e->f->fds[i], e->buf, want, (off_t)off);
        if (r < 0) {
            ex_fail(e, "whole-file check via fd%d: pread %zu at %zu: %s", i, want, off,
                    strerror(errno));
        }
        if (r == 0) {
            ex_fail(e, "whole-file check via fd%d: EOF at %zu, the model's size is %zu", i, off,
                    e->size);
        }
        ex_compare(e, "whole-file check", off, e->buf, (size_t)r);
        off += (size_t)r;
    }
    r = pread(e->f->fds[i], e->buf, 4096, (off_t)e->size);
    if (r != 0) {
        ex_fail(e, "whole-file check via fd%d: pread at the end (%zu) gave %zd (%s)", i, e->size, r,
                r < 0 ? strerror(errno) : "bytes past the end");
    }
}

static void ex_fstat(struct ex *e, int i)
{
    struct stat st;
    if (fstat(e->f->fds[i], &st) != 0) {
        ex_fail(e, "fstat fd%d: %s", i, strerror(errno));
    }
    if ((size_t)st.st_size != e->size) {
        ex_fail(e, "fstat fd%d: size %lld, the model says %zu", i, (long long)st.st_size, e->size);
    }
}

static void ex_step(struct ex *e)
{
    unsigned w = (unsigned)rng_below(&e->x, 100), acc = 0;
    enum ex_op op = EX_FSTAT;
    int i;
    for (int k = 0; k < EX_OPS; k++) {
        acc += ex_weight[k];
        if (w < acc) {
            op = (enum ex_op)k;
            break;
        }
    }
    /* Keep the file within the model: past EX_MAX_SIZE, appends become truncates. */
    if (op == EX_APPEND && e->size > EX_MAX_SIZE) {
        op = EX_TRUNCATE;
    }
    e->done[op]++;
    switch (op) {
        case EX_PWRITE: {
            size_t off = ex_offset(e), len = ex_length(e);
            ssize_t r;
            i = (int)rng_below(&e->x, 3);
            ex_fill(e, e->buf, len);
            ex_note(e, "pwrite fd%d off %zu len %zu (size %zu)", i, off, len, e->size);
            r = pwrite(e->f->fds[i], e->buf, len, (off_t)off);
            if (r != (ssize_t)len) {
                ex_fail(e, "pwrite fd%d %zu at %zu gave %zd (%s)", i, len, off, r,
                        r < 0 ? strerror(errno) : "short");
            }
            ex_model_write(e, off, e->buf, len);
            break;
        }
        case EX_PREAD: {
            /* one read in 8 at the end itself: just before, at, or just past it */
            size_t off, len, want;
            ssize_t r;
            char what[96];
            if (rng_below(&e->x, 8) == 0) {
                off = e->size + rng_below(&e->x, 3);
                off = off > 0 ? off - 1 : 0;
            } else {
                off = ex_offset(e);
            }
            len = ex_length(e);
            want = off >= e->size ? 0 : (e->size - off < len ? e->size - off : len);
            i = (int)rng_below(&e->x, EX_NFDS);
            e->eof_reads += want < len;
            ex_note(e, "pread fd%d off %zu len %zu (size %zu)", i, off, len, e->size);
            r = pread(e->f->fds[i], e->buf, len, (off_t)off);
            if (r != (ssize_t)want) {
                ex_fail(e, "pread fd%d %zu at %zu gave %zd (%s), the model says %zu", i, len, off,
                        r, r < 0 ? strerror(errno) : "count", want);
            }
            snprintf(what, sizeof what, "pread fd%d %zu at %zu", i, len, off);
            ex_compare(e, what, off, e->buf, want);
            break;
        }
        case EX_APPEND: {
            size_t len = ex_length(e), old = e->size;
            ssize_t r;
            ex_fill(e, e->buf, len);
            ex_note(e, "append fd%d len %zu (size %zu)", EX_APPEND_FD, len, e->size);
            r = write(e->f->fds[EX_APPEND_FD], e->buf, len);
            if (r != (ssize_t)len) {
                ex_fail(e, "append %zu gave %zd (%s)", len, r, r < 0 ? strerror(errno) : "short");
            }
            ex_model_write(e, old, e->buf, len);
            /* The descriptor's position is now the end (a later read through it would start
             * there; this one only tells that the kernel agrees on where the end is). */
            if (lseek(e->f->fds[EX_APPEND_FD], 0, SEEK_CUR) != (off_t)e->size) {
                ex_fail(e, "after an append the O_APPEND descriptor is at %lld, the end is %zu",
                        (long long)lseek(e->f->fds[EX_APPEND_FD], 0, SEEK_CUR), e->size);
            }
            break;
        }
        case EX_TRUNCATE: {
            size_t size;
            switch (rng_below(&e->x, 6)) {
                case 0:
                    size = e->size; /* the same size */
                    break;
                case 1:
                    size = e->size / 2; /* shrink */
                    break;
                case 2:
                    size = e->size + rng_below(&e->x, 300 * KIB); /* grow */
                    break;
                default:
                    size = ex_offset(e);
                    break;
            }
            if (size > EX_MAX_SIZE) {
                size = EX_MAX_SIZE - rng_below(&e->x, EX_STRIPE);
            }
            i = (int)rng_below(&e->x, 4); /* any writable descriptor, O_APPEND too */
            ex_note(e, "ftruncate fd%d to %zu (size %zu)", i, size, e->size);
            if (ftruncate(e->f->fds[i], (off_t)size) != 0) {
                ex_fail(e, "ftruncate fd%d to %zu: %s", i, size, strerror(errno));
            }
            ex_model_truncate(e, size);
            break;
        }
        case EX_FSYNC:
            i = (int)rng_below(&e->x, EX_NFDS);
            ex_note(e, "fsync fd%d (size %zu)", i, e->size);
            if (fsync(e->f->fds[i]) != 0) {
                ex_fail(e, "fsync fd%d: %s", i, strerror(errno));
            }
            break;
        case EX_FSTAT:
            i = (int)rng_below(&e->x, EX_NFDS);
            ex_note(e, "fstat fd%d (size %zu)", i, e->size);
            ex_fstat(e, i);
            break;
        case EX_REOPEN: {
            bool trunc;
            i = (int)rng_below(&e->x, EX_NFDS);
            trunc = i != EX_RDONLY_FD && rng_below(&e->x, 6) == 0;
            ex_note(e, "close and reopen fd%d%s (size %zu)", i, trunc ? " with O_TRUNC" : "",
                    e->size);
            if (close(e->f->fds[i]) != 0) {
                e->f->fds[i] = -1;
                ex_fail(e, "close fd%d: %s", i, strerror(errno));
            }
            e->f->fds[i] = -1;
            ex_open(e, i, trunc);
            if (trunc) {
                e->o_truncs++;
                ex_model_truncate(e, 0);
            }
            break;
        }
        default:
            break;
    }
}

/* One file, several descriptors on it, tens of thousands of random operations, each checked
 * against the model as it returns; the whole file every EX_CHECK_EVERY steps, at the end, and
 * once more through fresh descriptors after closing them all. */
static void test_random_file_ops_match_model(void **state)
{
    struct fixture *f = *state;
    long steps = env_long("RAFTFS_EXERCISE_STEPS", EX_STEPS);
    double limit = (double)env_long("RAFTFS_EXERCISE_SECONDS", EX_SECONDS), t0;
    struct ex *e;
    char dir[400];
    int fd;
    SKIP_IF_NEEDED(f);
    f->ex = e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->f = f;
    e->seed = (uint64_t)env_long("RAFTFS_SEED", 20261122);
    e->seed = e->seed == 0 ? 1 : e->seed;
    e->x = e->seed;
    printf("test_random_file_ops_match_model: seed %llu, %ld steps at most, %.0f s at most "
           "(RAFTFS_SEED=%llu replays)\n",
           (unsigned long long)e->seed, steps, limit, (unsigned long long)e->seed);
    f->model = e->model = calloc(1, EX_MODEL_CAP);
    f->scratch = e->buf = malloc(EX_MODEL_CAP);
    assert_non_null(e->model);
    assert_non_null(e->buf);
    snprintf(dir, sizeof dir, "%s/ex", f->m.mnt);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(e->path, sizeof e->path, "%s/file", dir);
    fd = open(e->path, O_RDWR | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    for (int i = 0; i < EX_NFDS; i++) {
        ex_open(e, i, false);
    }

    t0 = now_s();
    for (e->step = 1; e->step <= steps; e->step++) {
        ex_step(e);
        if (e->step % EX_CHECK_EVERY == 0) {
            ex_note(e, "whole-file check (size %zu)", e->size);
            ex_check_whole(e, (int)rng_below(&e->x, EX_NFDS));
            ex_fstat(e, (int)rng_below(&e->x, EX_NFDS));
            if (now_s() - t0 > limit) {
                printf("  time bound (%.0f s) reached\n", limit);
                e->step++;
                break;
            }
        }
    }
    e->step--;
    ex_check_whole(e, 0);
    ex_fstat(e, EX_RDONLY_FD);

    /* Everything closed (each close reports its flush), then fresh descriptors see the
     * same file. */
    for (int i = 0; i < EX_NFDS; i++) {
        int rv = close(f->fds[i]);
        f->fds[i] = -1;
        if (rv != 0) {
            ex_fail(e, "final close fd%d: %s", i, strerror(errno));
        }
    }
    ex_open(e, EX_RDONLY_FD, false);
    ex_check_whole(e, EX_RDONLY_FD);
    ex_fstat(e, EX_RDONLY_FD);
    assert_int_equal(close(f->fds[EX_RDONLY_FD]), 0);
    f->fds[EX_RDONLY_FD] = -1;

    printf("  %ld steps in %.1f s (seed %llu); largest size %zu, %u writes past the end, "
           "%u short reads at the end, %u O_TRUNC opens, %u whole-file checks\n",
           e->step, now_s() - t0, (unsigned long long)e->seed, e->max_size, e->holes, e->eof_reads,
           e->o_truncs, e->whole_checks);
    for (int k = 0; k < EX_OPS; k++) {
        printf("  %-9s %6u\n", ex_op_names[k], e->done[k]);
    }
    free(f->model);
    free(f->scratch);
    f->model = f->scratch = NULL;
    free(e);
    f->ex = NULL;
}

/* ---- the exerciser's findings, reduced ---- */

/* Open path twice; the second descriptor with extra flags. */
static void open_two(const struct fixture *f, const char *name, int flags_b, int *a, int *b,
                     char *path, size_t cap)
{
    int fd;
    snprintf(path, cap, "%s/%s", f->m.mnt, name);
    fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    *a = open(path, O_RDWR);
    assert_true(*a >= 0);
    *b = open(path, O_RDWR | flags_b);
    assert_true(*b >= 0);
}

/* An append goes at the end of the file as it is when the append is made, counting what
 * another descriptor wrote before it (found as seed 20261122, step 34 of the exerciser). */
static void test_append_goes_after_another_descriptors_write(void **state)
{
    struct fixture *f = *state;
    char path[400], buf[200], want[111];
    struct stat st;
    int a, b;
    SKIP_IF_NEEDED(f);
    open_two(f, "append-order", O_APPEND, &a, &b, path, sizeof path);
    assert_int_equal(pwrite(a, "aaaaaaaaaa", 10, 100), 10);
    assert_int_equal(write(b, "B", 1), 1);
    assert_int_equal(close(b), 0);
    assert_int_equal(fstat(a, &st), 0);
    memset(want, 0, sizeof want);
    memcpy(want + 100, "aaaaaaaaaaB", 11);
    assert_int_equal(pread(a, buf, sizeof buf, 0), 111);
    assert_int_equal(close(a), 0);
    assert_memory_equal(buf, want, 111);
    assert_int_equal(st.st_size, 111);
}

/* Of two overlapping writes through two descriptors, the later one wins (found as seed
 * 20261122, step 4533 of the exerciser, with the appends bug fenced off by fsync). */
static void test_later_write_wins_across_descriptors(void **state)
{
    struct fixture *f = *state;
    char path[400], buf[8];
    int a, b;
    SKIP_IF_NEEDED(f);
    open_two(f, "write-order", 0, &a, &b, path, sizeof path);
    assert_int_equal(pwrite(a, "AAAA", 4, 0), 4);
    assert_int_equal(pwrite(b, "BB", 2, 1), 2);
    assert_int_equal(pread(a, buf, sizeof buf, 0), 4);
    assert_int_equal(close(a), 0);
    assert_int_equal(close(b), 0);
    assert_memory_equal(buf, "ABBA", 4);
}

/* ---- 2. a 256 MiB file with dd and sha256sum, before and after a remount ---- */

/* dd of 256 MiB from /dev/urandom (kept on local disk in the test's directory) into the
 * mount with bs=1M, sha256sum of both, then the daemon stopped and a new one started on the
 * same mount point, and sha256sum of the file again. */
static void test_dd_256mib_sha256_survives_remount(void **state)
{
    struct fixture *f = *state;
    char cmd[2048], out[4096], want[128], errmsg[RFS_ERRMSG_SIZE];
    char src[400], dst[400];
    struct stat st;
    double t0 = now_s();
    SKIP_IF_NEEDED(f);
    snprintf(src, sizeof src, "%s/dd-source", f->m.dir);
    snprintf(dst, sizeof dst, "%s/dd/big", f->m.mnt);
    snprintf(cmd, sizeof cmd,
             "set -e; dd if=/dev/urandom of='%s' bs=1M count=256 status=none; "
             "sha256sum < '%s' | cut -d' ' -f1",
             src, src);
    if (mount_helper_sh(f->m.dir, cmd, want, sizeof want) != 0 || strlen(want) != 65) {
        unlink(src);
        fail_msg("the source file: %s", want);
    }
    snprintf(cmd, sizeof cmd,
             "set -e; mkdir dd; dd if='%s' of=dd/big bs=1M status=none; "
             "sha256sum < dd/big | cut -d' ' -f1",
             src);
    if (mount_helper_sh(f->m.mnt, cmd, out, sizeof out) != 0 || strcmp(out, want) != 0) {
        unlink(src);
        fail_msg("dd into the mount: sha256 %s, the source's %s", out, want);
    }
    assert_int_equal(unlink(src), 0);
    printf("  256 MiB written and read back in %.1f s\n", now_s() - t0);
    assert_int_equal(stat(dst, &st), 0);
    assert_int_equal(st.st_size, 256 * (off_t)MIB);

    /* A new daemon: nothing cached in the kernel or in the old daemon. */
    assert_int_equal(mount_helper_stop(f->m.mnt, &f->m.pid), 0);
    assert_false(mount_helper_is_mount_point(f->m.mnt));
    assert_false(mount_helper_log_has_sanitizer_report(f->m.log));
    if (mount_helper_start(f->m.bin, f->m.s.meta.group, f->m.mnt, f->m.log, &f->m.pid, errmsg) !=
        0) {
        mount_helper_dump_log(f->m.log);
        fail_msg("remount: %s", errmsg);
    }
    t0 = now_s();
    if (mount_helper_sh(f->m.mnt, "sha256sum < dd/big | cut -d' ' -f1", out, sizeof out) != 0 ||
        strcmp(out, want) != 0) {
        fail_msg("after the remount: sha256 %s, the source's %s", out, want);
    }
    printf("  read back after the remount in %.1f s\n", now_s() - t0);
    assert_int_equal(stat(dst, &st), 0);
    assert_int_equal(st.st_size, 256 * (off_t)MIB);
    assert_int_equal(unlink(dst), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_file_ops_match_model),
        cmocka_unit_test(test_append_goes_after_another_descriptors_write),
        cmocka_unit_test(test_later_write_wins_across_descriptors),
        cmocka_unit_test(test_dd_256mib_sha256_survives_remount),
    };
    rfs_log_set_level(RFS_LOG_ERROR);
    /* One cluster and one mount for the whole file: the tests use directories of their own. */
    return cmocka_run_group_tests(tests, setup, teardown);
}
