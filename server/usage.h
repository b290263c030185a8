/* server/usage.h: a server's answer to KV_SPACE (docs/fs.md, "Space"): what its data
 * directory takes on disk (every file under it: LevelDB, blob files, the Raft log and
 * snapshots), what its filesystem has left, and how many keys of its state machine start
 * with the prefix asked (rfs_sm_ops.count_keys). The directory is walked and statvfs'd, and
 * the keys counted, at most once every SERVER_USAGE_CACHE_MS (per prefix: the last one
 * asked is kept), so mounts asking every second cost little. All calls on the server's
 * event-loop thread. */
#ifndef SERVER_USAGE_H
#define SERVER_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "sm.h"

#define SERVER_USAGE_CACHE_MS   1000
#define SERVER_USAGE_PREFIX_MAX 64
/* Directory levels walked below the data directory (it has two or three). */
#define SERVER_USAGE_MAX_DEPTH 8

struct server_usage {
    const char *dir;   /* borrowed: the server's data directory */
    uint64_t min_free; /* bytes: --min-free-mb */
    char host[64];
    /* the disk, as of disk_ms */
    bool have_disk;
    uint64_t disk_ms;
    uint64_t used, free, total, fsid;
    /* the key count of prefix, as of count_ms */
    bool have_count;
    uint64_t count_ms;
    unsigned char prefix[SERVER_USAGE_PREFIX_MAX];
    size_t prefix_len;
    uint64_t keys;
    int exact;
};

void server_usage_init(struct server_usage *u, const char *dir, uint64_t min_free_mb);

/* Bytes allocated on disk by the regular files under dir (SERVER_USAGE_MAX_DEPTH levels;
 * what cannot be read counts 0). */
uint64_t server_usage_dir_bytes(const char *dir);

/* The packed KvReply to a KV_SPACE request for prefix[0..len) (the request's value) into
 * *out (rfs_malloc'd, the caller frees): status 0 and a packed SpaceReply, or a non-zero
 * status with the reason (a prefix longer than SERVER_USAGE_PREFIX_MAX: RFS_EINVAL; the
 * count failed: its code). ops/sm: the state machine (no count_keys: keys 0, not exact).
 * Returns 0, or RFS_ENOMEM (nothing to send). */
int server_usage_reply(struct server_usage *u, const struct rfs_sm_ops *ops, void *sm,
                       const void *prefix, size_t len, uint64_t now_ms, struct rfs_buf *out);

#endif
