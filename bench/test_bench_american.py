"""Benchmarks of pricegrid.ext.american: American option prices, fixed-point engine vs QuantLib.

Book: spot 100, strike 100 exp(U(-0.5, 0.5)), 1 day to 12 years, vol 5%..100%, r and q in
[0, 10%], calls and puts (the test suite's domain). Implementations, in the same run: ours
(price_batch on ROWS options, schemes fast and accurate, 1 and 2 threads) and a QuantLib loop
over the first QUANTLIB_SAMPLE options with one ``QdFpAmericanEngine`` reused (fast and
accurate schemes; per option the loop sets the rate, yield and vol quotes and asks for the
NPV). ``extra_info`` records the rows each timed call prices and, for every implementation,
the max and mean absolute error against QuantLib's high-precision scheme on the
QUANTLIB_SAMPLE options (computed once, outside the timed calls).

    .venv/bin/python -m pytest bench/test_bench_american.py --benchmark-json=/tmp/bench_american.json
    .venv/bin/python bench/report_american.py /tmp/bench_american.json
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import american

ROWS = 2_000
QUANTLIB_SAMPLE = 200
INPUTS = ("option_type", "strike", "time", "spot", "rate", "dividend", "vol")
PRICE = np.array([1], dtype=np.int32)
SCHEME = {"fast": 1, "accurate": 2}
QL_SCHEME = {"fast": "fastScheme", "accurate": "accurateScheme", "high": "highPrecisionScheme"}


@functools.lru_cache(maxsize=None)
def book():
    rng = np.random.default_rng(2016)
    days = rng.integers(1, 12 * 365 + 1, ROWS)
    return {
        "option_type": rng.integers(1, 3, ROWS).astype(np.int32),
        "strike": 100.0 * np.exp(rng.uniform(-0.5, 0.5, ROWS)), "days": days, "time": days / 365.0,
        "spot": np.full(ROWS, 100.0), "rate": rng.uniform(0.0, 0.1, ROWS),
        "dividend": rng.uniform(0.0, 0.1, ROWS), "vol": rng.uniform(0.05, 1.0, ROWS),
    }


class QuantLibLoop:
    """QUANTLIB_SAMPLE options of the book, one engine of the given scheme reused."""

    def __init__(self, scheme: str):
        b = book()
        self.today = ql.Date(15, ql.January, 2025)
        ql.Settings.instance().evaluationDate = self.today
        dc = ql.Actual365Fixed()
        self.rate, self.div, self.vol = ql.SimpleQuote(0.0), ql.SimpleQuote(0.0), ql.SimpleQuote(0.0)
        process = ql.GeneralizedBlackScholesProcess(
            ql.QuoteHandle(ql.SimpleQuote(100.0)),
            ql.YieldTermStructureHandle(ql.FlatForward(self.today, ql.QuoteHandle(self.div), dc)),
            ql.YieldTermStructureHandle(ql.FlatForward(self.today, ql.QuoteHandle(self.rate), dc)),
            ql.BlackVolTermStructureHandle(
                ql.BlackConstantVol(self.today, ql.NullCalendar(), ql.QuoteHandle(self.vol), dc)),
        )
        engine = ql.QdFpAmericanEngine(process, getattr(ql.QdFpAmericanEngine, QL_SCHEME[scheme])())
        self.options = []
        for i in range(QUANTLIB_SAMPLE):
            kind = ql.Option.Call if b["option_type"][i] == 1 else ql.Option.Put
            option = ql.VanillaOption(ql.PlainVanillaPayoff(kind, float(b["strike"][i])),
                                      ql.AmericanExercise(self.today, self.today + int(b["days"][i])))
            option.setPricingEngine(engine)
            self.options.append((option, float(b["rate"][i]), float(b["dividend"][i]), float(b["vol"][i])))

    def __call__(self) -> np.ndarray:
        ql.Settings.instance().evaluationDate = self.today
        out = np.empty(len(self.options))
        for i, (option, r, q, v) in enumerate(self.options):
            self.rate.setValue(r)
            self.div.setValue(q)
            self.vol.setValue(v)
            out[i] = option.NPV()
        return out


@functools.lru_cache(maxsize=None)
def reference() -> np.ndarray:
    """QuantLib's high-precision prices of the QUANTLIB_SAMPLE options (not timed)."""
    return QuantLibLoop("high")()


def record_errors(benchmark, prices: np.ndarray) -> None:
    err = np.abs(prices[:QUANTLIB_SAMPLE] - reference())
    benchmark.extra_info["max_abs_err_vs_ql_high"] = float(err.max())
    benchmark.extra_info["mean_abs_err_vs_ql_high"] = float(err.mean())


@pytest.mark.parametrize("scheme", ["fast", "accurate"])
@pytest.mark.parametrize("threads", [1, 2])
def test_pricegrid(benchmark, scheme, threads):
    """price_batch (fixed-point engine) on the whole book."""
    b = book()
    args = [b[name] for name in INPUTS]
    out, status = np.empty((1, ROWS)), np.empty(ROWS, np.int32)
    benchmark.extra_info.update(impl="pricegrid", scheme=scheme, threads=threads, timed_rows=ROWS)
    nbad = benchmark(american.price_batch, *args, PRICE, out, status, threads, 1, SCHEME[scheme])
    assert nbad == 0
    record_errors(benchmark, out[0])


@pytest.mark.parametrize("scheme", ["fast", "accurate"])
def test_quantlib(benchmark, scheme):
    """QdFpAmericanEngine, reused, over the first QUANTLIB_SAMPLE options."""
    loop = QuantLibLoop(scheme)
    benchmark.extra_info.update(impl="quantlib", scheme=scheme, threads=1, timed_rows=QUANTLIB_SAMPLE)
    prices = benchmark(loop)
    record_errors(benchmark, prices)
