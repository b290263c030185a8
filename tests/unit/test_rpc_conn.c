/* Tests of framed connections, listeners and peers (rpc/rpc.h) over loopback TCP: pipelined
 * echo, frames split at every byte, bad input from raw sockets closing only that
 * connection, close from inside on_frame, output limits, reconnects after a server
 * restart, busy ports and address parsing. Each test listens on 127.0.0.1:0 and every run
 * of the loop is bounded by a safety timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "common/log.h"
#include "rpc/rpc.h"

/* Frame types the test server knows; anything else is a protocol error. */
#define T_PING 1
#define T_DATA 2
#define T_BULK 3

#define SRV_MAX_FRAME (1u << 20)
#define MAX_RECORDED  16

struct recorded {
    uint32_t type;
    uint64_t req_id;
    size_t len;
    unsigned char bytes[64];
};

struct fixture;
typedef void (*hook_fn)(struct fixture *f, struct rpc_conn *c);

struct fixture {
    struct rpc_loop *loop;
    struct rpc_listener *ls;
    struct rpc_handler srv;
    uint16_t port;
    char addr[64];
    struct rpc_timer *safety;
    bool timed_out;
    int errors; /* failed checks inside callbacks (asserting there would leave the loop) */

    /* Server side: an echo server with knobs. */
    int srv_opens, srv_closes, srv_frames;
    struct recorded rec[MAX_RECORDED];
    int srv_close_at_frame;     /* > 0: close the connection on this frame, without reply */
    bool srv_close_after_reply; /* close right after queueing each reply */
    int stop_at_srv_frames;     /* > 0: stop the loop after this many frames */
    int stop_at_srv_closes;     /* > 0: stop the loop after this many closes */
    hook_fn srv_open_hook;
    hook_fn srv_close_hook;

    /* Client side: an rpc_peer. */
    struct rpc_peer *peer;
    struct rpc_handler cli;
    int cli_opens, cli_closes, cli_frames;
    hook_fn cli_open_hook;

    /* Raw socket clients. */
    int raw_fd;
    int raw_fd2;

    /* Per-test state. */
    unsigned n_frames;
    unsigned char *seen;
    unsigned char *scratch;
    unsigned replies;
    bool echo_ok;
    const unsigned char *bad;
    size_t bad_len;
    bool bad_close_after_write;
    int flood_sent, flood_rv, flood_after_rv, toobig_rv;
    uint64_t relisten_ms, reconnect_ms;
    const unsigned char *slow;
    size_t slow_len, slow_pos;
    struct rpc_timer *slow_timer;
};

#define CHECK(f, cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            (f)->errors++;                                                                         \
        }                                                                                          \
    } while (0)

/* --- helpers --- */

static size_t put_frame(unsigned char *p, uint32_t type, uint64_t req_id, const void *payload,
                        size_t len)
{
    rfs_put_le32(p, (uint32_t)(12 + len));
    rfs_put_le32(p + 4, type);
    rfs_put_le64(p + 8, req_id);
    if (len > 0) {
        memcpy(p + 16, payload, len);
    }
    return 16 + len;
}

