/* fs/internal.h: what the files of fs/ share. Not for other modules. */
#ifndef FS_INTERNAL_H
#define FS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../kv/client.h"
#include "dircache.h"
#include "fs.h"
#include "io_pool.h"
#include "space.h"

/* Threads of the filesystem's I/O pool: background requests in flight at once, over all open
 * files. */
#define FS_IO_THREADS 8

#define FS_NOCAP_SLOTS 256
#define FS_NOCAP_MS    1000

struct rfs_fs {
    struct kv_client *kv;   /* routed: every key goes to its bucket's group */
    struct kv_client *meta; /* the meta group: id allocation */
    pthread_mutex_t id_mu;  /* protects the id range below */
    uint64_t next_id;
    uint64_t end_id;
    struct fs_io_pool *io; /* write-behind and read-ahead of open files (fs/file.c) */
    /* Bumped after every change this filesystem sends (fs_changed): an open file may trust
     * the inode it read a moment ago while nothing changed here (fs/readahead.c). */
    _Atomic uint64_t changes;
    struct fs_dircache dirs; /* directory inodes as last written or read here */
    /* Inodes found without security.capability, which the kernel asks for before every
     * write(2): trusted for FS_NOCAP_MS while no xattr changed through this filesystem
     * (fs/xattr.c). Protected by nocap_mu. */
    pthread_mutex_t nocap_mu;
    struct fs_nocap {
        uint64_t ino, ms, gen;
    } nocap[FS_NOCAP_SLOTS];
    _Atomic uint64_t xattr_changes;
    struct fs_orphans *orphans; /* open files and the collector of deleted ones (fs/orphan.c) */
    /* File locks and the lease (fs/lock.c): set by rfs_fs_locks_start before any lock call,
     * NULL until then. */
    struct fs_locks *locks;
    struct fs_space space; /* statfs (fs/space.c) */
    /* Tests only (fs_data_skip_truncate_cleanup): a shrinking truncate stops after its inode
     * commit, as if its process had died there. */
    bool skip_truncate_cleanup;
};

struct fs_lease;
/* This mount's lease (fs/lease.h), or NULL before rfs_fs_locks_start (fs/lock.c). */
struct fs_lease *fs_locks_lease(struct rfs_fs *fs);

/* Call after sending a change of any inode, entry or block (whatever its outcome). */
static inline void fs_changed(struct rfs_fs *fs)
{
    atomic_fetch_add(&fs->changes, 1);
}

/* An inode as read, with the version of its key (for a transaction's read set). */
struct fs_inode {
    struct rfs_attr a;
    uint64_t parent; /* a directory's parent directory */
    char *target;    /* a symlink's target (rfs_malloc'd), or NULL */
    uint64_t version;
};

/* Read inode ino: 0, -ENOENT, -EIO. Release with fs_inode_clear. */
int fs_inode_get(struct rfs_fs *fs, uint64_t ino, struct fs_inode *out);
void fs_inode_clear(struct fs_inode *in);
/* The FsInode bytes of in (rfs_malloc'd into *buf). Returns 0 or -ENOMEM. */
int fs_inode_pack(const struct fs_inode *in, void **buf, size_t *len);

/* A directory entry: 0 with *ino, *mode and the entry's key version, -ENOENT (with
 * *version 0: absent), -EIO. */
int fs_dirent_get(struct rfs_fs *fs, uint64_t dir, const char *name, uint64_t *ino, uint32_t *mode,
                  uint64_t *version);
int fs_dirent_pack(uint64_t ino, uint32_t mode, void **buf, size_t *len);

/* A fresh inode number with the given placement. Returns 0 or -EIO. */
int fs_alloc_ino(struct rfs_fs *fs, uint16_t placement, uint64_t *ino);
/* A placement for a new directory (spreads directories over buckets). */
uint16_t fs_new_placement(uint64_t id);

int64_t fs_now_ns(void);
/* An RFS_E* code as a negative errno (RFS_ECONFLICT: -EAGAIN, the caller retries). */
int fs_errno(int rv);

/* After a page of a scan: whether to go on (the scan stopped at its limit), and then the
 * key to start the next page at (just past the last key) in lo (FS_KEY_MAX + 1 bytes). */
bool fs_scan_next(const struct kv_scan_result *res, char *lo, size_t *lolen);

struct txnb;
/* Delete every extended attribute of ino in t (fs/xattr.c). The caller has ino's inode in
 * t's read set: every change of an attribute rewrites the inode, so its version guards the
 * list. Returns 0 or -errno. */
int fs_xattr_drop_all(struct rfs_fs *fs, struct txnb *t, uint64_t ino);

#endif
