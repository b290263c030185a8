/* Allocation wrappers, so tests can fail the Nth allocation. */
#ifndef RFS_ALLOC_H
#define RFS_ALLOC_H

#include <stddef.h>

void *rfs_malloc(size_t size);
void *rfs_calloc(size_t n, size_t size);
void *rfs_realloc(void *p, size_t size);
void rfs_free(void *p);
char *rfs_strdup(const char *s);

/* Test hook: make the nth allocation from now on (1-based) fail, and every later one
 * too if sticky. n = 0 disables. Set once per test from the test's own thread. */
void rfs_alloc_fail_after(unsigned long n, int sticky);

#endif
