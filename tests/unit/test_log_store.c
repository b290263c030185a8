/* Tests of the durable Raft log store (raft/log_store.h): round trips, segments,
 * snapshots, recovery from torn and corrupt files, and the fsync gate under injected I/O
 * failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "raft/log_store.h"

/* --- a fault-injecting I/O table that can also simulate a power loss --- */

enum fault_op {
    OP_OPEN_CREATE, /* open with O_CREAT */
    OP_PWRITE,
    OP_SYNC, /* fsync or fdatasync */
    OP_FTRUNCATE,
    OP_RENAME,
    OP_UNLINK,
    OP_COUNT,
    OP_ANY = OP_COUNT, /* any of the above */
    OP_NONE,
};

#define FAULT_MAX_FD    1024
#define FAULT_MAX_FILES 64

struct fault_file {
    char path[PATH_MAX];
    off_t durable; /* size at the last successful sync: what survives a power loss */
};

struct fault {
    int op;       /* enum fault_op that fails, OP_NONE for none */
    unsigned nth; /* which call of that kind fails, counted from arming (1-based) */
    int err;      /* errno to fail with; 0 makes a pwrite short instead */
    unsigned calls;
    unsigned failures;
    unsigned total_writes; /* mutating calls seen since arming, whether failed or not */
    char fd_path[FAULT_MAX_FD][PATH_MAX];
    struct fault_file files[FAULT_MAX_FILES];
    unsigned n_files;
};

static void fault_arm(struct fault *f, int op, unsigned nth, int err)
{
    f->op = op;
    f->nth = nth;
    f->err = err;
    f->calls = 0;
    f->failures = 0;
    f->total_writes = 0;
}

/* Whether this call of kind op fails. */
static bool fault_hit(struct fault *f, int op)
{
    f->total_writes++;
    if (f->op == OP_NONE || (f->op != OP_ANY && f->op != op)) {
        return false;
    }
    if (++f->calls != f->nth) {
        return false;
    }
    f->failures++;
    return true;
}

static struct fault_file *fault_file(struct fault *f, const char *path)
{
    for (unsigned i = 0; i < f->n_files; i++) {
        if (strcmp(f->files[i].path, path) == 0) {
            return &f->files[i];
        }
    }
    return NULL;
}

static int fault_open(void *data, const char *path, int flags, mode_t mode)
{
    struct fault *f = data;
    struct stat sb;
    int fd;
    if ((flags & O_CREAT) && fault_hit(f, OP_OPEN_CREATE)) {
        errno = f->err != 0 ? f->err : EIO;
        return -1;
    }
    fd = open(path, flags, mode);
    if (fd < 0) {
        return -1;
    }
    assert_true(fd < FAULT_MAX_FD);
    snprintf(f->fd_path[fd], PATH_MAX, "%s", path);
    if (fault_file(f, path) == NULL && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        assert_true(f->n_files < FAULT_MAX_FILES);
        snprintf(f->files[f->n_files].path, PATH_MAX, "%s", path);
        /* What exists before we first see it counts as durable. */
        f->files[f->n_files].durable = (flags & O_TRUNC) ? 0 : sb.st_size;
        f->n_files++;
    }
    return fd;
}

static ssize_t fault_pwrite(void *data, int fd, const void *buf, size_t len, off_t off)
{
    struct fault *f = data;
    if (fault_hit(f, OP_PWRITE)) {
        if (f->err == 0) {
            return pwrite(fd, buf, len / 2, off); /* short write */
        }
        errno = f->err;
        return -1;
    }
    return pwrite(fd, buf, len, off);
}

static ssize_t fault_pread(void *data, int fd, void *buf, size_t len, off_t off)
{
    (void)data;
    return pread(fd, buf, len, off);
}

static int fault_sync(struct fault *f, int fd, bool data_only)
{
    struct fault_file *ff;
    struct stat sb;
    if (fault_hit(f, OP_SYNC)) {
        errno = f->err != 0 ? f->err : EIO;
        return -1;
    }
    if ((data_only ? fdatasync(fd) : fsync(fd)) != 0) {
        return -1;
    }
    ff = fault_file(f, f->fd_path[fd]);
    if (ff != NULL && fstat(fd, &sb) == 0) {
        ff->durable = sb.st_size;
    }
    return 0;
}

static int fault_fsync(void *data, int fd)
{
    return fault_sync(data, fd, false);
}

static int fault_fdatasync(void *data, int fd)
{
    return fault_sync(data, fd, true);
}

static int fault_ftruncate(void *data, int fd, off_t len)
{
    struct fault *f = data;
    if (fault_hit(f, OP_FTRUNCATE)) {
        errno = f->err != 0 ? f->err : EIO;
        return -1;
    }
    return ftruncate(fd, len);
}

static int fault_rename(void *data, const char *from, const char *to)
{
    struct fault *f = data;
    struct fault_file *ff;
    if (fault_hit(f, OP_RENAME)) {
        errno = f->err != 0 ? f->err : EIO;
        return -1;
    }
    if (rename(from, to) != 0) {
        return -1;
    }
    ff = fault_file(f, to);
    if (ff != NULL) {
        ff->path[0] = '\0';
    }
    ff = fault_file(f, from);
    if (ff != NULL) {
        snprintf(ff->path, PATH_MAX, "%s", to);
    }
    return 0;
}

static int fault_unlink(void *data, const char *path)
{
    struct fault *f = data;
    struct fault_file *ff;
    if (fault_hit(f, OP_UNLINK)) {
        errno = f->err != 0 ? f->err : EIO;
        return -1;
    }
    if (unlink(path) != 0) {
        return -1;
    }
    ff = fault_file(f, path);
    if (ff != NULL) {
        ff->path[0] = '\0';
    }
    return 0;
}

static int fault_close(void *data, int fd)
{
    (void)data;
    return close(fd);
}

/* Power loss: every file loses what was written after its last successful sync. */
static void fault_crash(struct fault *f)
{
    for (unsigned i = 0; i < f->n_files; i++) {
        struct stat sb;
        if (f->files[i].path[0] != '\0' && stat(f->files[i].path, &sb) == 0 &&
            sb.st_size > f->files[i].durable) {
            assert_int_equal(truncate(f->files[i].path, f->files[i].durable), 0);
        }
    }
}

/* --- fixture --- */

