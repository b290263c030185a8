/* File data over a real sharded cluster (a meta group and two shard groups), through the fs/
 * API without FUSE: reads and writes at odd offsets across block and stripe boundaries,
 * sparse files, truncate down and up, the open-file handle (buffered writes, O_APPEND,
 * appenders on several handles at once), the errors, a large file read back by checksum, and
 * a randomized exerciser checked against an in-memory model after every step
 * (RAFTFS_SEED=<n> replays a seed; a failure prints it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/crc32.h"
#include "common/log.h"
#include "fs/data.h"
#include "fs/file.h"
#include "fs/fs.h"
#include "fs/internal.h"
#include "fs/keys.h"
#include "fs_fixture.h"
#include "tests/lib/cluster.h"
#include "tests/lib/sharded.h"

#define B     ((uint64_t)FS_BLOCK_SIZE)
#define UNITS (FS_BLOCK_SIZE / 512)
#define MIB   (1u << 20)

static const struct rfs_cred root_cred = {.uid = 0, .gid = 0};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rnd(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void fill_random(uint64_t *s, void *buf, size_t len)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        p[i] = (unsigned char)(rnd(s) >> 56);
    }
}

static uint64_t create_file(struct fs_fixture *f, const char *name, uint32_t mode)
{
    struct rfs_attr a;
    assert_int_equal(rfs_fs_mknod(f->fs, FS_ROOT_INO, name, mode, 0, &root_cred, &a), 0);
    return a.ino;
}

static uint64_t size_of(struct fs_fixture *f, uint64_t ino)
{
    struct rfs_attr a;
    assert_int_equal(rfs_fs_getattr(f->fs, ino, &a), 0);
    return a.size;
}

/* Read [off, off + len) and compare with want (want_n bytes expected). */
static void expect_read(struct fs_fixture *f, uint64_t ino, uint64_t off, size_t len,
                        const unsigned char *want, size_t want_n)
{
    unsigned char *got = malloc(len ? len : 1);
    size_t n = 12345;
    assert_non_null(got);
    assert_int_equal(rfs_fs_read(f->fs, ino, off, len, got, &n), 0);
    assert_int_equal(n, want_n);
    assert_memory_equal(got, want, want_n);
    free(got);
}

/* Read [off, off + len) of a file whose bytes are model[0, size). */
static void expect_model(struct fs_fixture *f, uint64_t ino, uint64_t off, size_t len,
                         const unsigned char *model, uint64_t size)
{
    size_t want = off >= size ? 0 : (size_t)(size - off < len ? size - off : len);
    expect_read(f, ino, off, len, model + (off < size ? off : 0), want);
}

static void test_round_trips_across_blocks(void **state)
{
    struct fs_fixture *f = *state;
    static const struct {
        uint64_t off;
        size_t len;
    } cases[] = {
        {0, 1},
        {1, 10},
        {B - 3, 7},
        {B, B},
        {2 * B - 1, 2},
        {3, 3 * B + 17},
        {B / 2, B},
        {4 * B - 100, 100},
        {5 * B + 1, B - 2},
        {0, 5 * B + 3},
        {2 * B + 7, 13},
        {6 * B - 1, 1},
    };
    uint64_t seed = 11, size = 0;
    unsigned char *model = calloc(1, 8 * B), *data = malloc(8 * B);
    uint64_t ino;
    struct rfs_attr a;
    FS_SKIP_IF_NEEDED(f);
    ino = create_file(f, "roundtrip", S_IFREG | 0644);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t off = cases[i].off;
        size_t len = cases[i].len;
        fill_random(&seed, data, len);
        assert_int_equal(rfs_fs_write(f->fs, ino, off, data, len), 0);
        memcpy(model + off, data, len);
        if (off + len > size) {
            size = off + len;
        }
        assert_int_equal(size_of(f, ino), size);
        expect_read(f, ino, 0, (size_t)size, model, (size_t)size);
        /* an odd window, and one running past the end */
        expect_model(f, ino, off / 2 + 1, len, model, size);
        expect_model(f, ino, size > 5 ? size - 5 : 0, 100, model, size);
    }
    expect_read(f, ino, size, 10, model, 0);
    expect_read(f, ino, size + B, 10, model, 0);
    assert_int_equal(rfs_fs_getattr(f->fs, ino, &a), 0);
    assert_true(a.blocks > 0 && a.blocks <= (size + B - 1) / B * UNITS);
    assert_true(a.mtime_ns > 0 && a.ctime_ns == a.mtime_ns);
    free(model);
    free(data);
}

