/* The participant side of cross-group transactions (docs/txn.md): locks with intents on keys,
 * transaction records beside the primary key, and the four commands that move them:
 * PREPARE, COMMIT, ABORT, CHECK. Every operation on a locked key is refused with ELOCKED
 * (kv_txn_unlocked), so no intent is visible before its transaction is decided.
 *
 * LevelDB (both in the bucket of their key, so they move with it):
 *   'l' | bucket | user key  ->  txn id u64 LE | deadline ms u64 LE | intent u8 |
 *                                primary length u32 LE | primary | value
 *   't' | bucket | txn id BE ->  state u8 | deadline ms u64 LE
 * sm->n_locks counts the 'l' records, so that with no transaction in flight the check costs
 * nothing. */
#include <string.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "internal.h"

#define LOCK_HDR   21 /* txn id, deadline, intent, primary length */
#define RECORD_LEN 9

enum { INTENT_NONE = 0, INTENT_PUT = 1, INTENT_DELETE = 2 };

struct lock {
    int found;
    uint64_t txn_id;
    uint64_t deadline;
    int intent;
    const char *primary;
    size_t plen;
    const char *value;
    size_t vlen;
    struct kv_value raw;
};

static char *prefixed_key(char prefix, uint32_t bucket, const void *key, size_t len, size_t *out)
{
    char *k = rfs_malloc(KV_DATA_HDR + len);
    if (k != NULL) {
        kv_key_data(k, bucket, key, len);
        k[0] = prefix;
        *out = KV_DATA_HDR + len;
    }
    return k;
}

static char *lock_key(const struct kv_op_ctx *x, const ProtobufCBinaryData *key, size_t *len)
{
    return prefixed_key(KV_PREFIX_LOCK, kv_bucket_of(key->data, key->len, x->sm->nbuckets),
                        key->data, key->len, len);
}

static void lock_clear(struct lock *l)
{
    kv_value_clear(&l->raw);
    memset(l, 0, sizeof *l);
}

static int lock_get(struct kv_op_ctx *x, const ProtobufCBinaryData *key, struct lock *l,
                    char *errmsg)
{
    size_t klen;
    char *k;
    int rv;
    memset(l, 0, sizeof *l);
    if (x->sm->n_locks == 0) {
        return 0;
    }
    k = lock_key(x, key, &klen);
    if (k == NULL) {
        return RFS_ENOMEM;
    }
    rv = kv_batch_get(x->b, k, klen, &l->found, &l->raw, errmsg);
    rfs_free(k);
    if (rv != 0 || !l->found) {
        return rv;
    }
    if (l->raw.len < LOCK_HDR || rfs_get_le32(l->raw.data + 17) > l->raw.len - LOCK_HDR) {
        kv_value_clear(&l->raw);
        rfs_errmsg_printf(errmsg, "lock record of %zu bytes", l->raw.len);
        return RFS_ECORRUPT;
    }
    l->txn_id = rfs_get_le64(l->raw.data);
    l->deadline = rfs_get_le64(l->raw.data + 8);
    l->intent = (unsigned char)l->raw.data[16];
    l->plen = rfs_get_le32(l->raw.data + 17);
    l->primary = l->raw.data + LOCK_HDR;
    l->value = l->primary + l->plen;
    l->vlen = l->raw.len - LOCK_HDR - l->plen;
    return 0;
}

static int lock_put(struct kv_op_ctx *x, const ProtobufCBinaryData *key, int existed,
                    uint64_t txn_id, uint64_t deadline, int intent,
                    const ProtobufCBinaryData *primary, const ProtobufCBinaryData *value)
{
    size_t klen, vlen = value != NULL ? value->len : 0;
    size_t len = LOCK_HDR + primary->len + vlen;
    char *k = lock_key(x, key, &klen);
    char *v = rfs_malloc(len);
    int rv;
    if (k == NULL || v == NULL) {
        rfs_free(k);
        rfs_free(v);
        return RFS_ENOMEM;
    }
    rfs_put_le64((unsigned char *)v, txn_id);
    rfs_put_le64((unsigned char *)v + 8, deadline);
    v[16] = (char)intent;
    rfs_put_le32((unsigned char *)v + 17, (uint32_t)primary->len);
    if (primary->len > 0) {
        memcpy(v + LOCK_HDR, primary->data, primary->len);
    }
    if (vlen > 0) {
        memcpy(v + LOCK_HDR + primary->len, value->data, vlen);
    }
    rv = kv_batch_put_owned(x->b, k, klen, v, len);
    rfs_free(k);
    if (rv == 0 && !existed) {
        x->sm->n_locks++;
    }
    return rv;
}

