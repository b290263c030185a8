/* raftfs cluster up: start (or restart) a whole cluster on 127.0.0.1 and mount it.
 *
 * Happy path: lay out DIR (cluster.conf with free ports, data/, logs/, run/), start the meta
 * servers and every shard group's servers as daemons, wait for a leader in each group, join the
 * groups that the meta group does not know yet, wait until every bucket answers at its group,
 * start raftfs-mount and wait until the mount point answers, then say what to try.
 *
 * Again on a running cluster it says so and stops. After a reboot or a kill it starts only the
 * servers whose pid file does not name a live process of theirs, from the same data
 * directories and ports, and remounts (a mount whose daemon died is lazily unmounted first).
 * A server that exits while we wait, or a wait that runs out, ends with the log to look at. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/err.h"
#include "meta/client.h"
#include "meta/meta.h"
#include "tools/cluster.h"

static int start_server(const struct cluster_conf *c, const struct cluster_opts *o,
                        const struct cluster_server *s, pid_t *pid, char *errmsg)
{
    char prog[CLUSTER_PATH_MAX + 32], peers[CLUSTER_MAX_REPLICAS * 64];
    char meta[CLUSTER_MAX_REPLICAS * 64], id[16], gid[16], buckets[16];
    char *argv[16];
    unsigned n = 0;

    cluster_conf_group_addrs(c, s->gid, peers, sizeof peers);
    cluster_conf_group_addrs(c, 0, meta, sizeof meta);
    snprintf(id, sizeof id, "%u", s->id);
    snprintf(gid, sizeof gid, "%u", s->gid);
    snprintf(buckets, sizeof buckets, "%u", c->buckets);
    snprintf(prog, sizeof prog, "%s/%s", o->bin,
             s->role == CLUSTER_META ? "raftfs-meta" : "raftfs-shard");
    argv[n++] = prog;
    argv[n++] = "--id";
    argv[n++] = id;
    argv[n++] = "--peers";
    argv[n++] = peers;
    if (s->role == CLUSTER_SHARD) {
        argv[n++] = "--gid";
        argv[n++] = gid;
        argv[n++] = "--meta";
        argv[n++] = meta;
    }
    argv[n++] = "--buckets";
    argv[n++] = buckets;
    argv[n++] = "--data";
    argv[n++] = (char *)s->data;
    argv[n] = NULL;
    return cluster_proc_start(argv, s->log, s->pidfile, pid, errmsg);
}

static const char *group_label(unsigned gid, char *buf, size_t cap)
{
    if (gid == 0) {
        return "meta group";
    }
    snprintf(buf, cap, "group %u", gid);
    return buf;
}

/* Wait until group gid has a leader (and, within the same time, every server answers).
 * pids: every server's pid, as c->servers. */
static int wait_group(const struct cluster_conf *c, const struct cluster_opts *o, unsigned gid,
                      const pid_t *pids)
{
    long long deadline = cluster_now_ms() + (long long)o->timeout_s * 1000;
    unsigned last_up = ~0u;
    char buf[32];
    const char *label = group_label(gid, buf, sizeof buf);
    for (;;) {
        struct cluster_group_health h;
        const struct cluster_server *first = NULL;
        for (unsigned i = 0; i < c->n; i++) {
            const struct cluster_server *s = &c->servers[i];
            char name[32];
            if (s->gid != gid) {
                continue;
            }
            first = first != NULL ? first : s;
            if (!cluster_proc_alive(pids[i])) {
                cluster_server_name(s, name, sizeof name);
                fprintf(stderr, "%s: %s (pid %d) exited; the end of %s:\n", label, name,
                        (int)pids[i], s->log);
                cluster_proc_tail(s->log, 6);
                fprintf(stderr, "fix what it says, then run raftfs cluster up again\n");
                return 2;
            }
        }
        cluster_probe_group(c, gid, NULL, &h);
        if (h.up != last_up && !(h.leader && h.up == c->replicas)) {
            fprintf(stderr, "%s: %u/%u up\n", label, h.up, c->replicas);
            last_up = h.up;
        }
        if (h.leader && h.up == c->replicas) {
            fprintf(stderr, "%s: %u/%u up, leader elected\n", label, h.up, c->replicas);
            return 0;
        }
        if (cluster_now_ms() > deadline) {
            const char *log = h.down >= 0 ? first[h.down].log : first->log;
            if (h.leader) {
                fprintf(stderr, "%s: leader elected, but only %u/%u servers answer; see %s\n",
                        label, h.up, c->replicas, log);
                return 0;
            }
            fprintf(stderr,
                    "%s: no leader after %u s (%u/%u servers answer); see %s (all logs: %s/logs)\n",
                    label, o->timeout_s, h.up, c->replicas, log, c->dir);
            return 2;
        }
        cluster_sleep_ms(200);
    }
}

