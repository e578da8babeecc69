/* Lognormal implied volatility: Peter Jaeckel, "Let's Be Rational", Wilmott (January 2015)
 * 59-69 (LBR below). Pointwise C, written from the paper's mathematics.
 *
 * Notation (LBR section 2): x = ln(F/K), s = sigma sqrt(T), h = x/s, t = s/2, theta = +-1 for
 * call/put. The normalised Black function is
 *     b(x, s) = theta [ e^{x/2} Phi(theta (h + t)) - e^{-x/2} Phi(theta (h - t)) ],
 * the undiscounted price divided by sqrt(F K). Put-call parity and b_put(x) = b_call(-x) reduce
 * every problem to an out-of-the-money call, x <= 0, 0 < beta < b_max = e^{x/2}.
 *
 * 1. b for x <= 0 (LBR section 3), in four regions, all sharing the vega
 *        db/ds = exp(-(h^2 + t^2)/2) / sqrt(2 pi):
 *    (i)   h < -10 and t < |h| - 10 + tau: asymptotic expansion for large |h|. With
 *          A = 1/(|h| - t), B = 1/(|h| + t), erfcx's asymptotic series gives
 *              b = vega * sum_k (-1)^k (2k-1)!! (A^{2k+1} - B^{2k+1}),
 *          the differences D_n = A^n - B^n by D_{n+2} = A^2 D_n + (A^2 - B^2) B^n (no
 *          cancellation: every term is positive).
 *    (ii)  t < tau = 2 eps^(1/16): Taylor expansion in t. With Y(h) = Phi(h)/phi(h)
 *          (Y' = 1 + h Y) and a = 1 + h Y(h),
 *              b = 2 vega sum_{k odd} t^k/k! Y^(k)(h),  Y^(k) = P_k(h^2) + Q_k(h^2) a,
 *          P_k, Q_k from the recursion (terms to t^17: truncation below eps for t < tau).
 *    (iii) h + t > 0.85: b = e^{x/2} Phi(h + t) - e^{-x/2} Phi(h - t) directly (b near b_max).
 *    (iv)  otherwise: b = exp(-(h^2+t^2)/2)/2 [erfcx(-(h+t)/sqrt2) - erfcx(-(h-t)/sqrt2)].
 *    Regions (i), (ii), (iv) also give ln b = -(h^2+t^2)/2 + ln(m) without underflow.
 * 2. Initial guess (LBR section 4): the inflection point s_c = sqrt(2|x|), the tangents there
 *    to zero and to b_max give s_l, s_u and the four branches b < b_l, [b_l, b_c], [b_c, b_u],
 *    > b_u. The inner two interpolate s(beta) by a rational cubic (Delbourgo and Gregory,
 *    1985) matching s and ds/dbeta at both ends and d2s/dbeta2 = 0 at b_c; the outer two
 *    interpolate the transformed f(beta) with
 *        f_lower(s) = 2 pi |x| / (3 sqrt 3) Phi(-|x|/(sqrt(3) s))^3  (LBR eq. 4.5ff)
 *        f_upper(s) = Phi(-s/2)
 *    (matching value, slope and curvature at b_l or b_u and the limits f ~ beta at 0,
 *    df/dbeta = -1/2 at b_max), then invert f analytically.
 * 3. Householder iterations of order 3 (LBR section 5) on the branch's objective:
 *        lower  g = 1/ln b - 1/ln beta;  middle  g = b - beta;
 *        upper  g = ln((b_max - beta)/(b_max - b)),
 *    step  nu (1 + nu h2/2) / (1 + nu (h2 + nu h3/6)),  nu = -g/g', h2 = g''/g', h3 = g'''/g',
 *    with b''/b' = x^2/s^3 - s/4 and b'''/b' = (b''/b')^2 - 3 x^2/s^4 - 1/4. Two steps reach
 *    machine precision (LBR section 6). The scalar solver stops after a step below
 *    PG_LBR_STEP_TOLERANCE s = 1e-5 s (convergence is quartic: the next step would be below
 *    1e-20 s; measured, 1e-4 still gives full precision and 1e-3 does not) and takes at most
 *    PG_LBR_MAX_ITERATIONS, keeping every iterate inside the bracket established by the
 *    signs of g seen so far.
 * 4. The same method without branches for SIMD lanes (section 4 below), with the scalar
 *    solver as the fall-back for the rare lanes it cannot finish.
 */
