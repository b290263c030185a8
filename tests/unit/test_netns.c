/* Many machines on one: every server in its own network namespace with its own address
 * (tests/lib/netns.h), the filesystem mounted from the root namespace, and one shard host cut
 * off the network with iptables.
 *
 * Six hosts on 10.77.S.0/24 behind a bridge: a meta group of three (m0..m2) and shard group 1
 * of three (s0..s2), every server on port 7000 of its own address, started as
 * `ip netns exec NS raftfs-meta|raftfs-shard ...`. The group is joined with the real
 * `raftfs meta --meta ... join 1 ...`, the filesystem mounted with
 * `raftfs-mount --meta <the meta addresses> MNT -f`, and files written through the mount.
 * Then the shard group's leader is cut off (DROP on its eth0, both directions): the other two
 * must elect a leader and the mount must go on writing and reading within a bounded time.
 * After the heal the cut host must catch up: its applied index reaches what the others had
 * applied (each server's status call).
 *
 * Needs root, `ip`, `iptables`, /dev/fuse and fusermount3, and a kernel that lets us make
 * namespaces; otherwise it prints `SKIPPED: <reason>` and skips. The teardown stops every
 * process by its pid, unmounts, deletes the namespaces, the bridge and any rule, and the
 * temporary directory, whatever state the test stopped in. RAFTFS_KEEP_TEST_DIRS=1 keeps the
 * logs (servers, mount, and every ip/iptables command in net.log). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "kv/client.h"
#include "tests/lib/cluster.h"
#include "tests/lib/netns.h"
#include "tests/lib/proc.h"
#include "tests/unit/mount_helper.h"

#define GROUP_SIZE  3
#define HOSTS       (2 * GROUP_SIZE) /* hosts 0..2: meta servers, 3..5: shard group 1 */
#define PORT        7000
#define GID         1
#define STOP_WAIT   15000 /* ms a server or the mount gets to stop after SIGTERM */
#define LEADER_WAIT 20000 /* ms for a group to elect a leader (ASan, two shared cores) */
#define IO_WAIT     15000 /* ms one write-and-read through the mount may take */
#define SERVE_WAIT  30000 /* ms after the cut by which the mount must serve again */
#define CATCH_UP    30000 /* ms after the heal by which the cut host must have caught up */

/* Moderate timers: 20 ms ticks, elections after 300..600 ms, heartbeats every 60 ms. */
static const char *const timer_flags[] = {"--tick-ms",         "20", "--election-ticks", "15",
                                          "--heartbeat-ticks", "3"};

struct fixture {
    bool skipped;
    char bin_dir[256];
    char dir[256]; /* data directories, logs, the mount point */
    char mnt[300];
    char mount_log[300];
    struct netns_net net;
    pid_t pid[HOSTS];    /* servers, 0 when not running */
    pid_t mount_pid;     /* raftfs-mount -f, 0 when not running */
    pid_t io_pid;        /* a child writing through the mount, 0 when none */
    char meta_list[128]; /* "10.77.S.10:7000,..." */
    char group_list[128];
};

/* ---- the fixture ---- */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *bins = getenv("RAFTFS_BIN_DIR");
    char why[512], path[300], errmsg[RFS_ERRMSG_SIZE];
    *state = f;
    if (f == NULL) {
        return -1;
    }
    snprintf(f->bin_dir, sizeof f->bin_dir, "%s", bins != NULL ? bins : "build/asan/bin");
    snprintf(path, sizeof path, "%s/raftfs-mount", f->bin_dir);
    if (!cluster_bins_present(why, sizeof why) ||
        !mount_helper_usable(path, NULL, why, sizeof why) || !netns_usable(why, sizeof why)) {
        f->skipped = true;
        printf("SKIPPED: %s\n", why);
        return 0;
    }
    snprintf(path, sizeof path, "%s/raftfs", f->bin_dir);
    if (access(path, X_OK) != 0) {
        f->skipped = true;
        printf("SKIPPED: %s not built (run make, or set RAFTFS_BIN_DIR)\n", path);
        return 0;
    }
    if (tmpdir_make("raftfs-netns", f->dir, sizeof f->dir, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        return -1;
    }
    snprintf(f->mnt, sizeof f->mnt, "%s/mnt", f->dir);
    snprintf(f->mount_log, sizeof f->mount_log, "%s/mount.log", f->dir);
    return 0;
}

