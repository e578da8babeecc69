/* The market columns of a batch's rows on one underlying of a snapshot: per row, from its
 * expiry T (and strike K), the discount curve's zero rate r(T), the dividend curve's q(T),
 * the underlying's level (a spot less the present value of the cash dividends paid by T,
 * or a futures price), the forward, and the vol on the underlying's surface at (T, K, F).
 * The design note of market.pyx gives the conventions; the loop is written out here.
 *
 * 1. Everything but the vol depends on the row's expiry alone, and a batch has far fewer
 *    distinct expiries than rows (listed expiry dates). So a block of rows first looks its
 *    expiries up in a cache keyed by the bits of T (open addressing, linear probing): a
 *    vector loop hashes every row's T and compares the first two slots of its probe
 *    sequence (no branch per row); the rows not found there go through the scalar probe,
 *    where a miss evaluates the curves (pg_curve_search + pg_curve_eval, the curve
 *    kernel's own pointwise functions), the escrowed level, the forward and the surface's
 *    expiry bracket (pg_surface_bracket) and stores them (or, in a cache already half
 *    full, writes them to the row's spare entry); a second vector loop reads the rows'
 *    entries. A cached value is the value the same T computes, so a row's bits depend
 *    neither on the cache, nor on its place in the batch, nor on the thread split.
 * 2. Then the vol of each row at its own strike, at the cached bracket, through the surface
 *    kernel's own functions (pg_svi_rows for SVI, pg_surface_point_in otherwise), so the
 *    vol is the one EvaluateSurface gives at (T, K, F), bit for bit.
 * 3. European options priced on a snapshot in one pass (pg_market_black_block): per block
 *    of PG_MKT_BLOCK rows, the market columns into block arrays (in L1), then
 *    pg_black_block on them, PG_BLACK_BLOCK rows at a time. The same market numbers and the same black block as the two
 *    passes (columns, then the batch kernel) over blocks aligned the same way, so the
 *    same bits, without writing and reading four columns of the batch's length.
 */
#ifndef PG_MARKET_H
#define PG_MARKET_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pg_status.h"
#include "pg_inputs.h"
#include "pg_black.h"
#include "pg_curves.h"
#include "pg_surfaces.h"

#define PG_MKT_BLOCK 256
#define PG_MKT_CACHE_BITS_MAX 12             /* at most 4096 entries, 192 KiB per thread */
#define PG_MKT_CACHE_BITS_MIN 4

typedef struct {
    const pg_curve *disc;     /* discount curve (required) */
    const pg_curve *div;      /* dividend-yield curve, or NULL (q = 0) */
    double level;             /* spot or futures price */
    int spot;                 /* 1: a spot (forward S* exp((r - q) T)); 0: a futures price (forward = level) */
    int nd;                   /* cash dividends with ex-time > 0, in time order */
    const double *div_t;      /* nd ex-times */
    const double *div_pv;     /* nd + 1 cumulative present values, div_pv[0] = 0 */
    const pg_surface *surf;   /* or NULL: no vols */
} pg_market;

/* What a row's expiry alone decides. */
typedef struct {
    double t;                 /* the key (NaN: empty) */
    double r, q, level, fwd;
    int bracket;              /* the surface's expiry bracket */
    int taken;                /* cash dividends paid by t */
} pg_mkt_entry;

/* An open-addressing (linear probing) cache of 2^bits entries (e: caller's storage of
 * pg_mkt_cache_size(bits) entries: the table, then PG_MKT_BLOCK spare entries for a block's
 * rows), filled to at most half: an expiry seen before is found; once half full, a new
 * expiry is computed without being stored. */
typedef struct {
    int bits;
    int used;
    pg_mkt_entry *e;
} pg_mkt_cache;

/* Cache bits for a call of m rows: enough entries for the expiries m rows can hold, at
 * most 2^PG_MKT_CACHE_BITS_MAX (so a small call clears a small cache). */
static inline int pg_mkt_cache_bits(ptrdiff_t m)
{
    int bits = PG_MKT_CACHE_BITS_MIN;
    while (bits < PG_MKT_CACHE_BITS_MAX && ((ptrdiff_t)1 << bits) < 2 * m) bits++;
    return bits;
}

/* Entries of a cache's storage. */
static inline int pg_mkt_cache_size(int bits)
{
    return (1 << bits) + PG_MKT_BLOCK;
}

