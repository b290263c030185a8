/* The scripted cluster: real Raft cores, each with an in-memory disk and state machine,
 * joined by a network queue that moves messages only when a command says so.
 *
 * A node's ready batch is handled the way a server must handle it (raft.h): persist the
 * snapshot, entries and hard state to its disk, queue the messages on the network, apply
 * the committed entries to its state machine, then advance. A crash frees the core and
 * keeps only the disk, so a restart shows exactly what persisting bought. */
#include "env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/alloc.h"
#include "../../common/log.h"

/* A harness has no way to carry on without memory; stop loudly. */
static void *xmalloc(size_t len)
{
    void *p = rfs_malloc(len ? len : 1);
    if (p == NULL) {
        fprintf(stderr, "raftfs-interact: out of memory\n");
        exit(2);
    }
    return p;
}

static void *xrealloc(void *p, size_t len)
{
    p = rfs_realloc(p, len ? len : 1);
    if (p == NULL) {
        fprintf(stderr, "raftfs-interact: out of memory\n");
        exit(2);
    }
    return p;
}

static struct rfs_buf buf_copy(const void *data, size_t len)
{
    struct rfs_buf b = {NULL, len};
    if (len > 0) {
        b.base = xmalloc(len);
        memcpy(b.base, data, len);
    }
    return b;
}

static const char *level_name(int level)
{
    switch (level) {
        case RFS_LOG_ERROR:
            return "ERROR";
        case RFS_LOG_WARN:
            return "WARN";
        case RFS_LOG_INFO:
            return "INFO";
        case RFS_LOG_DEBUG:
            return "DEBUG";
        default:
            return "TRACE";
    }
}

/* Core log lines go into the transcript of the running command. */
static void node_log(void *data, int level, const char *msg)
{
    struct env_node *n = data;
    struct interact_env *env = n->env;
    if (level <= RFS_LOG_INFO) {
        env->info_lines++;
    }
    if (level > env->level || env->out == NULL) {
        return;
    }
    interact_outf(env->out, "%*s%s %s\n", env->indent, "", level_name(level), msg);
}

struct env_node *env_node_get(struct interact_env *env, raft_id id)
{
    if (id == 0 || id > env->n_nodes) {
        return NULL;
    }
    return &env->nodes[id - 1];
}

/* ---- disk ---- */

static raft_index disk_first(const struct env_disk *d)
{
    return d->has_snap ? d->snap.meta.index + 1 : 1;
}

raft_index env_disk_last(const struct env_disk *d)
{
    return disk_first(d) + d->n_ents - 1;
}

static raft_term disk_term(const struct env_disk *d, raft_index i)
{
    if (d->has_snap && i == d->snap.meta.index) {
        return d->snap.meta.term;
    }
    if (i < disk_first(d) || i > env_disk_last(d)) {
        return 0;
    }
    return d->ents[i - disk_first(d)].term;
}

/* Drop stored entries from index `from` on. */
static void disk_truncate(struct env_disk *d, raft_index from)
{
    while (d->n_ents > 0 && env_disk_last(d) >= from) {
        d->n_ents--;
        rfs_free(d->ents[d->n_ents].data.base);
    }
}

/* Drop the first k stored entries. */
static void disk_drop_front(struct env_disk *d, unsigned k)
{
    for (unsigned i = 0; i < k; i++) {
        rfs_free(d->ents[i].data.base);
    }
    memmove(d->ents, d->ents + k, (d->n_ents - k) * sizeof *d->ents);
    d->n_ents -= k;
}

/* Store a snapshot; keep the entries after it only if the stored log matches it. */
void env_disk_set_snapshot(struct env_disk *d, const struct raft_snapshot *snap)
{
    raft_index idx = snap->meta.index;
    if (disk_term(d, idx) == snap->meta.term && idx >= disk_first(d) - 1) {
        disk_drop_front(d, (unsigned)(idx - disk_first(d) + 1));
    } else {
        disk_truncate(d, 0);
    }
    rfs_free(d->snap.data.base);
    d->snap.meta = snap->meta;
    d->snap.data = buf_copy(snap->data.base, snap->data.len);
    d->snap.in_sm = snap->in_sm;
    d->has_snap = true;
}

