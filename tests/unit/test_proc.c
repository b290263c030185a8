/* Tests of the process, port and tmpdir helpers (tests/lib/proc.h). Every spawned pid is
 * stopped in teardown and every tmpdir removed, even when a test fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "tests/lib/proc.h"

#define MAX_PIDS 8

struct fixture {
    char dir[PATH_MAX];
    pid_t pids[MAX_PIDS];
    int n_pids;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char errmsg[RFS_ERRMSG_SIZE];
    if (f == NULL || tmpdir_make("test-proc", f->dir, sizeof f->dir, errmsg) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < f->n_pids; i++) {
        proc_stop(f->pids[i], 1000);
    }
    tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* Spawn argv (stopped in teardown); its output goes to log_path if not NULL. */
static pid_t spawn(struct fixture *f, char *const argv[], const char *log_path)
{
    char errmsg[RFS_ERRMSG_SIZE] = "";
    pid_t pid = 0;
    int rv = proc_spawn(argv, log_path, &pid, errmsg);
    if (rv != 0) {
        fail_msg("spawn %s: %s", argv[0], errmsg);
    }
    assert_true(f->n_pids < MAX_PIDS);
    f->pids[f->n_pids++] = pid;
    return pid;
}

static void test_proc_stop_ends_a_sleeping_child_with_sigterm(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"sleep", "5", NULL};
    pid_t pid = spawn(f, argv, NULL);
    long long start = proc_now_ms();

    assert_true(proc_alive(pid));
    assert_int_equal(proc_stop(pid, 2000), 128 + SIGTERM);
    assert_true(proc_now_ms() - start < 2000);
    assert_false(proc_alive(pid));
    assert_int_equal(proc_stop(pid, 100), -1); /* already reaped */
}

/* Whether the process *arg has exec'd sleep (so the shell's trap is in place). */
static bool runs_sleep(void *arg)
{
    char path[64], comm[64] = "";
    FILE *fp;
    snprintf(path, sizeof path, "/proc/%d/comm", (int)*(pid_t *)arg);
    fp = fopen(path, "r");
    if (fp == NULL) {
        return false;
    }
    if (fgets(comm, sizeof comm, fp) == NULL) {
        comm[0] = '\0';
    }
    fclose(fp);
    return strcmp(comm, "sleep\n") == 0;
}

static void test_proc_stop_kills_a_child_that_ignores_sigterm(void **state)
{
    struct fixture *f = *state;
    /* An ignored signal stays ignored across exec, so sleep itself ignores SIGTERM. */
    char *argv[] = {"sh", "-c", "trap '' TERM; exec sleep 5", NULL};
    pid_t pid = spawn(f, argv, NULL);
    long long start;

    assert_true(wait_until(runs_sleep, &pid, 2000));
    start = proc_now_ms();
    assert_int_equal(proc_stop(pid, 200), 128 + SIGKILL);
    assert_true(proc_now_ms() - start < 2000);
}

static void test_proc_wait_returns_exit_status(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"sh", "-c", "exit 3", NULL};
    pid_t pid = spawn(f, argv, NULL);

    assert_int_equal(proc_wait(pid, 2000), 3);
}

static void test_proc_wait_times_out_on_a_running_child(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"sleep", "5", NULL};
    pid_t pid = spawn(f, argv, NULL);

    assert_int_equal(proc_wait(pid, 50), -2);
    assert_true(proc_alive(pid));
}

static bool exited(void *arg)
{
    return !proc_alive(*(pid_t *)arg);
}

static void test_proc_alive_does_not_reap_the_child(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"sh", "-c", "exit 7", NULL};
    pid_t pid = spawn(f, argv, NULL);

    assert_true(wait_until(exited, &pid, 2000));
    assert_int_equal(proc_stop(pid, 1000), 7); /* the status is still there */
}

