/* The shared main of the Raft server binaries; see cli.h. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "../rpc/rpc.h"
#include "mover.h"
#include "server.h"

/* Set once in main, read by the signal handler. */
static struct rpc_loop *stop_loop;

static void on_signal(int sig)
{
    (void)sig;
    if (stop_loop != NULL) {
        rpc_loop_stop(stop_loop);
    }
}

static void usage(const struct rfs_server_cli *cli, FILE *f)
{
    fprintf(f,
            "usage: %s --id I --peers A0,A1,A2 --data DIR [options]\n"
            "\n"
            "%s\n"
            "\n"
            "  --id I              this server's 0-based position in --peers\n"
            "  --peers LIST        comma-separated host:port of every server of the group\n"
            "  --data DIR          data directory (created if missing; Raft log in DIR/raft,\n"
            "                      LevelDB in DIR/%s)\n",
            cli->prog, cli->summary, cli->db_name);
    if (cli->has_gid) {
        fprintf(f,
                "  --gid G             group id (default %llu); a data directory serves one "
                "group\n",
                (unsigned long long)cli->group_id);
    }
    if (cli->has_meta) {
        fprintf(f, "  --meta LIST         the meta group's host:port list: serve the buckets its\n"
                   "                      configurations give group --gid, moving them between\n"
                   "                      groups as they change (without it: all buckets, one "
                   "group)\n"
                   "  --move-chunk BYTES  bytes of a bucket pulled per step when it moves here\n"
                   "                      (default 1 MiB)\n");
    }
    fprintf(f,
            "  --buckets N         number of buckets (default %lu)%s\n"
            "  --tick-ms MS        Raft tick (default 50)\n"
            "  --election-ticks N  election timeout in ticks, randomized up to 2N (default 10)\n"
            "  --heartbeat-ticks N heartbeat interval in ticks (default 2)\n"
            "  --snapshot-every N  take a snapshot every N applied entries (default 100000)\n"
            "  --snapshot-keep N   log entries kept behind a snapshot for slow followers\n"
            "                      (default 1000)\n"
            "  --min-free-mb N     refuse writes of data (ENOSPC) while the data directory's\n"
            "                      file system has less than N MiB free; small metadata\n"
            "                      changes such as deletes go on (default 64, 0: never)\n"
            "  --log-level L       error|warn|info|debug|trace (default info)\n"
            "  --help              this text\n"
            "\n"
            "Example (three terminals):\n"
            "  %s --id 0 --peers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 "
            "--data /tmp/%c0\n",
            cli->default_buckets, cli->buckets_doc, cli->prog, cli->role[0]);
}

static int parse_uint(const struct rfs_server_cli *cli, const char *flag, const char *s,
                      unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || *out > max) {
        fprintf(stderr, "%s: %s needs a whole number up to %llu, got '%s'\n", cli->prog, flag, max,
                s);
        return -1;
    }
    return 0;
}

/* Split a comma-separated list in place. */
static int split_peers(const struct rfs_server_cli *cli, char *list, struct rfs_server_config *cfg)
{
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (cfg->n_peers == SERVER_MAX_PEERS) {
            fprintf(stderr, "%s: at most %d peers\n", cli->prog, SERVER_MAX_PEERS);
            return -1;
        }
        cfg->peers[cfg->n_peers++] = tok;
    }
    if (cfg->n_peers == 0) {
        fprintf(stderr, "%s: --peers needs at least one host:port\n", cli->prog);
        return -1;
    }
    return 0;
}

/* Parse the command line into cfg, *id (0-based) and *buckets. Returns 0, 1 for --help
 * (already printed), or 2 for bad usage (already reported). */