static inline void pg_mkt_cache_init(pg_mkt_cache *c, int bits, pg_mkt_entry *storage)
{
    c->bits = bits;
    c->used = 0;
    c->e = storage;
    for (int i = 0; i < (1 << bits); i++) c->e[i].t = NAN;
}

static inline unsigned pg_mkt_hash(double t, int bits)
{
    uint64_t b;
    memcpy(&b, &t, sizeof b);
    return (unsigned)((b * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* The zero rate of a curve at t, 0 where the curve cannot give one (a bad time: the
 * pricing kernel names it; a bad curve: refused when the snapshot was stored). */
static inline double pg_mkt_zero(const pg_curve *c, double t)
{
    if (!(t >= 0.0 && t <= PG_DBL_MAX) || c->bad != 0 || c->n < 1) return 0.0;
    double I, z, f;
    pg_curve_eval(c, pg_curve_search(c, t), t, &I, &z, &f);
    return pg_finite(z) ? z : 0.0;
}

static inline void pg_mkt_fill(const pg_market *M, double t, pg_mkt_entry *e)
{
    e->t = t;
    e->r = pg_mkt_zero(M->disc, t);
    e->q = (M->div != NULL) ? pg_mkt_zero(M->div, t) : 0.0;
    /* cash dividends with ex-time <= t (a NaN t takes none) */
    int taken = 0;
    while (taken < M->nd && M->div_t[taken] <= t) taken++;
    e->taken = taken;
    e->level = (taken > 0) ? M->level - M->div_pv[taken] : M->level;
    e->fwd = M->spot ? e->level * exp((e->r - e->q) * t) : e->level;
    e->bracket = (M->surf != NULL && t >= 0.0) ? pg_surface_bracket(M->surf, t) : 0;
}

/* The entry of t: found, or filled (in the cache while it is under half full, else in
 * `spare`). A NaN t never matches and is never stored. */
static inline const pg_mkt_entry *pg_mkt_lookup(const pg_market *M, pg_mkt_cache *c, double t,
                                                pg_mkt_entry *spare)
{
    const unsigned mask = (1u << c->bits) - 1u;
    unsigned h = pg_mkt_hash(t, c->bits);
    for (;;) {
        pg_mkt_entry *e = &c->e[h];
        if (e->t == t) return e;
        if (e->t != e->t) {  /* empty */
            if (t == t && 2 * (c->used + 1) <= (1 << c->bits)) {
                pg_mkt_fill(M, t, e);
                c->used++;
                return e;
            }
            break;
        }
        h = (h + 1) & mask;
    }
    pg_mkt_fill(M, t, spare);
    return spare;
}

/* Rows [0, m) of a block, m <= PG_MKT_BLOCK, every pointer at the block's first row:
 * level, rate, q and (with a surface, vol not NULL) vol of each row. K may be NULL (the
 * forward is the strike); a K that is not > 0 also looks the vol up at the forward. A vol
 * the surface cannot give is NaN (the pricing kernel then flags the row's vol). Returns
 * the most cash dividends any row took. */
static int pg_market_block(const pg_market *M, pg_mkt_cache *cache, const double *T,
                           const double *K, int m, double *level, double *rate, double *q,
                           double *vol)
{
    double F[PG_MKT_BLOCK], K_b[PG_MKT_BLOCK], w_b[PG_MKT_BLOCK];
    int br[PG_MKT_BLOCK];
    int slot[PG_MKT_BLOCK];
    int most = 0;
    /* the first two slots of each row's probe sequence compared in a vector loop; the rows
     * not found there (a miss, or an expiry further along its probe sequence) through
     * pg_mkt_lookup, their entry filled in the cache or in the row's spare entry after the
     * table; then the entries read in a second vector loop. Every row gets the entry of its
     * own t: the same numbers wherever it is found */
    pg_mkt_entry *E = cache->e;
    const int bits = cache->bits;
    const unsigned mask = (1u << bits) - 1u;
    int missed = 0;
    #pragma omp simd reduction(|:missed)
    for (int i = 0; i < m; i++) {
        const double t = T[i];
        const unsigned h0 = pg_mkt_hash(t, bits), h1 = (h0 + 1u) & mask;
        const int hit0 = (E[h0].t == t), hit1 = (E[h1].t == t);
        slot[i] = hit0 ? (int)h0 : hit1 ? (int)h1 : -1;
        missed |= !(hit0 | hit1);
    }
    if (missed) {
        pg_mkt_entry *spare = E + (1 << bits);
        for (int i = 0; i < m; i++)
            if (slot[i] < 0) slot[i] = (int)(pg_mkt_lookup(M, cache, T[i], spare + i) - E);
    }
    #pragma omp simd reduction(max:most)
    for (int i = 0; i < m; i++) {
        const pg_mkt_entry *e = &E[slot[i]];
        rate[i] = e->r;
        q[i] = e->q;
        level[i] = e->level;
        F[i] = e->fwd;
        br[i] = e->bracket;
        most = e->taken > most ? e->taken : most;
    }
    if (vol == NULL) return most;
    const pg_surface *S = M->surf;
    const int surface_bad = (S->bad != 0 || S->n < 1 || (S->kind == PG_SURF_GRID && S->p < 1));
    const int needs_f = !(S->kind == PG_SURF_GRID && S->axis == PG_AXIS_STRIKE);
    if (S->kind == PG_SURF_SVI) {
        int st[PG_MKT_BLOCK];
        for (int i = 0; i < m; i++) K_b[i] = (K != NULL && K[i] > 0.0) ? K[i] : F[i];
        pg_svi_rows(S, m, T, K_b, F, br, st, vol, w_b);  /* NaN where the surface gives none */
        return most;
    }
    for (int i = 0; i < m; i++) {
        const double t = T[i], f = F[i];
        const double k = (K != NULL && K[i] > 0.0) ? K[i] : f;
        int s = (t >= 0.0 && t <= PG_DBL_MAX) ? 0 : PG_BAD_TIME;
        s |= (k > 0.0 && k <= PG_DBL_MAX) ? 0 : PG_BAD_STRIKE;
        if (needs_f) s |= (f > 0.0 && f <= PG_DBL_MAX) ? 0 : PG_BAD_UNDERLYING;
        double v = NAN, w;
        if (!s && !surface_bad && pg_surface_point_in(S, br[i], t, k, f, &v, &w) != 0) v = NAN;
        vol[i] = (s || surface_bad) ? NAN : v;
    }
    return most;
}

/* Rows [start, start + m) of a European batch, m <= PG_MKT_BLOCK, priced on the market
 * M: option types (type_bcast: one for every row), strikes and expiries of the batch; the
 * outputs as pg_black_block writes them (out, ldo, forward, df, status at the batch's
 * rows), in black blocks of PG_BLACK_BLOCK rows from `start` (so aligned as the batch
 * kernel aligns them when start is); level/rate/q/vol_out, each optional, get the market
 * columns. *most gets the most cash dividends a row took. Returns the failed rows. */
static ptrdiff_t pg_market_black_block(const pg_market *M, pg_mkt_cache *cache, int model,
                                       const int *type, int type_bcast, const double *K,
                                       const double *T, ptrdiff_t start, int m,
                                       const int *measures, int k, double *out, ptrdiff_t ldo,
                                       double *forward, double *df, int *status,
                                       double *level_out, double *rate_out, double *q_out,
                                       double *vol_out, int *most)
{
    double L[PG_MKT_BLOCK], R[PG_MKT_BLOCK], Q[PG_MKT_BLOCK], V[PG_MKT_BLOCK];
    *most = pg_market_block(M, cache, T + start, K + start, m, L, R, Q, V);
    ptrdiff_t nbad = 0;
    for (int b = 0; b < m; b += PG_BLACK_BLOCK) {
        const int mb = (m - b < PG_BLACK_BLOCK) ? m - b : PG_BLACK_BLOCK;
        const ptrdiff_t row = start + b;
        pg_black_inputs in;
        in.option_type = type_bcast ? type : type + row;
        in.strike = K + row;
        in.time = T + row;
        in.underlying = L + b;
        in.rate = R + b;
        in.dividend = Q + b;
        in.vol = V + b;
        in.broadcast = type_bcast ? PG_IN_OPTION_TYPE : 0;
        in.n = mb;
        nbad += pg_black_block(model, &in, 0, mb, measures, k, out + row, ldo,
                               forward ? forward + row : NULL, df ? df + row : NULL, status + row);
    }
    if (level_out) memcpy(level_out + start, L, (size_t)m * sizeof(double));
    if (rate_out) memcpy(rate_out + start, R, (size_t)m * sizeof(double));
    if (q_out) memcpy(q_out + start, Q, (size_t)m * sizeof(double));
    if (vol_out) memcpy(vol_out + start, V, (size_t)m * sizeof(double));
    return nbad;
}

#endif
