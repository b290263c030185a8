/* Multi-process shard groups for tests; see cluster.h. */
#include "tests/lib/cluster.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "kv/client.h"
#include "tests/lib/proc.h"

static void bin_dir(char *out, size_t cap)
{
    const char *env = getenv("RAFTFS_BIN_DIR");
    snprintf(out, cap, "%s", env ? env : "build/asan/bin");
}

bool cluster_bins_present(char *why, size_t cap)
{
    static const char *const progs[] = {"raftfs-shard", "raftfs-meta"};
    char dir[256];
    char path[300];
    bin_dir(dir, sizeof dir);
    for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, progs[i]);
        if (access(path, X_OK) != 0) {
            snprintf(why, cap, "%s not built (run make, or set RAFTFS_BIN_DIR)", path);
            return false;
        }
    }
    return true;
}

void cluster_log_path(const struct cluster *c, unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/server%u.log", c->dir, i);
}

bool cluster_log_contains(const struct cluster *c, unsigned i, const char *what)
{
    char path[512], line[2048];
    bool found = false;
    FILE *fp;
    cluster_log_path(c, i, path, sizeof path);
    fp = fopen(path, "r");
    if (fp == NULL) {
        return false;
    }
    while (!found && fgets(line, sizeof line, fp) != NULL) {
        found = strstr(line, what) != NULL;
    }
    fclose(fp);
    return found;
}

static void peers_for(const struct cluster *c, unsigned i, char *out, size_t cap)
{
    size_t n = 0;
    unsigned count = c->n_peers[i] != 0 ? c->n_peers[i] : c->n;
    out[0] = '\0';
    for (unsigned j = 0; j < count; j++) {
        int port = (j == i || !c->proxied) ? c->port[j] : c->link_port[i][j];
        n += (size_t)snprintf(out + n, cap - n, "%s127.0.0.1:%d", j ? "," : "", port);
    }
}

int cluster_start_server(struct cluster *c, unsigned i, char *errmsg)
{
    char shard[400], peers[512], data[300], id[16], logp[300];
    char extra[256];
    char *argv[40];
    int argc = 0;
    if (c->pid[i] != 0) {
        return 0;
    }
    snprintf(shard, sizeof shard, "%s/%s", c->bin_dir,
             c->binary[0] != '\0' ? c->binary : "raftfs-shard");
    peers_for(c, i, peers, sizeof peers);
    snprintf(data, sizeof data, "%s/s%u", c->dir, i);
    snprintf(id, sizeof id, "%u", i);
    cluster_log_path(c, i, logp, sizeof logp);
    argv[argc++] = shard;
    argv[argc++] = "--id";
    argv[argc++] = id;
    argv[argc++] = "--peers";
    argv[argc++] = peers;
    argv[argc++] = "--data";
    argv[argc++] = data;
    argv[argc++] = "--tick-ms";
    argv[argc++] = "10";
    argv[argc++] = "--election-ticks";
    argv[argc++] = "15";
    argv[argc++] = "--heartbeat-ticks";
    argv[argc++] = "3";
    if (c->join[i]) {
        argv[argc++] = "--join";
    }
    snprintf(extra, sizeof extra, "%s", c->extra);
    for (char *save = NULL, *tok = strtok_r(extra, " ", &save); tok && argc < 38;
         tok = strtok_r(NULL, " ", &save)) {
        argv[argc++] = tok;
    }
    argv[argc] = NULL;
    return proc_spawn(argv, logp, &c->pid[i], errmsg);
}

static int start_proxy(struct cluster *c, char *errmsg)
{
    char bin[300];
    char reply[128];
    char logp[300];
    int rv;
    snprintf(bin, sizeof bin, "%s/raftfs-proxy", c->bin_dir);
    snprintf(logp, sizeof logp, "%s/proxy.log", c->dir);
    rv = proxy_ctl_start(&c->proxy, bin, NULL, logp, 5000, errmsg);
    if (rv != 0) {
        return rv;
    }
    for (unsigned i = 0; i < c->n; i++) {
        for (unsigned j = 0; j < c->n; j++) {
            if (i == j) {
                continue;
            }
            rv = proxy_ctl_cmd(&c->proxy, reply, sizeof reply,
                               "add l%u_%u 127.0.0.1:0 127.0.0.1:%d", i, j, c->port[j]);
            if (rv != 0 || sscanf(reply, "ok %d", &c->link_port[i][j]) != 1) {
                rfs_errmsg_printf(errmsg, "proxy route l%u_%u: %s", i, j, reply);
                return RFS_EIO;
            }
        }
        rv = proxy_ctl_cmd(&c->proxy, reply, sizeof reply, "add c%u 127.0.0.1:0 127.0.0.1:%d", i,
                           c->port[i]);
        if (rv != 0 || sscanf(reply, "ok %d", &c->client_port[i]) != 1) {
            rfs_errmsg_printf(errmsg, "proxy route c%u: %s", i, reply);
            return RFS_EIO;
        }
    }
    return 0;
}

