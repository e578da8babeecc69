/* Analytic average-price (fixed-strike) Asian options under Black-Scholes-Merton: the
 * pointwise formulas and the block loop built from them. The design note with references
 * and pages is at the top of asian.pyx.
 *
 * 1. Every supported case is priced as a lognormal "Black" value
 *        V = DF c B(F, K, v),   B = w (F N(w d1) - K N(w d2)),  d1,2 = ln(F/K)/sqrt(v) +- sqrt(v)/2
 *    of a forward F, a strike K and a total log-variance v, times the weight c of the part
 *    of the average still to come (c = 1 for geometric averages):
 *      geometric     the average of the future log-prices is normal, so B is exact
 *                    (Kemna-Vorst continuous, the discrete form of QuantLib's
 *                    AnalyticDiscreteGeometricAveragePriceAsianEngine);
 *      arithmetic    the future part of the average is taken lognormal with its exact first
 *                    two moments (Turnbull-Wakeman; Levy for continuous averaging, the same
 *                    approximation); the known part moves into the strike
 *                    K* = K + (past weight / future weight)(K - running average). K* <= 0
 *                    means exercise is certain: B = F - K* for a call, 0 for a put, exactly.
 *    pg_asian_terms_of validates a row and writes F, K, v, c and the partial
 *    derivatives of ln F, v, K and c in S, b = r - q, vol and calendar time that the
 *    Greeks need (section 4); pg_asian_black evaluates B and its partials; pg_asian_measure
 *    assembles one measure.
 * 2. Block loop (pg_asian_block): for each row of the block the terms (scalar: a discrete
 *    row loops over its own fixings), then one `omp simd` loop for the discount factor, the
 *    forward's exponential, B and its partials (libmvec log, exp, erfc), then one loop per
 *    requested measure. The terms are written in place (a struct returned by value and
 *    reloaded in pieces stalls store forwarding; measured 40% of a geometric row).
 * 3. Moments without cancellation:
 *    discrete arithmetic, future fixing times t_1 < ... < t_n, f_i = exp(b t_i):
 *        E[A_f] = S/n sum f_i,   E[A_f^2]/E[A_f]^2 - 1 = X / (sum f_i)^2,
 *        X = sum_i f_i expm1(vol^2 t_i) (f_i + 2 sum_{j>i} f_j)       (all terms >= 0)
 *    continuous arithmetic over the remaining tau (p = b tau, s2 = vol^2 tau, q = 2p + s2):
 *        E[A_f] = S exp[0, p],  E[A_f^2] = 2 S^2 exp[0, p, q],
 *        E[A_f^2]/E[A_f]^2 - 1 = 2 s2 exp[0, p, 2p, q] / exp[0, p]^2
 *    where exp[x0, ..., xk] is the divided difference of exp, computed by pg_expdd*
 *    (Taylor series about the centre when the nodes span less than 1, Newton's recursion on
 *    sorted nodes otherwise; no division by b, b + vol^2 or 2b + vol^2, so b = 0, b = -vol^2
 *    and b = -vol^2/2 are exact and their neighbourhoods lose no digits). v = log1p(...).
 * 4. Greeks, analytic for every case (derivatives of the formula as written):
 *        delta = DF c B_F alpha F/S               (F proportional to S^alpha)
 *        gamma = DF c (B_FF (alpha F/S)^2 + B_F alpha (alpha - 1) F/S^2)
 *        vega  = DF c (B_F F dlnF/dvol + B_v dv/dvol)
 *        rho   = -T V + DF c (B_F F dlnF/db + B_v dv/db),  dividend_rho = -(that bracket) DF c
 *        theta = r V + DF (dc/dt B + c (B_F F dlnF/dt + B_v dv/dt + B_K dK/dt))
 *    with the calendar-time derivatives taken with the schedule fixed in calendar time
 *    (asian.pyx, note 4).
 */
