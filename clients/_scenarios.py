"""Scenario risk through RiskService.RunScenarioRisk: a portfolio on one underlying of a stored
snapshot, revalued under a scenario set; the P&L cube (on request) and the aggregates as
numpy arrays.

    >>> from pricegrid.clients import RiskClient, Shift
    >>> shifts = [Shift("spot", "spot", "relative", ["SPX"]),
    ...           Shift("vol", "vol", "absolute", ["SPX-*"]),
    ...           Shift("rates", "zero_rate", "absolute", ["USD-OIS"], tenors=["3M", "1Y", "5Y"])]
    >>> sizes = np.vstack([spot_moves, vol_moves, rate_moves_by_tenor])  # components x scenarios
    >>> with RiskClient(target="127.0.0.1:50051") as risk:
    ...     r = risk.scenario_risk(snapshot_id=sid, underlying_id="SPX", model="bsm",
    ...                            option_type=types, strike=k, time_to_expiry=t, quantity=q,
    ...                            shifts=shifts, sizes=sizes, labels=labels, output="both")
    ...     r.var[0.99], r.expected_shortfall[0.975], r.cube.shape, r.cube_frame()

What each quantity, kind and shape means is written in ``proto/pricegrid/v1/risk.proto``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import grpc
import numpy as np

from pricegrid.v1 import risk_pb2 as rpb
from pricegrid.v1 import wire

from . import _tracing
from ._errors import PricingError, RowError, status_code

__all__ = ["SensitivitiesResult", "WorstCaseResult", "BookVar", "RiskNode", "ScenarioRiskResult", "ScenarioRowError", "Shift", "QUANTITIES", "KINDS",
           "PARAMETRIC_METHODS", "TaylorReport", "REVALUATIONS"]

PARAMETRIC_METHODS = {"delta_normal": rpb.PARAMETRIC_METHOD_DELTA_NORMAL,
                      "delta_gamma_normal": rpb.PARAMETRIC_METHOD_DELTA_GAMMA_NORMAL,
                      "cornish_fisher": rpb.PARAMETRIC_METHOD_CORNISH_FISHER}


@dataclass(frozen=True)
class BookVar:
    """One book's parametric VaR by level (positive: a loss) and its P&L's moments."""

    book: str
    var: dict
    mean: float
    standard_deviation: float
    skewness: float
    excess_kurtosis: float


def parametric_request(deltas, covariance, *, factors=None, books=None, gammas=None, method="delta_normal",
                       levels=(0.99,)) -> rpb.ParametricVarRequest:
    d = np.asarray(deltas, dtype=np.float64)
    d2 = d.reshape(1, -1) if d.ndim == 1 else d
    if d2.ndim != 2:
        raise ValueError("deltas: (factors,) or (books, factors)")
    k = d2.shape[1]
    if method not in PARAMETRIC_METHODS:
        raise ValueError(f"method {method!r}; expected one of {sorted(PARAMETRIC_METHODS)}")
    msg = rpb.ParametricVarRequest(factors=[str(f) for f in (factors if factors is not None else
                                                              [f"f{i}" for i in range(k)])],
                                   method=PARAMETRIC_METHODS[method], levels=[float(x) for x in levels])
    if books is not None:
        msg.books.extend(str(b) for b in books)
    elif d.ndim == 2:
        msg.books.extend(f"book{i}" for i in range(d2.shape[0]))
    msg.covariance.raw = np.ascontiguousarray(covariance, dtype="<f8").tobytes()
    msg.deltas.raw = np.ascontiguousarray(d2, dtype="<f8").tobytes()
    if gammas is not None:
        msg.gammas.raw = np.ascontiguousarray(gammas, dtype="<f8").tobytes()
    return msg


def parametric_result(reply: rpb.ParametricVarResponse) -> list[BookVar]:
    return [BookVar(b.book, {x.level: x.value for x in b.var}, b.mean, b.standard_deviation, b.skewness,
                    b.excess_kurtosis) for b in reply.books]

QUANTITIES = {"spot": rpb.SHIFT_QUANTITY_SPOT, "vol": rpb.SHIFT_QUANTITY_VOL,
              "zero_rate": rpb.SHIFT_QUANTITY_ZERO_RATE, "dividend_yield": rpb.SHIFT_QUANTITY_DIVIDEND_YIELD,
              "time": rpb.SHIFT_QUANTITY_TIME, "heston_v0": rpb.SHIFT_QUANTITY_HESTON_V0,
              "heston_kappa": rpb.SHIFT_QUANTITY_HESTON_KAPPA, "heston_theta": rpb.SHIFT_QUANTITY_HESTON_THETA,
              "heston_sigma": rpb.SHIFT_QUANTITY_HESTON_SIGMA, "heston_rho": rpb.SHIFT_QUANTITY_HESTON_RHO}
KINDS = {"absolute": rpb.SHIFT_KIND_ABSOLUTE, "relative": rpb.SHIFT_KIND_RELATIVE, "log": rpb.SHIFT_KIND_LOG,
         "fixed": rpb.SHIFT_KIND_FIXED}
SMILES = {"sticky_strike": rpb.SMILE_DYNAMICS_STICKY_STRIKE, "sticky_moneyness": rpb.SMILE_DYNAMICS_STICKY_MONEYNESS}
OUTPUTS = {"aggregates": rpb.SCENARIO_OUTPUT_AGGREGATES, "cube": rpb.SCENARIO_OUTPUT_CUBE,
           "both": rpb.SCENARIO_OUTPUT_BOTH}
REVALUATIONS = {"full": rpb.REVALUATION_MODE_FULL, "taylor": rpb.REVALUATION_MODE_TAYLOR,
                "hybrid": rpb.REVALUATION_MODE_HYBRID}
CHECKS = {"even": rpb.TAYLOR_CHECK_EVEN, "tail": rpb.TAYLOR_CHECK_TAIL}


@dataclass(frozen=True)
class TaylorReport:
    """A TAYLOR or HYBRID run's approximation and its error: the bumps used (per shift), the
    bumped scenarios per trade, the scenarios revalued in full (``revalued``: indices) with the
    portfolio's Taylor and full P&L on them, ``max_abs_error`` and ``rms_error`` of their
    difference (None when nothing was revalued), and VaR and ES by level of the Taylor P&L
    alone and with the revalued scenarios' full values in their place."""

    revaluation: str
    bumps: np.ndarray
    bump_scenarios: int
    revalued: np.ndarray
    taylor_pnl: np.ndarray
    full_pnl: np.ndarray
    max_abs_error: Optional[float]
    rms_error: Optional[float]
    taylor_var: dict
    taylor_expected_shortfall: dict
    revalued_var: dict
    revalued_expected_shortfall: dict