static void test_sparse_file_reads_zeros(void **state)
{
    struct fs_fixture *f = *state;
    size_t len = 10 * MIB + 5;
    unsigned char *want = calloc(1, len);
    struct rfs_attr a;
    uint64_t ino;
    FS_SKIP_IF_NEEDED(f);
    ino = create_file(f, "sparse", S_IFREG | 0644);
    memcpy(want + 10 * MIB, "tail!", 5);
    assert_int_equal(rfs_fs_write(f->fs, ino, 10 * MIB, "tail!", 5), 0);
    assert_int_equal(rfs_fs_getattr(f->fs, ino, &a), 0);
    assert_int_equal(a.size, len);
    /* one block written, one counted */
    assert_int_equal(a.blocks, UNITS);
    expect_read(f, ino, 0, len, want, len);
    expect_read(f, ino, 10 * MIB - 3, 100, want + 10 * MIB - 3, 8);
    expect_read(f, ino, 3 * MIB + 17, 2 * B, want, 2 * B);
    free(want);
}

static void test_truncate_shrinks_and_grows_with_zeros(void **state)
{
    struct fs_fixture *f = *state;
    uint64_t seed = 5;
    size_t len = 3 * B + 100;
    unsigned char *data = malloc(5 * B), *want = calloc(1, 5 * B);
    struct rfs_attr a, before;
    uint64_t ino;
    FS_SKIP_IF_NEEDED(f);
    ino = create_file(f, "trunc", S_IFREG | 0644);
    fill_random(&seed, data, len);
    assert_int_equal(rfs_fs_write(f->fs, ino, 0, data, len), 0);
    memcpy(want, data, len);

    assert_int_equal(rfs_fs_getattr(f->fs, ino, &before), 0);
    assert_int_equal(rfs_fs_truncate(f->fs, ino, B + 10), 0);
    assert_int_equal(rfs_fs_getattr(f->fs, ino, &a), 0);
    assert_int_equal(a.size, B + 10);
    assert_true(a.mtime_ns >= before.mtime_ns && a.ctime_ns >= before.ctime_ns);
    assert_true(a.blocks <= 2 * UNITS);
    memset(want + B + 10, 0, len - (B + 10));
    expect_read(f, ino, 0, 5 * B, want, B + 10);

    /* Grow: everything past the old end reads as zeros, in the cut block and past it. */
    assert_int_equal(rfs_fs_truncate(f->fs, ino, 4 * B), 0);
    assert_int_equal(size_of(f, ino), 4 * B);
    expect_read(f, ino, 0, 5 * B, want, 4 * B);
    /* the same size again changes no byte, but sets mtime and ctime (as truncate(2) on ext4,
     * and open(O_TRUNC) of an empty file) */
    assert_int_equal(rfs_fs_getattr(f->fs, ino, &before), 0);
    assert_int_equal(rfs_fs_truncate(f->fs, ino, 4 * B), 0);
    assert_int_equal(rfs_fs_getattr(f->fs, ino, &a), 0);
    assert_int_equal(a.size, 4 * B);
    assert_true(a.ctime_ns > before.ctime_ns && a.mtime_ns == a.ctime_ns);
    expect_read(f, ino, 0, 5 * B, want, 4 * B);

    /* A write past the end of the cut block leaves zeros before it. */
    assert_int_equal(rfs_fs_write(f->fs, ino, 3 * B + 5, "x", 1), 0);
    want[3 * B + 5] = 'x';
    expect_read(f, ino, 0, 5 * B, want, 4 * B);

    /* At a block boundary, then to zero, then up again. */
    assert_int_equal(rfs_fs_truncate(f->fs, ino, 2 * B), 0);
    assert_int_equal(rfs_fs_truncate(f->fs, ino, 4 * B), 0);
    memset(want + 2 * B, 0, 2 * B);
    expect_read(f, ino, 0, 4 * B, want, 4 * B);
    assert_int_equal(rfs_fs_truncate(f->fs, ino, 0), 0);
    assert_int_equal(rfs_fs_getattr(f->fs, ino, &a), 0);
    assert_int_equal(a.size, 0);
    assert_int_equal(a.blocks, 0);
    expect_read(f, ino, 0, B, want, 0);
    assert_int_equal(rfs_fs_truncate(f->fs, ino, B + 1), 0);
    memset(want, 0, 5 * B);
    expect_read(f, ino, 0, 5 * B, want, B + 1);
    free(data);
    free(want);
}

/* Keys stored in [lo, hi) of one bucket (at most 1000). */
static size_t keys_in(struct fs_fixture *f, const char *lo, size_t lolen, const char *hi,
                      size_t hilen)
{
    char errmsg[RFS_ERRMSG_SIZE];
    struct kv_scan_result res;
    size_t n;
    if (kv_client_scan(f->fs->kv, lo, lolen, hi, hilen, 1000, &res, errmsg) != 0) {
        fail_msg("scan: %s", errmsg);
    }
    n = res.n;
    kv_scan_result_clear(&res);
    return n;
}

