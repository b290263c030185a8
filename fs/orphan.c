/* Orphans (files unlinked while they may be open) and their collector; see orphan.h.
 *
 * The open table counts this mount's open handles per inode and remembers which of them
 * became orphans here (or were found to be by a scan): the last close of such an inode queues
 * its deletion. The collector thread deletes what is queued at once, and every scan_ms scans
 * each group's own buckets for orphan records (kv_client_scan_group): a record older than
 * grace_ms whose file is not open here is deleted. The same scan finishes truncates that
 * stopped before deleting the data past the new size: their reclaim records older than
 * grace_ms (fs/data.c, "Truncate"). */
#include "orphan.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "../common/log.h"
#include "data.h"
#include "internal.h"
#include "keys.h"
#include "lease.h"
#include "txnb.h"

#define OPEN_SLOTS   256
#define MAX_GROUPS   256
#define SCAN_BATCH   256
#define STOP_DRAIN_S 5 /* at stop, queued deletions get this long */

struct open_ino {
    struct open_ino *next;
    uint64_t ino;
    unsigned n;  /* open handles here */
    bool orphan; /* delete at the last close */
    bool held;   /* this mount's hold on the orphan is written */
};

struct fs_orphans {
    struct rfs_fs *fs;
    unsigned scan_ms, grace_ms;
    pthread_t thread;
    pthread_mutex_t pass_mu; /* one pass at a time: the thread's, or collect_now's */
    pthread_mutex_t mu;      /* protects everything below */
    pthread_cond_t cond;
    bool stop;
    struct open_ino *open[OPEN_SLOTS];
    uint64_t *queue; /* inodes to delete now */
    size_t nqueue, capqueue;
};

/* Orphan and reclaim records carry the wall-clock time in ms. */
static uint64_t wall_ms(void)
{
    return (uint64_t)fs_now_ns() / 1000000u;
}

static struct open_ino **open_slot(struct fs_orphans *o, uint64_t ino)
{
    struct open_ino **pp = &o->open[(ino ^ ino >> 17) % OPEN_SLOTS];
    while (*pp != NULL && (*pp)->ino != ino) {
        pp = &(*pp)->next;
    }
    return pp;
}

/* Queue ino's deletion (under o->mu). On running out of memory the scan finds it later. */
static void queue_locked(struct fs_orphans *o, uint64_t ino)
{
    if (o->nqueue == o->capqueue) {
        size_t cap = o->capqueue ? o->capqueue * 2 : 16;
        uint64_t *q = rfs_realloc(o->queue, cap * sizeof *q);
        if (q == NULL) {
            return;
        }
        o->queue = q;
        o->capqueue = cap;
    }
    o->queue[o->nqueue++] = ino;
    pthread_cond_signal(&o->cond);
}

void fs_orphans_opened(struct fs_orphans *o, uint64_t ino)
{
    struct open_ino **pp;
    if (o == NULL) {
        return;
    }
    pthread_mutex_lock(&o->mu);
    pp = open_slot(o, ino);
    if (*pp == NULL) {
        *pp = rfs_calloc(1, sizeof **pp);
        if (*pp != NULL) {
            (*pp)->ino = ino;
        }
    }
    if (*pp != NULL) {
        (*pp)->n++;
    }
    pthread_mutex_unlock(&o->mu);
}

void fs_orphans_closed(struct fs_orphans *o, uint64_t ino)
{
    struct open_ino **pp, *e;
    if (o == NULL) {
        return;
    }
    pthread_mutex_lock(&o->mu);
    pp = open_slot(o, ino);
    e = *pp;
    if (e != NULL && --e->n == 0) {
        *pp = e->next;
        if (e->orphan) {
            queue_locked(o, ino);
        }
        rfs_free(e);
    }
    pthread_mutex_unlock(&o->mu);
}

/* Whether ino is open here; if so and orphan, mark it for deletion at its last close.
 * *held (may be NULL): whether this mount's hold on it is written (then set, if set_held). */
static bool open_here_ex(struct fs_orphans *o, uint64_t ino, bool orphan, bool *held, bool set_held)
{
    struct open_ino *e;
    pthread_mutex_lock(&o->mu);
    e = *open_slot(o, ino);
    if (e != NULL && orphan) {
        e->orphan = true;
    }
    if (e != NULL && held != NULL) {
        *held = e->held;
        e->held |= set_held;
    }
    pthread_mutex_unlock(&o->mu);
    return e != NULL;
}

static bool open_here(struct fs_orphans *o, uint64_t ino, bool orphan)
{
    return open_here_ex(o, ino, orphan, NULL, false);
}

bool fs_orphans_is_open(struct fs_orphans *o, uint64_t ino)
{
    return o != NULL && open_here(o, ino, false);
}

