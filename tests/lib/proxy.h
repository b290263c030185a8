/* A fault-injecting TCP proxy engine: the userspace "netem" behind bin/raftfs-proxy.
 *
 * A proxy holds named routes. Each route listens on an address and forwards every accepted
 * connection to a target, byte for byte, in both directions ("up" is client -> target,
 * "down" is target -> client). Faults are set per route: connection drops, delays, cuts
 * (blackholes), holds, resets. The exact semantics are in docs/testing-tools.md and in the
 * control-protocol description of proxy_command() below.
 *
 * The engine is single-threaded: one epoll loop (proxy_run) owns every socket. It is
 * normally run by tests/proxy/proxy_main.c as a separate process and driven over its
 * control socket (see tests/lib/proxy_ctl.h); a test may also run it in a thread of its
 * own and stop it through stop_fd, but must then talk to it only over the control socket.
 *
 * Errors: 0 or a positive RFS_E* code; errmsg (RFS_ERRMSG_SIZE bytes, may be NULL) gets
 * one line on failure. */
#ifndef RFS_TESTS_PROXY_H
#define RFS_TESTS_PROXY_H

#include <stddef.h>
#include <stdint.h>

struct proxy;

/* Longest route name, including the terminating NUL. Names use [A-Za-z0-9_.-]. */
#define PROXY_NAME_MAX 32

/* Create a proxy. control is "HOST:PORT" for the control listener (port 0 picks one), or
 * NULL for none. seed drives the random choices (drop, delay jitter). The caller frees *out
 * with proxy_free. Returns 0, RFS_ENOMEM, RFS_EINVAL (bad address) or RFS_EIO. */
int proxy_new(const char *control, uint64_t seed, struct proxy **out, char *errmsg);

/* Close every socket and free the proxy. Safe on NULL. */
void proxy_free(struct proxy *p);

/* Port of the control listener, or 0 if there is none. */
int proxy_control_port(const struct proxy *p);

/* Add a route named name (copied) that listens on listen ("HOST:PORT", port 0 picks one)
 * and forwards to target ("HOST:PORT", resolved once, now). *port gets the real listen port.
 * Returns 0, RFS_EINVAL (bad name, duplicate name, bad address), RFS_ENOMEM or RFS_EIO
 * (bind or listen failed). */
int proxy_route_add(struct proxy *p, const char *name, const char *listen, const char *target,
                    int *port, char *errmsg);

/* Execute one control line (no trailing newline needed) and write the one-line reply,
 * "ok ..." or "err <reason>", into reply (cap bytes). Commands:
 *   add NAME LISTEN TARGET          ok <listen port>
 *   drop NAME PERMILLE              each chunk read on a connection closes the connection
 *                                   (both sides, abortively) with probability PERMILLE/1000
 *   delay NAME MIN_MS MAX_MS [up|down|both]
 *                                   hold each chunk back MIN..MAX ms (uniform), order kept
 *   cut NAME up|down|both           blackhole: discard data in that direction from now on,
 *                                   including data still queued; connections stay open
 *   hold NAME up|down|both          stall: keep data queued, deliver it at heal
 *   heal NAME                       clear drop, delay, cut and hold; reset the connections
 *                                   that lost bytes to a cut (their streams have a hole)
 *   reset NAME                      abortively close every current connection of the route
 *   dup NAME PERMILLE               err (TCP cannot duplicate; see docs/testing-tools.md)
 *   stats NAME                      ok up=.. down=.. up_discarded=.. down_discarded=..
 *                                   conns=.. open=.. dropped=.. resets=.. connect_failed=..
 *   ping                            ok
 *   quit                            ok bye; proxy_run returns after the reply is sent
 * Returns 0 when the reply is "ok ...", otherwise RFS_EINVAL or RFS_ENOTFOUND. */
int proxy_command(struct proxy *p, const char *line, char *reply, size_t cap);

/* Run the loop until a "quit" command or until stop_fd (>= 0; e.g. a signalfd or eventfd)
 * becomes readable; stop_fd is not read or closed. Returns 0, or RFS_EIO if epoll fails. */
int proxy_run(struct proxy *p, int stop_fd);

#endif
