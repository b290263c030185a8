/* The proxy engine's event loop, routes and connections (see proxy.h).
 *
 * Happy path: a route's listener accepts a client, the proxy starts a non-blocking connect
 * to the target, and each direction of the pair becomes a flow. Each read from a source end
 * becomes a chunk stamped with a release time (now, plus the route's delay in that
 * direction, never earlier than the previous chunk's, so order is kept). After every loop
 * pass the proxy writes the chunks whose time has come; the loop sleeps until the earliest
 * pending release. A FIN is passed on (shutdown) once the queue before it has drained, and a
 * connection whose two directions are both shut is closed.
 *
 * Failure modes: a read or write error on either end, or a failed connect, closes both
 * ends abortively (RST), as a lost connection would. A destination that does not read
 * makes its queue fill; past PROXY_QUEUE_MAX the proxy stops reading the source, so memory
 * stays bounded and TCP flow control reaches the sender. Closed connections are marked dead
 * and freed only at the end of the loop pass, because events already returned by epoll may
 * still point at them. */
#include "tests/lib/proxy_impl.h"

#include "common/alloc.h"
#include "common/err.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* splitmix64: small, seedable, good enough for fault choices. */
static uint64_t rng_next(struct proxy *p)
{
    uint64_t z = (p->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Close so that the peer sees a reset rather than an orderly end of stream. */
static void close_abortive(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

int proxy_addr_parse(const char *text, struct sockaddr_in *out, char *errmsg)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    char *end;
    unsigned long port;
    struct addrinfo hints, *res = NULL;
    size_t hlen;

    if (colon == NULL) {
        rfs_errmsg_printf(errmsg, "address %s: expected HOST:PORT", text);
        return RFS_EINVAL;
    }
    hlen = (size_t)(colon - text);
    if (hlen == 0 || hlen >= sizeof host) {
        rfs_errmsg_printf(errmsg, "address %s: bad host", text);
        return RFS_EINVAL;
    }
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || port > 65535) {
        rfs_errmsg_printf(errmsg, "address %s: bad port", text);
        return RFS_EINVAL;
    }
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &out->sin_addr) == 1) {
        return 0;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL) {
        rfs_errmsg_printf(errmsg, "address %s: cannot resolve %s", text, host);
        return RFS_EINVAL;
    }
    out->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return 0;
}

/* Make the registered interest of an end equal want (0 removes it from epoll, so HUP and
 * ERR, which epoll reports regardless of the mask, cannot spin the loop). */
static void end_watch(struct proxy *p, struct proxy_end *e, uint32_t want)
{
    struct epoll_event ev = {.events = want, .data.ptr = &e->h};

    if (e->fd < 0 || (e->watched && e->events == want) || (!e->watched && want == 0)) {
        return;
    }
    if (want == 0) {
        epoll_ctl(p->ep, EPOLL_CTL_DEL, e->fd, NULL);
        e->watched = false;
    } else if (!e->watched) {
        epoll_ctl(p->ep, EPOLL_CTL_ADD, e->fd, &ev);
        e->watched = true;
    } else {
        epoll_ctl(p->ep, EPOLL_CTL_MOD, e->fd, &ev);
    }
    e->events = want;
}

static bool flow_wants_read(const struct proxy_conn *c, int d)
{
    const struct proxy_flow *f = &c->flow[d];
    return !f->eof && f->queued < PROXY_QUEUE_MAX && !(d == PROXY_DOWN && c->connecting);
}

static void conn_watch(struct proxy *p, struct proxy_conn *c)
{
    uint32_t want[2];

    for (int e = 0; e < 2; e++) {
        want[e] = flow_wants_read(c, e) ? EPOLLIN : 0;
        if (c->flow[1 - e].blocked) {
            want[e] |= EPOLLOUT;
        }
    }
    if (c->connecting) {
        want[1] = EPOLLOUT;
    }
    end_watch(p, &c->end[0], want[0]);
    end_watch(p, &c->end[1], want[1]);
}

static void flow_clear(struct proxy_flow *f)
{
    struct proxy_chunk *ch = f->head;
    while (ch != NULL) {
        struct proxy_chunk *next = ch->next;
        rfs_free(ch);
        ch = next;
    }
    f->head = f->tail = NULL;
    f->queued = 0;
}

static void conn_unlink(struct proxy_conn *c)
{
    struct proxy_conn **pp = &c->route->conns;
    while (*pp != NULL && *pp != c) {
        pp = &(*pp)->next;
    }
    if (*pp == c) {
        *pp = c->next;
    }
}

