"""Risk measures on scenario P&L: historical VaR and expected shortfall, parametric VaR from a
covariance, Euler components and incremental ES by trade and by tag, Studer's maximum loss.

Pure functions of numpy arrays, vectorised over scenarios (no per-scenario Python loop); the
scenario-risk RPC calls them on the P&L vectors and cubes its runs produce. Every bad input
raises one ServiceError (INVALID_ARGUMENT) naming each bad field, behind the caller's
``prefix`` (``prefix="risk."`` names ``risk.pnl``).

1. Signs. P&L is positive for a gain; a loss is L = -P&L. VaR and ES are reported as
   positive losses (a book that gains in every scenario has a negative VaR). A level alpha
   is a confidence in (0, 1): VaR_alpha is the alpha-quantile of L, ES_alpha the mean of L
   beyond it. Defaults: VaR at 99%, ES at 97.5% (the Basel FRTB pair).
2. The historical estimator. With the losses of n scenarios sorted, L_(1) <= ... <= L_(n),
   and k = ceil(n alpha):

       VaR_alpha = L_(k)          the left-continuous inverse of the empirical CDF,
                                  inf{x : F_n(x) >= alpha}: numpy's ``inverted_cdf``
                                  (Hyndman & Fan 1996, definition 1)
       ES_alpha  = [ sum_{j > k} L_(j) + (k - n alpha) L_(k) ] / (n (1 - alpha))

   ES is the Acerbi-Tasche estimator (C. Acerbi and D. Tasche, "On the coherence of expected
   shortfall", J. Banking & Finance 26 (2002) 1487-1503, written there for the P&L's lower
   tail: w = floor(n (1 - alpha)) tail scenarios, the (w+1)-th with weight
   n (1 - alpha) - w; here w = n - k). It is (1 / (1 - alpha)) times the integral of the
   empirical quantile function over (alpha, 1): the ES of the empirical distribution, a
   weighted mean of the losses >= VaR (so ES >= VaR always) and coherent (subadditive,
   positively homogeneous, translation equivariant) on a common scenario set. When
   n (1 - alpha) is a whole number it is the mean of the n (1 - alpha) largest losses.
   Levels are decimals held in binary: n alpha within 4 ulps of a whole number r counts as r
   (100 x 0.56 is 56.00000000000001: the 56% VaR of 100 scenarios is the 56th loss, where
   numpy's ``inverted_cdf`` takes the 57th). ``historical_var`` also takes any other
   numpy quantile method by name (``method="linear"``, ...) for VaR only; ES is always the
   estimator above.
3. Weighted scenarios (probabilities p_s, e.g. age-weighted historical simulation:
   p_s proportional to lambda^age, J. Boudoukh, M. Richardson and R. Whitelaw, "The best of
   both worlds", Risk 11 (May 1998) 64-67). Non-negative finite weights with a positive sum,
   normalised to sum 1. With the losses sorted and F_j their cumulative probability,
   k = min{j : F_j >= alpha} (F_j within 8 n x 2^-52 of alpha counts as reaching it: the
   rounding of the sum), VaR = L_(k) and ES = [sum_{j > k} p_(j) L_(j) + (F_k - alpha) L_(k)] / (1 - alpha),
   the same integral of the weighted empirical quantile function; equal weights give item 2
   (to rounding). Ties are broken by scenario index (a stable sort); the values do not
   depend on it, the components of item 5 do (any choice is an Euler allocation).
4. Parametric P&L for factor moves x ~ N(0, S), with S the caller's covariance (symmetric to
   1e-10 of its largest entry, then symmetrised; positive semi-definite: smallest eigenvalue
   >= -1e-10 x the largest), deltas d and, optionally, a symmetric gamma G (the P&L's first
   and second derivatives in the same units as x):

       delta-normal          P&L = d'x ~ N(0, d'Sd):  VaR = z_alpha sqrt(d'Sd)
       delta-gamma-normal    P&L = d'x + x'Gx/2 taken as normal with its exact mean and
                             variance: VaR = z_alpha sqrt(k2) - k1
       Cornish-Fisher        the same P&L's (1 - alpha)-quantile from its first four
                             cumulants: w = z + (z^2 - 1) g1/6 + (z^3 - 3z) g2/24
                             - (2z^3 - 5z) g1^2/36 at z = -z_alpha, VaR = -(k1 + sqrt(k2) w),
                             g1 = k3 / k2^1.5, g2 = k4 / k2^2 (skewness, excess kurtosis)

   with z_alpha the standard normal alpha-quantile. The cumulants of Q = d'x + x'Gx/2: write
   x = C y (S = C C', y ~ N(0, I)) and diagonalise C'GC/2 = P diag(l) P', b = P'C'd; then
   Q = sum_i (b_i y_i + l_i y_i^2), a sum of independent terms with cumulant generating
   function -log(1 - 2 l t)/2 + b^2 t^2 / (2 (1 - 2 l t)), whose t^r coefficient gives
   k_r = (r-1)! 2^(r-1) l^r + r! 2^(r-3) b^2 l^(r-2). Summed and written back in traces:

       k1 = tr(GS)/2
       k_r = (r-1)!/2 tr((GS)^r) + r!/2 d'S(GS)^(r-2)d          (r >= 2)
       k2 = d'Sd + tr((GS)^2)/2,  k3 = tr((GS)^3) + 3 d'SGSd,  k4 = 3 tr((GS)^4) + 12 d'SGSGSd

   (J. Mina and A. Ulmer, "Delta-Gamma Four Ways", RiskMetrics Group, 1999; S. Jaschke,
   "The Cornish-Fisher expansion in the context of Delta-Gamma-normal approximations",
   J. Risk 4(4) (2002), which also warns that the expansion is not monotone in the level
   for strongly skewed P&L). G = 0 gives delta-normal in all three.
   The inverse normal is the standard library's ``statistics.NormalDist().inv_cdf``, Wichura's
   AS 241 (Applied Statistics 37 (1988) 477-484, PPND16), the algorithm of
   ext/pg_inverse_normal.h.
5. Components (Euler allocation of ES). For a cube of P&L (trades x scenarios) the portfolio
   P&L is its column sum and ES = sum_s w_s L_s with the scenario weights w of items 2-3
   (1 / (n (1 - alpha)) on each scenario beyond VaR, the fractional weight on the VaR
   scenario, 0 elsewhere). Trade i's component is sum_s w_s (-P&L_is): the mean loss of the
   trade over the portfolio's tail, with the same boundary weighting, so the components add
   up to the portfolio ES exactly (to rounding). This is the derivative of ES in the trade's
   size (D. Tasche, "Risk contributions and performance measurement", 1999; Euler's theorem
   for a homogeneous risk measure).
6. Incremental ES of a trade: ES(portfolio) - ES(portfolio without the trade), computed
   exactly for every trade at once: the P&L of the portfolio less each trade, a
   (trades x scenarios) array in blocks of about 4M numbers, each block's ES by one
   ``numpy.partition`` along the scenarios (linear time, not a sort per trade).
7. Tags. Per-trade tag columns, top level first (desk, book, ...), make a tree: the root (the
   portfolio), one node per distinct desk, one per distinct (desk, book), ...; a node's P&L
   is the sum of its trades' (computed from its children's), its VaR and ES are historical
   (items 2-3), its component ES is the Euler component of item 5 against the portfolio's
   tail (children's components add up to their parent's, the top level's to the portfolio
   ES) and its incremental ES that of item 6 with the node's P&L.
8. Studer's maximum loss of a linear book (G. Studer, "Maximum loss for measurement of market
   risk", dissertation, ETH Zurich 1997; G. Studer and H.-J. Luethi, "Quadratic maximum loss
   for risk measurement of portfolios", RiskLab, ETH Zurich 1996): the worst P&L d'x over the trust region
   x' S^-1 x <= c, c the chi-square alpha-quantile with as many degrees of freedom as factors
   (the region holds probability alpha of N(0, S)), is at x* = -sqrt(c) S d / sqrt(d'Sd),
   a loss of sqrt(c d'Sd) (Cauchy-Schwarz in the metric of S). A singular S makes the region
   the flat ellipsoid {S^(1/2) y : |y|^2 <= c} and the formula holds; a book with d'Sd = 0
   loses nothing (x* = 0). The closed form checks the full-revaluation worst-case search.
9. Chi-square quantiles without scipy: chi2(nu) is 2 Gamma(nu/2), so c = 2 y with
   P(nu/2, y) = alpha, P the regularised lower incomplete gamma function (series below
   a + 1, Lentz's continued fraction for Q = 1 - P above it: Numerical Recipes, 3rd ed.,
   section 6.2), solved by Newton's method from the Wilson-Hilferty start, kept inside a
   bracket (bisection when a step leaves it); the upper tail is solved on Q = 1 - alpha so
   that levels near 1 keep their digits. Agrees with scipy.stats.chi2.ppf to 1e-10 relative
   (tests/server/domain/test_risk.py); a quantile below the smallest double is 0. The
   distribution function ``chi2_cdf`` is P(nu/2, x/2) itself.
"""

