/* Blocking lock requests, answered from one waiter thread; see lockwait.h.
 *
 * The thread wakes every SLICE_MS while requests wait (to notice interrupts soon), tries each
 * request whose time has come with a non-blocking rfs_fs_setlk, and answers the ones that
 * are done. A try that waits for the cluster holds up the others (one thread): a slow
 * cluster slows every waiter of the mount, never the mount's other requests. */
#include "lockwait.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "rpc/rpc.h"

#define SLICE_MS     10
#define DELAY_MIN_MS 10
#define DELAY_MAX_MS 200

struct waiter {
    fuse_req_t req;
    uint64_t ino, owner;
    enum rfs_lock_kind kind;
    struct rfs_lock lk;
    uint64_t due_ms;
    unsigned delay_ms;
    struct waiter *next;
};

struct mount_lockwait {
    struct mount_ctx *m;
    pthread_t thread;
    pthread_mutex_t mu; /* protects stop and head */
    pthread_cond_t cv;  /* a request came, or stop */
    bool stop;
    struct waiter *head;
};

/* One pass over the waiters taken out of the list (none is in it meanwhile, so only this
 * thread touches them); returns those still waiting. */
static struct waiter *lockwait_pass(struct mount_lockwait *w, struct waiter *list)
{
    struct waiter *keep = NULL;
    while (list != NULL) {
        struct waiter *x = list;
        uint64_t now = rpc_now_ms();
        int rv = -EAGAIN;
        list = x->next;
        if (fuse_req_interrupted(x->req) || (w->m->se != NULL && fuse_session_exited(w->m->se))) {
            rv = -EINTR;
        } else if (now >= x->due_ms) {
            rv = rfs_fs_setlk(w->m->fs, x->ino, x->owner, x->kind, &x->lk, false, NULL, NULL);
            x->due_ms = rpc_now_ms() + x->delay_ms;
            x->delay_ms = x->delay_ms * 2 > DELAY_MAX_MS ? DELAY_MAX_MS : x->delay_ms * 2;
        }
        if (rv == -EAGAIN) {
            x->next = keep;
            keep = x;
            continue;
        }
        fuse_reply_err(x->req, -rv);
        rfs_free(x);
    }
    return keep;
}

static void *lockwait_thread(void *arg)
{
    struct mount_lockwait *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct waiter *list = w->head, *left;
        if (list == NULL) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        w->head = NULL;
        pthread_mutex_unlock(&w->mu);
        left = lockwait_pass(w, list);
        {
            struct timespec ts = {0, SLICE_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&w->mu);
        while (left != NULL) { /* back into the list, with those that came meanwhile */
            struct waiter *x = left;
            left = x->next;
            x->next = w->head;
            w->head = x;
        }
    }
    /* the session is over: nobody gets the lock now */
    while (w->head != NULL) {
        struct waiter *x = w->head;
        w->head = x->next;
        fuse_reply_err(x->req, EINTR);
        rfs_free(x);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int mount_lockwait_start(struct mount_ctx *m)
{
    struct mount_lockwait *w = rfs_calloc(1, sizeof *w);
    int rv;
    if (w == NULL) {
        return -ENOMEM;
    }
    w->m = m;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    rv = pthread_create(&w->thread, NULL, lockwait_thread, w);
    if (rv != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        rfs_free(w);
        return -rv;
    }
    m->lockwait = w;
    return 0;
}

void mount_lockwait_stop(struct mount_ctx *m)
{
    struct mount_lockwait *w = m->lockwait;
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    rfs_free(w);
    m->lockwait = NULL;
}

int mount_lockwait_add(struct mount_ctx *m, fuse_req_t req, uint64_t ino, uint64_t owner,
                       enum rfs_lock_kind kind, const struct rfs_lock *lk)
{
    struct mount_lockwait *w = m->lockwait;
    struct waiter *x = rfs_calloc(1, sizeof *x);
    if (x == NULL) {
        return -ENOMEM;
    }
    x->req = req;
    x->ino = ino;
    x->owner = owner;
    x->kind = kind;
    x->lk = *lk;
    x->delay_ms = DELAY_MIN_MS;
    x->due_ms = rpc_now_ms() + DELAY_MIN_MS;
    pthread_mutex_lock(&w->mu);
    x->next = w->head;
    w->head = x;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}
