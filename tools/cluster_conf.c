/* DIR/cluster.conf: the state file of `raftfs cluster`. A text file, one item a line:
 *
 *   buckets 64
 *   groups 2
 *   replicas 3
 *   mount /abs/mnt                  (or "mount -" without a mount)
 *   server meta 0 0 127.0.0.1:41001 DIR/data/meta-0 DIR/run/meta-0.pid DIR/logs/meta-0.log
 *   server shard 1 0 127.0.0.1:41004 DIR/data/g1-0 DIR/run/g1-0.pid DIR/logs/g1-0.log
 *
 * The ports are picked once, when the cluster is created, so a restart finds its peers where
 * they were. Paths hold no white space (cluster_conf_plan refuses such a directory). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "tools/cluster.h"

void cluster_server_name(const struct cluster_server *s, char *out, size_t cap)
{
    if (s->role == CLUSTER_META) {
        snprintf(out, cap, "meta-%u", s->id);
    } else {
        snprintf(out, cap, "g%u-%u", s->gid, s->id);
    }
}

static int path_in(char *out, const char *dir, const char *sub, const char *name,
                   const char *suffix, char *errmsg)
{
    int n = snprintf(out, CLUSTER_PATH_MAX, "%s/%s/%s%s", dir, sub, name, suffix);
    if (n < 0 || n >= CLUSTER_PATH_MAX) {
        rfs_errmsg_printf(errmsg, "%s: path too long (pick a shorter --dir)", dir);
        return RFS_EINVAL;
    }
    return 0;
}

int cluster_conf_plan(struct cluster_conf *c, const char *dir, unsigned groups, unsigned replicas,
                      unsigned buckets, const char *mnt, char *errmsg)
{
    memset(c, 0, sizeof *c);
    if (strlen(dir) + 32 >= CLUSTER_PATH_MAX || strlen(mnt) >= CLUSTER_PATH_MAX) {
        rfs_errmsg_printf(errmsg, "%s: path too long (pick a shorter --dir or --mount)", dir);
        return RFS_EINVAL;
    }
    if (strpbrk(dir, " \t\n") != NULL || strpbrk(mnt, " \t\n") != NULL) {
        rfs_errmsg_printf(errmsg, "'%s' or '%s' holds white space: pick another --dir or --mount",
                          dir, mnt);
        return RFS_EINVAL;
    }
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    snprintf(c->mnt, sizeof c->mnt, "%s", mnt);
    c->groups = groups;
    c->replicas = replicas;
    c->buckets = buckets;
    for (unsigned g = 0; g <= groups; g++) {
        for (unsigned i = 0; i < replicas; i++) {
            struct cluster_server *s = &c->servers[c->n++];
            char name[32];
            int port = cluster_proc_free_port(errmsg);
            if (port < 0) {
                return RFS_EIO;
            }
            s->role = g == 0 ? CLUSTER_META : CLUSTER_SHARD;
            s->gid = g;
            s->id = i;
            snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", port);
            cluster_server_name(s, name, sizeof name);
            if (path_in(s->data, dir, "data", name, "", errmsg) != 0 ||
                path_in(s->pidfile, dir, "run", name, ".pid", errmsg) != 0 ||
                path_in(s->log, dir, "logs", name, ".log", errmsg) != 0) {
                return RFS_EINVAL;
            }
        }
    }
    if (path_in(c->mount_pidfile, dir, "run", "mount", ".pid", errmsg) != 0 ||
        path_in(c->mount_log, dir, "logs", "mount", ".log", errmsg) != 0) {
        return RFS_EINVAL;
    }
    return 0;
}

static int parse_server(struct cluster_conf *c, const char *line)
{
    struct cluster_server *s;
    char role[16];
    if (c->n >= CLUSTER_MAX_SERVERS) {
        return -1;
    }
    s = &c->servers[c->n];
    /* Widths: addr 63, paths CLUSTER_PATH_MAX - 1 = 255. */
    if (sscanf(line, "server %15s %u %u %63s %255s %255s %255s", role, &s->gid, &s->id, s->addr,
               s->data, s->pidfile, s->log) != 7) {
        return -1;
    }
    if (strcmp(role, "meta") == 0 && s->gid == 0) {
        s->role = CLUSTER_META;
    } else if (strcmp(role, "shard") == 0 && s->gid > 0) {
        s->role = CLUSTER_SHARD;
    } else {
        return -1;
    }
    c->n++;
    return 0;
}

