/* See bootstrap_check.h. */
#include "bootstrap_check.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "../kv/client.h"

#define PROBE_TIMEOUT_MS 500
#define PROBE_ATTEMPT_MS 50

/* Whether st's configuration is the one cfg would bootstrap. */
static bool same_conf(const struct rfs_server_config *cfg, const struct kv_server_status *st)
{
    unsigned voters = 0;
    for (unsigned i = 0; i < st->n_members; i++) {
        const struct kv_member *m = &st->members[i];
        if (m->learner || m->id == 0 || m->id > cfg->n_peers ||
            strcmp(cfg->peers[m->id - 1], "-") == 0) {
            return false;
        }
        voters++;
    }
    for (unsigned i = 0; i < cfg->n_peers; i++) {
        voters -= strcmp(cfg->peers[i], "-") != 0 ? 1 : 0;
    }
    return voters == 0;
}

int server_bootstrap_check(const struct rfs_server_config *cfg, char *errmsg)
{
    struct kv_client_options o;
    struct kv_client *c = NULL;
    char why[RFS_ERRMSG_SIZE];
    int rv = 0;

    memset(&o, 0, sizeof o);
    for (unsigned i = 0; i < cfg->n_peers && i < KV_CLIENT_MAX_SERVERS; i++) {
        o.servers[o.n_servers++] = cfg->peers[i];
    }
    o.group_id = cfg->group_id;
    o.timeout_ms = PROBE_TIMEOUT_MS;
    o.attempt_ms = PROBE_ATTEMPT_MS;
    if (kv_client_new(&c, &o, why) != 0) {
        rfs_warnf("cannot ask the other servers before bootstrapping: %s", why);
        return 0; /* nothing to ask with: as before this check */
    }
    for (unsigned i = 0; i < o.n_servers && rv == 0; i++) {
        struct kv_server_status st;
        if (i + 1 == cfg->id || strcmp(cfg->peers[i], "-") == 0 ||
            kv_client_status(c, i, &st) != 0 || !st.reachable || st.group_id != cfg->group_id ||
            st.n_members == 0 || same_conf(cfg, &st)) {
            continue;
        }
        rfs_errmsg_printf(errmsg,
                          "server %llu (%s) of group %llu runs a configuration of %u members "
                          "that --peers does not describe: the group is running, and this "
                          "empty data directory would invent a conflicting one. To add this "
                          "server to it, start it with --join and add it with raftfs group "
                          "... add-learner (docs/deploy.md)",
                          (unsigned long long)(i + 1), cfg->peers[i],
                          (unsigned long long)cfg->group_id, st.n_members);
        rv = RFS_EINVAL;
    }
    kv_client_free(c);
    return rv;
}
