/* raftfs-shard: one server of a shard group (a Raft group replicating a LevelDB store). */
#include <string.h>

#include "common/alloc.h"
#include "kv/kv.h"
#include "proto/proto.h"
#include "server/cli.h"

static int open_kv(void **sm, const char *dir, uint32_t nbuckets, char *errmsg)
{
    return kv_sm_open((struct kv_sm **)sm, dir, nbuckets, errmsg);
}

static int shard_kv(void *sm, uint64_t gid, char *errmsg)
{
    return kv_sm_set_sharding(sm, gid, errmsg);
}

static void close_kv(void *sm)
{
    kv_sm_close(sm);
}

/* Buckets per state, from the state machine's own answer to KV_SHARD_STATE (the read the
 * mover makes, here without a round trip): an unsharded group serves every bucket. */
static int bucket_counts(void *sm, uint64_t counts[5])
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep = NULL;
    Raftfs__ShardState *st = NULL;
    struct rfs_buf reply = {NULL, 0};
    char errmsg[RFS_ERRMSG_SIZE] = "";
    uint8_t buf[16];
    size_t len;
    int rv;

    memset(counts, 0, 5 * sizeof counts[0]);
    req.op = RAFTFS__KV_OP__KV_SHARD_STATE;
    len = raftfs__kv_request__pack(&req, buf);
    rv = kv_sm_ops.query(sm, buf, len, &reply, errmsg);
    if (rv == 0) {
        rep = raftfs__kv_reply__unpack(&proto_allocator, reply.len, reply.base);
    }
    if (rep != NULL && rep->status == 0) {
        st = raftfs__shard_state__unpack(&proto_allocator, rep->value.len, rep->value.data);
    }
    rv = st != NULL ? 0 : RFS_EIO;
    for (size_t b = 0; st != NULL && b < st->n_states; b++) {
        unsigned s = st->states[b] < 5 ? st->states[b] : 0;
        counts[st->sharded ? s : RAFTFS__BUCKET_STATE__BUCKET_SERVING]++;
    }
    if (st != NULL) {
        raftfs__shard_state__free_unpacked(st, &proto_allocator);
    }
    if (rep != NULL) {
        raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    }
    rfs_free(reply.base);
    return rv;
}

int main(int argc, char **argv)
{
    static const struct rfs_server_cli cli = {
        .prog = "raftfs-shard",
        .role = "shard",
        .summary = "Runs one server of a shard group: a Raft group replicating a LevelDB "
                   "key-value\nstore. Start one process per address in --peers, each with its "
                   "own --id.",
        .db_name = "db",
        .buckets_doc = "",
        .has_gid = true,
        .has_meta = true,
        .group_id = 1,
        .default_buckets = KV_DEFAULT_BUCKETS,
        .max_buckets = 65535,
        .open_sm = open_kv,
        .close_sm = close_kv,
        .set_sharding = shard_kv,
        .ops = &kv_sm_ops,
        .bucket_counts = bucket_counts,
    };
    return rfs_server_cli_main(&cli, argc, argv);
}
