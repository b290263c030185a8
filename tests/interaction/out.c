/* The growing text buffer that collects a command's transcript. */
#include "interact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/alloc.h"

void interact_out_init(struct interact_out *o)
{
    memset(o, 0, sizeof *o);
}

void interact_out_close(struct interact_out *o)
{
    rfs_free(o->buf);
    memset(o, 0, sizeof *o);
}

void interact_out_reset(struct interact_out *o)
{
    o->len = 0;
    if (o->buf != NULL) {
        o->buf[0] = '\0';
    }
}

void interact_voutf(struct interact_out *o, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return;
    }
    if (o->len + (size_t)n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        char *buf;
        while (cap < o->len + (size_t)n + 1) {
            cap *= 2;
        }
        buf = rfs_realloc(o->buf, cap);
        if (buf == NULL) {
            /* A test harness has nowhere to report this but stderr. */
            fprintf(stderr, "raftfs-interact: out of memory\n");
            exit(2);
        }
        o->buf = buf;
        o->cap = cap;
    }
    vsnprintf(o->buf + o->len, (size_t)n + 1, fmt, ap);
    o->len += (size_t)n;
}

void interact_outf(struct interact_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    interact_voutf(o, fmt, ap);
    va_end(ap);
}
