/* etcd_load: a put load generator for etcd's v3 API, the counterpart of `raftfs bench`.
 *
 * C client threads each hold one connection to an etcd member and issue puts one at a
 * time, N in all, over K keys with B-byte values; the key sequence, the latency
 * measurement and the printed lines are those of tools/bench.c, so one parser reads both.
 *
 * Two transports reach the same etcd KV.Put:
 *   grpc  etcd's native API: gRPC over HTTP/2 without TLS (nghttp2 does the framing; the
 *         PutRequest protobuf is two length-delimited fields, encoded here by hand).
 *   http  the grpc-gateway JSON API (POST /v3/kv/put, base64 key and value) over
 *         HTTP/1.1 keep-alive. etcd 3.4 serves it by calling its own gRPC server over a
 *         loopback connection, so each put costs the server the JSON and HTTP/1 work plus
 *         a second gRPC hop: it measures etcd with a handicap, reported for comparison.
 *
 * Failure modes: a put that gets an error status, a non-200 reply or a broken connection
 * counts as an error (the last reason is printed per thread); the thread reconnects and
 * goes on. Every socket has a 10 s receive timeout, so a silent server cannot hang a run.
 *
 * A standalone program (libc and libnghttp2 only, so plain malloc), built by
 * bench/etcd_vs_raftfs.sh. It lives in bench/etcd/ rather than bench/ because the Makefile
 * builds and `make bench` runs every C file directly in bench/, and this one needs
 * libnghttp2 and an etcd. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOAD_MAX_ENDPOINTS 16
#define LOAD_ERR_SIZE      256
#define LOAD_RBUF_SIZE     16384
#define LOAD_IO_TIMEOUT_S  10

#define LOAD_GIVE_UP_US (10 * 1000000) /* a thread stops after 10 s without a connection */

enum load_proto { LOAD_GRPC, LOAD_HTTP };

/* How one put went, and what it means for the connection. */
enum load_result {
    LOAD_OK,       /* acknowledged; the connection stays open */
    LOAD_OK_CLOSE, /* acknowledged, but the server closes the connection */
    LOAD_FAILED,   /* an error reply; the connection stays open */
    LOAD_BROKEN,   /* no reply: the connection is unusable */
};

struct load_cfg {
    enum load_proto proto;
    char *hosts[LOAD_MAX_ENDPOINTS];
    char *ports[LOAD_MAX_ENDPOINTS];
    unsigned n_endpoints;
    unsigned clients;
    unsigned long ops;
    size_t value_size;
    unsigned keys;
    char *value;     /* value_size bytes of 'v' */
    char *value_b64; /* the same, base64 (http) */
};

/* One client's connection. rbuf holds bytes read but not yet consumed (http). */
struct load_conn {
    const struct load_cfg *cfg;
    unsigned endpoint;
    int fd;
    char rbuf[LOAD_RBUF_SIZE];
    size_t rlen;
    /* grpc */
    nghttp2_session *h2;
    const uint8_t *body; /* request body being sent */
    size_t body_len;
    size_t body_off;
    int32_t stream_id;
    bool stream_closed;
    uint32_t stream_error; /* RST_STREAM code, 0 if closed normally */
    int http_status;
    int grpc_status; /* -1 until seen */
    char grpc_message[128];
    size_t resp_bytes;
};

