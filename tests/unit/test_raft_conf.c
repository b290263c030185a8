/* The encoding of membership changes: the fixed 9 bytes, then an optional context. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "raft/raft.h"

static void test_change_with_context_round_trips(void **state)
{
    const char *addr = "10.0.0.4:7004";
    struct raft_conf_change cc = {.type = RAFT_CC_ADD_LEARNER, .node = 4};
    struct raft_conf_change out;
    uint8_t buf[RAFT_CONF_CHANGE_SIZE + RAFT_CONF_CONTEXT_MAX];
    (void)state;
    cc.context = addr;
    cc.context_len = strlen(addr);
    assert_int_equal(raft_conf_change_size(&cc), 9 + strlen(addr));
    raft_conf_change_encode(&cc, buf);
    assert_int_equal(buf[0], RAFT_CC_ADD_LEARNER);
    assert_int_equal(buf[1], 4);
    assert_memory_equal(buf + 9, addr, strlen(addr));
    memset(&out, 0xff, sizeof out);
    assert_int_equal(raft_conf_change_decode(buf, raft_conf_change_size(&cc), &out), 0);
    assert_int_equal(out.type, RAFT_CC_ADD_LEARNER);
    assert_int_equal(out.node, 4);
    assert_int_equal(out.context_len, strlen(addr));
    assert_ptr_equal(out.context, buf + 9); /* points into the data */
}

static void test_old_nine_byte_entry_has_no_context(void **state)
{
    struct raft_conf_change cc = {.type = RAFT_CC_REMOVE, .node = 3};
    struct raft_conf_change out;
    uint8_t buf[RAFT_CONF_CHANGE_SIZE];
    (void)state;
    assert_int_equal(raft_conf_change_size(&cc), RAFT_CONF_CHANGE_SIZE);
    raft_conf_change_encode(&cc, buf);
    memset(&out, 0xff, sizeof out);
    assert_int_equal(raft_conf_change_decode(buf, sizeof buf, &out), 0);
    assert_int_equal(out.type, RAFT_CC_REMOVE);
    assert_int_equal(out.node, 3);
    assert_int_equal(out.context_len, 0);
    assert_null(out.context);
}

static void test_bad_encodings_are_refused(void **state)
{
    uint8_t buf[RAFT_CONF_CHANGE_SIZE + RAFT_CONF_CONTEXT_MAX + 1];
    struct raft_conf_change cc = {.type = RAFT_CC_ADD_VOTER, .node = 2};
    struct raft_conf_change out;
    (void)state;
    memset(buf, 'x', sizeof buf);
    raft_conf_change_encode(&cc, buf);
    /* Too short, a context one byte over the maximum, the maximum itself. */
    assert_int_equal(raft_conf_change_decode(buf, 8, &out), RFS_EINVAL);
    assert_int_equal(raft_conf_change_decode(buf, sizeof buf, &out), RFS_EINVAL);
    assert_int_equal(raft_conf_change_decode(buf, sizeof buf - 1, &out), 0);
    assert_int_equal(out.context_len, RAFT_CONF_CONTEXT_MAX);
    /* Unknown type, node 0. */
    buf[0] = 9;
    assert_int_equal(raft_conf_change_decode(buf, 9, &out), RFS_EINVAL);
    buf[0] = RAFT_CC_ADD_VOTER;
    memset(buf + 1, 0, 8);
    assert_int_equal(raft_conf_change_decode(buf, 9, &out), RFS_EINVAL);
}

static void test_context_does_not_change_what_a_change_does(void **state)
{
    struct raft_conf c = {.n_voters = 3, .voters = {1, 2, 3}};
    struct raft_conf_change add = {.type = RAFT_CC_ADD_LEARNER, .node = 4, .context = "a:1"};
    struct raft_conf_change promote = {.type = RAFT_CC_ADD_VOTER, .node = 4};
    struct raft_conf_change remove = {.type = RAFT_CC_REMOVE, .node = 3};
    (void)state;
    add.context_len = 3;
    assert_int_equal(raft_conf_apply(&c, &add), 0);
    assert_true(raft_conf_is_learner(&c, 4));
    assert_int_equal(raft_conf_apply(&c, &promote), 0);
    assert_int_equal(raft_conf_apply(&c, &remove), 0);
    assert_int_equal(c.n_voters, 3);
    assert_true(raft_conf_is_voter(&c, 4));
    assert_false(raft_conf_is_voter(&c, 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_change_with_context_round_trips),
        cmocka_unit_test(test_old_nine_byte_entry_has_no_context),
        cmocka_unit_test(test_bad_encodings_are_refused),
        cmocka_unit_test(test_context_does_not_change_what_a_change_does),
    };
    return cmocka_run_group_tests_name("raft_conf", tests, NULL, NULL);
}
