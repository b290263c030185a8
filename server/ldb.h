/* server/ldb.h: a LevelDB handle with the options every state machine (kv/, meta/) uses,
 * and the one place LevelDB's errptr strings become RFS_EIO. */
#ifndef SERVER_LDB_H
#define SERVER_LDB_H

#include <stdint.h>

#include <leveldb/c.h>

struct kv_blobs;

struct rfs_ldb {
    leveldb_t *db;
    /* kv/blob.h: where a kv state machine keeps large data values (NULL: inline). Owned by
     * the kv state machine, not closed by rfs_ldb_close. */
    struct kv_blobs *blobs;
    leveldb_options_t *opts;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *filter;
    leveldb_readoptions_t *ropts;
    leveldb_writeoptions_t *wopts;      /* sync = false: the Raft log is the durable record */
    leveldb_writeoptions_t *wopts_sync; /* for building a restored database */
};

/* Open path (create_if_missing, 8 MiB LRU cache, 10-bit bloom filter). Returns 0,
 * RFS_ENOMEM or RFS_EIO. rfs_ldb_close is safe on a zeroed or half-opened struct. */
int rfs_ldb_open(struct rfs_ldb *d, const char *path, char *errmsg);
void rfs_ldb_close(struct rfs_ldb *d);

/* Turn a LevelDB errptr into RFS_EIO: copies "what: reason" into errmsg, frees err. */
int rfs_ldb_error(char *err, char *errmsg, const char *what);

/* Read a u64 LE meta value (0 when absent; *found, if not NULL, says which). Returns 0, RFS_EIO or
 * RFS_ECORRUPT. */
int rfs_ldb_get_u64(struct rfs_ldb *d, const char *key, uint64_t *out, int *found, char *errmsg);

#endif
