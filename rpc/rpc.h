/* rpc: a one-thread epoll event loop with timers, and framed TCP connections.
 * Knows nothing of Raft or keys.
 *
 * Conventions:
 * - Every function except rpc_loop_post() and rpc_loop_stop() must be called from the
 *   loop's own thread (the one inside rpc_loop_run()), or before the loop runs.
 * - Callbacks run in the loop thread, never inside the call that caused them.
 * - Failing calls return 0 or a positive RFS_E* code; setup calls write a reason into
 *   errmsg (RFS_ERRMSG_SIZE bytes, may be NULL).
 *
 * Wire format of one frame (all little-endian):
 *   u32 length   bytes after this field: 12 + payload length
 *   u32 type     frame type, chosen by the application
 *   u64 req_id   request id, echoed in the reply; many requests may be in flight
 *   payload      `length - 12` bytes
 * A frame longer than the connection's max_frame, a type the handler does not know, or
 * a length below 12 closes that connection with a log line; the process goes on. */
#ifndef RPC_H
#define RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/err.h"

#define RPC_HEADER_SIZE       16
#define RPC_DEFAULT_MAX_FRAME (64u << 20)
/* A connection whose unsent output exceeds this is closed (a slow or stuck peer must not
 * exhaust memory). */
#define RPC_DEFAULT_MAX_OUTPUT (256u << 20)

struct rpc_loop;
struct rpc_timer;
struct rpc_listener;
struct rpc_conn;
struct rpc_peer;

/* Milliseconds from a monotonic clock. */
uint64_t rpc_now_ms(void);

int rpc_loop_new(struct rpc_loop **out, char *errmsg);
/* Frees timers, listeners, peers and connections still open, without calling any
 * callback (on_close included); posted callbacks not yet run are dropped. Not from a
 * callback. */
void rpc_loop_free(struct rpc_loop *l);
/* Run until rpc_loop_stop(). Returns 0, or RFS_EIO if epoll fails. */
int rpc_loop_run(struct rpc_loop *l);
/* Make rpc_loop_run() return after the current iteration. Thread-safe and
 * async-signal-safe (it writes to an eventfd). */
void rpc_loop_stop(struct rpc_loop *l);
/* Run cb(data) in the loop thread soon. Thread-safe. Returns RFS_ENOMEM. */
int rpc_loop_post(struct rpc_loop *l, void (*cb)(void *data), void *data);
/* Called once per loop iteration after events and timers were handled and before the
 * loop sleeps: where a server turns everything that arrived into one Raft ready batch
 * (one sync for all of it). */
void rpc_loop_set_before_sleep(struct rpc_loop *l, void (*cb)(void *data), void *data);

/* A timer firing once after `after_ms`, then every `repeat_ms` if non-zero. The timer
 * belongs to the loop; rpc_timer_stop() releases it (also safe from its own callback).
 * A one-shot timer is released when its callback returns: do not stop it after that.
 * A timer started from a timer callback fires in a later iteration, never the same one. */
typedef void (*rpc_timer_cb)(struct rpc_timer *t, void *data);
int rpc_timer_start(struct rpc_loop *l, uint64_t after_ms, uint64_t repeat_ms, rpc_timer_cb cb,
                    void *data, struct rpc_timer **out);
void rpc_timer_stop(struct rpc_timer *t);

/* What a connection does with frames. `known_type` may be NULL (all types accepted). */
struct rpc_handler {
    void *data;
    bool (*known_type)(uint32_t type, void *data);
    /* A complete frame. payload is valid only during the call. */
    void (*on_frame)(struct rpc_conn *c, uint32_t type, uint64_t req_id, const void *payload,
                     size_t len, void *data);
    /* The connection opened (outgoing peers: each time a (re)connect succeeds). */
    void (*on_open)(struct rpc_conn *c, void *data);
    /* The connection is gone; c must not be used after this returns. */
    void (*on_close)(struct rpc_conn *c, void *data);
    /* Raw mode, for a protocol without frames (HTTP): when set, the bytes are not parsed
     * as frames; after each read every byte received and not yet consumed is passed here,
     * and the return value says how many were consumed (the rest is passed again, with
     * what follows). on_frame and known_type are not used; max_frame then bounds the
     * unconsumed bytes kept (over it the connection is closed). Send with rpc_conn_write. */
    size_t (*on_bytes)(struct rpc_conn *c, const void *buf, size_t len, void *data);
    size_t max_frame;  /* limit on the length field (12 + payload); 0: RPC_DEFAULT_MAX_FRAME */
    size_t max_output; /* 0: RPC_DEFAULT_MAX_OUTPUT */
};

