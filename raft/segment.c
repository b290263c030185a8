/* Log segment records. A record is self-delimiting and self-checking: the length comes
 * first and is itself covered by the checksum, so a torn or flipped length is caught
 * like any other damage instead of sending the reader to a wrong offset. */
#include "segment.h"

#include <stdio.h>
#include <string.h>

#include "../common/bytes.h"
#include "../common/crc32.h"

static uint32_t record_crc(const uint8_t *rec, uint32_t len)
{
    uint32_t crc = rfs_crc32c(0, rec, 4);
    return rfs_crc32c(crc, rec + RAFT_SEGMENT_HEADER, len);
}

/* Fill in len and crc once type and payload are in place. */
static size_t record_seal(uint8_t *rec, size_t body_len)
{
    rfs_put_le32(rec, (uint32_t)body_len);
    rfs_put_le32(rec + 4, record_crc(rec, (uint32_t)body_len));
    return RAFT_SEGMENT_HEADER + body_len;
}

size_t raft_segment_entry_size(size_t data_len)
{
    return RAFT_RECORD_ENTRY_FIXED + data_len;
}

size_t raft_segment_encode_entry(uint8_t *out, const struct raft_entry *e)
{
    uint8_t *p = out + RAFT_SEGMENT_HEADER;
    p[0] = RAFT_RECORD_ENTRY;
    rfs_put_le64(p + 1, e->term);
    rfs_put_le64(p + 9, e->index);
    p[17] = e->type;
    if (e->data.len > 0) {
        memcpy(p + 18, e->data.base, e->data.len);
    }
    return record_seal(out, 18 + e->data.len);
}

size_t raft_segment_encode_hard_state(uint8_t *out, const struct raft_hard_state *hs)
{
    uint8_t *p = out + RAFT_SEGMENT_HEADER;
    p[0] = RAFT_RECORD_HARD_STATE;
    rfs_put_le64(p + 1, hs->term);
    rfs_put_le64(p + 9, hs->vote);
    rfs_put_le64(p + 17, hs->commit);
    return record_seal(out, 25);
}

size_t raft_segment_encode_reset(uint8_t *out, raft_index index, raft_term term)
{
    uint8_t *p = out + RAFT_SEGMENT_HEADER;
    p[0] = RAFT_RECORD_RESET;
    rfs_put_le64(p + 1, index);
    rfs_put_le64(p + 9, term);
    return record_seal(out, 17);
}

/* Length and checksum only: whether the bytes at off are a record we wrote. */
static enum raft_segment_status record_check(const uint8_t *buf, size_t size, size_t off,
                                             uint32_t *len_out, const char **why)
{
    size_t left = size - off;
    uint32_t len;
    if (left < RAFT_SEGMENT_HEADER) {
        *why = "truncated record header";
        return RAFT_SEGMENT_BAD;
    }
    len = rfs_get_le32(buf + off);
    if (len == 0) {
        *why = "bad record length";
        return RAFT_SEGMENT_BAD;
    }
    if (len > left - RAFT_SEGMENT_HEADER) {
        *why = "truncated record";
        return RAFT_SEGMENT_BAD;
    }
    if (record_crc(buf + off, len) != rfs_get_le32(buf + off + 4)) {
        *why = "bad checksum";
        return RAFT_SEGMENT_BAD;
    }
    *len_out = len;
    return RAFT_SEGMENT_OK;
}

enum raft_segment_status raft_segment_decode(uint8_t *buf, size_t size, size_t off,
                                             struct raft_record *rec, const char **why)
{
    enum raft_segment_status st;
    uint32_t len = 0;
    uint8_t *p;

    if (off == size) {
        return RAFT_SEGMENT_END;
    }
    st = record_check(buf, size, off, &len, why);
    if (st != RAFT_SEGMENT_OK) {
        return st;
    }
    p = buf + off + RAFT_SEGMENT_HEADER;
    memset(rec, 0, sizeof *rec);
    rec->type = p[0];
    rec->size = RAFT_SEGMENT_HEADER + (size_t)len;
    switch (rec->type) {
        case RAFT_RECORD_ENTRY:
            if (len < 18) {
                *why = "short entry record";
                return RAFT_SEGMENT_MALFORMED;
            }
            rec->entry.term = rfs_get_le64(p + 1);
            rec->entry.index = rfs_get_le64(p + 9);
            rec->entry.type = p[17];
            rec->entry.data.base = len > 18 ? p + 18 : NULL;
            rec->entry.data.len = len - 18;
            if (rec->entry.index == 0) {
                *why = "entry with index 0";
                return RAFT_SEGMENT_MALFORMED;
            }
            return RAFT_SEGMENT_OK;
        case RAFT_RECORD_HARD_STATE:
            if (len != 25) {
                *why = "bad hard state record size";
                return RAFT_SEGMENT_MALFORMED;
            }
            rec->hard_state.term = rfs_get_le64(p + 1);
            rec->hard_state.vote = rfs_get_le64(p + 9);
            rec->hard_state.commit = rfs_get_le64(p + 17);
            return RAFT_SEGMENT_OK;
        case RAFT_RECORD_RESET:
            if (len != 17) {
                *why = "bad reset record size";
                return RAFT_SEGMENT_MALFORMED;
            }
            rec->reset_index = rfs_get_le64(p + 1);
            rec->reset_term = rfs_get_le64(p + 9);
            return RAFT_SEGMENT_OK;
        default:
            *why = "unknown record type";
            return RAFT_SEGMENT_MALFORMED;
    }
}

bool raft_segment_valid_record_after(const uint8_t *buf, size_t size, size_t from)
{
    const char *why;
    uint32_t len;
    /* Most offsets fail on the length alone (zeros, or a length past the end), so the
     * scan costs little more than reading the bytes. */
    for (size_t off = from; off < size; off++) {
        if (record_check(buf, size, off, &len, &why) == RAFT_SEGMENT_OK) {
            return true;
        }
    }
    return false;
}

void raft_segment_name(char out[RAFT_SEGMENT_NAME_SIZE], uint64_t seq)
{
    snprintf(out, RAFT_SEGMENT_NAME_SIZE, "seg-%016llx", (unsigned long long)seq);
}

bool raft_segment_parse_name(const char *name, uint64_t *seq)
{
    uint64_t v = 0;
    if (strncmp(name, "seg-", 4) != 0 || strlen(name) != RAFT_SEGMENT_NAME_SIZE - 1) {
        return false;
    }
    for (const char *c = name + 4; *c != '\0'; c++) {
        int d;
        if (*c >= '0' && *c <= '9') {
            d = *c - '0';
        } else if (*c >= 'a' && *c <= 'f') {
            d = *c - 'a' + 10;
        } else {
            return false;
        }
        v = v << 4 | (uint64_t)d;
    }
    *seq = v;
    return true;
}
