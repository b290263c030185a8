/* Microbenchmark of the Raft core alone: committed entries per second in a 3-server
 * cluster with an instant in-memory network and no disk. Measures the core's own cost
 * (log, replication bookkeeping, ready/advance), which bounds what a server can do. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft/raft.h"

#define NODES 3

struct queued {
    struct raft_message m;
};

struct bench {
    struct raft *r[NODES + 1];
    struct queued *q;
    size_t n_q;
    size_t cap_q;
    unsigned long applied_on_leader;
};

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_raft_core: %s\n", what);
    exit(1);
}

/* Messages must outlive the sender's advance: copy entries (as a network would). */
static void enqueue(struct bench *b, const struct raft_message *m)
{
    struct raft_message *c;
    if (b->n_q == b->cap_q) {
        b->cap_q = b->cap_q ? b->cap_q * 2 : 256;
        b->q = realloc(b->q, b->cap_q * sizeof *b->q);
        if (b->q == NULL) {
            die("out of memory");
        }
    }
    c = &b->q[b->n_q++].m;
    *c = *m;
    if (m->n_entries > 0) {
        size_t bytes = 0;
        char *p;
        for (unsigned i = 0; i < m->n_entries; i++) {
            bytes += m->entries[i].data.len;
        }
        c->entries = malloc(m->n_entries * sizeof *c->entries + bytes);
        if (c->entries == NULL) {
            die("out of memory");
        }
        p = (char *)(c->entries + m->n_entries);
        for (unsigned i = 0; i < m->n_entries; i++) {
            c->entries[i] = m->entries[i];
            c->entries[i].data.base = p;
            memcpy(p, m->entries[i].data.base, m->entries[i].data.len);
            p += m->entries[i].data.len;
        }
    }
}

static void process(struct bench *b, raft_id leader)
{
    for (raft_id id = 1; id <= NODES; id++) {
        struct raft_ready rd;
        if (!raft_has_ready(b->r[id])) {
            continue;
        }
        raft_ready(b->r[id], &rd);
        for (unsigned i = 0; i < rd.n_msgs; i++) {
            enqueue(b, &rd.msgs[i]);
        }
        if (id == leader) {
            b->applied_on_leader += rd.n_committed;
        }
        raft_advance(b->r[id], &rd);
    }
}

static void deliver(struct bench *b)
{
    size_t n = b->n_q;
    struct queued *q = b->q;
    b->q = NULL;
    b->n_q = b->cap_q = 0;
    for (size_t i = 0; i < n; i++) {
        raft_step(b->r[q[i].m.to], &q[i].m);
        free(q[i].m.entries);
    }
    free(q);
}

static void run(unsigned batch, size_t value_size, double seconds)
{
    struct bench b;
    struct raft_conf conf = {.n_voters = NODES};
    char errmsg[RFS_ERRMSG_SIZE];
    char *value = malloc(value_size ? value_size : 1);
    double t0, t1;
    unsigned long start;
    unsigned long proposed = 0;

    memset(&b, 0, sizeof b);
    memset(value, 'x', value_size);
    for (raft_id id = 1; id <= NODES; id++) {
        conf.voters[id - 1] = id;
    }
    for (raft_id id = 1; id <= NODES; id++) {
        struct raft_config cfg;
        struct raft_restore rs = {.bootstrap = &conf};
        raft_config_default(&cfg, id);
        cfg.max_inflight = 256;
        if (raft_new(&b.r[id], &cfg, &rs, errmsg) != 0) {
            die(errmsg);
        }
    }
    raft_campaign(b.r[1]);
    for (int i = 0; i < 20 && raft_role_get(b.r[1]) != RAFT_LEADER; i++) {
        process(&b, 1);
        deliver(&b);
    }
    if (raft_role_get(b.r[1]) != RAFT_LEADER) {
        die("no leader");
    }
    for (int i = 0; i < 10; i++) {
        process(&b, 1);
        deliver(&b);
    }
    start = b.applied_on_leader;
    t0 = now_sec();
    do {
        for (int k = 0; k < 64; k++) {
            for (unsigned i = 0; i < batch; i++) {
                if (raft_propose(b.r[1], value, value_size, NULL) != 0) {
                    die("propose failed");
                }
            }
            proposed += batch;
            process(&b, 1);
            deliver(&b);
        }
        t1 = now_sec();
    } while (t1 - t0 < seconds);
    for (int i = 0; i < 10; i++) {
        process(&b, 1);
        deliver(&b);
    }
    printf("%8u %10zu %14.0f %12lu\n", batch, value_size,
           (double)(b.applied_on_leader - start) / (t1 - t0), proposed);
    for (raft_id id = 1; id <= NODES; id++) {
        raft_free(b.r[id]);
    }
    free(value);
}

int main(int argc, char **argv)
{
    double seconds = 2;
    size_t value_size = 128;
    static const struct option longopts[] = {
        {"seconds", required_argument, NULL, 's'},
        {"value-size", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
            case 's':
                seconds = atof(optarg);
                break;
            case 'v':
                value_size = (size_t)strtoul(optarg, NULL, 10);
                break;
            case 'h':
                printf("usage: bench_raft_core [--seconds S] [--value-size B]\n"
                       "Committed entries per second of the Raft core in a 3-server cluster\n"
                       "with an instant in-memory network and no disk, for 1, 16 and 256\n"
                       "proposals per ready cycle.\n");
                return 0;
            default:
                fprintf(stderr, "bench_raft_core: see --help\n");
                return 2;
        }
    }
    if (seconds <= 0) {
        fprintf(stderr, "bench_raft_core: --seconds must be positive\n");
        return 2;
    }
    printf("%8s %10s %14s %12s\n", "batch", "value B", "committed/s", "proposed");
    run(1, value_size, seconds);
    run(16, value_size, seconds);
    run(256, value_size, seconds);
    return 0;
}
