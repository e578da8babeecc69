/* Single barriers and one-touch / no-touch options under Black-Scholes-Merton: the pointwise
 * formulas, written once; the finite-difference Greeks shared by every barrier family; the
 * SIMD block loops. Double barriers: pg_double_barrier.h; European digitals: pg_digital.h.
 *
 * 1. Pointwise (used by the block loops, inlined, and declared in barrier.pxd):
 *      pg_barrier_check / pg_touch_check   status bits of one row
 *      pg_barrier_value / pg_touch_value   price of one row whose status is 0 (no checks;
 *                                          a bad row gets some number, which the caller
 *                                          replaces by NaN)
 *    Columns of a row, in the order of the batch entry points:
 *      barrier: barrier_type, option_type | K, T, H, R, dt | S, r, q, vol
 *      touch:   touch_type, direction, payment | cash, H, T, dt | S, r, q, vol
 * 2. Block loops: a batch is cut into blocks of PG_BARRIER_BLOCK rows. A block first points
 *    at its rows of every column (a length-1 column is repeated into a stack buffer, so every
 *    loop reads contiguous data; a block that is not a whole number of vectors is padded
 *    with copies of its last row: pg_load_cols_padded), then one `omp simd` loop computes
 *    status, price and the finite-difference steps of each row, then pg_fd_measures
 *    evaluates the price at the bumped inputs each requested measure needs (one `omp simd`
 *    loop per bumped point), then failed rows are NaN-ed (pg_fd_finish). Every row goes
 *    through the same vector code, so its results depend only on its own inputs: not on
 *    its block's other rows, its place in the batch or the thread split (bit for bit).
 * 3. Numerics. b = r - q, s = vol sqrt(T) (floored at DBL_MIN), mu = (b - vol^2/2)/vol^2,
 *    lambda = sqrt(mu^2 + 2 r/vol^2), phi = +1 call / -1 put, eta = +1 down / -1 up,
 *    DF = exp(-rT), Sq = S exp(-qT):
 *      x1 = ln(S/K)/s + (1 + mu) s       x2 = ln(S/H)/s + (1 + mu) s
 *      y1 = ln(H^2/(S K))/s + (1 + mu) s y2 = ln(H/S)/s + (1 + mu) s
 *      z  = ln(H/S)/s + lambda s
 *      A = phi (Sq N(phi x1) - K DF N(phi (x1 - s)))
 *      B = phi (Sq N(phi x2) - K DF N(phi (x2 - s)))
 *      C = phi (Sq (H/S)^(2 mu + 2) N(eta y1) - K DF (H/S)^(2 mu) N(eta (y1 - s)))
 *      D = phi (Sq (H/S)^(2 mu + 2) N(eta y2) - K DF (H/S)^(2 mu) N(eta (y2 - s)))
 *      E = R DF (N(eta (x2 - s)) - (H/S)^(2 mu) N(eta (y2 - s)))
 *      F = R ((H/S)^(mu + lambda) N(eta z) + (H/S)^(mu - lambda) N(eta (z - 2 lambda s)))
 *    (E. Reiner and M. Rubinstein, "Breaking down the barriers", Risk 4(8), 1991, pp. 28-35,
 *    in the notation of E. G. Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed.,
 *    McGraw-Hill 2007, sec. 4.17.1.) Each (type, call/put, K >= H or K < H) is a fixed sum of
 *    A..D (pg_barrier_knock_in, Haug's table in 4.17.1), plus E for knock-ins (rebate paid at
 *    expiry if never hit: E = R DF Q(no hit)) or F for knock-outs (rebate paid at the hit:
 *    F = R E[exp(-r tau); tau <= T]), as QuantLib's AnalyticBarrierEngine.
 *    One-touch / no-touch (Reiner-Rubinstein binary barriers, Haug sec. 4.19.5 cases 1, 2,
 *    5, 6, 9, 10, cash Q): one-touch paid at the hit = F with R = Q; one-touch paid at
 *    expiry = Q DF (N(-eta (x2 - s)) + (H/S)^(2 mu) N(eta (y2 - s))) (Haug's B2 + B4 with
 *    phi = -eta); no-touch = E with R = Q (Haug's B2 - B4 with phi = eta).
 *    Products (H/S)^a N(x) are computed as pg_exp_ncdf(a ln(H/S), x) = e^a N(x), which
 *    stays finite when e^a overflows while N(x) underflows (tiny vol, large carry): below
 *    x = -30 it uses N(x) = n(x)/(-x) (1 - 1/x^2 + 3/x^4 - ... + 10395/x^12) (the
 *    asymptotic series; next term < 3e-16 relative there) and folds -x^2/2 into the
 *    exponent. Each such product is a bounded expectation, so no overflow remains. exp and
 *    N themselves stay on glibc's fast vector path (pg_exp, pg_ncdf: results below 3e-308
 *    and 3e-296 are clamped to those, which no price can notice).
 *    Discrete monitoring (dt > 0, every dt years): the continuous formulas with the barrier
 *    moved away from spot, H exp(-eta beta vol sqrt(dt)), beta = -zeta(1/2)/sqrt(2 pi)
 *    = 0.5825971579... (M. Broadie, P. Glasserman and S. Kou, "A continuity correction for
 *    discrete barrier options", Math. Finance 7(4), 1997, pp. 325-349; the paper rounds
 *    beta to 0.5826). Applied to the whole price, rebates and touch payments included
 *    (for those the correction is the same heuristic, not a theorem), and whatever T/dt.
 *    T = 0: knock-out = intrinsic (spot on the live side, so not hit), knock-in = R;
 *    one-touch 0, no-touch Q.
 *    Spot at the barrier (S == H, exactly): the barrier is touched now, whatever the
 *    monitoring (the trigger is "at or beyond", observed at valuation). A knock-in is then
 *    the vanilla (A, its rebate no longer due), a knock-out its rebate R paid now (at the hit,
 *    undiscounted; 0 without one); a one-touch pays Q now (at hit) or Q DF (at expiry), a
 *    no-touch 0. The state is the row's, not the bump's: the Greeks of a touched row are
 *    those of its vanilla (knock-in), of Q DF (one-touch at expiry: rho and theta) or 0.
 *    Under continuous monitoring this is the limit S -> H of the formulas (a path started an
 *    epsilon from H hits it at once); tests/ext/test_barrier_kernel.py checks both. Spot
 *    beyond the barrier stays refused (PG_BAD_BARRIER): it says that the barrier type or
 *    level is wrong, not that the barrier was touched (a knock-out with a rebate would
 *    otherwise price a typo silently). Unless the batch says `beyond_touched` (pg_cols):
 *    then the spot is not the trade's own input but a move of it (a scenario's), which
 *    crossed the barrier, so the barrier was touched on the way; such a row is priced as
 *    touched, exactly as one at the barrier (same values, same Greeks).
 *    Limitation: lambda is real only when mu^2 + 2 r/vol^2 >= 0 (always for r >= 0); a
 *    knock-out with R > 0 or a one-touch paid at the hit outside that (negative rates) has no
 *    closed form here and gets PG_NOT_FINITE (as QuantLib, which returns NaN there).
 * 4. Greeks: central finite differences of the closed form inside the kernel
 *    (pg_fd_measures), per row, with steps proportional to the scale on which the price
 *    varies: u = min(s, 1/(1 + |mu| + lambda)) in log-spot (the powers (H/S)^(mu +- lambda)
 *    vary on 1/|mu +- lambda|; double barriers: pg_double_barrier_scale), floored at 1e-6;
 *      spot  h = S u e     vol h = vol e     time h = T e
 *      rate and dividend yield  h = e max(min(vol^2, 1/T), 1e-4)
 *    with e = PG_FD_EPS1 (1e-4) for first derivatives (delta, vega, theta, rho,
 *    dividend rho; truncation ~e^2/6 ~ 2e-9 relative, rounding ~eps/e ~ 2e-12) and
 *    e = PG_FD_EPS2 (2e-4) for second and mixed ones (gamma, volga: 3 points; vanna,
 *    charm: 4 points; truncation ~e^2/12 ~ 3e-9, rounding ~eps/e^2 ~ 6e-9, both times the
 *    curvature and the cancellation of the formula's terms; 5e-4 gave 3x larger errors on
 *    vanna). Measured against mpmath derivatives on random rows (tests/ext/
 *    test_barrier_kernel.py), in units of each measure's natural size (e.g. scale/(S u)
 *    for delta): worst 4e-9 for first derivatives, 2.5e-7 for second ones. Theta bumps
 *    T down and up (the option ages, dt and the barriers stay); charm = -d2V/dS dT.
 *    T = 0 rows: delta is that of the payoff (knock-out phi step, else 0), every other
 *    Greek 0.
 * 5. Status: PG_BAD_VARIANT for an unknown barrier/touch type, direction or payment (and a
 *    no-touch not paid at expiry); PG_BAD_OPTION_TYPE; the usual market bits; PG_BAD_BARRIER
 *    (H not finite, not > 0, or beyond the spot: down H > S, up H < S, the side only
 *    checked against a valid spot and type and without `beyond_touched`; H == S is
 *    touched, note 3); PG_BAD_REBATE (R or Q not finite or
 *    < 0); PG_BAD_MONITORING (dt not finite or < 0). Valid rows whose price or a requested
 *    measure is not finite get PG_NOT_FINITE. Every output of a failed row is NaN.
 */
