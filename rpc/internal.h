/* Internal to rpc/: the loop structure and the calls between loop.c, conn.c, listen.c,
 * peer.c and addr.c. Other modules include only rpc/rpc.h. */
#ifndef RPC_INTERNAL_H
#define RPC_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

/* "255.255.255.255:65535" and a name given by the user, for logs. */
#define RPC_NAME_SIZE 128

/* An intrusive doubly linked list; a head and an unlinked node both point at themselves. */
struct rpc_link {
    struct rpc_link *prev, *next;
};

#define RPC_CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void rpc_link_init(struct rpc_link *n)
{
    n->prev = n;
    n->next = n;
}

static inline bool rpc_link_empty(const struct rpc_link *head)
{
    return head->next == head;
}

/* True if n is in some list. */
static inline bool rpc_link_linked(const struct rpc_link *n)
{
    return n->next != n;
}

static inline void rpc_link_push(struct rpc_link *head, struct rpc_link *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static inline void rpc_link_remove(struct rpc_link *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    rpc_link_init(n);
}

/* One file descriptor watched by the loop's epoll. epoll_event.data.ptr points here. */
struct rpc_io {
    int fd;          /* -1 once closed: events already returned for it are ignored */
    uint32_t events; /* the EPOLL* mask registered */
    void (*cb)(struct rpc_io *io, uint32_t events);
};

struct rpc_post;

struct rpc_loop {
    int epfd;
    struct rpc_io wake; /* eventfd: rpc_loop_post() and rpc_loop_stop() write to it */
    atomic_int stop;    /* set by rpc_loop_stop(), consumed at the end of an iteration */
    bool running;

    pthread_mutex_t post_mu;
    struct rpc_post *post_head, *post_tail; /* protected by post_mu */

    /* Timers: a binary min-heap on (when, seq). cap_timers >= live_timers, so a repeating
     * timer can always go back into the heap after its callback. */
    struct rpc_timer **heap;
    size_t n_timers;
    size_t cap_timers;
    size_t live_timers; /* in the heap or firing */
    uint64_t timer_seq;

    void (*before_sleep)(void *data);
    void *before_sleep_data;

    struct rpc_link conns;          /* every connection not yet freed */
    struct rpc_link writes;         /* connections with frames queued this iteration */
    struct rpc_link closing;        /* connections waiting for on_close and free */
    struct rpc_link listeners;      /* open listeners */
    struct rpc_link dead_listeners; /* closed, freed at the safe point */
    struct rpc_link peers;          /* live peers */
    struct rpc_link dead_peers;     /* freed by the user, released at the safe point */
};

/* loop.c: epoll registration. Return 0 or an errno value. */
int rpc_io_add(struct rpc_loop *l, struct rpc_io *io, uint32_t events);
int rpc_io_set(struct rpc_loop *l, struct rpc_io *io, uint32_t events);
void rpc_io_del(struct rpc_loop *l, struct rpc_io *io);

/* conn.c */
/* Wrap a connected non-blocking socket (taken over only on success; NULL on failure,
 * the caller closes fd). h is copied. ls or p (or neither) names the owner. */
struct rpc_conn *rpc_conn_create(struct rpc_loop *l, int fd, const struct rpc_handler *h,
                                 const char *name, struct rpc_listener *ls, struct rpc_peer *p);
/* Call on_open; from the loop, after rpc_conn_create(). */
void rpc_conn_opened(struct rpc_conn *c);
bool rpc_conn_closing(const struct rpc_conn *c);
/* Write the output of every connection that queued frames. */
void rpc_conn_flush_all(struct rpc_loop *l);
/* The safe point: close, notify and free every connection marked closing. */
void rpc_conn_reap_all(struct rpc_loop *l);
/* Mark closing every connection accepted by ls (NULL: every connection), without on_close. */
void rpc_conn_close_owned(struct rpc_loop *l, const struct rpc_listener *ls, const char *why);

/* listen.c */
void rpc_listener_close_all(struct rpc_loop *l);
void rpc_listener_reap_all(struct rpc_loop *l);

/* peer.c */
/* p's connection c is being freed: notify the application and schedule a reconnect. */
void rpc_peer_conn_closed(struct rpc_peer *p, struct rpc_conn *c);
void rpc_peer_free_all(struct rpc_loop *l);
void rpc_peer_reap_all(struct rpc_loop *l);

/* addr.c: "a.b.c.d:port" into buf (RPC_NAME_SIZE bytes). */
void rpc_addr_format(const struct sockaddr_in *sa, char *buf);

#endif
