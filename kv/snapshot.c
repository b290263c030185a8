/* Snapshots of the kv state: every LevelDB record (data, sessions, meta) read through a
 * LevelDB snapshot into one buffer, and the way back (docs/kv.md):
 *
 *   off  0  "RFSKVSNP"                      magic
 *   off  8  u32 format version (1)
 *   off 12  u32 crc32c of every byte from offset 16 to the end
 *   off 16  u64 applied index
 *   off 24  u64 record count
 *   off 32  records: u32 klen | u32 vlen | key | value          (all integers LE)
 *
 * Restore checks everything first (any mismatch: RFS_ECORRUPT, nothing touched), builds a
 * complete new database in dir/db.new, and only then swaps it in (swap.c). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "../common/crc32.h"
#include "../common/log.h"
#include "internal.h"

#define SNAP_MAGIC      "RFSKVSNP"
#define SNAP_VERSION    1
#define SNAP_HDR        32
#define SNAP_REC_HDR    8
#define SNAP_CHUNK_SIZE (4u << 20) /* restore writes LevelDB batches of about this size */

struct snap_out {
    uint8_t *buf;
    size_t len, cap;
};

static int snap_reserve(struct snap_out *o, size_t more)
{
    size_t cap = o->cap == 0 ? 1u << 16 : o->cap;
    uint8_t *buf;

    if (o->cap - o->len >= more) {
        return 0;
    }
    while (cap - o->len < more) {
        cap *= 2;
    }
    buf = rfs_realloc(o->buf, cap);
    if (buf == NULL) {
        return RFS_ENOMEM;
    }
    o->buf = buf;
    o->cap = cap;
    return 0;
}

int kv_snapshot_encode(struct kv_sm *sm, struct rfs_buf *out, raft_index *index, char *errmsg)
{
    const leveldb_snapshot_t *snap = leveldb_create_snapshot(sm->db.db);
    leveldb_readoptions_t *ropts = leveldb_readoptions_create();
    struct snap_out o = {0};
    struct kv_cursor c = {0};
    uint64_t count = 0;
    int rv;

    if (snap == NULL || ropts == NULL) {
        rv = RFS_ENOMEM;
        goto out;
    }
    leveldb_readoptions_set_snapshot(ropts, snap);
    leveldb_readoptions_set_fill_cache(ropts, 0);
    rv = snap_reserve(&o, SNAP_HDR);
    if (rv != 0) {
        goto out;
    }
    o.len = SNAP_HDR;
    rv = kv_cursor_open(&c, &sm->db, ropts, "", 0, NULL, 0, NULL, 0);
    for (; rv == 0 && c.valid; kv_cursor_next(&c)) {
        if (c.klen > UINT32_MAX || c.vlen > UINT32_MAX) {
            rfs_errmsg_printf(errmsg, "kv snapshot: record too large");
            rv = RFS_ECORRUPT;
            break;
        }
        rv = snap_reserve(&o, SNAP_REC_HDR + c.klen + c.vlen);
        if (rv != 0) {
            break;
        }
        rfs_put_le32(o.buf + o.len, (uint32_t)c.klen);
        rfs_put_le32(o.buf + o.len + 4, (uint32_t)c.vlen);
        memcpy(o.buf + o.len + SNAP_REC_HDR, c.key, c.klen);
        memcpy(o.buf + o.len + SNAP_REC_HDR + c.klen, c.val, c.vlen);
        o.len += SNAP_REC_HDR + c.klen + c.vlen;
        count++;
    }
    {
        int rv2 = kv_cursor_close(&c, errmsg);
        if (rv == 0) {
            rv = rv2;
        }
    }
    if (rv != 0) {
        goto out;
    }
    /* apply runs on this thread too, so the cached index is the snapshot's. */
    memcpy(o.buf, SNAP_MAGIC, 8);
    rfs_put_le32(o.buf + 8, SNAP_VERSION);
    rfs_put_le64(o.buf + 16, sm->applied);
    rfs_put_le64(o.buf + 24, count);
    rfs_put_le32(o.buf + 12, rfs_crc32c(0, o.buf + 16, o.len - 16));
    out->base = o.buf;
    out->len = o.len;
    *index = sm->applied;
    o.buf = NULL;
out:
    if (rv == RFS_ENOMEM) {
        rfs_errmsg_printf(errmsg, "kv snapshot: out of memory");
    }
    rfs_free(o.buf);
    if (ropts != NULL) {
        leveldb_readoptions_destroy(ropts);
    }
    if (snap != NULL) {
        leveldb_release_snapshot(sm->db.db, snap);
    }
    return rv;
}

