/* Volatility surfaces: checks of a surface's data, the slices (grid, SVI raw, SABR), the
 * interpolation between slices and the block loop built from them. The design note of
 * surfaces.pyx gives the conventions; the numerics are written out here.
 *
 * 1. A surface is n slices at expiries 0 < T_1 < ... < T_n (year fractions). At a query
 *    point (T, K, F) every slice i gives a variance per unit time s_i >= 0 at the point's
 *    own axis coordinate (the slice's implied vol squared, sigma_i^2 = w_i / T_i):
 *      GRID  the axis coordinate x of the point (K, K/F or ln(K/F)) is clamped to
 *            [x_1, x_p] and s_i(x) = (1 - u) s_ij + u s_i,j+1, u = (x - x_j)/(x_j+1 - x_j),
 *            s_ij = vol_ij^2: linear in total variance across strikes at fixed T_i (w = s T_i).
 *            A DELTA grid is the same with x = ln(K/F) and slice i's own nodes k_ij (note 5).
 *      SVI   Gatheral's raw SVI in total variance, k = ln(K/F):
 *            w_i(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2)), s_i = w_i / T_i.
 *      SABR  Hagan et al. (2002) eq. (2.17a): s_i = sigma_B(F, K; T_i, alpha_i, beta_i,
 *            rho_i, nu_i)^2, the point's own F and K on every slice (so K/F is fixed).
 * 2. Between slices, total variance is linear in T at the fixed axis coordinate:
 *      T_i <= T < T_i+1:  w = (1 - l) T_i s_i + l T_i+1 s_i+1,  l = (T - T_i)/(T_i+1 - T_i),
 *      vol = sqrt(w / T)  (at l = 0 exactly: vol = sqrt(s_i), so nodes come back as given);
 *    before T_1 (0 <= T < T_1): vol = sqrt(s_1), w = s_1 T (flat vol, w through the origin);
 *    from T_n on (T >= T_n):    vol = sqrt(s_n), w = s_n T (flat vol).
 *    QuantLib's BlackVarianceSurface (Bilinear, ConstantExtrapolation both sides) computes
 *    the same thing for the absolute-strike grid: it prepends a zero-variance row at t = 0,
 *    interpolates variance bilinearly in (t, K), clamps K to the strike range and scales the
 *    last row's variance by t/T_n beyond T_n.
 * 3. SABR's z/x(z): x(z) = ln((sqrt(1 - 2 rho z + z^2) + z - rho)/(1 - rho)) is evaluated
 *    without cancellation: q = sqrt(B) + z - rho is formed as such when z >= rho and as
 *    (1 - rho^2)/(sqrt(B) - (z - rho)) otherwise; x = log1p(u) with
 *    u = z (q + 1 - rho)/((sqrt(B) + 1)(1 - rho)) (= q/(1 - rho) - 1) when q/(1 - rho) is
 *    within [0.5, 1.5], else log(q/(1 - rho)). For |z| < 1e-7, z/x = 1 - rho z/2 +
 *    (2 - 3 rho^2) z^2/12 (Hagan's expansion; the next term is O(z^3) < 1e-20).
 * 4. Lookup: one branch-free binary search over the expiries per point (and one over the
 *    strike nodes for a grid; a DELTA grid searches each slice's own nodes). Grid and SABR
 *    points are evaluated on their own with scalar code; SVI points go through
 *    pg_svi_points, vector loops padded to whole vectors (the same formulas, with glibc's
 *    vector log; the two slices' parameters of each point copied into block arrays first,
 *    by lane permutations of one vector per parameter with AVX-512 and at most 8 slices,
 *    else by gathers). Either way a point's bits depend neither on its place in the batch
 *    nor on the thread split.
 * 5. DELTA grids. Convention: a node is a forward delta, premium-unadjusted, of a call,
 *      Delta = N(d1),  d1 = (-ln(K/F) + sigma^2 T / 2) / (sigma sqrt(T)),  0 < Delta < 1,
 *    (a put delta is given as the call delta 1 + Delta_put), the nodes in decreasing delta,
 *    i.e. in increasing strike (e.g. 0.9, 0.75, 0.5, 0.25, 0.1). Forward delta depends on K
 *    only through k = ln(K/F), so node j of slice i (vol sigma_ij) is exactly the point
 *      k_ij = sd (sd / 2 - N^-1(Delta_j)),  sd = sigma_ij sqrt(T_i)  (= w_ij/2 - sd N^-1(Delta_j)),
 *    and a DELTA grid is a LOG_MONEYNESS grid whose nodes differ per slice: across strikes
 *    it is interpolated as in note 1 on slice i's k_i1 < ... < k_ip, and between slices at
 *    the point's fixed k as in note 2. pg_surface_prepare converts the nodes once (into the
 *    second half of the workspace) and requires k_ij > k_i,j-1 within each slice: vols that
 *    make the strikes cross flag the later node's vol (PG_SURF_CROSSING). Written as
 *    sd (sd/2 - z) the conversion has the same bits with or without fused multiply-adds
 *    (sd/2 is exact). N^-1 is Wichura's AS 241 (pg_inverse_normal.h; relative accuracy ~1e-16).
 */
