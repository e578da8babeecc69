# Pointwise implied-volatility formulas (C, static inline), for cimport by other families.
# The numerics are described at the top of each header.

cdef extern from "pg_normal.h" nogil:
    double pg_erfcx(double x)
    double pg_erfc(double x)
    double pg_norm_cdf(double z)
    double pg_norm_pdf(double z)
    double pg_inverse_norm_cdf(double p)

cdef extern from "pg_lets_be_rational.h" nogil:
    double pg_lbr_normalised_black(double x, double s, double theta)
    double pg_lbr_implied_s_otm(double beta, double x)

cdef extern from "pg_implied_normal.h" nogil:
    double pg_bachelier_implied_s_otm(double v, double d)

cdef extern from "pg_implied_vol.h" nogil:
    int pg_implied_vol_row(int model, int option_type, double strike, double time,
                           double underlying, double rate, double dividend, double price,
                           double *vol, double *forward, double *df)

    enum: PG_IV_BLOCK
    ctypedef struct pg_iv_columns:
        const int *option_type
        const double *strike
        const double *time
        const double *underlying
        const double *rate
        const double *dividend
        const double *price
        Py_ssize_t s_option_type, s_strike, s_time, s_underlying, s_rate, s_dividend, s_price
        double *vol
        double *forward
        double *df
        int *status
    int pg_implied_vol_block(const pg_iv_columns *c, int model, Py_ssize_t i0, int m)
    int pg_iv_cut_rows(const pg_iv_columns *c, Py_ssize_t i0, int m)
