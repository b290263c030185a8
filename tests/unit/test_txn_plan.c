/* The pure parts of the transaction client: grouping a transaction's keys by group with the
 * primary's group first (kv/txn_plan.c), and the text form of a transaction that raftfs kv
 * txn reads (kv/txn_script.c). No servers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kv/client.h"
#include "kv/txn_client.h"

static bool key_is(const ProtobufCBinaryData *k, const char *s)
{
    return k->len == strlen(s) && memcmp(k->data, s, k->len) == 0;
}

static void test_primary_is_first_write_and_its_group_goes_first(void **state)
{
    struct kv_txn_read r[2] = {{"a", 1, 5}, {"b", 1, 6}};
    struct kv_txn_write w[2] = {{"c", 1, "x", 1, false}, {"d", 1, NULL, 0, true}};
    /* a: group 1, b: group 2, c: group 2 (the primary), d: group 3 */
    uint64_t gids[4] = {1, 2, 2, 3};
    struct kv_txn_plan p;
    (void)state;

    assert_int_equal(kv_txn_plan_init(&p, r, 2, w, 2, gids), 0);
    assert_true(key_is(&p.primary, "c"));
    assert_int_equal(p.n_parts, 3);
    assert_int_equal(p.parts[0].gid, 2);
    assert_true(p.parts[0].holds_primary);
    assert_false(p.parts[1].holds_primary);
    assert_false(p.parts[2].holds_primary);
    /* The primary's group: write c, read b; keys c then b. */
    assert_int_equal(p.parts[0].n_writes, 1);
    assert_true(key_is(&p.parts[0].writes[0]->key, "c"));
    assert_int_equal(p.parts[0].writes[0]->value.len, 1);
    assert_int_equal(p.parts[0].n_reads, 1);
    assert_true(key_is(&p.parts[0].reads[0]->key, "b"));
    assert_int_equal(p.parts[0].reads[0]->version, 6);
    assert_int_equal(p.parts[0].n_keys, 2);
    assert_true(key_is(&p.parts[0].keys[0], "c"));
    assert_true(key_is(&p.parts[0].keys[1], "b"));
    /* Then the others in key order (writes first): d's group 3, then a's group 1. */
    assert_int_equal(p.parts[1].gid, 3);
    assert_int_equal(p.parts[1].n_writes, 1);
    assert_true(p.parts[1].writes[0]->delete_);
    assert_int_equal(p.parts[1].n_reads, 0);
    assert_int_equal(p.parts[2].gid, 1);
    assert_int_equal(p.parts[2].n_reads, 1);
    assert_int_equal(p.parts[2].n_keys, 1);
    assert_ptr_equal(kv_txn_plan_part(&p, 1), &p.parts[2]);
    assert_null(kv_txn_plan_part(&p, 9));
    kv_txn_plan_close(&p);
}

static void test_read_only_primary_is_first_read(void **state)
{
    struct kv_txn_read r[3] = {{"a", 1, 1}, {"b", 1, 0}, {"c", 1, 3}};
    uint64_t gids[3] = {7, 8, 7};
    struct kv_txn_plan p;
    (void)state;

    assert_int_equal(kv_txn_plan_init(&p, r, 3, NULL, 0, gids), 0);
    assert_true(key_is(&p.primary, "a"));
    assert_int_equal(p.n_parts, 2);
    assert_int_equal(p.parts[0].gid, 7);
    assert_int_equal(p.parts[0].n_reads, 2);
    assert_int_equal(p.parts[0].n_writes, 0);
    assert_int_equal(p.parts[1].gid, 8);
    assert_int_equal(p.parts[1].reads[0]->version, 0);
    kv_txn_plan_close(&p);
}

/* A key read and written (read-modify-write) is locked once: it is listed once. */
static void test_key_read_and_written_is_listed_once(void **state)
{
    struct kv_txn_read r[2] = {{"acct1", 5, 10}, {"acct2", 5, 11}};
    struct kv_txn_write w[2] = {{"acct1", 5, "90", 2, false}, {"acct2", 5, "110", 3, false}};
    uint64_t gids[4] = {1, 1, 1, 1};
    struct kv_txn_plan p;
    (void)state;

    assert_int_equal(kv_txn_plan_init(&p, r, 2, w, 2, gids), 0);
    assert_int_equal(p.n_parts, 1);
    assert_int_equal(p.parts[0].n_reads, 2);
    assert_int_equal(p.parts[0].n_writes, 2);
    assert_int_equal(p.parts[0].n_keys, 2);
    assert_true(key_is(&p.parts[0].keys[0], "acct1"));
    assert_true(key_is(&p.parts[0].keys[1], "acct2"));
    kv_txn_plan_close(&p);
}