#ifndef PG_LETS_BE_RATIONAL_H
#define PG_LETS_BE_RATIONAL_H

#include <math.h>
#include <float.h>
#include <stddef.h>
#include "pg_normal.h"

#define PG_LBR_TAU               0.21022410381342863   /* 2 DBL_EPSILON^(1/16) */
#define PG_LBR_ETA               (-10.0)               /* asymptotic expansion for h < ETA */
#ifndef PG_LBR_MAX_ITERATIONS
#define PG_LBR_MAX_ITERATIONS    4
#endif
#ifndef PG_LBR_STEP_TOLERANCE
#define PG_LBR_STEP_TOLERANCE    1e-5
#endif
#define PG_SQRT3                 1.7320508075688772
#define PG_INV_SQRT3             0.5773502691896258
#define PG_TWO_PI_OVER_SQRT27    1.2091995761561452    /* 2 pi / (3 sqrt 3) */

/* ------------------------------------------------------------------ 1. b(x, s), x <= 0 */

/* Region (i): sum_k (-1)^k (2k-1)!! (A^{2k+1} - B^{2k+1}), A = 1/(u - t), B = 1/(u + t). */
static inline double pg_lbr_asymptotic_sum(double u, double t)
{
    double um = u - t, up = u + t;
    double a = 1.0 / um, b = 1.0 / up;
    double a2 = a * a, b2 = b * b;
    double d = 2.0 * t / (um * up);          /* A - B */
    double c = d * (2.0 * u / (um * up));    /* A^2 - B^2 = (A - B)(A + B) */
    double bn = b;                            /* B^(2k-1) */
    double sum = d, coef = 1.0, sign = 1.0;
    for (int k = 1; k < 40; ++k) {
        d = a2 * d + c * bn;                  /* D_{2k+1} */
        bn *= b2;
        coef *= (double)(2 * k - 1);
        sign = -sign;
        double term = coef * d;
        sum += sign * term;
        if (term <= 1e-17 * sum)
            break;
    }
    return sum;
}

/* Region (ii): sum_{k odd <= 17} t^k/k! (P_k(h^2) + Q_k(h^2) a), a = 1 + h Phi(h)/phi(h). */
PG_LANE double pg_lbr_small_t_series(double h, double t, double a)
{
    double e = h * h, w = t * t;
    double c3 = -1.0 + (e + 3.0) * a;
    double c5 = -(e + 7.0) + ((e + 10.0) * e + 15.0) * a;
    double c7 = -((e + 18.0) * e + 57.0) + (((e + 21.0) * e + 105.0) * e + 105.0) * a;
    double c9 = -(((e + 33.0) * e + 285.0) * e + 561.0)
                + ((((e + 36.0) * e + 378.0) * e + 1260.0) * e + 945.0) * a;
    double c11 = -((((e + 52.0) * e + 840.0) * e + 4680.0) * e + 6555.0)
                 + (((((e + 55.0) * e + 990.0) * e + 6930.0) * e + 17325.0) * e + 10395.0) * a;
    double c13 = -(((((e + 75.0) * e + 1926.0) * e + 20370.0) * e + 82845.0) * e + 89055.0)
                 + ((((((e + 78.0) * e + 2145.0) * e + 25740.0) * e + 135135.0) * e + 270270.0) * e
                    + 135135.0) * a;
    double c15 = -((((((e + 102.0) * e + 3795.0) * e + 64260.0) * e + 501795.0) * e + 1595790.0) * e
                   + 1381905.0)
                 + (((((((e + 105.0) * e + 4095.0) * e + 75075.0) * e + 675675.0) * e + 2837835.0) * e
                     + 4729725.0) * e + 2027025.0) * a;
    double c17 = -(((((((e + 133.0) * e + 6747.0) * e + 166155.0) * e + 2089395.0) * e + 12873735.0) * e
                    + 33453945.0) * e + 24137505.0)
                 + ((((((((e + 136.0) * e + 7140.0) * e + 185640.0) * e + 2552550.0) * e + 18378360.0) * e
                      + 64324260.0) * e + 91891800.0) * e + 34459425.0) * a;
    /* 1/k! for k = 3, 5, ..., 17 */
    double s = c17 * (1.0 / 355687428096000.0);
    s = s * w + c15 * (1.0 / 1307674368000.0);
    s = s * w + c13 * (1.0 / 6227020800.0);
    s = s * w + c11 * (1.0 / 39916800.0);
    s = s * w + c9 * (1.0 / 362880.0);
    s = s * w + c7 * (1.0 / 5040.0);
    s = s * w + c5 * (1.0 / 120.0);
    s = s * w + c3 * (1.0 / 6.0);
    s = s * w + a;
    return t * s;
}

