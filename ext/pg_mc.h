/* Monte Carlo engine: European, Asian, single-barrier and lookback options under GBM and
 * Heston, with Greeks by bumping with common random numbers. The design note with the
 * references is at the top of montecarlo.pyx; this file is the engine it describes.
 *
 * 1. Pointwise: pg_mc_load_row / pg_mc_check_row read and validate one row;
 *    pg_mc_row_steps sizes its time grid and pg_mc_build_grid fills it; pg_mc_black and
 *    pg_mc_geo_moments are the closed forms behind the control variates; pg_mc_expiry
 *    prices a row at T = 0.
 * 2. Loops: pg_mc_unit simulates one work unit (one row, one replicate, one block of
 *    PG_MC_BLOCK draws) in chunks of PG_MC_L lanes (paths); every lane loop is an
 *    `omp simd` loop. It writes, per requested measure, the unit's sample statistics
 *    (count, means, centred second moments of the estimate and its control).
 *    pg_mc_fold combines a row's units in their fixed order (Chan, Golub and LeVeque's
 *    pairwise update) into per-replicate statistics, and pg_mc_finish turns those into
 *    the estimate and its standard error. A row's result depends only on its own inputs,
 *    the settings and the seed: not on the thread count, not on its place in the batch.
 *    Stopping (pg_stop.h, st->stop): pg_mc_unit polls every PG_MC_POLL_STEPS chunk-steps
 *    (a chunk's path steps counted across chunks; ~0.2-2 ms of work) and returns early when
 *    stopped; the row loops poll between rows and units. A row cut short is then given
 *    PG_CANCELLED by the caller (its statistics are partial and never stored).
 * 3. Per chunk, a step of the path updates each *path class* (a set of model parameters and
 *    a time grid: base, vol up/down, expiry down/up for theta), then each *scenario* (a
 *    class plus spot, rate and dividend yield: the base, and the bumps each Greek needs)
 *    from its class's log-path with scalar per-step factors. All classes and scenarios use
 *    the same normals (common random numbers).
 */
#ifndef PG_MC_H
#define PG_MC_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg_status.h"
#include "pg_inputs.h"     /* pg_check_inputs, PG_DBL_MAX */
#include "pg_mc_rng.h"     /* Philox, Box-Muller, Sobol, pg_normal.h */
#include "pg_stop.h"       /* cancellation and deadline */

#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__FAST_MATH__) \
    && !defined(PG_NO_LIBMVEC) && __GLIBC_PREREQ(2, 35)
extern double erfc(double) __attribute__((__simd__("notinbranch")));
#endif

#ifdef _OPENMP
#include <omp.h>
static inline int pg_mc_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int pg_mc_max_threads(void) { return 1; }
#endif

#if defined(__GNUC__)
#define PG_MC_ALIGN __attribute__((aligned(64)))
#else
#define PG_MC_ALIGN
#endif

/* max/min as selects: gcc does not vectorise fmax/fmin (their NaN rules) without
 * -ffinite-math-only, which we do not use. */
#define PG_MC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PG_MC_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ------------------------------------------------------------------ constants */

#ifndef PG_MC_L
#define PG_MC_L            64       /* lanes (paths) per chunk */
#endif
#define PG_MC_BLOCK        2048     /* draws per work unit (a multiple of PG_MC_L) */
#define PG_MC_REPLICATES   16       /* independent digital shifts of the Sobol points */
#define PG_MC_MAX_STEPS    (1 << 20)
#define PG_MC_MIN_PATHS    32
/* stop polls (pg_stop.h): every PG_MC_POLL_STEPS chunk-steps of a unit (64 lanes x 256 steps
 * is 0.1-2 ms of work, by product and measures), every PG_MC_POLL_UNITS units of a row (a
 * one-step unit is ~10-20 us); both powers of two */
#define PG_MC_POLL_STEPS   256
#define PG_MC_POLL_UNITS   64
#define PG_MC_NCLASS       5
#define PG_MC_NSCEN        14
#define PG_MC_NMEASURE     7
#define PG_MC_NSTAT        6        /* n, mean y, mean x, Myy, Mxx, Mxy */

/* products */
#define PG_MC_EUROPEAN  1
#define PG_MC_ASIAN     2
#define PG_MC_BARRIER   3
#define PG_MC_LOOKBACK  4

/* models (pricegrid.v1.Model numbers: 1 BSM; 4 Heston) and Heston schemes */
#define PG_MC_GBM     1
#define PG_MC_HESTON  4
#define PG_MC_QE      1
#define PG_MC_FTE     2

/* variants */
#define PG_MC_ARITHMETIC 1
#define PG_MC_GEOMETRIC  2
#define PG_MC_DOWN_IN    1
#define PG_MC_DOWN_OUT   2
#define PG_MC_UP_IN      3
#define PG_MC_UP_OUT     4
#define PG_MC_FLOATING   1
#define PG_MC_FIXED      2

/* control variates */
#define PG_MC_CV_NONE     0
#define PG_MC_CV_SPOT     1   /* discounted spot at the last grid time */
#define PG_MC_CV_VANILLA  2   /* European payoff on the (shadow) GBM path: Black-Scholes mean */
#define PG_MC_CV_GEO      3   /* geometric average on the (shadow) GBM path: lognormal mean */

/* grid point flags */
#define PG_MC_FLAG_FIX 1
#define PG_MC_FLAG_MON 2

/* Bumps for the Greeks (central differences with common random numbers). */
#define PG_MC_BUMP_DELTA  1e-3          /* relative spot bump, delta */
#define PG_MC_BUMP_GAMMA  1e-2          /* relative spot bump, gamma */
#define PG_MC_BUMP_VOL    1e-3          /* vol (GBM, at most vol/2) or sqrt(v0) (Heston) */
#define PG_MC_BUMP_RATE   1e-3          /* rate and dividend yield */
#define PG_MC_BUMP_TIME   (1.0 / 365.0) /* theta; at most half the first event time */

/* Measure codes (pricegrid.v1.Measure) */
#define PG_MC_PRICE 1
#define PG_MC_DELTA 2
#define PG_MC_GAMMA 3
#define PG_MC_VEGA  4
#define PG_MC_THETA 5
#define PG_MC_RHO   6
#define PG_MC_DRHO  7

/* Broadcast bits of the input columns. */
#define PG_MC_IN_OPTION_TYPE (1u << 0)
#define PG_MC_IN_VARIANT     (1u << 1)
#define PG_MC_IN_STRIKE      (1u << 2)
#define PG_MC_IN_TIME        (1u << 3)
#define PG_MC_IN_SPOT        (1u << 4)
#define PG_MC_IN_RATE        (1u << 5)
#define PG_MC_IN_DIVIDEND    (1u << 6)
#define PG_MC_IN_VOL         (1u << 7)
#define PG_MC_IN_V0          (1u << 8)
#define PG_MC_IN_KAPPA       (1u << 9)
#define PG_MC_IN_THETA       (1u << 10)
#define PG_MC_IN_SIGMA       (1u << 11)
#define PG_MC_IN_RHO         (1u << 12)
#define PG_MC_IN_RUNNING     (1u << 13)
#define PG_MC_IN_PAST        (1u << 14)
#define PG_MC_IN_ELAPSED     (1u << 15)
#define PG_MC_IN_BARRIER     (1u << 16)
#define PG_MC_IN_REBATE      (1u << 17)
#define PG_MC_IN_MONITORING  (1u << 18)
#define PG_MC_IN_RUN_MIN     (1u << 19)
#define PG_MC_IN_RUN_MAX     (1u << 20)
#define PG_MC_IN_FIX_COUNT   (1u << 21)

/* ------------------------------------------------------------------ inputs and settings */

typedef struct {
    int product;
    unsigned int broadcast;
    const int *option_type, *variant;
    const double *strike, *time, *spot, *rate, *dividend;
    const double *vol, *v0, *kappa, *theta, *sigma, *rho;
    /* Asian: fixing times of row i are fixing_times[fix_offset[i] .. + fixing_counts[i]) */
    const double *fixing_times;
    const int64_t *fix_offset;       /* n entries; all 0 for a shared schedule */
    const int *fixing_counts;
    const double *running;
    const int *past;
    const double *elapsed;
    /* barrier */
    const double *barrier, *rebate, *monitoring;
    int beyond_touched;              /* a spot beyond the barrier is touched (ext/pg_barrier.h, note 3) */
    /* lookback */
    const double *run_min, *run_max;
} pg_mc_inputs;

typedef struct {
    int model, scheme;
    int64_t paths;
    double max_step;
    uint64_t seed;
    int antithetic, control_variate, sobol, bridge;
    /* Sobol direction numbers v[b * sobol_stride + d], b < sobol_bits */
    const uint32_t *sobol_v;
    int sobol_stride, sobol_bits;
    /* requested measures */
    int nmeas;
    const int *meas;
    /* the stop block (pg_stop.h) or NULL */
    int64_t *stop;
    /* derived (pg_mc_settings_derive) */
    int64_t draws;            /* independent draws: paths, or ceil(paths / 2) antithetic pairs */
    int replicates;           /* 1, or PG_MC_REPLICATES with Sobol */
    int64_t draws_per_rep;
    int64_t blocks_per_rep;
    int64_t units;            /* work units per row: replicates x blocks_per_rep */
    int chunk_draws;          /* draws per chunk of PG_MC_L lanes */
} pg_mc_settings;

static inline void pg_mc_settings_derive(pg_mc_settings *st)
{
    st->draws = st->antithetic ? (st->paths + 1) / 2 : st->paths;
    st->replicates = st->sobol ? PG_MC_REPLICATES : 1;
    st->draws_per_rep = (st->draws + st->replicates - 1) / st->replicates;
    st->blocks_per_rep = (st->draws_per_rep + PG_MC_BLOCK - 1) / PG_MC_BLOCK;
    st->units = st->blocks_per_rep * st->replicates;
    st->chunk_draws = st->antithetic ? PG_MC_L / 2 : PG_MC_L;
}

typedef struct {
    int product, model, scheme;
    int option_type, variant;
    double w;                 /* +1 call, -1 put */
    double K, T, S0, r, q;
    double vol, v0, kappa, theta, sigma, rho;
    const double *fix;
    int nfix, past;
    double run, elapsed;
    double H, R, mon;
    double rmin, rmax;
    int touched;              /* barrier: spot at it, hit now (a knock-in then runs as European) */
} pg_mc_row;

#define PG_MC_AT(col, bit, i) ((col)[(in->broadcast & (bit)) ? 0 : (i)])