#ifndef PG_BARRIER_H
#define PG_BARRIER_H

#include "pg_black.h"   /* libmvec declarations, pg_norm_cdf, PG_INLINE, Measure codes, block helpers */

/* Barrier type codes. */
#define PG_BARRIER_DOWN_IN   1
#define PG_BARRIER_DOWN_OUT  2
#define PG_BARRIER_UP_IN     3
#define PG_BARRIER_UP_OUT    4

/* One-touch / no-touch codes. */
#define PG_TOUCH_ONE         1
#define PG_TOUCH_NO          2
#define PG_DIRECTION_DOWN    1
#define PG_DIRECTION_UP      2
#define PG_PAY_AT_HIT        1
#define PG_PAY_AT_EXPIRY     2

#define PG_BARRIER_BLOCK 32

/* beta = -zeta(1/2)/sqrt(2 pi) of Broadie-Glasserman-Kou */
#define PG_BGK_BETA 0.58259715793901067

#define PG_FD_EPS1 1e-4
#define PG_FD_EPS2 2e-4
#define PG_FD_UMIN 1e-6

#define PG_SQRT_2PI 2.50662827463100050242

/* ------------------------------------------------------------------ shared pointwise */

/* c ? a : b through the bit patterns. gcc sees no select in it, so it cannot move a call
 * of exp or erfc across it: for exp(c ? k : x) with a constant k it evaluates exp(x) in
 * every lane and selects exp(k) afterwards, and for exp(c ? x - y : x) it calls exp twice. */
PG_INLINE double pg_bsel(int c, double a, double b)
{
    union { double d; long long i; } ua = {a}, ub = {b}, r;
    const long long mask = -(long long)(c != 0);
    r.i = (ua.i & mask) | (ub.i & ~mask);
    return r.d;
}

/* exp and N with their arguments clamped to where glibc's vector exp and erfc keep their
 * fast path: exp below -708 (subnormal results) and erfc above 26 cost 15 to 75 ns per lane
 * instead of 1 to 2 ns (measured on the development VM; a double-barrier batch ran 1.6
 * times slower unclamped). So exp(a) is at least exp(-708) = 3.3e-308 and N(x) at least
 * erfc(26)/2 = 2.8e-296, within that of the exact values: far below anything a price is
 * made of. A NaN passes through (the comparisons are false for it). */