static void disk_append(struct interact_env *env, struct env_disk *d, const struct raft_entry *ents,
                        unsigned n)
{
    if (n == 0) {
        return;
    }
    if (ents[0].index < disk_first(d) || ents[0].index > env_disk_last(d) + 1) {
        interact_outf(env->out, "  error: entries from %llu do not fit the disk log %llu..%llu\n",
                      (unsigned long long)ents[0].index, (unsigned long long)disk_first(d),
                      (unsigned long long)env_disk_last(d));
        return;
    }
    disk_truncate(d, ents[0].index);
    if (d->n_ents + n > d->cap_ents) {
        d->cap_ents = (d->n_ents + n) * 2;
        d->ents = xrealloc(d->ents, d->cap_ents * sizeof *d->ents);
    }
    for (unsigned i = 0; i < n; i++) {
        struct raft_entry *e = &d->ents[d->n_ents++];
        *e = ents[i];
        e->data = buf_copy(ents[i].data.base, ents[i].data.len);
    }
}

static void disk_close(struct env_disk *d)
{
    disk_truncate(d, 0);
    rfs_free(d->ents);
    rfs_free(d->snap.data.base);
    memset(d, 0, sizeof *d);
}

void env_print_disk(struct interact_env *env, const struct env_node *n)
{
    const struct env_disk *d = &n->disk;
    interact_outf(env->out, "%llu: hardstate term=%llu vote=%llu commit=%llu\n",
                  (unsigned long long)n->id, (unsigned long long)d->hs.term,
                  (unsigned long long)d->hs.vote, (unsigned long long)d->hs.commit);
    if (d->has_snap) {
        interact_outf(env->out, "  snapshot %llu/%llu ", (unsigned long long)d->snap.meta.term,
                      (unsigned long long)d->snap.meta.index);
        interact_fmt_conf(env->out, &d->snap.meta.conf);
        interact_outf(env->out, " data=\"");
        interact_fmt_bytes(env->out, d->snap.data.base, d->snap.data.len);
        interact_outf(env->out, "\"\n");
    }
    for (unsigned i = 0; i < d->n_ents; i++) {
        interact_outf(env->out, "  ");
        interact_fmt_entry(env->out, &d->ents[i]);
        interact_outf(env->out, "\n");
    }
}

/* ---- state machine ---- */

static void sm_reset(struct env_sm *sm, const struct raft_snapshot *snap)
{
    for (unsigned i = 0; i < sm->n_items; i++) {
        rfs_free(sm->items[i].data.base);
    }
    sm->n_items = 0;
    rfs_free(sm->base.base);
    sm->base.base = NULL;
    sm->base.len = 0;
    sm->base_index = 0;
    sm->applied = 0;
    if (snap != NULL) {
        sm->base = buf_copy(snap->data.base, snap->data.len);
        sm->base_index = snap->meta.index;
        sm->applied = snap->meta.index;
    }
}

static void sm_close(struct env_sm *sm)
{
    sm_reset(sm, NULL);
    rfs_free(sm->items);
    memset(sm, 0, sizeof *sm);
}

static void sm_apply(struct env_sm *sm, const struct raft_entry *e)
{
    sm->applied = e->index;
    if (e->type != RAFT_ENTRY_NORMAL) {
        return; /* the core acts on CONF entries itself; NOOPs carry nothing */
    }
    if (sm->n_items == sm->cap_items) {
        sm->cap_items = sm->cap_items ? sm->cap_items * 2 : 16;
        sm->items = xrealloc(sm->items, sm->cap_items * sizeof *sm->items);
    }
    sm->items[sm->n_items].index = e->index;
    sm->items[sm->n_items].data = buf_copy(e->data.base, e->data.len);
    sm->n_items++;
}

int env_sm_blob(const struct env_sm *sm, raft_index index, struct rfs_buf *out)
{
    size_t len = sm->base.len;
    char *p;
    if (index < sm->base_index || index > sm->applied) {
        return RFS_EINVAL;
    }
    for (unsigned i = 0; i < sm->n_items && sm->items[i].index <= index; i++) {
        len += sm->items[i].data.len + 1;
    }
    p = xmalloc(len);
    out->base = p;
    out->len = 0;
    if (sm->base.len > 0) {
        memcpy(p, sm->base.base, sm->base.len);
    }
    out->len = sm->base.len;
    for (unsigned i = 0; i < sm->n_items && sm->items[i].index <= index; i++) {
        if (out->len > 0) {
            p[out->len++] = ',';
        }
        memcpy(p + out->len, sm->items[i].data.base, sm->items[i].data.len);
        out->len += sm->items[i].data.len;
    }
    return 0;
}

