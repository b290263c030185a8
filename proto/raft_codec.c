/* Raft messages to and from protobuf. */
#include "proto.h"

#include <string.h>

#include "../common/alloc.h"

static void *pa_alloc(void *data, size_t size)
{
    (void)data;
    return rfs_malloc(size ? size : 1);
}

static void pa_free(void *data, void *p)
{
    (void)data;
    rfs_free(p);
}

ProtobufCAllocator proto_allocator = {.alloc = pa_alloc, .free = pa_free, .allocator_data = NULL};

int proto_raft_pack(uint64_t group_id, const struct raft_message *m, struct rfs_buf *out)
{
    Raftfs__RaftMessage pb = RAFTFS__RAFT_MESSAGE__INIT;
    Raftfs__SnapshotMeta snap = RAFTFS__SNAPSHOT_META__INIT;
    Raftfs__Conf conf = RAFTFS__CONF__INIT;
    Raftfs__Entry *ents = NULL;
    Raftfs__Entry **ptrs = NULL;
    uint64_t voters[RAFT_MAX_NODES];
    uint64_t learners[RAFT_MAX_NODES];
    size_t size;
    int rv = RFS_ENOMEM;

    pb.group_id = group_id;
    pb.type = m->type;
    pb.from = m->from;
    pb.to = m->to;
    pb.term = m->term;
    pb.index = m->index;
    pb.log_term = m->log_term;
    pb.commit = m->commit;
    pb.reject = m->reject;
    pb.transfer = m->transfer;
    pb.done = m->done;
    pb.hint_index = m->hint_index;
    pb.hint_term = m->hint_term;
    pb.read_seq = m->read_seq;
    pb.offset = m->offset;
    pb.data.data = m->data.base;
    pb.data.len = m->data.len;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        for (unsigned i = 0; i < m->snap.conf.n_voters; i++) {
            voters[i] = m->snap.conf.voters[i];
        }
        for (unsigned i = 0; i < m->snap.conf.n_learners; i++) {
            learners[i] = m->snap.conf.learners[i];
        }
        conf.n_voters = m->snap.conf.n_voters;
        conf.voters = voters;
        conf.n_learners = m->snap.conf.n_learners;
        conf.learners = learners;
        snap.index = m->snap.index;
        snap.term = m->snap.term;
        snap.conf = &conf;
        pb.snap = &snap;
    }
    if (m->n_entries > 0) {
        ents = rfs_malloc(m->n_entries * sizeof *ents);
        ptrs = rfs_malloc(m->n_entries * sizeof *ptrs);
        if (ents == NULL || ptrs == NULL) {
            goto out;
        }
        for (unsigned i = 0; i < m->n_entries; i++) {
            raftfs__entry__init(&ents[i]);
            ents[i].term = m->entries[i].term;
            ents[i].index = m->entries[i].index;
            ents[i].type = m->entries[i].type;
            ents[i].data.data = m->entries[i].data.base;
            ents[i].data.len = m->entries[i].data.len;
            ptrs[i] = &ents[i];
        }
        pb.n_entries = m->n_entries;
        pb.entries = ptrs;
    }
    size = raftfs__raft_message__get_packed_size(&pb);
    out->base = rfs_malloc(size ? size : 1);
    if (out->base == NULL) {
        goto out;
    }
    out->len = raftfs__raft_message__pack(&pb, out->base);
    rv = 0;
out:
    rfs_free(ents);
    rfs_free(ptrs);
    return rv;
}

static int conf_from_pb(const Raftfs__Conf *pc, struct raft_conf *c, char *errmsg)
{
    memset(c, 0, sizeof *c);
    if (pc == NULL) {
        return 0;
    }
    if (pc->n_voters > RAFT_MAX_NODES || pc->n_learners > RAFT_MAX_NODES ||
        pc->n_voters + pc->n_learners > RAFT_MAX_NODES) {
        rfs_errmsg_printf(errmsg, "configuration with %zu voters and %zu learners", pc->n_voters,
                          pc->n_learners);
        return RFS_EPROTO;
    }
    for (size_t i = 0; i < pc->n_voters; i++) {
        c->voters[c->n_voters++] = pc->voters[i];
    }
    for (size_t i = 0; i < pc->n_learners; i++) {
        c->learners[c->n_learners++] = pc->learners[i];
    }
    /* Every member once, none with id 0 ("none"). */
    for (size_t i = 0; i < pc->n_voters + pc->n_learners; i++) {
        raft_id id = i < pc->n_voters ? pc->voters[i] : pc->learners[i - pc->n_voters];
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++) {
            dup = id == (j < pc->n_voters ? pc->voters[j] : pc->learners[j - pc->n_voters]);
        }
        if (id == 0 || dup) {
            rfs_errmsg_printf(errmsg, "configuration with member %llu %s", (unsigned long long)id,
                              id == 0 ? "(no such id)" : "twice");
            return RFS_EPROTO;
        }
    }
    return 0;
}