#define PG_EXP_MIN (-708.0)
#define PG_ERFC_MAX 26.0
PG_INLINE double pg_exp(double a) { return exp(pg_bsel(a < PG_EXP_MIN, PG_EXP_MIN, a)); }
PG_INLINE double pg_ncdf(double x)
{
    const double z = -x * PG_SQRT1_2;
    return 0.5 * erfc(pg_bsel(z > PG_ERFC_MAX, PG_ERFC_MAX, z));
}
PG_INLINE double pg_npdf(double x) { return PG_INV_SQRT_2PI * pg_exp(-0.5 * x * x); }

/* Status bits of the market columns every barrier family has. */
PG_INLINE int pg_check_market(double T, double S, double r, double q, double vol)
{
    int s = 0;
    s |= (T >= 0.0 && T <= PG_DBL_MAX) ? 0 : PG_BAD_TIME;
    s |= (S > 0.0 && S <= PG_DBL_MAX) ? 0 : PG_BAD_UNDERLYING;
    s |= pg_finite(r) ? 0 : PG_BAD_RATE;
    s |= pg_finite(q) ? 0 : PG_BAD_DIVIDEND;
    s |= pg_check_vol(vol);
    return s;
}

PG_INLINE int pg_check_monitoring(double dt)
{
    return (dt >= 0.0 && dt <= PG_DBL_MAX) ? 0 : PG_BAD_MONITORING;
}

/* H finite, > 0 and not beyond a valid spot (down: H <= S, up: H >= S; H == S is touched);
 * beyond_touched: any side (a moved spot beyond H touched it, note 3). */
PG_INLINE int pg_check_barrier_side(double H, double S, int spot_ok, int side_known, int down,
                                    int beyond_touched)
{
    int ok = (H > 0.0 && H <= PG_DBL_MAX);
    ok &= (spot_ok && side_known && !beyond_touched) ? (down ? (H <= S) : (H >= S)) : 1;
    return ok ? 0 : PG_BAD_BARRIER;
}

/* Touched, from x = the spot's distance into the live side (> 0 live, 0 at the barrier,
 * < 0 beyond): x == 0, or x <= 0 with beyond_touched. One comparison: an `|` of two made
 * gcc narrow the flag to one bit, which it cannot vectorise (the block loops ran scalar, a
 * single-barrier price 4x slower). */
PG_INLINE int pg_touched_at(double x, int beyond_touched)
{
    return (beyond_touched ? ((x > 0.0) ? x : 0.0) : x) == 0.0;
}

/* The barrier is touched now: spot exactly at it, or beyond it with beyond_touched (note 3).
 * (S - H == 0 exactly when S == H.) */
PG_INLINE int pg_touched(double H, double S, int down, int beyond_touched)
{
    return pg_touched_at(down ? S - H : H - S, beyond_touched);
}

/* e^a N(x) without overflow of e^a when N(x) underflows (see the note, 3.). */
PG_INLINE double pg_exp_ncdf(double a, double x)
{
    const int tail = (x < -30.0);
    const double rx = 1.0 / (tail ? x : -30.0);   /* one division (vdivpd is slow) */
    const double u = rx * rx;
    const double series = 1.0 + u * (-1.0 + u * (3.0 + u * (-15.0 + u * (105.0 + u * (-945.0 + u * 10395.0)))));
    const double mills = -series * rx * PG_INV_SQRT_2PI;
    const double e = pg_exp(pg_bsel(tail, a - 0.5 * x * x, a));
    return e * (tail ? mills : pg_ncdf(pg_bsel(tail, -30.0, x)));
}

/* The Reiner-Rubinstein quantities of one row (H already moved for discrete monitoring). */
typedef struct {
    double sd, mu, lam, DF, Sq, lhs, x2, y2, z;
} pg_rr;

PG_INLINE pg_rr pg_rr_of(double T, double S, double r, double q, double vol, double H)
{
    pg_rr t;
    const double v2 = vol * vol;
    const double sd0 = vol * sqrt(T);
    t.sd = (sd0 > PG_DBL_MIN) ? sd0 : PG_DBL_MIN;
    t.mu = (r - q - 0.5 * v2) / v2;
    t.lam = sqrt(t.mu * t.mu + 2.0 * r / v2);
    t.DF = pg_exp(-r * T);
    t.Sq = S * pg_exp(-q * T);
    t.lhs = log(H / S);
    const double m1s = (1.0 + t.mu) * t.sd;
    t.x2 = -t.lhs / t.sd + m1s;
    t.y2 = t.lhs / t.sd + m1s;
    t.z = t.lhs / t.sd + t.lam * t.sd;
    return t;
}

/* Q(no hit before T) DF: E / R, Haug's B2 - B4 (eta = +1 down, -1 up). */
PG_INLINE double pg_rr_no_hit(const pg_rr *t, double eta)
{
    return t->DF * (pg_ncdf(eta * (t->x2 - t->sd))
                    - pg_exp_ncdf(2.0 * t->mu * t->lhs, eta * (t->y2 - t->sd)));
}

/* Q(hit before T) DF: Haug's B2 + B4 with phi = -eta. */
PG_INLINE double pg_rr_hit_at_expiry(const pg_rr *t, double eta)
{
    return t->DF * (pg_ncdf(-eta * (t->x2 - t->sd))
                    + pg_exp_ncdf(2.0 * t->mu * t->lhs, eta * (t->y2 - t->sd)));
}

/* E[exp(-r tau); tau <= T]: F / R, Haug's A5 / K. */
PG_INLINE double pg_rr_hit_at_hit(const pg_rr *t, double eta)
{
    return pg_exp_ncdf((t->mu + t->lam) * t->lhs, eta * t->z)
           + pg_exp_ncdf((t->mu - t->lam) * t->lhs, eta * (t->z - 2.0 * t->lam * t->sd));
}

/* The barrier moved away from spot for monitoring every dt years (dt = 0: H itself). */
PG_INLINE double pg_bgk_barrier(double H, double dt, double vol, int down)
{
    const double shift = PG_BGK_BETA * vol * sqrt(dt);
    return H * exp(down ? -shift : shift);
}

/* Minimum and maximum that vectorise (fmin/fmax calls do not, without -ffast-math). */
PG_INLINE double pg_min(double a, double b) { return (a < b) ? a : b; }
PG_INLINE double pg_max(double a, double b) { return (a > b) ? a : b; }