/* Listen on "host:port" (port 0 picks a free one). Accepted connections use h (copied).
 * Returns 0; RFS_EBUSY if the address is in use ("address 127.0.0.1:7001 is already in
 * use"); RFS_EINVAL for a bad address; RFS_EIO. */
int rpc_listen(struct rpc_loop *l, const char *addr, const struct rpc_handler *h,
               struct rpc_listener **out, char *errmsg);
uint16_t rpc_listener_port(const struct rpc_listener *ls);
/* Stop listening and close the connections this listener accepted. No callback of the
 * listener's handler runs after this returns (not even on_close for those connections):
 * release per-connection data (rpc_conn_set_data) before, if the handler owns it. Safe
 * from any callback, including an on_open of this listener. */
void rpc_listener_close(struct rpc_listener *ls);

/* Queue a frame (copied into the connection's output buffer; sent as soon as the socket
 * allows, many frames per write). Returns 0, RFS_ETOOBIG (frame over max_frame),
 * RFS_ESTOPPED (connection closing), or RFS_ENOMEM. Exceeding max_output closes the
 * connection and returns RFS_ESTOPPED. */
int rpc_conn_send(struct rpc_conn *c, uint32_t type, uint64_t req_id, const void *payload,
                  size_t len);
/* Like rpc_conn_send, from several pieces (no copy into a temporary first). */
int rpc_conn_sendv(struct rpc_conn *c, uint32_t type, uint64_t req_id, const struct rfs_buf *parts,
                   unsigned n_parts);
/* Send what is queued for c now instead of at the end of this loop iteration (for a
 * frame that should leave before slow work in the same iteration, such as a log sync). A
 * write error closes c as if found by the loop. */
void rpc_conn_flush(struct rpc_conn *c);
/* Queue raw bytes (raw-mode connections, see rpc_handler.on_bytes): copied, sent like
 * frames. Returns 0, RFS_ESTOPPED (closing, or over max_output: closed), RFS_ENOMEM. */
int rpc_conn_write(struct rpc_conn *c, const void *buf, size_t len);
/* Stop reading and close once everything queued has been sent (at once if nothing is);
 * on_close follows as for rpc_conn_close(). For a reply that ends a connection (an HTTP
 * response with "Connection: close"). Safe from any callback. */
void rpc_conn_close_flushed(struct rpc_conn *c, const char *why);
/* Close after the current callback; on_close follows later. `why` is logged. Safe from
 * any callback; frames already received for c are not delivered; frames already queued
 * are sent only if the socket takes them at once. Sends after this return RFS_ESTOPPED. */
void rpc_conn_close(struct rpc_conn *c, const char *why);
/* "ip:port" of the other end, for logs. */
const char *rpc_conn_peer_name(const struct rpc_conn *c);
/* An opaque pointer for the application. */
void rpc_conn_set_data(struct rpc_conn *c, void *data);
void *rpc_conn_get_data(const struct rpc_conn *c);

/* An outgoing connection to "host:port" that reconnects by itself with exponential
 * backoff (from 50 ms up to 2 s, with jitter) until rpc_peer_free(). Frames sent while
 * disconnected are refused (RFS_EUNAVAIL): callers above (Raft, client retries) resend.
 * addr is resolved once, here (RFS_EINVAL if it cannot be). The first attempt starts at
 * once; on_open runs from the loop each time a connection is made, on_close each time one
 * is lost. */
int rpc_peer_new(struct rpc_loop *l, const char *addr, const struct rpc_handler *h,
                 struct rpc_peer **out, char *errmsg);
/* Close the connection and stop reconnecting. No callback of the peer's handler runs after
 * this returns (not even on_close). Safe from the peer's own callbacks. */
void rpc_peer_free(struct rpc_peer *p);
bool rpc_peer_connected(const struct rpc_peer *p);
/* rpc_conn_flush for the peer's connection; nothing if it has none. */
void rpc_peer_flush(struct rpc_peer *p);
int rpc_peer_send(struct rpc_peer *p, uint32_t type, uint64_t req_id, const void *payload,
                  size_t len);
int rpc_peer_sendv(struct rpc_peer *p, uint32_t type, uint64_t req_id, const struct rfs_buf *parts,
                   unsigned n_parts);

/* Parse "host:port" into a sockaddr_in (IPv4 literal or a resolvable name). */
struct sockaddr_in;
int rpc_addr_parse(const char *addr, struct sockaddr_in *out, char *errmsg);

#endif
