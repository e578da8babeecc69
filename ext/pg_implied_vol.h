/* Implied volatility of one row: domain checks, forward and discount factor, bounds, then
 * the model's solver (pg_lets_be_rational.h for BSM and Black-76, pg_implied_normal.h for
 * Bachelier). Shared by the batch loop and the single-row entry point of implied_vol.pyx.
 *
 * 1. Domain: pg_check_inputs (pg_inputs.h), plus T > 0 (T == 0 has no implied vol:
 *    PG_BAD_TIME) and a finite, non-negative price (else PG_BAD_PRICE).
 * 2. Undiscounted price p = price / DF. Bounds (no arbitrage), theta = +1 call, -1 put:
 *        lognormal  max(theta (F - K), 0) <= p < (call: F, put: K)
 *        Bachelier  max(theta (F - K), 0) <= p
 *    else PG_PRICE_OUT_OF_BOUNDS. A price within 4 eps (relative) of the intrinsic value
 *    (the rounding of price/DF and F - K) is taken as intrinsic and gives vol 0.
 * 3. The out-of-the-money value v = p - intrinsic (put-call parity) goes to the solver;
 *    sigma = s / sqrt(T).
 * 4. A forward or discount factor that overflows or underflows (extreme r T or (r - q) T)
 *    gives PG_NOT_FINITE. Rows with a non-zero status get NaN outputs.
 */
#ifndef PG_IMPLIED_VOL_H
#define PG_IMPLIED_VOL_H

#include <math.h>
#include <float.h>
#include <stddef.h>
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

/* s for the out-of-the-money value v > 0 (scalar solver): beta = v / sqrt(F K), and ln beta
 * from logs when beta is tiny (it may have underflowed). */
static inline double pg_black_implied_s(double v, double forward, double strike)
{
    double x = -fabs(pg_log_moneyness(forward, strike));
    double beta = v / (sqrt(forward) * sqrt(strike));
    double ln_beta = beta >= PG_LBR_TINY_BETA ? log(beta)
                                              : log(v) - 0.5 * (log(forward) + log(strike));
    return pg_lbr_implied_s_otm_ln(beta, ln_beta, x);
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
    *vol = pg_black_implied_s(v, forward, strike) / sqrt(time);
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

/* ---------------------------------------------------------------------- block of rows
 *
 * pg_implied_vol_block solves rows [i0, i0 + m), m <= PG_IV_BLOCK, of column arrays (a
 * stride of 0 broadcasts a length-1 column). Lognormal rows run in three passes: an
 * `omp simd` pass of checks and normalisation (x, beta, b_max), an `omp simd` pass of the
 * branch-free solver (pg_lbrv_implied_s_otm), and a scalar pass that re-solves the rare
 * lanes that asked for it with the scalar solver and writes the outputs; Bachelier rows the
 * same with pg_bachv_implied_u and pg_bachelier_implied_s_otm. Blocks start at multiples of
 * PG_IV_BLOCK and are padded to whole vectors, so a row meets the same arithmetic whatever
 * the batch, its position and the thread count. Returns the number of rows with a non-zero
 * status. (pg_implied_vol_row above is the plain scalar form of one row, kept as the
 * reference the block is checked against.)
 */
#define PG_IV_BLOCK 64   /* rows per block: a multiple of PG_IV_LANES */
#define PG_IV_LANES 8    /* a multiple of the widest vector of doubles (AVX-512: 8) */

#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__FAST_MATH__) \
    && !defined(PG_NO_LIBMVEC) && __GLIBC_PREREQ(2, 35)
extern double log1p(double) __attribute__((__simd__("notinbranch")));
#endif

/* pg_forward_df with libm's scalar exp (not the vector one): the forward and discount factor
 * of a block row are then the bits of the scalar pg_implied_vol_row, and glibc's scalar exp
 * is the more accurate (an ulp of DF is amplified by in-the-money cancellation). noinline
 * keeps the gather loop that calls it from being vectorised with the vector exp. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void pg_forward_df_scalar(int model, double time, double underlying, double rate,
                                 double dividend, double *forward, double *df)
{
    pg_forward_df(model, time, underlying, rate, dividend, forward, df);
}

typedef struct {
    const int *option_type;
    const double *strike, *time, *underlying, *rate, *dividend, *price;
    ptrdiff_t s_option_type, s_strike, s_time, s_underlying, s_rate, s_dividend, s_price;
    double *vol, *forward, *df;   /* forward, df may be NULL (not written) */
    int *status;
} pg_iv_columns;

/* Rows [i0, i0 + m) that will not be solved (the call was stopped, pg_stop.h): status
 * PG_CANCELLED, NaN in every output. Returns m. */
static inline int pg_iv_cut_rows(const pg_iv_columns *c, ptrdiff_t i0, int m)
{
    for (ptrdiff_t i = i0; i < i0 + m; ++i) {
        c->status[i] = PG_CANCELLED;
        c->vol[i] = NAN;
        if (c->forward)
            c->forward[i] = NAN;
        if (c->df)
            c->df[i] = NAN;
    }
    return m;
}

