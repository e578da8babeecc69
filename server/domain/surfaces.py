"""Volatility surfaces as market data: slices by expiry, how to read them, and their checks.

Three kinds, each n slices at expiries 0 < T_1 < ... < T_n (year fractions from the
surface's valuation date):

* ``GridSurface``: Black vols > 0 on an (expiry x strike-axis) grid, the same p axis nodes
  for every expiry. The axis is absolute strike K, forward moneyness K/F, log-moneyness
  ln(K/F) or forward delta (``StrikeAxis``), F being the forward of the point looked up.
  DELTA convention: forward delta, premium-unadjusted, of a call, Delta = N(d1),
  d1 = (-ln(K/F) + sigma^2 T/2)/(sigma sqrt(T)), nodes strictly inside (0, 1) (a put delta
  given as the call delta 1 + Delta_put) and decreasing, i.e. in increasing strike
  (0.9, 0.75, 0.5, 0.25, 0.1). Delta depends on K only through ln(K/F), so node j of slice i
  is the log-moneyness k_ij = sd (sd/2 - N^-1(Delta_j)), sd = vol_ij sqrt(T_i): a delta grid
  is a log-moneyness grid whose nodes differ per slice, and they must increase along each
  slice (vols that make the strikes cross are refused, naming the later node's vol).
* ``SviSurface``: one raw SVI slice per expiry (Gatheral 2004; Gatheral & Jacquier 2014),
  in total variance: w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2)), k = ln(K/F).
* ``SabrSurface``: one SABR slice (alpha, beta, rho, nu) per expiry; Hagan et al. (2002)
  eq. (2.17a) gives the lognormal vol at (F, K, T_i).

The rules (``interpolation``), exactly as the kernel's design note (ext/surfaces.pyx, notes 3
and 4) writes them: across strikes on a grid, total variance linear between adjacent nodes
(a delta grid: between each slice's own nodes in ln(K/F)) and the end node's vol beyond
them; between slices, total variance linear in T at fixed K
(STRIKE grid) or fixed K/F (every other surface); before T_1 and after T_n the nearest
slice's vol, flat. Evaluation lives in the pricer layer
(``pricegrid.server.pricers.surfaces``); this module holds data and checks only.

``validate()`` reports every structural violation with its field and index (``expiries[2]``,
``nodes[0]``, ``vols[1][3]``, ``params[4].rho``), the same conditions as the kernel's
``validate``, so that a surface that passes here is accepted by the kernel
(tests/ext/test_surfaces_kernel.py checks that the two agree entry by entry). ``check_bounds()``
adds the magnitudes a stored surface must keep for its evaluation and its checks to stay finite
(``Bounds``: expiry, |ln K/F|, vols, SVI sigma, SABR alpha and nu); snapshots apply both.
Calendar and butterfly arbitrage are quality gates, not structural faults: the pricer layer
checks them.
"""

from __future__ import annotations

import enum
import statistics
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pricegrid.server.domain.errors import FieldViolation

__all__ = ["BOUNDS", "Bounds", "SurfaceKind", "StrikeAxis", "GridInterpolation", "TimeInterpolation",
           "GridSurface", "SviSurface", "SabrSurface", "SVI_COLUMNS", "SABR_COLUMNS"]


class SurfaceKind(enum.IntEnum):
    """The codes of pricegrid.ext.surfaces."""

    GRID = 1
    SVI = 2
    SABR = 3


class StrikeAxis(enum.IntEnum):
    """What a grid's strike nodes are (the codes of pricegrid.ext.surfaces)."""

    STRIKE = 1          # absolute strike K
    MONEYNESS = 2       # forward moneyness K/F
    LOG_MONEYNESS = 3   # ln(K/F)
    #: forward delta, premium-unadjusted, of a call: N(d1), d1 = (-ln(K/F) + sigma^2 T/2)/(sigma sqrt T),
    #: in (0, 1), nodes decreasing (increasing strike); a put delta as the call delta 1 + Delta_put
    DELTA = 4


