/* The filesystem's key encodings; see keys.h. */
#include "keys.h"

#include <stdio.h>
#include <string.h>

#include "../common/bytes.h"

static size_t put_be64(char *out, uint64_t v)
{
    rfs_put_be64(out, v);
    return 8;
}

/* kind '{' pppp '}' */
static size_t head(char *out, char kind, uint16_t placement)
{
    out[0] = kind;
    snprintf(out + 1, 7, "{%04x}", placement);
    return 7;
}

size_t fs_key_inode(char *out, uint64_t ino)
{
    size_t n = head(out, 'i', fs_placement(ino));
    return n + put_be64(out + n, ino);
}

size_t fs_key_dir_first(char *out, uint64_t dir)
{
    size_t n = head(out, 'd', fs_placement(dir));
    return n + put_be64(out + n, dir);
}

size_t fs_key_dir_end(char *out, uint64_t dir)
{
    size_t n = fs_key_dir_first(out, dir);
    out[n++] = (char)0xff; /* names never start with 0xff... */
    out[n++] = (char)0xff; /* ...and no UTF-8 text does */
    return n;
}

size_t fs_key_dirent(char *out, uint64_t dir, const char *name, size_t nlen)
{
    size_t n = fs_key_dir_first(out, dir);
    memcpy(out + n, name, nlen);
    return n + nlen;
}

size_t fs_key_block(char *out, uint64_t ino, uint64_t block)
{
    int n = snprintf(out, FS_KEY_MAX, "c{%llx:%llx}", (unsigned long long)ino,
                     (unsigned long long)(block / FS_STRIPE_BLOCKS));
    return (size_t)n + put_be64(out + n, block);
}

size_t fs_key_locks(char *out, uint64_t ino)
{
    size_t n = head(out, 'k', fs_placement(ino));
    return n + put_be64(out + n, ino);
}

size_t fs_key_lease(char *out, uint64_t mount)
{
    size_t n = fs_key_lease_first(out);
    return n + put_be64(out + n, mount);
}

size_t fs_key_lease_first(char *out)
{
    memcpy(out, "s{leases}", 9);
    return 9;
}

size_t fs_key_lease_end(char *out)
{
    size_t n = fs_key_lease_first(out);
    memset(out + n, 0xff, 9); /* past every 8-byte id */
    return n + 9;
}

int fs_key_lease_mount(const void *key, size_t klen, uint64_t *mount)
{
    const unsigned char *k = key;
    if (klen != 17 || memcmp(k, "s{leases}", 9) != 0) {
        return -1;
    }
    *mount = rfs_get_be64(k + 9);
    return 0;
}

size_t fs_key_xattr_first(char *out, uint64_t ino)
{
    size_t n = head(out, 'x', fs_placement(ino));
    return n + put_be64(out + n, ino);
}

size_t fs_key_xattr_end(char *out, uint64_t ino)
{
    size_t n = fs_key_xattr_first(out, ino);
    out[n++] = (char)0xff;
    out[n++] = (char)0xff;
    return n;
}

size_t fs_key_xattr(char *out, uint64_t ino, const char *name, size_t nlen)
{
    size_t n = fs_key_xattr_first(out, ino);
    memcpy(out + n, name, nlen);
    return n + nlen;
}

int fs_key_dirent_name(const void *key, size_t klen, uint64_t dir, const char **name, size_t *nlen)
{
    char first[FS_KEY_MAX];
    size_t n = fs_key_dir_first(first, dir);
    if (klen < n || memcmp(key, first, n) != 0) {
        return -1;
    }
    *name = (const char *)key + n;
    *nlen = klen - n;
    return 0;
}

/* The inode number of a key `kind{pppp}` ino: 0, or -1 if key is not one. */
static int key_ino(const void *key, size_t klen, char kind, uint64_t *ino)
{
    const unsigned char *k = key;
    if (klen != 15 || k[0] != (unsigned char)kind || k[1] != '{' || k[6] != '}') {
        return -1;
    }
    *ino = rfs_get_be64(k + 7);
    return 0;
}

int fs_key_inode_ino(const void *key, size_t klen, uint64_t *ino)
{
    return key_ino(key, klen, 'i', ino);
}

size_t fs_key_orphan(char *out, uint64_t ino)
{
    size_t n = head(out, 'o', fs_placement(ino));
    return n + put_be64(out + n, ino);
}

int fs_key_orphan_ino(const void *key, size_t klen, uint64_t *ino)
{
    return key_ino(key, klen, 'o', ino);
}

size_t fs_key_reclaim(char *out, uint64_t ino, uint64_t nonce)
{
    size_t n = head(out, 'r', fs_placement(ino));
    n += put_be64(out + n, ino);
    return n + put_be64(out + n, nonce);
}

int fs_key_reclaim_ino(const void *key, size_t klen, uint64_t *ino)
{
    return klen == 23 ? key_ino(key, 15, 'r', ino) : -1;
}

size_t fs_key_holds_first(char *out, uint64_t ino)
{
    size_t n = head(out, 'h', fs_placement(ino));
    return n + put_be64(out + n, ino);
}

size_t fs_key_holds_end(char *out, uint64_t ino)
{
    return fs_key_holds_first(out, ino + 1);
}

size_t fs_key_hold(char *out, uint64_t ino, uint64_t mount)
{
    size_t n = fs_key_holds_first(out, ino);
    return n + put_be64(out + n, mount);
}

int fs_key_hold_mount(const void *key, size_t klen, uint64_t ino, uint64_t *mount)
{
    char first[FS_KEY_MAX];
    size_t n = fs_key_holds_first(first, ino);
    if (klen != n + 8 || memcmp(key, first, n) != 0) {
        return -1;
    }
    *mount = rfs_get_be64((const unsigned char *)key + n);
    return 0;
}