/* Join the groups the latest configuration does not have yet. */
static int join_groups(const struct cluster_conf *c, const struct cluster_opts *o)
{
    struct meta_group_info groups[CLUSTER_MAX_GROUPS];
    char addrs[CLUSTER_MAX_GROUPS][CLUSTER_MAX_REPLICAS * 64];
    char *ptrs[CLUSTER_MAX_GROUPS][CLUSTER_MAX_REPLICAS];
    char meta[CLUSTER_MAX_REPLICAS * 64], errmsg[RFS_ERRMSG_SIZE] = "", joined[64] = "";
    struct meta_config cfg = {0};
    struct kv_client *mc = NULL;
    unsigned n = 0;
    int rv;

    cluster_conf_group_addrs(c, 0, meta, sizeof meta);
    rv = kv_client_connect(&mc, meta, false, META_GROUP_ID, o->timeout_s * 1000, 1000, errmsg);
    if (rv == 0) {
        rv = meta_client_query(mc, true, 0, &cfg, errmsg);
    }
    for (unsigned g = 1; rv == 0 && g <= c->groups; g++) {
        bool known = false;
        char *save = NULL;
        for (unsigned i = 0; i < cfg.n_groups; i++) {
            known |= cfg.groups[i].gid == g;
        }
        if (known) {
            continue;
        }
        cluster_conf_group_addrs(c, g, addrs[n], sizeof addrs[n]);
        groups[n].gid = g;
        groups[n].addrs = ptrs[n];
        groups[n].n_addrs = 0;
        for (char *t = strtok_r(addrs[n], ",", &save); t && groups[n].n_addrs < c->replicas;
             t = strtok_r(NULL, ",", &save)) {
            ptrs[n][groups[n].n_addrs++] = t;
        }
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%u", n ? ", " : "", g);
        n++;
    }
    meta_config_clear(&cfg);
    if (rv == 0 && n > 0) {
        rv = meta_client_join(mc, groups, n, &cfg, errmsg);
        if (rv == 0) {
            fprintf(stderr, "joined group%s %s (configuration %llu)\n", n > 1 ? "s" : "", joined,
                    (unsigned long long)cfg.version);
        }
        meta_config_clear(&cfg);
    }
    kv_client_free(mc);
    if (rv != 0) {
        fprintf(stderr, "joining the groups: %s; see %s/logs/meta-*.log\n",
                errmsg[0] ? errmsg : rfs_strerror(rv), c->dir);
        return 2;
    }
    return 0;
}

static int wait_buckets(const struct cluster_conf *c, const struct cluster_opts *o)
{
    long long deadline = cluster_now_ms() + (long long)o->timeout_s * 1000;
    unsigned last = ~0u;
    for (;;) {
        char errmsg[RFS_ERRMSG_SIZE] = "";
        unsigned serving = 0;
        int rv = cluster_probe_buckets(c, 2000, deadline, &serving, errmsg);
        if (rv == 0 && serving != last) {
            fprintf(stderr, "buckets: %u/%u serving\n", serving, c->buckets);
            last = serving;
        }
        if (rv == 0 && serving == c->buckets) {
            return 0;
        }
        if (cluster_now_ms() > deadline) {
            fprintf(stderr,
                    "buckets: only %u/%u answer at their group after %u s%s%s; see the shard "
                    "servers' logs (%s/logs/g*.log)\n",
                    serving, c->buckets, o->timeout_s, errmsg[0] ? ": " : "", errmsg, c->dir);
            return 2;
        }
        cluster_sleep_ms(200);
    }
}

/* The mount point answers: its device differs from its parent's. */
static bool mount_answers(const char *mnt)
{
    char parent[CLUSTER_PATH_MAX + 4];
    struct stat sm, sp;
    snprintf(parent, sizeof parent, "%s/..", mnt);
    return stat(mnt, &sm) == 0 && stat(parent, &sp) == 0 && sm.st_dev != sp.st_dev;
}

