/* Internals of the proxy engine, shared by proxy.c (event loop, connections) and
 * proxy_cmd.c (control commands). Not for use outside those two files. */
#ifndef RFS_TESTS_PROXY_IMPL_H
#define RFS_TESTS_PROXY_IMPL_H

#include "tests/lib/proxy.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

/* Directions: a flow index. UP reads the client end and writes the target end. */
enum { PROXY_UP = 0, PROXY_DOWN = 1 };

/* Most bytes queued in one direction before the proxy stops reading its source. */
#define PROXY_QUEUE_MAX (4u << 20)
/* Longest control line. */
#define PROXY_LINE_MAX 1024

/* What an epoll event points at. */
enum proxy_kind {
    PROXY_H_STOP,
    PROXY_H_CONTROL_LISTEN,
    PROXY_H_CONTROL,
    PROXY_H_ROUTE_LISTEN,
    PROXY_H_CONN_END,
};

struct proxy_handle {
    enum proxy_kind kind;
    void *owner;
    int index; /* PROXY_H_CONN_END: 0 client end, 1 target end */
};

/* Bytes read from one end, waiting to be written to the other at release_ns. */
struct proxy_chunk {
    struct proxy_chunk *next;
    long long release_ns;
    size_t len;
    size_t off; /* bytes already written */
    char data[];
};

/* One direction of a connection. */
struct proxy_flow {
    struct proxy_chunk *head;
    struct proxy_chunk *tail;
    size_t queued;             /* unwritten bytes in the queue */
    long long last_release_ns; /* keeps release times monotonic, so order is kept */
    bool eof;                  /* the source end sent FIN (nothing more to read) */
    bool fin_lost;             /* that FIN arrived during a cut and was discarded */
    bool shut;                 /* FIN passed on to the destination (shutdown SHUT_WR) */
    bool blocked;              /* destination send buffer full: waiting for EPOLLOUT */
    bool holed;                /* a cut discarded bytes: the stream has a hole */
};

struct proxy_end {
    int fd;
    uint32_t events; /* epoll interest currently registered */
    bool watched;
    struct proxy_handle h;
};

struct proxy_conn {
    struct proxy_route *route;
    struct proxy_conn *next; /* in route->conns, or in the proxy's graveyard once dead */
    uint64_t id;
    struct proxy_end end[2];   /* [0] accepted client, [1] connection to the target */
    struct proxy_flow flow[2]; /* flow[d] reads end[d] and writes end[1 - d] */
    bool connecting;           /* the connect to the target has not completed */
    bool dead;                 /* closed; freed at the end of the loop pass */
};

struct proxy_stats {
    uint64_t bytes[2];     /* delivered to the destination, per direction */
    uint64_t discarded[2]; /* thrown away by cut, per direction */
    uint64_t conns;        /* accepted */
    uint64_t open;         /* currently open */
    uint64_t dropped;      /* closed by drop */
    uint64_t resets;       /* closed by reset, or by heal because of a hole */
    uint64_t connect_failed;
};

struct proxy_route {
    struct proxy_route *next;
    char name[PROXY_NAME_MAX];
    char target_text[128];
    struct sockaddr_in target;
    int listen_fd;
    int port;
    struct proxy_handle h;
    unsigned drop_permille;
    unsigned delay_min_ms[2];
    unsigned delay_max_ms[2];
    bool cut[2];
    bool hold[2];
    struct proxy_conn *conns;
    struct proxy_stats stats;
};

struct proxy_control {
    struct proxy_control *next;
    int fd;
    bool dead;
    struct proxy_handle h;
    size_t len;
    char buf[PROXY_LINE_MAX];
};

struct proxy {
    int ep;
    int control_fd;
    int control_port;
    struct proxy_handle control_h;
    struct proxy_handle stop_h;
    uint64_t rng;
    uint64_t next_conn_id;
    bool quit;
    struct proxy_route *routes;
    struct proxy_control *controls;
    struct proxy_conn *graveyard;
};

/* Used by proxy_cmd.c. */
struct proxy_route *proxy_route_find(struct proxy *p, const char *name);
/* Discard everything queued in direction d of every connection of r (for cut). */
void proxy_route_discard(struct proxy *p, struct proxy_route *r, int d);
/* Abortively close every connection of r; only those with a hole if holed_only. Returns how
 * many were closed. */
unsigned proxy_route_reset(struct proxy *p, struct proxy_route *r, bool holed_only);
/* Parse "HOST:PORT" (IPv4, or a name resolved now). */
int proxy_addr_parse(const char *text, struct sockaddr_in *out, char *errmsg);

#endif
