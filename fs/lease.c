/* The mount's lease; see lease.h and docs/locks.md.
 *
 * Happy path: fs_lease_start writes the record s{leases}id with a transaction that expects
 * the key absent, then a thread rewrites it every lease_ms / 4 with a transaction that checks
 * the version it last wrote. Each confirmed rewrite moves `confirmed_ms` to the moment it
 * was sent: until confirmed_ms + lease_ms nobody can have decided that the record expired,
 * because an observer starts counting only once it has read the newest version, which was
 * written after it was sent.
 *
 * Failure modes: a rewrite that fails for lack of an answer is tried again at the next
 * tick (the lease lapses locally once lease_ms passes without a confirmed one: lock calls
 * then fail with ENOLCK). A rewrite that conflicts while the record is still there met an
 * earlier rewrite of ours that committed after its answer was lost: the thread takes that
 * version and goes on. A rewrite that conflicts because the record is gone means another
 * mount deleted it (it took this mount for dead, and its locks with it): the thread logs an
 * error and registers a new id. fs_lease_stop deletes the record.
 *
 * About once a lease, the thread also reads every mount's record (they share one bucket)
 * and deletes those it has seen unchanged for their lease: a mount that died without anyone
 * meeting its locks leaves no record behind.
 *
 * Record (value of s{leases}id): format (1), lease_ms (u32 BE), pid (u32 BE), renewal count
 * (u64 BE), the kernel's boot id (36 bytes), host name length (1) and host name. */
#include "lease.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../common/random.h"
#include "../rpc/rpc.h"
#include "internal.h"

#define FORMAT      1
#define BOOT_ID_LEN 36
#define HOST_MAX    64
#define RECORD_MAX  (1 + 4 + 4 + 8 + BOOT_ID_LEN + 1 + HOST_MAX)
/* Other mounts' records remembered at once (the oldest is forgotten: its expiry is then
 * counted again from the next read). */
#define OBS_SLOTS 1024
/* The thread sweeps every mount's record every SWEEP_TICKS renewals (about once a lease),
 * reading them SWEEP_PAGE at a time, at most SWEEP_PAGES pages. */
#define SWEEP_TICKS 4
#define SWEEP_PAGE  256
#define SWEEP_PAGES 64

struct lease_obs {
    uint64_t mount;    /* 0: a free slot */
    uint64_t version;  /* of the record as last read */
    uint64_t first_ms; /* when this version was first read here */
    uint64_t used_ms;
};

struct fs_lease {
    struct rfs_fs *fs;
    unsigned lease_ms;
    pthread_t thread;
    bool running;
    char boot_id[BOOT_ID_LEN];
    char host[HOST_MAX + 1];
    uint32_t pid;
    pthread_mutex_t mu; /* protects everything below */
    pthread_cond_t cv;
    bool stop;
    uint64_t id, version, seq;
    uint64_t confirmed_ms; /* when the newest confirmed write of the record was sent */
    struct lease_obs obs[OBS_SLOTS];
};

static void read_boot_id(char out[BOOT_ID_LEN])
{
    FILE *fp = fopen("/proc/sys/kernel/random/boot_id", "r");
    memset(out, '?', BOOT_ID_LEN);
    if (fp != NULL) {
        if (fread(out, 1, BOOT_ID_LEN, fp) != BOOT_ID_LEN) {
            memset(out, '?', BOOT_ID_LEN); /* never equal to a real one: pids not shown */
        }
        fclose(fp);
    }
}

static size_t record_pack(struct fs_lease *l, uint64_t seq, unsigned char *b)
{
    size_t hl = strlen(l->host), n = 0;
    b[n++] = FORMAT;
    for (int i = 3; i >= 0; i--) {
        b[n++] = (unsigned char)(l->lease_ms >> (8 * i));
    }
    for (int i = 3; i >= 0; i--) {
        b[n++] = (unsigned char)(l->pid >> (8 * i));
    }
    for (int i = 7; i >= 0; i--) {
        b[n++] = (unsigned char)(seq >> (8 * i));
    }
    memcpy(b + n, l->boot_id, BOOT_ID_LEN);
    n += BOOT_ID_LEN;
    b[n++] = (unsigned char)hl;
    memcpy(b + n, l->host, hl);
    return n + hl;
}

