/* Implied volatility of one row: domain checks, forward and discount factor, bounds, then
 * the model's solver (pg_lets_be_rational.h for BSM and Black-76, pg_implied_normal.h for
 * Bachelier). Shared by the batch loop and the single-row entry point of implied_vol.pyx.
 *
 * 1. Domain: pg_check_inputs (pg_inputs.h), plus T > 0 (T == 0 has no implied vol:
 *    PG_BAD_TIME) and a finite, non-negative price (else PG_BAD_PRICE).
 * 2. Undiscounted price p = price / DF. Bounds (no arbitrage), theta = +1 call, -1 put:
 *        lognormal  max(theta (F - K), 0) <= p < (call: F, put: K)
 *        Bachelier  max(theta (F - K), 0) <= p
 *    else PG_PRICE_OUT_OF_BOUNDS. A price within 4 ulps of the intrinsic value (the
 *    rounding of price/DF and F - K) is taken as intrinsic and gives vol 0.
 * 3. The out-of-the-money value v = p - intrinsic (put-call parity) goes to the solver;
 *    sigma = s / sqrt(T).
 * 4. A forward or discount factor that overflows or underflows (extreme r T or (r - q) T)
 *    gives PG_NOT_FINITE. Rows with a non-zero status get NaN outputs.
 */
#ifndef PG_IMPLIED_VOL_H
#define PG_IMPLIED_VOL_H

#include <math.h>
#include <float.h>
#include "pg_status.h"
#include "pg_inputs.h"
#include "pg_normal.h"
#include "pg_lets_be_rational.h"
#include "pg_implied_normal.h"

/* ln(F/K) for F, K > 0: log1p((F - K)/K) when F/K is in [1/2, 2] (F - K is then exact, so x
 * keeps full relative precision near the money, where log(F/K) would not), else log(F/K),
 * or log F - log K if the ratio overflows or underflows. */
static inline double pg_log_moneyness(double forward, double strike)
{
    if (forward <= 2.0 * strike && strike <= 2.0 * forward)
        return log1p((forward - strike) / strike);
    double r = forward / strike;
    if (r >= DBL_MIN && r <= DBL_MAX)
        return log(r);
    return log(forward) - log(strike);
}

/* Lognormal implied vol from the undiscounted price p (already checked finite and >= 0). */
static inline int pg_black_implied_vol(double p, double forward, double strike, double time,
                                       int option_type, double *vol)
{
    double theta = option_type == PG_CALL ? 1.0 : -1.0;
    double itm = theta * (forward - strike);
    double intrinsic = itm > 0.0 ? itm : 0.0;
    double upper = option_type == PG_CALL ? forward : strike;
    if (!(p < upper))
        return PG_PRICE_OUT_OF_BOUNDS;
    double v = p - intrinsic;
    double tol = 4.0 * DBL_EPSILON * intrinsic;
    if (v < -tol)
        return PG_PRICE_OUT_OF_BOUNDS;
    if (v <= tol) {
        *vol = 0.0;
        return PG_OK;
    }
    double beta = v / (sqrt(forward) * sqrt(strike));
    if (!(beta > 0.0)) {        /* time value below the smallest double after normalisation */
        *vol = 0.0;
        return PG_OK;
    }
    double x = -fabs(pg_log_moneyness(forward, strike));
    *vol = pg_lbr_implied_s_otm(beta, x) / sqrt(time);
    return PG_OK;
}

/* Normal implied vol from the undiscounted price p. */
static inline int pg_bachelier_implied_vol(double p, double forward, double strike, double time,
                                           int option_type, double *vol)
{
    double theta = option_type == PG_CALL ? 1.0 : -1.0;
    double itm = theta * (forward - strike);
    double intrinsic = itm > 0.0 ? itm : 0.0;
    double v = p - intrinsic;
    double tol = 4.0 * DBL_EPSILON * intrinsic;
    if (v < -tol)
        return PG_PRICE_OUT_OF_BOUNDS;
    if (v <= tol) {
        *vol = 0.0;
        return PG_OK;
    }
    double d = fabs(forward - strike);
    if (!(d <= DBL_MAX))
        return PG_NOT_FINITE;
    *vol = pg_bachelier_implied_s_otm(v, d) / sqrt(time);
    return PG_OK;
}

/* One row: returns the status; writes vol, forward and df (NaN where status != 0). */
static inline int pg_implied_vol_row(int model, int option_type, double strike, double time,
                                     double underlying, double rate, double dividend,
                                     double price, double *vol, double *forward, double *df)
{
    double nan = NAN;
    int status = pg_check_inputs(model, option_type, strike, time, underlying, rate, dividend);
    status |= time > 0.0 ? 0 : PG_BAD_TIME;
    status |= (price >= 0.0 && price <= PG_DBL_MAX) ? 0 : PG_BAD_PRICE;
    *vol = nan;
    if (status) {
        *forward = nan;
        *df = nan;
        return status;
    }
    double f, d;
    pg_forward_df(model, time, underlying, rate, dividend, &f, &d);
    double p = price / d;
    int finite = d > 0.0 && d <= PG_DBL_MAX && p <= PG_DBL_MAX && pg_finite(f)
                 && (model == PG_MODEL_BACHELIER || f > 0.0);
    if (!finite) {
        status = PG_NOT_FINITE;
    } else if (model == PG_MODEL_BACHELIER) {
        status = pg_bachelier_implied_vol(p, f, strike, time, option_type, vol);
    } else {
        status = pg_black_implied_vol(p, f, strike, time, option_type, vol);
    }
    if (status == PG_OK && !(*vol <= PG_DBL_MAX))   /* safety net: never a NaN without a status */
        status = PG_NOT_FINITE;
    if (status) {
        *vol = nan;
        *forward = nan;
        *df = nan;
    } else {
        *forward = f;
        *df = d;
    }
    return status;
}

#endif
