/* raftfs-mount's FUSE operations: each op_<name> takes a request from the kernel, asks fs/fs.h
 * (which returns 0 or -errno), and makes exactly one fuse_reply_* call.
 *
 * Caching: entries and attributes are given to the kernel with ctx->cache_timeout; names that
 * do not exist are not cached (another mount may create them). Close-to-open consistency
 * between mounts: every open reads the inode from the cluster and tells the kernel to forget
 * the attributes it cached (fuse_lowlevel_notify_inval_inode, attributes only), so that the
 * size and mtime the opener sees (fstat, and reads, which the kernel clamps to the size it
 * knows) are those of the last close anywhere; and files are opened without keep_cache, so
 * the kernel drops their cached pages at every open. Without the kernel's writeback cache,
 * every write comes here before write(2) returns; the open file buffers it (fs/file.h) until
 * close, fsync, or anything else here that needs it (see "file data" below).
 *
 * Permissions: the filesystem checks the caller's credentials where it changes things
 * (creating, removing, chmod/chown/utimens); open, opendir and access are checked here from
 * the mode bits, so a mount without -o default_permissions still refuses what the modes
 * forbid. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "dirlist.h"
#include "files.h"
#include "fuse_ops.h"
#include "locks.h"
#include "readahead_kb.h"

#if FUSE_ROOT_ID != FS_ROOT_INO
#error "FUSE inode numbers are the filesystem's own: the roots must agree"
#endif

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE  (1 << 1)
#endif

static struct mount_ctx *ctx_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* ---- conversions ---- */

static void ns_to_timespec(int64_t ns, struct timespec *ts)
{
    int64_t sec = ns / 1000000000, rem = ns % 1000000000;
    if (rem < 0) {
        sec--;
        rem += 1000000000;
    }
    ts->tv_sec = (time_t)sec;
    ts->tv_nsec = (long)rem;
}

static int64_t timespec_to_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static void attr_to_stat(const struct rfs_attr *a, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = (ino_t)a->ino;
    st->st_mode = (mode_t)a->mode;
    st->st_nlink = (nlink_t)a->nlink;
    st->st_uid = (uid_t)a->uid;
    st->st_gid = (gid_t)a->gid;
    st->st_rdev = (dev_t)a->rdev;
    st->st_size = (off_t)a->size;
    st->st_blksize = FS_BLOCK_SIZE;
    st->st_blocks = (blkcnt_t)a->blocks;
    ns_to_timespec(a->atime_ns, &st->st_atim);
    ns_to_timespec(a->mtime_ns, &st->st_mtim);
    ns_to_timespec(a->ctime_ns, &st->st_ctim);
}

/* The caller's credentials. Supplementary groups are read (from /proc) only for callers other
 * than root, who never needs them. */
static void cred_of(fuse_req_t req, struct rfs_cred *c)
{
    const struct fuse_ctx *fc = fuse_req_ctx(req);
    int n;
    memset(c, 0, sizeof *c);
    c->uid = fc->uid;
    c->gid = fc->gid;
    if (c->uid == 0) {
        return;
    }
    n = fuse_req_getgroups(req, (int)(sizeof c->groups / sizeof c->groups[0]), c->groups);
    if (n > 0) {
        /* More groups than fit: the first ones are used. */
        c->n_groups = (unsigned)n < sizeof c->groups / sizeof c->groups[0]
                          ? (unsigned)n
                          : (unsigned)(sizeof c->groups / sizeof c->groups[0]);
    }
}

/* The access mask an open(2) with these flags needs. */
static int open_mask(int flags)
{
    int mask = 0;
    switch (flags & O_ACCMODE) {
        case O_RDONLY:
            mask = R_OK;
            break;
        case O_WRONLY:
            mask = W_OK;
            break;
        default:
            mask = R_OK | W_OK;
            break;
    }
    if (flags & O_TRUNC) {
        mask |= W_OK;
    }
    return mask;
}

static void reply_entry(fuse_req_t req, const struct rfs_attr *a)
{
    struct mount_ctx *m = ctx_of(req);
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = a->ino;
    e.attr_timeout = m->cache_timeout;
    e.entry_timeout = m->cache_timeout;
    attr_to_stat(a, &e.attr);
    fuse_reply_entry(req, &e);
}

