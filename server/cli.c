/* The shared main of the Raft server binaries; see cli.h. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../rpc/rpc.h"
#include "http.h"
#include "metrics.h"
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
            "  --id I              this server's 0-based position in --peers (its Raft id\n"
            "                      is I+1)\n"
            "  --peers LIST        comma-separated host:port of every server of the group;\n"
            "                      '-' for a position with no server (a removed one).\n"
            "                      Addresses learned from membership changes are kept in\n"
            "                      DIR/peers and override these\n"
            "  --join              a new server for a running group: with an empty --data,\n"
            "                      wait to be added by the leader (raftfs group ...\n"
            "                      add-learner I+1 ADDR) instead of starting a group of\n"
            "                      --peers; no effect once DIR holds a log\n"
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
            "  --snapshot-mb N     also a snapshot once N MiB of entries (and twice the last\n"
            "                      snapshot) were logged since the last (default 64; 0: off)\n"
            "                      (default 1000)\n"
            "  --min-free-mb N     refuse writes of data (ENOSPC) while the data directory's\n"
            "                      file system has less than N MiB free; small metadata\n"
            "                      changes such as deletes go on (default 64, 0: never)\n"
            "  --log-level L       error|warn|info|debug|trace (default info)\n"
            "  --metrics HOST:PORT serve Prometheus metrics over HTTP at\n"
            "                      http://HOST:PORT/metrics (port 0: any free port, logged);\n"
            "                      off by default (docs/observability.md)\n"
            "  --config FILE       read settings from FILE: lines 'key = value', key a flag\n"
            "                      name without '--'; flags given here override it\n"
            "                      (docs/config.md)\n"
            "  --help              this text\n"
            "\n"
            "Example (three terminals):\n"
            "  %s --id 0 --peers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 "
            "--data /tmp/%c0\n",
            cli->default_buckets, cli->buckets_doc, cli->prog, cli->role[0]);
}

/* Messages name `where`: the program, and the config file line an argument came from. */
static int parse_uint(const char *where, const char *flag, const char *s, unsigned long long max,
                      unsigned long long *out)
{
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || *out > max) {
        fprintf(stderr, "%s: %s needs a whole number up to %llu, got '%s'\n", where, flag, max, s);
        return -1;
    }
    return 0;
}

/* parse_uint with a lower bound too (the message gives the range). */
static int parse_range(const char *where, const char *flag, const char *s, unsigned long long min,
                       unsigned long long max, unsigned long long *out)
{
    if (parse_uint(where, flag, s, max, out) != 0) {
        return -1;
    }
    if (*out < min) {
        fprintf(stderr, "%s: %s needs a whole number from %llu to %llu, got '%s'\n", where, flag,
                min, max, s);
        return -1;
    }
    return 0;
}

/* Split a comma-separated list in place. */
static int split_peers(const char *where, char *list, struct rfs_server_config *cfg)
{
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (cfg->n_peers == SERVER_MAX_PEERS) {
            fprintf(stderr, "%s: at most %d peers\n", where, SERVER_MAX_PEERS);
            return -1;
        }
        cfg->peers[cfg->n_peers++] = tok;
    }
    if (cfg->n_peers == 0) {
        fprintf(stderr, "%s: --peers needs at least one host:port\n", where);
        return -1;
    }
    return 0;
}

/* What the command line sets besides cfg. */
struct cli_args {
    unsigned long long id; /* 0-based */
    unsigned long long buckets;
    char *meta;
    unsigned chunk;
    const char *metrics; /* NULL: no metrics listener */
};

/* Parse the command line (with the config file's settings in front, args->argv) into cfg
 * and *out. Returns 0, 1 for --help (already printed), or 2 for bad usage (already
 * reported, naming the config file line an argument came from). */
