/* Membership: configurations, single-server changes (thesis §4.1) and their encoding. */
#include "internal.h"

#include <assert.h>
#include <string.h>

#include "../common/bytes.h"

size_t raft_conf_change_size(const struct raft_conf_change *cc)
{
    return RAFT_CONF_CHANGE_SIZE + cc->context_len;
}

void raft_conf_change_encode(const struct raft_conf_change *cc, uint8_t *out)
{
    assert(cc->context_len <= RAFT_CONF_CONTEXT_MAX);
    out[0] = cc->type;
    rfs_put_le64(out + 1, cc->node);
    if (cc->context_len > 0) {
        memcpy(out + RAFT_CONF_CHANGE_SIZE, cc->context, cc->context_len);
    }
}

int raft_conf_change_decode(const void *data, size_t len, struct raft_conf_change *cc)
{
    const uint8_t *p = data;
    if (len < RAFT_CONF_CHANGE_SIZE || len > RAFT_CONF_CHANGE_SIZE + RAFT_CONF_CONTEXT_MAX ||
        p[0] < RAFT_CC_ADD_LEARNER || p[0] > RAFT_CC_REMOVE) {
        return RFS_EINVAL;
    }
    cc->type = p[0];
    cc->node = rfs_get_le64(p + 1);
    cc->context_len = len - RAFT_CONF_CHANGE_SIZE;
    cc->context = cc->context_len > 0 ? p + RAFT_CONF_CHANGE_SIZE : NULL;
    return cc->node == 0 ? RFS_EINVAL : 0;
}

static int id_find(const raft_id *ids, unsigned n, raft_id id)
{
    for (unsigned i = 0; i < n; i++) {
        if (ids[i] == id) {
            return (int)i;
        }
    }
    return -1;
}

static void id_remove(raft_id *ids, unsigned *n, raft_id id)
{
    int i = id_find(ids, *n, id);
    if (i >= 0) {
        ids[i] = ids[*n - 1];
        (*n)--;
    }
}

bool raft_conf_is_voter(const struct raft_conf *c, raft_id id)
{
    return id_find(c->voters, c->n_voters, id) >= 0;
}

bool raft_conf_is_learner(const struct raft_conf *c, raft_id id)
{
    return id_find(c->learners, c->n_learners, id) >= 0;
}

int raft_conf_apply(struct raft_conf *c, const struct raft_conf_change *cc)
{
    bool voter = raft_conf_is_voter(c, cc->node);
    bool learner = raft_conf_is_learner(c, cc->node);
    switch (cc->type) {
        case RAFT_CC_ADD_LEARNER:
            if (voter || learner || c->n_voters + c->n_learners >= RAFT_MAX_NODES) {
                return RFS_EINVAL;
            }
            c->learners[c->n_learners++] = cc->node;
            return 0;
        case RAFT_CC_ADD_VOTER:
            if (voter || (!learner && c->n_voters + c->n_learners >= RAFT_MAX_NODES)) {
                return RFS_EINVAL;
            }
            id_remove(c->learners, &c->n_learners, cc->node);
            c->voters[c->n_voters++] = cc->node;
            return 0;
        case RAFT_CC_REMOVE:
            if (learner) {
                id_remove(c->learners, &c->n_learners, cc->node);
                return 0;
            }
            if (!voter || c->n_voters == 1) {
                return RFS_EINVAL;
            }
            id_remove(c->voters, &c->n_voters, cc->node);
            return 0;
    }
    return RFS_EINVAL;
}

unsigned raft_conf_quorum(const struct raft_conf *c)
{
    return c->n_voters / 2 + 1;
}

/* The configuration in force at index `upto`: the base plus every CONF entry up to it.
 * A change takes effect as soon as it is in the log (thesis §4.1). Changes that do not
 * apply were refused at proposal time; skipping them here keeps replay deterministic. */
void raft_conf_recompute(struct raft *r, raft_index upto, struct raft_conf *out,
                         raft_index *conf_index)
{
    raft_index last = raft_log_last(&r->log);
    *out = r->base_conf;
    *conf_index = 0;
    if (upto > last) {
        upto = last;
    }
    for (raft_index i = r->log.snap_index + 1; i <= upto; i++) {
        const struct raft_entry *e = raft_log_get(&r->log, i);
        struct raft_conf_change cc;
        if (e->type != RAFT_ENTRY_CONF) {
            continue;
        }
        *conf_index = i;
        if (raft_conf_change_decode(e->data.base, e->data.len, &cc) == 0) {
            (void)raft_conf_apply(out, &cc);
        }
    }
}
