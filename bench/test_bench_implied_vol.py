"""Implied volatility (Black-76): pricegrid's kernel against py_vollib_vectorized.

py_vollib_vectorized runs Jaeckel's Let's Be Rational compiled by numba (one thread), the
baseline the kernel is held to: at least 4x faster on batches at equal or better accuracy.
Both get the same rows (T 1 day..30 y, vol 1%..300%, strikes within 3 std devs, calls and
puts, rates -1%..5%, QuantLib prices). Accuracy is measured on up to 5000 of those rows (every
n/5000-th) whose prices are instead the exact Black price (mpmath, 30 digits) rounded to a
double, against the vol that reproduces that rounded price (true vol + rounding / vega); only
rows whose vol the rounded price identifies to 1e-13 count (vega * vol * 1e-12 > 10 * 2 eps *
price). Each benchmark records the max and median relative error of its implementation there
and how many rows came back NaN.

    .venv/bin/python -m pytest bench/test_bench_implied_vol.py --benchmark-json=bench/results/implied_vol.json
    .venv/bin/python bench/report_implied_vol.py bench/results/implied_vol.json
"""

from __future__ import annotations

import math
import warnings

import mpmath as mp
import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import implied_vol as iv

SIZES = [1, 1_000, 100_000]
EPS = np.finfo(float).eps
CASES = [("pricegrid", 1), ("pricegrid", 2), ("py_vollib_vectorized", 1)]   # (implementation, threads)
ACCURACY_ROWS = 5000


def exact_price(o, k, f, t, r, v):
    """Black-76 price and vega to 30 digits from the exact doubles."""
    with mp.workdps(30):
        K, F, T, r, v = map(mp.mpf, (k, f, t, r, v))
        sd, df, w = v * mp.sqrt(T), mp.exp(-r * T), 1 if o == 1 else -1
        d1 = mp.log(F / K) / sd + sd / 2
        price = df * w * (F * mp.ncdf(w * d1) - K * mp.ncdf(w * (d1 - sd)))
        return price, df * F * mp.npdf(d1) * mp.sqrt(T)


def make_rows(n: int, seed: int = 2024) -> dict:
    rng = np.random.default_rng(seed)
    T = 10 ** rng.uniform(math.log10(1 / 365), math.log10(30), n)
    vol = 10 ** rng.uniform(-2, math.log10(3), n)
    r = rng.uniform(-0.01, 0.05, n)
    F = np.full(n, 100.0)
    K = F * np.exp(rng.uniform(-3, 3, n) * vol * np.sqrt(T))
    ot = np.where(rng.random(n) < 0.5, 1, 2).astype(np.int32)
    DF = np.exp(-r * T)
    price = np.array([ql.blackFormula(ql.Option.Call if o == 1 else ql.Option.Put, k, f, v * math.sqrt(t), d)
                      for o, k, f, v, t, d in zip(ot, K, F, vol, T, DF)])
    sample = np.arange(0, n, max(1, n // ACCURACY_ROWS))
    ref = np.full(n, np.nan)
    ident = np.zeros(n, dtype=bool)
    for i in sample:
        p, vega = exact_price(ot[i], K[i], F[i], T[i], r[i], vol[i])
        price[i] = float(p)
        ref[i] = float(mp.mpf(vol[i]) + (mp.mpf(price[i]) - p) / vega)
        ident[i] = float(vega) * vol[i] * 1e-12 > 10 * 2 * EPS * price[i]
    return dict(ot=ot, K=K, T=T, F=F, r=r, price=price, ref=ref, ident=ident,
                flag=np.where(ot == 1, "c", "p"), q=np.zeros(1), fwd=np.empty(0), df=np.empty(0),
                out=np.empty(n), status=np.empty(n, np.int32))


@pytest.fixture(scope="module")
def rows():
    data = {n: make_rows(n) for n in SIZES}
    import py_vollib_vectorized  # noqa: F401  (numba compiles on first call: do it here)
    run_py_vollib(data[SIZES[1]])
    return data


def run_pricegrid(d, threads):
    iv.implied_vol_batch(2, d["ot"], d["K"], d["T"], d["F"], d["r"], d["q"], d["price"],
                         d["out"], d["fwd"], d["df"], d["status"], threads)
    return d["out"]


def run_py_vollib(d):
    from py_vollib_vectorized import vectorized_implied_volatility_black

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vectorized_implied_volatility_black(d["price"], d["F"], d["K"], d["r"], d["T"], d["flag"],
                                                   on_error="ignore", return_as="numpy")


def record_accuracy(benchmark, d, vol):
    vol = np.asarray(vol, dtype=float).ravel()
    ok = d["ident"]
    err = np.abs(vol[ok] - d["ref"][ok]) / d["ref"][ok]
    finite = err[~np.isnan(err)]
    benchmark.extra_info.update(
        rows=len(vol), accuracy_rows=int(ok.sum()), nan_rows=int(np.isnan(vol).sum()),
        nan_accuracy_rows=int(np.isnan(err).sum()),
        max_rel_err=float(finite.max()) if finite.size else None,
        median_rel_err=float(np.median(finite)) if finite.size else None)


@pytest.mark.parametrize("impl,threads", CASES)
@pytest.mark.parametrize("n", SIZES)
def test_implied_vol_black76(benchmark, rows, n, impl, threads):
    """Implied Black-76 vols of n rows; extra_info holds the accuracy on identifiable rows."""
    d = rows[n]
    benchmark.group = f"implied_vol n={n}"
    benchmark.extra_info.update(impl=impl, threads=threads, n=n)
    if impl == "pricegrid":
        vol = benchmark(run_pricegrid, d, threads)
    else:
        vol = benchmark(run_py_vollib, d)
    record_accuracy(benchmark, d, vol)


def test_implied_vol_one_latency(benchmark):
    """One row through implied_vol_one (front-office path): call overhead plus one solve."""
    benchmark.group = "implied_vol_one"
    benchmark.extra_info.update(impl="pricegrid_one", threads=1, n=1)
    result = benchmark(iv.implied_vol_one, 2, 1, 105.0, 0.5, 100.0, 0.02, 0.0, 3.2)
    assert result[0] == 0