@dataclass(frozen=True)
class Shift:
    """One shift of the set: what moves (``quantity``: spot, vol, zero_rate, dividend_yield,
    time), how a size applies (``kind``: absolute, relative, log, fixed), which objects
    (``selector``: glob patterns over ids) and its shape: parallel by default, ``tenors``
    for one size per bucket, ``grid_expiries`` x ``grid_moneyness`` for vol by expiry and
    K/F. Its rows of ``sizes``: 1, len(tenors), or expiries x moneyness (expiries outer)."""

    name: str
    quantity: str
    kind: str = "absolute"
    selector: Sequence[str] = ()
    tenors: Optional[Sequence[str]] = None
    grid_expiries: Optional[Sequence[str]] = None
    grid_moneyness: Optional[Sequence[float]] = None

    @property
    def components(self) -> int:
        if self.tenors is not None:
            return len(self.tenors)
        if self.grid_expiries is not None:
            return len(self.grid_expiries) * len(self.grid_moneyness or ())
        return 1

    @classmethod
    def from_message(cls, msg: rpb.ScenarioShift) -> "Shift":
        """The shift a ScenarioShift message states."""
        quantity = {v: k for k, v in QUANTITIES.items()}.get(msg.quantity, str(msg.quantity))
        kind = {v: k for k, v in KINDS.items()}.get(msg.kind, str(msg.kind))
        shape = msg.WhichOneof("shape")
        return cls(msg.name, quantity, kind, tuple(msg.selector),
                   tenors=tuple(msg.buckets.tenors) if shape == "buckets" else None,
                   grid_expiries=tuple(msg.grid.expiries) if shape == "grid" else None,
                   grid_moneyness=tuple(msg.grid.moneyness) if shape == "grid" else None)

    def message(self) -> rpb.ScenarioShift:
        if self.quantity not in QUANTITIES:
            raise ValueError(f"shift {self.name!r}: quantity {self.quantity!r}; expected one of {sorted(QUANTITIES)}")
        if self.kind not in KINDS:
            raise ValueError(f"shift {self.name!r}: kind {self.kind!r}; expected one of {sorted(KINDS)}")
        msg = rpb.ScenarioShift(name=self.name, quantity=QUANTITIES[self.quantity], kind=KINDS[self.kind],
                                selector=list(self.selector))
        if self.tenors is not None:
            msg.buckets.tenors.extend(str(t) for t in self.tenors)
        elif self.grid_expiries is not None:
            msg.grid.expiries.extend(str(t) for t in self.grid_expiries)
            msg.grid.moneyness.extend(float(m) for m in (self.grid_moneyness or ()))
        return msg


@dataclass(frozen=True)
class RiskNode:
    """A node of the tag hierarchy: ``path`` ("desk=rates", "book=B1"), its trades, its
    P&L per scenario and its VaR and ES by level."""

    path: tuple[str, ...]
    trades: int
    pnl: np.ndarray
    var: dict
    expected_shortfall: dict
    component_es: dict = field(default_factory=dict)    # by ES level, with es_attribution
    incremental_es: dict = field(default_factory=dict)  # by ES level, with incremental_es


@dataclass(frozen=True)
class ScenarioRowError:
    trade: int
    scenario: int
    code: int
    field: str
    message: str


