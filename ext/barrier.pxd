# Declarations of the barrier-family formulas (pg_barrier.h, pg_double_barrier.h,
# pg_digital.h) for kernels that build on them: `from pricegrid.ext.barrier cimport ...` or,
# from a sibling .pyx in ext/, `from barrier cimport ...`.
#
# The *_check / *_value functions are pointwise and nogil (a value function prices a row
# whose check returned 0; arguments in the column order of the batch entry point, then a
# check's beyond_touched (a spot beyond a barrier is touched, not refused: pg_barrier.h,
# note 3) and a value's touched (the row's barrier was hit)). The
# *_block functions are the SIMD loops over one block of at most PG_BARRIER_BLOCK rows.

cdef extern from "pg_barrier.h" nogil:
    enum:
        PG_BARRIER_DOWN_IN
        PG_BARRIER_DOWN_OUT
        PG_BARRIER_UP_IN
        PG_BARRIER_UP_OUT
        PG_TOUCH_ONE
        PG_TOUCH_NO
        PG_DIRECTION_DOWN
        PG_DIRECTION_UP
        PG_PAY_AT_HIT
        PG_PAY_AT_EXPIRY
        PG_BARRIER_BLOCK
        PG_MAX_ICOLS
        PG_MAX_DCOLS
        PG_MEASURE_MAX

    int pg_max_threads()

    int pg_barrier_check(int barrier_type, int option_type, double strike, double time,
                         double barrier, double rebate, double monitoring_interval, double spot,
                         double rate, double dividend_yield, double volatility, int beyond_touched)
    double pg_barrier_value(int barrier_type, int option_type, double strike, double time,
                            double barrier, double rebate, double monitoring_interval,
                            double spot, double rate, double dividend_yield, double volatility,
                            int touched)
    int pg_touch_check(int touch_type, int direction, int payment, double cash, double barrier,
                       double time, double monitoring_interval, double spot, double rate,
                       double dividend_yield, double volatility, int beyond_touched)
    double pg_touch_value(int touch_type, int direction, int payment, double cash,
                          double barrier, double time, double monitoring_interval, double spot,
                          double rate, double dividend_yield, double volatility, int touched)

    ctypedef struct pg_cols:
        const int *ic[3]
        const double *dc[9]
        int ni
        int nd
        int broadcast
        int beyond_touched
        Py_ssize_t n

    int PG_ICOL_BIT(int j)
    int PG_DCOL_BIT(int j)

    ctypedef Py_ssize_t (*pg_block_fn)(const pg_cols *inputs, Py_ssize_t start, int m,
                                       const int *measures, int k, double *out, Py_ssize_t ldo,
                                       int *status)
    Py_ssize_t pg_barrier_block(const pg_cols *inputs, Py_ssize_t start, int m,
                                const int *measures, int k, double *out, Py_ssize_t ldo,
                                int *status)
    Py_ssize_t pg_touch_block(const pg_cols *inputs, Py_ssize_t start, int m,
                              const int *measures, int k, double *out, Py_ssize_t ldo,
                              int *status)

cdef extern from "pg_double_barrier.h" nogil:
    enum:
        PG_KNOCK_IN
        PG_KNOCK_OUT

    int pg_double_barrier_check(int knock, int option_type, double strike, double time,
                                double lower_barrier, double upper_barrier, double spot,
                                double rate, double dividend_yield, double volatility,
                                int beyond_touched)
    double pg_double_barrier_value(int knock, int option_type, double strike, double time,
                                   double lower_barrier, double upper_barrier, double spot,
                                   double rate, double dividend_yield, double volatility,
                                   int touched)
    Py_ssize_t pg_double_barrier_block(const pg_cols *inputs, Py_ssize_t start, int m,
                                       const int *measures, int k, double *out, Py_ssize_t ldo,
                                       int *status)

cdef extern from "pg_digital.h" nogil:
    enum:
        PG_DIGITAL_CASH
        PG_DIGITAL_ASSET
        PG_DIGITAL_GAP

    int pg_digital_check(int payoff, int option_type, double strike, double time, double cash,
                         double payoff_strike, double spot, double rate, double dividend_yield,
                         double volatility)
    double pg_digital_value(int payoff, int option_type, double strike, double time, double cash,
                            double payoff_strike, double spot, double rate,
                            double dividend_yield, double volatility)
    Py_ssize_t pg_digital_block(const pg_cols *inputs, Py_ssize_t start, int m,
                                const int *measures, int k, double *out, Py_ssize_t ldo,
                                int *status)