/* The Bachelier passes of pg_implied_vol_block, on its gathered (and padded) inputs. */
static inline int pg_implied_vol_block_bachelier(const pg_iv_columns *c, ptrdiff_t i0, int m, int mp,
                                                 const int *ots, const double *Ks, const double *Ts,
                                                 const double *Us, const double *rs, const double *Fs,
                                                 const double *Ds, const double *ps)
{
    double nus[PG_IV_BLOCK], lns[PG_IV_BLOCK], us[PG_IV_BLOCK], vs[PG_IV_BLOCK], ds[PG_IV_BLOCK];
    int st[PG_IV_BLOCK], mode[PG_IV_BLOCK], fb[PG_IV_BLOCK];
    int bad = 0;
    /* pass 1: checks, discount factor, bounds, nu = v / |F - K|.
     * mode 0: status set; 1: vol 0; 2: at the money (s = v sqrt(2 pi)); 3: solve */
    #pragma omp simd
    for (int j = 0; j < mp; ++j) {
        int ot = ots[j];
        double K = Ks[j], T = Ts[j], U = Us[j], r = rs[j], F = Fs[j], D = Ds[j], price = ps[j];
        int s = pg_check_inputs(PG_MODEL_BACHELIER, ot, K, T, U, r, 0.0);
        s |= T > 0.0 ? 0 : PG_BAD_TIME;
        s |= ((price >= 0.0) & (price <= PG_DBL_MAX)) ? 0 : PG_BAD_PRICE;
        double p = price / D;
        double d = fabs(F - K);
        int finite = (D > 0.0) & (D <= PG_DBL_MAX) & (p <= PG_DBL_MAX) & (d <= PG_DBL_MAX);
        s = s ? s : (finite ? 0 : PG_NOT_FINITE);
        double itm = (ot == PG_CALL) ? F - K : K - F;
        double intrinsic = itm > 0.0 ? itm : 0.0;
        double v = p - intrinsic, tol = 4.0 * DBL_EPSILON * intrinsic;
        s = s ? s : (v < -tol ? PG_PRICE_OUT_OF_BOUNDS : 0);
        double nu = v / d;
        int atm = !(nu <= DBL_MAX);            /* d == 0, or d negligible against v */
        int md = s ? 0 : ((v <= tol) ? 1 : (atm ? 2 : 3));
        int solve = md == 3;
        st[j] = s;
        mode[j] = md;
        vs[j] = v;
        ds[j] = d;
        nus[j] = solve ? nu : 1.0;
        lns[j] = log(solve ? nu : 1.0);
    }
    /* pass 2: the branch-free solver */
    #pragma omp simd
    for (int j = 0; j < mp; ++j) {
        int f;
        us[j] = pg_bachv_implied_u(nus[j], lns[j], &f);
        fb[j] = f;
    }
    /* pass 3: scalar fall-backs and outputs */
    for (int j = 0; j < m; ++j) {
        ptrdiff_t i = i0 + j;
        int s = st[j];
        double vol = NAN, sv = 0.0;
        if (mode[j] == 1) {
            vol = 0.0;
        } else if (mode[j] >= 2) {
            if (mode[j] == 2)
                sv = vs[j] * PG_SQRT_2PI;
            else if (fb[j])
                sv = pg_bachelier_implied_s_otm(vs[j], ds[j]);
            else
                sv = ds[j] / us[j];
            vol = sv / sqrt(Ts[j]);
            if (!(vol <= PG_DBL_MAX))
                s = PG_NOT_FINITE;
        }
        if (s) vol = NAN;
        c->vol[i] = vol;
        if (c->forward) c->forward[i] = s ? NAN : Fs[j];
        if (c->df) c->df[i] = s ? NAN : Ds[j];
        c->status[i] = s;
        bad += s != 0;
    }
    return bad;
}

