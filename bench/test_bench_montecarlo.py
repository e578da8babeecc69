"""Benchmarks of pricegrid.ext.montecarlo: paths per second, one option priced by simulation.

Cases (one row each, price only, no variance reduction, pseudo-random numbers):

* ``gbm_european``  GBM European call, one exact log-Euler step per path, 2^20 paths
* ``gbm_asian64``   GBM arithmetic Asian call, 64 equally spaced fixings = 64 steps, 2^16 paths
* ``heston_qe64``   Heston European call, Andersen's QE with martingale correction, 64 steps,
                    2^15 paths

Implementations, in the same run: ours (1 and 2 threads) and ``numpy``: the same scheme
written here with numpy arrays over paths (numpy's Philox generator and its normals; QE's
exponential-branch uniform as Phi(-Zv) by scipy.special.ndtr, as in the kernel), in chunks of
2^16 paths, one thread. ``extra_info`` records the paths and steps each timed call simulates;
``bench/report_montecarlo.py`` turns a JSON file of a run into paths per second and the
ratios of medians (ours 1 thread vs numpy, ours 2 threads vs 1 thread). The 1-minute load
average after each benchmark is recorded too: on a shared machine the 2-thread figure is
only meaningful when the second core was free.

    .venv/bin/python -m pytest bench/test_bench_montecarlo.py --benchmark-json=/tmp/bench_mc.json
    .venv/bin/python bench/report_montecarlo.py /tmp/bench_mc.json
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy.special import ndtr

from pricegrid.ext import montecarlo as mc

S, K, T, R, Q, VOL = 100.0, 100.0, 1.0, 0.05, 0.02, 0.25
HESTON = {"v0": 0.04, "kappa": 1.5, "theta": 0.04, "sigma": 0.5, "rho": -0.7}
STEPS = 64
CASES = {"gbm_european": (2**20, 1), "gbm_asian64": (2**16, STEPS), "heston_qe64": (2**15, STEPS)}
CHUNK = 2**16


def _a(*values, dtype=float):
    return np.array(values, dtype=dtype)


def ours(case, paths, threads, seed=1):
    """The kernel on one row: (price, standard error)."""
    out, se, status = np.empty((1, 1)), np.empty((1, 1)), np.empty(1, np.int32)
    zero = _a(0.0)
    common = (_a(1, dtype=np.int32), _a(K), _a(T))
    market = (_a(S), _a(R), _a(Q))
    settings = (_a(1, dtype=np.int32), out, se, status, threads, paths, 1.0 / STEPS, seed,
                False, False, False, False)
    if case == "gbm_european":
        mc.european_price_batch(*common, *market, mc.GBM, _a(VOL), zero, zero, zero, zero, zero, *settings)
    elif case == "gbm_asian64":
        fix = np.arange(1, STEPS + 1) / STEPS * T
        mc.asian_price_batch(_a(1, dtype=np.int32), *common, fix, _a(STEPS, dtype=np.int32), zero,
                             _a(0, dtype=np.int32), zero, *market, mc.GBM, _a(VOL), zero, zero, zero, zero,
                             zero, *settings)
    else:
        mc.european_price_batch(*common, *market, mc.HESTON, zero, *(_a(HESTON[k]) for k in
                                                                     ("v0", "kappa", "theta", "sigma", "rho")),
                                *settings)
    assert status[0] == 0
    return out[0, 0], se[0, 0]


# --------------------------------------------------------------------------- numpy baselines
def _numpy_european(rng, n):
    z = rng.standard_normal(n)
    st = S * np.exp((R - Q - 0.5 * VOL**2) * T + VOL * math.sqrt(T) * z)
    return math.exp(-R * T) * np.maximum(st - K, 0.0)


def _numpy_asian(rng, n):
    dt = T / STEPS
    z = rng.standard_normal((n, STEPS))
    x = np.cumsum((R - Q - 0.5 * VOL**2) * dt + VOL * math.sqrt(dt) * z, axis=1)
    avg = S * np.exp(x).mean(axis=1)
    return math.exp(-R * T) * np.maximum(avg - K, 0.0)


def _numpy_heston_qe(rng, n):
    """Andersen (2008) QE, gamma1 = gamma2 = 1/2, psi_c = 1.5, martingale correction."""
    v0, kap, th, sg, rho = (HESTON[k] for k in ("v0", "kappa", "theta", "sigma", "rho"))
    dt = T / STEPS
    e = math.exp(-kap * dt)
    c1, c2 = sg**2 * e * (1 - e) / kap, th * sg**2 * (1 - e) ** 2 / (2 * kap)
    k0 = -rho * kap * th * dt / sg
    k1 = 0.5 * dt * (kap * rho / sg - 0.5) - rho / sg
    k2 = 0.5 * dt * (kap * rho / sg - 0.5) + rho / sg
    k3 = k4 = 0.5 * dt * (1 - rho**2)
    a_ = k2 + 0.5 * k4
    v = np.full(n, v0)
    x = np.zeros(n)
    for _ in range(STEPS):
        zv = rng.standard_normal(n)
        zs = rng.standard_normal(n)
        m = th + (v - th) * e
        psi = (v * c1 + c2) / (m * m)
        quad = psi <= 1.5
        with np.errstate(invalid="ignore", divide="ignore"):
            ip = 2.0 / psi
            b2 = ip - 1.0 + np.sqrt(ip) * np.sqrt(np.maximum(ip - 1.0, 0.0))
            a = m / (1.0 + b2)
            vq = a * (np.sqrt(b2) + zv) ** 2
            oma = 1.0 - 2.0 * a_ * a
            lmq = a_ * b2 * a / oma - 0.5 * np.log(oma)
            p = (psi - 1.0) / (psi + 1.0)
            beta = (1.0 - p) / m
            omu = ndtr(-zv)
            ve = np.where(omu >= 1.0 - p, 0.0, np.log((1.0 - p) / omu) / beta)
            lme = np.log(p + beta * (1.0 - p) / (beta - a_))
        vn = np.where(quad, vq, ve)
        ok = np.where(quad, oma > 0.0, a_ < beta)
        k0s = np.where(ok, -np.where(quad, lmq, lme) - (k1 + 0.5 * k3) * v, k0)
        x += k0s + k1 * v + k2 * vn + np.sqrt(k3 * v + k4 * vn) * zs
        v = vn
    st = S * np.exp((R - Q) * T + x)
    return math.exp(-R * T) * np.maximum(st - K, 0.0)


NUMPY = {"gbm_european": _numpy_european, "gbm_asian64": _numpy_asian, "heston_qe64": _numpy_heston_qe}


def numpy_price(case, paths, seed=1):
    """The numpy baseline: (price, standard error), in chunks of CHUNK paths."""
    rng = np.random.Generator(np.random.Philox(seed))
    total = total2 = 0.0
    for start in range(0, paths, CHUNK):
        y = NUMPY[case](rng, min(CHUNK, paths - start))
        total += y.sum()
        total2 += (y * y).sum()
    mean = total / paths
    return mean, math.sqrt((total2 / paths - mean * mean) / (paths - 1))


# --------------------------------------------------------------------------- benchmarks
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("threads", [1, 2])
def test_pricegrid(benchmark, case, threads):
    """montecarlo kernel, one row."""
    paths, steps = CASES[case]
    benchmark.extra_info.update(impl="pricegrid", threads=threads, case=case, paths=paths, steps=steps)
    benchmark(ours, case, paths, threads)
    benchmark.extra_info["loadavg_after"] = os.getloadavg()[0]


@pytest.mark.parametrize("case", list(CASES))
def test_numpy(benchmark, case):
    """The same scheme vectorised with numpy over paths."""
    paths, steps = CASES[case]
    benchmark.extra_info.update(impl="numpy", threads=1, case=case, paths=paths, steps=steps)
    benchmark(numpy_price, case, paths)
    benchmark.extra_info["loadavg_after"] = os.getloadavg()[0]


@pytest.mark.parametrize("case", list(CASES))
def test_baseline_computes_the_same_price(case):
    """Not timed: the numpy baseline and the kernel estimate the same price (4 combined SE)."""
    paths, _ = CASES[case]
    a, sa = ours(case, paths, 1)
    b, sb = numpy_price(case, paths)
    assert abs(a - b) <= 4.0 * math.hypot(sa, sb), (a, sa, b, sb)