/* c * x, or 0 when c == 0 (keeps an unused non-finite term out of a sum). */
PG_INLINE double pg_term(double c, double x) { return (c != 0.0) ? c * x : 0.0; }

/* ------------------------------------------------------------------ single barriers */

PG_INLINE int pg_barrier_check(int btype, int option_type, double K, double T, double H,
                               double R, double dt, double S, double r, double q, double vol,
                               int beyond_touched)
{
    int s = pg_check_market(T, S, r, q, vol);
    const int type_ok = (btype >= PG_BARRIER_DOWN_IN && btype <= PG_BARRIER_UP_OUT);
    const int down = (btype == PG_BARRIER_DOWN_IN || btype == PG_BARRIER_DOWN_OUT);
    s |= type_ok ? 0 : PG_BAD_VARIANT;
    s |= (option_type == PG_CALL || option_type == PG_PUT) ? 0 : PG_BAD_OPTION_TYPE;
    s |= (K > 0.0 && K <= PG_DBL_MAX) ? 0 : PG_BAD_STRIKE;
    s |= pg_check_barrier_side(H, S, !(s & PG_BAD_UNDERLYING), type_ok, down, beyond_touched);
    s |= (R >= 0.0 && R <= PG_DBL_MAX) ? 0 : PG_BAD_REBATE;
    s |= pg_check_monitoring(dt);
    return s;
}

/* Haug's table (2nd ed. 4.17.1) of the knock-ins, without rebate; each knock-out is the
 * vanilla A minus its knock-in (in-out parity, which the table satisfies term by term):
 *      down-in  call K >= H: C              down-in  call K <  H: A - B + D
 *      down-in  put  K >= H: B - C + D      down-in  put  K <  H: A
 *      up-in    call K >= H: A              up-in    call K <  H: B - C + D
 *      up-in    put  K >= H: A - B + D      up-in    put  K <  H: C
 * i.e. with beyond = (K >= H for down, K < H for up) and phi eta = +1 (down call, up put)
 * or -1 (down put, up call):
 *      phi eta = +1:  beyond ? C : A - B + D        phi eta = -1:  beyond ? B - C + D : A
 * (written as selects, not a table lookup, so that the row loops vectorise). */
PG_INLINE double pg_barrier_knock_in(double phieta, int beyond, double A, double B, double C,
                                     double D)
{
    const double same = beyond ? C : (A - B) + D;
    const double other = beyond ? (B - C) + D : A;
    return (phieta > 0.0) ? same : other;
}

/* The price of one row whose status is 0; `touched`: the barrier was hit (note 3). */
PG_INLINE double pg_barrier_value(int btype, int option_type, double K, double T, double H,
                                  double R, double dt, double S, double r, double q, double vol,
                                  int touched)
{
    const int in = (btype == PG_BARRIER_DOWN_IN || btype == PG_BARRIER_UP_IN);
    const int down = (btype <= PG_BARRIER_DOWN_OUT);
    const double phi = (option_type == PG_PUT) ? -1.0 : 1.0;
    const double eta = down ? 1.0 : -1.0;
    const double Hm = pg_bgk_barrier(H, dt, vol, down);
    const pg_rr t = pg_rr_of(T, S, r, q, vol, Hm);
    const double KD = K * t.DF;
    const double lsk = log(S / K);
    const double m1s = (1.0 + t.mu) * t.sd;
    const double x1 = lsk / t.sd + m1s;
    const double y1 = (2.0 * t.lhs + lsk) / t.sd + m1s;
    const double a2mu = 2.0 * t.mu * t.lhs;
    const double a2mu2 = a2mu + 2.0 * t.lhs;

    const double A = phi * (t.Sq * pg_ncdf(phi * x1) - KD * pg_ncdf(phi * (x1 - t.sd)));
    const double B = phi * (t.Sq * pg_ncdf(phi * t.x2) - KD * pg_ncdf(phi * (t.x2 - t.sd)));
    const double C = phi * (t.Sq * pg_exp_ncdf(a2mu2, eta * y1)
                            - KD * pg_exp_ncdf(a2mu, eta * (y1 - t.sd)));
    const double D = phi * (t.Sq * pg_exp_ncdf(a2mu2, eta * t.y2)
                            - KD * pg_exp_ncdf(a2mu, eta * (t.y2 - t.sd)));
    const double rebate = in ? R * pg_rr_no_hit(&t, eta) : R * pg_rr_hit_at_hit(&t, eta);

    const int beyond = down ? (K >= Hm) : (K < Hm);
    const double vin = pg_barrier_knock_in(phi * eta, beyond, A, B, C, D);
    double v = in ? vin : A - vin;
    v += (R != 0.0) ? rebate : 0.0;

    const double intrinsic = pg_max(phi * (S - K), 0.0);
    const double live = (T == 0.0) ? (in ? R : intrinsic) : v;
    const double hit = in ? ((T == 0.0) ? intrinsic : A) : R;
    return touched ? hit : live;
}

/* d(price)/dS at T = 0 (the payoff's slope; half at S == K): the vanilla's for a live
 * knock-out and a touched knock-in, else 0. */
PG_INLINE double pg_barrier_expiry_delta(int btype, int option_type, double K, double S, int touched)
{
    /* in = the odd codes (down-in 1, up-in 3), touched 0 or 1: integer arithmetic, not an
     * `||` of comparisons, which gcc narrowed to one bit and then could not vectorise */
    const int in = btype & 1;
    const double phi = (option_type == PG_PUT) ? -1.0 : 1.0;
    const double step = (phi * (S - K) > 0.0) ? 1.0 : ((S == K) ? 0.5 : 0.0);
    return pg_bsel((in ^ touched) == 0, phi * step, 0.0);
}

