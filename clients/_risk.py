"""The risk client: whole portfolios as numpy columns, priced in concurrent chunks.

    >>> import numpy as np
    >>> from pricegrid.clients import RiskClient
    >>> with RiskClient(target="127.0.0.1:50051") as risk:
    ...     res = risk.price_batch(
    ...         model="bsm",
    ...         option_type=np.where(np.arange(n) % 2, "put", "call"),
    ...         strike=strikes, time_to_expiry=0.5,             # scalars broadcast
    ...         spot=spots, rate=0.05, dividend_yield=0.01, volatility=vols,
    ...         measures=("price", "delta", "gamma"),
    ...     )
    >>> res.columns["delta"][res.ok], res.error_count, res.errors[:3]

Columns go out as raw little-endian bytes and come back through ``np.frombuffer``; no
per-row Python. A batch larger than the server's limits (``ServerInfo.limits``) is cut into
chunks whose requests and responses stay well under the message size limit, sent at most
``max_in_flight`` at a time, and put back together in row order.
"""

from __future__ import annotations

import queue
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import grpc
import numpy as np

from pricegrid.v1 import wire
from pricegrid.v1 import common_pb2, pricing_pb2, pricing_pb2_grpc, risk_pb2, risk_pb2_grpc

from . import _columns as C
from . import _tracing
from . import _backtest
from ._backtest import Backtester, BacktestResult
from ._scenarios import ScenarioRiskResult, Shift
from . import _scenarios
from ._copy import PayloadBuffers, copy_into
from . import _convert
from ._config import USE_CLIENT_DEFAULT, ChannelOptions, RetryConfig, channel_options, resolve_timeout
from ._errors import PricingError, RowError, status_code
from ._frontoffice import _make_channel
from ._convert import _METHOD_NAMES
from ._models import (
    DAY_COUNTS,
    EngineSettings,
    HestonParameters,
    engine_code,
    MEASURE_NAMES,
    ModelRef,
    ServerInfo,
    ServerLimits,
    day_count_name,
    measure_codes,
    model_code,
)

#: gRPC's default receive limit, assumed when the server does not state its own.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

#: the input columns the batch methods (and ``price_frame``) know, by name
INPUT_COLUMNS = (
    "option_type",
    "strike",
    "time_to_expiry",
    "expiry_date",
    "valuation_date",
    "day_count",
    "spot",
    "forward",
    "rate",
    "dividend_yield",
    "volatility",
)
EFFECTIVE_INPUTS = ("forward", "discount_factor", "time_to_expiry", "volatility")
#: the instruments (the members of PriceBatchRequest.instruments) and their enum columns ->
#: their contract enum, read from the contract's descriptors (a new product needs no edit here)
_INSTRUMENT_NAMES = tuple(f.name for f in pricing_pb2.PriceBatchRequest.DESCRIPTOR.oneofs_by_name["instruments"].fields)
_INT_ENUMS = {
    f.name: f.enum_type.name
    for member in pricing_pb2.PriceRequest.DESCRIPTOR.oneofs_by_name["instrument"].fields
    for f in member.message_type.fields
    if f.enum_type is not None and f.name != "option_type"
}

# where each column lives in the request: (message path, kind)
_DOUBLE_PATHS = {
    "strike": ("european", "strike"),
    "time_to_expiry": ("european", "time_to_expiry"),
    "spot": ("market", "spot"),
    "forward": ("market", "forward"),
    "rate": ("market", "rate"),
    "dividend_yield": ("market", "dividend_yield"),
    "volatility": ("market", "volatility"),
    "price": ("price",),
}
_INT_PATHS = {"option_type": ("european", "option_type"), "expiry_date": ("european", "expiry_date")}
#: the scenario run's method path (its replies read by _scenarios.read_part)
_RUN_SCENARIO_RISK = f"/{risk_pb2.DESCRIPTOR.services_by_name['RiskService'].full_name}/RunScenarioRisk"


@dataclass(frozen=True, slots=True)
class BatchStats:
    """How a batch went: chunks sent, server compute time (summed over chunks), wall time,
    bytes on the wire (serialized messages) and the most kernel threads a chunk used."""

    chunks: int = 0
    compute_seconds: float = 0.0
    wall_seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    threads: int = 0


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Arrays out, one entry per input row.

    ``columns``     ``{measure name: float64 array}`` in the order asked (``"volatility"``
                    for implied volatility); failed rows hold NaN
    ``status``      int32 google.rpc code per row, 0 OK (``ok`` is ``status == 0``)
    ``errors``      :class:`RowError` of the first failed rows the server described (it
                    caps them; ``error_count`` counts them all), rows counted from the start
                    of the whole batch
    ``inputs``      ``{forward, discount_factor, time_to_expiry, volatility}`` arrays the
                    model used (empty when ``effective_inputs=False``)
    ``priced_by``   :class:`ModelRef`

    Arrays may be read-only views of the response bytes; ``.copy()`` one to modify it.
    """

    rows: int
    columns: Mapping[str, np.ndarray]
    status: np.ndarray
    errors: list[RowError]
    error_count: int
    inputs: Mapping[str, np.ndarray] = field(default_factory=dict)
    priced_by: ModelRef = field(default_factory=ModelRef)
    stats: BatchStats = field(default_factory=BatchStats)
    #: measure name -> how it was obtained ("analytic", "finite_difference", ...); empty
    #: from the analytic European engines (all analytic)
    methods: Mapping[str, str] = field(default_factory=dict)
    #: Monte Carlo: measure name -> standard error per row
    standard_errors: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the rows that priced."""
        return self.status == 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __len__(self) -> int:
        return self.rows

    def status_names(self) -> np.ndarray:
        """Each row's status by name ("OK", "INVALID_ARGUMENT", "OUT_OF_RANGE", ...)."""
        names = {int(c): status_code(int(c)).name for c in np.unique(self.status)}
        return np.array([names[int(c)] for c in self.status], dtype=object)

    def messages(self) -> np.ndarray:
        """Each row's error message ("field: message"; "" for a row that priced, or one
        beyond the errors the server described)."""
        out = np.full(self.rows, "", dtype=object)
        for e in self.errors:
            out[e.row] = f"{e.field}: {e.message}" if e.field else e.message
        return out

    def to_frame(self, index=None):
        """A pandas DataFrame: one column per measure, ``status`` (the code), ``status_name``,
        ``error`` (the row's message), and the inputs used as ``effective_forward``,
        ``effective_discount_factor``, ... (needs pandas)."""
        pd = _pandas()
        data: dict[str, np.ndarray] = dict(self.columns)
        data["status"] = self.status
        data["status_name"] = self.status_names()
        data["error"] = self.messages()
        for name, values in self.inputs.items():
            data[f"effective_{name}"] = values
        return pd.DataFrame(data, index=index)


#: how many times one chunk of a batch is sent again after UNAVAILABLE (see RiskClient.run_chunks)
CHUNK_RESENDS = 3


def _instrument_columns(instrument: str) -> tuple[str, ...]:
    """The columns of an instrument's PriceBatchRequest message a frame may carry."""
    field = pricing_pb2.PriceBatchRequest.DESCRIPTOR.fields_by_name.get(instrument)
    if field is None or field.message_type is None:
        return ()
    skip = {"valuation_date", "day_count", "fixing_counts", "expiry_date", "time_to_expiry"}
    return tuple(n for n in field.message_type.fields_by_name if n not in skip)


def _pandas():
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is a test dependency
        raise ImportError("this needs pandas: pip install 'pricegrid[pandas]'") from None
    return pandas


@dataclass(frozen=True)
class BatchRequests:
    """A batch's requests, one per chunk of ``plan`` (``plan.ranges[i]`` are the rows of
    chunk ``i``): ``payloads[i]`` the exact bytes sent, ``requests[i]`` them parsed.
    Iterating yields ``((start, stop), request)``."""

    plan: C.ChunkPlan
    payloads: list[bytes]
    message_type: Any = pricing_pb2.PriceBatchRequest

    @property
    def requests(self) -> list:
        return [self.message_type.FromString(p) for p in self.payloads]

    def __iter__(self):
        return iter(zip(self.plan.ranges, self.requests))

    def __len__(self) -> int:
        return len(self.payloads)


