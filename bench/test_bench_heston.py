"""Benchmarks of pricegrid.ext.heston: European prices under Heston, against QuantLib.

Books (inputs built outside the timed calls):

* ``surface``: 100,000 options under one Heston parameter set (v0 = theta = 0.04,
  kappa = 1.5, sigma = 0.5, rho = -0.7, r = 2%, q = 1%), five expiries (1, 3, 6, 12 and 24
  months) in random row order, strikes log-uniform in [50, 200], calls and puts: a strike
  / expiry surface as a risk run or a calibration prices it.
* ``random``: 20,000 options, every row its own parameters and maturity (7 days to 10
  years, v0 and theta 0.005-0.5, kappa 0.1-10, sigma 0.05-1.5, rho -0.95..0.5, strikes
  50-200): the worst case for sharing characteristic-function evaluations.

Implementations, in the same run: ours (price_batch, 1 and 2 threads, the whole book) and a
QuantLib loop over the book's first 1,000 options, one ``AnalyticHestonEngine`` reused
(engine and option objects built outside the timed call; the loop sets the row's r and q
quotes and, for ``random``, the model's parameters, then takes the NPV):
``default`` is ``AnalyticHestonEngine(model)`` (Gauss-Laguerre, 144 points; on the random
book it differs from ours by up to ~3e-8, so it is reported but is not at 1e-10),
``angled`` is the angled contour of Andersen and Lake with exp-sinh quadrature to 1e-14
(the reference of the kernel tests). Each QuantLib case checks its prices against ours and
records the largest difference in ``extra_info["max_diff"]``; a case marked ``at_1e-10``
asserts it is below 1e-10. ``bench/report_heston.py`` prints per-option medians and the
ratios (ours 1 thread vs each QuantLib engine; 2 threads vs 1).

    .venv/bin/python -m pytest bench/test_bench_heston.py --benchmark-json=/tmp/bench_heston.json
    .venv/bin/python bench/report_heston.py /tmp/bench_heston.json
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import heston

ROWS = {"surface": 100_000, "random": 20_000}
QUANTLIB_SAMPLE = 1_000
INPUTS = ("option_type", "strike", "time", "spot", "rate", "dividend_yield", "v0", "kappa", "theta",
          "sigma", "rho")
SURFACE = {"rate": 0.02, "dividend_yield": 0.01, "v0": 0.04, "kappa": 1.5, "theta": 0.04, "sigma": 0.5,
           "rho": -0.7}
EXPIRY_DAYS = (30, 91, 182, 365, 730)
PRICE = np.array([1], dtype=np.int32)
QUANTLIB_CASES = [("surface", "default", True), ("surface", "angled", True),
                  ("random", "default", False), ("random", "angled", True)]


@functools.lru_cache(maxsize=None)
def book(layout: str) -> dict:
    n = ROWS[layout]
    rng = np.random.default_rng(1993)
    logu = lambda lo, hi: np.exp(rng.uniform(np.log(lo), np.log(hi), n))  # noqa: E731
    b = {
        "option_type": rng.integers(1, 3, n).astype(np.int32), "strike": 100.0 * logu(0.5, 2.0),
        "days": rng.integers(7, 3651, n), "spot": np.full(n, 100.0),
        "rate": rng.uniform(-0.01, 0.06, n), "dividend_yield": rng.uniform(0.0, 0.04, n),
        "v0": logu(0.005, 0.5), "kappa": logu(0.1, 10.0), "theta": logu(0.005, 0.5),
        "sigma": logu(0.05, 1.5), "rho": rng.uniform(-0.95, 0.5, n),
    }
    if layout == "surface":
        b.update({name: np.full(n, value) for name, value in SURFACE.items()})
        b["days"] = rng.choice(EXPIRY_DAYS, n)
    b["time"] = b["days"] / 365.0
    return b


def ours(layout: str, rows: int | None = None, threads: int = 1) -> np.ndarray:
    b = book(layout)
    rows = ROWS[layout] if rows is None else rows
    out, status = np.empty((1, rows)), np.empty(rows, np.int32)
    assert heston.price_batch(*(b[name][:rows] for name in INPUTS), PRICE, out, status, threads) == 0
    return out[0]


@pytest.mark.parametrize("layout", ["surface", "random"])
@pytest.mark.parametrize("threads", [1, 2])
def test_pricegrid(benchmark, layout, threads):
    """price_batch on the whole book."""
    b = book(layout)
    args = [b[name] for name in INPUTS]
    n = ROWS[layout]
    out, status = np.empty((1, n)), np.empty(n, np.int32)
    benchmark.extra_info.update(impl="pricegrid", layout=layout, threads=threads, rows=n)
    nbad = benchmark(heston.price_batch, *args, PRICE, out, status, threads)
    assert nbad == 0


@pytest.mark.parametrize("layout, engine, at_1e10", QUANTLIB_CASES,
                         ids=[f"{layout}-{engine}" for layout, engine, _ in QUANTLIB_CASES])
def test_quantlib(benchmark, layout, engine, at_1e10):
    """AnalyticHestonEngine, reused, over the book's first QUANTLIB_SAMPLE options."""
    b = book(layout)
    today = ql.Date(15, ql.January, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    spot, rate, div = ql.SimpleQuote(100.0), ql.SimpleQuote(0.0), ql.SimpleQuote(0.0)
    process = ql.HestonProcess(
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), dc)),
        ql.QuoteHandle(spot), *(float(b[name][0]) for name in ("v0", "kappa", "theta", "sigma", "rho")),
    )
    model = ql.HestonModel(process)
    if engine == "default":
        eng = ql.AnalyticHestonEngine(model)
    else:
        eng = ql.AnalyticHestonEngine(model, ql.AnalyticHestonEngine.AngledContour,
                                      ql.FourierIntegration.expSinh(1e-14), 1e-16)
    rows = []
    for i in range(QUANTLIB_SAMPLE):
        kind = ql.Option.Call if b["option_type"][i] == 1 else ql.Option.Put
        option = ql.VanillaOption(ql.PlainVanillaPayoff(kind, float(b["strike"][i])),
                                  ql.EuropeanExercise(today + int(b["days"][i])))
        option.setPricingEngine(eng)
        params = ql.Array([float(b[name][i]) for name in ("theta", "kappa", "sigma", "rho", "v0")])
        rows.append((option, float(b["rate"][i]), float(b["dividend_yield"][i]), params))
    out = np.empty(QUANTLIB_SAMPLE)
    one_set = layout == "surface"

    def loop():
        for i, (option, r, q, params) in enumerate(rows):
            rate.setValue(r)
            div.setValue(q)
            if one_set:
                option.recalculate()
            else:
                model.setParams(params)
            out[i] = option.NPV()
        return out

    benchmark.extra_info.update(impl=f"quantlib-{engine}", layout=layout, threads=1, rows=QUANTLIB_SAMPLE)
    benchmark(loop)
    max_diff = float(np.max(np.abs(out - ours(layout, QUANTLIB_SAMPLE))))
    benchmark.extra_info.update(max_diff=max_diff, at_1e10=at_1e10)
    assert max_diff <= (1e-10 if at_1e10 else 1e-6)
