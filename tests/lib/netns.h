/* Network namespaces for multi-process tests: "hosts" on one machine, each a network namespace
 * with its own address, all behind one bridge in the root namespace, and iptables rules that cut
 * a host off the network and heal it.
 *
 *     root namespace: bridge rfs<pid>br, 10.77.S.1/24   (S: a /24 no route of this machine uses)
 *       ├─ veth rfs<pid>h0 ── namespace rfs<pid><name0>: lo up, eth0 10.77.S.10/24
 *       ├─ veth rfs<pid>h1 ── namespace rfs<pid><name1>: lo up, eth0 10.77.S.11/24
 *       └─ ...
 *
 * A program in the root namespace (a test's client, a FUSE mount) reaches every host directly
 * on the bridge; hosts reach each other through it. netns_cut() drops everything on a host's
 * eth0 in both directions (iptables INPUT and OUTPUT in its namespace; lo is left alone), so
 * connections stall as they would behind a dead switch port rather than being refused.
 *
 * Everything made is recorded in struct netns_net and removed by netns_destroy(), which is safe
 * on a zeroed struct and after any partial failure: namespaces (with their rules and veths), the
 * bridge, and the one FORWARD rule added in the root namespace when bridged traffic goes through
 * iptables (br_netfilter). Every command is run by pid with a bounded wait. Functions return 0
 * or an RFS_E* code with a one-line errmsg (RFS_ERRMSG_SIZE bytes). Needs root, `ip` (iproute2)
 * and `iptables`. */
#ifndef RFS_TESTS_NETNS_H
#define RFS_TESTS_NETNS_H

#include <stdbool.h>
#include <stddef.h>

#define NETNS_MAX_HOSTS 8

struct netns_net {
    unsigned n;                     /* hosts made (namespaces that exist) */
    unsigned subnet;                /* S in 10.77.S.0/24 */
    char bridge[16];                /* "" until made */
    bool forward_rule;              /* an ACCEPT rule for the bridge in root FORWARD */
    char ns[NETNS_MAX_HOSTS][24];   /* namespace names */
    char addr[NETNS_MAX_HOSTS][16]; /* host i's address, "10.77.S.<10+i>" */
    bool cut[NETNS_MAX_HOSTS];      /* host i's DROP rules are in place */
    char log[300];                  /* output of every command run, appended */
};

/* Whether namespaces can be tried here: root, and `ip` and `iptables` in PATH. If not, the
 * reason goes into why (cap bytes). Whether the kernel allows them shows in netns_create. */
bool netns_usable(char *why, size_t cap);

/* Make the bridge and one namespace per name (names[i] short, e.g. "m0"; the namespace is
 * "rfs<pid><name>"), with host i at 10.77.S.<10+i>. log: a file for the commands' output.
 * On failure what was made stays recorded for netns_destroy. */
int netns_create(struct netns_net *net, const char *const *names, unsigned n, const char *log,
                 char *errmsg);

/* Fill argv[0..3] with "ip netns exec <namespace of host i>": put a program's argv after it to
 * run the program inside host i (ip execs it, so the pid is the program's). */
void netns_exec_prefix(const struct netns_net *net, unsigned i, char *argv[4]);

/* Drop every packet in and out of host i's eth0 / remove those rules again. */
int netns_cut(struct netns_net *net, unsigned i, char *errmsg);
int netns_heal(struct netns_net *net, unsigned i, char *errmsg);

/* Remove everything netns_create and netns_cut made; never fails (problems go to stderr).
 * Stop the processes running inside the namespaces first. */
void netns_destroy(struct netns_net *net);

#endif
