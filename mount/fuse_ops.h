/* mount/fuse_ops.h: raftfs-mount's libfuse low-level operations, a thin layer over fs/fs.h.
 *
 * FUSE inode numbers are the filesystem's own (the root is 1 in both). No per-inode state is
 * kept, so forget has nothing to free; an open file is an fs/file.h handle (write
 * buffering), an open directory keeps a listing (stable readdir offsets). Every operation
 * runs on the session's worker threads and replies exactly once; a blocking lock request
 * that must wait is answered later from the lock waiter thread (mount/lockwait.h). */
#ifndef MOUNT_FUSE_OPS_H
#define MOUNT_FUSE_OPS_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <pthread.h>

#include "fs/fs.h"

#define MOUNT_CACHE_TIMEOUT 1.0
#define MOUNT_FILE_BUCKETS  64

struct mount_open_file;
struct mount_lockwait;

/* The open regular files whose inode numbers hash to one bucket. */
struct mount_file_bucket {
    pthread_mutex_t mu; /* protects head and every link of its list */
    struct mount_open_file *head;
};

/* The session's userdata. fs, cache_timeout and se are read-only while the session runs. */
struct mount_ctx {
    struct rfs_fs *fs;    /* borrowed: the caller closes it after mount_ctx_close */
    double cache_timeout; /* seconds the kernel may keep names and attributes */
    /* The session, set by main right after creating it (NULL: no notifications to the
     * kernel are sent); blocking lock waits stop when it exits. */
    struct fuse_session *se;
    struct mount_file_bucket files[MOUNT_FILE_BUCKETS];
    const char *mountpoint; /* borrowed; set before the session runs */
    unsigned readahead_kb;  /* the kernel's read-ahead window to ask for (0: leave it) */
    /* Blocking lock requests waiting (mount/lockwait.h); NULL: they wait in their worker. */
    struct mount_lockwait *lockwait;
};

void mount_ctx_init(struct mount_ctx *m, struct rfs_fs *fs, double cache_timeout);
/* After the session ended: releases (and so flushes) the files the kernel left open, as when
 * the daemon is stopped with files open. */
void mount_ctx_close(struct mount_ctx *m);

/* The operations; create the session with a struct mount_ctx as its userdata. */
extern const struct fuse_lowlevel_ops mount_ops;

#endif
