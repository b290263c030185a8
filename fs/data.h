/* fs/data.h: file data in blocks (fs/data.c), the parts open files (fs/file.c) build on: a
 * write that appends atomically, and reads through a one-block cache. Not for other modules. */
#ifndef FS_DATA_H
#define FS_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* The largest file: no write may end, and no truncate may reach, past it (-EFBIG). */
#define FS_MAX_FILE_SIZE (1ull << 50)

/* The stored bytes of one block of one file, as read while the file's inode had `version`.
 * Every write changes the inode after (or with) its blocks, and a truncate changes blocks
 * only past the size it committed, which reads never look at; so while the inode keeps
 * that version, the cached bytes up to the size are the block's current ones. Zero it
 * before use; release with fs_block_cache_clear. */
struct fs_block_cache {
    bool valid;
    uint64_t ino;
    uint64_t version;
    uint64_t index;
    size_t len;
    char *data; /* FS_BLOCK_SIZE bytes, allocated on first use */
};
void fs_block_cache_clear(struct fs_block_cache *c);

/* rfs_fs_read, taking the last block of the range from cache when it is current, and
 * leaving it there (cache may be NULL). */
int fs_data_read(struct rfs_fs *fs, uint64_t ino, uint64_t off, size_t size, void *buf, size_t *n,
                 struct fs_block_cache *cache);

/* rfs_fs_write at off, or with append at the end of the file as it is when the write
 * commits: each piece of up to FS_APPEND_CHUNK bytes goes in one transaction with the
 * inode, so concurrent appenders (other threads, other mounts) never overwrite each other.
 * *at (may be NULL) gets where the first byte went. Returns 0 or -errno. */
#define FS_APPEND_CHUNK (1u << 20)
int fs_data_write(struct rfs_fs *fs, uint64_t ino, uint64_t off, const void *buf, size_t size,
                  bool append, uint64_t *at);

#endif
