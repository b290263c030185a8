/* A tiny HTTP/1.x server for GET requests; see http.h.
 *
 * Happy path: rpc/ accepts the connection in raw mode and hands over the bytes received so
 * far after every read; once the header block is complete (a blank line), the request line
 * is checked, the handler fills the body, and the response goes out with Content-Length and
 * "Connection: close"; rpc/ closes the connection once it is sent.
 *
 * Failure modes, each ending only that connection: a byte that cannot appear in a request
 * head (NUL or another control character: binary junk is refused at its first read), a head
 * over HTTP_MAX_REQUEST bytes, a request line or header line that does not parse: 400. A
 * method other than GET or HEAD: 405. No whole request within HTTP_REQUEST_MS of connecting
 * (a client that sends nothing, or one byte at a time): 408. Over HTTP_MAX_CONNS at once: the
 * new connection is closed without a reply. */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"

#define HTTP_SWEEP_MS 250

struct http_conn {
    struct rfs_http *h;
    struct rpc_conn *c;
    uint64_t opened_ms;
    int answered;
    struct http_conn *prev, *next;
};

struct rfs_http {
    struct rpc_loop *loop;
    struct rpc_listener *listener;
    struct rpc_timer *sweep;
    rfs_http_handler handler;
    void *data;
    struct http_conn *conns; /* open connections, newest first */
    unsigned n_conns;
};

void rfs_http_body_printf(struct rfs_http_body *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (b->failed) {
        return;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        n = vsnprintf(b->buf != NULL ? b->buf + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        {
            size_t cap = b->cap ? b->cap * 2 : 16384;
            char *p;
            while (cap - b->len <= (size_t)n) {
                cap *= 2;
            }
            p = rfs_realloc(b->buf, cap);
            if (p == NULL) {
                b->failed = 1;
                return;
            }
            b->buf = p;
            b->cap = cap;
        }
    }
}

static const char *status_text(int status)
{
    switch (status) {
        case 200:
            return "OK";
        case 400:
            return "Bad Request";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        default:
            return "Internal Server Error";
    }
}

/* Send a whole response and close once it is out. */
static void respond(struct http_conn *hc, int status, const char *content_type, const char *body,
                    size_t len, int head_only)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, status_text(status), content_type, len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    hc->answered = 1;
    if (rpc_conn_write(hc->c, head, (size_t)n) == 0 && !head_only && len > 0) {
        (void)rpc_conn_write(hc->c, body, len);
    }
    rpc_conn_close_flushed(hc->c, "HTTP response sent");
}

static void respond_error(struct http_conn *hc, int status, const char *why)
{
    char body[128];
    int n = snprintf(body, sizeof body, "%d %s\n", status, status_text(status));
    rfs_debugf("http: %s: %d (%s)", rpc_conn_peer_name(hc->c), status, why);
    respond(hc, status, "text/plain; charset=utf-8", body, (size_t)n, 0);
}

/* The end of the head (just past the blank line) within buf[0..len), or 0. */
static size_t head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] == '\n' && buf[i + 1] == '\n') {
            return i + 2;
        }
        if (buf[i] == '\n' && buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n') {
            return i + 3;
        }
    }
    return 0;
}

/* A request head holds printable ASCII, tabs and line ends only. */
static int bad_byte(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch != '\r' && ch != '\n' && ch != '\t' && (ch < 0x20 || ch == 0x7f)) {
            return 1;
        }
    }
    return 0;
}

/* Check the request line "METHOD SP TARGET SP HTTP/1.x" and the header lines of the head
 * (len bytes ending with the blank line); copy the method and the path before '?'. */
static int parse_head(const char *buf, size_t len, char *method, size_t mcap, char *path,
                      size_t pcap)
{
    const char *end = buf + len;
    const char *eol = memchr(buf, '\n', len);
    const char *sp1, *sp2, *line_end;
    size_t mlen, tlen;

    if (eol == NULL) {
        return -1;
    }
    line_end = eol > buf && eol[-1] == '\r' ? eol - 1 : eol;
    sp1 = memchr(buf, ' ', (size_t)(line_end - buf));
    if (sp1 == NULL) {
        return -1;
    }
    sp2 = memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1));
    if (sp2 == NULL) {
        return -1;
    }
    mlen = (size_t)(sp1 - buf);
    tlen = (size_t)(sp2 - sp1 - 1);
    if (mlen == 0 || mlen >= mcap || tlen == 0 || sp1[1] != '/') {
        return -1;
    }
    for (size_t i = 0; i < mlen; i++) {
        if (buf[i] < 'A' || buf[i] > 'Z') {
            return -1;
        }
    }
    if (line_end - (sp2 + 1) != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
        (sp2[8] != '0' && sp2[8] != '1')) {
        return -1;
    }
    memcpy(method, buf, mlen);
    method[mlen] = '\0';
    {
        const char *q = memchr(sp1 + 1, '?', tlen);
        size_t plen = q != NULL ? (size_t)(q - sp1 - 1) : tlen;
        if (plen >= pcap) {
            return -1;
        }
        memcpy(path, sp1 + 1, plen);
        path[plen] = '\0';
    }
    /* Header lines: "name: value", up to the blank line. */
    for (const char *p = eol + 1; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL && nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        const char *colon;
        if (nl == NULL) {
            return -1;
        }
        if (le == p) {
            break; /* the blank line */
        }
        colon = memchr(p, ':', (size_t)(le - p));
        if (colon == NULL || colon == p || *p == ' ' || *p == '\t') {
            return -1;
        }
        p = nl + 1;
    }
    return 0;
}

