/* The snapshot file of a log store. One checksum covers the whole file: it is written
 * once, to a temporary name, and only renamed into place after an fsync, so there is no
 * torn-tail case to tell apart; any damage means the file is unusable. */
#include "snapshot_file.h"

#include <string.h>

#include "../common/bytes.h"
#include "../common/crc32.h"

size_t raft_snapshot_file_encode(uint8_t *head, uint8_t tail[RAFT_SNAPSHOT_FILE_TRAILER],
                                 const struct raft_snapshot *snap)
{
    const struct raft_conf *c = &snap->meta.conf;
    uint8_t *p = head;
    uint32_t crc;

    memcpy(p, RAFT_SNAPSHOT_FILE_MAGIC, 8);
    rfs_put_le32(p + 8, RAFT_SNAPSHOT_FILE_VERSION);
    rfs_put_le32(p + 12, c->n_voters);
    rfs_put_le32(p + 16, c->n_learners);
    rfs_put_le32(p + 20, snap->in_sm ? RAFT_SNAPSHOT_FLAG_IN_SM : 0); /* flags */
    rfs_put_le64(p + 24, snap->meta.index);
    rfs_put_le64(p + 32, snap->meta.term);
    p += 40;
    for (unsigned i = 0; i < c->n_voters; i++, p += 8) {
        rfs_put_le64(p, c->voters[i]);
    }
    for (unsigned i = 0; i < c->n_learners; i++, p += 8) {
        rfs_put_le64(p, c->learners[i]);
    }
    rfs_put_le64(p, snap->data.len);
    p += 8;
    crc = rfs_crc32c(0, head, (size_t)(p - head));
    crc = rfs_crc32c(crc, snap->data.base, snap->data.len);
    rfs_put_le32(tail, crc);
    return (size_t)(p - head);
}

int raft_snapshot_file_decode(uint8_t *buf, size_t size, struct raft_snapshot *snap,
                              const char **why)
{
    uint32_t n_voters, n_learners;
    size_t head_len;
    uint64_t data_len;
    const uint8_t *p;

    if (size < RAFT_SNAPSHOT_FILE_FIXED + RAFT_SNAPSHOT_FILE_TRAILER) {
        *why = "file too short";
        return RFS_ECORRUPT;
    }
    if (memcmp(buf, RAFT_SNAPSHOT_FILE_MAGIC, 8) != 0) {
        *why = "bad magic";
        return RFS_ECORRUPT;
    }
    if (rfs_get_le32(buf + 8) != RAFT_SNAPSHOT_FILE_VERSION) {
        *why = "unknown version";
        return RFS_ECORRUPT;
    }
    if ((rfs_get_le32(buf + 20) & ~(uint32_t)RAFT_SNAPSHOT_FLAG_IN_SM) != 0) {
        *why = "unknown flags";
        return RFS_ECORRUPT;
    }
    n_voters = rfs_get_le32(buf + 12);
    n_learners = rfs_get_le32(buf + 16);
    if (n_voters > RAFT_MAX_NODES || n_learners > RAFT_MAX_NODES) {
        *why = "bad configuration size";
        return RFS_ECORRUPT;
    }
    head_len = RAFT_SNAPSHOT_FILE_FIXED + 8 * (size_t)(n_voters + n_learners);
    if (size < head_len + RAFT_SNAPSHOT_FILE_TRAILER) {
        *why = "file too short";
        return RFS_ECORRUPT;
    }
    data_len = rfs_get_le64(buf + head_len - 8);
    if (data_len != size - head_len - RAFT_SNAPSHOT_FILE_TRAILER) {
        *why = "bad data length";
        return RFS_ECORRUPT;
    }
    if (rfs_crc32c(0, buf, size - RAFT_SNAPSHOT_FILE_TRAILER) !=
        rfs_get_le32(buf + size - RAFT_SNAPSHOT_FILE_TRAILER)) {
        *why = "bad checksum";
        return RFS_ECORRUPT;
    }
    memset(snap, 0, sizeof *snap);
    snap->meta.index = rfs_get_le64(buf + 24);
    snap->meta.term = rfs_get_le64(buf + 32);
    snap->meta.conf.n_voters = n_voters;
    snap->meta.conf.n_learners = n_learners;
    p = buf + 40;
    for (unsigned i = 0; i < n_voters; i++, p += 8) {
        snap->meta.conf.voters[i] = rfs_get_le64(p);
    }
    for (unsigned i = 0; i < n_learners; i++, p += 8) {
        snap->meta.conf.learners[i] = rfs_get_le64(p);
    }
    snap->data.base = data_len > 0 ? buf + head_len : NULL;
    snap->data.len = (size_t)data_len;
    snap->in_sm = (rfs_get_le32(buf + 20) & RAFT_SNAPSHOT_FLAG_IN_SM) != 0;
    if (snap->in_sm && data_len != 0) {
        *why = "bytes in a snapshot held by the state machine";
        return RFS_ECORRUPT;
    }
    if (snap->meta.index == 0) {
        *why = "snapshot index 0";
        return RFS_ECORRUPT;
    }
    return 0;
}