@dataclass
class ScenarioRiskResult:
    """A run's result. ``base``: quantity x value per trade on the base market; ``cube``:
    trades x scenarios P&L (None unless asked, NaN where a trade failed in a scenario, see
    ``errors``); ``portfolio_pnl`` per scenario; ``var`` and ``expected_shortfall`` by level
    (positive losses); ``trade_var``/``trade_expected_shortfall``: trades x levels (None
    unless asked with ``trade_risk=True``)."""

    trade_ids: list[str]
    scenario_labels: list[str]
    components: list[str]
    base: np.ndarray
    base_errors: list  # RowError of the base valuation (row: the trade)
    cube: Optional[np.ndarray]
    errors: list[ScenarioRowError]
    portfolio_pnl: Optional[np.ndarray]
    var: dict[float, float]
    expected_shortfall: dict[float, float]
    trade_var: Optional[np.ndarray]
    trade_expected_shortfall: Optional[np.ndarray]
    failed_cells: int
    compute_seconds: float
    priced_by: dict = field(default_factory=dict)
    market: dict = field(default_factory=dict)
    blocks: int = 0
    nodes: list = field(default_factory=list)  # RiskNode of the tag hierarchy, parents first
    books: list = field(default_factory=list)  # BookUsed of each book, in order
    portfolio_id: str = ""  # the stored portfolio's version that ran
    trade_component_es: Optional[np.ndarray] = None    # trades x ES levels, with es_attribution
    trade_incremental_es: Optional[np.ndarray] = None  # trades x ES levels, with incremental_es
    tail_scenarios: int = 0
    taylor: Optional[TaylorReport] = None  # TAYLOR and HYBRID runs: the error report

    def node(self, *path: str) -> RiskNode:
        """The node of ``path`` ("desk=rates", "book=B1")."""
        for n in self.nodes:
            if n.path == tuple(path):
                return n
        raise KeyError(path)

    def cube_frame(self):
        """The cube as a pandas DataFrame (trades x scenarios, labelled)."""
        import pandas as pd

        if self.cube is None:
            raise ValueError("the cube was not asked for: output='cube' or 'both'")
        return pd.DataFrame(self.cube, index=pd.Index(self.trade_ids, name="trade"),
                            columns=pd.Index(self.scenario_labels, name="scenario"))


@dataclass(frozen=True)
class BookUsed:
    """One book of a run: its trades [trade_start, trade_stop), product, engine and market."""

    trade_start: int
    trade_stop: int
    product: str
    priced_by: dict
    market: dict


@dataclass(frozen=True)
class StoredPortfolio:
    """A stored portfolio's version (``portfolio``: its books, from get_portfolio only)."""

    id: str
    name: str
    description: str
    stored_at: str
    books: int
    trades: int
    portfolio: Optional[rpb.Portfolio] = None
    created: Optional[bool] = None  # from put_portfolio: False when it was already stored


def stored_portfolio(msg: rpb.StoredPortfolio, *, created=None, with_content: bool = False) -> StoredPortfolio:
    return StoredPortfolio(msg.id, msg.name, msg.description, msg.stored_at, msg.books, msg.trades,
                           msg.portfolio if with_content else None, created)


@dataclass(frozen=True)
class StoredScenarioSet:
    """A stored scenario set's version (``scenario_set``: from get_scenario_set only)."""

    id: str
    name: str
    description: str
    stored_at: str
    scenarios: int
    components: int
    scenario_set: Optional[rpb.ScenarioSet] = None
    created: Optional[bool] = None


def stored_set(msg: rpb.StoredScenarioSet, *, created=None, with_content: bool = False) -> StoredScenarioSet:
    return StoredScenarioSet(msg.id, msg.name, msg.description, msg.stored_at, msg.scenarios, msg.components,
                             msg.scenario_set if with_content else None, created)


def _ref(m) -> dict:
    return {"model": m.model, "engine": m.engine, "version": m.version}


def _market(m) -> dict:
    return {"snapshot_id": m.snapshot_id, "underlying_id": m.underlying_id, "discount_curve": m.discount_curve,
            "dividend_curve": m.dividend_curve, "vol_surface": m.vol_surface}


def portfolio_into(msg, *, portfolio=None, books=None, stored: str = "", snapshot_id: str = "") -> None:
    """Put a request's trades into ``msg``: one PriceBatchRequest, a list of PortfolioBook
    (or a Portfolio), or a stored portfolio's name or id; ``snapshot_id`` with the last two."""
    if sum(x is not None and x != "" for x in (portfolio, books, stored)) != 1:
        raise ValueError("give the trades' columns, books, or a stored portfolio's name: exactly one")
    if portfolio is not None:
        msg.portfolio.CopyFrom(portfolio)
        return
    if books is not None:
        msg.books.CopyFrom(books if isinstance(books, rpb.Portfolio) else rpb.Portfolio(books=list(books)))
        msg.books.SetInParent()  # an empty list is sent (and refused), not dropped
    else:
        msg.stored_portfolio = str(stored)
    if snapshot_id:
        msg.snapshot_id = snapshot_id


def _by_trade(col, trades: int) -> np.ndarray:
    values = _doubles(col)
    return values.reshape(trades, -1) if trades else values


