/* Linearizability checker (see lin.h).
 *
 * lin_check sorts the recorded operations by key and searches each key's operations alone.
 * For one key the operations become a doubly linked list of call and return events in time
 * order (a call before a return at equal times). The search (Wing & Gong, as improved by
 * Lowe) walks the list from its head: at a call it tries to apply that operation to the
 * current register state; if the model accepts the recorded output and the pair
 * (set of operations applied so far, resulting state) has not been seen before, the
 * operation is "lifted" out of the list (call and return both) and pushed on a stack, and
 * the walk restarts at the head. Reaching a return means that operation had to take effect
 * already but could not: the search backtracks, pops the last lifted operation, puts it
 * back, and goes on with the call after it. An empty list is a linearization; backtracking
 * from an empty stack means there is none.
 *
 * Unknown outcomes: such an operation's return is placed after every known event, so
 * reaching one means every known operation has been placed, and the remaining unknown ones
 * are taken never to have happened.
 *
 * States are interned byte strings (id 0 is "absent"), so comparing a read with the state
 * is an integer comparison. The memo stores the set of placed operations as a 128-bit
 * Zobrist hash (two XORs of per-operation random words, updated incrementally) beside the
 * 32-bit state, so memory per entry does not grow with the history. A hash collision could
 * only prune a branch that was not explored (a false violation, with probability about
 * entries^2 / 2^128); a LIN_OK verdict always comes from a linearization actually found. */
#include "tests/lib/lin.h"

#include "common/alloc.h"
#include "common/err.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Memo memory bound per key; past it the verdict is LIN_UNKNOWN. */
#define LIN_MEMO_MAX_BYTES ((size_t)256 << 20)
/* How many operations of the prefix and candidates an explanation shows. */
#define LIN_EXPLAIN_OPS 6

struct lin_rec {
    size_t seq; /* order of lin_history_add */
    int client;
    enum lin_kind kind;
    enum lin_out out;
    bool expect_absent;
    int64_t invoke_ns;
    int64_t return_ns;
    size_t key_len, arg_len, expect_len, value_len;
    char *key, *arg, *expect, *value; /* point into bytes */
    char bytes[];
};

struct lin_history {
    pthread_mutex_t mu; /* protects recs and n */
    struct lin_rec **recs;
    size_t n, cap;
};

int64_t lin_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct lin_history *lin_history_new(void)
{
    struct lin_history *h = rfs_calloc(1, sizeof *h);
    if (h != NULL) {
        pthread_mutex_init(&h->mu, NULL);
    }
    return h;
}

void lin_history_free(struct lin_history *h)
{
    if (h == NULL) {
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        rfs_free(h->recs[i]);
    }
    rfs_free(h->recs);
    pthread_mutex_destroy(&h->mu);
    rfs_free(h);
}

static bool op_valid(const struct lin_op *op)
{
    if (op->key == NULL && op->key_len > 0) {
        return false;
    }
    if (op->out != LIN_OUT_UNKNOWN && op->return_ns < op->invoke_ns) {
        return false;
    }
    switch (op->kind) {
        case LIN_GET:
            return op->out == LIN_OUT_VALUE || op->out == LIN_OUT_ABSENT ||
                   op->out == LIN_OUT_UNKNOWN;
        case LIN_PUT:
        case LIN_APPEND:
        case LIN_DELETE:
            return op->out == LIN_OUT_OK || op->out == LIN_OUT_UNKNOWN;
        case LIN_CAS:
            return op->out == LIN_OUT_OK || op->out == LIN_OUT_CONFLICT ||
                   op->out == LIN_OUT_UNKNOWN;
    }
    return false;
}

static char *copy_into(char **cursor, const void *src, size_t len)
{
    char *dst = *cursor;
    if (len > 0) {
        memcpy(dst, src, len);
    }
    *cursor += len;
    return dst;
}

