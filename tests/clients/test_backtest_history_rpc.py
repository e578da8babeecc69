"""Stored backtest histories against a real server (127.0.0.1): put, append, get, list,
delete through RiskClient and AsyncRiskClient; a Backtest stream from a stored history gives
exactly the BacktestResponse of the same days sent on the stream (and the scipy reference of
tests/clients/test_backtest_rpc.py); versions, appends by base_id, every refusal named by its
field, the caps, and `pricegrid risk put-history` / `risk backtest --history`."""

from __future__ import annotations

import asyncio
import json
import re

import grpc
import numpy as np
import pytest

from pricegrid.clients import AsyncRiskClient, PricingError, RiskClient, cli
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import risk_pb2 as rpb
from pricegrid.v1 import risk_pb2_grpc
from tests.clients.test_backtest_rpc import _check, _csv, series
from tests.clients.test_cli_rpc import output
from tests.conftest import start_server
from tests.server.richerr import violations


@pytest.fixture(scope="module")
def stub(channel):
    return risk_pb2_grpc.RiskServiceStub(channel)


def dates(n, start=0):
    return [f"2024-{1 + (i // 28) % 12:02d}-{1 + i % 28:02d}/{i // 336}" for i in range(start, start + n)]


def replies(stub, *messages) -> list[rpb.BacktestResponse]:
    return list(stub.Backtest(iter(messages), timeout=30))


def inline(pnl, var, labels=(), **settings) -> rpb.BacktestRequest:
    return rpb.BacktestRequest(settings=rpb.BacktestSettings(**settings), labels=list(labels),
                               pnl=cpb.DoubleColumn(raw=np.asarray(pnl, "<f8").tobytes()),
                               var=cpb.DoubleColumn(values=list(var)))


def test_a_stored_history_gives_the_reply_of_its_days_sent_inline(risk, stub):
    pnl, var = series()
    labels = dates(len(pnl))
    stored = risk.put_backtest_history("tests/bth/same", pnl, var, labels, description="desk A, 99%")
    assert stored.created and stored.observations == len(pnl) and stored.var_convention == "loss"
    assert stored.exceptions == int(np.sum(-pnl > var)) and stored.description == "desk A, 99%"
    for settings in ({}, {"level": 0.975, "window": 100}):
        by_name = replies(stub, rpb.BacktestRequest(settings=rpb.BacktestSettings(**settings), history=stored.name))
        by_id = replies(stub, rpb.BacktestRequest(settings=rpb.BacktestSettings(**settings), history=stored.id))
        sent = replies(stub, inline(pnl, var, labels, **settings))
        assert by_name == by_id == sent and len(sent) == 1  # the whole message, bit for bit
    result = risk.backtest(history="tests/bth/same")
    _check(result, pnl, var)  # against scipy
    last = result.newest_exceptions[-1]
    assert last.label == labels[last.index] and last.pnl == pnl[last.index]  # the stored labels are echoed
    # a history in the P&L-quantile convention: the stream takes it when the settings leave it unset
    quantile = risk.put_backtest_history("tests/bth/quantile", pnl, -var, var_convention="pnl_quantile")
    assert quantile.var_convention == "pnl_quantile" and quantile.exceptions == stored.exceptions
    got = risk.backtest(history=quantile.id, window=60)
    assert got == risk.backtest(pnl, -var, window=60, var_convention="pnl_quantile")
    assert got.var_convention == "pnl_quantile"
    _check(got, pnl, var, window=60)


