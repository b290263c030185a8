/* The meta operations: Join, Leave and Move make the next configuration; ALLOC_IDS hands
 * out a range from the persisted counter; QUERY reads a configuration. Refusals (unknown
 * group, bucket out of range, ...) are replies with a status and a one-line error, never
 * errors of apply: every replica refuses the same commands. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "internal.h"
#include "proto/proto.h"

void meta_result_init(struct meta_result *res)
{
    memset(res, 0, sizeof *res);
    raftfs__meta_reply__init(&res->r);
}

void meta_result_clear(struct meta_result *res)
{
    if (res->owned_cfg != NULL) {
        raftfs__meta_config__free_unpacked(res->owned_cfg, &proto_allocator);
    }
    res->owned_cfg = NULL;
}

static int fail(struct meta_result *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct meta_result *res, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof res->error, fmt, ap);
    va_end(ap);
    res->r.status = (uint32_t)status;
    res->r.error = res->error;
    return 0;
}

static Raftfs__MetaGroup *group_find(const Raftfs__MetaConfig *cfg, uint64_t gid)
{
    for (size_t i = 0; i < cfg->n_groups; i++) {
        if (cfg->groups[i]->gid == gid) {
            return cfg->groups[i];
        }
    }
    return NULL;
}

static int group_cmp(const void *a, const void *b)
{
    const Raftfs__MetaGroup *x = *(Raftfs__MetaGroup *const *)a;
    const Raftfs__MetaGroup *y = *(Raftfs__MetaGroup *const *)b;
    return x->gid < y->gid ? -1 : (x->gid > y->gid);
}

/* Make {latest.version + 1, buckets, groups} the latest configuration: queue it in wb and
 * replace the cache. groups may point into the old latest (packed before it is freed). */
static int config_commit(struct meta_sm *sm, leveldb_writebatch_t *wb, uint64_t *buckets,
                         Raftfs__MetaGroup **groups, size_t n_groups, struct meta_result *res)
{
    Raftfs__MetaConfig c = RAFTFS__META_CONFIG__INIT;
    Raftfs__MetaConfig *next;
    struct rfs_buf buf;
    unsigned char num[8];
    char key[9];

    c.version = sm->latest->version + 1;
    c.n_buckets = sm->nbuckets;
    c.buckets = buckets;
    c.n_groups = n_groups;
    c.groups = groups;
    if (meta_pack(&c.base, &buf) != 0) {
        return RFS_ENOMEM;
    }
    next = raftfs__meta_config__unpack(&proto_allocator, buf.len, buf.base);
    if (next == NULL) {
        rfs_free(buf.base);
        return RFS_ENOMEM;
    }
    meta_config_key(key, c.version);
    leveldb_writebatch_put(wb, key, sizeof key, buf.base, buf.len);
    rfs_put_le64(num, c.version);
    leveldb_writebatch_put(wb, META_KEY_LATEST, strlen(META_KEY_LATEST), (char *)num, sizeof num);
    rfs_free(buf.base);
    raftfs__meta_config__free_unpacked(sm->latest, &proto_allocator);
    sm->latest = next;
    res->r.config = next;
    return 0;
}

/* The groups of the latest configuration plus `add` (n_add) minus `drop` (0: none), sorted,
 * in a new rfs_malloc'd array, with their ids in *gids (rfs_malloc'd). */
static int groups_build(const struct meta_sm *sm, Raftfs__MetaGroup **add, size_t n_add,
                        uint64_t drop, Raftfs__MetaGroup ***out, uint64_t **gids, size_t *n)
{
    size_t cap = sm->latest->n_groups + n_add, k = 0;
    Raftfs__MetaGroup **g = rfs_malloc((cap ? cap : 1) * sizeof *g);
    uint64_t *ids = rfs_malloc((cap ? cap : 1) * sizeof *ids);
    if (g == NULL || ids == NULL) {
        rfs_free(g);
        rfs_free(ids);
        return RFS_ENOMEM;
    }
    for (size_t i = 0; i < sm->latest->n_groups; i++) {
        if (sm->latest->groups[i]->gid != drop) {
            g[k++] = sm->latest->groups[i];
        }
    }
    for (size_t i = 0; i < n_add; i++) {
        g[k++] = add[i];
    }
    qsort(g, k, sizeof *g, group_cmp);
    for (size_t i = 0; i < k; i++) {
        ids[i] = g[i]->gid;
    }
    *out = g;
    *gids = ids;
    *n = k;
    return 0;
}

static int buckets_copy(const struct meta_sm *sm, uint64_t **out)
{
    *out = rfs_malloc(sm->nbuckets * sizeof **out);
    if (*out == NULL) {
        return RFS_ENOMEM;
    }
    memcpy(*out, sm->latest->buckets, sm->nbuckets * sizeof **out);
    return 0;
}