int cluster_conf_load(struct cluster_conf *c, const char *dir, char *errmsg)
{
    char path[CLUSTER_PATH_MAX + 32], line[1024];
    unsigned lineno = 0;
    FILE *fp;
    int rv = 0;

    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    snprintf(path, sizeof path, "%s/%s", dir, CLUSTER_CONF_NAME);
    fp = fopen(path, "r");
    if (fp == NULL) {
        rfs_errmsg_printf(errmsg, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? RFS_ENOTFOUND : RFS_EIO;
    }
    while (rv == 0 && fgets(line, sizeof line, fp) != NULL) {
        char word[CLUSTER_PATH_MAX];
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }
        if (sscanf(line, "buckets %u", &c->buckets) == 1 ||
            sscanf(line, "groups %u", &c->groups) == 1 ||
            sscanf(line, "replicas %u", &c->replicas) == 1) {
            continue;
        }
        if (sscanf(line, "mount %255s", word) == 1) {
            snprintf(c->mnt, sizeof c->mnt, "%s", strcmp(word, "-") == 0 ? "" : word);
            continue;
        }
        if (strncmp(line, "server ", 7) == 0 && parse_server(c, line) == 0) {
            continue;
        }
        rfs_errmsg_printf(errmsg, "%s:%u: cannot read '%s'", path, lineno, line);
        rv = RFS_ECORRUPT;
    }
    fclose(fp);
    if (rv == 0 &&
        (c->buckets == 0 || c->groups == 0 || c->groups > CLUSTER_MAX_GROUPS || c->replicas == 0 ||
         c->replicas > CLUSTER_MAX_REPLICAS || c->n != (c->groups + 1) * c->replicas)) {
        rfs_errmsg_printf(errmsg, "%s: incomplete (expected %u servers, found %u)", path,
                          (c->groups + 1) * c->replicas, c->n);
        rv = RFS_ECORRUPT;
    }
    if (rv == 0) {
        snprintf(c->mount_pidfile, sizeof c->mount_pidfile, "%s/run/mount.pid", dir);
        snprintf(c->mount_log, sizeof c->mount_log, "%s/logs/mount.log", dir);
    }
    return rv;
}

int cluster_conf_save(const struct cluster_conf *c, char *errmsg)
{
    char path[CLUSTER_PATH_MAX + 32], tmp[CLUSTER_PATH_MAX + 40];
    FILE *fp;
    int bad;

    snprintf(path, sizeof path, "%s/%s", c->dir, CLUSTER_CONF_NAME);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fp = fopen(tmp, "w");
    if (fp == NULL) {
        rfs_errmsg_printf(errmsg, "%s: %s", tmp, strerror(errno));
        return RFS_EIO;
    }
    fprintf(fp, "# raftfs cluster: written by `raftfs cluster up` (docs/cluster.md)\n");
    fprintf(fp, "buckets %u\ngroups %u\nreplicas %u\nmount %s\n", c->buckets, c->groups,
            c->replicas, c->mnt[0] ? c->mnt : "-");
    fprintf(fp, "# server ROLE GROUP ID ADDRESS DATA PIDFILE LOG\n");
    for (unsigned i = 0; i < c->n; i++) {
        const struct cluster_server *s = &c->servers[i];
        fprintf(fp, "server %s %u %u %s %s %s %s\n", s->role == CLUSTER_META ? "meta" : "shard",
                s->gid, s->id, s->addr, s->data, s->pidfile, s->log);
    }
    bad = ferror(fp);
    bad |= fflush(fp) != 0 || fsync(fileno(fp)) != 0;
    bad |= fclose(fp) != 0;
    if (bad || rename(tmp, path) != 0) {
        rfs_errmsg_printf(errmsg, "writing %s: %s", path, strerror(errno));
        unlink(tmp);
        return RFS_EIO;
    }
    return 0;
}

void cluster_conf_group_addrs(const struct cluster_conf *c, unsigned gid, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].gid == gid && len < cap) {
            int n = snprintf(out + len, cap - len, "%s%s", len ? "," : "", c->servers[i].addr);
            len += n > 0 ? (size_t)n : 0;
        }
    }
}
