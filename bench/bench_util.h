/* bench_util.h — what the kernel microbenchmarks share: a clock that can be process CPU
 * time, a fixed xorshift for their inputs, and the comparison for medians. */
#ifndef SW_BENCH_UTIL_H
#define SW_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

/* With one thread a bench can time by CPU time (-c): on a shared machine that leaves out
 * the time the process was descheduled, which wall time cannot. */
static clockid_t g_clock = CLOCK_MONOTONIC;

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Inputs in [-0.5, 0.5), the same sequence every run. */
static uint64_t rng = 88172645463325252ull;
static inline float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) & 0xffffff) / 16777216.0f - 0.5f;
}

static inline int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif
