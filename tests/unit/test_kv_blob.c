/* Blob files (kv/blob.c) under the kv write batch and cursor: large data values go to blob
 * files and come back whole through every read path, survive a reopen and a torn tail,
 * damage is reported as corruption, and the collector gives back the space of dead values
 * without losing a live one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/err.h"
#include "kv/internal.h"

#define BIG      (64u << 10)
#define FILE_MAX (4u * (BIG + KV_BLOB_REC_HDR)) /* four big values to a file */

struct fixture {
    char dir[64];
    struct rfs_ldb db;
    char errmsg[RFS_ERRMSG_SIZE];
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void fx_open(struct fixture *f)
{
    if (rfs_ldb_open(&f->db, f->dir, f->errmsg) != 0 ||
        kv_blobs_open(&f->db.blobs, f->dir, f->errmsg) != 0) {
        fail_msg("open %s: %s", f->dir, f->errmsg);
    }
    kv_blobs_set_file_max(f->db.blobs, FILE_MAX);
}

static void fx_close(struct fixture *f)
{
    kv_blobs_close(f->db.blobs);
    f->db.blobs = NULL;
    rfs_ldb_close(&f->db);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/test_kv_blob.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    fx_close(f);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* LevelDB key of user key n: 'd' | bucket 0 | "k<n>". */
static size_t key_of(unsigned n, char *out)
{
    return (size_t)sprintf(out, "d%c%ck%04u", 0, 0, n);
}

/* A value: version n | len bytes that depend on n and gen. */
static char *value_of(unsigned n, unsigned gen, size_t len)
{
    char *v = malloc(KV_VERSION_LEN + len);
    assert_non_null(v);
    rfs_put_le64(v, 1000 + n);
    for (size_t i = 0; i < len; i++) {
        v[KV_VERSION_LEN + i] = (char)(n * 31 + gen * 7 + i * 13);
    }
    return v;
}

static void put(struct fixture *f, unsigned n, unsigned gen, size_t len)
{
    struct kv_batch b;
    char key[32];
    size_t klen = key_of(n, key);
    char *v = value_of(n, gen, len);

    assert_int_equal(kv_batch_init(&b, &f->db, 1), 0);
    assert_int_equal(kv_batch_put(&b, key, klen, v, KV_VERSION_LEN + len), 0);
    if (kv_batch_write(&b, f->db.wopts, f->errmsg) != 0) {
        fail_msg("write: %s", f->errmsg);
    }
    kv_batch_close(&b);
    free(v);
}

static void del(struct fixture *f, unsigned n)
{
    struct kv_batch b;
    char key[32];
    size_t klen = key_of(n, key);

    assert_int_equal(kv_batch_init(&b, &f->db, 1), 0);
    assert_int_equal(kv_batch_delete(&b, key, klen), 0);
    assert_int_equal(kv_batch_write(&b, f->db.wopts, f->errmsg), 0);
    kv_batch_close(&b);
}

/* Read key n through a read-only batch: 0 and the value checked, or the error. */
static int check(struct fixture *f, unsigned n, unsigned gen, size_t len)
{
    struct kv_batch b;
    struct kv_value v;
    char key[32];
    size_t klen = key_of(n, key);
    int found, rv;

    kv_batch_init(&b, &f->db, 0);
    rv = kv_batch_get(&b, key, klen, &found, &v, f->errmsg);
    if (rv == 0) {
        char *want = value_of(n, gen, len);
        assert_true(found);
        assert_int_equal(v.len, KV_VERSION_LEN + len);
        assert_memory_equal(v.data, want, KV_VERSION_LEN + len);
        free(want);
    }
    kv_value_clear(&v);
    kv_batch_close(&b);
    return rv;
}

static size_t raw_len(struct fixture *f, unsigned n)
{
    char key[32], *err = NULL;
    size_t klen = key_of(n, key), len = 0;
    char *v = leveldb_get(f->db.db, f->db.ropts, key, klen, &len, &err);
    assert_null(err);
    assert_non_null(v);
    leveldb_free(v);
    return len;
}

static struct kv_blob_stats stats(struct fixture *f)
{
    struct kv_blob_stats st;
    kv_blobs_stats(f->db.blobs, &st);
    return st;
}

static void collect(struct fixture *f)
{
    if (kv_blobs_collect(f->db.blobs, &f->db, 1, f->errmsg) != 0) {
        fail_msg("collect: %s", f->errmsg);
    }
}

static void blob_file_path(struct fixture *f, unsigned no, char *out, size_t size)
{
    snprintf(out, size, "%s/blob-%08x", f->dir, no);
}

static void test_large_values_go_to_blob_files_and_come_back_whole(void **state)
{
    struct fixture *f = *state;

    put(f, 1, 0, BIG);
    put(f, 2, 0, 100);
    put(f, 3, 0, KV_BLOB_MIN);     /* the smallest value that goes out */
    put(f, 4, 0, KV_BLOB_MIN - 1); /* the largest that stays in */
    assert_int_equal(raw_len(f, 1), KV_BLOB_PTR_LEN);
    assert_int_equal(raw_len(f, 2), KV_VERSION_LEN + 100);
    assert_int_equal(raw_len(f, 3), KV_BLOB_PTR_LEN);
    assert_int_equal(raw_len(f, 4), KV_VERSION_LEN + KV_BLOB_MIN - 1);
    assert_int_equal(check(f, 1, 0, BIG), 0);
    assert_int_equal(check(f, 2, 0, 100), 0);
    assert_int_equal(check(f, 3, 0, KV_BLOB_MIN), 0);
    assert_int_equal(check(f, 4, 0, KV_BLOB_MIN - 1), 0);

    /* A cursor gives whole values too, in key order. */
    {
        struct kv_cursor c;
        size_t lens[] = {BIG, 100, KV_BLOB_MIN, KV_BLOB_MIN - 1};
        unsigned seen = 0;
        assert_int_equal(kv_cursor_open(&c, &f->db, f->db.ropts, "d", 1, "e", 1, NULL, 0), 0);
        for (; c.valid; kv_cursor_next(&c)) {
            char *want = value_of(seen + 1, 0, lens[seen]);
            assert_int_equal(c.vlen, KV_VERSION_LEN + lens[seen]);
            assert_memory_equal(c.val, want, c.vlen);
            free(want);
            seen++;
        }
        assert_int_equal(kv_cursor_close(&c, f->errmsg), 0);
        assert_int_equal(seen, 4);
    }

    /* The batch itself shows its own writes whole before they are written. */
    {
        struct kv_batch b;
        struct kv_value v;
        char key[32], *val = value_of(9, 0, BIG);
        size_t klen = key_of(9, key);
        int found;
        assert_int_equal(kv_batch_init(&b, &f->db, 1), 0);
        assert_int_equal(kv_batch_put(&b, key, klen, val, KV_VERSION_LEN + BIG), 0);
        assert_int_equal(kv_batch_get(&b, key, klen, &found, &v, f->errmsg), 0);
        assert_true(found);
        assert_memory_equal(v.data, val, KV_VERSION_LEN + BIG);
        kv_value_clear(&v);
        assert_int_equal(kv_batch_write(&b, f->db.wopts, f->errmsg), 0);
        kv_batch_close(&b);
        free(val);
    }

    /* And all of it is there after a reopen. */
    fx_close(f);
    fx_open(f);
    assert_int_equal(check(f, 1, 0, BIG), 0);
    assert_int_equal(check(f, 3, 0, KV_BLOB_MIN), 0);
    assert_int_equal(check(f, 9, 0, BIG), 0);
}

static void test_only_the_last_value_of_a_batch_is_written(void **state)
{
    struct fixture *f = *state;
    struct kv_batch b;
    char key[32];
    size_t klen = key_of(1, key);

    assert_int_equal(kv_batch_init(&b, &f->db, 1), 0);
    for (unsigned gen = 0; gen < 4; gen++) {
        char *v = value_of(1, gen, BIG);
        assert_int_equal(kv_batch_put(&b, key, klen, v, KV_VERSION_LEN + BIG), 0);
        free(v);
    }
    assert_int_equal(kv_batch_write(&b, f->db.wopts, f->errmsg), 0);
    kv_batch_close(&b);
    assert_int_equal(check(f, 1, 3, BIG), 0);
    assert_int_equal(stats(f).bytes, KV_BLOB_REC_HDR + BIG);
}

/* A lock record ('l') or any other non-data value of a pointer's length whose first word has
 * bit 63 set (a random transaction id does, half the time) is a value, not a pointer: read
 * back as stored, by a get and by a cursor. */
static void test_only_data_keys_hold_pointers(void **state)
{
    struct fixture *f = *state;
    static const char key[] = "l\0\0\0\x2a"
                              "acct0";
    size_t klen = sizeof key - 1;
    unsigned char val[KV_BLOB_PTR_LEN];
    struct kv_cursor c;
    struct kv_batch b;
    struct kv_value v;
    int found;

    memset(val, 0xab, sizeof val);
    val[7] = 0xf1;
    assert_int_equal(kv_batch_init(&b, &f->db, 1), 0);
    assert_int_equal(kv_batch_put(&b, key, klen, val, sizeof val), 0);
    assert_int_equal(kv_batch_write(&b, f->db.wopts, f->errmsg), 0);
    kv_batch_close(&b);

    kv_batch_init(&b, &f->db, 0);
    if (kv_batch_get(&b, key, klen, &found, &v, f->errmsg) != 0) {
        fail_msg("get: %s", f->errmsg);
    }
    assert_true(found);
    assert_int_equal(v.len, sizeof val);
    assert_memory_equal(v.data, val, sizeof val);
    kv_value_clear(&v);
    kv_batch_close(&b);

    assert_int_equal(kv_cursor_open(&c, &f->db, f->db.ropts, "l", 1, "m", 1, NULL, 0), 0);
    assert_true(c.valid);
    assert_int_equal(c.vlen, sizeof val);
    assert_memory_equal(c.val, val, sizeof val);
    assert_int_equal(kv_cursor_close(&c, f->errmsg), 0);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x20;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static void test_damage_is_corruption_that_names_the_file(void **state)
{
    struct fixture *f = *state;
    char path[128];

    for (unsigned i = 1; i <= 5; i++) {
        put(f, i, 0, BIG); /* 1-4 in the first file, 5 in the second */
    }
    blob_file_path(f, 1, path, sizeof path);
    flip_byte(path, KV_BLOB_REC_HDR + 1000); /* inside the first value */

    assert_int_equal(check(f, 1, 0, BIG), RFS_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "blob-00000001"));
    assert_non_null(strstr(f->errmsg, "checksum"));
    assert_int_equal(check(f, 2, 0, BIG), 0);

    /* A cursor stops at the damaged value and its close says why. */
    {
        struct kv_cursor c;
        assert_int_equal(kv_cursor_open(&c, &f->db, f->db.ropts, "d", 1, "e", 1, NULL, 0), 0);
        assert_false(c.valid);
        assert_int_equal(kv_cursor_close(&c, f->errmsg), RFS_ECORRUPT);
        assert_non_null(strstr(f->errmsg, "blob-00000001"));
    }

    /* A file that is gone is corruption too, for readers and for the collector. */
    fx_close(f);
    assert_int_equal(unlink(path), 0);
    fx_open(f);
    assert_int_equal(check(f, 5, 0, BIG), 0);
    assert_int_equal(check(f, 2, 0, BIG), RFS_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "no such file"));
    assert_int_equal(kv_blobs_collect(f->db.blobs, &f->db, 1, f->errmsg), RFS_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "missing"));
}

