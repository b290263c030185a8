/* fs/fs.h: the filesystem over the sharded KV store, without FUSE (docs/fs.md).
 * raftfs-mount (mount/) is a thin libfuse low-level layer over these calls; tests call them
 * directly too.
 *
 * Every call is thread-safe and returns 0 or a negative errno (-ENOENT, -EEXIST, ...), the
 * way FUSE wants it; -EIO means the cluster did not answer in time (the log says why).
 * Every metadata change is one transaction (kv_client_txn): one group when its keys share a
 * bucket, two-phase commit across groups when they do not; a conflict with another client
 * is retried from fresh reads. */
#ifndef FS_FS_H
#define FS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "keys.h"

#define FS_BLOCK_SIZE (64u << 10)

struct rfs_fs;

struct rfs_fs_options {
    const char *meta;    /* the meta group: "host:port,host:port,..." */
    unsigned timeout_ms; /* one KV operation, default 10000 */
    /* Files unlinked while open (fs/orphan.h): how often this mount looks for them, and how
     * long after the unlink one that no mount holds open is deleted (0: 2000 and 10000). */
    unsigned orphan_scan_ms;
    unsigned orphan_grace_ms;
};

/* Connect, and create the root directory if the cluster has none. Returns 0 or a negative
 * errno with errmsg saying what to do (e.g. -EHOSTUNREACH: the meta group did not answer). */
int rfs_fs_open(struct rfs_fs **out, const struct rfs_fs_options *o, char *errmsg);
void rfs_fs_close(struct rfs_fs *fs);

/* Who asks (from the FUSE request). */
struct rfs_cred {
    uid_t uid;
    gid_t gid;
    unsigned n_groups;
    gid_t groups[32];
};

struct rfs_attr {
    uint64_t ino;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint32_t nlink;
    uint64_t size;
    uint64_t rdev;
    uint64_t blocks; /* 512-byte units */
    int64_t atime_ns;
    int64_t mtime_ns;
    int64_t ctime_ns;
};

/* Whether c has gid as its group or as one of its supplementary groups. */
bool rfs_cred_in_group(const struct rfs_cred *c, uint32_t gid);
/* Whether c may access an inode with attributes a by their mode bits, mask R_OK | W_OK |
 * X_OK (root: everything, but execute only if some x bit is set, or a directory). */
bool rfs_cred_may(const struct rfs_cred *c, const struct rfs_attr *a, int mask);

/* What rfs_fs_setattr changes (FUSE_SET_ATTR_* of the same meaning). */
enum {
    RFS_SET_MODE = 1 << 0,
    RFS_SET_UID = 1 << 1,
    RFS_SET_GID = 1 << 2,
    RFS_SET_SIZE = 1 << 3,
    RFS_SET_ATIME = 1 << 4,
    RFS_SET_MTIME = 1 << 5,
    RFS_SET_ATIME_NOW = 1 << 7,
    RFS_SET_MTIME_NOW = 1 << 8,
    RFS_SET_CTIME = 1 << 10,
    /* with RFS_SET_SIZE: through a descriptor open for writing (ftruncate), so no write
     * permission is asked for */
    RFS_SET_SIZE_OPEN = 1 << 16,
};

int rfs_fs_getattr(struct rfs_fs *fs, uint64_t ino, struct rfs_attr *out);
/* rfs_fs_getattr of n inodes at once (their reads in flight together): out[i] and rvs[i]
 * (0 or a negative errno) for inos[i]. For listings with attributes (readdirplus). */
void rfs_fs_getattr_many(struct rfs_fs *fs, const uint64_t *inos, size_t n, struct rfs_attr *out,
                         int *rvs);
int rfs_fs_lookup(struct rfs_fs *fs, uint64_t parent, const char *name, struct rfs_attr *out);
/* Change what to_set says (RFS_SET_*) to in's values; ctime becomes now (or in->ctime_ns with
 * RFS_SET_CTIME). cred NULL: no checks. Otherwise, as on Linux: the size needs write permission
 * (-EACCES); a same-size truncate still sets m/ctime. The mode needs the owner or root (-EPERM),
 * except taking away only setuid/setgid, which anyone who may write may do (the kernel's
 * "kill privileges" on a write or truncate by another user); setgid is dropped for a caller
 * outside the (new) group. The uid needs root; the gid root or the owner to one of its groups
 * (-EPERM); either clears setuid, and setgid with group-execute, of a non-directory. Explicit
 * times need the owner or root (-EPERM); "now" for both also write permission (-EACCES). */
int rfs_fs_setattr(struct rfs_fs *fs, uint64_t ino, const struct rfs_attr *in, int to_set,
                   const struct rfs_cred *cred, struct rfs_attr *out);