def _doubles(col) -> np.ndarray:
    if col.raw:
        return np.frombuffer(col.raw, dtype="<f8").astype(np.float64)
    return np.asarray(col.values, dtype=np.float64)


def history_of(history) -> Optional[tuple]:
    """A client's history dict as scenario_set takes it: ``dates`` and ``levels`` (dates x
    components), or ``snapshots`` ({"ids": [...]} or {"name", "start", "end"}: the levels
    read from stored snapshots on the server); ``holding_period`` (default 1) and
    ``overlapping`` (default True)."""
    if history is None:
        return None
    unknown = set(history) - {"dates", "levels", "snapshots", "holding_period", "overlapping"}
    if unknown:
        raise ValueError(f"history: unknown keys {sorted(unknown)}")
    if "snapshots" in history:
        return (history.get("dates", []), history.get("levels"), history.get("holding_period", 1),
                history.get("overlapping", True), dict(history["snapshots"]))
    return history["dates"], history["levels"], history.get("holding_period", 1), history.get("overlapping", True)


def scenario_set(shifts: Sequence[Shift], sizes, labels, history=None, *, stresses=(), stress_targets=None,
                 smile: str = "sticky_strike") -> rpb.ScenarioSet:
    """A ScenarioSet message: shifts x sizes with labels, or a history; plus named stresses
    (catalogue or stored) and the catalogue factors' targets (factor -> selectors)."""
    components = sum(s.components for s in shifts)
    if history is None and sizes is None and (stresses or stress_targets):
        if shifts or labels:
            raise ValueError("shifts and labels need their sizes")
        sizes = np.zeros((0, 0))
    elif history is not None:  # (dates, levels dates x components, holding, overlapping[, snapshots])
        dates, levels, holding, overlapping, *rest = history
        snapshots = rest[0] if rest else None
        if snapshots is not None:
            if dates or levels is not None:
                raise ValueError("a history reads its levels from snapshots or takes dates and levels, not both")
            unknown = set(snapshots) - {"ids", "name", "start", "end"}
            if unknown:
                raise ValueError(f"history snapshots: unknown keys {sorted(unknown)} (ids, or name, start, end)")
            dates, levels = [], None
        else:
            levels = np.asarray(levels, dtype=np.float64)
            if levels.ndim != 2 or levels.shape != (len(dates), components):
                raise ValueError(f"history levels have shape {levels.shape}; expected dates x components = "
                                 f"({len(dates)}, {components})")
        sizes, labels = np.zeros((components, 0)), []
    elif sizes is None:
        raise ValueError("give sizes (components x scenarios) and labels, a history, or stresses")
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim == 1:
        sizes = sizes.reshape(1, -1)
    if sizes.shape != (components, len(labels)) and sizes.size + components + len(labels):
        raise ValueError(f"sizes has shape {sizes.shape}; the shifts have {components} components and there are "
                         f"{len(labels)} labels: expected ({components}, {len(labels)})")
    if smile not in SMILES:
        raise ValueError(f"smile {smile!r}; expected one of {sorted(SMILES)}")
    msg = rpb.ScenarioSet(smile=SMILES[smile], stresses=[str(x) for x in stresses])
    msg.shifts.extend(s.message() for s in shifts)
    msg.labels.extend(str(x) for x in labels)
    if sizes.size:
        msg.sizes.raw = np.ascontiguousarray(sizes, dtype="<f8").tobytes()
    if history is not None:
        h = msg.history
        h.dates.extend(str(d) for d in dates)
        if levels is not None:
            h.levels.raw = np.ascontiguousarray(levels, dtype="<f8").tobytes()
        else:
            h.snapshots.ids.extend(str(x) for x in snapshots.get("ids", ()))
            h.snapshots.name = str(snapshots.get("name", ""))
            h.snapshots.start = str(snapshots.get("start", ""))
            h.snapshots.end = str(snapshots.get("end", ""))
            h.snapshots.SetInParent()
        h.holding_period = int(holding)
        h.non_overlapping = not overlapping
    for factor, selectors in (stress_targets or {}).items():
        selectors = [selectors] if isinstance(selectors, str) else list(selectors)
        msg.stress_targets.add(factor=str(factor), selectors=[str(x) for x in selectors])
    return msg


