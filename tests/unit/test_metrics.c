/* The metrics endpoint of a real shard group (docs/observability.md): three raftfs-shard
 * processes started with --metrics 127.0.0.1:0 (each logs the port it got), scraped over
 * plain TCP sockets as Prometheus would.
 *
 * Checked: puts through the kv client raise raftfs_requests_total{op="KV_PUT",result="ok"}
 * and the latency histogram; the Raft gauges are sane on every server (term >= 1, commit >=
 * applied > 0, exactly one role, one leader); every line of the output is valid text
 * exposition format 0.0.4 (HELP/TYPE once per family and before its samples, every sample
 * `name{labels} value` of a declared family); a path other than /metrics is 404, another
 * method 405; binary junk, a 100 KB header and a malformed request line get 400 and the
 * connection closes (the 100 KB one may see a reset instead of the 400, see the test); a
 * client that sends nothing, or one byte at a time, is answered 408 and closed; connections
 * over the limit are closed; after all of it the group still takes puts and serves metrics.
 * The last test of the group stops the servers with SIGTERM and fails on any sanitizer report
 * in their logs.
 *
 * A second group of tests runs a sharded cluster (a meta server and two one-server shard
 * groups, all with --metrics): after group 2 joins and half of the buckets move to it, its
 * mover counters show the pulled and installed records and the moved buckets, the bucket
 * gauges of both groups show the new split, and the meta server reports role "meta" and its
 * own requests. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "kv/client.h"
#include "meta/meta.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"
#include "tests/lib/sharded.h"

#define N_SERVERS    3
#define GROUP_ID     1
#define REPLY_MS     5000
#define LEADER_MS    10000
#define IDLE_MS      5000 /* server/http.h: HTTP_REQUEST_MS */
#define MAX_CONNS    64   /* server/http.h: HTTP_MAX_CONNS */
#define MAX_RESPONSE (4u << 20)
#define N_PUTS       20

struct fixture {
    bool skip;
    char why[300];
    struct cluster c;
    bool started;
    struct kv_client *kc;
    int mport[N_SERVERS]; /* metrics port of each server */
    unsigned puts;
};

/* ---- HTTP over a plain socket ---- */

static int http_connect(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fail_msg("connect to metrics port %d: %s", port, strerror(errno));
    }
    return fd;
}

/* Send what the server takes; it may answer and close part way (a reset ends the sending). */
static void send_some(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return; /* EPIPE, ECONNRESET: the server closed */
        }
        p += n;
        len -= (size_t)n;
    }
}

/* Read until the server closes (or resets) the connection. Returns the bytes received
 * (malloc'd, NUL-terminated, in *out) or -1 if it did not close within timeout_ms. */
static long read_to_close(int fd, int timeout_ms, char **out)
{
    long long deadline = proc_now_ms() + timeout_ms;
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long long left = deadline - proc_now_ms();
        ssize_t n;
        if (left <= 0) {
            free(buf);
            *out = NULL;
            return -1;
        }
        if (poll(&pfd, 1, (int)left) <= 0) {
            continue;
        }
        if (len == cap) {
            assert_true(cap < MAX_RESPONSE);
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        n = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (n <= 0) {
            break; /* EOF or a reset */
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    return (long)len;
}

/* The status code of a response ("HTTP/1.1 200 OK..."), or 0 for none. */
static int status_of(const char *resp)
{
    int code = 0;
    if (resp == NULL || sscanf(resp, "HTTP/1.%*[01] %d", &code) != 1) {
        return 0;
    }
    return code;
}

/* Send req (len bytes) to the server's metrics port; the server must answer and close
 * within REPLY_MS. Returns the status; *resp (free) gets the whole response. */
static int http_request(struct fixture *f, unsigned server, const void *req, size_t len,
                        char **resp)
{
    int fd = http_connect(f->mport[server]);
    long n;
    send_some(fd, req, len);
    n = read_to_close(fd, REPLY_MS, resp);
    close(fd);
    if (n < 0) {
        fail_msg("server %u: the metrics connection is still open %d ms after a request", server,
                 REPLY_MS);
    }
    return status_of(*resp);
}

/* GET /metrics: the body (free), after checking the status and headers. */
static char *scrape(struct fixture *f, unsigned server)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n";
    char *resp, *body, *copy;
    unsigned long clen = 0;
    const char *cl;
    int status = http_request(f, server, req, sizeof req - 1, &resp);
    if (status != 200) {
        fail_msg("server %u: GET /metrics answered %d: %.200s", server, status, resp);
    }
    assert_non_null(strstr(resp, "\r\nContent-Type: text/plain; version=0.0.4"));
    cl = strstr(resp, "\r\nContent-Length: ");
    assert_non_null(cl);
    clen = strtoul(cl + 18, NULL, 10);
    body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    assert_int_equal(strlen(body), clen);
    copy = strdup(body);
    assert_non_null(copy);
    free(resp);
    return copy;
}

/* ---- the exposition format ---- */

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':')) {
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':')) {
            return false;
        }
    }
    return true;
}