bool rfs_fs_may_open(struct rfs_fs *fs, const struct rfs_attr *a)
{
    return a->nlink > 0 || !S_ISREG(a->mode) || fs_orphans_is_open(fs->orphans, a->ino);
}

void fs_orphan_make(struct rfs_fs *fs, struct txnb *t, struct fs_inode *in, int64_t now_ns)
{
    char key[FS_KEY_MAX];
    unsigned char when[8];
    rfs_put_be64(when, (uint64_t)now_ns / 1000000u);
    struct fs_lease *lease = fs_locks_lease(fs);
    bool held;
    in->a.nlink = 0;
    in->a.ctime_ns = now_ns;
    txnb_put_inode(t, in);
    txnb_put(t, key, fs_key_orphan(key, in->a.ino), when, sizeof when);
    /* Open here: the last close here deletes it, and the hold (in the same transaction) tells
     * the other mounts' collectors to leave it. If the transaction fails, the marks only cost
     * a look at the inode at the close. */
    if (fs->orphans != NULL && lease != NULL &&
        open_here_ex(fs->orphans, in->a.ino, true, &held, true)) {
        txnb_put(t, key, fs_key_hold(key, in->a.ino, fs_lease_id(lease)), "", 0);
    }
}

/* Add to t the deletion of ino's holds that are this mount's or dead; *live: whether another
 * live mount holds it (then the orphan stays). Without a lease, every other hold counts as
 * live. Returns 0 or -errno. */
static int holds_check(struct rfs_fs *fs, struct txnb *t, uint64_t ino, bool *live)
{
    char lo[FS_KEY_MAX], hi[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct fs_lease *lease = fs_locks_lease(fs);
    struct kv_scan_result res;
    int rv = kv_client_scan(fs->kv, lo, fs_key_holds_first(lo, ino), hi, fs_key_holds_end(hi, ino),
                            64, &res, errmsg);
    *live = false;
    if (rv != 0) {
        rfs_warnf("fs: holds on unlinked file %llx: %s", (unsigned long long)ino, errmsg);
        return fs_errno(rv);
    }
    for (size_t i = 0; i < res.n && rv == 0; i++) {
        uint64_t mount;
        bool alive = true, local;
        if (fs_key_hold_mount(res.pairs[i].key.base, res.pairs[i].key.len, ino, &mount) != 0) {
            continue;
        }
        if (lease != NULL && mount == fs_lease_id(lease)) {
            alive = false; /* ours, and it is not open here any more */
        } else if (lease != NULL) {
            rv = fs_lease_check(lease, mount, &alive, &local);
        }
        if (alive) {
            *live = true;
        } else {
            txnb_del(t, res.pairs[i].key.base, res.pairs[i].key.len);
        }
    }
    *live |= res.more; /* more holds than one look: keep it, and look again later */
    kv_scan_result_clear(&res);
    return rv;
}

/* Write this mount's hold on orphan ino, which is open here (once per open period). */
static void hold(struct fs_orphans *o, uint64_t ino)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct fs_lease *lease = fs_locks_lease(o->fs);
    bool held = true;
    if (lease == NULL || !open_here_ex(o, ino, true, &held, true) || held) {
        return;
    }
    if (kv_client_put(o->fs->kv, key, fs_key_hold(key, ino, fs_lease_id(lease)), "", 0, NULL,
                      errmsg) != 0) {
        rfs_warnf("fs: holding unlinked file %llx open: %s", (unsigned long long)ino, errmsg);
        pthread_mutex_lock(&o->mu);
        struct open_ino *e = *open_slot(o, ino);
        if (e != NULL) {
            e->held = false; /* the next pass tries again */
        }
        pthread_mutex_unlock(&o->mu);
    }
}

/* Delete orphan ino: its blocks, then inode, record and attributes in one transaction.
 * Returns 1 when it went (or was gone already), 0 when it is not an orphan after all, or
 * -errno (a later pass tries again). */
