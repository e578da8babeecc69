/* The reference for the European kernel's speed: price + delta, gamma, vega, theta, rho of
 * Black-Scholes-Merton options, as a plain C loop over the rows with glibc's vector math.
 *
 * What a careful C programmer writes without our kernel's structure: one pass, one output
 * array per measure, `#pragma omp simd` so that gcc calls libmvec's exp/log/erfc (compiled
 * with -O3 -march=native -fno-math-errno -fopenmp-simd, the kernels' flags). No input checks
 * and no per-row status: our kernel does both, so this loop is a floor, not a rival.
 * bench/test_bench_black.py compiles it at run time (a build product, never committed) and
 * times it against pricegrid.ext.black.price_batch on the same rows, in the same run. */
#include <math.h>

/* glibc's <math.h> declares the libmvec variants only under -ffast-math (which deletes NaN
 * checks); without it, a C programmer declares them to get vector exp/log/erfc. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__FAST_MATH__)
extern double exp(double) __attribute__((__simd__("notinbranch")));
extern double log(double) __attribute__((__simd__("notinbranch")));
#if __GLIBC_PREREQ(2, 35)
extern double erfc(double) __attribute__((__simd__("notinbranch")));
#endif
#endif

void plain_bsm(long n, const int *restrict type, const double *restrict strike, const double *restrict time,
               const double *restrict spot, const double *restrict rate, const double *restrict dividend,
               const double *restrict vol, double *restrict price, double *restrict delta,
               double *restrict gamma, double *restrict vega, double *restrict theta, double *restrict rho)
{
#pragma omp simd
    for (long i = 0; i < n; i++) {
        const double w = type[i] == 1 ? 1.0 : -1.0;
        const double t = time[i], s = spot[i], k = strike[i], r = rate[i], q = dividend[i], v = vol[i];
        const double sqrt_t = sqrt(t);
        const double sd = v * sqrt_t;
        const double df = exp(-r * t), dq = exp(-q * t);
        const double d1 = (log(s / k) + (r - q) * t) / sd + 0.5 * sd;
        const double d2 = d1 - sd;
        const double n1 = 0.5 * erfc(-w * d1 * M_SQRT1_2), n2 = 0.5 * erfc(-w * d2 * M_SQRT1_2);
        const double pdf = exp(-0.5 * d1 * d1) * 0.39894228040143267794;
        const double s_dq = s * dq, k_df = k * df;
        price[i] = w * (s_dq * n1 - k_df * n2);
        delta[i] = w * dq * n1;
        gamma[i] = dq * pdf / (s * sd);
        vega[i] = s_dq * pdf * sqrt_t;
        theta[i] = -0.5 * s_dq * pdf * v / sqrt_t + w * (q * s_dq * n1 - r * k_df * n2);
        rho[i] = w * t * k_df * n2;
    }
}
