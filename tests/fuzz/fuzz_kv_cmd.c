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
 * The LevelDB database lives in a directory under /dev/shm (or /tmp) created once per
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

static struct kv_sm *sm;
static char dir[256];
static uint64_t clock_ms = KV_FUZZ_START_MS;

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void db_drop(void)
{
    kv_sm_close(sm);
    sm = NULL;
    if (dir[0] != '\0') {
        (void)nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
        dir[0] = '\0';
    }
}

static void db_open(void)
{
    char errmsg[RFS_ERRMSG_SIZE];
    char sub[300];
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/raftfs-fuzz-kv-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "fuzz_kv_cmd: mkdtemp %s: %s\n", dir, strerror(errno));
        abort();
    }
    snprintf(sub, sizeof sub, "%s/kv", dir);
    if (kv_sm_open(&sm, sub, KV_DEFAULT_BUCKETS, errmsg) != 0) {
        fprintf(stderr, "fuzz_kv_cmd: %s\n", errmsg);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rfs_log_set_level(RFS_LOG_ERROR);
    db_open();
    atexit(db_drop);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct raft_entry ents[2];
    struct rfs_buf replies[2];
    struct rfs_buf reply = {NULL, 0};
    char errmsg[RFS_ERRMSG_SIZE] = "";
    raft_index applied;
    int rv;

    if (kv_sm_ops.applied(sm) >= KV_FUZZ_RESET) {
        db_drop();
        db_open();
    }
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
    return 0;
}
