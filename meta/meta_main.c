/* raftfs-meta: one server of the meta group (a Raft group replicating the bucket
 * configurations and the id allocator, meta/meta.h). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "meta/meta.h"
#include "rpc/rpc.h"
#include "server/server.h"

/* Set once in main, read by the signal handler. */
static struct rpc_loop *stop_loop;

static void on_signal(int sig)
{
    (void)sig;
    if (stop_loop != NULL) {
        rpc_loop_stop(stop_loop);
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: raftfs-meta --id I --peers A0,A1,A2 --data DIR [options]\n"
            "\n"
            "Runs one server of the meta group: a Raft group that keeps the list of bucket\n"
            "configurations (bucket -> shard group, group -> addresses) and allocates ids.\n"
            "Start one process per address in --peers, each with its own --id. Manage it\n"
            "with `raftfs meta`.\n"
            "\n"
            "  --id I              this server's 0-based position in --peers\n"
            "  --peers LIST        comma-separated host:port of every server of the group\n"
            "  --data DIR          data directory (created if missing; Raft log in DIR/raft,\n"
            "                      LevelDB in DIR/meta)\n"
            "  --buckets N         number of buckets (default %d), fixed when the group is\n"
            "                      first created: a later start with another N is refused\n"
            "  --tick-ms MS        Raft tick (default 50)\n"
            "  --election-ticks N  election timeout in ticks, randomized up to 2N (default 10)\n"
            "  --heartbeat-ticks N heartbeat interval in ticks (default 2)\n"
            "  --snapshot-every N  take a snapshot every N applied entries (default 100000)\n"
            "  --snapshot-keep N   log entries kept behind a snapshot for slow followers\n"
            "                      (default 1000)\n"
            "  --log-level L       error|warn|info|debug|trace (default info)\n"
            "  --help              this text\n"
            "\n"
            "Example (three terminals):\n"
            "  raftfs-meta --id 0 --peers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 "
            "--data /tmp/m0\n",
            META_DEFAULT_BUCKETS);
}

static int parse_uint(const char *flag, const char *s, unsigned long long max,
                      unsigned long long *out)
{
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || *out > max) {
        fprintf(stderr, "raftfs-meta: %s needs a whole number up to %llu, got '%s'\n", flag, max,
                s);
        return -1;
    }
    return 0;
}

