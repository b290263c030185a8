/* raftfs-mount under faults, through the kernel (issue 6, "Tests"):
 * - a seeded random namespace exerciser (fixed edge cases first, then 15,000 random steps or
 *   FS_FAULTS_SECONDS, whichever comes first) compared step by step with a local directory:
 *   each step's errno, every 500 steps the whole trees, and at the end the tree again as a
 *   fresh daemon sees it;
 * - kill -9 of the mount daemon in the middle of writes, then a remount that must find a
 *   consistent namespace;
 * - kill -9 of a shard leader (groups of three) during `cp -r`;
 * - buckets moved between the groups during `cp -r`.
 * Needs root, /dev/fuse and fusermount3; skipped otherwise.
 *
 * Each test starts its own cluster (a meta group and two shard groups) and its own mount
 * (raftfs-mount -f as a child, by pid). The teardown always stops the daemons and the children
 * by their pids, unmounts with fusermount3 -u -z whatever is still mounted, and removes the
 * directories. RAFTFS_SEED=<n> replays the exerciser's sequence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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
#include "tests/unit/mount_helper.h"

#define STOP_WAIT_MS 15000
#define CP_WAIT_MS   60000
#define NBUCKETS     64

/* Steps of the namespace exerciser (more with -DFS_FAULTS_STEPS=n for a long hunt), and the
 * time after which it stops early (it says so, with the steps it ran). */
#ifndef FS_FAULTS_STEPS
#define FS_FAULTS_STEPS 15000
#endif
#ifndef FS_FAULTS_SECONDS
#define FS_FAULTS_SECONDS 120
#endif

struct fixture {
    bool skipped;
    struct sharded s;
    char bin[300]; /* raftfs-mount */
    char dir[256]; /* mount point, logs, local trees */
    char mnt[320]; /* the mount point */
    char log[320]; /* the daemon's log */
    pid_t pid;     /* the daemon, 0 when not running */
    pid_t child;   /* a writer or cp, 0 when not running */
    pid_t churner; /* the metadata churner, 0 when not running */
};

/* ---- the fixture ---- */