struct fixture {
    char dir[64];
    struct fault fault;
    struct raft_store_io io;
    struct raft_store *s;
    char errmsg[RFS_ERRMSG_SIZE];
    size_t segment_bytes;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "/tmp/test_log_store.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    f->fault.op = OP_NONE;
    f->io = (struct raft_store_io){
        .data = &f->fault,
        .open = fault_open,
        .pwrite = fault_pwrite,
        .pread = fault_pread,
        .fsync = fault_fsync,
        .fdatasync = fault_fdatasync,
        .ftruncate = fault_ftruncate,
        .rename = fault_rename,
        .unlink = fault_unlink,
        .close = fault_close,
    };
    *state = f;
    return 0;
}

static void remove_files(const char *dir)
{
    char path[PATH_MAX];
    struct dirent *de;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    raft_store_close(f->s);
    remove_files(f->dir);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* --- helpers --- */

static void store_open(struct fixture *f)
{
    int rv;
    raft_store_close(f->s);
    f->s = NULL;
    rv = raft_store_open(&f->s, f->dir, &f->io, f->segment_bytes, f->errmsg);
    if (rv != 0) {
        fail_msg("raft_store_open: %d: %s", rv, f->errmsg);
    }
}

static int store_try_open(struct fixture *f)
{
    raft_store_close(f->s);
    f->s = NULL;
    f->errmsg[0] = '\0';
    return raft_store_open(&f->s, f->dir, &f->io, f->segment_bytes, f->errmsg);
}

static void store_reopen_after_crash(struct fixture *f)
{
    raft_store_close(f->s);
    f->s = NULL;
    f->fault.op = OP_NONE;
    fault_crash(&f->fault);
    store_open(f);
}

/* Entry contents are a function of index and term, so any entry can be checked. */
static size_t entry_data(char *buf, raft_index index, raft_term term)
{
    int n = snprintf(buf, 64, "entry %llu term %llu", (unsigned long long)index,
                     (unsigned long long)term);
    size_t pad = index % 5;
    memset(buf + n, 'x', pad);
    return (size_t)n + pad;
}

/* Append [first, last] with one term, in one call. */
static int append_range(struct fixture *f, raft_index first, raft_index last, raft_term term)
{
    unsigned n = (unsigned)(last - first + 1);
    struct raft_entry *e = calloc(n, sizeof *e);
    char(*bufs)[64] = calloc(n, 64);
    int rv;
    assert_non_null(e);
    assert_non_null(bufs);
    for (unsigned i = 0; i < n; i++) {
        e[i].index = first + i;
        e[i].term = term;
        e[i].type = RAFT_ENTRY_NORMAL;
        e[i].data.base = bufs[i];
        e[i].data.len = entry_data(bufs[i], first + i, term);
    }
    rv = raft_store_append(f->s, e, n, f->errmsg);
    free(bufs);
    free(e);
    return rv;
}

static void append_sync(struct fixture *f, raft_index first, raft_index last, raft_term term)
{
    assert_int_equal(append_range(f, first, last, term), 0);
    assert_int_equal(raft_store_sync(f->s, f->errmsg), 0);
}

static void set_hs(struct fixture *f, raft_term term, raft_id vote, raft_index commit)
{
    struct raft_hard_state hs = {.term = term, .vote = vote, .commit = commit};
    assert_int_equal(raft_store_set_hard_state(f->s, &hs, f->errmsg), 0);
}

static void load(struct fixture *f, struct raft_store_state *st)
{
    int rv = raft_store_load(f->s, st, f->errmsg);
    if (rv != 0) {
        fail_msg("raft_store_load: %d: %s", rv, f->errmsg);
    }
}

static void check_entry(const struct raft_entry *e, raft_index index, raft_term term)
{
    char buf[64];
    size_t len = entry_data(buf, index, term);
    assert_int_equal(e->index, index);
    assert_int_equal(e->term, term);
    assert_int_equal(e->type, RAFT_ENTRY_NORMAL);
    assert_int_equal(e->data.len, len);
    assert_memory_equal(e->data.base, buf, len);
}

/* The loaded entries are [first, last], all with `term`. */
static void check_range(const struct raft_store_state *st, raft_index first, raft_index last,
                        raft_term term)
{
    assert_int_equal(st->n_entries, last + 1 - first);
    for (raft_index i = first; i <= last; i++) {
        check_entry(&st->entries[i - first], i, term);
    }
}

static void seg_path(const struct fixture *f, uint64_t seq, char *out)
{
    snprintf(out, PATH_MAX, "%s/seg-%016llx", f->dir, (unsigned long long)seq);
}

static off_t file_size(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_size;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static unsigned char *file_read(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf;
    assert_non_null(fp);
    *size = (size_t)file_size(path);
    buf = malloc(*size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *size, fp), *size);
    fclose(fp);
    return buf;
}

static void file_write(const char *path, const unsigned char *buf, size_t size)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, size, fp), size);
    assert_int_equal(fclose(fp), 0);
}

static struct raft_snapshot make_snapshot(raft_index index, raft_term term, const char *data)
{
    struct raft_snapshot snap;
    memset(&snap, 0, sizeof snap);
    snap.meta.index = index;
    snap.meta.term = term;
    snap.meta.conf.n_voters = 3;
    snap.meta.conf.voters[0] = 1;
    snap.meta.conf.voters[1] = 2;
    snap.meta.conf.voters[2] = 3;
    snap.meta.conf.n_learners = 1;
    snap.meta.conf.learners[0] = 9;
    snap.data.base = (void *)data;
    snap.data.len = strlen(data);
    return snap;
}

/* --- basic behaviour --- */

static void test_empty_dir_loads_empty_state(void **state)
{
    struct fixture *f = *state;
    struct raft_store_state st;
    store_open(f);
    load(f, &st);
    assert_false(st.has_snapshot);
    assert_int_equal(st.n_entries, 0);
    assert_int_equal(st.hard_state.term, 0);
    assert_int_equal(st.hard_state.vote, 0);
    assert_int_equal(st.hard_state.commit, 0);
}

static void test_append_sync_reopen_returns_entries(void **state)
{
    struct fixture *f = *state;
    struct raft_store_state st;
    store_open(f);
    append_sync(f, 1, 5, 1);
    append_sync(f, 6, 6, 2);
    store_open(f);
    load(f, &st);
    assert_int_equal(st.n_entries, 6);
    for (raft_index i = 1; i <= 5; i++) {
        check_entry(&st.entries[i - 1], i, 1);
    }
    check_entry(&st.entries[5], 6, 2);
}

