/* fs/data.h: file data in blocks (fs/data.c), the parts open files (fs/file.c) build on: a
 * write that appends atomically, and a write in steps (reads: fs/readahead.h). Not for other
 * modules. */
#ifndef FS_DATA_H
#define FS_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* The largest file: no write may end, and no truncate may reach, past it (-EFBIG). */
#define FS_MAX_FILE_SIZE (1ull << 50)

/* rfs_fs_write at off, or with append at the end of the file as it is when the write
 * commits: each piece of up to FS_APPEND_CHUNK bytes goes in one transaction with the
 * inode, so concurrent appenders (other threads, other mounts) never overwrite each other.
 * *at (may be NULL) gets where the first byte went. Returns 0 or -errno. */
#define FS_APPEND_CHUNK (1u << 20)
int fs_data_write(struct rfs_fs *fs, uint64_t ino, uint64_t off, const void *buf, size_t size,
                  bool append, uint64_t *at);

/* A write in steps, for writes that reach the cluster in the background (fs/file.c):
 * fs_data_begin reads the inode of a regular file (with its version); fs_data_put writes
 * blocks of [off, off + size) and nothing else (readers do not see bytes past the inode's
 * size yet), adding to *created the blocks it made at or past old_size's last block;
 * fs_data_commit then sets size = max(size, end), mtime, ctime and created more blocks on
 * the inode read by fs_data_begin (reading it again if it changed meanwhile). Each returns 0
 * or -errno. Puts of different blocks may run at once; puts of one block must not. */
int fs_data_begin(struct rfs_fs *fs, uint64_t ino, struct fs_inode *in);
int fs_data_put(struct rfs_fs *fs, uint64_t ino, uint64_t old_size, uint64_t off, const void *buf,
                size_t size, uint64_t *created);
int fs_data_commit(struct rfs_fs *fs, struct fs_inode *in, uint64_t end, uint64_t created);

/* Delete blocks [blk, end) of ino, one transaction per stripe that holds any. Returns 0 or
 * -errno with errmsg. */
int fs_data_drop(struct rfs_fs *fs, uint64_t ino, uint64_t blk, uint64_t end, char *errmsg);

/* Finish a truncate that left a reclaim record (r{pppp} ino nonce) saying blocks below end
 * may hold data past the size: cut and delete what lies past the file's size now (all of
 * it if the file is gone). Returns 0 when nothing is left, or -errno (logged). */
int fs_data_reclaim(struct rfs_fs *fs, uint64_t ino, uint64_t end);
/* A reclaim record's value: 0 with the end block and the truncate's wall-clock ms, or -1. */
int fs_reclaim_parse(const void *val, size_t len, uint64_t *end, uint64_t *when);
/* Tests: make shrinking truncates stop after their inode commit (a crash there). */
void fs_data_skip_truncate_cleanup(struct rfs_fs *fs, bool skip);

#endif
