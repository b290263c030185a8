/* The meta state machine: open/close, the cache of the latest state, sessions, and the
 * rfs_sm_ops entry points.
 *
 * The state is small, so the latest configuration, the id counter and the sessions are
 * cached in memory; apply updates the cache and queues the same changes, with the new
 * applied index, in one LevelDB write batch (one atomic write per call). If that write
 * fails the cache is reloaded from the database and the server stops. Writes from a session
 * (client_id != 0) are exactly-once, as in kv: a retry gets the stored reply. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "../common/log.h"
#include "internal.h"
#include "proto/proto.h"

void meta_config_key(char out[9], uint64_t version)
{
    out[0] = META_PREFIX_CONFIG;
    for (int i = 0; i < 8; i++) {
        out[1 + i] = (char)(version >> (56 - 8 * i));
    }
}

static void session_key(char out[9], uint64_t client_id)
{
    meta_config_key(out, client_id);
    out[0] = META_PREFIX_SESSION;
}

int meta_pack(const ProtobufCMessage *m, struct rfs_buf *out)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    out->base = rfs_malloc(len ? len : 1);
    if (out->base == NULL) {
        out->len = 0;
        return RFS_ENOMEM;
    }
    out->len = protobuf_c_message_pack(m, out->base);
    return 0;
}

int meta_config_empty(uint32_t nbuckets, Raftfs__MetaConfig **out)
{
    Raftfs__MetaConfig c = RAFTFS__META_CONFIG__INIT;
    struct rfs_buf buf;
    c.n_buckets = nbuckets;
    c.buckets = rfs_calloc(nbuckets, sizeof *c.buckets);
    if (c.buckets == NULL || meta_pack(&c.base, &buf) != 0) {
        rfs_free(c.buckets);
        return RFS_ENOMEM;
    }
    rfs_free(c.buckets);
    *out = raftfs__meta_config__unpack(&proto_allocator, buf.len, buf.base);
    rfs_free(buf.base);
    return *out == NULL ? RFS_ENOMEM : 0;
}

static void sessions_clear(struct meta_sm *sm)
{
    for (size_t i = 0; i < sm->n_sessions; i++) {
        rfs_free(sm->sessions[i].reply.base);
    }
    sm->n_sessions = 0;
}

static struct meta_session *session_find(struct meta_sm *sm, uint64_t client_id)
{
    for (size_t i = 0; i < sm->n_sessions; i++) {
        if (sm->sessions[i].client_id == client_id) {
            return &sm->sessions[i];
        }
    }
    return NULL;
}

/* Add or replace a session (reply is copied). Returns 0 or RFS_ENOMEM. */
static int session_set(struct meta_sm *sm, uint64_t client_id, uint64_t seq, uint64_t ms,
                       const void *reply, size_t len)
{
    struct meta_session *s = session_find(sm, client_id);
    void *copy = rfs_malloc(len ? len : 1);
    if (copy == NULL) {
        return RFS_ENOMEM;
    }
    if (len > 0) {
        memcpy(copy, reply, len);
    }
    if (s == NULL) {
        if (sm->n_sessions == sm->cap_sessions) {
            size_t cap = sm->cap_sessions ? sm->cap_sessions * 2 : 8;
            struct meta_session *ss = rfs_realloc(sm->sessions, cap * sizeof *ss);
            if (ss == NULL) {
                rfs_free(copy);
                return RFS_ENOMEM;
            }
            sm->sessions = ss;
            sm->cap_sessions = cap;
        }
        s = &sm->sessions[sm->n_sessions++];
        s->reply.base = NULL;
    }
    rfs_free(s->reply.base);
    s->client_id = client_id;
    s->last_seq = seq;
    s->last_ms = ms;
    s->reply.base = copy;
    s->reply.len = len;
    return 0;
}

