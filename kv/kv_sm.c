/* The kv state machine: open/close, and the rfs_sm_ops entry points.
 *
 * apply runs every command of a call against one kv_batch (batch.c) and writes the batch,
 * with the new applied index, in one LevelDB write: all of the call's effects or none
 * survive a crash, and the server re-applies from the durable applied index. A command that
 * cannot be decoded or fails its checks gets a reply saying so; apply itself fails only on
 * storage errors (RFS_EIO, RFS_ECORRUPT) or RFS_ENOMEM, and the server must then stop.
 *
 * Writes from a session (client_id != 0) are exactly-once (session.c): the session is
 * looked up before executing, and the reply stored in the same batch. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/alloc.h"
#include "../common/bytes.h"
#include "../common/log.h"
#include "count.h"
#include "internal.h"

int kv_sm_load_meta(struct kv_sm *sm, char *errmsg)
{
    int rv = rfs_ldb_get_u64(&sm->db, KV_META_APPLIED, &sm->applied, NULL, errmsg);
    if (rv == 0) {
        rv = rfs_ldb_get_u64(&sm->db, KV_META_SWEEP, &sm->sweep_ms, NULL, errmsg);
    }
    if (rv == 0) {
        rv = rfs_ldb_get_u64(&sm->db, KV_META_VBASE, &sm->vbase, NULL, errmsg);
    }
    if (rv == 0) {
        rv = kv_shard_load(sm, errmsg);
    }
    if (rv == 0) {
        rv = kv_txn_count_locks(sm, errmsg);
    }
    return rv;
}

int kv_sm_db_open(struct kv_sm *sm, char *errmsg)
{
    char path[PATH_MAX];
    int rv;

    snprintf(path, sizeof path, "%s/%s", sm->dir, KV_DB_NAME);
    rv = rfs_ldb_open(&sm->db, path, errmsg);
    if (rv == 0) {
        rv = kv_blobs_open(&sm->db.blobs, path, errmsg);
    }
    if (rv != 0) {
        kv_sm_db_close(sm);
    }
    return rv;
}

void kv_sm_db_close(struct kv_sm *sm)
{
    kv_blobs_close(sm->db.blobs);
    sm->db.blobs = NULL;
    rfs_ldb_close(&sm->db);
}

int kv_sm_open(struct kv_sm **out, const char *dir, uint32_t nbuckets, char *errmsg)
{
    char path[PATH_MAX];
    struct kv_sm *sm;
    int rv;

    *out = NULL;
    if (nbuckets == 0 || nbuckets > 0x10000) {
        rfs_errmsg_printf(errmsg, "kv: %u buckets (1 to 65536)", nbuckets);
        return RFS_EINVAL;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, KV_DB_NEW_NAME) >= sizeof path) {
        rfs_errmsg_printf(errmsg, "kv: directory name too long");
        return RFS_EINVAL;
    }
    sm = rfs_calloc(1, sizeof *sm);
    if (sm == NULL || (sm->dir = rfs_strdup(dir)) == NULL) {
        rfs_free(sm);
        rfs_errmsg_printf(errmsg, "kv open: out of memory");
        return RFS_ENOMEM;
    }
    sm->nbuckets = nbuckets;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        rfs_errmsg_printf(errmsg, "mkdir %s: %s", dir, strerror(errno));
        rv = RFS_EIO;
        goto err;
    }
    rv = kv_swap_recover(dir, errmsg);
    if (rv != 0) {
        goto err;
    }
    rv = kv_sm_db_open(sm, errmsg);
    if (rv != 0) {
        goto err;
    }
    snprintf(path, sizeof path, "%s/%s", dir, KV_DB_NAME);
    rv = kv_sm_load_meta(sm, errmsg);
    if (rv != 0) {
        goto err;
    }
    rfs_infof("kv: opened %s, applied index %llu", path, (unsigned long long)sm->applied);
    *out = sm;
    return 0;
err:
    rfs_errmsg_wrapf(errmsg, "kv open %s", dir);
    kv_sm_close(sm);
    return rv;
}

void kv_sm_close(struct kv_sm *sm)
{
    if (sm == NULL) {
        return;
    }
    kv_sm_db_close(sm);
    kv_shard_free(sm);
    rfs_free(sm->dir);
    rfs_free(sm);
}

static raft_index sm_applied(void *data)
{
    return ((struct kv_sm *)data)->applied;
}

static int sm_usable(struct kv_sm *sm, char *errmsg)
{
    if (sm->db.db == NULL) {
        rfs_errmsg_printf(errmsg, "kv: database closed after a failed restore");
        return RFS_EIO;
    }
    return 0;
}

/* Log time as apply sees it: the largest time_ms so far, and the last sweep. */
struct apply_clock {
    uint64_t now_ms;
    uint64_t sweep_ms;
};

