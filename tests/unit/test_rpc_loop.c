/* Tests of the rpc event loop (rpc/rpc.h): timer order, repeat and stop, posts and stop
 * from another thread, before_sleep, and freeing a loop with work still pending. Every run
 * is bounded by a safety timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "rpc/rpc.h"

#define TRACE_MAX 64

struct fixture {
    struct rpc_loop *loop;
    struct rpc_timer *safety;
    bool timed_out;
    int trace[TRACE_MAX]; /* timer tags in firing order */
    int n_trace;
    int count;
    int before_sleeps;
    int errors; /* failed checks inside callbacks (asserting there would leave the loop) */
    struct rpc_timer *victim;
};

#define CHECK(f, cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            (f)->errors++;                                                                         \
        }                                                                                          \
    } while (0)

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char errmsg[RFS_ERRMSG_SIZE];
    assert_non_null(f);
    assert_int_equal(rpc_loop_new(&f->loop, errmsg), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    rpc_loop_free(f->loop);
    free(f);
    return 0;
}

static void safety_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    (void)t;
    f->timed_out = true;
    f->safety = NULL;
    rpc_loop_stop(f->loop);
}

/* Run the loop until something calls rpc_loop_stop(), or at most ms. */
static void run_bounded(struct fixture *f, uint64_t ms)
{
    f->timed_out = false;
    assert_int_equal(rpc_timer_start(f->loop, ms, 0, safety_cb, f, &f->safety), 0);
    assert_int_equal(rpc_loop_run(f->loop), 0);
    if (f->safety != NULL) {
        rpc_timer_stop(f->safety);
        f->safety = NULL;
    }
}

/* A timer tag: which timer fired, and whether it ends the run. */
struct tag {
    struct fixture *f;
    int id;
    bool last;
};

static void trace_cb(struct rpc_timer *t, void *data)
{
    struct tag *tag = data;
    struct fixture *f = tag->f;
    (void)t;
    if (f->n_trace < TRACE_MAX) {
        f->trace[f->n_trace++] = tag->id;
    }
    if (tag->last) {
        rpc_loop_stop(f->loop);
    }
}

static void test_timers_fire_in_deadline_order_then_start_order(void **state)
{
    struct fixture *f = *state;
    struct tag tags[] = {
        {f, 30, true}, {f, 10, false}, {f, 20, false}, {f, 151, false}, {f, 152, false},
    };
    uint64_t after[] = {30, 10, 20, 15, 15};
    uint64_t start = rpc_now_ms();

    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        assert_int_equal(rpc_timer_start(f->loop, after[i], 0, trace_cb, &tags[i], NULL), 0);
    }
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->n_trace, 5);
    int want[] = {10, 151, 152, 20, 30};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(f->trace[i], want[i]);
    }
    assert_true(rpc_now_ms() - start >= 30);
}

static void repeat_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    f->count++;
    if (f->count == 5) {
        rpc_timer_stop(t); /* from its own callback */
    }
    CHECK(f, f->count <= 5);
}

static void stop_loop_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    (void)t;
    rpc_loop_stop(f->loop);
}

static void test_repeating_timer_stops_itself_from_its_callback(void **state)
{
    struct fixture *f = *state;
    uint64_t start = rpc_now_ms();

    assert_int_equal(rpc_timer_start(f->loop, 1, 2, repeat_cb, f, NULL), 0);
    /* Long enough for many more repeats had the stop not worked. */
    assert_int_equal(rpc_timer_start(f->loop, 60, 0, stop_loop_cb, f, NULL), 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->count, 5);
    assert_int_equal(f->errors, 0);
    assert_true(rpc_now_ms() - start >= 60);
}

static void one_shot_stop_self_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    f->count++;
    rpc_timer_stop(t); /* allowed for a one-shot timer too: no double free */
    rpc_loop_stop(f->loop);
}

static void test_one_shot_timer_may_stop_itself(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(rpc_timer_start(f->loop, 0, 0, one_shot_stop_self_cb, f, NULL), 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->count, 1);
}

static void killer_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    (void)t;
    rpc_timer_stop(f->victim);
    f->victim = NULL;
}

static void victim_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    (void)t;
    f->count++;
}

static void test_timer_stopped_by_another_never_fires(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(rpc_timer_start(f->loop, 20, 5, victim_cb, f, &f->victim), 0);
    assert_int_equal(rpc_timer_start(f->loop, 5, 0, killer_cb, f, NULL), 0);
    assert_int_equal(rpc_timer_start(f->loop, 50, 0, stop_loop_cb, f, NULL), 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_null(f->victim);
    assert_int_equal(f->count, 0);
}

static void rearm_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    (void)t;
    if (++f->count == 1000) {
        rpc_loop_stop(f->loop);
        return;
    }
    CHECK(f, rpc_timer_start(f->loop, 0, 0, rearm_cb, f, NULL) == 0);
}

