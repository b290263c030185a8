/* Internals of the Raft log store shared by log_store.c (writing) and store_recovery.c
 * (reading the directory back). Not part of the module's contract. */
#ifndef RAFT_STORE_INTERNAL_H
#define RAFT_STORE_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../common/alloc.h"
#include "log_store.h"

#define STORE_SNAPSHOT     "snapshot"
#define STORE_SNAPSHOT_TMP "snapshot.tmp"
/* Linux transfers at most about 2 GiB per read or write call. */
#define STORE_IO_CHUNK ((size_t)1 << 30)

struct raft_store_segment {
    uint64_t seq;
    uint64_t size;        /* bytes written to the file */
    raft_index max_index; /* highest entry index replay can take from it (0: none) */
};

/* The stored state as read from the directory: what raft_store_load() hands out, plus the
 * segment list raft_store_open() continues from. */
struct raft_store_image {
    struct raft_store_state st;
    size_t cap_entries;
    raft_index first; /* index of st.entries[0], or of the next entry if anchored */
    bool anchored;    /* a RESET record was replayed: the log starts at anchor + 1 */
    raft_index anchor;
    raft_term anchor_term;
    void **bufs; /* file contents the state points into */
    size_t n_bufs, cap_bufs;
    struct raft_store_segment *segs;
    size_t n_segs, cap_segs;
};

struct raft_store {
    char *dir;
    const struct raft_store_io *io;
    size_t segment_bytes;
    int dir_fd; /* holds the flock */

    struct raft_store_segment *segs; /* consecutive, oldest first; the last is open */
    size_t n_segs, cap_segs;
    int seg_fd;    /* the last segment, -1 if there is none */
    bool unsynced; /* written to seg_fd since its last fdatasync */

    bool has_snapshot;
    raft_index snap_index; /* 0 without a snapshot */
    raft_term snap_term;
    raft_term *terms; /* terms[i] is the term of entry snap_index + 1 + i */
    size_t n_terms, cap_terms;

    struct raft_hard_state hs;         /* latest value, possibly only in pend */
    struct raft_hard_state hs_written; /* latest value written to a segment */

    uint8_t *pend; /* encoded records not yet written */
    size_t pend_len, pend_cap;
    raft_index pend_max; /* highest entry index in pend (0: none) */
    bool pend_reset;     /* pend holds a RESET record; pend_max counts from it */

    bool has_image; /* image is what raft_store_load() returns */
    struct raft_store_image image;

    int failed; /* 0, or the code of the first failure (fsync gate) */
    char failmsg[RFS_ERRMSG_SIZE];
};

/* Make room for `need` elements of `size` bytes in the array whose pointer is at pp and
 * whose capacity is *cap. Returns 0 or RFS_ENOMEM (the array is then unchanged). */
static inline int store_grow(void *pp, size_t *cap, size_t need, size_t size)
{
    size_t n = *cap > 0 ? *cap : 16;
    void *p;
    void *q;
    if (need <= *cap) {
        return 0;
    }
    while (n < need) {
        n *= 2;
    }
    if (n > SIZE_MAX / size) {
        return RFS_ENOMEM;
    }
    /* pp is the address of a T *; copying the pointer's bytes avoids type-punned access. */
    memcpy(&p, pp, sizeof p);
    q = rfs_realloc(p, n * size);
    if (q == NULL) {
        return RFS_ENOMEM;
    }
    memcpy(pp, &q, sizeof q);
    *cap = n;
    return 0;
}

static inline void store_path(const struct raft_store *s, const char *name, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/%s", s->dir, name);
}

/* A failure that changes nothing on disk (a read, a listing): write "<what>: <strerror(err)>"
 * (just "<what>" if err is 0) to errmsg and return RFS_ENOSPC or RFS_EIO; no poisoning. */
int raft_store_error(char *errmsg, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A failed write, sync, truncate, rename or unlink: like raft_store_error(), and poison the
 * store with that message (fsync gate). */
int raft_store_fail(struct raft_store *s, char *errmsg, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Read the snapshot file and every segment into im (zeroed by the caller; the caller frees
 * it with raft_store_image_free() whatever the result). With `repair`, a torn tail of the
 * last segment is cut off the file; without, it is only left out of the image.
 * Returns 0, RFS_ECORRUPT, RFS_EIO or RFS_ENOMEM, with errmsg set. */
int raft_store_image_read(struct raft_store *s, struct raft_store_image *im, bool repair,
                          char *errmsg);

/* Free what im holds and zero it. */
void raft_store_image_free(struct raft_store_image *im);

#endif
