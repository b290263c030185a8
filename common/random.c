#include "random.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

uint64_t rfs_random_u64(void)
{
    uint64_t v = 0;
    while (v == 0) {
        if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
            struct timespec mono, real;
            clock_gettime(CLOCK_MONOTONIC, &mono);
            clock_gettime(CLOCK_REALTIME, &real);
            v = ((uint64_t)mono.tv_sec * 1000000000u + (uint64_t)mono.tv_nsec) *
                    0x9E3779B97F4A7C15ull ^
                ((uint64_t)real.tv_sec << 20) ^ (uint64_t)real.tv_nsec ^ (uint64_t)getpid() << 40;
        }
    }
    return v;
}
