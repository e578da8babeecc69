/* Stopping a long kernel: cancellation and deadline, polled from inside the loops.
 *
 * A call that may run long (Monte Carlo, American trees and fixed point, Heston, the
 * implied-vol batch) takes a *stop block*: three int64 the service owns (pricegrid.ext.status.STOP_* mirrors the
 * layout), read and written without locks:
 *
 *   block[PG_STOP_FLAG]      set non-zero by the service (another thread: the caller went
 *                            away) to ask the kernel to stop;
 *   block[PG_STOP_DEADLINE]  an absolute CLOCK_MONOTONIC time in nanoseconds (Python's
 *                            time.monotonic_ns() on Linux), 0 for none;
 *   block[PG_STOP_REASON]    written by the kernel when it stops: PG_STOP_CANCELLED or
 *                            PG_STOP_DEADLINE_EXCEEDED (0 while it runs).
 *
 * pg_stop_poll() reads the flag and the clock (a vDSO call, ~20-30 ns); kernels call it
 * every few milliseconds of work at most, not per path or node. Once one thread sees a
 * stop, every thread sees it through the reason word (pg_stop_seen, no clock). A kernel
 * that stops gives every row it did not finish the status bit PG_CANCELLED (pg_status.h)
 * and NaN outputs; the service then ends the call with CANCELLED or DEADLINE_EXCEEDED.
 * A NULL block never stops.
 */
#ifndef PG_STOP_H
#define PG_STOP_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "pg_status.h"

#define PG_STOP_FLAG 0
#define PG_STOP_DEADLINE 1
#define PG_STOP_REASON 2
#define PG_STOP_WORDS 3

#define PG_STOP_CANCELLED 1
#define PG_STOP_DEADLINE_EXCEEDED 2

/* Already stopped (by this or another thread)? No clock read. */
static inline int pg_stop_seen(const int64_t *block)
{
    return block ? (int)__atomic_load_n(&block[PG_STOP_REASON], __ATOMIC_RELAXED) : 0;
}

static inline int64_t pg_stop_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Should the kernel stop now? 0 to go on, else the reason (recorded in the block). */
static inline int pg_stop_poll(int64_t *block)
{
    if (!block)
        return 0;
    int64_t why = __atomic_load_n(&block[PG_STOP_REASON], __ATOMIC_RELAXED);
    if (why)
        return (int)why;
    if (__atomic_load_n(&block[PG_STOP_FLAG], __ATOMIC_RELAXED))
        why = PG_STOP_CANCELLED;
    else {
        const int64_t deadline = __atomic_load_n(&block[PG_STOP_DEADLINE], __ATOMIC_RELAXED);
        if (deadline > 0 && pg_stop_now_ns() >= deadline)
            why = PG_STOP_DEADLINE_EXCEEDED;
    }
    if (why)
        __atomic_store_n(&block[PG_STOP_REASON], why, __ATOMIC_RELAXED);
    return (int)why;
}

/* Rows [start, start + m) that will not be done: status PG_CANCELLED (their other bits, if
 * any, are not known: the rows were never read), NaN in each of the k output rows
 * (out[j * ldo + i]; out may be NULL when k == 0). Returns m (rows now failed). */
static inline ptrdiff_t pg_stop_cut_rows(int *status, double *out, ptrdiff_t ldo, int k,
                                         ptrdiff_t start, ptrdiff_t m)
{
    for (ptrdiff_t i = start; i < start + m; i++) {
        status[i] = PG_CANCELLED;
        for (int j = 0; j < k; j++)
            out[(ptrdiff_t)j * ldo + i] = NAN;
    }
    return m;
}

#endif
