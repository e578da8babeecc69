/* European options under Black-Scholes-Merton, Black-76 and Bachelier: the pointwise
 * formulas, written once, and the SIMD block loop built from them.
 *
 * 1. Pointwise (used by the single-trade path and, inlined, by the block loop):
 *      pg_black_terms_of   validates one row and computes the terms every measure shares:
 *                          w, F, DF, dF/dU, sqrt(T), sigma sqrt(T), d1, d2, n(d1),
 *                          N(w d1), N(w d2) and the price
 *      pg_black_<measure>  one measure from those terms (delta ... charm)
 *      pg_black_point      everything one trade asks for, NaN-filled when the row fails
 * 2. Block loop: pg_black_block prices rows [start, start + m) with m <= PG_BLACK_BLOCK.
 *    It reads each input in place (a length-1 input is first repeated into a stack
 *    buffer, so every loop reads contiguous data), runs one `omp simd` loop for the shared
 *    terms into block-local arrays, then one small `omp simd` loop per requested measure,
 *    then marks failed rows. Only requested measures cost anything. The common sets (price;
 *    price, delta; price + delta, gamma, vega, theta, rho) are computed in one loop with
 *    the terms, each row checked as one boolean; a block's status bits are assembled only
 *    where some row failed. Both paths give the same bits. A row's result depends only on
 *    its inputs, never on its place in a batch or the thread split.
 * 3. Numerics (w = +1 call, -1 put; F forward, DF = exp(-r T), s = sigma sqrt(T)); sources
 *    with pages in the design note of black.pyx:
 *    Black:      V = DF w (F N(w d1) - K N(w d2)), d1 = ln(F/K)/s + s/2, d2 = d1 - s.
 *                BSM is Black on F = S exp((r - q) T) (Haug's generalized formula with
 *                cost of carry b = r - q), ln(F/K) taken as ln(S/K) + b T; Black-76 is
 *                the same with b = 0, i.e. q_e = r.
 *    Bachelier:  V = DF (w (F - K) N(w d) + s n(d)), d = (F - K)/s.
 *    N(x) = erfc(-x/sqrt 2)/2, accurate in both tails (no 1 - N cancellation).
 *    d1, d2 are clamped to [-40, 40]: n and N(-|d|) underflow to 0 there already, and the
 *    clamp keeps 0 * inf out of the Greeks when ln(F/K) or (F - K)/s is infinite.
 *    s is floored at DBL_MIN so that a tiny positive vol gives the zero-vol limit, not 0/0.
 *    T = 0 (expiry day): price DF max(w (F - K), 0), delta dF/dU DF w 1{w(F - K) > 0}
 *    (half of that at the money), every other Greek 0.
 */
#ifndef PG_BLACK_H
#define PG_BLACK_H

#include <math.h>
#include <stddef.h>
#include <string.h>

/* glibc declares the vector variants (libmvec) of its math functions only under
 * -ffast-math, which we do not use. Declare them here so that gcc calls _ZGV*_exp etc.
 * inside `omp simd` loops; -fno-math-errno makes that legal. libmvec provides every ISA
 * variant (SSE2 'b', AVX 'c', AVX2 'd', AVX-512 'e') of exp, log, erfc (glibc >= 2.35). */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__FAST_MATH__) \
    && !defined(PG_NO_LIBMVEC)
#define PG_SIMD_MATH __attribute__((__simd__("notinbranch")))
#if __GLIBC_PREREQ(2, 22)
extern double exp(double) PG_SIMD_MATH;
extern double log(double) PG_SIMD_MATH;
#endif
#if __GLIBC_PREREQ(2, 35)
extern double erfc(double) PG_SIMD_MATH;
#endif
#endif

#include "pg_status.h"
#include "pg_inputs.h"

#ifdef _OPENMP
#include <omp.h>
static inline int pg_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int pg_max_threads(void) { return 1; }
#endif

#if defined(__GNUC__)
#define PG_INLINE static inline __attribute__((always_inline))
#define PG_ALIGNED __attribute__((aligned(64)))
#else
#define PG_INLINE static inline
#define PG_ALIGNED
#endif

/* Measure codes: the same numbers as pricegrid.v1.Measure. */
#define PG_MEASURE_PRICE         1
#define PG_MEASURE_DELTA         2
#define PG_MEASURE_GAMMA         3
#define PG_MEASURE_VEGA          4
#define PG_MEASURE_THETA         5
#define PG_MEASURE_RHO           6
#define PG_MEASURE_DIVIDEND_RHO  7
#define PG_MEASURE_VANNA         8
#define PG_MEASURE_VOLGA         9
#define PG_MEASURE_CHARM        10
#define PG_MEASURE_MAX          10

/* Rows per block. Small blocks keep the block's arrays and its slices of the inputs and
 * outputs in L1. Measured in C on the 2-core development VM (price + 5 Greeks, BSM, one
 * thread, 1e6 rows, best of 25): 16 rows 18.4, 32 rows 15.6, 64 rows 18.0, 128 rows 18.6,
 * 256 rows 20.6 ns per row. Again with price + 5 Greeks in the terms loop (AVX-512 VM,
 * medians of 21 interleaved runs): 16 rows 15.4, 32 rows 15.6, 64 rows 17.2 ms per 1e6. */
#define PG_BLACK_BLOCK 32

#define PG_SQRT1_2      0.70710678118654752440   /* 1/sqrt(2) */
#define PG_INV_SQRT_2PI 0.39894228040143267794   /* 1/sqrt(2 pi) */
#define PG_DBL_MIN      2.2250738585072014e-308
#define PG_D_MAX        40.0

/* ------------------------------------------------------------------ pointwise */