static void unmount_lazy(const char *mnt)
{
    char *argv[] = {"fusermount3", "-u", "-z", (char *)mnt, NULL};
    if (cluster_proc_mounted(mnt) && cluster_proc_run(argv, 10000) != 0) {
        fprintf(stderr, "warning: fusermount3 -uz %s failed\n", mnt);
    }
}

static int mount_up(const struct cluster_conf *c, const struct cluster_opts *o)
{
    pid_t pid = cluster_proc_running(c->mount_pidfile, c->mnt);
    char prog[CLUSTER_PATH_MAX + 32], meta[CLUSTER_MAX_REPLICAS * 64];
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char *argv[] = {prog, "--meta", meta, (char *)c->mnt, "-f", NULL};
    long long deadline;

    if (pid > 0 && cluster_proc_mounted(c->mnt)) {
        return 0;
    }
    if (pid > 0) {
        cluster_proc_stop(&pid, 1, 5000); /* runs, but its mount is gone */
    }
    if (cluster_proc_mounted(c->mnt)) {
        fprintf(stderr, "mount: %s is still mounted but its daemon is gone: unmounting it\n",
                c->mnt);
        unmount_lazy(c->mnt);
    }
    if (cluster_mkdirs(c->mnt, errmsg) != 0) {
        fprintf(stderr, "mount: %s\n", errmsg);
        return 2;
    }
    snprintf(prog, sizeof prog, "%s/raftfs-mount", o->bin);
    cluster_conf_group_addrs(c, 0, meta, sizeof meta);
    if (cluster_proc_start(argv, c->mount_log, c->mount_pidfile, &pid, errmsg) != 0) {
        fprintf(stderr, "mount: %s\n", errmsg);
        return 2;
    }
    deadline = cluster_now_ms() + (long long)o->timeout_s * 1000;
    while (!mount_answers(c->mnt)) {
        if (!cluster_proc_alive(pid) || cluster_now_ms() > deadline) {
            fprintf(stderr, "mount: %s did not answer%s; the end of %s:\n", c->mnt,
                    cluster_proc_alive(pid) ? " in time" : " (raftfs-mount exited)", c->mount_log);
            cluster_proc_tail(c->mount_log, 6);
            cluster_proc_stop(&pid, 1, 5000);
            unmount_lazy(c->mnt);
            fprintf(stderr, "(FUSE needs /dev/fuse and fusermount3; --no-mount starts the "
                            "cluster without a mount)\n");
            return 2;
        }
        cluster_sleep_ms(50);
    }
    fprintf(stderr, "mounted at %s\n", c->mnt);
    return 0;
}

/* A new cluster: plan it, make its directories, write cluster.conf. */
static int create(struct cluster_conf *c, const struct cluster_opts *o)
{
    char errmsg[RFS_ERRMSG_SIZE] = "", sub[CLUSTER_PATH_MAX + 8];
    static const char *const subs[] = {"data", "logs", "run"};
    int rv = cluster_conf_plan(c, o->dir, o->groups, o->replicas, o->buckets,
                               o->no_mount ? "" : o->mnt, errmsg);
    for (size_t i = 0; rv == 0 && i < sizeof subs / sizeof subs[0]; i++) {
        snprintf(sub, sizeof sub, "%s/%s", o->dir, subs[i]);
        rv = cluster_mkdirs(sub, errmsg);
    }
    if (rv == 0) {
        rv = cluster_conf_save(c, errmsg);
    }
    if (rv != 0) {
        fprintf(stderr, "raftfs cluster up: %s\n", errmsg);
        return 2;
    }
    fprintf(stderr,
            "new cluster in %s: a meta group and %u shard group%s of %u server%s each, "
            "%u buckets\n",
            c->dir, c->groups, c->groups > 1 ? "s" : "", c->replicas, c->replicas > 1 ? "s" : "",
            c->buckets);
    return 0;
}

