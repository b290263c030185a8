/* fs/keys.h: the filesystem's keys in the sharded KV store (docs/fs.md).
 *
 * Every key starts with a one-letter kind and a routing tag in braces, which alone decides
 * the bucket (kv_bucket_of uses the text inside the first {...}); the rest is binary,
 * big-endian, so range scans come out in order:
 *   i{pppp} ino                 inode attributes (FsInode)
 *   d{pppp} dir_ino name        a directory entry (FsDirent); pppp: the directory's placement
 *   c{ino:stripe} block         file data, one fixed-size block per key
 *   x{pppp} ino name            an extended attribute
 *   o{pppp} ino                 an orphan: a file unlinked while it may be open
 *   h{pppp} ino mount           a mount's hold on an orphan it has open
 *   r{pppp} ino nonce           data past a file's size that a truncate still has to
 *                               delete (fs/data.c, "Truncate")
 *   k{pppp} ino                 the inode's file locks (fs/lock_list.h)
 *   s{leases} mount             a mount's lease (fs/lease.h); all in one bucket, so that
 *                               one scan finds every mount's
 * pppp is a 16-bit placement number in lower-case hex. An inode number carries it:
 * ino = placement << 48 | id. A file takes its parent directory's placement (its inode and
 * its entry share a bucket); a directory gets its own, which spreads directories over
 * groups. */
#ifndef FS_KEYS_H
#define FS_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define FS_ROOT_INO 1ull
#define FS_NAME_MAX 255
#define FS_KEY_MAX  (2 + 18 + 1 + 8 + FS_NAME_MAX + 8)
#define FS_ID_BITS  48
#define FS_ID_MASK  ((1ull << FS_ID_BITS) - 1)
/* ids below this are never handed to new inodes (the root is 1). */
#define FS_FIRST_ID 16
/* Blocks per stripe: a stripe's blocks share a bucket; a large file spreads over stripes. */
#define FS_STRIPE_BLOCKS 16

static inline uint16_t fs_placement(uint64_t ino)
{
    return (uint16_t)(ino >> FS_ID_BITS);
}

static inline uint64_t fs_make_ino(uint16_t placement, uint64_t id)
{
    return (uint64_t)placement << FS_ID_BITS | (id & FS_ID_MASK);
}

/* Each writes the key into out (FS_KEY_MAX bytes) and returns its length. */
size_t fs_key_inode(char *out, uint64_t ino);
size_t fs_key_dirent(char *out, uint64_t dir, const char *name, size_t nlen);
/* The first key of dir's entries, and the first key past them (a scan's bounds). */
size_t fs_key_dir_first(char *out, uint64_t dir);
size_t fs_key_dir_end(char *out, uint64_t dir);
size_t fs_key_block(char *out, uint64_t ino, uint64_t block);
size_t fs_key_xattr(char *out, uint64_t ino, const char *name, size_t nlen);
size_t fs_key_xattr_first(char *out, uint64_t ino);
size_t fs_key_xattr_end(char *out, uint64_t ino);
size_t fs_key_locks(char *out, uint64_t ino);
size_t fs_key_lease(char *out, uint64_t mount);
/* The first key of the leases, the first key past them, and the mount of a lease key (0, or
 * -1 if key is not one). */
size_t fs_key_lease_first(char *out);
size_t fs_key_lease_end(char *out);
int fs_key_lease_mount(const void *key, size_t klen, uint64_t *mount);

/* An orphan record: a regular file whose last name went (fs/orphan.h); in the inode's
 * bucket. The first key of all orphans, and the first past them (a scan's bounds). */
size_t fs_key_orphan(char *out, uint64_t ino);
#define FS_KEY_ORPHANS_FIRST "o{"
#define FS_KEY_ORPHANS_END   "o|" /* '|' follows '{' */
/* The inode number of an orphan key: 0, or -1 if key is not one. */
int fs_key_orphan_ino(const void *key, size_t klen, uint64_t *ino);
/* A truncate's reclaim record: r{pppp} ino nonce (the inode's bucket; the nonce keeps two
 * truncates' records apart); the bounds of all of them; the inode of one (0, or -1 if key
 * is not one). */
size_t fs_key_reclaim(char *out, uint64_t ino, uint64_t nonce);
#define FS_KEY_RECLAIMS_FIRST "r{"
#define FS_KEY_RECLAIMS_END   "r|"
int fs_key_reclaim_ino(const void *key, size_t klen, uint64_t *ino);
/* A mount's hold on an orphan it has open: h{pppp} ino mount (the inode's bucket); the
 * bounds of ino's holds; the mount of a hold key (0, or -1 if key is not one of ino's). */
size_t fs_key_hold(char *out, uint64_t ino, uint64_t mount);
size_t fs_key_holds_first(char *out, uint64_t ino);
size_t fs_key_holds_end(char *out, uint64_t ino);
int fs_key_hold_mount(const void *key, size_t klen, uint64_t ino, uint64_t *mount);

/* The inode number of an inode key: 0, or -1 if key is not an inode key. */
int fs_key_inode_ino(const void *key, size_t klen, uint64_t *ino);

/* The name of a directory entry key (points into key). Returns 0, or -1 if key is not an
 * entry of dir. */
int fs_key_dirent_name(const void *key, size_t klen, uint64_t dir, const char **name, size_t *nlen);

#endif
