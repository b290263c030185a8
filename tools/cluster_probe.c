/* How the servers of a `raftfs cluster` are doing: each server's status call (no leader
 * needed), and whether every bucket answers a read at the group that serves it. */
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "kv/client.h"
#include "kv/kv.h"
#include "meta/meta.h"
#include "raft/raft.h"
#include "tools/cluster.h"

#define PROBE_TIMEOUT_MS 1000
#define PROBE_ATTEMPT_MS 500

void cluster_probe_group(const struct cluster_conf *c, unsigned gid, struct kv_server_status *st,
                         struct cluster_group_health *h)
{
    struct kv_client_options o;
    struct kv_client *kc = NULL;
    char list[CLUSTER_MAX_REPLICAS * 64];
    char errmsg[RFS_ERRMSG_SIZE] = "";

    memset(h, 0, sizeof *h);
    h->down = 0;
    memset(&o, 0, sizeof o);
    cluster_conf_group_addrs(c, gid, list, sizeof list);
    if (kv_client_parse_servers(list, &o, errmsg) != 0) {
        return;
    }
    o.group_id = gid == 0 ? META_GROUP_ID : gid;
    o.timeout_ms = PROBE_TIMEOUT_MS;
    o.attempt_ms = PROBE_ATTEMPT_MS;
    if (kv_client_new(&kc, &o, errmsg) != 0) {
        return;
    }
    h->down = -1;
    for (unsigned i = 0; i < o.n_servers; i++) {
        struct kv_server_status one;
        struct kv_server_status *s = st != NULL ? &st[i] : &one;
        memset(s, 0, sizeof *s);
        if (kv_client_status(kc, i, s) == 0) {
            s->reachable = true;
            h->up++;
            h->leader |= s->role == RAFT_LEADER;
        } else {
            s->reachable = false;
            if (h->down < 0) {
                h->down = (int)i;
            }
        }
    }
    kv_client_free(kc);
}

/* A key whose bucket is b: "{cluster-probe-N}" for the first N that lands there. */
static bool probe_key(uint32_t b, uint32_t nbuckets, char *key, size_t cap)
{
    for (unsigned n = 0; n < 1000000; n++) {
        snprintf(key, cap, "{cluster-probe-%u}", n);
        if (kv_bucket_of(key, strlen(key), nbuckets) == b) {
            return true;
        }
    }
    return false;
}

int cluster_probe_buckets(const struct cluster_conf *c, unsigned attempt_ms, long long deadline_ms,
                          unsigned *serving, char *errmsg)
{
    struct kv_client *kc = NULL;
    char meta[CLUSTER_MAX_REPLICAS * 64];
    int rv;

    *serving = 0;
    cluster_conf_group_addrs(c, 0, meta, sizeof meta);
    rv = kv_client_connect(&kc, meta, true, 0, attempt_ms, attempt_ms < 500 ? attempt_ms : 500,
                           errmsg);
    if (rv != 0) {
        return rv;
    }
    for (uint32_t b = 0; b < c->buckets && cluster_now_ms() < deadline_ms; b++) {
        struct kv_client_value v;
        char key[64];
        if (!probe_key(b, c->buckets, key, sizeof key)) {
            continue;
        }
        memset(&v, 0, sizeof v);
        if (kv_client_get(kc, key, strlen(key), &v, errmsg) == 0) {
            (*serving)++;
        }
        kv_client_value_clear(&v);
    }
    kv_client_free(kc);
    return 0;
}