/* Close both ends (abortively unless graceful) and queue the connection for freeing. */
static void conn_close(struct proxy *p, struct proxy_conn *c, bool graceful, const char *why)
{
    if (c->dead) {
        return;
    }
    rfs_debugf("route %s: conn %llu closed (%s)", c->route->name, (unsigned long long)c->id, why);
    for (int e = 0; e < 2; e++) {
        if (c->end[e].fd >= 0) {
            if (graceful) {
                close(c->end[e].fd);
            } else {
                close_abortive(c->end[e].fd);
            }
            c->end[e].fd = -1;
        }
    }
    c->dead = true;
    c->route->stats.open--;
    conn_unlink(c);
    c->next = p->graveyard;
    p->graveyard = c;
}

static void conn_free(struct proxy_conn *c)
{
    flow_clear(&c->flow[0]);
    flow_clear(&c->flow[1]);
    rfs_free(c);
}

void proxy_route_discard(struct proxy *p, struct proxy_route *r, int d)
{
    (void)p;
    for (struct proxy_conn *c = r->conns; c != NULL; c = c->next) {
        struct proxy_flow *f = &c->flow[d];
        if (f->queued > 0) {
            r->stats.discarded[d] += f->queued;
            f->holed = true;
        }
        flow_clear(f);
    }
}

unsigned proxy_route_reset(struct proxy *p, struct proxy_route *r, bool holed_only)
{
    unsigned n = 0;
    struct proxy_conn *c = r->conns;

    while (c != NULL) {
        struct proxy_conn *next = c->next;
        if (!holed_only || c->flow[0].holed || c->flow[1].holed) {
            conn_close(p, c, false, holed_only ? "heal: stream had a hole" : "reset");
            r->stats.resets++;
            n++;
        }
        c = next;
    }
    return n;
}

struct proxy_route *proxy_route_find(struct proxy *p, const char *name)
{
    for (struct proxy_route *r = p->routes; r != NULL; r = r->next) {
        if (strcmp(r->name, name) == 0) {
            return r;
        }
    }
    return NULL;
}

/* One read from the source end of flow d, through the route's faults. */
static void flow_read(struct proxy *p, struct proxy_conn *c, int d)
{
    struct proxy_route *r = c->route;
    struct proxy_flow *f = &c->flow[d];
    struct proxy_chunk *ch;
    char buf[65536];
    ssize_t n;
    long long now, release;
    unsigned span;

    n = recv(c->end[d].fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(p, c, false, strerror(errno));
        }
        return;
    }
    if (n == 0) {
        f->eof = true;
        if (r->cut[d]) {
            f->fin_lost = true; /* the end of stream vanishes with the data */
            f->holed = true;
        }
        return;
    }
    if (r->drop_permille > 0 && rng_next(p) % 1000 < r->drop_permille) {
        r->stats.dropped++;
        conn_close(p, c, false, "drop");
        return;
    }
    if (r->cut[d]) {
        r->stats.discarded[d] += (uint64_t)n;
        f->holed = true;
        return;
    }
    ch = rfs_malloc(sizeof *ch + (size_t)n);
    if (ch == NULL) {
        conn_close(p, c, false, "out of memory");
        return;
    }
    now = mono_ns();
    span = r->delay_max_ms[d] - r->delay_min_ms[d];
    release = now + (long long)r->delay_min_ms[d] * 1000000LL;
    if (r->delay_max_ms[d] > 0) {
        release += (long long)(rng_next(p) % ((uint64_t)span * 1000000ULL + 1));
    }
    if (release < f->last_release_ns) {
        release = f->last_release_ns;
    }
    f->last_release_ns = release;
    ch->next = NULL;
    ch->release_ns = release;
    ch->len = (size_t)n;
    ch->off = 0;
    memcpy(ch->data, buf, (size_t)n);
    if (f->tail != NULL) {
        f->tail->next = ch;
    } else {
        f->head = ch;
    }
    f->tail = ch;
    f->queued += (size_t)n;
}

/* Write what is due in both directions, pass on FINs, close a finished connection and
 * refresh the epoll interest. */
