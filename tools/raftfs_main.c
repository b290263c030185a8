/* raftfs: the command-line tool. Subcommands: kv (talk to a shard group, or to the cluster
 * through the meta group), meta, bench, cluster (a local cluster: tools/cluster_cmd.c). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "kv/client.h"
#include "kv/kv.h"
#include "meta/client.h"
#include "meta/meta.h"
#include "tools/tools.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: raftfs COMMAND [options]\n"
               "\n"
               "commands:\n"
               "  kv      read and write keys (raftfs kv --help)\n"
               "  meta    join, leave, move, query the meta group (raftfs meta --help)\n"
               "  group   a group's members: add, promote, remove servers (raftfs group --help)\n"
               "  bench   measure throughput and latency of a shard group (raftfs bench --help)\n"
               "  cluster up, status, down: a whole cluster on this machine, mounted\n"
               "          (raftfs cluster --help)\n"
               "\n"
               "Exit status: 0 success, 1 a negative answer (key not found, condition failed),\n"
               "2 an error (bad usage, cluster unreachable).\n");
}

static void kv_usage(FILE *f)
{
    fprintf(f, "usage: raftfs kv --meta M0,M1,M2 [--timeout MS] COMMAND ...\n"
               "       raftfs kv --group A0,A1,A2 [--timeout MS] COMMAND ...\n"
               "\n"
               "  get KEY                 print the value (missing key: 'not found', exit 1)\n"
               "  get -v KEY              print the version, a tab, then the value\n"
               "  put KEY VALUE           store VALUE ('-' reads it from stdin)\n"
               "  append KEY VALUE        append VALUE to the current value\n"
               "  del KEY                 delete (missing key: exit 1)\n"
               "  cas KEY OLD NEW         store NEW if the value is OLD (else exit 1)\n"
               "  cas --absent KEY NEW    store NEW if the key does not exist\n"
               "  txn                     run the transaction read from stdin, one command a\n"
               "                          line: 'check KEY VERSION' (commit only if KEY is\n"
               "                          still at VERSION, as get -v prints it; 0: absent),\n"
               "                          'put KEY VALUE' (VALUE: the rest of the line),\n"
               "                          'del KEY'; '#' comments. Keys may be on any groups.\n"
               "                          Prints 'committed', or 'conflict on KEY' (exit 1)\n"
               "  scan [--limit N] START [END]  keys in [START, END), one 'key<TAB>value' a\n"
               "                          line (sharded: START needs a {tag}: one bucket)\n"
               "  locate [--buckets N] KEY  print 'bucket B group G (configuration V)' and\n"
               "                          the group's servers (--meta); with --group or\n"
               "                          neither, only the bucket, of N (default 64)\n"
               "  status                  each server of --group: reachable, role, term,\n"
               "                          commit, applied\n"
               "\n"
               "  --meta LIST    the meta group's servers, host:port separated by commas: each\n"
               "                 key goes to the group the latest configuration gives its\n"
               "                 bucket (RAFTFS_META in the environment stands in for it)\n"
               "  --group LIST   one group's servers: every key goes to that group\n"
               "                 (RAFTFS_GROUP stands in for it; the options win over the\n"
               "                 environment, and RAFTFS_META over RAFTFS_GROUP)\n"
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
    unsigned holes = 0;
    for (unsigned i = 0; i < o->n_servers; i++) {
        struct kv_server_status st;
        if (strcmp(o->servers[i], KV_CLIENT_NO_SERVER) == 0) {
            printf("%-22s %-9s %s\n", "-", "", "(no server at this position)");
            holes++;
            continue;
        }
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
    if (healthy * 2 <= (int)(o->n_servers - holes)) {
        fprintf(stderr,
                "raftfs kv status: only %d of %u servers reachable: the group has no "
                "majority\n",
                healthy, o->n_servers - holes);
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

/* Print the group's servers by configuration `version` (immutable, so this agrees with the
 * locate that named it). */