struct load_thread {
    const struct load_cfg *cfg;
    unsigned index;
    unsigned long ops;
    uint64_t *lat_us;
    unsigned long done;
    unsigned long errors;
    char last_error[LOAD_ERR_SIZE];
    pthread_t thread;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void base64_encode(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
}

/* ---- sockets ---- */

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void conn_close(struct load_conn *c)
{
    if (c->h2 != NULL) {
        nghttp2_session_del(c->h2);
        c->h2 = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->rlen = 0;
}

static int tcp_connect(const char *host, const char *port, char *err)
{
    struct addrinfo hints, *res, *ai;
    struct timeval tv = {.tv_sec = LOAD_IO_TIMEOUT_S};
    int one = 1, fd = -1, rv;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rv = getaddrinfo(host, port, &hints, &res);
    if (rv != 0) {
        snprintf(err, LOAD_ERR_SIZE, "resolve %s:%s: %s", host, port, gai_strerror(rv));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        snprintf(err, LOAD_ERR_SIZE, "connect %s:%s: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* ---- grpc over HTTP/2 (nghttp2) ---- */

static ssize_t h2_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct load_conn *c = ud;
    (void)s, (void)flags;
    if (write_all(c->fd, data, len) != 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return (ssize_t)len;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    struct load_conn *c = ud;
    (void)s, (void)flags;
    if (frame->hd.stream_id != c->stream_id) {
        return 0;
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        c->http_status = atoi((const char *)value);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        c->grpc_status = atoi((const char *)value);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        snprintf(c->grpc_message, sizeof c->grpc_message, "%.*s", (int)valuelen, value);
    }
    return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                      size_t len, void *ud)
{
    struct load_conn *c = ud;
    (void)s, (void)flags, (void)data;
    if (stream_id == c->stream_id) {
        c->resp_bytes += len;
    }
    return 0;
}

static int h2_on_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
    struct load_conn *c = ud;
    (void)s;
    if (stream_id == c->stream_id) {
        c->stream_closed = true;
        c->stream_error = error_code;
    }
    return 0;
}

static ssize_t h2_read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *source, void *ud)
{
    struct load_conn *c = ud;
    size_t n = c->body_len - c->body_off;
    (void)s, (void)stream_id, (void)source;
    if (n > length) {
        n = length;
    }
    memcpy(buf, c->body + c->body_off, n);
    c->body_off += n;
    if (c->body_off == c->body_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static int grpc_open(struct load_conn *c, char *err)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    int rv;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        snprintf(err, LOAD_ERR_SIZE, "nghttp2: out of memory");
        return -1;
    }
    nghttp2_session_callbacks_set_send_callback(cbs, h2_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_close);
    rv = nghttp2_session_client_new(&c->h2, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        snprintf(err, LOAD_ERR_SIZE, "nghttp2 session: %s", nghttp2_strerror(rv));
        return -1;
    }
    /* The client preface and SETTINGS go out with the first request. */
    rv = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    if (rv != 0) {
        snprintf(err, LOAD_ERR_SIZE, "nghttp2 settings: %s", nghttp2_strerror(rv));
        return -1;
    }
    return 0;
}

static size_t pb_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

/* One KV.Put call. */
static enum load_result grpc_put(struct load_conn *c, const char *key, size_t klen, char *err)
{
    const struct load_cfg *cfg = c->cfg;
    char authority[300];
    uint8_t *msg;
    size_t n = 5;
    nghttp2_data_provider prd = {.read_callback = h2_read_body};
    enum load_result rv = LOAD_BROKEN;
#define HDR(k, v) {(uint8_t *)(k), (uint8_t *)(v), sizeof(k) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    snprintf(authority, sizeof authority, "%s:%s", cfg->hosts[c->endpoint],
             cfg->ports[c->endpoint]);
    nghttp2_nv hdrs[] = {HDR(":method", "POST"),
                         HDR(":scheme", "http"),
                         HDR(":path", "/etcdserverpb.KV/Put"),
                         HDR(":authority", authority),
                         HDR("content-type", "application/grpc"),
                         HDR("te", "trailers")};
#undef HDR
    /* gRPC message: flag byte, 4-byte big-endian length, then PutRequest {1: key, 2: value}. */
    msg = malloc(5 + 2 * 10 + klen + cfg->value_size);
    if (msg == NULL) {
        snprintf(err, LOAD_ERR_SIZE, "out of memory");
        return LOAD_BROKEN;
    }
    msg[n++] = 0x0a;
    n += pb_varint(msg + n, klen);
    memcpy(msg + n, key, klen), n += klen;
    msg[n++] = 0x12;
    n += pb_varint(msg + n, cfg->value_size);
    memcpy(msg + n, cfg->value, cfg->value_size), n += cfg->value_size;
    msg[0] = 0;
    msg[1] = (uint8_t)((n - 5) >> 24), msg[2] = (uint8_t)((n - 5) >> 16);
    msg[3] = (uint8_t)((n - 5) >> 8), msg[4] = (uint8_t)(n - 5);

    c->body = msg, c->body_len = n, c->body_off = 0;
    c->stream_closed = false, c->stream_error = 0;
    c->http_status = 0, c->grpc_status = -1, c->grpc_message[0] = '\0', c->resp_bytes = 0;
    c->stream_id = nghttp2_submit_request(c->h2, NULL, hdrs, sizeof hdrs / sizeof hdrs[0], &prd, c);
    if (c->stream_id < 0) {
        snprintf(err, LOAD_ERR_SIZE, "submit: %s", nghttp2_strerror(c->stream_id));
        goto out;
    }
    while (!c->stream_closed) {
        ssize_t got;
        int e = nghttp2_session_send(c->h2);
        if (e != 0) {
            snprintf(err, LOAD_ERR_SIZE, "send: %s", nghttp2_strerror(e));
            goto out;
        }
        got = recv(c->fd, c->rbuf, sizeof c->rbuf, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            snprintf(err, LOAD_ERR_SIZE, "recv: %s",
                     got == 0 ? "connection closed" : strerror(errno));
            goto out;
        }
        got = nghttp2_session_mem_recv(c->h2, (const uint8_t *)c->rbuf, (size_t)got);
        if (got < 0) {
            snprintf(err, LOAD_ERR_SIZE, "http2: %s", nghttp2_strerror((int)got));
            goto out;
        }
    }
    /* Flush what the receive queued (WINDOW_UPDATE, PING and SETTINGS acks). */
    if (nghttp2_session_send(c->h2) != 0) {
        snprintf(err, LOAD_ERR_SIZE, "send failed");
        goto out;
    }
    if (c->stream_error != 0 || c->http_status != 200 || c->grpc_status != 0 || c->resp_bytes < 5) {
        snprintf(err, LOAD_ERR_SIZE, "put: http %d, stream error %u, grpc-status %d %s",
                 c->http_status, c->stream_error, c->grpc_status, c->grpc_message);
        rv = LOAD_FAILED;
        goto out;
    }
    rv = LOAD_OK;
out:
    free(msg);
    c->body = NULL;
    return rv;
}

/* ---- grpc-gateway JSON over HTTP/1.1 ---- */

/* Read until rbuf holds at least want bytes. */
static int http_fill(struct load_conn *c, size_t want, char *err)
{
    while (c->rlen < want) {
        ssize_t got;
        if (c->rlen == sizeof c->rbuf) {
            snprintf(err, LOAD_ERR_SIZE, "reply larger than %zu bytes", sizeof c->rbuf);
            return -1;
        }
        got = recv(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            snprintf(err, LOAD_ERR_SIZE, "recv: %s",
                     got == 0 ? "connection closed" : strerror(errno));
            return -1;
        }
        c->rlen += (size_t)got;
    }
    return 0;
}

static char *http_find(struct load_conn *c, size_t from, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = from; i + n <= c->rlen; i++) {
        if (memcmp(c->rbuf + i, s, n) == 0) {
            return c->rbuf + i;
        }
    }
    return NULL;
}

/* Find header name in [0, hdr_end) and return its value (NUL-terminated copy in out). */
static bool http_header(const char *hdrs, size_t len, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name);
    const char *p = hdrs, *end = hdrs + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL) {
            eol = end;
        }
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            size_t vlen;
            while (v < eol && (*v == ' ' || *v == '\t')) {
                v++;
            }
            vlen = (size_t)(eol - v);
            while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == ' ')) {
                vlen--;
            }
            snprintf(out, outsz, "%.*s", (int)vlen, v);
            return true;
        }
        p = eol + 1;
    }
    return false;
}

