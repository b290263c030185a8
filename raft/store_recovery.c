/* Recovery of the Raft log store: read the snapshot file and replay every segment, in
 * order, into an image of the stored state (rules in docs/storage.md, "Recovery").
 *
 * A segment file is read whole and decoded record by record; entries in the image point
 * into those buffers, which the image keeps. A bad record is a torn tail only in the last
 * segment and only if no record with a good checksum starts anywhere after it: a crash
 * tears at most the unsynced end of the last segment, and leaves zeros or stale bytes
 * there, never a well-formed record. Anything else refuses to start with the file and
 * byte offset in the message, and the files are left as they are for inspection.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "segment.h"
#include "snapshot_file.h"
#include "store_internal.h"

static int store_corrupt(char *errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int store_corrupt(char *errmsg, const char *fmt, ...)
{
    char msg[RFS_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rfs_errmsg_printf(errmsg, "%s", msg);
    return RFS_ECORRUPT;
}

static int store_read_file(const struct raft_store *s, int fd, const char *name, uint8_t **out,
                           size_t *size, char *errmsg)
{
    struct stat sb;
    uint8_t *buf;
    size_t done = 0;
    if (fstat(fd, &sb) != 0) {
        return raft_store_error(errmsg, errno, "stat %s", name);
    }
    buf = rfs_malloc(sb.st_size > 0 ? (size_t)sb.st_size : 1);
    if (buf == NULL) {
        rfs_errmsg_printf(errmsg, "read %s: out of memory (%" PRIu64 " bytes)", name,
                          (uint64_t)sb.st_size);
        return RFS_ENOMEM;
    }
    while (done < (size_t)sb.st_size) {
        size_t chunk = (size_t)sb.st_size - done;
        ssize_t n;
        chunk = chunk < STORE_IO_CHUNK ? chunk : STORE_IO_CHUNK;
        n = s->io->pread(s->io->data, fd, buf + done, chunk, (off_t)done);
        if (n <= 0) {
            rfs_free(buf);
            if (n == 0) {
                return raft_store_error(errmsg, 0, "read %s: file shrank while reading", name);
            }
            return raft_store_error(errmsg, errno, "read %s at offset %zu", name, done);
        }
        done += (size_t)n;
    }
    *out = buf;
    *size = done;
    return 0;
}

void raft_store_image_free(struct raft_store_image *im)
{
    for (size_t i = 0; i < im->n_bufs; i++) {
        rfs_free(im->bufs[i]);
    }
    rfs_free(im->bufs);
    rfs_free(im->st.entries);
    rfs_free(im->segs);
    memset(im, 0, sizeof *im);
}

/* The image takes ownership of buf. */
static int store_image_keep(struct raft_store_image *im, void *buf, char *errmsg)
{
    if (store_grow(&im->bufs, &im->cap_bufs, im->n_bufs + 1, sizeof *im->bufs) != 0) {
        rfs_free(buf);
        rfs_errmsg_printf(errmsg, "log recovery: out of memory");
        return RFS_ENOMEM;
    }
    im->bufs[im->n_bufs++] = buf;
    return 0;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sequence numbers of the segment files in the directory, sorted. */
static int store_list_segments(const struct raft_store *s, uint64_t **out, size_t *n_out,
                               char *errmsg)
{
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d = opendir(s->dir);
    if (d == NULL) {
        return raft_store_error(errmsg, errno, "list %s", s->dir);
    }
    for (;;) {
        uint64_t seq;
        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            break;
        }
        if (!raft_segment_parse_name(de->d_name, &seq)) {
            continue;
        }
        if (store_grow(&seqs, &cap, n + 1, sizeof *seqs) != 0) {
            closedir(d);
            rfs_free(seqs);
            rfs_errmsg_printf(errmsg, "list %s: out of memory", s->dir);
            return RFS_ENOMEM;
        }
        seqs[n++] = seq;
    }
    if (errno != 0) {
        int err = errno;
        closedir(d);
        rfs_free(seqs);
        return raft_store_error(errmsg, err, "list %s", s->dir);
    }
    closedir(d);
    if (n > 0) {
        qsort(seqs, n, sizeof *seqs, u64_cmp);
    }
    *out = seqs;
    *n_out = n;
    return 0;
}

