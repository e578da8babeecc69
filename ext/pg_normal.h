/* Normal distribution helpers to full double precision, pointwise and branch-light.
 *
 * 1. pg_erfcx(x) = exp(x^2) erfc(x): W. J. Cody's rational Chebyshev approximations,
 *    "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969)
 *    631-638, in the three ranges of his SPECFUN routine CALERF (1990, revised 1993):
 *      |x| <= 0.46875       erf(x) = x P4(x^2)/Q4(x^2), then erfcx = exp(x^2)(1 - erf)
 *      0.46875 < |x| <= 4   erfcx(|x|) = P8(|x|)/Q8(|x|)
 *      |x| > 4              erfcx(|x|) = (1/sqrt(pi) - z P5(z)/Q5(z)) / |x|,  z = 1/x^2
 *    and for x < 0 the reflection erfcx(x) = 2 exp(x^2) - erfcx(-x), with exp(x^2) taken
 *    as exp(a^2) exp((|x|-a)(|x|+a)), a = |x| rounded down to 1/16 (a^2 is exact), so that
 *    the rounding of x^2 does not cost relative accuracy. Relative error about 1e-16.
 * 2. pg_erfc, pg_norm_cdf, pg_norm_pdf built on (1) with the same exponent splitting.
 * 3. pg_inverse_norm_cdf(p): M. J. Wichura, "Algorithm AS 241: The percentage points of
 *    the normal distribution", Applied Statistics 37 (1988) 477-484, PPND16 (rational
 *    approximations of degree 7 in three ranges; relative accuracy about 1e-16).
 * The coefficients are the published ones; the code around them is ours.
 */
#ifndef PG_NORMAL_H
#define PG_NORMAL_H

#include <math.h>

/* glibc declares the vector variants (libmvec) of exp, log, ... only under -ffast-math, which
 * we do not use; declare them so that gcc calls them inside `omp simd` loops (legal with
 * -fno-math-errno). Redeclaring with the same attribute elsewhere is harmless. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__FAST_MATH__) \
    && !defined(PG_NO_LIBMVEC)
#if __GLIBC_PREREQ(2, 22)
extern double exp(double) __attribute__((__simd__("notinbranch")));
extern double log(double) __attribute__((__simd__("notinbranch")));
#endif
#endif

/* Functions called inside `omp simd` loops must be inlined for the loop to vectorise. */
#if defined(__GNUC__)
#define PG_LANE static inline __attribute__((always_inline))
#else
#define PG_LANE static inline
#endif

#define PG_SQRT_2PI          2.5066282746310002     /* sqrt(2 pi) */
#define PG_INV_SQRT_2PI      0.3989422804014327     /* 1/sqrt(2 pi) */
#define PG_SQRT_PI_OVER_2    1.2533141373155001     /* sqrt(pi/2) */
#define PG_INV_SQRT_PI       0.5641895835477563     /* 1/sqrt(pi) */
#define PG_SQRT1_2           0.7071067811865476     /* 1/sqrt(2) */

/* exp(-y*y) for y >= 0 without the relative error |y|^2 eps of rounding y*y. */
static inline double pg_exp_minus_square(double y)
{
    double a = floor(y * 16.0) * 0.0625;
    return exp(-a * a) * exp(-(y - a) * (y + a));
}

/* exp(y*y), same splitting. */
static inline double pg_exp_square(double y)
{
    double a = floor(fabs(y) * 16.0) * 0.0625;
    double ay = fabs(y);
    return exp(a * a) * exp((ay - a) * (ay + a));
}

/* erf(x) for |x| <= 0.46875 (Cody's first range). */
PG_LANE double pg_erf_small(double x)
{
    double z = x * x;
    double num = (((0.185777706184603153 * z + 3.1611237438705656) * z + 113.864154151050156) * z
                  + 377.485237685302021) * z + 3209.37758913846947;
    double den = (((z + 23.6012909523441209) * z + 244.024637934444173) * z
                  + 1282.61652607737228) * z + 2844.23683343917062;
    return x * num / den;
}