static inline void pg_mc_load_row(const pg_mc_inputs *in, const pg_mc_settings *st,
                                  ptrdiff_t i, pg_mc_row *row)
{
    memset(row, 0, sizeof(*row));
    row->product = in->product;
    row->model = st->model;
    row->scheme = st->scheme;
    row->option_type = PG_MC_AT(in->option_type, PG_MC_IN_OPTION_TYPE, i);
    row->w = row->option_type == PG_PUT ? -1.0 : 1.0;
    row->variant = in->variant ? PG_MC_AT(in->variant, PG_MC_IN_VARIANT, i) : 0;
    row->K = PG_MC_AT(in->strike, PG_MC_IN_STRIKE, i);
    row->T = PG_MC_AT(in->time, PG_MC_IN_TIME, i);
    row->S0 = PG_MC_AT(in->spot, PG_MC_IN_SPOT, i);
    row->r = PG_MC_AT(in->rate, PG_MC_IN_RATE, i);
    row->q = PG_MC_AT(in->dividend, PG_MC_IN_DIVIDEND, i);
    if (st->model == PG_MC_GBM) {
        row->vol = PG_MC_AT(in->vol, PG_MC_IN_VOL, i);
    } else {
        row->v0 = PG_MC_AT(in->v0, PG_MC_IN_V0, i);
        row->kappa = PG_MC_AT(in->kappa, PG_MC_IN_KAPPA, i);
        row->theta = PG_MC_AT(in->theta, PG_MC_IN_THETA, i);
        row->sigma = PG_MC_AT(in->sigma, PG_MC_IN_SIGMA, i);
        row->rho = PG_MC_AT(in->rho, PG_MC_IN_RHO, i);
    }
    if (in->product == PG_MC_ASIAN) {
        row->nfix = PG_MC_AT(in->fixing_counts, PG_MC_IN_FIX_COUNT, i);
        row->fix = in->fixing_times + in->fix_offset[i];
        row->run = PG_MC_AT(in->running, PG_MC_IN_RUNNING, i);
        row->past = PG_MC_AT(in->past, PG_MC_IN_PAST, i);
        row->elapsed = PG_MC_AT(in->elapsed, PG_MC_IN_ELAPSED, i);
    } else if (in->product == PG_MC_BARRIER) {
        row->H = PG_MC_AT(in->barrier, PG_MC_IN_BARRIER, i);
        row->R = PG_MC_AT(in->rebate, PG_MC_IN_REBATE, i);
        row->mon = PG_MC_AT(in->monitoring, PG_MC_IN_MONITORING, i);
        /* spot at the barrier, or beyond it with beyond_touched: touched now (ext/pg_barrier.h,
         * note 3); a knock-in is the European from here, a knock-out its rebate (pg_mc_expiry) */
        const int down = row->variant == PG_MC_DOWN_IN || row->variant == PG_MC_DOWN_OUT;
        const int beyond = down ? (row->S0 < row->H) : (row->S0 > row->H);
        row->touched = (row->S0 == row->H) || (in->beyond_touched && beyond);
        if (row->touched && (row->variant == PG_MC_DOWN_IN || row->variant == PG_MC_UP_IN))
            row->product = PG_MC_EUROPEAN;
    } else if (in->product == PG_MC_LOOKBACK) {
        row->rmin = PG_MC_AT(in->run_min, PG_MC_IN_RUN_MIN, i);
        row->rmax = PG_MC_AT(in->run_max, PG_MC_IN_RUN_MAX, i);
    }
}

static inline int pg_mc_pos(double x) { return x > 0.0 && x <= PG_DBL_MAX; }

/* The status bits of one row (pg_status.h). */
static inline int pg_mc_check_row(const pg_mc_row *row)
{
    const int floating = row->product == PG_MC_LOOKBACK && row->variant == PG_MC_FLOATING;
    /* a floating-strike lookback has no strike: check the rest with a valid placeholder */
    int s = pg_check_inputs(PG_MODEL_BSM, row->option_type, floating ? 1.0 : row->K, row->T,
                            row->S0, row->r, row->q);
    if (row->model == PG_MC_GBM) {
        s |= pg_mc_pos(row->vol) ? 0 : PG_BAD_VOL;
    } else {
        s |= (row->v0 >= 0.0 && row->v0 <= PG_DBL_MAX) ? 0 : PG_BAD_HESTON_V0;
        s |= pg_mc_pos(row->kappa) ? 0 : PG_BAD_HESTON_KAPPA;
        s |= pg_mc_pos(row->theta) ? 0 : PG_BAD_HESTON_THETA;
        s |= pg_mc_pos(row->sigma) ? 0 : PG_BAD_HESTON_SIGMA;
        s |= (fabs(row->rho) < 1.0) ? 0 : PG_BAD_HESTON_RHO;
    }
    const int time_ok = !(s & PG_BAD_TIME), spot_ok = !(s & PG_BAD_UNDERLYING);
    if (row->product == PG_MC_ASIAN) {
        if (row->variant != PG_MC_ARITHMETIC && row->variant != PG_MC_GEOMETRIC)
            s |= PG_BAD_VARIANT;
        /* the path's state, checked whether or not the row reads it (pricegrid.ext.asian's
         * rule): a running average finite and >= 0 (> 0 for a geometric one whose averaging
         * began), past fixings >= 0, elapsed time finite and >= 0 */
        const int begun = row->nfix > 0 ? row->past > 0 : row->elapsed > 0.0;
        const int run_ok = (row->run >= 0.0 && row->run <= PG_DBL_MAX)
                           && !(row->variant == PG_MC_GEOMETRIC && begun && !(row->run > 0.0));
        s |= run_ok ? 0 : PG_BAD_RUNNING;
        s |= row->past >= 0 ? 0 : PG_BAD_PAST_FIXINGS;
        s |= (row->elapsed >= 0.0 && row->elapsed <= PG_DBL_MAX) ? 0 : PG_BAD_ELAPSED;
        if (row->nfix < 0) {
            s |= PG_BAD_FIXINGS;
        } else if (row->nfix > 0) {
            double prev = 0.0;
            for (int j = 0; j < row->nfix; j++) {
                const double t = row->fix[j];
                if (!(t > prev && t <= PG_DBL_MAX) || (time_ok && t > row->T)) {
                    s |= PG_BAD_FIXINGS;
                    break;
                }
                prev = t;
            }
        }
    } else if (row->product == PG_MC_BARRIER || row->touched) {
        const int v = row->variant;
        if (v < PG_MC_DOWN_IN || v > PG_MC_UP_OUT) {
            s |= PG_BAD_VARIANT;
        } else {
            const int down = v == PG_MC_DOWN_IN || v == PG_MC_DOWN_OUT;
            int ok = pg_mc_pos(row->H);
            if (ok && spot_ok)   /* ==, or beyond with beyond_touched: touched */
                ok = row->touched || (down ? row->H <= row->S0 : row->H >= row->S0);
            s |= ok ? 0 : PG_BAD_BARRIER;
        }
        s |= (row->R >= 0.0 && row->R <= PG_DBL_MAX) ? 0 : PG_BAD_REBATE;
        s |= (row->mon >= 0.0 && row->mon <= PG_DBL_MAX) ? 0 : PG_BAD_MONITORING;
    } else if (row->product == PG_MC_LOOKBACK) {
        if (row->variant != PG_MC_FLOATING && row->variant != PG_MC_FIXED)
            s |= PG_BAD_VARIANT;
        /* both extremes, also the one the payoff does not read (as pricegrid.ext.lookback):
         * finite, > 0, min <= spot <= max */
        s |= (pg_mc_pos(row->rmin) && !(spot_ok && row->rmin > row->S0)) ? 0 : PG_BAD_RUNNING;
        s |= (pg_mc_pos(row->rmax) && !(spot_ok && row->rmax < row->S0)) ? 0 : PG_BAD_RUNNING_MAX;
        /* a floating strike is not read: finite and >= 0 (0 when unset) */
        if (row->variant == PG_MC_FLOATING)
            s |= (row->K >= 0.0 && row->K <= PG_DBL_MAX) ? 0 : PG_BAD_STRIKE;
    }
    return s;
}

/* ------------------------------------------------------------------ time grid */

/* Events (grid times that must be hit) of a valid row with T > 0, in increasing order:
 *   European, continuous Asian, continuous barrier, lookback: {T}
 *   discrete Asian: the fixing times (the path after the last fixing is not needed)
 *   discrete barrier (interval D): T - j D > 0, j = J .. 0 (counted back from expiry, so
 *   that expiry is monitored and the dates keep their place as the option ages) */
static inline int64_t pg_mc_nevents(const pg_mc_row *row, double *first)
{
    if (row->product == PG_MC_ASIAN && row->nfix > 0) {
        *first = row->fix[0];
        return row->nfix;
    }
    if (row->product == PG_MC_BARRIER && row->mon > 0.0) {
        const double J = floor(row->T / row->mon);
        int64_t j = (J > (double)PG_MC_MAX_STEPS) ? (int64_t)PG_MC_MAX_STEPS + 1 : (int64_t)J;
        /* a date within 1e-12 T of today is today's (spot is live): not an event */
        while (j > 0 && row->T - (double)j * row->mon <= 1e-12 * row->T)
            j--;
        *first = row->T - (double)j * row->mon;
        return j + 1;
    }
    *first = row->T;
    return 1;
}

static inline double pg_mc_event(const pg_mc_row *row, int64_t nev, int64_t i, int *flag)
{
    if (row->product == PG_MC_ASIAN && row->nfix > 0) {
        *flag = PG_MC_FLAG_FIX;
        return row->fix[i];
    }
    if (row->product == PG_MC_BARRIER && row->mon > 0.0) {
        *flag = PG_MC_FLAG_MON;
        return (i == nev - 1) ? row->T : row->T - (double)(nev - 1 - i) * row->mon;
    }
    *flag = 0;
    return row->T;
}

/* Steps of the interval (a, b]: at most max_step each (1 for a GBM European: exact). */
static inline int64_t pg_mc_interval_steps(const pg_mc_row *row, double len, double max_step)
{
    if (row->product == PG_MC_EUROPEAN && row->model == PG_MC_GBM)
        return 1;
    const double x = len / max_step * (1.0 - 1e-12);
    if (!(x < (double)PG_MC_MAX_STEPS))
        return (int64_t)PG_MC_MAX_STEPS + 1;
    const int64_t s = (int64_t)ceil(x);
    return s < 1 ? 1 : s;
}

/* Time steps of a valid row with T > 0 (PG_MC_MAX_STEPS + 1 when there would be more). */
static inline int64_t pg_mc_row_steps(const pg_mc_row *row, double max_step)
{
    double first;
    const int64_t nev = pg_mc_nevents(row, &first);
    if (nev > PG_MC_MAX_STEPS)
        return (int64_t)PG_MC_MAX_STEPS + 1;
    int64_t m = 0;
    double prev = 0.0;
    for (int64_t i = 0; i < nev; i++) {
        int flag;
        const double e = pg_mc_event(row, nev, i, &flag);
        m += pg_mc_interval_steps(row, e - prev, max_step);
        if (m > PG_MC_MAX_STEPS)
            return (int64_t)PG_MC_MAX_STEPS + 1;
        prev = e;
    }
    return m;
}

