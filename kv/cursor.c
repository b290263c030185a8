/* A cursor over a range of LevelDB keys with the pending batch merged in: a key the batch
 * wrote shows the batch's value, a key it deleted is skipped. Both sources are in key order,
 * so this is a two-way merge in which the batch wins ties. A LevelDB value that is a blob
 * pointer is read from its blob file (kv/blob.h), so callers see whole values. Scans and the
 * session sweep read through it, so they see the earlier commands of the same apply call. */
#include <string.h>

#include "../common/alloc.h"
#include "internal.h"

static int cursor_in_range(const struct kv_cursor *c, const char *key, size_t klen)
{
    return c->hi == NULL || kv_key_cmp(key, klen, c->hi, c->hilen) < 0;
}

/* The current LevelDB value is a blob pointer: read the value it stands for. A failure
 * ends the cursor; kv_cursor_close reports it. */
static void cursor_resolve(struct kv_cursor *c)
{
    rfs_free(c->own);
    c->own = NULL;
    c->err = kv_blobs_read(c->blobs, c->val, &c->own, &c->vlen, c->errmsg);
    if (c->err != 0) {
        c->valid = 0;
        c->val = NULL;
        c->vlen = 0;
        return;
    }
    c->val = c->own;
}

/* Make the current item the first live key at or after both sources' positions. */
static void cursor_settle(struct kv_cursor *c)
{
    if (c->err != 0) {
        c->valid = 0;
        return;
    }
    for (;;) {
        const char *lk = NULL;
        size_t llen = 0;
        struct kv_pending *p = c->iov < c->nov ? c->ov[c->iov] : NULL;
        int cmp;

        if (leveldb_iter_valid(c->it)) {
            lk = leveldb_iter_key(c->it, &llen);
            if (!cursor_in_range(c, lk, llen)) {
                lk = NULL;
            }
        }
        if (lk == NULL && p == NULL) {
            c->valid = 0;
            return;
        }
        cmp = p == NULL ? 1 : lk == NULL ? -1 : kv_key_cmp(p->key, p->klen, lk, llen);
        if (cmp > 0) {
            c->valid = 1;
            c->from_ov = 0;
            c->key = lk;
            c->klen = llen;
            c->val = leveldb_iter_value(c->it, &c->vlen);
            if (c->blobs != NULL && kv_blob_is_ptr(c->key, c->klen, c->val, c->vlen)) {
                cursor_resolve(c);
            }
            return;
        }
        if (cmp == 0) {
            leveldb_iter_next(c->it); /* shadowed by the batch */
        }
        if (p->deleted) {
            c->iov++;
            continue;
        }
        c->valid = 1;
        c->from_ov = 1;
        c->key = p->key;
        c->klen = p->klen;
        c->val = p->val;
        c->vlen = p->vlen;
        return;
    }
}

int kv_cursor_open(struct kv_cursor *c, struct rfs_ldb *d, const leveldb_readoptions_t *ropts,
                   const char *lo, size_t lolen, const char *hi, size_t hilen,
                   struct kv_pending **sorted, size_t nsorted)
{
    size_t first = 0, last;

    *c = (struct kv_cursor){.hi = hi, .hilen = hilen, .blobs = d->blobs};
    c->it = leveldb_create_iterator(d->db, ropts);
    if (c->it == NULL) {
        return RFS_ENOMEM;
    }
    /* The batch's slice [first, last) of keys in [lo, hi), by binary search. */
    last = nsorted;
    while (first < last) {
        size_t mid = first + (last - first) / 2;
        if (kv_key_cmp(sorted[mid]->key, sorted[mid]->klen, lo, lolen) < 0) {
            first = mid + 1;
        } else {
            last = mid;
        }
    }
    last = first;
    while (last < nsorted && cursor_in_range(c, sorted[last]->key, sorted[last]->klen)) {
        last++;
    }
    c->ov = sorted != NULL ? sorted + first : NULL;
    c->nov = last - first;
    leveldb_iter_seek(c->it, lo, lolen);
    cursor_settle(c);
    return 0;
}

void kv_cursor_next(struct kv_cursor *c)
{
    if (!c->valid) {
        return;
    }
    if (c->from_ov) {
        c->iov++;
    } else {
        leveldb_iter_next(c->it);
    }
    cursor_settle(c);
}

int kv_cursor_close(struct kv_cursor *c, char *errmsg)
{
    char *err = NULL;
    int rv = 0;

    if (c->it != NULL) {
        leveldb_iter_get_error(c->it, &err);
        if (err != NULL) {
            rv = rfs_ldb_error(err, errmsg, "leveldb iterator");
        }
        leveldb_iter_destroy(c->it);
    }
    if (rv == 0 && c->err != 0) {
        rv = c->err;
        rfs_errmsg_printf(errmsg, "%s", c->errmsg);
    }
    rfs_free(c->own);
    *c = (struct kv_cursor){0};
    return rv;
}