/* Blocks of ino stored in [first, end), stripe by stripe (a stripe is one bucket). */
static size_t blocks_in(struct fs_fixture *f, uint64_t ino, uint64_t first, uint64_t end)
{
    size_t n = 0;
    for (uint64_t blk = first; blk < end;) {
        uint64_t stop = (blk / FS_STRIPE_BLOCKS + 1) * FS_STRIPE_BLOCKS;
        char lo[FS_KEY_MAX], hi[FS_KEY_MAX + 1];
        size_t lolen, hilen;
        stop = stop < end ? stop : end;
        lolen = fs_key_block(lo, ino, blk);
        hilen = fs_key_block(hi, ino, stop - 1);
        hi[hilen++] = '\0';
        n += keys_in(f, lo, lolen, hi, hilen);
        blk = stop;
    }
    return n;
}

static size_t reclaim_records(struct fs_fixture *f, uint64_t ino)
{
    char lo[FS_KEY_MAX], hi[FS_KEY_MAX];
    size_t lolen = fs_key_reclaim(lo, ino, 0), hilen = fs_key_reclaim(hi, ino + 1, 0);
    return keys_in(f, lo, lolen, hi, hilen);
}

/* A truncate whose process stops after the inode commit (fs_data_skip_truncate_cleanup) left
 * the data past the new size and a reclaim record; a collector pass deletes that data, cuts
 * the block holding the end, and drops the record, so that growing the file again reads
 * zeros, not the old bytes. A truncate that finishes leaves no record. */
static void test_interrupted_truncate_is_finished_by_the_collector(void **state)
{
    struct fs_fixture *f = *state;
    enum { NB = 40 }; /* three stripes */
    uint64_t seed = 11, ino;
    unsigned char *data = malloc(NB * B), *want = calloc(1, NB * B);
    FS_SKIP_IF_NEEDED(f);
    assert_non_null(data);
    assert_non_null(want);
    ino = create_file(f, "trunc-crash", S_IFREG | 0644);
    fill_random(&seed, data, NB * B);
    assert_int_equal(rfs_fs_write(f->fs, ino, 0, data, NB * B), 0);

    fs_data_skip_truncate_cleanup(f->fs, true);
    assert_int_equal(rfs_fs_truncate(f->fs, ino, B + 10), 0);
    fs_data_skip_truncate_cleanup(f->fs, false);
    assert_int_equal(size_of(f, ino), B + 10);
    assert_int_equal(blocks_in(f, ino, 2, NB), NB - 2);
    assert_int_equal(reclaim_records(f, ino), 1);

    assert_true(fs_fixture_collect(f) >= 1);
    assert_int_equal(blocks_in(f, ino, 2, NB), 0);
    assert_int_equal(reclaim_records(f, ino), 0);
    memcpy(want, data, B + 10);
    assert_int_equal(rfs_fs_truncate(f->fs, ino, NB * B), 0);
    expect_read(f, ino, 0, NB * B, want, NB * B);

    /* finished in the call: nothing left for the collector */
    assert_int_equal(rfs_fs_truncate(f->fs, ino, 3), 0);
    assert_int_equal(reclaim_records(f, ino), 0);
    assert_int_equal(blocks_in(f, ino, 1, NB), 0);
    free(data);
    free(want);
}