from __future__ import annotations

import enum
import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from pricegrid.server.domain.errors import ServiceError, Violations, invalid

__all__ = [
    "VAR_LEVEL", "ES_LEVEL", "QUANTILE_METHODS", "ParametricMethod", "TailRisk", "Attribution", "Node",
    "Hierarchy", "QuadraticMoments", "MaxLoss", "normal_quantile", "chi2_quantile", "historical_var",
    "historical_es", "historical_risk", "es_tail_weights", "es_attribution", "hierarchy_risk",
    "delta_gamma_moments", "delta_normal_var", "delta_gamma_normal_var", "cornish_fisher_var",
    "parametric_var", "studer_max_loss", "chi2_cdf", "check_covariance",
]

#: the default levels: 99% VaR, 97.5% ES
VAR_LEVEL = 0.99
ES_LEVEL = 0.975
#: our estimator's name among numpy's quantile methods (note 2)
INVERTED_CDF = "inverted_cdf"
#: the methods numpy.quantile takes; historical_var passes any of them on (VaR only)
QUANTILE_METHODS = ("inverted_cdf", "averaged_inverted_cdf", "closest_observation", "interpolated_inverted_cdf",
                    "hazen", "weibull", "linear", "median_unbiased", "normal_unbiased", "lower", "higher",
                    "midpoint", "nearest")
#: a covariance (or gamma) is symmetric when |A - A'| <= SYMMETRY_TOL x max |A|
SYMMETRY_TOL = 1e-10
#: a covariance is positive semi-definite when its smallest eigenvalue >= -PSD_TOL x its largest
PSD_TOL = 1e-10
#: numbers per block of the incremental-ES computation (note 6): 32 MB of float64
BLOCK = 1 << 22

_EPS = float(np.finfo(np.float64).eps)
_NORMAL = statistics.NormalDist()

Level = Union[float, Sequence[float], np.ndarray]


class ParametricMethod(enum.Enum):
    """How parametric VaR reads the book (note 4)."""

    DELTA_NORMAL = "delta_normal"
    DELTA_GAMMA_NORMAL = "delta_gamma_normal"
    CORNISH_FISHER = "cornish_fisher"


# ====================================================================== results
def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _out(a: np.ndarray):
    """A 0-d result as a float, any other as a read-only array."""
    return float(a) if np.ndim(a) == 0 else _frozen(np.asarray(a))


@dataclass(frozen=True, eq=False)
class TailRisk:
    """Historical VaR and ES of one P&L vector or along one axis of a cube (note 2).
    Each measure has the shape numpy.quantile gives: the level's shape (nothing for a
    number) followed by the P&L's shape without the scenario axis; a float when both are
    empty."""

    var_level: Union[float, np.ndarray]
    es_level: Union[float, np.ndarray]
    var: Union[float, np.ndarray]
    es: Union[float, np.ndarray]


@dataclass(frozen=True, eq=False)
class Attribution:
    """A cube's portfolio VaR and ES and each trade's share of ES (notes 5 and 6).

    ``component[i]``: trade i's Euler component (they add up to ``es``); ``incremental[i]``:
    ``es`` minus the ES of the portfolio without trade i (None when not asked for);
    ``tail_weights[s]``: scenario s's weight in ES (``es == tail_weights @ -pnl``)."""

    var_level: float
    es_level: float
    var: float
    es: float
    pnl: np.ndarray                     # (scenarios,) the portfolio's P&L
    component: np.ndarray               # (trades,)
    incremental: Optional[np.ndarray]   # (trades,)
    tail_weights: np.ndarray            # (scenarios,)