def request_of(portfolio=None, *, books=None, stored: str = "", snapshot_id: str = "", quantity, trade_ids,
               shifts: Sequence[Shift], sizes, labels, smile: str, output: str, cube_type: str, var_levels,
               es_levels, trade_risk: bool = False, tags=None, aggregate_by=(), history=None, stresses=(),
               stress_targets=None, es_attribution: bool = False, incremental_es: bool = False,
               revaluation: str = "full", taylor_bumps=None, cross_gamma: bool = False, hybrid_tail: int = 0,
               check_scenarios: int = 0, check: str = "even") -> rpb.RunScenarioRiskRequest:
    scenarios = scenario_set(shifts, sizes, labels, history, stresses=stresses, stress_targets=stress_targets,
                             smile=smile)
    if output not in OUTPUTS:
        raise ValueError(f"output {output!r}; expected one of {sorted(OUTPUTS)}")
    if cube_type not in ("float64", "float32"):
        raise ValueError(f"cube_type {cube_type!r}; expected 'float64' or 'float32'")
    msg = rpb.RunScenarioRiskRequest(output=OUTPUTS[output],
                                     cube_type=rpb.CUBE_TYPE_FLOAT32 if cube_type == "float32" else rpb.CUBE_TYPE_FLOAT64,
                                     var_levels=list(var_levels or ()), es_levels=list(es_levels or ()),
                                     trade_risk=bool(trade_risk), es_attribution=bool(es_attribution),
                                     incremental_es=bool(incremental_es))
    portfolio_into(msg, portfolio=portfolio, books=books, stored=stored, snapshot_id=snapshot_id)
    if quantity is not None:
        msg.quantity.raw = np.ascontiguousarray(np.atleast_1d(np.asarray(quantity, dtype="<f8"))).tobytes()
    if trade_ids is not None:
        msg.trade_ids.extend(str(t) for t in trade_ids)
    msg.scenarios.CopyFrom(scenarios)
    for name, values in (tags or {}).items():
        values = [values] if isinstance(values, str) else list(values)
        msg.tags.add(name=str(name), values=[str(v) for v in values])
    msg.aggregate_by.extend(str(x) for x in aggregate_by)
    if revaluation not in REVALUATIONS:
        raise ValueError(f"revaluation {revaluation!r}; expected one of {sorted(REVALUATIONS)}")
    if check not in CHECKS:
        raise ValueError(f"check {check!r}; expected one of {sorted(CHECKS)}")
    msg.revaluation = REVALUATIONS[revaluation]
    if revaluation != "full":
        t = msg.taylor
        t.SetInParent()
        t.bumps.extend(float(b) for b in (taylor_bumps or ()))
        t.cross_gamma, t.hybrid_tail, t.check_scenarios = bool(cross_gamma), int(hybrid_tail), int(check_scenarios)
        if check_scenarios:
            t.check = CHECKS[check]
    elif taylor_bumps or cross_gamma or hybrid_tail or check_scenarios:
        raise ValueError("taylor_bumps, cross_gamma, hybrid_tail and check_scenarios are for revaluation='taylor' "
                         "or 'hybrid'")
    return msg


class Collector:
    """A scenario run's messages, read in order into a result (the sync and the asyncio
    clients feed it alike)."""

    def __init__(self, request: rpb.RunScenarioRiskRequest, progress=None):
        self.request = request
        self.progress = progress
        self.header = self.trailer = None
        self.cube = None
        self.errors: list[ScenarioRowError] = []
        self.blocks = 0
        self._filled = None  # the cube's trades a block has written (the others are NaN)

    def feed(self, part: rpb.RunScenarioRiskResponse) -> None:
        which = part.WhichOneof("part")
        if which == "header":
            self.header = part.header
            if self.request.output in (rpb.SCENARIO_OUTPUT_CUBE, rpb.SCENARIO_OUTPUT_BOTH):
                trades = len(self.header.trade_ids)
                # written once, block by block (no NaN pass over the whole cube first)
                self.cube = np.empty((trades, len(self.header.scenario_labels)))
                self._filled = np.zeros(trades, dtype=bool)
        elif which == "block":
            b = part.block
            dtype = "<f4" if b.cube_type == rpb.CUBE_TYPE_FLOAT32 else "<f8"
            offset = self.header.trade_offset  # a slice's blocks keep the portfolio's trade numbers
            self.cube[b.trade_start - offset:b.trade_stop - offset] = np.frombuffer(b.pnl, dtype=dtype).reshape(
                b.trade_stop - b.trade_start, -1)
            self._filled[b.trade_start - offset:b.trade_stop - offset] = True
            self.errors.extend(ScenarioRowError(e.trade, e.scenario, e.code, e.field, e.message) for e in b.errors)
            self.blocks += 1
            if self.progress is not None:
                self.progress(b.trade_stop - offset, len(self.header.trade_ids))
        elif which == "progress":
            if self.progress is not None:
                self.progress(part.progress.trades_done, part.progress.trades)
        elif which == "trailer":
            self.trailer = part.trailer

    def result(self) -> ScenarioRiskResult:
        header, trailer, request = self.header, self.trailer, self.request
        if header is None or trailer is None:
            raise PricingError(grpc.StatusCode.INTERNAL, "the server ended the scenario run early")
        trades = len(header.trade_ids)
        if self._filled is not None and not self._filled.all():
            self.cube[~self._filled] = np.nan  # trades no block held
        aggregates = request.output != rpb.SCENARIO_OUTPUT_CUBE
        tv = _doubles(trailer.trade_var) if aggregates and request.trade_risk else None
        te = _doubles(trailer.trade_expected_shortfall) if aggregates and request.trade_risk else None
        return ScenarioRiskResult(
            trade_ids=list(header.trade_ids), scenario_labels=list(header.scenario_labels),
            components=list(header.components), base=_doubles(header.base_values),
            base_errors=[RowError(int(e.row), status_code(e.code), e.field, e.message) for e in header.base_errors],
            cube=self.cube, errors=self.errors,
            portfolio_pnl=_doubles(trailer.portfolio_pnl) if aggregates else None,
            var={x.level: x.value for x in trailer.var},
            expected_shortfall={x.level: x.value for x in trailer.expected_shortfall},
            trade_var=tv.reshape(trades, -1) if tv is not None and trades else tv,
            trade_expected_shortfall=te.reshape(trades, -1) if te is not None and trades else te,
            failed_cells=trailer.failed_cells, compute_seconds=trailer.compute_seconds,
            priced_by=_ref(header.priced_by), market=_market(header.market),
            blocks=self.blocks,
            books=[BookUsed(b.trade_start, b.trade_stop, b.product, _ref(b.priced_by), _market(b.market))
                   for b in header.books],
            portfolio_id=header.portfolio_id,
            nodes=[RiskNode(tuple(n.path), n.trades, _doubles(n.pnl), {x.level: x.value for x in n.var},
                            {x.level: x.value for x in n.expected_shortfall},
                            {x.level: x.value for x in n.component_es},
                            {x.level: x.value for x in n.incremental_es})
                   for n in trailer.nodes],
            trade_component_es=_by_trade(trailer.trade_component_es, trades) if request.es_attribution else None,
            trade_incremental_es=_by_trade(trailer.trade_incremental_es, trades) if request.incremental_es else None,
            tail_scenarios=trailer.tail_scenarios,
            taylor=_taylor_report(trailer.taylor) if trailer.HasField("taylor") else None,
        )