static void conn_pump(struct proxy *p, struct proxy_conn *c, long long now)
{
    struct proxy_route *r = c->route;

    for (int d = 0; d < 2 && !c->dead; d++) {
        struct proxy_flow *f = &c->flow[d];
        int dst = c->end[1 - d].fd;
        if (d == PROXY_UP && c->connecting) {
            continue;
        }
        while (!r->hold[d] && f->head != NULL && !f->blocked && f->head->release_ns <= now) {
            struct proxy_chunk *ch = f->head;
            ssize_t n =
                send(dst, ch->data + ch->off, ch->len - ch->off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    f->blocked = true;
                } else if (errno != EINTR) {
                    conn_close(p, c, false, strerror(errno));
                }
                break;
            }
            r->stats.bytes[d] += (uint64_t)n;
            f->queued -= (size_t)n;
            ch->off += (size_t)n;
            if (ch->off == ch->len) {
                f->head = ch->next;
                if (f->head == NULL) {
                    f->tail = NULL;
                }
                rfs_free(ch);
            }
        }
        if (!c->dead && f->eof && !f->fin_lost && !r->hold[d] && f->head == NULL && !f->shut) {
            shutdown(dst, SHUT_WR);
            f->shut = true;
        }
    }
    if (c->dead) {
        return;
    }
    if (c->flow[0].shut && c->flow[1].shut) {
        conn_close(p, c, true, "both sides finished");
        return;
    }
    conn_watch(p, c);
}

static void conn_event(struct proxy *p, struct proxy_conn *c, int e, uint32_t events)
{
    if (c->dead) {
        return;
    }
    if (e == 1 && c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            return;
        }
        if (getsockopt(c->end[1].fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            c->route->stats.connect_failed++;
            rfs_infof("route %s: connect to %s failed: %s", c->route->name, c->route->target_text,
                      strerror(err));
            conn_close(p, c, false, "connect failed");
            return;
        }
        c->connecting = false;
        return;
    }
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
        /* Let the next write find out what happened (progress, or EPIPE/ECONNRESET). */
        c->flow[1 - e].blocked = false;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (flow_wants_read(c, e)) {
            flow_read(p, c, e);
        } else if (events & EPOLLERR) {
            conn_close(p, c, false, "socket error");
        }
    }
}

static void route_accept(struct proxy *p, struct proxy_route *r)
{
    for (int i = 0; i < 16; i++) {
        struct proxy_conn *c;
        int cfd = accept4(r->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int sfd;
        if (cfd < 0) {
            return; /* EAGAIN, or a transient error: level-triggered, so we come back */
        }
        r->stats.conns++;
        sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        c = rfs_calloc(1, sizeof *c);
        if (sfd < 0 || c == NULL) {
            close_abortive(cfd);
            if (sfd >= 0) {
                close(sfd);
            }
            rfs_free(c);
            r->stats.connect_failed++;
            continue;
        }
        set_nodelay(cfd);
        set_nodelay(sfd);
        c->route = r;
        c->id = ++p->next_conn_id;
        for (int e = 0; e < 2; e++) {
            c->end[e].fd = e == 0 ? cfd : sfd;
            c->end[e].h.kind = PROXY_H_CONN_END;
            c->end[e].h.owner = c;
            c->end[e].h.index = e;
        }
        c->connecting = true;
        c->next = r->conns;
        r->conns = c;
        r->stats.open++;
        if (connect(sfd, (struct sockaddr *)&r->target, sizeof r->target) == 0) {
            c->connecting = false;
        } else if (errno != EINPROGRESS) {
            r->stats.connect_failed++;
            rfs_infof("route %s: connect to %s failed: %s", r->name, r->target_text,
                      strerror(errno));
            conn_close(p, c, false, "connect failed");
            continue;
        }
        rfs_debugf("route %s: conn %llu accepted", r->name, (unsigned long long)c->id);
        conn_watch(p, c);
    }
}

static int listen_on(const char *text, int *fd_out, int *port_out, char *errmsg)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int one = 1;
    int fd;
    int rv = proxy_addr_parse(text, &addr, errmsg);

    if (rv != 0) {
        return rv;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rfs_errmsg_printf(errmsg, "listen %s: socket: %s", text, strerror(errno));
        return RFS_EIO;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 128) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        rfs_errmsg_printf(errmsg, "listen %s: %s", text, strerror(errno));
        close(fd);
        return RFS_EIO;
    }
    *fd_out = fd;
    *port_out = ntohs(addr.sin_port);
    return 0;
}