static inline double pg_lbr_small_t_sum(double h, double t)
{
    return pg_lbr_small_t_series(h, t, 1.0 + h * PG_SQRT_PI_OVER_2 * pg_erfcx(-PG_SQRT1_2 * h));
}

/* The regions of b(x, s) for x <= 0, s > 0. Returns 1 when *m is b itself (region iii),
 * else 0 with b = *m exp(*e); *e = -(h^2+t^2)/2 in both cases (vega = exp(e)/sqrt(2 pi)). */
static inline int pg_lbr_black_parts(double x, double s, double *e, double *m)
{
    double h = x / s, t = 0.5 * s;
    *e = -0.5 * (h * h + t * t);
    if (h < PG_LBR_ETA && t + h < PG_LBR_TAU + PG_LBR_ETA) {
        *m = PG_INV_SQRT_2PI * pg_lbr_asymptotic_sum(-h, t);
        return 0;
    }
    if (t < PG_LBR_TAU) {
        *m = 2.0 * PG_INV_SQRT_2PI * pg_lbr_small_t_sum(h, t);
        return 0;
    }
    if (h + t > 0.85) {
        double ex = exp(0.5 * x);
        *m = ex * pg_norm_cdf(h + t) - pg_norm_cdf(h - t) / ex;
        return 1;
    }
    *m = 0.5 * (pg_erfcx(-PG_SQRT1_2 * (h + t)) - pg_erfcx(-PG_SQRT1_2 * (h - t)));
    return 0;
}

/* Normalised Black call b(x, s) for x <= 0, s > 0; writes the vega db/ds. */
static inline double pg_lbr_black(double x, double s, double *vega)
{
    double e, m;
    int direct = pg_lbr_black_parts(x, s, &e, &m);
    double ee = exp(e);
    *vega = PG_INV_SQRT_2PI * ee;
    return direct ? m : m * ee;
}

/* ln b(x, s) and vega/b without forming b (no underflow for tiny b). */
static inline double pg_lbr_log_black(double x, double s, double *vega_over_b)
{
    double e, m;
    if (pg_lbr_black_parts(x, s, &e, &m)) {
        *vega_over_b = PG_INV_SQRT_2PI * exp(e) / m;
        return log(m);
    }
    *vega_over_b = PG_INV_SQRT_2PI / m;
    return e + log(m);
}

/* b(x, s) for any x and theta = +1 (call) / -1 (put): intrinsic plus the out-of-the-money
 * value. Used by tests; the solver works with the out-of-the-money value only. */
static inline double pg_lbr_normalised_black(double x, double s, double theta)
{
    double vega, intrinsic = 0.0;
    if (theta * x > 0.0)
        intrinsic = fabs(exp(0.5 * x) - exp(-0.5 * x));
    if (!(s > 0.0))
        return intrinsic;
    return intrinsic + pg_lbr_black(-fabs(x), s, &vega);
}

/* ------------------------------------------------------- 2. rational cubic interpolation */

/* Delbourgo-Gregory rational cubic on [xl, xr] through (xl, yl), (xr, yr) with slopes dl, dr
 * and control parameter r (r = 3: cubic Hermite; r -> infinity: linear). */
static inline double pg_rational_cubic(double x, double xl, double xr, double yl, double yr,
                                       double dl, double dr, double r)
{
    double h = xr - xl;
    if (!(fabs(h) > 0.0))
        return 0.5 * (yl + yr);
    double s = (x - xl) / h, om = 1.0 - s;
    if (r >= 1.0 / DBL_EPSILON)
        return yr * s + yl * om;
    double num = yr * s * s * s + (r * yr - h * dr) * s * s * om + (r * yl + h * dl) * s * om * om
                 + yl * om * om * om;
    return num / (1.0 + (r - 3.0) * s * om);
}

/* Smallest control parameter that keeps the interpolant monotone and, for convex or concave
 * data, of the same convexity at both ends (R''(ends) from the closed forms below). */