class GridInterpolation(enum.Enum):
    """Across strikes at a grid expiry (one rule for now, named so that it is stated)."""

    #: total variance (equivalently vol^2) linear between adjacent nodes; beyond the end
    #: nodes the end node's vol (QuantLib BlackVarianceSurface: Bilinear, ConstantExtrapolation)
    LINEAR_TOTAL_VARIANCE = "linear_total_variance"


class TimeInterpolation(enum.Enum):
    """Between and outside the slices' expiries."""

    #: total variance linear in T between slices at fixed K (strike grid) or fixed K/F;
    #: before T_1 and after T_n the nearest slice's vol, flat
    LINEAR_TOTAL_VARIANCE_FLAT_VOL = "linear_total_variance_flat_vol"


SVI_COLUMNS = ("a", "b", "rho", "m", "sigma")
SABR_COLUMNS = ("alpha", "beta", "rho", "nu")
#: one surface's slices and one grid's nodes (a snapshot over them: RESOURCE_EXHAUSTED, market.Limits)
MAX_EXPIRIES = 10_000
MAX_NODES = 10_000


@dataclass(frozen=True)
class Bounds:
    """What a stored surface may hold beyond ``validate()``: magnitudes inside which the
    kernels evaluate it and its arbitrage checks (Black calls at F e^k, SVI's g(k), Hagan's
    expansion) without overflow or underflow. ``validate()`` mirrors the kernel's own
    structural checks entry by entry; these are the snapshot's (``check_bounds``), stated
    here once. Outside them forwards overflow (a 1e5-year expiry), e^k overflows (k = 800),
    (k - m)^2 or sigma^2 overflow or underflow (SVI), or Hagan's z and nu^2 T overflow."""

    max_expiry: float = 100.0           # years
    #: grid vols, and the lowest vol of an SVI slice, sqrt(min w / T)
    max_log_moneyness: float = 20.0     # |ln(K/F)|: LOG_MONEYNESS nodes and SVI m (K/F in [2e-9, 5e8])
    vol: tuple[float, float] = (1e-4, 100.0)          # 0.01% to 10,000%
    svi_sigma: tuple[float, float] = (1e-6, 20.0)
    sabr_alpha: tuple[float, float] = (1e-6, 1e6)
    sabr_nu: float = 100.0


BOUNDS = Bounds()


def _outside(name: str, a: np.ndarray, lo: float, hi: float, what: str) -> list[FieldViolation]:
    """``name[i]`` (or ``name[i][j]``; ``name`` itself for a scalar) for each finite entry of
    ``a`` outside [lo, hi]."""
    a = np.asarray(a, dtype=np.float64)
    scalar = a.ndim == 0
    a = np.atleast_1d(a)
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(a) & ((a < lo) | (a > hi))
    return [FieldViolation(name + ("" if scalar else "".join(f"[{int(x)}]" for x in idx)),
                           f"{float(a[idx])!r} is outside [{lo:g}, {hi:g}] ({what})")
            for idx in zip(*np.nonzero(bad))]


def _enum_or_raw(kind, value):
    try:
        return kind(value)
    except (ValueError, TypeError):
        return value  # validate() names it


def _column(raw, ndim: int) -> tuple[np.ndarray, bool]:
    try:
        a = np.array(raw, dtype=np.float64, copy=True)
        ok = True
    except (TypeError, ValueError):
        a = np.full((0,) * ndim, np.nan)
        ok = False
    a.setflags(write=False)
    return a, ok


def _axis_violations(name: str, a: np.ndarray, positive: bool, what: str) -> dict[int, list[FieldViolation]]:
    """Per index: not finite, not > 0 (when ``positive``), equal to / below the previous one."""
    found: dict[int, list[FieldViolation]] = {}
    finite = np.isfinite(a)
    prev = np.concatenate(([np.nan], a[:-1]))
    both = finite & np.isfinite(prev)

    def add(mask, text):
        for i in np.flatnonzero(mask):
            found.setdefault(int(i), []).append(FieldViolation(f"{name}[{int(i)}]", text))

    add(~finite, "not finite")
    if positive:
        add(finite & ~(a > 0.0), "not > 0")
    add(both & (a == prev), f"equal to the previous {what}")
    add(both & (a < prev), f"below the previous {what}")
    return found