def _response_bytes_per_row(measures: int, effective_inputs: bool) -> int:
    """Bytes per row of a batch response: a float64 per measure, the int32 status and the
    effective-input columns."""
    return 8 * measures + 4 + (8 * len(EFFECTIVE_INPUTS) if effective_inputs else 0)


# ---------------------------------------------------------------------------- prepared batch
class _PreparedBatch:
    """Columns made arrays once; ``payload(start, stop)`` writes one chunk's request in the
    wire format, each column copied once, straight from its array (see
    :mod:`pricegrid.clients._columns`, "wire format")."""

    def __init__(
        self, message_type, base, doubles: dict[str, np.ndarray], ints: dict[str, np.ndarray],
        paths: Mapping[str, tuple] | None = None, ragged: tuple | None = None,
    ) -> None:
        self.message_type = message_type
        self.base = base
        self.doubles = doubles
        self.ints = ints
        self.rows = C.broadcast_length({**doubles, **ints})
        self._base_bytes = base.SerializeToString()
        self._columns = [
            (path + ("raw",), array)
            for default_paths, columns in ((_DOUBLE_PATHS, doubles), (_INT_PATHS, ints))
            for name, array in columns.items()
            for path in ((paths or default_paths)[name],)
        ]
        # (path, flat values, offsets): a column whose rows hold several values each (Asian
        # fixing times); a chunk carries values[offsets[start]:offsets[stop]]
        self._ragged = ragged
        # A broadcast column is the same bytes in every chunk: encode it once.
        self._fixed = {
            path: C.field_path_headers(message_type.DESCRIPTOR, path, array.nbytes) + array.tobytes()
            for path, array in self._columns
            if len(array) == 1
        }

    @property
    def request_bytes_per_row(self) -> int:
        per_row = C.row_bytes(list(self.doubles.values()) + list(self.ints.values()))
        if self._ragged is not None and self._ragged[2] is not None and self.rows:
            per_row += -(-self._ragged[1].nbytes // self.rows)  # fixing times, on average
        return per_row

    def payload(self, start: int, stop: int, buffers: PayloadBuffers | None = None) -> bytes:
        """One chunk's request bytes; written into one of ``buffers`` when given (bytes
        that the caller must not keep: the next chunk may be written into them once gRPC
        has let go), else a new ``bytes``."""
        parts: list = [self._base_bytes]
        offset = len(self._base_bytes)
        for path, array in self._columns:
            fixed = self._fixed.get(path)
            if fixed is not None:
                parts.append(fixed)
                offset += len(fixed)
                continue
            data = C.column_buffer(array, start, stop)
            headers = C.field_path_headers(self.message_type.DESCRIPTOR, path, data.nbytes)
            # start the column's bytes on an 8-byte boundary: the server then reads it in place
            pad = C.alignment_padding(offset + len(headers))
            parts += (pad, headers, data)
            offset += len(pad) + len(headers) + data.nbytes
        if self._ragged is not None:
            path, values, offsets = self._ragged
            data = C.column_buffer(values, int(offsets[start]), int(offsets[stop])) if offsets is not None else C.column_buffer(values, 0, len(values))
            headers = C.field_path_headers(self.message_type.DESCRIPTOR, path + ("raw",), data.nbytes)
            pad = C.alignment_padding(offset + len(headers))
            parts += (pad, headers, data)
            offset += len(pad) + len(headers) + data.nbytes
        return b"".join(parts) if buffers is None else buffers.join(parts, offset)

    def request(self, start: int, stop: int):
        """The chunk as a message (what the server parses)."""
        return self.message_type.FromString(self.payload(start, stop))


#: gRPC moves messages of a few MB fastest: a larger batch is cut into chunks of about this
#: size (the larger of request and response), ``max_in_flight`` of them in flight at once, so
#: the server computes one chunk while others travel. Measured with ``pricegrid bench
#: latency --modes batch``: 1M rows took 280 ms to echo as one 52 MB message, 72 ms as 4 MB chunks.
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024


def _place(whole: np.ndarray, start: int, values: np.ndarray) -> None:
    """whole[start:start + len(values)] = values, a chunk's column into the batch's result
    (streaming stores for large chunks: see pricegrid.clients._copy)."""
    part = whole[start : start + len(values)]
    if values.dtype == np.float64 and values.flags.c_contiguous and part.flags.c_contiguous:
        copy_into(part, values)
    else:  # a broadcast (length-1) column, or a foreign byte order
        part[...] = values


def _serialize(request) -> bytes:
    """Chunks go out as bytes already written; a message (from a caller) is serialized."""
    return request if isinstance(request, bytes) else request.SerializeToString()


def _sized(message_type):
    """A response deserializer that also says how many bytes came in. The reply is read as
    a pricegrid.v1.wire view: its columns stay in the received bytes (no copies)."""

    def deserialize(data: bytes):
        return wire.parse(message_type, data), len(data)

    return deserialize


class _RiskRequests:
    """The risk RPCs' requests, built on the client side without a call (shared by
    :class:`RiskClient` and the asyncio client)."""

    def _prepare_product(
        self, instrument, *, model, measures, threads, effective_inputs, engine, settings, heston, columns
    ) -> _PreparedBatch:
        """A PriceBatchRequest of any instrument's columns (see :meth:`price_batch`)."""
        desc = pricing_pb2.PriceBatchRequest.DESCRIPTOR
        field = desc.fields_by_name.get(instrument)
        if field is None or field.containing_oneof is None or field.containing_oneof.name != "instruments":
            raise ValueError(f"unknown instrument {instrument!r}; expected one of {sorted(_INSTRUMENT_NAMES)}")
        base = pricing_pb2.PriceBatchRequest(
            model=model_code(model), output_encoding=common_pb2.ENCODING_RAW,
            omit_effective_inputs=not effective_inputs, threads=int(threads), engine=engine_code(engine),
            settings=_convert.settings_message(settings),
        )
        base.measures.extend(measures)
        cols_desc = field.message_type
        getattr(base, instrument).SetInParent()
        doubles: dict[str, np.ndarray] = {}
        ints: dict[str, np.ndarray] = {}
        paths: dict[str, tuple] = {}
        ragged = None
        columns = {k: v for k, v in columns.items() if v is not None}
        for name in ("spot", "forward", "rate", "dividend_yield", "volatility"):
            if name in columns:
                doubles[name] = C.as_float_column(name, columns.pop(name))
                paths[name] = ("market", name)
        if heston is not None:
            if isinstance(heston, HestonParameters):
                values = {k: getattr(heston, k) for k in ("v0", "kappa", "theta", "sigma", "rho")}
            else:
                values = dict(heston)
            for h in ("v0", "kappa", "theta", "sigma", "rho"):
                if h not in values:
                    raise ValueError(f"heston: {h} is required")
                doubles[f"heston_{h}"] = C.as_float_column(f"heston.{h}", values[h])
                paths[f"heston_{h}"] = ("market", "heston", h)
        if "expiry_date" in columns:
            if columns.get("valuation_date") is None:
                raise ValueError("expiry_date= needs valuation_date=")
            ints["expiry_date"] = C.as_date_column("expiry_date", columns.pop("expiry_date"))
            paths["expiry_date"] = (instrument, "expiry_date")
            getattr(base, instrument).valuation_date.CopyFrom(C.date_message(C.as_date("valuation_date", columns.pop("valuation_date"))))
            getattr(base, instrument).day_count = DAY_COUNTS[day_count_name(columns.pop("day_count", None) or "ACT/365F")]
        elif "time_to_expiry" not in columns:
            raise ValueError("give exactly one of time_to_expiry= or expiry_date=")
        for name in ("valuation_date", "day_count"):
            if name in columns:
                raise ValueError(f"{name} goes with expiry_date=, not time_to_expiry=")
        if "fixing_times" in columns:
            times = columns.pop("fixing_times")
            if instrument != "asian":
                raise ValueError("fixing_times is an Asian option's column")
            if isinstance(times, (list, tuple)) and times and np.ndim(times[0]) == 1:  # one array per row
                per_row = [C.as_float_column("fixing_times", t) if len(t) else np.empty(0) for t in times]
                counts = np.array([len(t) for t in per_row], dtype="<i4")
                offsets = np.zeros(len(counts) + 1, dtype=np.int64)
                np.cumsum(counts, out=offsets[1:])
                ragged = ((instrument, "fixing_times"), np.concatenate(per_row).astype("<f8"), offsets)
            else:
                flat = C.as_float_column("fixing_times", times)
                counts = np.array([len(flat)], dtype="<i4")
                ragged = ((instrument, "fixing_times"), flat, None)
            ints["fixing_counts"] = counts
            paths["fixing_counts"] = (instrument, "fixing_counts")
        for name, values in columns.items():
            f = cols_desc.fields_by_name.get(name)
            if f is None or name in ("fixing_counts",):
                known = sorted(n for n in cols_desc.fields_by_name if n not in ("valuation_date", "day_count", "fixing_counts"))
                raise TypeError(f"unknown {instrument} column {name!r}; expected {known} and the market's")
            paths[name] = (instrument, name)
            if f.message_type.name == "Int32Column":
                if name == "option_type":
                    ints[name] = C.as_option_type_column(values)
                elif f.name == "past_fixings":
                    ints[name] = C._one_d(name, np.asarray(values, dtype="<i4"))
                else:
                    ints[name] = C.as_enum_column(name, values, _INT_ENUMS[name])
            else:
                doubles[name] = C.as_float_column(name, values)
        return _PreparedBatch(pricing_pb2.PriceBatchRequest, base, doubles, ints, paths, ragged)

    def _trades(self, books, portfolio, instrument, model, snapshot_id, underlying_id, columns, *, threads=0,
                heston=None) -> dict:
        """A risk request's trades as request_of takes them."""
        if books is None and not portfolio:
            if model is None or not underlying_id or not snapshot_id:
                raise ValueError("give snapshot_id, underlying_id, model and the trades' columns; or books; or a "
                                 "stored portfolio")
            return {"portfolio": self._snapshot_portfolio(instrument, model, snapshot_id, underlying_id, columns,
                                                          threads=threads, heston=heston)}
        if columns or model is not None or underlying_id:
            raise ValueError("with books or a stored portfolio, the trades' columns, model and underlying_id "
                             "belong to each book (see RiskClient.book)")
        return {"books": None if books is None else list(books), "stored": portfolio, "snapshot_id": snapshot_id}

    def book(self, instrument: str = "european", *, model: str | int, underlying_id: str, snapshot_id: str = "",
             quantity: Any = None, trade_ids: Iterable[str] | None = None, tags: Mapping[str, Any] | None = None,
             threads: int = 0, heston: Any = None, **columns: Any) -> "risk_pb2.PortfolioBook":
        """One book of a portfolio: ``instrument`` trades (columns as for :meth:`price_batch`)
        on ``underlying_id`` (of ``snapshot_id``, or of the run's snapshot), with their
        quantities, ids and tags (name -> one value per trade, or one for the book)."""
        trades = self._snapshot_portfolio(instrument, model, snapshot_id, underlying_id, columns, threads=threads,
                                          heston=heston)
        book = risk_pb2.PortfolioBook(trades=trades)
        if quantity is not None:
            book.quantity.raw = np.ascontiguousarray(np.atleast_1d(np.asarray(quantity, dtype="<f8"))).tobytes()
        if trade_ids is not None:
            book.trade_ids.extend(str(t) for t in trade_ids)
        for name, values in (tags or {}).items():
            values = [values] if isinstance(values, str) else list(values)
            book.tags.add(name=str(name), values=[str(v) for v in values])
        return book

    def _snapshot_portfolio(self, instrument, model, snapshot_id, underlying_id, columns, *, threads=0, heston=None):
        """A risk request's portfolio: the trades' columns as one PriceBatchRequest priced on
        ``underlying_id`` of the stored snapshot ``snapshot_id``."""
        prepared = self._prepare_product(
            instrument, model=model, measures=[common_pb2.MEASURE_PRICE], threads=threads, effective_inputs=False,
            engine=None, settings=None, heston=heston, columns=dict(columns),
        )
        portfolio = prepared.request(0, prepared.rows)
        portfolio.market.snapshot_id, portfolio.market.underlying_id = snapshot_id, underlying_id
        portfolio.ClearField("measures")
        return portfolio

    def scenario_request(
        self,
        *,
        snapshot_id: str = "",
        underlying_id: str = "",
        model: str | int | None = None,
        shifts: Iterable[Shift] = (),
        sizes: Any = None,
        labels: Iterable[str] = (),
        history: Any = None,
        quantity: Any = None,
        trade_ids: Iterable[str] | None = None,
        smile: str = "sticky_strike",
        output: str = "aggregates",
        cube_type: str = "float64",
        var_levels: Iterable[float] | None = None,
        es_levels: Iterable[float] | None = None,
        trade_risk: bool = False,
        tags: Mapping[str, Any] | None = None,
        aggregate_by: Iterable[str] = (),
        instrument: str = "european",
        heston: Any = None,
        threads: int = 0,
        books: Iterable[Any] | None = None,
        portfolio: str = "",
        stresses: Iterable[str] = (),
        stress_targets: Mapping[str, Any] | None = None,
        es_attribution: bool = False,
        incremental_es: bool = False,
        revaluation: str = "full",
        taylor_bumps: Iterable[float] | None = None,
        cross_gamma: bool = False,
        hybrid_tail: int = 0,
        check_scenarios: int = 0,
        check: str = "even",
        **columns: Any,
    ) -> "risk_pb2.RunScenarioRiskRequest":
        """The RunScenarioRiskRequest that :meth:`RiskClient.scenario_risk` sends (its
        arguments but ``progress`` and ``timeout``): a portfolio of ``instrument`` trades (their columns as for
        :meth:`price_batch`, the market from ``snapshot_id``/``underlying_id``) under the
        scenario set ``shifts`` x ``sizes`` (components x scenarios, see :class:`Shift`)
        with one ``labels`` entry per scenario; or ``history`` instead of sizes and labels: a
        dict of ``dates``, ``levels`` (dates x components), ``holding_period`` (default 1)
        and ``overlapping`` (default True): each scenario the change over the holding period
        in the form its shift applies. ``output``: "aggregates" (default: the
        portfolio's P&L per scenario, VaR and ES per level, per trade), "cube" or "both"
        (the trades x scenarios P&L cube in ``result.cube``); ``trade_risk``: also each
        trade's VaR and ES; ``tags`` (name -> one value per trade, or one) and
        ``aggregate_by`` (tag names, top level first): ``result.nodes``, each node's P&L,
        VaR and ES. ``var_levels`` and ``es_levels``: None for the server's (0.99 and
        0.975); with output "cube" the trailer's aggregates are not sent, and the server
        refuses what only fills them (levels of a full run, trade risk, aggregation, ES
        attribution).

        Instead of one instrument's columns: ``books`` (from :meth:`book`: any mix of
        products and underlyings), or ``portfolio``, the name or id of a stored portfolio
        (:meth:`put_portfolio`); ``snapshot_id`` then names the snapshot they run on (unset:
        each book's own).

        ``stresses``: named stresses run after the own scenarios (which may then be left
        out): the server's catalogue (:meth:`stresses`) or stored scenario sets
        (:meth:`put_scenario_set`); ``stress_targets`` maps catalogue factors to selectors
        ({"equity": ["SPX"], "usd_rates": []}: an empty list leaves a factor out).

        ``es_attribution``: each trade's (``result.trade_component_es``, trades x ES levels)
        and each node's Euler component of ES; ``incremental_es``: also their incremental ES
        (a second full revaluation on the server); FULL runs only.

        ``revaluation``: "full" (default), "taylor" (each cell from the trade's delta-gamma
        expansion at the base, ``taylor_bumps`` one bump per shift or None for the server's
        defaults, ``cross_gamma`` for the cross terms; ``check_scenarios`` scenarios revalued
        in full to measure the error, ``check`` "even" or "tail") or "hybrid" (Taylor, then the
        ``hybrid_tail`` worst scenarios revalued in full, 0: the server's rule); the error
        report in ``result.taylor``."""
        trades = self._trades(books, portfolio, instrument, model, snapshot_id, underlying_id, columns,
                              threads=threads, heston=heston)
        return _scenarios.request_of(
            **trades, quantity=quantity, trade_ids=None if trade_ids is None else list(trade_ids), shifts=list(shifts),
            sizes=sizes, labels=list(labels), smile=smile, output=output, cube_type=cube_type,
            var_levels=var_levels, es_levels=es_levels, trade_risk=trade_risk, tags=tags,
            aggregate_by=list(aggregate_by), stresses=list(stresses), stress_targets=stress_targets,
            es_attribution=es_attribution, incremental_es=incremental_es,
            revaluation=revaluation, taylor_bumps=None if taylor_bumps is None else list(taylor_bumps),
            cross_gamma=cross_gamma, hybrid_tail=hybrid_tail, check_scenarios=check_scenarios, check=check,
            history=_scenarios.history_of(history),
        )


class RiskClient(_RiskRequests):
    """Price portfolios as columns (see the module docstring).

    Keyword-only arguments:

    ``target``         ``"host:port"`` (default ``$PRICEGRID_TARGET`` or ``127.0.0.1:50051``)
    ``timeout``        deadline of each chunk's call in seconds (``None``: none)
    ``chunk_rows``     cap on rows per chunk (default: as many as the server's limits allow)
    ``chunk_bytes``    target size of a chunk in bytes (default 4 MiB; 0: only the server's limits)
    ``max_in_flight``  chunks sent concurrently (the client keeps ``max_in_flight + 2`` chunk
                       request buffers, about 4 MiB each at the defaults, from batch to batch;
                       ``close()`` lets them go)
    ``progress``       show a tqdm progress bar (when tqdm is installed)
    ``retries``        :class:`RetryConfig` (gRPC's own retries on ``UNAVAILABLE``; on the
                       RiskService its reads and runs, not its puts and deletes)
    ``channel``        a ``grpc.Channel`` to use instead of opening one (not closed by us)
    ``credentials``, ``options``  as for :class:`FrontOfficeClient`

    The channel's send and receive message limits are lifted; the server's own limit
    (``ServerInfo.limits.max_message_bytes``) is what the chunks are planned against.
    """

    def __init__(
        self,
        *,
        target: str | None = None,
        timeout: float | None = 60.0,
        chunk_rows: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_in_flight: int = 4,
        progress: bool = False,
        retries: RetryConfig = RetryConfig(),
        channel: grpc.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token=None,
        options: ChannelOptions = (),
    ) -> None:
        if chunk_rows is not None and chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.timeout = resolve_timeout(timeout, None)
        if chunk_bytes < 0:
            raise ValueError("chunk_bytes must be >= 0")
        self.chunk_rows = chunk_rows
        self.chunk_bytes = chunk_bytes
        self.max_in_flight = max_in_flight
        # the chunks' request bytes, reused from batch to batch (see pricegrid.clients._copy):
        # one per chunk in flight, one being written and one spare
        self._payloads = PayloadBuffers(max_in_flight + 2)
        self.progress = progress
        self._owns_channel = channel is None
        if channel is None:
            channel = _make_channel(target, credentials, channel_options(retries, max_message_bytes=-1, extra=options), token)
        self.channel = channel
        self._stub = pricing_pb2_grpc.PricingServiceStub(channel)
        # The batch methods take ready-made request bytes and report the response's size.
        self._price_batch = channel.unary_unary(
            "/pricegrid.v1.PricingService/PriceBatch",
            request_serializer=_serialize,
            response_deserializer=_sized(pricing_pb2.PriceBatchResponse),
            _registered_method=True,
        )
        self._implied_vol_batch = channel.unary_unary(
            "/pricegrid.v1.PricingService/ImpliedVolatilityBatch",
            request_serializer=_serialize,
            response_deserializer=_sized(pricing_pb2.ImpliedVolatilityBatchResponse),
            _registered_method=True,
        )
        self._info: ServerInfo | None = None
        self._closed = False
        #: chunks sent again after their replica went away (see run_chunks)
        self.resent_chunks = 0

    # ------------------------------------------------------------------ server limits
    def server_info(self, *, refresh: bool = False, timeout=USE_CLIENT_DEFAULT) -> ServerInfo:
        """The server's ServerInfo (cached after the first call)."""
        if self._info is None or refresh:
            try:
                response = self._stub.ServerInfo(
                    pricing_pb2.ServerInfoRequest(), timeout=resolve_timeout(timeout, self.timeout),
                    metadata=_tracing.metadata(),
                )
            except grpc.RpcError as e:
                raise PricingError.from_rpc_error(e) from None
            self._info = _convert.server_info(response)
        return self._info

    def limits(self) -> ServerLimits:
        """The server's limits; gRPC's defaults when it has no ServerInfo (``UNIMPLEMENTED``)."""
        try:
            return self.server_info().limits
        except PricingError as e:
            if e.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
            self._info = ServerInfo()
            return self._info.limits

    def plan(self, rows: int, *, request_bytes_per_row: int, response_bytes_per_row: int) -> C.ChunkPlan:
        """The chunks a batch of ``rows`` rows is cut into against this server's limits."""
        limits = self.limits()
        return C.plan_chunks(
            rows,
            request_bytes_per_row=request_bytes_per_row,
            response_bytes_per_row=response_bytes_per_row,
            max_message_bytes=limits.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES,
            max_rows=limits.max_rows,
            chunk_rows=self.chunk_rows,
            target_bytes=self.chunk_bytes,
        )

    # ------------------------------------------------------------------ price
    def price_batch(
        self,
        *,
        model: str | int,
        option_type: Any = None,
        strike: Any = None,
        time_to_expiry: Any = None,
        expiry_date: Any = None,
        valuation_date: Any = None,
        day_count: str | None = None,
        spot: Any = None,
        forward: Any = None,
        rate: Any = 0.0,
        dividend_yield: Any = None,
        volatility: Any = None,
        measures: Iterable[str] | str = ("price",),
        threads: int = 0,
        effective_inputs: bool = True,
        timeout=USE_CLIENT_DEFAULT,
        instrument: str = "european",
        engine: str | int | None = None,
        settings: EngineSettings | None = None,
        heston: Any = None,
        **instrument_columns: Any,
    ) -> BatchResult:
        """Price a batch given as arrays (or scalars, broadcast to every row).

        ``instrument`` is ``"european"`` (default), ``"american"``, ``"barrier"``,
        ``"double_barrier"``, ``"digital"``, ``"touch"``, ``"asian"`` or ``"lookback"``; its
        own columns go by their contract names (``barrier_type``, ``barrier``, ``rebate``,
        ``lower_barrier``, ``payoff``, ``cash``, ``averaging``, ``fixing_times``,
        ``running_minimum``, ...; enum columns take names such as ``"down_out"``). Asian
        ``fixing_times`` is one schedule every row shares (a 1-d array) or one array per
        row (a list of arrays). ``engine``/``settings`` pick the method (see
        :meth:`FrontOfficeClient.price`); ``heston`` is a HestonParameters or a dict of
        ``v0``, ``kappa``, ``theta``, ``sigma``, ``rho`` columns for ``model="heston"``.
        ``result.standard_errors`` holds Monte Carlo standard errors and
        ``result.methods`` how each measure was obtained.

        ``option_type``  ints (1 call, 2 put) or strings ``'call'``/``'put'``/``'C'``/``'P'``
        ``time_to_expiry`` year fractions, or ``expiry_date`` (numpy datetime64, dates or ISO
        strings) with one ``valuation_date`` and ``day_count`` (default ``"ACT/365F"``)
        ``spot`` (``"bsm"``) or ``forward`` (``"black76"``, ``"bachelier"``)
        ``measures``     names, in the order wanted: price, delta, gamma, vega, theta, rho, ...
        ``threads``      kernel threads per chunk (0: the server's default)
        """
        codes = measure_codes(measures) or [common_pb2.MEASURE_PRICE]
        common = dict(
            option_type=option_type, strike=strike, time_to_expiry=time_to_expiry, expiry_date=expiry_date,
            valuation_date=valuation_date, day_count=day_count, spot=spot, forward=forward, rate=rate,
            dividend_yield=dividend_yield, volatility=volatility,
        )
        library = (instrument != "european" or engine is not None or settings is not None or heston is not None
                   or bool(instrument_columns))
        if library:
            prepared = self._prepare_product(
                instrument, model=model, measures=codes, threads=threads, effective_inputs=effective_inputs,
                engine=engine, settings=settings, heston=heston, columns={**common, **instrument_columns},
            )
        else:
            if volatility is None:
                raise ValueError("volatility is required")
            prepared = self._prepare(
                pricing_pb2.PriceBatchRequest, model=model, measures=codes, threads=threads,
                effective_inputs=effective_inputs, columns=common,
            )
        names = [MEASURE_NAMES[c] for c in codes]
        # the options library may add a standard-error column per measure (Monte Carlo)
        per_row = _response_bytes_per_row((2 if library else 1) * len(names), effective_inputs)
        return self._execute(
            prepared,
            self._price_batch,
            per_row,
            lambda response: [(MEASURE_NAMES.get(c.measure, str(c.measure)), c.values) for c in response.columns],
            names,
            timeout,
        )

    def price_batch_requests(self, **kwargs) -> "BatchRequests":
        """The PriceBatchRequest messages :meth:`price_batch` would send for these arguments,
        one per chunk of ``.plan`` (for inspection, golden files and benchmarks)::

            >>> reqs = risk.price_batch_requests(model="bsm", option_type="call", strike=k, ...)
            >>> for (start, stop), request in reqs: ...
        """
        kwargs.pop("timeout", None)
        codes = measure_codes(kwargs.pop("measures", ("price",))) or [common_pb2.MEASURE_PRICE]
        model = kwargs.pop("model")
        threads = kwargs.pop("threads", 0)
        effective_inputs = kwargs.pop("effective_inputs", True)
        if kwargs.get("volatility") is None:
            raise ValueError("volatility is required")
        prepared = self._prepare(
            pricing_pb2.PriceBatchRequest,
            model=model,
            measures=codes,
            threads=threads,
            effective_inputs=effective_inputs,
            columns=kwargs,
        )
        plan = self.plan(
            prepared.rows,
            request_bytes_per_row=prepared.request_bytes_per_row,
            response_bytes_per_row=_response_bytes_per_row(len(codes), effective_inputs),
        )
        return BatchRequests(plan, [prepared.payload(start, stop) for start, stop in plan.ranges])

    def implied_vol_batch(
        self,
        *,
        model: str | int,
        option_type: Any,
        strike: Any,
        price: Any,
        time_to_expiry: Any = None,
        expiry_date: Any = None,
        valuation_date: Any = None,
        day_count: str | None = None,
        spot: Any = None,
        forward: Any = None,
        rate: Any = 0.0,
        dividend_yield: Any = None,
        threads: int = 0,
        effective_inputs: bool = True,
        timeout=USE_CLIENT_DEFAULT,
    ) -> BatchResult:
        """Implied volatilities of a batch from its prices: ``result.columns["volatility"]``
        (arguments as for :meth:`price_batch`, ``price`` the premiums)."""
        prepared = self._prepare(
            pricing_pb2.ImpliedVolatilityBatchRequest,
            model=model,
            measures=None,
            threads=threads,
            effective_inputs=effective_inputs,
            columns=dict(
                option_type=option_type,
                strike=strike,
                time_to_expiry=time_to_expiry,
                expiry_date=expiry_date,
                valuation_date=valuation_date,
                day_count=day_count,
                spot=spot,
                forward=forward,
                rate=rate,
                dividend_yield=dividend_yield,
                price=price,
            ),
        )
        response_bytes = _response_bytes_per_row(1, effective_inputs)
        return self._execute(
            prepared,
            self._implied_vol_batch,
            response_bytes,
            lambda response: [("volatility", response.volatility)],
            ["volatility"],
            timeout,
        )

    # ------------------------------------------------------------------ DataFrames
    def price_frame(self, df, *, model: str | int, measures: Iterable[str] | str = ("price",), **kwargs):
        """Price a pandas DataFrame whose columns carry the inputs by name (``option_type``,
        ``strike``, ``time_to_expiry`` or ``expiry_date``/``valuation_date``/``day_count``,
        ``spot`` or ``forward``, ``rate``, ``dividend_yield``, ``volatility``); keyword
        arguments supply (or override) inputs not in the frame. With ``instrument=`` the
        frame's columns of that instrument (``barrier_type``, ``barrier``, ...) are read too;
        other columns (trade ids, tags) are left to the caller. Returns a DataFrame on the
        same index (see :meth:`BatchResult.to_frame`: the measures, status and error)."""
        names = tuple(dict.fromkeys(INPUT_COLUMNS + _instrument_columns(kwargs.get("instrument", "european"))))
        result = self.price_batch(model=model, measures=measures, **self._frame_inputs(df, names, kwargs))
        return result.to_frame(index=df.index)

    def implied_vol_frame(self, df, *, model: str | int, **kwargs):
        """Implied volatilities of a DataFrame with a ``price`` column (see :meth:`price_frame`);
        returns a DataFrame with ``volatility``, ``status`` and the inputs used."""
        names = tuple(n for n in INPUT_COLUMNS if n != "volatility") + ("price",)
        result = self.implied_vol_batch(model=model, **self._frame_inputs(df, names, kwargs))
        return result.to_frame(index=df.index)

    @staticmethod
    def _frame_inputs(df, names, overrides) -> dict:
        _pandas()
        inputs: dict[str, Any] = {}
        for name in names:
            if name in overrides or name not in df.columns:
                continue
            column = df[name]
            if name in ("valuation_date", "day_count"):
                distinct = column.dropna().unique()
                if len(distinct) != 1:
                    raise ValueError(f"{name}: the batch takes one value, the frame has {len(distinct)}")
                inputs[name] = distinct[0]
            else:
                inputs[name] = column.to_numpy()
        inputs.update(overrides)
        return inputs

    # ------------------------------------------------------------------ machinery
    def _prepare(self, message_type, *, model, measures, threads, effective_inputs, columns) -> _PreparedBatch:
        base = message_type(
            model=model_code(model),
            output_encoding=common_pb2.ENCODING_RAW,
            omit_effective_inputs=not effective_inputs,
            threads=int(threads),
        )
        if measures is not None:
            base.measures.extend(measures)
        columns = dict(columns)
        unknown = set(columns) - set(INPUT_COLUMNS) - {"price"}
        if unknown:
            raise TypeError(f"unknown batch inputs: {sorted(unknown)}")
        doubles: dict[str, np.ndarray] = {}
        ints: dict[str, np.ndarray] = {}

        if columns.get("option_type") is None:
            raise ValueError("option_type is required")
        ints["option_type"] = C.as_option_type_column(columns["option_type"])
        for name in ("strike", "volatility", "price"):
            if name in columns:
                if columns[name] is None:
                    raise ValueError(f"{name} is required")
                doubles[name] = C.as_float_column(name, columns[name])

        time_to_expiry, expiry_date = columns.get("time_to_expiry"), columns.get("expiry_date")
        if (time_to_expiry is None) == (expiry_date is None):
            raise ValueError("give exactly one of time_to_expiry= or expiry_date=")
        if time_to_expiry is not None:
            doubles["time_to_expiry"] = C.as_float_column("time_to_expiry", time_to_expiry)
            for name in ("valuation_date", "day_count"):
                if columns.get(name) is not None:
                    raise ValueError(f"{name} goes with expiry_date=, not time_to_expiry=")
        else:
            if columns.get("valuation_date") is None:
                raise ValueError("expiry_date= needs valuation_date=")
            ints["expiry_date"] = C.as_date_column("expiry_date", expiry_date)
            base.european.valuation_date.CopyFrom(
                C.date_message(C.as_date("valuation_date", columns["valuation_date"]))
            )
            base.european.day_count = DAY_COUNTS[day_count_name(columns.get("day_count") or "ACT/365F")]

        spot, forward = columns.get("spot"), columns.get("forward")
        if (spot is None) == (forward is None):
            raise ValueError("give exactly one of spot= or forward=")
        if spot is not None:
            doubles["spot"] = C.as_float_column("spot", spot)
        else:
            doubles["forward"] = C.as_float_column("forward", forward)
        doubles["rate"] = C.as_float_column("rate", 0.0 if columns.get("rate") is None else columns["rate"])
        if columns.get("dividend_yield") is not None:
            doubles["dividend_yield"] = C.as_float_column("dividend_yield", columns["dividend_yield"])
        return _PreparedBatch(message_type, base, doubles, ints)

    def _execute(self, prepared: _PreparedBatch, method, response_bytes_per_row, columns_of, names, timeout):
        self._check_open()
        timeout = resolve_timeout(timeout, self.timeout)
        started = time.perf_counter()
        rows = prepared.rows
        plan = self.plan(
            rows, request_bytes_per_row=prepared.request_bytes_per_row, response_bytes_per_row=response_bytes_per_row
        )
        single = len(plan) == 1
        out: dict[str, np.ndarray] = {} if single else {name: np.empty(rows) for name in names}
        status = None if single else np.empty(rows, dtype=np.int32)
        inputs: dict[str, np.ndarray] = {}
        errors: list[RowError] = []
        totals = {"error_count": 0, "compute": 0.0, "sent": 0, "received": 0, "threads": 0}
        priced_by: list[ModelRef] = []
        methods: dict[str, str] = {}
        stderrs: dict[str, np.ndarray] = {}

        def build(start: int, stop: int) -> bytes:
            payload = prepared.payload(start, stop, self._payloads)
            totals["sent"] += len(payload)
            return payload

        def on_response(start: int, stop: int, answer) -> None:
            nonlocal status
            response, size = answer
            n = stop - start
            if response.rows and response.rows != n:
                raise PricingError(
                    grpc.StatusCode.INTERNAL, f"the server answered {response.rows} rows for a chunk of {n}"
                )
            totals["received"] += size
            got = dict(columns_of(response))
            for c in getattr(response, "columns", ()):
                name = MEASURE_NAMES.get(c.measure, str(c.measure))
                if c.method and name not in methods:
                    methods[name] = _METHOD_NAMES.get(c.method, str(c.method))
                if c.HasField("standard_error"):
                    se = C.decode_double(c.standard_error, n)
                    if single:
                        stderrs[name] = se
                    else:
                        _place(stderrs.setdefault(name, np.full(rows, np.nan)), start, se)
            for name in names:
                if name not in got:
                    raise PricingError(grpc.StatusCode.INTERNAL, f"the response lacks the {name!r} column")
                values = C.decode_double(got[name], n)
                if single:
                    out[name] = values
                else:
                    _place(out[name], start, values)
            if single:
                status = (
                    C.decode_int32(response.status, n) if response.HasField("status") else np.zeros(n, np.int32)
                )
            elif response.HasField("status"):
                status[start:stop] = C.decode_int32(response.status, n)
            else:  # every row of the chunk priced
                status[start:stop] = 0
            if response.HasField("inputs"):
                for name in EFFECTIVE_INPUTS:
                    column = getattr(response.inputs, name)
                    values = C.decode_double(column, n)
                    if single:
                        inputs[name] = values
                    else:
                        if name not in inputs:
                            inputs[name] = np.full(rows, np.nan)  # NaN where a chunk sent none
                        _place(inputs[name], start, values)
            errors.extend(
                RowError(row=start + e.row, code=status_code(e.code), field=e.field, message=e.message)
                for e in response.errors
            )
            totals["error_count"] += response.error_count
            totals["compute"] += response.stats.compute_seconds
            totals["threads"] = max(totals["threads"], response.stats.threads)
            if not priced_by:
                priced_by.append(_convert.model_ref(response.priced_by))

        self.run_chunks(plan, build, method, on_response, timeout=timeout)
        errors.sort(key=lambda e: e.row)
        if status is None:  # an empty batch
            status = np.zeros(0, np.int32)
            out = {name: np.zeros(0) for name in names}
        return BatchResult(
            rows=rows,
            columns=out,
            status=status,
            errors=errors,
            error_count=int(totals["error_count"]),
            inputs=inputs,
            priced_by=priced_by[0] if priced_by else ModelRef(),
            methods=methods,
            standard_errors=stderrs,
            stats=BatchStats(
                chunks=len(plan),
                compute_seconds=totals["compute"],
                wall_seconds=time.perf_counter() - started,
                bytes_sent=int(totals["sent"]),
                bytes_received=int(totals["received"]),
                threads=int(totals["threads"]),
            ),
        )

    def run_chunks(
        self,
        plan: C.ChunkPlan,
        build: Callable[[int, int], Any],
        method,
        on_response: Callable[[int, int, Any], None],
        *,
        timeout: float | None,
    ) -> None:
        """Send ``build(start, stop)`` for every chunk of ``plan`` through the unary
        multi-callable ``method``, at most ``max_in_flight`` at once, and hand each answer
        to ``on_response(start, stop, response)`` (in the calling thread, in completion
        order). A chunk that fails UNAVAILABLE (its replica went away: killed, drained,
        unreachable) is sent again, on whichever replica the channel picks, up to
        ``CHUNK_RESENDS`` times: pricing is idempotent and each chunk's answer is placed once,
        so nothing is lost or counted twice. Any other failure cancels the chunks still in
        flight and raises :class:`PricingError`."""
        done: queue.SimpleQueue = queue.SimpleQueue()
        in_flight: dict[Any, tuple[int, int]] = {}
        ranges = iter(plan.ranges)
        resend: list[tuple[int, int]] = []
        attempts: dict[tuple[int, int], int] = {}
        bar = self._progress_bar(plan.rows)
        metadata = _tracing.metadata()  # every chunk in the caller's trace

        def submit() -> bool:
            chunk = resend.pop() if resend else next(ranges, None)
            if chunk is None:
                return False
            future = method.future(build(*chunk), timeout=timeout, metadata=metadata)
            in_flight[future] = chunk
            future.add_done_callback(done.put)
            return True

        try:
            for _ in range(self.max_in_flight):
                if not submit():
                    break
            while in_flight:
                future = done.get()
                chunk = in_flight.pop(future)
                try:
                    response = future.result()
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.UNAVAILABLE and attempts.get(chunk, 0) < CHUNK_RESENDS:
                        attempts[chunk] = attempts.get(chunk, 0) + 1
                        self.resent_chunks += 1
                        resend.append(chunk)
                        submit()
                        continue
                    raise PricingError.from_rpc_error(e) from None
                on_response(chunk[0], chunk[1], response)
                if bar is not None:
                    bar.update(chunk[1] - chunk[0])
                submit()
        finally:
            for future in in_flight:
                future.cancel()
            if bar is not None:
                bar.close()

    def _progress_bar(self, total: int, unit: str = "row"):
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn("progress=True needs tqdm: pip install 'pricegrid[progress]'", stacklevel=4)
            return None
        return tqdm(total=total, unit=unit, unit_scale=True, desc="pricegrid")

    def _run_progress(self, progress):
        """``progress`` as given, or with ``progress=True`` a bar over the run's trades (made
        when the first block says how many); and a function that closes the bar."""
        if progress is not None or not self.progress:
            return progress, lambda: None
        bars: list = []

        def advance(done: int, total: int) -> None:
            if not bars:
                bars.append(self._progress_bar(total, unit="trade"))
            if bars[0] is not None:
                bars[0].update(done - bars[0].n)

        return advance, lambda: bars and bars[0] is not None and bars[0].close()

    # ------------------------------------------------------------------ VaR backtesting
    def backtest(self, pnl=None, var=None, *, history: str = "", level: float = 0.99, window: int = 250,
                 labels=None, var_convention: str | None = None, timeout=USE_CLIENT_DEFAULT) -> BacktestResult:
        """Backtest a VaR model over a series: ``pnl[i]`` the day's P&L (losses negative) and
        ``var[i]`` the VaR forecast for that day (arrays, lists or pandas Series, equal
        lengths, in time order); ``labels`` one per day (dates become ISO dates), echoed with
        the exceptions. ``var_convention`` "loss" (the default): VaR is a loss amount >= 0,
        an exception is ``-pnl > var``; "pnl_quantile": VaR is the P&L quantile <= 0, an
        exception is ``pnl < var``. ``history``: a stored backtest history's name or id
        (:meth:`put_backtest_history`), whose days come first (then ``pnl`` and ``var``, if
        given); ``var_convention`` None then takes the history's. Returns the result over
        the whole series: Kupiec's POF, Christoffersen's independence and conditional
        coverage, the Basel traffic light of the latest ``window`` days (see
        :class:`BacktestResult`). ``timeout``: the whole stream's deadline (default: the
        client's)."""
        self._check_open()
        if (pnl is None) != (var is None):
            raise ValueError("give pnl and var together (or neither, with a history)")
        if pnl is None and not history:
            raise ValueError("nothing to backtest: give pnl and var, or a stored history")
        with self.backtester(level=level, window=window, var_convention=var_convention, history=history,
                             timeout=resolve_timeout(timeout, self.timeout)) as running:
            return running.result if pnl is None else running.add(pnl, var, labels)

    def backtester(self, *, level: float = 0.99, window: int = 250, var_convention: str | None = None,
                   history: str = "", timeout: float | None = None) -> Backtester:
        """A running backtest on one stream: ``.add(pnl, var, labels=None)`` sends the next
        days and returns the result over all days so far (a context manager; ``timeout``:
        the stream's deadline, None for none). With ``history`` (a stored history's name or
        id) the stream starts from its days and ``.result`` is their result at once."""
        self._check_open()
        return Backtester(risk_pb2_grpc.RiskServiceStub(self.channel), level=level, window=window,
                          var_convention=var_convention, history=history, timeout=timeout)

    def put_backtest_history(self, name: str, pnl, var, labels=None, *, var_convention: str | None = None,
                             append: bool = False, base_id: str = "", description: str = "",
                             timeout=USE_CLIENT_DEFAULT) -> "_backtest.StoredBacktestHistory":
        """Store days of P&L and VaR (``labels``: one per day, or None) as a new version of the
        backtest history ``name``; ``var_convention`` None: "loss" (appending: the stored
        one's). ``append=True``: the new version is the newest one's days followed by these
        (a retried call appends again); ``base_id``: appended to that version, refused
        (ABORTED) when it is no longer the newest, answered with the stored version when
        these days were appended to it already. Returns the version (``.id``,
        ``.observations``, ``.exceptions``, ...) and whether it was new (``.created``)."""
        self._check_open()
        request = _backtest.history_request(name, pnl, var, labels, var_convention=var_convention, append=append,
                                            base_id=base_id, description=description)
        reply = self._risk_unary("PutBacktestHistory", request, timeout)
        return _backtest.stored_history(reply.backtest_history, created=reply.created)

    def get_backtest_history(self, name_or_id: str, *, timeout=USE_CLIENT_DEFAULT
                             ) -> "_backtest.StoredBacktestHistory":
        """A stored backtest history (the newest version of a name, or an id), with its days."""
        self._check_open()
        reply = self._risk_unary("GetBacktestHistory", risk_pb2.GetBacktestHistoryRequest(
            backtest_history=name_or_id), timeout)
        return _backtest.stored_history(reply.backtest_history, with_content=True)

    def list_backtest_histories(self, name: str = "", *, limit: int = 100, timeout=USE_CLIENT_DEFAULT) -> list:
        """Stored backtest histories' versions (summaries), newest first."""
        self._check_open()
        reply = self._risk_unary("ListBacktestHistories", risk_pb2.ListBacktestHistoriesRequest(
            name=name, limit=limit), timeout)
        return [_backtest.stored_history(x) for x in reply.backtest_histories]

    def delete_backtest_history(self, history_id: str, *, timeout=USE_CLIENT_DEFAULT) -> bool:
        """Delete one stored version; False when there was none."""
        self._check_open()
        return self._risk_unary("DeleteBacktestHistory", risk_pb2.DeleteBacktestHistoryRequest(id=history_id),
                                timeout).deleted

    def scenario_risk(self, *, progress: Callable[[int, int], None] | None = None, timeout=USE_CLIENT_DEFAULT,
                      shards: int = 1, **kwargs: Any) -> ScenarioRiskResult:
        """Revalue a portfolio under a scenario set on the server (RiskService.RunScenarioRisk)
        and read the streamed result: the arguments as for :meth:`scenario_request` (the
        trades, the scenarios, the output and measures wanted). ``progress(trades_done,
        trades)`` is called per block of trades computed (the client's ``progress=True``: a
        tqdm bar). One stream; ``timeout`` its deadline.

        ``shards`` > 1 splits the trades into that many slices, each run on its own stream
        (spread over the target's replicas round robin), at once; a slice whose replica goes
        away (UNAVAILABLE) is run again elsewhere, up to 3 times. The result is the whole
        run's: cubes and per-trade figures in trade order, P&L summed, VaR and ES of the sums
        (the server's estimator). Not with es_attribution or the Taylor modes."""
        self._check_open()
        request = self.scenario_request(**kwargs)
        call = self.channel.unary_stream(_RUN_SCENARIO_RISK, request_serializer=_serialize,
                                         response_deserializer=_scenarios.read_part)
        progress, close = self._run_progress(progress)
        try:
            if shards > 1:
                return self._sharded(call, request, shards, progress, resolve_timeout(timeout, self.timeout))
            return _scenarios.collect(call, request, resolve_timeout(timeout, self.timeout), progress)
        finally:
            close()

    def _sharded(self, call, request, shards: int, progress, timeout) -> ScenarioRiskResult:
        import concurrent.futures
        import threading

        if request.es_attribution or request.revaluation in (risk_pb2.REVALUATION_MODE_TAYLOR,
                                                             risk_pb2.REVALUATION_MODE_HYBRID):
            raise ValueError("shards: a run with es_attribution or a Taylor mode runs whole (shards=1)")
        if request.HasField("portfolio"):
            total = _scenarios.batch_rows(request.portfolio)
        elif request.HasField("books"):
            total = sum(_scenarios.batch_rows(b.trades) for b in request.books.books)
        else:
            total = self.get_portfolio(request.stored_portfolio, timeout=timeout).trades
        edges = np.linspace(0, total, min(shards, total) + 1).astype(np.int64)
        ranges = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
        done = {r: 0 for r in ranges}
        lock = threading.Lock()

        def run(r: tuple[int, int]) -> ScenarioRiskResult:
            part = risk_pb2.RunScenarioRiskRequest()
            part.CopyFrom(request)
            part.trade_start, part.trade_stop = r

            def advance(n_done: int, _n: int) -> None:
                if progress is not None:
                    with lock:
                        done[r] = n_done
                        progress(sum(done.values()), total)

            for attempt in range(CHUNK_RESENDS + 1):
                try:
                    return _scenarios.collect(call, part, timeout, advance)
                except PricingError as e:
                    if e.code != grpc.StatusCode.UNAVAILABLE or attempt == CHUNK_RESENDS:
                        raise
                    with lock:
                        self.resent_chunks += 1
                        done[r] = 0
            raise AssertionError("unreachable")

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(ranges)) as pool:
            parts = list(pool.map(run, ranges))
        return _scenarios.merged(parts, request)

    def put_portfolio(self, name: str, books: Iterable[Any], *, description: str = "",
                      timeout=USE_CLIENT_DEFAULT) -> "_scenarios.StoredPortfolio":
        """Store ``books`` (from :meth:`book`) as a new version of the portfolio ``name``."""
        self._check_open()
        request = risk_pb2.PutPortfolioRequest(name=name, description=description,
                                               portfolio=risk_pb2.Portfolio(books=list(books)))
        reply = self._risk_unary("PutPortfolio", request, timeout)
        return _scenarios.stored_portfolio(reply.portfolio, created=reply.created)

    def get_portfolio(self, name_or_id: str, *, timeout=USE_CLIENT_DEFAULT) -> "_scenarios.StoredPortfolio":
        """A stored portfolio (the newest version of a name, or an id), with its books."""
        self._check_open()
        reply = self._risk_unary("GetPortfolio", risk_pb2.GetPortfolioRequest(portfolio=name_or_id), timeout)
        return _scenarios.stored_portfolio(reply.portfolio, with_content=True)

    def list_portfolios(self, name: str = "", *, limit: int = 100, timeout=USE_CLIENT_DEFAULT) -> list:
        """Stored portfolios' versions (summaries), newest first."""
        self._check_open()
        reply = self._risk_unary("ListPortfolios", risk_pb2.ListPortfoliosRequest(name=name, limit=limit), timeout)
        return [_scenarios.stored_portfolio(p) for p in reply.portfolios]

    def delete_portfolio(self, portfolio_id: str, *, timeout=USE_CLIENT_DEFAULT) -> bool:
        """Delete one stored version; False when there was none."""
        self._check_open()
        return self._risk_unary("DeletePortfolio", risk_pb2.DeletePortfolioRequest(id=portfolio_id), timeout).deleted

    def stresses(self, *, timeout=USE_CLIENT_DEFAULT) -> "risk_pb2.ListStressesResponse":
        """The server's stress catalogue: each stress's window, figures, sources and sizes per
        factor (``.stresses``), the factors (``.factors``) and how figures become shifts
        (``.notes``)."""
        self._check_open()
        return self._risk_unary("ListStresses", risk_pb2.ListStressesRequest(), timeout)

    def put_scenario_set(self, name: str, shifts: Iterable[Shift], sizes: Any = None, labels: Iterable[str] = (), *,
                         history: Any = None, description: str = "", timeout=USE_CLIENT_DEFAULT):
        """Store a named scenario set (shifts x sizes with labels, or a history as for
        :meth:`scenario_risk`), run later by name through ``stresses``. Returns the stored
        version (``.id``, ``.scenarios``, ...) and whether it was new (``.created``)."""
        self._check_open()
        msg = _scenarios.scenario_set(
            list(shifts), sizes, list(labels),
            _scenarios.history_of(history))
        msg.ClearField("smile")
        reply = self._risk_unary("PutScenarioSet", risk_pb2.PutScenarioSetRequest(
            name=name, description=description, scenario_set=msg), timeout)
        return _scenarios.stored_set(reply.scenario_set, created=reply.created)

    def get_scenario_set(self, name_or_id: str, *, timeout=USE_CLIENT_DEFAULT):
        """A stored scenario set (the newest version of a name, or an id), with its content."""
        self._check_open()
        reply = self._risk_unary("GetScenarioSet", risk_pb2.GetScenarioSetRequest(scenario_set=name_or_id), timeout)
        return _scenarios.stored_set(reply.scenario_set, with_content=True)

    def list_scenario_sets(self, name: str = "", *, limit: int = 100, timeout=USE_CLIENT_DEFAULT) -> list:
        self._check_open()
        reply = self._risk_unary("ListScenarioSets", risk_pb2.ListScenarioSetsRequest(name=name, limit=limit), timeout)
        return [_scenarios.stored_set(x) for x in reply.scenario_sets]

    def delete_scenario_set(self, set_id: str, *, timeout=USE_CLIENT_DEFAULT) -> bool:
        self._check_open()
        return self._risk_unary("DeleteScenarioSet", risk_pb2.DeleteScenarioSetRequest(id=set_id), timeout).deleted

    def _risk_unary(self, method: str, request, timeout):
        stub = risk_pb2_grpc.RiskServiceStub(self.channel)
        try:
            return getattr(stub, method)(request, timeout=resolve_timeout(timeout, self.timeout),
                                         metadata=_tracing.metadata())
        except grpc.RpcError as e:
            raise PricingError.from_rpc_error(e) from None

    def sensitivities(
        self,
        *,
        snapshot_id: str = "",
        underlying_id: str = "",
        model: str | int | None = None,
        shifts: Iterable[Shift],
        bumps: Iterable[float],
        scheme: str = "central",
        smile: str = "sticky_strike",
        quantity: Any = None,
        trade_ids: Iterable[str] | None = None,
        cross_gamma: bool = False,
        instrument: str = "european",
        books: Iterable[Any] | None = None,
        portfolio: str = "",
        timeout=USE_CLIENT_DEFAULT,
        **columns: Any,
    ):
        """Bucketed delta and gamma of every trade per component of ``shifts`` (one bump size
        per shift, in its units) by full revaluation on the server (RiskService.Sensitivities),
        ``scheme`` "central", "forward" or "backward"; the trades as for :meth:`scenario_risk`;
        with ``cross_gamma``, every second cross derivative too (``result.cross_gamma``,
        trades x components x components).
        Returns a SensitivitiesResult."""
        self._check_open()
        trades = self._trades(books, portfolio, instrument, model, snapshot_id, underlying_id, columns)
        request = _scenarios.sensitivities_request(
            **trades, quantity=quantity, trade_ids=None if trade_ids is None else list(trade_ids), shifts=list(shifts),
            bumps=list(bumps), scheme=scheme, smile=smile, cross_gamma=cross_gamma)
        stub = risk_pb2_grpc.RiskServiceStub(self.channel)
        try:
            reply = stub.Sensitivities(request, timeout=resolve_timeout(timeout, self.timeout),
                                       metadata=_tracing.metadata())
        except grpc.RpcError as e:
            raise PricingError.from_rpc_error(e) from None
        return _scenarios.sensitivities_result(reply)

    def worst_case(
        self,
        *,
        snapshot_id: str = "",
        underlying_id: str = "",
        model: str | int | None = None,
        shifts: Iterable[Shift],
        covariance: Any,
        level: float | None = None,
        loss: float | None = None,
        dof: float | None = None,
        smile: str = "sticky_strike",
        quantity: Any = None,
        trade_ids: Iterable[str] | None = None,
        max_iterations: int | None = None,
        tolerance: float | None = None,
        max_level: float | None = None,
        radius_steps: int | None = None,
        label: str = "worst-case",
        instrument: str = "european",
        books: Iterable[Any] | None = None,
        portfolio: str = "",
        timeout=USE_CLIENT_DEFAULT,
        **columns: Any,
    ):
        """The worst plausible scenario by full revaluation on the server
        (RiskService.WorstCase): the largest loss over the ellipsoid x' S^-1 x <= c of moves
        of the components of ``shifts`` (``covariance`` S, k x k, over the horizon; c the
        chi-square ``level``-quantile, 0.99 by default, with ``dof`` degrees of freedom, k
        by default), or with ``loss`` the reverse question: the smallest ellipsoid whose
        worst loss reaches it. The trades as for :meth:`scenario_risk`. Returns a
        WorstCaseResult (``result.scenario_kwargs()``: the move as :meth:`scenario_risk`'s
        arguments)."""
        self._check_open()
        trades = self._trades(books, portfolio, instrument, model, snapshot_id, underlying_id, columns)
        request = _scenarios.worst_case_request(
            **trades, quantity=quantity, trade_ids=None if trade_ids is None else list(trade_ids),
            shifts=list(shifts), covariance=covariance, level=level, loss=loss, dof=dof, smile=smile,
            max_iterations=max_iterations, tolerance=tolerance, max_level=max_level, radius_steps=radius_steps,
            label=label)
        stub = risk_pb2_grpc.RiskServiceStub(self.channel)
        try:
            reply = stub.WorstCase(request, timeout=resolve_timeout(timeout, self.timeout),
                                   metadata=_tracing.metadata())
        except grpc.RpcError as e:
            raise PricingError.from_rpc_error(e) from None
        return _scenarios.worst_case_result(reply)

    def parametric_var(self, deltas, covariance, *, factors=None, books=None, gammas=None,
                       method: str = "delta_normal", levels: Iterable[float] = (0.99,),
                       timeout=USE_CLIENT_DEFAULT) -> list:
        """Parametric VaR (RiskService.ParametricVar) of books given by ``deltas`` ((factors,)
        or (books, factors)) and optionally ``gammas`` ((factors, factors) or (books,
        factors, factors)) against the factors' ``covariance`` over the horizon: "delta_normal",
        "delta_gamma_normal" or "cornish_fisher". Returns a BookVar per book."""
        self._check_open()
        request = _scenarios.parametric_request(deltas, covariance, factors=factors, books=books, gammas=gammas,
                                                method=method, levels=list(levels))
        stub = risk_pb2_grpc.RiskServiceStub(self.channel)
        try:
            reply = stub.ParametricVar(request, timeout=resolve_timeout(timeout, self.timeout),
                                       metadata=_tracing.metadata())
        except grpc.RpcError as e:
            raise PricingError.from_rpc_error(e) from None
        return _scenarios.parametric_result(reply)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._payloads.clear()
            if self._owns_channel:
                self.channel.close()

    def __enter__(self) -> "RiskClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the client is closed")
