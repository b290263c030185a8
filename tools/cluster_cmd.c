/* raftfs cluster: options and help of up, status and down, the lock on DIR, and down itself
 * (unmount, stop by pid, --purge). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/err.h"
#include "kv/kv.h"
#include "meta/meta.h"
#include "tools/cluster.h"
#include "tools/tools.h"

#define DEFAULT_DIR     "raftfs-cluster"
#define DEFAULT_MNT     "mnt"
#define STOP_TIMEOUT_MS 10000

static void usage(FILE *f)
{
    fprintf(f, "usage: raftfs cluster up|status|down [options]\n"
               "\n"
               "A whole raftfs cluster on this machine (127.0.0.1), as background processes\n"
               "with their data, logs and pid files under one directory (docs/cluster.md):\n"
               "  up      start a meta group and shard groups, join them, mount the filesystem;\n"
               "          again: restart whatever is not running\n"
               "  status  each server: reachable, role, term, commit, applied; buckets per\n"
               "          group; the mount. Exit 0 when all is healthy, else 1\n"
               "  down    unmount and stop every process it started (data kept; --purge)\n"
               "\n"
               "raftfs cluster COMMAND --help shows the options of each.\n");
}

static void up_usage(FILE *f)
{
    fprintf(f,
            "usage: raftfs cluster up [--dir DIR] [--groups N] [--replicas N] [--buckets N]\n"
            "                         [--mount PATH | --no-mount] [--timeout SEC]\n"
            "\n"
            "Starts a meta group and N shard groups on 127.0.0.1 (free ports, remembered in\n"
            "DIR/cluster.conf), waits for a leader in every group, joins the groups, waits until\n"
            "every bucket answers, and mounts the filesystem at PATH (raftfs-mount). Progress\n"
            "goes to stderr. On a cluster that is up it says so (exit 0); on one that is partly\n"
            "or wholly stopped (a reboot, a kill) it restarts the missing servers from the same\n"
            "data directories and ports, and remounts.\n"
            "\n"
            "  --dir DIR       state, data, logs and pid files (default ./%s)\n"
            "  --groups N      shard groups, 1..%d (default 2)\n"
            "  --replicas N    servers per group, the meta group's too, 1..%d (default 3)\n"
            "  --buckets N     buckets, fixed when the cluster is created (default %d)\n"
            "  --mount PATH    mount point, created if missing (default ./%s)\n"
            "  --no-mount      do not mount (no FUSE needed)\n"
            "  --timeout SEC   bound on each wait: leaders, buckets, the mount (default 60)\n"
            "\n"
            "The groups, replicas and buckets of an existing DIR cannot change: raftfs cluster\n"
            "down --purge removes it. Servers come from the directory of this raftfs binary.\n"
            "Exit status: 0 up, 2 it could not be started (the message names the log to read).\n",
            DEFAULT_DIR, CLUSTER_MAX_GROUPS, CLUSTER_MAX_REPLICAS, KV_DEFAULT_BUCKETS, DEFAULT_MNT);
}

static void status_usage(FILE *f)
{
    fprintf(f,
            "usage: raftfs cluster status [--dir DIR]\n"
            "\n"
            "One line per server of the cluster in DIR (default ./%s): group, id, address,\n"
            "pid (- when not running), reachable, Raft role, term, commit and applied index,\n"
            "and the buckets its group serves by the latest configuration; then the mount.\n"
            "Exit status: 0 healthy (every server runs and answers, every group has a leader,\n"
            "every bucket a group, the mount is mounted), 1 not healthy, 2 no cluster there.\n",
            DEFAULT_DIR);
}

static void down_usage(FILE *f)
{
    fprintf(f,
            "usage: raftfs cluster down [--dir DIR] [--purge]\n"
            "\n"
            "Unmounts the cluster in DIR (default ./%s; fusermount3 -u, else -uz) and stops\n"
            "every process it started, by the pids in DIR/run (SIGTERM, up to %d s, then\n"
            "SIGKILL). Data and logs stay: raftfs cluster up starts the cluster again.\n"
            "\n"
            "  --purge   also delete DIR's data, logs and state (the mount point stays)\n",
            DEFAULT_DIR, STOP_TIMEOUT_MS / 1000);
}

/* path made absolute and tidied ("." and ".." and repeated '/' removed), without touching it. */
static int absolute(const char *path, char *out, size_t cap)
{
    char buf[PATH_MAX * 2], *save = NULL;
    size_t len = 0;
    if (path[0] == '/') {
        snprintf(buf, sizeof buf, "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL) {
            return -1;
        }
        snprintf(buf, sizeof buf, "%s/%s", cwd, path);
    }
    out[0] = '\0';
    for (char *t = strtok_r(buf, "/", &save); t != NULL; t = strtok_r(NULL, "/", &save)) {
        if (strcmp(t, ".") == 0) {
            continue;
        }
        if (strcmp(t, "..") == 0) {
            char *slash = strrchr(out, '/');
            len = slash != NULL ? (size_t)(slash - out) : 0;
            out[len] = '\0';
            continue;
        }
        if (len + 1 + strlen(t) + 1 > cap) {
            return -1;
        }
        len += (size_t)snprintf(out + len, cap - len, "/%s", t);
    }
    if (len == 0) {
        snprintf(out, cap, "/");
    }
    return 0;
}

