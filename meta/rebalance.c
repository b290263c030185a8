/* Deterministic rebalancing of the bucket table with the fewest moves (meta.h).
 *
 * A bucket moves only if its group is gone or holds more than its share, so the number of
 * moves is (orphaned buckets) + sum over groups of (count - share) where positive. Giving
 * the larger shares to the groups that already hold the most makes that sum the least. */
#include <stdlib.h>

#include "../common/alloc.h"
#include "../common/err.h"
#include "meta.h"

struct load {
    uint64_t gid;
    uint32_t count;
    uint32_t share;
};

/* Most buckets first, then the lower id. */
static int load_cmp_desc(const void *a, const void *b)
{
    const struct load *x = a, *y = b;
    if (x->count != y->count) {
        return x->count > y->count ? -1 : 1;
    }
    return x->gid < y->gid ? -1 : (x->gid > y->gid);
}

static struct load *load_find(struct load *l, unsigned n, uint64_t gid)
{
    for (unsigned i = 0; i < n; i++) {
        if (l[i].gid == gid) {
            return &l[i];
        }
    }
    return NULL;
}

int meta_rebalance(uint64_t *buckets, uint32_t nbuckets, const uint64_t *gids, unsigned n)
{
    struct load *l;
    uint32_t base, extra;

    if (n == 0) {
        for (uint32_t b = 0; b < nbuckets; b++) {
            buckets[b] = 0;
        }
        return 0;
    }
    l = rfs_calloc(n, sizeof *l);
    if (l == NULL) {
        return RFS_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        l[i].gid = gids[i];
    }
    for (uint32_t b = 0; b < nbuckets; b++) {
        struct load *g = load_find(l, n, buckets[b]);
        if (g != NULL) {
            g->count++;
        } else {
            buckets[b] = 0; /* orphaned: its group left (or there was none) */
        }
    }
    qsort(l, n, sizeof *l, load_cmp_desc);
    base = nbuckets / n;
    extra = nbuckets % n;
    for (unsigned i = 0; i < n; i++) {
        l[i].share = base + (i < extra ? 1 : 0);
    }
    /* Over-full groups give up their highest-numbered buckets. */
    for (uint32_t b = nbuckets; b-- > 0;) {
        struct load *g = buckets[b] != 0 ? load_find(l, n, buckets[b]) : NULL;
        if (g != NULL && g->count > g->share) {
            g->count--;
            buckets[b] = 0;
        }
    }
    /* Freed buckets, lowest first, to the least loaded group below its share. */
    for (uint32_t b = 0; b < nbuckets; b++) {
        struct load *best = NULL;
        if (buckets[b] != 0) {
            continue;
        }
        for (unsigned i = 0; i < n; i++) {
            struct load *g = &l[i];
            if (g->count >= g->share) {
                continue;
            }
            if (best == NULL || g->count < best->count ||
                (g->count == best->count && g->gid < best->gid)) {
                best = g;
            }
        }
        /* Shares add up to nbuckets, so some group is below its share. */
        best->count++;
        buckets[b] = best->gid;
    }
    rfs_free(l);
    return 0;
}
