/* raftfs-meta: one server of the meta group (a Raft group replicating the bucket
 * configurations and the id allocator, meta/meta.h). */
#include "meta/meta.h"
#include "server/cli.h"

static int open_meta(void **sm, const char *dir, uint32_t nbuckets, char *errmsg)
{
    return meta_sm_open((struct meta_sm **)sm, dir, nbuckets, errmsg);
}

static void close_meta(void *sm)
{
    meta_sm_close(sm);
}

int main(int argc, char **argv)
{
    static const struct rfs_server_cli cli = {
        .prog = "raftfs-meta",
        .role = "meta",
        .summary = "Runs one server of the meta group: a Raft group that keeps the list of "
                   "bucket\nconfigurations (bucket -> shard group, group -> addresses) and "
                   "allocates ids.\nStart one process per address in --peers, each with its own "
                   "--id. Manage it\nwith `raftfs meta`.",
        .db_name = "meta",
        .buckets_doc = ", fixed when the group is\n                      first created: a later "
                       "start with another N is refused",
        .has_gid = false,
        .group_id = META_GROUP_ID,
        .default_buckets = META_DEFAULT_BUCKETS,
        .max_buckets = META_MAX_BUCKETS,
        .open_sm = open_meta,
        .close_sm = close_meta,
        .ops = &meta_sm_ops,
    };
    return rfs_server_cli_main(&cli, argc, argv);
}
