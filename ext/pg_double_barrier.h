/* Double-barrier knock-out and knock-in calls and puts under Black-Scholes-Merton (flat
 * barriers, continuous monitoring): the pointwise formula and the SIMD block loop.
 *
 * 1. Pointwise: pg_double_barrier_check (status bits), pg_db_setup (the row's constants and
 *    its series length), pg_db_image_term / pg_db_mode_term (one term of either series),
 *    pg_db_value_of (the price from the sums); pg_double_barrier_value chains them for one
 *    row. Columns, in the order of double_barrier_price_batch:
 *      knock, option_type | K, T, L, U | S, r, q, vol
 * 2. Block loop: pg_double_barrier_block, as the single-barrier block (pg_barrier.h, 2.),
 *    except for the series: a bumped evaluation (pg_double_barrier_eval) sets up the rows
 *    of the block in one `omp simd` loop, packs the rows that sum the images and, apart,
 *    those that sum the modes (padded to whole vectors with copies of a row, so that no
 *    row falls into a loop's scalar remainder), and runs each group's series term by term
 *    (outer loop over terms, inner `omp simd` loop over the group), each row adding only
 *    its own terms, in the same order as pg_double_barrier_value.
 * 3. Numerics. x = ln S, a = ln L, c = ln U, W = c - a, nu = b - vol^2/2, s = vol sqrt(T).
 *    A knock-out pays the call or put payoff on the paths that stay in (L, U); it is
 *      KO = phi (S e^{-qT} P1 - K e^{-rT} P0)
 *    with P1, P0 the share- and money-measure weights of {S_T in (lo, hi), no exit}:
 *    call (lo, hi) = (max(K, L), U), put (L, min(K, U)); KO = 0 when lo >= hi. Knock-in =
 *    European - knock-out (in-out parity; no rebates). Two series for P1, P0, each exact
 *    when summed to infinity; a row uses the one that converges faster:
 *    - Images (method of images; S. Ikeda and N. Kunitomo, "Pricing options with curved
 *      boundaries", Math. Finance 2(4), 1992, pp. 275-298, with flat boundaries
 *      (curvatures 0), in the form of Haug 2nd ed. sec. 4.17.3): mu1 = 2b/vol^2 + 1,
 *        P1 = sum_n (U/L)^{n mu1} [N(d(lo)) - N(d(hi))] - (L^{n+1}/(U^n S))^{mu1} [N(e(lo)) - N(e(hi))]
 *        d(y) = (x + 2nW - ln y)/s + (b + vol^2/2) T/s,  e(y) = (2a - x - 2nW - ln y)/s + ...
 *      and P0 the same with mu1 - 2 and d - s, e - s. With c = vol^2 T/W^2, the density
 *      term of an image source at distance D from the interval is at most
 *      exp((W^2 - D^2)/(2 vol^2 T)) of a Gaussian's peak, whatever the drift (the
 *      Girsanov weight e^{nu y/vol^2}, |y| < W, is absorbed by completing the square);
 *      the direct images n sit at D >= (2|n| - 1) W, the reflected ones at D >= 2|n| W
 *      (n <= 0) and (2n - 2) W (n >= 1). So the series is cut adaptively at |n| <= N with
 *      N = ceil(sqrt(1 + 90 c)/2) >= 1: every omitted term is below e^{-45} = 3e-20 of the
 *      terms' scale (QuantLib's AnalyticDoubleBarrierEngine sums a fixed |n| <= 5, which is
 *      short for c > 0.25 and more than needed below). Products e^w N(.) use pg_exp_ncdf;
 *      differences N(u) - N(v) with u > v > 0 are taken as N(-v) - N(-u).
 *    - Modes (eigenfunction expansion of the killed Brownian motion, e.g. A. Pelsser,
 *      "Pricing double barrier options using Laplace transforms", Finance Stoch. 4, 2000,
 *      sec. 2; here integrated in closed form against the payoff):
 *        KO = phi e^{-(r + nu^2/(2 vol^2)) T} (2/W) sum_{k>=1} e^{-lambda_k T} sin(k theta)
 *             [S I_k(alpha + 1) - K I_k(alpha)],   alpha = nu/vol^2, theta = pi (x - a)/W,
 *        lambda_k = vol^2 k^2 pi^2/(2 W^2),  I_k(g) = int_lo^hi e^{g(y - x)} sin(k pi (y - a)/W) dy
 *      (closed form: e^{g y}(g sin - omega cos)/(g^2 + omega^2) at the ends). Term k
 *      relative to the first is e^{-(k^2 - 1) pi^2 c/2}, times at most e^{2 (|alpha|+1) W}
 *      of cancellation; the series is cut at the first k with ((k+1)^2 - 1) pi^2 c/2 >=
 *      45 + 2 (|alpha| + 1) W. It converges fast exactly where the images converge slowly
 *      (large c: the knock-out is then of order e^{-pi^2 c/2}, which the modes give to full
 *      relative accuracy and the images only to an absolute 1e-16 of S).
 *    Choice: the cheaper series, K modes costing about K/2.4 image terms (measured:
 *    36 ns per image term and 15 ns per mode per row, one thread), i.e. modes when
 *    K <= 2.4 (2N + 1), from c of about 0.05; but the modes only where
 *    (|alpha| + 1) W <= 4, their cancellation being at most e^8 there (relative error
 *    about 1e-12 at worst). Images needing more than 64 terms each side (c > 182, where
 *    the drift excluded the modes) are not summed: there
 *    KO <= (S e^{-qT} + K e^{-rT}) (4/pi) e^{m W - pi^2 c/2} (the no-exit probability of
 *    the driftless walk times the largest Girsanov weight, m = max(|nu|, |nu + vol^2|)/vol^2),
 *    and the row gets KO = 0 if that bound is below e^{-745} (always, but for drifts of
 *    thousands of vols), else PG_NOT_FINITE.
 *    T = 0: KO = intrinsic (spot inside), KI = 0.
 *    Spot at a barrier (S == L or S == U, exactly): touched now (pg_barrier.h, note 3): the
 *    knock-out is worth 0 (no rebate), the knock-in is the European; the state is the row's,
 *    so the Greeks are the European's or 0. Under continuous monitoring this is the limit of
 *    the series as S approaches a barrier. Spot outside [L, U] is refused, but with
 *    `beyond_touched` (a moved spot, pg_barrier.h note 3): then it is touched as at a
 *    barrier (and sums no series).
 * 4. Greeks: pg_barrier.h, 4., with the log-spot scale min(s, W, 1/(1 + |mu1|)) for
 *    knock-outs and min(s, 1/(1 + |mu1|)) for knock-ins (pg_double_barrier_scale).
 * 5. Status: PG_BAD_VARIANT (knock not 1 or 2), PG_BAD_OPTION_TYPE, PG_BAD_STRIKE, the market
 *    bits, PG_BAD_BARRIER (L not finite, not > 0, or above a valid spot), PG_BAD_UPPER_BARRIER
 *    (U not finite, below a valid spot, or not > a valid L), the sides not checked with
 *    `beyond_touched`; PG_NOT_FINITE as in pg_barrier.h.
 */
