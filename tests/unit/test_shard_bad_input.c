/* Bad input sent to a real shard server's port (docs/rpc.md, "Limits and bad input"): random
 * bytes, lengths over the 64 MiB frame limit or below 12, a frame cut short by the peer, a
 * frame of an unknown type, Raft frames that do not decode, that fail validation (among them
 * term 0 past the end of the log, which used to kill the receiver) or that belong to another
 * group, and KV requests that do not decode or carry an unknown op. Also a scan over an empty
 * key and value, which used to kill the leader under UBSan.
 *
 * Random inputs come from seeds 1..8; RAFTFS_SEED=<n> runs only seed n.
 *
 * Each input goes over a fresh raw TCP connection to the leader and to a follower of a
 * 3-server group of raftfs-shard processes (tests/lib/cluster.h), started once for the
 * file. A frame the server cannot accept must close only that connection, with nothing
 * sent back; a KV request that does not decode or names an unknown op gets a reply with an
 * error status, and the connection goes on serving. After every input each server still
 * runs and answers, and a put then a get through the group still work. The last test stops
 * the servers with SIGTERM (so LeakSanitizer runs) and fails on any sanitizer report in
 * their logs. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "common/err.h"
#include "kv/client.h"
#include "proto/proto.h"
#include "rpc/rpc.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"

#define N_SERVERS  3
#define GROUP_ID   1 /* raftfs-shard's default --gid */
#define CLOSE_MS   3000
#define REPLY_MS   5000
#define LEADER_MS  10000
#define N_SEEDS    8
#define RANDOM_MAX 8192

struct fixture {
    bool skip;
    char why[300];
    struct cluster c;
    bool started;
    struct kv_client *kc;
    unsigned checks; /* health checks so far: each writes its own key */
    uint64_t next_req_id;
};

/* ---- raw connections ---- */

static int raw_connect(const struct fixture *f, unsigned server)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)f->c.port[server]);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fail_msg("connect to server %u (port %d): %s", server, f->c.port[server], strerror(errno));
    }
    return fd;
}

/* Send all of buf; the server may close the connection part way (it checks a header as
 * soon as it is in), so a reset or a broken pipe only ends the sending. */
static void raw_send(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            return;
        }
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void put_header(unsigned char *h, uint32_t len, uint32_t type, uint64_t req_id)
{
    rfs_put_le32(h, len);
    rfs_put_le32(h + 4, type);
    rfs_put_le64(h + 8, req_id);
}

static void raw_send_frame(int fd, uint32_t type, uint64_t req_id, const void *payload, size_t len)
{
    unsigned char h[RPC_HEADER_SIZE];
    put_header(h, (uint32_t)(len + 12), type, req_id);
    raw_send(fd, h, sizeof h);
    if (len > 0) {
        raw_send(fd, payload, len);
    }
}

/* Wait (bounded) for the server to close fd: recv returns 0 or ECONNRESET. Returns the
 * number of bytes the server sent before closing, or -1 if it did not close in time. */
static long raw_wait_closed(int fd, int timeout_ms)
{
    long long deadline = proc_now_ms() + timeout_ms;
    long got = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long long left = deadline - proc_now_ms();
        unsigned char buf[4096];
        ssize_t n;
        if (left <= 0) {
            return -1;
        }
        if (poll(&pfd, 1, (int)left) <= 0) {
            continue; /* EINTR or the deadline: the loop decides */
        }
        n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return got;
        }
        if (n > 0) {
            got += n;
        }
    }
}

/* Close expected: no reply, and the server closes within CLOSE_MS. */
static void expect_closed(int fd, const char *what, unsigned server)
{
    long got = raw_wait_closed(fd, CLOSE_MS);
    if (got < 0) {
        fail_msg("%s to server %u: connection still open after %d ms", what, server, CLOSE_MS);
    }
    if (got > 0) {
        fail_msg("%s to server %u: %ld bytes sent back before the close", what, server, got);
    }
}