/* Brownian drivers of the model (GBM 1; Heston 2: variance, then the spot's own). */
static inline int pg_mc_nbm(const pg_mc_row *row) { return row->model == PG_MC_GBM ? 1 : 2; }

/* Random numbers per step: the drivers, plus one for the lookback's bridge extreme. */
static inline int pg_mc_dps(const pg_mc_row *row)
{
    return pg_mc_nbm(row) + (row->product == PG_MC_LOOKBACK ? 1 : 0);
}

/* One time grid: t[0] = 0 < t[1] < ... < t[m]; flag[k] marks fixings / monitoring dates;
 * wt[k] the averaging weight of S(t_k) (Asian). */
typedef struct {
    double *t, *dt, *sqdt, *wt;
    unsigned char *flag;
    double T;          /* expiry */
    double kw_run;     /* Asian: weight of the running average (past / N, or elapsed / window) */
    double kw_spot;    /* Asian, continuous, theta grids: weight of today's spot absorbed into
                        * (aged) or taken out of (younger) the known part */
} pg_mc_grid;

/* Fill grid g of a row with all event times moved by `shift` (theta: -h ages the option,
 * +h makes it younger; expiry moves with them); the steps per interval are the base grid's. */
static inline void pg_mc_build_grid(const pg_mc_row *row, double max_step, double shift,
                                    pg_mc_grid *g, int64_t m)
{
    double first;
    const int64_t nev = pg_mc_nevents(row, &first);
    double prev_base = 0.0, prev = 0.0;
    int64_t k = 0;
    g->t[0] = 0.0;
    g->flag[0] = 0;
    for (int64_t i = 0; i < nev; i++) {
        int flag;
        const double eb = pg_mc_event(row, nev, i, &flag);
        const double e = eb + shift;
        const int64_t n = pg_mc_interval_steps(row, eb - prev_base, max_step);
        const double len = e - prev;
        for (int64_t j = 1; j <= n; j++) {
            k++;
            g->t[k] = (j == n) ? e : prev + len * ((double)j / (double)n);
            g->flag[k] = (j == n) ? (unsigned char)flag : 0;
        }
        prev_base = eb;
        prev = e;
    }
    g->T = row->T + shift;
    for (k = 1; k <= m; k++) {
        g->dt[k] = g->t[k] - g->t[k - 1];
        g->sqdt[k] = sqrt(g->dt[k]);
    }
    g->dt[0] = 0.0;
    g->sqdt[0] = 0.0;
    /* averaging weights */
    for (k = 0; k <= m; k++)
        g->wt[k] = 0.0;
    g->kw_run = 0.0;
    g->kw_spot = 0.0;
    if (row->product == PG_MC_ASIAN) {
        if (row->nfix > 0) {
            /* discrete: the past fixings stay as given (theta moves the future ones) */
            const double N = (double)row->past + (double)row->nfix;
            for (k = 1; k <= m; k++)
                g->wt[k] = (g->flag[k] & PG_MC_FLAG_FIX) ? 1.0 / N : 0.0;
            g->kw_run = (double)row->past / N;
        } else {
            /* continuous: trapezoidal rule on the grid over [0, T + shift]; the window
             * [-elapsed, T] keeps its start: aged by h (shift -h), the known part has
             * absorbed h of the path at today's spot (as pricegrid.ext.asian's theta) */
            const double len = row->elapsed + row->T;
            for (k = 0; k <= m; k++) {
                const double left = (k > 0) ? g->dt[k] : 0.0;
                const double right = (k < m) ? g->dt[k + 1] : 0.0;
                g->wt[k] = 0.5 * (left + right) / len;
            }
            g->kw_run = row->elapsed / len;
            g->kw_spot = -shift / len;
        }
    }
}

/* ------------------------------------------------------------------ closed forms */

/* DF w (F N(w d1) - K N(w d2)) for lognormal F with total deviation s (s = 0: intrinsic). */
static inline double pg_mc_black(double w, double F, double K, double DF, double s)
{
    if (!(s > 0.0))
        return DF * fmax(w * (F - K), 0.0);
    const double d1 = log(F / K) / s + 0.5 * s, d2 = d1 - s;
    return DF * w * (F * pg_norm_cdf(w * d1) - K * pg_norm_cdf(w * d2));
}

/* ln G = c + sum_k wt[k] (lg_k + X_k), X_k = -sig^2 t_k/2 + sig W(t_k), lg_k = lnS0 + b t_k:
 * its mean and variance (s2 = sig^2 sum_k dt_k (sum_{j >= k} wt[j])^2). */
static inline void pg_mc_geo_moments(const pg_mc_grid *g, int64_t m, double c, double lnS0,
                                     double b, double sig, double *mean, double *var)
{
    double mu = c, tail = 0.0, s2 = 0.0;
    for (int64_t k = m; k >= 0; k--) {
        mu += g->wt[k] * (lnS0 + (b - 0.5 * sig * sig) * g->t[k]);
        tail += g->wt[k];
        if (k > 0)
            s2 += g->dt[k] * tail * tail;
    }
    *mean = mu;
    *var = sig * sig * s2;
}

/* Heston: the expected average variance over [0, T] (the shadow GBM's variance). */
static inline double pg_mc_heston_avg_var(double v0, double kappa, double theta, double T)
{
    const double kT = kappa * T;
    const double f = (kT > 1e-8) ? -expm1(-kT) / kT : 1.0 - 0.5 * kT;
    return theta + (v0 - theta) * f;
}

/* ------------------------------------------------------------------ classes and scenarios */

typedef struct {
    PG_MC_ALIGN double x[PG_MC_L];    /* log(S_t / S0) - (r - q) t  (drift-free log path) */
    PG_MC_ALIGN double xp[PG_MC_L];   /* the same at the previous grid time */
    PG_MC_ALIGN double v[PG_MC_L];    /* Heston variance */
    PG_MC_ALIGN double var[PG_MC_L];  /* variance of the log path over the last step */
    PG_MC_ALIGN double xs[PG_MC_L];   /* shadow GBM log path (Heston control variates) */
    PG_MC_ALIGN double gx[PG_MC_L];   /* sum_k wt[k] x_k */
    PG_MC_ALIGN double gxs[PG_MC_L];  /* sum_k wt[k] xs_k */
    PG_MC_ALIGN double e[PG_MC_L];    /* exp(x) at the current step (arithmetic averages) */
    int grid;                          /* 0 base, 1 aged (T - h), 2 younger (T + h) */
    double vol, v0, sig_sh;
} pg_mc_class;

typedef struct {
    PG_MC_ALIGN double acc[PG_MC_L];  /* arithmetic average so far */
    PG_MC_ALIGN double surv[PG_MC_L]; /* barrier: survival probability (indicator if discrete) */
    PG_MC_ALIGN double reb[PG_MC_L];  /* knock-out: discounted rebate paid at hits */
    PG_MC_ALIGN double ext[PG_MC_L];  /* lookback: log running extreme */
    PG_MC_ALIGN double y[PG_MC_L];    /* discounted payoff */
    PG_MC_ALIGN double xc[PG_MC_L];   /* discounted control payoff */
    int cls;
    double S0, lnS0, r, q, DF, T;
    double mu;          /* mean of the control */
    double c_arith;     /* Asian: known part of the arithmetic average */
    double c_geo;       /* Asian: known part of ln G plus sum_k wt[k] lg_k */
    double c_ctrl;      /* the same for the geometric control (arithmetic rows: a running
                         * average of 0 is replaced by spot, any constant will do) */
    double lgp;         /* lg at the previous grid time */
} pg_mc_scen;

typedef struct { int scen; double coef; } pg_mc_term;

typedef struct {
    int nterm;
    pg_mc_term term[4];
} pg_mc_measure;

/* Per-thread work space. */
typedef struct {
    int64_t m_cap, dims_cap;
    pg_mc_grid grid[3];
    double *gridmem;
    unsigned char *flagmem;
    /* Brownian bridge plan */
    int64_t *b_i, *b_l, *b_r, *q_a, *q_b;
    double *b_wl, *b_wr, *b_sd;
    /* buffered normals [dim][lane] and bridge values [k][lane] */
    double *zbuf, *wbuf;
    uint32_t *sob_x, *sob_shift;
    PG_MC_ALIGN double z[3][PG_MC_L];   /* normals of the current step */
    PG_MC_ALIGN double lnu[PG_MC_L];    /* lookback: log of the extreme's uniform */
    pg_mc_class cls[PG_MC_NCLASS];
    pg_mc_scen scen[PG_MC_NSCEN];
    int ncls_active[PG_MC_NCLASS];
    int nscen_active[PG_MC_NSCEN];
    pg_mc_measure meas[PG_MC_NMEASURE];
    PG_MC_ALIGN double sy[PG_MC_L];
    PG_MC_ALIGN double sx[PG_MC_L];
    /* one-step pseudo-random paths: the normals of the whole block, generated at once */
    PG_MC_ALIGN double zblk[PG_MC_BLOCK];
    PG_MC_ALIGN double xblk[PG_MC_BLOCK];   /* ... and their control payoffs (price only) */
} pg_mc_work;

static inline void pg_mc_work_free(pg_mc_work *w)
{
    if (!w)
        return;
    free(w->gridmem);
    free(w->flagmem);
    free(w->b_i);
    free(w->b_wl);
    free(w->zbuf);
    free(w->wbuf);
    free(w->sob_x);
    free(w);
}

/* A work space for grids of up to m_cap steps; buffered (Sobol or bridge) needs the normals
 * of a whole chunk: dims_cap = m_cap * (normals per step). NULL when out of memory. */
static inline pg_mc_work *pg_mc_work_new(int64_t m_cap, int buffered, int dps)
{
    pg_mc_work *w = (pg_mc_work *)aligned_alloc(64, (sizeof(pg_mc_work) + 63) / 64 * 64);
    if (!w)
        return NULL;
    memset(w, 0, sizeof(*w));
    w->m_cap = m_cap;
    w->dims_cap = m_cap * dps;
    const size_t mp = (size_t)m_cap + 1;
    w->gridmem = (double *)malloc(3 * 4 * mp * sizeof(double));
    w->flagmem = (unsigned char *)malloc(3 * mp);
    w->b_i = (int64_t *)malloc(7 * mp * sizeof(int64_t));
    w->b_wl = (double *)malloc(3 * mp * sizeof(double));
    int ok = w->gridmem && w->flagmem && w->b_i && w->b_wl;
    if (buffered && ok) {
        w->zbuf = (double *)aligned_alloc(64, (size_t)w->dims_cap * PG_MC_L * sizeof(double));
        w->wbuf = (double *)aligned_alloc(64, mp * PG_MC_L * sizeof(double));
        w->sob_x = (uint32_t *)malloc(2 * (size_t)w->dims_cap * sizeof(uint32_t));
        ok = w->zbuf && w->wbuf && w->sob_x;
    }
    if (!ok) {
        pg_mc_work_free(w);
        return NULL;
    }
    for (int g = 0; g < 3; g++) {
        double *base = w->gridmem + (size_t)g * 4 * mp;
        w->grid[g].t = base;
        w->grid[g].dt = base + mp;
        w->grid[g].sqdt = base + 2 * mp;
        w->grid[g].wt = base + 3 * mp;
        w->grid[g].flag = w->flagmem + (size_t)g * mp;
    }
    w->b_l = w->b_i + mp;
    w->b_r = w->b_i + 2 * mp;
    w->q_a = w->b_i + 3 * mp;       /* 2 mp each: the queue holds at most 2 m + 1 intervals */
    w->q_b = w->b_i + 5 * mp;
    w->b_wr = w->b_wl + mp;
    w->b_sd = w->b_wl + 2 * mp;
    if (buffered)
        w->sob_shift = w->sob_x + w->dims_cap;
    return w;
}

