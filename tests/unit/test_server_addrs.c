/* The address book file DIR/peers (server/addrs.h): round trip, a missing file, bad lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "common/err.h"
#include "server/addrs.h"
#include "tests/lib/proc.h"

struct fixture {
    char dir[256];
    char path[300];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char errmsg[RFS_ERRMSG_SIZE];
    assert_non_null(f);
    assert_int_equal(tmpdir_make("raftfs-addrs", f->dir, sizeof f->dir, errmsg), 0);
    snprintf(f->path, sizeof f->path, "%s/peers", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_round_trip_and_missing_file(void **state)
{
    struct fixture *f = *state;
    struct server_addrs a, b;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    struct stat st;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    assert_int_equal(server_addrs_load(&b, f->path, errmsg), 0); /* missing: nothing */
    assert_string_equal(b.addr[4], "");
    snprintf(a.addr[4], SERVER_ADDR_MAX, "10.0.0.14:7000");
    snprintf(a.addr[16], SERVER_ADDR_MAX, "host-16.example:7000");
    assert_int_equal(server_addrs_save(&a, f->path, errmsg), 0);
    snprintf(b.addr[1], SERVER_ADDR_MAX, "from-peers:1"); /* kept: the file adds to it */
    assert_int_equal(server_addrs_load(&b, f->path, errmsg), 0);
    assert_string_equal(b.addr[1], "from-peers:1");
    assert_string_equal(b.addr[4], "10.0.0.14:7000");
    assert_string_equal(b.addr[16], "host-16.example:7000");
    assert_string_equal(b.addr[2], "");
    {
        char tmp[320];
        snprintf(tmp, sizeof tmp, "%s.tmp", f->path);
        assert_int_not_equal(stat(tmp, &st), 0); /* renamed into place */
    }
}

static void test_bad_lines_are_refused_with_the_line(void **state)
{
    static const char *const bad[] = {"4\n",     "0 a:1\n", "17 a:1\n",
                                      "x a:1\n", "4 -\n",   "4 a:1 b:2\n"};
    struct fixture *f = *state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct server_addrs b;
        char errmsg[RFS_ERRMSG_SIZE] = "";
        char text[128];
        memset(&b, 0, sizeof b);
        snprintf(text, sizeof text, "# comment\n\n2 ok:2\n%s", bad[i]);
        write_file(f->path, text);
        assert_int_equal(server_addrs_load(&b, f->path, errmsg), RFS_ECORRUPT);
        assert_non_null(strstr(errmsg, "line 4"));
    }
}

static void test_address_validity(void **state)
{
    (void)state;
    assert_true(server_addr_valid("a:1", 3));
    assert_false(server_addr_valid("-", 1));
    assert_false(server_addr_valid("", 0));
    assert_false(server_addr_valid("a b", 3));
    assert_false(server_addr_valid("a,b", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_and_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lines_are_refused_with_the_line, setup, teardown),
        cmocka_unit_test(test_address_validity),
    };
    return cmocka_run_group_tests_name("server_addrs", tests, NULL, NULL);
}
