/* mount/lockwait.h: blocking lock requests (F_SETLKW, flock without LOCK_NB) waiting off the
 * session's worker threads.
 *
 * libfuse runs at most max_threads workers (10 by default); a worker that sat in a lock wait
 * would be lost to every other request, and enough waiters would leave none to read the
 * holder's unlock or the waiters' own interrupts: the mount would hang. So a blocking request
 * that meets a conflict is handed to one waiter thread, which tries it again (10 ms, backing
 * off to 200 ms) and answers it later: 0 once the lock is granted, EINTR when the caller is
 * interrupted or the session ends, or the error of a try. */
#ifndef MOUNT_LOCKWAIT_H
#define MOUNT_LOCKWAIT_H

#include "fuse_ops.h"

struct mount_lockwait;

/* Start the waiter thread into m->lockwait. Returns 0 or -errno. */
int mount_lockwait_start(struct mount_ctx *m);
/* Answer every waiting request with EINTR and stop the thread; call when the session loop
 * has returned, before the session is unmounted. Safe when not started. */
void mount_lockwait_stop(struct mount_ctx *m);

/* Take over req (a POSIX or flock lock lk of owner on ino that just met a conflict): it is
 * answered exactly once, later, from the waiter thread. Returns 0, or -ENOMEM (req is then
 * still the caller's to answer). */
int mount_lockwait_add(struct mount_ctx *m, fuse_req_t req, uint64_t ino, uint64_t owner,
                       enum rfs_lock_kind kind, const struct rfs_lock *lk);

#endif
