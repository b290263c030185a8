/* kv/route.c: the routed client: which group serves a key, and retries across configuration
 * changes.
 *
 * Happy path: the first request reads the latest configuration from the meta group
 * (meta_client_query) and caches it. Each request computes its routing key's bucket
 * (kv_bucket_of) and the bucket's group, takes that group's plain kv_client from a table
 * (made on first use from the configuration's addresses), sets group_id in the request,
 * packs it and sends the bytes with kv_client_call_packed, which finds the group's leader.
 * The session fields were set once by kv/client.c before the first attempt and are never
 * touched here, so every resend of a write, to any group, carries the same client id and
 * sequence number and the write is applied at most once.
 *
 * Failure modes:
 * - The bucket has no group (gid 0: no group joined yet) or the group answers WRONG_GROUP
 *   (it has not applied the configuration that gives it the bucket, or the bucket moved on
 *   and our configuration is old): refresh the configuration and retry at once if it
 *   changed, else back off (10 ms doubling to 200 ms) and retry, until timeout_ms passes;
 *   then RFS_EWRONGGROUP with a message naming the bucket, group and version.
 * - The group does not answer (servers down, or gone from the configuration): one attempt
 *   at a group gets at most max(2 * attempt_ms, ROUTE_SLICE_MIN_MS) of the time left, and
 *   between attempts the configuration is refreshed, so a request for a group that left
 *   finds the bucket's new group. The outcome of a write sent to a silent group is unknown,
 *   which is why the resend keeps the session.
 * - The meta group does not answer: requests keep using the cached configuration; with none
 *   cached they fail after timeout_ms with the meta group's error. A query waits at most as
 *   long as one attempt at a group, so a refresh delays a request by a bounded time.
 * Refreshes are rate-limited across threads: at most one query in flight, and none within
 * ROUTE_REFRESH_MS of the previous one, so many threads hitting a moved bucket cost the meta
 * group one query per interval. A configuration older than the cached one is ignored.
 *
 * - The group answers RFS_ELOCKED (the key is locked by a cross-group transaction, which
 *   the group did not execute or record): kv/txn_resolve.c asks the transaction's primary
 *   group for its state and rolls the lock forward or back, or, while the transaction is
 *   pending and within its time, we wait (5 ms doubling to 100 ms); then the same bytes are
 *   resent, until timeout_ms. Only operations that can meet a lock are resolved so; the
 *   transaction coordinator (kv/txn_client.c) sends its own requests to a group it names
 *   (kv_route_call with a gid) and handles their WRONG_GROUP and ELOCKED answers itself.
 *
 * Group clients are reference-counted: the table holds one reference and each request in
 * flight one more. When a new configuration drops a group or changes its addresses, its
 * entry leaves the table and the client is freed by whoever drops the last reference, never
 * under the lock (freeing joins the client's loop thread). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../meta/client.h"
#include "../meta/meta.h"
#include "../rpc/rpc.h"
#include "client_internal.h"
#include "kv.h"
#include "txn_client.h"

#define ROUTE_REFRESH_MS     50u
#define ROUTE_BACKOFF_MIN_MS 10u
#define ROUTE_BACKOFF_MAX_MS 200u
/* Longest single attempt at one group before the configuration is looked at again. */
#define ROUTE_SLICE_MIN_MS 1000u
/* Waiting for a pending transaction's lock: 5 ms doubling to 100 ms between resends. */
#define ROUTE_LOCK_WAIT_MIN_MS 5u
#define ROUTE_LOCK_WAIT_MAX_MS 100u
/* route_target.bucket when a request goes to a named group. */
#define ROUTE_NO_BUCKET UINT32_MAX

struct route_group {
    uint64_t gid;
    char *addrs; /* "A0,A1,A2", to notice a change */
    struct kv_client *c;
    unsigned refs; /* protected by route->mu: 1 while in the table, +1 per request using c */
    struct route_group *next_retired; /* on route_install's list of groups to free */
};

