/* Counting the data keys with a prefix (count.h).
 *
 * A bucket's keys with a given prefix are one LevelDB range: 'd' | bucket | prefix up to the
 * next prefix. Each served bucket's range is read with a plain iterator (keys only matter;
 * the pending write batch does not exist between applies, so LevelDB holds everything
 * applied). Reading every key would cost time proportional to the group's inodes, on the
 * server's event-loop thread: instead a bucket is counted exactly up to
 * KV_COUNT_EXACT_PER_BUCKET keys, and past that the rest is extrapolated from LevelDB's
 * approximate sizes (the keys counted per byte of the range they span, times the bytes of
 * the range left). LevelDB's estimate leaves out its memtable, so when the part counted
 * has no size yet the count goes on, up to KV_COUNT_MAX_PER_BUCKET keys, and stops there
 * (an undercount, marked inexact). */
#include "count.h"

#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "internal.h"

/* The smallest key greater than every key starting with k[0..*len): k with its last byte
 * below 0xff incremented and what follows dropped. *len 0: no such key (all 0xff). */
static void prefix_end(unsigned char *k, size_t *len)
{
    while (*len > 0) {
        if (k[*len - 1] != 0xff) {
            k[*len - 1]++;
            return;
        }
        (*len)--;
    }
}

static uint64_t approx_size(leveldb_t *db, const char *lo, size_t lolen, const char *hi,
                            size_t hilen)
{
    uint64_t size = 0;
    leveldb_approximate_sizes(db, 1, &lo, &lolen, &hi, &hilen, &size);
    return size;
}

/* The keys of one bucket's range [lo, hi) (hilen 0: unbounded), exact up to the limits. */
static int count_range(leveldb_t *db, const leveldb_readoptions_t *ropts, const char *lo,
                       size_t lolen, const char *hi, size_t hilen, uint64_t *n, int *exact,
                       char *errmsg)
{
    leveldb_iterator_t *it = leveldb_create_iterator(db, ropts);
    char *err = NULL;
    uint64_t count = 0;
    if (it == NULL) {
        rfs_errmsg_printf(errmsg, "count: no iterator");
        return RFS_ENOMEM;
    }
    for (leveldb_iter_seek(it, lo, lolen); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen;
        const char *k = leveldb_iter_key(it, &klen);
        if (hilen > 0 && kv_key_cmp(k, klen, hi, hilen) >= 0) {
            break;
        }
        count++;
        if (count >= KV_COUNT_EXACT_PER_BUCKET && hilen > 0) {
            /* extrapolate: keys per byte of [lo, k) times the bytes of [k, hi) */
            uint64_t done = approx_size(db, lo, lolen, k, klen);
            if (done > 0) {
                uint64_t rest = approx_size(db, k, klen, hi, hilen);
                count += (uint64_t)((double)count * ((double)rest / (double)done));
                *exact = 0;
                break;
            }
            if (count >= KV_COUNT_MAX_PER_BUCKET) {
                *exact = 0;
                break;
            }
        }
    }
    leveldb_iter_get_error(it, &err);
    leveldb_iter_destroy(it);
    if (err != NULL) {
        return rfs_ldb_error(err, errmsg, "count: iterating");
    }
    *n += count;
    return 0;
}

int kv_sm_count_keys(void *data, const void *prefix, size_t len, uint64_t *n, int *exact,
                     char *errmsg)
{
    struct kv_sm *sm = data;
    unsigned char *lo, *hi;
    size_t lolen = KV_DATA_HDR + len, hilen;
    int rv = 0;
    *n = 0;
    *exact = 1;
    if (sm->db.db == NULL) {
        rfs_errmsg_printf(errmsg, "count: the database is closed (after a failed restore)");
        return RFS_EIO;
    }
    lo = rfs_malloc(2 * lolen);
    if (lo == NULL) {
        rfs_errmsg_printf(errmsg, "count: out of memory");
        return RFS_ENOMEM;
    }
    hi = lo + lolen;
    for (uint32_t b = 0; b < sm->nbuckets && rv == 0; b++) {
        if (!kv_shard_serves(sm, b)) {
            continue;
        }
        kv_key_data((char *)lo, b, prefix, len);
        memcpy(hi, lo, lolen);
        hilen = lolen;
        prefix_end(hi, &hilen);
        rv = count_range(sm->db.db, sm->db.ropts, (const char *)lo, lolen, (const char *)hi, hilen,
                         n, exact, errmsg);
    }
    rfs_free(lo);
    return rv;
}
