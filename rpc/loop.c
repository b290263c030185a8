/* The event loop: epoll for sockets, a min-heap of timers whose earliest deadline becomes
 * the epoll_wait timeout, and an eventfd that wakes the loop for rpc_loop_post() and
 * rpc_loop_stop().
 *
 * One iteration of rpc_loop_run():
 *   1. wait for events; the timeout is the next timer, or 0 when work is already pending
 *      (connections to flush or to free, a stop request);
 *   2. dispatch socket events: for a connection, reads before writes;
 *   3. fire the timers that are due (not those started during this pass, so a 0 ms timer
 *      re-armed from its own callback cannot starve the sockets);
 *   4. run the callbacks posted so far;
 *   5. call before_sleep, where a server builds one Raft ready batch for all of the above;
 *   6. flush every connection that queued frames in steps 2-5: all its frames in one write;
 *   7. the safe point: connections closed during the iteration are closed for real, get
 *      on_close and are freed; then closed listeners and freed peers are released.
 * Nothing registered with epoll is freed before step 7, so an event that epoll_wait already
 * returned never points at freed memory: a closed object is skipped, not dereferenced
 * after free (the Redis freeClientAsync idea). */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/log.h"

#define LOOP_MAX_EVENTS 256

struct rpc_post {
    void (*cb)(void *data);
    void *data;
    struct rpc_post *next;
};

struct rpc_timer {
    struct rpc_loop *loop;
    uint64_t when;   /* rpc_now_ms() deadline */
    uint64_t repeat; /* 0: one-shot */
    uint64_t seq;    /* start order: equal deadlines fire first-started first */
    size_t idx;      /* position in loop->heap; SIZE_MAX while firing */
    rpc_timer_cb cb;
    void *data;
    bool stopped; /* rpc_timer_stop() from its own callback */
};

uint64_t rpc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- epoll registration --- */

int rpc_io_add(struct rpc_loop *l, struct rpc_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0) {
        return errno;
    }
    io->events = events;
    return 0;
}

int rpc_io_set(struct rpc_loop *l, struct rpc_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (io->events == events) {
        return 0;
    }
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0) {
        return errno;
    }
    io->events = events;
    return 0;
}

void rpc_io_del(struct rpc_loop *l, struct rpc_io *io)
{
    if (io->fd >= 0) {
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    }
    io->events = 0;
}

/* --- the timer heap --- */

static bool timer_before(const struct rpc_timer *a, const struct rpc_timer *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_place(struct rpc_loop *l, size_t i, struct rpc_timer *t)
{
    l->heap[i] = t;
    t->idx = i;
}

static void heap_up(struct rpc_loop *l, size_t i)
{
    struct rpc_timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, l->heap[parent])) {
            break;
        }
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
}

static void heap_down(struct rpc_loop *l, size_t i)
{
    struct rpc_timer *t = l->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->n_timers) {
            break;
        }
        if (child + 1 < l->n_timers && timer_before(l->heap[child + 1], l->heap[child])) {
            child++;
        }
        if (!timer_before(l->heap[child], t)) {
            break;
        }
        heap_place(l, i, l->heap[child]);
        i = child;
    }
    heap_place(l, i, t);
}

static void heap_push(struct rpc_loop *l, struct rpc_timer *t)
{
    assert(l->n_timers < l->cap_timers);
    l->heap[l->n_timers] = t;
    t->idx = l->n_timers++;
    heap_up(l, t->idx);
}

static void heap_remove(struct rpc_loop *l, struct rpc_timer *t)
{
    size_t i = t->idx;
    struct rpc_timer *last = l->heap[--l->n_timers];
    t->idx = SIZE_MAX;
    if (last == t) {
        return;
    }
    heap_place(l, i, last);
    if (i > 0 && timer_before(last, l->heap[(i - 1) / 2])) {
        heap_up(l, i);
    } else {
        heap_down(l, i);
    }
}