#ifndef PG_SURFACES_H
#define PG_SURFACES_H

#include <math.h>
#include <stddef.h>
#include <string.h>

/* glibc's vector log (libmvec), as in pg_black.h: SVI slices take ln(K/F) in an
 * `omp simd` loop (legal with -fno-math-errno). */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__FAST_MATH__) \
    && !defined(PG_NO_LIBMVEC)
#if __GLIBC_PREREQ(2, 22)
extern double log(double) __attribute__((__simd__("notinbranch")));
#endif
#endif

#include "pg_status.h"
#include "pg_inputs.h"
#include "pg_inverse_normal.h"   /* pg_inverse_norm_cdf (AS 241) */

#ifdef _OPENMP
#include <omp.h>
static inline int pg_surface_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int pg_surface_max_threads(void) { return 1; }
#endif

#if defined(__GNUC__)
#define PG_SURF_INLINE static inline __attribute__((always_inline))
#define PG_SURF_ALIGNED __attribute__((aligned(64)))
#else
#define PG_SURF_INLINE static inline
#define PG_SURF_ALIGNED
#endif

/* Surface kinds (the same numbers as pricegrid.server.domain.surfaces.SurfaceKind). */
#define PG_SURF_GRID  1
#define PG_SURF_SVI   2
#define PG_SURF_SABR  3

/* Strike axes of a grid (pricegrid.server.domain.surfaces.StrikeAxis). */
#define PG_AXIS_STRIKE         1   /* absolute strike K */
#define PG_AXIS_MONEYNESS      2   /* forward moneyness K/F */
#define PG_AXIS_LOG_MONEYNESS  3   /* ln(K/F) */
#define PG_AXIS_DELTA          4   /* forward call delta N(d1), premium-unadjusted (note 5) */

/* Measures. */
#define PG_SURF_VOL             1   /* Black (lognormal) implied vol */
#define PG_SURF_TOTAL_VARIANCE  2   /* vol^2 T */
#define PG_SURF_MEASURE_MAX     2

/* Parameter columns of the slices. */
#define PG_SVI_A      0
#define PG_SVI_B      1
#define PG_SVI_RHO    2
#define PG_SVI_M      3
#define PG_SVI_SIGMA  4
#define PG_SVI_COLUMNS 5
#define PG_SABR_ALPHA 0
#define PG_SABR_BETA  1
#define PG_SABR_RHO   2
#define PG_SABR_NU    3
#define PG_SABR_COLUMNS 4

/* Check bits of expiries, axis nodes and slice values (pg_surface_prepare). */
#define PG_SURF_NOT_FINITE       (1 << 0)
#define PG_SURF_NOT_POSITIVE     (1 << 1)  /* expiry, strike/moneyness node, vol, alpha, sigma */
#define PG_SURF_DUPLICATE        (1 << 2)  /* equal to the previous one */
#define PG_SURF_NOT_INCREASING   (1 << 3)  /* below the previous one */
#define PG_SURF_OUT_OF_BOUNDS    (1 << 4)  /* b < 0, |rho| >= 1, beta outside [0, 1], nu < 0 */
#define PG_SURF_MIN_VARIANCE     (1 << 5)  /* SVI (on a): a + b sigma sqrt(1 - rho^2) < 0 */
#define PG_SURF_WING             (1 << 6)  /* SVI (on b): b (1 + |rho|) > 4 */
#define PG_SURF_OVERFLOW         (1 << 7)  /* grid: vol^2 T not finite */
#define PG_SURF_NOT_DECREASING   (1 << 8)  /* delta node above the previous one */
#define PG_SURF_CROSSING         (1 << 9)  /* delta grid (on vol_ij): k_ij <= k_i,j-1 */

#define PG_SURF_BLOCK 256
#define PG_SURF_VECTOR 8   /* SVI's vector loops are padded to a multiple of this */

typedef struct {
    int kind, axis;
    int n, p, q;          /* slices, axis nodes (grid), values per slice */
    const double *T;      /* n expiries */
    const double *x;      /* p axis nodes (grid) */
    const double *v;      /* n x q values, row-major */
    const double *s;      /* grid: n x p variances vol^2 (workspace) */
    const double *kx;     /* DELTA grid: n x p nodes ln(K/F) per slice (workspace), else NULL */
    int bad;
} pg_surface;

/* ------------------------------------------------------------------------- checks */

static int pg_surf_axis_check(const double *x, int i, int positive)
{
    int s = 0;
    const double xi = x[i];
    if (!pg_finite(xi)) s |= PG_SURF_NOT_FINITE;
    else if (positive && !(xi > 0.0)) s |= PG_SURF_NOT_POSITIVE;
    if (i > 0 && pg_finite(xi) && pg_finite(x[i - 1])) {
        if (xi == x[i - 1]) s |= PG_SURF_DUPLICATE;
        else if (xi < x[i - 1]) s |= PG_SURF_NOT_INCREASING;
    }
    return s;
}

/* Delta node j: finite, strictly inside (0, 1), below the previous one (note 5). */
static int pg_surf_delta_check(const double *x, int j)
{
    int s = 0;
    const double xj = x[j];
    if (!pg_finite(xj)) s |= PG_SURF_NOT_FINITE;
    else if (!(xj > 0.0 && xj < 1.0)) s |= PG_SURF_OUT_OF_BOUNDS;
    if (j > 0 && pg_finite(xj) && pg_finite(x[j - 1])) {
        if (xj == x[j - 1]) s |= PG_SURF_DUPLICATE;
        else if (xj > x[j - 1]) s |= PG_SURF_NOT_DECREASING;
    }
    return s;
}

/* A grid vol at expiry T: finite, > 0, vol^2 T finite (T not finite counts as 0). */
static int pg_surf_vol_check(double vol, double T)
{
    if (!pg_finite(vol)) return PG_SURF_NOT_FINITE;
    if (!(vol > 0.0)) return PG_SURF_NOT_POSITIVE;
    if (!pg_finite(vol * vol * (pg_finite(T) ? T : 0.0))) return PG_SURF_OVERFLOW;
    return 0;
}

/* ln(K/F) of the strike whose forward call delta is `delta` at vol `sig`, expiry T (note 5). */
static inline double pg_delta_log_moneyness(double delta, double sig, double T)
{
    const double sd = sig * sqrt(T);
    return sd * (0.5 * sd - pg_inverse_norm_cdf(delta));
}

/* DELTA grid: convert every node to ln(K/F) per slice into kx (n x p, or NULL: check only)
 * and flag vol_ij (PG_SURF_CROSSING) where k_ij <= k_i,j-1. A pair is compared only when
 * both nodes, both vols and T_i (finite, > 0) pass their own checks; entries that cannot be
 * converted get 0. Returns the number of vols flagged. */
static int pg_surf_delta_prepare(int n, const double *T, int p, const double *x, int q,
                                 const double *v, double *kx, int *value_status)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const int t_ok = pg_finite(T[i]) && T[i] > 0.0;
        double prev = 0.0;
        int prev_ok = 0;
        for (int j = 0; j < p; j++) {
            const double vol = v[(size_t)i * q + j];
            const int ok = t_ok && pg_surf_delta_check(x, j) == 0 && pg_surf_vol_check(vol, T[i]) == 0;
            const double k = ok ? pg_delta_log_moneyness(x[j], vol, T[i]) : 0.0;
            if (kx) kx[(size_t)i * p + j] = k;
            if (ok && prev_ok && !(k > prev)) {
                if (value_status) value_status[(size_t)i * q + j] |= PG_SURF_CROSSING;
                bad++;
            }
            prev = k;
            prev_ok = ok;
        }
    }
    return bad;
}

/* Check a surface and fill the grid's workspace `work` (n * p doubles, 2 n p for a DELTA
 * grid: the variances, then the nodes in ln(K/F) per slice; may be NULL for SVI and SABR). expiry_status (n), node_status (p) and value_status (n * q), each optional,
 * get the PG_SURF_* bits. Returns the number of flagged entries; the surface is usable only
 * when that is 0, n >= 1 and (for a grid) p >= 1. Codes and shapes are the caller's. */
