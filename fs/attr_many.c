/* rfs_fs_getattr_many: the reads of a batch of inodes on the I/O pool, in flight together
 * (see fs.h), so that a listing with attributes costs about one round trip per batch rather
 * than one per name. */
#include <errno.h>

#include "../common/alloc.h"
#include "internal.h"
#include "io_pool.h"

struct getattr_job {
    struct rfs_fs *fs;
    uint64_t ino;
    struct rfs_attr *out;
    int *rv;
};

static int getattr_run(void *arg)
{
    struct getattr_job *j = arg;
    *j->rv = rfs_fs_getattr(j->fs, j->ino, j->out);
    rfs_free(j);
    return 0;
}

void rfs_fs_getattr_many(struct rfs_fs *fs, const uint64_t *inos, size_t n, struct rfs_attr *out,
                         int *rvs)
{
    struct fs_io_batch b;
    fs_io_batch_init(&b);
    for (size_t i = 0; i < n; i++) {
        struct getattr_job *j = rfs_malloc(sizeof *j);
        if (j != NULL) {
            *j = (struct getattr_job){.fs = fs, .ino = inos[i], .out = &out[i], .rv = &rvs[i]};
            if (fs_io_submit(fs->io, &b, getattr_run, j) == 0) {
                continue;
            }
            rfs_free(j);
        }
        rvs[i] = rfs_fs_getattr(fs, inos[i], &out[i]); /* out of memory: read it here */
    }
    (void)fs_io_batch_wait(&b, 0);
    fs_io_batch_destroy(&b);
}
