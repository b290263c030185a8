/* The namespace: lookups, creating and removing names, rename, links, attributes.
 *
 * Every change is read-then-transaction: read what the change depends on (parent inode,
 * entries, the inodes involved) with their versions, compute the new records, and commit
 * them in one kv_client_txn that also checks every version read. If anything changed in
 * between (another mount, another thread), the transaction fails with a conflict and the
 * operation starts again from fresh reads (RETRIES times). A directory's inode is rewritten
 * by every change of its entries (mtime, ctime, nlink), so its version also guards its set
 * of entries: rmdir and rename over a directory check that it is empty, and that stays true
 * until they commit. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../proto/proto.h"
#include "internal.h"
#include "orphan.h"
#include "proto/raftfs.pb-c.h"
#include "txnb.h"

#define RETRIES 64
/* Deepest directory tree a rename checks for a cycle. */
#define MAX_DEPTH 4096

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE  (1 << 1)
#endif

static void backoff(int attempt)
{
    struct timespec ts = {0, (long)(attempt < 10 ? attempt : 10) * 1000000L};
    nanosleep(&ts, NULL);
}

static int check_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || strchr(name, '/') != NULL) {
        return -EINVAL;
    }
    return n > FS_NAME_MAX ? -ENAMETOOLONG : 0;
}

