"""Taylor and hybrid revaluation of a scenario run (issue: scenario risk).

TAYLOR: each trade's P&L in a scenario from its expansion at the base market in the
components' own units (x_i: the scenario's size of component i, as in the sizes matrix):

    P&L = sum_i delta_i x_i + 1/2 sum_i gamma_i x_i^2            (diagonal, the default)
    P&L = sum_i delta_i x_i + 1/2 sum_ij G_ij x_i x_j            (with cross terms)

the derivatives from the same bumps as Sensitivities (central differences, pricegrid.server.
service.scenarios.bump_set; a time roll one forward step, theta only), every bumped scenario
revalued as one set through the scenario path. The expansion is one matrix product per block:
the trades' coefficients (trades x terms: delta_i; gamma_i / 2 on x_i^2; G_ij on x_i x_j, i < j)
times every scenario's terms (terms x scenarios: x_i, x_i^2, x_i x_j), built once per run.

HYBRID: TAYLOR, then the worst scenarios of the portfolio's Taylor P&L revalued in full (every
trade): their full values replace the Taylor ones block by block, so the cube, the portfolio's
P&L and all that is aggregated from it are the hybrid's. The tail is chosen from a first pass of
the same Taylor blocks, summed as a run sums them (its Taylor figures are a TAYLOR run's). A
full block is the ordinary revaluer's block of the same trades (the same trade boundaries as a
FULL run) over the tail's sizes: a replaced cell is FULL's bit for bit, and so is the
portfolio's P&L in a tail scenario.

TAYLOR with a check: after the blocks, ``check`` scenarios (evenly spaced, or the Taylor tail)
revalued in full, every trade, only for the error report.

Costs are bounded by the caller before anything is priced (bump_count, terms); cancellation
and the deadline are checked between blocks (and inside the kernels, through the watch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from pricegrid.server.domain import risk as risk_measures
from pricegrid.server.domain.errors import Code, ServiceError
from pricegrid.server.domain.scenarios import Quantity, ScenarioSet, default_bump
from pricegrid.server.service.scenarios import (Book, CubeBlock, PortfolioRevaluation, Revaluation, ScenarioError,
                                                ScenarioRevaluer, bump_set, check_bumps_move,
                                                derivatives)

#: trades x scenarios x terms of one run's expansion, in units of max_scenario_cells (a term
#: is a multiply-add in a matrix product: about a hundredth of a revaluation)
TAYLOR_WORK = 64


@dataclass(frozen=True)
class TaylorOptions:
    hybrid: bool
    bumps: tuple[float, ...] = ()   # one per shift; empty: default_bump
    cross: bool = False
    tail: int = 0                   # HYBRID: scenarios revalued in full (0: default_tail)
    check: int = 0                  # TAYLOR: scenarios revalued to check the expansion
    check_tail: bool = False        # the check's scenarios: the Taylor tail (else evenly spaced)


@dataclass
class TaylorReport:
    hybrid: bool
    bumps: np.ndarray              # per shift, as used
    bump_scenarios: int
    revalued: np.ndarray           # scenario indices, increasing
    taylor_pnl: np.ndarray         # the portfolio's, on the revalued scenarios
    full_pnl: np.ndarray
    max_abs_error: Optional[float]  # of taylor_pnl - full_pnl; None when nothing was revalued
    rms_error: Optional[float]
    taylor_var: np.ndarray         # per level, of the Taylor P&L alone
    taylor_es: np.ndarray
    revalued_var: np.ndarray       # ... with the revalued scenarios' full values in their place
    revalued_es: np.ndarray


def terms(shifts: Sequence, cross: bool) -> int:
    """The expansion's terms per scenario: every component's x_i, then x_i^2 (diagonal) or
    x_i x_j for i <= j (cross) over the components that are not time rolls."""
    k = sum(s.components for s in shifts)
    moving = k - sum(s.components for s in shifts if s.quantity == Quantity.TIME)
    return k + (moving * (moving + 1) // 2 if cross else moving)


def tail_needed(n: int, levels: Sequence[float]) -> int:
    """The most scenarios, from the worst down, that VaR or ES at any of ``levels`` reads over
    n scenarios: n - floor(n level) + 1 (at least the ceil(n level)-th loss and those above)."""
    return min(n, max((n - math.floor(n * float(a)) + 1 for a in levels), default=1))


def default_tail(n: int, levels: Sequence[float]) -> int:
    """HYBRID's tail when the caller gives none: twice what the levels read, plus 10, at most n."""
    return min(n, 2 * tail_needed(n, levels) + 10)


def _stop(should_continue) -> None:
    code = should_continue() if should_continue is not None else None
    if code is not None:
        what = "deadline exceeded" if code == Code.DEADLINE_EXCEEDED else "cancelled by the caller"
        raise ServiceError(code, f"scenario run stopped between blocks: {what}")


def _sum_into(total: np.ndarray, pnl: np.ndarray, failed: int) -> None:
    """A block's P&L summed over its trades into ``total``, as ScenarioRun sums it."""
    total += pnl.sum(axis=0) if failed == 0 else np.nansum(pnl, axis=0)


