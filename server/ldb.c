/* A LevelDB handle with the options every state machine uses, and the one place
 * LevelDB's errptr strings become RFS_EIO. */
#include <stdio.h>
#include <string.h>

#include "../common/bytes.h"
#include "../common/err.h"
#include "ldb.h"

#define LDB_CACHE_BYTES        (8u << 20)
#define LDB_BLOOM_BITS         10
#define LDB_WRITE_BUFFER_BYTES (32u << 20)
#define LDB_MAX_FILE_BYTES     (16u << 20)

int rfs_ldb_error(char *err, char *errmsg, const char *what)
{
    rfs_errmsg_printf(errmsg, "%s: %s", what, err != NULL ? err : "unknown LevelDB error");
    leveldb_free(err);
    return RFS_EIO;
}

int rfs_ldb_open(struct rfs_ldb *d, const char *path, char *errmsg)
{
    char *err = NULL;

    d->opts = leveldb_options_create();
    d->cache = leveldb_cache_create_lru(LDB_CACHE_BYTES);
    d->filter = leveldb_filterpolicy_create_bloom(LDB_BLOOM_BITS);
    d->ropts = leveldb_readoptions_create();
    d->wopts = leveldb_writeoptions_create();
    d->wopts_sync = leveldb_writeoptions_create();
    if (d->opts == NULL || d->cache == NULL || d->filter == NULL || d->ropts == NULL ||
        d->wopts == NULL || d->wopts_sync == NULL) {
        rfs_ldb_close(d);
        rfs_errmsg_printf(errmsg, "leveldb options: out of memory");
        return RFS_ENOMEM;
    }
    leveldb_options_set_create_if_missing(d->opts, 1);
    leveldb_options_set_cache(d->opts, d->cache);
    leveldb_options_set_filter_policy(d->opts, d->filter);
    /* File data arrives in 64 KiB blocks, up to a MiB per log entry: a larger memtable and
     * larger tables mean fewer level-0 flushes and compactions to rewrite them (the
     * defaults, 4 MiB and 2 MiB, are sized for small values). */
    leveldb_options_set_write_buffer_size(d->opts, LDB_WRITE_BUFFER_BYTES);
    leveldb_options_set_max_file_size(d->opts, LDB_MAX_FILE_BYTES);
    leveldb_writeoptions_set_sync(d->wopts, 0);
    leveldb_writeoptions_set_sync(d->wopts_sync, 1);

    d->db = leveldb_open(d->opts, path, &err);
    if (err != NULL) {
        char what[RFS_ERRMSG_SIZE];
        snprintf(what, sizeof what, "open %s", path);
        d->db = NULL;
        rfs_ldb_close(d);
        return rfs_ldb_error(err, errmsg, what);
    }
    return 0;
}

void rfs_ldb_close(struct rfs_ldb *d)
{
    /* The database first: it uses the cache and the filter policy. */
    if (d->db != NULL) {
        leveldb_close(d->db);
    }
    if (d->opts != NULL) {
        leveldb_options_destroy(d->opts);
    }
    if (d->filter != NULL) {
        leveldb_filterpolicy_destroy(d->filter);
    }
    if (d->cache != NULL) {
        leveldb_cache_destroy(d->cache);
    }
    if (d->ropts != NULL) {
        leveldb_readoptions_destroy(d->ropts);
    }
    if (d->wopts != NULL) {
        leveldb_writeoptions_destroy(d->wopts);
    }
    if (d->wopts_sync != NULL) {
        leveldb_writeoptions_destroy(d->wopts_sync);
    }
    *d = (struct rfs_ldb){0};
}

int rfs_ldb_get_u64(struct rfs_ldb *d, const char *key, uint64_t *out, int *found, char *errmsg)
{
    char *err = NULL;
    size_t len = 0;
    char *val = leveldb_get(d->db, d->ropts, key, strlen(key), &len, &err);

    if (err != NULL) {
        return rfs_ldb_error(err, errmsg, "read meta");
    }
    *out = 0;
    if (found != NULL) {
        *found = val != NULL;
    }
    if (val == NULL) {
        return 0;
    }
    if (len != 8) {
        leveldb_free(val);
        rfs_errmsg_printf(errmsg, "meta %s: %zu bytes, expected 8", key, len);
        return RFS_ECORRUPT;
    }
    *out = rfs_get_le64(val);
    leveldb_free(val);
    return 0;
}