#ifndef PG_DOUBLE_BARRIER_H
#define PG_DOUBLE_BARRIER_H

#include "pg_barrier.h"

#ifdef PG_SIMD_MATH
#if __GLIBC_PREREQ(2, 22)
extern double cos(double) PG_SIMD_MATH;
extern double sin(double) PG_SIMD_MATH;
#endif
#endif

#define PG_KNOCK_IN   1
#define PG_KNOCK_OUT  2

#define PG_DB_MAX_IMAGES 64          /* most terms each side of n = 0 */
#define PG_DB_MODES_MAX_DRIFT 4.0    /* modes only where (|alpha| + 1) W is at most this */
#define PG_DB_MODE_COST 2.4          /* time of an image term / time of a mode term */
#define PG_DB_TAIL 45.0              /* omitted terms below e^-45 */
#define PG_PI 3.14159265358979323846

PG_INLINE int pg_double_barrier_check(int knock, int option_type, double K, double T,
                                      double L, double U, double S, double r, double q,
                                      double vol, int beyond_touched)
{
    int s = pg_check_market(T, S, r, q, vol);
    const int spot_ok = !(s & PG_BAD_UNDERLYING) && !beyond_touched;   /* the sides to check */
    s |= (knock == PG_KNOCK_IN || knock == PG_KNOCK_OUT) ? 0 : PG_BAD_VARIANT;
    s |= (option_type == PG_CALL || option_type == PG_PUT) ? 0 : PG_BAD_OPTION_TYPE;
    s |= (K > 0.0 && K <= PG_DBL_MAX) ? 0 : PG_BAD_STRIKE;
    int l_ok = (L > 0.0 && L <= PG_DBL_MAX);
    l_ok &= spot_ok ? (L <= S) : 1;   /* L == S or U == S: touched (note 3) */
    int u_ok = (U > 0.0 && U <= PG_DBL_MAX);
    u_ok &= spot_ok ? (U >= S) : 1;
    u_ok &= l_ok ? (U > L) : 1;
    s |= l_ok ? 0 : PG_BAD_BARRIER;
    s |= u_ok ? 0 : PG_BAD_UPPER_BARRIER;
    return s;
}

