/* Network namespaces for multi-process tests; see netns.h.
 *
 * Every `ip` and `iptables` call is a child process run by pid (proc_spawn_fds) with its output
 * in a temporary file, waited for at most CMD_WAIT_MS and then killed; the output is appended
 * to the log and, on failure, its first line goes into errmsg. Commands are built from short
 * names without white space, so splitting the formatted line on spaces is enough. */
#include "tests/lib/netns.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "tests/lib/proc.h"

#define CMD_WAIT_MS 10000
#define CMD_ARGS    32
#define SUBNET_BASE 77 /* 10.77.S.0/24 */

static bool in_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[4096], full[4200], *save = NULL;
    /* iproute2 and iptables live in sbin, which a root shell has but a service may not. */
    snprintf(buf, sizeof buf, "%s:/usr/sbin:/sbin", path != NULL ? path : "/usr/bin:/bin");
    for (char *d = strtok_r(buf, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        snprintf(full, sizeof full, "%s/%s", d, prog);
        if (access(full, X_OK) == 0) {
            return true;
        }
    }
    return false;
}

bool netns_usable(char *why, size_t cap)
{
    if (geteuid() != 0) {
        snprintf(why, cap, "network namespaces need root");
        return false;
    }
    if (!in_path("ip")) {
        snprintf(why, cap, "ip (iproute2) is not installed");
        return false;
    }
    if (!in_path("iptables")) {
        snprintf(why, cap, "iptables is not installed (apt-get install iptables)");
        return false;
    }
    return true;
}

/* Run the command line fmt (split on spaces), its output into out (cap bytes, may be NULL)
 * and the log. Returns its exit status, or -1 if it could not run or did not end in time
 * (errmsg says which). */
static int run(struct netns_net *net, char *out, size_t cap, char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int run(struct netns_net *net, char *out, size_t cap, char *errmsg, const char *fmt, ...)
{
    char line[512], copy[512], buf[2048];
    char *argv[CMD_ARGS + 1], *save = NULL;
    size_t argc = 0, len;
    FILE *tmp;
    pid_t pid;
    va_list ap;
    int st;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    snprintf(copy, sizeof copy, "%s", line);
    for (char *t = strtok_r(copy, " ", &save); t != NULL && argc < CMD_ARGS;
         t = strtok_r(NULL, " ", &save)) {
        argv[argc++] = t;
    }
    argv[argc] = NULL;
    tmp = tmpfile();
    if (tmp == NULL) {
        rfs_errmsg_printf(errmsg, "%s: no temporary file", line);
        return -1;
    }
    if (proc_spawn_fds(argv, fileno(tmp), fileno(tmp), &pid, errmsg) != 0) {
        fclose(tmp);
        rfs_errmsg_wrapf(errmsg, "%s", line);
        return -1;
    }
    st = proc_wait(pid, CMD_WAIT_MS);
    if (st == -2) {
        (void)proc_stop(pid, 1000);
        rfs_errmsg_printf(errmsg, "%s: still running after %d ms", line, CMD_WAIT_MS);
        st = -1;
    }
    rewind(tmp);
    len = fread(buf, 1, sizeof buf - 1, tmp);
    buf[len] = '\0';
    fclose(tmp);
    if (net->log[0] != '\0') {
        FILE *lf = fopen(net->log, "a");
        if (lf != NULL) {
            fprintf(lf, "$ %s  (exit %d)\n%s", line, st, buf);
            fclose(lf);
        }
    }
    if (out != NULL) {
        snprintf(out, cap, "%s", buf);
    }
    if (st > 0) {
        buf[strcspn(buf, "\n")] = '\0';
        rfs_errmsg_printf(errmsg, "%s: exit %d: %s", line, st, buf);
    }
    return st;
}

/* Whether 10.77.s.0/24 is free: no route of the main table but the default one covers it (a
 * directly connected subnet shows up here too). */
static bool subnet_free(struct netns_net *net, unsigned s)
{
    char out[2048], errmsg[RFS_ERRMSG_SIZE];
    char *save = NULL;
    if (run(net, out, sizeof out, errmsg, "ip -4 route show match 10.%d.%u.0/24", SUBNET_BASE, s) !=
        0) {
        return false;
    }
    for (char *l = strtok_r(out, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "default", 7) != 0) {
            return false;
        }
    }
    return true;
}

/* Bridged frames go through the root namespace's FORWARD chain when br_netfilter is loaded and
 * enabled; a host whose FORWARD policy is DROP (Docker's) would then cut the hosts off from
 * each other, so accept the bridge's own traffic explicitly. */
static int allow_bridge_forwarding(struct netns_net *net, char *errmsg)
{
    FILE *fp = fopen("/proc/sys/net/bridge/bridge-nf-call-iptables", "r");
    int on = 0;
    if (fp == NULL) {
        return 0;
    }
    if (fscanf(fp, "%d", &on) != 1) {
        on = 0;
    }
    fclose(fp);
    if (on == 0) {
        return 0;
    }
    if (run(net, NULL, 0, errmsg, "iptables -w 5 -I FORWARD -i %s -o %s -j ACCEPT", net->bridge,
            net->bridge) != 0) {
        return RFS_EIO;
    }
    net->forward_rule = true;
    return 0;
}