/* Reply to a command that was not executed (undecodable, stale). */
static int reply_error(struct rfs_buf *reply, int status, const char *error)
{
    Raftfs__KvReply r = RAFTFS__KV_REPLY__INIT;
    r.status = (uint32_t)status;
    r.error = (char *)error;
    return kv_reply_pack(&r, reply);
}

static int apply_one(struct kv_sm *sm, struct kv_batch *b, const struct raft_entry *e,
                     struct apply_clock *clock, struct rfs_buf *reply, char *errmsg)
{
    Raftfs__KvRequest *req;
    struct kv_op_ctx x = {.sm = sm, .b = b, .version = e->index + sm->vbase};
    struct kv_session sess = {0};
    struct kv_result res;
    uint32_t bucket;
    int rv = 0, found = 0, session, nomem, locked;

    req = kv_request_decode(e->data.base, e->data.len, &nomem);
    if (req == NULL && nomem) {
        return RFS_ENOMEM;
    }
    if (req == NULL) {
        char msg[64];
        snprintf(msg, sizeof msg, "malformed KvRequest (%zu bytes)", e->data.len);
        return reply_error(reply, RFS_EPROTO, msg);
    }
    /* Session expiry runs on log time (the leader's stamps), so it is the same on every
     * replica; the max guards against a new leader whose clock is behind. */
    if (req->time_ms > clock->now_ms) {
        clock->now_ms = req->time_ms;
    }
    if (clock->now_ms - clock->sweep_ms >= KV_SWEEP_INTERVAL_MS) {
        rv = kv_session_sweep(b, clock->now_ms, errmsg);
        if (rv != 0) {
            goto out;
        }
        clock->sweep_ms = clock->now_ms;
    }

    if (kv_op_is_migration(req->op)) {
        kv_result_init(&res);
        rv = kv_shard_apply(sm, b, e->index, req, &res, errmsg);
        if (rv == 0) {
            rv = kv_reply_pack(&res.r, reply);
        }
        kv_result_clear(&res);
        goto out;
    }
    /* A key the group does not serve (any more, or yet) is refused before the session is
     * consulted, and the refusal is not recorded: the client retries the same sequence
     * number at the bucket's new owner, which holds the bucket's sessions. */
    kv_result_init(&res);
    if (!kv_shard_check(sm, req, &res)) {
        rv = kv_reply_pack(&res.r, reply);
        kv_result_clear(&res);
        goto out;
    }
    kv_result_clear(&res);
    bucket = kv_request_bucket(sm, req);

    session = kv_op_is_write(req->op) && req->client_id != 0;
    if (session) {
        rv = kv_session_get(b, bucket, req->client_id, &found, &sess, errmsg);
        if (rv != 0) {
            goto out;
        }
        if (found && req->seq == sess.last_seq) {
            /* A retry: the same reply, without executing again. */
            size_t len;
            const void *stored = kv_session_reply(&sess, &len);
            reply->base = rfs_malloc(len > 0 ? len : 1);
            if (reply->base == NULL) {
                rv = RFS_ENOMEM;
                goto out;
            }
            if (len > 0) {
                memcpy(reply->base, stored, len);
            }
            reply->len = len;
            goto out;
        }
        if (found && req->seq < sess.last_seq) {
            char msg[96];
            snprintf(msg, sizeof msg, "seq %llu is older than the session's %llu",
                     (unsigned long long)req->seq, (unsigned long long)sess.last_seq);
            rv = reply_error(reply, RFS_ESTALE, msg);
            goto out;
        }
        kv_session_clear(&sess);
    }