struct kv_route {
    unsigned timeout_ms;
    unsigned attempt_ms;
    unsigned slice_ms;      /* longest wait for one group or one meta query */
    struct kv_client *meta; /* plain client of the meta group; thread-safe on its own */

    pthread_mutex_t mu; /* protects everything below */
    bool have_cfg;
    struct meta_config cfg; /* the newest configuration seen */
    bool refreshing;        /* a thread is querying the meta group */
    uint64_t last_refresh_ms;
    int refresh_rv; /* the last query's result, and its reason */
    char refresh_err[RFS_ERRMSG_SIZE];
    struct route_group **groups;
    size_t n_groups;
    size_t cap_groups;
};

/* Where one attempt goes. */
struct route_target {
    uint64_t gen; /* route_generation() when chosen */
    uint32_t bucket;
    uint64_t gid;
    uint64_t version;
    struct route_group *g; /* a reference (route_group_put), or NULL */
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void route_group_free(struct route_group *g)
{
    if (g != NULL) {
        kv_client_free(g->c);
        rfs_free(g->addrs);
        rfs_free(g);
    }
}

/* Drop a reference taken by route_target_get. */
static void route_group_put(struct kv_route *r, struct route_group *g)
{
    bool last;
    pthread_mutex_lock(&r->mu);
    last = --g->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (last) {
        route_group_free(g);
    }
}

/* "A0,A1,A2" (rfs_malloc'd) or NULL. */
static char *addrs_join(const struct meta_group_info *gi)
{
    size_t len = 1;
    char *s;
    for (unsigned i = 0; i < gi->n_addrs; i++) {
        len += strlen(gi->addrs[i]) + 1;
    }
    s = rfs_malloc(len);
    if (s == NULL) {
        return NULL;
    }
    s[0] = '\0';
    for (unsigned i = 0; i < gi->n_addrs; i++) {
        if (i > 0) {
            strcat(s, ",");
        }
        strcat(s, gi->addrs[i]);
    }
    return s;
}

static const struct meta_group_info *config_group(const struct meta_config *cfg, uint64_t gid)
{
    for (unsigned i = 0; i < cfg->n_groups; i++) {
        if (cfg->groups[i].gid == gid) {
            return &cfg->groups[i];
        }
    }
    return NULL;
}

/* Take out of the table the groups that cfg drops or gives other addresses; those no
 * request uses go on *retired, for the caller to free after unlocking. Locked. */
static void route_retire_locked(struct kv_route *r, const struct meta_config *cfg,
                                struct route_group **retired)
{
    for (size_t i = 0; i < r->n_groups;) {
        struct route_group *g = r->groups[i];
        const struct meta_group_info *gi = config_group(cfg, g->gid);
        char *now = gi != NULL ? addrs_join(gi) : NULL;
        bool same = now != NULL && strcmp(now, g->addrs) == 0;
        rfs_free(now);
        if (same) {
            i++;
            continue;
        }
        r->groups[i] = r->groups[--r->n_groups];
        if (--g->refs == 0) {
            g->next_retired = *retired;
            *retired = g;
        }
    }
}

/* Make cfg (taken over; cleared on return) the cached configuration if it is newer. */
static void route_install(struct kv_route *r, struct meta_config *cfg)
{
    struct meta_config old = {0};
    struct route_group *retired = NULL;

    pthread_mutex_lock(&r->mu);
    if (r->have_cfg && cfg->version <= r->cfg.version) {
        pthread_mutex_unlock(&r->mu);
        meta_config_clear(cfg);
        return;
    }
    route_retire_locked(r, cfg, &retired);
    old = r->cfg;
    r->cfg = *cfg;
    r->have_cfg = true;
    memset(cfg, 0, sizeof *cfg);
    rfs_debugf("routing: configuration %llu (%u groups, %u buckets)",
               (unsigned long long)r->cfg.version, r->cfg.n_groups, r->cfg.nbuckets);
    pthread_mutex_unlock(&r->mu);

    meta_config_clear(&old);
    while (retired != NULL) {
        struct route_group *next = retired->next_retired;
        route_group_free(retired);
        retired = next;
    }
}

/* Read the latest configuration from the meta group into *cfg; refuses one we cannot route
 * by. */
static int route_query(struct kv_route *r, struct meta_config *cfg, char *errmsg)
{
    int rv = meta_client_query(r->meta, true, 0, cfg, errmsg);
    if (rv == 0 && cfg->nbuckets == 0) {
        meta_config_clear(cfg);
        rfs_errmsg_printf(errmsg, "the meta group's configuration has no buckets");
        rv = RFS_EPROTO;
    }
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "reading the configuration from the meta group");
    }
    return rv;
}

