/* One Raft server: the event loop drives the Raft core, the log store and a state machine.
 *
 * Happy path for a write: a KvRequest frame arrives; the leader stamps it with its clock
 * (log time, for deterministic session expiry) and proposes its bytes; when the loop is
 * about to sleep, everything that arrived in this iteration becomes one ready batch:
 * persisted with one fdatasync (group commit), then sent to peers, then the committed
 * entries are applied in one state-machine write batch and each waiting client gets its
 * reply. A read takes a ReadIndex, waits for a quorum of heartbeat acks and for the state
 * machine to reach the read index, then runs against the state machine.
 *
 * Failure modes: a follower (or a deposed leader) answers RFS_ENOTLEADER with a hint; the
 * client retries there with the same session sequence number, so a write that did commit
 * is not applied twice. A frame that does not decode closes that one connection. A failed
 * log write stops the server: nothing of that batch is sent or acknowledged. */
#include "server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../proto/proto.h"
#include "../raft/log_store.h"
#include "addrs.h"
#include "bootstrap_check.h"
#include "metrics.h"
#include "space.h"
#include "usage.h"

struct pending_write {
    raft_index index;
    raft_term term;
    uint64_t conn_id;
    uint64_t req_id;
    unsigned op; /* KvOp, for metrics */
    uint64_t t0; /* arrival, rfs_metrics_now_us() */
};

struct pending_read {
    uint64_t ctx;
    raft_index index; /* 0 until the read point is confirmed */
    bool confirmed;
    uint64_t conn_id;
    uint64_t req_id;
    unsigned op; /* KvOp, for metrics */
    uint64_t t0; /* arrival, rfs_metrics_now_us() */
    void *cmd;
    size_t len;
};

struct client_conn {
    uint64_t id;
    struct rpc_conn *conn;
};

struct rfs_server {
    struct rfs_server_config cfg;
    char data_dir[512];
    struct rpc_loop *loop;
    struct raft *r;
    struct raft_store *store;
    struct rpc_listener *listener;
    struct rpc_peer *peers[SERVER_MAX_PEERS + 1]; /* by server id; NULL: no address */
    struct server_addrs book;    /* id -> address: --peers, overridden by `learned` */
    struct server_addrs learned; /* addresses from membership changes, saved in book_path */
    char book_path[600];
    bool book_dirty;       /* learned changed since it was last saved */
    raft_index removed_at; /* a REMOVE of this server seen in the log at this index, or 0 */
    bool removed;          /* removed_at set and not a member of the configuration */
    struct rpc_timer *tick;
    uint64_t tick_origin_ms; /* ticks are counted from here on the monotonic clock */
    uint64_t ticks_done;
    struct client_conn *conns;
    unsigned n_conns;
    unsigned cap_conns;
    uint64_t next_conn_id;
    struct pending_write *writes;
    size_t n_writes;
    size_t cap_writes;
    struct pending_read *reads;
    size_t n_reads;
    size_t cap_reads;
    uint64_t read_ctx;
    enum raft_role last_role;
    raft_term last_term;
    raft_term durable_term;    /* the term the log store holds */
    struct server_space space; /* refuse growing writes before the disk is full */
    struct server_usage usage; /* KV_SPACE answers (usage.h) */
    int failed;
    char errmsg[RFS_ERRMSG_SIZE];
    /* Metrics (rfs_server_metrics): updated where requests are answered. */
    struct rfs_metrics_requests reqs;
    uint64_t snapshots_taken;
    uint64_t snapshots_installed;
    uint64_t logged_bytes;       /* entry bytes appended since the last snapshot (or start) */
    uint64_t last_snapshot_ms;   /* when maybe_snapshot last took one */
    uint64_t next_size_check_ms; /* snapshot_due: when to ask the state its size again */
    uint64_t bytes_snapshot_ms;  /* when snapshot_for_followers last serialised the state */
    uint64_t bytes_retry_ms;     /* snapshot_for_followers failed: not again before this */
};

void rfs_server_config_default(struct rfs_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->tick_ms = 50;
    cfg->election_ticks = 10;
    cfg->heartbeat_ticks = 2;
    cfg->snapshot_every = 100000; /* etcd's default too */
    cfg->keep_entries = 1000;
    cfg->snapshot_bytes = 64u << 20;
    cfg->min_free_mb = 64;
    cfg->role_name = "server";
}

static void server_fail(struct rfs_server *s, int rv, const char *what, const char *errmsg)
{
    if (s->failed) {
        return;
    }
    s->failed = rv;
    snprintf(s->errmsg, sizeof s->errmsg, "%s: %s", what, errmsg);
    rfs_errorf("stopping: %s", s->errmsg);
    rpc_loop_stop(s->loop);
}

int rfs_server_failed(const struct rfs_server *s, char *errmsg)
{
    if (s->failed && errmsg != NULL) {
        snprintf(errmsg, RFS_ERRMSG_SIZE, "%s", s->errmsg);
    }
    return s->failed;
}

/* Bytes allocated on disk by the files of the Raft directory (segments, snapshots). */
static uint64_t log_disk_bytes(const struct rfs_server *s, unsigned *files)
{
    char dir[600];
    DIR *d;
    struct dirent *e;
    uint64_t total = 0;
    *files = 0;
    snprintf(dir, sizeof dir, "%s/raft", s->data_dir);
    d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
            total += (uint64_t)st.st_blocks * 512u;
            (*files)++;
        }
    }
    closedir(d);
    return total;
}

void rfs_server_stats(const struct rfs_server *s, struct rfs_server_stats *out)
{
    const struct raft_snapshot *snap = raft_snapshot_get(s->r);
    memset(out, 0, sizeof *out);
    out->group_id = s->cfg.group_id;
    out->id = s->cfg.id;
    out->role = raft_role_get(s->r);
    out->term = raft_term_get(s->r);
    out->leader = raft_leader_get(s->r);
    out->commit = raft_commit_get(s->r);
    out->applied = raft_applied_get(s->r);
    out->first_index = raft_first_index(s->r);
    out->last_index = raft_last_index(s->r);
    out->snapshot_index = snap != NULL ? snap->meta.index : 0;
    out->snapshots_taken = s->snapshots_taken;
    out->snapshots_installed = s->snapshots_installed;
    out->log_disk_bytes = log_disk_bytes(s, &out->log_files);
    out->client_conns = s->n_conns;
    out->pending_writes = s->n_writes;
    out->pending_reads = s->n_reads;
    out->requests = &s->reqs;
}

/* ---- the address book ---- */

static bool known_type(uint32_t type, void *data);
static void on_frame(struct rpc_conn *c, uint32_t type, uint64_t req_id, const void *payload,
                     size_t len, void *data);

/* Connect to server `id` at its book address (replacing a connection to an old one). */
static int peer_connect(struct rfs_server *s, raft_id id, char *errmsg)
{
    struct rpc_handler ph;
    struct rpc_peer *p = NULL;
    int rv;
    if (id == s->cfg.id || s->book.addr[id][0] == '\0') {
        return 0;
    }
    memset(&ph, 0, sizeof ph);
    ph.data = s;
    ph.known_type = known_type;
    ph.on_frame = on_frame;
    rv = rpc_peer_new(s->loop, s->book.addr[id], &ph, &p, errmsg);
    if (rv != 0) {
        rfs_errmsg_wrapf(errmsg, "server %llu", (unsigned long long)id);
        return rv;
    }
    rpc_peer_free(s->peers[id]);
    s->peers[id] = p;
    return 0;
}

/* Record that server `id` is at addr (len bytes, not NUL-terminated), as a membership
 * change says, and connect to it. */