static int load_sessions(struct meta_sm *sm, char *errmsg)
{
    leveldb_iterator_t *it = leveldb_create_iterator(sm->ldb.db, sm->ldb.ropts);
    const char lo = META_PREFIX_SESSION;
    char *err = NULL;
    int rv = 0;
    if (it == NULL) {
        return RFS_ENOMEM;
    }
    for (leveldb_iter_seek(it, &lo, 1); rv == 0 && leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v = leveldb_iter_value(it, &vlen);
        if (klen == 0 || k[0] != META_PREFIX_SESSION) {
            break;
        }
        if (klen != 9 || vlen < 16) {
            rfs_errmsg_printf(errmsg, "session record: key %zu bytes, value %zu bytes", klen, vlen);
            rv = RFS_ECORRUPT;
            break;
        }
        uint64_t id = 0;
        for (int i = 1; i < 9; i++) {
            id = id << 8 | (unsigned char)k[i];
        }
        rv = session_set(sm, id, rfs_get_le64(v), rfs_get_le64(v + 8), v + 16, vlen - 16);
    }
    leveldb_iter_get_error(it, &err);
    leveldb_iter_destroy(it);
    if (rv == 0 && err != NULL) {
        rv = rfs_ldb_error(err, errmsg, "read sessions");
    }
    leveldb_free(rv == 0 ? NULL : err);
    return rv;
}

int meta_sm_load(struct meta_sm *sm, char *errmsg)
{
    uint64_t latest = 0;
    int rv;

    sessions_clear(sm);
    if (sm->latest != NULL) {
        raftfs__meta_config__free_unpacked(sm->latest, &proto_allocator);
        sm->latest = NULL;
    }
    rv = rfs_ldb_get_u64(&sm->ldb, META_KEY_APPLIED, &sm->applied, NULL, errmsg);
    if (rv == 0) {
        rv = rfs_ldb_get_u64(&sm->ldb, META_KEY_SWEEP, &sm->sweep_ms, NULL, errmsg);
    }
    if (rv == 0) {
        rv = rfs_ldb_get_u64(&sm->ldb, META_KEY_NEXTID, &sm->next_id, NULL, errmsg);
    }
    if (rv == 0) {
        rv = rfs_ldb_get_u64(&sm->ldb, META_KEY_LATEST, &latest, NULL, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    if (sm->next_id == 0) {
        sm->next_id = 1; /* id 0 means "none" */
    }
    if (latest == 0) {
        rv = meta_config_empty(sm->nbuckets, &sm->latest);
    } else {
        char key[9], *err = NULL, *val;
        size_t len = 0;
        meta_config_key(key, latest);
        val = leveldb_get(sm->ldb.db, sm->ldb.ropts, key, sizeof key, &len, &err);
        if (err != NULL) {
            return rfs_ldb_error(err, errmsg, "read latest configuration");
        }
        if (val != NULL) {
            sm->latest = raftfs__meta_config__unpack(&proto_allocator, len, (uint8_t *)val);
            leveldb_free(val);
        }
        if (sm->latest == NULL || sm->latest->n_buckets != sm->nbuckets ||
            sm->latest->version != latest) {
            rfs_errmsg_printf(errmsg, "latest configuration %llu missing or damaged",
                              (unsigned long long)latest);
            return RFS_ECORRUPT;
        }
    }
    if (rv == 0) {
        rv = load_sessions(sm, errmsg);
    }
    return rv;
}

int meta_sm_open(struct meta_sm **out, const char *dir, uint32_t nbuckets, char *errmsg)
{
    char path[PATH_MAX];
    struct meta_sm *sm;
    char *err = NULL;
    uint64_t stored = 0;
    int found = 0, rv;

    *out = NULL;
    if (nbuckets == 0 || nbuckets > META_MAX_BUCKETS) {
        rfs_errmsg_printf(errmsg, "meta: %u buckets (1 to %u)", nbuckets, META_MAX_BUCKETS);
        return RFS_EINVAL;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, META_DB_NAME) >= sizeof path) {
        rfs_errmsg_printf(errmsg, "meta: directory name too long");
        return RFS_EINVAL;
    }
    sm = rfs_calloc(1, sizeof *sm);
    if (sm == NULL || (sm->dir = rfs_strdup(dir)) == NULL) {
        rfs_free(sm);
        rfs_errmsg_printf(errmsg, "meta open: out of memory");
        return RFS_ENOMEM;
    }
    sm->nbuckets = nbuckets;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        rfs_errmsg_printf(errmsg, "mkdir %s: %s", dir, strerror(errno));
        rv = RFS_EIO;
        goto err;
    }
    rv = rfs_ldb_open(&sm->ldb, path, errmsg);
    if (rv != 0) {
        goto err;
    }
    rv = rfs_ldb_get_u64(&sm->ldb, META_KEY_BUCKETS, &stored, &found, errmsg);
    if (rv != 0) {
        goto err;
    }
    if (found && stored != nbuckets) {
        rfs_errmsg_printf(errmsg,
                          "this meta group was created with %llu buckets, not %u (the number "
                          "of buckets is fixed at creation: start with --buckets %llu)",
                          (unsigned long long)stored, nbuckets, (unsigned long long)stored);
        rv = RFS_EINVAL;
        goto err;
    }
    if (!found) {
        unsigned char num[8];
        rfs_put_le64(num, nbuckets);
        leveldb_put(sm->ldb.db, sm->ldb.wopts_sync, META_KEY_BUCKETS, strlen(META_KEY_BUCKETS),
                    (char *)num, sizeof num, &err);
        if (err != NULL) {
            rv = rfs_ldb_error(err, errmsg, "record the number of buckets");
            goto err;
        }
    }
    rv = meta_sm_load(sm, errmsg);
    if (rv != 0) {
        goto err;
    }
    rfs_infof("meta: opened %s (%u buckets), applied index %llu, configuration %llu", path,
              nbuckets, (unsigned long long)sm->applied, (unsigned long long)sm->latest->version);
    *out = sm;
    return 0;
err:
    rfs_errmsg_wrapf(errmsg, "meta open %s", dir);
    meta_sm_close(sm);
    return rv;
}

