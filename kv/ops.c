/* The single-key operations and TXN. Each reads through the batch (so it sees the earlier
 * commands of the same apply call) and writes into it; every write gets version = the
 * entry's version (kv_op_ctx). An operation that fails its own checks (too big, condition not met)
 * says so in the reply status and changes nothing; only storage failures are errors. */
#include <string.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "internal.h"

/* A user key's LevelDB key, rfs_malloc'd. */
static char *op_data_key(const struct kv_op_ctx *x, const ProtobufCBinaryData *key, size_t *len)
{
    char *k = rfs_malloc(KV_DATA_HDR + key->len);

    if (k != NULL) {
        kv_key_data(k, kv_bucket_of(key->data, key->len, x->sm->nbuckets), key->data, key->len);
        *len = KV_DATA_HDR + key->len;
    }
    return k;
}

/* Read a user key: *found, its version (0 when absent) and, if value is not NULL, its value
 * (release with kv_value_clear; data points past the version). */
static int op_read(struct kv_op_ctx *x, const ProtobufCBinaryData *key, int *found,
                   uint64_t *version, struct kv_value *value, char *errmsg)
{
    struct kv_value v;
    size_t klen;
    char *k = op_data_key(x, key, &klen);
    int rv;

    if (k == NULL) {
        return RFS_ENOMEM;
    }
    rv = kv_batch_get(x->b, k, klen, found, &v, errmsg);
    rfs_free(k);
    *version = 0;
    if (rv != 0 || !*found) {
        return rv;
    }
    if (v.len < KV_VERSION_LEN) {
        kv_value_clear(&v);
        rfs_errmsg_printf(errmsg, "data record of %zu bytes", v.len);
        return RFS_ECORRUPT;
    }
    *version = rfs_get_le64(v.data);
    if (value != NULL) {
        *value = v;
        value->data += KV_VERSION_LEN;
        value->len -= KV_VERSION_LEN;
    } else {
        kv_value_clear(&v);
    }
    return 0;
}

/* Write a user key at version x->version; val (vlen bytes) is copied. */
static int op_write(struct kv_op_ctx *x, const ProtobufCBinaryData *key, const void *val,
                    size_t vlen)
{
    unsigned char ver[KV_VERSION_LEN];
    size_t klen;
    char *k = op_data_key(x, key, &klen);
    int rv;

    if (k == NULL) {
        return RFS_ENOMEM;
    }
    rfs_put_le64(ver, x->version);
    rv = kv_batch_put2(x->b, k, klen, ver, sizeof ver, val, vlen);
    rfs_free(k);
    return rv;
}

static int op_erase(struct kv_op_ctx *x, const ProtobufCBinaryData *key)
{
    size_t klen;
    char *k = op_data_key(x, key, &klen);
    int rv;

    if (k == NULL) {
        return RFS_ENOMEM;
    }
    rv = kv_batch_delete(x->b, k, klen);
    rfs_free(k);
    return rv;
}

/* 1 if key and value are within the limits, else 0 with RFS_ETOOBIG in the reply. */
static int op_fits(struct kv_result *res, const ProtobufCBinaryData *key,
                   const ProtobufCBinaryData *value)
{
    if (key->len > KV_MAX_KEY) {
        kv_result_fail(res, RFS_ETOOBIG, "key of %zu bytes (limit %u)", key->len, KV_MAX_KEY);
        return 0;
    }
    if (value != NULL && value->len > KV_MAX_VALUE) {
        kv_result_fail(res, RFS_ETOOBIG, "value of %zu bytes (limit %u)", value->len, KV_MAX_VALUE);
        return 0;
    }
    return 1;
}

int kv_op_get(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
              char *errmsg)
{
    int found;
    uint64_t version;
    int rv;

    if (!op_fits(res, &req->key, NULL)) {
        return 0;
    }
    rv = op_read(x, &req->key, &found, &version, &res->value, errmsg);
    if (rv != 0) {
        return rv;
    }
    res->r.found = found;
    res->r.version = version;
    res->r.value.data = (uint8_t *)res->value.data;
    res->r.value.len = res->value.len;
    return 0;
}

