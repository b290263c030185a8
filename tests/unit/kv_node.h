/* tests/unit/kv_node.h: one kv state machine standing for a group in state-machine tests
 * (test_kv_shard.c, test_kv_txn.c): a store in a temporary directory, and requests applied
 * as consecutive log entries or run as queries. Every helper fails the test on an error. */
#ifndef TESTS_UNIT_KV_NODE_H
#define TESTS_UNIT_KV_NODE_H

#include <stdint.h>

#include "kv/kv.h"
#include "proto/raftfs.pb-c.h"

struct kv_node {
    char dir[64];
    struct kv_sm *sm;
    uint64_t gid; /* 0: unsharded */
    uint32_t nbuckets;
    raft_index index; /* the last index applied */
    uint64_t time_ms; /* log time stamped on each applied request (default 1000) */
};

/* A fresh store in a new temporary directory (name includes tag). */
void kv_node_init(struct kv_node *n, const char *tag, uint32_t nbuckets, uint64_t gid);
/* (Re)open the store of n->dir / close it. */
void kv_node_open(struct kv_node *n);
void kv_node_close(struct kv_node *n);
/* Close and remove the directory. */
void kv_node_destroy(struct kv_node *n);

/* Apply r as the next entry (time_ms stamped); the decoded reply (free with
 * kv_node_reply_free). */
Raftfs__KvReply *kv_node_apply(struct kv_node *n, Raftfs__KvRequest *r);
Raftfs__KvReply *kv_node_query(struct kv_node *n, Raftfs__KvRequest *r);
void kv_node_reply_free(Raftfs__KvReply *r);

#endif