static int store_image_read_snapshot(const struct raft_store *s, struct raft_store_image *im,
                                     char *errmsg)
{
    char path[PATH_MAX];
    const char *why = NULL;
    uint8_t *buf;
    size_t size;
    int rv;
    int fd;

    store_path(s, STORE_SNAPSHOT, path);
    fd = s->io->open(s->io->data, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == ENOENT) {
            return 0;
        }
        return raft_store_error(errmsg, errno, "open %s", path);
    }
    rv = store_read_file(s, fd, STORE_SNAPSHOT, &buf, &size, errmsg);
    s->io->close(s->io->data, fd);
    if (rv != 0) {
        return rv;
    }
    rv = store_image_keep(im, buf, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (raft_snapshot_file_decode(buf, size, &im->st.snapshot, &why) != 0) {
        return store_corrupt(errmsg, "snapshot recovery: %s: %s", STORE_SNAPSHOT, why);
    }
    im->st.has_snapshot = true;
    return 0;
}

/* Replay one record into the image (see docs/storage.md, "Replay"). */
static int store_image_apply(struct raft_store_image *im, struct raft_store_segment *seg,
                             const struct raft_record *rec, const char *name, size_t off,
                             char *errmsg)
{
    raft_index idx;
    size_t n = im->st.n_entries;

    switch (rec->type) {
        case RAFT_RECORD_HARD_STATE:
            im->st.hard_state = rec->hard_state;
            return 0;
        case RAFT_RECORD_RESET:
            im->st.n_entries = 0;
            im->anchored = true;
            im->anchor = rec->reset_index;
            im->anchor_term = rec->reset_term;
            im->first = rec->reset_index + 1;
            seg->max_index = rec->reset_index;
            return 0;
        default: /* RAFT_RECORD_ENTRY; decode rejects unknown types */
            break;
    }
    idx = rec->entry.index;
    if (n == 0 && !im->anchored) {
        im->first = idx; /* the oldest segments may have been deleted: start anywhere */
    } else if (idx < im->first) {
        if (im->anchored) {
            return store_corrupt(errmsg,
                                 "log recovery: %s: entry %" PRIu64
                                 " at offset %zu is at or below the "
                                 "reset point %" PRIu64,
                                 name, idx, off, im->anchor);
        }
        im->st.n_entries = 0;
        im->first = idx;
    } else if (idx > im->first + n) {
        return store_corrupt(errmsg,
                             "log recovery: %s: entry %" PRIu64 " at offset %zu leaves a gap after "
                             "entry %" PRIu64,
                             name, idx, off, (im->first + n - 1));
    } else {
        im->st.n_entries = (unsigned)(idx - im->first); /* replace the suffix from idx */
    }
    if (im->st.n_entries == UINT_MAX ||
        store_grow(&im->st.entries, &im->cap_entries, (size_t)im->st.n_entries + 1,
                   sizeof *im->st.entries) != 0) {
        rfs_errmsg_printf(errmsg, "log recovery: out of memory");
        return RFS_ENOMEM;
    }
    im->st.entries[im->st.n_entries++] = rec->entry;
    if (idx > seg->max_index) {
        seg->max_index = idx;
    }
    return 0;
}