static void reply_attr(fuse_req_t req, const struct rfs_attr *a)
{
    struct stat st;
    attr_to_stat(a, &st);
    fuse_reply_attr(req, &st, ctx_of(req)->cache_timeout);
}

/* ---- the session ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct mount_ctx *m = userdata;
    /* Writes reach the filesystem as they are made (see the top of this file). */
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    /* The kernel clears setuid/setgid on write, truncate and chown (with a setattr); the
     * filesystem does not do it by itself on write. */
    conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
    /* open(O_TRUNC) truncates in op_open, which saves a setattr round trip. */
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) {
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    }
    /* File locks are the cluster's (mount/locks.c), so they hold across mounts: the kernel
     * sends fcntl and flock locks here instead of keeping them itself. */
    if (conn->capable & FUSE_CAP_POSIX_LOCKS) {
        conn->want |= FUSE_CAP_POSIX_LOCKS;
    }
    if (conn->capable & FUSE_CAP_FLOCK_LOCKS) {
        conn->want |= FUSE_CAP_FLOCK_LOCKS;
    }
    rfs_infof("mount: session started (kernel protocol %u.%u)", conn->proto_major,
              conn->proto_minor);
    if (m->readahead_kb != 0 && m->mountpoint != NULL) {
        mount_set_readahead_kb_soon(m->mountpoint, m->readahead_kb);
    }
}

static void op_destroy(void *userdata)
{
    (void)userdata;
    rfs_infof("mount: session ended");
}

/* ---- names and attributes ---- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct mount_ctx *m = ctx_of(req);
    struct rfs_attr a;
    bool open_here = false;
    int rv = rfs_fs_lookup(m->fs, parent, name, &a);
    if (rv == 0 && S_ISREG(a.mode)) {
        /* the size the kernel gets must count what is buffered here (flush errors are the
         * writers' to report) */
        mount_files_flush_inode(m, a.ino, &open_here);
        if (open_here) {
            rv = rfs_fs_getattr(m->fs, a.ino, &a);
        }
    }
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    reply_entry(req, &a);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    (void)ino;
    (void)nlookup;
    fuse_reply_none(req); /* no per-inode state */
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    (void)count;
    (void)forgets;
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mount_ctx *m = ctx_of(req);
    struct rfs_attr a;
    int rv;
    (void)fi;
    /* by name or through a descriptor, the size counts what is buffered here (flush errors
     * are the writers' to report) */
    mount_files_flush_inode(m, ino, NULL);
    rv = rfs_fs_getattr(m->fs, ino, &a);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    reply_attr(req, &a);
}

