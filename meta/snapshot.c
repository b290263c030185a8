/* Snapshots of the meta database: every LevelDB key except the applied index.
 *
 *   "RFSMETA1" | index (u64 LE) | count (u64 LE) | count x (klen u32 LE | key | vlen u32 LE |
 *   value) | crc32 (u32 LE) of everything before it
 *
 * Restore checks the whole snapshot first, then replaces the database's contents in ONE
 * LevelDB write batch (delete every key, put every pair and the applied index), written with
 * sync: LevelDB applies a batch atomically, so after a crash the old or the new state is in
 * place, never a mix. The meta state is small, so this needs no directory swap (kv/swap.c). */
#include <string.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "../common/crc32.h"
#include "../common/log.h"
#include "internal.h"

#define SNAP_MAGIC "RFSMETA1"
#define SNAP_HDR   24

struct growbuf {
    char *p;
    size_t len, cap;
};

static int grow_put(struct growbuf *g, const void *data, size_t len)
{
    if (g->len + len > g->cap) {
        size_t cap = g->cap ? g->cap : 4096;
        while (cap < g->len + len) {
            cap *= 2;
        }
        char *p = rfs_realloc(g->p, cap);
        if (p == NULL) {
            return RFS_ENOMEM;
        }
        g->p = p;
        g->cap = cap;
    }
    memcpy(g->p + g->len, data, len);
    g->len += len;
    return 0;
}

static int grow_put_lv(struct growbuf *g, const void *data, size_t len)
{
    unsigned char n[4];
    rfs_put_le32(n, (uint32_t)len);
    int rv = grow_put(g, n, sizeof n);
    return rv != 0 ? rv : grow_put(g, data, len);
}

static int is_applied_key(const char *k, size_t klen)
{
    return klen == strlen(META_KEY_APPLIED) && memcmp(k, META_KEY_APPLIED, klen) == 0;
}

int meta_snapshot_encode(struct meta_sm *sm, struct rfs_buf *out, raft_index *index, char *errmsg)
{
    struct growbuf g = {0};
    leveldb_iterator_t *it;
    unsigned char hdr[SNAP_HDR], crc[4];
    uint64_t count = 0;
    char *err = NULL;
    int rv;

    memcpy(hdr, SNAP_MAGIC, 8);
    rfs_put_le64(hdr + 8, sm->applied);
    rfs_put_le64(hdr + 16, 0);
    rv = grow_put(&g, hdr, sizeof hdr);
    it = leveldb_create_iterator(sm->ldb.db, sm->ldb.ropts);
    if (it == NULL) {
        rv = RFS_ENOMEM;
    }
    for (leveldb_iter_seek_to_first(it); rv == 0 && leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v = leveldb_iter_value(it, &vlen);
        if (is_applied_key(k, klen)) {
            continue;
        }
        rv = grow_put_lv(&g, k, klen);
        if (rv == 0) {
            rv = grow_put_lv(&g, v, vlen);
        }
        count++;
    }
    if (it != NULL) {
        leveldb_iter_get_error(it, &err);
        leveldb_iter_destroy(it);
    }
    if (rv == 0 && err != NULL) {
        rv = rfs_ldb_error(err, errmsg, "meta snapshot: read");
        err = NULL;
    }
    leveldb_free(err);
    if (rv == 0) {
        rfs_put_le64(g.p + 16, count);
        rfs_put_le32(crc, rfs_crc32(0, g.p, g.len));
        rv = grow_put(&g, crc, sizeof crc);
    }
    if (rv != 0) {
        rfs_free(g.p);
        if (rv == RFS_ENOMEM) {
            rfs_errmsg_printf(errmsg, "meta snapshot: out of memory");
        }
        return rv;
    }
    out->base = g.p;
    out->len = g.len;
    *index = sm->applied;
    return 0;
}

