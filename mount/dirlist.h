/* mount/dirlist.h: an open directory's listing, for FUSE readdir offsets that stay valid
 * while the directory changes.
 *
 * The listing keeps the names seen so far, in order, with "." and ".." first: entry i goes
 * to the kernel with offset i + 1 (where the next call resumes). More names are fetched
 * (rfs_fs_readdir, after the last name listed) when the kernel reads past the end;
 * offset 0 (a fresh listing or rewinddir) starts again. */
#ifndef MOUNT_DIRLIST_H
#define MOUNT_DIRLIST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs/fs.h"

struct mount_dirent {
    char *name; /* rfs_malloc'd */
    uint64_t ino;
    uint32_t mode;
};

struct mount_dirlist {
    uint64_t ino;
    pthread_mutex_t mu;     /* protects the fields below (the kernel may overlap readdirs) */
    struct mount_dirent *e; /* e[0] ".", e[1] "..", then the names fetched so far */
    size_t n, cap;
    bool done;            /* the listing reached the end of the directory */
    unsigned fetched_now; /* names added by the fetch in progress */
    bool fetch_failed;    /* the fetch in progress ran out of memory */
};

/* A listing of directory ino with "." and ".." in it; NULL when out of memory. */
struct mount_dirlist *mount_dirlist_new(uint64_t ino);
void mount_dirlist_free(struct mount_dirlist *d);

/* With d->mu held: entry i in *out (valid until the next call on d), fetching names from fs
 * as needed. Returns 0, 1 past the last entry, or a negative errno. Entry 0 starts a fresh
 * listing. */
int mount_dirlist_get(struct mount_dirlist *d, struct rfs_fs *fs, size_t i,
                      const struct mount_dirent **out);

#endif
