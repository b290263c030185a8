/* Blob files: large data values outside LevelDB (kv/blob.h has the format and the rules).
 *
 * Appends are plain pwritev calls at the end of the newest file; nothing is synced until
 * kv_blobs_sync, which the apply path calls once per LevelDB write. Reads open sealed files
 * on demand and keep up to BLOB_MAX_OPEN of them open.
 *
 * The collector is a scan of every data pointer in LevelDB, run on the state machine's
 * thread between two applies (the server's tick calls it through rfs_sm_ops.housekeep) (so nothing
 * changes under it), at most every BLOB_PAUSE_MS and no more often than 20 times its own last
 * duration, and only after a data key was deleted or a large value written (a value overwritten by
 * a small one is noticed at the next run). Deleting a file whose records are all dead could still
 * lose a pointer that only LevelDB's unsynced log says is dead: so the collector first makes
 * LevelDB durable (a synced write), and only then unlinks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "../common/crc32.h"
#include "../common/err.h"
#include "../common/log.h"
#include "blob.h"
#include "internal.h"

#define BLOB_PREFIX   "blob-"
#define BLOB_NAME_LEN 13 /* "blob-" + 8 hex digits */
#define BLOB_MAX_OPEN 64
#define BLOB_PAUSE_MS 2000u
/* The newest file is sealed (so that it can be collected) once all of it is dead, or it is
 * an eighth of the largest size (8 MiB) and less than half of it is alive. */
#define BLOB_SEAL_DIVISOR 8u

struct blob_file {
    uint32_t no;
    int fd; /* -1 while closed; the newest file's is always open */
    uint64_t size;
    uint64_t live; /* collector scratch: bytes of live records */
    int victim;    /* collector scratch: to be copied out and deleted */
};

struct kv_blobs {
    char dir[PATH_MAX];
    struct blob_file *files; /* ascending numbers; the last one takes appends */
    size_t n, cap;
    unsigned n_open;   /* sealed files with an open fd */
    int dirty;         /* appended since the last sync */
    int dir_dirty;     /* a file created since the last sync */
    uint64_t file_max; /* KV_BLOB_FILE_MAX; smaller in tests */
    uint64_t changes;
    uint64_t next_run_ms;
    uint64_t collected, copied;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void blob_path(const struct kv_blobs *bs, uint32_t no, char *out, size_t size)
{
    snprintf(out, size, "%s/" BLOB_PREFIX "%08x", bs->dir, no);
}

static int io_error(char *errmsg, const char *what, const struct kv_blobs *bs, uint32_t no)
{
    int e = errno;
    rfs_errmsg_printf(errmsg, "%s %s/" BLOB_PREFIX "%08x: %s", what, bs->dir, no, strerror(e));
    return e == ENOSPC ? RFS_ENOSPC : RFS_EIO;
}

static struct blob_file *file_find(struct kv_blobs *bs, uint32_t no)
{
    size_t lo = 0, hi = bs->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bs->files[mid].no == no) {
            return &bs->files[mid];
        }
        if (bs->files[mid].no < no) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static struct blob_file *file_newest(struct kv_blobs *bs)
{
    return &bs->files[bs->n - 1];
}

static int file_push(struct kv_blobs *bs, uint32_t no, int fd, uint64_t size)
{
    if (bs->n == bs->cap) {
        size_t cap = bs->cap == 0 ? 16 : bs->cap * 2;
        struct blob_file *f = rfs_realloc(bs->files, cap * sizeof *f);
        if (f == NULL) {
            return RFS_ENOMEM;
        }
        bs->files = f;
        bs->cap = cap;
    }
    bs->files[bs->n++] = (struct blob_file){.no = no, .fd = fd, .size = size};
    return 0;
}

static void file_close(struct kv_blobs *bs, struct blob_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
        if (f != file_newest(bs)) {
            bs->n_open--;
        }
    }
}

/* Start file number no as the newest one. */
static int file_create(struct kv_blobs *bs, uint32_t no, char *errmsg)
{
    char path[PATH_MAX + 32];
    int fd, rv;

    blob_path(bs, no, path, sizeof path);
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        return io_error(errmsg, "create", bs, no);
    }
    rv = file_push(bs, no, fd, 0);
    if (rv != 0) {
        close(fd);
        unlink(path);
        rfs_errmsg_printf(errmsg, "blob files: out of memory");
        return rv;
    }
    bs->dir_dirty = 1;
    return 0;
}