/* Walk the pairs of a snapshot whose checksum matched; with wb NULL only validate. */
static int snapshot_walk(const unsigned char *p, size_t len, uint64_t count, uint32_t nbuckets,
                         leveldb_writebatch_t *wb, char *errmsg)
{
    size_t off = SNAP_HDR, end = len - 4;
    int saw_buckets = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint32_t klen, vlen;
        const unsigned char *k, *v;
        if (end - off < 4 || (klen = rfs_get_le32(p + off), end - off - 4 < klen)) {
            goto short_;
        }
        k = p + off + 4;
        off += 4 + klen;
        if (end - off < 4 || (vlen = rfs_get_le32(p + off), end - off - 4 < vlen)) {
            goto short_;
        }
        v = p + off + 4;
        off += 4 + vlen;
        if (klen == strlen(META_KEY_BUCKETS) && memcmp(k, META_KEY_BUCKETS, klen) == 0) {
            if (vlen != 8 || rfs_get_le64(v) != nbuckets) {
                rfs_errmsg_printf(errmsg,
                                  "meta snapshot: made with %llu buckets, this server has %u",
                                  vlen == 8 ? (unsigned long long)rfs_get_le64(v) : 0ull, nbuckets);
                return RFS_ECORRUPT;
            }
            saw_buckets = 1;
        }
        if (wb != NULL) {
            leveldb_writebatch_put(wb, (const char *)k, klen, (const char *)v, vlen);
        }
    }
    if (off != end) {
        rfs_errmsg_printf(errmsg, "meta snapshot: %zu stray bytes", end - off);
        return RFS_ECORRUPT;
    }
    if (!saw_buckets) {
        rfs_errmsg_printf(errmsg, "meta snapshot: number of buckets missing");
        return RFS_ECORRUPT;
    }
    return 0;
short_:
    rfs_errmsg_printf(errmsg, "meta snapshot: truncated pair");
    return RFS_ECORRUPT;
}

int meta_snapshot_restore(struct meta_sm *sm, raft_index index, const void *data, size_t len,
                          char *errmsg)
{
    const unsigned char *p = data;
    leveldb_writebatch_t *wb;
    leveldb_iterator_t *it;
    unsigned char num[8];
    uint64_t count;
    char *err = NULL;
    int rv;

    if (sm->ldb.db == NULL) {
        rfs_errmsg_printf(errmsg, "meta restore: database closed");
        return RFS_EIO;
    }
    if (len < SNAP_HDR + 4 || memcmp(p, SNAP_MAGIC, 8) != 0) {
        rfs_errmsg_printf(errmsg, "meta snapshot: bad header (%zu bytes)", len);
        return RFS_ECORRUPT;
    }
    if (rfs_get_le32(p + len - 4) != rfs_crc32(0, p, len - 4)) {
        rfs_errmsg_printf(errmsg, "meta snapshot: bad checksum");
        return RFS_ECORRUPT;
    }
    if (rfs_get_le64(p + 8) != index) {
        rfs_errmsg_printf(errmsg, "meta snapshot: taken at index %llu, restoring at %llu",
                          (unsigned long long)rfs_get_le64(p + 8), (unsigned long long)index);
        return RFS_ECORRUPT;
    }
    count = rfs_get_le64(p + 16);
    rv = snapshot_walk(p, len, count, sm->nbuckets, NULL, errmsg);
    if (rv != 0) {
        return rv;
    }
    wb = leveldb_writebatch_create();
    it = leveldb_create_iterator(sm->ldb.db, sm->ldb.ropts);
    if (wb == NULL || it == NULL) {
        if (wb != NULL) {
            leveldb_writebatch_destroy(wb);
        }
        if (it != NULL) {
            leveldb_iter_destroy(it);
        }
        rfs_errmsg_printf(errmsg, "meta restore: out of memory");
        return RFS_ENOMEM;
    }
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen;
        const char *k = leveldb_iter_key(it, &klen);
        leveldb_writebatch_delete(wb, k, klen);
    }
    leveldb_iter_get_error(it, &err);
    leveldb_iter_destroy(it);
    if (err != NULL) {
        leveldb_writebatch_destroy(wb);
        return rfs_ldb_error(err, errmsg, "meta restore: read");
    }
    (void)snapshot_walk(p, len, count, sm->nbuckets, wb, errmsg);
    rfs_put_le64(num, index);
    leveldb_writebatch_put(wb, META_KEY_APPLIED, strlen(META_KEY_APPLIED), (char *)num, sizeof num);
    leveldb_write(sm->ldb.db, sm->ldb.wopts_sync, wb, &err);
    leveldb_writebatch_destroy(wb);
    if (err != NULL) {
        return rfs_ldb_error(err, errmsg, "meta restore: write");
    }
    rv = meta_sm_load(sm, errmsg);
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "meta restore");
        return rv;
    }
    rfs_infof("meta: restored snapshot at index %llu (configuration %llu)",
              (unsigned long long)index, (unsigned long long)sm->latest->version);
    return 0;
}
