/* raftfs-shard: one server of a shard group (a Raft group replicating a LevelDB store). */
#include "kv/kv.h"
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
    };
    return rfs_server_cli_main(&cli, argc, argv);
}
