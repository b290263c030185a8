/* The open files of a mount, by inode number (files.h).
 *
 * A hash of inode numbers picks one of MOUNT_FILE_BUCKETS lists, each under its own mutex.
 * Flushing an inode's handles keeps that mutex for the duration, which is what makes it safe
 * against a concurrent release: a handle is freed only after it left the list. Handles lock
 * their own mutex inside fs/file.c and never take a bucket's, so the order is always bucket,
 * then handle. */
#include "files.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"

static struct mount_file_bucket *bucket_of(struct mount_ctx *m, uint64_t ino)
{
    return &m->files[(ino ^ ino >> 48) % MOUNT_FILE_BUCKETS];
}

void mount_ctx_init(struct mount_ctx *m, struct rfs_fs *fs, double cache_timeout)
{
    memset(m, 0, sizeof *m);
    m->fs = fs;
    m->cache_timeout = cache_timeout;
    for (unsigned i = 0; i < MOUNT_FILE_BUCKETS; i++) {
        pthread_mutex_init(&m->files[i].mu, NULL);
    }
}

void mount_ctx_close(struct mount_ctx *m)
{
    for (unsigned i = 0; i < MOUNT_FILE_BUCKETS; i++) {
        struct mount_open_file *o;
        while ((o = m->files[i].head) != NULL) {
            m->files[i].head = o->next;
            rfs_warnf("mount: %llx still open at the end of the session: flushed and closed",
                      (unsigned long long)o->ino);
            rfs_file_release(o->f);
            rfs_free(o->lock_owners);
            rfs_free(o);
        }
        pthread_mutex_destroy(&m->files[i].mu);
    }
}

/* The bucket stays locked while its handles flush, so none can be released (freed) under
 * us; fs/file.h returns an error that dropped bytes only once, hence o->err. */
static int files_flush(struct mount_ctx *m, uint64_t ino, const struct mount_open_file *except,
                       bool *any)
{
    struct mount_file_bucket *b = bucket_of(m, ino);
    int rv = 0;
    bool found = false;
    pthread_mutex_lock(&b->mu);
    for (struct mount_open_file *o = b->head; o != NULL; o = o->next) {
        if (o->ino == ino && o != except) {
            int r = rfs_file_flush(o->f);
            found = true;
            rv = rv != 0 ? rv : r;
            if (r != 0 && r != -EIO && r != -EAGAIN && r != -ENOMEM && o->err == 0) {
                o->err = r;
            }
        }
    }
    pthread_mutex_unlock(&b->mu);
    if (any != NULL) {
        *any = found;
    }
    return rv;
}

int mount_files_flush_inode(struct mount_ctx *m, uint64_t ino, bool *any)
{
    return files_flush(m, ino, NULL, any);
}

int mount_files_flush_others(struct mount_ctx *m, const struct mount_open_file *self)
{
    return files_flush(m, self->ino, self, NULL);
}

struct mount_open_file *mount_file_open(struct mount_ctx *m, uint64_t ino, int flags)
{
    struct mount_file_bucket *b = bucket_of(m, ino);
    struct mount_open_file *o = rfs_calloc(1, sizeof *o);
    if (o == NULL) {
        return NULL;
    }
    o->f = rfs_file_open(m->fs, ino, flags);
    if (o->f == NULL) {
        rfs_free(o);
        return NULL;
    }
    o->ino = ino;
    pthread_mutex_lock(&b->mu);
    o->next = b->head;
    o->pprev = &b->head;
    if (b->head != NULL) {
        b->head->pprev = &o->next;
    }
    b->head = o;
    pthread_mutex_unlock(&b->mu);
    return o;
}

void mount_file_release(struct mount_ctx *m, struct mount_open_file *o)
{
    struct mount_file_bucket *b = bucket_of(m, o->ino);
    pthread_mutex_lock(&b->mu);
    *o->pprev = o->next;
    if (o->next != NULL) {
        o->next->pprev = o->pprev;
    }
    pthread_mutex_unlock(&b->mu);
    rfs_file_release(o->f);
    rfs_free(o->lock_owners);
    rfs_free(o);
}

/* Under the bucket's mu. */
static bool has_owner(const struct mount_open_file *o, uint64_t owner)
{
    for (unsigned i = 0; i < o->n_lock_owners; i++) {
        if (o->lock_owners[i] == owner) {
            return true;
        }
    }
    return false;
}

int mount_file_note_lock_owner(struct mount_ctx *m, struct mount_open_file *o, uint64_t owner)
{
    struct mount_file_bucket *b = bucket_of(m, o->ino);
    int rv = 0;
    pthread_mutex_lock(&b->mu);
    if (!has_owner(o, owner)) {
        if (o->n_lock_owners == o->cap_lock_owners) {
            unsigned cap = o->cap_lock_owners ? 2 * o->cap_lock_owners : 4;
            uint64_t *v = rfs_realloc(o->lock_owners, cap * sizeof *v);
            if (v == NULL) {
                rv = -ENOMEM;
            } else {
                o->lock_owners = v;
                o->cap_lock_owners = cap;
            }
        }
        if (rv == 0) {
            o->lock_owners[o->n_lock_owners++] = owner;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return rv;
}

int mount_file_solo_lock_owners(struct mount_ctx *m, struct mount_open_file *o, uint64_t **owners,
                                unsigned *n)
{
    struct mount_file_bucket *b = bucket_of(m, o->ino);
    int rv = 0;
    *owners = NULL;
    *n = 0;
    pthread_mutex_lock(&b->mu);
    if (o->n_lock_owners > 0) {
        *owners = rfs_malloc(o->n_lock_owners * sizeof **owners);
        rv = *owners == NULL ? -ENOMEM : 0;
    }
    for (unsigned i = 0; rv == 0 && i < o->n_lock_owners; i++) {
        bool elsewhere = false;
        for (const struct mount_open_file *p = b->head; p != NULL && !elsewhere; p = p->next) {
            elsewhere = p != o && p->ino == o->ino && has_owner(p, o->lock_owners[i]);
        }
        if (!elsewhere) {
            (*owners)[(*n)++] = o->lock_owners[i];
        }
    }
    pthread_mutex_unlock(&b->mu);
    return rv;
}

int mount_file_flush(struct mount_ctx *m, struct mount_open_file *o)
{
    struct mount_file_bucket *b = bucket_of(m, o->ino);
    int rv = rfs_file_flush(o->f);
    pthread_mutex_lock(&b->mu);
    if (rv == 0) {
        rv = o->err;
    }
    o->err = 0;
    pthread_mutex_unlock(&b->mu);
    return rv;
}
