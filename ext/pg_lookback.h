/* Continuously monitored lookback options under Black-Scholes-Merton: the pointwise formulas
 * and the block loop built from them. The design note with references and pages is at the
 * top of lookback.pyx.
 *
 * 1. One formula for the four cases (eta = +1 call, -1 put; b = r - q, s = vol sqrt(T),
 *    lambda = 2b/vol^2, H the level the payoff is measured from, L = ln(S/H)):
 *        V = eta [S e^{-qT} N(eta d1) - H e^{-rT} N(eta d2) + kappa S e^{-rT} G(zeta)]
 *            + eta e^{-rT} (H - Kf)
 *        d1 = (L + (b + vol^2/2) T)/s,  d2 = d1 - s,
 *        G(zeta) = [(S/H)^{-lambda} N(zeta (d1 - lambda s)) - e^{bT} N(zeta d1)] / lambda
 *      floating strike (Goldman-Sosin-Gatto): H = running minimum (call) or maximum (put),
 *        kappa = +1, zeta = -eta, Kf = H (last term 0);
 *      fixed strike (Conze-Viswanathan): H = max(K, running maximum) (call) or
 *        min(K, running minimum) (put), kappa = -1, zeta = eta, Kf = K.
 * 2. G near b = 0 (0/0): with u = zeta d1 and A(y) = e^{-yL} N(u - zeta y s),
 *        G = (A(lambda) - A(0))/lambda - A(0) (s^2/2) expm1(bT)/(bT)
 *    (exact, since lambda s^2 / 2 = bT); when rho = |lambda| (|L| + s (|u| + 5)) <= 1/4 the
 *    difference quotient is summed as the Taylor series of A (the Cauchy product of the
 *    series of e^{-yL} and of N(u - zeta y s), whose coefficients are Hermite polynomials
 *    times n(u)), PG_LB_TERMS terms (|j-th term| <~ rho^j / j!); at lambda = 0 it is the
 *    exact limit. Otherwise the direct quotient is used: its rounding error, a few eps of
 *    its two terms over |lambda|, is then a few eps / rho <~ 1e-14 relative to G.
 *    (S/H)^{-lambda} N(x) for x < -30 is n(d1) e^{bT} R(x) (the identity
 *    (S/H)^{-lambda} n(d1 - lambda s) = n(d1) e^{bT}, R = N/n the Mills ratio by its
 *    asymptotic series), which cannot overflow.
 * 3. Greeks. With the identity (S/H)^{-lambda} n(d1 - lambda s) = n(d1) e^{bT}, the terms
 *    in n(.) cancel from the spot and vol derivatives of G: dG/dS = -P/S with
 *    P = (S/H)^{-lambda} N(zeta (d1 - lambda s)), and dG/dvol = (2/vol)(L P + G)
 *    + zeta e^{bT} n(d1) sqrt(T). Hence, for every case,
 *        delta = eta [e^{-qT} N(eta d1) + kappa e^{-rT} (G - P)]
 *        gamma = (eta/S) [2 eta e^{-qT} n(d1)/s + kappa (lambda - 1) e^{-rT} P]
 *        vega  = eta kappa (2/vol) S e^{-rT} (L P + G)
 *    (no division by b: G is the stable quotient of note 2), theta from the Black-Scholes
 *    equation theta = r V - b S delta - vol^2 S^2 gamma/2 (the price is a smooth solution
 *    of it at fixed extremum), rho by a four-point central difference in r and
 *    dividend_rho = -T V - rho (V = e^{-rT} times a function of b = r - q).
 * 4. Block loop: pg_lookback_core prices the rows of a block from arrays in one `omp simd`
 *    loop (libmvec exp, log, erfc), keeping G, P and d1, and redoes the rows flagged near
 *    b = 0 with the series, scalar; the Greeks are one more `omp simd` loop over those
 *    pieces, rho four more core passes on bumped rates.
 */
#ifndef PG_LOOKBACK_H
#define PG_LOOKBACK_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "pg_black.h"   /* PG_INLINE, normal cdf/pdf, measure codes, libmvec declarations */

#define PG_LOOKBACK_FLOATING 1
#define PG_LOOKBACK_FIXED    2
#define PG_LOOKBACK_MEASURE_MAX 7