static void test_errors_and_limits(void **state)
{
    struct fs_fixture *f = *state;
    struct rfs_attr a;
    struct rfs_statfs st;
    struct rfs_file *h;
    char buf[16];
    size_t n;
    uint64_t ino, fifo, huge;
    FS_SKIP_IF_NEEDED(f);
    assert_int_equal(rfs_fs_mkdir(f->fs, FS_ROOT_INO, "errdir", 0755, &root_cred, &a), 0);
    assert_int_equal(rfs_fs_write(f->fs, a.ino, 0, "x", 1), -EISDIR);
    assert_int_equal(rfs_fs_read(f->fs, a.ino, 0, 1, buf, &n), -EISDIR);
    assert_int_equal(rfs_fs_truncate(f->fs, a.ino, 0), -EISDIR);
    fifo = create_file(f, "errfifo", S_IFIFO | 0644);
    assert_int_equal(rfs_fs_write(f->fs, fifo, 0, "x", 1), -EINVAL);
    assert_int_equal(rfs_fs_write(f->fs, a.ino | 0xfffff0, 0, "x", 1), -ENOENT);
    assert_int_equal(rfs_fs_read(f->fs, a.ino | 0xfffff0, 0, 1, buf, &n), -ENOENT);

    ino = create_file(f, "errfile", S_IFREG | 0644);
    assert_int_equal(rfs_fs_truncate(f->fs, ino, (1ull << 50) + 1), -EFBIG);
    assert_int_equal(rfs_fs_write(f->fs, ino, 1ull << 50, "x", 1), -EFBIG);
    assert_int_equal(rfs_fs_write(f->fs, ino, UINT64_MAX - 1, "xyz", 3), -EFBIG);
    assert_int_equal(rfs_fs_write(f->fs, ino, 7, "x", 0), 0);
    assert_int_equal(size_of(f, ino), 0);
    /* the largest size is allowed, and reads nothing but zeros */
    huge = create_file(f, "errhuge", S_IFREG | 0644);
    assert_int_equal(rfs_fs_truncate(f->fs, huge, 1ull << 50), 0);
    assert_int_equal(rfs_fs_read(f->fs, huge, (1ull << 50) - 4, 16, buf, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "\0\0\0\0", 4);

    h = rfs_file_open(f->fs, ino, O_RDONLY);
    assert_int_equal(rfs_file_write(h, 0, "x", 1), -EBADF);
    rfs_file_release(h);
    h = rfs_file_open(f->fs, ino, O_WRONLY);
    assert_int_equal(rfs_file_write(h, (1ull << 50) - 1, "xy", 2), -EFBIG);
    rfs_file_release(h);
    h = rfs_file_open(f->fs, a.ino, O_WRONLY);
    assert_int_equal(rfs_file_write(h, 0, "x", 1), 0); /* buffered */
    assert_int_equal(rfs_file_flush(h), -EISDIR);      /* reported once... */
    assert_int_equal(rfs_file_flush(h), 0);            /* ...and dropped */
    rfs_file_release(h);

    assert_int_equal(rfs_fs_statfs(f->fs, &st), 0);
    assert_true(st.blocks > 0 && st.bfree <= st.blocks);
    assert_true(st.files > 0 && st.ffree <= st.files);
}

static void test_append_handle_writes_at_the_end(void **state)
{
    struct fs_fixture *f = *state;
    struct rfs_file *h;
    uint64_t seed = 9, ino;
    unsigned char *big = malloc(3 * B), *want = malloc(4 * B);
    size_t n;
    FS_SKIP_IF_NEEDED(f);
    ino = create_file(f, "append", S_IFREG | 0644);
    assert_int_equal(rfs_fs_write(f->fs, ino, 0, "hello", 5), 0);
    h = rfs_file_open(f->fs, ino, O_WRONLY | O_APPEND);
    assert_non_null(h);
    assert_int_equal(rfs_file_write(h, 0, " world", 6), 0);
    assert_int_equal(rfs_file_write(h, 0, "!", 1), 0);
    /* buffered: nobody else sees it yet */
    assert_int_equal(size_of(f, ino), 5);
    assert_int_equal(rfs_file_flush(h), 0);
    expect_read(f, ino, 0, 100, (const unsigned char *)"hello world!", 12);

    /* Someone else extends the file: the next append goes after that. */
    assert_int_equal(rfs_fs_write(f->fs, ino, 12, "XYZ", 3), 0);
    assert_int_equal(rfs_file_write(h, 3, "++", 2), 0);
    assert_int_equal(rfs_file_flush(h), 0);
    expect_read(f, ino, 0, 100, (const unsigned char *)"hello world!XYZ++", 17);

    /* Across blocks: a partial last block is extended, then whole blocks follow. */
    memcpy(want, "hello world!XYZ++", 17);
    fill_random(&seed, big, 3 * B);
    assert_int_equal(rfs_file_write(h, 0, big, B), 0);
    assert_int_equal(rfs_file_write(h, 0, big + B, 2 * B - 9), 0);
    rfs_file_release(h);
    memcpy(want + 17, big, 3 * B - 9);
    expect_read(f, ino, 0, 4 * B, want, 17 + 3 * B - 9);

    /* An O_RDWR|O_APPEND handle reads what it appended. */
    h = rfs_file_open(f->fs, ino, O_RDWR | O_APPEND);
    assert_int_equal(rfs_file_write(h, 0, "END", 3), 0);
    memset(big, 0, 8);
    assert_int_equal(rfs_file_read(h, 17 + 3 * B - 9, 8, big, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(big, "END", 3);
    rfs_file_release(h);
    free(big);
    free(want);
}

#define APPENDERS      3
#define APPEND_RECORDS 24
#define RECORD         1000

struct appender {
    struct fs_fixture *f;
    uint64_t ino;
    unsigned id;
    int rv;
};

/* Records of RECORD bytes: id, sequence number, then the id repeated. Flushed every 1..3
 * records, so each flush appends several records at once. */
static void *appender_main(void *arg)
{
    struct appender *ap = arg;
    struct rfs_file *h = rfs_file_open(ap->f->fs, ap->ino, O_WRONLY | O_APPEND);
    unsigned char rec[RECORD];
    for (unsigned i = 0; i < APPEND_RECORDS && ap->rv == 0; i++) {
        memset(rec, (int)('A' + ap->id), sizeof rec);
        rec[1] = (unsigned char)i;
        ap->rv = rfs_file_write(h, 0, rec, sizeof rec);
        if (ap->rv == 0 && (i + ap->id) % 3 == 0) {
            ap->rv = rfs_file_flush(h);
        }
    }
    if (ap->rv == 0) {
        ap->rv = rfs_file_flush(h);
    }
    rfs_file_release(h);
    return NULL;
}

static void test_concurrent_appenders_never_overwrite(void **state)
{
    struct fs_fixture *f = *state;
    struct appender ap[APPENDERS];
    pthread_t t[APPENDERS];
    size_t total = APPENDERS * APPEND_RECORDS * RECORD, n;
    unsigned char *got = malloc(total + 1);
    unsigned next[APPENDERS] = {0};
    uint64_t ino;
    FS_SKIP_IF_NEEDED(f);
    ino = create_file(f, "appenders", S_IFREG | 0644);
    for (unsigned i = 0; i < APPENDERS; i++) {
        ap[i] = (struct appender){.f = f, .ino = ino, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, appender_main, &ap[i]), 0);
    }
    for (unsigned i = 0; i < APPENDERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(ap[i].rv, 0);
    }
    assert_int_equal(size_of(f, ino), total);
    assert_int_equal(rfs_fs_read(f->fs, ino, 0, total + 1, got, &n), 0);
    assert_int_equal(n, total);
    /* every record whole, each appender's in order */
    for (size_t r = 0; r < total / RECORD; r++) {
        unsigned char *rec = got + r * RECORD;
        unsigned id = (unsigned)(rec[0] - 'A');
        assert_true(id < APPENDERS);
        assert_int_equal(rec[1], next[id]);
        next[id]++;
        for (size_t k = 2; k < RECORD; k++) {
            assert_int_equal(rec[k], rec[0]);
        }
    }
    for (unsigned i = 0; i < APPENDERS; i++) {
        assert_int_equal(next[i], APPEND_RECORDS);
    }
    free(got);
}

#define PATCHERS     2
#define PATCHES      40
#define PATCH_BYTES  1500
#define PATCH_STRIDE (PATCHERS * PATCH_BYTES)

struct patcher {
    struct fs_fixture *f;
    uint64_t ino;
    unsigned id;
    int rv;
};

/* Writer id writes pieces id, id + PATCHERS, ... of PATCH_BYTES each: the other writer's
 * pieces share its blocks, so both patch the same blocks at once. */
static void *patcher_main(void *arg)
{
    struct patcher *p = arg;
    unsigned char piece[PATCH_BYTES];
    memset(piece, (int)('a' + p->id), sizeof piece);
    for (unsigned i = 0; i < PATCHES && p->rv == 0; i++) {
        uint64_t off = (uint64_t)i * PATCH_STRIDE + p->id * PATCH_BYTES + 7;
        p->rv = rfs_fs_write(p->f->fs, p->ino, off, piece, sizeof piece);
    }
    return NULL;
}

static void test_concurrent_writers_in_one_block_keep_both(void **state)
{
    struct fs_fixture *f = *state;
    struct patcher p[PATCHERS];
    pthread_t t[PATCHERS];
    size_t total = 7 + (size_t)PATCHES * PATCH_STRIDE, n;
    unsigned char *got = malloc(total);
    uint64_t ino;
    FS_SKIP_IF_NEEDED(f);
    ino = create_file(f, "patchers", S_IFREG | 0644);
    for (unsigned i = 0; i < PATCHERS; i++) {
        p[i] = (struct patcher){.f = f, .ino = ino, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, patcher_main, &p[i]), 0);
    }
    for (unsigned i = 0; i < PATCHERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(p[i].rv, 0);
    }
    assert_int_equal(size_of(f, ino), total);
    assert_int_equal(rfs_fs_read(f->fs, ino, 0, total, got, &n), 0);
    assert_int_equal(n, total);
    for (size_t k = 0; k < total; k++) {
        unsigned char want = k < 7 ? 0 : (unsigned char)('a' + (k - 7) / PATCH_BYTES % PATCHERS);
        if (got[k] != want) {
            fail_msg("byte %zu: %#x, want %#x", k, got[k], want);
        }
    }
    free(got);
}

static void test_buffered_writes_visible_after_flush(void **state)
{
    struct fs_fixture *f = *state;
    size_t chunk = 7000, count = 300, total = chunk * count, n;
    unsigned char *data = malloc(total), *got = malloc(total);
    uint64_t seed = 3, ino;
    struct rfs_file *h;
    FS_SKIP_IF_NEEDED(f);
    ino = create_file(f, "buffered", S_IFREG | 0644);
    fill_random(&seed, data, total);
    h = rfs_file_open(f->fs, ino, O_RDWR);
    assert_non_null(h);
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(rfs_file_write(h, i * chunk, data + i * chunk, chunk), 0);
    }
    /* Past the threshold whole blocks went out in the background, but the inode waits for a
     * sync point: no reader sees a size yet. */
    assert_int_equal(size_of(f, ino), 0);
    assert_int_equal(rfs_file_flush(h), 0);
    assert_int_equal(size_of(f, ino), total);
    expect_read(f, ino, 0, total, data, total);

    /* A write elsewhere hands the buffer on (a background write); a write inside it joins
     * it; one just before it hands it on too. */
    assert_int_equal(rfs_file_write(h, 100, "abc", 3), 0);
    assert_int_equal(rfs_file_write(h, 5000, "11111", 5), 0);
    memcpy(data + 100, "abc", 3);
    expect_read(f, ino, 5000, 5, data + 5000, 5); /* still in the handle */
    assert_int_equal(rfs_file_write(h, 5002, "22", 2), 0);
    assert_int_equal(rfs_file_write(h, 4998, "00", 2), 0);
    memcpy(data + 5000, "11221", 5);
    memcpy(data + 4998, "00", 2);
    /* The handle reads its own writes (a read is a sync point), and then so does anyone. */
    assert_int_equal(rfs_file_read(h, 4990, 20, got, &n), 0);
    assert_int_equal(n, 20);
    assert_memory_equal(got, data + 4990, 20);
    expect_read(f, ino, 100, 3, (const unsigned char *)"abc", 3);
    expect_read(f, ino, 4990, 20, data + 4990, 20);
    /* A write past the end, then a truncate through the handle, which flushes first. */
    assert_int_equal(rfs_file_write(h, total + 10, "zz", 2), 0);
    assert_int_equal(rfs_file_truncate(h, total + 11), 0);
    assert_int_equal(size_of(f, ino), total + 11);
    assert_int_equal(rfs_file_read(h, total - 2, 100, got, &n), 0);
    assert_int_equal(n, 13);
    assert_memory_equal(got, data + total - 2, 2);
    assert_memory_equal(got + 2, "\0\0\0\0\0\0\0\0\0\0z", 11);
    rfs_file_release(h);
    expect_read(f, ino, 0, total, data, total);
    free(data);
    free(got);
}