void meta_sm_close(struct meta_sm *sm)
{
    if (sm == NULL) {
        return;
    }
    sessions_clear(sm);
    rfs_free(sm->sessions);
    if (sm->latest != NULL) {
        raftfs__meta_config__free_unpacked(sm->latest, &proto_allocator);
    }
    rfs_ldb_close(&sm->ldb);
    rfs_free(sm->dir);
    rfs_free(sm);
}

static raft_index sm_applied(void *data)
{
    return ((struct meta_sm *)data)->applied;
}

static int sm_usable(struct meta_sm *sm, char *errmsg)
{
    if (sm->ldb.db == NULL || sm->latest == NULL) {
        rfs_errmsg_printf(errmsg, "meta: database unusable after a failed write or restore");
        return RFS_EIO;
    }
    return 0;
}

/* KvReply {status, error, value = MetaReply}. */
static int reply_pack(struct meta_result *res, struct rfs_buf *out)
{
    Raftfs__KvReply kr = RAFTFS__KV_REPLY__INIT;
    struct rfs_buf inner;
    int rv = meta_pack(&res->r.base, &inner);
    if (rv != 0) {
        return rv;
    }
    kr.status = res->r.status;
    kr.error = res->r.error != NULL ? res->r.error : (char *)"";
    kr.value.data = inner.base;
    kr.value.len = inner.len;
    rv = meta_pack(&kr.base, out);
    rfs_free(inner.base);
    return rv;
}

static int reply_error(struct rfs_buf *out, int status, const char *error)
{
    struct meta_result res;
    meta_result_init(&res);
    res.r.status = (uint32_t)status;
    res.r.error = (char *)error;
    return reply_pack(&res, out);
}

/* Decode KvRequest + its MetaRequest; NULL *kreq / *mreq with rv 0 means malformed (a
 * reply has been made). */
static int decode(const void *data, size_t len, Raftfs__KvOp want, Raftfs__KvRequest **kreq,
                  Raftfs__MetaRequest **mreq, struct rfs_buf *reply)
{
    *mreq = NULL;
    *kreq = raftfs__kv_request__unpack(&proto_allocator, len, data);
    if (*kreq == NULL) {
        char msg[64];
        snprintf(msg, sizeof msg, "malformed KvRequest (%zu bytes)", len);
        return reply_error(reply, RFS_EPROTO, msg);
    }
    if ((*kreq)->op != want) {
        return reply_error(reply, RFS_EINVAL,
                           want == RAFTFS__KV_OP__KV_META_READ
                               ? "query: this is a meta group; only KV_META_READ is read-only"
                               : "this is a meta group: send KV_META_WRITE or KV_META_READ");
    }
    *mreq = raftfs__meta_request__unpack(&proto_allocator, (*kreq)->value.len, (*kreq)->value.data);
    if (*mreq == NULL) {
        return reply_error(reply, RFS_EPROTO, "malformed MetaRequest");
    }
    return 0;
}