#ifndef PG_ASIAN_H
#define PG_ASIAN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pg_black.h"   /* PG_INLINE, normal cdf/pdf, measure codes, libmvec declarations */

/* The vector variants (libmvec) of the other functions the fixing loops call; see
 * pg_black.h for why glibc's own declarations do not do. */
#if defined(PG_SIMD_MATH) && __GLIBC_PREREQ(2, 35)
extern double expm1(double) PG_SIMD_MATH;
extern double log1p(double) PG_SIMD_MATH;
#endif

#define PG_ASIAN_ARITHMETIC 1
#define PG_ASIAN_GEOMETRIC  2
#define PG_ASIAN_TURNBULL_WAKEMAN 1
#define PG_ASIAN_LEVY             2
#define PG_ASIAN_MEASURE_MAX 7   /* price .. dividend_rho */

#define PG_ASIAN_BLOCK 32
#define PG_ASIAN_CHUNK 64       /* fixings per vector chunk of the discrete arithmetic sums */

/* Bits of pg_asian_inputs.broadcast (input of length 1). */
#define PG_AS_IN_AVERAGING  (1 << 0)
#define PG_AS_IN_TYPE       (1 << 1)
#define PG_AS_IN_STRIKE     (1 << 2)
#define PG_AS_IN_TIME       (1 << 3)
#define PG_AS_IN_RUNNING    (1 << 4)
#define PG_AS_IN_PAST       (1 << 5)
#define PG_AS_IN_ELAPSED    (1 << 6)
#define PG_AS_IN_SPOT       (1 << 7)
#define PG_AS_IN_RATE       (1 << 8)
#define PG_AS_IN_DIVIDEND   (1 << 9)
#define PG_AS_IN_VOL        (1 << 10)

/* ------------------------------------------------------------------ divided differences */

/* Taylor terms of the divided-difference series (nodes within 1/2 of their centre):
 * the remainder after PG_DD_TERMS is below 1e-19 of the leading term. */
#define PG_DD_TERMS 17
#define PG_DD_SPAN  1.0

static const double pg_inv_factorial[PG_DD_TERMS + 5] = {
    1.0, 1.0, 0.5, 1.6666666666666666e-01, 4.1666666666666664e-02, 8.3333333333333332e-03,
    1.3888888888888889e-03, 1.9841269841269841e-04, 2.4801587301587302e-05,
    2.7557319223985893e-06, 2.7557319223985888e-07, 2.5052108385441720e-08,
    2.0876756987868100e-09, 1.6059043836821613e-10, 1.1470745597729725e-11,
    7.6471637318198164e-13, 4.7794773323873853e-14, 2.8114572543455206e-15,
    1.5619206968586225e-16, 8.2206352466243295e-18, 4.1103176233121648e-19,
    1.9572941063391263e-20};

/* exp[0, x] = expm1(x)/x, 1 at x = 0 */
PG_INLINE double pg_phi(double x) { return x == 0.0 ? 1.0 : expm1(x) / x; }

/* exp[a, b] for any a, b (stable: no difference of exponentials) */
PG_INLINE double pg_expdd2(double a, double b)
{
    const double lo = a < b ? a : b, hi = a < b ? b : a;
    return exp(lo) * pg_phi(hi - lo);
}

/* exp[y_0, ..., y_k] by the series exp(c) sum_j h_j(y - c) / (j + k)!, h_j the complete
 * homogeneous symmetric polynomials, c the centre of the nodes (|y - c| <= 1/2 here). */
static inline double pg_expdd_taylor(const double *y, int k, double lo, double hi)
{
    const double c = 0.5 * (lo + hi);
    double h[PG_DD_TERMS + 1];
    const double z0 = y[0] - c;
    h[0] = 1.0;
    for (int j = 1; j <= PG_DD_TERMS; j++) h[j] = h[j - 1] * z0;
    for (int l = 1; l <= k; l++) {
        const double z = y[l] - c;
        for (int j = 1; j <= PG_DD_TERMS; j++) h[j] += z * h[j - 1];
    }
    double sum = 0.0;
    for (int j = PG_DD_TERMS; j >= 0; j--) sum += h[j] * pg_inv_factorial[j + k];
    return exp(c) * sum;
}