static int parse_args(const struct rfs_server_cli *cli, int argc, char **argv,
                      struct rfs_server_config *cfg, unsigned long long *id,
                      unsigned long long *buckets, char **meta, unsigned *chunk)
{
    static const struct option longopts[] = {
        {"id", required_argument, NULL, 'i'},
        {"peers", required_argument, NULL, 'p'},
        {"data", required_argument, NULL, 'd'},
        {"gid", required_argument, NULL, 'g'},
        {"buckets", required_argument, NULL, 'b'},
        {"meta", required_argument, NULL, 'm'},
        {"move-chunk", required_argument, NULL, 'c'},
        {"tick-ms", required_argument, NULL, 't'},
        {"election-ticks", required_argument, NULL, 'e'},
        {"heartbeat-ticks", required_argument, NULL, 'H'},
        {"snapshot-every", required_argument, NULL, 's'},
        {"snapshot-keep", required_argument, NULL, 'k'},
        {"min-free-mb", required_argument, NULL, 'F'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *peers = NULL;
    unsigned long long v;
    int c;

    *id = ~0ull;
    *buckets = cli->default_buckets;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
            case 'i':
                if (parse_uint(cli, "--id", optarg, SERVER_MAX_PEERS - 1, id) != 0) {
                    return 2;
                }
                break;
            case 'p':
                peers = optarg;
                break;
            case 'd':
                cfg->data_dir = optarg;
                break;
            case 'g':
                if (!cli->has_gid) {
                    fprintf(stderr, "%s: see --help\n", cli->prog);
                    return 2;
                }
                if (parse_uint(cli, "--gid", optarg, ~0ull, &v) != 0 || v == 0) {
                    fprintf(stderr, "%s: --gid must be a positive number\n", cli->prog);
                    return 2;
                }
                cfg->group_id = v;
                break;
            case 'm':
                if (!cli->has_meta) {
                    fprintf(stderr, "%s: see --help\n", cli->prog);
                    return 2;
                }
                *meta = optarg;
                break;
            case 'c':
                if (!cli->has_meta || parse_uint(cli, "--move-chunk", optarg, 16u << 20, &v) != 0 ||
                    v == 0) {
                    fprintf(stderr, "%s: --move-chunk needs 1 to %u bytes\n", cli->prog, 16u << 20);
                    return 2;
                }
                *chunk = (unsigned)v;
                break;
            case 'b':
                if (parse_uint(cli, "--buckets", optarg, cli->max_buckets, buckets) != 0 ||
                    *buckets == 0) {
                    return 2;
                }
                break;
            case 'F':
                if (parse_uint(cli, "--min-free-mb", optarg, 1ull << 40, &v) != 0) {
                    return 2;
                }
                cfg->min_free_mb = v;
                break;
            case 't':
                if (parse_uint(cli, "--tick-ms", optarg, 10000, &v) != 0 || v == 0) {
                    return 2;
                }
                cfg->tick_ms = (unsigned)v;
                break;
            case 'e':
                if (parse_uint(cli, "--election-ticks", optarg, 1000, &v) != 0 || v < 2) {
                    return 2;
                }
                cfg->election_ticks = (unsigned)v;
                break;
            case 'H':
                if (parse_uint(cli, "--heartbeat-ticks", optarg, 1000, &v) != 0 || v == 0) {
                    return 2;
                }
                cfg->heartbeat_ticks = (unsigned)v;
                break;
            case 's':
                if (parse_uint(cli, "--snapshot-every", optarg, ~0ull, &v) != 0 || v == 0) {
                    return 2;
                }
                cfg->snapshot_every = v;
                break;
            case 'k':
                if (parse_uint(cli, "--snapshot-keep", optarg, ~0ull, &v) != 0) {
                    return 2;
                }
                cfg->keep_entries = v;
                break;
            case 'l': {
                enum rfs_log_level level;
                if (rfs_log_level_parse(optarg, &level) != 0) {
                    fprintf(stderr, "%s: --log-level must be error, warn, info, debug or trace\n",
                            cli->prog);
                    return 2;
                }
                rfs_log_set_level(level);
                break;
            }
            case 'h':
                usage(cli, stdout);
                return 1;
            default:
                fprintf(stderr, "%s: see --help\n", cli->prog);
                return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", cli->prog, argv[optind]);
        return 2;
    }
    if (peers == NULL || cfg->data_dir == NULL || *id == ~0ull) {
        fprintf(stderr, "%s: --id, --peers and --data are required (see --help)\n", cli->prog);
        return 2;
    }
    if (split_peers(cli, peers, cfg) != 0) {
        return 2;
    }
    if (*id >= cfg->n_peers) {
        fprintf(stderr, "%s: --id %llu is not a position in --peers (0..%u)\n", cli->prog, *id,
                cfg->n_peers - 1);
        return 2;
    }
    if (cfg->heartbeat_ticks >= cfg->election_ticks) {
        fprintf(stderr, "%s: --heartbeat-ticks must be below --election-ticks\n", cli->prog);
        return 2;
    }
    return 0;
}

static int start_mover(const struct rfs_server_cli *cli, const struct rfs_server_config *cfg,
                       unsigned self, char *meta, unsigned chunk, struct rfs_mover **out)
{
    struct rfs_mover_config mc;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char *save = NULL;
    memset(&mc, 0, sizeof mc);
    mc.gid = cfg->group_id;
    mc.self = self;
    mc.chunk_bytes = chunk;
    mc.n_peers = cfg->n_peers;
    for (unsigned i = 0; i < cfg->n_peers; i++) {
        mc.peers[i] = cfg->peers[i];
    }
    for (char *tok = strtok_r(meta, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (mc.n_meta == KV_CLIENT_MAX_SERVERS) {
            fprintf(stderr, "%s: --meta lists more than %d servers\n", cli->prog,
                    KV_CLIENT_MAX_SERVERS);
            return -1;
        }
        mc.meta[mc.n_meta++] = tok;
    }
    if (mc.n_meta == 0) {
        fprintf(stderr, "%s: --meta needs host:port,host:port,...\n", cli->prog);
        return -1;
    }
    if (rfs_mover_start(out, &mc, errmsg) != 0) {
        fprintf(stderr, "%s: %s\n", cli->prog, errmsg);
        return -1;
    }
    rfs_infof("sharded: group %llu follows the meta group at %s%s", (unsigned long long)mc.gid,
              mc.meta[0], mc.n_meta > 1 ? ",..." : "");
    return 0;
}

int rfs_server_cli_main(const struct rfs_server_cli *cli, int argc, char **argv)
{
    struct rfs_server_config cfg;
    unsigned long long id, buckets;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char tag[64];
    struct rpc_loop *loop = NULL;
    void *sm = NULL;
    struct rfs_server *server = NULL;
    struct rfs_mover *mover = NULL;
    char *meta = NULL;
    unsigned chunk = 0;
    struct sigaction sa;
    int rc;

    rfs_server_config_default(&cfg);
    cfg.group_id = cli->group_id;
    cfg.role_name = cli->role;
    rc = parse_args(cli, argc, argv, &cfg, &id, &buckets, &meta, &chunk);
    if (rc != 0) {
        return rc == 1 ? 0 : rc;
    }
    cfg.id = id + 1;
    if (cli->has_gid) {
        snprintf(tag, sizeof tag, "%s g%llu/n%llu", cli->role, (unsigned long long)cfg.group_id,
                 id);
    } else {
        snprintf(tag, sizeof tag, "%s n%llu", cli->role, id);
    }
    rfs_log_set_tag(tag);

    rc = 1;
    if (rpc_loop_new(&loop, errmsg) != 0) {
        fprintf(stderr, "%s: %s\n", cli->prog, errmsg);
        return 1;
    }
    /* The state machine's database lives inside the data directory. */
    if (mkdir(cfg.data_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: cannot create %s: %s\n", cli->prog, cfg.data_dir, strerror(errno));
        goto out;
    }
    if (cli->open_sm(&sm, cfg.data_dir, (uint32_t)buckets, errmsg) != 0) {
        fprintf(stderr, "%s: opening the database: %s\n", cli->prog, errmsg);
        goto out;
    }
    if (cli->set_sharding != NULL &&
        cli->set_sharding(sm, meta != NULL ? cfg.group_id : 0, errmsg) != 0) {
        fprintf(stderr, "%s: %s\n", cli->prog, errmsg);
        goto out;
    }
    cfg.sm_ops = cli->ops;
    cfg.sm = sm;
    if (rfs_server_new(&server, loop, &cfg, errmsg) != 0) {
        fprintf(stderr, "%s: %s\n", cli->prog, errmsg);
        goto out;
    }
    if (meta != NULL && start_mover(cli, &cfg, (unsigned)id, meta, chunk, &mover) != 0) {
        goto out;
    }
    stop_loop = loop;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rfs_infof("serving %s group %llu as server %llu of %u on %s, data in %s", cli->role,
              (unsigned long long)cfg.group_id, id, cfg.n_peers, cfg.peers[id], cfg.data_dir);
    if (rpc_loop_run(loop) != 0) {
        rfs_errorf("event loop failed");
        goto out;
    }
    if (rfs_server_failed(server, errmsg)) {
        fprintf(stderr, "%s: stopped: %s\n", cli->prog, errmsg);
        goto out;
    }
    rfs_infof("stopped cleanly");
    rc = 0;
out:
    stop_loop = NULL;
    rfs_mover_stop(mover);
    rfs_server_free(server);
    if (sm != NULL) {
        cli->close_sm(sm);
    }
    rpc_loop_free(loop);
    return rc;
}