static void test_large_file_checksum(void **state)
{
    struct fs_fixture *f = *state;
    size_t total = 8 * MIB, chunk = 128 << 10, n;
    unsigned char *data = malloc(total), *got = malloc(total);
    uint64_t seed = 77, ino;
    uint32_t want, crc = 0;
    struct rfs_file *h;
    struct rfs_attr a;
    FS_SKIP_IF_NEEDED(f);
    ino = create_file(f, "large", S_IFREG | 0644);
    fill_random(&seed, data, total);
    want = rfs_crc32(0, data, total);
    h = rfs_file_open(f->fs, ino, O_WRONLY);
    for (size_t off = 0; off < total; off += chunk) {
        assert_int_equal(rfs_file_write(h, off, data + off, chunk), 0);
    }
    rfs_file_release(h);
    assert_int_equal(rfs_fs_getattr(f->fs, ino, &a), 0);
    assert_int_equal(a.size, total);
    assert_int_equal(a.blocks, total / B * UNITS);

    /* Through a handle in FUSE-sized pieces (4 KiB at first, through the block cache). */
    h = rfs_file_open(f->fs, ino, O_RDONLY);
    for (size_t off = 0; off < total;) {
        size_t step = off < 2 * B ? 4096 : chunk;
        assert_int_equal(rfs_file_read(h, off, step, got + off, &n), 0);
        assert_int_equal(n, step);
        crc = rfs_crc32(crc, got + off, n);
        off += n;
    }
    rfs_file_release(h);
    assert_int_equal(crc, want);
    assert_memory_equal(got, data, total);

    /* And in one read. */
    memset(got, 0, total);
    assert_int_equal(rfs_fs_read(f->fs, ino, 0, total, got, &n), 0);
    assert_int_equal(n, total);
    assert_int_equal(rfs_crc32(0, got, n), want);
    free(data);
    free(got);
}