static void peer_set(struct rfs_server *s, raft_id id, const char *addr, size_t len)
{
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char old[SERVER_ADDR_MAX];
    if (id < 1 || id > SERVER_MAX_PEERS || !server_addr_valid(addr, len)) {
        rfs_warnf("ignoring the address of server %llu from a membership change: not an id "
                  "1..%d with a host:port",
                  (unsigned long long)id, SERVER_MAX_PEERS);
        return;
    }
    if (strlen(s->learned.addr[id]) != len || memcmp(s->learned.addr[id], addr, len) != 0) {
        memcpy(s->learned.addr[id], addr, len);
        s->learned.addr[id][len] = '\0';
        s->book_dirty = true;
    }
    if (strlen(s->book.addr[id]) == len && memcmp(s->book.addr[id], addr, len) == 0 &&
        (id == s->cfg.id || s->peers[id] != NULL)) {
        return;
    }
    memcpy(old, s->book.addr[id], sizeof old);
    memcpy(s->book.addr[id], addr, len);
    s->book.addr[id][len] = '\0';
    if (id == s->cfg.id) {
        if (strcmp(s->book.addr[id], s->cfg.peers[id - 1]) != 0) {
            rfs_warnf("the group knows this server (%llu) as %s but it listens on %s: restart "
                      "it with that address in --peers",
                      (unsigned long long)id, s->book.addr[id], s->cfg.peers[id - 1]);
        }
    } else if (peer_connect(s, id, errmsg) != 0) {
        rfs_warnf("%s: keeping the old address %s", errmsg, old[0] ? old : "(none)");
        memcpy(s->book.addr[id], old, sizeof old);
        return;
    }
    rfs_infof("address book: server %llu is at %s", (unsigned long long)id, s->book.addr[id]);
}

static void book_save(struct rfs_server *s)
{
    char errmsg[RFS_ERRMSG_SIZE] = "";
    if (!s->book_dirty) {
        return;
    }
    s->book_dirty = false;
    if (server_addrs_save(&s->learned, s->book_path, errmsg) != 0) {
        /* The addresses are still in the log, which is scanned again at start. */
        rfs_errorf("saving the address book: %s", errmsg);
    }
}

/* Learn from membership entries (persisted or committed): the addresses they carry, and,
 * from committed ones, whether this server was removed (a leader removing itself leads
 * until the change commits). connect: also connect to new addresses (else only record
 * them, at start before any connection exists). */
static void conf_entries_seen(struct rfs_server *s, const struct raft_entry *es, unsigned n,
                              bool committed, bool connect)
{
    for (unsigned i = 0; i < n; i++) {
        const struct raft_entry *e = &es[i];
        struct raft_conf_change cc;
        if (e->type != RAFT_ENTRY_CONF ||
            raft_conf_change_decode(e->data.base, e->data.len, &cc) != 0) {
            continue;
        }
        if (cc.node == s->cfg.id && committed) {
            if (cc.type == RAFT_CC_REMOVE) {
                s->removed_at = e->index;
            } else if (e->index > s->removed_at) {
                s->removed_at = 0;
            }
        }
        if (cc.type == RAFT_CC_REMOVE || cc.context_len == 0) {
            continue;
        }
        if (connect) {
            peer_set(s, cc.node, cc.context, cc.context_len);
        } else if (cc.node <= SERVER_MAX_PEERS && server_addr_valid(cc.context, cc.context_len) &&
                   (strlen(s->learned.addr[cc.node]) != cc.context_len ||
                    memcmp(s->learned.addr[cc.node], cc.context, cc.context_len) != 0)) {
            memcpy(s->learned.addr[cc.node], cc.context, cc.context_len);
            s->learned.addr[cc.node][cc.context_len] = '\0';
            s->book_dirty = true; /* saved after the first ready cycle */
        }
    }
}

/* After a ready cycle: notice this server leaving (or rejoining) the configuration. */
static void membership_check(struct rfs_server *s)
{
    const struct raft_conf *c = raft_conf_get(s->r);
    bool member = raft_conf_is_voter(c, s->cfg.id) || raft_conf_is_learner(c, s->cfg.id);
    bool removed = s->removed_at != 0 && !member;
    if (removed == s->removed) {
        return;
    }
    s->removed = removed;
    if (removed) {
        rfs_infof("removed from the group (at index %llu): no longer campaigning or serving "
                  "clients; stop this server",
                  (unsigned long long)s->removed_at);
    } else {
        rfs_infof("a member of the group again");
    }
}

/* ---- client connections ---- */

static struct rpc_conn *conn_lookup(struct rfs_server *s, uint64_t id)
{
    for (unsigned i = 0; i < s->n_conns; i++) {
        if (s->conns[i].id == id) {
            return s->conns[i].conn;
        }
    }
    return NULL;
}

/* A connection's id is stored in its data pointer (ids never reuse 0). */
static uint64_t conn_id_of(struct rfs_server *s, struct rpc_conn *c)
{
    (void)s;
    return (uint64_t)(uintptr_t)rpc_conn_get_data(c);
}

static void on_open(struct rpc_conn *c, void *data)
{
    struct rfs_server *s = data;
    if (s->n_conns == s->cap_conns) {
        unsigned cap = s->cap_conns ? s->cap_conns * 2 : 16;
        struct client_conn *cc = rfs_realloc(s->conns, cap * sizeof *cc);
        if (cc == NULL) {
            rpc_conn_close(c, "out of memory");
            return;
        }
        s->conns = cc;
        s->cap_conns = cap;
    }
    s->conns[s->n_conns].id = ++s->next_conn_id;
    s->conns[s->n_conns].conn = c;
    rpc_conn_set_data(c, (void *)(uintptr_t)s->next_conn_id);
    s->n_conns++;
}

static void on_close(struct rpc_conn *c, void *data)
{
    struct rfs_server *s = data;
    uint64_t id = conn_id_of(s, c);
    for (unsigned i = 0; i < s->n_conns; i++) {
        if (s->conns[i].id == id) {
            s->conns[i] = s->conns[--s->n_conns];
            break;
        }
    }
}

static void reply_bytes(struct rfs_server *s, uint64_t conn_id, uint64_t req_id, const void *buf,
                        size_t len)
{
    struct rpc_conn *c = conn_lookup(s, conn_id);
    if (c != NULL) {
        (void)rpc_conn_send(c, RAFTFS__FRAME_TYPE__FRAME_KV_REPLY, req_id, buf, len);
    }
}

static void reply_status(struct rfs_server *s, uint64_t conn_id, uint64_t req_id, int status,
                         const char *error)
{
    Raftfs__KvReply rep = RAFTFS__KV_REPLY__INIT;
    uint8_t buf[512];
    size_t len;
    rep.status = (uint32_t)status;
    rep.leader_hint = s->r ? raft_leader_get(s->r) : 0;
    rep.error = (char *)(error ? error : rfs_strerror(status));
    if (raftfs__kv_reply__get_packed_size(&rep) > sizeof buf) {
        rep.error = (char *)rfs_strerror(status);
    }
    len = raftfs__kv_reply__pack(&rep, buf);
    reply_bytes(s, conn_id, req_id, buf, len);
}

/* ---- request metrics ---- */

static void count_request(struct rfs_server *s, unsigned op, uint64_t t0, int status)
{
    rfs_metrics_request_done(&s->reqs, op, status, rfs_metrics_now_us() - t0);
}

/* The status of a packed KvReply without unpacking it: protobuf-c writes fields in field
 * number order and omits a zero status, so a non-zero status is a leading field 1 varint. */
static int packed_reply_status(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t v = 0;
    if (len < 2 || p[0] != (1 << 3)) {
        return 0;
    }
    for (size_t i = 1; i < len && i < 6; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * (i - 1));
        if ((p[i] & 0x80) == 0) {
            return v > 1000 ? 1000 : (int)v;
        }
    }
    return 1000;
}

/* ---- requests ---- */

/* Append field 12 (time_ms, varint) to a packed KvRequest: protobuf keeps the last value
 * of a repeated scalar field, so this stamps the leader's clock without re-encoding. */
static void *stamp_time(const void *payload, size_t len, uint64_t time_ms, size_t *out_len)
{
    uint8_t *buf = rfs_malloc(len + 11);
    size_t n = len;
    if (buf == NULL) {
        return NULL;
    }
    memcpy(buf, payload, len);
    buf[n++] = (12 << 3) | 0;
    do {
        uint8_t b = time_ms & 0x7f;
        time_ms >>= 7;
        buf[n++] = b | (time_ms ? 0x80 : 0);
    } while (time_ms);
    *out_len = n;
    return buf;
}