static int do_setattr(fuse_req_t req, fuse_ino_t ino, const struct stat *st, int to_set,
                      struct fuse_file_info *fi, struct rfs_attr *out)
{
    struct mount_ctx *m = ctx_of(req);
    struct rfs_attr in;
    struct rfs_cred cred;
    int set = 0, rv;
    cred_of(req, &cred);
    memset(&in, 0, sizeof in);
    /* Buffered writes first: they came before this (a size or mtime set now must stay), so
     * if they cannot be written this fails. */
    rv = mount_files_flush_inode(m, ino, NULL);
    if (rv != 0) {
        return rv;
    }
    if (to_set & FUSE_SET_ATTR_MODE) {
        set |= RFS_SET_MODE;
        in.mode = (uint32_t)st->st_mode;
    }
    if (to_set & FUSE_SET_ATTR_UID) {
        set |= RFS_SET_UID;
        in.uid = (uint32_t)st->st_uid;
    }
    if (to_set & FUSE_SET_ATTR_GID) {
        set |= RFS_SET_GID;
        in.gid = (uint32_t)st->st_gid;
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
        set |= RFS_SET_SIZE;
        in.size = (uint64_t)st->st_size;
        if (fi != NULL) {
            /* ftruncate: the descriptor was opened for writing, whatever the mode says now */
            set |= RFS_SET_SIZE_OPEN;
        }
    }
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
        set |= RFS_SET_ATIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
        set |= RFS_SET_ATIME;
        in.atime_ns = timespec_to_ns(&st->st_atim);
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
        set |= RFS_SET_MTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
        set |= RFS_SET_MTIME;
        in.mtime_ns = timespec_to_ns(&st->st_mtim);
    }
    if (to_set & FUSE_SET_ATTR_CTIME) {
        set |= RFS_SET_CTIME;
        in.ctime_ns = timespec_to_ns(&st->st_ctim);
    }
    if (set == 0) {
        return rfs_fs_getattr(m->fs, ino, out);
    }
    return rfs_fs_setattr(m->fs, ino, &in, set, &cred, out);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    struct rfs_attr a;
    int rv = do_setattr(req, ino, attr, to_set, fi, &a);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    reply_attr(req, &a);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
    struct rfs_attr a;
    struct rfs_cred cred;
    int rv = rfs_fs_getattr(ctx_of(req)->fs, ino, &a);
    if (rv == 0 && mask != F_OK) {
        cred_of(req, &cred);
        rv = rfs_cred_may(&cred, &a, mask) ? 0 : -EACCES;
    }
    fuse_reply_err(req, -rv);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    char buf[PATH_MAX + 1];
    int rv = rfs_fs_readlink(ctx_of(req)->fs, ino, buf, sizeof buf);
    if (rv < 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    fuse_reply_readlink(req, buf);
}

/* ---- creating and removing names ---- */

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    struct rfs_cred cred;
    struct rfs_attr a;
    int rv;
    cred_of(req, &cred);
    rv = rfs_fs_mknod(ctx_of(req)->fs, parent, name, (uint32_t)mode, (uint64_t)rdev, &cred, &a);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    reply_entry(req, &a);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct rfs_cred cred;
    struct rfs_attr a;
    int rv;
    cred_of(req, &cred);
    rv = rfs_fs_mkdir(ctx_of(req)->fs, parent, name, (uint32_t)mode, &cred, &a);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    reply_entry(req, &a);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
    struct rfs_cred cred;
    struct rfs_attr a;
    int rv;
    cred_of(req, &cred);
    rv = rfs_fs_symlink(ctx_of(req)->fs, target, parent, name, &cred, &a);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    reply_entry(req, &a);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct rfs_cred cred;
    struct rfs_attr a;
    int rv;
    cred_of(req, &cred);
    rv = rfs_fs_link(ctx_of(req)->fs, ino, newparent, newname, &cred, &a);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    reply_entry(req, &a);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct rfs_cred cred;
    cred_of(req, &cred);
    fuse_reply_err(req, -rfs_fs_unlink(ctx_of(req)->fs, parent, name, &cred));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct rfs_cred cred;
    cred_of(req, &cred);
    fuse_reply_err(req, -rfs_fs_rmdir(ctx_of(req)->fs, parent, name, &cred));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    struct rfs_cred cred;
    int rv;
    cred_of(req, &cred);
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
        rv = -EINVAL; /* RENAME_WHITEOUT: no overlay support */
    } else {
        rv = rfs_fs_rename(ctx_of(req)->fs, parent, name, newparent, newname, flags, &cred);
    }
    fuse_reply_err(req, -rv);
}

/* ---- file data ----
 * An open file is an fs/file.h handle (fi->fh, listed in mount/files.h), which buffers
 * writes until flush, fsync, close or a read through it. Whatever reaches an inode some
 * other way (stat or truncate by name, another open, a read or a write through another
 * descriptor) first flushes what this mount's handles hold: within one mount a file behaves
 * as on a local disk, between mounts close-to-open. */

static struct mount_open_file *file_of(const struct fuse_file_info *fi)
{
    return (struct mount_open_file *)(uintptr_t)fi->fh;
}

/* Make the kernel forget the attributes it caches for ino (not its pages: an open without
 * keep_cache drops those), so the next stat or read past the size it knew asks here. Safe
 * inside an open: the kernel takes no lock an open holds for an attributes-only
 * invalidation (offset < 0). -ENOENT (the kernel has no such inode cached) is fine. */