/* A record's lease_ms and whether its boot id is ours; -EIO if it does not decode. */
static int record_parse(const struct fs_lease *l, const unsigned char *b, size_t len,
                        unsigned *lease_ms, bool *local)
{
    if (len < RECORD_MAX - HOST_MAX || b[0] != FORMAT) {
        return -EIO;
    }
    *lease_ms = (unsigned)b[1] << 24 | (unsigned)b[2] << 16 | (unsigned)b[3] << 8 | b[4];
    *local = memcmp(b + 17, l->boot_id, BOOT_ID_LEN) == 0;
    return 0;
}

/* Write the record for (id, version 0 expected absent, or the version last written); on
 * success *version is the new one. Returns an RFS_E* code. */
static int record_write(struct fs_lease *l, uint64_t id, uint64_t expect, uint64_t seq,
                        uint64_t *version, char *errmsg)
{
    char key[FS_KEY_MAX];
    unsigned char val[RECORD_MAX];
    struct kv_txn_read rd;
    struct kv_txn_write wr;
    int rv;
    rd.key = key;
    rd.klen = fs_key_lease(key, id);
    rd.version = expect;
    wr.key = key;
    wr.klen = rd.klen;
    wr.value = val;
    wr.vlen = record_pack(l, seq, val);
    wr.del = false;
    *version = 0;
    rv = kv_client_txn_ex(l->fs->kv, &rd, 1, &wr, 1, version, errmsg);
    if (rv == 0 && *version == 0) {
        /* not told (a one-key transaction normally is): read it */
        struct kv_client_value v = {0};
        rv = kv_client_get(l->fs->kv, key, rd.klen, &v, errmsg);
        if (rv == 0) {
            *version = v.found ? v.version : 0;
            rv = v.found ? 0 : RFS_ECONFLICT;
        }
        kv_client_value_clear(&v);
    }
    return rv;
}

/* Register under a fresh id. Returns an RFS_E* code. */
static int lease_register(struct fs_lease *l, char *errmsg)
{
    int rv = RFS_ECONFLICT;
    for (int attempt = 0; attempt < 3 && rv == RFS_ECONFLICT; attempt++) {
        uint64_t id = rfs_random_u64(), version, sent = rpc_now_ms();
        rv = record_write(l, id, 0, 0, &version, errmsg);
        if (rv == 0) {
            pthread_mutex_lock(&l->mu);
            l->id = id;
            l->version = version;
            l->seq = 0;
            l->confirmed_ms = sent;
            pthread_mutex_unlock(&l->mu);
            rfs_infof("fs: lease: registered as mount %016llx (lease %u ms)",
                      (unsigned long long)id, l->lease_ms);
        }
    }
    return rv;
}

/* One renewal (the thread's). */
static void lease_renew(struct fs_lease *l, bool *failing)
{
    char errmsg[RFS_ERRMSG_SIZE];
    uint64_t id, expect, seq, version, sent = rpc_now_ms();
    int rv;
    pthread_mutex_lock(&l->mu);
    id = l->id;
    expect = l->version;
    seq = ++l->seq;
    pthread_mutex_unlock(&l->mu);
    rv = record_write(l, id, expect, seq, &version, errmsg);
    if (rv == 0) {
        pthread_mutex_lock(&l->mu);
        l->version = version;
        l->confirmed_ms = sent;
        pthread_mutex_unlock(&l->mu);
        if (*failing) {
            rfs_warnf("fs: lease: renewed again");
        }
        *failing = false;
        return;
    }
    if (rv == RFS_ECONFLICT) {
        /* Only this mount writes its record; others only delete it. A record that is there
         * with another version was written by an earlier renewal of ours whose answer was
         * lost (a timeout): adopt that version (confirmed_ms stays, as we do not know when
         * that one was sent) and renew again at the next tick. */
        char key[FS_KEY_MAX];
        struct kv_client_value v = {0};
        int grv = kv_client_get(l->fs->kv, key, fs_key_lease(key, id), &v, errmsg);
        bool ours = grv == 0 && v.found;
        if (ours) {
            pthread_mutex_lock(&l->mu);
            if (l->id == id) {
                l->version = v.version;
            }
            pthread_mutex_unlock(&l->mu);
        }
        kv_client_value_clear(&v);
        if (ours || grv != 0) {
            if (!*failing) {
                rfs_warnf("fs: lease: renewal met a newer version of its own record; again");
            }
            *failing = true;
            return;
        }
        rfs_errorf("fs: lease: the record of mount %016llx was deleted by another mount, which "
                   "took this one for dead: the file locks held through it are lost; "
                   "registering again",
                   (unsigned long long)id);
        rv = lease_register(l, errmsg);
        if (rv == 0) {
            *failing = false;
            return;
        }
    }
    if (!*failing) {
        rfs_warnf("fs: lease: cannot renew (will retry): %s", errmsg);
    }
    *failing = true;
}

