/* Log segment records: encoding, decoding and file names (format in docs/storage.md). */
#ifndef RAFT_SEGMENT_H
#define RAFT_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"

/* Every record: u32 len | u32 crc32c | u8 type | payload, little-endian. len counts the
 * type byte and the payload; the crc covers the len field, the type and the payload. */
#define RAFT_SEGMENT_HEADER 8

enum raft_record_type {
    RAFT_RECORD_ENTRY = 1,      /* u64 term | u64 index | u8 entry type | data */
    RAFT_RECORD_HARD_STATE = 2, /* u64 term | u64 vote | u64 commit */
    RAFT_RECORD_RESET = 3,      /* u64 index | u64 term: the log is empty after index */
};

#define RAFT_RECORD_ENTRY_FIXED     (RAFT_SEGMENT_HEADER + 1 + 17)
#define RAFT_RECORD_HARD_STATE_SIZE (RAFT_SEGMENT_HEADER + 1 + 24)
#define RAFT_RECORD_RESET_SIZE      (RAFT_SEGMENT_HEADER + 1 + 16)
/* Largest entry data a record can carry (len is a u32). */
#define RAFT_RECORD_MAX_DATA ((size_t)UINT32_MAX - (RAFT_RECORD_ENTRY_FIXED - RAFT_SEGMENT_HEADER))

/* "seg-" + 16 lower-case hex digits of the segment's sequence number + NUL. */
#define RAFT_SEGMENT_NAME_SIZE 21

/* One decoded record. For an entry, entry.data points into the decoded buffer. */
struct raft_record {
    uint8_t type; /* enum raft_record_type */
    size_t size;  /* bytes in the file, header included */
    struct raft_entry entry;
    struct raft_hard_state hard_state;
    raft_index reset_index;
    raft_term reset_term;
};

/* Result of raft_segment_decode(). */
enum raft_segment_status {
    RAFT_SEGMENT_OK = 0,   /* *rec holds the record at off */
    RAFT_SEGMENT_END,      /* off is the end of the buffer */
    RAFT_SEGMENT_BAD,      /* incomplete, bad length or bad checksum: torn or damaged */
    RAFT_SEGMENT_MALFORMED /* checksum fine but contents invalid: never a torn write */
};

/* Encoders write one whole record at out (which must have room for it) and return its
 * size. */
size_t raft_segment_entry_size(size_t data_len);
size_t raft_segment_encode_entry(uint8_t *out, const struct raft_entry *e);
size_t raft_segment_encode_hard_state(uint8_t *out, const struct raft_hard_state *hs);
size_t raft_segment_encode_reset(uint8_t *out, raft_index index, raft_term term);

/* Decode the record at buf[off] of a buffer holding `size` bytes. On BAD or MALFORMED,
 * *why is a static phrase such as "bad checksum". Never reads outside the buffer. */
enum raft_segment_status raft_segment_decode(uint8_t *buf, size_t size, size_t off,
                                             struct raft_record *rec, const char **why);

/* Whether a record with a good checksum starts anywhere in buf[from, size). Recovery uses
 * it to tell a torn tail (nothing valid follows) from damage in the middle. */
bool raft_segment_valid_record_after(const uint8_t *buf, size_t size, size_t from);

void raft_segment_name(char out[RAFT_SEGMENT_NAME_SIZE], uint64_t seq);
/* Parse a directory entry name; false if it is not a segment name. */
bool raft_segment_parse_name(const char *name, uint64_t *seq);

#endif
