/* bench/passthrough: a minimal libfuse3 passthrough of a local directory, the baseline that
 * bench/fs_vs_passthrough.sh measures raftfs against.
 *
 *   passthrough SOURCE MOUNTPOINT [FUSE options, e.g. -f]
 *
 * High-level API (paths, not inodes): every op joins SOURCE and the path it is given and makes
 * the plain syscall, so what it costs beyond the local directory is the FUSE round trip and
 * libfuse's path lookup, nothing else. Attribute and entry caches keep libfuse's defaults
 * (1 s, as raftfs-mount's --cache-timeout default). With no arguments (as `make bench` runs
 * every bench binary) it prints a note and exits 0. */
#define FUSE_USE_VERSION 31

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

/* Set once in main, before fuse_main starts the threads; read-only afterwards. */
static char source_dir[PATH_MAX];

/* Join source_dir and a FUSE path (which starts with '/'); -ENAMETOOLONG if it does not fit. */
static int path_join(char *out, const char *path)
{
    int n = snprintf(out, PATH_MAX, "%s%s", source_dir, path);
    if (n < 0 || n >= PATH_MAX) {
        return -ENAMETOOLONG;
    }
    return 0;
}

static int pt_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    char full[PATH_MAX];
    int rv;
    if (fi != NULL) {
        return fstat((int)fi->fh, st) == -1 ? -errno : 0;
    }
    if ((rv = path_join(full, path)) != 0) {
        return rv;
    }
    return lstat(full, st) == -1 ? -errno : 0;
}

static int pt_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    char full[PATH_MAX];
    struct dirent *de;
    DIR *dir;
    int rv;
    (void)off;
    (void)fi;
    (void)flags;
    if ((rv = path_join(full, path)) != 0) {
        return rv;
    }
    if ((dir = opendir(full)) == NULL) {
        return -errno;
    }
    while ((de = readdir(dir)) != NULL) {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = de->d_ino;
        st.st_mode = (mode_t)de->d_type << 12;
        if (fill(buf, de->d_name, &st, 0, 0) != 0) {
            break;
        }
    }
    closedir(dir);
    return 0;
}

static int pt_open(const char *path, struct fuse_file_info *fi)
{
    char full[PATH_MAX];
    int fd, rv;
    if ((rv = path_join(full, path)) != 0) {
        return rv;
    }
    if ((fd = open(full, fi->flags)) == -1) {
        return -errno;
    }
    fi->fh = (uint64_t)fd;
    return 0;
}

static int pt_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    char full[PATH_MAX];
    int fd, rv;
    if ((rv = path_join(full, path)) != 0) {
        return rv;
    }
    if ((fd = open(full, fi->flags | O_CREAT, mode)) == -1) {
        return -errno;
    }
    fi->fh = (uint64_t)fd;
    return 0;
}

static int pt_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    ssize_t n;
    (void)path;
    n = pread((int)fi->fh, buf, size, off);
    return n == -1 ? -errno : (int)n;
}

static int pt_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    ssize_t n;
    (void)path;
    n = pwrite((int)fi->fh, buf, size, off);
    return n == -1 ? -errno : (int)n;
}

static int pt_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    close((int)fi->fh);
    return 0;
}

static int pt_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    int rv;
    (void)path;
    rv = datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh);
    return rv == -1 ? -errno : 0;
}

static int pt_unlink(const char *path)
{
    char full[PATH_MAX];
    int rv;
    if ((rv = path_join(full, path)) != 0) {
        return rv;
    }
    return unlink(full) == -1 ? -errno : 0;
}

static int pt_mkdir(const char *path, mode_t mode)
{
    char full[PATH_MAX];
    int rv;
    if ((rv = path_join(full, path)) != 0) {
        return rv;
    }
    return mkdir(full, mode) == -1 ? -errno : 0;
}

static int pt_rmdir(const char *path)
{
    char full[PATH_MAX];
    int rv;
    if ((rv = path_join(full, path)) != 0) {
        return rv;
    }
    return rmdir(full) == -1 ? -errno : 0;
}

static int pt_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    char full[PATH_MAX];
    int rv;
    if (fi != NULL) {
        return ftruncate((int)fi->fh, size) == -1 ? -errno : 0;
    }
    if ((rv = path_join(full, path)) != 0) {
        return rv;
    }
    return truncate(full, size) == -1 ? -errno : 0;
}

static int pt_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    char full[PATH_MAX];
    int rv;
    if (fi != NULL) {
        return futimens((int)fi->fh, tv) == -1 ? -errno : 0;
    }
    if ((rv = path_join(full, path)) != 0) {
        return rv;
    }
    return utimensat(AT_FDCWD, full, tv, AT_SYMLINK_NOFOLLOW) == -1 ? -errno : 0;
}

static int pt_statfs(const char *path, struct statvfs *sv)
{
    char full[PATH_MAX];
    int rv;
    if ((rv = path_join(full, path)) != 0) {
        return rv;
    }
    return statvfs(full, sv) == -1 ? -errno : 0;
}

static const struct fuse_operations pt_ops = {
    .getattr = pt_getattr,
    .readdir = pt_readdir,
    .open = pt_open,
    .create = pt_create,
    .read = pt_read,
    .write = pt_write,
    .release = pt_release,
    .fsync = pt_fsync,
    .unlink = pt_unlink,
    .mkdir = pt_mkdir,
    .rmdir = pt_rmdir,
    .truncate = pt_truncate,
    .utimens = pt_utimens,
    .statfs = pt_statfs,
};

int main(int argc, char *argv[])
{
    if (argc < 3) {
        printf("passthrough: a FUSE passthrough for bench/fs_vs_passthrough.sh; "
               "usage: passthrough SOURCE MOUNTPOINT [-f] (nothing to run without arguments)\n");
        return 0;
    }
    if (realpath(argv[1], source_dir) == NULL) {
        fprintf(stderr, "passthrough: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    /* fuse_main sees: argv[0] MOUNTPOINT [options]. */
    argv[1] = argv[0];
    return fuse_main(argc - 1, argv + 1, &pt_ops, NULL);
}
