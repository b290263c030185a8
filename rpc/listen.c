/* Listening sockets: accept connections and hand them to conn.c with the listener's
 * handler. Closing a listener also closes the connections it accepted, without calling
 * back (a server that stops listening is going away and may free its state right after);
 * the listener itself is freed at the loop's safe point, so rpc_listener_close() is safe
 * from any callback, including an on_open of its own. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/log.h"

#define LISTEN_BACKLOG 511
/* Connections accepted per readiness event, so a flood cannot starve everything else. */
#define LISTEN_ACCEPT_BATCH 64

struct rpc_listener {
    struct rpc_loop *loop;
    struct rpc_io io;
    struct rpc_handler h;
    struct rpc_link link; /* loop->listeners, then loop->dead_listeners */
    uint16_t port;
    char name[RPC_NAME_SIZE];
};

static void listener_accept(struct rpc_io *io, uint32_t events)
{
    struct rpc_listener *ls = RPC_CONTAINER(io, struct rpc_listener, io);
    (void)events;

    for (int i = 0; i < LISTEN_ACCEPT_BATCH && ls->io.fd >= 0; i++) {
        struct sockaddr_in sa;
        socklen_t salen = sizeof sa;
        char name[RPC_NAME_SIZE];
        struct rpc_conn *c;
        int fd = accept4(ls->io.fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE and friends: the socket stays readable and we retry next pass. */
                rfs_warnf("listener %s: accept: %s", ls->name, strerror(errno));
            }
            return;
        }
        rpc_addr_format(&sa, name);
        c = rpc_conn_create(ls->loop, fd, &ls->h, name, ls, NULL);
        if (c == NULL) {
            rfs_errorf("listener %s: dropping connection from %s: out of memory", ls->name, name);
            close(fd);
            continue;
        }
        rfs_debugf("listener %s: accepted connection from %s", ls->name, name);
        /* on_open may close the listener: the loop condition sees io.fd == -1. */
        rpc_conn_opened(c);
    }
}

int rpc_listen(struct rpc_loop *l, const char *addr, const struct rpc_handler *h,
               struct rpc_listener **out, char *errmsg)
{
    struct sockaddr_in sa;
    socklen_t salen = sizeof sa;
    struct rpc_listener *ls;
    int one = 1;
    int rv;

    rv = rpc_addr_parse(addr, &sa, errmsg);
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "listen");
        return rv;
    }
    ls = rfs_calloc(1, sizeof *ls);
    if (ls == NULL) {
        rfs_errmsg_printf(errmsg, "listen on %s: out of memory", addr);
        return RFS_ENOMEM;
    }
    ls->loop = l;
    ls->h = *h;
    rpc_link_init(&ls->link);
    snprintf(ls->name, sizeof ls->name, "%s", addr);
    ls->io.cb = listener_accept;
    ls->io.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls->io.fd < 0) {
        rfs_errmsg_printf(errmsg, "listen on %s: socket: %s", addr, strerror(errno));
        rv = RFS_EIO;
        goto err;
    }
    /* A restarted server must be able to bind while old connections sit in TIME_WAIT. */
    setsockopt(ls->io.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls->io.fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == EADDRINUSE) {
            rfs_errmsg_printf(errmsg, "address %s is already in use", addr);
            rv = RFS_EBUSY;
        } else {
            rfs_errmsg_printf(errmsg, "listen on %s: bind: %s", addr, strerror(errno));
            rv = errno == EADDRNOTAVAIL ? RFS_EINVAL : RFS_EIO;
        }
        goto err_after_socket;
    }
    if (listen(ls->io.fd, LISTEN_BACKLOG) < 0) {
        if (errno == EADDRINUSE) {
            rfs_errmsg_printf(errmsg, "address %s is already in use", addr);
            rv = RFS_EBUSY;
        } else {
            rfs_errmsg_printf(errmsg, "listen on %s: listen: %s", addr, strerror(errno));
            rv = RFS_EIO;
        }
        goto err_after_socket;
    }
    if (getsockname(ls->io.fd, (struct sockaddr *)&sa, &salen) < 0) {
        rfs_errmsg_printf(errmsg, "listen on %s: getsockname: %s", addr, strerror(errno));
        rv = RFS_EIO;
        goto err_after_socket;
    }
    ls->port = ntohs(sa.sin_port);
    rv = rpc_io_add(l, &ls->io, EPOLLIN);
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "listen on %s: epoll_ctl: %s", addr, strerror(rv));
        rv = RFS_EIO;
        goto err_after_socket;
    }
    rpc_link_push(&l->listeners, &ls->link);
    rfs_infof("listening on %s (port %u)", addr, (unsigned)ls->port);
    *out = ls;
    return 0;

err_after_socket:
    close(ls->io.fd);
err:
    rfs_free(ls);
    return rv;
}

uint16_t rpc_listener_port(const struct rpc_listener *ls)
{
    return ls->port;
}

void rpc_listener_close(struct rpc_listener *ls)
{
    if (ls == NULL) {
        return;
    }
    if (ls->io.fd >= 0) {
        rpc_io_del(ls->loop, &ls->io);
        close(ls->io.fd);
        ls->io.fd = -1;
    }
    rfs_infof("listener %s closed", ls->name);
    rpc_conn_close_owned(ls->loop, ls, "listener closed");
    rpc_link_remove(&ls->link);
    rpc_link_push(&ls->loop->dead_listeners, &ls->link);
}

void rpc_listener_close_all(struct rpc_loop *l)
{
    while (!rpc_link_empty(&l->listeners)) {
        rpc_listener_close(RPC_CONTAINER(l->listeners.next, struct rpc_listener, link));
    }
}

void rpc_listener_reap_all(struct rpc_loop *l)
{
    while (!rpc_link_empty(&l->dead_listeners)) {
        struct rpc_listener *ls = RPC_CONTAINER(l->dead_listeners.next, struct rpc_listener, link);
        rpc_link_remove(&ls->link);
        rfs_free(ls);
    }
}