static int raw_connect(uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval tv = {.tv_sec = 3};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    /* A blocking connect completes from the listen backlog, before the loop accepts. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static int raw_write(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read until EOF or error (with the 3 s receive timeout): returns the bytes read, and
 * *closed true if the server closed the connection (EOF or reset). */
static size_t raw_drain(int fd, unsigned char *buf, size_t cap, bool *closed)
{
    size_t got = 0;
    unsigned char sink[4096];
    *closed = false;
    for (;;) {
        unsigned char *dst = got < cap ? buf + got : sink;
        size_t room = got < cap ? cap - got : sizeof sink;
        ssize_t n = recv(fd, dst, room, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            *closed = true;
            return got;
        }
        if (n < 0) {
            return got;
        }
        if (got < cap) {
            got += (size_t)n;
        }
    }
}

/* A port nobody listens on (bound for a moment, then released). */
static uint16_t unused_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* --- the test server: echo every frame --- */

static bool srv_known_type(uint32_t type, void *data)
{
    (void)data;
    return type >= T_PING && type <= T_BULK;
}

static void srv_on_open(struct rpc_conn *c, void *data)
{
    struct fixture *f = data;
    f->srv_opens++;
    CHECK(f, strncmp(rpc_conn_peer_name(c), "127.0.0.1:", 10) == 0);
    if (f->srv_open_hook != NULL) {
        f->srv_open_hook(f, c);
    }
}

static void srv_on_frame(struct rpc_conn *c, uint32_t type, uint64_t req_id, const void *payload,
                         size_t len, void *data)
{
    struct fixture *f = data;
    int rv;

    if (f->srv_frames < MAX_RECORDED) {
        struct recorded *r = &f->rec[f->srv_frames];
        r->type = type;
        r->req_id = req_id;
        r->len = len;
        memcpy(r->bytes, payload, len < sizeof r->bytes ? len : sizeof r->bytes);
    }
    f->srv_frames++;
    if (f->srv_close_at_frame > 0 && f->srv_frames == f->srv_close_at_frame) {
        rpc_conn_close(c, "test: close at frame");
        CHECK(f, rpc_conn_send(c, type, req_id, payload, len) == RFS_ESTOPPED);
        return;
    }
    rv = rpc_conn_send(c, type, req_id, payload, len);
    CHECK(f, rv == 0);
    if (f->srv_close_after_reply) {
        rpc_conn_close(c, "test: close after reply");
    }
    if (f->stop_at_srv_frames > 0 && f->srv_frames == f->stop_at_srv_frames) {
        rpc_loop_stop(f->loop);
    }
}

static void srv_on_close(struct rpc_conn *c, void *data)
{
    struct fixture *f = data;
    f->srv_closes++;
    if (f->srv_close_hook != NULL) {
        f->srv_close_hook(f, c);
    }
    if (f->stop_at_srv_closes > 0 && f->srv_closes == f->stop_at_srv_closes) {
        rpc_loop_stop(f->loop);
    }
}

/* --- the default client handler: counts; tests replace on_frame --- */

static void cli_on_open(struct rpc_conn *c, void *data)
{
    struct fixture *f = data;
    f->cli_opens++;
    if (f->cli_open_hook != NULL) {
        f->cli_open_hook(f, c);
    }
}

static void cli_on_close(struct rpc_conn *c, void *data)
{
    struct fixture *f = data;
    (void)c;
    f->cli_closes++;
}

static void cli_on_frame_ping(struct rpc_conn *c, uint32_t type, uint64_t req_id,
                              const void *payload, size_t len, void *data)
{
    struct fixture *f = data;
    (void)c;
    f->cli_frames++;
    if (type == T_PING && req_id == 42 && len == 4 && memcmp(payload, "ping", 4) == 0) {
        f->echo_ok = true;
        rpc_loop_stop(f->loop);
    }
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char errmsg[RFS_ERRMSG_SIZE];

    assert_non_null(f);
    f->raw_fd = -1;
    f->raw_fd2 = -1;
    assert_int_equal(rpc_loop_new(&f->loop, errmsg), 0);
    f->srv = (struct rpc_handler){
        .data = f,
        .known_type = srv_known_type,
        .on_frame = srv_on_frame,
        .on_open = srv_on_open,
        .on_close = srv_on_close,
        .max_frame = SRV_MAX_FRAME,
    };
    f->cli = (struct rpc_handler){
        .data = f,
        .on_frame = cli_on_frame_ping,
        .on_open = cli_on_open,
        .on_close = cli_on_close,
    };
    assert_int_equal(rpc_listen(f->loop, "127.0.0.1:0", &f->srv, &f->ls, errmsg), 0);
    f->port = rpc_listener_port(f->ls);
    assert_true(f->port != 0);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%u", (unsigned)f->port);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    /* Listeners, peers and connections still open are the loop's to free. */
    rpc_loop_free(f->loop);
    if (f->raw_fd >= 0) {
        close(f->raw_fd);
    }
    if (f->raw_fd2 >= 0) {
        close(f->raw_fd2);
    }
    free(f->seen);
    free(f->scratch);
    free(f);
    return 0;
}

static void safety_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    (void)t;
    f->timed_out = true;
    f->safety = NULL;
    rpc_loop_stop(f->loop);
}

/* Run the loop until a callback calls rpc_loop_stop(), or at most ms. */
static void run_bounded(struct fixture *f, uint64_t ms)
{
    f->timed_out = false;
    assert_int_equal(rpc_timer_start(f->loop, ms, 0, safety_cb, f, &f->safety), 0);
    assert_int_equal(rpc_loop_run(f->loop), 0);
    if (f->safety != NULL) {
        rpc_timer_stop(f->safety);
        f->safety = NULL;
    }
}

static void stop_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    (void)t;
    rpc_loop_stop(f->loop);
}

static void start_client(struct fixture *f)
{
    char errmsg[RFS_ERRMSG_SIZE];
    assert_int_equal(rpc_peer_new(f->loop, f->addr, &f->cli, &f->peer, errmsg), 0);
}