@dataclass(frozen=True)
class Node:
    """One node of a tag tree (note 7): the root has ``path == ()`` and ``parent == -1``."""

    path: tuple[str, ...]
    parent: int
    trades: int
    var: float
    es: float
    component_es: float
    incremental_es: float

    @property
    def depth(self) -> int:
        return len(self.path)


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """The tag tree of a cube: ``nodes`` root first, then depth by depth, each depth in
    the order of its paths; ``pnl[j]`` is node j's P&L (nodes x scenarios);
    ``leaf[i]`` the node of trade i at the deepest level."""

    tags: tuple[str, ...]
    var_level: float
    es_level: float
    nodes: tuple[Node, ...]
    pnl: np.ndarray
    leaf: np.ndarray

    def children(self, index: int) -> list[int]:
        return [j for j, node in enumerate(self.nodes) if node.parent == index]


@dataclass(frozen=True, eq=False)
class QuadraticMoments:
    """Moments of the delta-gamma P&L d'x + x'Gx/2, x ~ N(0, S) (note 4); each a float for one
    book, an array for a batch. ``cumulants``: (k1, k2, k3, k4)."""

    mean: Union[float, np.ndarray]
    variance: Union[float, np.ndarray]
    skewness: Union[float, np.ndarray]
    excess_kurtosis: Union[float, np.ndarray]
    cumulants: tuple


@dataclass(frozen=True, eq=False)
class MaxLoss:
    """Studer's maximum loss (note 8): ``loss`` >= 0 and the worst factor move ``scenario``
    (shape: the level's, the batch's, then factors) on the boundary x' S^-1 x = ``radius2``."""

    level: Union[float, np.ndarray]
    dof: float
    radius2: Union[float, np.ndarray]
    loss: Union[float, np.ndarray]
    scenario: np.ndarray


# ====================================================================== checks
def _describe(a: np.ndarray) -> str:
    return f"{a.ndim}-d of shape {a.shape}" if a.ndim else "a number"


def _numbers(raw, name: str, bad: Violations) -> Optional[np.ndarray]:
    try:
        a = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        bad.add(name, "must be numbers (a rectangular array of floats)")
        return None
    return a


def _finite(a: np.ndarray, name: str, bad: Violations) -> bool:
    if np.isfinite(a).all():
        return True
    wrong = ~np.isfinite(a)
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(wrong)), a.shape))
    where = f" at [{', '.join(map(str, first))}]" if a.ndim else ""
    count = int(wrong.sum())
    more = f" ({count} entries)" if count > 1 else ""
    bad.add(name, f"not finite: {float(a[first])!r}{where}{more}")
    return False


def _array(raw, name: str, bad: Violations, ndims: tuple[int, ...], what: str) -> Optional[np.ndarray]:
    """A finite, non-empty float64 array of one of ``ndims`` dimensions, or None (reported)."""
    a = _numbers(raw, name, bad)
    if a is None:
        return None
    if a.ndim not in ndims:
        bad.add(name, f"must be {what} (got {_describe(a)})")
        return None
    if a.size == 0:
        bad.add(name, f"empty (shape {a.shape})")
        return None
    return a if _finite(a, name, bad) else None


def _levels(raw, name: str, bad: Violations) -> Optional[np.ndarray]:
    """A level or a 1-d sequence of levels, each in (0, 1)."""
    a = _numbers(raw, name, bad)
    if a is None:
        return None
    if a.ndim > 1:
        bad.add(name, f"must be a number or a 1-d sequence of numbers (got {_describe(a)})")
        return None
    if a.ndim == 1 and a.size == 0:
        bad.add(name, "empty: give at least one level")
        return None
    outside = ~((a > 0.0) & (a < 1.0))  # NaN too
    if not outside.any():
        return a
    if a.ndim == 0:
        bad.add(name, f"must be in (0, 1) (got {float(a)!r})")
    else:
        for i in np.flatnonzero(outside)[:bad.cap]:
            bad.add(f"{name}[{int(i)}]", f"must be in (0, 1) (got {float(a[i])!r})")
    return None


def _axis(axis, ndim: int, name: str, bad: Violations) -> Optional[int]:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        bad.add(name, f"must be an axis of the {ndim}-d P&L, one of {list(range(-ndim, ndim))} (got {axis!r})")
        return None
    return int(axis) % ndim


def _weights(raw, n: Optional[int], name: str, bad: Violations) -> Optional[np.ndarray]:
    """Scenario probabilities: n non-negative finite numbers with a positive sum, normalised."""
    w = _array(raw, name, bad, (1,), "a 1-d array of scenario probabilities")
    if w is None:
        return None
    if n is not None and w.shape[0] != n:
        bad.add(name, f"{w.shape[0]} weights for {n} scenarios")
        return None
    if (w < 0.0).any():
        i = int(np.argmax(w < 0.0))
        bad.add(name, f"must be >= 0 (got {float(w[i])!r} at [{i}])")
        return None
    total = float(w.sum())
    if not (total > 0.0 and math.isfinite(total)):
        bad.add(name, f"must have a positive finite sum (got {total!r})")
        return None
    return w / total


