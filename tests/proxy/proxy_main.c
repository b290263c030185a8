/* raftfs-proxy: a fault-injecting TCP proxy for multi-process tests (our userspace netem).
 *
 *   raftfs-proxy [--control HOST:PORT] [--route [NAME=]LISTEN=TARGET]... [--seed N]
 *                [--log-level LEVEL] [--help]
 *
 * On start it prints one line per route, then the control line, and flushes:
 *   route <name> listen 127.0.0.1:<port> -> <target>
 *   control 127.0.0.1:<port>
 * Then it serves the control protocol (tests/lib/proxy.h, docs/testing-tools.md) until
 * "quit", SIGTERM or SIGINT. Exit status 0, 1 on a runtime failure, 2 on bad usage. */
#include "common/err.h"
#include "common/log.h"
#include "tests/lib/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MAX_ROUTES 64

static void usage(FILE *out)
{
    fprintf(out, "usage: raftfs-proxy [--control HOST:PORT] [--route [NAME=]LISTEN=TARGET]...\n"
                 "                    [--seed N] [--log-level error|warn|info|debug|trace]\n"
                 "\n"
                 "Forwards TCP connections and injects faults per route. LISTEN may use port 0;\n"
                 "the chosen ports are printed as 'route <name> listen <addr> -> <target>' and\n"
                 "'control <addr>' lines. Unnamed routes are called r0, r1, ... in order.\n"
                 "Control commands, one per line: add NAME LISTEN TARGET | drop NAME PERMILLE |\n"
                 "delay NAME MIN_MS MAX_MS [up|down|both] | cut NAME up|down|both |\n"
                 "hold NAME up|down|both | heal NAME | reset NAME | stats NAME | ping | quit\n"
                 "(see docs/testing-tools.md).\n");
}

/* Length of the HOST part of "HOST:PORT" (the address was validated already). */
static int host_len(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    return colon != NULL ? (int)(colon - addr) : (int)strlen(addr);
}

/* Split "[NAME=]LISTEN=TARGET" in place. */
static int route_split(char *spec, int index, char *name, size_t cap, char **listen, char **target)
{
    char *first = strchr(spec, '=');
    char *second = first != NULL ? strchr(first + 1, '=') : NULL;

    if (first == NULL) {
        return RFS_EINVAL;
    }
    if (second != NULL) {
        *first = '\0';
        *second = '\0';
        snprintf(name, cap, "%s", spec);
        *listen = first + 1;
        *target = second + 1;
    } else {
        *first = '\0';
        snprintf(name, cap, "r%d", index);
        *listen = spec;
        *target = first + 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *control = "127.0.0.1:0";
    char *routes[MAX_ROUTES];
    int n_routes = 0;
    uint64_t seed = 1;
    const char *env_seed = getenv("RAFTFS_SEED");
    char errmsg[RFS_ERRMSG_SIZE] = "";
    struct proxy *p = NULL;
    sigset_t mask;
    int sfd, rv;

    if (env_seed != NULL) {
        seed = strtoull(env_seed, NULL, 10);
    }
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "raftfs-proxy: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        if (strcmp(a, "--control") == 0) {
            control = v;
        } else if (strcmp(a, "--route") == 0) {
            if (n_routes == MAX_ROUTES) {
                fprintf(stderr, "raftfs-proxy: at most %d routes on the command line\n",
                        MAX_ROUTES);
                return 2;
            }
            routes[n_routes++] = argv[i + 1];
        } else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            seed = strtoull(v, &end, 10);
            if (*end != '\0' || errno != 0) {
                fprintf(stderr, "raftfs-proxy: bad seed %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "--log-level") == 0) {
            enum rfs_log_level level;
            if (rfs_log_level_parse(v, &level) != 0) {
                fprintf(stderr, "raftfs-proxy: bad log level %s\n", v);
                return 2;
            }
            rfs_log_set_level(level);
        } else {
            fprintf(stderr, "raftfs-proxy: unknown argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    rfs_log_set_tag("proxy");

    /* Signals arrive through a signalfd in the loop, so shutdown is an ordinary event. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        fprintf(stderr, "raftfs-proxy: signalfd: %s\n", strerror(errno));
        return 1;
    }

    rv = proxy_new(control, seed, &p, errmsg);
    if (rv != 0) {
        fprintf(stderr, "raftfs-proxy: %s\n", errmsg);
        close(sfd);
        return rv == RFS_EINVAL ? 2 : 1;
    }
    for (int i = 0; i < n_routes; i++) {
        char name[PROXY_NAME_MAX];
        char *listen, *target;
        int port;
        if (route_split(routes[i], i, name, sizeof name, &listen, &target) != 0) {
            fprintf(stderr, "raftfs-proxy: bad --route %s (want [NAME=]LISTEN=TARGET)\n",
                    routes[i]);
            rv = RFS_EINVAL;
            goto out;
        }
        rv = proxy_route_add(p, name, listen, target, &port, errmsg);
        if (rv != 0) {
            fprintf(stderr, "raftfs-proxy: route %s: %s\n", name, errmsg);
            goto out;
        }
        printf("route %s listen %.*s:%d -> %s\n", name, host_len(listen), listen, port, target);
    }
    printf("control %.*s:%d\n", host_len(control), control, proxy_control_port(p));
    fflush(stdout);
    rfs_infof("started: seed %llu, control port %d", (unsigned long long)seed,
              proxy_control_port(p));

    rv = proxy_run(p, sfd);
    rfs_infof("stopping");
out:
    proxy_free(p);
    close(sfd);
    if (rv == RFS_EINVAL) {
        return 2;
    }
    return rv == 0 ? 0 : 1;
}
