/* Tests of bin/raftfs-proxy (tests/lib/proxy.h) through its control client
 * (tests/lib/proxy_ctl.h): an echo server on 127.0.0.1 behind one route, and each fault
 * checked from a client's point of view. The binary comes from $RAFTFS_BIN_DIR (default
 * build/asan/bin); without it every test is skipped. Every wait is bounded, and the proxy
 * is stopped by pid in teardown even when a test fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "tests/lib/proc.h"
#include "tests/lib/proxy_ctl.h"

#define ECHO_MAX_CONNS 32
#define CLIENTS_MAX    8

/* --- an echo server on its own thread --- */

struct echo {
    int listen_fd;
    int port;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_int accepted;
};

static void *echo_main(void *arg)
{
    struct echo *e = arg;
    struct pollfd fds[ECHO_MAX_CONNS + 1];
    int n = 1;
    char buf[65536];

    fds[0].fd = e->listen_fd;
    fds[0].events = POLLIN;
    while (!atomic_load(&e->stop)) {
        if (poll(fds, (nfds_t)n, 20) <= 0) {
            continue;
        }
        if ((fds[0].revents & POLLIN) && n <= ECHO_MAX_CONNS) {
            int fd = accept(e->listen_fd, NULL, NULL);
            if (fd >= 0) {
                atomic_fetch_add(&e->accepted, 1);
                fds[n].fd = fd;
                fds[n].events = POLLIN;
                fds[n].revents = 0;
                n++;
            }
        }
        for (int i = 1; i < n; i++) {
            ssize_t got;
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            got = recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (got > 0) {
                /* Replies are small: a blocking send of what we got is enough. */
                if (send(fds[i].fd, buf, (size_t)got, MSG_NOSIGNAL) == got) {
                    continue;
                }
            } else if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            }
            close(fds[i].fd);
            fds[i] = fds[n - 1];
            fds[i].revents = 0;
            n--;
            i--;
        }
    }
    for (int i = 1; i < n; i++) {
        close(fds[i].fd);
    }
    return NULL;
}

static int echo_start(struct echo *e)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof addr;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    e->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (e->listen_fd < 0 || bind(e->listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(e->listen_fd, 64) != 0 ||
        getsockname(e->listen_fd, (struct sockaddr *)&addr, &len) != 0) {
        return RFS_EIO;
    }
    e->port = ntohs(addr.sin_port);
    atomic_store(&e->stop, false);
    atomic_store(&e->accepted, 0);
    if (pthread_create(&e->thread, NULL, echo_main, e) != 0) {
        return RFS_EIO;
    }
    e->started = true;
    return 0;
}

static void echo_stop(struct echo *e)
{
    if (e->started) {
        atomic_store(&e->stop, true);
        pthread_join(e->thread, NULL);
        e->started = false;
    }
    if (e->listen_fd >= 0) {
        close(e->listen_fd);
        e->listen_fd = -1;
    }
}

/* --- fixture --- */

struct fixture {
    bool skip;
    char bin[PATH_MAX];
    struct echo echo;
    struct proxy_ctl pc;
    int route_port;
    int clients[CLIENTS_MAX];
    int n_clients;
    char reply[1024];
};

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < f->n_clients; i++) {
        if (f->clients[i] >= 0) {
            close(f->clients[i]);
        }
    }
    proxy_ctl_stop(&f->pc, 2000);
    echo_stop(&f->echo);
    free(f);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char route[128];
    char errmsg[RFS_ERRMSG_SIZE] = "";
    const char *args[] = {"--route", route, "--log-level", "warn", NULL, NULL, NULL};
    const char *seed = getenv("RAFTFS_SEED");

    assert_non_null(f);
    *state = f;
    f->echo.listen_fd = -1;
    if (proxy_ctl_bin_path(f->bin, sizeof f->bin) != 0) {
        printf("SKIPPED: raftfs-proxy not built (%s)\n", f->bin);
        f->skip = true;
        return 0;
    }
    if (echo_start(&f->echo) != 0) {
        goto err;
    }
    snprintf(route, sizeof route, "e=127.0.0.1:0=127.0.0.1:%d", f->echo.port);
    if (seed != NULL) {
        args[4] = "--seed";
        args[5] = seed;
    }
    if (proxy_ctl_start(&f->pc, f->bin, args, NULL, 5000, errmsg) != 0) {
        print_error("proxy start: %s\n", errmsg);
        goto err;
    }
    f->route_port = proxy_ctl_route_port(&f->pc, "e");
    if (f->route_port > 0) {
        return 0;
    }
err:
    /* cmocka skips teardown when setup fails: clean up here. */
    teardown(state);
    return -1;
}

static struct fixture *fixture_get(void **state)
{
    struct fixture *f = *state;
    if (f->skip) {
        skip();
    }
    return f;
}

/* --- client helpers --- */