int lin_history_add(struct lin_history *h, const struct lin_op *op)
{
    size_t arg_len =
        op->kind == LIN_PUT || op->kind == LIN_APPEND || op->kind == LIN_CAS ? op->arg_len : 0;
    size_t expect_len = op->kind == LIN_CAS && !op->expect_absent ? op->expect_len : 0;
    size_t value_len = op->kind == LIN_GET && op->out == LIN_OUT_VALUE ? op->value_len : 0;
    struct lin_rec *r;
    char *cursor;
    int rv = 0;

    if (!op_valid(op) || (arg_len > 0 && op->arg == NULL) ||
        (expect_len > 0 && op->expect == NULL) || (value_len > 0 && op->value == NULL)) {
        return RFS_EINVAL;
    }
    r = rfs_malloc(sizeof *r + op->key_len + arg_len + expect_len + value_len);
    if (r == NULL) {
        return RFS_ENOMEM;
    }
    r->client = op->client;
    r->kind = op->kind;
    r->out = op->out;
    r->expect_absent = op->kind == LIN_CAS && op->expect_absent;
    r->invoke_ns = op->invoke_ns;
    r->return_ns = op->out == LIN_OUT_UNKNOWN ? INT64_MAX : op->return_ns;
    r->key_len = op->key_len;
    r->arg_len = arg_len;
    r->expect_len = expect_len;
    r->value_len = value_len;
    cursor = r->bytes;
    r->key = copy_into(&cursor, op->key, op->key_len);
    r->arg = copy_into(&cursor, op->arg, arg_len);
    r->expect = copy_into(&cursor, op->expect, expect_len);
    r->value = copy_into(&cursor, op->value, value_len);

    pthread_mutex_lock(&h->mu);
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        struct lin_rec **recs = rfs_realloc(h->recs, cap * sizeof *recs);
        if (recs == NULL) {
            rv = RFS_ENOMEM;
        } else {
            h->recs = recs;
            h->cap = cap;
        }
    }
    if (rv == 0) {
        r->seq = h->n;
        h->recs[h->n++] = r;
    }
    pthread_mutex_unlock(&h->mu);
    if (rv != 0) {
        rfs_free(r);
    }
    return rv;
}

size_t lin_history_len(struct lin_history *h)
{
    size_t n;
    pthread_mutex_lock(&h->mu);
    n = h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* --- hashing --- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* --- interned values: id 0 is absent, id i > 0 is vals[i - 1] --- */

struct val {
    char *p;
    size_t len;
    uint64_t hash;
};

struct vtab {
    struct val *vals;
    size_t n, cap;
    uint32_t *slots; /* open addressing over ids; 0 is empty */
    size_t nslots;
};

static void vtab_free(struct vtab *t)
{
    for (size_t i = 0; i < t->n; i++) {
        rfs_free(t->vals[i].p);
    }
    rfs_free(t->vals);
    rfs_free(t->slots);
}

static int vtab_grow(struct vtab *t)
{
    size_t nslots = t->nslots ? t->nslots * 2 : 64;
    uint32_t *slots = rfs_calloc(nslots, sizeof *slots);
    if (slots == NULL) {
        return RFS_ENOMEM;
    }
    for (size_t i = 0; i < t->n; i++) {
        size_t s = t->vals[i].hash & (nslots - 1);
        while (slots[s] != 0) {
            s = (s + 1) & (nslots - 1);
        }
        slots[s] = (uint32_t)(i + 1);
    }
    rfs_free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
    return 0;
}

/* The id of bytes a (alen) followed by b (blen), added if new. Returns 0 on success. */
static int vtab_intern2(struct vtab *t, const char *a, size_t alen, const char *b, size_t blen,
                        uint32_t *id)
{
    uint64_t hash;
    size_t s;
    char *p;

    /* Hash the concatenation without building it first. */
    hash = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < alen; i++) {
        hash = (hash ^ (unsigned char)a[i]) * 0x100000001b3ULL;
    }
    for (size_t i = 0; i < blen; i++) {
        hash = (hash ^ (unsigned char)b[i]) * 0x100000001b3ULL;
    }
    if ((t->n + 1) * 2 > t->nslots && vtab_grow(t) != 0) {
        return RFS_ENOMEM;
    }
    for (s = hash & (t->nslots - 1); t->slots[s] != 0; s = (s + 1) & (t->nslots - 1)) {
        const struct val *v = &t->vals[t->slots[s] - 1];
        if (v->hash == hash && v->len == alen + blen && (alen == 0 || memcmp(v->p, a, alen) == 0) &&
            (blen == 0 || memcmp(v->p + alen, b, blen) == 0)) {
            *id = t->slots[s];
            return 0;
        }
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct val *vals = rfs_realloc(t->vals, cap * sizeof *vals);
        if (vals == NULL) {
            return RFS_ENOMEM;
        }
        t->vals = vals;
        t->cap = cap;
    }
    p = rfs_malloc(alen + blen + 1);
    if (p == NULL) {
        return RFS_ENOMEM;
    }
    if (alen > 0) {
        memcpy(p, a, alen);
    }
    if (blen > 0) {
        memcpy(p + alen, b, blen);
    }
    t->vals[t->n] = (struct val){.p = p, .len = alen + blen, .hash = hash};
    t->n++;
    t->slots[s] = (uint32_t)t->n;
    *id = (uint32_t)t->n;
    return 0;
}

