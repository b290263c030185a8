/* libFuzzer target: the payload of a FRAME_RAFT frame, as a shard server handles it.
 *
 * The bytes go through proto_raft_unpack() exactly as server.c's handle_raft() passes them.
 * A message that decodes is then stepped into a Raft core (server 1 of the group {1, 2, 3},
 * restored from a snapshot at index 3 plus entries 4..7, term 3) three times, with the
 * ready/advance cycle and a tick in between, once with the core as a follower, once as a
 * pre-candidate and once as the leader of term 4. Like the server, the harness delivers only
 * messages addressed to this server from a server id within the group's range (1..16), so
 * `to` is forced to 1 and an out-of-range `from` is folded into it.
 *
 * Nothing may crash, trip an assertion or a sanitizer, and the core's log invariants
 * (applied <= commit <= last index) must hold after every step. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "proto/proto.h"
#include "raft/raft.h"

#define ME       1
#define N_VOTERS 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static void die(const char *what, const struct raft *r)
{
    fprintf(stderr,
            "fuzz_raft_msg: %s (role %s, term %llu, first %llu, last %llu, commit %llu, "
            "applied %llu)\n",
            what, raft_role_name(raft_role_get(r)), (unsigned long long)raft_term_get(r),
            (unsigned long long)raft_first_index(r), (unsigned long long)raft_last_index(r),
            (unsigned long long)raft_commit_get(r), (unsigned long long)raft_applied_get(r));
    abort();
}

static void check(const struct raft *r)
{
    if (raft_applied_get(r) > raft_commit_get(r)) {
        die("applied index beyond the commit index", r);
    }
    if (raft_commit_get(r) > raft_last_index(r)) {
        die("commit index beyond the last entry", r);
    }
    if (raft_first_index(r) > raft_last_index(r) + 1) {
        die("first index beyond last + 1", r);
    }
}

/* Walk every part of a ready batch the way a server does (persist, send, apply), so a
 * dangling pointer in it shows up under ASan. */
static uint64_t touch(const struct rfs_buf *b)
{
    uint64_t sum = b->len;
    for (size_t i = 0; i < b->len; i++) {
        sum += ((const unsigned char *)b->base)[i];
    }
    return sum;
}

static uint64_t ready_walk(const struct raft_ready *rd)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < rd->n_entries; i++) {
        sum += rd->entries[i].index + touch(&rd->entries[i].data);
    }
    for (unsigned i = 0; i < rd->n_msgs; i++) {
        const struct raft_message *m = &rd->msgs[i];
        sum += m->type + touch(&m->data);
        for (unsigned j = 0; j < m->n_entries; j++) {
            sum += m->entries[j].index + touch(&m->entries[j].data);
        }
    }
    for (unsigned i = 0; i < rd->n_committed; i++) {
        sum += rd->committed[i].index + touch(&rd->committed[i].data);
    }
    if (rd->snapshot != NULL) {
        sum += touch(&rd->snapshot->data);
    }
    return sum;
}

/* Keeps ready_walk() from being optimised away. */
static volatile uint64_t sink;

/* Run ready/advance until the core has nothing more (bounded). Vote requests it sends are
 * granted by their target when `grant` is set, as in an election that succeeds. */
static void drain(struct raft *r, bool grant)
{
    for (int round = 0; round < 8 && raft_has_ready(r); round++) {
        struct raft_message votes[N_VOTERS];
        unsigned n_votes = 0;
        struct raft_ready rd;
        raft_ready(r, &rd);
        sink += ready_walk(&rd);
        for (unsigned i = 0; i < rd.n_msgs && grant; i++) {
            const struct raft_message *m = &rd.msgs[i];
            if ((m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) && n_votes < N_VOTERS) {
                struct raft_message *v = &votes[n_votes++];
                memset(v, 0, sizeof *v);
                v->type = m->type == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP : RAFT_MSG_PREVOTE_RESP;
                v->from = m->to;
                v->to = ME;
                v->term = m->term;
            }
        }
        raft_advance(r, &rd);
        check(r);
        for (unsigned i = 0; i < n_votes; i++) {
            raft_step(r, &votes[i]);
            check(r);
        }
    }
}

enum setup { SETUP_FOLLOWER, SETUP_PRE_CANDIDATE, SETUP_LEADER, SETUP_COUNT };

static struct raft *core_new(enum setup setup)
{
    static const raft_term terms[] = {2, 2, 3, 3};
    static char snap_data[] = "state machine at 3";
    static char cmd[] = "cmd";
    struct raft_snapshot snap;
    struct raft_entry ents[4];
    struct raft_restore rs;
    struct raft_config cfg;
    struct raft *r;
    char errmsg[RFS_ERRMSG_SIZE];

    memset(&snap, 0, sizeof snap);
    snap.meta.index = 3;
    snap.meta.term = 1;
    for (unsigned i = 0; i < N_VOTERS; i++) {
        snap.meta.conf.voters[snap.meta.conf.n_voters++] = i + 1;
    }
    snap.data.base = snap_data;
    snap.data.len = strlen(snap_data);
    for (unsigned i = 0; i < 4; i++) {
        ents[i].index = 4 + i;
        ents[i].term = terms[i];
        ents[i].type = RAFT_ENTRY_NORMAL;
        ents[i].data.base = cmd;
        ents[i].data.len = strlen(cmd);
    }
    memset(&rs, 0, sizeof rs);
    rs.hard_state.term = 3;
    rs.hard_state.commit = 5;
    rs.snapshot = &snap;
    rs.entries = ents;
    rs.n_entries = 4;
    rs.applied = 4;

    raft_config_default(&cfg, ME);
    cfg.election_ticks = 10;
    cfg.heartbeat_ticks = 2;
    cfg.max_msg_bytes = 64; /* small, so appends get split */
    cfg.snapshot_chunk = 8; /* small, so snapshots go in several chunks */
    cfg.seed = 1;
    if (raft_new(&r, &cfg, &rs, errmsg) != 0) {
        fprintf(stderr, "fuzz_raft_msg: raft_new: %s\n", errmsg);
        abort();
    }
    drain(r, false);
    if (setup == SETUP_FOLLOWER) {
        return r;
    }
    raft_campaign(r);
    drain(r, setup == SETUP_LEADER);
    if (setup == SETUP_LEADER && raft_role_get(r) != RAFT_LEADER) {
        die("the harness failed to elect the core", r);
    }
    if (setup == SETUP_PRE_CANDIDATE && raft_role_get(r) != RAFT_PRE_CANDIDATE) {
        die("the harness failed to make the core a pre-candidate", r);
    }
    return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rfs_log_set_level(RFS_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_raft_msg pm;
    char errmsg[RFS_ERRMSG_SIZE];
    struct raft_message m;

    if (proto_raft_unpack(data, size, &pm, errmsg) != 0) {
        return 0;
    }
    m = pm.m;
    m.to = ME;
    if (m.from > RAFT_MAX_NODES) {
        m.from = 1 + m.from % RAFT_MAX_NODES;
    }
    for (int setup = 0; setup < SETUP_COUNT; setup++) {
        struct raft *r = core_new((enum setup)setup);
        for (int i = 0; i < 3; i++) {
            raft_step(r, &m);
            check(r);
            drain(r, false);
            raft_tick(r);
            check(r);
            drain(r, false);
        }
        if (raft_role_get(r) == RAFT_LEADER) {
            raft_index index;
            (void)raft_propose(r, "after", 5, &index);
            drain(r, false);
        }
        raft_free(r);
    }
    proto_raft_msg_free(&pm);
    return 0;
}