PG_INLINE double pg_norm_pdf(double x) { return PG_INV_SQRT_2PI * exp(-0.5 * x * x); }
PG_INLINE double pg_norm_cdf(double x) { return 0.5 * erfc(-x * PG_SQRT1_2); }
PG_INLINE double pg_clamp_d(double d) { return d > PG_D_MAX ? PG_D_MAX : (d < -PG_D_MAX ? -PG_D_MAX : d); }

/* N(d) and n(d) for the d of a Black formula, in vector loops. libmvec's exp and erfc leave
 * their vector path for a whole vector when one lane's result underflows, and finish it
 * with the scalar functions: on a book with short expiries (|d| > 37.6 on many rows) that
 * was a third of the European kernel's time. Beyond |d| = PG_D_FLUSH, N(-|d|) and n(d) are
 * below 1e-299 (the price and every Greek they scale are far below any tolerance) and are
 * flushed to 0 exactly, N(|d|) is 1 exactly (as it rounds already); the functions are
 * evaluated at an argument inside that range, so no lane underflows. */
#define PG_D_FLUSH 37.0
PG_INLINE double pg_norm_cdf_d(double d)
{
    const double x = d > PG_D_FLUSH ? PG_D_FLUSH : (d < -PG_D_FLUSH ? -PG_D_FLUSH : d);
    const double v = 0.5 * erfc(-x * PG_SQRT1_2);
    return d < -PG_D_FLUSH ? 0.0 : (d > PG_D_FLUSH ? 1.0 : v);
}
PG_INLINE double pg_norm_pdf_d(double d)
{
    const double x = d > PG_D_FLUSH ? PG_D_FLUSH : (d < -PG_D_FLUSH ? -PG_D_FLUSH : d);
    const double v = PG_INV_SQRT_2PI * exp(-0.5 * x * x);
    return (d < -PG_D_FLUSH || d > PG_D_FLUSH) ? 0.0 : v;
}
PG_INLINE int pg_check_vol(double vol) { return (vol > 0.0 && vol <= PG_DBL_MAX) ? 0 : PG_BAD_VOL; }

/* The terms of one row that every measure shares. For Bachelier d1 = d2 = d, N1 = N2. */
typedef struct {
    int status;       /* pg_status.h bits; PG_NOT_FINITE when F, DF or the price is not finite */
    int expiry;       /* T == 0 */
    double w;         /* +1 call, -1 put */
    double K, T, r;   /* strike, time, rate as given */
    double qe;        /* carry yield: q for BSM, r for Black-76 (so b = r - qe = 0) */
    double vol;
    double F, DF;     /* forward, discount factor */
    double ds;        /* dF/dU: exp((r - q) T) for BSM, 1 where the forward is given */
    double sqrtT, sd; /* sqrt(T), s = vol sqrt(T) floored at DBL_MIN */
    double d1, d2;    /* 0 at expiry */
    double pdf;       /* n(d1); 0 at expiry */
    double N1, N2;    /* N(w d1), N(w d2); at expiry the step 1{w(F-K) > 0} (1/2 at F == K) */
    double price;
} pg_black_terms;

/* The terms of a row from its forward F, discount factor DF, dF/dU ``ds``, sqrt(T) and, off
 * Bachelier, x = ln(F/K): what pg_black_terms_core and the snapshot path's one pass
 * (pg_market.h, which has x from its vol lookup) share, so both give the same bits. */
PG_INLINE pg_black_terms pg_black_terms_from(int model, double w, double strike, double time,
                                             double rate, double dividend, double vol, double F,
                                             double DF, double ds, double sqrtT, double x)
{
    pg_black_terms t;
    const int bach = (model == PG_MODEL_BACHELIER);
    t.status = 0;
    t.expiry = (time == 0.0);
    t.w = w;
    t.K = strike;
    t.T = time;
    t.r = rate;
    t.qe = (model == PG_MODEL_BSM) ? dividend : rate;
    t.vol = vol;
    t.F = F;
    t.DF = DF;
    t.ds = ds;
    t.sqrtT = sqrtT;
    double sd = vol * t.sqrtT;
    t.sd = (sd > PG_DBL_MIN) ? sd : PG_DBL_MIN;

    /* e1, e2: d1, d2 before their clamp to [-PG_D_MAX, PG_D_MAX]. N and n are taken of
     * them: they flush beyond PG_D_FLUSH < PG_D_MAX, so the clamp changes none of their
     * values, and the measures that read only N and n (price to rho) skip it (0.7 ms per
     * 1e6 rows, price + 5 Greeks). */
    double e1, e2;
    if (bach) {
        e1 = (t.F - strike) / t.sd;
        e2 = e1;
    } else {
        e1 = x / t.sd + 0.5 * t.sd;
        e2 = e1 - t.sd;
    }
    const double d1 = pg_clamp_d(e1), d2 = pg_clamp_d(e2);
    const double step = (t.w * (t.F - strike) > 0.0) ? 1.0 : ((t.F == strike) ? 0.5 : 0.0);
    const double N1 = pg_norm_cdf_d(t.w * e1);
    const double N2 = bach ? N1 : pg_norm_cdf_d(t.w * e2);
    const double pdf = pg_norm_pdf_d(e1);
    t.d1 = t.expiry ? 0.0 : d1;
    t.d2 = t.expiry ? 0.0 : d2;
    t.pdf = t.expiry ? 0.0 : pdf;
    t.N1 = t.expiry ? step : N1;
    t.N2 = t.expiry ? step : N2;
    t.price = bach ? t.DF * (t.w * (t.F - strike) * t.N1 + t.sd * t.pdf)
                   : t.DF * t.w * (t.F * t.N1 - strike * t.N2);
    return t;
}

