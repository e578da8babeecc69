/* European digitals under Black-Scholes-Merton: cash-or-nothing, asset-or-nothing and gap;
 * price and analytic Greeks; the SIMD block loop.
 *
 * 1. Pointwise: pg_digital_check (status bits), pg_digital_terms_of (the two building
 *    blocks below with every derivative, for one valid row), pg_digital_measure (one
 *    measure from them). Columns, in the order of digital_price_batch:
 *      payoff, option_type | K, T, Q, K2 | S, r, q, vol
 * 2. Block loop: pg_digital_block: one `omp simd` loop computes status and the terms of
 *    every row into block arrays, then one small `omp simd` loop per requested measure.
 * 3. Numerics (Haug 2nd ed. sec. 4.19.1 cash-or-nothing, 4.19.2 asset-or-nothing, 4.19.3
 *    gap; M. Rubinstein and E. Reiner, "Unscrambling the binary code", Risk 4(9), 1991).
 *    phi = +1 call / -1 put, s = vol sqrt(T), d1 = (ln(S/K) + (b + vol^2/2) T)/s, d2 = d1 - s:
 *      asset  X_a = S e^{-qT} N(phi d1)         cash (per unit) X_c = e^{-rT} N(phi d2)
 *      cash-or-nothing  Q X_c;  asset-or-nothing  X_a;
 *      gap (pays S - K2 if S > K, call; K2 - S if S < K, put)  phi (X_a - K2 X_c).
 *    Greeks of X = A N(phi d) by the chain rule, n' = -d n:
 *      X_p  = A_p N + phi A n d_p
 *      X_pq = A_pq N + phi (A_p n d_q + A_q n d_p) + phi A n (d_pq - d d_p d_q)
 *    with d_S = 1/(S s), d_SS = -1/(S^2 s), d1_vol = -d2/vol, d2_vol = -d1/vol,
 *    d_vol,vol = (d1 + d2)/vol^2, d_S,vol = -1/(S s vol), d1_T = (b + vol^2/2)/s - d1/(2T),
 *    d2_T = (b - vol^2/2)/s - d2/(2T), d_S,T = -1/(2 T S s), d_r = T/s = -d_q; A = S e^{-qT}
 *    (A_S = e^{-qT}, A_T = -q A, A_q = -T A) or e^{-rT} (A_T = -r A, A_r = -T A). Written
 *    out per measure below, the densities divided first (n/s), so that a row with n = 0
 *    gives 0, not 0 * inf. Units: common.proto's (theta = -dV/dT, charm = -d delta/dT).
 *    d1, d2 are clamped to [-40, 40] as in pg_black.h (n and N(-|d|) are 0 there already).
 *    T = 0: price = payout times the step 1{phi (S - K) > 0} (1/2 at S == K); delta =
 *    e^{-qT} dA/dS times the step (asset and gap legs); every other Greek 0.
 * 4. Status: PG_BAD_VARIANT (payoff not 1, 2, 3), PG_BAD_OPTION_TYPE, PG_BAD_STRIKE, the
 *    market bits, PG_BAD_REBATE (Q not finite or < 0), PG_BAD_PAYOFF_STRIKE (K2 not finite
 *    or < 0): both checked on every row, also where the payoff does not read them (Q is
 *    cash-or-nothing's, K2 the gap's), so that no value is ignored silently. Valid rows whose price
 *    or a requested measure is not finite get PG_NOT_FINITE; failed rows are NaN.
 */
#ifndef PG_DIGITAL_H
#define PG_DIGITAL_H

#include "pg_barrier.h"

#define PG_DIGITAL_CASH   1
#define PG_DIGITAL_ASSET  2
#define PG_DIGITAL_GAP    3

