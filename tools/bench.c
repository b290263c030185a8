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

struct bench_cfg {
    struct kv_client *c;
    unsigned clients;
    unsigned long ops;
    size_t value_size;
    unsigned put_weight;
    unsigned get_weight;
    unsigned keys;
};

struct bench_thread {
    const struct bench_cfg *cfg;
    unsigned index;
    unsigned long ops;
    uint64_t *lat_us;
    unsigned long done;
    unsigned long errors;
    char last_error[RFS_ERRMSG_SIZE];
    pthread_t thread;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
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
        if (is_put) {
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

static void usage(FILE *f)
{
    fprintf(f, "usage: raftfs bench --group A0,A1,A2 | --meta M0,M1,M2 [--clients C] [--ops N]\n"
               "                    [--value-size B] [--mix PUT:GET] [--keys K]\n"
               "\n"
               "Runs C client threads (default 16) issuing N operations in all (default 20000)\n"
               "against one shard group (--group), or against every group of a sharded cluster,\n"
               "each key sent to its bucket's group (--meta; RAFTFS_META and RAFTFS_GROUP stand\n"
               "in for them): puts of B-byte values (default 128) and linearizable\n"
               "gets in the ratio PUT:GET (default 1:0, 'put' and 'get' also accepted), over K\n"
               "keys (default 1000). Prints throughput and p50/p99/p999/max latency.\n");
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
    unsigned long n_all = 0, errors = 0;
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
        if (threads[i].errors > 0) {
            fprintf(stderr, "client %u: %lu errors, last: %s\n", i, threads[i].errors,
                    threads[i].last_error);
        }
        rfs_free(threads[i].lat_us);
    }
    t1 = now_us();
    qsort(all, n_all, sizeof *all, cmp_u64);
    printf("ops %lu  errors %lu  clients %u  value %zu B  mix %u:%u  time %.2f s\n", n_all, errors,
           cfg.clients, cfg.value_size, cfg.put_weight, cfg.get_weight, (t1 - t0) / 1e6);
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
