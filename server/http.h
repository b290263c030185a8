/* server/http.h: a tiny HTTP/1.x server on the server's rpc/ event loop, for GET requests
 * such as a Prometheus scrape (docs/observability.md).
 *
 * One request per connection: the reply carries "Connection: close" and the connection
 * closes once it is sent. A request (line and headers) longer than HTTP_MAX_REQUEST
 * bytes, or one that does not parse, gets 400 and the connection closes; so does a
 * connection that has not sent a whole request within HTTP_REQUEST_MS (408); one that has
 * not taken its response within 6 * HTTP_REQUEST_MS of connecting is closed. At most
 * HTTP_MAX_CONNS connections are open at once; more are closed as they arrive. Nothing
 * here blocks: the handler runs in the loop thread and must not either. */
#ifndef SERVER_HTTP_H
#define SERVER_HTTP_H

#include <stdint.h>

#include "../rpc/rpc.h"

#define HTTP_MAX_REQUEST 8192
#define HTTP_REQUEST_MS  5000
#define HTTP_MAX_CONNS   64

/* A response body under construction (rfs_malloc'd; see rfs_http_body_printf). */
struct rfs_http_body {
    char *buf;
    size_t len;
    size_t cap;
    int failed; /* out of memory: the request gets 500 */
};

/* Append printf-style text to the body. */
void rfs_http_body_printf(struct rfs_http_body *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Serve GET (and HEAD) of `path` (the part of the target before any '?'): fill body and
 * *content_type (a static string) and return an HTTP status (200, 404, ...). */
typedef int (*rfs_http_handler)(void *data, const char *path, struct rfs_http_body *body,
                                const char **content_type);

struct rfs_http;

/* Listen on "host:port" (port 0: any free port; see rfs_http_port). Returns 0 or the
 * codes of rpc_listen() with errmsg. */
int rfs_http_new(struct rfs_http **out, struct rpc_loop *loop, const char *addr,
                 rfs_http_handler handler, void *data, char *errmsg);
uint16_t rfs_http_port(const struct rfs_http *h);
/* Close the listener and every connection (safe on NULL). */
void rfs_http_free(struct rfs_http *h);

#endif