/* --- pipelined echo --- */

#define ECHO_FRAMES 10000

static size_t echo_size(unsigned id)
{
    if (id == 1) {
        return 65536;
    }
    /* Mostly small frames, one in 16 anywhere up to 64 KiB. */
    return id % 16 == 0 ? (size_t)((id * 7919u) % 65537u) : (size_t)(id % 301u);
}

static void echo_fill(unsigned char *p, unsigned id, size_t len)
{
    for (size_t j = 0; j < len; j++) {
        p[j] = (unsigned char)(id * 31u + j * 7u);
    }
}

static void echo_open_hook(struct fixture *f, struct rpc_conn *c)
{
    (void)c;
    for (unsigned id = 0; id < f->n_frames; id++) {
        size_t len = echo_size(id);
        int rv;
        echo_fill(f->scratch, id, len);
        if (id % 2 == 0) {
            rv = rpc_peer_send(f->peer, T_DATA, id, f->scratch, len);
        } else {
            /* Odd ids go out in three pieces. */
            struct rfs_buf parts[3] = {
                {f->scratch, len / 3},
                {f->scratch + len / 3, 0},
                {f->scratch + len / 3, len - len / 3},
            };
            rv = rpc_peer_sendv(f->peer, T_DATA, id, parts, 3);
        }
        CHECK(f, rv == 0);
    }
}

static void echo_on_frame(struct rpc_conn *c, uint32_t type, uint64_t req_id, const void *payload,
                          size_t len, void *data)
{
    struct fixture *f = data;
    (void)c;
    f->cli_frames++;
    if (type != T_DATA || req_id >= f->n_frames || f->seen[req_id] ||
        len != echo_size((unsigned)req_id)) {
        CHECK(f, !"unexpected reply");
        return;
    }
    echo_fill(f->scratch, (unsigned)req_id, len);
    CHECK(f, len == 0 || memcmp(payload, f->scratch, len) == 0);
    f->seen[req_id] = 1;
    if (++f->replies == f->n_frames) {
        rpc_loop_stop(f->loop);
    }
}

static void test_echo_of_many_pipelined_frames_matched_by_id(void **state)
{
    struct fixture *f = *state;

    f->n_frames = ECHO_FRAMES;
    f->seen = calloc(ECHO_FRAMES, 1);
    f->scratch = malloc(65536);
    assert_non_null(f->seen);
    assert_non_null(f->scratch);
    f->cli.on_frame = echo_on_frame;
    f->cli_open_hook = echo_open_hook;
    start_client(f);
    run_bounded(f, 10000);

    assert_false(f->timed_out);
    assert_int_equal(f->errors, 0);
    assert_int_equal(f->replies, ECHO_FRAMES);
    assert_int_equal(f->srv_frames, ECHO_FRAMES);
    assert_int_equal(f->cli_opens, 1);
    assert_int_equal(f->cli_closes, 0);
    assert_int_equal(f->srv_closes, 0);
    assert_true(rpc_peer_connected(f->peer));
}

/* --- frames split at every byte boundary --- */

static void slow_write_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    if (f->slow_pos < f->slow_len) {
        CHECK(f, raw_write(f->raw_fd, f->slow + f->slow_pos, 1) == 0);
        f->slow_pos++;
    }
    if (f->slow_pos == f->slow_len) {
        rpc_timer_stop(t);
        f->slow_timer = NULL;
    }
}

static void test_frames_written_byte_by_byte_are_reassembled(void **state)
{
    struct fixture *f = *state;
    unsigned char buf[256];
    unsigned char payload[40];
    size_t len = 0;

    for (size_t i = 0; i < sizeof payload; i++) {
        payload[i] = (unsigned char)(0xA0 + i);
    }
    len += put_frame(buf + len, T_PING, 1, NULL, 0);
    len += put_frame(buf + len, T_DATA, 0x0102030405060708u, payload, 1);
    len += put_frame(buf + len, T_BULK, UINT64_MAX, payload, sizeof payload);
    f->slow = buf;
    f->slow_len = len;
    f->stop_at_srv_frames = 3;
    f->raw_fd = raw_connect(f->port);
    assert_true(f->raw_fd >= 0);
    /* One byte per millisecond: each byte arrives in a separate read. */
    assert_int_equal(rpc_timer_start(f->loop, 1, 1, slow_write_cb, f, &f->slow_timer), 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->errors, 0);
    assert_int_equal(f->srv_frames, 3);
    assert_int_equal(f->rec[0].type, T_PING);
    assert_int_equal(f->rec[0].req_id, 1);
    assert_int_equal(f->rec[0].len, 0);
    assert_int_equal(f->rec[1].type, T_DATA);
    assert_true(f->rec[1].req_id == 0x0102030405060708u);
    assert_int_equal(f->rec[1].len, 1);
    assert_int_equal(f->rec[1].bytes[0], 0xA0);
    assert_int_equal(f->rec[2].type, T_BULK);
    assert_true(f->rec[2].req_id == UINT64_MAX);
    assert_int_equal(f->rec[2].len, sizeof payload);
    assert_memory_equal(f->rec[2].bytes, payload, sizeof payload);
    assert_int_equal(f->srv_closes, 0);
}

