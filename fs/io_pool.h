/* fs/io_pool.h: a few threads that run the filesystem's cluster requests in the background,
 * so that one caller can have several in flight: write-behind of open files' blocks and
 * read-ahead of the stripes after a sequential reader (fs/file.c). The KV client is
 * thread-safe and pipelines concurrent requests over one connection per server, so N jobs
 * in flight are N requests in flight, and the servers batch them into fewer log writes.
 *
 * A job is a function and its argument, run once on a pool thread; it belongs to a batch,
 * which counts the jobs not yet finished and keeps the first error any of them returned,
 * so that its owner can wait for some or all of them. The job's function owns its argument
 * (frees it). Every call is thread-safe. */
#ifndef FS_IO_POOL_H
#define FS_IO_POOL_H

#include <pthread.h>

struct fs_io_pool;

/* Jobs of one owner. Zero it with fs_io_batch_init; destroy only once fs_io_batch_wait(b, 0)
 * has returned (no job of it is queued or running). */
struct fs_io_batch {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned pending; /* submitted, not finished; protected by mu */
    int err;          /* the first non-zero return of a job since the last take; by mu */
};
void fs_io_batch_init(struct fs_io_batch *b);
void fs_io_batch_destroy(struct fs_io_batch *b);

/* Wait until at most max_pending jobs of b are unfinished. Returns the first error a job of
 * b returned since the last call that took it (and takes it: it is returned once), else 0. */
int fs_io_batch_wait(struct fs_io_batch *b, unsigned max_pending);

/* Start threads workers (at least 1). Returns 0 or -ENOMEM/-EAGAIN. */
int fs_io_pool_new(struct fs_io_pool **out, unsigned threads);

/* Run every queued job, then stop the threads and free the pool. NULL is a no-op. */
void fs_io_pool_free(struct fs_io_pool *p);

/* Queue fn(arg) on a pool thread as a job of b; its return value (0 or a negative errno)
 * goes to b. Returns 0, or -ENOMEM (then fn was not called and arg is still the caller's). */
int fs_io_submit(struct fs_io_pool *p, struct fs_io_batch *b, int (*fn)(void *arg), void *arg);

#endif
