"""RiskService.Backtest on a real server (127.0.0.1, ephemeral port): one reply per message
with the running result; settings fixed by the first message; each bad input ends the
stream with INVALID_ARGUMENT naming the field and the observation, after the replies
already sent; the caps with RESOURCE_EXHAUSTED; the call metered as any other."""

from __future__ import annotations

import queue
import time

import grpc
import numpy as np
import pytest

from pricegrid.server.domain.backtest import BacktestSettings, VarConvention
from pricegrid.server.rpc.risk import result_message
from pricegrid.server.service.backtest import backtest
from pricegrid.v1 import risk_pb2 as rpb
from pricegrid.v1 import risk_pb2_grpc
from tests.conftest import start_server
from tests.server.richerr import violations


class Stream:
    """A Backtest stream driven one message at a time."""

    def __init__(self, stub, **kwargs):
        self.outbox: queue.Queue = queue.Queue()
        self.replies = stub.Backtest(iter(self.outbox.get, None), timeout=30, **kwargs)

    def send(self, message) -> rpb.BacktestResponse:
        self.outbox.put(message)
        return next(self.replies)

    def fails(self, message) -> grpc.RpcError:
        self.outbox.put(message)
        with pytest.raises(grpc.RpcError) as e:
            next(self.replies)
        return e.value

    def close(self) -> list:
        self.outbox.put(None)
        return list(self.replies)


def request(pnl=(), var=(), *, labels=(), raw=False, **settings) -> rpb.BacktestRequest:
    msg = rpb.BacktestRequest(labels=list(labels))
    if raw:
        msg.pnl.raw = np.asarray(pnl, dtype="<f8").tobytes()
        msg.var.raw = np.asarray(var, dtype="<f8").tobytes()
    else:
        msg.pnl.values.extend(pnl)
        msg.var.values.extend(var)
    if settings:
        msg.settings.CopyFrom(rpb.BacktestSettings(**settings))
    return msg


def history(n=600, seed=5):
    rng = np.random.default_rng(seed)
    pnl = rng.standard_normal(n) * 1.2
    pnl[300:306] = -4.0  # a cluster of exceptions
    return pnl, np.full(n, 2.33)


@pytest.fixture(scope="module")
def risk(channel):
    return risk_pb2_grpc.RiskServiceStub(channel)


def test_every_message_is_answered_with_the_running_result(risk):
    pnl, var = history()
    labels = [f"day-{i}" for i in range(len(pnl))]
    s = Stream(risk)
    cuts = [0, 1, 2, 50, 50, 300, 599, 600]
    for a, b in zip(cuts[:-1], cuts[1:]):
        reply = s.send(request(pnl[a:b], var[a:b], labels=labels[a:b], raw=a % 2 == 1,
                               **({"level": 0.99, "window": 250} if a == 0 else {})))
        expected = result_message(backtest(pnl[:b], var[:b], BacktestSettings(0.99, 250), labels[:b]))
        assert reply == expected, b
    assert reply.observations == 600 and reply.exceptions >= 6
    assert reply.traffic_light.window_observations == 250
    assert reply.newest_exceptions[-1].label == f"day-{reply.newest_exceptions[-1].index}"
    assert reply.christoffersen_independence.status == rpb.STATISTIC_STATUS_OK
    assert reply.christoffersen_independence.p_value < 0.01  # the cluster
    assert s.close() == []


def test_defaults_and_a_first_message_without_observations(risk):
    s = Stream(risk)
    empty = s.send(rpb.BacktestRequest())
    assert empty.observations == 0 and empty.traffic_light.zone == rpb.TRAFFIC_LIGHT_ZONE_UNSPECIFIED
    assert empty.settings == rpb.BacktestSettings(level=0.99, window=250, var_convention=rpb.VAR_CONVENTION_LOSS)
    assert empty.kupiec_pof.status == rpb.STATISTIC_STATUS_UNDEFINED and not empty.kupiec_pof.HasField("statistic")
    one = s.send(request([-3.0], [2.0]))
    assert one.exceptions == 1 and one.kupiec_pof.status == rpb.STATISTIC_STATUS_OK
    assert one.christoffersen_independence.status == rpb.STATISTIC_STATUS_UNDEFINED
    assert not one.conditional_coverage.HasField("p_value") and one.conditional_coverage.note
    same = s.send(request([1.0], [2.0], level=0.99, window=250, var_convention=rpb.VAR_CONVENTION_LOSS))
    assert same.observations == 2 and same.transitions == rpb.ExceptionTransitions(n10=1)
    assert same.christoffersen_independence.status == rpb.STATISTIC_STATUS_DEGENERATE
    assert s.close() == []


def test_pnl_quantile_convention(risk):
    pnl, var = history(300, seed=8)
    s = Stream(risk)
    reply = s.send(request(pnl, -var, var_convention=rpb.VAR_CONVENTION_PNL_QUANTILE, level=0.975, window=100))
    expected = backtest(pnl, -var, BacktestSettings(0.975, 100, VarConvention.PNL_QUANTILE))
    assert reply == result_message(expected)
    assert reply.exceptions == int((-pnl > var).sum())
    s.close()