static int writes_push(struct rfs_server *s, raft_index index, uint64_t conn_id, uint64_t req_id,
                       unsigned op, uint64_t t0)
{
    if (s->n_writes == s->cap_writes) {
        size_t cap = s->cap_writes ? s->cap_writes * 2 : 64;
        struct pending_write *w = rfs_realloc(s->writes, cap * sizeof *w);
        if (w == NULL) {
            return RFS_ENOMEM;
        }
        s->writes = w;
        s->cap_writes = cap;
    }
    s->writes[s->n_writes].index = index;
    s->writes[s->n_writes].term = raft_term_get(s->r);
    s->writes[s->n_writes].conn_id = conn_id;
    s->writes[s->n_writes].req_id = req_id;
    s->writes[s->n_writes].op = op;
    s->writes[s->n_writes].t0 = t0;
    s->n_writes++;
    return 0;
}

static void handle_write(struct rfs_server *s, uint64_t conn_id, uint64_t req_id, unsigned op,
                         uint64_t t0, const void *payload, size_t len)
{
    size_t stamped_len;
    void *stamped = stamp_time(payload, len, rpc_now_ms(), &stamped_len);
    raft_index index;
    int rv;
    if (stamped == NULL) {
        rv = RFS_ENOMEM;
        goto fail;
    }
    rv = raft_propose(s->r, stamped, stamped_len, &index);
    rfs_free(stamped);
    if (rv != 0) {
        goto fail;
    }
    rv = writes_push(s, index, conn_id, req_id, op, t0);
    if (rv != 0) {
        goto fail;
    }
    return;
fail:
    reply_status(s, conn_id, req_id, rv, NULL);
    count_request(s, op, t0, rv);
}

/* The core's ticks follow the monotonic clock, not the timer's callbacks: after a pause (a
 * stopped process, a slow sync in the loop) the core learns at once how long it was, before
 * it answers a read from its leader lease (raft.h, lease_reads). More than two election
 * timeouts behind, the rest are skipped: by then every timer and lease has run out anyway. */
static void catch_up_ticks(struct rfs_server *s)
{
    uint64_t due = (rpc_now_ms() - s->tick_origin_ms) / s->cfg.tick_ms;
    uint64_t max = 2 * (uint64_t)s->cfg.election_ticks + 1;
    if (due > s->ticks_done + max) {
        s->ticks_done = due - max;
    }
    while (s->ticks_done < due) {
        s->ticks_done++;
        if (!s->failed && !s->removed) {
            raft_tick(s->r);
        }
    }
}

static void handle_read(struct rfs_server *s, uint64_t conn_id, uint64_t req_id, unsigned op,
                        uint64_t t0, const void *payload, size_t len)
{
    struct pending_read *pr;
    int rv = RFS_ENOMEM;
    if (s->n_reads == s->cap_reads) {
        size_t cap = s->cap_reads ? s->cap_reads * 2 : 64;
        struct pending_read *r = rfs_realloc(s->reads, cap * sizeof *r);
        if (r == NULL) {
            goto fail;
        }
        s->reads = r;
        s->cap_reads = cap;
    }
    pr = &s->reads[s->n_reads];
    memset(pr, 0, sizeof *pr);
    pr->cmd = rfs_malloc(len ? len : 1);
    if (pr->cmd == NULL) {
        goto fail;
    }
    memcpy(pr->cmd, payload, len);
    pr->len = len;
    pr->ctx = ++s->read_ctx;
    pr->conn_id = conn_id;
    pr->req_id = req_id;
    pr->op = op;
    pr->t0 = t0;
    catch_up_ticks(s); /* the clock is read after the request came: see catch_up_ticks */
    rv = raft_read_index(s->r, pr->ctx);
    if (rv != 0) {
        rfs_free(pr->cmd);
        goto fail;
    }
    s->n_reads++;
    return;
fail:
    reply_status(s, conn_id, req_id, rv, NULL);
    count_request(s, op, t0, rv);
}

/* Bytes of values a write would add. */
static size_t request_value_bytes(const Raftfs__KvRequest *req)
{
    size_t n = req->value.len;
    for (size_t i = 0; i < req->n_writes; i++) {
        n += req->writes[i]->value.len;
    }
    for (size_t i = 0; i < req->n_kvs; i++) {
        n += req->kvs[i]->value.len;
    }
    return n;
}

/* Refuse (with a reply) a write of data while the data directory is short of space. */
static bool refuse_for_space(struct rfs_server *s, const Raftfs__KvRequest *req, uint64_t conn_id,
                             uint64_t req_id, uint64_t t0)
{
    char msg[RFS_ERRMSG_SIZE];
    uint64_t free_bytes;
    if (request_value_bytes(req) <= SERVER_LOW_SPACE_ALLOWANCE ||
        !server_space_low(&s->space, rpc_now_ms(), &free_bytes)) {
        return false;
    }
    snprintf(msg, sizeof msg,
             "%s %llu of group %llu: %llu MiB free in its data directory, below --min-free-mb "
             "%llu: delete data, or add a group and move buckets to it",
             s->cfg.role_name, (unsigned long long)s->cfg.id, (unsigned long long)s->cfg.group_id,
             (unsigned long long)(free_bytes >> 20), (unsigned long long)s->cfg.min_free_mb);
    reply_status(s, conn_id, req_id, RFS_ENOSPC, msg);
    count_request(s, (unsigned)req->op, t0, RFS_ENOSPC);
    return true;
}

/* A membership change (KV_CONF_CHANGE), at the leader. Changes that are already in effect
 * succeed at once (a retry after a lost reply, or a second operator); the others are
 * proposed with the member's address as the entry's context and answered when they
 * commit. */
