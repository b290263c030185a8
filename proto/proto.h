/* proto: conversions between the core's plain structs and the protobuf-c messages of
 * proto/raftfs.proto. Only this module and rpc codecs touch generated code for Raft. */
#ifndef PROTO_H
#define PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../raft/raft.h"
#include "proto/raftfs.pb-c.h"

/* Largest number of entries accepted in one decoded append. */
#define PROTO_MAX_ENTRIES 65536

/* Encode m for group `group_id` into out->base (rfs_malloc'ed; the caller frees it with
 * rfs_free). Entry payloads are read in place, written once. Returns 0 or RFS_ENOMEM. */
int proto_raft_pack(uint64_t group_id, const struct raft_message *m, struct rfs_buf *out);

/* A decoded message. m's entries and data point into memory owned by this struct. */
struct proto_raft_msg {
    uint64_t group_id;
    struct raft_message m;
    Raftfs__RaftMessage *pb;
    struct raft_entry *entries;
};

/* Decode and validate: message type known; configuration within RAFT_MAX_NODES, with
 * distinct non-zero ids; a snapshot chunk's index and term above 0 and at least one voter;
 * at most PROTO_MAX_ENTRIES entries, numbered on from `index`, of a known type and a term
 * above 0. Returns 0, RFS_EPROTO (errmsg says what is wrong) or RFS_ENOMEM. On success
 * release with proto_raft_msg_free(). */
int proto_raft_unpack(const void *buf, size_t len, struct proto_raft_msg *out, char *errmsg);
void proto_raft_msg_free(struct proto_raft_msg *pm);

/* protobuf-c allocator that goes through rfs_malloc (so tests can fail allocations). */
extern ProtobufCAllocator proto_allocator;

#endif
