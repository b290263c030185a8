/* raftfs-mount's lock operations; see locks.h.
 *
 * The kernel hands POSIX locks to getlk/setlk with fi->lock_owner naming the process (its
 * files table) and the range as a struct flock whose l_len 0 means "to the end of the
 * file"; flock(2) comes to the flock op with fi->lock_owner naming the open file
 * description. The kernel keeps no copy of these locks: it asks at every F_GETLK, and
 * sends the owner at every close (flush) and, after a flock, at the release. */
#include "locks.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>

#include "common/alloc.h"
#include "common/log.h"
#include "files.h"
#include "lockwait.h"

static struct mount_ctx *ctx_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* A blocking wait stops when the caller is interrupted or the session ends (unmount,
 * SIGTERM): the worker thread must not hold the session up. */
static bool req_cancelled(void *arg)
{
    fuse_req_t req = arg;
    struct mount_ctx *m = ctx_of(req);
    return fuse_req_interrupted(req) || (m->se != NULL && fuse_session_exited(m->se));
}

/* The range of a kernel struct flock (always SEEK_SET, l_len >= 0). */
static int lock_of(const struct flock *fl, struct rfs_lock *lk)
{
    memset(lk, 0, sizeof *lk);
    if (fl->l_start < 0 || fl->l_len < 0) {
        return -EINVAL;
    }
    lk->type = fl->l_type;
    lk->start = (uint64_t)fl->l_start;
    lk->end = fl->l_len == 0 ? RFS_LOCK_EOF : (uint64_t)fl->l_start + (uint64_t)fl->l_len - 1;
    if (lk->end > RFS_LOCK_EOF) {
        lk->end = RFS_LOCK_EOF;
    }
    lk->pid = fl->l_pid > 0 ? (uint32_t)fl->l_pid : 0;
    return 0;
}

/* Set lk for owner: 0 or -errno to answer now, or 1: a blocking request that met a conflict
 * was handed to the waiter thread (mount/lockwait.h), which answers it. */
static int do_setlk(fuse_req_t req, fuse_ino_t ino, uint64_t owner, enum rfs_lock_kind kind,
                    const struct rfs_lock *lk, bool wait)
{
    struct mount_ctx *m = ctx_of(req);
    int rv;
    if (wait && m->lockwait == NULL) { /* no waiter thread: wait here */
        return rfs_fs_setlk(m->fs, ino, owner, kind, lk, true, req_cancelled, req);
    }
    rv = rfs_fs_setlk(m->fs, ino, owner, kind, lk, false, NULL, NULL);
    if (rv == -EAGAIN && wait && mount_lockwait_add(m, req, ino, owner, kind, lk) == 0) {
        return 1;
    }
    return rv;
}

void mount_op_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock)
{
    struct rfs_lock lk;
    struct flock out;
    int rv = lock_of(lock, &lk);
    if (rv == 0) {
        rv = rfs_fs_getlk(ctx_of(req)->fs, ino, fi->lock_owner, RFS_LOCK_POSIX, &lk);
    }
    if (rv != 0) {
        fuse_reply_err(req, -rv);
        return;
    }
    memset(&out, 0, sizeof out);
    out.l_type = (short)lk.type;
    out.l_whence = SEEK_SET;
    if (lk.type != F_UNLCK) {
        out.l_start = (off_t)lk.start;
        out.l_len = lk.end == RFS_LOCK_EOF ? 0 : (off_t)(lk.end - lk.start + 1);
        /* the holder's pid on its machine; 0 when it runs on another one (docs/locks.md) */
        out.l_pid = (pid_t)lk.pid;
    }
    fuse_reply_lock(req, &out);
}

void mount_op_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock,
                    int sleep)
{
    struct mount_ctx *m = ctx_of(req);
    struct rfs_lock lk;
    int rv = lock_of(lock, &lk);
    if (rv == 0 && lk.type != F_UNLCK) {
        /* for the release of this handle (open file description locks) */
        rv = mount_file_note_lock_owner(m, (struct mount_open_file *)(uintptr_t)fi->fh,
                                        fi->lock_owner);
    }
    if (rv == 0) {
        rv = do_setlk(req, ino, fi->lock_owner, RFS_LOCK_POSIX, &lk, sleep != 0);
    }
    if (rv != 1) {
        fuse_reply_err(req, -rv);
    }
}

void mount_op_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
    struct rfs_lock lk = {.start = 0, .end = RFS_LOCK_EOF};
    int rv;
    switch (op & (LOCK_SH | LOCK_EX | LOCK_UN)) {
        case LOCK_SH:
            lk.type = F_RDLCK;
            break;
        case LOCK_EX:
            lk.type = F_WRLCK;
            break;
        case LOCK_UN:
            lk.type = F_UNLCK;
            break;
        default:
            fuse_reply_err(req, EINVAL);
            return;
    }
    lk.pid = (uint32_t)fuse_req_ctx(req)->pid;
    rv = do_setlk(req, ino, fi->lock_owner, RFS_LOCK_FLOCK, &lk, !(op & LOCK_NB));
    if (rv != 1) {
        fuse_reply_err(req, -rv);
    }
}

int mount_locks_flush(struct mount_ctx *m, fuse_ino_t ino, const struct fuse_file_info *fi)
{
    int rv = rfs_fs_unlock_owner(m->fs, ino, fi->lock_owner, RFS_LOCK_POSIX, false);
    if (rv != 0) {
        rfs_warnf("mount: releasing the POSIX locks on %llx at close: %s", (unsigned long long)ino,
                  strerror(-rv));
    }
    return rv;
}

/* Besides the flock: an open file description lock (F_OFD_SETLK) belongs to the description
 * and must go at its release, but the kernel names no owner there (unless a flock was
 * taken). So every owner that made POSIX lock calls through this handle, and through no
 * other handle still open here, has its locks dropped: a process's own (classic) locks are
 * gone already (its close flushed them), unless it is locking again through another handle,
 * which then lists it too; a lock call of the owner in flight makes the drop stand back. */
int mount_locks_release(struct mount_ctx *m, fuse_ino_t ino, const struct fuse_file_info *fi)
{
    struct mount_open_file *o = (struct mount_open_file *)(uintptr_t)fi->fh;
    uint64_t *owners;
    unsigned n;
    int rv = 0, r;
    if (fi->flock_release) {
        rv = rfs_fs_unlock_owner(m->fs, ino, fi->lock_owner, RFS_LOCK_FLOCK, false);
    }
    r = mount_file_solo_lock_owners(m, o, &owners, &n);
    for (unsigned i = 0; r == 0 && i < n; i++) {
        r = rfs_fs_unlock_owner(m->fs, ino, owners[i], RFS_LOCK_POSIX, true);
    }
    rfs_free(owners);
    rv = rv != 0 ? rv : r;
    if (rv != 0) {
        rfs_warnf("mount: releasing the locks on %llx at the last close: %s",
                  (unsigned long long)ino, strerror(-rv));
    }
    return rv;
}