static void forget_cached_attrs(struct mount_ctx *m, uint64_t ino)
{
    int rv;
    if (m->se == NULL) {
        return;
    }
    rv = fuse_lowlevel_notify_inval_inode(m->se, (fuse_ino_t)ino, -1, 0);
    if (rv != 0 && rv != -ENOENT) {
        rfs_debugf("mount: invalidating the attributes of %llx: %s", (unsigned long long)ino,
                   strerror(-rv));
    }
}

/* An O_APPEND handle bypasses the page cache. Through the page cache the kernel may hand one
 * write(2) over as several write requests (it cuts at a page it has not cached and does not
 * fill), and anything that syncs the handle in between (an open, lookup or getattr of the
 * file here) would let another mount's append land inside the record. A direct write comes
 * whole, up to max_write (1 MiB), and is appended whole. It also keeps the kernel from
 * caching pages at offsets that are not where the bytes went. */
static void set_append_mode(struct fuse_file_info *fi, struct mount_open_file *o,
                            const struct rfs_attr *a)
{
    fi->direct_io = (fi->flags & O_APPEND) != 0;
    /* Direct writes do not clear setuid/setgid in the kernel: kill_setid_on_write does. */
    o->kill_setid = fi->direct_io && (a->mode & (S_ISUID | S_ISGID)) != 0;
}

/* Open the file a describes (a is updated if O_TRUNC truncates it) into fi->fh. */
static int do_open(fuse_req_t req, struct rfs_attr *a, struct fuse_file_info *fi)
{
    struct mount_ctx *m = ctx_of(req);
    struct mount_open_file *o;
    struct rfs_cred cred;
    int rv;
    if (S_ISDIR(a->mode)) {
        return -EISDIR;
    }
    cred_of(req, &cred);
    if (!rfs_cred_may(&cred, a, open_mask(fi->flags))) {
        return -EACCES;
    }
    mount_files_flush_inode(m, a->ino, NULL); /* failures are the writers' to report */
    if ((fi->flags & O_TRUNC) && S_ISREG(a->mode)) {
        /* FUSE_CAP_ATOMIC_O_TRUNC: the kernel leaves it to us (mtime and ctime change even
         * when the file is empty, as on a local disk) */
        rv = rfs_fs_truncate(m->fs, a->ino, 0);
        if (rv == 0) {
            rv = rfs_fs_getattr(m->fs, a->ino, a);
        }
        if (rv != 0) {
            return rv;
        }
    }
    o = mount_file_open(m, a->ino, fi->flags);
    if (o == NULL) {
        return -ENOMEM;
    }
    fi->fh = (uintptr_t)o;
    fi->keep_cache = 0;
    set_append_mode(fi, o, a);
    forget_cached_attrs(m, a->ino); /* close-to-open: see the top of this file */
    return 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct rfs_attr a;
    int rv = rfs_fs_getattr(ctx_of(req)->fs, ino, &a);
    if (rv == 0 && !rfs_fs_may_open(ctx_of(req)->fs, &a)) {
        rv = -ENOENT; /* unlinked (on another mount) since the kernel cached its name */
    }
    if (rv == 0) {
        rv = do_open(req, &a, fi);
    }
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    if (fuse_reply_open(req, fi) == -ENOENT) {
        mount_file_release(ctx_of(req), file_of(fi)); /* interrupted: no release will come */
    }
}

/* Create and open name; if another mount made it first (and O_EXCL is not asked for), open
 * theirs (truncated if O_TRUNC says so). */