static int print_group_addrs(char *meta, uint64_t version, uint64_t gid, unsigned timeout)
{
    struct kv_client_options o;
    struct kv_client *mc = NULL;
    struct meta_config cfg = {0};
    char errmsg[RFS_ERRMSG_SIZE] = "";
    int rv;

    memset(&o, 0, sizeof o);
    rv = kv_client_parse_servers(meta, &o, errmsg);
    if (rv == 0) {
        o.group_id = META_GROUP_ID;
        o.timeout_ms = timeout;
        o.attempt_ms = timeout < 1000 ? timeout : 1000;
        rv = kv_client_new(&mc, &o, errmsg);
    }
    if (rv == 0) {
        rv = meta_client_query(mc, false, version, &cfg, errmsg);
    }
    kv_client_free(mc);
    if (rv != 0) {
        fprintf(stderr, "raftfs kv locate: %s\n", errmsg[0] ? errmsg : rfs_strerror(rv));
        return 2;
    }
    for (unsigned i = 0; i < cfg.n_groups; i++) {
        if (cfg.groups[i].gid != gid) {
            continue;
        }
        printf("group %llu:", (unsigned long long)gid);
        for (unsigned j = 0; j < cfg.groups[i].n_addrs; j++) {
            printf("%s%s", j ? "," : " ", cfg.groups[i].addrs[j]);
        }
        putchar('\n');
    }
    meta_config_clear(&cfg);
    return 0;
}

/* raftfs kv locate KEY: by the meta group if there is one, else only the bucket. */
static int kv_locate(struct kv_client *c, const char *key, char *meta, unsigned long nbuckets,
                     unsigned timeout)
{
    char errmsg[RFS_ERRMSG_SIZE] = "";
    uint32_t bucket;
    uint64_t gid, version;
    int rv;

    if (c == NULL) {
        printf("bucket %u (of %lu buckets; give --meta for its group)\n",
               kv_bucket_of(key, strlen(key), (uint32_t)nbuckets), nbuckets);
        return 0;
    }
    rv = kv_client_locate(c, key, strlen(key), &bucket, &gid, &version, errmsg);
    if (rv != 0) {
        return exit_code(rv, "locate", errmsg);
    }
    printf("bucket %u group %llu (configuration %llu)\n", bucket, (unsigned long long)gid,
           (unsigned long long)version);
    if (gid == 0) {
        fprintf(stderr, "(no group serves this bucket yet: add one with raftfs meta join)\n");
        return 0;
    }
    return print_group_addrs(meta, version, gid, timeout);
}

/* raftfs kv txn: the script on stdin. */
static int kv_txn(struct kv_client *c)
{
    struct rfs_buf text = {NULL, 0};
    struct kv_txn_script script;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    const char *conflict;
    int rv;

    memset(&script, 0, sizeof script);
    if (read_stdin(&text) != 0) {
        fprintf(stderr, "raftfs kv txn: cannot read the script from stdin\n");
        rfs_free(text.base);
        return 2;
    }
    rv = kv_txn_script_parse(&script, text.base, text.len, errmsg);
    rfs_free(text.base);
    if (rv != 0) {
        fprintf(stderr, "raftfs kv txn: %s\n", errmsg);
        kv_txn_script_clear(&script);
        return 2;
    }
    if (script.n_reads + script.n_writes == 0) {
        fprintf(stderr, "raftfs kv txn: the script is empty (see --help)\n");
        kv_txn_script_clear(&script);
        return 2;
    }
    rv = kv_client_txn(c, script.reads, script.n_reads, script.writes, script.n_writes, errmsg);
    kv_txn_script_clear(&script);
    if (rv == 0) {
        printf("committed\n");
        return 0;
    }
    if (rv != RFS_ECONFLICT) {
        return exit_code(rv, "txn", errmsg);
    }
    conflict = strstr(errmsg, "conflict on key ");
    if (conflict != NULL) {
        const char *key = conflict + strlen("conflict on key ");
        size_t len = strcspn(key, " "); /* a script's keys hold no spaces */
        if (len > 0 && key[len - 1] == ':') {
            len--;
        }
        printf("conflict on %.*s\n", (int)len, key);
    } else {
        printf("conflict\n");
        fprintf(stderr, "%s\n", errmsg);
    }
    return 1;
}

