"""Benchmarks of pricegrid.ext.black: price + 5 Greeks (delta, gamma, vega, theta, rho), BSM.

Implementations, in the same run: ours (price_batch, 1 and 2 threads), a vectorised
numpy/scipy implementation of the same six outputs, and a QuantLib loop
(AnalyticEuropeanEngine, one option at a time, as a QuantLib user would write it) timed on
a fixed sample of at most 2,000 options. ``extra_info`` records the rows each timed call
prices; ``bench/report.py`` turns a ``--benchmark-json`` file into per-size ratios.

    .venv/bin/python -m pytest bench/test_bench_black.py --benchmark-json=/tmp/bench_black.json
    .venv/bin/python bench/report.py /tmp/bench_black.json
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import QuantLib as ql
from scipy.special import ndtr

from pricegrid.ext import black
from pricegrid.ext.status import MODEL_BSM

SIZES = (1, 1_000, 1_000_000)
QUANTLIB_SAMPLE = 2_000
MEASURES = np.array([1, 2, 3, 4, 5, 6], dtype=np.int32)  # price, delta, gamma, vega, theta, rho
CASES = [("pricegrid", 1), ("pricegrid", 2), ("numpy", 1), ("quantlib", 1)]


def numpy_bsm(option_type, strike, time, spot, rate, dividend, vol):
    """Price, delta, gamma, vega, theta, rho of European options, vectorised numpy/scipy."""
    w = np.where(option_type == 1, 1.0, -1.0)
    sqrt_t = np.sqrt(time)
    sd = vol * sqrt_t
    df = np.exp(-rate * time)
    dq = np.exp(-dividend * time)
    d1 = (np.log(spot / strike) + (rate - dividend) * time) / sd + 0.5 * sd
    d2 = d1 - sd
    n1, n2 = ndtr(w * d1), ndtr(w * d2)
    pdf = np.exp(-0.5 * d1 * d1) * (1.0 / np.sqrt(2.0 * np.pi))
    spot_dq, strike_df = spot * dq, strike * df
    price = w * (spot_dq * n1 - strike_df * n2)
    delta = w * dq * n1
    gamma = dq * pdf / (spot * sd)
    vega = spot_dq * pdf * sqrt_t
    theta = -0.5 * spot_dq * pdf * vol / sqrt_t + w * (dividend * spot_dq * n1 - rate * strike_df * n2)
    rho = w * time * strike_df * n2
    return price, delta, gamma, vega, theta, rho


def quantlib_loop(book, rows):
    """A function pricing the first `rows` options of the book one by one with QuantLib."""
    today = ql.Date(15, ql.January, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    spot, rate, div, vol = (ql.SimpleQuote(0.0) for _ in range(4))
    process = ql.GeneralizedBlackScholesProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), dc)),
    )
    engine = ql.AnalyticEuropeanEngine(process)
    trades = [
        (ql.PlainVanillaPayoff(ql.Option.Call if book["option_type"][i] == 1 else ql.Option.Put,
                               float(book["strike"][i])),
         ql.EuropeanExercise(today + int(book["days"][i])),
         float(book["underlying"][i]), float(book["rate"][i]), float(book["dividend"][i]),
         float(book["vol"][i]))
        for i in range(rows)
    ]
    out = np.empty((6, rows))

    def run():
        for i, (payoff, exercise, s, r, q, v) in enumerate(trades):
            spot.setValue(s)
            rate.setValue(r)
            div.setValue(q)
            vol.setValue(v)
            option = ql.VanillaOption(payoff, exercise)
            option.setPricingEngine(engine)
            out[:, i] = (option.NPV(), option.delta(), option.gamma(), option.vega(),
                         option.theta(), option.rho())
        return out

    return run


def kernel_args(book):
    """The book's columns in price_batch's argument order."""
    return [book[name] for name in ("option_type", "strike", "time", "underlying", "rate", "dividend", "vol")]


def reference(args, rows):
    """Our single-threaded price + 5 Greeks of the first `rows` options, to check each result."""
    out = np.empty((len(MEASURES), rows))
    status = np.empty(rows, dtype=np.int32)
    none = np.empty(0)
    assert black.price_batch(MODEL_BSM, *(a[:rows] for a in args), MEASURES, out, none, none, status, 1) == 0
    return out


@pytest.mark.parametrize("impl, threads", CASES, ids=[f"{i}-{t}thread" for i, t in CASES])
@pytest.mark.parametrize("rows", SIZES)
def test_price_and_five_greeks(benchmark, bsm_book, rows, impl, threads):
    """Price + delta, gamma, vega, theta, rho of a BSM book of `rows` European options."""
    book = bsm_book(rows)
    args = kernel_args(book)
    timed_rows = min(rows, QUANTLIB_SAMPLE) if impl == "quantlib" else rows
    if impl == "pricegrid":
        out = np.empty((len(MEASURES), rows))
        status = np.empty(rows, dtype=np.int32)
        none = np.empty(0)

        def run():
            black.price_batch(MODEL_BSM, *args, MEASURES, out, none, none, status, threads)
            return out
    elif impl == "numpy":
        def run():
            return numpy_bsm(*args)
    else:
        run = quantlib_loop(book, timed_rows)
    benchmark.extra_info.update(impl=impl, threads=threads, rows=rows, timed_rows=timed_rows)
    result = benchmark(run)
    np.testing.assert_allclose(np.asarray(result), reference(args, timed_rows), rtol=1e-9, atol=1e-9)


INTERLEAVED_PAIRS = 31


def test_two_threads_against_one_interleaved(benchmark, bsm_book):
    """Two threads vs one on 1,000,000 rows, measured as alternating pairs of calls.

    The per-implementation benchmarks above time one thread and two threads minutes apart,
    so a shared machine's drift lands in their ratio (1.6x to 2.3x between runs of the same
    build here). Alternating the two settings call by call exposes both to the same drift;
    the report takes the ratio of the two medians."""
    rows = 1_000_000
    book = bsm_book(rows)
    args = kernel_args(book)
    out = np.empty((len(MEASURES), rows))
    status = np.empty(rows, dtype=np.int32)
    none = np.empty(0)
    times: dict[int, list[float]] = {1: [], 2: []}

    def pairs():
        for threads in (1, 2):  # warm both (thread team, pages)
            black.price_batch(MODEL_BSM, *args, MEASURES, out, none, none, status, threads)
        for _ in range(INTERLEAVED_PAIRS):
            for threads in (1, 2):
                t0 = time.perf_counter()
                black.price_batch(MODEL_BSM, *args, MEASURES, out, none, none, status, threads)
                times[threads].append(time.perf_counter() - t0)
        return out

    result = benchmark.pedantic(pairs, rounds=1, iterations=1)
    one, two = float(np.median(times[1])), float(np.median(times[2]))
    benchmark.extra_info.update(interleaved=True, rows=rows, pairs=INTERLEAVED_PAIRS, one_thread_s=one, two_threads_s=two)
    np.testing.assert_array_equal(result, reference(args, rows))  # two threads: the same bits as one


# ------------------------------------------------------------------ the plain C loop reference
PLAIN_C = Path(__file__).parent / "c" / "plain_bsm.c"


@pytest.fixture(scope="module")
def plain_bsm(tmp_path_factory):
    """bench/c/plain_bsm.c compiled with the kernels' flags, loaded with ctypes."""
    from pricegrid.ext import BUILD_INFO

    flags = [f for f in BUILD_INFO["compile_args"] if f.startswith(("-O", "-march", "-fno-", "-fopenmp-simd"))]
    lib = tmp_path_factory.mktemp("plain") / "plain_bsm.so"
    cc = shutil.which(BUILD_INFO.get("compiler", "cc").split()[0]) or "cc"
    subprocess.run([cc, *flags, "-shared", "-fPIC", str(PLAIN_C), "-o", str(lib), "-lm"], check=True, timeout=120)
    fn = ctypes.CDLL(str(lib)).plain_bsm
    fn.restype = None
    fn.argtypes = [ctypes.c_long] + [ctypes.c_void_p] * 13
    return fn, flags


