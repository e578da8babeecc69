"""Kernels that poll a stop block (ext/pg_stop.h): Monte Carlo, American (tree and fixed point),
Heston and the implied-vol batch stop within milliseconds of their deadline or of the flag, mark
every row they did not finish PG_CANCELLED with NaN outputs, say why in the block, and give
exactly the same numbers as before when they are not stopped. Time bounds are generous (shared
2-core VM); bench/test_bench_budgets.py measures the tight figures."""

import threading
import time

import numpy as np
import pytest

from pricegrid.ext import american, heston, implied_vol, montecarlo
from pricegrid.ext import status as st

one = lambda x: np.array([x], dtype=np.float64)  # noqa: E731
i1 = lambda x: np.array([x], dtype=np.int32)  # noqa: E731


def block(deadline_s=None, flag=False):
    b = np.zeros(st.STOP_WORDS, dtype=np.int64)
    if deadline_s is not None:
        b[st.STOP_DEADLINE] = time.monotonic_ns() + int(deadline_s * 1e9)
    b[st.STOP_FLAG] = int(flag)
    return b


def mc_barrier(rows, paths, stop, threads=1, measures=(1,)):
    out = np.empty((len(measures), rows))
    se = np.empty_like(out)
    status = np.empty(rows, dtype=np.int32)
    strike = np.linspace(90.0, 110.0, rows)
    montecarlo.barrier_price_batch(
        i1(2), i1(1), strike, one(1.0), one(70.0), one(0.0), one(0.0), one(100.0), one(0.03), one(0.0), 1, one(0.2),
        *(one(0.0),) * 5, np.array(measures, dtype=np.int32), out, se, status, threads, paths, 1 / 252, 7, True, True,
        False, False, stop=stop)
    return out, se, status


def am(rows, method, steps, stop, threads=1, measures=(1, 2, 3, 4)):
    out = np.empty((len(measures), rows))
    status = np.empty(rows, dtype=np.int32)
    strike = np.linspace(80.0, 120.0, rows)
    american.price_batch(i1(2), strike, one(1.0), one(100.0), one(0.03), one(0.01), one(0.2),
                         np.array(measures, dtype=np.int32), out, status, threads, method, 2, steps, stop=stop)
    return out, status


def hs(rows, stop, threads=1):
    out = np.empty((2, rows))
    status = np.empty(rows, dtype=np.int32)
    rng = np.random.default_rng(3)
    heston.price_batch(i1(1), rng.uniform(60, 140, rows), one(1.0), one(100.0), one(0.03), one(0.0),
                       rng.uniform(0.01, 0.09, rows), one(1.5), one(0.04), one(0.5), one(-0.7),
                       np.array([1, 2], dtype=np.int32), out, status, threads, stop=stop)
    return out, status


def ivs(rows, stop, threads=1, seed=5):
    """Implied vols of ``rows`` BSM calls and puts (a few rows out of bounds: their own status);
    (vol, forward, df, status)."""
    rng = np.random.default_rng(seed)
    strike = rng.uniform(80.0, 120.0, rows)
    option_type = rng.integers(1, 3, rows).astype(np.int32)
    intrinsic = np.where(option_type == 1, np.maximum(100.0 - strike, 0.0), np.maximum(strike - 100.0, 0.0))
    price = intrinsic + rng.uniform(-0.01, 5.0, rows)
    vol, fwd, df = np.empty(rows), np.empty(rows), np.empty(rows)
    status = np.empty(rows, dtype=np.int32)
    implied_vol.implied_vol_batch(1, option_type, strike, one(0.5), one(100.0), one(0.03), one(0.01), price,
                                  vol, fwd, df, status, threads, stop=stop)
    return vol, fwd, df, status


# ------------------------------------------------------------------ not stopped: same numbers
@pytest.mark.parametrize("threads", [1, 2])
def test_a_stop_block_that_never_fires_changes_nothing(threads):
    far = block(deadline_s=600)
    for a, b in zip(mc_barrier(6, 4096, None, threads, (1, 2)), mc_barrier(6, 4096, far, threads, (1, 2))):
        np.testing.assert_array_equal(a, b)
    for method, steps in ((american.METHOD_FIXED_POINT, 801), (american.METHOD_TREE, 301)):
        for a, b in zip(am(8, method, steps, None, threads), am(8, method, steps, block(600), threads)):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(hs(300, None, threads), hs(300, block(600), threads)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ivs(5000, None, threads), ivs(5000, far, threads)):
        np.testing.assert_array_equal(a, b)
    assert far[st.STOP_REASON] == 0


# ------------------------------------------------------------------ stopped before it starts
def test_a_raised_flag_cancels_every_row():
    for call in (lambda b: mc_barrier(3, 4096, b)[2], lambda b: am(3, american.METHOD_TREE, 301, b)[1],
                 lambda b: am(3, american.METHOD_FIXED_POINT, 801, b)[1], lambda b: hs(70, b)[1],
                 lambda b: ivs(300, b)[3], lambda b: ivs(300, b, threads=2)[3]):
        b = block(flag=True)
        status = call(b)
        assert (status & st.CANCELLED).all()
        assert b[st.STOP_REASON] == st.STOP_CANCELLED
    out, _, status = mc_barrier(2, 4096, block(flag=True))
    assert np.isnan(out).all()
    assert all(np.isnan(a).all() for a in ivs(100, block(flag=True))[:3])


