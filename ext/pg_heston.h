/* European options under the Heston (1993) model: the pointwise formulas and the block
 * loop built from them. The design note with references is at the top of heston.pyx.
 *
 * 1. Pointwise:
 *      pg_heston_check     validates one row (pg_status.h bits)
 *      pg_heston_cf_b      characteristic function of X = ln(S_T / F), "little trap" form,
 *                          with B = d ln(phi)/d v0 (the Greeks need it)
 *      pg_heston_cutoff    the truncation point U (a vectorised ladder of evaluations)
 *      pg_heston_runs      the quadrature grid as runs of equal Gauss-Legendre panels for
 *                          one (T, v0, kappa, theta, sigma, rho) and a bucket of |ln(F/K)|
 *      pg_heston_nodes     the integrands' values at the nodes, for the families of
 *                          measures asked for (price, d/dv0, d2/dv0^2, d/dT) and their
 *                          x-derivatives (products with iu, (iu)^2)
 *      pg_heston_strike    one strike's integrals, each run by Horner's rule in e^{ihx}
 *      pg_heston_row       a row's measures from its integrals (scalar)
 *      pg_heston_limit_wanted  whether a row takes the short-maturity limit instead
 *                          (pg_heston_row with every integral 0; error bound there)
 * 2. Block loop: pg_heston_block prices rows [start, start + m), m <= PG_HESTON_BLOCK; rows
 *    of the block with equal (T, v0, kappa, theta, sigma, rho) form one group, whose node
 *    values are computed once (or taken from the thread's small cache of recent groups:
 *    the grid depends only on the parameters and the |ln(F/K)| bucket, so a cached group
 *    gives bit-identical results) and shared by its strikes. A row's result depends only
 *    on its block's contents, never on the thread split.
 * 3. Formula (Lewis 2001, with a Black-Scholes control variate): for x = ln(F/K),
 *      c = C/DF = c_BS(F, K, s) - sqrt(F K)/pi int_0^inf Re[e^{i u x} D(u)] du,
 *      D(u) = (phi(u - i/2) - phi_BS(u - i/2)) / (u^2 + 1/4),
 *    phi_BS(u - i/2) = exp(-s^2 (u^2 + 1/4)/2) with s^2 = Sigma(T) = the expected integrated
 *    variance. Both characteristic functions equal 1 at z = 0 and z = -i, so D has no poles
 *    at u = +-i/2 and is smooth; puts by parity: P = C - DF (F - K).
 *    Greeks differentiate under the integral sign (sec. 4 of the design note):
 *      d/dx of e^{iux} is iu e^{iux}       (delta, gamma, vanna, charm)
 *      d phi/d v0 = B phi                  (vega, vanna; B the v0-coefficient of ln phi)
 *      d phi/d T  = (kappa theta B + v0 dB/dT) phi, dB/dT from the Riccati equation
 *                   dB/dT = sigma^2 B^2/2 - beta B - (z^2 + i z)/2   (theta, charm)
 *    and the control's part is differentiated in closed form.
 */
#ifndef PG_HESTON_H
#define PG_HESTON_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>

#include "pg_black.h"   /* pg_norm_cdf, pg_max_threads, PG_INLINE, PG_MEASURE_*, libmvec */

/* The vector variants (libmvec) of the other functions the node loops call; see pg_black.h
 * for why glibc's own declarations do not do. */
#ifdef PG_SIMD_MATH
#if __GLIBC_PREREQ(2, 22)
extern double cos(double) PG_SIMD_MATH;
extern double sin(double) PG_SIMD_MATH;
#endif
#if __GLIBC_PREREQ(2, 35)
extern double hypot(double, double) PG_SIMD_MATH;
extern double atan2(double, double) PG_SIMD_MATH;
extern double log1p(double) PG_SIMD_MATH;
#endif
#endif

#define PG_HESTON_BLOCK 32
#define PG_HESTON_GL 16             /* Gauss-Legendre points per panel */
#define PG_HESTON_MAX_PANELS 16384
#define PG_HESTON_MAX_NODES (PG_HESTON_GL * PG_HESTON_MAX_PANELS)
#define PG_HESTON_PHASE 8.0         /* most radians of e^{iux} across one panel */
#define PG_HESTON_TAIL 1e-15        /* truncate where |phi(u - i/2)|/u is below (see grid) */
#define PG_HESTON_H0 0.5            /* first panel width; widths double every two panels */
#define PG_HESTON_XB_MIN 0.0625     /* smallest |ln(F/K)| bucket */
#define PG_HESTON_CACHE 8           /* groups a thread keeps between blocks */
#define PG_HESTON_CACHE_NODES 8192  /* larger grids go to the one large slot */
#define PG_HESTON_LADDER 8          /* U candidates evaluated per vector step */
#define PG_HESTON_RETRY_PANELS 128  /* panels over [0, U] at least (pg_heston_entry_for) */
#define PG_HESTON_SHORT_T 1e-10     /* T at or below: the short-maturity limit (see limit) */
#define PG_HESTON_FLOOR_T 1e-13     /* T at or below: the limit for every row (see limit) */
#define PG_HESTON_DEEP_SD 40.0      /* |ln(F/K)| / s at or above: deep (see limit) */
#define PG_HESTON_DEEP_VOV 1e-4     /* sigma^2 T / v0 at or below: Gaussian at scale s */
#define PG_PI 3.14159265358979323846

/* Families of integrands: which node values a set of measures needs. */
#define PG_HESTON_FAM_P  0          /* price:            phi                  */
#define PG_HESTON_FAM_V  1          /* d/dv0:            B phi                */
#define PG_HESTON_FAM_VV 2          /* d2/dv0^2:         B^2 phi              */
#define PG_HESTON_FAM_T  3          /* d/dT at fixed F:  (d ln phi/dT) phi    */
#define PG_HESTON_NFAM 4

/* ------------------------------------------------------------------ complex helpers */
typedef struct { double re, im; } pg_cx;

PG_INLINE pg_cx pg_cx_make(double re, double im) { pg_cx z = {re, im}; return z; }
PG_INLINE pg_cx pg_cx_add(pg_cx a, pg_cx b) { return pg_cx_make(a.re + b.re, a.im + b.im); }
PG_INLINE pg_cx pg_cx_sub(pg_cx a, pg_cx b) { return pg_cx_make(a.re - b.re, a.im - b.im); }
PG_INLINE pg_cx pg_cx_mul(pg_cx a, pg_cx b)
{
    return pg_cx_make(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re);
}
PG_INLINE pg_cx pg_cx_scale(pg_cx a, double s) { return pg_cx_make(a.re * s, a.im * s); }
/* 1/b as conj(b)/|b|^2: one real division (Smith's form takes three). Used where |b| lies
 * within 1e-150..1e150 (the characteristic function's terms for |u| below 1.25^400). */