static void test_hard_state_survives_reopen(void **state)
{
    struct fixture *f = *state;
    struct raft_store_state st;
    store_open(f);
    set_hs(f, 3, 2, 0);
    assert_int_equal(raft_store_sync(f->s, f->errmsg), 0);
    append_range(f, 1, 2, 3);
    set_hs(f, 4, 1, 2);
    assert_int_equal(raft_store_sync(f->s, f->errmsg), 0);
    store_open(f);
    load(f, &st);
    assert_int_equal(st.hard_state.term, 4);
    assert_int_equal(st.hard_state.vote, 1);
    assert_int_equal(st.hard_state.commit, 2);
    check_range(&st, 1, 2, 3);
}

static void test_close_without_sync_drops_buffered_records(void **state)
{
    struct fixture *f = *state;
    struct raft_store_state st;
    store_open(f);
    append_sync(f, 1, 2, 1);
    assert_int_equal(append_range(f, 3, 4, 1), 0);
    set_hs(f, 5, 5, 5);
    store_open(f);
    load(f, &st);
    check_range(&st, 1, 2, 1);
    assert_int_equal(st.hard_state.term, 0);
}

static void test_load_after_append_includes_buffered_entries(void **state)
{
    struct fixture *f = *state;
    struct raft_store_state st;
    store_open(f);
    append_sync(f, 1, 3, 1);
    assert_int_equal(append_range(f, 2, 4, 2), 0);
    load(f, &st);
    check_entry(&st.entries[0], 1, 1);
    assert_int_equal(st.n_entries, 4);
    for (raft_index i = 2; i <= 4; i++) {
        check_entry(&st.entries[i - 1], i, 2);
    }
}

static void test_append_rejects_gaps_and_non_consecutive_indexes(void **state)
{
    struct fixture *f = *state;
    struct raft_entry e[2] = {{.term = 1, .index = 4}, {.term = 1, .index = 6}};
    struct raft_store_state st;
    store_open(f);
    assert_int_equal(append_range(f, 2, 3, 1), RFS_EINVAL); /* gap after 0 */
    assert_int_equal(append_range(f, 0, 0, 1), RFS_EINVAL); /* index 0 */
    append_sync(f, 1, 3, 1);
    assert_int_equal(append_range(f, 5, 6, 1), RFS_EINVAL);
    assert_non_null(strstr(f->errmsg, "gap"));
    assert_int_equal(raft_store_append(f->s, e, 2, f->errmsg), RFS_EINVAL);
    /* Rejections change nothing and do not poison the store. */
    append_sync(f, 4, 4, 1);
    store_open(f);
    load(f, &st);
    check_range(&st, 1, 4, 1);
}

static void test_overwrite_suffix_is_replayed(void **state)
{
    struct fixture *f = *state;
    struct raft_store_state st;
    store_open(f);
    append_sync(f, 1, 10, 1);
    append_sync(f, 6, 7, 2); /* replaces 6..10 with 6..7 */
    append_sync(f, 8, 8, 3);
    append_sync(f, 3, 3, 4); /* replaces 3..8 with 3 */
    append_sync(f, 4, 5, 4);
    store_open(f);
    load(f, &st);
    assert_int_equal(st.n_entries, 5);
    check_entry(&st.entries[0], 1, 1);
    check_entry(&st.entries[1], 2, 1);
    for (raft_index i = 3; i <= 5; i++) {
        check_entry(&st.entries[i - 1], i, 4);
    }
    /* The store knows the new last index: 6 follows, 7 would leave a gap. */
    assert_int_equal(append_range(f, 7, 7, 4), RFS_EINVAL);
    append_sync(f, 6, 6, 4);
}

static void test_segments_roll_over_and_reload(void **state)
{
    struct fixture *f = *state;
    struct raft_store_state st;
    char path[PATH_MAX];
    f->segment_bytes = 512;
    store_open(f);
    for (raft_index i = 1; i <= 100; i += 4) {
        append_range(f, i, i + 3, 1);
        set_hs(f, 1, 1, i);
        assert_int_equal(raft_store_sync(f->s, f->errmsg), 0);
    }
    seg_path(f, 1, path);
    assert_true(file_exists(path));
    assert_true(file_size(path) >= 512);
    seg_path(f, 5, path);
    assert_true(file_exists(path));
    store_open(f);
    load(f, &st);
    check_range(&st, 1, 100, 1);
    assert_int_equal(st.hard_state.commit, 97);
    /* Appending continues in the last segment and still rolls. */
    append_sync(f, 101, 140, 2);
    store_open(f);
    load(f, &st);
    assert_int_equal(st.n_entries, 140);
    check_entry(&st.entries[139], 140, 2);
}

static void test_snapshot_save_compacts_old_segments(void **state)
{
    struct fixture *f = *state;
    struct raft_snapshot snap = make_snapshot(60, 1, "state machine at 60");
    struct raft_store_state st;
    char path[PATH_MAX];
    f->segment_bytes = 512;
    store_open(f);
    set_hs(f, 1, 1, 0);
    for (raft_index i = 1; i <= 80; i += 4) {
        append_sync(f, i, i + 3, 1);
    }
    set_hs(f, 1, 1, 80);
    assert_int_equal(raft_store_sync(f->s, f->errmsg), 0);
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), 0);
    seg_path(f, 1, path);
    assert_false(file_exists(path)); /* all of its entries are <= 60 */
    store_open(f);
    load(f, &st);
    assert_true(st.has_snapshot);
    assert_int_equal(st.snapshot.meta.index, 60);
    assert_int_equal(st.snapshot.meta.term, 1);
    assert_int_equal(st.snapshot.meta.conf.n_voters, 3);
    assert_int_equal(st.snapshot.meta.conf.voters[2], 3);
    assert_int_equal(st.snapshot.meta.conf.n_learners, 1);
    assert_int_equal(st.snapshot.meta.conf.learners[0], 9);
    assert_int_equal(st.snapshot.data.len, strlen("state machine at 60"));
    assert_memory_equal(st.snapshot.data.base, "state machine at 60", st.snapshot.data.len);
    check_range(&st, 61, 80, 1);
    assert_int_equal(st.hard_state.commit, 80); /* survived the deletion of old segments */
    /* Entries at or below the snapshot are refused; the log goes on after it. */
    assert_int_equal(append_range(f, 60, 60, 1), RFS_EINVAL);
    append_sync(f, 81, 81, 2);
    /* A later snapshot past every entry compacts everything but the open segment. */
    snap = make_snapshot(81, 2, "at 81");
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), 0);
    store_open(f);
    load(f, &st);
    assert_int_equal(st.snapshot.meta.index, 81);
    assert_int_equal(st.n_entries, 0);
    assert_int_equal(st.hard_state.commit, 80);
    append_sync(f, 82, 82, 2);
    store_open(f);
    load(f, &st);
    check_range(&st, 82, 82, 2);
}

