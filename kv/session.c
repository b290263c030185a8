/* Exactly-once sessions. A client picks a random 64-bit id and numbers its writes; the
 * state machine keeps, per client and bucket, the last sequence number executed there, the
 * log time of that command and its reply:
 *   's' | bucket (u16 BE) | client id (u64 BE)  ->  last seq (u64 LE) | last time ms (u64 LE)
 *                                                   | reply bytes
 * A retry always names the same key, so it meets the same bucket's record; keeping sessions
 * per bucket lets them move with the bucket to another group (shard.c). A retry of the last
 * sequence gets the stored reply, an older one RFS_ESTALE (kv_sm.c). Sessions are dropped when idle
 * for KV_SESSION_TTL_MS of log time; the sweep runs when the log time has moved
 * KV_SWEEP_INTERVAL_MS past the previous sweep, so every replica drops the same sessions at the
 * same log index. */
#include "../common/alloc.h"
#include "../common/bytes.h"
#include "../common/log.h"
#include "internal.h"

#define SESSION_KEY_LEN 11
#define SESSION_HDR     16

static void session_key(char out[SESSION_KEY_LEN], uint32_t bucket, uint64_t client_id)
{
    out[0] = KV_PREFIX_SESSION;
    out[1] = (char)(bucket >> 8);
    out[2] = (char)bucket;
    for (int i = 0; i < 8; i++) {
        out[3 + i] = (char)(client_id >> (56 - 8 * i));
    }
}

int kv_session_get(struct kv_batch *b, uint32_t bucket, uint64_t client_id, int *found,
                   struct kv_session *s, char *errmsg)
{
    char key[SESSION_KEY_LEN];
    int rv;

    *s = (struct kv_session){0};
    session_key(key, bucket, client_id);
    rv = kv_batch_get(b, key, sizeof key, found, &s->raw, errmsg);
    if (rv != 0 || !*found) {
        return rv;
    }
    if (s->raw.len < SESSION_HDR) {
        kv_value_clear(&s->raw);
        rfs_errmsg_printf(errmsg, "session %016llx: record of %zu bytes",
                          (unsigned long long)client_id, s->raw.len);
        return RFS_ECORRUPT;
    }
    s->last_seq = rfs_get_le64(s->raw.data);
    s->last_ms = rfs_get_le64(s->raw.data + 8);
    return 0;
}

void kv_session_clear(struct kv_session *s)
{
    kv_value_clear(&s->raw);
}

const void *kv_session_reply(const struct kv_session *s, size_t *len)
{
    *len = s->raw.len - SESSION_HDR;
    return s->raw.data + SESSION_HDR;
}

int kv_session_put(struct kv_batch *b, uint32_t bucket, uint64_t client_id, uint64_t seq,
                   uint64_t time_ms, const void *reply, size_t len)
{
    char key[SESSION_KEY_LEN];
    unsigned char hdr[SESSION_HDR];

    session_key(key, bucket, client_id);
    rfs_put_le64(hdr, seq);
    rfs_put_le64(hdr + 8, time_ms);
    return kv_batch_put2(b, key, sizeof key, hdr, sizeof hdr, reply, len);
}

int kv_session_sweep(struct kv_batch *b, uint64_t now_ms, char *errmsg)
{
    static const char lo[1] = {KV_PREFIX_SESSION};
    static const char hi[1] = {KV_PREFIX_SESSION + 1};
    struct kv_pending **sorted;
    size_t nsorted, dropped = 0;
    struct kv_cursor c;
    int rv, rv2;

    rv = kv_batch_sorted(b, &sorted, &nsorted);
    if (rv != 0) {
        return rv;
    }
    rv = kv_cursor_open(&c, b->db, b->db->ropts, lo, 1, hi, 1, sorted, nsorted);
    /* Deleting the current key is safe: the batch copies the key, entries never move, and
     * the cursor reads nothing more of the current item after this. */
    for (; rv == 0 && c.valid; kv_cursor_next(&c)) {
        uint64_t last_ms;
        if (c.vlen < SESSION_HDR) {
            rfs_errmsg_printf(errmsg, "session record of %zu bytes", c.vlen);
            rv = RFS_ECORRUPT;
            break;
        }
        last_ms = rfs_get_le64(c.val + 8);
        if (now_ms > last_ms && now_ms - last_ms > KV_SESSION_TTL_MS) {
            rv = kv_batch_delete(b, c.key, c.klen);
            dropped++;
        }
    }
    rv2 = kv_cursor_close(&c, errmsg);
    rfs_free(sorted);
    if (rv == 0 && dropped > 0) {
        rfs_debugf("kv: session sweep at log time %llu dropped %zu", (unsigned long long)now_ms,
                   dropped);
    }
    return rv != 0 ? rv : rv2;
}