static int do_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     struct fuse_file_info *fi, struct rfs_attr *a)
{
    struct mount_ctx *m = ctx_of(req);
    struct mount_open_file *o;
    struct rfs_cred cred;
    int rv;
    cred_of(req, &cred);
    rv = rfs_fs_mknod(m->fs, parent, name, S_IFREG | ((uint32_t)mode & 07777), 0, &cred, a);
    if (rv == -EEXIST && !(fi->flags & O_EXCL)) {
        rv = rfs_fs_lookup(m->fs, parent, name, a);
        return rv != 0 ? rv : do_open(req, a, fi);
    }
    if (rv != 0) {
        return rv;
    }
    o = mount_file_open(m, a->ino, fi->flags);
    if (o == NULL) {
        return -ENOMEM; /* the file stays, empty, as after a crash between the two */
    }
    fi->fh = (uintptr_t)o;
    fi->keep_cache = 0;
    set_append_mode(fi, o, a);
    return 0;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    struct mount_ctx *m = ctx_of(req);
    struct fuse_entry_param e;
    struct rfs_attr a;
    int rv = do_create(req, parent, name, mode, fi, &a);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    memset(&e, 0, sizeof e);
    e.ino = a.ino;
    e.attr_timeout = m->cache_timeout;
    e.entry_timeout = m->cache_timeout;
    attr_to_stat(&a, &e.attr);
    if (fuse_reply_create(req, &e, fi) == -ENOENT) {
        mount_file_release(m, file_of(fi));
    }
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct mount_ctx *m = ctx_of(req);
    void *buf = rfs_malloc(size > 0 ? size : 1);
    size_t n = 0;
    int rv;
    if (buf == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    mount_files_flush_inode(m, ino,
                            NULL); /* what other handles here wrote (their errors are theirs) */
    rv = rfs_file_read(file_of(fi)->f, (uint64_t)off, size, buf, &n);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
    } else {
        fuse_reply_buf(req, buf, n);
    }
    rfs_free(buf);
}

/* The kernel clears setuid and setgid on a write through the page cache, but leaves it to the
 * filesystem on a direct write (FUSE_WRITE_KILL_SUIDGID, which libfuse does not pass on), so
 * for O_APPEND handles (direct_io) it is done here, by the rule the kernel applies: a writer
 * without CAP_FSETID (taken to be everyone but root) clears setuid, and setgid when the file is
 * group-executable or the writer is not in its group. Once per handle. */
static void kill_setid_on_write(fuse_req_t req, fuse_ino_t ino, struct mount_open_file *o)
{
    struct mount_ctx *m = ctx_of(req);
    static const struct rfs_cred root = {0};
    struct rfs_attr a, in;
    struct rfs_cred cred;
    uint32_t mode;
    int rv;
    cred_of(req, &cred);
    if (cred.uid == 0) {
        return;
    }
    o->kill_setid = false;
    rv = rfs_fs_getattr(m->fs, ino, &a);
    if (rv != 0) {
        return; /* the write that follows meets the same error */
    }
    mode = a.mode & ~(uint32_t)S_ISUID;
    if ((a.mode & S_ISGID) && ((a.mode & S_IXGRP) || !rfs_cred_in_group(&cred, a.gid))) {
        mode &= ~(uint32_t)S_ISGID;
    }
    if (mode == a.mode) {
        return;
    }
    memset(&in, 0, sizeof in);
    in.mode = mode;
    rv = rfs_fs_setattr(m->fs, ino, &in, RFS_SET_MODE, &root, &a);
    if (rv != 0) {
        rfs_warnf("mount: clearing setuid/setgid of %llx on a write: %s", (unsigned long long)ino,
                  strerror(-rv));
    }
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    int rv;
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    /* Each handle buffers on its own and syncs when it must, so without this the order in
     * which handles sync would decide between their writes: within one mount, writes reach
     * the cluster in the order write(2) made them. What other handles of the inode hold goes
     * out first, so a later sync of theirs cannot overwrite these bytes, and an append
     * (placed at the cluster's end when it syncs) comes after their writes. A single writer
     * pays for a walk of the bucket; alternating writers for a sync at each switch. Their
     * errors are theirs to report. */
    mount_files_flush_others(ctx_of(req), file_of(fi));
    if (file_of(fi)->kill_setid) {
        kill_setid_on_write(req, ino, file_of(fi));
    }
    rv = rfs_file_write(file_of(fi)->f, (uint64_t)off, buf, size);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    fuse_reply_write(req, size);
}