/* ---- the randomized exerciser ---- */

/* The file's active window straddles the first stripe boundary (1 MiB). */
#define EX_BASE  (MIB - 3 * B)
#define EX_SPAN  (6 * B)
#define EX_MAX   (EX_BASE + EX_SPAN + 2 * B)
#define EX_STEPS 3000
#define EX_MS    25000

struct exerciser {
    struct fs_fixture *f;
    uint64_t seed0, seed, ino;
    unsigned step;
    struct rfs_file *h;   /* O_RDWR */
    struct rfs_file *app; /* O_WRONLY | O_APPEND */
    unsigned char *model; /* EX_MAX bytes, zeros past size */
    uint64_t size;
    unsigned char *data, *got;
    char what[160];
};

#define EX_CHECK(x, cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fail_msg("seed %llu, step %u (%s): %s (replay: RAFTFS_SEED=%llu)",                     \
                     (unsigned long long)(x)->seed0, (x)->step, (x)->what, #cond,                  \
                     (unsigned long long)(x)->seed0);                                              \
        }                                                                                          \
    } while (0)

/* An offset: mostly in the window, often near a block boundary. */
static uint64_t ex_off(struct exerciser *x)
{
    uint64_t r = rnd(&x->seed) % 100, off;
    if (r < 15) {
        off = rnd(&x->seed) % (EX_BASE + EX_SPAN);
    } else {
        off = EX_BASE + rnd(&x->seed) % EX_SPAN;
    }
    if (r % 3 == 0) {
        off = off / B * B + (rnd(&x->seed) % 7) - 3;
    }
    return off < EX_BASE + EX_SPAN ? off : EX_BASE + EX_SPAN - 1;
}