def _bad(risk, messages, last):
    """Sends ``messages`` (each answered), then ``last``: the stream's error."""
    s = Stream(risk)
    for m in messages:
        assert s.send(m).observations >= 0
    return s.fails(last)


@pytest.mark.parametrize("last, field, words", [
    (request([1.0, float("nan"), 2.0], [1.0, 1.0, 1.0]), "pnl[1]", "(got nan; stream index 3"),
    (request([1.0, float("-inf")], [1.0, 1.0], raw=True), "pnl[1]", "stream index 3"),
    (request([1.0, 2.0], [1.0, float("inf")]), "var[1]", "must be finite (got inf;"),
    (request([1.0, 2.0], [-0.5, 1.0]), "var[0]", ">= 0: var_convention LOSS takes a loss amount (got -0.5;"),
    (request([1.0, 2.0], [1.0]), "var", "1 values for 2 pnl values"),
    (request([], [1.0]), "pnl", "required"),
    (request([1.0, 2.0], [1.0, 1.0], labels=["a"]), "labels", "1 labels for 2 observations"),
    (request([1.0], [1.0], level=0.975), "settings.level", "differs from this stream's 0.99"),
    (request([1.0], [1.0], window=500), "settings.window", "differs"),
    (request([1.0], [1.0], var_convention=rpb.VAR_CONVENTION_PNL_QUANTILE), "settings.var_convention", "differs"),
])
def test_bad_input_ends_the_stream_after_the_replies_sent(risk, last, field, words):
    err = _bad(risk, [request([0.5, -0.1], [2.0, 2.0])], last)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = dict(violations(err))
    assert field in found and words in found[field], found
    assert field in err.details()


@pytest.mark.parametrize("settings, field", [
    ({"level": 1.0}, "settings.level"), ({"level": 0.0}, "settings.level"), ({"level": float("nan")}, "settings.level"),
    ({"level": -0.99}, "settings.level"), ({"window": 0}, "settings.window"), ({"window": -250}, "settings.window"),
    ({"var_convention": 7}, "settings.var_convention"),
])
def test_bad_settings_in_the_first_message(risk, settings, field):
    err = _bad(risk, [], request([1.0], [1.0], **settings))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in dict(violations(err))


def test_every_bad_value_of_a_message_is_named(risk):
    err = _bad(risk, [], request([float("nan"), 1.0, 1.0, float("inf")], [1.0, -1.0, float("nan"), 1.0]))
    assert {f for f, _ in violations(err)} == {"pnl[0]", "pnl[3]", "var[1]", "var[2]"}


def test_an_undecodable_body_is_invalid_argument(channel):
    method = channel.stream_stream("/pricegrid.v1.RiskService/Backtest", request_serializer=None,
                                   response_deserializer=rpb.BacktestResponse.FromString)
    replies = method(iter([rpb.BacktestRequest().SerializeToString(), b"\x0a\xff\xff"]), timeout=10)
    assert next(replies).observations == 0
    with pytest.raises(grpc.RpcError) as e:
        next(replies)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid pricegrid.v1.BacktestRequest" in e.value.details()


@pytest.fixture(scope="module")
def capped():
    running = start_server(max_backtest_observations=12, max_backtest_message_observations=5)
    yield running
    running.stop(1.0)


def test_caps_per_message_and_per_stream(capped):
    with grpc.insecure_channel(capped.address) as ch:
        risk = risk_pb2_grpc.RiskServiceStub(ch)
        err = _bad(risk, [], request(np.zeros(6), np.ones(6)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 5 per message" in err.details()
        ok = [request(np.zeros(5), np.ones(5)), request(np.zeros(5), np.ones(5))]
        err = _bad(risk, ok, request(np.zeros(3), np.ones(3)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 12 per stream" in err.details() and "pnl" in dict(violations(err))
        s = Stream(risk)
        assert [s.send(m).observations for m in ok + [request(np.zeros(2), np.ones(2))]] == [5, 10, 12]
        s.close()


def test_the_call_is_metered_per_method_and_code(capped):
    """Through the same wrapper as every method (interceptors.wrap_stream): its latency and
    error metrics carry the method, an error its code."""
    import urllib.request

    with grpc.insecure_channel(capped.address) as ch:
        risk = risk_pb2_grpc.RiskServiceStub(ch)
        s = Stream(risk)
        s.send(request([1.0], [2.0]))
        s.close()
        _bad(risk, [], request([1.0], [-2.0]))

    def seen():  # recorded once the handler has finished, which may be just after the caller saw the end
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{capped.metrics_port}/metrics", timeout=5).read().decode()
        lines = [x for x in metrics.splitlines() if 'method="/pricegrid.v1.RiskService/Backtest"' in x]
        return (any(x.startswith("pricegrid_rpc_duration_seconds_count") and 'code="OK"' in x for x in lines)
                and any(x.startswith("pricegrid_rpc_errors_total") and 'code="INVALID_ARGUMENT"' in x for x in lines))

    deadline = time.monotonic() + 5
    while not seen() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen()
