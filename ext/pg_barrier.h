/* Single-barrier and European digital options under Black-Scholes-Merton with cost of
 * carry: the pointwise formulas, written once, and the SIMD block loops built from them.
 *
 * 1. Pointwise (used by the single-trade path and, inlined, by the block loops):
 *      pg_barrier_check / pg_digital_check   the status bits of one row
 *      pg_barrier_value / pg_digital_value   the price of one valid row (no checks)
 *      pg_barrier_point / pg_digital_point   check + price, NaN when the row fails
 * 2. Block loops: pg_barrier_block / pg_digital_block price rows [start, start + m),
 *    m <= PG_BARRIER_BLOCK. A length-1 input is first repeated into a stack buffer (so
 *    every loop reads contiguous data); one `omp simd` loop computes status and price;
 *    failed rows are then set to NaN. A row's result depends only on its inputs and its
 *    place in its block, never on the thread split.
 * 3. Numerics (sources with pages in the design note of barrier.pyx). b = r - q,
 *    s = vol sqrt(T), mu = (b - vol^2/2)/vol^2, lambda = sqrt(mu^2 + 2 r/vol^2),
 *    phi = +1 call / -1 put, eta = +1 down / -1 up, DF = exp(-rT), Sq = S exp(-qT):
 *      x1 = ln(S/K)/s + (1 + mu) s       x2 = ln(S/H)/s + (1 + mu) s
 *      y1 = ln(H^2/(S K))/s + (1 + mu) s y2 = ln(H/S)/s + (1 + mu) s
 *      z  = ln(H/S)/s + lambda s
 *      A = phi (Sq N(phi x1) - K DF N(phi (x1 - s)))
 *      B = phi (Sq N(phi x2) - K DF N(phi (x2 - s)))
 *      C = phi (Sq (H/S)^(2 mu + 2) N(eta y1) - K DF (H/S)^(2 mu) N(eta (y1 - s)))
 *      D = phi (Sq (H/S)^(2 mu + 2) N(eta y2) - K DF (H/S)^(2 mu) N(eta (y2 - s)))
 *      E = R DF (N(eta (x2 - s)) - (H/S)^(2 mu) N(eta (y2 - s)))
 *      F = R ((H/S)^(mu + lambda) N(eta z) + (H/S)^(mu - lambda) N(eta (z - 2 lambda s)))
 *    Each (type, call/put, K >= H or K < H) is a fixed combination of A..D (the table
 *    pg_barrier_coef below, Haug's table in sec. 4.17.1) plus E for knock-ins (the rebate
 *    paid at expiry when the barrier was never hit: E = R DF Q(no hit)) or F for
 *    knock-outs (the rebate paid when the barrier is hit: F = R E[exp(-r tau); tau <= T]).
 *    Terms with a zero coefficient are not added (so an overflowed unused term cannot
 *    turn the price into NaN); E and F are 0 for R == 0.
 *    Digitals (Haug sec. 4.19.1-4.19.2): d1 = ln(S/K)/s + (b + vol^2/2) T / s, d2 = d1 - s;
 *      cash-or-nothing  Q DF N(phi d2);   asset-or-nothing  Sq N(phi d1).
 *    N(x) = erfc(-x/sqrt 2)/2 (pg_black.h), accurate in both tails. Powers of H/S are
 *    exp(a ln(H/S)) (vectorised exp/log). s is floored at DBL_MIN.
 *    T = 0: knock-out = intrinsic max(phi (S - K), 0) (the barrier is strictly on the far
 *    side of spot, so not hit), knock-in = R (never knocked in, paid now); digitals pay
 *    their step 1{phi (S - K) > 0}, 1/2 at S == K (as pg_black.h does for T = 0).
 *    Limitation: lambda is real only when mu^2 + 2 r/vol^2 >= 0 (always for r >= 0); a
 *    knock-out with R > 0 outside that (negative rates) has no closed form here and gets
 *    PG_NOT_FINITE, as does any row whose price overflows (e.g. (H/S)^(2 mu) for a tiny
 *    vol and large carry).
 * 4. Status: pg_check_inputs (BSM) bits, PG_BAD_VOL, plus PG_BAD_BARRIER (H not finite,
 *    not > 0, or not strictly on its side of spot: down H < S, up H > S; only checked
 *    against a valid spot) and PG_BAD_REBATE (R not finite or < 0; for digitals the cash
 *    amount of a cash-or-nothing row, which uses the same input column).
 */