static int vtab_intern(struct vtab *t, const char *p, size_t len, uint32_t *id)
{
    return vtab_intern2(t, p, len, NULL, 0, id);
}

/* --- the per-key search --- */

struct kop {
    const struct lin_rec *r;
    bool unknown;
    bool noop;          /* leaves the state as it is whenever the model accepts it */
    uint32_t arg_id;    /* put, cas: new value */
    uint32_t expect_id; /* cas: expected state */
    uint32_t out_id;    /* get: state it read */
};

struct event {
    struct event *prev, *next;
    int64_t time;
    uint32_t op;
    bool is_call;
};

/* Memo of (set of lifted operations, state), open addressing. The set is kept as two
 * independent 64-bit Zobrist hashes rather than as a bitset, so an entry has a fixed small
 * size however long the history is. */
struct memo_slot {
    uint64_t h1, h2;
    uint32_t state;
    bool used;
};

/* Transition cache for appends: (state, op) -> state. */
struct trans_slot {
    uint64_t key; /* state << 32 | (op + 1); 0 is empty */
    uint32_t to;
};

struct failure {
    bool set;
    size_t depth;
    uint32_t blocked;
    uint32_t state;
    uint32_t prefix[LIN_EXPLAIN_OPS];
    size_t n_prefix;
    uint32_t cands[LIN_EXPLAIN_OPS];
    size_t n_cands;
};

struct keycheck {
    struct kop *ops;
    size_t n;
    struct event head; /* sentinel */
    struct event *events;
    struct vtab vals;
    uint64_t *zobrist; /* two random words per operation */
    struct memo_slot *memo;
    size_t memo_cap, memo_n;
    struct trans_slot *trans;
    size_t trans_cap, trans_n;
    struct failure fail;
    unsigned long long steps;
};

static void keycheck_free(struct keycheck *k)
{
    rfs_free(k->ops);
    rfs_free(k->events);
    vtab_free(&k->vals);
    rfs_free(k->zobrist);
    rfs_free(k->memo);
    rfs_free(k->trans);
}

static uint32_t trans_get(struct keycheck *k, uint32_t state, uint32_t op, bool *found)
{
    uint64_t key = (uint64_t)state << 32 | (op + 1);
    *found = false;
    if (k->trans_cap == 0) {
        return 0;
    }
    for (size_t s = mix64(key) & (k->trans_cap - 1); k->trans[s].key != 0;
         s = (s + 1) & (k->trans_cap - 1)) {
        if (k->trans[s].key == key) {
            *found = true;
            return k->trans[s].to;
        }
    }
    return 0;
}

static int trans_put(struct keycheck *k, uint32_t state, uint32_t op, uint32_t to)
{
    uint64_t key = (uint64_t)state << 32 | (op + 1);
    size_t s;

    if ((k->trans_n + 1) * 2 > k->trans_cap) {
        size_t cap = k->trans_cap ? k->trans_cap * 2 : 256;
        struct trans_slot *t = rfs_calloc(cap, sizeof *t);
        if (t == NULL) {
            return RFS_ENOMEM;
        }
        for (size_t i = 0; i < k->trans_cap; i++) {
            if (k->trans[i].key != 0) {
                for (s = mix64(k->trans[i].key) & (cap - 1); t[s].key != 0;
                     s = (s + 1) & (cap - 1)) {
                }
                t[s] = k->trans[i];
            }
        }
        rfs_free(k->trans);
        k->trans = t;
        k->trans_cap = cap;
    }
    for (s = mix64(key) & (k->trans_cap - 1); k->trans[s].key != 0;
         s = (s + 1) & (k->trans_cap - 1)) {
    }
    k->trans[s].key = key;
    k->trans[s].to = to;
    k->trans_n++;
    return 0;
}

/* Apply ops[i] to state. Returns 1 and sets *next if the model accepts the recorded output,
 * 0 if it does not, -1 when out of memory. */
