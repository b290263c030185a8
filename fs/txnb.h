/* fs/txnb.h: building one metadata transaction: the keys read (with the versions seen) and
 * the keys written, then kv_client_txn. The builder owns copies of keys and values. */
#ifndef FS_TXNB_H
#define FS_TXNB_H

#include <stddef.h>
#include <stdint.h>

#include "../kv/client.h"
#include "internal.h"

#define TXNB_MAX_DIRS 4

struct txnb {
    struct kv_txn_read *r;
    unsigned nr, cap_r;
    struct kv_txn_write *w;
    unsigned nw, cap_w;
    int err; /* first allocation failure: reported by txnb_commit */
    /* Directory inodes written (their new state, for the directory cache once the commit
     * tells their version). */
    struct fs_inode dirs[TXNB_MAX_DIRS];
    unsigned n_dirs;
};

void txnb_init(struct txnb *t);
void txnb_free(struct txnb *t);
/* Check that key still has version (0: absent). */
void txnb_read(struct txnb *t, const char *key, size_t klen, uint64_t version);
/* Write val (copied), or delete key. */
void txnb_put(struct txnb *t, const char *key, size_t klen, const void *val, size_t vlen);
void txnb_del(struct txnb *t, const char *key, size_t klen);
/* Write an inode / a directory entry (encoded here). */
void txnb_put_inode(struct txnb *t, const struct fs_inode *in);
void txnb_put_dirent(struct txnb *t, uint64_t dir, const char *name, uint64_t ino, uint32_t mode);
void txnb_del_dirent(struct txnb *t, uint64_t dir, const char *name);
/* Commit: 0, -EAGAIN (a read key changed: read again and retry), or another -errno. Then the
 * directory cache (fs/dircache.h) forgets every inode the transaction wrote or deleted, and
 * learns the directories it wrote when their new version is known. */
int txnb_commit(struct rfs_fs *fs, struct txnb *t);

#endif