def read_part(data: bytes):
    """A RunScenarioRiskResponse off the wire: a block as a pricegrid.v1.wire view (its P&L
    read in place, from the received bytes), any other part by the generated class."""
    view = wire.parse(rpb.RunScenarioRiskResponse, data)
    return view if view.WhichOneof("part") == "block" else rpb.RunScenarioRiskResponse.FromString(data)


def collect(stub_call, request: rpb.RunScenarioRiskRequest, timeout, progress=None) -> ScenarioRiskResult:
    """Read the header, the blocks and the trailer into a result."""
    collector = Collector(request, progress)
    try:
        for part in stub_call(request, timeout=timeout, metadata=_tracing.metadata()):
            collector.feed(part)
    except grpc.RpcError as e:
        raise PricingError.from_rpc_error(e) from None
    return collector.result()


def _taylor_report(t: rpb.TaylorReport) -> TaylorReport:
    def levels(xs):
        return {x.level: x.value for x in xs}

    mode = {v: k for k, v in REVALUATIONS.items()}.get(t.revaluation, str(t.revaluation))
    return TaylorReport(
        revaluation=mode, bumps=np.asarray(t.bumps, dtype=np.float64), bump_scenarios=t.bump_scenarios,
        revalued=np.asarray(t.revalued, dtype=np.int64), taylor_pnl=_doubles(t.taylor_pnl),
        full_pnl=_doubles(t.full_pnl),
        max_abs_error=t.max_abs_error if t.HasField("max_abs_error") else None,
        rms_error=t.rms_error if t.HasField("rms_error") else None,
        taylor_var=levels(t.taylor_var), taylor_expected_shortfall=levels(t.taylor_expected_shortfall),
        revalued_var=levels(t.revalued_var), revalued_expected_shortfall=levels(t.revalued_expected_shortfall))


SCHEMES = {"central": rpb.DIFFERENCE_SCHEME_CENTRAL, "forward": rpb.DIFFERENCE_SCHEME_FORWARD,
           "backward": rpb.DIFFERENCE_SCHEME_BACKWARD}


@dataclass
class SensitivitiesResult:
    """Per trade and component (the shifts' buckets or grid nodes, ``components``): ``delta``
    and ``gamma`` (trades x components, quantity included, in the shifts' units); the
    portfolio's sums; errors of bumps that failed (``scenario``: the component)."""

    trade_ids: list[str]
    components: list[str]
    delta: np.ndarray
    gamma: np.ndarray
    portfolio_delta: np.ndarray
    portfolio_gamma: np.ndarray
    errors: list
    priced_by: dict = field(default_factory=dict)
    market: dict = field(default_factory=dict)
    cross_gamma: Optional[np.ndarray] = None            # trades x components x components, when asked
    portfolio_cross_gamma: Optional[np.ndarray] = None  # components x components


def sensitivities_request(portfolio=None, *, books=None, stored: str = "", snapshot_id: str = "", quantity,
                          trade_ids, shifts: Sequence[Shift], bumps, scheme: str,
                          smile: str, cross_gamma: bool = False) -> rpb.SensitivitiesRequest:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r}; expected one of {sorted(SCHEMES)}")
    if smile not in SMILES:
        raise ValueError(f"smile {smile!r}; expected one of {sorted(SMILES)}")
    msg = rpb.SensitivitiesRequest(scheme=SCHEMES[scheme], smile=SMILES[smile], bumps=[float(b) for b in bumps],
                                   cross_gamma=bool(cross_gamma))
    portfolio_into(msg, portfolio=portfolio, books=books, stored=stored, snapshot_id=snapshot_id)
    msg.shifts.extend(s.message() for s in shifts)
    if quantity is not None:
        msg.quantity.raw = np.ascontiguousarray(np.atleast_1d(np.asarray(quantity, dtype="<f8"))).tobytes()
    if trade_ids is not None:
        msg.trade_ids.extend(str(t) for t in trade_ids)
    return msg


