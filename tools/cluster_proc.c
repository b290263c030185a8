/* Daemons of `raftfs cluster`: started in their own session (double fork, so they are never our
 * zombies), found again through their pid files, stopped by pid: never by name. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "rpc/rpc.h"
#include "tools/cluster.h"

long long cluster_now_ms(void)
{
    return (long long)rpc_now_ms();
}

void cluster_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The grandchild: stdio set up, then exec; on failure its errno goes up the status pipe. */
static void daemon_exec(char *const argv[], const char *log, int status_fd)
{
    int in = open("/dev/null", O_RDONLY);
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err = errno;
    if (in < 0 || out < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
        dup2(out, STDERR_FILENO) < 0) {
        err = errno;
    } else {
        execv(argv[0], argv);
        err = errno;
    }
    if (write_all(status_fd, &err, sizeof err) != 0) {
        /* nobody to tell */
    }
    _exit(127);
}

int cluster_proc_start(char *const argv[], const char *log, const char *pidfile, pid_t *pid,
                       char *errmsg)
{
    int pid_pipe[2], status_pipe[2];
    pid_t child, grandchild = 0;
    int err = 0, ws;
    ssize_t n;
    FILE *fp;

    if (pipe2(pid_pipe, O_CLOEXEC) != 0 || pipe2(status_pipe, O_CLOEXEC) != 0) {
        rfs_errmsg_printf(errmsg, "pipe: %s", strerror(errno));
        return RFS_EIO;
    }
    child = fork();
    if (child < 0) {
        rfs_errmsg_printf(errmsg, "fork: %s", strerror(errno));
        return RFS_EIO;
    }
    if (child == 0) {
        pid_t g;
        setsid();
        g = fork();
        if (g == 0) {
            daemon_exec(argv, log, status_pipe[1]);
        }
        _exit(write_all(pid_pipe[1], &g, sizeof g) == 0 && g > 0 ? 0 : 1);
    }
    close(pid_pipe[1]);
    close(status_pipe[1]);
    n = read(pid_pipe[0], &grandchild, sizeof grandchild);
    waitpid(child, &ws, 0);
    if (n == sizeof grandchild && grandchild > 0) {
        /* EOF when exec succeeded (the pipe is close-on-exec), else the errno. */
        while ((n = read(status_pipe[0], &err, sizeof err)) < 0 && errno == EINTR) {
        }
    }
    close(pid_pipe[0]);
    close(status_pipe[0]);
    if (grandchild <= 0) {
        rfs_errmsg_printf(errmsg, "could not start %s (fork failed)", argv[0]);
        return RFS_EIO;
    }
    if (n == sizeof err) {
        rfs_errmsg_printf(errmsg, "could not start %s: %s (log %s)", argv[0], strerror(err), log);
        return RFS_EIO;
    }
    fp = fopen(pidfile, "w");
    if (fp == NULL || fprintf(fp, "%d\n", (int)grandchild) < 0 || fclose(fp) != 0) {
        rfs_errmsg_printf(errmsg, "%s: %s (%s runs as pid %d)", pidfile, strerror(errno), argv[0],
                          (int)grandchild);
        return RFS_EIO;
    }
    *pid = grandchild;
    return 0;
}

bool cluster_proc_alive(pid_t pid)
{
    char path[64], buf[512];
    const char *paren;
    FILE *fp;
    size_t n;
    if (pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH)) {
        return false;
    }
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    fp = fopen(path, "r");
    if (fp == NULL) {
        return false;
    }
    n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    paren = strrchr(buf, ')'); /* "pid (comm) S ...": comm may hold anything */
    return paren != NULL && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

/* Whether one of pid's arguments is marker. */
static bool cmdline_has(pid_t pid, const char *marker)
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
    buf[n] = '\0';
    for (size_t off = 0; off < n; off += strlen(buf + off) + 1) {
        if (strcmp(buf + off, marker) == 0) {
            return true;
        }
    }
    return false;
}

pid_t cluster_proc_running(const char *pidfile, const char *marker)
{
    FILE *fp = fopen(pidfile, "r");
    int pid = 0;
    if (fp == NULL) {
        return 0;
    }
    if (fscanf(fp, "%d", &pid) != 1) {
        pid = 0;
    }
    fclose(fp);
    if (pid <= 0 || !cluster_proc_alive(pid) || !cmdline_has(pid, marker)) {
        return 0;
    }
    return pid;
}

static unsigned count_alive(const pid_t *pids, unsigned n)
{
    unsigned alive = 0;
    for (unsigned i = 0; i < n; i++) {
        alive += cluster_proc_alive(pids[i]);
    }
    return alive;
}

static void wait_gone(const pid_t *pids, unsigned n, int timeout_ms)
{
    long long deadline = cluster_now_ms() + timeout_ms;
    while (count_alive(pids, n) > 0 && cluster_now_ms() < deadline) {
        cluster_sleep_ms(50);
    }
}

unsigned cluster_proc_stop(const pid_t *pids, unsigned n, int timeout_ms)
{
    unsigned killed = 0;
    for (unsigned i = 0; i < n; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            kill(pids[i], SIGCONT); /* a stopped process acts on SIGTERM only once continued */
        }
    }
    wait_gone(pids, n, timeout_ms);
    for (unsigned i = 0; i < n; i++) {
        if (cluster_proc_alive(pids[i])) {
            kill(pids[i], SIGKILL);
            killed++;
        }
    }
    if (killed > 0) {
        wait_gone(pids, n, 5000);
    }
    return killed;
}

int cluster_proc_free_port(char *errmsg)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        port = ntohs(sa.sin_port);
    } else {
        rfs_errmsg_printf(errmsg, "no free port on 127.0.0.1: %s", strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

bool cluster_proc_mounted(const char *path)
{
    FILE *fp = fopen("/proc/self/mountinfo", "r");
    char line[4096], point[4096];
    bool found = false;
    if (fp == NULL) {
        return false;
    }
    while (!found && fgets(line, sizeof line, fp) != NULL) {
        if (sscanf(line, "%*s %*s %*s %*s %4095s", point) == 1 && strcmp(point, path) == 0) {
            found = true;
        }
    }
    fclose(fp);
    return found;
}

int cluster_proc_run(char *const argv[], int timeout_ms)
{
    long long deadline = cluster_now_ms() + timeout_ms;
    pid_t pid = fork();
    int ws;
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    for (;;) {
        pid_t r = waitpid(pid, &ws, WNOHANG);
        if (r == pid) {
            return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
        }
        if (r < 0 && errno != EINTR) {
            return -1;
        }
        if (cluster_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            return -1;
        }
        cluster_sleep_ms(20);
    }
}

void cluster_proc_tail(const char *path, unsigned n)
{
    FILE *fp = fopen(path, "r");
    char lines[8][512];
    unsigned count = 0;
    if (fp == NULL) {
        return;
    }
    if (n > 8) {
        n = 8;
    }
    while (fgets(lines[count % n], sizeof lines[0], fp) != NULL) {
        count++;
    }
    fclose(fp);
    for (unsigned i = count > n ? count - n : 0; i < count; i++) {
        fprintf(stderr, "    | %s", lines[i % n]);
        if (strchr(lines[i % n], '\n') == NULL) {
            fputc('\n', stderr);
        }
    }
}

int cluster_mkdirs(const char *path, char *errmsg)
{
    char buf[CLUSTER_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                rfs_errmsg_printf(errmsg, "mkdir %s: %s", buf, strerror(errno));
                return RFS_EIO;
            }
            *p = saved;
            if (saved == '\0') {
                return 0;
            }
        }
    }
}
