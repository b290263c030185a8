/* fs/dircache.h: directory inodes as this filesystem last wrote or read them, with their
 * versions (fs/dircache.c), so that creating or removing a name need not read the directory
 * first. Safe because every change of a directory's entries rewrites its inode in a
 * transaction that checks the version read (fs/ns.c): a stale entry (another mount changed
 * the directory) costs a conflict and a retry from a fresh read, never a wrong result. Every
 * transaction of this filesystem that writes or deletes an inode updates or drops it here
 * (fs/txnb.c). Thread-safe. */
#ifndef FS_DIRCACHE_H
#define FS_DIRCACHE_H

#include <pthread.h>
#include <stdint.h>

#include "fs.h"

#define FS_DIRCACHE_SLOTS 256 /* direct-mapped by inode number */

struct fs_inode;

struct fs_dircache_slot {
    uint64_t ino; /* 0: empty */
    struct rfs_attr a;
    uint64_t parent;
    uint64_t version;
};

struct fs_dircache {
    pthread_mutex_t mu; /* protects the slots */
    struct fs_dircache_slot slots[FS_DIRCACHE_SLOTS];
};

void fs_dircache_init(struct fs_dircache *c);
void fs_dircache_destroy(struct fs_dircache *c);
/* Directory ino as cached: 0 with *out filled (release with fs_inode_clear), or -ENOENT. */
int fs_dircache_get(struct fs_dircache *c, uint64_t ino, struct fs_inode *out);
/* Remember a directory inode with the version it has now (other inodes are ignored). */
void fs_dircache_put(struct fs_dircache *c, const struct fs_inode *in);
void fs_dircache_drop(struct fs_dircache *c, uint64_t ino);

#endif
