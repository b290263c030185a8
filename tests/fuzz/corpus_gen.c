/* Writes the seed corpora of the fuzz targets: valid encodings of every Raft message type,
 * of every KV op, and of frame streams. Run from the repository root after changing
 * proto/raftfs.proto (the files are committed; the fuzzers only read them):
 *
 *   make MODE=asan build/asan/libraftfs.a
 *   cc -std=c11 -D_GNU_SOURCE -I. -Ibuild/gen -fsanitize=address,undefined \
 *      tests/fuzz/corpus_gen.c build/asan/libraftfs.a -lprotobuf-c -lleveldb -lpthread \
 *      -o build/corpus_gen && build/corpus_gen tests/fuzz/corpus
 *
 * The Raft messages fit fuzz_raft_msg's core (server 1 of {1, 2, 3}, log up to index 7 at
 * term 3, a leader at term 4), so that they get past the term and log checks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "proto/proto.h"

static const char *root;

static void write_file(const char *target, const char *name, const void *buf, size_t len)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* ---- Raft messages ---- */

static struct rfs_buf raft_pack(const struct raft_message *m)
{
    struct rfs_buf b;
    if (proto_raft_pack(1, m, &b) != 0) {
        fprintf(stderr, "proto_raft_pack failed\n");
        exit(1);
    }
    return b;
}

static struct raft_message raft_base(uint8_t type, uint64_t term)
{
    struct raft_message m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.from = 2;
    m.to = 1;
    m.term = term;
    return m;
}

static void raft_corpus(struct rfs_buf *frames, unsigned *n_frames)
{
    static char cmd1[] = {0x10, 0x01, 0x18, 0x02, 0x22, 0x01, 'k', 0x2a, 0x01, 'v'};
    static char snap_chunk[] = "state machine bytes";
    uint8_t cc[RAFT_CONF_CHANGE_SIZE];
    struct raft_conf_change change = {RAFT_CC_ADD_LEARNER, 4};
    struct raft_entry ents[3];
    struct raft_entry conflict;
    struct raft_message m;
    struct {
        const char *name;
        struct raft_message m;
    } msgs[16];
    unsigned n = 0;

    raft_conf_change_encode(&change, cc);
    for (unsigned i = 0; i < 3; i++) {
        ents[i].term = 4;
        ents[i].index = 8 + i;
        ents[i].type = RAFT_ENTRY_NORMAL;
        ents[i].data.base = cmd1;
        ents[i].data.len = sizeof cmd1;
    }
    ents[1].type = RAFT_ENTRY_NOOP;
    ents[1].data.base = NULL;
    ents[1].data.len = 0;
    ents[2].type = RAFT_ENTRY_CONF;
    ents[2].data.base = cc;
    ents[2].data.len = sizeof cc;

    m = raft_base(RAFT_MSG_APPEND, 4); /* new leader 2 appends after 7 */
    m.index = 7;
    m.log_term = 3;
    m.commit = 8;
    m.entries = ents;
    m.n_entries = 3;
    msgs[n].name = "append";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_APPEND, 4); /* conflicting: overwrites 6 and 7 */
    m.index = 5;
    m.log_term = 2;
    m.commit = 6;
    conflict = ents[0];
    conflict.index = 6;
    m.entries = &conflict;
    m.n_entries = 1;
    msgs[n].name = "append_conflict";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_APPEND_RESP, 4);
    m.index = 8;
    msgs[n].name = "append_resp";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_APPEND_RESP, 4);
    m.reject = true;
    m.index = 7;
    m.hint_index = 2;
    m.hint_term = 1;
    msgs[n].name = "append_resp_reject";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_VOTE, 4);
    m.index = 7;
    m.log_term = 3;
    msgs[n].name = "vote";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_VOTE_RESP, 4);
    msgs[n].name = "vote_resp";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_PREVOTE, 4);
    m.index = 9;
    m.log_term = 3;
    m.transfer = true;
    msgs[n].name = "prevote";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_PREVOTE_RESP, 4);
    m.reject = true;
    msgs[n].name = "prevote_resp";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_HEARTBEAT, 4);
    m.commit = 7;
    m.read_seq = 3;
    msgs[n].name = "heartbeat";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_HEARTBEAT_RESP, 4);
    m.read_seq = 1;
    msgs[n].name = "heartbeat_resp";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_SNAPSHOT, 4);
    m.snap.index = 12;
    m.snap.term = 4;
    m.snap.conf.n_voters = 3;
    m.snap.conf.voters[0] = 1;
    m.snap.conf.voters[1] = 2;
    m.snap.conf.voters[2] = 3;
    m.snap.conf.n_learners = 1;
    m.snap.conf.learners[0] = 4;
    m.data.base = snap_chunk;
    m.data.len = sizeof snap_chunk - 1;
    m.done = true;
    msgs[n].name = "snapshot";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_SNAPSHOT_RESP, 4);
    m.index = 3;
    m.offset = 8;
    msgs[n].name = "snapshot_resp";
    msgs[n++].m = m;
    m = raft_base(RAFT_MSG_TIMEOUT_NOW, 3);
    msgs[n].name = "timeout_now";
    msgs[n++].m = m;

    for (unsigned i = 0; i < n; i++) {
        struct rfs_buf b = raft_pack(&msgs[i].m);
        write_file("fuzz_raft_msg", msgs[i].name, b.base, b.len);
        if (i < 3 || msgs[i].m.type == RAFT_MSG_HEARTBEAT) {
            frames[(*n_frames)++] = b;
        } else {
            rfs_free(b.base);
        }
    }
}