/* --- bad input closes only that connection --- */

/* Once the good client is connected, a raw client sends the bad bytes. */
static void bad_open_hook(struct fixture *f, struct rpc_conn *c)
{
    (void)c;
    f->raw_fd = raw_connect(f->port);
    CHECK(f, f->raw_fd >= 0);
    CHECK(f, raw_write(f->raw_fd, f->bad, f->bad_len) == 0);
    if (f->bad_close_after_write) {
        close(f->raw_fd);
        f->raw_fd = -1;
    }
}

/* The server dropped the bad connection: the good client must still get answers. */
static void bad_close_hook(struct fixture *f, struct rpc_conn *c)
{
    (void)c;
    if (f->srv_closes == 1) { /* later closes come from freeing the loop */
        CHECK(f, rpc_peer_send(f->peer, T_PING, 42, "ping", 4) == 0);
    }
}

static void run_bad_input_case(struct fixture *f, const void *bad, size_t len, bool close_after)
{
    f->bad = bad;
    f->bad_len = len;
    f->bad_close_after_write = close_after;
    f->cli_open_hook = bad_open_hook;
    f->srv_close_hook = bad_close_hook;
    start_client(f);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->errors, 0);
    assert_int_equal(f->srv_opens, 2);
    assert_int_equal(f->srv_closes, 1); /* the bad connection, and only it */
    assert_true(f->echo_ok);
    assert_int_equal(f->cli_closes, 0);
    assert_true(rpc_peer_connected(f->peer));
    if (!close_after) {
        bool closed;
        unsigned char sink[64];
        raw_drain(f->raw_fd, sink, sizeof sink, &closed);
        assert_true(closed);
    }
}

static void test_random_bytes_close_only_that_connection(void **state)
{
    struct fixture *f = *state;
    unsigned char bad[4096];
    uint64_t s = 0x9E3779B97F4A7C15u;

    for (size_t i = 0; i < sizeof bad; i++) {
        bad[i] = (unsigned char)xorshift(&s);
    }
    run_bad_input_case(f, bad, sizeof bad, false);
}

static void test_oversized_length_closes_only_that_connection(void **state)
{
    struct fixture *f = *state;
    unsigned char bad[16];

    rfs_put_le32(bad, SRV_MAX_FRAME + 1);
    rfs_put_le32(bad + 4, T_DATA);
    rfs_put_le64(bad + 8, 7);
    /* Closed on the header alone: the server does not wait for a megabyte of payload. */
    run_bad_input_case(f, bad, sizeof bad, false);
}

static void test_huge_length_closes_only_that_connection(void **state)
{
    struct fixture *f = *state;
    unsigned char bad[16];

    rfs_put_le32(bad, UINT32_MAX);
    rfs_put_le32(bad + 4, T_DATA);
    rfs_put_le64(bad + 8, 7);
    run_bad_input_case(f, bad, sizeof bad, false);
}

static void test_length_below_12_closes_only_that_connection(void **state)
{
    struct fixture *f = *state;
    unsigned char bad[32] = {0};

    rfs_put_le32(bad, 11);
    rfs_put_le32(bad + 4, T_PING);
    run_bad_input_case(f, bad, sizeof bad, false);
}

static void test_zero_length_closes_only_that_connection(void **state)
{
    struct fixture *f = *state;
    unsigned char bad[16] = {0};

    run_bad_input_case(f, bad, sizeof bad, false);
}

static void test_truncated_payload_then_close_closes_only_that_connection(void **state)
{
    struct fixture *f = *state;
    unsigned char bad[16 + 50];

    rfs_put_le32(bad, 12 + 100);
    rfs_put_le32(bad + 4, T_DATA);
    rfs_put_le64(bad + 8, 9);
    memset(bad + 16, 0x5A, 50);
    run_bad_input_case(f, bad, sizeof bad, true);
    assert_int_equal(f->srv_frames, 1); /* only the good ping */
}