/* erfcx(y) on Cody's second range, 0.46875 < y <= 4. */
PG_LANE double pg_erfcx_mid(double y)
{
    double num = (((((((2.15311535474403846e-8 * y + 0.564188496988670089) * y
                       + 8.88314979438837594) * y + 66.1191906371416295) * y
                     + 298.635138197400131) * y + 881.95222124176909) * y
                   + 1712.04761263407058) * y + 2051.07837782607147) * y
                 + 1230.33935479799725;
    double den = (((((((y + 15.7449261107098347) * y + 117.693950891312499) * y
                      + 537.181101862009858) * y + 1621.38957456669019) * y
                    + 3290.79923573345963) * y + 4362.61909014324716) * y
                  + 3439.36767414372164) * y + 1230.33935480374942;
    return num / den;
}

/* erfcx(y) on Cody's third range, y > 4. */
PG_LANE double pg_erfcx_tail(double y)
{
    double z = 1.0 / (y * y);
    double num = ((((0.0163153871373020978 * z + 0.305326634961232344) * z
                    + 0.360344899949804439) * z + 0.125781726111229246) * z
                  + 0.0160837851487422766) * z + 6.58749161529837803e-4;
    double den = ((((z + 2.56852019228982242) * z + 1.87295284992346047) * z
                   + 0.527905102951428412) * z + 0.0605183413124413191) * z
                 + 0.00233520497626869185;
    return (PG_INV_SQRT_PI - z * num / den) / y;
}

/* erfcx(y) for y > 0.46875 (Cody's second and third ranges). */
static inline double pg_erfcx_large(double y)
{
    return y <= 4.0 ? pg_erfcx_mid(y) : pg_erfcx_tail(y);
}

/* erfcx(y) for 0 <= y <= 1e200 without branches, for `omp simd` loops: the three ranges'
 * numerators and denominators are evaluated and one quotient taken (one division, not five:
 * the third range is rewritten over w = y^2, its correction z P(z)/Q(z), z = 1/w, being
 * P*(w)/(w Q*(w)) with the coefficients reversed, and w capped at 1e16 where that correction
 * is below 1e-17 of the result). The same values as pg_erfcx to within rounding. */
PG_LANE double pg_erfcx_nonneg(double y)
{
    double w = y * y;
    /* range 1: exp(w) (1 - erf(y)) = exp(w) (d1 - y n1) / d1 */
    double n1 = (((0.185777706184603153 * w + 3.1611237438705656) * w + 113.864154151050156) * w
                 + 377.485237685302021) * w + 3209.37758913846947;
    double d1 = (((w + 23.6012909523441209) * w + 244.024637934444173) * w
                 + 1282.61652607737228) * w + 2844.23683343917062;
    double N1 = exp(w) * (d1 - y * n1);
    /* range 2 */
    double n2 = (((((((2.15311535474403846e-8 * y + 0.564188496988670089) * y
                      + 8.88314979438837594) * y + 66.1191906371416295) * y
                    + 298.635138197400131) * y + 881.95222124176909) * y
                  + 1712.04761263407058) * y + 2051.07837782607147) * y
                + 1230.33935479799725;
    double d2 = (((((((y + 15.7449261107098347) * y + 117.693950891312499) * y
                     + 537.181101862009858) * y + 1621.38957456669019) * y
                   + 3290.79923573345963) * y + 4362.61909014324716) * y
                 + 3439.36767414372164) * y + 1230.33935480374942;
    /* range 3: (1/sqrt(pi) - P*(w)/(w Q*(w))) / y */
    double wc = w < 1e16 ? w : 1e16;
    double n3 = ((((6.58749161529837803e-4 * wc + 0.0160837851487422766) * wc
                   + 0.125781726111229246) * wc + 0.360344899949804439) * wc
                 + 0.305326634961232344) * wc + 0.0163153871373020978;
    double d3 = wc * (((((0.00233520497626869185 * wc + 0.0605183413124413191) * wc
                         + 0.527905102951428412) * wc + 1.87295284992346047) * wc
                       + 2.56852019228982242) * wc + 1.0);
    double N3 = PG_INV_SQRT_PI * d3 - n3, D3 = y * d3;
    int r1 = y <= 0.46875, r2 = y <= 4.0;
    double N = r1 ? N1 : (r2 ? n2 : N3);
    double D = r1 ? d1 : (r2 ? d2 : D3);
    return N / D;
}