static int pg_surface_prepare(pg_surface *S, int kind, int axis, int n, const double *T, int p,
                              const double *x, int q, const double *v, double *work,
                              int *expiry_status, int *node_status, int *value_status)
{
    int bad = 0;
    S->kind = kind; S->axis = axis; S->n = n; S->p = p; S->q = q;
    S->T = T; S->x = x; S->v = v; S->s = work;
    S->kx = (kind == PG_SURF_GRID && axis == PG_AXIS_DELTA && work) ? work + (size_t)n * p : NULL;

    for (int i = 0; i < n; i++) {
        const int s = pg_surf_axis_check(T, i, 1);
        if (expiry_status) expiry_status[i] = s;
        bad += (s != 0);
    }
    if (kind == PG_SURF_GRID) {
        for (int j = 0; j < p; j++) {
            const int s = (axis == PG_AXIS_DELTA) ? pg_surf_delta_check(x, j)
                        : pg_surf_axis_check(x, j, axis != PG_AXIS_LOG_MONEYNESS);
            if (node_status) node_status[j] = s;
            bad += (s != 0);
        }
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < p; j++) {
                const double vol = v[(size_t)i * q + j];
                const int s = pg_surf_vol_check(vol, T[i]);
                if (work) work[(size_t)i * p + j] = s ? 0.0 : vol * vol;
                if (value_status) value_status[(size_t)i * q + j] = s;
                bad += (s != 0);
            }
        }
        if (axis == PG_AXIS_DELTA)
            bad += pg_surf_delta_prepare(n, T, p, x, q, v, work ? work + (size_t)n * p : NULL, value_status);
    } else if (kind == PG_SURF_SVI) {
        for (int i = 0; i < n; i++) {
            const double *r = v + (size_t)i * q;
            int st[PG_SVI_COLUMNS] = {0, 0, 0, 0, 0};
            int finite = 1;
            for (int c = 0; c < PG_SVI_COLUMNS; c++)
                if (!pg_finite(r[c])) { st[c] |= PG_SURF_NOT_FINITE; finite = 0; }
            const double a = r[PG_SVI_A], b = r[PG_SVI_B], rho = r[PG_SVI_RHO], sig = r[PG_SVI_SIGMA];
            if (pg_finite(b) && !(b >= 0.0)) st[PG_SVI_B] |= PG_SURF_OUT_OF_BOUNDS;
            if (pg_finite(rho) && !(fabs(rho) < 1.0)) st[PG_SVI_RHO] |= PG_SURF_OUT_OF_BOUNDS;
            if (pg_finite(sig) && !(sig > 0.0)) st[PG_SVI_SIGMA] |= PG_SURF_NOT_POSITIVE;
            int ok = finite;
            for (int c = 0; c < PG_SVI_COLUMNS; c++) ok &= (st[c] == 0);
            if (ok) {
                if (!(a + b * sig * sqrt((1.0 - rho) * (1.0 + rho)) >= 0.0)) st[PG_SVI_A] |= PG_SURF_MIN_VARIANCE;
                if (!(b * (1.0 + fabs(rho)) <= 4.0)) st[PG_SVI_B] |= PG_SURF_WING;
            }
            for (int c = 0; c < PG_SVI_COLUMNS; c++) {
                if (value_status) value_status[(size_t)i * q + c] = st[c];
                bad += (st[c] != 0);
            }
        }
    } else {  /* SABR */
        for (int i = 0; i < n; i++) {
            const double *r = v + (size_t)i * q;
            int st[PG_SABR_COLUMNS] = {0, 0, 0, 0};
            for (int c = 0; c < PG_SABR_COLUMNS; c++)
                if (!pg_finite(r[c])) st[c] |= PG_SURF_NOT_FINITE;
            if (!st[PG_SABR_ALPHA] && !(r[PG_SABR_ALPHA] > 0.0)) st[PG_SABR_ALPHA] |= PG_SURF_NOT_POSITIVE;
            if (!st[PG_SABR_BETA] && !(r[PG_SABR_BETA] >= 0.0 && r[PG_SABR_BETA] <= 1.0))
                st[PG_SABR_BETA] |= PG_SURF_OUT_OF_BOUNDS;
            if (!st[PG_SABR_RHO] && !(fabs(r[PG_SABR_RHO]) < 1.0)) st[PG_SABR_RHO] |= PG_SURF_OUT_OF_BOUNDS;
            if (!st[PG_SABR_NU] && !(r[PG_SABR_NU] >= 0.0)) st[PG_SABR_NU] |= PG_SURF_OUT_OF_BOUNDS;
            for (int c = 0; c < PG_SABR_COLUMNS; c++) {
                if (value_status) value_status[(size_t)i * q + c] = st[c];
                bad += (st[c] != 0);
            }
        }
    }
    S->bad = bad;
    return bad;
}

/* ------------------------------------------------------------------------- pointwise */

/* Number of entries of the increasing array a[0..n) that are <= t (branch-free search). */
PG_SURF_INLINE int pg_surf_count_le(const double *a, int n, double t)
{
    if (n == 0 || !(a[0] <= t)) return 0;
    int base = 0, len = n;
    while (len > 1) {
        const int half = len >> 1;
        base = (a[base + half] <= t) ? base + half : base;
        len -= half;
    }
    return base + 1;
}

/* Raw SVI total variance and its first two derivatives in k. */
PG_SURF_INLINE double pg_svi_w(const double *r, double k)
{
    const double d = k - r[PG_SVI_M], sig = r[PG_SVI_SIGMA];
    return r[PG_SVI_A] + r[PG_SVI_B] * (r[PG_SVI_RHO] * d + sqrt(d * d + sig * sig));
}

PG_SURF_INLINE void pg_svi_eval(const double *r, double k, double *w, double *w1, double *w2)
{
    const double d = k - r[PG_SVI_M], sig = r[PG_SVI_SIGMA], b = r[PG_SVI_B];
    const double h2 = d * d + sig * sig, h = sqrt(h2);
    *w = r[PG_SVI_A] + b * (r[PG_SVI_RHO] * d + h);
    *w1 = b * (r[PG_SVI_RHO] + d / h);
    *w2 = b * sig * sig / (h2 * h);
}

/* Durrleman's condition (Gatheral & Jacquier 2014, Lemma 2.2): the density is
 * g(k) = (1 - k w'/(2w))^2 - (w'^2/4)(1/w + 1/4) + w''/2 times a positive factor, so no
 * butterfly arbitrage needs g >= 0. */