static void handle_conf_change(struct rfs_server *s, uint64_t conn_id, uint64_t req_id, uint64_t t0,
                               const Raftfs__KvRequest *req)
{
    const unsigned op = RAFTFS__KV_OP__KV_CONF_CHANGE;
    const struct raft_conf *conf = raft_conf_get(s->r);
    struct raft_conf_change cc = {0};
    char msg[RFS_ERRMSG_SIZE] = "";
    const char *addr = (const char *)req->value.data;
    size_t addr_len = req->value.len;
    unsigned long long node = req->node;
    bool voter, learner;
    raft_index index;
    int rv = RFS_EINVAL;

    if (node < 1 || node > SERVER_MAX_PEERS) {
        snprintf(msg, sizeof msg, "server id %llu: ids are 1..%d", node, SERVER_MAX_PEERS);
        goto fail;
    }
    if (addr_len > 0 && !server_addr_valid(addr, addr_len)) {
        snprintf(msg, sizeof msg, "'%.*s' is not a HOST:PORT address", (int)(addr_len % 200), addr);
        goto fail;
    }
    if (addr_len > 0) {
        struct sockaddr_in sa;
        char a[SERVER_ADDR_MAX];
        char err[RFS_ERRMSG_SIZE] = "";
        memcpy(a, addr, addr_len);
        a[addr_len] = '\0';
        if (rpc_addr_parse(a, &sa, err) != 0) {
            snprintf(msg, sizeof msg, "address of server %llu: %.200s", node, err);
            goto fail;
        }
    }
    voter = raft_conf_is_voter(conf, node);
    learner = raft_conf_is_learner(conf, node);
    cc.type = (uint8_t)req->change;
    cc.node = node;
    switch (req->change) {
        case RAFT_CC_ADD_LEARNER:
            if (voter || learner) {
                if (addr_len == 0 || (strlen(s->book.addr[node]) == addr_len &&
                                      memcmp(s->book.addr[node], addr, addr_len) == 0)) {
                    snprintf(msg, sizeof msg, "server %llu is already a %s", node,
                             voter ? "voter" : "learner");
                    reply_status(s, conn_id, req_id, 0, msg);
                    count_request(s, op, t0, 0);
                    return;
                }
                snprintf(msg, sizeof msg,
                         "server %llu is already a %s at %s: remove it first to give the id "
                         "another address",
                         node, voter ? "voter" : "learner", s->book.addr[node]);
                goto fail;
            }
            if (addr_len == 0) {
                snprintf(msg, sizeof msg, "add-learner needs the new server's HOST:PORT");
                goto fail;
            }
            break;
        case RAFT_CC_ADD_VOTER:
            if (voter) {
                snprintf(msg, sizeof msg, "server %llu is already a voter", node);
                reply_status(s, conn_id, req_id, 0, msg);
                count_request(s, op, t0, 0);
                return;
            }
            if (!learner && !req->force) {
                snprintf(msg, sizeof msg,
                         "server %llu is not a learner: add it with add-learner ID ADDR, wait "
                         "until it has caught up, then promote it",
                         node);
                goto fail;
            }
            if (!learner && addr_len == 0) {
                snprintf(msg, sizeof msg, "a new voter needs its HOST:PORT");
                goto fail;
            }
            if (learner && !req->force &&
                raft_match_get(s->r, node) + SERVER_CATCH_UP_ENTRIES < raft_last_index(s->r)) {
                snprintf(msg, sizeof msg,
                         "server %llu has %llu of %llu log entries: wait until it has caught up "
                         "(raftfs group ... members), or promote with --force",
                         node, (unsigned long long)raft_match_get(s->r, node),
                         (unsigned long long)raft_last_index(s->r));
                rv = RFS_EBUSY;
                goto fail;
            }
            if (addr_len == 0 && s->book.addr[node][0] != '\0') {
                addr = s->book.addr[node]; /* restate it: every entry carries the address */
                addr_len = strlen(addr);
            }
            break;
        case RAFT_CC_REMOVE:
            if (!voter && !learner) {
                snprintf(msg, sizeof msg, "server %llu is not a member", node);
                reply_status(s, conn_id, req_id, 0, msg);
                count_request(s, op, t0, 0);
                return;
            }
            if (voter && conf->n_voters == 1) {
                snprintf(msg, sizeof msg, "server %llu is the last voter of the group", node);
                goto fail;
            }
            addr_len = 0;
            break;
        default:
            snprintf(msg, sizeof msg,
                     "unknown membership change %u (1 add learner, 2 add voter, "
                     "3 remove)",
                     req->change);
            goto fail;
    }
    if (addr_len > 0) {
        char a[SERVER_ADDR_MAX];
        memcpy(a, addr, addr_len); /* addr may be the book entry peer_set rewrites */
        peer_set(s, node, a, addr_len);
        cc.context = s->book.addr[node];
        cc.context_len = strlen(s->book.addr[node]);
    }
    rv = raft_propose_conf(s->r, &cc, &index);
    if (rv == RFS_ECONFPENDING) {
        snprintf(msg, sizeof msg,
                 "another membership change is not committed yet: retry once "
                 "it is (a majority of the voters must be up)");
        goto fail;
    }
    if (rv != 0) {
        snprintf(msg, sizeof msg, "%s", rfs_strerror(rv));
        goto fail;
    }
    rfs_infof("proposed membership change %u of server %llu%s%.*s at %llu", req->change, node,
              cc.context_len ? " at " : "", (int)cc.context_len,
              cc.context_len ? (const char *)cc.context : "", (unsigned long long)index);
    rv = writes_push(s, index, conn_id, req_id, op, t0);
    if (rv != 0) {
        snprintf(msg, sizeof msg, "out of memory");
        goto fail;
    }
    return;
fail:
    reply_status(s, conn_id, req_id, rv, msg[0] ? msg : NULL);
    count_request(s, op, t0, rv);
}

/* KV_SPACE, at the leader: this server's disk and key count (usage.h), not through the log:
 * statistics need no read point. */
static void handle_space(struct rfs_server *s, uint64_t conn_id, uint64_t req_id, uint64_t t0,
                         const Raftfs__KvRequest *req)
{
    struct rfs_buf out;
    int rv = RFS_ENOTLEADER;
    if (raft_role_get(s->r) == RAFT_LEADER) {
        rv = server_usage_reply(&s->usage, s->cfg.sm_ops, s->cfg.sm, req->value.data,
                                req->value.len, rpc_now_ms(), &out);
    }
    if (rv != 0) {
        reply_status(s, conn_id, req_id, rv, NULL);
        count_request(s, (unsigned)req->op, t0, rv);
        return;
    }
    reply_bytes(s, conn_id, req_id, out.base, out.len);
    count_request(s, (unsigned)req->op, t0, packed_reply_status(out.base, out.len));
    rfs_free(out.base);
}

static void handle_kv_request(struct rfs_server *s, struct rpc_conn *c, uint64_t req_id,
                              const void *payload, size_t len)
{
    uint64_t conn_id = conn_id_of(s, c);
    uint64_t t0 = rfs_metrics_now_us();
    Raftfs__KvRequest *req = raftfs__kv_request__unpack(&proto_allocator, len, payload);
    unsigned op;
    bool is_read;
    if (req == NULL) {
        reply_status(s, conn_id, req_id, RFS_EPROTO, "request does not decode");
        count_request(s, 0, t0, RFS_EPROTO);
        return;
    }
    op = (unsigned)req->op;
    is_read = req->op == RAFTFS__KV_OP__KV_GET || req->op == RAFTFS__KV_OP__KV_SCAN ||
              req->op == RAFTFS__KV_OP__KV_META_READ || req->op == RAFTFS__KV_OP__KV_BUCKET_PULL ||
              req->op == RAFTFS__KV_OP__KV_SHARD_STATE;
    if (req->group_id != 0 && req->group_id != s->cfg.group_id) {
        raftfs__kv_request__free_unpacked(req, &proto_allocator);
        reply_status(s, conn_id, req_id, RFS_EWRONGGROUP, NULL);
        count_request(s, op, t0, RFS_EWRONGGROUP);
        return;
    }
    if (s->removed) {
        raftfs__kv_request__free_unpacked(req, &proto_allocator);
        reply_status(s, conn_id, req_id, RFS_ENOTLEADER, "this server was removed from the group");
        count_request(s, op, t0, RFS_ENOTLEADER);
        return;
    }
    if (req->op == RAFTFS__KV_OP__KV_CONF_CHANGE) {
        if (raft_role_get(s->r) != RAFT_LEADER) {
            reply_status(s, conn_id, req_id, RFS_ENOTLEADER, NULL);
            count_request(s, op, t0, RFS_ENOTLEADER);
        } else {
            handle_conf_change(s, conn_id, req_id, t0, req);
        }
        raftfs__kv_request__free_unpacked(req, &proto_allocator);
        return;
    }
    if (req->op == RAFTFS__KV_OP__KV_SPACE) {
        handle_space(s, conn_id, req_id, t0, req);
        raftfs__kv_request__free_unpacked(req, &proto_allocator);
        return;
    }
    if (!is_read && refuse_for_space(s, req, conn_id, req_id, t0)) {
        raftfs__kv_request__free_unpacked(req, &proto_allocator);
        return;
    }
    raftfs__kv_request__free_unpacked(req, &proto_allocator);
    if (raft_role_get(s->r) != RAFT_LEADER) {
        reply_status(s, conn_id, req_id, RFS_ENOTLEADER, NULL);
        count_request(s, op, t0, RFS_ENOTLEADER);
        return;
    }
    if (is_read) {
        handle_read(s, conn_id, req_id, op, t0, payload, len);
    } else {
        handle_write(s, conn_id, req_id, op, t0, payload, len);
    }
}

