/* raftfs bench: C client threads against one shard group, or a sharded cluster through the
 * meta group; throughput and latency percentiles. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "kv/client.h"
#include "rpc/rpc.h"
#include "tools/tools.h"

/* --txn: tags (the {tag} of a key) whose buckets are on each of two groups. */
#define BENCH_TAGS 64
struct bench_tags {
    uint64_t gid[2];
    unsigned n[2];
    char tag[2][BENCH_TAGS][16];
};

struct bench_cfg {
    struct kv_client *c;
    unsigned clients;
    unsigned long ops;
    size_t value_size;
    unsigned put_weight;
    unsigned get_weight;
    unsigned keys;
    unsigned txn_groups; /* 0: puts and gets; 1 or 2: transactions of two keys on so many groups */
    struct bench_tags tags;
};

struct bench_thread {
    const struct bench_cfg *cfg;
    unsigned index;
    unsigned long ops;
    uint64_t *lat_us;
    unsigned long done;
    unsigned long errors;
    unsigned long conflicts;
    char last_error[RFS_ERRMSG_SIZE];
    pthread_t thread;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* One transaction writing two keys: both under one tag (one group), or under tags of two
 * groups. */
static int bench_txn(const struct bench_cfg *cfg, unsigned *seed, const char *value, char *errmsg)
{
    const struct bench_tags *t = &cfg->tags;
    char k0[64], k1[64];
    unsigned j = (unsigned)rand_r(seed) % cfg->keys;
    const char *tag0, *tag1;
    struct kv_txn_write w[2];
    if (cfg->txn_groups == 1) {
        unsigned g = (unsigned)rand_r(seed) % (t->n[1] > 0 ? 2 : 1);
        tag0 = tag1 = t->tag[g][(unsigned)rand_r(seed) % t->n[g]];
    } else {
        tag0 = t->tag[0][(unsigned)rand_r(seed) % t->n[0]];
        tag1 = t->tag[1][(unsigned)rand_r(seed) % t->n[1]];
    }
    memset(w, 0, sizeof w);
    w[0].klen = (size_t)snprintf(k0, sizeof k0, "{%s}a%u", tag0, j);
    w[0].key = k0;
    w[1].klen = (size_t)snprintf(k1, sizeof k1, "{%s}b%u", tag1, j);
    w[1].key = k1;
    w[0].value = w[1].value = value;
    w[0].vlen = w[1].vlen = cfg->value_size;
    return kv_client_txn(cfg->c, NULL, 0, w, 2, errmsg);
}

static void *bench_main(void *data)
{
    struct bench_thread *t = data;
    const struct bench_cfg *cfg = t->cfg;
    char *value = rfs_malloc(cfg->value_size ? cfg->value_size : 1);
    unsigned seed = t->index * 7919 + 17;
    memset(value, 'v', cfg->value_size);
    for (unsigned long i = 0; i < t->ops; i++) {
        char key[64];
        unsigned total = cfg->put_weight + cfg->get_weight;
        bool is_put = (unsigned)rand_r(&seed) % total < cfg->put_weight;
        char errmsg[RFS_ERRMSG_SIZE];
        uint64_t t0 = now_us();
        int rv;
        int klen = snprintf(key, sizeof key, "bench-%u", (unsigned)rand_r(&seed) % cfg->keys);
        if (cfg->txn_groups > 0) {
            rv = bench_txn(cfg, &seed, value, errmsg);
            if (rv == RFS_ECONFLICT) {
                t->conflicts++;
                continue;
            }
        } else if (is_put) {
            rv = kv_client_put(cfg->c, key, (size_t)klen, value, cfg->value_size, NULL, errmsg);
        } else {
            struct kv_client_value v;
            rv = kv_client_get(cfg->c, key, (size_t)klen, &v, errmsg);
            if (rv == 0) {
                kv_client_value_clear(&v);
            }
        }
        if (rv != 0) {
            t->errors++;
            snprintf(t->last_error, sizeof t->last_error, "%s", errmsg);
            continue;
        }
        t->lat_us[t->done++] = now_us() - t0;
    }
    rfs_free(value);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Find tags for --txn: up to BENCH_TAGS whose buckets are on each of two groups (the first
 * two met), by the latest configuration. Returns 0, or 2 after printing why. */
static int bench_find_tags(struct bench_cfg *cfg)
{
    struct bench_tags *t = &cfg->tags;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    for (unsigned i = 0; i < 4096 && (t->n[0] < BENCH_TAGS || t->n[1] < BENCH_TAGS); i++) {
        char tag[16];
        uint32_t bucket;
        uint64_t gid, version;
        int g;
        snprintf(tag, sizeof tag, "t%u", i);
        if (kv_client_locate(cfg->c, tag, strlen(tag), &bucket, &gid, &version, errmsg) != 0) {
            fprintf(stderr, "raftfs bench: --txn: %s\n", errmsg);
            return 2;
        }
        if (gid == 0) {
            continue;
        }
        g = t->gid[0] == 0 || t->gid[0] == gid ? 0 : t->gid[1] == 0 || t->gid[1] == gid ? 1 : -1;
        if (g < 0 || t->n[g] == BENCH_TAGS) {
            continue;
        }
        t->gid[g] = gid;
        snprintf(t->tag[g][t->n[g]++], sizeof t->tag[g][0], "%s", tag);
    }
    if (t->n[0] == 0 || (cfg->txn_groups == 2 && t->n[1] == 0)) {
        fprintf(stderr,
                "raftfs bench: --txn %u needs buckets on %u group(s) (raftfs meta "
                "query)\n",
                cfg->txn_groups, cfg->txn_groups);
        return 2;
    }
    if (cfg->txn_groups == 1) {
        printf("transactions of 2 keys under one tag each, on groups %llu and %llu\n",
               (unsigned long long)t->gid[0], (unsigned long long)t->gid[1]);
    } else {
        printf("transactions of 2 keys, one on group %llu and one on group %llu\n",
               (unsigned long long)t->gid[0], (unsigned long long)t->gid[1]);
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: raftfs bench --group A0,A1,A2 | --meta M0,M1,M2 [--clients C] [--ops N]\n"
               "                    [--value-size B] [--mix PUT:GET] [--keys K] [--txn 1|2]\n"
               "\n"
               "Runs C client threads (default 16) issuing N operations in all (default 20000)\n"
               "against one shard group (--group), or against every group of a sharded cluster,\n"
               "each key sent to its bucket's group (--meta; RAFTFS_META and RAFTFS_GROUP stand\n"
               "in for them): puts of B-byte values (default 128) and linearizable\n"
               "gets in the ratio PUT:GET (default 1:0, 'put' and 'get' also accepted), over K\n"
               "keys (default 1000). Prints throughput and p50/p99/p999/max latency.\n"
               "--txn G (--meta only) replaces the puts and gets by transactions that write\n"
               "two B-byte values: both keys on one group ({tag}s of one bucket: G = 1), or\n"
               "one key on each of two groups (two-phase commit: G = 2). Conflicts (two\n"
               "transactions on the same key at once) are counted, not timed.\n");
}

int tools_bench(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"group", required_argument, NULL, 'g'},
        {"meta", required_argument, NULL, 'M'},
        {"clients", required_argument, NULL, 'c'},
        {"ops", required_argument, NULL, 'n'},
        {"value-size", required_argument, NULL, 'v'},
        {"mix", required_argument, NULL, 'm'},
        {"keys", required_argument, NULL, 'k'},
        {"txn", required_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct bench_cfg cfg = {.clients = 16,
                            .ops = 20000,
                            .value_size = 128,
                            .put_weight = 1,
                            .get_weight = 0,
                            .keys = 1000};
    struct kv_client_options o;
    char *group = NULL;
    char *meta = NULL;
    char groupbuf[2048];
    char errmsg[RFS_ERRMSG_SIZE] = "";
    struct bench_thread *threads;
    uint64_t *all;
    unsigned long n_all = 0, errors = 0, conflicts = 0;
    uint64_t t0, t1;
    int ch;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
            case 'g':
                group = optarg;
                break;
            case 'M':
                meta = optarg;
                break;
            case 'c':
                cfg.clients = (unsigned)strtoul(optarg, NULL, 10);
                break;
            case 'n':
                cfg.ops = strtoul(optarg, NULL, 10);
                break;
            case 'v':
                cfg.value_size = strtoul(optarg, NULL, 10);
                break;
            case 'k':
                cfg.keys = (unsigned)strtoul(optarg, NULL, 10);
                break;
            case 'x':
                cfg.txn_groups = (unsigned)strtoul(optarg, NULL, 10);
                if (cfg.txn_groups != 1 && cfg.txn_groups != 2) {
                    fprintf(stderr, "raftfs bench: --txn takes 1 or 2 (groups per transaction)\n");
                    return 2;
                }
                break;
            case 'm':
                if (strcmp(optarg, "put") == 0) {
                    cfg.put_weight = 1, cfg.get_weight = 0;
                } else if (strcmp(optarg, "get") == 0) {
                    cfg.put_weight = 0, cfg.get_weight = 1;
                } else if (sscanf(optarg, "%u:%u", &cfg.put_weight, &cfg.get_weight) != 2 ||
                           cfg.put_weight + cfg.get_weight == 0) {
                    fprintf(stderr, "raftfs bench: --mix takes PUT:GET weights, e.g. 1:1\n");
                    return 2;
                }
                break;
            case 'h':
                usage(stdout);
                return 0;
            default:
                usage(stderr);
                return 2;
        }
    }
    if (group == NULL && meta == NULL) {
        meta = getenv("RAFTFS_META");
        group = meta == NULL ? getenv("RAFTFS_GROUP") : NULL;
    }
    if ((group == NULL) == (meta == NULL) || cfg.clients == 0 || cfg.ops == 0 || cfg.keys == 0) {
        fprintf(stderr, "raftfs bench: one of --group and --meta is required; --clients, --ops "
                        "and --keys must be positive (see --help)\n");
        return 2;
    }
    memset(&o, 0, sizeof o);
    snprintf(groupbuf, sizeof groupbuf, "%s", meta != NULL ? meta : group);
    if ((meta != NULL ? kv_client_parse_meta(groupbuf, &o, errmsg)
                      : kv_client_parse_servers(groupbuf, &o, errmsg)) != 0 ||
        kv_client_new(&cfg.c, &o, errmsg) != 0) {
        fprintf(stderr, "raftfs bench: %s\n", errmsg);
        return 2;
    }
    if (cfg.txn_groups > 0 && meta == NULL) {
        fprintf(stderr, "raftfs bench: --txn needs --meta\n");
        kv_client_free(cfg.c);
        return 2;
    }
    if (cfg.txn_groups > 0 && bench_find_tags(&cfg) != 0) {
        kv_client_free(cfg.c);
        return 2;
    }
    threads = rfs_calloc(cfg.clients, sizeof *threads);
    all = rfs_malloc(cfg.ops * sizeof *all);
    if (threads == NULL || all == NULL) {
        fprintf(stderr, "raftfs bench: out of memory\n");
        return 2;
    }
    if (cfg.get_weight > 0) {
        /* Make the keys exist so gets return values. */
        char *value = rfs_calloc(1, cfg.value_size + 1);
        for (unsigned k = 0; k < cfg.keys && value; k++) {
            char key[64];
            int klen = snprintf(key, sizeof key, "bench-%u", k);
            (void)kv_client_put(cfg.c, key, (size_t)klen, value, cfg.value_size, NULL, errmsg);
        }
        rfs_free(value);
    }
    t0 = now_us();
    for (unsigned i = 0; i < cfg.clients; i++) {
        threads[i].cfg = &cfg;
        threads[i].index = i;
        threads[i].ops = cfg.ops / cfg.clients + (i < cfg.ops % cfg.clients);
        threads[i].lat_us = rfs_malloc((threads[i].ops + 1) * sizeof(uint64_t));
        pthread_create(&threads[i].thread, NULL, bench_main, &threads[i]);
    }
    for (unsigned i = 0; i < cfg.clients; i++) {
        pthread_join(threads[i].thread, NULL);
        memcpy(all + n_all, threads[i].lat_us, threads[i].done * sizeof(uint64_t));
        n_all += threads[i].done;
        errors += threads[i].errors;
        conflicts += threads[i].conflicts;
        if (threads[i].errors > 0) {
            fprintf(stderr, "client %u: %lu errors, last: %s\n", i, threads[i].errors,
                    threads[i].last_error);
        }
        rfs_free(threads[i].lat_us);
    }
    t1 = now_us();
    qsort(all, n_all, sizeof *all, cmp_u64);
    if (cfg.txn_groups > 0) {
        printf("txns %lu  conflicts %lu  errors %lu  clients %u  value %zu B  groups per txn %u  "
               "time %.2f s\n",
               n_all, conflicts, errors, cfg.clients, cfg.value_size, cfg.txn_groups,
               (t1 - t0) / 1e6);
    } else {
        printf("ops %lu  errors %lu  clients %u  value %zu B  mix %u:%u  time %.2f s\n", n_all,
               errors, cfg.clients, cfg.value_size, cfg.put_weight, cfg.get_weight,
               (t1 - t0) / 1e6);
    }
    if (n_all > 0) {
        printf("throughput %.0f ops/s  latency ms: p50 %.2f  p99 %.2f  p999 %.2f  max %.2f\n",
               n_all / ((t1 - t0) / 1e6), all[n_all / 2] / 1e3, all[n_all * 99 / 100] / 1e3,
               all[n_all * 999 / 1000] / 1e3, all[n_all - 1] / 1e3);
    }
    rfs_free(all);
    rfs_free(threads);
    kv_client_free(cfg.c);
    return errors > 0 ? 1 : 0;
}