/* Read one reply; on success *status is the HTTP status and body/body_len the body (inside
 * rbuf, valid until the next call), and *close_after tells whether the server closes. */
static int http_read_reply(struct load_conn *c, int *status, const char **body, size_t *body_len,
                           bool *close_after, char *err)
{
    char *eoh, val[64];
    size_t hlen, total;
    c->rlen = 0;
    for (;;) {
        if (http_fill(c, c->rlen + 1, err) != 0) {
            return -1;
        }
        eoh = http_find(c, 0, "\r\n\r\n");
        if (eoh != NULL) {
            break;
        }
    }
    hlen = (size_t)(eoh - c->rbuf) + 4;
    if (sscanf(c->rbuf, "HTTP/1.%*d %d", status) != 1) {
        snprintf(err, LOAD_ERR_SIZE, "bad status line: %.40s", c->rbuf);
        return -1;
    }
    *close_after =
        http_header(c->rbuf, hlen, "Connection", val, sizeof val) && strcasecmp(val, "close") == 0;
    if (http_header(c->rbuf, hlen, "Content-Length", val, sizeof val)) {
        total = hlen + strtoul(val, NULL, 10);
        if (http_fill(c, total, err) != 0) {
            return -1;
        }
        *body = c->rbuf + hlen;
        *body_len = total - hlen;
        return 0;
    }
    if (http_header(c->rbuf, hlen, "Transfer-Encoding", val, sizeof val) &&
        strcasecmp(val, "chunked") == 0) {
        /* De-chunk in place: chunks are copied down to follow the headers. */
        size_t out = hlen, in = hlen;
        for (;;) {
            char *eol;
            size_t size;
            while ((eol = http_find(c, in, "\r\n")) == NULL) {
                if (http_fill(c, c->rlen + 1, err) != 0) {
                    return -1;
                }
            }
            size = strtoul(c->rbuf + in, NULL, 16);
            in = (size_t)(eol - c->rbuf) + 2;
            if (http_fill(c, in + size + 2, err) != 0) {
                return -1;
            }
            if (size == 0) {
                break; /* no trailers from the gateway */
            }
            memmove(c->rbuf + out, c->rbuf + in, size);
            out += size;
            in += size + 2;
        }
        *body = c->rbuf + hlen;
        *body_len = out - hlen;
        return 0;
    }
    /* No length: the body runs to the end of the connection. */
    for (;;) {
        size_t before = c->rlen;
        char ignore[LOAD_ERR_SIZE];
        if (http_fill(c, c->rlen + 1, ignore) != 0 || c->rlen == before) {
            break;
        }
    }
    *body = c->rbuf + hlen;
    *body_len = c->rlen - hlen;
    *close_after = true;
    return 0;
}

