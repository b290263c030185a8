/* Per-member replication progress kept by the leader, and the in-flight window that
 * bounds pipelined appends. */
#include "internal.h"

#include <string.h>

#include "../common/alloc.h"

struct raft_progress *raft_progress_find(struct raft *r, raft_id id)
{
    for (unsigned i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id == id) {
            return &r->prs[i];
        }
    }
    return NULL;
}

void raft_progress_reset(struct raft_progress *pr, raft_index next)
{
    raft_id id = pr->id;
    bool learner = pr->learner;
    memset(pr, 0, sizeof *pr);
    pr->id = id;
    pr->learner = learner;
    pr->next = next;
    pr->state = RAFT_PR_PROBE;
}

/* Make prs match r->conf: keep what is known of remaining members, add new ones. */
int raft_progress_rebuild(struct raft *r)
{
    unsigned n = r->conf.n_voters + r->conf.n_learners;
    struct raft_progress *prs = rfs_calloc(n ? n : 1, sizeof *prs);
    if (prs == NULL) {
        return RFS_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        bool learner = i >= r->conf.n_voters;
        raft_id id = learner ? r->conf.learners[i - r->conf.n_voters] : r->conf.voters[i];
        struct raft_progress *old = raft_progress_find(r, id);
        if (old != NULL) {
            prs[i] = *old;
        } else {
            prs[i].id = id;
            raft_progress_reset(&prs[i], raft_log_last(&r->log) + 1);
            prs[i].recent_active = true;
        }
        prs[i].learner = learner;
    }
    rfs_free(r->prs);
    r->prs = prs;
    r->n_prs = n;
    return 0;
}

void raft_progress_become_probe(struct raft_progress *pr)
{
    raft_index next = pr->match + 1;
    if (pr->state == RAFT_PR_SNAPSHOT && pr->snap_index > pr->match) {
        next = pr->snap_index + 1;
    }
    pr->state = RAFT_PR_PROBE;
    pr->next = next;
    pr->probe_sent = false;
    pr->inflight_count = 0;
    pr->inflight_start = 0;
}

void raft_progress_become_replicate(struct raft_progress *pr)
{
    pr->state = RAFT_PR_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    pr->inflight_count = 0;
    pr->inflight_start = 0;
}

bool raft_progress_paused(const struct raft_progress *pr, unsigned max_inflight)
{
    switch (pr->state) {
        case RAFT_PR_PROBE:
            return pr->probe_sent;
        case RAFT_PR_REPLICATE:
            return pr->inflight_count >= max_inflight;
        case RAFT_PR_SNAPSHOT:
            return true;
    }
    return true;
}

void raft_progress_inflight_add(struct raft_progress *pr, raft_index last)
{
    unsigned slot = (pr->inflight_start + pr->inflight_count) % RAFT_MAX_INFLIGHT;
    pr->inflight[slot] = last;
    pr->inflight_count++;
}

/* Free every in-flight append whose entries are all at or below index. */
void raft_progress_inflight_free_to(struct raft_progress *pr, raft_index index)
{
    while (pr->inflight_count > 0 && pr->inflight[pr->inflight_start] <= index) {
        pr->inflight_start = (pr->inflight_start + 1) % RAFT_MAX_INFLIGHT;
        pr->inflight_count--;
    }
}

void raft_progress_inflight_free_first(struct raft_progress *pr)
{
    if (pr->inflight_count > 0) {
        pr->inflight_start = (pr->inflight_start + 1) % RAFT_MAX_INFLIGHT;
        pr->inflight_count--;
    }
}