/* ---- nodes ---- */

int env_node_start(struct env_node *n)
{
    struct interact_env *env = n->env;
    struct raft_restore rs;
    bool empty =
        !n->has_bootstrap && !n->disk.has_snap && n->disk.n_ents == 0 && n->disk.hs.term == 0;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    int rv;

    memset(&rs, 0, sizeof rs);
    rs.hard_state = n->disk.hs;
    rs.snapshot = n->disk.has_snap ? &n->disk.snap : NULL;
    rs.entries = n->disk.ents;
    rs.n_entries = n->disk.n_ents;
    rs.bootstrap = n->has_bootstrap ? &n->bootstrap : NULL;
    n->cfg.logger.data = n;
    n->cfg.logger.log = node_log;
    /* A server that never stored anything starts with no restore at all (raft.h). */
    rv = raft_new(&n->r, &n->cfg, empty ? NULL : &rs, errmsg);
    if (rv != 0) {
        n->r = NULL;
        interact_outf(env->out, "error: %s: %s\n", rfs_strerror(rv), errmsg);
        return rv;
    }
    sm_reset(&n->sm, rs.snapshot);
    return 0;
}

void env_node_crash(struct env_node *n)
{
    raft_free(n->r);
    n->r = NULL;
}

/* ---- network ---- */

static void msg_free(struct raft_message *m)
{
    for (unsigned i = 0; i < m->n_entries; i++) {
        rfs_free(m->entries[i].data.base);
    }
    rfs_free(m->entries);
    rfs_free(m->data.base);
}

static void net_push(struct interact_env *env, const struct raft_message *m)
{
    struct raft_message *c;
    if (env->n_net == env->cap_net) {
        env->cap_net = env->cap_net ? env->cap_net * 2 : 64;
        env->net = xrealloc(env->net, env->cap_net * sizeof *env->net);
    }
    c = &env->net[env->n_net++];
    *c = *m;
    c->data = buf_copy(m->data.base, m->data.len);
    c->entries = NULL;
    if (m->n_entries > 0) {
        c->entries = xmalloc(m->n_entries * sizeof *c->entries);
        for (unsigned i = 0; i < m->n_entries; i++) {
            c->entries[i] = m->entries[i];
            c->entries[i].data = buf_copy(m->entries[i].data.base, m->entries[i].data.len);
        }
    }
}

bool env_has_msgs_to(const struct interact_env *env, raft_id to)
{
    for (unsigned i = 0; i < env->n_net; i++) {
        if (env->net[i].to == to) {
            return true;
        }
    }
    return false;
}

/* Why m cannot be delivered now, or NULL. */
static const char *undeliverable(struct interact_env *env, const struct raft_message *m)
{
    struct env_node *to = env_node_get(env, m->to);
    struct env_node *from = env_node_get(env, m->from);
    if (to == NULL) {
        return "no such node";
    }
    if (to->isolated || (from != NULL && from->isolated)) {
        return "partitioned";
    }
    if (to->r == NULL) {
        return "node down";
    }
    return NULL;
}

bool env_deliver(struct interact_env *env, raft_id to, bool drop)
{
    struct raft_message *msgs;
    unsigned n = 0;
    unsigned kept = 0;
    /* Take the messages out first: a crash or restart cannot happen mid-delivery, and
     * stepping only fills the core's outbox, so the queue does not change under us. */
    for (unsigned i = 0; i < env->n_net; i++) {
        if (env->net[i].to == to) {
            n++;
        }
    }
    if (n == 0) {
        return false;
    }
    msgs = xmalloc(n * sizeof *msgs);
    n = 0;
    for (unsigned i = 0; i < env->n_net; i++) {
        if (env->net[i].to == to) {
            msgs[n++] = env->net[i];
        } else {
            env->net[kept++] = env->net[i];
        }
    }
    env->n_net = kept;
    if (!drop) {
        interact_outf(env->out, "> %llu receiving messages\n", (unsigned long long)to);
    }
    for (unsigned i = 0; i < n; i++) {
        const char *why = drop ? "dropped" : undeliverable(env, &msgs[i]);
        if (drop) {
            interact_outf(env->out, "dropped: ");
        } else {
            interact_outf(env->out, "  ");
        }
        interact_fmt_msg(env->out, &msgs[i]);
        if (why != NULL && !drop) {
            interact_outf(env->out, " DROPPED (%s)", why);
        }
        interact_outf(env->out, "\n");
        if (why == NULL) {
            env->indent = 4;
            raft_step(env_node_get(env, to)->r, &msgs[i]);
            env->indent = 0;
        }
        msg_free(&msgs[i]);
    }
    rfs_free(msgs);
    return true;
}

