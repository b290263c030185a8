/* The pending write batch of one apply call. Every put and delete goes into a small hash
 * map keyed by the LevelDB key, which reads consult before LevelDB: the commands of a batch
 * run in log order and each must see what the earlier ones wrote. kv_batch_write turns the
 * map's final state into one LevelDB write (atomic), with large data values in blob files
 * (kv/blob.h) and pointers to them in LevelDB; only the last value of a key is written. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/crc32.h"
#include "internal.h"

int kv_batch_init(struct kv_batch *b, struct rfs_ldb *db, int writable)
{
    *b = (struct kv_batch){.db = db};
    if (writable) {
        b->wb = leveldb_writebatch_create();
        if (b->wb == NULL) {
            return RFS_ENOMEM;
        }
    }
    return 0;
}

void kv_batch_close(struct kv_batch *b)
{
    for (size_t i = 0; i < b->nslots; i++) {
        struct kv_pending *p = b->slots[i];
        while (p != NULL) {
            struct kv_pending *next = p->next;
            rfs_free(p->val);
            rfs_free(p);
            p = next;
        }
    }
    rfs_free(b->slots);
    if (b->wb != NULL) {
        leveldb_writebatch_destroy(b->wb);
    }
    *b = (struct kv_batch){0};
}

static struct kv_pending *batch_find(const struct kv_batch *b, const void *key, size_t klen,
                                     uint32_t hash)
{
    if (b->nslots == 0) {
        return NULL;
    }
    for (struct kv_pending *p = b->slots[hash & (b->nslots - 1)]; p != NULL; p = p->next) {
        if (p->hash == hash && p->klen == klen && memcmp(p->key, key, klen) == 0) {
            return p;
        }
    }
    return NULL;
}

/* Keep the load factor at or below 1. */
static int batch_grow(struct kv_batch *b)
{
    size_t n = b->nslots == 0 ? 64 : b->nslots * 2;
    struct kv_pending **slots;

    if (b->count < b->nslots) {
        return 0;
    }
    slots = rfs_calloc(n, sizeof *slots);
    if (slots == NULL) {
        return RFS_ENOMEM;
    }
    for (size_t i = 0; i < b->nslots; i++) {
        struct kv_pending *p = b->slots[i];
        while (p != NULL) {
            struct kv_pending *next = p->next;
            p->next = slots[p->hash & (n - 1)];
            slots[p->hash & (n - 1)] = p;
            p = next;
        }
    }
    rfs_free(b->slots);
    b->slots = slots;
    b->nslots = n;
    return 0;
}

/* The entry for key, created (as deleted) if absent. */
static int batch_entry(struct kv_batch *b, const void *key, size_t klen, struct kv_pending **out)
{
    uint32_t hash = rfs_crc32c(0, key, klen);
    struct kv_pending *p = batch_find(b, key, klen, hash);

    if (p == NULL) {
        if (batch_grow(b) != 0) {
            return RFS_ENOMEM;
        }
        p = rfs_malloc(sizeof *p + klen);
        if (p == NULL) {
            return RFS_ENOMEM;
        }
        *p = (struct kv_pending){.hash = hash, .deleted = 1, .klen = klen};
        memcpy(p->key, key, klen);
        p->next = b->slots[hash & (b->nslots - 1)];
        b->slots[hash & (b->nslots - 1)] = p;
        b->count++;
    }
    *out = p;
    return 0;
}

int kv_batch_put_owned(struct kv_batch *b, const void *key, size_t klen, char *val, size_t vlen)
{
    struct kv_pending *p;

    assert(b->wb != NULL);
    if (batch_entry(b, key, klen, &p) != 0) {
        rfs_free(val);
        return RFS_ENOMEM;
    }
    rfs_free(p->val);
    p->val = val;
    p->vlen = vlen;
    p->deleted = 0;
    if (b->db->blobs != NULL && kv_blob_wanted(key, klen, vlen)) {
        kv_blobs_note_change(b->db->blobs);
    }
    return 0;
}

int kv_batch_put2(struct kv_batch *b, const void *key, size_t klen, const void *v1, size_t l1,
                  const void *v2, size_t l2)
{
    char *val = rfs_malloc(l1 + l2 > 0 ? l1 + l2 : 1);

    if (val == NULL) {
        return RFS_ENOMEM;
    }
    if (l1 > 0) {
        memcpy(val, v1, l1);
    }
    if (l2 > 0) {
        memcpy(val + l1, v2, l2);
    }
    return kv_batch_put_owned(b, key, klen, val, l1 + l2);
}

