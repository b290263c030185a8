/* Outgoing connections that keep themselves connected.
 *
 * A peer is in one of three states: waiting for its retry timer, connecting (a non-blocking
 * connect() whose completion epoll reports as writable), or connected (p->conn). Every
 * failed attempt and every lost connection schedules the next attempt after a backoff that
 * doubles from 50 ms up to 2 s; the actual delay is drawn between half and all of it, so
 * peers that lost the same server do not come back in lockstep. A successful connection
 * resets the backoff and calls on_open.
 *
 * The address is resolved once, in rpc_peer_new(): name lookups block, and the loop must
 * not. rpc_peer_free() stops all callbacks at once; the structure itself is released at
 * the loop's safe point, after its connection, so it is safe from the peer's own
 * callbacks. */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/log.h"

#define PEER_BACKOFF_MIN_MS 50u
#define PEER_BACKOFF_MAX_MS 2000u

struct rpc_peer {
    struct rpc_loop *loop;
    struct rpc_handler h;
    struct sockaddr_in addr;
    char name[RPC_NAME_SIZE]; /* the address as given */
    struct rpc_io io;         /* the socket while connecting, fd -1 otherwise */
    struct rpc_conn *conn;    /* while connected (until its on_close) */
    struct rpc_timer *retry;  /* the next attempt, while waiting */
    unsigned failures;        /* attempts since the last successful connection */
    uint64_t rng;             /* xorshift64 state for the jitter */
    bool dead;                /* rpc_peer_free() was called */
    bool logged_down;         /* "cannot connect" was logged since the last success */
    struct rpc_link link;     /* loop->peers, then loop->dead_peers */
};

static void peer_connect(struct rpc_peer *p);

static uint64_t peer_random(struct rpc_peer *p)
{
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    return p->rng;
}

static void peer_retry_cb(struct rpc_timer *t, void *data)
{
    struct rpc_peer *p = data;
    (void)t;
    p->retry = NULL; /* a one-shot timer is released after this callback */
    peer_connect(p);
}

static void peer_schedule(struct rpc_peer *p)
{
    unsigned shift = p->failures < 8 ? p->failures : 8;
    uint64_t base = (uint64_t)PEER_BACKOFF_MIN_MS << shift;
    uint64_t delay;
    int rv;

    if (base > PEER_BACKOFF_MAX_MS) {
        base = PEER_BACKOFF_MAX_MS;
    }
    delay = base / 2 + peer_random(p) % (base / 2 + 1);
    if (p->failures < 1000) {
        p->failures++;
    }
    rv = rpc_timer_start(p->loop, delay, 0, peer_retry_cb, p, &p->retry);
    if (rv != 0) {
        p->retry = NULL;
        rfs_errorf("peer %s: cannot schedule a reconnect: %s; the peer stays down", p->name,
                   rfs_strerror(rv));
    }
}

static void peer_attempt_failed(struct rpc_peer *p, const char *what, int err)
{
    /* One line per outage at INFO; the rest of the retries at DEBUG. */
    if (!p->logged_down) {
        rfs_infof("peer %s: %s: %s; retrying with backoff", p->name, what, strerror(err));
        p->logged_down = true;
    } else {
        rfs_debugf("peer %s: %s: %s", p->name, what, strerror(err));
    }
    peer_schedule(p);
}

static void peer_connected(struct rpc_io *io, uint32_t events)
{
    struct rpc_peer *p = RPC_CONTAINER(io, struct rpc_peer, io);
    int fd = p->io.fd;
    int err = 0;
    socklen_t len = sizeof err;
    char ip_port[RPC_NAME_SIZE];
    struct rpc_conn *c;
    (void)events;

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
        err = errno;
    }
    rpc_io_del(p->loop, &p->io);
    p->io.fd = -1;
    if (err != 0) {
        close(fd);
        peer_attempt_failed(p, "connect", err);
        return;
    }
    rpc_addr_format(&p->addr, ip_port);
    c = rpc_conn_create(p->loop, fd, &p->h, ip_port, NULL, p);
    if (c == NULL) {
        close(fd);
        peer_attempt_failed(p, "setting up the connection", ENOMEM);
        return;
    }
    p->conn = c;
    p->failures = 0;
    p->logged_down = false;
    rfs_infof("peer %s: connected", p->name);
    rpc_conn_opened(c);
}