static void count_before_sleep(void *data)
{
    struct fixture *f = data;
    f->before_sleeps++;
}

static void test_zero_delay_timer_rearmed_from_callback_waits_for_next_iteration(void **state)
{
    struct fixture *f = *state;

    rpc_loop_set_before_sleep(f->loop, count_before_sleep, f);
    assert_int_equal(rpc_timer_start(f->loop, 0, 0, rearm_cb, f, NULL), 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->errors, 0);
    assert_int_equal(f->count, 1000);
    /* One timer generation per iteration: the loop went around (and slept) between them. */
    assert_true(f->before_sleeps >= 1000);
}

struct poster {
    struct fixture *f;
    int n;
};

static void post_count_cb(void *data)
{
    struct fixture *f = data;
    f->count++;
}

static void post_last_cb(void *data)
{
    struct fixture *f = data;
    rpc_loop_stop(f->loop);
}

static void *poster_main(void *arg)
{
    struct poster *p = arg;
    for (int i = 0; i < p->n; i++) {
        while (rpc_loop_post(p->f->loop, post_count_cb, p->f) != 0) {
        }
    }
    while (rpc_loop_post(p->f->loop, post_last_cb, p->f) != 0) {
    }
    return NULL;
}

static void test_post_from_another_thread_runs_every_callback_in_order(void **state)
{
    struct fixture *f = *state;
    struct poster p = {f, 5000};
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, poster_main, &p), 0);
    run_bounded(f, 10000);
    pthread_join(th, NULL);

    assert_false(f->timed_out);
    /* The stopping callback was posted last, so every count ran before it. */
    assert_int_equal(f->count, 5000);
}

static void *stopper_main(void *arg)
{
    struct fixture *f = arg;
    rpc_loop_stop(f->loop);
    return NULL;
}

static void test_stop_from_another_thread_ends_run(void **state)
{
    struct fixture *f = *state;
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, stopper_main, f), 0);
    run_bounded(f, 10000);
    pthread_join(th, NULL);

    assert_false(f->timed_out);
}

static void mark_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    (void)t;
    f->count = 1;
}

static void check_after_timer_before_sleep(void *data)
{
    struct fixture *f = data;
    f->before_sleeps++;
    if (f->count == 1) {
        rpc_loop_stop(f->loop);
    }
}

static void test_before_sleep_runs_after_the_timers_of_its_iteration(void **state)
{
    struct fixture *f = *state;

    rpc_loop_set_before_sleep(f->loop, check_after_timer_before_sleep, f);
    assert_int_equal(rpc_timer_start(f->loop, 10, 0, mark_cb, f, NULL), 0);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->count, 1);
    assert_true(f->before_sleeps >= 1);
}

static void test_stop_before_run_returns_after_one_iteration(void **state)
{
    struct fixture *f = *state;

    rpc_loop_set_before_sleep(f->loop, count_before_sleep, f);
    rpc_loop_stop(f->loop);
    run_bounded(f, 5000);

    assert_false(f->timed_out);
    assert_int_equal(f->before_sleeps, 1);
}

static void never_cb(struct rpc_timer *t, void *data)
{
    struct fixture *f = data;
    (void)t;
    f->count++;
}

static void never_post_cb(void *data)
{
    struct fixture *f = data;
    f->count++;
}

static void test_free_releases_pending_timers_and_posts(void **state)
{
    struct fixture *f = *state;

    for (int i = 0; i < 100; i++) {
        assert_int_equal(
            rpc_timer_start(f->loop, 1000 + (uint64_t)i, (uint64_t)i % 3, never_cb, f, NULL), 0);
        assert_int_equal(rpc_loop_post(f->loop, never_post_cb, f), 0);
    }
    rpc_loop_free(f->loop); /* LeakSanitizer checks that nothing is left */
    f->loop = NULL;
    assert_int_equal(f->count, 0);
}

static void test_now_is_monotonic_milliseconds(void **state)
{
    (void)state;
    uint64_t a = rpc_now_ms();
    uint64_t b = rpc_now_ms();
    assert_true(b >= a);
    assert_true(a > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_timers_fire_in_deadline_order_then_start_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_repeating_timer_stops_itself_from_its_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_one_shot_timer_may_stop_itself, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_stopped_by_another_never_fires, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_zero_delay_timer_rearmed_from_callback_waits_for_next_iteration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_from_another_thread_runs_every_callback_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_from_another_thread_ends_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_before_sleep_runs_after_the_timers_of_its_iteration,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_before_run_returns_after_one_iteration, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_releases_pending_timers_and_posts, setup,
                                        teardown),
        cmocka_unit_test(test_now_is_monotonic_milliseconds),
    };
    rfs_log_set_level(RFS_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
