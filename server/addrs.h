/* server addresses: the book of server id -> "host:port" a server sends Raft messages by.
 * It starts from --peers (server i+1 = peers[i]) and is extended by the addresses that
 * membership changes carry; DIR/peers keeps it across restarts, so a server started with
 * its original --peers still reaches members added later (docs/architecture.md). */
#ifndef SERVER_ADDRS_H
#define SERVER_ADDRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

#define SERVER_ADDR_MAX 256 /* bytes of an address, NUL included (RAFT_CONF_CONTEXT_MAX) */

/* addr[id] for ids 1..SERVER_MAX_PEERS; "" means unknown. */
struct server_addrs {
    char addr[SERVER_MAX_PEERS + 1][SERVER_ADDR_MAX];
};

/* Whether `addr` is a usable entry of an address list: non-empty, not "-" (a hole that
 * keeps later servers at their positions), fits SERVER_ADDR_MAX, no spaces. */
bool server_addr_valid(const char *addr, size_t len);

/* Read the book file `path` ("ID ADDR" per line; '#' comments) over b. A missing file is
 * not an error. Returns 0, RFS_EIO or RFS_ECORRUPT (a malformed line), with errmsg. */
int server_addrs_load(struct server_addrs *b, const char *path, char *errmsg);

/* Write b to `path` atomically: a temporary file, fsync, rename, fsync of the directory.
 * Returns 0 or RFS_EIO with errmsg. */
int server_addrs_save(const struct server_addrs *b, const char *path, char *errmsg);

#endif
