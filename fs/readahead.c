/* Stripe cache and read-ahead of an open file (see readahead.h).
 *
 * A read: read the inode; if its version is not the one the cached stripes were fetched
 * under, wait for the fetches in flight and drop every stripe. For each stripe the range
 * touches: use the cached one (waiting for it if a fetch is in flight), or fetch it now.
 * Copy the stored bytes out, zeros where a block is missing or short (holes). Then, if the
 * read started where the previous one ended, start fetches of the next FS_RA_AHEAD stripes
 * below the size that are not cached, each into a slot that holds nothing or a stripe
 * behind the reader.
 *
 * A fetch is one scan of the stripe's keys (they share one bucket); a failed background
 * fetch leaves its error in the slot, and a read that needs the stripe fetches it again
 * itself. */
#include "readahead.h"

#include <errno.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../rpc/rpc.h"
#include "data.h"

struct fetch_job {
    struct fs_readahead *ra;
    struct fs_ra_slot *slot;
};

/* Scan blocks [slot->lo, slot->hi) of stripe slot->stripe of ino into slot (not under ra->mu:
 * the slot is the caller's). */
static int stripe_fetch(struct rfs_fs *fs, uint64_t ino, struct fs_ra_slot *slot)
{
    char keys[FS_STRIPE_BLOCKS][FS_KEY_MAX], hi[FS_KEY_MAX + 1], errmsg[RFS_ERRMSG_SIZE];
    size_t klen[FS_STRIPE_BLOCKS], hilen;
    uint64_t first = slot->stripe * FS_STRIPE_BLOCKS;
    unsigned lo = slot->lo, last = slot->hi - 1;
    size_t j = 0;
    int rv;

    for (unsigned i = 0; i < FS_STRIPE_BLOCKS; i++) {
        klen[i] = fs_key_block(keys[i], ino, first + i);
        slot->at[i] = -1;
    }
    memcpy(hi, keys[last], klen[last]);
    hilen = klen[last];
    hi[hilen++] = '\0'; /* the first key after the last block */
    kv_scan_result_clear(&slot->res);
    rv = kv_client_scan(fs->kv, keys[lo], klen[lo], hi, hilen, slot->hi - lo, &slot->res, errmsg);
    if (rv != 0) {
        rfs_warnf("fs: reading blocks %llu to %llu of %llx: %s", (unsigned long long)(first + lo),
                  (unsigned long long)(first + last), (unsigned long long)ino, errmsg);
        return fs_errno(rv);
    }
    /* the pairs come in key order, as the blocks do */
    for (unsigned i = lo; i <= last && j < slot->res.n; i++) {
        const struct kv_pair *p = &slot->res.pairs[j];
        if (p->key.len == klen[i] && memcmp(p->key.base, keys[i], klen[i]) == 0) {
            if (p->value.len > FS_BLOCK_SIZE) {
                rfs_errorf("fs: block %llu of %llx holds %zu bytes (more than a block)",
                           (unsigned long long)(first + i), (unsigned long long)ino, p->value.len);
                return -EIO;
            }
            slot->at[i] = (int16_t)j++;
        }
    }
    if (j != slot->res.n) {
        rfs_errorf("fs: stripe %llu of %llx: a scan returned a key that is not a block of it",
                   (unsigned long long)slot->stripe, (unsigned long long)ino);
        return -EIO;
    }
    return 0;
}

static int fetch_run(void *arg)
{
    struct fetch_job *job = arg;
    struct fs_readahead *ra = job->ra;
    struct fs_ra_slot *slot = job->slot;
    int rv = stripe_fetch(ra->fs, ra->ino, slot);
    rfs_free(job);
    pthread_mutex_lock(&ra->mu);
    slot->err = rv;
    slot->state = FS_RA_READY;
    pthread_cond_broadcast(&ra->cond);
    pthread_mutex_unlock(&ra->mu);
    return 0; /* a failed fetch is the slot's, for the read that needs it */
}

void fs_readahead_init(struct fs_readahead *ra, struct rfs_fs *fs, uint64_t ino)
{
    memset(ra, 0, sizeof *ra);
    ra->fs = fs;
    ra->ino = ino;
    pthread_mutex_init(&ra->mu, NULL);
    pthread_cond_init(&ra->cond, NULL);
    fs_io_batch_init(&ra->batch);
}

