"""RiskService: the VaR backtest stream (proto <-> domain) and its servicer.

Backtest is a bidirectional stream whose state is one
:class:`~pricegrid.server.service.backtest.Backtest`: the first message fixes the settings,
every message is answered by one BacktestResponse with the running result, and the first
bad message ends the stream with its status (INVALID_ARGUMENT naming the fields,
RESOURCE_EXHAUSTED over the caps) through the one error table, as any call's error does.

Where it runs: an open stream waiting for its next message holds no thread (a coroutine on
the loop). Each message is read, checked and added in the market-data capacity class (its
gate and the batch pool), one message of a stream at a time. A backtest message is cheap
(O(observations) numpy, microseconds for a day's message, a few milliseconds for the largest
allowed) but not microseconds at any size, so it stays off the event loop that the front
office's lean path shares; and the market-data class is the one for cheap non-pricing work
with a queue that waits, where the batch class would put a day's backtest behind
million-row pricing batches.

A first message naming a stored history (BacktestRequest.history) reads it from the store
in the same place and adds its days before the message's own, in pieces of the per-message
cap, the call's deadline and cancellation checked between pieces (a million stored days
take about 20 ms, about 150 ms with labels).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import math
import time
from dataclasses import dataclass

import grpc
import numpy as np

from pricegrid.server.domain import backtest as bt
from pricegrid.server.domain import risk as risk_measures
from pricegrid.server.domain import scenarios as sc
from pricegrid.server.domain import stresses
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, Violations, invalid, shown
from pricegrid.server.domain.instruments import SnapshotMarket
from pricegrid.server.domain.models import Measure
from pricegrid.server.rpc.admission import Lane, StreamGate
from pricegrid.server.rpc.interceptors import Undecodable, safe_deserializer, wrap_stream, wrap_unary
from pricegrid.server.rpc.observe import RpcObserver
from pricegrid.server.rpc import histories
from pricegrid.server.rpc import portfolios as pfs
from pricegrid.server.rpc.portfolios import PortfolioInputs, aggregate_tags, portfolio_inputs, sliced
from pricegrid.server.rpc import requests as req
from pricegrid.server.rpc.requests import column_length, doubles, unknown_enums
from pricegrid.server.rpc.responses import market_used, model_ref
from pricegrid.server.service import history
from pricegrid.server.service.backtest import Backtest, BacktestLimits
from pricegrid.server.service.pricing import PricingService, Watch
from pricegrid.server.service import taylor
from pricegrid.server.service.scenarios import Hierarchy, ScenarioRevaluer, ScenarioRun, bump_count, sensitivities
from pricegrid.server.service import worst_case as wc
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import risk_pb2 as rpb
from pricegrid.v1 import wire

SERVICE = "pricegrid.v1.RiskService"
_PARSE_BACKTEST = safe_deserializer(rpb.BacktestRequest)
_PARSE_SCENARIOS = safe_deserializer(rpb.RunScenarioRiskRequest)
#: the most P&L bytes one block of the cube carries (whole trades; one trade may exceed it)
BLOCK_BYTES = 4 << 20
_QUANTITIES = {int(q): q for q in sc.Quantity}
_KINDS = {int(k): k for k in sc.ShiftKind}
_SMILES = {0: sc.Smile.STICKY_STRIKE, **{int(x): x for x in sc.Smile}}
_CONVENTIONS = {0: bt.VarConvention.LOSS, **{int(c): c for c in bt.VarConvention}}


# ------------------------------------------------------------------ proto -> domain
def settings_of(msg: rpb.BacktestSettings, prefix: str = "settings.") -> bt.BacktestSettings:
    """The settings a message sends, the defaults where it leaves a field unset."""
    bad = Violations()
    unknown_enums(msg, prefix, bad)
    bad.raise_if_any()
    settings = bt.BacktestSettings(
        level=msg.level if msg.HasField("level") else bt.DEFAULT_LEVEL,
        window=msg.window if msg.HasField("window") else bt.DEFAULT_WINDOW,
        var_convention=_CONVENTIONS[msg.var_convention],
    )
    settings.violations(prefix).raise_if_any()
    return settings


# ------------------------------------------------------------------ domain -> proto
def _test(t: bt.LikelihoodRatio) -> rpb.LikelihoodRatioTest:
    msg = rpb.LikelihoodRatioTest(status=int(t.status), degrees_of_freedom=t.degrees_of_freedom, note=t.note)
    if t.statistic is not None:
        msg.statistic = t.statistic
        msg.p_value = t.p_value
    return msg


def settings_message(s: bt.BacktestSettings) -> rpb.BacktestSettings:
    return rpb.BacktestSettings(level=s.level, window=s.window, var_convention=int(s.var_convention))


def result_message(r: bt.BacktestResult) -> rpb.BacktestResponse:
    t, light = r.transitions, r.traffic_light
    return rpb.BacktestResponse(
        observations=r.observations,
        exceptions=r.exceptions,
        expected_exceptions=r.expected_exceptions,
        newest_exceptions=[rpb.BacktestException(index=e.index, label=e.label, pnl=e.pnl, var=e.var)
                           for e in r.newest_exceptions],
        kupiec_pof=_test(r.kupiec_pof),
        christoffersen_independence=_test(r.christoffersen_independence),
        conditional_coverage=_test(r.conditional_coverage),
        transitions=rpb.ExceptionTransitions(n00=t.n00, n01=t.n01, n10=t.n10, n11=t.n11),
        traffic_light=rpb.TrafficLight(
            zone=int(light.zone), window_observations=light.window_observations,
            window_exceptions=light.window_exceptions, cumulative_probability=light.cumulative_probability,
            yellow_from=light.yellow_from, red_from=light.red_from,
        ),
        settings=settings_message(r.settings),
    )


# ------------------------------------------------------------------ RunScenarioRisk
_prefixed = pfs.prefixed


def _tenors(values, path: str, bad: Violations) -> tuple[float, ...]:
    out = []
    for j, label in enumerate(values):
        try:
            out.append(sc.tenor_years(label))
        except ValueError as e:
            bad.add(f"{path}[{j}]", str(e))
    return tuple(out)


def scenario_set_of(msg: rpb.ScenarioSet, prefix: str = "scenarios.", stored_sets=None,
                    market=None) -> sc.ScenarioSet:
    """The domain's scenario set (its own checks run when it meets the snapshot), its named
    stresses added (``stored_sets`` finds a stored set by name or id; ``market``, the
    MarketDataService, reads a history's levels from stored snapshots)."""
    own = None
    if not (msg.stresses or msg.stress_targets) or msg.shifts or msg.labels or msg.HasField("history") or \
            column_length(msg.sizes, 8, f"{prefix}sizes"):
        own = _own_set(msg, prefix, market)
    if not (msg.stresses or msg.stress_targets):
        return own
    return _with_stresses(own, msg, prefix, stored_sets)


def _with_stresses(own, msg: rpb.ScenarioSet, prefix: str, stored_sets) -> sc.ScenarioSet:
    bad = Violations()
    targets, target_paths = stresses.check_targets([(t.factor, list(t.selectors)) for t in msg.stress_targets],
                                                   prefix, bad)
    if msg.stress_targets and not any(name in stresses.CATALOGUE for name in msg.stresses):
        bad.add(f"{prefix}stress_targets", "map the factors of catalogue stresses: no catalogue stress is named")
    if len(msg.stresses) > stresses.MAX_PARTS:
        bad.add(f"{prefix}stresses", f"{len(msg.stresses)} stresses; at most {stresses.MAX_PARTS}",
                Code.RESOURCE_EXHAUSTED)
        bad.raise_if_any()
    parts, seen = [], {}
    for j, name in enumerate(msg.stresses):
        path = f"{prefix}stresses[{j}]"
        if name in seen:
            bad.add(path, f"{name!r} repeats stresses[{seen[name]}]")
            continue
        seen[name] = j
        if name in stresses.CATALOGUE:
            part = stresses.catalogue_part(stresses.CATALOGUE[name], targets, target_paths, f"stresses[{j}]")
            if part is None:
                bad.add(path, f"{name!r}: stress_targets leave none of its factors "
                              f"({', '.join(stresses.CATALOGUE[name].moves)})")
            else:
                parts.append(part)
            continue
        record = stored_sets(name) if stored_sets is not None and name else None
        if record is None:
            bad.add(path, f"no stress {name!r}: neither in the catalogue ({', '.join(stresses.CATALOGUE)}) nor a "
                          "stored scenario set's name or id", Code.NOT_FOUND)
            continue
        with bad.check():
            stored = _own_set(rpb.ScenarioSet.FromString(record.content), f"{path}:")
            parts.append(stresses.Part(record.name, stored, tuple(f"stresses[{j}]" for _ in stored.shifts),
                                       f"stresses[{j}]"))
    bad.raise_if_any()
    smile = _SMILES.get(msg.smile, sc.Smile.STICKY_STRIKE)
    return stresses.combine(own, parts, smile)


def _own_set(msg: rpb.ScenarioSet, prefix: str, market=None) -> sc.ScenarioSet:
    """A set's own shifts and sizes (or history)."""
    bad = Violations()
    shifts = []
    for i, m in enumerate(msg.shifts):
        path = f"{prefix}shifts[{i}]"
        if m.quantity not in _QUANTITIES:
            bad.add(f"{path}.quantity", "required: one of " + ", ".join(q.name for q in sc.Quantity))
        if m.kind not in _KINDS:
            bad.add(f"{path}.kind", "required: one of " + ", ".join(k.name for k in sc.ShiftKind))
        which = m.WhichOneof("shape")
        if which == "buckets":
            shape = sc.Buckets(_tenors(m.buckets.tenors, f"{path}.buckets.tenors", bad), tuple(m.buckets.tenors))
        elif which == "grid":
            shape = sc.Grid(_tenors(m.grid.expiries, f"{path}.grid.expiries", bad), tuple(m.grid.moneyness))
        else:
            shape = sc.Parallel()
        shifts.append(sc.Shift(m.name, _QUANTITIES.get(m.quantity, sc.Quantity.SPOT), _KINDS.get(m.kind, sc.ShiftKind.ABSOLUTE),
                               tuple(m.selector), shape))
    unknown_enums(msg, prefix, bad)
    if msg.smile not in _SMILES:
        bad.add(f"{prefix}smile", "unknown value")
    sizes = None
    with bad.check():
        sizes = doubles(msg.sizes, f"{prefix}sizes")
    has_history = msg.HasField("history")
    if has_history and (msg.labels or (sizes is not None and sizes.size)):
        bad.add(f"{prefix}history", "with a history, leave labels and sizes empty: they come from it")
    bad.raise_if_any()
    components = sum(x.components for x in shifts)
    if has_history:
        h = msg.history
        if h.holding_period < 0:
            raise invalid(f"{prefix}history.holding_period", f"at least 1 date (got {h.holding_period})")
        kinds = [x.kind for x in shifts for _ in range(x.components)]
        dates = list(h.dates)
        if h.HasField("snapshots"):
            series = h.snapshots
            if dates or column_length(h.levels, 8, f"{prefix}history.levels"):
                raise invalid(f"{prefix}history.snapshots", "with snapshots, leave dates and levels empty: they "
                                                            "come from the snapshots")
            if market is None:
                raise ServiceError(Code.UNIMPLEMENTED, "this server reads no history from snapshots")
            records = history.series(market, list(series.ids), series.name, series.start, series.end,
                                     f"{prefix}history.snapshots")
            levels, dates = history.levels(market, records, shifts, prefix)
            levels = levels.reshape(-1)
        else:
            levels = doubles(h.levels, f"{prefix}history.levels")
        if components == 0 or levels.size % components:
            raise invalid(f"{prefix}history.levels", f"{levels.size} values for {components} components per date")
        values, labels = sc.historical_sizes(levels.reshape(-1, components), kinds, dates,
                                             holding=h.holding_period or 1, overlapping=not h.non_overlapping,
                                             prefix=f"{prefix}history.")
        return sc.ScenarioSet(tuple(shifts), values, labels, _SMILES[msg.smile], sizes_path="history.levels")
    labels = tuple(msg.labels)
    if sizes.size != components * len(labels):
        raise invalid(f"{prefix}sizes", f"{sizes.size} values; expected components x scenarios = "
                                        f"{components} x {len(labels)} = {components * len(labels)}")
    return sc.ScenarioSet(tuple(shifts), sizes.reshape(components, len(labels)), labels, _SMILES[msg.smile])


#: the most VaR (or ES) levels one run may ask for
MAX_LEVELS = 20


def _levels(values, default: float, path: str, bad: Violations) -> np.ndarray:
    if len(values) > MAX_LEVELS:
        bad.add(path, f"{len(values)} levels; at most {MAX_LEVELS}", Code.RESOURCE_EXHAUSTED)
        return np.asarray([default])
    levels = np.asarray(list(values) or [default], dtype=np.float64)
    for j, x in enumerate(levels):
        if not (np.isfinite(x) and 0.0 < x < 1.0 and 0.0 < 1.0 - x < 1.0):
            bad.add(f"{path}[{j}]", f"must be strictly between 0 and 1 (got {shown(x)})")
    return levels


@dataclass
class ScenarioInputs:
    """Everything a run needs, read from its request."""

    portfolio: PortfolioInputs
    scenarios: sc.ScenarioSet
    var_levels: np.ndarray
    es_levels: np.ndarray
    tags: list  # (name, values) to aggregate by, in order
    taylor: object = None  # TaylorOptions of a TAYLOR or HYBRID run; None: FULL
    offset: int = 0       # the slice's first trade in the portfolio (trade_start)
    total: int = 0        # the portfolio's trades


def _cube_only(request, bad: Violations) -> None:
    """With output CUBE the trailer holds its counts only: every option that only fills the
    trailer's aggregates is refused, each named (an input the run does not read is never
    ignored). The levels are read by a TAYLOR or HYBRID run's report (and HYBRID's tail)."""
    why = "an aggregate of the trailer, which output CUBE does not send: output AGGREGATES or BOTH"
    taylor = request.revaluation in _TAYLOR_MODES
    for name in ("trade_risk", "es_attribution", "incremental_es"):
        if getattr(request, name, False):
            bad.add(name, why)
    if len(request.aggregate_by):
        bad.add("aggregate_by", why)
    for name in ("var_levels", "es_levels"):
        if len(getattr(request, name)) and not taylor:
            bad.add(name, why + " (or a TAYLOR or HYBRID run, whose report reads them)")


def scenario_request(request, service: PricingService, max_cells: int, stored=None, stored_sets=None,
                     market=None) -> ScenarioInputs:
    """Everything a run needs, every violation of the request at once (fields named from the
    request's root); ``stored`` and ``stored_sets`` find a stored portfolio and a stored
    scenario set by name or id."""
    bad = Violations()
    inputs = portfolio_inputs(request, service, bad, stored)
    scenarios = None
    with bad.check():
        scenarios = scenario_set_of(request.scenarios, stored_sets=stored_sets, market=market)
    var_levels = _levels(request.var_levels, 0.99, "var_levels", bad)
    es_levels = _levels(request.es_levels, 0.975, "es_levels", bad)
    unknown_enums(request, "", bad)
    if getattr(request, "incremental_es", False) and not request.es_attribution:
        bad.add("incremental_es", "comes with es_attribution: set both")
    if request.output == rpb.SCENARIO_OUTPUT_CUBE:
        _cube_only(request, bad)
    tags = []
    offset = total = 0
    if inputs is not None:
        start, stop = getattr(request, "trade_start", 0), getattr(request, "trade_stop", 0)
        if (start or stop) and getattr(request, "es_attribution", False):
            bad.add("es_attribution", "a slice (trade_start, trade_stop) has no share of the whole portfolio's "
                                      "tail: run the attribution on the whole portfolio")
        inputs, offset, total = sliced(inputs, start, stop, bad)
        rows = inputs.rows
        if scenarios is not None:
            n = scenarios.scenarios
            per_trade, why = n, f"{n:,} scenarios"
            if getattr(request, "es_attribution", False):  # the tail pass: at most what the ES levels read
                ok = [a for a in es_levels if np.isfinite(a) and 0.0 < a < 1.0]
                tail = taylor.tail_needed(n, ok) if len(ok) == len(es_levels) else n
                per_trade += tail
                why += f" + {tail:,} tail scenarios (es_attribution)"
            if getattr(request, "incremental_es", False):  # a second full pass
                per_trade += n
                why += f" + {n:,} (incremental_es)"
            if rows * per_trade > max_cells:
                bad.add("scenarios.labels", f"{rows:,} trades x ({why}) = {rows * per_trade:,} revaluations; at "
                                            f"most {max_cells:,}", Code.RESOURCE_EXHAUSTED)
        tags = aggregate_tags(inputs, request.aggregate_by, bad)
    taylor_options = _taylor_options(request, scenarios, inputs.rows if inputs is not None else None,
                                     service.limits.max_rows, max_cells, bad)
    bad.raise_if_any()
    return ScenarioInputs(inputs, scenarios, var_levels, es_levels, tags, taylor_options, offset, total)


_TAYLOR_MODES = (rpb.REVALUATION_MODE_TAYLOR, rpb.REVALUATION_MODE_HYBRID)


def _taylor_options(request, scenarios, rows, max_rows: int, max_cells: int, bad: Violations):
    """The TAYLOR or HYBRID settings (None for FULL), checked against the scenario set, and
    their costs bounded before anything is priced: trades x bumped scenarios and the
    expansion's terms x scenarios at most max_cells, trades x scenarios x terms at most
    TAYLOR_WORK x max_cells, the bumped scenarios at most max_rows."""
    mode = request.revaluation
    if mode not in _TAYLOR_MODES:
        if request.HasField("taylor"):
            bad.add("taylor", "settings of the TAYLOR and HYBRID modes; this run is FULL (set revaluation)")
        return None
    t = request.taylor
    hybrid = mode == rpb.REVALUATION_MODE_HYBRID
    for name in ("es_attribution", "incremental_es"):
        if getattr(request, name):
            bad.add(name, "FULL only: the attribution revalues the run's tail (or the whole cube) in full")
    for i, h in enumerate(t.bumps):
        if not (math.isfinite(h) and h > 0):
            bad.add(f"taylor.bumps[{i}]", f"must be finite and > 0 (got {h!r})")
    if hybrid:
        if t.check_scenarios:
            bad.add("taylor.check_scenarios", "TAYLOR only: a HYBRID run reports the error on its tail")
        if t.check:
            bad.add("taylor.check", "TAYLOR only: a HYBRID run reports the error on its tail")
    else:
        if t.hybrid_tail:
            bad.add("taylor.hybrid_tail", "HYBRID only")
        if t.check and not t.check_scenarios:
            bad.add("taylor.check", "no check_scenarios to choose")
    if scenarios is None:
        return None
    shifts, n = scenarios.shifts, scenarios.scenarios
    if t.bumps and len(t.bumps) != len(shifts):
        bad.add("taylor.bumps", f"{len(t.bumps)} bump sizes for {len(shifts)} shifts: one per shift, or none for "
                                "the defaults")
    for i, x in enumerate(shifts):
        if x.kind == sc.ShiftKind.FIXED:  # (a stress's shift is named by the stress)
            origin = scenarios.origins[i] if i < len(scenarios.origins) and scenarios.origins[i] else ""
            bad.add(f"scenarios.{origin}" if origin else f"scenarios.shifts[{i}].kind",
                    f"a FIXED shift ({x.name!r}) has no Taylor expansion: revalue it in FULL")
    if hybrid and not 0 <= t.hybrid_tail <= n:
        bad.add("taylor.hybrid_tail", f"0 (the default) or 1 to the number of scenarios ({n:,}); got {t.hybrid_tail}")
    if not hybrid and not 0 <= t.check_scenarios <= n:
        bad.add("taylor.check_scenarios", f"0 to the number of scenarios ({n:,}); got {t.check_scenarios}")
    bumps = bump_count(shifts, "central", t.cross_gamma)
    width = taylor.terms(shifts, t.cross_gamma)
    what = "taylor.cross_gamma" if t.cross_gamma else "scenarios.shifts"
    if rows is not None and (rows * bumps > max_cells or bumps > max_rows):
        bad.add(what, f"{rows:,} trades x {bumps:,} bumped scenarios = {rows * bumps:,} revaluations for the "
                      f"derivatives; at most {max_cells:,} (and {max_rows:,} scenarios)", Code.RESOURCE_EXHAUSTED)
    elif width * n > max_cells or (rows is not None and rows * n * width > taylor.TAYLOR_WORK * max_cells):
        bad.add(what, f"{width:,} terms x {n:,} scenarios (x {rows or 0:,} trades): over the expansion's caps "
                      f"({max_cells:,} terms x scenarios, {taylor.TAYLOR_WORK * max_cells:,} with the trades)",
                Code.RESOURCE_EXHAUSTED)
    return taylor.TaylorOptions(hybrid=hybrid, bumps=tuple(t.bumps), cross=t.cross_gamma, tail=int(t.hybrid_tail),
                                check=0 if hybrid else int(t.check_scenarios),
                                check_tail=t.check == rpb.TAYLOR_CHECK_TAIL)


def _column(values: np.ndarray) -> cpb.DoubleColumn:
    return cpb.DoubleColumn(raw=np.ascontiguousarray(values, dtype="<f8").tobytes())


_BLOCK = rpb.RunScenarioRiskResponse.DESCRIPTOR.fields_by_name["block"].number
_PNL = {f.name: f.number for f in rpb.ScenarioPnlBlock.DESCRIPTOR.fields}


def _block_message(block, float32: bool, offset: int = 0) -> bytes:
    """A block's RunScenarioRiskResponse, written as wire chunks: the P&L's bytes are copied
    once, into the message (the generated classes would copy them four times). ``offset``:
    a slice's first trade in the portfolio (its trades keep the portfolio's numbering)."""
    pnl = np.ascontiguousarray(block.pnl, dtype="<f4" if float32 else "<f8")
    chunks = (wire.field_varint(_PNL["trade_start"], block.start + offset)
              + wire.field_varint(_PNL["trade_stop"], block.stop + offset)
              + wire.field_varint(_PNL["cube_type"], rpb.CUBE_TYPE_FLOAT32 if float32 else rpb.CUBE_TYPE_FLOAT64))
    for e in block.errors:
        chunks += wire.field_bytes(_PNL["errors"], rpb.ScenarioRowError(
            trade=e.trade + offset, scenario=e.scenario, code=e.code, field=e.field,
            message=e.message).SerializeToString())
    chunks += wire.field_bytes(_PNL["pnl"], pnl)
    return b"".join(wire.field_message(_BLOCK, chunks))


class _ScenarioCall:
    """One run's state between its messages."""

    def __init__(self, run: ScenarioRun, output: int, cube_type: int, trades: int):
        self.run = run
        self.cube = output in (rpb.SCENARIO_OUTPUT_CUBE, rpb.SCENARIO_OUTPUT_BOTH)
        self.aggregates = output != rpb.SCENARIO_OUTPUT_CUBE
        self.float32 = cube_type == rpb.CUBE_TYPE_FLOAT32
        self.trades = trades
        self.t0 = time.perf_counter()
        self.first = None  # the first block's message, computed before the header
        self.taylor = None  # the TaylorRun of a TAYLOR or HYBRID run
        self.offset = 0  # a slice's first trade in the portfolio
        self.trace = None  # the call's rpc.tracing.CallTrace (None: tracing off)


def _span(trace, name: str, attributes=None):
    """A span of the call's trace, current in this thread while open (the chunks priced in
    it are its children); nothing with tracing off."""
    return contextlib.nullcontext() if trace is None else trace.span(name, attributes, current=True)


# ------------------------------------------------------------------ named scenario sets
def stress_catalogue() -> rpb.ListStressesResponse:
    out = rpb.ListStressesResponse(notes=stresses.__doc__.strip())
    for s in stresses.CATALOGUE.values():
        out.stresses.append(rpb.Stress(name=s.name, title=s.title, window=s.window, description=s.description,
                                       moves=[rpb.StressMove(factor=f, sizes=list(v)) for f, v in s.moves.items()],
                                       sources=list(s.sources)))
    for f in stresses.FACTORS.values():
        tenors = list(f.shape.labels) if isinstance(f.shape, sc.Buckets) else []
        out.factors.append(rpb.StressFactor(name=f.name, quantity=int(f.quantity), kind=int(f.kind), tenors=tenors,
                                            default_selectors=list(f.selector), description=f.description))
    return out


def put_scenario_set(request: rpb.PutScenarioSetRequest, store, now) -> rpb.PutScenarioSetResponse:
    bad = Violations()
    with bad.check():
        pfs.pf.check_name(request.name)
    if request.name in stresses.CATALOGUE:
        bad.add("name", f"{request.name!r} is a catalogue stress's name")
    if len(request.description) > 4096:
        bad.add("description", "at most 4,096 characters")
    m = request.scenario_set
    if m.stresses or m.stress_targets:
        bad.add("scenario_set.stresses", "a stored set holds its own shifts and sizes: it may not name stresses")
    if m.smile:
        bad.add("scenario_set.smile", "the smile is the run's: leave it unset")
    scenarios = None
    if not bad:
        with bad.check():
            scenarios = scenario_set_of(m, prefix="scenario_set.")
            scenarios.validate(None, prefix="scenario_set.")
    bad.raise_if_any()
    content = m.SerializeToString(deterministic=True)
    if len(content) > pfs.pf.MAX_PORTFOLIO_BYTES:
        raise invalid("scenario_set", f"{len(content):,} bytes; at most {pfs.pf.MAX_PORTFOLIO_BYTES:,}",
                      code=Code.RESOURCE_EXHAUSTED)
    record = pfs.pf.StoredScenarioSet(pfs.pf.content_id(request.name, content), request.name, request.description,
                                      now(), scenarios.scenarios, scenarios.components, content)
    created = store.put_scenario_set(record)
    if not created:
        record = store.get_scenario_set(record.set_id) or record
    return rpb.PutScenarioSetResponse(scenario_set=set_message(record, with_content=False), created=created)


def set_message(record, *, with_content: bool) -> rpb.StoredScenarioSet:
    msg = rpb.StoredScenarioSet(id=record.set_id, name=record.name, description=record.description,
                                stored_at=pfs.rfc3339(record.stored_at), scenarios=record.scenarios,
                                components=record.components)
    if with_content and record.content is not None:
        msg.scenario_set.ParseFromString(record.content)
    return msg


# ------------------------------------------------------------------ ParametricVar
_PARAMETRIC = {0: risk_measures.ParametricMethod.DELTA_NORMAL,
               rpb.PARAMETRIC_METHOD_DELTA_NORMAL: risk_measures.ParametricMethod.DELTA_NORMAL,
               rpb.PARAMETRIC_METHOD_DELTA_GAMMA_NORMAL: risk_measures.ParametricMethod.DELTA_GAMMA_NORMAL,
               rpb.PARAMETRIC_METHOD_CORNISH_FISHER: risk_measures.ParametricMethod.CORNISH_FISHER}
#: the domain's argument names -> the request's fields
_PARAMETRIC_FIELDS = {"delta": "deltas", "gamma": "gammas", "covariance": "covariance", "level": "levels"}
#: the most factors one request may send (the covariance is k x k, the gammas b x k x k)
MAX_FACTORS = 2_000
MAX_PARAMETRIC_VALUES = 20_000_000


def _as_fields_of(exc: ServiceError, renames: dict) -> ServiceError:
    """A ServiceError of the scenario run a Sensitivities or WorstCase request is read as,
    its fields named as that request has them: ``renames`` (the run's field -> the
    request's), else the run's scenarios.X as the request's own X."""
    def name(f: str) -> str:
        if f in renames:
            return renames[f]
        return f[len("scenarios."):] if f.startswith("scenarios.") else f

    violations = [FieldViolation(name(v.field), v.description) for v in exc.violations]
    return ServiceError(exc.code, "; ".join(f"{v.field}: {v.description}" for v in violations) or exc.message,
                        violations)


def _renamed(exc: ServiceError) -> ServiceError:
    def name(f: str) -> str:
        head, bracket, rest = f.partition("[")
        return _PARAMETRIC_FIELDS.get(head, head) + bracket + rest

    violations = [FieldViolation(name(v.field), v.description) for v in exc.violations]
    return ServiceError(exc.code, "; ".join(f"{v.field}: {v.description}" for v in violations) or exc.message,
                        violations)


def parametric_var(request: rpb.ParametricVarRequest) -> rpb.ParametricVarResponse:
    bad = Violations()
    unknown_enums(request, "", bad)
    factors = list(request.factors)
    k = len(factors)
    if not k:
        bad.add("factors", "at least one risk factor")
    elif len(set(factors)) != k:
        bad.add("factors", "names must be unique")
    elif k > MAX_FACTORS:
        bad.add("factors", f"{k:,} factors; at most {MAX_FACTORS:,}", Code.RESOURCE_EXHAUSTED)
    books = list(request.books) or ["portfolio"]
    b = len(books)
    sizes = {"covariance": column_length(request.covariance, 8, "covariance"),
             "deltas": column_length(request.deltas, 8, "deltas"),
             "gammas": column_length(request.gammas, 8, "gammas")}
    if sum(sizes.values()) > MAX_PARAMETRIC_VALUES:
        bad.add("gammas", f"{sum(sizes.values()):,} numbers; at most {MAX_PARAMETRIC_VALUES:,}", Code.RESOURCE_EXHAUSTED)
    bad.raise_if_any()
    cov, deltas, gammas = (doubles(getattr(request, n), n) for n in ("covariance", "deltas", "gammas"))
    if cov.size != k * k:
        bad.add("covariance", f"{cov.size} values; expected factors x factors = {k} x {k}")
    if deltas.size != b * k:
        bad.add("deltas", f"{deltas.size} values; expected books x factors = {b} x {k}")
    if gammas.size not in (0, k * k, b * k * k):
        bad.add("gammas", f"{gammas.size} values; expected {k} x {k} (every book) or {b} x {k} x {k}")
    bad.raise_if_any()
    method = _PARAMETRIC[request.method]
    d = deltas.reshape(b, k)
    s = cov.reshape(k, k)
    g = None if gammas.size == 0 else gammas.reshape((k, k) if gammas.size == k * k else (b, k, k))
    if g is not None and g.ndim == 2 and b > 1:
        g = np.broadcast_to(g, (b, k, k))
    levels = list(request.levels) or [0.99]
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is answered below, naming the inputs
            var = np.asarray(risk_measures.parametric_var(method, d, s, gamma=g, level=levels)).reshape(len(levels), b)
            moments = risk_measures.delta_gamma_moments(
                d, s, g if method != risk_measures.ParametricMethod.DELTA_NORMAL else None)
    except ServiceError as exc:
        raise _renamed(exc) from None
    mean, variance, skew, kurt = (np.broadcast_to(np.asarray(x, dtype=np.float64), (b,))
                                  for x in (moments.mean, moments.variance, moments.skewness, moments.excess_kurtosis))
    overflow = ~(np.isfinite(var).all(axis=0) & np.isfinite(mean) & np.isfinite(variance))
    if overflow.any():  # finite inputs whose moments overflow: no number to answer with
        i = int(np.flatnonzero(overflow)[0])
        what = (f"the P&L's moments of book {books[i]!r} overflow for these deltas and covariances"
                f" (variance {float(variance[i])!r}, VaR {float(var[0, i])!r})")
        raise ServiceError(Code.OUT_OF_RANGE, f"deltas, covariance: {what}",
                           [FieldViolation("deltas", what), FieldViolation("covariance", what)])
    out = rpb.ParametricVarResponse(method=int(request.method) or rpb.PARAMETRIC_METHOD_DELTA_NORMAL)
    for i, name in enumerate(books):
        out.books.add(book=name, var=[rpb.RiskAtLevel(level=lv, value=float(var[j, i])) for j, lv in enumerate(levels)],
                      mean=float(mean[i]), standard_deviation=float(np.sqrt(variance[i])),
                      skewness=float(skew[i]) if np.isfinite(skew[i]) else 0.0,
                      excess_kurtosis=float(kurt[i]) if np.isfinite(kurt[i]) else 0.0)
    return out


# ------------------------------------------------------------------ Sensitivities
_SCHEMES = {0: "central", rpb.DIFFERENCE_SCHEME_CENTRAL: "central", rpb.DIFFERENCE_SCHEME_FORWARD: "forward",
            rpb.DIFFERENCE_SCHEME_BACKWARD: "backward"}


def sensitivities_response(request: rpb.SensitivitiesRequest, pricing: PricingService, max_cells: int,
                           should_continue=None, stored=None) -> rpb.SensitivitiesResponse:
    # the portfolio as a scenario run reads it (any of its three forms); the shifts as a set's
    run = rpb.RunScenarioRiskRequest(trade_ids=request.trade_ids, stored_portfolio=request.stored_portfolio,
                                     snapshot_id=request.snapshot_id)
    for name in ("portfolio", "quantity", "books"):
        if request.HasField(name):
            getattr(run, name).CopyFrom(getattr(request, name))
    run.scenarios.shifts.extend(request.shifts)
    run.scenarios.smile = request.smile
    bad = Violations()
    unknown_enums(request, "", bad)
    bad.raise_if_any()
    shift_set = scenario_set_of(rpb.ScenarioSet(shifts=request.shifts, smile=request.smile), prefix="")
    comps = shift_set.components
    scheme = _SCHEMES[request.scheme]
    bumped = bump_count(shift_set.shifts, scheme, request.cross_gamma)
    what = "cross_gamma" if request.cross_gamma else "shifts"
    if comps * bumped > max_cells or bumped > pricing.limits.max_rows:  # the bump set's sizes, before building them
        raise invalid(what, f"{comps:,} components x {bumped:,} bumped scenarios; at most {max_cells:,} sizes and "
                            f"{pricing.limits.max_rows:,} scenarios", code=Code.RESOURCE_EXHAUSTED)
    labels = [f"s{j}" for j in range(2 * comps)]
    run.scenarios.labels.extend(labels)
    run.scenarios.sizes.values.extend([0.0] * (comps * len(labels)))
    try:
        inputs = scenario_request(run, pricing, max_cells, stored)
    except ServiceError as exc:  # named as a SensitivitiesRequest has them
        raise _as_fields_of(exc, {"scenarios.labels": what}) from None
    portfolio = inputs.portfolio
    if portfolio.rows * bumped > max_cells:
        raise invalid(what, f"{portfolio.rows:,} trades x {bumped:,} bumped scenarios = {portfolio.rows * bumped:,} "
                            f"revaluations; at most {max_cells:,}", code=Code.RESOURCE_EXHAUSTED)
    result = sensitivities(ScenarioRevaluer(pricing), portfolio.books, list(shift_set.shifts), list(request.bumps),
                           scheme, shift_set.smile, should_continue=should_continue, cross=request.cross_gamma)
    out = rpb.SensitivitiesResponse(trade_ids=portfolio.trade_ids, components=result.components,
                                    delta=_column(result.delta.ravel()), gamma=_column(result.gamma.ravel()),
                                    portfolio_delta=_column(np.nansum(result.delta, axis=0)),
                                    portfolio_gamma=_column(np.nansum(result.gamma, axis=0)))
    if result.cross_gamma is not None:
        ok = np.isfinite(result.cross_gamma).all(axis=(1, 2))
        out.cross_gamma.CopyFrom(_column(result.cross_gamma.ravel()))
        out.portfolio_cross_gamma.CopyFrom(_column(result.cross_gamma[ok].sum(axis=0).ravel()))
    out.errors.extend(rpb.ScenarioRowError(trade=e.trade, scenario=e.scenario, code=e.code, field=e.field,
                                           message=e.message) for e in result.errors[:1000])
    if result.priced_by is not None:
        out.priced_by.CopyFrom(model_ref(result.priced_by))
    if result.market_used is not None:
        out.market.CopyFrom(market_used(result.market_used))
    return out


def _taylor_report(r: taylor.TaylorReport, a) -> rpb.TaylorReport:
    def at(levels, values):
        return [rpb.RiskAtLevel(level=lv, value=v) for lv, v in zip(levels, values)]

    msg = rpb.TaylorReport(
        revaluation=rpb.REVALUATION_MODE_HYBRID if r.hybrid else rpb.REVALUATION_MODE_TAYLOR,
        bumps=[float(x) for x in r.bumps], bump_scenarios=r.bump_scenarios, revalued=[int(i) for i in r.revalued],
        taylor_pnl=_column(r.taylor_pnl), full_pnl=_column(r.full_pnl),
        taylor_var=at(a.var_levels, r.taylor_var), taylor_expected_shortfall=at(a.es_levels, r.taylor_es),
        revalued_var=at(a.var_levels, r.revalued_var), revalued_expected_shortfall=at(a.es_levels, r.revalued_es))
    if r.max_abs_error is not None:
        msg.max_abs_error, msg.rms_error = r.max_abs_error, r.rms_error
    return msg


def _step(steps) -> bool:
    """One step of a generator of work; False once it is done."""
    return next(steps, StopIteration) is not StopIteration


# ------------------------------------------------------------------ WorstCase
#: the longest scenario label a WorstCase request may give
MAX_LABEL = 128


def worst_case_question(request: rpb.WorstCaseRequest) -> wc.WorstCaseQuestion:
    which = request.WhichOneof("question")
    return wc.WorstCaseQuestion(
        level=request.level if which == "level" else (None if which == "loss" else 0.99),
        loss=request.loss if which == "loss" else None,
        dof=request.dof if request.HasField("dof") else None,
        max_iterations=request.max_iterations if request.HasField("max_iterations") else 20,
        tolerance=request.tolerance if request.HasField("tolerance") else 1e-9,
        max_level=request.max_level if request.HasField("max_level") else 1.0 - 1e-12,
        radius_steps=request.radius_steps if request.HasField("radius_steps") else 30,
        label=request.label if request.label.strip() else "worst-case",
    )


def worst_case_response(request: rpb.WorstCaseRequest, pricing: PricingService, max_cells: int,
                        should_continue=None, stored=None) -> rpb.WorstCaseResponse:
    """Every violation of the request at once (the portfolio as a scenario run reads it, the
    factors, the covariance, the question, the cost), then the search."""
    bad = Violations()
    unknown_enums(request, "", bad)
    shift_set = None
    with bad.check():
        shift_set = scenario_set_of(rpb.ScenarioSet(shifts=request.shifts, smile=request.smile), prefix="")
    k = None
    if shift_set is not None:
        k = shift_set.components
        if k == 0:
            bad.add("shifts", "at least one factor: a shift")
            k = None
        elif k > wc.MAX_FACTORS:
            bad.add("shifts", f"{k} factors (components); at most {wc.MAX_FACTORS}", Code.RESOURCE_EXHAUSTED)
            k = None
        for i, x in enumerate(shift_set.shifts):
            if x.kind == sc.ShiftKind.FIXED or x.quantity == sc.Quantity.TIME:
                bad.add(f"shifts[{i}].kind", "a factor moves a value: absolute, relative or log, not fixed or a "
                                             "time roll")
    question = worst_case_question(request)
    question.violations(bad)
    if len(request.label) > MAX_LABEL:
        bad.add("label", f"{len(request.label)} characters; at most {MAX_LABEL}")
    covariance = None
    with bad.check():
        n = column_length(request.covariance, 8, "covariance")
        if k is not None:
            if n != k * k:
                raise invalid("covariance", f"{n} values; expected factors x factors = {k} x {k}")
            covariance = risk_measures.check_covariance(doubles(request.covariance, "covariance").reshape(k, k), k)
            if not np.any(covariance):
                raise invalid("covariance", "zero: no factor moves")
    # the portfolio as a scenario run reads it (any of its three forms; the shifts checked above)
    run = rpb.RunScenarioRiskRequest(trade_ids=request.trade_ids, stored_portfolio=request.stored_portfolio,
                                     snapshot_id=request.snapshot_id)
    for name in ("portfolio", "quantity", "books"):
        if request.HasField(name):
            getattr(run, name).CopyFrom(getattr(request, name))
    run.scenarios.labels.append("w")
    inputs = None
    try:
        inputs = scenario_request(run, pricing, max_cells, stored)
    except ServiceError as exc:  # named as a WorstCaseRequest has them (its cost: max_iterations)
        bad.extend(_as_fields_of(exc, {"scenarios.labels": "max_iterations"}))
    if inputs is not None and k is not None and not bad:
        rows = inputs.portfolio.rows
        cost = wc.planned_revaluations(rows, k, question)
        per_pass = wc.MAX_STARTS * (k * k + k + 1)
        if per_pass > pricing.limits.max_rows:
            bad.add("shifts", f"{k} factors make passes of up to {per_pass:,} scenarios; at most "
                              f"{pricing.limits.max_rows:,} (the server's max_rows)", Code.RESOURCE_EXHAUSTED)
        if cost > max_cells:
            bad.add("max_iterations", f"{rows:,} trades x {k} factors x {question.max_iterations} iterations"
                    + (f" x {question.radius_steps + 1} radii" if question.reverse else "")
                    + f" can take {cost:,} revaluations; at most {max_cells:,}", Code.RESOURCE_EXHAUSTED)
    bad.raise_if_any()
    portfolio = inputs.portfolio
    result = wc.worst_case(ScenarioRevaluer(pricing), portfolio.books, shift_set.shifts, shift_set.smile,
                           covariance, question, rows=portfolio.rows, trade_ids=portfolio.trade_ids,
                           block_cells=BLOCK_BYTES // 8, should_continue=should_continue)
    scenario = rpb.ScenarioSet(shifts=request.shifts, labels=list(result.scenario.labels),
                               sizes=_column(result.move), smile=request.smile)
    out = rpb.WorstCaseResponse(
        trade_ids=portfolio.trade_ids, components=result.components, move=_column(result.move), pnl=result.pnl,
        trade_pnl=_column(result.trade_pnl), radius2=result.radius2, radius_level=result.radius_level,
        bound2=result.bound2, dof=result.dof, delta_gamma_move=_column(result.delta_gamma_move),
        delta_gamma_pnl=result.delta_gamma_pnl, iterations=result.iterations, revaluations=result.revaluations,
        converged=result.converged, achieved_tolerance=result.achieved_tolerance, reached=result.reached,
        scenario=scenario, radius_steps=result.radius_steps)
    if result.priced_by is not None:
        out.priced_by.CopyFrom(model_ref(result.priced_by))
    if result.market_used is not None:
        out.market.CopyFrom(market_used(result.market_used))
    return out


def _watch(call) -> Watch:
    """The call's deadline and cancellation, shared with the kernels: the caller going away
    (or the deadline) stops a run between blocks and inside them."""
    remaining = call.time_remaining()
    watch = Watch(None if remaining is None or remaining > 1e8 else remaining, call.is_active, trace=call.trace)
    if not call.add_callback(watch.cancel):  # already over
        watch.cancel()
    return watch


# ------------------------------------------------------------------ servicer
class _Stream:
    """One Backtest stream's state: its running backtest, once the first message came, and
    whether its var_convention came from a stored history (a later message's settings may
    then leave it unset)."""

    __slots__ = ("backtest", "convention_from_history")

    def __init__(self):
        self.backtest: Backtest | None = None
        self.convention_from_history = False


class RiskServicer:
    def __init__(self, limits: BacktestLimits, lane: Lane, *, pricing: PricingService | None = None,
                 batch_lane: Lane | None = None, max_scenario_cells: int = 50_000_000,
                 default_deadline_s: float = 300.0, portfolios=None, clock=None, market=None):
        self.limits = limits
        self.lane = lane  # where each message is read and added (see the module docstring)
        self.pricing = pricing  # None: no RunScenarioRisk
        self.batch_lane = batch_lane  # where a scenario run's blocks are computed, one at a time
        self.max_scenario_cells = max_scenario_cells
        self.default_deadline_s = default_deadline_s
        self.portfolios = portfolios  # a PortfolioStore; None: no stored portfolios
        self.stored = pfs.finder(portfolios.get_portfolio, portfolios.latest_portfolio) \
            if portfolios is not None else None
        self.stored_sets = pfs.finder(portfolios.get_scenario_set, portfolios.latest_scenario_set) \
            if portfolios is not None else None
        self.stored_histories = pfs.finder(portfolios.get_backtest_history, portfolios.latest_backtest_history) \
            if portfolios is not None else None
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.market = market  # the MarketDataService: histories read from stored snapshots

    async def RunScenarioRisk(self, requests, context, call, counter):
        """Header, blocks, trailer; each part computed in the batch class (its gate and
        pool), one at a time, so that runs share the batch capacity block by block and the
        deadline and the caller's going away are checked between blocks (and inside the
        kernels, through the call's watch)."""
        lane = self.batch_lane
        async for data in requests:  # a unary request: exactly one
            counter[0] += 1
            refused = lane.too_large(len(data), "a RunScenarioRisk request")
            if refused is not None:
                raise refused
            watch = _watch(call)
            state, header = await lane.run(call, self._scenario_start, data, watch)
            yield header
            # one block ahead: the next block is computed while this one is written (a
            # block's message is its own bytes, so the next one may reuse the arrays)
            pending = asyncio.ensure_future(lane.run(call, self._scenario_block, state))
            try:
                while True:
                    part = await pending
                    if part is None:
                        break
                    pending = asyncio.ensure_future(lane.run(call, self._scenario_block, state))
                    if part:
                        yield part
            finally:
                if not pending.done():
                    watch.cancel()  # the caller went away: the block being computed stops in its kernel
                    pending.cancel()
            if state.run.reprice is not None:  # the ES attribution's passes, a block per turn of the lane
                steps = state.run.attribution_steps()
                try:
                    while await lane.run(call, _step, steps):
                        pass
                except BaseException:
                    watch.cancel()
                    raise
            yield await lane.run(call, self._scenario_trailer, state)

    def Sensitivities(self, request, call, rid):
        if self.pricing is None:
            raise ServiceError(Code.UNIMPLEMENTED, "this server runs no scenario risk")
        response = sensitivities_response(request, self.pricing, self.max_scenario_cells, _watch(call), self.stored)
        return response, len(response.trade_ids), len(response.errors)

    # ---------------------------------------------------------------- named scenario sets
    def ListStresses(self, request, call, rid):
        response = stress_catalogue()
        return response, len(response.stresses), 0

    def PutScenarioSet(self, request, call, rid):
        response = put_scenario_set(request, self._store(), self.clock)
        return response, response.scenario_set.scenarios, 0

    def GetScenarioSet(self, request, call, rid):
        self._store()
        record = pfs.lookup(self.stored_sets, request.scenario_set, "scenario_set", what="scenario set")
        return rpb.GetScenarioSetResponse(scenario_set=set_message(record, with_content=True)), record.scenarios, 0

    def ListScenarioSets(self, request, call, rid):
        limit = request.limit or 100
        if not 1 <= limit <= 1000:
            raise invalid("limit", f"1-1000 (got {request.limit})")
        found = self._store().list_scenario_sets(request.name, limit)
        return rpb.ListScenarioSetsResponse(scenario_sets=[set_message(r, with_content=False) for r in found]), \
            len(found), 0

    def DeleteScenarioSet(self, request, call, rid):
        store = self._store()
        if not request.id:
            raise invalid("id", "required: the id of the version to delete")
        deleted = store.delete_scenario_set(request.id)
        return rpb.DeleteScenarioSetResponse(deleted=deleted), int(deleted), 0

    # ---------------------------------------------------------------- stored backtest histories
    def _history_store(self):
        if self.portfolios is None:
            raise ServiceError(Code.UNIMPLEMENTED, "this server stores no backtest histories")
        return self.portfolios

    def PutBacktestHistory(self, request, call, rid):
        response = histories.put_history(request, self._history_store(), self.clock, self.limits)
        return response, response.backtest_history.observations, 0

    def GetBacktestHistory(self, request, call, rid):
        self._history_store()
        record = pfs.lookup(self.stored_histories, request.backtest_history, "backtest_history",
                            what="backtest history")
        return rpb.GetBacktestHistoryResponse(backtest_history=histories.history_message(record, with_content=True)), \
            record.observations, 0

    def ListBacktestHistories(self, request, call, rid):
        response = histories.list_histories(request, self._history_store())
        return response, len(response.backtest_histories), 0

    def DeleteBacktestHistory(self, request, call, rid):
        store = self._history_store()
        if not request.id:
            raise invalid("id", "required: the id of the version to delete")
        deleted = store.delete_backtest_history(request.id)
        return rpb.DeleteBacktestHistoryResponse(deleted=deleted), int(deleted), 0

    # ---------------------------------------------------------------- stored portfolios
    def _store(self):
        if self.portfolios is None or self.pricing is None:
            raise ServiceError(Code.UNIMPLEMENTED, "this server stores no portfolios")
        return self.portfolios

    def PutPortfolio(self, request, call, rid):
        response = pfs.put_portfolio(request, self.pricing, self._store(), self.clock)
        return response, response.portfolio.trades, 0

    def GetPortfolio(self, request, call, rid):
        store = self._store()
        record = pfs.lookup(self.stored, request.portfolio, "portfolio")
        return rpb.GetPortfolioResponse(portfolio=pfs.stored_message(record, with_content=True)), record.trades, 0

    def ListPortfolios(self, request, call, rid):
        response = pfs.list_portfolios(request, self._store())
        return response, len(response.portfolios), 0

    def DeletePortfolio(self, request, call, rid):
        store = self._store()
        if not request.id:
            raise invalid("id", "required: the id of the version to delete")
        deleted = store.delete_portfolio(request.id)
        return rpb.DeletePortfolioResponse(deleted=deleted), int(deleted), 0

    def WorstCase(self, request, call, rid):
        if self.pricing is None:
            raise ServiceError(Code.UNIMPLEMENTED, "this server runs no scenario risk")
        response = worst_case_response(request, self.pricing, self.max_scenario_cells, _watch(call), self.stored)
        return response, len(response.trade_ids), 0

    def ParametricVar(self, request, call, rid):
        response = parametric_var(request)
        return response, len(response.books), 0

    def _scenario_start(self, data: bytes, watch: Watch):
        with _span(watch.trace, "scenario start"):
            return self._scenario_started(data, watch)

    def _scenario_started(self, data: bytes, watch: Watch):
        if self.pricing is None:
            raise ServiceError(Code.UNIMPLEMENTED, "this server runs no scenario risk")
        request = _PARSE_SCENARIOS(data)
        if type(request) is Undecodable:
            raise request.error()
        inputs = scenario_request(request, self.pricing, self.max_scenario_cells, self.stored, self.stored_sets,
                                  self.market)
        scenarios, portfolio = inputs.scenarios, inputs.portfolio
        rows = portfolio.rows
        revaluer = ScenarioRevaluer(self.pricing)

        def revalue(columns=None):
            return revaluer.revalue_portfolio(
                portfolio.books, scenarios if columns is None else scenarios.subset(columns),
                block_cells=BLOCK_BYTES // 8, should_continue=watch, scenarios_path="scenarios.", reuse=True)

        expansion = None
        if inputs.taylor is None:
            revaluation = revalue()
        else:  # the same blocks of trades as a FULL run's
            expansion = taylor.TaylorRun(revaluer, portfolio.books, scenarios, inputs.taylor,
                                         var_levels=inputs.var_levels, es_levels=inputs.es_levels,
                                         block_cells=BLOCK_BYTES // 8, should_continue=watch)
            revaluation = expansion.revaluation
        hierarchy = Hierarchy(inputs.tags, rows, scenarios.scenarios) if inputs.tags else None
        run = ScenarioRun(revaluation, rows, scenarios.scenarios, inputs.var_levels, inputs.es_levels,
                          trade_risk=request.trade_risk, hierarchy=hierarchy,
                          reprice=revalue if request.es_attribution else None, incremental=request.incremental_es)
        header = rpb.ScenarioRiskHeader(
            trade_ids=portfolio.trade_ids, scenario_labels=list(scenarios.labels),
            base_values=_column(revaluation.base),
            base_errors=[cpb.RowError(row=e.row + inputs.offset, code=e.code, field=e.field, message=e.message)
                         for e in revaluation.base_errors[:1000]],
            components=scenarios.component_labels(), portfolio_id=portfolio.portfolio_id,
            trade_offset=inputs.offset, portfolio_trades=inputs.total,
        )
        if revaluation.priced_by is not None:
            header.priced_by.CopyFrom(model_ref(revaluation.priced_by))
        if revaluation.market_used is not None:
            header.market.CopyFrom(market_used(revaluation.market_used))
        for b in revaluation.books:
            used = rpb.BookUsed(trade_start=b.start + inputs.offset, trade_stop=b.stop + inputs.offset,
                                product=b.product)
            if b.priced_by is not None:
                used.priced_by.CopyFrom(model_ref(b.priced_by))
            if b.market_used is not None:
                used.market.CopyFrom(market_used(b.market_used))
            header.books.append(used)
        state = _ScenarioCall(run, request.output, request.cube_type, rows)
        state.taylor = expansion
        state.offset = inputs.offset
        state.trace = watch.trace
        # the first block before the header: what would fail in every block (its cost, the
        # engine's settings) fails the request, with nothing sent
        state.first = self._scenario_block(state)
        return state, rpb.RunScenarioRiskResponse(header=header).SerializeToString()

    def _scenario_block(self, state: _ScenarioCall):
        """The next block's message (a progress message when the cube is not sent), None
        after the last."""
        if state.first is not None:
            first, state.first = state.first, None
            return first
        with _span(state.trace, "scenario block") as span:
            block = state.run.next_block()
            if block is not None and span is not None:
                span.set_attributes({"pricegrid.block.trade_start": block.start,
                                     "pricegrid.block.trade_stop": block.stop})
        if block is None:
            return None
        if not state.cube:
            return rpb.RunScenarioRiskResponse(progress=rpb.ScenarioProgress(
                trades_done=block.stop, trades=state.trades)).SerializeToString()
        return _block_message(block, state.float32, state.offset)

    def _scenario_trailer(self, state: _ScenarioCall) -> bytes:
        with _span(state.trace, "scenario aggregates"):
            return self._scenario_aggregates(state)

    def _scenario_aggregates(self, state: _ScenarioCall) -> bytes:
        a = state.run.aggregates()
        trailer = rpb.ScenarioRiskTrailer(failed_cells=a.failed_cells, compute_seconds=a.compute_seconds)
        if state.aggregates:
            trailer.portfolio_pnl.CopyFrom(_column(a.portfolio_pnl))
            trailer.var.extend(rpb.RiskAtLevel(level=lv, value=v) for lv, v in zip(a.var_levels, a.var))
            trailer.expected_shortfall.extend(rpb.RiskAtLevel(level=lv, value=v) for lv, v in zip(a.es_levels, a.es))
            for node in a.nodes:
                msg = rpb.RiskNode(
                    path=list(node.path), trades=node.trades, pnl=_column(node.pnl),
                    var=[rpb.RiskAtLevel(level=lv, value=v) for lv, v in zip(a.var_levels, node.var)],
                    expected_shortfall=[rpb.RiskAtLevel(level=lv, value=v) for lv, v in zip(a.es_levels, node.es)])
                if node.component_es is not None:
                    msg.component_es.extend(rpb.RiskAtLevel(level=lv, value=v)
                                            for lv, v in zip(a.es_levels, node.component_es))
                if node.incremental_es is not None:
                    msg.incremental_es.extend(rpb.RiskAtLevel(level=lv, value=v)
                                              for lv, v in zip(a.es_levels, node.incremental_es))
                trailer.nodes.append(msg)
            if a.trade_component_es is not None:
                trailer.trade_component_es.CopyFrom(_column(a.trade_component_es.ravel()))
                trailer.tail_scenarios = a.tail_scenarios
            if a.trade_incremental_es is not None:
                trailer.trade_incremental_es.CopyFrom(_column(a.trade_incremental_es.ravel()))
            if a.trade_var is not None:
                trailer.trade_var.CopyFrom(_column(a.trade_var.ravel()))
                trailer.trade_expected_shortfall.CopyFrom(_column(a.trade_es.ravel()))
        if state.taylor is not None:
            trailer.taylor.CopyFrom(_taylor_report(state.taylor.report(a), a))
            trailer.compute_seconds += state.taylor.seconds  # the derivatives and the check too
        return rpb.RunScenarioRiskResponse(trailer=trailer).SerializeToString()

    async def Backtest(self, requests, context, call, counter):
        stream = _Stream()
        lane = self.lane
        async for data in requests:
            counter[0] += 1
            refused = lane.too_large(len(data), "a Backtest message")
            if refused is not None:
                raise refused
            yield await lane.run(call, self._message, stream, data, call)

    def _message(self, stream: _Stream, data: bytes, call=None) -> bytes:
        request = _PARSE_BACKTEST(data)
        if type(request) is Undecodable:
            raise request.error()
        if stream.backtest is None:
            self._first_message(stream, request, call)
        else:
            if request.history:
                raise invalid("history", "the first message names a history; this stream has begun")
            if request.HasField("settings"):
                settings = settings_of(request.settings)
                if stream.convention_from_history and not request.settings.var_convention:
                    settings = dataclasses.replace(settings, var_convention=stream.backtest.settings.var_convention)
                stream.backtest.confirm(settings)
        backtest = stream.backtest
        backtest.check_size(max(column_length(request.pnl, 8, "pnl"), column_length(request.var, 8, "var")))
        pnl, var = doubles(request.pnl, "pnl"), doubles(request.var, "var")
        if len(var) != len(pnl) and not len(pnl):
            raise invalid("pnl", f"required: {len(var)} VaR values came without their P&L")
        result = backtest.add(pnl, var, list(request.labels))
        return result_message(result).SerializeToString()

    def _first_message(self, stream: _Stream, request: rpb.BacktestRequest, call) -> None:
        """The stream's backtest from its first message: the settings, and the stored
        history's days when it names one (every violation of the two at once)."""
        bad = Violations()
        settings, given = bt.BacktestSettings(), None
        if request.HasField("settings"):
            with bad.check():
                settings = given = settings_of(request.settings)
        if not request.history:
            bad.raise_if_any()
            stream.backtest = Backtest(settings, self.limits)
            return
        record = None
        with bad.check():
            if self.portfolios is None:
                raise ServiceError(Code.UNIMPLEMENTED, "this server stores no backtest histories")
            record = pfs.lookup(self.stored_histories, request.history, "history", what="backtest history")
        if record is not None:
            held = bt.VarConvention(record.var_convention)
            if given is not None and request.settings.var_convention and given.var_convention != held:
                bad.add("settings.var_convention", f"{settings.var_convention.name} differs from the history's "
                                                   f"{held.name} ({record.name!r} version {record.history_id}): "
                                                   "leave it unset to take the history's")
            settings = dataclasses.replace(settings, var_convention=held)
        bad.raise_if_any()
        backtest = Backtest(settings, self.limits)
        days = histories.days_of(record)
        backtest.add_stored(days.pnl, days.var, days.labels, _watch(call) if call is not None else None)
        stream.backtest = backtest
        stream.convention_from_history = not request.settings.var_convention


def handlers(servicer: RiskServicer, observer: RpcObserver, *, streams: StreamGate, auth=None, tracing=None
             ) -> list[grpc.GenericRpcHandler]:
    """RiskService's methods behind the interceptors (size limit, log line, metrics, request
    ids, the one error table), counted among the server's open streams, behind ``auth`` (an
    Authorizer; None: no policy), traced by ``tracing`` (an rpc.tracing.Tracing; None: off)."""
    path = f"/{SERVICE}/Backtest"
    scenario = wrap_stream(f"/{SERVICE}/RunScenarioRisk", servicer.RunScenarioRisk, observer, streams=streams,
                           default_deadline_s=servicer.default_deadline_s, auth=auth, tracing=tracing)

    async def run_scenario_risk(data, context):  # server streaming: the one request as a stream of one
        async def one():
            yield data

        async for reply in scenario(one(), context):
            yield reply

    methods = {
        "Backtest": grpc.stream_stream_rpc_method_handler(
            wrap_stream(path, servicer.Backtest, observer, streams=streams, auth=auth, tracing=tracing),
            request_deserializer=None, response_serializer=None,
        ),
        "RunScenarioRisk": grpc.unary_stream_rpc_method_handler(
            run_scenario_risk, request_deserializer=None, response_serializer=None,
        ),
        "Sensitivities": grpc.unary_unary_rpc_method_handler(
            wrap_unary(f"/{SERVICE}/Sensitivities", servicer.Sensitivities, observer,
                       lane=servicer.batch_lane or servicer.lane,
                       parse=safe_deserializer(rpb.SensitivitiesRequest), auth=auth, tracing=tracing),
            request_deserializer=None, response_serializer=None,
        ),
        **{name: grpc.unary_unary_rpc_method_handler(
            wrap_unary(f"/{SERVICE}/{name}", getattr(servicer, name), observer,
                       lane=servicer.batch_lane if name == "PutPortfolio" and servicer.batch_lane else servicer.lane,
                       parse=safe_deserializer(getattr(rpb, f"{name}Request")), auth=auth, tracing=tracing),
            request_deserializer=None, response_serializer=None,
        ) for name in ("PutPortfolio", "GetPortfolio", "ListPortfolios", "DeletePortfolio", "ListStresses",
                       "PutScenarioSet", "GetScenarioSet", "ListScenarioSets", "DeleteScenarioSet",
                       "PutBacktestHistory", "GetBacktestHistory", "ListBacktestHistories",
                       "DeleteBacktestHistory")},
        "WorstCase": grpc.unary_unary_rpc_method_handler(
            wrap_unary(f"/{SERVICE}/WorstCase", servicer.WorstCase, observer,
                       lane=servicer.batch_lane or servicer.lane,
                       parse=safe_deserializer(rpb.WorstCaseRequest), auth=auth, tracing=tracing),
            request_deserializer=None, response_serializer=None,
        ),
        "ParametricVar": grpc.unary_unary_rpc_method_handler(
            wrap_unary(f"/{SERVICE}/ParametricVar", servicer.ParametricVar, observer, lane=servicer.lane,
                       parse=safe_deserializer(rpb.ParametricVarRequest), auth=auth, tracing=tracing),
            request_deserializer=None, response_serializer=None,
        ),
    }
    return [grpc.method_handlers_generic_handler(SERVICE, methods)]
