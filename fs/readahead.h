/* fs/readahead.h: reads of an open file through a cache of whole stripes, fetched ahead of a
 * sequential reader (fs/readahead.c); part of an open file (fs/file.c).
 *
 * A stripe (FS_STRIPE_BLOCKS blocks, one bucket) comes in one scan request; a read that does
 * not continue the previous one fetches only the blocks it needs (one scan). Each read
 * first reads the inode (or trusts the one it read less than FS_RA_TRUST_MS ago, if nothing
 * changed through this filesystem since) (is it still a regular file, what size, which version);
 * cached stripes are used only while the inode keeps the version they were fetched under: every
 * write changes the inode after (or with) its blocks, and a truncate changes blocks only past
 * the size it committed, which reads never look at. When
 * reads are sequential, the next FS_RA_AHEAD stripes (up to the file's size) are fetched in
 * the background on the filesystem's I/O pool, so the next reads find them in memory.
 *
 * One reader at a time (the file's mutex); the background fetches synchronise with it
 * here. */
#ifndef FS_READAHEAD_H
#define FS_READAHEAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../kv/client.h"
#include "internal.h"
#include "io_pool.h"
#include "keys.h"

/* How long a read may go by the inode an earlier read of the handle saw, while this
 * filesystem sent no change: changes made elsewhere (other mounts) show within this bound,
 * as with the kernel's attribute cache (raftfs-mount's default --cache-timeout); changes
 * made here show at once. */
#define FS_RA_TRUST_MS 1000
#define FS_RA_AHEAD    8                 /* stripes fetched ahead of a sequential reader */
#define FS_RA_SLOTS    (FS_RA_AHEAD + 3) /* and the ones being read */

enum fs_ra_state { FS_RA_EMPTY, FS_RA_LOADING, FS_RA_READY };

struct fs_ra_slot {
    enum fs_ra_state state; /* LOADING: a background fetch owns the rest; by fs_readahead.mu */
    uint64_t stripe;
    unsigned lo, hi;  /* the blocks of the stripe it holds: [lo, hi) */
    uint64_t version; /* of the inode when the fetch started */
    uint64_t used;    /* when it was last read (a counter) */
    int err;          /* of the fetch, 0 or -errno */
    struct kv_scan_result res;
    int16_t at[FS_STRIPE_BLOCKS]; /* block i of the stripe is res.pairs[at[i]], -1: a hole */
};

struct fs_readahead {
    struct rfs_fs *fs;
    uint64_t ino;
    pthread_mutex_t mu;  /* protects the slots' states */
    pthread_cond_t cond; /* a fetch finished */
    struct fs_io_batch batch;
    struct fs_ra_slot slots[FS_RA_SLOTS];
    uint64_t clock;
    uint64_t next_off; /* where the last read ended: a read starting there is sequential */
    /* The inode as last read: trusted for FS_RA_TRUST_MS while fs->changes stays `changes`
     * (nothing changed through this filesystem since). */
    bool have_inode;
    uint64_t size, version, changes, read_ms;
    bool no_ahead; /* set after init: never fetch ahead (a one-off read) */
};

void fs_readahead_init(struct fs_readahead *ra, struct rfs_fs *fs, uint64_t ino);
/* Wait for the background fetches, free every stripe. */
void fs_readahead_clear(struct fs_readahead *ra);

/* rfs_fs_read through the cache: up to size bytes at off into buf, *n the count. */
int fs_readahead_read(struct fs_readahead *ra, uint64_t off, size_t size, void *buf, size_t *n);

#endif