/* Wait for the fetches in flight; empty every slot. */
static void drop_all(struct fs_readahead *ra)
{
    (void)fs_io_batch_wait(&ra->batch, 0);
    for (unsigned i = 0; i < FS_RA_SLOTS; i++) {
        kv_scan_result_clear(&ra->slots[i].res);
        ra->slots[i].state = FS_RA_EMPTY;
    }
}

void fs_readahead_clear(struct fs_readahead *ra)
{
    drop_all(ra);
    fs_io_batch_destroy(&ra->batch);
    pthread_cond_destroy(&ra->cond);
    pthread_mutex_destroy(&ra->mu);
}

/* The slot holding block blk of stripe (or fetching it), or NULL. */
static struct fs_ra_slot *slot_of(struct fs_readahead *ra, uint64_t stripe, unsigned blk)
{
    for (unsigned i = 0; i < FS_RA_SLOTS; i++) {
        struct fs_ra_slot *s = &ra->slots[i];
        if (s->state != FS_RA_EMPTY && s->stripe == stripe && s->lo <= blk && blk < s->hi) {
            return s;
        }
    }
    return NULL;
}

/* A slot to reuse: an empty one, else the least recently read one that is not in flight
 * and, when behind is set, holds a stripe below it (read-ahead never pushes out what is
 * ahead of the reader). NULL if none. Holds ra->mu. */
static struct fs_ra_slot *slot_victim(struct fs_readahead *ra, bool only_behind, uint64_t behind)
{
    struct fs_ra_slot *best = NULL;
    for (unsigned i = 0; i < FS_RA_SLOTS; i++) {
        struct fs_ra_slot *s = &ra->slots[i];
        if (s->state == FS_RA_EMPTY) {
            return s;
        }
        if (s->state == FS_RA_LOADING || (only_behind && s->stripe >= behind)) {
            continue;
        }
        if (best == NULL || s->used < best->used) {
            best = s;
        }
    }
    return best;
}

/* Block blk of stripe, current under version, ready to read: cached, waited for, or fetched
 * now with the blocks [blk, hi) of the stripe. */
static int stripe_ready(struct fs_readahead *ra, uint64_t stripe, unsigned blk, unsigned hi,
                        uint64_t version, struct fs_ra_slot **out)
{
    struct fs_ra_slot *s;
    int rv;
    pthread_mutex_lock(&ra->mu);
    s = slot_of(ra, stripe, blk);
    while (s != NULL && s->state == FS_RA_LOADING) {
        pthread_cond_wait(&ra->cond, &ra->mu);
    }
    if (s != NULL && (s->err != 0 || s->version != version)) {
        kv_scan_result_clear(&s->res);
        s->state = FS_RA_EMPTY;
        s = NULL;
    }
    if (s == NULL) {
        s = slot_victim(ra, false, 0); /* there is always one: at most AHEAD are in flight */
        if (s != NULL) {
            s->state = FS_RA_EMPTY;
        }
    }
    pthread_mutex_unlock(&ra->mu);
    if (s == NULL) {
        return -EIO;
    }
    if (s->state != FS_RA_READY) {
        s->stripe = stripe;
        s->lo = blk;
        s->hi = hi;
        s->version = version;
        rv = stripe_fetch(ra->fs, ra->ino, s);
        if (rv != 0) {
            kv_scan_result_clear(&s->res);
            return rv;
        }
        s->err = 0;
        pthread_mutex_lock(&ra->mu);
        s->state = FS_RA_READY;
        pthread_mutex_unlock(&ra->mu);
    }
    s->used = ++ra->clock;
    *out = s;
    return 0;
}

/* Start background fetches of the stripes after `last`, below `size`. */
static void read_ahead(struct fs_readahead *ra, uint64_t last, uint64_t size, uint64_t version)
{
    uint64_t end = (size + (uint64_t)FS_STRIPE_BLOCKS * FS_BLOCK_SIZE - 1) /
                   ((uint64_t)FS_STRIPE_BLOCKS * FS_BLOCK_SIZE);
    for (uint64_t st = last + 1; st <= last + FS_RA_AHEAD && st < end; st++) {
        struct fs_ra_slot *s;
        struct fetch_job *job;
        pthread_mutex_lock(&ra->mu);
        s = slot_of(ra, st, 0) != NULL ? NULL : slot_victim(ra, true, last);
        if (s != NULL) {
            kv_scan_result_clear(&s->res);
            s->state = FS_RA_LOADING;
            s->stripe = st;
            s->lo = 0;
            s->hi = FS_STRIPE_BLOCKS;
            s->version = version;
            s->err = 0;
            s->used = ra->clock;
        }
        pthread_mutex_unlock(&ra->mu);
        if (s == NULL) {
            continue; /* cached or in flight already, or no room */
        }
        job = rfs_malloc(sizeof *job);
        if (job != NULL) {
            *job = (struct fetch_job){.ra = ra, .slot = s};
            if (fs_io_submit(ra->fs->io, &ra->batch, fetch_run, job) == 0) {
                continue;
            }
            rfs_free(job);
        }
        pthread_mutex_lock(&ra->mu);
        s->state = FS_RA_EMPTY;
        pthread_mutex_unlock(&ra->mu);
        return; /* out of memory: read on without */
    }
}