def test_stored_and_appended_days_equal_all_of_them_inline(risk, stub):
    pnl, var = series(520, seed=9)
    labels = dates(450) + [""] * 70  # the last days come without labels
    first = risk.put_backtest_history("tests/bth/append", pnl[:300], var[:300], labels[:300], description="d")
    second = risk.put_backtest_history("tests/bth/append", pnl[300:450], var[300:450], labels[300:450], append=True)
    third = risk.put_backtest_history("tests/bth/append", pnl[450:], var[450:], append=True)
    assert [v.observations for v in (first, second, third)] == [300, 450, 520]
    assert third.description == "d" and third.created  # an append keeps the description
    whole = risk.get_backtest_history("tests/bth/append")
    assert whole.id == third.id and whole.labels == labels
    np.testing.assert_array_equal(whole.pnl, pnl)
    np.testing.assert_array_equal(whole.var, var)
    old = risk.get_backtest_history(first.id)  # every version stays readable
    assert old.observations == 300 and old.labels == labels[:300]
    assert [v.id for v in risk.list_backtest_histories("tests/bth/append")] == [third.id, second.id, first.id]
    everything = replies(stub, inline(pnl, var, labels))
    assert replies(stub, rpb.BacktestRequest(history="tests/bth/append")) == everything
    # a stored version and the rest of the days in the first message (then more in later ones)
    assert replies(stub, rpb.BacktestRequest(history=first.id, pnl=cpb.DoubleColumn(values=pnl[300:500]),
                                             var=cpb.DoubleColumn(values=var[300:500]), labels=labels[300:500]),
                   inline(pnl[500:], var[500:], labels[500:]))[-1] == everything[0]
    # day by day on a running backtester, from the stored 450 days
    with risk.backtester(history=second.id, window=100) as running:
        assert running.result == risk.backtest(pnl[:450], var[:450], labels=labels[:450], window=100)
        for start, stop in [(450, 451), (451, 452), (452, 500), (500, 520)]:
            step = running.add(pnl[start:stop], var[start:stop])
            assert step == risk.backtest(pnl[:stop], var[:stop], labels=labels[:stop], window=100)
    # the same days put again: stored once
    again = risk.put_backtest_history("tests/bth/append", pnl, var, labels, description="d")
    assert not again.created and again.id == third.id
    assert risk.delete_backtest_history(third.id) and not risk.delete_backtest_history(third.id)
    assert risk.get_backtest_history("tests/bth/append").id == second.id  # the newest is the one before


def test_appends_by_base_id_are_idempotent_and_refused_when_stale(risk):
    a = risk.put_backtest_history("tests/bth/base", [1.0, -3.0], [2.0, 2.0], ["d1", "d2"])
    b = risk.put_backtest_history("tests/bth/base", [0.5], [2.0], ["d3"], base_id=a.id)
    assert b.created and b.observations == 3 and b.exceptions == 1
    retried = risk.put_backtest_history("tests/bth/base", [0.5], [2.0], ["d3"], base_id=a.id)
    assert not retried.created and retried.id == b.id  # a retry after a lost reply appends once
    with pytest.raises(PricingError) as e:  # another day on a stale base: read the newest first
        risk.put_backtest_history("tests/bth/base", [0.7], [2.0], ["d3"], base_id=a.id)
    assert e.value.code == grpc.StatusCode.ABORTED and e.value.field == "base_id" and b.id in str(e.value)
    c = risk.put_backtest_history("tests/bth/base", [0.7], [2.0], ["d4"], base_id=b.id)
    assert c.observations == 4 and risk.get_backtest_history("tests/bth/base").labels == ["d1", "d2", "d3", "d4"]
    other = risk.put_backtest_history("tests/bth/other", [1.0], [1.0])
    cases = [
        (dict(name="tests/bth/base", base_id=other.id), "INVALID_ARGUMENT", "base_id"),
        (dict(name="tests/bth/base", base_id="0" * 32), "NOT_FOUND", "base_id"),
        (dict(name="tests/bth/none", append=True), "NOT_FOUND", "name"),
        (dict(name="tests/bth/base", append=True, var_convention="pnl_quantile"), "INVALID_ARGUMENT",
         "history.var_convention"),
    ]
    for kwargs, code, field in cases:
        with pytest.raises(PricingError) as e:
            risk.put_backtest_history(pnl=[1.0], var=[1.0], **kwargs)
        assert (e.value.code.name, e.value.field) == (code, field), kwargs
    assert risk.get_backtest_history("tests/bth/base").id == c.id  # nothing stored by the refusals


def test_a_bad_put_names_every_field(risk, stub):
    with pytest.raises(PricingError) as e:
        risk.put_backtest_history("bad name!", [1.0, np.inf, 2.0], [1.0, 1.0, -0.5], ["a", "b" * 129, "c"],
                                  description="x" * 4097)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in e.value.field_violations} == {"name", "description", "history.pnl[1]",
                                                         "history.var[2]", "history.labels[1]"}
    assert "history index 1" in dict(e.value.field_violations)["history.pnl[1]"]

    def refused(history, **kw):
        with pytest.raises(grpc.RpcError) as e:
            stub.PutBacktestHistory(rpb.PutBacktestHistoryRequest(name="tests/bth/bad", history=history, **kw),
                                    timeout=10)
        return e.value.code().name, [f for f, _ in violations(e.value)]

    ones = cpb.DoubleColumn(values=[1.0, 1.0])
    assert refused(rpb.BacktestHistory(pnl=ones, var=cpb.DoubleColumn(values=[1.0]))) == (
        "INVALID_ARGUMENT", ["history.var"])
    assert refused(rpb.BacktestHistory(pnl=ones, var=ones, labels=["a"])) == ("INVALID_ARGUMENT", ["history.labels"])
    assert refused(rpb.BacktestHistory()) == ("INVALID_ARGUMENT", ["history.pnl"])
    assert refused(rpb.BacktestHistory(pnl=ones, var=ones, var_convention=7)) == (
        "INVALID_ARGUMENT", ["history.var_convention"])
    assert refused(rpb.BacktestHistory(pnl=cpb.DoubleColumn(raw=b"\0" * 9), var=ones)) == (
        "INVALID_ARGUMENT", ["history.pnl"])
    with pytest.raises(PricingError) as e:
        risk.get_backtest_history("tests/bth/never")
    assert e.value.code == grpc.StatusCode.NOT_FOUND and e.value.field == "backtest_history"
    with pytest.raises(PricingError) as e:
        risk.list_backtest_histories(limit=1001)
    assert e.value.field == "limit"
    with pytest.raises(PricingError) as e:
        risk.delete_backtest_history("")
    assert e.value.field == "id"
    assert risk.list_backtest_histories("tests/bth/bad") == []