static inline double pg_rational_cubic_min_control(double dl, double dr, double delta)
{
    double r = -1.0 + 1e-12;   /* the denominator stays positive for r > -1 */
    if (delta != 0.0 && dl * delta >= 0.0 && dr * delta >= 0.0) {
        double rm = (dl + dr) / delta;
        if (rm > r) r = rm;
    }
    int convex = dl <= delta && delta <= dr, concave = dl >= delta && delta >= dr;
    if ((convex || concave) && dl != dr) {
        double r1 = (dr - dl) / (dr - delta);
        double r2 = (dr - dl) / (delta - dl);
        double rc = r1 > r2 ? r1 : r2;
        if (!(rc <= 1.0 / DBL_EPSILON)) rc = 1.0 / DBL_EPSILON;   /* also catches inf/NaN */
        if (rc > r) r = rc;
    }
    return r;
}

/* Control parameter making R''(xr) = d2r (R''(xr) = 2 [(dl - dr) + r (dr - delta)] / h),
 * raised to the shape-preserving minimum. */
static inline double pg_rational_cubic_control_right(double xl, double xr, double yl, double yr,
                                                     double dl, double dr, double d2r)
{
    double h = xr - xl, delta = (yr - yl) / h;
    double r = (0.5 * h * d2r + (dr - dl)) / (dr - delta);
    double rmin = pg_rational_cubic_min_control(dl, dr, delta);
    return (r >= rmin) ? r : rmin;   /* NaN r -> rmin */
}

/* Control parameter making R''(xl) = d2l (R''(xl) = 2 [r (delta - dl) - (dr - dl)] / h). */
static inline double pg_rational_cubic_control_left(double xl, double xr, double yl, double yr,
                                                    double dl, double dr, double d2l)
{
    double h = xr - xl, delta = (yr - yl) / h;
    double r = (0.5 * h * d2l + (dr - dl)) / (delta - dl);
    double rmin = pg_rational_cubic_min_control(dl, dr, delta);
    return (r >= rmin) ? r : rmin;
}

/* ------------------------------------------------------------- 3. the implied s, x <= 0 */

#define PG_LBR_LOWER  0
#define PG_LBR_MIDDLE 1
#define PG_LBR_UPPER  2

#define PG_LBR_TINY_BETA 1e-280   /* below: beta may have lost bits (or be 0); use ln beta */

/* As pg_lbr_implied_s_otm, with ln_beta = ln(beta) given separately: for beta below
 * PG_LBR_TINY_BETA (subnormal or underflowed to 0 after normalisation) the lower branch works
 * from ln_beta alone (there the rational cubic is f = beta to within beta/b_l, and the
 * iterations use only ln beta). */