PG_INLINE pg_cx pg_cx_inv(pg_cx b)
{
    const double t = 1.0 / (b.re * b.re + b.im * b.im);
    return pg_cx_make(b.re * t, -b.im * t);
}
PG_INLINE pg_cx pg_cx_exp(pg_cx a)
{
    /* sin of (a.im + 0.0), a different value to gcc (the sum is not folded: -0 + 0 = +0),
     * keeps gcc from fusing sin and cos into a scalar sincos, which has no vector form;
     * exp's argument is floored at -700 (e^-700 = 1e-304 stands for 0), because libmvec
     * sends lanes that underflow to the scalar libm exp */
    const double e = exp(a.re > -700.0 ? a.re : -700.0);
    return pg_cx_make(e * cos(a.im), e * sin(a.im + 0.0));
}
/* principal square root (Re >= 0), branch-free */
PG_INLINE pg_cx pg_cx_sqrt(pg_cx a)
{
    const double t = sqrt(0.5 * (hypot(a.re, a.im) + fabs(a.re)));
    const double o = (t > 0.0) ? a.im / (2.0 * t) : 0.0;
    return (a.re >= 0.0) ? pg_cx_make(t, o) : pg_cx_make(fabs(o), copysign(t, a.im));
}
/* log(1 + a), accurate for small |a| */
PG_INLINE pg_cx pg_cx_log1p(pg_cx a)
{
    return pg_cx_make(0.5 * log1p(a.re * (2.0 + a.re) + a.im * a.im), atan2(a.im, 1.0 + a.re));
}

/* ------------------------------------------------------------------ pointwise */

/* The Heston parameters of one row (maturity included: the characteristic function of
 * ln(S_T / F) depends on nothing else). */
typedef struct { double T, v0, kappa, theta, sigma, rho; } pg_heston_params;

PG_INLINE int pg_heston_same(const pg_heston_params *a, const pg_heston_params *b)
{
    return a->T == b->T && a->v0 == b->v0 && a->kappa == b->kappa && a->theta == b->theta
           && a->sigma == b->sigma && a->rho == b->rho;
}

PG_INLINE int pg_heston_check(int option_type, double strike, double time, double spot,
                              double rate, double dividend, const pg_heston_params *p)
{
    int s = pg_check_inputs(PG_MODEL_BSM, option_type, strike, time, spot, rate, dividend);
    s |= (p->v0 >= 0.0 && p->v0 <= PG_DBL_MAX) ? 0 : PG_BAD_HESTON_V0;
    s |= (p->kappa > 0.0 && p->kappa <= PG_DBL_MAX) ? 0 : PG_BAD_HESTON_KAPPA;
    s |= (p->theta > 0.0 && p->theta <= PG_DBL_MAX) ? 0 : PG_BAD_HESTON_THETA;
    s |= (p->sigma > 0.0 && p->sigma <= PG_DBL_MAX) ? 0 : PG_BAD_HESTON_SIGMA;
    s |= (fabs(p->rho) < 1.0) ? 0 : PG_BAD_HESTON_RHO;
    return s;
}

/* E[exp(i z X)], X = ln(S_T / F), z complex, in the form of Albrecher et al. (2007):
 *   beta = kappa - rho sigma i z,  d = sqrt(beta^2 + sigma^2 (z^2 + i z)),  Re d >= 0
 *   g = (beta - d)/(beta + d),  E = e^{-d T}
 *   ln phi = kappa theta / sigma^2 [(beta - d) T - 2 ln((1 - g E)/(1 - g))] + v0 B,
 *   B = (beta - d)/sigma^2 (1 - E)/(1 - g E),
 * written with beta - d = -sigma^2 (z^2 + i z)/(beta + d) and the logarithm as
 * log1p(g (1 - E)/(1 - g)), so that nothing cancels as sigma -> 0. Returns phi and B (by
 * value: an out-pointer keeps gcc from vectorising the node loops). */
typedef struct { pg_cx phi, B; } pg_heston_cfb;

PG_INLINE pg_heston_cfb pg_heston_cf_b(pg_cx z, const pg_heston_params *p)
{
    const double s2 = p->sigma * p->sigma;
    const pg_cx iz = pg_cx_make(-z.im, z.re);
    const pg_cx q = pg_cx_add(pg_cx_mul(z, z), iz);                 /* z^2 + i z */
    const pg_cx beta = pg_cx_sub(pg_cx_make(p->kappa, 0.0), pg_cx_scale(iz, p->rho * p->sigma));
    const pg_cx d = pg_cx_sqrt(pg_cx_add(pg_cx_mul(beta, beta), pg_cx_scale(q, s2)));
    const pg_cx inv_bpd = pg_cx_inv(pg_cx_add(beta, d));            /* Re(beta + d) > 0 */
    const pg_cx bmd_s2 = pg_cx_scale(pg_cx_mul(q, inv_bpd), -1.0);  /* (beta - d)/sigma^2 */
    const pg_cx g = pg_cx_mul(pg_cx_scale(bmd_s2, s2), inv_bpd);
    const pg_cx E = pg_cx_exp(pg_cx_scale(d, -p->T));
    const pg_cx one_m_E = pg_cx_sub(pg_cx_make(1.0, 0.0), E);
    const pg_cx one_m_gE = pg_cx_sub(pg_cx_make(1.0, 0.0), pg_cx_mul(g, E));
    const pg_cx one_m_g = pg_cx_sub(pg_cx_make(1.0, 0.0), g);
    const pg_cx lg = pg_cx_log1p(pg_cx_mul(pg_cx_mul(g, one_m_E), pg_cx_inv(one_m_g)));
    const double kt = p->kappa * p->theta;
    const pg_cx B = pg_cx_mul(pg_cx_mul(bmd_s2, one_m_E), pg_cx_inv(one_m_gE));
    pg_cx lnphi = pg_cx_scale(bmd_s2, kt * p->T);
    lnphi = pg_cx_sub(lnphi, pg_cx_scale(lg, 2.0 * kt / s2));
    lnphi = pg_cx_add(lnphi, pg_cx_scale(B, p->v0));
    const pg_heston_cfb r = {pg_cx_exp(lnphi), B};
    return r;
}

/* Expected integrated variance Sigma(T) = theta T + (v0 - theta)(1 - e^{-kappa T})/kappa,
 * its derivatives d Sigma/d v0 = (1 - e^{-kappa T})/kappa and
 * d Sigma/dT = theta + (v0 - theta) e^{-kappa T} (the expected variance at T). */
PG_INLINE double pg_heston_sigma_v(const pg_heston_params *p)
{
    const double kt = p->kappa * p->T;
    return (kt < 1e-8) ? p->T * (1.0 - 0.5 * kt) : -expm1(-kt) / p->kappa;
}
PG_INLINE double pg_heston_total_var(const pg_heston_params *p)
{
    return p->theta * p->T + (p->v0 - p->theta) * pg_heston_sigma_v(p);
}
PG_INLINE double pg_heston_sigma_t(const pg_heston_params *p)
{
    return p->theta + (p->v0 - p->theta) * exp(-p->kappa * p->T);
}

/* Gauss-Legendre nodes/weights on [-1, 1] (positive half; filled by pg_heston_init). */
static double pg_heston_gl_x[PG_HESTON_GL / 2], pg_heston_gl_w[PG_HESTON_GL / 2];