static void test_unknown_type_closes_only_that_connection(void **state)
{
    struct fixture *f = *state;
    unsigned char bad[64];
    size_t len = put_frame(bad, 999, 5, "hello", 5);

    run_bad_input_case(f, bad, len, false);
    assert_int_equal(f->srv_frames, 1); /* the frame of unknown type was not delivered */
}

/* --- closing from callbacks --- */

static void test_close_in_on_frame_drops_the_rest_of_the_buffered_frames(void **state)
{
    struct fixture *f = *state;
    unsigned char buf[10 * 24];
    size_t len = 0;

    for (unsigned i = 0; i < 10; i++) {
        len += put_frame(buf + len, T_DATA, i, "12345678", 8);
    }
    f->srv_close_at_frame = 3;
    f->stop_at_srv_closes = 1;
    f->raw_fd = raw_connect(f->port);
    assert_true(f->raw_fd >= 0);
    /* All ten frames in one write, so they reach the server in one read. */
    assert_int_equal(raw_write(f->raw_fd, buf, len), 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->errors, 0);
    assert_int_equal(f->srv_frames, 3);
    assert_int_equal(f->srv_closes, 1);
}

static void test_reply_queued_before_close_is_sent(void **state)
{
    struct fixture *f = *state;
    unsigned char buf[64], got[64];
    size_t len = put_frame(buf, T_DATA, 77, "bye", 3);
    bool closed;

    f->srv_close_after_reply = true;
    f->stop_at_srv_closes = 1;
    f->raw_fd = raw_connect(f->port);
    assert_true(f->raw_fd >= 0);
    assert_int_equal(raw_write(f->raw_fd, buf, len), 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->errors, 0);
    assert_int_equal(raw_drain(f->raw_fd, got, sizeof got, &closed), len);
    assert_memory_equal(got, buf, len);
    assert_true(closed);
}

static void free_peer_on_frame(struct rpc_conn *c, uint32_t type, uint64_t req_id,
                               const void *payload, size_t len, void *data)
{
    struct fixture *f = data;
    (void)c;
    (void)type;
    (void)req_id;
    (void)payload;
    (void)len;
    f->cli_frames++;
    rpc_peer_free(f->peer); /* from the peer's own callback */
    f->peer = NULL;
}

static void ping_open_hook(struct fixture *f, struct rpc_conn *c)
{
    CHECK(f, rpc_conn_send(c, T_PING, 42, "ping", 4) == 0);
    CHECK(f, rpc_conn_send(c, T_PING, 43, "ping", 4) == 0);
}

static void test_peer_freed_from_its_own_on_frame_stops_callbacks(void **state)
{
    struct fixture *f = *state;

    f->cli.on_frame = free_peer_on_frame;
    f->cli_open_hook = ping_open_hook;
    f->stop_at_srv_closes = 1;
    start_client(f);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->errors, 0);
    assert_null(f->peer);
    assert_int_equal(f->cli_frames, 1); /* the second reply was not delivered */
    assert_int_equal(f->cli_closes, 0); /* no callbacks after rpc_peer_free() */
    assert_int_equal(f->srv_closes, 1);
}

/* --- limits --- */

static void flood_open_hook(struct fixture *f, struct rpc_conn *c)
{
    static const unsigned char chunk[64 << 10];
    int rv = 0;

    f->toobig_rv = rpc_conn_send(c, T_BULK, 1, chunk, 0);
    CHECK(f, f->toobig_rv == 0);
    {
        /* 12 + payload over max_frame: refused, the connection stays. */
        unsigned char *big = calloc(1, SRV_MAX_FRAME);
        CHECK(f, big != NULL);
        f->toobig_rv = rpc_conn_send(c, T_BULK, 2, big, SRV_MAX_FRAME - 11);
        CHECK(f, rpc_conn_send(c, T_BULK, 2, big, SRV_MAX_FRAME - 12) == 0);
        free(big);
    }
    for (int i = 0; i < 1000 && rv == 0; i++) {
        rv = rpc_conn_send(c, T_BULK, (uint64_t)i, chunk, sizeof chunk);
        if (rv == 0) {
            f->flood_sent++;
        }
    }
    f->flood_rv = rv;
    f->flood_after_rv = rpc_conn_send(c, T_PING, 0, NULL, 0);
}