static bool is_dot(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

int rfs_fs_getattr(struct rfs_fs *fs, uint64_t ino, struct rfs_attr *out)
{
    struct fs_inode in;
    int rv = fs_inode_get(fs, ino, &in);
    if (rv == 0) {
        *out = in.a;
        fs_inode_clear(&in);
    }
    return rv;
}

int rfs_fs_lookup(struct rfs_fs *fs, uint64_t parent, const char *name, struct rfs_attr *out)
{
    uint64_t ino, version;
    uint32_t mode;
    int rv = check_name(name);
    if (rv != 0) {
        return rv;
    }
    rv = fs_dirent_get(fs, parent, name, &ino, &mode, &version);
    if (rv == 0) {
        rv = rfs_fs_getattr(fs, ino, out);
    }
    return rv;
}

/* The parent directory for a change of its entries: it must be a directory the caller may
 * write and search. cached: take it from the directory cache if it is there (the
 * transaction checks its version; a refusal is only ever made on a fresh read). */
static int writable_dir(struct rfs_fs *fs, uint64_t dir, const struct rfs_cred *cred, bool cached,
                        struct fs_inode *out)
{
    int rv;
    if (cached && fs_dircache_get(&fs->dirs, dir, out) == 0) {
        if (cred == NULL || rfs_cred_may(cred, &out->a, W_OK | X_OK)) {
            return 0;
        }
        fs_inode_clear(out);
    }
    rv = fs_inode_get(fs, dir, out);
    if (rv != 0) {
        return rv;
    }
    if (!S_ISDIR(out->a.mode)) {
        fs_inode_clear(out);
        return -ENOTDIR;
    }
    fs_dircache_put(&fs->dirs, out);
    if (cred != NULL && !rfs_cred_may(cred, &out->a, W_OK | X_OK)) {
        fs_inode_clear(out);
        return -EACCES;
    }
    return 0;
}

/* Whether the sticky bit of dir keeps cred from removing or replacing the name of inode a. */
static bool sticky_denies(const struct rfs_cred *cred, const struct rfs_attr *dir,
                          const struct rfs_attr *a)
{
    return cred != NULL && cred->uid != 0 && (dir->mode & S_ISVTX) && dir->uid != cred->uid &&
           a->uid != cred->uid;
}

/* The read set entry and new value of a directory whose entries change. */
static void touch_dir(struct txnb *t, struct fs_inode *dir, int nlink_delta, int64_t now)
{
    char key[FS_KEY_MAX];
    txnb_read(t, key, fs_key_inode(key, dir->a.ino), dir->version);
    dir->a.nlink = (uint32_t)((int)dir->a.nlink + nlink_delta);
    dir->a.mtime_ns = dir->a.ctime_ns = now;
    txnb_put_inode(t, dir);
}

/* ---- creating names ---- */

/* optimistic: skip reading the entry first; the transaction checks that it is absent, and a
 * conflict (-EAGAIN) sends the caller round again, reading it (a create usually follows a
 * lookup that found nothing, so this saves a request). */
static int create_once(struct rfs_fs *fs, uint64_t parent, const char *name, uint32_t mode,
                       uint64_t rdev, const char *target, const struct rfs_cred *cred,
                       bool optimistic, struct rfs_attr *out)
{
    struct fs_inode dir, child;
    struct txnb t;
    char key[FS_KEY_MAX];
    uint64_t ino, old, version;
    uint32_t old_mode;
    int64_t now = fs_now_ns();
    bool is_dir = S_ISDIR(mode);
    int rv = writable_dir(fs, parent, cred, optimistic, &dir);
    if (rv != 0) {
        return rv;
    }
    rv = optimistic ? -ENOENT : fs_dirent_get(fs, parent, name, &old, &old_mode, &version);
    if (rv == 0) {
        fs_inode_clear(&dir);
        return -EEXIST;
    }
    if (rv != -ENOENT) {
        fs_inode_clear(&dir);
        return rv;
    }
    /* A file lives beside its directory; a directory gets a placement of its own. */
    rv = fs_alloc_ino(fs, fs_placement(parent), &ino);
    if (rv == 0 && is_dir) {
        ino = fs_make_ino(fs_new_placement(ino & FS_ID_MASK), ino & FS_ID_MASK);
    }
    if (rv != 0) {
        fs_inode_clear(&dir);
        return rv;
    }
    memset(&child, 0, sizeof child);
    child.a.ino = ino;
    child.a.mode = mode;
    child.a.uid = cred->uid;
    child.a.gid = cred->gid;
    if (dir.a.mode & S_ISGID) {
        /* BSD group semantics in a setgid directory; subdirectories inherit the bit. A file
         * that would be setgid-executable in a group its creator is not in loses the bit
         * (as Linux's inode_init_owner does). */
        child.a.gid = dir.a.gid;
        if (is_dir) {
            child.a.mode |= S_ISGID;
        } else if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) && cred->uid != 0 &&
                   !rfs_cred_in_group(cred, dir.a.gid)) {
            child.a.mode &= ~(uint32_t)S_ISGID;
        }
    }
    child.a.nlink = is_dir ? 2 : 1;
    child.a.rdev = rdev;
    child.a.atime_ns = child.a.mtime_ns = child.a.ctime_ns = now;
    child.parent = is_dir ? parent : 0;
    child.target = (char *)target;
    if (target != NULL) {
        child.a.size = strlen(target);
    }
    txnb_init(&t);
    txnb_read(&t, key, fs_key_dirent(key, parent, name, strlen(name)), 0);
    txnb_read(&t, key, fs_key_inode(key, ino), 0);
    txnb_put_inode(&t, &child);
    txnb_put_dirent(&t, parent, name, ino, mode & S_IFMT);
    touch_dir(&t, &dir, is_dir ? 1 : 0, now);
    rv = txnb_commit(fs, &t);
    txnb_free(&t);
    fs_inode_clear(&dir);
    if (rv == 0 && out != NULL) {
        *out = child.a;
    }
    return rv;
}

static int create(struct rfs_fs *fs, uint64_t parent, const char *name, uint32_t mode,
                  uint64_t rdev, const char *target, const struct rfs_cred *cred,
                  struct rfs_attr *out)
{
    int rv = check_name(name);
    if (rv != 0) {
        return rv;
    }
    if (is_dot(name)) {
        return -EEXIST;
    }
    for (int i = 0; i < RETRIES; i++) {
        rv = create_once(fs, parent, name, mode, rdev, target, cred, i == 0, out);
        if (rv != -EAGAIN) {
            return rv;
        }
        if (i > 0) { /* the optimistic try goes round at once, to read the entry */
            backoff(i);
        }
    }
    return -EIO;
}

int rfs_fs_mknod(struct rfs_fs *fs, uint64_t parent, const char *name, uint32_t mode, uint64_t rdev,
                 const struct rfs_cred *cred, struct rfs_attr *out)
{
    if (S_ISDIR(mode) || S_ISLNK(mode)) {
        return -EINVAL;
    }
    if ((mode & S_IFMT) == 0) {
        mode |= S_IFREG;
    }
    return create(fs, parent, name, mode, rdev, NULL, cred, out);
}

