/* Client side of bin/raftfs-proxy for tests (see proxy_ctl.h). */
#include "tests/lib/proxy_ctl.h"

#include "common/err.h"
#include "tests/lib/proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ARGS_MAX 64

int proxy_ctl_bin_path(char *out, size_t cap)
{
    const char *dir = getenv("RAFTFS_BIN_DIR");
    if (dir == NULL || dir[0] == '\0') {
        dir = "build/asan/bin";
    }
    snprintf(out, cap, "%s/raftfs-proxy", dir);
    return access(out, X_OK) == 0 ? 0 : RFS_ENOTFOUND;
}

/* Milliseconds left until deadline, at least 0. */
static int left_ms(long long deadline)
{
    long long left = deadline - proc_now_ms();
    return left > 0 ? (int)left : 0;
}

/* Read from fd into buf (appending at *len) until a line starting with "control " is
 * complete, EOF, or the deadline. */
static int read_banner(int fd, char *buf, size_t cap, long long deadline, char *errmsg)
{
    size_t len = 0;

    buf[0] = '\0';
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        char *line = strstr(buf, "control ");
        ssize_t n;
        int r;

        if (line != NULL && (line == buf || line[-1] == '\n') && strchr(line, '\n') != NULL) {
            return 0;
        }
        if (len + 1 >= cap) {
            rfs_errmsg_printf(errmsg, "proxy banner too long");
            return RFS_EIO;
        }
        r = poll(&pfd, 1, left_ms(deadline));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0) {
            rfs_errmsg_printf(errmsg, "no 'control' line from the proxy in time");
            return RFS_ETIMEDOUT;
        }
        n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rfs_errmsg_printf(errmsg, "proxy exited before printing its 'control' line");
            return RFS_EIO;
        }
        len += (size_t)n;
        buf[len] = '\0';
    }
}

int proxy_ctl_start(struct proxy_ctl *pc, const char *bin, const char *const *args,
                    const char *log_path, int timeout_ms, char *errmsg)
{
    char *argv[ARGS_MAX + 4];
    int argc = 0;
    int out_pipe[2];
    int log_fd = -1;
    long long deadline = proc_now_ms() + timeout_ms;
    const char *line;
    int rv;

    memset(pc, 0, sizeof *pc);
    argv[argc++] = (char *)bin;
    argv[argc++] = "--control";
    argv[argc++] = "127.0.0.1:0";
    for (int i = 0; args != NULL && args[i] != NULL; i++) {
        if (i == ARGS_MAX) {
            rfs_errmsg_printf(errmsg, "too many proxy arguments");
            return RFS_EINVAL;
        }
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;

    if (log_path != NULL) {
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0) {
            rfs_errmsg_printf(errmsg, "open %s: %s", log_path, strerror(errno));
            return RFS_EIO;
        }
    }
    if (pipe2(out_pipe, O_CLOEXEC) != 0) {
        rfs_errmsg_printf(errmsg, "pipe: %s", strerror(errno));
        rv = RFS_EIO;
        goto err_log;
    }
    rv = proc_spawn_fds(argv, out_pipe[1], log_fd, &pc->pid, errmsg);
    close(out_pipe[1]);
    if (rv != 0) {
        goto err_pipe;
    }
    rv = read_banner(out_pipe[0], pc->banner, sizeof pc->banner, deadline, errmsg);
    if (rv != 0) {
        goto err_proc;
    }
    line = strstr(pc->banner, "control ");
    line = strrchr(line, ':');
    pc->control_port = line != NULL ? atoi(line + 1) : 0;
    if (pc->control_port <= 0) {
        rfs_errmsg_printf(errmsg, "bad control line from the proxy");
        rv = RFS_EIO;
        goto err_proc;
    }
    /* The proxy prints nothing after its banner; its log goes to stderr. */
    close(out_pipe[0]);
    if (log_fd >= 0) {
        close(log_fd);
    }
    return 0;

err_proc:
    proc_stop(pc->pid, 1000);
    pc->pid = 0;
err_pipe:
    close(out_pipe[0]);
err_log:
    if (log_fd >= 0) {
        close(log_fd);
    }
    return rv;
}

int proxy_ctl_route_port(const struct proxy_ctl *pc, const char *name)
{
    char prefix[64];
    const char *p = pc->banner;
    int n = snprintf(prefix, sizeof prefix, "route %s listen ", name);

    while (p != NULL && *p != '\0') {
        if (strncmp(p, prefix, (size_t)n) == 0) {
            const char *colon = p + n;
            while (*colon != '\0' && *colon != ' ' && *colon != '\n') {
                colon++;
            }
            /* the port follows the last ':' of the listen address */
            while (colon > p + n && colon[-1] != ':') {
                colon--;
            }
            return atoi(colon);
        }
        p = strchr(p, '\n');
        if (p != NULL) {
            p++;
        }
    }
    return -1;
}

int proxy_ctl_send(int control_port, const char *line, char *reply, size_t cap, int timeout_ms)
{
    long long deadline = proc_now_ms() + timeout_ms;
    struct sockaddr_in addr;
    char buf[1024];
    size_t len = 0, off = 0;
    char out[1024];
    int n = snprintf(out, sizeof out, "%s\n", line);
    int fd;
    int rv = RFS_EIO;
    char *nl = NULL;

    if (n < 0 || (size_t)n >= sizeof out) {
        return RFS_EINVAL;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return RFS_EIO;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)control_port);
    /* A blocking connect to a local listener completes at once or is refused. */
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        goto out;
    }
    while (off < (size_t)n) {
        ssize_t w = send(fd, out + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            goto out;
        }
        off += (size_t)w;
    }
    while (nl == NULL) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, left_ms(deadline));
        ssize_t got;
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0) {
            rv = RFS_ETIMEDOUT;
            goto out;
        }
        if (len + 1 >= sizeof buf) {
            goto out;
        }
        got = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            goto out;
        }
        len += (size_t)got;
        buf[len] = '\0';
        nl = strchr(buf, '\n');
    }
    *nl = '\0';
    if (reply != NULL && cap > 0) {
        snprintf(reply, cap, "%s", buf);
    }
    rv = strncmp(buf, "ok", 2) == 0 && (buf[2] == '\0' || buf[2] == ' ') ? 0 : RFS_EINVAL;
out:
    close(fd);
    return rv;
}

int proxy_ctl_cmd(const struct proxy_ctl *pc, char *reply, size_t cap, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) {
        return RFS_EINVAL;
    }
    if (pc->control_port <= 0) {
        return RFS_EIO;
    }
    return proxy_ctl_send(pc->control_port, line, reply, cap, PROXY_CTL_TIMEOUT_MS);
}

int proxy_ctl_stop(struct proxy_ctl *pc, int timeout_ms)
{
    int st = -1;
    if (pc->pid > 0) {
        st = proc_stop(pc->pid, timeout_ms);
    }
    pc->pid = 0;
    pc->control_port = 0;
    return st;
}
