/* Yield curves: node checks, the per-segment coefficients, the pointwise lookup and the
 * block loop built from it. The design note of curves.pyx gives the conventions; the
 * numerics are written out here.
 *
 * 1. Knots. A curve of n nodes (t_i, v_i), i = 1..n, 0 < t_1 < ... < t_n, gets the knot
 *    x_0 = 0 with DF 1 in front, so knots x_0..x_n. Every method is stored as
 *    I(t) = -ln DF(t) (the integrated forward, = r(t) t), y_k = I(x_k) at the knots:
 *    y_k = v_k t_k for zero rates, -ln v_k for discount factors, y_0 = 0.
 *    Segment k (1..n) is [x_{k-1}, x_k); segment n + 1 is [x_n, inf) (extrapolation).
 *    A knot belongs to the segment on its right (forwards are right-continuous).
 * 2. Pointwise, for t in segment k, d = t - x_{k-1}, h = x_k - x_{k-1}:
 *    LOG_LINEAR_DISCOUNT  I = y_{k-1} + a_k d, a_k = (y_k - y_{k-1})/h: ln DF linear,
 *                         forward a_k flat on the segment (QuantLib's LogLinear on DF).
 *    LINEAR_ZERO          z = z_{k-1} + b_k d, b_k = (z_k - z_{k-1})/h, I = z t,
 *                         forward z + t b_k; z_0 = z_1 (flat zero rate before t_1).
 *    MONOTONE_CONVEX      Hagan & West (2006), sec. 4-6 (and 2008, sec. 3): discrete
 *                         forwards fd_k = (y_k - y_{k-1})/h, node forwards
 *                           f_i = (h_{i+1} fd_i + h_i fd_{i+1})/(h_i + h_{i+1}), 0 < i < n,
 *                           f_0 = fd_1 - (f_1 - fd_1)/2,  f_n = fd_n - (f_{n-1} - fd_n)/2
 *                         (n = 1: f_0 = f_1 = fd_1), then on segment k with u = d/h,
 *                         g0 = f_{k-1} - fd_k, g1 = f_k - fd_k, the forward
 *                         f = fd_k + g(u) with g one of HW's four shapes (region (i)
 *                         quadratic, (ii) flat then quadratic, (iii) quadratic then flat,
 *                         (iv) two quadratics meeting at eta with minimum/maximum A),
 *                         chosen by the signs and ratio of g0, g1 in the order of HW's
 *                         paper (and QuantLib's ConvexMonotoneImpl); g0 = g1 = 0 (both
 *                         below 1e-14 in absolute value, as QuantLib) is a straight line
 *                         between f_{k-1} and f_k. I = y_{k-1} + h (fd_k u + G(u)) with
 *                         G the exact integral of g, so DF reproduces every node.
 *    MONOTONE_CONVEX_POSITIVE  the same after HW's positivity amendment (2006, sec. 6;
 *                         2008, "ensuring positivity"): f_0 collared to [0, 2 fd_1],
 *                         f_i to [0, 2 min(fd_i, fd_{i+1})], f_n to [0, 2 fd_n]. A collar
 *                         is applied only where its upper end is > 0 (all the discrete
 *                         forwards it names are positive); so a curve with positive
 *                         discrete forwards gets non-negative forwards everywhere, and
 *                         segments next to non-positive discrete forwards are left as
 *                         the basic method makes them.
 *    Extrapolation (segment n + 1): I = y_n + f_end (t - x_n), a flat instantaneous
 *    forward f_end: LL a_n (the last segment's forward, continuous), LZ z_n + t_n b_n (the
 *    last segment's forward at t_n, continuous), MC fd_n (the last discrete forward, the
 *    last segment's average; the forward jumps from f_n to fd_n at t_n unless they agree).
 *    These are QuantLib's InterpolatedDiscountCurve, InterpolatedZeroCurve and
 *    InterpolatedForwardCurve (PiecewiseConvexMonotoneForward) extrapolations.
 *    Zero rate I/t for t > 0 (LINEAR_ZERO: z itself); at t = 0 its limit, the forward at 0.
 * 3. Lookup: pg_curve_locate finds the segment by testing the previous point's segment and
 *    the next one first (O(1) per point on sorted times), else by a branch-free binary
 *    search over the knots. The segment, hence the result, does not depend on the hint.
 * 4. Block loop: pg_curve_block evaluates points [start, start + m), m <= PG_CURVE_BLOCK:
 *    a scalar loop (check, locate, I, zero rate, forward) into block arrays, then one
 *    `omp simd` loop for DF = exp(-I) (glibc's vector exp), padded to a whole number of
 *    vectors so that every point goes through the same vector code: a point's bits do not
 *    depend on its place in the batch or on the thread split.
 */
