/* A concurrent client workload for multi-process tests: threads issue gets, puts and
 * appends on a few keys through kv/client and record every operation (with its invoke and
 * return time, or an unknown outcome after a timeout) into a linearizability history. */
#ifndef RFS_TESTS_WORKLOAD_H
#define RFS_TESTS_WORKLOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "tests/lib/lin.h"

#define WORKLOAD_MAX_CLIENTS 16

struct workload;

struct workload_worker {
    struct workload *w;
    unsigned index;
};

struct workload {
    char group[512]; /* the group's servers, or the meta group's when routed */
    bool routed;
    unsigned clients;
    unsigned keys;
    unsigned timeout_ms;
    struct lin_history *history;
    atomic_bool stop;
    atomic_ulong ok;     /* operations with a definite outcome */
    atomic_ulong failed; /* operations that gave up (unknown outcome) */
    pthread_t threads[WORKLOAD_MAX_CLIENTS];
    struct workload_worker workers[WORKLOAD_MAX_CLIENTS];
    unsigned started;
    char last_error[256];
};

/* Start `clients` threads against the group ("host:port,..."). Returns 0 or an RFS_E*. */
int workload_start(struct workload *w, const char *group, unsigned clients, unsigned keys,
                   unsigned timeout_ms);
/* workload_start for a sharded cluster: servers is the meta group's list and each client
 * routes every key to the group serving its bucket (routed true). */
int workload_start_on(struct workload *w, const char *servers, bool routed, unsigned clients,
                      unsigned keys, unsigned timeout_ms);
/* Stop the threads (each finishes its current operation) and join them. */
void workload_stop(struct workload *w);
/* Check the recorded history: 0 if linearizable (or undecided within the budget, which is
 * printed), -1 with explain filled on a violation. */
int workload_check(struct workload *w, char *explain, size_t cap);
void workload_free(struct workload *w);

#endif