int rfs_fs_mkdir(struct rfs_fs *fs, uint64_t parent, const char *name, uint32_t mode,
                 const struct rfs_cred *cred, struct rfs_attr *out)
{
    return create(fs, parent, name, S_IFDIR | (mode & 07777), 0, NULL, cred, out);
}

int rfs_fs_symlink(struct rfs_fs *fs, const char *target, uint64_t parent, const char *name,
                   const struct rfs_cred *cred, struct rfs_attr *out)
{
    size_t n = strlen(target);
    if (n == 0) {
        return -ENOENT;
    }
    if (n >= 4096) {
        return -ENAMETOOLONG;
    }
    return create(fs, parent, name, S_IFLNK | 0777, 0, target, cred, out);
}

int rfs_fs_readlink(struct rfs_fs *fs, uint64_t ino, char *buf, size_t cap)
{
    struct fs_inode in;
    int rv = fs_inode_get(fs, ino, &in);
    size_t n;
    if (rv != 0) {
        return rv;
    }
    if (!S_ISLNK(in.a.mode) || in.target == NULL) {
        fs_inode_clear(&in);
        return -EINVAL;
    }
    n = strlen(in.target);
    snprintf(buf, cap, "%s", in.target);
    fs_inode_clear(&in);
    return (int)(n < cap ? n : cap - 1);
}

static int link_once(struct rfs_fs *fs, uint64_t ino, uint64_t parent, const char *name,
                     const struct rfs_cred *cred, struct rfs_attr *out)
{
    struct fs_inode dir, in;
    struct txnb t;
    char key[FS_KEY_MAX];
    uint64_t old, version;
    uint32_t old_mode;
    int64_t now = fs_now_ns();
    int rv = writable_dir(fs, parent, cred, false, &dir);
    if (rv != 0) {
        return rv;
    }
    rv = fs_inode_get(fs, ino, &in);
    if (rv == 0 && S_ISDIR(in.a.mode)) {
        rv = -EPERM;
    }
    if (rv == 0) {
        rv = fs_dirent_get(fs, parent, name, &old, &old_mode, &version);
        rv = rv == 0 ? -EEXIST : rv == -ENOENT ? 0 : rv;
    }
    if (rv != 0) {
        fs_inode_clear(&dir);
        fs_inode_clear(&in);
        return rv;
    }
    txnb_init(&t);
    txnb_read(&t, key, fs_key_dirent(key, parent, name, strlen(name)), 0);
    txnb_read(&t, key, fs_key_inode(key, ino), in.version);
    in.a.nlink++;
    in.a.ctime_ns = now;
    txnb_put_inode(&t, &in);
    txnb_put_dirent(&t, parent, name, ino, in.a.mode & S_IFMT);
    touch_dir(&t, &dir, 0, now);
    rv = txnb_commit(fs, &t);
    txnb_free(&t);
    if (rv == 0 && out != NULL) {
        *out = in.a;
    }
    fs_inode_clear(&dir);
    fs_inode_clear(&in);
    return rv;
}

int rfs_fs_link(struct rfs_fs *fs, uint64_t ino, uint64_t parent, const char *name,
                const struct rfs_cred *cred, struct rfs_attr *out)
{
    int rv = check_name(name);
    if (rv != 0) {
        return rv;
    }
    if (is_dot(name)) {
        return -EEXIST;
    }
    for (int i = 0; i < RETRIES; i++) {
        rv = link_once(fs, ino, parent, name, cred, out);
        if (rv != -EAGAIN) {
            return rv;
        }
        backoff(i);
    }
    return -EIO;
}

/* ---- removing names ---- */