static int snap_corrupt(char *errmsg, const char *why)
{
    rfs_errmsg_printf(errmsg, "kv snapshot: %s", why);
    return RFS_ECORRUPT;
}

/* Check that the records are well formed and fill the buffer exactly. */
static int snap_walk(const uint8_t *p, size_t len, uint64_t count, char *errmsg)
{
    size_t off = SNAP_HDR;

    for (uint64_t i = 0; i < count; i++) {
        uint32_t klen, vlen;
        const uint8_t *key;
        if (len - off < SNAP_REC_HDR) {
            return snap_corrupt(errmsg, "truncated record header");
        }
        klen = rfs_get_le32(p + off);
        vlen = rfs_get_le32(p + off + 4);
        off += SNAP_REC_HDR;
        if (len - off < (uint64_t)klen + vlen) {
            return snap_corrupt(errmsg, "truncated record");
        }
        key = p + off;
        if (klen == 0 ||
            (key[0] != KV_PREFIX_DATA && key[0] != KV_PREFIX_SESSION && key[0] != KV_PREFIX_META &&
             key[0] != KV_PREFIX_BUCKET && key[0] != KV_PREFIX_LOCK && key[0] != KV_PREFIX_TXN)) {
            return snap_corrupt(errmsg, "record with an unknown key prefix");
        }
        off += (size_t)klen + vlen;
    }
    if (off != len) {
        return snap_corrupt(errmsg, "bytes after the last record");
    }
    return 0;
}

int kv_snapshot_verify(raft_index index, const void *data, size_t len, uint64_t *count,
                       char *errmsg)
{
    const uint8_t *p = data;

    if (len < SNAP_HDR) {
        return snap_corrupt(errmsg, "shorter than its header");
    }
    if (memcmp(p, SNAP_MAGIC, 8) != 0) {
        return snap_corrupt(errmsg, "bad magic");
    }
    if (rfs_get_le32(p + 8) != SNAP_VERSION) {
        return snap_corrupt(errmsg, "unknown format version");
    }
    if (rfs_get_le32(p + 12) != rfs_crc32c(0, p + 16, len - 16)) {
        return snap_corrupt(errmsg, "checksum mismatch");
    }
    if (rfs_get_le64(p + 16) != index) {
        rfs_errmsg_printf(errmsg, "kv snapshot: taken at index %llu, restoring as %llu",
                          (unsigned long long)rfs_get_le64(p + 16), (unsigned long long)index);
        return RFS_ECORRUPT;
    }
    *count = rfs_get_le64(p + 24);
    return snap_walk(p, len, *count, errmsg);
}

