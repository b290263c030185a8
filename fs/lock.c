/* File locks held in the cluster (fs.h, docs/locks.md).
 *
 * Each inode with locks has one key, k{pppp}ino, holding its lock list (fs/lock_list.h):
 * every lock with its mount id, owner, pid, type and range. A change reads the list with its
 * version, computes the new list, and commits it with a transaction that checks the
 * version (a conflict: read again, up to LOCK_ATTEMPTS times). Before setting a lock, the
 * mounts of the other locks are checked (fs/lease.h): locks of a mount without a record are
 * dead and dropped from the list in the same transaction; a record this mount has seen
 * unchanged for its lease is deleted first (the mount is taken for dead).
 *
 * The mount remembers which (inode, owner) pairs it locked (`held`), so that a close, which
 * must drop the closing process's POSIX locks, costs a cluster round trip only when that
 * process locked the file here. An entry goes only when the owner's locks are dropped at a
 * close with no lock call of that owner in flight; a stale entry costs one read. The entry
 * also keeps a drop and a lock call of one owner apart: a lock call waits while a drop runs,
 * and a drop that must not undo a lock in progress (a release) stands back while one runs.
 *
 * Failure modes: a read or transaction without an answer fails the call with EIO (the list
 * is unchanged or changed exactly once: kv/client.h's sessions); while this mount's lease is
 * not confirmed, new locks fail with ENOLCK (unlocks still go through). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "internal.h"
#include "lease.h"
#include "lock_list.h"

#define LOCK_ATTEMPTS 64
#define HELD_BUCKETS  64
/* A blocking lock polls every WAIT_MIN_MS at first, backing off to WAIT_MAX_MS, and checks
 * for cancellation every WAIT_SLICE_MS. */
#define WAIT_MIN_MS   10
#define WAIT_MAX_MS   200
#define WAIT_SLICE_MS 10
/* Mounts whose liveness one lock call remembers. */
#define LIVE_CACHE 16

_Static_assert((int)RFS_LOCK_POSIX == (int)FS_LOCK_POSIX, "lock kinds agree");
_Static_assert((int)RFS_LOCK_FLOCK == (int)FS_LOCK_FLOCK, "lock kinds agree");
_Static_assert(RFS_LOCK_EOF == FS_LOCK_EOF, "EOF agrees");

struct held {
    uint64_t ino, owner, mount;
    uint8_t kind;
    unsigned pending; /* lock calls of this owner in flight (counted before they wait) */
    bool dropping;    /* rfs_fs_unlock_owner is dropping the owner's locks */
    struct held *next;
};

struct fs_locks {
    struct fs_lease *lease;
    pthread_mutex_t mu; /* protects held and every entry */
    pthread_cond_t cv;  /* a drop ended */
    struct held *held[HELD_BUCKETS];
};

/* ---- what this mount holds ---- */

static struct held **held_bucket(struct fs_locks *k, uint64_t ino)
{
    return &k->held[(ino ^ ino >> 48) % HELD_BUCKETS];
}

/* Under k->mu. */
static struct held *held_find(struct fs_locks *k, uint64_t ino, uint64_t owner, uint8_t kind,
                              uint64_t mount)
{
    for (struct held *h = *held_bucket(k, ino); h != NULL; h = h->next) {
        if (h->ino == ino && h->owner == owner && h->kind == kind && h->mount == mount) {
            return h;
        }
    }
    return NULL;
}

/* A lock call of owner starts: remember that it may hold locks on ino, and wait for a drop
 * of its locks in progress (so the drop cannot undo what this call sets). */
static int held_begin(struct fs_locks *k, uint64_t ino, uint64_t owner, uint8_t kind,
                      uint64_t mount)
{
    struct held *h;
    pthread_mutex_lock(&k->mu);
    h = held_find(k, ino, owner, kind, mount);
    if (h == NULL) {
        h = rfs_calloc(1, sizeof *h);
        if (h == NULL) {
            pthread_mutex_unlock(&k->mu);
            return -ENOMEM;
        }
        *h = (struct held){.ino = ino, .owner = owner, .mount = mount, .kind = kind};
        h->next = *held_bucket(k, ino);
        *held_bucket(k, ino) = h;
    }
    h->pending++; /* keeps h while we wait */
    while (h->dropping) {
        pthread_cond_wait(&k->cv, &k->mu);
    }
    pthread_mutex_unlock(&k->mu);
    return 0;
}

