/* Buckets of a sharded group (docs/sharding.md): which buckets the group serves, and the
 * commands that move a bucket between groups.
 *
 * The group applies meta configurations one version at a time through its own log
 * (KV_CONFIG). Applying version V compares the group's owner of each bucket in V-1 and V:
 *   ours in both                 SERVING stays SERVING
 *   new to us, had no owner      SERVING (an empty bucket)
 *   new to us, had another owner PULLING: the records are still at the old owner
 *   ours in V-1, not in V        BE_PULLED: frozen, kept until the new owner says GC
 * The mover (server/mover.c) of the new owner reads the bucket from the old owner in
 * chunks (KV_BUCKET_PULL, a linearizable read there) and proposes each chunk here
 * (KV_BUCKET_INSTALL, accepted only at the chunk's expected start key, so a duplicate or
 * stale chunk changes nothing). After the last chunk the bucket is GC_OWNER: served, while
 * the old owner is told to delete its copy (KV_BUCKET_GC there, in chunks); then
 * KV_BUCKET_GCED makes it SERVING. The next configuration is accepted only when every
 * bucket has settled (SERVING or NOT_OWNED), so each bucket moves one hop at a time and a
 * group's BE_PULLED bucket is always the one of the version the group is at.
 *
 * A bucket's records are two LevelDB ranges: 'd'|bucket (data) and 's'|bucket (sessions),
 * so the exactly-once sessions of the bucket's keys travel with it.
 *
 * LevelDB: 'b' | bucket (u16 BE) -> state (1 byte) | resume key (PULLING);
 *          'm' "config" / "prev" -> packed MetaConfig; 'm' "sharded" -> group id (u64 LE). */
#include <string.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "../common/log.h"
#include "internal.h"

/* Most records or bytes one GC command deletes; the mover repeats it until done. */
#define GC_CHUNK_RECORDS 10000u
#define GC_CHUNK_BYTES   (4u << 20)
/* Default and largest pull chunk. */
#define PULL_DEFAULT_BYTES (1u << 20)
#define PULL_MAX_BYTES     (16u << 20)

static void bucket_key(char out[3], uint32_t bucket)
{
    out[0] = KV_PREFIX_BUCKET;
    out[1] = (char)(bucket >> 8);
    out[2] = (char)bucket;
}

/* The LevelDB range [lo, hi) of bucket's records under prefix p. */
static void bucket_range(char p, uint32_t bucket, char lo[3], char hi[3])
{
    lo[0] = p;
    lo[1] = (char)(bucket >> 8);
    lo[2] = (char)bucket;
    if (bucket < 0xffff) {
        hi[0] = p;
        hi[1] = (char)((bucket + 1) >> 8);
        hi[2] = (char)(bucket + 1);
    } else {
        hi[0] = (char)(p + 1);
        hi[1] = 0;
        hi[2] = 0;
    }
}

/* A bucket's records, in key order: data, transaction locks, sessions, transaction records. */
static const char bucket_prefixes[] = {KV_PREFIX_DATA, KV_PREFIX_LOCK, KV_PREFIX_SESSION,
                                       KV_PREFIX_TXN};
#define N_PREFIXES ((int)sizeof bucket_prefixes)

/* Whether a raw LevelDB key is one of bucket's records. */
static int key_in_bucket(const void *key, size_t len, uint32_t bucket)
{
    const unsigned char *k = key;
    return len >= 3 && memchr(bucket_prefixes, k[0], sizeof bucket_prefixes) != NULL &&
           (((uint32_t)k[1] << 8) | k[2]) == bucket;
}

uint64_t kv_shard_version(const struct kv_sm *sm)
{
    return sm->cfg != NULL ? sm->cfg->version : 0;
}

static uint64_t owner_in(const Raftfs__MetaConfig *c, uint32_t bucket)
{
    return c != NULL && bucket < c->n_buckets ? c->buckets[bucket] : 0;
}

int kv_shard_serves(const struct kv_sm *sm, uint32_t bucket)
{
    if (!sm->sharded) {
        return 1;
    }
    return bucket < sm->nbuckets && (sm->states[bucket] == RAFTFS__BUCKET_STATE__BUCKET_SERVING ||
                                     sm->states[bucket] == RAFTFS__BUCKET_STATE__BUCKET_GC_OWNER);
}