/* Seal the newest file (durable first) and start the next. */
static int file_rotate(struct kv_blobs *bs, char *errmsg)
{
    struct blob_file *cur = file_newest(bs);
    int rv = kv_blobs_sync(bs, errmsg);

    if (rv != 0) {
        return rv;
    }
    if (cur->no == UINT32_MAX) {
        rfs_errmsg_printf(errmsg, "blob files: numbers exhausted in %s", bs->dir);
        return RFS_EIO;
    }
    rv = file_create(bs, cur->no + 1, errmsg);
    if (rv == 0) {
        /* The old newest is now sealed and counts among the open ones. */
        cur = &bs->files[bs->n - 2];
        bs->n_open++;
        if (bs->n_open > BLOB_MAX_OPEN) {
            file_close(bs, cur);
        }
    }
    return rv;
}

static int parse_name(const char *name, uint32_t *no)
{
    char *end;
    unsigned long v;

    if (strlen(name) != BLOB_NAME_LEN || strncmp(name, BLOB_PREFIX, strlen(BLOB_PREFIX)) != 0) {
        return -1;
    }
    for (const char *p = name + strlen(BLOB_PREFIX); *p != '\0'; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return -1;
        }
    }
    errno = 0;
    v = strtoul(name + strlen(BLOB_PREFIX), &end, 16);
    if (errno != 0 || *end != '\0' || v > UINT32_MAX) {
        return -1;
    }
    *no = (uint32_t)v;
    return 0;
}

static int file_cmp(const void *a, const void *b)
{
    const struct blob_file *x = a, *y = b;
    return x->no < y->no ? -1 : x->no > y->no;
}

int kv_blobs_open(struct kv_blobs **out, const char *dir, char *errmsg)
{
    struct kv_blobs *bs = rfs_calloc(1, sizeof *bs);
    struct dirent *de;
    DIR *d;
    int rv = 0;

    *out = NULL;
    if (bs == NULL) {
        rfs_errmsg_printf(errmsg, "blob files: out of memory");
        return RFS_ENOMEM;
    }
    bs->file_max = KV_BLOB_FILE_MAX;
    if ((size_t)snprintf(bs->dir, sizeof bs->dir, "%s", dir) >= sizeof bs->dir) {
        rfs_free(bs);
        rfs_errmsg_printf(errmsg, "blob files: directory name too long");
        return RFS_EINVAL;
    }
    d = opendir(dir);
    if (d == NULL) {
        rfs_errmsg_printf(errmsg, "blob files: opendir %s: %s", dir, strerror(errno));
        rfs_free(bs);
        return RFS_EIO;
    }
    while (rv == 0 && (errno = 0, de = readdir(d)) != NULL) {
        char path[PATH_MAX + 32];
        struct stat st;
        uint32_t no;
        if (parse_name(de->d_name, &no) != 0) {
            continue;
        }
        blob_path(bs, no, path, sizeof path);
        if (stat(path, &st) != 0) {
            rv = io_error(errmsg, "stat", bs, no);
        } else if (!S_ISREG(st.st_mode)) {
            rfs_errmsg_printf(errmsg, "blob files: %s is not a regular file", path);
            rv = RFS_ECORRUPT;
        } else if ((rv = file_push(bs, no, -1, (uint64_t)st.st_size)) != 0) {
            rfs_errmsg_printf(errmsg, "blob files: out of memory");
        }
    }
    if (rv == 0 && errno != 0) {
        rfs_errmsg_printf(errmsg, "blob files: readdir %s: %s", dir, strerror(errno));
        rv = RFS_EIO;
    }
    closedir(d);
    if (rv == 0 && bs->n == 0) {
        rv = file_create(bs, 1, errmsg);
    } else if (rv == 0) {
        /* Appends go on at the end of the newest file. A crash may have left a torn record
         * there; no pointer names it (a pointer is written only after its bytes are synced)
         * and the collector reclaims it with the file. */
        char path[PATH_MAX + 32];
        struct blob_file *cur;
        qsort(bs->files, bs->n, sizeof *bs->files, file_cmp);
        cur = file_newest(bs);
        blob_path(bs, cur->no, path, sizeof path);
        cur->fd = open(path, O_RDWR | O_CLOEXEC);
        if (cur->fd < 0) {
            rv = io_error(errmsg, "open", bs, cur->no);
        }
    }
    if (rv != 0) {
        kv_blobs_close(bs);
        return rv;
    }
    *out = bs;
    return 0;
}