/* ------------------------------------------------------------------ setup of one row */

static inline int pg_mc_cv_kind(const pg_mc_row *row)
{
    switch (row->product) {
    case PG_MC_EUROPEAN:
        return row->model == PG_MC_GBM ? PG_MC_CV_SPOT : PG_MC_CV_VANILLA;
    case PG_MC_ASIAN:
        if (row->model == PG_MC_GBM && row->variant == PG_MC_GEOMETRIC)
            return PG_MC_CV_SPOT;   /* the geometric payoff itself has a closed form */
        return PG_MC_CV_GEO;
    case PG_MC_BARRIER:
        return PG_MC_CV_VANILLA;
    case PG_MC_LOOKBACK:
        return row->variant == PG_MC_FLOATING ? PG_MC_CV_SPOT : PG_MC_CV_VANILLA;
    }
    return PG_MC_CV_NONE;
}

typedef struct {
    int64_t m;            /* steps */
    int dps;              /* normals per step */
    int nbm;              /* Brownian drivers among them */
    int cv;               /* control kind (PG_MC_CV_NONE when off) */
    int need_e;           /* arithmetic averages need exp(x) per weighted step */
    int shadow;           /* a separate shadow GBM path is simulated (Heston with a control) */
    int nscen, ncls;
    int scen_list[PG_MC_NSCEN];
    int cls_list[PG_MC_NCLASS];
    int ngrid;
    double lnH;
    double h_theta;
} pg_mc_plan;

/* Scenario indices (fixed), see the design note. */
enum { SC_BASE, SC_DUP, SC_DDN, SC_GUP, SC_GDN, SC_VUP, SC_VDN, SC_TAGE, SC_TYNG,
       SC_RUP, SC_RDN, SC_QUP, SC_QDN, SC_G3 };

/* Direction of the one-sided spot differences near the edge of a row's spot domain, or 0
 * (central differences). A barrier H or a lookback's running extremum M bounds the spot
 * (down: S > H; the maximum: S <= M): a central bump across it leaves the domain (a path
 * started beyond H is knocked at once; one started above M moves the maximum with it, so
 * the extremum is not held fixed, and for a new lookback, S = M, the central gamma is half
 * the fixed-extremum gamma of pricegrid.ext.lookback). When the gamma bump would reach the
 * edge, delta and gamma use second-order one-sided differences away from it:
 *   delta = d (-3 V0 + 4 V1 - V2) / (2 h),  gamma = (2 V0 - 5 V1 + 4 V2 - V3) / h^2,
 * V_j = V(S + j d h). */
static inline int pg_mc_edge_dir(const pg_mc_row *row)
{
    const double up = row->S0 * (1.0 + PG_MC_BUMP_GAMMA), dn = row->S0 * (1.0 - PG_MC_BUMP_GAMMA);
    if (row->product == PG_MC_BARRIER) {
        const int down = row->variant == PG_MC_DOWN_IN || row->variant == PG_MC_DOWN_OUT;
        return down ? (dn <= row->H ? 1 : 0) : (up >= row->H ? -1 : 0);
    }
    if (row->product == PG_MC_LOOKBACK) {
        const int use_max = (row->variant == PG_MC_FLOATING) == (row->w < 0.0);
        return use_max ? (up > row->rmax ? -1 : 0) : (dn < row->rmin ? 1 : 0);
    }
    return 0;
}
enum { CL_BASE, CL_VUP, CL_VDN, CL_TAGE, CL_TYNG };

/* Set up classes, grids, scenarios, control means and measure weights of a valid row with
 * T > 0 and m steps. */
static inline void pg_mc_setup(const pg_mc_row *row, const pg_mc_settings *st, int64_t m,
                               pg_mc_work *w, pg_mc_plan *p)
{
    memset(p, 0, sizeof(*p));
    p->m = m;
    p->dps = pg_mc_dps(row);
    p->nbm = pg_mc_nbm(row);
    p->cv = st->control_variate ? pg_mc_cv_kind(row) : PG_MC_CV_NONE;
    p->need_e = row->product == PG_MC_ASIAN && row->variant == PG_MC_ARITHMETIC;
    p->shadow = row->model != PG_MC_GBM
                && (p->cv == PG_MC_CV_VANILLA || p->cv == PG_MC_CV_GEO);
    p->lnH = row->product == PG_MC_BARRIER ? log(row->H) : 0.0;

    int want[PG_MC_NMEASURE + 1] = {0};
    for (int j = 0; j < st->nmeas; j++)
        want[st->meas[j]] = 1;

    double first;
    pg_mc_nevents(row, &first);
    const double h_t = fmin(PG_MC_BUMP_TIME, 0.5 * first);
    p->h_theta = h_t;
    const double S = row->S0;
    const double hd = PG_MC_BUMP_DELTA * S, hg = PG_MC_BUMP_GAMMA * S;
    double hv, vol_up, vol_dn, v0_up, v0_dn;
    if (row->model == PG_MC_GBM) {
        hv = fmin(PG_MC_BUMP_VOL, 0.5 * row->vol);
        vol_up = row->vol + hv;
        vol_dn = row->vol - hv;
        v0_up = v0_dn = 0.0;
    } else {
        hv = PG_MC_BUMP_VOL;
        const double s0 = sqrt(row->v0);
        v0_up = (s0 + hv) * (s0 + hv);
        v0_dn = (s0 - hv) * (s0 - hv);
        vol_up = vol_dn = 0.0;
    }
    const double hr = PG_MC_BUMP_RATE;

    /* scenarios: class, spot, rate, yield */
    static const int scen_cls[PG_MC_NSCEN] = {CL_BASE, CL_BASE, CL_BASE, CL_BASE, CL_BASE,
                                              CL_VUP, CL_VDN, CL_TAGE, CL_TYNG,
                                              CL_BASE, CL_BASE, CL_BASE, CL_BASE, CL_BASE};
    /* spot factors: central (+h, -h) or one-sided (d h, 2 d h, 3 d h) near a domain edge */
    const int edge = pg_mc_edge_dir(row);
    double fspot[PG_MC_NSCEN];
    for (int b = 0; b < PG_MC_NSCEN; b++)
        fspot[b] = 1.0;
    if (edge == 0) {
        fspot[SC_DUP] = 1.0 + PG_MC_BUMP_DELTA;
        fspot[SC_DDN] = 1.0 - PG_MC_BUMP_DELTA;
        fspot[SC_GUP] = 1.0 + PG_MC_BUMP_GAMMA;
        fspot[SC_GDN] = 1.0 - PG_MC_BUMP_GAMMA;
    } else {
        fspot[SC_DUP] = 1.0 + edge * PG_MC_BUMP_DELTA;
        fspot[SC_DDN] = 1.0 + 2.0 * edge * PG_MC_BUMP_DELTA;
        fspot[SC_GUP] = 1.0 + edge * PG_MC_BUMP_GAMMA;
        fspot[SC_GDN] = 1.0 + 2.0 * edge * PG_MC_BUMP_GAMMA;
        fspot[SC_G3] = 1.0 + 3.0 * edge * PG_MC_BUMP_GAMMA;
    }
    int active[PG_MC_NSCEN] = {0};
    active[SC_BASE] = 1;
    if (want[PG_MC_DELTA]) active[SC_DUP] = active[SC_DDN] = 1;
    if (want[PG_MC_GAMMA]) active[SC_GUP] = active[SC_GDN] = active[SC_G3] = 1;
    if (edge == 0)
        active[SC_G3] = 0;
    if (want[PG_MC_VEGA]) active[SC_VUP] = active[SC_VDN] = 1;
    if (want[PG_MC_THETA]) active[SC_TAGE] = active[SC_TYNG] = 1;
    if (want[PG_MC_RHO]) active[SC_RUP] = active[SC_RDN] = 1;
    if (want[PG_MC_DRHO]) active[SC_QUP] = active[SC_QDN] = 1;

    int cls_active[PG_MC_NCLASS] = {0};
    for (int b = 0; b < PG_MC_NSCEN; b++)
        if (active[b]) {
            p->scen_list[p->nscen++] = b;
            cls_active[scen_cls[b]] = 1;
        }
    for (int c = 0; c < PG_MC_NCLASS; c++)
        if (cls_active[c])
            p->cls_list[p->ncls++] = c;

    /* grids: 0 base, 1 aged, 2 younger */
    pg_mc_build_grid(row, st->max_step, 0.0, &w->grid[0], m);
    if (cls_active[CL_TAGE])
        pg_mc_build_grid(row, st->max_step, -h_t, &w->grid[1], m);
    if (cls_active[CL_TYNG])
        pg_mc_build_grid(row, st->max_step, +h_t, &w->grid[2], m);

    for (int c = 0; c < PG_MC_NCLASS; c++) {
        pg_mc_class *cl = &w->cls[c];
        cl->grid = (c == CL_TAGE) ? 1 : (c == CL_TYNG) ? 2 : 0;
        cl->vol = (c == CL_VUP) ? vol_up : (c == CL_VDN) ? vol_dn : row->vol;
        cl->v0 = (c == CL_VUP) ? v0_up : (c == CL_VDN) ? v0_dn : row->v0;
        if (row->model == PG_MC_GBM)
            cl->sig_sh = cl->vol;
        else
            cl->sig_sh = sqrt(fmax(pg_mc_heston_avg_var(cl->v0, row->kappa, row->theta,
                                                         w->grid[cl->grid].T), 0.0));
    }

    for (int b = 0; b < PG_MC_NSCEN; b++) {
        if (!active[b])
            continue;
        pg_mc_scen *sc = &w->scen[b];
        sc->cls = scen_cls[b];
        sc->S0 = S * fspot[b];
        sc->r = row->r + ((b == SC_RUP) ? hr : (b == SC_RDN) ? -hr : 0.0);
        sc->q = row->q + ((b == SC_QUP) ? hr : (b == SC_QDN) ? -hr : 0.0);
        sc->lnS0 = log(sc->S0);
        const pg_mc_class *cl = &w->cls[sc->cls];
        const pg_mc_grid *g = &w->grid[cl->grid];
        sc->T = g->T;
        sc->DF = exp(-sc->r * g->T);
        const double bq = sc->r - sc->q;
        /* Asian constants */
        sc->c_arith = 0.0;
        sc->c_geo = 0.0;
        sc->c_ctrl = 0.0;
        double c_known_ctrl = 0.0;
        if (row->product == PG_MC_ASIAN) {
            sc->c_arith = g->kw_run * row->run + g->kw_spot * sc->S0;
            sc->c_geo = g->kw_spot * sc->lnS0;
            c_known_ctrl = sc->c_geo;
            if (g->kw_run > 0.0) {
                sc->c_geo += g->kw_run * log(row->run);
                c_known_ctrl += g->kw_run * (row->run > 0.0 ? log(row->run) : sc->lnS0);
            }
            double s = 0.0;
            for (int64_t k = 0; k <= m; k++)
                s += g->wt[k] * (sc->lnS0 + bq * g->t[k]);
            sc->c_ctrl = c_known_ctrl + s;
            sc->c_geo += s;
        }
        /* control mean */
        sc->mu = 0.0;
        if (p->cv == PG_MC_CV_SPOT) {
            sc->mu = sc->DF * sc->S0 * exp(bq * g->t[m]);
        } else if (p->cv == PG_MC_CV_VANILLA) {
            sc->mu = pg_mc_black(row->w, sc->S0 * exp(bq * g->T), row->K, sc->DF,
                                 cl->sig_sh * sqrt(g->T));
        } else if (p->cv == PG_MC_CV_GEO) {
            double mean, var;
            pg_mc_geo_moments(g, m, c_known_ctrl, sc->lnS0, bq, cl->sig_sh, &mean, &var);
            sc->mu = pg_mc_black(row->w, exp(mean + 0.5 * var), row->K, sc->DF, sqrt(var));
        }
    }

    /* measures as combinations of scenarios */
    for (int j = 0; j < st->nmeas; j++) {
        pg_mc_measure *ms = &w->meas[j];
        switch (st->meas[j]) {
        case PG_MC_PRICE:
            ms->nterm = 1;
            ms->term[0] = (pg_mc_term){SC_BASE, 1.0};
            break;
        case PG_MC_DELTA:
            if (edge == 0) {
                ms->nterm = 2;
                ms->term[0] = (pg_mc_term){SC_DUP, 0.5 / hd};
                ms->term[1] = (pg_mc_term){SC_DDN, -0.5 / hd};
            } else {
                ms->nterm = 3;
                ms->term[0] = (pg_mc_term){SC_BASE, -1.5 * edge / hd};
                ms->term[1] = (pg_mc_term){SC_DUP, 2.0 * edge / hd};
                ms->term[2] = (pg_mc_term){SC_DDN, -0.5 * edge / hd};
            }
            break;
        case PG_MC_GAMMA:
            if (edge == 0) {
                ms->nterm = 3;
                ms->term[0] = (pg_mc_term){SC_GUP, 1.0 / (hg * hg)};
                ms->term[1] = (pg_mc_term){SC_BASE, -2.0 / (hg * hg)};
                ms->term[2] = (pg_mc_term){SC_GDN, 1.0 / (hg * hg)};
            } else {
                ms->nterm = 4;
                ms->term[0] = (pg_mc_term){SC_BASE, 2.0 / (hg * hg)};
                ms->term[1] = (pg_mc_term){SC_GUP, -5.0 / (hg * hg)};
                ms->term[2] = (pg_mc_term){SC_GDN, 4.0 / (hg * hg)};
                ms->term[3] = (pg_mc_term){SC_G3, -1.0 / (hg * hg)};
            }
            break;
        case PG_MC_VEGA:
            ms->nterm = 2;
            ms->term[0] = (pg_mc_term){SC_VUP, 0.5 / hv};
            ms->term[1] = (pg_mc_term){SC_VDN, -0.5 / hv};
            break;
        case PG_MC_THETA:
            ms->nterm = 2;
            ms->term[0] = (pg_mc_term){SC_TAGE, 0.5 / h_t};
            ms->term[1] = (pg_mc_term){SC_TYNG, -0.5 / h_t};
            break;
        case PG_MC_RHO:
            ms->nterm = 2;
            ms->term[0] = (pg_mc_term){SC_RUP, 0.5 / hr};
            ms->term[1] = (pg_mc_term){SC_RDN, -0.5 / hr};
            break;
        case PG_MC_DRHO:
            ms->nterm = 2;
            ms->term[0] = (pg_mc_term){SC_QUP, 0.5 / hr};
            ms->term[1] = (pg_mc_term){SC_QDN, -0.5 / hr};
            break;
        default:
            ms->nterm = 0;
        }
    }

    /* Brownian bridge plan on the base grid, in level order (expiry, then the midpoints of
     * ever finer intervals, breadth first): entry pos builds W(t_i), i = b_i[pos], from
     * W(t_l), W(t_r) and the normal of bridge position pos. */
    if (st->bridge) {
        const pg_mc_grid *g = &w->grid[0];
        int64_t *qa = w->q_a, *qb = w->q_b;
        int64_t pos = 0, head = 0, tail = 0;
        w->b_i[0] = m;
        w->b_l[0] = 0;
        w->b_r[0] = 0;
        w->b_wl[0] = 0.0;
        w->b_wr[0] = 0.0;
        w->b_sd[0] = sqrt(g->t[m]);
        pos = 1;
        qa[tail] = 0;
        qb[tail] = m;
        tail++;
        while (head < tail) {
            const int64_t a = qa[head], b = qb[head];
            head++;
            if (b - a < 2)
                continue;
            const int64_t c = a + (b - a) / 2;
            const double ta = g->t[a], tb = g->t[b], tc = g->t[c];
            w->b_i[pos] = c;
            w->b_l[pos] = a;
            w->b_r[pos] = b;
            w->b_wl[pos] = (tb - tc) / (tb - ta);
            w->b_wr[pos] = (tc - ta) / (tb - ta);
            w->b_sd[pos] = sqrt((tc - ta) * (tb - tc) / (tb - ta));
            pos++;
            qa[tail] = a;
            qb[tail] = c;
            tail++;
            qa[tail] = c;
            qb[tail] = b;
            tail++;
        }
    }
}