#ifndef PG_BARRIER_H
#define PG_BARRIER_H

#include "pg_black.h"   /* libmvec declarations, pg_norm_cdf, PG_INLINE, block helpers */

/* Barrier type codes. */
#define PG_BARRIER_DOWN_IN   1
#define PG_BARRIER_DOWN_OUT  2
#define PG_BARRIER_UP_IN     3
#define PG_BARRIER_UP_OUT    4

/* Digital payoff codes. */
#define PG_DIGITAL_CASH   1
#define PG_DIGITAL_ASSET  2

#define PG_BARRIER_BLOCK 32

/* Broadcast bits of the two extra inputs (PG_IN_OPTION_TYPE .. PG_IN_VOL: pg_black.h). */
#define PG_IN_BARRIER  (1 << 7)
#define PG_IN_REBATE   (1 << 8)

/* ------------------------------------------------------------------ pointwise */

PG_INLINE int pg_barrier_check(int btype, int option_type, double strike, double time,
                               double spot, double rate, double dividend, double vol,
                               double barrier, double rebate)
{
    int s = pg_check_inputs(PG_MODEL_BSM, option_type, strike, time, spot, rate, dividend)
            | pg_check_vol(vol);
    const int spot_ok = !(s & PG_BAD_UNDERLYING);
    const int down = (btype == PG_BARRIER_DOWN_IN || btype == PG_BARRIER_DOWN_OUT);
    int h_ok = (barrier > 0.0 && barrier <= PG_DBL_MAX);
    h_ok &= spot_ok ? (down ? (barrier < spot) : (barrier > spot)) : 1;
    s |= h_ok ? 0 : PG_BAD_BARRIER;
    s |= (rebate >= 0.0 && rebate <= PG_DBL_MAX) ? 0 : PG_BAD_REBATE;
    return s;
}

/* Coefficients of A, B, C, D for index 8 (btype - 1) + 4 (put) + 2 ... see pg_barrier_index:
 * rows (type, phi, strike vs barrier), columns A B C D. Haug 2nd ed. sec. 4.17.1. */
static const double pg_barrier_coef[16][4] = {
    /* down-in  call K >= H: C          */ { 0,  0,  1,  0},
    /* down-in  call K <  H: A - B + D  */ { 1, -1,  0,  1},
    /* down-in  put  K >= H: B - C + D  */ { 0,  1, -1,  1},
    /* down-in  put  K <  H: A          */ { 1,  0,  0,  0},
    /* down-out call K >= H: A - C      */ { 1,  0, -1,  0},
    /* down-out call K <  H: B - D      */ { 0,  1,  0, -1},
    /* down-out put  K >= H: A-B+C-D    */ { 1, -1,  1, -1},
    /* down-out put  K <  H: 0          */ { 0,  0,  0,  0},
    /* up-in    call K >= H: A          */ { 1,  0,  0,  0},
    /* up-in    call K <  H: B - C + D  */ { 0,  1, -1,  1},
    /* up-in    put  K >= H: A - B + D  */ { 1, -1,  0,  1},
    /* up-in    put  K <  H: C          */ { 0,  0,  1,  0},
    /* up-out   call K >= H: 0          */ { 0,  0,  0,  0},
    /* up-out   call K <  H: A-B+C-D    */ { 1, -1,  1, -1},
    /* up-out   put  K >= H: B - D      */ { 0,  1,  0, -1},
    /* up-out   put  K <  H: A - C      */ { 1,  0, -1,  0},
};

