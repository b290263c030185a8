/* The Raft core on the real log store: a server loop persists each ready batch with one
 * sync before it applies (acknowledges) anything, restarts recover exactly what was
 * synced, and a failed write or sync is never acknowledged. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "raft/log_store.h"
#include "raft/raft.h"

struct fault_io {
    struct raft_store_io io;
    unsigned long syncs;
    unsigned long writes;
    unsigned long fail_sync_at; /* 1-based; 0 = never */
    unsigned long fail_write_at;
    int fail_errno;
};

static const struct raft_store_io *posix(void)
{
    return raft_store_io_posix();
}

static int f_open(void *d, const char *path, int flags, mode_t mode)
{
    (void)d;
    return posix()->open(posix()->data, path, flags, mode);
}

static ssize_t f_pwrite(void *d, int fd, const void *buf, size_t len, off_t off)
{
    struct fault_io *f = d;
    if (++f->writes == f->fail_write_at) {
        errno = f->fail_errno;
        return -1;
    }
    return posix()->pwrite(posix()->data, fd, buf, len, off);
}

static ssize_t f_pread(void *d, int fd, void *buf, size_t len, off_t off)
{
    (void)d;
    return posix()->pread(posix()->data, fd, buf, len, off);
}

static int f_fsync(void *d, int fd)
{
    (void)d;
    return posix()->fsync(posix()->data, fd);
}

static int f_fdatasync(void *d, int fd)
{
    struct fault_io *f = d;
    if (++f->syncs == f->fail_sync_at) {
        errno = f->fail_errno;
        return -1;
    }
    return posix()->fdatasync(posix()->data, fd);
}

static int f_ftruncate(void *d, int fd, off_t len)
{
    (void)d;
    return posix()->ftruncate(posix()->data, fd, len);
}

static int f_rename(void *d, const char *a, const char *b)
{
    (void)d;
    return posix()->rename(posix()->data, a, b);
}

static int f_unlink(void *d, const char *p)
{
    (void)d;
    return posix()->unlink(posix()->data, p);
}

static int f_close(void *d, int fd)
{
    (void)d;
    return posix()->close(posix()->data, fd);
}

static void fault_io_init(struct fault_io *f)
{
    memset(f, 0, sizeof *f);
    f->io = (struct raft_store_io){f,           f_open,      f_pwrite, f_pread,  f_fsync,
                                   f_fdatasync, f_ftruncate, f_rename, f_unlink, f_close};
    f->fail_errno = EIO;
}

struct fixture {
    char dir[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/raftfs-durable-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", f->dir);
    }
    free(f);
    return 0;
}

/* One single-voter server: core + store, as a server's event loop wires them. */
struct server {
    struct raft_store *store;
    struct raft *r;
    unsigned long acked; /* normal entries applied, i.e. acknowledged to clients */
    raft_index last_acked;
    int failed;
};