int cluster_start(struct cluster *c, unsigned n, bool proxied, const char *extra, char *errmsg)
{
    return cluster_start_binary(c, "raftfs-shard", n, proxied, extra, errmsg);
}

int cluster_start_binary(struct cluster *c, const char *binary, unsigned n, bool proxied,
                         const char *extra, char *errmsg)
{
    size_t len = 0;
    int rv;
    memset(c, 0, sizeof *c);
    snprintf(c->binary, sizeof c->binary, "%s", binary);
    c->n = n;
    c->proxied = proxied;
    bin_dir(c->bin_dir, sizeof c->bin_dir);
    snprintf(c->extra, sizeof c->extra, "%s", extra ? extra : "");
    rv = tmpdir_make("raftfs-cluster", c->dir, sizeof c->dir, errmsg);
    if (rv != 0) {
        return rv;
    }
    for (unsigned i = 0; i < n; i++) {
        c->port[i] = free_port();
        c->client_port[i] = c->port[i];
        c->n_peers[i] = n;
        if (c->port[i] < 0) {
            rfs_errmsg_printf(errmsg, "no free port");
            return RFS_EIO;
        }
    }
    if (proxied) {
        rv = start_proxy(c, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        len += (size_t)snprintf(c->group + len, sizeof c->group - len, "%s127.0.0.1:%d",
                                i ? "," : "", c->client_port[i]);
        rv = cluster_start_server(c, i, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int cluster_add_server(struct cluster *c, char *errmsg)
{
    unsigned i = c->n;
    size_t len = strlen(c->group);
    if (c->proxied || i >= CLUSTER_MAX) {
        rfs_errmsg_printf(errmsg, "cluster_add_server: %s",
                          c->proxied ? "not for proxied clusters" : "cluster is full");
        return RFS_EINVAL;
    }
    c->port[i] = free_port();
    if (c->port[i] < 0) {
        rfs_errmsg_printf(errmsg, "no free port");
        return RFS_EIO;
    }
    c->client_port[i] = c->port[i];
    c->n++;
    c->n_peers[i] = c->n;
    c->join[i] = true;
    snprintf(c->group + len, sizeof c->group - len, ",127.0.0.1:%d", c->port[i]);
    return cluster_start_server(c, i, errmsg);
}

void cluster_signal(struct cluster *c, unsigned i, int sig)
{
    if (c->pid[i] == 0) {
        return;
    }
    (void)proc_kill(c->pid[i], sig);
    if (sig == SIGKILL) {
        (void)proc_wait(c->pid[i], 5000);
        c->pid[i] = 0;
    }
}

int cluster_stop_server(struct cluster *c, unsigned i)
{
    int st;
    if (c->pid[i] == 0) {
        return -1;
    }
    (void)proc_kill(c->pid[i], SIGCONT);
    st = proc_stop(c->pid[i], 10000);
    c->pid[i] = 0;
    return st;
}

void cluster_destroy(struct cluster *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->pid[i] != 0) {
            (void)cluster_stop_server(c, i);
        }
    }
    (void)proxy_ctl_stop(&c->proxy, 2000);
    if (c->dir[0] != '\0' && getenv("RAFTFS_KEEP_TEST_DIRS") == NULL) {
        (void)tmpdir_remove(c->dir);
    }
    c->dir[0] = '\0';
}

int cluster_wait_leader(struct cluster *c, int timeout_ms)
{
    struct kv_client_options o;
    struct kv_client *kc = NULL;
    char group[512];
    char errmsg[RFS_ERRMSG_SIZE];
    long long deadline = proc_now_ms() + timeout_ms;
    int leader = -1;
    memset(&o, 0, sizeof o);
    /* Ask each server directly, not through the proxy: the test wants the truth. */
    {
        size_t len = 0;
        for (unsigned i = 0; i < c->n; i++) {
            len += (size_t)snprintf(group + len, sizeof group - len, "%s127.0.0.1:%d", i ? "," : "",
                                    c->port[i]);
        }
    }
    if (kv_client_parse_servers(group, &o, errmsg) != 0) {
        return -1;
    }
    o.attempt_ms = 300;
    if (kv_client_new(&kc, &o, errmsg) != 0) {
        return -1;
    }
    while (leader < 0 && proc_now_ms() < deadline) {
        unsigned votes[CLUSTER_MAX + 1] = {0};
        for (unsigned i = 0; i < c->n; i++) {
            struct kv_server_status st;
            if (c->pid[i] == 0 || kv_client_status(kc, i, &st) != 0) {
                continue;
            }
            if (st.leader >= 1 && st.leader <= c->n && st.role != 1 && st.role != 2) {
                votes[st.leader]++;
            }
        }
        for (unsigned l = 1; l <= c->n; l++) {
            if (votes[l] * 2 > c->n && c->pid[l - 1] != 0) {
                leader = (int)l - 1;
            }
        }
        if (leader < 0) {
            usleep(20000);
        }
    }
    kv_client_free(kc);
    return leader;
}

int cluster_link(struct cluster *c, unsigned from, unsigned to, const char *cmd)
{
    char reply[128];
    if (!c->proxied || from == to) {
        return RFS_EINVAL;
    }
    return proxy_ctl_cmd(&c->proxy, reply, sizeof reply, "%s l%u_%u%s", cmd, from, to,
                         strncmp(cmd, "cut", 3) == 0 ? " both" : "");
}

int cluster_isolate(struct cluster *c, unsigned i)
{
    char reply[128];
    int rv = 0;
    for (unsigned j = 0; j < c->n; j++) {
        if (j == i) {
            continue;
        }
        rv |= proxy_ctl_cmd(&c->proxy, reply, sizeof reply, "cut l%u_%u both", i, j);
        rv |= proxy_ctl_cmd(&c->proxy, reply, sizeof reply, "cut l%u_%u both", j, i);
    }
    rv |= proxy_ctl_cmd(&c->proxy, reply, sizeof reply, "cut c%u both", i);
    return rv ? RFS_EIO : 0;
}

int cluster_all_links(struct cluster *c, const char *fmt)
{
    char reply[128];
    char name[32];
    char line[128];
    int rv = 0;
    for (unsigned i = 0; i < c->n; i++) {
        for (unsigned j = 0; j < c->n; j++) {
            if (i == j) {
                continue;
            }
            snprintf(name, sizeof name, "l%u_%u", i, j);
            snprintf(line, sizeof line, fmt, name);
            rv |= proxy_ctl_cmd(&c->proxy, reply, sizeof reply, "%s", line);
        }
    }
    return rv ? RFS_EIO : 0;
}

int cluster_heal(struct cluster *c)
{
    char reply[128];
    int rv = 0;
    if (!c->proxied) {
        return 0;
    }
    rv |= cluster_all_links(c, "heal %s");
    for (unsigned i = 0; i < c->n; i++) {
        rv |= proxy_ctl_cmd(&c->proxy, reply, sizeof reply, "heal c%u", i);
    }
    return rv ? RFS_EIO : 0;
}

void cluster_dump_logs(const struct cluster *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        char logp[300];
        char cmd[400];
        cluster_log_path(c, i, logp, sizeof logp);
        fprintf(stderr, "---- %s (last 30 lines)\n", logp);
        snprintf(cmd, sizeof cmd, "tail -n 30 '%s' >&2", logp);
        if (system(cmd) != 0) {
            fprintf(stderr, "(no log)\n");
        }
    }
}

int cluster_sanitizer_errors(const struct cluster *c)
{
    int found = 0;
    for (unsigned i = 0; i < c->n; i++) {
        char logp[300];
        char cmd[400];
        cluster_log_path(c, i, logp, sizeof logp);
        snprintf(
            cmd, sizeof cmd,
            "grep -q -e 'ERROR: AddressSanitizer' -e 'ERROR: LeakSanitizer' -e 'runtime error' "
            "'%s' 2>/dev/null",
            logp);
        if (system(cmd) == 0) {
            fprintf(stderr, "sanitizer report in %s\n", logp);
            found++;
        }
    }
    return found;
}
