/* SCAN: user keys in [key, end_key) in user-key order. A start key with a hash tag names
 * one bucket, and only that bucket's range is read. Otherwise the range is spread over
 * every bucket: one cursor per bucket, each in key order, merged with a binary min-heap on
 * the user key (a user key lives in exactly one bucket, so there are no ties). */
#include <stdbool.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "internal.h"

struct scan_item {
    size_t koff, klen, voff, vlen;
    uint64_t version;
};

struct scan {
    struct kv_cursor *cursors;
    size_t ncursors;
    struct kv_cursor **heap;
    size_t nheap;
    struct scan_item *items;
    size_t nitems, cap_items;
    char *buf;
    size_t used, cap;
};

static int heap_less(const struct kv_cursor *a, const struct kv_cursor *b)
{
    return kv_key_cmp(a->key + KV_DATA_HDR, a->klen - KV_DATA_HDR, b->key + KV_DATA_HDR,
                      b->klen - KV_DATA_HDR) < 0;
}

static void heap_down(struct scan *s, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < s->nheap && heap_less(s->heap[l], s->heap[m])) {
            m = l;
        }
        if (l + 1 < s->nheap && heap_less(s->heap[l + 1], s->heap[m])) {
            m = l + 1;
        }
        if (m == i) {
            return;
        }
        struct kv_cursor *t = s->heap[i];
        s->heap[i] = s->heap[m];
        s->heap[m] = t;
        i = m;
    }
}

/* Append one pair to the result buffer. */
static int scan_take(struct scan *s, const struct kv_cursor *c)
{
    size_t klen = c->klen - KV_DATA_HDR, vlen = c->vlen - KV_VERSION_LEN;

    if (s->nitems == s->cap_items) {
        size_t n = s->cap_items == 0 ? 16 : 2 * s->cap_items;
        struct scan_item *items = rfs_realloc(s->items, n * sizeof *items);
        if (items == NULL) {
            return RFS_ENOMEM;
        }
        s->items = items;
        s->cap_items = n;
    }
    /* Also for a first pair of 0 bytes (empty key and value): memcpy and the reply's
     * pointers need a real buffer. */
    if (s->buf == NULL || s->cap - s->used < klen + vlen) {
        size_t n = s->cap == 0 ? 4096 : s->cap;
        while (n - s->used < klen + vlen) {
            n *= 2;
        }
        char *buf = rfs_realloc(s->buf, n);
        if (buf == NULL) {
            return RFS_ENOMEM;
        }
        s->buf = buf;
        s->cap = n;
    }
    s->items[s->nitems++] = (struct scan_item){
        .koff = s->used,
        .klen = klen,
        .voff = s->used + klen,
        .vlen = vlen,
        .version = rfs_get_le64(c->val),
    };
    memcpy(s->buf + s->used, c->key + KV_DATA_HDR, klen);
    memcpy(s->buf + s->used + klen, c->val + KV_VERSION_LEN, vlen);
    s->used += klen + vlen;
    return 0;
}

/* Move the pairs into the reply (the reply points into res->scan_buf). */
static int scan_finish(struct scan *s, struct kv_result *res)
{
    if (s->nitems == 0) {
        return 0;
    }
    res->items = rfs_malloc(s->nitems * sizeof *res->items);
    res->item_ptrs = rfs_malloc(s->nitems * sizeof *res->item_ptrs);
    if (res->items == NULL || res->item_ptrs == NULL) {
        return RFS_ENOMEM;
    }
    res->scan_buf = s->buf;
    s->buf = NULL;
    for (size_t i = 0; i < s->nitems; i++) {
        Raftfs__KeyValue *kv = &res->items[i];
        raftfs__key_value__init(kv);
        kv->key.data = (uint8_t *)res->scan_buf + s->items[i].koff;
        kv->key.len = s->items[i].klen;
        kv->value.data = (uint8_t *)res->scan_buf + s->items[i].voff;
        kv->value.len = s->items[i].vlen;
        kv->version = s->items[i].version;
        res->item_ptrs[i] = kv;
    }
    res->r.kvs = res->item_ptrs;
    res->r.n_kvs = s->nitems;
    return 0;
}

/* The LevelDB key range of bucket b's part of [start, end): lo and hi (hi holds
 * KV_DATA_HDR + end_len bytes of space). An empty end means the end of the bucket. */