PG_INLINE int pg_barrier_index(int btype, int option_type, double strike, double barrier)
{
    return 4 * (btype - 1) + 2 * (option_type == PG_PUT) + (strike < barrier);
}

/* c * x, or 0 when c == 0 (keeps an overflowed unused term out of the sum). */
PG_INLINE double pg_term(double c, double x) { return (c != 0.0) ? c * x : 0.0; }

/* The price of one row whose status is 0 (btype 1..4, option type CALL or PUT). */
PG_INLINE double pg_barrier_value(int btype, int option_type, double K, double T, double S,
                                  double r, double q, double vol, double H, double R)
{
    const int in = (btype == PG_BARRIER_DOWN_IN || btype == PG_BARRIER_UP_IN);
    const double phi = (option_type == PG_PUT) ? -1.0 : 1.0;
    const double eta = (btype <= PG_BARRIER_DOWN_OUT) ? 1.0 : -1.0;
    const double v2 = vol * vol;
    const double sd0 = vol * sqrt(T);
    const double sd = (sd0 > PG_DBL_MIN) ? sd0 : PG_DBL_MIN;
    const double mu = (r - q - 0.5 * v2) / v2;
    const double lam = sqrt(mu * mu + 2.0 * r / v2);
    const double DF = exp(-r * T);
    const double Sq = S * exp(-q * T);
    const double KD = K * DF;
    const double lhs = log(H / S);        /* ln(H/S) */
    const double lsk = log(S / K);        /* ln(S/K) */
    const double m1s = (1.0 + mu) * sd;
    const double x1 = lsk / sd + m1s;
    const double x2 = -lhs / sd + m1s;
    const double y1 = (2.0 * lhs + lsk) / sd + m1s;
    const double y2 = lhs / sd + m1s;
    const double z = lhs / sd + lam * sd;
    const double p2mu = exp(2.0 * mu * lhs);
    const double p2mu2 = exp((2.0 * mu + 2.0) * lhs);

    const double A = phi * (Sq * pg_norm_cdf(phi * x1) - KD * pg_norm_cdf(phi * (x1 - sd)));
    const double B = phi * (Sq * pg_norm_cdf(phi * x2) - KD * pg_norm_cdf(phi * (x2 - sd)));
    const double C = phi * (Sq * p2mu2 * pg_norm_cdf(eta * y1)
                            - KD * p2mu * pg_norm_cdf(eta * (y1 - sd)));
    const double D = phi * (Sq * p2mu2 * pg_norm_cdf(eta * y2)
                            - KD * p2mu * pg_norm_cdf(eta * (y2 - sd)));
    const double E = R * DF * (pg_norm_cdf(eta * (x2 - sd)) - p2mu * pg_norm_cdf(eta * (y2 - sd)));
    const double F = R * (exp((mu + lam) * lhs) * pg_norm_cdf(eta * z)
                          + exp((mu - lam) * lhs) * pg_norm_cdf(eta * (z - 2.0 * lam * sd)));

    const double *c = pg_barrier_coef[pg_barrier_index(btype, option_type, K, H)];
    double v = pg_term(c[0], A) + pg_term(c[1], B) + pg_term(c[2], C) + pg_term(c[3], D);
    v += (R != 0.0) ? (in ? E : F) : 0.0;

    const double intrinsic = fmax(phi * (S - K), 0.0);
    const double at_expiry = in ? R : intrinsic;
    return (T == 0.0) ? at_expiry : v;
}

/* Status and price of one row; the price is NaN when the status is not 0. */
PG_INLINE double pg_barrier_point(int btype, int option_type, double K, double T, double S,
                                  double r, double q, double vol, double H, double R,
                                  int *status)
{
    int st = pg_barrier_check(btype, option_type, K, T, S, r, q, vol, H, R);
    const double v = pg_barrier_value(btype, option_type, K, T, S, r, q, vol, H, R);
    st |= (st == 0 && !pg_finite(v)) ? PG_NOT_FINITE : 0;
    *status = st;
    return st ? NAN : v;
}