static int model_step(struct keycheck *k, uint32_t state, uint32_t i, uint32_t *next)
{
    const struct kop *o = &k->ops[i];
    const struct lin_rec *r = o->r;

    switch (r->kind) {
        case LIN_GET:
            *next = state;
            return state == o->out_id;
        case LIN_PUT:
            *next = o->arg_id;
            return 1;
        case LIN_DELETE:
            *next = 0;
            return 1;
        case LIN_APPEND: {
            bool found;
            const struct val *v;
            uint32_t to = trans_get(k, state, i, &found);
            if (!found) {
                v = state == 0 ? NULL : &k->vals.vals[state - 1];
                if (vtab_intern2(&k->vals, v ? v->p : NULL, v ? v->len : 0, r->arg, r->arg_len,
                                 &to) != 0 ||
                    trans_put(k, state, i, to) != 0) {
                    return -1;
                }
            }
            *next = to;
            return 1;
        }
        case LIN_CAS:
            if (state == o->expect_id) {
                *next = o->arg_id;
                return r->out != LIN_OUT_CONFLICT;
            }
            *next = state;
            return r->out != LIN_OUT_OK;
    }
    return 0;
}

static int memo_grow(struct keycheck *k)
{
    size_t cap = k->memo_cap ? k->memo_cap * 2 : 1024;
    struct memo_slot *m;

    if (cap * sizeof *m > LIN_MEMO_MAX_BYTES) {
        return RFS_ENOMEM;
    }
    m = rfs_calloc(cap, sizeof *m);
    if (m == NULL) {
        return RFS_ENOMEM;
    }
    for (size_t i = 0; i < k->memo_cap; i++) {
        if (k->memo[i].used) {
            size_t s = (k->memo[i].h1 ^ mix64(k->memo[i].state)) & (cap - 1);
            while (m[s].used) {
                s = (s + 1) & (cap - 1);
            }
            m[s] = k->memo[i];
        }
    }
    rfs_free(k->memo);
    k->memo = m;
    k->memo_cap = cap;
    return 0;
}

/* Add (set with hashes h1 and h2, state). Returns 1 if new, 0 if seen, -1 when out of memory
 * (or over LIN_MEMO_MAX_BYTES). */
static int memo_insert(struct keycheck *k, uint64_t h1, uint64_t h2, uint32_t state)
{
    size_t s;

    if ((k->memo_n + 1) * 2 > k->memo_cap && memo_grow(k) != 0) {
        return -1;
    }
    for (s = (h1 ^ mix64(state)) & (k->memo_cap - 1); k->memo[s].used;
         s = (s + 1) & (k->memo_cap - 1)) {
        const struct memo_slot *m = &k->memo[s];
        if (m->h1 == h1 && m->h2 == h2 && m->state == state) {
            return 0;
        }
    }
    k->memo[s] = (struct memo_slot){.h1 = h1, .h2 = h2, .state = state, .used = true};
    k->memo_n++;
    return 1;
}

/* Whether (set with hashes h1 and h2, state) is in the memo. */
static bool memo_seen(const struct keycheck *k, uint64_t h1, uint64_t h2, uint32_t state)
{
    for (size_t s = (h1 ^ mix64(state)) & (k->memo_cap - 1); k->memo[s].used;
         s = (s + 1) & (k->memo_cap - 1)) {
        const struct memo_slot *m = &k->memo[s];
        if (m->h1 == h1 && m->h2 == h2 && m->state == state) {
            return true;
        }
    }
    return false;
}

/* Whether the node (h1, h2, state), whose placed unknown outcomes are unk[0..n), is
 * dominated by a node already in the memo: the same state with some of those unknown
 * operations left unplaced. Any completion of the node is a completion of that one too
 * (an unknown operation may stay unplaced forever), and that one was searched already or
 * is an ancestor still being searched, whose siblings include the same completion. All
 * subsets are tried when there are few placed unknowns, else single ones and all of them. */
