/* American options under Black-Scholes-Merton: the early-exercise-boundary fixed-point engine
 * (Andersen, Lake and Offengenden) and a Leisen-Reimer binomial tree. The design note with
 * sources and pages is at the top of american.pyx; this header holds the code.
 *
 * 1. Everything is written for a put of unit strike on x = S/K with rates (r, q):
 *      put(S, K, r, q)  = K P(S/K; r, q)
 *      call(S, K, r, q) = S P(K/S; q, r)        (McDonald-Schroder put-call symmetry)
 *    so one boundary b(tau) = B(tau)/K serves every spot, and spot bumps (delta, gamma)
 *    reuse it.
 * 2. Regimes of the unit put (r, q): r <= 0 and q >= r: never exercised early, European
 *    price (exact). r >= 0 otherwise: one boundary, b(0+) = X = min(1, r/q) (q > 0) or 1.
 *    q < r < 0: two boundaries; the fixed-point engine does not cover it and the row is
 *    priced on the tree (documented in american.pyx).
 * 3. Boundary engine (pg_am_solve, pg_am_price_*): the boundary is carried as
 *    y(z) = ln(b/X)^2 on n + 1 Chebyshev-Lobatto nodes z_j = -cos(j pi/n) of
 *    z = 2 sqrt(tau/T) - 1 (z_0 = -1: tau = 0, y = 0). Every integral along the boundary is
 *    taken in theta with t = tau sin^2(theta), u = tau - t = tau cos^2(theta), which makes
 *    both sqrt(t) and sqrt(u) smooth (the integrands have square-root behaviour at both
 *    ends), with Gauss-Legendre nodes in theta. The Chebyshev abscissa of a quadrature node,
 *    (1 + z_i) cos(theta_k) - 1, does not depend on T, so the interpolation from node values
 *    to quadrature nodes is a constant matrix per scheme, built once (pg_am_init).
 * 4. Tree (pg_am_tree): Leisen-Reimer with Peizer-Pratt method-2 inversion, odd steps,
 *    early exercise at every node; delta, gamma and theta from the nodes of steps 1 and 2.
 *    Discrete cash dividends (pg_am_divs, one schedule for the batch) by the escrowed
 *    model: the tree on S - PV(dividends), the exercise value on the actual spot.
 * 5. Stopping (pg_stop.h): pg_am_rows polls the stop block before each row, and a tree polls
 *    every PG_AM_POLL_NODES nodes of its backward walk (under a millisecond; a tree of
 *    100,001 steps is seconds). A stopped tree returns NaN; the row, and every row after it,
 *    gets PG_CANCELLED and NaN outputs.
 */
#ifndef PG_AMERICAN_H
#define PG_AMERICAN_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "pg_black.h"   /* libmvec declarations, N(x), n(x), measure codes, input checks */
#include "pg_stop.h"    /* cancellation and deadline */

#define PG_AM_POLL_NODES (1 << 20)   /* tree nodes between stop polls (0.2-1 ms) */

#define PG_AM_MAX_N 40          /* Chebyshev intervals */
#define PG_AM_MAX_L 64          /* Gauss-Legendre nodes of the fixed-point integrals */
#define PG_AM_MAX_P 128         /* Gauss-Legendre nodes of the price integral */
#define PG_AM_NSCHEMES 3
#define PG_AM_METHOD_FP 1
#define PG_AM_METHOD_TREE 2
#define PG_AM_PI 3.14159265358979323846
#define PG_AM_WB 8              /* Jacobian columns per register block (one AVX-512 vector) */

/* ------------------------------------------------------------------ schemes */

typedef struct {
    int n;          /* Chebyshev intervals (n + 1 nodes, n unknowns) */
    int l;          /* Gauss-Legendre nodes per fixed-point integral */
    int m;          /* iterations: one partial Jacobi-Newton step, then m - 1 plain ones */
    int p;          /* Gauss-Legendre nodes of the price integral */
    int newton;     /* of the m steps, the first `newton` form the Jacobian afresh (the rest reuse it) */
    double sq[PG_AM_MAX_N + 1];          /* (1 + z_i)/2 = sqrt(tau_i/T) */
    double sin_l[PG_AM_MAX_L], cos_l[PG_AM_MAX_L], w_l[PG_AM_MAX_L];  /* theta nodes on [0, pi/2] */
    double sin_p[PG_AM_MAX_P], cos_p[PG_AM_MAX_P], w_p[PG_AM_MAX_P];
    double *Wl;     /* (n + 1) x (n l): node value j -> y at (node i = 1..n, theta_k) */
    int ws;         /* row stride of Wr: n rounded up to a multiple of PG_AM_WB */
    double *Wr;     /* (n l) x ws: node j = 1..n (column j - 1, zero padded) -> y at each
                       quadrature point (for the Jacobian) */
    double *Wp;     /* p x (n + 1): node values -> y at tau = T cos^2(theta_k) */
} pg_am_scheme;

static pg_am_scheme pg_am_schemes[PG_AM_NSCHEMES];

/* Gauss-Legendre nodes and weights on [-1, 1] (Newton on P_l from the usual first guess). */
static void pg_am_gauss_legendre(int l, double *x, double *w)
{
    for (int i = 0; i < (l + 1) / 2; ++i) {
        double z = cos(PG_AM_PI * (i + 0.75) / (l + 0.5)), pp = 1.0;
        for (int it = 0; it < 100; ++it) {
            double p1 = 1.0, p2 = 0.0;
            for (int j = 1; j <= l; ++j) {
                double p3 = p2;
                p2 = p1;
                p1 = ((2.0 * j - 1.0) * z * p2 - (j - 1.0) * p3) / j;
            }
            pp = l * (z * p1 - p2) / (z * z - 1.0);
            double z1 = z;
            z = z1 - p1 / pp;
            if (fabs(z - z1) < 1e-16) break;
        }
        /* recompute the derivative at the converged node */
        double p1 = 1.0, p2 = 0.0;
        for (int j = 1; j <= l; ++j) {
            double p3 = p2;
            p2 = p1;
            p1 = ((2.0 * j - 1.0) * z * p2 - (j - 1.0) * p3) / j;
        }
        pp = l * (z * p1 - p2) / (z * z - 1.0);
        x[i] = -z;
        x[l - 1 - i] = z;
        w[i] = w[l - 1 - i] = 2.0 / ((1.0 - z * z) * pp * pp);
    }
}

/* Barycentric weights of the Chebyshev-Lobatto interpolant on z_j = -cos(j pi/n) at z:
 * L_j(z) for j = 0..n (the same polynomial as a Chebyshev series through those values). */
static void pg_am_cheb_weights(int n, double z, double *L)
{
    double s = 0.0;
    for (int j = 0; j <= n; ++j) {
        double zj = -cos(PG_AM_PI * j / n);
        double wj = ((j & 1) ? -1.0 : 1.0) * ((j == 0 || j == n) ? 0.5 : 1.0);
        if (z == zj) {
            for (int k = 0; k <= n; ++k) L[k] = (k == j) ? 1.0 : 0.0;
            return;
        }
        L[j] = wj / (z - zj);
        s += L[j];
    }
    for (int j = 0; j <= n; ++j) L[j] /= s;
}