static void handle_status(struct rfs_server *s, struct rpc_conn *c, uint64_t req_id)
{
    Raftfs__StatusReply rep = RAFTFS__STATUS_REPLY__INIT;
    Raftfs__Member members[2 * RAFT_MAX_NODES];
    Raftfs__Member *mp[2 * RAFT_MAX_NODES];
    const struct raft_conf *conf = raft_conf_get(s->r);
    const struct raft_snapshot *snap = raft_snapshot_get(s->r);
    bool leader = raft_role_get(s->r) == RAFT_LEADER;
    uint8_t *buf;
    size_t len;
    rep.id = s->cfg.id;
    rep.group_id = s->cfg.group_id;
    rep.role = raft_role_get(s->r);
    rep.term = raft_term_get(s->r);
    rep.leader = s->removed ? 0 : raft_leader_get(s->r);
    rep.commit = raft_commit_get(s->r);
    rep.applied = raft_applied_get(s->r);
    rep.last_index = raft_last_index(s->r);
    rep.snapshot_index = snap ? snap->meta.index : 0;
    rep.removed = s->removed;
    rep.addr = (char *)s->cfg.peers[s->cfg.id - 1];
    for (unsigned i = 0; i < conf->n_voters + conf->n_learners; i++) {
        bool learner = i >= conf->n_voters;
        raft_id id = learner ? conf->learners[i - conf->n_voters] : conf->voters[i];
        raftfs__member__init(&members[i]);
        members[i].id = id;
        members[i].learner = learner;
        members[i].addr = id <= SERVER_MAX_PEERS ? s->book.addr[id] : (char *)"";
        members[i].match = !leader           ? 0
                           : id == s->cfg.id ? raft_last_index(s->r)
                                             : raft_match_get(s->r, id);
        mp[i] = &members[i];
    }
    rep.n_members = conf->n_voters + conf->n_learners;
    rep.members = mp;
    len = raftfs__status_reply__get_packed_size(&rep);
    buf = rfs_malloc(len ? len : 1);
    if (buf == NULL) {
        return; /* the client times out and retries */
    }
    len = raftfs__status_reply__pack(&rep, buf);
    (void)rpc_conn_send(c, RAFTFS__FRAME_TYPE__FRAME_STATUS_REPLY, req_id, buf, len);
    rfs_free(buf);
}

static void handle_raft(struct rfs_server *s, struct rpc_conn *c, const void *payload, size_t len)
{
    struct proto_raft_msg pm;
    char errmsg[RFS_ERRMSG_SIZE];
    if (proto_raft_unpack(payload, len, &pm, errmsg) != 0) {
        rpc_conn_close(c, errmsg);
        return;
    }
    if (pm.group_id != s->cfg.group_id) {
        snprintf(errmsg, sizeof errmsg, "raft message for group %llu, this is group %llu",
                 (unsigned long long)pm.group_id, (unsigned long long)s->cfg.group_id);
        proto_raft_msg_free(&pm);
        rpc_conn_close(c, errmsg);
        return;
    }
    if (pm.m.to == s->cfg.id && pm.m.from >= 1 && pm.m.from <= SERVER_MAX_PEERS) {
        raft_step(s->r, &pm.m);
    }
    proto_raft_msg_free(&pm);
}

static bool known_type(uint32_t type, void *data)
{
    (void)data;
    return type == RAFTFS__FRAME_TYPE__FRAME_RAFT || type == RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST ||
           type == RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST;
}

static void on_frame(struct rpc_conn *c, uint32_t type, uint64_t req_id, const void *payload,
                     size_t len, void *data)
{
    struct rfs_server *s = data;
    if (s->failed) {
        return;
    }
    switch (type) {
        case RAFTFS__FRAME_TYPE__FRAME_RAFT:
            handle_raft(s, c, payload, len);
            break;
        case RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST:
            handle_kv_request(s, c, req_id, payload, len);
            break;
        case RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST:
            handle_status(s, c, req_id);
            break;
        default:
            rpc_conn_close(c, "unexpected frame type");
            break;
    }
}

/* ---- the ready cycle ---- */

/* A leader's appends, heartbeats and snapshot chunks depend on nothing in the batch being
 * written (its term and vote are already durable, and it counts its own copy of new
 * entries only once they are), so they may leave before the sync: the followers' writes
 * then overlap the leader's (thesis §10.2.1). Everything else waits for the sync. */
static bool sendable_before_sync(const struct rfs_server *s, const struct raft_ready *rd,
                                 const struct raft_message *m)
{
    if (rd->role != RAFT_LEADER || rd->hard_state.term != s->durable_term) {
        return false;
    }
    return m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
           m->type == RAFT_MSG_SNAPSHOT;
}

static void send_messages(struct rfs_server *s, const struct raft_ready *rd, bool early)
{
    bool sent[SERVER_MAX_PEERS + 1] = {false};
    for (unsigned i = 0; i < rd->n_msgs; i++) {
        const struct raft_message *m = &rd->msgs[i];
        struct rfs_buf buf;
        if (sendable_before_sync(s, rd, m) != early) {
            continue;
        }
        if (m->to == 0 || m->to > SERVER_MAX_PEERS || s->peers[m->to] == NULL) {
            continue;
        }
        if (proto_raft_pack(s->cfg.group_id, m, &buf) != 0) {
            continue; /* out of memory: Raft retransmits */
        }
        (void)rpc_peer_send(s->peers[m->to], RAFTFS__FRAME_TYPE__FRAME_RAFT, 0, buf.base, buf.len);
        rfs_free(buf.base);
        sent[m->to] = true;
    }
    /* Early messages leave now, not when the loop flushes after the sync: the followers'
     * log writes then overlap the leader's instead of starting after it. */
    for (unsigned id = 1; early && id <= SERVER_MAX_PEERS; id++) {
        if (sent[id]) {
            rpc_peer_flush(s->peers[id]);
        }
    }
}

static void fail_pending(struct rfs_server *s, int status)
{
    for (size_t i = 0; i < s->n_writes; i++) {
        reply_status(s, s->writes[i].conn_id, s->writes[i].req_id, status, NULL);
        count_request(s, s->writes[i].op, s->writes[i].t0, status);
    }
    s->n_writes = 0;
    for (size_t i = 0; i < s->n_reads; i++) {
        reply_status(s, s->reads[i].conn_id, s->reads[i].req_id, status, NULL);
        count_request(s, s->reads[i].op, s->reads[i].t0, status);
        rfs_free(s->reads[i].cmd);
    }
    s->n_reads = 0;
}

static int apply_committed(struct rfs_server *s, const struct raft_ready *rd)
{
    struct rfs_buf *replies;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    size_t w = 0;
    int rv;
    if (rd->n_committed == 0) {
        return 0;
    }
    replies = rfs_calloc(rd->n_committed, sizeof *replies);
    if (replies == NULL) {
        server_fail(s, RFS_ENOMEM, "apply", "out of memory");
        return RFS_ENOMEM;
    }
    rv = s->cfg.sm_ops->apply(s->cfg.sm, rd->committed, rd->n_committed, replies, errmsg);
    if (rv != 0) {
        server_fail(s, rv, "state machine apply", errmsg);
        goto out;
    }
    /* Answer the clients waiting on these indexes (pending writes are in index order). */
    for (unsigned i = 0; i < rd->n_committed; i++) {
        const struct raft_entry *e = &rd->committed[i];
        while (w < s->n_writes && s->writes[w].index < e->index) {
            w++;
        }
        while (w < s->n_writes && s->writes[w].index == e->index) {
            if (s->writes[w].term == e->term) {
                reply_bytes(s, s->writes[w].conn_id, s->writes[w].req_id, replies[i].base,
                            replies[i].len);
                count_request(s, s->writes[w].op, s->writes[w].t0,
                              packed_reply_status(replies[i].base, replies[i].len));
            } else {
                /* Another leader's entry took this index: the client retries. */
                reply_status(s, s->writes[w].conn_id, s->writes[w].req_id, RFS_ENOTLEADER, NULL);
                count_request(s, s->writes[w].op, s->writes[w].t0, RFS_ENOTLEADER);
            }
            s->writes[w].index = 0; /* answered */
            w++;
        }
    }
    {
        size_t kept = 0;
        raft_index applied = rd->committed[rd->n_committed - 1].index;
        for (size_t i = 0; i < s->n_writes; i++) {
            if (s->writes[i].index > applied) {
                s->writes[kept++] = s->writes[i];
            }
        }
        s->n_writes = kept;
    }
out:
    for (unsigned i = 0; i < rd->n_committed; i++) {
        rfs_free(replies[i].base);
    }
    rfs_free(replies);
    return rv;
}

