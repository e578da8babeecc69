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
"""

from __future__ import annotations

import grpc

from pricegrid.server.domain import backtest as bt
from pricegrid.server.domain.errors import Violations, invalid
from pricegrid.server.rpc.admission import Lane, StreamGate
from pricegrid.server.rpc.interceptors import Undecodable, safe_deserializer, wrap_stream
from pricegrid.server.rpc.observe import RpcObserver
from pricegrid.server.rpc.requests import column_length, doubles, unknown_enums
from pricegrid.server.service.backtest import Backtest, BacktestLimits
from pricegrid.v1 import risk_pb2 as rpb

SERVICE = "pricegrid.v1.RiskService"
_PARSE_BACKTEST = safe_deserializer(rpb.BacktestRequest)
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


# ------------------------------------------------------------------ servicer
class _Stream:
    """One Backtest stream's state: its running backtest, once the first message came."""

    __slots__ = ("backtest",)

    def __init__(self):
        self.backtest: Backtest | None = None


class RiskServicer:
    def __init__(self, limits: BacktestLimits, lane: Lane):
        self.limits = limits
        self.lane = lane  # where each message is read and added (see the module docstring)

    async def Backtest(self, requests, context, call, counter):
        stream = _Stream()
        lane = self.lane
        async for data in requests:
            counter[0] += 1
            refused = lane.too_large(len(data), "a Backtest message")
            if refused is not None:
                raise refused
            yield await lane.run(call, self._message, stream, data)

    def _message(self, stream: _Stream, data: bytes) -> bytes:
        request = _PARSE_BACKTEST(data)
        if type(request) is Undecodable:
            raise request.error()
        if stream.backtest is None:
            settings = settings_of(request.settings) if request.HasField("settings") else bt.BacktestSettings()
            stream.backtest = Backtest(settings, self.limits)
        elif request.HasField("settings"):
            stream.backtest.confirm(settings_of(request.settings))
        backtest = stream.backtest
        backtest.check_size(max(column_length(request.pnl, 8, "pnl"), column_length(request.var, 8, "var")))
        pnl, var = doubles(request.pnl, "pnl"), doubles(request.var, "var")
        if len(var) != len(pnl) and not len(pnl):
            raise invalid("pnl", f"required: {len(var)} VaR values came without their P&L")
        result = backtest.add(pnl, var, list(request.labels))
        return result_message(result).SerializeToString()


def handlers(servicer: RiskServicer, observer: RpcObserver, *, streams: StreamGate, auth=None
             ) -> list[grpc.GenericRpcHandler]:
    """RiskService's methods behind the interceptors (size limit, log line, metrics, request
    ids, the one error table), counted among the server's open streams, behind ``auth`` (an
    Authorizer; None: no policy)."""
    path = f"/{SERVICE}/Backtest"
    methods = {
        "Backtest": grpc.stream_stream_rpc_method_handler(
            wrap_stream(path, servicer.Backtest, observer, streams=streams, auth=auth),
            request_deserializer=None, response_serializer=None,
        ),
    }
    return [grpc.method_handlers_generic_handler(SERVICE, methods)]
