/* fs/orphan.h: files whose last name went while they may still be open, and the collector
 * that deletes their data once nobody has them open (docs/fs.md, "Deleted files").
 *
 * When the last link of a regular file goes (unlink, rename over it), its inode stays with
 * nlink 0 and an orphan record `o{pppp}ino` (the inode's bucket, so the same one-group
 * transaction) holds the time it was unlinked. Open descriptors go on reading, writing and
 * truncating it. Its data, attributes and inode go:
 *   - at the last close on this mount, if it was open here;
 *   - else when a collector (every mount runs one) finds the record older than the grace
 *     period and the file open on no mount it knows of (docs/fs.md says how other mounts
 *     count).
 * The deletion is a scan-and-delete per stripe of data, then one transaction that deletes
 * the inode (checking its version), the record and the extended attributes; a failure or a
 * crash part-way leaves the record, and a later run finishes the job. */
#ifndef FS_ORPHAN_H
#define FS_ORPHAN_H

#include <stdbool.h>
#include <stdint.h>

struct rfs_fs;
struct txnb;
struct fs_inode;
struct fs_orphans;

#define FS_ORPHAN_SCAN_MS  2000u  /* how often a collector looks for orphans */
#define FS_ORPHAN_GRACE_MS 10000u /* an orphan no mount holds open goes after this long */

/* Start the collector thread (scan_ms, grace_ms: 0 for the defaults). Returns 0 or -errno. */
int fs_orphans_start(struct rfs_fs *fs, unsigned scan_ms, unsigned grace_ms,
                     struct fs_orphans **out);
/* Delete the orphans queued by last closes (bounded), then stop the thread. Safe on NULL. */
void fs_orphans_stop(struct fs_orphans *o);

/* In t: in (a regular file losing its last name) becomes an orphan (nlink 0, the record).
 * If it is open here, its last close here deletes it. */
void fs_orphan_make(struct rfs_fs *fs, struct txnb *t, struct fs_inode *in, int64_t now_ns);

/* An open file handle of ino came or went here. When the last one goes and the file is an
 * orphan, its deletion is queued for the collector thread. */
void fs_orphans_opened(struct fs_orphans *o, uint64_t ino);
void fs_orphans_closed(struct fs_orphans *o, uint64_t ino);
/* Whether ino has an open handle here. */
bool fs_orphans_is_open(struct fs_orphans *o, uint64_t ino);

/* Run one collector pass now (tests): the queued deletions, then a scan of every group that
 * deletes every orphan not held open, however recent. Returns how many were deleted. */
int fs_orphans_collect_now(struct fs_orphans *o);

#endif