PG_INLINE int pg_digital_check(int payoff, int option_type, double strike, double time,
                               double spot, double rate, double dividend, double vol,
                               double cash)
{
    int s = pg_check_inputs(PG_MODEL_BSM, option_type, strike, time, spot, rate, dividend)
            | pg_check_vol(vol);
    const int cash_ok = (payoff != PG_DIGITAL_CASH) || (cash >= 0.0 && cash <= PG_DBL_MAX);
    s |= cash_ok ? 0 : PG_BAD_REBATE;
    return s;
}

/* The price of one valid digital row (payoff 1 cash-or-nothing, 2 asset-or-nothing). */
PG_INLINE double pg_digital_value(int payoff, int option_type, double K, double T, double S,
                                  double r, double q, double vol, double cash)
{
    const double phi = (option_type == PG_PUT) ? -1.0 : 1.0;
    const double sd0 = vol * sqrt(T);
    const double sd = (sd0 > PG_DBL_MIN) ? sd0 : PG_DBL_MIN;
    const double d1 = pg_clamp_d((log(S / K) + (r - q) * T) / sd + 0.5 * sd);
    const double d2 = pg_clamp_d(d1 - sd);
    const int asset = (payoff == PG_DIGITAL_ASSET);
    const double amount = asset ? S * exp(-q * T) : cash * exp(-r * T);
    const double v = amount * pg_norm_cdf(phi * (asset ? d1 : d2));
    const double step = (phi * (S - K) > 0.0) ? 1.0 : ((S == K) ? 0.5 : 0.0);
    return (T == 0.0) ? (asset ? S : cash) * step : v;
}

PG_INLINE double pg_digital_point(int payoff, int option_type, double K, double T, double S,
                                  double r, double q, double vol, double cash, int *status)
{
    int st = pg_digital_check(payoff, option_type, K, T, S, r, q, vol, cash);
    const double v = pg_digital_value(payoff, option_type, K, T, S, r, q, vol, cash);
    st |= (st == 0 && !pg_finite(v)) ? PG_NOT_FINITE : 0;
    *status = st;
    return st ? NAN : v;
}

/* ------------------------------------------------------------------ block loops */

/* The caller's arrays (each of length n, or 1 when its PG_IN_* bit is set in broadcast).
 * For digitals `rebate` is the cash amount and `barrier` is not read. */
typedef struct {
    const int *option_type;
    const double *strike, *time, *spot, *rate, *dividend, *vol, *barrier, *rebate;
    int broadcast;
    ptrdiff_t n;
} pg_barrier_inputs;

typedef struct {
    PG_ALIGNED int type_b[PG_BARRIER_BLOCK];
    PG_ALIGNED double K_b[PG_BARRIER_BLOCK], T_b[PG_BARRIER_BLOCK], S_b[PG_BARRIER_BLOCK],
        r_b[PG_BARRIER_BLOCK], q_b[PG_BARRIER_BLOCK], vol_b[PG_BARRIER_BLOCK],
        H_b[PG_BARRIER_BLOCK], R_b[PG_BARRIER_BLOCK];
    PG_ALIGNED int status[PG_BARRIER_BLOCK];
} pg_barrier_buffers;

/* NaN the outputs of failed rows, copy the status out; returns the failed-row count. */
PG_INLINE ptrdiff_t pg_barrier_finish(const int *st, ptrdiff_t start, int m, double *out,
                                      int *status)
{
    int nbad = 0;
    #pragma omp simd reduction(+:nbad)
    for (int i = 0; i < m; i++) nbad += (st[i] != 0);
    memcpy(status + start, st, (size_t)m * sizeof(int));
    if (nbad)
        for (int i = 0; i < m; i++)
            if (st[i]) out[start + i] = NAN;
    return nbad;
}

/* Barrier rows [start, start + m) of a batch: out[row], status[row]. btype is 1..4 (the
 * caller validates it). Returns the number of rows with a non-zero status. */