static void serve_reads(struct rfs_server *s)
{
    raft_index applied = raft_applied_get(s->r);
    size_t kept = 0;
    for (size_t i = 0; i < s->n_reads; i++) {
        struct pending_read *pr = &s->reads[i];
        if (pr->confirmed && pr->index <= applied) {
            struct rfs_buf reply = {NULL, 0};
            char errmsg[RFS_ERRMSG_SIZE] = "";
            int rv = s->cfg.sm_ops->query(s->cfg.sm, pr->cmd, pr->len, &reply, errmsg);
            if (rv == 0) {
                reply_bytes(s, pr->conn_id, pr->req_id, reply.base, reply.len);
                count_request(s, pr->op, pr->t0, packed_reply_status(reply.base, reply.len));
            } else {
                reply_status(s, pr->conn_id, pr->req_id, rv, errmsg);
                count_request(s, pr->op, pr->t0, rv);
                if (rv == RFS_ECORRUPT || rv == RFS_EIO) {
                    /* Damaged storage: stop, so that a healthy replica takes over. */
                    server_fail(s, rv, "query", errmsg);
                }
            }
            rfs_free(reply.base);
            rfs_free(pr->cmd);
        } else {
            s->reads[kept++] = *pr;
        }
    }
    s->n_reads = kept;
}

static void confirm_reads(struct rfs_server *s, const struct raft_ready *rd)
{
    for (unsigned i = 0; i < rd->n_reads; i++) {
        for (size_t j = 0; j < s->n_reads; j++) {
            if (s->reads[j].ctx == rd->reads[i].ctx) {
                s->reads[j].confirmed = true;
                s->reads[j].index = rd->reads[i].index;
                break;
            }
        }
    }
}

/* Entries to keep behind a snapshot at index: keep_entries, but no more than a quarter of
 * snapshot_bytes of them (a follower further behind gets the snapshot). */
static uint64_t keep_behind(const struct rfs_server *s, raft_index index)
{
    uint64_t kept = 0, bytes = 0;
    while (kept < s->cfg.keep_entries && index - kept >= raft_first_index(s->r) && index > kept) {
        const struct raft_entry *e = raft_entry_at(s->r, index - kept);
        if (e == NULL || bytes + e->data.len > s->cfg.snapshot_bytes / 4) {
            break;
        }
        bytes += e->data.len;
        kept++;
    }
    return kept;
}

/* Whether it is time for a snapshot: by entries, or by bytes logged since the last one. */
static bool snapshot_due(struct rfs_server *s, raft_index applied, const struct raft_snapshot *last)
{
    uint64_t bytes_due = s->cfg.snapshot_bytes;
    if (applied >= (last != NULL ? last->meta.index : 0) + s->cfg.snapshot_every) {
        return true;
    }
    if (last != NULL && 2 * (uint64_t)last->data.len > bytes_due) {
        bytes_due = 2 * (uint64_t)last->data.len; /* a large state: not every few MiB */
    }
    if (s->cfg.snapshot_bytes == 0 || applied <= (last != NULL ? last->meta.index : 0)) {
        return false;
    }
    if (s->logged_bytes >= bytes_due) {
        return true;
    }
    /* A compaction point costs one synced write: take one every few seconds once a
     * megabyte or more was logged, so that the log's disk space (a large open segment
     * included, docs/storage.md) comes back soon after a burst of writes, not at the next. */
    if (s->cfg.sm_ops->make_durable != NULL && s->logged_bytes >= (1u << 20) &&
        rpc_now_ms() >= s->last_snapshot_ms + 5000) {
        return true;
    }
    /* The state shrank to under half of a large last snapshot (files deleted): a new, small
     * snapshot gives the old one's disk space back. Checked at most once a second. */
    if (last != NULL && last->data.len >= s->cfg.snapshot_bytes / 4 &&
        s->cfg.sm_ops->size_estimate != NULL && rpc_now_ms() >= s->next_size_check_ms) {
        s->next_size_check_ms = rpc_now_ms() + 1000;
        return 2 * s->cfg.sm_ops->size_estimate(s->cfg.sm) < last->data.len;
    }
    return false;
}

/* Serialise the state at the applied index and hand the bytes to the core (which copies
 * them). Returns 0; or an error, after which the server has failed when the state machine
 * did (the core refusing, RFS_EINVAL or RFS_ENOMEM, leaves it running). */
static int snapshot_with_bytes(struct rfs_server *s, size_t *len)
{
    raft_index applied = raft_applied_get(s->r), index;
    struct rfs_buf data = {NULL, 0};
    char errmsg[RFS_ERRMSG_SIZE] = "";
    int rv = s->cfg.sm_ops->snapshot(s->cfg.sm, &data, &index, errmsg);
    if (rv != 0) {
        server_fail(s, rv, "state machine snapshot", errmsg);
        return rv;
    }
    if (index != applied) {
        rfs_free(data.base);
        server_fail(s, RFS_EIO, "snapshot", "state machine and Raft disagree on applied index");
        return RFS_EIO;
    }
    rv = raft_snapshot_take(s->r, index, data.base, data.len, keep_behind(s, index));
    rfs_free(data.base);
    *len = data.len;
    return rv;
}

/* A follower needs a snapshot and the core holds only a compaction point: serialise the
 * state now, at the applied index, for sending. Kept in memory only: the log store's
 * snapshot stays the compaction point, whose state LevelDB holds. */
static void snapshot_for_followers(struct rfs_server *s)
{
    size_t len = 0;
    int rv;
    if (s->failed || !raft_snapshot_wanted(s->r) || rpc_now_ms() < s->bytes_retry_ms) {
        return;
    }
    rv = snapshot_with_bytes(s, &len);
    if (rv == 0) {
        s->bytes_snapshot_ms = rpc_now_ms();
        rfs_infof("snapshot of %zu bytes at %llu for a follower", len,
                  (unsigned long long)raft_applied_get(s->r));
    } else if (!s->failed) {
        /* The core refused (out of memory): the follower waits; try again in a second
         * rather than serialising the state on every loop iteration. */
        s->bytes_retry_ms = rpc_now_ms() + 1000;
        rfs_warnf("snapshot bytes for a follower: %s; trying again in 1 s", rfs_strerror(rv));
    }
}

/* The compaction point: with make_durable, the state machine syncs what it applied and the
 * snapshot is only an index (no bytes serialised or written: cheap even for a large state);
 * without it, the whole state is serialised and saved. */
static void maybe_snapshot(struct rfs_server *s)
{
    raft_index applied = raft_applied_get(s->r);
    const struct raft_snapshot *last = raft_snapshot_get(s->r);
    raft_index index = applied;
    size_t len = 0;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    int rv;
    if (!snapshot_due(s, applied, last)) {
        return;
    }
    if (s->cfg.sm_ops->make_durable != NULL) {
        /* Bytes made for a follower stay a while, so that a transfer is not restarted by
         * every compaction; not past four times the bytes that make a compaction due,
         * though, or a long transfer under heavy writes would let the log grow unbounded. */
        if (last != NULL && !last->in_sm && rpc_now_ms() < s->bytes_snapshot_ms + 60000 &&
            (s->cfg.snapshot_bytes == 0 || s->logged_bytes < 4 * (uint64_t)s->cfg.snapshot_bytes)) {
            return;
        }
        rv = s->cfg.sm_ops->make_durable(s->cfg.sm, &index, errmsg);
        if (rv == 0 && index != applied) {
            rv = RFS_EIO;
            rfs_errmsg_printf(errmsg, "state machine durable at %llu, Raft applied %llu",
                              (unsigned long long)index, (unsigned long long)applied);
        }
        if (rv != 0) {
            server_fail(s, rv, "making the state machine durable", errmsg);
            return;
        }
        rv = raft_snapshot_take_lazy(s->r, index, keep_behind(s, index));
    } else {
        rv = snapshot_with_bytes(s, &len);
    }
    if (rv != 0) {
        return;
    }
    rv = raft_store_snapshot_save(s->store, raft_snapshot_get(s->r), errmsg);
    if (rv != 0) {
        server_fail(s, rv, "saving snapshot", errmsg);
        return;
    }
    s->snapshots_taken++;
    s->last_snapshot_ms = rpc_now_ms();
    rfs_infof("snapshot at %llu (%zu bytes, %llu bytes logged since the last)",
              (unsigned long long)index, len, (unsigned long long)s->logged_bytes);
    s->logged_bytes = 0;
}