/* One POST /v3/kv/put. */
static enum load_result http_put(struct load_conn *c, const char *key, size_t klen, char *err)
{
    const struct load_cfg *cfg = c->cfg;
    char key_b64[128];
    char *req;
    size_t cap = 512 + strlen(cfg->value_b64);
    int len, hlen, status;
    enum load_result rv = LOAD_BROKEN;
    const char *body;
    size_t body_len;
    bool close_after;
    base64_encode((const unsigned char *)key, klen, key_b64);
    req = malloc(cap);
    if (req == NULL) {
        snprintf(err, LOAD_ERR_SIZE, "out of memory");
        return LOAD_BROKEN;
    }
    /* Body first, at a fixed offset, so its length is known for the header. */
    len = snprintf(req + 256, cap - 256, "{\"key\":\"%s\",\"value\":\"%s\"}", key_b64,
                   cfg->value_b64);
    hlen = snprintf(req, 256,
                    "POST /v3/kv/put HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: "
                    "application/json\r\nContent-Length: %d\r\n\r\n",
                    cfg->hosts[c->endpoint], cfg->ports[c->endpoint], len);
    if (hlen >= 256) {
        snprintf(err, LOAD_ERR_SIZE, "host name too long");
        goto out;
    }
    memmove(req + hlen, req + 256, (size_t)len + 1);
    if (write_all(c->fd, req, (size_t)(hlen + len)) != 0) {
        snprintf(err, LOAD_ERR_SIZE, "send: %s", strerror(errno));
        goto out;
    }
    if (http_read_reply(c, &status, &body, &body_len, &close_after, err) != 0) {
        goto out;
    }
    if (status != 200 || body_len < 10 || memcmp(body, "{\"header\"", 9) != 0) {
        snprintf(err, LOAD_ERR_SIZE, "put: http %d: %.*s", status,
                 (int)(body_len > 160 ? 160 : body_len), body);
        rv = close_after ? LOAD_BROKEN : LOAD_FAILED;
        goto out;
    }
    rv = close_after ? LOAD_OK_CLOSE : LOAD_OK;
out:
    free(req);
    return rv;
}

/* ---- client threads ---- */

