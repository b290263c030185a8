/* raftfs meta: administer the meta group (join, leave, move, query, alloc). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "meta/client.h"
#include "meta/meta.h"
#include "tools/tools.h"

static void meta_usage(FILE *f)
{
    fprintf(f,
            "usage: raftfs meta --meta M0,M1,M2 [--timeout MS] COMMAND ...\n"
            "\n"
            "  join GID A0,A1,A2   add shard group GID with its servers' addresses; buckets\n"
            "                      are rebalanced (fewest moves)\n"
            "  addrs GID LIST      give joined group GID a new address list, same buckets:\n"
            "                      after replacing a server (raftfs group --help); server\n"
            "                      ids are positions, '-' keeps a removed server's place:\n"
            "                      A0,A1,-,A3. Clients pick it up with the new version\n"
            "  leave GID           remove group GID; its buckets go to the other groups\n"
            "  move B[-B2] GID     put bucket B (or buckets B to B2) on group GID\n"
            "  query [VERSION]     print the latest configuration (or VERSION) as JSON:\n"
            "                      {\"version\":V,\"buckets\":[g,...],\"groups\":{\"1\":[...]}}\n"
            "  alloc N             allocate N fresh ids; prints the first and the last\n"
            "\n"
            "join, addrs, leave and move print the new configuration as query does.\n"
            "\n"
            "  --meta LIST    the meta group's servers, host:port separated by commas\n"
            "                 (RAFTFS_META in the environment stands in for it)\n"
            "  --timeout MS   give up after MS milliseconds (default 5000)\n"
            "\n"
            "Exit status: 0 success, 1 refused (unknown group or version, bucket out of\n"
            "range, group already joined), 2 an error (bad usage, meta group unreachable).\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end != '\0' || errno != 0) {
        return -1;
    }
    *out = v;
    return 0;
}

static void config_print(const struct meta_config *cfg)
{
    printf("{\"version\":%llu,\"buckets\":[", (unsigned long long)cfg->version);
    for (uint32_t b = 0; b < cfg->nbuckets; b++) {
        printf("%s%llu", b ? "," : "", (unsigned long long)cfg->buckets[b]);
    }
    printf("],\"groups\":{");
    for (unsigned i = 0; i < cfg->n_groups; i++) {
        const struct meta_group_info *g = &cfg->groups[i];
        printf("%s\"%llu\":[", i ? "," : "", (unsigned long long)g->gid);
        for (unsigned j = 0; j < g->n_addrs; j++) {
            /* Addresses are host:port; escape the two characters JSON cannot hold as is. */
            printf("%s\"", j ? "," : "");
            for (const char *p = g->addrs[j]; *p; p++) {
                if (*p == '"' || *p == '\\') {
                    putchar('\\');
                }
                if ((unsigned char)*p < 0x20) {
                    printf("\\u%04x", (unsigned char)*p);
                } else {
                    putchar(*p);
                }
            }
            printf("\"");
        }
        printf("]");
    }
    printf("}}\n");
}

static int meta_exit(int rv, const char *what, const char *errmsg)
{
    if (rv == 0) {
        return 0;
    }
    /* The server's refusals already name the operation. */
    if (errmsg[0] != '\0') {
        fprintf(stderr, "raftfs meta: %s\n", errmsg);
    } else {
        fprintf(stderr, "raftfs meta %s: %s\n", what, rfs_strerror(rv));
    }
    return rv == RFS_EINVAL || rv == RFS_ENOTFOUND ? 1 : 2;
}

/* Split "A0,A1" in place into g->addrs (rfs_malloc'd array of pointers into list). */
static int split_addrs(char *list, struct meta_group_info *g)
{
    char *save = NULL;
    size_t n = 1;
    for (const char *p = list; *p; p++) {
        n += *p == ',';
    }
    g->addrs = rfs_calloc(n, sizeof *g->addrs);
    g->n_addrs = 0;
    if (g->addrs == NULL) {
        return -1;
    }
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        g->addrs[g->n_addrs++] = tok;
    }
    return g->n_addrs == 0 ? -1 : 0;
}