#ifndef PG_CURVES_H
#define PG_CURVES_H

#include <math.h>
#include <stddef.h>
#include <string.h>

/* glibc's vector exp (libmvec), as in pg_black.h: declared here so that gcc calls
 * _ZGV*_exp inside `omp simd` loops (legal with -fno-math-errno). */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__FAST_MATH__) \
    && !defined(PG_NO_LIBMVEC)
#if __GLIBC_PREREQ(2, 22)
extern double exp(double) __attribute__((__simd__("notinbranch")));
#endif
#endif

#include "pg_status.h"
#include "pg_inputs.h"

#ifdef _OPENMP
#include <omp.h>
static inline int pg_curve_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int pg_curve_max_threads(void) { return 1; }
#endif

#if defined(__GNUC__)
#define PG_CURVE_INLINE static inline __attribute__((always_inline))
#define PG_CURVE_ALIGNED __attribute__((aligned(64)))
#else
#define PG_CURVE_INLINE static inline
#define PG_CURVE_ALIGNED
#endif

/* Interpolation codes (the same numbers as pricegrid.server.domain.curves.Interpolation). */
#define PG_CURVE_LOG_LINEAR_DISCOUNT       1
#define PG_CURVE_LINEAR_ZERO               2
#define PG_CURVE_MONOTONE_CONVEX           3
#define PG_CURVE_MONOTONE_CONVEX_POSITIVE  4

/* What the node values are. */
#define PG_CURVE_ZERO_RATES        1   /* continuously compounded zero rates */
#define PG_CURVE_DISCOUNT_FACTORS  2

/* Measures. */
#define PG_CURVE_DISCOUNT  1   /* discount factor */
#define PG_CURVE_ZERO      2   /* continuously compounded zero rate */
#define PG_CURVE_FORWARD   3   /* instantaneous forward rate */
#define PG_CURVE_MEASURE_MAX 3

/* Per-node check bits (pg_curve_prepare). */
#define PG_NODE_TIME_NOT_FINITE      (1 << 0)
#define PG_NODE_TIME_NOT_POSITIVE    (1 << 1)
#define PG_NODE_TIME_DUPLICATE       (1 << 2)  /* equal to the previous node's time */
#define PG_NODE_TIME_NOT_INCREASING  (1 << 3)  /* below the previous node's time */
#define PG_NODE_VALUE_NOT_FINITE     (1 << 4)
#define PG_NODE_DF_NOT_POSITIVE      (1 << 5)
#define PG_NODE_OVERFLOW             (1 << 6)  /* valid, but -ln DF, a slope or a forward overflows */

#define PG_CURVE_BLOCK 256
#define PG_CURVE_VECTOR 8        /* the block's exp loop is padded to a multiple of this */
#define PG_CURVE_WORK_COLUMNS 9  /* doubles per knot in the workspace */

/* Monotone convex section shapes. */
#define PG_MC_LINEAR     0
#define PG_MC_QUADRATIC  1   /* HW region (i) */
#define PG_MC_FLAT_LEFT  2   /* HW region (ii): g0 up to eta, then quadratic */
#define PG_MC_FLAT_RIGHT 3   /* HW region (iii): quadratic up to eta, then g1 */
#define PG_MC_TWO_QUAD   4   /* HW region (iv) */