static void pg_am_theta_rule(int l, double *sn, double *cs, double *w)
{
    double x[PG_AM_MAX_P], wx[PG_AM_MAX_P];
    pg_am_gauss_legendre(l, x, wx);
    for (int k = 0; k < l; ++k) {
        double th = 0.25 * PG_AM_PI * (1.0 + x[k]);
        sn[k] = sin(th);
        cs[k] = cos(th);
        w[k] = 0.25 * PG_AM_PI * wx[k];
    }
}

static int pg_am_scheme_init(pg_am_scheme *sc, int n, int l, int m, int p, int newton)
{
    sc->newton = newton;
    free(sc->Wl); free(sc->Wr); free(sc->Wp); sc->Wl = sc->Wr = sc->Wp = NULL;
    sc->n = n; sc->l = l; sc->m = m; sc->p = p;
    for (int i = 0; i <= n; ++i)
        sc->sq[i] = 0.5 * (1.0 - cos(PG_AM_PI * i / n));
    pg_am_theta_rule(l, sc->sin_l, sc->cos_l, sc->w_l);
    pg_am_theta_rule(p, sc->sin_p, sc->cos_p, sc->w_p);
    sc->Wl = (double *)malloc(sizeof(double) * (size_t)n * l * (n + 1));
    sc->ws = (n + PG_AM_WB - 1) / PG_AM_WB * PG_AM_WB;
    sc->Wr = (double *)calloc((size_t)n * l * sc->ws, sizeof(double));
    sc->Wp = (double *)malloc(sizeof(double) * (size_t)p * (n + 1));
    if (!sc->Wl || !sc->Wr || !sc->Wp) return -1;
    double L[PG_AM_MAX_N + 1];
    for (int i = 1; i <= n; ++i)
        for (int k = 0; k < l; ++k) {
            pg_am_cheb_weights(n, 2.0 * sc->sq[i] * sc->cos_l[k] - 1.0, L);
            for (int j = 0; j <= n; ++j) {
                sc->Wl[(size_t)j * n * l + (size_t)(i - 1) * l + k] = L[j];
                if (j > 0) sc->Wr[((size_t)(i - 1) * l + k) * sc->ws + (j - 1)] = L[j];
            }
        }
    for (int k = 0; k < p; ++k)
        pg_am_cheb_weights(n, 2.0 * sc->cos_p[k] - 1.0, sc->Wp + (size_t)k * (n + 1));
    return 0;
}

/* Scheme codes 1 fast, 2 accurate, 3 high precision: (n, l, m, p, newton). */
static const int pg_am_scheme_params[PG_AM_NSCHEMES][5] = {
    {8, 8, 2, 24, 1},
    {12, 12, 2, 40, 2},
    {32, 48, 3, 128, 3},
};

static int pg_am_init(void)
{
    static int done = 0;
    if (done) return 0;
    for (int s = 0; s < PG_AM_NSCHEMES; ++s) {
        const int *a = pg_am_scheme_params[s];
        if (pg_am_scheme_init(&pg_am_schemes[s], a[0], a[1], a[2], a[3], a[4])) return -1;
    }
    done = 1;
    return 0;
}

/* Doubles of work space one row needs (fixed point engine). */
PG_INLINE size_t pg_am_fp_work(const pg_am_scheme *sc) { return (size_t)12 * sc->n * sc->l + 16; }
/* ... and the tree (values and spot powers). */
PG_INLINE size_t pg_am_tree_work(int steps) { return (size_t)2 * (steps + 2) + 16; }

/* ------------------------------------------------------------------ regimes */

#define PG_AM_EUROPEAN 0
#define PG_AM_SINGLE 1
#define PG_AM_DOUBLE 2

/* Regime of the unit put with rate r and yield q. */
PG_INLINE int pg_am_regime(double r, double q)
{
    if (r <= 0.0 && q >= r) return PG_AM_EUROPEAN;
    if (r < 0.0) return PG_AM_DOUBLE;
    return PG_AM_SINGLE;
}

/* European put of unit strike on x. */
PG_INLINE double pg_am_euro_put(double x, double T, double r, double q, double sigma)
{
    pg_black_terms t = pg_black_terms_of(PG_MODEL_BSM, PG_PUT, 1.0, T, x, r, q, sigma);
    return t.price;
}

/* ------------------------------------------------------------------ QD+ (initial boundary) */

#define PG_AM_QD_ITER 8   /* Halley steps from b = X: a start for the Newton steps that follow */

/* QD+ exercise boundary of the unit put at the n collocation times tau[1..n] (J. Li,
 * "Analytical approximations for the critical stock prices of American options: a
 * performance comparison", Rev. Deriv. Res. 13, 2010, pp. 75-99; ALO sec. 5.1). Solves
 *   f(s) = (1 - dq N(-d+)) s - beta (1 - s - p(s)) + theta_E(s) alpha/(r dr) = 0
 * (the QD+ smooth-pasting condition multiplied through by 1 - s - p(s), so no division by
 * the early exercise premium) with a fixed number of Halley steps from s = X, vectorised
 * over the nodes. A fixed count keeps the result a smooth function of the parameters, as the
 * finite-difference Greeks need. alpha, beta are written so that r -> 0 has no 0/0:
 * 2 lambda + omega - 1 = -sqrt(D), alpha/(r dr) = -2/(sigma^2 sqrt D). */
static void pg_am_qdplus(int n, const double *tau, double r, double q, double sigma, double X,
                         double *b)
{
    const double s2 = sigma * sigma, om1 = 2.0 * (r - q) / s2 - 1.0, xmin = 1e-12 * X;
    double Cdr[PG_AM_MAX_N + 1], Cdq[PG_AM_MAX_N + 1], Cbeta[PG_AM_MAX_N + 1], Card[PG_AM_MAX_N + 1];
    for (int i = 1; i <= n; ++i) {
        const double t = tau[i];
        const double dr = exp(-r * t), h = -expm1(-r * t);
        const double roh = (r > 0.0 && h > 0.0) ? r / h : 1.0 / t;   /* r / (1 - e^{-r tau}) */
        const double sD = sqrt(om1 * om1 + 8.0 * roh / s2);
        const double lam = 0.5 * (-om1 - sD);
        const double a_h = -2.0 * dr * roh / (s2 * sD);                 /* alpha / h */
        const double a_lp = -4.0 * dr * roh * roh / (s2 * s2 * sD * sD); /* alpha lambda' */
        Cbeta[i] = a_h - a_lp / sD - lam;
        Card[i] = -2.0 / (s2 * sD);                                      /* alpha / (r dr) */
        Cdr[i] = dr;
        Cdq[i] = exp(-q * t);
    }
    for (int i = 1; i <= n; ++i) b[i] = X;
    for (int it = 0; it < PG_AM_QD_ITER; ++it) {
        #pragma omp simd
        for (int i = 1; i <= n; ++i) {
            const double t = tau[i], v = sigma * sqrt(t), x = b[i];
            const double dr = Cdr[i], dq = Cdq[i], beta = Cbeta[i], a_rdr = Card[i];
            const double dp = (log(x) + (r - q) * t) / v + 0.5 * v, dm = dp - v;
            const double Np = pg_norm_cdf(-dp), Nm = pg_norm_cdf(-dm), np_ = pg_norm_pdf(dp);
            const double pe = dr * Nm - x * dq * Np;
            const double th = r * dr * Nm - q * x * dq * Np - 0.5 * s2 * x * dq * np_ / v;
            const double thp = -dq * (np_ * ((r - q) / v - dm / (2.0 * t)) + q * Np);
            const double gam = dq * np_ / (x * v);
            const double col = gam * (q + (r - q) * dp / v + (1.0 - dp * dm) / (2.0 * t));
            const double f = (1.0 - dq * Np) * x - beta * (1.0 - x - pe) + a_rdr * th;
            const double f1 = 1.0 - dq * Np + dq * np_ / v + beta * (1.0 - dq * Np) + a_rdr * thp;
            const double f2 = dq * np_ * (1.0 - dp / v) / (x * v) + beta * gam + a_rdr * col;
            const double nt = f / f1, c = 1.0 - 0.5 * nt * f2 / f1;
            const double step = c > 0.5 ? nt / c : nt;   /* Halley; Newton where it would blow up */
            double xn = x - step;
            xn = xn > xmin ? xn : 0.5 * (x + xmin);      /* stays positive (NaN falls here too) */
            b[i] = (xn == xn && f1 != 0.0) ? xn : x;
        }
    }
}