int proto_raft_unpack(const void *buf, size_t len, struct proto_raft_msg *out, char *errmsg)
{
    Raftfs__RaftMessage *pb;
    struct raft_message *m = &out->m;
    int rv;
    memset(out, 0, sizeof *out);
    pb = raftfs__raft_message__unpack(&proto_allocator, len, buf);
    if (pb == NULL) {
        rfs_errmsg_printf(errmsg, "raft message of %zu bytes does not decode", len);
        return RFS_EPROTO;
    }
    out->pb = pb;
    if (pb->type < RAFT_MSG_APPEND || pb->type > RAFT_MSG_TIMEOUT_NOW) {
        rfs_errmsg_printf(errmsg, "unknown raft message type %u", pb->type);
        rv = RFS_EPROTO;
        goto err;
    }
    if (pb->n_entries > PROTO_MAX_ENTRIES) {
        rfs_errmsg_printf(errmsg, "append with %zu entries", pb->n_entries);
        rv = RFS_EPROTO;
        goto err;
    }
    out->group_id = pb->group_id;
    m->type = (uint8_t)pb->type;
    m->from = pb->from;
    m->to = pb->to;
    m->term = pb->term;
    m->index = pb->index;
    m->log_term = pb->log_term;
    m->commit = pb->commit;
    m->reject = pb->reject;
    m->transfer = pb->transfer;
    m->done = pb->done;
    m->hint_index = pb->hint_index;
    m->hint_term = pb->hint_term;
    m->read_seq = pb->read_seq;
    m->offset = pb->offset;
    m->data.base = pb->data.data;
    m->data.len = pb->data.len;
    if (pb->snap != NULL) {
        m->snap.index = pb->snap->index;
        m->snap.term = pb->snap->term;
        rv = conf_from_pb(pb->snap->conf, &m->snap.conf, errmsg);
        if (rv != 0) {
            goto err;
        }
    }
    if (m->type == RAFT_MSG_SNAPSHOT &&
        (m->snap.index == 0 || m->snap.term == 0 || m->snap.conf.n_voters == 0)) {
        /* A snapshot ends at a real entry (term 0 would read as "no entry", matching a
         * position past the end of the log) and has a voter. */
        rfs_errmsg_printf(errmsg, "snapshot at index %llu, term %llu, with %u voters",
                          (unsigned long long)m->snap.index, (unsigned long long)m->snap.term,
                          m->snap.conf.n_voters);
        rv = RFS_EPROTO;
        goto err;
    }
    if (pb->n_entries > 0) {
        out->entries = rfs_malloc(pb->n_entries * sizeof *out->entries);
        if (out->entries == NULL) {
            rv = RFS_ENOMEM;
            goto err;
        }
        for (size_t i = 0; i < pb->n_entries; i++) {
            const Raftfs__Entry *e = pb->entries[i];
            /* Term 0 is no entry's (terms start at 1): the core reads it as "no entry here",
             * so such an entry would match a position past the end of the log. */
            if (e->type > RAFT_ENTRY_CONF || e->index != pb->index + 1 + i || e->term == 0) {
                rfs_errmsg_printf(errmsg, "entry %zu of an append is malformed", i);
                rv = RFS_EPROTO;
                goto err;
            }
            out->entries[i].term = e->term;
            out->entries[i].index = e->index;
            out->entries[i].type = (uint8_t)e->type;
            out->entries[i].data.base = e->data.data;
            out->entries[i].data.len = e->data.len;
        }
        m->entries = out->entries;
        m->n_entries = (unsigned)pb->n_entries;
    }
    return 0;
err:
    proto_raft_msg_free(out);
    return rv;
}

void proto_raft_msg_free(struct proto_raft_msg *pm)
{
    if (pm->pb != NULL) {
        raftfs__raft_message__free_unpacked(pm->pb, &proto_allocator);
    }
    rfs_free(pm->entries);
    memset(pm, 0, sizeof *pm);
}