/* Refresh the cached configuration, unless another thread is doing so or did so less than
 * ROUTE_REFRESH_MS ago (then the caller uses what that thread finds). */
static void route_refresh(struct kv_route *r)
{
    struct meta_config cfg;
    char err[RFS_ERRMSG_SIZE] = "";
    uint64_t now = rpc_now_ms();
    int rv;

    pthread_mutex_lock(&r->mu);
    if (r->refreshing || (r->last_refresh_ms != 0 && now - r->last_refresh_ms < ROUTE_REFRESH_MS)) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->refreshing = true;
    r->last_refresh_ms = now;
    pthread_mutex_unlock(&r->mu);

    rv = route_query(r, &cfg, err);
    pthread_mutex_lock(&r->mu);
    r->refreshing = false;
    r->refresh_rv = rv;
    snprintf(r->refresh_err, sizeof r->refresh_err, "%s", err);
    pthread_mutex_unlock(&r->mu);
    if (rv == 0) {
        route_install(r, &cfg);
    }
}

/* A new client for group gi (the addresses are copied). */
static int route_group_new(struct kv_route *r, const struct meta_group_info *gi,
                           struct route_group **out, char *errmsg)
{
    struct kv_client_options o;
    struct route_group *g;
    int rv;

    if (gi->n_addrs == 0 || gi->n_addrs > KV_CLIENT_MAX_SERVERS) {
        rfs_errmsg_printf(errmsg, "group %llu has %u addresses (a client takes 1..%d)",
                          (unsigned long long)gi->gid, gi->n_addrs, KV_CLIENT_MAX_SERVERS);
        return RFS_EINVAL;
    }
    g = rfs_calloc(1, sizeof *g);
    if (g == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    g->gid = gi->gid;
    g->refs = 1;
    g->addrs = addrs_join(gi);
    if (g->addrs == NULL) {
        rfs_free(g);
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    memset(&o, 0, sizeof o);
    o.n_servers = gi->n_addrs;
    for (unsigned i = 0; i < gi->n_addrs; i++) {
        o.servers[i] = gi->addrs[i];
    }
    o.group_id = gi->gid;
    o.timeout_ms = r->timeout_ms;
    o.attempt_ms = r->attempt_ms;
    rv = kv_client_new(&g->c, &o, errmsg);
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "group %llu", (unsigned long long)gi->gid);
        route_group_free(g);
        return rv;
    }
    *out = g;
    return 0;
}

/* The table's entry for gid with a reference for the caller, or NULL. Locked. */
static struct route_group *route_group_find_locked(struct kv_route *r, uint64_t gid)
{
    for (size_t i = 0; i < r->n_groups; i++) {
        if (r->groups[i]->gid == gid) {
            r->groups[i]->refs++;
            return r->groups[i];
        }
    }
    return NULL;
}