static bool value_ok(const char *s)
{
    char *end;
    if (strcmp(s, "+Inf") == 0 || strcmp(s, "-Inf") == 0 || strcmp(s, "NaN") == 0) {
        return true;
    }
    errno = 0;
    (void)strtod(s, &end);
    if (end == s || errno != 0) {
        return false;
    }
    if (*end == ' ') { /* an optional timestamp */
        const char *t = end + 1;
        if (*t == '-') {
            t++;
        }
        if (*t == '\0') {
            return false;
        }
        for (; *t; t++) {
            if (!isdigit((unsigned char)*t)) {
                return false;
            }
        }
        return true;
    }
    return *end == '\0';
}

/* Labels "{a="x",b="y"}" starting at s; returns the length, or 0 if malformed. */
static size_t labels_len(const char *s)
{
    const char *p = s + 1;
    if (*s != '{') {
        return 0;
    }
    while (*p != '}') {
        const char *n = p;
        while (isalnum((unsigned char)*p) || *p == '_') {
            p++;
        }
        if (p == n || isdigit((unsigned char)*n) || *p != '=' || p[1] != '"') {
            return 0;
        }
        p += 2;
        while (*p != '"') {
            if (*p == '\0' || *p == '\n') {
                return 0;
            }
            if (*p == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n') {
                    return 0;
                }
                p++;
            }
            p++;
        }
        p++;
        if (*p == ',') {
            p++;
        } else if (*p != '}') {
            return 0;
        }
    }
    return (size_t)(p + 1 - s);
}

struct family {
    char name[128];
    char type[16];
    bool help, has_samples;
};

static struct family *family_find(struct family *fam, unsigned n, const char *name, size_t len)
{
    for (unsigned i = 0; i < n; i++) {
        if (strlen(fam[i].name) == len && memcmp(fam[i].name, name, len) == 0) {
            return &fam[i];
        }
    }
    return NULL;
}

/* The family a sample belongs to: its own name, or a histogram's name without the
 * _bucket, _sum or _count suffix. */
static struct family *sample_family(struct family *fam, unsigned n, const char *name, size_t len)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    struct family *f = family_find(fam, n, name, len);
    if (f != NULL) {
        return f;
    }
    for (unsigned i = 0; i < 3; i++) {
        size_t sl = strlen(sfx[i]);
        if (len > sl && memcmp(name + len - sl, sfx[i], sl) == 0) {
            f = family_find(fam, n, name, len - sl);
            if (f != NULL &&
                (strcmp(f->type, "histogram") == 0 || strcmp(f->type, "summary") == 0)) {
                return f;
            }
        }
    }
    return NULL;
}