PG_SURF_INLINE double pg_durrleman_g(double k, double w, double w1, double w2)
{
    const double c = 1.0 - k * w1 / (2.0 * w);
    return c * c - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2;
}

/* z / x(z) of Hagan et al. (2002) eq. (2.17a), see note 3. */
PG_SURF_INLINE double pg_sabr_z_over_x(double z, double rho)
{
    if (fabs(z) < 1e-7) return 1.0 - 0.5 * rho * z + (2.0 - 3.0 * rho * rho) * z * z / 12.0;
    const double omr = 1.0 - rho, d = z - rho;
    const double sb = sqrt(d * d + omr * (1.0 + rho));
    const double qq = (d >= 0.0) ? sb + d : omr * (1.0 + rho) / (sb - d);
    const double tmp = qq / omr;
    const double x = (tmp >= 0.5 && tmp <= 1.5) ? log1p(z * (qq + omr) / ((sb + 1.0) * omr)) : log(tmp);
    return z / x;
}

/* Hagan, Kumar, Lesniewski & Woodward (2002), "Managing smile risk", Wilmott Magazine,
 * pp. 84-108, eq. (2.17a) (K != F) and its limit (2.18) at K = F (z -> 0): the Black
 * implied vol of strike K, forward F, expiry T. */
PG_SURF_INLINE double pg_sabr_vol(double K, double F, double T, double alpha, double beta,
                                  double rho, double nu)
{
    const double omb = 1.0 - beta, o2 = omb * omb;
    const double L = log(F / K), L2 = L * L;
    const double A = pow(F * K, 0.5 * omb);          /* (FK)^((1-beta)/2) */
    const double D = A * (1.0 + o2 * L2 / 24.0 + o2 * o2 * L2 * L2 / 1920.0);
    const double z = nu / alpha * A * L;
    const double corr = 1.0 + T * (o2 * alpha * alpha / (24.0 * A * A)
                                   + 0.25 * rho * beta * nu * alpha / A
                                   + (2.0 - 3.0 * rho * rho) * nu * nu / 24.0);
    return alpha / D * pg_sabr_z_over_x(z, rho) * corr;
}

/* Undiscounted Black call on forward F, strike K, total variance w (>= 0). */
PG_SURF_INLINE double pg_black_call_w(double F, double K, double w)
{
    if (!(w > 0.0)) return fmax(F - K, 0.0);
    const double sd = sqrt(w), d1 = (log(F / K) + 0.5 * w) / sd, d2 = d1 - sd;
    return F * 0.5 * erfc(-d1 * M_SQRT1_2) - K * 0.5 * erfc(-d2 * M_SQRT1_2);
}

/* Variance per unit time of one grid row (nodes x[0..p), variances s) at axis coordinate
 * xa: linear between nodes, the end node's beyond them (note 1). */
PG_SURF_INLINE double pg_surf_row(const double *x, const double *s, int p, double xa)
{
    if (!(xa > x[0])) return s[0];
    if (!(xa < x[p - 1])) return s[p - 1];
    const int j = pg_surf_count_le(x, p, xa) - 1;   /* x_j <= xa < x_j+1 */
    const double u = (xa - x[j]) / (x[j + 1] - x[j]);
    return (u == 0.0) ? s[j] : (1.0 - u) * s[j] + u * s[j + 1];
}

/* Variance per unit time of slice i at the point (see note 1). Grid: j, u from the axis;
 * DELTA grid: a search of slice i's own nodes at k = ln(K/F) (note 5). */
PG_SURF_INLINE double pg_surf_slice(const pg_surface *S, int i, int j, double u, double K,
                                    double F, double k)
{
    if (S->kind == PG_SURF_GRID) {
        const double *s = S->s + (size_t)i * S->p;
        if (S->axis == PG_AXIS_DELTA)
            return pg_surf_row(S->kx + (size_t)i * S->p, s, S->p, k);
        return (u == 0.0) ? s[j] : (1.0 - u) * s[j] + u * s[j + 1];
    }
    const double *r = S->v + (size_t)i * S->q;
    if (S->kind == PG_SURF_SVI) {  /* >= 0 for valid parameters; rounding below 0 dropped */
        const double w = pg_svi_w(r, k);
        return (w > 0.0 ? w : 0.0) / S->T[i];
    }
    const double sig = pg_sabr_vol(K, F, S->T[i], r[PG_SABR_ALPHA], r[PG_SABR_BETA],
                                   r[PG_SABR_RHO], r[PG_SABR_NU]);
    return (sig >= 0.0) ? sig * sig : NAN;  /* the expansion gave a negative vol */
}

/* The expiry bracket of t >= 0: c = the number of expiries <= t (T_c-1 <= t < T_c). */
PG_SURF_INLINE int pg_surface_bracket(const pg_surface *S, double t)
{
    return pg_surf_count_le(S->T, S->n, t);
}