/* Regular files, FIFOs, sockets, devices (mode has the type). */
int rfs_fs_mknod(struct rfs_fs *fs, uint64_t parent, const char *name, uint32_t mode, uint64_t rdev,
                 const struct rfs_cred *cred, struct rfs_attr *out);
int rfs_fs_mkdir(struct rfs_fs *fs, uint64_t parent, const char *name, uint32_t mode,
                 const struct rfs_cred *cred, struct rfs_attr *out);
int rfs_fs_symlink(struct rfs_fs *fs, const char *target, uint64_t parent, const char *name,
                   const struct rfs_cred *cred, struct rfs_attr *out);
/* link, unlink, rmdir and rename check cred (NULL: no checks) as Linux does: write and search
 * permission on each directory whose entries change (-EACCES); in a sticky directory, removing
 * or replacing a name needs root or the owner of the directory or of the inode (-EPERM); moving
 * a directory to another parent needs write permission on it (its ".." changes, -EACCES). */
int rfs_fs_link(struct rfs_fs *fs, uint64_t ino, uint64_t parent, const char *name,
                const struct rfs_cred *cred, struct rfs_attr *out);
int rfs_fs_unlink(struct rfs_fs *fs, uint64_t parent, const char *name,
                  const struct rfs_cred *cred);
int rfs_fs_rmdir(struct rfs_fs *fs, uint64_t parent, const char *name, const struct rfs_cred *cred);
/* flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE. */
int rfs_fs_rename(struct rfs_fs *fs, uint64_t parent, const char *name, uint64_t newparent,
                  const char *newname, unsigned flags, const struct rfs_cred *cred);
/* Copies the target into buf (cap bytes, NUL-terminated); returns its length or -errno. */
int rfs_fs_readlink(struct rfs_fs *fs, uint64_t ino, char *buf, size_t cap);

/* The parent directory of directory dir into *parent (the root is its own parent). Returns 0,
 * -ENOENT, -ENOTDIR, -EIO. */
int rfs_fs_parent(struct rfs_fs *fs, uint64_t dir, uint64_t *parent);

/* One directory entry for rfs_fs_readdir; return non-zero to stop (the buffer is full). */
typedef int (*rfs_fs_dirent_cb)(void *data, const char *name, uint64_t ino, uint32_t mode);
/* The entries of dir whose names sort after `after` (NULL or "": from the start, after "."
 * and ".."), in name order: the name of the last entry given back is a stable offset. */
int rfs_fs_readdir(struct rfs_fs *fs, uint64_t dir, const char *after, rfs_fs_dirent_cb cb,
                   void *data);

/* File data (fs/data.c). Reads past the end return fewer bytes; holes read as zeros. */
int rfs_fs_read(struct rfs_fs *fs, uint64_t ino, uint64_t off, size_t size, void *buf, size_t *n);
/* Write size bytes at off (extends the file, updates size and mtime); returns 0 or -errno. */
int rfs_fs_write(struct rfs_fs *fs, uint64_t ino, uint64_t off, const void *buf, size_t size);
/* Set the size (shrinking drops the data past it). */
int rfs_fs_truncate(struct rfs_fs *fs, uint64_t ino, uint64_t size);

/* Extended attributes (fs/xattr.c), of any kind of inode. Names are "user.*", "security.*"
 * or "trusted.*" (others: -EOPNOTSUPP), at most FS_XATTR_NAME_MAX bytes (else -ERANGE);
 * values at most FS_XATTR_SIZE_MAX bytes (else -E2BIG), stored as given. */
#define FS_XATTR_NAME_MAX 255
#define FS_XATTR_SIZE_MAX (64u << 10)

/* Set name to value[0..size). flags: 0, XATTR_CREATE (-EEXIST if it exists) or XATTR_REPLACE
 * (-ENODATA if it does not). Needs, for "trusted.*", uid 0 (else -EPERM); for the others, the
 * owner, uid 0 or write permission on the inode (else -EACCES); cred NULL: no checks. Bumps
 * the inode's ctime in the same transaction. Returns 0 or -errno (-ENOENT: no such inode). */
int rfs_fs_setxattr(struct rfs_fs *fs, uint64_t ino, const char *name, const void *value,
                    size_t size, int flags, const struct rfs_cred *cred);
/* The value of name into buf (cap bytes), its size into *len. cap 0: only the size; cap too
 * small: -ERANGE. Returns 0, -ENODATA (no such attribute), -ENOENT, or another -errno. */
int rfs_fs_getxattr(struct rfs_fs *fs, uint64_t ino, const char *name, void *buf, size_t cap,
                    size_t *len);
/* The names of ino's attributes, each followed by a NUL, into buf (cap bytes), their total
 * size into *len; cap 0 and too small as for rfs_fs_getxattr. */