/* Read exactly len bytes within the deadline. */
static void raw_read_full(int fd, void *buf, size_t len, long long deadline, const char *what)
{
    unsigned char *p = buf;
    while (len > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long long left = deadline - proc_now_ms();
        ssize_t n;
        if (left <= 0) {
            fail_msg("%s: no reply within %d ms", what, REPLY_MS);
        }
        if (poll(&pfd, 1, (int)left) <= 0) {
            continue;
        }
        n = recv(fd, p, len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (n <= 0) {
            fail_msg("%s: connection closed instead of a reply (%s)", what,
                     n == 0 ? "EOF" : strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
}

/* Read one frame of type `type` answering req_id; returns its payload (rfs_free). */
static void *raw_read_reply(int fd, uint32_t type, uint64_t req_id, size_t *len, const char *what)
{
    long long deadline = proc_now_ms() + REPLY_MS;
    unsigned char h[RPC_HEADER_SIZE];
    uint32_t flen;
    void *payload;
    raw_read_full(fd, h, sizeof h, deadline, what);
    flen = rfs_get_le32(h);
    if (flen < 12 || flen > (1u << 20)) {
        fail_msg("%s: reply frame length %u", what, flen);
    }
    assert_int_equal(rfs_get_le32(h + 4), type);
    assert_int_equal(rfs_get_le64(h + 8), req_id);
    *len = flen - 12;
    payload = rfs_malloc(*len ? *len : 1);
    assert_non_null(payload);
    raw_read_full(fd, payload, *len, deadline, what);
    return payload;
}

/* Send a KvRequest frame (any bytes) and return the reply's status. */
static uint32_t raw_kv_status(struct fixture *f, int fd, const void *payload, size_t len,
                              const char *what)
{
    uint64_t req_id = ++f->next_req_id;
    size_t rlen;
    void *reply;
    Raftfs__KvReply *rep;
    uint32_t status;
    raw_send_frame(fd, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, req_id, payload, len);
    reply = raw_read_reply(fd, RAFTFS__FRAME_TYPE__FRAME_KV_REPLY, req_id, &rlen, what);
    rep = raftfs__kv_reply__unpack(&proto_allocator, rlen, reply);
    rfs_free(reply);
    if (rep == NULL) {
        fail_msg("%s: the KvReply does not decode", what);
    }
    status = rep->status;
    raftfs__kv_reply__free_unpacked(rep, &proto_allocator);
    return status;
}

/* The connection still serves: a status request gets its reply. */
static void expect_status_reply(struct fixture *f, int fd, unsigned server, const char *what)
{
    Raftfs__StatusRequest req = RAFTFS__STATUS_REQUEST__INIT;
    uint8_t buf[16];
    size_t len = raftfs__status_request__pack(&req, buf);
    uint64_t req_id = ++f->next_req_id;
    size_t rlen;
    void *reply;
    Raftfs__StatusReply *rep;
    raw_send_frame(fd, RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST, req_id, buf, len);
    reply = raw_read_reply(fd, RAFTFS__FRAME_TYPE__FRAME_STATUS_REPLY, req_id, &rlen, what);
    rep = raftfs__status_reply__unpack(&proto_allocator, rlen, reply);
    rfs_free(reply);
    assert_non_null(rep);
    assert_int_equal(rep->id, server + 1);
    raftfs__status_reply__free_unpacked(rep, &proto_allocator);
}

/* ---- the group ---- */

static int group_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct kv_client_options o;
    char errmsg[RFS_ERRMSG_SIZE];
    char group[sizeof f->c.group];
    int rv;

    assert_non_null(f);
    *state = f;
    if (!cluster_bins_present(f->why, sizeof f->why)) {
        f->skip = true;
        return 0;
    }
    rv = cluster_start(&f->c, N_SERVERS, false, NULL, errmsg);
    f->started = true;
    if (rv != 0) {
        fprintf(stderr, "cluster_start: %s\n", errmsg);
        goto err;
    }
    memset(&o, 0, sizeof o);
    snprintf(group, sizeof group, "%s", f->c.group);
    if (kv_client_parse_servers(group, &o, errmsg) != 0) {
        fprintf(stderr, "servers %s: %s\n", f->c.group, errmsg);
        goto err;
    }
    o.group_id = GROUP_ID;
    o.timeout_ms = 8000;
    o.attempt_ms = 1000;
    if (kv_client_new(&f->kc, &o, errmsg) != 0) {
        fprintf(stderr, "kv_client_new: %s\n", errmsg);
        goto err;
    }
    return 0;
err:
    /* cmocka skips the group teardown when the setup fails. */
    cluster_destroy(&f->c);
    free(f);
    *state = NULL;
    return -1;
}

static int group_teardown(void **state)
{
    struct fixture *f = *state;
    if (f == NULL) {
        return 0;
    }
    kv_client_free(f->kc);
    if (f->started) {
        cluster_destroy(&f->c);
    }
    free(f);
    return 0;
}

static struct fixture *fixture_get(void **state)
{
    struct fixture *f = *state;
    if (f->skip) {
        printf("SKIPPED: %s\n", f->why);
        skip();
    }
    return f;
}

/* Every server runs and answers a status request, and a put then a get through the group
 * work. */
static void expect_healthy(struct fixture *f, const char *after)
{
    char key[64], val[64], errmsg[RFS_ERRMSG_SIZE];
    struct kv_client_value v = {0};
    int rv;
    for (unsigned i = 0; i < N_SERVERS; i++) {
        struct kv_server_status st;
        if (!proc_alive(f->c.pid[i])) {
            cluster_dump_logs(&f->c);
            fail_msg("after %s: server %u (pid %d) is gone", after, i, (int)f->c.pid[i]);
        }
        rv = kv_client_status(f->kc, i, &st);
        if (rv != 0) {
            cluster_dump_logs(&f->c);
            fail_msg("after %s: server %u does not answer a status request: %s", after, i,
                     st.error);
        }
    }
    f->checks++;
    snprintf(key, sizeof key, "bad-input-%u", f->checks);
    snprintf(val, sizeof val, "still serving after check %u", f->checks);
    rv = kv_client_put(f->kc, key, strlen(key), val, strlen(val), NULL, errmsg);
    if (rv != 0) {
        cluster_dump_logs(&f->c);
        fail_msg("after %s: put %s: %s", after, key, errmsg);
    }
    rv = kv_client_get(f->kc, key, strlen(key), &v, errmsg);
    if (rv != 0) {
        cluster_dump_logs(&f->c);
        fail_msg("after %s: get %s: %s", after, key, errmsg);
    }
    assert_true(v.found);
    assert_int_equal(v.value.len, strlen(val));
    assert_memory_equal(v.value.base, val, strlen(val));
    kv_client_value_clear(&v);
}

/* The leader and one follower: the servers a bad input is sent to. */
static void targets(struct fixture *f, unsigned out[2])
{
    int leader = cluster_wait_leader(&f->c, LEADER_MS);
    if (leader < 0) {
        cluster_dump_logs(&f->c);
        fail_msg("no leader within %d ms", LEADER_MS);
    }
    out[0] = (unsigned)leader;
    out[1] = ((unsigned)leader + 1) % N_SERVERS;
}

/* Send bytes on a fresh connection to each target; expect the close and a healthy group. */
static void send_expect_close(struct fixture *f, const void *bytes, size_t len, const char *what)
{
    unsigned to[2];
    targets(f, to);
    for (unsigned t = 0; t < 2; t++) {
        int fd = raw_connect(f, to[t]);
        raw_send(fd, bytes, len);
        expect_closed(fd, what, to[t]);
        close(fd);
        expect_healthy(f, what);
    }
}

/* ---- framing ---- */

/* xorshift64*: the same bytes for the same seed everywhere. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static bool header_acceptable(const unsigned char *h)
{
    uint32_t len = rfs_get_le32(h);
    uint32_t type = rfs_get_le32(h + 4);
    return len >= 12 && len <= RPC_DEFAULT_MAX_FRAME &&
           (type == RAFTFS__FRAME_TYPE__FRAME_RAFT ||
            type == RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST ||
            type == RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST);
}

static void test_random_bytes_close_the_connection(void **state)
{
    struct fixture *f = fixture_get(state);
    const char *env = getenv("RAFTFS_SEED");
    uint64_t first = env ? strtoull(env, NULL, 0) : 1;
    unsigned n_seeds = env ? 1 : N_SEEDS;
    unsigned char *buf = malloc(RANDOM_MAX);
    assert_non_null(buf);
    for (uint64_t seed = first; seed < first + n_seeds; seed++) {
        uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
        size_t len = RPC_HEADER_SIZE + (size_t)(rng_next(&s) % (RANDOM_MAX - RPC_HEADER_SIZE));
        char what[64];
        unsigned to[2];
        for (size_t i = 0; i < len; i++) {
            buf[i] = (unsigned char)(rng_next(&s) >> 56);
        }
        if (seed % 2 == 0) {
            /* A length the server accepts, so the random type (and the rest) is looked at. */
            rfs_put_le32(buf, (uint32_t)(12 + rng_next(&s) % (len - 15)));
        }
        snprintf(what, sizeof what, "%zu random bytes (seed %llu)", len, (unsigned long long)seed);
        printf("# %s\n", what);
        targets(f, to);
        for (unsigned t = 0; t < 2; t++) {
            int fd = raw_connect(f, to[t]);
            raw_send(fd, buf, len);
            if (header_acceptable(buf)) {
                /* A header the server takes (rare): it waits for the rest of the frame, so
                 * end the input; what the frame says is not this test's business. */
                shutdown(fd, SHUT_WR);
                if (raw_wait_closed(fd, CLOSE_MS) < 0) {
                    fail_msg("%s to server %u: not closed after EOF", what, to[t]);
                }
            } else {
                expect_closed(fd, what, to[t]);
            }
            close(fd);
            expect_healthy(f, what);
        }
    }
    free(buf);
}

