"""VaR backtesting through RiskService.Backtest: results as dataclasses, and a running backtest
that keeps one stream open.

    >>> from pricegrid.clients import RiskClient
    >>> with RiskClient(target="127.0.0.1:50051") as risk:
    ...     r = risk.backtest(pnl, var, level=0.99, window=250, labels=dates)
    ...     r.traffic_light.zone, r.exceptions, r.kupiec_pof.p_value
    ...     with risk.backtester(level=0.99) as bt:         # one stream, day by day
    ...         for day in days:
    ...             r = bt.add(day.pnl, day.var, labels=[day.date])

A history kept on the server: put once, append each day, backtest by name (the stored days
first, then any sent with the call):

    >>> risk.put_backtest_history("desk/var99", pnl, var, labels=dates)
    >>> risk.put_backtest_history("desk/var99", [pnl_today], [var_today], labels=[today], append=True)
    >>> r = risk.backtest(history="desk/var99")

Sign convention (``var_convention``): ``"loss"`` (the default) takes VaR as a loss amount,
zero or positive, and a day is an exception when its loss exceeds it, ``-pnl > var``;
``"pnl_quantile"`` takes VaR as the P&L quantile, zero or negative, exception when
``pnl < var``. The statistics and their degenerate cases are described in
``proto/pricegrid/v1/risk.proto``.
"""

from __future__ import annotations

import datetime as dt
import queue
from dataclasses import dataclass
from typing import Iterable, Optional

import grpc
import numpy as np

from pricegrid.v1 import common_pb2
from pricegrid.v1 import risk_pb2 as rpb

from . import _tracing
from ._errors import PricingError

__all__ = ["BacktestException", "BacktestResult", "Backtester", "ExceptionTransitions", "LikelihoodRatioTest",
           "StoredBacktestHistory", "TrafficLight", "VAR_CONVENTIONS"]

#: observations per message our clients send (the server takes 100,000 by default)
MESSAGE_OBSERVATIONS = 50_000


def _names(enum, prefix: str) -> dict[int, str]:
    """The contract's enum values as lower-case names without their prefix (0: None)."""
    return {v.number: v.name.removeprefix(prefix).lower() for v in enum.DESCRIPTOR.values if v.number}


_ZONES = _names(rpb.TrafficLightZone, "TRAFFIC_LIGHT_ZONE_")
_STATUSES = _names(rpb.StatisticStatus, "STATISTIC_STATUS_")
_CONVENTION_NAMES = _names(rpb.VarConvention, "VAR_CONVENTION_")
#: var_convention names -> the contract's VarConvention values: "loss", "pnl_quantile"
VAR_CONVENTIONS = {name: number for number, name in _CONVENTION_NAMES.items()}


@dataclass(frozen=True, slots=True)
class LikelihoodRatioTest:
    """One test: ``status`` "ok", "degenerate" (computed by 0 ln 0 = 0 from data that cannot
    inform part of it; ``note`` says which) or "undefined" (``statistic`` and ``p_value``
    None; ``note`` says why)."""

    status: str
    statistic: Optional[float]
    p_value: Optional[float]
    degrees_of_freedom: int
    note: str = ""

    def rejects(self, size: float = 0.05) -> Optional[bool]:
        """Whether the test rejects the model at test size ``size`` (None: undefined)."""
        return None if self.p_value is None else self.p_value < size


@dataclass(frozen=True, slots=True)
class BacktestException:
    """An exception day: its index in the whole series (from 0), label, P&L and VaR as sent."""

    index: int
    label: str
    pnl: float
    var: float


@dataclass(frozen=True, slots=True)
class ExceptionTransitions:
    """Pairs of consecutive days by state (0 quiet, 1 exception): ``n01`` a quiet day then an exception."""

    n00: int = 0
    n01: int = 0
    n10: int = 0
    n11: int = 0


@dataclass(frozen=True, slots=True)
class TrafficLight:
    """The Basel zone of the latest window: ``zone`` "green", "yellow", "red" (None before
    the first observation); ``yellow_from``/``red_from`` the fewest exceptions in each zone
    for ``window_observations`` days; ``cumulative_probability`` P(X <= window_exceptions)."""

    zone: Optional[str]
    window_observations: int
    window_exceptions: int
    cumulative_probability: float
    yellow_from: int
    red_from: int


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """The running result over every observation sent so far."""

    observations: int
    exceptions: int
    expected_exceptions: float
    newest_exceptions: tuple[BacktestException, ...]
    kupiec_pof: LikelihoodRatioTest
    christoffersen_independence: LikelihoodRatioTest
    conditional_coverage: LikelihoodRatioTest
    transitions: ExceptionTransitions
    traffic_light: TrafficLight
    level: float
    window: int
    var_convention: str


