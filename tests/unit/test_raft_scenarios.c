/* Named Raft scenarios on the deterministic simulation, after the MIT 6.824 Raft labs
 * (2A-2D) plus PreVote, CheckQuorum, ReadIndex, leadership transfer and membership.
 * Every step of every scenario also runs the simulation's safety invariants. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "tests/sim/sim.h"

#define ELECTION_MS 1000 /* well above the 100-200 ms election timeout */

struct fixture {
    struct sim *s;
    unsigned long counter;
};

static uint64_t test_seed(void)
{
    const char *env = getenv("RAFTFS_SEED");
    return env ? strtoull(env, NULL, 10) : 42;
}

static struct fixture *fixture_new(void **state, unsigned voters, unsigned spare,
                                   unsigned compact_every)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct sim_options o;
    sim_options_default(&o, voters);
    o.n_spare = spare;
    o.compact_every = compact_every;
    f->s = sim_new(&o, test_seed());
    *state = f;
    return f;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f != NULL) {
        sim_free(f->s);
        free(f);
    }
    return 0;
}

static void check_ok(struct fixture *f)
{
    const char *v = sim_violation(f->s);
    if (v != NULL) {
        fail_msg("invariant violated (seed %llu): %s", (unsigned long long)test_seed(), v);
    }
}

/* Agree on a fresh value on at least n servers; returns its index. */
static raft_index one(struct fixture *f, unsigned n)
{
    char v[64];
    raft_index idx;
    snprintf(v, sizeof v, "cmd-%lu", ++f->counter);
    idx = sim_one(f->s, v, n, 10000);
    check_ok(f);
    if (idx == 0) {
        fail_msg("no agreement on %s among %u servers", v, n);
    }
    return idx;
}

static void converge(struct fixture *f)
{
    if (sim_converge(f->s, 20000) != 0) {
        fail_msg("seed %llu: %s", (unsigned long long)test_seed(), sim_violation(f->s));
    }
}

/* 2A */

static void test_initial_election_elects_one_leader_and_keeps_it(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    raft_term t;
    assert_int_not_equal(l, 0);
    t = raft_term_get(sim_raft(f->s, l));
    sim_run(f->s, 3000);
    check_ok(f);
    assert_int_equal(sim_leader(f->s), l);
    assert_int_equal(raft_term_get(sim_raft(f->s, l)), t);
    assert_int_equal(sim_count_leaders(f->s), 1);
}

static void test_reelection_after_leader_disconnects(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l1 = sim_wait_leader(f->s, ELECTION_MS);
    raft_id l2;
    raft_id l3;
    sim_disconnect(f->s, l1);
    sim_run(f->s, ELECTION_MS);
    l2 = sim_leader(f->s);
    assert_int_not_equal(l2, l1);
    assert_int_not_equal(l2, 0);
    /* The old leader rejoins: still one leader that the majority follows. */
    sim_connect(f->s, l1);
    sim_run(f->s, ELECTION_MS);
    assert_int_equal(sim_count_leaders(f->s), 1);
    /* No quorum: no leader. */
    l3 = sim_leader(f->s);
    sim_disconnect(f->s, l3);
    sim_disconnect(f->s, l3 % 3 + 1);
    sim_run(f->s, 2 * ELECTION_MS);
    for (raft_id i = 1; i <= 3; i++) {
        if (i != l3) {
            assert_int_not_equal(raft_role_get(sim_raft(f->s, i)), RAFT_LEADER);
        }
    }
    sim_heal(f->s);
    assert_int_not_equal(sim_wait_leader(f->s, ELECTION_MS), 0);
    check_ok(f);
}

static void test_many_elections_with_random_disconnects(void **state)
{
    struct fixture *f = fixture_new(state, 7, 0, 0);
    for (int iter = 0; iter < 10; iter++) {
        raft_id a = 1 + (raft_id)(iter * 3) % 7;
        raft_id b = 1 + (raft_id)(iter * 5 + 1) % 7;
        raft_id c = 1 + (raft_id)(iter * 2 + 3) % 7;
        sim_disconnect(f->s, a);
        sim_disconnect(f->s, b);
        sim_disconnect(f->s, c);
        assert_int_not_equal(sim_wait_leader(f->s, 3 * ELECTION_MS), 0);
        sim_heal(f->s);
    }
    assert_int_not_equal(sim_wait_leader(f->s, ELECTION_MS), 0);
    check_ok(f);
}

