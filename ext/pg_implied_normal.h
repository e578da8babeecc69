/* Normal (Bachelier) implied volatility, pointwise C.
 *
 * 1. Reduction (P. Jaeckel, "Implied Normal Volatility", Wilmott (2017), section 2): with
 *    d = |F - K| and v the undiscounted out-of-the-money value (price less intrinsic), the
 *    Bachelier value of the out-of-the-money option is
 *        v = s phi(d/s) - d Phi(-d/s),   s = sigma sqrt(T),
 *    so with u = d/s > 0 and nu = v/d the equation is
 *        psi(u) := phi(u)/u - Phi(-u) = phi(u) (1/u - R(u)) = nu,   R(u) = Phi(-u)/phi(u),
 *    psi decreasing from +inf to 0, R(u) = sqrt(pi/2) erfcx(u/sqrt2) (Cody, pg_normal.h).
 *    At the money (d = 0) s = v sqrt(2 pi) exactly.
 * 2. Instead of Jaeckel's rational approximation of the inverse of psi followed by one
 *    Householder step, we iterate Householder's method of order 3 (quartic convergence) on
 *    an objective that is nearly linear in u in each regime, with the exact derivatives
 *        psi'/psi = -q/u^2, psi''/psi = q (1/u + 2/u^3), psi'''/psi = -q (1 + 3/u^2 + 6/u^4),
 *    q = phi/psi = 1/(1/u - R(u)):
 *        nu >= psi(1):  g = 1/psi(u) - 1/nu     (1/psi ~ u sqrt(2 pi) for small u)
 *        nu <  psi(1):  g = ln psi(u) - ln nu    (ln psi ~ -u^2/2 - 3 ln u), in logs, so no
 *                       underflow however deep out of the money.
 *    Initial guesses from the expansions psi = phi(0)/u - 1/2 + phi(0) u/2 + O(u^3) (a
 *    quadratic in u) and psi ~ phi(u)/u^3 (1 - 6/u^2) (fixed point for u). Iterations stop
 *    once a step is below 1e-5 u (quartic convergence: the next would be below 1e-20 u;
 *    measured: 1 to 3 steps, max error 8e-16), at most 8, bracketed like the lognormal
 *    solver. The cancellation in 1/u - R(u) for large u (relative error ~ eps u^2) is
 *    divided by the condition number |d ln psi/d ln u| ~ u^2, so u (and sigma) keep full
 *    relative precision.
 * 3. pg_bachv_implied_u: the same without branches for SIMD lanes (both guesses, exactly
 *    three steps), with pg_bachelier_implied_u as the fall-back.
 */
#ifndef PG_IMPLIED_NORMAL_H
#define PG_IMPLIED_NORMAL_H

#include <math.h>
#include <float.h>
#include "pg_normal.h"

#define PG_BACHELIER_PSI_1          0.08331547058768629   /* psi(1) = phi(1) - Phi(-1) */
#define PG_BACHELIER_MAX_ITERATIONS 8
#define PG_BACHELIER_STEP_TOLERANCE 1e-5
#define PG_LN_SQRT_2PI              0.91893853320467267   /* ln sqrt(2 pi) */

/* u > 0 with psi(u) = nu > 0; ln_nu = ln(nu), given separately for nu below DBL_MIN. */
static inline double pg_bachelier_implied_u(double nu, double ln_nu)
{
    const double phi0 = PG_INV_SQRT_2PI;
    int reciprocal = nu >= PG_BACHELIER_PSI_1;
    double u;
    if (reciprocal) {
        double c = nu + 0.5, disc = c * c - 2.0 * phi0 * phi0;
        u = 2.0 * phi0 / (c + sqrt(disc > 0.0 ? disc : 0.0));
    } else {
        double l0 = -ln_nu - PG_LN_SQRT_2PI;   /* -ln(nu sqrt(2 pi)) > 1.56 */
        u = sqrt(2.0 * l0);
        for (int k = 0; k < 3; ++k) {
            double w = 1.0 - 6.0 / (u * u);
            double u2 = 2.0 * l0 - 6.0 * log(u) + 2.0 * log(w > 0.1 ? w : 0.1);
            u = sqrt(u2 > 1.0 ? u2 : 1.0);
        }
    }
    double u_left = 0.0, u_right = INFINITY;
    for (int it = 0; it < PG_BACHELIER_MAX_ITERATIONS; ++it) {
        double rr = PG_SQRT_PI_OVER_2 * pg_erfcx(PG_SQRT1_2 * u);
        double m = 1.0 / u - rr;                   /* psi = phi(u) m */
        double q = 1.0 / m;
        double iu = 1.0 / u, iu2 = iu * iu;
        double r1 = -q * iu2;
        double r2 = q * (iu + 2.0 * iu2 * iu);
        double r3 = -q * (1.0 + 3.0 * iu2 + 6.0 * iu2 * iu2);
        double step, h2, h3;
        int above;   /* psi(u) > nu: u is below the root */
        if (reciprocal) {
            double psi = PG_INV_SQRT_2PI * exp(-0.5 * u * u) * m;
            above = psi > nu;
            step = (nu - psi) / (nu * r1);
            h2 = -2.0 * r1 + r2 / r1;
            h3 = 6.0 * r1 * r1 - 6.0 * r2 + r3 / r1;
        } else {
            double g = -0.5 * u * u - PG_LN_SQRT_2PI + log(m) - ln_nu;
            above = g > 0.0;
            step = -g / r1;
            h2 = r2 / r1 - r1;
            h3 = r3 / r1 - 3.0 * r2 + 2.0 * r1 * r1;
        }
        if (above) { if (u > u_left) u_left = u; }
        else       { if (u < u_right) u_right = u; }
        double du = step * (1.0 + 0.5 * h2 * step) / (1.0 + step * (h2 + step * h3 / 6.0));
        double u_new = u + du;
        if (!(u_new >= u_left && u_new <= u_right)) {
            u = (u_right < INFINITY) ? 0.5 * (u_left + u_right) : 2.0 * u;
            continue;
        }
        u = u_new;
        if (fabs(du) <= PG_BACHELIER_STEP_TOLERANCE * u)
            break;
    }
    return u;
}

