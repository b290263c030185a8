/* server/space.h: whether a server's data directory is running out of space, so that it
 * refuses growing writes before the disk is full (server/space.c). A statvfs of the
 * directory, at most every SPACE_CHECK_MS; each change between low and enough is logged. */
#ifndef SERVER_SPACE_H
#define SERVER_SPACE_H

#include <stdbool.h>
#include <stdint.h>

#define SPACE_CHECK_MS 100

struct server_space {
    const char *dir;
    uint64_t min_free; /* bytes; 0: never low */
    uint64_t checked_ms;
    bool checked;
    bool low;
    uint64_t free; /* bytes, as last seen */
};

void server_space_init(struct server_space *sp, const char *dir, uint64_t min_free_mb);

/* Whether less than min_free is free now (as of the last check, at most SPACE_CHECK_MS ago);
 * *free_bytes gets what is free. A failed statvfs counts as enough (and is logged once). */
bool server_space_low(struct server_space *sp, uint64_t now_ms, uint64_t *free_bytes);

#endif
