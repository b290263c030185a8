/* Rendering of the Prometheus text format and the request statistics; see metrics.h. */
#include "metrics.h"

#include <time.h>

#include "../common/err.h"
#include "../proto/proto.h"
#include "mover.h"
#include "server.h"

/* Upper bounds of the latency buckets in microseconds; the last is +Inf. */
static const uint64_t bucket_us[RFS_METRICS_N_BUCKETS - 1] = {
    500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000, 1000000, 2000000, 5000000,
};

uint64_t rfs_metrics_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void rfs_metrics_request_done(struct rfs_metrics_requests *m, unsigned op, int status,
                              uint64_t micros)
{
    unsigned r = status < 0 || status >= RFS_METRICS_MAX_RESULTS ? RFS_METRICS_MAX_RESULTS - 1
                                                                 : (unsigned)status;
    unsigned b = 0;
    if (op >= RFS_METRICS_MAX_OPS) {
        op = RFS_METRICS_MAX_OPS - 1;
    }
    while (b < RFS_METRICS_N_BUCKETS - 1 && micros > bucket_us[b]) {
        b++;
    }
    m->count[op][r]++;
    m->latency[op][b]++;
    m->latency_sum_us[op] += micros;
}

const char *rfs_metrics_result_name(int status)
{
    switch (status) {
        case 0:
            return "ok";
#define RESULT_CASE(name, value, text)                                                             \
    case name:                                                                                     \
        return #name + 4; /* "RFS_ENOTLEADER" -> "ENOTLEADER" */
            RFS_ERR_TABLE(RESULT_CASE)
#undef RESULT_CASE
    }
    return "EOTHER";
}

void rfs_metrics_family(struct rfs_http_body *b, const char *name, const char *type,
                        const char *help)
{
    rfs_http_body_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void rfs_metrics_single(struct rfs_http_body *b, const char *name, const char *type,
                        const char *help, uint64_t value)
{
    rfs_metrics_family(b, name, type, help);
    rfs_http_body_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

void rfs_metrics_render_requests(struct rfs_http_body *b, const struct rfs_metrics_requests *m,
                                 const char *(*op_name)(unsigned op))
{
    rfs_metrics_family(b, "raftfs_requests_total", "counter",
                       "Client requests answered, by op and result (ok or the error code).");
    for (unsigned op = 0; op < RFS_METRICS_MAX_OPS; op++) {
        for (unsigned r = 0; r < RFS_METRICS_MAX_RESULTS; r++) {
            if (m->count[op][r] != 0) {
                rfs_http_body_printf(b, "raftfs_requests_total{op=\"%s\",result=\"%s\"} %llu\n",
                                     op_name(op), rfs_metrics_result_name((int)r),
                                     (unsigned long long)m->count[op][r]);
            }
        }
    }
    rfs_metrics_family(b, "raftfs_request_duration_seconds", "histogram",
                       "Time from a request's arrival to its answer, by op.");
    for (unsigned op = 0; op < RFS_METRICS_MAX_OPS; op++) {
        uint64_t cum = 0;
        const char *name = op_name(op);
        for (unsigned k = 0; k < RFS_METRICS_N_BUCKETS; k++) {
            cum += m->latency[op][k];
        }
        if (cum == 0) {
            continue;
        }
        cum = 0;
        for (unsigned k = 0; k < RFS_METRICS_N_BUCKETS; k++) {
            cum += m->latency[op][k];
            if (k < RFS_METRICS_N_BUCKETS - 1) {
                rfs_http_body_printf(b,
                                     "raftfs_request_duration_seconds_bucket{op=\"%s\",le=\"%g\"} "
                                     "%llu\n",
                                     name, (double)bucket_us[k] / 1e6, (unsigned long long)cum);
            } else {
                rfs_http_body_printf(
                    b, "raftfs_request_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %llu\n", name,
                    (unsigned long long)cum);
            }
        }
        rfs_http_body_printf(b, "raftfs_request_duration_seconds_sum{op=\"%s\"} %.6f\n", name,
                             (double)m->latency_sum_us[op] / 1e6);
        rfs_http_body_printf(b, "raftfs_request_duration_seconds_count{op=\"%s\"} %llu\n", name,
                             (unsigned long long)cum);
    }
}

const char *rfs_metrics_op_name(unsigned op)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&raftfs__kv_op__descriptor, (int)op);
    return v != NULL ? v->name : "OTHER";
}

