/* Process, port and temporary-directory helpers for multi-process tests (see proc.h).
 *
 * Exec failures are reported to the parent through a close-on-exec pipe: the child writes
 * errno into it only if execvp returns, so an empty read means the program is running. */
#include "tests/lib/proc.h"

#include "common/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long long proc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long proc_now_ms(void)
{
    return proc_now_ns() / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Runs in the child between fork and exec: async-signal-safe calls only. */
static void spawn_child(char *const argv[], int out_fd, int err_fd, int status_fd, pid_t parent)
{
    sigset_t none;
    int null_fd;
    int e;

    /* Die with the spawning thread, so a crashed test leaves no servers behind. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(127); /* the parent died before prctl took effect */
    }
    null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0 && null_fd != STDIN_FILENO) {
        dup2(null_fd, STDIN_FILENO);
        close(null_fd);
    }
    if (out_fd >= 0 && out_fd != STDOUT_FILENO) {
        dup2(out_fd, STDOUT_FILENO);
    }
    if (err_fd >= 0 && err_fd != STDERR_FILENO) {
        dup2(err_fd, STDERR_FILENO);
    }
    /* A test may have blocked or ignored signals; the program starts clean. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    execvp(argv[0], argv);
    e = errno;
    if (write(status_fd, &e, sizeof e) < 0) {
        /* nothing more to do: the parent sees the exit status */
    }
    _exit(127);
}

int proc_spawn_fds(char *const argv[], int out_fd, int err_fd, pid_t *pid, char *errmsg)
{
    int status_pipe[2];
    pid_t parent = getpid();
    pid_t child;
    ssize_t n;
    int child_errno = 0;

    if (argv == NULL || argv[0] == NULL) {
        rfs_errmsg_printf(errmsg, "spawn: empty argv");
        return RFS_EINVAL;
    }
    if (pipe2(status_pipe, O_CLOEXEC) != 0) {
        rfs_errmsg_printf(errmsg, "spawn %s: pipe: %s", argv[0], strerror(errno));
        return RFS_EIO;
    }
    child = fork();
    if (child < 0) {
        rfs_errmsg_printf(errmsg, "spawn %s: fork: %s", argv[0], strerror(errno));
        close(status_pipe[0]);
        close(status_pipe[1]);
        return RFS_EIO;
    }
    if (child == 0) {
        close(status_pipe[0]);
        spawn_child(argv, out_fd, err_fd, status_pipe[1], parent);
    }
    close(status_pipe[1]);
    do {
        n = read(status_pipe[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    close(status_pipe[0]);
    if (n == (ssize_t)sizeof child_errno) {
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
        }
        rfs_errmsg_printf(errmsg, "spawn %s: exec: %s", argv[0], strerror(child_errno));
        return (child_errno == ENOENT || child_errno == EACCES) ? RFS_ENOTFOUND : RFS_EIO;
    }
    *pid = child;
    return 0;
}

int proc_spawn(char *const argv[], const char *log_path, pid_t *pid, char *errmsg)
{
    int fd = -1;
    int rv;

    if (log_path != NULL) {
        fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            rfs_errmsg_printf(errmsg, "spawn: open log %s: %s", log_path, strerror(errno));
            return RFS_EIO;
        }
    }
    rv = proc_spawn_fds(argv, fd, fd, pid, errmsg);
    if (fd >= 0) {
        close(fd);
    }
    return rv;
}

int proc_kill(pid_t pid, int sig)
{
    if (pid <= 0 || kill(pid, sig) != 0) {
        return RFS_ENOTFOUND;
    }
    return 0;
}

static int decode_status(int status)
{
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return -1;
}

int proc_wait(pid_t pid, int timeout_ms)
{
    long long deadline = proc_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int pause_ms = 1;
    int status;

    if (pid <= 0) {
        return -1;
    }
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            return decode_status(status);
        }
        if (r < 0 && errno != EINTR) {
            return -1; /* ECHILD: not ours, or already reaped */
        }
        long long left = deadline - proc_now_ms();
        if (r == 0 && left <= 0) {
            return -2;
        }
        if (r == 0) {
            sleep_ms(pause_ms < left ? pause_ms : (int)left);
            pause_ms = pause_ms < 20 ? pause_ms * 2 : 20;
        }
    }
}

int proc_stop(pid_t pid, int timeout_ms)
{
    int st;

    if (pid <= 0) {
        return -1;
    }
    st = proc_wait(pid, 0);
    if (st != -2) {
        return st;
    }
    kill(pid, SIGTERM);
    st = proc_wait(pid, timeout_ms);
    if (st != -2) {
        return st;
    }
    kill(pid, SIGKILL);
    /* SIGKILL cannot be caught, but a process stuck in the kernel may take a moment. */
    st = proc_wait(pid, 10000);
    return st == -2 ? -1 : st;
}

bool proc_alive(pid_t pid)
{
    siginfo_t info;

    if (pid <= 0) {
        return false;
    }
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
        return info.si_pid == 0; /* si_pid stays 0 while the child runs */
    }
    /* Not our child: ask the kernel whether it exists at all. */
    return kill(pid, 0) == 0 || errno == EPERM;
}

int free_port(void)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = -1;

    if (fd < 0) {
        return -1;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    close(fd);
    return port;
}

int tmpdir_make(const char *prefix, char *out, size_t cap, char *errmsg)
{
    const char *base = getenv("TMPDIR");
    int n;

    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    n = snprintf(out, cap, "%s/%s-XXXXXX", base, prefix != NULL ? prefix : "raftfs");
    if (n < 0 || (size_t)n >= cap) {
        rfs_errmsg_printf(errmsg, "tmpdir: path too long");
        return RFS_EINVAL;
    }
    if (mkdtemp(out) == NULL) {
        rfs_errmsg_printf(errmsg, "tmpdir: mkdtemp %s: %s", out, strerror(errno));
        return RFS_EIO;
    }
    return 0;
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) {
        return -1;
    }
    return 0;
}

int tmpdir_remove(const char *path)
{
    struct stat sb;

    if (path == NULL || path[0] != '/' || strcmp(path, "/") == 0) {
        return RFS_EINVAL;
    }
    if (lstat(path, &sb) != 0) {
        return errno == ENOENT ? 0 : RFS_EIO;
    }
    /* Depth first (contents before their directory), never following symlinks. */
    if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        return RFS_EIO;
    }
    return 0;
}

bool wait_until(bool (*pred)(void *arg), void *arg, int timeout_ms)
{
    long long deadline = proc_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int pause_ms = 1;

    for (;;) {
        if (pred(arg)) {
            return true;
        }
        long long left = deadline - proc_now_ms();
        if (left <= 0) {
            return pred(arg);
        }
        sleep_ms(pause_ms < left ? pause_ms : (int)left);
        pause_ms = pause_ms < 20 ? pause_ms * 2 : 20;
    }
}