/* The terms of a row for w = +1 (call) or -1 (put), without the input checks (status 0);
 * pg_black_terms_of is the checks and this, so both give the same bits. For BSM,
 * ln(F/K) = ln(S/K) + (r - q) T and dF/dS = exp((r - q) T): the log's argument no longer
 * waits on exp and a division (F / K), and dF/dS needs no division (F / S). F and DF are
 * pg_forward_df's bits; ln(F/K) and dF/dS within an ulp or two of the former ones. Price +
 * 5 Greeks, BSM, one thread, 1e6 rows, against the former terms in the same process
 * (2-core VM, medians of 31 interleaved runs): 0.93x. */
PG_INLINE pg_black_terms pg_black_terms_core(int model, double w, double strike, double time,
                                             double underlying, double rate, double dividend,
                                             double vol)
{
    const int bsm = (model == PG_MODEL_BSM);
    const double bT = bsm ? (rate - dividend) * time : 0.0;
    const double lu = (model == PG_MODEL_BACHELIER) ? 0.0 : log(underlying / strike);
    const double DF = exp(-rate * time);
    const double ds = bsm ? exp(bT) : 1.0;
    const double F = bsm ? underlying * ds : underlying;
    const double x = bsm ? lu + bT : lu;
    return pg_black_terms_from(model, w, strike, time, rate, dividend, vol, F, DF, ds, sqrt(time), x);
}

/* 1 when the price, F or DF of a row's terms is not finite. */
PG_INLINE int pg_black_terms_nonfinite(const pg_black_terms *t)
{
    return !(pg_finite(t->price) & pg_finite(t->F) & pg_finite(t->DF));
}

/* The status of a row from its inputs and its terms' F, DF and price: the bits of the
 * failed checks, else PG_NOT_FINITE when one of those is not finite, else 0. */
PG_INLINE int pg_black_row_status(int model, int option_type, double strike, double time,
                                  double underlying, double rate, double dividend, double vol,
                                  double F, double DF, double price)
{
    const int s = pg_check_inputs(model, option_type, strike, time, underlying, rate, dividend)
                  | pg_check_vol(vol);
    const int finite = pg_finite(price) & pg_finite(F) & pg_finite(DF);
    return s | ((s == 0 && !finite) ? PG_NOT_FINITE : 0);
}

PG_INLINE pg_black_terms pg_black_terms_of(int model, int option_type, double strike,
                                           double time, double underlying, double rate,
                                           double dividend, double vol)
{
    /* The checks first: computed after the terms, they kept every input live across the
     * vector math calls (spilled), 2 ms slower per 1e6 rows. */
    const int s = pg_check_inputs(model, option_type, strike, time, underlying, rate, dividend)
                  | pg_check_vol(vol);
    pg_black_terms t = pg_black_terms_core(model, (option_type == PG_PUT) ? -1.0 : 1.0, strike,
                                           time, underlying, rate, dividend, vol);
    t.status = s | ((s == 0 && pg_black_terms_nonfinite(&t)) ? PG_NOT_FINITE : 0);
    return t;
}

PG_INLINE double pg_black_price(int model, const pg_black_terms *t)
{
    (void)model;
    return t->price;
}

/* dV/dU */
PG_INLINE double pg_black_delta(int model, const pg_black_terms *t)
{
    (void)model;
    return t->DF * t->ds * t->w * t->N1;
}

/* d2V/dU2 */
PG_INLINE double pg_black_gamma(int model, const pg_black_terms *t)
{
    double g = (model == PG_MODEL_BACHELIER) ? t->DF * t->pdf / t->sd
                                             : t->DF * t->ds * t->ds * t->pdf / (t->F * t->sd);
    return t->expiry ? 0.0 : g;
}

/* dV/dvol per 1.00 of vol */
PG_INLINE double pg_black_vega(int model, const pg_black_terms *t)
{
    double v = (model == PG_MODEL_BACHELIER) ? t->DF * t->pdf * t->sqrtT
                                             : t->DF * t->F * t->pdf * t->sqrtT;
    return t->expiry ? 0.0 : v;
}

/* -dV/dT per year */
PG_INLINE double pg_black_theta(int model, const pg_black_terms *t)
{
    double th;
    if (model == PG_MODEL_BACHELIER) {
        th = t->r * t->price - 0.5 * t->DF * t->pdf * t->vol / t->sqrtT;
    } else {
        th = -0.5 * t->DF * t->F * t->pdf * t->vol / t->sqrtT
             + t->w * t->DF * (t->qe * t->F * t->N1 - t->r * t->K * t->N2);
    }
    return t->expiry ? 0.0 : th;
}

/* dV/dr: BSM with q fixed, otherwise with F fixed */
PG_INLINE double pg_black_rho(int model, const pg_black_terms *t)
{
    double rho = (model == PG_MODEL_BSM) ? t->w * t->T * t->DF * t->K * t->N2
                                         : -t->T * t->price;
    return t->expiry ? 0.0 : rho;
}

/* dV/dq (BSM only) */
PG_INLINE double pg_black_dividend_rho(int model, const pg_black_terms *t)
{
    double dr = (model == PG_MODEL_BSM) ? -t->w * t->T * t->DF * t->F * t->N1 : 0.0;
    return t->expiry ? 0.0 : dr;
}

/* d2V/dU dvol */
PG_INLINE double pg_black_vanna(int model, const pg_black_terms *t)
{
    double va = -t->DF * t->ds * t->pdf * t->d2 / t->vol;
    return t->expiry ? 0.0 : va;
}

/* d2V/dvol2 */
PG_INLINE double pg_black_volga(int model, const pg_black_terms *t)
{
    return pg_black_vega(model, t) * t->d1 * t->d2 / t->vol;
}