/* A snapshot that covers all of a large open segment (nothing written after it) gives its
 * space back at once: a new segment holding the hard state replaces it. */
/* A compaction point (the state machine holds the state) is saved without bytes, compacts
 * like any snapshot and comes back marked as such; a flag bit the store does not know is
 * refused as damage. */
static void test_snapshot_held_by_the_state_machine_saves_no_bytes(void **state)
{
    struct fixture *f = *state;
    struct raft_snapshot snap = make_snapshot(60, 1, "");
    struct raft_store_state st;
    char path[PATH_MAX];
    struct stat sb;
    unsigned char flags;
    int fd;
    snap.in_sm = true;
    f->segment_bytes = 512;
    store_open(f);
    set_hs(f, 1, 1, 0);
    for (raft_index i = 1; i <= 80; i += 4) {
        append_sync(f, i, i + 3, 1);
    }
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), 0);
    seg_path(f, 1, path);
    assert_false(file_exists(path));
    store_open(f);
    load(f, &st);
    assert_true(st.has_snapshot);
    assert_true(st.snapshot.in_sm);
    assert_int_equal(st.snapshot.meta.index, 60);
    assert_int_equal(st.snapshot.data.len, 0);
    check_range(&st, 61, 80, 1);
    snprintf(path, sizeof path, "%s/snapshot", f->dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size < 200); /* header and configuration only */

    /* Flip an unknown flag bit (and fix nothing else): the checksum catches it first, so
     * the store stops with a clear message either way. */
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &flags, 1, 20), 1);
    flags |= 2;
    assert_int_equal(pwrite(fd, &flags, 1, 20), 1);
    close(fd);
    assert_int_equal(store_try_open(f), RFS_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "snapshot"));
}

static void test_snapshot_covering_the_open_segment_drops_it(void **state)
{
    struct fixture *f = *state;
    struct raft_snapshot snap = make_snapshot(20, 1, "at 20");
    struct raft_store_state st;
    char path[PATH_MAX];
    f->segment_bytes = 1024;
    store_open(f);
    append_sync(f, 1, 20, 1); /* one segment, over a quarter full */
    set_hs(f, 1, 2, 20);
    assert_int_equal(raft_store_sync(f->s, f->errmsg), 0);
    seg_path(f, 1, path);
    assert_true(file_size(path) >= 256 && file_size(path) < 1024);
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), 0);
    assert_false(file_exists(path));
    seg_path(f, 2, path);
    assert_true(file_exists(path));
    assert_true(file_size(path) < 256);
    store_reopen_after_crash(f);
    load(f, &st);
    assert_int_equal(st.snapshot.meta.index, 20);
    assert_int_equal(st.n_entries, 0);
    assert_int_equal(st.hard_state.term, 1);
    assert_int_equal(st.hard_state.vote, 2);
    assert_int_equal(st.hard_state.commit, 20);
    append_sync(f, 21, 22, 1);
    store_open(f);
    load(f, &st);
    check_range(&st, 21, 22, 1);
}

static void test_snapshot_install_discards_mismatching_log(void **state)
{
    struct fixture *f = *state;
    struct raft_snapshot snap = make_snapshot(5, 3, "leader's state");
    struct raft_store_state st;
    store_open(f);
    append_sync(f, 1, 10, 2); /* entry 5 has term 2, the snapshot says 3 */
    set_hs(f, 3, 0, 0);
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), 0);
    load(f, &st);
    assert_int_equal(st.n_entries, 0);
    store_open(f);
    load(f, &st);
    assert_true(st.has_snapshot);
    assert_int_equal(st.snapshot.meta.index, 5);
    assert_int_equal(st.n_entries, 0);
    assert_int_equal(st.hard_state.term, 3);
    /* The log continues right after the snapshot. */
    assert_int_equal(append_range(f, 7, 7, 3), RFS_EINVAL);
    append_sync(f, 6, 8, 3);
    store_open(f);
    load(f, &st);
    check_range(&st, 6, 8, 3);
}

static void test_snapshot_install_past_log_end_discards_log(void **state)
{
    struct fixture *f = *state;
    struct raft_snapshot snap = make_snapshot(50, 4, "far ahead");
    struct raft_store_state st;
    store_open(f);
    append_sync(f, 1, 10, 1);
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), 0);
    append_sync(f, 51, 52, 4);
    store_open(f);
    load(f, &st);
    assert_int_equal(st.snapshot.meta.index, 50);
    check_range(&st, 51, 52, 4);
}

static void test_snapshot_save_rejects_older_snapshot(void **state)
{
    struct fixture *f = *state;
    struct raft_snapshot snap = make_snapshot(5, 1, "five");
    store_open(f);
    append_sync(f, 1, 10, 1);
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), 0);
    snap = make_snapshot(4, 1, "four");
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), RFS_EINVAL);
    snap = make_snapshot(0, 1, "zero");
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), RFS_EINVAL);
}

static void test_persist_ready_stores_snapshot_entries_and_hard_state(void **state)
{
    struct fixture *f = *state;
    struct raft_snapshot snap = make_snapshot(20, 2, "snap");
    struct raft_entry e[2];
    struct raft_ready rd;
    struct raft_store_state st;
    char b0[64], b1[64];
    store_open(f);
    append_sync(f, 1, 3, 1);
    memset(&rd, 0, sizeof rd);
    e[0] = (struct raft_entry){.term = 2, .index = 21, .data = {b0, entry_data(b0, 21, 2)}};
    e[1] = (struct raft_entry){.term = 2, .index = 22, .data = {b1, entry_data(b1, 22, 2)}};
    rd.snapshot = &snap;
    rd.entries = e;
    rd.n_entries = 2;
    rd.has_hard_state = true;
    rd.hard_state = (struct raft_hard_state){.term = 2, .vote = 7, .commit = 21};
    assert_int_equal(raft_store_persist_ready(f->s, &rd, f->errmsg), 0);
    store_open(f);
    load(f, &st);
    assert_int_equal(st.snapshot.meta.index, 20);
    check_range(&st, 21, 22, 2);
    assert_int_equal(st.hard_state.vote, 7);
    assert_int_equal(st.hard_state.commit, 21);
}

