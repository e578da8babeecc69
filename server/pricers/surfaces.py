"""Volatility surfaces evaluated at arrays of (T, K, F), and their arbitrage checks.

Kernel: ``pricegrid.ext.surfaces`` (formulas once, in ext/pg_surfaces.h; conventions, with
the extrapolation in strike and in time, in the design note of ext/surfaces.pyx). Validated
in tests/ext/test_surfaces_kernel.py: the strike grid against QuantLib's
BlackVarianceSurface (Bilinear, ConstantExtrapolation), SVI slices against QuantLib's
SviSmileSection, SABR against ql.sabrVolatility and a 50-digit mpmath evaluation of Hagan's
formula, Gatheral & Jacquier's published arbitrageable SVI slice, and identities (nodes
reproduced, continuity, flat extrapolation, total variance linear in T, thread count).

Stateless: a domain surface and arrays in, arrays and per-point status out. A surface that
fails ``validate()`` gives every point ``status.BAD_VOL`` and NaN outputs (the kernel checks
the surface itself). Registers no engine: the service reads vols through these functions.

Arbitrage checks (quality gates, reported per node, never raised):

* ``calendar_arbitrage``: total variance non-decreasing in T at every axis point (grid: its
  nodes; delta grid: both slices' nodes converted to ln(K/F); SVI and SABR: a log-moneyness
  grid), slice against next slice.
* ``butterfly_arbitrage``: grid and SABR: undiscounted Black call prices on the slice's
  vols at each expiry (a delta grid at its nodes' own strikes F e^k_ij), decreasing in strike with slopes in [-1, 0] (call spreads) and
  convex in strike (butterflies); SVI: Durrleman's g(k) >= 0 on a log-moneyness grid
  (Gatheral & Jacquier 2014, Lemma 2.2) and Lee's moment formula on the wings: the
  asymptotic slopes b (1 - rho) (left) and b (1 + rho) (right) of w at most 2 (R. Lee,
  Math. Finance 14(3), 2004). The surfaces accept wing slopes up to 4 (the kernel's bound);
  slopes in (2, 4] are arbitrage and are reported here as "lee_wing".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from pricegrid.ext import surfaces as _kernel
from pricegrid.server.domain.surfaces import GridSurface, SabrSurface, StrikeAxis, SviSurface

__all__ = ["VOL", "TOTAL_VARIANCE", "Surface", "SurfaceValues", "Finding", "evaluate_surface",
           "vols", "total_variances", "delta_log_moneyness", "calendar_arbitrage", "butterfly_arbitrage",
           "DEFAULT_LOG_MONEYNESS"]

VOL = _kernel.VOL
TOTAL_VARIANCE = _kernel.TOTAL_VARIANCE
Surface = Union[GridSurface, SviSurface, SabrSurface]
#: where the SVI and SABR checks look by default: k = ln(K/F) in [-1.5, 1.5], step 0.05
DEFAULT_LOG_MONEYNESS = np.round(np.linspace(-1.5, 1.5, 61), 12)


@dataclass
class SurfaceValues:
    """``values[j]`` holds measure ``measures[j]`` at each point; status bits per point."""

    measures: tuple[int, ...]
    values: np.ndarray   # (k, m) float64
    status: np.ndarray   # (m,) int32, 0 = evaluated (pg_status.h bits otherwise)
    bad: int             # points whose status is not 0 (their values are NaN)


@dataclass(frozen=True)
class Finding:
    """One arbitrage found: which check, at which expiry and axis point, and by how much.

    ``expiry`` is the slice index (calendar: the later slice of the pair), ``node`` the axis
    point's index (grid: the strike node; SVI/SABR: the index in the checked k grid;
    butterflies: the middle strike; call spreads: the left strike of the pair). ``value`` is
    the violated quantity (calendar: w_i+1 - w_i; spread: the slope outside [-1, 0];
    butterfly: the change of slope; durrleman: g; lee_wing: the wing's slope of w, with
    ``node`` -1 and ``at`` -inf for the left wing, ``node`` -2 and ``at`` +inf for the right),
    ``at`` the axis point itself.
    """

    check: str     # "calendar", "call_spread", "butterfly", "durrleman", "lee_wing"
    expiry: int
    node: int
    at: float
    value: float


def _kernel_args(surface: Surface) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """(kind, axis, expiries, nodes, values) as the kernel takes them."""
    expiries = np.ascontiguousarray(surface.expiries, dtype=np.float64)
    if isinstance(surface, GridSurface):
        axis = int(surface.axis) if isinstance(surface.axis, StrikeAxis) else 0
        return (_kernel.GRID, axis, expiries, np.ascontiguousarray(surface.nodes, dtype=np.float64),
                np.ascontiguousarray(surface.vols, dtype=np.float64))
    kind = _kernel.SVI if isinstance(surface, SviSurface) else _kernel.SABR
    return (kind, 0, expiries, np.empty(0), np.ascontiguousarray(surface.params, dtype=np.float64))


def evaluate_surface(surface: Surface, T, K, F, measures: Sequence[int] = (VOL,), *,
                     threads: int = 1) -> SurfaceValues:
    """Evaluate ``surface`` at points (T[i], K[i], F[i]): T in years, F the forward to T
    (a single F is used for every point; a STRIKE grid does not read F; a DELTA grid reads
    it as every other kind: its nodes are points of ln(K/F) per slice)."""
    t = np.ascontiguousarray(T, dtype=np.float64).reshape(-1)
    k = np.ascontiguousarray(K, dtype=np.float64).reshape(-1)
    f = np.ascontiguousarray(F, dtype=np.float64).reshape(-1)
    meas = np.ascontiguousarray(measures, dtype=np.int32)
    out = np.empty((meas.shape[0], t.shape[0]), dtype=np.float64)
    status = np.empty(t.shape[0], dtype=np.int32)
    kind, axis, expiries, nodes, values = _kernel_args(surface)
    bad = _kernel.evaluate(kind, axis, expiries, nodes, values, t, k, f, meas, out, status, threads)
    return SurfaceValues(tuple(int(m) for m in meas), out, status, bad)


def vols(surface: Surface, T, K, F, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(Black vols, status) at the points."""
    r = evaluate_surface(surface, T, K, F, (VOL,), threads=threads)
    return r.values[0], r.status