/* ---- KV requests ---- */

static struct rfs_buf kv_pack(const Raftfs__KvRequest *r)
{
    struct rfs_buf b;
    b.len = raftfs__kv_request__get_packed_size(r);
    b.base = rfs_malloc(b.len ? b.len : 1);
    if (b.base == NULL) {
        exit(1);
    }
    b.len = raftfs__kv_request__pack(r, b.base);
    return b;
}

#define BIN(s) ((ProtobufCBinaryData){sizeof(s) - 1, (uint8_t *)(s)})

static void kv_corpus(struct rfs_buf *frames, unsigned *n_frames)
{
    Raftfs__TxnRead rd = RAFTFS__TXN_READ__INIT;
    Raftfs__TxnWrite wr[2] = {RAFTFS__TXN_WRITE__INIT, RAFTFS__TXN_WRITE__INIT};
    Raftfs__TxnRead *rds[1] = {&rd};
    Raftfs__TxnWrite *wrs[2] = {&wr[0], &wr[1]};
    struct {
        const char *name;
        Raftfs__KvRequest r;
    } reqs[10];
    unsigned n = 0;

    for (unsigned i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        raftfs__kv_request__init(&reqs[i].r);
        reqs[i].r.client_id = 7;
        reqs[i].r.seq = i + 1;
    }
    reqs[n].name = "put";
    reqs[n].r.op = RAFTFS__KV_OP__KV_PUT;
    reqs[n].r.key = BIN("{user}:alice");
    reqs[n++].r.value = BIN("hello");
    reqs[n].name = "get";
    reqs[n].r.op = RAFTFS__KV_OP__KV_GET;
    reqs[n].r.client_id = 0;
    reqs[n++].r.key = BIN("{user}:alice");
    reqs[n].name = "append";
    reqs[n].r.op = RAFTFS__KV_OP__KV_APPEND;
    reqs[n].r.key = BIN("{user}:alice");
    reqs[n++].r.value = BIN(", world");
    reqs[n].name = "delete";
    reqs[n].r.op = RAFTFS__KV_OP__KV_DELETE;
    reqs[n++].r.key = BIN("{user}:alice");
    reqs[n].name = "cas";
    reqs[n].r.op = RAFTFS__KV_OP__KV_CAS;
    reqs[n].r.key = BIN("counter");
    reqs[n].r.expect = BIN("1");
    reqs[n++].r.value = BIN("2");
    reqs[n].name = "cas_absent";
    reqs[n].r.op = RAFTFS__KV_OP__KV_CAS;
    reqs[n].r.key = BIN("counter");
    reqs[n].r.expect_absent = true;
    reqs[n++].r.value = BIN("1");
    reqs[n].name = "scan";
    reqs[n].r.op = RAFTFS__KV_OP__KV_SCAN;
    reqs[n].r.client_id = 0;
    reqs[n].r.key = BIN("a");
    reqs[n].r.end_key = BIN("z");
    reqs[n++].r.limit = 3;
    rd.key = BIN("counter");
    rd.version = 0;
    wr[0].key = BIN("counter");
    wr[0].value = BIN("10");
    wr[1].key = BIN("{user}:alice");
    wr[1].delete_ = true;
    reqs[n].name = "txn";
    reqs[n].r.op = RAFTFS__KV_OP__KV_TXN;
    reqs[n].r.n_reads = 1;
    reqs[n].r.reads = rds;
    reqs[n].r.n_writes = 2;
    reqs[n++].r.writes = wrs;
    reqs[n].name = "put_stamped_group";
    reqs[n].r.op = RAFTFS__KV_OP__KV_PUT;
    reqs[n].r.key = BIN("k");
    reqs[n].r.value = BIN("v");
    reqs[n].r.time_ms = 1700000000000ull;
    reqs[n++].r.group_id = 1;

    for (unsigned i = 0; i < n; i++) {
        struct rfs_buf b = kv_pack(&reqs[i].r);
        write_file("fuzz_kv_cmd", reqs[i].name, b.base, b.len);
        if (i < 2 || reqs[i].r.op == RAFTFS__KV_OP__KV_TXN) {
            frames[(*n_frames)++] = b;
        } else {
            rfs_free(b.base);
        }
    }
}

