/* Durable Raft log storage (raft/log_store.h; on-disk format in docs/storage.md).
 *
 * Happy path. raft_store_append() and raft_store_set_hard_state() only encode records into
 * a memory buffer (s->pend). raft_store_sync() writes that buffer at the end of the current
 * segment with one pwrite and makes it durable with one fdatasync, so a ready batch of
 * entries plus hard state costs one write and one sync (group commit). Entries that replace
 * a stored suffix are simply appended: replay treats an entry whose index is at or below
 * the last index as "truncate from here, then append", so no file is ever rewritten.
 *
 * Segments. A segment that has reached segment_bytes is sealed at the next sync: it was
 * fdatasync'd by the sync that wrote it, then its successor is created, the directory is
 * fsync'd, and the successor opens with a hard state record. Because a sealed segment is
 * durable before its successor exists, a crash can tear records only at the tail of the
 * last segment, and because every segment starts with the hard state, deleting old
 * segments never loses it.
 *
 * Snapshots. The snapshot file is written as snapshot.tmp, fsync'd, renamed and the
 * directory fsync'd. If the stored log agrees with the snapshot (same term at its index),
 * sealed segments whose entries are all covered are unlinked, oldest first, so what remains
 * is always a run of consecutive segments; an open segment of a quarter of segment_bytes or
 * more that the snapshot covers entirely is sealed first and goes too. If it does not agree (a
 * follower installing its leader's snapshot), a RESET record ("the log is empty after index i") is
 * appended and synced, then every older segment is unlinked.
 *
 * Recovery (store_recovery.c) replays the snapshot and then every segment in order into an
 * image of the stored state; see docs/storage.md for how a torn tail is told from damage.
 *
 * Failure modes. A failed or short write, sync, truncate, rename or unlink poisons the
 * store (s->failed): after a failed fsync the kernel may have dropped the dirty pages and
 * a retry could "succeed" without the data (the fsync-gate problem), so nothing is retried
 * and every later call fails until the store is reopened and recovered from disk. Read
 * errors and invalid arguments do not poison: they change nothing.
 */
#include "log_store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "segment.h"
#include "snapshot_file.h"
#include "store_internal.h"

/* --- errors --- */

static void errno_vformat(char *out, int err, const char *fmt, va_list ap)
{
    char what[RFS_ERRMSG_SIZE];
    char ebuf[128];
    vsnprintf(what, sizeof what, fmt, ap);
    if (err != 0) {
        /* GNU strerror_r: thread-safe, unlike strerror(). */
        snprintf(out, RFS_ERRMSG_SIZE, "%.160s: %.80s", what, strerror_r(err, ebuf, sizeof ebuf));
    } else {
        snprintf(out, RFS_ERRMSG_SIZE, "%s", what);
    }
}

static int errno_code(int err)
{
    return err == ENOSPC ? RFS_ENOSPC : RFS_EIO;
}