static int parse_args(const struct rfs_server_cli *cli, const struct rfs_config_args *args,
                      struct rfs_server_config *cfg, struct cli_args *out)
{
    int argc = args->argc;
    char **argv = args->argv;
    unsigned long long *id = &out->id;
    unsigned long long *buckets = &out->buckets;
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
        {"snapshot-mb", required_argument, NULL, 'B'},
        {"min-free-mb", required_argument, NULL, 'F'},
        {"log-level", required_argument, NULL, 'l'},
        {"metrics", required_argument, NULL, 'M'},
        {"join", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *peers = NULL;
    char peers_where[RFS_ERRMSG_SIZE];
    char where[RFS_ERRMSG_SIZE];
    unsigned long long v;
    int c;

    *id = ~0ull;
    *buckets = cli->default_buckets;
    for (;;) {
        int at = optind;
        const char *origin;
        c = getopt_long(argc, argv, "h", longopts, NULL);
        if (c == -1) {
            break;
        }
        origin = rfs_config_args_origin(args, at);
        if (origin != NULL) {
            snprintf(where, sizeof where, "%s: %s", cli->prog, origin);
        } else {
            snprintf(where, sizeof where, "%s", cli->prog);
        }
        switch (c) {
            case 'i':
                if (parse_uint(where, "--id", optarg, SERVER_MAX_PEERS - 1, id) != 0) {
                    return 2;
                }
                break;
            case 'p':
                peers = optarg;
                snprintf(peers_where, sizeof peers_where, "%s", where);
                break;
            case 'd':
                cfg->data_dir = optarg;
                break;
            case 'g':
                if (!cli->has_gid) {
                    fprintf(stderr, "%s: see --help\n", where);
                    return 2;
                }
                if (parse_uint(where, "--gid", optarg, ~0ull, &v) != 0 || v == 0) {
                    fprintf(stderr, "%s: --gid must be a positive number\n", where);
                    return 2;
                }
                cfg->group_id = v;
                break;
            case 'm':
                if (!cli->has_meta) {
                    fprintf(stderr, "%s: see --help\n", where);
                    return 2;
                }
                out->meta = optarg;
                break;
            case 'c':
                if (!cli->has_meta ||
                    parse_uint(where, "--move-chunk", optarg, 16u << 20, &v) != 0 || v == 0) {
                    fprintf(stderr, "%s: --move-chunk needs 1 to %u bytes\n", where, 16u << 20);
                    return 2;
                }
                out->chunk = (unsigned)v;
                break;
            case 'b':
                if (parse_range(where, "--buckets", optarg, 1, cli->max_buckets, buckets) != 0) {
                    return 2;
                }
                break;
            case 'F':
                if (parse_uint(where, "--min-free-mb", optarg, 1ull << 40, &v) != 0) {
                    return 2;
                }
                cfg->min_free_mb = v;
                break;
            case 't':
                if (parse_range(where, "--tick-ms", optarg, 1, 10000, &v) != 0) {
                    return 2;
                }
                cfg->tick_ms = (unsigned)v;
                break;
            case 'e':
                if (parse_range(where, "--election-ticks", optarg, 2, 1000, &v) != 0) {
                    return 2;
                }
                cfg->election_ticks = (unsigned)v;
                break;
            case 'H':
                if (parse_range(where, "--heartbeat-ticks", optarg, 1, 1000, &v) != 0) {
                    return 2;
                }
                cfg->heartbeat_ticks = (unsigned)v;
                break;
            case 's':
                if (parse_range(where, "--snapshot-every", optarg, 1, ~0ull, &v) != 0) {
                    return 2;
                }
                cfg->snapshot_every = v;
                break;
            case 'k':
                if (parse_uint(where, "--snapshot-keep", optarg, ~0ull, &v) != 0) {
                    return 2;
                }
                cfg->keep_entries = v;
                break;
            case 'B':
                if (parse_uint(where, "--snapshot-mb", optarg, 1u << 20, &v) != 0) {
                    return 2;
                }
                cfg->snapshot_bytes = v << 20;
                break;
            case 'M': {
                struct sockaddr_in sa;
                char errmsg[RFS_ERRMSG_SIZE] = "";
                if (rpc_addr_parse(optarg, &sa, errmsg) != 0) {
                    fprintf(stderr, "%s: --metrics needs HOST:PORT: %s\n", where, errmsg);
                    return 2;
                }
                out->metrics = optarg;
                break;
            }
            case 'l': {
                enum rfs_log_level level;
                if (rfs_log_level_parse(optarg, &level) != 0) {
                    fprintf(stderr, "%s: --log-level must be error, warn, info, debug or trace\n",
                            where);
                    return 2;
                }
                rfs_log_set_level(level);
                break;
            }
            case 'J':
                cfg->join = true;
                break;
            case 'h':
                usage(cli, stdout);
                return 1;
            default:
                fprintf(stderr, "%s: see --help\n", where);
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
    if (split_peers(peers_where, peers, cfg) != 0) {
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

/* The keys a config file may set: the long flags of this binary (docs/config.md). */
static unsigned config_keys(const struct rfs_server_cli *cli, struct rfs_config_key *keys)
{
    static const struct rfs_config_key all[] = {
        {"id", RFS_CONFIG_UINT, NULL},
        {"peers", RFS_CONFIG_STRING, NULL},
        {"data", RFS_CONFIG_STRING, NULL},
        {"gid", RFS_CONFIG_UINT, NULL},
        {"meta", RFS_CONFIG_STRING, NULL},
        {"move-chunk", RFS_CONFIG_UINT, NULL},
        {"buckets", RFS_CONFIG_UINT, NULL},
        {"tick-ms", RFS_CONFIG_UINT, NULL},
        {"election-ticks", RFS_CONFIG_UINT, NULL},
        {"heartbeat-ticks", RFS_CONFIG_UINT, NULL},
        {"snapshot-every", RFS_CONFIG_UINT, NULL},
        {"snapshot-keep", RFS_CONFIG_UINT, NULL},
        {"snapshot-mb", RFS_CONFIG_UINT, NULL},
        {"min-free-mb", RFS_CONFIG_UINT, NULL},
        {"log-level", RFS_CONFIG_STRING, NULL},
        {"metrics", RFS_CONFIG_STRING, NULL},
        {"join", RFS_CONFIG_BOOL, NULL},
    };
    unsigned n = 0;
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++) {
        if ((strcmp(all[i].name, "gid") == 0 && !cli->has_gid) ||
            ((strcmp(all[i].name, "meta") == 0 || strcmp(all[i].name, "move-chunk") == 0) &&
             !cli->has_meta)) {
            continue;
        }
        keys[n++] = all[i];
    }
    return n;
}

/* What GET /metrics reads; lives in rfs_server_cli_main's frame. */
struct cli_metrics {
    const struct rfs_server_cli *cli;
    struct rfs_server *server;
    struct rfs_mover *mover;
    void *sm;
    unsigned long long node; /* 0-based --id */
    uint64_t start_ms;       /* rpc_now_ms() at start */
    double start_wall;       /* seconds since the epoch at start */
};

static int serve_metrics(void *data, const char *path, struct rfs_http_body *b,
                         const char **content_type)
{
    struct cli_metrics *m = data;
    struct rfs_server_stats st;
    if (strcmp(path, "/metrics") != 0) {
        rfs_http_body_printf(b, "not found: metrics are at /metrics\n");
        return 404;
    }
    *content_type = RFS_METRICS_CONTENT_TYPE;
    rfs_server_stats(m->server, &st);
    rfs_metrics_family(b, "raftfs_server_info", "gauge",
                       "Always 1: which server this is (role, group id, 0-based node id).");
    rfs_http_body_printf(b, "raftfs_server_info{role=\"%s\",group=\"%llu\",node=\"%llu\"} 1\n",
                         m->cli->role, (unsigned long long)st.group_id, m->node);
    rfs_metrics_family(b, "raftfs_process_start_time_seconds", "gauge",
                       "When this process started, in seconds since the Unix epoch.");
    rfs_http_body_printf(b, "raftfs_process_start_time_seconds %.3f\n", m->start_wall);
    rfs_metrics_family(b, "raftfs_process_uptime_seconds", "gauge",
                       "Seconds since this process started.");
    rfs_http_body_printf(b, "raftfs_process_uptime_seconds %.3f\n",
                         (double)(rpc_now_ms() - m->start_ms) / 1000.0);
    rfs_metrics_render_server(b, &st);
    if (m->cli->bucket_counts != NULL) {
        uint64_t counts[5];
        if (m->cli->bucket_counts(m->sm, counts) == 0) {
            rfs_metrics_render_buckets(b, counts);
        }
    }
    if (m->cli->has_meta) {
        struct rfs_mover_stats ms;
        rfs_mover_stats_get(m->mover, &ms); /* zeros for an unsharded group */
        rfs_metrics_render_mover(b, &ms);
    }
    return 200;
}

int rfs_server_cli_main(const struct rfs_server_cli *cli, int argc, char **argv)
{
    struct rfs_server_config cfg;
    struct rfs_config_args args;
    struct rfs_config_key keys[24];
    struct cli_args ca;
    struct cli_metrics cm;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    char tag[64];
    struct rpc_loop *loop = NULL;
    void *sm = NULL;
    struct rfs_server *server = NULL;
    struct rfs_mover *mover = NULL;
    struct rfs_http *http = NULL;
    struct sigaction sa;
    struct timespec now;
    int rc;

    /* Log entries and replies of a MiB come and go all the time: served from the heap they
     * reuse warm pages, where glibc's default (mmap above 128 KiB, growing only as large
     * blocks are freed) faults in and zeroes fresh ones for each. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    memset(&cm, 0, sizeof cm);
    cm.start_ms = rpc_now_ms();
    clock_gettime(CLOCK_REALTIME, &now);
    cm.start_wall = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    rfs_server_config_default(&cfg);
    cfg.group_id = cli->group_id;
    cfg.role_name = cli->role;
    memset(&ca, 0, sizeof ca);
    if (rfs_config_args_init(&args, argc, argv, keys, config_keys(cli, keys), errmsg) != 0) {
        fprintf(stderr, "%s: %s\n", cli->prog, errmsg);
        return 2;
    }
    rc = parse_args(cli, &args, &cfg, &ca);
    if (rc != 0) {
        rfs_config_args_close(&args);
        return rc == 1 ? 0 : rc;
    }
    cfg.id = ca.id + 1;
    /* Every line names the role, the group and the node (docs/observability.md). */
    snprintf(tag, sizeof tag, "%s g%llu/n%llu", cli->role, (unsigned long long)cfg.group_id, ca.id);
    rfs_log_set_tag(tag);

    rc = 1;
    if (rpc_loop_new(&loop, errmsg) != 0) {
        fprintf(stderr, "%s: %s\n", cli->prog, errmsg);
        rfs_config_args_close(&args);
        return 1;
    }
    /* The state machine's database lives inside the data directory. */
    if (mkdir(cfg.data_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: cannot create %s: %s\n", cli->prog, cfg.data_dir, strerror(errno));
        goto out;
    }
    if (cli->open_sm(&sm, cfg.data_dir, (uint32_t)ca.buckets, errmsg) != 0) {
        fprintf(stderr, "%s: opening the database: %s\n", cli->prog, errmsg);
        goto out;
    }
    if (cli->set_sharding != NULL &&
        cli->set_sharding(sm, ca.meta != NULL ? cfg.group_id : 0, errmsg) != 0) {
        fprintf(stderr, "%s: %s\n", cli->prog, errmsg);
        goto out;
    }
    cfg.sm_ops = cli->ops;
    cfg.sm = sm;
    if (rfs_server_new(&server, loop, &cfg, errmsg) != 0) {
        fprintf(stderr, "%s: %s\n", cli->prog, errmsg);
        goto out;
    }
    if (ca.meta != NULL &&
        start_mover(cli, &cfg, (unsigned)ca.id, ca.meta, ca.chunk, &mover) != 0) {
        goto out;
    }
    if (ca.metrics != NULL) {
        cm.cli = cli;
        cm.server = server;
        cm.mover = mover;
        cm.sm = sm;
        cm.node = ca.id;
        if (rfs_http_new(&http, loop, ca.metrics, serve_metrics, &cm, errmsg) != 0) {
            fprintf(stderr, "%s: --metrics: %s\n", cli->prog, errmsg);
            goto out;
        }
        rfs_infof("metrics at http://%.*s:%u/metrics", (int)strcspn(ca.metrics, ":"), ca.metrics,
                  (unsigned)rfs_http_port(http));
    }
    stop_loop = loop;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rfs_infof("serving %s group %llu as server %llu of %u on %s, data in %s", cli->role,
              (unsigned long long)cfg.group_id, ca.id, cfg.n_peers, cfg.peers[ca.id], cfg.data_dir);
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
    rfs_http_free(http);
    rfs_mover_stop(mover);
    rfs_server_free(server);
    if (sm != NULL) {
        cli->close_sm(sm);
    }
    rpc_loop_free(loop);
    rfs_config_args_close(&args);
    return rc;
}