typedef struct {
    int interp;
    int n;            /* nodes; knots 0..n */
    int bad;          /* nodes with a non-zero check (the curve cannot be evaluated) */
    const double *x;  /* knots, x[0] = 0 */
    const double *y;  /* I = -ln DF at the knots, y[0] = 0 */
    const double *a;  /* LL: slope a_k; LZ: zero rate z_k (z_0 = z_1); MC: fd_k */
    const double *b;  /* LZ: zero-rate slope b_k; MC: g0 of segment k */
    const double *g1; /* MC: g1 of segment k */
    const double *eta;/* MC */
    const double *A;  /* MC: region (iv) extremum */
    const double *reg;/* MC: shape code (PG_MC_*) */
    double f_end;     /* forward beyond the last node */
} pg_curve;

/* ------------------------------------------------------------------------- preparation */

/* Check the nodes and fill the workspace `work` (PG_CURVE_WORK_COLUMNS * (n + 1) doubles).
 * node_status (n ints, or NULL) receives the PG_NODE_* bits of each node. Returns the number
 * of bad nodes (without node_status: a count that is 0 exactly when every node is good);
 * the curve is usable only when that is 0 and n >= 1. The interpolation and
 * value kind are checked by the caller. */
static int pg_curve_prepare(pg_curve *c, int interp, int n, const double *t, const double *v,
                            int kind, double *work, int *node_status)
{
    const int n1 = n + 1;
    double *x = work, *y = work + n1, *a = work + 2 * n1, *b = work + 3 * n1;
    double *g1 = work + 4 * n1, *eta = work + 5 * n1, *A = work + 6 * n1;
    double *reg = work + 7 * n1, *f = work + 8 * n1;
    int bad = 0;

    c->interp = interp;
    c->n = n;
    c->x = x; c->y = y; c->a = a; c->b = b; c->g1 = g1; c->eta = eta; c->A = A; c->reg = reg;
    c->f_end = 0.0;
    x[0] = 0.0;
    y[0] = 0.0;
    memset(a, 0, 7 * (size_t)n1 * sizeof(double));  /* a, b, g1, eta, A, reg, f */

    /* 1. the nodes themselves */
    for (int i = 0; i < n; i++) {
        int s = 0;
        const double ti = t[i], vi = v[i];
        if (!pg_finite(ti)) s |= PG_NODE_TIME_NOT_FINITE;
        else if (!(ti > 0.0)) s |= PG_NODE_TIME_NOT_POSITIVE;
        if (i > 0 && pg_finite(ti) && pg_finite(t[i - 1])) {
            if (ti == t[i - 1]) s |= PG_NODE_TIME_DUPLICATE;
            else if (ti < t[i - 1]) s |= PG_NODE_TIME_NOT_INCREASING;
        }
        if (!pg_finite(vi)) s |= PG_NODE_VALUE_NOT_FINITE;
        else if (kind == PG_CURVE_DISCOUNT_FACTORS && !(vi > 0.0)) s |= PG_NODE_DF_NOT_POSITIVE;
        x[i + 1] = ti;
        if (s == 0) {
            y[i + 1] = (kind == PG_CURVE_ZERO_RATES) ? vi * ti : -log(vi);
            if (!pg_finite(y[i + 1])) s |= PG_NODE_OVERFLOW;
        } else {
            y[i + 1] = 0.0;
        }
        if (node_status) node_status[i] = s;
        bad += (s != 0);
    }
    c->bad = bad;
    if (bad || n < 1) return bad;

    /* 2. per-segment coefficients; a non-finite one marks the node that ends its segment */
    int *ns = node_status, overflow = 0;
#define PG_CURVE_MARK(k, value)                                     \
    do {                                                            \
        if (!pg_finite(value)) {                                    \
            overflow++;                                             \
            if (ns) ns[(k) - 1] |= PG_NODE_OVERFLOW;                \
        }                                                           \
    } while (0)

    if (interp == PG_CURVE_LOG_LINEAR_DISCOUNT) {
        for (int k = 1; k <= n; k++) {
            a[k] = (y[k] - y[k - 1]) / (x[k] - x[k - 1]);
            PG_CURVE_MARK(k, a[k]);
        }
        c->f_end = a[n];
    } else if (interp == PG_CURVE_LINEAR_ZERO) {
        for (int k = 1; k <= n; k++) {
            a[k] = (kind == PG_CURVE_ZERO_RATES) ? v[k - 1] : y[k] / x[k];
            PG_CURVE_MARK(k, a[k]);
        }
        a[0] = a[1];
        for (int k = 1; k <= n; k++) {
            b[k] = (a[k] - a[k - 1]) / (x[k] - x[k - 1]);
            PG_CURVE_MARK(k, b[k]);
        }
        c->f_end = a[n] + x[n] * b[n];
        PG_CURVE_MARK(n, c->f_end);
    } else {  /* monotone convex */
        for (int k = 1; k <= n; k++) {
            a[k] = (y[k] - y[k - 1]) / (x[k] - x[k - 1]);
            PG_CURVE_MARK(k, a[k]);
        }
        if (n == 1) {
            f[0] = f[1] = a[1];
        } else {
            for (int i = 1; i < n; i++) {
                const double dprev = x[i] - x[i - 1], dnext = x[i + 1] - x[i];
                f[i] = dnext / (dnext + dprev) * a[i] + dprev / (dnext + dprev) * a[i + 1];
            }
            f[0] = 1.5 * a[1] - 0.5 * f[1];
            f[n] = 1.5 * a[n] - 0.5 * f[n - 1];
        }
        if (interp == PG_CURVE_MONOTONE_CONVEX_POSITIVE) {
            for (int i = 0; i <= n; i++) {
                double hi;
                if (i == 0) hi = 2.0 * a[1];
                else if (i == n) hi = 2.0 * a[n];
                else hi = 2.0 * fmin(a[i], a[i + 1]);
                if (hi > 0.0) f[i] = fmin(fmax(f[i], 0.0), hi);
            }
        }
        for (int k = 1; k <= n; k++) {
            const double fd = a[k], G0 = f[k - 1] - fd, G1 = f[k] - fd;
            double shape, e = 0.0, AA = 0.0;
            PG_CURVE_MARK(k, G0);
            PG_CURVE_MARK(k, G1);
            if (fabs(G0) < 1e-14 && fabs(G1) < 1e-14) {
                shape = PG_MC_LINEAR;
            } else if ((G0 > 0.0 && -0.5 * G0 >= G1 && G1 >= -2.0 * G0)
                       || (G0 < 0.0 && -0.5 * G0 <= G1 && G1 <= -2.0 * G0)) {
                shape = PG_MC_QUADRATIC;
            } else if ((G0 < 0.0 && G1 > -2.0 * G0) || (G0 > 0.0 && G1 < -2.0 * G0)) {
                shape = PG_MC_FLAT_LEFT;
                e = (G1 + 2.0 * G0) / (G1 - G0);
            } else if ((G0 > 0.0 && G1 < 0.0 && G1 > -0.5 * G0)
                       || (G0 < 0.0 && G1 > 0.0 && G1 < -0.5 * G0)) {
                shape = PG_MC_FLAT_RIGHT;
                e = 3.0 * G1 / (G1 - G0);
            } else {
                shape = PG_MC_TWO_QUAD;
                e = G1 / (G0 + G1);
                AA = -G0 * G1 / (G0 + G1);
            }
            b[k] = G0; g1[k] = G1; eta[k] = e; A[k] = AA; reg[k] = shape;
        }
        c->f_end = a[n];  /* the last discrete forward, as QuantLib's forward curves */
    }
#undef PG_CURVE_MARK
    if (ns) {
        for (int i = 0; i < n; i++) bad += (ns[i] != 0);
    } else {
        bad = overflow;
    }
    c->bad = bad;
    return bad;
}

