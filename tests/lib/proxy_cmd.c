/* The proxy's control commands: one text line in, one "ok ..." or "err <reason>" line out
 * (the command list is in proxy.h; the semantics in docs/testing-tools.md). */
#include "tests/lib/proxy_impl.h"

#include "common/err.h"
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD_MAX_ARGS 8

static int reply_ok(char *reply, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reply_err(char *reply, size_t cap, int rv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int reply_ok(char *reply, size_t cap, const char *fmt, ...)
{
    char text[PROXY_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    snprintf(reply, cap, "ok%s%s", text[0] != '\0' ? " " : "", text);
    return 0;
}

static int reply_err(char *reply, size_t cap, int rv, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(reply, cap, "err ");
    if (n >= 0 && (size_t)n < cap) {
        va_start(ap, fmt);
        vsnprintf(reply + n, cap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rv;
}

static bool parse_uint(const char *s, unsigned max, unsigned *out)
{
    char *end;
    unsigned long v;

    if (s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno = 0;
    v = strtoul(s, &end, 10);
    if (*end != '\0' || errno != 0 || v > max) {
        return false;
    }
    *out = (unsigned)v;
    return true;
}

/* "up", "down" or "both" as a two-bit mask of directions. */
static bool parse_dirs(const char *s, bool dirs[2])
{
    dirs[PROXY_UP] = strcmp(s, "up") == 0 || strcmp(s, "both") == 0;
    dirs[PROXY_DOWN] = strcmp(s, "down") == 0 || strcmp(s, "both") == 0;
    return dirs[PROXY_UP] || dirs[PROXY_DOWN];
}

static int cmd_add(struct proxy *p, char **argv, char *reply, size_t cap)
{
    char errmsg[RFS_ERRMSG_SIZE] = "";
    int port;
    int rv = proxy_route_add(p, argv[1], argv[2], argv[3], &port, errmsg);
    if (rv != 0) {
        return reply_err(reply, cap, RFS_EINVAL, "%s", errmsg);
    }
    return reply_ok(reply, cap, "%d", port);
}

static int cmd_drop(struct proxy_route *r, char **argv, char *reply, size_t cap)
{
    unsigned permille;
    if (!parse_uint(argv[2], 1000, &permille)) {
        return reply_err(reply, cap, RFS_EINVAL, "PERMILLE must be 0..1000");
    }
    r->drop_permille = permille;
    rfs_infof("route %s: drop %u permille", r->name, permille);
    return reply_ok(reply, cap, "%s", "");
}

static int cmd_delay(struct proxy_route *r, int argc, char **argv, char *reply, size_t cap)
{
    unsigned lo, hi;
    bool dirs[2] = {true, true};
    if (!parse_uint(argv[2], 600000, &lo) || !parse_uint(argv[3], 600000, &hi) || lo > hi) {
        return reply_err(reply, cap, RFS_EINVAL, "need MIN_MS <= MAX_MS <= 600000");
    }
    if (argc == 5 && !parse_dirs(argv[4], dirs)) {
        return reply_err(reply, cap, RFS_EINVAL, "direction must be up, down or both");
    }
    for (int d = 0; d < 2; d++) {
        if (dirs[d]) {
            r->delay_min_ms[d] = lo;
            r->delay_max_ms[d] = hi;
        }
    }
    rfs_infof("route %s: delay %u..%u ms %s", r->name, lo, hi, argc == 5 ? argv[4] : "both");
    return reply_ok(reply, cap, "%s", "");
}

static int cmd_cut_or_hold(struct proxy *p, struct proxy_route *r, bool cut, char **argv,
                           char *reply, size_t cap)
{
    bool dirs[2];
    if (!parse_dirs(argv[2], dirs)) {
        return reply_err(reply, cap, RFS_EINVAL, "direction must be up, down or both");
    }
    for (int d = 0; d < 2; d++) {
        if (!dirs[d]) {
            continue;
        }
        if (cut) {
            r->cut[d] = true;
            proxy_route_discard(p, r, d); /* what is still queued vanishes too */
        } else {
            r->hold[d] = true;
        }
    }
    rfs_infof("route %s: %s %s", r->name, cut ? "cut" : "hold", argv[2]);
    return reply_ok(reply, cap, "%s", "");
}

static int cmd_heal(struct proxy *p, struct proxy_route *r, char *reply, size_t cap)
{
    unsigned n;
    r->drop_permille = 0;
    for (int d = 0; d < 2; d++) {
        r->delay_min_ms[d] = r->delay_max_ms[d] = 0;
        r->cut[d] = false;
        r->hold[d] = false;
    }
    /* A stream that lost bytes cannot continue: its next frame would be misaligned. */
    n = proxy_route_reset(p, r, true);
    rfs_infof("route %s: heal (%u connections with a hole reset)", r->name, n);
    return reply_ok(reply, cap, "reset=%u", n);
}

static int cmd_stats(struct proxy_route *r, char *reply, size_t cap)
{
    const struct proxy_stats *s = &r->stats;
    return reply_ok(
        reply, cap,
        "up=%llu down=%llu up_discarded=%llu down_discarded=%llu conns=%llu "
        "open=%llu dropped=%llu resets=%llu connect_failed=%llu",
        (unsigned long long)s->bytes[PROXY_UP], (unsigned long long)s->bytes[PROXY_DOWN],
        (unsigned long long)s->discarded[PROXY_UP], (unsigned long long)s->discarded[PROXY_DOWN],
        (unsigned long long)s->conns, (unsigned long long)s->open, (unsigned long long)s->dropped,
        (unsigned long long)s->resets, (unsigned long long)s->connect_failed);
}

int proxy_command(struct proxy *p, const char *line, char *reply, size_t cap)
{
    char buf[PROXY_LINE_MAX];
    char *argv[CMD_MAX_ARGS + 1];
    char *save = NULL;
    int argc = 0;
    struct proxy_route *r = NULL;
    const char *cmd;

    snprintf(buf, sizeof buf, "%s", line);
    for (char *tok = strtok_r(buf, " \t", &save); tok != NULL; tok = strtok_r(NULL, " \t", &save)) {
        if (argc == CMD_MAX_ARGS) {
            return reply_err(reply, cap, RFS_EINVAL, "too many arguments");
        }
        argv[argc++] = tok;
    }
    if (argc == 0) {
        return reply_err(reply, cap, RFS_EINVAL, "empty command");
    }
    cmd = argv[0];
    if (strcmp(cmd, "ping") == 0 && argc == 1) {
        return reply_ok(reply, cap, "%s", "");
    }
    if (strcmp(cmd, "quit") == 0 && argc == 1) {
        p->quit = true;
        return reply_ok(reply, cap, "bye");
    }
    if (strcmp(cmd, "add") == 0) {
        if (argc != 4) {
            return reply_err(reply, cap, RFS_EINVAL, "usage: add NAME LISTEN TARGET");
        }
        return cmd_add(p, argv, reply, cap);
    }
    if (strcmp(cmd, "dup") == 0) {
        return reply_err(reply, cap, RFS_EINVAL,
                         "dup not supported: a TCP stream cannot duplicate a message; "
                         "duplicates come from client retries after drop/reset");
    }
    if (argc >= 2) {
        r = proxy_route_find(p, argv[1]);
    }
    if (strcmp(cmd, "drop") == 0 || strcmp(cmd, "delay") == 0 || strcmp(cmd, "cut") == 0 ||
        strcmp(cmd, "hold") == 0 || strcmp(cmd, "heal") == 0 || strcmp(cmd, "reset") == 0 ||
        strcmp(cmd, "stats") == 0) {
        if (argc < 2) {
            return reply_err(reply, cap, RFS_EINVAL, "usage: %s NAME ...", cmd);
        }
        if (r == NULL) {
            return reply_err(reply, cap, RFS_ENOTFOUND, "no route %s", argv[1]);
        }
    }
    if (strcmp(cmd, "drop") == 0 && argc == 3) {
        return cmd_drop(r, argv, reply, cap);
    }
    if (strcmp(cmd, "delay") == 0 && (argc == 4 || argc == 5)) {
        return cmd_delay(r, argc, argv, reply, cap);
    }
    if ((strcmp(cmd, "cut") == 0 || strcmp(cmd, "hold") == 0) && argc == 3) {
        return cmd_cut_or_hold(p, r, strcmp(cmd, "cut") == 0, argv, reply, cap);
    }
    if (strcmp(cmd, "heal") == 0 && argc == 2) {
        return cmd_heal(p, r, reply, cap);
    }
    if (strcmp(cmd, "reset") == 0 && argc == 2) {
        unsigned n = proxy_route_reset(p, r, false);
        rfs_infof("route %s: reset %u connections", r->name, n);
        return reply_ok(reply, cap, "reset=%u", n);
    }
    if (strcmp(cmd, "stats") == 0 && argc == 2) {
        return cmd_stats(r, reply, cap);
    }
    return reply_err(reply, cap, RFS_EINVAL, "bad command or arguments: %s", line);
}