static int setup_groups(void **state, unsigned servers)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *bins = getenv("RAFTFS_BIN_DIR");
    static const char *const tools[] = {"cp", "diff", NULL};
    char why[512], errmsg[RFS_ERRMSG_SIZE];
    *state = f;
    if (f == NULL) {
        return -1;
    }
    snprintf(f->bin, sizeof f->bin, "%s/raftfs-mount", bins != NULL ? bins : "build/asan/bin");
    if (!cluster_bins_present(why, sizeof why) ||
        !mount_helper_usable(f->bin, tools, why, sizeof why)) {
        f->skipped = true;
        printf("SKIPPED: %s\n", why);
        return 0;
    }
    if (tmpdir_make("raftfs-faults", f->dir, sizeof f->dir, errmsg) != 0 ||
        sharded_start_joined(&f->s, 2, servers, false, NULL, 30000, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        return -1;
    }
    snprintf(f->mnt, sizeof f->mnt, "%s/m", f->dir);
    snprintf(f->log, sizeof f->log, "%s/mount.log", f->dir);
    if (mount_helper_start(f->bin, f->s.meta.group, f->mnt, f->log, &f->pid, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        mount_helper_dump_log(f->log);
        return -1;
    }
    return 0;
}

static int setup_single(void **state)
{
    return setup_groups(state, 1);
}

static int setup_triple(void **state)
{
    return setup_groups(state, 3);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int bad = 0;
    if (f == NULL) {
        return 0;
    }
    if (f->child > 0) {
        proc_kill(f->child, SIGKILL);
        proc_wait(f->child, STOP_WAIT_MS);
        f->child = 0;
    }
    if (f->churner > 0) {
        proc_kill(f->churner, SIGKILL);
        proc_wait(f->churner, STOP_WAIT_MS);
        f->churner = 0;
    }
    if (!f->skipped && f->dir[0] != '\0') {
        bad += mount_helper_teardown(f->mnt, &f->pid, f->log);
    }
    bad += sharded_destroy(&f->s);
    if (f->dir[0] != '\0') {
        /* Never remove a tree that is still mounted: that would empty the filesystem. */
        if (f->mnt[0] != '\0' && mount_helper_is_mount_point(f->mnt)) {
            fprintf(stderr, "teardown: %s is still mounted; left in place\n", f->dir);
            bad++;
        } else if (getenv("RAFTFS_KEEP_TEST_DIRS") == NULL) {
            tmpdir_remove(f->dir);
        }
    }
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

/* ---- small helpers ---- */

/* A growing string. */
struct text {
    char *s;
    size_t len, cap;
};

static void text_addf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = (t->cap == 0 ? 4096 : t->cap * 2) + (size_t)n;
        char *s = realloc(t->s, cap);
        assert_non_null(s);
        t->s = s;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dir (without . and ..), sorted; *n set. NULL with errno on failure. Free each
 * name and the array. */
static char **list_dir(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t cap = 0;
    *n = 0;
    if (d == NULL) {
        return NULL;
    }
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if (*n == cap) {
            char **more = realloc(names, (cap = cap * 2 + 16) * sizeof *names);
            assert_non_null(more);
            names = more;
        }
        names[*n] = strdup(de->d_name);
        assert_non_null(names[*n]);
        (*n)++;
        errno = 0;
    }
    int err = errno;
    closedir(d);
    if (err != 0) {
        for (size_t i = 0; i < *n; i++) {
            free(names[i]);
        }
        free(names);
        errno = err;
        return NULL;
    }
    if (names == NULL) {
        names = malloc(sizeof *names);
        assert_non_null(names);
    }
    qsort(names, *n, sizeof *names, cmp_names);
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

/* Read the whole file: FNV-1a hash and length. Returns 0 or errno. */
static int hash_file(const char *path, uint64_t *hash, size_t *len)
{
    char buf[16384];
    ssize_t r;
    int fd = open(path, O_RDONLY), err = 0;
    *hash = 1469598103934665603ULL;
    *len = 0;
    if (fd < 0) {
        return errno;
    }
    while ((r = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < r; i++) {
            *hash = (*hash ^ (unsigned char)buf[i]) * 1099511628211ULL;
        }
        *len += (size_t)r;
    }
    if (r < 0) {
        err = errno;
    }
    close(fd);
    return err;
}

/* Describe the tree under root/rel, one line per entry in name order: path, type, link count
 * and the contents (hash and length of a file, a symlink's target). */
static void describe_tree(const char *root, const char *rel, struct text *out)
{
    char dir[1024], path[1400], sub[1024];
    size_t n;
    char **names;
    snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] != '\0' ? "/" : "", rel);
    names = list_dir(dir, &n);
    if (names == NULL) {
        text_addf(out, "%s: cannot list: %s\n", rel, strerror(errno));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] != '\0' ? "/" : "", names[i]);
        snprintf(path, sizeof path, "%s/%s", root, sub);
        if (lstat(path, &st) != 0) {
            text_addf(out, "%s: lstat: %s\n", sub, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            text_addf(out, "%s dir nlink=%lu\n", sub, (unsigned long)st.st_nlink);
            describe_tree(root, sub, out);
        } else if (S_ISLNK(st.st_mode)) {
            char target[512];
            ssize_t r = readlink(path, target, sizeof target - 1);
            target[r < 0 ? 0 : r] = '\0';
            text_addf(out, "%s link nlink=%lu -> %s\n", sub, (unsigned long)st.st_nlink, target);
        } else if (S_ISREG(st.st_mode)) {
            uint64_t h;
            size_t len;
            int err = hash_file(path, &h, &len);
            text_addf(out, "%s file nlink=%lu size=%lld read=%zu hash=%016llx%s%s\n", sub,
                      (unsigned long)st.st_nlink, (long long)st.st_size, len, (unsigned long long)h,
                      err != 0 ? " error=" : "", err != 0 ? strerror(err) : "");
        } else {
            text_addf(out, "%s other mode=%o\n", sub, (unsigned)st.st_mode);
        }
    }
    free_names(names, n);
}

/* Check the namespace under root/rel is consistent: every directory lists, every listed name
 * looks up (no entry points to a missing inode), every regular file reads exactly its size.
 * Problems are appended to bad; returns how many entries were seen. */
static size_t check_consistent(const char *root, const char *rel, struct text *bad)
{
    char dir[1024], path[1400], sub[1024];
    size_t n, seen = 0, subdirs = 0;
    char **names;
    struct stat self;
    snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] != '\0' ? "/" : "", rel);
    names = list_dir(dir, &n);
    if (names == NULL) {
        text_addf(bad, "%s: cannot list: %s\n", dir, strerror(errno));
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        seen++;
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] != '\0' ? "/" : "", names[i]);
        snprintf(path, sizeof path, "%s/%s", root, sub);
        if (lstat(path, &st) != 0) {
            text_addf(bad, "%s: listed but lstat fails: %s\n", sub, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            subdirs++;
            seen += check_consistent(root, sub, bad);
        } else if (S_ISREG(st.st_mode)) {
            uint64_t h;
            size_t len;
            int err = hash_file(path, &h, &len);
            if (err != 0) {
                text_addf(bad, "%s: read: %s\n", sub, strerror(err));
            } else if ((long long)len != (long long)st.st_size) {
                text_addf(bad, "%s: size %lld but %zu bytes read\n", sub, (long long)st.st_size,
                          len);
            }
            if (st.st_nlink < 1) {
                text_addf(bad, "%s: file with nlink 0\n", sub);
            }
        }
    }
    free_names(names, n);
    /* A directory's link count is 2 plus one per subdirectory (its ".." entries). */
    if (stat(dir, &self) != 0) {
        text_addf(bad, "%s: stat: %s\n", dir, strerror(errno));
    } else if (self.st_nlink != 2 + subdirs) {
        text_addf(bad, "%s: nlink %lu with %zu subdirectories\n", dir, (unsigned long)self.st_nlink,
                  subdirs);
    }
    return seen;
}

