/* Open files: write buffering, write-behind and read-ahead over fs/data.c (see file.h).
 *
 * The buffer holds one contiguous range of the file, [off, off + len), or for an O_APPEND
 * handle bytes to append in order. A write inside or just after the range joins it; any
 * other write first hands the buffer on. When a write would make the buffer longer than
 * RFS_FILE_FLUSH_BYTES, the handle hands on the whole blocks of the buffer and keeps the
 * partial block at its end (the next sequential write continues it, so a long sequential
 * write puts whole blocks and never reads one back).
 *
 * Write-behind (not for O_APPEND): what is handed on goes to the cluster as a background
 * job on the filesystem's I/O pool (fs_data_put: blocks only, a stripe per request), up to
 * WB_MAX_JOBS at once, so a sequential writer keeps several requests in flight and the
 * groups commit them in batches. The inode (size, mtime, ctime, blocks) is updated once, at
 * the next sync point: flush, fsync, release, a read or truncate through the handle (each
 * waits for the jobs, writes what is left, then commits the inode). Until then nobody sees
 * the new size: after a crash the file has its old size, as after a crash of a local file
 * system before fsync. Two jobs never write the same block at once: a hand-off whose blocks
 * overlap those of a job in flight waits for the jobs first. A job that fails leaves its
 * error for the next write or sync point (like the kernel's writeback errors: the bytes are
 * lost, the call that learns it fails with -EIO or the job's error).
 *
 * An O_APPEND handle writes its buffer in place at each hand-off, appending atomically
 * (fs_data_write with append). */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "data.h"
#include "internal.h"
#include "io_pool.h"
#include "orphan.h"
#include "readahead.h"

/* Background writes of one handle in flight at most (each up to RFS_FILE_FLUSH_BYTES plus a
 * block). */
#define WB_MAX_JOBS 8

struct rfs_file {
    struct rfs_fs *fs;
    uint64_t ino;
    int flags;
    pthread_mutex_t mu; /* protects everything below but `created` */
    char *buf;          /* the buffered bytes, rfs_malloc'd */
    size_t len, cap;
    uint64_t off; /* where buf[0] goes (not used when appending) */
    /* Write-behind: jobs in wb, each holding a slot of wb_slots with the blocks it writes
     * (wb_mu, which the jobs take, protects the slots). dirty: blocks were written (or are
     * in flight) since the inode was read into base, and its update is owed, with size at
     * least dirty_end. */
    struct fs_io_batch wb;
    pthread_mutex_t wb_mu;
    struct wb_slot {
        bool busy;
        uint64_t lo, hi; /* blocks [lo, hi) */
    } wb_slots[WB_MAX_JOBS];
    bool dirty;
    struct fs_inode base;
    uint64_t dirty_end;
    _Atomic uint64_t created; /* blocks the jobs made, for st_blocks */
    struct fs_readahead ra;
};

struct wb_job {
    struct rfs_file *f;
    struct wb_slot *slot;
    uint64_t off, old_size;
    size_t len;
    char data[];
};

struct rfs_file *rfs_file_open(struct rfs_fs *fs, uint64_t ino, int flags)
{
    struct rfs_file *f = rfs_calloc(1, sizeof *f);
    if (f == NULL) {
        return NULL;
    }
    f->fs = fs;
    f->ino = ino;
    f->flags = flags;
    pthread_mutex_init(&f->mu, NULL);
    fs_io_batch_init(&f->wb);
    pthread_mutex_init(&f->wb_mu, NULL);
    fs_readahead_init(&f->ra, fs, ino);
    fs_orphans_opened(fs->orphans, ino);
    return f;
}

static bool appending(const struct rfs_file *f)
{
    return (f->flags & O_APPEND) != 0;
}

static int wb_run(void *arg)
{
    struct wb_job *job = arg;
    uint64_t created = 0;
    int rv = fs_data_put(job->f->fs, job->f->ino, job->old_size, job->off, job->data, job->len,
                         &created);
    atomic_fetch_add(&job->f->created, created);
    pthread_mutex_lock(&job->f->wb_mu);
    job->slot->busy = false; /* before the batch counts the job done: a waiter finds it free */
    pthread_mutex_unlock(&job->f->wb_mu);
    rfs_free(job);
    return rv;
}

/* Start owing the inode an update: read it (is it still a regular file?). Holds f->mu. */
static int dirty_begin(struct rfs_file *f)
{
    int rv;
    if (f->dirty) {
        return 0;
    }
    rv = fs_data_begin(f->fs, f->ino, &f->base);
    if (rv != 0) {
        return rv;
    }
    f->dirty = true;
    f->dirty_end = 0;
    atomic_store(&f->created, 0);
    return 0;
}