PG_INLINE int pg_digital_check(int payoff, int option_type, double K, double T, double Q,
                               double K2, double S, double r, double q, double vol)
{
    int s = pg_check_market(T, S, r, q, vol);
    s |= (payoff >= PG_DIGITAL_CASH && payoff <= PG_DIGITAL_GAP) ? 0 : PG_BAD_VARIANT;
    s |= (option_type == PG_CALL || option_type == PG_PUT) ? 0 : PG_BAD_OPTION_TYPE;
    s |= (K > 0.0 && K <= PG_DBL_MAX) ? 0 : PG_BAD_STRIKE;
    /* cash and payoff strike are checked whether or not the payoff reads them */
    s |= (Q >= 0.0 && Q <= PG_DBL_MAX) ? 0 : PG_BAD_REBATE;
    s |= (K2 >= 0.0 && K2 <= PG_DBL_MAX) ? 0 : PG_BAD_PAYOFF_STRIKE;
    return s;
}

/* The two legs of one row and the coefficients that combine them. */
typedef struct {
    double ca, cc;         /* price = ca X_a + cc X_c (a zero coefficient leaves its leg out) */
    double phi, S, T, r, q, vol, sd, sqrtT, d1, d2, n1, n2, N1, N2, DQ, DF, b;
    int expiry;
    double step;
} pg_digital_terms;

PG_INLINE pg_digital_terms pg_digital_terms_of(int payoff, int option_type, double K, double T,
                                               double Q, double K2, double S, double r,
                                               double q, double vol)
{
    pg_digital_terms t;
    t.phi = (option_type == PG_PUT) ? -1.0 : 1.0;
    t.ca = (payoff == PG_DIGITAL_ASSET) ? 1.0 : ((payoff == PG_DIGITAL_GAP) ? t.phi : 0.0);
    t.cc = (payoff == PG_DIGITAL_CASH) ? Q : ((payoff == PG_DIGITAL_GAP) ? -t.phi * K2 : 0.0);
    t.S = S;
    t.T = T;
    t.r = r;
    t.q = q;
    t.vol = vol;
    t.b = r - q;
    t.expiry = (T == 0.0);
    t.sqrtT = sqrt(T);
    const double sd = vol * t.sqrtT;
    t.sd = (sd > PG_DBL_MIN) ? sd : PG_DBL_MIN;
    const double x = (log(S / K) + t.b * T) / t.sd + 0.5 * t.sd;
    t.d1 = pg_clamp_d(x);
    t.d2 = pg_clamp_d(x - t.sd);
    t.n1 = pg_npdf(t.d1);
    t.n2 = pg_npdf(t.d2);
    t.step = (t.phi * (S - K) > 0.0) ? 1.0 : ((S == K) ? 0.5 : 0.0);
    t.N1 = t.expiry ? t.step : pg_ncdf(t.phi * t.d1);
    t.N2 = t.expiry ? t.step : pg_ncdf(t.phi * t.d2);
    t.DQ = pg_exp(-q * T);
    t.DF = pg_exp(-r * T);
    return t;
}

/* Measure `code` of the asset leg X_a = S e^{-qT} N(phi d1). */
PG_INLINE double pg_digital_asset(int code, const pg_digital_terms tv)
{
    const pg_digital_terms *t = &tv;
    const double phi = t->phi, S = t->S, s = t->sd, vol = t->vol, T = t->T;
    const double d1 = t->d1, d2 = t->d2, A = S * t->DQ;
    const double ns = t->n1 / s;                        /* n(d1)/s */
    const double d1T = (t->b + 0.5 * vol * vol) / s - d1 / (2.0 * T);
    double v;
    switch (code) {
    case PG_MEASURE_PRICE: v = A * t->N1; break;
    case PG_MEASURE_DELTA: v = t->DQ * t->N1 + (t->expiry ? 0.0 : phi * t->DQ * ns); break;
    case PG_MEASURE_GAMMA: v = -phi * t->DQ * (ns / s) * d2 / S; break;
    case PG_MEASURE_VEGA:  v = -phi * A * t->n1 * d2 / vol; break;
    case PG_MEASURE_THETA: v = t->q * A * t->N1 - phi * A * (t->n1 * d1T); break;
    case PG_MEASURE_RHO:   v = phi * A * ns * T; break;
    case PG_MEASURE_DIVIDEND_RHO: v = -T * A * t->N1 - phi * A * ns * T; break;
    case PG_MEASURE_VANNA: v = phi * t->DQ * (ns * (d1 * d2 - 1.0) - t->n1 * d2) / vol; break;
    case PG_MEASURE_VOLGA: v = phi * A * t->n1 * (d1 + d2 - d1 * d2 * d2) / (vol * vol); break;
    case PG_MEASURE_CHARM: /* -X_ST */
        v = t->q * t->DQ * t->N1
            - phi * t->DQ * (t->n1 * d1T - t->q * ns - ns / (2.0 * T) - ns * d1 * d1T);
        break;
    default: v = 0.0;
    }
    return (t->expiry && code != PG_MEASURE_PRICE && code != PG_MEASURE_DELTA) ? 0.0 : v;
}