static void assert_consistent(const char *root, const char *what)
{
    struct text bad = {0};
    size_t seen;
    text_addf(&bad, "%s", "");
    seen = check_consistent(root, "", &bad);
    if (bad.len != 0) {
        fail_msg("%s: the namespace is not consistent:\n%s", what, bad.s);
    }
    printf("%s: %zu entries, all consistent\n", what, seen);
    free(bad.s);
}

/* Run sh -c cmd with output into log; returns the exit status (-1 if it did not finish). */
static int run_sh_log(const char *cmd, const char *log, int timeout_ms)
{
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    pid_t pid;
    int st;
    if (proc_spawn(argv, log, &pid, NULL) != 0) {
        return -1;
    }
    st = proc_wait(pid, timeout_ms);
    if (st == -2) {
        proc_stop(pid, STOP_WAIT_MS);
        return -1;
    }
    return st;
}

/* The source trees copied into the mount, in this order (cp -r copies its arguments in
 * order, so a test can tell how far a copy got). */
static const char *const copied[] = {"kv", "fs", "raft", "rpc", "meta", "mount", "common", "docs"};
#define NCOPIED (sizeof copied / sizeof copied[0])

/* A local copy of the repository's source folders in f->dir/src (the tests run from the
 * repository, as make does). Returns false (and prints SKIPPED) when they are not there. */
static bool source_tree(struct fixture *f, char *out, size_t cap)
{
    char cmd[2048], log[400];
    size_t n;
    snprintf(out, cap, "%s/src", f->dir);
    n = (size_t)snprintf(cmd, sizeof cmd, "mkdir '%s' && cp -r", out);
    for (size_t i = 0; i < NCOPIED; i++) {
        if (access(copied[i], R_OK) != 0) {
            printf("SKIPPED: ./%s is not there (run from the repository)\n", copied[i]);
            return false;
        }
        n += (size_t)snprintf(cmd + n, sizeof cmd - n, " %s", copied[i]);
    }
    snprintf(cmd + n, sizeof cmd - n, " '%s'", out);
    snprintf(log, sizeof log, "%s/src.log", f->dir);
    if (run_sh_log(cmd, log, 60000) != 0) {
        mount_helper_dump_log(log);
        fail_msg("could not copy the source folders");
    }
    return true;
}

/* mkdir dst, then start cp -r src/<each copied folder> dst as f->child, output into log. */
static void cp_start(struct fixture *f, const char *src, const char *dst, const char *log)
{
    char paths[NCOPIED][600], errmsg[RFS_ERRMSG_SIZE];
    char *argv[NCOPIED + 4];
    size_t k = 0;
    assert_int_equal(mkdir(dst, 0755), 0);
    argv[k++] = "cp";
    argv[k++] = "-r";
    for (size_t i = 0; i < NCOPIED; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", src, copied[i]);
        argv[k++] = paths[i];
    }
    argv[k++] = (char *)dst;
    argv[k] = NULL;
    if (proc_spawn(argv, log, &f->child, errmsg) != 0) {
        f->child = 0;
        fail_msg("cp: %s", errmsg);
    }
}

struct count_arg {
    const char *dir;
    size_t want;
};

/* Whether dir holds at least want entries (the copy is under way). */
static bool dir_has_entries(void *arg)
{
    const struct count_arg *a = arg;
    size_t n;
    char **names = list_dir(a->dir, &n);
    if (names == NULL) {
        return false;
    }
    free_names(names, n);
    return n >= a->want;
}

/* ---- 1. random namespace operations, against a local directory ---- */

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static unsigned rng_below(uint64_t *x, unsigned n)
{
    return (unsigned)(rng_next(x) % n);
}

struct ns_entry {
    char path[128];
    bool dir;
};

/* Every path under root (relative), directories flagged; the root itself is not listed. */
static void collect_paths(const char *root, const char *rel, struct ns_entry *out, size_t *n,
                          size_t cap)
{
    char dir[1024], path[1400], sub[128];
    size_t m;
    char **names;
    snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] != '\0' ? "/" : "", rel);
    names = list_dir(dir, &m);
    assert_non_null(names);
    for (size_t i = 0; i < m && *n < cap; i++) {
        struct stat st;
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] != '\0' ? "/" : "", names[i]);
        snprintf(path, sizeof path, "%s/%s", root, sub);
        assert_int_equal(lstat(path, &st), 0);
        snprintf(out[*n].path, sizeof out[*n].path, "%s", sub);
        out[*n].dir = S_ISDIR(st.st_mode);
        (*n)++;
        if (S_ISDIR(st.st_mode) && strlen(sub) < 40) {
            collect_paths(root, sub, out, n, cap);
        }
    }
    free_names(names, m);
}