static bool memo_dominated(const struct keycheck *k, uint64_t h1, uint64_t h2, uint32_t state,
                           const uint32_t *unk, size_t n)
{
    uint64_t a1 = h1, a2 = h2;

    if (n == 0) {
        return false;
    }
    if (n <= 6) {
        for (unsigned mask = 1; mask < (1u << n); mask++) {
            uint64_t x1 = h1, x2 = h2;
            for (size_t i = 0; i < n; i++) {
                if (mask & (1u << i)) {
                    x1 ^= k->zobrist[2 * unk[i]];
                    x2 ^= k->zobrist[2 * unk[i] + 1];
                }
            }
            if (memo_seen(k, x1, x2, state)) {
                return true;
            }
        }
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (memo_seen(k, h1 ^ k->zobrist[2 * unk[i]], h2 ^ k->zobrist[2 * unk[i] + 1], state)) {
            return true;
        }
        a1 ^= k->zobrist[2 * unk[i]];
        a2 ^= k->zobrist[2 * unk[i] + 1];
    }
    return memo_seen(k, a1, a2, state);
}

static void lift(struct event *call, struct event *ret)
{
    call->prev->next = call->next;
    if (call->next != NULL) {
        call->next->prev = call->prev;
    }
    ret->prev->next = ret->next;
    if (ret->next != NULL) {
        ret->next->prev = ret->prev;
    }
}

/* Undo lift(call, ret): dancing links, in reverse order. */
static void unlift(struct event *call, struct event *ret)
{
    ret->prev->next = ret;
    if (ret->next != NULL) {
        ret->next->prev = ret;
    }
    call->prev->next = call;
    if (call->next != NULL) {
        call->next->prev = call;
    }
}

static int event_cmp(const void *a, const void *b)
{
    const struct event *x = a, *y = b;
    if (x->time != y->time) {
        return x->time < y->time ? -1 : 1;
    }
    if (x->is_call != y->is_call) {
        return x->is_call ? -1 : 1; /* equal times are concurrent */
    }
    return x->op < y->op ? -1 : x->op > y->op;
}

/* Prepare k for the operations recs[0..n) of one key. Returns 0 or RFS_ENOMEM. */
static int keycheck_init(struct keycheck *k, struct lin_rec **recs, size_t n)
{
    size_t m = 0;

    memset(k, 0, sizeof *k);
    k->ops = rfs_calloc(n ? n : 1, sizeof *k->ops);
    k->events = rfs_calloc(2 * n + 1, sizeof *k->events);
    if (k->ops == NULL || k->events == NULL) {
        return RFS_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct lin_rec *r = recs[i];
        struct kop *o = &k->ops[m];
        if (r->kind == LIN_GET && r->out == LIN_OUT_UNKNOWN) {
            continue; /* an unknown read constrains nothing */
        }
        o->r = r;
        o->unknown = r->out == LIN_OUT_UNKNOWN;
        if ((r->kind == LIN_PUT || r->kind == LIN_CAS) &&
            vtab_intern(&k->vals, r->arg, r->arg_len, &o->arg_id) != 0) {
            return RFS_ENOMEM;
        }
        if (r->kind == LIN_CAS && !r->expect_absent &&
            vtab_intern(&k->vals, r->expect, r->expect_len, &o->expect_id) != 0) {
            return RFS_ENOMEM;
        }
        if (r->kind == LIN_GET && r->out == LIN_OUT_VALUE &&
            vtab_intern(&k->vals, r->value, r->value_len, &o->out_id) != 0) {
            return RFS_ENOMEM;
        }
        /* A known read, a known conflict, a cas that writes what it expects, an empty
         * append: accepted only in states it does not change. */
        o->noop =
            !o->unknown &&
            (r->kind == LIN_GET ||
             (r->kind == LIN_CAS && (r->out == LIN_OUT_CONFLICT || o->arg_id == o->expect_id)) ||
             (r->kind == LIN_APPEND && r->arg_len == 0));
        m++;
    }
    k->n = m;
    k->zobrist = rfs_calloc(2 * (m ? m : 1), sizeof *k->zobrist);
    if (k->zobrist == NULL) {
        return RFS_ENOMEM;
    }
    for (size_t i = 0; i < m; i++) {
        k->zobrist[2 * i] = mix64(0x2545f4914f6cdd1dULL * (2 * i + 1));
        k->zobrist[2 * i + 1] = mix64(0x2545f4914f6cdd1dULL * (2 * i + 2));
        k->events[2 * i] =
            (struct event){.time = k->ops[i].r->invoke_ns, .op = (uint32_t)i, .is_call = true};
        k->events[2 * i + 1] =
            (struct event){.time = k->ops[i].r->return_ns, .op = (uint32_t)i, .is_call = false};
    }
    qsort(k->events, 2 * m, sizeof *k->events, event_cmp);
    k->head.prev = NULL;
    k->head.next = m > 0 ? &k->events[0] : NULL;
    for (size_t i = 0; i < 2 * m; i++) {
        k->events[i].prev = i == 0 ? &k->head : &k->events[i - 1];
        k->events[i].next = i + 1 < 2 * m ? &k->events[i + 1] : NULL;
    }
    return 0;
}