/* A batch that only raises the commit index is written but not synced: a killed process
 * (reopen without power loss) keeps it, a power cut may lose it; a batch with entries, a
 * term or a vote is synced. */
static void test_persist_ready_writes_a_commit_only_batch_without_sync(void **state)
{
    struct fixture *f = *state;
    struct raft_entry e;
    struct raft_ready rd;
    struct raft_store_state st;
    char b[64];
    store_open(f);
    memset(&rd, 0, sizeof rd);
    e = (struct raft_entry){.term = 2, .index = 1, .data = {b, entry_data(b, 1, 2)}};
    rd.entries = &e;
    rd.n_entries = 1;
    rd.has_hard_state = true;
    rd.hard_state = (struct raft_hard_state){.term = 2, .vote = 1, .commit = 0};
    assert_int_equal(raft_store_persist_ready(f->s, &rd, f->errmsg), 0);

    fault_arm(&f->fault, OP_NONE, 0, 0); /* count from here */
    memset(&rd, 0, sizeof rd);
    rd.has_hard_state = true;
    rd.hard_state = (struct raft_hard_state){.term = 2, .vote = 1, .commit = 1};
    assert_int_equal(raft_store_persist_ready(f->s, &rd, f->errmsg), 0);
    assert_int_equal(f->fault.total_writes, 1); /* one pwrite, no sync */
    store_open(f); /* the process was killed: the page cache keeps the record */
    load(f, &st);
    assert_int_equal(st.hard_state.commit, 1);
    check_range(&st, 1, 1, 2);

    rd.hard_state.commit = 2; /* the store does not check it against the log */
    assert_int_equal(raft_store_persist_ready(f->s, &rd, f->errmsg), 0);
    store_reopen_after_crash(f); /* a power cut: back to the last sync */
    load(f, &st);
    assert_int_equal(st.hard_state.term, 2);
    assert_int_equal(st.hard_state.vote, 1);
    assert_true(st.hard_state.commit <= 1);
    check_range(&st, 1, 1, 2);

    /* A new term is a promise: synced, so it survives the power cut. */
    rd.hard_state = (struct raft_hard_state){.term = 3, .vote = 0, .commit = 1};
    assert_int_equal(raft_store_persist_ready(f->s, &rd, f->errmsg), 0);
    store_reopen_after_crash(f);
    load(f, &st);
    assert_int_equal(st.hard_state.term, 3);
    assert_int_equal(st.hard_state.vote, 0);
}

static void test_second_open_of_same_dir_is_busy(void **state)
{
    struct fixture *f = *state;
    struct raft_store *other = NULL;
    store_open(f);
    assert_int_equal(raft_store_open(&other, f->dir, NULL, 0, f->errmsg), RFS_EBUSY);
    assert_null(other);
}

/* --- recovery --- */

/* Write entries 1..n, one per sync, after a hard state; offsets[i] is where the record of
 * entry i + 1 starts and offsets[n] the end of the segment. */
static void write_log(struct fixture *f, unsigned n, off_t *offsets)
{
    char path[PATH_MAX];
    seg_path(f, 1, path);
    store_open(f);
    set_hs(f, 1, 1, 0);
    assert_int_equal(raft_store_sync(f->s, f->errmsg), 0);
    for (unsigned i = 0; i < n; i++) {
        offsets[i] = file_size(path);
        append_sync(f, i + 1, i + 1, 1);
    }
    offsets[n] = file_size(path);
    raft_store_close(f->s);
    f->s = NULL;
}

static void test_recovery_truncates_torn_tail_at_every_offset(void **state)
{
    struct fixture *f = *state;
    enum { N = 8 };
    off_t offsets[N + 1];
    struct raft_store_state st;
    char path[PATH_MAX];
    unsigned char *orig;
    size_t size;

    write_log(f, N, offsets);
    seg_path(f, 1, path);
    orig = file_read(path, &size);
    assert_int_equal((off_t)size, offsets[N]);
    for (off_t len = offsets[N - 1]; len < offsets[N]; len++) {
        file_write(path, orig, (size_t)len);
        store_open(f);
        assert_int_equal(file_size(path), offsets[N - 1]); /* the torn bytes are gone */
        load(f, &st);
        check_range(&st, 1, N - 1, 1);
        assert_int_equal(st.hard_state.term, 1);
        append_sync(f, N, N, 2);
        store_open(f);
        load(f, &st);
        assert_int_equal(st.n_entries, N);
        check_entry(&st.entries[N - 1], N, 2);
        raft_store_close(f->s);
        f->s = NULL;
    }
    free(orig);
}

static void test_recovery_corrupt_last_record_at_every_offset(void **state)
{
    struct fixture *f = *state;
    enum { N = 8 };
    off_t offsets[N + 1];
    struct raft_store_state st;
    char path[PATH_MAX];
    unsigned char *orig;
    size_t size;

    unsigned dropped = 0, refused = 0;

    write_log(f, N, offsets);
    seg_path(f, 1, path);
    orig = file_read(path, &size);
    for (off_t at = offsets[N - 1]; at < offsets[N]; at++) {
        for (unsigned char flip = 0x01; flip != 0; flip <<= 1) {
            int rv;
            orig[at] ^= flip;
            file_write(path, orig, size);
            orig[at] ^= flip;
            rv = store_try_open(f);
            if (rv == RFS_ECORRUPT) {
                refused++;
                continue; /* refusing is safe too; never returning wrong data is the point */
            }
            assert_int_equal(rv, 0);
            load(f, &st);
            check_range(&st, 1, N - 1, 1);
            append_sync(f, N, N, 2);
            raft_store_close(f->s);
            f->s = NULL;
            dropped++;
        }
    }
    print_message("%u damaged tails dropped, %u refused\n", dropped, refused);
    assert_true(dropped > 0);
    free(orig);
}

static void test_recovery_treats_zeroed_tail_as_torn(void **state)
{
    struct fixture *f = *state;
    enum { N = 4 };
    off_t offsets[N + 1];
    struct raft_store_state st;
    char path[PATH_MAX];
    unsigned char *buf;
    size_t size;

    write_log(f, N, offsets);
    seg_path(f, 1, path);
    buf = file_read(path, &size);
    buf = realloc(buf, size + 4096);
    assert_non_null(buf);
    memset(buf + size, 0, 4096); /* as a preallocated or half-flushed file leaves it */
    file_write(path, buf, size + 4096);
    free(buf);
    store_open(f);
    assert_int_equal(file_size(path), offsets[N]);
    load(f, &st);
    check_range(&st, 1, N, 1);
}