static inline double pg_lbr_implied_s_otm_ln(double beta, double ln_beta, double x)
{
    double b_max = exp(0.5 * x);
    double s, s_c, b_c, v_c;
    int branch;
    if (!(beta < b_max))
        beta = b_max * (1.0 - DBL_EPSILON);   /* rounding put beta on b_max: largest vol */
    if (x == 0.0) {
        s_c = 0.0; b_c = 0.0; v_c = PG_INV_SQRT_2PI;
    } else {
        s_c = sqrt(-2.0 * x);
        b_c = pg_lbr_black(x, s_c, &v_c);
    }
    if (beta <= b_c) {
        double s_l = s_c - b_c / v_c;
        double b_l = 0.0, v_l = 0.0;
        if (s_l > 0.0)
            b_l = pg_lbr_black(x, s_l, &v_l);
        if (beta < b_l) {
            /* lower map f = k Phi(-z)^3, z = |x|/(sqrt3 s), k = 2 pi |x|/(3 sqrt3); with
             * E = erfcx(z/sqrt2), g = exp(-z^2/2): Phi(-z) = E g/2, phi(z) = g/sqrt(2 pi),
             * df/dbeta = 2 pi z^2 Phi^2 e^{z^2 + s^2/8} = (pi/2) z^2 E^2 e^{s^2/8},
             * d2f/dbeta2 = df/dbeta / (s vega) [2 z phi/Phi - 2 z^2 - 2 + s^2/4],
             * 2 z phi/Phi = 4 z / (sqrt(2 pi) E). */
            double ax = -x, k = PG_TWO_PI_OVER_SQRT27 * ax;
            double z = PG_INV_SQRT3 * ax / s_l;
            double E = pg_erfcx(PG_SQRT1_2 * z);
            double Phi = 0.5 * E * exp(-0.5 * z * z);
            double f_l = k * Phi * Phi * Phi;
            double fb = 0.5 * M_PI * z * z * E * E * exp(0.125 * s_l * s_l);
            double fbb = fb / (s_l * v_l)
                         * (4.0 * PG_INV_SQRT_2PI * z / E - 2.0 * z * z - 2.0 + 0.25 * s_l * s_l);
            double r = pg_rational_cubic_control_right(0.0, b_l, 0.0, f_l, 1.0, fb, fbb);
            double f = pg_rational_cubic(beta, 0.0, b_l, 0.0, f_l, 1.0, fb, r);
            s = 0.0;
            if (beta < PG_LBR_TINY_BETA)
                s = ax / (PG_SQRT3 * -pg_inverse_norm_cdf(exp((ln_beta - log(k)) / 3.0)));
            else if (f > 0.0)
                s = ax / (PG_SQRT3 * -pg_inverse_norm_cdf(cbrt(f / k)));
            if (!(s > 0.0 && s < s_l))
                s = 0.5 * s_l;   /* never reached for sane data; keeps the iteration defined */
            branch = PG_LBR_LOWER;
        } else {
            double r = pg_rational_cubic_control_right(b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, 0.0);
            s = pg_rational_cubic(beta, b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, r);
            branch = PG_LBR_MIDDLE;
        }
    } else {
        double v_u, s_u = s_c + (b_max - b_c) / v_c;
        double b_u = pg_lbr_black(x, s_u, &v_u);
        if (beta <= b_u) {
            double r = pg_rational_cubic_control_left(b_c, b_u, s_c, s_u, 1.0 / v_c, 1.0 / v_u, 0.0);
            s = pg_rational_cubic(beta, b_c, b_u, s_c, s_u, 1.0 / v_c, 1.0 / v_u, r);
            branch = PG_LBR_MIDDLE;
        } else {
            /* upper map f = Phi(-s/2) = erfcx(s/sqrt8) e^{-s^2/8}/2; df/dbeta = -e^{h^2/2}/2;
             * d2f/dbeta2 = sqrt(pi/2) x^2/s^3 e^{h^2 + s^2/8} */
            double h = x / s_u, q = 0.125 * s_u * s_u;
            double eq = exp(q);
            double f_u = 0.5 * pg_erfcx(0.5 * PG_SQRT1_2 * s_u) / eq;
            double eh = exp(0.5 * h * h);
            double fb = -0.5 * eh;
            double fbb = PG_SQRT_PI_OVER_2 * x * x / (s_u * s_u * s_u) * eh * eh * eq;
            double r = pg_rational_cubic_control_left(b_u, b_max, f_u, 0.0, fb, -0.5, fbb);
            double f = pg_rational_cubic(beta, b_u, b_max, f_u, 0.0, fb, -0.5, r);
            if (!(f > 0.0)) f = DBL_MIN;
            if (f >= f_u) f = f_u;
            s = -2.0 * pg_inverse_norm_cdf(f);
            branch = PG_LBR_UPPER;
        }
    }

    /* Householder(3) iterations, bracketed */
    double s_left = 0.0, s_right = INFINITY;
    double bmax_minus_beta = b_max - beta;
    double x2 = x * x;
    for (int it = 0; it < PG_LBR_MAX_ITERATIONS; ++it) {
        double is = 1.0 / s, is2 = is * is;
        double b2 = x2 * is2 * is - 0.25 * s;                  /* b''/b' */
        double b3 = b2 * b2 - 3.0 * x2 * is2 * is2 - 0.25;     /* b'''/b' */
        double nu, h2, h3;
        int above;                                             /* b(s) > beta */
        if (branch == PG_LBR_LOWER) {
            /* g = 1/ln b - 1/ln beta; vb = b'/b */
            double vb, L = pg_lbr_log_black(x, s, &vb);
            above = L > ln_beta;
            nu = (ln_beta - L) * (L / ln_beta) / vb;
            double q = (L + 2.0) / L;
            h2 = -q * vb + b2;
            h3 = (2.0 * L * L + 6.0 * L + 6.0) / (L * L) * vb * vb - 3.0 * q * vb * b2 + b3;
        } else if (branch == PG_LBR_UPPER) {
            /* g = ln((b_max - beta)/(b_max - b)) */
            double vega, b = pg_lbr_black(x, s, &vega);
            double d = b_max - b;
            above = d < bmax_minus_beta;
            double vd = vega / d;
            nu = -log(bmax_minus_beta / d) / vd;
            h2 = vd + b2;
            h3 = 2.0 * vd * vd + 3.0 * vd * b2 + b3;
        } else {
            /* g = b - beta */
            double vega, b = pg_lbr_black(x, s, &vega);
            above = b > beta;
            nu = (beta - b) / vega;
            h2 = b2;
            h3 = b3;
        }
        if (above) { if (s < s_right) s_right = s; }
        else       { if (s > s_left) s_left = s; }
        double ds = nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + nu * h3 / 6.0));
        double s_new = s + ds;
        if (!(s_new >= s_left && s_new <= s_right)) {   /* also catches NaN */
            s = (s_right < INFINITY) ? 0.5 * (s_left + s_right) : (s > 0.0 ? 2.0 * s : 1.0);
            continue;
        }
        s = s_new;
        if (fabs(ds) <= PG_LBR_STEP_TOLERANCE * s)
            break;
    }
    return s;
}

