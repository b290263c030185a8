/* File data: reads, writes and truncation over fixed-size blocks.
 *
 * A file's bytes live in FS_BLOCK_SIZE blocks, block i of file ino at fs_key_block(ino, i).
 * A block is stored up to its last written byte, so it may be shorter than FS_BLOCK_SIZE; a
 * missing block, and the part of a block past its stored length, read as zeros: files are
 * sparse. Every read is clamped to the inode's size.
 *
 * Write, the happy path: read the inode (is it a regular file?), then write each block the
 * range touches. A whole block is put. A partial block is read, patched and written back in
 * a transaction that checks the version read, so two writers patching different bytes of one
 * block never lose each other's bytes (on a conflict: read it again and patch again). Then
 * one transaction sets size = max(size, end), mtime, ctime and the block count on the inode,
 * checking the inode's version; if another writer changed the inode in between, read it
 * again and retry (RETRIES times; the blocks are not written again). A crash or error after
 * some blocks and before the inode leaves the bytes written inside the old size readable and
 * those past it not: a write is not atomic, as on a local file system after a crash.
 *
 * Append (fs_data_write with append, for O_APPEND files): where the bytes go is the size,
 * which only the inode's transaction can pin, so blocks and inode go in one transaction (two
 * phase commit across the groups holding them; the inode first, so that it is the primary
 * and two appenders collide on it before locking anything else) that also checks the version
 * of the partial block it extends. On a conflict nothing was written, and it starts again at
 * the new size. At most FS_APPEND_CHUNK bytes go in one transaction.
 *
 * Truncate: the inode first (size, mtime, ctime; one version-checked transaction), then the
 * data past the new size goes: the block holding the new end is cut there (patched as above),
 * and the blocks wholly past it are deleted, one transaction per stripe that holds any (a
 * scan of the stripe tells; a hole costs a read, not a disk write). Reads clamp to the size,
 * so data past it is never read while the size stays; but a later write or truncate that
 * extends the file over it would make it readable again. So a shrinking truncate writes, in
 * the inode's own transaction (same bucket), a reclaim record r{pppp} ino nonce holding the
 * old end, and deletes it once the cleanup has finished. A truncate whose process stopped in
 * between, or whose cleanup failed part-way (or stopped after TRUNC_MAX_STRIPES stripes: 16
 * GiB, a scan per MiB), leaves the record, and a mount's collector (fs/orphan.c) finishes the
 * job once the record is older than the orphan grace period: it cuts and deletes what lies
 * past the size the file has then, up to the old end (fs_data_reclaim). Left alone: a write
 * racing a truncate of the same range from elsewhere can lose blocks it put before its inode
 * committed, and so can a write that extends the file while the collector finishes an
 * interrupted truncate of it.
 *
 * Block count (st_blocks) is approximate: a write counts the blocks it creates, that is a
 * partial block it found missing and a whole block at or past the old end of the file
 * (filling a hole inside the old size with a whole block is not counted); a shrink caps the
 * count at the blocks below the new size, and the count never exceeds the blocks the size
 * spans. */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "../common/log.h"
#include "../common/random.h"
#include "data.h"
#include "internal.h"
#include "readahead.h"

#define RETRIES 50
/* Stripes a truncate deletes before leaving the rest to the collector (16 GiB). */
#define TRUNC_MAX_STRIPES 16384
/* st_blocks units (512 bytes) in one block. */
#define UNITS (FS_BLOCK_SIZE / 512)

static void backoff(int attempt)
{
    /* 1..10 ms, plus jitter from the clock so that two retrying writers drift apart */
    long ms = attempt < 9 ? attempt + 1 : 10;
    struct timespec ts = {0, ms * 1000000L + (long)((uint64_t)fs_now_ns() % 1000000u)};
    nanosleep(&ts, NULL);
}

static uint64_t blocks_spanned(uint64_t size)
{
    return size / FS_BLOCK_SIZE + (size % FS_BLOCK_SIZE != 0);
}

/* 0 for a regular file, else what a data operation on it returns. */
static int check_regular(const struct fs_inode *in)
{
    if (S_ISREG(in->a.mode)) {
        return 0;
    }
    return S_ISDIR(in->a.mode) ? -EISDIR : -EINVAL;
}