static void before_sleep(void *data)
{
    struct rfs_server *s = data;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    for (int round = 0; round < 16 && !s->failed && raft_has_ready(s->r); round++) {
        struct raft_ready rd;
        int rv;
        raft_ready(s->r, &rd);
        send_messages(s, &rd, true);
        rv = raft_store_persist_ready(s->store, &rd, errmsg);
        if (rv != 0) {
            server_fail(s, rv, "log write", errmsg);
            return; /* nothing that depends on the batch is sent or applied */
        }
        s->durable_term = rd.hard_state.term;
        for (unsigned i = 0; i < rd.n_entries; i++) {
            s->logged_bytes += rd.entries[i].data.len;
        }
        /* Addresses of new members: a follower needs them before it answers a leader it
         * was not started with; the book is saved before the entries are acknowledged. */
        conf_entries_seen(s, rd.entries, rd.n_entries, false, true);
        conf_entries_seen(s, rd.committed, rd.n_committed, true, true);
        book_save(s);
        send_messages(s, &rd, false);
        if (rd.snapshot != NULL) {
            rv = s->cfg.sm_ops->restore(s->cfg.sm, rd.snapshot->meta.index, rd.snapshot->data.base,
                                        rd.snapshot->data.len, errmsg);
            if (rv != 0) {
                server_fail(s, rv, "installing snapshot", errmsg);
                return;
            }
            s->snapshots_installed++;
        }
        if (apply_committed(s, &rd) != 0) {
            return;
        }
        confirm_reads(s, &rd);
        raft_advance(s->r, &rd);
        membership_check(s);
    }
    if (s->failed) {
        return;
    }
    if (raft_error(s->r) != 0) {
        server_fail(s, raft_error(s->r), "raft", "out of memory");
        return;
    }
    if (s->last_role == RAFT_LEADER &&
        (raft_role_get(s->r) != RAFT_LEADER || raft_term_get(s->r) != s->last_term)) {
        /* The core dropped its pending reads; writes may still commit, and a retry with
         * the same session sequence number is answered from the session if they did. */
        rfs_infof("lost leadership: failing %zu writes and %zu reads", s->n_writes, s->n_reads);
        fail_pending(s, RFS_ENOTLEADER);
    }
    s->last_role = raft_role_get(s->r);
    s->last_term = raft_term_get(s->r);
    serve_reads(s);
    maybe_snapshot(s);
    snapshot_for_followers(s);
}

static void on_tick(struct rpc_timer *t, void *data)
{
    struct rfs_server *s = data;
    (void)t;
    catch_up_ticks(s);
    if (!s->failed && s->cfg.sm_ops->housekeep != NULL) {
        char errmsg[RFS_ERRMSG_SIZE] = "";
        int rv = s->cfg.sm_ops->housekeep(s->cfg.sm, errmsg);
        if (rv != 0) {
            server_fail(s, rv, "state machine housekeeping", errmsg);
        }
    }
}

static void raft_log_cb(void *data, int level, const char *msg)
{
    (void)data;
    RFS_LOG((enum rfs_log_level)level, "raft: %s", msg);
}

/* ---- startup ---- */

/* The data directory remembers whose it is, so a server never joins the wrong group with
 * another group's log. */
static int identity_check(struct rfs_server *s, char *errmsg)
{
    char path[600];
    char want[128];
    char have[128];
    FILE *f;
    snprintf(path, sizeof path, "%s/IDENTITY", s->data_dir);
    snprintf(want, sizeof want, "raftfs %s group %llu server %llu\n", s->cfg.role_name,
             (unsigned long long)s->cfg.group_id, (unsigned long long)s->cfg.id);
    f = fopen(path, "r");
    if (f != NULL) {
        size_t n = fread(have, 1, sizeof have - 1, f);
        fclose(f);
        have[n] = '\0';
        if (strcmp(have, want) != 0) {
            have[strcspn(have, "\n")] = '\0';
            rfs_errmsg_printf(errmsg,
                              "data directory %s belongs to another server (%s); use another "
                              "--data directory or the matching --id/--gid",
                              s->data_dir, have);
            return RFS_EINVAL;
        }
        return 0;
    }
    if (errno != ENOENT) {
        rfs_errmsg_printf(errmsg, "cannot read %s: %s", path, strerror(errno));
        return RFS_EIO;
    }
    {
        char tmp[620];
        int fd;
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, want, strlen(want)) != (ssize_t)strlen(want) || fsync(fd) != 0 ||
            close(fd) != 0 || rename(tmp, path) != 0) {
            rfs_errmsg_printf(errmsg, "cannot write %s: %s", path, strerror(errno));
            return RFS_EIO;
        }
    }
    return 0;
}

static int make_dir(const char *path, char *errmsg)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        rfs_errmsg_printf(errmsg, "cannot create data directory %s: %s", path, strerror(errno));
        return RFS_EIO;
    }
    return 0;
}

static int open_raft(struct rfs_server *s, char *errmsg)
{
    struct raft_store_state st;
    struct raft_restore rs;
    struct raft_conf boot;
    struct raft_config rc;
    char dir[600];
    raft_index applied;
    int rv;

    snprintf(dir, sizeof dir, "%s/raft", s->data_dir);
    rv = raft_store_open(&s->store, dir, NULL, 0, errmsg);
    if (rv != 0) {
        if (rv == RFS_EBUSY) {
            rfs_errmsg_wrapf(errmsg, "data directory %s is in use by another process", s->data_dir);
        }
        return rv;
    }
    rv = raft_store_load(s->store, &st, errmsg);
    if (rv != 0) {
        return rv;
    }
    applied = s->cfg.sm_ops->applied(s->cfg.sm);
    if (st.has_snapshot && st.snapshot.in_sm && applied < st.snapshot.meta.index) {
        rfs_errmsg_printf(errmsg,
                          "the state machine is at index %llu but the log was compacted up to "
                          "%llu, whose state only the state machine held: the database in %s "
                          "is missing or older than the log; move the data directory away and "
                          "add this server again to have it copied from the others",
                          (unsigned long long)applied, (unsigned long long)st.snapshot.meta.index,
                          s->data_dir);
        return RFS_ECORRUPT;
    }
    if (st.has_snapshot && applied < st.snapshot.meta.index) {
        rfs_infof("restoring the state machine from the snapshot at %llu",
                  (unsigned long long)st.snapshot.meta.index);
        rv = s->cfg.sm_ops->restore(s->cfg.sm, st.snapshot.meta.index, st.snapshot.data.base,
                                    st.snapshot.data.len, errmsg);
        if (rv != 0) {
            return rv;
        }
        applied = st.snapshot.meta.index;
        raft_store_load(s->store, &st, errmsg);
    }
    if (applied > st.hard_state.commit &&
        applied > (st.has_snapshot ? st.snapshot.meta.index : 0)) {
        raft_index first = st.has_snapshot ? st.snapshot.meta.index + 1 : 1;
        raft_index last = first + st.n_entries - 1;
        if (st.n_entries == 0 || applied > last) {
            rfs_errmsg_printf(errmsg,
                              "the state machine is at index %llu but the Raft log only goes to "
                              "%llu: the log in %s/raft is missing or older than the data",
                              (unsigned long long)applied,
                              (unsigned long long)(st.n_entries > 0 ? last : first - 1),
                              s->data_dir);
            return RFS_ECORRUPT;
        }
        /* Only committed entries are applied, and a server never loses a committed entry
         * it holds: the commit index (written without a sync) was lost, not the log. */
        rfs_infof("commit index %llu raised to the state machine's %llu (a commit record "
                  "was lost, e.g. in a power cut)",
                  (unsigned long long)st.hard_state.commit, (unsigned long long)applied);
        st.hard_state.commit = applied;
    }
    if (!s->cfg.join && st.n_entries == 0 && !st.has_snapshot && st.hard_state.term == 0) {
        rv = server_bootstrap_check(&s->cfg, errmsg); /* about to invent a configuration */
        if (rv != 0) {
            return rv;
        }
    }
    memset(&boot, 0, sizeof boot);
    for (unsigned i = 0; i < s->cfg.n_peers; i++) {
        if (strcmp(s->cfg.peers[i], "-") != 0) {
            boot.voters[boot.n_voters++] = i + 1;
        }
    }
    memset(&rs, 0, sizeof rs);
    rs.hard_state = st.hard_state;
    rs.snapshot = st.has_snapshot ? &st.snapshot : NULL;
    rs.entries = st.entries;
    rs.n_entries = st.n_entries;
    /* A joining server waits to be added; it must not invent a configuration of its own. */
    rs.bootstrap = s->cfg.join ? NULL : &boot;
    rs.applied = applied;
    if (s->cfg.join && st.n_entries == 0 && !st.has_snapshot && st.hard_state.term == 0) {
        rfs_infof("joining: empty data directory, waiting for a leader to add this server "
                  "(raftfs group --group ... add-learner %llu %s)",
                  (unsigned long long)s->cfg.id, s->cfg.peers[s->cfg.id - 1]);
    }
    s->durable_term = st.hard_state.term;

    raft_config_default(&rc, s->cfg.id);
    rc.election_ticks = s->cfg.election_ticks;
    rc.heartbeat_ticks = s->cfg.heartbeat_ticks;
    rc.seed = rpc_now_ms() ^ ((uint64_t)getpid() << 32) ^ s->cfg.id;
    rc.logger.log = raft_log_cb;
    rc.logger.data = s;
    rv = raft_new(&s->r, &rc, &rs, errmsg);
    if (rv != 0) {
        return rv;
    }
    rfs_infof("recovered: term %llu, log %llu..%llu, commit %llu, applied %llu",
              (unsigned long long)raft_term_get(s->r), (unsigned long long)raft_first_index(s->r),
              (unsigned long long)raft_last_index(s->r), (unsigned long long)raft_commit_get(s->r),
              (unsigned long long)raft_applied_get(s->r));
    return 0;
}