/* Measure `code` of the unit cash leg X_c = e^{-rT} N(phi d2). */
PG_INLINE double pg_digital_cash(int code, const pg_digital_terms tv)
{
    const pg_digital_terms *t = &tv;
    const double phi = t->phi, S = t->S, s = t->sd, vol = t->vol, T = t->T;
    const double d1 = t->d1, d2 = t->d2, A = t->DF;
    const double nss = (t->n2 / s) / S;                 /* n(d2)/(S s) */
    const double d2T = (t->b - 0.5 * vol * vol) / s - d2 / (2.0 * T);
    double v;
    switch (code) {
    case PG_MEASURE_PRICE: v = A * t->N2; break;
    case PG_MEASURE_DELTA: v = phi * A * nss; break;
    case PG_MEASURE_GAMMA: v = -phi * A * (nss / (S * s)) * d1; break;
    case PG_MEASURE_VEGA:  v = -phi * A * t->n2 * d1 / vol; break;
    case PG_MEASURE_THETA: v = t->r * A * t->N2 - phi * A * (t->n2 * d2T); break;
    case PG_MEASURE_RHO:   v = -T * A * t->N2 + phi * A * (t->n2 / s) * T; break;
    case PG_MEASURE_DIVIDEND_RHO: v = -phi * A * (t->n2 / s) * T; break;
    case PG_MEASURE_VANNA: v = phi * A * nss * (d1 * d2 - 1.0) / vol; break;
    case PG_MEASURE_VOLGA: v = phi * A * t->n2 * (d1 + d2 - d2 * d1 * d1) / (vol * vol); break;
    case PG_MEASURE_CHARM: /* -X_ST */
        v = -phi * A * nss * (-t->r - 1.0 / (2.0 * T) - d2 * d2T);
        break;
    default: v = 0.0;
    }
    return (t->expiry && code != PG_MEASURE_PRICE) ? 0.0 : v;
}

PG_INLINE double pg_digital_measure(int code, const pg_digital_terms t)
{
    return pg_term(t.ca, pg_digital_asset(code, t)) + pg_term(t.cc, pg_digital_cash(code, t));
}

/* The price of one row whose status is 0. */
PG_INLINE double pg_digital_value(int payoff, int option_type, double K, double T, double Q,
                                  double K2, double S, double r, double q, double vol)
{
    const pg_digital_terms t = pg_digital_terms_of(payoff, option_type, K, T, Q, K2, S, r, q, vol);
    return pg_digital_measure(PG_MEASURE_PRICE, t);
}

/* ------------------------------------------------------------------ block */

enum { PG_DG_PAYOFF, PG_DG_OPTION };
enum { PG_DG_K, PG_DG_T, PG_DG_Q, PG_DG_K2, PG_DG_S, PG_DG_RATE, PG_DG_DIV, PG_DG_VOL };

#define PG_DG_DFIELDS(X) \
    X(ca) X(cc) X(phi) X(S) X(T) X(r) X(q) X(vol) X(sd) X(sqrtT) X(d1) X(d2) X(n1) X(n2) \
    X(N1) X(N2) X(DQ) X(DF) X(b) X(step)
#define PG_DG_IFIELDS(X) X(expiry)
#define PG_DG_ARRAY_D(f) PG_ALIGNED double f[PG_BARRIER_BLOCK];
#define PG_DG_ARRAY_I(f) PG_ALIGNED int f[PG_BARRIER_BLOCK];
typedef struct {
    PG_DG_DFIELDS(PG_DG_ARRAY_D)
    PG_DG_IFIELDS(PG_DG_ARRAY_I)
} pg_digital_rows;
#define PG_DG_STORE(f) rows->f[i] = t.f;
#define PG_DG_LOAD(f) t.f = rows->f[i];

