"""Benchmarks of pricegrid.ext.asian and pricegrid.ext.lookback against QuantLib's analytic engines.

Products (books of 100,000 options; equity ranges: spot 50-150, strikes within 25% of
spot, expiry 3 months to 3 years, vol 10-60%, rates 0-8%, yields 0-5%):

    asian_geo_cont   continuous geometric average (new trades: QuantLib prices no seasoned ones)
    asian_geo_disc   discrete geometric average, 12 fixings per trade on its own dates,
                     30% of the trades seasoned (1-6 past fixings)
    asian_tw_disc    discrete arithmetic average (Turnbull-Wakeman), the same schedules
    asian_levy_cont  continuous arithmetic average (Levy), 30% seasoned
    lookback_float   floating-strike lookback, 30% seasoned (extremum away from spot)
    lookback_fixed   fixed-strike lookback, 30% seasoned

Implementations, in the same run: ours (price only, 1 and 2 threads; and price + the six
Greeks, 1 thread) on the whole book, and a QuantLib loop over a fixed sample of the book's
first 2,000 options: the product's analytic engine built once and reused, per option the
four quotes set and the instrument built and priced, as a QuantLib user would write it
(the instrument is built inside the loop: instruments kept alive all observe the same
quotes and every quote change would notify all of them). ``extra_info`` records the
product, implementation, threads, measures and rows each timed call prices;
``bench/report_asian.py`` turns a ``--benchmark-json`` file into per-option times and
ratios of medians.

    .venv/bin/python -m pytest bench/test_bench_asian.py --benchmark-json=bench/results/asian.json
    .venv/bin/python bench/report_asian.py bench/results/asian.json
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import asian, lookback

ROWS = 100_000
QUANTLIB_SAMPLE = 2_000
FIXINGS = 12
PRODUCTS = ("asian_geo_cont", "asian_geo_disc", "asian_tw_disc", "asian_levy_cont", "lookback_float",
            "lookback_fixed")
PRICE = np.array([1], np.int32)
PRICE_AND_GREEKS = np.arange(1, 8, dtype=np.int32)
CASES = [("pricegrid", 1, "price"), ("pricegrid", 2, "price"), ("pricegrid", 1, "greeks"), ("quantlib", 1, "price")]
TODAY = ql.Date(15, ql.January, 2025)


@functools.lru_cache(maxsize=None)
def book(product: str) -> dict:
    """The product's book: market columns, and the schedule of discrete Asians in whole days."""
    rng = np.random.default_rng(sum(map(ord, product)))
    n = ROWS
    s = rng.uniform(50.0, 150.0, n)
    days = rng.integers(91, 1096, n)
    seasoned = (rng.random(n) < 0.3) & (product != "asian_geo_cont")
    b = {
        "option_type": rng.integers(1, 3, n).astype(np.int32), "strike": s * rng.uniform(0.75, 1.25, n),
        "days": days, "time": days / 365.0, "spot": s, "rate": rng.uniform(0.0, 0.08, n),
        "dividend_yield": rng.uniform(0.0, 0.05, n), "volatility": rng.uniform(0.10, 0.60, n),
    }
    if product.startswith("asian"):
        b["averaging"] = np.full(n, asian.GEOMETRIC if "geo" in product else asian.ARITHMETIC, np.int32)
        discrete = product.endswith("disc")
        # 12 fixings at days round(D k/12), k = 1..12 (distinct for D >= 91)
        fix_days = np.rint(days[:, None] * np.arange(1, FIXINGS + 1) / FIXINGS).astype(np.int64)
        b["fix_days"] = fix_days
        b["fixing_times"] = (fix_days / 365.0).ravel() if discrete else np.empty(0)
        b["fixing_counts"] = np.full(n, FIXINGS if discrete else 0, np.int32)
        b["past_fixings"] = np.where(seasoned & discrete, rng.integers(1, 7, n), 0).astype(np.int32)
        b["elapsed_days"] = np.where(seasoned & ~discrete, rng.integers(30, 365, n), 0)
        b["elapsed"] = b["elapsed_days"] / 365.0
        b["running_average"] = np.where(seasoned, s * rng.uniform(0.85, 1.15, n), 0.0)
    else:
        b["strike_type"] = np.full(n, lookback.FIXED if product == "lookback_fixed" else lookback.FLOATING, np.int32)
        away = np.where(seasoned, rng.uniform(0.0, 0.2, n), 0.0)
        b["running_minimum"] = s * np.exp(-away)
        b["running_maximum"] = s * np.exp(away)
    return b


def pricegrid_call(product: str, measures: np.ndarray, threads: int):
    """A function pricing the whole book with our kernel (outputs allocated outside)."""
    b = book(product)
    out = np.empty((measures.size, ROWS))
    status = np.empty(ROWS, np.int32)
    if product.startswith("asian"):
        method = asian.LEVY if product == "asian_levy_cont" else asian.TURNBULL_WAKEMAN
        args = (b["averaging"], b["option_type"], b["strike"], b["time"], b["fixing_times"], b["fixing_counts"],
                b["running_average"], b["past_fixings"], b["elapsed"], b["spot"], b["rate"], b["dividend_yield"],
                b["volatility"])
        return lambda: asian.asian_price_batch(*args, measures, out, status, threads, method), out
    args = (b["strike_type"], b["option_type"], b["strike"], b["time"], b["running_minimum"], b["running_maximum"],
            b["spot"], b["rate"], b["dividend_yield"], b["volatility"])
    return lambda: lookback.lookback_price_batch(*args, measures, out, status, threads), out


