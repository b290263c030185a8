/* tests/unit/fake_groups.h: a meta group and FAKE_GROUPS_N shard groups faked in the test
 * process, for tests of the routed client (test_kv_route.c, test_txn_client.c).
 *
 * One rpc loop, on its own thread, listens on FAKE_GROUPS_N + 1 local ports. The meta port
 * (FAKE_GROUPS_META) answers every KvRequest with the configuration in g->version and
 * g->buckets, naming group gid at port gid. Port gid (1..FAKE_GROUPS_N) hands each KvRequest
 * to the test's answer function, which fills the reply to send; the test keeps its own log
 * and state there. Helpers fail the test (cmocka) on an error. */
#ifndef TESTS_UNIT_FAKE_GROUPS_H
#define TESTS_UNIT_FAKE_GROUPS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/client.h"
#include "proto/raftfs.pb-c.h"
#include "rpc/rpc.h"

#define FAKE_GROUPS_META     0  /* the meta group's port index */
#define FAKE_GROUPS_N        2  /* ports 1 and 2 are groups 1 and 2 */
#define FAKE_GROUPS_NBUCKETS 64 /* buckets in the configuration */

struct fake_groups;

/* Answer req, received at group gid as the raw_len bytes at raw, into rep: rep starts as
 * RAFTFS__KV_REPLY__INIT (status 0) and is sent when this returns, so whatever it points to
 * must live until then; set *drop to send no answer. Runs on the fake's thread with g->mu
 * held; it may change g->version and g->buckets (the next configuration the meta group
 * gives). */
typedef void (*fake_groups_answer_fn)(struct fake_groups *g, unsigned gid,
                                      const Raftfs__KvRequest *req, const void *raw, size_t raw_len,
                                      Raftfs__KvReply *rep, bool *drop);

struct fake_groups_port {
    struct fake_groups *g;
    unsigned index; /* FAKE_GROUPS_META or a group id */
};

struct fake_groups {
    struct rpc_loop *loop;
    pthread_t thread;
    bool running;
    struct rpc_listener *ls[FAKE_GROUPS_N + 1];
    struct fake_groups_port ports[FAKE_GROUPS_N + 1];
    char addr[FAKE_GROUPS_N + 1][32]; /* "127.0.0.1:port", by port index */
    fake_groups_answer_fn answer;
    void *data; /* the test's, for answer */

    pthread_mutex_t mu; /* protects everything below, and what answer touches */
    uint64_t version;
    uint64_t buckets[FAKE_GROUPS_NBUCKETS]; /* bucket -> gid, 0 for none */
    unsigned meta_queries;                  /* requests the meta group answered */
};

/* Listen on a local port for the meta group and for each group, and start the loop's
 * thread. The configuration starts at version 0 with no bucket served (set it with
 * fake_groups_set_all or under g->mu). answer and data are kept. Returns 0, or an rpc code
 * or RFS_EIO (reason in errmsg); call fake_groups_close either way. */
int fake_groups_init(struct fake_groups *g, fake_groups_answer_fn answer, void *data, char *errmsg);
/* Stop the thread and close every port. Safe on a zeroed struct. */
void fake_groups_close(struct fake_groups *g);

/* Configuration `version`, every bucket on group gid. Takes g->mu. */
void fake_groups_set_all(struct fake_groups *g, uint64_t version, uint64_t gid);

/* A routed client of the fake meta group (attempts of 200 ms; crash: the coordinator's test
 * hook, KV_TXN_CRASH_NONE for none). Fails the test on an error; free with kv_client_free. */
struct kv_client *fake_groups_client(struct fake_groups *g, unsigned timeout_ms,
                                     enum kv_txn_crash crash);

#endif
