/* A pointer and a length. Ownership is stated wherever one is passed. */
#ifndef RFS_BUF_H
#define RFS_BUF_H

#include <stddef.h>

struct rfs_buf {
    void *base;
    size_t len;
};

#endif