static void test_output_over_max_output_closes_the_connection(void **state)
{
    struct fixture *f = *state;
    char errmsg[RFS_ERRMSG_SIZE];
    struct rpc_handler h = f->srv;

    /* A second listener with a 4 MiB output limit; the raw client never reads. */
    rpc_listener_close(f->ls);
    h.max_output = 4u << 20;
    assert_int_equal(rpc_listen(f->loop, "127.0.0.1:0", &h, &f->ls, errmsg), 0);
    f->srv_open_hook = flood_open_hook;
    f->stop_at_srv_closes = 1;
    f->raw_fd = raw_connect(rpc_listener_port(f->ls));
    assert_true(f->raw_fd >= 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->errors, 0);
    assert_int_equal(f->toobig_rv, RFS_ETOOBIG);
    assert_int_equal(f->flood_rv, RFS_ESTOPPED);
    assert_int_equal(f->flood_after_rv, RFS_ESTOPPED);
    /* 16 + 1 MiB already queued, then 64 KiB frames up to 4 MiB. */
    assert_true(f->flood_sent >= 40 && f->flood_sent < 64);
    assert_int_equal(f->srv_closes, 1);
}

/* --- peers: reconnects and refusals --- */

static void relisten_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    char errmsg[RFS_ERRMSG_SIZE];
    (void)t;
    CHECK(f, rpc_listen(f->loop, f->addr, &f->srv, &f->ls, errmsg) == 0);
    CHECK(f, f->ls != NULL && rpc_listener_port(f->ls) == f->port);
    f->relisten_ms = rpc_now_ms();
}

/* The first connection makes the server "restart": its listener closes (from inside its
 * own on_open), and opens again on the same port 150 ms later. */
static void restart_open_hook(struct fixture *f, struct rpc_conn *c)
{
    (void)c;
    if (f->srv_opens == 1) {
        rpc_listener_close(f->ls);
        f->ls = NULL;
        CHECK(f, rpc_timer_start(f->loop, 150, 0, relisten_cb, f, NULL) == 0);
    }
}

static void reconnect_open_hook(struct fixture *f, struct rpc_conn *c)
{
    if (f->cli_opens == 2) {
        f->reconnect_ms = rpc_now_ms();
        CHECK(f, rpc_conn_send(c, T_PING, 42, "ping", 4) == 0);
    }
}

static void test_peer_reconnects_after_server_restarts_on_same_port(void **state)
{
    struct fixture *f = *state;

    f->srv_open_hook = restart_open_hook;
    f->cli_open_hook = reconnect_open_hook;
    start_client(f);
    run_bounded(f, 8000);

    assert_false(f->timed_out);
    assert_int_equal(f->errors, 0);
    assert_true(f->echo_ok);
    assert_int_equal(f->cli_opens, 2);
    assert_int_equal(f->cli_closes, 1);
    assert_int_equal(f->srv_opens, 2);
    assert_int_equal(f->srv_closes, 0); /* closing a listener does not call back */
    /* The backoff is capped at 2 s. */
    assert_true(f->reconnect_ms >= f->relisten_ms);
    assert_true(f->reconnect_ms - f->relisten_ms <= 2500);
}

static void test_peer_send_while_disconnected_is_refused(void **state)
{
    struct fixture *f = *state;
    char errmsg[RFS_ERRMSG_SIZE];
    char addr[64];
    struct rfs_buf part = {"x", 1};

    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)unused_port());
    assert_int_equal(rpc_peer_new(f->loop, addr, &f->cli, &f->peer, errmsg), 0);
    assert_false(rpc_peer_connected(f->peer));
    assert_int_equal(rpc_peer_send(f->peer, T_PING, 1, "x", 1), RFS_EUNAVAIL);
    /* Several refused attempts with backoff. */
    assert_int_equal(rpc_timer_start(f->loop, 300, 0, stop_cb, f, NULL), 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_false(rpc_peer_connected(f->peer));
    assert_int_equal(rpc_peer_send(f->peer, T_PING, 2, "x", 1), RFS_EUNAVAIL);
    assert_int_equal(rpc_peer_sendv(f->peer, T_PING, 3, &part, 1), RFS_EUNAVAIL);
    assert_int_equal(f->cli_opens, 0);
    assert_int_equal(f->cli_closes, 0);
    rpc_peer_free(f->peer);
    f->peer = NULL;
}

/* --- flushing inside a callback --- */

/* A small frame is queued until the end of the loop iteration; rpc_peer_flush sends it at
 * once, so the other end has it while the callback is still running (the Raft leader
 * relies on this to overlap its followers' log writes with its own). */