/* s = sigma sqrt(T) from the undiscounted out-of-the-money value v > 0 and d = |F - K|. */
static inline double pg_bachelier_implied_s_otm(double v, double d)
{
    if (d == 0.0)
        return v * PG_SQRT_2PI;
    double nu = v / d;
    if (!(nu <= DBL_MAX))
        return v * PG_SQRT_2PI;   /* d negligible against v: at the money */
    double ln_nu = nu >= DBL_MIN ? log(nu) : log(v) - log(d);
    return d / pg_bachelier_implied_u(nu, ln_nu);
}

/* ----------------------------------------------------------------------- SIMD lanes
 *
 * The same solver without branches, for `#pragma omp simd` loops: both initial guesses are
 * computed and the lane's selected, then exactly three Householder(3) steps (the scalar
 * solver needs one to three). A lane raises *fallback, and the caller solves it with
 * pg_bachelier_implied_s_otm, when its last step is above PG_BACHELIER_STEP_TOLERANCE, a step
 * leaves its bracket or a value is not finite. */

/* One step at u of the objective chosen by `reciprocal`; *above: psi(u) > nu. */
PG_LANE double pg_bachv_step(double u, double nu, double ln_nu, int reciprocal, int *above)
{
    double rr = PG_SQRT_PI_OVER_2 * pg_erfcx_nonneg(PG_SQRT1_2 * u);
    double iu = 1.0 / u, iu2 = iu * iu;
    double m = iu - rr;
    double q = 1.0 / m;
    double r1 = -q * iu2, ir1 = 1.0 / r1;
    double r2 = q * (iu + 2.0 * iu2 * iu);
    double r3 = -q * (1.0 + 3.0 * iu2 + 6.0 * iu2 * iu2);
    double psi = PG_INV_SQRT_2PI * exp(-0.5 * u * u) * m;
    double g = -0.5 * u * u - PG_LN_SQRT_2PI + log(m) - ln_nu;
    double step = reciprocal ? (nu - psi) / nu * ir1 : -g * ir1;
    double h2 = reciprocal ? -2.0 * r1 + r2 * ir1 : r2 * ir1 - r1;
    double h3 = reciprocal ? 6.0 * r1 * r1 - 6.0 * r2 + r3 * ir1 : r3 * ir1 - 3.0 * r2 + 2.0 * r1 * r1;
    *above = reciprocal ? psi > nu : g > 0.0;
    return step * (1.0 + 0.5 * h2 * step) / (1.0 + step * (h2 + step * h3 / 6.0));
}

/* u > 0 with psi(u) = nu, nu > 0 normal, ln_nu = ln(nu), without branches. */
PG_LANE double pg_bachv_implied_u(double nu, double ln_nu, int *fallback)
{
    const double phi0 = PG_INV_SQRT_2PI;
    int reciprocal = nu >= PG_BACHELIER_PSI_1;
    double c = nu + 0.5, disc = c * c - 2.0 * phi0 * phi0;
    double ua = 2.0 * phi0 / (c + sqrt(disc > 0.0 ? disc : 0.0));
    double l0 = -ln_nu - PG_LN_SQRT_2PI;
    l0 = l0 > 0.5 ? l0 : 0.5;
    double ub = sqrt(2.0 * l0);
    double w, u2;
    w = 1.0 - 6.0 / (ub * ub); u2 = 2.0 * l0 - 6.0 * log(ub) + 2.0 * log(w > 0.1 ? w : 0.1);
    ub = sqrt(u2 > 1.0 ? u2 : 1.0);
    w = 1.0 - 6.0 / (ub * ub); u2 = 2.0 * l0 - 6.0 * log(ub) + 2.0 * log(w > 0.1 ? w : 0.1);
    ub = sqrt(u2 > 1.0 ? u2 : 1.0);
    w = 1.0 - 6.0 / (ub * ub); u2 = 2.0 * l0 - 6.0 * log(ub) + 2.0 * log(w > 0.1 ? w : 0.1);
    ub = sqrt(u2 > 1.0 ? u2 : 1.0);
    double u = reciprocal ? ua : ub;
    int above, bad = !((nu >= DBL_MIN) & (nu <= DBL_MAX));
    double lo = 0.0, hi = INFINITY, du;
    du = pg_bachv_step(u, nu, ln_nu, reciprocal, &above);
    lo = above ? u : lo; hi = above ? hi : u;
    u += du;
    bad |= !((u >= lo) & (u <= hi));
    du = pg_bachv_step(u, nu, ln_nu, reciprocal, &above);
    lo = above ? u : lo; hi = above ? hi : u;
    u += du;
    bad |= !((u >= lo) & (u <= hi));
    du = pg_bachv_step(u, nu, ln_nu, reciprocal, &above);
    lo = above ? u : lo; hi = above ? hi : u;
    u += du;
    bad |= !((u >= lo) & (u <= hi)) | !(fabs(du) <= PG_BACHELIER_STEP_TOLERANCE * u);
    *fallback = bad;
    return u;
}

#endif