/* Note the deepest point where the search got stuck, for the explanation. */
static void note_failure(struct keycheck *k, const struct event *ret, size_t depth,
                         const uint32_t *stack_ops, uint32_t state)
{
    struct failure *f = &k->fail;
    size_t from = depth > LIN_EXPLAIN_OPS ? depth - LIN_EXPLAIN_OPS : 0;

    if (f->set && depth <= f->depth) {
        return;
    }
    f->set = true;
    f->depth = depth;
    f->blocked = ret->op;
    f->state = state;
    f->n_prefix = 0;
    for (size_t i = from; i < depth; i++) {
        f->prefix[f->n_prefix++] = stack_ops[i];
    }
    f->n_cands = 0;
    for (const struct event *e = k->head.next; e != NULL && e != ret; e = e->next) {
        if (e->is_call && f->n_cands < LIN_EXPLAIN_OPS) {
            f->cands[f->n_cands++] = e->op;
        }
    }
}

/* Search one key until deadline. Out of memory is LIN_UNKNOWN with *oom set.
 *
 * Pruning beyond the memo: an operation that never changes the state when the model accepts
 * it (kop.noop: a known read, a known conflict, ...) can always be placed at the first moment
 * it is a candidate and fits. Its call precedes every pending return, so moving it earlier
 * in any completion breaks no real-time order, and since it changes the state neither here
 * nor where it stood, every other result stays the same. Hence if nothing completes after
 * placing it, nothing completes from its parent either, and backtracking pops straight
 * through it without trying its siblings. (A put of the current value does not qualify: at
 * a later point it may change the state.)
 *
 * A node whose placed unknown outcomes could be left out to reach a node already in the
 * memo is skipped too (memo_dominated).
 *
 * Candidates are tried in call order. Trying unknown outcomes last was measured to be worse:
 * a write that did happen early is then placed only after long backtracking. */
static enum lin_verdict keycheck_search(struct keycheck *k, int64_t deadline, bool *oom)
{
    size_t cap = k->n ? k->n : 1;
    struct event **call_ev = rfs_malloc(cap * sizeof *call_ev);
    struct event **ret_ev = rfs_malloc(cap * sizeof *ret_ev);
    uint32_t *stack_op = rfs_malloc(cap * sizeof *stack_op);
    uint32_t *stack_state = rfs_malloc(cap * sizeof *stack_state);
    uint32_t *unk = rfs_malloc(cap * sizeof *unk); /* placed unknown outcomes, in order */
    size_t n_unk = 0;
    enum lin_verdict verdict = LIN_UNKNOWN;
    struct event *e;
    uint32_t state = 0;
    uint64_t h1 = 0, h2 = 0;
    size_t depth = 0;