/* ------------------------------------------------------------------------- pointwise */

/* The segment of t >= 0 by a branch-free binary search (conditional moves: random times
 * mispredict no branch) for the last knot <= t (x[0] = 0 <= t); its segment is the next. */
#define PG_CURVE_PROBE 16

PG_CURVE_INLINE int pg_curve_search(const pg_curve *c, double t)
{
    const double *x = c->x;
    int base = 0, len = c->n + 1;
    while (len > 1) {
        const int half = len >> 1;
        base = (x[base + half] <= t) ? base + half : base;
        len -= half;
    }
    return base + 1;
}

/* The segment of t >= 0: k in 1..n with x[k-1] <= t < x[k], or n + 1 for t >= x[n]. The
 * hint (the previous point's segment) and the one after it are tried first. */
PG_CURVE_INLINE int pg_curve_locate(const pg_curve *c, double t, int hint)
{
    const double *x = c->x;
    const int n = c->n;
    if (hint >= 1 && hint <= n + 1 && t >= x[hint - 1]) {
        if (hint == n + 1 || t < x[hint]) return hint;
        if (hint == n || t < x[hint + 1]) return hint + 1;
    }
    return pg_curve_search(c, t);
}

/* HW's g and its integral G over [0, u] on a monotone convex segment. */
PG_CURVE_INLINE void pg_mc_shape(int shape, double g0, double g1, double e, double AA, double u,
                                 double *g, double *G)
{
    double w;
    switch (shape) {
    case PG_MC_QUADRATIC:
        *g = g0 * (1.0 - 4.0 * u + 3.0 * u * u) + g1 * (3.0 * u * u - 2.0 * u);
        *G = g0 * (u - 2.0 * u * u + u * u * u) + g1 * (u * u * u - u * u);
        break;
    case PG_MC_FLAT_LEFT:
        if (u <= e) {
            *g = g0;
            *G = g0 * u;
        } else {
            w = (u - e) / (1.0 - e);
            *g = g0 + (g1 - g0) * w * w;
            *G = g0 * u + (g1 - g0) * (u - e) * w * w / 3.0;
        }
        break;
    case PG_MC_FLAT_RIGHT:
        if (u < e) {
            w = (e - u) / e;
            *g = g1 + (g0 - g1) * w * w;
            *G = g1 * u + (g0 - g1) * (e - (e - u) * w * w) / 3.0;
        } else {
            *g = g1;
            *G = g1 * u + (g0 - g1) * e / 3.0;
        }
        break;
    case PG_MC_TWO_QUAD:
        if (u < e) {
            w = (e - u) / e;
            *g = AA + (g0 - AA) * w * w;
            *G = AA * u + (g0 - AA) * (e - (e - u) * w * w) / 3.0;
        } else {
            w = (u - e) / (1.0 - e);
            *g = AA + (g1 - AA) * w * w;
            *G = AA * u + (g0 - AA) * e / 3.0 + (g1 - AA) * (u - e) * w * w / 3.0;
        }
        break;
    default:  /* PG_MC_LINEAR */
        *g = g0 + (g1 - g0) * u;
        *G = g0 * u + 0.5 * (g1 - g0) * u * u;
        break;
    }
}

