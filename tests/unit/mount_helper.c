/* See mount_helper.h. */
#include "mount_helper.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "tests/lib/proc.h"

#define MOUNT_WAIT_MS 30000
#define STOP_WAIT_MS  15000
/* Extra arguments mount_helper_start_args passes on. */
#define MOUNT_EXTRA_MAX 16

static bool in_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[4096], full[4200], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path != NULL ? path : "/usr/bin:/bin");
    for (char *d = strtok_r(buf, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        snprintf(full, sizeof full, "%s/%s", d, prog);
        if (access(full, X_OK) == 0) {
            return true;
        }
    }
    return false;
}

bool mount_helper_usable(const char *bin, const char *const *tools, char *why, size_t cap)
{
    if (access(bin, X_OK) != 0) {
        snprintf(why, cap, "%s not built (run make, or set RAFTFS_BIN_DIR)", bin);
        return false;
    }
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
        snprintf(why, cap, "/dev/fuse is not usable (%s)", strerror(errno));
        return false;
    }
    if (!in_path("fusermount3")) {
        snprintf(why, cap, "fusermount3 is not installed (apt-get install fuse3)");
        return false;
    }
    for (size_t i = 0; tools != NULL && tools[i] != NULL; i++) {
        if (!in_path(tools[i])) {
            snprintf(why, cap, "%s is not installed", tools[i]);
            return false;
        }
    }
    if (geteuid() != 0) {
        snprintf(why, cap, "real mounts are tested as root");
        return false;
    }
    return true;
}

bool mount_helper_is_mount_point(const char *path)
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

void mount_helper_force_unmount(const char *mnt)
{
    char *argv[] = {"fusermount3", "-u", "-z", (char *)mnt, NULL};
    pid_t pid;
    if (!mount_helper_is_mount_point(mnt)) {
        return;
    }
    if (proc_spawn(argv, NULL, &pid, NULL) == 0) {
        proc_wait(pid, STOP_WAIT_MS);
    }
}

struct live_arg {
    const char *mnt;
    pid_t pid;
};

/* The mount answers: the mount point's device differs from its parent's, or the daemon died. */
static bool mount_live_or_dead(void *arg)
{
    const struct live_arg *a = arg;
    char parent[400];
    struct stat sm, sp;
    if (!proc_alive(a->pid)) {
        return true;
    }
    snprintf(parent, sizeof parent, "%s/..", a->mnt);
    return stat(a->mnt, &sm) == 0 && stat(parent, &sp) == 0 && sm.st_dev != sp.st_dev;
}

int mount_helper_start(const char *bin, const char *meta, const char *mnt, const char *log,
                       pid_t *pid, char *errmsg)
{
    return mount_helper_start_args(bin, meta, mnt, NULL, log, pid, errmsg);
}

int mount_helper_start_args(const char *bin, const char *meta, const char *mnt,
                            const char *const *extra, const char *log, pid_t *pid, char *errmsg)
{
    char *argv[5 + MOUNT_EXTRA_MAX + 1] = {(char *)bin, "--meta", (char *)meta, (char *)mnt, "-f"};
    size_t n = 5;
    struct live_arg a;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (i >= MOUNT_EXTRA_MAX) {
            rfs_errmsg_printf(errmsg, "more than %d extra arguments", MOUNT_EXTRA_MAX);
            *pid = 0;
            return RFS_EIO;
        }
        argv[n++] = (char *)extra[i];
    }
    argv[n] = NULL;
    if (mkdir(mnt, 0755) != 0 && errno != EEXIST) {
        rfs_errmsg_printf(errmsg, "mkdir %s: %s", mnt, strerror(errno));
        return RFS_EIO;
    }
    if (proc_spawn(argv, log, pid, errmsg) != 0) {
        *pid = 0;
        return RFS_EIO;
    }
    a.mnt = mnt;
    a.pid = *pid;
    if (!wait_until(mount_live_or_dead, &a, MOUNT_WAIT_MS) || !proc_alive(*pid)) {
        rfs_errmsg_printf(errmsg, "raftfs-mount on %s did not come up (see %s)", mnt, log);
        proc_stop(*pid, STOP_WAIT_MS);
        *pid = 0;
        mount_helper_force_unmount(mnt);
        return RFS_EIO;
    }
    return 0;
}

int mount_helper_stop(const char *mnt, pid_t *pid)
{
    int status = -1;
    if (*pid > 0) {
        status = proc_stop(*pid, STOP_WAIT_MS);
        *pid = 0;
    }
    mount_helper_force_unmount(mnt);
    return status;
}

int mount_helper_teardown(const char *mnt, pid_t *pid, const char *log)
{
    int bad = 0;
    int st = mount_helper_stop(mnt, pid);
    if (st > 0) {
        fprintf(stderr, "teardown: raftfs-mount exited with %d\n", st);
        mount_helper_dump_log(log);
        bad++;
    }
    bad += mount_helper_log_has_sanitizer_report(log);
    return bad;
}

bool mount_helper_log_has_sanitizer_report(const char *log)
{
    FILE *fp = fopen(log, "r");
    char line[1024];
    bool bad = false;
    if (fp == NULL) {
        return false;
    }
    while (fgets(line, sizeof line, fp) != NULL) {
        if (strstr(line, "ERROR: AddressSanitizer") || strstr(line, "ERROR: LeakSanitizer") ||
            strstr(line, "runtime error:")) {
            fprintf(stderr, "%s: %s", log, line);
            bad = true;
        }
    }
    fclose(fp);
    return bad;
}

void mount_helper_dump_log(const char *log)
{
    FILE *fp = fopen(log, "r");
    char line[1024];
    if (fp == NULL) {
        return;
    }
    fprintf(stderr, "--- %s\n", log);
    while (fgets(line, sizeof line, fp) != NULL) {
        fputs(line, stderr);
    }
    fclose(fp);
}

int mount_helper_sh(const char *dir, const char *cmd, char *out, size_t cap)
{
    char full[4096];
    FILE *p;
    size_t n = 0;
    int st;
    out[0] = '\0';
    snprintf(full, sizeof full, "cd '%s' && { %s; } 2>&1", dir, cmd);
    p = popen(full, "r");
    if (p == NULL) {
        return -1;
    }
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