/* ------------------------------------------------------------------ one step */

/* Normals of step k (1-based) for the chunk: w->z[j][lane], j < dps. Streaming
 * (pseudo-random, no bridge): Philox dims (k-1) dps + j; buffered: from zbuf. Antithetic:
 * lanes [nd, 2 nd) are the negatives of lanes [0, nd). */
static inline void pg_mc_step_normals(pg_mc_work *w, const pg_mc_settings *st, const pg_mc_plan *p,
                                      int buffered, int64_t k, uint64_t pair0,
                                      const double *restrict pre)
{
    const int nd = st->chunk_draws;
    for (int j = 0; j < p->dps; j++) {
        double *z = w->z[j];
        const int64_t dim = (k - 1) * p->dps + j;
        if (pre) {
            /* one-step paths: this chunk's part of the block's normals (same numbers) */
#pragma omp simd
            for (int i = 0; i < nd; i++)
                z[i] = pre[i];
        } else if (buffered) {
            const double *src = w->zbuf + (size_t)dim * PG_MC_L;
#pragma omp simd
            for (int i = 0; i < nd; i++)
                z[i] = src[i];
        } else {
            pg_philox_normals(st->seed, (uint32_t)dim, pair0, nd / 2, z);
        }
        if (st->antithetic) {
#pragma omp simd
            for (int i = 0; i < nd; i++)
                z[nd + i] = -z[i];
        }
    }
    if (p->dps > p->nbm) {
        /* lookback: U = Phi(z) of the last number, log U = log(erfc(-z / sqrt 2) / 2) */
        const double *restrict z = w->z[p->nbm];
        double *restrict lu = w->lnu;
#pragma omp simd
        for (int i = 0; i < PG_MC_L; i++)
            lu[i] = log(0.5 * erfc(-z[i] * PG_SQRT1_2));
    }
}

/* Advance class c by step k. */
static inline void pg_mc_step_class(const pg_mc_row *row, const pg_mc_plan *p, pg_mc_work *w,
                                    pg_mc_class *cl, int64_t k, int need_var)
{
    const pg_mc_grid *g = &w->grid[cl->grid];
    const double dt = g->dt[k], sq = g->sqdt[k], wt = g->wt[k];
    double *restrict x = cl->x, *restrict xp = cl->xp;
    const double *restrict z0 = w->z[0];
    if (row->model == PG_MC_GBM) {
        const double a = -0.5 * cl->vol * cl->vol * dt, b = cl->vol * sq;
#pragma omp simd
        for (int i = 0; i < PG_MC_L; i++) {
            xp[i] = x[i];
            x[i] += a + b * z0[i];
        }
        if (need_var) {
            const double var = cl->vol * cl->vol * dt;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                cl->var[i] = var;
        }
    } else {
        const double kap = row->kappa, th = row->theta, sg = row->sigma, rho = row->rho;
        const double *restrict z1 = w->z[1];
        double *restrict v = cl->v, *restrict vr = cl->var;
        if (row->scheme == PG_MC_QE) {
            /* Andersen (2008), QE with the martingale correction; gamma1 = gamma2 = 1/2 */
            const double E = exp(-kap * dt), omE = -expm1(-kap * dt);
            const double c1 = sg * sg * E * omE / kap;
            const double c2 = th * sg * sg * omE * omE / (2.0 * kap);
            const double K0 = -rho * kap * th * dt / sg;
            const double K1 = 0.5 * dt * (kap * rho / sg - 0.5) - rho / sg;
            const double K2 = 0.5 * dt * (kap * rho / sg - 0.5) + rho / sg;
            const double K3 = 0.5 * dt * (1.0 - rho * rho);
            const double K4 = K3;
            const double A = K2 + 0.5 * K4;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++) {
                const double vi = v[i];
                const double mm = th + (vi - th) * E;
                const double s2 = vi * c1 + c2;
                const double psi = s2 / (mm * mm);
                /* quadratic branch: V' = a (b + Zv)^2 */
                const double ip = 2.0 / psi;
                const double b2 = ip - 1.0 + sqrt(ip) * sqrt(PG_MC_MAX(ip - 1.0, 0.0));
                const double aa = mm / (1.0 + b2);
                const double bb = sqrt(b2);
                const double vq = aa * (bb + z0[i]) * (bb + z0[i]);
                const double oma = 1.0 - 2.0 * A * aa;
                const double lmq = A * b2 * aa / oma - 0.5 * log(oma);
                /* exponential branch: V' = 0 w.p. p, else Exp(beta); 1 - U = Phi(-Zv) */
                const double pp = (psi - 1.0) / (psi + 1.0);
                const double beta = (1.0 - pp) / mm;
                const double omu = 0.5 * erfc(z0[i] * PG_SQRT1_2);
                const double ve = (omu >= 1.0 - pp) ? 0.0 : log((1.0 - pp) / omu) / beta;
                const double lme = log(pp + beta * (1.0 - pp) / (beta - A));
                const int quad = psi <= 1.5;
                const double vn = quad ? vq : ve;
                const int ok = quad ? (oma > 0.0) : (A < beta);
                const double lm = quad ? lmq : lme;
                const double k0 = ok ? (-lm - (K1 + 0.5 * K3) * vi) : K0;
                xp[i] = x[i];
                x[i] += k0 + K1 * vi + K2 * vn + sqrt(K3 * vi + K4 * vn) * z1[i];
                vr[i] = 0.5 * (vi + vn) * dt;
                v[i] = vn;
            }
        } else {
            /* full-truncation Euler (Lord, Koekkoek and van Dijk 2010) */
            const double rc = sqrt(1.0 - rho * rho);
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++) {
                const double vi = PG_MC_MAX(v[i], 0.0);
                const double sv = sqrt(vi * dt);
                xp[i] = x[i];
                x[i] += -0.5 * vi * dt + sv * (rho * z0[i] + rc * z1[i]);
                v[i] = v[i] + kap * (th - vi) * dt + sg * sv * z0[i];
                vr[i] = vi * dt;
            }
        }
        if (p->shadow) {
            const double s = cl->sig_sh, a = -0.5 * s * s * dt, b = s * sq;
            const double br = b * rho, bc = b * sqrt(1.0 - rho * rho);
            double *restrict xs = cl->xs;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                xs[i] += a + br * z0[i] + bc * z1[i];
        }
    }
    if (row->product == PG_MC_ASIAN && wt != 0.0) {
        double *restrict gx = cl->gx;
#pragma omp simd
        for (int i = 0; i < PG_MC_L; i++)
            gx[i] += wt * x[i];
        if (p->shadow) {
            double *restrict gxs = cl->gxs;
            const double *restrict xs = cl->xs;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                gxs[i] += wt * xs[i];
        }
        if (p->need_e) {
            double *restrict e = cl->e;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                e[i] = exp(x[i]);
        }
    }
}