/* The constants of one row: double fields, then int fields (X-macros, so that a block
 * can keep them as one array per field and load a row's struct in a vectorised loop). */
#define PG_DB_DFIELDS(X) \
    X(phi) X(K) X(S) X(sd) X(isd) X(x) X(a) X(W) X(lo) X(hi) X(Sq) X(KD) X(euro) \
    X(bsig) X(mu1)                           /* images */ \
    X(alpha) X(g1) X(theta0) X(thetaK) X(lam1T) /* modes: alpha, alpha + 1, angles, lambda_1 T */ \
    X(eL0) X(eH0) X(eL1) X(eH1)              /* e^{g (lo - x)}, e^{g (hi - x)}, g = alpha, alpha + 1 */ \
    X(pre)                                   /* modes: phi e^{-(r + beta) T} (2/W) */ \
    X(lo_is_K) X(hi_is_K)                    /* 1.0 where lo / hi is ln K (not a barrier) */ \
    X(capped_value)                          /* 0 or NaN for rows beyond PG_DB_MAX_IMAGES */ \
    X(intrinsic)
#define PG_DB_IFIELDS(X) X(modes) X(nterms) X(empty) X(in) X(expiry) X(capped)

#define PG_DB_DECL_D(f) double f;
#define PG_DB_DECL_I(f) int f;
typedef struct {
    PG_DB_DFIELDS(PG_DB_DECL_D)
    PG_DB_IFIELDS(PG_DB_DECL_I)
} pg_db_row;

