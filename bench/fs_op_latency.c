/* fs_op_latency: the latency of single metadata operations in one directory, one at a time.
 *
 *   fs_op_latency DIR [N]
 *
 * For each of N names (default 2000) in DIR: stat of a name that does not exist (a negative
 * lookup), open(O_CREAT | O_WRONLY) of a new file, close, stat of that file, unlink. Prints
 * p50 and p99 of each in ms. Through a raftfs mount a create is a negative lookup plus one
 * transaction, so this splits fio's create rate into its parts. With no arguments (as
 * `make bench` runs every bench binary) it prints a note and exits 0. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { OP_MISSING, OP_CREATE, OP_CLOSE, OP_STAT, OP_UNLINK, N_OPS };

static const char *const op_names[N_OPS] = {"stat (missing)", "open(O_CREAT)", "close", "stat",
                                            "unlink"};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;
    double *lat[N_OPS];
    char path[4096];
    struct stat st;
    if (argc < 2) {
        printf("fs_op_latency DIR [N]: per-operation latency of stat/create/close/unlink in "
               "DIR (nothing to do without a directory)\n");
        return 0;
    }
    if (n < 1 || n > 1000000) {
        fprintf(stderr, "fs_op_latency: N must be 1..1000000\n");
        return 2;
    }
    for (int op = 0; op < N_OPS; op++) {
        lat[op] = calloc((size_t)n, sizeof *lat[op]);
        if (lat[op] == NULL) {
            fprintf(stderr, "fs_op_latency: out of memory\n");
            return 1;
        }
    }
    for (long i = 0; i < n; i++) {
        double t0, t1;
        int fd;
        snprintf(path, sizeof path, "%s/lat-%ld", argv[1], i);
        t0 = now_ms();
        if (stat(path, &st) == 0 || errno != ENOENT) {
            fprintf(stderr, "fs_op_latency: %s exists or cannot be looked up\n", path);
            return 1;
        }
        t1 = now_ms();
        lat[OP_MISSING][i] = t1 - t0;
        fd = open(path, O_CREAT | O_WRONLY | O_EXCL, 0644);
        t0 = now_ms();
        if (fd < 0) {
            fprintf(stderr, "fs_op_latency: create %s: %s\n", path, strerror(errno));
            return 1;
        }
        lat[OP_CREATE][i] = t0 - t1;
        close(fd);
        t1 = now_ms();
        lat[OP_CLOSE][i] = t1 - t0;
        if (stat(path, &st) != 0) {
            fprintf(stderr, "fs_op_latency: stat %s: %s\n", path, strerror(errno));
            return 1;
        }
        t0 = now_ms();
        lat[OP_STAT][i] = t0 - t1;
        if (unlink(path) != 0) {
            fprintf(stderr, "fs_op_latency: unlink %s: %s\n", path, strerror(errno));
            return 1;
        }
        lat[OP_UNLINK][i] = now_ms() - t0;
    }
    printf("%ld names in %s, latency in ms\n", n, argv[1]);
    for (int op = 0; op < N_OPS; op++) {
        qsort(lat[op], (size_t)n, sizeof *lat[op], cmp_double);
        printf("%-15s p50 %.3f  p99 %.3f\n", op_names[op], lat[op][n / 2],
               lat[op][(size_t)((double)n * 0.99)]);
        free(lat[op]);
    }
    return 0;
}