/* Log-spot scale of the price, for the finite-difference steps (see the note, 4.). */
PG_INLINE double pg_barrier_scale(double T, double r, double q, double vol)
{
    const double v2 = vol * vol;
    const double mu = (r - q - 0.5 * v2) / v2;
    const double l2 = mu * mu + 2.0 * r / v2;
    const double lam = sqrt(l2 > 0.0 ? l2 : 0.0);
    return pg_min(vol * sqrt(T), 1.0 / (1.0 + fabs(mu) + lam));
}

/* ------------------------------------------------------------------ one-touch / no-touch */

PG_INLINE int pg_touch_check(int touch, int direction, int payment, double Q, double H,
                             double T, double dt, double S, double r, double q, double vol,
                             int beyond_touched)
{
    int s = pg_check_market(T, S, r, q, vol);
    const int dir_ok = (direction == PG_DIRECTION_DOWN || direction == PG_DIRECTION_UP);
    int var_ok = (touch == PG_TOUCH_ONE || touch == PG_TOUCH_NO) && dir_ok;
    var_ok &= (touch == PG_TOUCH_ONE) ? (payment == PG_PAY_AT_HIT || payment == PG_PAY_AT_EXPIRY)
                                      : (payment == PG_PAY_AT_EXPIRY);
    s |= var_ok ? 0 : PG_BAD_VARIANT;
    s |= pg_check_barrier_side(H, S, !(s & PG_BAD_UNDERLYING), dir_ok, direction == PG_DIRECTION_DOWN,
                               beyond_touched);
    s |= (Q >= 0.0 && Q <= PG_DBL_MAX) ? 0 : PG_BAD_REBATE;
    s |= pg_check_monitoring(dt);
    return s;
}

/* The price of one row whose status is 0; `touched`: the barrier was hit (note 3). */
PG_INLINE double pg_touch_value(int touch, int direction, int payment, double Q, double H,
                                double T, double dt, double S, double r, double q, double vol,
                                int touched)
{
    const int down = (direction != PG_DIRECTION_UP);
    const double eta = down ? 1.0 : -1.0;
    const double Hm = pg_bgk_barrier(H, dt, vol, down);
    const pg_rr t = pg_rr_of(T, S, r, q, vol, Hm);
    double v;
    if (touch == PG_TOUCH_NO)
        v = pg_rr_no_hit(&t, eta);
    else if (payment == PG_PAY_AT_HIT)
        v = pg_rr_hit_at_hit(&t, eta);
    else
        v = pg_rr_hit_at_expiry(&t, eta);
    const double live = (T == 0.0) ? ((touch == PG_TOUCH_NO) ? Q : 0.0) : Q * v;
    const double hit = (touch == PG_TOUCH_NO) ? 0.0 : ((payment == PG_PAY_AT_HIT) ? Q : Q * t.DF);
    return touched ? hit : live;
}

PG_INLINE double pg_touch_scale(double T, double r, double q, double vol)
{
    return pg_barrier_scale(T, r, q, vol);
}

/* ------------------------------------------------------------------ batch columns */

/* A family's columns: up to 3 int32 code columns and 9 float64 columns, each of length n
 * or 1 (then its bit is set in `broadcast`). */
#define PG_MAX_ICOLS 3
#define PG_MAX_DCOLS 9
#define PG_ICOL_BIT(j) (1 << (j))
#define PG_DCOL_BIT(j) (1 << (PG_MAX_ICOLS + (j)))

typedef struct {
    const int *ic[PG_MAX_ICOLS];
    const double *dc[PG_MAX_DCOLS];
    int ni, nd;        /* columns used */
    int broadcast;
    int beyond_touched;   /* barrier families: a spot beyond a barrier is touched (note 3) */
    ptrdiff_t n;
} pg_cols;

/* A family's block loop: rows [start, start + m) of a batch, m <= PG_BARRIER_BLOCK;
 * out[j * ldo + row] = measures[j] of the row, status[row]; returns the failed rows. */
typedef ptrdiff_t (*pg_block_fn)(const pg_cols *in, ptrdiff_t start, int m, const int *measures,
                                 int k, double *out, ptrdiff_t ldo, int *status);

/* A block's view of the columns (I[j][i], D[j][i] for row start + i). */
typedef struct {
    const int *I[PG_MAX_ICOLS];
    const double *D[PG_MAX_DCOLS];
    PG_ALIGNED int ib[PG_MAX_ICOLS][PG_BARRIER_BLOCK];
    PG_ALIGNED double db[PG_MAX_DCOLS][PG_BARRIER_BLOCK];
} pg_block_cols;

PG_INLINE void pg_load_cols(const pg_cols *in, ptrdiff_t start, int m, pg_block_cols *b)
{
    for (int j = 0; j < in->ni; j++)
        b->I[j] = pg_block_input_i(b->ib[j], in->ic[j], start, m, in->broadcast & PG_ICOL_BIT(j));
    for (int j = 0; j < in->nd; j++)
        b->D[j] = pg_block_input_d(b->db[j], in->dc[j], start, m, in->broadcast & PG_DCOL_BIT(j));
}

/* Vector lanes a block's row count is padded to: 8 doubles (AVX-512; a multiple of AVX2's 4). */
#define PG_LANES 8

/* As pg_load_cols, but a block of m rows that is not a whole number of vectors is padded
 * with copies of its last row up to mc = the next multiple of PG_LANES (all columns are
 * then copied into the block's buffers). Every row is so computed in the vector body of
 * the loops, never in their scalar remainder: a row's results do not depend on where it
 * sits in a batch (a trade priced alone = the same trade in a batch, bit for bit), and a
 * single trade runs at vector speed. Returns mc. */