def _delta_violations(name: str, a: np.ndarray) -> dict[int, list[FieldViolation]]:
    """Per index of delta nodes: not finite, outside (0, 1), equal to / above the previous one."""
    found: dict[int, list[FieldViolation]] = {}
    finite = np.isfinite(a)
    prev = np.concatenate(([np.nan], a[:-1]))
    both = finite & np.isfinite(prev)

    def add(mask, text):
        for i in np.flatnonzero(mask):
            found.setdefault(int(i), []).append(FieldViolation(f"{name}[{int(i)}]", text))

    add(~finite, "not finite")
    add(finite & ~((a > 0.0) & (a < 1.0)), "outside (0, 1): a forward call delta")
    add(both & (a == prev), "equal to the previous node")
    add(both & (a > prev), "above the previous node (delta nodes decrease: strikes increase)")
    return found


def _delta_crossings(t: np.ndarray, x: np.ndarray, v: np.ndarray, bad_nodes: set[int],
                     bad_vols: np.ndarray) -> list[FieldViolation]:
    """Where a slice's converted nodes k_ij = sd (sd/2 - N^-1(Delta_j)) do not increase: the
    later node's vol named. Pairs are compared only when both nodes, both vols and T_i
    (finite, > 0) pass their own checks (the kernel's rule, pg_surf_delta_prepare)."""
    out: list[FieldViolation] = []
    if x.shape[0] < 2:
        return out
    inv = statistics.NormalDist().inv_cdf
    z = np.array([inv(float(d)) if j not in bad_nodes else np.nan for j, d in enumerate(x)])
    node_ok = np.array([j not in bad_nodes for j in range(x.shape[0])])
    with np.errstate(all="ignore"):
        sd = v * np.sqrt(np.where(np.isfinite(t) & (t > 0.0), t, np.nan))[:, None]
        k = sd * (0.5 * sd - z)
    ok = node_ok[None, :] & ~bad_vols & np.isfinite(t)[:, None] & (t > 0.0)[:, None]
    pair = ok[:, 1:] & ok[:, :-1]
    with np.errstate(invalid="ignore"):
        cross = pair & ~(k[:, 1:] > k[:, :-1])
    for i, j in zip(*np.nonzero(cross)):
        out.append(FieldViolation(f"vols[{int(i)}][{int(j) + 1}]",
                                  f"strikes cross: at expiry {int(i)} delta nodes {int(j)} and {int(j) + 1} give "
                                  f"ln(K/F) = {k[i, j]:.6g} and {k[i, j + 1]:.6g} (must increase)"))
    return out


