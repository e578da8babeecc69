"""Benchmarks of pricegrid.ext.barrier: barrier, double barrier, digital and one-touch books.

For each product a book of 100,000 options, priced in the same run by: ours, price only,
on 1 and 2 threads; ours with all ten measures (price and nine Greeks) on 1 thread; and
QuantLib's analytic engine in a Python loop over the first 1,000 options of the book, one
engine reused, as a QuantLib user would write it (payoffs and exercises built beforehand;
per option: set the four market quotes, build the instrument, NPV):

    barrier   AnalyticBarrierEngine          (all four types, calls and puts, rebates)
    double    AnalyticDoubleBarrierEngine    (default 5-term series; knock-in and knock-out)
    digital   AnalyticEuropeanEngine         (cash-or-nothing, asset-or-nothing, gap)
    touch     AnalyticDigitalAmericanEngine  (one-touch paid at the hit or at expiry)

Books: spot 50-150, 1 week to 2 years, vol 10-50%, rates 0-6%, yields 0-4%; barriers 3%-40%
from spot; double-barrier corridors of 20%-100% (log-width) with vol^2 T / width^2 <= 0.2,
where QuantLib's 5-term series has converged, so that its results check ours. Each timed
call's result is checked against the other implementation. ``extra_info`` records the rows a
timed call prices; ``bench/report_barrier.py`` turns a ``--benchmark-json`` file into
per-option times and ratios:

    .venv/bin/python -m pytest bench/test_bench_barrier.py --benchmark-json=/tmp/bench_barrier.json
    .venv/bin/python bench/report_barrier.py /tmp/bench_barrier.json
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import barrier as bar

ROWS = 100_000
QUANTLIB_SAMPLE = 1_000
PRODUCTS = ("barrier", "double", "digital", "touch")
PRICE = np.array([1], dtype=np.int32)
ALL = np.arange(1, 11, dtype=np.int32)
COLUMNS = {
    "barrier": (("barrier_type", "option_type"),
                ("strike", "time", "barrier", "rebate", "monitoring_interval", "spot", "rate",
                 "dividend_yield", "volatility")),
    "double": (("knock", "option_type"),
               ("strike", "time", "lower_barrier", "upper_barrier", "spot", "rate", "dividend_yield",
                "volatility")),
    "digital": (("payoff", "option_type"),
                ("strike", "time", "cash", "payoff_strike", "spot", "rate", "dividend_yield", "volatility")),
    "touch": (("touch_type", "direction", "payment"),
              ("cash", "barrier", "time", "monitoring_interval", "spot", "rate", "dividend_yield",
               "volatility")),
}
ENTRY = {"barrier": bar.barrier_price_batch, "double": bar.double_barrier_price_batch,
         "digital": bar.digital_price_batch, "touch": bar.touch_price_batch}
TODAY = ql.Date(15, ql.January, 2025)


@functools.lru_cache(maxsize=None)
def book(product: str) -> dict:
    """A reproducible book of ROWS options of one product."""
    rng = np.random.default_rng(2025)
    n = ROWS
    spot = rng.uniform(50.0, 150.0, n)
    days = rng.integers(7, 2 * 365 + 1, n)
    b = {"days": days, "time": days / 365.0, "spot": spot, "rate": rng.uniform(0.0, 0.06, n),
         "dividend_yield": rng.uniform(0.0, 0.04, n), "volatility": rng.uniform(0.10, 0.50, n),
         "option_type": rng.integers(1, 3, n).astype(np.int32)}
    dist = rng.uniform(0.03, 0.40, n)
    down = rng.random(n) < 0.5
    b["strike"] = spot * np.exp(rng.uniform(-0.3, 0.3, n))
    if product == "barrier":
        b["barrier_type"] = np.where(down, rng.integers(1, 3, n), rng.integers(3, 5, n)).astype(np.int32)
        b["barrier"] = np.where(down, spot * np.exp(-dist), spot * np.exp(dist))
        b["rebate"] = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.0, 5.0, n))
        b["monitoring_interval"] = np.zeros(n)
    elif product == "double":
        width = rng.uniform(0.2, 1.0, n)
        share = rng.uniform(0.25, 0.75, n)
        b["lower_barrier"] = spot * np.exp(-share * width)
        b["upper_barrier"] = spot * np.exp((1.0 - share) * width)
        days = np.maximum(1, np.minimum(days, np.floor(365 * 0.2 * width**2 / b["volatility"] ** 2))).astype(int)
        b["days"], b["time"] = days, days / 365.0
        b["strike"] = np.exp(rng.uniform(np.log(b["lower_barrier"]), np.log(b["upper_barrier"])))
        b["knock"] = rng.integers(1, 3, n).astype(np.int32)
    elif product == "digital":
        b["payoff"] = rng.integers(1, 4, n).astype(np.int32)
        b["cash"] = rng.uniform(1.0, 10.0, n)
        b["payoff_strike"] = b["strike"] * rng.uniform(0.9, 1.1, n)
    else:
        b["touch_type"] = np.full(n, bar.ONE_TOUCH, np.int32)
        b["direction"] = np.where(down, bar.DOWN, bar.UP).astype(np.int32)
        b["payment"] = rng.integers(1, 3, n).astype(np.int32)
        b["barrier"] = np.where(down, spot * np.exp(-dist), spot * np.exp(dist))
        b["cash"] = rng.uniform(1.0, 10.0, n)
        b["monitoring_interval"] = np.zeros(n)
    return b


def args_of(product: str, rows: int) -> list:
    ints, floats = COLUMNS[product]
    b = book(product)
    return ([np.ascontiguousarray(b[c][:rows], dtype=np.int32) for c in ints]
            + [np.ascontiguousarray(b[c][:rows], dtype=np.float64) for c in floats])


def ours(product: str, rows: int, measures: np.ndarray, threads: int) -> np.ndarray:
    out = np.empty((measures.shape[0], rows))
    status = np.empty(rows, dtype=np.int32)
    assert ENTRY[product](*args_of(product, rows), measures, out, status, threads) == 0
    return out


def quantlib_loop(product: str, rows: int):
    """A function pricing the first `rows` options of the book one by one with QuantLib."""
    ql.Settings.instance().evaluationDate = TODAY
    dc = ql.Actual365Fixed()
    spot, rate, div, vol = (ql.SimpleQuote(0.0) for _ in range(4))
    process = ql.GeneralizedBlackScholesProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(TODAY, ql.NullCalendar(), ql.QuoteHandle(vol), dc)),
    )
    b = book(product)
    kind = lambda i: ql.Option.Call if b["option_type"][i] == 1 else ql.Option.Put  # noqa: E731
    expiry = lambda i: TODAY + int(b["days"][i])  # noqa: E731
    if product == "barrier":
        engine = ql.AnalyticBarrierEngine(process)
        types = {1: ql.Barrier.DownIn, 2: ql.Barrier.DownOut, 3: ql.Barrier.UpIn, 4: ql.Barrier.UpOut}
        made = [(types[b["barrier_type"][i]], float(b["barrier"][i]), float(b["rebate"][i]),
                 ql.PlainVanillaPayoff(kind(i), float(b["strike"][i])), ql.EuropeanExercise(expiry(i)))
                for i in range(rows)]
        build = lambda m: ql.BarrierOption(*m)  # noqa: E731
    elif product == "double":
        engine = ql.AnalyticDoubleBarrierEngine(process)
        made = [(ql.DoubleBarrier.KnockIn if b["knock"][i] == 1 else ql.DoubleBarrier.KnockOut,
                 float(b["lower_barrier"][i]), float(b["upper_barrier"][i]), 0.0,
                 ql.PlainVanillaPayoff(kind(i), float(b["strike"][i])), ql.EuropeanExercise(expiry(i)))
                for i in range(rows)]
        build = lambda m: ql.DoubleBarrierOption(*m)  # noqa: E731
    elif product == "digital":
        engine = ql.AnalyticEuropeanEngine(process)
        payoffs = {1: lambda i: ql.CashOrNothingPayoff(kind(i), float(b["strike"][i]), float(b["cash"][i])),
                   2: lambda i: ql.AssetOrNothingPayoff(kind(i), float(b["strike"][i])),
                   3: lambda i: ql.GapPayoff(kind(i), float(b["strike"][i]), float(b["payoff_strike"][i]))}
        made = [(payoffs[b["payoff"][i]](i), ql.EuropeanExercise(expiry(i))) for i in range(rows)]
        build = lambda m: ql.VanillaOption(*m)  # noqa: E731
    else:
        engine = ql.AnalyticDigitalAmericanEngine(process)
        made = [(ql.CashOrNothingPayoff(ql.Option.Put if b["direction"][i] == bar.DOWN else ql.Option.Call,
                                        float(b["barrier"][i]), float(b["cash"][i])),
                 ql.AmericanExercise(TODAY, expiry(i), bool(b["payment"][i] == bar.AT_EXPIRY)))
                for i in range(rows)]
        build = lambda m: ql.VanillaOption(*m)  # noqa: E731
    market = [(float(b["spot"][i]), float(b["rate"][i]), float(b["dividend_yield"][i]), float(b["volatility"][i]))
              for i in range(rows)]
    out = np.empty((1, rows))

    def run():
        for i, (m, (s, r, q, v)) in enumerate(zip(made, market)):
            spot.setValue(s)
            rate.setValue(r)
            div.setValue(q)
            vol.setValue(v)
            option = build(m)
            option.setPricingEngine(engine)
            out[0, i] = option.NPV()
        return out

    return run


CASES = [("pricegrid", 1, "price"), ("pricegrid", 2, "price"), ("pricegrid", 1, "all"), ("quantlib", 1, "price")]


@pytest.mark.parametrize("impl, threads, measures", CASES, ids=[f"{i}-{t}thread-{m}" for i, t, m in CASES])
@pytest.mark.parametrize("product", PRODUCTS)
def test_book(benchmark, product, impl, threads, measures):
    """Price (or price and nine Greeks) of a book of 100,000 options of one product."""
    timed_rows = QUANTLIB_SAMPLE if impl == "quantlib" else ROWS
    meas = PRICE if measures == "price" else ALL
    if impl == "pricegrid":
        args = args_of(product, ROWS)
        out = np.empty((meas.shape[0], ROWS))
        status = np.empty(ROWS, dtype=np.int32)
        entry = ENTRY[product]

        def run():
            entry(*args, meas, out, status, threads)
            return out
    else:
        run = quantlib_loop(product, timed_rows)
    benchmark.extra_info.update(product=product, impl=impl, threads=threads, measures=measures, rows=ROWS,
                                timed_rows=timed_rows)
    result = benchmark(run)
    reference = quantlib_loop(product, 200)()[0] if impl == "pricegrid" else ours(product, timed_rows, PRICE, 1)[0]
    scale = book(product)["spot"][:200 if impl == "pricegrid" else timed_rows] + 10.0
    got = result[0, :reference.shape[0]]
    assert np.all(np.abs(got - reference) <= 1e-9 * np.abs(reference) + 1e-11 * scale)
