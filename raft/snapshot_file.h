/* The snapshot file of a log store: encoding and checking (format in docs/storage.md). */
#ifndef RAFT_SNAPSHOT_FILE_H
#define RAFT_SNAPSHOT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"

/* magic[8] | u32 version | u32 n_voters | u32 n_learners | u32 reserved | u64 index |
 * u64 term | u64 voters[n_voters] | u64 learners[n_learners] | u64 data_len | data |
 * u32 crc32c of everything before it. */
#define RAFT_SNAPSHOT_FILE_MAGIC      "RFSSNAP\n"
#define RAFT_SNAPSHOT_FILE_VERSION    1
#define RAFT_SNAPSHOT_FILE_FIXED      48
#define RAFT_SNAPSHOT_FILE_HEADER_MAX (RAFT_SNAPSHOT_FILE_FIXED + 16 * RAFT_MAX_NODES)
#define RAFT_SNAPSHOT_FILE_TRAILER    4
/* Header flags (the u32 at offset 20). */
#define RAFT_SNAPSHOT_FLAG_IN_SM 1u /* no bytes: the state machine holds the state */

/* Encode the header of snap into head (RAFT_SNAPSHOT_FILE_HEADER_MAX bytes) and the
 * trailer, whose checksum covers the header and snap->data, into tail. Returns the header
 * length; the file is head, then snap->data, then tail. The configuration must have at
 * most RAFT_MAX_NODES voters and learners. */
size_t raft_snapshot_file_encode(uint8_t *head, uint8_t tail[RAFT_SNAPSHOT_FILE_TRAILER],
                                 const struct raft_snapshot *snap);

/* Check and decode a whole snapshot file held in buf. On success returns 0 and fills
 * *snap, whose data points into buf. Otherwise returns RFS_ECORRUPT and sets *why to a
 * static phrase. */
int raft_snapshot_file_decode(uint8_t *buf, size_t size, struct raft_snapshot *snap,
                              const char **why);

#endif