static void decoded_free(Raftfs__KvRequest *kreq, Raftfs__MetaRequest *mreq)
{
    if (mreq != NULL) {
        raftfs__meta_request__free_unpacked(mreq, &proto_allocator);
    }
    if (kreq != NULL) {
        raftfs__kv_request__free_unpacked(kreq, &proto_allocator);
    }
}

static void sessions_sweep(struct meta_sm *sm, leveldb_writebatch_t *wb, uint64_t now_ms)
{
    size_t k = 0;
    for (size_t i = 0; i < sm->n_sessions; i++) {
        struct meta_session *s = &sm->sessions[i];
        if (now_ms > s->last_ms && now_ms - s->last_ms > META_SESSION_TTL_MS) {
            char key[9];
            session_key(key, s->client_id);
            leveldb_writebatch_delete(wb, key, sizeof key);
            rfs_free(s->reply.base);
        } else {
            sm->sessions[k++] = *s;
        }
    }
    sm->n_sessions = k;
}

static int apply_one(struct meta_sm *sm, leveldb_writebatch_t *wb, const struct raft_entry *e,
                     uint64_t *now_ms, struct rfs_buf *reply)
{
    Raftfs__KvRequest *kreq;
    Raftfs__MetaRequest *mreq;
    struct meta_session *s = NULL;
    struct meta_result res;
    int rv;

    rv = decode(e->data.base, e->data.len, RAFTFS__KV_OP__KV_META_WRITE, &kreq, &mreq, reply);
    if (rv != 0 || mreq == NULL) {
        decoded_free(kreq, mreq);
        return rv;
    }
    /* Session expiry runs on log time, the same on every replica (kv_sm.c). */
    if (kreq->time_ms > *now_ms) {
        *now_ms = kreq->time_ms;
    }
    if (*now_ms - sm->sweep_ms >= META_SWEEP_INTERVAL_MS) {
        sessions_sweep(sm, wb, *now_ms);
        sm->sweep_ms = *now_ms;
    }
    if (kreq->client_id != 0) {
        s = session_find(sm, kreq->client_id);
    }
    if (s != NULL && kreq->seq == s->last_seq) {
        reply->base = rfs_malloc(s->reply.len ? s->reply.len : 1);
        if (reply->base == NULL) {
            rv = RFS_ENOMEM;
        } else {
            memcpy(reply->base, s->reply.base, s->reply.len);
            reply->len = s->reply.len;
        }
        goto out;
    }
    if (s != NULL && kreq->seq < s->last_seq) {
        char msg[96];
        snprintf(msg, sizeof msg, "seq %llu is older than the session's %llu",
                 (unsigned long long)kreq->seq, (unsigned long long)s->last_seq);
        rv = reply_error(reply, RFS_ESTALE, msg);
        goto out;
    }
    meta_result_init(&res);
    rv = meta_op_write(sm, wb, mreq, &res);
    if (rv == 0) {
        rv = reply_pack(&res, reply);
    }
    meta_result_clear(&res);
    if (rv == 0 && kreq->client_id != 0) {
        char key[9];
        unsigned char hdr[16];
        session_key(key, kreq->client_id);
        rfs_put_le64(hdr, kreq->seq);
        rfs_put_le64(hdr + 8, kreq->time_ms);
        rv = session_set(sm, kreq->client_id, kreq->seq, kreq->time_ms, reply->base, reply->len);
        if (rv == 0) {
            char *val = rfs_malloc(sizeof hdr + reply->len);
            if (val == NULL) {
                rv = RFS_ENOMEM;
            } else {
                memcpy(val, hdr, sizeof hdr);
                memcpy(val + sizeof hdr, reply->base, reply->len);
                leveldb_writebatch_put(wb, key, sizeof key, val, sizeof hdr + reply->len);
                rfs_free(val);
            }
        }
    }
out:
    decoded_free(kreq, mreq);
    return rv;
}

