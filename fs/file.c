/* Open files: write buffering and a one-block read cache over fs/data.c (see file.h).
 *
 * The buffer holds one contiguous range of the file, [off, off + len), or for an O_APPEND
 * handle bytes to append in order. A write inside or just after the range joins it; any
 * other write flushes first. When a write would make the buffer longer than
 * RFS_FILE_FLUSH_BYTES, the handle writes out the whole blocks of the buffer and keeps the
 * partial block at its end (the next sequential write continues it, so a long sequential
 * write puts whole blocks and never reads one back); an O_APPEND handle flushes it all. A
 * write of RFS_FILE_FLUSH_BYTES or more goes to the cluster directly, after the buffer. */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "data.h"
#include "internal.h"

struct rfs_file {
    struct rfs_fs *fs;
    uint64_t ino;
    int flags;
    pthread_mutex_t mu; /* protects everything below */
    char *buf;          /* the buffered bytes, rfs_malloc'd */
    size_t len, cap;
    uint64_t off;                /* where buf[0] goes (not used when appending) */
    struct fs_block_cache cache; /* the last block read */
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
    return f;
}

static bool appending(const struct rfs_file *f)
{
    return (f->flags & O_APPEND) != 0;
}

/* Write out the buffer, all of it (whole) or only up to its last block boundary. Holds
 * f->mu. */
static int file_flush(struct rfs_file *f, bool whole)
{
    size_t n = f->len;
    int rv;
    if (f->len == 0) {
        return 0;
    }
    if (!whole && !appending(f)) {
        uint64_t end = f->off + f->len, cut = end - end % FS_BLOCK_SIZE;
        if (cut <= f->off) {
            return 0;
        }
        n = (size_t)(cut - f->off);
    }
    rv = fs_data_write(f->fs, f->ino, f->off, f->buf, n, appending(f), NULL);
    if (rv != 0 && (rv == -EIO || rv == -EAGAIN || rv == -ENOMEM)) {
        return rv; /* may pass: keep the bytes for the next try */
    }
    if (rv != 0) {
        rfs_warnf("fs: %llx: dropping %zu buffered bytes (%s)", (unsigned long long)f->ino, f->len,
                  strerror(-rv));
        n = f->len;
    }
    memmove(f->buf, f->buf + n, f->len - n);
    f->len -= n;
    f->off += n;
    return rv;
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
    bool big = size >= RFS_FILE_FLUSH_BYTES;
    size_t at, len;
    int rv;

    if (f->len > 0) {
        bool joins = app || (off >= f->off && off <= f->off + f->len);
        size_t after =
            app ? f->len + size
                : (joins && off + size > f->off + f->len ? (size_t)(off - f->off) + size : f->len);
        if (!joins || big) {
            rv = file_flush(f, true);
        } else if (after > RFS_FILE_FLUSH_BYTES) {
            rv = file_flush(f, false);
            if (rv == 0 && !app && off < f->off) {
                rv = file_flush(f, true); /* it went back into what was written */
            }
        } else {
            rv = 0;
        }
        if (rv != 0) {
            return rv;
        }
    }
    if (big) {
        return fs_data_write(f->fs, f->ino, off, data, size, app, NULL);
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
    return 0;
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
    rv = file_flush(f, true);
    if (rv == 0) {
        rv = fs_data_read(f->fs, f->ino, off, size, buf, n, &f->cache);
    }
    pthread_mutex_unlock(&f->mu);
    return rv;
}

int rfs_file_flush(struct rfs_file *f)
{
    int rv;
    pthread_mutex_lock(&f->mu);
    rv = file_flush(f, true);
    pthread_mutex_unlock(&f->mu);
    return rv;
}

int rfs_file_truncate(struct rfs_file *f, uint64_t size)
{
    int rv;
    pthread_mutex_lock(&f->mu);
    rv = file_flush(f, true);
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
    rv = file_flush(f, true);
    pthread_mutex_unlock(&f->mu);
    if (rv != 0) {
        rfs_warnf("fs: %llx: closing with %zu bytes not written (%s)", (unsigned long long)f->ino,
                  f->len, strerror(-rv));
    }
    fs_block_cache_clear(&f->cache);
    pthread_mutex_destroy(&f->mu);
    rfs_free(f->buf);
    rfs_free(f);
}