static int make_bridge(struct netns_net *net, char *errmsg)
{
    unsigned pid = (unsigned)getpid();
    char name[16];
    /* Start at a subnet derived from the pid, so two tests running at once pick different
     * ones, and take the first free one. */
    for (unsigned k = 0; k < 200 && net->subnet == 0; k++) {
        unsigned s = 20 + (pid + k) % 200;
        if (subnet_free(net, s)) {
            net->subnet = s;
        }
    }
    if (net->subnet == 0) {
        rfs_errmsg_printf(errmsg, "no free 10.%d.S.0/24 subnet", SUBNET_BASE);
        return RFS_EIO;
    }
    snprintf(name, sizeof name, "rfs%ubr", pid);
    if (run(net, NULL, 0, errmsg, "ip link add %s type bridge", name) != 0) {
        return RFS_EIO;
    }
    snprintf(net->bridge, sizeof net->bridge, "%s", name);
    if (run(net, NULL, 0, errmsg, "ip addr add 10.%d.%u.1/24 dev %s", SUBNET_BASE, net->subnet,
            name) != 0 ||
        run(net, NULL, 0, errmsg, "ip link set %s up", name) != 0) {
        return RFS_EIO;
    }
    return allow_bridge_forwarding(net, errmsg);
}

static int make_host(struct netns_net *net, const char *name, char *errmsg)
{
    unsigned pid = (unsigned)getpid();
    unsigned i = net->n;
    char ns[24], veth[16];
    snprintf(ns, sizeof ns, "rfs%u%.8s", pid, name);
    snprintf(veth, sizeof veth, "rfs%uh%u", pid, i);
    if (run(net, NULL, 0, errmsg, "ip netns add %s", ns) != 0) {
        return RFS_EIO;
    }
    snprintf(net->ns[i], sizeof net->ns[i], "%s", ns);
    snprintf(net->addr[i], sizeof net->addr[i], "10.%d.%u.%u", SUBNET_BASE, net->subnet, 10 + i);
    net->n++;
    /* The peer end is made inside the namespace, so deleting the namespace deletes the pair. */
    if (run(net, NULL, 0, errmsg, "ip -n %s link set lo up", ns) != 0 ||
        run(net, NULL, 0, errmsg, "ip link add %s type veth peer name eth0 netns %s", veth, ns) !=
            0 ||
        run(net, NULL, 0, errmsg, "ip link set %s master %s", veth, net->bridge) != 0 ||
        run(net, NULL, 0, errmsg, "ip link set %s up", veth) != 0 ||
        run(net, NULL, 0, errmsg, "ip -n %s addr add %s/24 dev eth0", ns, net->addr[i]) != 0 ||
        run(net, NULL, 0, errmsg, "ip -n %s link set eth0 up", ns) != 0) {
        return RFS_EIO;
    }
    return 0;
}

int netns_create(struct netns_net *net, const char *const *names, unsigned n, const char *log,
                 char *errmsg)
{
    int rv;
    memset(net, 0, sizeof *net);
    snprintf(net->log, sizeof net->log, "%s", log != NULL ? log : "");
    if (n == 0 || n > NETNS_MAX_HOSTS) {
        rfs_errmsg_printf(errmsg, "1 to %d hosts", NETNS_MAX_HOSTS);
        return RFS_EINVAL;
    }
    rv = make_bridge(net, errmsg);
    for (unsigned i = 0; rv == 0 && i < n; i++) {
        rv = make_host(net, names[i], errmsg);
    }
    return rv;
}

void netns_exec_prefix(const struct netns_net *net, unsigned i, char *argv[4])
{
    argv[0] = "ip";
    argv[1] = "netns";
    argv[2] = "exec";
    argv[3] = (char *)net->ns[i];
}

/* Add (op "-A") or delete ("-D") host i's two DROP rules. */
static int drop_rules(struct netns_net *net, unsigned i, const char *op, char *errmsg)
{
    int a = run(net, NULL, 0, errmsg, "ip netns exec %s iptables -w 5 %s INPUT -i eth0 -j DROP",
                net->ns[i], op);
    int b = run(net, NULL, 0, errmsg, "ip netns exec %s iptables -w 5 %s OUTPUT -o eth0 -j DROP",
                net->ns[i], op);
    return a == 0 && b == 0 ? 0 : RFS_EIO;
}

int netns_cut(struct netns_net *net, unsigned i, char *errmsg)
{
    if (i >= net->n || net->cut[i]) {
        rfs_errmsg_printf(errmsg, "cut: host %u is not there or already cut", i);
        return RFS_EINVAL;
    }
    net->cut[i] = true; /* even half made, destroy removes the namespace with its rules */
    return drop_rules(net, i, "-A", errmsg);
}

int netns_heal(struct netns_net *net, unsigned i, char *errmsg)
{
    if (i >= net->n || !net->cut[i]) {
        rfs_errmsg_printf(errmsg, "heal: host %u is not cut", i);
        return RFS_EINVAL;
    }
    net->cut[i] = false;
    return drop_rules(net, i, "-D", errmsg);
}

void netns_destroy(struct netns_net *net)
{
    char errmsg[RFS_ERRMSG_SIZE];
    /* A namespace takes its veth end (and so the pair), its addresses and its rules along. */
    for (unsigned i = net->n; i-- > 0;) {
        if (run(net, NULL, 0, errmsg, "ip netns del %s", net->ns[i]) != 0) {
            fprintf(stderr, "netns: %s\n", errmsg);
        }
        net->cut[i] = false;
    }
    net->n = 0;
    if (net->forward_rule &&
        run(net, NULL, 0, errmsg, "iptables -w 5 -D FORWARD -i %s -o %s -j ACCEPT", net->bridge,
            net->bridge) != 0) {
        fprintf(stderr, "netns: %s\n", errmsg);
    }
    net->forward_rule = false;
    if (net->bridge[0] != '\0' && run(net, NULL, 0, errmsg, "ip link del %s", net->bridge) != 0) {
        fprintf(stderr, "netns: %s\n", errmsg);
    }
    net->bridge[0] = '\0';
}