/* Read the inode of a regular file. */
static int regular_get(struct rfs_fs *fs, uint64_t ino, struct fs_inode *in)
{
    int rv = fs_inode_get(fs, ino, in);
    if (rv == 0 && (rv = check_regular(in)) != 0) {
        fs_inode_clear(in);
    }
    return rv;
}

/* Block blk of ino as stored: v->found, v->version, v->value (at most FS_BLOCK_SIZE bytes;
 * longer is corruption: -EIO). Clear v with kv_client_value_clear, also after a failure. */
static int block_get(struct rfs_fs *fs, uint64_t ino, uint64_t blk, struct kv_client_value *v)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    int rv = kv_client_get(fs->kv, key, fs_key_block(key, ino, blk), v, errmsg);
    if (rv != 0) {
        rfs_warnf("fs: reading block %llu of %llx: %s", (unsigned long long)blk,
                  (unsigned long long)ino, errmsg);
        return fs_errno(rv);
    }
    if (v->found && v->value.len > FS_BLOCK_SIZE) {
        rfs_errorf("fs: block %llu of %llx holds %zu bytes (more than a block)",
                   (unsigned long long)blk, (unsigned long long)ino, v->value.len);
        return -EIO;
    }
    return 0;
}

/* Change block blk in place: with src, write len bytes at byte `at` (the block grows to
 * at + len if shorter, zero-filled); without, cut the block to at most `at` bytes. The new
 * bytes replace the ones read only if the block still has the version read; else read it
 * again. *created (may be NULL) tells whether the block was missing. */
static int block_patch(struct rfs_fs *fs, uint64_t ino, uint64_t blk, size_t at, const void *src,
                       size_t len, bool *created)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    size_t klen = fs_key_block(key, ino, blk);
    char *tmp = NULL;
    int rv = -EIO;

    assert(at + len <= FS_BLOCK_SIZE);
    for (int i = 0; i < RETRIES; i++) {
        struct kv_client_value v;
        struct kv_txn_read rd = {.key = key, .klen = klen};
        struct kv_txn_write wr = {.key = key, .klen = klen};
        size_t cur, nlen;

        rv = block_get(fs, ino, blk, &v);
        if (rv != 0) {
            kv_client_value_clear(&v);
            break;
        }
        cur = v.found ? v.value.len : 0;
        rd.version = v.found ? v.version : 0;
        if (created != NULL) {
            *created = !v.found;
        }
        if (src == NULL && cur <= at) {
            kv_client_value_clear(&v); /* nothing past the cut */
            break;
        }
        if (tmp == NULL && (tmp = rfs_malloc(FS_BLOCK_SIZE)) == NULL) {
            kv_client_value_clear(&v);
            rv = -ENOMEM;
            break;
        }
        if (cur > 0) {
            memcpy(tmp, v.value.base, cur);
        }
        kv_client_value_clear(&v);
        if (src != NULL) {
            if (cur < at) {
                memset(tmp + cur, 0, at - cur);
            }
            memcpy(tmp + at, src, len);
            nlen = at + len > cur ? at + len : cur;
        } else {
            nlen = at;
        }
        wr.value = tmp;
        wr.vlen = nlen;
        rv = kv_client_txn(fs->kv, &rd, 1, &wr, 1, errmsg);
        fs_changed(fs);
        if (rv != RFS_ECONFLICT) {
            if (rv != 0) {
                rfs_warnf("fs: writing block %llu of %llx: %s", (unsigned long long)blk,
                          (unsigned long long)ino, errmsg);
            }
            rv = fs_errno(rv);
            break;
        }
        rv = -EIO;
        backoff(i);
    }
    rfs_free(tmp);
    return rv;
}

/* Put blocks [first, first + n) of ino, whole, from src: one transaction when they share a
 * stripe (one bucket, so one request and one log entry for up to FS_STRIPE_BLOCKS blocks),
 * which is what a long sequential write sends. */