def test_kernel_against_a_plain_c_loop_interleaved(benchmark, bsm_book, plain_bsm):
    """Our kernel (one thread) vs a plain C loop with glibc's vector math, 1,000,000 rows,
    price + 5 Greeks, measured as alternating pairs of calls (the report quotes the ratio of
    the medians; the issue's target is <= 1.0)."""
    fn, flags = plain_bsm
    rows = 1_000_000
    book = bsm_book(rows)
    args = [np.ascontiguousarray(a) for a in kernel_args(book)]
    args[0] = args[0].astype(np.int32)
    out = np.empty((len(MEASURES), rows))
    plain = np.empty((len(MEASURES), rows))
    status = np.empty(rows, dtype=np.int32)
    none = np.empty(0)
    pointers = [a.ctypes.data for a in args] + [plain[j].ctypes.data for j in range(len(MEASURES))]
    times: dict[str, list[float]] = {"pricegrid": [], "plain_c": []}

    def ours():
        black.price_batch(MODEL_BSM, *args, MEASURES, out, none, none, status, 1)

    def theirs():
        fn(rows, *pointers)

    def pairs():
        ours(), theirs()  # warm both (pages, libmvec)
        for _ in range(INTERLEAVED_PAIRS):
            for name, call in (("pricegrid", ours), ("plain_c", theirs)):
                t0 = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - t0)
        return out

    benchmark.pedantic(pairs, rounds=1, iterations=1)
    ours_s, plain_s = float(np.median(times["pricegrid"])), float(np.median(times["plain_c"]))
    benchmark.extra_info.update(plain_c=True, rows=rows, pairs=INTERLEAVED_PAIRS, pricegrid_s=ours_s,
                                plain_c_s=plain_s, flags=flags)
    assert not status.any()
    np.testing.assert_allclose(out, plain, rtol=1e-11, atol=1e-12)  # the same six numbers per row