/* d(delta)/dt per year = -d(delta)/dT */
PG_INLINE double pg_black_charm(int model, const pg_black_terms *t)
{
    double c;
    if (model == PG_MODEL_BACHELIER) {
        c = t->r * pg_black_delta(model, t) + 0.5 * t->DF * t->pdf * t->d1 / t->T;
    } else {
        const double b = t->r - t->qe;
        c = t->qe * pg_black_delta(model, t)
            - t->DF * t->ds * t->pdf * (b / t->sd - 0.5 * t->d2 / t->T);
    }
    return t->expiry ? 0.0 : c;
}

/* One measure by its code (0.0 for an unknown code). */
PG_INLINE double pg_black_measure(int code, int model, const pg_black_terms *t)
{
    switch (code) {
    case PG_MEASURE_PRICE:        return pg_black_price(model, t);
    case PG_MEASURE_DELTA:        return pg_black_delta(model, t);
    case PG_MEASURE_GAMMA:        return pg_black_gamma(model, t);
    case PG_MEASURE_VEGA:         return pg_black_vega(model, t);
    case PG_MEASURE_THETA:        return pg_black_theta(model, t);
    case PG_MEASURE_RHO:          return pg_black_rho(model, t);
    case PG_MEASURE_DIVIDEND_RHO: return pg_black_dividend_rho(model, t);
    case PG_MEASURE_VANNA:        return pg_black_vanna(model, t);
    case PG_MEASURE_VOLGA:        return pg_black_volga(model, t);
    case PG_MEASURE_CHARM:        return pg_black_charm(model, t);
    default:                      return 0.0;
    }
}

/* One trade: fills out[code] for the price and every code whose bit (1 << code) is set in
 * mask (other entries untouched), and *forward, *df. Returns the status; a row with a
 * non-zero status gets NaN in *forward, *df and every out[1..PG_MEASURE_MAX]. */
static inline int pg_black_point(int model, int option_type, double strike, double time,
                                 double underlying, double rate, double dividend, double vol,
                                 int mask, double out[PG_MEASURE_MAX + 1],
                                 double *forward, double *df)
{
    pg_black_terms t = pg_black_terms_of(model, option_type, strike, time, underlying,
                                         rate, dividend, vol);
    int status = t.status;
    mask |= 1 << PG_MEASURE_PRICE;
    for (int code = PG_MEASURE_PRICE; code <= PG_MEASURE_MAX; code++) {
        if (mask & (1 << code)) {
            out[code] = pg_black_measure(code, model, &t);
            status |= (status == 0 && !pg_finite(out[code])) ? PG_NOT_FINITE : 0;
        }
    }
    *forward = t.F;
    *df = t.DF;
    if (status) {
        for (int code = PG_MEASURE_PRICE; code <= PG_MEASURE_MAX; code++)
            out[code] = NAN;
        *forward = NAN;
        *df = NAN;
    }
    return status;
}

/* ------------------------------------------------------------------ block loop */

/* Inputs of a batch: each has n entries, or one entry (its bit set in `broadcast`). */
typedef struct {
    const int *option_type;
    const double *strike, *time, *underlying, *rate, *dividend, *vol;
    int broadcast;  /* bit PG_IN_<name> set: that input has length 1 */
    ptrdiff_t n;    /* rows in the batch (bounds the prefetch of the next block) */
} pg_black_inputs;

#define PG_IN_OPTION_TYPE  (1 << 0)
#define PG_IN_STRIKE       (1 << 1)
#define PG_IN_TIME         (1 << 2)
#define PG_IN_UNDERLYING   (1 << 3)
#define PG_IN_RATE         (1 << 4)
#define PG_IN_DIVIDEND     (1 << 5)
#define PG_IN_VOL          (1 << 6)

/* Prefetch [p, p + bytes) into cache, for reading (rw 0) or writing (rw 1). Each loop of
 * a block touches an output row (or an input) for PG_BLACK_BLOCK rows only; without this
 * the hardware prefetcher sees short bursts and the stores wait on memory. */
#define PG_LINE 64
PG_INLINE void pg_prefetch(const void *p, size_t bytes, int rw)
{
    const char *c = (const char *)p;
    for (size_t off = 0; off < bytes; off += PG_LINE) {
        if (rw) __builtin_prefetch(c + off, 1, 3);
        else    __builtin_prefetch(c + off, 0, 3);
    }
}

/* The inputs of rows [start, start + m), except broadcast ones. */
PG_INLINE void pg_black_prefetch_inputs(const pg_black_inputs *in, ptrdiff_t start, int m)
{
    const int bc = in->broadcast;
    const size_t bytes = (size_t)m * sizeof(double);
    if (!(bc & PG_IN_OPTION_TYPE)) pg_prefetch(in->option_type + start, (size_t)m * sizeof(int), 0);
    if (!(bc & PG_IN_STRIKE))      pg_prefetch(in->strike + start, bytes, 0);
    if (!(bc & PG_IN_TIME))        pg_prefetch(in->time + start, bytes, 0);
    if (!(bc & PG_IN_UNDERLYING))  pg_prefetch(in->underlying + start, bytes, 0);
    if (!(bc & PG_IN_RATE))        pg_prefetch(in->rate + start, bytes, 0);
    if (!(bc & PG_IN_DIVIDEND))    pg_prefetch(in->dividend + start, bytes, 0);
    if (!(bc & PG_IN_VOL))         pg_prefetch(in->vol + start, bytes, 0);
}

/* A block's inputs: pointers into the caller's arrays at the block's first row, or, for
 * a broadcast input, into a buffer holding its value m times (so every loop reads
 * contiguous data); then the shared terms, one array per field. */
