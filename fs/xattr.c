/* Extended attributes: one key per attribute, x{pppp}ino name, holding the raw value.
 *
 * A change (set or remove) is read-then-transaction like every metadata change (fs/ns.c): read
 * the inode and the attribute's key with their versions, then one transaction that checks both,
 * writes or deletes the attribute and rewrites the inode with a new ctime. Since every change of
 * an inode's attributes rewrites the inode, the inode's version also stands for its set of
 * attributes: deleting the inode (fs/ns.c, drop_link) lists them first and deletes them in its
 * transaction, and an attribute set meanwhile makes that transaction fail and retry. The key
 * shares the inode's placement, so set and remove are one-group transactions.
 *
 * Reads (get, list) are plain reads of the keys, no transaction. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../common/log.h"
#include "../rpc/rpc.h"
#include "internal.h"
#include "txnb.h"

#define RETRIES 64
/* Attributes fetched per scan when listing (values come along: up to 64 KiB each). */
#define SCAN_LIMIT 64

static void backoff(int attempt)
{
    struct timespec ts = {0, (long)(attempt < 10 ? attempt : 10) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The namespaces stored; the kernel keeps "system.*" (ACLs) to itself unless asked. */
static const char *const prefixes[] = {"user.", "trusted.", "security."};

/* 0, -ERANGE (empty or too long), -EOPNOTSUPP (another namespace), -EINVAL (a bare prefix). */
static int check_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > FS_XATTR_NAME_MAX) {
        return -ERANGE;
    }
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t p = strlen(prefixes[i]);
        if (strncmp(name, prefixes[i], p) == 0) {
            return n > p ? 0 : -EINVAL;
        }
    }
    return -EOPNOTSUPP;
}

static bool is_trusted(const char *name)
{
    return strncmp(name, "trusted.", 8) == 0;
}

/* Whether cred may change the attribute name of inode a. */
static int may_change(const struct rfs_cred *cred, const struct rfs_attr *a, const char *name)
{
    if (cred == NULL || cred->uid == 0) {
        return 0;
    }
    if (is_trusted(name)) {
        return -EPERM;
    }
    return a->uid == cred->uid || rfs_cred_may(cred, a, W_OK) ? 0 : -EACCES;
}

/* The attribute's key version (0: absent), and its value if v is not NULL. */
static int xattr_read(struct rfs_fs *fs, uint64_t ino, const char *name, struct kv_client_value *v)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    int rv = kv_client_get(fs->kv, key, fs_key_xattr(key, ino, name, strlen(name)), v, errmsg);
    if (rv != 0) {
        rfs_warnf("fs: xattr of %llx: %s", (unsigned long long)ino, errmsg);
        return fs_errno(rv);
    }
    return 0;
}

/* One attempt at a change: value NULL removes. */
static int change_once(struct rfs_fs *fs, uint64_t ino, const char *name, const void *value,
                       size_t size, int flags, const struct rfs_cred *cred)
{
    struct fs_inode node;
    struct kv_client_value v;
    struct txnb t;
    char key[FS_KEY_MAX];
    size_t klen;
    uint64_t version;
    bool exists;
    int rv = fs_inode_get(fs, ino, &node);
    if (rv != 0) {
        return rv;
    }
    rv = may_change(cred, &node.a, name);
    if (rv == 0) {
        memset(&v, 0, sizeof v);
        rv = xattr_read(fs, ino, name, &v);
    }
    if (rv != 0) {
        fs_inode_clear(&node);
        return rv;
    }
    exists = v.found;
    version = v.found ? v.version : 0;
    kv_client_value_clear(&v);
    if (value == NULL || (flags & XATTR_REPLACE)) {
        rv = exists ? 0 : -ENODATA;
    } else if (flags & XATTR_CREATE) {
        rv = exists ? -EEXIST : 0;
    }
    if (rv != 0) {
        fs_inode_clear(&node);
        return rv;
    }
    txnb_init(&t);
    txnb_read(&t, key, fs_key_inode(key, ino), node.version);
    klen = fs_key_xattr(key, ino, name, strlen(name));
    txnb_read(&t, key, klen, version);
    if (value != NULL) {
        txnb_put(&t, key, klen, value, size);
    } else {
        txnb_del(&t, key, klen);
    }
    node.a.ctime_ns = fs_now_ns();
    txnb_put_inode(&t, &node);
    rv = txnb_commit(fs, &t);
    atomic_fetch_add(&fs->xattr_changes, 1);
    txnb_free(&t);
    fs_inode_clear(&node);
    return rv;
}