static int lock_del(struct kv_op_ctx *x, const ProtobufCBinaryData *key)
{
    size_t klen;
    char *k = lock_key(x, key, &klen);
    int rv;
    if (k == NULL) {
        return RFS_ENOMEM;
    }
    rv = kv_batch_delete(x->b, k, klen);
    rfs_free(k);
    if (rv == 0 && x->sm->n_locks > 0) {
        x->sm->n_locks--;
    }
    return rv;
}

/* ---- transaction records ---- */

static char *record_key(const struct kv_op_ctx *x, const ProtobufCBinaryData *primary,
                        uint64_t txn_id, size_t *len)
{
    unsigned char id[8];
    for (int i = 0; i < 8; i++) {
        id[i] = (unsigned char)(txn_id >> (56 - 8 * i));
    }
    return prefixed_key(KV_PREFIX_TXN, kv_bucket_of(primary->data, primary->len, x->sm->nbuckets),
                        id, sizeof id, len);
}

/* *state: 0 when there is no record. */
static int record_get(struct kv_op_ctx *x, const ProtobufCBinaryData *primary, uint64_t txn_id,
                      int *state, uint64_t *deadline, char *errmsg)
{
    struct kv_value v;
    size_t klen;
    char *k = record_key(x, primary, txn_id, &klen);
    int found = 0, rv;
    *state = 0;
    *deadline = 0;
    if (k == NULL) {
        return RFS_ENOMEM;
    }
    rv = kv_batch_get(x->b, k, klen, &found, &v, errmsg);
    rfs_free(k);
    if (rv != 0 || !found) {
        return rv;
    }
    if (v.len != RECORD_LEN) {
        kv_value_clear(&v);
        rfs_errmsg_printf(errmsg, "transaction record of %zu bytes", v.len);
        return RFS_ECORRUPT;
    }
    *state = (unsigned char)v.data[0];
    *deadline = rfs_get_le64(v.data + 1);
    kv_value_clear(&v);
    return 0;
}

static int record_put(struct kv_op_ctx *x, const ProtobufCBinaryData *primary, uint64_t txn_id,
                      int state, uint64_t deadline)
{
    unsigned char v[RECORD_LEN];
    size_t klen;
    char *k = record_key(x, primary, txn_id, &klen);
    int rv;
    if (k == NULL) {
        return RFS_ENOMEM;
    }
    v[0] = (unsigned char)state;
    rfs_put_le64(v + 1, deadline);
    rv = kv_batch_put(x->b, k, klen, v, sizeof v);
    rfs_free(k);
    return rv;
}

/* ---- meeting locks ---- */

static void fail_locked(struct kv_result *res, const ProtobufCBinaryData *key, const struct lock *l)
{
    Raftfs__LockInfo *li = &res->lock;
    raftfs__lock_info__init(li);
    /* The reply points into the lock's buffer: keep it until the reply is packed. */
    li->key = *key;
    li->txn_id = l->txn_id;
    li->primary.data = (uint8_t *)l->primary;
    li->primary.len = l->plen;
    li->deadline_ms = l->deadline;
    res->r.lock = li;
    kv_result_fail(res, RFS_ELOCKED, "key is locked by transaction %016llx",
                   (unsigned long long)l->txn_id);
}

/* 1 if key is free (or locked by txn_id, when not 0); else 0 with ELOCKED in res (the lock's
 * bytes move into res). */
static int key_free(struct kv_op_ctx *x, const ProtobufCBinaryData *key, uint64_t txn_id,
                    struct kv_result *res, int *rv, char *errmsg)
{
    struct lock l;
    *rv = lock_get(x, key, &l, errmsg);
    if (*rv != 0 || !l.found || (txn_id != 0 && l.txn_id == txn_id)) {
        lock_clear(&l);
        return 1;
    }
    fail_locked(res, key, &l);
    kv_value_clear(&res->value);
    res->value = l.raw; /* keeps the primary bytes alive */
    return 0;
}

