/* The KV client library: an rpc/ event loop on a background thread carries requests from
 * any number of caller threads; callers block on their own waiter until the reply, a
 * timeout, or a lost connection, and then retry as kv/client.h describes. A routed client
 * has no loop of its own: it keeps the session pool and hands each packed request to
 * kv/route.c, which picks the group; a transaction whose keys are on several groups is run
 * by the coordinator in kv/txn_client.c. */
#include "client.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../common/random.h"
#include "../proto/proto.h"
#include "../raft/raft.h"
#include "../rpc/rpc.h"
#include "client_internal.h"
#include "txn_client.h"

struct waiter {
    uint64_t req_id;
    unsigned server;
    bool done;
    int status;          /* transport status: 0 = reply arrived */
    bool decode;         /* a KvReply: decode it in the loop thread into kv */
    Raftfs__KvReply *kv; /* when decode */
    void *reply;         /* otherwise: the raw bytes */
    size_t len;
    pthread_cond_t cond;
};

struct session {
    uint64_t id;
    uint64_t next_seq;
};

struct kv_client {
    struct kv_client_options o;
    char addrs[KV_CLIENT_MAX_SERVERS][128];
    struct kv_route *route; /* routed clients only (then no loop, thread or peers) */
    struct rpc_loop *loop;
    pthread_t thread;
    bool thread_started;
    struct rpc_peer *peers[KV_CLIENT_MAX_SERVERS]; /* loop thread only */

    pthread_mutex_t mu; /* protects everything below */
    struct waiter **waiting;
    size_t n_waiting;
    size_t cap_waiting;
    uint64_t next_req_id;
    unsigned leader; /* index of the server believed to lead */
    struct session *sessions;
    size_t n_sessions;
    size_t cap_sessions;
};

/* A request handed to the loop thread. */
struct send_job {
    struct kv_client *c;
    unsigned server;
    uint32_t frame;
    uint64_t req_id;
    size_t len;
    unsigned char payload[];
};

static void waiter_finish_locked(struct kv_client *c, size_t i, int status, const void *reply,
                                 size_t len)
{
    struct waiter *w = c->waiting[i];
    w->status = status;
    if (status == 0 && w->decode) {
        /* Straight from the connection's buffer: a MiB of file data is copied once here,
         * not once into a buffer and once more by the decoder. */
        w->kv = raftfs__kv_reply__unpack(&proto_allocator, len, reply);
        if (w->kv == NULL) {
            w->status = RFS_EPROTO;
        }
    } else if (status == 0) {
        w->reply = rfs_malloc(len ? len : 1);
        if (w->reply == NULL) {
            w->status = RFS_ENOMEM;
        } else {
            memcpy(w->reply, reply, len);
            w->len = len;
        }
    }
    w->done = true;
    pthread_cond_signal(&w->cond);
    c->waiting[i] = c->waiting[--c->n_waiting];
}

