/* fs/lease.h: this filesystem's session in the cluster (its lease), and what it has seen of
 * the other mounts' leases (docs/locks.md, "The lease").
 *
 * A mount registers a record under a random 64-bit mount id and rewrites it every
 * lease_ms / 4 from a background thread; every rewrite gives the record a new version. A
 * lock whose mount has no record is dead. Another mount decides that a record has expired
 * when it has seen the same version for the record's lease_ms by its own monotonic clock,
 * and then deletes the record with a transaction that checks that version: no clocks are
 * compared between machines, only their rates (docs/locks.md). */
#ifndef FS_LEASE_H
#define FS_LEASE_H

#include <stdbool.h>
#include <stdint.h>

struct rfs_fs;
struct fs_lease;

/* Lease length when none is given (ms). */
#define FS_LEASE_MS_DEFAULT 6000
#define FS_LEASE_MS_MIN     200

/* Register (lease_ms: 0 for the default, at least FS_LEASE_MS_MIN) and start renewing.
 * Returns 0, or a negative errno with errmsg (the cluster did not answer). */
int fs_lease_start(struct rfs_fs *fs, unsigned lease_ms, struct fs_lease **out, char *errmsg);
/* Stop renewing and delete the record (best effort: if that fails, others see it expire);
 * every lock of this mount is then dead. Safe on NULL. */
void fs_lease_stop(struct fs_lease *l);

/* The mount id locks are taken under now. It changes when the record was found deleted by
 * another mount (this one was taken for dead, its locks are gone): an error in the log. */
uint64_t fs_lease_id(struct fs_lease *l);
/* Whether the lease is known to hold now: a renewal sent less than lease_ms ago was
 * confirmed, and the record is this id's. Others cannot have taken it for expired yet. */
bool fs_lease_valid(struct fs_lease *l);

/* Whether the locks of mount are live, from its record: *live false if it has none (gone,
 * or expired here now: the record is deleted). *local: the mount runs on this machine (its
 * pids mean something here). Returns 0 or -EIO. */
int fs_lease_check(struct fs_lease *l, uint64_t mount, bool *live, bool *local);

#endif