static void held_end(struct fs_locks *k, uint64_t ino, uint64_t owner, uint8_t kind, uint64_t mount)
{
    struct held *h;
    pthread_mutex_lock(&k->mu);
    h = held_find(k, ino, owner, kind, mount);
    if (h != NULL && h->pending > 0) {
        h->pending--;
    }
    pthread_mutex_unlock(&k->mu);
}

/* Start dropping the owner's locks: false if it holds none here, another drop is at it, or
 * (only_idle) one of its lock calls is in flight. */
static bool held_drop_begin(struct fs_locks *k, uint64_t ino, uint64_t owner, uint8_t kind,
                            uint64_t mount, bool only_idle)
{
    struct held *h;
    bool go;
    pthread_mutex_lock(&k->mu);
    h = held_find(k, ino, owner, kind, mount);
    go = h != NULL && !h->dropping && !(only_idle && h->pending > 0);
    if (go) {
        h->dropping = true;
    }
    pthread_mutex_unlock(&k->mu);
    return go;
}

/* The drop ended (dropped: the owner's locks are gone): forget the entry unless a lock call
 * is in flight, and let waiting calls go on. */
static void held_drop_end(struct fs_locks *k, uint64_t ino, uint64_t owner, uint8_t kind,
                          uint64_t mount, bool dropped)
{
    pthread_mutex_lock(&k->mu);
    for (struct held **p = held_bucket(k, ino); *p != NULL; p = &(*p)->next) {
        struct held *h = *p;
        if (h->ino == ino && h->owner == owner && h->kind == kind && h->mount == mount) {
            h->dropping = false;
            if (dropped && h->pending == 0) {
                *p = h->next;
                rfs_free(h);
            }
            break;
        }
    }
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

/* ---- liveness of other mounts, for one call ---- */

struct live_cache {
    struct {
        uint64_t mount;
        bool live, local;
    } v[LIVE_CACHE];
    unsigned n;
};

static int live_of(struct fs_locks *k, struct live_cache *c, uint64_t mount, bool *live,
                   bool *local)
{
    int rv;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->v[i].mount == mount) {
            *live = c->v[i].live;
            *local = c->v[i].local;
            return 0;
        }
    }
    rv = fs_lease_check(k->lease, mount, live, local);
    if (rv == 0 && c->n < LIVE_CACHE) {
        c->v[c->n].mount = mount;
        c->v[c->n].live = *live;
        c->v[c->n].local = *local;
        c->n++;
    }
    return rv;
}

/* Drop the locks of dead mounts from l; *dropped: whether any went. */
static int drop_dead(struct fs_locks *k, struct live_cache *c, struct fs_lock_list *l,
                     bool *dropped)
{
    unsigned kept = 0;
    *dropped = false;
    for (unsigned i = 0; i < l->n; i++) {
        bool live, local;
        int rv = live_of(k, c, l->v[i].mount, &live, &local);
        if (rv != 0) {
            return rv;
        }
        if (live) {
            l->v[kept++] = l->v[i];
        } else {
            *dropped = true;
        }
    }
    l->n = kept;
    return 0;
}

/* ---- reading and writing a lock list ---- */

static int list_read(struct rfs_fs *fs, uint64_t ino, struct fs_lock_list *l, uint64_t *version)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_client_value v = {0};
    int rv = kv_client_get(fs->kv, key, fs_key_locks(key, ino), &v, errmsg);
    if (rv != 0) {
        rfs_warnf("fs: reading the locks of %llx: %s", (unsigned long long)ino, errmsg);
        return fs_errno(rv);
    }
    *version = v.found ? v.version : 0;
    rv = v.found ? fs_lock_list_decode(l, v.value.base, v.value.len) : 0;
    kv_client_value_clear(&v);
    return rv;
}

/* Write l (an empty list: delete the key) if the key still has version. Returns 0, -EAGAIN
 * (it changed), or another -errno. */
static int list_write(struct rfs_fs *fs, uint64_t ino, const struct fs_lock_list *l,
                      uint64_t version)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_txn_read rd;
    struct kv_txn_write wr = {0};
    void *buf = NULL;
    int rv;
    rd.key = key;
    rd.klen = fs_key_locks(key, ino);
    rd.version = version;
    wr.key = key;
    wr.klen = rd.klen;
    if (l->n == 0) {
        wr.del = true;
    } else {
        rv = fs_lock_list_encode(l, &buf, &wr.vlen);
        if (rv != 0) {
            return rv;
        }
        wr.value = buf;
    }
    rv = kv_client_txn(fs->kv, &rd, 1, &wr, 1, errmsg);
    rfs_free(buf);
    if (rv != 0 && rv != RFS_ECONFLICT) {
        rfs_warnf("fs: writing the locks of %llx: %s", (unsigned long long)ino, errmsg);
    }
    return fs_errno(rv);
}

