/* raftfs group: a group's membership (members, add-learner, promote, remove). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "kv/client.h"
#include "tools/tools.h"

static void group_usage(FILE *f)
{
    fprintf(f, "usage: raftfs group --group A0,A1,A2 [--timeout MS] COMMAND ...\n"
               "\n"
               "Change who serves a group (a shard group, or the meta group: give its servers)\n"
               "while it runs. Server ids are positions: A0 is server 1, A1 server 2, ...; '-'\n"
               "holds the place of a server that no longer exists (A0,A1,-,A3).\n"
               "\n"
               "  members              each server of --group: id, address, reachable, role,\n"
               "                       term, applied; then the configuration the leader has:\n"
               "                       voters and learners with their addresses and how far\n"
               "                       each has the log (match)\n"
               "  add-learner ID ADDR  add server ID, listening on ADDR (host:port), as a\n"
               "                       learner: it receives the log but does not vote. Start it\n"
               "                       first with --id ID-1 --join and ADDR at its position in\n"
               "                       --peers\n"
               "  promote [--force] ID make learner ID a voter, once it has caught up (its match\n"
               "                       within 100 entries of the leader's log; --force: anyway)\n"
               "  remove ID            remove server ID (voter or learner) from the group\n"
               "\n"
               "Replacing dead server 3 of {1,2,3} by a new server 4 (docs/deploy.md):\n"
               "  add-learner 4 ADDR, wait until members shows its applied equal to the leader's,\n"
               "  promote 4, remove 3; then give clients and the meta group A0,A1,-,ADDR.\n"
               "\n"
               "  --group LIST   the group's servers, host:port separated by commas\n"
               "  --timeout MS   give up after MS milliseconds (default 10000)\n"
               "\n"
               "Exit status: 0 success (also when the change was already made), 1 refused\n"
               "(see the message), 2 an error (bad usage, no leader reachable).\n");
}

static int parse_id(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end != '\0' || errno != 0 || v < 1 || v > 16) {
        return -1;
    }
    *out = v;
    return 0;
}

static const char *role_name(int role, bool removed)
{
    static const char *const names[] = {"follower", "pre-candidate", "candidate", "leader"};
    if (removed) {
        return "removed";
    }
    return role >= 0 && role <= 3 ? names[role] : "?";
}

static int group_members(struct kv_client *c, const struct kv_client_options *o)
{
    struct kv_server_status st;
    struct kv_server_status leader;
    int reachable = 0;
    bool have_leader = false;
    printf("%-3s %-22s %-9s %-13s %6s %6s %10s %10s\n", "id", "address", "reachable", "role",
           "term", "leader", "applied", "last");
    for (unsigned i = 0; i < o->n_servers; i++) {
        if (strcmp(o->servers[i], KV_CLIENT_NO_SERVER) == 0) {
            printf("%-3u %-22s %s\n", i + 1, "-", "(no server at this position)");
            continue;
        }
        if (kv_client_status(c, i, &st) != 0) {
            printf("%-3u %-22s %-9s %s\n", i + 1, o->servers[i], "no", st.error);
            continue;
        }
        reachable++;
        printf("%-3llu %-22s %-9s %-13s %6llu %6llu %10llu %10llu\n", (unsigned long long)st.id,
               o->servers[i], "yes", role_name(st.role, st.removed), (unsigned long long)st.term,
               (unsigned long long)st.leader, (unsigned long long)st.applied,
               (unsigned long long)st.last_index);
        if (st.role == 3 && !have_leader) {
            leader = st;
            have_leader = true;
        }
    }
    if (!have_leader) {
        fprintf(stderr,
                "raftfs group members: %d server(s) reachable, none of them the leader: check "
                "that a majority of the voters run, and that --group lists the leader\n",
                reachable);
        return 2;
    }
    printf("\nconfiguration (from the leader, server %llu):\n", (unsigned long long)leader.id);
    for (unsigned i = 0; i < leader.n_members; i++) {
        const struct kv_member *m = &leader.members[i];
        printf("  %-7s %-3llu %-22s match %llu%s\n", m->learner ? "learner" : "voter",
               (unsigned long long)m->id, m->addr[0] ? m->addr : "(no address)",
               (unsigned long long)m->match,
               m->learner && m->match + 100 >= leader.last_index ? " (caught up)" : "");
    }
    return 0;
}

static int change_exit(int rv, const char *cmd, const char *errmsg)
{
    fprintf(stderr, "raftfs group %s: %s\n", cmd, errmsg[0] ? errmsg : rfs_strerror(rv));
    if (rv == RFS_ECONFPENDING) {
        fprintf(stderr, "raftfs group %s: retry in a moment\n", cmd);
    }
    return rv == RFS_EINVAL || rv == RFS_EBUSY || rv == RFS_ECONFPENDING ? 1 : 2;
}

static int group_change(struct kv_client *c, const char *list, const char *cmd, int argc,
                        char **argv)
{
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char note[RFS_ERRMSG_SIZE] = "";
    bool force = false;
    uint64_t id;
    int rv;
    if (strcmp(cmd, "promote") == 0 && argc > 0 && strcmp(argv[0], "--force") == 0) {
        force = true;
        argc--;
        argv++;
    }
    if (strcmp(cmd, "add-learner") == 0) {
        if (argc != 2 || parse_id(argv[0], &id) != 0) {
            fprintf(stderr, "raftfs group add-learner: expected ID (1..16) and HOST:PORT (see "
                            "--help)\n");
            return 2;
        }
        rv = kv_client_conf_change(c, id, 1, argv[1], false, note, errmsg);
        if (rv != 0) {
            return change_exit(rv, cmd, errmsg);
        }
        printf("server %llu (%s) is a learner%s%s\n", (unsigned long long)id, argv[1],
               note[0] ? ": " : "", note);
        printf("next: wait until 'raftfs group --group %s members' shows it caught up, then "
               "'raftfs group --group %s promote %llu'\n",
               list, list, (unsigned long long)id);
        return 0;
    }
    if (argc != 1 || parse_id(argv[0], &id) != 0) {
        fprintf(stderr, "raftfs group %s: expected one server ID, 1..16 (see --help)\n", cmd);
        return 2;
    }
    if (strcmp(cmd, "promote") == 0) {
        rv = kv_client_conf_change(c, id, 2, NULL, force, note, errmsg);
        if (rv != 0) {
            return change_exit(rv, cmd, errmsg);
        }
        printf("server %llu is a voter%s%s\n", (unsigned long long)id, note[0] ? ": " : "", note);
        return 0;
    }
    rv = kv_client_conf_change(c, id, 3, NULL, false, note, errmsg);
    if (rv != 0) {
        return change_exit(rv, cmd, errmsg);
    }
    printf("server %llu is no longer a member%s%s\n", (unsigned long long)id, note[0] ? ": " : "",
           note);
    printf("next: stop it if it still runs; give clients and the meta group the list with '-' "
           "at position %llu (raftfs meta ... addrs GID LIST)\n",
           (unsigned long long)id);
    return 0;
}

int tools_group(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"group", required_argument, NULL, 'g'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct kv_client_options o;
    struct kv_client *c = NULL;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char listbuf[4096];
    const char *list = NULL;
    const char *cmd;
    unsigned timeout_ms = 10000;
    int rc;
    optind = 1;
    for (;;) {
        int ch = getopt_long(argc, argv, "+h", longopts, NULL);
        if (ch == -1) {
            break;
        }
        switch (ch) {
            case 'g':
                list = optarg;
                break;
            case 't': {
                char *end;
                unsigned long v = strtoul(optarg, &end, 10);
                if (*optarg == '\0' || *end != '\0' || v == 0 || v > 3600000) {
                    fprintf(stderr, "raftfs group: --timeout needs milliseconds, 1..3600000\n");
                    return 2;
                }
                timeout_ms = (unsigned)v;
                break;
            }
            case 'h':
                group_usage(stdout);
                return 0;
            default:
                fprintf(stderr, "raftfs group: see --help\n");
                return 2;
        }
    }
    if (optind >= argc) {
        group_usage(stderr);
        return 2;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "help") == 0) {
        group_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "members") != 0 && strcmp(cmd, "add-learner") != 0 &&
        strcmp(cmd, "promote") != 0 && strcmp(cmd, "remove") != 0) {
        fprintf(stderr, "raftfs group: unknown command '%s' (see --help)\n", cmd);
        return 2;
    }
    if (list == NULL) {
        fprintf(stderr, "raftfs group: --group A0,A1,A2 (the group's servers) is required\n");
        return 2;
    }
    if ((size_t)snprintf(listbuf, sizeof listbuf, "%s", list) >= sizeof listbuf) {
        fprintf(stderr, "raftfs group: --group list too long\n");
        return 2;
    }
    memset(&o, 0, sizeof o);
    if (kv_client_parse_servers(listbuf, &o, errmsg) != 0) {
        fprintf(stderr, "raftfs group: --group: %s\n", errmsg);
        return 2;
    }
    o.timeout_ms = timeout_ms;
    if (kv_client_new(&c, &o, errmsg) != 0) {
        fprintf(stderr, "raftfs group: %s\n", errmsg);
        return 2;
    }
    if (strcmp(cmd, "members") == 0) {
        rc = optind + 1 == argc ? group_members(c, &o) : 2;
        if (optind + 1 != argc) {
            fprintf(stderr, "raftfs group members: takes no arguments\n");
        }
    } else {
        rc = group_change(c, list, cmd, argc - optind - 1, argv + optind + 1);
    }
    kv_client_free(c);
    return rc;
}