/* ---- ready ---- */

void env_process_ready(struct interact_env *env, struct env_node *n)
{
    struct raft_ready rd;
    struct interact_out *o = env->out;

    interact_outf(o, "> %llu handling ready\n", (unsigned long long)n->id);
    if (n->r == NULL) {
        interact_outf(o, "  node down\n");
        return;
    }
    if (!raft_has_ready(n->r)) {
        interact_outf(o, "  nothing to do\n");
        return;
    }
    env->indent = 2;
    raft_ready(n->r, &rd);

    /* 1. Persist: snapshot, entries, hard state (one sync in a real server). */
    if (rd.snapshot != NULL) {
        interact_outf(o, "  persist snapshot %llu/%llu ",
                      (unsigned long long)rd.snapshot->meta.term,
                      (unsigned long long)rd.snapshot->meta.index);
        interact_fmt_conf(o, &rd.snapshot->meta.conf);
        interact_outf(o, " data=\"");
        interact_fmt_bytes(o, rd.snapshot->data.base, rd.snapshot->data.len);
        interact_outf(o, "\"\n");
        env_disk_set_snapshot(&n->disk, rd.snapshot);
    }
    for (unsigned i = 0; i < rd.n_entries; i++) {
        interact_outf(o, "  persist ");
        interact_fmt_entry(o, &rd.entries[i]);
        interact_outf(o, "\n");
    }
    disk_append(env, &n->disk, rd.entries, rd.n_entries);
    if (rd.has_hard_state) {
        interact_outf(o, "  persist hardstate term=%llu vote=%llu commit=%llu\n",
                      (unsigned long long)rd.hard_state.term,
                      (unsigned long long)rd.hard_state.vote,
                      (unsigned long long)rd.hard_state.commit);
        n->disk.hs = rd.hard_state;
    }

    /* 2. Send. */
    for (unsigned i = 0; i < rd.n_msgs; i++) {
        interact_outf(o, "  send ");
        interact_fmt_msg(o, &rd.msgs[i]);
        interact_outf(o, "\n");
        net_push(env, &rd.msgs[i]);
    }

    /* 3. Apply. */
    if (rd.snapshot != NULL) {
        interact_outf(o, "  restore state machine from snapshot %llu/%llu\n",
                      (unsigned long long)rd.snapshot->meta.term,
                      (unsigned long long)rd.snapshot->meta.index);
        sm_reset(&n->sm, rd.snapshot);
    }
    for (unsigned i = 0; i < rd.n_committed; i++) {
        if (rd.committed[i].index != n->sm.applied + 1) {
            interact_outf(o, "  error: applying %llu after %llu\n",
                          (unsigned long long)rd.committed[i].index,
                          (unsigned long long)n->sm.applied);
        }
        interact_outf(o, "  apply ");
        interact_fmt_entry(o, &rd.committed[i]);
        interact_outf(o, "\n");
        sm_apply(&n->sm, &rd.committed[i]);
    }
    for (unsigned i = 0; i < rd.n_reads; i++) {
        interact_outf(o, "  read ctx=%llu index=%llu\n", (unsigned long long)rd.reads[i].ctx,
                      (unsigned long long)rd.reads[i].index);
    }

    /* 4. Advance. */
    raft_advance(n->r, &rd);
    env->indent = 0;
}

/* ---- the environment ---- */

struct interact_env *interact_env_new(void)
{
    struct interact_env *env = rfs_calloc(1, sizeof *env);
    if (env == NULL) {
        return NULL;
    }
    env->level = RFS_LOG_INFO;
    return env;
}

void interact_env_free(struct interact_env *env)
{
    if (env == NULL) {
        return;
    }
    for (unsigned i = 0; i < env->n_nodes; i++) {
        struct env_node *n = &env->nodes[i];
        raft_free(n->r);
        disk_close(&n->disk);
        sm_close(&n->sm);
    }
    for (unsigned i = 0; i < env->n_net; i++) {
        msg_free(&env->net[i]);
    }
    rfs_free(env->net);
    rfs_free(env);
}
