/* fs/lock_list.h: one inode's file locks as stored in the cluster (docs/locks.md): the list,
 * its encoding, the conflict test and the POSIX rules for setting and clearing a range.
 * Pure code: no I/O, no locking (the caller owns the list). */
#ifndef FS_LOCK_LIST_H
#define FS_LOCK_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* At most this many locks on one inode (more: -ENOLCK); the encoded list stays under
 * 40 KiB, one small value. */
#define FS_LOCKS_MAX 1024
/* The end of a range that runs to the end of the file (FUSE's OFFSET_MAX). */
#define FS_LOCK_EOF ((uint64_t)INT64_MAX)

enum fs_lock_kind {
    FS_LOCK_POSIX = 0, /* fcntl byte ranges: owner = the process (FUSE lock_owner) */
    FS_LOCK_FLOCK = 1, /* flock: owner = the open file description; always the whole file */
};

enum fs_lock_type {
    FS_LOCK_READ = 1,
    FS_LOCK_WRITE = 2,
};

struct fs_lock {
    uint64_t mount;      /* the holder's mount (its lease, fs/lease.h) */
    uint64_t owner;      /* the lock owner within that mount */
    uint64_t start, end; /* bytes [start, end], end inclusive (FS_LOCK_EOF: to the end) */
    uint32_t pid;        /* the holder's pid on its own machine (for F_GETLK) */
    uint8_t type;        /* enum fs_lock_type */
    uint8_t kind;        /* enum fs_lock_kind */
};

struct fs_lock_list {
    struct fs_lock *v; /* rfs_malloc'd */
    unsigned n, cap;
};

void fs_lock_list_clear(struct fs_lock_list *l);
/* Decode value[0..len) (len 0: an empty list) into l (initially zeroed). Returns 0, -EIO
 * (malformed: a line in the log) or -ENOMEM. */
int fs_lock_list_decode(struct fs_lock_list *l, const void *value, size_t len);
/* Encode l into *buf (rfs_malloc'd, the caller frees it). Returns 0 or -ENOMEM. */
int fs_lock_list_encode(const struct fs_lock_list *l, void **buf, size_t *len);

/* Whether a and b are different owners whose locks exclude each other: the same kind,
 * overlapping ranges, one of them a write lock. */
bool fs_lock_conflicts(const struct fs_lock *a, const struct fs_lock *b);

/* The first lock in l that conflicts with req, or NULL. */
const struct fs_lock *fs_lock_list_conflict(const struct fs_lock_list *l,
                                            const struct fs_lock *req);

/* Set req (its mount, owner, kind, range and type) in l as POSIX says: the owner's locks of
 * that kind in req's range are replaced (split where they stick out), then same-type locks
 * of the owner that touch are merged. unlock: only remove the owner's range. The caller
 * checked fs_lock_list_conflict first. Returns 0, -ENOLCK (past FS_LOCKS_MAX) or -ENOMEM
 * (l is then unchanged). */
int fs_lock_list_set(struct fs_lock_list *l, const struct fs_lock *req, bool unlock);

/* Remove every lock of (mount, owner) of kind; returns how many went. */
unsigned fs_lock_list_drop_owner(struct fs_lock_list *l, uint64_t mount, uint64_t owner,
                                 enum fs_lock_kind kind);
/* Remove every lock of mount; returns how many went. */
unsigned fs_lock_list_drop_mount(struct fs_lock_list *l, uint64_t mount);
/* Whether (mount, owner) holds a lock of kind in l. */
bool fs_lock_list_has_owner(const struct fs_lock_list *l, uint64_t mount, uint64_t owner,
                            enum fs_lock_kind kind);

#endif