/* vol and total variance at a valid point whose expiry bracket is c (pg_surface_bracket);
 * returns 0 or PG_NOT_FINITE. */
PG_SURF_INLINE int pg_surface_point_in(const pg_surface *S, int c, double t, double K, double F,
                                       double *vol, double *var)
{
    int j = 0;
    double u = 0.0, k = 0.0;
    if (S->kind == PG_SURF_GRID && S->axis != PG_AXIS_DELTA) {  /* DELTA: per slice, at k */
        const double *x = S->x;
        const int p = S->p;
        double xa = (S->axis == PG_AXIS_STRIKE) ? K
                  : (S->axis == PG_AXIS_MONEYNESS) ? K / F : log(K / F);
        if (!(xa > x[0])) { j = 0; u = 0.0; }
        else if (!(xa < x[p - 1])) { j = p - 1; u = 0.0; }
        else {
            j = pg_surf_count_le(x, p, xa) - 1;   /* x_j <= xa < x_j+1 */
            u = (xa - x[j]) / (x[j + 1] - x[j]);
        }
    } else {
        k = log(K / F);
    }
    const int n = S->n;
    double w, sg;
    if (c == 0 || c == n) {
        const double s = pg_surf_slice(S, c == 0 ? 0 : n - 1, j, u, K, F, k);
        sg = sqrt(s);
        w = s * t;
    } else {
        const double T0 = S->T[c - 1], T1 = S->T[c];
        const double s0 = pg_surf_slice(S, c - 1, j, u, K, F, k);
        if (t == T0) {
            sg = sqrt(s0);
            w = s0 * t;
        } else {
            const double s1 = pg_surf_slice(S, c, j, u, K, F, k);
            const double l = (t - T0) / (T1 - T0);
            w = (1.0 - l) * T0 * s0 + l * T1 * s1;
            sg = sqrt(w / t);
        }
    }
    *vol = sg;
    *var = w;
    return (pg_finite(sg) && pg_finite(w) && w >= 0.0) ? 0 : PG_NOT_FINITE;
}

/* vol and total variance at a valid point; returns 0 or PG_NOT_FINITE. */
PG_SURF_INLINE int pg_surface_point(const pg_surface *S, double t, double K, double F,
                                    double *vol, double *var)
{
    return pg_surface_point_in(S, pg_surface_bracket(S, t), t, K, F, vol, var);
}

/* The SVI parameters (a, b, rho, m, sigma) and expiry of slices i0 = c - (c > 0) and
 * i1 = c - (c == n) of m points with expiry brackets c (the slices pg_svi_points
 * interpolates between), into block arrays P[0..5] (slice i0) and P[6..11] (slice i1),
 * padded to mp with slice 0. Copies only: no arithmetic on the values. With AVX-512 and at
 * most 8 slices, each column of the slices is one vector and a point's value is a lane
 * permutation of it (instead of 12 gathers per vector of points). */
#define PG_SVI_GATHERED 12
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#define PG_SVI_PERMUTE 1
typedef double pg_v8d __attribute__((vector_size(64)));
typedef long long pg_v8l __attribute__((vector_size(64)));
typedef int pg_v8i __attribute__((vector_size(32)));
#endif

static void pg_svi_params(const pg_surface *S, int m, int mp, const int *c,
                          double (*P)[PG_SURF_BLOCK])
{
    const int n = S->n;
    const double *T = S->T, *v = S->v;
    static const int col[6] = {PG_SVI_A, PG_SVI_B, PG_SVI_RHO, PG_SVI_M, PG_SVI_SIGMA, -1};
#ifdef PG_SVI_PERMUTE
    if (n <= 8) {
        pg_v8d tab[6];
        for (int j = 0; j < 6; j++)
            for (int l = 0; l < 8; l++)
                tab[j][l] = (l < n) ? (col[j] < 0 ? T[l] : v[l * PG_SVI_COLUMNS + col[j]]) : 0.0;
        const pg_v8l zero = {0, 0, 0, 0, 0, 0, 0, 0};
        const pg_v8l nn = zero + n;
        int cp[PG_SURF_BLOCK];
        for (int i = 0; i < mp; i++) cp[i] = (i < m) ? c[i] : 0;
        for (int i = 0; i < mp; i += 8) {
            pg_v8i ci;
            memcpy(&ci, cp + i, sizeof ci);
            const pg_v8l cl = __builtin_convertvector(ci, pg_v8l);
            const pg_v8l i0 = cl + (cl > zero);    /* a true comparison is -1 */
            const pg_v8l i1 = cl + (cl == nn);
            for (int j = 0; j < 6; j++) {
                const pg_v8d p0 = __builtin_shuffle(tab[j], i0), p1 = __builtin_shuffle(tab[j], i1);
                memcpy(&P[j][i], &p0, sizeof p0);
                memcpy(&P[6 + j][i], &p1, sizeof p1);
            }
        }
        return;
    }
#endif
    for (int i = 0; i < mp; i++) {
        const int ci = (i < m) ? c[i] : 0;
        const int i0 = ci - (ci > 0), i1 = ci - (ci == n);
        for (int j = 0; j < 6; j++) {
            P[j][i] = col[j] < 0 ? T[i0] : v[i0 * PG_SVI_COLUMNS + col[j]];
            P[6 + j][i] = col[j] < 0 ? T[i1] : v[i1 * PG_SVI_COLUMNS + col[j]];
        }
    }
}