static void scan_bounds(uint32_t b, const ProtobufCBinaryData *start,
                        const ProtobufCBinaryData *end, char *lo, char *hi, size_t *hilen)
{
    kv_key_data(lo, b, start->data, start->len);
    if (end->len > 0) {
        kv_key_data(hi, b, end->data, end->len);
        *hilen = KV_DATA_HDR + end->len;
    } else if (b < 0xffff) {
        kv_key_data(hi, b + 1, NULL, 0);
        *hilen = KV_DATA_HDR;
    } else {
        hi[0] = KV_PREFIX_DATA + 1;
        *hilen = 1;
    }
}

int kv_op_scan(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
               char *errmsg)
{
    const ProtobufCBinaryData *start = &req->key, *end = &req->end_key;
    size_t limit = req->limit == 0 ? KV_SCAN_DEFAULT_LIMIT : req->limit;
    size_t bytes = 0, hisize = KV_DATA_HDR + end->len;
    struct kv_pending **sorted = NULL;
    struct scan s = {0};
    char *lo = NULL, *his = NULL;
    const char *tag;
    size_t taglen, nsorted = 0;
    uint32_t first = 0;
    bool local;
    int rv = 0;

    if (limit > KV_SCAN_MAX_LIMIT) {
        limit = KV_SCAN_MAX_LIMIT;
    }
    if (start->len > KV_MAX_KEY || end->len > KV_MAX_KEY) {
        kv_result_fail(res, RFS_ETOOBIG, "scan bound over %u bytes", KV_MAX_KEY);
        return 0;
    }
    if (end->len > 0 && kv_key_cmp(start->data, start->len, end->data, end->len) >= 0) {
        return 0; /* empty range */
    }
    s.ncursors = x->sm->nbuckets;
    /* A sharded group asked for its own buckets (KvRequest.local): the untagged scan below
     * over just those. */
    local = req->local && x->sm->sharded;
    if (!local && kv_key_tag(start->data, start->len, &tag, &taglen)) {
        first = kv_bucket_of(start->data, start->len, x->sm->nbuckets);
        s.ncursors = 1;
    }
    s.cursors = rfs_calloc(s.ncursors, sizeof *s.cursors);
    s.heap = rfs_calloc(s.ncursors, sizeof *s.heap);
    lo = rfs_malloc(KV_DATA_HDR + start->len);
    his = rfs_malloc(s.ncursors * hisize);
    if (s.cursors == NULL || s.heap == NULL || lo == NULL || his == NULL ||
        kv_batch_sorted(x->b, &sorted, &nsorted) != 0) {
        rv = RFS_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < s.ncursors; i++) {
        char *hi = his + i * hisize;
        size_t hilen;
        if (local && !kv_shard_serves(x->sm, first + (uint32_t)i)) {
            continue; /* another group's bucket (or one on its way here): not read */
        }
        scan_bounds(first + (uint32_t)i, start, end, lo, hi, &hilen);
        rv = kv_cursor_open(&s.cursors[i], x->b->db, x->b->db->ropts, lo, KV_DATA_HDR + start->len,
                            hi, hilen, sorted, nsorted);
        if (rv != 0) {
            goto out;
        }
        if (s.cursors[i].valid) {
            s.heap[s.nheap++] = &s.cursors[i];
        }
    }
    for (size_t i = s.nheap; i-- > 0;) {
        heap_down(&s, i);
    }
    while (s.nheap > 0) {
        struct kv_cursor *c = s.heap[0];
        if (c->vlen < KV_VERSION_LEN) {
            rfs_errmsg_printf(errmsg, "scan: data record of %zu bytes", c->vlen);
            rv = RFS_ECORRUPT;
            goto out;
        }
        /* Stop at the limit, or before passing the byte budget (but never empty-handed). */
        if (s.nitems == limit || (s.nitems > 0 && bytes + c->klen + c->vlen > KV_SCAN_MAX_BYTES)) {
            res->r.more = 1;
            break;
        }
        bytes += c->klen + c->vlen;
        rv = scan_take(&s, c);
        if (rv != 0) {
            goto out;
        }
        kv_cursor_next(c);
        if (!c->valid) {
            s.heap[0] = s.heap[--s.nheap];
        }
        heap_down(&s, 0);
    }
    rv = scan_finish(&s, res);
out:
    for (size_t i = 0; s.cursors != NULL && i < s.ncursors; i++) {
        int rv2 = kv_cursor_close(&s.cursors[i], errmsg);
        if (rv == 0) {
            rv = rv2;
        }
    }
    rfs_free(s.cursors);
    rfs_free(s.heap);
    rfs_free(s.items);
    rfs_free(s.buf);
    rfs_free(sorted);
    rfs_free(lo);
    rfs_free(his);
    return rv;
}
