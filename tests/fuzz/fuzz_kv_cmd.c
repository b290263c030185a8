/* libFuzzer target: a KvRequest as the kv state machine sees it, from the Raft log (apply)
 * and from a read (query).
 *
 * The input is a client's frame payload. As server.c's handle_write() does, the leader's
 * clock is appended as field 12 (time_ms), and the result is applied as the data of a NORMAL
 * entry, twice in one apply call (a retry with the same session and sequence number, or a
 * second command reading the first one's writes through the batch overlay), then run as a
 * query. apply must succeed (a command that is malformed or fails its checks only gets a
 * reply saying so; an error from apply would stop the server), every reply must decode as a
 * KvReply, and nothing may crash or trip a sanitizer.
 *
 * Every input goes to two stores: an unsharded one, and one of sharded group 1 that starts
 * at a configuration giving it the even buckets (group 2 the odd ones), so the ownership
 * checks and the migration commands (KV_CONFIG, KV_BUCKET_INSTALL, ...: bytes another group
 * sends) meet the same inputs.
 *
 * Each LevelDB database lives in a directory under /dev/shm (or /tmp) created once per
 * process; it keeps what earlier inputs wrote, so a later input meets real data. It is
 * dropped and recreated every KV_FUZZ_RESET applied entries to keep scans cheap, and removed
 * at exit. */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "kv/kv.h"
#include "proto/raftfs.pb-c.h"

#define KV_FUZZ_RESET    4000
#define KV_FUZZ_START_MS 1700000000000ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct store {
    struct kv_sm *sm;
    char dir[256];
    uint64_t gid; /* 0: unsharded */
};

