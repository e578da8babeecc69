/* Pointwise input checks and the forward/discount-factor map shared by every kernel
 * family that takes (option type, strike, time, underlying, rate, dividend).
 *
 * 1. Domains, per model (pg_status.h names the bits):
 *      all models   option type CALL or PUT; time finite and >= 0; rate finite
 *      BSM          spot > 0, strike > 0, dividend yield finite
 *      Black-76     forward > 0, strike > 0 (no dividend yield: the forward carries it)
 *      Bachelier    forward and strike finite, of any sign
 *    A NaN fails every test below (comparisons with NaN are false), so NaN and +-inf are
 *    rejected without separate branches.
 * 2. Forward and discount factor: DF = exp(-r T); F = S exp((r - q) T) for BSM and the
 *    given forward otherwise.
 * Written branch-light so that the functions vectorise inside `#pragma omp simd` loops.
 */
#ifndef PG_INPUTS_H
#define PG_INPUTS_H

#include <math.h>
#include "pg_status.h"

#define PG_DBL_MAX 1.7976931348623157e308

static inline int pg_finite(double x) { return fabs(x) <= PG_DBL_MAX; }

static inline int pg_check_inputs(int model, int option_type, double strike, double time,
                                  double underlying, double rate, double dividend)
{
    int s = 0;
    s |= (option_type == PG_CALL || option_type == PG_PUT) ? 0 : PG_BAD_OPTION_TYPE;
    s |= (time >= 0.0 && time <= PG_DBL_MAX) ? 0 : PG_BAD_TIME;
    s |= pg_finite(rate) ? 0 : PG_BAD_RATE;
    if (model == PG_MODEL_BACHELIER) {
        s |= pg_finite(strike) ? 0 : PG_BAD_STRIKE;
        s |= pg_finite(underlying) ? 0 : PG_BAD_UNDERLYING;
    } else {
        s |= (strike > 0.0 && strike <= PG_DBL_MAX) ? 0 : PG_BAD_STRIKE;
        s |= (underlying > 0.0 && underlying <= PG_DBL_MAX) ? 0 : PG_BAD_UNDERLYING;
        if (model == PG_MODEL_BSM)
            s |= pg_finite(dividend) ? 0 : PG_BAD_DIVIDEND;
    }
    return s;
}

/* 1 when pg_check_inputs gives 0: the same tests as one boolean (no status bits to
 * assemble), for loops that name the failing inputs only when some row fails. */
static inline int pg_inputs_ok(int model, int option_type, double strike, double time,
                               double underlying, double rate, double dividend)
{
    int ok = (option_type == PG_CALL || option_type == PG_PUT);
    ok &= (time >= 0.0 && time <= PG_DBL_MAX);
    ok &= pg_finite(rate);
    if (model == PG_MODEL_BACHELIER) {
        ok &= pg_finite(strike) & pg_finite(underlying);
    } else {
        ok &= (strike > 0.0 && strike <= PG_DBL_MAX);
        ok &= (underlying > 0.0 && underlying <= PG_DBL_MAX);
        if (model == PG_MODEL_BSM)
            ok &= pg_finite(dividend);
    }
    return ok;
}

static inline void pg_forward_df(int model, double time, double underlying, double rate,
                                 double dividend, double *forward, double *df)
{
    *df = exp(-rate * time);
    *forward = (model == PG_MODEL_BSM) ? underlying * exp((rate - dividend) * time) : underlying;
}

#endif