/* ------------------------------------------------------------------ fixed point engine */

typedef struct {
    const pg_am_scheme *sc;
    double r, q, sigma, T, X, lnX;
    double y[PG_AM_MAX_N + 1];   /* ln(b/X)^2 at the Chebyshev nodes; y[0] = 0 (tau = 0) */
} pg_am_boundary;

/* LU factorisation with partial pivoting of the n x n row-major A in place; 0 if singular. */
static int pg_am_lu(int n, double *A, int *piv)
{
    for (int c = 0; c < n; ++c) {
        int p = c;
        for (int i = c + 1; i < n; ++i)
            if (fabs(A[i * n + c]) > fabs(A[p * n + c])) p = i;
        piv[c] = p;
        if (!(fabs(A[p * n + c]) > 0.0)) return 0;
        if (p != c)
            for (int j = 0; j < n; ++j) { const double t = A[c * n + j]; A[c * n + j] = A[p * n + j]; A[p * n + j] = t; }
        const double ip = 1.0 / A[c * n + c];
        for (int i = c + 1; i < n; ++i) {
            const double f = A[i * n + c] * ip;
            A[i * n + c] = f;
            #pragma omp simd
            for (int j = c + 1; j < n; ++j) A[i * n + j] -= f * A[c * n + j];
        }
    }
    return 1;
}

static void pg_am_lu_solve(int n, const double *A, const int *piv, double *x)
{
    for (int c = 0; c < n; ++c) {
        if (piv[c] != c) { const double t = x[c]; x[c] = x[piv[c]]; x[piv[c]] = t; }
        for (int i = c + 1; i < n; ++i) x[i] -= A[i * n + c] * x[c];
    }
    for (int c = n - 1; c >= 0; --c) {
        double acc = x[c];
        for (int j = c + 1; j < n; ++j) acc -= A[c * n + j] * x[j];
        x[c] = acc / A[c * n + c];
    }
}

/* Solves the boundary of the unit put (regime PG_AM_SINGLE, T > 0): the collocation
 * equations of ALO's value-matching system FP-B,
 *   b_i = N(tau_i, b)/D(tau_i, b),  i = 1..n   (unit strike, t = tau - u)
 *   N = e^{-r tau} N(d-(tau, b_i)) + r int_0^tau e^{-r t} N(d-(t, b_i/b(tau_i - t))) dt
 *   D = e^{-q tau} N(d+(tau, b_i)) + q int_0^tau e^{-q t} N(d+(t, b_i/b(tau_i - t))) dt,
 * from the QD+ boundary, with m Newton steps on R_i(s) = ln N_i - ln D_i - ln b_i in
 * s_i = -ln(b_i/X) = sqrt(y_i); the Jacobian (every node enters every integral through the
 * interpolated boundary) is formed at the first step and reused (chord steps).
 * `work` holds pg_am_fp_work(sc) doubles. */