/* Whether a lock lies in a scan's range of one bucket. */
static int range_locked(struct kv_op_ctx *x, uint32_t bucket, const ProtobufCBinaryData *start,
                        const ProtobufCBinaryData *end, struct kv_result *res, char *errmsg)
{
    struct kv_pending **sorted = NULL;
    size_t nsorted = 0, lolen, hilen;
    char *lo = prefixed_key(KV_PREFIX_LOCK, bucket, start->data, start->len, &lolen);
    char *hi = end->len > 0 ? prefixed_key(KV_PREFIX_LOCK, bucket, end->data, end->len, &hilen)
                            : prefixed_key(KV_PREFIX_LOCK, bucket + 1, NULL, 0, &hilen);
    struct kv_cursor c;
    int rv, rv2, locked = 0;
    if (bucket == 0xffff && end->len == 0 && hi != NULL) {
        hi[0] = KV_PREFIX_LOCK + 1;
        hilen = 1;
    }
    if (lo == NULL || hi == NULL || kv_batch_sorted(x->b, &sorted, &nsorted) != 0) {
        rfs_free(lo);
        rfs_free(hi);
        return RFS_ENOMEM;
    }
    rv = kv_cursor_open(&c, x->b->db, x->b->db->ropts, lo, lolen, hi, hilen, sorted, nsorted);
    if (rv == 0 && c.valid) {
        ProtobufCBinaryData k = {c.klen - KV_DATA_HDR, (uint8_t *)c.key + KV_DATA_HDR};
        int rv3;
        locked = !key_free(x, &k, 0, res, &rv3, errmsg);
        if (locked && res->r.lock != NULL) {
            /* The key points into the cursor: copy it next to the lock bytes. */
            char *copy = rfs_malloc(k.len ? k.len : 1);
            if (copy == NULL) {
                rv = RFS_ENOMEM;
            } else {
                memcpy(copy, k.data, k.len);
                rfs_free(res->scan_buf);
                res->scan_buf = copy;
                res->lock.key.data = (uint8_t *)copy;
            }
        }
        rv = rv != 0 ? rv : rv3;
    }
    rv2 = kv_cursor_close(&c, errmsg);
    rfs_free(sorted);
    rfs_free(lo);
    rfs_free(hi);
    if (rv == 0) {
        rv = rv2;
    }
    return rv != 0 ? -rv : locked;
}

int kv_txn_unlocked(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                    int *ok, char *errmsg)
{
    int rv = 0;
    *ok = 1;
    if (x->sm->n_locks == 0) {
        return 0;
    }
    switch (req->op) {
        case RAFTFS__KV_OP__KV_GET:
        case RAFTFS__KV_OP__KV_PUT:
        case RAFTFS__KV_OP__KV_APPEND:
        case RAFTFS__KV_OP__KV_DELETE:
        case RAFTFS__KV_OP__KV_CAS:
            *ok = key_free(x, &req->key, 0, res, &rv, errmsg);
            return rv;
        case RAFTFS__KV_OP__KV_TXN:
            for (size_t i = 0; i < req->n_reads && *ok && rv == 0; i++) {
                *ok = key_free(x, &req->reads[i]->key, 0, res, &rv, errmsg);
            }
            for (size_t i = 0; i < req->n_writes && *ok && rv == 0; i++) {
                *ok = key_free(x, &req->writes[i]->key, 0, res, &rv, errmsg);
            }
            return rv;
        case RAFTFS__KV_OP__KV_SCAN: {
            const char *tag;
            size_t taglen;
            uint32_t first = 0, n = x->sm->nbuckets;
            if (kv_key_tag(req->key.data, req->key.len, &tag, &taglen)) {
                first = kv_bucket_of(req->key.data, req->key.len, x->sm->nbuckets);
                n = 1;
            }
            for (uint32_t b = first; b < first + n; b++) {
                int r = range_locked(x, b, &req->key, &req->end_key, res, errmsg);
                if (r < 0) {
                    return -r;
                }
                if (r > 0) {
                    *ok = 0;
                    return 0;
                }
            }
            return 0;
        }
        default:
            return 0;
    }
}

/* ---- the commands ---- */

static int same_key(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return kv_key_cmp(a->data, a->len, b->data, b->len) == 0;
}