def sensitivities_result(reply: rpb.SensitivitiesResponse) -> SensitivitiesResult:
    n, k = len(reply.trade_ids), len(reply.components)
    return SensitivitiesResult(
        trade_ids=list(reply.trade_ids), components=list(reply.components),
        delta=_doubles(reply.delta).reshape(n, k), gamma=_doubles(reply.gamma).reshape(n, k),
        portfolio_delta=_doubles(reply.portfolio_delta), portfolio_gamma=_doubles(reply.portfolio_gamma),
        errors=[ScenarioRowError(e.trade, e.scenario, e.code, e.field, e.message) for e in reply.errors],
        priced_by={"model": reply.priced_by.model, "engine": reply.priced_by.engine, "version": reply.priced_by.version},
        market={"snapshot_id": reply.market.snapshot_id, "underlying_id": reply.market.underlying_id,
                "vol_surface": reply.market.vol_surface},
        cross_gamma=_doubles(reply.cross_gamma).reshape(n, k, k) if reply.HasField("cross_gamma") else None,
        portfolio_cross_gamma=(_doubles(reply.portfolio_cross_gamma).reshape(k, k)
                               if reply.HasField("portfolio_cross_gamma") else None),
    )


@dataclass
class WorstCaseResult:
    """RiskService.WorstCase's answer: the worst (or, for the reverse question, the most
    plausible) factor ``move`` per component (``components``, in the shifts' units), the
    full-revaluation ``pnl`` there (negative: a loss; ``loss`` = -pnl) and each trade's
    (``trade_pnl``), the move's Mahalanobis ``radius2`` and its chi-square ``radius_level``,
    the ellipsoid searched (``bound2``, ``dof``), the delta-gamma comparison, the search's
    effort and convergence, and ``reached`` (the reverse question's target). ``scenario``
    is the move as a ScenarioSet message; :meth:`scenario_kwargs` gives it as
    RiskClient.scenario_risk's arguments."""

    trade_ids: list[str]
    components: list[str]
    move: np.ndarray
    pnl: float
    trade_pnl: np.ndarray
    radius2: float
    radius_level: float
    bound2: float
    dof: float
    delta_gamma_move: np.ndarray
    delta_gamma_pnl: float
    iterations: int
    revaluations: int
    converged: bool
    achieved_tolerance: float
    reached: bool
    radius_steps: int
    scenario: rpb.ScenarioSet
    priced_by: dict = field(default_factory=dict)
    market: dict = field(default_factory=dict)

    @property
    def loss(self) -> float:
        return -self.pnl

    def scenario_kwargs(self) -> dict:
        """``shifts``, ``sizes`` (components x 1), ``labels`` and ``smile`` of the move: with
        the same trades, ``risk.scenario_risk(..., **result.scenario_kwargs())`` reproduces
        ``pnl`` bit for bit."""
        smile = {v: k for k, v in SMILES.items()}.get(self.scenario.smile, "sticky_strike")
        return {"shifts": [Shift.from_message(m) for m in self.scenario.shifts],
                "sizes": _doubles(self.scenario.sizes).reshape(len(self.components), -1),
                "labels": list(self.scenario.labels), "smile": smile}


def worst_case_request(portfolio=None, *, books=None, stored: str = "", snapshot_id: str = "", quantity, trade_ids,
                       shifts: Sequence[Shift], covariance, level, loss, dof, smile: str, max_iterations, tolerance,
                       max_level, radius_steps, label) -> rpb.WorstCaseRequest:
    if smile not in SMILES:
        raise ValueError(f"smile {smile!r}; expected one of {sorted(SMILES)}")
    if level is not None and loss is not None:
        raise ValueError("give a level (maximum loss) or a loss (the reverse question), not both")
    msg = rpb.WorstCaseRequest(smile=SMILES[smile], label=str(label or ""))
    portfolio_into(msg, portfolio=portfolio, books=books, stored=stored, snapshot_id=snapshot_id)
    msg.shifts.extend(s.message() for s in shifts)
    msg.covariance.raw = np.ascontiguousarray(covariance, dtype="<f8").tobytes()
    if loss is not None:
        msg.loss = float(loss)
    elif level is not None:
        msg.level = float(level)
    for name, value, kind in (("dof", dof, float), ("max_iterations", max_iterations, int),
                              ("tolerance", tolerance, float), ("max_level", max_level, float),
                              ("radius_steps", radius_steps, int)):
        if value is not None:
            setattr(msg, name, kind(value))
    if quantity is not None:
        msg.quantity.raw = np.ascontiguousarray(np.atleast_1d(np.asarray(quantity, dtype="<f8"))).tobytes()
    if trade_ids is not None:
        msg.trade_ids.extend(str(t) for t in trade_ids)
    return msg