@dataclass(frozen=True)
class StoredBacktestHistory:
    """A stored backtest history's version: ``observations`` days, ``exceptions`` of them
    exceptions (by ``var_convention``'s rule); its days (``pnl``, ``var``, ``labels``: None
    when it has none) from get_backtest_history only; ``created`` from put_backtest_history
    (False when the same days were already stored under the name)."""

    id: str
    name: str
    description: str
    stored_at: str
    observations: int
    exceptions: int
    var_convention: str
    pnl: Optional[np.ndarray] = None
    var: Optional[np.ndarray] = None
    labels: Optional[list] = None
    created: Optional[bool] = None


def _doubles(col) -> np.ndarray:
    if col.raw:
        return np.frombuffer(col.raw, dtype="<f8").astype(np.float64)
    return np.asarray(col.values, dtype=np.float64)


def stored_history(msg: rpb.StoredBacktestHistory, *, created=None, with_content: bool = False
                   ) -> StoredBacktestHistory:
    """The dataclass of a StoredBacktestHistory (its days with ``with_content``)."""
    pnl = var = labels = None
    if with_content:
        h = msg.history
        pnl, var, labels = _doubles(h.pnl), _doubles(h.var), (list(h.labels) or None)
    return StoredBacktestHistory(msg.id, msg.name, msg.description, msg.stored_at, msg.observations, msg.exceptions,
                                 _CONVENTION_NAMES.get(msg.var_convention, str(msg.var_convention)), pnl, var, labels,
                                 created)


def history_request(name: str, pnl, var, labels=None, *, var_convention: Optional[str] = None, append: bool = False,
                    base_id: str = "", description: str = "") -> rpb.PutBacktestHistoryRequest:
    """A PutBacktestHistoryRequest (columns as raw float64; labels as :func:`_label` writes them)."""
    p, v = _column("pnl", pnl), _column("var", var)
    if len(p) != len(v):
        raise ValueError(f"pnl has {len(p)} values and var {len(v)}: one VaR per day")
    names = [] if labels is None else [_label(x) for x in labels]
    if names and len(names) != len(p):
        raise ValueError(f"{len(names)} labels for {len(p)} observations")
    history = rpb.BacktestHistory(pnl=common_pb2.DoubleColumn(raw=p.tobytes()),
                                  var=common_pb2.DoubleColumn(raw=v.tobytes()), labels=names,
                                  var_convention=_convention(var_convention))
    return rpb.PutBacktestHistoryRequest(name=name, description=description, history=history, append=append,
                                         base_id=base_id)


def backtest_messages(pnl, var, labels=None, *, history: str = "", level: float = 0.99, window: int = 250,
                      var_convention: Optional[str] = None,
                      message_observations: int = MESSAGE_OBSERVATIONS) -> list[rpb.BacktestRequest]:
    """A whole backtest's messages: the settings (and ``history``) with the first; the days
    in pieces of at most ``message_observations`` (none: one message without days)."""
    if (pnl is None) != (var is None):
        raise ValueError("give pnl and var together (or neither, with a history)")
    if pnl is None and not history:
        raise ValueError("nothing to backtest: give pnl and var, or a stored history")
    p = _column("pnl", [] if pnl is None else pnl)
    v = _column("var", [] if var is None else var)
    if len(p) != len(v):
        raise ValueError(f"pnl has {len(p)} values and var {len(v)}: one VaR per day")
    names = None if labels is None else [_label(x) for x in labels]
    if names is not None and len(names) != len(p):
        raise ValueError(f"{len(names)} labels for {len(p)} observations")
    messages = _day_messages(p, v, names, message_observations)
    messages[0].settings.CopyFrom(rpb.BacktestSettings(level=level, window=window,
                                                       var_convention=_convention(var_convention)))
    messages[0].history = history
    return messages


def _day_messages(p: np.ndarray, v: np.ndarray, names: Optional[list], step: int) -> list[rpb.BacktestRequest]:
    """The days in messages of at most ``step`` (none: one message without days)."""
    messages = []
    for start in range(0, len(p), step) if len(p) else [0]:
        message = rpb.BacktestRequest(pnl=common_pb2.DoubleColumn(raw=p[start:start + step].tobytes()),
                                      var=common_pb2.DoubleColumn(raw=v[start:start + step].tobytes()))
        if names is not None:
            message.labels.extend(names[start:start + step])
        messages.append(message)
    return messages


def _test(t) -> LikelihoodRatioTest:
    return LikelihoodRatioTest(_STATUSES.get(t.status, str(t.status)), t.statistic if t.HasField("statistic") else None,
                               t.p_value if t.HasField("p_value") else None, t.degrees_of_freedom, t.note)