static void server_log(const struct fixture *f, unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s%u.log", f->dir, i < GROUP_SIZE ? "meta" : "shard", i % GROUP_SIZE);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int bad = 0;
    if (f == NULL) {
        return 0;
    }
    if (f->io_pid > 0) {
        proc_kill(f->io_pid, SIGKILL);
    }
    if (!f->skipped && f->dir[0] != '\0') {
        bad += mount_helper_teardown(f->mnt, &f->mount_pid, f->mount_log);
    }
    if (f->io_pid > 0) {
        proc_wait(f->io_pid, STOP_WAIT); /* a kill -9 in a FUSE call ends once the mount is gone */
        f->io_pid = 0;
    }
    for (unsigned i = 0; i < HOSTS; i++) {
        char log[400];
        if (f->pid[i] > 0) {
            int st = proc_stop(f->pid[i], STOP_WAIT);
            if (st != 0) {
                fprintf(stderr, "teardown: server %u exited with %d\n", i, st);
            }
            f->pid[i] = 0;
        }
        server_log(f, i, log, sizeof log);
        bad += mount_helper_log_has_sanitizer_report(log);
    }
    netns_destroy(&f->net);
    if (f->dir[0] != '\0') {
        /* Never remove a tree that is still mounted: that would empty the filesystem. */
        if (mount_helper_is_mount_point(f->mnt)) {
            fprintf(stderr, "teardown: %s is still mounted; left in place\n", f->dir);
            bad++;
        } else if (getenv("RAFTFS_KEEP_TEST_DIRS") == NULL) {
            tmpdir_remove(f->dir);
        } else {
            fprintf(stderr, "kept %s\n", f->dir);
        }
    }
    free(f);
    return bad == 0 ? 0 : -1;
}

static void dump_logs(const struct fixture *f)
{
    for (unsigned i = 0; i < HOSTS; i++) {
        char log[400], cmd[500];
        server_log(f, i, log, sizeof log);
        fprintf(stderr, "---- %s (last 20 lines)\n", log);
        snprintf(cmd, sizeof cmd, "tail -n 20 '%s' >&2", log);
        if (system(cmd) != 0) {
            fprintf(stderr, "(no log)\n");
        }
    }
    mount_helper_dump_log(f->mount_log);
}

/* ---- servers ---- */

static void start_server(struct fixture *f, unsigned i)
{
    char bin[300], id[8], data[300], log[400], errmsg[RFS_ERRMSG_SIZE];
    char *argv[32];
    unsigned n = 0;
    bool meta = i < GROUP_SIZE;
    netns_exec_prefix(&f->net, i, argv);
    n = 4;
    snprintf(bin, sizeof bin, "%s/%s", f->bin_dir, meta ? "raftfs-meta" : "raftfs-shard");
    snprintf(id, sizeof id, "%u", i % GROUP_SIZE);
    snprintf(data, sizeof data, "%s/%s%u", f->dir, meta ? "meta" : "shard", i % GROUP_SIZE);
    server_log(f, i, log, sizeof log);
    argv[n++] = bin;
    argv[n++] = "--id";
    argv[n++] = id;
    argv[n++] = "--peers";
    argv[n++] = meta ? f->meta_list : f->group_list;
    argv[n++] = "--data";
    argv[n++] = data;
    for (size_t k = 0; k < sizeof timer_flags / sizeof timer_flags[0]; k++) {
        argv[n++] = (char *)timer_flags[k];
    }
    if (!meta) {
        argv[n++] = "--gid";
        argv[n++] = "1";
        argv[n++] = "--meta";
        argv[n++] = f->meta_list;
    }
    argv[n] = NULL;
    if (proc_spawn(argv, log, &f->pid[i], errmsg) != 0) {
        fail_msg("starting %s in %s: %s", bin, f->net.ns[i], errmsg);
    }
}