    *oom = false;
    if (call_ev == NULL || ret_ev == NULL || stack_op == NULL || stack_state == NULL ||
        unk == NULL) {
        *oom = true;
        goto out;
    }
    for (size_t i = 0; i < 2 * k->n; i++) {
        struct event *ev = &k->events[i];
        if (ev->is_call) {
            call_ev[ev->op] = ev;
        } else {
            ret_ev[ev->op] = ev;
        }
    }
    e = k->head.next;
    for (;;) {
        uint32_t op, next;
        if ((++k->steps & 4095) == 0 && lin_now_ns() > deadline) {
            goto out;
        }
        if (e == NULL) {
            verdict = LIN_OK; /* every operation placed */
            goto out;
        }
        if (e->is_call) {
            int ok, fresh;
            op = e->op;
            ok = model_step(k, state, op, &next);
            if (ok < 0) {
                *oom = true;
                goto out;
            }
            if (ok) {
                uint64_t n1 = h1 ^ k->zobrist[2 * op], n2 = h2 ^ k->zobrist[2 * op + 1];
                if (k->ops[op].unknown) {
                    unk[n_unk++] = op; /* popped below unless the node is kept */
                }
                fresh = memo_insert(k, n1, n2, next);
                if (fresh < 0) {
                    *oom = true;
                    goto out;
                }
                if (fresh && memo_dominated(k, n1, n2, next, unk, n_unk)) {
                    fresh = 0;
                }
                if (!fresh && k->ops[op].unknown) {
                    n_unk--;
                }
                if (fresh) {
                    stack_op[depth] = op;
                    stack_state[depth] = state;
                    depth++;
                    state = next;
                    h1 ^= k->zobrist[2 * op];
                    h2 ^= k->zobrist[2 * op + 1];
                    lift(e, ret_ev[op]);
                    e = k->head.next;
                    continue;
                }
            }
            e = e->next;
            continue;
        }
        if (k->ops[e->op].unknown) {
            verdict = LIN_OK; /* the rest are unknown outcomes: they never happened */
            goto out;
        }
        note_failure(k, e, depth, stack_op, state);
        /* Backtrack: undo the last placement, and keep undoing through state-preserving
         * ones (see above). */
        do {
            if (depth == 0) {
                verdict = LIN_VIOLATION;
                goto out;
            }
            depth--;
            op = stack_op[depth];
            state = stack_state[depth];
            h1 ^= k->zobrist[2 * op];
            h2 ^= k->zobrist[2 * op + 1];
            unlift(call_ev[op], ret_ev[op]);
            if (k->ops[op].unknown) {
                n_unk--;
            }
        } while (k->ops[op].noop);
        e = call_ev[op]->next;
    }
out:
    rfs_free(call_ev);
    rfs_free(ret_ev);
    rfs_free(stack_op);
    rfs_free(stack_state);
    rfs_free(unk);
    return verdict;
}

/* --- explanations --- */

struct sbuf {
    char *p;
    size_t cap, len;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (b->p == NULL || b->len + 1 >= b->cap) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        b->len += (size_t)n < b->cap - b->len ? (size_t)n : b->cap - b->len - 1;
    }
}

/* Quote bytes for humans: printable ASCII as is, the rest as \xNN, long values cut. */
static void sb_bytes(struct sbuf *b, const char *p, size_t len)
{
    size_t shown = len > 24 ? 20 : len;
    sb_printf(b, "\"");
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            sb_printf(b, "%c", c);
        } else {
            sb_printf(b, "\\x%02x", c);
        }
    }
    sb_printf(b, len > shown ? "\"...(%zu bytes)" : "\"", len);
}

static void sb_state(struct sbuf *b, const struct keycheck *k, uint32_t state)
{
    if (state == 0) {
        sb_printf(b, "absent");
    } else {
        sb_bytes(b, k->vals.vals[state - 1].p, k->vals.vals[state - 1].len);
    }
}

static void sb_time(struct sbuf *b, int64_t t, int64_t t0)
{
    if (t == INT64_MAX) {
        sb_printf(b, "?");
    } else {
        sb_printf(b, "%.3f", (double)(t - t0) / 1e6);
    }
}

static void sb_op(struct sbuf *b, const struct lin_rec *r, int64_t t0)
{
    static const char *const names[] = {"get", "put", "append", "delete", "cas"};
    sb_printf(b, "op#%zu client %d %s", r->seq, r->client, names[r->kind]);
    if (r->kind == LIN_PUT || r->kind == LIN_APPEND) {
        sb_printf(b, " ");
        sb_bytes(b, r->arg, r->arg_len);
    } else if (r->kind == LIN_CAS) {
        sb_printf(b, " ");
        if (r->expect_absent) {
            sb_printf(b, "absent");
        } else {
            sb_bytes(b, r->expect, r->expect_len);
        }
        sb_printf(b, " -> ");
        sb_bytes(b, r->arg, r->arg_len);
    }
    switch (r->out) {
        case LIN_OUT_OK:
            sb_printf(b, r->kind == LIN_CAS ? " = ok" : "");
            break;
        case LIN_OUT_VALUE:
            sb_printf(b, " = ");
            sb_bytes(b, r->value, r->value_len);
            break;
        case LIN_OUT_ABSENT:
            sb_printf(b, " = absent");
            break;
        case LIN_OUT_CONFLICT:
            sb_printf(b, " = conflict");
            break;
        case LIN_OUT_UNKNOWN:
            sb_printf(b, " = unknown");
            break;
    }
    sb_printf(b, " [");
    sb_time(b, r->invoke_ns, t0);
    sb_printf(b, ", ");
    sb_time(b, r->return_ns, t0);
    sb_printf(b, "] ms\n");
}