__attribute__((noinline)) static void pg_am_solve(const pg_am_scheme *sc, double r, double q, double sigma, double T,
                        pg_am_boundary *bd, double *work)
{
    const int n = sc->n, l = sc->l, nl = n * l, np1 = n + 1;
    const double X = (q > 0.0 && r < q) ? r / q : 1.0;
    bd->sc = sc; bd->r = r; bd->q = q; bd->sigma = sigma; bd->T = T;
    bd->X = X; bd->lnX = log(X);

    double *inv = work, *cpl = work + nl, *sv = work + 2 * nl, *an = work + 3 * nl,
           *ad = work + 4 * nl, *hq = work + 5 * nl, *g = work + 6 * nl, *sp = work + 7 * nl,
           *fn = work + 8 * nl, *fd = work + 9 * nl, *cnv = work + 10 * nl, *cdv = work + 11 * nl;
    double tau[PG_AM_MAX_N + 1], stau[PG_AM_MAX_N + 1], er[PG_AM_MAX_N + 1], eq[PG_AM_MAX_N + 1];
    double s[PG_AM_MAX_N + 1], bq[PG_AM_MAX_N + 1];
    double SN[PG_AM_MAX_N + 1], SD[PG_AM_MAX_N + 1], SNd[PG_AM_MAX_N + 1], SDd[PG_AM_MAX_N + 1];
    double R[PG_AM_MAX_N + 1], diag[PG_AM_MAX_N + 1];
    double J[PG_AM_MAX_N * PG_AM_MAX_N];
    int piv[PG_AM_MAX_N], have_j = 0;

    const double sT = sqrt(T);
    for (int i = 1; i <= n; ++i) {
        stau[i] = sT * sc->sq[i];
        tau[i] = stau[i] * stau[i];
        er[i] = exp(-r * tau[i]);
        eq[i] = exp(-q * tau[i]);
    }
    pg_am_qdplus(n, tau, r, q, sigma, X, bq);
    bd->y[0] = 0.0;
    s[0] = 0.0;
    for (int i = 1; i <= n; ++i) {
        const double lb = log(bq[i]) - bd->lnX;
        s[i] = fabs(lb);
        bd->y[i] = lb * lb;
    }

    /* per (node, theta) constants: t = tau sin^2, dt = 2 tau sin cos dtheta; the node's
     * sqrt(tau) and tau are spread over its l points first so one simd loop covers all n l */
    for (int i = 1; i <= n; ++i)
        for (int k = 0; k < l; ++k) { sp[(i - 1) * l + k] = stau[i]; fn[(i - 1) * l + k] = tau[i]; }
    {
        const double *sn = sc->sin_l, *cs = sc->cos_l, *w = sc->w_l;
        for (int i = 0; i < n; ++i)
            for (int k = 0; k < l; ++k) { fd[i * l + k] = sn[k]; cnv[i * l + k] = w[k] * 2.0 * sn[k] * cs[k]; }
    }
    #pragma omp simd
    for (int a = 0; a < nl; ++a) {
        const double st = sp[a] * fd[a], t = st * st, sd = sigma * st;
        const double dt = cnv[a] * fn[a];
        inv[a] = 1.0 / sd;
        sv[a] = sd;
        cpl[a] = (r - q) * st / sigma + 0.5 * sd;
        an[a] = r * dt * exp(-r * t);
        ad[a] = q * dt * exp(-q * t);
    }

    for (int it = 0; it < sc->m; ++it) {
        const int jac = !have_j || it < sc->newton;
        /* y at every (node, theta): hq = sum_j y_j Wl[j], in register blocks of 32 */
        for (int a0 = 0; a0 < nl; a0 += 32) {
            double acc[32];
            const int m_ = nl - a0 < 32 ? nl - a0 : 32;
            #pragma omp simd
            for (int t = 0; t < 32; ++t) acc[t] = 0.0;
            for (int j = 1; j < np1; ++j) {
                const double yj = bd->y[j], *Wj = sc->Wl + (size_t)j * nl + a0;
                if (m_ == 32) {
                    #pragma omp simd
                    for (int t = 0; t < 32; ++t) acc[t] += yj * Wj[t];
                } else {
                    for (int t = 0; t < m_; ++t) acc[t] += yj * Wj[t];
                }
            }
            for (int t = 0; t < m_; ++t) hq[a0 + t] = acc[t];
        }
        /* the integrands (and, for the Jacobian, their derivatives) at every (node, theta) point
         * in one simd loop over all n l points (no per-node remainder left to scalar erfc/exp),
         * then summed node by node */
        for (int i = 1; i <= n; ++i)
            for (int k = 0; k < l; ++k) sp[(i - 1) * l + k] = s[i];
        if (jac) {
            #pragma omp simd
            for (int a = 0; a < nl; ++a) {
                const double hk = hq[a] > 0.0 ? hq[a] : 0.0, sk = sqrt(hk);
                const double dp = (sk - sp[a]) * inv[a] + cpl[a], dm = dp - sv[a];
                fn[a] = an[a] * pg_norm_cdf(dm);
                fd[a] = ad[a] * pg_norm_cdf(dp);
                const double cn = an[a] * pg_norm_pdf(dm) * inv[a];
                const double cd = ad[a] * pg_norm_pdf(dp) * inv[a];
                cnv[a] = cn;
                cdv[a] = cd;
                /* d s_k / d y_j = W_kj / (2 s_k); the factor 2 s_j comes with d y_j / d s_j */
                const double rs = sk > 0.0 ? 1.0 / sk : 0.0;
                g[a] = cn * rs;
                hq[a] = cd * rs;           /* y no longer needed: reuse */
            }
        } else {
            #pragma omp simd
            for (int a = 0; a < nl; ++a) {
                const double hk = hq[a] > 0.0 ? hq[a] : 0.0;
                const double dp = (sqrt(hk) - sp[a]) * inv[a] + cpl[a], dm = dp - sv[a];
                fn[a] = an[a] * pg_norm_cdf(dm);
                fd[a] = ad[a] * pg_norm_cdf(dp);
            }
        }
        for (int i = 1; i <= n; ++i) {
            const double *fn_i = fn + (i - 1) * l, *fd_i = fd + (i - 1) * l;
            double sn_ = 0.0, sd_ = 0.0, snd = 0.0, sdd = 0.0;
            for (int k = 0; k < l; ++k) { sn_ += fn_i[k]; sd_ += fd_i[k]; }
            if (jac) {
                const double *cn_i = cnv + (i - 1) * l, *cd_i = cdv + (i - 1) * l;
                for (int k = 0; k < l; ++k) { snd += cn_i[k]; sdd += cd_i[k]; }
            }
            SN[i] = sn_; SD[i] = sd_; SNd[i] = snd; SDd[i] = sdd;
        }
        /* the terms outside the integrals and the residuals, vectorised over the nodes */
        #pragma omp simd
        for (int i = 1; i <= n; ++i) {
            const double v = sigma * stau[i], lb = bd->lnX - s[i];
            const double dp = (lb + (r - q) * tau[i]) / v + 0.5 * v, dm = dp - v;
            const double N = er[i] * pg_norm_cdf(dm) + SN[i], D = eq[i] * pg_norm_cdf(dp) + SD[i];
            R[i] = log(N / D) - lb;
            diag[i] = 1.0 - (er[i] * pg_norm_pdf(dm) / v + SNd[i]) / N
                          + (eq[i] * pg_norm_pdf(dp) / v + SDd[i]) / D;
            SN[i] = 1.0 / N;
            SD[i] = 1.0 / D;
        }
        if (jac) {
            /* J_ij = s_j sum_k (gN_ik/N_i - gD_ik/D_i) W_ikj + delta_ij diag_i */
            for (int i = 1; i <= n; ++i) {
                double *g_i = g + (i - 1) * l;
                const double *gd_i = hq + (i - 1) * l;
                const double iN = SN[i], iD = SD[i];
                double row[PG_AM_MAX_N + PG_AM_WB];
                #pragma omp simd
                for (int k = 0; k < l; ++k) g_i[k] = g_i[k] * iN - gd_i[k] * iD;
                /* row_j = sum_k g_k W_ikj, PG_AM_WB columns at a time held in registers */
                const int ws = sc->ws;
                const double *Wi = sc->Wr + (size_t)(i - 1) * l * ws;
                for (int jb = 0; jb < ws; jb += PG_AM_WB) {
                    double acc[PG_AM_WB];
                    #pragma omp simd
                    for (int t = 0; t < PG_AM_WB; ++t) acc[t] = 0.0;
                    for (int k = 0; k < l; ++k) {
                        const double gk = g_i[k], *Wik = Wi + (size_t)k * ws + jb;
                        #pragma omp simd
                        for (int t = 0; t < PG_AM_WB; ++t) acc[t] += gk * Wik[t];
                    }
                    #pragma omp simd
                    for (int t = 0; t < PG_AM_WB; ++t) row[jb + t] = acc[t];
                }
                for (int j = 1; j <= n; ++j)
                    J[(i - 1) * n + (j - 1)] = s[j] * row[j - 1] + (i == j ? diag[i] : 0.0);
            }
            have_j = pg_am_lu(n, J, piv);
            if (!have_j) {
                /* singular Jacobian (not seen): fall back to the plain fixed-point step */
                for (int i = 1; i <= n; ++i) {
                    double si = s[i] + R[i];
                    si = si > 0.5 * s[i] ? si : 0.5 * s[i];
                    s[i] = si;
                    bd->y[i] = si * si;
                }
                continue;
            }
        }
        double d[PG_AM_MAX_N];
        for (int i = 0; i < n; ++i) d[i] = -R[i + 1];
        pg_am_lu_solve(n, J, piv, d);
        for (int i = 1; i <= n; ++i) {
            double si = s[i] + d[i - 1];
            si = (si == si) ? si : s[i];
            si = si > 0.5 * s[i] ? si : 0.5 * s[i];   /* b_i stays below X */
            s[i] = si;
            bd->y[i] = si * si;
        }
    }
}

/* Boundary b(tau) of a solved unit put, tau in [0, T]. */
static double pg_am_boundary_at(const pg_am_boundary *bd, double tau)
{
    double L[PG_AM_MAX_N + 1];
    const int n = bd->sc->n;
    double z = 2.0 * sqrt(tau / bd->T) - 1.0;
    if (z < -1.0) z = -1.0;
    if (z > 1.0) z = 1.0;
    pg_am_cheb_weights(n, z, L);
    double h = 0.0;
    for (int j = 0; j <= n; ++j) h += L[j] * bd->y[j];
    return bd->X * exp(-sqrt(h > 0.0 ? h : 0.0));
}

/* The price integral of a solved boundary for maturity Tp <= T, ready to be evaluated at
 * any spot: EEP(x) = int_0^Tp [r e^{-rt} N(-d-(t, x/b(Tp - t))) - q x e^{-qt} N(-d+)] dt,
 * t = Tp sin^2(theta). */
