/* server/bootstrap_check.h: before a server with an empty data directory (and no --join)
 * writes a group's first configuration from --peers, it asks the other servers of --peers
 * what configuration they run (server/bootstrap_check.c). */
#ifndef SERVER_BOOTSTRAP_CHECK_H
#define SERVER_BOOTSTRAP_CHECK_H

#include "server.h"

/* 0 when every server of cfg->peers that answers (within half a second) runs the
 * configuration this one would create: voters 1..n for the non-"-" positions, no learners
 * (or none answers: a new group starts its servers in any order). RFS_EINVAL with errmsg
 * otherwise: the group already runs with other members, and bootstrapping would write
 * entries that conflict with ones it has committed (a replacement server starts with
 * --join; a server whose disk was lost is replaced, not restarted empty). */
int server_bootstrap_check(const struct rfs_server_config *cfg, char *errmsg);

#endif