PG_INLINE pg_db_row pg_db_setup(int knock, int option_type, double K, double T, double L,
                                double U, double S, double r, double q, double vol)
{
    pg_db_row w;
    const double v2 = vol * vol;
    const double b = r - q;
    const double nu = b - 0.5 * v2;
    const double sd0 = vol * sqrt(T);
    w.phi = (option_type == PG_PUT) ? -1.0 : 1.0;
    w.in = (knock == PG_KNOCK_IN);
    w.expiry = (T == 0.0);
    w.K = K;
    w.S = S;
    w.sd = (sd0 > PG_DBL_MIN) ? sd0 : PG_DBL_MIN;
    w.isd = 1.0 / w.sd;
    w.x = log(S);
    w.a = log(L);
    const double c_up = log(U);
    w.W = c_up - w.a;
    const double lk = log(K);
    const int put = (option_type == PG_PUT);
    w.lo = put ? w.a : pg_max(lk, w.a);
    w.hi = put ? pg_min(lk, c_up) : c_up;
    w.lo_is_K = (!put && lk > w.a) ? 1.0 : 0.0;
    w.hi_is_K = (put && lk < c_up) ? 1.0 : 0.0;
    w.empty = !(w.lo < w.hi);
    const double DF = pg_exp(-r * T);
    w.Sq = S * pg_exp(-q * T);
    w.KD = K * DF;
    /* European, for the knock-in */
    const double d1 = (w.x - lk + (b + 0.5 * v2) * T) / w.sd;
    w.euro = w.phi * (w.Sq * pg_ncdf(w.phi * d1) - w.KD * pg_ncdf(w.phi * (d1 - w.sd)));
    w.intrinsic = pg_max(w.phi * (S - K), 0.0);

    const double c = (v2 * T) / (w.W * w.W);
    w.alpha = nu / v2;
    w.g1 = w.alpha + 1.0;
    const double drift = (fabs(w.alpha) + 1.0) * w.W;
    /* images: |n| <= N, N = ceil(sqrt(1 + 90 c)/2) >= 1 */
    const double nimg = pg_max(ceil(0.5 * sqrt(1.0 + 2.0 * PG_DB_TAIL * c)), 1.0);
    /* modes: k <= K, first K with ((K+1)^2 - 1) pi^2 c/2 >= 45 + 2 drift */
    const double nmod = pg_max(ceil(sqrt(1.0 + (2.0 * PG_DB_TAIL + 4.0 * drift) / (PG_PI * PG_PI * c))) - 1.0, 1.0);
    /* the cheaper series, modes only where their cancellation is small */
    w.modes = (drift <= PG_DB_MODES_MAX_DRIFT) && (nmod <= PG_DB_MODE_COST * (2.0 * nimg + 1.0));
    double nt = w.modes ? nmod : nimg;
    nt = (nt >= 1.0) ? nt : 1.0;                       /* NaN -> 1 */
    w.capped = !w.modes && !(nt <= PG_DB_MAX_IMAGES);
    w.nterms = w.capped ? 0 : (int)nt;
    const double m = pg_max(fabs(nu), fabs(nu + v2)) / v2;
    const double bound = m * w.W - 0.5 * PG_PI * PG_PI * c + 0.24156447527049044;  /* + ln(4/pi) */
    w.capped_value = (bound < -745.0) ? 0.0 : NAN;

    w.bsig = (b + 0.5 * v2) * T / w.sd;
    w.mu1 = 2.0 * b / v2 + 1.0;
    w.theta0 = PG_PI * (w.x - w.a) / w.W;
    w.thetaK = PG_PI * (lk - w.a) / w.W;
    w.lam1T = 0.5 * PG_PI * PG_PI * c;
    w.eL0 = pg_exp(w.alpha * (w.lo - w.x));
    w.eH0 = pg_exp(w.alpha * (w.hi - w.x));
    w.eL1 = pg_exp(w.g1 * (w.lo - w.x));
    w.eH1 = pg_exp(w.g1 * (w.hi - w.x));
    w.pre = w.phi * pg_exp(-(r + 0.5 * nu * nu / v2) * T) * 2.0 / w.W;
    return w;
}

/* e^w (N(u) - N(v)) for u > v, without cancellation when both are large. */
PG_INLINE double pg_exp_ncdf_diff(double w, double u, double v)
{
    const int upper = (v > 0.0);
    return pg_exp_ncdf(w, upper ? -v : u) - pg_exp_ncdf(w, upper ? -u : v);
}

/* Image n's contributions to P1 (*p1) and P0 (*p0). */
PG_INLINE void pg_db_image_term(const pg_db_row *w, double n, double *p1, double *p0)
{
    const double s = w->sd, is = w->isd;
    const double shift = 2.0 * n * w->W;
    const double dlo = (w->x + shift - w->lo) * is + w->bsig;
    const double dhi = (w->x + shift - w->hi) * is + w->bsig;
    const double ref = 2.0 * w->a - w->x - shift;
    const double elo = (ref - w->lo) * is + w->bsig;
    const double ehi = (ref - w->hi) * is + w->bsig;
    const double l1 = n * w->W;                    /* ln (U/L)^n */
    const double l3 = w->a - w->x - n * w->W;      /* ln (L^{n+1}/(U^n S)) */
    const double m1 = w->mu1, m0 = w->mu1 - 2.0;
    *p1 = pg_exp_ncdf_diff(l1 * m1, dlo, dhi) - pg_exp_ncdf_diff(l3 * m1, elo, ehi);
    *p0 = pg_exp_ncdf_diff(l1 * m0, dlo - s, dhi - s) - pg_exp_ncdf_diff(l3 * m0, elo - s, ehi - s);
}