/* s = sigma sqrt(T) with b(x, s) = beta for x <= 0 and 0 < beta < b_max = e^{x/2}. */
static inline double pg_lbr_implied_s_otm(double beta, double x)
{
    return pg_lbr_implied_s_otm_ln(beta, log(beta), x);
}

/* ------------------------------------------------------------- 4. SIMD lanes
 *
 * The same method written without branches, for `#pragma omp simd` loops (glibc's vector
 * exp/log): every quantity a lane might need is computed and the lane's own selected. The
 * three regions (ii)-(iv) of b are evaluated together (region (iii) in the form
 * b = b_max - (erfcx(u1) + erfcx(u2)) exp(e)/2, u1 = (h+t)/sqrt2, u2 = (t-h)/sqrt2, which also
 * gives b_max - b without cancellation); both outer maps share one erfcx, two exps and one
 * inverse normal; the guess of every branch is one rational cubic with selected end points;
 * then exactly two Householder(3) steps. A lane raises *fallback, and the caller solves it
 * with pg_lbr_implied_s_otm, when it meets region (i), leaves its bracket, produces a
 * non-finite value, or would need a third step (its second step is above
 * PG_LBR_STEP_TOLERANCE). */

/* b(x, s) for x <= 0 < s, with vega, ln b, vega/b and b_max - b; *asym: region (i). */
PG_LANE double pg_lbrv_black(double x, double s, double b_max, double *vega, double *ln_b,
                                   double *vega_over_b, double *bmax_minus_b, int *asym)
{
    double h = x / s, t = 0.5 * s;
    double e = -0.5 * (h * h + t * t);
    double ee = exp(e);
    double a = 1.0 + h * PG_SQRT_PI_OVER_2 * pg_erfcx_nonneg(-PG_SQRT1_2 * h);
    double m2 = 2.0 * PG_INV_SQRT_2PI * pg_lbr_small_t_series(h, t, a);
    double u1 = PG_SQRT1_2 * (h + t), u2 = PG_SQRT1_2 * (t - h);
    double e1 = pg_erfcx_nonneg(fabs(u1)), e2 = pg_erfcx_nonneg(u2);
    double ex1 = exp(u1 * u1);
    double e1m = u1 <= 0.0 ? e1 : 2.0 * ex1 - e1;   /* erfcx(-u1); u1 <= 0.61 where used */
    double m4 = 0.5 * (e1m - e2);
    int small = t < PG_LBR_TAU;
    int direct = !small & (h + t > 0.85);
    double m = small ? m2 : m4;
    double tail = 0.5 * (e1 + e2) * ee;
    double b = direct ? b_max - tail : m * ee;
    double v = PG_INV_SQRT_2PI * ee;
    *vega = v;
    *ln_b = log(direct ? b : m) + (direct ? 0.0 : e);
    *vega_over_b = (direct ? v : PG_INV_SQRT_2PI) / (direct ? b : m);
    *bmax_minus_b = direct ? tail : b_max - b;
    *asym = (h < PG_LBR_ETA) & (t + h < PG_LBR_TAU + PG_LBR_ETA);
    return b;
}

/* Rational cubic without branches (the linear limit selected for huge r). */
PG_LANE double pg_rational_cubic_nb(double x, double xl, double xr, double yl, double yr,
                                          double dl, double dr, double r)
{
    double h = xr - xl;
    double s = (x - xl) / h, om = 1.0 - s;
    double num = yr * s * s * s + (r * yr - h * dr) * s * s * om + (r * yl + h * dl) * s * om * om
                 + yl * om * om * om;
    double cubic = num / (1.0 + (r - 3.0) * s * om);
    double linear = yr * s + yl * om;
    return r >= 1.0 / DBL_EPSILON ? linear : cubic;
}