static void serve(struct http_conn *hc, const char *buf, size_t len)
{
    struct rfs_http *h = hc->h;
    char method[16], path[1024];
    struct rfs_http_body body = {NULL, 0, 0, 0};
    const char *type = "text/plain; charset=utf-8";
    int head_only, status;

    if (parse_head(buf, len, method, sizeof method, path, sizeof path) != 0) {
        respond_error(hc, 400, "malformed request");
        return;
    }
    head_only = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !head_only) {
        respond_error(hc, 405, method);
        return;
    }
    status = h->handler(h->data, path, &body, &type);
    if (body.failed) {
        rfs_free(body.buf);
        respond_error(hc, 500, "out of memory");
        return;
    }
    respond(hc, status, type, body.buf != NULL ? body.buf : "", body.len, head_only);
    rfs_free(body.buf);
}

static size_t on_bytes(struct rpc_conn *c, const void *data, size_t len, void *hdata)
{
    struct http_conn *hc = rpc_conn_get_data(c);
    const char *buf = data;
    size_t scan = len < HTTP_MAX_REQUEST ? len : HTTP_MAX_REQUEST;
    size_t end;
    (void)hdata;
    if (hc == NULL || hc->answered) {
        return len;
    }
    end = head_end(buf, scan);
    if (bad_byte(buf, end != 0 ? end : scan)) {
        respond_error(hc, 400, "not an HTTP request");
        return len;
    }
    if (end == 0) {
        if (len >= HTTP_MAX_REQUEST) {
            respond_error(hc, 400, "request head too long");
            return len;
        }
        return 0; /* wait for the rest */
    }
    serve(hc, buf, end);
    return len; /* a body or a second request is ignored: the connection closes */
}

static void on_open(struct rpc_conn *c, void *data)
{
    struct rfs_http *h = data;
    struct http_conn *hc;
    if (h->n_conns >= HTTP_MAX_CONNS) {
        rpc_conn_close(c, "too many HTTP connections");
        return;
    }
    hc = rfs_calloc(1, sizeof *hc);
    if (hc == NULL) {
        rpc_conn_close(c, "out of memory");
        return;
    }
    hc->h = h;
    hc->c = c;
    hc->opened_ms = rpc_now_ms();
    hc->next = h->conns;
    if (h->conns != NULL) {
        h->conns->prev = hc;
    }
    h->conns = hc;
    h->n_conns++;
    rpc_conn_set_data(c, hc);
}

static void conn_unlink(struct rfs_http *h, struct http_conn *hc)
{
    if (hc->prev != NULL) {
        hc->prev->next = hc->next;
    } else {
        h->conns = hc->next;
    }
    if (hc->next != NULL) {
        hc->next->prev = hc->prev;
    }
    h->n_conns--;
}

static void on_close(struct rpc_conn *c, void *data)
{
    struct rfs_http *h = data;
    struct http_conn *hc = rpc_conn_get_data(c);
    if (hc == NULL) {
        return;
    }
    rpc_conn_set_data(c, NULL);
    conn_unlink(h, hc);
    rfs_free(hc);
}

static void on_sweep(struct rpc_timer *t, void *data)
{
    struct rfs_http *h = data;
    uint64_t now = rpc_now_ms();
    (void)t;
    for (struct http_conn *hc = h->conns; hc != NULL; hc = hc->next) {
        if (!hc->answered && now - hc->opened_ms >= HTTP_REQUEST_MS) {
            respond_error(hc, 408, "no whole request in time");
        } else if (hc->answered && now - hc->opened_ms >= HTTP_REQUEST_MS * 6) {
            /* A client that does not take its response must not hold a slot for ever. */
            rpc_conn_close(hc->c, "HTTP response not taken in time");
        }
    }
}

int rfs_http_new(struct rfs_http **out, struct rpc_loop *loop, const char *addr,
                 rfs_http_handler handler, void *data, char *errmsg)
{
    struct rfs_http *h = rfs_calloc(1, sizeof *h);
    struct rpc_handler rh;
    int rv;
    if (h == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    h->loop = loop;
    h->handler = handler;
    h->data = data;
    memset(&rh, 0, sizeof rh);
    rh.data = h;
    rh.on_bytes = on_bytes;
    rh.on_open = on_open;
    rh.on_close = on_close;
    rh.max_frame = 2 * HTTP_MAX_REQUEST;
    rh.max_output = 64u << 20;
    rv = rpc_listen(loop, addr, &rh, &h->listener, errmsg);
    if (rv == 0) {
        rv = rpc_timer_start(loop, HTTP_SWEEP_MS, HTTP_SWEEP_MS, on_sweep, h, &h->sweep);
        if (rv != 0) {
            rfs_errmsg_printf(errmsg, "cannot start the HTTP timer");
        }
    }
    if (rv != 0) {
        rfs_http_free(h);
        return rv;
    }
    *out = h;
    return 0;
}

uint16_t rfs_http_port(const struct rfs_http *h)
{
    return rpc_listener_port(h->listener);
}

void rfs_http_free(struct rfs_http *h)
{
    if (h == NULL) {
        return;
    }
    if (h->sweep != NULL) {
        rpc_timer_stop(h->sweep);
    }
    /* rpc_listener_close() calls no on_close: release every connection's state first. */
    while (h->conns != NULL) {
        struct http_conn *hc = h->conns;
        rpc_conn_set_data(hc->c, NULL);
        conn_unlink(h, hc);
        rfs_free(hc);
    }
    rpc_listener_close(h->listener);
    rfs_free(h);
}