static int purge(struct rfs_fs *fs, uint64_t ino)
{
    char key[FS_KEY_MAX], okey[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    size_t klen = fs_key_inode(key, ino), oklen = fs_key_orphan(okey, ino);
    struct fs_inode in;
    struct txnb t;
    int rv;

    memset(&in, 0, sizeof in);
    rv = fs_inode_get(fs, ino, &in);
    if (rv != 0 && rv != -ENOENT) {
        return rv;
    }
    txnb_init(&t);
    if (rv == -ENOENT || in.a.nlink > 0 || !S_ISREG(in.a.mode)) {
        /* Gone already (a crash after the last step), or linked: only the record goes. */
        bool gone = rv == -ENOENT;
        txnb_del(&t, okey, oklen);
        rv = txnb_commit(fs, &t);
        txnb_free(&t);
        fs_inode_clear(&in);
        return rv != 0 ? rv : gone;
    }
    {
        bool live;
        rv = holds_check(fs, &t, ino, &live);
        if (rv == 0 && live) {
            /* Another mount has it open: only the dead holds go. */
            rv = t.nw > 0 ? txnb_commit(fs, &t) : 0;
            txnb_free(&t);
            fs_inode_clear(&in);
            return rv;
        }
    }
    if (rv == 0) {
        rv = fs_data_drop(fs, ino, 0, in.a.size / FS_BLOCK_SIZE + 1, errmsg);
        if (rv != 0) {
            rfs_warnf("fs: deleting the data of unlinked file %llx: %s", (unsigned long long)ino,
                      errmsg);
        }
    }
    if (rv == 0) {
        txnb_read(&t, key, klen, in.version); /* written meanwhile: go round again */
        txnb_del(&t, key, klen);
        txnb_del(&t, okey, oklen);
        rv = fs_xattr_drop_all(fs, &t, ino);
    }
    if (rv == 0) {
        rv = txnb_commit(fs, &t);
    }
    txnb_free(&t);
    fs_inode_clear(&in);
    return rv == 0 ? 1 : rv;
}

static int purge_queued(struct fs_orphans *o)
{
    int done = 0;
    for (;;) {
        uint64_t ino;
        int rv;
        pthread_mutex_lock(&o->mu);
        if (o->nqueue == 0) {
            pthread_mutex_unlock(&o->mu);
            return done;
        }
        ino = o->queue[--o->nqueue];
        pthread_mutex_unlock(&o->mu);
        if (open_here(o, ino, true)) {
            continue; /* opened again meanwhile: its next last close queues it */
        }
        rv = purge(o->fs, ino);
        if (rv > 0) {
            done++;
        } else if (rv < 0) {
            rfs_warnf("fs: unlinked file %llx: deleting it failed (%s); the collector tries "
                      "again",
                      (unsigned long long)ino, strerror(-rv));
        }
    }
}

static bool past_grace(uint64_t now, uint64_t when, unsigned grace_ms)
{
    return (now > when ? now - when : when - now) >= grace_ms;
}

/* An orphan record: delete the file if the record is old enough and the file not open here.
 * Returns 1 when it went. */
static int orphan_record(struct fs_orphans *o, const struct kv_pair *p, uint64_t now,
                         unsigned grace_ms)
{
    uint64_t ino, when;
    if (fs_key_orphan_ino(p->key.base, p->key.len, &ino) != 0 || p->value.len != 8) {
        return 0; /* not ours */
    }
    when = rfs_get_be64(p->value.base);
    if (open_here(o, ino, true)) {
        hold(o, ino);
        return 0;
    }
    if (!past_grace(now, when, grace_ms)) {
        return 0;
    }
    return purge(o->fs, ino) > 0;
}

/* A truncate's reclaim record old enough that its truncate has stopped (crashed, or failed
 * part-way): finish the deletion, then drop the record (fs/data.c, "Truncate"). Returns 1
 * when it went. */
static int reclaim_record(struct fs_orphans *o, const struct kv_pair *p, uint64_t now,
                          unsigned grace_ms)
{
    char errmsg[RFS_ERRMSG_SIZE];
    uint64_t ino, end, when;
    if (fs_key_reclaim_ino(p->key.base, p->key.len, &ino) != 0 ||
        fs_reclaim_parse(p->value.base, p->value.len, &end, &when) != 0 ||
        !past_grace(now, when, grace_ms) || fs_data_reclaim(o->fs, ino, end) != 0) {
        return 0;
    }
    if (kv_client_delete(o->fs->kv, p->key.base, p->key.len, NULL, errmsg) != 0) {
        rfs_warnf("fs: truncated file %llx: dropping its reclaim record: %s",
                  (unsigned long long)ino, errmsg);
        return 0;
    }
    rfs_infof("fs: finished an interrupted truncate of %llx", (unsigned long long)ino);
    return 1;
}

typedef int (*record_fn)(struct fs_orphans *o, const struct kv_pair *p, uint64_t now,
                         unsigned grace_ms);

/* One group's records in [first, end), SCAN_BATCH at a time, each handed to fn. Returns how
 * many fn dealt with, or -errno. */
static int scan_group(struct fs_orphans *o, uint64_t gid, const char *first, const char *end,
                      record_fn fn, uint64_t now, unsigned grace_ms)
{
    char lo[FS_KEY_MAX + 1], errmsg[RFS_ERRMSG_SIZE];
    size_t lolen = strlen(first);
    int done = 0;
    memcpy(lo, first, lolen);
    for (;;) {
        struct kv_scan_result res;
        bool more;
        int rv = kv_client_scan_group(o->fs->kv, gid, lo, lolen, end, strlen(end), SCAN_BATCH, &res,
                                      errmsg);
        if (rv != 0) {
            rfs_warnf("fs: looking for unlinked files and unfinished truncates in group %llu: %s",
                      (unsigned long long)gid, errmsg);
            return fs_errno(rv);
        }
        for (size_t i = 0; i < res.n; i++) {
            done += fn(o, &res.pairs[i], now, grace_ms);
        }
        more = fs_scan_next(&res, lo, &lolen);
        kv_scan_result_clear(&res);
        if (!more) {
            return done;
        }
    }
}

static int pass(struct fs_orphans *o, bool scan, unsigned grace_ms)
{
    uint64_t gids[MAX_GROUPS];
    char errmsg[RFS_ERRMSG_SIZE];
    size_t n = 0;
    int done;
    pthread_mutex_lock(&o->pass_mu);
    done = purge_queued(o);
    if (scan && kv_client_group_ids(o->fs->kv, gids, MAX_GROUPS, &n, errmsg) == 0) {
        uint64_t now = wall_ms();
        for (size_t i = 0; i < n; i++) {
            int rv = scan_group(o, gids[i], FS_KEY_ORPHANS_FIRST, FS_KEY_ORPHANS_END, orphan_record,
                                now, grace_ms);
            done += rv > 0 ? rv : 0;
            rv = scan_group(o, gids[i], FS_KEY_RECLAIMS_FIRST, FS_KEY_RECLAIMS_END, reclaim_record,
                            now, grace_ms);
            done += rv > 0 ? rv : 0;
        }
    }
    pthread_mutex_unlock(&o->pass_mu);
    return done;
}

int fs_orphans_collect_now(struct fs_orphans *o)
{
    return pass(o, true, 0);
}

static void *collector_main(void *arg)
{
    struct fs_orphans *o = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        bool scan = false;
        pthread_mutex_lock(&o->mu);
        while (!o->stop && o->nqueue == 0) {
            if (pthread_cond_timedwait(&o->cond, &o->mu, &next) == ETIMEDOUT) {
                scan = true;
                break;
            }
        }
        if (o->stop) {
            pthread_mutex_unlock(&o->mu);
            return NULL;
        }
        pthread_mutex_unlock(&o->mu);
        if (scan) {
            clock_gettime(CLOCK_MONOTONIC, &next);
            next.tv_sec += o->scan_ms / 1000;
            next.tv_nsec += (long)(o->scan_ms % 1000) * 1000000;
            if (next.tv_nsec >= 1000000000) {
                next.tv_sec++;
                next.tv_nsec -= 1000000000;
            }
        }
        (void)pass(o, scan, o->grace_ms);
    }
}

