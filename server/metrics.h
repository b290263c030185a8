/* server/metrics.h: the metrics of a server process in the Prometheus text exposition
 * format 0.0.4 (docs/observability.md): request counters and latency histograms kept in the
 * server, and the helpers every part uses to render its families.
 *
 * Everything here runs in the server's event-loop thread (counters are plain integers);
 * the mover thread keeps its own atomic counters (mover.h). */
#ifndef SERVER_METRICS_H
#define SERVER_METRICS_H

#include <stdint.h>

#include "http.h"

#define RFS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Request ops are the KvOp numbers (proto/raftfs.proto); results are 0 (ok) or an RFS_E*
 * code. Larger numbers are counted as the last slot ("other"). */
#define RFS_METRICS_MAX_OPS     32
#define RFS_METRICS_MAX_RESULTS 32
#define RFS_METRICS_N_BUCKETS   14 /* latency histogram buckets, +Inf included */

struct rfs_metrics_requests {
    uint64_t count[RFS_METRICS_MAX_OPS][RFS_METRICS_MAX_RESULTS];
    uint64_t latency[RFS_METRICS_MAX_OPS][RFS_METRICS_N_BUCKETS]; /* not cumulative */
    uint64_t latency_sum_us[RFS_METRICS_MAX_OPS];
};

/* Microseconds from a monotonic clock. */
uint64_t rfs_metrics_now_us(void);

/* Count one request of `op` answered with `status` (0 or RFS_E*) after micros. */
void rfs_metrics_request_done(struct rfs_metrics_requests *m, unsigned op, int status,
                              uint64_t micros);

/* Render raftfs_requests_total and raftfs_request_duration_seconds; op_name(op) gives the
 * label value of an op number (a static string). Only series seen at least once appear. */
void rfs_metrics_render_requests(struct rfs_http_body *b, const struct rfs_metrics_requests *m,
                                 const char *(*op_name)(unsigned op));

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge, histogram). */
void rfs_metrics_family(struct rfs_http_body *b, const char *name, const char *type,
                        const char *help);
/* A family with one unlabelled sample. */
void rfs_metrics_single(struct rfs_http_body *b, const char *name, const char *type,
                        const char *help, uint64_t value);
struct rfs_server_stats;
struct rfs_mover_stats;

/* The label value of a request op: its KvOp name ("KV_PUT"), or "OTHER". */
const char *rfs_metrics_op_name(unsigned op);

/* Render a server's Raft gauges, snapshot and log size, connections and requests. */
void rfs_metrics_render_server(struct rfs_http_body *b, const struct rfs_server_stats *st);
/* Render a shard server's bucket mover counters. */
void rfs_metrics_render_mover(struct rfs_http_body *b, const struct rfs_mover_stats *st);
/* Render raftfs_buckets{state=...}: counts[] is indexed by BucketState (0..4). */
void rfs_metrics_render_buckets(struct rfs_http_body *b, const uint64_t counts[5]);

/* The label value for a result: "ok" or the code's name ("ENOTLEADER", "EWRONGGROUP"). */
const char *rfs_metrics_result_name(int status);

#endif