    kv_result_init(&res);
    x.now_ms = clock->now_ms;
    rv = kv_op_run(&x, req, &res, errmsg);
    if (rv == 0) {
        rv = kv_reply_pack(&res.r, reply);
    }
    /* A refusal for a lock executed nothing: not recorded, so the same sequence number can
     * run once the lock is resolved (docs/txn.md). */
    locked = res.r.status == RFS_ELOCKED;
    kv_result_clear(&res);
    if (rv == 0 && session && !locked) {
        rv = kv_session_put(b, bucket, req->client_id, req->seq, req->time_ms, reply->base,
                            reply->len);
    }
out:
    kv_session_clear(&sess);
    kv_request_free(req);
    return rv;
}

static int sm_apply(void *data, const struct raft_entry *entries, unsigned n,
                    struct rfs_buf *replies, char *errmsg)
{
    struct kv_sm *sm = data;
    struct apply_clock clock = {.now_ms = sm->sweep_ms, .sweep_ms = sm->sweep_ms};
    raft_index applied = sm->applied;
    unsigned char num[8];
    struct kv_batch b;
    int rv;

    for (unsigned i = 0; i < n; i++) {
        replies[i] = (struct rfs_buf){0};
    }
    rv = sm_usable(sm, errmsg);
    if (rv != 0 || n == 0) {
        return rv;
    }
    rv = kv_batch_init(&b, &sm->db, 1);
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "kv apply: out of memory");
        return rv;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct raft_entry *e = &entries[i];
        if (e->index <= applied) {
            /* The server passes our applied index to Raft, so this is a caller bug; never
             * run a command twice. */
            rfs_warnf("kv apply: entry %llu already applied (applied %llu), skipped",
                      (unsigned long long)e->index, (unsigned long long)applied);
            continue;
        }
        applied = e->index;
        if (e->type != RAFT_ENTRY_NORMAL) {
            continue;
        }
        rv = apply_one(sm, &b, e, &clock, &replies[i], errmsg);
        if (rv == RFS_ENOMEM) {
            rfs_errmsg_printf(errmsg, "kv apply entry %llu: out of memory",
                              (unsigned long long)e->index);
            goto err;
        }
        if (rv != 0) {
            rfs_errmsg_wrapf(errmsg, "kv apply entry %llu", (unsigned long long)e->index);
            goto err;
        }
    }
    if (applied == sm->applied) {
        kv_batch_close(&b);
        return 0;
    }
    rfs_put_le64(num, applied);
    rv = kv_batch_put(&b, KV_META_APPLIED, strlen(KV_META_APPLIED), num, sizeof num);
    if (rv == 0 && clock.sweep_ms != sm->sweep_ms) {
        rfs_put_le64(num, clock.sweep_ms);
        rv = kv_batch_put(&b, KV_META_SWEEP, strlen(KV_META_SWEEP), num, sizeof num);
    }
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "kv apply: out of memory");
        goto err;
    }
    rv = kv_batch_write(&b, sm->db.wopts, errmsg);
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "kv apply");
        goto err;
    }
    kv_batch_close(&b);
    sm->applied = applied;
    sm->sweep_ms = clock.sweep_ms;
    kv_shard_compact(sm);
    return 0;
err:
    kv_batch_close(&b);
    for (unsigned i = 0; i < n; i++) {
        rfs_free(replies[i].base);
        replies[i] = (struct rfs_buf){0};
    }
    return rv;
}