static int server_open(struct server *sv, const char *dir, const struct raft_store_io *io)
{
    struct raft_store_state st;
    struct raft_config cfg;
    struct raft_conf boot = {.n_voters = 1, .voters = {1}};
    struct raft_restore rs;
    char errmsg[RFS_ERRMSG_SIZE];
    int rv;
    memset(sv, 0, sizeof *sv);
    rv = raft_store_open(&sv->store, dir, io, 4096, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = raft_store_load(sv->store, &st, errmsg);
    assert_int_equal(rv, 0);
    memset(&rs, 0, sizeof rs);
    rs.hard_state = st.hard_state;
    rs.snapshot = st.has_snapshot ? &st.snapshot : NULL;
    rs.entries = st.entries;
    rs.n_entries = st.n_entries;
    rs.bootstrap = &boot;
    raft_config_default(&cfg, 1);
    rv = raft_new(&sv->r, &cfg, &rs, errmsg);
    assert_int_equal(rv, 0);
    return 0;
}

static void server_close(struct server *sv)
{
    raft_free(sv->r);
    raft_store_close(sv->store);
}

/* One pass of the loop: persist with one sync, and only then apply. */
static void server_pass(struct server *sv)
{
    char errmsg[RFS_ERRMSG_SIZE];
    for (int i = 0; i < 8 && !sv->failed && raft_has_ready(sv->r); i++) {
        struct raft_ready rd;
        raft_ready(sv->r, &rd);
        sv->failed = raft_store_persist_ready(sv->store, &rd, errmsg);
        if (sv->failed != 0) {
            return; /* stop: nothing of this batch is applied or acknowledged */
        }
        for (unsigned k = 0; k < rd.n_committed; k++) {
            if (rd.committed[k].type == RAFT_ENTRY_NORMAL) {
                sv->acked++;
                sv->last_acked = rd.committed[k].index;
            }
        }
        raft_advance(sv->r, &rd);
    }
}

static void server_elect(struct server *sv)
{
    raft_campaign(sv->r);
    server_pass(sv);
    assert_int_equal(raft_role_get(sv->r), RAFT_LEADER);
}

static void test_restart_recovers_synced_log_and_term(void **state)
{
    struct fixture *f = *state;
    struct server sv;
    raft_term term;
    raft_index last;
    char v[32];
    assert_int_equal(server_open(&sv, f->dir, NULL), 0);
    server_elect(&sv);
    for (int i = 0; i < 200; i++) {
        snprintf(v, sizeof v, "value-%d", i);
        assert_int_equal(raft_propose(sv.r, v, strlen(v), NULL), 0);
        if (i % 7 == 0) {
            server_pass(&sv);
        }
    }
    server_pass(&sv);
    assert_int_equal(sv.acked, 200);
    term = raft_term_get(sv.r);
    last = raft_last_index(sv.r);
    server_close(&sv);

    assert_int_equal(server_open(&sv, f->dir, NULL), 0);
    assert_int_equal(raft_term_get(sv.r), term);
    assert_int_equal(raft_last_index(sv.r), last);
    assert_int_equal(raft_commit_get(sv.r), last);
    {
        const struct raft_entry *e = raft_entry_at(sv.r, last);
        assert_non_null(e);
        assert_int_equal(e->data.len, strlen("value-199"));
        assert_memory_equal(e->data.base, "value-199", e->data.len);
    }
    server_elect(&sv);
    assert_true(raft_term_get(sv.r) > term);
    server_close(&sv);
}

static void test_snapshot_then_restart_replays_only_the_tail(void **state)
{
    struct fixture *f = *state;
    struct server sv;
    char errmsg[RFS_ERRMSG_SIZE];
    raft_index snap_at;
    assert_int_equal(server_open(&sv, f->dir, NULL), 0);
    server_elect(&sv);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(raft_propose(sv.r, "abcdefgh", 8, NULL), 0);
    }
    server_pass(&sv);
    snap_at = raft_applied_get(sv.r);
    assert_int_equal(raft_snapshot_take(sv.r, snap_at, "state", 5, 0), 0);
    assert_int_equal(raft_store_snapshot_save(sv.store, raft_snapshot_get(sv.r), errmsg), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(raft_propose(sv.r, "tail", 4, NULL), 0);
    }
    server_pass(&sv);
    server_close(&sv);

    assert_int_equal(server_open(&sv, f->dir, NULL), 0);
    assert_int_equal(raft_first_index(sv.r), snap_at + 1);
    assert_int_equal(raft_applied_get(sv.r), snap_at);
    assert_int_equal(raft_last_index(sv.r), snap_at + 10);
    assert_non_null(raft_snapshot_get(sv.r));
    assert_memory_equal(raft_snapshot_get(sv.r)->data.base, "state", 5);
    server_close(&sv);
}

/* Fail the Nth sync (or write) for every N: whatever was acknowledged before the failure
 * is on disk afterwards, and nothing after the failure is acknowledged. */
static void failure_sweep(struct fixture *f, bool fail_write, int err)
{
    for (unsigned long n = 1; n <= 12; n++) {
        struct fault_io fio;
        struct server sv;
        unsigned long acked_before;
        raft_index last_acked;
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", f->dir);
        assert_int_equal(system(cmd), 0);
        fault_io_init(&fio);
        fio.fail_errno = err;
        if (fail_write) {
            fio.fail_write_at = n;
        } else {
            fio.fail_sync_at = n;
        }
        assert_int_equal(server_open(&sv, f->dir, &fio.io), 0);
        raft_campaign(sv.r);
        for (int round = 0; round < 20 && !sv.failed; round++) {
            for (int i = 0; i < 3; i++) {
                (void)raft_propose(sv.r, "payload", 7, NULL);
            }
            server_pass(&sv);
        }
        assert_int_not_equal(sv.failed, 0);
        acked_before = sv.acked;
        last_acked = sv.last_acked;
        /* The store stays failed: nothing more is acknowledged. */
        server_pass(&sv);
        assert_int_equal(sv.acked, acked_before);
        server_close(&sv);

        assert_int_equal(server_open(&sv, f->dir, NULL), 0);
        assert_true(raft_last_index(sv.r) >= last_acked);
        if (last_acked > 0) {
            const struct raft_entry *e = raft_entry_at(sv.r, last_acked);
            assert_non_null(e);
            assert_memory_equal(e->data.base, "payload", 7);
        }
        server_close(&sv);
    }
}

static void test_failed_sync_is_never_acknowledged(void **state)
{
    failure_sweep(*state, false, EIO);
}

static void test_failed_write_is_never_acknowledged(void **state)
{
    failure_sweep(*state, true, EIO);
}

static void test_full_disk_is_never_acknowledged(void **state)
{
    failure_sweep(*state, true, ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restart_recovers_synced_log_and_term, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_then_restart_replays_only_the_tail, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_sync_is_never_acknowledged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_is_never_acknowledged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_is_never_acknowledged, setup, teardown),
    };
    return cmocka_run_group_tests_name("raft_durable", tests, NULL, NULL);
}