void kv_blobs_close(struct kv_blobs *bs)
{
    if (bs == NULL) {
        return;
    }
    for (size_t i = 0; i < bs->n; i++) {
        if (bs->files[i].fd >= 0) {
            close(bs->files[i].fd);
        }
    }
    rfs_free(bs->files);
    rfs_free(bs);
}

int kv_blob_wanted(const void *key, size_t klen, size_t vlen)
{
    return klen > 0 && ((const char *)key)[0] == KV_PREFIX_DATA &&
           vlen >= KV_VERSION_LEN + KV_BLOB_MIN;
}

int kv_blob_is_ptr(const void *key, size_t klen, const void *val, size_t len)
{
    return klen > 0 && ((const char *)key)[0] == KV_PREFIX_DATA && len == KV_BLOB_PTR_LEN &&
           (((const unsigned char *)val)[7] & 0x80) != 0;
}

int kv_blobs_append(struct kv_blobs *bs, const void *val, size_t len, unsigned char *ptr,
                    char *errmsg)
{
    const unsigned char *bytes = (const unsigned char *)val + KV_VERSION_LEN;
    size_t n = len - KV_VERSION_LEN;
    unsigned char hdr[KV_BLOB_REC_HDR];
    struct blob_file *cur = file_newest(bs);
    struct iovec iov[2];
    uint32_t crc;
    ssize_t w;

    if (len < KV_VERSION_LEN || n > UINT32_MAX) {
        rfs_errmsg_printf(errmsg, "blob append: bad value length %zu", len);
        return RFS_EINVAL;
    }
    if (cur->size > 0 && cur->size + KV_BLOB_REC_HDR + n > bs->file_max) {
        int rv = file_rotate(bs, errmsg);
        if (rv != 0) {
            return rv;
        }
        cur = file_newest(bs);
    }
    crc = rfs_crc32c(0, bytes, n);
    rfs_put_le32(hdr, (uint32_t)n);
    rfs_put_le32(hdr + 4, crc);
    iov[0] = (struct iovec){.iov_base = hdr, .iov_len = sizeof hdr};
    iov[1] = (struct iovec){.iov_base = (void *)bytes, .iov_len = n};
    w = pwritev(cur->fd, iov, 2, (off_t)cur->size);
    if (w != (ssize_t)(sizeof hdr + n)) {
        if (w >= 0) {
            errno = ENOSPC; /* a short write to a regular file: the disk is full */
        }
        return io_error(errmsg, "append to", bs, cur->no);
    }
    memcpy(ptr, val, KV_VERSION_LEN);
    ptr[7] |= 0x80;
    rfs_put_le32(ptr + 8, cur->no);
    rfs_put_le64(ptr + 12, cur->size);
    rfs_put_le32(ptr + 20, (uint32_t)n);
    rfs_put_le32(ptr + 24, crc);
    cur->size += sizeof hdr + n;
    bs->dirty = 1;
    return 0;
}

static int file_fd(struct kv_blobs *bs, struct blob_file *f, char *errmsg)
{
    char path[PATH_MAX + 32];

    if (f->fd >= 0) {
        return f->fd;
    }
    if (bs->n_open >= BLOB_MAX_OPEN) {
        for (size_t i = 0; i + 1 < bs->n; i++) {
            file_close(bs, &bs->files[i]);
        }
    }
    blob_path(bs, f->no, path, sizeof path);
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        io_error(errmsg, "open", bs, f->no);
        return -1;
    }
    bs->n_open++;
    return f->fd;
}