#define PG_SWAP_IF(a, b) do { if ((b) < (a)) { const double t_ = (a); (a) = (b); (b) = t_; } } while (0)

/* exp[y0, y1, y2], nodes in any order */
static inline double pg_expdd3(double y0, double y1, double y2)
{
    PG_SWAP_IF(y0, y1); PG_SWAP_IF(y1, y2); PG_SWAP_IF(y0, y1);
    const double span = y2 - y0;
    if (span < PG_DD_SPAN) {
        const double y[3] = {y0, y1, y2};
        return pg_expdd_taylor(y, 2, y0, y2);
    }
    return (pg_expdd2(y1, y2) - pg_expdd2(y0, y1)) / span;
}

/* exp[y0, y1, y2, y3], nodes in any order */
static inline double pg_expdd4(double y0, double y1, double y2, double y3)
{
    PG_SWAP_IF(y0, y1); PG_SWAP_IF(y2, y3); PG_SWAP_IF(y0, y2); PG_SWAP_IF(y1, y3);
    PG_SWAP_IF(y1, y2);
    const double span = y3 - y0;
    if (span < PG_DD_SPAN) {
        const double y[4] = {y0, y1, y2, y3};
        return pg_expdd_taylor(y, 3, y0, y3);
    }
    return (pg_expdd3(y1, y2, y3) - pg_expdd3(y0, y1, y2)) / span;
}

/* ------------------------------------------------------------------ schedules */

/* Summary of one schedule of n > 0 future fixing times. */
typedef struct {
    int ok;        /* finite, > 0, strictly increasing */
    double last;   /* t_n */
    double sum_t;  /* sum t_i */
    double var_t;  /* sum_{i,j} min(t_i, t_j) = sum_i t_i (2 (n - i) + 1), i = 1..n */
} pg_asian_schedule;

static inline pg_asian_schedule pg_asian_scan(const double *t, int n)
{
    pg_asian_schedule s;
    int ok = 1;
    double prev = 0.0, sum_t = 0.0, var_t = 0.0;
    for (int i = 0; i < n; i++) {
        const double ti = t[i];
        ok &= (ti > prev) & (ti <= PG_DBL_MAX);
        prev = ti;
        sum_t += ti;
        var_t += ti * (double)(2 * (n - 1 - i) + 1);
    }
    s.ok = ok;
    s.last = prev;
    s.sum_t = sum_t;
    s.var_t = var_t;
    return s;
}

/* ------------------------------------------------------------------ terms of one row */

typedef struct {
    int status;     /* pg_status.h bits */
    int expiry;     /* T == 0 (continuous averaging only): intrinsic value, Greeks 0 but delta */
    double w;       /* +1 call, -1 put */
    double S, T, r; /* spot, time to expiry, rate (DF = exp(-r T) is taken in the vector loop) */
    double c;       /* weight of the future part of the average */
    double F0, x;   /* lognormal forward F = F0 exp(x) (the exponential in the vector loop) */
    double K, v;    /* effective strike, total log-variance */
    double alpha;   /* F is proportional to S^alpha */
    double dlnF_db, dv_db;   /* d/d(cost of carry b = r - q) */
    double dlnF_ds, dv_ds;   /* d/d(vol) */
    double dlnF_dt, dv_dt, dK_dt, dc_dt;  /* d/d(calendar time), schedule fixed in calendar time */
} pg_asian_terms;

