/* European options under the Heston (1993) model: the pointwise formulas and the block
 * loop built from them. The design note with references is at the top of heston.pyx.
 *
 * 1. Pointwise:
 *      pg_heston_check   validates one row (pg_status.h bits)
 *      pg_heston_cf      characteristic function of X = ln(S_T / F), "little trap" form
 *      pg_heston_grid    quadrature nodes and weights for one (T, v0, kappa, theta, sigma,
 *                        rho) and a bound on |ln(F/K)|
 *      pg_heston_group   prices rows sharing those parameters: the characteristic function
 *                        is evaluated once per node and reused for every strike
 * 2. Block loop: pg_heston_block prices rows [start, start + m), m <= PG_HESTON_BLOCK; rows
 *    of the block with equal (T, v0, kappa, theta, sigma, rho) form one group. Groups
 *    depend only on the block's contents, never on the thread split.
 * 3. Formula (Lewis 2001, with a Black-Scholes control variate): for x = ln(F/K),
 *      C/DF = C_BS/DF - sqrt(F K)/pi int_0^inf Re[e^{i u x} (phi(u - i/2) - phi_BS(u - i/2))]
 *                                              / (u^2 + 1/4) du,
 *    phi_BS(z) = exp(-s^2 (z^2 + i z)/2) with s^2 = the expected average variance times T.
 *    Both characteristic functions equal 1 at z = 0 and z = -i, so the integrand has no
 *    poles at u = +-i/2 and is smooth; puts by parity: P = C - DF (F - K).
 */
#ifndef PG_HESTON_H
#define PG_HESTON_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>