static void test_empty_plan_is_refused_and_close_is_safe(void **state)
{
    struct kv_txn_plan p;
    (void)state;
    assert_int_equal(kv_txn_plan_init(&p, NULL, 0, NULL, 0, NULL), RFS_EINVAL);
    kv_txn_plan_close(&p);
    kv_txn_plan_close(&p);
}

static void test_script_parses_checks_puts_and_deletes(void **state)
{
    static const char text[] = "# move 10 from a to b\n"
                               "check a 12\n"
                               "  check {t}b   0\n"
                               "\n"
                               "put a 90\n"
                               "put {t}b two words  \r\n"
                               "put empty \n"
                               "del gone\n";
    struct kv_txn_script s;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    (void)state;

    assert_int_equal(kv_txn_script_parse(&s, text, strlen(text), errmsg), 0);
    assert_int_equal(s.n_reads, 2);
    assert_string_equal(s.reads[0].key, "a");
    assert_int_equal(s.reads[0].version, 12);
    assert_int_equal(s.reads[1].klen, 4);
    assert_memory_equal(s.reads[1].key, "{t}b", 4);
    assert_int_equal(s.reads[1].version, 0);
    assert_int_equal(s.n_writes, 4);
    assert_memory_equal(s.writes[0].value, "90", 2);
    assert_int_equal(s.writes[0].vlen, 2);
    assert_false(s.writes[0].del);
    /* The value is the rest of the line after one separator (a CR of CRLF dropped). */
    assert_int_equal(s.writes[1].vlen, strlen("two words  "));
    assert_memory_equal(s.writes[1].value, "two words  ", s.writes[1].vlen);
    assert_int_equal(s.writes[2].vlen, 0);
    assert_string_equal(s.writes[3].key, "gone");
    assert_true(s.writes[3].del);
    kv_txn_script_clear(&s);
}

static void expect_refused(const char *text, const char *why)
{
    struct kv_txn_script s;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    assert_int_equal(kv_txn_script_parse(&s, text, strlen(text), errmsg), RFS_EINVAL);
    if (strstr(errmsg, why) == NULL) {
        fail_msg("'%s': expected '%s' in '%s'", text, why, errmsg);
    }
    kv_txn_script_clear(&s);
}

static void test_script_refuses_bad_lines_naming_them(void **state)
{
    (void)state;
    expect_refused("check a\n", "line 1: expected 'check KEY VERSION'");
    expect_refused("\ncheck a 1 2\n", "line 2: expected");
    expect_refused("check a -1\n", "line 1: VERSION must be a number");
    expect_refused("check a 12x\n", "VERSION must be a number");
    expect_refused("check a 99999999999999999999999\n", "VERSION must be a number");
    expect_refused("del\n", "expected 'del KEY'");
    expect_refused("del a b\n", "expected 'del KEY'");
    expect_refused("put\n", "put needs KEY VALUE");
    expect_refused("get a\n", "unknown command 'get'");
}

static void test_script_of_comments_only_is_empty(void **state)
{
    static const char text[] = "# nothing\n\n   \n#put a b\n";
    struct kv_txn_script s;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    (void)state;
    assert_int_equal(kv_txn_script_parse(&s, text, strlen(text), errmsg), 0);
    assert_int_equal(s.n_reads + s.n_writes, 0);
    kv_txn_script_clear(&s);
    /* No trailing newline: the last line counts. */
    assert_int_equal(kv_txn_script_parse(&s, "del x", 5, errmsg), 0);
    assert_int_equal(s.n_writes, 1);
    kv_txn_script_clear(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary_is_first_write_and_its_group_goes_first),
        cmocka_unit_test(test_read_only_primary_is_first_read),
        cmocka_unit_test(test_key_read_and_written_is_listed_once),
        cmocka_unit_test(test_empty_plan_is_refused_and_close_is_safe),
        cmocka_unit_test(test_script_parses_checks_puts_and_deletes),
        cmocka_unit_test(test_script_refuses_bad_lines_naming_them),
        cmocka_unit_test(test_script_of_comments_only_is_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