/* Sums over the future fixings of a discrete arithmetic average (f_i = exp(b t_i),
 * e_i = exp(vol^2 t_i), R_i = sum_{j>i} f_j, RT_i = sum_{j>i} t_j f_j):
 *   a1  = sum f_i                         (E[A_f] = S a1 / n)
 *   a1b = sum t_i f_i                     (d a1 / db)
 *   x2  = sum f_i (e_i - 1)(f_i + 2 R_i)  (E[A_f^2] n^2 / S^2 = a1^2 + x2)
 *   m2b = d(a1^2 + x2)/db = sum e_i f_i (2 t_i f_i + 2 (t_i R_i + RT_i))
 *   m2s = d(a1^2 + x2)/dvol = sum 2 vol t_i e_i f_i (f_i + 2 R_i)
 * One backward pass over the times in chunks; the exponentials of a chunk in one
 * `omp simd` loop. */
static inline void pg_asian_arith_sums(const double *t, int n, double b, double vol, int greeks,
                                       double *a1, double *a1b, double *x2, double *m2b,
                                       double *m2s)
{
    const double s2 = vol * vol;
    double R = 0.0, RT = 0.0, X = 0.0, MB = 0.0, MS = 0.0;
    PG_ALIGNED double f[PG_ASIAN_CHUNK], g[PG_ASIAN_CHUNK];
    for (int hi = n; hi > 0; hi -= PG_ASIAN_CHUNK) {
        const int lo = hi > PG_ASIAN_CHUNK ? hi - PG_ASIAN_CHUNK : 0;
        const int len = hi - lo;
        const double *tc = t + lo;
        #pragma omp simd
        for (int i = 0; i < len; i++) {
            f[i] = exp(b * tc[i]);
            g[i] = expm1(s2 * tc[i]);
        }
        if (greeks) {
            for (int i = len - 1; i >= 0; i--) {
                const double fi = f[i], gi = g[i], ti = tc[i], ei = 1.0 + gi;
                const double pair = fi + 2.0 * R;
                X += fi * gi * pair;
                MB += ei * fi * (2.0 * ti * fi + 2.0 * (ti * R + RT));
                MS += 2.0 * vol * ti * ei * fi * pair;
                R += fi;
                RT += ti * fi;
            }
        } else {
            for (int i = len - 1; i >= 0; i--) {
                const double fi = f[i];
                X += fi * g[i] * (fi + 2.0 * R);
                R += fi;
            }
        }
    }
    *a1 = R;
    *a1b = RT;
    *x2 = X;
    *m2b = MB;
    *m2s = MS;
}

/* Validate one row and write its terms to *t (every field set, none read). `times`/`count`
 * are the row's future fixings (count 0: continuous averaging); `sched` their scan
 * (count > 0). `greeks`: compute the partial derivatives too (else they are 0). Returns
 * the status. */