static void test_length_over_limit_closes_the_connection(void **state)
{
    struct fixture *f = fixture_get(state);
    const uint32_t lengths[] = {0xFFFFFFFFu, 65u << 20, RPC_DEFAULT_MAX_FRAME + 1};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        unsigned char buf[RPC_HEADER_SIZE + 64];
        char what[64];
        put_header(buf, lengths[i], RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, 1);
        memset(buf + RPC_HEADER_SIZE, 0x5a, 64); /* the start of a payload, never read */
        snprintf(what, sizeof what, "a frame length of %u", lengths[i]);
        send_expect_close(f, buf, sizeof buf, what);
    }
}

static void test_length_below_12_closes_the_connection(void **state)
{
    struct fixture *f = fixture_get(state);
    const uint32_t lengths[] = {0, 11};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        unsigned char buf[RPC_HEADER_SIZE];
        char what[64];
        put_header(buf, lengths[i], RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST, 1);
        snprintf(what, sizeof what, "a frame length of %u", lengths[i]);
        send_expect_close(f, buf, sizeof buf, what);
    }
}

/* The peer promises 1000 bytes, sends 10 and ends its side: the server drops the partial
 * frame and closes. */
static void test_truncated_payload_then_eof_closes_the_connection(void **state)
{
    struct fixture *f = fixture_get(state);
    unsigned char buf[RPC_HEADER_SIZE + 10];
    unsigned to[2];
    put_header(buf, 1000, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, 7);
    memset(buf + RPC_HEADER_SIZE, 0x22, 10);
    targets(f, to);
    for (unsigned t = 0; t < 2; t++) {
        int fd = raw_connect(f, to[t]);
        raw_send(fd, buf, sizeof buf);
        shutdown(fd, SHUT_WR);
        expect_closed(fd, "10 of 1000 promised bytes, then EOF", to[t]);
        close(fd);
        expect_healthy(f, "a truncated frame");
    }
    /* A header at exactly the limit: the server makes room for the whole frame, then the
     * peer goes away. */
    put_header(buf, RPC_DEFAULT_MAX_FRAME, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, 8);
    for (unsigned t = 0; t < 2; t++) {
        int fd = raw_connect(f, to[t]);
        raw_send(fd, buf, sizeof buf);
        shutdown(fd, SHUT_WR);
        expect_closed(fd, "10 of 64 MiB promised bytes, then EOF", to[t]);
        close(fd);
        expect_healthy(f, "a truncated 64 MiB frame");
    }
    put_header(buf, 1000, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, 7);
    /* And with the socket closed outright (nothing left to observe but the servers). */
    for (unsigned t = 0; t < 2; t++) {
        int fd = raw_connect(f, to[t]);
        raw_send(fd, buf, sizeof buf);
        close(fd);
        expect_healthy(f, "a truncated frame, then close");
    }
}

