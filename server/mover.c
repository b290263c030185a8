/* The bucket mover; see mover.h and docs/sharding.md.
 *
 * One round (every poll_ms, while this server leads its group; a settled group that found no
 * next configuration only asks the meta group for one, re-reading its own state each second):
 *   1. read the group's shard state (KV_SHARD_STATE, a linearizable read);
 *   2. every bucket settled: ask the meta group for configuration version+1 and, if there
 *      is one, propose it (KV_CONFIG), then start the next round at once;
 *   3. each PULLING bucket: read chunks from the old owner (KV_BUCKET_PULL) starting at the
 *      resume key the state machine keeps, proposing each (KV_BUCKET_INSTALL);
 *   4. each GC_OWNER bucket: have the old owner delete it (KV_BUCKET_GC until done), then
 *      settle it here (KV_BUCKET_GCED).
 * Any failure ends the round; the next round starts again from the replicated state. */
#include "mover.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../kv/client_internal.h"
#include "../meta/meta.h"
#include "../raft/raft.h"
#include "../rpc/rpc.h"

#define MOVER_CALL_MS    1500
#define MOVER_ATTEMPT_MS 400
#define MOVER_MAX_CHUNKS 256 /* per bucket per round */
#define MOVER_MAX_GROUPS 64
#define IDLE_RECHECK_MS  1000

struct group_client {
    uint64_t gid;
    char addrs[512]; /* the list it was made from */
    struct kv_client *c;
};

struct rfs_mover {
    struct rfs_mover_config cfg;
    char peer_buf[KV_CLIENT_MAX_SERVERS][128];
    char meta_buf[KV_CLIENT_MAX_SERVERS][128];
    struct kv_client *self;
    struct kv_client *meta;
    struct group_client groups[MOVER_MAX_GROUPS];
    unsigned n_groups;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int stop;
    uint64_t warned_version; /* last configuration a refusal was logged for */
    /* Settled at idle_version when last looked (idle_ms): until IDLE_RECHECK_MS pass, a
     * round only asks the meta group for the next version, not its own group's state. */
    int idle;
    uint64_t idle_version;
    uint64_t idle_ms;
    /* Counters for metrics: written by the mover thread, read by the server's loop. */
    _Atomic uint64_t n_pulled_records, n_pulled_bytes;
    _Atomic uint64_t n_installed_records, n_installed_bytes;
    _Atomic uint64_t n_buckets_pulled, n_buckets_settled, n_configs, n_errors;
};

static void count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void rfs_mover_stats_get(struct rfs_mover *m, struct rfs_mover_stats *out)
{
    memset(out, 0, sizeof *out);
    if (m == NULL) {
        return;
    }
    out->pulled_records = atomic_load_explicit(&m->n_pulled_records, memory_order_relaxed);
    out->pulled_bytes = atomic_load_explicit(&m->n_pulled_bytes, memory_order_relaxed);
    out->installed_records = atomic_load_explicit(&m->n_installed_records, memory_order_relaxed);
    out->installed_bytes = atomic_load_explicit(&m->n_installed_bytes, memory_order_relaxed);
    out->buckets_pulled = atomic_load_explicit(&m->n_buckets_pulled, memory_order_relaxed);
    out->buckets_settled = atomic_load_explicit(&m->n_buckets_settled, memory_order_relaxed);
    out->configs_applied = atomic_load_explicit(&m->n_configs, memory_order_relaxed);
    out->step_errors = atomic_load_explicit(&m->n_errors, memory_order_relaxed);
}

static int stopping(struct rfs_mover *m)
{
    int s;
    pthread_mutex_lock(&m->mu);
    s = m->stop;
    pthread_mutex_unlock(&m->mu);
    return s;
}