#define PG_LOOKBACK_BLOCK 32
#define PG_LB_TERMS 14          /* Taylor terms of the series for G: 0.25^14/14! < 1e-19 */
#define PG_LB_SERIES_RADIUS 0.25
#define PG_LB_MILLS_X (-30.0)   /* below: Mills ratio by its asymptotic series */

/* Bits of pg_lookback_inputs.broadcast */
#define PG_LB_IN_STRIKE_TYPE (1 << 0)
#define PG_LB_IN_TYPE        (1 << 1)
#define PG_LB_IN_STRIKE      (1 << 2)
#define PG_LB_IN_TIME        (1 << 3)
#define PG_LB_IN_MIN         (1 << 4)
#define PG_LB_IN_MAX         (1 << 5)
#define PG_LB_IN_SPOT        (1 << 6)
#define PG_LB_IN_RATE        (1 << 7)
#define PG_LB_IN_DIVIDEND    (1 << 8)
#define PG_LB_IN_VOL         (1 << 9)

/* The rho step, relative to the scale on which the price varies in r (lookback.pyx, note
 * 4): the four-point stencil's truncation is about PG_LB_FD^4/30 = 5e-13 and its rounding
 * about 1.5 eps / PG_LB_FD = 2e-13 of rho's scale. */
#define PG_LB_FD 0.002

/* ------------------------------------------------------------------ pointwise */

/* R(x) = N(x)/n(x) for x < -30: 1/|x| (1 - 1/x^2 + 3/x^4 - ... ), error below 1e-17 */
PG_INLINE double pg_mills_asymptotic(double x)
{
    const double y = 1.0 / (x * x);
    const double s = 1.0 - y * (1.0 - y * (3.0 - y * (15.0 - y * (105.0 - y * (945.0
                     - y * (10395.0 - y * 135135.0))))));
    return -s / x;
}

/* Validation of one row; the level H and the strike Kf of the formula. */
PG_INLINE int pg_lookback_check(int strike_type, int option_type, double strike, double T,
                                double mn, double mx, double S, double r, double q, double vol)
{
    int st = 0;
    const int fixed = (strike_type == PG_LOOKBACK_FIXED);
    const int call = (option_type == PG_CALL);
    st |= (strike_type == PG_LOOKBACK_FLOATING || fixed) ? 0 : PG_BAD_VARIANT;
    st |= (call || option_type == PG_PUT) ? 0 : PG_BAD_OPTION_TYPE;
    /* a floating strike row does not read the strike: it may be 0 (unset), never non-finite
     * or negative */
    st |= (fixed ? (strike > 0.0 && strike <= PG_DBL_MAX) : (strike >= 0.0 && strike <= PG_DBL_MAX))
              ? 0 : PG_BAD_STRIKE;
    st |= (T >= 0.0 && T <= PG_DBL_MAX) ? 0 : PG_BAD_TIME;
    st |= (S > 0.0 && S <= PG_DBL_MAX) ? 0 : PG_BAD_UNDERLYING;
    st |= pg_finite(r) ? 0 : PG_BAD_RATE;
    st |= pg_finite(q) ? 0 : PG_BAD_DIVIDEND;
    st |= pg_check_vol(vol);
    /* both extremes, the one the row reads (the minimum for floating calls and fixed puts)
     * and the other: finite, > 0 and on their side of the spot (min <= S <= max) */
    const int spot_ok = (S > 0.0 && S <= PG_DBL_MAX);
    st |= (mn > 0.0 && mn <= PG_DBL_MAX && !(spot_ok && mn > S)) ? 0 : PG_BAD_RUNNING;
    st |= (mx > 0.0 && mx <= PG_DBL_MAX && !(spot_ok && mx < S)) ? 0 : PG_BAD_RUNNING_MAX;
    return st;
}

/* The level H the formula measures from (valid rows). */
PG_INLINE double pg_lookback_level(int fixed, int call, double K, double mn, double mx)
{
    if (fixed) return call ? (K > mx ? K : mx) : (K < mn ? K : mn);
    return call ? mn : mx;
}

