#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Fault-injection counter for tests; zero (off) in production. Atomic because fs/ is
 * multi-threaded. */
static atomic_ulong fail_countdown;
static atomic_int fail_sticky;

static int alloc_should_fail(void)
{
    unsigned long n = atomic_load(&fail_countdown);
    if (n == 0) {
        return 0;
    }
    if (n == 1) {
        if (!atomic_load(&fail_sticky)) {
            atomic_store(&fail_countdown, 0);
        }
        return 1;
    }
    atomic_store(&fail_countdown, n - 1);
    return 0;
}

void rfs_alloc_fail_after(unsigned long n, int sticky)
{
    atomic_store(&fail_sticky, sticky);
    atomic_store(&fail_countdown, n);
}

void *rfs_malloc(size_t size)
{
    return alloc_should_fail() ? NULL : malloc(size);
}

void *rfs_calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : calloc(n, size);
}

void *rfs_realloc(void *p, size_t size)
{
    return alloc_should_fail() ? NULL : realloc(p, size);
}

void rfs_free(void *p)
{
    free(p);
}

char *rfs_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = rfs_malloc(n);
    if (d != NULL) {
        memcpy(d, s, n);
    }
    return d;
}