int fs_orphans_start(struct rfs_fs *fs, unsigned scan_ms, unsigned grace_ms,
                     struct fs_orphans **out)
{
    struct fs_orphans *o = rfs_calloc(1, sizeof *o);
    pthread_condattr_t attr;
    int rv;
    *out = NULL;
    if (o == NULL) {
        return -ENOMEM;
    }
    o->fs = fs;
    o->scan_ms = scan_ms ? scan_ms : FS_ORPHAN_SCAN_MS;
    o->grace_ms = grace_ms ? grace_ms : FS_ORPHAN_GRACE_MS;
    pthread_mutex_init(&o->pass_mu, NULL);
    pthread_mutex_init(&o->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &attr);
    pthread_condattr_destroy(&attr);
    rv = pthread_create(&o->thread, NULL, collector_main, o);
    if (rv != 0) {
        pthread_cond_destroy(&o->cond);
        pthread_mutex_destroy(&o->mu);
        pthread_mutex_destroy(&o->pass_mu);
        rfs_free(o);
        return -rv;
    }
    *out = o;
    return 0;
}

void fs_orphans_stop(struct fs_orphans *o)
{
    time_t until = time(NULL) + STOP_DRAIN_S;
    if (o == NULL) {
        return;
    }
    /* What the last closes queued (an unmount closes everything) goes now, within reason. */
    for (;;) {
        size_t left;
        pthread_mutex_lock(&o->mu);
        left = o->nqueue;
        pthread_mutex_unlock(&o->mu);
        if (left == 0 || time(NULL) >= until) {
            break;
        }
        (void)pass(o, false, o->grace_ms);
    }
    pthread_mutex_lock(&o->mu);
    o->stop = true;
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->mu);
    pthread_join(o->thread, NULL);
    for (size_t i = 0; i < OPEN_SLOTS; i++) {
        while (o->open[i] != NULL) {
            struct open_ino *e = o->open[i];
            o->open[i] = e->next;
            rfs_free(e);
        }
    }
    rfs_free(o->queue);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->mu);
    pthread_mutex_destroy(&o->pass_mu);
    rfs_free(o);
}
