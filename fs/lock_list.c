/* An inode's lock list; see lock_list.h.
 *
 * Encoding (the value of the inode's lock key, docs/locks.md): a format byte (1), the
 * number of locks (u32 big-endian), then per lock: mount, owner, start, end (u64 BE each),
 * pid (u32 BE), type (1 byte), kind (1 byte). */
#include "lock_list.h"

#include <errno.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"

#define FORMAT     1
#define HEAD_SIZE  5
#define ENTRY_SIZE 38

void fs_lock_list_clear(struct fs_lock_list *l)
{
    rfs_free(l->v);
    memset(l, 0, sizeof *l);
}

static int reserve(struct fs_lock_list *l, unsigned n)
{
    struct fs_lock *v;
    unsigned cap;
    if (n <= l->cap) {
        return 0;
    }
    cap = l->cap ? l->cap : 4;
    while (cap < n) {
        cap *= 2;
    }
    v = rfs_realloc(l->v, cap * sizeof *v);
    if (v == NULL) {
        return -ENOMEM;
    }
    l->v = v;
    l->cap = cap;
    return 0;
}

static uint64_t get_be(const unsigned char *p, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static unsigned char *put_be(unsigned char *p, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++) {
        p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    }
    return p + bytes;
}

int fs_lock_list_decode(struct fs_lock_list *l, const void *value, size_t len)
{
    const unsigned char *p = value;
    uint64_t n;
    if (len == 0) {
        return 0;
    }
    if (len < HEAD_SIZE || p[0] != FORMAT) {
        rfs_errorf("fs: a lock list of %zu bytes has an unknown format", len);
        return -EIO;
    }
    n = get_be(p + 1, 4);
    if (n > FS_LOCKS_MAX || len != HEAD_SIZE + n * ENTRY_SIZE) {
        rfs_errorf("fs: a lock list of %zu bytes says it holds %llu locks", len,
                   (unsigned long long)n);
        return -EIO;
    }
    if (reserve(l, (unsigned)n) != 0) {
        return -ENOMEM;
    }
    p += HEAD_SIZE;
    for (unsigned i = 0; i < n; i++, p += ENTRY_SIZE) {
        struct fs_lock *k = &l->v[i];
        k->mount = get_be(p, 8);
        k->owner = get_be(p + 8, 8);
        k->start = get_be(p + 16, 8);
        k->end = get_be(p + 24, 8);
        k->pid = (uint32_t)get_be(p + 32, 4);
        k->type = p[36];
        k->kind = p[37];
        if (k->start > k->end || k->end > FS_LOCK_EOF ||
            (k->type != FS_LOCK_READ && k->type != FS_LOCK_WRITE) ||
            (k->kind != FS_LOCK_POSIX && k->kind != FS_LOCK_FLOCK)) {
            rfs_errorf("fs: lock %u of a lock list is malformed", i);
            l->n = 0;
            return -EIO;
        }
    }
    l->n = (unsigned)n;
    return 0;
}

int fs_lock_list_encode(const struct fs_lock_list *l, void **buf, size_t *len)
{
    size_t size = HEAD_SIZE + (size_t)l->n * ENTRY_SIZE;
    unsigned char *b = rfs_malloc(size), *p;
    if (b == NULL) {
        return -ENOMEM;
    }
    b[0] = FORMAT;
    p = put_be(b + 1, l->n, 4);
    for (unsigned i = 0; i < l->n; i++) {
        const struct fs_lock *k = &l->v[i];
        p = put_be(p, k->mount, 8);
        p = put_be(p, k->owner, 8);
        p = put_be(p, k->start, 8);
        p = put_be(p, k->end, 8);
        p = put_be(p, k->pid, 4);
        *p++ = k->type;
        *p++ = k->kind;
    }
    *buf = b;
    *len = size;
    return 0;
}

static bool same_owner(const struct fs_lock *a, const struct fs_lock *b)
{
    return a->mount == b->mount && a->owner == b->owner && a->kind == b->kind;
}

static bool overlap(const struct fs_lock *a, const struct fs_lock *b)
{
    return a->start <= b->end && b->start <= a->end;
}