int kv_op_put(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
              char *errmsg)
{
    int rv;

    (void)errmsg;
    if (!op_fits(res, &req->key, &req->value)) {
        return 0;
    }
    rv = op_write(x, &req->key, req->value.data, req->value.len);
    res->r.version = x->version;
    return rv;
}

int kv_op_append(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                 char *errmsg)
{
    struct kv_value cur = {0};
    uint64_t version;
    int found, rv;
    size_t klen, len;
    char *k, *val;

    if (!op_fits(res, &req->key, &req->value)) {
        return 0;
    }
    rv = op_read(x, &req->key, &found, &version, &cur, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (cur.len + req->value.len > KV_MAX_VALUE) {
        kv_result_fail(res, RFS_ETOOBIG, "appended value would be %zu bytes (limit %u)",
                       cur.len + req->value.len, KV_MAX_VALUE);
        kv_value_clear(&cur);
        return 0;
    }
    len = KV_VERSION_LEN + cur.len + req->value.len;
    val = rfs_malloc(len);
    k = op_data_key(x, &req->key, &klen);
    if (val == NULL || k == NULL) {
        kv_value_clear(&cur);
        rfs_free(val);
        rfs_free(k);
        return RFS_ENOMEM;
    }
    rfs_put_le64(val, x->version);
    if (cur.len > 0) {
        memcpy(val + KV_VERSION_LEN, cur.data, cur.len);
    }
    if (req->value.len > 0) {
        memcpy(val + KV_VERSION_LEN + cur.len, req->value.data, req->value.len);
    }
    /* cur may point into the batch entry this put replaces: done with it first. */
    kv_value_clear(&cur);
    rv = kv_batch_put_owned(x->b, k, klen, val, len);
    rfs_free(k);
    res->r.version = x->version;
    return rv;
}

int kv_op_delete(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
                 char *errmsg)
{
    uint64_t version;
    int found, rv;

    if (!op_fits(res, &req->key, NULL)) {
        return 0;
    }
    rv = op_read(x, &req->key, &found, &version, NULL, errmsg);
    if (rv != 0 || !found) {
        return rv;
    }
    res->r.found = 1;
    res->r.version = x->version;
    return op_erase(x, &req->key);
}

int kv_op_cas(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
              char *errmsg)
{
    uint64_t version;
    int found, rv, match;

    if (!op_fits(res, &req->key, &req->value) || !op_fits(res, &req->key, &req->expect)) {
        return 0;
    }
    rv = op_read(x, &req->key, &found, &version, &res->value, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (req->expect_absent) {
        match = !found;
    } else {
        match = found && res->value.len == req->expect.len &&
                (req->expect.len == 0 ||
                 memcmp(res->value.data, req->expect.data, req->expect.len) == 0);
    }
    if (!match) {
        kv_result_fail(res, RFS_ECONFLICT, "cas: current value differs from the expected one");
        res->r.conflict_key = req->key;
        res->r.found = found;
        res->r.version = version;
        res->r.value.data = (uint8_t *)res->value.data;
        res->r.value.len = res->value.len;
        return 0;
    }
    kv_value_clear(&res->value);
    res->r.found = 1;
    res->r.version = x->version;
    return op_write(x, &req->key, req->value.data, req->value.len);
}

int kv_op_txn(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
              char *errmsg)
{
    int rv;

    /* Check everything before writing anything: all or nothing. */
    for (size_t i = 0; i < req->n_reads; i++) {
        if (!op_fits(res, &req->reads[i]->key, NULL)) {
            return 0;
        }
    }
    for (size_t i = 0; i < req->n_writes; i++) {
        if (!op_fits(res, &req->writes[i]->key, &req->writes[i]->value)) {
            return 0;
        }
    }
    for (size_t i = 0; i < req->n_reads; i++) {
        const Raftfs__TxnRead *r = req->reads[i];
        uint64_t version;
        int found;
        rv = op_read(x, &r->key, &found, &version, NULL, errmsg);
        if (rv != 0) {
            return rv;
        }
        if (version != r->version) {
            kv_result_fail(res, RFS_ECONFLICT, "txn: read %zu saw version %llu, now %llu", i,
                           (unsigned long long)r->version, (unsigned long long)version);
            res->r.conflict_key = r->key;
            res->r.found = found;
            res->r.version = version;
            return 0;
        }
    }
    for (size_t i = 0; i < req->n_writes; i++) {
        const Raftfs__TxnWrite *w = req->writes[i];
        rv = w->delete_ ? op_erase(x, &w->key) : op_write(x, &w->key, w->value.data, w->value.len);
        if (rv != 0) {
            return rv;
        }
    }
    res->r.version = x->version;
    return 0;
}

int kv_op_read_version(struct kv_op_ctx *x, const ProtobufCBinaryData *key, int *found,
                       uint64_t *version, char *errmsg)
{
    return op_read(x, key, found, version, NULL, errmsg);
}

int kv_op_write_value(struct kv_op_ctx *x, const ProtobufCBinaryData *key, const void *val,
                      size_t vlen)
{
    return op_write(x, key, val, vlen);
}

int kv_op_erase_key(struct kv_op_ctx *x, const ProtobufCBinaryData *key)
{
    return op_erase(x, key);
}

int kv_op_is_write(int op)
{
    if (kv_txn_is_op(op)) {
        return 1;
    }
    switch (op) {
        case RAFTFS__KV_OP__KV_PUT:
        case RAFTFS__KV_OP__KV_APPEND:
        case RAFTFS__KV_OP__KV_DELETE:
        case RAFTFS__KV_OP__KV_CAS:
        case RAFTFS__KV_OP__KV_TXN:
            return 1;
        default:
            return 0;
    }
}

int kv_op_is_migration(int op)
{
    return op == RAFTFS__KV_OP__KV_CONFIG || op == RAFTFS__KV_OP__KV_BUCKET_INSTALL ||
           op == RAFTFS__KV_OP__KV_BUCKET_GC || op == RAFTFS__KV_OP__KV_BUCKET_GCED;
}

int kv_op_run(struct kv_op_ctx *x, const Raftfs__KvRequest *req, struct kv_result *res,
              char *errmsg)
{
    int ok, rv;
    if (kv_txn_is_op(req->op)) {
        return kv_txn_apply(x, req, res, errmsg);
    }
    /* No operation sees or changes a key a transaction holds (docs/txn.md). */
    rv = kv_txn_unlocked(x, req, res, &ok, errmsg);
    if (rv != 0 || !ok) {
        return rv;
    }
    switch (req->op) {
        case RAFTFS__KV_OP__KV_GET:
            return kv_op_get(x, req, res, errmsg);
        case RAFTFS__KV_OP__KV_SCAN:
            return kv_op_scan(x, req, res, errmsg);
        case RAFTFS__KV_OP__KV_PUT:
            return kv_op_put(x, req, res, errmsg);
        case RAFTFS__KV_OP__KV_APPEND:
            return kv_op_append(x, req, res, errmsg);
        case RAFTFS__KV_OP__KV_DELETE:
            return kv_op_delete(x, req, res, errmsg);
        case RAFTFS__KV_OP__KV_CAS:
            return kv_op_cas(x, req, res, errmsg);
        case RAFTFS__KV_OP__KV_TXN:
            return kv_op_txn(x, req, res, errmsg);
        default:
            kv_result_fail(res, RFS_EPROTO, "unknown op %d", (int)req->op);
            return 0;
    }
}