static void on_frame(struct rpc_conn *conn, uint32_t type, uint64_t req_id, const void *payload,
                     size_t len, void *data)
{
    struct kv_client *c = data;
    (void)conn;
    (void)type;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_waiting; i++) {
        if (c->waiting[i]->req_id == req_id) {
            waiter_finish_locked(c, i, 0, payload, len);
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static void fail_server(struct kv_client *c, unsigned server, int status)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_waiting;) {
        if (c->waiting[i]->server == server) {
            waiter_finish_locked(c, i, status, NULL, 0);
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* Loop thread: send one request. */
static void send_job_run(void *data)
{
    struct send_job *job = data;
    struct kv_client *c = job->c;
    int rv = RFS_EUNAVAIL;
    if (c->peers[job->server] != NULL) {
        rv = rpc_peer_send(c->peers[job->server], job->frame, job->req_id, job->payload, job->len);
    }
    if (rv != 0) {
        pthread_mutex_lock(&c->mu);
        for (size_t i = 0; i < c->n_waiting; i++) {
            if (c->waiting[i]->req_id == job->req_id) {
                waiter_finish_locked(c, i, rv, NULL, 0);
                break;
            }
        }
        pthread_mutex_unlock(&c->mu);
    }
    rfs_free(job);
}

static void *loop_main(void *data)
{
    struct kv_client *c = data;
    (void)rpc_loop_run(c->loop);
    return NULL;
}

/* Each peer's handler data: which server it is. */
struct peer_tag {
    struct kv_client *c;
    unsigned index;
};

static void on_frame_tagged(struct rpc_conn *conn, uint32_t type, uint64_t req_id,
                            const void *payload, size_t len, void *data)
{
    struct peer_tag *t = data;
    on_frame(conn, type, req_id, payload, len, t->c);
}

static void on_close_tagged(struct rpc_conn *conn, void *data)
{
    struct peer_tag *t = data;
    (void)conn;
    fail_server(t->c, t->index, RFS_EUNAVAIL);
}

static struct peer_tag *tags_for(struct kv_client *c)
{
    struct peer_tag *tags = rfs_calloc(c->o.n_servers, sizeof *tags);
    if (tags != NULL) {
        for (unsigned i = 0; i < c->o.n_servers; i++) {
            tags[i].c = c;
            tags[i].index = i;
        }
    }
    return tags;
}

/* The peer tags live as long as the client. */
struct kv_client_ext {
    struct kv_client c;
    struct peer_tag *tags;
};

static bool is_hole(const char *addr)
{
    return strcmp(addr, KV_CLIENT_NO_SERVER) == 0;
}

int kv_client_parse_servers(char *list, struct kv_client_options *o, char *errmsg)
{
    char *save = NULL;
    unsigned holes = 0;
    o->n_servers = 0;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_servers == KV_CLIENT_MAX_SERVERS) {
            rfs_errmsg_printf(errmsg, "at most %d servers in a group", KV_CLIENT_MAX_SERVERS);
            return RFS_EINVAL;
        }
        holes += is_hole(tok);
        o->servers[o->n_servers++] = tok;
    }
    if (o->n_servers == holes) {
        rfs_errmsg_printf(errmsg, "no servers given (expected host:port,host:port,...; '-' "
                                  "holds the place of a removed server)");
        return RFS_EINVAL;
    }
    return 0;
}

int kv_client_parse_meta(char *list, struct kv_client_options *o, char *errmsg)
{
    struct kv_client_options tmp;
    int rv;
    memset(&tmp, 0, sizeof tmp);
    rv = kv_client_parse_servers(list, &tmp, errmsg);
    if (rv != 0) {
        return rv;
    }
    o->n_meta = tmp.n_servers;
    memcpy(o->meta, tmp.servers, sizeof o->meta);
    return 0;
}

/* A routed client: the session pool here, everything else in kv/route.c. */
static int routed_new(struct kv_client_ext *ext, char *errmsg)
{
    struct kv_client *c = &ext->c;
    int rv;
    if (c->o.n_meta > KV_CLIENT_MAX_SERVERS) {
        rfs_errmsg_printf(errmsg, "a client needs 1..%d meta servers", KV_CLIENT_MAX_SERVERS);
        return RFS_EINVAL;
    }
    rv = kv_route_new(&c->route, &c->o, errmsg);
    /* The addresses were copied by the route; none of these are used any more. */
    c->o.n_servers = 0;
    memset(c->o.servers, 0, sizeof c->o.servers);
    memset(c->o.meta, 0, sizeof c->o.meta);
    return rv;
}

int kv_client_connect(struct kv_client **out, const char *list, bool routed, uint64_t gid,
                      unsigned timeout_ms, unsigned attempt_ms, char *errmsg)
{
    struct kv_client_options o;
    char buf[KV_CLIENT_MAX_SERVERS * 128];
    int rv;
    memset(&o, 0, sizeof o);
    if ((size_t)snprintf(buf, sizeof buf, "%s", list) >= sizeof buf) {
        rfs_errmsg_printf(errmsg, "server list of %zu bytes is too long", strlen(list));
        return RFS_EINVAL;
    }
    rv = routed ? kv_client_parse_meta(buf, &o, errmsg) : kv_client_parse_servers(buf, &o, errmsg);
    if (rv != 0) {
        return rv;
    }
    o.group_id = gid;
    o.timeout_ms = timeout_ms;
    o.attempt_ms = attempt_ms;
    return kv_client_new(out, &o, errmsg);
}

int kv_client_new(struct kv_client **out, const struct kv_client_options *o, char *errmsg)
{
    struct kv_client_ext *ext;
    struct kv_client *c;
    int rv;
    if (o->n_meta == 0 && (o->n_servers == 0 || o->n_servers > KV_CLIENT_MAX_SERVERS)) {
        rfs_errmsg_printf(errmsg, "a client needs 1..%d servers", KV_CLIENT_MAX_SERVERS);
        return RFS_EINVAL;
    }
    ext = rfs_calloc(1, sizeof *ext);
    if (ext == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    c = &ext->c;
    c->o = *o;
    if (c->o.timeout_ms == 0) {
        c->o.timeout_ms = 10000;
    }
    if (c->o.attempt_ms == 0) {
        c->o.attempt_ms = 1000;
    }
    if (c->o.txn_ttl_ms == 0) {
        c->o.txn_ttl_ms = KV_TXN_TTL_MS;
    }
    pthread_mutex_init(&c->mu, NULL);
    if (o->n_meta > 0) {
        rv = routed_new(ext, errmsg);
        if (rv != 0) {
            goto err;
        }
        *out = c;
        return 0;
    }
    for (unsigned i = 0; i < o->n_servers; i++) {
        snprintf(c->addrs[i], sizeof c->addrs[i], "%s", o->servers[i]);
        c->o.servers[i] = c->addrs[i];
    }
    c->next_req_id = rfs_random_u64() >> 16;
    rv = rpc_loop_new(&c->loop, errmsg);
    if (rv != 0) {
        goto err;
    }
    ext->tags = tags_for(c);
    if (ext->tags == NULL) {
        rv = RFS_ENOMEM;
        rfs_errmsg_printf(errmsg, "out of memory");
        goto err;
    }
    for (unsigned i = 0; i < o->n_servers; i++) {
        struct rpc_handler h;
        if (is_hole(c->addrs[i])) {
            continue; /* no server with this id: attempts skip it */
        }
        memset(&h, 0, sizeof h);
        h.data = &ext->tags[i];
        h.on_frame = on_frame_tagged;
        h.on_close = on_close_tagged;
        rv = rpc_peer_new(c->loop, c->addrs[i], &h, &c->peers[i], errmsg);
        if (rv != 0) {
            goto err;
        }
    }
    if (pthread_create(&c->thread, NULL, loop_main, c) != 0) {
        rv = RFS_ENOMEM;
        rfs_errmsg_printf(errmsg, "cannot start the client thread");
        goto err;
    }
    c->thread_started = true;
    *out = c;
    return 0;
err:
    kv_client_free(c);
    return rv;
}

void kv_client_free(struct kv_client *c)
{
    struct kv_client_ext *ext = (struct kv_client_ext *)c;
    if (c == NULL) {
        return;
    }
    if (c->thread_started) {
        rpc_loop_stop(c->loop);
        pthread_join(c->thread, NULL);
    }
    for (unsigned i = 0; i < KV_CLIENT_MAX_SERVERS; i++) {
        if (c->peers[i] != NULL) {
            rpc_peer_free(c->peers[i]);
        }
    }
    if (c->loop != NULL) {
        rpc_loop_free(c->loop);
    }
    kv_route_free(c->route);
    pthread_mutex_destroy(&c->mu);
    rfs_free(c->waiting);
    rfs_free(c->sessions);
    rfs_free(ext->tags);
    rfs_free(ext);
}

static uint64_t now_ms(void)
{
    return rpc_now_ms();
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* One attempt: send to `server`, wait up to attempt_ms. Returns 0 with the reply bytes
 * (rfs_malloc'ed) or a transport status. */
/* Send one request to server and wait for its reply (attempt_ms): *w says how it went. */
static void attempt_wait(struct kv_client *c, unsigned server, uint32_t frame, const void *payload,
                         size_t len, struct waiter *wp)
{
    struct waiter w = *wp;
    struct send_job *job;
    struct timespec deadline;
    int rv;

    if (c->peers[server] == NULL) {
        wp->status = RFS_EUNAVAIL; /* a hole in the list ("-") */
        return;
    }
    {
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&w.cond, &attr);
        pthread_condattr_destroy(&attr);
    }
    job = rfs_malloc(sizeof *job + len);
    if (job == NULL) {
        pthread_cond_destroy(&w.cond);
        wp->status = RFS_ENOMEM;
        return;
    }
    w.server = server;
    pthread_mutex_lock(&c->mu);
    if (c->n_waiting == c->cap_waiting) {
        size_t cap = c->cap_waiting ? c->cap_waiting * 2 : 16;
        struct waiter **ws = rfs_realloc(c->waiting, cap * sizeof *ws);
        if (ws == NULL) {
            pthread_mutex_unlock(&c->mu);
            rfs_free(job);
            pthread_cond_destroy(&w.cond);
            wp->status = RFS_ENOMEM;
            return;
        }
        c->waiting = ws;
        c->cap_waiting = cap;
    }
    w.req_id = ++c->next_req_id;
    c->waiting[c->n_waiting++] = &w;
    pthread_mutex_unlock(&c->mu);

    job->c = c;
    job->server = server;
    job->frame = frame;
    job->req_id = w.req_id;
    job->len = len;
    memcpy(job->payload, payload, len);
    rv = rpc_loop_post(c->loop, send_job_run, job);
    if (rv != 0) {
        rfs_free(job);
    }

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += c->o.attempt_ms / 1000;
    deadline.tv_nsec += (long)(c->o.attempt_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->mu);
    if (rv != 0 && !w.done) {
        for (size_t i = 0; i < c->n_waiting; i++) {
            if (c->waiting[i] == &w) {
                waiter_finish_locked(c, i, rv, NULL, 0);
                break;
            }
        }
    }
    while (!w.done) {
        if (pthread_cond_timedwait(&w.cond, &c->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    if (!w.done) {
        for (size_t i = 0; i < c->n_waiting; i++) {
            if (c->waiting[i] == &w) {
                c->waiting[i] = c->waiting[--c->n_waiting];
                break;
            }
        }
        w.status = RFS_ETIMEDOUT;
    }
    pthread_mutex_unlock(&c->mu);
    pthread_cond_destroy(&w.cond);
    *wp = w;
}

static int attempt(struct kv_client *c, unsigned server, uint32_t frame, const void *payload,
                   size_t len, void **reply, size_t *reply_len)
{
    struct waiter w;
    memset(&w, 0, sizeof w);
    attempt_wait(c, server, frame, payload, len, &w);
    *reply = w.reply;
    *reply_len = w.len;
    return w.status;
}

/* attempt for a KvRequest: the reply comes back decoded (or RFS_EPROTO). */
static int attempt_kv(struct kv_client *c, unsigned server, const void *payload, size_t len,
                      Raftfs__KvReply **out)
{
    struct waiter w;
    memset(&w, 0, sizeof w);
    w.decode = true;
    attempt_wait(c, server, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, payload, len, &w);
    *out = w.kv;
    return w.status;
}

static const char *transport_reason(int rv)
{
    switch (rv) {
        case RFS_EUNAVAIL:
            return "not connected (connection refused or lost)";
        case RFS_ETIMEDOUT:
            return "no answer in time";
        default:
            return rfs_strerror(rv);
    }
}

/* The position after `server` that has a server (the list may hold "-" holes). */
static unsigned next_server(const struct kv_client *c, unsigned server)
{
    for (unsigned i = 1; i <= c->o.n_servers; i++) {
        unsigned next = (server + i) % c->o.n_servers;
        if (c->peers[next] != NULL) {
            return next;
        }
    }
    return (server + 1) % c->o.n_servers;
}

/* Send a packed KvRequest until some server gives a definite answer or timeout_ms passes. */
static int call(struct kv_client *c, const void *req, size_t len, unsigned timeout_ms,
                Raftfs__KvReply **out, char *errmsg)
{
    uint64_t deadline = now_ms() + timeout_ms;
    unsigned backoff = 10;
    unsigned server;
    int last = RFS_EUNAVAIL;
    unsigned last_server = 0;
    pthread_mutex_lock(&c->mu);
    server = c->leader;
    pthread_mutex_unlock(&c->mu);
    for (;;) {
        Raftfs__KvReply *rep = NULL;
        int rv = attempt_kv(c, server, req, len, &rep);
        if (rv == 0) {
            if (rep->status == RFS_ECORRUPT || rep->status == RFS_EIO) {
                /* That server's storage failed (it stops, docs/kv.md): another one answers. */
                rfs_warnf("kv client: %s: %s; trying another server", c->addrs[server],
                          rep->error != NULL && rep->error[0] ? rep->error
                                                              : rfs_strerror(rep->status));
                rv = rep->status;
                raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
            } else if (rep->status == RFS_ENOTLEADER) {
                unsigned next = next_server(c, server);
                if (rep->leader_hint >= 1 && rep->leader_hint <= c->o.n_servers &&
                    rep->leader_hint - 1 != server && c->peers[rep->leader_hint - 1] != NULL) {
                    next = (unsigned)rep->leader_hint - 1;
                    backoff = 10;
                } else {
                    sleep_ms(backoff);
                    backoff = backoff < 200 ? backoff * 2 : 200;
                }
                raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
                last = RFS_ENOTLEADER;
                last_server = server;
                server = next;
                if (now_ms() >= deadline) {
                    break;
                }
                continue;
            } else {
                pthread_mutex_lock(&c->mu);
                c->leader = server;
                pthread_mutex_unlock(&c->mu);
                *out = rep;
                return 0;
            }
        }
        last = rv;
        last_server = server;
        if (now_ms() >= deadline) {
            break;
        }
        if (rv != RFS_ETIMEDOUT && c->peers[server] != NULL) {
            sleep_ms(backoff);
            backoff = backoff < 200 ? backoff * 2 : 200;
        }
        server = next_server(c, server);
    }
    rfs_errmsg_printf(errmsg,
                      "no leader answered within %u ms (last try %s: %s); check that a majority "
                      "of the group's servers are running",
                      timeout_ms, c->addrs[last_server],
                      last == RFS_ENOTLEADER ? "not the leader" : transport_reason(last));
    return last == RFS_ENOTLEADER ? RFS_EUNAVAIL : last;
}

int kv_client_call_packed(struct kv_client *c, const void *req, size_t len, unsigned timeout_ms,
                          Raftfs__KvReply **out, char *errmsg)
{
    assert(c->route == NULL);
    return call(c, req, len, timeout_ms, out, errmsg);
}

static void session_take(struct kv_client *c, struct session *s)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_sessions > 0) {
        *s = c->sessions[--c->n_sessions];
    } else {
        s->id = rfs_random_u64();
        s->next_seq = 1;
    }
    pthread_mutex_unlock(&c->mu);
}

static void session_give(struct kv_client *c, const struct session *s)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_sessions == c->cap_sessions) {
        size_t cap = c->cap_sessions ? c->cap_sessions * 2 : 8;
        struct session *ss = rfs_realloc(c->sessions, cap * sizeof *ss);
        if (ss == NULL) {
            pthread_mutex_unlock(&c->mu);
            return; /* forget it; a new one will be made */
        }
        c->sessions = ss;
        c->cap_sessions = cap;
    }
    c->sessions[c->n_sessions++] = *s;
    pthread_mutex_unlock(&c->mu);
}

/* Pack req and send it to the client's group. */
static int run_plain(struct kv_client *c, Raftfs__KvRequest *req, Raftfs__KvReply **out,
                     char *errmsg)
{
    size_t len;
    void *buf;
    int rv;
    req->group_id = c->o.group_id;
    len = raftfs__kv_request__get_packed_size(req);
    buf = rfs_malloc(len ? len : 1);
    if (buf == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    raftfs__kv_request__pack(req, buf);
    rv = call(c, buf, len, c->o.timeout_ms, out, errmsg);
    rfs_free(buf);
    return rv;
}

/* Set the session fields of a write (once: a routed retry to another group keeps them),
 * send it to its group (routed: whichever owns the key's bucket, with the settings and
 * reports of ro, which may be NULL), and turn the reply status into a return code. */
static int run_ex(struct kv_client *c, Raftfs__KvRequest *req, bool write, struct kv_route_opts *ro,
                  Raftfs__KvReply **out, char *errmsg)
{
    struct session s = {0, 0};
    int rv;
    *out = NULL;
    if (write) {
        session_take(c, &s);
        req->client_id = s.id;
        req->seq = s.next_seq++;
    }
    if (c->route != NULL) {
        rv = kv_route_call(c->route, req, ro, out, errmsg);
    } else {
        rv = run_plain(c, req, out, errmsg);
    }
    if (write && rv == 0) {
        /* A definite answer: the session can serve the next write. A session whose last
         * write has an unknown outcome is dropped (its retry might still apply). */
        session_give(c, &s);
    }
    if (rv != 0) {
        return rv;
    }
    if ((*out)->status != 0) {
        rv = (int)(*out)->status;
        if ((*out)->error != NULL && (*out)->error[0] != '\0') {
            rfs_errmsg_printf(errmsg, "%s", (*out)->error);
        } else {
            rfs_errmsg_printf(errmsg, "%s", rfs_strerror(rv));
        }
    }
    return rv;
}

static int run(struct kv_client *c, Raftfs__KvRequest *req, bool write, Raftfs__KvReply **out,
               char *errmsg)
{
    return run_ex(c, req, write, NULL, out, errmsg);
}

static int copy_buf(struct rfs_buf *dst, const ProtobufCBinaryData *src)
{
    dst->len = src->len;
    dst->base = rfs_malloc(src->len ? src->len : 1);
    if (dst->base == NULL) {
        dst->len = 0;
        return RFS_ENOMEM;
    }
    if (src->len > 0) {
        memcpy(dst->base, src->data, src->len);
    }
    return 0;
}

void kv_client_value_clear(struct kv_client_value *v)
{
    rfs_free(v->value.base);
    memset(v, 0, sizeof *v);
}

static void fill_value(struct kv_client_value *v, const Raftfs__KvReply *rep)
{
    memset(v, 0, sizeof *v);
    v->found = rep->found;
    v->version = rep->version;
    (void)copy_buf(&v->value, &rep->value);
}

int kv_client_get(struct kv_client *c, const void *key, size_t klen, struct kv_client_value *v,
                  char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep = NULL;
    int rv;
    memset(v, 0, sizeof *v);
    req.op = RAFTFS__KV_OP__KV_GET;
    req.key.data = (uint8_t *)key;
    req.key.len = klen;
    rv = run(c, &req, false, &rep, errmsg);
    if (rv == 0) {
        fill_value(v, rep);
    }
    if (rep != NULL) {
        raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    }
    return rv;
}

static int simple_write(struct kv_client *c, Raftfs__KvOp op, const void *key, size_t klen,
                        const void *val, size_t vlen, uint64_t *version, bool *found, char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep = NULL;
    int rv;
    req.op = op;
    req.key.data = (uint8_t *)key;
    req.key.len = klen;
    req.value.data = (uint8_t *)val;
    req.value.len = vlen;
    rv = run(c, &req, true, &rep, errmsg);
    if (rv == 0) {
        if (version != NULL) {
            *version = rep->version;
        }
        if (found != NULL) {
            *found = rep->found;
        }
    }
    if (rep != NULL) {
        raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    }
    return rv;
}

int kv_client_put(struct kv_client *c, const void *key, size_t klen, const void *val, size_t vlen,
                  uint64_t *version, char *errmsg)
{
    return simple_write(c, RAFTFS__KV_OP__KV_PUT, key, klen, val, vlen, version, NULL, errmsg);
}

int kv_client_append(struct kv_client *c, const void *key, size_t klen, const void *val,
                     size_t vlen, uint64_t *version, char *errmsg)
{
    return simple_write(c, RAFTFS__KV_OP__KV_APPEND, key, klen, val, vlen, version, NULL, errmsg);
}

int kv_client_delete(struct kv_client *c, const void *key, size_t klen, bool *found, char *errmsg)
{
    return simple_write(c, RAFTFS__KV_OP__KV_DELETE, key, klen, NULL, 0, NULL, found, errmsg);
}

int kv_client_cas(struct kv_client *c, const void *key, size_t klen, const void *expect,
                  size_t elen, const void *val, size_t vlen, struct kv_client_value *current,
                  char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep = NULL;
    int rv;
    if (current != NULL) {
        memset(current, 0, sizeof *current);
    }
    req.op = RAFTFS__KV_OP__KV_CAS;
    req.key.data = (uint8_t *)key;
    req.key.len = klen;
    req.value.data = (uint8_t *)val;
    req.value.len = vlen;
    if (expect == NULL) {
        req.expect_absent = true;
    } else {
        req.expect.data = (uint8_t *)expect;
        req.expect.len = elen;
    }
    rv = run(c, &req, true, &rep, errmsg);
    if (rep != NULL && current != NULL) {
        fill_value(current, rep);
    }
    if (rep != NULL) {
        raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    }
    return rv;
}

static int scan_result_take(int rv, Raftfs__KvReply *rep, struct kv_scan_result *out);

void kv_scan_result_clear(struct kv_scan_result *r)
{
    rfs_free(r->pairs);
    if (r->reply != NULL) {
        raftfs__kv_reply__free_unpacked(r->reply, &proto_allocator);
    }
    memset(r, 0, sizeof *r);
}

/* A scan: of the bucket of start's tag, or (local) of every bucket group gid serves. */
static int scan(struct kv_client *c, bool local, uint64_t gid, const void *start, size_t slen,
                const void *end, size_t elen, unsigned limit, struct kv_scan_result *out,
                char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    struct kv_route_opts ro = {.gid = gid};
    Raftfs__KvReply *rep = NULL;
    int rv;
    memset(out, 0, sizeof *out);
    req.op = RAFTFS__KV_OP__KV_SCAN;
    req.local = local;
    req.key.data = (uint8_t *)start;
    req.key.len = slen;
    if (end != NULL) {
        req.end_key.data = (uint8_t *)end;
        req.end_key.len = elen;
    }
    req.limit = limit;
    rv = run_ex(c, &req, false, local && c->route != NULL ? &ro : NULL, &rep, errmsg);
    return scan_result_take(rv, rep, out);
}

int kv_client_scan(struct kv_client *c, const void *start, size_t slen, const void *end,
                   size_t elen, unsigned limit, struct kv_scan_result *out, char *errmsg)
{
    return scan(c, false, 0, start, slen, end, elen, limit, out, errmsg);
}

/* Fill out from a scan's reply (which it keeps): the pairs point into it. */
static int scan_result_take(int rv, Raftfs__KvReply *rep, struct kv_scan_result *out)
{
    if (rv == 0 && rep->n_kvs > 0) {
        out->pairs = rfs_calloc(rep->n_kvs, sizeof *out->pairs);
        if (out->pairs == NULL) {
            rv = RFS_ENOMEM;
        } else {
            /* The pairs point into the decoded reply, which the result keeps: a stripe of
             * file data is not copied once more. */
            for (size_t i = 0; i < rep->n_kvs; i++) {
                out->pairs[i].key = (struct rfs_buf){rep->kvs[i]->key.data, rep->kvs[i]->key.len};
                out->pairs[i].value =
                    (struct rfs_buf){rep->kvs[i]->value.data, rep->kvs[i]->value.len};
                out->pairs[i].version = rep->kvs[i]->version;
                out->n++;
            }
        }
    }
    if (rv == 0) {
        out->more = rep->more;
        out->reply = rep;
    } else if (rep != NULL) {
        raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    }
    return rv;
}

int kv_client_scan_group(struct kv_client *c, uint64_t gid, const void *start, size_t slen,
                         const void *end, size_t elen, unsigned limit, struct kv_scan_result *out,
                         char *errmsg)
{
    return scan(c, true, gid, start, slen, end, elen, limit, out, errmsg);
}

int kv_client_group_ids(struct kv_client *c, uint64_t *gids, size_t cap, size_t *n, char *errmsg)
{
    if (c->route == NULL) {
        *n = cap > 0;
        if (cap > 0) {
            gids[0] = 0;
        }
        return 0;
    }
    return kv_route_group_ids(c->route, gids, cap, n, errmsg);
}

/* Whether every key of the transaction is on one group by the cached configuration (gid 0,
 * a bucket with no group yet, counts as a group: the single request waits for one). */
static int txn_one_group(struct kv_client *c, const Raftfs__KvRequest *req, bool *one, char *errmsg)
{
    size_t n = req->n_reads + req->n_writes;
    ProtobufCBinaryData *keys = rfs_calloc(n ? n : 1, sizeof *keys);
    uint64_t *gids = rfs_calloc(n ? n : 1, sizeof *gids);
    int rv = RFS_ENOMEM;
    *one = true;
    if (keys != NULL && gids != NULL) {
        for (size_t i = 0; i < n; i++) {
            keys[i] = i < req->n_reads ? req->reads[i]->key : req->writes[i - req->n_reads]->key;
        }
        rv = kv_route_groups(c->route, keys, n, gids, NULL, errmsg);
        for (size_t i = 1; rv == 0 && i < n; i++) {
            *one = *one && gids[i] == gids[0];
        }
    } else {
        rfs_errmsg_printf(errmsg, "out of memory");
    }
    rfs_free(keys);
    rfs_free(gids);
    return rv;
}

/* A transaction on a routed client: one KV_TXN request when its keys are on one group,
 * else two-phase commit (kv/txn_client.c). A single request that its group refuses because
 * the keys' buckets moved apart meanwhile goes the two-phase way, unless an earlier attempt
 * of it got no answer (it may have been applied: the outcome is then unknown). */
static int txn_routed(struct kv_client *c, Raftfs__KvRequest *req, const struct kv_txn_read *reads,
                      unsigned n_reads, const struct kv_txn_write *writes, unsigned n_writes,
                      Raftfs__KvReply **rep, char *errmsg)
{
    struct kv_txn_client_options to;
    struct kv_route_opts ro;
    uint64_t started = rpc_now_ms();
    uint64_t spent;
    bool one = true;
    int rv;

    if (n_reads + n_writes == 0) {
        return 0;
    }
    rv = txn_one_group(c, req, &one, errmsg);
    if (rv == RFS_ENOMEM) {
        return rv;
    }
    /* No configuration yet (another thread is reading it, or the meta group is slow): the
     * single request waits for one, and goes the two-phase way if it must. */
    if (one) {
        memset(&ro, 0, sizeof ro);
        rv = run_ex(c, req, true, &ro, rep, errmsg);
        if (!ro.split) {
            return rv;
        }
        if (ro.unknown) {
            rfs_errmsg_wrapf(errmsg, "outcome unknown (a try got no answer, and the keys' "
                                     "buckets have moved apart since)");
            return RFS_ETIMEDOUT;
        }
    }
    spent = rpc_now_ms() - started;
    memset(&to, 0, sizeof to);
    to.timeout_ms = spent < c->o.timeout_ms ? c->o.timeout_ms - (unsigned)spent : 1;
    to.ttl_ms = c->o.txn_ttl_ms;
    to.crash_after = c->o.txn_crash_after;
    return kv_txn_client_run(c->route, &to, reads, n_reads, writes, n_writes, errmsg);
}

int kv_client_txn(struct kv_client *c, const struct kv_txn_read *reads, unsigned n_reads,
                  const struct kv_txn_write *writes, unsigned n_writes, char *errmsg)
{
    return kv_client_txn_ex(c, reads, n_reads, writes, n_writes, NULL, errmsg);
}

int kv_client_txn_ex(struct kv_client *c, const struct kv_txn_read *reads, unsigned n_reads,
                     const struct kv_txn_write *writes, unsigned n_writes, uint64_t *version,
                     char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep = NULL;
    Raftfs__TxnRead *r = rfs_calloc(n_reads ? n_reads : 1, sizeof *r);
    Raftfs__TxnRead **rp = rfs_calloc(n_reads ? n_reads : 1, sizeof *rp);
    Raftfs__TxnWrite *w = rfs_calloc(n_writes ? n_writes : 1, sizeof *w);
    Raftfs__TxnWrite **wp = rfs_calloc(n_writes ? n_writes : 1, sizeof *wp);
    int rv = RFS_ENOMEM;
    if (version != NULL) {
        *version = 0;
    }
    if (r == NULL || rp == NULL || w == NULL || wp == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < n_reads; i++) {
        raftfs__txn_read__init(&r[i]);
        r[i].key.data = (uint8_t *)reads[i].key;
        r[i].key.len = reads[i].klen;
        r[i].version = reads[i].version;
        rp[i] = &r[i];
    }
    for (unsigned i = 0; i < n_writes; i++) {
        raftfs__txn_write__init(&w[i]);
        w[i].key.data = (uint8_t *)writes[i].key;
        w[i].key.len = writes[i].klen;
        w[i].value.data = (uint8_t *)writes[i].value;
        w[i].value.len = writes[i].vlen;
        w[i].delete_ = writes[i].del;
        wp[i] = &w[i];
    }
    req.op = RAFTFS__KV_OP__KV_TXN;
    req.n_reads = n_reads;
    req.reads = rp;
    req.n_writes = n_writes;
    req.writes = wp;
    if (c->route != NULL) {
        rv = txn_routed(c, &req, reads, n_reads, writes, n_writes, &rep, errmsg);
    } else {
        rv = run(c, &req, true, &rep, errmsg);
    }
    if (rv == RFS_ECONFLICT && rep != NULL && rep->conflict_key.len > 0) {
        rfs_errmsg_printf(errmsg, "conflict on key %.*s", (int)rep->conflict_key.len,
                          (const char *)rep->conflict_key.data);
    }
    if (version != NULL) {
        *version = rv == 0 && rep != NULL && n_writes > 0 ? rep->version : 0;
    }
out:
    if (rep != NULL) {
        raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    }
    rfs_free(r);
    rfs_free(rp);
    rfs_free(w);
    rfs_free(wp);
    return rv;
}

int kv_client_locate(struct kv_client *c, const void *key, size_t klen, uint32_t *bucket,
                     uint64_t *gid, uint64_t *version, char *errmsg)
{
    if (c->route == NULL) {
        rfs_errmsg_printf(errmsg, "locate needs a routed client (one given the meta group)");
        return RFS_EINVAL;
    }
    return kv_route_locate(c->route, key, klen, bucket, gid, version, errmsg);
}

int kv_client_call_value(struct kv_client *c, uint32_t op, const void *value, size_t vlen,
                         bool write, struct rfs_buf *out, char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep = NULL;
    int rv;
    *out = (struct rfs_buf){0};
    if (c->route != NULL) {
        rfs_errmsg_printf(errmsg, "a routed client sends only kv operations (this call needs a "
                                  "client of one group)");
        return RFS_EINVAL;
    }
    req.op = (Raftfs__KvOp)op;
    req.value.data = (uint8_t *)value;
    req.value.len = vlen;
    rv = run(c, &req, write, &rep, errmsg);
    if (rep != NULL) {
        if (copy_buf(out, &rep->value) != 0 && rv == 0) {
            rfs_errmsg_printf(errmsg, "out of memory");
            rv = RFS_ENOMEM;
        }
        raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    }
    return rv;
}

int kv_client_conf_change(struct kv_client *c, uint64_t node, unsigned change, const char *addr,
                          bool force, char *note, char *errmsg)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__KvReply *rep = NULL;
    int rv;
    if (c->route != NULL) {
        rfs_errmsg_printf(errmsg, "membership changes go to one group: use a client of its "
                                  "servers");
        return RFS_EINVAL;
    }
    req.op = RAFTFS__KV_OP__KV_CONF_CHANGE;
    req.node = node;
    req.change = change;
    req.force = force;
    if (addr != NULL) {
        req.value.data = (uint8_t *)addr;
        req.value.len = strlen(addr);
    }
    /* Not a session write: the change is idempotent at the leader. */
    rv = run(c, &req, false, &rep, errmsg);
    if (rv == 0 && note != NULL) {
        rfs_errmsg_printf(note, "%s", rep->error != NULL ? rep->error : "");
    }
    if (rep != NULL) {
        raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    }
    return rv;
}

int kv_client_status(struct kv_client *c, unsigned server, struct kv_server_status *st)
{
    Raftfs__StatusRequest req = RAFTFS__STATUS_REQUEST__INIT;
    uint8_t buf[16];
    size_t len = raftfs__status_request__pack(&req, buf);
    void *reply = NULL;
    size_t reply_len = 0;
    int rv;
    memset(st, 0, sizeof *st);
    if (c->route != NULL || server >= c->o.n_servers) {
        snprintf(st->error, sizeof st->error, "no server %u in this client", server);
        return RFS_EINVAL;
    }
    /* A fresh connection may still be opening (or waiting out a reconnect backoff after the
     * server came up late): keep trying for one attempt's time. */
    unsigned tries = c->o.attempt_ms / 50 > 5 ? c->o.attempt_ms / 50 : 5;
    for (unsigned i = 0; i < tries; i++) {
        rv = attempt(c, server, RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST, buf, len, &reply,
                     &reply_len);
        if (rv != RFS_EUNAVAIL) {
            break;
        }
        sleep_ms(50);
    }
    if (rv != 0) {
        snprintf(st->error, sizeof st->error, "%s", transport_reason(rv));
        return rv;
    }
    {
        Raftfs__StatusReply *rep = raftfs__status_reply__unpack(&proto_allocator, reply_len, reply);
        rfs_free(reply);
        if (rep == NULL) {
            snprintf(st->error, sizeof st->error, "malformed status reply");
            return RFS_EPROTO;
        }
        st->reachable = true;
        st->id = rep->id;
        st->group_id = rep->group_id;
        st->role = (int)rep->role;
        st->term = rep->term;
        st->leader = rep->leader;
        st->commit = rep->commit;
        st->applied = rep->applied;
        st->last_index = rep->last_index;
        st->snapshot_index = rep->snapshot_index;
        st->removed = rep->removed;
        snprintf(st->addr, sizeof st->addr, "%s", rep->addr != NULL ? rep->addr : "");
        for (size_t i = 0; i < rep->n_members && st->n_members < 32; i++) {
            struct kv_member *m = &st->members[st->n_members++];
            m->id = rep->members[i]->id;
            m->learner = rep->members[i]->learner;
            m->match = rep->members[i]->match;
            snprintf(m->addr, sizeof m->addr, "%s",
                     rep->members[i]->addr != NULL ? rep->members[i]->addr : "");
        }
        raftfs__status_reply__free_unpacked(rep, &proto_allocator);
    }
    return 0;
}