def _symmetric(a: np.ndarray, name: str, bad: Violations) -> Optional[np.ndarray]:
    scale = float(np.abs(a).max())
    gap = np.abs(a - np.swapaxes(a, -1, -2))
    worst = float(gap.max())
    if worst > SYMMETRY_TOL * scale:
        at = np.unravel_index(int(np.argmax(gap)), gap.shape)
        where = ", ".join(map(str, (int(i) for i in at)))
        bad.add(name, f"not symmetric: |A - A'| = {worst:.3g} at [{where}], over {SYMMETRY_TOL:g} x max |A| "
                      f"= {SYMMETRY_TOL * scale:.3g}")
        return None
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def _covariance(raw, k: Optional[int], name: str, bad: Violations) -> Optional[np.ndarray]:
    """A k x k covariance: finite, symmetric (then symmetrised), positive semi-definite."""
    s = _array(raw, name, bad, (2,), "a square 2-d covariance matrix")
    if s is None:
        return None
    if s.shape[0] != s.shape[1]:
        bad.add(name, f"must be square (got shape {s.shape})")
        return None
    if k is not None and s.shape[0] != k:
        bad.add(name, f"{s.shape[0]} x {s.shape[1]} for {k} factors (the deltas' last axis)")
        return None
    s = _symmetric(s, name, bad)
    if s is None:
        return None
    diagonal = np.diagonal(s)
    if (diagonal < 0.0).any():
        i = int(np.argmax(diagonal < 0.0))
        bad.add(name, f"not positive semi-definite: variance [{i}, {i}] = {float(diagonal[i])!r} < 0")
        return None
    eig = np.linalg.eigvalsh(s)
    if eig[0] < -PSD_TOL * max(float(eig[-1]), 0.0):
        bad.add(name, f"not positive semi-definite: smallest eigenvalue {float(eig[0]):.6g}, largest "
                      f"{float(eig[-1]):.6g} (tolerance {PSD_TOL:g} x the largest)")
        return None
    return s


def _book(delta, covariance, gamma, prefix: str, need_gamma: bool, bad: Violations):
    """(d (..., k), S (k, k), G (..., k, k) or None), checked; None where one is bad."""
    d = _array(delta, prefix + "delta", bad, (1, 2), "a 1-d array of deltas (factors) or 2-d (books x factors)")
    k = d.shape[-1] if d is not None else None
    s = _covariance(covariance, k, prefix + "covariance", bad)
    g = None
    if need_gamma or gamma is not None:
        name = prefix + "gamma"
        if gamma is None:
            bad.add(name, "required by this method (factors x factors)")
        else:
            g = _array(gamma, name, bad, (2, 3), "a 2-d (factors x factors) or 3-d (books x factors x factors) array")
            if g is not None:
                if g.shape[-1] != g.shape[-2]:
                    bad.add(name, f"must be square in its last two axes (got shape {g.shape})")
                    g = None
                elif k is not None and g.shape[-1] != k:
                    bad.add(name, f"{g.shape[-2]} x {g.shape[-1]} for {k} factors (the deltas' last axis)")
                    g = None
                elif g.ndim == 3 and d is not None and (d.ndim != 2 or d.shape[0] != g.shape[0]):
                    bad.add(name, f"{g.shape[0]} books of gammas for deltas of shape {d.shape}")
                    g = None
                else:
                    g = _symmetric(g, name, bad)
    bad.raise_if_any()
    return d, s, g


# ====================================================================== quantiles
def normal_quantile(level: float) -> float:
    """The standard normal quantile: AS 241 (Wichura 1988), as the standard library has it."""
    return _NORMAL.inv_cdf(float(level))


def _gamma_pq(a: float, x: float) -> tuple[float, float]:
    """(P(a, x), Q(a, x)), the regularised incomplete gamma functions, each computed directly
    on its side of a + 1 (note 9)."""
    if x <= 0.0:
        return 0.0, 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:  # series: P = e^-x x^a / Gamma(a) sum_n x^n / (a (a+1) ... (a+n))
        term = total = 1.0 / a
        ap = a
        for _ in range(100_000):
            ap += 1.0
            term *= x / ap
            total += term
            if term < total * 1e-17:
                break
        p = total * math.exp(log_front)
        return p, 1.0 - p
    tiny = 1e-300  # modified Lentz on Q's continued fraction
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-16:
            break
    q = math.exp(log_front) * h
    return 1.0 - q, q


def chi2_quantile(level: float, dof: float) -> float:
    """The chi-square ``level``-quantile with ``dof`` degrees of freedom (note 9): the same
    number as scipy.stats.chi2.ppf(level, dof) to about 1e-14 relative."""
    try:
        level, dof = float(level), float(dof)
    except (TypeError, ValueError):
        raise invalid("level", f"level and dof must be numbers (got {level!r}, {dof!r})") from None
    if not 0.0 < level < 1.0:
        raise invalid("level", f"must be in (0, 1) (got {level!r})")
    if not (dof > 0.0 and math.isfinite(dof)):
        raise invalid("dof", f"must be a positive number (got {dof!r})")
    a = 0.5 * dof
    upper = level > 0.5
    target = 1.0 - level if upper else level

    def gap(y: float) -> float:  # increasing in y, zero at the root
        p, q = _gamma_pq(a, y)
        return target - q if upper else p - target

    z = normal_quantile(level)
    h = 2.0 / (9.0 * dof)
    start = dof * (1.0 - h + z * math.sqrt(h)) ** 3 / 2.0  # Wilson-Hilferty, as a gamma variate
    if not start > 0.0 or (not upper and dof < 2.0):  # small x: P(a, y) ~ y^a / Gamma(a + 1)
        start = math.exp((math.log(level) + math.lgamma(a + 1.0)) / a)
        if start == 0.0:  # below the smallest double, where y^a / Gamma(a + 1) is exact
            return 0.0
    lo, hi, y = 0.0, math.inf, start
    for _ in range(500):
        g = gap(y)
        if g == 0.0:
            break
        if g < 0.0:
            lo = y
        else:
            hi = y
        density = math.exp((a - 1.0) * math.log(y) - y - math.lgamma(a))
        nxt = y - g / density if density > 0.0 else math.nan
        if not lo < nxt < hi:  # outside the bracket: bisect (double while there is no upper end)
            nxt = 2.0 * y if math.isinf(hi) else (0.5 * (lo + hi) if lo > 0.0 else 0.5 * hi)
        if abs(nxt - y) <= 2.0 * _EPS * nxt:
            y = nxt
            break
        y = nxt
    return 2.0 * y



def chi2_cdf(x: float, dof: float) -> float:
    """P(chi2(dof) <= x), the regularised lower incomplete gamma function P(dof/2, x/2)
    (note 9); 0 for x <= 0."""
    return _gamma_pq(0.5 * float(dof), 0.5 * float(x))[0]


def check_covariance(raw, k: Optional[int], name: str = "covariance") -> np.ndarray:
    """A k x k covariance (note 4's checks: finite, symmetric, then symmetrised, positive
    semi-definite), or a ServiceError naming ``name``."""
    bad = Violations()
    s = _covariance(raw, k, name, bad)
    bad.raise_if_any()
    return s