/* Write the records into a fresh database at path, durably. */
static int snap_build(const char *path, raft_index index, const uint8_t *p, uint64_t count,
                      char *errmsg)
{
    struct rfs_ldb d = {0};
    struct kv_blobs *blobs = NULL;
    leveldb_writebatch_t *wb = NULL;
    unsigned char num[8];
    size_t off = SNAP_HDR, pending = 0;
    char *err = NULL;
    int rv;

    rv = kv_path_remove(path, errmsg); /* a leftover of an earlier failed restore */
    if (rv == 0) {
        rv = rfs_ldb_open(&d, path, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    rv = kv_blobs_open(&blobs, path, errmsg);
    if (rv != 0) {
        goto out;
    }
    wb = leveldb_writebatch_create();
    if (wb == NULL) {
        rv = RFS_ENOMEM;
        goto out;
    }
    /* Records were checked by kv_snapshot_verify. */
    for (uint64_t i = 0; i < count; i++) {
        uint32_t klen = rfs_get_le32(p + off), vlen = rfs_get_le32(p + off + 4);
        const char *key = (const char *)p + off + SNAP_REC_HDR;
        if (kv_blob_wanted(key, klen, vlen)) {
            unsigned char ptr[KV_BLOB_PTR_LEN];
            rv = kv_blobs_append(blobs, key + klen, vlen, ptr, errmsg);
            if (rv != 0) {
                goto out;
            }
            leveldb_writebatch_put(wb, key, klen, (const char *)ptr, sizeof ptr);
        } else {
            leveldb_writebatch_put(wb, key, klen, key + klen, vlen);
        }
        off += SNAP_REC_HDR + (size_t)klen + vlen;
        pending += SNAP_REC_HDR + (size_t)klen + vlen;
        if (pending >= SNAP_CHUNK_SIZE) {
            leveldb_write(d.db, d.wopts, wb, &err);
            if (err != NULL) {
                rv = rfs_ldb_error(err, errmsg, "write restored records");
                goto out;
            }
            leveldb_writebatch_clear(wb);
            pending = 0;
        }
    }
    rfs_put_le64(num, index);
    leveldb_writebatch_put(wb, KV_META_APPLIED, strlen(KV_META_APPLIED), (const char *)num,
                           sizeof num);
    /* The blob files first; then a synced write makes everything before it durable too
     * (same log, or already in tables LevelDB synced when it wrote them). */
    rv = kv_blobs_sync(blobs, errmsg);
    if (rv != 0) {
        goto out;
    }
    leveldb_write(d.db, d.wopts_sync, wb, &err);
    if (err != NULL) {
        rv = rfs_ldb_error(err, errmsg, "write restored records");
        goto out;
    }
out:
    if (wb != NULL) {
        leveldb_writebatch_destroy(wb);
    }
    kv_blobs_close(blobs);
    rfs_ldb_close(&d);
    if (rv == 0) {
        rv = kv_dir_sync(path, errmsg);
    }
    if (rv == RFS_ENOMEM) {
        rfs_errmsg_printf(errmsg, "out of memory");
    }
    return rv;
}

int kv_snapshot_restore(struct kv_sm *sm, raft_index index, const void *data, size_t len,
                        char *errmsg)
{
    char path[PATH_MAX];
    uint64_t count;
    int rv;

    rv = kv_snapshot_verify(index, data, len, &count, errmsg);
    if (rv != 0) {
        return rv;
    }
    snprintf(path, sizeof path, "%s/%s", sm->dir, KV_DB_NEW_NAME);
    rv = snap_build(path, index, data, count, errmsg);
    if (rv != 0) {
        char tmp[RFS_ERRMSG_SIZE];
        kv_path_remove(path, tmp); /* best effort: open removes it too */
        rfs_errmsg_wrapf(errmsg, "kv restore: build %s", path);
        return rv;
    }

    /* From here the old database is closed. Once kv_swap_commit has written the done
     * marker the new state is the committed one: after a failure part-way we finish the
     * swap the way open would, and reopen whatever that leaves. */
    kv_sm_db_close(sm);
    rv = kv_swap_commit(sm->dir, errmsg);
    if (rv != 0) {
        char tmp[RFS_ERRMSG_SIZE];
        rfs_errorf("kv restore: swap failed: %s", errmsg);
        if (kv_swap_recover(sm->dir, tmp) != 0) {
            rfs_errorf("kv restore: repair failed: %s", tmp);
            return rv; /* sm->db stays closed: every call fails */
        }
    }
    {
        char tmp[RFS_ERRMSG_SIZE];
        int rv2 = kv_sm_db_open(sm, tmp);
        if (rv2 == 0) {
            rv2 = kv_sm_load_meta(sm, tmp);
        }
        if (rv2 != 0) {
            kv_sm_db_close(sm);
            if (rv == 0) {
                rfs_errmsg_printf(errmsg, "kv restore: reopen: %s", tmp);
                rv = rv2;
            }
            return rv;
        }
    }
    if (rv == 0) {
        rfs_infof("kv: restored snapshot at index %llu (%llu records)", (unsigned long long)index,
                  (unsigned long long)count);
    }
    return rv;
}