/* Control parameter fitting R'' = d2 at the right (right != 0) or left end, raised to the
 * shape-preserving minimum; without branches. */
PG_LANE double pg_rational_cubic_control_nb(double xl, double xr, double yl, double yr,
                                                  double dl, double dr, double d2, int right)
{
    double h = xr - xl, delta = (yr - yl) / h;
    double r = (0.5 * h * d2 + (dr - dl)) / (right ? dr - delta : delta - dl);
    double rmin = -1.0 + 1e-12;
    /* bitwise & and | (not && and ||): no control flow, so the loop vectorises */
    int mono = (delta != 0.0) & (dl * delta >= 0.0) & (dr * delta >= 0.0);
    double rm = (dl + dr) / delta;
    rmin = (mono & (rm > rmin)) ? rm : rmin;
    int shaped = (((dl <= delta) & (delta <= dr)) | ((dl >= delta) & (delta >= dr))) & (dl != dr);
    double r1 = (dr - dl) / (dr - delta), r2 = (dr - dl) / (delta - dl);
    double rc = r1 > r2 ? r1 : r2;
    rc = rc <= 1.0 / DBL_EPSILON ? rc : 1.0 / DBL_EPSILON;
    rmin = (shaped & (rc > rmin)) ? rc : rmin;
    return r >= rmin ? r : rmin;
}

/* One Householder(3) step of the branch's objective at s (see section 3). */
PG_LANE double pg_lbrv_step(double x, double s, double beta, double ln_beta, double inv_ln_beta,
                            double b_max, int lower, int upper, int *above, int *asym)
{
    double vega, L, vb, d;
    double b = pg_lbrv_black(x, s, b_max, &vega, &L, &vb, &d, asym);
    double is = 1.0 / s, is2 = is * is, x2 = x * x;
    double b2 = x2 * is2 * is - 0.25 * s;
    double b3 = b2 * b2 - 3.0 * x2 * is2 * is2 - 0.25;
    /* lower: g = 1/ln b - 1/ln beta: nu = (ln beta - L) L / (ln beta vb) */
    double iL = 1.0 / L;
    double q = 1.0 + 2.0 * iL;
    double h2_l = -q * vb + b2;
    double h3_l = (2.0 + (6.0 + 6.0 * iL) * iL) * vb * vb - 3.0 * q * vb * b2 + b3;
    /* upper: g = ln((b_max - beta)/(b_max - b)): nu = -g d / vega */
    double vd = vega / d;
    double g_u = log((b_max - beta) / d);
    double h2_u = vd + b2;
    double h3_u = 2.0 * vd * vd + 3.0 * vd * b2 + b3;
    /* middle: g = b - beta: nu = (beta - b) / vega; one division for the three */
    double num = lower ? (ln_beta - L) * L * inv_ln_beta : (upper ? -g_u * d : beta - b);
    double den = lower ? vb : vega;
    double nu = num / den;
    double h2 = lower ? h2_l : (upper ? h2_u : b2);
    double h3 = lower ? h3_l : (upper ? h3_u : b3);
    *above = lower ? L > ln_beta : (upper ? d < b_max - beta : b > beta);
    return nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + nu * h3 / 6.0));
}