# ====================================================================== historical
def _boundary(n: int, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, frac): the VaR order statistic k = ceil(n alpha) (1-based; n alpha within 4 ulps of
    a whole number taken as it) and the boundary weight k - n alpha, in scenarios (note 2).
    At k = n the tail is the largest loss alone: frac is 1 there (any positive weight gives
    ES = L_(n); n alpha may round to n itself)."""
    m = n * alpha
    r = np.rint(m)
    snap = np.abs(m - r) <= 4.0 * _EPS * m
    k = np.clip(np.where(snap, r, np.ceil(m)), 1, n).astype(np.int64)
    frac = np.where(snap, 0.0, np.clip(k - m, 0.0, 1.0))
    return k, np.where(k == n, 1.0, frac)


def _equal_tail(losses: np.ndarray, var_alpha: np.ndarray, es_alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VaR and ES (levels first, then the leading axes) of equally likely scenarios along the
    last axis of ``losses``, which is partitioned in place: one numpy.partition at the lowest
    order statistic asked for, then one of the numbers above it for the others (a few dozen a
    row at the usual levels: 15% faster than one partition at all of them)."""
    n = losses.shape[-1]
    kv, _ = _boundary(n, var_alpha)
    ke, frac = _boundary(n, es_alpha)
    kth = np.unique(np.concatenate([kv, ke])) - 1
    losses.partition(kth[0], axis=-1)
    if len(kth) > 1:
        losses[..., kth[0] + 1:].partition(kth[1:] - kth[0] - 1, axis=-1)  # those above the lowest
    var = np.moveaxis(losses[..., kv - 1], -1, 0)
    es = np.empty((len(ke),) + losses.shape[:-1])
    for j, (k, f) in enumerate(zip(ke, frac)):  # per level (a few), not per scenario
        at = losses[..., k - 1]
        es[j] = np.maximum((losses[..., k:].sum(axis=-1) + f * at) / ((n - k) + f), at)
    return var, es


def _weighted_k(cum: np.ndarray, alpha: float, n: int) -> np.ndarray:
    """0-based position of the first cumulative probability reaching alpha (note 3)."""
    return np.argmax(cum >= alpha - 8.0 * n * _EPS, axis=-1)