@dataclass(frozen=True, eq=False)
class _Surface:
    """Fields and checks every kind shares."""

    surface_id: str
    underlying_id: str
    expiries: np.ndarray                # (n,) year fractions, strictly increasing, > 0

    kind: ClassVar[SurfaceKind]
    time_interpolation: ClassVar[TimeInterpolation] = TimeInterpolation.LINEAR_TOTAL_VARIANCE_FLAT_VOL

    @property
    def size(self) -> int:
        return int(self.expiries.shape[0]) if self.expiries.ndim == 1 else 0

    def _head(self, numeric: bool) -> tuple[list[FieldViolation], bool]:
        """Identity and expiry checks; the bool says whether the rest can be checked."""
        out: list[FieldViolation] = []
        if not isinstance(self.surface_id, str) or not self.surface_id.strip():
            out.append(FieldViolation("surface_id", "empty"))
        if not isinstance(self.underlying_id, str) or not self.underlying_id.strip():
            out.append(FieldViolation("underlying_id", "empty"))
        if not numeric:
            out.append(FieldViolation("expiries", "expiries and slice values must be numbers"))
            return out, False
        t = self.expiries
        if t.ndim != 1:
            out.append(FieldViolation("expiries", "not a 1-d array"))
            return out, False
        if t.shape[0] == 0:
            out.append(FieldViolation("expiries", "no expiries; a surface needs at least one"))
            return out, False
        if t.shape[0] > MAX_EXPIRIES:
            out.append(FieldViolation("expiries", f"{t.shape[0]} expiries; at most {MAX_EXPIRIES:,}"))
            return out, False
        found = _axis_violations("expiries", t, True, "expiry")
        out.extend(v for i in sorted(found) for v in found[i])
        return out, True

    def check_bounds(self, bounds: Bounds = BOUNDS) -> list[FieldViolation]:
        """The :class:`Bounds` violations of a surface that passes ``validate()``, named as
        it names its fields."""
        return _outside("expiries", self.expiries, 0.0, bounds.max_expiry, "years; the longest expiry stored")

    def _params(self, name: str, params: np.ndarray, columns: tuple[str, ...]) -> tuple[list[FieldViolation], bool]:
        n = self.size
        if params.ndim != 2 or params.shape != (n, len(columns)):
            return [FieldViolation(name, f"shape {params.shape}; expected ({n}, {len(columns)}): "
                                         f"one row ({', '.join(columns)}) per expiry")], False
        return [], True


@dataclass(frozen=True, eq=False)
class GridSurface(_Surface):
    """Black vols on an (expiry x axis node) grid. Arrays are copied to read-only float64."""

    axis: StrikeAxis = StrikeAxis.STRIKE
    nodes: np.ndarray = field(default_factory=lambda: np.empty(0))   # (p,) increasing (DELTA: decreasing)
    vols: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # (n, p) Black vols > 0
    interpolation: GridInterpolation = GridInterpolation.LINEAR_TOTAL_VARIANCE
    _numeric: bool = field(default=True, init=False, repr=False)

    kind: ClassVar[SurfaceKind] = SurfaceKind.GRID

    def __post_init__(self) -> None:
        t, ok_t = _column(self.expiries, 1)
        x, ok_x = _column(self.nodes, 1)
        v, ok_v = _column(self.vols, 2)
        object.__setattr__(self, "expiries", t)
        object.__setattr__(self, "nodes", x)
        object.__setattr__(self, "vols", v)
        object.__setattr__(self, "axis", _enum_or_raw(StrikeAxis, self.axis))
        object.__setattr__(self, "interpolation", _enum_or_raw(GridInterpolation, self.interpolation))
        object.__setattr__(self, "_numeric", ok_t and ok_x and ok_v)

    def validate(self) -> list[FieldViolation]:
        """Every violation, each naming its field (and index). Empty: the surface is usable."""
        out, go_on = self._head(self._numeric)
        if not isinstance(self.axis, StrikeAxis):
            out.append(FieldViolation("axis", f"{self.axis!r} is not one of {[a.name for a in StrikeAxis]}"))
        if not isinstance(self.interpolation, GridInterpolation):
            out.append(FieldViolation("interpolation", f"{self.interpolation!r} is not one of "
                                                       f"{[i.value for i in GridInterpolation]}"))
        if not go_on:
            return out
        x, v, t = self.nodes, self.vols, self.expiries
        if x.ndim != 1 or x.shape[0] == 0:
            out.append(FieldViolation("nodes", "no strike nodes; a grid needs at least one" if x.ndim == 1
                                      else "not a 1-d array"))
            return out
        if x.shape[0] > MAX_NODES:
            out.append(FieldViolation("nodes", f"{x.shape[0]} nodes; at most {MAX_NODES:,}"))
            return out
        if v.ndim != 2 or v.shape != (t.shape[0], x.shape[0]):
            out.append(FieldViolation("vols", f"shape {v.shape}; expected ({t.shape[0]}, {x.shape[0]}) "
                                              "(expiries x nodes)"))
            return out
        if self.axis == StrikeAxis.DELTA:
            found = _delta_violations("nodes", x)
        else:
            found = _axis_violations("nodes", x, self.axis != StrikeAxis.LOG_MONEYNESS, "node")
        out.extend(f for i in sorted(found) for f in found[i])
        finite = np.isfinite(v)
        with np.errstate(all="ignore"):
            overflow = finite & (v > 0.0) & ~np.isfinite(v * v * np.where(np.isfinite(t), t, 0.0)[:, None])
        bad_vols = ~finite | ~(v > 0.0) | overflow
        crossings = _delta_crossings(t, x, v, set(found), bad_vols) if self.axis == StrikeAxis.DELTA else []
        for i, j in zip(*np.nonzero(bad_vols)):
            name = f"vols[{int(i)}][{int(j)}]"
            if not finite[i, j]:
                out.append(FieldViolation(name, "not finite (a hole in the grid)"))
            elif not v[i, j] > 0.0:
                out.append(FieldViolation(name, "not > 0"))
            else:
                out.append(FieldViolation(name, "vol^2 T overflows"))
        out.extend(crossings)
        return out

    def check_bounds(self, bounds: Bounds = BOUNDS) -> list[FieldViolation]:
        out = super().check_bounds(bounds)
        if self.axis == StrikeAxis.LOG_MONEYNESS:
            k = bounds.max_log_moneyness
            out += _outside("nodes", self.nodes, -k, k, "ln(K/F)")
        lo, hi = bounds.vol
        return out + _outside("vols", self.vols, lo, hi, "a Black vol")


