"""Risk measures (pricegrid.server.domain.risk) against independent references.

* Historical VaR against numpy.quantile (``inverted_cdf``, and every other method by name;
  weighted scenarios against numpy's weighted ``inverted_cdf``), ES against the integral of
  the empirical quantile function over (alpha, 1) evaluated from a full sort (exact to
  rounding); properties on random P&L with hypothesis: ES >= VaR, both monotone in the level,
  translation and positive homogeneity, subadditivity of ES.
* Parametric VaR against closed forms (one factor; z from scipy.stats.norm), the cumulants
  against the eigen-decomposition route of the module's note 4, the moments and the
  Cornish-Fisher quantile against a seeded Monte Carlo of the quadratic form (10^6 draws;
  tolerances stated at each test, several standard errors wide).
* Components summing to ES, incremental ES against a brute-force re-computation without each
  trade, tag trees adding up.
* Studer's maximum loss: on the boundary of its ellipsoid, worse than random boundary
  points; chi-square quantiles against scipy.stats.chi2.ppf to 1e-10 relative.
* Every bad input raises ServiceError (INVALID_ARGUMENT) naming its field.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp

from pricegrid.server.domain import risk
from pricegrid.server.domain.errors import Code, ServiceError

LEVELS = (0.5, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999)
METHODS = [m for m in risk.QUANTILE_METHODS if m != "inverted_cdf"]


# ---------------------------------------------------------------------------- references
def es_reference(pnl: np.ndarray, alpha: float, p: np.ndarray | None = None) -> float:
    """(1/(1-alpha)) * integral over (alpha, 1) of the empirical quantile function of the
    losses: each sorted loss times the overlap of its probability interval with (alpha, 1]."""
    order = np.argsort(-pnl, kind="stable")
    losses = -pnl[order]
    p = np.full(len(pnl), 1.0 / len(pnl)) if p is None else (p / p.sum())[order]
    upper = np.cumsum(p)
    lower = upper - p
    overlap = np.clip(upper - np.maximum(lower, alpha), 0.0, None)
    return float(losses @ overlap / overlap.sum())


def random_cov(rng, k: int, scale: float = 1e-4) -> np.ndarray:
    a = rng.normal(size=(k, k))
    return a @ a.T / k * scale


def fields(exc: pytest.ExceptionInfo) -> list[str]:
    assert exc.value.code == Code.INVALID_ARGUMENT
    return [v.field for v in exc.value.violations]


pnl_vectors = hnp.arrays(np.float64, hs.integers(1, 300),
                         elements=hs.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
levels = hs.floats(0.001, 0.999)


# ---------------------------------------------------------------------------- historical
@pytest.mark.parametrize("n", [1, 2, 7, 100, 250, 1000, 1001, 4096])
def test_var_is_numpys_inverted_cdf_and_es_the_integral_of_the_quantile_function(n):
    rng = np.random.default_rng(n)
    pnl = rng.standard_t(4, size=n) * 1e5
    alphas = np.r_[LEVELS, rng.uniform(0.01, 0.99, 20)]
    var = risk.historical_var(pnl, alphas)
    es = risk.historical_es(pnl, alphas)
    np.testing.assert_array_equal(var, np.quantile(-pnl, alphas, method="inverted_cdf"))
    # the reference's cumulative sums of 1/n carry ~1e-16 absolute into overlaps of ~1e-3
    np.testing.assert_allclose(es, [es_reference(pnl, a) for a in alphas], rtol=1e-11)
    assert isinstance(risk.historical_var(pnl), float) and isinstance(risk.historical_es(pnl), float)


def test_es_is_the_mean_of_the_worst_losses_when_the_tail_is_whole():
    pnl = np.random.default_rng(1).normal(size=1000)
    worst = np.sort(-pnl)[::-1]
    assert risk.historical_es(pnl, 0.975) == pytest.approx(worst[:25].mean(), rel=1e-14)
    assert risk.historical_es(pnl, 0.99) == pytest.approx(worst[:10].mean(), rel=1e-14)
    assert risk.historical_var(pnl, 0.99) == worst[10]  # the 990th of 1000 losses
    # a partial boundary scenario: n (1 - alpha) = 2.5 of 100
    small = pnl[:100]
    w = np.sort(-small)[::-1]
    assert risk.historical_es(small, 0.975) == pytest.approx((w[0] + w[1] + 0.5 * w[2]) / 2.5, rel=1e-14)
    assert risk.historical_var(small, 0.975) == w[2]


def test_a_decimal_level_counts_the_scenarios_it_says():
    """100 x 0.56 is 56.00000000000001 in binary: the 56th loss (numpy takes the 57th)."""
    pnl = -np.arange(1.0, 101.0)  # losses 1..100
    assert 100 * 0.56 > 56.0
    assert risk.historical_var(pnl, 0.56) == 56.0
    assert np.quantile(-pnl, 0.56, method="inverted_cdf") == 57.0
    assert risk.historical_es(pnl, 0.56) == pytest.approx(np.arange(57.0, 101.0).mean(), rel=1e-15)
    assert risk.historical_var(pnl, 0.565) == 57.0
    assert risk.historical_es(pnl, 0.999999) == 100.0 == risk.historical_var(pnl, 0.999999)
    assert risk.historical_es(pnl, np.nextafter(1.0, 0.0)) == 100.0


def test_ties_single_scenarios_and_other_input_types():
    flat = np.full(50, -3.0)  # a loss of 3 in every scenario
    assert risk.historical_var(flat) == 3.0 == risk.historical_es(flat)
    a = risk.es_attribution(np.full((4, 50), -0.75))
    assert a.es == pytest.approx(3.0) and np.allclose(a.component, 0.75) and np.allclose(a.incremental, 0.75)
    assert risk.historical_var([2.5]) == -2.5 == risk.historical_es([2.5], [0.01, 0.99])[1]
    pnl = np.random.default_rng(6).normal(size=(5, 200))
    assert np.array_equal(risk.historical_es(pnl.astype(np.float32)), risk.historical_es(pnl.astype(np.float32)
                                                                                         .astype(np.float64)))
    assert risk.historical_var(pnl.tolist(), 0.9).tolist() == risk.historical_var(pnl, 0.9).tolist()


@pytest.mark.parametrize("method", METHODS)
def test_other_numpy_methods_by_name(method):
    pnl = np.random.default_rng(3).normal(size=(3, 500))
    np.testing.assert_array_equal(risk.historical_var(pnl, [0.95, 0.99], method=method),
                                  np.quantile(-pnl, [0.95, 0.99], axis=-1, method=method))


def test_cubes_along_either_axis_have_numpys_shapes():
    rng = np.random.default_rng(4)
    cube = rng.normal(size=(40, 300))
    for axis in (0, 1, -1, -2):
        want = np.quantile(-cube, [0.9, 0.99], axis=axis, method="inverted_cdf")
        np.testing.assert_array_equal(risk.historical_var(cube, [0.9, 0.99], axis=axis), want)
        assert risk.historical_var(cube, 0.99, axis=axis).shape == want.shape[1:]
    es = risk.historical_es(cube, 0.975, axis=1)
    np.testing.assert_allclose(es, [es_reference(row, 0.975) for row in cube], rtol=1e-12)
    es0 = risk.historical_es(cube, [0.9, 0.975], axis=0)
    assert es0.shape == (2, 300)
    np.testing.assert_allclose(es0[1], [es_reference(col, 0.975) for col in cube.T], rtol=1e-12)
    both = risk.historical_risk(cube, var_level=[0.95, 0.99], es_level=0.975)
    np.testing.assert_array_equal(both.var, risk.historical_var(cube, [0.95, 0.99]))
    np.testing.assert_allclose(both.es, es, rtol=1e-15)  # another partition: another order of the tail sum
    assert both.var_level.tolist() == [0.95, 0.99] and both.es_level == 0.975
    assert not both.var.flags.writeable
    # inputs are not touched (the partition works on a copy)
    before = cube.copy()
    risk.historical_risk(cube, axis=0)
    np.testing.assert_array_equal(cube, before)


def test_weighted_scenarios():
    rng = np.random.default_rng(5)
    pnl = rng.normal(size=500)
    alphas = [0.5, 0.9, 0.95, 0.975, 0.99]
    # equal weights: the unweighted estimator
    np.testing.assert_allclose(risk.historical_es(pnl, alphas, weights=np.full(500, 3.0)),
                               risk.historical_es(pnl, alphas), rtol=1e-12)
    np.testing.assert_array_equal(risk.historical_var(pnl, alphas, weights=np.ones(500)),
                                  risk.historical_var(pnl, alphas))
    # integer weights: the scenarios repeated
    counts = rng.integers(0, 5, 500).astype(float)
    counts[0] = 1.0
    repeated = np.repeat(pnl, counts.astype(int))
    np.testing.assert_allclose(risk.historical_es(pnl, alphas, weights=counts), risk.historical_es(repeated, alphas),
                               rtol=1e-11)
    np.testing.assert_array_equal(risk.historical_var(pnl, alphas, weights=counts),
                                  risk.historical_var(repeated, alphas))
    # age-weighted (Boudoukh-Richardson-Whitelaw): lambda^age, newest scenario last
    lam = 0.98
    brw = lam ** np.arange(499, -1, -1.0)
    var = risk.historical_var(pnl, alphas, weights=brw)
    np.testing.assert_array_equal(var, np.quantile(-pnl, alphas, weights=brw, method="inverted_cdf"))
    np.testing.assert_allclose(risk.historical_es(pnl, alphas, weights=brw),
                               [es_reference(pnl, a, brw) for a in alphas], rtol=1e-12)
    # a cube: each row with the same scenario weights
    cube = rng.normal(size=(7, 500))
    np.testing.assert_allclose(risk.historical_es(cube, 0.975, weights=brw),
                               [es_reference(row, 0.975, brw) for row in cube], rtol=1e-12)
    np.testing.assert_allclose(risk.historical_es(cube.T, 0.975, axis=0, weights=brw),
                               [es_reference(row, 0.975, brw) for row in cube], rtol=1e-12)
    # a scenario of probability 0 never counts
    heavy = pnl.copy()
    heavy[7] = -1e9
    w = np.ones(500)
    w[7] = 0.0
    assert risk.historical_es(heavy, 0.99, weights=w) == pytest.approx(risk.historical_es(np.delete(pnl, 7), 0.99))


@settings(max_examples=200, deadline=None)
@given(pnl_vectors, hs.lists(levels, min_size=1, max_size=5))
def test_es_at_least_var_and_both_monotone_in_the_level(pnl, alphas):
    alphas = np.sort(np.asarray(alphas))
    var = risk.historical_var(pnl, alphas)
    es = risk.historical_es(pnl, alphas)
    assert np.all(es >= var)
    assert np.all(np.diff(var) >= 0.0)
    assert np.all(np.diff(es) >= -1e-9 * (1.0 + np.abs(es[1:])))


@settings(max_examples=200, deadline=None)
@given(pnl_vectors, levels, hs.floats(-1e6, 1e6), hs.floats(1e-3, 1e3))
def test_translation_and_positive_homogeneity(pnl, alpha, shift, scale):
    var, es = risk.historical_var(pnl, alpha), risk.historical_es(pnl, alpha)
    tol = 1e-9 * (1e6 + abs(shift))
    assert risk.historical_var(pnl + shift, alpha) == pytest.approx(var - shift, abs=tol)
    assert risk.historical_es(pnl + shift, alpha) == pytest.approx(es - shift, abs=tol)
    assert risk.historical_var(scale * pnl, alpha) == pytest.approx(scale * var, rel=1e-12, abs=1e-12)
    assert risk.historical_es(scale * pnl, alpha) == pytest.approx(scale * es, rel=1e-12, abs=1e-9 * scale)


@settings(max_examples=200, deadline=None)
@given(hs.integers(2, 8), hs.integers(1, 200), levels, hs.integers(0, 2**32 - 1))
def test_es_is_subadditive(trades, scenarios, alpha, seed):
    rng = np.random.default_rng(seed)
    cube = rng.standard_t(3, size=(trades, scenarios)) * rng.uniform(0.1, 10.0, (trades, 1))
    parts = risk.historical_es(cube, alpha)
    whole = risk.historical_es(cube.sum(axis=0), alpha)
    assert whole <= parts.sum() + 1e-9 * np.abs(parts).sum()


# ---------------------------------------------------------------------------- parametric
def test_normal_quantile_is_as241():
    for p in (1e-300, 1e-10, 0.01, 0.3, 0.5, 0.975, 0.99, 1 - 1e-12):
        assert risk.normal_quantile(p) == pytest.approx(st.norm.ppf(p), rel=1e-14, abs=1e-15)


def test_delta_normal_against_the_closed_form():
    rng = np.random.default_rng(10)
    s = random_cov(rng, 6)
    d = rng.normal(size=6) * 1e4
    for alpha in (0.95, 0.99):
        assert risk.delta_normal_var(d, s, alpha) == pytest.approx(st.norm.ppf(alpha) * math.sqrt(d @ s @ d),
                                                                   rel=1e-14)
    books = rng.normal(size=(3, 6))
    var = risk.delta_normal_var(books, s, [0.95, 0.99])
    assert var.shape == (2, 3)
    np.testing.assert_allclose(var[1], [risk.delta_normal_var(b, s) for b in books], rtol=1e-15)
    # a short book loses as much as a long one; no exposure, no VaR
    assert risk.delta_normal_var(-d, s) == pytest.approx(risk.delta_normal_var(d, s), rel=1e-15)
    assert risk.delta_normal_var(np.zeros(6), s) == 0.0


def test_one_factor_delta_gamma_in_closed_form():
    d, g, vol = 1000.0, -5e4, 0.02  # a short-gamma book; factor st. dev. 2%
    s2 = vol**2
    m = risk.delta_gamma_moments([d], [[s2]], [[g]])
    k = (g * s2 / 2, d**2 * s2 + g**2 * s2**2 / 2, g**3 * s2**3 + 3 * d**2 * g * s2**2,
         3 * g**4 * s2**4 + 12 * d**2 * g**2 * s2**3)
    np.testing.assert_allclose(m.cumulants, k, rtol=1e-14)
    assert m.mean == k[0] and m.variance == k[1]
    assert m.skewness == pytest.approx(k[2] / k[1] ** 1.5, rel=1e-14) and m.skewness < 0
    assert m.excess_kurtosis == pytest.approx(k[3] / k[1] ** 2, rel=1e-14)
    z = st.norm.ppf(0.99)
    assert risk.delta_gamma_normal_var([d], [[g]], [[s2]]) == pytest.approx(z * math.sqrt(k[1]) - k[0], rel=1e-14)


def test_cumulants_against_the_eigen_decomposition():
    """Note 4's derivation: Q = sum_i b_i y_i + l_i y_i^2 with l the eigenvalues of C'GC/2."""
    rng = np.random.default_rng(11)
    for k in (1, 2, 5, 12):
        s = random_cov(rng, k) + 1e-6 * np.eye(k)
        g = rng.normal(size=(k, k)) * 50
        g = g + g.T
        d = rng.normal(size=k) * 100
        c = np.linalg.cholesky(s)
        lam, p = np.linalg.eigh(c.T @ g @ c / 2)
        b = p.T @ c.T @ d
        want = [lam.sum()] + [sum(math.factorial(r - 1) * 2 ** (r - 1) * lam**r
                                  + math.factorial(r) * 2.0 ** (r - 3) * b**2 * lam ** (r - 2)) for r in (2, 3, 4)]
        np.testing.assert_allclose(risk.delta_gamma_moments(d, s, g).cumulants, want, rtol=1e-10)


def quadratic_sample(rng, d, g, s, draws=1_000_000):
    x = rng.standard_normal((draws, len(d))) @ np.linalg.cholesky(s).T
    return x @ d + 0.5 * np.einsum("ni,ij,nj->n", x, g, x)


def book(rng, k=4, gamma_scale=300.0):
    """A 4-factor book with enough gamma for a skewed P&L (skewness -0.41, excess kurtosis 0.26)."""
    s = random_cov(rng, k, 4e-4)
    d = rng.normal(size=k) * 100
    g = rng.normal(size=(k, k))
    return d, (g + g.T) * gamma_scale, s


def test_moments_against_a_monte_carlo_of_the_quadratic_form():
    """10^6 seeded draws; tolerances about 5 standard errors of each sample moment."""
    d, g, s = book(np.random.default_rng(7))
    q = quadratic_sample(np.random.default_rng(70), d, g, s)
    m = risk.delta_gamma_moments(d, s, g)
    sd = math.sqrt(m.variance)
    assert q.mean() == pytest.approx(m.mean, abs=5 * sd / 1e3)
    assert q.var() == pytest.approx(m.variance, rel=5 * math.sqrt(2 + m.excess_kurtosis) / 1e3)
    assert st.skew(q) == pytest.approx(m.skewness, abs=0.015)
    assert st.kurtosis(q) == pytest.approx(m.excess_kurtosis, abs=0.05)


def test_cornish_fisher_against_a_monte_carlo_of_the_quadratic_form():
    """The 95% and 99% loss quantiles of 10^6 seeded draws (standard error about 0.2%):
    Cornish-Fisher within 1%, where delta-normal and delta-gamma-normal miss by over 5%."""
    for sign in (1.0, -1.0):  # short and long gamma (skewed either way)
        d, g, s = book(np.random.default_rng(7))
        g = sign * g
        q = quadratic_sample(np.random.default_rng(71), d, g, s)
        for alpha in (0.95, 0.99):
            mc = np.quantile(-q, alpha)
            assert risk.cornish_fisher_var(d, g, s, alpha) == pytest.approx(mc, rel=0.01)
            assert abs(risk.delta_normal_var(d, s, alpha) / mc - 1) > 0.05
            assert abs(risk.delta_gamma_normal_var(d, g, s, alpha) / mc - 1) > 0.03


def test_without_gamma_every_method_is_delta_normal():
    rng = np.random.default_rng(12)
    s = random_cov(rng, 5)
    d = rng.normal(size=(2, 5))
    zero = np.zeros((5, 5))
    dn = risk.delta_normal_var(d, s, [0.95, 0.99])
    np.testing.assert_allclose(risk.cornish_fisher_var(d, zero, s, [0.95, 0.99]), dn, rtol=1e-15)
    np.testing.assert_allclose(risk.delta_gamma_normal_var(d, zero, s, [0.95, 0.99]), dn, rtol=1e-15)
    with pytest.raises(ServiceError) as e:  # delta-normal reads the deltas only: gammas are refused
        risk.parametric_var("delta_normal", d, s, gamma=np.ones((5, 5)), level=0.99)
    assert [v.field for v in e.value.violations] == ["gamma"]
    m = risk.delta_gamma_moments(d, s)
    np.testing.assert_array_equal(m.skewness, 0.0)
    np.testing.assert_array_equal(m.excess_kurtosis, 0.0)


def test_batched_books_and_gammas():
    rng = np.random.default_rng(13)
    d1, g1, s = book(rng)
    d2, g2, _ = book(rng)
    both = risk.cornish_fisher_var(np.stack([d1, d2]), np.stack([g1, g2]), s, [0.95, 0.99])
    assert both.shape == (2, 2)
    for j, (d, g) in enumerate(((d1, g1), (d2, g2))):
        np.testing.assert_allclose(both[:, j], risk.cornish_fisher_var(d, g, s, [0.95, 0.99]), rtol=1e-14)


def test_a_singular_covariance_is_accepted():
    s = np.array([[1.0, 1.0], [1.0, 1.0]]) * 1e-4  # perfectly correlated factors
    assert risk.delta_normal_var([1.0, -1.0], s) == pytest.approx(0.0, abs=1e-12)
    assert risk.delta_normal_var([1.0, 1.0], s) == pytest.approx(st.norm.ppf(0.99) * 0.02, rel=1e-14)


# ---------------------------------------------------------------------------- components
def cube_of(rng, trades=30, scenarios=400):
    return rng.standard_t(4, size=(trades, scenarios)) * rng.uniform(0.1, 5.0, (trades, 1)) + 0.05


@pytest.mark.parametrize("scenarios, alpha", [(400, 0.975), (400, 0.99), (250, 0.975), (37, 0.9), (1, 0.975)])
def test_components_sum_to_the_portfolio_es(scenarios, alpha):
    rng = np.random.default_rng(scenarios)
    cube = cube_of(rng, 30, scenarios)
    a = risk.es_attribution(cube, es_level=alpha, var_level=0.99)
    assert a.es == pytest.approx(risk.historical_es(cube.sum(axis=0), alpha), rel=1e-13)
    assert a.var == risk.historical_var(cube.sum(axis=0), 0.99)
    assert a.component.sum() == pytest.approx(a.es, rel=1e-13, abs=1e-12)
    assert a.tail_weights.sum() == pytest.approx(1.0, rel=1e-14) and (a.tail_weights >= 0).all()
    assert a.tail_weights @ -a.pnl == pytest.approx(a.es, rel=1e-14)


def test_a_component_is_the_trades_mean_loss_over_the_portfolios_tail():
    cube = cube_of(np.random.default_rng(20), 10, 1000)
    a = risk.es_attribution(cube, es_level=0.99, incremental=False)
    tail = np.argsort(-cube.sum(axis=0))[-10:]  # the 10 worst of 1000 scenarios
    np.testing.assert_allclose(a.component, -cube[:, tail].mean(axis=1), rtol=1e-12)
    assert a.incremental is None


def test_weighted_components_sum_to_the_weighted_es():
    rng = np.random.default_rng(21)
    cube = cube_of(rng, 12, 300)
    brw = 0.97 ** np.arange(299, -1, -1.0)
    a = risk.es_attribution(cube, weights=brw)
    assert a.es == pytest.approx(es_reference(cube.sum(axis=0), 0.975, brw), rel=1e-12)
    assert a.component.sum() == pytest.approx(a.es, rel=1e-13)
    for i in range(12):
        rest = np.delete(cube, i, axis=0).sum(axis=0)
        assert a.incremental[i] == pytest.approx(a.es - es_reference(rest, 0.975, brw), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("block", [risk.BLOCK, 1000, 1])  # one block, several, one row each
def test_incremental_es_against_brute_force(monkeypatch, block):
    monkeypatch.setattr(risk, "BLOCK", block)
    rng = np.random.default_rng(22)
    cube = cube_of(rng, 25, 500)
    a = risk.es_attribution(cube, es_level=0.975)
    brute = [a.es - risk.historical_es(np.delete(cube, i, axis=0).sum(axis=0), 0.975) for i in range(25)]
    np.testing.assert_allclose(a.incremental, brute, rtol=1e-10, atol=1e-10)
    one = risk.es_attribution(cube[:1])
    assert one.incremental[0] == one.es == pytest.approx(one.component[0])


# ---------------------------------------------------------------------------- tag trees
def tagged(rng, trades=60, scenarios=300):
    cube = cube_of(rng, trades, scenarios)
    desk = rng.choice(["rates", "fx", "equity"], trades)
    book = rng.choice(["flow", "exotics"], trades)  # the same book names under several desks
    return cube, desk, book


def test_tag_tree_adds_up():
    rng = np.random.default_rng(30)
    cube, desk, book = tagged(rng)
    h = risk.hierarchy_risk(cube, {"desk": desk, "book": book})
    a = risk.es_attribution(cube)
    root = h.nodes[0]
    assert root.path == () and root.parent == -1 and root.trades == 60 and h.tags == ("desk", "book")
    assert root.es == pytest.approx(a.es, rel=1e-13) and root.var == a.var
    assert root.component_es == pytest.approx(a.es, rel=1e-13) and root.incremental_es == pytest.approx(a.es)
    paths = [n.path for n in h.nodes]
    assert paths[1:4] == [("equity",), ("fx",), ("rates",)]
    assert paths[4:] == sorted(set(zip(desk, book)))
    for j, node in enumerate(h.nodes):
        members = np.ones(60, dtype=bool)
        for value, column in zip(node.path, (desk, book)):
            members &= column == value
        assert node.trades == members.sum()
        np.testing.assert_allclose(h.pnl[j], cube[members].sum(axis=0), rtol=1e-12, atol=1e-12)
        assert node.var == risk.historical_var(h.pnl[j], 0.99)
        assert node.es == pytest.approx(risk.historical_es(h.pnl[j], 0.975), rel=1e-13)
        assert node.component_es == pytest.approx(a.component[members].sum(), rel=1e-10, abs=1e-10)
        rest = cube[~members].sum(axis=0) if (~members).any() else np.zeros(300)
        assert node.incremental_es == pytest.approx(a.es - risk.historical_es(rest, 0.975), rel=1e-10, abs=1e-10)
        kids = h.children(j)
        if kids:
            assert sum(h.nodes[c].component_es for c in kids) == pytest.approx(node.component_es, rel=1e-12,
                                                                                abs=1e-12)
            assert sum(h.nodes[c].trades for c in kids) == node.trades
            np.testing.assert_allclose(h.pnl[kids].sum(axis=0), h.pnl[j], rtol=1e-12, atol=1e-12)
        else:
            assert node.depth == 2
    for i in range(60):
        assert h.nodes[h.leaf[i]].path == (desk[i], book[i])


def test_tag_tree_shapes():
    rng = np.random.default_rng(31)
    cube, desk, book = tagged(rng, 20, 100)
    pairs = risk.hierarchy_risk(cube, [("desk", desk), ("book", book)])
    mapping = risk.hierarchy_risk(cube, {"desk": list(desk), "book": book})
    assert pairs.nodes == mapping.nodes
    bare = risk.hierarchy_risk(cube, [])
    assert len(bare.nodes) == 1 and bare.nodes[0].es == pytest.approx(risk.historical_es(cube.sum(axis=0)))
    one = risk.hierarchy_risk(cube[:1], {"desk": ["rates"]})
    assert [n.path for n in one.nodes] == [(), ("rates",)] and one.nodes[1].es == pytest.approx(one.nodes[0].es)
    brw = 0.97 ** np.arange(99, -1, -1.0)
    weighted = risk.hierarchy_risk(cube, {"desk": desk}, weights=brw)
    assert weighted.nodes[0].es == pytest.approx(es_reference(cube.sum(axis=0), 0.975, brw), rel=1e-12)
    assert sum(n.component_es for n in weighted.nodes[1:]) == pytest.approx(weighted.nodes[0].es, rel=1e-12)


# ---------------------------------------------------------------------------- Studer
@pytest.mark.parametrize("dof", [1, 2, 3, 4, 5, 7, 10, 20, 50, 100, 250, 1000, 5000, 0.5, 1.5])
def test_chi2_quantile_against_scipy(dof):
    for alpha in (1e-12, 1e-6, 0.001, 0.01, 0.05, 0.3, 0.5, 0.7, 0.9, 0.95, 0.975, 0.99, 0.999, 1 - 1e-6,
                  1 - 1e-10):
        assert risk.chi2_quantile(alpha, dof) == pytest.approx(st.chi2.ppf(alpha, dof), rel=1e-10)



@pytest.mark.parametrize("dof", [0.5, 1, 3, 10, 50, 1000])
def test_chi2_cdf_against_scipy_and_the_quantile(dof):
    for x in (1e-8, 0.01, 0.5, 1.0, 3.0, 10.0, 50.0, 200.0, 2000.0):
        want = st.chi2.cdf(x, dof)
        if want > 1e-300:
            assert risk.chi2_cdf(x, dof) == pytest.approx(want, rel=1e-10, abs=1e-15)
    assert risk.chi2_cdf(0.0, dof) == 0.0 and risk.chi2_cdf(-1.0, dof) == 0.0
    for alpha in (0.01, 0.5, 0.99):
        assert risk.chi2_cdf(risk.chi2_quantile(alpha, dof), dof) == pytest.approx(alpha, rel=1e-10)


def test_chi2_quantile_below_the_smallest_double_is_zero():
    # P(a, y) ~ y^a / Gamma(a + 1): the quantile of 1e-300 at 0.5 degrees of freedom is ~1e-1200
    assert risk.chi2_quantile(1e-300, 0.5) == 0.0 and risk.chi2_quantile(1e-300, 1) == 0.0
    assert risk.chi2_quantile(1e-300, 3) == pytest.approx(st.chi2.ppf(1e-300, 3), rel=1e-10)


def test_studer_worst_case_is_on_the_ellipsoid_and_beats_random_points_on_it():
    rng = np.random.default_rng(40)
    k = 6
    s = random_cov(rng, k) + 1e-6 * np.eye(k)
    d = rng.normal(size=k) * 1e4
    m = risk.studer_max_loss(d, s, 0.99)
    c = st.chi2.ppf(0.99, k)
    assert m.radius2 == pytest.approx(c, rel=1e-12) and m.dof == k and m.level == 0.99
    x = m.scenario
    assert x @ np.linalg.solve(s, x) == pytest.approx(c, rel=1e-12)  # on the boundary
    assert d @ x == pytest.approx(-m.loss, rel=1e-12) and m.loss == pytest.approx(math.sqrt(c * d @ s @ d), rel=1e-14)
    u = rng.normal(size=(200_000, k))
    points = (u / np.linalg.norm(u, axis=1, keepdims=True)) * math.sqrt(c) @ np.linalg.cholesky(s).T
    np.testing.assert_allclose(np.einsum("ni,ij,nj->n", points, np.linalg.inv(s), points), c, rtol=1e-9)
    assert (points @ d >= -m.loss * (1 + 1e-12)).all()
    # against delta-normal: the same direction, a wider radius
    assert m.loss == pytest.approx(math.sqrt(c) / st.norm.ppf(0.99) * risk.delta_normal_var(d, s, 0.99), rel=1e-13)


def test_studer_one_factor_levels_batches_and_flat_books():
    s = np.array([[0.04]])
    one = risk.studer_max_loss([100.0], s, 0.99)
    assert one.loss == pytest.approx(100 * 0.2 * st.norm.ppf(0.995), rel=1e-12)  # chi2(1) = z^2
    assert one.scenario.shape == (1,) and one.scenario[0] < 0
    rng = np.random.default_rng(41)
    cov = random_cov(rng, 3)
    books = rng.normal(size=(4, 3))
    many = risk.studer_max_loss(books, cov, [0.95, 0.99], dof=2)
    assert many.loss.shape == (2, 4) and many.scenario.shape == (2, 4, 3) and many.dof == 2.0
    assert many.loss[1, 2] == pytest.approx(risk.studer_max_loss(books[2], cov, 0.99, dof=2).loss, rel=1e-15)
    flat = risk.studer_max_loss(np.zeros(3), cov)
    assert flat.loss == 0.0 and (flat.scenario == 0.0).all()


# ---------------------------------------------------------------------------- bad inputs
GOOD = np.random.default_rng(50).normal(size=(3, 20))
COV = np.eye(3) * 1e-4
NOT_PSD = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
ASYMMETRIC = np.array([[1.0, 0.5, 0.0], [0.4, 1.0, 0.0], [0.0, 0.0, 1.0]])
NAN = GOOD.copy()
NAN[1, 7] = np.nan


@pytest.mark.parametrize("call, expected", [
    (lambda: risk.historical_var(NAN[1]), ["pnl"]),
    (lambda: risk.historical_var(np.inf * np.ones(3)), ["pnl"]),
    (lambda: risk.historical_es(np.zeros((2, 3, 4))), ["pnl"]),
    (lambda: risk.historical_es(5.0), ["pnl"]),
    (lambda: risk.historical_var([]), ["pnl"]),
    (lambda: risk.historical_var(np.zeros((3, 0))), ["pnl"]),
    (lambda: risk.historical_var([[1.0, 2.0], [3.0]]), ["pnl"]),
    (lambda: risk.historical_var(["a", "b"]), ["pnl"]),
    (lambda: risk.historical_var(GOOD, 1.0), ["level"]),
    (lambda: risk.historical_var(GOOD, 0.0), ["level"]),
    (lambda: risk.historical_es(GOOD, -0.5), ["level"]),
    (lambda: risk.historical_es(GOOD, np.nan), ["level"]),
    (lambda: risk.historical_es(GOOD, [0.5, 1.2, 0.9, 99]), ["level[1]", "level[3]"]),
    (lambda: risk.historical_es(GOOD, []), ["level"]),
    (lambda: risk.historical_es(GOOD, [[0.9]]), ["level"]),
    (lambda: risk.historical_risk(NAN, var_level=2.0, es_level=0.0, axis=2),
     ["pnl", "var_level", "es_level"]),
    (lambda: risk.historical_risk(GOOD, var_level=2.0, es_level=0.0, axis=2), ["var_level", "es_level", "axis"]),
    (lambda: risk.historical_var(GOOD, axis=1.0), ["axis"]),
    (lambda: risk.historical_var(GOOD, weights=np.ones(19)), ["weights"]),
    (lambda: risk.historical_var(GOOD, weights=-np.ones(20)), ["weights"]),
    (lambda: risk.historical_var(GOOD, weights=np.zeros(20)), ["weights"]),
    (lambda: risk.historical_var(GOOD, weights=np.r_[np.nan, np.ones(19)]), ["weights"]),
    (lambda: risk.historical_var(GOOD, axis=0, weights=np.ones(20)), ["weights"]),
    (lambda: risk.historical_var(GOOD, method="bogus"), ["method"]),
    (lambda: risk.historical_var(GOOD, method="linear", weights=np.ones(20)), ["method"]),
    (lambda: risk.historical_var(GOOD, 1.5, method="linear"), ["level"]),
    (lambda: risk.es_tail_weights(GOOD), ["pnl"]),
    (lambda: risk.es_tail_weights(GOOD[0], [0.9, 0.95]), ["level"]),
    (lambda: risk.es_attribution(GOOD[0]), ["cube"]),
    (lambda: risk.es_attribution(NAN, es_level=[0.9], var_level=1), ["cube", "var_level", "es_level"]),
    (lambda: risk.es_attribution(GOOD, weights=np.ones(3)), ["weights"]),
    (lambda: risk.hierarchy_risk(GOOD, {"desk": ["a", "b"]}), ["tags[0]"]),
    (lambda: risk.hierarchy_risk(GOOD, [("desk", ["a"] * 3), ("desk", ["b"] * 3)]), ["tags[1]"]),
    (lambda: risk.hierarchy_risk(GOOD, [("", ["a"] * 3)]), ["tags[0]"]),
    (lambda: risk.hierarchy_risk(GOOD, [("desk", [["a"]] * 3)]), ["tags[0]"]),
    (lambda: risk.hierarchy_risk(GOOD, ["desk"]), ["tags[0]"]),
    (lambda: risk.delta_normal_var([1.0, 2.0, 3.0], NOT_PSD), ["covariance"]),
    (lambda: risk.delta_normal_var([1.0, 2.0, 3.0], -COV), ["covariance"]),
    (lambda: risk.delta_normal_var([1.0, 2.0, 3.0], ASYMMETRIC), ["covariance"]),
    (lambda: risk.delta_normal_var([1.0, 2.0, 3.0], np.where(np.eye(3) > 0, np.nan, 0.0)), ["covariance"]),
    (lambda: risk.delta_normal_var([1.0, 2.0], COV), ["covariance"]),
    (lambda: risk.delta_normal_var([1.0, 2.0, 3.0], np.ones((3, 2))), ["covariance"]),
    (lambda: risk.delta_normal_var([1.0, 2.0, 3.0], np.ones(3)), ["covariance"]),
    (lambda: risk.delta_normal_var([1.0, np.nan, 3.0], COV, 1.0), ["level", "delta"]),
    (lambda: risk.delta_normal_var(np.ones((2, 2, 3)), COV), ["delta"]),
    (lambda: risk.delta_normal_var([], COV), ["delta"]),
    (lambda: risk.delta_gamma_normal_var([1.0, 2.0, 3.0], None, COV), ["gamma"]),
    (lambda: risk.cornish_fisher_var([1.0, 2.0, 3.0], np.ones((2, 2)), COV), ["gamma"]),
    (lambda: risk.cornish_fisher_var([1.0, 2.0, 3.0], ASYMMETRIC, COV), ["gamma"]),
    (lambda: risk.cornish_fisher_var([1.0, 2.0, 3.0], np.ones((2, 3, 3)), COV), ["gamma"]),
    (lambda: risk.cornish_fisher_var([1.0, 2.0, 3.0], np.ones((3, 3)), NOT_PSD), ["covariance"]),
    (lambda: risk.parametric_var("monte_carlo", [1.0, 2.0, 3.0], COV), ["method"]),
    (lambda: risk.delta_gamma_moments([1.0, 2.0, 3.0], COV, np.full((3, 3), np.inf)), ["gamma"]),
    (lambda: risk.studer_max_loss([1.0, 2.0, 3.0], NOT_PSD, 0.99, dof=0), ["dof", "covariance"]),
    (lambda: risk.studer_max_loss([1.0, 2.0, 3.0], COV, [0.99, 1.0], dof=True), ["level[1]", "dof"]),
    (lambda: risk.chi2_quantile(1.0, 3), ["level"]),
    (lambda: risk.chi2_quantile(0.5, -1), ["dof"]),
])
def test_bad_inputs_name_their_fields(call, expected):
    with pytest.raises(ServiceError) as exc:
        call()
    assert sorted(fields(exc)) == sorted(expected)
    for name in expected:
        assert name in str(exc.value)


def test_the_callers_prefix_names_the_request_path():
    with pytest.raises(ServiceError) as exc:
        risk.historical_risk(NAN, var_level=1.5, prefix="risk.")
    assert fields(exc) == ["risk.pnl", "risk.var_level"]
    assert "not finite: nan at [1, 7]" in exc.value.violations[0].description
    with pytest.raises(ServiceError) as exc:
        risk.cornish_fisher_var([1.0, 2.0, 3.0], np.eye(3), NOT_PSD, prefix="books[2].")
    assert fields(exc) == ["books[2].covariance"]
    assert "not positive semi-definite: smallest eigenvalue -1" in exc.value.message


def test_es_tail_weights():
    rng = np.random.default_rng(23)
    pnl = rng.normal(size=250)
    for weights in (None, 0.98 ** np.arange(249, -1, -1.0)):
        w = risk.es_tail_weights(pnl, 0.975, weights=weights)
        assert w.sum() == pytest.approx(1.0, rel=1e-14) and (w >= 0).all() and not w.flags.writeable
        assert w @ -pnl == pytest.approx(risk.historical_es(pnl, 0.975, weights=weights), rel=1e-13)
        assert (-pnl[w > 0] >= risk.historical_var(pnl, 0.975, weights=weights)).all()
    w = risk.es_tail_weights(pnl, 0.975)
    assert np.count_nonzero(w) == 7 and w.max() == pytest.approx(1 / 6.25)  # 6 whole scenarios and a quarter
