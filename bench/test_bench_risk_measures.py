"""Benchmarks of pricegrid.server.domain.risk: historical VaR and ES of a P&L cube.

One cube of 10,000 trades x 1,000 scenarios (Student-t P&L, scenario axis contiguous, as the
scenario runs stream it), built outside the timed calls. Cases:

* ``per_trade``   99% VaR and 97.5% ES of every trade (along the scenario axis): ours
                  (``historical_risk``, one ``numpy.partition``) and the numpy baseline in the
                  same run (``numpy.quantile(method="inverted_cdf")`` for VaR, a full
                  ``numpy.sort`` for ES)
* ``portfolio``   the portfolio's VaR and ES (the cube summed over trades, then the same)
* ``components``  the portfolio's VaR, ES and every trade's component ES (``es_attribution``
                  without incremental ES), and with incremental ES (the ES of the portfolio
                  less each trade: a second 10,000 x 1,000 partition)

Each timed call's result is checked against the baseline or a brute-force reference. No
timed asserts:

    .venv/bin/python -m pytest bench/test_bench_risk_measures.py --benchmark-columns=min,median,max
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from pricegrid.server.domain import risk

TRADES = 10_000
SCENARIOS = 1_000
VAR, ES = 0.99, 0.975
TAIL = round(SCENARIOS * (1 - ES))  # 25 scenarios: a whole tail, ES is their mean


@functools.lru_cache(maxsize=None)
def cube() -> np.ndarray:
    rng = np.random.default_rng(2024)
    return rng.standard_t(4, size=(TRADES, SCENARIOS)) * rng.uniform(1e3, 1e5, (TRADES, 1))


def numpy_var_es(pnl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: numpy's inverted_cdf quantile of the losses, ES from a full sort."""
    losses = -pnl
    var = np.quantile(losses, VAR, axis=-1, method="inverted_cdf")
    es = np.sort(losses, axis=-1)[..., -TAIL:].mean(axis=-1)
    return var, es


@pytest.mark.parametrize("impl", ["pricegrid", "numpy"])
def test_per_trade(benchmark, impl):
    """99% VaR and 97.5% ES of each of 10,000 trades over 1,000 scenarios."""
    c = cube()
    if impl == "pricegrid":
        def run():
            r = risk.historical_risk(c, var_level=VAR, es_level=ES)
            return r.var, r.es
    else:
        def run():
            return numpy_var_es(c)
    benchmark.extra_info.update(case="per_trade", impl=impl, trades=TRADES, scenarios=SCENARIOS)
    var, es = benchmark(run)
    want_var, want_es = numpy_var_es(c)
    np.testing.assert_array_equal(var, want_var)
    np.testing.assert_allclose(es, want_es, rtol=1e-12)


@pytest.mark.parametrize("impl", ["pricegrid", "numpy"])
def test_portfolio(benchmark, impl):
    """99% VaR and 97.5% ES of the sum of 10,000 trades over 1,000 scenarios."""
    c = cube()
    if impl == "pricegrid":
        def run():
            r = risk.historical_risk(c.sum(axis=0), var_level=VAR, es_level=ES)
            return r.var, r.es
    else:
        def run():
            return numpy_var_es(c.sum(axis=0))
    benchmark.extra_info.update(case="portfolio", impl=impl, trades=TRADES, scenarios=SCENARIOS)
    var, es = benchmark(run)
    want_var, want_es = numpy_var_es(c.sum(axis=0))
    assert var == want_var and es == pytest.approx(want_es, rel=1e-12)


@pytest.mark.parametrize("incremental", [False, True], ids=["component", "component+incremental"])
def test_components(benchmark, incremental):
    """Portfolio VaR and ES and each of 10,000 trades' component (and incremental) ES."""
    c = cube()
    benchmark.extra_info.update(case="components", incremental=incremental, trades=TRADES, scenarios=SCENARIOS)
    a = benchmark(lambda: risk.es_attribution(c, var_level=VAR, es_level=ES, incremental=incremental))
    pnl = c.sum(axis=0)
    tail = np.argsort(pnl)[:TAIL]
    assert a.es == pytest.approx(-pnl[tail].mean(), rel=1e-12)
    np.testing.assert_allclose(a.component, -c[:, tail].mean(axis=1), rtol=1e-9, atol=1e-9 * abs(a.es))
    if incremental:
        for i in (0, 4999, TRADES - 1):  # brute force on three trades
            rest = pnl - c[i]
            want = a.es - np.sort(-rest)[-TAIL:].mean()
            assert a.incremental[i] == pytest.approx(want, rel=1e-9, abs=1e-9 * abs(a.es))
