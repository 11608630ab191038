/* The benches' CPU clocks, in one place; include after nst.h (the fallbacks use nst__now).
 *   bench_cpu_seconds()     CPU seconds of the whole process (all threads): next to the wall time it
 *                           shows how much a loaded machine distorted a run; divided by the thread count
 *                           (with OMP_WAIT_POLICY=passive, so idle threads sleep) it is the time the
 *                           threads computed. Falls back to clock(), which is the process's CPU time on
 *                           POSIX.
 *   bench_thread_seconds()  CPU seconds of the calling thread: time spent descheduled by other processes
 *                           does not count. Falls back to the wall clock. */
#ifndef NST_BENCH_CLOCK_H
#define NST_BENCH_CLOCK_H
#include <time.h>

static NST__UNUSED double bench_cpu_seconds(void) {
#if defined(CLOCK_PROCESS_CPUTIME_ID) && !defined(_WIN32)
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

static NST__UNUSED double bench_thread_seconds(void) {
#if defined(CLOCK_THREAD_CPUTIME_ID) && !defined(_WIN32)
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    return nst__now();
#endif
}
#endif