/* The closed form with the direct quotient for G. Returns V; *G, *P (= (S/H)^{-lambda}
 * N(x), x = zeta (d1 - lambda s)) and *d1 are the pieces the analytic Greeks reuse;
 * *near_zero_carry is set when G must be redone by the series. */
PG_INLINE double pg_lookback_direct(int fixed, double eta, double S, double H, double Kf,
                                    double T, double r, double q, double vol, double *Gout,
                                    double *Pout, double *d1out, int *near_zero_carry)
{
    const double b = r - q, s = vol * sqrt(T), lam = 2.0 * b / (vol * vol);
    const double L = log(S / H);
    const double d1 = (L + (b + 0.5 * vol * vol) * T) / s;
    const double d2 = d1 - s;
    const double zeta = fixed ? eta : -eta;
    const double kappa = fixed ? -1.0 : 1.0;
    const double ebT = exp(b * T), dfr = exp(-r * T), dfq = exp(-q * T);
    const double x = zeta * (L - (b - 0.5 * vol * vol) * T) / s;  /* zeta (d1 - lambda s) */
    const double P_direct = exp(-lam * L) * pg_norm_cdf(x);
    const double P_mills = pg_norm_pdf(d1) * ebT
                           * pg_mills_asymptotic(x < PG_LB_MILLS_X ? x : PG_LB_MILLS_X);
    const double P = (x < PG_LB_MILLS_X) ? P_mills : P_direct;
    const double u = zeta * d1;
    const double G = (P - ebT * pg_norm_cdf(u)) / lam;
    const double rho = fabs(lam) * (fabs(L) + s * (fabs(u) + 5.0));
    *near_zero_carry = !(rho > PG_LB_SERIES_RADIUS);
    *Gout = G;
    *Pout = P;
    *d1out = d1;
    return eta * (S * dfq * pg_norm_cdf(eta * d1) - H * dfr * pg_norm_cdf(eta * d2)
                  + kappa * S * dfr * G)
           + eta * dfr * (H - Kf);
}

/* G near zero carry by the Taylor series (note 2); scalar. */
static inline double pg_lookback_G_series(double zeta, double L, double s, double d1,
                                          double lam, double bT)
{
    double u = zeta * d1;
    u = u > 50.0 ? 50.0 : (u < -50.0 ? -50.0 : u);
    const double Nu = pg_norm_cdf(u), nu = pg_norm_pdf(u);
    /* a_k = (-L)^k / k!, c_i = (-zeta s)^i N^{(i)}(u) / i!,
     * N^{(i)}(u) = (-1)^{i-1} He_{i-1}(u) n(u) for i >= 1 */
    double a[PG_LB_TERMS + 1], c[PG_LB_TERMS + 1];
    a[0] = 1.0;
    for (int k = 1; k <= PG_LB_TERMS; k++) a[k] = a[k - 1] * (-L) / (double)k;
    c[0] = Nu;
    const double h = -zeta * s;
    double he_prev = 0.0, he = 1.0;          /* He_{-1} := 0, He_0 = 1 */
    double hpow = 1.0, sign = 1.0;
    for (int i = 1; i <= PG_LB_TERMS; i++) {
        hpow *= h / (double)i;               /* h^i / i! */
        c[i] = sign * he * nu * hpow;        /* (-1)^{i-1} He_{i-1}(u) n(u) h^i / i! */
        const double he_next = u * he - (double)(i - 1) * he_prev;   /* He_i */
        he_prev = he;
        he = he_next;
        sign = -sign;
    }
    /* (A(lam) - A(0))/lam = sum_{j>=1} lam^{j-1} C_j, C_j = sum_{i=0}^{j} c_i a_{j-i} */
    double acc = 0.0;
    for (int j = PG_LB_TERMS; j >= 1; j--) {
        double Cj = 0.0;
        for (int i = 0; i <= j; i++) Cj += c[i] * a[j - i];
        acc = acc * lam + Cj;
    }
    const double phi = (bT == 0.0) ? 1.0 : expm1(bT) / bT;
    return acc - Nu * 0.5 * s * s * phi;
}

