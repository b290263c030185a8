/* CRC-32C (Castagnoli) for log records; CRC-32 (IEEE) for bucket routing. */
#ifndef RFS_CRC32_H
#define RFS_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC over buf; start with crc = 0. */
uint32_t rfs_crc32c(uint32_t crc, const void *buf, size_t len);

/* CRC-32 (IEEE 802.3, as zlib's crc32()), used to route keys to buckets. crc = 0 to start. */
uint32_t rfs_crc32(uint32_t crc, const void *buf, size_t len);

#endif
