"""Yield curves evaluated at arrays of times: discount factors, zero rates, forwards.

Kernel: ``pricegrid.ext.curves`` (formulas once, in ext/pg_curves.h; conventions, with the
extrapolation before the first and after the last node, in the design note of
ext/curves.pyx). Validated in tests/ext/test_curves_kernel.py against QuantLib on hundreds
of random curves: log-linear against DiscountCurve, linear zero against ZeroCurve, monotone
convex against PiecewiseConvexMonotoneForward (discount factors) and
ConvexMonotoneInterpolation (forwards), and against identities (node values reproduced,
continuity, positivity, extrapolation, thread count).

Stateless: a domain ``YieldCurve`` and an array of times in, arrays and per-time status out.
A curve that fails ``YieldCurve.validate()`` gives every time ``status.BAD_RATE`` and NaN
outputs (the kernel checks the nodes itself); a time that is NaN, infinite or negative gives
that time ``status.BAD_TIME``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pricegrid.ext import curves as _kernel
from pricegrid.server.domain.curves import YieldCurve

__all__ = ["DISCOUNT", "ZERO_RATE", "FORWARD", "CurveValues", "evaluate_curve",
           "discount_factors", "zero_rates", "forward_rates"]

DISCOUNT = _kernel.DISCOUNT
ZERO_RATE = _kernel.ZERO_RATE
FORWARD = _kernel.FORWARD


@dataclass
class CurveValues:
    """``values[j]`` holds measure ``measures[j]`` at each time; status bits per time."""

    measures: tuple[int, ...]
    values: np.ndarray   # (k, m) float64
    status: np.ndarray   # (m,) int32, 0 = evaluated (pg_status.h bits otherwise)
    bad: int             # times whose status is not 0 (their values are NaN)


def _nodes(curve: YieldCurve) -> tuple[np.ndarray, np.ndarray]:
    return (np.ascontiguousarray(curve.node_times, dtype=np.float64),
            np.ascontiguousarray(curve.node_values, dtype=np.float64))


def evaluate_curve(curve: YieldCurve, times, measures: Sequence[int] = (DISCOUNT,), *,
                   threads: int = 1) -> CurveValues:
    """Evaluate ``curve`` at ``times`` (years from its valuation date, any order)."""
    t = np.ascontiguousarray(times, dtype=np.float64).reshape(-1)
    meas = np.ascontiguousarray(measures, dtype=np.int32)
    out = np.empty((meas.shape[0], t.shape[0]), dtype=np.float64)
    status = np.empty(t.shape[0], dtype=np.int32)
    node_times, node_values = _nodes(curve)
    bad = _kernel.evaluate(int(curve.interpolation), node_times, node_values, int(curve.value_kind),
                           t, meas, out, status, threads)
    return CurveValues(tuple(int(m) for m in meas), out, status, bad)


def discount_factors(curve: YieldCurve, times, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(discount factors, status) at ``times``."""
    r = evaluate_curve(curve, times, (DISCOUNT,), threads=threads)
    return r.values[0], r.status


def zero_rates(curve: YieldCurve, times, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(continuously compounded zero rates, status) at ``times``."""
    r = evaluate_curve(curve, times, (ZERO_RATE,), threads=threads)
    return r.values[0], r.status


def forward_rates(curve: YieldCurve, times, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(instantaneous forward rates, status) at ``times``."""
    r = evaluate_curve(curve, times, (FORWARD,), threads=threads)
    return r.values[0], r.status