/* Hand the first n bytes of the buffer to a background job. Holds f->mu. */
static int wb_handoff(struct rfs_file *f, size_t n)
{
    uint64_t lo = f->off / FS_BLOCK_SIZE;
    uint64_t hi = (f->off + n + FS_BLOCK_SIZE - 1) / FS_BLOCK_SIZE;
    struct wb_slot *slot;
    struct wb_job *job;
    int rv = dirty_begin(f);
    if (rv != 0) {
        return rv;
    }
    /* never two jobs on one block at once; never more than WB_MAX_JOBS */
    for (;;) {
        bool overlap = false;
        slot = NULL;
        pthread_mutex_lock(&f->wb_mu);
        for (unsigned i = 0; i < WB_MAX_JOBS; i++) {
            struct wb_slot *w = &f->wb_slots[i];
            if (w->busy && lo < w->hi && w->lo < hi) {
                overlap = true;
            } else if (!w->busy && slot == NULL) {
                slot = w;
            }
        }
        if (!overlap && slot != NULL) {
            *slot = (struct wb_slot){.busy = true, .lo = lo, .hi = hi};
        }
        pthread_mutex_unlock(&f->wb_mu);
        if (!overlap && slot != NULL) {
            break;
        }
        rv = fs_io_batch_wait(&f->wb, overlap ? 0 : WB_MAX_JOBS - 1);
        if (rv != 0) {
            return rv;
        }
    }
    job = rfs_malloc(sizeof *job + n);
    if (job != NULL) {
        *job = (struct wb_job){
            .f = f, .slot = slot, .off = f->off, .old_size = f->base.a.size, .len = n};
        memcpy(job->data, f->buf, n);
        rv = fs_io_submit(f->fs->io, &f->wb, wb_run, job);
    }
    if (job == NULL || rv != 0) {
        rfs_free(job);
        pthread_mutex_lock(&f->wb_mu);
        slot->busy = false;
        pthread_mutex_unlock(&f->wb_mu);
        return -ENOMEM;
    }
    if (f->off + n > f->dirty_end) {
        f->dirty_end = f->off + n;
    }
    memmove(f->buf, f->buf + n, f->len - n);
    f->len -= n;
    f->off += n;
    return 0;
}

/* A sync point: wait for the jobs, write what is buffered, commit the inode. Holds f->mu.
 * A failed sync keeps the buffered bytes for the next try when the failure may pass (-EIO,
 * -EAGAIN, -ENOMEM), else drops them. */
static int file_sync(struct rfs_file *f)
{
    int rv = fs_io_batch_wait(&f->wb, 0);
    uint64_t created = 0;
    if (rv == 0 && f->len > 0 && appending(f)) {
        rv = fs_data_write(f->fs, f->ino, f->off, f->buf, f->len, true, NULL);
        created = 0;
    } else if (rv == 0 && f->len > 0) {
        rv = dirty_begin(f);
        if (rv == 0) {
            rv = fs_data_put(f->fs, f->ino, f->base.a.size, f->off, f->buf, f->len, &created);
        }
        if (rv == 0 && f->off + f->len > f->dirty_end) {
            f->dirty_end = f->off + f->len;
        }
    }
    if (rv == 0 && f->dirty) {
        rv = fs_data_commit(f->fs, &f->base, f->dirty_end, atomic_load(&f->created) + created);
    }
    if (rv != 0 && (rv == -EIO || rv == -EAGAIN || rv == -ENOMEM)) {
        return rv; /* may pass: keep the bytes (and the debt) for the next try */
    }
    if (rv != 0 && f->len > 0) {
        rfs_warnf("fs: %llx: dropping %zu buffered bytes (%s)", (unsigned long long)f->ino, f->len,
                  strerror(-rv));
    }
    if (f->dirty) {
        fs_inode_clear(&f->base);
        f->dirty = false;
    }
    f->off += f->len;
    f->len = 0;
    return rv;
}

/* Hand on the buffer's whole blocks (whole: all of it) without waiting for them. Holds
 * f->mu. */
static int file_handoff(struct rfs_file *f, bool whole)
{
    size_t n = f->len;
    if (f->len == 0) {
        return 0;
    }
    if (appending(f)) {
        return file_sync(f);
    }
    if (!whole) {
        uint64_t end = f->off + f->len, cut = end - end % FS_BLOCK_SIZE;
        if (cut <= f->off) {
            return 0;
        }
        n = (size_t)(cut - f->off);
    }
    return wb_handoff(f, n);
}

