/* bench_log_store: synced appends per second of the Raft log store (raft/log_store.h) for
 * 1, 16 and 256 entries per batch, each batch being append + set_hard_state + sync, the
 * way a server persists one ready batch. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "raft/log_store.h"

struct bench_opts {
    const char *dir; /* parent of the temporary directory */
    double seconds;  /* per batch size */
    size_t value_size;
};

struct bench_result {
    unsigned long long entries;
    unsigned long long syncs;
    double elapsed;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_log_store [--dir DIR] [--seconds S] [--value-size B]\n"
            "\n"
            "Measures synced appends to the Raft log store: for 1, 16 and 256 entries per\n"
            "batch, repeats append + set_hard_state + sync (one fdatasync) for S seconds.\n"
            "\n"
            "  --dir DIR         where to make the temporary store directory; use a directory\n"
            "                    on the disk you want to measure (default /var/tmp, else /tmp)\n"
            "  --seconds S       run time per batch size (default 3)\n"
            "  --value-size B    bytes of data per entry (default 128)\n"
            "  --help            show this text\n");
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
    struct stat sb;
    o->dir = stat("/var/tmp", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/var/tmp" : "/tmp";
    o->seconds = 3;
    o->value_size = 128;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_log_store: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        errno = 0;
        if (strcmp(a, "--dir") == 0) {
            o->dir = v;
        } else if (strcmp(a, "--seconds") == 0) {
            o->seconds = strtod(v, &end);
            if (errno != 0 || *end != '\0' || !(o->seconds > 0)) {
                fprintf(stderr, "bench_log_store: bad --seconds %s\n", v);
                return -1;
            }
        } else if (strcmp(a, "--value-size") == 0) {
            unsigned long long n = strtoull(v, &end, 10);
            if (errno != 0 || *end != '\0' || n > (64u << 20)) {
                fprintf(stderr, "bench_log_store: bad --value-size %s\n", v);
                return -1;
            }
            o->value_size = (size_t)n;
        } else {
            fprintf(stderr, "bench_log_store: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

/* Remove the files of a store directory, then the directory. */
static void remove_dir(const char *dir)
{
    char path[PATH_MAX];
    struct dirent *de;
    DIR *d = opendir(dir);
    if (d != NULL) {
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    rmdir(dir);
}

static int bench_batch(const char *dir, const struct bench_opts *o, unsigned batch,
                       struct bench_result *res)
{
    char errmsg[RFS_ERRMSG_SIZE];
    struct raft_store *s = NULL;
    struct raft_entry *e = rfs_calloc(batch, sizeof *e);
    unsigned char *value = rfs_malloc(o->value_size > 0 ? o->value_size : 1);
    raft_index next = 1;
    double start, deadline;
    int rv;

    if (e == NULL || value == NULL) {
        fprintf(stderr, "bench_log_store: out of memory\n");
        rv = RFS_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < o->value_size; i++) {
        value[i] = (unsigned char)(i * 31 + 7);
    }
    rv = raft_store_open(&s, dir, NULL, 0, errmsg);
    if (rv != 0) {
        fprintf(stderr, "bench_log_store: open %s: %s\n", dir, errmsg);
        goto out;
    }
    memset(res, 0, sizeof *res);
    start = now();
    deadline = start + o->seconds;
    do {
        struct raft_hard_state hs = {.term = 1, .vote = 1, .commit = next + batch - 1};
        for (unsigned i = 0; i < batch; i++) {
            e[i].term = 1;
            e[i].index = next + i;
            e[i].type = RAFT_ENTRY_NORMAL;
            e[i].data.base = value;
            e[i].data.len = o->value_size;
        }
        rv = raft_store_append(s, e, batch, errmsg);
        if (rv == 0) {
            rv = raft_store_set_hard_state(s, &hs, errmsg);
        }
        if (rv == 0) {
            rv = raft_store_sync(s, errmsg);
        }
        if (rv != 0) {
            fprintf(stderr, "bench_log_store: %s\n", errmsg);
            goto out;
        }
        next += batch;
        res->entries += batch;
        res->syncs++;
    } while (now() < deadline);
    res->elapsed = now() - start;
out:
    raft_store_close(s);
    rfs_free(value);
    rfs_free(e);
    return rv;
}

int main(int argc, char **argv)
{
    static const unsigned batches[] = {1, 16, 256};
    struct bench_opts o;
    char tmp[PATH_MAX];
    int status = 0;

    if (parse_args(argc, argv, &o) != 0) {
        return 2;
    }
    if (snprintf(tmp, sizeof tmp, "%s/raftfs-bench-XXXXXX", o.dir) >= (int)sizeof tmp ||
        mkdtemp(tmp) == NULL) {
        fprintf(stderr, "bench_log_store: mkdtemp in %s: %s\n", o.dir, strerror(errno));
        return 1;
    }
    printf("log store in %s, %zu-byte values, %.1f s per batch size\n", tmp, o.value_size,
           o.seconds);
    printf("%8s %14s %12s %12s %14s\n", "batch", "entries/s", "syncs/s", "MB/s", "us/sync");
    for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++) {
        char dir[PATH_MAX + 16];
        struct bench_result r;
        snprintf(dir, sizeof dir, "%s/b%u", tmp, batches[i]);
        if (bench_batch(dir, &o, batches[i], &r) != 0) {
            remove_dir(dir);
            status = 1;
            break;
        }
        printf("%8u %14.0f %12.0f %12.2f %14.1f\n", batches[i], (double)r.entries / r.elapsed,
               (double)r.syncs / r.elapsed,
               (double)r.entries * (double)o.value_size / r.elapsed / 1e6,
               r.elapsed / (double)r.syncs * 1e6);
        fflush(stdout);
        remove_dir(dir);
    }
    remove_dir(tmp);
    return status;
}