static int sm_query(void *data, const void *cmd, size_t len, struct rfs_buf *reply, char *errmsg)
{
    struct kv_sm *sm = data;
    Raftfs__KvRequest *req;
    struct kv_batch b;
    struct kv_result res;
    struct kv_op_ctx x = {.sm = sm, .b = &b, .version = 0};
    int rv, nomem;

    *reply = (struct rfs_buf){0};
    rv = sm_usable(sm, errmsg);
    if (rv != 0) {
        return rv;
    }
    req = kv_request_decode(cmd, len, &nomem);
    if (req == NULL) {
        rv = nomem ? RFS_ENOMEM : reply_error(reply, RFS_EPROTO, "malformed KvRequest");
        goto out;
    }
    if (req->op != RAFTFS__KV_OP__KV_GET && req->op != RAFTFS__KV_OP__KV_SCAN &&
        req->op != RAFTFS__KV_OP__KV_BUCKET_PULL && req->op != RAFTFS__KV_OP__KV_SHARD_STATE) {
        kv_request_free(req);
        rv = reply_error(reply, RFS_EINVAL,
                         "query: only GET, SCAN and migration reads are "
                         "read-only");
        goto out;
    }
    kv_batch_init(&b, &sm->db, 0); /* read-only: cannot fail */
    kv_result_init(&res);
    if (req->op == RAFTFS__KV_OP__KV_BUCKET_PULL || req->op == RAFTFS__KV_OP__KV_SHARD_STATE) {
        rv = kv_shard_query(sm, req, &res, errmsg);
    } else if (kv_shard_check(sm, req, &res)) {
        rv = kv_op_run(&x, req, &res, errmsg);
    }
    if (rv == 0) {
        rv = kv_reply_pack(&res.r, reply);
    }
    kv_result_clear(&res);
    kv_batch_close(&b);
    kv_request_free(req);
out:
    if (rv == RFS_ENOMEM) {
        rfs_errmsg_printf(errmsg, "kv query: out of memory");
    }
    return rv;
}

static int sm_snapshot(void *data, struct rfs_buf *out, raft_index *index, char *errmsg)
{
    struct kv_sm *sm = data;
    int rv = sm_usable(sm, errmsg);
    return rv != 0 ? rv : kv_snapshot_encode(sm, out, index, errmsg);
}

/* Blob files first (a pointer never outlives its bytes), then one synced LevelDB write,
 * which makes every earlier (unsynced) apply durable with it: same log, in order. */
static int sm_make_durable(void *data, raft_index *index, char *errmsg)
{
    struct kv_sm *sm = data;
    unsigned char num[8];
    char *err = NULL;
    int rv = sm_usable(sm, errmsg);
    if (rv == 0 && sm->db.blobs != NULL) {
        rv = kv_blobs_sync(sm->db.blobs, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    rfs_put_le64(num, sm->applied);
    leveldb_put(sm->db.db, sm->db.wopts_sync, KV_META_APPLIED, strlen(KV_META_APPLIED),
                (const char *)num, sizeof num, &err);
    if (err != NULL) {
        return rfs_ldb_error(err, errmsg, "kv: sync the applied index");
    }
    *index = sm->applied;
    return 0;
}

static int sm_restore(void *data, raft_index index, const void *buf, size_t len, char *errmsg)
{
    return kv_snapshot_restore(data, index, buf, len, errmsg);
}

/* The blob collector (kv/blob.h) runs here, between applies, when something died. */
static int sm_housekeep(void *data, char *errmsg)
{
    struct kv_sm *sm = data;
    if (sm->db.blobs == NULL) {
        return 0; /* closed after a failed restore */
    }
    return kv_blobs_collect(sm->db.blobs, &sm->db, 0, errmsg);
}

/* Blob files (large values) plus LevelDB's estimate of the data keys' size. */
static uint64_t sm_size_estimate(void *data)
{
    struct kv_sm *sm = data;
    struct kv_blob_stats st = {0};
    const char *start = "d", *limit = "e";
    size_t start_len = 1, limit_len = 1;
    uint64_t ldb = 0;
    if (sm->db.db == NULL) {
        return 0;
    }
    if (sm->db.blobs != NULL) {
        kv_blobs_stats(sm->db.blobs, &st);
    }
    leveldb_approximate_sizes(sm->db.db, 1, &start, &start_len, &limit, &limit_len, &ldb);
    return st.bytes + ldb;
}

const struct rfs_sm_ops kv_sm_ops = {
    .applied = sm_applied,
    .apply = sm_apply,
    .query = sm_query,
    .make_durable = sm_make_durable,
    .snapshot = sm_snapshot,
    .restore = sm_restore,
    .housekeep = sm_housekeep,
    .size_estimate = sm_size_estimate,
    .count_keys = kv_sm_count_keys,
};
