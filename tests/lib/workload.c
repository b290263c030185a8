/* See workload.h. */
#include "tests/lib/workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "kv/client.h"

static void *worker_main(void *data)
{
    struct workload_worker *wk = data;
    struct workload *w = wk->w;
    struct kv_client *c = NULL;
    char errmsg[RFS_ERRMSG_SIZE];
    unsigned seed = wk->index * 7919u + 1;
    unsigned long n = 0;

    if (kv_client_connect(&c, w->group, w->routed, 0, w->timeout_ms, 300, errmsg) != 0) {
        snprintf(w->last_error, sizeof w->last_error, "%s", errmsg);
        return NULL;
    }
    while (!atomic_load(&w->stop)) {
        char key[32];
        char val[48];
        struct lin_op op;
        unsigned pick = (unsigned)rand_r(&seed) % 10;
        int rv;
        memset(&op, 0, sizeof op);
        snprintf(key, sizeof key, "key-%u", (unsigned)rand_r(&seed) % w->keys);
        op.client = (int)wk->index;
        op.key = key;
        op.key_len = strlen(key);
        op.invoke_ns = lin_now_ns();
        if (pick < 4) {
            struct kv_client_value v;
            op.kind = LIN_GET;
            rv = kv_client_get(c, key, strlen(key), &v, errmsg);
            op.return_ns = lin_now_ns();
            if (rv != 0) {
                atomic_fetch_add(&w->failed, 1);
                continue; /* a failed read constrains nothing */
            }
            op.out = v.found ? LIN_OUT_VALUE : LIN_OUT_ABSENT;
            op.value = v.value.base;
            op.value_len = v.value.len;
            lin_history_add(w->history, &op);
            kv_client_value_clear(&v);
        } else {
            op.kind = pick < 7 ? LIN_PUT : LIN_APPEND;
            snprintf(val, sizeof val, "%s%u.%lu;", pick < 7 ? "p" : "a", wk->index, ++n);
            op.arg = val;
            op.arg_len = strlen(val);
            rv = op.kind == LIN_PUT
                     ? kv_client_put(c, key, strlen(key), val, strlen(val), NULL, errmsg)
                     : kv_client_append(c, key, strlen(key), val, strlen(val), NULL, errmsg);
            op.return_ns = lin_now_ns();
            op.out = rv == 0 ? LIN_OUT_OK : LIN_OUT_UNKNOWN;
            lin_history_add(w->history, &op);
        }
        if (rv == 0) {
            atomic_fetch_add(&w->ok, 1);
        } else {
            atomic_fetch_add(&w->failed, 1);
            snprintf(w->last_error, sizeof w->last_error, "%s", errmsg);
        }
    }
    kv_client_free(c);
    return NULL;
}

int workload_start(struct workload *w, const char *group, unsigned clients, unsigned keys,
                   unsigned timeout_ms)
{
    return workload_start_on(w, group, false, clients, keys, timeout_ms);
}

int workload_start_on(struct workload *w, const char *servers, bool routed, unsigned clients,
                      unsigned keys, unsigned timeout_ms)
{
    const char *group = servers;
    memset(w, 0, sizeof *w);
    w->routed = routed;
    snprintf(w->group, sizeof w->group, "%s", group);
    w->clients = clients < WORKLOAD_MAX_CLIENTS ? clients : WORKLOAD_MAX_CLIENTS;
    w->keys = keys ? keys : 1;
    w->timeout_ms = timeout_ms;
    w->history = lin_history_new();
    if (w->history == NULL) {
        return RFS_ENOMEM;
    }
    for (unsigned i = 0; i < w->clients; i++) {
        w->workers[i].w = w;
        w->workers[i].index = i;
        if (pthread_create(&w->threads[i], NULL, worker_main, &w->workers[i]) != 0) {
            workload_stop(w);
            return RFS_ENOMEM;
        }
        w->started++;
    }
    return 0;
}

void workload_stop(struct workload *w)
{
    atomic_store(&w->stop, true);
    for (unsigned i = 0; i < w->started; i++) {
        pthread_join(w->threads[i], NULL);
    }
    w->started = 0;
}

int workload_check(struct workload *w, char *explain, size_t cap)
{
    enum lin_verdict v = lin_check(w->history, 30.0, explain, cap);
    fprintf(stderr, "history: %zu operations, %lu ok, %lu unknown; linearizability: %s\n",
            lin_history_len(w->history), (unsigned long)atomic_load(&w->ok),
            (unsigned long)atomic_load(&w->failed),
            v == LIN_OK          ? "ok"
            : v == LIN_VIOLATION ? "VIOLATION"
                                 : "unknown (search budget)");
    return v == LIN_VIOLATION ? -1 : 0;
}

void workload_free(struct workload *w)
{
    if (w->started > 0) {
        workload_stop(w);
    }
    lin_history_free(w->history);
    w->history = NULL;
}
