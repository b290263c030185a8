/* The POSIX implementation of struct raft_store_io: each member calls its libc namesake. */
#include "log_store.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static int posix_open(void *data, const char *path, int flags, mode_t mode)
{
    (void)data;
    return open(path, flags, mode);
}

static ssize_t posix_pwrite(void *data, int fd, const void *buf, size_t len, off_t off)
{
    (void)data;
    return pwrite(fd, buf, len, off);
}

static ssize_t posix_pread(void *data, int fd, void *buf, size_t len, off_t off)
{
    (void)data;
    return pread(fd, buf, len, off);
}

static int posix_fsync(void *data, int fd)
{
    (void)data;
    return fsync(fd);
}

static int posix_fdatasync(void *data, int fd)
{
    (void)data;
    return fdatasync(fd);
}

static int posix_ftruncate(void *data, int fd, off_t len)
{
    (void)data;
    return ftruncate(fd, len);
}

static int posix_rename(void *data, const char *from, const char *to)
{
    (void)data;
    return rename(from, to);
}

static int posix_unlink(void *data, const char *path)
{
    (void)data;
    return unlink(path);
}

static int posix_close(void *data, int fd)
{
    (void)data;
    return close(fd);
}

static const struct raft_store_io store_io_posix = {
    .data = NULL,
    .open = posix_open,
    .pwrite = posix_pwrite,
    .pread = posix_pread,
    .fsync = posix_fsync,
    .fdatasync = posix_fdatasync,
    .ftruncate = posix_ftruncate,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .close = posix_close,
};

const struct raft_store_io *raft_store_io_posix(void)
{
    return &store_io_posix;
}