static int blocks_put(struct rfs_fs *fs, uint64_t ino, uint64_t first, unsigned n, const char *src)
{
    char keys[FS_STRIPE_BLOCKS][FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_txn_write wr[FS_STRIPE_BLOCKS];
    int rv;
    assert(n > 0 && n <= FS_STRIPE_BLOCKS);
    for (unsigned i = 0; i < n; i++) {
        wr[i] = (struct kv_txn_write){.key = keys[i],
                                      .klen = fs_key_block(keys[i], ino, first + i),
                                      .value = src + (size_t)i * FS_BLOCK_SIZE,
                                      .vlen = FS_BLOCK_SIZE};
    }
    rv = n == 1 ? kv_client_put(fs->kv, keys[0], wr[0].klen, src, FS_BLOCK_SIZE, NULL, errmsg)
                : kv_client_txn(fs->kv, NULL, 0, wr, n, errmsg);
    fs_changed(fs);
    if (rv != 0) {
        rfs_warnf("fs: writing blocks %llu to %llu of %llx: %s", (unsigned long long)first,
                  (unsigned long long)(first + n - 1), (unsigned long long)ino, errmsg);
    }
    return fs_errno(rv);
}

/* Write the blocks of [off, off + size); *created counts the blocks made (see the top). A run
 * of whole blocks goes a stripe at a time (blocks_put); a partial block is patched. */
static int blocks_write(struct rfs_fs *fs, uint64_t ino, uint64_t old_size, uint64_t off,
                        const char *buf, size_t size, uint64_t *created)
{
    uint64_t end = off + size, old_blocks = blocks_spanned(old_size);
    *created = 0;
    for (uint64_t blk = off / FS_BLOCK_SIZE; blk * FS_BLOCK_SIZE < end;) {
        uint64_t start = blk * FS_BLOCK_SIZE;
        size_t lo = (size_t)((off > start ? off : start) - start);
        size_t hi = (size_t)((end < start + FS_BLOCK_SIZE ? end : start + FS_BLOCK_SIZE) - start);
        const char *src = buf + (start + lo - off);
        int rv;
        if (lo == 0 && hi == FS_BLOCK_SIZE) {
            /* whole blocks from here to the end of the range or of the stripe */
            uint64_t stripe_end = (blk / FS_STRIPE_BLOCKS + 1) * FS_STRIPE_BLOCKS;
            unsigned n = 0;
            while (blk + n < stripe_end && (blk + n + 1) * FS_BLOCK_SIZE <= end) {
                n++;
            }
            rv = blocks_put(fs, ino, blk, n, src);
            if (rv != 0) {
                return rv;
            }
            for (unsigned i = 0; i < n; i++) {
                *created += blk + i >= old_blocks;
            }
            blk += n;
        } else {
            bool made;
            rv = block_patch(fs, ino, blk, lo, src, hi - lo, &made);
            if (rv != 0) {
                return rv;
            }
            *created += made;
            blk++;
        }
    }
    return 0;
}

/* Commit in (as read, with its version): size at least end, mtime and ctime now, `created`
 * more blocks. On a conflict read the inode again and retry. */
static int size_commit(struct rfs_fs *fs, struct fs_inode *in, uint64_t end, uint64_t created)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    uint64_t ino = in->a.ino;
    size_t klen = fs_key_inode(key, ino);
    int rv = -EIO;

    for (int i = 0; i < RETRIES; i++) {
        struct kv_txn_read rd = {.key = key, .klen = klen, .version = in->version};
        struct kv_txn_write wr = {.key = key, .klen = klen};
        uint64_t blocks;
        if (i > 0) {
            fs_inode_clear(in);
            rv = regular_get(fs, ino, in);
            if (rv != 0) {
                return rv;
            }
            rd.version = in->version;
        }
        if (end > in->a.size) {
            in->a.size = end;
        }
        blocks = in->a.blocks / UNITS + created;
        if (blocks > blocks_spanned(in->a.size)) {
            blocks = blocks_spanned(in->a.size);
        }
        in->a.blocks = blocks * UNITS;
        in->a.mtime_ns = in->a.ctime_ns = fs_now_ns();
        rv = fs_inode_pack(in, (void **)&wr.value, &wr.vlen);
        if (rv != 0) {
            return rv;
        }
        rv = kv_client_txn(fs->kv, &rd, 1, &wr, 1, errmsg);
        fs_changed(fs);
        rfs_free((void *)wr.value);
        if (rv != RFS_ECONFLICT) {
            if (rv != 0) {
                rfs_warnf("fs: updating inode %llx after a write: %s", (unsigned long long)ino,
                          errmsg);
            }
            return fs_errno(rv);
        }
        rv = -EIO;
        backoff(i);
    }
    rfs_warnf("fs: inode %llx: still changing after %d tries", (unsigned long long)ino, RETRIES);
    return rv;
}