/* Mode k's term of the sum (before the factor pre); parity = cos(k pi) = (-1)^k. */
PG_INLINE double pg_db_mode_term(const pg_db_row *w, double k, double parity)
{
    const double om = k * PG_PI / w->W;
    const double decay = pg_exp(-(k * k) * w->lam1T);
    const double s0 = sin(k * w->theta0 + 0.0);   /* + 0.0: no fusing into sincos (no vector form) */
    const double sK = sin(k * w->thetaK + 0.0);
    const double cK = cos(k * w->thetaK);
    /* sin, cos of k pi (y - a)/W at y = lo and y = hi */
    const double slo = (w->lo_is_K != 0.0) ? sK : 0.0;
    const double clo = (w->lo_is_K != 0.0) ? cK : 1.0;
    const double shi = (w->hi_is_K != 0.0) ? sK : 0.0;
    const double chi = (w->hi_is_K != 0.0) ? cK : parity;
    const double g0 = w->alpha, g1 = w->g1;
    const double I0 = (w->eH0 * (g0 * shi - om * chi) - w->eL0 * (g0 * slo - om * clo)) / (g0 * g0 + om * om);
    const double I1 = (w->eH1 * (g1 * shi - om * chi) - w->eL1 * (g1 * slo - om * clo)) / (g1 * g1 + om * om);
    return decay * s0 * (w->S * I1 - w->K * I0);
}

/* The price from the sums: images (p1, p0) or modes (sum). */
PG_INLINE double pg_db_value_of(const pg_db_row *w, double p1, double p0, double sum)
{
    double ko = w->modes ? w->pre * sum : w->phi * (w->Sq * p1 - w->KD * p0);
    ko = w->capped ? w->capped_value : ko;
    ko = w->empty ? 0.0 : ko;
    const double v = w->in ? w->euro - ko : ko;
    return w->expiry ? (w->in ? 0.0 : w->intrinsic) : v;
}

/* The price of a row whose barrier was touched (note 3): the European, or 0. */
PG_INLINE double pg_db_touched_value(const pg_db_row *w)
{
    return w->in ? (w->expiry ? w->intrinsic : w->euro) : 0.0;
}

/* The price of one row whose status is 0; `touched`: a barrier was hit (note 3). */
PG_INLINE double pg_double_barrier_value(int knock, int option_type, double K, double T,
                                         double L, double U, double S, double r, double q,
                                         double vol, int touched)
{
    const pg_db_row w = pg_db_setup(knock, option_type, K, T, L, U, S, r, q, vol);
    double p1 = 0.0, p0 = 0.0, sum = 0.0, t1, t0;
    if (w.modes) {
        for (int k = 1; k <= w.nterms; k++)
            sum += pg_db_mode_term(&w, (double)k, (k & 1) ? -1.0 : 1.0);
    } else {
        pg_db_image_term(&w, 0.0, &p1, &p0);
        for (int n = 1; n <= w.nterms; n++) {
            pg_db_image_term(&w, (double)n, &t1, &t0);
            p1 += t1;
            p0 += t0;
            pg_db_image_term(&w, -(double)n, &t1, &t0);
            p1 += t1;
            p0 += t0;
        }
    }
    return touched ? pg_db_touched_value(&w) : pg_db_value_of(&w, p1, p0, sum);
}

