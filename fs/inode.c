/* Inodes and directory entries as KV values (FsInode, FsDirent), read with their versions. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "internal.h"
#include "proto/raftfs.pb-c.h"

int64_t fs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int fs_errno(int rv)
{
    switch (rv) {
        case 0:
            return 0;
        case RFS_ENOMEM:
            return -ENOMEM;
        case RFS_ENOTFOUND:
            return -ENOENT;
        case RFS_ECONFLICT:
            return -EAGAIN;
        case RFS_ETOOBIG:
            return -EFBIG;
        case RFS_ENOSPC:
            return -ENOSPC;
        case RFS_EINVAL:
            return -EINVAL;
        default:
            return -EIO;
    }
}

void fs_inode_clear(struct fs_inode *in)
{
    rfs_free(in->target);
    memset(in, 0, sizeof *in);
}

int fs_inode_get(struct rfs_fs *fs, uint64_t ino, struct fs_inode *out)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_client_value v;
    Raftfs__FsInode *pb;
    size_t klen = fs_key_inode(key, ino);
    int rv;

    memset(out, 0, sizeof *out);
    rv = kv_client_get(fs->kv, key, klen, &v, errmsg);
    if (rv != 0) {
        rfs_warnf("fs: reading inode %llx: %s", (unsigned long long)ino, errmsg);
        return fs_errno(rv);
    }
    if (!v.found) {
        kv_client_value_clear(&v);
        return -ENOENT;
    }
    pb = raftfs__fs_inode__unpack(NULL, v.value.len, v.value.base);
    out->version = v.version;
    kv_client_value_clear(&v);
    if (pb == NULL) {
        rfs_errorf("fs: inode %llx does not decode", (unsigned long long)ino);
        return -EIO;
    }
    out->a.ino = ino;
    out->a.mode = pb->mode;
    out->a.uid = pb->uid;
    out->a.gid = pb->gid;
    out->a.nlink = pb->nlink;
    out->a.size = pb->size;
    out->a.rdev = pb->rdev;
    out->a.blocks = pb->blocks * (FS_BLOCK_SIZE / 512);
    out->a.atime_ns = pb->atime_ns;
    out->a.mtime_ns = pb->mtime_ns;
    out->a.ctime_ns = pb->ctime_ns;
    out->parent = pb->parent;
    if (pb->target.len > 0) {
        out->target = rfs_malloc(pb->target.len + 1);
        if (out->target == NULL) {
            raftfs__fs_inode__free_unpacked(pb, NULL);
            return -ENOMEM;
        }
        memcpy(out->target, pb->target.data, pb->target.len);
        out->target[pb->target.len] = '\0';
    }
    raftfs__fs_inode__free_unpacked(pb, NULL);
    return 0;
}

int fs_inode_pack(const struct fs_inode *in, void **buf, size_t *len)
{
    Raftfs__FsInode pb = RAFTFS__FS_INODE__INIT;
    pb.mode = in->a.mode;
    pb.uid = in->a.uid;
    pb.gid = in->a.gid;
    pb.nlink = in->a.nlink;
    pb.size = in->a.size;
    pb.rdev = in->a.rdev;
    pb.blocks = in->a.blocks / (FS_BLOCK_SIZE / 512);
    pb.atime_ns = in->a.atime_ns;
    pb.mtime_ns = in->a.mtime_ns;
    pb.ctime_ns = in->a.ctime_ns;
    pb.parent = in->parent;
    if (in->target != NULL) {
        pb.target.data = (uint8_t *)in->target;
        pb.target.len = strlen(in->target);
    }
    *len = raftfs__fs_inode__get_packed_size(&pb);
    *buf = rfs_malloc(*len ? *len : 1);
    if (*buf == NULL) {
        return -ENOMEM;
    }
    raftfs__fs_inode__pack(&pb, *buf);
    return 0;
}

int fs_dirent_get(struct rfs_fs *fs, uint64_t dir, const char *name, uint64_t *ino, uint32_t *mode,
                  uint64_t *version)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_client_value v;
    Raftfs__FsDirent *pb;
    size_t nlen = strlen(name);
    int rv;

    *version = 0;
    if (nlen > FS_NAME_MAX) {
        return -ENAMETOOLONG;
    }
    rv = kv_client_get(fs->kv, key, fs_key_dirent(key, dir, name, nlen), &v, errmsg);
    if (rv != 0) {
        rfs_warnf("fs: reading an entry of %llx: %s", (unsigned long long)dir, errmsg);
        return fs_errno(rv);
    }
    if (!v.found) {
        kv_client_value_clear(&v);
        return -ENOENT;
    }
    *version = v.version;
    pb = raftfs__fs_dirent__unpack(NULL, v.value.len, v.value.base);
    kv_client_value_clear(&v);
    if (pb == NULL) {
        return -EIO;
    }
    *ino = pb->ino;
    *mode = pb->mode;
    raftfs__fs_dirent__free_unpacked(pb, NULL);
    return 0;
}

int fs_dirent_pack(uint64_t ino, uint32_t mode, void **buf, size_t *len)
{
    Raftfs__FsDirent pb = RAFTFS__FS_DIRENT__INIT;
    pb.ino = ino;
    pb.mode = mode;
    *len = raftfs__fs_dirent__get_packed_size(&pb);
    *buf = rfs_malloc(*len ? *len : 1);
    if (*buf == NULL) {
        return -ENOMEM;
    }
    raftfs__fs_dirent__pack(&pb, *buf);
    return 0;
}