def total_variances(surface: Surface, T, K, F, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(total variances vol^2 T, status) at the points."""
    r = evaluate_surface(surface, T, K, F, (TOTAL_VARIANCE,), threads=threads)
    return r.values[0], r.status


def delta_log_moneyness(surface: GridSurface) -> np.ndarray:
    """(n, p): a DELTA grid's nodes as ln(K/F), slice by slice, k_ij = sd (sd/2 - N^-1(Delta_j)),
    sd = vol_ij sqrt(T_i) (the kernel's conversion; ValueError for a surface that fails validate())."""
    if not (isinstance(surface, GridSurface) and surface.axis == StrikeAxis.DELTA):
        raise ValueError("not a DELTA grid")
    t = np.ascontiguousarray(surface.expiries, dtype=np.float64)
    out = np.empty(surface.vols.shape)
    if _kernel.delta_log_moneyness(t, np.ascontiguousarray(surface.nodes, dtype=np.float64),
                                   np.ascontiguousarray(surface.vols, dtype=np.float64), out):
        raise ValueError("the delta grid is invalid (see validate())")
    return out


# --------------------------------------------------------------------------- arbitrage
def _delta_calendar(surface: GridSurface, tolerance: float) -> list[Finding]:
    """Slices i-1 and i of a delta grid at both slices' converted nodes: each slice's w is
    linear in k between its own nodes and flat beyond, so the union of the two node sets
    decides. ``node`` is the delta node index whose point (on either slice) shows the drop."""
    t = np.asarray(surface.expiries, dtype=np.float64)
    k = delta_log_moneyness(surface)
    s = surface.vols ** 2
    found: list[Finding] = []
    for i in range(1, t.shape[0]):
        for at_slice in (i, i - 1):
            points = k[at_slice]
            before = np.interp(points, k[i - 1], s[i - 1]) * t[i - 1]
            after = np.interp(points, k[i], s[i]) * t[i]
            drop = after - before
            found.extend(Finding("calendar", i, int(j), float(points[j]), float(drop[j]))
                         for j in np.flatnonzero(drop < -tolerance))
    return found


def _slice_variances(surface: Surface, k_grid: np.ndarray, forward: float) -> tuple[np.ndarray, np.ndarray]:
    """(points, w (n, points)): each slice's total variance at its own expiry.

    Grid: at the nodes, w_ij = vol_ij^2 T_i exactly (points = the nodes). SVI/SABR: at
    K = F e^k for k in ``k_grid`` (points = k_grid), through the kernel at T = T_i.
    """
    t = np.asarray(surface.expiries, dtype=np.float64)
    if isinstance(surface, GridSurface):
        return surface.nodes, surface.vols ** 2 * t[:, None]
    n, p = t.shape[0], k_grid.shape[0]
    T = np.repeat(t, p)
    K = np.tile(forward * np.exp(k_grid), n)
    w, status = total_variances(surface, T, K, np.array([forward]))
    if status.any():
        raise ValueError("the surface or the check's points are invalid (see validate())")
    return k_grid, w.reshape(n, p)


def calendar_arbitrage(surface: Surface, *, log_moneyness=DEFAULT_LOG_MONEYNESS, forward: float = 1.0,
                       tolerance: float = 1e-14) -> list[Finding]:
    """Points where total variance falls from one slice to the next: w_i+1 < w_i - tolerance.

    Grid: at its nodes (fixed K on a STRIKE grid, fixed K/F otherwise; between nodes w is
    linear in the axis coordinate, so the nodes decide); delta grid: at the converted nodes
    ln(K/F) of both slices of each pair (``at``: that ln(K/F), ``node``: the delta node).
    SVI and SABR: on ``log_moneyness`` (fixed K/F; SABR with beta < 1 depends on the level
    of F too, hence ``forward``).
    """
    if isinstance(surface, GridSurface) and surface.axis == StrikeAxis.DELTA:
        return _delta_calendar(surface, tolerance)
    points, w = _slice_variances(surface, np.asarray(log_moneyness, dtype=np.float64), forward)
    drop = np.diff(w, axis=0)
    return [Finding("calendar", int(i) + 1, int(j), float(points[j]), float(drop[i, j]))
            for i, j in zip(*np.nonzero(drop < -tolerance))]


#: ulps of F + K that a computed Black call C = F N(d1) - K N(d2) may be off by (each term
#: is at most F or K; the normal CDF is good to a few ulps): the rounding the slopes carry
CALL_ULPS = 16.0


def _call_findings(i: int, forward: float, strikes: np.ndarray, calls: np.ndarray, at: np.ndarray,
                   tolerance: float) -> list[Finding]:
    """Slopes outside [-1, 0] and slope decreases, each beyond ``tolerance`` plus the rounding
    of its own terms: a call is off by e_j = CALL_ULPS eps (F + K_j), a slope
    (C_j+1 - C_j)/h_j by (e_j + e_j+1)/h_j, a change of slope by the sum of its two slopes'
    bounds. A fixed tolerance fails flat surfaces on dense grids (h of 1e-3 K makes the
    rounding of a slope change about 1e-12)."""
    out: list[Finding] = []
    h = np.diff(strikes)
    slope = np.diff(calls) / h
    e = CALL_ULPS * np.finfo(np.float64).eps * (abs(forward) + np.abs(strikes))
    slope_err = (e[:-1] + e[1:]) / h
    for j in np.flatnonzero((slope > tolerance + slope_err) | (slope < -1.0 - tolerance - slope_err)):
        out.append(Finding("call_spread", i, int(j), float(at[j]), float(slope[j])))
    convex = np.diff(slope)
    for j in np.flatnonzero(convex < -(tolerance + slope_err[:-1] + slope_err[1:])):
        out.append(Finding("butterfly", i, int(j) + 1, float(at[j + 1]), float(convex[j])))
    return out


def butterfly_arbitrage(surface: Surface, *, forwards=None, log_moneyness=DEFAULT_LOG_MONEYNESS,
                        tolerance: float = 1e-12) -> list[Finding]:
    """Butterfly (and call-spread) arbitrage per slice, reported per node.

    Grid: undiscounted Black calls at each expiry's nodes (K = node, F node or F e^node; a
    delta grid: F e^k_ij, its nodes' own strikes, ``at`` the delta node), ``forwards`` the
    forward per expiry (needed for a STRIKE grid; 1.0 otherwise, where calls scale with F): slopes (C_j+1 - C_j)/(K_j+1 - K_j) in [-1, 0] and non-decreasing
    (convexity), both within ``tolerance`` (dimensionless slopes) plus the rounding of the
    calls they are computed from (``_call_findings``: CALL_ULPS eps (F + K) per call). SABR: the same on
    K = F e^k for k in ``log_moneyness`` (F from ``forwards``, default 1). SVI: Durrleman's
    g(k) >= -tolerance at each k of ``log_moneyness``, and each wing's slope of w <= 2 (Lee).
    """
    t = np.asarray(surface.expiries, dtype=np.float64)
    n = t.shape[0]
    k_grid = np.ascontiguousarray(log_moneyness, dtype=np.float64)
    if forwards is None:
        if isinstance(surface, GridSurface) and surface.axis == StrikeAxis.STRIKE:
            raise ValueError("a STRIKE grid's butterfly check needs the forward of each expiry")
        forwards = np.ones(n)
    fwd = np.broadcast_to(np.asarray(forwards, dtype=np.float64), (n,))
    found: list[Finding] = []
    if isinstance(surface, GridSurface) and surface.axis == StrikeAxis.DELTA:
        k_nodes = delta_log_moneyness(surface)
    if isinstance(surface, SviSurface):
        out = np.empty((4, k_grid.shape[0]))
        status = np.empty(k_grid.shape[0], dtype=np.int32)
        for i in range(n):
            _kernel.svi_durrleman(np.ascontiguousarray(surface.params[i]), k_grid, out, status)
            if status.any():
                raise ValueError(f"params[{i}] or the k grid is invalid (see validate())")
            found.extend(Finding("durrleman", i, int(j), float(k_grid[j]), float(out[3, j]))
                         for j in np.flatnonzero(out[3] < -tolerance))
            b, rho = float(surface.params[i, 1]), float(surface.params[i, 2])
            for node, at, slope in ((-1, -np.inf, b * (1.0 - rho)), (-2, np.inf, b * (1.0 + rho))):
                if slope > 2.0:
                    found.append(Finding("lee_wing", i, node, at, slope))
        return found
    for i in range(n):
        if isinstance(surface, GridSurface):
            x = surface.nodes
            strikes = (x if surface.axis == StrikeAxis.STRIKE
                       else fwd[i] * x if surface.axis == StrikeAxis.MONEYNESS
                       else fwd[i] * np.exp(k_nodes[i]) if surface.axis == StrikeAxis.DELTA
                       else fwd[i] * np.exp(x))
            w = surface.vols[i] ** 2 * t[i]
            at = x
        else:
            strikes = fwd[i] * np.exp(k_grid)
            w, status = total_variances(surface, np.full(strikes.shape, t[i]), strikes, fwd[i:i + 1])
            if status.any():
                raise ValueError(f"params[{i}] or the k grid is invalid (see validate())")
            at = k_grid
        strikes = np.ascontiguousarray(strikes, dtype=np.float64)
        calls = np.empty(strikes.shape[0])
        status = np.empty(strikes.shape[0], dtype=np.int32)
        if _kernel.black_calls(np.ascontiguousarray(fwd[i:i + 1]), strikes, np.ascontiguousarray(w), calls, status):
            raise ValueError(f"slice {i}: invalid strikes, forward or vols (see validate())")
        found.extend(_call_findings(i, float(fwd[i]), strikes, calls, at, tolerance))
    return found
