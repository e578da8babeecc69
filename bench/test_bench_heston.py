"""Benchmarks of pricegrid.ext.heston: European prices under Heston, 10,000 options.

Books: ``random`` (every row its own Heston parameters and maturity) and ``strips`` (the
same parameters and maturity for the whole book, strikes and types varying: the strike
groups share their characteristic-function nodes). Implementations, in the same run: ours
(heston_price_batch, 1 and 2 threads) and a QuantLib loop over a fixed sample of 1,000
options, one ``AnalyticHestonEngine`` reused (the ``strips`` parameters), in the two forms
``angled`` (AngledContour with expSinh(1e-14): as accurate as ours, the test reference)
and ``laguerre192`` (``AnalyticHestonEngine(model, 192)``, less accurate, faster).
``extra_info`` records the rows each timed call prices.

    .venv/bin/python -m pytest bench/test_bench_heston.py --benchmark-json=/tmp/bench_heston.json
"""

from __future__ import annotations

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import heston

ROWS = 10_000
QUANTLIB_SAMPLE = 1_000
INPUTS = ("option_type", "strike", "time", "spot", "rate", "dividend", "v0", "kappa", "theta",
          "sigma", "rho")
STRIP = {"time": 1.0, "rate": 0.02, "dividend": 0.01, "v0": 0.04, "kappa": 1.5, "theta": 0.04,
         "sigma": 0.5, "rho": -0.7}


def book(layout):
    rng = np.random.default_rng(1993)
    logu = lambda lo, hi: np.exp(rng.uniform(np.log(lo), np.log(hi), ROWS))  # noqa: E731
    b = {
        "option_type": rng.integers(1, 3, ROWS).astype(np.int32), "strike": 100.0 * logu(0.5, 2.0),
        "time": rng.integers(7, 3651, ROWS) / 365.0, "spot": np.full(ROWS, 100.0),
        "rate": rng.uniform(-0.01, 0.06, ROWS), "dividend": rng.uniform(0.0, 0.04, ROWS),
        "v0": logu(0.005, 0.5), "kappa": logu(0.1, 10.0), "theta": logu(0.005, 0.5),
        "sigma": logu(0.05, 1.5), "rho": rng.uniform(-0.95, 0.5, ROWS),
    }
    if layout == "strips":
        b.update({name: np.full(ROWS, value) for name, value in STRIP.items()})
    return b


@pytest.mark.parametrize("layout", ["random", "strips"])
@pytest.mark.parametrize("threads", [1, 2])
def test_pricegrid(benchmark, layout, threads):
    """heston_price_batch on the whole book."""
    b = book(layout)
    args = [b[name] for name in INPUTS]
    out, status = np.empty(ROWS), np.empty(ROWS, np.int32)
    benchmark.extra_info["rows"] = ROWS
    nbad = benchmark(heston.heston_price_batch, *args, out, status, threads)
    assert nbad == 0


@pytest.mark.parametrize("engine", ["angled", "laguerre192"])
def test_quantlib(benchmark, engine):
    """AnalyticHestonEngine, reused, over the first QUANTLIB_SAMPLE options of a strip."""
    b = book("strips")
    today = ql.Date(15, ql.January, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    process = ql.HestonProcess(
        ql.YieldTermStructureHandle(ql.FlatForward(today, STRIP["rate"], dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, STRIP["dividend"], dc)),
        ql.QuoteHandle(ql.SimpleQuote(100.0)),
        *(STRIP[name] for name in ("v0", "kappa", "theta", "sigma", "rho")),
    )
    model = ql.HestonModel(process)
    if engine == "angled":
        eng = ql.AnalyticHestonEngine(model, ql.AnalyticHestonEngine.AngledContour,
                                      ql.FourierIntegration.expSinh(1e-14), 1e-16)
    else:
        eng = ql.AnalyticHestonEngine(model, 192)
    options = []
    for i in range(QUANTLIB_SAMPLE):
        kind = ql.Option.Call if b["option_type"][i] == 1 else ql.Option.Put
        option = ql.VanillaOption(ql.PlainVanillaPayoff(kind, float(b["strike"][i])),
                                  ql.EuropeanExercise(today + 365))
        option.setPricingEngine(eng)
        options.append(option)

    def loop():
        for option in options:
            option.recalculate()
            option.NPV()

    benchmark.extra_info["rows"] = QUANTLIB_SAMPLE
    benchmark(loop)
