/* Bucket routing and the LevelDB keys of user data. A key's routing part is the text
 * inside its first {...} (a hash tag, as in Redis Cluster) when that text is non-empty,
 * else the whole key, so related keys can be placed in one bucket on purpose. */
#include <string.h>

#include "../common/crc32.h"
#include "internal.h"

int kv_key_tag(const void *key, size_t len, const char **part, size_t *plen)
{
    const char *k = key;
    const char *open = len > 0 ? memchr(k, '{', len) : NULL;
    const char *close;
    size_t rest;

    if (open == NULL) {
        return 0;
    }
    rest = len - (size_t)(open - k) - 1;
    close = rest > 0 ? memchr(open + 1, '}', rest) : NULL;
    if (close == NULL || close == open + 1) {
        return 0;
    }
    *part = open + 1;
    *plen = (size_t)(close - *part);
    return 1;
}

uint32_t kv_bucket_of(const void *key, size_t len, uint32_t nbuckets)
{
    const char *part = key;
    size_t plen = len;

    kv_key_tag(key, len, &part, &plen);
    return rfs_crc32(0, part, plen) % nbuckets;
}

void kv_key_data(char *out, uint32_t bucket, const void *key, size_t len)
{
    out[0] = KV_PREFIX_DATA;
    out[1] = (char)(bucket >> 8);
    out[2] = (char)bucket;
    if (len > 0) {
        memcpy(out + KV_DATA_HDR, key, len);
    }
}

int kv_key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;

    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen;
}