static int conn_open(struct load_conn *c, char *err)
{
    const struct load_cfg *cfg = c->cfg;
    c->fd = tcp_connect(cfg->hosts[c->endpoint], cfg->ports[c->endpoint], err);
    if (c->fd < 0) {
        return -1;
    }
    if (cfg->proto == LOAD_GRPC && grpc_open(c, err) != 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static void *load_main(void *data)
{
    struct load_thread *t = data;
    const struct load_cfg *cfg = t->cfg;
    struct load_conn *c = calloc(1, sizeof *c);
    unsigned seed = t->index * 7919 + 17; /* as in tools/bench.c */
    if (c == NULL) {
        t->errors = t->ops;
        snprintf(t->last_error, sizeof t->last_error, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->fd = -1;
    c->endpoint = t->index % cfg->n_endpoints;
    uint64_t broken_since = 0; /* start of the current run of broken puts, 0 if none */
    for (unsigned long i = 0; i < t->ops; i++) {
        char key[64], err[LOAD_ERR_SIZE] = "";
        uint64_t t0 = now_us();
        enum load_result rv;
        int klen;
        (void)rand_r(&seed); /* tools/bench.c draws put-or-get first: keep its key sequence */
        klen = snprintf(key, sizeof key, "bench-%u", (unsigned)rand_r(&seed) % cfg->keys);
        if (c->fd < 0 && conn_open(c, err) != 0) {
            rv = LOAD_BROKEN;
        } else if (cfg->proto == LOAD_GRPC) {
            rv = grpc_put(c, key, (size_t)klen, err);
        } else {
            rv = http_put(c, key, (size_t)klen, err);
        }
        if (rv == LOAD_BROKEN || rv == LOAD_OK_CLOSE) {
            conn_close(c);
        }
        if (rv == LOAD_BROKEN) {
            broken_since = broken_since ? broken_since : t0;
            if (now_us() - broken_since > LOAD_GIVE_UP_US) {
                t->errors += t->ops - i;
                snprintf(t->last_error, sizeof t->last_error,
                         "%s; gave up after %d s without a working connection", err,
                         LOAD_GIVE_UP_US / 1000000);
                break;
            }
        } else {
            broken_since = 0;
        }
        if (rv == LOAD_FAILED || rv == LOAD_BROKEN) {
            t->errors++;
            snprintf(t->last_error, sizeof t->last_error, "%s", err);
            if (rv == LOAD_BROKEN) {
                usleep(10000); /* do not spin on a dead endpoint */
            }
            continue;
        }
        t->lat_us[t->done++] = now_us() - t0;
    }
    conn_close(c);
    free(c);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: etcd_load --endpoints H:P[,H:P...] [--proto grpc|http] [--clients C]\n"
               "                 [--ops N] [--value-size B] [--keys K]\n"
               "\n"
               "Runs C client threads (default 16), each with its own connection to one of the\n"
               "endpoints (round robin), issuing N puts in all (default 20000) of B-byte values\n"
               "(default 128) over K keys (default 1000) against etcd's v3 KV API, one put at a\n"
               "time per thread. Prints throughput and p50/p99/p999/max latency in the format of\n"
               "`raftfs bench`.\n"
               "\n"
               "  --proto grpc   native gRPC over HTTP/2 cleartext (default)\n"
               "  --proto http   the grpc-gateway JSON API, POST /v3/kv/put over HTTP/1.1\n"
               "                 keep-alive (etcd serves it through an internal gRPC hop)\n"
               "\n"
               "Exit status: 0 if every put succeeded, 1 if some failed, 2 on bad usage.\n");
}

static int parse_endpoints(char *list, struct load_cfg *cfg)
{
    char *save = NULL;
    for (char *ep = strtok_r(list, ",", &save); ep != NULL; ep = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(ep, ':');
        if (strncmp(ep, "http://", 7) == 0) {
            ep += 7;
        }
        if (colon == NULL || colon < ep || colon[1] == '\0' ||
            cfg->n_endpoints == LOAD_MAX_ENDPOINTS) {
            return -1;
        }
        *colon = '\0';
        cfg->hosts[cfg->n_endpoints] = ep;
        cfg->ports[cfg->n_endpoints] = colon + 1;
        cfg->n_endpoints++;
    }
    return cfg->n_endpoints > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"endpoints", required_argument, NULL, 'e'},
        {"proto", required_argument, NULL, 'p'},
        {"clients", required_argument, NULL, 'c'},
        {"ops", required_argument, NULL, 'n'},
        {"value-size", required_argument, NULL, 'v'},
        {"keys", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct load_cfg cfg = {
        .proto = LOAD_GRPC, .clients = 16, .ops = 20000, .value_size = 128, .keys = 1000};
    char *endpoints = NULL;
    struct load_thread *threads;
    uint64_t *all;
    unsigned long n_all = 0, errors = 0;
    uint64_t t0, t1;
    int ch;

    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
            case 'e':
                endpoints = optarg;
                break;
            case 'p':
                if (strcmp(optarg, "grpc") == 0) {
                    cfg.proto = LOAD_GRPC;
                } else if (strcmp(optarg, "http") == 0) {
                    cfg.proto = LOAD_HTTP;
                } else {
                    fprintf(stderr, "etcd_load: --proto is grpc or http\n");
                    return 2;
                }
                break;
            case 'c':
                cfg.clients = (unsigned)strtoul(optarg, NULL, 10);
                break;
            case 'n':
                cfg.ops = strtoul(optarg, NULL, 10);
                break;
            case 'v':
                cfg.value_size = strtoul(optarg, NULL, 10);
                break;
            case 'k':
                cfg.keys = (unsigned)strtoul(optarg, NULL, 10);
                break;
            case 'h':
                usage(stdout);
                return 0;
            default:
                usage(stderr);
                return 2;
        }
    }
    if (optind != argc || endpoints == NULL || parse_endpoints(endpoints, &cfg) != 0 ||
        cfg.clients == 0 || cfg.ops == 0 || cfg.keys == 0 || cfg.value_size > 1 << 20) {
        fprintf(stderr, "etcd_load: --endpoints host:port[,...] is required; --clients, --ops "
                        "and --keys must be positive, --value-size at most 1 MiB (see --help)\n");
        return 2;
    }
    cfg.value = malloc(cfg.value_size + 1);
    cfg.value_b64 = malloc(cfg.value_size / 3 * 4 + 8);
    threads = calloc(cfg.clients, sizeof *threads);
    all = malloc(cfg.ops * sizeof *all);
    if (cfg.value == NULL || cfg.value_b64 == NULL || threads == NULL || all == NULL) {
        fprintf(stderr, "etcd_load: out of memory\n");
        return 2;
    }
    memset(cfg.value, 'v', cfg.value_size);
    base64_encode((const unsigned char *)cfg.value, cfg.value_size, cfg.value_b64);

    t0 = now_us();
    for (unsigned i = 0; i < cfg.clients; i++) {
        threads[i].cfg = &cfg;
        threads[i].index = i;
        threads[i].ops = cfg.ops / cfg.clients + (i < cfg.ops % cfg.clients);
        threads[i].lat_us = malloc((threads[i].ops + 1) * sizeof(uint64_t));
        if (threads[i].lat_us == NULL ||
            pthread_create(&threads[i].thread, NULL, load_main, &threads[i]) != 0) {
            fprintf(stderr, "etcd_load: cannot start client thread %u\n", i);
            return 2;
        }
    }
    for (unsigned i = 0; i < cfg.clients; i++) {
        pthread_join(threads[i].thread, NULL);
        memcpy(all + n_all, threads[i].lat_us, threads[i].done * sizeof(uint64_t));
        n_all += threads[i].done;
        errors += threads[i].errors;
        if (threads[i].errors > 0) {
            fprintf(stderr, "client %u: %lu errors, last: %s\n", i, threads[i].errors,
                    threads[i].last_error);
        }
        free(threads[i].lat_us);
    }
    t1 = now_us();
    qsort(all, n_all, sizeof *all, cmp_u64);
    printf("ops %lu  errors %lu  clients %u  value %zu B  mix 1:0  time %.2f s\n", n_all, errors,
           cfg.clients, cfg.value_size, (t1 - t0) / 1e6);
    if (n_all > 0) {
        printf("throughput %.0f ops/s  latency ms: p50 %.2f  p99 %.2f  p999 %.2f  max %.2f\n",
               n_all / ((t1 - t0) / 1e6), all[n_all / 2] / 1e3, all[n_all * 99 / 100] / 1e3,
               all[n_all * 999 / 1000] / 1e3, all[n_all - 1] / 1e3);
    }
    free(all);
    free(threads);
    free(cfg.value);
    free(cfg.value_b64);
    return errors > 0 ? 1 : 0;
}
