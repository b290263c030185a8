/* See sharded.h. */
#include "sharded.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "meta/client.h"
#include "meta/meta.h"

#define LEADER_WAIT_MS 15000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

int sharded_client(struct kv_client **out, const char *list, uint64_t gid, bool routed,
                   unsigned timeout_ms, char *errmsg)
{
    return kv_client_connect(out, list, routed, gid, timeout_ms, 300, errmsg);
}

int sharded_start(struct sharded *s, char *errmsg)
{
    int rv = cluster_start_binary(&s->meta, "raftfs-meta", 1, false, NULL, errmsg);
    if (rv == 0) {
        rv = sharded_client(&s->mc, s->meta.group, META_GROUP_ID, false, 15000, errmsg);
    }
    return rv;
}

int sharded_start_group(struct sharded *s, uint64_t gid, unsigned n, bool proxied,
                        const char *extra, char *errmsg)
{
    char flags[256];
    int w, rv;
    if (gid == 0 || gid > SHARDED_MAX_GROUPS) {
        rfs_errmsg_printf(errmsg, "group %llu: 1 to %d", (unsigned long long)gid,
                          SHARDED_MAX_GROUPS);
        return RFS_EINVAL;
    }
    w = snprintf(flags, sizeof flags, "--gid %llu --meta %.120s%s%.80s", (unsigned long long)gid,
                 s->meta.group, extra ? " " : "", extra ? extra : "");
    if (w < 0 || (size_t)w >= sizeof flags) {
        rfs_errmsg_printf(errmsg, "group %llu: flags too long", (unsigned long long)gid);
        return RFS_EINVAL;
    }
    rv = cluster_start(&s->g[gid - 1], n, proxied, flags, errmsg);
    s->started[gid - 1] = true; /* destroy cleans up whatever started */
    if (rv != 0) {
        return rv;
    }
    if (cluster_wait_leader(&s->g[gid - 1], LEADER_WAIT_MS) < 0) {
        rfs_errmsg_printf(errmsg, "group %llu elected no leader in %d ms", (unsigned long long)gid,
                          LEADER_WAIT_MS);
        return RFS_ETIMEDOUT;
    }
    return 0;
}

int sharded_start_joined(struct sharded *s, unsigned groups, unsigned servers_per_group,
                         bool proxied, const char *extra, unsigned settle_ms, char *errmsg)
{
    int rv = sharded_start(s, errmsg);
    for (uint64_t gid = 1; rv == 0 && gid <= groups; gid++) {
        rv = sharded_start_group(s, gid, servers_per_group, proxied, extra, errmsg);
    }
    for (uint64_t gid = 1; rv == 0 && gid <= groups; gid++) {
        rv = sharded_join(s, gid, errmsg);
    }
    if (rv == 0) {
        rv = sharded_wait_settled(s, settle_ms, errmsg);
    }
    return rv;
}

int sharded_destroy(struct sharded *s)
{
    int bad = 0;
    kv_client_free(s->mc);
    s->mc = NULL;
    for (unsigned i = 0; i < SHARDED_MAX_GROUPS; i++) {
        if (!s->started[i]) {
            continue;
        }
        for (unsigned j = 0; j < s->g[i].n; j++) {
            cluster_stop_server(&s->g[i], j);
        }
        bad += cluster_sanitizer_errors(&s->g[i]);
        cluster_destroy(&s->g[i]);
        s->started[i] = false;
    }
    if (s->meta.n > 0) {
        cluster_stop_server(&s->meta, 0);
        bad += cluster_sanitizer_errors(&s->meta);
    }
    cluster_destroy(&s->meta);
    return bad;
}

int sharded_join(struct sharded *s, uint64_t gid, char *errmsg)
{
    struct meta_group_info g;
    char list[512], *addrs[CLUSTER_MAX], *save = NULL;
    snprintf(list, sizeof list, "%s", s->g[gid - 1].group);
    g.gid = gid;
    g.n_addrs = 0;
    g.addrs = addrs;
    for (char *t = strtok_r(list, ",", &save); t && g.n_addrs < CLUSTER_MAX;
         t = strtok_r(NULL, ",", &save)) {
        addrs[g.n_addrs++] = t;
    }
    return meta_client_join(s->mc, &g, 1, NULL, errmsg);
}

int sharded_leave(struct sharded *s, uint64_t gid, char *errmsg)
{
    return meta_client_leave(s->mc, gid, NULL, errmsg);
}

int sharded_move(struct sharded *s, uint32_t first, uint32_t last, uint64_t gid, char *errmsg)
{
    return meta_client_move(s->mc, first, last, gid, NULL, errmsg);
}

int sharded_latest_version(struct sharded *s, uint64_t *version, char *errmsg)
{
    struct meta_config cfg;
    int rv = meta_client_query(s->mc, true, 0, &cfg, errmsg);
    if (rv == 0) {
        *version = cfg.version;
        meta_config_clear(&cfg);
    }
    return rv;
}

Raftfs__ShardState *sharded_state(struct sharded *s, uint64_t gid)
{
    struct kv_client *c;
    struct rfs_buf out = {NULL, 0};
    Raftfs__ShardState *st = NULL;
    char errmsg[RFS_ERRMSG_SIZE];
    if (sharded_client(&c, s->g[gid - 1].group, gid, false, 15000, errmsg) != 0) {
        return NULL;
    }
    if (kv_client_call_value(c, RAFTFS__KV_OP__KV_SHARD_STATE, NULL, 0, false, &out, errmsg) == 0) {
        st = raftfs__shard_state__unpack(NULL, out.len, out.base);
    }
    rfs_free(out.base);
    kv_client_free(c);
    return st;
}

bool sharded_group_settled(struct sharded *s, uint64_t gid, uint64_t version)
{
    Raftfs__ShardState *st = sharded_state(s, gid);
    bool ok = st != NULL && st->version == version;
    for (size_t b = 0; ok && b < st->n_states; b++) {
        ok = st->states[b] == RAFTFS__BUCKET_STATE__BUCKET_SERVING ||
             st->states[b] == RAFTFS__BUCKET_STATE__BUCKET_NOT_OWNED;
    }
    if (st != NULL) {
        raftfs__shard_state__free_unpacked(st, NULL);
    }
    return ok;
}

int sharded_wait_settled(struct sharded *s, unsigned timeout_ms, char *errmsg)
{
    uint64_t version, deadline = now_ms() + timeout_ms;
    int rv = sharded_latest_version(s, &version, errmsg);
    if (rv != 0) {
        return rv;
    }
    for (;;) {
        bool all = true;
        for (unsigned i = 0; i < SHARDED_MAX_GROUPS && all; i++) {
            if (s->started[i] && !s->down[i]) {
                all = sharded_group_settled(s, i + 1, version);
            }
        }
        if (all) {
            return 0;
        }
        if (now_ms() > deadline) {
            for (unsigned i = 0; i < SHARDED_MAX_GROUPS; i++) {
                if (s->started[i]) {
                    cluster_dump_logs(&s->g[i]);
                }
            }
            rfs_errmsg_printf(errmsg, "groups did not settle at configuration %llu within %u ms",
                              (unsigned long long)version, timeout_ms);
            return RFS_ETIMEDOUT;
        }
        sleep_ms(50);
    }
}