static void lease_sweep(struct fs_lease *l);

static void *lease_thread(void *arg)
{
    struct fs_lease *l = arg;
    unsigned period = l->lease_ms / 4, tick = 0;
    bool failing = false;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += period / 1000;
        ts.tv_nsec += (long)(period % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!l->stop && pthread_cond_timedwait(&l->cv, &l->mu, &ts) != ETIMEDOUT) {
        }
        if (l->stop) {
            break;
        }
        pthread_mutex_unlock(&l->mu);
        lease_renew(l, &failing);
        if (++tick % SWEEP_TICKS == 0) {
            lease_sweep(l);
        }
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int fs_lease_start(struct rfs_fs *fs, unsigned lease_ms, struct fs_lease **out, char *errmsg)
{
    struct fs_lease *l = rfs_calloc(1, sizeof *l);
    pthread_condattr_t ca;
    int rv;
    if (l == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return -ENOMEM;
    }
    l->fs = fs;
    l->lease_ms = lease_ms == 0 ? FS_LEASE_MS_DEFAULT : lease_ms;
    if (l->lease_ms < FS_LEASE_MS_MIN) {
        l->lease_ms = FS_LEASE_MS_MIN;
    }
    l->pid = (uint32_t)getpid();
    read_boot_id(l->boot_id);
    if (gethostname(l->host, sizeof l->host - 1) != 0) {
        snprintf(l->host, sizeof l->host, "?");
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    rv = lease_register(l, errmsg);
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "registering the mount's lease");
        fs_lease_stop(l);
        return fs_errno(rv);
    }
    rv = pthread_create(&l->thread, NULL, lease_thread, l);
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "cannot start the lease thread: %s", strerror(rv));
        fs_lease_stop(l);
        return -rv;
    }
    l->running = true;
    *out = l;
    return 0;
}

void fs_lease_stop(struct fs_lease *l)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    int rv;
    if (l == NULL) {
        return;
    }
    if (l->running) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
    }
    if (l->id != 0) {
        bool found;
        rv = kv_client_delete(l->fs->kv, key, fs_key_lease(key, l->id), &found, errmsg);
        if (rv != 0) {
            rfs_warnf("fs: lease: cannot delete the record of mount %016llx (others will see it "
                      "expire): %s",
                      (unsigned long long)l->id, errmsg);
        } else {
            rfs_infof("fs: lease: mount %016llx ended", (unsigned long long)l->id);
        }
    }
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    rfs_free(l);
}

uint64_t fs_lease_id(struct fs_lease *l)
{
    uint64_t id;
    pthread_mutex_lock(&l->mu);
    id = l->id;
    pthread_mutex_unlock(&l->mu);
    return id;
}

bool fs_lease_valid(struct fs_lease *l)
{
    bool ok;
    pthread_mutex_lock(&l->mu);
    ok = rpc_now_ms() < l->confirmed_ms + l->lease_ms;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

/* The slot of mount, or a free or the least recently used one (mount 0 in it then).
 * Under l->mu. */
static struct lease_obs *obs_slot(struct fs_lease *l, uint64_t mount)
{
    struct lease_obs *victim = NULL;
    for (unsigned i = 0; i < OBS_SLOTS; i++) {
        struct lease_obs *o = &l->obs[i];
        if (o->mount == mount) {
            return o;
        }
        if (o->mount == 0) {
            if (victim == NULL || victim->mount != 0) {
                victim = o; /* the first free slot */
            }
        } else if (victim == NULL || (victim->mount != 0 && o->used_ms < victim->used_ms)) {
            victim = o;
        }
    }
    memset(victim, 0, sizeof *victim);
    return victim;
}

/* Delete mount's record if it still has version. 0: deleted; RFS_ECONFLICT: renewed. */
static int lease_expire(struct fs_lease *l, uint64_t mount, uint64_t version, unsigned lease_ms)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_txn_read rd;
    struct kv_txn_write wr;
    int rv;
    rd.key = key;
    rd.klen = fs_key_lease(key, mount);
    rd.version = version;
    wr = (struct kv_txn_write){.key = key, .klen = rd.klen, .del = true};
    rv = kv_client_txn(l->fs->kv, &rd, 1, &wr, 1, errmsg);
    if (rv == 0) {
        rfs_warnf("fs: lease: mount %016llx did not renew its lease for %u ms: taken for dead, "
                  "its file locks are released",
                  (unsigned long long)mount, lease_ms);
    } else if (rv != RFS_ECONFLICT) {
        rfs_warnf("fs: lease: expiring mount %016llx: %s", (unsigned long long)mount, errmsg);
    }
    return rv;
}