/* Send req to c (group_id set here) and return the reply's status; *out gets the reply. */
static int request(struct kv_client *c, uint64_t gid, Raftfs__KvRequest *req, Raftfs__KvReply **out,
                   char *errmsg)
{
    size_t len;
    uint8_t *buf;
    int rv;
    *out = NULL;
    req->group_id = gid;
    len = raftfs__kv_request__get_packed_size(req);
    buf = rfs_malloc(len ? len : 1);
    if (buf == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    raftfs__kv_request__pack(req, buf);
    rv = kv_client_call_packed(c, buf, len, MOVER_CALL_MS, out, errmsg);
    rfs_free(buf);
    if (rv != 0) {
        return rv;
    }
    if ((*out)->status != 0) {
        rfs_errmsg_printf(errmsg, "%s",
                          (*out)->error && (*out)->error[0] ? (*out)->error
                                                            : rfs_strerror((int)(*out)->status));
        return (int)(*out)->status;
    }
    return 0;
}

static void reply_free(Raftfs__KvReply *rep)
{
    if (rep != NULL) {
        raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    }
}

static int client_for_list(struct kv_client **out, uint64_t gid, unsigned n, const char **addrs,
                           char *errmsg)
{
    struct kv_client_options o;
    memset(&o, 0, sizeof o);
    o.n_servers = n;
    for (unsigned i = 0; i < n && i < KV_CLIENT_MAX_SERVERS; i++) {
        o.servers[i] = addrs[i];
    }
    o.group_id = gid;
    o.timeout_ms = MOVER_CALL_MS;
    o.attempt_ms = MOVER_ATTEMPT_MS;
    return kv_client_new(out, &o, errmsg);
}

/* A client of group gid at the addresses a configuration gives it. */
static struct kv_client *group_client(struct rfs_mover *m, const Raftfs__MetaConfig *cfg,
                                      uint64_t gid, char *errmsg)
{
    const Raftfs__MetaGroup *g = NULL;
    char list[512] = "";
    struct group_client *slot = NULL;
    size_t used = 0;

    for (size_t i = 0; cfg != NULL && i < cfg->n_groups; i++) {
        if (cfg->groups[i]->gid == gid) {
            g = cfg->groups[i];
        }
    }
    if (g == NULL || g->n_addrs == 0 || g->n_addrs > KV_CLIENT_MAX_SERVERS) {
        rfs_errmsg_printf(errmsg, "group %llu has no addresses in configuration %llu",
                          (unsigned long long)gid, (unsigned long long)(cfg ? cfg->version : 0));
        return NULL;
    }
    for (size_t i = 0; i < g->n_addrs; i++) {
        used += (size_t)snprintf(list + used, used < sizeof list ? sizeof list - used : 0, "%s,",
                                 g->addrs[i]);
    }
    for (unsigned i = 0; i < m->n_groups; i++) {
        if (m->groups[i].gid == gid) {
            slot = &m->groups[i];
        }
    }
    if (slot != NULL && strcmp(slot->addrs, list) == 0) {
        return slot->c;
    }
    if (slot == NULL) {
        if (m->n_groups == MOVER_MAX_GROUPS) {
            kv_client_free(m->groups[0].c);
            m->groups[0] = m->groups[--m->n_groups];
        }
        slot = &m->groups[m->n_groups++];
        memset(slot, 0, sizeof *slot);
        slot->gid = gid;
    }
    kv_client_free(slot->c);
    slot->c = NULL;
    snprintf(slot->addrs, sizeof slot->addrs, "%s", list);
    if (client_for_list(&slot->c, gid, (unsigned)g->n_addrs, (const char **)g->addrs, errmsg) !=
        0) {
        slot->addrs[0] = '\0';
        return NULL;
    }
    return slot->c;
}

/* The meta group's configuration `version`; NULL if there is none (yet) or on error. */
static Raftfs__MetaConfig *meta_config(struct rfs_mover *m, uint64_t version,
                                       Raftfs__MetaReply **hold, char *errmsg)
{
    Raftfs__MetaRequest req = RAFTFS__META_REQUEST__INIT;
    uint8_t buf[64];
    struct rfs_buf rep = {NULL, 0};
    int rv;
    *hold = NULL;
    req.op = RAFTFS__META_OP__META_QUERY;
    req.version = version;
    rv = kv_client_call_value(m->meta, RAFTFS__KV_OP__KV_META_READ, buf,
                              raftfs__meta_request__pack(&req, buf), false, &rep, errmsg);
    if (rv == 0) {
        *hold = raftfs__meta_reply__unpack(&proto_allocator, rep.len, rep.base);
    }
    rfs_free(rep.base);
    if (*hold == NULL || (*hold)->status != 0) {
        return NULL;
    }
    return (*hold)->config;
}

static Raftfs__ShardState *shard_state(struct rfs_mover *m, char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep = NULL;
    Raftfs__ShardState *st = NULL;
    req.op = RAFTFS__KV_OP__KV_SHARD_STATE;
    if (request(m->self, m->cfg.gid, &req, &rep, errmsg) == 0) {
        st = raftfs__shard_state__unpack(&proto_allocator, rep->value.len, rep->value.data);
        if (st == NULL) {
            rfs_errmsg_printf(errmsg, "shard state does not decode");
        }
    }
    reply_free(rep);
    return st;
}

static int propose_next_config(struct rfs_mover *m, const Raftfs__ShardState *st, char *errmsg)
{
    Raftfs__MetaReply *hold;
    Raftfs__MetaConfig *next = meta_config(m, st->version + 1, &hold, errmsg);
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep = NULL;
    int rv;
    if (next == NULL) {
        if (hold != NULL) {
            raftfs__meta_reply__free_unpacked(hold, &proto_allocator);
        }
        return RFS_ENOTFOUND;
    }
    req.op = RAFTFS__KV_OP__KV_CONFIG;
    req.config = next;
    rv = request(m->self, m->cfg.gid, &req, &rep, errmsg);
    if (rv == 0) {
        count(&m->n_configs, 1);
        rfs_infof("mover: group %llu now at configuration %llu", (unsigned long long)m->cfg.gid,
                  (unsigned long long)next->version);
    } else if (m->warned_version != next->version) {
        m->warned_version = next->version;
        rfs_errorf("mover: configuration %llu refused: %s", (unsigned long long)next->version,
                   errmsg);
    }
    reply_free(rep);
    raftfs__meta_reply__free_unpacked(hold, &proto_allocator);
    return rv;
}

static int pull_bucket(struct rfs_mover *m, const Raftfs__ShardState *st, uint32_t b, char *errmsg)
{
    uint64_t src = st->prev != NULL && b < st->prev->n_buckets ? st->prev->buckets[b] : 0;
    struct kv_client *from = group_client(m, st->prev, src, errmsg);
    ProtobufCBinaryData resume = b < st->n_resume ? st->resume[b] : (ProtobufCBinaryData){0};
    uint8_t *key = NULL;
    size_t bytes = 0, records = 0;
    int rv = 0;

    if (from == NULL) {
        return RFS_EINVAL;
    }
    key = rfs_malloc(resume.len ? resume.len : 1);
    if (key == NULL) {
        return RFS_ENOMEM;
    }
    memcpy(key, resume.data, resume.len);
    for (int i = 0; i < MOVER_MAX_CHUNKS && !stopping(m); i++) {
        Raftfs__KvRequest pull = RAFTFS__KV_REQUEST__INIT;
        Raftfs__KvRequest inst = RAFTFS__KV_REQUEST__INIT;
        Raftfs__KvReply *got = NULL, *rep = NULL;
        pull.op = RAFTFS__KV_OP__KV_BUCKET_PULL;
        pull.config_version = st->version;
        pull.bucket = b;
        pull.key.data = key;
        pull.key.len = resume.len;
        pull.limit = m->cfg.chunk_bytes;
        rv = request(from, src, &pull, &got, errmsg);
        if (rv != 0) {
            reply_free(got);
            break;
        }
        inst.op = RAFTFS__KV_OP__KV_BUCKET_INSTALL;
        inst.config_version = st->version;
        inst.bucket = b;
        inst.key = pull.key;
        inst.n_kvs = got->n_kvs;
        inst.kvs = got->kvs;
        inst.done = !got->more;
        inst.end_key = got->next_key;
        rv = request(m->self, m->cfg.gid, &inst, &rep, errmsg);
        reply_free(rep);
        {
            size_t chunk_bytes = 0;
            for (size_t k = 0; k < got->n_kvs; k++) {
                chunk_bytes += got->kvs[k]->key.len + got->kvs[k]->value.len;
            }
            count(&m->n_pulled_records, got->n_kvs);
            count(&m->n_pulled_bytes, chunk_bytes);
            if (rv == 0) {
                count(&m->n_installed_records, got->n_kvs);
                count(&m->n_installed_bytes, chunk_bytes);
            }
            records += got->n_kvs;
            bytes += chunk_bytes;
        }
        if (rv == 0 && got->more) {
            uint8_t *nk = rfs_malloc(got->next_key.len ? got->next_key.len : 1);
            if (nk == NULL) {
                rv = RFS_ENOMEM;
            } else {
                memcpy(nk, got->next_key.data, got->next_key.len);
                rfs_free(key);
                key = nk;
                resume.len = got->next_key.len;
            }
        }
        if (rv != 0 || !got->more) {
            int done = rv == 0;
            reply_free(got);
            if (done) {
                count(&m->n_buckets_pulled, 1);
                rfs_infof("mover: bucket %u pulled from group %llu (configuration %llu): %zu "
                          "records, %zu bytes this round",
                          b, (unsigned long long)src, (unsigned long long)st->version, records,
                          bytes);
            }
            break;
        }
        reply_free(got);
    }
    rfs_free(key);
    return rv;
}

static int gc_bucket(struct rfs_mover *m, const Raftfs__ShardState *st, uint32_t b, char *errmsg)
{
    uint64_t src = st->prev != NULL && b < st->prev->n_buckets ? st->prev->buckets[b] : 0;
    struct kv_client *from = group_client(m, st->prev, src, errmsg);
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep = NULL;
    int rv = 0, more = 1;

    if (from == NULL) {
        return RFS_EINVAL;
    }
    req.config_version = st->version;
    req.bucket = b;
    for (int i = 0; i < MOVER_MAX_CHUNKS && more && rv == 0 && !stopping(m); i++) {
        req.op = RAFTFS__KV_OP__KV_BUCKET_GC;
        rv = request(from, src, &req, &rep, errmsg);
        more = rv == 0 && rep->more;
        reply_free(rep);
        rep = NULL;
    }
    if (rv != 0 || more) {
        return rv;
    }
    req.op = RAFTFS__KV_OP__KV_BUCKET_GCED;
    rv = request(m->self, m->cfg.gid, &req, &rep, errmsg);
    reply_free(rep);
    if (rv == 0) {
        count(&m->n_buckets_settled, 1);
    }
    return rv;
}

/* One round; returns 1 when another round should follow at once. */
static int round_once(struct rfs_mover *m)
{
    char errmsg[RFS_ERRMSG_SIZE] = "";
    struct kv_server_status ss;
    Raftfs__ShardState *st;
    int settled = 1, again = 0;

    if (kv_client_status(m->self, m->cfg.self, &ss) != 0 || ss.role != RAFT_LEADER) {
        m->idle = 0;
        return 0;
    }
    if (m->idle && rpc_now_ms() - m->idle_ms < IDLE_RECHECK_MS) {
        Raftfs__MetaReply *hold;
        int next = meta_config(m, m->idle_version + 1, &hold, errmsg) != NULL;
        if (hold != NULL) {
            raftfs__meta_reply__free_unpacked(hold, &proto_allocator);
        }
        if (!next) {
            return 0;
        }
    }
    m->idle = 0;
    st = shard_state(m, errmsg);
    if (st == NULL) {
        rfs_debugf("mover: reading the shard state: %s", errmsg);
        return 0;
    }
    for (size_t b = 0; b < st->n_states && !stopping(m); b++) {
        int rv = 0;
        if (st->states[b] == RAFTFS__BUCKET_STATE__BUCKET_PULLING) {
            settled = 0;
            rv = pull_bucket(m, st, (uint32_t)b, errmsg);
            if (rv == 0) {
                rv = gc_bucket(m, st, (uint32_t)b, errmsg);
            }
        } else if (st->states[b] == RAFTFS__BUCKET_STATE__BUCKET_GC_OWNER) {
            settled = 0;
            rv = gc_bucket(m, st, (uint32_t)b, errmsg);
        } else if (st->states[b] == RAFTFS__BUCKET_STATE__BUCKET_BE_PULLED) {
            settled = 0;
        }
        if (rv != 0) {
            count(&m->n_errors, 1);
        }
        if (rv != 0 && rv != RFS_EBUSY) {
            rfs_warnf("mover: bucket %zu (configuration %llu): %s", b,
                      (unsigned long long)st->version, errmsg);
        }
        if (rv == 0 && (st->states[b] == RAFTFS__BUCKET_STATE__BUCKET_PULLING ||
                        st->states[b] == RAFTFS__BUCKET_STATE__BUCKET_GC_OWNER)) {
            again = 1; /* progress: look at the state again at once */
        }
    }
    if (settled && !stopping(m)) {
        int rv = propose_next_config(m, st, errmsg);
        again = rv == 0;
        if (rv == RFS_ENOTFOUND) {
            m->idle = 1;
            m->idle_version = st->version;
            m->idle_ms = rpc_now_ms();
        }
    }
    raftfs__shard_state__free_unpacked(st, &proto_allocator);
    return again;
}

static void *mover_main(void *data)
{
    struct rfs_mover *m = data;
    for (;;) {
        struct timespec ts;
        int again = round_once(m);
        pthread_mutex_lock(&m->mu);
        if (!again && !m->stop) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += (long)m->cfg.poll_ms * 1000000;
            ts.tv_sec += ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&m->cond, &m->mu, &ts);
        }
        if (m->stop) {
            pthread_mutex_unlock(&m->mu);
            return NULL;
        }
        pthread_mutex_unlock(&m->mu);
    }
}