/* Check every line of body; fail naming the line. */
static void check_exposition(const char *body, unsigned server)
{
    static struct family fam[256];
    unsigned n_fam = 0, lineno = 0;
    const char *p = body;
    assert_true(strlen(body) > 0);
    assert_int_equal(body[strlen(body) - 1], '\n');
    while (*p) {
        const char *nl = strchr(p, '\n');
        char line[1024];
        size_t len;
        assert_non_null(nl);
        len = (size_t)(nl - p);
        lineno++;
        if (len >= sizeof line) {
            fail_msg("server %u line %u: %zu bytes", server, lineno, len);
        }
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            const char *name = line + 7;
            size_t nlen = strcspn(name, " ");
            struct family *f = family_find(fam, n_fam, name, nlen);
            if (!name_ok(name, nlen) || name[nlen] != ' ') {
                fail_msg("server %u line %u: bad metric name: %s", server, lineno, line);
            }
            if (f == NULL) {
                assert_true(n_fam < 256);
                f = &fam[n_fam++];
                memset(f, 0, sizeof *f);
                memcpy(f->name, name, nlen);
            }
            if (f->has_samples) {
                fail_msg("server %u line %u: HELP/TYPE after samples: %s", server, lineno, line);
            }
            if (line[2] == 'H') {
                if (f->help) {
                    fail_msg("server %u line %u: second HELP: %s", server, lineno, line);
                }
                f->help = true;
            } else {
                const char *t = name + nlen + 1;
                if (f->type[0] != '\0') {
                    fail_msg("server %u line %u: second TYPE: %s", server, lineno, line);
                }
                if (strcmp(t, "counter") != 0 && strcmp(t, "gauge") != 0 &&
                    strcmp(t, "histogram") != 0 && strcmp(t, "summary") != 0 &&
                    strcmp(t, "untyped") != 0) {
                    fail_msg("server %u line %u: unknown type: %s", server, lineno, line);
                }
                snprintf(f->type, sizeof f->type, "%s", t);
            }
            continue;
        }
        if (line[0] == '#' || line[0] == '\0') {
            fail_msg("server %u line %u: unexpected line '%s'", server, lineno, line);
        }
        {
            size_t nlen = strcspn(line, "{ ");
            size_t llen = line[nlen] == '{' ? labels_len(line + nlen) : 0;
            struct family *f;
            if (!name_ok(line, nlen) || (line[nlen] == '{' && llen == 0) ||
                line[nlen + llen] != ' ' || !value_ok(line + nlen + llen + 1)) {
                fail_msg("server %u line %u: not 'name{labels} value': '%s'", server, lineno, line);
            }
            f = sample_family(fam, n_fam, line, nlen);
            if (f == NULL || f->type[0] == '\0') {
                fail_msg("server %u line %u: sample of an undeclared family: '%s'", server, lineno,
                         line);
            }
            if (strcmp(f->type, "counter") == 0 && strtod(line + nlen + llen + 1, NULL) < 0) {
                fail_msg("server %u line %u: negative counter: '%s'", server, lineno, line);
            }
            f->has_samples = true;
        }
    }
    for (unsigned i = 0; i < n_fam; i++) {
        if (fam[i].type[0] == '\0' || !fam[i].help) {
            fail_msg("server %u: family %s lacks TYPE or HELP", server, fam[i].name);
        }
    }
}

/* The value of the sample whose text before the value is exactly `series`; -1 if absent. */
static double sample(const char *body, const char *series)
{
    size_t sl = strlen(series);
    for (const char *p = body; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, sl) == 0 && p[sl] == ' ') {
            return strtod(p + sl + 1, NULL);
        }
    }
    return -1;
}

static double sample_or_zero(const char *body, const char *series)
{
    double v = sample(body, series);
    return v < 0 ? 0 : v;
}

/* ---- the group ---- */

struct port_wait {
    const struct cluster *c;
    unsigned i;
    int port;
};

static bool metrics_port_logged(void *arg)
{
    struct port_wait *w = arg;
    char logp[300], buf[16384];
    const char *at;
    FILE *fp;
    size_t n;
    cluster_log_path(w->c, w->i, logp, sizeof logp);
    fp = fopen(logp, "r");
    if (fp == NULL) {
        return false;
    }
    n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    at = strstr(buf, "metrics at http://127.0.0.1:");
    if (at == NULL) {
        return false;
    }
    w->port = atoi(at + strlen("metrics at http://127.0.0.1:"));
    return w->port > 0;
}

