/* fs/space.h: statfs over the cluster (docs/fs.md, "Space"): each shard group's leader tells
 * what its data directory takes, what its filesystem has left and how many inode keys its
 * buckets hold (KV_SPACE, server/usage.h); the filesystem adds them up, at most once every
 * FS_SPACE_CACHE_MS (concurrent callers share one refresh). Part of struct rfs_fs. */
#ifndef FS_SPACE_H
#define FS_SPACE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "fs.h"

#define FS_SPACE_CACHE_MS 1000
/* One group's answer, at most (a dead group then keeps its last numbers). */
#define FS_SPACE_TIMEOUT_MS 3000
/* Bytes of free space counted for one more inode in f_ffree (its record and entry in
 * LevelDB and the Raft log, with room to spare). */
#define FS_SPACE_INODE_BYTES 1024u
/* Groups listed at most. */
#define FS_SPACE_MAX_GROUPS 256

struct fs_space_group;

struct fs_space {
    pthread_mutex_t mu; /* protects everything below; held during a refresh */
    bool have;          /* last is a real answer */
    uint64_t at_ms;     /* when last was computed (CLOCK_MONOTONIC) */
    struct rfs_statfs last;
    struct fs_space_group *groups; /* rfs_malloc'd, n of them */
    unsigned n;
};

void fs_space_init(struct fs_space *sp);
/* Frees the groups' clients. Safe on a zeroed struct. */
void fs_space_close(struct fs_space *sp);

#endif