/* Scaled complementary error function exp(x^2) erfc(x); +inf below about -26.6. */
static inline double pg_erfcx(double x)
{
    double y = fabs(x);
    if (y <= 0.46875)
        return exp(x * x) * (1.0 - pg_erf_small(x));
    double r = pg_erfcx_large(y);
    if (x > 0.0)
        return r;
    /* exp(x^2): the split costs a second exp and matters only where x^2 eps > eps */
    return 2.0 * (y < 1.0 ? exp(y * y) : pg_exp_square(y)) - r;
}

/* Complementary error function. */
static inline double pg_erfc(double x)
{
    double y = fabs(x);
    if (y <= 0.46875)
        return 1.0 - pg_erf_small(x);
    double r = pg_erfcx_large(y) * pg_exp_minus_square(y);
    return x > 0.0 ? r : 2.0 - r;
}

/* exp(-z*z/2), with the same splitting as pg_exp_minus_square. */
static inline double pg_exp_minus_half_square(double z)
{
    double y = fabs(z);
    double a = floor(y * 16.0) * 0.0625;
    return exp(-0.5 * a * a) * exp(-0.5 * (y - a) * (y + a));
}

/* Standard normal density. */
static inline double pg_norm_pdf(double z)
{
    return PG_INV_SQRT_2PI * pg_exp_minus_half_square(z);
}

/* Standard normal distribution function Phi(z) = erfc(-z/sqrt(2))/2, with exp(-z^2/2)
 * split on z itself so that the rounding of z/sqrt(2) does not cost relative accuracy in
 * the far lower tail. */
static inline double pg_norm_cdf(double z)
{
    double y = -PG_SQRT1_2 * z;
    if (fabs(y) <= 0.46875)
        return 0.5 - 0.5 * pg_erf_small(y);
    double r = 0.5 * pg_erfcx_large(fabs(y)) * pg_exp_minus_half_square(z);
    return z < 0.0 ? r : 1.0 - r;
}

#include "pg_inverse_normal.h"  /* pg_inverse_norm_cdf (AS 241) */

/* Inverse of Phi for 0 < p <= 1/2 given also lp = log(p), without branches (all three AS 241
 * ranges evaluated, one selected), for `omp simd` loops. */
PG_LANE double pg_inverse_norm_cdf_lower(double p, double lp)
{
    double q = p - 0.5;
    double r = 0.180625 - q * q;
    double num = ((((((2509.0809287301226727 * r + 33430.575583588128105) * r
                      + 67265.770927008700853) * r + 45921.953931549871457) * r
                    + 13731.693765509461125) * r + 1971.5909503065514427) * r
                  + 133.14166789178437745) * r + 3.387132872796366608;
    double den = ((((((5226.495278852854561 * r + 28729.085735721942674) * r
                      + 39307.89580009271061) * r + 21213.794301586595867) * r
                    + 5394.1960214247511077) * r + 687.1870074920579083) * r
                  + 42.313330701600911252) * r + 1.0;
    double central = q * num / den;
    double w = sqrt(-lp);
    double u = w - 1.6;
    double cn = ((((((7.7454501427834140764e-4 * u + 0.0227238449892691845833) * u
                     + 0.24178072517745061177) * u + 1.27045825245236838258) * u
                   + 3.64784832476320460504) * u + 5.7694972214606914055) * u
                 + 4.6303378461565452959) * u + 1.42343711074968357734;
    double cd = ((((((1.05075007164441684324e-9 * u + 5.475938084995344946e-4) * u
                     + 0.0151986665636164571966) * u + 0.14810397642748007459) * u
                   + 0.68976733498510000455) * u + 1.6763848301838038494) * u
                 + 2.05319162663775882187) * u + 1.0;
    double v = w - 5.0;
    double en = ((((((2.01033439929228813265e-7 * v + 2.71155556874348757815e-5) * v
                     + 0.0012426609473880784386) * v + 0.026532189526576123093) * v
                   + 0.29656057182850489123) * v + 1.7848265399172913358) * v
                 + 5.4637849111641143699) * v + 6.6579046435011037772;
    double ed = ((((((2.04426310338993978564e-15 * v + 1.4215117583164458887e-7) * v
                     + 1.8463183175100546818e-5) * v + 7.868691311456132591e-4) * v
                   + 0.0148753612908506148525) * v + 0.13692988092273580531) * v
                 + 0.59983220655588793769) * v + 1.0;
    double tail = w <= 5.0 ? cn / cd : en / ed;
    return q >= -0.425 ? central : -tail;
}

#endif