static void test_unknown_frame_type_closes_the_connection(void **state)
{
    struct fixture *f = fixture_get(state);
    const uint32_t types[] = {99, RAFTFS__FRAME_TYPE__FRAME_NONE,
                              RAFTFS__FRAME_TYPE__FRAME_KV_REPLY};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        unsigned char buf[RPC_HEADER_SIZE + 4] = {0};
        char what[64];
        put_header(buf, 12 + 4, types[i], 3);
        snprintf(what, sizeof what, "a well-formed frame of type %u", types[i]);
        send_expect_close(f, buf, sizeof buf, what);
    }
}

/* ---- Raft frames ---- */

static void send_raft_expect_close(struct fixture *f, const void *payload, size_t len,
                                   const char *what)
{
    unsigned char *buf = malloc(RPC_HEADER_SIZE + len + 1);
    assert_non_null(buf);
    put_header(buf, (uint32_t)(12 + len), RAFTFS__FRAME_TYPE__FRAME_RAFT, 0);
    if (len > 0) {
        memcpy(buf + RPC_HEADER_SIZE, payload, len);
    }
    send_expect_close(f, buf, RPC_HEADER_SIZE + len, what);
    free(buf);
}

static void test_raft_frame_that_does_not_decode_closes_the_connection(void **state)
{
    struct fixture *f = fixture_get(state);
    /* An 11-byte varint tag; wire type 7; a bytes field (data, 17) longer than the frame;
     * a sub-message (snap, 16) whose inside is cut. */
    static const unsigned char overlong[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                             0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const unsigned char bad_wire_type[] = {0x0f, 0x01};
    static const unsigned char cut_bytes[] = {0x8a, 0x01, 0x64, 'a', 'b', 'c'};
    static const unsigned char cut_submsg[] = {0x82, 0x01, 0x03, 0x08, 0x80, 0x80};
    send_raft_expect_close(f, overlong, sizeof overlong, "a raft frame with an overlong varint");
    send_raft_expect_close(f, bad_wire_type, sizeof bad_wire_type, "a raft frame with wire type 7");
    send_raft_expect_close(f, cut_bytes, sizeof cut_bytes, "a raft frame with a cut field");
    send_raft_expect_close(f, cut_submsg, sizeof cut_submsg, "a raft frame with a cut sub-message");
}

/* Decodes as protobuf but fails proto_raft_unpack's checks. */
static void test_raft_frame_that_fails_validation_closes_the_connection(void **state)
{
    struct fixture *f = fixture_get(state);
    Raftfs__RaftMessage pb = RAFTFS__RAFT_MESSAGE__INIT;
    Raftfs__SnapshotMeta snap = RAFTFS__SNAPSHOT_META__INIT;
    Raftfs__Conf conf = RAFTFS__CONF__INIT;
    Raftfs__Entry e = RAFTFS__ENTRY__INIT;
    Raftfs__Entry *ents[] = {&e};
    uint64_t voters[RAFT_MAX_NODES + 1];
    unsigned char buf[512];
    size_t len;

    pb.group_id = GROUP_ID;
    pb.from = 2;
    pb.to = 1;
    pb.term = 1;
    pb.type = 200; /* no such raft message type */
    len = raftfs__raft_message__pack(&pb, buf);
    send_raft_expect_close(f, buf, len, "a raft message of type 200");

    pb.type = RAFT_MSG_SNAPSHOT; /* a configuration of 17 voters */
    for (unsigned i = 0; i <= RAFT_MAX_NODES; i++) {
        voters[i] = i + 1;
    }
    conf.n_voters = RAFT_MAX_NODES + 1;
    conf.voters = voters;
    snap.conf = &conf;
    pb.snap = &snap;
    assert_true(raftfs__raft_message__get_packed_size(&pb) <= sizeof buf);
    len = raftfs__raft_message__pack(&pb, buf);
    send_raft_expect_close(f, buf, len, "a snapshot with 17 voters");

    conf.n_voters = 2; /* a configuration naming a member twice */
    voters[1] = 1;
    len = raftfs__raft_message__pack(&pb, buf);
    send_raft_expect_close(f, buf, len, "a snapshot naming voter 1 twice");

    pb.snap = NULL; /* an append whose entry index does not follow pb.index */
    pb.type = RAFT_MSG_APPEND;
    pb.index = 5;
    e.index = 9;
    e.term = 1;
    pb.n_entries = 1;
    pb.entries = ents;
    len = raftfs__raft_message__pack(&pb, buf);
    send_raft_expect_close(f, buf, len, "an append with a misnumbered entry");

    e.index = 6; /* an entry of an unknown type */
    e.type = 77;
    len = raftfs__raft_message__pack(&pb, buf);
    send_raft_expect_close(f, buf, len, "an append with an entry of type 77");
}

/* Raft messages that name term 0 for an entry past the end of the receiver's log: an
 * append whose first new entry has term 0, and a snapshot of term 0. The core reads term 0
 * as "no entry here", so both looked like entries the receiver already had, and it
 * committed past the end of its log and hit an assertion (found by
 * tests/fuzz/fuzz_raft_msg.c). Each is addressed to the target from another member, at the
 * target's own term and last index, so that it reaches the log-matching code. */
static void send_to_target(struct fixture *f, unsigned target, const struct raft_message *m,
                           const char *what)
{
    struct rfs_buf enc;
    int fd;
    assert_int_equal(proto_raft_pack(GROUP_ID, m, &enc), 0);
    fd = raw_connect(f, target);
    raw_send_frame(fd, RAFTFS__FRAME_TYPE__FRAME_RAFT, 0, enc.base, enc.len);
    rfs_free(enc.base);
    expect_closed(fd, what, target);
    close(fd);
    expect_healthy(f, what);
}

static void test_raft_term_0_past_the_log_closes_the_connection(void **state)
{
    struct fixture *f = fixture_get(state);
    static char chunk[] = "snapshot bytes";
    unsigned to[2];
    targets(f, to);
    for (unsigned t = 0; t < 2; t++) {
        struct kv_server_status st;
        struct raft_entry ents[2];
        struct raft_message m;
        assert_int_equal(kv_client_status(f->kc, to[t], &st), 0);
        memset(ents, 0, sizeof ents);
        ents[0].index = st.last_index + 1;
        ents[0].term = 0;
        ents[1].index = st.last_index + 2;
        ents[1].term = st.term;
        memset(&m, 0, sizeof m);
        m.type = RAFT_MSG_APPEND;
        m.from = (to[t] + 1) % N_SERVERS + 1;
        m.to = to[t] + 1;
        m.term = st.term;
        m.index = st.last_index;
        m.log_term = st.term;
        m.commit = st.last_index + 2;
        m.entries = ents;
        m.n_entries = 2;
        send_to_target(f, to[t], &m, "an append with an entry of term 0");

        m.type = RAFT_MSG_SNAPSHOT;
        m.index = 0;
        m.log_term = 0;
        m.commit = 0;
        m.entries = NULL;
        m.n_entries = 0;
        m.snap.index = st.last_index + 5;
        m.snap.term = 0;
        for (unsigned i = 0; i < N_SERVERS; i++) {
            m.snap.conf.voters[m.snap.conf.n_voters++] = i + 1;
        }
        m.data.base = chunk;
        m.data.len = sizeof chunk - 1;
        m.done = true;
        send_to_target(f, to[t], &m, "a snapshot of term 0");
    }
}

/* Not bad input, but the same verdict was at stake: a put of an empty key with an empty
 * value, then a scan, made the scan copy into a buffer never allocated (memcpy to NULL,
 * fatal under UBSan; found by tests/fuzz/fuzz_kv_cmd.c). */
static void test_scan_over_empty_key_and_value_keeps_the_server_up(void **state)
{
    struct fixture *f = fixture_get(state);
    char errmsg[RFS_ERRMSG_SIZE];
    struct kv_scan_result res = {0};
    int rv = kv_client_put(f->kc, "", 0, "", 0, NULL, errmsg);
    if (rv != 0) {
        fail_msg("put of the empty key: %s", errmsg);
    }
    rv = kv_client_scan(f->kc, "", 0, "\x01", 1, 10, &res, errmsg);
    if (rv != 0) {
        cluster_dump_logs(&f->c);
        fail_msg("scan over the empty key: %s", errmsg);
    }
    assert_int_equal(res.n, 1);
    assert_int_equal(res.pairs[0].key.len, 0);
    assert_int_equal(res.pairs[0].value.len, 0);
    kv_scan_result_clear(&res);
    expect_healthy(f, "a scan over the empty key");
}

static void test_raft_frame_for_another_group_closes_the_connection(void **state)
{
    struct fixture *f = fixture_get(state);
    const uint64_t groups[] = {GROUP_ID + 1, 0, UINT64_MAX};
    unsigned to[2];
    targets(f, to);
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        /* A heartbeat that the addressed server would otherwise take: right ids, and the
         * sender is a member. */
        struct raft_message m;
        struct rfs_buf enc;
        char what[64];
        memset(&m, 0, sizeof m);
        m.type = RAFT_MSG_HEARTBEAT;
        m.from = to[1] + 1;
        m.to = to[0] + 1;
        m.term = 1;
        assert_int_equal(proto_raft_pack(groups[i], &m, &enc), 0);
        snprintf(what, sizeof what, "a raft heartbeat for group %llu",
                 (unsigned long long)groups[i]);
        send_raft_expect_close(f, enc.base, enc.len, what);
        rfs_free(enc.base);
    }
}