PG_INLINE double pg_double_barrier_expiry_delta(int knock, int option_type, double K, double S,
                                                int touched)
{
    const double phi = (option_type == PG_PUT) ? -1.0 : 1.0;
    const double step = (phi * (S - K) > 0.0) ? 1.0 : ((S == K) ? 0.5 : 0.0);
    /* knock-in 1 (odd), touched 0 or 1: integer arithmetic, as pg_barrier_expiry_delta */
    return pg_bsel(((knock & 1) ^ touched) == 0, phi * step, 0.0);
}


/* Log-spot scale of the price (pg_barrier.h, 4.). A knock-in is the European minus the
 * knock-out: where W < s the knock-out is below e^{-pi^2/2} of the scale and its own
 * steps would only add rounding error to the European's Greeks, so W is left out. */
PG_INLINE double pg_double_barrier_scale(int knock, double T, double L, double U, double r,
                                         double q, double vol)
{
    const double mu1 = 2.0 * (r - q) / (vol * vol) + 1.0;
    const double u = pg_min(vol * sqrt(T), 1.0 / (1.0 + fabs(mu1)));
    return (knock == PG_KNOCK_IN) ? u : pg_min(u, log(U / L));
}

/* ------------------------------------------------------------------ block */

enum { PG_DB_KNOCK, PG_DB_OPTION };
enum { PG_DB_K, PG_DB_T, PG_DB_L, PG_DB_U, PG_DB_S, PG_DB_RATE, PG_DB_Q, PG_DB_VOL };

#define PG_DB_ARRAY_D(f) PG_ALIGNED double f[PG_BARRIER_BLOCK];
#define PG_DB_ARRAY_I(f) PG_ALIGNED int f[PG_BARRIER_BLOCK];
typedef struct {
    PG_DB_DFIELDS(PG_DB_ARRAY_D)
    PG_DB_IFIELDS(PG_DB_ARRAY_I)
} pg_db_rows;

#define PG_DB_STORE(f) r->f[i] = w->f;
#define PG_DB_LOAD(f) w.f = r->f[i];
PG_INLINE void pg_db_store(pg_db_rows *r, int i, const pg_db_row *w)
{
    PG_DB_DFIELDS(PG_DB_STORE)
    PG_DB_IFIELDS(PG_DB_STORE)
}
PG_INLINE pg_db_row pg_db_load(const pg_db_rows *r, int i)
{
    pg_db_row w;
    PG_DB_DFIELDS(PG_DB_LOAD)
    PG_DB_IFIELDS(PG_DB_LOAD)
    return w;
}

typedef struct {
    pg_fd_block f;
    pg_db_rows w;       /* the rows of the block, in order */
    pg_db_rows g;       /* the rows summing one of the series, packed */
    PG_ALIGNED double p1[PG_BARRIER_BLOCK], p0[PG_BARRIER_BLOCK], sum[PG_BARRIER_BLOCK];
    PG_ALIGNED double a1[PG_BARRIER_BLOCK], a0[PG_BARRIER_BLOCK];
    int idx[PG_BARRIER_BLOCK];
} pg_db_block;

#define PG_DB_GATHER(f) g->f[j] = w->f[idx[j < n ? j : n - 1]];
#define PG_DB_LOAD_FROM(f) w.f = g->f[j];

/* The fields each series reads (pg_db_image_term, pg_db_mode_term). */
#define PG_DB_IMAGE_FIELDS(X) X(x) X(a) X(W) X(lo) X(hi) X(sd) X(isd) X(bsig) X(mu1)
#define PG_DB_MODE_FIELDS(X) \
    X(S) X(K) X(W) X(alpha) X(g1) X(theta0) X(thetaK) X(lam1T) X(eL0) X(eH0) X(eL1) X(eH1) \
    X(lo_is_K) X(hi_is_K)

/* Vector lanes the packed groups are padded to (8 doubles: AVX-512; a multiple of AVX2's 4). */
#define PG_DB_LANES 8

/* Pack the rows idx[0..n) of w into g, padded with copies of the last one up to a multiple
 * of PG_DB_LANES, so that a series loop runs over full vectors only (the scalar remainder of
 * a vectorised loop calls the scalar exp/erfc/sin/cos, several times slower per row).
 * Returns the padded count. */