/* An existing cluster: the options must agree with it; --mount may move an unmounted one. */
static int reuse(struct cluster_conf *c, const struct cluster_opts *o)
{
    char errmsg[RFS_ERRMSG_SIZE] = "";
    if ((o->groups_set && o->groups != c->groups) ||
        (o->replicas_set && o->replicas != c->replicas) ||
        (o->buckets_set && o->buckets != c->buckets)) {
        fprintf(stderr,
                "raftfs cluster up: %s already holds a cluster of %u group(s) x %u server(s), "
                "%u buckets; drop those options, or remove it first (raftfs cluster down --purge "
                "--dir %s), or pick another --dir\n",
                c->dir, c->groups, c->replicas, c->buckets, c->dir);
        return 2;
    }
    if (o->mnt_set && strcmp(o->mnt, c->mnt) != 0) {
        if (c->mnt[0] != '\0' && cluster_proc_mounted(c->mnt)) {
            fprintf(stderr,
                    "raftfs cluster up: the cluster is mounted at %s; run raftfs cluster "
                    "down first to mount it elsewhere\n",
                    c->mnt);
            return 2;
        }
        snprintf(c->mnt, sizeof c->mnt, "%s", o->mnt);
        if (cluster_conf_save(c, errmsg) != 0) {
            fprintf(stderr, "raftfs cluster up: %s\n", errmsg);
            return 2;
        }
    }
    return 0;
}

static void print_next(const struct cluster_conf *c, const struct cluster_opts *o, bool mounted)
{
    printf("\nthe cluster is up: data, logs and pid files in %s\n\ntry:\n", c->dir);
    if (mounted) {
        const char *m = cluster_shorten(c->mnt);
        printf("  echo hi > %s/a; cat %s/a\n", m, m);
    }
    printf("  %s cluster status%s\n", o->prog, o->dir_hint);
    printf("  %s cluster down%s\n", o->prog, o->dir_hint);
}

int cluster_up(const struct cluster_opts *o)
{
    struct cluster_conf *c = rfs_calloc(1, sizeof *c);
    pid_t pids[CLUSTER_MAX_SERVERS] = {0};
    char errmsg[RFS_ERRMSG_SIZE] = "";
    unsigned running = 0, started = 0;
    bool fresh = false, want_mount, mount_ok;
    int rv, rc = 2;

    if (c == NULL) {
        fprintf(stderr, "raftfs cluster up: out of memory\n");
        return 2;
    }
    rv = cluster_conf_load(c, o->dir, errmsg);
    if (rv == RFS_ENOTFOUND) {
        fresh = true;
        if (create(c, o) != 0) {
            goto out;
        }
    } else if (rv != 0) {
        fprintf(stderr,
                "raftfs cluster up: %s; fix it, or remove the directory (raftfs cluster "
                "down --purge --dir %s)\n",
                errmsg, o->dir);
        goto out;
    } else if (reuse(c, o) != 0) {
        goto out;
    }
    want_mount = c->mnt[0] != '\0' && !o->no_mount;
    for (unsigned i = 0; i < c->n; i++) {
        pids[i] = cluster_proc_running(c->servers[i].pidfile, c->servers[i].data);
        running += pids[i] > 0;
    }
    mount_ok = !want_mount ||
               (cluster_proc_running(c->mount_pidfile, c->mnt) > 0 && cluster_proc_mounted(c->mnt));
    if (running == c->n && mount_ok) {
        printf("the cluster in %s is already up: %u servers running%s%s\n", c->dir, c->n,
               want_mount ? ", mounted at " : "", want_mount ? c->mnt : "");
        printf("(%s cluster status%s shows how it is doing)\n", o->prog, o->dir_hint);
        rc = 0;
        goto out;
    }
    for (unsigned i = 0; i < c->n; i++) {
        char name[32];
        if (pids[i] > 0) {
            continue;
        }
        cluster_server_name(&c->servers[i], name, sizeof name);
        if (!fresh) {
            fprintf(stderr, "restarting %s (%s): it was not running\n", name, c->servers[i].addr);
        }
        if (start_server(c, o, &c->servers[i], &pids[i], errmsg) != 0) {
            fprintf(stderr, "raftfs cluster up: %s: %s\n", name, errmsg);
            goto out;
        }
        started++;
    }
    if (started > 0) {
        fprintf(stderr, "started %u server%s (logs in %s/logs)\n", started, started > 1 ? "s" : "",
                c->dir);
    }
    for (unsigned g = 0; g <= c->groups; g++) {
        if (wait_group(c, o, g, pids) != 0) {
            goto out;
        }
    }
    if (join_groups(c, o) != 0 || wait_buckets(c, o) != 0) {
        goto out;
    }
    if (want_mount && mount_up(c, o) != 0) {
        goto out;
    }
    print_next(c, o, want_mount);
    rc = 0;
out:
    rfs_free(c);
    return rc;
}