static int sm_apply(void *data, const struct raft_entry *entries, unsigned n,
                    struct rfs_buf *replies, char *errmsg)
{
    struct meta_sm *sm = data;
    raft_index applied = sm->applied;
    uint64_t now_ms = sm->sweep_ms;
    unsigned char num[8];
    leveldb_writebatch_t *wb;
    char *err = NULL;
    int rv = 0;

    for (unsigned i = 0; i < n; i++) {
        replies[i] = (struct rfs_buf){0};
    }
    rv = sm_usable(sm, errmsg);
    if (rv != 0 || n == 0) {
        return rv;
    }
    wb = leveldb_writebatch_create();
    if (wb == NULL) {
        rfs_errmsg_printf(errmsg, "meta apply: out of memory");
        return RFS_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct raft_entry *e = &entries[i];
        if (e->index <= applied) {
            rfs_warnf("meta apply: entry %llu already applied (applied %llu), skipped",
                      (unsigned long long)e->index, (unsigned long long)applied);
            continue;
        }
        applied = e->index;
        if (e->type != RAFT_ENTRY_NORMAL) {
            continue;
        }
        rv = apply_one(sm, wb, e, &now_ms, &replies[i]);
        if (rv != 0) {
            rfs_errmsg_printf(errmsg, "meta apply entry %llu: out of memory",
                              (unsigned long long)e->index);
            goto err;
        }
    }
    if (applied == sm->applied) {
        leveldb_writebatch_destroy(wb);
        return 0;
    }
    rfs_put_le64(num, applied);
    leveldb_writebatch_put(wb, META_KEY_APPLIED, strlen(META_KEY_APPLIED), (char *)num, sizeof num);
    rfs_put_le64(num, sm->sweep_ms);
    leveldb_writebatch_put(wb, META_KEY_SWEEP, strlen(META_KEY_SWEEP), (char *)num, sizeof num);
    leveldb_write(sm->ldb.db, sm->ldb.wopts, wb, &err);
    if (err != NULL) {
        rv = rfs_ldb_error(err, errmsg, "meta apply: leveldb write");
        goto err;
    }
    leveldb_writebatch_destroy(wb);
    sm->applied = applied;
    return 0;
err:
    leveldb_writebatch_destroy(wb);
    for (unsigned i = 0; i < n; i++) {
        rfs_free(replies[i].base);
        replies[i] = (struct rfs_buf){0};
    }
    {
        /* The cache ran ahead of the database: put it back (the server stops anyway). */
        char ignored[RFS_ERRMSG_SIZE];
        if (meta_sm_load(sm, ignored) != 0 && sm->latest != NULL) {
            raftfs__meta_config__free_unpacked(sm->latest, &proto_allocator);
            sm->latest = NULL;
        }
    }
    return rv;
}

static int sm_query(void *data, const void *cmd, size_t len, struct rfs_buf *reply, char *errmsg)
{
    struct meta_sm *sm = data;
    Raftfs__KvRequest *kreq;
    Raftfs__MetaRequest *mreq;
    struct meta_result res;
    int rv;

    *reply = (struct rfs_buf){0};
    rv = sm_usable(sm, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = decode(cmd, len, RAFTFS__KV_OP__KV_META_READ, &kreq, &mreq, reply);
    if (rv == 0 && mreq != NULL) {
        meta_result_init(&res);
        rv = meta_op_query(sm, mreq, &res, errmsg);
        if (rv == 0) {
            rv = reply_pack(&res, reply);
        }
        meta_result_clear(&res);
    }
    decoded_free(kreq, mreq);
    if (rv == RFS_ENOMEM) {
        rfs_errmsg_printf(errmsg, "meta query: out of memory");
    }
    return rv;
}

static int sm_snapshot(void *data, struct rfs_buf *out, raft_index *index, char *errmsg)
{
    struct meta_sm *sm = data;
    int rv = sm_usable(sm, errmsg);
    return rv != 0 ? rv : meta_snapshot_encode(sm, out, index, errmsg);
}

static int sm_restore(void *data, raft_index index, const void *buf, size_t len, char *errmsg)
{
    return meta_snapshot_restore(data, index, buf, len, errmsg);
}

const struct rfs_sm_ops meta_sm_ops = {
    .applied = sm_applied,
    .apply = sm_apply,
    .query = sm_query,
    .snapshot = sm_snapshot,
    .restore = sm_restore,
};