static int group_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct kv_client_options o;
    char errmsg[RFS_ERRMSG_SIZE];
    char group[sizeof f->c.group];
    assert_non_null(f);
    *state = f;
    if (!cluster_bins_present(f->why, sizeof f->why)) {
        f->skip = true;
        return 0;
    }
    f->started = true;
    if (cluster_start(&f->c, N_SERVERS, false, "--metrics 127.0.0.1:0", errmsg) != 0) {
        fprintf(stderr, "cluster_start: %s\n", errmsg);
        goto err;
    }
    for (unsigned i = 0; i < N_SERVERS; i++) {
        struct port_wait w = {&f->c, i, 0};
        if (!wait_until(metrics_port_logged, &w, 10000)) {
            fprintf(stderr, "server %u logged no metrics port\n", i);
            cluster_dump_logs(&f->c);
            goto err;
        }
        f->mport[i] = w.port;
    }
    if (cluster_wait_leader(&f->c, LEADER_MS) < 0) {
        fprintf(stderr, "no leader within %d ms\n", LEADER_MS);
        goto err;
    }
    memset(&o, 0, sizeof o);
    snprintf(group, sizeof group, "%s", f->c.group);
    if (kv_client_parse_servers(group, &o, errmsg) != 0) {
        fprintf(stderr, "servers %s: %s\n", f->c.group, errmsg);
        goto err;
    }
    o.group_id = GROUP_ID;
    o.timeout_ms = 8000;
    o.attempt_ms = 1000;
    if (kv_client_new(&f->kc, &o, errmsg) != 0) {
        fprintf(stderr, "kv_client_new: %s\n", errmsg);
        goto err;
    }
    return 0;
err:
    cluster_destroy(&f->c);
    free(f);
    *state = NULL;
    return -1;
}

static int group_teardown(void **state)
{
    struct fixture *f = *state;
    if (f == NULL) {
        return 0;
    }
    kv_client_free(f->kc);
    if (f->started) {
        cluster_destroy(&f->c);
    }
    free(f);
    return 0;
}

static struct fixture *fixture_get(void **state)
{
    struct fixture *f = *state;
    if (f->skip) {
        printf("SKIPPED: %s\n", f->why);
        skip();
    }
    return f;
}

static void put_some(struct fixture *f, unsigned n)
{
    char key[64], val[64], errmsg[RFS_ERRMSG_SIZE];
    for (unsigned i = 0; i < n; i++) {
        int rv;
        f->puts++;
        snprintf(key, sizeof key, "metrics-%u", f->puts);
        snprintf(val, sizeof val, "value %u", f->puts);
        rv = kv_client_put(f->kc, key, strlen(key), val, strlen(val), NULL, errmsg);
        if (rv != 0) {
            cluster_dump_logs(&f->c);
            fail_msg("put %s: %s", key, errmsg);
        }
    }
}

/* Puts still work, every server is alive and serves its metrics. */
static void expect_healthy(struct fixture *f, const char *after)
{
    for (unsigned i = 0; i < N_SERVERS; i++) {
        char *body;
        if (!proc_alive(f->c.pid[i])) {
            cluster_dump_logs(&f->c);
            fail_msg("after %s: server %u (pid %d) is gone", after, i, (int)f->c.pid[i]);
        }
        body = scrape(f, i);
        free(body);
    }
    put_some(f, 2);
}

static double puts_ok(struct fixture *f)
{
    double total = 0;
    for (unsigned i = 0; i < N_SERVERS; i++) {
        char *body = scrape(f, i);
        total += sample_or_zero(body, "raftfs_requests_total{op=\"KV_PUT\",result=\"ok\"}");
        free(body);
    }
    return total;
}

/* ---- tests ---- */

static void test_puts_raise_the_request_counter_and_histogram(void **state)
{
    struct fixture *f = fixture_get(state);
    double before = puts_ok(f), after, count = 0, inf = 0;
    put_some(f, N_PUTS);
    after = puts_ok(f);
    if (after < before + N_PUTS) {
        fail_msg("KV_PUT ok went from %.0f to %.0f after %d puts", before, after, N_PUTS);
    }
    for (unsigned i = 0; i < N_SERVERS; i++) {
        char *body = scrape(f, i);
        double prev = 0;
        const char *les[] = {"0.0005", "0.001", "0.002", "0.005", "0.01", "0.02", "0.05",
                             "0.1",    "0.2",   "0.5",   "1",     "2",    "5",    "+Inf"};
        char series[160];
        double c = sample_or_zero(body, "raftfs_request_duration_seconds_count{op=\"KV_PUT\"}");
        for (unsigned k = 0; c > 0 && k < sizeof les / sizeof les[0]; k++) {
            double v;
            snprintf(series, sizeof series,
                     "raftfs_request_duration_seconds_bucket{op=\"KV_PUT\",le=\"%s\"}", les[k]);
            v = sample(body, series);
            assert_true(v >= prev); /* cumulative */
            prev = v;
        }
        if (c > 0) {
            assert_true(prev == c); /* +Inf holds every request */
            assert_true(sample(body, "raftfs_request_duration_seconds_sum{op=\"KV_PUT\"}") > 0);
        }
        count += c;
        inf += prev;
        free(body);
    }
    assert_true(count >= after);
    assert_true(inf == count);
}