int rpc_timer_start(struct rpc_loop *l, uint64_t after_ms, uint64_t repeat_ms, rpc_timer_cb cb,
                    void *data, struct rpc_timer **out)
{
    struct rpc_timer *t;
    uint64_t now = rpc_now_ms();

    if (l->live_timers == l->cap_timers) {
        size_t cap = l->cap_timers ? l->cap_timers * 2 : 16;
        struct rpc_timer **heap = rfs_realloc(l->heap, cap * sizeof *heap);
        if (heap == NULL) {
            return RFS_ENOMEM;
        }
        l->heap = heap;
        l->cap_timers = cap;
    }
    t = rfs_calloc(1, sizeof *t);
    if (t == NULL) {
        return RFS_ENOMEM;
    }
    t->loop = l;
    t->when = after_ms > UINT64_MAX - now ? UINT64_MAX : now + after_ms;
    t->repeat = repeat_ms;
    t->seq = l->timer_seq++;
    t->cb = cb;
    t->data = data;
    l->live_timers++;
    heap_push(l, t);
    if (out != NULL) {
        *out = t;
    }
    return 0;
}

static void timer_release(struct rpc_timer *t)
{
    t->loop->live_timers--;
    rfs_free(t);
}

void rpc_timer_stop(struct rpc_timer *t)
{
    if (t == NULL) {
        return;
    }
    if (t->idx == SIZE_MAX) {
        /* Firing: loop_fire_timers() releases it when the callback returns. */
        t->stopped = true;
        return;
    }
    heap_remove(t->loop, t);
    timer_release(t);
}

static void loop_fire_timers(struct rpc_loop *l)
{
    uint64_t now = rpc_now_ms();
    uint64_t seq_limit = l->timer_seq;

    while (l->n_timers > 0) {
        struct rpc_timer *t = l->heap[0];
        /* The heap is ordered by (when, seq), and a timer started during this pass has a
         * deadline >= now: so once the top is new or not yet due, nothing else is due. */
        if (t->when > now || t->seq >= seq_limit) {
            break;
        }
        heap_remove(l, t);
        t->cb(t, t->data);
        if (t->stopped || t->repeat == 0) {
            timer_release(t);
            continue;
        }
        t->when = t->repeat > UINT64_MAX - now ? UINT64_MAX : now + t->repeat;
        t->seq = l->timer_seq++;
        heap_push(l, t);
    }
}

/* --- posts and wake-ups --- */

static void loop_wake(struct rpc_loop *l)
{
    uint64_t one = 1;
    /* Fails only if the counter would overflow, and then the loop is awake anyway. */
    ssize_t n = write(l->wake.fd, &one, sizeof one);
    (void)n;
}

static void loop_wake_cb(struct rpc_io *io, uint32_t events)
{
    uint64_t v;
    ssize_t n = read(io->fd, &v, sizeof v);
    (void)n;
    (void)events;
}

int rpc_loop_post(struct rpc_loop *l, void (*cb)(void *data), void *data)
{
    struct rpc_post *p = rfs_malloc(sizeof *p);
    if (p == NULL) {
        return RFS_ENOMEM;
    }
    p->cb = cb;
    p->data = data;
    p->next = NULL;
    pthread_mutex_lock(&l->post_mu);
    if (l->post_tail != NULL) {
        l->post_tail->next = p;
    } else {
        l->post_head = p;
    }
    l->post_tail = p;
    pthread_mutex_unlock(&l->post_mu);
    loop_wake(l);
    return 0;
}

static void loop_run_posts(struct rpc_loop *l)
{
    struct rpc_post *p;

    pthread_mutex_lock(&l->post_mu);
    p = l->post_head;
    l->post_head = NULL;
    l->post_tail = NULL;
    pthread_mutex_unlock(&l->post_mu);
    /* Callbacks posted by these callbacks run in the next iteration. */
    while (p != NULL) {
        struct rpc_post *next = p->next;
        void (*cb)(void *) = p->cb;
        void *data = p->data;
        rfs_free(p);
        cb(data);
        p = next;
    }
}

void rpc_loop_stop(struct rpc_loop *l)
{
    atomic_store(&l->stop, 1);
    loop_wake(l);
}

void rpc_loop_set_before_sleep(struct rpc_loop *l, void (*cb)(void *data), void *data)
{
    l->before_sleep = cb;
    l->before_sleep_data = data;
}

/* --- the loop --- */