int kv_batch_put(struct kv_batch *b, const void *key, size_t klen, const void *val, size_t vlen)
{
    return kv_batch_put2(b, key, klen, val, vlen, NULL, 0);
}

int kv_batch_delete(struct kv_batch *b, const void *key, size_t klen)
{
    struct kv_pending *p;

    assert(b->wb != NULL);
    if (batch_entry(b, key, klen, &p) != 0) {
        return RFS_ENOMEM;
    }
    rfs_free(p->val);
    p->val = NULL;
    p->vlen = 0;
    p->deleted = 1;
    if (b->db->blobs != NULL && klen > 0 && ((const char *)key)[0] == KV_PREFIX_DATA) {
        kv_blobs_note_change(b->db->blobs);
    }
    return 0;
}

int kv_batch_get(struct kv_batch *b, const void *key, size_t klen, int *found, struct kv_value *out,
                 char *errmsg)
{
    struct kv_pending *p = batch_find(b, key, klen, rfs_crc32c(0, key, klen));
    char *err = NULL;
    size_t len = 0;
    char *val;

    *out = (struct kv_value){0};
    if (p != NULL) {
        *found = !p->deleted;
        out->data = p->val;
        out->len = p->vlen;
        return 0;
    }
    val = leveldb_get(b->db->db, b->db->ropts, key, klen, &len, &err);
    if (err != NULL) {
        return rfs_ldb_error(err, errmsg, "leveldb get");
    }
    *found = val != NULL;
    if (val != NULL && b->db->blobs != NULL && kv_blob_is_ptr(key, klen, val, len)) {
        int rv = kv_blobs_read(b->db->blobs, val, &out->own, &out->len, errmsg);
        leveldb_free(val);
        out->data = out->own;
        return rv;
    }
    out->data = val;
    out->len = len;
    out->ldb = val;
    return 0;
}

void kv_value_clear(struct kv_value *v)
{
    if (v->ldb != NULL) {
        leveldb_free(v->ldb);
    }
    rfs_free(v->own);
    *v = (struct kv_value){0};
}

int kv_batch_write(struct kv_batch *b, const leveldb_writeoptions_t *wopts, char *errmsg)
{
    struct kv_pending **sorted;
    char *err = NULL;
    size_t n;
    int rv;

    assert(b->wb != NULL);
    /* In key order, so that a file's blocks sit in order in the blob file too. */
    rv = kv_batch_sorted(b, &sorted, &n);
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "leveldb write: out of memory");
        return rv;
    }
    for (size_t i = 0; i < n; i++) {
        const struct kv_pending *p = sorted[i];
        unsigned char ptr[KV_BLOB_PTR_LEN];
        if (p->deleted) {
            leveldb_writebatch_delete(b->wb, p->key, p->klen);
        } else if (b->db->blobs != NULL && kv_blob_wanted(p->key, p->klen, p->vlen)) {
            rv = kv_blobs_append(b->db->blobs, p->val, p->vlen, ptr, errmsg);
            if (rv != 0) {
                break;
            }
            leveldb_writebatch_put(b->wb, p->key, p->klen, (const char *)ptr, sizeof ptr);
        } else {
            leveldb_writebatch_put(b->wb, p->key, p->klen, p->val, p->vlen);
        }
    }
    rfs_free(sorted);
    if (rv == 0 && b->db->blobs != NULL) {
        /* Before LevelDB holds a pointer, the bytes it points at are on disk. */
        rv = kv_blobs_sync(b->db->blobs, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    leveldb_write(b->db->db, wopts, b->wb, &err);
    if (err != NULL) {
        return rfs_ldb_error(err, errmsg, "leveldb write");
    }
    return 0;
}

static int pending_cmp(const void *a, const void *b)
{
    const struct kv_pending *x = *(struct kv_pending *const *)a;
    const struct kv_pending *y = *(struct kv_pending *const *)b;
    return kv_key_cmp(x->key, x->klen, y->key, y->klen);
}

int kv_batch_sorted(struct kv_batch *b, struct kv_pending ***out, size_t *n)
{
    struct kv_pending **arr;
    size_t k = 0;

    *out = NULL;
    *n = 0;
    if (b->count == 0) {
        return 0;
    }
    arr = rfs_malloc(b->count * sizeof *arr);
    if (arr == NULL) {
        return RFS_ENOMEM;
    }
    for (size_t i = 0; i < b->nslots; i++) {
        for (struct kv_pending *p = b->slots[i]; p != NULL; p = p->next) {
            arr[k++] = p;
        }
    }
    qsort(arr, k, sizeof *arr, pending_cmp);
    *out = arr;
    *n = k;
    return 0;
}