enum ns_op { OP_CREATE, OP_MKDIR, OP_RENAME, OP_UNLINK, OP_RMDIR, OP_LINK, OP_SYMLINK, OP_N };

static const char *const op_names[OP_N] = {"create", "mkdir", "rename", "unlink",
                                           "rmdir",  "link",  "symlink"};

struct ns_step {
    enum ns_op op;
    char a[256], b[256];
    size_t len; /* create: content length */
    uint64_t fill;
};

/* Apply one step under root; returns 0 or the errno of the failing call. */
static int ns_apply(const char *root, const struct ns_step *st)
{
    char a[1400], b[1400];
    int rv = 0;
    snprintf(a, sizeof a, "%s/%s", root, st->a);
    snprintf(b, sizeof b, "%s/%s", root, st->b);
    errno = 0;
    switch (st->op) {
        case OP_CREATE: {
            int fd = open(a, O_WRONLY | O_CREAT | O_EXCL, 0644);
            char buf[4096];
            uint64_t x = st->fill;
            if (fd < 0) {
                return errno;
            }
            for (size_t i = 0; i < st->len; i++) {
                buf[i] = (char)('a' + rng_below(&x, 26));
            }
            if (write(fd, buf, st->len) != (ssize_t)st->len) {
                rv = errno != 0 ? errno : EIO;
            }
            if (close(fd) != 0 && rv == 0) {
                rv = errno;
            }
            return rv;
        }
        case OP_MKDIR:
            rv = mkdir(a, 0755);
            break;
        case OP_RENAME:
            rv = rename(a, b);
            break;
        case OP_UNLINK:
            rv = unlink(a);
            break;
        case OP_RMDIR:
            rv = rmdir(a);
            break;
        case OP_LINK:
            rv = link(a, b);
            break;
        case OP_SYMLINK:
            rv = symlink(st->b, a);
            break;
        default:
            break;
    }
    return rv == 0 ? 0 : errno;
}

/* A random step over the names that exist in the local tree (and some that do not). */
static void ns_pick(uint64_t *x, const struct ns_entry *ents, size_t n, struct ns_step *st)
{
    static const char *const names[] = {"a", "b", "c", "d", "e", "f", "g"};
    static const unsigned weight[OP_N] = {24, 14, 26, 10, 8, 9, 9};
    char dirs[64][128];
    size_t ndirs = 0;
    unsigned w = rng_below(x, 100), acc = 0;
    memset(st, 0, sizeof *st);
    st->op = OP_SYMLINK;
    for (int i = 0; i < OP_N; i++) {
        acc += weight[i];
        if (w < acc) {
            st->op = (enum ns_op)i;
            break;
        }
    }
    dirs[ndirs++][0] = '\0';
    for (size_t i = 0; i < n && ndirs < 64; i++) {
        if (ents[i].dir) {
            snprintf(dirs[ndirs++], sizeof dirs[0], "%s", ents[i].path);
        }
    }
    /* a: an existing path most of the time (a new one for create, mkdir, symlink) */
    bool fresh_a = st->op == OP_CREATE || st->op == OP_MKDIR || st->op == OP_SYMLINK;
    if (n == 0 || (fresh_a ? rng_below(x, 100) < 85 : rng_below(x, 100) < 8)) {
        const char *d = dirs[rng_below(x, (unsigned)ndirs)];
        snprintf(st->a, sizeof st->a, "%s%s%s", d, d[0] != '\0' ? "/" : "", names[rng_below(x, 7)]);
    } else {
        snprintf(st->a, sizeof st->a, "%s", ents[rng_below(x, (unsigned)n)].path);
    }
    /* link: mostly a file or a symlink (directories cannot be linked) */
    if (st->op == OP_LINK && n > 0 && rng_below(x, 100) < 80) {
        for (unsigned tries = 0; tries < 8; tries++) {
            const struct ns_entry *e = &ents[rng_below(x, (unsigned)n)];
            if (!e->dir) {
                snprintf(st->a, sizeof st->a, "%s", e->path);
                break;
            }
        }
    }
    /* rmdir: mostly an empty directory (most directories soon have entries) */
    if (st->op == OP_RMDIR && rng_below(x, 100) < 70) {
        size_t leaves[64], nleaves = 0;
        for (size_t i = 1; i < ndirs; i++) {
            size_t len = strlen(dirs[i]);
            bool empty = true;
            for (size_t j = 0; j < n && empty; j++) {
                empty = !(strncmp(ents[j].path, dirs[i], len) == 0 && ents[j].path[len] == '/');
            }
            if (empty) {
                leaves[nleaves++] = i;
            }
        }
        if (nleaves > 0) {
            snprintf(st->a, sizeof st->a, "%s", dirs[leaves[rng_below(x, (unsigned)nleaves)]]);
        }
    }
    /* b: rename and link target, new or existing; symlink target text */
    if (st->op == OP_RENAME || st->op == OP_LINK) {
        if (n > 0 && rng_below(x, 100) < 35) {
            snprintf(st->b, sizeof st->b, "%s", ents[rng_below(x, (unsigned)n)].path);
        } else {
            const char *d = dirs[rng_below(x, (unsigned)ndirs)];
            snprintf(st->b, sizeof st->b, "%s%s%s", d, d[0] != '\0' ? "/" : "",
                     names[rng_below(x, 7)]);
        }
    } else if (st->op == OP_SYMLINK) {
        if (n > 0 && rng_below(x, 2) == 0) {
            snprintf(st->b, sizeof st->b, "%s", ents[rng_below(x, (unsigned)n)].path);
        } else {
            snprintf(st->b, sizeof st->b, "../nowhere/%u", rng_below(x, 1000));
        }
    } else if (st->op == OP_CREATE) {
        st->len = rng_below(x, 4) == 0 ? 0 : rng_below(x, 4000);
        st->fill = rng_next(x) | 1;
    }
}