static void copy_list(char (*buf)[128], const char **dst, const char *const *src, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        snprintf(buf[i], sizeof buf[i], "%s", src[i]);
        dst[i] = buf[i];
    }
}

int rfs_mover_start(struct rfs_mover **out, const struct rfs_mover_config *cfg, char *errmsg)
{
    struct rfs_mover *m;
    pthread_condattr_t attr;
    int rv;

    if (cfg->n_peers == 0 || cfg->n_peers > KV_CLIENT_MAX_SERVERS || cfg->self >= cfg->n_peers ||
        cfg->n_meta == 0 || cfg->n_meta > KV_CLIENT_MAX_SERVERS || cfg->gid == 0) {
        rfs_errmsg_printf(errmsg, "mover: bad configuration");
        return RFS_EINVAL;
    }
    m = rfs_calloc(1, sizeof *m);
    if (m == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    m->cfg = *cfg;
    if (m->cfg.poll_ms == 0) {
        m->cfg.poll_ms = 20;
    }
    if (m->cfg.chunk_bytes == 0) {
        m->cfg.chunk_bytes = 1u << 20;
    }
    copy_list(m->peer_buf, m->cfg.peers, cfg->peers, cfg->n_peers);
    copy_list(m->meta_buf, m->cfg.meta, cfg->meta, cfg->n_meta);
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &attr);
    pthread_condattr_destroy(&attr);
    rv = client_for_list(&m->self, cfg->gid, m->cfg.n_peers, m->cfg.peers, errmsg);
    if (rv == 0) {
        rv = client_for_list(&m->meta, META_GROUP_ID, m->cfg.n_meta, m->cfg.meta, errmsg);
    }
    if (rv == 0 && pthread_create(&m->thread, NULL, mover_main, m) != 0) {
        rfs_errmsg_printf(errmsg, "mover: cannot start its thread");
        rv = RFS_ENOMEM;
    }
    if (rv != 0) {
        kv_client_free(m->self);
        kv_client_free(m->meta);
        pthread_mutex_destroy(&m->mu);
        pthread_cond_destroy(&m->cond);
        rfs_free(m);
        return rv;
    }
    *out = m;
    return 0;
}

void rfs_mover_stop(struct rfs_mover *m)
{
    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    for (unsigned i = 0; i < m->n_groups; i++) {
        kv_client_free(m->groups[i].c);
    }
    kv_client_free(m->self);
    kv_client_free(m->meta);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cond);
    rfs_free(m);
}