/* Each reachable server's status, for servers first..first+GROUP_SIZE-1 except `skip` (-1:
 * none); ok[k] says whether server k answered. */
static void group_status(const struct fixture *f, unsigned first, int skip,
                         struct kv_server_status st[GROUP_SIZE], bool ok[GROUP_SIZE])
{
    char list[128], errmsg[RFS_ERRMSG_SIZE];
    struct kv_client *c = NULL;
    snprintf(list, sizeof list, "%s", first == 0 ? f->meta_list : f->group_list);
    memset(ok, 0, GROUP_SIZE * sizeof ok[0]);
    if (kv_client_connect(&c, list, false, 0, 1000, 500, errmsg) != 0) {
        return;
    }
    for (unsigned k = 0; k < GROUP_SIZE; k++) {
        if ((int)k != skip && kv_client_status(c, k, &st[k]) == 0) {
            ok[k] = true;
        }
    }
    kv_client_free(c);
}

/* The 0-based server (in its group) that a majority of the group's reachable servers, never
 * counting `skip`, report as leader; -1 after timeout_ms. */
static int wait_leader(const struct fixture *f, unsigned first, int skip, int timeout_ms)
{
    long long deadline = proc_now_ms() + timeout_ms;
    do {
        struct kv_server_status st[GROUP_SIZE];
        bool ok[GROUP_SIZE];
        unsigned votes[GROUP_SIZE + 1] = {0};
        group_status(f, first, skip, st, ok);
        for (unsigned k = 0; k < GROUP_SIZE; k++) {
            if (ok[k] && st[k].leader >= 1 && st[k].leader <= GROUP_SIZE) {
                votes[st[k].leader]++;
            }
        }
        for (unsigned l = 1; l <= GROUP_SIZE; l++) {
            if (votes[l] * 2 > GROUP_SIZE && (int)l - 1 != skip) {
                return (int)l - 1;
            }
        }
        usleep(50000);
    } while (proc_now_ms() < deadline);
    return -1;
}

/* ---- commands and I/O through the mount ---- */

/* `raftfs meta --meta M join 1 A0,A1,A2`, bounded; its output into out. Returns its status. */
static int raftfs_join(struct fixture *f, char *out, size_t cap)
{
    char bin[300], log[400], errmsg[RFS_ERRMSG_SIZE];
    char *argv[] = {bin,     "meta", "--meta", f->meta_list,  "--timeout",
                    "15000", "join", "1",      f->group_list, NULL};
    pid_t pid;
    FILE *fp;
    size_t n = 0;
    int st;
    snprintf(bin, sizeof bin, "%s/raftfs", f->bin_dir);
    snprintf(log, sizeof log, "%s/join.out", f->dir);
    if (proc_spawn(argv, log, &pid, errmsg) != 0) {
        fail_msg("%s", errmsg);
    }
    st = proc_wait(pid, 20000);
    if (st == -2) {
        st = proc_stop(pid, 1000);
    }
    fp = fopen(log, "r");
    if (fp != NULL) {
        n = fread(out, 1, cap - 1, fp);
        fclose(fp);
    }
    out[n] = '\0';
    return st;
}

/* In a child (so a hung FUSE call cannot hang the test): write `text` to mnt/name, fsync,
 * close, read it back and compare; with write false only read and compare. Exit 0 when it
 * matched, 1..4 for the step that failed. */