int proxy_route_add(struct proxy *p, const char *name, const char *listen, const char *target,
                    int *port, char *errmsg)
{
    struct proxy_route *r, **tail;
    struct epoll_event ev;
    size_t n = strlen(name);
    int rv;

    if (n == 0 || n >= PROXY_NAME_MAX ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
                     "TUVWXYZ0123456789_.-") != n) {
        rfs_errmsg_printf(errmsg, "bad route name '%s'", name);
        return RFS_EINVAL;
    }
    if (proxy_route_find(p, name) != NULL) {
        rfs_errmsg_printf(errmsg, "route %s exists", name);
        return RFS_EINVAL;
    }
    r = rfs_calloc(1, sizeof *r);
    if (r == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->target_text, sizeof r->target_text, "%s", target);
    rv = proxy_addr_parse(target, &r->target, errmsg);
    if (rv == 0) {
        rv = listen_on(listen, &r->listen_fd, &r->port, errmsg);
    }
    if (rv != 0) {
        rfs_free(r);
        return rv;
    }
    r->h.kind = PROXY_H_ROUTE_LISTEN;
    r->h.owner = r;
    ev.events = EPOLLIN;
    ev.data.ptr = &r->h;
    if (epoll_ctl(p->ep, EPOLL_CTL_ADD, r->listen_fd, &ev) != 0) {
        rfs_errmsg_printf(errmsg, "epoll: %s", strerror(errno));
        close(r->listen_fd);
        rfs_free(r);
        return RFS_EIO;
    }
    for (tail = &p->routes; *tail != NULL; tail = &(*tail)->next) {
    }
    *tail = r;
    *port = r->port;
    rfs_infof("route %s: listen port %d -> %s", r->name, r->port, r->target_text);
    return 0;
}

int proxy_new(const char *control, uint64_t seed, struct proxy **out, char *errmsg)
{
    struct proxy *p = rfs_calloc(1, sizeof *p);
    struct epoll_event ev;
    int rv;

    if (p == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    p->control_fd = -1;
    p->rng = seed;
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->ep < 0) {
        rfs_errmsg_printf(errmsg, "epoll_create1: %s", strerror(errno));
        rfs_free(p);
        return RFS_EIO;
    }
    if (control != NULL) {
        rv = listen_on(control, &p->control_fd, &p->control_port, errmsg);
        if (rv != 0) {
            rfs_errmsg_wrapf(errmsg, "control");
            proxy_free(p);
            return rv;
        }
        p->control_h.kind = PROXY_H_CONTROL_LISTEN;
        p->control_h.owner = p;
        ev.events = EPOLLIN;
        ev.data.ptr = &p->control_h;
        epoll_ctl(p->ep, EPOLL_CTL_ADD, p->control_fd, &ev);
    }
    *out = p;
    return 0;
}

int proxy_control_port(const struct proxy *p)
{
    return p->control_port;
}

static void controls_close(struct proxy_control *ctl)
{
    if (!ctl->dead) {
        close(ctl->fd);
        ctl->fd = -1;
        ctl->dead = true;
    }
}

void proxy_free(struct proxy *p)
{
    if (p == NULL) {
        return;
    }
    while (p->routes != NULL) {
        struct proxy_route *r = p->routes;
        proxy_route_reset(p, r, false);
        close(r->listen_fd);
        p->routes = r->next;
        rfs_free(r);
    }
    while (p->graveyard != NULL) {
        struct proxy_conn *c = p->graveyard;
        p->graveyard = c->next;
        conn_free(c);
    }
    while (p->controls != NULL) {
        struct proxy_control *ctl = p->controls;
        p->controls = ctl->next;
        controls_close(ctl);
        rfs_free(ctl);
    }
    if (p->control_fd >= 0) {
        close(p->control_fd);
    }
    close(p->ep);
    rfs_free(p);
}

static void control_accept(struct proxy *p)
{
    struct epoll_event ev;
    int fd = accept4(p->control_fd, NULL, NULL, SOCK_CLOEXEC);
    struct proxy_control *ctl;

    if (fd < 0) {
        return;
    }
    ctl = rfs_calloc(1, sizeof *ctl);
    if (ctl == NULL) {
        close(fd);
        return;
    }
    ctl->fd = fd;
    ctl->h.kind = PROXY_H_CONTROL;
    ctl->h.owner = ctl;
    ev.events = EPOLLIN;
    ev.data.ptr = &ctl->h;
    epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &ev);
    ctl->next = p->controls;
    p->controls = ctl;
}

static void control_reply(struct proxy_control *ctl, const char *reply)
{
    char line[PROXY_LINE_MAX + 2];
    int n = snprintf(line, sizeof line, "%s\n", reply);
    size_t off = 0;

    /* The control socket is blocking and replies are short: the send buffer takes them. */
    while (off < (size_t)n) {
        ssize_t w = send(ctl->fd, line + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            controls_close(ctl);
            return;
        }
        off += (size_t)w;
    }
}

