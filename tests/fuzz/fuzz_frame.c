/* libFuzzer target: the bytes a peer sends to a server's port, through rpc/conn.c's frame
 * parser, for real.
 *
 * Input: byte 0 chooses how the rest is cut into writes (0: one write; n: writes of n bytes,
 * at most 64 of them); the rest is the byte stream. One end of a socketpair becomes an rpc
 * connection in an rpc loop (rpc_conn_create, as an accepted socket would; the parser, the
 * input buffer and the close path are the production code). The harness writes each piece
 * into the other end and runs one loop iteration, then ends its side (EOF) and runs the loop
 * until the connection is closed. Its handler accepts the frame types a shard server
 * accepts and does with the payloads what server.c does: a Raft payload goes through
 * proto_raft_unpack() (the connection is closed if it fails or names another group), a KV
 * request is unpacked (a KvReply with RFS_EPROTO if that fails), a status request gets a
 * reply. The limit on the length field is 1 MiB rather than the server's 64 MiB: the checks
 * are the same code, and the fuzzer does not spend its time allocating 64 MiB buffers.
 *
 * Checked besides crashes and sanitizer reports: the frames delivered are exactly those a
 * reference reading of the stream finds, in order, with the same type, request id and
 * payload, up to the first header the rules refuse (length below 12 or over the limit,
 * unknown type) or until the handler closes the connection; the connection is always
 * closed once the stream ends, and on_close runs exactly once. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/log.h"
#include "proto/proto.h"
#include "rpc/internal.h"
#include "rpc/rpc.h"

#define FUZZ_MAX_FRAME  (1u << 20)
#define FUZZ_MAX_WRITES 64
#define FUZZ_GROUP      1

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct expect {
    uint32_t type;
    uint64_t req_id;
    const uint8_t *payload;
    size_t len;
};

struct run {
    struct expect *want; /* frames the reference reading finds */
    size_t n_want;
    size_t n_got;
    bool handler_closed; /* the handler closed the connection (bad Raft payload) */
    int closes;
};

static struct rpc_loop *loop;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_frame: %s\n", what);
    abort();
}

static bool server_type(uint32_t type)
{
    return type == RAFTFS__FRAME_TYPE__FRAME_RAFT || type == RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST ||
           type == RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST;
}

static bool known_type(uint32_t type, void *data)
{
    (void)data;
    return server_type(type);
}

/* The frames in s[0..n) as docs/rpc.md defines them, up to the first refused header or an
 * incomplete frame. */
static size_t reference_read(const uint8_t *s, size_t n, struct expect *out, size_t cap)
{
    size_t pos = 0, k = 0;
    while (n - pos >= RPC_HEADER_SIZE && k < cap) {
        uint32_t len = rfs_get_le32(s + pos);
        uint32_t type = rfs_get_le32(s + pos + 4);
        if (len < 12 || len > FUZZ_MAX_FRAME || !server_type(type)) {
            break;
        }
        if (n - pos - 4 < len) {
            break;
        }
        out[k].type = type;
        out[k].req_id = rfs_get_le64(s + pos + 8);
        out[k].payload = s + pos + RPC_HEADER_SIZE;
        out[k].len = len - 12;
        k++;
        pos += 4 + (size_t)len;
    }
    return k;
}

static void reply_kv_status(struct rpc_conn *c, uint64_t req_id, int status)
{
    Raftfs__KvReply rep = RAFTFS__KV_REPLY__INIT;
    uint8_t buf[64];
    rep.status = (uint32_t)status;
    (void)rpc_conn_send(c, RAFTFS__FRAME_TYPE__FRAME_KV_REPLY, req_id, buf,
                        raftfs__kv_reply__pack(&rep, buf));
}