/* I(t) = -ln DF(t), the zero rate and the instantaneous forward at t >= 0 in segment k. */
PG_CURVE_INLINE void pg_curve_eval(const pg_curve *c, int k, double t, double *I, double *zero,
                                   double *fwd)
{
    const int n = c->n;
    if (k > n) {
        const double v = c->y[n] + c->f_end * (t - c->x[n]);
        *I = v;
        *fwd = c->f_end;
        *zero = v / t;  /* t >= x[n] > 0 */
        return;
    }
    const double x0 = c->x[k - 1], d = t - x0;
    switch (c->interp) {
    case PG_CURVE_LOG_LINEAR_DISCOUNT: {
        const double s = c->a[k];
        const double v = c->y[k - 1] + s * d;
        *I = v;
        *fwd = s;
        *zero = (t > 0.0) ? v / t : s;
        break;
    }
    case PG_CURVE_LINEAR_ZERO: {
        const double s = c->b[k];
        const double z = c->a[k - 1] + s * d;
        *I = z * t;
        *fwd = z + t * s;
        *zero = z;
        break;
    }
    default: {  /* monotone convex, both variants */
        const double h = c->x[k] - x0, u = d / h, fd = c->a[k];
        double g, G;
        pg_mc_shape((int)c->reg[k], c->b[k], c->g1[k], c->eta[k], c->A[k], u, &g, &G);
        const double v = c->y[k - 1] + h * (fd * u + G);
        *I = v;
        *fwd = fd + g;
        *zero = (t > 0.0) ? v / t : fd + g;
        break;
    }
    }
}