static void test_recovery_refuses_corruption_in_middle(void **state)
{
    struct fixture *f = *state;
    enum { N = 8 };
    off_t offsets[N + 1];
    char path[PATH_MAX];
    char want[64];
    unsigned char *orig;
    size_t size;

    write_log(f, N, offsets);
    seg_path(f, 1, path);
    orig = file_read(path, &size);
    /* Every byte of the record of entry 4 (header included). */
    snprintf(want, sizeof want, "at offset %lld", (long long)offsets[3]);
    for (off_t at = offsets[3]; at < offsets[4]; at++) {
        orig[at] ^= 0x40;
        file_write(path, orig, size);
        orig[at] ^= 0x40;
        assert_int_equal(store_try_open(f), RFS_ECORRUPT);
        assert_null(f->s);
        assert_non_null(strstr(f->errmsg, "seg-0000000000000001"));
        if (strstr(f->errmsg, want) == NULL) {
            fail_msg("byte %lld: message \"%s\" lacks \"%s\"", (long long)at, f->errmsg, want);
        }
    }
    /* The file is left alone for an operator to inspect. */
    assert_int_equal(file_size(path), (off_t)size);
    free(orig);
}

static void test_recovery_refuses_corruption_in_sealed_segment(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];
    unsigned char *buf;
    size_t size;
    f->segment_bytes = 256;
    store_open(f);
    for (raft_index i = 1; i <= 40; i += 2) {
        append_sync(f, i, i + 1, 1);
    }
    raft_store_close(f->s);
    f->s = NULL;
    /* Damage the very last byte of the first (sealed) segment: a torn tail if it were
     * the last segment, corruption here. */
    seg_path(f, 1, path);
    buf = file_read(path, &size);
    buf[size - 1] ^= 0xff;
    file_write(path, buf, size);
    free(buf);
    assert_int_equal(store_try_open(f), RFS_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "seg-0000000000000001"));
    assert_non_null(strstr(f->errmsg, "not the last segment"));
}

static void test_recovery_refuses_missing_segments(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];
    f->segment_bytes = 256;
    store_open(f);
    for (raft_index i = 1; i <= 40; i += 2) {
        append_sync(f, i, i + 1, 1);
    }
    raft_store_close(f->s);
    f->s = NULL;
    /* A hole in the middle of the sequence... */
    seg_path(f, 2, path);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(store_try_open(f), RFS_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "missing"));
    /* ...and a missing start with no snapshot to cover it. */
    seg_path(f, 1, path);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(store_try_open(f), RFS_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "missing"));
}

static void test_recovery_refuses_corrupt_snapshot_file(void **state)
{
    struct fixture *f = *state;
    struct raft_snapshot snap = make_snapshot(3, 1, "snapshot bytes");
    char path[PATH_MAX];
    unsigned char *orig;
    size_t size;
    store_open(f);
    append_sync(f, 1, 5, 1);
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), 0);
    raft_store_close(f->s);
    f->s = NULL;
    snprintf(path, sizeof path, "%s/snapshot", f->dir);
    orig = file_read(path, &size);
    for (size_t at = 0; at < size; at++) {
        orig[at] ^= 0x10;
        file_write(path, orig, size);
        orig[at] ^= 0x10;
        assert_int_equal(store_try_open(f), RFS_ECORRUPT);
        assert_non_null(strstr(f->errmsg, "snapshot"));
    }
    file_write(path, orig, size - 1); /* truncated */
    assert_int_equal(store_try_open(f), RFS_ECORRUPT);
    free(orig);
}

/* --- I/O failures and the fsync gate --- */

/* Entries 1..3 are synced; then the armed fault hits while writing 4..5. Checks the
 * failing call's code and message, that every later call fails with "store failed
 * earlier", and that after a power loss only 1..3 come back. */
static void check_poisoned_after_failed_sync(struct fixture *f, int op, int err, int want_rv,
                                             const char *want_msg)
{
    struct raft_snapshot snap = make_snapshot(2, 1, "s");
    struct raft_hard_state hs = {.term = 9, .vote = 9, .commit = 9};
    struct raft_store_state st;
    store_open(f);
    append_sync(f, 1, 3, 1);
    fault_arm(&f->fault, op, 1, err);
    assert_int_equal(append_range(f, 4, 5, 1), 0);
    assert_int_equal(raft_store_sync(f->s, f->errmsg), want_rv);
    assert_int_equal(f->fault.failures, 1);
    if (strstr(f->errmsg, want_msg) == NULL) {
        fail_msg("message \"%s\" lacks \"%s\"", f->errmsg, want_msg);
    }
    assert_int_equal(raft_store_sync(f->s, f->errmsg), RFS_EIO);
    assert_non_null(strstr(f->errmsg, "store failed earlier: "));
    assert_non_null(strstr(f->errmsg, want_msg));
    assert_int_equal(append_range(f, 6, 6, 1), RFS_EIO);
    assert_int_equal(raft_store_set_hard_state(f->s, &hs, f->errmsg), RFS_EIO);
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), RFS_EIO);
    assert_int_equal(raft_store_load(f->s, &st, f->errmsg), RFS_EIO);
    assert_int_equal(f->fault.failures, 1); /* nothing was retried */
    store_reopen_after_crash(f);
    load(f, &st);
    check_range(&st, 1, 3, 1);
    append_sync(f, 4, 4, 2);
}

static void test_write_failure_poisons_store(void **state)
{
    check_poisoned_after_failed_sync(*state, OP_PWRITE, EIO, RFS_EIO, "Input/output error");
}

static void test_sync_failure_poisons_store(void **state)
{
    check_poisoned_after_failed_sync(*state, OP_SYNC, EIO, RFS_EIO, "fdatasync seg-");
}

static void test_enospc_is_reported_then_store_is_poisoned(void **state)
{
    check_poisoned_after_failed_sync(*state, OP_PWRITE, ENOSPC, RFS_ENOSPC,
                                     "No space left on device");
}