/* SVI, m <= PG_SURF_BLOCK valid points at once (t, K, F, their expiry brackets c): vol and
 * total variance as pg_surface_point_in computes them, in vector loops: k = ln(K/F) with
 * glibc's vector log, padded to a whole number of vectors (so every point goes through the
 * same vector code and its bits do not depend on its place), then both slices and the
 * interpolation in T with selects instead of branches, the slices' parameters read from
 * block arrays (pg_svi_params). Returns the number of points whose vol or variance is not
 * finite (their outputs are left as computed). */
static int pg_svi_points(const pg_surface *S, int m, const double *t, const double *K,
                         const double *F, const int *c, double *vol, double *var)
{
    double kk[PG_SURF_BLOCK] PG_SURF_ALIGNED;
    double x[PG_SURF_BLOCK] PG_SURF_ALIGNED;
    double P[PG_SVI_GATHERED][PG_SURF_BLOCK] PG_SURF_ALIGNED;
    const int mp = (m + PG_SURF_VECTOR - 1) / PG_SURF_VECTOR * PG_SURF_VECTOR;
    for (int i = 0; i < m; i++) x[i] = K[i] / F[i];
    for (int i = m; i < mp; i++) x[i] = 1.0;
    #pragma omp simd aligned(x, kk : 64)
    for (int i = 0; i < mp; i++) kk[i] = log(x[i]);
    pg_svi_params(S, m, mp, c, P);
    const int n = S->n;
    const double *A0 = P[0], *B0 = P[1], *R0 = P[2], *M0 = P[3], *G0 = P[4], *U0 = P[5];
    const double *A1 = P[6], *B1 = P[7], *R1 = P[8], *M1 = P[9], *G1 = P[10], *U1 = P[11];
    #pragma omp simd
    for (int i = 0; i < m; i++) {
        const int ci = c[i];
        const double k = kk[i], ti = t[i], T0 = U0[i], T1 = U1[i];
        const double d0 = k - M0[i], g0 = G0[i];
        const double d1 = k - M1[i], g1 = G1[i];
        const double w0 = A0[i] + B0[i] * (R0[i] * d0 + sqrt(d0 * d0 + g0 * g0));
        const double w1 = A1[i] + B1[i] * (R1[i] * d1 + sqrt(d1 * d1 + g1 * g1));
        const double s0 = (w0 > 0.0 ? w0 : 0.0) / T0;  /* >= 0 for valid parameters; rounding below 0 dropped */
        const double s1 = (w1 > 0.0 ? w1 : 0.0) / T1;
        /* both branches computed, then selected (no conditional loads or divisions, so the
         * loop vectorises wherever it is inlined); outside, the interpolation's values are
         * unused, and 1 stands in for the zero width of a one-slice bracket */
        const int inside = (ci != 0) & (ci != n) & (ti != T0);
        const double h = T1 - T0;
        const double l = (ti - T0) / (h != 0.0 ? h : 1.0);
        const double wi = (1.0 - l) * T0 * s0 + l * T1 * s1;
        const double ti1 = (ti != 0.0) ? ti : 1.0;
        const double w = inside ? wi : s0 * ti;
        const double u = wi / ti1;
        vol[i] = sqrt(inside ? u : s0);
        var[i] = w;
    }
    int bad = 0;
    for (int i = 0; i < m; i++) bad += !(pg_finite(vol[i]) & pg_finite(var[i]) & (var[i] >= 0.0));
    return bad;
}

/* SVI at m <= PG_SURF_BLOCK points in block arrays (t, K, F; their expiry brackets c, or
 * NULL: found here): st[i] gets the point's pg_status.h bits (PG_BAD_TIME, PG_BAD_STRIKE,
 * PG_BAD_UNDERLYING for F, PG_BAD_VOL when the surface failed its checks, PG_NOT_FINITE),
 * vol[i] and var[i] its vol and total variance, NaN where st[i] != 0. Every point goes
 * through pg_svi_points, a failed one on stand-in inputs, so no point's bits depend on the
 * others (none does when the surface failed its checks). Returns the number of failed points. */