/* ------------------------------------------------------------------------- block loop */

/* Points [start, start + m) (m <= PG_CURVE_BLOCK): measure meas[j] of point i goes to
 * out[j * ldo + i] for j < k; status[i] gets pg_status.h bits: PG_BAD_TIME for a query time
 * that is NaN, infinite or negative, PG_BAD_RATE (every point) when the curve failed its
 * checks, PG_NOT_FINITE when a requested measure overflowed. Every output of a failed
 * point is NaN. Returns the number of failed points. */
static ptrdiff_t pg_curve_block(const pg_curve *c, const double *times, ptrdiff_t start, int m,
                                const int *meas, int k, double *out, ptrdiff_t ldo, int *status)
{
    double I[PG_CURVE_BLOCK] PG_CURVE_ALIGNED;
    double D[PG_CURVE_BLOCK] PG_CURVE_ALIGNED;
    double Z[PG_CURVE_BLOCK] PG_CURVE_ALIGNED;
    double F[PG_CURVE_BLOCK] PG_CURVE_ALIGNED;
    int st[PG_CURVE_BLOCK];
    const double *tb = times + start;
    const int curve_bad = (c->bad != 0 || c->n < 1);
    int hint = 1, want_df = 0;

    for (int j = 0; j < k; j++) want_df |= (meas[j] == PG_CURVE_DISCOUNT);

    /* The hint pays off on sorted times (one compare) and costs mispredicted branches on
     * random ones: it is tried on the block's first PG_CURVE_PROBE points and kept only when
     * most of them hit. Either way a point finds the same segment (the same numbers). */
    int hits = 0, use_hint = 1;
    for (int i = 0; i < m; i++) {
        const double t = tb[i];
        int s = (t >= 0.0 && t <= PG_DBL_MAX) ? 0 : PG_BAD_TIME;
        if (curve_bad) s |= PG_BAD_RATE;
        st[i] = s;
        if (s) {
            I[i] = Z[i] = F[i] = 0.0;
            continue;
        }
        if (use_hint) {
            const int found = pg_curve_locate(c, t, hint);
            hits += (found == hint || found == hint + 1);
            hint = found;
            if (i == PG_CURVE_PROBE - 1 && hits < PG_CURVE_PROBE - PG_CURVE_PROBE / 4) use_hint = 0;
        } else {
            hint = pg_curve_search(c, t);
        }
        pg_curve_eval(c, hint, t, &I[i], &Z[i], &F[i]);
    }
    if (want_df) {
        const int mp = (m + PG_CURVE_VECTOR - 1) / PG_CURVE_VECTOR * PG_CURVE_VECTOR;
        for (int i = m; i < mp; i++) I[i] = 0.0;
        #pragma omp simd aligned(I, D : 64)
        for (int i = 0; i < mp; i++) D[i] = exp(-I[i]);
    }

    /* overflowed measures, then the outputs */
    for (int j = 0; j < k; j++) {
        const double *src = (meas[j] == PG_CURVE_DISCOUNT) ? D : (meas[j] == PG_CURVE_ZERO) ? Z : F;
        for (int i = 0; i < m; i++)
            if (st[i] == 0 && !pg_finite(src[i])) st[i] = PG_NOT_FINITE;
    }
    int nbad = 0;
    for (int i = 0; i < m; i++) nbad += (st[i] != 0);
    for (int j = 0; j < k; j++) {
        const double *src = (meas[j] == PG_CURVE_DISCOUNT) ? D : (meas[j] == PG_CURVE_ZERO) ? Z : F;
        double *o = out + j * ldo + start;
        memcpy(o, src, (size_t)m * sizeof(double));
        if (nbad)
            for (int i = 0; i < m; i++)
                if (st[i]) o[i] = NAN;
    }
    memcpy(status + start, st, (size_t)m * sizeof(int));
    return nbad;
}

#endif