static inline int pg_asian_terms_of(pg_asian_terms *t, int averaging, int option_type,
                                    double strike, double T, const double *times, int count,
                                    const pg_asian_schedule *sched, double running, int past,
                                    double elapsed, double S, double r, double q, double vol,
                                    int method, int greeks)
{
    int st = 0;
    const int geometric = (averaging == PG_ASIAN_GEOMETRIC);
    const int discrete = count > 0;
    st |= (averaging == PG_ASIAN_ARITHMETIC || geometric) ? 0 : PG_BAD_VARIANT;
    st |= (option_type == PG_CALL || option_type == PG_PUT) ? 0 : PG_BAD_OPTION_TYPE;
    st |= (strike > 0.0 && strike <= PG_DBL_MAX) ? 0 : PG_BAD_STRIKE;
    const int time_ok = (T >= 0.0 && T <= PG_DBL_MAX);
    st |= time_ok ? 0 : PG_BAD_TIME;
    st |= (S > 0.0 && S <= PG_DBL_MAX) ? 0 : PG_BAD_UNDERLYING;
    st |= pg_finite(r) ? 0 : PG_BAD_RATE;
    st |= pg_finite(q) ? 0 : PG_BAD_DIVIDEND;
    st |= pg_check_vol(vol);
    /* The path's state is checked whether or not this row reads it (a discrete row does not
     * read elapsed, a continuous one not past_fixings, a new trade not the average): a
     * running average is a finite price >= 0 (> 0 for a geometric one once it is read: it
     * is logged); past fixings and elapsed time are >= 0. */
    const int begun = discrete ? (past > 0) : (elapsed > 0.0);
    const int running_ok = (running >= 0.0 && running <= PG_DBL_MAX)
                           && !(geometric && begun && !(running > 0.0));
    st |= running_ok ? 0 : PG_BAD_RUNNING;
    st |= (past >= 0) ? 0 : PG_BAD_PAST_FIXINGS;
    st |= (elapsed >= 0.0 && elapsed <= PG_DBL_MAX) ? 0 : PG_BAD_ELAPSED;
    if (discrete) {
        st |= (sched->ok && (!time_ok || sched->last <= T)) ? 0 : PG_BAD_FIXINGS;
        /* Levy's approximation is for continuous averaging only */
        st |= (!geometric && method == PG_ASIAN_LEVY) ? PG_BAD_VARIANT : 0;
    }

    const double b = r - q, s2 = vol * vol;
    t->status = st;
    t->expiry = 0;
    t->w = (option_type == PG_PUT) ? -1.0 : 1.0;
    t->S = S;
    t->T = T;
    t->r = r;
    t->c = 1.0;
    t->F0 = S;
    t->x = 0.0;
    t->K = strike;
    t->v = 0.0;
    t->alpha = 1.0;
    t->dlnF_db = t->dv_db = t->dlnF_ds = t->dv_ds = 0.0;
    t->dlnF_dt = t->dv_dt = t->dK_dt = t->dc_dt = 0.0;
    if (st)
        return st;

    if (!discrete && T == 0.0) {
        /* the average is known: the running one, or spot itself if averaging never began */
        t->expiry = 1;
        t->F0 = elapsed > 0.0 ? running : S;
        t->alpha = elapsed > 0.0 ? 0.0 : 1.0;
        return st;
    }

    if (geometric && discrete) {
        const double n = (double)count, N = n + (double)past;
        const double lnA_S = past > 0 ? log(running / S) : 0.0;
        const double vt = sched->var_t / (N * N);
        t->v = s2 * vt;
        t->x = ((double)past / N) * lnA_S + (b - 0.5 * s2) * sched->sum_t / N + 0.5 * t->v;
        t->alpha = n / N;
        t->dlnF_db = sched->sum_t / N;
        t->dlnF_ds = vol * (vt - sched->sum_t / N);
        t->dv_ds = 2.0 * vol * vt;
        t->dv_dt = -s2 * (n / N) * (n / N);
        t->dlnF_dt = -(b - 0.5 * s2) * (n / N) + 0.5 * t->dv_dt;
    } else if (geometric) {
        /* ln G = (elapsed ln A + int_0^T ln S_u du) / (elapsed + T) */
        const double tot = elapsed + T, kappa = T / tot;
        const double lnA_S = elapsed > 0.0 ? log(running / S) : 0.0;
        const double vt = T * kappa * kappa / 3.0;  /* T^3 / (3 tot^2) */
        t->v = s2 * vt;
        t->x = (1.0 - kappa) * lnA_S + (b - 0.5 * s2) * 0.5 * T * kappa + 0.5 * t->v;
        t->alpha = kappa;
        t->dlnF_db = 0.5 * T * kappa;
        t->dlnF_ds = vol * (vt - 0.5 * T * kappa);
        t->dv_ds = 2.0 * vol * vt;
        t->dv_dt = -s2 * kappa * kappa;
        t->dlnF_dt = -(b - 0.5 * s2) * kappa + 0.5 * t->dv_dt;
    } else if (discrete) {
        /* Turnbull-Wakeman: the future part A_f of the average lognormal with its moments */
        const double n = (double)count, N = n + (double)past;
        double a1, a1b, x2, m2b, m2s;
        pg_asian_arith_sums(times, count, b, vol, greeks, &a1, &a1b, &x2, &m2b, &m2s);
        t->c = n / N;
        t->K = past > 0 ? strike + ((double)past / n) * (strike - running) : strike;
        t->F0 = S * a1 / n;
        t->v = log1p(x2 / (a1 * a1));
        if (greeks) {
            const double m2 = a1 * a1 + x2;
            t->dlnF_db = a1b / a1;
            t->dv_db = m2b / m2 - 2.0 * a1b / a1;
            t->dv_ds = m2s / m2;
            t->dlnF_dt = -b;
            t->dv_dt = -s2;
        }
    } else {
        /* continuous arithmetic (Turnbull-Wakeman = Levy) over the remaining T */
        const double tot = elapsed + T;
        const double p = b * T, qn = 2.0 * p + s2 * T;
        const double phi = pg_phi(p);
        const double d4 = pg_expdd4(0.0, p, 2.0 * p, qn);
        t->c = T / tot;
        t->K = elapsed > 0.0 ? strike + (elapsed / T) * (strike - running) : strike;
        t->F0 = S * phi;
        t->v = log1p(2.0 * s2 * T * d4 / (phi * phi));
        if (greeks) {
            const double dpp = pg_expdd3(0.0, p, p);
            const double d3 = pg_expdd3(0.0, p, qn);
            const double dppq = pg_expdd4(0.0, p, p, qn);
            const double dpqq = pg_expdd4(0.0, p, qn, qn);
            t->dlnF_db = T * dpp / phi;
            t->dv_db = T * (dppq + 2.0 * dpqq) / d3 - 2.0 * T * dpp / phi;
            t->dv_ds = 2.0 * vol * T * dpqq / d3;
            t->dlnF_dt = -b * dpp / phi;
            t->dv_dt = -(b * dppq + (2.0 * b + s2) * dpqq) / d3 + 2.0 * b * dpp / phi;
            t->dK_dt = (t->K - S) / T;
            t->dc_dt = -1.0 / tot;
        }
    }
    return st;
}

