/* raftfs: the command-line tool. Subcommands: kv (talk to a shard group), bench. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "kv/client.h"
#include "tools/tools.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: raftfs COMMAND [options]\n"
               "\n"
               "commands:\n"
               "  kv      read and write keys of a shard group (raftfs kv --help)\n"
               "  meta    join, leave, move, query the meta group (raftfs meta --help)\n"
               "  bench   measure throughput and latency of a shard group (raftfs bench --help)\n"
               "\n"
               "Exit status: 0 success, 1 a negative answer (key not found, condition failed),\n"
               "2 an error (bad usage, cluster unreachable).\n");
}

static void kv_usage(FILE *f)
{
    fprintf(f, "usage: raftfs kv --group A0,A1,A2 [--timeout MS] COMMAND ...\n"
               "\n"
               "  get KEY                 print the value (missing key: 'not found', exit 1)\n"
               "  get -v KEY              print the version, a tab, then the value\n"
               "  put KEY VALUE           store VALUE ('-' reads it from stdin)\n"
               "  append KEY VALUE        append VALUE to the current value\n"
               "  del KEY                 delete (missing key: exit 1)\n"
               "  cas KEY OLD NEW         store NEW if the value is OLD (else exit 1)\n"
               "  cas --absent KEY NEW    store NEW if the key does not exist\n"
               "  scan START [END] [--limit N]   keys in [START, END), one 'key<TAB>value' a line\n"
               "  status                  each server: reachable, role, term, commit, applied\n"
               "\n"
               "  --group LIST   the group's servers, host:port separated by commas\n"
               "                 (RAFTFS_GROUP in the environment stands in for it)\n"
               "  --timeout MS   give up after MS milliseconds (default 5000)\n");
}

/* Read all of stdin (for a VALUE of "-"). */
static int read_stdin(struct rfs_buf *out)
{
    size_t cap = 4096;
    out->len = 0;
    out->base = rfs_malloc(cap);
    if (out->base == NULL) {
        return RFS_ENOMEM;
    }
    for (;;) {
        size_t n;
        if (out->len == cap) {
            void *p = rfs_realloc(out->base, cap * 2);
            if (p == NULL) {
                return RFS_ENOMEM;
            }
            out->base = p;
            cap *= 2;
        }
        n = fread((char *)out->base + out->len, 1, cap - out->len, stdin);
        out->len += n;
        if (n == 0) {
            return ferror(stdin) ? RFS_EIO : 0;
        }
    }
}

static int value_arg(const char *arg, struct rfs_buf *out, bool *owned)
{
    *owned = false;
    if (strcmp(arg, "-") == 0) {
        *owned = true;
        return read_stdin(out);
    }
    out->base = (void *)arg;
    out->len = strlen(arg);
    return 0;
}

static const char *role_name(int role)
{
    static const char *const names[] = {"follower", "pre-candidate", "candidate", "leader"};
    return role >= 0 && role <= 3 ? names[role] : "?";
}

static int kv_status(struct kv_client *c, const struct kv_client_options *o)
{
    int healthy = 0;
    printf("%-22s %-9s %-13s %6s %6s %10s %10s %10s\n", "server", "reachable", "role", "term",
           "leader", "commit", "applied", "last");
    for (unsigned i = 0; i < o->n_servers; i++) {
        struct kv_server_status st;
        if (kv_client_status(c, i, &st) != 0) {
            printf("%-22s %-9s %s\n", o->servers[i], "no", st.error);
            continue;
        }
        healthy++;
        printf("%-22s %-9s %-13s %6llu %6llu %10llu %10llu %10llu\n", o->servers[i], "yes",
               role_name(st.role), (unsigned long long)st.term, (unsigned long long)st.leader,
               (unsigned long long)st.commit, (unsigned long long)st.applied,
               (unsigned long long)st.last_index);
    }
    if (healthy * 2 <= (int)o->n_servers) {
        fprintf(stderr,
                "raftfs kv status: only %d of %u servers reachable: the group has no "
                "majority\n",
                healthy, o->n_servers);
        return 2;
    }
    return 0;
}

