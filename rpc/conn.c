/* Framed connections over non-blocking TCP sockets.
 *
 * Happy path: the loop reports the socket readable; one recv() of at least 64 KiB lands
 * after the bytes already buffered; every complete frame in the buffer goes to on_frame
 * straight from the buffer (no copy, no memmove per frame). Frames sent during the
 * iteration are appended to one output buffer, and at the end of the iteration the loop
 * sends all of them with as few send() calls as the socket allows. EPOLLOUT is watched
 * only while output is left over.
 *
 * Input buffer: bytes [in_pos, in_end) are unparsed. When a read needs room, the unparsed
 * tail (at most one partial frame) is moved to the front, or the buffer grows to hold the
 * whole frame whose header is known, so a large frame is read in place. An empty buffer is
 * reset to offset 0 for free, and released if a large frame made it big.
 *
 * Failure modes, each closing only this connection with a log line naming the peer:
 * a length below 12, a length over max_frame, a type that handler->known_type rejects
 * (checked as soon as the 16-byte header is in, before buffering the payload), the peer
 * closing (mid-frame or not), a read or write error, unsent output over max_output, and
 * running out of memory for a buffer.
 *
 * Closing never frees: rpc_conn_close() (or an error) marks the connection, removes it from
 * epoll, and queues it; frames still buffered are not delivered. At the loop's safe point
 * rpc_conn_reap_all() tries one last non-blocking send of queued output (for an
 * application close only), closes the socket, calls on_close once and frees. Connections
 * closed by a teardown (their listener closed, their peer or the loop freed) skip
 * on_close: the application may already have freed what its handler points at.
 *
 * Raw mode (handler.on_bytes, for HTTP): the same buffers without frames; the handler
 * consumes what it can parse, and rpc_conn_close_flushed() closes once a last reply is
 * sent. */
#include "internal.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "../common/log.h"

/* Every read asks for at least this much. */
#define CONN_READ_CHUNK (64u << 10)
/* Initial input buffer: room for one chunk after a partial frame without moving it. */
#define CONN_IN_INITIAL  (2 * CONN_READ_CHUNK)
#define CONN_OUT_INITIAL (64u << 10)
/* A frame at least this large, with nothing else waiting to go, is sent at once from the
 * caller's buffers (conn_send_direct); smaller ones wait for the end of the iteration, where
 * they go out together. */
#define CONN_DIRECT_MIN   (64u << 10)
#define CONN_DIRECT_PARTS 8
/* An empty buffer larger than this is released (a large frame passed through). Large
 * enough for a stream of 1 MiB frames (a file stripe and its framing) to reuse one buffer. */
#define CONN_BUF_KEEP (4u << 20)

struct rpc_conn {
    struct rpc_loop *loop;
    struct rpc_io io;
    struct rpc_handler h;
    size_t max_frame;  /* limit on the length field (12 + payload) */
    size_t max_output; /* limit on unsent bytes */
    struct rpc_listener *ls;
    struct rpc_peer *peer;
    void *app; /* rpc_conn_set_data() */

    struct rpc_link all;   /* loop->conns */
    struct rpc_link wlink; /* loop->writes while frames wait for the end of the iteration */
    struct rpc_link clink; /* loop->closing */
    bool closing;
    bool discard_output; /* closed for an error or a limit: no last flush */
    bool silent;         /* its listener or the loop is gone: no on_close */
    bool hdr_ok;         /* the header at in_pos passed the checks */
    bool close_flushed;  /* rpc_conn_close_flushed(): no more reading, close when drained */
    char close_why[64];

    unsigned char *in;
    size_t in_cap, in_pos, in_end;
    unsigned char *out;
    size_t out_cap, out_pos, out_end;

    char name[RPC_NAME_SIZE];
};

static void conn_io_cb(struct rpc_io *io, uint32_t events);

