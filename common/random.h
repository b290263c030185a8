/* Random identifiers: sessions, transactions, leases, record nonces. */
#ifndef COMMON_RANDOM_H
#define COMMON_RANDOM_H

#include <stdint.h>

/* A random, non-zero 64-bit value from getrandom(2); if that fails (it should not), one
 * mixed from the clocks and the process id, which is still unlikely to repeat. */
uint64_t rfs_random_u64(void);

#endif