static void peer_connect(struct rpc_peer *p)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rv;

    if (fd < 0) {
        peer_attempt_failed(p, "socket", errno);
        return;
    }
    /* Even a connect() that completes at once is reported through EPOLLOUT, so on_open
     * always runs from the loop. */
    if (connect(fd, (const struct sockaddr *)&p->addr, sizeof p->addr) < 0 &&
        errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        peer_attempt_failed(p, "connect", err);
        return;
    }
    p->io.fd = fd;
    rv = rpc_io_add(p->loop, &p->io, EPOLLOUT);
    if (rv != 0) {
        close(fd);
        p->io.fd = -1;
        peer_attempt_failed(p, "epoll_ctl", rv);
    }
}

void rpc_peer_conn_closed(struct rpc_peer *p, struct rpc_conn *c)
{
    p->conn = NULL;
    if (p->dead) {
        return;
    }
    if (p->h.on_close != NULL) {
        p->h.on_close(c, p->h.data);
    }
    if (!p->dead) {
        peer_schedule(p);
    }
}

int rpc_peer_new(struct rpc_loop *l, const char *addr, const struct rpc_handler *h,
                 struct rpc_peer **out, char *errmsg)
{
    struct rpc_peer *p;
    struct timespec ts;
    int rv;

    p = rfs_calloc(1, sizeof *p);
    if (p == NULL) {
        rfs_errmsg_printf(errmsg, "peer %s: out of memory", addr);
        return RFS_ENOMEM;
    }
    rv = rpc_addr_parse(addr, &p->addr, errmsg);
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "peer");
        rfs_free(p);
        return rv;
    }
    p->loop = l;
    p->h = *h;
    p->io.fd = -1;
    p->io.cb = peer_connected;
    snprintf(p->name, sizeof p->name, "%s", addr);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    p->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)p;
    p->rng = p->rng * 0x9E3779B97F4A7C15u | 1u; /* xorshift state must not be zero */
    rpc_link_init(&p->link);
    rpc_link_push(&l->peers, &p->link);
    peer_connect(p);
    *out = p;
    return 0;
}

void rpc_peer_free(struct rpc_peer *p)
{
    if (p == NULL) {
        return;
    }
    p->dead = true;
    if (p->retry != NULL) {
        rpc_timer_stop(p->retry);
        p->retry = NULL;
    }
    if (p->io.fd >= 0) {
        rpc_io_del(p->loop, &p->io);
        close(p->io.fd);
        p->io.fd = -1;
    }
    if (p->conn != NULL) {
        /* p->conn is cleared when the connection is freed, before p is. */
        rpc_conn_close(p->conn, "peer freed");
    }
    rpc_link_remove(&p->link);
    rpc_link_push(&p->loop->dead_peers, &p->link);
}

void rpc_peer_free_all(struct rpc_loop *l)
{
    while (!rpc_link_empty(&l->peers)) {
        rpc_peer_free(RPC_CONTAINER(l->peers.next, struct rpc_peer, link));
    }
}

void rpc_peer_reap_all(struct rpc_loop *l)
{
    while (!rpc_link_empty(&l->dead_peers)) {
        struct rpc_peer *p = RPC_CONTAINER(l->dead_peers.next, struct rpc_peer, link);
        /* rpc_conn_reap_all() ran first and freed the connection rpc_peer_free() closed. */
        assert(p->conn == NULL);
        rpc_link_remove(&p->link);
        rfs_free(p);
    }
}

bool rpc_peer_connected(const struct rpc_peer *p)
{
    return p->conn != NULL && !rpc_conn_closing(p->conn);
}

int rpc_peer_send(struct rpc_peer *p, uint32_t type, uint64_t req_id, const void *payload,
                  size_t len)
{
    if (!rpc_peer_connected(p)) {
        return RFS_EUNAVAIL;
    }
    return rpc_conn_send(p->conn, type, req_id, payload, len);
}

void rpc_peer_flush(struct rpc_peer *p)
{
    if (rpc_peer_connected(p)) {
        rpc_conn_flush(p->conn);
    }
}

int rpc_peer_sendv(struct rpc_peer *p, uint32_t type, uint64_t req_id, const struct rfs_buf *parts,
                   unsigned n_parts)
{
    if (!rpc_peer_connected(p)) {
        return RFS_EUNAVAIL;
    }
    return rpc_conn_sendv(p->conn, type, req_id, parts, n_parts);
}