/* Split a comma-separated list in place. */
static int split_peers(char *list, struct rfs_server_config *cfg)
{
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (cfg->n_peers == SERVER_MAX_PEERS) {
            fprintf(stderr, "raftfs-meta: at most %d peers\n", SERVER_MAX_PEERS);
            return -1;
        }
        cfg->peers[cfg->n_peers++] = tok;
    }
    if (cfg->n_peers == 0) {
        fprintf(stderr, "raftfs-meta: --peers needs at least one host:port\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"id", required_argument, NULL, 'i'},
        {"peers", required_argument, NULL, 'p'},
        {"data", required_argument, NULL, 'd'},
        {"buckets", required_argument, NULL, 'b'},
        {"tick-ms", required_argument, NULL, 't'},
        {"election-ticks", required_argument, NULL, 'e'},
        {"heartbeat-ticks", required_argument, NULL, 'H'},
        {"snapshot-every", required_argument, NULL, 's'},
        {"snapshot-keep", required_argument, NULL, 'k'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct rfs_server_config cfg;
    unsigned long long id = ~0ull, v;
    unsigned long long buckets = META_DEFAULT_BUCKETS;
    char *peers = NULL;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char tag[64];
    struct rpc_loop *loop = NULL;
    struct meta_sm *sm = NULL;
    struct rfs_server *server = NULL;
    struct sigaction sa;
    int c;
    int rc = 1;

    rfs_server_config_default(&cfg);
    cfg.group_id = META_GROUP_ID;
    cfg.role_name = "meta";
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
            case 'i':
                if (parse_uint("--id", optarg, SERVER_MAX_PEERS - 1, &id) != 0) {
                    return 2;
                }
                break;
            case 'p':
                peers = optarg;
                break;
            case 'd':
                cfg.data_dir = optarg;
                break;
            case 'b':
                if (parse_uint("--buckets", optarg, META_MAX_BUCKETS, &buckets) != 0 ||
                    buckets == 0) {
                    return 2;
                }
                break;
            case 't':
                if (parse_uint("--tick-ms", optarg, 10000, &v) != 0 || v == 0) {
                    return 2;
                }
                cfg.tick_ms = (unsigned)v;
                break;
            case 'e':
                if (parse_uint("--election-ticks", optarg, 1000, &v) != 0 || v < 2) {
                    return 2;
                }
                cfg.election_ticks = (unsigned)v;
                break;
            case 'H':
                if (parse_uint("--heartbeat-ticks", optarg, 1000, &v) != 0 || v == 0) {
                    return 2;
                }
                cfg.heartbeat_ticks = (unsigned)v;
                break;
            case 's':
                if (parse_uint("--snapshot-every", optarg, ~0ull, &v) != 0 || v == 0) {
                    return 2;
                }
                cfg.snapshot_every = v;
                break;
            case 'k':
                if (parse_uint("--snapshot-keep", optarg, ~0ull, &v) != 0) {
                    return 2;
                }
                cfg.keep_entries = v;
                break;
            case 'l': {
                enum rfs_log_level level;
                if (rfs_log_level_parse(optarg, &level) != 0) {
                    fprintf(stderr, "raftfs-meta: --log-level must be error, warn, info, debug "
                                    "or trace\n");
                    return 2;
                }
                rfs_log_set_level(level);
                break;
            }
            case 'h':
                usage(stdout);
                return 0;
            default:
                fprintf(stderr, "raftfs-meta: see --help\n");
                return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "raftfs-meta: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (peers == NULL || cfg.data_dir == NULL || id == ~0ull) {
        fprintf(stderr, "raftfs-meta: --id, --peers and --data are required (see --help)\n");
        return 2;
    }
    if (split_peers(peers, &cfg) != 0) {
        return 2;
    }
    if (id >= cfg.n_peers) {
        fprintf(stderr, "raftfs-meta: --id %llu is not a position in --peers (0..%u)\n", id,
                cfg.n_peers - 1);
        return 2;
    }
    if (cfg.heartbeat_ticks >= cfg.election_ticks) {
        fprintf(stderr, "raftfs-meta: --heartbeat-ticks must be below --election-ticks\n");
        return 2;
    }
    cfg.id = id + 1;
    snprintf(tag, sizeof tag, "meta n%llu", id);
    rfs_log_set_tag(tag);

    if (rpc_loop_new(&loop, errmsg) != 0) {
        fprintf(stderr, "raftfs-meta: %s\n", errmsg);
        return 1;
    }
    {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", cfg.data_dir);
        /* The server creates the data directory; the database lives inside it. */
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "raftfs-meta: cannot create %s: %s\n", dir, strerror(errno));
            goto out;
        }
    }
    if (meta_sm_open(&sm, cfg.data_dir, (uint32_t)buckets, errmsg) != 0) {
        fprintf(stderr, "raftfs-meta: opening the database: %s\n", errmsg);
        goto out;
    }
    cfg.sm_ops = &meta_sm_ops;
    cfg.sm = sm;
    if (rfs_server_new(&server, loop, &cfg, errmsg) != 0) {
        fprintf(stderr, "raftfs-meta: %s\n", errmsg);
        goto out;
    }
    stop_loop = loop;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rfs_infof("serving the meta group as server %llu of %u on %s, data in %s", id, cfg.n_peers,
              cfg.peers[id], cfg.data_dir);
    if (rpc_loop_run(loop) != 0) {
        rfs_errorf("event loop failed");
        goto out;
    }
    if (rfs_server_failed(server, errmsg)) {
        fprintf(stderr, "raftfs-meta: stopped: %s\n", errmsg);
        goto out;
    }
    rfs_infof("stopped cleanly");
    rc = 0;
out:
    stop_loop = NULL;
    rfs_server_free(server);
    meta_sm_close(sm);
    rpc_loop_free(loop);
    return rc;
}