typedef struct {
    const int *type;
    const double *K, *T, *U, *r, *q, *vol;
    PG_ALIGNED int type_b[PG_BLACK_BLOCK];
    PG_ALIGNED double K_b[PG_BLACK_BLOCK], T_b[PG_BLACK_BLOCK], U_b[PG_BLACK_BLOCK],
        r_b[PG_BLACK_BLOCK], q_b[PG_BLACK_BLOCK], vol_b[PG_BLACK_BLOCK];
    PG_ALIGNED int status[PG_BLACK_BLOCK];
    PG_ALIGNED double w[PG_BLACK_BLOCK], F[PG_BLACK_BLOCK], DF[PG_BLACK_BLOCK],
        ds[PG_BLACK_BLOCK], sqrtT[PG_BLACK_BLOCK], sd[PG_BLACK_BLOCK], d1[PG_BLACK_BLOCK],
        d2[PG_BLACK_BLOCK], pdf[PG_BLACK_BLOCK], N1[PG_BLACK_BLOCK], N2[PG_BLACK_BLOCK],
        price[PG_BLACK_BLOCK];
} pg_black_buffers;

PG_INLINE const double *pg_block_input_d(double *buf, const double *src, ptrdiff_t start,
                                         int m, int bcast)
{
    if (!bcast)
        return src + start;
    const double v = src[0];
    for (int i = 0; i < m; i++) buf[i] = v;
    return buf;
}

PG_INLINE const int *pg_block_input_i(int *buf, const int *src, ptrdiff_t start, int m,
                                      int bcast)
{
    if (!bcast)
        return src + start;
    const int v = src[0];
    for (int i = 0; i < m; i++) buf[i] = v;
    return buf;
}

/* The terms of row i of the block, as pg_black_terms_of computed them. The fields a
 * measure does not read are dead loads, which the compiler drops. */
PG_INLINE pg_black_terms pg_black_load(const int model, const pg_black_buffers *b, int i)
{
    pg_black_terms t;
    t.status = b->status[i];
    t.T = b->T[i];
    t.expiry = (t.T == 0.0);
    t.w = b->w[i];
    t.K = b->K[i];
    t.r = b->r[i];
    t.qe = (model == PG_MODEL_BSM) ? b->q[i] : t.r;
    t.vol = b->vol[i];
    t.F = b->F[i];
    t.DF = b->DF[i];
    t.ds = (model == PG_MODEL_BSM) ? b->ds[i] : 1.0;
    t.sqrtT = b->sqrtT[i];
    t.sd = b->sd[i];
    t.d1 = b->d1[i];
    t.d2 = b->d2[i];
    t.pdf = b->pdf[i];
    t.N1 = b->N1[i];
    t.N2 = b->N2[i];
    t.price = b->price[i];
    return t;
}

/* One requested measure over the block: o[i] = FN(model, terms of row i); `nonfinite`
 * becomes 1 if any value is not finite (a register reduction, no per-row store). */
#define PG_BLACK_MEASURE_LOOP(FN)                                        \
    do {                                                                 \
        _Pragma("omp simd reduction(|:nonfinite)")                       \
        for (int i = 0; i < m; i++) {                                    \
            const pg_black_terms t = pg_black_load(model, b, i);         \
            const double v = FN(model, &t);                              \
            o[i] = v;                                                    \
            nonfinite |= !pg_finite(v);                                  \
        }                                                                \
    } while (0)

/* Measure ``code`` over the block through PG_BLACK_MEASURE_LOOP (the names it uses: model,
 * b, m, o, nonfinite); one dispatch for this kernel and the snapshot path's one pass. */
#define PG_BLACK_MEASURE_SWITCH(code)                                                  \
    switch (code) {                                                                    \
    case PG_MEASURE_PRICE:        PG_BLACK_MEASURE_LOOP(pg_black_price); break;        \
    case PG_MEASURE_DELTA:        PG_BLACK_MEASURE_LOOP(pg_black_delta); break;        \
    case PG_MEASURE_GAMMA:        PG_BLACK_MEASURE_LOOP(pg_black_gamma); break;        \
    case PG_MEASURE_VEGA:         PG_BLACK_MEASURE_LOOP(pg_black_vega); break;         \
    case PG_MEASURE_THETA:        PG_BLACK_MEASURE_LOOP(pg_black_theta); break;        \
    case PG_MEASURE_RHO:          PG_BLACK_MEASURE_LOOP(pg_black_rho); break;          \
    case PG_MEASURE_DIVIDEND_RHO: PG_BLACK_MEASURE_LOOP(pg_black_dividend_rho); break; \
    case PG_MEASURE_VANNA:        PG_BLACK_MEASURE_LOOP(pg_black_vanna); break;        \
    case PG_MEASURE_VOLGA:        PG_BLACK_MEASURE_LOOP(pg_black_volga); break;        \
    case PG_MEASURE_CHARM:        PG_BLACK_MEASURE_LOOP(pg_black_charm); break;        \
    default:                      break;  /* the caller validates the codes */         \
    }

/* The checks of pg_check_inputs and pg_check_vol that are not finiteness: a known option
 * type, time >= 0, vol > 0, and strike, underlying > 0 except for Bachelier (a NaN fails
 * them). With the finiteness of every input, pg_check_inputs | pg_check_vol == 0. */
PG_INLINE int pg_black_signs_ok(const int model, int option_type, double strike, double time,
                                double underlying, double vol)
{
    int ok = ((unsigned)option_type - (unsigned)PG_CALL <= (unsigned)(PG_PUT - PG_CALL));
    ok &= (time >= 0.0) & (vol > 0.0);
    if (model != PG_MODEL_BACHELIER)
        ok &= (strike > 0.0) & (underlying > 0.0);
    return ok;
}