/* The address book at start: --peers by position, then DIR/peers, then the addresses in
 * the membership entries of the recovered log (newer than anything compacted away). */
static int book_open(struct rfs_server *s, char *errmsg)
{
    raft_index first = raft_first_index(s->r);
    raft_index last = raft_last_index(s->r);
    int rv;
    snprintf(s->book_path, sizeof s->book_path, "%s/peers", s->data_dir);
    for (unsigned i = 0; i < s->cfg.n_peers; i++) {
        if (server_addr_valid(s->cfg.peers[i], strlen(s->cfg.peers[i]))) {
            snprintf(s->book.addr[i + 1], SERVER_ADDR_MAX, "%s", s->cfg.peers[i]);
        }
    }
    rv = server_addrs_load(&s->learned, s->book_path, errmsg);
    if (rv != 0) {
        return rv;
    }
    for (raft_index i = first; i != 0 && i <= last; i++) {
        const struct raft_entry *e = raft_entry_at(s->r, i);
        if (e != NULL) {
            conf_entries_seen(s, e, 1, i <= raft_commit_get(s->r), false);
        }
    }
    for (raft_id id = 1; id <= SERVER_MAX_PEERS; id++) {
        if (s->learned.addr[id][0] != '\0') {
            memcpy(s->book.addr[id], s->learned.addr[id], SERVER_ADDR_MAX);
        }
    }
    /* This server listens where --peers says, whatever the book learned. */
    snprintf(s->book.addr[s->cfg.id], SERVER_ADDR_MAX, "%s", s->cfg.peers[s->cfg.id - 1]);
    membership_check(s);
    for (raft_id id = 1; id <= SERVER_MAX_PEERS; id++) {
        if (s->book.addr[id][0] != '\0' && id != s->cfg.id &&
            (id > s->cfg.n_peers || strcmp(s->book.addr[id], s->cfg.peers[id - 1]) != 0)) {
            rfs_infof("address book: server %llu is at %s", (unsigned long long)id,
                      s->book.addr[id]);
        }
    }
    return 0;
}

int rfs_server_new(struct rfs_server **out, struct rpc_loop *loop,
                   const struct rfs_server_config *cfg, char *errmsg)
{
    struct rfs_server *s;
    struct rpc_handler h;
    int rv;
    if (cfg->id < 1 || cfg->id > cfg->n_peers || cfg->n_peers > SERVER_MAX_PEERS ||
        cfg->data_dir == NULL || cfg->sm_ops == NULL) {
        rfs_errmsg_printf(errmsg, "server id %llu must be between 1 and the number of peers (%u)",
                          (unsigned long long)cfg->id, cfg->n_peers);
        return RFS_EINVAL;
    }
    if (strcmp(cfg->peers[cfg->id - 1], "-") == 0) {
        rfs_errmsg_printf(errmsg,
                          "--peers has '-' at this server's own position %llu: give its "
                          "HOST:PORT there",
                          (unsigned long long)cfg->id - 1);
        return RFS_EINVAL;
    }
    s = rfs_calloc(1, sizeof *s);
    if (s == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    s->cfg = *cfg;
    s->loop = loop;
    snprintf(s->data_dir, sizeof s->data_dir, "%s", cfg->data_dir);
    s->cfg.data_dir = s->data_dir;
    server_space_init(&s->space, s->data_dir, s->cfg.min_free_mb);
    server_usage_init(&s->usage, s->data_dir, s->cfg.min_free_mb);
    rv = make_dir(s->data_dir, errmsg);
    if (rv == 0) {
        rv = identity_check(s, errmsg);
    }
    if (rv == 0) {
        rv = open_raft(s, errmsg);
    }
    if (rv != 0) {
        goto err;
    }
    memset(&h, 0, sizeof h);
    h.data = s;
    h.known_type = known_type;
    h.on_frame = on_frame;
    h.on_open = on_open;
    h.on_close = on_close;
    rv = rpc_listen(loop, cfg->peers[cfg->id - 1], &h, &s->listener, errmsg);
    if (rv != 0) {
        goto err;
    }
    rv = book_open(s, errmsg);
    if (rv != 0) {
        goto err;
    }
    for (raft_id id = 1; id <= SERVER_MAX_PEERS; id++) {
        rv = peer_connect(s, id, errmsg);
        if (rv != 0 && id <= cfg->n_peers && strcmp(s->book.addr[id], cfg->peers[id - 1]) == 0) {
            goto err; /* a bad --peers entry: the operator can fix it */
        }
        if (rv != 0) {
            /* A learned address that no longer resolves: Raft goes on without that member
             * until a membership change gives it a new address. */
            rfs_warnf("%s (from %s)", errmsg, s->book_path);
            rv = 0;
        }
    }
    s->tick_origin_ms = rpc_now_ms();
    rv = rpc_timer_start(loop, cfg->tick_ms, cfg->tick_ms, on_tick, s, &s->tick);
    if (rv != 0) {
        rfs_errmsg_printf(errmsg, "cannot start the tick timer");
        goto err;
    }
    rpc_loop_set_before_sleep(loop, before_sleep, s);
    *out = s;
    return 0;
err:
    rfs_server_free(s);
    return rv;
}

void rfs_server_free(struct rfs_server *s)
{
    if (s == NULL) {
        return;
    }
    if (s->tick != NULL) {
        rpc_timer_stop(s->tick);
    }
    if (s->loop != NULL) {
        rpc_loop_set_before_sleep(s->loop, NULL, NULL);
    }
    for (unsigned i = 0; i <= SERVER_MAX_PEERS; i++) {
        rpc_peer_free(s->peers[i]);
    }
    if (s->listener != NULL) {
        rpc_listener_close(s->listener);
    }
    for (size_t i = 0; i < s->n_reads; i++) {
        rfs_free(s->reads[i].cmd);
    }
    rfs_free(s->reads);
    rfs_free(s->writes);
    rfs_free(s->conns);
    raft_free(s->r);
    raft_store_close(s->store);
    rfs_free(s);
}