static int parse_num(const char *flag, const char *arg, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    unsigned long v;
    errno = 0;
    v = strtoul(arg, &end, 10);
    if (*arg == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        fprintf(stderr, "raftfs cluster: %s takes a number from %u to %u\n", flag, lo, hi);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* The directory of this binary: the servers are next to it. */
static void bin_dir(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash;
    if (n <= 0) {
        snprintf(out, cap, "bin");
        return;
    }
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    n = (ssize_t)strlen(exe);
    if ((size_t)n >= cap) {
        n = (ssize_t)cap - 1; /* too long to be of use anyway: the check for the servers fails */
    }
    memcpy(out, exe, (size_t)n);
    out[n] = '\0';
}

const char *cluster_shorten(const char *path)
{
    char cwd[PATH_MAX];
    size_t n;
    if (getcwd(cwd, sizeof cwd) == NULL) {
        return path;
    }
    n = strlen(cwd);
    if (strncmp(path, cwd, n) == 0 && path[n] == '/' && n > 1) {
        return path + n + 1;
    }
    return path;
}

/* An exclusive lock on DIR/lock for up and down (fd returned; closing it unlocks), or -1. */
static int lock_dir(const char *dir)
{
    char path[CLUSTER_PATH_MAX + 8];
    int fd;
    snprintf(path, sizeof path, "%s/lock", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "raftfs cluster: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr,
                "raftfs cluster: another raftfs cluster up or down is running on %s; "
                "wait for it to finish\n",
                dir);
        close(fd);
        return -1;
    }
    return fd;
}

static int purge_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 && errno != ENOENT) {
        fprintf(stderr, "raftfs cluster down: removing %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Remove what up made in DIR (never crossing into another file system), then DIR if empty. */
static int purge(const struct cluster_conf *c)
{
    static const char *const subs[] = {"data", "logs", "run", CLUSTER_CONF_NAME, "lock"};
    char path[CLUSTER_PATH_MAX + 16];
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", c->dir, subs[i]);
        if (nftw(path, purge_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0 && errno != ENOENT) {
            return 2;
        }
    }
    if (rmdir(c->dir) != 0 && errno != ENOENT) {
        printf("purged; %s still holds other files, left in place\n", c->dir);
    } else {
        printf("purged %s\n", c->dir);
    }
    return 0;
}

int cluster_down(const struct cluster_opts *o)
{
    struct cluster_conf *c = rfs_calloc(1, sizeof *c);
    pid_t pids[CLUSTER_MAX_SERVERS];
    char errmsg[RFS_ERRMSG_SIZE] = "";
    unsigned n = 0, killed;
    int rv, rc = 2;

    if (c == NULL) {
        fprintf(stderr, "raftfs cluster down: out of memory\n");
        return 2;
    }
    rv = cluster_conf_load(c, o->dir, errmsg);
    if (rv == RFS_ENOTFOUND) {
        printf("no cluster in %s (no %s): nothing to stop\n", o->dir, CLUSTER_CONF_NAME);
        rfs_free(c);
        return 0;
    }
    if (rv != 0) {
        fprintf(stderr, "raftfs cluster down: %s; stop its processes by the pids in %s/run\n",
                errmsg, o->dir);
        rfs_free(c);
        return 2;
    }
    if (c->mnt[0] != '\0') {
        pid_t mpid = cluster_proc_running(c->mount_pidfile, c->mnt);
        if (cluster_proc_mounted(c->mnt)) {
            char *u[] = {"fusermount3", "-u", c->mnt, NULL};
            char *uz[] = {"fusermount3", "-u", "-z", c->mnt, NULL};
            if (cluster_proc_run(u, 10000) != 0 && cluster_proc_run(uz, 10000) != 0) {
                fprintf(stderr,
                        "raftfs cluster down: could not unmount %s (busy? leave it and "
                        "run down again, or umount -l %s)\n",
                        c->mnt, c->mnt);
            }
            printf("%s %s\n", cluster_proc_mounted(c->mnt) ? "still mounted:" : "unmounted",
                   c->mnt);
        }
        if (mpid > 0 && cluster_proc_stop(&mpid, 1, STOP_TIMEOUT_MS) > 0) {
            printf("raftfs-mount (pid %d) needed SIGKILL\n", (int)mpid);
        }
        unlink(c->mount_pidfile);
    }
    for (unsigned i = 0; i < c->n; i++) {
        pid_t pid = cluster_proc_running(c->servers[i].pidfile, c->servers[i].data);
        if (pid > 0) {
            pids[n++] = pid;
        }
    }
    killed = cluster_proc_stop(pids, n, STOP_TIMEOUT_MS);
    for (unsigned i = 0; i < c->n; i++) {
        unlink(c->servers[i].pidfile);
    }
    printf("stopped %u server%s%s\n", n, n == 1 ? "" : "s",
           killed > 0 ? " (some needed SIGKILL)" : "");
    if (o->purge) {
        if (c->mnt[0] != '\0' && cluster_proc_mounted(c->mnt)) {
            fprintf(stderr, "raftfs cluster down: %s is still mounted: not purging\n", c->mnt);
            goto out;
        }
        rc = purge(c);
        goto out;
    }
    printf("data and logs kept in %s (%s cluster up%s starts it again; down --purge deletes "
           "them)\n",
           c->dir, o->prog, o->dir_hint);
    rc = 0;
out:
    rfs_free(c);
    return rc;
}

int tools_cluster(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},      {"groups", required_argument, NULL, 'g'},
        {"replicas", required_argument, NULL, 'r'}, {"buckets", required_argument, NULL, 'b'},
        {"mount", required_argument, NULL, 'm'},    {"no-mount", no_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},  {"purge", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    struct cluster_opts o;
    const char *cmd, *dir = DEFAULT_DIR, *mnt = DEFAULT_MNT;
    char prog[CLUSTER_PATH_MAX + 8];
    void (*help)(FILE *);
    int ch, rc, lock = -1;

    if (argc < 2 || argv[1][0] == '-') {
        bool asked = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
        usage(asked ? stdout : stderr);
        return asked ? 0 : 2;
    }
    cmd = argv[1];
    if (strcmp(cmd, "up") == 0) {
        help = up_usage;
    } else if (strcmp(cmd, "status") == 0) {
        help = status_usage;
    } else if (strcmp(cmd, "down") == 0) {
        help = down_usage;
    } else {
        fprintf(stderr,
                "raftfs cluster: unknown command '%s' (up, status or down; see "
                "raftfs cluster --help)\n",
                cmd);
        return 2;
    }
    memset(&o, 0, sizeof o);
    o.groups = 2;
    o.replicas = 3;
    o.buckets = KV_DEFAULT_BUCKETS;
    o.timeout_s = 60;
    o.prog = "raftfs";
    optind = 1;
    argc--;
    argv++;
    while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        bool up_only = ch == 'g' || ch == 'r' || ch == 'b' || ch == 'm' || ch == 'n' || ch == 't';
        if ((up_only && help != up_usage) || (ch == 'p' && help != down_usage)) {
            fprintf(stderr, "raftfs cluster %s: %s is not an option of %s (see --help)\n", cmd,
                    argv[optind - 1], cmd);
            return 2;
        }
        switch (ch) {
            case 'd':
                dir = optarg;
                break;
            case 'g':
                if (parse_num("--groups", optarg, 1, CLUSTER_MAX_GROUPS, &o.groups) != 0) {
                    return 2;
                }
                o.groups_set = true;
                break;
            case 'r':
                if (parse_num("--replicas", optarg, 1, CLUSTER_MAX_REPLICAS, &o.replicas) != 0) {
                    return 2;
                }
                o.replicas_set = true;
                break;
            case 'b':
                if (parse_num("--buckets", optarg, 1, META_MAX_BUCKETS, &o.buckets) != 0) {
                    return 2;
                }
                o.buckets_set = true;
                break;
            case 'm':
                mnt = optarg;
                o.mnt_set = true;
                break;
            case 'n':
                o.no_mount = true;
                break;
            case 't':
                if (parse_num("--timeout", optarg, 1, 3600, &o.timeout_s) != 0) {
                    return 2;
                }
                break;
            case 'p':
                o.purge = true;
                break;
            case 'h':
                help(stdout);
                return 0;
            default:
                help(stderr);
                return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "raftfs cluster %s: unexpected argument '%s' (see --help)\n", cmd,
                argv[optind]);
        return 2;
    }
    if (o.no_mount && o.mnt_set) {
        fprintf(stderr, "raftfs cluster up: give --mount or --no-mount, not both\n");
        return 2;
    }
    if (absolute(dir, o.dir, sizeof o.dir) != 0 || absolute(mnt, o.mnt, sizeof o.mnt) != 0) {
        fprintf(stderr, "raftfs cluster: --dir or --mount path too long\n");
        return 2;
    }
    bin_dir(o.bin, sizeof o.bin);
    snprintf(prog, sizeof prog, "%s/raftfs", o.bin);
    o.prog = cluster_shorten(prog);
    if (strcmp(dir, DEFAULT_DIR) != 0) {
        snprintf(o.dir_hint, sizeof o.dir_hint, " --dir %s", cluster_shorten(o.dir));
    }
    if (help == status_usage) {
        return cluster_status(&o);
    }
    if (help == up_usage) {
        static const char *const progs[] = {"raftfs-meta", "raftfs-shard", "raftfs-mount"};
        for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++) {
            char path[CLUSTER_PATH_MAX + 32];
            snprintf(path, sizeof path, "%s/%s", o.bin, progs[i]);
            if (access(path, X_OK) != 0 && (i < 2 || !o.no_mount)) {
                fprintf(stderr,
                        "raftfs cluster up: %s is missing (run make; the servers must "
                        "be next to this raftfs)\n",
                        path);
                return 2;
            }
        }
        char errmsg[RFS_ERRMSG_SIZE] = "";
        if (cluster_mkdirs(o.dir, errmsg) != 0) {
            fprintf(stderr, "raftfs cluster up: %s\n", errmsg);
            return 2;
        }
    } else if (access(o.dir, F_OK) != 0) {
        printf("no cluster in %s: nothing to stop\n", o.dir);
        return 0;
    }
    lock = lock_dir(o.dir);
    if (lock < 0) {
        return 2;
    }
    rc = help == up_usage ? cluster_up(&o) : cluster_down(&o);
    close(lock);
    return rc;
}
