/* kv/count.h: counting the data keys with a given prefix, for statistics (KV_SPACE: the
 * inodes of the filesystem, docs/fs.md "Space"). Not replicated state: read from the
 * server's own database as of its last apply. */
#ifndef KV_COUNT_H
#define KV_COUNT_H

#include <stddef.h>
#include <stdint.h>

/* Keys counted exactly in one bucket before the rest of it is extrapolated. */
#define KV_COUNT_EXACT_PER_BUCKET 1024u
/* Keys counted in one bucket at most when there is nothing to extrapolate from (everything
 * still in LevelDB's memtable, whose size LevelDB does not estimate). */
#define KV_COUNT_MAX_PER_BUCKET 8192u

/* The user keys starting with prefix[0..len) in every bucket this group serves (all of them
 * when unsharded), into *n; *exact is 0 when some bucket held more than
 * KV_COUNT_EXACT_PER_BUCKET of them and the rest was estimated from LevelDB's approximate
 * sizes (keys per byte of the part counted, times the bytes of the part not counted).
 * The cost is bounded: at most KV_COUNT_MAX_PER_BUCKET keys read per bucket. sm is a
 * struct kv_sm (the rfs_sm_ops count_keys entry). Returns 0, RFS_EIO (errmsg), RFS_ENOMEM. */
int kv_sm_count_keys(void *sm, const void *prefix, size_t len, uint64_t *n, int *exact,
                     char *errmsg);

#endif
