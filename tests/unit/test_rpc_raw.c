/* Tests of raw connections (rpc/rpc.h: rpc_handler.on_bytes, rpc_conn_write,
 * rpc_conn_close_flushed), the mode the metrics endpoint's HTTP uses, over loopback TCP with
 * a line server: on_bytes consumes whole lines only and answers each with "got <line>\n";
 * the line "bye" is answered with a large reply and rpc_conn_close_flushed; "quiet" closes
 * with nothing queued. Checked: a line split over many writes is handed over again until it
 * is whole; a large reply queued before close_flushed arrives whole before the close;
 * unconsumed bytes over max_frame close the connection; on_close runs once per connection.
 * Every run of the loop is bounded by a safety timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc/rpc.h"

#define MAX_UNCONSUMED 1024
#define BIG_REPLY      (3u << 20) /* more than a socket buffer takes at once */

struct fixture {
    struct rpc_loop *loop;
    struct rpc_listener *ls;
    struct rpc_timer *safety;
    uint16_t port;
    unsigned opened, closed;
    unsigned calls; /* on_bytes calls */
    char *big;
};

static size_t srv_on_bytes(struct rpc_conn *c, const void *buf, size_t len, void *data)
{
    struct fixture *f = data;
    const char *p = buf;
    size_t used = 0;
    f->calls++;
    for (;;) {
        const char *nl = memchr(p + used, '\n', len - used);
        size_t llen;
        char reply[128];
        if (nl == NULL) {
            return used; /* the rest again, with what follows */
        }
        llen = (size_t)(nl - (p + used));
        if (llen == 3 && memcmp(p + used, "bye", 3) == 0) {
            assert_int_equal(rpc_conn_write(c, f->big, BIG_REPLY), 0);
            rpc_conn_close_flushed(c, "bye");
            assert_int_equal(rpc_conn_write(c, "x", 1), RFS_ESTOPPED);
            return len;
        }
        if (llen == 5 && memcmp(p + used, "quiet", 5) == 0) {
            rpc_conn_close_flushed(c, "quiet");
            return len;
        }
        snprintf(reply, sizeof reply, "got %.*s\n", (int)(llen < 100 ? llen : 100), p + used);
        assert_int_equal(rpc_conn_write(c, reply, strlen(reply)), 0);
        used += llen + 1;
    }
}

static void srv_on_open(struct rpc_conn *c, void *data)
{
    struct fixture *f = data;
    (void)c;
    f->opened++;
}

static void srv_on_close(struct rpc_conn *c, void *data)
{
    struct fixture *f = data;
    (void)c;
    f->closed++;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct rpc_handler h;
    assert_non_null(f);
    assert_int_equal(rpc_loop_new(&f->loop, NULL), 0);
    memset(&h, 0, sizeof h);
    h.data = f;
    h.on_bytes = srv_on_bytes;
    h.on_open = srv_on_open;
    h.on_close = srv_on_close;
    h.max_frame = MAX_UNCONSUMED;
    assert_int_equal(rpc_listen(f->loop, "127.0.0.1:0", &h, &f->ls, NULL), 0);
    f->port = rpc_listener_port(f->ls);
    f->big = malloc(BIG_REPLY);
    assert_non_null(f->big);
    for (size_t i = 0; i < BIG_REPLY; i++) {
        f->big[i] = (char)('a' + i % 26);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    rpc_loop_free(f->loop);
    free(f->big);
    free(f);
    return 0;
}

static void stop_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    (void)t;
    f->safety = NULL;
    rpc_loop_stop(f->loop);
}

/* Run the loop for about ms. */
static void run_for(struct fixture *f, uint64_t ms)
{
    assert_int_equal(rpc_timer_start(f->loop, ms, 0, stop_cb, f, &f->safety), 0);
    assert_int_equal(rpc_loop_run(f->loop), 0);
    if (f->safety != NULL) {
        rpc_timer_stop(f->safety);
        f->safety = NULL;
    }
}

static int raw_connect(uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        assert_int_equal(errno, EINPROGRESS);
    }
    return fd;
}

static void raw_send(struct fixture *f, int fd, const char *s, size_t len)
{
    for (int tries = 0; len > 0 && tries < 1000; tries++) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n > 0) {
            s += n;
            len -= (size_t)n;
        } else {
            run_for(f, 2);
        }
    }
    assert_int_equal(len, 0);
}