/* Update scenario sc at step k from its class. */
static inline void pg_mc_step_scen(const pg_mc_row *row, const pg_mc_plan *p, pg_mc_work *w,
                                   pg_mc_scen *sc, int64_t k)
{
    const pg_mc_class *cl = &w->cls[sc->cls];
    const pg_mc_grid *g = &w->grid[cl->grid];
    const double lg = sc->lnS0 + (sc->r - sc->q) * g->t[k];
    const double *restrict x = cl->x;
    if (row->product == PG_MC_ASIAN) {
        if (p->need_e && g->wt[k] != 0.0) {
            const double f = g->wt[k] * exp(lg);
            const double *restrict e = cl->e;
            double *restrict acc = sc->acc;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                acc[i] += f * e[i];
        }
    } else if (row->product == PG_MC_BARRIER) {
        const int down = row->variant == PG_MC_DOWN_IN || row->variant == PG_MC_DOWN_OUT;
        const double eta = down ? 1.0 : -1.0;
        const double Rdf = row->R * exp(-sc->r * g->t[k]);
        double *restrict surv = sc->surv, *restrict reb = sc->reb;
        if (row->mon > 0.0) {
            if (g->flag[k] & PG_MC_FLAG_MON) {
                const double c = lg - p->lnH;
#pragma omp simd
                for (int i = 0; i < PG_MC_L; i++) {
                    const double hit = (eta * (c + x[i]) <= 0.0) ? surv[i] : 0.0;
                    reb[i] += hit * Rdf;
                    surv[i] -= hit;
                }
            }
        } else {
            /* Brownian-bridge probability of crossing within the step */
            const double ca = sc->lgp - p->lnH, cb = lg - p->lnH;
            const double *restrict xp = cl->xp, *restrict var = cl->var;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++) {
                const double a = ca + xp[i], b = cb + x[i];
                const double live = (eta * a > 0.0 && eta * b > 0.0);
                const double pr = live ? exp(-2.0 * a * b / var[i]) : 1.0;
                const double hit = surv[i] * pr;
                reb[i] += hit * Rdf;
                surv[i] -= hit;
            }
        }
    } else if (row->product == PG_MC_LOOKBACK) {
        /* the extreme of the Brownian bridge from a to b (log-spot, variance var over the
         * step): P(max > y) = exp(-2 (y - a)(y - b) / var), sampled by inversion:
         * max = (a + b + sqrt((b - a)^2 - 2 var log U)) / 2, min with the root's sign
         * flipped (Glasserman 2003, sec. 6.4, p. 367) */
        const int use_max = (row->variant == PG_MC_FLOATING) == (row->w < 0.0);
        const double sgn = use_max ? 1.0 : -1.0;
        const double *restrict xp = cl->xp, *restrict var = cl->var, *restrict lu = w->lnu;
        const double ca = sc->lgp, cb = lg;
        double *restrict ext = sc->ext;
#pragma omp simd
        for (int i = 0; i < PG_MC_L; i++) {
            const double a = ca + xp[i], b = cb + x[i];
            const double y = 0.5 * (a + b + sgn * sqrt((b - a) * (b - a) - 2.0 * var[i] * lu[i]));
            ext[i] = use_max ? PG_MC_MAX(ext[i], y) : PG_MC_MIN(ext[i], y);
        }
    }
    sc->lgp = lg;
}

/* Discounted payoff y and control xc of scenario sc at the end of the path. */
static inline void pg_mc_payoff(const pg_mc_row *row, const pg_mc_plan *p, pg_mc_work *w,
                                pg_mc_scen *sc)
{
    const pg_mc_class *cl = &w->cls[sc->cls];
    const pg_mc_grid *g = &w->grid[cl->grid];
    const int64_t m = p->m;
    const double lgT = sc->lnS0 + (sc->r - sc->q) * g->t[m];
    const double DF = sc->DF, K = row->K, wv = row->w;
    const double *restrict x = cl->x;
    double *restrict y = sc->y, *restrict xc = sc->xc;
    switch (row->product) {
    case PG_MC_EUROPEAN:
#pragma omp simd
        for (int i = 0; i < PG_MC_L; i++)
            y[i] = DF * PG_MC_MAX(wv * (exp(lgT + x[i]) - K), 0.0);
        break;
    case PG_MC_ASIAN:
        if (row->variant == PG_MC_ARITHMETIC) {
            const double c = sc->c_arith;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                y[i] = DF * PG_MC_MAX(wv * (c + sc->acc[i] - K), 0.0);
        } else {
            const double c = sc->c_geo;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                y[i] = DF * PG_MC_MAX(wv * (exp(c + cl->gx[i]) - K), 0.0);
        }
        break;
    case PG_MC_BARRIER: {
        const int out = row->variant == PG_MC_DOWN_OUT || row->variant == PG_MC_UP_OUT;
        const double R = row->R;
        if (out) {
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                y[i] = DF * PG_MC_MAX(wv * (exp(lgT + x[i]) - K), 0.0) * sc->surv[i] + sc->reb[i];
        } else {
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                y[i] = DF * (PG_MC_MAX(wv * (exp(lgT + x[i]) - K), 0.0) * (1.0 - sc->surv[i])
                             + R * sc->surv[i]);
        }
        break;
    }
    case PG_MC_LOOKBACK:
        if (row->variant == PG_MC_FLOATING) {
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                y[i] = DF * wv * (exp(lgT + x[i]) - exp(sc->ext[i]));
        } else {
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++)
                y[i] = DF * PG_MC_MAX(wv * (exp(sc->ext[i]) - K), 0.0);
        }
        break;
    }
    if (p->cv == PG_MC_CV_SPOT) {
#pragma omp simd
        for (int i = 0; i < PG_MC_L; i++)
            xc[i] = DF * exp(lgT + x[i]);
    } else if (p->cv == PG_MC_CV_VANILLA) {
        const double *restrict xs = p->shadow ? cl->xs : cl->x;
        const double lgE = sc->lnS0 + (sc->r - sc->q) * g->T;
#pragma omp simd
        for (int i = 0; i < PG_MC_L; i++)
            xc[i] = DF * PG_MC_MAX(wv * (exp(lgE + xs[i]) - K), 0.0);
    } else if (p->cv == PG_MC_CV_GEO) {
        const double *restrict gxs = p->shadow ? cl->gxs : cl->gx;
        const double c = sc->c_ctrl;
#pragma omp simd
        for (int i = 0; i < PG_MC_L; i++)
            xc[i] = DF * PG_MC_MAX(wv * (exp(c + gxs[i]) - K), 0.0);
    }
}

/* ------------------------------------------------------------------ statistics */

/* stats: n, mean y, mean x, Myy, Mxx, Mxy (centred sums). Merge b into a (Chan et al.). */
static inline void pg_mc_merge(double *a, const double *b)
{
    const double na = a[0], nb = b[0];
    if (nb == 0.0)
        return;
    if (na == 0.0) {
        memcpy(a, b, PG_MC_NSTAT * sizeof(double));
        return;
    }
    const double n = na + nb, dy = b[1] - a[1], dx = b[2] - a[2], f = na * nb / n;
    a[0] = n;
    a[1] += dy * nb / n;
    a[2] += dx * nb / n;
    a[3] += b[3] + dy * dy * f;
    a[4] += b[4] + dx * dx * f;
    a[5] += b[5] + dx * dy * f;
}

/* Statistics of cnt samples (y, x) into st (overwritten), two-pass; x = NULL: no control
 * (its moments are 0). The simd reductions fix the order of the additions at compile time. */
static inline void pg_mc_chunk_stats(const double *restrict y, const double *restrict x, int cnt,
                                     double *st)
{
    double sy = 0.0, sx = 0.0, yy = 0.0, xx = 0.0, xy = 0.0;
#pragma omp simd reduction(+:sy)
    for (int i = 0; i < cnt; i++)
        sy += y[i];
    const double my = sy / cnt;
    if (x) {
#pragma omp simd reduction(+:sx)
        for (int i = 0; i < cnt; i++)
            sx += x[i];
        const double mx = sx / cnt;
#pragma omp simd reduction(+:yy, xx, xy)
        for (int i = 0; i < cnt; i++) {
            const double dy = y[i] - my, dx = x[i] - mx;
            yy += dy * dy;
            xx += dx * dx;
            xy += dx * dy;
        }
        st[2] = mx;
    } else {
#pragma omp simd reduction(+:yy)
        for (int i = 0; i < cnt; i++)
            yy += (y[i] - my) * (y[i] - my);
        st[2] = 0.0;
    }
    st[0] = cnt;
    st[1] = my;
    st[3] = yy;
    st[4] = xx;
    st[5] = xy;
}

/* ------------------------------------------------------------------ one work unit */