static int change(struct rfs_fs *fs, uint64_t ino, const char *name, const void *value, size_t size,
                  int flags, const struct rfs_cred *cred)
{
    int rv;
    for (int i = 0; i < RETRIES; i++) {
        rv = change_once(fs, ino, name, value, size, flags, cred);
        if (rv != -EAGAIN) {
            return rv;
        }
        backoff(i);
    }
    return -EIO;
}

int rfs_fs_setxattr(struct rfs_fs *fs, uint64_t ino, const char *name, const void *value,
                    size_t size, int flags, const struct rfs_cred *cred)
{
    int rv = check_name(name);
    if (rv != 0) {
        return rv;
    }
    if ((flags & ~(XATTR_CREATE | XATTR_REPLACE)) != 0 ||
        (flags & (XATTR_CREATE | XATTR_REPLACE)) == (XATTR_CREATE | XATTR_REPLACE)) {
        return -EINVAL;
    }
    if (size > FS_XATTR_SIZE_MAX) {
        return -E2BIG;
    }
    return change(fs, ino, name, value != NULL ? value : "", size, flags, cred);
}

int rfs_fs_removexattr(struct rfs_fs *fs, uint64_t ino, const char *name,
                       const struct rfs_cred *cred)
{
    int rv = check_name(name);
    if (rv != 0) {
        return rv;
    }
    return change(fs, ino, name, NULL, 0, 0, cred);
}

/* -ENOENT if inode ino does not exist, else 0 (or -EIO). */
static int inode_exists(struct rfs_fs *fs, uint64_t ino)
{
    struct fs_inode node;
    int rv = fs_inode_get(fs, ino, &node);
    if (rv == 0) {
        fs_inode_clear(&node);
    }
    return rv;
}

/* The kernel asks for security.capability before every write(2) (to drop file capabilities
 * on a write), which would cost two requests per write: an inode found without it is
 * remembered for FS_NOCAP_MS while no attribute changes through this filesystem, as the
 * kernel's attribute cache would. */
static bool is_capability(const char *name)
{
    return strcmp(name, "security.capability") == 0;
}

static struct fs_nocap *nocap_slot(struct rfs_fs *fs, uint64_t ino)
{
    return &fs->nocap[(ino * 0x9E3779B97F4A7C15ull >> 32) % FS_NOCAP_SLOTS];
}

static bool nocap_known(struct rfs_fs *fs, uint64_t ino)
{
    struct fs_nocap *n = nocap_slot(fs, ino);
    bool known;
    pthread_mutex_lock(&fs->nocap_mu);
    known = n->ino == ino && n->gen == atomic_load(&fs->xattr_changes) &&
            rpc_now_ms() - n->ms < FS_NOCAP_MS;
    pthread_mutex_unlock(&fs->nocap_mu);
    return known;
}

static void nocap_learn(struct rfs_fs *fs, uint64_t ino, uint64_t gen)
{
    struct fs_nocap *n = nocap_slot(fs, ino);
    pthread_mutex_lock(&fs->nocap_mu);
    *n = (struct fs_nocap){.ino = ino, .ms = rpc_now_ms(), .gen = gen};
    pthread_mutex_unlock(&fs->nocap_mu);
}

int rfs_fs_getxattr(struct rfs_fs *fs, uint64_t ino, const char *name, void *buf, size_t cap,
                    size_t *len)
{
    struct kv_client_value v;
    uint64_t gen = atomic_load(&fs->xattr_changes);
    int rv = check_name(name);
    if (rv != 0) {
        return rv;
    }
    if (is_capability(name) && nocap_known(fs, ino)) {
        return -ENODATA;
    }
    memset(&v, 0, sizeof v);
    rv = xattr_read(fs, ino, name, &v);
    if (rv != 0) {
        return rv;
    }
    if (!v.found) {
        kv_client_value_clear(&v);
        /* attributes go with their inode: none for an inode that is gone */
        rv = inode_exists(fs, ino);
        if (rv == 0 && is_capability(name)) {
            nocap_learn(fs, ino, gen);
        }
        return rv != 0 ? rv : -ENODATA;
    }
    *len = v.value.len;
    if (cap > 0 && cap < v.value.len) {
        rv = -ERANGE;
    } else if (cap > 0 && v.value.len > 0) {
        memcpy(buf, v.value.base, v.value.len);
    }
    kv_client_value_clear(&v);
    return rv;
}