/* Alternate running the loop and reading fd until the server closes it or rounds run out.
 * Returns the bytes read (into buf, up to cap; more are counted but dropped). */
static size_t read_until_closed(struct fixture *f, int fd, char *buf, size_t cap, bool *closed,
                                unsigned rounds)
{
    size_t got = 0;
    *closed = false;
    for (unsigned r = 0; r < rounds && !*closed; r++) {
        run_for(f, 5);
        for (;;) {
            char sink[65536];
            char *dst = got < cap ? buf + got : sink;
            size_t room = got < cap ? cap - got : sizeof sink;
            ssize_t n = recv(fd, dst, room, 0);
            if (n > 0) {
                got += (size_t)n;
                continue;
            }
            if (n == 0 || errno == ECONNRESET) {
                *closed = true;
            }
            break;
        }
    }
    return got;
}

static void test_a_line_split_over_many_writes_is_handed_over_until_whole(void **state)
{
    struct fixture *f = *state;
    const char msg[] = "hello raw world\nsecond line\npartial";
    char buf[256];
    bool closed;
    size_t got;
    int fd = raw_connect(f->port);
    for (size_t i = 0; i < sizeof msg - 1; i++) {
        raw_send(f, fd, msg + i, 1);
        run_for(f, 1);
    }
    got = read_until_closed(f, fd, buf, sizeof buf - 1, &closed, 10);
    buf[got] = '\0';
    assert_false(closed);
    assert_string_equal(buf, "got hello raw world\ngot second line\n");
    assert_true(f->calls >= 10); /* handed over again and again */
    raw_send(f, fd, "\n", 1);    /* completes "partial" */
    got = read_until_closed(f, fd, buf, sizeof buf - 1, &closed, 10);
    buf[got] = '\0';
    assert_string_equal(buf, "got partial\n");
    assert_int_equal(f->opened, 1);
    assert_int_equal(f->closed, 0);
    close(fd);
    run_for(f, 20);
    assert_int_equal(f->closed, 1);
}

static void test_close_flushed_sends_everything_queued_then_closes(void **state)
{
    struct fixture *f = *state;
    char *buf = malloc(BIG_REPLY + 64);
    bool closed;
    size_t got;
    int fd = raw_connect(f->port);
    assert_non_null(buf);
    raw_send(f, fd, "one\nbye\nnever answered\n", 23);
    got = read_until_closed(f, fd, buf, BIG_REPLY + 64, &closed, 2000);
    assert_true(closed);
    assert_int_equal(got, 8 + BIG_REPLY);
    assert_memory_equal(buf, "got one\n", 8);
    assert_memory_equal(buf + 8, f->big, BIG_REPLY);
    run_for(f, 5);
    assert_int_equal(f->closed, 1);
    close(fd);
    free(buf);
}

static void test_close_flushed_with_nothing_queued_closes_at_once(void **state)
{
    struct fixture *f = *state;
    char buf[64];
    bool closed;
    int fd = raw_connect(f->port);
    raw_send(f, fd, "quiet\n", 6);
    assert_int_equal(read_until_closed(f, fd, buf, sizeof buf, &closed, 50), 0);
    assert_true(closed);
    assert_int_equal(f->closed, 1);
    close(fd);
}

static void test_unconsumed_bytes_over_max_frame_close_the_connection(void **state)
{
    struct fixture *f = *state;
    char junk[MAX_UNCONSUMED + 100];
    char buf[64];
    bool closed;
    int fd = raw_connect(f->port), other = raw_connect(f->port);
    size_t got;
    memset(junk, 'j', sizeof junk); /* no newline: never consumed */
    raw_send(f, fd, junk, sizeof junk);
    assert_int_equal(read_until_closed(f, fd, buf, sizeof buf, &closed, 50), 0);
    assert_true(closed);
    /* Only that connection. */
    raw_send(f, other, "still\n", 6);
    got = read_until_closed(f, other, buf, sizeof buf - 1, &closed, 10);
    buf[got] = '\0';
    assert_false(closed);
    assert_string_equal(buf, "got still\n");
    assert_int_equal(f->closed, 1);
    close(fd);
    close(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_line_split_over_many_writes_is_handed_over_until_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_flushed_sends_everything_queued_then_closes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_flushed_with_nothing_queued_closes_at_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unconsumed_bytes_over_max_frame_close_the_connection,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