def test_a_stream_naming_a_history_refuses_by_field(risk, stub):
    pnl, var = series(60, seed=2)
    h = risk.put_backtest_history("tests/bth/stream", pnl, -var, var_convention="pnl_quantile")

    def fails(*messages):
        got = []
        with pytest.raises(grpc.RpcError) as e:
            for r in stub.Backtest(iter(messages), timeout=30):
                got.append(r)
        return e.value.code().name, [f for f, _ in violations(e.value)], len(got)

    assert fails(rpb.BacktestRequest(history="tests/bth/nothing")) == ("NOT_FOUND", ["history"], 0)
    assert fails(rpb.BacktestRequest(history=h.id, settings=rpb.BacktestSettings(
        var_convention=rpb.VAR_CONVENTION_LOSS))) == ("INVALID_ARGUMENT", ["settings.var_convention"], 0)
    assert fails(rpb.BacktestRequest(history=h.id, settings=rpb.BacktestSettings(level=2.0)),
                 ) == ("INVALID_ARGUMENT", ["settings.level"], 0)
    # a later message naming a history: refused after the replies before it
    assert fails(rpb.BacktestRequest(history=h.id), rpb.BacktestRequest(history=h.id)) == (
        "INVALID_ARGUMENT", ["history"], 1)
    assert fails(inline([1.0], [1.0]), rpb.BacktestRequest(history=h.id)) == ("INVALID_ARGUMENT", ["history"], 1)
    # a later message repeating the first one's settings (var_convention unset) is the same settings
    first = rpb.BacktestRequest(history=h.id, settings=rpb.BacktestSettings(level=0.99, window=30))
    again = rpb.BacktestRequest(settings=rpb.BacktestSettings(level=0.99, window=30),
                                pnl=cpb.DoubleColumn(values=[-5.0]), var=cpb.DoubleColumn(values=[-2.0]))
    got = replies(stub, first, again)
    assert [r.observations for r in got] == [60, 61] and got[1].settings.var_convention == 2
    # ... but an explicit other convention is a change
    changed = rpb.BacktestRequest(settings=rpb.BacktestSettings(level=0.99, window=30,
                                                                var_convention=rpb.VAR_CONVENTION_LOSS))
    assert fails(first, changed) == ("INVALID_ARGUMENT", ["settings.var_convention"], 1)
    # the day with the wrong sign after the stored ones is named with its stream index
    code, fields, n = fails(rpb.BacktestRequest(history=h.id, pnl=cpb.DoubleColumn(values=[1.0, 1.0]),
                                                var=cpb.DoubleColumn(values=[-1.0, 1.0])))
    assert (code, fields, n) == ("INVALID_ARGUMENT", ["var[1]"], 0)


def test_caps_count_the_stored_days(server, tmp_path):
    """max_backtest_observations caps a version's days and a stream's (stored ones
    included); the stored days go past max_backtest_message_observations in pieces."""
    pnl, var = series(60, seed=11)
    path = str(tmp_path / "caps.db")
    capped = start_server(store=path, max_backtest_observations=60, max_backtest_message_observations=10)
    try:
        with RiskClient(target=capped.address, timeout=30) as risk:
            with pytest.raises(PricingError) as e:
                risk.put_backtest_history("h", np.zeros(61), np.ones(61))
            assert (e.value.code.name, e.value.field) == ("RESOURCE_EXHAUSTED", "history.pnl")
            risk.put_backtest_history("h", pnl[:35], var[:35])
            with pytest.raises(PricingError) as e:  # 35 stored + 26 = 61
                risk.put_backtest_history("h", np.append(pnl[35:], 0.0), np.append(var[35:], 1.0), append=True)
            assert (e.value.code.name, e.value.field) == ("RESOURCE_EXHAUSTED", "history.pnl")
            risk.put_backtest_history("h", pnl[35:], var[35:], append=True)
            result = risk.backtest(history="h")  # 60 stored days in pieces of 10
            with RiskClient(target=server.address, timeout=30) as uncapped:
                assert result == uncapped.backtest(pnl, var)
            with pytest.raises(PricingError) as e:
                risk.backtest([1.0], [1.0], history="h")
            assert (e.value.code.name, e.value.field) == ("RESOURCE_EXHAUSTED", "pnl")
    finally:
        capped.stop(1.0)
    smaller = start_server(store=path, max_backtest_observations=50)  # the same store, a lower cap
    try:
        with RiskClient(target=smaller.address, timeout=30) as risk:
            with pytest.raises(PricingError) as e:
                risk.backtest(history="h")
            assert (e.value.code.name, e.value.field) == ("RESOURCE_EXHAUSTED", "history")
    finally:
        smaller.stop(1.0)