typedef struct {
    const pg_am_boundary *bd;
    double Tp, bTp;               /* maturity, boundary there */
    double ar[PG_AM_MAX_P], aq[PG_AM_MAX_P], inv[PG_AM_MAX_P], cp[PG_AM_MAX_P],
           sv[PG_AM_MAX_P], sh[PG_AM_MAX_P];
} pg_am_price_ctx;

__attribute__((noinline)) static void pg_am_price_prepare(const pg_am_boundary *bd, double Tp, pg_am_price_ctx *c)
{
    const pg_am_scheme *sc = bd->sc;
    const int p = sc->p, np1 = sc->n + 1;
    const double r = bd->r, q = bd->q, sigma = bd->sigma, sT = sqrt(Tp);
    double L[PG_AM_MAX_N + 1];
    c->bd = bd;
    c->Tp = Tp;
    c->bTp = pg_am_boundary_at(bd, Tp);
    const int same = (Tp == bd->T);
    const double ratio = same ? 1.0 : sqrt(Tp / bd->T);
    for (int k = 0; k < p; ++k) {
        const double *Wk;
        if (same) {
            Wk = sc->Wp + (size_t)k * np1;
        } else {
            pg_am_cheb_weights(sc->n, 2.0 * ratio * sc->cos_p[k] - 1.0, L);
            Wk = L;
        }
        double h = 0.0;
        for (int j = 0; j < np1; ++j) h += Wk[j] * bd->y[j];
        c->sh[k] = sqrt(h > 0.0 ? h : 0.0);
    }
    const double *sn = sc->sin_p, *cs = sc->cos_p, *w = sc->w_p;
    #pragma omp simd
    for (int k = 0; k < p; ++k) {
        const double st = sT * sn[k], t = st * st, s = sigma * st;
        const double g = w[k] * 2.0 * Tp * sn[k] * cs[k];
        c->ar[k] = r * g * exp(-r * t);
        c->aq[k] = q * g * exp(-q * t);
        c->inv[k] = 1.0 / s;
        c->sv[k] = s;
        c->cp[k] = (r - q) * st / sigma + 0.5 * s;
    }
}

/* American unit put at x for the prepared maturity. */
__attribute__((noinline)) static double pg_am_price_eval(const pg_am_price_ctx *c, double x)
{
    const pg_am_boundary *bd = c->bd;
    const int p = bd->sc->p;
    if (x <= c->bTp) return 1.0 - x;
    const double lx = log(x) - bd->lnX;   /* ln(x/b) = ln(x/X) + sqrt(y) */
    const double *ar = c->ar, *aq = c->aq, *inv = c->inv, *cp = c->cp, *sv = c->sv, *sh = c->sh;
    double s1 = 0.0, s2 = 0.0;
    #pragma omp simd reduction(+:s1, s2)
    for (int k = 0; k < p; ++k) {
        const double dp = (lx + sh[k]) * inv[k] + cp[k], dm = dp - sv[k];
        s1 += ar[k] * pg_norm_cdf(-dm);
        s2 += aq[k] * pg_norm_cdf(-dp);
    }
    double eep = s1 - x * s2;
    if (eep < 0.0) eep = 0.0;
    const double v = pg_am_euro_put(x, c->Tp, bd->r, bd->q, bd->sigma) + eep;
    return v > 1.0 - x ? v : 1.0 - x;
}

/* ------------------------------------------------------------------ Leisen-Reimer tree */

/* Peizer-Pratt method-2 inversion h(z; n) (Leisen and Reimer 1996, p. 324). */
PG_INLINE double pg_am_pp2(double z, double n)
{
    const double a = z / (n + 1.0 / 3.0 + 0.1 / (n + 1.0));
    const double s = 0.5 * sqrt(-expm1(-a * a * (n + 1.0 / 6.0)));
    return z >= 0.0 ? 0.5 + s : 0.5 - s;
}

/* Discrete cash dividends of one underlying, shared by every row of a batch: ex-times t[k]
 * (years, in time order) and amounts a[k]. Only those with ex-time in (0, T] of a row count
 * for it (american.pyx, design note 4: the escrowed model). */
typedef struct {
    const double *t, *a;
    int n;
} pg_am_divs;

/* Present value at time 0, at the flat rate r, of the dividends with ex-time in (tau, T]. */
PG_INLINE double pg_am_div_pv(const pg_am_divs *dv, double tau, double T, double r)
{
    double pv = 0.0;
    for (int k = 0; k < dv->n; ++k)
        if (dv->t[k] > tau && dv->t[k] <= T) pv += dv->a[k] * exp(-r * dv->t[k]);
    return pv;
}

/* American option (w = +1 call, -1 put) on a Leisen-Reimer tree of `steps` (odd) steps.
 * Returns the price; delta, gamma, theta (calendar) from the grid when g != NULL.
 * With cash dividends (dv->n > 0; escrowed model, american.pyx design note 4) the tree is
 * built on X = S - PV(dividends in (0, T]) and the exercise value at a node at time tau is
 * that of the actual spot X_node + PV_tau(dividends in (tau, T]), both at the flat rate r;
 * without them every step is the plain tree's, bit for bit. */