int kv_blobs_read(struct kv_blobs *bs, const void *ptr, char **out, size_t *outlen, char *errmsg)
{
    const unsigned char *p = ptr;
    uint32_t no = rfs_get_le32(p + 8), n = rfs_get_le32(p + 20), crc = rfs_get_le32(p + 24);
    uint64_t off = rfs_get_le64(p + 12);
    struct blob_file *f = file_find(bs, no);
    unsigned char hdr[KV_BLOB_REC_HDR];
    struct iovec iov[2];
    char *buf;
    ssize_t r;
    int fd;

    *out = NULL;
    *outlen = 0;
    if (f == NULL || off + KV_BLOB_REC_HDR + n > f->size) {
        rfs_errmsg_printf(errmsg, "blob %s/" BLOB_PREFIX "%08x offset %llu length %u: %s", bs->dir,
                          no, (unsigned long long)off, n,
                          f == NULL ? "no such file" : "past the end of the file");
        return RFS_ECORRUPT;
    }
    fd = file_fd(bs, f, errmsg);
    if (fd < 0) {
        return RFS_EIO;
    }
    buf = rfs_malloc((size_t)KV_VERSION_LEN + n);
    if (buf == NULL) {
        rfs_errmsg_printf(errmsg, "blob read: out of memory");
        return RFS_ENOMEM;
    }
    iov[0] = (struct iovec){.iov_base = hdr, .iov_len = sizeof hdr};
    iov[1] = (struct iovec){.iov_base = buf + KV_VERSION_LEN, .iov_len = n};
    r = preadv(fd, iov, 2, (off_t)off);
    if (r != (ssize_t)(sizeof hdr + n)) {
        rfs_free(buf);
        if (r < 0) {
            return io_error(errmsg, "read", bs, no);
        }
        rfs_errmsg_printf(errmsg, "blob %s/" BLOB_PREFIX "%08x offset %llu: short read", bs->dir,
                          no, (unsigned long long)off);
        return RFS_ECORRUPT;
    }
    if (rfs_get_le32(hdr) != n || rfs_get_le32(hdr + 4) != crc ||
        rfs_crc32c(0, buf + KV_VERSION_LEN, n) != crc) {
        rfs_free(buf);
        rfs_errmsg_printf(errmsg,
                          "blob %s/" BLOB_PREFIX "%08x offset %llu: bad record "
                          "(length or checksum)",
                          bs->dir, no, (unsigned long long)off);
        return RFS_ECORRUPT;
    }
    memcpy(buf, p, KV_VERSION_LEN);
    ((unsigned char *)buf)[7] &= 0x7f;
    *out = buf;
    *outlen = (size_t)KV_VERSION_LEN + n;
    return 0;
}

int kv_blobs_sync(struct kv_blobs *bs, char *errmsg)
{
    struct blob_file *cur = file_newest(bs);

    if (bs->dirty) {
        if (fdatasync(cur->fd) != 0) {
            return io_error(errmsg, "fdatasync", bs, cur->no);
        }
        bs->dirty = 0;
    }
    if (bs->dir_dirty) {
        int rv = kv_dir_sync(bs->dir, errmsg);
        if (rv != 0) {
            return rv;
        }
        bs->dir_dirty = 0;
    }
    return 0;
}

void kv_blobs_note_change(struct kv_blobs *bs)
{
    bs->changes++;
}

void kv_blobs_set_file_max(struct kv_blobs *bs, uint64_t bytes)
{
    bs->file_max = bytes;
}

void kv_blobs_stats(const struct kv_blobs *bs, struct kv_blob_stats *out)
{
    *out = (struct kv_blob_stats){.files = bs->n, .collected = bs->collected, .copied = bs->copied};
    for (size_t i = 0; i < bs->n; i++) {
        out->bytes += bs->files[i].size;
    }
}

/* --- the collector --- */

/* Visit every data pointer in db: count its bytes as live, or (copy != NULL) move it out of
 * a victim file into the newest one, queueing the new pointer in copy. */
static int scan_pointers(struct kv_blobs *bs, struct rfs_ldb *db, leveldb_writebatch_t *copy,
                         char *errmsg)
{
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_iterator_t *it;
    char *err = NULL;
    int rv = 0;

    if (ro == NULL) {
        rfs_errmsg_printf(errmsg, "blob collector: out of memory");
        return RFS_ENOMEM;
    }
    leveldb_readoptions_set_fill_cache(ro, 0);
    it = leveldb_create_iterator(db->db, ro);
    if (it == NULL) {
        leveldb_readoptions_destroy(ro);
        rfs_errmsg_printf(errmsg, "blob collector: out of memory");
        return RFS_ENOMEM;
    }
    for (leveldb_iter_seek(it, "d", 1); rv == 0 && leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = leveldb_iter_key(it, &klen);
        const char *val = leveldb_iter_value(it, &vlen);
        struct blob_file *f;
        if (klen == 0 || key[0] != KV_PREFIX_DATA) {
            break;
        }
        if (!kv_blob_is_ptr(key, klen, val, vlen)) {
            continue;
        }
        f = file_find(bs, rfs_get_le32((const unsigned char *)val + 8));
        if (f == NULL) {
            rfs_errmsg_printf(errmsg,
                              "blob collector: a pointer names file %08x, which is "
                              "missing from %s",
                              rfs_get_le32((const unsigned char *)val + 8), bs->dir);
            rv = RFS_ECORRUPT;
        } else if (copy == NULL) {
            f->live += KV_BLOB_REC_HDR + rfs_get_le32((const unsigned char *)val + 20);
        } else if (f->victim) {
            unsigned char ptr[KV_BLOB_PTR_LEN];
            char *whole;
            size_t wlen;
            rv = kv_blobs_read(bs, val, &whole, &wlen, errmsg);
            if (rv == 0) {
                rv = kv_blobs_append(bs, whole, wlen, ptr, errmsg);
                rfs_free(whole);
            }
            if (rv == 0) {
                leveldb_writebatch_put(copy, key, klen, (const char *)ptr, sizeof ptr);
                bs->copied += wlen - KV_VERSION_LEN;
            }
        }
    }
    leveldb_iter_get_error(it, &err);
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    if (err != NULL) {
        return rfs_ldb_error(err, errmsg, "blob collector: leveldb iterator");
    }
    return rv;
}