def result_of(reply: rpb.BacktestResponse) -> BacktestResult:
    """The dataclass of a BacktestResponse."""
    light, t, s = reply.traffic_light, reply.transitions, reply.settings
    return BacktestResult(
        observations=reply.observations,
        exceptions=reply.exceptions,
        expected_exceptions=reply.expected_exceptions,
        newest_exceptions=tuple(BacktestException(e.index, e.label, e.pnl, e.var) for e in reply.newest_exceptions),
        kupiec_pof=_test(reply.kupiec_pof),
        christoffersen_independence=_test(reply.christoffersen_independence),
        conditional_coverage=_test(reply.conditional_coverage),
        transitions=ExceptionTransitions(t.n00, t.n01, t.n10, t.n11),
        traffic_light=TrafficLight(_ZONES.get(light.zone), light.window_observations, light.window_exceptions,
                                   light.cumulative_probability, light.yellow_from, light.red_from),
        level=s.level,
        window=s.window,
        var_convention=_CONVENTION_NAMES.get(s.var_convention, str(s.var_convention)),
    )


def _label(value) -> str:
    """A day's label: dates as ISO dates (a datetime at midnight too), anything else as str."""
    if isinstance(value, np.datetime64):
        day = value.astype("datetime64[D]")
        return str(day) if day == value else str(value)
    if isinstance(value, dt.datetime):
        naive_midnight = value.tzinfo is None and value.time() == dt.time()
        return value.date().isoformat() if naive_midnight else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _column(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype="<f8")
    if array.ndim > 1:
        raise ValueError(f"{name} must be one-dimensional (got shape {array.shape})")
    return array.reshape(-1)


def _convention(name: Optional[str]) -> int:
    """The contract's number of a var_convention name (None: unset, 0)."""
    if name is None:
        return 0
    if name not in VAR_CONVENTIONS:
        raise ValueError(f"unknown var_convention {name!r}; expected one of {sorted(VAR_CONVENTIONS)}")
    return VAR_CONVENTIONS[name]


class Backtester:
    """A running backtest on one RiskService.Backtest stream (made by
    :meth:`RiskClient.backtester`): each :meth:`add` sends the next observations and returns
    the result over everything sent so far. The settings go with the first message. A
    refused message (bad values, a cap) ends the stream: :class:`PricingError` then, and
    again on any later call.

    With ``history`` (a stored backtest history's name or id) the stream starts from its
    days: the first message, sent at once, names it, and ``result`` is the result over them
    before any :meth:`add` (an unknown history raises :class:`PricingError` here).
    ``var_convention`` None: the history's (without one, "loss")."""

    def __init__(self, stub, *, level: float = 0.99, window: int = 250, var_convention: Optional[str] = None,
                 history: str = "", timeout: float | None = None,
                 message_observations: int = MESSAGE_OBSERVATIONS) -> None:
        if message_observations < 1:
            raise ValueError("message_observations must be >= 1")
        self._settings = rpb.BacktestSettings(level=level, window=window, var_convention=_convention(var_convention))
        self._message_observations = message_observations
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._replies = stub.Backtest(iter(self._requests.get, None), timeout=timeout, metadata=_tracing.metadata())
        self._first = True
        self._closed = False
        self._error: PricingError | None = None
        #: the latest result (None before the first add, unless the stream started from a history)
        self.result: BacktestResult | None = None
        if history:
            self._first = False
            self._send([rpb.BacktestRequest(settings=self._settings, history=history)])

    def add(self, pnl, var, labels: Optional[Iterable] = None) -> BacktestResult:
        """Send the next observations (P&L and that day's VaR, equal lengths, in time order;
        ``labels``: one per day, or None) and return the running result. A long series goes
        as several messages of at most ``message_observations``."""
        if self._error is not None:
            raise self._error
        if self._closed:
            raise RuntimeError("the backtest is closed")
        p, v = _column("pnl", pnl), _column("var", var)
        names = None if labels is None else [_label(x) for x in labels]
        if len(p) != len(v):
            raise ValueError(f"pnl has {len(p)} values and var {len(v)}: one VaR per day")
        if names is not None and len(names) != len(p):
            raise ValueError(f"{len(names)} labels for {len(p)} observations")
        messages = _day_messages(p, v, names, self._message_observations)
        if self._first:
            messages[0].settings.CopyFrom(self._settings)
            self._first = False
        return self._send(messages)

    def _send(self, messages: list) -> BacktestResult:
        for message in messages:  # sent ahead of the replies: the stream pipelines them
            self._requests.put(message)
        try:
            for _ in messages:
                self.result = result_of(next(self._replies))
        except grpc.RpcError as e:
            self._error = PricingError.from_rpc_error(e)
            self._requests.put(None)
            raise self._error from None
        except StopIteration:  # pragma: no cover - the server answers every message
            self._error = PricingError(grpc.StatusCode.INTERNAL, "the server ended the backtest stream early")
            raise self._error from None
        return self.result

    def close(self) -> None:
        """End the stream (the server's result so far stays in ``result``)."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(None)
        try:
            for _ in self._replies:
                pass
        except grpc.RpcError:
            pass

    def __enter__(self) -> "Backtester":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