#include "pg_black.h"   /* pg_norm_cdf, pg_max_threads, PG_INLINE, libmvec declarations */

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
#define PG_HESTON_GL 16            /* Gauss-Legendre points per panel */
#define PG_HESTON_MAX_PANELS 4096
#define PG_HESTON_MAX_NODES (PG_HESTON_GL * PG_HESTON_MAX_PANELS)
#define PG_HESTON_PHASE 8.0        /* most radians of e^{iux} across one panel */
#define PG_HESTON_TAIL 1e-17
#define PG_HESTON_H0 0.5            /* first panel width; panels grow by 1.5 from there */       /* truncate where |phi|/u (the tail's scale) is below */
#define PG_PI 3.14159265358979323846

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
PG_INLINE pg_cx pg_cx_div(pg_cx a, pg_cx b)
{
    /* Smith's algorithm (no overflow of |b|^2), both branches computed and one selected so
     * that the node loops vectorise */
    const int big = fabs(b.re) >= fabs(b.im);
    const double r = big ? b.im / b.re : b.re / b.im;
    const double d = big ? b.re + b.im * r : b.re * r + b.im;
    const double re = big ? a.re + a.im * r : a.re * r + a.im;
    const double im = big ? a.im - a.re * r : a.im * r - a.re;
    return pg_cx_make(re / d, im / d);
}
PG_INLINE pg_cx pg_cx_exp(pg_cx a)
{
    /* sin of (a.im + 0.0), a different value to gcc (the sum is not folded: -0 + 0 = +0),
     * keeps gcc from fusing sin and cos into a scalar sincos, which has no vector form */
    const double e = exp(a.re);
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
 *   ln phi = kappa theta / sigma^2 [(beta - d) T - 2 ln((1 - g E)/(1 - g))]
 *            + v0 (beta - d)/sigma^2 (1 - E)/(1 - g E)
 * written with beta - d = -sigma^2 (z^2 + i z)/(beta + d) and the logarithm as
 * log1p(g (1 - E)/(1 - g)), so that nothing cancels as sigma -> 0. */
PG_INLINE pg_cx pg_heston_cf(pg_cx z, const pg_heston_params *p)
{
    const double s2 = p->sigma * p->sigma;
    const pg_cx iz = pg_cx_make(-z.im, z.re);
    const pg_cx q = pg_cx_add(pg_cx_mul(z, z), iz);                 /* z^2 + i z */
    const pg_cx beta = pg_cx_sub(pg_cx_make(p->kappa, 0.0), pg_cx_scale(iz, p->rho * p->sigma));
    const pg_cx d = pg_cx_sqrt(pg_cx_add(pg_cx_mul(beta, beta), pg_cx_scale(q, s2)));
    const pg_cx bpd = pg_cx_add(beta, d);
    const pg_cx bmd_s2 = pg_cx_scale(pg_cx_div(q, bpd), -1.0);      /* (beta - d)/sigma^2 */
    const pg_cx g = pg_cx_div(pg_cx_scale(bmd_s2, s2), bpd);
    const pg_cx E = pg_cx_exp(pg_cx_scale(d, -p->T));
    const pg_cx one_m_E = pg_cx_sub(pg_cx_make(1.0, 0.0), E);
    const pg_cx one_m_gE = pg_cx_sub(pg_cx_make(1.0, 0.0), pg_cx_mul(g, E));
    const pg_cx one_m_g = pg_cx_sub(pg_cx_make(1.0, 0.0), g);
    const pg_cx lg = pg_cx_log1p(pg_cx_div(pg_cx_mul(g, one_m_E), one_m_g));
    const double kt = p->kappa * p->theta;
    pg_cx lnphi = pg_cx_scale(bmd_s2, kt * p->T);
    lnphi = pg_cx_sub(lnphi, pg_cx_scale(lg, 2.0 * kt / s2));
    lnphi = pg_cx_add(lnphi, pg_cx_scale(pg_cx_div(pg_cx_mul(bmd_s2, one_m_E), one_m_gE), p->v0));
    return pg_cx_exp(lnphi);
}

/* Expected average variance over [0, T]: theta + (v0 - theta)(1 - e^{-kappa T})/(kappa T). */
PG_INLINE double pg_heston_mean_var(const pg_heston_params *p)
{
    const double kt = p->kappa * p->T;
    const double f = (kt < 1e-8) ? 1.0 - 0.5 * kt : -expm1(-kt) / kt;
    return p->theta + (p->v0 - p->theta) * f;
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

/* Nodes u[j] and weights w[j] on [0, U] for the parameters p, total deviation s and
 * |ln(F/K)| <= xmax. U is where both |phi(u - i/2)|/u and the control's are below
 * PG_HESTON_TAIL. Panel [a, a + h] has h = max(1/2, a/2) (graded away from 0, where the
 * moment explosion may bring singularities close), capped by 2/s up to min(U, 8/s) (the
 * bulk of the Black control), and never spanning more than PG_HESTON_PHASE radians of
 * e^{iux}. Beyond the bulk the widths grow geometrically: the heavy tail of phi decays
 * exponentially, on a log scale. Returns the number of nodes, or 0 when more than
 * PG_HESTON_MAX_PANELS panels would be needed (far outside the tested domain). */
PG_INLINE int pg_heston_grid(const pg_heston_params *p, double s, double xmax, double *u,
                             double *w)
{
    const double hs = 0.5 * s * s;
    double U = 1.0;
    int below = 0;
    for (int it = 0; it < 400 && below < 2; it++) {
        const pg_cx ph = pg_heston_cf(pg_cx_make(U, -0.5), p);
        const double a = hypot(ph.re, ph.im);
        const double b = exp(-hs * (U * U + 0.25));
        below = (a / U < PG_HESTON_TAIL && b / U < PG_HESTON_TAIL) ? below + 1 : 0;
        if (below < 2) U *= 1.25;
    }
    const double hx = xmax > 0.0 ? PG_HESTON_PHASE / xmax : INFINITY;
    const double A = fmin(U, 8.0 / s);
    const double h0 = fmin(fmin(2.0 / s, hx), A);
    int n = 0, panels = 0;
    double a = 0.0;
    while (a < U && panels < PG_HESTON_MAX_PANELS) {
        /* graded from PG_HESTON_H0 at 0: the characteristic function's singularities
         * (moment explosion) may lie within ~1/2 of the contour near u = 0 */
        const double h = fmin(fmax(PG_HESTON_H0, 0.5 * a), (a < A) ? h0 : hx);
        double b = a + h;
        if (a < A && b > A) b = A;
        if (b > U || (U - b) < 1e-9 * U) b = U;
        const double c = 0.5 * (a + b), r = 0.5 * (b - a);
        for (int i = 0; i < PG_HESTON_GL / 2; i++) {
            u[n] = c - r * pg_heston_gl_x[i];
            w[n++] = r * pg_heston_gl_w[i];
            u[n] = c + r * pg_heston_gl_x[i];
            w[n++] = r * pg_heston_gl_w[i];
        }
        a = b;
        panels++;
    }
    return (a < U) ? 0 : n;
}

/* Undiscounted Black call on the forward: F N(d1) - K N(d2). */
PG_INLINE double pg_heston_black_call(double F, double K, double s)
{
    const double d1 = log(F / K) / s + 0.5 * s;
    return F * pg_norm_cdf(d1) - K * pg_norm_cdf(d1 - s);
}

/* Prices the m rows idx[0..m) of arrays (type, K, F, DF), all with parameters p and T > 0,
 * into out[idx[i]] (NaN, hence PG_NOT_FINITE, when the grid would exceed its cap).
 * work holds 3 * PG_HESTON_MAX_NODES doubles. */
static void pg_heston_group(const pg_heston_params *p, int m, const int *idx, const int *type,
                            const double *K, const double *F, const double *DF, double *out,
                            double *work)
{
    double *u = work, *wr = work + PG_HESTON_MAX_NODES, *wi = work + 2 * PG_HESTON_MAX_NODES;
    const double s = sqrt(fmax(pg_heston_mean_var(p), 1e-300) * p->T);
    double xmax = 0.0;
    for (int i = 0; i < m; i++) xmax = fmax(xmax, fabs(log(F[idx[i]] / K[idx[i]])));
    const int n = pg_heston_grid(p, s, xmax, u, wr);
    if (n == 0) {   /* the quadrature would be truncated: no price rather than a wrong one */
        for (int i = 0; i < m; i++) out[idx[i]] = NAN;
        return;
    }
    /* D_j = w_j (phi(u_j - i/2) - phi_BS(u_j - i/2)) / (u_j^2 + 1/4) */
    const pg_heston_params pv = *p;   /* a local copy: no aliasing with the stores below */
    #pragma omp simd
    for (int j = 0; j < n; j++) {
        const pg_cx z = pg_cx_make(u[j], -0.5);
        const pg_cx ph = pg_heston_cf(z, &pv);
        const double den = u[j] * u[j] + 0.25;
        const double bs = exp(-0.5 * s * s * den);   /* phi_BS(u - i/2) = e^{-s^2 (u^2 + 1/4)/2} */
        const double f = wr[j] / den;
        wr[j] = f * (ph.re - bs);
        wi[j] = f * ph.im;
    }
    for (int i = 0; i < m; i++) {
        const int r = idx[i];
        const double x = log(F[r] / K[r]);
        double acc = 0.0;
        #pragma omp simd reduction(+:acc)
        for (int j = 0; j < n; j++)
            acc += cos(u[j] * x) * wr[j] - sin(u[j] * x + 0.0) * wi[j];   /* + 0.0: see pg_cx_exp */
        const double call = pg_heston_black_call(F[r], K[r], s) - sqrt(F[r] * K[r]) / PG_PI * acc;
        const double v = (type[r] == PG_CALL) ? call : call - (F[r] - K[r]);
        out[r] = DF[r] * v;
    }
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

/* Rows [start, start + m) of a batch. work: 3 * PG_HESTON_MAX_NODES doubles. Returns the
 * number of rows with a non-zero status (their price is NaN). */
static ptrdiff_t pg_heston_block(const pg_heston_inputs *in, ptrdiff_t start, int m,
                                 double *out, int *status, double *work)
{
    int type[PG_HESTON_BLOCK], idx[PG_HESTON_BLOCK], done[PG_HESTON_BLOCK];
    double K[PG_HESTON_BLOCK], F[PG_HESTON_BLOCK], DF[PG_HESTON_BLOCK], o[PG_HESTON_BLOCK];
    pg_heston_params p[PG_HESTON_BLOCK];
    const int bc = in->broadcast;
    ptrdiff_t nbad = 0;
    for (int i = 0; i < m; i++) {
        const ptrdiff_t row = start + i;
        type[i] = in->option_type[(bc & 1) ? 0 : row];
        K[i] = pg_heston_in(in->strike, bc, 1 << 1, row);
        const double S = pg_heston_in(in->spot, bc, 1 << 3, row);
        const double r = pg_heston_in(in->rate, bc, 1 << 4, row);
        const double q = pg_heston_in(in->dividend, bc, 1 << 5, row);
        p[i].T = pg_heston_in(in->time, bc, 1 << 2, row);
        p[i].v0 = pg_heston_in(in->v0, bc, 1 << 6, row);
        p[i].kappa = pg_heston_in(in->kappa, bc, 1 << 7, row);
        p[i].theta = pg_heston_in(in->theta, bc, 1 << 8, row);
        p[i].sigma = pg_heston_in(in->sigma, bc, 1 << 9, row);
        p[i].rho = pg_heston_in(in->rho, bc, 1 << 10, row);
        int st = pg_heston_check(type[i], K[i], p[i].T, S, r, q, &p[i]);
        done[i] = 1;
        o[i] = NAN;
        if (st == 0) {
            pg_forward_df(PG_MODEL_BSM, p[i].T, S, r, q, &F[i], &DF[i]);
            if (!pg_finite(F[i]) || !pg_finite(DF[i]) || !(F[i] > 0.0)) st = PG_NOT_FINITE;
            else if (p[i].T == 0.0)
                o[i] = fmax(type[i] == PG_CALL ? S - K[i] : K[i] - S, 0.0);
            else
                done[i] = 0;
        }
        status[row] = st;
    }
    for (int i = 0; i < m; i++) {
        if (done[i]) continue;
        int g = 0;
        for (int j = i; j < m; j++) {
            if (!done[j] && pg_heston_same(&p[i], &p[j])) {
                idx[g++] = j;
                done[j] = 1;
            }
        }
        pg_heston_group(&p[i], g, idx, type, K, F, DF, o, work);
    }
    for (int i = 0; i < m; i++) {
        const ptrdiff_t row = start + i;
        if (status[row] == 0 && !pg_finite(o[i])) status[row] = PG_NOT_FINITE;
        if (status[row] != 0) { o[i] = NAN; nbad++; }
        out[row] = o[i];
    }
    return nbad;
}

#endif
