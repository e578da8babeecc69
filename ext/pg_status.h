/* Per-row status bits shared by every kernel family.
 *
 * A kernel writes 0 for a row it priced, or the OR of the bits below naming every input
 * that was out of the model's domain (or PG_NOT_FINITE when the inputs were valid but the
 * result overflowed). Such a row's outputs are NaN; the service layer turns the bits into
 * per-row errors naming the field, so that no NaN ever leaves the server unexplained.
 * pricegrid.ext.status mirrors these values for Python.
 */
#ifndef PG_STATUS_H
#define PG_STATUS_H

#define PG_OK                   0
#define PG_BAD_OPTION_TYPE      (1 << 0)
#define PG_BAD_STRIKE           (1 << 1)
#define PG_BAD_TIME             (1 << 2)
#define PG_BAD_UNDERLYING       (1 << 3)
#define PG_BAD_RATE             (1 << 4)
#define PG_BAD_DIVIDEND         (1 << 5)
#define PG_BAD_VOL              (1 << 6)
#define PG_BAD_PRICE            (1 << 7)   /* implied vol: price not finite or negative */
#define PG_PRICE_OUT_OF_BOUNDS  (1 << 8)   /* implied vol: outside the no-arbitrage bounds */
#define PG_NOT_FINITE           (1 << 9)   /* valid inputs, result not finite (overflow) */
#define PG_BAD_BARRIER          (1 << 10)  /* barrier: not finite, not > 0, or spot at/through it */
#define PG_BAD_REBATE           (1 << 11)  /* barrier rebate / digital cash: not finite or < 0 */
/* Heston parameters: v0 >= 0; kappa, theta, sigma > 0; |rho| < 1; all finite */
#define PG_BAD_HESTON_V0        (1 << 12)
#define PG_BAD_HESTON_KAPPA     (1 << 13)
#define PG_BAD_HESTON_THETA     (1 << 14)
#define PG_BAD_HESTON_SIGMA     (1 << 15)
#define PG_BAD_HESTON_RHO       (1 << 16)
/* Options library (issue 3) */
#define PG_BAD_UPPER_BARRIER    (1 << 17)  /* double barrier: upper not finite, not > lower, or spot outside */
#define PG_BAD_FIXINGS          (1 << 18)  /* averaging schedule: times not finite, not increasing, or past expiry */
#define PG_BAD_RUNNING          (1 << 19)  /* Asian running average; lookback running minimum */
#define PG_BAD_PAYOFF_STRIKE    (1 << 20)  /* digital payoff strike not finite or < 0 */
#define PG_BAD_MONITORING       (1 << 21)  /* discrete monitoring interval not finite or < 0 */
#define PG_BAD_VARIANT          (1 << 22)  /* per-row type code (barrier type, payoff, touch kind, ...) unknown */
/* Not an input's fault: the kernel was stopped (cancelled, or past its deadline: pg_stop.h)
 * before it finished this row; the whole call fails with the stop's reason */
#define PG_CANCELLED            (1 << 23)
/* Each input of a path's state has its own bit, so that a row error names the field sent */
#define PG_BAD_PAST_FIXINGS     (1 << 24)  /* Asian past fixings < 0 */
#define PG_BAD_ELAPSED          (1 << 25)  /* Asian elapsed averaging time not finite or < 0 */
#define PG_BAD_RUNNING_MAX      (1 << 26)  /* lookback running maximum */

/* Model codes: the same numbers as pricegrid.v1.Model. */
#define PG_MODEL_BSM        1
#define PG_MODEL_BLACK76    2
#define PG_MODEL_BACHELIER  3

/* Option type codes: the same numbers as pricegrid.v1.OptionType. */
#define PG_CALL  1
#define PG_PUT   2

#endif