static inline int pg_implied_vol_block(const pg_iv_columns *c, int model, ptrdiff_t i0, int m)
{
    double xs[PG_IV_BLOCK], bs[PG_IV_BLOCK], bmax[PG_IV_BLOCK], ss[PG_IV_BLOCK];
    double rt[PG_IV_BLOCK];
    int st[PG_IV_BLOCK], mode[PG_IV_BLOCK], fb[PG_IV_BLOCK];
    int bad = 0;
    /* pass 0: gather the block's inputs (strides 0 or 1) into local arrays */
    int ots[PG_IV_BLOCK];
    double Ks[PG_IV_BLOCK], Ts[PG_IV_BLOCK], Us[PG_IV_BLOCK], rs[PG_IV_BLOCK], qs[PG_IV_BLOCK],
           ps[PG_IV_BLOCK], Fs[PG_IV_BLOCK], Ds[PG_IV_BLOCK];
    for (int j = 0; j < m; ++j) {
        ptrdiff_t i = i0 + j;
        ots[j] = c->option_type[i * c->s_option_type];
        Ks[j] = c->strike[i * c->s_strike];
        Ts[j] = c->time[i * c->s_time];
        Us[j] = c->underlying[i * c->s_underlying];
        rs[j] = c->rate[i * c->s_rate];
        qs[j] = c->dividend[i * c->s_dividend];
        ps[j] = c->price[i * c->s_price];
        pg_forward_df_scalar(model, Ts[j], Us[j], rs[j], qs[j], &Fs[j], &Ds[j]);
    }
    /* pad to a whole number of PG_IV_LANES lanes with a harmless row, so that every row goes
     * through the vector body of the loops below (never a scalar epilogue, whose exp and log
     * are libm's rather than libmvec's): a row then gets the same bits in a batch of any
     * size, at any position, on any thread, and from implied_vol_one */
    int mp = (m + PG_IV_LANES - 1) / PG_IV_LANES * PG_IV_LANES;
    for (int j = m; j < mp; ++j) {
        ots[j] = PG_CALL; Ks[j] = 1.0; Ts[j] = 1.0; Us[j] = 1.0; rs[j] = 0.0; qs[j] = 0.0;
        ps[j] = 0.25; Fs[j] = 1.0; Ds[j] = 1.0;
    }
    if (model == PG_MODEL_BACHELIER)
        return pg_implied_vol_block_bachelier(c, i0, m, mp, ots, Ks, Ts, Us, rs, Fs, Ds, ps);
    /* pass 1: checks, forward, discount factor, bounds, normalisation (& and |, not && and ||:
     * short-circuits are control flow and stop the vectoriser).
     * mode 0: status set; 1: vol 0 (price at intrinsic); 2: solve */
    #pragma omp simd
    for (int j = 0; j < mp; ++j) {
        int ot = ots[j];
        double K = Ks[j], T = Ts[j], U = Us[j], r = rs[j], q = qs[j], price = ps[j];
        int s = pg_check_inputs(model, ot, K, T, U, r, q);
        s |= T > 0.0 ? 0 : PG_BAD_TIME;
        s |= ((price >= 0.0) & (price <= PG_DBL_MAX)) ? 0 : PG_BAD_PRICE;
        double F = Fs[j], D = Ds[j];
        double p = price / D;
        int finite = (D > 0.0) & (D <= PG_DBL_MAX) & (p <= PG_DBL_MAX) & (F > 0.0) & (F <= PG_DBL_MAX);
        s = s ? s : (finite ? 0 : PG_NOT_FINITE);
        double itm = (ot == PG_CALL) ? F - K : K - F;
        double intrinsic = itm > 0.0 ? itm : 0.0;
        double upper = (ot == PG_CALL) ? F : K;
        double v = p - intrinsic, tol = 4.0 * DBL_EPSILON * intrinsic;
        int oob = !(p < upper) | (v < -tol);
        s = s ? s : (oob ? PG_PRICE_OUT_OF_BOUNDS : 0);
        double sq = sqrt(F) * sqrt(K);
        double beta = v / sq;
        int zero = v <= tol;
        int near = (F <= 2.0 * K) & (K <= 2.0 * F);
        double ratio = F / K;
        double x1 = log1p((F - K) / K), x2 = log(ratio);
        double x = near ? x1 : x2;
        int ratio_ok = near | ((ratio >= DBL_MIN) & (ratio <= DBL_MAX));
        x = -fabs(x);
        int md = s ? 0 : (zero ? 1 : 2);
        int solve = (md == 2) & ratio_ok;
        st[j] = s;
        mode[j] = md;
        fb[j] = (md == 2) & !ratio_ok;   /* extreme moneyness: scalar path (log F - log K) */
        xs[j] = solve ? x : -1.0;
        bs[j] = solve ? beta : 0.1;
        bmax[j] = exp(0.5 * (solve ? x : -1.0));
        rt[j] = sqrt(T);
    }
    /* pass 2: the branch-free solver */
    #pragma omp simd
    for (int j = 0; j < mp; ++j) {
        int f;
        ss[j] = pg_lbrv_implied_s_otm(bs[j], xs[j], bmax[j], &f);
        fb[j] |= f;
    }
    /* pass 3: scalar fall-backs and outputs */
    for (int j = 0; j < m; ++j) {
        ptrdiff_t i = i0 + j;
        int s = st[j];
        double vol = NAN;
        if (mode[j] == 1) {
            vol = 0.0;
        } else if (mode[j] == 2) {
            double sv = ss[j];
            if (fb[j]) {
                double K = Ks[j], p = ps[j] / Ds[j];
                double itm = (ots[j] == PG_CALL) ? Fs[j] - K : K - Fs[j];
                sv = pg_black_implied_s(p - (itm > 0.0 ? itm : 0.0), Fs[j], K);
            }
            vol = sv / rt[j];
            if (!(vol <= PG_DBL_MAX))
                s = PG_NOT_FINITE;
        }
        if (s) vol = NAN;
        c->vol[i] = vol;
        if (c->forward) c->forward[i] = s ? NAN : Fs[j];
        if (c->df) c->df[i] = s ? NAN : Ds[j];
        c->status[i] = s;
        bad += s != 0;
    }
    return bad;
}

#endif