/* Every close(2) of a descriptor: its error is close's. Closing any descriptor of a file
 * also drops the POSIX locks the closing process holds on it. */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    int rv = mount_file_flush(ctx_of(req), file_of(fi));
    int lrv = mount_locks_flush(ctx_of(req), ino, fi);
    fuse_reply_err(req, -(rv != 0 ? rv : lrv));
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    mount_locks_release(ctx_of(req), ino, fi); /* the file description's flock, if any */
    mount_file_release(ctx_of(req), file_of(fi));
    fuse_reply_err(req, 0);
}

/* Returns once the data is committed (rfs_file_flush writes the inode with the last block). */
static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    fuse_reply_err(req, -mount_file_flush(ctx_of(req), file_of(fi)));
}

/* ---- directories (listings: mount/dirlist.h) ---- */

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mount_ctx *m = ctx_of(req);
    struct mount_dirlist *d;
    struct rfs_attr a;
    struct rfs_cred cred;
    int rv = rfs_fs_getattr(m->fs, ino, &a);
    if (rv == 0 && !S_ISDIR(a.mode)) {
        rv = -ENOTDIR;
    }
    if (rv == 0) {
        cred_of(req, &cred);
        rv = rfs_cred_may(&cred, &a, R_OK) ? 0 : -EACCES;
    }
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    d = mount_dirlist_new(ino);
    if (d == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    fi->fh = (uintptr_t)d;
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) == -ENOENT) {
        mount_dirlist_free(d); /* the opener was interrupted: no releasedir will come */
    }
}

/* Add entry i to buf (at *used of size bytes), with its attributes a (readdirplus; NULL: none,
 * or the entry vanished); returns false if it does not fit. */
static bool dir_add(fuse_req_t req, const struct mount_dirent *de, size_t i, bool plus,
                    const struct rfs_attr *a, char *buf, size_t size, size_t *used)
{
    struct mount_ctx *m = ctx_of(req);
    size_t need;
    if (plus) {
        struct fuse_entry_param e;
        memset(&e, 0, sizeof e);
        e.attr.st_ino = (ino_t)de->ino;
        e.attr.st_mode = (mode_t)de->mode;
        /* No entry for "." and ".." (the kernel ignores them) nor for a name that vanished
         * since it was listed (ino 0: the kernel looks it up when asked). */
        if (i >= 2 && a != NULL) {
            e.ino = a->ino;
            e.attr_timeout = m->cache_timeout;
            e.entry_timeout = m->cache_timeout;
            attr_to_stat(a, &e.attr);
        }
        need = fuse_add_direntry_plus(req, buf + *used, size - *used, de->name, &e, (off_t)(i + 1));
    } else {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = (ino_t)de->ino;
        st.st_mode = (mode_t)de->mode;
        need = fuse_add_direntry(req, buf + *used, size - *used, de->name, &st, (off_t)(i + 1));
    }
    if (need > size - *used) {
        return false;
    }
    *used += need;
    return true;
}

/* Entries a readdirplus takes at a time: their inodes are read together. */
#define PLUS_BATCH 32

/* Read the attributes of entries [first, first + n) of batch into attrs (rvs: 0 or -errno),
 * after flushing what this mount buffers for the regular files among them (sizes count it). */
static void batch_attrs(struct mount_ctx *m, const struct mount_dirent *batch, size_t first,
                        size_t n, struct rfs_attr *attrs, int *rvs)
{
    uint64_t inos[PLUS_BATCH];
    size_t k0 = first < 2 ? 2 - first : 0; /* "." and ".." get none */
    for (size_t k = 0; k < k0 && k < n; k++) {
        rvs[k] = -ENOENT;
    }
    for (size_t k = k0; k < n; k++) {
        inos[k] = batch[k].ino;
        if (S_ISREG(batch[k].mode)) {
            mount_files_flush_inode(m, batch[k].ino, NULL);
        }
    }
    if (n > k0) {
        rfs_fs_getattr_many(m->fs, inos + k0, n - k0, attrs + k0, rvs + k0);
    }
}