static int pg_db_pack(pg_db_rows *g, const pg_db_rows *w, const int *idx, int n, int modes)
{
    const int padded = (n + PG_DB_LANES - 1) / PG_DB_LANES * PG_DB_LANES;
    for (int j = 0; j < padded; j++) {
        if (modes) {
            PG_DB_MODE_FIELDS(PG_DB_GATHER)
        } else {
            PG_DB_IMAGE_FIELDS(PG_DB_GATHER)
        }
        PG_DB_GATHER(nterms)
    }
    return padded;
}

/* Row j of a packed group: the fields of its series only. */
PG_INLINE pg_db_row pg_db_load_image(const pg_db_rows *g, int j)
{
    pg_db_row w = {0};
    PG_DB_IMAGE_FIELDS(PG_DB_LOAD_FROM)
    return w;
}

PG_INLINE pg_db_row pg_db_load_mode(const pg_db_rows *g, int j)
{
    pg_db_row w = {0};
    PG_DB_MODE_FIELDS(PG_DB_LOAD_FROM)
    return w;
}

/* Prices at bumped inputs (kS, ..., kv multiples of the steps of `order`) of rows 0..m-1.
 * Each row sums its own series: the rows using images and those using modes are packed
 * apart, each group running to its own longest series, every row adding only its terms. */
static void pg_double_barrier_eval(const void *ctx, int m, int o, double kS, double kT,
                                   double kr, double kq, double kv, double *v)
{
    pg_db_block *b = (pg_db_block *)ctx;   /* the series scratch lives in the block */
    const pg_block_cols *c = &b->f.c;
    const pg_fd_steps *st = &b->f.st;
    const int *kn = c->I[PG_DB_KNOCK], *ot = c->I[PG_DB_OPTION];
    const double *K = c->D[PG_DB_K], *T = c->D[PG_DB_T], *L = c->D[PG_DB_L], *U = c->D[PG_DB_U],
                 *S = c->D[PG_DB_S], *r = c->D[PG_DB_RATE], *q = c->D[PG_DB_Q], *vol = c->D[PG_DB_VOL];
    const double *hS = st->hS[o], *hT = st->hT[o], *hr = st->hr[o], *hq = st->hq[o], *hv = st->hv[o];
    const int *status = b->f.status;
    pg_db_rows *rows = &b->w, *g = &b->g;
    int *idx = b->idx;

    #pragma omp simd
    for (int i = 0; i < m; i++) {
        const pg_db_row w = pg_db_setup(kn[i], ot[i], K[i], T[i] + kT * hT[i], L[i], U[i],
                                        S[i] + kS * hS[i], r[i] + kr * hr[i], q[i] + kq * hq[i],
                                        vol[i] + kv * hv[i]);
        pg_db_store(rows, i, &w);
        b->p1[i] = 0.0;
        b->p0[i] = 0.0;
        b->sum[i] = 0.0;
    }

    /* images (failed rows, touched rows and rows beyond PG_DB_MAX_IMAGES sum nothing) */
    const int *hit = b->f.touched;
    int n = 0, most = 0;
    for (int i = 0; i < b->f.m; i++) {   /* the block's own rows, not its padding */
        if (status[i] == 0 && !hit[i] && !rows->modes[i] && !rows->capped[i]) {
            idx[n++] = i;
            most = rows->nterms[i] > most ? rows->nterms[i] : most;
        }
    }
    if (n > 0) {
        const int np = pg_db_pack(g, rows, idx, n, 0);
        #pragma omp simd
        for (int j = 0; j < np; j++) {
            const pg_db_row w = pg_db_load_image(g, j);
            double t1, t0;
            pg_db_image_term(&w, 0.0, &t1, &t0);
            b->a1[j] = t1;
            b->a0[j] = t0;
        }
        for (int k = 1; k <= most; k++) {
            const double dk = (double)k;
            #pragma omp simd
            for (int j = 0; j < np; j++) {
                const pg_db_row w = pg_db_load_image(g, j);
                double u1, u0, d1, d0;
                pg_db_image_term(&w, dk, &u1, &u0);
                pg_db_image_term(&w, -dk, &d1, &d0);
                const int use = (k <= g->nterms[j]);
                b->a1[j] = use ? (b->a1[j] + u1) + d1 : b->a1[j];
                b->a0[j] = use ? (b->a0[j] + u0) + d0 : b->a0[j];
            }
        }
        for (int j = 0; j < n; j++) {
            b->p1[idx[j]] = b->a1[j];
            b->p0[idx[j]] = b->a0[j];
        }
    }

    /* modes */
    n = 0;
    most = 0;
    for (int i = 0; i < b->f.m; i++) {
        if (status[i] == 0 && !hit[i] && rows->modes[i]) {
            idx[n++] = i;
            most = rows->nterms[i] > most ? rows->nterms[i] : most;
        }
    }
    if (n > 0) {
        const int np = pg_db_pack(g, rows, idx, n, 1);
        for (int j = 0; j < np; j++) b->a1[j] = 0.0;
        for (int k = 1; k <= most; k++) {
            const double dk = (double)k, parity = (k & 1) ? -1.0 : 1.0;
            #pragma omp simd
            for (int j = 0; j < np; j++) {
                const pg_db_row w = pg_db_load_mode(g, j);
                const double t = pg_db_mode_term(&w, dk, parity);
                b->a1[j] = (k <= g->nterms[j]) ? b->a1[j] + t : b->a1[j];
            }
        }
        for (int j = 0; j < n; j++) b->sum[idx[j]] = b->a1[j];
    }

    #pragma omp simd
    for (int i = 0; i < m; i++) {
        const pg_db_row w = pg_db_load(rows, i);
        const double live = pg_db_value_of(&w, b->p1[i], b->p0[i], b->sum[i]);
        v[i] = hit[i] ? pg_db_touched_value(&w) : live;
    }
}