void rfs_metrics_render_server(struct rfs_http_body *b, const struct rfs_server_stats *st)
{
    static const enum raft_role roles[] = {RAFT_FOLLOWER, RAFT_PRE_CANDIDATE, RAFT_CANDIDATE,
                                           RAFT_LEADER};
    rfs_metrics_single(b, "raftfs_raft_term", "gauge", "Current Raft term.", st->term);
    rfs_metrics_family(b, "raftfs_raft_role", "gauge",
                       "1 for this server's current Raft role, 0 for the others.");
    for (unsigned i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        rfs_http_body_printf(b, "raftfs_raft_role{role=\"%s\"} %d\n", raft_role_name(roles[i]),
                             st->role == roles[i]);
    }
    rfs_metrics_single(b, "raftfs_raft_leader_id", "gauge",
                       "Server id (1-based) of the leader this server knows, 0 if none.",
                       st->leader);
    rfs_metrics_single(b, "raftfs_raft_commit_index", "gauge", "Highest log index known committed.",
                       st->commit);
    rfs_metrics_single(b, "raftfs_raft_applied_index", "gauge",
                       "Highest log index applied to the state machine.", st->applied);
    rfs_metrics_single(b, "raftfs_raft_last_log_index", "gauge", "Index of the last log entry.",
                       st->last_index);
    rfs_metrics_single(b, "raftfs_raft_first_log_index", "gauge",
                       "Index of the first log entry kept in memory (after compaction).",
                       st->first_index);
    rfs_metrics_single(
        b, "raftfs_raft_log_entries", "gauge", "Log entries kept (last index - first index + 1).",
        st->last_index >= st->first_index ? st->last_index - st->first_index + 1 : 0);
    rfs_metrics_single(b, "raftfs_raft_log_disk_bytes", "gauge",
                       "Bytes allocated on disk by the Raft directory (log segments, snapshot).",
                       st->log_disk_bytes);
    rfs_metrics_single(b, "raftfs_raft_log_files", "gauge", "Files in the Raft directory.",
                       st->log_files);
    rfs_metrics_single(b, "raftfs_raft_snapshot_index", "gauge",
                       "Last log index covered by the latest snapshot, 0 if none.",
                       st->snapshot_index);
    rfs_metrics_single(b, "raftfs_raft_snapshots_taken_total", "counter",
                       "Snapshots this server took of its state machine.", st->snapshots_taken);
    rfs_metrics_single(b, "raftfs_raft_snapshots_installed_total", "counter",
                       "Snapshots received from a leader and installed.", st->snapshots_installed);
    rfs_metrics_single(
        b, "raftfs_connections", "gauge",
        "Open connections accepted on the server's Raft address (clients and peers).",
        st->client_conns);
    rfs_metrics_single(b, "raftfs_pending_writes", "gauge",
                       "Writes proposed and waiting to be committed and applied.",
                       st->pending_writes);
    rfs_metrics_single(b, "raftfs_pending_reads", "gauge",
                       "Reads waiting for their read index to be confirmed and applied.",
                       st->pending_reads);
    rfs_metrics_render_requests(b, st->requests, rfs_metrics_op_name);
}

void rfs_metrics_render_mover(struct rfs_http_body *b, const struct rfs_mover_stats *st)
{
    rfs_metrics_single(b, "raftfs_mover_pulled_records_total", "counter",
                       "Records of moving buckets read from their old owners.", st->pulled_records);
    rfs_metrics_single(b, "raftfs_mover_pulled_bytes_total", "counter",
                       "Key and value bytes of moving buckets read from their old owners.",
                       st->pulled_bytes);
    rfs_metrics_single(b, "raftfs_mover_installed_records_total", "counter",
                       "Pulled records committed to this group.", st->installed_records);
    rfs_metrics_single(b, "raftfs_mover_installed_bytes_total", "counter",
                       "Pulled key and value bytes committed to this group.", st->installed_bytes);
    rfs_metrics_single(b, "raftfs_mover_buckets_pulled_total", "counter",
                       "Buckets whose last chunk was installed here.", st->buckets_pulled);
    rfs_metrics_single(b, "raftfs_mover_buckets_moved_total", "counter",
                       "Bucket moves into this group finished (old copy deleted, serving here).",
                       st->buckets_settled);
    rfs_metrics_single(b, "raftfs_mover_configs_applied_total", "counter",
                       "Bucket configurations this server's mover committed to its group.",
                       st->configs_applied);
    rfs_metrics_single(b, "raftfs_mover_step_errors_total", "counter",
                       "Mover steps that failed and were retried later.", st->step_errors);
}

void rfs_metrics_render_buckets(struct rfs_http_body *b, const uint64_t counts[5])
{
    static const char *const names[5] = {"NOT_OWNED", "SERVING", "PULLING", "BE_PULLED",
                                         "GC_OWNER"};
    rfs_metrics_family(b, "raftfs_buckets", "gauge",
                       "Buckets by state in this server's applied configuration.");
    for (unsigned i = 0; i < 5; i++) {
        rfs_http_body_printf(b, "raftfs_buckets{state=\"%s\"} %llu\n", names[i],
                             (unsigned long long)counts[i]);
    }
}