static void test_raft_gauges_are_sane_on_every_server(void **state)
{
    struct fixture *f = fixture_get(state);
    unsigned leaders = 0;
    put_some(f, 1);
    for (unsigned i = 0; i < N_SERVERS; i++) {
        char *body = scrape(f, i);
        double term = sample(body, "raftfs_raft_term");
        double commit = sample(body, "raftfs_raft_commit_index");
        double applied = sample(body, "raftfs_raft_applied_index");
        double last = sample(body, "raftfs_raft_last_log_index");
        double roles = 0;
        char info[128];
        const char *names[] = {"follower", "pre-candidate", "candidate", "leader"};
        for (unsigned r = 0; r < 4; r++) {
            char series[64];
            double v;
            snprintf(series, sizeof series, "raftfs_raft_role{role=\"%s\"}", names[r]);
            v = sample(body, series);
            assert_true(v == 0 || v == 1);
            roles += v;
            leaders += r == 3 && v == 1;
        }
        if (!(term >= 1 && commit >= applied && applied > 0 && last >= commit && roles == 1)) {
            fail_msg("server %u: term %.0f commit %.0f applied %.0f last %.0f roles %.0f\n%s", i,
                     term, commit, applied, last, roles, body);
        }
        assert_true(sample(body, "raftfs_raft_log_disk_bytes") > 0);
        assert_true(sample(body, "raftfs_raft_snapshot_index") >= 0);
        assert_true(sample(body, "raftfs_raft_snapshots_taken_total") >= 0);
        assert_true(sample(body, "raftfs_process_uptime_seconds") > 0);
        assert_true(sample(body, "raftfs_buckets{state=\"SERVING\"}") == 64);
        assert_true(sample(body, "raftfs_buckets{state=\"PULLING\"}") == 0);
        assert_true(sample(body, "raftfs_mover_buckets_moved_total") == 0);
        snprintf(info, sizeof info, "raftfs_server_info{role=\"shard\",group=\"1\",node=\"%u\"}",
                 i);
        assert_true(sample(body, info) == 1);
        free(body);
    }
    assert_int_equal(leaders, 1);
}

static void test_output_is_valid_exposition_format(void **state)
{
    struct fixture *f = fixture_get(state);
    for (unsigned i = 0; i < N_SERVERS; i++) {
        char *body = scrape(f, i);
        check_exposition(body, i);
        free(body);
    }
}

static void test_other_paths_and_methods(void **state)
{
    struct fixture *f = fixture_get(state);
    static const char notfound[] = "GET /nothing HTTP/1.1\r\n\r\n";
    static const char post[] = "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    static const char head[] = "HEAD /metrics HTTP/1.0\r\n\r\n";
    static const char query[] = "GET /metrics?name[]=x HTTP/1.0\n\n";
    char *resp;
    assert_int_equal(http_request(f, 0, notfound, sizeof notfound - 1, &resp), 404);
    free(resp);
    assert_int_equal(http_request(f, 1, post, sizeof post - 1, &resp), 405);
    free(resp);
    assert_int_equal(http_request(f, 2, head, sizeof head - 1, &resp), 200);
    assert_non_null(strstr(resp, "\r\n\r\n"));
    assert_int_equal(strstr(resp, "\r\n\r\n")[4], '\0'); /* no body */
    free(resp);
    assert_int_equal(http_request(f, 0, query, sizeof query - 1, &resp), 200);
    assert_non_null(strstr(resp, "raftfs_raft_term"));
    free(resp);
}