PG_INLINE int pg_load_cols_padded(const pg_cols *in, ptrdiff_t start, int m, pg_block_cols *b)
{
    const int mc = (m + PG_LANES - 1) / PG_LANES * PG_LANES;
    if (mc == m) {
        pg_load_cols(in, start, m, b);
        return m;
    }
    for (int j = 0; j < in->ni; j++) {
        const int *src = (in->broadcast & PG_ICOL_BIT(j)) ? in->ic[j] : in->ic[j] + start;
        const int step = (in->broadcast & PG_ICOL_BIT(j)) ? 0 : 1;
        for (int i = 0; i < mc; i++) b->ib[j][i] = src[step * (i < m ? i : m - 1)];
        b->I[j] = b->ib[j];
    }
    for (int j = 0; j < in->nd; j++) {
        const double *src = (in->broadcast & PG_DCOL_BIT(j)) ? in->dc[j] : in->dc[j] + start;
        const int step = (in->broadcast & PG_DCOL_BIT(j)) ? 0 : 1;
        for (int i = 0; i < mc; i++) b->db[j][i] = src[step * (i < m ? i : m - 1)];
        b->D[j] = b->db[j];
    }
    return mc;
}

/* ------------------------------------------------------------------ finite differences */

/* Per-row steps: [0] for first derivatives, [1] for second and mixed ones. */
typedef struct {
    PG_ALIGNED double hS[2][PG_BARRIER_BLOCK], hT[2][PG_BARRIER_BLOCK],
        hr[2][PG_BARRIER_BLOCK], hq[2][PG_BARRIER_BLOCK], hv[2][PG_BARRIER_BLOCK];
} pg_fd_steps;

/* The steps of row i (see the note, 4.). u: log-spot scale of the price. */
PG_INLINE void pg_fd_set_steps(pg_fd_steps *st, int i, double S, double T, double vol, double u)
{
    const double uu = (u > PG_FD_UMIN) ? u : PG_FD_UMIN;   /* NaN -> floor too */
    const double sr0 = pg_min(vol * vol, 1.0 / T);          /* T = 0: vol^2 */
    const double sr = (sr0 > 1e-4) ? sr0 : 1e-4;
    st->hS[0][i] = S * uu * PG_FD_EPS1;
    st->hS[1][i] = S * uu * PG_FD_EPS2;
    st->hT[0][i] = T * PG_FD_EPS1;
    st->hT[1][i] = T * PG_FD_EPS2;
    st->hr[0][i] = sr * PG_FD_EPS1;
    st->hr[1][i] = sr * PG_FD_EPS2;
    st->hq[0][i] = sr * PG_FD_EPS1;
    st->hq[1][i] = sr * PG_FD_EPS2;
    st->hv[0][i] = vol * PG_FD_EPS1;
    st->hv[1][i] = vol * PG_FD_EPS2;
}

/* A family's price at bumped inputs for rows 0..m-1 of its block:
 * v[i] = V(S + kS hS, T + kT hT, r + kr hr, q + kq hq, vol + kv hv), steps of `order`. */
typedef void (*pg_fd_eval_fn)(const void *ctx, int m, int order, double kS, double kT,
                              double kr, double kq, double kv, double *v);

/* out[j * ldo + start + i] = measures[j] of row i < m, from `price` and bumped prices,
 * computed for the mc >= m rows of the (padded) block. expiry[i]: the row has T == 0 (then
 * delta = expiry_delta[i], other Greeks 0). Returns 1 if some output is not finite. */
static int pg_fd_measures(pg_fd_eval_fn f, const void *ctx, int mc, int m, const pg_fd_steps *st,
                          const double *price, const int *expiry, const double *expiry_delta,
                          const int *measures, int k, double *out, ptrdiff_t ldo, ptrdiff_t start)
{
    PG_ALIGNED double a[PG_BARRIER_BLOCK], b[PG_BARRIER_BLOCK], c[PG_BARRIER_BLOCK],
        d[PG_BARRIER_BLOCK], o[PG_BARRIER_BLOCK];
    int nonfinite = 0;
    for (int j = 0; j < k; j++) {
        const int code = measures[j];
        const double *h1 = NULL, *h2 = NULL;
        switch (code) {
        case PG_MEASURE_PRICE:
            for (int i = 0; i < mc; i++) o[i] = price[i];
            break;
        case PG_MEASURE_DELTA:
            f(ctx, mc, 0, 1.0, 0.0, 0.0, 0.0, 0.0, a);
            f(ctx, mc, 0, -1.0, 0.0, 0.0, 0.0, 0.0, b);
            h1 = st->hS[0];
            #pragma omp simd
            for (int i = 0; i < mc; i++)
                o[i] = expiry[i] ? expiry_delta[i] : (a[i] - b[i]) / (2.0 * h1[i]);
            break;
        case PG_MEASURE_VEGA:
        case PG_MEASURE_RHO:
        case PG_MEASURE_DIVIDEND_RHO:
            if (code == PG_MEASURE_VEGA) {
                f(ctx, mc, 0, 0.0, 0.0, 0.0, 0.0, 1.0, a);
                f(ctx, mc, 0, 0.0, 0.0, 0.0, 0.0, -1.0, b);
                h1 = st->hv[0];
            } else if (code == PG_MEASURE_RHO) {
                f(ctx, mc, 0, 0.0, 0.0, 1.0, 0.0, 0.0, a);
                f(ctx, mc, 0, 0.0, 0.0, -1.0, 0.0, 0.0, b);
                h1 = st->hr[0];
            } else {
                f(ctx, mc, 0, 0.0, 0.0, 0.0, 1.0, 0.0, a);
                f(ctx, mc, 0, 0.0, 0.0, 0.0, -1.0, 0.0, b);
                h1 = st->hq[0];
            }
            #pragma omp simd
            for (int i = 0; i < mc; i++)
                o[i] = expiry[i] ? 0.0 : (a[i] - b[i]) / (2.0 * h1[i]);
            break;
        case PG_MEASURE_THETA:   /* the option ages: T - h minus T + h */
            f(ctx, mc, 0, 0.0, -1.0, 0.0, 0.0, 0.0, a);
            f(ctx, mc, 0, 0.0, 1.0, 0.0, 0.0, 0.0, b);
            h1 = st->hT[0];
            #pragma omp simd
            for (int i = 0; i < mc; i++)
                o[i] = expiry[i] ? 0.0 : (a[i] - b[i]) / (2.0 * h1[i]);
            break;
        case PG_MEASURE_GAMMA:
        case PG_MEASURE_VOLGA:
            if (code == PG_MEASURE_GAMMA) {
                f(ctx, mc, 1, 1.0, 0.0, 0.0, 0.0, 0.0, a);
                f(ctx, mc, 1, -1.0, 0.0, 0.0, 0.0, 0.0, b);
                h1 = st->hS[1];
            } else {
                f(ctx, mc, 1, 0.0, 0.0, 0.0, 0.0, 1.0, a);
                f(ctx, mc, 1, 0.0, 0.0, 0.0, 0.0, -1.0, b);
                h1 = st->hv[1];
            }
            #pragma omp simd
            for (int i = 0; i < mc; i++)
                o[i] = expiry[i] ? 0.0 : ((a[i] - price[i]) + (b[i] - price[i])) / (h1[i] * h1[i]);
            break;
        case PG_MEASURE_VANNA:
        case PG_MEASURE_CHARM:
            if (code == PG_MEASURE_VANNA) {
                f(ctx, mc, 1, 1.0, 0.0, 0.0, 0.0, 1.0, a);
                f(ctx, mc, 1, 1.0, 0.0, 0.0, 0.0, -1.0, b);
                f(ctx, mc, 1, -1.0, 0.0, 0.0, 0.0, 1.0, c);
                f(ctx, mc, 1, -1.0, 0.0, 0.0, 0.0, -1.0, d);
                h2 = st->hv[1];
            } else {   /* charm = -d2V/dS dT: bump T down for +, up for - */
                f(ctx, mc, 1, 1.0, -1.0, 0.0, 0.0, 0.0, a);
                f(ctx, mc, 1, 1.0, 1.0, 0.0, 0.0, 0.0, b);
                f(ctx, mc, 1, -1.0, -1.0, 0.0, 0.0, 0.0, c);
                f(ctx, mc, 1, -1.0, 1.0, 0.0, 0.0, 0.0, d);
                h2 = st->hT[1];
            }
            h1 = st->hS[1];
            #pragma omp simd
            for (int i = 0; i < mc; i++)
                o[i] = expiry[i] ? 0.0 : ((a[i] - b[i]) - (c[i] - d[i])) / (4.0 * h1[i] * h2[i]);
            break;
        default:
            break;   /* the caller validates the codes */
        }
        int nf = 0;
        double *dst = out + j * ldo + start;
        for (int i = 0; i < m; i++) {
            dst[i] = o[i];
            nf |= !pg_finite(o[i]);
        }
        nonfinite |= nf;
    }
    return nonfinite;
}

