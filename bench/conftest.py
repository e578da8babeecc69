"""Shared inputs for the kernel benchmarks, built once per size outside any timed call."""

from __future__ import annotations

import functools

import numpy as np
import pytest


@functools.lru_cache(maxsize=None)
def _bsm_book(rows: int) -> dict:
    rng = np.random.default_rng(rows)
    spot = rng.uniform(50.0, 150.0, rows)
    days = rng.integers(1, 3 * 365, rows)
    return {
        "option_type": rng.integers(1, 3, rows).astype(np.int32),
        "strike": spot * np.exp(rng.uniform(-0.5, 0.5, rows)),
        "days": days,
        "time": days / 365.0,
        "underlying": spot,
        "rate": rng.uniform(-0.01, 0.08, rows),
        "dividend": rng.uniform(0.0, 0.05, rows),
        "vol": rng.uniform(0.05, 0.80, rows),
    }


@pytest.fixture
def bsm_book():
    """bsm_book(rows): a reproducible book of European options under BSM (equity-index
    ranges: spot 50-150, strike within 50% of it, 1 day to 3 years, vol 5-80%)."""
    return _bsm_book