/* Simulate unit `unit` (replicate unit / blocks_per_rep, block unit % blocks_per_rep) of a
 * valid row with T > 0 and m steps; out[j * PG_MC_NSTAT ..] receives measure j's stats. */
static inline void pg_mc_unit(const pg_mc_row *row, const pg_mc_settings *st, int64_t m,
                              int64_t unit, pg_mc_work *w, double *out)
{
    pg_mc_plan p;
    pg_mc_setup(row, st, m, w, &p);
    const int64_t rep = unit / st->blocks_per_rep, blk = unit % st->blocks_per_rep;
    const int64_t d_begin = blk * PG_MC_BLOCK;
    int64_t d_end = d_begin + PG_MC_BLOCK;
    if (d_end > st->draws_per_rep)
        d_end = st->draws_per_rep;
    const int buffered = st->sobol || st->bridge;
    const int nd = st->chunk_draws;
    const int64_t ndims = m * p.dps;
    const int need_var = (row->product == PG_MC_BARRIER && row->mon == 0.0)
                         || row->product == PG_MC_LOOKBACK;
    const int anti = st->antithetic;

    if (st->sobol)
        pg_sobol_shift(st->seed, (uint32_t)rep, (int)ndims, w->sob_shift);

    for (int j = 0; j < st->nmeas; j++)
        out[j * PG_MC_NSTAT] = 0.0;
    int64_t since_poll = 0;    /* chunk-steps since the last stop poll */

    /* One step, one normal per draw, pseudo-random (a GBM European): the block's normals in
     * one call, so Philox and Box-Muller run over full batches instead of one chunk's 32
     * pairs at a time. The chunks' pairs are consecutive (nd is even), so these are the
     * very numbers the chunks would draw. */
    const int one_step = !buffered && m == 1 && p.dps == 1;
    if (one_step) {
        const int64_t nchunks = (d_end - d_begin + nd - 1) / nd;
        const uint64_t pair_blk = (uint64_t)(rep * st->draws_per_rep + d_begin) / 2;
        pg_philox_normals(st->seed, 0u, pair_blk, (int)(nchunks * (nd / 2)), w->zblk);
        if (row->product == PG_MC_EUROPEAN && !anti && p.nscen == 1 && st->nmeas == 1
            && w->meas[0].nterm == 1 && w->meas[0].term[0].coef == 1.0) {
            /* Price only: the whole block in one loop (terminal spot, payoff, control), no
             * per-chunk copies, then the block's statistics in one two-pass sweep. */
            const pg_mc_scen *sc = &w->scen[SC_BASE];
            const pg_mc_class *cl = &w->cls[sc->cls];
            const pg_mc_grid *g = &w->grid[cl->grid];
            const double c = sc->lnS0 + (sc->r - sc->q) * g->t[1] - 0.5 * cl->vol * cl->vol * g->dt[1];
            const double b = cl->vol * g->sqdt[1];
            const double DF = sc->DF, DFw = DF * row->w, DFwK = DFw * row->K;
            const int n = (int)(d_end - d_begin);
            const int has_x = p.cv != PG_MC_CV_NONE;
            double *restrict y = w->zblk, *restrict xc = w->xblk;
            if (has_x) {
#pragma omp simd
                for (int i = 0; i < n; i++) {
                    const double S = exp(c + b * y[i]);
                    y[i] = PG_MC_MAX(DFw * S - DFwK, 0.0);
                    xc[i] = DF * S;
                }
            } else {
#pragma omp simd
                for (int i = 0; i < n; i++)
                    y[i] = PG_MC_MAX(DFw * exp(c + b * y[i]) - DFwK, 0.0);
            }
            double cs[PG_MC_NSTAT];
            pg_mc_chunk_stats(y, has_x ? xc : NULL, n, cs);
            pg_mc_merge(out, cs);
            return;
        }
    }

    for (int64_t d0 = d_begin; d0 < d_end; d0 += nd) {
        since_poll += m;
        if (since_poll >= PG_MC_POLL_STEPS) {
            since_poll = 0;
            if (pg_stop_poll(st->stop))
                return;
        }
        const int cnt = (int)((d_end - d0) < nd ? (d_end - d0) : nd);
        /* global draw index of lane 0 (pseudo-random) or point index (Sobol) */
        const int64_t draw0 = st->sobol ? d0 : rep * st->draws_per_rep + d0;
        const uint64_t pair0 = (uint64_t)draw0 / 2;
        if (buffered) {
            if (st->sobol)
                pg_sobol_normals(st->sobol_v, st->sobol_stride, st->sobol_bits, w->sob_shift,
                                 (uint64_t)draw0, nd, (int)ndims, w->sob_x, w->zbuf, PG_MC_L);
            else
                for (int64_t d = 0; d < ndims; d++)
                    pg_philox_normals(st->seed, (uint32_t)d, pair0, nd / 2, w->zbuf + (size_t)d * PG_MC_L);
            if (st->bridge) {
                const pg_mc_grid *g = &w->grid[0];
                for (int j = 0; j < p.nbm; j++) {
                    double *W = w->wbuf;
                    for (int i = 0; i < PG_MC_L; i++)
                        W[i] = 0.0;
                    for (int64_t pos = 0; pos < m; pos++) {
                        double *Wi = W + (size_t)w->b_i[pos] * PG_MC_L;
                        const double *Wl = W + (size_t)w->b_l[pos] * PG_MC_L;
                        const double *Wr = W + (size_t)w->b_r[pos] * PG_MC_L;
                        const double *Z = w->zbuf + (size_t)(pos * p.dps + j) * PG_MC_L;
                        const double a = w->b_wl[pos], b = w->b_wr[pos], c = w->b_sd[pos];
#pragma omp simd
                        for (int i = 0; i < nd; i++)
                            Wi[i] = a * Wl[i] + b * Wr[i] + c * Z[i];
                    }
                    for (int64_t k = 1; k <= m; k++) {
                        double *Z = w->zbuf + (size_t)((k - 1) * p.dps + j) * PG_MC_L;
                        const double *W1 = W + (size_t)k * PG_MC_L, *W0 = W + (size_t)(k - 1) * PG_MC_L;
                        const double inv = 1.0 / g->sqdt[k];
#pragma omp simd
                        for (int i = 0; i < nd; i++)
                            Z[i] = (W1[i] - W0[i]) * inv;
                    }
                }
            }
        }
        /* initial states (only what the product reads) */
        const int asian = row->product == PG_MC_ASIAN;
        for (int ci = 0; ci < p.ncls; ci++) {
            pg_mc_class *cl = &w->cls[p.cls_list[ci]];
            const double v0 = cl->v0;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++) {
                cl->x[i] = 0.0;
                cl->v[i] = v0;
                cl->xs[i] = 0.0;
            }
            if (asian) {
#pragma omp simd
                for (int i = 0; i < PG_MC_L; i++) {
                    cl->gx[i] = 0.0;
                    cl->gxs[i] = 0.0;
                }
            }
        }
        for (int si = 0; si < p.nscen; si++) {
            pg_mc_scen *sc = &w->scen[p.scen_list[si]];
            const pg_mc_grid *g = &w->grid[w->cls[sc->cls].grid];
            sc->lgp = sc->lnS0;
            if (asian) {
                const double a0 = g->wt[0] * sc->S0;
#pragma omp simd
                for (int i = 0; i < PG_MC_L; i++)
                    sc->acc[i] = a0;
            } else if (row->product == PG_MC_BARRIER) {
#pragma omp simd
                for (int i = 0; i < PG_MC_L; i++) {
                    sc->surv[i] = 1.0;
                    sc->reb[i] = 0.0;
                }
            } else if (row->product == PG_MC_LOOKBACK) {
                const int use_max = (row->variant == PG_MC_FLOATING) == (row->w < 0.0);
                const double e0 = use_max ? PG_MC_MAX(log(row->rmax), sc->lnS0)
                                          : PG_MC_MIN(log(row->rmin), sc->lnS0);
#pragma omp simd
                for (int i = 0; i < PG_MC_L; i++)
                    sc->ext[i] = e0;
            }
        }
        /* the path */
        for (int64_t k = 1; k <= m; k++) {
            if ((k & (PG_MC_POLL_STEPS - 1)) == 0 && pg_stop_poll(st->stop))
                return;   /* a very long path: poll inside it too */
            pg_mc_step_normals(w, st, &p, buffered, k, pair0,
                               one_step ? w->zblk + (d0 - d_begin) : NULL);
            for (int ci = 0; ci < p.ncls; ci++)
                pg_mc_step_class(row, &p, w, &w->cls[p.cls_list[ci]], k, need_var);
            if (row->product != PG_MC_EUROPEAN)
                for (int si = 0; si < p.nscen; si++)
                    pg_mc_step_scen(row, &p, w, &w->scen[p.scen_list[si]], k);
        }
        for (int si = 0; si < p.nscen; si++)
            pg_mc_payoff(row, &p, w, &w->scen[p.scen_list[si]]);
        /* samples per measure */
        const int has_x = p.cv != PG_MC_CV_NONE;
        for (int j = 0; j < st->nmeas; j++) {
            const pg_mc_measure *ms = &w->meas[j];
            double cs[PG_MC_NSTAT];
            if (!anti && ms->nterm == 1 && ms->term[0].coef == 1.0) {
                const pg_mc_scen *sc = &w->scen[ms->term[0].scen];
                pg_mc_chunk_stats(sc->y, has_x ? sc->xc : NULL, cnt, cs);
                pg_mc_merge(out + j * PG_MC_NSTAT, cs);
                continue;
            }
            double *restrict sy = w->sy, *restrict sx = w->sx;
#pragma omp simd
            for (int i = 0; i < PG_MC_L; i++) {
                sy[i] = 0.0;
                sx[i] = 0.0;
            }
            for (int t = 0; t < ms->nterm; t++) {
                const pg_mc_scen *sc = &w->scen[ms->term[t].scen];
                const double c = ms->term[t].coef;
#pragma omp simd
                for (int i = 0; i < PG_MC_L; i++)
                    sy[i] += c * sc->y[i];
                if (has_x) {
#pragma omp simd
                    for (int i = 0; i < PG_MC_L; i++)
                        sx[i] += c * sc->xc[i];
                }
            }
            if (anti) {
#pragma omp simd
                for (int i = 0; i < PG_MC_L / 2; i++) {
                    sy[i] = 0.5 * (sy[i] + sy[i + PG_MC_L / 2]);
                    sx[i] = 0.5 * (sx[i] + sx[i + PG_MC_L / 2]);
                }
            }
            pg_mc_chunk_stats(sy, has_x ? sx : NULL, cnt, cs);
            pg_mc_merge(out + j * PG_MC_NSTAT, cs);
        }
    }
}

/* The means of each requested measure's control (closed forms), for a valid row with T > 0
 * and m steps; sets up work space w for the row. */
