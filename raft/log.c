/* The in-memory Raft log: entries since the last snapshot, plus commit/apply/stable
 * bookkeeping. Entry payloads are owned by the log. */
#include "internal.h"

#include <assert.h>
#include <string.h>

#include "../common/alloc.h"

int raft_log_init(struct raft_log *l, raft_index snap_index, raft_term snap_term)
{
    memset(l, 0, sizeof *l);
    l->snap_index = snap_index;
    l->snap_term = snap_term;
    l->committed = snap_index;
    l->applied = snap_index;
    l->stable = snap_index;
    return 0;
}

static void entry_free(struct raft_entry *e)
{
    rfs_free(e->data.base);
    e->data.base = NULL;
    e->data.len = 0;
}

void raft_log_close(struct raft_log *l)
{
    for (size_t i = 0; i < l->n; i++) {
        entry_free(&l->ents[i]);
    }
    rfs_free(l->ents);
    l->ents = NULL;
    l->n = l->cap = 0;
}

raft_index raft_log_last(const struct raft_log *l)
{
    return l->snap_index + l->n;
}

raft_term raft_log_last_term(const struct raft_log *l)
{
    return l->n > 0 ? l->ents[l->n - 1].term : l->snap_term;
}

raft_term raft_log_term(const struct raft_log *l, raft_index i)
{
    if (i == l->snap_index) {
        return l->snap_term;
    }
    if (i < l->snap_index || i > raft_log_last(l)) {
        return 0;
    }
    return l->ents[i - l->snap_index - 1].term;
}

struct raft_entry *raft_log_get(const struct raft_log *l, raft_index i)
{
    if (i <= l->snap_index || i > raft_log_last(l)) {
        return NULL;
    }
    return &l->ents[i - l->snap_index - 1];
}

int raft_log_append(struct raft_log *l, raft_term term, uint8_t type, const void *data, size_t len)
{
    struct raft_entry *e;
    void *copy = NULL;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct raft_entry *ents = rfs_realloc(l->ents, cap * sizeof *ents);
        if (ents == NULL) {
            return RFS_ENOMEM;
        }
        l->ents = ents;
        l->cap = cap;
    }
    if (len > 0) {
        copy = rfs_malloc(len);
        if (copy == NULL) {
            return RFS_ENOMEM;
        }
        memcpy(copy, data, len);
    }
    e = &l->ents[l->n];
    e->term = term;
    e->index = raft_log_last(l) + 1;
    e->type = type;
    e->data.base = copy;
    e->data.len = len;
    l->n++;
    return 0;
}

/* Drop entries from `from` on. Committed entries are never dropped (Raft §5.3). */
void raft_log_truncate_from(struct raft_log *l, raft_index from)
{
    assert(from > l->committed);
    assert(from > l->snap_index);
    while (raft_log_last(l) >= from) {
        entry_free(&l->ents[l->n - 1]);
        l->n--;
    }
    if (l->stable >= from) {
        l->stable = from - 1;
    }
}

/* Drop entries up to and including index (already covered by a snapshot). */
void raft_log_compact_to(struct raft_log *l, raft_index index)
{
    size_t k;
    if (index <= l->snap_index) {
        return;
    }
    assert(index <= l->applied);
    k = (size_t)(index - l->snap_index);
    l->snap_term = raft_log_term(l, index);
    for (size_t i = 0; i < k; i++) {
        entry_free(&l->ents[i]);
    }
    memmove(l->ents, l->ents + k, (l->n - k) * sizeof *l->ents);
    l->n -= k;
    l->snap_index = index;
}

/* Replace everything by a snapshot point (installing a leader's snapshot). */
void raft_log_reset(struct raft_log *l, raft_index snap_index, raft_term snap_term)
{
    for (size_t i = 0; i < l->n; i++) {
        entry_free(&l->ents[i]);
    }
    l->n = 0;
    l->snap_index = snap_index;
    l->snap_term = snap_term;
    l->committed = snap_index;
    l->applied = snap_index;
    l->stable = snap_index;
}

/* Is a log ending at (index, term) at least as up-to-date as ours? (Raft §5.4.1) */
bool raft_log_up_to_date(const struct raft_log *l, raft_index index, raft_term term)
{
    raft_term last_term = raft_log_last_term(l);
    return term > last_term || (term == last_term && index >= raft_log_last(l));
}