/* Make room for len bytes. Holds f->mu. */
static int file_reserve(struct rfs_file *f, size_t len)
{
    size_t cap = (len + FS_BLOCK_SIZE - 1) / FS_BLOCK_SIZE * FS_BLOCK_SIZE;
    char *p;
    if (len <= f->cap) {
        return 0;
    }
    p = rfs_realloc(f->buf, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    f->buf = p;
    f->cap = cap;
    return 0;
}

/* Holds f->mu. */
static int file_write(struct rfs_file *f, uint64_t off, const void *data, size_t size)
{
    bool app = appending(f);
    size_t at, len;
    int rv;

    /* a job's error is this write's (the bytes it held are lost) */
    rv = fs_io_batch_wait(&f->wb, WB_MAX_JOBS);
    if (rv != 0) {
        return rv;
    }
    if (f->len > 0) {
        bool joins = app || (off >= f->off && off <= f->off + f->len);
        size_t after =
            app ? f->len + size
                : (joins && off + size > f->off + f->len ? (size_t)(off - f->off) + size : f->len);
        if (!joins) {
            rv = file_handoff(f, true);
        } else if (after > RFS_FILE_FLUSH_BYTES) {
            rv = file_handoff(f, false);
            if (rv == 0 && !app && off < f->off) {
                rv = file_handoff(f, true); /* it went back into what was handed on */
            }
        }
        if (rv != 0) {
            return rv;
        }
    }
    if (f->len == 0) {
        f->off = off;
    }
    at = app ? f->len : (size_t)(off - f->off);
    len = at + size > f->len ? at + size : f->len;
    rv = file_reserve(f, len);
    if (rv != 0) {
        return rv;
    }
    memcpy(f->buf + at, data, size);
    f->len = len;
    if (!app && f->len >= RFS_FILE_FLUSH_BYTES) {
        rv = file_handoff(f, false); /* a big write: on its way at once */
    }
    return rv;
}

int rfs_file_write(struct rfs_file *f, uint64_t off, const void *buf, size_t size)
{
    int rv;
    if ((f->flags & O_ACCMODE) == O_RDONLY) {
        return -EBADF;
    }
    if (!appending(f) && (off > FS_MAX_FILE_SIZE || size > FS_MAX_FILE_SIZE - off)) {
        return -EFBIG;
    }
    if (size == 0) {
        return 0;
    }
    pthread_mutex_lock(&f->mu);
    rv = file_write(f, off, buf, size);
    pthread_mutex_unlock(&f->mu);
    return rv;
}

int rfs_file_read(struct rfs_file *f, uint64_t off, size_t size, void *buf, size_t *n)
{
    int rv;
    *n = 0;
    pthread_mutex_lock(&f->mu);
    rv = file_sync(f);
    if (rv == 0) {
        rv = fs_readahead_read(&f->ra, off, size, buf, n);
    }
    pthread_mutex_unlock(&f->mu);
    return rv;
}

int rfs_file_flush(struct rfs_file *f)
{
    int rv;
    pthread_mutex_lock(&f->mu);
    rv = file_sync(f);
    pthread_mutex_unlock(&f->mu);
    return rv;
}

int rfs_file_truncate(struct rfs_file *f, uint64_t size)
{
    int rv;
    pthread_mutex_lock(&f->mu);
    rv = file_sync(f);
    if (rv == 0) {
        rv = rfs_fs_truncate(f->fs, f->ino, size);
    }
    pthread_mutex_unlock(&f->mu);
    return rv;
}

void rfs_file_release(struct rfs_file *f)
{
    int rv;
    if (f == NULL) {
        return;
    }
    pthread_mutex_lock(&f->mu);
    rv = file_sync(f);
    pthread_mutex_unlock(&f->mu);
    if (rv != 0) {
        rfs_warnf("fs: %llx: closing with %zu bytes not written (%s)", (unsigned long long)f->ino,
                  f->len, strerror(-rv));
    }
    if (f->dirty) { /* the sync failed: the inode update is lost with the bytes */
        fs_inode_clear(&f->base);
    }
    (void)fs_io_batch_wait(&f->wb, 0);
    fs_io_batch_destroy(&f->wb);
    pthread_mutex_destroy(&f->wb_mu);
    fs_readahead_clear(&f->ra);
    pthread_mutex_destroy(&f->mu);
    /* Last: an unlinked file's deletion may follow, after its bytes are written. */
    fs_orphans_closed(f->fs->orphans, f->ino);
    rfs_free(f->buf);
    rfs_free(f);
}
