/* Tests of common/config.h, the configuration file of every binary (docs/config.md): a good
 * file becomes "--key=value" arguments placed before the command line's, so the command line
 * overrides it; comments and blank lines are skipped; an unknown key, a line without '=', an
 * empty value, a key given twice or a value of the wrong kind is refused with the file and
 * line in the message; allocation failures are reported and leak nothing. The last tests run
 * the real raftfs-shard with --config: a value its own parser refuses names the file line,
 * and a server configured by file starts, with a command-line flag overriding the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/config.h"
#include "common/err.h"
#include "tests/lib/proc.h"

static const struct rfs_config_key keys[] = {
    {"id", RFS_CONFIG_UINT, NULL},
    {"peers", RFS_CONFIG_STRING, NULL},
    {"data", RFS_CONFIG_STRING, NULL},
    {"metrics", RFS_CONFIG_STRING, NULL},
    {"cache-timeout", RFS_CONFIG_NUMBER, NULL},
    {"options", RFS_CONFIG_STRING, "-o"},
    {"foreground", RFS_CONFIG_BOOL, "-f"},
    {"verbose", RFS_CONFIG_BOOL, NULL},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

struct fixture {
    char dir[256];
    char path[300];
    char errmsg[RFS_ERRMSG_SIZE];
    struct rfs_config_args args;
    pid_t pid;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char errmsg[RFS_ERRMSG_SIZE];
    assert_non_null(f);
    assert_int_equal(tmpdir_make("raftfs-config", f->dir, sizeof f->dir, errmsg), 0);
    snprintf(f->path, sizeof f->path, "%s/raftfs.conf", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    rfs_alloc_fail_after(0, 0);
    if (f->pid > 0) {
        proc_stop(f->pid, 5000);
    }
    rfs_config_args_close(&f->args);
    tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static void write_file(const struct fixture *f, const char *text)
{
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* Build the arguments of `prog --config PATH <rest...>`. */
static int build(struct fixture *f, int n_rest, const char *const *rest)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = "prog";
    argv[argc++] = "--config";
    argv[argc++] = f->path;
    for (int i = 0; i < n_rest; i++) {
        argv[argc++] = (char *)rest[i];
    }
    argv[argc] = NULL;
    f->errmsg[0] = '\0';
    return rfs_config_args_init(&f->args, argc, argv, keys, N_KEYS, f->errmsg);
}

static void expect_refused(struct fixture *f, const char *text, const char *message)
{
    char want[400];
    write_file(f, text);
    assert_int_equal(build(f, 0, NULL), RFS_EINVAL);
    snprintf(want, sizeof want, "%s:%s", f->path, message);
    if (strcmp(f->errmsg, want) != 0) {
        fail_msg("message '%s', expected '%s'", f->errmsg, want);
    }
    assert_int_equal(f->args.argc, 0); /* nothing left to free */
}

static void test_good_file_becomes_arguments_before_the_command_line(void **state)
{
    struct fixture *f = *state;
    const char *rest[] = {"--id", "2", "extra"};
    char origin[320];
    write_file(f, "# a shard server\n"
                  "\n"
                  "peers = 127.0.0.1:7001,127.0.0.1:7002   # the group\n"
                  "   data=/var/lib/raftfs/g1-0\r\n"
                  "metrics = 0.0.0.0:9101\n"
                  "\t# indented comment\n"
                  "cache-timeout = 0.5\n"
                  "options = allow_other,ro\n"
                  "foreground = yes\n"
                  "verbose = off\n"
                  "id = 1"); /* no newline at the end */
    assert_int_equal(build(f, 3, rest), 0);
    {
        const char *want[] = {"prog",
                              "--peers=127.0.0.1:7001,127.0.0.1:7002",
                              "--data=/var/lib/raftfs/g1-0",
                              "--metrics=0.0.0.0:9101",
                              "--cache-timeout=0.5",
                              "-o",
                              "allow_other,ro",
                              "-f",
                              "--id=1",
                              "--id",
                              "2",
                              "extra"};
        const int lines[] = {0, 3, 4, 5, 7, 8, 8, 9, 11, 0, 0, 0};
        assert_int_equal(f->args.argc, (int)(sizeof want / sizeof want[0]));
        assert_int_equal(f->args.n_from_file, 7);
        for (int i = 0; i < f->args.argc; i++) {
            assert_string_equal(f->args.argv[i], want[i]);
            if (lines[i] == 0) {
                assert_null(rfs_config_args_origin(&f->args, i));
            } else {
                snprintf(origin, sizeof origin, "%s:%d", f->path, lines[i]);
                assert_string_equal(rfs_config_args_origin(&f->args, i), origin);
            }
        }
        assert_null(f->args.argv[f->args.argc]);
        assert_null(rfs_config_args_origin(&f->args, f->args.argc));
        assert_null(rfs_config_args_origin(&f->args, -1));
    }
}