static void compare_trees(const char *mnt, const char *local, uint64_t seed, int step)
{
    struct text a = {0}, b = {0};
    text_addf(&a, "%s", "");
    text_addf(&b, "%s", "");
    describe_tree(mnt, "", &a);
    describe_tree(local, "", &b);
    if (strcmp(a.s, b.s) != 0) {
        fprintf(stderr, "--- mount\n%s--- local\n%s", a.s, b.s);
        free(a.s);
        free(b.s);
        fail_msg("seed %llu, after step %d: the trees differ", (unsigned long long)seed, step);
    }
    free(a.s);
    free(b.s);
}

/* Edge cases run before the random steps, compared the same way. */
static const struct ns_step edge_steps[] = {
    {OP_CREATE, "a", "", 10, 7},
    {OP_LINK, "a", "b", 0, 0},
    {OP_RENAME, "a", "b", 0, 0}, /* two names of one inode: nothing happens */
    {OP_RENAME, "b", "b", 0, 0},
    {OP_MKDIR, "c", "", 0, 0},
    {OP_MKDIR, "c/d", "", 0, 0},
    {OP_RENAME, "c", "c/d/e", 0, 0}, /* into its own subtree */
    {OP_RENAME, "c", "c", 0, 0},
    {OP_RENAME, "c/d", "c", 0, 0}, /* over its non-empty parent */
    {OP_RENAME, "a", "c", 0, 0},
    {OP_RENAME, "c", "a", 0, 0},
    {OP_UNLINK, "c", "", 0, 0},
    {OP_RMDIR, "a", "", 0, 0},
    {OP_MKDIR, "a/x", "", 0, 0},
    {OP_CREATE, "b/x", "", 1, 3},
    {OP_SYMLINK, "e", "c", 0, 0},
    {OP_LINK, "e", "f", 0, 0}, /* a hard link to the symlink itself */
    {OP_RENAME, "e", "c/d/e", 0, 0},
    {OP_RENAME, "c/d", "g", 0, 0},
    {OP_MKDIR, "c/d", "", 0, 0},
    {OP_RENAME, "g", "c/d", 0, 0}, /* a directory over an empty one */
    {OP_RENAME, "f", "a", 0, 0},   /* a symlink over a file */
    {OP_RMDIR, "c", "", 0, 0},
};

static void ns_check_step(const char *mroot, const char *lroot, const struct ns_step *st,
                          uint64_t seed, int step, int *el)
{
    int em;
    *el = ns_apply(lroot, st);
    em = ns_apply(mroot, st);
    if (em != *el) {
        fail_msg("seed %llu, step %d: %s %s %s: mount says %s, local says %s",
                 (unsigned long long)seed, step, op_names[st->op], st->a, st->b,
                 em != 0 ? strerror(em) : "ok", *el != 0 ? strerror(*el) : "ok");
    }
}