/* Note that mount's record has version now, and decide: 0 with *dead false (alive, or this
 * mount has not seen the version for lease_ms yet), 0 with *dead true (it had, and the
 * record is now deleted), or an RFS_E* code. */
static int lease_observe(struct fs_lease *l, uint64_t mount, uint64_t version, unsigned lease_ms,
                         bool *dead)
{
    struct lease_obs *o;
    uint64_t now = rpc_now_ms();
    bool expired;
    int rv;
    *dead = false;
    pthread_mutex_lock(&l->mu);
    o = obs_slot(l, mount);
    if (o->mount != mount || o->version != version) {
        o->mount = mount;
        o->version = version;
        o->first_ms = now;
    }
    o->used_ms = now;
    expired = now >= o->first_ms + lease_ms;
    pthread_mutex_unlock(&l->mu);
    if (!expired) {
        return 0;
    }
    rv = lease_expire(l, mount, version, lease_ms);
    if (rv == 0) {
        *dead = true;
        pthread_mutex_lock(&l->mu);
        o = obs_slot(l, mount);
        memset(o, 0, sizeof *o);
        pthread_mutex_unlock(&l->mu);
    }
    return rv == RFS_ECONFLICT ? 0 : rv;
}

int fs_lease_check(struct fs_lease *l, uint64_t mount, bool *live, bool *local)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_client_value v = {0};
    unsigned lease_ms;
    bool dead;
    int rv;
    *live = true;
    *local = true;
    if (mount == fs_lease_id(l)) {
        return 0;
    }
    rv = kv_client_get(l->fs->kv, key, fs_key_lease(key, mount), &v, errmsg);
    if (rv != 0) {
        rfs_warnf("fs: lease: reading the record of mount %016llx: %s", (unsigned long long)mount,
                  errmsg);
        return fs_errno(rv);
    }
    if (!v.found) {
        *live = false;
        kv_client_value_clear(&v);
        return 0;
    }
    if (record_parse(l, v.value.base, v.value.len, &lease_ms, local) != 0) {
        /* a record this version cannot read: its locks are respected, never expired */
        rfs_warnf("fs: lease: the record of mount %016llx does not decode",
                  (unsigned long long)mount);
        kv_client_value_clear(&v);
        *local = false;
        return 0;
    }
    rv = lease_observe(l, mount, v.version, lease_ms, &dead);
    *live = !dead;
    kv_client_value_clear(&v);
    return fs_errno(rv);
}

/* Every mount's record, in one bucket (fs/keys.h): the ones seen unchanged for their lease
 * are deleted, by the rule of fs_lease_check, so the record of a mount that died goes even
 * when nobody meets its locks (they die with it). Best effort: a failure waits for the next
 * sweep. */
static void lease_sweep(struct fs_lease *l)
{
    char lo[FS_KEY_MAX], hi[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    size_t lolen = fs_key_lease_first(lo), hilen = fs_key_lease_end(hi);
    uint64_t me = fs_lease_id(l);
    for (int page = 0; page < SWEEP_PAGES; page++) {
        struct kv_scan_result res = {0};
        int rv = kv_client_scan(l->fs->kv, lo, lolen, hi, hilen, SWEEP_PAGE, &res, errmsg);
        bool more;
        if (rv != 0) {
            rfs_debugf("fs: lease: sweeping the records: %s", errmsg);
            return;
        }
        for (size_t i = 0; i < res.n; i++) {
            const struct kv_pair *p = &res.pairs[i];
            uint64_t mount;
            unsigned lease_ms;
            bool local, dead;
            if (fs_key_lease_mount(p->key.base, p->key.len, &mount) != 0 || mount == me ||
                record_parse(l, p->value.base, p->value.len, &lease_ms, &local) != 0) {
                continue;
            }
            lease_observe(l, mount, p->version, lease_ms, &dead);
        }
        more = res.more && res.n > 0 && res.pairs[res.n - 1].key.len < FS_KEY_MAX;
        if (more) { /* go on just past the last key */
            const struct rfs_buf *last = &res.pairs[res.n - 1].key;
            memcpy(lo, last->base, last->len);
            lo[last->len] = '\0';
            lolen = last->len + 1;
        }
        kv_scan_result_clear(&res);
        if (!more) {
            return;
        }
    }
}