static void flush_open_hook(struct fixture *f, struct rpc_conn *c)
{
    unsigned char buf[64];
    struct timeval tv = {.tv_sec = 0, .tv_usec = 300 * 1000};
    size_t got = 0;
    int fd;
    (void)c;
    fd = accept(f->raw_fd2, NULL, NULL);
    CHECK(f, fd >= 0);
    if (fd < 0) {
        rpc_loop_stop(f->loop);
        return;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK(f, rpc_peer_send(f->peer, T_PING, 7, "flushed", 7) == 0);
    rpc_peer_flush(f->peer);
    while (got < 16 + 7) {
        ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    CHECK(f, got == 16 + 7 && memcmp(buf + 16, "flushed", 7) == 0); /* header: 16 bytes */
    close(fd);
    rpc_loop_stop(f->loop);
}

static void test_peer_flush_sends_before_the_callback_returns(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    char errmsg[RFS_ERRMSG_SIZE], addr[64];

    f->raw_fd2 = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->raw_fd2 >= 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(f->raw_fd2, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->raw_fd2, 4), 0);
    assert_int_equal(getsockname(f->raw_fd2, (struct sockaddr *)&sa, &len), 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    f->cli_open_hook = flush_open_hook;
    assert_int_equal(rpc_peer_new(f->loop, addr, &f->cli, &f->peer, errmsg), 0);
    run_bounded(f, 5000);
    assert_false(f->timed_out);
    assert_int_equal(f->cli_opens, 1);
    assert_int_equal(f->errors, 0);
}

/* --- freeing with everything open --- */

static void test_loop_free_with_live_connections_does_not_leak(void **state)
{
    struct fixture *f = *state;
    struct rpc_peer *idle;
    char errmsg[RFS_ERRMSG_SIZE];

    f->stop_at_srv_frames = 1;
    f->cli_open_hook = ping_open_hook;
    f->cli.on_frame = NULL;
    start_client(f);
    assert_int_equal(rpc_peer_new(f->loop, f->addr, &f->cli, &idle, errmsg), 0);
    f->raw_fd = raw_connect(f->port);
    assert_true(f->raw_fd >= 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_true(f->srv_frames >= 1); /* frames of the same iteration are still handled */
    /* Queued output, a pending timer, a pending post, three accepted connections. */
    assert_int_equal(rpc_peer_send(f->peer, T_DATA, 5, "pending", 7), 0);
    assert_int_equal(rpc_timer_start(f->loop, 10000, 0, stop_cb, f, NULL), 0);
    rpc_loop_free(f->loop);
    f->loop = NULL;

    /* Teardown does not call back. */
    assert_int_equal(f->srv_closes, 0);
    assert_int_equal(f->cli_closes, 0);
}

static void stop_loop_cb(struct rpc_timer *t, void *data)
{
    (void)t;
    rpc_loop_stop(data);
}

static void count_open(struct rpc_conn *c, void *data)
{
    (void)c;
    (*(int *)data)++;
}

/* Fail the nth allocation for every n that the setup and a short run reach: each call
 * reports RFS_ENOMEM or copes (a dropped connection, a refused send), and nothing leaks. */
static void test_every_allocation_failure_is_reported_or_survived(void **state)
{
    (void)state;
    for (unsigned long n = 1; n <= 24; n++) {
        struct rpc_loop *l = NULL;
        struct rpc_listener *ls = NULL;
        struct rpc_peer *p = NULL;
        char errmsg[RFS_ERRMSG_SIZE], addr[64];
        int opens = 0;
        struct rpc_handler h = {.data = &opens, .on_open = count_open};
        int rv;

        rfs_alloc_fail_after(n, 0);
        rv = rpc_loop_new(&l, errmsg);
        if (rv != 0) {
            rfs_alloc_fail_after(0, 0);
            assert_int_equal(rv, RFS_ENOMEM);
            continue;
        }
        rv = rpc_listen(l, "127.0.0.1:0", &h, &ls, errmsg);
        assert_true(rv == 0 || rv == RFS_ENOMEM);
        if (rv == 0) {
            snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)rpc_listener_port(ls));
            rv = rpc_peer_new(l, addr, &h, &p, errmsg);
            assert_true(rv == 0 || rv == RFS_ENOMEM);
            if (rv == 0) {
                rv = rpc_peer_send(p, T_PING, 1, "x", 1);
                assert_true(rv == RFS_EUNAVAIL);
            }
        }
        rv = rpc_timer_start(l, 30, 0, stop_loop_cb, l, NULL);
        assert_true(rv == 0 || rv == RFS_ENOMEM);
        if (rv == 0) {
            assert_int_equal(rpc_loop_run(l), 0);
        }
        rfs_alloc_fail_after(0, 0);
        if (p != NULL && rpc_peer_connected(p)) {
            assert_int_equal(rpc_peer_send(p, T_PING, 2, "x", 1), 0);
        }
        rpc_loop_free(l);
    }
}

/* --- listen and addresses --- */

static void test_listen_on_busy_port_reports_address_in_use(void **state)
{
    struct fixture *f = *state;
    struct rpc_listener *ls2 = NULL;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char want[RFS_ERRMSG_SIZE];

    assert_int_equal(rpc_listen(f->loop, f->addr, &f->srv, &ls2, errmsg), RFS_EBUSY);
    snprintf(want, sizeof want, "address %s is already in use", f->addr);
    assert_string_equal(errmsg, want);
    assert_null(ls2);
    /* NULL errmsg is allowed. */
    assert_int_equal(rpc_listen(f->loop, f->addr, &f->srv, &ls2, NULL), RFS_EBUSY);
    assert_int_equal(rpc_listen(f->loop, "127.0.0.1", &f->srv, &ls2, errmsg), RFS_EINVAL);
    assert_non_null(strstr(errmsg, "missing port"));
}

static void test_addr_parse_accepts_literals_and_names(void **state)
{
    struct sockaddr_in sa;
    char errmsg[RFS_ERRMSG_SIZE];
    char ip[INET_ADDRSTRLEN];
    (void)state;

    assert_int_equal(rpc_addr_parse("127.0.0.1:7001", &sa, errmsg), 0);
    assert_int_equal(ntohs(sa.sin_port), 7001);
    assert_int_equal(sa.sin_family, AF_INET);
    assert_string_equal(inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip), "127.0.0.1");
    assert_int_equal(rpc_addr_parse("0.0.0.0:0", &sa, errmsg), 0);
    assert_int_equal(ntohs(sa.sin_port), 0);
    assert_int_equal(rpc_addr_parse("10.1.2.3:65535", &sa, errmsg), 0);
    assert_int_equal(ntohs(sa.sin_port), 65535);
    assert_int_equal(rpc_addr_parse("localhost:80", &sa, errmsg), 0);
    assert_int_equal(ntohs(sa.sin_port), 80);
}