/* Read and replay one segment. `repair`: cut a torn tail off the last segment. */
static int store_image_read_segment(struct raft_store *s, struct raft_store_image *im, uint64_t seq,
                                    bool last, bool repair, char *errmsg)
{
    char name[RAFT_SEGMENT_NAME_SIZE];
    char path[PATH_MAX];
    struct raft_store_segment *seg;
    struct raft_record rec;
    const char *why = NULL;
    uint8_t *buf = NULL;
    size_t size = 0;
    size_t off = 0;
    int fd;
    int rv;

    raft_segment_name(name, seq);
    store_path(s, name, path);
    fd = s->io->open(s->io->data, path, (last && repair ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
    if (fd < 0) {
        return raft_store_error(errmsg, errno, "log recovery: open %s", path);
    }
    rv = store_read_file(s, fd, name, &buf, &size, errmsg);
    if (rv != 0) {
        goto out;
    }
    rv = store_image_keep(im, buf, errmsg);
    if (rv != 0) {
        goto out;
    }
    if (store_grow(&im->segs, &im->cap_segs, im->n_segs + 1, sizeof *im->segs) != 0) {
        rfs_errmsg_printf(errmsg, "log recovery: out of memory");
        rv = RFS_ENOMEM;
        goto out;
    }
    seg = &im->segs[im->n_segs++];
    seg->seq = seq;
    seg->size = size;
    seg->max_index = 0;

    for (;;) {
        enum raft_segment_status st = raft_segment_decode(buf, size, off, &rec, &why);
        if (st == RAFT_SEGMENT_END) {
            break;
        }
        if (st == RAFT_SEGMENT_OK) {
            rv = store_image_apply(im, seg, &rec, name, off, errmsg);
            if (rv != 0) {
                goto out;
            }
            off += rec.size;
            continue;
        }
        if (st == RAFT_SEGMENT_MALFORMED) {
            rv = store_corrupt(errmsg, "log recovery: %s: %s at offset %zu", name, why, off);
            goto out;
        }
        /* A bad record. Only the last segment can have a torn tail (sealed segments are
         * durable before their successor is created), and a tail is torn only if no valid
         * record follows the damage. */
        if (!last) {
            rv = store_corrupt(errmsg, "log recovery: %s: %s at offset %zu (not the last segment)",
                               name, why, off);
            goto out;
        }
        if (raft_segment_valid_record_after(buf, size, off + 1)) {
            rv = store_corrupt(errmsg,
                               "log recovery: %s: %s at offset %zu (valid records follow it)", name,
                               why, off);
            goto out;
        }
        if (repair) {
            rfs_warnf("log recovery: %s: %s at offset %zu: torn tail, cutting off %zu bytes", path,
                      why, off, size - off);
            if (s->io->ftruncate(s->io->data, fd, (off_t)off) != 0) {
                rv = raft_store_fail(s, errmsg, errno, "log recovery: truncate %s to %zu bytes",
                                     name, off);
                goto out;
            }
            if (s->io->fdatasync(s->io->data, fd) != 0) {
                rv = raft_store_fail(s, errmsg, errno, "log recovery: fdatasync %s", name);
                goto out;
            }
        }
        seg->size = off;
        break;
    }
out:
    s->io->close(s->io->data, fd);
    return rv;
}

/* Bring the replayed log in line with the snapshot (docs/storage.md, "Replay"). */
static int store_image_reconcile(struct raft_store_image *im, char *errmsg)
{
    raft_index snap = im->st.has_snapshot ? im->st.snapshot.meta.index : 0;
    raft_term snap_term = im->st.has_snapshot ? im->st.snapshot.meta.term : 0;
    size_t n = im->st.n_entries;
    raft_index last;

    if (im->anchored && (!im->st.has_snapshot || im->anchor > snap ||
                         (im->anchor == snap && im->anchor_term != snap_term))) {
        return store_corrupt(errmsg,
                             "log recovery: the log was reset after entry %" PRIu64
                             " (term %" PRIu64 ") but "
                             "the snapshot is at %" PRIu64 " (term %" PRIu64 ")",
                             im->anchor, im->anchor_term, snap, snap_term);
    }
    if (n == 0) {
        return 0;
    }
    last = im->first + n - 1;
    if (snap >= im->first && snap <= last && im->st.entries[snap - im->first].term != snap_term) {
        /* The snapshot was installed but the crash came before the RESET record was
         * durable: finish the job. */
        rfs_warnf("log recovery: entry %" PRIu64 " has term %" PRIu64
                  " but the snapshot has term %" PRIu64 ": "
                  "discarding the log (interrupted snapshot install)",
                  snap, im->st.entries[snap - im->first].term, snap_term);
        im->st.n_entries = 0;
        return 0;
    }
    if (im->first > snap + 1) {
        return store_corrupt(errmsg,
                             "log recovery: entries %" PRIu64 " to %" PRIu64
                             " are missing (the log starts at "
                             "%" PRIu64 ", the snapshot ends at %" PRIu64 ")",
                             (snap + 1), (im->first - 1), im->first, snap);
    }
    if (snap >= im->first) {
        size_t drop = snap - im->first + 1 < n ? (size_t)(snap - im->first + 1) : n;
        memmove(im->st.entries, im->st.entries + drop, (n - drop) * sizeof *im->st.entries);
        im->st.n_entries = (unsigned)(n - drop);
        im->first = snap + 1;
    }
    return 0;
}

int raft_store_image_read(struct raft_store *s, struct raft_store_image *im, bool repair,
                          char *errmsg)
{
    uint64_t *seqs = NULL;
    size_t n = 0;
    int rv;

    rv = store_image_read_snapshot(s, im, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = store_list_segments(s, &seqs, &n, errmsg);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && seqs[i] != seqs[i - 1] + 1) {
            char a[RAFT_SEGMENT_NAME_SIZE], b[RAFT_SEGMENT_NAME_SIZE];
            raft_segment_name(a, seqs[i - 1]);
            raft_segment_name(b, seqs[i]);
            rv = store_corrupt(errmsg, "log recovery: segments missing between %s and %s", a, b);
            break;
        }
        rv = store_image_read_segment(s, im, seqs[i], i + 1 == n, repair, errmsg);
        if (rv != 0) {
            break;
        }
    }
    rfs_free(seqs);
    if (rv != 0) {
        return rv;
    }
    return store_image_reconcile(im, errmsg);
}