/* ------------------------------------------------------------------ Black value and partials */

typedef struct {
    double B, B_F, B_FF, B_v, B_K;
} pg_asian_black_t;

/* B(F, K, v) = w (F N(w d1) - K N(w d2)) and its partials in F, F twice, v and K.
 * K <= 0 (certain exercise): B = F - K for a call, 0 for a put. v == 0: the intrinsic step
 * (half at F == K). */
PG_INLINE pg_asian_black_t pg_asian_black(double w, double F, double K, double v)
{
    pg_asian_black_t o;
    const int certain = !(K > 0.0);
    const int zero_var = !(v > 0.0);
    const double Kp = certain ? 1.0 : K;
    const double sd0 = sqrt(zero_var ? 0.0 : v);
    const double sd = sd0 > PG_DBL_MIN ? sd0 : PG_DBL_MIN;
    const double x = log(F / Kp) / sd + 0.5 * sd;
    const double d1 = pg_clamp_d(x), d2 = pg_clamp_d(x - sd);
    const double step = (w * (F - Kp) > 0.0) ? 1.0 : ((F == Kp) ? 0.5 : 0.0);
    const double N1 = zero_var ? step : pg_norm_cdf_d(w * d1);
    const double N2 = zero_var ? step : pg_norm_cdf_d(w * d2);
    const double pdf = zero_var ? 0.0 : pg_norm_pdf_d(d1);
    const double call = (w > 0.0) ? 1.0 : 0.0;
    o.B = certain ? call * (F - K) : w * (F * N1 - Kp * N2);
    o.B_F = certain ? call : w * N1;
    o.B_FF = certain ? 0.0 : pdf / (F * sd);
    o.B_v = certain ? 0.0 : 0.5 * F * pdf / sd;
    o.B_K = certain ? -call : -w * N2;
    return o;
}

/* One measure (codes 1..7) from a row's terms, its forward F and discount factor DF, and
 * its Black partials. */