static void io_child(const char *path, const char *text, bool write_it)
{
    char buf[256];
    size_t len = strlen(text);
    ssize_t n;
    int fd;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (write_it) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0 || close(fd) != 0) {
            _exit(1);
        }
    }
    fd = open(path, O_RDONLY);
    if (fd < 0) {
        _exit(2);
    }
    n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0) {
        _exit(3);
    }
    _exit((size_t)n == len && memcmp(buf, text, len) == 0 ? 0 : 4);
}

/* Write (or only read back) mnt/name = "file <name>\n" within IO_WAIT. Returns the child's
 * status (0: done and matched), or -2 if it hung (it is killed). */
static int mount_io(struct fixture *f, const char *name, bool write_it)
{
    char path[400], text[128];
    pid_t pid;
    int st;
    snprintf(path, sizeof path, "%s/%s", f->mnt, name);
    snprintf(text, sizeof text, "file %s\n", name);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        io_child(path, text, write_it);
    }
    f->io_pid = pid;
    st = proc_wait(pid, IO_WAIT);
    if (st == -2) {
        proc_kill(pid, SIGKILL);
        proc_wait(pid, STOP_WAIT);
    }
    f->io_pid = 0;
    return st;
}

/* ---- the test ---- */

static void test_shard_leader_cut_off_mount_goes_on_and_it_catches_up(void **state)
{
    static const char *const names[HOSTS] = {"m0", "m1", "m2", "s0", "s1", "s2"};
    struct fixture *f = *state;
    char errmsg[RFS_ERRMSG_SIZE], out[4096], name[32], net_log[300];
    const char *const mount_args[] = {"--timeout", "5000", NULL};
    struct kv_server_status st[GROUP_SIZE];
    bool ok[GROUP_SIZE];
    long long t0, t_cut, t_leader, t_serving, t_heal;
    uint64_t before, target = 0;
    int leader, new_leader, rv;
    unsigned cut;
    size_t len;

    if (f->skipped) {
        skip();
    }
    snprintf(net_log, sizeof net_log, "%s/net.log", f->dir);
    t0 = proc_now_ms();
    if (netns_create(&f->net, names, HOSTS, net_log, errmsg) != 0) {
        printf("SKIPPED: cannot make network namespaces here: %s\n", errmsg);
        skip();
    }
    len = 0;
    for (unsigned i = 0; i < GROUP_SIZE; i++) {
        len += (size_t)snprintf(f->meta_list + len, sizeof f->meta_list - len, "%s%s:%d",
                                i ? "," : "", f->net.addr[i], PORT);
    }
    len = 0;
    for (unsigned i = 0; i < GROUP_SIZE; i++) {
        len += (size_t)snprintf(f->group_list + len, sizeof f->group_list - len, "%s%s:%d",
                                i ? "," : "", f->net.addr[GROUP_SIZE + i], PORT);
    }
    printf("hosts on 10.77.%u.0/24 behind %s; meta %s; group 1 %s\n", f->net.subnet, f->net.bridge,
           f->meta_list, f->group_list);

    /* Arrange: both groups up, the group joined, the filesystem mounted, files written. */
    for (unsigned i = 0; i < HOSTS; i++) {
        start_server(f, i);
    }
    if (wait_leader(f, 0, -1, LEADER_WAIT) < 0 || wait_leader(f, GROUP_SIZE, -1, LEADER_WAIT) < 0) {
        dump_logs(f);
        fail_msg("no leader in the meta group or group 1 within %d ms", LEADER_WAIT);
    }
    rv = raftfs_join(f, out, sizeof out);
    if (rv != 0 || strstr(out, "\"1\":[") == NULL) {
        dump_logs(f);
        fail_msg("raftfs meta join exited with %d: %s", rv, out);
    }
    {
        char bin[300];
        snprintf(bin, sizeof bin, "%s/raftfs-mount", f->bin_dir);
        if (mount_helper_start_args(bin, f->meta_list, f->mnt, mount_args, f->mount_log,
                                    &f->mount_pid, errmsg) != 0) {
            dump_logs(f);
            fail_msg("%s", errmsg);
        }
    }
    for (unsigned k = 0; k < 5; k++) {
        snprintf(name, sizeof name, "before%u", k);
        rv = mount_io(f, name, true);
        if (rv != 0) {
            dump_logs(f);
            fail_msg("writing %s through the mount: %d", name, rv);
        }
    }
    printf("up, joined, mounted, 5 files written: %lld ms\n", proc_now_ms() - t0);

    /* Act: cut the shard group's leader off. */
    leader = wait_leader(f, GROUP_SIZE, -1, LEADER_WAIT);
    assert_true(leader >= 0);
    cut = GROUP_SIZE + (unsigned)leader;
    group_status(f, GROUP_SIZE, -1, st, ok);
    assert_true(ok[leader]);
    before = st[leader].applied;
    t_cut = proc_now_ms();
    if (netns_cut(&f->net, cut, errmsg) != 0) {
        fail_msg("%s", errmsg);
    }
    printf("cut %s (%s, leader of group 1) off\n", f->net.ns[cut], f->net.addr[cut]);

    /* Assert: the other two elect a leader and the mount serves again, in bounded time. */
    new_leader = wait_leader(f, GROUP_SIZE, leader, LEADER_WAIT);
    if (new_leader < 0) {
        dump_logs(f);
        fail_msg("no new leader in group 1 within %d ms of the cut", LEADER_WAIT);
    }
    t_leader = proc_now_ms();
    rv = -1;
    while (rv != 0 && proc_now_ms() - t_cut < SERVE_WAIT) {
        rv = mount_io(f, "after0", true);
    }
    if (rv != 0) {
        dump_logs(f);
        fail_msg("no write through the mount succeeded within %d ms of the cut (last: %d)",
                 SERVE_WAIT, rv);
    }
    t_serving = proc_now_ms();
    for (unsigned k = 1; k < 5; k++) {
        snprintf(name, sizeof name, "after%u", k);
        rv = mount_io(f, name, true);
        if (rv != 0) {
            dump_logs(f);
            fail_msg("writing %s through the mount with a host cut off: %d", name, rv);
        }
    }
    for (unsigned k = 0; k < 5; k++) {
        snprintf(name, sizeof name, "before%u", k);
        assert_int_equal(mount_io(f, name, false), 0);
    }
    printf("new leader s%d after %lld ms, the mount wrote again after %lld ms\n", new_leader,
           t_leader - t_cut, t_serving - t_cut);

    /* Heal: the cut host catches up with what the others applied. */
    group_status(f, GROUP_SIZE, (int)leader, st, ok);
    for (unsigned k = 0; k < GROUP_SIZE; k++) {
        if (ok[k] && st[k].applied > target) {
            target = st[k].applied;
        }
    }
    /* The others applied what the mount wrote meanwhile; the cut host cannot have. */
    assert_true(target > before);
    t_heal = proc_now_ms();
    if (netns_heal(&f->net, cut, errmsg) != 0) {
        fail_msg("%s", errmsg);
    }
    for (;;) {
        group_status(f, GROUP_SIZE, -1, st, ok);
        if (ok[leader] && st[leader].applied >= target) {
            break;
        }
        if (proc_now_ms() - t_heal > CATCH_UP) {
            dump_logs(f);
            fail_msg("s%d did not reach applied index %llu within %d ms of the heal (at %llu)",
                     leader, (unsigned long long)target, CATCH_UP,
                     ok[leader] ? (unsigned long long)st[leader].applied : 0ULL);
        }
        usleep(100000);
    }
    printf("s%d caught up from applied %llu to %llu in %lld ms after the heal\n", leader,
           (unsigned long long)before, (unsigned long long)target, proc_now_ms() - t_heal);
    assert_int_equal(mount_io(f, "healed", true), 0);
    printf("total %lld ms\n", proc_now_ms() - t0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shard_leader_cut_off_mount_goes_on_and_it_catches_up,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
