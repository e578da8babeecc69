"""RiskClient.backtest, the running Backtester and `pricegrid risk backtest` against a real
server (the session's, 127.0.0.1), checked against the statistics computed here from the
same series with scipy."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math

import numpy as np
import pytest
from scipy import special, stats

from pricegrid.clients import BacktestResult, PricingError, RiskClient, cli
from tests.clients.test_cli_rpc import output


def series(n=520, seed=3):
    rng = np.random.default_rng(seed)
    pnl = rng.standard_normal(n) * 1.1
    pnl[400:404] = -3.0  # a cluster
    return pnl, np.full(n, 2.33)


def reference(pnl, var, level=0.99, window=250):
    """Kupiec, Christoffersen and the zone, written out with scipy."""
    flags = -pnl > var
    n, x, p = len(flags), int(flags.sum()), 1 - level
    pof = 2 * (stats.binom.logpmf(x, n, x / n) - stats.binom.logpmf(x, n, p))
    a, b = flags[:-1], flags[1:]
    n00, n01, n10, n11 = (int(np.sum(~a & ~b)), int(np.sum(~a & b)), int(np.sum(a & ~b)), int(np.sum(a & b)))
    pi01, pi11, pi = n01 / (n00 + n01), n11 / (n10 + n11), (n01 + n11) / (n - 1)
    xl = special.xlogy
    ind = 2 * (xl(n00, 1 - pi01) + xl(n01, pi01) + xl(n10, 1 - pi11) + xl(n11, pi11)
               - xl(n00 + n10, 1 - pi) - xl(n01 + n11, pi))
    w = min(n, window)
    xw = int(flags[-w:].sum())
    cdf = stats.binom.cdf(xw, w, p)
    zone = "green" if cdf < 0.95 else ("yellow" if cdf < 0.9999 else "red")
    return dict(x=x, pof=pof, ind=ind, cc_p=stats.chi2.sf(pof + ind, 2), xw=xw, zone=zone,
                transitions=(n00, n01, n10, n11))


@pytest.fixture(scope="module")
def risk(server):
    with RiskClient(target=server.address, timeout=30) as client:
        yield client


def _check(result: BacktestResult, pnl, var, **settings):
    ref = reference(pnl, var, **settings)
    assert result.observations == len(pnl) and result.exceptions == ref["x"]
    assert result.kupiec_pof.statistic == pytest.approx(ref["pof"], rel=1e-9)
    assert result.kupiec_pof.p_value == pytest.approx(stats.chi2.sf(ref["pof"], 1), rel=1e-9)
    assert result.christoffersen_independence.statistic == pytest.approx(ref["ind"], rel=1e-9)
    assert result.conditional_coverage.p_value == pytest.approx(ref["cc_p"], rel=1e-9)
    t = result.transitions
    assert (t.n00, t.n01, t.n10, t.n11) == ref["transitions"]
    assert result.traffic_light.zone == ref["zone"] and result.traffic_light.window_exceptions == ref["xw"]


def test_backtest_of_a_series(risk):
    pnl, var = series()
    dates = [dt.date(2023, 1, 2) + dt.timedelta(days=i) for i in range(len(pnl))]
    result = risk.backtest(pnl, var, labels=dates)
    _check(result, pnl, var)
    assert (result.level, result.window, result.var_convention) == (0.99, 250, "loss")
    assert result.christoffersen_independence.rejects() is True  # the cluster
    last = result.newest_exceptions[-1]
    assert last.label == dates[last.index].isoformat() and last.pnl == pnl[last.index] and last.var == 2.33


def test_other_settings_and_the_pnl_quantile_convention(risk):
    pnl, var = series(300, seed=12)
    result = risk.backtest(list(pnl), list(-var), level=0.975, window=100, var_convention="pnl_quantile")
    _check(result, pnl, var, level=0.975, window=100)
    assert result.var_convention == "pnl_quantile" and result.traffic_light.window_observations == 100


def test_a_long_series_goes_as_several_messages(server):
    pnl, var = series(130_000, seed=4)
    with RiskClient(target=server.address, timeout=60) as client:
        result = client.backtest(pnl, var)  # three messages of at most 50,000
    _check(result, pnl, var)


def test_the_running_backtester_equals_the_whole_series_at_every_step(risk):
    pnl, var = series(300, seed=5)
    with risk.backtester(window=60) as running:
        for start, stop in [(0, 1), (1, 2), (2, 100), (100, 101), (101, 300)]:
            step = running.add(pnl[start:stop], var[start:stop])
            assert step == risk.backtest(pnl[:stop], var[:stop], window=60)
        assert running.result == step
    with risk.backtester() as running:
        first = running.add([], [])  # nothing yet: every test undefined, no zone
        assert first.observations == 0 and first.traffic_light.zone is None
        assert first.kupiec_pof.status == "undefined" and first.kupiec_pof.rejects() is None
        one = running.add([-3.0], [2.0])
        assert one.christoffersen_independence.status == "undefined" and one.christoffersen_independence.note


def test_degenerate_cases_say_so(risk):
    quiet = risk.backtest(np.zeros(300), np.full(300, 1.0))
    assert quiet.exceptions == 0 and quiet.traffic_light.zone == "green"
    assert quiet.kupiec_pof.statistic == pytest.approx(-2 * 300 * math.log(0.99))
    ind = quiet.christoffersen_independence
    assert ind.status == "degenerate" and ind.statistic == 0.0 and ind.p_value == 1.0 and ind.note
    assert quiet.conditional_coverage.status == "degenerate"


def test_bad_values_raise_with_the_field_and_the_stream_index(risk):
    pnl, var = series(10)
    pnl[7] = np.nan
    with pytest.raises(PricingError) as e:
        risk.backtest(pnl, var)
    assert e.value.code.name == "INVALID_ARGUMENT" and e.value.field == "pnl[7]"
    assert "stream index 7" in e.value.field_violations[0][1]
    with risk.backtester() as running:
        running.add([1.0, 2.0], [1.0, 1.0])
        with pytest.raises(PricingError) as e:
            running.add([1.0], [-1.0])
        assert e.value.field == "var[0]" and "stream index 2" in e.value.field_violations[0][1]
        with pytest.raises(PricingError):  # the stream ended with that error
            running.add([1.0], [1.0])
    with pytest.raises(PricingError) as e:
        risk.backtest([1.0], [1.0], level=1.5)
    assert e.value.field == "settings.level"
    with pytest.raises(ValueError):
        risk.backtest([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        risk.backtest([1.0], [1.0], var_convention="percent")


# ------------------------------------------------------------------ the CLI
def _csv(path, pnl, var, dates=True, pnl_name="pnl", var_name="var"):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow((["date"] if dates else []) + [pnl_name, var_name])
        for i, (p, v) in enumerate(zip(pnl, var)):
            w.writerow(([(dt.date(2024, 1, 1) + dt.timedelta(days=i)).isoformat()] if dates else []) + [float(p), float(v)])
    return path


def test_cli_backtest_table_json_and_chart(server, tmp_path, capsys):
    pnl, var = series()
    path = _csv(tmp_path / "pnl.csv", pnl, var)
    ref = reference(pnl, var)
    png = tmp_path / "chart.png"
    assert cli.main(["risk", "backtest", str(path), "--png", str(png), "--target", server.address]) == 0
    out = output(capsys)
    assert f"{ref['zone'].upper()}: {ref['xw']} exceptions in the latest 250 days" in out
    assert "Kupiec POF" in out and "Christoffersen independence" in out and "2024-" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert cli.main(["risk", "backtest", str(path), "--json", "--level", "0.975", "--window", "100",
                     "--target", server.address]) == 0
    doc = json.loads(output(capsys))
    ref = reference(pnl, var, level=0.975, window=100)
    assert doc["exceptions"] == ref["x"] and doc["traffic_light"]["zone"] == ref["zone"] and doc["window"] == 100
    assert doc["kupiec_pof"]["statistic"] == pytest.approx(ref["pof"], rel=1e-9)


def test_cli_column_names_and_bad_files(server, tmp_path, capsys):
    pnl, var = series(50)
    path = _csv(tmp_path / "named.csv", pnl, -var, dates=False, pnl_name="PL", var_name="VaR99")
    args = ["risk", "backtest", str(path), "--target", server.address]
    assert cli.main(args + ["--pnl-column", "PL", "--var-column", "VaR99", "--var-convention", "pnl_quantile",
                            "--json"]) == 0
    assert json.loads(output(capsys))["exceptions"] == reference(pnl, var)["x"]
    assert cli.main(args) == 2
    assert "no column 'pnl' (--pnl-column)" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("pnl,var\n1.0,2.0\nlots,2.0\n")
    assert cli.main(["risk", "backtest", str(bad), "--target", server.address]) == 2
    assert "column pnl, line 3: not a number: 'lots'" in capsys.readouterr().err
    negative = tmp_path / "negative.csv"
    negative.write_text("pnl,var\n1.0,2.0\n-1.0,-2.0\n")
    assert cli.main(["risk", "backtest", str(negative), "--target", server.address]) == 2
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "field: var[1]" in err