/* Rebalance over the new group set and commit. */
static int membership_change(struct meta_sm *sm, leveldb_writebatch_t *wb, Raftfs__MetaGroup **add,
                             size_t n_add, uint64_t drop, struct meta_result *res)
{
    Raftfs__MetaGroup **groups = NULL;
    uint64_t *gids = NULL, *buckets = NULL;
    size_t n = 0;
    int rv = groups_build(sm, add, n_add, drop, &groups, &gids, &n);
    if (rv == 0) {
        rv = buckets_copy(sm, &buckets);
    }
    if (rv == 0) {
        rv = meta_rebalance(buckets, sm->nbuckets, gids, (unsigned)n);
    }
    if (rv == 0) {
        rv = config_commit(sm, wb, buckets, groups, n, res);
    }
    rfs_free(groups);
    rfs_free(gids);
    rfs_free(buckets);
    return rv;
}

static int op_join(struct meta_sm *sm, leveldb_writebatch_t *wb, const Raftfs__MetaRequest *req,
                   struct meta_result *res)
{
    if (req->n_groups == 0) {
        return fail(res, RFS_EINVAL, "join: no group given");
    }
    for (size_t i = 0; i < req->n_groups; i++) {
        const Raftfs__MetaGroup *g = req->groups[i];
        if (g->gid == 0) {
            return fail(res, RFS_EINVAL, "join: group id 0 is reserved (ids start at 1)");
        }
        if (g->n_addrs == 0) {
            return fail(res, RFS_EINVAL, "join: group %llu has no address",
                        (unsigned long long)g->gid);
        }
        for (size_t j = 0; j < g->n_addrs; j++) {
            if (g->addrs[j][0] == '\0') {
                return fail(res, RFS_EINVAL, "join: group %llu has an empty address",
                            (unsigned long long)g->gid);
            }
        }
        if (group_find(sm->latest, g->gid) != NULL) {
            return fail(res, RFS_EINVAL, "join: group %llu is already joined",
                        (unsigned long long)g->gid);
        }
        for (size_t j = 0; j < i; j++) {
            if (req->groups[j]->gid == g->gid) {
                return fail(res, RFS_EINVAL, "join: group %llu given twice",
                            (unsigned long long)g->gid);
            }
        }
    }
    return membership_change(sm, wb, req->groups, req->n_groups, 0, res);
}

/* A joined group's servers changed (docs/deploy.md, replacing a server): the same buckets,
 * a new address list, in a new configuration version so that routed clients and the
 * movers of other groups pick it up. "-" keeps the place of a removed server. */
static int op_set_addrs(struct meta_sm *sm, leveldb_writebatch_t *wb,
                        const Raftfs__MetaRequest *req, struct meta_result *res)
{
    const Raftfs__MetaGroup *g;
    Raftfs__MetaGroup **groups;
    size_t real = 0;
    int rv;
    if (req->n_groups != 1) {
        return fail(res, RFS_EINVAL, "addrs: give exactly one group");
    }
    g = req->groups[0];
    if (g->gid == 0 || group_find(sm->latest, g->gid) == NULL) {
        return fail(res, RFS_ENOTFOUND, "addrs: group %llu is not joined (join it instead)",
                    (unsigned long long)g->gid);
    }
    for (size_t j = 0; j < g->n_addrs; j++) {
        if (g->addrs[j][0] == '\0') {
            return fail(res, RFS_EINVAL, "addrs: group %llu has an empty address",
                        (unsigned long long)g->gid);
        }
        real += strcmp(g->addrs[j], "-") != 0;
    }
    if (real == 0) {
        return fail(res, RFS_EINVAL, "addrs: group %llu needs at least one address",
                    (unsigned long long)g->gid);
    }
    groups = rfs_malloc(sm->latest->n_groups * sizeof *groups);
    if (groups == NULL) {
        return RFS_ENOMEM;
    }
    for (size_t i = 0; i < sm->latest->n_groups; i++) {
        groups[i] =
            sm->latest->groups[i]->gid == g->gid ? (Raftfs__MetaGroup *)g : sm->latest->groups[i];
    }
    rv = config_commit(sm, wb, sm->latest->buckets, groups, sm->latest->n_groups, res);
    rfs_free(groups);
    return rv;
}

static int op_leave(struct meta_sm *sm, leveldb_writebatch_t *wb, const Raftfs__MetaRequest *req,
                    struct meta_result *res)
{
    if (req->gid == 0 || group_find(sm->latest, req->gid) == NULL) {
        return fail(res, RFS_ENOTFOUND, "leave: group %llu is not joined",
                    (unsigned long long)req->gid);
    }
    return membership_change(sm, wb, NULL, 0, req->gid, res);
}

