# Declarations of the European Black/BSM/Bachelier formulas in pg_black.h, for kernels
# that build on them (barrier, American, implied vol, ...): `from pricegrid.ext.black cimport ...`
# or, from a sibling .pyx in ext/, `from black cimport ...`.
#
# Every function here is pointwise and nogil; pg_black_block is the SIMD loop over one
# block of at most PG_BLACK_BLOCK rows.

cdef extern from "pg_black.h" nogil:
    enum:
        PG_MEASURE_PRICE
        PG_MEASURE_DELTA
        PG_MEASURE_GAMMA
        PG_MEASURE_VEGA
        PG_MEASURE_THETA
        PG_MEASURE_RHO
        PG_MEASURE_DIVIDEND_RHO
        PG_MEASURE_VANNA
        PG_MEASURE_VOLGA
        PG_MEASURE_CHARM
        PG_MEASURE_MAX
        PG_BLACK_BLOCK
        PG_IN_OPTION_TYPE
        PG_IN_STRIKE
        PG_IN_TIME
        PG_IN_UNDERLYING
        PG_IN_RATE
        PG_IN_DIVIDEND
        PG_IN_VOL

    int pg_max_threads()
    double pg_norm_pdf(double x)
    double pg_norm_cdf(double x)
    int pg_check_vol(double vol)

    ctypedef struct pg_black_terms:
        int status
        int expiry
        double w
        double K
        double T
        double r
        double qe
        double vol
        double F
        double DF
        double ds
        double sqrtT
        double sd
        double d1
        double d2
        double pdf
        double N1
        double N2
        double price

    pg_black_terms pg_black_terms_of(int model, int option_type, double strike, double time,
                                     double underlying, double rate, double dividend,
                                     double vol)
    double pg_black_price(int model, const pg_black_terms *t)
    double pg_black_delta(int model, const pg_black_terms *t)
    double pg_black_gamma(int model, const pg_black_terms *t)
    double pg_black_vega(int model, const pg_black_terms *t)
    double pg_black_theta(int model, const pg_black_terms *t)
    double pg_black_rho(int model, const pg_black_terms *t)
    double pg_black_dividend_rho(int model, const pg_black_terms *t)
    double pg_black_vanna(int model, const pg_black_terms *t)
    double pg_black_volga(int model, const pg_black_terms *t)
    double pg_black_charm(int model, const pg_black_terms *t)
    double pg_black_measure(int code, int model, const pg_black_terms *t)
    int pg_black_point(int model, int option_type, double strike, double time,
                       double underlying, double rate, double dividend, double vol,
                       int mask, double *out, double *forward, double *df)

    ctypedef struct pg_black_inputs:
        const int *option_type
        const double *strike
        const double *time
        const double *underlying
        const double *rate
        const double *dividend
        const double *vol
        int broadcast
        Py_ssize_t n

    Py_ssize_t pg_black_block(int model, const pg_black_inputs *inputs, Py_ssize_t start,
                              int m, const int *measures, int k, double *out, Py_ssize_t ldo,
                              double *forward, double *df, int *status)
