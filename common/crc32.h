/* CRC-32C (Castagnoli), used for log records and bucket routing. */
#ifndef RFS_CRC32_H
#define RFS_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC over buf; start with crc = 0. */
uint32_t rfs_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