static void test_random_namespace_ops_match_local_directory(void **state)
{
    enum { STEPS = FS_FAULTS_STEPS, CHECK_EVERY = 500, MAX_ENTS = 400 };
    struct fixture *f = *state;
    char mroot[400], lroot[400], errmsg[RFS_ERRMSG_SIZE];
    const char *env = getenv("RAFTFS_SEED");
    uint64_t seed, x;
    struct ns_entry *ents = calloc(MAX_ENTS, sizeof *ents);
    unsigned failed[OP_N] = {0}, done[OP_N] = {0};
    int64_t t0 = proc_now_ms(), deadline = t0 + (int64_t)FS_FAULTS_SECONDS * 1000;
    int steps = 0;
    SKIP_IF_NEEDED(f);
    assert_non_null(ents);
    seed = env != NULL ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    seed = seed == 0 ? 1 : seed;
    printf("test_random_namespace_ops_match_local_directory: seed %llu (RAFTFS_SEED=%llu "
           "replays)\n",
           (unsigned long long)seed, (unsigned long long)seed);
    x = seed;
    snprintf(mroot, sizeof mroot, "%s/ns", f->mnt);
    snprintf(lroot, sizeof lroot, "%s/local-ns", f->dir);
    assert_int_equal(mkdir(mroot, 0755), 0);
    assert_int_equal(mkdir(lroot, 0755), 0);
    for (size_t i = 0; i < sizeof edge_steps / sizeof edge_steps[0]; i++) {
        int el;
        ns_check_step(mroot, lroot, &edge_steps[i], seed, -(int)i - 1, &el);
    }
    compare_trees(mroot, lroot, seed, 0);
    for (int step = 1; step <= STEPS; step++) {
        struct ns_step st;
        size_t n = 0;
        int el;
        collect_paths(lroot, "", ents, &n, MAX_ENTS);
        ns_pick(&x, ents, n, &st);
        ns_check_step(mroot, lroot, &st, seed, step, &el);
        done[st.op]++;
        failed[st.op] += el != 0;
        steps = step;
        if (step % CHECK_EVERY == 0) {
            compare_trees(mroot, lroot, seed, step);
        }
        if (proc_now_ms() > deadline) {
            printf("  stopped by the time bound (%d s)\n", FS_FAULTS_SECONDS);
            break;
        }
    }
    compare_trees(mroot, lroot, seed, steps);
    printf("  %d random steps in %.1f s\n", steps, (double)(proc_now_ms() - t0) / 1000.0);
    /* The same tree from a new daemon (nothing cached in the kernel or the old daemon). */
    assert_int_equal(mount_helper_stop(f->mnt, &f->pid), 0);
    if (mount_helper_start(f->bin, f->s.meta.group, f->mnt, f->log, &f->pid, errmsg) != 0) {
        mount_helper_dump_log(f->log);
        fail_msg("remount: %s", errmsg);
    }
    compare_trees(mroot, lroot, seed, steps);
    for (int i = 0; i < OP_N; i++) {
        printf("  %-8s %5u steps, %5u refused alike\n", op_names[i], done[i], failed[i]);
    }
    free(ents);
}

/* ---- 2. kill -9 the mount daemon in the middle of writing ---- */

/* The writer (a forked child, no cmocka): small files, then one larger file in 64 KiB pieces,
 * then more small files; one byte on the pipe after each file closed and each piece written.
 * Exits at the first error (the mount goes away under it). */
static void writer_run(const char *dir, int out)
{
    static char chunk[65536];
    char path[600], small[300];
    for (size_t i = 0; i < sizeof chunk; i++) {
        chunk[i] = (char)('A' + i % 23);
    }
    for (int i = 0; i < 400; i++) {
        int fd, len;
        if (i == 40) {
            snprintf(path, sizeof path, "%s/large", dir);
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0) {
                _exit(1);
            }
            for (int k = 0; k < 128; k++) {
                if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk ||
                    write(out, "L", 1) != 1) {
                    _exit(1);
                }
            }
            if (close(fd) != 0) {
                _exit(1);
            }
        }
        snprintf(path, sizeof path, "%s/small-%03d", dir, i);
        len = snprintf(small, sizeof small, "small file %d\n", i);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || write(fd, small, (size_t)len) != len || close(fd) != 0 ||
            write(out, "S", 1) != 1) {
            _exit(1);
        }
    }
    _exit(0);
}

/* The metadata churner (a forked child, no cmocka): directories made in a/, moved to b/ (a
 * transaction across groups), a file made in each and moved back to a/, every other one
 * removed; so the daemon dies in the middle of cross-group transactions too. Exits at the
 * first error. */
static void churn_run(const char *dir)
{
    char a[600], b[600], p[700], q[700];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    for (int i = 0; i < 5000; i++) {
        int fd;
        snprintf(p, sizeof p, "%s/d%d", a, i);
        snprintf(q, sizeof q, "%s/d%d", b, i);
        if (mkdir(p, 0755) != 0 || rename(p, q) != 0) {
            _exit(1);
        }
        snprintf(p, sizeof p, "%s/d%d/f", b, i);
        fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || close(fd) != 0) {
            _exit(1);
        }
        snprintf(q, sizeof q, "%s/f%d", a, i);
        if (rename(p, q) != 0) {
            _exit(1);
        }
        if (i % 2 == 1) {
            snprintf(p, sizeof p, "%s/d%d", b, i);
            if (unlink(q) != 0 || rmdir(p) != 0) {
                _exit(1);
            }
        }
    }
    _exit(0);
}

