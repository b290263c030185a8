/* kv/txn_plan.c: a transaction's keys grouped by the group serving them, the primary's group
 * first (docs/txn.md, "The protocol"). Pure: the groups are computed by the caller. */
#include <string.h>

#include "../common/alloc.h"
#include "txn_client.h"

static bool same_key(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* The part of gid, added (after the existing ones) if missing. parts has room for one per
 * key. */
static struct kv_txn_part *part_for(struct kv_txn_plan *p, uint64_t gid)
{
    struct kv_txn_part *part = kv_txn_plan_part(p, gid);
    if (part == NULL) {
        part = &p->parts[p->n_parts++];
        part->gid = gid;
    }
    return part;
}

static void part_add_key(struct kv_txn_part *part, const ProtobufCBinaryData *k)
{
    for (unsigned i = 0; i < part->n_keys; i++) {
        if (same_key(&part->keys[i], k)) {
            return;
        }
    }
    part->keys[part->n_keys++] = *k;
}

struct kv_txn_part *kv_txn_plan_part(struct kv_txn_plan *p, uint64_t gid)
{
    for (unsigned i = 0; i < p->n_parts; i++) {
        if (p->parts[i].gid == gid) {
            return &p->parts[i];
        }
    }
    return NULL;
}

int kv_txn_plan_init(struct kv_txn_plan *p, const struct kv_txn_read *reads, unsigned n_reads,
                     const struct kv_txn_write *writes, unsigned n_writes, const uint64_t *gids)
{
    unsigned n = n_reads + n_writes;
    uint64_t primary_gid;
    size_t used_r = 0, used_w = 0, used_k = 0;

    memset(p, 0, sizeof *p);
    if (n == 0) {
        return RFS_EINVAL;
    }
    primary_gid = n_writes > 0 ? gids[n_reads] : gids[0];
    p->parts = rfs_calloc(n, sizeof *p->parts);
    p->read_msgs = rfs_calloc(n_reads ? n_reads : 1, sizeof *p->read_msgs);
    p->write_msgs = rfs_calloc(n_writes ? n_writes : 1, sizeof *p->write_msgs);
    p->read_ptrs = rfs_calloc(n_reads ? n_reads : 1, sizeof *p->read_ptrs);
    p->write_ptrs = rfs_calloc(n_writes ? n_writes : 1, sizeof *p->write_ptrs);
    p->key_store = rfs_calloc(n, sizeof *p->key_store);
    if (p->parts == NULL || p->read_msgs == NULL || p->write_msgs == NULL || p->read_ptrs == NULL ||
        p->write_ptrs == NULL || p->key_store == NULL) {
        kv_txn_plan_close(p);
        return RFS_ENOMEM;
    }
    for (unsigned i = 0; i < n_reads; i++) {
        raftfs__txn_read__init(&p->read_msgs[i]);
        p->read_msgs[i].key.data = (uint8_t *)reads[i].key;
        p->read_msgs[i].key.len = reads[i].klen;
        p->read_msgs[i].version = reads[i].version;
    }
    for (unsigned i = 0; i < n_writes; i++) {
        raftfs__txn_write__init(&p->write_msgs[i]);
        p->write_msgs[i].key.data = (uint8_t *)writes[i].key;
        p->write_msgs[i].key.len = writes[i].klen;
        p->write_msgs[i].value.data = (uint8_t *)writes[i].value;
        p->write_msgs[i].value.len = writes[i].vlen;
        p->write_msgs[i].delete_ = writes[i].del;
    }
    p->primary = n_writes > 0 ? p->write_msgs[0].key : p->read_msgs[0].key;

    /* The parts in order (primary's first), and how many of each thing they hold. */
    part_for(p, primary_gid)->holds_primary = true;
    for (unsigned i = 0; i < n; i++) {
        /* Writes first, then reads, as the keys are listed. */
        unsigned k = i < n_writes ? n_reads + i : i - n_writes;
        struct kv_txn_part *part = part_for(p, gids[k]);
        if (k < n_reads) {
            part->n_reads++;
        } else {
            part->n_writes++;
        }
    }
    /* Slices of the shared arrays, then fill them. */
    for (unsigned g = 0; g < p->n_parts; g++) {
        struct kv_txn_part *part = &p->parts[g];
        part->reads = p->read_ptrs + used_r;
        part->writes = p->write_ptrs + used_w;
        part->keys = p->key_store + used_k;
        used_r += part->n_reads;
        used_w += part->n_writes;
        used_k += part->n_reads + part->n_writes;
        part->n_reads = part->n_writes = 0;
    }
    for (unsigned i = 0; i < n_writes; i++) {
        struct kv_txn_part *part = kv_txn_plan_part(p, gids[n_reads + i]);
        part->writes[part->n_writes++] = &p->write_msgs[i];
        part_add_key(part, &p->write_msgs[i].key);
    }
    for (unsigned i = 0; i < n_reads; i++) {
        struct kv_txn_part *part = kv_txn_plan_part(p, gids[i]);
        part->reads[part->n_reads++] = &p->read_msgs[i];
        part_add_key(part, &p->read_msgs[i].key);
    }
    return 0;
}

void kv_txn_plan_close(struct kv_txn_plan *p)
{
    rfs_free(p->parts);
    rfs_free(p->read_msgs);
    rfs_free(p->write_msgs);
    rfs_free(p->read_ptrs);
    rfs_free(p->write_ptrs);
    rfs_free(p->key_store);
    memset(p, 0, sizeof *p);
}
