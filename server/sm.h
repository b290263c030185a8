/* server/sm.h: the state-machine interface a Raft server drives. kv/ (the LevelDB store)
 * and meta/ (the bucket table) implement it, so both share every line of server plumbing.
 *
 * All calls come from the server's event-loop thread. Replies and snapshots are
 * allocated with rfs_malloc and freed by the caller with rfs_free. */
#ifndef SERVER_SM_H
#define SERVER_SM_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../raft/raft.h"

struct rfs_sm_ops {
    /* The applied index the state machine has made durable (0 when empty). The server
     * passes it to raft_restore.applied so entries are not applied twice. */
    raft_index (*applied)(void *sm);

    /* Apply committed entries in order (NOOP and CONF entries only advance the applied
     * index). The effects of all n entries and the new applied index are written in ONE
     * atomic write (LevelDB write batch), so a crash leaves either all or none of them.
     * replies[i] gets entry i's reply (base NULL for none). The write need not be synced:
     * the Raft log is the durable record, and a restart re-applies from the durable
     * applied index.
     * Returns 0; RFS_EIO (errmsg says why) means the server must stop. A command that is
     * malformed or fails its own checks is not an error here: its reply says so. */
    int (*apply)(void *sm, const struct raft_entry *entries, unsigned n, struct rfs_buf *replies,
                 char *errmsg);

    /* Serve a read-only command (after ReadIndex confirmed the read point and the state
     * machine applied at least that index). Returns 0 or RFS_EIO. */
    int (*query)(void *sm, const void *cmd, size_t len, struct rfs_buf *reply, char *errmsg);

    /* Optional (NULL: none). Make everything applied so far durable (synced) and say up to
     * which index, so that the Raft log behind it can go without a serialised snapshot
     * (raft_snapshot_take_lazy); the bytes are then made by `snapshot` only when a follower
     * needs them. Returns 0 or RFS_EIO. */
    int (*make_durable)(void *sm, raft_index *index, char *errmsg);

    /* Serialise the whole state at the current applied index. */
    int (*snapshot)(void *sm, struct rfs_buf *out, raft_index *index, char *errmsg);

    /* Replace the whole state by a snapshot taken at `index`, atomically: after a failure
     * or a crash the old state (or the complete new one) is in place, never a mix.
     * Returns 0, RFS_ECORRUPT (bad snapshot bytes), RFS_EIO. */
    int (*restore)(void *sm, raft_index index, const void *data, size_t len, char *errmsg);

    /* Optional (NULL: none). Background work of the state machine's own, called on every
     * tick between applies; it must not change the replicated state, and should return
     * quickly when there is nothing to do. Returns 0, or an error the server stops on. */
    int (*housekeep)(void *sm, char *errmsg);

    /* Optional (NULL: unknown). About how many bytes a snapshot of the state would take now
     * (cheap: no scan), so that a state that shrank well below its last snapshot gets a new,
     * small one and the old one's disk space back. */
    uint64_t (*size_estimate)(void *sm);

    /* Optional (NULL: none). For statistics (KV_SPACE, server/usage.h): how many keys of the
     * replicated data start with prefix[0..len), as of the last apply, into *n; *exact = 0
     * when part of it was estimated. Must be quick (it runs on the event loop). Returns 0,
     * RFS_EIO or RFS_ENOMEM. */
    int (*count_keys)(void *sm, const void *prefix, size_t len, uint64_t *n, int *exact,
                      char *errmsg);
};

#endif