static ptrdiff_t pg_barrier_block(int btype, const pg_barrier_inputs *in, ptrdiff_t start,
                                  int m, double *out, int *status)
{
    pg_barrier_buffers bb;
    pg_barrier_buffers *b = &bb;
    const int bc = in->broadcast;
    const int *type = pg_block_input_i(b->type_b, in->option_type, start, m, bc & PG_IN_OPTION_TYPE);
    const double *K = pg_block_input_d(b->K_b, in->strike, start, m, bc & PG_IN_STRIKE);
    const double *T = pg_block_input_d(b->T_b, in->time, start, m, bc & PG_IN_TIME);
    const double *S = pg_block_input_d(b->S_b, in->spot, start, m, bc & PG_IN_UNDERLYING);
    const double *r = pg_block_input_d(b->r_b, in->rate, start, m, bc & PG_IN_RATE);
    const double *q = pg_block_input_d(b->q_b, in->dividend, start, m, bc & PG_IN_DIVIDEND);
    const double *vol = pg_block_input_d(b->vol_b, in->vol, start, m, bc & PG_IN_VOL);
    const double *H = pg_block_input_d(b->H_b, in->barrier, start, m, bc & PG_IN_BARRIER);
    const double *R = pg_block_input_d(b->R_b, in->rebate, start, m, bc & PG_IN_REBATE);
    double *o = out + start;
    int *st = b->status;

    #pragma omp simd
    for (int i = 0; i < m; i++) {
        int s = pg_barrier_check(btype, type[i], K[i], T[i], S[i], r[i], q[i], vol[i], H[i], R[i]);
        const double v = pg_barrier_value(btype, type[i], K[i], T[i], S[i], r[i], q[i], vol[i],
                                          H[i], R[i]);
        s |= (s == 0 && !pg_finite(v)) ? PG_NOT_FINITE : 0;
        st[i] = s;
        o[i] = v;
    }
    return pg_barrier_finish(st, start, m, out, status);
}

/* Digital rows [start, start + m) of a batch (payoff 1 or 2, validated by the caller). */
static ptrdiff_t pg_digital_block(int payoff, const pg_barrier_inputs *in, ptrdiff_t start,
                                  int m, double *out, int *status)
{
    pg_barrier_buffers bb;
    pg_barrier_buffers *b = &bb;
    const int bc = in->broadcast;
    const int *type = pg_block_input_i(b->type_b, in->option_type, start, m, bc & PG_IN_OPTION_TYPE);
    const double *K = pg_block_input_d(b->K_b, in->strike, start, m, bc & PG_IN_STRIKE);
    const double *T = pg_block_input_d(b->T_b, in->time, start, m, bc & PG_IN_TIME);
    const double *S = pg_block_input_d(b->S_b, in->spot, start, m, bc & PG_IN_UNDERLYING);
    const double *r = pg_block_input_d(b->r_b, in->rate, start, m, bc & PG_IN_RATE);
    const double *q = pg_block_input_d(b->q_b, in->dividend, start, m, bc & PG_IN_DIVIDEND);
    const double *vol = pg_block_input_d(b->vol_b, in->vol, start, m, bc & PG_IN_VOL);
    const double *Q = pg_block_input_d(b->R_b, in->rebate, start, m, bc & PG_IN_REBATE);
    double *o = out + start;
    int *st = b->status;

    #pragma omp simd
    for (int i = 0; i < m; i++) {
        int s = pg_digital_check(payoff, type[i], K[i], T[i], S[i], r[i], q[i], vol[i], Q[i]);
        const double v = pg_digital_value(payoff, type[i], K[i], T[i], S[i], r[i], q[i], vol[i], Q[i]);
        s |= (s == 0 && !pg_finite(v)) ? PG_NOT_FINITE : 0;
        st[i] = s;
        o[i] = v;
    }
    return pg_barrier_finish(st, start, m, out, status);
}

#endif
