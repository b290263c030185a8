/* raftfs cluster up/status/down, end to end with the real binaries: a cluster of a meta group
 * and two shard groups of one server each (small: the test machine has two cores) in a
 * temporary directory, mounted; a file written and read through the mount; status healthy; up
 * again is a no-op; a shard server killed with SIGKILL is restarted by up; down leaves no
 * process and no mount. Needs root, /dev/fuse and fusermount3 (SKIPPED otherwise, with the
 * reason); --help and bad usage are checked without them.
 *
 * The servers are daemons (not our children), so they are checked through /proc: a zombie
 * counts as gone, since PID 1 of a container may never reap it. Every wait is bounded; the
 * teardown kills by pid whatever the cluster's pid files (or the test) saw, unmounts lazily,
 * and removes the directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"
#include "tests/unit/mount_helper.h"

#define CMD_WAIT_MS 180000
#define MAX_PIDS    64

struct fixture {
    bool skipped;
    char raftfs[300];
    char tmp[256];
    char dir[300];        /* --dir */
    char mnt[300];        /* --mount */
    char out[320];        /* output of the last raftfs command */
    pid_t seen[MAX_PIDS]; /* every daemon pid the test saw, for the teardown */
    unsigned n_seen;
};

/* ---- helpers ---- */

/* Whether pid runs: /proc/PID/stat exists and its state is not zombie. */
static bool pid_running(pid_t pid)
{
    char path[64], buf[512];
    const char *paren;
    size_t n;
    FILE *fp;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    fp = fopen(path, "r");
    if (fp == NULL) {
        return false;
    }
    n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    paren = strrchr(buf, ')');
    return paren != NULL && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

/* Whether pid's command line mentions our temporary directory (so it is one of ours). */
static bool pid_is_ours(const struct fixture *f, pid_t pid)
{
    char path[64], buf[8192];
    size_t n;
    FILE *fp;
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    fp = fopen(path, "r");
    if (fp == NULL) {
        return false;
    }
    n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    for (size_t i = 0; i < n; i++) {
        buf[i] = buf[i] == '\0' ? ' ' : buf[i];
    }
    buf[n] = '\0';
    return strstr(buf, f->tmp) != NULL;
}

static pid_t read_pidfile(const struct fixture *f, const char *name)
{
    char path[400];
    int pid = 0;
    FILE *fp;
    snprintf(path, sizeof path, "%s/run/%s.pid", f->dir, name);
    fp = fopen(path, "r");
    if (fp == NULL) {
        return 0;
    }
    if (fscanf(fp, "%d", &pid) != 1) {
        pid = 0;
    }
    fclose(fp);
    return pid;
}

static void remember(struct fixture *f, pid_t pid)
{
    for (unsigned i = 0; i < f->n_seen; i++) {
        if (f->seen[i] == pid) {
            return;
        }
    }
    if (pid > 0 && f->n_seen < MAX_PIDS) {
        f->seen[f->n_seen++] = pid;
    }
}

/* Every pid in DIR/run/ (remembered for the teardown); returns how many. */
static unsigned pidfiles(struct fixture *f, pid_t *out, unsigned cap)
{
    char path[400];
    struct dirent *e;
    unsigned n = 0;
    DIR *d;
    snprintf(path, sizeof path, "%s/run", f->dir);
    d = opendir(path);
    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL && n < cap) {
        char name[256];
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".pid") == 0) {
            snprintf(name, sizeof name, "%.*s", (int)(len - 4), e->d_name);
            out[n] = read_pidfile(f, name);
            remember(f, out[n]);
            n++;
        }
    }
    closedir(d);
    return n;
}

/* Run `raftfs cluster CMD --dir DIR ARGS...` (args NULL-terminated); its stdout and stderr go
 * into out. Returns the exit status. */
