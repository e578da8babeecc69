"""pricegrid.ext.curves: yield-curve lookups (discount factors, zero rates, forwards).

References and tolerances (eps = 2.2e-16):

* QuantLib >= 1.41, on a few hundred random curves (1 to 30 nodes, node dates 7 days to
  about 2 years apart, discrete forwards -2%..10%) and thousands of query times in
  [0, 1.25 t_n] (node times included, extrapolation included). Node times are
  days/365 with ``Actual365Fixed`` and node dates = reference date + days, so QuantLib's
  node times are the same doubles as ours; query times are passed to QuantLib as times.
  - LOG_LINEAR_DISCOUNT against ``DiscountCurve`` (LogLinear), LINEAR_ZERO against
    ``ZeroCurve`` (Linear, continuous compounding): discount factors to 1e-12 relative. Both
    compute the same formula (exp of a linearly interpolated log DF or zero rate times t), so
    only rounding separates them (observed: a few eps).
  - Zero rates to 1e-12 relative plus 2 eps / t absolute: QuantLib derives a zero rate as
    -ln(DF)/t from its discount factor, which costs eps/t in absolute terms at small t.
  - MONOTONE_CONVEX against ``PiecewiseConvexMonotoneForward`` with
    ``ConvexMonotone(quadraticity=0, monotonicity=1, forcePositive=False)`` (the basic
    Hagan-West method; QuantLib's defaults blend in a quadratic spline). The curve is
    bootstrapped from deposits (accuracy 1e-13) and its own node discount factors are our
    node values, so both interpolate the same nodes: discount factors to 1e-12 relative
    (observed ~1e-14). Forwards against ``ConvexMonotoneInterpolation`` (the same method on
    the same discrete forwards, evaluated exactly): 1e-13 absolute, i.e. about 1e-12 of the
    rates' size (observed ~1e-16). QuantLib's curves give instantaneous forwards only as
    finite differences (dt = 1e-4), so forwards of the other methods are checked against
    their closed forms and finite differences of our own ln DF instead.
* Identities: node values reproduced, discount factors continuous at nodes, monotone convex
  forwards continuous at interior nodes and monotone between monotone discrete forwards,
  forwards non-negative with the positivity amendment when discrete forwards are positive,
  zero rate * t = -ln DF, forward = -d ln DF/dt, extrapolation as documented in the design
  note of ext/curves.pyx, zero-rate and discount-factor inputs equivalent.
* Kernel contract: per-time status bits with NaN outputs (bad query times, bad curves,
  overflow), node checks (and the domain's validate() agreeing with them node by node),
  thread count, order and batch position not changing any bit, argument errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import curves as cv
from pricegrid.ext import status as pgs
from pricegrid.server.domain.curves import Interpolation, ValueKind, YieldCurve
from pricegrid.server.pricers import curves as pricer

EPS = np.finfo(float).eps
ALL = np.array([cv.DISCOUNT, cv.ZERO_RATE, cv.FORWARD], dtype=np.int32)
LL, LZ, MC, MCP = cv.LOG_LINEAR_DISCOUNT, cv.LINEAR_ZERO, cv.MONOTONE_CONVEX, cv.MONOTONE_CONVEX_POSITIVE
TODAY = ql.Date(15, ql.January, 2025)
DC = ql.Actual365Fixed()


# --------------------------------------------------------------------------- helpers
def evaluate(interp, node_times, node_values, kind, times, measures=ALL, threads=1):
    """(out (k, m), status, nbad)."""
    times = np.ascontiguousarray(times, dtype=np.float64)
    out = np.empty((len(measures), times.shape[0]))
    status = np.empty(times.shape[0], dtype=np.int32)
    nbad = cv.evaluate(interp, np.ascontiguousarray(node_times, dtype=np.float64),
                       np.ascontiguousarray(node_values, dtype=np.float64), kind, times,
                       np.asarray(measures, dtype=np.int32), out, status, threads)
    return out, status, nbad


def clean(interp, node_times, node_values, kind, times, measures=ALL, threads=1):
    out, status, nbad = evaluate(interp, node_times, node_values, kind, times, measures, threads)
    assert nbad == 0 and not status.any()
    return out


def random_curve(rng, n=None, lo=-0.02, hi=0.10):
    """(days, t, -ln DF at the nodes, discrete forwards): node times exact in days/365."""
    n = int(rng.integers(1, 31)) if n is None else n
    days = np.cumsum(rng.integers(7, 700, n))
    t = days / 365.0
    fd = rng.uniform(lo, hi, n)
    y = np.cumsum(fd * np.diff(np.concatenate(([0.0], t))))
    return days, t, y, fd


def query_times(rng, t, m=40):
    """Random times in [0, 1.25 t_n], the node times, 0 and a few exact day counts."""
    q = np.concatenate((rng.uniform(0.0, 1.25 * t[-1], m), t, [0.0],
                        rng.integers(0, int(t[-1] * 365 * 1.25) + 2, 8) / 365.0))
    return rng.permutation(q)


def node_forwards(t, y, positive=False):
    """Hagan-West node forwards f_0..f_n (written independently of the kernel, for checks)."""
    x = np.concatenate(([0.0], t))
    fd = np.diff(np.concatenate(([0.0], y))) / np.diff(x)
    n = len(t)
    if n == 1:
        f = np.array([fd[0], fd[0]])
    else:
        h = np.diff(x)
        f = np.empty(n + 1)
        f[1:n] = (h[1:] * fd[:-1] + h[:-1] * fd[1:]) / (h[:-1] + h[1:])
        f[0] = fd[0] - 0.5 * (f[1] - fd[0])
        f[n] = fd[-1] - 0.5 * (f[n - 1] - fd[-1])
    if positive:
        upper = np.concatenate(([2 * fd[0]], 2 * np.minimum(fd[:-1], fd[1:]), [2 * fd[-1]]))
        f = np.where(upper > 0, np.clip(f, 0.0, np.maximum(upper, 0.0)), f)
    return fd, f


# --------------------------------------------------------------------------- QuantLib
def test_log_linear_discount_matches_quantlib_discount_curve():
    """300 random curves, DF nodes: DF and zero rates against ql.DiscountCurve (LogLinear)."""
    ql.Settings.instance().evaluationDate = TODAY
    rng = np.random.default_rng(101)
    points = 0
    for _ in range(300):
        days, t, y, _ = random_curve(rng)
        df = np.exp(-y)
        curve = ql.DiscountCurve([TODAY] + [TODAY + int(d) for d in days], [1.0] + df.tolist(), DC)
        curve.enableExtrapolation()
        assert list(curve.times())[1:] == t.tolist()  # the same node times, bit for bit
        q = query_times(rng, t)
        out = clean(LL, t, df, cv.DISCOUNT_FACTORS, q)
        ref = np.array([curve.discount(float(s)) for s in q])
        np.testing.assert_allclose(out[0], ref, rtol=1e-12, atol=0)
        pos = q > 0
        ref_z = np.array([curve.zeroRate(float(s), ql.Continuous).rate() for s in q[pos]])
        assert np.all(np.abs(out[1][pos] - ref_z) <= 1e-12 * np.abs(ref_z) + 2 * EPS / q[pos])
        points += q.size
    assert points > 15_000


def test_linear_zero_matches_quantlib_zero_curve():
    """300 random curves, zero-rate nodes: DF and zero rates against ql.ZeroCurve (Linear)."""
    ql.Settings.instance().evaluationDate = TODAY
    rng = np.random.default_rng(202)
    for _ in range(300):
        days, t, y, _ = random_curve(rng)
        z = y / t
        # QuantLib needs a rate at the reference date: z_1, our flat zero rate before t_1
        curve = ql.ZeroCurve([TODAY] + [TODAY + int(d) for d in days], [float(z[0])] + z.tolist(), DC,
                             ql.NullCalendar(), ql.Linear(), ql.Continuous)
        curve.enableExtrapolation()
        q = query_times(rng, t)
        out = clean(LZ, t, z, cv.ZERO_RATES, q)
        ref = np.array([curve.discount(float(s)) for s in q])
        np.testing.assert_allclose(out[0], ref, rtol=1e-12, atol=0)
        pos = q > 0
        ref_z = np.array([curve.zeroRate(float(s), ql.Continuous).rate() for s in q[pos]])
        assert np.all(np.abs(out[1][pos] - ref_z) <= 1e-12 * np.abs(ref_z) + 2 * EPS / q[pos])


def _quantlib_monotone_convex(days, t, y):
    """PiecewiseConvexMonotoneForward (basic Hagan-West) through deposits pinning each node."""
    rates = np.expm1(y) / t  # simple rates: DF(t_i) = 1/(1 + r_i t_i)
    helpers = [ql.DepositRateHelper(float(r), ql.Period(int(d), ql.Days), 0, ql.NullCalendar(),
                                    ql.Unadjusted, False, DC) for r, d in zip(rates, days)]
    curve = ql.PiecewiseConvexMonotoneForward(TODAY, helpers, DC, ql.IterativeBootstrap(1e-13),
                                              ql.ConvexMonotone(0.0, 1.0, False))
    curve.enableExtrapolation()
    return curve


def test_monotone_convex_matches_quantlib_convex_monotone():
    """150 bootstrapped curves: DF and zero rates against QuantLib's convex-monotone forward
    curve; forwards against ConvexMonotoneInterpolation on the same discrete forwards."""
    ql.Settings.instance().evaluationDate = TODAY
    rng = np.random.default_rng(303)
    for _ in range(150):
        days, t, y, _ = random_curve(rng)
        curve = _quantlib_monotone_convex(days, t, y)
        df = np.array([curve.discount(float(s)) for s in t])  # the nodes QuantLib solved for
        q = query_times(rng, t)
        out = clean(MC, t, df, cv.DISCOUNT_FACTORS, q)
        ref = np.array([curve.discount(float(s)) for s in q])
        np.testing.assert_allclose(out[0], ref, rtol=1e-12, atol=0)
        pos = q > 0
        ref_z = np.array([curve.zeroRate(float(s), ql.Continuous).rate() for s in q[pos]])
        assert np.all(np.abs(out[1][pos] - ref_z) <= 1e-12 * np.abs(ref_z) + 2 * EPS / q[pos])
        # forwards inside [0, t_n): the interpolation itself, on our discrete forwards
        fd = np.diff(np.concatenate(([0.0], -np.log(df)))) / np.diff(np.concatenate(([0.0], t)))
        interp = ql.ConvexMonotoneInterpolation(ql.Array([0.0] + t.tolist()), ql.Array([0.0] + fd.tolist()),
                                                0.0, 1.0, False)
        inside = q < t[-1]
        ref_f = np.array([interp(float(s), True) for s in q[inside]])
        np.testing.assert_allclose(out[2][inside], ref_f, rtol=0, atol=1e-13)


# --------------------------------------------------------------------------- identities
@pytest.mark.parametrize("interp", [LL, LZ, MC, MCP])
def test_nodes_reproduced_and_inputs_equivalent(interp):
    rng = np.random.default_rng(interp)
    for _ in range(50):
        _, t, y, _ = random_curve(rng)
        df, z = np.exp(-y), y / t
        from_df = clean(interp, t, df, cv.DISCOUNT_FACTORS, t)
        from_z = clean(interp, t, z, cv.ZERO_RATES, t)
        np.testing.assert_allclose(from_df[0], df, rtol=4 * EPS, atol=0)
        np.testing.assert_allclose(from_z[1], z, rtol=1e-14, atol=1e-17)
        q = query_times(rng, t, 200)
        a = clean(interp, t, df, cv.DISCOUNT_FACTORS, q)
        b = clean(interp, t, z, cv.ZERO_RATES, q)
        # the two inputs differ by rounding (y t vs -ln exp(-y)); slopes divide that by a
        # segment's length (>= 7 days), so allow 1e-13 rather than a few eps
        np.testing.assert_allclose(a[0], b[0], rtol=1e-13)
        np.testing.assert_allclose(a[1:], b[1:], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("interp", [LL, LZ, MC, MCP])
def test_zero_rate_and_forward_from_discount_factor(interp):
    """zero * t = -ln DF; forward = -d ln DF/dt (central differences inside segments)."""
    rng = np.random.default_rng(10 + interp)
    for _ in range(50):
        _, t, y, _ = random_curve(rng)
        q = rng.uniform(1e-3, 1.25 * t[-1], 200)
        x = np.concatenate(([0.0], t))
        gap = np.min(np.abs(q[:, None] - x[None, :]), axis=1)
        q = q[gap > 2e-4]
        out = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q)
        np.testing.assert_allclose(out[1] * q, -np.log(out[0]), rtol=1e-13, atol=1e-15)
        h = 1e-6  # truncation h^2 f''/6 <~ 3e-10 on 7-day quadratic sections, rounding ~ 2 eps/h
        lo = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q - h, [cv.DISCOUNT])[0]
        hi = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q + h, [cv.DISCOUNT])[0]
        np.testing.assert_allclose(out[2], (np.log(lo) - np.log(hi)) / (2 * h), rtol=0, atol=1e-8)


@pytest.mark.parametrize("interp", [LL, LZ, MC, MCP])
def test_continuity_at_nodes(interp):
    """DF continuous at every node; monotone convex forwards also at interior nodes."""
    rng = np.random.default_rng(20 + interp)
    for _ in range(50):
        _, t, y, _ = random_curve(rng)
        left = np.nextafter(t, 0.0)
        a = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, left)
        b = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, t)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-14)
        if interp in (MC, MCP) and len(t) > 1:
            np.testing.assert_allclose(a[2][:-1], b[2][:-1], rtol=0, atol=1e-12)


def test_log_linear_forwards_flat_and_first_segment():
    rng = np.random.default_rng(31)
    for _ in range(30):
        _, t, y, fd = random_curve(rng)
        x = np.concatenate(([0.0], t))
        q = rng.uniform(0.0, t[-1], 300)
        seg = np.searchsorted(x, q, side="right") - 1
        out = clean(LL, t, np.exp(-y), cv.DISCOUNT_FACTORS, q)
        np.testing.assert_allclose(out[2], fd[seg], rtol=1e-13, atol=1e-14)  # fd from diff(y): rounding / 7 days
        first = q < t[0]
        np.testing.assert_allclose(out[1][first & (q > 0)], y[0] / t[0], rtol=1e-13)


@pytest.mark.parametrize("interp", [LL, LZ, MC, MCP])
def test_extrapolation_as_documented(interp):
    """t >= t_n: flat forward f_end (LL: last segment's forward, LZ: r_n + t_n slope_n,
    MC: last discrete forward); 0 <= t < t_1 for LL, LZ: the first node's zero rate;
    t = 0: DF 1, zero rate = forward at 0."""
    rng = np.random.default_rng(40 + interp)
    for _ in range(50):
        _, t, y, _ = random_curve(rng)
        y = -np.log(np.exp(-y))  # what the kernel reads from DF nodes (long extrapolations magnify it)
        z = y / t
        fd = np.diff(np.concatenate(([0.0], y))) / np.diff(np.concatenate(([0.0], t)))  # as the kernel
        if interp == LZ:
            f_end = z[-1] + (t[-1] * (z[-1] - z[-2]) / (t[-1] - t[-2]) if len(t) > 1 else 0.0)
        else:
            f_end = fd[-1]
        q = np.concatenate(([t[-1]], t[-1] + rng.uniform(0.0, 50.0, 50)))
        out = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q)
        np.testing.assert_allclose(out[2], f_end, rtol=1e-12, atol=1e-16)
        np.testing.assert_allclose(out[0], np.exp(-y[-1] - f_end * (q - t[-1])), rtol=1e-13)
        np.testing.assert_allclose(out[1], (y[-1] + f_end * (q - t[-1])) / q, rtol=1e-12, atol=1e-16)
        zero = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, [0.0])
        assert zero[0][0] == 1.0 and zero[1][0] == zero[2][0]
        if interp in (LL, LZ):
            front = np.concatenate(([0.0], rng.uniform(0.0, t[0], 20)))
            out = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, front)
            # z_1 = -ln(exp(-y_1))/t_1: rounding of about eps/t_1 in absolute terms
            np.testing.assert_allclose(out[1], z[0], rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(out[2], z[0], rtol=1e-13, atol=1e-14)


def test_monotone_convex_shape():
    """Monotone discrete forwards give monotone forwards (HW 2006, sec. 4); the collar keeps
    positive discrete forwards' forwards >= 0 where the basic method goes negative; the
    collar changes nothing where it does not bind."""
    rng = np.random.default_rng(50)
    grid_of = lambda t: np.linspace(0.0, t[-1], 4001)[:-1]  # noqa: E731
    for _ in range(40):
        n = int(rng.integers(2, 20))
        t = np.cumsum(rng.integers(7, 700, n)) / 365.0
        fd = np.sort(rng.uniform(-0.02, 0.1, n))
        y = np.cumsum(fd * np.diff(np.concatenate(([0.0], t))))
        f = clean(MC, t, np.exp(-y), cv.DISCOUNT_FACTORS, grid_of(t), [cv.FORWARD])[0]
        assert np.all(np.diff(f) >= -1e-15)
    negative_basic = 0
    for _ in range(40):
        n = int(rng.integers(3, 20))
        t = np.cumsum(rng.integers(7, 700, n)) / 365.0
        fd = np.where(np.arange(n) % 2 == 0, rng.uniform(0.0005, 0.002, n), rng.uniform(0.05, 0.1, n))
        y = np.cumsum(fd * np.diff(np.concatenate(([0.0], t))))
        grid = grid_of(t) if rng.random() < 0.5 else np.linspace(0.0, 2 * t[-1], 4000)
        pos = clean(MCP, t, np.exp(-y), cv.DISCOUNT_FACTORS, grid, [cv.FORWARD])[0]
        basic = clean(MC, t, np.exp(-y), cv.DISCOUNT_FACTORS, grid, [cv.FORWARD])[0]
        assert pos.min() >= 0.0
        negative_basic += basic.min() < 0.0
    assert negative_basic > 10  # the amendment matters on these curves
    for _ in range(40):
        _, t, y, _ = random_curve(rng, lo=0.02, hi=0.03)
        fd, f = node_forwards(t, y)
        _, f_collared = node_forwards(t, y, positive=True)
        grid = grid_of(t)
        a = clean(MC, t, np.exp(-y), cv.DISCOUNT_FACTORS, grid)
        b = clean(MCP, t, np.exp(-y), cv.DISCOUNT_FACTORS, grid)
        if np.array_equal(f, f_collared):
            assert np.array_equal(a, b)


# --------------------------------------------------------------------------- contract
def test_threads_order_and_position_do_not_change_bits():
    rng = np.random.default_rng(60)
    _, t, y, _ = random_curve(rng, 30)
    m = 3 * cv.PARALLEL_THRESHOLD + 77
    q = rng.uniform(0.0, 1.3 * t[-1], m)
    for interp in (LL, LZ, MC, MCP):
        one = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q, threads=1)
        two = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q, threads=2)
        assert np.array_equal(one, two)
        order = np.argsort(q)
        sorted_ = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q[order], threads=2)
        assert np.array_equal(sorted_, one[:, order])
        for i in (0, 5, 255, 256, m - 1):
            alone = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q[i:i + 1])
            assert np.array_equal(alone[:, 0], one[:, i])
        subset = clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q, [cv.FORWARD, cv.DISCOUNT])
        assert np.array_equal(subset, one[[2, 0]])


def test_one_measure_entry_points_and_pricer():
    rng = np.random.default_rng(61)
    _, t, y, _ = random_curve(rng, 12)
    q = rng.uniform(0.0, 1.3 * t[-1], 1000)
    full = clean(MC, t, np.exp(-y), cv.DISCOUNT_FACTORS, q)
    for row, entry in enumerate((cv.discount_factors, cv.zero_rates, cv.forward_rates)):
        out = np.empty(q.size)
        status = np.empty(q.size, dtype=np.int32)
        assert entry(MC, t, np.exp(-y), cv.DISCOUNT_FACTORS, q, out, status, 1) == 0
        assert np.array_equal(out, full[row])
    curve = YieldCurve("USD-SOFR", "USD", "ACT_365F", t, np.exp(-y), ValueKind.DISCOUNT_FACTOR,
                       Interpolation.MONOTONE_CONVEX)
    assert curve.validate() == []
    values = pricer.evaluate_curve(curve, q, (pricer.DISCOUNT, pricer.ZERO_RATE, pricer.FORWARD))
    assert values.bad == 0 and np.array_equal(values.values, full)
    df, status = pricer.discount_factors(curve, q)
    assert np.array_equal(df, full[0]) and not status.any()
    assert np.array_equal(pricer.forward_rates(curve, q)[0], full[2])
    assert np.array_equal(pricer.zero_rates(curve, q)[0], full[1])


@pytest.mark.parametrize("interp", [LL, LZ, MC, MCP])
def test_bad_query_times_get_status_and_nan(interp):
    rng = np.random.default_rng(70)
    _, t, y, _ = random_curve(rng, 10)
    q = rng.uniform(0.0, 1.3 * t[-1], 600)
    bad = [3, 17, 300, 599]
    q[bad] = [np.nan, -1e-300, np.inf, -2.0]
    out, status, nbad = evaluate(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q)
    assert nbad == 4
    assert np.array_equal(np.flatnonzero(status), bad)
    assert np.all(status[bad] == pgs.BAD_TIME)
    assert np.all(np.isnan(out[:, bad]))
    good = np.setdiff1d(np.arange(q.size), bad)
    assert np.all(np.isfinite(out[:, good]))
    assert np.array_equal(out[:, good], clean(interp, t, np.exp(-y), cv.DISCOUNT_FACTORS, q[good]))


BAD_NODES = [
    # (times, values, kind, {node: bits})
    ([1.0, 0.5, 2.0], [0.99, 0.98, 0.95], cv.DISCOUNT_FACTORS, {1: cv.NODE_TIME_NOT_INCREASING}),
    ([1.0, 1.0, 2.0], [0.99, 0.98, 0.95], cv.DISCOUNT_FACTORS, {1: cv.NODE_TIME_DUPLICATE}),
    ([np.nan, 1.0], [0.99, 0.98], cv.DISCOUNT_FACTORS, {0: cv.NODE_TIME_NOT_FINITE}),
    ([-1.0, 1.0], [0.99, 0.98], cv.DISCOUNT_FACTORS, {0: cv.NODE_TIME_NOT_POSITIVE}),
    ([0.0, 1.0], [0.01, 0.02], cv.ZERO_RATES, {0: cv.NODE_TIME_NOT_POSITIVE}),
    ([0.5, 1.0], [0.99, np.nan], cv.DISCOUNT_FACTORS, {1: cv.NODE_VALUE_NOT_FINITE}),
    ([0.5, 1.0], [0.0, -0.5], cv.DISCOUNT_FACTORS, {0: cv.NODE_DF_NOT_POSITIVE, 1: cv.NODE_DF_NOT_POSITIVE}),
    ([0.5, 1e300], [0.01, 1e10], cv.ZERO_RATES, {1: cv.NODE_OVERFLOW}),
    ([0.5, np.inf, 0.25], [0.01, 0.02, np.inf], cv.ZERO_RATES,
     {1: cv.NODE_TIME_NOT_FINITE, 2: cv.NODE_VALUE_NOT_FINITE}),
    # an infinite slope; basic monotone convex spreads it to the neighbouring section (f_1
    # mixes both discrete forwards); the positivity collar caps f_1 at 2 min(fd_1, fd_2)
    ([1.0, 1.0 + 1e-15], [0.01, 1e300], cv.ZERO_RATES, {1: cv.NODE_OVERFLOW}),
]
MONOTONE_CONVEX_SPREAD = {len(BAD_NODES) - 1: {0: cv.NODE_OVERFLOW, 1: cv.NODE_OVERFLOW}}


@pytest.mark.parametrize("case", range(len(BAD_NODES)))
@pytest.mark.parametrize("interp", [LL, LZ, MC, MCP])
def test_bad_curves_get_status_not_nan(interp, case):
    times, values, kind, expected = BAD_NODES[case]
    if interp == MC:
        expected = MONOTONE_CONVEX_SPREAD.get(case, expected)
    t, v = np.array(times), np.array(values)
    node_status = np.empty(t.size, dtype=np.int32)
    assert cv.validate_nodes(interp, t, v, kind, node_status) == len(expected)
    assert {i: int(b) for i, b in enumerate(node_status) if b} == expected
    q = np.array([0.0, 0.7, 5.0, np.nan])
    out, status, nbad = evaluate(interp, t, v, kind, q)
    assert nbad == 4 and np.all(np.isnan(out))
    assert list(status) == [pgs.BAD_RATE] * 3 + [pgs.BAD_RATE | pgs.BAD_TIME]
    # the domain names the same nodes
    curve = YieldCurve("C", "EUR", "ACT_365F", t, v, ValueKind(kind), Interpolation(interp))
    flagged = {int(v.field.split("[")[1].rstrip("]")) for v in curve.validate()}
    assert flagged == set(expected)


def test_empty_curve_and_empty_batch():
    out, status, nbad = evaluate(LL, [], [], cv.DISCOUNT_FACTORS, [0.5, 1.0])
    assert nbad == 2 and np.all(status == pgs.BAD_RATE) and np.all(np.isnan(out))
    out, status, nbad = evaluate(LL, [1.0], [0.99], cv.DISCOUNT_FACTORS, [])
    assert nbad == 0 and out.shape == (3, 0)
    assert cv.validate_nodes(LL, np.empty(0), np.empty(0), cv.DISCOUNT_FACTORS, np.empty(0, np.int32)) == 0


def test_overflow_gets_not_finite():
    # a very negative rate over a long time: DF overflows, the zero rate and forward do not
    t, z = np.array([1.0, 2.0]), np.array([-5.0, -5.0])
    q = np.array([1.5, 1000.0])
    out, status, nbad = evaluate(LL, t, z, cv.ZERO_RATES, q)
    assert nbad == 1 and status[1] == pgs.NOT_FINITE and status[0] == 0
    assert np.all(np.isnan(out[:, 1])) and np.all(np.isfinite(out[:, 0]))
    out, status, nbad = evaluate(LL, t, z, cv.ZERO_RATES, q, [cv.ZERO_RATE, cv.FORWARD])
    assert nbad == 0 and np.allclose(out[0], -5.0)


def test_argument_errors():
    t, v, q = np.array([1.0]), np.array([0.99]), np.array([0.5])
    out, status = np.empty((1, 1)), np.empty(1, dtype=np.int32)
    one = np.array([cv.DISCOUNT], dtype=np.int32)
    with pytest.raises(ValueError, match="interpolation"):
        cv.evaluate(9, t, v, cv.DISCOUNT_FACTORS, q, one, out, status, 1)
    with pytest.raises(ValueError, match="value kind"):
        cv.evaluate(LL, t, v, 0, q, one, out, status, 1)
    with pytest.raises(ValueError, match="measure"):
        cv.evaluate(LL, t, v, cv.DISCOUNT_FACTORS, q, np.array([4], dtype=np.int32), out, status, 1)
    with pytest.raises(ValueError, match="node_values"):
        cv.evaluate(LL, t, np.array([0.9, 0.8]), cv.DISCOUNT_FACTORS, q, one, out, status, 1)
    with pytest.raises(ValueError, match="out"):
        cv.evaluate(LL, t, v, cv.DISCOUNT_FACTORS, q, one, np.empty((2, 1)), status, 1)
    with pytest.raises(ValueError, match="status"):
        cv.evaluate(LL, t, v, cv.DISCOUNT_FACTORS, q, one, out, np.empty(2, np.int32), 1)
    with pytest.raises(ValueError, match="out"):
        cv.discount_factors(LL, t, v, cv.DISCOUNT_FACTORS, q, np.empty(2), status, 1)


def test_domain_validate_agrees_with_kernel_on_random_corruptions():
    """YieldCurve.validate() flags exactly the nodes validate_nodes flags."""
    rng = np.random.default_rng(80)
    junk = np.array([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e300, 5e-324])
    for trial in range(400):
        interp = int(rng.choice([LL, LZ, MC, MCP]))
        kind = int(rng.choice([cv.ZERO_RATES, cv.DISCOUNT_FACTORS]))
        _, t, y, _ = random_curve(rng)
        v = y / t if kind == cv.ZERO_RATES else np.exp(-y)
        t, v = t.copy(), v.copy()
        for _ in range(int(rng.integers(0, 4))):
            i = int(rng.integers(0, t.size))
            if rng.random() < 0.5:
                t[i] = rng.choice(junk) if rng.random() < 0.6 else t[int(rng.integers(0, t.size))]
            else:
                v[i] = rng.choice(junk)
        node_status = np.empty(t.size, dtype=np.int32)
        nbad = cv.validate_nodes(interp, t, v, kind, node_status)
        curve = YieldCurve("C", "EUR", "ACT_365F", t, v, ValueKind(kind), Interpolation(interp))
        flagged = {int(x.field.split("[")[1].rstrip("]")) for x in curve.validate()}
        assert flagged == set(np.flatnonzero(node_status).tolist()), (trial, t, v, node_status)
        assert nbad == len(flagged)
