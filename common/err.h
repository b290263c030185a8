/* Error codes shared by every module: 0 is success, positive codes are failures. */
#ifndef RFS_ERR_H
#define RFS_ERR_H

#define RFS_ERRMSG_SIZE 256

/* Some codes travel in replies: only ever append to this table. */
#define RFS_ERR_TABLE(X)                                                                           \
    X(RFS_ENOMEM, 1, "out of memory")                                                              \
    X(RFS_EIO, 2, "I/O error")                                                                     \
    X(RFS_ECORRUPT, 3, "data corrupted")                                                           \
    X(RFS_ENOTLEADER, 4, "not the leader")                                                         \
    X(RFS_EWRONGGROUP, 5, "wrong group for this key")                                              \
    X(RFS_EINVAL, 6, "invalid argument")                                                           \
    X(RFS_ENOSPC, 7, "no space left on device")                                                    \
    X(RFS_EBUSY, 8, "busy")                                                                        \
    X(RFS_ENOTFOUND, 9, "not found")                                                               \
    X(RFS_ESTOPPED, 10, "stopped")                                                                 \
    X(RFS_ECOMPACTED, 11, "log entries compacted")                                                 \
    X(RFS_EUNAVAIL, 12, "entries not available")                                                   \
    X(RFS_ECONFPENDING, 13, "a membership change is already pending")                              \
    X(RFS_ETRANSFER, 14, "leadership transfer in progress")                                        \
    X(RFS_ETIMEDOUT, 15, "timed out")                                                              \
    X(RFS_ETOOBIG, 16, "too big")                                                                  \
    X(RFS_ECONFLICT, 17, "condition failed: a key changed")                                        \
    X(RFS_ESTALE, 18, "stale request (session moved on)")                                          \
    X(RFS_EPROTO, 19, "malformed message")                                                         \
    X(RFS_ELOCKED, 20, "locked by a transaction in progress")

enum rfs_err {
#define RFS_ERR_ENUM(name, value, text) name = value,
    RFS_ERR_TABLE(RFS_ERR_ENUM)
#undef RFS_ERR_ENUM
};

/* Static text for a code; never NULL. */
const char *rfs_strerror(int rv);

/* Write "prefix: <old message>" into errmsg (RFS_ERRMSG_SIZE bytes), so context is
 * added as an error climbs rather than overwritten. */
void rfs_errmsg_wrapf(char *errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write a fresh message into errmsg. */
void rfs_errmsg_printf(char *errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
