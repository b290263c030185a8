#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *rfs_strerror(int rv)
{
    switch (rv) {
        case 0:
            return "success";
#define RFS_ERR_CASE(name, value, text)                                                            \
    case name:                                                                                     \
        return text;
            RFS_ERR_TABLE(RFS_ERR_CASE)
#undef RFS_ERR_CASE
    }
    return "unknown error";
}

void rfs_errmsg_printf(char *errmsg, const char *fmt, ...)
{
    va_list ap;
    if (errmsg == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(errmsg, RFS_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
}

void rfs_errmsg_wrapf(char *errmsg, const char *fmt, ...)
{
    char old[RFS_ERRMSG_SIZE];
    char prefix[RFS_ERRMSG_SIZE];
    va_list ap;
    if (errmsg == NULL) {
        return;
    }
    snprintf(old, sizeof old, "%s", errmsg);
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Truncation is acceptable: the innermost reason is at the end and may be cut. */
    size_t n = strlen(prefix);
    memcpy(errmsg, prefix, n);
    if (n + 2 < RFS_ERRMSG_SIZE) {
        errmsg[n] = ':';
        errmsg[n + 1] = ' ';
        n += 2;
        size_t rest = RFS_ERRMSG_SIZE - 1 - n;
        size_t olen = strlen(old);
        if (olen > rest) {
            olen = rest;
        }
        memcpy(errmsg + n, old, olen);
        n += olen;
    }
    errmsg[n] = '\0';
}
