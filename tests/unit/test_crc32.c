/* Tests of common/crc32.h: the published check values of CRC-32C (RFC 3720, appendix B.4)
 * and CRC-32 (IEEE), and that a CRC continued over any split of a buffer, at any
 * alignment, equals the CRC of the whole (the SSE4.2 path works 8 aligned bytes at a time,
 * with byte steps before and after). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "common/crc32.h"

static void test_check_values(void **state)
{
    unsigned char buf[32];
    (void)state;
    assert_int_equal(rfs_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(rfs_crc32(0, "123456789", 9), 0xCBF43926u);
    memset(buf, 0, sizeof buf);
    assert_int_equal(rfs_crc32c(0, buf, sizeof buf), 0x8A9136AAu);
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(rfs_crc32c(0, buf, sizeof buf), 0x62A8AB43u);
    for (unsigned i = 0; i < sizeof buf; i++) {
        buf[i] = (unsigned char)i;
    }
    assert_int_equal(rfs_crc32c(0, buf, sizeof buf), 0x46DD794Eu);
    assert_int_equal(rfs_crc32c(0, buf, 0), 0u);
}

/* A plain bit-at-a-time CRC-32C, the definition the fast paths must agree with. */
static uint32_t crc32c_reference(const unsigned char *p, size_t len)
{
    uint32_t crc = 0xffffffffu;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) {
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
    }
    return ~crc;
}

static void test_any_split_and_alignment_agrees(void **state)
{
    unsigned char buf[300];
    (void)state;
    for (unsigned i = 0; i < sizeof buf; i++) {
        buf[i] = (unsigned char)(i * 131u + 7u);
    }
    for (size_t start = 0; start < 9; start++) {
        for (size_t len = 0; start + len <= sizeof buf; len += 37) {
            uint32_t whole = rfs_crc32c(0, buf + start, len);
            assert_int_equal(whole, crc32c_reference(buf + start, len));
            for (size_t cut = 0; cut <= len; cut += 5) {
                uint32_t c = rfs_crc32c(0, buf + start, cut);
                assert_int_equal(rfs_crc32c(c, buf + start + cut, len - cut), whole);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_values),
        cmocka_unit_test(test_any_split_and_alignment_agrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
