/* mount/files.h: the open regular files of a mount, listed by inode number, so that a call
 * reaching an inode by another way (stat or truncate by name, another open, a read through
 * another descriptor) can first write out what this mount's handles buffer (fs/file.h). */
#ifndef MOUNT_FILES_H
#define MOUNT_FILES_H

#include <stdbool.h>
#include <stdint.h>

#include "fs/file.h"
#include "fuse_ops.h"

/* One FUSE open of a regular file (fi->fh). */
struct mount_open_file {
    struct rfs_file *f;
    uint64_t ino;
    struct mount_open_file *next, **pprev; /* in the bucket's list, under its mu */
    int err; /* under the bucket's mu: an error that made a flush run by some other call drop
              * this handle's bytes, for this handle's next flush or fsync to report */
    /* Under the bucket's mu: the lock owners of the POSIX lock calls made through this
     * handle (rfs_malloc'd), for its release (mount/locks.c). */
    uint64_t *lock_owners;
    unsigned n_lock_owners, cap_lock_owners;
    /* An O_APPEND (direct_io) handle on a setuid or setgid file: its first write by a caller
     * other than root clears the bits here (mount/fuse_ops.c, kill_setid_on_write). */
    bool kill_setid;
};

/* A handle on ino (flags: open(2)'s), listed; NULL when out of memory. */
struct mount_open_file *mount_file_open(struct mount_ctx *m, uint64_t ino, int flags);
/* Unlist, flush and free (a flush error is only logged: FUSE's flush op reported it). */
void mount_file_release(struct mount_ctx *m, struct mount_open_file *o);
/* Flush o for its owner (close, fsync): 0, or this flush's error, or one that an earlier
 * flush on o's behalf met. */
int mount_file_flush(struct mount_ctx *m, struct mount_open_file *o);
/* Flush every handle on ino. Returns 0 or the first error (callers other than setattr
 * ignore it: it is the writers' to report, and an error that dropped a handle's bytes is
 * kept for that handle's owner); *any (may be NULL) says whether ino has open handles. */
int mount_files_flush_inode(struct mount_ctx *m, uint64_t ino, bool *any);

/* Flush every other handle on self's inode (a write through self comes after what they
 * hold). Returns as mount_files_flush_inode does. */
int mount_files_flush_others(struct mount_ctx *m, const struct mount_open_file *self);

/* Remember that owner made a POSIX lock call through o. Returns 0 or -ENOMEM. */
int mount_file_note_lock_owner(struct mount_ctx *m, struct mount_open_file *o, uint64_t owner);
/* The owners noted on o and on no other open handle of o's inode, into *owners
 * (rfs_malloc'd, the caller frees it with rfs_free; NULL when none) and *n. Returns 0 or
 * -ENOMEM. */
int mount_file_solo_lock_owners(struct mount_ctx *m, struct mount_open_file *o, uint64_t **owners,
                                unsigned *n);

#endif