static int run_cmd(struct kv_client *c, const char *cmd, int argc, char **argv)
{
    char errmsg[RFS_ERRMSG_SIZE] = "";
    struct meta_config cfg = {0};
    uint64_t gid, v;
    int rv;

    if (strcmp(cmd, "join") == 0) {
        struct meta_group_info g = {0};
        if (argc != 2 || parse_u64(argv[0], &gid) != 0 || gid == 0) {
            fprintf(stderr, "raftfs meta join: expected GID (a number from 1) and "
                            "A0,A1,A2 (see --help)\n");
            return 2;
        }
        g.gid = gid;
        if (split_addrs(argv[1], &g) != 0) {
            rfs_free(g.addrs);
            fprintf(stderr, "raftfs meta join: no address in '%s'\n", argv[1]);
            return 2;
        }
        rv = meta_client_join(c, &g, 1, &cfg, errmsg);
        rfs_free(g.addrs);
    } else if (strcmp(cmd, "addrs") == 0) {
        struct meta_group_info g = {0};
        if (argc != 2 || parse_u64(argv[0], &gid) != 0 || gid == 0) {
            fprintf(stderr, "raftfs meta addrs: expected GID and A0,A1,-,A3 (see --help)\n");
            return 2;
        }
        g.gid = gid;
        if (split_addrs(argv[1], &g) != 0) {
            rfs_free(g.addrs);
            fprintf(stderr, "raftfs meta addrs: no address in '%s'\n", argv[1]);
            return 2;
        }
        rv = meta_client_set_addrs(c, &g, &cfg, errmsg);
        rfs_free(g.addrs);
    } else if (strcmp(cmd, "leave") == 0) {
        if (argc != 1 || parse_u64(argv[0], &gid) != 0) {
            fprintf(stderr, "raftfs meta leave: expected GID (see --help)\n");
            return 2;
        }
        rv = meta_client_leave(c, gid, &cfg, errmsg);
    } else if (strcmp(cmd, "move") == 0) {
        uint64_t first, last;
        char *dash = argc == 2 ? strchr(argv[0], '-') : NULL;
        if (dash != NULL) {
            *dash = '\0';
        }
        if (argc != 2 || parse_u64(argv[0], &first) != 0 ||
            (dash != NULL ? parse_u64(dash + 1, &last) : (last = first, 0)) != 0 ||
            parse_u64(argv[1], &gid) != 0 || first > UINT32_MAX || last > UINT32_MAX) {
            fprintf(stderr, "raftfs meta move: expected B or B-B2, then GID (see --help)\n");
            return 2;
        }
        rv = meta_client_move(c, (uint32_t)first, (uint32_t)last, gid, &cfg, errmsg);
    } else if (strcmp(cmd, "query") == 0) {
        if (argc > 1 || (argc == 1 && parse_u64(argv[0], &v) != 0)) {
            fprintf(stderr, "raftfs meta query: expected at most a VERSION number\n");
            return 2;
        }
        rv = meta_client_query(c, argc == 0, argc == 1 ? v : 0, &cfg, errmsg);
    } else if (strcmp(cmd, "alloc") == 0) {
        uint64_t first = 0;
        if (argc != 1 || parse_u64(argv[0], &v) != 0 || v == 0) {
            fprintf(stderr, "raftfs meta alloc: expected a count N > 0\n");
            return 2;
        }
        rv = meta_client_alloc_ids(c, v, &first, errmsg);
        if (rv == 0) {
            printf("%llu %llu\n", (unsigned long long)first, (unsigned long long)(first + v - 1));
        }
        return meta_exit(rv, cmd, errmsg);
    } else {
        fprintf(stderr, "raftfs meta: unknown command '%s' (see --help)\n", cmd);
        return 2;
    }
    if (rv == 0) {
        config_print(&cfg);
    }
    meta_config_clear(&cfg);
    return meta_exit(rv, cmd, errmsg);
}

int tools_meta(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"meta", required_argument, NULL, 'm'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct kv_client_options o;
    struct kv_client *c = NULL;
    char *meta = getenv("RAFTFS_META");
    char metabuf[2048];
    char errmsg[RFS_ERRMSG_SIZE] = "";
    unsigned long timeout = 5000;
    int ch, rc;

    memset(&o, 0, sizeof o);
    optind = 1;
    while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (ch) {
            case 'm':
                meta = optarg;
                break;
            case 't':
                timeout = strtoul(optarg, NULL, 10);
                if (timeout == 0) {
                    fprintf(stderr, "raftfs meta: --timeout needs milliseconds > 0\n");
                    return 2;
                }
                break;
            case 'h':
                meta_usage(stdout);
                return 0;
            default:
                meta_usage(stderr);
                return 2;
        }
    }
    if (optind >= argc) {
        meta_usage(stderr);
        return 2;
    }
    if (meta == NULL) {
        fprintf(stderr, "raftfs meta: --meta M0,M1,M2 is required (or set RAFTFS_META)\n");
        return 2;
    }
    snprintf(metabuf, sizeof metabuf, "%s", meta);
    if (kv_client_parse_servers(metabuf, &o, errmsg) != 0) {
        fprintf(stderr, "raftfs meta: --meta: %s\n", errmsg);
        return 2;
    }
    o.group_id = META_GROUP_ID;
    o.timeout_ms = (unsigned)timeout;
    o.attempt_ms = timeout < 1000 ? (unsigned)timeout : 1000;
    if (kv_client_new(&c, &o, errmsg) != 0) {
        fprintf(stderr, "raftfs meta: %s\n", errmsg);
        return 2;
    }
    rc = run_cmd(c, argv[optind], argc - optind - 1, argv + optind + 1);
    kv_client_free(c);
    return rc;
}