static int cmd_kv(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"group", required_argument, NULL, 'g'},   {"meta", required_argument, NULL, 'm'},
        {"timeout", required_argument, NULL, 't'}, {"limit", required_argument, NULL, 'l'},
        {"buckets", required_argument, NULL, 'b'}, {"absent", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    struct kv_client_options o;
    struct kv_client *c = NULL;
    char *group = NULL;
    char *meta = NULL;
    char listbuf[2048];
    char metabuf[2048];
    char errmsg[RFS_ERRMSG_SIZE] = "";
    unsigned long timeout = 5000, limit = 0, nbuckets = KV_DEFAULT_BUCKETS;
    bool absent = false, show_version = false;
    bool routed;
    int ch;
    int rc = 2;
    const char *cmd = NULL;

    memset(&o, 0, sizeof o);
    optind = 1;
    /* Options may come before or after the command (scan ... --limit N, get -v KEY). */
    for (;;) {
        ch = getopt_long(argc, argv, "+hv", longopts, NULL);
        if (ch == -1) {
            if (cmd != NULL || optind >= argc) {
                break;
            }
            cmd = argv[optind++];
            continue;
        }
        switch (ch) {
            case 'g':
                group = optarg;
                break;
            case 'm':
                meta = optarg;
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
            case 'b':
                nbuckets = strtoul(optarg, NULL, 10);
                if (nbuckets == 0 || nbuckets > META_MAX_BUCKETS) {
                    fprintf(stderr, "raftfs kv: --buckets needs 1..%d\n", META_MAX_BUCKETS);
                    return 2;
                }
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
    if (cmd == NULL) {
        kv_usage(stderr);
        return 2;
    }
    if (group != NULL && meta != NULL) {
        fprintf(stderr, "raftfs kv: give --meta or --group, not both\n");
        return 2;
    }
    if (strcmp(cmd, "status") == 0) {
        /* About one group's servers, never routed. */
        meta = NULL;
        if (group == NULL) {
            group = getenv("RAFTFS_GROUP");
        }
        if (group == NULL) {
            fprintf(stderr, "raftfs kv status: --group A0,A1,A2 is required (or set "
                            "RAFTFS_GROUP); raftfs meta query lists each group's servers\n");
            return 2;
        }
    } else if (group == NULL && meta == NULL) {
        meta = getenv("RAFTFS_META");
        if (meta == NULL) {
            group = getenv("RAFTFS_GROUP");
        }
    }
    routed = meta != NULL;
    if (strcmp(cmd, "locate") == 0) {
        if (argc - optind != 1) {
            fprintf(stderr, "raftfs kv locate: expected 1 argument (see --help)\n");
            return 2;
        }
        if (!routed) {
            return kv_locate(NULL, argv[optind], NULL, nbuckets, (unsigned)timeout);
        }
    } else if (group == NULL && meta == NULL) {
        fprintf(stderr, "raftfs kv: --meta M0,M1,M2 or --group A0,A1,A2 is required (or set "
                        "RAFTFS_META or RAFTFS_GROUP)\n");
        return 2;
    }
    snprintf(listbuf, sizeof listbuf, "%s", routed ? meta : group);
    if (routed) {
        snprintf(metabuf, sizeof metabuf, "%s", meta); /* listbuf is cut up by parsing */
        if (kv_client_parse_meta(listbuf, &o, errmsg) != 0) {
            fprintf(stderr, "raftfs kv: --meta: %s\n", errmsg);
            return 2;
        }
    } else if (kv_client_parse_servers(listbuf, &o, errmsg) != 0) {
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
    } else if (strcmp(cmd, "txn") == 0) {
        NEED(0);
        rc = kv_txn(c);
    } else if (strcmp(cmd, "locate") == 0) {
        rc = kv_locate(c, argv[optind], metabuf, nbuckets, (unsigned)timeout);
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
    if (strcmp(argv[1], "group") == 0) {
        return tools_group(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "bench") == 0) {
        return tools_bench(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "cluster") == 0) {
        return tools_cluster(argc - 1, argv + 1);
    }
    fprintf(stderr, "raftfs: unknown command '%s' (see raftfs --help)\n", argv[1]);
    return 2;
}