def quantlib_loop(product: str, rows: int):
    """A function pricing the book's first `rows` options one by one with QuantLib."""
    b = book(product)
    ql.Settings.instance().evaluationDate = TODAY
    dc = ql.Actual365Fixed()
    spot, rate, div, vol = (ql.SimpleQuote(0.0) for _ in range(4))
    process = ql.GeneralizedBlackScholesProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(TODAY, ql.NullCalendar(), ql.QuoteHandle(vol), dc)))
    average = ql.SimpleQuote(0.0)
    engines = {
        "asian_geo_cont": lambda: ql.AnalyticContinuousGeometricAveragePriceAsianEngine(process),
        "asian_geo_disc": lambda: ql.AnalyticDiscreteGeometricAveragePriceAsianEngine(process),
        "asian_tw_disc": lambda: ql.TurnbullWakemanAsianEngine(process),
        "asian_levy_cont": None,   # takes the trade's start date: one engine per start date
        "lookback_float": lambda: ql.AnalyticContinuousFloatingLookbackEngine(process),
        "lookback_fixed": lambda: ql.AnalyticContinuousFixedLookbackEngine(process),
    }
    engine = engines[product]() if engines[product] else None
    levy = {}
    trades = []
    for i in range(rows):
        call = b["option_type"][i] == 1
        kind = ql.Option.Call if call else ql.Option.Put
        exercise = ql.EuropeanExercise(TODAY + int(b["days"][i]))
        if product in ("asian_geo_disc", "asian_tw_disc"):
            m = int(b["past_fixings"][i])
            a = float(b["running_average"][i])
            geometric = product == "asian_geo_disc"
            acc = (a**m if m else 1.0) if geometric else a * m
            make = (lambda g=geometric, acc=acc, m=m, d=[TODAY + int(x) for x in b["fix_days"][i]],
                    p=ql.PlainVanillaPayoff(kind, float(b["strike"][i])), e=exercise:
                    ql.DiscreteAveragingAsianOption(ql.Average.Geometric if g else ql.Average.Arithmetic,
                                                    acc, m, d, p, e))
            eng = engine
        elif product.startswith("asian"):
            geometric = product == "asian_geo_cont"
            make = (lambda g=geometric, p=ql.PlainVanillaPayoff(kind, float(b["strike"][i])), e=exercise:
                    ql.ContinuousAveragingAsianOption(ql.Average.Geometric if g else ql.Average.Arithmetic, p, e))
            eng = engine
            if not geometric:
                start = int(b["elapsed_days"][i])
                if start not in levy:
                    levy[start] = ql.ContinuousArithmeticAsianLevyEngine(process, ql.QuoteHandle(average),
                                                                         TODAY - start)
                eng = levy[start]
        elif product == "lookback_float":
            minmax = float(b["running_minimum"][i] if call else b["running_maximum"][i])
            make = (lambda mm=minmax, p=ql.FloatingTypePayoff(kind), e=exercise:
                    ql.ContinuousFloatingLookbackOption(mm, p, e))
            eng = engine
        else:
            minmax = float(b["running_maximum"][i] if call else b["running_minimum"][i])
            make = (lambda mm=minmax, p=ql.PlainVanillaPayoff(kind, float(b["strike"][i])), e=exercise:
                    ql.ContinuousFixedLookbackOption(mm, p, e))
            eng = engine
        trades.append((make, eng, float(b["spot"][i]), float(b["rate"][i]), float(b["dividend_yield"][i]),
                       float(b["volatility"][i]), float(b.get("running_average", b["spot"])[i])))
    out = np.empty(rows)

    def run():
        for i, (make, eng, s, r, q, v, a) in enumerate(trades):
            spot.setValue(s)
            rate.setValue(r)
            div.setValue(q)
            vol.setValue(v)
            average.setValue(a)
            option = make()
            option.setPricingEngine(eng)
            out[i] = option.NPV()
        return out

    return run


@pytest.mark.parametrize("impl, threads, measures", CASES, ids=[f"{i}-{t}thread-{m}" for i, t, m in CASES])
@pytest.mark.parametrize("product", PRODUCTS)
def test_price(benchmark, product, impl, threads, measures):
    """One product's book: ours on 100,000 rows, QuantLib on its first 2,000."""
    if impl == "pricegrid":
        run, out = pricegrid_call(product, PRICE if measures == "price" else PRICE_AND_GREEKS, threads)
        timed_rows = ROWS
    else:
        run = quantlib_loop(product, QUANTLIB_SAMPLE)
        timed_rows = QUANTLIB_SAMPLE
    benchmark.extra_info.update(product=product, impl=impl, threads=threads, measures=measures, rows=ROWS,
                                timed_rows=timed_rows)
    result = benchmark(run)
    # the results of the timed calls: every row priced, and both price the same trades (a
    # sanity check; accuracy is tests/ext's job: QuantLib's Levy formula loses up to ~1e-7
    # relative near its singular carries b, b + vol^2, 2b + vol^2 = 0)
    ours, ours_out = pricegrid_call(product, PRICE, 1)
    assert ours() == 0
    if impl == "pricegrid":
        assert result == 0
        np.testing.assert_array_equal(out[0], ours_out[0])
    else:
        np.testing.assert_allclose(result, ours_out[0][:QUANTLIB_SAMPLE], rtol=1e-6, atol=1e-9)