static int op_move(struct meta_sm *sm, leveldb_writebatch_t *wb, const Raftfs__MetaRequest *req,
                   struct meta_result *res)
{
    uint64_t *buckets;
    int rv;
    if (req->first_bucket > req->last_bucket) {
        return fail(res, RFS_EINVAL, "move: empty bucket range %u-%u", req->first_bucket,
                    req->last_bucket);
    }
    if (req->last_bucket >= sm->nbuckets) {
        return fail(res, RFS_EINVAL, "move: bucket %u out of range (0..%u)", req->last_bucket,
                    sm->nbuckets - 1);
    }
    if (req->gid == 0 || group_find(sm->latest, req->gid) == NULL) {
        return fail(res, RFS_ENOTFOUND, "move: group %llu is not joined (join it first)",
                    (unsigned long long)req->gid);
    }
    rv = buckets_copy(sm, &buckets);
    if (rv != 0) {
        return rv;
    }
    for (uint32_t b = req->first_bucket; b <= req->last_bucket; b++) {
        buckets[b] = req->gid;
    }
    rv = config_commit(sm, wb, buckets, sm->latest->groups, sm->latest->n_groups, res);
    rfs_free(buckets);
    return rv;
}

static int op_alloc(struct meta_sm *sm, leveldb_writebatch_t *wb, const Raftfs__MetaRequest *req,
                    struct meta_result *res)
{
    unsigned char num[8];
    if (req->count == 0 || req->count > META_MAX_ALLOC) {
        return fail(res, RFS_EINVAL, "alloc: count %llu (1 to %llu)",
                    (unsigned long long)req->count, (unsigned long long)META_MAX_ALLOC);
    }
    if (sm->next_id > UINT64_MAX - req->count) {
        return fail(res, RFS_ENOSPC, "alloc: id space exhausted");
    }
    res->r.first_id = sm->next_id;
    res->r.count = req->count;
    sm->next_id += req->count;
    rfs_put_le64(num, sm->next_id);
    leveldb_writebatch_put(wb, META_KEY_NEXTID, strlen(META_KEY_NEXTID), (char *)num, sizeof num);
    return 0;
}

int meta_op_write(struct meta_sm *sm, leveldb_writebatch_t *wb, const Raftfs__MetaRequest *req,
                  struct meta_result *res)
{
    switch (req->op) {
        case RAFTFS__META_OP__META_JOIN:
            return op_join(sm, wb, req, res);
        case RAFTFS__META_OP__META_LEAVE:
            return op_leave(sm, wb, req, res);
        case RAFTFS__META_OP__META_MOVE:
            return op_move(sm, wb, req, res);
        case RAFTFS__META_OP__META_ALLOC_IDS:
            return op_alloc(sm, wb, req, res);
        case RAFTFS__META_OP__META_SET_ADDRS:
            return op_set_addrs(sm, wb, req, res);
        case RAFTFS__META_OP__META_QUERY:
            return fail(res, RFS_EINVAL, "QUERY is a read: send it as KV_META_READ");
        default:
            return fail(res, RFS_EPROTO, "unknown meta op %d", (int)req->op);
    }
}

int meta_op_query(struct meta_sm *sm, const Raftfs__MetaRequest *req, struct meta_result *res,
                  char *errmsg)
{
    char key[9];
    char *err = NULL, *val;
    size_t len = 0;

    if (req->op != RAFTFS__META_OP__META_QUERY) {
        return fail(res, RFS_EINVAL, "only QUERY is read-only: send writes as KV_META_WRITE");
    }
    if (req->latest || req->version == sm->latest->version) {
        res->r.config = sm->latest;
        return 0;
    }
    if (req->version > sm->latest->version) {
        return fail(res, RFS_ENOTFOUND, "no configuration version %llu (latest is %llu)",
                    (unsigned long long)req->version, (unsigned long long)sm->latest->version);
    }
    if (req->version == 0) {
        int rv = meta_config_empty(sm->nbuckets, &res->owned_cfg);
        if (rv != 0) {
            return rv;
        }
        res->r.config = res->owned_cfg;
        return 0;
    }
    meta_config_key(key, req->version);
    val = leveldb_get(sm->ldb.db, sm->ldb.ropts, key, sizeof key, &len, &err);
    if (err != NULL) {
        return rfs_ldb_error(err, errmsg, "query: read configuration");
    }
    if (val == NULL) {
        rfs_errmsg_printf(errmsg, "configuration %llu missing", (unsigned long long)req->version);
        return RFS_ECORRUPT;
    }
    res->owned_cfg = raftfs__meta_config__unpack(&proto_allocator, len, (uint8_t *)val);
    leveldb_free(val);
    if (res->owned_cfg == NULL) {
        rfs_errmsg_printf(errmsg, "configuration %llu does not decode",
                          (unsigned long long)req->version);
        return RFS_ECORRUPT;
    }
    res->r.config = res->owned_cfg;
    return 0;
}