static void pg_heston_init(void)
{
    const int n = PG_HESTON_GL;
    for (int i = 0; i < n / 2; i++) {
        double x = cos(PG_PI * (i + 0.75) / (n + 0.5)), dp = 1.0;
        for (int it = 0; it < 100; it++) {
            double p0 = 1.0, p1 = x;
            for (int k = 2; k <= n; k++) {
                const double p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            dp = n * (x * p1 - p0) / (x * x - 1.0);
            const double dx = p1 / dp;
            x -= dx;
            if (fabs(dx) < 1e-16) break;
        }
        double p0 = 1.0, p1 = x;
        for (int k = 2; k <= n; k++) {
            const double p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
            p0 = p1;
            p1 = p2;
        }
        dp = n * (x * p1 - p0) / (x * x - 1.0);
        pg_heston_gl_x[i] = x;
        pg_heston_gl_w[i] = 2.0 / ((1.0 - x * x) * dp * dp);
    }
}

/* The bucket of a group's widest |ln(F/K)|: the smallest PG_HESTON_XB_MIN 2^(k/2) >= xmax.
 * The grid depends on xmax only through it, so that groups of different blocks with the
 * same parameters and bucket share one grid (and a cache entry). */
PG_INLINE double pg_heston_xbucket(double xmax)
{
    double b = PG_HESTON_XB_MIN;
    for (int i = 0; i < 2100 && b < xmax; i++) b *= 1.4142135623730951;
    return b;
}

/* The same ladder continued below PG_HESTON_XB_MIN (PG_HESTON_XB_MIN 2^(-k/2)): its smallest
 * value >= t, for t <= PG_HESTON_XB_MIN (used only by a grid sized to U, see
 * pg_heston_entry_for). */
PG_INLINE double pg_heston_xbucket_low(double t)
{
    double b = PG_HESTON_XB_MIN;
    for (int i = 0; i < 2100 && b * 0.7071067811865476 >= t; i++) b *= 0.7071067811865476;
    return b;
}

/* The truncation point U: the first point of the ladder 1.25^k at which, for the second
 * point running, both |phi(U - i/2)|/U and the Black control's are below PG_HESTON_TAIL
 * (the integrand is |phi|/(u^2 + 1/4), so the tail beyond U adds about sqrt(FK)/pi
 * |phi(U)|/U at most while |phi| decreases). The ladder is evaluated PG_HESTON_LADDER points
 * at a time in a vector loop. Returns 0 when no ladder point within 1.25^400 qualifies. */
static void pg_heston_ladder(const pg_heston_params *p, double hs, int n, const double *u,
                             double *mag)
{
    const pg_heston_params pv = *p;
    #pragma omp simd
    for (int i = 0; i < n; i++) {
        const pg_cx ph = pg_heston_cf_b(pg_cx_make(u[i], -0.5), &pv).phi;
        const double a = hypot(ph.re, ph.im);
        const double c = exp(-hs * (u[i] * u[i] + 0.25));
        mag[i] = ((a > c) ? a : c) / u[i];   /* not fmax: no vector form */
    }
}

static double pg_heston_cutoff(const pg_heston_params *p, double s)
{
    double lad[PG_HESTON_LADDER], mag[PG_HESTON_LADDER];
    double U = 1.0;
    int below = 0;
    for (int k0 = 0; k0 < 400; k0 += PG_HESTON_LADDER) {
        for (int i = 0; i < PG_HESTON_LADDER; i++) {
            lad[i] = U;
            U *= 1.25;
        }
        pg_heston_ladder(p, 0.5 * s * s, PG_HESTON_LADDER, lad, mag);
        for (int i = 0; i < PG_HESTON_LADDER; i++) {
            below = (mag[i] < PG_HESTON_TAIL) ? below + 1 : 0;
            if (below == 2) return lad[i];
        }
    }
    return 0.0;
}

/* A run of P panels of equal width h from a0: panel p is [a0 + p h, a0 + (p + 1) h]. */
typedef struct { double a0, h; int P, off; } pg_heston_run;

/* The grid on [0, ~U] as runs (at most PG_HESTON_MAX_RUNS): widths start at
 * PG_HESTON_H0 and double every two panels (so a panel starting at a is about a/2 wide:
 * graded away from 0, where a moment explosion may bring the characteristic function's
 * singularities within about 1/2 of the contour) up to the cap hb = min(2/s, hx) over the
 * bulk [0, A], A = min(U, 8/s), of the Black control, and up to hx = PG_HESTON_PHASE/xb
 * beyond it (a panel never spans more than PG_HESTON_PHASE radians of e^{iux}; the heavy
 * tail of phi decays exponentially, on a log scale); at a cap, one run of equal panels
 * reaches the end of the region (A, then U). Writes the runs (off: their first node) and
 * returns the number of nodes, or 0 when more than PG_HESTON_MAX_PANELS panels would be
 * needed. */
#define PG_HESTON_MAX_RUNS 96
PG_INLINE int pg_heston_runs(double U, double s, double xb, pg_heston_run *run, int *nruns)
{
    const double hx = PG_HESTON_PHASE / xb, A = fmin(U, 8.0 / s);
    const double hb = fmin(2.0 / s, hx);
    double a = 0.0, h = PG_HESTON_H0;
    int panels = 0, k = 0;
    while (a < U && k < PG_HESTON_MAX_RUNS && panels <= PG_HESTON_MAX_PANELS) {
        const double cap = (a < A) ? hb : hx, end = (a < A) ? A : U;
        int P;
        if (h >= cap) {     /* at the cap: equal panels to the end of the region */
            h = cap;
            const double np = ceil((end - a) / h - 1e-9);
            P = (np < 1.0) ? 1 : (np > PG_HESTON_MAX_PANELS ? PG_HESTON_MAX_PANELS + 1 : (int)np);
        } else {
            P = 2;
        }
        run[k].a0 = a;
        run[k].h = h;
        run[k].P = P;
        run[k].off = panels * PG_HESTON_GL;
        k++;
        panels += P;
        a += P * h;
        if (h < cap) h = fmin(2.0 * h, cap);
    }
    *nruns = k;
    return (a < U || panels > PG_HESTON_MAX_PANELS) ? 0 : panels * PG_HESTON_GL;
}

/* Nodes u[j] and weights w[j] of the runs: within a panel, node 2i is c - r x_i and node
 * 2i + 1 is c + r x_i (x_i the positive Gauss-Legendre abscissae, r = h/2). */
PG_INLINE void pg_heston_grid(const pg_heston_run *run, int nruns, double *u, double *w)
{
    int n = 0;
    for (int k = 0; k < nruns; k++) {
        const double r = 0.5 * run[k].h;
        for (int p = 0; p < run[k].P; p++) {
            const double c = run[k].a0 + (2 * p + 1) * r;
            for (int i = 0; i < PG_HESTON_GL / 2; i++) {
                u[n] = c - r * pg_heston_gl_x[i];
                w[n++] = r * pg_heston_gl_w[i];
                u[n] = c + r * pg_heston_gl_x[i];
                w[n++] = r * pg_heston_gl_w[i];
            }
        }
    }
}

/* What a set of measures meas[0..k) needs at the nodes: PG_HESTON_MODE_PRICE (the price
 * integrand only), PG_HESTON_MODE_SPOT (the price integrand and its x-derivatives: delta,
 * gamma, rho, dividend rho) or PG_HESTON_MODE_ALL (every family and its x-derivatives). */
#define PG_HESTON_MODE_PRICE 0
#define PG_HESTON_MODE_SPOT  1
#define PG_HESTON_MODE_ALL   2
PG_INLINE int pg_heston_mode(const int *meas, int k)
{
    int mode = PG_HESTON_MODE_PRICE;
    for (int j = 0; j < k; j++) {
        switch (meas[j]) {
        case PG_MEASURE_PRICE: break;
        case PG_MEASURE_DELTA: case PG_MEASURE_GAMMA: case PG_MEASURE_RHO:
        case PG_MEASURE_DIVIDEND_RHO:
            if (mode < PG_HESTON_MODE_SPOT) mode = PG_HESTON_MODE_SPOT;
            break;
        default: mode = PG_HESTON_MODE_ALL; break;
        }
    }
    return mode;
}

/* Number of node arrays of a mode: array 3 f + k holds (iu)^k D_f (family f, k = 0, 1, 2). */
PG_INLINE int pg_heston_arrays(int mode)
{
    return mode == PG_HESTON_MODE_PRICE ? 1 : (mode == PG_HESTON_MODE_SPOT ? 3 : 3 * PG_HESTON_NFAM);
}

/* Node values D_f(u_j) w_j of the families of the mode into re[3 f n + j], im[3 f n + j],
 * then (iu) D_f and (iu)^2 D_f into arrays 3 f + 1 and 3 f + 2:
 *   P:  (phi - phi_BS) / den,
 *   V:  (B phi + den/2 Sigma_v phi_BS) / den,
 *   VV: (B^2 phi - (den/2 Sigma_v)^2 phi_BS) / den,
 *   T:  (L_T phi + den/2 Sigma_T phi_BS) / den,  L_T = kappa theta B + v0 dB/dT,
 * with den = u^2 + 1/4 (= z^2 + i z at z = u - i/2), phi_BS = exp(-s^2 den/2),
 * dB/dT = sigma^2 B^2/2 - beta B - den/2 and beta = kappa - rho sigma (1/2 + i u). */
static void pg_heston_nodes(const pg_heston_params *p, double s, int mode, int n,
                            const double *u, const double *w, double *re, double *im)
{
    const pg_heston_params pv = *p;   /* a local copy: no aliasing with the stores below */
    const double hs = 0.5 * s * s;
    if (mode != PG_HESTON_MODE_ALL) {
        #pragma omp simd
        for (int j = 0; j < n; j++) {
            const pg_cx ph = pg_heston_cf_b(pg_cx_make(u[j], -0.5), &pv).phi;
            const double den = u[j] * u[j] + 0.25;
            const double ea = -hs * den;
            const double bs = exp(ea > -700.0 ? ea : -700.0);   /* no underflow: libmvec's slow path */
            const double f = w[j] / den;
            re[j] = f * (ph.re - bs);
            im[j] = f * ph.im;
        }
    } else {
        const double sv = pg_heston_sigma_v(&pv), st = pg_heston_sigma_t(&pv);
        const double kt = pv.kappa * pv.theta, s2h = 0.5 * pv.sigma * pv.sigma;
        const double br = pv.kappa - 0.5 * pv.rho * pv.sigma, bi = -pv.rho * pv.sigma;
        double *reV = re + 3 * n, *imV = im + 3 * n, *reVV = re + 6 * n, *imVV = im + 6 * n;
        double *reT = re + 9 * n, *imT = im + 9 * n;
        #pragma omp simd
        for (int j = 0; j < n; j++) {
            const pg_heston_cfb cb = pg_heston_cf_b(pg_cx_make(u[j], -0.5), &pv);
            const pg_cx ph = cb.phi, B = cb.B;
            const double den = u[j] * u[j] + 0.25;
            const double ea = -hs * den;
            const double bs = exp(ea > -700.0 ? ea : -700.0);
            const double f = w[j] / den;
            re[j] = f * (ph.re - bs);
            im[j] = f * ph.im;
            const pg_cx Bphi = pg_cx_mul(B, ph);
            const double cv = 0.5 * den * sv;
            reV[j] = f * (Bphi.re + cv * bs);
            imV[j] = f * Bphi.im;
            const pg_cx B2phi = pg_cx_mul(B, Bphi);
            reVV[j] = f * (B2phi.re - cv * cv * bs);
            imVV[j] = f * B2phi.im;
            /* dB/dT = sigma^2/2 B^2 - beta B - den/2 */
            const pg_cx B2 = pg_cx_mul(B, B);
            const pg_cx bB = pg_cx_mul(pg_cx_make(br, bi * u[j]), B);
            const pg_cx dB = pg_cx_make(s2h * B2.re - bB.re - 0.5 * den, s2h * B2.im - bB.im);
            const pg_cx LT = pg_cx_add(pg_cx_scale(B, kt), pg_cx_scale(dB, pv.v0));
            const pg_cx LTphi = pg_cx_mul(LT, ph);
            reT[j] = f * (LTphi.re + 0.5 * den * st * bs);
            imT[j] = f * LTphi.im;
        }
    }
    const int nf = pg_heston_arrays(mode) / 3;
    for (int f = 0; f < nf; f++) {
        const double *r0 = re + 3 * f * n, *i0 = im + 3 * f * n;
        double *r1 = re + (3 * f + 1) * n, *i1 = im + (3 * f + 1) * n;
        double *r2 = re + (3 * f + 2) * n, *i2 = im + (3 * f + 2) * n;
        #pragma omp simd
        for (int j = 0; j < n; j++) {
            r1[j] = -u[j] * i0[j];
            i1[j] = u[j] * r0[j];
            r2[j] = -u[j] * u[j] * r0[j];
            i2[j] = -u[j] * u[j] * i0[j];
        }
    }
}

/* ------------------------------------------------------------------ work space */

/* One group's grid and node values. buf holds u[n], then re[M n] and im[M n] for the
 * M = pg_heston_arrays(mode) node arrays. */
typedef struct {
    pg_heston_params p;
    double xb, s, U;    /* U: the truncation point (0: none found) */
    int mode, M;
    int n;              /* nodes; 0: the grid would exceed its cap; -1: empty slot */
    int nruns;
    pg_heston_run run[PG_HESTON_MAX_RUNS];
    size_t cap;         /* doubles allocated in buf */
    double *buf;
} pg_heston_entry;

/* A thread's work space: PG_HESTON_CACHE recent groups (buffers grown on demand), one slot
 * for a large grid, and a scratch buffer (grid weights, then a strike's phases). Owned by one thread; freed by
 * pg_heston_work_free. oom is set when an allocation failed (the caller raises
 * MemoryError). */
typedef struct {
    pg_heston_entry e[PG_HESTON_CACHE], big;
    int next, slots, oom;
    size_t cap;
    double *cs;
} pg_heston_work;

static void pg_heston_work_init(pg_heston_work *w, int slots)
{
    memset(w, 0, sizeof(*w));
    for (int i = 0; i < PG_HESTON_CACHE; i++) w->e[i].n = -1;
    w->big.n = -1;
    w->slots = slots < 1 ? 1 : (slots > PG_HESTON_CACHE ? PG_HESTON_CACHE : slots);
}

static void pg_heston_work_free(pg_heston_work *w)
{
    for (int i = 0; i < PG_HESTON_CACHE; i++) free(w->e[i].buf);
    free(w->big.buf);
    free(w->cs);
    memset(w, 0, sizeof(*w));
}

/* Grows *buf to at least need doubles; 0 on failure (w->oom set). */
static int pg_heston_reserve(pg_heston_work *w, double **buf, size_t *cap, size_t need)
{
    if (*cap >= need) return 1;
    double *nb = (double *)realloc(*buf, need * sizeof(double));
    if (nb == NULL) { w->oom = 1; return 0; }
    *buf = nb;
    *cap = need;
    return 1;
}

/* Doubles of a strike's phase table (see pg_heston_strike; the scratch buffer holds the
 * table, its cosines and its sines). */
#define PG_HESTON_PHASES (PG_HESTON_MAX_RUNS * (2 + PG_HESTON_GL / 2) + 8)

/* The entry of the group (p, xb) in the mode: from the cache, or built into the next slot
 * (grids over PG_HESTON_CACHE_NODES nodes into the one large slot, so that a thread holds
 * at most one large buffer). U: the truncation point if known (a function of p only), else
 * negative. NULL when memory ran out. */
static pg_heston_entry *pg_heston_entry_xb(pg_heston_work *w, const pg_heston_params *p,
                                           double xb, int mode, double U)
{
    for (int i = 0; i <= PG_HESTON_CACHE; i++) {
        pg_heston_entry *e = (i < w->slots) ? &w->e[i] : (i == PG_HESTON_CACHE ? &w->big : NULL);
        if (e != NULL && e->n >= 0 && e->xb == xb && e->mode == mode && pg_heston_same(&e->p, p))
            return e;
    }
    pg_heston_run run[PG_HESTON_MAX_RUNS];
    int nruns = 0;
    const double s = sqrt(fmax(pg_heston_total_var(p), 1e-300));
    if (U < 0.0) U = pg_heston_cutoff(p, s);
    const int n = (U > 0.0) ? pg_heston_runs(U, s, xb, run, &nruns) : 0;
    pg_heston_entry *e = &w->big;
    if (n <= PG_HESTON_CACHE_NODES) {
        e = &w->e[w->next];
        w->next = (w->next + 1) % w->slots;
    }
    e->n = -1;
    e->p = *p;
    e->xb = xb;
    e->mode = mode;
    e->M = pg_heston_arrays(mode);
    e->s = s;
    e->U = U;
    e->nruns = nruns;
    memcpy(e->run, run, (size_t)nruns * sizeof(run[0]));
    if (n == 0) {       /* the quadrature would be truncated: no price rather than a wrong one */
        e->n = 0;
        return e;
    }
    if (!pg_heston_reserve(w, &e->buf, &e->cap, (size_t)(1 + 2 * e->M) * n)
        || !pg_heston_reserve(w, &w->cs, &w->cap, (n > 3 * PG_HESTON_PHASES) ? n : 3 * PG_HESTON_PHASES))
        return NULL;
    double *u = e->buf, *re = u + n, *im = re + (size_t)e->M * n;
    pg_heston_grid(e->run, e->nruns, u, w->cs);
    pg_heston_nodes(p, e->s, mode, n, u, w->cs, re, im);
    e->n = n;
    return e;
}

/* The entry of a group whose widest |ln(F/K)| is xmax. The grid's bucket xb follows xmax
 * with a floor: PG_HESTON_XB_MIN, or PG_HESTON_PHASE PG_HESTON_RETRY_PANELS / U where that
 * is smaller (U > 16384), on the ladder continued below PG_HESTON_XB_MIN. With the fixed
 * floor alone a grid needs about U PG_HESTON_XB_MIN / PG_HESTON_PHASE panels, and U ~ 8/s
 * grows without bound as T -> 0 (at the money: 25 ms for one row at T = 1e-9 and v0 =
 * 0.04, over the cap below 3e-10; below 1e-4 for v0 = 0). With the floor sized to U, every
 * strike of the group still sees at most PG_HESTON_PHASE radians of e^{iux} per panel, and
 * [0, U] is cut into at least PG_HESTON_RETRY_PANELS (128) panels, which resolve the
 * characteristic function's own decay and phase (at most ~35 e-folds and, in its linear
 * tail, ln phi ~ -(v0 + kappa theta T) u (sqrt(1 - rho^2) + i rho)/sigma: 250 radians
 * over [0, U] for |rho| = 0.99, 770 for 0.999); the bulk cap 2/s applies as before.
 * Groups with U <= 16384, or whose widest |x| is at least 1/16, keep their grid and their
 * bits: of the 3,220 cases of tests/ext/test_heston_kernel.py, 16 have U > 16384 (corners
 * with sigma = 1.5 and v0 = 0.004), all with |x| >= 1.09, so none changed. U depends only
 * on p, and is taken from any cached entry of p, so the cache stays bit-identical to a
 * fresh computation. */
static const pg_heston_entry *pg_heston_entry_for(pg_heston_work *w, const pg_heston_params *p,
                                                  double xmax, int mode)
{
    double U = -1.0;
    for (int i = 0; i <= PG_HESTON_CACHE && U < 0.0; i++) {
        const pg_heston_entry *e = (i < w->slots) ? &w->e[i] : (i == PG_HESTON_CACHE ? &w->big : NULL);
        if (e != NULL && e->n >= 0 && pg_heston_same(&e->p, p))
            U = e->U;
    }
    if (U < 0.0)
        U = pg_heston_cutoff(p, sqrt(fmax(pg_heston_total_var(p), 1e-300)));
    double t = xmax;
    if (U > 0.0)
        t = fmax(xmax, fmin(PG_HESTON_XB_MIN, PG_HESTON_PHASE * PG_HESTON_RETRY_PANELS / U));
    const double xb = (t <= PG_HESTON_XB_MIN) ? pg_heston_xbucket_low(t) : pg_heston_xbucket(t);
    return pg_heston_entry_xb(w, p, xb, mode, U);
}

/* ------------------------------------------------------------------ strikes */

/* Four lanes of doubles as a gcc vector (one ymm register from AVX2 on), so that Horner's
 * rule below keeps its accumulators in registers. */
typedef double pg_v4 __attribute__((vector_size(32)));

PG_INLINE pg_v4 pg_v4_load(const double *p) { pg_v4 v; memcpy(&v, p, sizeof v); return v; }

/* sum_t o_t G_t with G_t = sum_{p < P} z^p A(p, t) (A: P panels of PG_HESTON_GL values,
 * re ar, im ai), by Horner's rule, eight lanes at a time, in two interleaved chains (even
 * and odd p, in z^2) to halve the dependency latency: 8 vectors of accumulators, which fit
 * the 16 AVX2 registers. (sr, si) = the complex sum. */
PG_INLINE void pg_heston_horner(const double *ar, const double *ai, int P, double zr, double zi,
                                double z2r, double z2i, const double *orr, const double *oi,
                                double *sr, double *si)
{
    pg_v4 vr = {0}, vi = {0};
    for (int half = 0; half < PG_HESTON_GL; half += 8) {
        const double *a_r = ar + half, *a_i = ai + half;
        pg_v4 er0 = {0}, er1 = {0}, ei0 = {0}, ei1 = {0};     /* even chain */
        pg_v4 dr0 = {0}, dr1 = {0}, di0 = {0}, di1 = {0};     /* odd chain */
        int p = P - 1;
        if ((p & 1) == 0) {   /* the top panel is even: it starts the even chain */
            er0 = pg_v4_load(a_r + p * PG_HESTON_GL);
            er1 = pg_v4_load(a_r + p * PG_HESTON_GL + 4);
            ei0 = pg_v4_load(a_i + p * PG_HESTON_GL);
            ei1 = pg_v4_load(a_i + p * PG_HESTON_GL + 4);
            p--;
        }
        for (; p >= 1; p -= 2) {   /* p odd, p - 1 even */
            const double *xo = a_r + p * PG_HESTON_GL, *yo = a_i + p * PG_HESTON_GL;
            const double *xe = xo - PG_HESTON_GL, *ye = yo - PG_HESTON_GL;
            pg_v4 t0 = (pg_v4_load(xo) - di0 * z2i) + dr0 * z2r;   /* two fused steps */
            pg_v4 t1 = (pg_v4_load(xo + 4) - di1 * z2i) + dr1 * z2r;
            di0 = (pg_v4_load(yo) + dr0 * z2i) + di0 * z2r;
            di1 = (pg_v4_load(yo + 4) + dr1 * z2i) + di1 * z2r;
            dr0 = t0;
            dr1 = t1;
            t0 = (pg_v4_load(xe) - ei0 * z2i) + er0 * z2r;
            t1 = (pg_v4_load(xe + 4) - ei1 * z2i) + er1 * z2r;
            ei0 = (pg_v4_load(ye) + er0 * z2i) + ei0 * z2r;
            ei1 = (pg_v4_load(ye + 4) + er1 * z2i) + ei1 * z2r;
            er0 = t0;
            er1 = t1;
        }
        /* G = even + z odd, then the offsets e^{i r t x} */
        const pg_v4 gr0 = er0 + dr0 * zr - di0 * zi, gi0 = ei0 + dr0 * zi + di0 * zr;
        const pg_v4 gr1 = er1 + dr1 * zr - di1 * zi, gi1 = ei1 + dr1 * zi + di1 * zr;
        const pg_v4 or0 = pg_v4_load(orr + half), oi0 = pg_v4_load(oi + half);
        const pg_v4 or1 = pg_v4_load(orr + half + 4), oi1 = pg_v4_load(oi + half + 4);
        vr += or0 * gr0 - oi0 * gi0 + or1 * gr1 - oi1 * gi1;
        vi += or0 * gi0 + oi0 * gr0 + or1 * gi1 + oi1 * gr1;
    }
    *sr = (vr[0] + vr[1]) + (vr[2] + vr[3]);
    *si = (vi[0] + vi[1]) + (vi[2] + vi[3]);
}

/* Integrals of one strike, x = ln(F/K): out[m] = sum_j Re[e^{i u_j x} A_m(u_j)] for the
 * entry's node arrays A_m (m = 3 f + k: int Re[(iu)^k e^{iux} D_f(u)] du).
 * Per run (a0, h, P) the nodes are u = a0 + (2p + 1) r + r t (r = h/2, t = -+x_i), so
 *   sum = Re[e^{i(a0 + r)x} sum_t e^{i r t x} G_t],  G_t = sum_p z^p A(p, t),  z = e^{ihx},
 * and G_t is Horner's rule in z over the run's panels (|z| = 1: stable): a strike costs
 * 2 + 8 cos/sin per run (one vector loop over a phase table) and one complex multiply-add
 * per node and array, instead of a cos and a sin per node. */
static void pg_heston_strike(const pg_heston_entry *e, double x, double *cs, double *out)
{
    const int n = e->n, M = e->M, nruns = e->nruns, Q = 2 + PG_HESTON_GL / 2;
    const double *re0 = e->buf + n, *im0 = re0 + (size_t)M * n;
    double *ph = cs, *c = cs + PG_HESTON_PHASES, *sn = cs + 2 * PG_HESTON_PHASES;
    /* phase table: per run, (a0 + r) x, h x, then r x_i x */
    for (int k = 0; k < nruns; k++) {
        const double r = 0.5 * e->run[k].h;
        ph[Q * k] = (e->run[k].a0 + r) * x;
        ph[Q * k + 1] = e->run[k].h * x;
        for (int i = 0; i < PG_HESTON_GL / 2; i++) ph[Q * k + 2 + i] = r * pg_heston_gl_x[i] * x;
    }
    int np = Q * nruns;
    while (np % 8) ph[np++] = 0.0;  /* whole vectors: a scalar remainder would call libm's sin */
    #pragma omp simd
    for (int j = 0; j < np; j++) {
        c[j] = cos(ph[j]);
        sn[j] = sin(ph[j] + 0.0);   /* + 0.0: see pg_cx_exp */
    }
    double sr_, si_;
    for (int m = 0; m < M; m++) out[m] = 0.0;
    for (int k = 0; k < nruns; k++) {
        const double br = c[Q * k], bi = sn[Q * k], zr = c[Q * k + 1], zi = sn[Q * k + 1];
        double orr[PG_HESTON_GL], oi[PG_HESTON_GL];
        for (int i = 0; i < PG_HESTON_GL / 2; i++) {   /* e^{i r t x}: t = -x_i, +x_i */
            orr[2 * i] = orr[2 * i + 1] = c[Q * k + 2 + i];
            oi[2 * i] = -sn[Q * k + 2 + i];
            oi[2 * i + 1] = sn[Q * k + 2 + i];
        }
        const int P = e->run[k].P, off = e->run[k].off;
        const double z2r = zr * zr - zi * zi, z2i = 2.0 * zr * zi;
        for (int m = 0; m < M; m++) {
            const double *ar = re0 + (size_t)m * n + off, *ai = im0 + (size_t)m * n + off;
            pg_heston_horner(ar, ai, P, zr, zi, z2r, z2i, orr, oi, &sr_, &si_);
            out[m] += br * sr_ - bi * si_;
        }
    }
}

/* ------------------------------------------------------------------ one row's measures */

/* A valid row with T > 0 and its integrals I[3 f + k] (see pg_heston_strike): writes the
 * measures meas[0..k) into o[0..k). c is the undiscounted call, w the option (c or the put
 * c - (F - K)), a subscript a derivative (F: forward; v: v0; T: maturity at fixed F):
 *   c    = c_BS - K J_P,            J_f = e^{x/2}/pi I_f0
 *   c_F  = N(d1) - K/F J'_P,        J'_f = e^{x/2}/pi (I_f0/2 + I_f1)
 *   c_FF = n(d1)/(F s) - K/F^2 (J''_P - J'_P),  J''_f = e^{x/2}/pi (I_f0/4 + I_f1 + I_f2)
 *   c_v  = Sigma_v c_BS,Sigma - K J_V,         c_BS,Sigma = F n(d1)/(2 s)
 *   c_vF = -Sigma_v n(d1) d2/(2 s^2) - K/F J'_V
 *   c_vv = Sigma_v^2 F n(d1)(d1 d2 - 1)/(4 s^3) - K J_VV
 *   c_T  = Sigma_T c_BS,Sigma - K J_T,  c_TF = -Sigma_T n(d1) d2/(2 s^2) - K/F J'_T
 * then V = DF w, delta = e^{-qT} w_F, gamma = e^{-qT} w_FF F/S, vega = 2 sqrt(v0) DF c_v,
 * theta = r V - DF (w_F F (r - q) + c_T), rho = T (DF w_F F - V), dividend_rho =
 * -T DF w_F F, vanna = 2 sqrt(v0) e^{-qT} c_vF, volga = DF (2 c_v + 4 v0 c_vv),
 * charm = q delta - e^{-qT} (w_FF F (r - q) + c_TF). */
static void pg_heston_row(int type, double K, double S, double r, double q, double F,
                          double DF, const pg_heston_params *p, double s, const double *I,
                          const int *meas, int k, double *o, ptrdiff_t ldo)
{
    const double x = log(F / K);
    const double d1 = pg_clamp_d(x / s + 0.5 * s), d2 = pg_clamp_d(x / s - 0.5 * s);
    const double nd1 = pg_norm_pdf(d1);
    const double E = exp(0.5 * x) / PG_PI;
    const double JP = E * I[0], JP1 = E * (0.5 * I[0] + I[1]);
    const double JP2 = E * (0.25 * I[0] + I[1] + I[2]);
    const double c = F * pg_norm_cdf(d1) - K * pg_norm_cdf(d2) - K * JP;
    const double put = (type == PG_PUT);
    const double w = put ? c - (F - K) : c;
    const double V = DF * w;
    const double cF = pg_norm_cdf(d1) - K / F * JP1;
    const double wF = put ? cF - 1.0 : cF;
    const double wFF = nd1 / (F * s) - K / (F * F) * (JP2 - JP1);
    const double eq = DF * F / S;                 /* e^{-qT} */
    const double cS = F * nd1 / (2.0 * s);        /* d c_BS / d Sigma */
    const double sv = pg_heston_sigma_v(p), st = pg_heston_sigma_t(p);
    const double a = sqrt(p->v0);
    for (int j = 0; j < k; j++) {
        double v = NAN;
        switch (meas[j]) {
        case PG_MEASURE_PRICE: v = V; break;
        case PG_MEASURE_DELTA: v = eq * wF; break;
        case PG_MEASURE_GAMMA: v = eq * wFF * F / S; break;
        case PG_MEASURE_VEGA:
            v = 2.0 * a * DF * (sv * cS - K * E * I[3]); break;
        case PG_MEASURE_THETA:
            v = r * V - DF * (wF * F * (r - q) + st * cS - K * E * I[9]); break;
        case PG_MEASURE_RHO: v = p->T * (DF * wF * F - V); break;
        case PG_MEASURE_DIVIDEND_RHO: v = -p->T * DF * wF * F; break;
        case PG_MEASURE_VANNA:
            v = 2.0 * a * eq * (-sv * nd1 * d2 / (2.0 * s * s) - K / F * E * (0.5 * I[3] + I[4]));
            break;
        case PG_MEASURE_VOLGA: {
            const double cv = sv * cS - K * E * I[3];
            const double cvv = sv * sv * F * nd1 * (d1 * d2 - 1.0) / (4.0 * s * s * s) - K * E * I[6];
            v = DF * (2.0 * cv + 4.0 * p->v0 * cvv);
            break;
        }
        case PG_MEASURE_CHARM: {
            const double cTF = -st * nd1 * d2 / (2.0 * s * s) - K / F * E * (0.5 * I[9] + I[10]);
            v = q * eq * wF - eq * (wFF * F * (r - q) + cTF);
            break;
        }
        default: break;
        }
        o[j * ldo] = v;
    }
}

/* A valid row at expiry (T = 0): intrinsic value, delta the step (half at the money),
 * every other Greek 0. */
static void pg_heston_expiry_row(int type, double K, double S, const int *meas, int k,
                                 double *o, ptrdiff_t ldo)
{
    const double wsgn = (type == PG_CALL) ? 1.0 : -1.0;
    const double itm = wsgn * (S - K);
    for (int j = 0; j < k; j++) {
        double v = 0.0;
        if (meas[j] == PG_MEASURE_PRICE) v = fmax(itm, 0.0);
        else if (meas[j] == PG_MEASURE_DELTA) v = wsgn * ((itm > 0.0) ? 1.0 : (itm == 0.0 ? 0.5 : 0.0));
        o[j * ldo] = v;
    }
}

/* ------------------------------------------------------------------ short-maturity limit */

/* The short-maturity limit of a valid row with T > 0: Black-Scholes on the forward with the
 * total variance Sigma(T) = v_bar T, v_bar = theta + (v0 - theta)(1 - e^{-kappa T})/(kappa T)
 * the expected integrated variance per year: pg_heston_row with every Fourier integral 0,
 * so that every Greek is the control's own (d/dv0 and d/dT through Sigma).
 *
 * Error. Expanding the Riccati equation of B in T, ln phi - ln phi_BS =
 * (rho sigma v0 T^2/4) (iz)^2 (iz - 1) + O(T^3), a third cumulant 3 rho sigma v0 T^2/2 that
 * the control lacks; its first-order effect on the undiscounted call is
 * -(rho sigma v0 T^2/4) F n(d1) d2 / s^2 = -(rho sigma T/4) F n(d1) d2 (1 + O(T)), and
 * |n(d) d| <= n(1), so |c - c_limit| <= 0.061 |rho| sigma F T + O(T^{3/2}) (price on the
 * forward; 2.12 T on F = 100 for v0 = theta = 0.04, kappa = 1.5, sigma = 0.5, rho = -0.7:
 * 2.1e-10 at the threshold). When v0 is small against the variance's own motion (v0 <~
 * max(kappa theta, sigma^2) T) the leading term is (rho sigma T/6) F n(d1) d2 from the
 * kappa theta T^3 part, but the law of X/T is then not Gaussian at any T and the error is
 * of the same order (c F T, c a function of rho and sigma^2/(kappa theta); measured in
 * tests/ext/test_heston_kernel.py).
 *
 * Used where the variance hardly moves within T, sigma^2 T <= PG_HESTON_DEEP_VOV v0 (its
 * noise over T, sigma sqrt(v0 T), at most 1% of v0; the skew rho sigma sqrt(T/v0)/4 below
 * 0.25%; moment explosion beyond p ~ 1/(sigma T)): X is then Gaussian at scale s to about
 * 1%, and the limit is taken (pg_heston_limit_wanted)
 *  1. for 0 < T <= PG_HESTON_SHORT_T (1e-10 years, 3 ms), where the bound above is at most
 *     1e-11 F (sigma <= 1.5) and the Fourier integral loses accuracy: at the bulk of the
 *     integrand, u ~ 1/s, |d T| ~ sigma sqrt(T/v0) (or kappa T) is small and 1 - e^{-dT}
 *     in the characteristic function keeps about 1e-16/|dT| of relative accuracy;
 *  2. for deep rows, |ln(F/K)| >= 40 s at any T: both laws give a time value below
 *     e^{-700} F, so the limit is the intrinsic value to the last bit, where the integral
 *     would need about |x|/s panels (over the cap beyond about 11,000 s). 43 of the 3,220
 *     cases of tests/ext/test_heston_kernel.py are such rows (1 to 4 days, sigma <= 0.1,
 *     40 to 420 s out) and still agree with QuantLib to 1e-12.
 * Otherwise (v0 small against sigma^2 T, v0 = 0 in particular: the law of X/T is then not
 * Gaussian at any T, and the limit's Greeks would be wrong by O(1), 0.13 in delta at the
 * money for v0 = 0) the integral prices the row at every T. Its relative accuracy falls as
 * T does (for v0 = 0, kappa theta = 0.06, sigma = 0.5: about 1e-6 at T = 1e-9, 1e-4 at
 * 1e-12, 1e-2 at 1e-13, a call's delta below 0 at 1e-14), while prices, of order sigma F T,
 * stay within ~1e-14 of the truth on F = 100. So at T <= PG_HESTON_FLOOR_T (1e-13 years,
 * 3 us) every row takes the limit: its price is still within order sigma F T (<= 1e-14 F),
 * and its Greeks, O(1) off for such v0 (0.13 in delta, against 5e-3 for the integral at
 * 1e-13), are at least those of a price (delta in [0, 1], gamma >= 0). Where the integral
 * cannot price a row at T <= PG_HESTON_SHORT_T (its grid over the cap, or a non-finite
 * result) the limit is the last resort; above the threshold such rows stay PG_NOT_FINITE
 * (v0 = 0 with a strike many tail scales sigma T from the forward, as before). */
PG_INLINE int pg_heston_gaussian(const pg_heston_params *p)
{
    return p->sigma * p->sigma * p->T <= PG_HESTON_DEEP_VOV * p->v0;   /* false for v0 = 0 */
}
PG_INLINE int pg_heston_limit_wanted(const pg_heston_params *p, double x, double s)
{
    if (p->T <= PG_HESTON_FLOOR_T)
        return 1;
    return pg_heston_gaussian(p) && (p->T <= PG_HESTON_SHORT_T || fabs(x) >= PG_HESTON_DEEP_SD * s);
}

/* The limit's s, and its row (a valid row with T > 0). */
PG_INLINE double pg_heston_limit_s(const pg_heston_params *p)
{
    /* Sigma floored at 1e-200 (T below ~1e-198): s^3 (volga) must not underflow */
    return sqrt(fmax(pg_heston_total_var(p), 1e-200));
}
static void pg_heston_limit_row(int type, double K, double S, double r, double q, double F,
                                double DF, const pg_heston_params *p, const int *meas, int k,
                                double *o, ptrdiff_t ldo)
{
    const double I0[3 * PG_HESTON_NFAM] = {0};
    pg_heston_row(type, K, S, r, q, F, DF, p, pg_heston_limit_s(p), I0, meas, k, o, ldo);
}

/* ------------------------------------------------------------------ block loop */

typedef struct {
    const int *option_type;
    const double *strike, *time, *spot, *rate, *dividend, *v0, *kappa, *theta, *sigma, *rho;
    int broadcast;  /* bit i set: input i (in the order above) has length 1 */
} pg_heston_inputs;

PG_INLINE double pg_heston_in(const double *a, int bc, int bit, ptrdiff_t row)
{
    return a[(bc & bit) ? 0 : row];
}

/* Rows [start, start + m) of a batch: out[j * ldo + row] = measure meas[j] of row, j < k.
 * Returns the number of rows with a non-zero status (their outputs are NaN). */
static ptrdiff_t pg_heston_block(const pg_heston_inputs *in, ptrdiff_t start, int m,
                                 const int *meas, int k, double *out, ptrdiff_t ldo,
                                 int *status, pg_heston_work *w)
{
    int type[PG_HESTON_BLOCK], idx[PG_HESTON_BLOCK], done[PG_HESTON_BLOCK];
    int integral[PG_HESTON_BLOCK];   /* valid rows left to the Fourier integral */
    double K[PG_HESTON_BLOCK], S[PG_HESTON_BLOCK], R[PG_HESTON_BLOCK], Q[PG_HESTON_BLOCK];
    double F[PG_HESTON_BLOCK], DF[PG_HESTON_BLOCK];
    double I[3 * PG_HESTON_NFAM];
    pg_heston_params p[PG_HESTON_BLOCK];
    const int bc = in->broadcast;
    const int mode = pg_heston_mode(meas, k);
    const int price_only = (mode == PG_HESTON_MODE_PRICE);
    ptrdiff_t nbad = 0;
    for (int i = 0; i < m; i++) {
        const ptrdiff_t row = start + i;
        type[i] = in->option_type[(bc & 1) ? 0 : row];
        K[i] = pg_heston_in(in->strike, bc, 1 << 1, row);
        S[i] = pg_heston_in(in->spot, bc, 1 << 3, row);
        R[i] = pg_heston_in(in->rate, bc, 1 << 4, row);
        Q[i] = pg_heston_in(in->dividend, bc, 1 << 5, row);
        p[i].T = pg_heston_in(in->time, bc, 1 << 2, row);
        p[i].v0 = pg_heston_in(in->v0, bc, 1 << 6, row);
        p[i].kappa = pg_heston_in(in->kappa, bc, 1 << 7, row);
        p[i].theta = pg_heston_in(in->theta, bc, 1 << 8, row);
        p[i].sigma = pg_heston_in(in->sigma, bc, 1 << 9, row);
        p[i].rho = pg_heston_in(in->rho, bc, 1 << 10, row);
        int st = pg_heston_check(type[i], K[i], p[i].T, S[i], R[i], Q[i], &p[i]);
        done[i] = 1;
        for (int j = 0; j < k; j++) out[j * ldo + row] = NAN;
        if (st == 0) {
            pg_forward_df(PG_MODEL_BSM, p[i].T, S[i], R[i], Q[i], &F[i], &DF[i]);
            if (!pg_finite(F[i]) || !pg_finite(DF[i]) || !(F[i] > 0.0))
                st = PG_NOT_FINITE;
            else if (p[i].T == 0.0)
                pg_heston_expiry_row(type[i], K[i], S[i], meas, k, out + row, ldo);
            else
                done[i] = 0;
        }
        status[row] = st;
        /* the short-maturity limit (the logs only where it may be wanted) */
        if (!done[i] && (p[i].T <= PG_HESTON_FLOOR_T || pg_heston_gaussian(&p[i]))
            && pg_heston_limit_wanted(&p[i], log(F[i] / K[i]), pg_heston_limit_s(&p[i]))) {
            pg_heston_limit_row(type[i], K[i], S[i], R[i], Q[i], F[i], DF[i], &p[i], meas, k,
                                out + row, ldo);
            done[i] = 1;
        }
        integral[i] = !done[i];
    }
    for (int i = 0; i < m; i++) {
        if (done[i]) continue;
        /* the group: rows with the same parameters; its grid follows their widest |x| */
        int g = 0;
        double xmax = 0.0;
        for (int j = i; j < m; j++) {
            if (!done[j] && pg_heston_same(&p[i], &p[j])) {
                idx[g++] = j;
                done[j] = 1;
                xmax = fmax(xmax, fabs(log(F[j] / K[j])));
            }
        }
        const pg_heston_entry *e = pg_heston_entry_for(w, &p[i], xmax, mode);
        if (e == NULL || e->n == 0) {   /* out of memory, or the grid over its cap */
            for (int gi = 0; gi < g; gi++) status[start + idx[gi]] = PG_NOT_FINITE;
            continue;
        }
        for (int gi = 0; gi < g; gi++) {
            const int r = idx[gi];
            const ptrdiff_t row = start + r;
            const double x = log(F[r] / K[r]);
            pg_heston_strike(e, x, w->cs, I);
            if (price_only) {   /* the first lines of pg_heston_row */
                const double d1 = pg_clamp_d(x / e->s + 0.5 * e->s);
                const double d2 = pg_clamp_d(x / e->s - 0.5 * e->s);
                const double c = F[r] * pg_norm_cdf(d1) - K[r] * pg_norm_cdf(d2)
                                 - K[r] * exp(0.5 * x) / PG_PI * I[0];
                const double v = DF[r] * ((type[r] == PG_PUT) ? c - (F[r] - K[r]) : c);
                for (int j = 0; j < k; j++) out[j * ldo + row] = v;
            } else {
                pg_heston_row(type[r], K[r], S[r], R[r], Q[r], F[r], DF[r], &p[r], e->s, I,
                              meas, k, out + row, ldo);
            }
        }
    }
    for (int i = 0; i < m; i++) {
        const ptrdiff_t row = start + i;
        int finite = !w->oom && status[row] == 0;
        for (int j = 0; finite && j < k; j++) finite &= pg_finite(out[j * ldo + row]);
        if (!finite && integral[i] && !w->oom && p[i].T <= PG_HESTON_SHORT_T) {
            /* the limit's last resort: the integral could not price this row (its grid over
             * the cap, or a non-finite result; see the limit) */
            status[row] = 0;
            pg_heston_limit_row(type[i], K[i], S[i], R[i], Q[i], F[i], DF[i], &p[i], meas, k,
                                out + row, ldo);
            finite = 1;
            for (int j = 0; j < k; j++) finite &= pg_finite(out[j * ldo + row]);
        }
        if (status[row] == 0 && !finite) {
            status[row] = PG_NOT_FINITE;
            for (int j = 0; j < k; j++) out[j * ldo + row] = NAN;
        }
        nbad += (status[row] != 0);
    }
    return nbad;
}

#endif
