/* A fixed set of threads taking jobs from one FIFO queue (see io_pool.h). */
#include "io_pool.h"

#include <errno.h>
#include <stdbool.h>

#include "../common/alloc.h"

struct io_job {
    int (*fn)(void *arg);
    void *arg;
    struct fs_io_batch *batch;
    struct io_job *next;
};

struct fs_io_pool {
    pthread_mutex_t mu;
    pthread_cond_t cond;        /* a job was queued, or stopping was set */
    struct io_job *head, *tail; /* protected by mu */
    bool stopping;              /* protected by mu */
    unsigned n_threads;
    pthread_t *threads;
};

void fs_io_batch_init(struct fs_io_batch *b)
{
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->pending = 0;
    b->err = 0;
}

void fs_io_batch_destroy(struct fs_io_batch *b)
{
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->mu);
}

int fs_io_batch_wait(struct fs_io_batch *b, unsigned max_pending)
{
    int err;
    pthread_mutex_lock(&b->mu);
    while (b->pending > max_pending) {
        pthread_cond_wait(&b->cond, &b->mu);
    }
    err = b->err;
    b->err = 0;
    pthread_mutex_unlock(&b->mu);
    return err;
}

static void batch_done(struct fs_io_batch *b, int rv)
{
    pthread_mutex_lock(&b->mu);
    if (rv != 0 && b->err == 0) {
        b->err = rv;
    }
    b->pending--;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
}

static void *worker(void *arg)
{
    struct fs_io_pool *p = arg;
    for (;;) {
        struct io_job *j;
        pthread_mutex_lock(&p->mu);
        while (p->head == NULL && !p->stopping) {
            pthread_cond_wait(&p->cond, &p->mu);
        }
        j = p->head;
        if (j == NULL) { /* stopping, and nothing left */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->head = j->next;
        if (p->head == NULL) {
            p->tail = NULL;
        }
        pthread_mutex_unlock(&p->mu);
        /* the batch may be freed as soon as batch_done returns: read it first */
        struct fs_io_batch *b = j->batch;
        int rv = j->fn(j->arg);
        rfs_free(j);
        batch_done(b, rv);
    }
}

int fs_io_pool_new(struct fs_io_pool **out, unsigned threads)
{
    struct fs_io_pool *p = rfs_calloc(1, sizeof *p);
    if (p == NULL) {
        return -ENOMEM;
    }
    threads = threads > 0 ? threads : 1;
    p->threads = rfs_calloc(threads, sizeof *p->threads);
    if (p->threads == NULL) {
        rfs_free(p);
        return -ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
            fs_io_pool_free(p);
            return -EAGAIN;
        }
        p->n_threads++;
    }
    *out = p;
    return 0;
}

void fs_io_pool_free(struct fs_io_pool *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_threads; i++) {
        pthread_join(p->threads[i], NULL);
    }
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    rfs_free(p->threads);
    rfs_free(p);
}

int fs_io_submit(struct fs_io_pool *p, struct fs_io_batch *b, int (*fn)(void *arg), void *arg)
{
    struct io_job *j = rfs_malloc(sizeof *j);
    if (j == NULL) {
        return -ENOMEM;
    }
    *j = (struct io_job){.fn = fn, .arg = arg, .batch = b};
    pthread_mutex_lock(&b->mu);
    b->pending++;
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_lock(&p->mu);
    if (p->tail != NULL) {
        p->tail->next = j;
    } else {
        p->head = j;
    }
    p->tail = j;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
    return 0;
}