static void test_a_torn_tail_is_left_behind(void **state)
{
    struct fixture *f = *state;
    char path[128], junk[300];
    int fd;

    put(f, 1, 0, BIG);
    fx_close(f);
    /* A crash in the middle of an append whose pointer never reached LevelDB. */
    blob_file_path(f, 1, path, sizeof path);
    fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    memset(junk, 0x5a, sizeof junk);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);

    fx_open(f);
    put(f, 2, 0, BIG);
    assert_int_equal(check(f, 1, 0, BIG), 0);
    assert_int_equal(check(f, 2, 0, BIG), 0);
    fx_close(f);
    fx_open(f);
    assert_int_equal(check(f, 2, 0, BIG), 0);
}

static void test_collector_reclaims_dead_values_and_keeps_live_ones(void **state)
{
    struct fixture *f = *state;
    const unsigned n = 64;
    struct kv_blob_stats st;
    uint64_t live;

    for (unsigned i = 0; i < n; i++) {
        put(f, i, 0, BIG);
    }
    st = stats(f);
    assert_true(st.files >= n / 4);
    assert_true(st.bytes >= (uint64_t)n * BIG);

    /* Nothing dead: nothing to do. */
    collect(f);
    assert_int_equal(stats(f).collected, 0);

    /* Three of every four die (deleted, or overwritten by a value kept inline): each file
     * holding four is then a quarter alive and gets copied out. */
    for (unsigned i = 0; i < n; i++) {
        if (i % 4 == 1) {
            put(f, i, 1, 100);
        } else if (i % 4 != 0) {
            del(f, i);
        }
    }
    collect(f);
    st = stats(f);
    live = (uint64_t)(n / 4) * (KV_BLOB_REC_HDR + BIG);
    assert_true(st.collected > 0);
    assert_true(st.copied > 0);
    assert_true(st.bytes <= live + FILE_MAX);
    for (unsigned i = 0; i < n; i++) {
        if (i % 4 == 0) {
            assert_int_equal(check(f, i, 0, BIG), 0);
        } else if (i % 4 == 1) {
            assert_int_equal(check(f, i, 1, 100), 0);
        }
    }

    /* Everything dies: the space goes (the newest file is sealed, then collected). */
    for (unsigned i = 0; i < n; i += 4) {
        del(f, i);
    }
    collect(f);
    collect(f);
    st = stats(f);
    assert_int_equal(st.files, 1);
    assert_true(st.bytes < FILE_MAX / 8);

    /* Still usable, and the state survives a reopen. */
    put(f, 500, 0, BIG);
    fx_close(f);
    fx_open(f);
    assert_int_equal(check(f, 500, 0, BIG), 0);
    assert_int_equal(check(f, 1, 1, 100), 0);
}

static void test_collector_waits_for_a_change(void **state)
{
    struct fixture *f = *state;

    for (unsigned i = 0; i < 8; i++) {
        put(f, 10 + i, 0, BIG); /* two files of four */
    }
    /* Changes were noted, so the first run happens (and finds nothing dead)... */
    assert_int_equal(kv_blobs_collect(f->db.blobs, &f->db, 0, f->errmsg), 0);
    assert_int_equal(stats(f).collected, 0);
    /* ...and the next one waits out its pause, although the first file is now dead. */
    del(f, 10);
    del(f, 11);
    del(f, 12);
    assert_int_equal(kv_blobs_collect(f->db.blobs, &f->db, 0, f->errmsg), 0);
    assert_int_equal(stats(f).collected, 0);
    collect(f);
    assert_int_equal(stats(f).collected, 1);
    for (unsigned i = 3; i < 8; i++) {
        assert_int_equal(check(f, 10 + i, 0, BIG), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_large_values_go_to_blob_files_and_come_back_whole,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_the_last_value_of_a_batch_is_written, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_damage_is_corruption_that_names_the_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_torn_tail_is_left_behind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_data_keys_hold_pointers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collector_reclaims_dead_values_and_keeps_live_ones,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_collector_waits_for_a_change, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
