/* raftfs cluster status: one table line per server (process, reachable, role, term, commit,
 * applied), the buckets each group serves by the latest configuration, and the mount. Healthy
 * (exit 0): every process runs and answers, every group has a leader, every bucket has a group,
 * and the mount (if the cluster has one) is mounted with its daemon running. Else exit 1, with
 * what is wrong; exit 2 when there is no cluster in DIR. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "meta/client.h"
#include "meta/meta.h"
#include "raft/raft.h"
#include "tools/cluster.h"

#define MAX_PROBLEMS 16

/* What is wrong, one line each (the first MAX_PROBLEMS kept; n counts them all). */
struct problems {
    unsigned n;
    char line[MAX_PROBLEMS][160];
};

static void problem(struct problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct problems *p, const char *fmt, ...)
{
    va_list ap;
    if (p->n < MAX_PROBLEMS) {
        va_start(ap, fmt);
        vsnprintf(p->line[p->n], sizeof p->line[0], fmt, ap);
        va_end(ap);
    }
    p->n++;
}

/* Buckets per group (index gid; [0]: buckets without a group) by the latest configuration. */
static int bucket_counts(const struct cluster_conf *c, unsigned counts[CLUSTER_MAX_GROUPS + 1],
                         uint64_t *version, char *errmsg)
{
    struct kv_client *mc = NULL;
    struct meta_config cfg = {0};
    char meta[CLUSTER_MAX_REPLICAS * 64];
    int rv;

    memset(counts, 0, sizeof(unsigned) * (CLUSTER_MAX_GROUPS + 1));
    cluster_conf_group_addrs(c, 0, meta, sizeof meta);
    rv = kv_client_connect(&mc, meta, false, META_GROUP_ID, 2000, 500, errmsg);
    if (rv == 0) {
        rv = meta_client_query(mc, true, 0, &cfg, errmsg);
    }
    if (rv == 0) {
        *version = cfg.version;
        for (uint32_t b = 0; b < cfg.nbuckets; b++) {
            uint64_t g = cfg.buckets[b];
            counts[g <= CLUSTER_MAX_GROUPS ? g : 0]++;
        }
    }
    meta_config_clear(&cfg);
    kv_client_free(mc);
    return rv;
}

/* Print group gid's lines, noting what is wrong. */
static void group_lines(const struct cluster_conf *c, unsigned gid, const unsigned *counts,
                        bool have_counts, struct problems *p)
{
    struct kv_server_status st[CLUSTER_MAX_REPLICAS];
    struct cluster_group_health h;
    unsigned k = 0;
    char group[16], buckets[16], name[32];

    cluster_probe_group(c, gid, st, &h);
    if (gid == 0) {
        snprintf(group, sizeof group, "meta");
        snprintf(buckets, sizeof buckets, "-");
    } else {
        snprintf(group, sizeof group, "%u", gid);
        snprintf(buckets, sizeof buckets, have_counts ? "%u" : "?", have_counts ? counts[gid] : 0);
    }
    for (unsigned i = 0; i < c->n; i++) {
        const struct cluster_server *s = &c->servers[i];
        pid_t pid;
        char pidbuf[16];
        if (s->gid != gid) {
            continue;
        }
        pid = cluster_proc_running(s->pidfile, s->data);
        snprintf(pidbuf, sizeof pidbuf, pid > 0 ? "%d" : "-", (int)pid);
        if (st[k].reachable) {
            printf("%-5s %2u  %-21s %-8s %-9s %-13s %6llu %9llu %9llu %8s\n", group, s->id, s->addr,
                   pidbuf, "yes", raft_role_name((enum raft_role)st[k].role),
                   (unsigned long long)st[k].term, (unsigned long long)st[k].commit,
                   (unsigned long long)st[k].applied, buckets);
        } else {
            printf("%-5s %2u  %-21s %-8s %-9s %-13s %6s %9s %9s %8s\n", group, s->id, s->addr,
                   pidbuf, "no", "-", "-", "-", "-", buckets);
        }
        cluster_server_name(s, name, sizeof name);
        if (pid <= 0) {
            problem(p, "%s is not running (its log: %s)", name, s->log);
        } else if (!st[k].reachable) {
            problem(p, "%s (pid %d) does not answer (its log: %s)", name, (int)pid, s->log);
        }
        k++;
    }
    if (!h.leader) {
        problem(p, "%s%s has no leader", gid == 0 ? "the meta group" : "group ",
                gid == 0 ? "" : group);
    }
}

int cluster_status(const struct cluster_opts *o)
{
    struct cluster_conf *c = rfs_calloc(1, sizeof *c);
    unsigned counts[CLUSTER_MAX_GROUPS + 1];
    char errmsg[RFS_ERRMSG_SIZE] = "";
    uint64_t version = 0;
    struct problems p = {0};
    bool have_counts;
    int rv;

    if (c == NULL) {
        fprintf(stderr, "raftfs cluster status: out of memory\n");
        return 2;
    }
    rv = cluster_conf_load(c, o->dir, errmsg);
    if (rv != 0) {
        fprintf(stderr, "raftfs cluster status: %s%s\n", errmsg,
                rv == RFS_ENOTFOUND ? " (no cluster there: raftfs cluster up --dir DIR starts one)"
                                    : "");
        rfs_free(c);
        return 2;
    }
    have_counts = bucket_counts(c, counts, &version, errmsg) == 0;
    printf("cluster in %s: a meta group and %u shard group%s of %u server%s, %u buckets", c->dir,
           c->groups, c->groups > 1 ? "s" : "", c->replicas, c->replicas > 1 ? "s" : "",
           c->buckets);
    if (have_counts) {
        printf(", configuration %llu\n\n", (unsigned long long)version);
    } else {
        printf("\n\n");
        problem(&p, "configuration unknown: %s", errmsg);
    }
    printf("%-5s %2s  %-21s %-8s %-9s %-13s %6s %9s %9s %8s\n", "group", "id", "address", "pid",
           "reachable", "role", "term", "commit", "applied", "buckets");
    for (unsigned g = 0; g <= c->groups; g++) {
        group_lines(c, g, counts, have_counts, &p);
    }
    if (have_counts && counts[0] > 0) {
        problem(&p, "%u bucket(s) have no group", counts[0]);
    }
    if (c->mnt[0] != '\0') {
        pid_t pid = cluster_proc_running(c->mount_pidfile, c->mnt);
        bool mounted = cluster_proc_mounted(c->mnt);
        printf("\nmount %s: %s", c->mnt, mounted ? "mounted" : "not mounted");
        if (pid > 0) {
            printf(" (raftfs-mount pid %d)\n", (int)pid);
        } else {
            printf("%s\n", mounted ? " (raftfs-mount is not running: stale)" : "");
        }
        if (!mounted) {
            problem(&p, "%s is not mounted", c->mnt);
        } else if (pid <= 0) {
            problem(&p, "%s is mounted but raftfs-mount is not running", c->mnt);
        }
    }
    if (p.n == 0) {
        printf("\nhealthy\n");
    } else {
        printf("\nNOT healthy:\n");
        for (unsigned i = 0; i < p.n && i < MAX_PROBLEMS; i++) {
            printf("  %s\n", p.line[i]);
        }
        printf("%s cluster up%s restarts what is not running (see --help)\n", o->prog, o->dir_hint);
    }
    rfs_free(c);
    return p.n == 0 ? 0 : 1;
}