static size_t ex_len(struct exerciser *x, uint64_t off)
{
    uint64_t r = rnd(&x->seed) % 100;
    size_t len = r < 50   ? 1 + rnd(&x->seed) % 600
                 : r < 90 ? 1 + rnd(&x->seed) % B
                          : B + 1 + rnd(&x->seed) % B;
    if (off + len > EX_BASE + EX_SPAN) {
        len = (size_t)(EX_BASE + EX_SPAN - off);
    }
    return len;
}

static void ex_model_write(struct exerciser *x, uint64_t off, const unsigned char *p, size_t len)
{
    memcpy(x->model + off, p, len);
    if (off + len > x->size) {
        x->size = off + len;
    }
}

static void ex_model_truncate(struct exerciser *x, uint64_t size)
{
    if (size < x->size) {
        memset(x->model + size, 0, x->size - size);
    }
    x->size = size;
}

/* Compare [off, off + len) read through the handle (or directly after a flush). */
static void ex_check_range(struct exerciser *x, uint64_t off, size_t len, bool direct)
{
    size_t n = 0, want = off >= x->size ? 0 : (size_t)(x->size - off < len ? x->size - off : len);
    int rv;
    if (direct) {
        EX_CHECK(x, rfs_file_flush(x->h) == 0);
        rv = rfs_fs_read(x->f->fs, x->ino, off, len, x->got, &n);
    } else {
        rv = rfs_file_read(x->h, off, len, x->got, &n);
    }
    EX_CHECK(x, rv == 0);
    EX_CHECK(x, n == want);
    EX_CHECK(x, memcmp(x->got, x->model + off, n) == 0);
}

static void ex_check_all(struct exerciser *x)
{
    struct rfs_attr a;
    EX_CHECK(x, rfs_file_flush(x->h) == 0);
    EX_CHECK(x, rfs_fs_getattr(x->f->fs, x->ino, &a) == 0);
    EX_CHECK(x, a.size == x->size);
    EX_CHECK(x, a.blocks <= (a.size + B - 1) / B * UNITS);
    ex_check_range(x, 0, EX_MAX, true);
}