bool fs_lock_conflicts(const struct fs_lock *a, const struct fs_lock *b)
{
    return a->kind == b->kind && !same_owner(a, b) && overlap(a, b) &&
           (a->type == FS_LOCK_WRITE || b->type == FS_LOCK_WRITE);
}

const struct fs_lock *fs_lock_list_conflict(const struct fs_lock_list *l, const struct fs_lock *req)
{
    for (unsigned i = 0; i < l->n; i++) {
        if (fs_lock_conflicts(&l->v[i], req)) {
            return &l->v[i];
        }
    }
    return NULL;
}

/* Merge the locks of req's owner, kind and type that overlap or touch (POSIX coalesces
 * them: F_GETLK then reports one range). Ranges end at most at FS_LOCK_EOF, so end + 1
 * cannot wrap. */
static void merge_owner(struct fs_lock_list *l, const struct fs_lock *req)
{
    bool merged = true;
    while (merged) {
        merged = false;
        for (unsigned i = 0; i < l->n && !merged; i++) {
            struct fs_lock *a = &l->v[i];
            if (!same_owner(a, req) || a->type != req->type) {
                continue;
            }
            for (unsigned j = i + 1; j < l->n && !merged; j++) {
                struct fs_lock *b = &l->v[j];
                if (!same_owner(b, req) || b->type != req->type || a->start > b->end + 1 ||
                    b->start > a->end + 1) {
                    continue;
                }
                a->start = a->start < b->start ? a->start : b->start;
                a->end = a->end > b->end ? a->end : b->end;
                l->v[j] = l->v[--l->n];
                merged = true;
            }
        }
    }
}

int fs_lock_list_set(struct fs_lock_list *l, const struct fs_lock *req, bool unlock)
{
    struct fs_lock_list out = {0};
    /* at most one lock more per split lock, plus req */
    unsigned extra = 1;
    for (unsigned i = 0; i < l->n; i++) {
        extra += same_owner(&l->v[i], req) && overlap(&l->v[i], req);
    }
    if (reserve(&out, l->n + extra) != 0) {
        return -ENOMEM;
    }
    for (unsigned i = 0; i < l->n; i++) {
        const struct fs_lock *k = &l->v[i];
        if (!same_owner(k, req) || !overlap(k, req)) {
            out.v[out.n++] = *k;
            continue;
        }
        if (k->start < req->start) { /* the part before req's range stays */
            out.v[out.n] = *k;
            out.v[out.n++].end = req->start - 1;
        }
        if (k->end > req->end) { /* and the part after it */
            out.v[out.n] = *k;
            out.v[out.n++].start = req->end + 1;
        }
    }
    if (!unlock) {
        out.v[out.n++] = *req;
        merge_owner(&out, req);
    }
    if (out.n > FS_LOCKS_MAX) {
        fs_lock_list_clear(&out);
        return -ENOLCK;
    }
    fs_lock_list_clear(l);
    *l = out;
    return 0;
}

unsigned fs_lock_list_drop_owner(struct fs_lock_list *l, uint64_t mount, uint64_t owner,
                                 enum fs_lock_kind kind)
{
    unsigned kept = 0, n = l->n;
    for (unsigned i = 0; i < l->n; i++) {
        const struct fs_lock *k = &l->v[i];
        if (!(k->mount == mount && k->owner == owner && k->kind == kind)) {
            l->v[kept++] = *k;
        }
    }
    l->n = kept;
    return n - kept;
}

unsigned fs_lock_list_drop_mount(struct fs_lock_list *l, uint64_t mount)
{
    unsigned kept = 0, n = l->n;
    for (unsigned i = 0; i < l->n; i++) {
        if (l->v[i].mount != mount) {
            l->v[kept++] = l->v[i];
        }
    }
    l->n = kept;
    return n - kept;
}

bool fs_lock_list_has_owner(const struct fs_lock_list *l, uint64_t mount, uint64_t owner,
                            enum fs_lock_kind kind)
{
    for (unsigned i = 0; i < l->n; i++) {
        const struct fs_lock *k = &l->v[i];
        if (k->mount == mount && k->owner == owner && k->kind == kind) {
            return true;
        }
    }
    return false;
}