int rfs_fs_listxattr(struct rfs_fs *fs, uint64_t ino, char *buf, size_t cap, size_t *len);
/* Remove name (-ENODATA if absent); permissions and ctime as for rfs_fs_setxattr. */
int rfs_fs_removexattr(struct rfs_fs *fs, uint64_t ino, const char *name,
                       const struct rfs_cred *cred);

/* File locks held in the cluster (fs/lock.c, docs/locks.md): flock and POSIX byte-range
 * locks exclude each other across every mount of the cluster (a flock never conflicts with
 * a POSIX lock, as on Linux). A lock belongs to (this mount, owner): the owner is FUSE's
 * lock_owner (a process for POSIX locks, an open file description for flock). Locks live
 * as long as this mount's lease: rfs_fs_locks_start registers it and renews it in the
 * background; a mount that stops renewing (killed, cut off) loses its locks lease_ms
 * after its last renewal, as other mounts see it. */
#define RFS_LOCK_EOF ((uint64_t)INT64_MAX) /* a range's end: to the end of the file */

enum rfs_lock_kind {
    RFS_LOCK_POSIX = 0,
    RFS_LOCK_FLOCK = 1,
};

struct rfs_lock {
    int type;            /* F_RDLCK, F_WRLCK or F_UNLCK */
    uint64_t start, end; /* bytes [start, end], end inclusive; flock: [0, RFS_LOCK_EOF] */
    uint32_t pid;        /* setlk: the caller's; getlk: the holder's on its machine, 0 if
                          * the holder runs on another machine */
};

/* Register this mount's lease (lease_ms 0: 6000 ms) and start renewing it. Lock calls before
 * this fail with -ENOLCK. Returns 0 or -errno with errmsg. */
int rfs_fs_locks_start(struct rfs_fs *fs, unsigned lease_ms, char *errmsg);
/* Drop every lock this mount holds and end its lease (rfs_fs_close does it too). */
void rfs_fs_locks_stop(struct rfs_fs *fs);

/* F_GETLK: the first live lock of another owner that conflicts with lk (its type and range)
 * into lk, or lk->type F_UNLCK if there is none. Returns 0 or -errno. */
int rfs_fs_getlk(struct rfs_fs *fs, uint64_t ino, uint64_t owner, enum rfs_lock_kind kind,
                 struct rfs_lock *lk);

/* Returns true when a waiting rfs_fs_setlk should give up (the request was interrupted). */
typedef bool (*rfs_fs_cancelled_cb)(void *arg);

/* F_SETLK / flock: set lk->type (F_UNLCK: unlock) on lk's range for owner; POSIX locks of
 * the owner are replaced, split and merged as fcntl(2) says. A conflict with a live lock of
 * another owner: -EAGAIN, or with wait, poll (10 ms, backing off to 200 ms) until it goes,
 * returning -EINTR as soon as cancelled(arg) says so. -ENOLCK: this mount's lease is not
 * confirmed now (the cluster does not answer), or the inode has too many locks. */
int rfs_fs_setlk(struct rfs_fs *fs, uint64_t ino, uint64_t owner, enum rfs_lock_kind kind,
                 const struct rfs_lock *lk, bool wait, rfs_fs_cancelled_cb cancelled, void *arg);

/* Drop every lock of kind that owner holds on ino (close: POSIX locks at every flush, flock
 * at the release of the file description). Costs nothing when this mount never locked ino
 * for owner. A lock call of owner that starts meanwhile waits until the drop is done.
 * only_idle: leave the locks if a lock call of owner is in flight (a release, which the
 * kernel sends after the close returned, must not undo a lock taken since). Returns 0 or
 * -errno. */
int rfs_fs_unlock_owner(struct rfs_fs *fs, uint64_t ino, uint64_t owner, enum rfs_lock_kind kind,
                        bool only_idle);

/* Whether a new open of ino may go ahead: not when it is a file unlinked everywhere (an
 * orphan, nlink 0) that nothing here has open, which only a name cached since the unlink can
 * reach (a reopen through /proc/PID/fd of a descriptor open here is allowed). */
bool rfs_fs_may_open(struct rfs_fs *fs, const struct rfs_attr *a);

/* The cluster's space (fs/space.c; docs/fs.md, "Space"): blocks and bfree count FS_BLOCK_SIZE
 * blocks (bfree: what writes may still use), files and ffree inodes. Asked of every shard
 * group's leader at most once a second; a group that does not answer keeps its last
 * numbers. Returns 0, or -EIO when no group ever answered. */
struct rfs_statfs {
    uint64_t blocks, bfree, files, ffree;
};
int rfs_fs_statfs(struct rfs_fs *fs, struct rfs_statfs *out);

#endif
