/* raftfs-sim: run many randomized seeds of the Raft simulation; stop at the first
 * violated invariant and print the seed to replay it. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: raftfs-sim [--nodes N] [--seeds K] [--first-seed S] [--steps T]\n"
            "                  [--reliable] [--no-membership] [--verbose]\n"
            "\n"
            "Runs K randomized simulations of an N-server Raft cluster (seeds S..S+K-1), each\n"
            "T simulated milliseconds long, with crashes, torn writes, partitions, message loss,\n"
            "duplication and reordering, leadership transfers and membership changes, checking\n"
            "the safety invariants after every step and liveness after healing at the end.\n"
            "Exits 1 on the first violation and prints the seed; replay it with\n"
            "  raftfs-sim --nodes N --seeds 1 --first-seed SEED --steps T --verbose\n"
            "The environment variable RAFTFS_SEED, if set, overrides --first-seed and --seeds.\n"
            "\n"
            "  --nodes N        voters in the cluster, 1..7 (default 3)\n"
            "  --seeds K        number of seeds (default 100)\n"
            "  --first-seed S   first seed (default 1)\n"
            "  --steps T        simulated milliseconds per seed (default 5000)\n"
            "  --reliable       no message loss or duplication in any seed\n"
            "  --no-membership  no membership changes\n"
            "  --verbose        print the core's log lines (use with one seed)\n");
}

static int parse_u64(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return (*s == '\0' || *end != '\0' || errno != 0) ? -1 : 0;
}

int main(int argc, char **argv)
{
    unsigned long long nodes = 3, seeds = 100, first = 1, steps = 5000;
    bool reliable = false, membership = true, verbose = false;
    const char *env = getenv("RAFTFS_SEED");
    static const struct option longopts[] = {
        {"nodes", required_argument, NULL, 'n'},
        {"seeds", required_argument, NULL, 'k'},
        {"first-seed", required_argument, NULL, 's'},
        {"steps", required_argument, NULL, 't'},
        {"reliable", no_argument, NULL, 'r'},
        {"no-membership", no_argument, NULL, 'm'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    unsigned long passed = 0;
    time_t t0 = time(NULL);

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        unsigned long long *dst = NULL;
        switch (c) {
            case 'n':
                dst = &nodes;
                break;
            case 'k':
                dst = &seeds;
                break;
            case 's':
                dst = &first;
                break;
            case 't':
                dst = &steps;
                break;
            case 'r':
                reliable = true;
                break;
            case 'm':
                membership = false;
                break;
            case 'v':
                verbose = true;
                break;
            case 'h':
                usage(stdout);
                return 0;
            default:
                usage(stderr);
                return 2;
        }
        if (dst != NULL && parse_u64(optarg, dst) != 0) {
            fprintf(stderr, "raftfs-sim: --%s needs a whole number, got '%s'\n",
                    longopts[c == 'n'   ? 0
                             : c == 'k' ? 1
                             : c == 's' ? 2
                                        : 3]
                        .name,
                    optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "raftfs-sim: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (nodes < 1 || nodes > 7) {
        fprintf(stderr, "raftfs-sim: --nodes must be 1..7\n");
        return 2;
    }
    if (env != NULL) {
        if (parse_u64(env, &first) != 0) {
            fprintf(stderr, "raftfs-sim: RAFTFS_SEED must be a whole number\n");
            return 2;
        }
        seeds = 1;
    }

    for (unsigned long long seed = first; seed < first + seeds; seed++) {
        struct sim_options o;
        struct sim_random_options ro;
        struct sim *s;
        int rv;
        bool with_spare = membership && seed % 3 == 0;
        sim_options_default(&o, (unsigned)nodes);
        o.n_spare = with_spare ? 1 : 0;
        o.compact_every = 10 + (unsigned)(seed % 60);
        o.max_inflight = 1 + (unsigned)(seed % 16);
        o.snapshot_chunk = 4 + seed % 20;
        o.verbose = verbose;
        memset(&ro, 0, sizeof ro);
        ro.steps = (unsigned)steps;
        ro.membership = with_spare;
        ro.unreliable = !reliable && seed % 2 == 1;
        s = sim_new(&o, seed);
        rv = sim_random_run(s, &ro);
        if (rv != 0) {
            printf("FAILED seed %llu (nodes %llu, steps %llu): %s\n", seed, nodes, steps,
                   sim_violation(s));
            printf("replay: RAFTFS_SEED=%llu raftfs-sim --nodes %llu --steps %llu --verbose\n",
                   seed, nodes, steps);
            printf("%lu passed, 1 failed\n", passed);
            sim_free(s);
            return 1;
        }
        if (verbose || seeds <= 5) {
            printf("seed %llu ok: commit %llu, %lu msgs, %lu snapshots installed (%lu supplied "
                   "for compaction points), %lu reads\n",
                   seed, (unsigned long long)sim_max_commit(s), sim_msgs_sent(s),
                   sim_snapshots_installed(s), sim_snapshots_supplied(s), sim_reads_done(s));
        }
        sim_free(s);
        passed++;
    }
    printf("raftfs-sim: %llu nodes, seeds %llu..%llu, %llu ms each, %lds\n", nodes, first,
           first + seeds - 1, steps, (long)(time(NULL) - t0));
    printf("%lu passed, 0 failed\n", passed);
    return 0;
}
