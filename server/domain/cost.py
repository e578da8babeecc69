"""What a request will cost, estimated before it runs.

The unit is the **core-second**: seconds of one core of the reference machine (the 2-core
development VM of bench/calibrate_cost.py), estimated from each engine's measured cost of
its unit of work, in nanoseconds:

    analytic engines      rows x (ns per row, price only or with Greeks)
    binomial tree         rows x trees x (steps + 1)(steps + 2)/2 nodes x ns per node
                          (trees: 1, plus 2 for each of vega, rho and dividend rho)
    fixed point           rows x boundary solves x ns per solve of the scheme (solves as the
                          tree's trees); a row in the two-boundary regime (q < r < 0 for a
                          put) is priced on the tree and costed as one
    Monte Carlo           rows x paths x time steps x ns per path-step (by model and
                          product, price only or with Greeks; x 1.5 with Sobol points)
                          plus a fixed cost per row; a row's steps are those of its time grid:
                          ceil(T / max_step) plus its dates (fixings, monitoring dates), one
                          exact step for a GBM European

A Greek asked for costs the engine's "with Greeks" figure for the row: conservative for a
single Greek. The figures are a few measured ratios, good to a factor of about 2 on other
inputs, which is all a cap needs: the point is to refuse a request that would take minutes
before it takes them, not to predict a latency.

The service refuses a request whose estimate exceeds the cap of its call class (a single
trade, a batch) with RESOURCE_EXHAUSTED naming the setting that drives the cost, and cuts
batches into chunks of about the same cost (see :func:`chunk_rows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from pricegrid.server.domain.models import Engine, Measure, Model

#: nanoseconds per core-second
NS = 1e9
#: the Monte Carlo kernel's cap on a row's time steps (pg_mc.h PG_MC_MAX_STEPS): more is
#: refused by the kernel itself, so no estimate needs to count beyond it
MC_MAX_STEPS = 1 << 20
#: a Sobol point costs this much more than a pseudo-random one (inverse normal, direction
#: numbers): measured 1.06x (barrier) to 1.43x (one-step European)
SOBOL_FACTOR = 1.5
#: the measures that cost a full re-pricing each way (bumped curves and vols), per engine
#: family; the others come from the same pricing (tree nodes, a solved boundary, paths)
_BUMPED = (Measure.VEGA, Measure.RHO, Measure.DIVIDEND_RHO)


@dataclass(frozen=True)
class EngineCost:
    """An engine's measured costs, in nanoseconds of one core (see the module note).

    ``row``/``row_greeks``: per row, price only / with any Greek (analytic engines; for Monte
    Carlo the fixed part of a row). ``path_step``/``path_step_greeks``: Monte Carlo, per path
    and time step. ``node``: binomial tree, per node of one tree. ``solve``: fixed point, per
    boundary solve by scheme code (1 fast, 2 accurate, 3 high precision)."""

    row: float = 0.0
    row_greeks: float = 0.0
    path_step: float = 0.0
    path_step_greeks: float = 0.0
    node: float = 0.0
    solve: tuple = ()


@dataclass(frozen=True)
class Estimate:
    """A request's estimated cost: ``per_row`` (ns, one value per row, or one value for
    every row), its total in core-seconds, and what drives it (the field to name, and the
    figures behind the estimate in words)."""

    per_row: np.ndarray
    rows: int
    field: str
    detail: str

    @property
    def seconds(self) -> float:
        if len(self.per_row) == self.rows:
            return float(self.per_row.sum()) / NS
        return float(self.per_row[0]) * self.rows / NS

    @property
    def max_row_ns(self) -> float:
        return float(self.per_row.max()) if len(self.per_row) else 0.0


def _greeks(measures: Sequence[Measure]) -> bool:
    return any(m != Measure.PRICE for m in measures)


def _repricings(measures: Sequence[Measure]) -> int:
    """Pricings of a tree or a boundary: one, plus two per bumped measure."""
    return 1 + 2 * sum(1 for m in set(measures) if m in _BUMPED)


def _tree_nodes(steps: int) -> float:
    n = steps | 1  # the kernel raises an even count by one
    return (n + 1) * (n + 2) / 2.0


def _col(columns: dict, name: str) -> Optional[np.ndarray]:
    col = columns.get(name)
    return None if col is None else np.asarray(col)


def mc_steps(model: Model, product: str, columns: dict, schedule, max_step: float) -> np.ndarray:
    """Time steps of each row's Monte Carlo grid (an upper bound: intervals between dates
    each rounded up), at most MC_MAX_STEPS; 0 for T <= 0 (priced at expiry) or not finite."""
    t = np.asarray(columns["time_to_expiry"], dtype=np.float64)
    t = np.where(np.isfinite(t) & (t > 0.0), t, 0.0)
    if product == "european" and model != Model.HESTON:
        return (t > 0.0).astype(np.float64)  # one exact step
    if not (max_step > 0.0 and math.isfinite(max_step)):
        return np.zeros(len(t))
    with np.errstate(over="ignore", invalid="ignore"):
        steps = np.ceil(np.minimum(t / max_step, MC_MAX_STEPS))
    if product == "asian" and schedule is not None:
        counts = np.asarray(schedule.counts, dtype=np.float64)
        steps = steps + np.maximum(counts, 0.0)
    elif product == "barrier":
        d = _col(columns, "monitoring_interval")
        if d is not None:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                dates = np.where(np.isfinite(d) & (d > 0.0), np.floor(np.minimum(t / np.where(d > 0, d, 1.0),
                                                                                  MC_MAX_STEPS)) + 1.0, 0.0)
            steps = steps + dates
    return np.where(t > 0.0, np.minimum(steps, MC_MAX_STEPS), 0.0)


def _two_boundary(columns: dict, market) -> np.ndarray:
    """Rows of the fixed-point engine that the kernel prices on its tree: the two-boundary
    regime of the unit put, q < r < 0 for a put (r < q < 0 for a call)."""
    r = getattr(market, "rate", None)
    q = getattr(market, "dividend_yield", None)
    if r is None or q is None:
        return np.zeros(1, dtype=bool)
    r = np.asarray(r, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    call = np.asarray(columns.get("option_type", np.array([2])), dtype=np.int32) == 1
    rr, qq = np.where(call, q, r), np.where(call, r, q)
    return (qq < rr) & (rr < 0.0)


def estimate(spec, product: str, columns: dict, schedule, market, measures: Sequence[Measure], settings,
             rows: int) -> Optional[Estimate]:
    """The cost of pricing ``rows`` rows of ``spec`` (an EngineSpec with a ``cost``), or None
    for an engine without measured costs. ``market``: the request's MarketBatch (its rate
    and dividend yield are read for the fixed point's regime; a snapshot market whose
    columns are not known yet counts as one regime)."""
    c: Optional[EngineCost] = spec.cost
    if c is None:
        return None
    greeks = _greeks(measures)
    if spec.monte_carlo:
        steps = mc_steps(spec.model, product, columns, schedule, settings.max_step)
        per_step = (c.path_step_greeks if greeks else c.path_step) * (SOBOL_FACTOR if settings.sobol else 1.0)
        paths = float(settings.paths)
        per_row = (c.row_greeks if greeks else c.row) + paths * steps * per_step
        most = int(steps.max()) if len(steps) else 0
        detail = f"{rows} row(s) x {settings.paths} paths x up to {most} time steps"
        return Estimate(np.asarray(per_row, dtype=np.float64), rows, "settings.paths", detail)
    pricings = _repricings(measures)
    if spec.engine == Engine.BINOMIAL_TREE:
        per_row = np.array([pricings * _tree_nodes(settings.tree_steps) * c.node])
        detail = f"{rows} row(s) x {pricings} tree(s) of {settings.tree_steps | 1} steps"
        return Estimate(per_row, rows, "settings.tree_steps", detail)
    if spec.engine == Engine.FIXED_POINT:
        scheme = settings.american_scheme
        solve = c.solve[scheme - 1] if 1 <= scheme <= len(c.solve) else max(c.solve, default=c.row)
        tree = pricings * _tree_nodes(settings.tree_steps) * c.node
        double = _two_boundary(columns, market)
        per_row = np.where(double, tree, pricings * solve).astype(np.float64)
        if double.any():
            detail = (f"{rows} row(s) x {pricings} boundary solve(s); {int(double.sum())} row(s) in the two-boundary"
                      f" regime on trees of {settings.tree_steps | 1} steps")
            return Estimate(per_row, rows, "settings.tree_steps", detail)
        return Estimate(per_row, rows, "rows", f"{rows} row(s) x {pricings} boundary solve(s), scheme {scheme}")
    per_row = np.array([c.row_greeks if greeks else c.row])
    return Estimate(per_row, rows, "rows", f"{rows} row(s)")


def chunk_rows(max_row_ns: float, threads: int, cap: int, target_s: float = 0.02) -> int:
    """Rows per chunk so that a chunk takes about ``target_s`` on ``threads`` threads (the
    service checks for cancellation between chunks), at most ``cap``."""
    if max_row_ns <= 0.0:
        return max(1, cap)
    return int(max(1, min(cap, target_s * NS * max(1, threads) // max_row_ns)))
