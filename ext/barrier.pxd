# Declarations of the single-barrier and digital formulas in pg_barrier.h, for kernels that
# build on them: `from pricegrid.ext.barrier cimport ...` or, from a sibling .pyx in ext/,
# `from barrier cimport ...`.
#
# Every function here is pointwise and nogil; pg_barrier_block / pg_digital_block are the
# SIMD loops over one block of at most PG_BARRIER_BLOCK rows.

cdef extern from "pg_barrier.h" nogil:
    enum:
        PG_BARRIER_DOWN_IN
        PG_BARRIER_DOWN_OUT
        PG_BARRIER_UP_IN
        PG_BARRIER_UP_OUT
        PG_DIGITAL_CASH
        PG_DIGITAL_ASSET
        PG_BARRIER_BLOCK
        PG_IN_OPTION_TYPE
        PG_IN_STRIKE
        PG_IN_TIME
        PG_IN_UNDERLYING
        PG_IN_RATE
        PG_IN_DIVIDEND
        PG_IN_VOL
        PG_IN_BARRIER
        PG_IN_REBATE

    int pg_max_threads()

    int pg_barrier_check(int btype, int option_type, double strike, double time, double spot,
                         double rate, double dividend, double vol, double barrier, double rebate)
    double pg_barrier_value(int btype, int option_type, double strike, double time, double spot,
                            double rate, double dividend, double vol, double barrier, double rebate)
    double pg_barrier_point(int btype, int option_type, double strike, double time, double spot,
                            double rate, double dividend, double vol, double barrier, double rebate,
                            int *status)
    int pg_digital_check(int payoff, int option_type, double strike, double time, double spot,
                         double rate, double dividend, double vol, double cash)
    double pg_digital_value(int payoff, int option_type, double strike, double time, double spot,
                            double rate, double dividend, double vol, double cash)
    double pg_digital_point(int payoff, int option_type, double strike, double time, double spot,
                            double rate, double dividend, double vol, double cash, int *status)

    ctypedef struct pg_barrier_inputs:
        const int *option_type
        const double *strike
        const double *time
        const double *spot
        const double *rate
        const double *dividend
        const double *vol
        const double *barrier
        const double *rebate
        int broadcast
        Py_ssize_t n

    Py_ssize_t pg_barrier_block(int btype, const pg_barrier_inputs *inputs, Py_ssize_t start,
                                int m, double *out, int *status)
    Py_ssize_t pg_digital_block(int payoff, const pg_barrier_inputs *inputs, Py_ssize_t start,
                                int m, double *out, int *status)