PG_INLINE double pg_asian_measure(int code, const pg_asian_terms *t, double F, double DF,
                                  const pg_asian_black_t *k)
{
    const double dc = DF * t->c;
    const double FS = t->alpha * F / t->S;
    switch (code) {
    case PG_MEASURE_PRICE:
        return dc * k->B;
    case PG_MEASURE_DELTA:
        return dc * k->B_F * FS;
    case PG_MEASURE_GAMMA:
        return dc * (k->B_FF * FS * FS + k->B_F * (t->alpha - 1.0) * FS / t->S);
    case PG_MEASURE_VEGA:
        return dc * (k->B_F * F * t->dlnF_ds + k->B_v * t->dv_ds);
    case PG_MEASURE_THETA:
        if (t->expiry) return 0.0;
        return t->r * dc * k->B
               + DF * (t->dc_dt * k->B
                       + t->c * (k->B_F * F * t->dlnF_dt + k->B_v * t->dv_dt + k->B_K * t->dK_dt));
    case PG_MEASURE_RHO:
        return -t->T * dc * k->B + dc * (k->B_F * F * t->dlnF_db + k->B_v * t->dv_db);
    case PG_MEASURE_DIVIDEND_RHO:
        return -dc * (k->B_F * F * t->dlnF_db + k->B_v * t->dv_db);
    default:
        return 0.0;
    }
}

/* ------------------------------------------------------------------ block loop */

typedef struct {
    const int *averaging, *option_type;
    const double *strike, *time;
    const double *fixing_times;   /* all rows' future fixing times, concatenated */
    const int *fixing_counts;     /* per row, or one shared schedule (shared = 1) */
    const int64_t *offsets;       /* per-row schedules: row i's first time (NULL when shared) */
    int shared;
    pg_asian_schedule shared_scan; /* the shared schedule's scan (count > 0) */
    const double *running_average;
    const int *past_fixings;
    const double *elapsed;
    const double *spot, *rate, *dividend, *vol;
    int broadcast;                /* PG_AS_IN_* bits: that input has length 1 */
    int method;                   /* PG_ASIAN_TURNBULL_WAKEMAN or PG_ASIAN_LEVY */
    ptrdiff_t n;
} pg_asian_inputs;

/* Called once per batch: the shared schedule's scan. */
static inline void pg_asian_prepare(pg_asian_inputs *in)
{
    memset(&in->shared_scan, 0, sizeof in->shared_scan);
    if (in->shared && in->fixing_counts[0] > 0)
        in->shared_scan = pg_asian_scan(in->fixing_times, in->fixing_counts[0]);
}

#define PG_AS_AT(ptr, bit, i) ((bc & (bit)) ? (ptr)[0] : (ptr)[i])

/* Rows [start, start + m) (m <= PG_ASIAN_BLOCK): writes measures[j] of row i to
 * out[j * ldo + i] and status[i]; returns the number of rows with a non-zero status. */