int rpc_loop_new(struct rpc_loop **out, char *errmsg)
{
    struct rpc_loop *l = rfs_calloc(1, sizeof *l);
    int rv;

    if (l == NULL) {
        rfs_errmsg_printf(errmsg, "event loop: out of memory");
        return RFS_ENOMEM;
    }
    l->wake.fd = -1;
    rpc_link_init(&l->conns);
    rpc_link_init(&l->writes);
    rpc_link_init(&l->closing);
    rpc_link_init(&l->listeners);
    rpc_link_init(&l->dead_listeners);
    rpc_link_init(&l->peers);
    rpc_link_init(&l->dead_peers);
    atomic_init(&l->stop, 0);
    rv = pthread_mutex_init(&l->post_mu, NULL);
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "event loop: mutex: %s", strerror(rv));
        rfs_free(l);
        return RFS_EIO;
    }
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        rfs_errmsg_printf(errmsg, "event loop: epoll_create1: %s", strerror(errno));
        goto err_after_mutex;
    }
    l->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake.fd < 0) {
        rfs_errmsg_printf(errmsg, "event loop: eventfd: %s", strerror(errno));
        goto err_after_epoll;
    }
    l->wake.cb = loop_wake_cb;
    rv = rpc_io_add(l, &l->wake, EPOLLIN);
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "event loop: epoll_ctl: %s", strerror(rv));
        goto err_after_eventfd;
    }
    *out = l;
    return 0;

err_after_eventfd:
    close(l->wake.fd);
err_after_epoll:
    close(l->epfd);
err_after_mutex:
    pthread_mutex_destroy(&l->post_mu);
    rfs_free(l);
    return RFS_EIO;
}

static void loop_reap(struct rpc_loop *l)
{
    /* Connections first: a freed peer or closed listener is released only after the
     * connections that point at it. */
    rpc_conn_reap_all(l);
    rpc_listener_reap_all(l);
    rpc_peer_reap_all(l);
}

static int loop_timeout(struct rpc_loop *l)
{
    uint64_t now, when;

    if (!rpc_link_empty(&l->writes) || !rpc_link_empty(&l->closing) ||
        !rpc_link_empty(&l->dead_listeners) || !rpc_link_empty(&l->dead_peers) ||
        atomic_load(&l->stop)) {
        return 0;
    }
    if (l->n_timers == 0) {
        return -1;
    }
    now = rpc_now_ms();
    when = l->heap[0]->when;
    if (when <= now) {
        return 0;
    }
    return when - now > INT_MAX ? INT_MAX : (int)(when - now);
}

int rpc_loop_run(struct rpc_loop *l)
{
    struct epoll_event evs[LOOP_MAX_EVENTS];
    int rv = 0;

    assert(!l->running);
    l->running = true;
    for (;;) {
        int n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, loop_timeout(l));
        if (n < 0) {
            if (errno != EINTR) {
                rfs_errorf("event loop: epoll_wait: %s", strerror(errno));
                rv = RFS_EIO;
                break;
            }
            n = 0;
        }
        for (int i = 0; i < n; i++) {
            struct rpc_io *io = evs[i].data.ptr;
            if (io->fd >= 0) {
                io->cb(io, evs[i].events);
            }
        }
        loop_fire_timers(l);
        loop_run_posts(l);
        if (l->before_sleep != NULL) {
            l->before_sleep(l->before_sleep_data);
        }
        rpc_conn_flush_all(l);
        loop_reap(l);
        if (atomic_exchange(&l->stop, 0)) {
            break;
        }
    }
    l->running = false;
    return rv;
}

void rpc_loop_free(struct rpc_loop *l)
{
    struct rpc_post *p;

    if (l == NULL) {
        return;
    }
    assert(!l->running);
    rpc_listener_close_all(l);
    rpc_peer_free_all(l);
    /* No callbacks from here on: the application may already have freed their data. */
    rpc_conn_close_owned(l, NULL, "event loop freed");
    loop_reap(l);
    while (l->n_timers > 0) {
        struct rpc_timer *t = l->heap[l->n_timers - 1];
        heap_remove(l, t);
        timer_release(t);
    }
    rfs_free(l->heap);
    p = l->post_head;
    while (p != NULL) {
        struct rpc_post *next = p->next;
        rfs_free(p);
        p = next;
    }
    close(l->wake.fd);
    close(l->epfd);
    pthread_mutex_destroy(&l->post_mu);
    rfs_free(l);
}