/* getopt_long keeps the last value of an option: the command line's, which come last. */
static void test_command_line_overrides_the_file(void **state)
{
    struct fixture *f = *state;
    const char *rest[] = {"--data", "/from/the/command/line"};
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},
        {"peers", required_argument, NULL, 'p'},
        {"data", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    const char *data = NULL, *peers = NULL, *id = NULL;
    int c;
    write_file(f, "data = /from/the/file\npeers = a:1,b:2\n");
    assert_int_equal(build(f, 2, rest), 0);
    optind = 1;
    while ((c = getopt_long(f->args.argc, f->args.argv, "", opts, NULL)) != -1) {
        if (c == 'd') {
            data = optarg;
        } else if (c == 'p') {
            peers = optarg;
        } else if (c == 'i') {
            id = optarg;
        }
    }
    assert_string_equal(data, "/from/the/command/line");
    assert_string_equal(peers, "a:1,b:2");
    assert_null(id);
}

static void test_without_config_the_arguments_are_copied(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"prog", "--id", "3", "--", "--config", NULL};
    assert_int_equal(rfs_config_args_init(&f->args, 5, argv, keys, N_KEYS, f->errmsg), 0);
    assert_int_equal(f->args.argc, 5);
    assert_int_equal(f->args.n_from_file, 0);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(f->args.argv[i], argv[i]);
        assert_null(rfs_config_args_origin(&f->args, i));
    }
}

static void test_config_equals_form_and_position(void **state)
{
    struct fixture *f = *state;
    char arg[320];
    char *argv[] = {"prog", "--id", "3", arg, NULL};
    snprintf(arg, sizeof arg, "--config=%s", f->path);
    write_file(f, "peers = x:1\n");
    assert_int_equal(rfs_config_args_init(&f->args, 4, argv, keys, N_KEYS, f->errmsg), 0);
    assert_int_equal(f->args.argc, 4);
    assert_string_equal(f->args.argv[1], "--peers=x:1");
    assert_string_equal(f->args.argv[2], "--id");
    assert_string_equal(f->args.argv[3], "3");
}

static void test_unknown_key_names_the_file_and_line(void **state)
{
    expect_refused(*state, "# comment\npeers = a:1\nnodes = 3\n", "3: unknown key 'nodes'");
}

static void test_line_without_equals_names_the_file_and_line(void **state)
{
    expect_refused(*state, "\n\npeers a:1\n", "3: expected 'key = value'");
}

static void test_bad_values_name_the_file_and_line(void **state)
{
    struct fixture *f = *state;
    expect_refused(f, "peers = a:1\nid = two\n", "2: id: 'two' is not a whole number");
    expect_refused(f, "id = -1\n", "1: id: '-1' is not a whole number");
    expect_refused(f, "id = 99999999999999999999999\n",
                   "1: id: '99999999999999999999999' is not a whole number");
    expect_refused(f, "cache-timeout = -0.5\n",
                   "1: cache-timeout: '-0.5' is not a number of 0 or more");
    expect_refused(f, "cache-timeout = 1s\n",
                   "1: cache-timeout: '1s' is not a number of 0 or more");
    expect_refused(f, "foreground = maybe\n", "1: foreground: 'maybe' is not true or false");
    expect_refused(f, "data =   # nothing\n", "1: data: no value");
    expect_refused(f, " = x\n", "1: no key before '='");
    expect_refused(f, "data = /a\ndata = /b\n", "2: data is already set on line 1");
}

static void test_missing_file_and_bad_config_flags(void **state)
{
    struct fixture *f = *state;
    char *twice[] = {"prog", "--config", "a", "--config=b", NULL};
    char *bare[] = {"prog", "--config", NULL};
    char *empty[] = {"prog", "--config=", NULL};
    assert_int_equal(build(f, 0, NULL), RFS_EIO); /* not written */
    assert_non_null(strstr(f->errmsg, f->path));
    assert_int_equal(rfs_config_args_init(&f->args, 4, twice, keys, N_KEYS, f->errmsg), RFS_EINVAL);
    assert_string_equal(f->errmsg, "--config is given twice");
    assert_int_equal(rfs_config_args_init(&f->args, 2, bare, keys, N_KEYS, f->errmsg), RFS_EINVAL);
    assert_string_equal(f->errmsg, "--config needs a file name");
    assert_int_equal(rfs_config_args_init(&f->args, 2, empty, keys, N_KEYS, f->errmsg), RFS_EINVAL);
}