static void test_addr_parse_rejects_bad_input_with_a_reason(void **state)
{
    static const struct {
        const char *addr;
        const char *reason;
    } cases[] = {
        {"", "empty address"},
        {"127.0.0.1", "missing port"},
        {"127.0.0.1:", "missing port"},
        {":7001", "missing host"},
        {"127.0.0.1:65536", "out of range"},
        {"127.0.0.1:99999999999999999999", "out of range"},
        {"127.0.0.1:-1", "not a number"},
        {"127.0.0.1:80x", "not a number"},
        {"127.0.0.1: 80", "not a number"},
    };
    struct sockaddr_in sa;
    char errmsg[RFS_ERRMSG_SIZE];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        errmsg[0] = '\0';
        assert_int_equal(rpc_addr_parse(cases[i].addr, &sa, errmsg), RFS_EINVAL);
        if (strstr(errmsg, cases[i].reason) == NULL) {
            fail_msg("\"%s\": got \"%s\", want \"%s\"", cases[i].addr, errmsg, cases[i].reason);
        }
    }
    assert_int_equal(rpc_addr_parse(NULL, &sa, errmsg), RFS_EINVAL);
    assert_int_equal(rpc_addr_parse("127.0.0.1", &sa, NULL), RFS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_of_many_pipelined_frames_matched_by_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_frames_written_byte_by_byte_are_reassembled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_random_bytes_close_only_that_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_oversized_length_closes_only_that_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_huge_length_closes_only_that_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_length_below_12_closes_only_that_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_zero_length_closes_only_that_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_truncated_payload_then_close_closes_only_that_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_type_closes_only_that_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_close_in_on_frame_drops_the_rest_of_the_buffered_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_queued_before_close_is_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_freed_from_its_own_on_frame_stops_callbacks,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_over_max_output_closes_the_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_peer_reconnects_after_server_restarts_on_same_port,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_flush_sends_before_the_callback_returns, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_peer_send_while_disconnected_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_loop_free_with_live_connections_does_not_leak, setup,
                                        teardown),
        cmocka_unit_test(test_every_allocation_failure_is_reported_or_survived),
        cmocka_unit_test_setup_teardown(test_listen_on_busy_port_reports_address_in_use, setup,
                                        teardown),
        cmocka_unit_test(test_addr_parse_accepts_literals_and_names),
        cmocka_unit_test(test_addr_parse_rejects_bad_input_with_a_reason),
    };
    rfs_log_set_level(RFS_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