static void test_short_write_poisons_store_and_tail_is_recovered(void **state)
{
    struct fixture *f = *state;
    struct raft_store_state st;
    char path[PATH_MAX];
    off_t synced;
    store_open(f);
    append_sync(f, 1, 3, 1);
    seg_path(f, 1, path);
    synced = file_size(path);
    fault_arm(&f->fault, OP_PWRITE, 1, 0);
    append_range(f, 4, 9, 1);
    assert_int_equal(raft_store_sync(f->s, f->errmsg), RFS_EIO);
    assert_non_null(strstr(f->errmsg, "short write"));
    assert_int_equal(raft_store_sync(f->s, f->errmsg), RFS_EIO);
    assert_non_null(strstr(f->errmsg, "store failed earlier"));
    /* No power loss: the half-written batch is on disk, cut off as a torn tail or kept
     * as whole records, never returned damaged. */
    raft_store_close(f->s);
    f->s = NULL;
    f->fault.op = OP_NONE;
    assert_true(file_size(path) > synced);
    store_open(f);
    load(f, &st);
    assert_true(st.n_entries >= 3 && st.n_entries < 9);
    check_range(&st, 1, st.n_entries, 1);
    append_sync(f, st.n_entries + 1, 9, 2);
}

static void test_rename_failure_poisons_store(void **state)
{
    struct fixture *f = *state;
    struct raft_snapshot snap = make_snapshot(3, 1, "snap");
    struct raft_store_state st;
    char path[PATH_MAX];
    store_open(f);
    append_sync(f, 1, 5, 1);
    fault_arm(&f->fault, OP_RENAME, 1, EIO);
    assert_int_equal(raft_store_snapshot_save(f->s, &snap, f->errmsg), RFS_EIO);
    assert_non_null(strstr(f->errmsg, "rename"));
    assert_int_equal(append_range(f, 6, 6, 1), RFS_EIO);
    assert_non_null(strstr(f->errmsg, "store failed earlier: rename"));
    store_reopen_after_crash(f);
    snprintf(path, sizeof path, "%s/snapshot.tmp", f->dir);
    assert_false(file_exists(path));
    load(f, &st);
    assert_false(st.has_snapshot);
    check_range(&st, 1, 5, 1);
}

static void test_failure_while_starting_segment_poisons_store(void **state)
{
    struct fixture *f = *state;
    struct raft_store_state st;
    f->segment_bytes = 128;
    store_open(f);
    append_sync(f, 1, 4, 1); /* fills segment 1 */
    fault_arm(&f->fault, OP_OPEN_CREATE, 1, ENOSPC);
    append_range(f, 5, 6, 1);
    assert_int_equal(raft_store_sync(f->s, f->errmsg), RFS_ENOSPC);
    assert_non_null(strstr(f->errmsg, "create"));
    assert_int_equal(raft_store_sync(f->s, f->errmsg), RFS_EIO);
    store_reopen_after_crash(f);
    load(f, &st);
    check_range(&st, 1, 4, 1);
}

/* A model of what is durable: hard state, snapshot point, entries after it. */
struct model {
    struct raft_hard_state hs;
    raft_index snap;
    raft_term snap_term;
    raft_index last;
    raft_term terms[64]; /* by index */
};

static void model_check(const struct model *m, const struct raft_store_state *st)
{
    assert_int_equal(st->hard_state.term, m->hs.term);
    assert_int_equal(st->hard_state.vote, m->hs.vote);
    assert_int_equal(st->hard_state.commit, m->hs.commit);
    assert_int_equal(st->has_snapshot, m->snap > 0);
    if (m->snap > 0) {
        assert_int_equal(st->snapshot.meta.index, m->snap);
        assert_int_equal(st->snapshot.meta.term, m->snap_term);
    }
    assert_int_equal(st->n_entries, m->last - m->snap);
    for (raft_index i = m->snap + 1; i <= m->last; i++) {
        check_entry(&st->entries[i - m->snap - 1], i, m->terms[i]);
    }
}

static bool model_equal(const struct model *a, const struct model *b)
{
    if (memcmp(&a->hs, &b->hs, sizeof a->hs) != 0 || a->snap != b->snap ||
        a->snap_term != b->snap_term || a->last != b->last) {
        return false;
    }
    for (raft_index i = a->snap + 1; i <= a->last; i++) {
        if (a->terms[i] != b->terms[i]) {
            return false;
        }
    }
    return true;
}

static bool model_matches(const struct model *m, const struct raft_store_state *st)
{
    struct model got;
    memset(&got, 0, sizeof got);
    got.hs = st->hard_state;
    if (st->has_snapshot) {
        got.snap = st->snapshot.meta.index;
        got.snap_term = st->snapshot.meta.term;
    }
    got.last = got.snap + st->n_entries;
    if (got.last >= 64) {
        return false;
    }
    for (unsigned i = 0; i < st->n_entries; i++) {
        if (st->entries[i].index != got.snap + 1 + i) {
            return false;
        }
        got.terms[got.snap + 1 + i] = st->entries[i].term;
    }
    return model_equal(m, &got);
}

enum { SCENARIO_STEPS = 8 };

/* One durable step of a scenario that rolls segments, overwrites a suffix, compacts,
 * and installs a mismatching snapshot. Applies it to the store, and to *m (which then
 * describes the state if the step completes). Returns the store's code. */
static int scenario_step(struct fixture *f, int step, struct model *m)
{
    struct raft_snapshot snap;
    struct raft_hard_state hs;
    raft_index first, last;
    raft_term term;
    int rv;

    switch (step) {
        case 0:
            first = 1, last = 4, term = 1, hs = (struct raft_hard_state){1, 1, 2};
            break;
        case 1:
            first = 5, last = 9, term = 1, hs = (struct raft_hard_state){1, 1, 6};
            break;
        case 2:
            first = 7, last = 10, term = 2, hs = (struct raft_hard_state){2, 2, 7};
            break;
        case 3:
            snap = make_snapshot(8, 2, "at eight");
            m->snap = 8, m->snap_term = 2;
            return raft_store_snapshot_save(f->s, &snap, f->errmsg);
        case 4:
            first = 11, last = 16, term = 2, hs = (struct raft_hard_state){2, 2, 12};
            break;
        case 5:
            snap = make_snapshot(14, 3, "leader's at fourteen");
            m->snap = 14, m->snap_term = 3, m->last = 14;
            return raft_store_snapshot_save(f->s, &snap, f->errmsg);
        case 6:
            first = 15, last = 18, term = 3, hs = (struct raft_hard_state){3, 3, 16};
            break;
        default:
            first = 19, last = 20, term = 3, hs = (struct raft_hard_state){3, 3, 20};
            break;
    }
    for (raft_index i = first; i <= last; i++) {
        m->terms[i] = term;
    }
    m->last = last;
    m->hs = hs;
    rv = append_range(f, first, last, term);
    if (rv == 0) {
        rv = raft_store_set_hard_state(f->s, &hs, f->errmsg);
    }
    if (rv == 0) {
        rv = raft_store_sync(f->s, f->errmsg);
    }
    return rv;
}