static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
    struct mount_ctx *m = ctx_of(req);
    struct mount_dirlist *d = (struct mount_dirlist *)(uintptr_t)fi->fh;
    char *buf = rfs_malloc(size > 0 ? size : 1);
    size_t used = 0, i = off > 0 ? (size_t)off : 0;
    bool full = false;
    int rv = 0;
    if (buf == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_mutex_lock(&d->mu);
    while (!full && rv == 0) {
        /* Copies of the entries: a later mount_dirlist_get may move them (not their names,
         * which stay until the listing starts again at entry 0, the first we ask for). */
        struct mount_dirent batch[PLUS_BATCH];
        struct rfs_attr attrs[PLUS_BATCH];
        int rvs[PLUS_BATCH];
        size_t n = 0, want = plus ? PLUS_BATCH : 1;
        while (n < want) {
            const struct mount_dirent *de;
            rv = mount_dirlist_get(d, m->fs, i + n, &de);
            if (rv != 0) {
                break;
            }
            batch[n++] = *de;
        }
        if (plus) {
            batch_attrs(m, batch, i, n, attrs, rvs);
        }
        for (size_t k = 0; k < n && !full; k++) {
            const struct rfs_attr *a = plus && rvs[k] == 0 ? &attrs[k] : NULL;
            full = !dir_add(req, &batch[k], i + k, plus, a, buf, size, &used);
        }
        i += n;
    }
    pthread_mutex_unlock(&d->mu);
    if (rv < 0 && used == 0) {
        fuse_reply_err(req, -rv);
    } else {
        fuse_reply_buf(req, buf, used);
    }
    rfs_free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    (void)ino;
    do_readdir(req, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    (void)ino;
    do_readdir(req, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    mount_dirlist_free((struct mount_dirlist *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    (void)fi;
    fuse_reply_err(req, 0); /* every change of a directory is committed when it returns */
}

/* ---- the filesystem ---- */

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct rfs_statfs s;
    struct statvfs st;
    int rv;
    (void)ino;
    rv = rfs_fs_statfs(ctx_of(req)->fs, &s);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    memset(&st, 0, sizeof st);
    st.f_bsize = FS_BLOCK_SIZE;
    st.f_frsize = FS_BLOCK_SIZE;
    st.f_blocks = (fsblkcnt_t)s.blocks;
    st.f_bfree = (fsblkcnt_t)s.bfree;
    st.f_bavail = (fsblkcnt_t)s.bfree;
    st.f_files = (fsfilcnt_t)s.files;
    st.f_ffree = (fsfilcnt_t)s.ffree;
    st.f_favail = (fsfilcnt_t)s.ffree;
    st.f_namemax = FS_NAME_MAX;
    fuse_reply_statfs(req, &st);
}

/* ---- extended attributes ----
 * The kernel asks with size 0 for the size of a value or list (answered with
 * fuse_reply_xattr), then with a buffer that size (answered with the bytes). */

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    struct rfs_cred cred;
    cred_of(req, &cred);
    fuse_reply_err(req, -rfs_fs_setxattr(ctx_of(req)->fs, ino, name, value, size, flags, &cred));
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    char *buf = NULL;
    size_t len = 0;
    int rv;
    if (size > 0) {
        buf = rfs_malloc(size);
        if (buf == NULL) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
    }
    rv = rfs_fs_getxattr(ctx_of(req)->fs, ino, name, buf, size, &len);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
    } else if (size == 0) {
        fuse_reply_xattr(req, len);
    } else {
        fuse_reply_buf(req, buf, len);
    }
    rfs_free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    char *buf = NULL;
    size_t len = 0;
    int rv;
    if (size > 0) {
        buf = rfs_malloc(size);
        if (buf == NULL) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
    }
    rv = rfs_fs_listxattr(ctx_of(req)->fs, ino, buf, size, &len);
    if (rv != 0) {
        fuse_reply_err(req, -rv);
    } else if (size == 0) {
        fuse_reply_xattr(req, len);
    } else {
        fuse_reply_buf(req, buf, len);
    }
    rfs_free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    struct rfs_cred cred;
    cred_of(req, &cred);
    fuse_reply_err(req, -rfs_fs_removexattr(ctx_of(req)->fs, ino, name, &cred));
}

const struct fuse_lowlevel_ops mount_ops = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .access = op_access,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .link = op_link,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .getlk = mount_op_getlk,
    .setlk = mount_op_setlk,
    .flock = mount_op_flock,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
};
