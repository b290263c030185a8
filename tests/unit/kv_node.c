/* See kv_node.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "kv_node.h"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void kv_node_open(struct kv_node *n)
{
    char errmsg[RFS_ERRMSG_SIZE];
    if (kv_sm_open(&n->sm, n->dir, n->nbuckets, errmsg) != 0 ||
        kv_sm_set_sharding(n->sm, n->gid, errmsg) != 0) {
        fail_msg("open %s: %s", n->dir, errmsg);
    }
    n->index = kv_sm_ops.applied(n->sm);
}

void kv_node_init(struct kv_node *n, const char *tag, uint32_t nbuckets, uint64_t gid)
{
    memset(n, 0, sizeof *n);
    snprintf(n->dir, sizeof n->dir, "/tmp/raftfs-%s-XXXXXX", tag);
    if (mkdtemp(n->dir) == NULL) {
        fail_msg("mkdtemp %s", n->dir);
    }
    n->gid = gid;
    n->nbuckets = nbuckets;
    n->time_ms = 1000;
    kv_node_open(n);
}

void kv_node_close(struct kv_node *n)
{
    kv_sm_close(n->sm);
    n->sm = NULL;
}

void kv_node_destroy(struct kv_node *n)
{
    kv_node_close(n);
    if (n->dir[0] != '\0') {
        nftw(n->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        n->dir[0] = '\0';
    }
}

static struct rfs_buf pack(Raftfs__KvRequest *r)
{
    struct rfs_buf b;
    b.len = raftfs__kv_request__get_packed_size(r);
    b.base = malloc(b.len + 1);
    assert_non_null(b.base);
    raftfs__kv_request__pack(r, b.base);
    return b;
}

static Raftfs__KvReply *unpack(struct rfs_buf reply)
{
    Raftfs__KvReply *out = raftfs__kv_reply__unpack(NULL, reply.len, reply.base);
    rfs_free(reply.base);
    assert_non_null(out);
    return out;
}

Raftfs__KvReply *kv_node_apply(struct kv_node *n, Raftfs__KvRequest *r)
{
    struct raft_entry e = {.term = 1, .index = n->index + 1, .type = RAFT_ENTRY_NORMAL};
    struct rfs_buf reply;
    char errmsg[RFS_ERRMSG_SIZE];
    r->time_ms = n->time_ms;
    e.data = pack(r);
    if (kv_sm_ops.apply(n->sm, &e, 1, &reply, errmsg) != 0) {
        fail_msg("apply: %s", errmsg);
    }
    n->index++;
    free(e.data.base);
    return unpack(reply);
}

Raftfs__KvReply *kv_node_query(struct kv_node *n, Raftfs__KvRequest *r)
{
    struct rfs_buf cmd = pack(r), reply;
    char errmsg[RFS_ERRMSG_SIZE];
    if (kv_sm_ops.query(n->sm, cmd.base, cmd.len, &reply, errmsg) != 0) {
        fail_msg("query: %s", errmsg);
    }
    free(cmd.base);
    return unpack(reply);
}

void kv_node_reply_free(Raftfs__KvReply *r)
{
    raftfs__kv_reply__free_unpacked(r, NULL);
}