def _weighted_tail(losses: np.ndarray, p: np.ndarray, var_alpha: np.ndarray,
                   es_alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VaR and ES of scenarios with probabilities ``p`` (summing to 1) along the last axis."""
    n = losses.shape[-1]
    order = np.argsort(losses, axis=-1, kind="stable")  # ties by scenario index
    ls, ps = np.take_along_axis(losses, order, axis=-1), p[order]
    cum = np.cumsum(ps, axis=-1)
    pos = np.arange(n)
    var = np.empty((len(var_alpha),) + losses.shape[:-1])
    es = np.empty((len(es_alpha),) + losses.shape[:-1])
    for j, alpha in enumerate(var_alpha):
        var[j] = np.take_along_axis(ls, _weighted_k(cum, alpha, n)[..., None], axis=-1)[..., 0]
    for j, alpha in enumerate(es_alpha):
        k = _weighted_k(cum, alpha, n)[..., None]
        at = np.take_along_axis(ls, k, axis=-1)[..., 0]
        frac = _weighted_frac(np.take_along_axis(cum, k, axis=-1)[..., 0], alpha, n)
        beyond = pos > k
        tail = np.where(beyond, ps * ls, 0.0).sum(axis=-1)
        mass = np.where(beyond, ps, 0.0).sum(axis=-1)
        frac = np.where(mass + frac > 0.0, frac, 1.0)  # no mass beyond: ES is the VaR scenario's loss
        es[j] = np.maximum((tail + frac * at) / (mass + frac), at)
    return var, es


def _weighted_frac(cum_k, alpha: float, n: int):
    """The boundary scenario's weight F_k - alpha (0 within the rounding of the sum)."""
    frac = cum_k - alpha
    return np.where(np.abs(frac) <= 8.0 * n * _EPS, 0.0, np.maximum(frac, 0.0))


def _losses_last(a: np.ndarray, axis: int) -> np.ndarray:
    """-a with ``axis`` moved last, C-contiguous (a fresh array: partitioned in place later)."""
    return np.negative(np.moveaxis(a, axis, -1), order="C")


def _historical(pnl, levels: dict, axis, weights, prefix: str, method: str = INVERTED_CDF):
    """Checks, then VaR and ES. ``levels``: {"var": (raw, field name), "es": (raw, field name)},
    either absent. Returns ({"var": (levels, values)}, ...) with numpy.quantile's shapes."""
    bad = Violations()
    if method not in QUANTILE_METHODS:
        bad.add(prefix + "method", f"unknown quantile method {method!r}; expected one of {list(QUANTILE_METHODS)}")
    elif method != INVERTED_CDF and weights is not None:
        bad.add(prefix + "method", f"{method!r} takes no scenario weights; weighted VaR is {INVERTED_CDF!r}")
    a = _array(pnl, prefix + "pnl", bad, (1, 2), "a 1-d P&L vector or a 2-d cube")
    alpha = {key: _levels(raw, prefix + name, bad) for key, (raw, name) in levels.items()}
    ax = _axis(axis, a.ndim, prefix + "axis", bad) if a is not None else None
    p = None
    if weights is not None:
        p = _weights(weights, a.shape[ax] if ax is not None else None, prefix + "weights", bad)
    bad.raise_if_any()
    if method != INVERTED_CDF:
        return {"var": (alpha["var"], np.quantile(-a, alpha["var"], axis=ax, method=method))}
    losses = _losses_last(a, ax)
    none = np.zeros(0)
    va, ea = np.atleast_1d(alpha.get("var", none)), np.atleast_1d(alpha.get("es", none))
    if p is None:
        var, es = _equal_tail(losses, va, ea)
    else:
        var, es = _weighted_tail(losses, p, va, ea)
    out = {}
    for key, values in (("var", var), ("es", es)):
        if key in alpha:
            out[key] = (alpha[key], values if alpha[key].ndim else values[0])
    return out


def historical_risk(pnl, *, var_level: Level = VAR_LEVEL, es_level: Level = ES_LEVEL, axis: int = -1,
                    weights=None, prefix: str = "") -> TailRisk:
    """Historical VaR and ES (notes 1-3) of a P&L vector, or of each row or column of a 2-D
    cube along ``axis`` (the scenario axis; the last by default), from one partial sort.

    ``weights``: one probability per scenario (note 3); None: equally likely scenarios."""
    out = _historical(pnl, {"var": (var_level, "var_level"), "es": (es_level, "es_level")}, axis, weights, prefix)
    (va, var), (ea, es) = out["var"], out["es"]
    return TailRisk(_out(va), _out(ea), _out(var), _out(es))


def historical_var(pnl, level: Level = VAR_LEVEL, *, axis: int = -1, weights=None, method: str = INVERTED_CDF,
                   prefix: str = ""):
    """Historical VaR (notes 1-3) at ``level`` (a number or a sequence), a positive loss:
    shaped as numpy.quantile's result.

    ``method``: ``"inverted_cdf"`` (the estimator of note 2) or any other numpy.quantile
    method, applied to the losses (equally likely scenarios only)."""
    return _out(_historical(pnl, {"var": (level, "level")}, axis, weights, prefix, method)["var"][1])


def historical_es(pnl, level: Level = ES_LEVEL, *, axis: int = -1, weights=None, prefix: str = ""):
    """Historical ES (notes 1-3), Acerbi-Tasche, at ``level`` (a number or a sequence):
    shaped as numpy.quantile's result."""
    return _out(_historical(pnl, {"es": (level, "level")}, axis, weights, prefix)["es"][1])


def _tail_weights(losses: np.ndarray, alpha: float, p: Optional[np.ndarray]) -> np.ndarray:
    """Each scenario's weight in ES (w @ losses == ES) for a 1-d loss vector (notes 2, 3, 5)."""
    n = losses.shape[0]
    order = np.argsort(losses, kind="stable")
    w = np.zeros(n)
    if p is None:
        ks, fracs = _boundary(n, np.array([alpha]))
        k, frac = int(ks[0]), float(fracs[0])
        denom = (n - k) + frac
        w[order[k:]] = 1.0 / denom
        w[order[k - 1]] = frac / denom
        return w
    ps = p[order]
    cum = np.cumsum(ps)
    k = int(_weighted_k(cum, alpha, n))
    frac = float(_weighted_frac(cum[k], alpha, n))
    mass = float(ps[k + 1:].sum())
    frac = frac if mass + frac > 0.0 else 1.0
    denom = mass + frac
    w[order[k + 1:]] = ps[k + 1:] / denom
    w[order[k]] = frac / denom
    return w


def es_tail_weights(pnl, level: float = ES_LEVEL, *, weights=None, prefix: str = "") -> np.ndarray:
    """Each scenario's weight in the ES of a P&L vector (notes 2, 3, 5): non-negative,
    summing to 1, non-zero only at and beyond VaR; ``ES == w @ -pnl``."""
    bad = Violations()
    a = _array(pnl, prefix + "pnl", bad, (1,), "a 1-d P&L vector")
    alpha = _levels(level, prefix + "level", bad)
    if alpha is not None and alpha.ndim:
        bad.add(prefix + "level", "one level here, not a sequence")
    p = _weights(weights, a.shape[0] if a is not None else None, prefix + "weights", bad) if weights is not None \
        else None
    bad.raise_if_any()
    return _frozen(_tail_weights(-a, float(alpha), p))


def _one_level(raw, name: str, bad: Violations) -> Optional[float]:
    a = _levels(raw, name, bad)
    if a is not None and a.ndim:
        bad.add(name, "one level here, not a sequence")
        return None
    return None if a is None else float(a)


def _cube(cube, var_level, es_level, weights, prefix):
    bad = Violations()
    c = _array(cube, prefix + "cube", bad, (2,), "a 2-d cube of P&L, trades x scenarios")
    va = _one_level(var_level, prefix + "var_level", bad)
    ea = _one_level(es_level, prefix + "es_level", bad)
    p = _weights(weights, c.shape[1] if c is not None else None, prefix + "weights", bad) if weights is not None \
        else None
    return bad, c, va, ea, p


def _incremental(total_loss: np.ndarray, es: float, pnl_rows: np.ndarray, alpha: float,
                 p: Optional[np.ndarray]) -> np.ndarray:
    """ES(portfolio) - ES(portfolio less each row's P&L), by blocks of about BLOCK numbers
    (note 6): one partition (or stable sort, weighted) per block, along the scenarios."""
    rows = max(1, BLOCK // total_loss.shape[0])
    out = np.empty(pnl_rows.shape[0])
    alphas, none = np.array([alpha]), np.zeros(0)
    for start in range(0, pnl_rows.shape[0], rows):  # blocks of rows, not scenarios
        without = pnl_rows[start:start + rows] + total_loss  # the losses of the portfolio less each row
        tail = _equal_tail(without, none, alphas) if p is None else _weighted_tail(without, p, none, alphas)
        out[start:start + rows] = es - tail[1][0]
    return out


def incremental_es(pnl, es: float, rows, level: float) -> np.ndarray:
    """ES of the portfolio P&L ``pnl`` (its ES at ``level`` given: ``es``) less the ES of the
    portfolio without each row of ``rows`` (rows x scenarios), equal weights (note 6)."""
    return _incremental(-np.asarray(pnl, dtype=np.float64), float(es), np.asarray(rows, dtype=np.float64),
                        float(level), None)


def es_attribution(cube, *, var_level: float = VAR_LEVEL, es_level: float = ES_LEVEL, weights=None,
                   incremental: bool = True, prefix: str = "") -> Attribution:
    """The portfolio VaR and ES of a cube (trades x scenarios) and each trade's component
    (Euler) and incremental ES (notes 5 and 6)."""
    bad, c, va, ea, p = _cube(cube, var_level, es_level, weights, prefix)
    bad.raise_if_any()
    pnl = c.sum(axis=0)
    loss = -pnl
    w = _tail_weights(loss, ea, p)
    es = float(w @ loss)
    var = float(_tail_var(loss, va, p))
    component = -(c @ w)
    inc = _incremental(loss, es, c, ea, p) if incremental else None
    return Attribution(va, ea, var, es, _frozen(pnl), _frozen(component),
                       None if inc is None else _frozen(inc), _frozen(w))


def _tail_var(loss: np.ndarray, alpha: float, p: Optional[np.ndarray]) -> float:
    if p is None:
        return float(_equal_tail(loss.copy(), np.array([alpha]), np.zeros(0))[0][0])
    return float(_weighted_tail(loss, p, np.array([alpha]), np.zeros(0))[0][0])


def _tag_columns(tags, t: Optional[int], prefix: str, bad: Violations) -> list[tuple[str, np.ndarray]]:
    items = list(tags.items()) if isinstance(tags, Mapping) else list(tags)
    out: list[tuple[str, np.ndarray]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        name = f"{prefix}tags[{i}]"
        try:
            tag, values = item
        except (TypeError, ValueError):
            bad.add(name, "must be a (tag name, per-trade values) pair")
            continue
        if not isinstance(tag, str) or not tag.strip():
            bad.add(name, f"tag name must be a non-empty string (got {tag!r})")
            continue
        if tag in seen:
            bad.add(name, f"tag {tag!r} given twice")
            continue
        seen.add(tag)
        try:
            column = np.asarray(values, dtype=np.str_)
        except (TypeError, ValueError):
            bad.add(name, f"tag {tag!r}: values must be strings")
            continue
        if column.ndim != 1:
            bad.add(name, f"tag {tag!r}: values must be 1-d, one per trade (got {_describe(column)})")
        elif t is not None and column.shape[0] != t:
            bad.add(name, f"tag {tag!r}: {column.shape[0]} values for {t} trades")
        else:
            out.append((tag, column))
    return out


def hierarchy_risk(cube, tags, *, var_level: float = VAR_LEVEL, es_level: float = ES_LEVEL, weights=None,
                   prefix: str = "") -> Hierarchy:
    """The tag tree of a cube (trades x scenarios), note 7: every node's P&L, VaR, ES,
    component and incremental ES. ``tags``: (name, per-trade values) pairs, or a mapping,
    top level first, e.g. ``{"desk": desks, "book": books}``."""
    bad, c, va, ea, p = _cube(cube, var_level, es_level, weights, prefix)
    columns = _tag_columns(tags, c.shape[0] if c is not None else None, prefix, bad)
    bad.raise_if_any()
    t, n = c.shape
    # codes per depth: np.unique keeps (parent code, value code) pairs in path order
    code = np.zeros(t, dtype=np.int64)
    depth_codes = [code]
    depth_first = [np.zeros(1, dtype=np.int64)]
    depth_parent = [np.full(1, -1, dtype=np.int64)]
    for _, column in columns:
        values, value_code = np.unique(column, return_inverse=True)
        pair = code * len(values) + value_code
        _, first, code = np.unique(pair, return_index=True, return_inverse=True)
        depth_parent.append(depth_codes[-1][first])
        depth_codes.append(code)
        depth_first.append(first)
    # P&L per node, deepest level from the trades, each level above from its children
    pnl_by_depth: list[np.ndarray] = [np.empty(0)] * len(depth_codes)
    pnl_by_depth[0] = c.sum(axis=0)[None, :]
    if columns:
        leaf = depth_codes[-1]
        order = np.argsort(leaf, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(leaf[order]) != 0])
        pnl_by_depth[-1] = np.add.reduceat(c[order], starts, axis=0)
        for d in range(len(columns) - 1, 0, -1):
            parent = depth_parent[d + 1]
            starts = np.flatnonzero(np.r_[True, np.diff(parent) != 0])
            pnl_by_depth[d] = np.add.reduceat(pnl_by_depth[d + 1], starts, axis=0)
    pnl = np.concatenate(pnl_by_depth, axis=0)
    loss = -pnl[0]
    w = _tail_weights(loss, ea, p)
    es = float(w @ loss)
    node_losses = -pnl
    if p is None:
        var, node_es = _equal_tail(node_losses.copy(), np.array([va]), np.array([ea]))
    else:
        var, node_es = _weighted_tail(node_losses, p, np.array([va]), np.array([ea]))
    component = pnl @ -w
    inc = _incremental(loss, es, pnl, ea, p)
    inc[0] = es  # the root less itself is nothing, exactly
    # node paths, trade counts and parents (offsets of each depth in the node list)
    offsets = np.cumsum([0] + [len(f) for f in depth_first])
    nodes: list[Node] = []
    for d, first in enumerate(depth_first):
        counts = np.bincount(depth_codes[d], minlength=len(first))
        for j, i in enumerate(first):
            path = tuple(str(columns[level][1][i]) for level in range(d))
            parent = -1 if d == 0 else int(offsets[d - 1] + depth_parent[d][j])
            row = int(offsets[d] + j)
            nodes.append(Node(path, parent, int(counts[j]), float(var[0][row]), float(node_es[0][row]),
                              float(component[row]), float(inc[row])))
    return Hierarchy(tuple(name for name, _ in columns), va, ea, tuple(nodes), _frozen(pnl),
                     _frozen(offsets[-2] + depth_codes[-1] if columns else np.zeros(t, dtype=np.int64)))


# ====================================================================== parametric
def _cumulants(d: np.ndarray, s: np.ndarray, g: Optional[np.ndarray]) -> tuple[np.ndarray, ...]:
    """k1..k4 of d'x + x'Gx/2 for x ~ N(0, S) (note 4); batch shape of d (and G)."""
    sd = d @ s
    dsd = np.einsum("...i,...i->...", d, sd)
    if g is None:
        zero = np.zeros_like(dsd)
        return zero, dsd, zero, zero
    m = g @ s                                           # GS
    m2 = m @ m
    tr1 = np.trace(m, axis1=-2, axis2=-1)
    tr2 = np.trace(m2, axis1=-2, axis2=-1)
    tr3 = np.einsum("...ij,...ji->...", m2, m)
    tr4 = np.einsum("...ij,...ji->...", m2, m2)
    gsd = np.einsum("...ij,...j->...i", g, sd)          # G S d
    dsgsd = np.einsum("...i,...i->...", sd, gsd)        # d'S G S d
    dsgsgsd = np.einsum("...i,...i->...", gsd @ s, gsd)  # d'S G S G S d
    k1 = 0.5 * tr1
    k2 = dsd + 0.5 * tr2
    k3 = tr3 + 3.0 * dsgsd
    k4 = 3.0 * tr4 + 12.0 * dsgsgsd
    return k1, np.maximum(k2, 0.0), k3, k4


def _shape_moments(k2, k3, k4):
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(k2 > 0.0, k3 / np.where(k2 > 0.0, k2, 1.0) ** 1.5, 0.0)
        kurt = np.where(k2 > 0.0, k4 / np.where(k2 > 0.0, k2, 1.0) ** 2, 0.0)
    return skew, kurt


def delta_gamma_moments(delta, covariance, gamma=None, *, prefix: str = "") -> QuadraticMoments:
    """Mean, variance, skewness and excess kurtosis of the P&L d'x + x'Gx/2, x ~ N(0, S), in
    closed form (note 4). ``delta``: (factors,) or (books, factors); ``gamma``: None (a
    linear book), (factors, factors) or (books, factors, factors)."""
    d, s, g = _book(delta, covariance, gamma, prefix, False, Violations())
    k1, k2, k3, k4 = _cumulants(d, s, g)
    skew, kurt = _shape_moments(k2, k3, k4)
    return QuadraticMoments(_out(k1), _out(k2), _out(skew), _out(kurt), tuple(_out(k) for k in (k1, k2, k3, k4)))


def _z(level, prefix: str, bad: Violations) -> Optional[np.ndarray]:
    alpha = _levels(level, prefix + "level", bad)
    if alpha is None:
        return None
    return np.vectorize(normal_quantile, otypes=[np.float64])(alpha)  # per level


def parametric_var(method: Union[ParametricMethod, str], delta, covariance, *, gamma=None,
                   level: Level = VAR_LEVEL, prefix: str = ""):
    """Parametric VaR (note 4), a positive loss, at ``level`` (a number or a sequence): shape
    the level's then the books'. Delta-normal reads the deltas only (``gamma`` given is
    refused, never ignored); the other two need ``gamma``."""
    bad = Violations()
    try:
        how = ParametricMethod(method)
    except ValueError:
        bad.add(prefix + "method", f"unknown parametric method {method!r}; expected one of "
                                   f"{[m.value for m in ParametricMethod]}")
        how = None
    z = _z(level, prefix, bad)
    if how == ParametricMethod.DELTA_NORMAL and gamma is not None:
        # an input the method does not read is refused, never ignored; checked all the same
        # (finite, symmetric), and what is wrong with it said in the one violation of its field
        own = Violations()
        try:
            _book(delta, covariance, gamma, prefix, False, own)
        except ServiceError:
            pass
        why = next((v.description for v in own.found if v.field == prefix + "gamma"), "")
        bad.add(prefix + "gamma", "delta-normal reads no gammas; set method to delta-gamma or Cornish-Fisher, or "
                                  "leave gammas unset" + (f" (and as given: {why})" if why else ""))
        gamma = None
    d, s, g = _book(delta, covariance, gamma, prefix,
                    how in (ParametricMethod.DELTA_GAMMA_NORMAL, ParametricMethod.CORNISH_FISHER), bad)
    k1, k2, k3, k4 = _cumulants(d, s, g)
    zz = z.reshape(z.shape + (1,) * np.ndim(k2))
    sigma = np.sqrt(k2)
    if how == ParametricMethod.DELTA_NORMAL:
        return _out(zz * sigma)
    if how == ParametricMethod.DELTA_GAMMA_NORMAL:
        return _out(zz * sigma - k1)
    g1, g2 = _shape_moments(k2, k3, k4)
    x = -zz  # the P&L's (1 - alpha)-quantile of a standard normal
    w = x + (x * x - 1.0) * g1 / 6.0 + (x ** 3 - 3.0 * x) * g2 / 24.0 - (2.0 * x ** 3 - 5.0 * x) * g1 * g1 / 36.0
    return _out(-(k1 + sigma * w))


def delta_normal_var(delta, covariance, level: Level = VAR_LEVEL, *, prefix: str = ""):
    """z_alpha sqrt(d'Sd) (note 4)."""
    return parametric_var(ParametricMethod.DELTA_NORMAL, delta, covariance, level=level, prefix=prefix)


def delta_gamma_normal_var(delta, gamma, covariance, level: Level = VAR_LEVEL, *, prefix: str = ""):
    """z_alpha sqrt(k2) - k1, the delta-gamma P&L taken as normal (note 4)."""
    return parametric_var(ParametricMethod.DELTA_GAMMA_NORMAL, delta, covariance, gamma=gamma, level=level,
                          prefix=prefix)


def cornish_fisher_var(delta, gamma, covariance, level: Level = VAR_LEVEL, *, prefix: str = ""):
    """The delta-gamma P&L's quantile from its first four cumulants (note 4)."""
    return parametric_var(ParametricMethod.CORNISH_FISHER, delta, covariance, gamma=gamma, level=level,
                          prefix=prefix)


def studer_max_loss(delta, covariance, level: Level = VAR_LEVEL, *, dof: Optional[float] = None,
                    prefix: str = "") -> MaxLoss:
    """Studer's maximum loss of a linear book over the trust region x' S^-1 x <= c (note 8);
    ``dof``: the chi-square degrees of freedom, the number of factors by default."""
    bad = Violations()
    alpha = _levels(level, prefix + "level", bad)
    if dof is not None and (isinstance(dof, bool) or not isinstance(dof, (int, float, np.integer, np.floating))
                            or not (dof > 0 and math.isfinite(dof))):
        bad.add(prefix + "dof", f"must be a positive number (got {dof!r})")
    d, s, _ = _book(delta, covariance, None, prefix, False, bad)
    nu = float(d.shape[-1] if dof is None else dof)
    c = np.vectorize(lambda a: chi2_quantile(a, nu), otypes=[np.float64])(alpha)  # per level
    sd = d @ s
    sigma = np.sqrt(np.maximum(np.einsum("...i,...i->...", d, sd), 0.0))
    root = np.sqrt(c).reshape(c.shape + (1,) * sigma.ndim)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = np.where(sigma[..., None] > 0.0, -sd / np.where(sigma > 0.0, sigma, 1.0)[..., None], 0.0)
    scenario = root[..., None] * unit
    return MaxLoss(_out(alpha), nu, _out(c), _out(root * sigma), _frozen(np.asarray(scenario)))