static void on_frame(struct rpc_conn *c, uint32_t type, uint64_t req_id, const void *payload,
                     size_t len, void *data)
{
    struct run *run = data;
    const struct expect *w;
    if (run->handler_closed) {
        fail("a frame was delivered after rpc_conn_close()");
    }
    if (run->n_got >= run->n_want) {
        fail("a frame was delivered that the stream does not hold");
    }
    w = &run->want[run->n_got++];
    if (type != w->type || req_id != w->req_id || len != w->len ||
        (len > 0 && memcmp(payload, w->payload, len) != 0)) {
        fail("a delivered frame differs from the stream");
    }
    switch (type) {
        case RAFTFS__FRAME_TYPE__FRAME_RAFT: {
            struct proto_raft_msg pm;
            char errmsg[RFS_ERRMSG_SIZE];
            if (proto_raft_unpack(payload, len, &pm, errmsg) != 0) {
                run->handler_closed = true;
                rpc_conn_close(c, errmsg);
                return;
            }
            if (pm.group_id != FUZZ_GROUP) {
                run->handler_closed = true;
                rpc_conn_close(c, "raft message for another group");
            }
            proto_raft_msg_free(&pm);
            break;
        }
        case RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST: {
            Raftfs__KvRequest *req = raftfs__kv_request__unpack(&proto_allocator, len, payload);
            if (req == NULL) {
                reply_kv_status(c, req_id, RFS_EPROTO);
                return;
            }
            raftfs__kv_request__free_unpacked(req, &proto_allocator);
            reply_kv_status(c, req_id, RFS_ENOTLEADER);
            break;
        }
        case RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST: {
            Raftfs__StatusReply rep = RAFTFS__STATUS_REPLY__INIT;
            uint8_t buf[128];
            rep.id = 1;
            rep.group_id = FUZZ_GROUP;
            (void)rpc_conn_send(c, RAFTFS__FRAME_TYPE__FRAME_STATUS_REPLY, req_id, buf,
                                raftfs__status_reply__pack(&rep, buf));
            break;
        }
        default:
            fail("a frame of a type known_type() refused was delivered");
    }
}

static void on_close(struct rpc_conn *c, void *data)
{
    struct run *run = data;
    (void)c;
    run->closes++;
}

/* One loop iteration: rpc_loop_run() returns after the iteration in which stop was asked. */
static void loop_once(void)
{
    rpc_loop_stop(loop);
    if (rpc_loop_run(loop) != 0) {
        fail("rpc_loop_run failed");
    }
}

/* Read and drop whatever the connection sent back. */
static void drain(int fd)
{
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char errmsg[RFS_ERRMSG_SIZE];
    (void)argc;
    (void)argv;
    rfs_log_set_level(RFS_LOG_ERROR);
    if (rpc_loop_new(&loop, errmsg) != 0) {
        fail(errmsg);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct expect *want;
    struct run run;
    struct rpc_handler h;
    struct rpc_conn *c;
    const uint8_t *s;
    size_t n, piece, pos = 0;
    int sv[2];

    if (size == 0) {
        return 0;
    }
    s = data + 1;
    n = size - 1;
    piece = data[0] == 0 ? n : data[0];
    if (piece == 0 || n / piece >= FUZZ_MAX_WRITES) {
        piece = n / FUZZ_MAX_WRITES + 1;
    }
    want = malloc((n / RPC_HEADER_SIZE + 1) * sizeof *want);
    if (want == NULL) {
        fail("out of memory");
    }
    memset(&run, 0, sizeof run);
    run.want = want;
    run.n_want = reference_read(s, n, want, n / RPC_HEADER_SIZE + 1);

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
        fail("socketpair");
    }
    memset(&h, 0, sizeof h);
    h.data = &run;
    h.known_type = known_type;
    h.on_frame = on_frame;
    h.on_close = on_close;
    h.max_frame = FUZZ_MAX_FRAME;
    c = rpc_conn_create(loop, sv[0], &h, "fuzz", NULL, NULL);
    if (c == NULL) {
        fail("rpc_conn_create");
    }
    rpc_conn_opened(c);

    while (pos < n && run.closes == 0) {
        size_t len = n - pos < piece ? n - pos : piece;
        ssize_t w = write(sv[1], s + pos, len);
        if (w < 0 && errno != EAGAIN && errno != EPIPE && errno != ECONNRESET) {
            fail("write");
        }
        if (w < 0 && errno != EAGAIN) {
            break; /* the connection is gone: it must have been closed */
        }
        if (w > 0) {
            pos += (size_t)w;
        }
        loop_once();
        drain(sv[1]);
    }
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 8 && run.closes == 0; i++) {
        loop_once();
        drain(sv[1]);
    }
    close(sv[1]);
    if (run.closes != 1) {
        fail("the connection was not closed exactly once after the stream ended");
    }
    if (!run.handler_closed && run.n_got != run.n_want) {
        fail("a complete frame of the stream was not delivered");
    }
    free(want);
    return 0;
}
