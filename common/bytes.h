/* Fixed-width integers in explicit byte order, for disk and wire formats. */
#ifndef RFS_BYTES_H
#define RFS_BYTES_H

#include <stdint.h>

static inline void rfs_put_le32(void *p, uint32_t v)
{
    unsigned char *b = p;
    b[0] = (unsigned char)v;
    b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16);
    b[3] = (unsigned char)(v >> 24);
}

static inline uint32_t rfs_get_le32(const void *p)
{
    const unsigned char *b = p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline void rfs_put_le64(void *p, uint64_t v)
{
    rfs_put_le32(p, (uint32_t)v);
    rfs_put_le32((unsigned char *)p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t rfs_get_le64(const void *p)
{
    return (uint64_t)rfs_get_le32(p) | (uint64_t)rfs_get_le32((const unsigned char *)p + 4) << 32;
}

/* Big-endian, for keys and values that must sort (or are compared) as bytes. */
static inline void rfs_put_be64(void *p, uint64_t v)
{
    unsigned char *b = p;
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(v >> (56 - 8 * i));
    }
}

static inline uint64_t rfs_get_be64(const void *p)
{
    const unsigned char *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | b[i];
    }
    return v;
}

#endif
