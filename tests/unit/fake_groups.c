/* See fake_groups.h. */
#include "fake_groups.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "proto/proto.h"

static void fake_groups_reply(struct rpc_conn *c, uint64_t req_id, const Raftfs__KvReply *rep)
{
    size_t len = raftfs__kv_reply__get_packed_size(rep);
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    raftfs__kv_reply__pack(rep, buf);
    (void)rpc_conn_send(c, RAFTFS__FRAME_TYPE__FRAME_KV_REPLY, req_id, buf, len);
    free(buf);
}

/* Locked. The configuration: the buckets as set, groups 1..FAKE_GROUPS_N at their ports. */
static void fake_groups_meta_answer(struct fake_groups *g, struct rpc_conn *c, uint64_t req_id)
{
    Raftfs__KvReply rep = RAFTFS__KV_REPLY__INIT;
    Raftfs__MetaReply mrep = RAFTFS__META_REPLY__INIT;
    Raftfs__MetaConfig cfg = RAFTFS__META_CONFIG__INIT;
    Raftfs__MetaGroup groups[FAKE_GROUPS_N];
    Raftfs__MetaGroup *gp[FAKE_GROUPS_N];
    char *addrs[FAKE_GROUPS_N];
    uint8_t *buf;
    size_t len;

    g->meta_queries++;
    for (unsigned i = 0; i < FAKE_GROUPS_N; i++) {
        raftfs__meta_group__init(&groups[i]);
        groups[i].gid = i + 1;
        addrs[i] = g->addr[i + 1];
        groups[i].n_addrs = 1;
        groups[i].addrs = &addrs[i];
        gp[i] = &groups[i];
    }
    cfg.version = g->version;
    cfg.n_buckets = FAKE_GROUPS_NBUCKETS;
    cfg.buckets = g->buckets;
    cfg.n_groups = FAKE_GROUPS_N;
    cfg.groups = gp;
    mrep.config = &cfg;
    len = raftfs__meta_reply__get_packed_size(&mrep);
    buf = malloc(len ? len : 1);
    assert_non_null(buf);
    raftfs__meta_reply__pack(&mrep, buf);
    rep.value.data = buf;
    rep.value.len = len;
    fake_groups_reply(c, req_id, &rep);
    free(buf);
}

static void fake_groups_on_frame(struct rpc_conn *c, uint32_t type, uint64_t req_id,
                                 const void *payload, size_t len, void *data)
{
    struct fake_groups_port *p = data;
    struct fake_groups *g = p->g;
    Raftfs__KvRequest *req;
    if (type != RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST) {
        return;
    }
    req = raftfs__kv_request__unpack(NULL, len, payload);
    if (req == NULL) {
        return;
    }
    pthread_mutex_lock(&g->mu);
    if (p->index == FAKE_GROUPS_META) {
        fake_groups_meta_answer(g, c, req_id);
    } else {
        Raftfs__KvReply rep = RAFTFS__KV_REPLY__INIT;
        bool drop = false;
        if (g->answer != NULL) {
            g->answer(g, p->index, req, payload, len, &rep, &drop);
        }
        if (!drop) {
            fake_groups_reply(c, req_id, &rep);
        }
    }
    pthread_mutex_unlock(&g->mu);
    raftfs__kv_request__free_unpacked(req, NULL);
}

static void *fake_groups_main(void *data)
{
    struct fake_groups *g = data;
    (void)rpc_loop_run(g->loop);
    return NULL;
}

int fake_groups_init(struct fake_groups *g, fake_groups_answer_fn answer, void *data, char *errmsg)
{
    int rv = rpc_loop_new(&g->loop, errmsg);
    if (rv != 0) {
        return rv;
    }
    pthread_mutex_init(&g->mu, NULL); /* destroyed by close, as the loop is non-NULL */
    g->answer = answer;
    g->data = data;
    for (unsigned i = 0; i <= FAKE_GROUPS_N; i++) {
        struct rpc_handler h;
        memset(&h, 0, sizeof h);
        g->ports[i].g = g;
        g->ports[i].index = i;
        h.data = &g->ports[i];
        h.on_frame = fake_groups_on_frame;
        rv = rpc_listen(g->loop, "127.0.0.1:0", &h, &g->ls[i], errmsg);
        if (rv != 0) {
            rfs_errmsg_wrapf(errmsg, "listen");
            return rv;
        }
        snprintf(g->addr[i], sizeof g->addr[i], "127.0.0.1:%u", rpc_listener_port(g->ls[i]));
    }
    if (pthread_create(&g->thread, NULL, fake_groups_main, g) != 0) {
        rfs_errmsg_printf(errmsg, "pthread_create failed");
        return RFS_EIO;
    }
    g->running = true;
    return 0;
}

void fake_groups_close(struct fake_groups *g)
{
    if (g->running) {
        rpc_loop_stop(g->loop);
        pthread_join(g->thread, NULL);
        g->running = false;
    }
    if (g->loop != NULL) {
        rpc_loop_free(g->loop);
        g->loop = NULL;
        pthread_mutex_destroy(&g->mu);
    }
}

void fake_groups_set_all(struct fake_groups *g, uint64_t version, uint64_t gid)
{
    pthread_mutex_lock(&g->mu);
    g->version = version;
    for (unsigned b = 0; b < FAKE_GROUPS_NBUCKETS; b++) {
        g->buckets[b] = gid;
    }
    pthread_mutex_unlock(&g->mu);
}

struct kv_client *fake_groups_client(struct fake_groups *g, unsigned timeout_ms,
                                     enum kv_txn_crash crash)
{
    struct kv_client_options o;
    struct kv_client *c = NULL;
    char errmsg[RFS_ERRMSG_SIZE];
    memset(&o, 0, sizeof o);
    o.n_meta = 1;
    o.meta[0] = g->addr[FAKE_GROUPS_META];
    o.timeout_ms = timeout_ms;
    o.attempt_ms = 200;
    o.txn_crash_after = crash;
    assert_int_equal(kv_client_new(&c, &o, errmsg), 0);
    return c;
}
