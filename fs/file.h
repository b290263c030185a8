/* fs/file.h: open files over fs/fs.h: a handle that buffers writes, writes them behind in the
 * background, and reads through a stripe cache with read-ahead (fs/file.c,
 * fs/readahead.c). raftfs-mount makes one per FUSE open and keeps it in fi->fh.
 *
 * Writes collect in the handle, in memory, and go to the cluster in the background (several
 * requests in flight) when the buffer would pass RFS_FILE_FLUSH_BYTES or when a write
 * neither falls inside nor continues the buffered range. The inode (size, mtime, ctime)
 * changes only at a sync point: rfs_file_flush, rfs_file_read and rfs_file_truncate through
 * the handle, and rfs_file_release, each of which waits for the background writes, writes
 * the rest and commits the inode. Until then other handles, rfs_fs_read and rfs_fs_getattr do
 * not see the new bytes (close-to-open consistency): flush first where that matters (FUSE
 * flush and fsync, getattr or setattr of an open file).
 *
 * A failed sync keeps the buffered bytes for the next try when the failure may pass (-EIO,
 * -EAGAIN, -ENOMEM); on any other error (the file is gone, -EFBIG, ...) it drops them, and
 * returns the error once. A failed background write loses its bytes and fails the next
 * write or sync with its error, once (as a local file system reports a failed writeback).
 * (An O_APPEND flush that fails with -EIO may have committed: a cross-group transaction whose
 * outcome was unknown; the next flush then appends the bytes again.) Every call is
 * thread-safe (one mutex per handle: calls on one handle run one at a time) and returns 0 or
 * a negative errno. */
#ifndef FS_FILE_H
#define FS_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "fs.h"

/* A write that would make the buffer longer than this hands its whole blocks on first. */
#define RFS_FILE_FLUSH_BYTES (1u << 20)

struct rfs_file;

/* A handle on inode ino; flags are open(2)'s: the access mode (O_RDONLY: writes fail with
 * -EBADF) and O_APPEND (every write goes at the end of the file as it is when the write
 * reaches the cluster, whatever its offset; each flush appends atomically in pieces of up
 * to 1 MiB, so appenders on other handles and mounts never overwrite each other). Other
 * flags are the caller's business (O_TRUNC: rfs_fs_truncate before opening). Nothing is
 * read yet: a missing or non-regular inode shows in the first read or write. fs is
 * borrowed and must outlive the handle. Returns NULL only when out of memory. */
struct rfs_file *rfs_file_open(struct rfs_fs *fs, uint64_t ino, int flags);

/* Write size bytes at off (copied; for O_APPEND handles off is ignored). Returns 0 once
 * the bytes are buffered or written, -EBADF on a read-only handle, -EFBIG for an end past
 * the largest file, or the error of a flush it needed (the new bytes were not taken). */
int rfs_file_write(struct rfs_file *f, uint64_t off, const void *buf, size_t size);

/* Read up to size bytes at off into buf, *n the count (fewer at the end of the file; holes
 * read as zeros). Flushes the handle's buffer first. */
int rfs_file_read(struct rfs_file *f, uint64_t off, size_t size, void *buf, size_t *n);

/* Write everything buffered, and the inode; returns once it is committed. */
int rfs_file_flush(struct rfs_file *f);

/* Flush, then set the file's size (rfs_fs_truncate). */
int rfs_file_truncate(struct rfs_file *f, uint64_t size);

/* Flush (an error is logged: report flush errors with rfs_file_flush, as FUSE's flush op
 * does) and free the handle. NULL is a no-op. */
void rfs_file_release(struct rfs_file *f);

#endif
