/* raftfs-mount: mounts a raftfs cluster with libfuse's low-level API (mount/fuse_ops.h).
 *
 * The order matters: connect to the cluster first (rfs_fs_open, which also creates the root
 * directory of an empty cluster), and mount only if that worked, so an unreachable cluster
 * is reported on stderr with a non-zero exit instead of leaving a dead mount behind. Without
 * -f the process forks before connecting (the cluster client runs threads, which a fork after
 * connecting would lose); the parent waits for the child to report that the mount is up and
 * exits with its status, as fuse_daemonize() does. SIGTERM, SIGINT and SIGHUP end the session
 * and unmount; fusermount3 -u ends it from outside. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/config.h"
#include "common/err.h"
#include "common/log.h"
#include "fs/fs.h"
#include "fuse_ops.h"

/* Filled in by fuse_opt_parse, which allocates the strings with strdup (freed with free). */
struct mount_opts {
    char *meta;
    double cache_timeout;
    unsigned timeout_ms;
    char *log_level;
};

#define MOUNT_OPT(t, p)                                                                            \
    {                                                                                              \
        t, offsetof(struct mount_opts, p), 1                                                       \
    }

/* fuse_opt applies every template an argument matches, and "--meta %s" also matches
 * "--meta=X" (taking "=X" as the value), so there are only the two-argument forms here and
 * split_eq_forms() turns "--meta=X" into "--meta" "X" first. */
static const struct fuse_opt mount_opt_spec[] = {
    MOUNT_OPT("--meta %s", meta),
    MOUNT_OPT("--cache-timeout %lf", cache_timeout),
    MOUNT_OPT("--timeout %u", timeout_ms),
    MOUNT_OPT("--log-level %s", log_level),
    FUSE_OPT_END,
};

/* argv with "--meta=X" (and the other raftfs flags) as two arguments, in *out (argc + 1
 * pointers; the split halves are strdup'ed and listed in owned[], freed by the caller with
 * free()). Returns the new argc, or -1 when out of memory. */
static int split_eq_forms(int argc, char **argv, char ***out, char ***owned, int *n_owned)
{
    static const char *const names[] = {"--meta", "--cache-timeout", "--timeout", "--log-level"};
    char **av = calloc((size_t)(2 * argc + 1), sizeof *av);
    char **own = calloc((size_t)(2 * argc + 1), sizeof *own);
    int n = 0, no = 0;
    if (av == NULL || own == NULL) {
        free(av);
        free(own);
        return -1;
    }
    for (int i = 0; i < argc; i++) {
        const char *eq = i > 0 && strncmp(argv[i], "--", 2) == 0 ? strchr(argv[i], '=') : NULL;
        int split = 0;
        for (unsigned k = 0; eq != NULL && k < sizeof names / sizeof names[0]; k++) {
            split |= strlen(names[k]) == (size_t)(eq - argv[i]) &&
                     strncmp(argv[i], names[k], (size_t)(eq - argv[i])) == 0;
        }
        if (strcmp(argv[i], "--") == 0) {
            eq = NULL; /* the rest is not options */
        }
        if (!split) {
            av[n++] = argv[i];
            continue;
        }
        own[no] = strndup(argv[i], (size_t)(eq - argv[i]));
        own[no + 1] = strdup(eq + 1);
        if (own[no] == NULL || own[no + 1] == NULL) {
            free(own[no]);
            free(own[no + 1]);
            break;
        }
        av[n++] = own[no++];
        av[n++] = own[no++];
    }
    *out = av;
    *owned = own;
    *n_owned = no;
    return n;
}

/* What a --config file may set (docs/config.md): the raftfs flags, plus FUSE's -o and -f. */
static const struct rfs_config_key mount_config_keys[] = {
    {"meta", RFS_CONFIG_STRING, NULL},    {"cache-timeout", RFS_CONFIG_NUMBER, NULL},
    {"timeout", RFS_CONFIG_UINT, NULL},   {"log-level", RFS_CONFIG_STRING, NULL},
    {"options", RFS_CONFIG_STRING, "-o"}, {"foreground", RFS_CONFIG_BOOL, "-f"},
};