static void test_proc_spawn_of_missing_program_is_not_found(void **state)
{
    char *argv[] = {"/nonexistent/raftfs-no-such-program", NULL};
    char errmsg[RFS_ERRMSG_SIZE] = "";
    pid_t pid = 0;
    (void)state;

    assert_int_equal(proc_spawn(argv, NULL, &pid, errmsg), RFS_ENOTFOUND);
    assert_int_equal(pid, 0);
    assert_non_null(strstr(errmsg, "No such file"));
}

static void test_proc_spawn_sends_stdout_and_stderr_to_the_log(void **state)
{
    struct fixture *f = *state;
    char log_path[PATH_MAX + 16];
    char *argv[] = {"sh", "-c", "echo to-out; echo to-err >&2", NULL};
    char buf[256] = "";
    FILE *fp;
    pid_t pid;

    snprintf(log_path, sizeof log_path, "%s/child.log", f->dir);
    pid = spawn(f, argv, log_path);
    assert_int_equal(proc_wait(pid, 2000), 0);
    fp = fopen(log_path, "r");
    assert_non_null(fp);
    assert_true(fread(buf, 1, sizeof buf - 1, fp) > 0);
    fclose(fp);
    assert_string_equal(buf, "to-out\nto-err\n");
}

static void make_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x", 1), 1);
    close(fd);
}

static void test_tmpdir_remove_deletes_the_tree_but_not_symlink_targets(void **state)
{
    char errmsg[RFS_ERRMSG_SIZE];
    char outside[PATH_MAX], victim[PATH_MAX + 16], dir[PATH_MAX];
    char path[PATH_MAX + 64];
    struct stat sb;
    (void)state;

    assert_int_equal(tmpdir_make("test-proc-outside", outside, sizeof outside, errmsg), 0);
    snprintf(victim, sizeof victim, "%s/keep", outside);
    make_file(victim);
    assert_int_equal(tmpdir_make("test-proc-tree", dir, sizeof dir, errmsg), 0);
    snprintf(path, sizeof path, "%s/a", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/a/b", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/a/b/file", dir);
    make_file(path);
    snprintf(path, sizeof path, "%s/a/link", dir);
    assert_int_equal(symlink(outside, path), 0);

    assert_int_equal(tmpdir_remove(dir), 0);
    assert_int_equal(lstat(dir, &sb), -1);
    assert_int_equal(stat(victim, &sb), 0);
    assert_int_equal(tmpdir_remove(dir), 0); /* already gone is fine */
    assert_int_equal(tmpdir_remove(outside), 0);
}

static void test_tmpdir_remove_refuses_root_and_relative_paths(void **state)
{
    (void)state;
    assert_int_equal(tmpdir_remove("/"), RFS_EINVAL);
    assert_int_equal(tmpdir_remove("relative/dir"), RFS_EINVAL);
    assert_int_equal(tmpdir_remove(""), RFS_EINVAL);
}

static void test_free_port_can_be_bound(void **state)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    int port = free_port();
    int fd;
    (void)state;

    assert_true(port > 0 && port < 65536);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    close(fd);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static bool third_call(void *arg)
{
    return ++*(int *)arg >= 3;
}

static void test_wait_until_is_bounded(void **state)
{
    long long start = proc_now_ms();
    int calls = 0;
    (void)state;

    assert_false(wait_until(never, NULL, 50));
    assert_true(proc_now_ms() - start >= 50);
    assert_true(wait_until(third_call, &calls, 1000));
    assert_int_equal(calls, 3);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_proc_stop_ends_a_sleeping_child_with_sigterm),
        T(test_proc_stop_kills_a_child_that_ignores_sigterm),
        T(test_proc_wait_returns_exit_status),
        T(test_proc_wait_times_out_on_a_running_child),
        T(test_proc_alive_does_not_reap_the_child),
        T(test_proc_spawn_of_missing_program_is_not_found),
        T(test_proc_spawn_sends_stdout_and_stderr_to_the_log),
        T(test_tmpdir_remove_deletes_the_tree_but_not_symlink_targets),
        T(test_tmpdir_remove_refuses_root_and_relative_paths),
        T(test_free_port_can_be_bound),
        T(test_wait_until_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