/* Mark rows whose price or a requested measure is not finite (PG_NOT_FINITE), NaN every
 * output of a failed row, copy the status out. Returns the number of failed rows. */
static ptrdiff_t pg_fd_finish(int *st, const double *price, int nonfinite, int m, int k,
                              double *out, ptrdiff_t ldo, ptrdiff_t start, int *status)
{
    for (int i = 0; i < m; i++)
        if (st[i] == 0 && !pg_finite(price[i])) st[i] = PG_NOT_FINITE;
    if (nonfinite) {
        for (int j = 0; j < k; j++) {
            const double *o = out + j * ldo + start;
            for (int i = 0; i < m; i++)
                if (st[i] == 0 && !pg_finite(o[i])) st[i] = PG_NOT_FINITE;
        }
    }
    int nbad = 0;
    for (int i = 0; i < m; i++) nbad += (st[i] != 0);
    memcpy(status + start, st, (size_t)m * sizeof(int));
    if (nbad) {
        for (int i = 0; i < m; i++) {
            if (st[i] == 0) continue;
            for (int j = 0; j < k; j++) out[j * ldo + start + i] = NAN;
        }
    }
    return nbad;
}

/* The block state of a finite-difference family. */
typedef struct {
    int m;              /* rows of the block (the columns hold mc >= m, padded) */
    pg_block_cols c;
    pg_fd_steps st;
    PG_ALIGNED double price[PG_BARRIER_BLOCK], expiry_delta[PG_BARRIER_BLOCK];
    PG_ALIGNED int expiry[PG_BARRIER_BLOCK], status[PG_BARRIER_BLOCK];
    PG_ALIGNED int touched[PG_BARRIER_BLOCK];   /* the barrier was hit: bumps keep the state */
} pg_fd_block;

/* ------------------------------------------------------------------ single-barrier block */

/* Column indices (the order of barrier_price_batch). */
enum { PG_SB_TYPE, PG_SB_OPTION };
enum { PG_SB_K, PG_SB_T, PG_SB_H, PG_SB_R, PG_SB_DT, PG_SB_S, PG_SB_RATE, PG_SB_Q, PG_SB_VOL };

static void pg_barrier_eval(const void *ctx, int m, int o, double kS, double kT, double kr,
                            double kq, double kv, double *v)
{
    const pg_fd_block *b = (const pg_fd_block *)ctx;
    const int *bt = b->c.I[PG_SB_TYPE], *ot = b->c.I[PG_SB_OPTION];
    const double *K = b->c.D[PG_SB_K], *T = b->c.D[PG_SB_T], *H = b->c.D[PG_SB_H],
                 *R = b->c.D[PG_SB_R], *dt = b->c.D[PG_SB_DT], *S = b->c.D[PG_SB_S],
                 *r = b->c.D[PG_SB_RATE], *q = b->c.D[PG_SB_Q], *vol = b->c.D[PG_SB_VOL];
    const double *hS = b->st.hS[o], *hT = b->st.hT[o], *hr = b->st.hr[o], *hq = b->st.hq[o],
                 *hv = b->st.hv[o];
    const int *hit = b->touched;
    #pragma omp simd
    for (int i = 0; i < m; i++)
        v[i] = pg_barrier_value(bt[i], ot[i], K[i], T[i] + kT * hT[i], H[i], R[i], dt[i],
                                S[i] + kS * hS[i], r[i] + kr * hr[i], q[i] + kq * hq[i],
                                vol[i] + kv * hv[i], hit[i]);
}

/* Rows [start, start + m) of a batch: out[j * ldo + row] = measures[j], status[row].
 * Returns the number of rows with a non-zero status. */