@dataclass(frozen=True, eq=False)
class _Slices(_Surface):
    """A surface of parametric slices: ``params[i]`` (one row of ``columns``) at expiries[i]."""

    params: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))   # (n, len(columns))
    _numeric: bool = field(default=True, init=False, repr=False)

    columns: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        t, ok_t = _column(self.expiries, 1)
        p, ok_p = _column(self.params, 2)
        object.__setattr__(self, "expiries", t)
        object.__setattr__(self, "params", p)
        object.__setattr__(self, "_numeric", ok_t and ok_p)


@dataclass(frozen=True, eq=False)
class SviSurface(_Slices):
    """Raw SVI slices in total variance: ``params[i] = (a, b, rho, m, sigma)`` at expiries[i]."""

    kind: ClassVar[SurfaceKind] = SurfaceKind.SVI
    columns: ClassVar[tuple[str, ...]] = SVI_COLUMNS

    def validate(self) -> list[FieldViolation]:
        """Every violation, each naming its field (and index). Empty: the surface is usable.

        Bounds (Gatheral & Jacquier 2014, sec. 3.1): b >= 0, |rho| < 1, sigma > 0,
        a + b sigma sqrt(1 - rho^2) >= 0 (total variance never negative) and the wing bound
        b (1 + |rho|) <= 4 (the slopes of w in k within 4, Rogers & Tehranchi 2010). Lee's
        tighter asymptotic bound of 2 is an arbitrage check (pricer layer), not a refusal.
        """
        out, go_on = self._head(self._numeric)
        if not go_on:
            return out
        more, go_on = self._params("params", self.params, SVI_COLUMNS)
        out.extend(more)
        if not go_on:
            return out
        for i, (a, b, rho, m, sigma) in enumerate(self.params):
            name = f"params[{i}]"
            bad = [FieldViolation(f"{name}.{c}", "not finite")
                   for c, value in zip(SVI_COLUMNS, (a, b, rho, m, sigma)) if not np.isfinite(value)]
            if np.isfinite(b) and not b >= 0.0:
                bad.append(FieldViolation(f"{name}.b", "b < 0"))
            if np.isfinite(rho) and not abs(rho) < 1.0:
                bad.append(FieldViolation(f"{name}.rho", "|rho| >= 1"))
            if np.isfinite(sigma) and not sigma > 0.0:
                bad.append(FieldViolation(f"{name}.sigma", "not > 0"))
            if not bad:
                if not a + b * sigma * np.sqrt((1.0 - rho) * (1.0 + rho)) >= 0.0:
                    bad.append(FieldViolation(f"{name}.a", "a + b sigma sqrt(1 - rho^2) < 0 (negative total variance)"))
                if not b * (1.0 + abs(rho)) <= 4.0:
                    bad.append(FieldViolation(f"{name}.b", "b (1 + |rho|) > 4 (wing slope)"))
            bad.sort(key=lambda f: SVI_COLUMNS.index(f.field.rsplit(".", 1)[1]))
            out.extend(bad)
        return out

    def check_bounds(self, bounds: Bounds = BOUNDS) -> list[FieldViolation]:
        k = bounds.max_log_moneyness
        out = super().check_bounds(bounds)
        top = bounds.vol[1]
        for i, (a, b, rho, m, sigma) in enumerate(self.params):
            row = (_outside(f"params[{i}].m", m, -k, k, "ln(K/F)")
                   + _outside(f"params[{i}].sigma", sigma, *bounds.svi_sigma, "SVI sigma"))
            out += row
            if row:
                continue
            t = self.expiries[i]
            lowest = np.sqrt(max(a + b * sigma * np.sqrt((1.0 - rho) * (1.0 + rho)), 0.0) / t) if t > 0 else 0.0
            if lowest > top:  # every vol of the slice above the grid's cap (a total variance at a tiny T)
                out.append(FieldViolation(f"params[{i}].a", f"the slice's lowest vol, sqrt((a + b sigma sqrt(1 - rho^2))"
                                                            f" / T) = {lowest:.6g}, is above {top:g}"))
        return out