static int run_cluster(struct fixture *f, const char *cmd, const char *const *args, char *out,
                       size_t cap)
{
    char *argv[16] = {f->raftfs, "cluster", (char *)cmd, "--dir", f->dir};
    char errmsg[RFS_ERRMSG_SIZE];
    unsigned n = 5;
    pid_t pid;
    FILE *fp;
    size_t len;
    int st;
    for (size_t i = 0; args != NULL && args[i] != NULL && n < 15; i++) {
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    unlink(f->out);
    if (proc_spawn(argv, f->out, &pid, errmsg) != 0) {
        fail_msg("raftfs cluster %s: %s", cmd, errmsg);
    }
    st = proc_wait(pid, CMD_WAIT_MS);
    if (st == -2) {
        proc_stop(pid, 5000);
        fail_msg("raftfs cluster %s did not finish in %d ms", cmd, CMD_WAIT_MS);
    }
    fp = fopen(f->out, "r");
    len = fp != NULL ? fread(out, 1, cap - 1, fp) : 0;
    if (fp != NULL) {
        fclose(fp);
    }
    out[len] = '\0';
    printf("$ raftfs cluster %s (exit %d)\n%s", cmd, st, out);
    assert_false(mount_helper_log_has_sanitizer_report(f->out));
    return st;
}

/* sh -c "cmd" with its output in out; returns the exit status. */
static int run_sh(const char *cmd, char *out, size_t cap)
{
    char full[1024];
    size_t n = 0;
    FILE *p;
    int st;
    snprintf(full, sizeof full, "{ %s; } 2>&1", cmd);
    p = popen(full, "r");
    assert_non_null(p);
    while (n + 1 < cap) {
        size_t r = fread(out + n, 1, cap - 1 - n, p);
        if (r == 0) {
            break;
        }
        n += r;
    }
    out[n] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool pid_gone(void *arg)
{
    return !pid_running(*(pid_t *)arg);
}

/* No sanitizer report in any server's or the mount's log. */
static void assert_clean_logs(const struct fixture *f)
{
    char path[400];
    struct dirent *e;
    DIR *d;
    bool bad = false;
    snprintf(path, sizeof path, "%s/logs", f->dir);
    d = opendir(path);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char log[700];
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(log, sizeof log, "%s/%s", path, e->d_name);
        bad |= mount_helper_log_has_sanitizer_report(log);
    }
    closedir(d);
    assert_false(bad);
}

/* ---- the fixture ---- */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *bins = getenv("RAFTFS_BIN_DIR");
    char why[512], mount_bin[300], errmsg[RFS_ERRMSG_SIZE];
    *state = f;
    if (bins == NULL) {
        bins = "build/asan/bin";
    }
    snprintf(f->raftfs, sizeof f->raftfs, "%s/raftfs", bins);
    snprintf(mount_bin, sizeof mount_bin, "%s/raftfs-mount", bins);
    if (access(f->raftfs, X_OK) != 0) {
        snprintf(why, sizeof why, "%s not built (run make, or set RAFTFS_BIN_DIR)", f->raftfs);
        f->skipped = true;
    } else if (!cluster_bins_present(why, sizeof why) ||
               !mount_helper_usable(mount_bin, NULL, why, sizeof why)) {
        f->skipped = true;
    }
    if (tmpdir_make("raftfs-cluster-cmd", f->tmp, sizeof f->tmp, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s/c", f->tmp);
    snprintf(f->mnt, sizeof f->mnt, "%s/mnt", f->tmp);
    snprintf(f->out, sizeof f->out, "%s/out.txt", f->tmp);
    if (f->skipped) {
        printf("SKIPPED (mount tests): %s\n", why);
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pid_t pids[MAX_PIDS];
    pidfiles(f, pids, MAX_PIDS);
    mount_helper_force_unmount(f->mnt);
    for (unsigned i = 0; i < f->n_seen; i++) {
        if (pid_running(f->seen[i]) && pid_is_ours(f, f->seen[i])) {
            fprintf(stderr, "teardown: killing pid %d\n", (int)f->seen[i]);
            kill(f->seen[i], SIGKILL);
        }
    }
    if (getenv("RAFTFS_KEEP_TEST_DIRS") == NULL) {
        tmpdir_remove(f->tmp);
    } else {
        fprintf(stderr, "kept %s\n", f->tmp);
    }
    free(f);
    return 0;
}

/* ---- tests ---- */

static void test_help_and_bad_usage_say_what_to_do(void **state)
{
    struct fixture *f = *state;
    const char *const help[] = {"--help", NULL};
    const char *const bad[] = {"--groups", "0", NULL};
    const char *const purge[] = {"--purge", NULL};
    char out[8192];
    if (access(f->raftfs, X_OK) != 0) {
        skip();
    }
    assert_int_equal(run_cluster(f, "up", help, out, sizeof out), 0);
    assert_non_null(strstr(out, "--replicas"));
    assert_int_equal(run_cluster(f, "status", help, out, sizeof out), 0);
    assert_int_equal(run_cluster(f, "down", help, out, sizeof out), 0);
    assert_non_null(strstr(out, "--purge"));
    assert_int_equal(run_cluster(f, "up", bad, out, sizeof out), 2);
    assert_non_null(strstr(out, "--groups takes a number"));
    assert_int_equal(run_cluster(f, "status", purge, out, sizeof out), 2);
    /* No cluster there: status says how to start one, down has nothing to do. */
    assert_int_equal(run_cluster(f, "status", NULL, out, sizeof out), 2);
    assert_non_null(strstr(out, "raftfs cluster up"));
    assert_int_equal(run_cluster(f, "down", NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "nothing to stop"));
}

static void test_up_status_restart_down(void **state)
{
    struct fixture *f = *state;
    const char *const up_args[] = {"--groups", "2", "--replicas", "1", "--mount", f->mnt, NULL};
    pid_t pids[MAX_PIDS], old, now;
    char out[16384], cmd[800];
    unsigned n;

    if (f->skipped) {
        skip();
    }
    /* up: a new cluster, mounted. */
    assert_int_equal(run_cluster(f, "up", up_args, out, sizeof out), 0);
    assert_non_null(strstr(out, "meta group: 1/1 up, leader elected"));
    assert_non_null(strstr(out, "buckets: 64/64 serving"));
    n = pidfiles(f, pids, MAX_PIDS);
    assert_int_equal(n, 4); /* meta-0, g1-0, g2-0, mount */
    assert_true(mount_helper_is_mount_point(f->mnt));
    snprintf(cmd, sizeof cmd, "echo hi > '%s/a' && cat '%s/a'", f->mnt, f->mnt);
    assert_int_equal(run_sh(cmd, out, sizeof out), 0);
    assert_string_equal(out, "hi\n");

    /* status: healthy; up again: already up. */
    assert_int_equal(run_cluster(f, "status", NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "\nhealthy\n"));
    assert_non_null(strstr(out, "mounted (raftfs-mount pid"));
    assert_int_equal(run_cluster(f, "up", NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "already up"));

    /* A shard server killed: status says so; up restarts it from its data. */
    old = read_pidfile(f, "g1-0");
    assert_true(old > 0 && pid_running(old));
    assert_int_equal(kill(old, SIGKILL), 0);
    assert_true(wait_until(pid_gone, &old, 10000));
    assert_int_equal(run_cluster(f, "status", NULL, out, sizeof out), 1);
    assert_non_null(strstr(out, "NOT healthy"));
    assert_int_equal(run_cluster(f, "up", NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "restarting g1-0"));
    now = read_pidfile(f, "g1-0");
    remember(f, now);
    assert_true(now > 0 && now != old && pid_running(now));
    snprintf(cmd, sizeof cmd, "cat '%s/a'", f->mnt);
    assert_int_equal(run_sh(cmd, out, sizeof out), 0);
    assert_string_equal(out, "hi\n");
    assert_int_equal(run_cluster(f, "status", NULL, out, sizeof out), 0);

    /* As after a crash of the machine: every process killed, the mount left dead. up starts
     * them all from their data and ports, and mounts again over the stale mount. */
    n = pidfiles(f, pids, MAX_PIDS);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(kill(pids[i], SIGKILL), 0);
    }
    for (unsigned i = 0; i < n; i++) {
        assert_true(wait_until(pid_gone, &pids[i], 10000));
    }
    assert_int_equal(run_cluster(f, "up", NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "restarting meta-0"));
    assert_non_null(strstr(out, "mounted at"));
    snprintf(cmd, sizeof cmd, "cat '%s/a'", f->mnt);
    assert_int_equal(run_sh(cmd, out, sizeof out), 0);
    assert_string_equal(out, "hi\n");
    assert_int_equal(run_cluster(f, "status", NULL, out, sizeof out), 0);

    /* down: every process gone, nothing mounted, data kept. */
    n = pidfiles(f, pids, MAX_PIDS);
    assert_int_equal(n, 4);
    assert_int_equal(run_cluster(f, "down", NULL, out, sizeof out), 0);
    for (unsigned i = 0; i < n; i++) {
        if (pid_running(pids[i])) {
            fail_msg("pid %d still runs after down", (int)pids[i]);
        }
    }
    assert_false(mount_helper_is_mount_point(f->mnt));
    assert_int_equal(pidfiles(f, pids, MAX_PIDS), 0);
    snprintf(cmd, sizeof cmd, "%s/data/g1-0", f->dir);
    assert_int_equal(access(cmd, F_OK), 0);
    assert_clean_logs(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_help_and_bad_usage_say_what_to_do, setup, teardown),
        cmocka_unit_test_setup_teardown(test_up_status_restart_down, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
