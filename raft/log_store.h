/* raft/log_store.h: durable storage for one Raft server: a segmented, checksummed,
 * append-only log holding entries and the hard state, plus one snapshot file, in one
 * directory (format and recovery rules: docs/storage.md).
 *
 * Conventions for the whole header:
 * - Functions that can fail return 0 or a positive RFS_E* code (common/err.h) and write one
 *   line into `errmsg` (RFS_ERRMSG_SIZE bytes, owned by the caller; may be NULL).
 * - A store is used by one thread (the server's event loop); it has no locks of its own.
 * - Arguments are borrowed for the length of the call; entry and snapshot bytes are copied
 *   (or written out) before the call returns.
 * - Fsync gate: after any failed write, sync, truncate, rename or unlink the store is
 *   poisoned. That call returns RFS_EIO or RFS_ENOSPC; every later call returns RFS_EIO
 *   with "store failed earlier: <first reason>". Nothing may be reported durable once the
 *   kernel has said a write or sync failed, so the only way forward is to close the store
 *   and open it again (normally: restart the server).
 */
#ifndef RAFT_LOG_STORE_H
#define RAFT_LOG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "raft.h"

/* Every call the store makes that can change a file goes through this table, so tests can
 * fail the Nth write, sync, truncate or rename. Each function behaves like its POSIX
 * namesake: it returns -1 and sets errno on failure. `data` is passed back unchanged.
 * Listing the directory, fstat() and flock() use libc directly. */
struct raft_store_io {
    void *data;
    int (*open)(void *data, const char *path, int flags, mode_t mode); /* fd or -1 */
    ssize_t (*pwrite)(void *data, int fd, const void *buf, size_t len, off_t off);
    ssize_t (*pread)(void *data, int fd, void *buf, size_t len, off_t off);
    int (*fsync)(void *data, int fd);     /* snapshot file and directory */
    int (*fdatasync)(void *data, int fd); /* log segments */
    int (*ftruncate)(void *data, int fd, off_t len);
    int (*rename)(void *data, const char *from, const char *to);
    int (*unlink)(void *data, const char *path);
    int (*close)(void *data, int fd);
};

/* The table of plain POSIX calls; static, never freed. */
const struct raft_store_io *raft_store_io_posix(void);

#define RAFT_STORE_DEFAULT_SEGMENT_BYTES ((size_t)64 << 20)

struct raft_store;

/* Open the store in `dir` (created, one level, if missing) and recover it: read the
 * snapshot and every segment, cut a torn record off the tail of the last segment (logged
 * as a warning), and remove a leftover snapshot.tmp. The recovered state is kept for
 * raft_store_load(). The directory is locked (flock) while the store is open.
 * `io` is borrowed until raft_store_close() (NULL: raft_store_io_posix()). A segment is
 * sealed, and the next one started, once it reaches `segment_bytes` (0: 64 MiB).
 * On success *out is the store, to be released with raft_store_close().
 * Returns 0; RFS_ECORRUPT when a record in the middle of the log, a segment other than the
 * last, or the snapshot file is damaged, or entries are missing (errmsg names the file and
 * byte offset, e.g. "log recovery: seg-0000000000000003: bad checksum at offset 8192");
 * RFS_EBUSY if another open store holds the directory; RFS_EIO or RFS_ENOSPC if a file
 * cannot be read, created or repaired; RFS_ENOMEM. */
int raft_store_open(struct raft_store **out, const char *dir, const struct raft_store_io *io,
                    size_t segment_bytes, char *errmsg);

/* Close the files and free the store. Safe on NULL. Does not sync: records appended since
 * the last raft_store_sync() are dropped (they were never promised). */
void raft_store_close(struct raft_store *s);

/* What is stored. Everything it points to belongs to the store and stays valid until the
 * next raft_store_append, raft_store_set_hard_state, raft_store_snapshot_save,
 * raft_store_persist_ready or raft_store_close on the same store. */
struct raft_store_state {
    struct raft_hard_state hard_state; /* zeros if none was ever stored */
    bool has_snapshot;
    struct raft_snapshot snapshot; /* valid if has_snapshot */
    /* Consecutive entries, the first at snapshot.meta.index + 1 (or 1 without snapshot). */
    struct raft_entry *entries;
    unsigned n_entries;
};

/* Fill *st with the stored state, including records appended but not yet synced. Right
 * after raft_store_open() this costs nothing; later it writes out buffered records (without
 * syncing them) and reads the files again.
 * Returns 0, RFS_ECORRUPT, RFS_EIO or RFS_ENOMEM. */
int raft_store_load(struct raft_store *s, struct raft_store_state *st, char *errmsg);

/* Append n entries (n may be 0), which must have consecutive indexes. They are encoded
 * into a memory buffer (data copied) and written by the next raft_store_sync(); they are
 * not durable before it returns. If e[0].index is at or below the last stored index, the
 * stored entries from e[0].index on are replaced.
 * Returns 0; RFS_EINVAL if the indexes are not consecutive, e[0].index is past the last
 * index + 1 (a gap) or at or below the snapshot index; RFS_ETOOBIG for an entry over
 * about 4 GiB; RFS_ENOMEM; RFS_EIO if the store failed earlier. On any error the store is
 * unchanged. */
int raft_store_append(struct raft_store *s, const struct raft_entry *e, unsigned n, char *errmsg);

/* Record the hard state (term, vote, commit). Buffered like raft_store_append(), in the
 * same stream, so one sync makes both durable. A value equal to the current one writes
 * nothing. Returns 0, RFS_ENOMEM, or RFS_EIO if the store failed earlier. */
int raft_store_set_hard_state(struct raft_store *s, const struct raft_hard_state *hs, char *errmsg);

/* Write everything buffered since the last sync with one write and make it durable with
 * one fdatasync (group commit). When the current segment is full a new one is started
 * first; that costs an fsync of the directory. Returns 0, RFS_EIO or RFS_ENOSPC (the
 * store is then poisoned, see above). */
int raft_store_sync(struct raft_store *s, char *errmsg);

/* Store a snapshot; durable when this returns (snapshot.tmp, fsync, rename to snapshot,
 * fsync of the directory). Then:
 * - if the stored log holds snap->meta.index with snap->meta.term (a snapshot this server
 *   took), entries after it are kept and every sealed segment whose entries all lie at or
 *   below the snapshot index is deleted;
 * - otherwise (a follower installing its leader's snapshot) the whole stored log is
 *   discarded, durably, before this returns.
 * Buffered entries are kept (if the log matches) or written out and discarded with the
 * rest. The snapshot data is written out, not retained.
 * Returns 0; RFS_EINVAL if the index is 0 or below the stored snapshot's index, or the
 * configuration has more than RAFT_MAX_NODES voters or learners; RFS_ENOMEM; RFS_EIO or
 * RFS_ENOSPC (the store is then poisoned). */
int raft_store_snapshot_save(struct raft_store *s, const struct raft_snapshot *snap, char *errmsg);

/* For a server loop: persist a ready batch in the order the core needs: its snapshot (if
 * any), its entries, its hard state (if any), then one raft_store_sync(), except when only
 * the commit index changed: that is written but not synced (a power cut may lose it, so the
 * commit index loaded after one can be lower than what the state machine applied). Messages
 * of the batch may be sent once this returns 0. Returns what those calls return. */
int raft_store_persist_ready(struct raft_store *s, const struct raft_ready *rd, char *errmsg);

#endif
