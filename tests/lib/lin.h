/* A linearizability checker for histories of key-value operations recorded by tests.
 *
 * The model is a map from byte-string keys to registers that start absent. Operations on
 * different keys are independent, so the history is split by key and each key is checked
 * on its own (linearizability is compositional). Each key is searched as Wing & Gong
 * describe, with Lowe's memoization of (set of linearized operations, register state), as
 * porcupine does.
 *
 * Operations and the outputs they must have for the model to accept them:
 *   LIN_GET      out = LIN_OUT_VALUE (with the bytes read) or LIN_OUT_ABSENT
 *   LIN_PUT      value := arg;                      out = LIN_OUT_OK
 *   LIN_APPEND   value := old value (or "") + arg;  out = LIN_OUT_OK
 *   LIN_DELETE   value := absent;                   out = LIN_OUT_OK
 *   LIN_CAS      if value equals expect (or is absent when expect_absent):
 *                    value := arg, out = LIN_OUT_OK
 *                else out = LIN_OUT_CONFLICT (no change)
 * Any operation may instead have out = LIN_OUT_UNKNOWN: the client did not learn the
 * outcome (a timeout). Such an operation may have taken effect at any moment after its
 * invocation, or never; its return time is ignored. An unknown get constrains nothing.
 *
 * Times are int64 nanoseconds from one clock (CLOCK_MONOTONIC: lin_now_ns()). Operation a
 * precedes b when a.return_ns < b.invoke_ns; equal times count as concurrent, so coarse
 * clocks cause no false violations. Keys and values are copied. */
#ifndef RFS_TESTS_LIN_H
#define RFS_TESTS_LIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lin_history;

enum lin_kind { LIN_GET, LIN_PUT, LIN_APPEND, LIN_DELETE, LIN_CAS };

enum lin_out { LIN_OUT_OK, LIN_OUT_VALUE, LIN_OUT_ABSENT, LIN_OUT_CONFLICT, LIN_OUT_UNKNOWN };

enum lin_verdict {
    LIN_OK = 0,        /* every key has a linearization */
    LIN_VIOLATION = 1, /* some key has none: explain says which and why */
    LIN_UNKNOWN = 2,   /* the search ran out of time or memory before deciding */
};

/* One completed (or timed-out) operation. Pointers are borrowed for the call only. */
struct lin_op {
    int client;
    enum lin_kind kind;
    const void *key;
    size_t key_len;
    const void *arg; /* put/append value, cas new value */
    size_t arg_len;
    const void *expect; /* cas: expected value, unless expect_absent */
    size_t expect_len;
    bool expect_absent;
    enum lin_out out;
    const void *value; /* get with LIN_OUT_VALUE: the bytes read */
    size_t value_len;
    int64_t invoke_ns;
    int64_t return_ns; /* ignored when out is LIN_OUT_UNKNOWN */
};

/* An empty history, or NULL when out of memory. Free with lin_history_free. */
struct lin_history *lin_history_new(void);
void lin_history_free(struct lin_history *h);

/* Record op (its bytes are copied). Thread-safe: clients may add concurrently. Returns 0,
 * RFS_ENOMEM, or RFS_EINVAL when op is malformed (return before invoke; an output the
 * operation cannot have, such as LIN_OUT_CONFLICT for a put). */
int lin_history_add(struct lin_history *h, const struct lin_op *op);

/* Number of operations recorded. */
size_t lin_history_len(struct lin_history *h);

/* Check the history. The search stops after max_seconds of CPU-bound work in total
 * (LIN_UNKNOWN). explain (cap bytes, may be NULL) gets a short report: for a violation the
 * key, the longest linearizable prefix found, the operation that could not be placed after
 * it and the candidates that were tried. Call it once all adds have finished. */
enum lin_verdict lin_check(struct lin_history *h, double max_seconds, char *explain, size_t cap);

/* CLOCK_MONOTONIC in nanoseconds, for invoke_ns and return_ns. */
int64_t lin_now_ns(void);

#endif