/* ---- KV requests ---- */

static void test_kv_request_that_does_not_decode_gets_eproto(void **state)
{
    struct fixture *f = fixture_get(state);
    static const unsigned char overlong[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                             0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const unsigned char bad_wire_type[] = {0x0f};
    static const unsigned char cut_key[] = {0x22, 0x64, 'k', 'e', 'y'};
    static const unsigned char cut_reads[] = {0x52, 0x03, 0x0a, 0x09, 'x'};
    const struct {
        const unsigned char *p;
        size_t len;
        const char *what;
    } inputs[] = {
        {overlong, sizeof overlong, "a kv request with an overlong varint"},
        {bad_wire_type, sizeof bad_wire_type, "a kv request with wire type 7"},
        {cut_key, sizeof cut_key, "a kv request with a cut key"},
        {cut_reads, sizeof cut_reads, "a kv request with a cut txn read"},
    };
    unsigned to[2];
    targets(f, to);
    for (unsigned t = 0; t < 2; t++) {
        int fd = raw_connect(f, to[t]);
        for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
            uint32_t st = raw_kv_status(f, fd, inputs[i].p, inputs[i].len, inputs[i].what);
            if (st != RFS_EPROTO) {
                fail_msg("%s to server %u: status %u, want RFS_EPROTO (%d)", inputs[i].what, to[t],
                         st, RFS_EPROTO);
            }
        }
        /* The same connection goes on serving. */
        expect_status_reply(f, fd, to[t], "a status request after malformed kv requests");
        close(fd);
        expect_healthy(f, "malformed kv requests");
    }
}