class TaylorRun:
    """A TAYLOR or HYBRID run: the derivatives at the start (one bumped revaluation of every
    trade), then :attr:`revaluation` (blocks of Taylor P&L, a HYBRID tail's cells replaced by
    full revaluation) for a ScenarioRun, and :meth:`report` for the trailer."""

    def __init__(self, revaluer: ScenarioRevaluer, books: Sequence[Book], scenarios: ScenarioSet,
                 options: TaylorOptions, *, var_levels, es_levels, block_cells: int, should_continue=None,
                 scenarios_path: str = "scenarios.", taylor_path: str = "taylor."):
        self.revaluer, self.books, self.scenarios, self.options = revaluer, list(books), scenarios, options
        self.rows = sum(b.rows for b in self.books)
        self.var_levels = np.asarray(var_levels, dtype=np.float64)
        self.es_levels = np.asarray(es_levels, dtype=np.float64)
        self.block_trades = revaluer.block_trades(scenarios.scenarios, block_cells)
        self.should_continue, self.scenarios_path = should_continue, scenarios_path
        self.max_row_errors = revaluer.max_row_errors
        t0 = time.perf_counter()
        revaluer.validate_portfolio(self.books, scenarios, scenarios_path)
        bumps = tuple(options.bumps) or tuple(default_bump(s, self._level(s)) for s in scenarios.shifts)
        self.bumps = np.asarray(bumps, dtype=np.float64)
        self.plan = bump_set(scenarios.shifts, bumps, "central", scenarios.smile, cross=options.cross, time=True,
                             bumps_path=taylor_path + "bumps", shifts_path=scenarios_path + "shifts")
        resolved = check_bumps_move(revaluer, self.books, self.plan, taylor_path + "bumps")
        bumped = revaluer.revalue_portfolio(self.books, self.plan.scenarios, should_continue=should_continue,
                                            scenarios_path=scenarios_path, resolved=resolved)
        self.base, self.base_errors = bumped.base, bumped.base_errors
        self._coefficients(bumped)
        self._terms()
        self.taylor_portfolio: Optional[np.ndarray] = None
        self.tail = np.zeros(0, dtype=np.int64)
        if options.hybrid:
            self.taylor_portfolio = np.zeros(scenarios.scenarios)
            for block in self._taylor_blocks():
                _stop(should_continue)
                _sum_into(self.taylor_portfolio, block.pnl, block.failed)
            m = options.tail or default_tail(scenarios.scenarios, np.concatenate([self.var_levels, self.es_levels]))
            self.tail = np.sort(np.argsort(self.taylor_portfolio, kind="stable")[:m])
        self.revaluation = PortfolioRevaluation(self.base, bumped.market_used, self._blocks(), list(self.base_errors),
                                                bumped.priced_by, bumped.books)
        self.seconds = time.perf_counter() - t0  # the derivatives (and HYBRID's first pass), before the blocks

    def _level(self, shift) -> float:
        """An absolute spot shift's reference level: the smallest quoted level of the
        underlyings it moves (so that the default bump is at most 1e-3 of each)."""
        if shift.quantity != Quantity.SPOT:
            return 1.0
        snapshot = self.revaluer.portfolio_snapshot(self.books)
        levels = [abs(u.level) for u in (snapshot.underlying(b.market.underlying_id) if snapshot is not None else None
                                         for b in self.books)
                  if u is not None and shift.matches(u.underlying_id) and u.level]
        return min(levels) if levels else 1.0

    # ------------------------------------------------------------------ the expansion
    def _coefficients(self, bumped: Revaluation) -> None:
        """Each trade's coefficients of the terms (trades x terms), a failed trade's first bump
        error (or None), block by block of the bumped revaluation."""
        plan, cross = self.plan, self.options.cross
        roll = plan.time
        moving = np.flatnonzero(~roll)
        k = len(plan.h)
        if cross:
            iu, ju = np.triu_indices(len(moving))
            self._quad = (moving[iu], moving[ju])
        else:
            self._quad = (moving, moving)
        qi, qj = self._quad
        coeff = np.empty((self.rows, k + len(qi)))
        self.trade_error: dict[int, ScenarioError] = {}
        for block in bumped.blocks:
            _stop(self.should_continue)
            delta, gamma, g = derivatives(plan, block.pnl, cross)
            rows = slice(block.start, block.stop)
            coeff[rows, :k] = delta
            if cross:
                coeff[rows, k:] = np.where(qi == qj, 0.5, 1.0) * g[:, qi, qj]
            else:
                coeff[rows, k:] = 0.5 * gamma[:, moving]
            for e in block.errors:
                self.trade_error.setdefault(e.trade, e)
        bad = ~np.isfinite(coeff).all(axis=1)
        self.failed_trades = bad
        coeff[bad] = 0.0
        self.coeff = coeff
        self.labels = self.plan.scenarios.labels

    def _terms(self) -> None:
        x = self.scenarios.values
        qi, qj = self._quad
        self.terms = np.vstack([x, x[qi] * x[qj]])  # (terms, scenarios)

    def _taylor_block(self, start: int, stop: int) -> CubeBlock:
        pnl = self.coeff[start:stop] @ self.terms
        bad = self.failed_trades[start:stop]
        if bad.any():
            pnl[bad] = np.nan
        finite = np.isfinite(pnl)
        failed = int(pnl.size - np.count_nonzero(finite))
        if failed:
            pnl[~finite] = np.nan  # an overflow is a failed cell too: left out of the sums, with its error
        return CubeBlock(start, stop, pnl, [], failed)

    def _taylor_blocks(self) -> Iterator[CubeBlock]:
        """The Taylor blocks, with a FULL run's boundaries: each book's trades in blocks of
        block_trades from its first."""
        for b in self.books:
            end = b.start + b.rows
            for start in range(b.start, end, self.block_trades):
                yield self._taylor_block(start, min(end, start + self.block_trades))

    def _cell_errors(self, block: CubeBlock, skip: np.ndarray) -> list[ScenarioError]:
        """Errors of a Taylor block's non-finite cells (outside ``skip``, the replaced columns),
        at most max_row_errors: a failed trade's bump error, or an overflow of the expansion."""
        out = []
        bad = ~np.isfinite(block.pnl)
        if skip.size:
            bad[:, skip] = False
        for r, c in zip(*np.nonzero(bad)):
            if len(out) >= self.max_row_errors:
                break
            trade = block.start + int(r)
            e = self.trade_error.get(trade)
            if e is not None:
                out.append(ScenarioError(trade, int(c), e.code, e.field,
                                         f"Taylor: the bump {self.labels[e.scenario]} failed: {e.message}"))
            else:
                out.append(ScenarioError(trade, int(c), int(Code.INVALID_ARGUMENT), f"{self.scenarios_path}sizes",
                                         "Taylor: the expansion is not finite (a derivative or a size too large)"))
        return out

    def _full(self, index: np.ndarray) -> Revaluation:
        """Full revaluation of every trade under the scenarios ``index``, in blocks of the same
        trades as the Taylor blocks (and a FULL run's)."""
        return self.revaluer.revalue_portfolio(self.books, self.scenarios.subset(index),
                                               block_cells=self.block_trades * len(index),
                                               should_continue=self.should_continue,
                                               scenarios_path=self.scenarios_path, reuse=True)

    def _blocks(self) -> Iterator[CubeBlock]:
        tail = self.tail
        full = self._full(tail).blocks if tail.size else None
        for block in self._taylor_blocks():
            if full is not None:
                f = next(full)
                assert (f.start, f.stop) == (block.start, block.stop)
                block.pnl[:, tail] = f.pnl
                block.failed = int(block.pnl.size - np.count_nonzero(np.isfinite(block.pnl)))
                block.errors = [ScenarioError(e.trade, int(tail[e.scenario]), e.code, e.field, e.message)
                                for e in f.errors]
            if block.failed:
                block.errors += self._cell_errors(block, tail)[:max(0, self.max_row_errors - len(block.errors))]
            yield block

    # ------------------------------------------------------------------ the report
    def report(self, aggregates) -> TaylorReport:
        """The error report from the run's aggregates (a TAYLOR check revalues its scenarios
        here, block by block)."""
        n = self.scenarios.scenarios
        t0 = time.perf_counter()
        if self.options.hybrid:
            taylor, index = self.taylor_portfolio, self.tail
            full = aggregates.portfolio_pnl[index]
        else:
            taylor = aggregates.portfolio_pnl
            m = self.options.check
            if m and self.options.check_tail:
                index = np.sort(np.argsort(taylor, kind="stable")[:m])
            elif m:
                index = np.unique(np.rint(np.linspace(0, n - 1, m)).astype(np.int64)) if m > 1 else np.zeros(1, np.int64)
            else:
                index = np.zeros(0, dtype=np.int64)
            full = np.zeros(index.size)
            if index.size:
                for block in self._full(index).blocks:
                    _stop(self.should_continue)
                    _sum_into(full, block.pnl, block.failed)
        alone = risk_measures.historical_risk(taylor, var_level=self.var_levels, es_level=self.es_levels)
        var, es = _levels(alone.var), _levels(alone.es)
        if self.options.hybrid:  # the run's own figures: its P&L is the mixed one
            mixed_var, mixed_es = aggregates.var, aggregates.es
        elif index.size:
            mixed = taylor.copy()
            mixed[index] = full
            both = risk_measures.historical_risk(mixed, var_level=self.var_levels, es_level=self.es_levels)
            mixed_var, mixed_es = _levels(both.var), _levels(both.es)
        else:
            mixed_var, mixed_es = var, es
        self.seconds += time.perf_counter() - t0
        error = np.abs(taylor[index] - full)
        largest = float(error.max()) if error.size else None
        rms = None if largest is None else largest * float(np.sqrt(np.mean((error / largest) ** 2))) if largest \
            else 0.0  # scaled: the squares of a huge error stay finite
        return TaylorReport(self.options.hybrid, self.bumps, self.plan.scenarios.scenarios, index,
                            taylor[index].copy(), full, largest, rms, var, es, mixed_var, mixed_es)


def _levels(x) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float64))