struct rpc_conn *rpc_conn_create(struct rpc_loop *l, int fd, const struct rpc_handler *h,
                                 const char *name, struct rpc_listener *ls, struct rpc_peer *p)
{
    struct rpc_conn *c = rfs_calloc(1, sizeof *c);
    int one = 1;

    if (c == NULL) {
        return NULL;
    }
    c->loop = l;
    c->h = *h;
    c->max_frame = h->max_frame ? h->max_frame : RPC_DEFAULT_MAX_FRAME;
    if (c->max_frame > UINT32_MAX) {
        c->max_frame = UINT32_MAX;
    }
    c->max_output = h->max_output ? h->max_output : RPC_DEFAULT_MAX_OUTPUT;
    c->ls = ls;
    c->peer = p;
    rpc_link_init(&c->all);
    rpc_link_init(&c->wlink);
    rpc_link_init(&c->clink);
    snprintf(c->name, sizeof c->name, "%s", name);
    /* Raft heartbeats and small replies must not wait for Nagle. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->io.fd = fd;
    c->io.cb = conn_io_cb;
    if (rpc_io_add(l, &c->io, EPOLLIN) != 0) {
        rfs_free(c);
        return NULL;
    }
    rpc_link_push(&l->conns, &c->all);
    return c;
}

void rpc_conn_opened(struct rpc_conn *c)
{
    if (!c->closing && c->h.on_open != NULL) {
        c->h.on_open(c, c->h.data);
    }
}

bool rpc_conn_closing(const struct rpc_conn *c)
{
    return c->closing;
}

const char *rpc_conn_peer_name(const struct rpc_conn *c)
{
    return c->name;
}

void rpc_conn_set_data(struct rpc_conn *c, void *data)
{
    c->app = data;
}

void *rpc_conn_get_data(const struct rpc_conn *c)
{
    return c->app;
}

/* --- closing --- */

__attribute__((format(printf, 3, 4))) static void
conn_fail(struct rpc_conn *c, enum rfs_log_level level, const char *fmt, ...)
{
    char why[RFS_ERRMSG_SIZE];
    va_list ap;

    if (c->closing) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    RFS_LOG(level, "connection %s closed: %s", c->name, why);
    c->closing = true;
    rpc_io_del(c->loop, &c->io);
    if (rpc_link_linked(&c->wlink)) {
        rpc_link_remove(&c->wlink);
    }
    rpc_link_push(&c->loop->closing, &c->clink);
}

void rpc_conn_close(struct rpc_conn *c, const char *why)
{
    conn_fail(c, RFS_LOG_INFO, "%s", why != NULL ? why : "closed locally");
}

void rpc_conn_close_owned(struct rpc_loop *l, const struct rpc_listener *ls, const char *why)
{
    for (struct rpc_link *n = l->conns.next; n != &l->conns; n = n->next) {
        struct rpc_conn *c = RPC_CONTAINER(n, struct rpc_conn, all);
        if (ls == NULL || c->ls == ls) {
            /* Teardown never calls back: the application may free its state next. */
            c->ls = NULL;
            c->silent = true;
            conn_fail(c, RFS_LOG_INFO, "%s", why);
        }
    }
}

static void conn_free(struct rpc_conn *c)
{
    rpc_link_remove(&c->clink);
    rpc_link_remove(&c->all);
    if (!c->discard_output && c->out_pos < c->out_end) {
        /* Best effort: replies queued just before an application close. */
        ssize_t n = send(c->io.fd, c->out + c->out_pos, c->out_end - c->out_pos,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n;
    }
    if (c->close_flushed) {
        /* A reply that ends the connection (an HTTP error) was sent while the client may
         * still be sending: closing with unread input makes TCP send a reset, which can
         * destroy the reply before the client reads it. Send a FIN first and drop what has
         * arrived (bounded; more arriving later can still cause the reset). */
        unsigned char sink[4096];
        size_t drained = 0;
        shutdown(c->io.fd, SHUT_WR);
        while (drained < CONN_READ_CHUNK * 16) {
            ssize_t n = recv(c->io.fd, sink, sizeof sink, MSG_DONTWAIT);
            if (n <= 0) {
                break;
            }
            drained += (size_t)n;
        }
    }
    close(c->io.fd);
    c->io.fd = -1;
    if (c->peer != NULL) {
        rpc_peer_conn_closed(c->peer, c); /* calls on_close unless the peer was freed */
    } else if (!c->silent && c->h.on_close != NULL) {
        c->h.on_close(c, c->h.data);
    }
    rfs_free(c->in);
    rfs_free(c->out);
    rfs_free(c);
}

void rpc_conn_reap_all(struct rpc_loop *l)
{
    /* on_close may close more connections: they join the list and are freed here too. */
    while (!rpc_link_empty(&l->closing)) {
        conn_free(RPC_CONTAINER(l->closing.next, struct rpc_conn, clink));
    }
}

/* --- input --- */

/* Make room for `want` bytes after in_end. */
static int conn_in_reserve(struct rpc_conn *c, size_t want)
{
    size_t have = c->in_end - c->in_pos;
    size_t cap;
    unsigned char *p;

    if (c->in_cap - c->in_end >= want) {
        return 0;
    }
    if (c->in_cap - have >= want) {
        /* Only the unparsed tail moves, and only when the buffer is full. */
        memmove(c->in, c->in + c->in_pos, have);
        c->in_pos = 0;
        c->in_end = have;
        return 0;
    }
    /* At least double: growing by exactly what is needed would copy a large frame over and
     * over as it arrives. want itself only grows with what arrives (conn_read). */
    cap = have + want;
    if (cap < 2 * c->in_cap) {
        cap = 2 * c->in_cap;
    }
    if (cap < CONN_IN_INITIAL) {
        cap = CONN_IN_INITIAL;
    }
    p = rfs_malloc(cap);
    if (p == NULL) {
        return RFS_ENOMEM;
    }
    if (have > 0) {
        memcpy(p, c->in + c->in_pos, have);
    }
    rfs_free(c->in);
    c->in = p;
    c->in_cap = cap;
    c->in_pos = 0;
    c->in_end = have;
    return 0;
}

/* Raw mode: hand every unconsumed byte to on_bytes. */
static void conn_parse_raw(struct rpc_conn *c)
{
    size_t have = c->in_end - c->in_pos;
    size_t used = c->h.on_bytes(c, c->in + c->in_pos, have, c->h.data);
    c->in_pos += used < have ? used : have;
    if (c->close_flushed) {
        c->in_pos = c->in_end; /* nothing more is read from it */
    }
    if (!c->closing && c->in_end - c->in_pos > c->max_frame) {
        c->discard_output = true;
        conn_fail(c, RFS_LOG_WARN, "over the limit of %zu unconsumed bytes", c->max_frame);
    }
}

static void conn_parse(struct rpc_conn *c)
{
    if (c->h.on_bytes != NULL) {
        if (c->in_end > c->in_pos) {
            conn_parse_raw(c);
        }
    }
    while (!c->closing && c->h.on_bytes == NULL) {
        size_t have = c->in_end - c->in_pos;
        const unsigned char *p = c->in + c->in_pos;
        uint32_t len, type;
        uint64_t req_id;

        if (have < RPC_HEADER_SIZE) {
            break;
        }
        len = rfs_get_le32(p);
        type = rfs_get_le32(p + 4);
        if (!c->hdr_ok) {
            if (len < RPC_HEADER_SIZE - 4) {
                c->discard_output = true;
                conn_fail(c, RFS_LOG_WARN, "bad frame: length %u is below 12", len);
                return;
            }
            if (len > c->max_frame) {
                c->discard_output = true;
                conn_fail(c, RFS_LOG_WARN, "bad frame: length %u is over the limit of %zu", len,
                          c->max_frame);
                return;
            }
            if (c->h.known_type != NULL && !c->h.known_type(type, c->h.data)) {
                c->discard_output = true;
                conn_fail(c, RFS_LOG_WARN, "bad frame: unknown type %u", type);
                return;
            }
            if (c->closing) {
                return; /* known_type closed it */
            }
            c->hdr_ok = true;
        }
        if (have - 4 < len) {
            break;
        }
        req_id = rfs_get_le64(p + 8);
        c->in_pos += 4 + (size_t)len;
        c->hdr_ok = false;
        if (c->h.on_frame != NULL) {
            c->h.on_frame(c, type, req_id, p + RPC_HEADER_SIZE, len - 12, c->h.data);
        }
    }
    if (c->in_pos == c->in_end) {
        c->in_pos = 0;
        c->in_end = 0;
        if (c->in_cap > CONN_BUF_KEEP) {
            rfs_free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
}

static void conn_read(struct rpc_conn *c)
{
    size_t have = c->in_end - c->in_pos;
    size_t want = CONN_READ_CHUNK;
    ssize_t n;

    if (c->hdr_ok && c->h.on_bytes == NULL) {
        /* The header was checked against max_frame. Grow towards the whole frame by
         * doubling with what actually arrives, not by what the header claims: a peer
         * that announces 64 MiB and sends 10 bytes costs 64 KiB, not 64 MiB. */
        size_t rest = 4 + (size_t)rfs_get_le32(c->in + c->in_pos) - have;
        size_t step = have > want ? have : want;
        want = rest < step ? rest : step;
    }
    if (conn_in_reserve(c, want) != 0) {
        c->discard_output = true;
        conn_fail(c, RFS_LOG_ERROR, "out of memory for a %zu-byte input buffer", have + want);
        return;
    }
    n = recv(c->io.fd, c->in + c->in_end, c->in_cap - c->in_end, 0);
    if (n == 0) {
        c->discard_output = true;
        if (have > 0) {
            conn_fail(c, RFS_LOG_INFO, "peer closed mid-frame (%zu bytes of a frame received)",
                      have);
        } else {
            conn_fail(c, RFS_LOG_DEBUG, "peer closed");
        }
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return;
        }
        c->discard_output = true;
        conn_fail(c, RFS_LOG_WARN, "read error: %s", strerror(errno));
        return;
    }
    c->in_end += (size_t)n;
    conn_parse(c);
}

/* --- output --- */

/* Make room for n more bytes of output. */
static int conn_out_reserve(struct rpc_conn *c, size_t n)
{
    size_t pending = c->out_end - c->out_pos;
    size_t cap;
    unsigned char *p;

    if (c->out_cap - c->out_end >= n) {
        return 0;
    }
    /* Move the unsent bytes to the front only when at least as many were already sent,
     * so the copying is paid for by the bytes that left. */
    if (c->out_pos >= pending && c->out_cap - pending >= n) {
        memmove(c->out, c->out + c->out_pos, pending);
        c->out_pos = 0;
        c->out_end = pending;
        return 0;
    }
    cap = c->out_cap ? 2 * c->out_cap : CONN_OUT_INITIAL;
    if (cap < pending + n) {
        cap = pending + n;
    }
    p = rfs_malloc(cap);
    if (p == NULL) {
        return RFS_ENOMEM;
    }
    if (pending > 0) {
        memcpy(p, c->out + c->out_pos, pending);
    }
    rfs_free(c->out);
    c->out = p;
    c->out_cap = cap;
    c->out_pos = 0;
    c->out_end = pending;
    return 0;
}

static void conn_flush(struct rpc_conn *c)
{
    int rv;

    while (c->out_pos < c->out_end) {
        ssize_t n = send(c->io.fd, c->out + c->out_pos, c->out_end - c->out_pos, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            c->discard_output = true;
            conn_fail(c, RFS_LOG_WARN, "write error: %s", strerror(errno));
            return;
        }
        c->out_pos += (size_t)n;
    }
    if (c->out_pos == c->out_end) {
        c->out_pos = 0;
        c->out_end = 0;
        if (c->out_cap > CONN_BUF_KEEP) {
            rfs_free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
        if (c->close_flushed) {
            conn_fail(c, RFS_LOG_DEBUG, "%s", c->close_why);
            return;
        }
        rv = rpc_io_set(c->loop, &c->io, EPOLLIN);
    } else {
        /* Closing once flushed: stop watching input, or unread bytes would wake the loop
         * for ever (hang-ups and errors are reported anyway). */
        rv = rpc_io_set(c->loop, &c->io, c->close_flushed ? EPOLLOUT : EPOLLIN | EPOLLOUT);
    }
    if (rv != 0) {
        c->discard_output = true;
        conn_fail(c, RFS_LOG_ERROR, "epoll_ctl: %s", strerror(rv));
    }
}

void rpc_conn_flush(struct rpc_conn *c)
{
    if (c->closing || !rpc_link_linked(&c->wlink)) {
        return;
    }
    rpc_link_remove(&c->wlink);
    conn_flush(c);
}

void rpc_conn_flush_all(struct rpc_loop *l)
{
    while (!rpc_link_empty(&l->writes)) {
        struct rpc_conn *c = RPC_CONTAINER(l->writes.next, struct rpc_conn, wlink);
        rpc_link_remove(&c->wlink);
        conn_flush(c);
    }
}

static void conn_io_cb(struct rpc_io *io, uint32_t events)
{
    struct rpc_conn *c = RPC_CONTAINER(io, struct rpc_conn, io);

    if (c->closing) {
        return;
    }
    if (c->close_flushed) {
        if (events & (EPOLLHUP | EPOLLERR)) {
            c->discard_output = true;
            conn_fail(c, RFS_LOG_DEBUG, "peer gone before the last reply was sent");
            return;
        }
    } else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        /* Reads first: a peer that closed after its last request still gets it handled. */
        conn_read(c);
    }
    if (!c->closing && (events & EPOLLOUT)) {
        conn_flush(c);
    }
}

/* Copy buf to p, leaving out its first *skip bytes (*skip counts down). Returns p past it. */
static unsigned char *copy_from(unsigned char *p, const void *buf, size_t len, size_t *skip)
{
    if (*skip >= len) {
        *skip -= len;
        return p;
    }
    memcpy(p, (const unsigned char *)buf + *skip, len - *skip);
    p += len - *skip;
    *skip = 0;
    return p;
}

/* A large frame with nothing queued before it: hand it to the kernel now, from the caller's
 * buffers, instead of copying it into the output buffer first. Returns the bytes sent (0 on
 * any error: the buffered path meets it again and reports it). */
static size_t conn_send_direct(struct rpc_conn *c, const unsigned char *hdr,
                               const struct rfs_buf *parts, unsigned n_parts)
{
    struct iovec iov[CONN_DIRECT_PARTS];
    struct msghdr msg;
    unsigned n = 0;
    ssize_t w;
    iov[n++] = (struct iovec){.iov_base = (void *)hdr, .iov_len = RPC_HEADER_SIZE};
    for (unsigned i = 0; i < n_parts; i++) {
        if (parts[i].len > 0) {
            iov[n++] = (struct iovec){.iov_base = parts[i].base, .iov_len = parts[i].len};
        }
    }
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    do {
        w = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (w < 0 && errno == EINTR);
    return w > 0 ? (size_t)w : 0;
}

int rpc_conn_sendv(struct rpc_conn *c, uint32_t type, uint64_t req_id, const struct rfs_buf *parts,
                   unsigned n_parts)
{
    size_t total = 0, frame, pending, sent = 0, skip;
    unsigned char hdr[RPC_HEADER_SIZE];
    unsigned char *p;

    if (c->closing) {
        return RFS_ESTOPPED;
    }
    for (unsigned i = 0; i < n_parts; i++) {
        if (parts[i].len > c->max_frame) {
            return RFS_ETOOBIG;
        }
        total += parts[i].len;
        if (total > c->max_frame) {
            return RFS_ETOOBIG;
        }
    }
    if (total + 12 > c->max_frame) {
        return RFS_ETOOBIG;
    }
    frame = RPC_HEADER_SIZE + total;
    pending = c->out_end - c->out_pos;
    if (frame > c->max_output || pending > c->max_output - frame) {
        c->discard_output = true;
        conn_fail(c, RFS_LOG_WARN,
                  "output over the limit of %zu bytes (%zu unsent, a frame of %zu more)",
                  c->max_output, pending, frame);
        return RFS_ESTOPPED;
    }
    rfs_put_le32(hdr, (uint32_t)(total + 12));
    rfs_put_le32(hdr + 4, type);
    rfs_put_le64(hdr + 8, req_id);
    if (pending == 0 && frame >= CONN_DIRECT_MIN && n_parts < CONN_DIRECT_PARTS &&
        !c->close_flushed) {
        sent = conn_send_direct(c, hdr, parts, n_parts);
        if (sent == frame) {
            return 0;
        }
    }
    if (conn_out_reserve(c, frame - sent) != 0) {
        return RFS_ENOMEM;
    }
    /* What was not sent yet: the frame from byte `sent` on. */
    p = c->out + c->out_end;
    skip = sent;
    p = copy_from(p, hdr, RPC_HEADER_SIZE, &skip);
    for (unsigned i = 0; i < n_parts; i++) {
        p = copy_from(p, parts[i].base, parts[i].len, &skip);
    }
    c->out_end += frame - sent;
    if (!rpc_link_linked(&c->wlink)) {
        rpc_link_push(&c->loop->writes, &c->wlink);
    }
    return 0;
}

int rpc_conn_write(struct rpc_conn *c, const void *buf, size_t len)
{
    size_t pending;
    if (c->closing || c->close_flushed) {
        return RFS_ESTOPPED;
    }
    pending = c->out_end - c->out_pos;
    if (len > c->max_output || pending > c->max_output - len) {
        c->discard_output = true;
        conn_fail(c, RFS_LOG_WARN, "output over the limit of %zu bytes (%zu unsent, %zu more)",
                  c->max_output, pending, len);
        return RFS_ESTOPPED;
    }
    if (conn_out_reserve(c, len) != 0) {
        return RFS_ENOMEM;
    }
    if (len > 0) {
        memcpy(c->out + c->out_end, buf, len);
    }
    c->out_end += len;
    if (!rpc_link_linked(&c->wlink)) {
        rpc_link_push(&c->loop->writes, &c->wlink);
    }
    return 0;
}

void rpc_conn_close_flushed(struct rpc_conn *c, const char *why)
{
    if (c->closing || c->close_flushed) {
        return;
    }
    c->close_flushed = true;
    snprintf(c->close_why, sizeof c->close_why, "%s", why != NULL ? why : "closed locally");
    if (c->out_pos == c->out_end) {
        conn_fail(c, RFS_LOG_DEBUG, "%s", c->close_why);
    } else if (!rpc_link_linked(&c->wlink) && rpc_io_set(c->loop, &c->io, EPOLLOUT) != 0) {
        conn_fail(c, RFS_LOG_ERROR, "epoll_ctl failed");
    }
    /* else: flushed at the end of this iteration, which closes it once drained */
}

int rpc_conn_send(struct rpc_conn *c, uint32_t type, uint64_t req_id, const void *payload,
                  size_t len)
{
    struct rfs_buf part = {.base = (void *)payload, .len = len};
    return rpc_conn_sendv(c, type, req_id, &part, 1);
}