static ptrdiff_t pg_barrier_block(const pg_cols *in, ptrdiff_t start, int m, const int *measures,
                                  int k, double *out, ptrdiff_t ldo, int *status)
{
    pg_fd_block blk;
    pg_fd_block *b = &blk;
    const int mc = pg_load_cols_padded(in, start, m, &b->c);
    b->m = m;
    const int *bt = b->c.I[PG_SB_TYPE], *ot = b->c.I[PG_SB_OPTION];
    const double *K = b->c.D[PG_SB_K], *T = b->c.D[PG_SB_T], *H = b->c.D[PG_SB_H],
                 *R = b->c.D[PG_SB_R], *dt = b->c.D[PG_SB_DT], *S = b->c.D[PG_SB_S],
                 *r = b->c.D[PG_SB_RATE], *q = b->c.D[PG_SB_Q], *vol = b->c.D[PG_SB_VOL];
    const int beyond = in->beyond_touched;
    #pragma omp simd
    for (int i = 0; i < mc; i++) {
        b->status[i] = pg_barrier_check(bt[i], ot[i], K[i], T[i], H[i], R[i], dt[i], S[i],
                                        r[i], q[i], vol[i], beyond);
        b->touched[i] = pg_touched(H[i], S[i], bt[i] <= PG_BARRIER_DOWN_OUT, beyond);
        b->price[i] = pg_barrier_value(bt[i], ot[i], K[i], T[i], H[i], R[i], dt[i], S[i],
                                       r[i], q[i], vol[i], b->touched[i]);
        b->expiry[i] = (T[i] == 0.0);
        b->expiry_delta[i] = pg_barrier_expiry_delta(bt[i], ot[i], K[i], S[i], b->touched[i]);
        pg_fd_set_steps(&b->st, i, S[i], T[i], vol[i], pg_barrier_scale(T[i], r[i], q[i], vol[i]));
    }
    const int nonfinite = pg_fd_measures(pg_barrier_eval, b, mc, m, &b->st, b->price, b->expiry,
                                         b->expiry_delta, measures, k, out, ldo, start);
    return pg_fd_finish(b->status, b->price, nonfinite, m, k, out, ldo, start, status);
}

/* ------------------------------------------------------------------ one-touch block */

enum { PG_TO_TOUCH, PG_TO_DIRECTION, PG_TO_PAYMENT };
enum { PG_TO_Q, PG_TO_H, PG_TO_T, PG_TO_DT, PG_TO_S, PG_TO_RATE, PG_TO_DIV, PG_TO_VOL };

static void pg_touch_eval(const void *ctx, int m, int o, double kS, double kT, double kr,
                          double kq, double kv, double *v)
{
    const pg_fd_block *b = (const pg_fd_block *)ctx;
    const int *tt = b->c.I[PG_TO_TOUCH], *dir = b->c.I[PG_TO_DIRECTION], *pay = b->c.I[PG_TO_PAYMENT];
    const double *Q = b->c.D[PG_TO_Q], *H = b->c.D[PG_TO_H], *T = b->c.D[PG_TO_T],
                 *dt = b->c.D[PG_TO_DT], *S = b->c.D[PG_TO_S], *r = b->c.D[PG_TO_RATE],
                 *q = b->c.D[PG_TO_DIV], *vol = b->c.D[PG_TO_VOL];
    const double *hS = b->st.hS[o], *hT = b->st.hT[o], *hr = b->st.hr[o], *hq = b->st.hq[o],
                 *hv = b->st.hv[o];
    const int *hit = b->touched;
    #pragma omp simd
    for (int i = 0; i < m; i++)
        v[i] = pg_touch_value(tt[i], dir[i], pay[i], Q[i], H[i], T[i] + kT * hT[i], dt[i],
                              S[i] + kS * hS[i], r[i] + kr * hr[i], q[i] + kq * hq[i],
                              vol[i] + kv * hv[i], hit[i]);
}

static ptrdiff_t pg_touch_block(const pg_cols *in, ptrdiff_t start, int m, const int *measures,
                                int k, double *out, ptrdiff_t ldo, int *status)
{
    pg_fd_block blk;
    pg_fd_block *b = &blk;
    const int mc = pg_load_cols_padded(in, start, m, &b->c);
    b->m = m;
    const int *tt = b->c.I[PG_TO_TOUCH], *dir = b->c.I[PG_TO_DIRECTION], *pay = b->c.I[PG_TO_PAYMENT];
    const double *Q = b->c.D[PG_TO_Q], *H = b->c.D[PG_TO_H], *T = b->c.D[PG_TO_T],
                 *dt = b->c.D[PG_TO_DT], *S = b->c.D[PG_TO_S], *r = b->c.D[PG_TO_RATE],
                 *q = b->c.D[PG_TO_DIV], *vol = b->c.D[PG_TO_VOL];
    const int beyond = in->beyond_touched;
    #pragma omp simd
    for (int i = 0; i < mc; i++) {
        b->status[i] = pg_touch_check(tt[i], dir[i], pay[i], Q[i], H[i], T[i], dt[i], S[i],
                                      r[i], q[i], vol[i], beyond);
        b->touched[i] = pg_touched(H[i], S[i], dir[i] != PG_DIRECTION_UP, beyond);
        b->price[i] = pg_touch_value(tt[i], dir[i], pay[i], Q[i], H[i], T[i], dt[i], S[i],
                                     r[i], q[i], vol[i], b->touched[i]);
        b->expiry[i] = (T[i] == 0.0);
        b->expiry_delta[i] = 0.0;
        pg_fd_set_steps(&b->st, i, S[i], T[i], vol[i], pg_touch_scale(T[i], r[i], q[i], vol[i]));
    }
    const int nonfinite = pg_fd_measures(pg_touch_eval, b, mc, m, &b->st, b->price, b->expiry,
                                         b->expiry_delta, measures, k, out, ldo, start);
    return pg_fd_finish(b->status, b->price, nonfinite, m, k, out, ldo, start, status);
}

#endif