static double pg_am_tree(double w, double S, double K, double T, double r, double q,
                         double sigma, int steps, double *work, double *g, const pg_am_divs *dv,
                         int64_t *stop)
{
    const int N = steps;
    const double dt = T / N, sT = sigma * sqrt(T);
    /* rem: PV at time 0 of the dividends still to come after the current step's time, as
     * the backward loop walks down from T (0 without dividends: X is S exactly) */
    double rem = dv->n ? pg_am_div_pv(dv, 0.0, T, r) : 0.0;
    const double X = S - rem;
    if (!(X > 0.0)) return NAN;
    rem = 0.0;
    int kk = dv->n - 1;     /* the last dividend not yet taken, in time order */
    while (kk >= 0 && dv->t[kk] > T) --kk;
    const double d1 = (log(X / K) + (r - q + 0.5 * sigma * sigma) * T) / sT, d2 = d1 - sT;
    const double eb = exp((r - q) * dt);
    double p = pg_am_pp2(d2, N), ps = pg_am_pp2(d1, N);
    double u = eb * ps / p, d = (eb - p * u) / (1.0 - p);
    if (!(p > 0.0 && p < 1.0 && ps > 0.0 && ps < 1.0 && d > 0.0 && u > d && u <= PG_DBL_MAX)) {
        /* far from the strike (|d1|, |d2| of order 40) the inversion rounds p to 0 or 1:
         * Cox-Ross-Rubinstein there; a row where that fails too is not finite */
        u = exp(sigma * sqrt(dt));
        d = 1.0 / u;
        p = (eb - d) / (u - d);
        if (!(p > 0.0 && p < 1.0)) return NAN;
    }
    const double disc = exp(-r * dt), pu = disc * p, pd = disc * (1.0 - p);
    const double lu = log(u), ld = log(d), lr = lu - ld, ls = log(X);
    double *V = work, *Sj = work + (N + 2);
    double v2[3] = {0, 0, 0}, v1[2] = {0, 0}, pv2 = 0.0;
    /* node spots X_{i,j} = X d^i (u/d)^j: as a product where no factor can overflow or
     * underflow, else as exp(ln X + i ln d + j ln(u/d)) node by node */
    const int logs = !(fabs(ls) + N * (fabs(ld) + fabs(lr)) < 700.0);
    if (!logs) {
        #pragma omp simd
        for (int j = 0; j <= N; ++j) Sj[j] = X * exp(j * lr);
    }
    int64_t since_poll = 0;   /* nodes since the last stop poll */
    for (int i = N; i >= 0; --i) {
        since_poll += i + 1;
        if (since_poll >= PG_AM_POLL_NODES) {
            since_poll = 0;
            if (pg_stop_poll(stop)) return NAN;
        }
        if (logs) {
            const double base = ls + i * ld;
            #pragma omp simd
            for (int j = 0; j <= i; ++j) Sj[j] = exp(base + j * lr);
        }
        const double di = logs ? 1.0 : exp(i * ld);
        if (i == N) {
            /* the payoff on X_N (no dividend is left in (T, T]); one going ex at T itself
             * may be had by exercising just before it, on X_N + aT */
            double aT = 0.0;
            for (int k = 0; k < dv->n; ++k)
                if (dv->t[k] == T) aT += dv->a[k];
            if (aT == 0.0) {
                #pragma omp simd
                for (int j = 0; j <= N; ++j) {
                    const double e = w * (Sj[j] * di - K);
                    V[j] = e > 0.0 ? e : 0.0;
                }
            } else {
                #pragma omp simd
                for (int j = 0; j <= N; ++j) {
                    const double x = Sj[j] * di, e = w * (x - K), ec = w * (x + aT - K);
                    const double m = e > ec ? e : ec;
                    V[j] = m > 0.0 ? m : 0.0;
                }
            }
            continue;
        }
        /* the dividends with ex-time in (i dt, (i + 1) dt] join those still to come: walking
         * the (sorted) schedule down from T, each dividend of (0, T] is taken once */
        const double tau = i * dt;
        double t1 = INFINITY, a1 = 0.0;     /* the step's first ex-time and its amount */
        for (; kk >= 0 && dv->t[kk] > tau; --kk) {
            rem += dv->a[kk] * exp(-r * dv->t[kk]);
            if (dv->t[kk] < t1) { t1 = dv->t[kk]; a1 = dv->a[kk]; }
            else a1 += dv->a[kk];   /* the same ex-time (walking down, never later) */
        }
        if (rem == 0.0) {
            #pragma omp simd
            for (int j = 0; j <= i; ++j) {
                const double c = pu * V[j + 1] + pd * V[j];
                const double e = w * (Sj[j] * di - K);
                V[j] = c > e ? c : e;
            }
        } else if (t1 == INFINITY) {   /* exercise on the actual spot X_node + PV_tau */
            const double pv = rem * exp(r * tau), sk = pv - K;
            if (i == 2) pv2 = pv;
            #pragma omp simd
            for (int j = 0; j <= i; ++j) {
                const double c = pu * V[j + 1] + pd * V[j];
                const double e = w * (Sj[j] * di + sk);
                V[j] = c > e ? c : e;
            }
        } else {
            /* an ex-time t1 inside the step: exercise just before it (a call) or just after
             * it (a put) is a strategy the grid cannot see; its value at tau is that of a
             * forward, X e^{-q dl} + PV_tau (less the dividend for a put) - K e^{-r dl} */
            const double pv = rem * exp(r * tau), sk = pv - K;
            const double dl = t1 - tau, eq = exp(-q * dl), dk = exp(-r * dl);
            const double ska = pv - (K + (w < 0.0 ? a1 : 0.0)) * dk;
            if (i == 2) pv2 = pv;
            #pragma omp simd
            for (int j = 0; j <= i; ++j) {
                const double c = pu * V[j + 1] + pd * V[j];
                const double x = Sj[j] * di, e = w * (x + sk), ea = w * (x * eq + ska);
                const double m = c > e ? c : e;
                V[j] = m > ea ? m : ea;
            }
        }
        if (i == 2) { v2[0] = V[0]; v2[1] = V[1]; v2[2] = V[2]; }
        if (i == 1) { v1[0] = V[0]; v1[1] = V[1]; }
    }
    const double e0 = w * (S - K), v0 = V[0] > e0 ? V[0] : e0;   /* exact intrinsic at the root */
    if (g) {
        /* node spots are X's; X - S is a constant, so slopes in X are slopes in S */
        const double s10 = X * d, s11 = X * u;
        const double s20 = X * d * d, s21 = X * u * d, s22 = X * u * u;
        g[0] = (v1[1] - v1[0]) / (s11 - s10);
        const double da = (v2[2] - v2[1]) / (s22 - s21), db = (v2[1] - v2[0]) / (s21 - s20);
        g[1] = (da - db) / (0.5 * (s22 - s20));
        /* value at spot S two steps on: the parabola through the step-2 nodes at
         * X2 = S - PV_2dt(dividends after 2 dt), the actual spot held, less the amount of a
         * dividend going ex within the two steps (the spot's drop on its ex-date; held
         * across it, theta would jump by delta D / (2 dt), a step-size artefact) */
        double paid = 0.0;
        for (int k = 0; k < dv->n; ++k)
            if (dv->t[k] > 0.0 && dv->t[k] <= 2.0 * dt) paid += dv->a[k];
        const double X2 = S - pv2 - paid;
        const double vS = v2[1]
                          + ((s21 - s20) * da + (s22 - s21) * db) / (s22 - s20) * (X2 - s21)
                          + 0.5 * g[1] * (X2 - s21) * (X2 - s21);
        g[2] = (vS - v0) / (2.0 * dt);
    }
    return v0;
}

/* ------------------------------------------------------------------ one row */

/* Finite-difference bumps (see american.pyx, design note 5). */
#define PG_AM_EPS_DELTA 1e-4    /* x S min(1, sigma sqrt T), central */
#define PG_AM_EPS_GAMMA 1e-3    /* x S min(1, sigma sqrt T), central */
#define PG_AM_EPS_TIME 1e-3     /* x T, three-point backward (the option ages) */
#define PG_AM_EPS_VOL 1e-4      /* x max(sigma, 0.05), central */
#define PG_AM_EPS_RATE 1e-4     /* absolute, central (one-sided across a regime change) */
#define PG_AM_TREE_EPS_VOL 1e-3
#define PG_AM_TREE_EPS_RATE 1e-4

#define PG_AM_KIND_EURO 0
#define PG_AM_KIND_FP 1
#define PG_AM_KIND_TREE 2

typedef struct {
    int method;                 /* PG_AM_METHOD_FP or PG_AM_METHOD_TREE */
    const pg_am_scheme *sc;
    int steps;                  /* tree steps (odd) */
    double *work;               /* pg_am_fp_work(sc) + pg_am_tree_work(steps) doubles */
    pg_am_divs dv;              /* cash dividends (tree only; n = 0 otherwise) */
    int64_t *stop;              /* the stop block (pg_stop.h) or NULL */
} pg_am_engine;

/* Regime of an option (w = +1 call, -1 put) as the unit put it maps to. */
PG_INLINE int pg_am_regime_of(double w, double r, double q)
{
    return w > 0.0 ? pg_am_regime(q, r) : pg_am_regime(r, q);
}

PG_INLINE int pg_am_kind(const pg_am_engine *e, double w, double r, double q)
{
    if (e->method == PG_AM_METHOD_TREE) return PG_AM_KIND_TREE;
    const int reg = pg_am_regime_of(w, r, q);
    return reg == PG_AM_EUROPEAN ? PG_AM_KIND_EURO : (reg == PG_AM_DOUBLE ? PG_AM_KIND_TREE : PG_AM_KIND_FP);
}

