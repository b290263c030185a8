/* The filesystem handle: connecting to the cluster, the root directory, inode numbers,
 * permission checks. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/alloc.h"
#include "../common/crc32.h"
#include "../common/log.h"
#include "../meta/client.h"
#include "../meta/meta.h"
#include "internal.h"
#include "orphan.h"

/* Ids taken from the meta group at a time. */
#define ID_BATCH 1024

/* Create the root directory unless it exists (a transaction: two first mounts agree). */
static int make_root(struct rfs_fs *fs, char *errmsg)
{
    char key[FS_KEY_MAX];
    struct fs_inode root;
    struct kv_txn_read rd;
    struct kv_txn_write wr;
    int rv = fs_inode_get(fs, FS_ROOT_INO, &root);
    if (rv == 0) {
        fs_inode_clear(&root);
        return 0;
    }
    if (rv != -ENOENT) {
        rfs_errmsg_printf(errmsg, "cannot read the root directory (%s)", strerror(-rv));
        return rv;
    }
    memset(&root, 0, sizeof root);
    root.a.ino = FS_ROOT_INO;
    root.a.mode = S_IFDIR | 0755;
    root.a.nlink = 2;
    root.parent = FS_ROOT_INO;
    root.a.atime_ns = root.a.mtime_ns = root.a.ctime_ns = fs_now_ns();
    rd.key = key;
    rd.klen = fs_key_inode(key, FS_ROOT_INO);
    rd.version = 0;
    wr.key = key;
    wr.klen = rd.klen;
    wr.del = false;
    rv = fs_inode_pack(&root, (void **)&wr.value, &wr.vlen);
    if (rv != 0) {
        return rv;
    }
    rv = kv_client_txn(fs->kv, &rd, 1, &wr, 1, errmsg);
    rfs_free((void *)wr.value);
    if (rv == RFS_ECONFLICT) {
        return 0; /* another mount made it first */
    }
    if (rv == 0) {
        rfs_infof("fs: created the root directory");
    }
    return fs_errno(rv);
}

int rfs_fs_open(struct rfs_fs **out, const struct rfs_fs_options *o, char *errmsg)
{
    struct rfs_fs *fs = rfs_calloc(1, sizeof *fs);
    unsigned timeout = o->timeout_ms ? o->timeout_ms : 10000;
    int rv;
    if (fs == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&fs->id_mu, NULL);
    fs_dircache_init(&fs->dirs);
    pthread_mutex_init(&fs->nocap_mu, NULL);
    fs_space_init(&fs->space);
    rv = fs_io_pool_new(&fs->io, FS_IO_THREADS);
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "cannot start the I/O threads: %s", strerror(-rv));
        rfs_fs_close(fs);
        return rv;
    }
    rv = kv_client_connect(&fs->kv, o->meta, true, 0, timeout, 0, errmsg);
    if (rv == 0) {
        rv = kv_client_connect(&fs->meta, o->meta, false, META_GROUP_ID, timeout, 0, errmsg);
    }
    if (rv != 0) {
        rfs_fs_close(fs);
        return rv == RFS_EINVAL ? -EINVAL : -ENOMEM;
    }
    rv = fs_orphans_start(fs, o->orphan_scan_ms, o->orphan_grace_ms, &fs->orphans);
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "cannot start the collector thread: %s", strerror(-rv));
        rfs_fs_close(fs);
        return rv;
    }
    rv = make_root(fs, errmsg);
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg,
                         "the cluster at %s did not answer: check that the meta group "
                         "and at least one joined shard group are running",
                         o->meta);
        rfs_fs_close(fs);
        return rv == -EIO ? -EHOSTUNREACH : rv;
    }
    *out = fs;
    return 0;
}

void rfs_fs_close(struct rfs_fs *fs)
{
    if (fs == NULL) {
        return;
    }
    /* The collector first: it uses the clients and the lease (its own holds), and deletes
     * what the last closes left. */
    fs_orphans_stop(fs->orphans);
    rfs_fs_locks_stop(fs);
    fs_io_pool_free(fs->io); /* its jobs use the clients */
    fs_space_close(&fs->space);
    kv_client_free(fs->kv);
    kv_client_free(fs->meta);
    pthread_mutex_destroy(&fs->id_mu);
    fs_dircache_destroy(&fs->dirs);
    pthread_mutex_destroy(&fs->nocap_mu);
    rfs_free(fs);
}

int fs_alloc_ino(struct rfs_fs *fs, uint16_t placement, uint64_t *ino)
{
    uint64_t id;
    pthread_mutex_lock(&fs->id_mu);
    while (fs->next_id >= fs->end_id) {
        char errmsg[RFS_ERRMSG_SIZE];
        uint64_t first;
        int rv = meta_client_alloc_ids(fs->meta, ID_BATCH, &first, errmsg);
        if (rv != 0) {
            pthread_mutex_unlock(&fs->id_mu);
            rfs_warnf("fs: allocating inode numbers: %s", errmsg);
            return fs_errno(rv);
        }
        fs->next_id = first < FS_FIRST_ID ? FS_FIRST_ID : first;
        fs->end_id = first + ID_BATCH;
    }
    id = fs->next_id++;
    pthread_mutex_unlock(&fs->id_mu);
    if (id > FS_ID_MASK) {
        return -ENOSPC;
    }
    *ino = fs_make_ino(placement, id);
    return 0;
}

uint16_t fs_new_placement(uint64_t id)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(id >> (8 * i));
    }
    return (uint16_t)rfs_crc32(0, b, sizeof b);
}

bool rfs_cred_in_group(const struct rfs_cred *c, uint32_t gid)
{
    bool in_group = c->gid == gid;
    for (unsigned i = 0; i < c->n_groups && !in_group; i++) {
        in_group = c->groups[i] == gid;
    }
    return in_group;
}

bool rfs_cred_may(const struct rfs_cred *cred, const struct rfs_attr *a, int mask)
{
    uint32_t bits;
    if (cred->uid == 0) {
        /* root: everything, but execute only if some x bit is set (or a directory) */
        return !(mask & 1) || S_ISDIR(a->mode) || (a->mode & 0111);
    }
    if (a->uid == cred->uid) {
        bits = (a->mode >> 6) & 7;
    } else if (rfs_cred_in_group(cred, a->gid)) {
        bits = (a->mode >> 3) & 7;
    } else {
        bits = a->mode & 7;
    }
    return (bits & (uint32_t)mask) == (uint32_t)mask;
}