static void test_kv_request_with_unknown_op_gets_an_error(void **state)
{
    struct fixture *f = fixture_get(state);
    const int ops[] = {1000, -1, 0x7fffffff, RAFTFS__KV_OP__KV_NONE};
    unsigned to[2];
    targets(f, to);
    for (unsigned t = 0; t < 2; t++) {
        int fd = raw_connect(f, to[t]);
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
            Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
            unsigned char buf[128];
            char what[64];
            size_t len;
            uint32_t st;
            req.op = (Raftfs__KvOp)ops[i];
            req.key.data = (uint8_t *)"absurd";
            req.key.len = 6;
            req.value.data = (uint8_t *)"op";
            req.value.len = 2;
            req.client_id = 0x5eed0000u + i;
            req.seq = 1;
            len = raftfs__kv_request__pack(&req, buf);
            snprintf(what, sizeof what, "a kv request with op %d", ops[i]);
            st = raw_kv_status(f, fd, buf, len, what);
            /* The leader puts it in the log and the state machine refuses it; a follower
             * refuses before that. */
            if (t == 0 && st != RFS_EPROTO && st != RFS_ENOTLEADER) {
                fail_msg("%s to the leader (server %u): status %u, want RFS_EPROTO", what, to[t],
                         st);
            }
            if (t == 1 && st != RFS_ENOTLEADER) {
                fail_msg("%s to a follower (server %u): status %u, want RFS_ENOTLEADER", what,
                         to[t], st);
            }
        }
        expect_status_reply(f, fd, to[t], "a status request after unknown ops");
        close(fd);
        expect_healthy(f, "kv requests with unknown ops");
    }
}