enum lock_op {
    OP_SET,        /* req: set (or with unlock, clear) its range for its owner */
    OP_DROP_OWNER, /* req: drop every lock of its owner and kind */
    OP_DROP_MOUNT, /* req: drop every lock of its mount */
};

/* Apply op to ino's list. OP_SET of a lock first drops the locks of dead mounts, and finds
 * no live conflicting lock or returns -EAGAIN. */
static int list_update(struct rfs_fs *fs, uint64_t ino, enum lock_op op, const struct fs_lock *req,
                       bool unlock)
{
    struct fs_locks *k = fs->locks;
    int rv = -EAGAIN;
    for (int attempt = 0; attempt < LOCK_ATTEMPTS && rv == -EAGAIN; attempt++) {
        struct fs_lock_list l = {0};
        struct live_cache cache = {.n = 0};
        uint64_t version;
        bool changed = false;
        rv = list_read(fs, ino, &l, &version);
        if (rv == 0 && op == OP_SET && !unlock) {
            rv = drop_dead(k, &cache, &l, &changed);
            if (rv == 0 && fs_lock_list_conflict(&l, req) != NULL) {
                fs_lock_list_clear(&l);
                return -EAGAIN;
            }
        }
        if (rv == 0) {
            switch (op) {
                case OP_SET:
                    /* an unlock of nothing changes nothing; a lock always writes */
                    changed |= !unlock || fs_lock_list_has_owner(&l, req->mount, req->owner,
                                                                 (enum fs_lock_kind)req->kind);
                    rv = fs_lock_list_set(&l, req, unlock);
                    break;
                case OP_DROP_OWNER:
                    changed |= fs_lock_list_drop_owner(&l, req->mount, req->owner,
                                                       (enum fs_lock_kind)req->kind) > 0;
                    break;
                case OP_DROP_MOUNT:
                    changed |= fs_lock_list_drop_mount(&l, req->mount) > 0;
                    break;
            }
        }
        if (rv == 0 && changed) {
            rv = list_write(fs, ino, &l, version);
        }
        fs_lock_list_clear(&l);
    }
    return rv;
}

/* ---- the API ---- */