int raft_store_error(char *errmsg, int err, const char *fmt, ...)
{
    char msg[RFS_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    errno_vformat(msg, err, fmt, ap);
    va_end(ap);
    rfs_errmsg_printf(errmsg, "%s", msg);
    return errno_code(err);
}

int raft_store_fail(struct raft_store *s, char *errmsg, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errno_vformat(s->failmsg, err, fmt, ap);
    va_end(ap);
    s->failed = errno_code(err);
    rfs_errmsg_printf(errmsg, "%s", s->failmsg);
    return s->failed;
}

static int store_check(const struct raft_store *s, char *errmsg)
{
    if (s->failed != 0) {
        rfs_errmsg_printf(errmsg, "store failed earlier: %s", s->failmsg);
        return RFS_EIO;
    }
    return 0;
}

static int store_write(struct raft_store *s, int fd, const void *buf, size_t len, uint64_t off,
                       const char *name, char *errmsg)
{
    const uint8_t *p = buf;
    while (len > 0) {
        size_t chunk = len < STORE_IO_CHUNK ? len : STORE_IO_CHUNK;
        ssize_t n = s->io->pwrite(s->io->data, fd, p, chunk, (off_t)off);
        if (n < 0) {
            return raft_store_fail(s, errmsg, errno, "write %s at offset %" PRIu64, name, off);
        }
        if ((size_t)n != chunk) {
            return raft_store_fail(s, errmsg, 0,
                                   "write %s at offset %" PRIu64 ": short write (%zd of %zu bytes)",
                                   name, off, n, chunk);
        }
        p += chunk;
        off += chunk;
        len -= chunk;
    }
    return 0;
}

static raft_index store_last_index(const struct raft_store *s)
{
    return s->snap_index + s->n_terms;
}

/* Term of stored entry i (or of the snapshot point); false if not stored. */
static bool store_term_at(const struct raft_store *s, raft_index i, raft_term *term)
{
    if (s->has_snapshot && i == s->snap_index) {
        *term = s->snap_term;
        return true;
    }
    if (i > s->snap_index && i <= store_last_index(s)) {
        *term = s->terms[i - s->snap_index - 1];
        return true;
    }
    return false;
}

static void store_drop_image(struct raft_store *s)
{
    if (s->has_image) {
        raft_store_image_free(&s->image);
        s->has_image = false;
    }
}

/* --- writing --- */

/* Seal the current segment (it is full) and start the next one. */
static int store_segment_start(struct raft_store *s, char *errmsg)
{
    char name[RAFT_SEGMENT_NAME_SIZE];
    char path[PATH_MAX];
    uint64_t seq = s->n_segs > 0 ? s->segs[s->n_segs - 1].seq + 1 : 1;
    struct raft_store_segment *seg;
    int fd;

    if (store_grow(&s->segs, &s->cap_segs, s->n_segs + 1, sizeof *s->segs) != 0) {
        rfs_errmsg_printf(errmsg, "start segment: out of memory");
        return RFS_ENOMEM;
    }
    if (s->seg_fd >= 0) {
        /* Durable before its successor exists, so only the last segment can be torn. */
        if (s->unsynced) {
            raft_segment_name(name, s->segs[s->n_segs - 1].seq);
            if (s->io->fdatasync(s->io->data, s->seg_fd) != 0) {
                return raft_store_fail(s, errmsg, errno, "fdatasync %s", name);
            }
            s->unsynced = false;
        }
        s->io->close(s->io->data, s->seg_fd);
        s->seg_fd = -1;
    }
    raft_segment_name(name, seq);
    store_path(s, name, path);
    fd = s->io->open(s->io->data, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        return raft_store_fail(s, errmsg, errno, "create %s", path);
    }
    if (s->io->fsync(s->io->data, s->dir_fd) != 0) {
        s->io->close(s->io->data, fd);
        return raft_store_fail(s, errmsg, errno, "fsync %s after creating %s", s->dir, name);
    }
    seg = &s->segs[s->n_segs++];
    seg->seq = seq;
    seg->size = 0;
    seg->max_index = 0;
    s->seg_fd = fd;
    return 0;
}

/* Every segment opens with the hard state, so deleting older ones never loses it: write it
 * into the current segment if that is still empty (no sync). */
static int store_segment_head(struct raft_store *s, char *errmsg)
{
    char name[RAFT_SEGMENT_NAME_SIZE];
    struct raft_store_segment *seg = &s->segs[s->n_segs - 1];
    uint8_t rec[RAFT_RECORD_HARD_STATE_SIZE];
    size_t len;
    int rv;

    if (seg->size != 0) {
        return 0;
    }
    raft_segment_name(name, seg->seq);
    len = raft_segment_encode_hard_state(rec, &s->hs_written);
    rv = store_write(s, s->seg_fd, rec, len, 0, name, errmsg);
    if (rv != 0) {
        return rv;
    }
    seg->size = len;
    s->unsynced = true;
    return 0;
}

/* Write the buffered records at the end of the current segment (no sync). */
static int store_flush(struct raft_store *s, char *errmsg)
{
    char name[RAFT_SEGMENT_NAME_SIZE];
    struct raft_store_segment *seg;
    int rv;

    if (s->pend_len == 0) {
        return 0;
    }
    if (s->n_segs == 0 || s->segs[s->n_segs - 1].size >= s->segment_bytes) {
        rv = store_segment_start(s, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    rv = store_segment_head(s, errmsg);
    if (rv != 0) {
        return rv;
    }
    seg = &s->segs[s->n_segs - 1];
    raft_segment_name(name, seg->seq);
    rv = store_write(s, s->seg_fd, s->pend, s->pend_len, seg->size, name, errmsg);
    if (rv != 0) {
        return rv;
    }
    seg->size += s->pend_len;
    if (s->pend_reset || s->pend_max > seg->max_index) {
        seg->max_index = s->pend_max;
    }
    s->pend_len = 0;
    s->pend_max = 0;
    s->pend_reset = false;
    s->hs_written = s->hs;
    s->unsynced = true;
    return 0;
}

/* Unlink segs[0, n) oldest first, so the remaining files stay consecutive whatever
 * happens, then fsync the directory. */
static int store_delete_segments(struct raft_store *s, size_t n, char *errmsg)
{
    char name[RAFT_SEGMENT_NAME_SIZE];
    char path[PATH_MAX];
    size_t done;
    int rv = 0;

    for (done = 0; done < n; done++) {
        raft_segment_name(name, s->segs[done].seq);
        store_path(s, name, path);
        if (s->io->unlink(s->io->data, path) != 0 && errno != ENOENT) {
            rv = raft_store_fail(s, errmsg, errno, "unlink %s", path);
            break;
        }
    }
    memmove(s->segs, s->segs + done, (s->n_segs - done) * sizeof *s->segs);
    s->n_segs -= done;
    if (rv == 0 && done > 0 && s->io->fsync(s->io->data, s->dir_fd) != 0) {
        rv = raft_store_fail(s, errmsg, errno, "fsync %s after deleting segments", s->dir);
    }
    return rv;
}

static int store_snapshot_write(struct raft_store *s, const struct raft_snapshot *snap,
                                char *errmsg)
{
    uint8_t head[RAFT_SNAPSHOT_FILE_HEADER_MAX];
    uint8_t tail[RAFT_SNAPSHOT_FILE_TRAILER];
    char tmp[PATH_MAX];
    char path[PATH_MAX];
    size_t head_len = raft_snapshot_file_encode(head, tail, snap);
    int rv;
    int fd;

    store_path(s, STORE_SNAPSHOT_TMP, tmp);
    store_path(s, STORE_SNAPSHOT, path);
    fd = s->io->open(s->io->data, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return raft_store_fail(s, errmsg, errno, "create %s", tmp);
    }
    rv = store_write(s, fd, head, head_len, 0, STORE_SNAPSHOT_TMP, errmsg);
    if (rv == 0) {
        rv = store_write(s, fd, snap->data.base, snap->data.len, head_len, STORE_SNAPSHOT_TMP,
                         errmsg);
    }
    if (rv == 0) {
        rv = store_write(s, fd, tail, sizeof tail, head_len + snap->data.len, STORE_SNAPSHOT_TMP,
                         errmsg);
    }
    if (rv == 0 && s->io->fsync(s->io->data, fd) != 0) {
        rv = raft_store_fail(s, errmsg, errno, "fsync %s", tmp);
    }
    if (s->io->close(s->io->data, fd) != 0 && rv == 0) {
        rv = raft_store_fail(s, errmsg, errno, "close %s", tmp);
    }
    if (rv != 0) {
        return rv;
    }
    if (s->io->rename(s->io->data, tmp, path) != 0) {
        return raft_store_fail(s, errmsg, errno, "rename %s to %s", tmp, path);
    }
    if (s->io->fsync(s->io->data, s->dir_fd) != 0) {
        return raft_store_fail(s, errmsg, errno, "fsync %s after renaming the snapshot", s->dir);
    }
    return 0;
}

/* --- public API --- */

int raft_store_open(struct raft_store **out, const char *dir, const struct raft_store_io *io,
                    size_t segment_bytes, char *errmsg)
{
    char path[PATH_MAX];
    struct raft_store *s;
    int rv;

    if (strlen(dir) + 1 + RAFT_SEGMENT_NAME_SIZE > PATH_MAX) {
        rfs_errmsg_printf(errmsg, "open store: directory name too long");
        return RFS_EINVAL;
    }
    s = rfs_calloc(1, sizeof *s);
    if (s == NULL) {
        rfs_errmsg_printf(errmsg, "open store %s: out of memory", dir);
        return RFS_ENOMEM;
    }
    s->dir_fd = -1;
    s->seg_fd = -1;
    s->io = io != NULL ? io : raft_store_io_posix();
    s->segment_bytes = segment_bytes > 0 ? segment_bytes : RAFT_STORE_DEFAULT_SEGMENT_BYTES;
    s->dir = rfs_strdup(dir);
    if (s->dir == NULL) {
        rfs_errmsg_printf(errmsg, "open store %s: out of memory", dir);
        rv = RFS_ENOMEM;
        goto err;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        rv = raft_store_error(errmsg, errno, "open store: create %s", dir);
        goto err;
    }
    s->dir_fd = s->io->open(s->io->data, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (s->dir_fd < 0) {
        rv = raft_store_error(errmsg, errno, "open store: open %s", dir);
        goto err;
    }
    if (flock(s->dir_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            rfs_errmsg_printf(errmsg, "open store: %s is in use by another store", dir);
            rv = RFS_EBUSY;
        } else {
            rv = raft_store_error(errmsg, errno, "open store: lock %s", dir);
        }
        goto err;
    }
    /* A leftover of a snapshot save that did not finish; the old snapshot stands. */
    store_path(s, STORE_SNAPSHOT_TMP, path);
    if (s->io->unlink(s->io->data, path) != 0 && errno != ENOENT) {
        rv = raft_store_error(errmsg, errno, "open store: unlink %s", path);
        goto err;
    }

    rv = raft_store_image_read(s, &s->image, true, errmsg);
    if (rv != 0) {
        goto err;
    }
    s->has_image = true;
    s->hs = s->image.st.hard_state;
    s->hs_written = s->hs;
    if (s->image.st.has_snapshot) {
        s->has_snapshot = true;
        s->snap_index = s->image.st.snapshot.meta.index;
        s->snap_term = s->image.st.snapshot.meta.term;
    }
    if (store_grow(&s->terms, &s->cap_terms, s->image.st.n_entries, sizeof *s->terms) != 0) {
        rfs_errmsg_printf(errmsg, "open store %s: out of memory", dir);
        rv = RFS_ENOMEM;
        goto err;
    }
    for (unsigned i = 0; i < s->image.st.n_entries; i++) {
        s->terms[i] = s->image.st.entries[i].term;
    }
    s->n_terms = s->image.st.n_entries;
    s->segs = s->image.segs; /* the store continues from the segments just read */
    s->n_segs = s->image.n_segs;
    s->cap_segs = s->image.cap_segs;
    s->image.segs = NULL;
    s->image.n_segs = s->image.cap_segs = 0;
    if (s->n_segs > 0) {
        char name[RAFT_SEGMENT_NAME_SIZE];
        raft_segment_name(name, s->segs[s->n_segs - 1].seq);
        store_path(s, name, path);
        s->seg_fd = s->io->open(s->io->data, path, O_WRONLY | O_CLOEXEC, 0);
        if (s->seg_fd < 0) {
            rv = raft_store_error(errmsg, errno, "open store: open %s", path);
            goto err;
        }
    }
    *out = s;
    return 0;

err:
    raft_store_close(s);
    return rv;
}

void raft_store_close(struct raft_store *s)
{
    if (s == NULL) {
        return;
    }
    if (s->seg_fd >= 0) {
        s->io->close(s->io->data, s->seg_fd);
    }
    if (s->dir_fd >= 0) {
        s->io->close(s->io->data, s->dir_fd); /* releases the flock */
    }
    raft_store_image_free(&s->image);
    rfs_free(s->segs);
    rfs_free(s->terms);
    rfs_free(s->pend);
    rfs_free(s->dir);
    rfs_free(s);
}

int raft_store_load(struct raft_store *s, struct raft_store_state *st, char *errmsg)
{
    int rv = store_check(s, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (!s->has_image) {
        rv = store_flush(s, errmsg);
        if (rv != 0) {
            return rv;
        }
        rv = raft_store_image_read(s, &s->image, false, errmsg);
        if (rv != 0) {
            raft_store_image_free(&s->image);
            return rv;
        }
        s->has_image = true;
    }
    *st = s->image.st;
    return 0;
}

int raft_store_append(struct raft_store *s, const struct raft_entry *e, unsigned n, char *errmsg)
{
    raft_index first;
    size_t keep;
    size_t bytes = 0;
    int rv = store_check(s, errmsg);

    if (rv != 0 || n == 0) {
        return rv;
    }
    first = e[0].index;
    if (first <= s->snap_index) {
        rfs_errmsg_printf(errmsg,
                          "append: entry %" PRIu64 " is at or below the snapshot index %" PRIu64,
                          first, s->snap_index);
        return RFS_EINVAL;
    }
    if (first > store_last_index(s) + 1) {
        rfs_errmsg_printf(errmsg,
                          "append: entry %" PRIu64 " leaves a gap after the last index %" PRIu64,
                          first, store_last_index(s));
        return RFS_EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        if (e[i].index != first + i) {
            rfs_errmsg_printf(errmsg, "append: entry %" PRIu64 " follows entry %" PRIu64,
                              e[i].index, e[i - 1].index);
            return RFS_EINVAL;
        }
        if (e[i].data.len > RAFT_RECORD_MAX_DATA) {
            rfs_errmsg_printf(errmsg,
                              "append: entry %" PRIu64 " has %zu bytes of data, over the limit",
                              e[i].index, e[i].data.len);
            return RFS_ETOOBIG;
        }
        bytes += raft_segment_entry_size(e[i].data.len);
    }
    keep = (size_t)(first - s->snap_index - 1);
    if (store_grow(&s->terms, &s->cap_terms, keep + n, sizeof *s->terms) != 0 ||
        store_grow(&s->pend, &s->pend_cap, s->pend_len + bytes, 1) != 0) {
        rfs_errmsg_printf(errmsg, "append: out of memory");
        return RFS_ENOMEM;
    }
    store_drop_image(s);
    for (unsigned i = 0; i < n; i++) {
        s->pend_len += raft_segment_encode_entry(s->pend + s->pend_len, &e[i]);
        s->terms[keep + i] = e[i].term;
    }
    s->n_terms = keep + n;
    if (first + n - 1 > s->pend_max) {
        s->pend_max = first + n - 1;
    }
    return 0;
}

int raft_store_set_hard_state(struct raft_store *s, const struct raft_hard_state *hs, char *errmsg)
{
    int rv = store_check(s, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (hs->term == s->hs.term && hs->vote == s->hs.vote && hs->commit == s->hs.commit) {
        return 0;
    }
    if (store_grow(&s->pend, &s->pend_cap, s->pend_len + RAFT_RECORD_HARD_STATE_SIZE, 1) != 0) {
        rfs_errmsg_printf(errmsg, "set hard state: out of memory");
        return RFS_ENOMEM;
    }
    store_drop_image(s);
    s->pend_len += raft_segment_encode_hard_state(s->pend + s->pend_len, hs);
    s->hs = *hs;
    return 0;
}

int raft_store_sync(struct raft_store *s, char *errmsg)
{
    int rv = store_check(s, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = store_flush(s, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (s->unsynced) {
        if (s->io->fdatasync(s->io->data, s->seg_fd) != 0) {
            char name[RAFT_SEGMENT_NAME_SIZE];
            raft_segment_name(name, s->segs[s->n_segs - 1].seq);
            return raft_store_fail(s, errmsg, errno, "fdatasync %s", name);
        }
        s->unsynced = false;
    }
    return 0;
}

int raft_store_snapshot_save(struct raft_store *s, const struct raft_snapshot *snap, char *errmsg)
{
    raft_index index = snap->meta.index;
    raft_term term;
    bool match;
    size_t keep_from;
    int rv = store_check(s, errmsg);

    if (rv != 0) {
        return rv;
    }
    if (index == 0 || (s->has_snapshot && index < s->snap_index)) {
        rfs_errmsg_printf(
            errmsg, "snapshot save: index %" PRIu64 " is below the stored snapshot (%" PRIu64 ")",
            index, s->snap_index);
        return RFS_EINVAL;
    }
    if (snap->meta.conf.n_voters > RAFT_MAX_NODES || snap->meta.conf.n_learners > RAFT_MAX_NODES) {
        rfs_errmsg_printf(errmsg, "snapshot save: configuration has too many members");
        return RFS_EINVAL;
    }
    match = store_term_at(s, index, &term) && term == snap->meta.term;
    if (!match &&
        store_grow(&s->pend, &s->pend_cap, s->pend_len + RAFT_RECORD_RESET_SIZE, 1) != 0) {
        rfs_errmsg_printf(errmsg, "snapshot save: out of memory");
        return RFS_ENOMEM;
    }
    store_drop_image(s);
    rv = store_snapshot_write(s, snap, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (match) {
        size_t drop = (size_t)(index - s->snap_index);
        memmove(s->terms, s->terms + drop, (s->n_terms - drop) * sizeof *s->terms);
        s->n_terms -= drop;
    } else {
        /* The log does not lead up to the snapshot: discard all of it, durably. */
        s->pend_len += raft_segment_encode_reset(s->pend + s->pend_len, index, snap->meta.term);
        s->pend_max = index;
        s->pend_reset = true;
        s->n_terms = 0;
    }
    s->has_snapshot = true;
    s->snap_index = index;
    s->snap_term = snap->meta.term;
    if (match) {
        /* The open segment is never deleted; when the snapshot covers all of a large one (the
         * state shrank, or the writes stopped), a successor (opening with the hard state,
         * synced) takes its place, so that its space comes back now and not once it fills. */
        const struct raft_store_segment *last = s->n_segs > 0 ? &s->segs[s->n_segs - 1] : NULL;
        if (last != NULL && last->max_index <= index && last->size >= s->segment_bytes / 4) {
            rv = store_segment_start(s, errmsg);
            if (rv == 0) {
                rv = store_segment_head(s, errmsg);
            }
            if (rv == 0) {
                rv = raft_store_sync(s, errmsg);
            }
            if (rv != 0) {
                return rv;
            }
        }
        keep_from = 0;
        while (keep_from + 1 < s->n_segs && s->segs[keep_from].max_index <= index) {
            keep_from++;
        }
    } else {
        rv = raft_store_sync(s, errmsg);
        if (rv != 0) {
            return rv;
        }
        keep_from = s->n_segs - 1; /* the RESET record is in the last segment */
    }
    return store_delete_segments(s, keep_from, errmsg);
}

int raft_store_persist_ready(struct raft_store *s, const struct raft_ready *rd, char *errmsg)
{
    /* Entries, a term and a vote are promises to other servers and must be durable before
     * any message of the batch leaves. A new commit index alone promises nothing: it is
     * written (so that a killed process keeps it) but not synced, which saves a sync per
     * commit on the leader and per heartbeat on a follower. Lost in a power cut, it is
     * learnt again from the leader, and a state machine found ahead of it on restart is
     * proof enough (raft_store_load callers raise it; docs/storage.md). */
    bool must_sync = rd->snapshot != NULL || rd->n_entries > 0 ||
                     (rd->has_hard_state &&
                      (rd->hard_state.term != s->hs.term || rd->hard_state.vote != s->hs.vote));
    int rv;
    if (rd->snapshot != NULL) {
        rv = raft_store_snapshot_save(s, rd->snapshot, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    rv = raft_store_append(s, rd->entries, rd->n_entries, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (rd->has_hard_state) {
        rv = raft_store_set_hard_state(s, &rd->hard_state, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    if (!must_sync) {
        rv = store_check(s, errmsg);
        return rv != 0 ? rv : store_flush(s, errmsg);
    }
    return raft_store_sync(s, errmsg);
}