#define PG_DIGITAL_MEASURE_LOOP(CODE)                                   \
    do {                                                                \
        _Pragma("omp simd")                                             \
        for (int i = 0; i < mc; i++) {                                  \
            pg_digital_terms t;                                         \
            PG_DG_DFIELDS(PG_DG_LOAD)                                   \
            PG_DG_IFIELDS(PG_DG_LOAD)                                   \
            res[i] = pg_digital_measure(CODE, t);                       \
        }                                                               \
    } while (0)

static ptrdiff_t pg_digital_block(const pg_cols *in, ptrdiff_t start, int m, const int *measures,
                                  int k, double *out, ptrdiff_t ldo, int *status)
{
    pg_block_cols cols;
    pg_digital_rows rs;
    pg_digital_rows *rows = &rs;
    PG_ALIGNED int st[PG_BARRIER_BLOCK];
    PG_ALIGNED double price[PG_BARRIER_BLOCK], res[PG_BARRIER_BLOCK];
    const int mc = pg_load_cols_padded(in, start, m, &cols);
    const int *pay = cols.I[PG_DG_PAYOFF], *ot = cols.I[PG_DG_OPTION];
    const double *K = cols.D[PG_DG_K], *T = cols.D[PG_DG_T], *Q = cols.D[PG_DG_Q],
                 *K2 = cols.D[PG_DG_K2], *S = cols.D[PG_DG_S], *r = cols.D[PG_DG_RATE],
                 *q = cols.D[PG_DG_DIV], *vol = cols.D[PG_DG_VOL];
    #pragma omp simd
    for (int i = 0; i < mc; i++) {
        st[i] = pg_digital_check(pay[i], ot[i], K[i], T[i], Q[i], K2[i], S[i], r[i], q[i], vol[i]);
        const pg_digital_terms t = pg_digital_terms_of(pay[i], ot[i], K[i], T[i], Q[i], K2[i],
                                                       S[i], r[i], q[i], vol[i]);
        PG_DG_DFIELDS(PG_DG_STORE)
        PG_DG_IFIELDS(PG_DG_STORE)
        price[i] = pg_digital_measure(PG_MEASURE_PRICE, t);
    }
    int nonfinite = 0;
    for (int j = 0; j < k; j++) {
        double *o = out + j * ldo + start;
        switch (measures[j]) {
        case PG_MEASURE_PRICE:        for (int i = 0; i < mc; i++) res[i] = price[i]; break;
        case PG_MEASURE_DELTA:        PG_DIGITAL_MEASURE_LOOP(PG_MEASURE_DELTA); break;
        case PG_MEASURE_GAMMA:        PG_DIGITAL_MEASURE_LOOP(PG_MEASURE_GAMMA); break;
        case PG_MEASURE_VEGA:         PG_DIGITAL_MEASURE_LOOP(PG_MEASURE_VEGA); break;
        case PG_MEASURE_THETA:        PG_DIGITAL_MEASURE_LOOP(PG_MEASURE_THETA); break;
        case PG_MEASURE_RHO:          PG_DIGITAL_MEASURE_LOOP(PG_MEASURE_RHO); break;
        case PG_MEASURE_DIVIDEND_RHO: PG_DIGITAL_MEASURE_LOOP(PG_MEASURE_DIVIDEND_RHO); break;
        case PG_MEASURE_VANNA:        PG_DIGITAL_MEASURE_LOOP(PG_MEASURE_VANNA); break;
        case PG_MEASURE_VOLGA:        PG_DIGITAL_MEASURE_LOOP(PG_MEASURE_VOLGA); break;
        case PG_MEASURE_CHARM:        PG_DIGITAL_MEASURE_LOOP(PG_MEASURE_CHARM); break;
        default: break;
        }
        for (int i = 0; i < m; i++) {
            o[i] = res[i];
            nonfinite |= !pg_finite(res[i]);
        }
    }
    return pg_fd_finish(st, price, nonfinite, m, k, out, ldo, start, status);
}

#endif