static ptrdiff_t pg_double_barrier_block(const pg_cols *in, ptrdiff_t start, int m,
                                         const int *measures, int k, double *out,
                                         ptrdiff_t ldo, int *status)
{
    pg_db_block blk;
    pg_db_block *b = &blk;
    pg_fd_block *f = &b->f;
    const int mc = pg_load_cols_padded(in, start, m, &f->c);
    f->m = m;
    const int *kn = f->c.I[PG_DB_KNOCK], *ot = f->c.I[PG_DB_OPTION];
    const double *K = f->c.D[PG_DB_K], *T = f->c.D[PG_DB_T], *L = f->c.D[PG_DB_L],
                 *U = f->c.D[PG_DB_U], *S = f->c.D[PG_DB_S], *r = f->c.D[PG_DB_RATE],
                 *q = f->c.D[PG_DB_Q], *vol = f->c.D[PG_DB_VOL];
    const int beyond = in->beyond_touched;
    #pragma omp simd
    for (int i = 0; i < mc; i++) {
        f->status[i] = pg_double_barrier_check(kn[i], ot[i], K[i], T[i], L[i], U[i], S[i], r[i],
                                               q[i], vol[i], beyond);
        f->expiry[i] = (T[i] == 0.0);
        f->touched[i] = pg_touched_at(pg_min(S[i] - L[i], U[i] - S[i]), beyond);   /* either barrier */
        f->expiry_delta[i] = pg_double_barrier_expiry_delta(kn[i], ot[i], K[i], S[i], f->touched[i]);
        pg_fd_set_steps(&f->st, i, S[i], T[i], vol[i],
                        pg_double_barrier_scale(kn[i], T[i], L[i], U[i], r[i], q[i], vol[i]));
    }
    pg_double_barrier_eval(b, mc, 0, 0.0, 0.0, 0.0, 0.0, 0.0, f->price);
    const int nonfinite = pg_fd_measures(pg_double_barrier_eval, b, mc, m, &f->st, f->price,
                                         f->expiry, f->expiry_delta, measures, k, out, ldo, start);
    return pg_fd_finish(f->status, f->price, nonfinite, m, k, out, ldo, start, status);
}

#endif