static int prepare(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                   char *errmsg)
{
    const ProtobufCBinaryData *primary = &req->primary;
    uint64_t deadline = x->now_ms + req->ttl_ms;
    int is_primary = 0, state, rv = 0;
    uint64_t rec_deadline;

    if (req->txn_id == 0 || primary->len == 0 || primary->len > KV_MAX_KEY) {
        kv_result_fail(res, RFS_EINVAL, "prepare needs a transaction id and a primary key");
        return 0;
    }
    for (size_t i = 0; i < req->n_reads; i++) {
        is_primary |= same_key(&req->reads[i]->key, primary);
        if (req->reads[i]->key.len > KV_MAX_KEY) {
            kv_result_fail(res, RFS_ETOOBIG, "key of %zu bytes", req->reads[i]->key.len);
            return 0;
        }
    }
    for (size_t i = 0; i < req->n_writes; i++) {
        is_primary |= same_key(&req->writes[i]->key, primary);
        if (req->writes[i]->key.len > KV_MAX_KEY || req->writes[i]->value.len > KV_MAX_VALUE) {
            kv_result_fail(res, RFS_ETOOBIG, "key or value over the limit");
            return 0;
        }
    }
    if (is_primary) {
        rv = record_get(x, primary, req->txn_id, &state, &rec_deadline, errmsg);
        if (rv != 0) {
            return rv;
        }
        if (state == RAFTFS__TXN_STATE__TXN_ABORTED) {
            kv_result_fail(res, RFS_ECONFLICT, "transaction %016llx was aborted",
                           (unsigned long long)req->txn_id);
            res->r.txn_state = RAFTFS__TXN_STATE__TXN_ABORTED;
            return 0;
        }
        if (state == RAFTFS__TXN_STATE__TXN_COMMITTED) {
            res->r.txn_state = RAFTFS__TXN_STATE__TXN_COMMITTED;
            return 0; /* a late duplicate */
        }
    }
    /* Check everything before writing anything. */
    for (size_t i = 0; i < req->n_reads && rv == 0; i++) {
        if (!key_free(x, &req->reads[i]->key, req->txn_id, res, &rv, errmsg)) {
            return 0;
        }
    }
    for (size_t i = 0; i < req->n_writes && rv == 0; i++) {
        if (!key_free(x, &req->writes[i]->key, req->txn_id, res, &rv, errmsg)) {
            return 0;
        }
    }
    for (size_t i = 0; i < req->n_reads && rv == 0; i++) {
        uint64_t version;
        int found;
        rv = kv_op_read_version(x, &req->reads[i]->key, &found, &version, errmsg);
        if (rv == 0 && version != req->reads[i]->version) {
            kv_result_fail(res, RFS_ECONFLICT, "read %zu saw version %llu, now %llu", i,
                           (unsigned long long)req->reads[i]->version, (unsigned long long)version);
            res->r.conflict_key = req->reads[i]->key;
            res->r.version = version;
            return 0;
        }
    }
    /* Lock: writes with their intent, reads that are not written with none. */
    for (size_t i = 0; i < req->n_writes && rv == 0; i++) {
        const Raftfs__TxnWrite *w = req->writes[i];
        struct lock l;
        rv = lock_get(x, &w->key, &l, errmsg);
        if (rv == 0) {
            rv = lock_put(x, &w->key, l.found, req->txn_id, deadline,
                          w->delete_ ? INTENT_DELETE : INTENT_PUT, primary, &w->value);
        }
        lock_clear(&l);
    }
    for (size_t i = 0; i < req->n_reads && rv == 0; i++) {
        const ProtobufCBinaryData *k = &req->reads[i]->key;
        struct lock l;
        int written = 0;
        for (size_t j = 0; j < req->n_writes; j++) {
            written |= same_key(k, &req->writes[j]->key);
        }
        if (written) {
            continue;
        }
        rv = lock_get(x, k, &l, errmsg);
        if (rv == 0) {
            rv = lock_put(x, k, l.found, req->txn_id, deadline, INTENT_NONE, primary, NULL);
        }
        lock_clear(&l);
    }
    if (rv == 0 && is_primary) {
        rv = record_put(x, primary, req->txn_id, RAFTFS__TXN_STATE__TXN_PENDING, deadline);
    }
    res->r.txn_state = RAFTFS__TXN_STATE__TXN_PENDING;
    res->r.version = x->version;
    return rv;
}

/* Apply (commit) or drop (abort) the locks of txn_id on keys. */
static int settle_keys(struct kv_op_ctx *x, const Raftfs__KvRequest *req, int commit, char *errmsg)
{
    int rv = 0;
    for (size_t i = 0; i < req->n_keys && rv == 0; i++) {
        const ProtobufCBinaryData *key = &req->keys[i];
        struct lock l;
        if (key->len > KV_MAX_KEY) {
            continue;
        }
        rv = lock_get(x, key, &l, errmsg);
        if (rv != 0 || !l.found || l.txn_id != req->txn_id) {
            lock_clear(&l);
            continue;
        }
        if (commit && l.intent == INTENT_PUT) {
            rv = kv_op_write_value(x, key, l.value, l.vlen);
        } else if (commit && l.intent == INTENT_DELETE) {
            rv = kv_op_erase_key(x, key);
        }
        lock_clear(&l);
        if (rv == 0) {
            rv = lock_del(x, key);
        }
    }
    return rv;
}

