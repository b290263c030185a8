/* Swapping a restored database into place, and finishing an interrupted swap at open.
 *
 * Happy path (kv_swap_commit), with dir/db closed and dir/db.new complete and synced:
 *   1. create dir/db.new.done, fsync it and dir      <- the commit point
 *   2. rename db -> db.old; rename db.new -> db; fsync dir
 *   3. unlink db.new.done; fsync dir
 *   4. remove db.old recursively
 * A crash anywhere leaves one of these states, which kv_swap_recover tells apart by the
 * marker (docs/kv.md has the table):
 *   - no marker: a db.new is incomplete (remove it); a db.old is left over from step 4
 *     (remove it), or, if db is missing, is the only database (rename it back);
 *   - marker: db.new is complete, so roll forward from wherever step 2 stopped, then
 *     do steps 3 and 4. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/log.h"
#include "internal.h"

struct swap_paths {
    char db[PATH_MAX];
    char db_new[PATH_MAX];
    char db_old[PATH_MAX];
    char done[PATH_MAX];
};

static int swap_paths_init(struct swap_paths *p, const char *dir, char *errmsg)
{
    if ((size_t)snprintf(p->db, sizeof p->db, "%s/%s", dir, KV_DB_NAME) >= sizeof p->db ||
        (size_t)snprintf(p->db_new, sizeof p->db_new, "%s/%s", dir, KV_DB_NEW_NAME) >=
            sizeof p->db_new ||
        (size_t)snprintf(p->db_old, sizeof p->db_old, "%s/%s", dir, KV_DB_OLD_NAME) >=
            sizeof p->db_old ||
        (size_t)snprintf(p->done, sizeof p->done, "%s/%s", dir, KV_DB_DONE_NAME) >=
            sizeof p->done) {
        rfs_errmsg_printf(errmsg, "%s: path too long", dir);
        return RFS_EINVAL;
    }
    return 0;
}

static int swap_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int swap_io_error(char *errmsg, const char *what, const char *path)
{
    rfs_errmsg_printf(errmsg, "%s %s: %s", what, path, strerror(errno));
    return RFS_EIO;
}

int kv_dir_sync(const char *path, char *errmsg)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rv = 0;

    if (fd < 0) {
        return swap_io_error(errmsg, "open", path);
    }
    if (fsync(fd) != 0) {
        rv = swap_io_error(errmsg, "fsync", path);
    }
    close(fd);
    return rv;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 ? -1 : 0;
}

int kv_path_remove(const char *path, char *errmsg)
{
    if (!swap_exists(path)) {
        return 0;
    }
    if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        return swap_io_error(errmsg, "remove", path);
    }
    return 0;
}

static int swap_rename(const char *from, const char *to, char *errmsg)
{
    if (rename(from, to) != 0) {
        rfs_errmsg_printf(errmsg, "rename %s to %s: %s", from, to, strerror(errno));
        return RFS_EIO;
    }
    return 0;
}

/* Steps 2 to 4, from any state the marker allows. */
static int swap_roll_forward(const struct swap_paths *p, const char *dir, char *errmsg)
{
    int rv = 0;

    if (swap_exists(p->db_new)) {
        if (swap_exists(p->db)) {
            /* db is the old state; a db.old beside it can only be an older leftover. */
            rv = kv_path_remove(p->db_old, errmsg);
            if (rv == 0) {
                rv = swap_rename(p->db, p->db_old, errmsg);
            }
        }
        if (rv == 0) {
            rv = swap_rename(p->db_new, p->db, errmsg);
        }
        if (rv == 0) {
            rv = kv_dir_sync(dir, errmsg);
        }
    }
    if (rv == 0 && unlink(p->done) != 0 && errno != ENOENT) {
        rv = swap_io_error(errmsg, "unlink", p->done);
    }
    if (rv == 0) {
        rv = kv_dir_sync(dir, errmsg);
    }
    if (rv == 0) {
        rv = kv_path_remove(p->db_old, errmsg);
    }
    return rv;
}

int kv_swap_commit(const char *dir, char *errmsg)
{
    struct swap_paths p;
    int fd, rv;

    rv = swap_paths_init(&p, dir, errmsg);
    if (rv != 0) {
        return rv;
    }
    fd = open(p.done, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return swap_io_error(errmsg, "create", p.done);
    }
    if (fsync(fd) != 0) {
        rv = swap_io_error(errmsg, "fsync", p.done);
    }
    close(fd);
    if (rv == 0) {
        rv = kv_dir_sync(dir, errmsg);
    }
    if (rv == 0) {
        rv = swap_roll_forward(&p, dir, errmsg);
    }
    return rv;
}

int kv_swap_recover(const char *dir, char *errmsg)
{
    struct swap_paths p;
    int rv;

    rv = swap_paths_init(&p, dir, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (swap_exists(p.done)) {
        rfs_warnf("kv: finishing an interrupted restore in %s", dir);
        return swap_roll_forward(&p, dir, errmsg);
    }
    if (swap_exists(p.db_new)) {
        rfs_warnf("kv: removing an incomplete restore %s", p.db_new);
        rv = kv_path_remove(p.db_new, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    if (swap_exists(p.db_old)) {
        if (swap_exists(p.db)) {
            return kv_path_remove(p.db_old, errmsg);
        }
        /* Not a state the protocol leaves, but db.old is then the only copy: keep it. */
        rfs_warnf("kv: %s missing, using %s", p.db, p.db_old);
        rv = swap_rename(p.db_old, p.db, errmsg);
        if (rv == 0) {
            rv = kv_dir_sync(dir, errmsg);
        }
    }
    return rv;
}
