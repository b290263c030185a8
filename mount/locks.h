/* mount/locks.h: raftfs-mount's file-lock operations (getlk, setlk, flock) over the
 * cluster's locks (fs/fs.h, docs/locks.md), and the release of an owner's locks at close. */
#ifndef MOUNT_LOCKS_H
#define MOUNT_LOCKS_H

#include "fuse_ops.h"

/* libfuse low-level ops; each replies exactly once. A blocking request (F_SETLKW, flock
 * without LOCK_NB) polls the cluster until the lock is free, the caller is interrupted
 * (EINTR) or the session ends. */
void mount_op_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock);
void mount_op_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock,
                    int sleep);
void mount_op_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op);

/* At a flush (every close(2)): drop the POSIX locks of fi->lock_owner on ino, as closing any
 * descriptor of a file drops the process's locks on it. At a release (the last close of an
 * open file description; before mount_file_release): drop its flock (fi->flock_release) and
 * its open file description locks. Returns 0 or -errno (logged). */
int mount_locks_flush(struct mount_ctx *m, fuse_ino_t ino, const struct fuse_file_info *fi);
int mount_locks_release(struct mount_ctx *m, fuse_ino_t ino, const struct fuse_file_info *fi);

#endif