static inline void pg_mc_control_means(const pg_mc_row *row, const pg_mc_settings *st, int64_t m,
                                       pg_mc_work *w, double *mu, double *scale)
{
    pg_mc_plan p;
    pg_mc_setup(row, st, m, w, &p);
    for (int j = 0; j < st->nmeas; j++) {
        const pg_mc_measure *ms = &w->meas[j];
        mu[j] = 0.0;
        scale[j] = 0.0;
        for (int t = 0; t < ms->nterm; t++) {
            mu[j] += ms->term[t].coef * w->scen[ms->term[t].scen].mu;
            scale[j] += fabs(ms->term[t].coef * w->scen[ms->term[t].scen].mu);
        }
    }
}

/* Fold unit u's statistics (nmeas x PG_MC_NSTAT) into its replicate's (reps: replicates x
 * nmeas x PG_MC_NSTAT; start from zeros). Units must be folded in increasing order: the
 * result is then the same however the units were computed. */
static inline void pg_mc_fold(const pg_mc_settings *st, int64_t u, const double *unit, double *reps)
{
    const int64_t r = u / st->blocks_per_rep;
    for (int j = 0; j < st->nmeas; j++)
        pg_mc_merge(reps + (r * st->nmeas + j) * PG_MC_NSTAT, unit + j * PG_MC_NSTAT);
}

/* Turn a row's replicate statistics into estimates and standard errors. With a control
 * (use_cv): beta = Cov(y, x)/Var(x) from all samples, estimate mean(y) - beta (mean(x) - mu).
 * Pseudo-random: standard error from the residual variance (n - 2 degrees of freedom with a
 * control). Sobol: the replicates' estimates are independent and identically distributed;
 * their mean is the estimate and their standard deviation / sqrt(R) the standard error.
 * A control whose spread is at the level of the rounding of its terms (scale[j] =
 * sum |coef mu|: e.g. the rho of the discounted terminal spot, identically 0 in exact
 * arithmetic) is not used: its beta would be noise over noise. */
static inline void pg_mc_finish(const pg_mc_settings *st, int use_cv, const double *mu,
                                const double *scale, const double *reps, double *est, double *se)
{
    const int R = st->replicates;
    for (int j = 0; j < st->nmeas; j++) {
        double pooled[PG_MC_NSTAT] = {0.0};
        for (int r = 0; r < R; r++)
            pg_mc_merge(pooled, reps + (r * st->nmeas + j) * PG_MC_NSTAT);
        double beta = 0.0;
        const double floor_sd = 1e-10 * scale[j];
        if (use_cv && pooled[4] > floor_sd * floor_sd * pooled[0])
            beta = pooled[5] / pooled[4];
        if (R == 1) {
            const double n = pooled[0];
            est[j] = pooled[1] - beta * (pooled[2] - mu[j]);
            const double resid = PG_MC_MAX(pooled[3] - 2.0 * beta * pooled[5] + beta * beta * pooled[4], 0.0);
            const double dof = n - 1.0 - (use_cv ? 1.0 : 0.0);
            se[j] = sqrt(resid / dof / n);
        } else {
            double e[PG_MC_REPLICATES], s = 0.0;
            for (int r = 0; r < R; r++) {
                const double *rs = reps + (r * st->nmeas + j) * PG_MC_NSTAT;
                e[r] = rs[1] - beta * (rs[2] - mu[j]);
                s += e[r];
            }
            const double mean = s / R;
            double v = 0.0;
            for (int r = 0; r < R; r++)
                v += (e[r] - mean) * (e[r] - mean);
            est[j] = mean;
            se[j] = sqrt(v / (R - 1) / R);
        }
    }
}

/* ------------------------------------------------------------------ expiry (T = 0) */

/* Values at T = 0 (nothing left to simulate): price and delta of the payoff now, other
 * Greeks 0, standard errors 0. Delta at the kink: half the step (as pg_black.h). Also a
 * touched knock-out at any T: its rebate, every Greek 0. */
static inline void pg_mc_expiry(const pg_mc_row *row, const pg_mc_settings *st, double *est,
                                double *se)
{
    const double S = row->S0, K = row->K, wv = row->w;
    double price = 0.0, delta = 0.0;
    switch (row->product) {
    case PG_MC_EUROPEAN:
        price = PG_MC_MAX(wv * (S - K), 0.0);
        delta = (wv * (S - K) > 0.0) ? wv : (S == K ? 0.5 * wv : 0.0);
        break;
    case PG_MC_ASIAN:
        /* continuous (a discrete row has no fixing left at T = 0: not valid): the known
         * average, or spot when averaging never began (as pricegrid.ext.asian) */
        if (row->elapsed > 0.0) {
            price = PG_MC_MAX(wv * (row->run - K), 0.0);
        } else {
            price = PG_MC_MAX(wv * (S - K), 0.0);
            delta = (wv * (S - K) > 0.0) ? wv : (S == K ? 0.5 * wv : 0.0);
        }
        break;
    case PG_MC_BARRIER: {
        const int out = row->variant == PG_MC_DOWN_OUT || row->variant == PG_MC_UP_OUT;
        if (row->touched) {   /* a touched knock-out (T >= 0): its rebate, paid now */
            price = row->R;
        } else if (out) {
            price = PG_MC_MAX(wv * (S - K), 0.0);
            delta = (wv * (S - K) > 0.0) ? wv : (S == K ? 0.5 * wv : 0.0);
        } else {
            price = row->R;
        }
        break;
    }
    case PG_MC_LOOKBACK:
        if (row->variant == PG_MC_FLOATING) {
            const double ext = wv > 0.0 ? row->rmin : row->rmax;
            price = wv * (S - ext);
            delta = wv;
        } else {
            const double ext = wv > 0.0 ? row->rmax : row->rmin;
            price = PG_MC_MAX(wv * (ext - K), 0.0);
        }
        break;
    }
    for (int j = 0; j < st->nmeas; j++) {
        est[j] = (st->meas[j] == PG_MC_PRICE) ? price : (st->meas[j] == PG_MC_DELTA) ? delta : 0.0;
        se[j] = 0.0;
    }
}

/* ------------------------------------------------------------------ batch helpers */

/* Validate every row: status[i] bits, steps[i] (0 for T = 0 or a failed row). Returns the
 * largest step count; *too_many receives the first row needing more than PG_MC_MAX_STEPS
 * (or -1). */
static inline int64_t pg_mc_prepass(const pg_mc_inputs *in, const pg_mc_settings *st,
                                    ptrdiff_t n, int *status, int64_t *steps, ptrdiff_t *too_many)
{
    int64_t mmax = 0;
    *too_many = -1;
    for (ptrdiff_t i = 0; i < n; i++) {
        pg_mc_row row;
        pg_mc_load_row(in, st, i, &row);
        const int s = pg_mc_check_row(&row);
        status[i] = s;
        steps[i] = 0;
        /* a touched knock-out is its rebate: nothing to simulate (priced by pg_mc_expiry) */
        if (s == 0 && row.T > 0.0 && !(row.touched && row.product == PG_MC_BARRIER)) {
            const int64_t m = pg_mc_row_steps(&row, st->max_step);
            if (m > PG_MC_MAX_STEPS) {
                if (*too_many < 0)
                    *too_many = i;
                continue;
            }
            steps[i] = m;
            if (m > mmax)
                mmax = m;
        }
    }
    return mmax;
}

/* Write row i's results (NaN when it failed; PG_NOT_FINITE when a valid row's value is not
 * finite). Returns 1 for a failed row. */
static inline int pg_mc_store(const pg_mc_settings *st, ptrdiff_t i, const double *est,
                              const double *se, double *out, ptrdiff_t ldo, double *err,
                              ptrdiff_t lde, int *status)
{
    int s = status[i];
    if (s == 0) {
        for (int j = 0; j < st->nmeas; j++)
            if (!(fabs(est[j]) <= PG_DBL_MAX) || !(fabs(se[j]) <= PG_DBL_MAX))
                s = PG_NOT_FINITE;
    }
    status[i] = s;
    for (int j = 0; j < st->nmeas; j++) {
        out[j * ldo + i] = s ? NAN : est[j];
        err[j * lde + i] = s ? NAN : se[j];
    }
    return s != 0;
}

/* Replicate statistics: doubles per row (replicates x nmeas x PG_MC_NSTAT). */
static inline int64_t pg_mc_rep_size(const pg_mc_settings *st)
{
    return (int64_t)st->replicates * st->nmeas * PG_MC_NSTAT;
}

/* Price row i (valid, steps m, or T = 0 when m == 0) on this thread, all its units in
 * order. unit: nmeas x PG_MC_NSTAT doubles; reps: pg_mc_rep_size doubles. */
static inline void pg_mc_row_serial(const pg_mc_inputs *in, const pg_mc_settings *st,
                                    ptrdiff_t i, int64_t m, pg_mc_work *w, double *unit,
                                    double *reps, double *est, double *se)
{
    pg_mc_row row;
    pg_mc_load_row(in, st, i, &row);
    if (m == 0) {
        pg_mc_expiry(&row, st, est, se);
        return;
    }
    memset(reps, 0, (size_t)pg_mc_rep_size(st) * sizeof(double));
    for (int64_t u = 0; u < st->units; u++) {
        pg_mc_unit(&row, st, m, u, w, unit);
        if ((((u + 1) & (PG_MC_POLL_UNITS - 1)) == 0) ? pg_stop_poll(st->stop) : pg_stop_seen(st->stop))
            return;   /* stopped: the caller marks the row PG_CANCELLED */
        pg_mc_fold(st, u, unit, reps);
    }
    double mu[PG_MC_NMEASURE], scale[PG_MC_NMEASURE];
    pg_mc_control_means(&row, st, m, w, mu, scale);
    pg_mc_finish(st, st->control_variate, mu, scale, reps, est, se);
}

/* Unit u of row i into unit (for rows whose units run in parallel). */
static inline void pg_mc_row_unit(const pg_mc_inputs *in, const pg_mc_settings *st, ptrdiff_t i,
                                  int64_t m, int64_t u, pg_mc_work *w, double *unit)
{
    pg_mc_row row;
    pg_mc_load_row(in, st, i, &row);
    pg_mc_unit(&row, st, m, u, w, unit);
}

/* Estimates of row i from its replicate statistics (after folding every unit). */
static inline void pg_mc_row_finish(const pg_mc_inputs *in, const pg_mc_settings *st,
                                    ptrdiff_t i, int64_t m, pg_mc_work *w, const double *reps,
                                    double *est, double *se)
{
    pg_mc_row row;
    pg_mc_load_row(in, st, i, &row);
    if (m == 0) {
        pg_mc_expiry(&row, st, est, se);
        return;
    }
    double mu[PG_MC_NMEASURE], scale[PG_MC_NMEASURE];
    pg_mc_control_means(&row, st, m, w, mu, scale);
    pg_mc_finish(st, st->control_variate, mu, scale, reps, est, se);
}

#endif
