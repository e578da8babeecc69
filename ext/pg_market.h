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
 *    sequence (one 16-byte load a row, no branch); the rows not found there go through
 *    the scalar probe, where a miss evaluates the curves (pg_curve_search +
 *    pg_curve_eval, the curve kernel's own pointwise functions), the escrowed level, the
 *    forward and the surface's expiry bracket (pg_surface_bracket) and stores them (or,
 *    in a cache already half full, writes them to the row's spare entry); then the rows'
 *    entries are read into block arrays once (pg_mkt_read). The keys have a dense array of
 *    their own (the probe reads 8 bytes a slot, not a line of an entry); an entry is two
 *    aligned 64-byte lines, read with AVX-512 eight rows at a time by whole-line loads and
 *    an 8 x 8 transposition (gcc emulates gathers on this CPU: about a dozen scalar loads
 *    and inserts per field and vector of rows). A cached value is the value the same T
 *    computes, so a row's bits depend neither on the cache, nor on its place in the batch,
 *    nor on the thread split.
 * 2. Then the vol of each row at its own strike, at the cached bracket: grids and SABR
 *    through the surface kernel's own functions (pg_surface_point_in), so the vol is the
 *    one EvaluateSurface gives at (T, K, F), bit for bit. SVI through pg_mkt_svi_vols: the
 *    entry holds the interpolation in T as weights per unit time (vol^2 = v0 w_i0(k) +
 *    v1 w_i1(k), pg_surfaces.h note 2) and 1/F, so a row costs a log (k = ln(K (1/F))),
 *    the two slices and one square root, no division: within 4 units in the last place of
 *    EvaluateSurface's vol (tests/ext/test_market_kernel.py), the same bits for the
 *    columns and the one-pass prices.
 * 3. European options priced on a snapshot in one pass (pg_market_black_block): per block
 *    of PG_MKT_BLOCK rows, the market columns into block arrays (in L1), then
 *    pg_black_block on them, PG_BLACK_BLOCK rows at a time: the same bits as the two
 *    passes (columns, then the batch kernel) over blocks aligned the same way, without
 *    writing and reading four columns of the batch's length.
 * 4. Except BSM on a spot and Black-76 on a futures price over an SVI surface (the
 *    benchmark's case; pg_mkt_black_svi): there the kernel's forward is the market's, so
 *    the entry also holds DF = exp(-r T), dF/dU and sqrt(T), and ln(F/K) is -k of the vol
 *    lookup: a row computes no exp, log or sqrt of its own beyond the vol's and N, n
 *    (pg_mkt_black_terms, then pg_black.h's measure functions). DF and F come from libm's
 *    exp, not libmvec's (within 4 units in the last place of the batch kernel's), so
 *    prices and Greeks are the batch kernel's on the same columns within 1e-13 relative
 *    or 1e-15 of the column's largest value (1e-14 for vanna, volga, charm). Snapshot
 *    bench (1e6 rows, price + 5 Greeks, one thread, 2-core VM): 32.6-33.5 -> 28.8-31.7 ms
 *    (Market.price_black alone 27.3-27.8 -> 23.9-24.2 ms); then the key array, the
 *    transposed entry reads and whole sub-blocks writing the batch's outputs in place (as
 *    pg_black_block does): 29.6-31.7 -> 25.8-26.6 ms, 1.51-1.57x -> 1.34-1.36x flat
 *    inline (Market.price_black alone about 25 -> 22 ms); then the probe's 16-byte key
 *    loads, the SVI step writing the one pass's arrays in place, the strikes and types
 *    prefetched and blocks of 128 rows: Market.price_black alone 21.6-24.5 -> 20.7-22.8 ms
 *    (medians 22.2 -> 20.8, five alternations), the bench 25.9-27.3 -> 25.3-27.1 ms
 *    (medians of six 26.3 -> 25.9), 1.35-1.37x -> 1.30-1.37x (besides runs whose flat
 *    calls were slow: one before at 1.23x, two after at 1.22-1.23x); then the SVI step's
 *    last loop in registers (pg_mkt_svi_fused) and the output pages faulted in before the
 *    blocks (pg_mkt_prefault): Market.price_black alone 19.26 -> 18.29 ms, as the service
 *    calls it (fresh outputs, 4 chunks) 26.30 -> 23.94 ms (medians of 25, interleaved in one
 *    process), the bench 25.3-26.8 -> 24.0-25.2 ms, 1.30-1.37x -> 1.22-1.30x (six runs
 *    each, alternated); then the fused loops' checks as pg_black.h's (PG_MKT_FUSED_LOOP):
 *    Market.price_black (4 chunks, reused outputs) about 0.15 ms less of 19.3 (interleaved
 *    in one process; the bench cannot resolve it); then no prefault under two pages a column
 *    (its mincore per array cost more than the faults it saves): a one-row call 11.2 ->
 *    3.4 us (Price on a snapshot, which calls it, 29 -> 21 us). Measured without gain on this AMD
 *    AVX-512 VM (Zen 4 class; same bits each): the entries read by 16-byte masked broadcast
 *    loads and unpacks (+0.5 ms), by 256-bit 4 x 4 transpositions, or with the probe's keys
 *    by vgatherqpd (both +-0.1 ms); a scalar probe (+1.8 ms branch-free, +3.5 ms as gcc
 *    branches it); prefetching the entries from the probe (+0.3 ms); blocks of 64 or 256
 *    rows; the SVI loop unrolled twice; the SVI step's x and its log in the fused loop
 *    (+0.9 ms: the call clobbers the slice tables' registers). Without the three divisions
 *    of the terms (x/s, gamma, theta) a row would save at most 0.5 ms (a bound, not bits).
 *    Every sub-block is computed whole (padded), so a row's bits depend neither on its
 *    place nor on the measure set.
 */
#ifndef PG_MARKET_H
#define PG_MARKET_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>  /* mincore: pg_mkt_prefault */
#endif

#include "pg_status.h"
#include "pg_inputs.h"
#include "pg_black.h"
#include "pg_curves.h"
#include "pg_surfaces.h"

#define PG_MKT_BLOCK 128                     /* rows per block: its arrays (and the SVI step's) nearer L1 than at 256 */
#define PG_MKT_CACHE_BITS_MAX 12             /* at most 4096 entries: 512 KiB and 32 KiB of keys per thread */
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

/* What a row's expiry alone decides: two 64-byte lines (the cache aligns them), the first
 * the eight doubles of PG_MKT_D_*, the second v0, v1 and the three ints, so that a vector of
 * rows reads its entries with whole-line loads and a transposition (pg_mkt_read). */
typedef struct {
    double r, q, level, fwd;
    double df, ds, sqrt_t;    /* exp(-r t), fwd / level, sqrt(t): the European kernel's per-expiry terms */
    double inv_fwd;           /* 1 / fwd: k = ln(K / fwd) = log(K inv_fwd) */
    double v0, v1;            /* SVI: vol^2 = v0 w_i0(k) + v1 w_i1(k) (note 2) */
    int bracket;              /* the surface's expiry bracket */
    int taken;                /* cash dividends paid by t */
    int svi_ok;               /* SVI: t and fwd valid, the surface usable */
    int pad_[9];
} pg_mkt_entry;
_Static_assert(sizeof(pg_mkt_entry) == 128, "two 64-byte lines");

/* The block arrays pg_mkt_read fills: doubles (the entry's order), then ints. */
enum { PG_MKT_D_R, PG_MKT_D_Q, PG_MKT_D_LEVEL, PG_MKT_D_FWD, PG_MKT_D_DF, PG_MKT_D_DS,
       PG_MKT_D_SQRT_T, PG_MKT_D_INV_FWD, PG_MKT_D_V0, PG_MKT_D_V1, PG_MKT_DOUBLES };
enum { PG_MKT_I_BRACKET, PG_MKT_I_TAKEN, PG_MKT_I_SVI_OK, PG_MKT_INTS };

/* An open-addressing (linear probing) cache of 2^bits entries (e: caller's storage of
 * pg_mkt_cache_size(bits) entries: the table, then PG_MKT_BLOCK spare entries for a block's
 * rows, then the key array), filled to at most half: an expiry seen before is found; once
 * half full, a new expiry is computed without being stored. The keys (expiries, NaN: empty)
 * have their own dense array, so the probe of a block's rows reads 8 bytes a slot, not a
 * line of an entry; key[2^bits] repeats key[0] (a probe's second slot without a wrap). */
typedef struct {
    int bits;
    int used;
    pg_mkt_entry *e;
    double *key;
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
    const int keys = (1 << bits) + 1;
    return (1 << bits) + PG_MKT_BLOCK + 1  /* + 1: room to align the table to 64 bytes */
           + (int)((keys * sizeof(double) + sizeof(pg_mkt_entry) - 1) / sizeof(pg_mkt_entry));
}

static inline void pg_mkt_cache_init(pg_mkt_cache *c, int bits, pg_mkt_entry *storage)
{
    c->bits = bits;
    c->used = 0;
    c->e = (pg_mkt_entry *)(((uintptr_t)storage + 63) & ~(uintptr_t)63);
    c->key = (double *)(c->e + (1 << bits) + PG_MKT_BLOCK);
    for (int i = 0; i <= (1 << bits); i++) c->key[i] = NAN;
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
    memset(e, 0, sizeof *e);
    e->r = pg_mkt_zero(M->disc, t);
    e->q = (M->div != NULL) ? pg_mkt_zero(M->div, t) : 0.0;
    /* cash dividends with ex-time <= t (a NaN t takes none) */
    int taken = 0;
    while (taken < M->nd && M->div_t[taken] <= t) taken++;
    e->taken = taken;
    e->level = (taken > 0) ? M->level - M->div_pv[taken] : M->level;
    e->fwd = M->spot ? e->level * exp((e->r - e->q) * t) : e->level;
    e->bracket = (M->surf != NULL && t >= 0.0) ? pg_surface_bracket(M->surf, t) : 0;
    e->df = exp(-e->r * t);
    e->ds = e->fwd / e->level;
    e->sqrt_t = sqrt(t);
    e->inv_fwd = 1.0 / e->fwd;
    /* SVI interpolation weights per unit time (pg_surfaces.h note 2): between slices
     * w = (1 - l) w_c-1 + l w_c, vol^2 = w / t; on a slice, before the first and from the
     * last one on, vol^2 = w_i / T_i */
    const pg_surface *S = M->surf;
    e->svi_ok = S != NULL && S->kind == PG_SURF_SVI && S->bad == 0 && S->n >= 1
                && t >= 0.0 && t <= PG_DBL_MAX && e->fwd > 0.0 && e->fwd <= PG_DBL_MAX;
    e->v0 = 0.0;
    e->v1 = 0.0;
    if (e->svi_ok) {
        const int c = e->bracket, n = S->n;
        if (c == 0 || c == n || t == S->T[c - 1]) {
            e->v0 = 1.0 / S->T[c == 0 ? 0 : c - 1];
        } else {
            const double T0 = S->T[c - 1], T1 = S->T[c];
            const double l = (t - T0) / (T1 - T0);
            e->v0 = (1.0 - l) / t;
            e->v1 = l / t;
        }
    }
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
        const double kh = c->key[h];
        if (kh == t) return e;
        if (kh != kh) {  /* empty */
            if (t == t && 2 * (c->used + 1) <= (1 << c->bits)) {
                pg_mkt_fill(M, t, e);
                c->key[h] = t;
                if (h == 0) c->key[mask + 1] = t;
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

#ifdef PG_SVI_PERMUTE
#include <immintrin.h>
typedef double pg_v2d __attribute__((vector_size(16)));
typedef double pg_v4d __attribute__((vector_size(32)));
typedef unsigned long long pg_v8u __attribute__((vector_size(64)));
#endif

/* The cache entries of rows [0, m) of a block: slot[i] indexes cache->e (the table, or
 * row i's spare entry after it). The first two slots of each row's probe sequence are
 * compared in a vector loop (with AVX-512, a row's two keys are one 16-byte load, not an
 * element of two emulated gathers); the rows not found there (a miss, or an expiry further
 * along its probe sequence) go through pg_mkt_lookup, their entry filled in the cache or
 * in the row's spare entry. Every row gets the entry of its own t: the same numbers
 * wherever it is found. */
static void pg_mkt_slots(const pg_market *M, pg_mkt_cache *cache, const double *T, int m,
                         int *slot)
{
    pg_mkt_entry *E = cache->e;
    const double *key = cache->key;
    const int bits = cache->bits;
    const unsigned mask = (1u << bits) - 1u;
    int missed = 0, i0 = 0;
#ifdef PG_SVI_PERMUTE
    const pg_v8l ones = {-1, -1, -1, -1, -1, -1, -1, -1};
    pg_v8l miss = ones ^ ones;
    for (; i0 + 8 <= m; i0 += 8) {
        pg_v8d t;
        pg_v8u b;
        memcpy(&t, T + i0, sizeof t);
        memcpy(&b, T + i0, sizeof b);
        const pg_v8u h = (b * 0x9E3779B97F4A7C15ull) >> (64 - bits);  /* pg_mkt_hash */
        pg_v2d p[8];
        for (int l = 0; l < 8; l++) memcpy(&p[l], key + h[l], sizeof p[l]);
        const pg_v4d q0 = __builtin_shufflevector(p[0], p[1], 0, 1, 2, 3);
        const pg_v4d q1 = __builtin_shufflevector(p[2], p[3], 0, 1, 2, 3);
        const pg_v4d q2 = __builtin_shufflevector(p[4], p[5], 0, 1, 2, 3);
        const pg_v4d q3 = __builtin_shufflevector(p[6], p[7], 0, 1, 2, 3);
        const pg_v8d lo = __builtin_shufflevector(q0, q1, 0, 1, 2, 3, 4, 5, 6, 7);
        const pg_v8d hi = __builtin_shufflevector(q2, q3, 0, 1, 2, 3, 4, 5, 6, 7);
        const pg_v8d k0 = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
        const pg_v8d k1 = __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
        const pg_v8l hit0 = (k0 == t), hit1 = (k1 == t) & ~hit0;  /* true: -1 */
        const pg_v8l h0 = (pg_v8l)h, h1 = (h0 + 1) & (pg_v8l)(ones & mask);
        const pg_v8l s = (hit0 & h0) | (hit1 & h1) | ~(hit0 | hit1);  /* -1: not found */
        const pg_v8i si = __builtin_convertvector(s, pg_v8i);
        memcpy(slot + i0, &si, sizeof si);
        miss |= ~(hit0 | hit1);
    }
    for (int l = 0; l < 8; l++) missed |= (miss[l] != 0);
#endif
    #pragma omp simd reduction(|:missed)
    for (int i = i0; i < m; i++) {
        const double t = T[i];
        const unsigned h0 = pg_mkt_hash(t, bits);
        const int hit0 = (key[h0] == t), hit1 = (key[h0 + 1] == t);
        slot[i] = hit0 ? (int)h0 : hit1 ? (int)((h0 + 1u) & mask) : -1;
        missed |= !(hit0 | hit1);
    }
    if (missed) {  /* the rows 8 at a time, skipped when no slot is negative */
        pg_mkt_entry *spare = E + (1 << bits);
        for (int g = 0; g < m; g += 8) {
            const int e = (m - g < 8) ? m : g + 8;
            int any = 0;
            for (int i = g; i < e; i++) any |= slot[i];
            if (any >= 0) continue;
            for (int i = g; i < e; i++)
                if (slot[i] < 0) slot[i] = (int)(pg_mkt_lookup(M, cache, T[i], spare + i) - E);
        }
    }
}

#ifdef PG_SVI_PERMUTE
/* a[j][l] -> a[l][j], 8 x 8 (three rounds of two-source lane shuffles) */
static inline void pg_mkt_t8(pg_v8d *a)
{
    const pg_v8l lo1 = {0, 8, 2, 10, 4, 12, 6, 14}, hi1 = {1, 9, 3, 11, 5, 13, 7, 15};
    const pg_v8l lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const pg_v8l lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
    pg_v8d u[8], v[8];
    for (int j = 0; j < 8; j += 2) {
        u[j] = __builtin_shuffle(a[j], a[j + 1], lo1);
        u[j + 1] = __builtin_shuffle(a[j], a[j + 1], hi1);
    }
    for (int j = 0; j < 8; j += 4)
        for (int h = 0; h < 2; h++) {
            v[j + h] = __builtin_shuffle(u[j + h], u[j + h + 2], lo2);
            v[j + h + 2] = __builtin_shuffle(u[j + h], u[j + h + 2], hi2);
        }
    for (int h = 0; h < 4; h++) {
        a[h] = __builtin_shuffle(v[h], v[h + 4], lo4);
        a[h + 4] = __builtin_shuffle(v[h], v[h + 4], hi4);
    }
}
#endif

/* The entries of rows [0, mp) of a block (mp a multiple of 8; a row from m on reads row
 * m - 1's entry) into block arrays D[PG_MKT_D_*] and I[PG_MKT_I_*]. Copies only. With
 * AVX-512, 8 rows at a time: each entry's two lines loaded whole, then transposed (instead
 * of a gather, emulated with scalar loads, per field). */
static void pg_mkt_read(const pg_mkt_entry *E, const int *slot, int m, int mp,
                        double (*D)[PG_MKT_BLOCK], int (*I)[PG_MKT_BLOCK])
{
#ifdef PG_SVI_PERMUTE
    for (int i = 0; i < mp; i += 8) {
        pg_v8d a[8], b[8];
        for (int l = 0; l < 8; l++) {
            const char *p = (const char *)&E[slot[i + l < m ? i + l : m - 1]];
            memcpy(&a[l], p, sizeof a[l]);
            memcpy(&b[l], p + 64, sizeof b[l]);
        }
        pg_mkt_t8(a);
        pg_mkt_t8(b);
        for (int j = 0; j < 8; j++) memcpy(&D[j][i], &a[j], sizeof a[j]);
        memcpy(&D[PG_MKT_D_V0][i], &b[0], sizeof b[0]);
        memcpy(&D[PG_MKT_D_V1][i], &b[1], sizeof b[1]);
        pg_v8l bt, ok;
        memcpy(&bt, &b[2], sizeof bt);  /* bracket, taken */
        memcpy(&ok, &b[3], sizeof ok);  /* svi_ok, pad */
        const pg_v8i br = __builtin_convertvector(bt, pg_v8i);
        const pg_v8i tk = __builtin_convertvector(bt >> 32, pg_v8i);
        const pg_v8i sv = __builtin_convertvector(ok, pg_v8i);
        memcpy(&I[PG_MKT_I_BRACKET][i], &br, sizeof br);
        memcpy(&I[PG_MKT_I_TAKEN][i], &tk, sizeof tk);
        memcpy(&I[PG_MKT_I_SVI_OK][i], &sv, sizeof sv);
    }
#else
    #pragma omp simd
    for (int i = 0; i < mp; i++) {
        const pg_mkt_entry *e = &E[slot[i < m ? i : m - 1]];
        D[PG_MKT_D_R][i] = e->r;
        D[PG_MKT_D_Q][i] = e->q;
        D[PG_MKT_D_LEVEL][i] = e->level;
        D[PG_MKT_D_FWD][i] = e->fwd;
        D[PG_MKT_D_DF][i] = e->df;
        D[PG_MKT_D_DS][i] = e->ds;
        D[PG_MKT_D_SQRT_T][i] = e->sqrt_t;
        D[PG_MKT_D_INV_FWD][i] = e->inv_fwd;
        D[PG_MKT_D_V0][i] = e->v0;
        D[PG_MKT_D_V1][i] = e->v1;
        I[PG_MKT_I_BRACKET][i] = e->bracket;
        I[PG_MKT_I_TAKEN][i] = e->taken;
        I[PG_MKT_I_SVI_OK][i] = e->svi_ok;
    }
#endif
}

#ifdef PG_SVI_PERMUTE
/* pg_mkt_svi_vols' last loop for a surface of at most 8 slices, 8 rows at a time in
 * registers: each slice parameter a lane permutation of its column (pg_svi_params) used
 * where it is made, and a row's flags (at the forward, valid) and bracket taken from its
 * strike and entry where they are used, not stored to block arrays and read back. The same
 * values and expressions as the generic loop, so the same bits. Kp, Tp: the block's strikes
 * (0: at the forward) and expiries, padded to mp. */
static void pg_mkt_svi_fused(const pg_surface *S, int mp, const double *Kp, const double *Tp,
                             const int *svi_ok, const int *bracket, const double *x,
                             const double *V0, const double *V1, double *vol, double *lnfk)
{
    const int n = S->n;
    const double *v = S->v;
    pg_v8d tab[5];
    for (int j = 0; j < 5; j++)
        for (int l = 0; l < 8; l++) tab[j][l] = (l < n) ? v[l * PG_SVI_COLUMNS + j] : 0.0;
    const pg_v8l zero = {0, 0, 0, 0, 0, 0, 0, 0};
    const pg_v8l nn = zero + n, absm = zero + 0x7fffffffffffffffll;
    const pg_v8d zd = {0, 0, 0, 0, 0, 0, 0, 0};
    const pg_v8d big = zd + PG_DBL_MAX, nan = zd + NAN;
    for (int i = 0; i < mp; i += 8) {
        pg_v8i bi, si;
        memcpy(&bi, bracket + i, sizeof bi);
        memcpy(&si, svi_ok + i, sizeof si);
        pg_v8d ki, xi, ti, v0, v1;
        memcpy(&ki, Kp + i, sizeof ki);
        memcpy(&xi, x + i, sizeof xi);
        memcpy(&ti, Tp + i, sizeof ti);
        memcpy(&v0, V0 + i, sizeof v0);
        memcpy(&v1, V1 + i, sizeof v1);
        /* as pg_mkt_svi_vols' first loop: at_f, good, c, t_b (a true comparison is -1) */
        const pg_v8l atf = ~(ki > zd);
        const pg_v8l good = (__builtin_convertvector(si, pg_v8l) != zero) & (atf | (ki <= big));
        const pg_v8l cl = __builtin_convertvector(bi, pg_v8l) & good;
        const pg_v8d tb = (pg_v8d)((pg_v8l)ti & good);
        const pg_v8l i0 = cl + (cl > zero), i1 = cl + (cl == nn);
        const pg_v8d k = (pg_v8d)((pg_v8l)xi & ~atf);               /* at_f ? 0.0 : x */
        const pg_v8d A0 = __builtin_shuffle(tab[PG_SVI_A], i0), A1 = __builtin_shuffle(tab[PG_SVI_A], i1);
        const pg_v8d B0 = __builtin_shuffle(tab[PG_SVI_B], i0), B1 = __builtin_shuffle(tab[PG_SVI_B], i1);
        const pg_v8d R0 = __builtin_shuffle(tab[PG_SVI_RHO], i0), R1 = __builtin_shuffle(tab[PG_SVI_RHO], i1);
        const pg_v8d M0 = __builtin_shuffle(tab[PG_SVI_M], i0), M1 = __builtin_shuffle(tab[PG_SVI_M], i1);
        const pg_v8d G0 = __builtin_shuffle(tab[PG_SVI_SIGMA], i0), G1 = __builtin_shuffle(tab[PG_SVI_SIGMA], i1);
        const pg_v8d d0 = k - M0, g0 = G0;
        const pg_v8d d1 = k - M1, g1 = G1;
        const pg_v8d w0 = A0 + B0 * (R0 * d0 + (pg_v8d)_mm512_sqrt_pd((__m512d)(d0 * d0 + g0 * g0)));
        const pg_v8d w1 = A1 + B1 * (R1 * d1 + (pg_v8d)_mm512_sqrt_pd((__m512d)(d1 * d1 + g1 * g1)));
        const pg_v8d p0 = (pg_v8d)((pg_v8l)w0 & (w0 > zd)), p1 = (pg_v8d)((pg_v8l)w1 & (w1 > zd));
        const pg_v8d u = v0 * p0 + v1 * p1;
        const pg_v8d vv = (pg_v8d)_mm512_sqrt_pd((__m512d)u);
        const pg_v8d ut = u * tb;
        const pg_v8l ok = good
                          & ((pg_v8d)((pg_v8l)vv & absm) <= big)
                          & ((pg_v8d)((pg_v8l)ut & absm) <= big);
        const pg_v8d r = (pg_v8d)(((pg_v8l)vv & ok) | ((pg_v8l)nan & ~ok));
        const pg_v8d nk = -k;
        memcpy(vol + i, &r, sizeof r);
        memcpy(lnfk + i, &nk, sizeof nk);
    }
}
#endif

/* SVI vols of rows [0, m) of a block (note 2) with expiries T, entries E[slot[i]] and
 * strikes K (NULL, or a K not > 0: at the forward): vol[i] (NaN where the surface gives
 * none: an entry that is not svi_ok, an infinite strike, a variance that is not finite) and
 * x[i] = ln(F/K) (0 at the forward), written in place: vol and x hold m rounded up to
 * whole vectors (the rows from m on get stand-ins). Every loop runs over m padded to whole
 * vectors with stand-in rows, so a row's bits depend neither on its place nor on m. */
static void pg_mkt_svi_vols(const pg_surface *S, const double (*D)[PG_MKT_BLOCK],
                            const int (*I)[PG_MKT_BLOCK], const double *T, const double *K,
                            int m, double *vol, double *lnfk)
{
    double x[PG_MKT_BLOCK] PG_SURF_ALIGNED, t_b[PG_MKT_BLOCK];
    double kpad[PG_MKT_BLOCK] PG_SURF_ALIGNED, tpad[PG_MKT_BLOCK];
    const double *V0 = D[PG_MKT_D_V0], *V1 = D[PG_MKT_D_V1];
    double P[PG_SVI_GATHERED][PG_SURF_BLOCK] PG_SURF_ALIGNED;
    int c[PG_MKT_BLOCK], good[PG_MKT_BLOCK], at_f[PG_MKT_BLOCK];
    const int mp = (m + PG_SURF_VECTOR - 1) / PG_SURF_VECTOR * PG_SURF_VECTOR;
    const double *Kp = K, *Tp = T;  /* strikes (0: at the forward) and expiries, padded to mp */
    if (K == NULL || m < mp) {
        for (int i = 0; i < mp; i++) {
            kpad[i] = (K != NULL && i < m) ? K[i] : 0.0;
            tpad[i] = T[i < m ? i : m - 1];
        }
        Kp = kpad;
        Tp = tpad;
    }
    const int *svi_ok = I[PG_MKT_I_SVI_OK];
    #pragma omp simd
    for (int i = 0; i < mp; i++) {
        const double ki = Kp[i];
        const int f = !(ki > 0.0);
        const int ok = svi_ok[i] & (f | (ki <= PG_DBL_MAX));
        x[i] = (ok & !f) ? ki * D[PG_MKT_D_INV_FWD][i] : 1.0;
    }
    #pragma omp simd aligned(x : 64)
    for (int i = 0; i < mp; i++) x[i] = log(x[i]);
#ifdef PG_SVI_PERMUTE
    if (S->n <= 8) {
        pg_mkt_svi_fused(S, mp, Kp, Tp, svi_ok, I[PG_MKT_I_BRACKET], x, V0, V1, vol, lnfk);
        return;
    }
#endif
    #pragma omp simd
    for (int i = 0; i < mp; i++) {
        const double ki = Kp[i];
        const int f = !(ki > 0.0);
        const int ok = svi_ok[i] & (f | (ki <= PG_DBL_MAX));
        good[i] = ok;
        at_f[i] = f;
        c[i] = ok ? I[PG_MKT_I_BRACKET][i] : 0;
        t_b[i] = ok ? Tp[i] : 0.0;
    }
    pg_svi_params(S, mp, mp, c, P);
    const double *A0 = P[0], *B0 = P[1], *R0 = P[2], *M0 = P[3], *G0 = P[4];
    const double *A1 = P[6], *B1 = P[7], *R1 = P[8], *M1 = P[9], *G1 = P[10];
    #pragma omp simd
    for (int i = 0; i < mp; i++) {
        const double k = at_f[i] ? 0.0 : x[i];
        const double d0 = k - M0[i], g0 = G0[i];
        const double d1 = k - M1[i], g1 = G1[i];
        const double w0 = A0[i] + B0[i] * (R0[i] * d0 + sqrt(d0 * d0 + g0 * g0));
        const double w1 = A1[i] + B1[i] * (R1[i] * d1 + sqrt(d1 * d1 + g1 * g1));
        /* >= 0 for valid parameters; rounding below 0 dropped */
        const double u = V0[i] * (w0 > 0.0 ? w0 : 0.0) + V1[i] * (w1 > 0.0 ? w1 : 0.0);
        const double v = sqrt(u);
        const int ok = good[i] & pg_finite(v) & pg_finite(u * t_b[i]);
        vol[i] = ok ? v : NAN;
        lnfk[i] = -k;
    }
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
    PG_SURF_ALIGNED double D[PG_MKT_DOUBLES][PG_MKT_BLOCK];
    PG_SURF_ALIGNED int I[PG_MKT_INTS][PG_MKT_BLOCK];
    int slot[PG_MKT_BLOCK];
    int most = 0;
    pg_mkt_slots(M, cache, T, m, slot);
    pg_mkt_read(cache->e, slot, m, (m + 7) / 8 * 8, D, I);
    const double *F = D[PG_MKT_D_FWD];
    const int *br = I[PG_MKT_I_BRACKET];
    memcpy(rate, D[PG_MKT_D_R], (size_t)m * sizeof(double));
    memcpy(q, D[PG_MKT_D_Q], (size_t)m * sizeof(double));
    memcpy(level, D[PG_MKT_D_LEVEL], (size_t)m * sizeof(double));
    #pragma omp simd reduction(max:most)
    for (int i = 0; i < m; i++) most = I[PG_MKT_I_TAKEN][i] > most ? I[PG_MKT_I_TAKEN][i] : most;
    if (vol == NULL) return most;
    const pg_surface *S = M->surf;
    const int surface_bad = (S->bad != 0 || S->n < 1 || (S->kind == PG_SURF_GRID && S->p < 1));
    const int needs_f = !(S->kind == PG_SURF_GRID && S->axis == PG_AXIS_STRIKE);
    if (S->kind == PG_SURF_SVI) {
        if (surface_bad) {  /* (a bad surface may have no slices to read) */
            for (int i = 0; i < m; i++) vol[i] = NAN;
        } else {
            PG_SURF_ALIGNED double v[PG_MKT_BLOCK], x[PG_MKT_BLOCK];
            pg_mkt_svi_vols(S, (const double (*)[PG_MKT_BLOCK])D, (const int (*)[PG_MKT_BLOCK])I,
                            T, K, m, v, x);
            memcpy(vol, v, (size_t)m * sizeof(double));
        }
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

/* The terms of a row as pg_black_terms_core computes them (BSM on a spot, Black-76 on a
 * futures price: the kernel's forward is the market's), from the row's cache entry (F,
 * DF, dF/dU, sqrt(T)) and x = ln(F/K) = -k of its vol lookup: no exp, log or sqrt of T
 * per row (note 4). For BSM the flat kernel takes ln(F/K) as ln(S/K) + (r - q) T and dF/dS
 * as exp((r - q) T), so the two paths agree within an ulp or two there, not bit for bit
 * (the tests compare them at 1e-13 relative). */
PG_INLINE pg_black_terms pg_mkt_black_terms(const int model, double w, double strike,
                                            double time, double rate, double dividend,
                                            double vol, double F, double DF, double ds,
                                            double sqrtT, double x)
{
    return pg_black_terms_from(model, w, strike, time, rate, dividend, vol, F, DF,
                               (model == PG_MODEL_BSM) ? ds : 1.0, sqrtT, x);
}

/* A sub-block of PG_BLACK_BLOCK rows (padded) in block arrays. */
typedef struct {
    const int *type;
    const double *K, *T, *L, *r, *q, *vol, *F, *DF, *ds, *sq, *x;
} pg_mkt_rows;

#define PG_MKT_TERMS(i)                                                                  \
    pg_mkt_black_terms(model, (type[i] == PG_PUT) ? -1.0 : 1.0, K[i], T[i], r[i], q[i],  \
                       vol[i], F[i], DF[i], ds[i], sq[i], x[i])

/* The fused loops check a row as pg_black.h's do (PG_BLACK_FUSED_LOOP): a few signs
 * (pg_black_signs_ok) and one finiteness test of the sum of its inputs, F, DF and each
 * measure times 0; a block where some row fails (or a sum of finite terms overflows) names
 * each row's failure exactly (pg_black_row_status). Against a finiteness test of each
 * input and value (pg_inputs_ok, then each measure): bench figures in note 4. */
#define PG_MKT_FUSED(O, FN)                                              \
    do {                                                                 \
        const double v_ = FN(model, &t);                                 \
        (O)[i] = v_;                                                     \
        zero_ += v_ * 0.0;                                               \
    } while (0)

#define PG_MKT_FUSED_LOOP(...)                                                           \
    do {                                                                                 \
        _Pragma("omp simd reduction(|:bad)")                                             \
        for (int i = 0; i < PG_BLACK_BLOCK; i++) {                                       \
            const int ok_ = pg_black_signs_ok(model, type[i], K[i], T[i], L[i], vol[i]); \
            double sum_ = ((K[i] + T[i]) + (L[i] + r[i]))                               \
                          + (((model == PG_MODEL_BSM) ? q[i] : 0.0) + vol[i]);          \
            const pg_black_terms t = PG_MKT_TERMS(i);                                    \
            sum_ += t.F + t.DF;                                                          \
            double zero_ = 0.0;                                                          \
            __VA_ARGS__                                                                  \
            bad |= !ok_ | !pg_finite(sum_ + zero_);                                      \
        }                                                                                \
    } while (0)

/* Any other measure set: the terms into block arrays, then one loop per measure (pg_black.h's
 * loops). Its own function: inlined beside the fused loops, it kept them from vectorising.
 * Returns 1 when some row failed. */
PG_INLINE int pg_mkt_black_general(const int model, const pg_mkt_rows *a, const int *measures,
                                   int k, double *ob, ptrdiff_t ld, double *price)
{
    enum { B = PG_BLACK_BLOCK };
    const int *type = a->type;
    const double *K = a->K, *T = a->T, *L = a->L, *r = a->r, *q = a->q, *vol = a->vol;
    const double *F = a->F, *DF = a->DF, *ds = a->ds, *sq = a->sq, *x = a->x;
    int bad = 0;
    pg_black_buffers buffers;
    pg_black_buffers *b = &buffers;
    b->T = a->T; b->K = a->K; b->r = a->r; b->q = a->q; b->vol = a->vol;
    const int m = B;
    int nonfinite = 0;
    /* the terms loop written out with the terms in scalars (a `pg_black_terms` private to
     * the loop, with every field stored, kept the BSM instance from vectorising) */
    #pragma omp simd reduction(|:bad)
    for (int i = 0; i < B; i++) {
        const int ok_ = pg_inputs_ok(model, type[i], K[i], T[i], L[i], r[i], q[i])
                        & (vol[i] > 0.0 && vol[i] <= PG_DBL_MAX);
        const pg_black_terms t = PG_MKT_TERMS(i);
        const double tF = t.F, tDF = t.DF, tp = t.price;
        bad |= !ok_ | !(pg_finite(tp) & pg_finite(tF) & pg_finite(tDF));
        price[i] = tp;
        b->status[i] = 0;
        b->w[i] = t.w;
        b->F[i] = tF;
        b->DF[i] = tDF;
        if (model == PG_MODEL_BSM) b->ds[i] = t.ds;
        b->sqrtT[i] = t.sqrtT;
        b->sd[i] = t.sd;
        b->d1[i] = t.d1;
        b->d2[i] = t.d2;
        b->pdf[i] = t.pdf;
        b->N1[i] = t.N1;
        b->N2[i] = t.N2;
        b->price[i] = tp;
    }
    for (int j = 0; j < k; j++) {
        double *o = ob + j * ld;
        PG_BLACK_MEASURE_SWITCH(measures[j]);
    }
    return bad | nonfinite;
}

__attribute__((noinline)) static int pg_mkt_black_general_bsm(const pg_mkt_rows *a, const int *measures,
                                                               int k, double *ob, ptrdiff_t ld,
                                                               double *price)
{
    return pg_mkt_black_general(PG_MODEL_BSM, a, measures, k, ob, ld, price);
}

__attribute__((noinline)) static int pg_mkt_black_general_black76(const pg_mkt_rows *a,
                                                                   const int *measures, int k,
                                                                   double *ob, ptrdiff_t ld,
                                                                   double *price)
{
    return pg_mkt_black_general(PG_MODEL_BLACK76, a, measures, k, ob, ld, price);
}

/* The measures of a full (padded) sub-block into ob (measure j at ob + j ld) and status st;
 * returns 1 when some row failed. The common sets are computed in the terms loop, any
 * other one measure per loop; a row's values are the same either way (the same terms,
 * every row in the main vector loop). */
PG_INLINE int pg_mkt_black_rows(const int model, const pg_mkt_rows *a, const int *measures,
                                int k, int set, double *ob, ptrdiff_t ld, int *st)
{
    enum { B = PG_BLACK_BLOCK };
    PG_ALIGNED double price[B];
    const int *type = a->type;
    const double *K = a->K, *T = a->T, *L = a->L, *r = a->r, *q = a->q, *vol = a->vol;
    const double *F = a->F, *DF = a->DF, *ds = a->ds, *sq = a->sq, *x = a->x;
    double *op[PG_MEASURE_MAX + 1] = {0};
    for (int j = 0; j < k; j++) op[measures[j]] = ob + j * ld;
    double *const o1 = op[PG_MEASURE_PRICE], *const o2 = op[PG_MEASURE_DELTA];
    double *const o3 = op[PG_MEASURE_GAMMA], *const o4 = op[PG_MEASURE_VEGA];
    double *const o5 = op[PG_MEASURE_THETA], *const o6 = op[PG_MEASURE_RHO];
    int bad = 0;
    if (set == PG_BLACK_SET_PRICE) {
        PG_MKT_FUSED_LOOP(PG_MKT_FUSED(o1, pg_black_price););
    } else if (set == PG_BLACK_SET_DELTA) {
        PG_MKT_FUSED_LOOP(PG_MKT_FUSED(o1, pg_black_price); PG_MKT_FUSED(o2, pg_black_delta););
    } else if (set == PG_BLACK_SET_FIRST) {
        PG_MKT_FUSED_LOOP(PG_MKT_FUSED(o1, pg_black_price); PG_MKT_FUSED(o2, pg_black_delta);
                          PG_MKT_FUSED(o3, pg_black_gamma); PG_MKT_FUSED(o4, pg_black_vega);
                          PG_MKT_FUSED(o5, pg_black_theta); PG_MKT_FUSED(o6, pg_black_rho););
    } else {
        bad = (model == PG_MODEL_BSM) ? pg_mkt_black_general_bsm(a, measures, k, ob, ld, price)
                                      : pg_mkt_black_general_black76(a, measures, k, ob, ld, price);
    }
    if (!bad) {
        memset(st, 0, B * sizeof(int));
        return 0;
    }
    /* the price: o1 in the fused loops (every fused set has it), else the general path's */
    const double *const pr = (set == PG_BLACK_SET_PRICE || set == PG_BLACK_SET_DELTA
                              || set == PG_BLACK_SET_FIRST) ? o1 : price;
    for (int i = 0; i < B; i++) {  /* rare: name each row's failure, NaN its outputs */
        int s = pg_black_row_status(model, type[i], K[i], T[i], L[i], r[i], q[i], vol[i], F[i],
                                    DF[i], pr[i]);
        for (int j = 0; j < k; j++) s |= (s == 0 && !pg_finite(ob[j * ld + i])) ? PG_NOT_FINITE : 0;
        st[i] = s;
        if (s)
            for (int j = 0; j < k; j++) ob[j * ld + i] = NAN;
    }
    return 1;
}

/* The two instances (the model a compile-time constant in each, as in pg_black.h). */
static int pg_mkt_black_rows_bsm(const pg_mkt_rows *a, const int *measures, int k, int set,
                                 double *ob, ptrdiff_t ld, int *st)
{
    return pg_mkt_black_rows(PG_MODEL_BSM, a, measures, k, set, ob, ld, st);
}

static int pg_mkt_black_rows_black76(const pg_mkt_rows *a, const int *measures, int k, int set,
                                     double *ob, ptrdiff_t ld, int *st)
{
    return pg_mkt_black_rows(PG_MODEL_BLACK76, a, measures, k, set, ob, ld, st);
}

/* 1 when pg_mkt_black_svi prices a call: an SVI surface that passed its checks, the
 * kernel's forward the market's (BSM on a spot, Black-76 on a futures price), at most
 * PG_BLACK_PAD_MEASURES valid measure codes. */
static int pg_mkt_black_svi_fits(const pg_market *M, int model, const int *measures, int k)
{
    const pg_surface *S = M->surf;
    if (S == NULL || S->kind != PG_SURF_SVI || S->bad != 0 || S->n < 1) return 0;
    if (!((model == PG_MODEL_BSM && M->spot) || (model == PG_MODEL_BLACK76 && !M->spot))) return 0;
    if (k > PG_BLACK_PAD_MEASURES) return 0;
    for (int j = 0; j < k; j++)
        if (measures[j] < 1 || measures[j] > PG_MEASURE_MAX) return 0;
    return 1;
}

/* pg_market_black_block for an SVI surface where pg_mkt_black_svi_fits (note 4): the
 * row's vol as pg_market_block gives it (the same function), then the European terms from
 * the per-expiry numbers of the row's cache entry and -k of its vol lookup, PG_BLACK_BLOCK
 * rows at a time, every sub-block computed whole (padded with copies of its last row). */
static ptrdiff_t pg_mkt_black_svi(const pg_market *M, pg_mkt_cache *cache, int model,
                                  const int *type, int type_bcast, const double *K,
                                  const double *T, ptrdiff_t start, int m, const int *measures,
                                  int k, double *out, ptrdiff_t ldo, double *forward, double *df,
                                  int *status, double *level_out, double *rate_out, double *q_out,
                                  double *vol_out, int *most)
{
    enum { B = PG_BLACK_BLOCK };
    PG_ALIGNED double D[PG_MKT_DOUBLES][PG_MKT_BLOCK], V[PG_MKT_BLOCK], X[PG_MKT_BLOCK];
    PG_ALIGNED int I[PG_MKT_INTS][PG_MKT_BLOCK];
    double *const L = D[PG_MKT_D_LEVEL], *const R = D[PG_MKT_D_R], *const Q = D[PG_MKT_D_Q];
    double *const F = D[PG_MKT_D_FWD], *const DF = D[PG_MKT_D_DF], *const DS = D[PG_MKT_D_DS];
    double *const SQ = D[PG_MKT_D_SQRT_T];
    PG_ALIGNED double Kp[B], Tp[B], o[PG_BLACK_PAD_MEASURES * B];
    PG_ALIGNED int typ[B], st[B];
    int slot[PG_MKT_BLOCK];
    const double *Kb = K + start, *Tb = T + start;
    /* the block's strikes and types, read after the probe and the entries */
    pg_prefetch(Kb, (size_t)m * sizeof(double), 0);
    if (!type_bcast) pg_prefetch(type + start, (size_t)m * sizeof(int), 0);
    pg_mkt_slots(M, cache, Tb, m, slot);
    const int mp = (m + B - 1) / B * B;
    pg_mkt_read(cache->e, slot, m, mp, D, I);  /* rows from m on: stand-ins, copies of the last */
    int mo = 0;
    #pragma omp simd reduction(max:mo)
    for (int i = 0; i < m; i++) mo = I[PG_MKT_I_TAKEN][i] > mo ? I[PG_MKT_I_TAKEN][i] : mo;
    *most = mo;
    pg_mkt_svi_vols(M->surf, (const double (*)[PG_MKT_BLOCK])D, (const int (*)[PG_MKT_BLOCK])I,
                    Tb, Kb, m, V, X);
    for (int i = m; i < mp; i++) {  /* stand-ins: copies of the last row */
        V[i] = V[m - 1];
        X[i] = X[m - 1];
    }
    int set = 0;
    for (int j = 0; j < k; j++) set |= ((set >> measures[j]) & 1) ? (1 << 30) : (1 << measures[j]);
    if (type_bcast)
        for (int i = 0; i < B; i++) typ[i] = type[0];
    ptrdiff_t nbad = 0;
    for (int b = 0; b < m; b += B) {
        const int mb = (m - b < B) ? m - b : B;
        const ptrdiff_t row = start + b;
        pg_mkt_rows a = {type_bcast ? typ : type + row, Kb + b, Tb + b, L + b, R + b, Q + b,
                         V + b, F + b, DF + b, DS + b, SQ + b, X + b};
        if (mb < B) {
            for (int i = 0; i < B; i++) {
                const int r = i < mb ? i : mb - 1;
                Kp[i] = Kb[b + r];
                Tp[i] = Tb[b + r];
                if (!type_bcast) typ[i] = type[row + r];
            }
            a.type = typ;
            a.K = Kp;
            a.T = Tp;
        }
        /* the outputs of the next sub-block (as pg_black_block does) */
        for (int j = 0; j < k; j++) pg_prefetch(out + j * ldo + row + B, B * sizeof(double), 1);
        /* a whole sub-block writes the batch's outputs in place; the last, partial one its
         * own block arrays, copied */
        const int whole = (mb == B);
        double *const ob = whole ? out + row : o;
        const ptrdiff_t ld = whole ? ldo : B;
        int *const sb = whole ? status + row : st;
        const int failed = (model == PG_MODEL_BSM)
                               ? pg_mkt_black_rows_bsm(&a, measures, k, set, ob, ld, sb)
                               : pg_mkt_black_rows_black76(&a, measures, k, set, ob, ld, sb);
        if (!whole) {
            for (int j = 0; j < k; j++) memcpy(out + j * ldo + row, o + j * B, (size_t)mb * sizeof(double));
            memcpy(status + row, st, (size_t)mb * sizeof(int));
        }
        if (forward) memcpy(forward + row, F + b, (size_t)mb * sizeof(double));
        if (df) memcpy(df + row, DF + b, (size_t)mb * sizeof(double));
        if (failed) {
            for (int i = 0; i < mb; i++) {
                if (sb[i] == 0) continue;
                nbad++;
                if (forward) forward[row + i] = NAN;
                if (df) df[row + i] = NAN;
            }
        }
    }
    if (level_out) memcpy(level_out + start, L, (size_t)m * sizeof(double));
    if (rate_out) memcpy(rate_out + start, R, (size_t)m * sizeof(double));
    if (q_out) memcpy(q_out + start, Q, (size_t)m * sizeof(double));
    if (vol_out) memcpy(vol_out + start, V, (size_t)m * sizeof(double));
    return nbad;
}

/* Rows [start, end) of a call's outputs (out: k rows, ldo apart; status; the optional
 * columns, NULL when not asked for), one byte written per 4 KiB page (and the last), for
 * each array whose middle page is not yet in memory (a fresh array; mincore): the faults
 * of fresh output pages taken before the blocks run, not between them. The OS zeroes a
 * faulted page (2 MiB with transparent huge pages), which evicts the cache's entries from
 * L2, so that the next blocks read them from memory again. An array already in memory (a
 * buffer reused) is left alone: touching it costs a read of each line touched. Every byte
 * written here is written again by the blocks. Linux only (elsewhere: nothing). */
static void pg_mkt_prefault(ptrdiff_t start, ptrdiff_t end, int k, double *out, ptrdiff_t ldo,
                            int *status, double *forward, double *df, double *level,
                            double *rate, double *q, double *vol)
{
#ifdef __linux__
    const uintptr_t page = 4096;
    /* under two pages a column: its faults are at most two per array, and a mincore per
     * array (8 for a one-row trade with its effective inputs and market columns, about 4 us
     * of a one-row call's 11) costs more than they do */
    if ((end - start) * (ptrdiff_t)sizeof(double) < 2 * (ptrdiff_t)page) return;
    double *cols[6] = {forward, df, level, rate, q, vol};
    for (int j = -1; j < k + 6; j++) {
        char *p;
        ptrdiff_t bytes = (end - start) * (ptrdiff_t)sizeof(double);
        if (j < 0) {
            p = (char *)(status + start);
            bytes = (end - start) * (ptrdiff_t)sizeof(int);
        } else if (j < k) {
            p = (char *)(out + j * ldo + start);
        } else {
            if (cols[j - k] == NULL) continue;
            p = (char *)(cols[j - k] + start);
        }
        unsigned char in_memory = 1;
        const uintptr_t mid = ((uintptr_t)p + (uintptr_t)bytes / 2) & ~(page - 1);
        if (mincore((void *)mid, 1, &in_memory) != 0 || (in_memory & 1)) continue;
        volatile char *v = p;
        for (ptrdiff_t off = 0; off < bytes; off += (ptrdiff_t)page) v[off] = 0;
        v[bytes - 1] = 0;
    }
#else
    (void)start; (void)end; (void)k; (void)out; (void)ldo; (void)status; (void)forward;
    (void)df; (void)level; (void)rate; (void)q; (void)vol;
#endif
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
    if (pg_mkt_black_svi_fits(M, model, measures, k))
        return pg_mkt_black_svi(M, cache, model, type, type_bcast, K, T, start, m, measures, k,
                                out, ldo, forward, df, status, level_out, rate_out, q_out,
                                vol_out, most);
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
