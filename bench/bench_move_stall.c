/* bench_move_stall: how long a key's writes stall while its bucket moves between groups.
 *
 * Client threads put to keys of one bucket (they share a {tag}) in a loop through a routed
 * client, recording each put's latency and finish time; the main thread moves that bucket
 * back and forth between two groups through the meta group every --every ms. Prints, per
 * move, the longest put that overlapped it, and overall percentiles for puts during moves
 * and between them. Run by bench/shard_scaling.sh; with no arguments it says so and exits 0
 * (so `make bench` can list it). */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "kv/client.h"
#include "kv/kv.h"
#include "meta/client.h"
#include "meta/meta.h"

#define MAX_SAMPLES (1u << 22)
#define MAX_MOVES   256

struct sample {
    uint64_t start_us, end_us;
};

struct shared {
    struct kv_client *c;
    const char *tag;
    atomic_bool stop;
    atomic_uint n;
    struct sample *samples;
    atomic_ulong errors;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

struct worker {
    struct shared *s;
    unsigned index;
    pthread_t thread;
};

static void *writer(void *data)
{
    struct worker *w = data;
    struct shared *s = w->s;
    unsigned long i = 0;
    while (!atomic_load(&s->stop)) {
        char key[64], val[64], errmsg[RFS_ERRMSG_SIZE];
        uint64_t t0 = now_us();
        int klen = snprintf(key, sizeof key, "{%s}w%u-%lu", s->tag, w->index, i % 16);
        int vlen = snprintf(val, sizeof val, "%lu", i++);
        if (kv_client_put(s->c, key, (size_t)klen, val, (size_t)vlen, NULL, errmsg) != 0) {
            atomic_fetch_add(&s->errors, 1);
            continue;
        }
        unsigned k = atomic_fetch_add(&s->n, 1);
        if (k < MAX_SAMPLES) {
            s->samples[k].start_us = t0;
            s->samples[k].end_us = now_us();
        }
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void percentiles(const char *what, uint64_t *v, size_t n)
{
    if (n == 0) {
        printf("%-16s no puts\n", what);
        return;
    }
    qsort(v, n, sizeof *v, cmp_u64);
    printf("%-16s %8zu puts  p50 %7.2f ms  p99 %7.2f ms  max %8.2f ms\n", what, n,
           (double)v[n / 2] / 1000, (double)v[(size_t)((double)n * 0.99)] / 1000,
           (double)v[n - 1] / 1000);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"meta", required_argument, NULL, 'm'},
        {"groups", required_argument, NULL, 'g'},
        {"moves", required_argument, NULL, 'n'},
        {"every", required_argument, NULL, 'e'},
        {"clients", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *meta = NULL, errmsg[RFS_ERRMSG_SIZE];
    unsigned moves = 10, every = 1000, clients = 4;
    uint64_t g1 = 1, g2 = 2;
    struct shared s;
    struct worker workers[64];
    struct kv_client *mc = NULL;
    struct meta_config cfg;
    uint64_t move_start[MAX_MOVES], move_end[MAX_MOVES];
    uint32_t bucket;
    int opt;

    memset(&s, 0, sizeof s);
    s.tag = "stall";
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
            case 'm':
                meta = optarg;
                break;
            case 'g':
                if (sscanf(optarg, "%lu,%lu", (unsigned long *)&g1, (unsigned long *)&g2) != 2) {
                    fprintf(stderr, "--groups A,B\n");
                    return 2;
                }
                break;
            case 'n':
                moves = (unsigned)strtoul(optarg, NULL, 10);
                break;
            case 'e':
                every = (unsigned)strtoul(optarg, NULL, 10);
                break;
            case 'c':
                clients = (unsigned)strtoul(optarg, NULL, 10);
                break;
            default:
                printf("usage: bench_move_stall --meta M0,M1,M2 [--groups 1,2] [--moves N] "
                       "[--every MS] [--clients C]\n");
                return opt == 'h' ? 0 : 2;
        }
    }
    if (meta == NULL) {
        printf("bench_move_stall: needs a running sharded cluster: run bench/shard_scaling.sh\n");
        return 0;
    }
    if (moves > MAX_MOVES || clients == 0 || clients > 64) {
        fprintf(stderr, "at most %d moves and 64 clients\n", MAX_MOVES);
        return 2;
    }
    rfs_log_set_level(RFS_LOG_ERROR);
    if (kv_client_connect(&mc, meta, false, META_GROUP_ID, 20000, 0, errmsg) != 0 ||
        kv_client_connect(&s.c, meta, true, 0, 20000, 0, errmsg) != 0) {
        fprintf(stderr, "bench_move_stall: %s\n", errmsg);
        return 1;
    }
    if (meta_client_query(mc, true, 0, &cfg, errmsg) != 0) {
        fprintf(stderr, "bench_move_stall: %s\n", errmsg);
        return 1;
    }
    bucket = kv_bucket_of(s.tag, strlen(s.tag), cfg.nbuckets);
    meta_config_clear(&cfg);
    s.samples = rfs_calloc(MAX_SAMPLES, sizeof *s.samples);
    if (s.samples == NULL) {
        return 1;
    }
    for (unsigned i = 0; i < clients; i++) {
        workers[i].s = &s;
        workers[i].index = i;
        pthread_create(&workers[i].thread, NULL, writer, &workers[i]);
    }
    sleep_ms(every);
    printf("bucket %u moves between groups %llu and %llu, %u times, every %u ms, %u writers\n",
           bucket, (unsigned long long)g1, (unsigned long long)g2, moves, every, clients);
    for (unsigned m = 0; m < moves; m++) {
        uint64_t to = m % 2 == 0 ? g2 : g1;
        move_start[m] = now_us();
        if (meta_client_move(mc, bucket, bucket, to, NULL, errmsg) != 0) {
            fprintf(stderr, "bench_move_stall: move: %s\n", errmsg);
            moves = m;
            break;
        }
        sleep_ms(every);
        move_end[m] = now_us();
    }
    atomic_store(&s.stop, true);
    for (unsigned i = 0; i < clients; i++) {
        pthread_join(workers[i].thread, NULL);
    }
    {
        unsigned n = atomic_load(&s.n) < MAX_SAMPLES ? atomic_load(&s.n) : MAX_SAMPLES;
        uint64_t *during = rfs_calloc(n + 1, sizeof *during);
        uint64_t *quiet = rfs_calloc(n + 1, sizeof *quiet);
        size_t nd = 0, nq = 0;
        for (unsigned m = 0; m < moves; m++) {
            uint64_t worst = 0;
            for (unsigned k = 0; k < n; k++) {
                if (s.samples[k].end_us >= move_start[m] && s.samples[k].start_us <= move_end[m] &&
                    s.samples[k].end_us - s.samples[k].start_us > worst) {
                    worst = s.samples[k].end_us - s.samples[k].start_us;
                }
            }
            printf("move %2u -> group %llu: longest put %.1f ms\n", m + 1,
                   (unsigned long long)(m % 2 == 0 ? g2 : g1), (double)worst / 1000);
        }
        /* A put is "during a move" if it overlaps the first 300 ms after the move request. */
        for (unsigned k = 0; k < n; k++) {
            bool in = false;
            for (unsigned m = 0; m < moves && !in; m++) {
                in = s.samples[k].end_us >= move_start[m] &&
                     s.samples[k].start_us <= move_start[m] + 300000;
            }
            (in ? during : quiet)[in ? nd++ : nq++] = s.samples[k].end_us - s.samples[k].start_us;
        }
        percentiles("during a move", during, nd);
        percentiles("between moves", quiet, nq);
        printf("failed puts: %lu\n", (unsigned long)atomic_load(&s.errors));
        rfs_free(during);
        rfs_free(quiet);
    }
    rfs_free(s.samples);
    kv_client_free(s.c);
    kv_client_free(mc);
    return 0;
}