@dataclass(frozen=True, eq=False)
class SabrSurface(_Slices):
    """SABR slices: ``params[i] = (alpha, beta, rho, nu)`` at expiries[i] (Hagan's lognormal vol)."""

    kind: ClassVar[SurfaceKind] = SurfaceKind.SABR
    columns: ClassVar[tuple[str, ...]] = SABR_COLUMNS

    def validate(self) -> list[FieldViolation]:
        """Every violation, each naming its field (and index). Empty: the surface is usable.

        Bounds: alpha > 0, 0 <= beta <= 1, |rho| < 1, nu >= 0, all finite.
        """
        out, go_on = self._head(self._numeric)
        if not go_on:
            return out
        more, go_on = self._params("params", self.params, SABR_COLUMNS)
        out.extend(more)
        if not go_on:
            return out
        for i, row in enumerate(self.params):
            name = f"params[{i}]"
            alpha, beta, rho, nu = row
            for c, value in zip(SABR_COLUMNS, row):
                if not np.isfinite(value):
                    out.append(FieldViolation(f"{name}.{c}", "not finite"))
                elif c == "alpha" and not alpha > 0.0:
                    out.append(FieldViolation(f"{name}.alpha", "not > 0"))
                elif c == "beta" and not 0.0 <= beta <= 1.0:
                    out.append(FieldViolation(f"{name}.beta", "outside [0, 1]"))
                elif c == "rho" and not abs(rho) < 1.0:
                    out.append(FieldViolation(f"{name}.rho", "|rho| >= 1"))
                elif c == "nu" and not nu >= 0.0:
                    out.append(FieldViolation(f"{name}.nu", "nu < 0"))
        return out

    def check_bounds(self, bounds: Bounds = BOUNDS) -> list[FieldViolation]:
        out = super().check_bounds(bounds)
        for i, (alpha, beta, rho, nu) in enumerate(self.params):
            out += _outside(f"params[{i}].alpha", alpha, *bounds.sabr_alpha, "SABR alpha")
            out += _outside(f"params[{i}].nu", nu, 0.0, bounds.sabr_nu, "SABR nu")
        return out