/* A blocking client connected to 127.0.0.1:port, closed in teardown. */
static int client_connect(struct fixture *f, int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_true(f->n_clients < CLIENTS_MAX);
    f->clients[f->n_clients++] = fd;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void client_send(int fd, const char *text)
{
    size_t n = strlen(text);
    assert_int_equal(send(fd, text, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Receive up to want bytes within timeout_ms. Returns the count received; -1 if the
 * connection closed or failed first. */
static ssize_t client_recv(int fd, char *buf, size_t want, int timeout_ms)
{
    long long deadline = proc_now_ms() + timeout_ms;
    size_t got = 0;

    while (got < want) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long long left = deadline - proc_now_ms();
        ssize_t n;
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            break;
        }
        n = recv(fd, buf + got, want - got, 0);
        if (n <= 0) {
            return -1;
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Send text and expect it echoed back within a second. */
static void expect_echo(int fd, const char *text)
{
    char buf[256];
    size_t n = strlen(text);

    assert_true(n < sizeof buf);
    client_send(fd, text);
    assert_int_equal(client_recv(fd, buf, n, 1000), (ssize_t)n);
    assert_memory_equal(buf, text, n);
}

/* Whether the connection is closed (EOF or reset) within timeout_ms; data that still
 * arrives first is skipped. */
static bool client_closed_within(int fd, int timeout_ms)
{
    long long deadline = proc_now_ms() + timeout_ms;
    char buf[256];

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long long left = deadline - proc_now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            return false;
        }
        if (recv(fd, buf, sizeof buf, 0) <= 0) {
            return true;
        }
    }
}

static void cmd_ok(struct fixture *f, const char *line)
{
    int rv = proxy_ctl_cmd(&f->pc, f->reply, sizeof f->reply, "%s", line);
    if (rv != 0) {
        fail_msg("'%s' -> %d '%s'", line, rv, f->reply);
    }
}

static void cmd_err(struct fixture *f, const char *line)
{
    assert_int_equal(proxy_ctl_cmd(&f->pc, f->reply, sizeof f->reply, "%s", line), RFS_EINVAL);
    assert_true(strncmp(f->reply, "err ", 4) == 0);
}

/* --- tests --- */

static void test_proxy_forwards_both_ways_and_counts_bytes(void **state)
{
    struct fixture *f = fixture_get(state);
    int fd = client_connect(f, f->route_port);

    expect_echo(fd, "hello");
    expect_echo(fd, "world!");

    cmd_ok(f, "stats e");
    assert_non_null(strstr(f->reply, "up=11 down=11 "));
    assert_non_null(strstr(f->reply, "conns=1 open=1 "));
}

static void test_proxy_cut_blackholes_and_heal_resets_holed_connections(void **state)
{
    struct fixture *f = fixture_get(state);
    int fd = client_connect(f, f->route_port);
    char buf[16];

    expect_echo(fd, "before");
    cmd_ok(f, "cut e both");
    client_send(fd, "lost");
    assert_int_equal(client_recv(fd, buf, 4, 300), 0); /* nothing, and still open */
    cmd_ok(f, "stats e");
    assert_non_null(strstr(f->reply, "up_discarded=4 "));

    cmd_ok(f, "heal e");
    assert_string_equal(f->reply, "ok reset=1");
    assert_true(client_closed_within(fd, 1000));

    expect_echo(client_connect(f, f->route_port), "after");
}

static void test_proxy_idle_connection_survives_cut_and_heal(void **state)
{
    struct fixture *f = fixture_get(state);
    int fd = client_connect(f, f->route_port);

    expect_echo(fd, "one");
    cmd_ok(f, "cut e both");
    cmd_ok(f, "heal e");
    assert_string_equal(f->reply, "ok reset=0");
    expect_echo(fd, "two");
}

static void test_proxy_cut_down_only_passes_requests(void **state)
{
    struct fixture *f = fixture_get(state);
    int fd = client_connect(f, f->route_port);
    char buf[16];

    cmd_ok(f, "cut e down");
    client_send(fd, "ping");
    assert_int_equal(client_recv(fd, buf, 4, 300), 0);
    cmd_ok(f, "stats e");
    assert_non_null(strstr(f->reply, "up=4 down=0 up_discarded=0 down_discarded=4 "));
}

static void test_proxy_hold_delivers_at_heal(void **state)
{
    struct fixture *f = fixture_get(state);
    int fd = client_connect(f, f->route_port);
    char buf[16];

    expect_echo(fd, "a");
    cmd_ok(f, "hold e up");
    client_send(fd, "held");
    assert_int_equal(client_recv(fd, buf, 4, 300), 0);
    cmd_ok(f, "heal e");
    assert_string_equal(f->reply, "ok reset=0");
    assert_int_equal(client_recv(fd, buf, 4, 1000), 4);
    assert_memory_equal(buf, "held", 4);
}

static void test_proxy_delay_holds_each_direction_back(void **state)
{
    struct fixture *f = fixture_get(state);
    int fd = client_connect(f, f->route_port);
    long long start, rtt;

    expect_echo(fd, "warm");
    cmd_ok(f, "delay e 100 150");
    start = proc_now_ms();
    expect_echo(fd, "slow");
    rtt = proc_now_ms() - start;
    /* 100..150 ms up, then 100..150 ms down. */
    assert_true(rtt >= 200);
    assert_true(rtt < 1000);

    cmd_ok(f, "heal e");
    start = proc_now_ms();
    expect_echo(fd, "fast");
    assert_true(proc_now_ms() - start < 100);
}

static void test_proxy_delay_with_jitter_keeps_order(void **state)
{
    struct fixture *f = fixture_get(state);
    int fd = client_connect(f, f->route_port);
    char sent[400], got[400];

    cmd_ok(f, "delay e 0 20");
    for (int i = 0; i < 100; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "%04d", i);
        memcpy(sent + 4 * i, msg, 4);
        assert_int_equal(send(fd, msg, 4, MSG_NOSIGNAL), 4);
    }
    assert_int_equal(client_recv(fd, got, sizeof got, 3000), (ssize_t)sizeof got);
    assert_memory_equal(got, sent, sizeof got);
}

static void test_proxy_reset_closes_current_connections(void **state)
{
    struct fixture *f = fixture_get(state);
    int fd = client_connect(f, f->route_port);

    expect_echo(fd, "x");
    cmd_ok(f, "reset e");
    assert_string_equal(f->reply, "ok reset=1");
    assert_true(client_closed_within(fd, 1000));

    expect_echo(client_connect(f, f->route_port), "new connections still work");
}

static void test_proxy_drop_all_closes_connections(void **state)
{
    struct fixture *f = fixture_get(state);
    int fd = client_connect(f, f->route_port);

    cmd_ok(f, "drop e 1000");
    client_send(fd, "doomed");
    assert_true(client_closed_within(fd, 1000));
    cmd_ok(f, "stats e");
    assert_non_null(strstr(f->reply, "dropped=1 "));
    assert_non_null(strstr(f->reply, "up=0 "));

    cmd_ok(f, "heal e");
    expect_echo(client_connect(f, f->route_port), "healed");
}

static void test_proxy_add_route_over_control(void **state)
{
    struct fixture *f = fixture_get(state);
    char line[128];
    int port;

    snprintf(line, sizeof line, "add e2 127.0.0.1:0 127.0.0.1:%d", f->echo.port);
    cmd_ok(f, line);
    port = atoi(f->reply + 3);
    assert_true(port > 0);
    expect_echo(client_connect(f, port), "via e2");
    cmd_err(f, line); /* duplicate name */
}

static void test_proxy_rejects_bad_commands(void **state)
{
    struct fixture *f = fixture_get(state);

    cmd_err(f, "dup e 10");
    cmd_err(f, "drop nosuch 10");
    cmd_err(f, "drop e 1001");
    cmd_err(f, "delay e 50 10");
    cmd_err(f, "cut e sideways");
    cmd_err(f, "add bad/name 127.0.0.1:0 127.0.0.1:1");
    cmd_err(f, "frobnicate");
    cmd_ok(f, "ping");
}

static void test_proxy_connect_failure_closes_client(void **state)
{
    struct fixture *f = fixture_get(state);
    char line[128];
    int dead_port = free_port();
    int fd;

    assert_true(dead_port > 0);
    snprintf(line, sizeof line, "add dead 127.0.0.1:0 127.0.0.1:%d", dead_port);
    cmd_ok(f, line);
    fd = client_connect(f, atoi(f->reply + 3));
    assert_true(client_closed_within(fd, 1000));
    cmd_ok(f, "stats dead");
    assert_non_null(strstr(f->reply, "connect_failed=1"));
}

static void test_proxy_exits_cleanly_on_sigterm_and_quit(void **state)
{
    struct fixture *f = fixture_get(state);
    char errmsg[RFS_ERRMSG_SIZE] = "";

    expect_echo(client_connect(f, f->route_port), "open connection at exit");
    assert_int_equal(proxy_ctl_stop(&f->pc, 2000), 0);

    assert_int_equal(proxy_ctl_start(&f->pc, f->bin, NULL, NULL, 5000, errmsg), 0);
    assert_int_equal(proxy_ctl_cmd(&f->pc, f->reply, sizeof f->reply, "quit"), 0);
    assert_int_equal(proc_wait(f->pc.pid, 2000), 0);
    f->pc.pid = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_proxy_forwards_both_ways_and_counts_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_proxy_cut_blackholes_and_heal_resets_holed_connections,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_idle_connection_survives_cut_and_heal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_proxy_cut_down_only_passes_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_hold_delivers_at_heal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_delay_holds_each_direction_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_proxy_delay_with_jitter_keeps_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_reset_closes_current_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_proxy_drop_all_closes_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_add_route_over_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_rejects_bad_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_connect_failure_closes_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_exits_cleanly_on_sigterm_and_quit, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