/* Price (T > 0) by one engine kind, solving afresh. Kept out of line: inlined, its last
 * product could be fused (FMA contraction) into the caller's difference quotient, so the
 * bumped Greeks would move in their last bits with unrelated edits of the caller. */
static __attribute__((noinline)) double pg_am_value(const pg_am_engine *e, int kind, double w, double S, double K, double T,
                          double r, double q, double sigma)
{
    if (kind == PG_AM_KIND_TREE)
        return pg_am_tree(w, S, K, T, r, q, sigma, e->steps, e->work + pg_am_fp_work(e->sc), NULL, &e->dv, e->stop);
    if (kind == PG_AM_KIND_EURO) {
        pg_black_terms t = pg_black_terms_of(PG_MODEL_BSM, w > 0.0 ? PG_CALL : PG_PUT, K, T, S, r, q, sigma);
        return t.price;
    }
    pg_am_boundary bd;
    pg_am_price_ctx c;
    const double x = w > 0.0 ? K / S : S / K, scale = w > 0.0 ? S : K;
    pg_am_solve(e->sc, w > 0.0 ? q : r, w > 0.0 ? r : q, sigma, T, &bd, e->work);
    pg_am_price_prepare(&bd, T, &c);
    return scale * pg_am_price_eval(&c, x);
}

/* dV/dr (which = 0) or dV/dq (which = 1): central, or three-point one-sided where a bumped
 * point would change the engine kind. */
static double pg_am_rate_derivative(const pg_am_engine *e, int kind, int which, double v0, double w,
                                    double S, double K, double T, double r, double q, double sigma,
                                    double h)
{
    double a[5];    /* values at -2h .. +2h */
    int ok[5];
    for (int j = 0; j < 5; ++j) {
        const double d = (j - 2) * h;
        const double rr = which ? r : r + d, qq = which ? q + d : q;
        ok[j] = (j == 2) || pg_am_kind(e, w, rr, qq) == kind;
    }
    if (ok[1] && ok[3]) {
        for (int j = 1; j <= 3; j += 2) {
            const double d = (j - 2) * h;
            a[j] = pg_am_value(e, kind, w, S, K, T, which ? r : r + d, which ? q + d : q, sigma);
        }
        return (a[3] - a[1]) / (2.0 * h);
    }
    const int s = ok[3] ? 1 : -1;   /* side that keeps the engine */
    const double d1 = s * h, d2 = 2.0 * s * h;
    const double v1 = pg_am_value(e, kind, w, S, K, T, which ? r : r + d1, which ? q + d1 : q, sigma);
    const double v2 = pg_am_value(e, kind, w, S, K, T, which ? r : r + d2, which ? q + d2 : q, sigma);
    return s * (-3.0 * v0 + 4.0 * v1 - v2) / (2.0 * h);
}

#define PG_AM_BIT(code) (1 << (code))

/* The longest expiry either American engine prices, in years; a longer one gets
 * PG_BAD_TIME. Beyond it the fixed-point boundary's collocation and the tree's fixed step
 * count lose accuracy without failing: a put (K = S = 100, r 3%, q 0, vol 25%; perpetual
 * value 25.7133) was 25.7162 at T = 1000, 25.54 at 1e4 and -0.0 at 1e5 by fixed point,
 * 25.14 at 1e4 and 10.43 at 1e5 on a 2001-step tree. At T = 100 the fixed point ("accurate"
 * scheme) is within 8.5e-5 of QuantLib's QdFpAmericanEngine (high precision) on that put;
 * QuantLib's dates end in 2199. pricegrid.ext.status.AMERICAN_MAX_TIME mirrors it. */
#define PG_AM_T_MAX 100.0

/* One row: validates, prices and fills o[code] for the codes in `mask` (o[1] always).
 * Returns the status bits; a failed row has NaN in o[1..PG_MEASURE_MAX]. */