int rfs_fs_listxattr(struct rfs_fs *fs, uint64_t ino, char *buf, size_t cap, size_t *len)
{
    char lo[FS_KEY_MAX + 1], hi[FS_KEY_MAX], first[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    size_t lolen = fs_key_xattr_first(lo, ino), hilen = fs_key_xattr_end(hi, ino);
    size_t flen = fs_key_xattr_first(first, ino), total = 0;
    int rv = inode_exists(fs, ino);
    if (rv != 0) {
        return rv;
    }
    for (;;) {
        struct kv_scan_result res;
        bool more;
        rv = kv_client_scan(fs->kv, lo, lolen, hi, hilen, SCAN_LIMIT, &res, errmsg);
        if (rv != 0) {
            rfs_warnf("fs: listing xattrs of %llx: %s", (unsigned long long)ino, errmsg);
            return fs_errno(rv);
        }
        for (size_t i = 0; i < res.n; i++) {
            const struct kv_pair *p = &res.pairs[i];
            size_t nlen;
            if (p->key.len <= flen || p->key.len > FS_KEY_MAX ||
                memcmp(p->key.base, first, flen) != 0) {
                continue; /* not in the range asked for: the server is wrong */
            }
            nlen = p->key.len - flen;
            if (cap > 0 && total + nlen + 1 <= cap) {
                memcpy(buf + total, (const char *)p->key.base + flen, nlen);
                buf[total + nlen] = '\0';
            }
            total += nlen + 1;
        }
        if (res.n > 0 && res.pairs[res.n - 1].key.len <= FS_KEY_MAX) {
            lolen = res.pairs[res.n - 1].key.len;
            memcpy(lo, res.pairs[res.n - 1].key.base, lolen);
            lo[lolen++] = '\0'; /* the first key after the last one */
        } else {
            res.more = false;
        }
        more = res.more && res.n > 0;
        kv_scan_result_clear(&res);
        if (!more) {
            break;
        }
    }
    *len = total;
    return cap > 0 && total > cap ? -ERANGE : 0;
}

/* A directory's parent is a field of its inode (kept by mkdir and rename, fs/ns.c). */
int rfs_fs_parent(struct rfs_fs *fs, uint64_t dir, uint64_t *parent)
{
    struct fs_inode node;
    int rv = fs_inode_get(fs, dir, &node);
    if (rv != 0) {
        return rv;
    }
    if (!S_ISDIR(node.a.mode)) {
        rv = -ENOTDIR;
    } else {
        *parent = node.parent != 0 ? node.parent : dir;
    }
    fs_inode_clear(&node);
    return rv;
}

/* Delete inode ino's extended attributes in t: they are listed now, and every change of them
 * rewrites the inode, so the inode's version in t's read set guards the list. */
int fs_xattr_drop_all(struct rfs_fs *fs, struct txnb *t, uint64_t ino)
{
    char lo[FS_KEY_MAX + 1], hi[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    size_t lolen = fs_key_xattr_first(lo, ino), hilen = fs_key_xattr_end(hi, ino);
    for (;;) {
        struct kv_scan_result res;
        bool more;
        int rv = kv_client_scan(fs->kv, lo, lolen, hi, hilen, 64, &res, errmsg);
        if (rv != 0) {
            rfs_warnf("fs: listing xattrs of %llx: %s", (unsigned long long)ino, errmsg);
            return fs_errno(rv);
        }
        for (size_t i = 0; i < res.n; i++) {
            txnb_del(t, res.pairs[i].key.base, res.pairs[i].key.len);
        }
        more = fs_scan_next(&res, lo, &lolen);
        kv_scan_result_clear(&res);
        if (!more) {
            return 0;
        }
    }
}

bool fs_scan_next(const struct kv_scan_result *res, char *lo, size_t *lolen)
{
    const struct kv_pair *last = res->n > 0 ? &res->pairs[res->n - 1] : NULL;
    if (!res->more || last == NULL || last->key.len > FS_KEY_MAX) {
        return false;
    }
    memcpy(lo, last->key.base, last->key.len);
    lo[last->key.len] = '\0'; /* the first key after it */
    *lolen = last->key.len + 1;
    return true;
}