/* Find where key goes by the cached configuration (gid not 0: to group gid), with a
 * reference to the group's client in t->g (made if needed). Returns 0; RFS_EWRONGGROUP when
 * the bucket has no group (or the configuration no group gid); the last refresh's error (or
 * RFS_EUNAVAIL) when there is no configuration yet; or an error making the client. Without
 * 0, t->g is NULL and errmsg says why. */
static int route_target_get(struct kv_route *r, const void *key, size_t klen, uint64_t gid,
                            struct route_target *t, char *errmsg)
{
    struct meta_group_info gi = {0};
    struct route_group *g = NULL;
    struct route_group *other;
    int rv = 0;

    memset(t, 0, sizeof *t);
    pthread_mutex_lock(&r->mu);
    t->gen = r->have_cfg ? r->cfg.version + 1 : 0;
    if (!r->have_cfg) {
        if (r->refresh_rv != 0) {
            rv = r->refresh_rv;
            rfs_errmsg_printf(errmsg, "%s", r->refresh_err);
        } else {
            rv = RFS_EUNAVAIL;
            rfs_errmsg_printf(errmsg, "no configuration read from the meta group yet");
        }
        pthread_mutex_unlock(&r->mu);
        return rv;
    }
    t->version = r->cfg.version;
    if (gid != 0) {
        t->bucket = ROUTE_NO_BUCKET;
        t->gid = gid;
        if (config_group(&r->cfg, gid) == NULL) {
            rfs_errmsg_printf(errmsg, "group %llu is not in configuration %llu",
                              (unsigned long long)gid, (unsigned long long)t->version);
            pthread_mutex_unlock(&r->mu);
            return RFS_EWRONGGROUP;
        }
    } else {
        t->bucket = kv_bucket_of(key, klen, r->cfg.nbuckets);
        t->gid = r->cfg.buckets[t->bucket];
    }
    if (t->gid == 0) {
        rfs_errmsg_printf(errmsg,
                          "bucket %u is served by no group (configuration %llu): join a group "
                          "with raftfs meta join",
                          t->bucket, (unsigned long long)t->version);
        pthread_mutex_unlock(&r->mu);
        return RFS_EWRONGGROUP;
    }
    t->g = route_group_find_locked(r, t->gid);
    if (t->g != NULL) {
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    /* Make the client outside the lock (name lookups block): copy what it needs. */
    {
        const struct meta_group_info *cur = config_group(&r->cfg, t->gid);
        if (cur == NULL) {
            rfs_errmsg_printf(errmsg,
                              "configuration %llu gives bucket %u to group %llu but lists no "
                              "addresses for it",
                              (unsigned long long)t->version, t->bucket,
                              (unsigned long long)t->gid);
            pthread_mutex_unlock(&r->mu);
            return RFS_EWRONGGROUP;
        }
        gi.gid = cur->gid;
        gi.addrs = rfs_calloc(cur->n_addrs ? cur->n_addrs : 1, sizeof *gi.addrs);
        for (unsigned i = 0; gi.addrs != NULL && i < cur->n_addrs; i++) {
            gi.addrs[i] = rfs_strdup(cur->addrs[i]);
            if (gi.addrs[i] == NULL) {
                break;
            }
            gi.n_addrs++;
        }
        if (gi.addrs == NULL || gi.n_addrs != cur->n_addrs) {
            rv = RFS_ENOMEM;
            rfs_errmsg_printf(errmsg, "out of memory");
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (rv == 0) {
        rv = route_group_new(r, &gi, &g, errmsg);
    }
    for (unsigned i = 0; i < gi.n_addrs; i++) {
        rfs_free(gi.addrs[i]);
    }
    rfs_free(gi.addrs);
    if (rv != 0) {
        return rv;
    }

    /* Another thread may have put a client in the table meanwhile (for the addresses of
     * the configuration current now): use that one. Else put ours in, if the configuration
     * still lists these addresses; if not, it serves this request only. */
    pthread_mutex_lock(&r->mu);
    other = route_group_find_locked(r, t->gid);
    if (other == NULL) {
        const struct meta_group_info *cur = config_group(&r->cfg, t->gid);
        char *now = cur != NULL ? addrs_join(cur) : NULL;
        bool current = now != NULL && strcmp(now, g->addrs) == 0;
        rfs_free(now);
        if (current && r->n_groups == r->cap_groups) {
            size_t cap = r->cap_groups ? r->cap_groups * 2 : 8;
            struct route_group **gs = rfs_realloc(r->groups, cap * sizeof *gs);
            if (gs != NULL) {
                r->groups = gs;
                r->cap_groups = cap;
            }
        }
        if (current && r->n_groups < r->cap_groups) {
            g->refs++; /* the table's */
            r->groups[r->n_groups++] = g;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (other != NULL) {
        route_group_free(g);
        g = other;
    }
    t->g = g;
    return 0;
}

/* The key a request routes by (kv/client.h; the transaction ops as docs/txn.md says: a
 * check by the primary key, a commit or abort by its first key). */
static ProtobufCBinaryData route_key_of(const Raftfs__KvRequest *req)
{
    ProtobufCBinaryData none = {0, NULL};
    switch (req->op) {
        case RAFTFS__KV_OP__KV_TXN:
        case RAFTFS__KV_OP__KV_TXN_PREPARE:
            if (req->n_writes > 0) {
                return req->writes[0]->key;
            }
            if (req->n_reads > 0) {
                return req->reads[0]->key;
            }
            return none;
        case RAFTFS__KV_OP__KV_TXN_COMMIT:
        case RAFTFS__KV_OP__KV_TXN_ABORT:
            return req->n_keys > 0 && !req->is_primary ? req->keys[0] : req->primary;
        case RAFTFS__KV_OP__KV_TXN_CHECK:
            return req->primary;
        default:
            return req->key;
    }
}

/* Whether an operation can meet a transaction's lock, to be settled and the operation
 * resent. */
static bool route_resolves_locks(const Raftfs__KvRequest *req)
{
    switch (req->op) {
        case RAFTFS__KV_OP__KV_GET:
        case RAFTFS__KV_OP__KV_PUT:
        case RAFTFS__KV_OP__KV_APPEND:
        case RAFTFS__KV_OP__KV_DELETE:
        case RAFTFS__KV_OP__KV_CAS:
        case RAFTFS__KV_OP__KV_SCAN:
        case RAFTFS__KV_OP__KV_TXN:
            return true;
        default:
            return false;
    }
}

/* Whether a transaction's keys are on two groups by the cached configuration: then it can
 * never commit (a group runs a transaction only on keys it serves), so say so at once
 * rather than retry until the timeout. Returns 0 or RFS_EINVAL (reason in errmsg). */
static int route_txn_split(struct kv_route *r, const Raftfs__KvRequest *req, char *errmsg)
{
    uint64_t first_gid = 0;
    uint32_t first_bucket = 0;
    int rv = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; r->have_cfg && rv == 0 && i < req->n_writes + req->n_reads; i++) {
        const ProtobufCBinaryData *k =
            i < req->n_writes ? &req->writes[i]->key : &req->reads[i - req->n_writes]->key;
        uint32_t b = kv_bucket_of(k->data, k->len, r->cfg.nbuckets);
        uint64_t gid = r->cfg.buckets[b];
        if (gid == 0) {
            continue;
        }
        if (first_gid == 0) {
            first_gid = gid;
            first_bucket = b;
        } else if (gid != first_gid) {
            rfs_errmsg_printf(errmsg,
                              "a transaction's keys are on groups %llu (bucket %u) and %llu "
                              "(bucket %u) in configuration %llu: give them one {hash tag}",
                              (unsigned long long)first_gid, first_bucket, (unsigned long long)gid,
                              b, (unsigned long long)r->cfg.version);
            rv = RFS_EINVAL;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rv;
}

/* Send req once to t's group, within timeout_ms. */
static int route_send(const struct route_target *t, Raftfs__KvRequest *req, unsigned timeout_ms,
                      Raftfs__KvReply **out, char *errmsg)
{
    size_t len;
    void *buf;
    int rv;
    req->group_id = t->gid;
    len = raftfs__kv_request__get_packed_size(req);
    buf = rfs_malloc(len ? len : 1);
    if (buf == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    raftfs__kv_request__pack(req, buf);
    rv = kv_client_call_packed(t->g->c, buf, len, timeout_ms, out, errmsg);
    rfs_free(buf);
    return rv;
}

/* Grows with every configuration installed: 0 before the first, then version + 1. */
static uint64_t route_generation(struct kv_route *r)
{
    uint64_t gen;
    pthread_mutex_lock(&r->mu);
    gen = r->have_cfg ? r->cfg.version + 1 : 0;
    pthread_mutex_unlock(&r->mu);
    return gen;
}

/* The reply met the lock rep->lock: settle it (kv/txn_resolve.c), and while its transaction
 * is pending wait *wait_ms (growing). Returns 0 (resend now), RFS_ENOMEM, or RFS_ELOCKED
 * when the deadline passed first (errmsg names the key and the transaction). */
static int route_settle_lock(struct kv_route *r, const Raftfs__KvReply *rep, uint64_t deadline,
                             uint64_t started, unsigned *wait_ms, char *errmsg)
{
    const Raftfs__LockInfo *l = rep->lock;
    Raftfs__TxnState state = RAFTFS__TXN_STATE__TXN_UNKNOWN;
    char why[RFS_ERRMSG_SIZE] = "";
    uint64_t now = rpc_now_ms();
    int rv = 0;

    if (now < deadline) {
        rv = kv_txn_resolve_lock(r, l, deadline, &state, why);
        if (rv == RFS_ENOMEM) {
            rfs_errmsg_printf(errmsg, "%s", why);
            return rv;
        }
        now = rpc_now_ms();
    }
    if (rv == 0 && state == RAFTFS__TXN_STATE__TXN_PENDING && now + *wait_ms < deadline) {
        sleep_ms(*wait_ms);
        *wait_ms = *wait_ms * 2 < ROUTE_LOCK_WAIT_MAX_MS ? *wait_ms * 2 : ROUTE_LOCK_WAIT_MAX_MS;
        return 0;
    }
    if (rv == 0 && state != RAFTFS__TXN_STATE__TXN_PENDING && now < deadline) {
        return 0;
    }
    if (rv == 0) {
        snprintf(why, sizeof why, "its transaction is still pending");
    }
    rfs_errmsg_printf(errmsg,
                      "key '%.*s' is locked by transaction %016llx (primary key '%.*s'), not "
                      "settled after %llu ms: %s",
                      (int)(l->key.len < 100 ? l->key.len : 100), (const char *)l->key.data,
                      (unsigned long long)l->txn_id,
                      (int)(l->primary.len < 100 ? l->primary.len : 100),
                      (const char *)l->primary.data, (unsigned long long)(now - started), why);
    return RFS_ELOCKED;
}

int kv_route_call(struct kv_route *r, Raftfs__KvRequest *req, struct kv_route_opts *ro,
                  Raftfs__KvReply **out, char *errmsg)
{
    struct kv_route_opts defaults;
    ProtobufCBinaryData key = route_key_of(req);
    uint64_t started = rpc_now_ms();
    uint64_t deadline;
    unsigned backoff = ROUTE_BACKOFF_MIN_MS;
    unsigned lock_wait = ROUTE_LOCK_WAIT_MIN_MS;
    char why[RFS_ERRMSG_SIZE] = "";
    int last;

    *out = NULL;
    if (ro == NULL) {
        memset(&defaults, 0, sizeof defaults);
        ro = &defaults;
    }
    ro->unknown = false;
    ro->split = false;
    deadline = ro->deadline_ms != 0 ? ro->deadline_ms : started + r->timeout_ms;
    if (route_generation(r) == 0) {
        route_refresh(r);
    }
    for (;;) {
        struct route_target t;
        uint64_t now;
        last = route_target_get(r, key.data, key.len, ro->gid, &t, why);
        if (last == RFS_EWRONGGROUP && ro->gid != 0) {
            rfs_errmsg_printf(errmsg, "%s", why);
            return last; /* the caller chose the group: it re-plans */
        }
        if (last == 0) {
            uint64_t left;
            now = rpc_now_ms();
            left = deadline > now ? deadline - now : 1;
            last = route_send(&t, req, left < r->slice_ms ? (unsigned)left : r->slice_ms, out, why);
            route_group_put(r, t.g);
            if (last == 0 && (*out)->status == RFS_ELOCKED && ro->gid == 0 &&
                (*out)->lock != NULL && route_resolves_locks(req)) {
                last = route_settle_lock(r, *out, deadline, started, &lock_wait, why);
                raftfs__kv_reply__free_unpacked(*out, &proto_allocator);
                *out = NULL;
                if (last == 0) {
                    continue; /* resend the same request */
                }
                rfs_errmsg_printf(errmsg, "%s", why);
                return last;
            }
            if (last == 0 && ((*out)->status != RFS_EWRONGGROUP || ro->gid != 0)) {
                return 0;
            }
            if (last == 0) {
                raftfs__kv_reply__free_unpacked(*out, &proto_allocator);
                *out = NULL;
                last = RFS_EWRONGGROUP;
                rfs_errmsg_printf(why,
                                  "bucket %u is on group %llu in configuration %llu, but the "
                                  "group does not serve it: check that its servers run with "
                                  "--meta and have caught up (raftfs meta query)",
                                  t.bucket, (unsigned long long)t.gid,
                                  (unsigned long long)t.version);
            } else {
                ro->unknown = true;
                if (t.bucket == ROUTE_NO_BUCKET) {
                    rfs_errmsg_wrapf(why, "group %llu (configuration %llu)",
                                     (unsigned long long)t.gid, (unsigned long long)t.version);
                } else {
                    rfs_errmsg_wrapf(why, "group %llu (bucket %u, configuration %llu)",
                                     (unsigned long long)t.gid, t.bucket,
                                     (unsigned long long)t.version);
                }
            }
        }
        if (last == RFS_ENOMEM || rpc_now_ms() >= deadline) {
            break;
        }
        route_refresh(r);
        if (last == RFS_EWRONGGROUP && req->op == RAFTFS__KV_OP__KV_TXN &&
            route_txn_split(r, req, why) != 0) {
            ro->split = true;
            rfs_errmsg_printf(errmsg, "%s", why);
            return RFS_EINVAL;
        }
        now = rpc_now_ms();
        if (now >= deadline) {
            break;
        }
        if (route_generation(r) > t.gen) {
            backoff = ROUTE_BACKOFF_MIN_MS;
            continue; /* a newer configuration may send us elsewhere: go at once */
        }
        sleep_ms(deadline - now < backoff ? (unsigned)(deadline - now) : backoff);
        backoff = backoff * 2 < ROUTE_BACKOFF_MAX_MS ? backoff * 2 : ROUTE_BACKOFF_MAX_MS;
    }
    rfs_errmsg_printf(errmsg, "%s", why);
    if (last != RFS_ENOMEM) {
        rfs_errmsg_wrapf(errmsg, "gave up after %llu ms",
                         (unsigned long long)(rpc_now_ms() - started));
    }
    return last;
}

/* Lock r->mu with a configuration in hand (read from the meta group first if there is
 * none): 0, or the reason there is none (r->mu held either way). */
static int route_lock_config(struct kv_route *r, char *errmsg)
{
    if (route_generation(r) == 0) {
        route_refresh(r);
    }
    pthread_mutex_lock(&r->mu);
    if (r->have_cfg) {
        return 0;
    }
    rfs_errmsg_printf(errmsg, "%s",
                      r->refresh_rv != 0 ? r->refresh_err
                                         : "no configuration read from the meta group yet");
    return r->refresh_rv != 0 ? r->refresh_rv : RFS_EUNAVAIL;
}

int kv_route_groups(struct kv_route *r, const ProtobufCBinaryData *keys, size_t n, uint64_t *gids,
                    uint64_t *version, char *errmsg)
{
    int rv = route_lock_config(r, errmsg);
    if (rv == 0) {
        for (size_t i = 0; i < n; i++) {
            gids[i] = r->cfg.buckets[kv_bucket_of(keys[i].data, keys[i].len, r->cfg.nbuckets)];
        }
        if (version != NULL) {
            *version = r->cfg.version;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rv;
}

int kv_route_group_ids(struct kv_route *r, uint64_t *gids, size_t cap, size_t *n, char *errmsg)
{
    int rv = route_lock_config(r, errmsg);
    *n = 0;
    if (rv == 0) {
        for (unsigned i = 0; i < r->cfg.n_groups && *n < cap; i++) {
            gids[(*n)++] = r->cfg.groups[i].gid;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rv;
}

void kv_route_refresh(struct kv_route *r)
{
    route_refresh(r);
}

int kv_route_locate(struct kv_route *r, const void *key, size_t klen, uint32_t *bucket,
                    uint64_t *gid, uint64_t *version, char *errmsg)
{
    struct meta_config cfg;
    uint64_t deadline = rpc_now_ms() + r->timeout_ms;
    int rv;
    /* Each query is bounded by slice_ms: retry within the operation's time (an election in
     * the meta group, say). */
    while ((rv = route_query(r, &cfg, errmsg)) != 0) {
        if (rv == RFS_ENOMEM || rv == RFS_EPROTO || rpc_now_ms() >= deadline) {
            return rv;
        }
        sleep_ms(ROUTE_BACKOFF_MIN_MS);
    }
    *bucket = kv_bucket_of(key, klen, cfg.nbuckets);
    *gid = cfg.buckets[*bucket];
    *version = cfg.version;
    route_install(r, &cfg);
    return 0;
}

int kv_route_new(struct kv_route **out, const struct kv_client_options *o, char *errmsg)
{
    struct kv_client_options mo;
    struct kv_route *r = rfs_calloc(1, sizeof *r);
    int rv;
    if (r == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->timeout_ms = o->timeout_ms;
    r->attempt_ms = o->attempt_ms;
    r->slice_ms = 2 * o->attempt_ms > ROUTE_SLICE_MIN_MS ? 2 * o->attempt_ms : ROUTE_SLICE_MIN_MS;
    if (r->slice_ms > o->timeout_ms) {
        r->slice_ms = o->timeout_ms;
    }
    memset(&mo, 0, sizeof mo);
    mo.n_servers = o->n_meta;
    memcpy(mo.servers, o->meta, sizeof mo.servers);
    mo.group_id = META_GROUP_ID;
    mo.timeout_ms = r->slice_ms; /* a refresh must not hold a request long past its time */
    mo.attempt_ms = o->attempt_ms;
    rv = kv_client_new(&r->meta, &mo, errmsg);
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "meta group");
        kv_route_free(r);
        return rv;
    }
    *out = r;
    return 0;
}

void kv_route_free(struct kv_route *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n_groups; i++) {
        /* No request is in flight (kv_client_free's precondition): the table's is the last
         * reference. */
        route_group_free(r->groups[i]);
    }
    rfs_free(r->groups);
    meta_config_clear(&r->cfg);
    kv_client_free(r->meta);
    pthread_mutex_destroy(&r->mu);
    rfs_free(r);
}
