/* meta/client.h: the client library of the meta group, over a kv_client (kv/client.h)
 * connected to the meta group's servers (group id 0 or META_GROUP_ID in its options).
 *
 * Writes (join, leave, move, alloc) are exactly-once through the kv client's sessions;
 * queries are linearizable reads. Every call returns 0 or an RFS_E* code and writes a
 * one-line reason into errmsg (RFS_ERRMSG_SIZE bytes, may be NULL): RFS_EINVAL for a
 * refused request (group already joined, bucket out of range, ...), RFS_ENOTFOUND for an
 * unknown group or version, or a transport error. */
#ifndef META_CLIENT_H
#define META_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "../kv/client.h"

struct meta_group_info {
    uint64_t gid;
    unsigned n_addrs;
    char **addrs; /* "host:port" */
};

/* A configuration as the client sees it; meta_config_clear frees what it holds. */
struct meta_config {
    uint64_t version;
    uint32_t nbuckets;
    uint64_t *buckets; /* bucket -> group id (0: none) */
    unsigned n_groups;
    struct meta_group_info *groups; /* sorted by gid */
};
void meta_config_clear(struct meta_config *cfg);

/* Join groups (copied); out (may be NULL) gets the new configuration. */
int meta_client_join(struct kv_client *c, const struct meta_group_info *groups, unsigned n,
                     struct meta_config *out, char *errmsg);
int meta_client_leave(struct kv_client *c, uint64_t gid, struct meta_config *out, char *errmsg);
/* Give joined group group->gid a new address list (copied; "-" holds the place of a
 * removed server), same buckets, in a new configuration version. */
int meta_client_set_addrs(struct kv_client *c, const struct meta_group_info *group,
                          struct meta_config *out, char *errmsg);
/* Move buckets first..last (inclusive) to gid. */
int meta_client_move(struct kv_client *c, uint32_t first, uint32_t last, uint64_t gid,
                     struct meta_config *out, char *errmsg);
/* The latest configuration (latest true) or the one of `version`. */
int meta_client_query(struct kv_client *c, bool latest, uint64_t version, struct meta_config *out,
                      char *errmsg);
/* count fresh ids: [*first, *first + count). Never handed out before. */
int meta_client_alloc_ids(struct kv_client *c, uint64_t count, uint64_t *first, char *errmsg);

#endif