/* ra->size and ra->version: the inode's, read now unless the last reading may be trusted. */
static int inode_current(struct fs_readahead *ra)
{
    uint64_t changes = atomic_load(&ra->fs->changes), now = rpc_now_ms();
    struct fs_inode in;
    int rv;
    if (ra->have_inode && changes == ra->changes && now - ra->read_ms < FS_RA_TRUST_MS &&
        !ra->no_ahead) {
        return 0;
    }
    rv = fs_data_begin(ra->fs, ra->ino, &in);
    if (rv != 0) {
        ra->have_inode = false;
        return rv;
    }
    ra->have_inode = true;
    ra->size = in.a.size;
    ra->version = in.version;
    ra->changes = changes;
    ra->read_ms = now;
    fs_inode_clear(&in);
    return 0;
}

int fs_readahead_read(struct fs_readahead *ra, uint64_t off, size_t size, void *buf, size_t *n)
{
    const uint64_t stripe_bytes = (uint64_t)FS_STRIPE_BLOCKS * FS_BLOCK_SIZE;
    uint64_t end, pos;
    bool seq;
    char *out = buf;
    int rv;

    *n = 0;
    rv = inode_current(ra);
    if (rv != 0) {
        return rv;
    }
    for (unsigned i = 0; i < FS_RA_SLOTS; i++) {
        if (ra->slots[i].state != FS_RA_EMPTY && ra->slots[i].version != ra->version) {
            drop_all(ra); /* the file changed: nothing cached holds */
            break;
        }
    }
    if (off >= ra->size || size == 0) {
        return 0;
    }
    end = size < ra->size - off ? off + size : ra->size;
    seq = !ra->no_ahead && (off == ra->next_off || off == 0);
    for (pos = off; pos < end;) {
        uint64_t stripe = pos / stripe_bytes;
        uint64_t blk = pos / FS_BLOCK_SIZE;
        uint64_t bstart = blk * FS_BLOCK_SIZE;
        size_t lo = (size_t)(pos - bstart);
        size_t hi =
            (size_t)((end < bstart + FS_BLOCK_SIZE ? end : bstart + FS_BLOCK_SIZE) - bstart);
        char *dst = out + (pos - off);
        struct fs_ra_slot *s;
        int at;
        /* a sequential reader takes whole stripes; another only the blocks it reads */
        unsigned first = (unsigned)(blk % FS_STRIPE_BLOCKS), upto = FS_STRIPE_BLOCKS;
        if (!seq && (end - 1) / FS_BLOCK_SIZE < (stripe + 1) * FS_STRIPE_BLOCKS) {
            upto = (unsigned)((end - 1) / FS_BLOCK_SIZE % FS_STRIPE_BLOCKS) + 1;
        }
        rv = stripe_ready(ra, stripe, first, upto, ra->version, &s);
        if (rv != 0) {
            break;
        }
        at = s->at[blk % FS_STRIPE_BLOCKS];
        if (at >= 0 && s->res.pairs[at].value.len > lo) {
            const struct rfs_buf *v = &s->res.pairs[at].value;
            size_t k = (v->len < hi ? v->len : hi) - lo;
            memcpy(dst, (const char *)v->base + lo, k);
            memset(dst + k, 0, hi - lo - k);
        } else {
            memset(dst, 0, hi - lo);
        }
        pos = bstart + hi;
    }
    if (rv == 0) {
        *n = (size_t)(end - off);
        if (seq) {
            read_ahead(ra, (end - 1) / stripe_bytes, ra->size, ra->version);
        }
        ra->next_off = end;
    }
    return rv;
}