/* Append size (<= FS_APPEND_CHUNK) bytes in one transaction with the inode; *at gets the
 * offset. -EAGAIN: the inode or the extended block changed (nothing was written). */
static int append_once(struct rfs_fs *fs, uint64_t ino, const char *buf, size_t size, uint64_t *at)
{
    enum { MAX_W = FS_APPEND_CHUNK / FS_BLOCK_SIZE + 2 };
    char keys[MAX_W + 1][FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_txn_read rd[2];
    struct kv_txn_write wr[MAX_W + 1];
    unsigned nr = 0, nw = 1;
    struct fs_inode in;
    char *head = NULL;
    uint64_t start, end, created = 0;
    size_t done = 0;
    int rv;

    assert(size <= FS_APPEND_CHUNK);
    rv = regular_get(fs, ino, &in);
    if (rv != 0) {
        return rv;
    }
    start = in.a.size;
    end = start + size;
    if (end > FS_MAX_FILE_SIZE) {
        fs_inode_clear(&in);
        return -EFBIG;
    }
    rd[nr++] = (struct kv_txn_read){
        .key = keys[0], .klen = fs_key_inode(keys[0], ino), .version = in.version};
    if (start % FS_BLOCK_SIZE != 0) {
        /* The partial last block: its bytes below the old size, then ours. Anything it holds
         * past the old size is not part of the file, and goes. */
        uint64_t blk = start / FS_BLOCK_SIZE;
        size_t keep = (size_t)(start % FS_BLOCK_SIZE);
        size_t n = size < FS_BLOCK_SIZE - keep ? size : FS_BLOCK_SIZE - keep;
        struct kv_client_value v;
        rv = block_get(fs, ino, blk, &v);
        if (rv == 0 && (head = rfs_calloc(1, FS_BLOCK_SIZE)) == NULL) {
            rv = -ENOMEM;
        }
        if (rv != 0) {
            kv_client_value_clear(&v);
            goto out;
        }
        if (v.found && v.value.len > 0) {
            memcpy(head, v.value.base, v.value.len < keep ? v.value.len : keep);
        }
        memcpy(head + keep, buf, n);
        created += !v.found;
        rd[nr++] = (struct kv_txn_read){.key = keys[1],
                                        .klen = fs_key_block(keys[1], ino, blk),
                                        .version = v.found ? v.version : 0};
        kv_client_value_clear(&v);
        wr[nw++] = (struct kv_txn_write){
            .key = keys[1], .klen = rd[1].klen, .value = head, .vlen = keep + n};
        done = n;
    }
    while (done < size) {
        /* Blocks at or past the old end: ours alone, stored as long as we fill them. */
        uint64_t blk = (start + done) / FS_BLOCK_SIZE;
        size_t n = size - done < FS_BLOCK_SIZE ? size - done : FS_BLOCK_SIZE;
        assert(nw < MAX_W + 1);
        wr[nw] = (struct kv_txn_write){.key = keys[nw],
                                       .klen = fs_key_block(keys[nw], ino, blk),
                                       .value = buf + done,
                                       .vlen = n};
        nw++;
        created++;
        done += n;
    }
    in.a.size = end;
    in.a.blocks = (in.a.blocks / UNITS + created) * UNITS;
    if (in.a.blocks / UNITS > blocks_spanned(end)) {
        in.a.blocks = blocks_spanned(end) * UNITS;
    }
    in.a.mtime_ns = in.a.ctime_ns = fs_now_ns();
    wr[0] = (struct kv_txn_write){.key = keys[0], .klen = rd[0].klen};
    rv = fs_inode_pack(&in, (void **)&wr[0].value, &wr[0].vlen);
    if (rv != 0) {
        goto out;
    }
    rv = kv_client_txn(fs->kv, rd, nr, wr, nw, errmsg);
    fs_changed(fs);
    rfs_free((void *)wr[0].value);
    if (rv != 0 && rv != RFS_ECONFLICT) {
        rfs_warnf("fs: appending %zu bytes to %llx: %s", size, (unsigned long long)ino, errmsg);
    }
    rv = fs_errno(rv);
    if (rv == 0) {
        *at = start;
    }
out:
    rfs_free(head);
    fs_inode_clear(&in);
    return rv;
}

static int append_chunks(struct rfs_fs *fs, uint64_t ino, const char *buf, size_t size,
                         uint64_t *at)
{
    size_t done = 0;
    while (done < size) {
        size_t n = size - done < FS_APPEND_CHUNK ? size - done : FS_APPEND_CHUNK;
        uint64_t where = 0;
        int rv = -EAGAIN;
        for (int i = 0; i < RETRIES && rv == -EAGAIN; i++) {
            if (i > 0) {
                backoff(i);
            }
            rv = append_once(fs, ino, buf + done, n, &where);
        }
        if (rv != 0) {
            return rv == -EAGAIN ? -EIO : rv;
        }
        if (done == 0 && at != NULL) {
            *at = where;
        }
        done += n;
    }
    return 0;
}

int fs_data_write(struct rfs_fs *fs, uint64_t ino, uint64_t off, const void *buf, size_t size,
                  bool append, uint64_t *at)
{
    struct fs_inode in;
    uint64_t created;
    int rv;

    if (append) {
        return append_chunks(fs, ino, buf, size, at);
    }
    if (off > FS_MAX_FILE_SIZE || size > FS_MAX_FILE_SIZE - off) {
        return -EFBIG;
    }
    rv = regular_get(fs, ino, &in);
    if (rv != 0 || size == 0) {
        fs_inode_clear(&in);
        return rv;
    }
    rv = blocks_write(fs, ino, in.a.size, off, buf, size, &created);
    if (rv == 0) {
        rv = size_commit(fs, &in, off + size, created);
    }
    fs_inode_clear(&in);
    if (rv == 0 && at != NULL) {
        *at = off;
    }
    return rv;
}

int fs_data_begin(struct rfs_fs *fs, uint64_t ino, struct fs_inode *in)
{
    return regular_get(fs, ino, in);
}

int fs_data_put(struct rfs_fs *fs, uint64_t ino, uint64_t old_size, uint64_t off, const void *buf,
                size_t size, uint64_t *created)
{
    *created = 0;
    if (off > FS_MAX_FILE_SIZE || size > FS_MAX_FILE_SIZE - off) {
        return -EFBIG;
    }
    return size == 0 ? 0 : blocks_write(fs, ino, old_size, off, buf, size, created);
}

int fs_data_commit(struct rfs_fs *fs, struct fs_inode *in, uint64_t end, uint64_t created)
{
    return size_commit(fs, in, end, created);
}

int rfs_fs_write(struct rfs_fs *fs, uint64_t ino, uint64_t off, const void *buf, size_t size)
{
    return fs_data_write(fs, ino, off, buf, size, false, NULL);
}

int rfs_fs_read(struct rfs_fs *fs, uint64_t ino, uint64_t off, size_t size, void *buf, size_t *n)
{
    struct fs_readahead ra;
    int rv;
    fs_readahead_init(&ra, fs, ino);
    ra.no_ahead = true;
    rv = fs_readahead_read(&ra, off, size, buf, n);
    fs_readahead_clear(&ra);
    return rv;
}

/* Whether blocks [blk, end) (one stripe) hold anything: one scan for the first of them.
 * When the scan fails, assume they do. */
static bool stripe_used(struct rfs_fs *fs, uint64_t ino, uint64_t blk, uint64_t end)
{
    char lo[FS_KEY_MAX], hi[FS_KEY_MAX + 1], errmsg[RFS_ERRMSG_SIZE];
    struct kv_scan_result res;
    size_t lolen = fs_key_block(lo, ino, blk), hilen = fs_key_block(hi, ino, end - 1);
    bool used;
    hi[hilen++] = '\0'; /* the first key after the last block */
    if (kv_client_scan(fs->kv, lo, lolen, hi, hilen, 1, &res, errmsg) != 0) {
        return true;
    }
    used = res.n > 0;
    kv_scan_result_clear(&res);
    return used;
}

/* Delete blocks [first, stop) of one stripe in one transaction, if the stripe holds any.
 * Returns 0 or an RFS_E* code with errmsg. */
static int drop_stripe(struct rfs_fs *fs, uint64_t ino, uint64_t first, uint64_t stop, char *errmsg)
{
    char keys[FS_STRIPE_BLOCKS][FS_KEY_MAX];
    struct kv_txn_write wr[FS_STRIPE_BLOCKS];
    unsigned nw = 0;
    int rv;
    if (!stripe_used(fs, ino, first, stop)) {
        return 0;
    }
    for (uint64_t b = first; b < stop; b++, nw++) {
        wr[nw] = (struct kv_txn_write){
            .key = keys[nw], .klen = fs_key_block(keys[nw], ino, b), .del = true};
    }
    rv = kv_client_txn(fs->kv, NULL, 0, wr, nw, errmsg);
    fs_changed(fs);
    return rv;
}

/* After a shrink to size: cut the block holding the new end, delete the blocks wholly past
 * it up to block end, one transaction per stripe that has any (a scan tells, which costs no
 * disk write: a hole is cheap to skip). Returns 0 when all of it went; else -EIO after
 * logging what was left (the reclaim record keeps it for the collector). */
static int truncate_cleanup(struct rfs_fs *fs, uint64_t ino, uint64_t size, uint64_t end)
{
    char errmsg[RFS_ERRMSG_SIZE];
    uint64_t blk = blocks_spanned(size);
    unsigned stripes = 0;
    int rv, bad = 0;

    if (size % FS_BLOCK_SIZE != 0 && size / FS_BLOCK_SIZE < end) {
        rv = block_patch(fs, ino, size / FS_BLOCK_SIZE, (size_t)(size % FS_BLOCK_SIZE), NULL, 0,
                         NULL);
        if (rv != 0) {
            rfs_warnf("fs: truncating %llx: block %llu keeps its bytes past the size (%s)",
                      (unsigned long long)ino, (unsigned long long)(size / FS_BLOCK_SIZE),
                      strerror(-rv));
            bad = 1;
        }
    }
    for (; blk < end; stripes++) {
        uint64_t first = blk, stop = (blk / FS_STRIPE_BLOCKS + 1) * FS_STRIPE_BLOCKS;
        if (stripes == TRUNC_MAX_STRIPES) {
            rfs_warnf("fs: truncating %llx: blocks %llu to %llu left for the collector",
                      (unsigned long long)ino, (unsigned long long)blk,
                      (unsigned long long)end - 1);
            return -EIO;
        }
        stop = stop < end ? stop : end;
        blk = stop;
        rv = drop_stripe(fs, ino, first, stop, errmsg);
        if (rv != 0) {
            rfs_warnf("fs: truncating %llx: deleting blocks %llu to %llu: %s",
                      (unsigned long long)ino, (unsigned long long)first,
                      (unsigned long long)stop - 1, errmsg);
            bad = 1;
        }
    }
    return bad ? -EIO : 0;
}

/* A reclaim record's value: the block past the last one to delete, then the wall-clock ms of
 * the truncate (both u64 big-endian). */
#define RECLAIM_LEN 16

int fs_reclaim_parse(const void *val, size_t len, uint64_t *end, uint64_t *when)
{
    if (len != RECLAIM_LEN) {
        return -1;
    }
    *end = rfs_get_be64(val);
    *when = rfs_get_be64((const unsigned char *)val + 8);
    return 0;
}

int fs_data_reclaim(struct rfs_fs *fs, uint64_t ino, uint64_t end)
{
    char errmsg[RFS_ERRMSG_SIZE];
    struct fs_inode in;
    int rv = fs_inode_get(fs, ino, &in);
    if (rv == -ENOENT) {
        /* deleted since: whatever of its blocks is left goes */
        rv = fs_data_drop(fs, ino, 0, end, errmsg);
        if (rv != 0) {
            rfs_warnf("fs: reclaiming the data of deleted file %llx: %s", (unsigned long long)ino,
                      errmsg);
        }
        return rv;
    }
    if (rv != 0) {
        return rv;
    }
    if (S_ISREG(in.a.mode) && in.a.size < end * FS_BLOCK_SIZE) {
        /* from the size the file has now: what a write put back since is the file's */
        rv = truncate_cleanup(fs, ino, in.a.size, end);
    }
    fs_inode_clear(&in);
    return rv;
}

void fs_data_skip_truncate_cleanup(struct rfs_fs *fs, bool skip)
{
    fs->skip_truncate_cleanup = skip;
}

int fs_data_drop(struct rfs_fs *fs, uint64_t ino, uint64_t blk, uint64_t end, char *errmsg)
{
    while (blk < end) {
        uint64_t stop = (blk / FS_STRIPE_BLOCKS + 1) * FS_STRIPE_BLOCKS;
        int rv;
        stop = stop < end ? stop : end;
        rv = drop_stripe(fs, ino, blk, stop, errmsg);
        if (rv != 0) {
            return fs_errno(rv);
        }
        blk = stop;
    }
    return 0;
}

int rfs_fs_truncate(struct rfs_fs *fs, uint64_t ino, uint64_t size)
{
    char key[FS_KEY_MAX], rkey[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    size_t klen = fs_key_inode(key, ino), rklen = 0;
    unsigned char rval[RECLAIM_LEN];
    uint64_t old = 0;
    int rv = -EIO;

    if (size > FS_MAX_FILE_SIZE) {
        return -EFBIG;
    }
    for (int i = 0; i < RETRIES; i++) {
        struct kv_txn_read rd = {.key = key, .klen = klen};
        struct kv_txn_write wr[2] = {{.key = key, .klen = klen}};
        unsigned nw = 1;
        struct fs_inode in;
        rv = regular_get(fs, ino, &in);
        if (rv != 0) {
            return rv;
        }
        old = in.a.size; /* the same size still sets mtime and ctime, as ext4 does */
        rd.version = in.version;
        in.a.size = size;
        if (in.a.blocks / UNITS > blocks_spanned(size)) {
            in.a.blocks = blocks_spanned(size) * UNITS;
        }
        in.a.mtime_ns = in.a.ctime_ns = fs_now_ns();
        rv = fs_inode_pack(&in, (void **)&wr[0].value, &wr[0].vlen);
        fs_inode_clear(&in);
        if (rv != 0) {
            return rv;
        }
        if (size < old) {
            /* The data past the new size goes after this commits; until it has, a record in
             * the inode's bucket (so in this one-group transaction) says what is left, for the
             * collector if this process stops first. */
            if (rklen == 0) {
                rklen = fs_key_reclaim(rkey, ino, rfs_random_u64());
            }
            rfs_put_be64(rval, blocks_spanned(old));
            rfs_put_be64(rval + 8, (uint64_t)fs_now_ns() / 1000000u);
            wr[nw++] = (struct kv_txn_write){
                .key = rkey, .klen = rklen, .value = rval, .vlen = sizeof rval};
        }
        rv = kv_client_txn(fs->kv, &rd, 1, wr, nw, errmsg);
        fs_changed(fs);
        rfs_free((void *)wr[0].value);
        if (rv != RFS_ECONFLICT) {
            if (rv != 0) {
                rfs_warnf("fs: truncating %llx: %s", (unsigned long long)ino, errmsg);
            }
            rv = fs_errno(rv);
            break;
        }
        rv = -EIO;
        backoff(i);
    }
    if (rv == 0 && size < old && !fs->skip_truncate_cleanup &&
        truncate_cleanup(fs, ino, size, blocks_spanned(old)) == 0 &&
        kv_client_delete(fs->kv, rkey, rklen, NULL, errmsg) != 0) {
        rfs_warnf("fs: truncating %llx: the reclaim record stays for the collector: %s",
                  (unsigned long long)ino, errmsg);
    }
    return rv;
}