/* s with b(x, s) = beta, x <= 0, 0 < beta < b_max = e^{x/2}, without branches. */
PG_LANE double pg_lbrv_implied_s_otm(double beta, double x, double b_max, int *fallback)
{
    double v, L, vb, d;
    int asym, bad = !((beta < b_max) & (beta > PG_LBR_TINY_BETA));
    /* x = 0: s_c = 0 is evaluated at 1e-300, where b ~ 4e-301 and the vega is exactly
     * 1/sqrt(2 pi), the limits at 0. (Adding 1e-300 changes no s_c >= 1e-284 and, unlike a
     * clamp, gives gcc no select of comparisons, which its vectoriser cannot handle.) */
    double s_c = sqrt(-2.0 * x) + 1e-300;
    double v_c, b_c = pg_lbrv_black(x, s_c, b_max, &v_c, &L, &vb, &d, &asym);
    bad |= asym;
    /* the other end point: s_l below b_c, s_u above */
    int low = beta <= b_c;
    double s_o = fabs(low ? s_c - b_c / v_c : s_c + (b_max - b_c) / v_c) + 1e-300;
    double v_o, b_o = pg_lbrv_black(x, s_o, b_max, &v_o, &L, &vb, &d, &asym);
    bad |= asym;
    int lower = low & (beta < b_o);
    int upper = !low & (beta > b_o);
    /* outer maps at s_o (lower: z = |x|/(sqrt3 s_l); upper: f = Phi(-s_u/2)) */
    double so = s_o;
    double ax = -x, k = PG_TWO_PI_OVER_SQRT27 * ax;
    double z = PG_INV_SQRT3 * ax / so;
    double hu = x / so;
    double E = pg_erfcx_nonneg(low ? PG_SQRT1_2 * z : 0.5 * PG_SQRT1_2 * so);
    double eq = exp(0.125 * so * so);
    double ez = exp(low ? -0.5 * z * z : 0.5 * hu * hu);   /* lower: e^{-z^2/2}; upper: e^{h^2/2} */
    double Phi = 0.5 * E * ez;
    double f_lo = k * Phi * Phi * Phi;
    double fb_lo = 0.5 * M_PI * z * z * E * E * eq;
    double fbb_lo = fb_lo / (so * v_o) * (4.0 * PG_INV_SQRT_2PI * z / E - 2.0 * z * z - 2.0 + 0.25 * so * so);
    double f_up = 0.5 * E / eq;
    double fb_up = -0.5 * ez;
    double fbb_up = PG_SQRT_PI_OVER_2 * x * x / (so * so * so) * ez * ez * eq;
    /* one rational cubic: lower map, upper map or s(beta) in the middle */
    int mid = !lower & !upper;
    double xl = lower ? 0.0 : (upper ? b_o : (low ? b_o : b_c));
    double xr = lower ? b_o : (upper ? b_max : (low ? b_c : b_o));
    double yl = lower ? 0.0 : (upper ? f_up : (low ? s_o : s_c));
    double yr = lower ? f_lo : (upper ? 0.0 : (low ? s_c : s_o));
    double dl = lower ? 1.0 : (upper ? fb_up : (low ? 1.0 / v_o : 1.0 / v_c));
    double dr = lower ? fb_lo : (upper ? -0.5 : (low ? 1.0 / v_c : 1.0 / v_o));
    double d2 = lower ? fbb_lo : (upper ? fbb_up : 0.0);
    int right = lower | (mid & low);
    double r = pg_rational_cubic_control_nb(xl, xr, yl, yr, dl, dr, d2, right);
    double y = pg_rational_cubic_nb(beta, xl, xr, yl, yr, dl, dr, r);
    /* invert the maps: lower Phi(-z) = (f/k)^(1/3), upper Phi(-s/2) = f */
    y = (mid | (y > 0.0)) ? y : DBL_MIN;
    y = (upper & (y > f_up)) ? f_up : y;
    double ly = log(lower ? y / k : y);
    double lp = lower ? ly / 3.0 : ly;
    double elp = exp(lp);
    double p = lower ? elp : y;
    double X = pg_inverse_norm_cdf_lower(p < 0.5 ? p : 0.5, lp);
    double s = lower ? ax / (PG_SQRT3 * -X) : (upper ? -2.0 * X : y);
    bad |= !((s > 0.0) & (s < INFINITY));   /* a bad lane may carry NaN on: it is re-solved */
    /* two Householder(3) steps, bracketed */
    double ln_beta = log(beta), inv_ln_beta = 1.0 / ln_beta;
    int above, asym2;
    double ds1 = pg_lbrv_step(x, s, beta, ln_beta, inv_ln_beta, b_max, lower, upper, &above, &asym);
    double s_left = above ? 0.0 : s, s_right = above ? s : INFINITY;
    double s1 = s + ds1;
    bad |= asym | !((s1 >= s_left) & (s1 <= s_right));
    double ds2 = pg_lbrv_step(x, s1, beta, ln_beta, inv_ln_beta, b_max, lower, upper, &above, &asym2);
    s_left = above ? s_left : s1;
    s_right = above ? s1 : s_right;
    double s2 = s1 + ds2;
    bad |= asym2 | !((s2 >= s_left) & (s2 <= s_right)) | !(fabs(ds2) <= PG_LBR_STEP_TOLERANCE * s2);
    *fallback = bad;
    return s2;
}

#endif