static int exit_code(int rv, const char *what, const char *errmsg)
{
    if (rv == 0) {
        return 0;
    }
    if (rv == RFS_ECONFLICT) {
        fprintf(stderr, "%s: condition failed: %s\n", what, errmsg);
        return 1;
    }
    fprintf(stderr, "raftfs kv %s: %s\n", what, errmsg[0] ? errmsg : rfs_strerror(rv));
    return 2;
}

static int cmd_kv(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"group", required_argument, NULL, 'g'}, {"timeout", required_argument, NULL, 't'},
        {"limit", required_argument, NULL, 'l'}, {"absent", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    struct kv_client_options o;
    struct kv_client *c = NULL;
    char *group = getenv("RAFTFS_GROUP");
    char groupbuf[2048];
    char errmsg[RFS_ERRMSG_SIZE] = "";
    unsigned long timeout = 5000, limit = 0;
    bool absent = false, show_version = false;
    int ch;
    int rc = 2;
    const char *cmd;

    memset(&o, 0, sizeof o);
    optind = 1;
    while ((ch = getopt_long(argc, argv, "+hv", longopts, NULL)) != -1) {
        switch (ch) {
            case 'g':
                group = optarg;
                break;
            case 't':
                timeout = strtoul(optarg, NULL, 10);
                if (timeout == 0) {
                    fprintf(stderr, "raftfs kv: --timeout needs milliseconds > 0\n");
                    return 2;
                }
                break;
            case 'l':
                limit = strtoul(optarg, NULL, 10);
                break;
            case 'a':
                absent = true;
                break;
            case 'v':
                show_version = true;
                break;
            case 'h':
                kv_usage(stdout);
                return 0;
            default:
                kv_usage(stderr);
                return 2;
        }
    }
    if (optind >= argc) {
        kv_usage(stderr);
        return 2;
    }
    cmd = argv[optind++];
    /* Options may also follow the command (scan ... --limit N, get -v KEY). */
    while ((ch = getopt_long(argc, argv, "+hv", longopts, NULL)) != -1) {
        if (ch == 'l') {
            limit = strtoul(optarg, NULL, 10);
        } else if (ch == 'a') {
            absent = true;
        } else if (ch == 'v') {
            show_version = true;
        } else if (ch == 't') {
            timeout = strtoul(optarg, NULL, 10);
        } else if (ch == 'g') {
            group = optarg;
        } else {
            kv_usage(stderr);
            return 2;
        }
    }
    if (group == NULL) {
        fprintf(stderr, "raftfs kv: --group A0,A1,A2 is required (or set RAFTFS_GROUP)\n");
        return 2;
    }
    snprintf(groupbuf, sizeof groupbuf, "%s", group);
    if (kv_client_parse_servers(groupbuf, &o, errmsg) != 0) {
        fprintf(stderr, "raftfs kv: --group: %s\n", errmsg);
        return 2;
    }
    o.timeout_ms = (unsigned)timeout;
    o.attempt_ms = timeout < 1000 ? (unsigned)timeout : 1000;
    if (kv_client_new(&c, &o, errmsg) != 0) {
        fprintf(stderr, "raftfs kv: %s\n", errmsg);
        return 2;
    }
#define NEED(n)                                                                                    \
    do {                                                                                           \
        if (argc - optind != (n)) {                                                                \
            fprintf(stderr, "raftfs kv %s: expected %d argument(s) (see --help)\n", cmd, (n));     \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
    if (strcmp(cmd, "get") == 0) {
        struct kv_client_value v;
        int rv;
        NEED(1);
        rv = kv_client_get(c, argv[optind], strlen(argv[optind]), &v, errmsg);
        if (rv != 0) {
            rc = exit_code(rv, cmd, errmsg);
        } else if (!v.found) {
            fprintf(stderr, "not found\n");
            rc = 1;
        } else {
            if (show_version) {
                printf("%llu\t", (unsigned long long)v.version);
            }
            fwrite(v.value.base, 1, v.value.len, stdout);
            putchar('\n');
            rc = 0;
        }
        kv_client_value_clear(&v);
    } else if (strcmp(cmd, "put") == 0 || strcmp(cmd, "append") == 0) {
        struct rfs_buf val;
        bool owned;
        uint64_t version = 0;
        int rv;
        NEED(2);
        if (value_arg(argv[optind + 1], &val, &owned) != 0) {
            fprintf(stderr, "raftfs kv %s: cannot read the value from stdin\n", cmd);
            goto out;
        }
        rv = cmd[0] == 'p' ? kv_client_put(c, argv[optind], strlen(argv[optind]), val.base, val.len,
                                           &version, errmsg)
                           : kv_client_append(c, argv[optind], strlen(argv[optind]), val.base,
                                              val.len, &version, errmsg);
        if (owned) {
            rfs_free(val.base);
        }
        rc = exit_code(rv, cmd, errmsg);
    } else if (strcmp(cmd, "del") == 0) {
        bool found = false;
        int rv;
        NEED(1);
        rv = kv_client_delete(c, argv[optind], strlen(argv[optind]), &found, errmsg);
        rc = exit_code(rv, cmd, errmsg);
        if (rc == 0 && !found) {
            fprintf(stderr, "not found\n");
            rc = 1;
        }
    } else if (strcmp(cmd, "cas") == 0) {
        struct rfs_buf val;
        bool owned;
        struct kv_client_value cur;
        int rv;
        const char *old = NULL;
        NEED(absent ? 2 : 3);
        if (!absent) {
            old = argv[optind + 1];
        }
        if (value_arg(argv[optind + (absent ? 1 : 2)], &val, &owned) != 0) {
            fprintf(stderr, "raftfs kv cas: cannot read the value from stdin\n");
            goto out;
        }
        memset(&cur, 0, sizeof cur);
        rv = kv_client_cas(c, argv[optind], strlen(argv[optind]), old, old ? strlen(old) : 0,
                           val.base, val.len, &cur, errmsg);
        if (owned) {
            rfs_free(val.base);
        }
        if (rv == RFS_ECONFLICT) {
            if (cur.found) {
                fprintf(stderr, "condition failed: the value is '%.*s'\n", (int)cur.value.len,
                        (const char *)cur.value.base);
            } else {
                fprintf(stderr, "condition failed: the key does not exist\n");
            }
            rc = 1;
        } else {
            rc = exit_code(rv, cmd, errmsg);
        }
        kv_client_value_clear(&cur);
    } else if (strcmp(cmd, "scan") == 0) {
        struct kv_scan_result res;
        const char *end = NULL;
        int rv;
        if (argc - optind < 1 || argc - optind > 2) {
            fprintf(stderr, "raftfs kv scan: expected START [END] (see --help)\n");
            goto out;
        }
        if (argc - optind == 2) {
            end = argv[optind + 1];
        }
        rv = kv_client_scan(c, argv[optind], strlen(argv[optind]), end, end ? strlen(end) : 0,
                            (unsigned)limit, &res, errmsg);
        rc = exit_code(rv, cmd, errmsg);
        for (size_t i = 0; rv == 0 && i < res.n; i++) {
            fwrite(res.pairs[i].key.base, 1, res.pairs[i].key.len, stdout);
            putchar('\t');
            fwrite(res.pairs[i].value.base, 1, res.pairs[i].value.len, stdout);
            putchar('\n');
        }
        if (rv == 0 && res.more) {
            fprintf(stderr, "(more keys follow; raise --limit or scan from the last key)\n");
        }
        kv_scan_result_clear(&res);
    } else if (strcmp(cmd, "status") == 0) {
        NEED(0);
        rc = kv_status(c, &o);
    } else {
        fprintf(stderr, "raftfs kv: unknown command '%s' (see --help)\n", cmd);
    }
#undef NEED
out:
    kv_client_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    rfs_log_set_level(RFS_LOG_WARN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "kv") == 0) {
        return cmd_kv(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "meta") == 0) {
        return tools_meta(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "bench") == 0) {
        return tools_bench(argc - 1, argv + 1);
    }
    fprintf(stderr, "raftfs: unknown command '%s' (see raftfs --help)\n", argv[1]);
    return 2;
}