static void test_binary_and_oversized_files_are_refused(void **state)
{
    struct fixture *f = *state;
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fwrite("peers = a\0b\n", 1, 12, fp);
    fclose(fp);
    assert_int_equal(build(f, 0, NULL), RFS_EINVAL);
    assert_non_null(strstr(f->errmsg, ":1: a NUL byte"));
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    for (unsigned i = 0; i <= RFS_CONFIG_MAX_BYTES / 64; i++) {
        fprintf(fp, "# %61u\n", i);
    }
    fclose(fp);
    assert_int_equal(build(f, 0, NULL), RFS_ETOOBIG);
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    fprintf(fp, "\npeers = ");
    for (unsigned i = 0; i < RFS_CONFIG_MAX_LINE; i++) {
        fputc('x', fp);
    }
    fclose(fp);
    assert_int_equal(build(f, 0, NULL), RFS_EINVAL);
    assert_non_null(strstr(f->errmsg, ":2: line longer than"));
}

static int stop_at_data(void *data, const struct rfs_config_key *key, const char *value,
                        unsigned line, char *errmsg)
{
    unsigned *seen = data;
    (void)value;
    (*seen)++;
    if (strcmp(key->name, "data") == 0) {
        snprintf(errmsg, RFS_ERRMSG_SIZE, "no data here (line %u)", line);
        return RFS_EBUSY;
    }
    return 0;
}

static void test_callback_refusal_names_the_line(void **state)
{
    struct fixture *f = *state;
    const char text[] = "peers = a\n\ndata = /x\nid = 1\n";
    unsigned seen = 0;
    assert_int_equal(rfs_config_parse("mem.conf", text, sizeof text - 1, keys, N_KEYS, stop_at_data,
                                      &seen, f->errmsg),
                     RFS_EBUSY);
    assert_int_equal(seen, 2);
    assert_string_equal(f->errmsg, "mem.conf:3: no data here (line 3)");
}

/* Fail each allocation in turn: the call reports RFS_ENOMEM and leaks nothing (ASan). */
static void test_allocation_failures_are_reported(void **state)
{
    struct fixture *f = *state;
    const char *rest[] = {"--id", "2"};
    int ok = 0;
    write_file(f, "peers = a:1\ndata = /d\nmetrics = 127.0.0.1:0\n");
    for (unsigned long n = 1; n < 200 && !ok; n++) {
        int rv;
        rfs_alloc_fail_after(n, 0);
        rv = build(f, 2, rest);
        rfs_alloc_fail_after(0, 0);
        if (rv == 0) {
            ok = 1;
            assert_int_equal(f->args.argc, 6);
        } else {
            assert_int_equal(rv, RFS_ENOMEM);
            assert_int_equal(f->args.argc, 0);
        }
        rfs_config_args_close(&f->args);
    }
    assert_true(ok);
}

/* ---- the real server ---- */

static void bin_path(const char *prog, char *out, size_t cap)
{
    const char *dir = getenv("RAFTFS_BIN_DIR");
    snprintf(out, cap, "%s/%s", dir != NULL && dir[0] ? dir : "build/asan/bin", prog);
}

/* Run raftfs-shard --config PATH extra... to its end (bounded); return its exit status and
 * its output in out. */
static int run_shard(struct fixture *f, const char *extra, char *out, size_t cap)
{
    char bin[300], logp[320];
    char *argv[8];
    int argc = 0, status;
    FILE *fp;
    size_t n;
    bin_path("raftfs-shard", bin, sizeof bin);
    snprintf(logp, sizeof logp, "%s/out.log", f->dir);
    unlink(logp);
    argv[argc++] = bin;
    argv[argc++] = "--config";
    argv[argc++] = f->path;
    if (extra != NULL) {
        argv[argc++] = (char *)extra;
    }
    argv[argc] = NULL;
    assert_int_equal(proc_spawn(argv, logp, &f->pid, f->errmsg), 0);
    status = proc_wait(f->pid, 10000);
    assert_true(status >= 0);
    f->pid = 0;
    fp = fopen(logp, "r");
    assert_non_null(fp);
    n = fread(out, 1, cap - 1, fp);
    out[n] = '\0';
    fclose(fp);
    return status;
}