/* The measure sets computed in the terms loop (bit 1 << code per measure). */
#define PG_BLACK_SET_PRICE (1 << PG_MEASURE_PRICE)
#define PG_BLACK_SET_DELTA (PG_BLACK_SET_PRICE | (1 << PG_MEASURE_DELTA))
#define PG_BLACK_SET_FIRST (PG_BLACK_SET_DELTA | (1 << PG_MEASURE_GAMMA) | (1 << PG_MEASURE_VEGA) \
                            | (1 << PG_MEASURE_THETA) | (1 << PG_MEASURE_RHO))

/* The terms loop with the measures in BODY (PG_BLACK_FUSED_OUT statements) computed from
 * each row's terms `t`; keeps F and DF of each row in the block arrays. `bad` is a filter:
 * 1 when some row of the block may have failed (the caller then assigns each row its exact
 * status). A row passes on a few signs (pg_black_signs_ok) and one finiteness test of the
 * sum of its inputs, F, DF and each measure times 0: a NaN or infinite term makes the sum
 * NaN or infinite (inf - inf is NaN, inf * 0 is NaN), and a sum that overflows from finite
 * terms only sends the block to the exact checks. The measures enter as v * 0, not v: added
 * as they are, gcc contracted theta differently from the per-measure loop (an ulp apart).
 * Every fused set has the price among its measures. Against a finiteness test of each input
 * and value: 14.1-14.5 -> 13.9-14.2 ms per 1e6 rows, price + 5 Greeks, BSM, one thread. */
#define PG_BLACK_FUSED_LOOP(...)                                                        \
    do {                                                                                \
        _Pragma("omp simd reduction(|:bad)")                                            \
        for (int i = 0; i < PG_BLACK_BLOCK; i++) {                                      \
            const int ok_ = pg_black_signs_ok(model, type[i], K[i], T[i], U[i], vol[i]); \
            double sum_ = ((K[i] + T[i]) + (U[i] + r[i]))                               \
                          + (((model == PG_MODEL_BSM) ? q[i] : 0.0) + vol[i]);          \
            const pg_black_terms t = pg_black_terms_core(model,                         \
                (type[i] == PG_PUT) ? -1.0 : 1.0, K[i], T[i], U[i], r[i], q[i], vol[i]);  \
            sum_ += t.F + t.DF;                                                         \
            b->F[i] = t.F;                                                              \
            b->DF[i] = t.DF;                                                            \
            double zero_ = 0.0;                                                         \
            __VA_ARGS__                                                                 \
            bad |= !ok_ | !pg_finite(sum_ + zero_);                                     \
        }                                                                               \
    } while (0)

#define PG_BLACK_FUSED_OUT(O, FN)                                        \
    do {                                                                 \
        const double v_ = FN(model, &t);                                 \
        (O)[i] = v_;                                                     \
        zero_ += v_ * 0.0;                                               \
    } while (0)

/* Rows [start, start + m) of a batch (m <= PG_BLACK_BLOCK). Writes measure measures[j] to
 * out[j * ldo + row] for j < k, forward/df (each may be NULL) and status[row]. Returns
 * the number of rows with a non-zero status. The model is a compile-time constant in each
 * of the three instances below, so every model branch folds away. */