static int pg_am_row(const pg_am_engine *e, int option_type, double K, double T, double S,
                     double r, double q, double sigma, int mask, double *o)
{
    int st = pg_check_inputs(PG_MODEL_BSM, option_type, K, T, S, r, q) | pg_check_vol(sigma);
    st |= (T > PG_AM_T_MAX) ? PG_BAD_TIME : 0;
    for (int c = 1; c <= PG_MEASURE_MAX; ++c) o[c] = 0.0;
    if (st) {
        for (int c = 1; c <= PG_MEASURE_MAX; ++c) o[c] = NAN;
        return st;
    }
    if (e->dv.n && T > 0.0 && !(S - pg_am_div_pv(&e->dv, 0.0, T, r) > 0.0)) {
        /* the dividends' present value is not below the spot: no escrowed spot */
        for (int c = 1; c <= PG_MEASURE_MAX; ++c) o[c] = NAN;
        return PG_BAD_UNDERLYING;
    }
    const double w = option_type == PG_CALL ? 1.0 : -1.0;
    mask |= PG_AM_BIT(PG_MEASURE_PRICE);
    if (T == 0.0) {
        const double e = w * (S - K);
        o[PG_MEASURE_PRICE] = e > 0.0 ? e : 0.0;
        o[PG_MEASURE_DELTA] = e > 0.0 ? w : (e == 0.0 ? 0.5 * w : 0.0);
    } else {
        const int kind = pg_am_kind(e, w, r, q);
        const double sS = S * (sigma * sqrt(T) < 1.0 ? sigma * sqrt(T) : 1.0);
        if (kind == PG_AM_KIND_EURO) {
            pg_black_terms t = pg_black_terms_of(PG_MODEL_BSM, option_type, K, T, S, r, q, sigma);
            o[PG_MEASURE_PRICE] = t.price;
            o[PG_MEASURE_DELTA] = pg_black_delta(PG_MODEL_BSM, &t);
            o[PG_MEASURE_GAMMA] = pg_black_gamma(PG_MODEL_BSM, &t);
            o[PG_MEASURE_VEGA] = pg_black_vega(PG_MODEL_BSM, &t);
            o[PG_MEASURE_THETA] = pg_black_theta(PG_MODEL_BSM, &t);
            o[PG_MEASURE_RHO] = pg_black_rho(PG_MODEL_BSM, &t);
            o[PG_MEASURE_DIVIDEND_RHO] = pg_black_dividend_rho(PG_MODEL_BSM, &t);
        } else if (kind == PG_AM_KIND_TREE) {
            double g[3];
            double *tw = e->work + pg_am_fp_work(e->sc);
            const double v0 = pg_am_tree(w, S, K, T, r, q, sigma, e->steps, tw,
                                         (mask & ~PG_AM_BIT(PG_MEASURE_PRICE)) ? g : NULL, &e->dv, e->stop);
            o[PG_MEASURE_PRICE] = v0;
            if (mask & ~PG_AM_BIT(PG_MEASURE_PRICE)) {
                o[PG_MEASURE_DELTA] = g[0];
                o[PG_MEASURE_GAMMA] = g[1];
                o[PG_MEASURE_THETA] = g[2];
            }
            if (mask & PG_AM_BIT(PG_MEASURE_VEGA)) {
                const double h = PG_AM_TREE_EPS_VOL * sigma;
                o[PG_MEASURE_VEGA] = (pg_am_value(e, kind, w, S, K, T, r, q, sigma + h)
                                      - pg_am_value(e, kind, w, S, K, T, r, q, sigma - h)) / (2.0 * h);
            }
            if (mask & PG_AM_BIT(PG_MEASURE_RHO))
                o[PG_MEASURE_RHO] = pg_am_rate_derivative(e, kind, 0, v0, w, S, K, T, r, q, sigma,
                                                          PG_AM_TREE_EPS_RATE);
            if (mask & PG_AM_BIT(PG_MEASURE_DIVIDEND_RHO))
                o[PG_MEASURE_DIVIDEND_RHO] = pg_am_rate_derivative(e, kind, 1, v0, w, S, K, T, r, q,
                                                                   sigma, PG_AM_TREE_EPS_RATE);
        } else {
            pg_am_boundary bd;
            pg_am_price_ctx c;
            const double rp = w > 0.0 ? q : r, qp = w > 0.0 ? r : q;
            pg_am_solve(e->sc, rp, qp, sigma, T, &bd, e->work);
            pg_am_price_prepare(&bd, T, &c);
#define PG_AM_AT(ctx, s) (w > 0.0 ? (s) * pg_am_price_eval((ctx), K / (s)) : K * pg_am_price_eval((ctx), (s) / K))
            /* at or beyond the boundary the unit-put form gives S (1 - K/S): use w (S - K) */
            const double e0 = w * (S - K), va = PG_AM_AT(&c, S);
            const double v0 = (w > 0.0 ? K / S : S / K) <= c.bTp ? e0 : (va > e0 ? va : e0);
            o[PG_MEASURE_PRICE] = v0;
            if (mask & PG_AM_BIT(PG_MEASURE_DELTA)) {
                const double h = PG_AM_EPS_DELTA * sS;
                o[PG_MEASURE_DELTA] = (PG_AM_AT(&c, S + h) - PG_AM_AT(&c, S - h)) / (2.0 * h);
            }
            if (mask & PG_AM_BIT(PG_MEASURE_GAMMA)) {
                const double h = PG_AM_EPS_GAMMA * sS;
                o[PG_MEASURE_GAMMA] = (PG_AM_AT(&c, S + h) - 2.0 * v0 + PG_AM_AT(&c, S - h)) / (h * h);
            }
            if (mask & PG_AM_BIT(PG_MEASURE_THETA)) {
                const double h = PG_AM_EPS_TIME * T;
                pg_am_price_ctx c1;
                pg_am_price_prepare(&bd, T - h, &c1);
                const double v1 = PG_AM_AT(&c1, S);
                pg_am_price_prepare(&bd, T - 2.0 * h, &c1);
                const double v2 = PG_AM_AT(&c1, S);
                o[PG_MEASURE_THETA] = -(3.0 * v0 - 4.0 * v1 + v2) / (2.0 * h);
            }
#undef PG_AM_AT
            if (mask & PG_AM_BIT(PG_MEASURE_VEGA)) {
                const double h = PG_AM_EPS_VOL * (sigma > 0.05 ? sigma : 0.05);
                o[PG_MEASURE_VEGA] = (pg_am_value(e, kind, w, S, K, T, r, q, sigma + h)
                                      - pg_am_value(e, kind, w, S, K, T, r, q, sigma - h)) / (2.0 * h);
            }
            if (mask & PG_AM_BIT(PG_MEASURE_RHO))
                o[PG_MEASURE_RHO] = pg_am_rate_derivative(e, kind, 0, v0, w, S, K, T, r, q, sigma,
                                                          PG_AM_EPS_RATE);
            if (mask & PG_AM_BIT(PG_MEASURE_DIVIDEND_RHO))
                o[PG_MEASURE_DIVIDEND_RHO] = pg_am_rate_derivative(e, kind, 1, v0, w, S, K, T, r, q,
                                                                   sigma, PG_AM_EPS_RATE);
        }
    }
    if (pg_stop_seen(e->stop)) {   /* a tree was cut short: not a result */
        for (int c = 1; c <= PG_MEASURE_MAX; ++c) o[c] = NAN;
        return PG_CANCELLED;
    }
    int finite = 1;
    for (int c = 1; c <= PG_MEASURE_DIVIDEND_RHO; ++c)
        if ((mask & PG_AM_BIT(c)) && !pg_finite(o[c])) finite = 0;
    /* A price outside an American option's no-arbitrage bounds is not a price: at least the
     * exercise value (and 0), at most what exercise at the best time can pay, K max(1, e^{-rT})
     * for a put, S max(1, e^{-qT}) for a call. The engines' numerics break down far out (rates
     * of hundreds overflowed the fixed point's boundary: a put came back at -20, its negative
     * exercise value); such a row is answered as an overflow is (PG_NOT_FINITE). */
    const double ex = w * (S - K), floor_ = ex > 0.0 ? ex : 0.0;
    const double cap = w > 0.0 ? S * fmax(1.0, exp(-q * T)) : K * fmax(1.0, exp(-r * T));
    const double tol = 1e-9 * (S + K);
    if (!(o[PG_MEASURE_PRICE] >= floor_ - tol && o[PG_MEASURE_PRICE] <= cap + tol)) finite = 0;
    if (!finite) {
        for (int c = 1; c <= PG_MEASURE_MAX; ++c) o[c] = NAN;
        return PG_NOT_FINITE;
    }
    return 0;
}

/* Inputs of a batch: each pointer has n elements, or 1 when its PG_IN_* bit is set in
 * `broadcast` (the bits of pg_black.h). */
typedef struct {
    const int *option_type;
    const double *strike, *time, *spot, *rate, *dividend, *vol;
    int broadcast;
} pg_am_inputs;

/* Rows [start, start + m): out[j * ldo + i] = measure codes[j] of row i. ``dv``: the cash
 * dividends every row shares (method tree; n = 0 for none). ``stop``: the stop block
 * (pg_stop.h) or NULL; once it says stop, the rows not done get PG_CANCELLED and NaN. */
static ptrdiff_t pg_am_rows(int method, int scheme, int steps, double *work,
                            const pg_am_inputs *in, const pg_am_divs *dv, ptrdiff_t start, ptrdiff_t m,
                            const int *codes, int k, double *out, ptrdiff_t ldo, int *status,
                            int64_t *stop)
{
    pg_am_engine eng = {method, &pg_am_schemes[scheme - 1], steps, work, *dv, stop};
    const pg_am_engine *e = &eng;
    int mask = 0;
    ptrdiff_t nbad = 0;
    for (int j = 0; j < k; ++j) mask |= PG_AM_BIT(codes[j]);
    const int bc = in->broadcast;
    for (ptrdiff_t i = start; i < start + m; ++i) {
        double o[PG_MEASURE_MAX + 1];
        if (pg_stop_poll(stop)) {
            nbad += pg_stop_cut_rows(status, out, ldo, k, i, 1);
            continue;
        }
        const int st = pg_am_row(e, in->option_type[(bc & PG_IN_OPTION_TYPE) ? 0 : i],
                                 in->strike[(bc & PG_IN_STRIKE) ? 0 : i],
                                 in->time[(bc & PG_IN_TIME) ? 0 : i],
                                 in->spot[(bc & PG_IN_UNDERLYING) ? 0 : i],
                                 in->rate[(bc & PG_IN_RATE) ? 0 : i],
                                 in->dividend[(bc & PG_IN_DIVIDEND) ? 0 : i],
                                 in->vol[(bc & PG_IN_VOL) ? 0 : i], mask, o);
        status[i] = st;
        nbad += (st != 0);
        for (int j = 0; j < k; ++j) out[(ptrdiff_t)j * ldo + i] = o[codes[j]];
    }
    return nbad;
}

#endif