static bool server_skip(void)
{
    char bin[300];
    bin_path("raftfs-shard", bin, sizeof bin);
    if (access(bin, X_OK) != 0) {
        printf("SKIPPED: %s not built\n", bin);
        return true;
    }
    return false;
}

static void test_server_names_the_line_of_a_value_it_refuses(void **state)
{
    struct fixture *f = *state;
    char out[4096], file[400], want[400];
    if (server_skip()) {
        skip();
    }
    snprintf(file, sizeof file, "id = 0\npeers = 127.0.0.1:1\ndata = %s/d\ntick-ms = 0\n", f->dir);
    write_file(f, file);
    assert_int_equal(run_shard(f, NULL, out, sizeof out), 2);
    snprintf(want, sizeof want, "raftfs-shard: %s:4: --tick-ms needs", f->path);
    if (strstr(out, want) == NULL) {
        fail_msg("output '%s' lacks '%s'", out, want);
    }
    write_file(f, "id = 0\nmetrics = 127.0.0.1:http\n");
    assert_int_equal(run_shard(f, NULL, out, sizeof out), 2);
    snprintf(want, sizeof want, "raftfs-shard: %s:2: --metrics needs HOST:PORT", f->path);
    if (strstr(out, want) == NULL) {
        fail_msg("output '%s' lacks '%s'", out, want);
    }
    write_file(f, "id = 0\n\nmove-chunks = 5\n");
    assert_int_equal(run_shard(f, NULL, out, sizeof out), 2);
    snprintf(want, sizeof want, "raftfs-shard: %s:3: unknown key 'move-chunks'", f->path);
    if (strstr(out, want) == NULL) {
        fail_msg("output '%s' lacks '%s'", out, want);
    }
}

static bool log_has_metrics_line(void *arg)
{
    const char *logp = arg;
    char buf[8192];
    FILE *fp = fopen(logp, "r");
    size_t n;
    if (fp == NULL) {
        return false;
    }
    n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return strstr(buf, "metrics at http://127.0.0.1:") != NULL;
}

/* A server configured by file alone starts; --log-level on the command line overrides the
 * file's "error" (the INFO line saying where the metrics are would not appear otherwise). */
static void test_server_starts_from_a_file_and_the_command_line_overrides_it(void **state)
{
    struct fixture *f = *state;
    char file[600], bin[300], logp[320];
    char *argv[6];
    int port = free_port();
    if (server_skip()) {
        skip();
    }
    assert_true(port > 0);
    snprintf(file, sizeof file,
             "# one-server group\nid = 0\npeers = 127.0.0.1:%d\ndata = %s/d\n"
             "metrics = 127.0.0.1:0\nlog-level = error\ntick-ms = 10\n",
             port, f->dir);
    write_file(f, file);
    bin_path("raftfs-shard", bin, sizeof bin);
    snprintf(logp, sizeof logp, "%s/server.log", f->dir);
    argv[0] = bin;
    argv[1] = "--config";
    argv[2] = f->path;
    argv[3] = "--log-level";
    argv[4] = "info";
    argv[5] = NULL;
    assert_int_equal(proc_spawn(argv, logp, &f->pid, f->errmsg), 0);
    if (!wait_until(log_has_metrics_line, logp, 10000)) {
        fail_msg("no 'metrics at' line in %s", logp);
    }
    assert_true(proc_alive(f->pid));
    assert_int_equal(proc_stop(f->pid, 10000), 0);
    f->pid = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_good_file_becomes_arguments_before_the_command_line),
        T(test_command_line_overrides_the_file),
        T(test_without_config_the_arguments_are_copied),
        T(test_config_equals_form_and_position),
        T(test_unknown_key_names_the_file_and_line),
        T(test_line_without_equals_names_the_file_and_line),
        T(test_bad_values_name_the_file_and_line),
        T(test_missing_file_and_bad_config_flags),
        T(test_binary_and_oversized_files_are_refused),
        T(test_callback_refusal_names_the_line),
        T(test_allocation_failures_are_reported),
        T(test_server_names_the_line_of_a_value_it_refuses),
        T(test_server_starts_from_a_file_and_the_command_line_overrides_it),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
