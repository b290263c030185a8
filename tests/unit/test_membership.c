/* Replacing a dead server through membership change, with real processes: a group of three
 * loses server 3; a new server 4 on a new port joins (--join), is added as a learner,
 * catches up, is promoted, and 3 is removed, with no restart of the others. Then the group
 * {1,2,4} must survive losing any one server, keep every write, and servers restarted with
 * their original --peers (no address for 4) must still reach 4 (DIR/peers). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "kv/client.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"
#include "tests/lib/sharded.h"

#define TOOL_WAIT_MS 30000
#define CATCH_UP_MS  20000

struct fixture {
    struct cluster c; /* test_replace_dead_server */
    struct sharded s; /* test_replace_dead_server_sharded */
    char out[600];    /* the tool's output file */
};

static int setup(void **state)
{
    char why[256];
    struct fixture *f;
    if (!cluster_bins_present(why, sizeof why)) {
        fprintf(stderr, "SKIPPED: %s\n", why);
        skip();
    }
    f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int bad = 0;
    if (f != NULL) {
        cluster_destroy(&f->c);
        bad = sharded_destroy(&f->s);
        free(f);
    }
    return bad == 0 ? 0 : -1;
}

/* Run `raftfs ARGS...` (NULL-terminated); its output (stdout and stderr) goes to out. */
static int tool(struct fixture *f, char *out, size_t cap, ...)
{
    char bin[300];
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char *argv[16];
    int argc = 0;
    va_list ap;
    pid_t pid;
    FILE *fp;
    size_t len;
    int st;
    const struct cluster *c = f->c.dir[0] != '\0' ? &f->c : &f->s.meta;
    snprintf(bin, sizeof bin, "%s/raftfs", c->bin_dir);
    snprintf(f->out, sizeof f->out, "%s/tool.out", c->dir);
    argv[argc++] = bin;
    va_start(ap, cap);
    for (char *a = va_arg(ap, char *); a != NULL && argc < 15; a = va_arg(ap, char *)) {
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    unlink(f->out);
    if (proc_spawn(argv, f->out, &pid, errmsg) != 0) {
        fail_msg("raftfs %s: %s", argv[1], errmsg);
    }
    st = proc_wait(pid, TOOL_WAIT_MS);
    if (st == -2) {
        proc_stop(pid, 5000);
        fail_msg("raftfs %s did not finish in %d ms", argv[1], TOOL_WAIT_MS);
    }
    fp = fopen(f->out, "r");
    len = fp != NULL ? fread(out, 1, cap - 1, fp) : 0;
    if (fp != NULL) {
        fclose(fp);
    }
    out[len] = '\0';
    return st;
}

static struct kv_client *client(const char *list)
{
    struct kv_client *kc = NULL;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    if (kv_client_connect(&kc, list, false, 0, 15000, 300, errmsg) != 0) {
        fail_msg("client for %s: %s", list, errmsg);
    }
    return kc;
}

static void put_range(struct kv_client *kc, int from, int to)
{
    for (int i = from; i < to; i++) {
        char key[32], val[32], errmsg[RFS_ERRMSG_SIZE] = "";
        snprintf(key, sizeof key, "k%04d", i);
        snprintf(val, sizeof val, "v%d", i);
        if (kv_client_put(kc, key, strlen(key), val, strlen(val), NULL, errmsg) != 0) {
            fail_msg("put %s: %s", key, errmsg);
        }
    }
}

static void check_range(struct kv_client *kc, int from, int to)
{
    for (int i = from; i < to; i++) {
        char key[32], val[32], errmsg[RFS_ERRMSG_SIZE] = "";
        struct kv_client_value v;
        snprintf(key, sizeof key, "k%04d", i);
        snprintf(val, sizeof val, "v%d", i);
        if (kv_client_get(kc, key, strlen(key), &v, errmsg) != 0) {
            fail_msg("get %s: %s", key, errmsg);
        }
        if (!v.found || v.value.len != strlen(val) || memcmp(v.value.base, val, v.value.len)) {
            fail_msg("get %s: %s", key, v.found ? "wrong value" : "lost");
        }
        kv_client_value_clear(&v);
    }
}

/* Index (into the status client's list) of a running server that says it leads, with its
 * status, waiting up to timeout_ms; -1 if none. */
static int find_leader(struct kv_client *sc, const struct cluster *c, struct kv_server_status *out,
                       int timeout_ms)
{
    long long deadline = proc_now_ms() + timeout_ms;
    do {
        for (unsigned i = 0; i < c->n; i++) {
            if (c->pid[i] != 0 && kv_client_status(sc, i, out) == 0 && out->role == 3) {
                return (int)i;
            }
        }
        usleep(20000);
    } while (proc_now_ms() < deadline);
    return -1;
}

/* Wait until server i has applied as much as the leader. */
static void wait_caught_up(struct kv_client *sc, const struct cluster *c, unsigned i)
{
    struct kv_server_status st, lst;
    long long deadline = proc_now_ms() + CATCH_UP_MS;
    memset(&st, 0, sizeof st);
    for (;;) {
        int leader = find_leader(sc, c, &lst, 5000);
        assert_true(leader >= 0);
        if (kv_client_status(sc, i, &st) == 0 && st.applied >= lst.applied) {
            return;
        }
        if (proc_now_ms() > deadline) {
            cluster_dump_logs(c);
            fail_msg("server %u did not catch up: applied %llu, leader %llu", i + 1,
                     (unsigned long long)st.applied, (unsigned long long)lst.applied);
        }
        usleep(50000);
    }
}

static void test_replace_dead_server(void **state)
{
    struct fixture *f = *state;
    struct cluster *c = &f->c;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char out[8192];
    char list4[512], holes[512], addr4[64], id_line[128], path[400];
    struct kv_client *kc, *sc, *hc;
    struct kv_server_status st, lst;
    long long deadline;
    int leader;

    if (cluster_start(c, 3, false, NULL, errmsg) != 0) {
        fail_msg("start: %s", errmsg);
    }
    kc = client(c->group);
    put_range(kc, 0, 30);

    /* Server 3 dies for good; the group of 3 goes on with 2. */
    cluster_signal(c, 2, SIGKILL);
    put_range(kc, 30, 60);
    kv_client_free(kc);

    /* A new server on a new port, waiting to be added. */
    if (cluster_add_server(c, errmsg) != 0) {
        fail_msg("add server: %s", errmsg);
    }
    /* Started without --join, its empty data directory would invent a configuration of four
     * voters that conflicts with the group's committed one: it asks first, and refuses. */
    cluster_signal(c, 3, SIGKILL);
    {
        char data[400];
        snprintf(data, sizeof data, "%s/s3", c->dir);
        tmpdir_remove(data); /* as empty as a new disk */
    }
    c->join[3] = false;
    if (cluster_start_server(c, 3, errmsg) == 0) {
        int ex = proc_wait(c->pid[3], 10000);
        if (ex == -2) {
            cluster_signal(c, 3, SIGKILL);
        }
        c->pid[3] = 0;
        if (ex == 0 || ex == -2) {
            cluster_dump_logs(c);
            fail_msg("a server without --join on an empty data directory kept running");
        }
    }
    assert_true(cluster_log_contains(c, 3, "start it with --join"));
    c->join[3] = true;
    if (cluster_start_server(c, 3, errmsg) != 0) {
        fail_msg("restart with --join: %s", errmsg);
    }
    snprintf(list4, sizeof list4, "%s", c->group);
    snprintf(addr4, sizeof addr4, "127.0.0.1:%d", c->port[3]);
    snprintf(holes, sizeof holes, "127.0.0.1:%d,127.0.0.1:%d,-,127.0.0.1:%d", c->port[0],
             c->port[1], c->port[3]);
    sc = client(list4);

    /* Promotion before it is a learner is refused with what to do. */
    assert_int_equal(tool(f, out, sizeof out, "group", "--group", list4, "promote", "4", NULL), 1);
    assert_non_null(strstr(out, "add-learner"));

    assert_int_equal(
        tool(f, out, sizeof out, "group", "--group", list4, "add-learner", "4", addr4, NULL), 0);
    assert_non_null(strstr(out, "is a learner"));
    /* Again: already done, still success. */
    assert_int_equal(
        tool(f, out, sizeof out, "group", "--group", list4, "add-learner", "4", addr4, NULL), 0);
    assert_non_null(strstr(out, "already a learner"));

    /* Wait until it has applied everything the leader has. */
    wait_caught_up(sc, c, 3);
    assert_true(cluster_log_contains(c, 3, "joining: empty data directory"));

    assert_int_equal(tool(f, out, sizeof out, "group", "--group", list4, "promote", "4", NULL), 0);
    assert_non_null(strstr(out, "is a voter"));
    assert_int_equal(tool(f, out, sizeof out, "group", "--group", list4, "remove", "3", NULL), 0);
    assert_non_null(strstr(out, "no longer a member"));
    /* Removing it again is not an error; removing the last voter would be refused. */
    assert_int_equal(tool(f, out, sizeof out, "group", "--group", list4, "remove", "3", NULL), 0);
    assert_non_null(strstr(out, "not a member"));

    assert_int_equal(tool(f, out, sizeof out, "group", "--group", holes, "members", NULL), 0);
    snprintf(id_line, sizeof id_line, "voter   4   %s", addr4);
    if (strstr(out, id_line) == NULL || strstr(out, "voter   3") != NULL) {
        fail_msg("members:\n%s", out);
    }

    /* The others learned 4's address and keep it in DIR/peers. */
    snprintf(path, sizeof path, "%s/s0/peers", c->dir);
    {
        FILE *fp = fopen(path, "r");
        size_t n = fp != NULL ? fread(out, 1, sizeof out - 1, fp) : 0;
        char want[80];
        if (fp != NULL) {
            fclose(fp);
        }
        out[n] = '\0';
        snprintf(want, sizeof want, "4 %s\n", addr4);
        if (strstr(out, want) == NULL) {
            fail_msg("%s does not give server 4's address:\n%s", path, out);
        }
    }

    /* {1,2,4}: losing server 1 leaves a majority (2 and 4). */
    cluster_signal(c, 0, SIGKILL);
    hc = client(holes);
    put_range(hc, 60, 90);
    check_range(hc, 0, 90);

    /* Servers 1 and 2 restart with their original --peers (three addresses, none for 4):
     * they reach 4 through DIR/peers. Prove each of them works with 4 alone. */
    assert_int_equal(cluster_stop_server(c, 1), 0);
    if (cluster_start_server(c, 0, errmsg) != 0 || cluster_start_server(c, 1, errmsg) != 0) {
        fail_msg("restart: %s", errmsg);
    }
    assert_int_equal(c->n_peers[0], 3);
    put_range(hc, 90, 100);
    cluster_signal(c, 1, SIGKILL); /* {1,4} */
    put_range(hc, 100, 110);
    check_range(hc, 0, 110);
    if (cluster_start_server(c, 1, errmsg) != 0) {
        fail_msg("restart: %s", errmsg);
    }
    cluster_signal(c, 0, SIGKILL); /* {2,4} */
    put_range(hc, 110, 120);
    check_range(hc, 0, 120);
    if (cluster_start_server(c, 0, errmsg) != 0) {
        fail_msg("restart: %s", errmsg);
    }
    /* And without 4, 1 and 2 still make a majority, wherever the leader was. */
    cluster_signal(c, 3, SIGKILL);
    put_range(hc, 120, 130);
    check_range(hc, 0, 130);

    /* A leader that removes itself leads until the change commits, then steps down and
     * stops serving: the other two go on. */
    if (cluster_start_server(c, 3, errmsg) != 0) {
        fail_msg("restart: %s", errmsg);
    }
    wait_caught_up(sc, c, 3);
    wait_caught_up(sc, c, 0);
    wait_caught_up(sc, c, 1);
    leader = find_leader(sc, c, &lst, 5000);
    assert_true(leader >= 0);
    {
        char id[16];
        snprintf(id, sizeof id, "%d", leader + 1);
        assert_int_equal(tool(f, out, sizeof out, "group", "--group", holes, "remove", id, NULL),
                         0);
    }
    deadline = proc_now_ms() + 5000;
    while (!cluster_log_contains(c, (unsigned)leader, "removed from the group")) {
        if (proc_now_ms() > deadline) {
            cluster_dump_logs(c);
            fail_msg("server %d did not notice its removal", leader + 1);
        }
        usleep(20000);
    }
    put_range(hc, 130, 140);
    check_range(hc, 0, 140);
    assert_int_equal(kv_client_status(sc, (unsigned)leader, &st), 0);
    assert_true(st.removed);
    assert_true(proc_alive(c->pid[leader]));

    kv_client_free(hc);
    kv_client_free(sc);
    assert_int_equal(cluster_sanitizer_errors(c), 0);
}

/* Keys spread over every bucket, so both groups hold some. */
static void routed_put(struct kv_client *rc, int from, int to)
{
    put_range(rc, from, to);
}

/* The same in a sharded cluster: group 1's server 3 is replaced, the meta group gets the
 * new address list (A0,A1,-,A3) in a new configuration version, and a routed client that
 * cached the old list follows it once only the new server can lead. */
static void test_replace_dead_server_sharded(void **state)
{
    struct fixture *f = *state;
    struct sharded *s = &f->s;
    struct cluster *g = &s->g[0];
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char out[8192];
    char list4[512], holes[512], addr4[64];
    struct kv_client *rc = NULL, *sc;
    struct kv_server_status lst;
    int leader = -1;

    if (sharded_start_joined(s, 2, 3, false, NULL, 30000, errmsg) != 0) {
        fail_msg("start: %s", errmsg);
    }
    assert_int_equal(sharded_client(&rc, s->meta.group, 0, true, 20000, errmsg), 0);
    routed_put(rc, 0, 40);

    cluster_signal(g, 2, SIGKILL);
    routed_put(rc, 40, 60);
    if (cluster_add_server(g, errmsg) != 0) {
        fail_msg("add server: %s", errmsg);
    }
    snprintf(list4, sizeof list4, "%s", g->group);
    snprintf(addr4, sizeof addr4, "127.0.0.1:%d", g->port[3]);
    snprintf(holes, sizeof holes, "127.0.0.1:%d,127.0.0.1:%d,-,127.0.0.1:%d", g->port[0],
             g->port[1], g->port[3]);
    sc = client(list4);
    assert_int_equal(
        tool(f, out, sizeof out, "group", "--group", list4, "add-learner", "4", addr4, NULL), 0);
    wait_caught_up(sc, g, 3);
    assert_int_equal(tool(f, out, sizeof out, "group", "--group", list4, "promote", "4", NULL), 0);
    assert_int_equal(tool(f, out, sizeof out, "group", "--group", list4, "remove", "3", NULL), 0);

    /* The meta group: same buckets, new addresses, next version. */
    assert_int_equal(
        tool(f, out, sizeof out, "meta", "--meta", s->meta.group, "addrs", "1", holes, NULL), 0);
    if (strstr(out, "\"-\"") == NULL || strstr(out, addr4) == NULL) {
        fail_msg("meta addrs printed:\n%s", out);
    }
    assert_int_equal(
        tool(f, out, sizeof out, "meta", "--meta", s->meta.group, "addrs", "9", holes, NULL), 1);
    assert_non_null(strstr(out, "not joined"));
    assert_int_equal(sharded_wait_settled(s, 30000, errmsg), 0);

    /* Make 4 the leader of group 1 with server 1 gone: the routed client's cached list
     * (A0,A1,A2) then reaches no leader; the new one does. */
    cluster_signal(g, 0, SIGKILL);
    for (int round = 0; round < 20; round++) {
        leader = find_leader(sc, g, &lst, 5000);
        if (leader == 3) {
            break;
        }
        if (leader == 1) {
            assert_int_equal(cluster_stop_server(g, 1), 0);
            if (cluster_start_server(g, 1, errmsg) != 0) {
                fail_msg("restart: %s", errmsg);
            }
            wait_caught_up(sc, g, 1);
        }
    }
    assert_int_equal(leader, 3);
    routed_put(rc, 60, 100);
    check_range(rc, 0, 100);

    kv_client_free(sc);
    kv_client_free(rc);
}

/* The meta group runs the same server code: replace its server 3 the same way, then a
 * client given the list with a hole reads and writes configurations. */
static void test_replace_dead_meta_server(void **state)
{
    struct fixture *f = *state;
    struct cluster *c = &f->c;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char out[8192];
    char list4[512], holes[512], addr4[64];
    struct kv_client *sc;

    if (cluster_start_binary(c, "raftfs-meta", 3, false, NULL, errmsg) != 0) {
        fail_msg("start: %s", errmsg);
    }
    assert_int_equal(tool(f, out, sizeof out, "meta", "--meta", c->group, "join", "1",
                          "127.0.0.1:1,127.0.0.1:2", NULL),
                     0);
    cluster_signal(c, 2, SIGKILL);
    if (cluster_add_server(c, errmsg) != 0) {
        fail_msg("add server: %s", errmsg);
    }
    snprintf(list4, sizeof list4, "%s", c->group);
    snprintf(addr4, sizeof addr4, "127.0.0.1:%d", c->port[3]);
    snprintf(holes, sizeof holes, "127.0.0.1:%d,127.0.0.1:%d,-,127.0.0.1:%d", c->port[0],
             c->port[1], c->port[3]);
    sc = client(list4);
    assert_int_equal(
        tool(f, out, sizeof out, "group", "--group", list4, "add-learner", "4", addr4, NULL), 0);
    wait_caught_up(sc, c, 3);
    assert_int_equal(tool(f, out, sizeof out, "group", "--group", list4, "promote", "4", NULL), 0);
    assert_int_equal(tool(f, out, sizeof out, "group", "--group", list4, "remove", "3", NULL), 0);
    cluster_signal(c, 0, SIGKILL); /* {2,4} */
    assert_int_equal(tool(f, out, sizeof out, "meta", "--meta", holes, "join", "2",
                          "127.0.0.1:3,127.0.0.1:4", NULL),
                     0);
    assert_int_equal(tool(f, out, sizeof out, "meta", "--meta", holes, "query", NULL), 0);
    if (strstr(out, "\"1\":[") == NULL || strstr(out, "\"2\":[") == NULL) {
        fail_msg("query:\n%s", out);
    }
    assert_int_equal(tool(f, out, sizeof out, "kv", "--group", holes, "status", NULL), 0);
    kv_client_free(sc);
    assert_int_equal(cluster_sanitizer_errors(c), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replace_dead_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_dead_server_sharded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_dead_meta_server, setup, teardown),
    };
    return cmocka_run_group_tests_name("membership", tests, NULL, NULL);
}