static void explain_violation(struct sbuf *b, const struct keycheck *k, const struct lin_rec *r0,
                              int64_t t0)
{
    const struct failure *f = &k->fail;

    sb_printf(b, "key ");
    sb_bytes(b, r0->key, r0->key_len);
    sb_printf(b, ": not linearizable (%zu ops; times in ms from the first invocation)\n", k->n);
    sb_printf(b, "longest linearizable prefix: %zu ops%s\n", f->depth,
              f->n_prefix < f->depth ? ", ending with:" : (f->depth > 0 ? ":" : ""));
    for (size_t i = 0; i < f->n_prefix; i++) {
        sb_printf(b, "  ");
        sb_op(b, k->ops[f->prefix[i]].r, t0);
    }
    sb_printf(b, "register after it: ");
    sb_state(b, k, f->state);
    sb_printf(b, "\nthen this op must take effect before it returns, but cannot:\n  ");
    sb_op(b, k->ops[f->blocked].r, t0);
    sb_printf(b, "pending ops tried at that point (none fits or all lead to dead ends):\n");
    for (size_t i = 0; i < f->n_cands; i++) {
        sb_printf(b, "  ");
        sb_op(b, k->ops[f->cands[i]].r, t0);
    }
}

/* --- lin_check --- */

static int rec_cmp(const void *a, const void *b)
{
    const struct lin_rec *x = *(struct lin_rec *const *)a;
    const struct lin_rec *y = *(struct lin_rec *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = n > 0 ? memcmp(x->key, y->key, n) : 0;
    if (c != 0) {
        return c;
    }
    if (x->key_len != y->key_len) {
        return x->key_len < y->key_len ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool same_key(const struct lin_rec *a, const struct lin_rec *b)
{
    return a->key_len == b->key_len && (a->key_len == 0 || memcmp(a->key, b->key, a->key_len) == 0);
}

enum lin_verdict lin_check(struct lin_history *h, double max_seconds, char *explain, size_t cap)
{
    struct sbuf b = {.p = explain, .cap = cap};
    int64_t deadline = lin_now_ns() + (int64_t)(max_seconds * 1e9);
    enum lin_verdict verdict = LIN_OK;
    struct lin_rec **recs;
    size_t keys = 0, n;
    int64_t t0 = INT64_MAX;

    if (explain != NULL && cap > 0) {
        explain[0] = '\0';
    }
    pthread_mutex_lock(&h->mu);
    n = h->n;
    recs = rfs_malloc((n ? n : 1) * sizeof *recs);
    if (recs != NULL && n > 0) {
        memcpy(recs, h->recs, n * sizeof *recs);
    }
    pthread_mutex_unlock(&h->mu);
    if (recs == NULL) {
        sb_printf(&b, "out of memory");
        return LIN_UNKNOWN;
    }
    for (size_t i = 0; i < n; i++) {
        t0 = recs[i]->invoke_ns < t0 ? recs[i]->invoke_ns : t0;
    }
    qsort(recs, n, sizeof *recs, rec_cmp);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        struct keycheck k;
        enum lin_verdict v;
        bool oom = false;

        while (j < n && same_key(recs[i], recs[j])) {
            j++;
        }
        keys++;
        if (keycheck_init(&k, recs + i, j - i) != 0) {
            oom = true;
            v = LIN_UNKNOWN;
        } else if (lin_now_ns() > deadline) {
            v = LIN_UNKNOWN;
        } else {
            v = keycheck_search(&k, deadline, &oom);
        }
        if (v == LIN_VIOLATION) {
            explain_violation(&b, &k, recs[i], t0);
            verdict = LIN_VIOLATION;
        } else if (v == LIN_UNKNOWN && verdict == LIN_OK) {
            sb_printf(&b, "key ");
            sb_bytes(&b, recs[i]->key, recs[i]->key_len);
            sb_printf(&b, ": undecided (%s after %llu search steps, %zu ops)\n",
                      oom ? "out of memory" : "time budget exceeded", k.steps, k.n);
            verdict = LIN_UNKNOWN;
        }
        keycheck_free(&k);
        if (verdict == LIN_VIOLATION) {
            break;
        }
        i = j;
    }
    if (verdict == LIN_OK) {
        sb_printf(&b, "linearizable: %zu ops on %zu keys\n", n, keys);
    }
    rfs_free(recs);
    return verdict;
}