static void test_garbage_gets_400_and_the_connection_closes(void **state)
{
    struct fixture *f = fixture_get(state);
    char junk[4096];
    char *big = malloc(100 * 1024 + 64);
    const char *bad[] = {"GET /metrics\r\n\r\n",
                         "GET metrics HTTP/1.1\r\n\r\n",
                         "GET /metrics HTTP/2.0\r\n\r\n",
                         "get /metrics HTTP/1.1\r\n\r\n",
                         "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
                         "GET  /metrics HTTP/1.1\r\n\r\n"};
    uint32_t x = 12345;
    char *resp;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (char)(x >> 16);
    }
    junk[0] = 0; /* certainly not a request */
    for (unsigned s = 0; s < N_SERVERS; s++) {
        assert_int_equal(http_request(f, s, junk, sizeof junk, &resp), 400);
        free(resp);
    }
    assert_non_null(big);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX-Big: ", 30);
    memset(big + 30, 'a', 100 * 1024);
    memcpy(big + 30 + 100 * 1024, "\r\n\r\n", 4);
    {
        /* The server stops reading at 8 KiB, answers 400 and closes; the rest of the 100 KB
         * arriving at a closed socket makes TCP reset the connection, which may discard the
         * answer before this side reads it. Either way the connection must end. */
        int st = http_request(f, 0, big, 34 + 100 * 1024, &resp);
        if (st != 400 && !(st == 0 && resp[0] == '\0')) {
            fail_msg("a 100 KB header answered %d: %.100s", st, resp);
        }
        free(resp);
    }
    free(big);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = http_request(f, 1, bad[i], strlen(bad[i]), &resp);
        if (st != 400) {
            fail_msg("'%s' answered %d, expected 400", bad[i], st);
        }
        free(resp);
    }
    expect_healthy(f, "garbage on the metrics port");
}

/* A client that sends nothing and one that sends a byte every 500 ms are both answered 408
 * and closed once HTTP_REQUEST_MS has passed, while a normal scrape goes on meanwhile. */