def test_the_async_client(server, risk):
    pnl, var = series(80, seed=6)

    async def main():
        async with AsyncRiskClient(target=server.address, timeout=30) as ar:
            first = await ar.put_backtest_history("tests/bth/async", pnl[:50], var[:50], dates(50))
            second = await ar.put_backtest_history("tests/bth/async", pnl[50:], var[50:], dates(30, 50),
                                                   append=True)
            got = await ar.get_backtest_history("tests/bth/async")
            listed = await ar.list_backtest_histories("tests/bth/async")
            by_history = await ar.backtest(history=first.id)
            with_days = await ar.backtest(pnl[50:], var[50:], labels=dates(30, 50), history=first.id)
            deleted = await ar.delete_backtest_history(second.id)
            return first, second, got, listed, by_history, with_days, deleted

    first, second, got, listed, by_history, with_days, deleted = asyncio.run(main())
    assert got.id == second.id and got.observations == 80 and [x.id for x in listed] == [second.id, first.id]
    np.testing.assert_array_equal(got.pnl, pnl)
    assert by_history == risk.backtest(pnl[:50], var[:50], labels=dates(50))
    assert with_days == risk.backtest(pnl, var, labels=dates(80)) and deleted


# ------------------------------------------------------------------ the CLI
def test_cli_put_history_append_and_backtest_by_name(server, tmp_path, capsys):
    pnl, var = series(400, seed=14)
    whole = _csv(tmp_path / "all.csv", pnl, var)
    first = _csv(tmp_path / "first.csv", pnl[:300], var[:300])
    rest = tmp_path / "rest.csv"  # the next days, as a risk system sends them (dates after the first file's)
    rest.write_text("".join(line for i, line in enumerate(whole.read_text().splitlines(keepends=True))
                            if i == 0 or i > 300))
    target = ["--target", server.address]
    assert cli.main(["risk", "put-history", "tests/bth/cli", str(first), "--json"] + target) == 0
    base = json.loads(output(capsys))
    assert base["observations"] == 300 and base["created"] is True and base["var_convention"] == "loss"
    assert cli.main(["risk", "put-history", "tests/bth/cli", str(rest), "--base-id", base["id"]] + target) == 0
    out = output(capsys)
    assert re.search(r"observations\s+400\n", out) and re.search(r"new version\s+yes\n", out)
    assert cli.main(["risk", "put-history", "tests/bth/cli", str(rest), "--base-id", base["id"]] + target) == 0
    assert "no (already stored)" in output(capsys)  # the same append again (a rerun): stored once
    assert cli.main(["risk", "backtest", "--history", "tests/bth/cli", "--json"] + target) == 0
    by_name = json.loads(output(capsys))
    assert cli.main(["risk", "backtest", str(whole), "--json"] + target) == 0
    assert by_name == json.loads(output(capsys)) and by_name["observations"] == 400  # as the whole CSV
    # a file after the stored days, with the chart of both
    png = tmp_path / "chart.png"
    assert cli.main(["risk", "backtest", str(rest), "--history", "tests/bth/cli", "--png", str(png)] + target) == 0
    out = output(capsys)
    assert re.search(r"observations\s+500\n", out) and "wrote " in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert cli.main(["risk", "put-history", "tests/bth/cli", str(rest), "--append", "--var-convention",
                     "pnl_quantile"] + target) == 2
    assert "history.var_convention" in capsys.readouterr().err
    assert cli.main(["risk", "backtest"] + target) == 2
    assert "give a CSV, --history NAME, or both" in capsys.readouterr().err
    assert cli.main(["risk", "backtest", "--history", "tests/bth/missing"] + target) == 2
    err = capsys.readouterr().err
    assert "NOT_FOUND" in err and "field: history" in err