/* ---- loading ---- */

static int load_config(struct kv_sm *sm, const char *key, Raftfs__MetaConfig **out, char *errmsg)
{
    char *err = NULL;
    size_t len = 0;
    char *v = leveldb_get(sm->db.db, sm->db.ropts, key, strlen(key), &len, &err);
    *out = NULL;
    if (err != NULL) {
        return rfs_ldb_error(err, errmsg, "kv: reading the configuration");
    }
    if (v == NULL) {
        return 0;
    }
    *out = raftfs__meta_config__unpack(NULL, len, (const uint8_t *)v);
    leveldb_free(v);
    if (*out == NULL) {
        rfs_errmsg_printf(errmsg, "kv: stored configuration '%s' does not decode", key);
        return RFS_ECORRUPT;
    }
    return 0;
}

static void free_config(Raftfs__MetaConfig **c)
{
    if (*c != NULL) {
        raftfs__meta_config__free_unpacked(*c, NULL);
        *c = NULL;
    }
}

int kv_shard_load(struct kv_sm *sm, char *errmsg)
{
    static const char lo[1] = {KV_PREFIX_BUCKET};
    static const char hi[1] = {KV_PREFIX_BUCKET + 1};
    struct kv_cursor c;
    uint64_t gid = 0;
    int rv, rv2;

    free_config(&sm->cfg);
    free_config(&sm->prev);
    if (sm->states == NULL) {
        sm->states = rfs_calloc(sm->nbuckets, 1);
        if (sm->states == NULL) {
            rfs_errmsg_printf(errmsg, "kv: out of memory");
            return RFS_ENOMEM;
        }
    }
    memset(sm->states, 0, sm->nbuckets);
    rv = rfs_ldb_get_u64(&sm->db, KV_META_SHARDED, &gid, NULL, errmsg);
    if (rv == 0 && gid != 0) {
        sm->sharded = 1;
        sm->gid = gid;
    }
    if (rv == 0) {
        rv = load_config(sm, KV_META_CONFIG, &sm->cfg, errmsg);
    }
    if (rv == 0) {
        rv = load_config(sm, KV_META_PREV, &sm->prev, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    rv = kv_cursor_open(&c, &sm->db, sm->db.ropts, lo, 1, hi, 1, NULL, 0);
    for (; rv == 0 && c.valid; kv_cursor_next(&c)) {
        uint32_t b;
        if (c.klen != 3 || c.vlen < 1) {
            rfs_errmsg_printf(errmsg, "kv: bucket record of %zu/%zu bytes", c.klen, c.vlen);
            rv = RFS_ECORRUPT;
            break;
        }
        b = ((uint32_t)(unsigned char)c.key[1] << 8) | (unsigned char)c.key[2];
        if (b >= sm->nbuckets) {
            rfs_errmsg_printf(errmsg, "kv: state of bucket %u, but there are %u buckets", b,
                              sm->nbuckets);
            rv = RFS_ECORRUPT;
            break;
        }
        sm->states[b] = (uint8_t)c.val[0];
    }
    rv2 = kv_cursor_close(&c, errmsg);
    return rv != 0 ? rv : rv2;
}

int kv_sm_set_sharding(struct kv_sm *sm, uint64_t gid, char *errmsg)
{
    uint64_t have = 0;
    unsigned char num[8];
    char *err = NULL;
    int rv = rfs_ldb_get_u64(&sm->db, KV_META_SHARDED, &have, NULL, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (have == gid) {
        return 0;
    }
    if (have != 0) {
        if (gid == 0) {
            rfs_errmsg_printf(errmsg,
                              "this data directory belongs to sharded group %llu: start the "
                              "server with --gid %llu --meta M0,M1,M2",
                              (unsigned long long)have, (unsigned long long)have);
        } else {
            rfs_errmsg_printf(errmsg, "this data directory belongs to sharded group %llu, not %llu",
                              (unsigned long long)have, (unsigned long long)gid);
        }
        return RFS_EINVAL;
    }
    if (sm->applied > 0) {
        rfs_errmsg_printf(errmsg,
                          "this data directory holds an unsharded group's data (applied index "
                          "%llu); start it without --meta, or use a new --data directory",
                          (unsigned long long)sm->applied);
        return RFS_EINVAL;
    }
    rfs_put_le64(num, gid);
    leveldb_put(sm->db.db, sm->db.wopts_sync, KV_META_SHARDED, strlen(KV_META_SHARDED),
                (const char *)num, sizeof num, &err);
    if (err != NULL) {
        return rfs_ldb_error(err, errmsg, "kv: recording the group id");
    }
    sm->sharded = 1;
    sm->gid = gid;
    return 0;
}

void kv_shard_free(struct kv_sm *sm)
{
    free_config(&sm->cfg);
    free_config(&sm->prev);
    rfs_free(sm->states);
    rfs_free(sm->compact);
    sm->states = NULL;
    sm->compact = NULL;
}

/* ---- which buckets a request touches ---- */

uint32_t kv_request_bucket(const struct kv_sm *sm, const Raftfs__KvRequest *req)
{
    const ProtobufCBinaryData *k = &req->key;
    if (req->op == RAFTFS__KV_OP__KV_TXN || req->op == RAFTFS__KV_OP__KV_TXN_PREPARE) {
        if (req->n_writes > 0) {
            k = &req->writes[0]->key;
        } else if (req->n_reads > 0) {
            k = &req->reads[0]->key;
        }
    } else if (req->op == RAFTFS__KV_OP__KV_TXN_COMMIT || req->op == RAFTFS__KV_OP__KV_TXN_ABORT) {
        k = req->n_keys > 0 ? &req->keys[0] : &req->primary;
    } else if (req->op == RAFTFS__KV_OP__KV_TXN_CHECK) {
        k = &req->primary;
    }
    return kv_bucket_of(k->data, k->len, sm->nbuckets);
}

static int check_key(const struct kv_sm *sm, const ProtobufCBinaryData *k, struct kv_result *res)
{
    uint32_t b = kv_bucket_of(k->data, k->len, sm->nbuckets);
    if (kv_shard_serves(sm, b)) {
        return 1;
    }
    kv_result_fail(res, RFS_EWRONGGROUP, "bucket %u is not served by group %llu at version %llu", b,
                   (unsigned long long)sm->gid, (unsigned long long)kv_shard_version(sm));
    return 0;
}

int kv_shard_check(const struct kv_sm *sm, const Raftfs__KvRequest *req, struct kv_result *res)
{
    if (!sm->sharded) {
        return 1;
    }
    switch (req->op) {
        case RAFTFS__KV_OP__KV_GET:
        case RAFTFS__KV_OP__KV_PUT:
        case RAFTFS__KV_OP__KV_APPEND:
        case RAFTFS__KV_OP__KV_DELETE:
        case RAFTFS__KV_OP__KV_CAS:
            return check_key(sm, &req->key, res);
        case RAFTFS__KV_OP__KV_SCAN: {
            const char *tag;
            size_t taglen;
            if (req->local) {
                return 1; /* kv_op_scan reads only the buckets served here */
            }
            if (!kv_key_tag(req->key.data, req->key.len, &tag, &taglen)) {
                kv_result_fail(res, RFS_EINVAL,
                               "a scan in a sharded cluster reads one bucket: start the key "
                               "with a {tag} that names it (or ask one group for its buckets)");
                return 0;
            }
            return check_key(sm, &req->key, res);
        }
        case RAFTFS__KV_OP__KV_TXN_COMMIT:
        case RAFTFS__KV_OP__KV_TXN_ABORT:
            for (size_t i = 0; i < req->n_keys; i++) {
                if (!check_key(sm, &req->keys[i], res)) {
                    return 0;
                }
            }
            return !req->is_primary || check_key(sm, &req->primary, res);
        case RAFTFS__KV_OP__KV_TXN_CHECK:
            return check_key(sm, &req->primary, res);
        case RAFTFS__KV_OP__KV_TXN:
        case RAFTFS__KV_OP__KV_TXN_PREPARE:
            for (size_t i = 0; i < req->n_reads; i++) {
                if (!check_key(sm, &req->reads[i]->key, res)) {
                    return 0;
                }
            }
            for (size_t i = 0; i < req->n_writes; i++) {
                if (!check_key(sm, &req->writes[i]->key, res)) {
                    return 0;
                }
            }
            return 1;
        default:
            return 1;
    }
}

/* ---- applying migration commands ---- */

static int put_state(struct kv_batch *b, struct kv_sm *sm, uint32_t bucket, int state,
                     const void *resume, size_t rlen)
{
    char key[3];
    unsigned char st = (unsigned char)state;
    bucket_key(key, bucket);
    sm->states[bucket] = (uint8_t)state;
    if (state == RAFTFS__BUCKET_STATE__BUCKET_NOT_OWNED) {
        return kv_batch_delete(b, key, sizeof key);
    }
    return kv_batch_put2(b, key, sizeof key, &st, 1, resume, rlen);
}

static int put_config(struct kv_batch *b, const char *key, const Raftfs__MetaConfig *c)
{
    size_t len = raftfs__meta_config__get_packed_size(c);
    char *buf = rfs_malloc(len ? len : 1);
    if (buf == NULL) {
        return RFS_ENOMEM;
    }
    raftfs__meta_config__pack(c, (uint8_t *)buf);
    return kv_batch_put_owned(b, key, strlen(key), buf, len);
}

/* A private copy of a configuration (pack, unpack). */
static Raftfs__MetaConfig *config_dup(const Raftfs__MetaConfig *c)
{
    size_t len = raftfs__meta_config__get_packed_size(c);
    uint8_t *buf = rfs_malloc(len ? len : 1);
    Raftfs__MetaConfig *copy;
    if (buf == NULL) {
        return NULL;
    }
    raftfs__meta_config__pack(c, buf);
    copy = raftfs__meta_config__unpack(NULL, len, buf);
    rfs_free(buf);
    return copy;
}

static int all_settled(const struct kv_sm *sm, uint32_t *busy)
{
    for (uint32_t b = 0; b < sm->nbuckets; b++) {
        if (sm->states[b] != RAFTFS__BUCKET_STATE__BUCKET_SERVING &&
            sm->states[b] != RAFTFS__BUCKET_STATE__BUCKET_NOT_OWNED) {
            *busy = b;
            return 0;
        }
    }
    return 1;
}

static int apply_config(struct kv_sm *sm, struct kv_batch *b, const Raftfs__KvRequest *req,
                        struct kv_result *res)
{
    const Raftfs__MetaConfig *next = req->config;
    uint64_t version = kv_shard_version(sm);
    Raftfs__MetaConfig *copy;
    unsigned pulling = 0, gone = 0, fresh = 0;
    uint32_t busy;
    int rv;

    if (next == NULL || next->version != version + 1) {
        /* A duplicate or a stale proposal: nothing to do. */
        res->r.version = version;
        return 0;
    }
    if (next->n_buckets != sm->nbuckets) {
        kv_result_fail(res, RFS_EINVAL,
                       "the meta group has %zu buckets but this group was started with "
                       "--buckets %u: restart it with --buckets %zu",
                       next->n_buckets, sm->nbuckets, next->n_buckets);
        return 0;
    }
    if (!all_settled(sm, &busy)) {
        kv_result_fail(res, RFS_EBUSY, "bucket %u is still moving in configuration %llu", busy,
                       (unsigned long long)version);
        return 0;
    }
    copy = config_dup(next);
    if (copy == NULL) {
        return RFS_ENOMEM;
    }
    for (uint32_t bk = 0; bk < sm->nbuckets; bk++) {
        uint64_t was = owner_in(sm->cfg, bk), now = next->buckets[bk];
        int st = sm->states[bk];
        char lo[3], hi[3];
        if (now == sm->gid && was != sm->gid) {
            if (was == 0) {
                st = RAFTFS__BUCKET_STATE__BUCKET_SERVING;
                fresh++;
            } else {
                st = RAFTFS__BUCKET_STATE__BUCKET_PULLING;
                pulling++;
            }
        } else if (now != sm->gid && was == sm->gid) {
            st = RAFTFS__BUCKET_STATE__BUCKET_BE_PULLED;
            gone++;
        } else {
            continue;
        }
        bucket_range(KV_PREFIX_DATA, bk, lo, hi);
        rv = put_state(b, sm, bk, st, st == RAFTFS__BUCKET_STATE__BUCKET_PULLING ? lo : NULL,
                       st == RAFTFS__BUCKET_STATE__BUCKET_PULLING ? sizeof lo : 0);
        if (rv != 0) {
            raftfs__meta_config__free_unpacked(copy, NULL);
            return rv;
        }
    }
    rv = put_config(b, KV_META_CONFIG, next);
    if (rv == 0 && sm->cfg != NULL) {
        rv = put_config(b, KV_META_PREV, sm->cfg);
    }
    if (rv != 0) {
        raftfs__meta_config__free_unpacked(copy, NULL);
        return rv;
    }
    free_config(&sm->prev);
    sm->prev = sm->cfg;
    sm->cfg = copy;
    res->r.version = copy->version;
    res->r.found = 1;
    rfs_infof("kv: configuration %llu: %u buckets to pull, %u moving away, %u new",
              (unsigned long long)copy->version, pulling, gone, fresh);
    return 0;
}

/* Raise the version base so that every later write of this group gets a version above
 * every installed one: a key's version then never repeats, even after moving away and back
 * (a CAS or transaction compares versions for equality). */
static int raise_vbase(struct kv_sm *sm, struct kv_batch *b, raft_index index, uint64_t installed)
{
    unsigned char num[8];
    if (installed < index + sm->vbase) {
        return 0;
    }
    sm->vbase = installed - index + 1;
    rfs_put_le64(num, sm->vbase);
    return kv_batch_put(b, KV_META_VBASE, strlen(KV_META_VBASE), num, sizeof num);
}

static int apply_install(struct kv_sm *sm, struct kv_batch *b, raft_index index,
                         const Raftfs__KvRequest *req, struct kv_result *res, char *errmsg)
{
    uint32_t bk = req->bucket;
    uint64_t top = 0;
    struct kv_value resume = {0};
    char key[3];
    int found = 0, rv;

    if (bk >= sm->nbuckets || req->config_version != kv_shard_version(sm) ||
        sm->states[bk] != RAFTFS__BUCKET_STATE__BUCKET_PULLING) {
        return 0; /* stale: the bucket moved on */
    }
    bucket_key(key, bk);
    rv = kv_batch_get(b, key, sizeof key, &found, &resume, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (!found || resume.len < 1 ||
        kv_key_cmp(resume.data + 1, resume.len - 1, req->key.data, req->key.len) != 0) {
        kv_value_clear(&resume);
        return 0; /* a duplicate or out-of-order chunk */
    }
    kv_value_clear(&resume);
    for (size_t i = 0; i < req->n_kvs; i++) {
        const Raftfs__KeyValue *kv = req->kvs[i];
        if (!key_in_bucket(kv->key.data, kv->key.len, bk) ||
            (kv->key.data[0] == KV_PREFIX_DATA && kv->value.len < KV_VERSION_LEN)) {
            kv_result_fail(res, RFS_EINVAL, "chunk of bucket %u holds a malformed record", bk);
            return 0;
        }
        if (kv->key.data[0] == KV_PREFIX_DATA && rfs_get_le64(kv->value.data) > top) {
            top = rfs_get_le64(kv->value.data);
        }
    }
    rv = raise_vbase(sm, b, index, top);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < req->n_kvs; i++) {
        const Raftfs__KeyValue *kv = req->kvs[i];
        rv = kv_batch_put(b, kv->key.data, kv->key.len, kv->value.data, kv->value.len);
        if (rv != 0) {
            return rv;
        }
        /* The bucket's ranges are empty here until it arrives: every lock is a new one. */
        sm->n_locks += kv->key.data[0] == KV_PREFIX_LOCK;
    }
    if (req->done) {
        rv = put_state(b, sm, bk, RAFTFS__BUCKET_STATE__BUCKET_GC_OWNER, NULL, 0);
        rfs_infof("kv: bucket %u installed (configuration %llu)", bk,
                  (unsigned long long)req->config_version);
    } else {
        rv = put_state(b, sm, bk, RAFTFS__BUCKET_STATE__BUCKET_PULLING, req->end_key.data,
                       req->end_key.len);
    }
    res->r.found = 1;
    return rv;
}

/* The old owner has not reached the configuration the request is about: "not yet". */
static int not_yet(struct kv_result *res, uint64_t want, uint64_t have)
{
    if (want <= have) {
        return 0;
    }
    kv_result_fail(res, RFS_EBUSY, "configuration %llu not applied yet (at %llu)",
                   (unsigned long long)want, (unsigned long long)have);
    return 1;
}

static int mark_compact(struct kv_sm *sm, uint32_t bk)
{
    if (sm->compact == NULL) {
        sm->compact = rfs_calloc(sm->nbuckets, 1);
        if (sm->compact == NULL) {
            return RFS_ENOMEM;
        }
    }
    sm->compact[bk] = 1;
    sm->n_compact++;
    return 0;
}

/* Delete a chunk of a moved-away bucket; res->r.more while records remain. */
static int apply_gc(struct kv_sm *sm, struct kv_batch *b, const Raftfs__KvRequest *req,
                    struct kv_result *res, char *errmsg)
{
    uint32_t bk = req->bucket;
    uint64_t version = kv_shard_version(sm);
    struct kv_pending **sorted = NULL;
    size_t nsorted = 0, n = 0, bytes = 0;
    int rv = 0;

    if (not_yet(res, req->config_version, version)) {
        return 0;
    }
    if (bk >= sm->nbuckets || req->config_version < version ||
        sm->states[bk] != RAFTFS__BUCKET_STATE__BUCKET_BE_PULLED) {
        return 0; /* already deleted */
    }
    rv = kv_batch_sorted(b, &sorted, &nsorted);
    for (int p = 0; rv == 0 && p < N_PREFIXES && !res->r.more; p++) {
        char lo[3], hi[3];
        struct kv_cursor c;
        int rv2;
        bucket_range(bucket_prefixes[p], bk, lo, hi);
        rv = kv_cursor_open(&c, b->db, b->db->ropts, lo, 3, hi, 3, sorted, nsorted);
        for (; rv == 0 && c.valid; kv_cursor_next(&c)) {
            if (n >= GC_CHUNK_RECORDS || bytes >= GC_CHUNK_BYTES) {
                res->r.more = 1;
                break;
            }
            bytes += c.klen + c.vlen;
            n++;
            if (c.key[0] == KV_PREFIX_LOCK && sm->n_locks > 0) {
                sm->n_locks--;
            }
            rv = kv_batch_delete(b, c.key, c.klen);
        }
        rv2 = kv_cursor_close(&c, errmsg);
        rv = rv != 0 ? rv : rv2;
    }
    rfs_free(sorted);
    if (rv == 0 && !res->r.more) {
        rv = put_state(b, sm, bk, RAFTFS__BUCKET_STATE__BUCKET_NOT_OWNED, NULL, 0);
        if (rv == 0) {
            rv = mark_compact(sm, bk);
        }
        rfs_infof("kv: bucket %u deleted after its move (configuration %llu)", bk,
                  (unsigned long long)version);
    }
    return rv;
}

static int apply_gced(struct kv_sm *sm, struct kv_batch *b, const Raftfs__KvRequest *req)
{
    uint32_t bk = req->bucket;
    if (bk >= sm->nbuckets || req->config_version != kv_shard_version(sm) ||
        sm->states[bk] != RAFTFS__BUCKET_STATE__BUCKET_GC_OWNER) {
        return 0;
    }
    return put_state(b, sm, bk, RAFTFS__BUCKET_STATE__BUCKET_SERVING, NULL, 0);
}

int kv_shard_apply(struct kv_sm *sm, struct kv_batch *b, raft_index index,
                   const Raftfs__KvRequest *req, struct kv_result *res, char *errmsg)
{
    if (!sm->sharded) {
        kv_result_fail(res, RFS_EINVAL, "this group is not sharded (started without --meta)");
        return 0;
    }
    res->r.version = kv_shard_version(sm);
    switch (req->op) {
        case RAFTFS__KV_OP__KV_CONFIG:
            return apply_config(sm, b, req, res);
        case RAFTFS__KV_OP__KV_BUCKET_INSTALL:
            return apply_install(sm, b, index, req, res, errmsg);
        case RAFTFS__KV_OP__KV_BUCKET_GC:
            return apply_gc(sm, b, req, res, errmsg);
        case RAFTFS__KV_OP__KV_BUCKET_GCED:
            return apply_gced(sm, b, req);
        default:
            kv_result_fail(res, RFS_EINVAL, "op %d is not a migration write", (int)req->op);
            return 0;
    }
}

void kv_shard_compact(struct kv_sm *sm)
{
    if (sm->n_compact == 0) {
        return;
    }
    for (uint32_t bk = 0; bk < sm->nbuckets; bk++) {
        if (!sm->compact[bk]) {
            continue;
        }
        sm->compact[bk] = 0;
        for (int p = 0; p < N_PREFIXES; p++) {
            char lo[3], hi[3];
            bucket_range(bucket_prefixes[p], bk, lo, hi);
            leveldb_compact_range(sm->db.db, lo, 3, hi, 3);
        }
    }
    sm->n_compact = 0;
}

/* ---- read-only commands ---- */

/* A chunk of a BE_PULLED bucket for its new owner: raw records from req->key on. */
static int query_pull(struct kv_sm *sm, const Raftfs__KvRequest *req, struct kv_result *res,
                      char *errmsg)
{
    uint32_t bk = req->bucket;
    uint64_t version = kv_shard_version(sm);
    size_t limit = req->limit ? req->limit : PULL_DEFAULT_BYTES;
    size_t n = 0, cap = 0, used = 0, bufcap = 0;
    struct {
        size_t koff, klen, voff, vlen;
    } *items = NULL;
    int rv = 0;

    if (limit > PULL_MAX_BYTES) {
        limit = PULL_MAX_BYTES;
    }
    if (not_yet(res, req->config_version, version)) {
        return 0;
    }
    if (bk >= sm->nbuckets || req->config_version < version ||
        sm->states[bk] != RAFTFS__BUCKET_STATE__BUCKET_BE_PULLED) {
        kv_result_fail(res, RFS_ESTALE, "bucket %u is not waiting to be pulled at version %llu", bk,
                       (unsigned long long)req->config_version);
        return 0;
    }
    for (int p = 0; rv == 0 && p < N_PREFIXES && !res->r.more; p++) {
        char lo[3], hi[3];
        const char *start = lo;
        size_t slen = 3;
        struct kv_cursor c;
        int rv2;
        bucket_range(bucket_prefixes[p], bk, lo, hi);
        if (kv_key_cmp(req->key.data, req->key.len, hi, 3) >= 0) {
            continue;
        }
        if (kv_key_cmp(req->key.data, req->key.len, lo, 3) > 0) {
            start = (const char *)req->key.data;
            slen = req->key.len;
        }
        rv = kv_cursor_open(&c, &sm->db, sm->db.ropts, start, slen, hi, 3, NULL, 0);
        for (; rv == 0 && c.valid; kv_cursor_next(&c)) {
            if (n > 0 && used >= limit) {
                res->r.more = 1;
                res->r.next_key.len = c.klen;
                break;
            }
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                void *ni = rfs_realloc(items, nc * sizeof *items);
                if (ni == NULL) {
                    rv = RFS_ENOMEM;
                    break;
                }
                items = ni;
                cap = nc;
            }
            if (bufcap - used < c.klen + c.vlen) {
                size_t nb = bufcap ? bufcap : 4096;
                char *buf;
                while (nb - used < c.klen + c.vlen) {
                    nb *= 2;
                }
                buf = rfs_realloc(res->scan_buf, nb);
                if (buf == NULL) {
                    rv = RFS_ENOMEM;
                    break;
                }
                res->scan_buf = buf;
                bufcap = nb;
            }
            items[n].koff = used;
            items[n].klen = c.klen;
            memcpy(res->scan_buf + used, c.key, c.klen);
            used += c.klen;
            items[n].voff = used;
            items[n].vlen = c.vlen;
            memcpy(res->scan_buf + used, c.val, c.vlen);
            used += c.vlen;
            n++;
        }
        if (rv == 0 && res->r.more) {
            /* The next key goes into the buffer too (the cursor's copy dies with it). */
            size_t need = used + c.klen;
            if (need > bufcap) {
                char *buf = rfs_realloc(res->scan_buf, need);
                if (buf == NULL) {
                    rv = RFS_ENOMEM;
                } else {
                    res->scan_buf = buf;
                    bufcap = need;
                }
            }
            if (rv == 0) {
                memcpy(res->scan_buf + used, c.key, c.klen);
                res->r.next_key.data = (uint8_t *)(uintptr_t)used; /* fixed up below */
                used += c.klen;
            }
        }
        rv2 = kv_cursor_close(&c, errmsg);
        rv = rv != 0 ? rv : rv2;
    }
    if (rv == 0 && n > 0) {
        res->items = rfs_malloc(n * sizeof *res->items);
        res->item_ptrs = rfs_malloc(n * sizeof *res->item_ptrs);
        if (res->items == NULL || res->item_ptrs == NULL) {
            rv = RFS_ENOMEM;
        }
    }
    if (rv == 0) {
        for (size_t i = 0; i < n; i++) {
            Raftfs__KeyValue *kv = &res->items[i];
            raftfs__key_value__init(kv);
            kv->key.data = (uint8_t *)res->scan_buf + items[i].koff;
            kv->key.len = items[i].klen;
            kv->value.data = (uint8_t *)res->scan_buf + items[i].voff;
            kv->value.len = items[i].vlen;
            res->item_ptrs[i] = kv;
        }
        res->r.kvs = res->item_ptrs;
        res->r.n_kvs = n;
        if (res->r.more) {
            res->r.next_key.data = (uint8_t *)res->scan_buf + (uintptr_t)res->r.next_key.data;
        }
        res->r.version = version;
    }
    rfs_free(items);
    return rv;
}

static int query_state(struct kv_sm *sm, struct kv_result *res, char *errmsg)
{
    Raftfs__ShardState st = RAFTFS__SHARD_STATE__INIT;
    uint32_t *states = rfs_calloc(sm->nbuckets, sizeof *states);
    ProtobufCBinaryData *resume = rfs_calloc(sm->nbuckets, sizeof *resume);
    struct kv_value *held = rfs_calloc(sm->nbuckets, sizeof *held);
    struct kv_batch b;
    int rv = 0;

    if (states == NULL || resume == NULL || held == NULL) {
        rv = RFS_ENOMEM;
        goto out;
    }
    kv_batch_init(&b, &sm->db, 0);
    for (uint32_t bk = 0; bk < sm->nbuckets && rv == 0; bk++) {
        states[bk] = sm->states[bk];
        if (sm->states[bk] == RAFTFS__BUCKET_STATE__BUCKET_PULLING) {
            char key[3];
            int found = 0;
            bucket_key(key, bk);
            rv = kv_batch_get(&b, key, sizeof key, &found, &held[bk], errmsg);
            if (rv == 0 && found && held[bk].len > 0) {
                resume[bk].data = (uint8_t *)held[bk].data + 1;
                resume[bk].len = held[bk].len - 1;
            }
        }
    }
    kv_batch_close(&b);
    if (rv != 0) {
        goto out;
    }
    st.version = kv_shard_version(sm);
    st.n_states = sm->nbuckets;
    st.states = states;
    st.n_resume = sm->nbuckets;
    st.resume = resume;
    st.config = sm->cfg;
    st.prev = sm->prev;
    st.sharded = sm->sharded;
    {
        size_t len = raftfs__shard_state__get_packed_size(&st);
        res->scan_buf = rfs_malloc(len ? len : 1);
        if (res->scan_buf == NULL) {
            rv = RFS_ENOMEM;
            goto out;
        }
        raftfs__shard_state__pack(&st, (uint8_t *)res->scan_buf);
        res->r.value.data = (uint8_t *)res->scan_buf;
        res->r.value.len = len;
        res->r.version = st.version;
    }
out:
    if (held != NULL) {
        for (uint32_t bk = 0; bk < sm->nbuckets; bk++) {
            kv_value_clear(&held[bk]);
        }
    }
    rfs_free(held);
    rfs_free(states);
    rfs_free(resume);
    return rv;
}

int kv_shard_query(struct kv_sm *sm, const Raftfs__KvRequest *req, struct kv_result *res,
                   char *errmsg)
{
    switch (req->op) {
        case RAFTFS__KV_OP__KV_BUCKET_PULL:
            if (!sm->sharded) {
                kv_result_fail(res, RFS_EINVAL, "this group is not sharded");
                return 0;
            }
            return query_pull(sm, req, res, errmsg);
        case RAFTFS__KV_OP__KV_SHARD_STATE:
            return query_state(sm, res, errmsg);
        default:
            kv_result_fail(res, RFS_EINVAL, "op %d is not a migration read", (int)req->op);
            return 0;
    }
}