static void test_silent_and_slow_clients_are_closed(void **state)
{
    struct fixture *f = fixture_get(state);
    static const char slow[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
    int silent = http_connect(f->mport[0]);
    int dribble = http_connect(f->mport[0]);
    long long start = proc_now_ms(), deadline = start + IDLE_MS + 3000;
    bool silent_closed = false, dribble_closed = false;
    size_t sent = 0;
    char *resp = NULL;
    free(scrape(f, 0));
    while (!(silent_closed && dribble_closed) && proc_now_ms() < deadline) {
        struct pollfd p[2] = {{.fd = silent, .events = POLLIN}, {.fd = dribble, .events = POLLIN}};
        if (!dribble_closed && sent < sizeof slow - 1) {
            send_some(dribble, slow + sent, 1);
            sent++;
        }
        if (poll(p, 2, 500) <= 0) {
            continue;
        }
        if (!silent_closed && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            long n = read_to_close(silent, 2000, &resp);
            assert_true(n >= 0);
            assert_int_equal(status_of(resp), 408);
            free(resp);
            silent_closed = true;
            assert_true(proc_now_ms() - start >= IDLE_MS - 100);
        }
        if (!dribble_closed && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            long n = read_to_close(dribble, 2000, &resp);
            assert_true(n >= 0);
            assert_int_equal(status_of(resp), 408);
            free(resp);
            dribble_closed = true;
        }
    }
    close(silent);
    close(dribble);
    if (!silent_closed || !dribble_closed) {
        fail_msg("idle connections still open after %d ms (silent %d, slow %d)", IDLE_MS + 3000,
                 silent_closed, dribble_closed);
    }
    expect_healthy(f, "idle connections");
}

/* Connections over the limit are closed at once; the ones within it still get answers. */
static void test_connections_over_the_limit_are_closed(void **state)
{
    struct fixture *f = fixture_get(state);
    static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    int fds[MAX_CONNS + 8];
    unsigned closed = 0;
    char *resp;
    for (unsigned i = 0; i < MAX_CONNS + 8; i++) {
        fds[i] = http_connect(f->mport[1]);
    }
    /* The extra ones are closed without a reply. */
    for (unsigned i = MAX_CONNS; i < MAX_CONNS + 8; i++) {
        long n = read_to_close(fds[i], REPLY_MS, &resp);
        if (n == 0) {
            closed++;
        }
        free(resp);
    }
    assert_int_equal(closed, 8);
    send_some(fds[0], req, sizeof req - 1);
    assert_true(read_to_close(fds[0], REPLY_MS, &resp) > 0);
    assert_int_equal(status_of(resp), 200);
    free(resp);
    for (unsigned i = 0; i < MAX_CONNS + 8; i++) {
        close(fds[i]);
    }
    expect_healthy(f, "too many connections");
}

static void test_servers_stop_cleanly_without_sanitizer_reports(void **state)
{
    struct fixture *f = fixture_get(state);
    for (unsigned i = 0; i < N_SERVERS; i++) {
        int st = cluster_stop_server(&f->c, i);
        if (st != 0) {
            cluster_dump_logs(&f->c);
            fail_msg("server %u exited with %d on SIGTERM", i, st);
        }
    }
    assert_int_equal(cluster_sanitizer_errors(&f->c), 0);
}

/* ---- a sharded cluster ---- */

#define SHARD_KEYS 200

struct sfix {
    bool skip;
    char why[300];
    struct sharded s;
    struct kv_client *rc; /* routed over the meta group */
    int meta_port, g_port[2];
};

static int logged_port(const struct cluster *c, unsigned i)
{
    struct port_wait w = {c, i, 0};
    if (!wait_until(metrics_port_logged, &w, 10000)) {
        return -1;
    }
    return w.port;
}

static int sharded_setup(void **state)
{
    struct sfix *f = calloc(1, sizeof *f);
    char errmsg[RFS_ERRMSG_SIZE];
    assert_non_null(f);
    *state = f;
    if (!cluster_bins_present(f->why, sizeof f->why)) {
        f->skip = true;
        return 0;
    }
    /* sharded_start() with --metrics for the meta server too. */
    if (cluster_start_binary(&f->s.meta, "raftfs-meta", 1, false, "--metrics 127.0.0.1:0",
                             errmsg) != 0 ||
        sharded_client(&f->s.mc, f->s.meta.group, META_GROUP_ID, false, 15000, errmsg) != 0 ||
        sharded_start_group(&f->s, 1, 1, false, "--metrics 127.0.0.1:0", errmsg) != 0 ||
        sharded_start_group(&f->s, 2, 1, false, "--metrics 127.0.0.1:0", errmsg) != 0 ||
        sharded_join(&f->s, 1, errmsg) != 0 || sharded_wait_settled(&f->s, 20000, errmsg) != 0 ||
        sharded_client(&f->rc, f->s.meta.group, 0, true, 15000, errmsg) != 0) {
        fprintf(stderr, "sharded cluster: %s\n", errmsg);
        goto err;
    }
    f->meta_port = logged_port(&f->s.meta, 0);
    f->g_port[0] = logged_port(&f->s.g[0], 0);
    f->g_port[1] = logged_port(&f->s.g[1], 0);
    if (f->meta_port < 0 || f->g_port[0] < 0 || f->g_port[1] < 0) {
        fprintf(stderr, "a server logged no metrics port\n");
        goto err;
    }
    return 0;
err:
    kv_client_free(f->rc);
    sharded_destroy(&f->s);
    free(f);
    *state = NULL;
    return -1;
}

static int sharded_teardown(void **state)
{
    struct sfix *f = *state;
    int bad = 0;
    if (f == NULL) {
        return 0;
    }
    kv_client_free(f->rc);
    if (!f->skip) {
        bad = sharded_destroy(&f->s);
    }
    free(f);
    if (bad != 0) {
        fprintf(stderr, "sanitizer reports in %d logs of the sharded cluster\n", bad);
        return -1;
    }
    return 0;
}

static char *scrape_port(int port)
{
    struct fixture tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.mport[0] = port;
    return scrape(&tmp, 0);
}

static void test_bucket_moves_show_in_mover_and_bucket_metrics(void **state)
{
    struct sfix *f = *state;
    char key[64], val[256], errmsg[RFS_ERRMSG_SIZE];
    char *g1, *g2;
    if (f->skip) {
        printf("SKIPPED: %s\n", f->why);
        skip();
    }
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    for (unsigned i = 0; i < SHARD_KEYS; i++) {
        snprintf(key, sizeof key, "moving-%u", i);
        if (kv_client_put(f->rc, key, strlen(key), val, strlen(val), NULL, errmsg) != 0) {
            fail_msg("put %s: %s", key, errmsg);
        }
    }
    g1 = scrape_port(f->g_port[0]);
    assert_true(sample(g1, "raftfs_buckets{state=\"SERVING\"}") == 64);
    free(g1);
    assert_int_equal(sharded_join(&f->s, 2, errmsg), 0);
    if (sharded_wait_settled(&f->s, 30000, errmsg) != 0) {
        fail_msg("after join 2: %s", errmsg);
    }
    g1 = scrape_port(f->g_port[0]);
    g2 = scrape_port(f->g_port[1]);
    check_exposition(g1, 1);
    check_exposition(g2, 2);
    if (!(sample(g2, "raftfs_buckets{state=\"SERVING\"}") == 32 &&
          sample(g2, "raftfs_buckets{state=\"NOT_OWNED\"}") == 32 &&
          sample(g1, "raftfs_buckets{state=\"SERVING\"}") == 32 &&
          sample(g1, "raftfs_buckets{state=\"NOT_OWNED\"}") == 32)) {
        fail_msg("bucket states after the move:\n%s\n%s", g1, g2);
    }
    if (!(sample(g2, "raftfs_mover_buckets_moved_total") == 32 &&
          sample(g2, "raftfs_mover_buckets_pulled_total") == 32 &&
          sample(g2, "raftfs_mover_pulled_records_total") >= SHARD_KEYS / 4 &&
          sample(g2, "raftfs_mover_installed_records_total") ==
              sample(g2, "raftfs_mover_pulled_records_total") &&
          sample(g2, "raftfs_mover_installed_bytes_total") >= (SHARD_KEYS / 4) * 255.0 &&
          sample(g2, "raftfs_mover_configs_applied_total") >= 1 &&
          sample(g1, "raftfs_mover_buckets_moved_total") == 0)) {
        fail_msg("mover counters after the move:\n%s\n%s", g1, g2);
    }
    /* The old owner answered the pulls and the deletes. */
    assert_true(sample(g1, "raftfs_requests_total{op=\"KV_BUCKET_PULL\",result=\"ok\"}") >= 32);
    assert_true(sample(g1, "raftfs_requests_total{op=\"KV_BUCKET_GC\",result=\"ok\"}") >= 32);
    free(g1);
    free(g2);
}

static void test_meta_server_serves_its_metrics(void **state)
{
    struct sfix *f = *state;
    char *body;
    if (f->skip) {
        printf("SKIPPED: %s\n", f->why);
        skip();
    }
    body = scrape_port(f->meta_port);
    check_exposition(body, 0);
    assert_true(sample(body, "raftfs_server_info{role=\"meta\",group=\"0\",node=\"0\"}") == 1);
    assert_true(sample(body, "raftfs_raft_role{role=\"leader\"}") == 1);
    assert_true(sample(body, "raftfs_requests_total{op=\"KV_META_WRITE\",result=\"ok\"}") >= 2);
    assert_true(sample(body, "raftfs_requests_total{op=\"KV_META_READ\",result=\"ok\"}") >= 1);
    assert_null(strstr(body, "raftfs_buckets")); /* shard servers only */
    assert_null(strstr(body, "raftfs_mover_"));
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_puts_raise_the_request_counter_and_histogram),
        cmocka_unit_test(test_raft_gauges_are_sane_on_every_server),
        cmocka_unit_test(test_output_is_valid_exposition_format),
        cmocka_unit_test(test_other_paths_and_methods),
        cmocka_unit_test(test_garbage_gets_400_and_the_connection_closes),
        cmocka_unit_test(test_silent_and_slow_clients_are_closed),
        cmocka_unit_test(test_connections_over_the_limit_are_closed),
        cmocka_unit_test(test_servers_stop_cleanly_without_sanitizer_reports),
    };
    const struct CMUnitTest sharded_tests[] = {
        cmocka_unit_test(test_bucket_moves_show_in_mover_and_bucket_metrics),
        cmocka_unit_test(test_meta_server_serves_its_metrics),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return failed +
           cmocka_run_group_tests_name("sharded", sharded_tests, sharded_setup, sharded_teardown);
}