/* Whether dir has no entries: 0 (empty), -ENOTEMPTY, or an error. */
static int dir_empty(struct rfs_fs *fs, uint64_t dir)
{
    char lo[FS_KEY_MAX], hi[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_scan_result res;
    int rv = kv_client_scan(fs->kv, lo, fs_key_dir_first(lo, dir), hi, fs_key_dir_end(hi, dir), 1,
                            &res, errmsg);
    if (rv != 0) {
        rfs_warnf("fs: listing %llx: %s", (unsigned long long)dir, errmsg);
        return fs_errno(rv);
    }
    rv = res.n > 0 ? -ENOTEMPTY : 0;
    kv_scan_result_clear(&res);
    return rv;
}

/* Drop one name of inode `in` (whose entry is being deleted or replaced): fewer links; a
 * regular file's last link makes it an orphan, whose data goes once no mount has it open
 * (fs/orphan.h); anything else goes at once with its extended attributes. Returns 0 or an
 * error of listing the attributes. */
static int drop_link(struct rfs_fs *fs, struct txnb *t, struct fs_inode *in, int64_t now)
{
    char key[FS_KEY_MAX];
    size_t klen = fs_key_inode(key, in->a.ino);
    txnb_read(t, key, klen, in->version);
    if (S_ISREG(in->a.mode) && in->a.nlink <= 1) {
        fs_orphan_make(fs, t, in, now);
        return 0;
    }
    if (S_ISDIR(in->a.mode) || in->a.nlink <= 1) {
        txnb_del(t, key, klen);
        return fs_xattr_drop_all(fs, t, in->a.ino);
    }
    in->a.nlink--;
    in->a.ctime_ns = now;
    txnb_put_inode(t, in);
    return 0;
}

static int remove_once(struct rfs_fs *fs, uint64_t parent, const char *name, bool want_dir,
                       const struct rfs_cred *cred, bool cached)
{
    struct fs_inode dir, in;
    struct txnb t;
    char key[FS_KEY_MAX];
    uint64_t ino, version;
    uint32_t mode;
    int64_t now = fs_now_ns();
    int rv = writable_dir(fs, parent, cred, cached, &dir);
    if (rv != 0) {
        return rv;
    }
    memset(&in, 0, sizeof in);
    rv = fs_dirent_get(fs, parent, name, &ino, &mode, &version);
    if (rv == 0) {
        rv = fs_inode_get(fs, ino, &in);
    }
    if (rv == 0 && want_dir && !S_ISDIR(in.a.mode)) {
        rv = -ENOTDIR;
    } else if (rv == 0 && !want_dir && S_ISDIR(in.a.mode)) {
        rv = -EISDIR;
    } else if (rv == 0 && sticky_denies(cred, &dir.a, &in.a)) {
        rv = -EPERM;
    } else if (rv == 0 && want_dir) {
        rv = dir_empty(fs, ino);
    }
    if (rv != 0) {
        fs_inode_clear(&dir);
        fs_inode_clear(&in);
        return rv;
    }
    txnb_init(&t);
    txnb_read(&t, key, fs_key_dirent(key, parent, name, strlen(name)), version);
    txnb_del_dirent(&t, parent, name);
    rv = drop_link(fs, &t, &in, now);
    touch_dir(&t, &dir, want_dir ? -1 : 0, now);
    if (rv == 0) {
        rv = txnb_commit(fs, &t);
    }
    txnb_free(&t);
    fs_inode_clear(&dir);
    fs_inode_clear(&in);
    return rv;
}

static int remove_name(struct rfs_fs *fs, uint64_t parent, const char *name, bool want_dir,
                       const struct rfs_cred *cred)
{
    int rv = check_name(name);
    if (rv != 0) {
        return rv;
    }
    if (strcmp(name, ".") == 0) {
        return want_dir ? -EINVAL : -EISDIR;
    }
    if (strcmp(name, "..") == 0) {
        return want_dir ? -ENOTEMPTY : -EISDIR;
    }
    for (int i = 0; i < RETRIES; i++) {
        rv = remove_once(fs, parent, name, want_dir, cred, i == 0);
        if (rv != -EAGAIN) {
            return rv;
        }
        if (i > 0) { /* the try with the cached directory goes round at once */
            backoff(i);
        }
    }
    return -EIO;
}

int rfs_fs_unlink(struct rfs_fs *fs, uint64_t parent, const char *name, const struct rfs_cred *cred)
{
    return remove_name(fs, parent, name, false, cred);
}

int rfs_fs_rmdir(struct rfs_fs *fs, uint64_t parent, const char *name, const struct rfs_cred *cred)
{
    return remove_name(fs, parent, name, true, cred);
}

/* ---- rename ---- */

/* Refuse to move directory `moving` under itself: walk from `to` up to the root, reading
 * each ancestor into the transaction, so a concurrent rename of an ancestor conflicts. */
static int check_ancestors(struct rfs_fs *fs, struct txnb *t, uint64_t moving, uint64_t to)
{
    uint64_t cur = to;
    for (int depth = 0; depth < MAX_DEPTH; depth++) {
        struct fs_inode a;
        char key[FS_KEY_MAX];
        int rv;
        if (cur == moving) {
            return -EINVAL;
        }
        if (cur == FS_ROOT_INO) {
            return 0;
        }
        rv = fs_inode_get(fs, cur, &a);
        if (rv != 0) {
            return rv == -ENOENT ? -EAGAIN : rv; /* removed meanwhile: start over */
        }
        txnb_read(t, key, fs_key_inode(key, cur), a.version);
        cur = a.parent;
        fs_inode_clear(&a);
    }
    return -ELOOP;
}

struct side {
    uint64_t dir;
    const char *name;
    struct fs_inode dirnode;
    bool exists;
    uint64_t ino;
    uint64_t version; /* of the entry */
    struct fs_inode node;
};

static void side_clear(struct side *s)
{
    fs_inode_clear(&s->dirnode);
    fs_inode_clear(&s->node);
}

static int side_read(struct rfs_fs *fs, struct side *s, bool same_dir_as_other,
                     const struct fs_inode *other_dir, const struct rfs_cred *cred)
{
    uint32_t mode;
    int rv;
    if (same_dir_as_other) {
        s->dirnode = *other_dir;
        s->dirnode.target = NULL;
    } else {
        rv = writable_dir(fs, s->dir, cred, false, &s->dirnode);
        if (rv != 0) {
            return rv;
        }
    }
    rv = fs_dirent_get(fs, s->dir, s->name, &s->ino, &mode, &s->version);
    if (rv == -ENOENT) {
        s->exists = false;
        s->version = 0;
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    s->exists = true;
    return fs_inode_get(fs, s->ino, &s->node);
}

static int rename_once(struct rfs_fs *fs, uint64_t parent, const char *name, uint64_t newparent,
                       const char *newname, unsigned flags, const struct rfs_cred *cred)
{
    struct side src = {.dir = parent, .name = name}, dst = {.dir = newparent, .name = newname};
    bool same = parent == newparent;
    bool src_dir, dst_dir;
    struct txnb t;
    char key[FS_KEY_MAX];
    int64_t now = fs_now_ns();
    int rv = side_read(fs, &src, false, NULL, cred);
    if (rv == 0 && !src.exists) {
        rv = -ENOENT;
    }
    if (rv == 0) {
        rv = side_read(fs, &dst, same, &src.dirnode, cred);
    }
    txnb_init(&t);
    if (rv != 0) {
        goto out;
    }
    src_dir = S_ISDIR(src.node.a.mode);
    dst_dir = dst.exists && S_ISDIR(dst.node.a.mode);
    if ((flags & RENAME_NOREPLACE) && dst.exists) {
        rv = -EEXIST;
        goto out;
    }
    if ((flags & RENAME_EXCHANGE) && !dst.exists) {
        rv = -ENOENT;
        goto out;
    }
    if (dst.exists && dst.ino == src.ino) {
        rv = 0; /* two names of one inode: nothing to do (POSIX) */
        goto out;
    }
    /* Sticky directories: the source name is removed, the destination replaced. */
    if (sticky_denies(cred, &src.dirnode.a, &src.node.a) ||
        (dst.exists && sticky_denies(cred, &dst.dirnode.a, &dst.node.a))) {
        rv = -EPERM;
        goto out;
    }
    /* A directory that changes parent rewrites its "..": it must be writable. */
    if (cred != NULL && !same &&
        ((src_dir && !rfs_cred_may(cred, &src.node.a, W_OK)) ||
         ((flags & RENAME_EXCHANGE) && dst_dir && !rfs_cred_may(cred, &dst.node.a, W_OK)))) {
        rv = -EACCES;
        goto out;
    }
    if (!(flags & RENAME_EXCHANGE) && dst.exists) {
        if (src_dir && !dst_dir) {
            rv = -ENOTDIR;
        } else if (!src_dir && dst_dir) {
            rv = -EISDIR;
        } else if (dst_dir) {
            rv = dir_empty(fs, dst.ino);
        }
        if (rv != 0) {
            goto out;
        }
    }
    /* A directory may not go below itself (for an exchange: neither of the two). */
    if (src_dir && !same) {
        rv = check_ancestors(fs, &t, src.ino, newparent);
    }
    if (rv == 0 && (flags & RENAME_EXCHANGE) && dst_dir && !same) {
        rv = check_ancestors(fs, &t, dst.ino, parent);
    }
    if (rv != 0) {
        goto out;
    }

    txnb_read(&t, key, fs_key_dirent(key, parent, name, strlen(name)), src.version);
    txnb_read(&t, key, fs_key_dirent(key, newparent, newname, strlen(newname)), dst.version);
    /* The moved inode: its ctime, and a directory's parent. */
    txnb_read(&t, key, fs_key_inode(key, src.ino), src.node.version);
    src.node.a.ctime_ns = now;
    if (src_dir) {
        src.node.parent = newparent;
    }
    txnb_put_inode(&t, &src.node);
    txnb_put_dirent(&t, newparent, newname, src.ino, src.node.a.mode & S_IFMT);
    if (flags & RENAME_EXCHANGE) {
        txnb_read(&t, key, fs_key_inode(key, dst.ino), dst.node.version);
        dst.node.a.ctime_ns = now;
        if (dst_dir) {
            dst.node.parent = parent;
        }
        txnb_put_inode(&t, &dst.node);
        txnb_put_dirent(&t, parent, name, dst.ino, dst.node.a.mode & S_IFMT);
    } else {
        txnb_del_dirent(&t, parent, name);
        if (dst.exists) {
            rv = drop_link(fs, &t, &dst.node, now);
            if (rv != 0) {
                goto out;
            }
        }
    }
    /* Parents: times, and ".." links when a directory changes parent. */
    {
        int src_delta = 0, dst_delta = 0;
        if (!same) {
            if (src_dir) {
                src_delta--, dst_delta++;
            }
            if ((flags & RENAME_EXCHANGE) && dst_dir) {
                src_delta++, dst_delta--;
            }
        }
        if (!(flags & RENAME_EXCHANGE) && dst_dir) {
            dst_delta--; /* the replaced directory's ".." */
        }
        if (same) {
            touch_dir(&t, &src.dirnode, src_delta + dst_delta, now);
        } else {
            touch_dir(&t, &src.dirnode, src_delta, now);
            touch_dir(&t, &dst.dirnode, dst_delta, now);
        }
    }
    rv = txnb_commit(fs, &t);
out:
    txnb_free(&t);
    if (same) {
        dst.dirnode.target = NULL;
        fs_inode_clear(&dst.node);
        side_clear(&src);
    } else {
        side_clear(&src);
        side_clear(&dst);
    }
    return rv;
}

int rfs_fs_rename(struct rfs_fs *fs, uint64_t parent, const char *name, uint64_t newparent,
                  const char *newname, unsigned flags, const struct rfs_cred *cred)
{
    int rv = check_name(name);
    if (rv == 0) {
        rv = check_name(newname);
    }
    if (rv != 0) {
        return rv;
    }
    if (is_dot(name) || is_dot(newname)) {
        return -EBUSY;
    }
    if ((flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0 ||
        (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE)) {
        return -EINVAL;
    }
    for (int i = 0; i < RETRIES; i++) {
        rv = rename_once(fs, parent, name, newparent, newname, flags, cred);
        if (rv != -EAGAIN) {
            return rv;
        }
        backoff(i);
    }
    return -EIO;
}

/* ---- attributes ---- */

/* Whether mode (permission bits) is old's with only setuid and/or setgid taken away: what the
 * kernel asks for when a write, truncate or chown by someone else must drop the privileges
 * (FUSE without handle_killpriv turns ATTR_KILL_SUID/SGID into a mode change). */
static bool only_clears_setid(uint32_t old, uint32_t mode)
{
    uint32_t setid = S_ISUID | S_ISGID;
    old &= 07777;
    return mode != old && (mode & ~old) == 0 && (mode | setid) == (old | setid);
}

/* touch_mtime: also set mtime to now (a truncate to the size the file has). */
static int setattr_once(struct rfs_fs *fs, uint64_t ino, const struct rfs_attr *in, int to_set,
                        bool touch_mtime, const struct rfs_cred *cred, struct rfs_attr *out)
{
    struct fs_inode node;
    struct txnb t;
    char key[FS_KEY_MAX];
    int64_t now = fs_now_ns();
    bool owner, root = cred == NULL || cred->uid == 0;
    int rv = fs_inode_get(fs, ino, &node);
    if (rv != 0) {
        return rv;
    }
    owner = root || node.a.uid == cred->uid;
    if (to_set & RFS_SET_MODE) {
        uint32_t mode = in->mode & 07777;
        uint32_t gid = (to_set & RFS_SET_GID) ? in->gid : node.a.gid;
        if (!owner &&
            !(only_clears_setid(node.a.mode, mode) && rfs_cred_may(cred, &node.a, W_OK))) {
            rv = -EPERM;
        } else if (!root && !rfs_cred_in_group(cred, gid)) {
            mode &= ~(uint32_t)S_ISGID; /* not in the (new) group: dropped, as Linux does */
        }
        node.a.mode = (node.a.mode & S_IFMT) | mode;
    }
    if (rv == 0 && (to_set & (RFS_SET_UID | RFS_SET_GID))) {
        bool uid_change = (to_set & RFS_SET_UID) && in->uid != node.a.uid;
        bool gid_change = (to_set & RFS_SET_GID) && in->gid != node.a.gid;
        if (uid_change && !root) {
            rv = -EPERM;
        } else if (gid_change && !root && (!owner || !rfs_cred_in_group(cred, in->gid))) {
            rv = -EPERM;
        }
        if (rv == 0) {
            if (to_set & RFS_SET_UID) {
                node.a.uid = in->uid;
            }
            if (to_set & RFS_SET_GID) {
                node.a.gid = in->gid;
            }
            if ((uid_change || gid_change) && !S_ISDIR(node.a.mode)) {
                node.a.mode &= ~(uint32_t)S_ISUID;
                if (node.a.mode & S_IXGRP) {
                    node.a.mode &= ~(uint32_t)S_ISGID;
                }
            }
        }
    }
    if (rv == 0 &&
        (to_set & (RFS_SET_ATIME | RFS_SET_MTIME | RFS_SET_ATIME_NOW | RFS_SET_MTIME_NOW))) {
        /* "now" for both needs write permission; any explicit time, ownership */
        bool explicit_time = (to_set & (RFS_SET_ATIME | RFS_SET_MTIME)) != 0;
        if (!owner && (explicit_time || !rfs_cred_may(cred, &node.a, W_OK))) {
            rv = explicit_time ? -EPERM : -EACCES;
        }
        if (to_set & RFS_SET_ATIME_NOW) {
            node.a.atime_ns = now;
        } else if (to_set & RFS_SET_ATIME) {
            node.a.atime_ns = in->atime_ns;
        }
        if (to_set & RFS_SET_MTIME_NOW) {
            node.a.mtime_ns = now;
        } else if (to_set & RFS_SET_MTIME) {
            node.a.mtime_ns = in->mtime_ns;
        }
    }
    if (rv != 0) {
        fs_inode_clear(&node);
        return rv;
    }
    if (touch_mtime) {
        node.a.mtime_ns = now;
    }
    node.a.ctime_ns = (to_set & RFS_SET_CTIME) ? in->ctime_ns : now;
    txnb_init(&t);
    txnb_read(&t, key, fs_key_inode(key, ino), node.version);
    txnb_put_inode(&t, &node);
    rv = txnb_commit(fs, &t);
    txnb_free(&t);
    if (rv == 0 && out != NULL) {
        *out = node.a;
    }
    fs_inode_clear(&node);
    return rv;
}

int rfs_fs_setattr(struct rfs_fs *fs, uint64_t ino, const struct rfs_attr *in, int to_set,
                   const struct rfs_cred *cred, struct rfs_attr *out)
{
    bool touch_mtime = false;
    int rv;
    if (to_set & RFS_SET_SIZE) {
        struct rfs_attr cur;
        rv = rfs_fs_getattr(fs, ino, &cur);
        if (rv != 0) {
            return rv;
        }
        if (S_ISDIR(cur.mode)) {
            return -EISDIR;
        }
        if (!S_ISREG(cur.mode)) {
            return -EINVAL;
        }
        if (cred != NULL && !(to_set & RFS_SET_SIZE_OPEN) && !rfs_cred_may(cred, &cur, W_OK)) {
            return -EACCES;
        }
        if (in->size == cur.size) {
            /* nothing to cut, but m/ctime change all the same (as on ext4) */
            touch_mtime = true;
        } else {
            rv = rfs_fs_truncate(fs, ino, in->size);
            if (rv != 0) {
                return rv;
            }
        }
        to_set &= ~(RFS_SET_SIZE | RFS_SET_SIZE_OPEN);
        if (to_set == 0 && !touch_mtime) {
            return rfs_fs_getattr(fs, ino, out);
        }
    }
    for (int i = 0; i < RETRIES; i++) {
        rv = setattr_once(fs, ino, in, to_set, touch_mtime, cred, out);
        if (rv != -EAGAIN) {
            return rv;
        }
        backoff(i);
    }
    return -EIO;
}

/* ---- listing ---- */

int rfs_fs_readdir(struct rfs_fs *fs, uint64_t dir, const char *after, rfs_fs_dirent_cb cb,
                   void *data)
{
    char lo[FS_KEY_MAX + 1], hi[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    size_t lolen, hilen = fs_key_dir_end(hi, dir);
    struct fs_inode node;
    int rv = fs_inode_get(fs, dir, &node);
    if (rv != 0) {
        return rv;
    }
    rv = S_ISDIR(node.a.mode) ? 0 : -ENOTDIR;
    fs_inode_clear(&node);
    if (rv != 0) {
        return rv;
    }
    if (after != NULL && after[0] != '\0') {
        size_t n = strlen(after);
        if (n > FS_NAME_MAX) {
            return -EINVAL;
        }
        lolen = fs_key_dirent(lo, dir, after, n);
        lo[lolen++] = '\0'; /* the first key after `after` */
    } else {
        lolen = fs_key_dir_first(lo, dir);
    }
    for (;;) {
        struct kv_scan_result res;
        bool stop = false;
        rv = kv_client_scan(fs->kv, lo, lolen, hi, hilen, 256, &res, errmsg);
        if (rv != 0) {
            rfs_warnf("fs: listing %llx: %s", (unsigned long long)dir, errmsg);
            return fs_errno(rv);
        }
        for (size_t i = 0; i < res.n && !stop; i++) {
            const char *name;
            size_t nlen;
            char buf[FS_NAME_MAX + 1];
            Raftfs__FsDirent *d;
            if (fs_key_dirent_name(res.pairs[i].key.base, res.pairs[i].key.len, dir, &name,
                                   &nlen) != 0 ||
                nlen > FS_NAME_MAX) {
                continue;
            }
            memcpy(buf, name, nlen);
            buf[nlen] = '\0';
            d = raftfs__fs_dirent__unpack(NULL, res.pairs[i].value.len, res.pairs[i].value.base);
            if (d == NULL) {
                continue;
            }
            stop = cb(data, buf, d->ino, d->mode) != 0;
            raftfs__fs_dirent__free_unpacked(d, NULL);
            lolen = res.pairs[i].key.len;
            memcpy(lo, res.pairs[i].key.base, lolen);
            lo[lolen++] = '\0';
        }
        stop = stop || !res.more || res.n == 0;
        kv_scan_result_clear(&res);
        if (stop) {
            return 0;
        }
    }
}