/* Unlink every victim file (their records are dead or copied, and LevelDB says so durably). */
static int drop_victims(struct kv_blobs *bs, char *errmsg)
{
    size_t keep = 0;
    int dropped = 0;

    for (size_t i = 0; i < bs->n; i++) {
        struct blob_file *f = &bs->files[i];
        char path[PATH_MAX + 32];
        if (!f->victim) {
            bs->files[keep++] = *f;
            continue;
        }
        file_close(bs, f);
        blob_path(bs, f->no, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT) {
            int rv = io_error(errmsg, "unlink", bs, f->no);
            /* Keep the rest of the list consistent before failing. */
            for (size_t j = i; j < bs->n; j++) {
                bs->files[keep++] = bs->files[j];
            }
            bs->n = keep;
            return rv;
        }
        bs->collected++;
        dropped = 1;
    }
    bs->n = keep;
    return dropped ? kv_dir_sync(bs->dir, errmsg) : 0;
}

static int collect(struct kv_blobs *bs, struct rfs_ldb *db, char *errmsg)
{
    struct blob_file *cur;
    int copy = 0, drop = 0, rv;
    char *err = NULL;

    for (size_t i = 0; i < bs->n; i++) {
        bs->files[i].live = 0;
        bs->files[i].victim = 0;
    }
    rv = scan_pointers(bs, db, NULL, errmsg);
    if (rv != 0) {
        return rv;
    }
    cur = file_newest(bs);
    if ((cur->size > 0 && cur->live == 0) ||
        (cur->size >= bs->file_max / BLOB_SEAL_DIVISOR && cur->live * 2 < cur->size)) {
        rv = file_rotate(bs, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    for (size_t i = 0; i + 1 < bs->n; i++) {
        struct blob_file *f = &bs->files[i];
        if (f->live * 2 < f->size || f->size == 0) {
            f->victim = 1;
            drop = 1;
            copy |= f->live > 0;
        }
    }
    if (!drop) {
        return 0;
    }
    {
        leveldb_writebatch_t *wb = leveldb_writebatch_create();
        if (wb == NULL) {
            rfs_errmsg_printf(errmsg, "blob collector: out of memory");
            return RFS_ENOMEM;
        }
        if (copy) {
            rv = scan_pointers(bs, db, wb, errmsg);
        }
        if (rv == 0) {
            rv = kv_blobs_sync(bs, errmsg);
        }
        if (rv == 0) {
            /* Synced even when empty: what made the victims dead must be durable first. */
            leveldb_write(db->db, db->wopts_sync, wb, &err);
            if (err != NULL) {
                rv = rfs_ldb_error(err, errmsg, "blob collector: leveldb write");
            }
        }
        leveldb_writebatch_destroy(wb);
    }
    return rv != 0 ? rv : drop_victims(bs, errmsg);
}

int kv_blobs_collect(struct kv_blobs *bs, struct rfs_ldb *db, int force, char *errmsg)
{
    uint64_t start = mono_ms(), took, pause;
    int rv;

    if (!force && (bs->changes == 0 || start < bs->next_run_ms)) {
        return 0;
    }
    bs->changes = 0;
    rv = collect(bs, db, errmsg);
    took = mono_ms() - start;
    pause = took * 20 > BLOB_PAUSE_MS ? took * 20 : BLOB_PAUSE_MS;
    bs->next_run_ms = start + took + pause;
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "blob collector");
    } else if (took > 100) {
        rfs_infof("blob collector: %llu ms (%zu files)", (unsigned long long)took, bs->n);
    }
    return rv;
}