static int commit(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                  char *errmsg)
{
    int rv, state;
    uint64_t deadline;
    if (req->is_primary) {
        rv = record_get(x, &req->primary, req->txn_id, &state, &deadline, errmsg);
        if (rv != 0) {
            return rv;
        }
        if (state != RAFTFS__TXN_STATE__TXN_PENDING && state != RAFTFS__TXN_STATE__TXN_COMMITTED) {
            kv_result_fail(
                res, RFS_ECONFLICT,
                "transaction %016llx was aborted (its locks expired) before it committed",
                (unsigned long long)req->txn_id);
            res->r.txn_state = RAFTFS__TXN_STATE__TXN_ABORTED;
            return 0;
        }
        if (state == RAFTFS__TXN_STATE__TXN_PENDING) {
            rv = record_put(x, &req->primary, req->txn_id, RAFTFS__TXN_STATE__TXN_COMMITTED,
                            deadline);
            if (rv != 0) {
                return rv;
            }
        }
    }
    res->r.txn_state = RAFTFS__TXN_STATE__TXN_COMMITTED;
    res->r.version = x->version;
    return settle_keys(x, req, 1, errmsg);
}

static int abort_txn(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                     char *errmsg)
{
    int rv, state;
    uint64_t deadline;
    if (req->is_primary) {
        rv = record_get(x, &req->primary, req->txn_id, &state, &deadline, errmsg);
        if (rv != 0) {
            return rv;
        }
        if (state == RAFTFS__TXN_STATE__TXN_COMMITTED) {
            res->r.txn_state = RAFTFS__TXN_STATE__TXN_COMMITTED;
            return 0; /* decided: the locks are rolled forward, never back */
        }
        if (state != RAFTFS__TXN_STATE__TXN_ABORTED) {
            rv =
                record_put(x, &req->primary, req->txn_id, RAFTFS__TXN_STATE__TXN_ABORTED, deadline);
            if (rv != 0) {
                return rv;
            }
        }
    }
    res->r.txn_state = RAFTFS__TXN_STATE__TXN_ABORTED;
    return settle_keys(x, req, 0, errmsg);
}

static int check(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                 char *errmsg)
{
    int rv, state;
    uint64_t deadline;
    rv = record_get(x, &req->primary, req->txn_id, &state, &deadline, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (state == 0) {
        deadline = req->lock_deadline;
    }
    if ((state == 0 || state == RAFTFS__TXN_STATE__TXN_PENDING) && x->now_ms >= deadline) {
        /* The owner is past its time: give up on it, for good. */
        rv = record_put(x, &req->primary, req->txn_id, RAFTFS__TXN_STATE__TXN_ABORTED, deadline);
        state = RAFTFS__TXN_STATE__TXN_ABORTED;
    }
    res->r.txn_state = state == 0 ? RAFTFS__TXN_STATE__TXN_PENDING : (Raftfs__TxnState)state;
    return rv;
}

int kv_txn_apply(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                 char *errmsg)
{
    if (req->txn_id == 0 || req->primary.len > KV_MAX_KEY) {
        kv_result_fail(res, RFS_EINVAL,
                       "a transaction command needs a transaction id and a "
                       "primary key of at most %u bytes",
                       KV_MAX_KEY);
        return 0;
    }
    switch (req->op) {
        case RAFTFS__KV_OP__KV_TXN_PREPARE:
            return prepare(x, req, res, errmsg);
        case RAFTFS__KV_OP__KV_TXN_COMMIT:
            return commit(x, req, res, errmsg);
        case RAFTFS__KV_OP__KV_TXN_ABORT:
            return abort_txn(x, req, res, errmsg);
        case RAFTFS__KV_OP__KV_TXN_CHECK:
            return check(x, req, res, errmsg);
        default:
            kv_result_fail(res, RFS_EPROTO, "op %d is not a transaction command", (int)req->op);
            return 0;
    }
}

int kv_txn_is_op(int op)
{
    return op == RAFTFS__KV_OP__KV_TXN_PREPARE || op == RAFTFS__KV_OP__KV_TXN_COMMIT ||
           op == RAFTFS__KV_OP__KV_TXN_ABORT || op == RAFTFS__KV_OP__KV_TXN_CHECK;
}

int kv_txn_count_locks(struct kv_sm *sm, char *errmsg)
{
    static const char lo[1] = {KV_PREFIX_LOCK};
    static const char hi[1] = {KV_PREFIX_LOCK + 1};
    struct kv_cursor c;
    uint64_t n = 0;
    int rv = kv_cursor_open(&c, &sm->db, sm->db.ropts, lo, 1, hi, 1, NULL, 0);
    for (; rv == 0 && c.valid; kv_cursor_next(&c)) {
        n++;
    }
    sm->n_locks = n;
    return rv != 0 ? rv : kv_cursor_close(&c, errmsg);
}