static struct store stores[2] = {{.gid = 0}, {.gid = 1}};
static uint64_t clock_ms = KV_FUZZ_START_MS;

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void db_drop(struct store *st)
{
    kv_sm_close(st->sm);
    st->sm = NULL;
    if (st->dir[0] != '\0') {
        (void)nftw(st->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
        st->dir[0] = '\0';
    }
}

static void db_drop_all(void)
{
    db_drop(&stores[0]);
    db_drop(&stores[1]);
}

/* The first configuration of a sharded store: even buckets on group 1, odd on group 2. */
static void first_config(struct store *st)
{
    Raftfs__KvRequest req = RAFTFS__KV_REQUEST__INIT;
    Raftfs__MetaConfig cfg = RAFTFS__META_CONFIG__INIT;
    uint64_t owners[KV_DEFAULT_BUCKETS];
    struct raft_entry e = {.term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL};
    struct rfs_buf reply = {NULL, 0};
    char errmsg[RFS_ERRMSG_SIZE];
    for (unsigned b = 0; b < KV_DEFAULT_BUCKETS; b++) {
        owners[b] = b % 2 == 0 ? 1 : 2;
    }
    cfg.version = 1;
    cfg.n_buckets = KV_DEFAULT_BUCKETS;
    cfg.buckets = owners;
    req.op = RAFTFS__KV_OP__KV_CONFIG;
    req.config = &cfg;
    e.data.len = raftfs__kv_request__get_packed_size(&req);
    e.data.base = malloc(e.data.len);
    if (e.data.base == NULL) {
        abort();
    }
    raftfs__kv_request__pack(&req, e.data.base);
    if (kv_sm_ops.apply(st->sm, &e, 1, &reply, errmsg) != 0) {
        fprintf(stderr, "fuzz_kv_cmd: first configuration: %s\n", errmsg);
        abort();
    }
    free(e.data.base);
    rfs_free(reply.base);
}

static void db_open(struct store *st)
{
    char errmsg[RFS_ERRMSG_SIZE];
    char sub[300];
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(st->dir, sizeof st->dir, "%s/raftfs-fuzz-kv-XXXXXX", base);
    if (mkdtemp(st->dir) == NULL) {
        fprintf(stderr, "fuzz_kv_cmd: mkdtemp %s: %s\n", st->dir, strerror(errno));
        abort();
    }
    snprintf(sub, sizeof sub, "%s/kv", st->dir);
    if (kv_sm_open(&st->sm, sub, KV_DEFAULT_BUCKETS, errmsg) != 0 ||
        kv_sm_set_sharding(st->sm, st->gid, errmsg) != 0) {
        fprintf(stderr, "fuzz_kv_cmd: %s\n", errmsg);
        abort();
    }
    if (st->gid != 0) {
        first_config(st);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rfs_log_set_level(RFS_LOG_ERROR);
    db_open(&stores[0]);
    db_open(&stores[1]);
    atexit(db_drop_all);
    return 0;
}

/* payload + field 12 (time_ms) as a varint, as server.c's stamp_time() writes it. */
static uint8_t *stamp(const uint8_t *data, size_t size, uint64_t t, size_t *out_len)
{
    uint8_t *buf = malloc(size + 11);
    size_t n = size;
    if (buf == NULL) {
        abort();
    }
    if (size > 0) {
        memcpy(buf, data, size);
    }
    buf[n++] = 12 << 3;
    do {
        uint8_t b = t & 0x7f;
        t >>= 7;
        buf[n++] = b | (t ? 0x80 : 0);
    } while (t);
    *out_len = n;
    return buf;
}

static void check_reply(const struct rfs_buf *reply, const char *what)
{
    Raftfs__KvReply *rep;
    if (reply->base == NULL) {
        fprintf(stderr, "fuzz_kv_cmd: %s: no reply\n", what);
        abort();
    }
    rep = raftfs__kv_reply__unpack(NULL, reply->len, reply->base);
    if (rep == NULL) {
        fprintf(stderr, "fuzz_kv_cmd: %s: the reply (%zu bytes) does not decode\n", what,
                reply->len);
        abort();
    }
    raftfs__kv_reply__free_unpacked(rep, NULL);
}

static void run_one(struct store *st, const uint8_t *data, size_t size)
{
    struct kv_sm *sm;
    struct raft_entry ents[2];
    struct rfs_buf replies[2];
    struct rfs_buf reply = {NULL, 0};
    char errmsg[RFS_ERRMSG_SIZE] = "";
    raft_index applied;
    int rv;

    if (kv_sm_ops.applied(st->sm) >= KV_FUZZ_RESET) {
        db_drop(st);
        db_open(st);
    }
    sm = st->sm;
    applied = kv_sm_ops.applied(sm);
    for (unsigned i = 0; i < 2; i++) {
        size_t len;
        ents[i].term = 1;
        ents[i].index = applied + 1 + i;
        ents[i].type = RAFT_ENTRY_NORMAL;
        ents[i].data.base = stamp(data, size, clock_ms, &len);
        ents[i].data.len = len;
        clock_ms += 1000;
    }
    rv = kv_sm_ops.apply(sm, ents, 2, replies, errmsg);
    if (rv != 0) {
        fprintf(stderr, "fuzz_kv_cmd: apply failed (%s): %s\n", rfs_strerror(rv), errmsg);
        abort();
    }
    if (kv_sm_ops.applied(sm) != applied + 2) {
        fprintf(stderr, "fuzz_kv_cmd: applied index %llu after applying up to %llu\n",
                (unsigned long long)kv_sm_ops.applied(sm), (unsigned long long)(applied + 2));
        abort();
    }
    for (unsigned i = 0; i < 2; i++) {
        check_reply(&replies[i], "apply");
        rfs_free(replies[i].base);
        free(ents[i].data.base);
    }
    rv = kv_sm_ops.query(sm, data, size, &reply, errmsg);
    if (rv != 0) {
        fprintf(stderr, "fuzz_kv_cmd: query failed (%s): %s\n", rfs_strerror(rv), errmsg);
        abort();
    }
    check_reply(&reply, "query");
    rfs_free(reply.base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_one(&stores[0], data, size);
    run_one(&stores[1], data, size);
    return 0;
}