/* ---- the servers' own verdict ---- */

/* Lines a sanitizer or a failed assertion leaves in a server's log. */
static const char *const bad_markers[] = {
    "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error", "Assertion", "stopping:",
};

static void test_servers_stop_cleanly_with_no_sanitizer_reports(void **state)
{
    struct fixture *f = fixture_get(state);
    kv_client_free(f->kc); /* its connections would only log noise while servers stop */
    f->kc = NULL;
    for (unsigned i = 0; i < N_SERVERS; i++) {
        int st = cluster_stop_server(&f->c, i);
        if (st != 0) {
            cluster_dump_logs(&f->c);
            fail_msg("server %u exited with status %d after SIGTERM", i, st);
        }
    }
    for (unsigned i = 0; i < N_SERVERS; i++) {
        char path[300], line[1024];
        unsigned lineno = 0;
        FILE *log;
        cluster_log_path(&f->c, i, path, sizeof path);
        log = fopen(path, "r");
        assert_non_null(log);
        while (fgets(line, sizeof line, log) != NULL) {
            lineno++;
            for (size_t k = 0; k < sizeof bad_markers / sizeof bad_markers[0]; k++) {
                if (strstr(line, bad_markers[k]) != NULL) {
                    fclose(log);
                    cluster_dump_logs(&f->c);
                    fail_msg("%s:%u: %s", path, lineno, line);
                }
            }
        }
        fclose(log);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_bytes_close_the_connection),
        cmocka_unit_test(test_length_over_limit_closes_the_connection),
        cmocka_unit_test(test_length_below_12_closes_the_connection),
        cmocka_unit_test(test_truncated_payload_then_eof_closes_the_connection),
        cmocka_unit_test(test_unknown_frame_type_closes_the_connection),
        cmocka_unit_test(test_raft_frame_that_does_not_decode_closes_the_connection),
        cmocka_unit_test(test_raft_frame_that_fails_validation_closes_the_connection),
        cmocka_unit_test(test_raft_term_0_past_the_log_closes_the_connection),
        cmocka_unit_test(test_raft_frame_for_another_group_closes_the_connection),
        cmocka_unit_test(test_kv_request_that_does_not_decode_gets_eproto),
        cmocka_unit_test(test_kv_request_with_unknown_op_gets_an_error),
        cmocka_unit_test(test_scan_over_empty_key_and_value_keeps_the_server_up),
        /* Last: it stops the servers. */
        cmocka_unit_test(test_servers_stop_cleanly_with_no_sanitizer_reports),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