/* Fail the kth mutating I/O call for every k (SQLite style), with an error and as a short
 * write: the failing step and every later one must fail, and after a power loss the store
 * must come back exactly as it was before the failing step, or after it. */
static void test_every_io_failure_point_keeps_synced_state(void **state)
{
    struct fixture *f = *state;
    unsigned total = 0;
    unsigned tried = 0;
    unsigned n_before = 0, n_after = 0;
    f->segment_bytes = 200;

    for (int pass = 0; pass < 2; pass++) {
        int err = pass == 0 ? EIO : 0;
        for (unsigned k = 1;; k++) {
            struct model before, after;
            struct raft_store_state st;
            int failed_step = -1;

            raft_store_close(f->s);
            f->s = NULL;
            remove_files(f->dir);
            memset(&f->fault, 0, sizeof f->fault);
            f->fault.op = OP_NONE;
            store_open(f);
            fault_arm(&f->fault, OP_ANY, k, err);
            memset(&after, 0, sizeof after);
            before = after;
            for (int step = 0; step < SCENARIO_STEPS; step++) {
                int rv;
                if (failed_step < 0) {
                    before = after;
                }
                rv = scenario_step(f, step, failed_step < 0 ? &after : &(struct model){0});
                if (failed_step >= 0) {
                    assert_int_equal(rv, RFS_EIO);
                    assert_non_null(strstr(f->errmsg, "store failed earlier"));
                } else if (rv != 0) {
                    assert_true(rv == RFS_EIO);
                    failed_step = step;
                }
            }
            if (f->fault.failures == 0) {
                total = f->fault.total_writes; /* every call, none failed */
                assert_int_equal(failed_step, -1);
                store_reopen_after_crash(f);
                load(f, &st);
                model_check(&after, &st);
                break;
            }
            assert_true(failed_step >= 0);
            tried++;
            store_reopen_after_crash(f);
            load(f, &st);
            if (model_matches(&before, &st)) {
                n_before++;
            } else if (model_matches(&after, &st)) {
                n_after++;
            } else {
                fail_msg("pass %d: failing I/O call %u (step %d): state after recovery is "
                         "neither the one before nor the one after the step",
                         pass, k, failed_step);
            }
        }
    }
    /* The scenario must exercise enough: rolls, compaction, a reset. */
    assert_true(total > 30);
    assert_int_equal(tried, 2 * total);
    assert_true(n_before > 0 && n_after > 0);
    print_message("%u failure points, %u recovered the state before the step, %u after\n", tried,
                  n_before, n_after);
}

/* Fail the kth allocation for every k: each call reports RFS_ENOMEM (or, after a step was
 * refused, RFS_EINVAL for the gap it leaves), nothing leaks or crashes, and the directory
 * still opens afterwards. */
static void test_every_allocation_failure_is_reported(void **state)
{
    struct fixture *f = *state;
    struct raft_store_state st;
    unsigned k;
    f->segment_bytes = 200;

    for (k = 1; k < 1000; k++) {
        bool all_ok = true;
        int rv;
        raft_store_close(f->s);
        f->s = NULL;
        remove_files(f->dir);
        rfs_alloc_fail_after(k, 0);
        rv = raft_store_open(&f->s, f->dir, &f->io, f->segment_bytes, f->errmsg);
        if (rv != 0) {
            assert_int_equal(rv, RFS_ENOMEM);
            assert_null(f->s);
            continue;
        }
        for (int step = 0; step < SCENARIO_STEPS; step++) {
            struct model ignored = {0};
            rv = scenario_step(f, step, &ignored);
            if (rv != 0) {
                assert_true(rv == RFS_ENOMEM || rv == RFS_EINVAL);
                all_ok = false;
            }
        }
        rv = raft_store_load(f->s, &st, f->errmsg);
        if (rv != 0) {
            assert_int_equal(rv, RFS_ENOMEM);
            all_ok = false;
        }
        rfs_alloc_fail_after(0, 0);
        store_open(f);
        load(f, &st);
        if (all_ok) {
            break;
        }
    }
    assert_true(k > 10 && k < 1000);
}

static void test_failed_repair_of_torn_tail_is_reported(void **state)
{
    struct fixture *f = *state;
    enum { N = 3 };
    off_t offsets[N + 1];
    struct raft_store_state st;
    char path[PATH_MAX];

    write_log(f, N, offsets);
    seg_path(f, 1, path);
    assert_int_equal(truncate(path, offsets[N] - 3), 0);
    fault_arm(&f->fault, OP_FTRUNCATE, 1, EIO);
    assert_int_equal(store_try_open(f), RFS_EIO);
    assert_non_null(strstr(f->errmsg, "truncate seg-0000000000000001"));
    f->fault.op = OP_NONE;
    store_open(f);
    load(f, &st);
    check_range(&st, 1, N - 1, 1);
}

int main(void)
{
    /* Recovery logs a warning for every torn tail these tests make on purpose. */
    rfs_log_set_level(RFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_dir_loads_empty_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_sync_reopen_returns_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hard_state_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_without_sync_drops_buffered_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_load_after_append_includes_buffered_entries, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_append_rejects_gaps_and_non_consecutive_indexes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_overwrite_suffix_is_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segments_roll_over_and_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_save_compacts_old_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_covering_the_open_segment_drops_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_install_discards_mismatching_log, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_install_past_log_end_discards_log, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_save_rejects_older_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_held_by_the_state_machine_saves_no_bytes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist_ready_writes_a_commit_only_batch_without_sync,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist_ready_stores_snapshot_entries_and_hard_state,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_of_same_dir_is_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_truncates_torn_tail_at_every_offset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_recovery_corrupt_last_record_at_every_offset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_recovery_treats_zeroed_tail_as_torn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_refuses_corruption_in_middle, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_recovery_refuses_corruption_in_sealed_segment, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_recovery_refuses_missing_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_refuses_corrupt_snapshot_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_write_failure_poisons_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_failure_poisons_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enospc_is_reported_then_store_is_poisoned, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_short_write_poisons_store_and_tail_is_recovered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rename_failure_poisons_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_while_starting_segment_poisons_store, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_every_io_failure_point_keeps_synced_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_every_allocation_failure_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_repair_of_torn_tail_is_reported, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
