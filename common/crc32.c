#include "crc32.h"

/* Byte-at-a-time tables, built once on first use (thread-safe). */
#include <pthread.h>
#include <string.h>

static uint32_t crc_table[256];
static uint32_t ieee_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        uint32_t d = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            d = (d & 1) ? (d >> 1) ^ 0xEDB88320u : d >> 1;
        }
        crc_table[i] = c;
        ieee_table[i] = d;
    }
}

uint32_t rfs_crc32(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    pthread_once(&crc_once, crc_table_init);
    crc = ~crc;
    while (len--) {
        crc = ieee_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return ~crc;
}

static uint32_t crc32c_bytes(uint32_t crc, const unsigned char *p, size_t len)
{
    while (len--) {
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* The SSE4.2 crc32 instruction computes CRC-32C (reflected, no inversions: those stay ours),
 * 8 bytes at a time: about 20 times the table's speed, which matters because every log
 * record and snapshot is checksummed on write and on read. Written by hand: Debian has no C
 * library for CRC-32C. */
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const unsigned char *p,
                                                               size_t len)
{
    uint64_t c = crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        crc = _mm_crc32_u8((uint32_t)c, *p++);
        c = crc;
        len--;
    }
    for (; len >= 8; len -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    crc = (uint32_t)c;
    while (len-- > 0) {
        crc = _mm_crc32_u8(crc, *p++);
    }
    return crc;
}

static int have_sse42;

static void crc_cpu_init(void)
{
    crc_table_init();
    have_sse42 = __builtin_cpu_supports("sse4.2");
}

uint32_t rfs_crc32c(uint32_t crc, const void *buf, size_t len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_cpu_init);
    return ~(have_sse42 ? crc32c_sse42(~crc, buf, len) : crc32c_bytes(~crc, buf, len));
}
#else
uint32_t rfs_crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_table_init);
    return ~crc32c_bytes(~crc, buf, len);
}
#endif
