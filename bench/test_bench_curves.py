"""Benchmarks of pricegrid.ext.curves: discount factors on a 30-node curve.

One curve of 30 nodes (1 week to 30 years, discount factors), 1,000,000 query times uniform
on [0, 35] years (past the last node too), unsorted and sorted. Implementations, in the same
run: ours (``curves.evaluate``, discount factor only) for each interpolation on 1 thread and
log-linear on 2 threads; ``np.interp`` on ln DF (log-linear; the numpy baseline); QuantLib's
``DiscountCurve.discount(t)`` (LogLinear) in a Python loop over the first 20,000 times, as a
QuantLib user would write it. Each timed call's result is checked against QuantLib or ours.
``extra_info`` records the times a timed call evaluates; ``bench/report_curves.py`` turns a
``--benchmark-json`` file into per-point times and ratios:

    .venv/bin/python -m pytest bench/test_bench_curves.py --benchmark-json=/tmp/bench_curves.json
    .venv/bin/python bench/report_curves.py /tmp/bench_curves.json
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import curves as cv

POINTS = 1_000_000
QUANTLIB_SAMPLE = 20_000
NODE_DAYS = np.array([7, 14, 30, 61, 91, 122, 152, 182, 273, 365, 456, 547, 638, 730, 913, 1095,
                      1461, 1826, 2191, 2556, 2922, 3287, 3652, 4383, 5113, 5844, 6574, 7305,
                      9131, 10958])
DF_ONLY = np.array([cv.DISCOUNT], dtype=np.int32)
TODAY = ql.Date(15, ql.January, 2025)
INTERPOLATIONS = {"log_linear": cv.LOG_LINEAR_DISCOUNT, "linear_zero": cv.LINEAR_ZERO,
                  "monotone_convex": cv.MONOTONE_CONVEX}


@functools.lru_cache(maxsize=None)
def curve() -> tuple[np.ndarray, np.ndarray]:
    """(node times, node discount factors): an upward-sloping curve with some wiggle."""
    t = NODE_DAYS / 365.0
    rng = np.random.default_rng(30)
    zero = 0.02 + 0.015 * (1.0 - np.exp(-t / 5.0)) + rng.uniform(-0.001, 0.001, t.size)
    return t, np.exp(-zero * t)


@functools.lru_cache(maxsize=None)
def query(order: str) -> np.ndarray:
    q = np.random.default_rng(31).uniform(0.0, 35.0, POINTS)
    return np.sort(q) if order == "sorted" else q


def ours(interp: int, q: np.ndarray, threads: int) -> np.ndarray:
    t, df = curve()
    out = np.empty((1, q.shape[0]))
    status = np.empty(q.shape[0], dtype=np.int32)
    assert cv.evaluate(interp, t, df, cv.DISCOUNT_FACTORS, q, DF_ONLY, out, status, threads) == 0
    return out[0]


def quantlib_curve():
    ql.Settings.instance().evaluationDate = TODAY
    t, df = curve()
    c = ql.DiscountCurve([TODAY] + [TODAY + int(d) for d in NODE_DAYS], [1.0] + df.tolist(), ql.Actual365Fixed())
    c.enableExtrapolation()
    return c


CASES = ([("pricegrid", name, 1) for name in INTERPOLATIONS] + [("pricegrid", "log_linear", 2)]
         + [("numpy", "log_linear", 1), ("quantlib", "log_linear", 1)])


@pytest.mark.parametrize("impl, interpolation, threads", CASES, ids=[f"{i}-{n}-{t}thread" for i, n, t in CASES])
@pytest.mark.parametrize("order", ["unsorted", "sorted"])
def test_discount_factors(benchmark, order, impl, interpolation, threads):
    """Discount factors of a 30-node curve at 1,000,000 query times (QuantLib: 20,000)."""
    q = query(order)
    timed = QUANTLIB_SAMPLE if impl == "quantlib" else POINTS
    if impl == "pricegrid":
        t, df = curve()
        code = INTERPOLATIONS[interpolation]
        out = np.empty((1, POINTS))
        status = np.empty(POINTS, dtype=np.int32)

        def run():
            cv.evaluate(code, t, df, cv.DISCOUNT_FACTORS, q, DF_ONLY, out, status, threads)
            return out[0]
    elif impl == "numpy":
        t, df = curve()
        x = np.concatenate(([0.0], t))
        log_df = np.concatenate(([0.0], np.log(df)))
        last_slope = (log_df[-1] - log_df[-2]) / (x[-1] - x[-2])

        def run():  # np.interp is flat beyond the last knot: add the flat-forward tail
            return np.exp(np.interp(q, x, log_df) + np.maximum(q - x[-1], 0.0) * last_slope)
    else:
        c = quantlib_curve()
        sample = q[:QUANTLIB_SAMPLE].tolist()
        discount = c.discount

        def run():
            return np.array([discount(s) for s in sample])
    benchmark.extra_info.update(product=f"discount_{order}", impl=impl, threads=threads,
                                measures=interpolation, timed_rows=timed)
    result = benchmark(run)
    if impl == "quantlib":
        np.testing.assert_allclose(result, ours(cv.LOG_LINEAR_DISCOUNT, q[:timed], 1), rtol=1e-12)
    elif interpolation == "log_linear":
        c = quantlib_curve()
        ref = np.array([c.discount(float(s)) for s in q[:2000]])
        np.testing.assert_allclose(result[:2000], ref, rtol=1e-12)
