/* kv/client_internal.h: what the plain client (kv/client.c) shares with the routing layer
 * (kv/route.c) and the server's bucket mover (server/mover.c), which send requests whose
 * session and group fields they set themselves. Not for applications. */
#ifndef KV_CLIENT_INTERNAL_H
#define KV_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/proto.h"
#include "client.h"

/* Send packed KvRequest bytes (sent as they are: the session fields and group_id inside are
 * the caller's) to a plain client's group until a server gives a definite answer or
 * timeout_ms passes. On 0, *out is the unpacked reply (free with
 * raftfs__kv_reply__free_unpacked and proto_allocator), whatever its status. Otherwise a
 * transport code (RFS_EUNAVAIL, RFS_ETIMEDOUT, RFS_ENOMEM, ...) with the reason in errmsg;
 * the request may or may not have been applied. */
int kv_client_call_packed(struct kv_client *c, const void *req, size_t len, unsigned timeout_ms,
                          Raftfs__KvReply **out, char *errmsg);

/* The routing state of a routed client. */
struct kv_route;

/* o->meta[0..n_meta) and the timeouts (already defaulted) are copied. Returns 0, RFS_EINVAL,
 * RFS_ENOMEM. */
int kv_route_new(struct kv_route **out, const struct kv_client_options *o, char *errmsg);
void kv_route_free(struct kv_route *r);

/* One routed call's settings, and what it reports back. */
struct kv_route_opts {
    uint64_t gid;         /* in: send to this group; 0: to the group of the routing key */
    uint64_t deadline_ms; /* in: give up at this rpc_now_ms(); 0: timeout_ms from now */
    bool unknown;         /* out: an attempt got no answer (a write may have been applied) */
    bool split;           /* out: a KV_TXN refused by its group (WRONG_GROUP) whose keys the
                           * configuration now puts on several groups; RFS_EINVAL returned */
};

/* Send req to the group owning its routing key's bucket, retrying as kv/client.h says.
 * req's session fields are left alone (set them once, before the first call); its group_id
 * is set per attempt. Returns as kv_client_call_packed, plus RFS_EWRONGGROUP when no group
 * served the bucket in time (a final WRONG_GROUP reply is freed, not returned). An
 * operation that can meet a transaction's lock (GET, PUT, APPEND, DELETE, CAS, SCAN, TXN)
 * and is answered RFS_ELOCKED has the lock settled (kv/txn_resolve.c) and is resent
 * unchanged until the deadline; then RFS_ELOCKED naming the key and the transaction.
 * ro (may be NULL: the defaults) sets a deadline, or a group to send to instead (ro->gid):
 * then the request is retried only on transport failures, a WRONG_GROUP or ELOCKED reply is
 * returned as it is (0: the caller re-plans), and RFS_EWRONGGROUP is returned when the cached
 * configuration lists no such group. */
int kv_route_call(struct kv_route *r, Raftfs__KvRequest *req, struct kv_route_opts *ro,
                  Raftfs__KvReply **out, char *errmsg);

/* The group of each of keys[0..n) (gids[i], 0: no group) by the cached configuration, read
 * from the meta group first if there is none; *version (may be NULL) is its version.
 * Returns 0, or the meta group's error when no configuration could be read. */
int kv_route_groups(struct kv_route *r, const ProtobufCBinaryData *keys, size_t n, uint64_t *gids,
                    uint64_t *version, char *errmsg);

/* The ids of the groups in the cached configuration (up to cap; read from the meta group
 * first if there is none). Returns 0 or the meta group's error. */
int kv_route_group_ids(struct kv_route *r, uint64_t *gids, size_t cap, size_t *n, char *errmsg);

/* Read the configuration again (rate-limited across threads: see kv/route.c). */
void kv_route_refresh(struct kv_route *r);

/* kv_client_locate on a fresh configuration. */
int kv_route_locate(struct kv_route *r, const void *key, size_t klen, uint32_t *bucket,
                    uint64_t *gid, uint64_t *version, char *errmsg);

#endif
