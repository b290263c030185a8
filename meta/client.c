/* The meta client: MetaRequest in, MetaReply out, through kv_client_call_value. */
#include <string.h>

#include "../common/alloc.h"
#include "../proto/proto.h"
#include "client.h"
#include "proto/raftfs.pb-c.h"

void meta_config_clear(struct meta_config *cfg)
{
    for (unsigned i = 0; i < cfg->n_groups; i++) {
        for (unsigned j = 0; j < cfg->groups[i].n_addrs; j++) {
            rfs_free(cfg->groups[i].addrs[j]);
        }
        rfs_free(cfg->groups[i].addrs);
    }
    rfs_free(cfg->groups);
    rfs_free(cfg->buckets);
    memset(cfg, 0, sizeof *cfg);
}

static int config_copy(struct meta_config *out, const Raftfs__MetaConfig *in)
{
    memset(out, 0, sizeof *out);
    out->version = in->version;
    out->nbuckets = (uint32_t)in->n_buckets;
    out->buckets = rfs_calloc(in->n_buckets ? in->n_buckets : 1, sizeof *out->buckets);
    out->groups = rfs_calloc(in->n_groups ? in->n_groups : 1, sizeof *out->groups);
    if (out->buckets == NULL || out->groups == NULL) {
        goto nomem;
    }
    memcpy(out->buckets, in->buckets, in->n_buckets * sizeof *out->buckets);
    for (size_t i = 0; i < in->n_groups; i++) {
        struct meta_group_info *g = &out->groups[i];
        out->n_groups++;
        g->gid = in->groups[i]->gid;
        g->addrs = rfs_calloc(in->groups[i]->n_addrs + 1, sizeof *g->addrs);
        if (g->addrs == NULL) {
            goto nomem;
        }
        for (size_t j = 0; j < in->groups[i]->n_addrs; j++) {
            g->addrs[j] = rfs_strdup(in->groups[i]->addrs[j]);
            if (g->addrs[j] == NULL) {
                goto nomem;
            }
            g->n_addrs++;
        }
    }
    return 0;
nomem:
    meta_config_clear(out);
    return RFS_ENOMEM;
}

/* Send req; on success fill cfg (may be NULL) and *first (may be NULL). */
static int meta_call(struct kv_client *c, const Raftfs__MetaRequest *req, bool write,
                     struct meta_config *cfg, uint64_t *first, char *errmsg)
{
    size_t len = raftfs__meta_request__get_packed_size(req);
    uint8_t *buf = rfs_malloc(len ? len : 1);
    struct rfs_buf rep_bytes;
    Raftfs__MetaReply *rep;
    int rv;

    if (cfg != NULL) {
        memset(cfg, 0, sizeof *cfg);
    }
    if (buf == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    raftfs__meta_request__pack(req, buf);
    rv = kv_client_call_value(c, write ? RAFTFS__KV_OP__KV_META_WRITE : RAFTFS__KV_OP__KV_META_READ,
                              buf, len, write, &rep_bytes, errmsg);
    rfs_free(buf);
    if (rv != 0) {
        rfs_free(rep_bytes.base);
        return rv;
    }
    rep = raftfs__meta_reply__unpack(&proto_allocator, rep_bytes.len, rep_bytes.base);
    rfs_free(rep_bytes.base);
    if (rep == NULL) {
        rfs_errmsg_printf(errmsg, "the server's reply does not decode as a MetaReply (is this "
                                  "a meta group?)");
        return RFS_EPROTO;
    }
    if (first != NULL) {
        *first = rep->first_id;
    }
    if (cfg != NULL && rep->config != NULL) {
        rv = config_copy(cfg, rep->config);
        if (rv != 0) {
            rfs_errmsg_printf(errmsg, "out of memory");
        }
    }
    raftfs__meta_reply__free_unpacked(rep, &proto_allocator);
    return rv;
}

int meta_client_join(struct kv_client *c, const struct meta_group_info *groups, unsigned n,
                     struct meta_config *out, char *errmsg)
{
    Raftfs__MetaRequest req = RAFTFS__META_REQUEST__INIT;
    Raftfs__MetaGroup *g = rfs_calloc(n ? n : 1, sizeof *g);
    Raftfs__MetaGroup **gp = rfs_calloc(n ? n : 1, sizeof *gp);
    int rv;
    if (g == NULL || gp == NULL) {
        rfs_free(g);
        rfs_free(gp);
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        raftfs__meta_group__init(&g[i]);
        g[i].gid = groups[i].gid;
        g[i].n_addrs = groups[i].n_addrs;
        g[i].addrs = groups[i].addrs;
        gp[i] = &g[i];
    }
    req.op = RAFTFS__META_OP__META_JOIN;
    req.n_groups = n;
    req.groups = gp;
    rv = meta_call(c, &req, true, out, NULL, errmsg);
    rfs_free(g);
    rfs_free(gp);
    return rv;
}

int meta_client_set_addrs(struct kv_client *c, const struct meta_group_info *group,
                          struct meta_config *out, char *errmsg)
{
    Raftfs__MetaRequest req = RAFTFS__META_REQUEST__INIT;
    Raftfs__MetaGroup g = RAFTFS__META_GROUP__INIT;
    Raftfs__MetaGroup *gp = &g;
    g.gid = group->gid;
    g.n_addrs = group->n_addrs;
    g.addrs = group->addrs;
    req.op = RAFTFS__META_OP__META_SET_ADDRS;
    req.n_groups = 1;
    req.groups = &gp;
    return meta_call(c, &req, true, out, NULL, errmsg);
}

int meta_client_leave(struct kv_client *c, uint64_t gid, struct meta_config *out, char *errmsg)
{
    Raftfs__MetaRequest req = RAFTFS__META_REQUEST__INIT;
    req.op = RAFTFS__META_OP__META_LEAVE;
    req.gid = gid;
    return meta_call(c, &req, true, out, NULL, errmsg);
}

int meta_client_move(struct kv_client *c, uint32_t first, uint32_t last, uint64_t gid,
                     struct meta_config *out, char *errmsg)
{
    Raftfs__MetaRequest req = RAFTFS__META_REQUEST__INIT;
    req.op = RAFTFS__META_OP__META_MOVE;
    req.first_bucket = first;
    req.last_bucket = last;
    req.gid = gid;
    return meta_call(c, &req, true, out, NULL, errmsg);
}

int meta_client_query(struct kv_client *c, bool latest, uint64_t version, struct meta_config *out,
                      char *errmsg)
{
    Raftfs__MetaRequest req = RAFTFS__META_REQUEST__INIT;
    req.op = RAFTFS__META_OP__META_QUERY;
    req.latest = latest;
    req.version = version;
    return meta_call(c, &req, false, out, NULL, errmsg);
}

int meta_client_alloc_ids(struct kv_client *c, uint64_t count, uint64_t *first, char *errmsg)
{
    Raftfs__MetaRequest req = RAFTFS__META_REQUEST__INIT;
    req.op = RAFTFS__META_OP__META_ALLOC_IDS;
    req.count = count;
    return meta_call(c, &req, true, NULL, first, errmsg);
}
