"""Backtesting of VaR models: exceptions, the likelihood-ratio tests and the Basel traffic light.

Pure statistics over counts (numpy and math only); the running state that feeds them lives
in the service (``pricegrid.server.service.backtest.Backtest``).

1. Exceptions. With VaR as a loss amount (``VarConvention.LOSS``, VaR >= 0), day t is an
   exception when its loss exceeds the VaR: -pnl_t > var_t. With VaR as the P&L quantile
   (``PNL_QUANTILE``, VaR <= 0) the same day is pnl_t < var_t. A loss equal to the VaR is
   not an exception. An accurate model at confidence ``level`` has an exception with
   probability p = 1 - level each day, independently of the other days.

2. Kupiec's proportion of failures (Kupiec, "Techniques for verifying the accuracy of risk
   measurement models", Journal of Derivatives 3(2), 1995): x exceptions in n days,
       LR_pof = 2 [x ln(x / (n p)) + (n - x) ln((n - x) / (n (1 - p)))],
   0 ln 0 = 0, asymptotically chi-square(1). Zero exceptions: -2 n ln(1 - p); all
   exceptions: -2 n ln p. Undefined before the first observation.

3. Christoffersen's independence test ("Evaluating interval forecasts", International
   Economic Review 39(4), 1998, section 3.2), over the n - 1 pairs of consecutive days:
   n_ij pairs go from state i to state j (1: exception), pi01 = n01 / (n00 + n01),
   pi11 = n11 / (n10 + n11), pi = (n01 + n11) / (n - 1),
       LR_ind = 2 [n00 ln(1 - pi01) + n01 ln pi01 + n10 ln(1 - pi11) + n11 ln pi11
                   - (n00 + n10) ln(1 - pi) - (n01 + n11) ln pi],
   0 ln 0 = 0, chi-square(1). Undefined with fewer than two days. Degenerate (LR_ind = 0,
   which says nothing) when no pair starts on an exception day (n10 + n11 = 0: pi11 has no
   data) or none starts on a day without one (n00 + n01 = 0). Conditional coverage
   LR_cc = LR_pof + LR_ind, chi-square(2), degenerate or undefined with LR_ind.

4. Chi-square upper tails in closed form: 1 degree of freedom erfc(sqrt(x / 2)), 2 degrees
   exp(-x / 2).

5. Traffic light (Basel Committee on Banking Supervision, "Supervisory framework for the use
   of backtesting in conjunction with the internal models approach to market risk capital
   requirements", January 1996, Table 2): x exceptions among the window's n observations,
   F(x) = P(X <= x) for X ~ Binomial(n, p); green while F(x) < 0.95, yellow while
   F(x) < 0.9999, red from there. Zero exceptions are green (the literal rule would make
   them yellow in windows of ln 0.95 / ln level days or fewer). F is summed from the
   binomial pmf by its ratio recurrence in log space over the support's bulk (mean +- 12
   standard deviations + 12, outside which the mass is below 1e-20) and normalised.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from pricegrid.server.domain.errors import Violations, shown

__all__ = [
    "VarConvention", "StatisticStatus", "Zone", "BacktestSettings", "LikelihoodRatio", "Transitions",
    "ExceptionDay", "TrafficLight", "BacktestResult", "DEFAULT_LEVEL", "DEFAULT_WINDOW", "MAX_LABEL_CHARS",
    "GREEN_BELOW", "RED_FROM", "exception_flags", "check_observations", "check_labels", "chi2_sf", "kupiec_pof",
    "christoffersen_independence", "conditional_coverage", "count_transitions", "binomial_cdf", "zone_bounds",
    "traffic_light",
]

DEFAULT_LEVEL = 0.99
DEFAULT_WINDOW = 250
MAX_LABEL_CHARS = 128
#: the Basel zones' bounds on the cumulative probability
GREEN_BELOW = 0.95
RED_FROM = 0.9999


class VarConvention(enum.IntEnum):
    """How VaR is signed (the contract's VarConvention numbers)."""

    LOSS = 1
    PNL_QUANTILE = 2


class StatisticStatus(enum.IntEnum):
    """Whether a statistic could be computed (the contract's StatisticStatus numbers)."""

    OK = 1
    DEGENERATE = 2
    UNDEFINED = 3


class Zone(enum.IntEnum):
    """Basel traffic-light zones (the contract's TrafficLightZone numbers; NONE: no data)."""

    NONE = 0
    GREEN = 1
    YELLOW = 2
    RED = 3


@dataclass(frozen=True)
class BacktestSettings:
    level: float = DEFAULT_LEVEL
    window: int = DEFAULT_WINDOW
    var_convention: VarConvention = VarConvention.LOSS

    @property
    def p(self) -> float:
        """The probability of an exception under the model: 1 - level."""
        return 1.0 - self.level

    def violations(self, prefix: str = "settings.") -> Violations:
        bad = Violations()
        level = self.level
        if not (isinstance(level, (int, float)) and math.isfinite(level) and 0.0 < level < 1.0):
            bad.add(f"{prefix}level", f"must be strictly between 0 and 1 (got {level!r})")
        elif not 0.0 < 1.0 - level < 1.0:  # e.g. 1e-300: the exception probability rounds to 1
            bad.add(f"{prefix}level", f"1 - level must be a probability below 1 in double precision (got {level!r})")
        if self.window < 1:
            bad.add(f"{prefix}window", f"must be >= 1 (got {self.window})")
        return bad


@dataclass(frozen=True)
class LikelihoodRatio:
    """A likelihood-ratio test: ``statistic`` and ``p_value`` are None when UNDEFINED."""

    status: StatisticStatus
    statistic: Optional[float]
    p_value: Optional[float]
    degrees_of_freedom: int
    note: str = ""


@dataclass(frozen=True)
class Transitions:
    """Pairs of consecutive days by state (0: no exception, 1: exception): n01 is 0 then 1."""

    n00: int = 0
    n01: int = 0
    n10: int = 0
    n11: int = 0

    def __add__(self, other: "Transitions") -> "Transitions":
        return Transitions(self.n00 + other.n00, self.n01 + other.n01, self.n10 + other.n10, self.n11 + other.n11)

    @property
    def pairs(self) -> int:
        return self.n00 + self.n01 + self.n10 + self.n11


@dataclass(frozen=True)
class ExceptionDay:
    index: int  # in the stream, from 0
    label: str
    pnl: float
    var: float  # as given


@dataclass(frozen=True)
class TrafficLight:
    zone: Zone
    window_observations: int
    window_exceptions: int
    cumulative_probability: float
    yellow_from: int
    red_from: int


@dataclass(frozen=True)
class BacktestResult:
    settings: BacktestSettings
    observations: int
    exceptions: int
    expected_exceptions: float
    newest_exceptions: tuple[ExceptionDay, ...]
    kupiec_pof: LikelihoodRatio
    christoffersen_independence: LikelihoodRatio
    conditional_coverage: LikelihoodRatio
    transitions: Transitions
    traffic_light: TrafficLight = field(repr=False)


# ------------------------------------------------------------------ observations
def exception_flags(pnl: np.ndarray, var: np.ndarray, convention: VarConvention) -> np.ndarray:
    """Boolean array: which days are exceptions (note 1)."""
    if convention == VarConvention.PNL_QUANTILE:
        return pnl < var
    return -pnl > var


def check_observations(pnl: np.ndarray, var: np.ndarray, convention: VarConvention, start: int,
                       bad: Violations, prefix: str = "", where: str = "stream index") -> None:
    """Adds a violation per bad value (``pnl[i]``, ``var[i]``: the index in this message, after
    ``prefix``; ``start`` is the index of its first observation in the stream, or wherever
    ``where`` says): non-finite P&L or VaR, a VaR of the wrong sign for ``convention``."""
    if len(pnl) != len(var):
        bad.add(f"{prefix}var", f"{len(var)} values for {len(pnl)} pnl values: one VaR per day")
        return
    for i in np.flatnonzero(~np.isfinite(pnl)).tolist():
        bad.add(f"{prefix}pnl[{i}]", f"must be finite (got {shown(pnl[i])}; {where} {start + i})")
        if bad.dropped:
            return
    finite = np.isfinite(var)
    for i in np.flatnonzero(~finite).tolist():
        bad.add(f"{prefix}var[{i}]", f"must be finite (got {shown(var[i])}; {where} {start + i})")
        if bad.dropped:
            return
    if convention == VarConvention.PNL_QUANTILE:
        wrong, rule = finite & (var > 0), "<= 0: var_convention PNL_QUANTILE takes the P&L quantile"
    else:
        wrong, rule = finite & (var < 0), ">= 0: var_convention LOSS takes a loss amount"
    for i in np.flatnonzero(wrong).tolist():
        bad.add(f"{prefix}var[{i}]", f"must be {rule} (got {shown(var[i])}; {where} {start + i})")
        if bad.dropped:
            return


def check_labels(labels, k: int, bad: Violations, prefix: str = "") -> None:
    """Labels are none or one per observation (``k``), each at most MAX_LABEL_CHARS."""
    if not len(labels):
        return
    if len(labels) != k:
        bad.add(f"{prefix}labels", f"{len(labels)} labels for {k} observations: none, or one per observation")
        return
    for i, label in enumerate(labels):
        if len(label) > MAX_LABEL_CHARS:
            bad.add(f"{prefix}labels[{i}]", f"at most {MAX_LABEL_CHARS} characters (got {len(label)})")


def count_transitions(flags: np.ndarray, previous: Optional[bool] = None) -> Transitions:
    """The pairs of consecutive days in ``flags`` (exception flags in time order), the first
    paired with ``previous`` (the day before, or None: no day before)."""
    f = np.asarray(flags, dtype=bool)
    if previous is not None:
        f = np.concatenate(([bool(previous)], f))
    if len(f) < 2:
        return Transitions()
    before, after = f[:-1], f[1:]
    n11 = int(np.count_nonzero(before & after))
    n10 = int(np.count_nonzero(before)) - n11
    n01 = int(np.count_nonzero(after)) - n11
    return Transitions(len(before) - n11 - n10 - n01, n01, n10, n11)


# ------------------------------------------------------------------ tests
def chi2_sf(x: float, dof: int) -> float:
    """P(chi2_dof > x) for 1 or 2 degrees of freedom (note 4)."""
    if x <= 0.0:
        return 1.0
    if dof == 1:
        return math.erfc(math.sqrt(x / 2.0))
    if dof == 2:
        return math.exp(-x / 2.0)
    raise ValueError("closed forms for 1 and 2 degrees of freedom only")


def _xlogy(x: float, y: float) -> float:
    """x ln y with 0 ln 0 = 0 (and 0 ln y = 0 for any y)."""
    return 0.0 if x == 0 else x * math.log(y)


def kupiec_pof(n: int, x: int, p: float) -> LikelihoodRatio:
    """Kupiec's proportion-of-failures test of x exceptions in n days at exception
    probability p = 1 - level (note 2)."""
    if n < 1:
        return LikelihoodRatio(StatisticStatus.UNDEFINED, None, None, 1, "no observations yet")
    # 2 [x ln(x/(n p)) + (n-x) ln((n-x)/(n(1-p)))], each term 0 when its count is 0
    lr = 0.0
    if x > 0:
        lr += x * (math.log(x / n) - math.log(p))
    if x < n:
        lr += (n - x) * (math.log1p(-x / n) - math.log1p(-p))
    lr = max(0.0, 2.0 * lr)  # >= 0 in exact arithmetic (Gibbs); rounding may leave -1e-16
    return LikelihoodRatio(StatisticStatus.OK, lr, chi2_sf(lr, 1), 1)


def christoffersen_independence(t: Transitions) -> LikelihoodRatio:
    """Christoffersen's independence test over the transition counts (note 3)."""
    if t.pairs < 1:
        return LikelihoodRatio(StatisticStatus.UNDEFINED, None, None, 1,
                               "needs two observations (one pair of consecutive days)")
    from0, from1 = t.n00 + t.n01, t.n10 + t.n11
    if from1 == 0 or from0 == 0:
        note = ("no day follows an exception: the chance of an exception after one cannot be estimated"
                if from1 == 0 else
                "every day but the last is an exception: the chance of an exception after a quiet day cannot"
                " be estimated")
        return LikelihoodRatio(StatisticStatus.DEGENERATE, 0.0, 1.0, 1, note)
    pi01, pi11 = t.n01 / from0, t.n11 / from1
    pi = (t.n01 + t.n11) / t.pairs
    alt = _xlogy(t.n00, 1 - pi01) + _xlogy(t.n01, pi01) + _xlogy(t.n10, 1 - pi11) + _xlogy(t.n11, pi11)
    null = _xlogy(t.n00 + t.n10, 1 - pi) + _xlogy(t.n01 + t.n11, pi)
    lr = max(0.0, 2.0 * (alt - null))
    return LikelihoodRatio(StatisticStatus.OK, lr, chi2_sf(lr, 1), 1)


def conditional_coverage(pof: LikelihoodRatio, ind: LikelihoodRatio) -> LikelihoodRatio:
    """LR_cc = LR_pof + LR_ind, chi-square(2): undefined or degenerate with either part."""
    if pof.status == StatisticStatus.UNDEFINED or ind.status == StatisticStatus.UNDEFINED:
        return LikelihoodRatio(StatisticStatus.UNDEFINED, None, None, 2, ind.note or pof.note)
    lr = pof.statistic + ind.statistic
    status = StatisticStatus.DEGENERATE if ind.status == StatisticStatus.DEGENERATE else StatisticStatus.OK
    note = f"the independence part is degenerate ({ind.note}): this is the POF statistic alone" if ind.note else ""
    return LikelihoodRatio(status, lr, chi2_sf(lr, 2), 2, note)


# ------------------------------------------------------------------ traffic light
@functools.lru_cache(maxsize=64)
def _binomial_cdf_table(n: int, p: float) -> tuple[int, np.ndarray]:
    """(k0, F) with F[j] = P(X <= k0 + j) for X ~ Binomial(n, p) over the bulk of the
    support (note 5): P(X < k0) and P(X > k0 + len(F) - 1) are below 1e-20."""
    mean, sd = n * p, math.sqrt(n * p * (1.0 - p))
    k0 = max(0, math.floor(mean - 12.0 * sd - 12.0))
    k1 = min(n, math.ceil(mean + 12.0 * sd + 12.0))
    k = np.arange(k0, k1, dtype=np.float64)
    # ln pmf(k) - ln pmf(k0), by pmf(k+1) / pmf(k) = (n - k) / (k + 1) * p / (1 - p); the
    # constant ln pmf(k0) goes with the normalisation below
    steps = np.log((n - k) / (k + 1.0)) + (math.log(p) - math.log1p(-p))
    logpmf = np.concatenate(([0.0], np.cumsum(steps)))
    pmf = np.exp(logpmf - logpmf.max())
    cdf = np.cumsum(pmf)
    cdf /= cdf[-1]
    cdf.flags.writeable = False
    return k0, cdf


def binomial_cdf(x: int, n: int, p: float) -> float:
    """P(X <= x) for X ~ Binomial(n, p), 0 < p < 1."""
    if x < 0:
        return 0.0
    if x >= n:
        return 1.0
    k0, cdf = _binomial_cdf_table(n, p)
    if x < k0:
        return 0.0
    j = x - k0
    return 1.0 if j >= len(cdf) else float(min(1.0, cdf[j]))


@functools.lru_cache(maxsize=256)
def zone_bounds(n: int, p: float) -> tuple[int, int]:
    """(yellow_from, red_from): the fewest exceptions in the yellow and in the red zone
    among n observations at exception probability p (note 5; zero exceptions are green)."""
    k0, cdf = _binomial_cdf_table(n, p)
    yellow = k0 + int(np.searchsorted(cdf, GREEN_BELOW, side="left"))
    red = k0 + int(np.searchsorted(cdf, RED_FROM, side="left"))
    return max(1, min(yellow, n)), max(1, min(red, n))


def traffic_light(window_exceptions: int, window_observations: int, p: float) -> TrafficLight:
    """The zone of ``window_exceptions`` among ``window_observations`` (note 5)."""
    if window_observations < 1:
        return TrafficLight(Zone.NONE, 0, 0, 0.0, 0, 0)
    yellow, red = zone_bounds(window_observations, p)
    x = window_exceptions
    zone = Zone.GREEN if x < yellow else (Zone.YELLOW if x < red else Zone.RED)
    return TrafficLight(zone, window_observations, x, binomial_cdf(x, window_observations, p), yellow, red)