def worst_case_result(reply: rpb.WorstCaseResponse) -> WorstCaseResult:
    return WorstCaseResult(
        trade_ids=list(reply.trade_ids), components=list(reply.components), move=_doubles(reply.move),
        pnl=reply.pnl, trade_pnl=_doubles(reply.trade_pnl), radius2=reply.radius2, radius_level=reply.radius_level,
        bound2=reply.bound2, dof=reply.dof, delta_gamma_move=_doubles(reply.delta_gamma_move),
        delta_gamma_pnl=reply.delta_gamma_pnl, iterations=reply.iterations, revaluations=reply.revaluations,
        converged=reply.converged, achieved_tolerance=reply.achieved_tolerance, reached=reply.reached,
        radius_steps=reply.radius_steps, scenario=reply.scenario,
        priced_by={"model": reply.priced_by.model, "engine": reply.priced_by.engine, "version": reply.priced_by.version},
        market={"snapshot_id": reply.market.snapshot_id, "underlying_id": reply.market.underlying_id,
                "vol_surface": reply.market.vol_surface},
    )


# ------------------------------------------------------------------ shards of a run
def batch_rows(batch) -> int:
    """The trades of a PriceBatchRequest: its longest column (a column of one broadcasts)."""
    rows = 1
    which = batch.WhichOneof("instruments")
    for message in ([getattr(batch, which)] if which else []) + [batch.market]:
        for field, value in message.ListFields():
            kind = field.message_type.name if field.message_type is not None else ""
            if kind in ("DoubleColumn", "Int32Column"):
                size = 8 if kind == "DoubleColumn" else 4
                rows = max(rows, len(value.raw) // size if value.raw else len(value.values))
    return rows


def tail_risk(pnl: np.ndarray, var_levels, es_levels) -> tuple[dict, dict]:
    """VaR and ES of a P&L vector as the server states them: VaR the ceil(n level)-th
    smallest loss (n level within 4 ulps of a whole number taken as it), ES the
    Acerbi-Tasche average of the losses beyond it."""
    losses = np.sort(-np.asarray(pnl, dtype=np.float64))
    n = len(losses)
    eps = np.finfo(np.float64).eps

    def boundary(level: float) -> tuple[int, float]:
        m = n * level
        r = round(m)
        snap = abs(m - r) <= 4.0 * eps * m
        k = int(min(max(r if snap else np.ceil(m), 1), n))
        frac = 0.0 if snap else min(max(k - m, 0.0), 1.0)
        return k, (1.0 if k == n else frac)

    var = {level: float(losses[boundary(level)[0] - 1]) for level in var_levels}
    es = {}
    for level in es_levels:
        k, f = boundary(level)
        at = losses[k - 1]
        es[level] = float(max((losses[k:].sum() + f * at) / ((n - k) + f), at))
    return var, es


def merged(parts: list, request) -> ScenarioRiskResult:
    """One run's result from its slices' (in trade order): cubes and per-trade figures
    stacked, P&L summed, VaR and ES of the sums."""
    first = parts[0]
    pnl = None if first.portfolio_pnl is None else np.sum([p.portfolio_pnl for p in parts], axis=0)
    var_levels = list(first.var) or list(request.var_levels) or [0.99]
    es_levels = list(first.expected_shortfall) or list(request.es_levels) or [0.975]
    var, es = tail_risk(pnl, var_levels, es_levels) if pnl is not None else (first.var, first.expected_shortfall)
    nodes: dict = {}
    for p in parts:
        for node in p.nodes:
            if node.path in nodes:
                held = nodes[node.path]
                nodes[node.path] = RiskNode(node.path, held.trades + node.trades, held.pnl + node.pnl, {}, {})
            else:
                nodes[node.path] = RiskNode(node.path, node.trades, node.pnl.copy(), {}, {})
    for path, node in nodes.items():
        v, e = tail_risk(node.pnl, var_levels, es_levels)
        nodes[path] = RiskNode(path, node.trades, node.pnl, v, e)

    def stack(name):
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return ScenarioRiskResult(
        trade_ids=[t for p in parts for t in p.trade_ids], scenario_labels=first.scenario_labels,
        components=first.components, base=np.concatenate([p.base for p in parts]),
        base_errors=[e for p in parts for e in p.base_errors], cube=stack("cube"),
        errors=[e for p in parts for e in p.errors], portfolio_pnl=pnl, var=var, expected_shortfall=es,
        trade_var=stack("trade_var"), trade_expected_shortfall=stack("trade_expected_shortfall"),
        failed_cells=sum(p.failed_cells for p in parts), compute_seconds=sum(p.compute_seconds for p in parts),
        priced_by=first.priced_by, market=first.market, blocks=sum(p.blocks for p in parts),
        nodes=[nodes[k] for k in sorted(nodes)], books=[b for p in parts for b in p.books],
        portfolio_id=first.portfolio_id,
    )