/* ---- frame streams: byte 0 is fuzz_frame's write size, then frames ---- */

static size_t frame_put(uint8_t *out, uint32_t type, uint64_t req_id, const struct rfs_buf *p)
{
    rfs_put_le32(out, (uint32_t)(12 + p->len));
    rfs_put_le32(out + 4, type);
    rfs_put_le64(out + 8, req_id);
    if (p->len > 0) {
        memcpy(out + 16, p->base, p->len);
    }
    return 16 + p->len;
}

static void frame_corpus(const struct rfs_buf *raft, unsigned n_raft, const struct rfs_buf *kv,
                         unsigned n_kv)
{
    uint8_t buf[8192];
    struct rfs_buf empty = {NULL, 0};
    size_t len;
    char name[64];

    buf[0] = 0;
    len = 1 + frame_put(buf + 1, RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST, 1, &empty);
    write_file("fuzz_frame", "status", buf, len);

    for (unsigned i = 0; i < n_raft; i++) {
        buf[0] = 0;
        len = 1 + frame_put(buf + 1, RAFTFS__FRAME_TYPE__FRAME_RAFT, 0, &raft[i]);
        snprintf(name, sizeof name, "raft_%u", i);
        write_file("fuzz_frame", name, buf, len);
    }
    for (unsigned i = 0; i < n_kv; i++) {
        buf[0] = 0;
        len = 1 + frame_put(buf + 1, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, 100 + i, &kv[i]);
        snprintf(name, sizeof name, "kv_%u", i);
        write_file("fuzz_frame", name, buf, len);
    }
    /* Pipelined: status, kv, raft, kv in one stream; then the same written 5 bytes at a
     * time, and 1 byte at a time. */
    len = 1;
    len += frame_put(buf + len, RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST, 1, &empty);
    len += frame_put(buf + len, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, 2, &kv[0]);
    len += frame_put(buf + len, RAFTFS__FRAME_TYPE__FRAME_RAFT, 0, &raft[0]);
    len += frame_put(buf + len, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, 3, &kv[1]);
    buf[0] = 0;
    write_file("fuzz_frame", "pipelined", buf, len);
    buf[0] = 5;
    write_file("fuzz_frame", "pipelined_5", buf, len);
    buf[0] = 1;
    write_file("fuzz_frame", "pipelined_1", buf, len);
    /* A Raft payload that does not decode (the handler closes the connection), then a
     * frame that must not be delivered; a KV payload that does not decode, then a status
     * request (both answered). */
    {
        static uint8_t garbage[] = {0x0f, 0x01};
        struct rfs_buf g = {garbage, sizeof garbage};
        len = 1;
        len += frame_put(buf + len, RAFTFS__FRAME_TYPE__FRAME_RAFT, 0, &g);
        len += frame_put(buf + len, RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST, 6, &empty);
        buf[0] = 0;
        write_file("fuzz_frame", "bad_raft_then_status", buf, len);
        len = 1;
        len += frame_put(buf + len, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, 7, &g);
        len += frame_put(buf + len, RAFTFS__FRAME_TYPE__FRAME_STATUS_REQUEST, 8, &empty);
        write_file("fuzz_frame", "bad_kv_then_status", buf, len);
    }
    /* A good frame, then a header over the limit. */
    len = 1 + frame_put(buf + 1, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST, 4, &kv[0]);
    rfs_put_le32(buf + len, 0xFFFFFFFFu);
    rfs_put_le32(buf + len + 4, RAFTFS__FRAME_TYPE__FRAME_KV_REQUEST);
    rfs_put_le64(buf + len + 8, 5);
    len += 16;
    buf[0] = 0;
    write_file("fuzz_frame", "then_too_long", buf, len);
}

int main(int argc, char **argv)
{
    struct rfs_buf raft[8], kv[8];
    unsigned n_raft = 0, n_kv = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: corpus_gen DIR (tests/fuzz/corpus)\n");
        return 2;
    }
    root = argv[1];
    if (mkdir(root, 0755) != 0 && errno != EEXIST) {
        perror(root);
        return 1;
    }
    raft_corpus(raft, &n_raft);
    kv_corpus(kv, &n_kv);
    frame_corpus(raft, n_raft, kv, n_kv);
    for (unsigned i = 0; i < n_raft; i++) {
        rfs_free(raft[i].base);
    }
    for (unsigned i = 0; i < n_kv; i++) {
        rfs_free(kv[i].base);
    }
    return 0;
}