static void usage(const char *prog)
{
    printf("usage: %s --meta M0,M1,M2 MOUNTPOINT [options]\n"
           "\n"
           "Mounts the raftfs cluster whose meta group is at M0,M1,M2 (host:port) on\n"
           "MOUNTPOINT. The first mount of an empty cluster creates the root directory.\n"
           "Unmount with `fusermount3 -u MOUNTPOINT` (or umount, or SIGTERM to this process).\n"
           "\n"
           "raftfs options:\n"
           "    --meta LIST            the meta group's addresses (default: $RAFTFS_META)\n"
           "    --cache-timeout SEC    how long the kernel may cache names and attributes\n"
           "                           (default %.1f)\n"
           "    --timeout MS           one cluster operation; past it the call fails with EIO\n"
           "                           (default 10000)\n"
           "    --log-level LEVEL      error|warn|info|debug|trace (default warn; -d: debug)\n"
           "    --config FILE          read settings from FILE: lines 'key = value' (meta,\n"
           "                           cache-timeout, timeout, log-level, options for -o,\n"
           "                           foreground = true for -f); flags given here override\n"
           "                           it (docs/config.md)\n"
           "    (--metrics is a flag of the servers, raftfs-shard and raftfs-meta; the mount\n"
           "    daemon serves no metrics yet: docs/observability.md)\n"
           "\n",
           prog, MOUNT_CACHE_TIMEOUT);
    fuse_cmdline_help();
    fuse_lowlevel_help();
}

/* Without -f: fork; the parent waits for the child's status byte on a pipe and exits with
 * it. Returns the write end of the pipe in the child, -1 in the foreground. */
static int background_start(void)
{
    int p[2];
    pid_t pid;
    char status = 1;
    if (pipe(p) != 0) {
        perror("raftfs-mount: pipe");
        exit(1);
    }
    pid = fork();
    if (pid < 0) {
        perror("raftfs-mount: fork");
        exit(1);
    }
    if (pid > 0) {
        close(p[1]);
        if (read(p[0], &status, 1) != 1) {
            int ws;
            status = 1; /* the child died before reporting */
            if (waitpid(pid, &ws, 0) == pid && WIFEXITED(ws) && WEXITSTATUS(ws) != 0) {
                status = (char)WEXITSTATUS(ws);
            }
        }
        _exit(status);
    }
    close(p[0]);
    setsid();
    return p[1];
}

/* The child reports status to the waiting parent; on success it lets go of the terminal. */
static void background_done(int fd, int status)
{
    char c = (char)status;
    if (fd < 0) {
        return;
    }
    if (status == 0) {
        int null = open("/dev/null", O_RDWR);
        if (chdir("/") != 0) {
            /* the mount point was made absolute; nothing depends on the directory */
        }
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            if (null > STDERR_FILENO) {
                close(null);
            }
        }
    }
    if (write(fd, &c, 1) != 1) {
        /* the parent is gone: nobody to tell */
    }
    close(fd);
}

/* The loop's result as an exit status: a signal that asked us to stop is a clean end. */
static int loop_status(int rv)
{
    return rv == 0 || rv == SIGTERM || rv == SIGINT || rv == SIGHUP ? 0 : 1;
}

static int run_session(struct fuse_session *se, const struct fuse_cmdline_opts *co)
{
    struct fuse_loop_config *cfg;
    int rv;
    if (co->singlethread) {
        return fuse_session_loop(se);
    }
    cfg = fuse_loop_cfg_create();
    if (cfg == NULL) {
        return -ENOMEM;
    }
    fuse_loop_cfg_set_clone_fd(cfg, (unsigned)co->clone_fd);
    fuse_loop_cfg_set_max_threads(cfg, co->max_threads);
    rv = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rv;
}