static void test_kill_mount_daemon_mid_write_then_remount(void **state)
{
    struct fixture *f = *state;
    char wdir[400], cdir[400], path[600], cmd[1000], buf[300], errmsg[RFS_ERRMSG_SIZE];
    int fds[2], small_done = 0, large_pieces = 0, st;
    long long deadline;
    char c;
    SKIP_IF_NEEDED(f);
    snprintf(wdir, sizeof wdir, "%s/w", f->mnt);
    assert_int_equal(mkdir(wdir, 0755), 0);
    snprintf(cdir, sizeof cdir, "%s/churn", f->mnt);
    assert_int_equal(mkdir(cdir, 0755), 0);
    snprintf(path, sizeof path, "%s/a", cdir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/b", cdir);
    assert_int_equal(mkdir(path, 0755), 0);
    fflush(NULL);
    f->churner = fork();
    assert_true(f->churner >= 0);
    if (f->churner == 0) {
        churn_run(cdir);
    }
    assert_int_equal(pipe(fds), 0);
    f->child = fork();
    assert_true(f->child >= 0);
    if (f->child == 0) {
        close(fds[0]);
        writer_run(wdir, fds[1]);
    }
    close(fds[1]);
    /* Kill the daemon half way through the larger file. */
    deadline = proc_now_ms() + 60000;
    while (large_pieces < 50 && proc_now_ms() < deadline) {
        int ready = poll(&(struct pollfd){.fd = fds[0], .events = POLLIN}, 1, 1000);
        if (ready == 0) {
            continue;
        }
        if (ready < 0 || read(fds[0], &c, 1) != 1) {
            break;
        }
        if (c == 'S') {
            small_done++;
        } else {
            large_pieces++;
        }
    }
    assert_int_equal(small_done, 40);
    assert_int_equal(large_pieces, 50);
    assert_int_equal(proc_kill(f->pid, SIGKILL), 0);
    st = proc_wait(f->pid, STOP_WAIT_MS);
    f->pid = 0;
    assert_int_equal(st, 128 + SIGKILL);
    /* The writer fails (the connection is gone) and exits. */
    st = proc_wait(f->child, 30000);
    f->child = 0;
    while (read(fds[0], &c, 1) == 1) {
        small_done += c == 'S';
    }
    close(fds[0]);
    printf("writer: %d small files closed before the kill, exit status %d\n", small_done, st);
    assert_int_not_equal(st, -2);
    st = proc_wait(f->churner, 30000);
    f->churner = 0;
    printf("churner: exit status %d\n", st);
    assert_int_equal(st, 1); /* it was still running */
    mount_helper_force_unmount(f->mnt);
    assert_false(mount_helper_is_mount_point(f->mnt));

    if (mount_helper_start(f->bin, f->s.meta.group, f->mnt, f->log, &f->pid, errmsg) != 0) {
        mount_helper_dump_log(f->log);
        fail_msg("remount: %s", errmsg);
    }
    assert_consistent(f->mnt, "after kill -9 of raftfs-mount and a remount");
    /* Every small file whose close() returned is there with its content. */
    for (int i = 0; i < small_done; i++) {
        int fd, len;
        ssize_t r;
        char want[300];
        snprintf(path, sizeof path, "%s/small-%03d", wdir, i);
        len = snprintf(want, sizeof want, "small file %d\n", i);
        fd = open(path, O_RDONLY);
        if (fd < 0) {
            fail_msg("%s was closed before the kill but is gone: %s", path, strerror(errno));
        }
        r = read(fd, buf, sizeof buf);
        close(fd);
        assert_int_equal(r, len);
        assert_memory_equal(buf, want, (size_t)len);
    }
    /* The namespace still takes changes, everywhere the churner worked too: nothing is left
     * locked by a transaction the dead daemon had begun. */
    snprintf(path, sizeof path, "%s/after", wdir);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(rmdir(path), 0);
    snprintf(path, sizeof path, "%s/rm.log", f->dir);
    snprintf(cmd, sizeof cmd, "rm -r '%s'", cdir);
    st = run_sh_log(cmd, path, 60000);
    if (st != 0) {
        mount_helper_dump_log(path);
        fail_msg("rm -r of the churned tree after the remount: exit status %d", st);
    }
    assert_int_equal(access(cdir, F_OK), -1);
}

/* ---- 3. kill -9 a shard leader during cp -r ---- */

static void test_kill_shard_leader_during_cp(void **state)
{
    struct fixture *f = *state;
    char src[1100], dst[400], cplog[400], cmd[4096], difflog[400], errmsg[RFS_ERRMSG_SIZE];
    struct count_arg ca;
    int leader, st, newleader;
    SKIP_IF_NEEDED(f);
    if (!source_tree(f, src, sizeof src)) {
        skip();
    }
    snprintf(dst, sizeof dst, "%s/copy", f->mnt);
    snprintf(cplog, sizeof cplog, "%s/cp.log", f->dir);
    cp_start(f, src, dst, cplog);
    /* Group 1's leader once kv/ is copied, group 2's once raft/ is; each killed server is
     * restarted as soon as its group has a new leader. */
    ca.dir = dst;
    for (unsigned g = 0; g < 2; g++) {
        ca.want = 2 + 2 * g;
        (void)wait_until(dir_has_entries, &ca, 30000);
        if (!proc_alive(f->child)) {
            if (g == 0) {
                fail_msg("the copy ended before the kill: make it larger");
            }
            printf("the copy ended before the kill in group %u\n", g + 1);
            break;
        }
        leader = cluster_wait_leader(&f->s.g[g], 10000);
        assert_true(leader >= 0);
        printf("kill -9 of group %u's leader (server %d) during cp -r\n", g + 1, leader);
        f->s.down[g] = true;
        cluster_signal(&f->s.g[g], (unsigned)leader, SIGKILL);
        newleader = cluster_wait_leader(&f->s.g[g], 15000);
        assert_true(newleader >= 0);
        assert_int_not_equal(newleader, leader);
        if (cluster_start_server(&f->s.g[g], (unsigned)leader, errmsg) != 0) {
            fail_msg("restart: %s", errmsg);
        }
        f->s.down[g] = false;
    }
    st = proc_wait(f->child, CP_WAIT_MS);
    if (st == -2) {
        proc_stop(f->child, STOP_WAIT_MS);
        f->child = 0;
        fail_msg("cp -r still runs after %d ms", CP_WAIT_MS);
    }
    f->child = 0;
    if (st == 0) {
        printf("the copy finished; diff -r of the copy\n");
        snprintf(difflog, sizeof difflog, "%s/diff.log", f->dir);
        snprintf(cmd, sizeof cmd, "diff -r '%s' '%s'", src, dst);
        if (run_sh_log(cmd, difflog, 60000) != 0) {
            mount_helper_dump_log(difflog);
            fail_msg("diff -r after the copy finished is not clean");
        }
    } else {
        printf("the copy failed (exit status %d): checking the tree\n", st);
        mount_helper_dump_log(cplog);
        assert_consistent(dst, "after a failed copy");
    }
    assert_consistent(f->mnt, "after kill -9 of a shard leader during cp -r");
    assert_int_equal(cluster_sanitizer_errors(&f->s.g[0]), 0);
    assert_int_equal(cluster_sanitizer_errors(&f->s.g[1]), 0);
}

/* ---- 4. buckets moved back and forth during cp -r ---- */

static void test_move_buckets_during_cp(void **state)
{
    struct fixture *f = *state;
    char src[1100], dst[400], cplog[400], cmd[4096], difflog[400], errmsg[RFS_ERRMSG_SIZE];
    int moves = 0, st;
    long long deadline;
    SKIP_IF_NEEDED(f);
    if (!source_tree(f, src, sizeof src)) {
        skip();
    }
    snprintf(dst, sizeof dst, "%s/copy", f->mnt);
    snprintf(cplog, sizeof cplog, "%s/cp.log", f->dir);
    cp_start(f, src, dst, cplog);
    deadline = proc_now_ms() + CP_WAIT_MS;
    /* Everything to group 2, then to group 1, then halves crossed, while the copy runs. */
    while (proc_alive(f->child) && moves < 12 && proc_now_ms() < deadline) {
        uint32_t first = 0, last = NBUCKETS - 1;
        uint64_t gid = moves % 2 == 0 ? 2 : 1;
        if (moves % 4 >= 2) {
            first = moves % 4 == 2 ? 0 : NBUCKETS / 2;
            last = first + NBUCKETS / 2 - 1;
        }
        if (sharded_move(&f->s, first, last, gid, errmsg) != 0) {
            fail_msg("move %u-%u to %llu: %s", first, last, (unsigned long long)gid, errmsg);
        }
        if (sharded_wait_settled(&f->s, 30000, errmsg) != 0) {
            fail_msg("settle: %s", errmsg);
        }
        moves++;
    }
    st = proc_wait(f->child,
                   (int)(deadline - proc_now_ms() > 1000 ? deadline - proc_now_ms() : 1000));
    if (st == -2) {
        proc_stop(f->child, STOP_WAIT_MS);
        f->child = 0;
        fail_msg("cp -r still runs after %d ms", CP_WAIT_MS);
    }
    f->child = 0;
    printf("%d bucket moves during cp -r; cp exit status %d\n", moves, st);
    if (st != 0) {
        mount_helper_dump_log(cplog);
    }
    assert_int_equal(st, 0);
    assert_true(moves > 0);
    snprintf(difflog, sizeof difflog, "%s/diff.log", f->dir);
    snprintf(cmd, sizeof cmd, "diff -r '%s' '%s'", src, dst);
    if (run_sh_log(cmd, difflog, 60000) != 0) {
        mount_helper_dump_log(difflog);
        fail_msg("diff -r after the copy is not clean");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_namespace_ops_match_local_directory,
                                        setup_single, teardown),
        cmocka_unit_test_setup_teardown(test_kill_mount_daemon_mid_write_then_remount, setup_single,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kill_shard_leader_during_cp, setup_triple, teardown),
        cmocka_unit_test_setup_teardown(test_move_buckets_during_cp, setup_single, teardown),
    };
    rfs_log_set_level(RFS_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