PG_INLINE ptrdiff_t pg_black_block_impl(const int model, const pg_black_inputs *in,
                                        ptrdiff_t start, int m, const int *measures, int k,
                                        double *out, ptrdiff_t ldo, double *forward,
                                        double *df, int *status)
{
    pg_black_buffers buffers;
    pg_black_buffers *b = &buffers;
    const int bc = in->broadcast;

    /* Outputs and inputs of the next block (a block's outputs were prefetched by the block
     * before it: a block's worth ahead, the stores find their lines in cache; prefetching a
     * block's own outputs at its start was 0.5 ms slower per 1e6 rows, price + 5 Greeks). */
    if (start + 2 * m <= in->n) {
        const ptrdiff_t next = start + m;
        for (int j = 0; j < k; j++) pg_prefetch(out + j * ldo + next, (size_t)m * sizeof(double), 1);
        pg_prefetch(status + next, (size_t)m * sizeof(int), 1);
        if (forward) pg_prefetch(forward + next, (size_t)m * sizeof(double), 1);
        if (df) pg_prefetch(df + next, (size_t)m * sizeof(double), 1);
    }
    if (start + m < in->n) {
        const ptrdiff_t rest = in->n - (start + m);
        pg_black_prefetch_inputs(in, start + m, rest < PG_BLACK_BLOCK ? (int)rest : PG_BLACK_BLOCK);
    }

    b->type = pg_block_input_i(b->type_b, in->option_type, start, m, bc & PG_IN_OPTION_TYPE);
    b->K = pg_block_input_d(b->K_b, in->strike, start, m, bc & PG_IN_STRIKE);
    b->T = pg_block_input_d(b->T_b, in->time, start, m, bc & PG_IN_TIME);
    b->U = pg_block_input_d(b->U_b, in->underlying, start, m, bc & PG_IN_UNDERLYING);
    b->r = pg_block_input_d(b->r_b, in->rate, start, m, bc & PG_IN_RATE);
    b->vol = pg_block_input_d(b->vol_b, in->vol, start, m, bc & PG_IN_VOL);
    /* The dividend is read for BSM only (the forward is given otherwise). */
    b->q = (model == PG_MODEL_BSM)
               ? pg_block_input_d(b->q_b, in->dividend, start, m, bc & PG_IN_DIVIDEND)
               : b->r;

    const int *type = b->type;
    const double *K = b->K, *T = b->T, *U = b->U, *r = b->r, *q = b->q, *vol = b->vol;
    int nonfinite = 0;

    /* The set of requested measures and where each goes. The common sets (price; price
     * and delta; price, delta, gamma, vega, theta and rho; in any order, each once) are
     * computed in the terms loop itself: nothing goes through the block arrays, and terms
     * no requested measure reads (n(d1) for the price alone) are dead code. Any other set
     * takes the general path: the terms loop, then one loop per measure. (Price + 5
     * Greeks, BSM, one thread, 1e6 rows, on the 2-core VM with AVX-512: fused 16.9 ms,
     * general path 18.2 ms, medians of 21 interleaved runs; an earlier build measured the
     * fused loop slower, 21.4 against 17.0 ns per row.) */
    /* Full blocks only: the rows of a block's vector loop and those of its scalar or
     * narrower remainder may differ in the last bits (libmvec against libm), and the two
     * paths compile to different remainders; in a full block every row runs in the main
     * vector loop of either path, so a row's values do not depend on the measure set. */
    const int full = (m == PG_BLACK_BLOCK);
    double *op[PG_MEASURE_MAX + 1] = {0};
    int set = 0, dup = 0;
    for (int j = 0; j < k; j++) {
        const int code = measures[j];
        if (code < 1 || code > PG_MEASURE_MAX) { dup = 1; continue; }
        dup |= (set >> code) & 1;
        set |= 1 << code;
        op[code] = out + j * ldo + start;
    }
    const int fused = !dup && full && (set == PG_BLACK_SET_PRICE || set == PG_BLACK_SET_DELTA
                                       || set == PG_BLACK_SET_FIRST);
    if (fused) {
        /* One boolean per row (inputs valid, price/F/DF and measures finite), OR-reduced;
         * the status bits are assembled only for a block where some row failed. */
        int bad = 0;
        double *const o1 = op[PG_MEASURE_PRICE], *const o2 = op[PG_MEASURE_DELTA];
        double *const o3 = op[PG_MEASURE_GAMMA], *const o4 = op[PG_MEASURE_VEGA];
        double *const o5 = op[PG_MEASURE_THETA], *const o6 = op[PG_MEASURE_RHO];
        if (set == PG_BLACK_SET_PRICE) {
            PG_BLACK_FUSED_LOOP(PG_BLACK_FUSED_OUT(o1, pg_black_price););
        } else if (set == PG_BLACK_SET_DELTA) {
            PG_BLACK_FUSED_LOOP(PG_BLACK_FUSED_OUT(o1, pg_black_price);
                                PG_BLACK_FUSED_OUT(o2, pg_black_delta););
        } else {
            PG_BLACK_FUSED_LOOP(PG_BLACK_FUSED_OUT(o1, pg_black_price);
                                PG_BLACK_FUSED_OUT(o2, pg_black_delta);
                                PG_BLACK_FUSED_OUT(o3, pg_black_gamma);
                                PG_BLACK_FUSED_OUT(o4, pg_black_vega);
                                PG_BLACK_FUSED_OUT(o5, pg_black_theta);
                                PG_BLACK_FUSED_OUT(o6, pg_black_rho););
        }
        if (!bad) {
            memset(status + start, 0, (size_t)m * sizeof(int));
            if (forward) memcpy(forward + start, b->F, (size_t)m * sizeof(double));
            if (df) memcpy(df + start, b->DF, (size_t)m * sizeof(double));
            return 0;
        }
        for (int i = 0; i < m; i++)  /* rare: name each row's failure (the price is o1) */
            b->status[i] = pg_black_row_status(model, type[i], K[i], T[i], U[i], r[i], q[i],
                                               vol[i], b->F[i], b->DF[i], o1[i]);
        nonfinite = 1;  /* the measures' own checks, below */
    } else {
    #pragma omp simd
    for (int i = 0; i < m; i++) {
        const pg_black_terms t = pg_black_terms_of(model, type[i], K[i], T[i], U[i], r[i],
                                                   q[i], vol[i]);
        b->status[i] = t.status;
        b->w[i] = t.w;
        b->F[i] = t.F;
        b->DF[i] = t.DF;
        if (model == PG_MODEL_BSM) b->ds[i] = t.ds;
        b->sqrtT[i] = t.sqrtT;
        b->sd[i] = t.sd;
        b->d1[i] = t.d1;
        b->d2[i] = t.d2;
        b->pdf[i] = t.pdf;
        b->N1[i] = t.N1;
        b->N2[i] = t.N2;
        b->price[i] = t.price;
    }

    for (int j = 0; j < k; j++) {
        double *o = out + j * ldo + start;
        PG_BLACK_MEASURE_SWITCH(measures[j]);
    }
    }  /* general path */

    if (nonfinite) {  /* rare: some measure overflowed; find its rows */
        for (int j = 0; j < k; j++) {
            const double *o = out + j * ldo + start;
            for (int i = 0; i < m; i++)
                if (b->status[i] == 0 && !pg_finite(o[i])) b->status[i] = PG_NOT_FINITE;
        }
    }
    int nbad = 0;
    #pragma omp simd reduction(+:nbad)
    for (int i = 0; i < m; i++) nbad += (b->status[i] != 0);
    memcpy(status + start, b->status, (size_t)m * sizeof(int));
    if (forward) memcpy(forward + start, b->F, (size_t)m * sizeof(double));
    if (df) memcpy(df + start, b->DF, (size_t)m * sizeof(double));
    if (nbad) {  /* rare: NaN out every output of a failed row */
        for (int i = 0; i < m; i++) {
            if (b->status[i] == 0) continue;
            for (int j = 0; j < k; j++) out[j * ldo + start + i] = NAN;
            if (forward) forward[start + i] = NAN;
            if (df) df[start + i] = NAN;
        }
    }
    return nbad;
}

