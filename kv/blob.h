/* kv/blob.h: large data values kept in append-only blob files beside LevelDB, with a small
 * pointer to each in LevelDB (docs/storage.md, "Blob files").
 *
 * Why: a file's data arrives in 64 KiB blocks. Kept in LevelDB, each byte is written again by
 * its log, its level-0 flush and every compaction that moves it down a level (4-5 times);
 * in a blob file it is written once, and LevelDB moves a 28-byte pointer around instead.
 *
 * A pointer is a data value ('d' key: version u64 LE | user bytes) whose version has bit 63
 * set, 28 bytes: version | file u32 | offset u64 | length u32 | crc32c u32 (all LE). Only
 * kv/batch.c, kv/cursor.c and the collector see pointers: every reader above them gets the
 * value back whole.
 *
 * A blob file `blob-NNNNNNNN` (in the LevelDB directory, so a restored database swaps in with
 * its blobs) is a sequence of records `u32 length | u32 crc32c(bytes) | bytes`. Appends go to
 * the newest file; past KV_BLOB_FILE_MAX it is synced and a new one started. kv_blobs_sync
 * makes every append durable and must run before the LevelDB write that holds their
 * pointers, so a pointer never outlives its bytes in a crash. Files are never changed in
 * place: the collector (kv_blobs_collect) copies the live records of mostly-dead files into
 * the newest one, repoints LevelDB (a synced write) and only then deletes them. */
#ifndef KV_BLOB_H
#define KV_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "../server/ldb.h"

#define KV_BLOB_MIN      4096u /* user bytes from which a value goes to a blob file */
#define KV_BLOB_PTR_LEN  28u
#define KV_BLOB_FILE_MAX (64u << 20) /* a file is sealed once it is this long */
#define KV_BLOB_REC_HDR  8u

struct kv_blobs;

/* Open the blob files in dir (a LevelDB directory); appends go to the newest. Returns 0,
 * RFS_ENOMEM, RFS_EIO or RFS_ECORRUPT (a file name or size that makes no sense). */
int kv_blobs_open(struct kv_blobs **out, const char *dir, char *errmsg);
void kv_blobs_close(struct kv_blobs *bs);

/* Whether a value for LevelDB key key goes to a blob file: a data key ('d') with at least
 * KV_BLOB_MIN bytes after its version. */
int kv_blob_wanted(const void *key, size_t klen, size_t vlen);

/* Whether the value stored under LevelDB key key is a pointer: only a data key's can be (a lock
 * record or a session may well be 28 bytes with bit 63 of its first word set). */
int kv_blob_is_ptr(const void *key, size_t klen, const void *val, size_t len);

/* Append the user bytes of a data value (val = version | bytes, len >= 8) and write its
 * pointer (KV_BLOB_PTR_LEN bytes) to ptr. Returns 0, RFS_EIO or RFS_ENOSPC. */
int kv_blobs_append(struct kv_blobs *bs, const void *val, size_t len, unsigned char *ptr,
                    char *errmsg);

/* The value a pointer stands for (version | bytes), rfs_malloc'd into *out. Returns 0,
 * RFS_ENOMEM, RFS_EIO or RFS_ECORRUPT (missing file, short record, bad checksum). */
int kv_blobs_read(struct kv_blobs *bs, const void *ptr, char **out, size_t *outlen, char *errmsg);

/* Make every append so far durable (fdatasync; a new file's directory entry too). */
int kv_blobs_sync(struct kv_blobs *bs, char *errmsg);

/* A data key was deleted or a large value written: something may have died. */
void kv_blobs_note_change(struct kv_blobs *bs);

/* Reclaim the space of dead records when something changed since the last run and the
 * pause after it has passed (or force): count the live bytes of every
 * file by a scan of the pointers in db, delete the files with none, copy the live records of
 * files less than half alive into the newest file and delete those too. Returns 0, RFS_EIO,
 * RFS_ENOMEM or RFS_ECORRUPT. */
int kv_blobs_collect(struct kv_blobs *bs, struct rfs_ldb *db, int force, char *errmsg);

/* Counters for tests and metrics. */
struct kv_blob_stats {
    uint64_t files;
    uint64_t bytes;     /* total size of the files */
    uint64_t collected; /* files deleted by the collector */
    uint64_t copied;    /* bytes copied out of collected files */
};
void kv_blobs_stats(const struct kv_blobs *bs, struct kv_blob_stats *out);

/* Seal files at this size instead of KV_BLOB_FILE_MAX (tests). */
void kv_blobs_set_file_max(struct kv_blobs *bs, uint64_t bytes);

#endif