int main(int argc, char **argv)
{
    struct rfs_config_args cargs;
    struct fuse_args args;
    char **av = NULL, **owned = NULL;
    int ac, n_owned = 0;
    struct mount_opts mo = {.cache_timeout = MOUNT_CACHE_TIMEOUT};
    struct fuse_cmdline_opts co;
    struct rfs_fs_options fo = {0};
    struct rfs_fs *fs = NULL;
    struct mount_ctx ctx;
    struct fuse_session *se = NULL;
    char errmsg[RFS_ERRMSG_SIZE];
    enum rfs_log_level level = RFS_LOG_WARN;
    int status = 1, bg = -1, rv;

    memset(&co, 0, sizeof co);
    /* The config file's settings go before the command line's, which override them. */
    if (rfs_config_args_init(&cargs, argc, argv, mount_config_keys,
                             sizeof mount_config_keys / sizeof mount_config_keys[0], errmsg) != 0) {
        fprintf(stderr, "raftfs-mount: %s\n", errmsg);
        return 2;
    }
    ac = split_eq_forms(cargs.argc, cargs.argv, &av, &owned, &n_owned);
    if (ac < 0) {
        fprintf(stderr, "raftfs-mount: out of memory\n");
        rfs_config_args_close(&cargs);
        return 1;
    }
    args = (struct fuse_args)FUSE_ARGS_INIT(ac, av);
    if (getenv("RAFTFS_META") != NULL) {
        mo.meta = strdup(getenv("RAFTFS_META"));
    }
    if (fuse_opt_parse(&args, &mo, mount_opt_spec, NULL) != 0 ||
        fuse_parse_cmdline(&args, &co) != 0) {
        fprintf(stderr, "raftfs-mount: bad arguments (see --help)\n");
        goto out;
    }
    if (co.show_help) {
        usage(argv[0]);
        status = 0;
        goto out;
    }
    if (co.show_version) {
        printf("raftfs-mount, libfuse %s\n", fuse_pkgversion());
        fuse_lowlevel_version();
        status = 0;
        goto out;
    }
    if (mo.meta == NULL || mo.meta[0] == '\0') {
        fprintf(stderr, "raftfs-mount: no meta group: give --meta M0,M1,M2 (or RAFTFS_META)\n");
        status = 2;
        goto out;
    }
    if (co.mountpoint == NULL) {
        fprintf(stderr, "raftfs-mount: no mount point given (see --help)\n");
        status = 2;
        goto out;
    }
    if (!(mo.cache_timeout >= 0.0)) {
        fprintf(stderr, "raftfs-mount: --cache-timeout must be 0 or more seconds\n");
        status = 2;
        goto out;
    }
    if (co.debug) {
        level = RFS_LOG_DEBUG;
    }
    if (mo.log_level != NULL && rfs_log_level_parse(mo.log_level, &level) != 0) {
        fprintf(stderr, "raftfs-mount: unknown --log-level %s\n", mo.log_level);
        status = 2;
        goto out;
    }
    rfs_log_set_level(level);

    if (!co.foreground) {
        bg = background_start();
    }
    {
        /* No group or node: the host and the (daemon's) pid name this mount in logs. */
        char host[64] = "?", tag[128];
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        snprintf(tag, sizeof tag, "mount %s/p%d", host, (int)getpid());
        rfs_log_set_tag(tag);
    }
    fo.meta = mo.meta;
    fo.timeout_ms = mo.timeout_ms;
    rv = rfs_fs_open(&fs, &fo, errmsg);
    if (rv != 0) {
        fprintf(stderr, "raftfs-mount: %s (%s); not mounting %s\n", errmsg, strerror(-rv),
                co.mountpoint);
        goto out;
    }
    mount_ctx_init(&ctx, fs, mo.cache_timeout);
    se = fuse_session_new(&args, &mount_ops, sizeof mount_ops, &ctx);
    if (se == NULL) {
        fprintf(stderr, "raftfs-mount: cannot start a FUSE session (bad -o option?)\n");
        goto out_close;
    }
    ctx.se = se;
    if (fuse_set_signal_handlers(se) != 0) {
        fprintf(stderr, "raftfs-mount: cannot set signal handlers\n");
        goto out_destroy;
    }
    if (fuse_session_mount(se, co.mountpoint) != 0) {
        fprintf(stderr, "raftfs-mount: cannot mount on %s\n", co.mountpoint);
        goto out_signals;
    }
    rfs_infof("mount: %s mounted on %s", mo.meta, co.mountpoint);
    background_done(bg, 0);
    bg = -1;
    status = loop_status(run_session(se, &co));
    fuse_session_unmount(se);
    rfs_infof("mount: %s unmounted", co.mountpoint);
out_signals:
    fuse_remove_signal_handlers(se);
out_destroy:
    fuse_session_destroy(se);
out_close:
    mount_ctx_close(&ctx);
    rfs_fs_close(fs);
out:
    background_done(bg, status != 0 ? status : 1);
    free(co.mountpoint);
    free(mo.meta);
    free(mo.log_level);
    fuse_opt_free_args(&args);
    for (int i = 0; i < n_owned; i++) {
        free(owned[i]);
    }
    free(owned);
    free(av);
    rfs_config_args_close(&cargs);
    return status;
}