static void control_read(struct proxy *p, struct proxy_control *ctl)
{
    char reply[PROXY_LINE_MAX];
    ssize_t n;
    char *nl;

    if (ctl->dead) {
        return;
    }
    n = recv(ctl->fd, ctl->buf + ctl->len, sizeof ctl->buf - ctl->len, MSG_DONTWAIT);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            controls_close(ctl);
        }
        return;
    }
    ctl->len += (size_t)n;
    while (!ctl->dead && (nl = memchr(ctl->buf, '\n', ctl->len)) != NULL) {
        size_t used = (size_t)(nl - ctl->buf) + 1;
        *nl = '\0';
        if (nl > ctl->buf && nl[-1] == '\r') {
            nl[-1] = '\0';
        }
        proxy_command(p, ctl->buf, reply, sizeof reply);
        control_reply(ctl, reply);
        memmove(ctl->buf, ctl->buf + used, ctl->len - used);
        ctl->len -= used;
    }
    if (!ctl->dead && ctl->len == sizeof ctl->buf) {
        control_reply(ctl, "err line too long");
        controls_close(ctl);
    }
}

static void reap(struct proxy *p)
{
    struct proxy_control **pp = &p->controls;

    while (p->graveyard != NULL) {
        struct proxy_conn *c = p->graveyard;
        p->graveyard = c->next;
        conn_free(c);
    }
    while (*pp != NULL) {
        struct proxy_control *ctl = *pp;
        if (ctl->dead) {
            *pp = ctl->next;
            rfs_free(ctl);
        } else {
            pp = &ctl->next;
        }
    }
}

/* Milliseconds until the earliest chunk that is waiting only for its release time; -1 if
 * there is none. */
static int next_timeout(struct proxy *p, long long now)
{
    long long best = -1;

    for (struct proxy_route *r = p->routes; r != NULL; r = r->next) {
        for (struct proxy_conn *c = r->conns; c != NULL; c = c->next) {
            for (int d = 0; d < 2; d++) {
                const struct proxy_flow *f = &c->flow[d];
                if (f->head == NULL || f->blocked || r->hold[d] ||
                    (d == PROXY_UP && c->connecting)) {
                    continue;
                }
                if (best < 0 || f->head->release_ns < best) {
                    best = f->head->release_ns;
                }
            }
        }
    }
    if (best < 0) {
        return -1;
    }
    if (best <= now) {
        return 0;
    }
    return (int)((best - now + 999999) / 1000000);
}

int proxy_run(struct proxy *p, int stop_fd)
{
    struct epoll_event evs[64];
    long long now;

    if (stop_fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &p->stop_h};
        p->stop_h.kind = PROXY_H_STOP;
        if (epoll_ctl(p->ep, EPOLL_CTL_ADD, stop_fd, &ev) != 0) {
            rfs_errorf("epoll_ctl stop fd: %s", strerror(errno));
            return RFS_EIO;
        }
    }
    while (!p->quit) {
        int n = epoll_wait(p->ep, evs, 64, next_timeout(p, mono_ns()));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rfs_errorf("epoll_wait: %s", strerror(errno));
            return RFS_EIO;
        }
        for (int i = 0; i < n; i++) {
            struct proxy_handle *h = evs[i].data.ptr;
            switch (h->kind) {
                case PROXY_H_STOP:
                    p->quit = true;
                    break;
                case PROXY_H_CONTROL_LISTEN:
                    control_accept(p);
                    break;
                case PROXY_H_CONTROL:
                    control_read(p, h->owner);
                    break;
                case PROXY_H_ROUTE_LISTEN:
                    route_accept(p, h->owner);
                    break;
                case PROXY_H_CONN_END:
                    conn_event(p, h->owner, h->index, evs[i].events);
                    break;
            }
        }
        now = mono_ns();
        for (struct proxy_route *r = p->routes; r != NULL; r = r->next) {
            struct proxy_conn *c = r->conns;
            while (c != NULL) {
                struct proxy_conn *next = c->next; /* c may move to the graveyard */
                conn_pump(p, c, now);
                c = next;
            }
        }
        reap(p);
    }
    if (stop_fd >= 0) {
        epoll_ctl(p->ep, EPOLL_CTL_DEL, stop_fd, NULL);
    }
    return 0;
}