static ptrdiff_t pg_asian_block(const pg_asian_inputs *in, ptrdiff_t start, int m,
                                const int *measures, int k, double *out, ptrdiff_t ldo,
                                int *status)
{
    pg_asian_terms t[PG_ASIAN_BLOCK];
    PG_ALIGNED double w[PG_ASIAN_BLOCK], F0[PG_ASIAN_BLOCK], x[PG_ASIAN_BLOCK], K[PG_ASIAN_BLOCK],
        v[PG_ASIAN_BLOCK], rT[PG_ASIAN_BLOCK], F[PG_ASIAN_BLOCK], DF[PG_ASIAN_BLOCK];
    PG_ALIGNED double B[PG_ASIAN_BLOCK], BF[PG_ASIAN_BLOCK], BFF[PG_ASIAN_BLOCK],
        Bv[PG_ASIAN_BLOCK], BK[PG_ASIAN_BLOCK];
    const int bc = in->broadcast;
    int greeks = 0;
    for (int j = 0; j < k; j++) greeks |= (measures[j] != PG_MEASURE_PRICE);

    for (int i = 0; i < m; i++) {
        const ptrdiff_t row = start + i;
        int count;
        const double *times;
        pg_asian_schedule own;
        const pg_asian_schedule *sched = &in->shared_scan;
        if (in->shared) {
            count = in->fixing_counts[0];
            times = in->fixing_times;
        } else {
            count = in->fixing_counts[row];
            times = in->fixing_times + in->offsets[row];
            if (count > 0) {
                own = pg_asian_scan(times, count);
                sched = &own;
            }
        }
        const int bad = pg_asian_terms_of(&t[i], PG_AS_AT(in->averaging, PG_AS_IN_AVERAGING, row),
                                          PG_AS_AT(in->option_type, PG_AS_IN_TYPE, row),
                                          PG_AS_AT(in->strike, PG_AS_IN_STRIKE, row),
                                          PG_AS_AT(in->time, PG_AS_IN_TIME, row), times, count, sched,
                                          PG_AS_AT(in->running_average, PG_AS_IN_RUNNING, row),
                                          PG_AS_AT(in->past_fixings, PG_AS_IN_PAST, row),
                                          PG_AS_AT(in->elapsed, PG_AS_IN_ELAPSED, row),
                                          PG_AS_AT(in->spot, PG_AS_IN_SPOT, row),
                                          PG_AS_AT(in->rate, PG_AS_IN_RATE, row),
                                          PG_AS_AT(in->dividend, PG_AS_IN_DIVIDEND, row),
                                          PG_AS_AT(in->vol, PG_AS_IN_VOL, row), in->method, greeks) != 0;
        /* a failed row is priced on harmless values and NaN-ed below */
        w[i] = bad ? 1.0 : t[i].w;
        F0[i] = bad ? 1.0 : t[i].F0;
        x[i] = bad ? 0.0 : t[i].x;
        K[i] = bad ? 1.0 : t[i].K;
        v[i] = bad ? 1.0 : t[i].v;
        rT[i] = bad ? 0.0 : t[i].r * t[i].T;
    }
    /* A short block is padded with copies of its last row and computed whole: every row
     * of every call takes the full block's vector path (libmvec), never a narrower or
     * scalar remainder, whose last bits may differ; so a trade priced alone (a block of one
     * row) and the same trade anywhere in a batch give the same bits. */
    for (int i = m; i < PG_ASIAN_BLOCK; i++) {
        w[i] = w[m - 1];
        F0[i] = F0[m - 1];
        x[i] = x[m - 1];
        K[i] = K[m - 1];
        v[i] = v[m - 1];
        rT[i] = rT[m - 1];
    }

    #pragma omp simd
    for (int i = 0; i < PG_ASIAN_BLOCK; i++) {
        DF[i] = exp(-rT[i]);
        F[i] = F0[i] * exp(x[i]);
        const pg_asian_black_t o = pg_asian_black(w[i], F[i], K[i], v[i]);
        B[i] = o.B;
        BF[i] = o.B_F;
        BFF[i] = o.B_FF;
        Bv[i] = o.B_v;
        BK[i] = o.B_K;
    }

    int nbad = 0;
    for (int i = 0; i < m; i++) {
        const pg_asian_black_t o = {B[i], BF[i], BFF[i], Bv[i], BK[i]};
        int st = t[i].status;
        for (int j = 0; j < k; j++) {
            const double val = pg_asian_measure(measures[j], &t[i], F[i], DF[i], &o);
            out[j * ldo + start + i] = val;
            st |= (st == 0 && !pg_finite(val)) ? PG_NOT_FINITE : 0;
        }
        if (st) {
            for (int j = 0; j < k; j++) out[j * ldo + start + i] = NAN;
            nbad++;
        }
        status[start + i] = st;
    }
    return nbad;
}

#endif
