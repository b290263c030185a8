/* Process, port and temporary-directory helpers for multi-process tests.
 *
 * Conventions: functions that can fail return 0 or a positive RFS_E* code and, where a
 * reason helps, write one line into errmsg (RFS_ERRMSG_SIZE bytes, may be NULL). Every
 * helper is bounded in time, so a test that fails half way can still clean up in its
 * teardown: stop every pid it spawned with proc_stop() and remove its tmpdir. */
#ifndef RFS_TESTS_PROC_H
#define RFS_TESTS_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Start argv[0] (searched in PATH when it has no '/') with argv, stdin from /dev/null and
 * stdout + stderr appended to log_path (created if missing; NULL keeps the caller's). The
 * child gets SIGKILL if the thread that spawned it dies (PR_SET_PDEATHSIG), so spawn from a
 * thread that outlives the child (normally the test's main thread): a crashed test then
 * leaves no servers behind. Returns 0 with *pid set once exec has succeeded, RFS_ENOTFOUND
 * if the program could not be executed, RFS_EIO for other failures. */
int proc_spawn(char *const argv[], const char *log_path, pid_t *pid, char *errmsg);

/* As proc_spawn, with the child's stdout and stderr set to the given descriptors (-1 keeps
 * the caller's). The descriptors stay open in the caller and are not inherited by other
 * children spawned later only if the caller made them O_CLOEXEC. */
int proc_spawn_fds(char *const argv[], int out_fd, int err_fd, pid_t *pid, char *errmsg);

/* Send sig to pid. Returns 0, or RFS_ENOTFOUND if there is no such process. */
int proc_kill(pid_t pid, int sig);

/* Stop a child: SIGTERM, wait up to timeout_ms for it to exit, then SIGKILL and reap it.
 * Returns its exit code (0..255) if it exited, 128 + the signal number if a signal killed
 * it (so a process that ignored SIGTERM returns 128 + SIGKILL = 137), or -1 if pid is not
 * an unreaped child of this process (already reaped, never spawned, pid <= 0). */
int proc_stop(pid_t pid, int timeout_ms);

/* Wait up to timeout_ms for a child to exit on its own and reap it. Returns the status as
 * proc_stop does, or -2 if it is still running at the deadline (it is left running). */
int proc_wait(pid_t pid, int timeout_ms);

/* Whether pid is still running (a zombie child counts as not running; it is not reaped,
 * so proc_stop/proc_wait can still read its status). */
bool proc_alive(pid_t pid);

/* A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
 * Another process may take it before the caller binds it; tests that can pass port 0 to a
 * server and read the real port back should prefer that. Returns the port, or -1. */
int free_port(void);

/* Create a fresh directory "$TMPDIR/<prefix>-XXXXXX" (/tmp when TMPDIR is unset) and write
 * its path into out (cap bytes). Returns 0 or RFS_EIO. */
int tmpdir_make(const char *prefix, char *out, size_t cap, char *errmsg);

/* Remove path and everything under it; symlinks are removed, never followed. Missing path is
 * not an error. Refuses "/" and relative paths. Returns 0, RFS_EINVAL or RFS_EIO. */
int tmpdir_remove(const char *path);

/* Call pred(arg) until it returns true or timeout_ms have passed, sleeping 1 ms at first
 * and backing off to 20 ms between calls. Returns whether pred became true (it is called
 * once more at the deadline). */
bool wait_until(bool (*pred)(void *arg), void *arg, int timeout_ms);

/* CLOCK_MONOTONIC in milliseconds and nanoseconds. */
long long proc_now_ms(void);
long long proc_now_ns(void);

#endif