/* 2B */

static void test_basic_agreement_on_consecutive_indexes(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_index prev;
    sim_wait_leader(f->s, ELECTION_MS);
    prev = one(f, 3);
    for (int i = 0; i < 5; i++) {
        raft_index idx = one(f, 3);
        assert_int_equal(idx, prev + 1);
        prev = idx;
    }
    converge(f);
}

static void test_agreement_continues_without_one_follower(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    raft_id down = l % 3 + 1;
    one(f, 3);
    sim_disconnect(f->s, down);
    one(f, 2);
    one(f, 2);
    sim_connect(f->s, down);
    one(f, 3);
    converge(f);
}

static void test_no_agreement_without_majority(void **state)
{
    struct fixture *f = fixture_new(state, 5, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    raft_index idx;
    raft_index c0;
    one(f, 5);
    for (raft_id i = 1, n = 0; i <= 5 && n < 3; i++) {
        if (i != l) {
            sim_disconnect(f->s, i);
            n++;
        }
    }
    c0 = raft_commit_get(sim_raft(f->s, l));
    assert_int_equal(sim_propose(f->s, l, "lonely", &idx), 0);
    sim_run(f->s, 2 * ELECTION_MS);
    assert_true(sim_n_applied(f->s, idx, NULL, 0) == 0);
    assert_true(raft_commit_get(sim_raft(f->s, l)) == c0 ||
                raft_role_get(sim_raft(f->s, l)) != RAFT_LEADER);
    sim_heal(f->s);
    one(f, 5);
    converge(f);
}

static void test_concurrent_proposals_get_distinct_indexes(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    raft_index idx[5];
    char v[16];
    for (int i = 0; i < 5; i++) {
        snprintf(v, sizeof v, "c%d", i);
        assert_int_equal(sim_propose(f->s, l, v, &idx[i]), 0);
        if (i > 0) {
            assert_int_equal(idx[i], idx[i - 1] + 1);
        }
    }
    sim_run(f->s, 500);
    for (int i = 0; i < 5; i++) {
        char got[16];
        snprintf(v, sizeof v, "c%d", i);
        assert_int_equal(sim_n_applied(f->s, idx[i], got, sizeof got), 3);
        assert_string_equal(got, v);
        assert_true(sim_acked(f->s, v));
    }
    converge(f);
}

static void test_partitioned_leader_rejoins_and_is_overwritten(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l1 = sim_wait_leader(f->s, ELECTION_MS);
    raft_id l2;
    one(f, 3);
    sim_disconnect(f->s, l1);
    (void)sim_propose(f->s, l1, "stale-1", NULL);
    (void)sim_propose(f->s, l1, "stale-2", NULL);
    one(f, 2);
    l2 = sim_wait_leader(f->s, ELECTION_MS);
    assert_int_not_equal(l2, l1);
    sim_disconnect(f->s, l2);
    sim_connect(f->s, l1);
    one(f, 2);
    sim_connect(f->s, l2);
    one(f, 3);
    assert_false(sim_acked(f->s, "stale-1"));
    converge(f);
}

static void test_backup_skips_divergent_log_quickly(void **state)
{
    struct fixture *f = fixture_new(state, 5, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    raft_id other = l % 5 + 1;
    char v[32];
    unsigned long msgs0;
    one(f, 5);
    /* Leader and one follower alone: 50 entries that never commit. */
    sim_partition(f->s, (1u << l) | (1u << other));
    for (int i = 0; i < 50; i++) {
        snprintf(v, sizeof v, "lost-%d", i);
        (void)sim_propose(f->s, l, v, NULL);
    }
    sim_run(f->s, ELECTION_MS);
    /* The other three commit 50 of their own. */
    assert_int_not_equal(sim_wait_leader(f->s, ELECTION_MS), 0);
    for (int i = 0; i < 50; i++) {
        snprintf(v, sizeof v, "won-%d", i);
        assert_int_equal(sim_propose(f->s, sim_leader(f->s), v, NULL), 0);
    }
    sim_run(f->s, 500);
    msgs0 = sim_msgs_sent(f->s);
    sim_heal(f->s);
    one(f, 5);
    /* Fast backtracking: a few round trips, not one per entry. */
    assert_true(sim_msgs_sent(f->s) - msgs0 < 600);
    for (int i = 0; i < 50; i++) {
        snprintf(v, sizeof v, "won-%d", i);
        assert_true(sim_acked(f->s, v));
    }
    converge(f);
}

static void test_message_counts_stay_small(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    unsigned long m0;
    sim_wait_leader(f->s, ELECTION_MS);
    sim_run(f->s, 200);
    assert_true(sim_msgs_sent(f->s) < 120);
    m0 = sim_msgs_sent(f->s);
    for (int i = 0; i < 10; i++) {
        one(f, 3);
    }
    /* Each agreement: append + reply per follower, commit notice, heartbeats meanwhile. */
    assert_true(sim_msgs_sent(f->s) - m0 < 10 * 20);
    m0 = sim_msgs_sent(f->s);
    sim_run(f->s, 1000); /* idle: heartbeats only, 100 ticks x 2 followers x 2 */
    assert_true(sim_msgs_sent(f->s) - m0 <= 4 * 100 + 8);
    check_ok(f);
}

/* 2C */

static void test_persistence_across_full_restart(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_index a;
    raft_index b;
    sim_wait_leader(f->s, ELECTION_MS);
    a = one(f, 3);
    for (raft_id i = 1; i <= 3; i++) {
        sim_crash(f->s, i);
    }
    for (raft_id i = 1; i <= 3; i++) {
        sim_restart(f->s, i);
    }
    b = one(f, 3);
    assert_true(b > a);
    /* Leader crash and restart. */
    sim_crash(f->s, sim_wait_leader(f->s, ELECTION_MS));
    one(f, 2);
    for (raft_id i = 1; i <= 3; i++) {
        sim_restart(f->s, i);
    }
    one(f, 3);
    converge(f);
}

static void test_persistence_of_uncommitted_partition_history(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    for (int iter = 0; iter < 5; iter++) {
        raft_id l = sim_wait_leader(f->s, ELECTION_MS);
        raft_id a = l % 3 + 1;
        raft_id b = a % 3 + 1;
        one(f, 3);
        sim_crash(f->s, a);
        one(f, 2);
        sim_crash(f->s, l);
        sim_crash(f->s, b);
        sim_restart(f->s, a);
        sim_restart(f->s, b);
        one(f, 2);
        sim_restart(f->s, l);
    }
    one(f, 3);
    converge(f);
}

static void test_figure8_old_term_entries_not_committed_by_count(void **state)
{
    struct fixture *f = fixture_new(state, 5, 0, 0);
    unsigned up = 5;
    one(f, 1);
    for (int iter = 0; iter < 300; iter++) {
        raft_id l = 0;
        char v[32];
        for (raft_id i = 1; i <= 5; i++) {
            snprintf(v, sizeof v, "f8-%d-%llu", iter, (unsigned long long)i);
            if (sim_is_up(f->s, i) && sim_propose(f->s, i, v, NULL) == 0) {
                l = i;
            }
        }
        sim_run(f->s, (iter * 37) % 10 == 0 ? 500 : 13);
        if (l != 0 && (iter % 3) == 0) {
            sim_crash(f->s, l);
            up--;
        }
        if (up < 3) {
            raft_id r = 1 + (raft_id)(iter * 7) % 5;
            if (!sim_is_up(f->s, r)) {
                sim_restart(f->s, r);
                up++;
            }
        }
        check_ok(f);
    }
    for (raft_id i = 1; i <= 5; i++) {
        sim_restart(f->s, i);
    }
    one(f, 5);
    converge(f);
}

static void test_unreliable_network_agreement(void **state)
{
    struct fixture *f = fixture_new(state, 5, 0, 0);
    sim_set_unreliable(f->s, 100, 50, 27);
    for (int i = 0; i < 20; i++) {
        one(f, 1);
    }
    sim_set_unreliable(f->s, 0, 0, 1);
    one(f, 5);
    converge(f);
}

static void test_figure8_unreliable(void **state)
{
    struct fixture *f = fixture_new(state, 5, 0, 0);
    sim_set_unreliable(f->s, 100, 20, 40);
    for (int iter = 0; iter < 400; iter++) {
        raft_id l = sim_leader(f->s);
        char v[32];
        snprintf(v, sizeof v, "f8u-%d", iter);
        if (l != 0) {
            (void)sim_propose(f->s, l, v, NULL);
        }
        sim_run(f->s, iter % 10 == 0 ? 300 : 10);
        if (l != 0 && iter % 7 == 0) {
            sim_disconnect(f->s, l);
        }
        if (iter % 11 == 0) {
            sim_heal(f->s);
        }
        check_ok(f);
    }
    sim_heal(f->s);
    sim_set_unreliable(f->s, 0, 0, 1);
    one(f, 5);
    converge(f);
}

static void churn(struct fixture *f, bool unreliable)
{
    if (unreliable) {
        sim_set_unreliable(f->s, 100, 30, 20);
    }
    for (int iter = 0; iter < 100; iter++) {
        raft_id victim = 1 + (raft_id)(iter * 13) % 5;
        raft_id l = sim_leader(f->s);
        char v[32];
        snprintf(v, sizeof v, "churn-%d", iter);
        if (l != 0) {
            (void)sim_propose(f->s, l, v, NULL);
        }
        switch (iter % 5) {
            case 0:
                sim_crash(f->s, victim);
                break;
            case 1:
                sim_disconnect(f->s, victim);
                break;
            case 2:
                sim_restart(f->s, victim);
                break;
            case 3:
                sim_connect(f->s, victim);
                break;
            default:
                sim_crash_mid_write(f->s, victim);
                break;
        }
        sim_run(f->s, 50 + (unsigned)(iter * 31) % 200);
        check_ok(f);
    }
    converge(f);
}

static void test_reliable_churn(void **state)
{
    churn(fixture_new(state, 5, 0, 30), false);
}

static void test_unreliable_churn(void **state)
{
    churn(fixture_new(state, 5, 0, 30), true);
}

/* 2D */

static void test_snapshot_compacts_logs(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 10);
    sim_wait_leader(f->s, ELECTION_MS);
    for (int i = 0; i < 60; i++) {
        one(f, 3);
    }
    for (raft_id i = 1; i <= 3; i++) {
        struct raft *r = sim_raft(f->s, i);
        if (raft_first_index(r) <= 30 || raft_last_index(r) + 1 - raft_first_index(r) >= 30) {
            fail_msg("node %llu: log %llu..%llu not compacted", (unsigned long long)i,
                     (unsigned long long)raft_first_index(r),
                     (unsigned long long)raft_last_index(r));
        }
    }
    converge(f);
}

static void install_scenario(struct fixture *f, bool unreliable, bool crash)
{
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    raft_id lag = l % 3 + 1;
    one(f, 3);
    if (crash) {
        sim_crash(f->s, lag);
    } else {
        sim_disconnect(f->s, lag);
    }
    if (unreliable) {
        sim_set_unreliable(f->s, 100, 20, 20);
    }
    for (int i = 0; i < 50; i++) {
        one(f, 2);
    }
    if (crash) {
        sim_restart(f->s, lag);
    } else {
        sim_connect(f->s, lag);
    }
    one(f, 3);
    sim_set_unreliable(f->s, 0, 0, 1);
    assert_true(sim_snapshots_installed(f->s) >= 1);
    converge(f);
}

static void test_snapshot_install_to_lagging_follower(void **state)
{
    install_scenario(fixture_new(state, 3, 0, 10), false, false);
}

static void test_snapshot_install_unreliable(void **state)
{
    install_scenario(fixture_new(state, 3, 0, 10), true, false);
}

static void test_snapshot_install_after_crash(void **state)
{
    install_scenario(fixture_new(state, 3, 0, 10), false, true);
}

/* Beyond 6.824. */

static void test_prevote_rejoining_node_does_not_depose_leader(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    raft_id iso = l % 3 + 1;
    raft_term t = raft_term_get(sim_raft(f->s, l));
    one(f, 3);
    sim_disconnect(f->s, iso);
    sim_run(f->s, 5000); /* many election timeouts alone */
    assert_int_equal(raft_term_get(sim_raft(f->s, iso)), t);
    sim_connect(f->s, iso);
    sim_run(f->s, 1000);
    assert_int_equal(sim_leader(f->s), l);
    assert_int_equal(raft_term_get(sim_raft(f->s, l)), t);
    one(f, 3);
    converge(f);
}

static void test_checkquorum_isolated_leader_steps_down(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    sim_disconnect(f->s, l);
    sim_run(f->s, 500); /* > two election timeouts of 100 ms */
    assert_int_not_equal(raft_role_get(sim_raft(f->s, l)), RAFT_LEADER);
    sim_connect(f->s, l);
    one(f, 3);
    converge(f);
}

static void test_read_index_sees_every_acknowledged_write(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    for (int i = 0; i < 20; i++) {
        char v[16];
        snprintf(v, sizeof v, "w%d", i);
        l = sim_leader(f->s);
        assert_int_equal(sim_propose(f->s, l, v, NULL), 0);
        assert_int_equal(sim_read(f->s, l), 0);
        sim_run(f->s, 20);
        assert_int_equal(sim_read(f->s, l), 0);
        sim_run(f->s, 20);
    }
    sim_run(f->s, 200);
    check_ok(f);
    assert_int_equal(sim_reads_done(f->s), 40);
    /* A read on a follower is refused: the caller must go to the leader. */
    assert_int_equal(sim_read(f->s, l % 3 + 1), RFS_ENOTLEADER);
}

static void test_read_index_on_deposed_leader_never_answers(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    unsigned long done;
    one(f, 3);
    sim_run(f->s, 50); /* heartbeat rounds answered: the leader holds a lease */
    sim_disconnect(f->s, l);
    /* Within its lease the cut-off leader answers at once: nobody else can be elected
     * before the lease runs out (the followers ignore candidates that long). */
    done = sim_reads_done(f->s);
    assert_int_equal(sim_read(f->s, l), 0);
    sim_run(f->s, 2);
    assert_int_equal(sim_reads_done(f->s), done + 1);
    /* Seven ticks on, the lease is over but the leader has not noticed it lost its quorum
     * (CheckQuorum looks every election timeout): a read now waits for a heartbeat round
     * that no follower answers, and is never answered, while the others elect a leader
     * and commit. */
    sim_run(f->s, 70);
    assert_int_equal(raft_role_get(sim_raft(f->s, l)), RAFT_LEADER);
    assert_int_equal(sim_read(f->s, l), 0);
    sim_run(f->s, 1000);
    one(f, 2);
    assert_int_equal(sim_reads_done(f->s), done + 1);
    check_ok(f);
}

/* A follower that restarts may have answered the leader's heartbeat just before it went
 * down, and the leader's lease counts on that answer: for an election timeout after a
 * restart it must ignore candidates as if it had heard from a leader. Here the leader keeps
 * its lease through r alone; c cannot reach the leader and campaigns. Were r to vote for c
 * at once after restarting, c would lead and commit while the old leader still answers
 * reads from its lease: a stale read, which the simulation reports. */
static void test_restarted_follower_ignores_candidates_for_an_election_timeout(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    raft_id c = l % 3 + 1, r = c % 3 + 1;
    unsigned long done;
    one(f, 3);
    sim_cut(f->s, l, c, true);
    sim_cut(f->s, c, l, true);
    sim_run(f->s, 300); /* c campaigns in vain: r and l have a leader */
    assert_int_equal(sim_leader(f->s), l);
    sim_cut(f->s, l, r, true);
    sim_cut(f->s, r, l, true);
    sim_crash(f->s, r);
    sim_restart(f->s, r);
    raft_campaign(sim_raft(f->s, c));
    sim_run(f->s, 30);
    check_ok(f);
    assert_int_not_equal(raft_role_get(sim_raft(f->s, c)), RAFT_LEADER);
    if (raft_role_get(sim_raft(f->s, c)) != RAFT_LEADER) {
        done = sim_reads_done(f->s);
        assert_int_equal(sim_read(f->s, l), 0); /* from the lease */
        sim_run(f->s, 2);
        assert_int_equal(sim_reads_done(f->s), done + 1);
    }
    sim_run(f->s, 1000); /* then c and r elect a leader and go on */
    one(f, 2);
    sim_heal(f->s);
    converge(f);
    check_ok(f);
}

static void test_leadership_transfer_to_follower(void **state)
{
    struct fixture *f = fixture_new(state, 3, 0, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    raft_id target = l % 3 + 1;
    one(f, 3);
    assert_int_equal(sim_transfer(f->s, l, target), 0);
    assert_int_equal(sim_propose(f->s, l, "during", NULL), RFS_ETRANSFER);
    sim_run(f->s, 100);
    assert_int_equal(sim_leader(f->s), target);
    assert_int_equal(sim_count_leaders(f->s), 1);
    one(f, 3);
    converge(f);
}

static void test_membership_learner_promote_remove(void **state)
{
    struct fixture *f = fixture_new(state, 3, 1, 0);
    raft_id l = sim_wait_leader(f->s, ELECTION_MS);
    raft_id victim;
    one(f, 3);
    assert_int_equal(sim_propose_conf(f->s, l, RAFT_CC_ADD_LEARNER, 4), 0);
    assert_int_equal(sim_propose_conf(f->s, l, RAFT_CC_ADD_VOTER, 4), RFS_ECONFPENDING);
    one(f, 4);
    assert_true(raft_conf_is_learner(raft_conf_get(sim_raft(f->s, 4)), 4));
    assert_int_equal(sim_propose_conf(f->s, l, RAFT_CC_ADD_VOTER, 4), 0);
    one(f, 4);
    assert_int_equal(raft_conf_get(sim_raft(f->s, l))->n_voters, 4);
    /* Remove the leader itself: it steps down once the change commits. */
    victim = l;
    assert_int_equal(sim_propose_conf(f->s, l, RAFT_CC_REMOVE, victim), 0);
    sim_run(f->s, 2 * ELECTION_MS);
    l = sim_wait_leader(f->s, ELECTION_MS);
    assert_int_not_equal(l, victim);
    assert_int_equal(raft_conf_get(sim_raft(f->s, l))->n_voters, 3);
    assert_false(raft_conf_is_voter(raft_conf_get(sim_raft(f->s, l)), victim));
    one(f, 3);
    /* Nonsense changes are refused. */
    assert_int_equal(sim_propose_conf(f->s, l, RAFT_CC_ADD_VOTER, l), RFS_EINVAL);
    converge(f);
}

static void test_bad_config_is_refused_with_reason(void **state)
{
    struct raft_config cfg;
    struct raft *r = NULL;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    (void)state;
    raft_config_default(&cfg, 1);
    cfg.heartbeat_ticks = cfg.election_ticks;
    assert_int_equal(raft_new(&r, &cfg, NULL, errmsg), RFS_EINVAL);
    assert_non_null(strstr(errmsg, "heartbeat_ticks"));
    raft_config_default(&cfg, 0);
    assert_int_equal(raft_new(&r, &cfg, NULL, errmsg), RFS_EINVAL);
    assert_null(r);
}

/* Fail every allocation from the Nth on: the core reports it (an error code, or
 * raft_error()) and never crashes or leaks. */
static void test_allocation_failure_is_reported_not_fatal(void **state)
{
    (void)state;
    for (unsigned long n = 1; n <= 120; n++) {
        struct raft_config cfg;
        struct raft_conf boot = {.n_voters = 1, .voters = {1}};
        struct raft_restore rs = {.bootstrap = &boot};
        struct raft *r = NULL;
        char errmsg[RFS_ERRMSG_SIZE];
        int failures = 0;
        int rv;
        raft_config_default(&cfg, 1);
        rfs_alloc_fail_after(n, 1);
        rv = raft_new(&r, &cfg, &rs, errmsg);
        if (rv != 0) {
            rfs_alloc_fail_after(0, 0);
            assert_int_equal(rv, RFS_ENOMEM);
            assert_null(r);
            continue;
        }
        raft_campaign(r);
        for (int i = 0; i < 40; i++) {
            struct raft_ready rd;
            if (raft_propose(r, "x", 1, NULL) != 0) {
                failures++;
            }
            if (raft_has_ready(r)) {
                raft_ready(r, &rd);
                raft_advance(r, &rd);
            }
            (void)raft_read_index(r, (uint64_t)i);
        }
        rfs_alloc_fail_after(0, 0);
        assert_true(failures > 0 || raft_error(r) != 0 || raft_commit_get(r) >= 40);
        raft_free(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_initial_election_elects_one_leader_and_keeps_it, teardown),
        cmocka_unit_test_teardown(test_reelection_after_leader_disconnects, teardown),
        cmocka_unit_test_teardown(test_many_elections_with_random_disconnects, teardown),
        cmocka_unit_test_teardown(test_basic_agreement_on_consecutive_indexes, teardown),
        cmocka_unit_test_teardown(test_agreement_continues_without_one_follower, teardown),
        cmocka_unit_test_teardown(test_no_agreement_without_majority, teardown),
        cmocka_unit_test_teardown(test_concurrent_proposals_get_distinct_indexes, teardown),
        cmocka_unit_test_teardown(test_partitioned_leader_rejoins_and_is_overwritten, teardown),
        cmocka_unit_test_teardown(test_backup_skips_divergent_log_quickly, teardown),
        cmocka_unit_test_teardown(test_message_counts_stay_small, teardown),
        cmocka_unit_test_teardown(test_persistence_across_full_restart, teardown),
        cmocka_unit_test_teardown(test_persistence_of_uncommitted_partition_history, teardown),
        cmocka_unit_test_teardown(test_figure8_old_term_entries_not_committed_by_count, teardown),
        cmocka_unit_test_teardown(test_unreliable_network_agreement, teardown),
        cmocka_unit_test_teardown(test_figure8_unreliable, teardown),
        cmocka_unit_test_teardown(test_reliable_churn, teardown),
        cmocka_unit_test_teardown(test_unreliable_churn, teardown),
        cmocka_unit_test_teardown(test_snapshot_compacts_logs, teardown),
        cmocka_unit_test_teardown(test_snapshot_install_to_lagging_follower, teardown),
        cmocka_unit_test_teardown(test_snapshot_install_unreliable, teardown),
        cmocka_unit_test_teardown(test_snapshot_install_after_crash, teardown),
        cmocka_unit_test_teardown(test_prevote_rejoining_node_does_not_depose_leader, teardown),
        cmocka_unit_test_teardown(test_checkquorum_isolated_leader_steps_down, teardown),
        cmocka_unit_test_teardown(test_read_index_sees_every_acknowledged_write, teardown),
        cmocka_unit_test_teardown(test_read_index_on_deposed_leader_never_answers, teardown),
        cmocka_unit_test_teardown(
            test_restarted_follower_ignores_candidates_for_an_election_timeout, teardown),
        cmocka_unit_test_teardown(test_leadership_transfer_to_follower, teardown),
        cmocka_unit_test_teardown(test_membership_learner_promote_remove, teardown),
        cmocka_unit_test(test_bad_config_is_refused_with_reason),
        cmocka_unit_test(test_allocation_failure_is_reported_not_fatal),
    };
    return cmocka_run_group_tests_name("raft_scenarios", tests, NULL, NULL);
}