static int pg_svi_rows(const pg_surface *S, int m, const double *t, const double *K,
                       const double *F, const int *c, int *st, double *vol, double *var)
{
    double t_b[PG_SURF_BLOCK], K_b[PG_SURF_BLOCK], F_b[PG_SURF_BLOCK];
    int c_b[PG_SURF_BLOCK], found[PG_SURF_BLOCK];
    const int surface_bad = (S->bad != 0 || S->n < 1);
    if (c == NULL) {  /* the brackets first, so that the loop below vectorises */
        for (int i = 0; i < m; i++)
            found[i] = (t[i] >= 0.0 && t[i] <= PG_DBL_MAX && !surface_bad) ? pg_surface_bracket(S, t[i]) : 0;
        c = found;
    }
    #pragma omp simd
    for (int i = 0; i < m; i++) {
        const double ti = t[i], ki = K[i], fi = F[i];
        const int s = ((ti >= 0.0 && ti <= PG_DBL_MAX) ? 0 : PG_BAD_TIME)
                      | ((ki > 0.0 && ki <= PG_DBL_MAX) ? 0 : PG_BAD_STRIKE)
                      | ((fi > 0.0 && fi <= PG_DBL_MAX) ? 0 : PG_BAD_UNDERLYING)
                      | (surface_bad ? PG_BAD_VOL : 0);
        st[i] = s;
        t_b[i] = s ? 0.0 : ti;
        K_b[i] = s ? 1.0 : ki;
        F_b[i] = s ? 1.0 : fi;
        c_b[i] = s ? 0 : c[i];
    }
    if (!surface_bad)  /* (a bad surface may have no slices to read) */
        pg_svi_points(S, m, t_b, K_b, F_b, c_b, vol, var);
    int nbad = 0;
    #pragma omp simd reduction(+:nbad)
    for (int i = 0; i < m; i++) {
        const int ok = pg_finite(vol[i]) & pg_finite(var[i]) & (var[i] >= 0.0);
        const int s = st[i] ? st[i] : (ok ? 0 : PG_NOT_FINITE);
        st[i] = s;
        vol[i] = s ? NAN : vol[i];
        var[i] = s ? NAN : var[i];
        nbad += (s != 0);
    }
    return nbad;
}

/* ------------------------------------------------------------------------- block loop */

/* Points [start, start + m): measure meas[j] of point i goes to out[j * ldo + i] for j < k;
 * status[i] gets pg_status.h bits: PG_BAD_TIME (T NaN, infinite or < 0), PG_BAD_STRIKE
 * (K not finite or not > 0), PG_BAD_UNDERLYING (F not finite or not > 0, where the surface
 * reads F: moneyness and delta axes, SVI, SABR), PG_BAD_VOL (every point, when the surface failed its
 * checks), PG_NOT_FINITE (valid inputs, no finite non-negative variance, e.g. a SABR
 * expansion gone negative). Every output of a failed point is NaN. F is read at
 * F[i * fstep] (fstep 0: one forward for every point). Returns the number of failed points. */
static ptrdiff_t pg_surface_block(const pg_surface *S, const double *T, const double *K,
                                  const double *F, int fstep, ptrdiff_t start, int m,
                                  const int *meas, int k, double *out, ptrdiff_t ldo, int *status)
{
    const int surface_bad = (S->bad != 0 || S->n < 1 || (S->kind == PG_SURF_GRID && S->p < 1));
    const int needs_f = !(S->kind == PG_SURF_GRID && S->axis == PG_AXIS_STRIKE);
    ptrdiff_t nbad = 0;
    if (S->kind == PG_SURF_SVI) {
        double F_b[PG_SURF_BLOCK], vol[PG_SURF_BLOCK], var[PG_SURF_BLOCK];
        int st[PG_SURF_BLOCK];
        for (int ii = 0; ii < m; ii++) F_b[ii] = F[(start + ii) * fstep];
        nbad = pg_svi_rows(S, m, T + start, K + start, F_b, NULL, st, vol, var);
        for (int j = 0; j < k; j++)
            memcpy(out + j * ldo + start, meas[j] == PG_SURF_VOL ? vol : var, (size_t)m * sizeof(double));
        memcpy(status + start, st, (size_t)m * sizeof(int));
        return nbad;
    }
    for (int ii = 0; ii < m; ii++) {
        const ptrdiff_t i = start + ii;
        const double t = T[i], kk = K[i], f = F[i * fstep];
        int s = (t >= 0.0 && t <= PG_DBL_MAX) ? 0 : PG_BAD_TIME;
        s |= (kk > 0.0 && kk <= PG_DBL_MAX) ? 0 : PG_BAD_STRIKE;
        if (needs_f) s |= (f > 0.0 && f <= PG_DBL_MAX) ? 0 : PG_BAD_UNDERLYING;
        if (surface_bad) s |= PG_BAD_VOL;
        double vol = NAN, var = NAN;
        if (!s) s = pg_surface_point(S, t, kk, f, &vol, &var);
        if (s) { vol = NAN; var = NAN; nbad++; }
        for (int j = 0; j < k; j++) out[j * ldo + i] = (meas[j] == PG_SURF_VOL) ? vol : var;
        status[i] = s;
    }
    return nbad;
}

#endif