def test_a_bad_stop_block_is_refused():
    with pytest.raises(ValueError, match="stop"):
        am(1, american.METHOD_TREE, 301, np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="stop"):
        hs(1, np.zeros(3, dtype=np.float64))
    with pytest.raises(ValueError, match="stop"):
        ivs(1, np.zeros(3, dtype=np.int32))


# ------------------------------------------------------------------ stopped while running
def _timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


@pytest.mark.parametrize("threads", [1, 2])
def test_monte_carlo_stops_at_its_deadline(threads):
    """4 rows x 10M paths x 252 steps: minutes of work, deadline in 0.15 s."""
    b = block(deadline_s=0.15)
    took, (out, se, status) = _timed(lambda: mc_barrier(4, 10_000_000, b, threads, (1, 2, 4)))
    assert took < 1.0
    assert (status == st.CANCELLED).all() and np.isnan(out).all() and np.isnan(se).all()
    assert b[st.STOP_REASON] == st.STOP_DEADLINE_EXCEEDED


def test_rows_done_before_the_stop_keep_their_results():
    """Quick rows finish; a row that cannot gets PG_CANCELLED; once stopped, a later call on
    the same block does nothing."""
    b = block(deadline_s=0.3)
    quick = mc_barrier(3, 4096, b)
    slow = mc_barrier(1, 10_000_000, b)
    assert (quick[2] == 0).all() and np.isfinite(quick[0]).all()
    np.testing.assert_array_equal(quick[0], mc_barrier(3, 4096, None)[0])
    assert slow[2][0] == st.CANCELLED
    took, later = _timed(lambda: mc_barrier(2, 4096, b))
    assert (later[2] == st.CANCELLED).all() and took < 0.5


def test_a_flag_raised_by_another_thread_stops_a_tree():
    b = block()
    threading.Timer(0.15, lambda: b.__setitem__(st.STOP_FLAG, 1)).start()
    took, (out, status) = _timed(lambda: am(16, american.METHOD_TREE, 20_001, b, 2, (1, 4)))
    assert took < 1.5
    assert (status == st.CANCELLED).any() and np.isnan(out[:, status == st.CANCELLED]).all()
    assert b[st.STOP_REASON] == st.STOP_CANCELLED


def test_one_long_tree_stops_inside_its_backward_walk():
    """One row of 100,000 steps with vega (three trees, seconds of work), deadline 0.1 s."""
    b = block(deadline_s=0.1)
    took, (out, status) = _timed(lambda: am(1, american.METHOD_TREE, 100_000, b, 1, (1, 4)))
    assert took < 0.8 and status[0] == st.CANCELLED and np.isnan(out).all()


def test_heston_stops_between_blocks():
    b = block(deadline_s=0.1)
    took, (out, status) = _timed(lambda: hs(300_000, b))
    assert took < 1.0
    cut = status == st.CANCELLED
    assert cut.any() and np.isnan(out[:, cut]).all()
    assert b[st.STOP_REASON] == st.STOP_DEADLINE_EXCEEDED


@pytest.mark.parametrize("threads", [1, 2])
def test_implied_vol_stops_mid_batch_and_keeps_the_rows_it_solved(threads):
    """2M rows (about 0.3 s of one core here) with deadlines of 5, 20, 80 ms: a batch that
    outlives its deadline was stopped (5 ms always: that would be 2.5 ns a row), within a
    millisecond or so of work past it (bound 0.5 s); every row is either solved with the
    exact result of an unstopped batch (its own status, bad rows included) or PG_CANCELLED
    with NaN in vol, forward and discount factor; one deadline at least leaves both kinds
    (on one thread, the cancelled rows are a suffix)."""
    rows = 2_000_000
    ref = ivs(rows, None, threads)
    assert (ref[3] != 0).any() and (ref[3] == 0).any()   # bad rows keep their own status
    mixed = False
    for deadline in (0.005, 0.02, 0.08):
        b = block(deadline_s=deadline)
        took, (vol, fwd, df, status) = _timed(lambda: ivs(rows, b, threads))
        cut = status == st.CANCELLED
        assert took < deadline + 0.5
        if deadline == 0.005 or took > deadline + 0.01:
            assert cut.any() and b[st.STOP_REASON] == st.STOP_DEADLINE_EXCEEDED
        assert np.isnan(vol[cut]).all() and np.isnan(fwd[cut]).all() and np.isnan(df[cut]).all()
        np.testing.assert_array_equal(status[~cut], ref[3][~cut])
        for got, want in zip((vol, fwd, df), ref[:3]):
            np.testing.assert_array_equal(got[~cut], want[~cut])
        if threads == 1 and (~cut).any():
            assert cut[int(np.argmax(cut)):].all()   # blocks run in order: a suffix is cut
        mixed |= bool((~cut).any())
    assert mixed


def test_implied_vol_stops_when_another_thread_raises_the_flag():
    """4M rows on two threads (about 0.25 s here), the flag raised after 20 ms."""
    b = block()
    threading.Timer(0.02, lambda: b.__setitem__(st.STOP_FLAG, 1)).start()
    took, (vol, _, _, status) = _timed(lambda: ivs(4_000_000, b, 2))
    assert took < 1.0 and b[st.STOP_REASON] == st.STOP_CANCELLED
    cut = status == st.CANCELLED
    assert cut.any() and np.isnan(vol[cut]).all()