static void ex_step(struct exerciser *x)
{
    uint64_t r = rnd(&x->seed) % 100, off = ex_off(x);
    size_t len = ex_len(x, off);
    uint64_t lo = off, hi = off + len;
    if (r < 35) {
        /* a burst of buffered writes, mostly sequential */
        unsigned k = 1 + (unsigned)(rnd(&x->seed) % 8);
        bool large = rnd(&x->seed) % 10 == 0;
        snprintf(x->what, sizeof x->what, "%u handle writes from %llu", k, (unsigned long long)off);
        for (unsigned i = 0; i < k; i++) {
            size_t l = large ? (size_t)(B * 3 + rnd(&x->seed) % B) : ex_len(x, off);
            if (off + l > EX_BASE + EX_SPAN) {
                l = (size_t)(EX_BASE + EX_SPAN - off);
            }
            fill_random(&x->seed, x->data, l);
            EX_CHECK(x, rfs_file_write(x->h, off, x->data, l) == 0);
            ex_model_write(x, off, x->data, l);
            lo = off < lo ? off : lo;
            hi = off + l > hi ? off + l : hi;
            switch (rnd(&x->seed) % 6) {
                case 0:
                    off = ex_off(x); /* elsewhere */
                    break;
                case 1:
                    off = off > 100 ? off - 100 : 0; /* back into the buffer */
                    break;
                default:
                    off += l; /* on */
                    break;
            }
            if (off >= EX_BASE + EX_SPAN) {
                off = EX_BASE;
            }
        }
    } else if (r < 42) {
        /* appends through the other handle, flushed: they land at the committed end */
        unsigned k = 1 + (unsigned)(rnd(&x->seed) % 4);
        EX_CHECK(x, rfs_file_flush(x->h) == 0);
        lo = x->size;
        snprintf(x->what, sizeof x->what, "%u appends at %llu", k, (unsigned long long)x->size);
        for (unsigned i = 0; i < k; i++) {
            size_t l = 1 + (size_t)(rnd(&x->seed) % (i == 0 ? 2 * B : 3000));
            if (x->size + l > EX_BASE + EX_SPAN) {
                break;
            }
            fill_random(&x->seed, x->data, l);
            EX_CHECK(x, rfs_file_write(x->app, rnd(&x->seed) % 1000, x->data, l) == 0);
            ex_model_write(x, x->size, x->data, l);
        }
        EX_CHECK(x, rfs_file_flush(x->app) == 0);
        hi = x->size;
    } else if (r < 55) {
        snprintf(x->what, sizeof x->what, "write %zu at %llu", len, (unsigned long long)off);
        fill_random(&x->seed, x->data, len);
        EX_CHECK(x, rfs_file_flush(x->h) == 0);
        EX_CHECK(x, rfs_fs_write(x->f->fs, x->ino, off, x->data, len) == 0);
        ex_model_write(x, off, x->data, len);
    } else if (r < 70) {
        uint64_t size =
            rnd(&x->seed) % 4 == 0 ? (x->size > 50 ? x->size - rnd(&x->seed) % 50 : 0) : ex_off(x);
        bool handle = r < 62;
        snprintf(x->what, sizeof x->what, "truncate %llu to %llu%s", (unsigned long long)x->size,
                 (unsigned long long)size, handle ? " (handle)" : "");
        if (handle) {
            EX_CHECK(x, rfs_file_truncate(x->h, size) == 0);
        } else {
            EX_CHECK(x, rfs_file_flush(x->h) == 0);
            EX_CHECK(x, rfs_fs_truncate(x->f->fs, x->ino, size) == 0);
        }
        ex_model_truncate(x, size);
        lo = size > B ? size - B : 0;
        hi = size + B;
    } else {
        snprintf(x->what, sizeof x->what, "read %zu at %llu", len, (unsigned long long)off);
        ex_check_range(x, off, len, r >= 85);
    }
    /* After every step: the range it touched and a block around it, and the size. */
    lo = lo > B ? lo - B : 0;
    hi = hi + B < EX_MAX ? hi + B : EX_MAX;
    ex_check_range(x, lo, (size_t)(hi - lo), r % 2 == 0);
    ex_check_range(x, x->size > 10 ? x->size - 10 : 0, 20, r % 2 == 1);
}

static void test_random_ops_match_model(void **state)
{
    struct fs_fixture *f = *state;
    struct exerciser x = {.f = f};
    const char *env = getenv("RAFTFS_SEED");
    uint64_t start = now_ms();
    FS_SKIP_IF_NEEDED(f);
    x.seed0 = env != NULL ? strtoull(env, NULL, 10) : 20240601;
    x.seed = x.seed0 * 2654435761u + 1;
    x.ino = create_file(f, "random", S_IFREG | 0644);
    x.h = rfs_file_open(f->fs, x.ino, O_RDWR);
    x.app = rfs_file_open(f->fs, x.ino, O_WRONLY | O_APPEND);
    x.model = calloc(1, EX_MAX);
    x.data = malloc(EX_MAX);
    x.got = malloc(EX_MAX);
    for (x.step = 0; x.step < EX_STEPS && now_ms() - start < EX_MS; x.step++) {
        ex_step(&x);
        if (x.step % 25 == 24) {
            snprintf(x.what, sizeof x.what, "the whole file");
            ex_check_all(&x);
        }
    }
    snprintf(x.what, sizeof x.what, "the whole file, at the end");
    ex_check_all(&x);
    printf("random ops: %u steps in %llu ms (seed %llu)\n", x.step,
           (unsigned long long)(now_ms() - start), (unsigned long long)x.seed0);
    rfs_file_release(x.h);
    rfs_file_release(x.app);
    free(x.model);
    free(x.data);
    free(x.got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips_across_blocks),
        cmocka_unit_test(test_sparse_file_reads_zeros),
        cmocka_unit_test(test_truncate_shrinks_and_grows_with_zeros),
        cmocka_unit_test(test_interrupted_truncate_is_finished_by_the_collector),
        cmocka_unit_test(test_errors_and_limits),
        cmocka_unit_test(test_append_handle_writes_at_the_end),
        cmocka_unit_test(test_concurrent_appenders_never_overwrite),
        cmocka_unit_test(test_concurrent_writers_in_one_block_keep_both),
        cmocka_unit_test(test_buffered_writes_visible_after_flush),
        cmocka_unit_test(test_large_file_checksum),
        cmocka_unit_test(test_random_ops_match_model),
    };
    rfs_log_set_level(RFS_LOG_ERROR);
    /* One cluster for the whole file: the tests use files of their own. */
    return cmocka_run_group_tests(tests, fs_fixture_setup, fs_fixture_teardown);
}