/* Value at expiry: the payoff on the extremum so far (with spot). */
PG_INLINE double pg_lookback_intrinsic(int fixed, double eta, double S, double H, double Kf)
{
    return fixed ? eta * (H - Kf) : eta * (S - H);
}

/* Values of m rows from arrays, with G, P and d1 (rows with T = 0 get their intrinsic
 * value; every row must be valid or replaced by harmless values). One `omp simd` loop,
 * then the rows near zero carry again with the series. */
static inline void pg_lookback_core(int m, const int *fixed, const double *eta, const double *S,
                                    const double *H, const double *Kf, const double *T,
                                    const double *r, const double *q, const double *vol,
                                    double *V, double *G, double *P, double *D1)
{
    int flag[PG_LOOKBACK_BLOCK];
    int any = 0;
    #pragma omp simd reduction(|:any)
    for (int i = 0; i < m; i++) {
        int near = 0;
        double g, p, d1;
        const int expiry = (T[i] == 0.0);
        const double Ti = expiry ? 1.0 : T[i];
        const double v = pg_lookback_direct(fixed[i], eta[i], S[i], H[i], Kf[i], Ti, r[i], q[i],
                                            vol[i], &g, &p, &d1, &near);
        V[i] = expiry ? pg_lookback_intrinsic(fixed[i], eta[i], S[i], H[i], Kf[i]) : v;
        G[i] = g;
        P[i] = p;
        D1[i] = d1;
        flag[i] = near & !expiry;
        any |= flag[i];
    }
    if (!any)
        return;
    for (int i = 0; i < m; i++) {
        if (!flag[i]) continue;
        const double b = r[i] - q[i], s = vol[i] * sqrt(T[i]), lam = 2.0 * b / (vol[i] * vol[i]);
        const double eta_ = eta[i], zeta = fixed[i] ? eta_ : -eta_, kappa = fixed[i] ? -1.0 : 1.0;
        const double d1 = D1[i], dfr = exp(-r[i] * T[i]), dfq = exp(-q[i] * T[i]);
        G[i] = pg_lookback_G_series(zeta, log(S[i] / H[i]), s, d1, lam, b * T[i]);
        V[i] = eta_ * (S[i] * dfq * pg_norm_cdf(eta_ * d1) - H[i] * dfr * pg_norm_cdf(eta_ * (d1 - s))
                       + kappa * S[i] * dfr * G[i])
               + eta_ * dfr * (H[i] - Kf[i]);
    }
}

/* The rho step of one valid row with T > 0 (lookback.pyx, note 4): the price is built from
 * N(d1), N(d2), N(x), exp(-lambda L), exp(bT) and exp(-rT); its rate of change in r is the
 * sum of |d arg/dr| over them, a normal's argument d weighted by 1 + |d| (n(d) varies at
 * rate |d|): sqrt(T)/vol for each d, 2|L|/vol^2 for lambda L, T for bT and rT. The step is
 * PG_LB_FD / rate. */
PG_INLINE double pg_lookback_rate_step(double S, double H, double T, double r, double q,
                                       double vol)
{
    const double b = r - q, sqT = sqrt(T), s = vol * sqT;
    const double L = log(S / H);
    const double d1 = (L + (b + 0.5 * vol * vol) * T) / s, d2 = d1 - s;
    const double x = (L - (b - 0.5 * vol * vol) * T) / s;
    const double a = (1.0 + fabs(d1)) + (1.0 + fabs(d2)) + (1.0 + fabs(x));
    return PG_LB_FD / (a * sqT / vol + 2.0 * fabs(L) / (vol * vol) + 2.0 * T);
}

/* ------------------------------------------------------------------ block loop */

typedef struct {
    const int *strike_type, *option_type;
    const double *strike, *time, *running_min, *running_max;
    const double *spot, *rate, *dividend, *vol;
    int broadcast;
    ptrdiff_t n;
} pg_lookback_inputs;

#define PG_LB_AT(ptr, bit, i) ((bc & (bit)) ? (ptr)[0] : (ptr)[i])

/* Rows [start, start + m) (m <= PG_LOOKBACK_BLOCK): measures[j] of row i to
 * out[j * ldo + i], status[i]; returns the number of rows with a non-zero status. */