int rfs_fs_locks_start(struct rfs_fs *fs, unsigned lease_ms, char *errmsg)
{
    struct fs_locks *k = rfs_calloc(1, sizeof *k);
    int rv;
    if (k == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    rv = fs_lease_start(fs, lease_ms, &k->lease, errmsg);
    if (rv != 0) {
        pthread_cond_destroy(&k->cv);
        pthread_mutex_destroy(&k->mu);
        rfs_free(k);
        return rv;
    }
    fs->locks = k;
    return 0;
}

void rfs_fs_locks_stop(struct rfs_fs *fs)
{
    struct fs_locks *k = fs->locks;
    if (k == NULL) {
        return;
    }
    /* No lock call runs any more (the session ended): drop what this mount holds, so others
     * need not wait for the lease to expire... */
    for (unsigned b = 0; b < HELD_BUCKETS; b++) {
        struct held *h;
        while ((h = k->held[b]) != NULL) {
            struct fs_lock req = {.mount = h->mount};
            int rv;
            k->held[b] = h->next;
            rv = list_update(fs, h->ino, OP_DROP_MOUNT, &req, false);
            if (rv != 0) {
                rfs_warnf("fs: dropping the locks on %llx at unmount: %s (they go when the "
                          "lease is deleted)",
                          (unsigned long long)h->ino, strerror(-rv));
            }
            rfs_free(h);
        }
    }
    /* ...and end the lease, which kills whatever lock of this mount is left. */
    fs_lease_stop(k->lease);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    rfs_free(k);
    fs->locks = NULL;
}

/* req from lk (a lock of a valid type and range). */
static int req_of(struct fs_locks *k, uint64_t owner, enum rfs_lock_kind kind,
                  const struct rfs_lock *lk, struct fs_lock *req)
{
    memset(req, 0, sizeof *req);
    if (lk->start > lk->end || lk->end > RFS_LOCK_EOF) {
        return -EINVAL;
    }
    switch (lk->type) {
        case F_RDLCK:
            req->type = FS_LOCK_READ;
            break;
        case F_WRLCK:
        case F_UNLCK:
            req->type = FS_LOCK_WRITE;
            break;
        default:
            return -EINVAL;
    }
    req->mount = fs_lease_id(k->lease);
    req->owner = owner;
    req->kind = (uint8_t)kind;
    req->pid = lk->pid;
    req->start = kind == RFS_LOCK_FLOCK ? 0 : lk->start;
    req->end = kind == RFS_LOCK_FLOCK ? RFS_LOCK_EOF : lk->end;
    return 0;
}

int rfs_fs_getlk(struct rfs_fs *fs, uint64_t ino, uint64_t owner, enum rfs_lock_kind kind,
                 struct rfs_lock *lk)
{
    struct fs_locks *k = fs->locks;
    struct fs_lock_list l = {0};
    struct live_cache cache = {.n = 0};
    struct fs_lock req;
    uint64_t version;
    int rv;
    if (k == NULL) {
        return -ENOLCK;
    }
    rv = req_of(k, owner, kind, lk, &req);
    if (rv == 0 && lk->type == F_UNLCK) {
        rv = -EINVAL;
    }
    if (rv == 0) {
        rv = list_read(fs, ino, &l, &version);
    }
    lk->type = F_UNLCK;
    for (unsigned i = 0; rv == 0 && i < l.n; i++) {
        const struct fs_lock *c = &l.v[i];
        bool live, local;
        if (!fs_lock_conflicts(c, &req)) {
            continue;
        }
        rv = live_of(k, &cache, c->mount, &live, &local);
        if (rv == 0 && live) {
            lk->type = c->type == FS_LOCK_WRITE ? F_WRLCK : F_RDLCK;
            lk->start = c->start;
            lk->end = c->end;
            lk->pid = local ? c->pid : 0;
            break;
        }
    }
    fs_lock_list_clear(&l);
    return rv;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* One try at setting req: 0, -EAGAIN (a live conflicting lock), or another -errno. */
static int setlk_once(struct rfs_fs *fs, uint64_t ino, struct fs_lock *req, bool unlock)
{
    struct fs_locks *k = fs->locks;
    int rv;
    req->mount = fs_lease_id(k->lease);
    if (!unlock && !fs_lease_valid(k->lease)) {
        rfs_warnf("fs: lock on %llx refused: no renewal of this mount's lease was confirmed "
                  "within the lease (the cluster does not answer, or the daemon was stopped)",
                  (unsigned long long)ino);
        return -ENOLCK;
    }
    rv = held_begin(k, ino, req->owner, req->kind, req->mount);
    if (rv != 0) {
        return rv;
    }
    rv = list_update(fs, ino, OP_SET, req, unlock);
    held_end(k, ino, req->owner, req->kind, req->mount);
    return rv;
}

int rfs_fs_setlk(struct rfs_fs *fs, uint64_t ino, uint64_t owner, enum rfs_lock_kind kind,
                 const struct rfs_lock *lk, bool wait, rfs_fs_cancelled_cb cancelled, void *arg)
{
    struct fs_lock req;
    unsigned delay = WAIT_MIN_MS;
    bool unlock = lk->type == F_UNLCK;
    int rv;
    if (fs->locks == NULL) {
        return -ENOLCK;
    }
    rv = req_of(fs->locks, owner, kind, lk, &req);
    if (rv != 0) {
        return rv;
    }
    while ((rv = setlk_once(fs, ino, &req, unlock)) == -EAGAIN && wait) {
        /* No queue of waiters: poll, backing off, and give up when asked to. */
        for (unsigned slept = 0; slept < delay; slept += WAIT_SLICE_MS) {
            if (cancelled != NULL && cancelled(arg)) {
                return -EINTR;
            }
            sleep_ms(WAIT_SLICE_MS);
        }
        delay = delay * 2 > WAIT_MAX_MS ? WAIT_MAX_MS : delay * 2;
    }
    return rv;
}

int rfs_fs_unlock_owner(struct rfs_fs *fs, uint64_t ino, uint64_t owner, enum rfs_lock_kind kind,
                        bool only_idle)
{
    struct fs_locks *k = fs->locks;
    struct fs_lock req = {.owner = owner, .kind = (uint8_t)kind};
    int rv;
    if (k == NULL) {
        return 0;
    }
    req.mount = fs_lease_id(k->lease);
    if (!held_drop_begin(k, ino, owner, req.kind, req.mount, only_idle)) {
        return 0;
    }
    rv = list_update(fs, ino, OP_DROP_OWNER, &req, false);
    held_drop_end(k, ino, owner, req.kind, req.mount, rv == 0);
    return rv;
}

struct fs_lease *fs_locks_lease(struct rfs_fs *fs)
{
    return fs->locks != NULL ? fs->locks->lease : NULL;
}
