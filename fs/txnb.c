/* The metadata transaction builder; see txnb.h. */
#include "txnb.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/alloc.h"
#include "../common/log.h"

void txnb_init(struct txnb *t)
{
    memset(t, 0, sizeof *t);
}

void txnb_free(struct txnb *t)
{
    for (unsigned i = 0; i < t->nr; i++) {
        rfs_free((void *)t->r[i].key);
    }
    for (unsigned i = 0; i < t->nw; i++) {
        rfs_free((void *)t->w[i].key);
        rfs_free((void *)t->w[i].value);
    }
    rfs_free(t->r);
    rfs_free(t->w);
    memset(t, 0, sizeof *t);
}

static void *dup(const void *p, size_t len)
{
    void *d = rfs_malloc(len ? len : 1);
    if (d != NULL && len > 0) {
        memcpy(d, p, len);
    }
    return d;
}

static int grow(void **arr, unsigned *cap, unsigned n, size_t size)
{
    if (n < *cap) {
        return 0;
    }
    unsigned nc = *cap ? *cap * 2 : 8;
    void *p = rfs_realloc(*arr, nc * size);
    if (p == NULL) {
        return -ENOMEM;
    }
    *arr = p;
    *cap = nc;
    return 0;
}

void txnb_read(struct txnb *t, const char *key, size_t klen, uint64_t version)
{
    char *k;
    if (t->err != 0 || grow((void **)&t->r, &t->cap_r, t->nr, sizeof *t->r) != 0 ||
        (k = dup(key, klen)) == NULL) {
        t->err = -ENOMEM;
        return;
    }
    t->r[t->nr++] = (struct kv_txn_read){.key = k, .klen = klen, .version = version};
}

static void add_write(struct txnb *t, const char *key, size_t klen, void *val, size_t vlen,
                      bool del)
{
    char *k;
    if (t->err != 0 || grow((void **)&t->w, &t->cap_w, t->nw, sizeof *t->w) != 0 ||
        (k = dup(key, klen)) == NULL) {
        rfs_free(val);
        t->err = -ENOMEM;
        return;
    }
    t->w[t->nw++] =
        (struct kv_txn_write){.key = k, .klen = klen, .value = val, .vlen = vlen, .del = del};
}

void txnb_put(struct txnb *t, const char *key, size_t klen, const void *val, size_t vlen)
{
    void *v = dup(val, vlen);
    if (v == NULL) {
        t->err = -ENOMEM;
        return;
    }
    add_write(t, key, klen, v, vlen, false);
}

void txnb_del(struct txnb *t, const char *key, size_t klen)
{
    add_write(t, key, klen, NULL, 0, true);
}

void txnb_put_inode(struct txnb *t, const struct fs_inode *in)
{
    char key[FS_KEY_MAX];
    void *buf;
    size_t len;
    if (fs_inode_pack(in, &buf, &len) != 0) {
        t->err = -ENOMEM;
        return;
    }
    add_write(t, key, fs_key_inode(key, in->a.ino), buf, len, false);
    if (S_ISDIR(in->a.mode) && t->n_dirs < TXNB_MAX_DIRS) {
        t->dirs[t->n_dirs] = *in;
        t->dirs[t->n_dirs++].target = NULL; /* not ours; a directory has none */
    }
}

void txnb_put_dirent(struct txnb *t, uint64_t dir, const char *name, uint64_t ino, uint32_t mode)
{
    char key[FS_KEY_MAX];
    void *buf;
    size_t len;
    if (fs_dirent_pack(ino, mode, &buf, &len) != 0) {
        t->err = -ENOMEM;
        return;
    }
    add_write(t, key, fs_key_dirent(key, dir, name, strlen(name)), buf, len, false);
}

void txnb_del_dirent(struct txnb *t, uint64_t dir, const char *name)
{
    char key[FS_KEY_MAX];
    txnb_del(t, key, fs_key_dirent(key, dir, name, strlen(name)));
}

int txnb_commit(struct rfs_fs *fs, struct txnb *t)
{
    char errmsg[RFS_ERRMSG_SIZE];
    uint64_t version;
    int rv;
    if (t->err != 0) {
        return t->err;
    }
    rv = kv_client_txn_ex(fs->kv, t->r, t->nr, t->w, t->nw, &version, errmsg);
    if (t->nw > 0) {
        fs_changed(fs);
    }
    for (unsigned i = 0; i < t->nw; i++) {
        uint64_t ino;
        if (fs_key_inode_ino(t->w[i].key, t->w[i].klen, &ino) == 0) {
            fs_dircache_drop(&fs->dirs, ino);
        }
    }
    for (unsigned i = 0; i < t->n_dirs && rv == 0 && version != 0; i++) {
        t->dirs[i].version = version;
        fs_dircache_put(&fs->dirs, &t->dirs[i]);
    }
    if (rv != 0 && rv != RFS_ECONFLICT) {
        rfs_warnf("fs: transaction of %u reads and %u writes: %s", t->nr, t->nw, errmsg);
    }
    return fs_errno(rv);
}