static ptrdiff_t pg_black_block_bsm(const pg_black_inputs *in, ptrdiff_t start, int m,
                                    const int *measures, int k, double *out, ptrdiff_t ldo,
                                    double *forward, double *df, int *status)
{
    return pg_black_block_impl(PG_MODEL_BSM, in, start, m, measures, k, out, ldo, forward, df, status);
}

static ptrdiff_t pg_black_block_black76(const pg_black_inputs *in, ptrdiff_t start, int m,
                                        const int *measures, int k, double *out, ptrdiff_t ldo,
                                        double *forward, double *df, int *status)
{
    return pg_black_block_impl(PG_MODEL_BLACK76, in, start, m, measures, k, out, ldo, forward, df, status);
}

static ptrdiff_t pg_black_block_bachelier(const pg_black_inputs *in, ptrdiff_t start, int m,
                                          const int *measures, int k, double *out, ptrdiff_t ldo,
                                          double *forward, double *df, int *status)
{
    return pg_black_block_impl(PG_MODEL_BACHELIER, in, start, m, measures, k, out, ldo, forward, df, status);
}

static inline ptrdiff_t pg_black_block_full(int model, const pg_black_inputs *in, ptrdiff_t start,
                                            int m, const int *measures, int k, double *out,
                                            ptrdiff_t ldo, double *forward, double *df, int *status);

#define PG_BLACK_PAD_MEASURES 16

/* A block of m < PG_BLACK_BLOCK rows, computed as a full block: the rows copied into
 * local arrays, padded with copies of the last row, outputs copied back. So every row of
 * every call takes the same vector path, and a row's values depend only on its inputs,
 * never on its position in a batch (a tail block's narrower or scalar loop may differ from
 * the vector lanes in the last bits): the same option in a scenario cube, in a batch or in
 * a chunk of it gives the same bits. */
static ptrdiff_t pg_black_block_padded(int model, const pg_black_inputs *in, ptrdiff_t start,
                                       int m, const int *measures, int k, double *out,
                                       ptrdiff_t ldo, double *forward, double *df, int *status)
{
    enum { B = PG_BLACK_BLOCK };
    PG_ALIGNED int type_p[B], st_p[B];
    PG_ALIGNED double K_p[B], T_p[B], U_p[B], r_p[B], q_p[B], v_p[B], f_p[B], d_p[B];
    PG_ALIGNED double o_p[PG_BLACK_PAD_MEASURES * B];
    const int bc = in->broadcast;
    for (int i = 0; i < B; i++) {
        const ptrdiff_t row = start + (i < m ? i : m - 1);
        type_p[i] = in->option_type[(bc & PG_IN_OPTION_TYPE) ? 0 : row];
        K_p[i] = in->strike[(bc & PG_IN_STRIKE) ? 0 : row];
        T_p[i] = in->time[(bc & PG_IN_TIME) ? 0 : row];
        U_p[i] = in->underlying[(bc & PG_IN_UNDERLYING) ? 0 : row];
        r_p[i] = in->rate[(bc & PG_IN_RATE) ? 0 : row];
        q_p[i] = (model == PG_MODEL_BSM) ? in->dividend[(bc & PG_IN_DIVIDEND) ? 0 : row] : 0.0;  /* BSM only */
        v_p[i] = in->vol[(bc & PG_IN_VOL) ? 0 : row];
    }
    pg_black_inputs p = {type_p, K_p, T_p, U_p, r_p, q_p, v_p, 0, B};
    pg_black_block_full(model, &p, 0, B, measures, k, o_p, B, f_p, d_p, st_p);
    ptrdiff_t nbad = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < k; j++) out[j * ldo + start + i] = o_p[j * B + i];
        if (forward) forward[start + i] = f_p[i];
        if (df) df[start + i] = d_p[i];
        status[start + i] = st_p[i];
        nbad += (st_p[i] != 0);
    }
    return nbad;
}

/* Dispatch on the model (the caller validates it; an unknown model prices nothing). A
 * block of fewer than PG_BLACK_BLOCK rows is computed padded to a full one. */
static inline ptrdiff_t pg_black_block(int model, const pg_black_inputs *in, ptrdiff_t start,
                                       int m, const int *measures, int k, double *out,
                                       ptrdiff_t ldo, double *forward, double *df, int *status)
{
    if (model != PG_MODEL_BSM && model != PG_MODEL_BLACK76 && model != PG_MODEL_BACHELIER)
        return 0;  /* an unknown model prices nothing (the caller validates it) */
    if (m > 0 && m < PG_BLACK_BLOCK && k <= PG_BLACK_PAD_MEASURES)
        return pg_black_block_padded(model, in, start, m, measures, k, out, ldo, forward, df, status);
    return pg_black_block_full(model, in, start, m, measures, k, out, ldo, forward, df, status);
}

static inline ptrdiff_t pg_black_block_full(int model, const pg_black_inputs *in, ptrdiff_t start,
                                            int m, const int *measures, int k, double *out,
                                            ptrdiff_t ldo, double *forward, double *df, int *status)
{
    switch (model) {
    case PG_MODEL_BSM:
        return pg_black_block_bsm(in, start, m, measures, k, out, ldo, forward, df, status);
    case PG_MODEL_BLACK76:
        return pg_black_block_black76(in, start, m, measures, k, out, ldo, forward, df, status);
    case PG_MODEL_BACHELIER:
        return pg_black_block_bachelier(in, start, m, measures, k, out, ldo, forward, df, status);
    default:
        return 0;
    }
}

#endif
