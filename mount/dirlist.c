/* An open directory's listing (dirlist.h). */
#include "dirlist.h"

#include <errno.h>
#include <sys/stat.h>

#include "common/alloc.h"

/* Names fetched from the filesystem at a time. */
#define DIRLIST_FETCH 256

static void dirlist_truncate(struct mount_dirlist *d, size_t n)
{
    while (d->n > n) {
        rfs_free(d->e[--d->n].name);
    }
}

static int dirlist_append(struct mount_dirlist *d, const char *name, uint64_t ino, uint32_t mode)
{
    char *copy;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        struct mount_dirent *e = rfs_realloc(d->e, cap * sizeof *e);
        if (e == NULL) {
            return -ENOMEM;
        }
        d->e = e;
        d->cap = cap;
    }
    copy = rfs_strdup(name);
    if (copy == NULL) {
        return -ENOMEM;
    }
    d->e[d->n].name = copy;
    d->e[d->n].ino = ino;
    d->e[d->n].mode = mode;
    d->n++;
    return 0;
}

struct mount_dirlist *mount_dirlist_new(uint64_t ino)
{
    struct mount_dirlist *d = rfs_calloc(1, sizeof *d);
    if (d == NULL) {
        return NULL;
    }
    d->ino = ino;
    pthread_mutex_init(&d->mu, NULL);
    /* ".." gets the parent's inode when it is listed (mount_dirlist_get); until then, and if
     * the parent cannot be read, the directory's own. */
    if (dirlist_append(d, ".", ino, S_IFDIR) != 0 || dirlist_append(d, "..", ino, S_IFDIR) != 0) {
        mount_dirlist_free(d);
        return NULL;
    }
    return d;
}

void mount_dirlist_free(struct mount_dirlist *d)
{
    if (d == NULL) {
        return;
    }
    dirlist_truncate(d, 0);
    rfs_free(d->e);
    pthread_mutex_destroy(&d->mu);
    rfs_free(d);
}

static int dirlist_fetch_cb(void *data, const char *name, uint64_t ino, uint32_t mode)
{
    struct mount_dirlist *d = data;
    if (dirlist_append(d, name, ino, mode) != 0) {
        d->fetch_failed = true;
        return 1;
    }
    return ++d->fetched_now >= DIRLIST_FETCH;
}

/* Fetch the next names after the last one listed. */
static int dirlist_fetch(struct mount_dirlist *d, struct rfs_fs *fs)
{
    const char *after = d->n > 2 ? d->e[d->n - 1].name : NULL;
    size_t before = d->n;
    int rv;
    d->fetched_now = 0;
    d->fetch_failed = false;
    rv = rfs_fs_readdir(fs, d->ino, after, dirlist_fetch_cb, d);
    if (rv != 0) {
        dirlist_truncate(d, before);
        return rv;
    }
    if (d->fetch_failed) {
        /* keep what fitted; the next call fetches after it */
        return d->n > before ? 0 : -ENOMEM;
    }
    if (d->fetched_now < DIRLIST_FETCH) {
        d->done = true; /* fewer than asked: that was the end */
    }
    return 0;
}

int mount_dirlist_get(struct mount_dirlist *d, struct rfs_fs *fs, size_t i,
                      const struct mount_dirent **out)
{
    if (i == 0) {
        dirlist_truncate(d, 2);
        d->done = false;
    }
    if (i == 1) {
        /* read at every pass: a rename may have moved the directory since the last one */
        uint64_t parent;
        if (rfs_fs_parent(fs, d->ino, &parent) == 0) {
            d->e[1].ino = parent;
        }
    }
    while (i >= d->n) {
        int rv;
        if (d->done) {
            return 1;
        }
        rv = dirlist_fetch(d, fs);
        if (rv != 0) {
            return rv;
        }
    }
    *out = &d->e[i];
    return 0;
}