static ptrdiff_t pg_lookback_block(const pg_lookback_inputs *in, ptrdiff_t start, int m,
                                   const int *measures, int k, double *out, ptrdiff_t ldo,
                                   int *status)
{
    const int bc = in->broadcast;
    int st[PG_LOOKBACK_BLOCK], fx[PG_LOOKBACK_BLOCK];
    PG_ALIGNED double eta[PG_LOOKBACK_BLOCK], S[PG_LOOKBACK_BLOCK], H[PG_LOOKBACK_BLOCK],
        Kf[PG_LOOKBACK_BLOCK], T[PG_LOOKBACK_BLOCK], r[PG_LOOKBACK_BLOCK],
        q[PG_LOOKBACK_BLOCK], vol[PG_LOOKBACK_BLOCK];
    PG_ALIGNED double V[PG_LOOKBACK_BLOCK], G[PG_LOOKBACK_BLOCK], P[PG_LOOKBACK_BLOCK],
        D1[PG_LOOKBACK_BLOCK], res[PG_LOOKBACK_MEASURE_MAX + 1][PG_LOOKBACK_BLOCK];
    int nbad = 0;

    for (int i = 0; i < m; i++) {
        const ptrdiff_t row = start + i;
        const int stype = PG_LB_AT(in->strike_type, PG_LB_IN_STRIKE_TYPE, row);
        const int otype = PG_LB_AT(in->option_type, PG_LB_IN_TYPE, row);
        const double K = PG_LB_AT(in->strike, PG_LB_IN_STRIKE, row);
        const double Ti = PG_LB_AT(in->time, PG_LB_IN_TIME, row);
        const double mn = PG_LB_AT(in->running_min, PG_LB_IN_MIN, row);
        const double mx = PG_LB_AT(in->running_max, PG_LB_IN_MAX, row);
        const double Si = PG_LB_AT(in->spot, PG_LB_IN_SPOT, row);
        const double ri = PG_LB_AT(in->rate, PG_LB_IN_RATE, row);
        const double qi = PG_LB_AT(in->dividend, PG_LB_IN_DIVIDEND, row);
        const double vi = PG_LB_AT(in->vol, PG_LB_IN_VOL, row);
        st[i] = pg_lookback_check(stype, otype, K, Ti, mn, mx, Si, ri, qi, vi);
        const int bad = st[i] != 0;
        const int fixed = (stype == PG_LOOKBACK_FIXED), call = (otype == PG_CALL);
        fx[i] = bad ? 0 : fixed;
        eta[i] = (bad || call) ? 1.0 : -1.0;
        /* a failed row is evaluated on harmless values and NaN-ed below */
        S[i] = bad ? 1.0 : Si;
        H[i] = bad ? 1.0 : pg_lookback_level(fixed, call, K, mn, mx);
        Kf[i] = bad ? 1.0 : (fixed ? K : H[i]);
        T[i] = bad ? 1.0 : Ti;
        r[i] = bad ? 0.0 : ri;
        q[i] = bad ? 0.0 : qi;
        vol[i] = bad ? 1.0 : vi;
    }
    /* A short block is padded with copies of its last row and every loop below runs over
     * the whole block: every row of every call takes the full block's vector path
     * (libmvec), never a narrower or scalar remainder, whose last bits may differ; so a
     * trade priced alone (a block of one row) and the same trade anywhere in a batch give
     * the same bits. The outputs are written for the m rows only. */
    const int m_rows = m;
    for (int i = m; i < PG_LOOKBACK_BLOCK; i++) {
        fx[i] = fx[m - 1];
        eta[i] = eta[m - 1];
        S[i] = S[m - 1];
        H[i] = H[m - 1];
        Kf[i] = Kf[m - 1];
        T[i] = T[m - 1];
        r[i] = r[m - 1];
        q[i] = q[m - 1];
        vol[i] = vol[m - 1];
    }
    m = PG_LOOKBACK_BLOCK;

    int want[PG_LOOKBACK_MEASURE_MAX + 1] = {0};
    for (int j = 0; j < k; j++) want[measures[j]] = 1;

    pg_lookback_core(m, fx, eta, S, H, Kf, T, r, q, vol, V, G, P, D1);
    memcpy(res[PG_MEASURE_PRICE], V, (size_t)m * sizeof(double));

    /* analytic delta, gamma, vega (lookback.pyx, note 4) and theta from the Black-Scholes
     * equation; at expiry the delta of the payoff with the extremum fixed, the rest 0 */
    if (want[PG_MEASURE_DELTA] | want[PG_MEASURE_GAMMA] | want[PG_MEASURE_VEGA]
        | want[PG_MEASURE_THETA]) {
        #pragma omp simd
        for (int i = 0; i < m; i++) {
            const int expiry = (T[i] == 0.0);
            const double Ti = expiry ? 1.0 : T[i];
            const double e = eta[i], kappa = fx[i] ? -1.0 : 1.0, b = r[i] - q[i];
            const double s = vol[i] * sqrt(Ti), lam = 2.0 * b / (vol[i] * vol[i]);
            const double dfr = exp(-r[i] * Ti), dfq = exp(-q[i] * Ti);
            const double d1 = D1[i], L = log(S[i] / H[i]);
            const double delta = e * (dfq * pg_norm_cdf(e * d1) + kappa * dfr * (G[i] - P[i]));
            const double gamma = (e / S[i]) * (2.0 * e * dfq * pg_norm_pdf(d1) / s
                                               + kappa * (lam - 1.0) * dfr * P[i]);
            const double vega = e * kappa * (2.0 / vol[i]) * S[i] * dfr * (L * P[i] + G[i]);
            const double theta = r[i] * V[i] - b * S[i] * delta
                                 - 0.5 * vol[i] * vol[i] * S[i] * S[i] * gamma;
            res[PG_MEASURE_DELTA][i] = expiry ? (fx[i] ? 0.0 : e) : delta;
            res[PG_MEASURE_GAMMA][i] = expiry ? 0.0 : gamma;
            res[PG_MEASURE_VEGA][i] = expiry ? 0.0 : vega;
            res[PG_MEASURE_THETA][i] = expiry ? 0.0 : theta;
        }
    }

    /* rho by a four-point central difference in r; dividend_rho = -T V - rho exactly
     * (V = e^{-rT} W(r - q, ...)) */
    if (want[PG_MEASURE_RHO] | want[PG_MEASURE_DIVIDEND_RHO]) {
        static const double off[4] = {-2.0, -1.0, 1.0, 2.0};
        PG_ALIGNED double h[PG_LOOKBACK_BLOCK], rb[PG_LOOKBACK_BLOCK], vb[4][PG_LOOKBACK_BLOCK];
        PG_ALIGNED double g_[PG_LOOKBACK_BLOCK], p_[PG_LOOKBACK_BLOCK], d_[PG_LOOKBACK_BLOCK];
        for (int i = 0; i < m; i++)
            h[i] = (T[i] == 0.0) ? 1.0 : pg_lookback_rate_step(S[i], H[i], T[i], r[i], q[i], vol[i]);
        for (int p = 0; p < 4; p++) {
            for (int i = 0; i < m; i++) rb[i] = r[i] + off[p] * h[i];
            pg_lookback_core(m, fx, eta, S, H, Kf, T, rb, q, vol, vb[p], g_, p_, d_);
        }
        for (int i = 0; i < m; i++) {
            const double rho = (vb[0][i] - 8.0 * vb[1][i] + 8.0 * vb[2][i] - vb[3][i]) / (12.0 * h[i]);
            res[PG_MEASURE_RHO][i] = (T[i] == 0.0) ? 0.0 : rho;
            res[PG_MEASURE_DIVIDEND_RHO][i] = (T[i] == 0.0) ? 0.0 : -T[i] * V[i] - rho;
        }
    }

    for (int i = 0; i < m_rows; i++) {
        int s_ = st[i];
        for (int j = 0; j < k; j++) {
            const double val = res[measures[j]][i];
            out[j * ldo + start + i] = val;
            s_ |= (s_ == 0 && !pg_finite(val)) ? PG_NOT_FINITE : 0;
        }
        if (s_) {
            for (int j = 0; j < k; j++) out[j * ldo + start + i] = NAN;
            nbad++;
        }
        status[start + i] = s_;
    }
    return nbad;
}

#endif
