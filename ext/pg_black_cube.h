/* A scenario cube of European options: n trades x s scenarios, priced and turned into
 * P&L in one pass, without the n x s input columns a batch would need.
 *
 * 1. Rows: row r = t s + j is trade t under scenario j (trade-major, the scenario axis
 *    contiguous: the P&L cube's layout). Each input of a row comes from one source:
 *      PG_CUBE_TRADE  a trade's column, c[t] (or c[0] for a column of one: broadcast);
 *      PG_CUBE_ADD    c[t] + v[j]: a trade's column moved by a scenario's amount;
 *      PG_CUBE_MUL    v[j] * c[t]: a trade's column scaled by a scenario's factor;
 *      PG_CUBE_CELL   c[r]: the row's own value (an n x s array, for moves that depend on
 *                     both the trade and the scenario).
 *    Option type and strike are always trade columns. ADD and MUL are one IEEE operation
 *    each, the operation the caller would have done on the n x s array, so a row's inputs
 *    are the same bits either way.
 * 2. Blocks: rows [32 b, 32 b + 32) are gathered into block arrays (in L1), trade by trade
 *    (a block holds a trade's run of scenarios, or the end of one and the start of the
 *    next), and priced by pg_black_block_full, the batch kernel's own full-block loop; a
 *    last block of fewer rows is padded with copies of its last row, as
 *    pg_black_block_padded pads. Every row takes the vector path of a full block, so a
 *    cell's bits are the ones price_batch and price_one give for the same inputs, in any
 *    block, cube or scenario set.
 * 3. Output: pnl[r] = (value - base[t]) x quantity[t], the subtraction then the product
 *    (as the caller's numpy would do them). A failed row's value is NaN (pg_black_block),
 *    so is its P&L; the count of failed rows is returned, not which (the caller that needs
 *    the rows and their reasons prices the block again through price_batch).
 */
#ifndef PG_BLACK_CUBE_H
#define PG_BLACK_CUBE_H

#include <stddef.h>
#include "pg_black.h"

#define PG_CUBE_TRADE 0
#define PG_CUBE_ADD   1
#define PG_CUBE_MUL   2
#define PG_CUBE_CELL  3

/* One moved input: its source, the trade column (or the n x s cells) and the scenario
 * vector (ADD, MUL). `one`: the trade column has a single entry for every trade. */
typedef struct {
    int how;
    int one;
    const double *c;
    const double *v;
} pg_cube_input;

/* The cube's inputs (n trades, s scenarios). */
typedef struct {
    const int *option_type;
    const double *strike;
    int one_type, one_strike;
    pg_cube_input in[5];   /* time, underlying, rate, dividend, vol */
    const double *base;    /* n: each trade's base value */
    const double *quantity;
    int one_quantity;
    ptrdiff_t n, s;
} pg_cube;

#define PG_CUBE_TIME 0
#define PG_CUBE_UNDERLYING 1
#define PG_CUBE_RATE 2
#define PG_CUBE_DIVIDEND 3
#define PG_CUBE_VOL 4

/* Rows [i0, i0 + len) of the block array `dst`: trade t under scenarios j0 .. j0 + len - 1
 * (cube row r0 = t s + j0). */
PG_INLINE void pg_cube_fill(double *dst, const pg_cube_input *x, ptrdiff_t t, ptrdiff_t j0,
                            ptrdiff_t r0, int i0, int len)
{
    const double c = (x->how == PG_CUBE_CELL) ? 0.0 : x->c[x->one ? 0 : t];
    double *d = dst + i0;
    switch (x->how) {
    case PG_CUBE_ADD: {
        const double *v = x->v + j0;
        #pragma omp simd
        for (int i = 0; i < len; i++) d[i] = c + v[i];
        break;
    }
    case PG_CUBE_MUL: {
        const double *v = x->v + j0;
        #pragma omp simd
        for (int i = 0; i < len; i++) d[i] = v[i] * c;
        break;
    }
    case PG_CUBE_CELL: {
        const double *v = x->c + r0;
        for (int i = 0; i < len; i++) d[i] = v[i];
        break;
    }
    default:
        #pragma omp simd
        for (int i = 0; i < len; i++) d[i] = c;
        break;
    }
}

PG_INLINE void pg_cube_fill_d(double *d, double c, int len)
{
    #pragma omp simd
    for (int i = 0; i < len; i++) d[i] = c;
}

PG_INLINE void pg_cube_fill_i(int *d, int c, int len)
{
    #pragma omp simd
    for (int i = 0; i < len; i++) d[i] = c;
}

/* Block b of the cube (rows [32 b, 32 b + m), m = 32 but for the last block): prices its
 * rows and writes their P&L to pnl[row]. Returns the number of failed rows. */
static ptrdiff_t pg_black_cube_block(int model, const pg_cube *cube, ptrdiff_t b, double *pnl)
{
    enum { B = PG_BLACK_BLOCK };
    PG_ALIGNED int type_b[B], st_b[B];
    PG_ALIGNED double K_b[B], T_b[B], U_b[B], r_b[B], q_b[B], v_b[B], o_b[B];
    double *const dst[5] = {T_b, U_b, r_b, q_b, v_b};
    const ptrdiff_t n = cube->n, s = cube->s, rows = n * s, r0 = b * B;
    const int m = (int)(rows - r0 < B ? rows - r0 : B);
    const int price = PG_MEASURE_PRICE;
    const int bsm = (model == PG_MODEL_BSM);
    const ptrdiff_t t0 = r0 / s, j0 = r0 - t0 * s;

    /* the block's rows, trade by trade */
    ptrdiff_t t = t0, j = j0;
    for (int i = 0; i < m;) {
        const int len = (int)((s - j) < (m - i) ? (s - j) : (m - i));
        pg_cube_fill_i(type_b + i, cube->option_type[cube->one_type ? 0 : t], len);
        pg_cube_fill_d(K_b + i, cube->strike[cube->one_strike ? 0 : t], len);
        for (int x = 0; x < 5; x++)
            if (x != PG_CUBE_DIVIDEND || bsm)  /* the dividend is read for BSM only */
                pg_cube_fill(dst[x], &cube->in[x], t, j, t * s + j, i, len);
        i += len;
        t += 1;
        j = 0;
    }
    if (m < B) {  /* a short last block: padded with its last row */
        const int pad = B - m;
        pg_cube_fill_i(type_b + m, type_b[m - 1], pad);
        pg_cube_fill_d(K_b + m, K_b[m - 1], pad);
        for (int x = 0; x < 5; x++) pg_cube_fill_d(dst[x] + m, dst[x][m - 1], pad);
    }
    if (!bsm) pg_cube_fill_d(q_b, 0.0, B);
    pg_black_inputs p = {type_b, K_b, T_b, U_b, r_b, q_b, v_b, 0, B};
    pg_black_block_full(model, &p, 0, B, &price, 1, o_b, B, NULL, NULL, st_b);

    /* P&L, trade by trade */
    int nbad = 0;
    #pragma omp simd reduction(+:nbad)
    for (int i = 0; i < m; i++) nbad += (st_b[i] != 0);
    t = t0;
    j = j0;
    for (int i = 0; i < m;) {
        const int len = (int)((s - j) < (m - i) ? (s - j) : (m - i));
        const double base = cube->base[t];
        const double qty = cube->quantity[cube->one_quantity ? 0 : t];
        double *out = pnl + r0 + i;
        const double *o = o_b + i;
        #pragma omp simd
        for (int l = 0; l < len; l++) out[l] = (o[l] - base) * qty;
        i += len;
        t += 1;
        j = 0;
    }
    return nbad;
}

#endif
