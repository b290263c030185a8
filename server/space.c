/* See space.h. */
#include "space.h"

#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>

#include "../common/log.h"

void server_space_init(struct server_space *sp, const char *dir, uint64_t min_free_mb)
{
    memset(sp, 0, sizeof *sp);
    sp->dir = dir;
    sp->min_free = min_free_mb << 20;
}

bool server_space_low(struct server_space *sp, uint64_t now_ms, uint64_t *free_bytes)
{
    struct statvfs st;
    bool low;
    if (sp->min_free == 0) {
        *free_bytes = 0;
        return false;
    }
    if (sp->checked && now_ms - sp->checked_ms < SPACE_CHECK_MS) {
        *free_bytes = sp->free;
        return sp->low;
    }
    if (statvfs(sp->dir, &st) != 0) {
        if (!sp->checked || sp->low) {
            rfs_warnf("cannot tell the free space of %s (statvfs: %s); writes go on", sp->dir,
                      strerror(errno));
        }
        sp->checked = true;
        sp->checked_ms = now_ms;
        sp->low = false;
        *free_bytes = sp->free = 0;
        return false;
    }
    sp->free = (uint64_t)st.f_bavail * st.f_frsize;
    low = sp->free < sp->min_free;
    if (low != sp->low) {
        if (low) {
            rfs_warnf("%s has %llu MiB free, less than --min-free-mb %llu: refusing writes of data "
                      "until space is freed (delete files, or add a group and move buckets to it)",
                      sp->dir, (unsigned long long)(sp->free >> 20),
                      (unsigned long long)(sp->min_free >> 20));
        } else {
            rfs_infof("%s has %llu MiB free again: writes accepted", sp->dir,
                      (unsigned long long)(sp->free >> 20));
        }
    }
    sp->low = low;
    sp->checked = true;
    sp->checked_ms = now_ms;
    *free_bytes = sp->free;
    return low;
}
