"""Bad input to the options library over RPC: INVALID_ARGUMENT naming the field (and the row
in batches), RESOURCE_EXHAUSTED for work over the caps, and the server goes on serving."""

import math

import grpc
import numpy as np
import pytest

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb

from .richerr import violations as field_violations

HESTON = dict(v0=0.04, kappa=1.5, theta=0.04, sigma=0.5, rho=-0.7)


def _market(**kw):
    return pb.Market(**{"spot": 100.0, "rate": 0.03, "volatility": 0.2, **kw})


def _barrier(**kw):
    terms = dict(barrier_type=c.BARRIER_TYPE_DOWN_OUT, option_type=c.OPTION_TYPE_CALL, strike=100.0,
                 expiry=pb.Expiry(year_fraction=0.5), barrier=90.0)
    terms.update(kw)
    return pb.BarrierOption(**terms)


def _asian(**kw):
    terms = dict(averaging=c.AVERAGING_ARITHMETIC, option_type=c.OPTION_TYPE_CALL, strike=100.0,
                 expiry=pb.Expiry(year_fraction=1.0), fixing_times=[0.25, 0.5, 0.75, 1.0])
    terms.update(kw)
    return pb.AsianOption(**terms)


def _invalid(stub, request, field, code=grpc.StatusCode.INVALID_ARGUMENT):
    with pytest.raises(grpc.RpcError) as info:
        stub.Price(request, timeout=30)
    assert info.value.code() == code, info.value.details()
    fields = [f for f, _ in field_violations(info.value)]
    assert field in fields, (fields, info.value.details())
    return info.value


@pytest.mark.parametrize(
    "request_, field",
    [
        # barrier on the wrong side of spot (down barrier above it), negative rebate, bad code
        (pb.PriceRequest(model=1, barrier=_barrier(barrier=110.0), market=_market()), "barrier.barrier"),
        (pb.PriceRequest(model=1, barrier=_barrier(rebate=-1.0), market=_market()), "barrier.rebate"),
        (pb.PriceRequest(model=1, barrier=_barrier(barrier_type=9), market=_market()), "barrier.barrier_type"),
        (pb.PriceRequest(model=1, barrier=_barrier(barrier_type=0), market=_market()), "barrier.barrier_type"),
        (pb.PriceRequest(model=1, barrier=_barrier(monitoring_interval=-0.1), market=_market()),
         "barrier.monitoring_interval"),
        # double barrier: upper below lower
        (pb.PriceRequest(model=1, double_barrier=pb.DoubleBarrierOption(
            knock_type=c.KNOCK_TYPE_KNOCK_OUT, option_type=c.OPTION_TYPE_CALL, strike=100.0,
            expiry=pb.Expiry(year_fraction=0.5), lower_barrier=90.0, upper_barrier=85.0), market=_market()),
         "double_barrier.upper_barrier"),
        # invalid Heston parameters: v0 < 0, kappa, theta or sigma <= 0, |rho| >= 1; missing
        *[
            (pb.PriceRequest(model=c.MODEL_HESTON, european=pb.EuropeanOption(
                option_type=1, strike=100.0, expiry=pb.Expiry(year_fraction=0.5)),
                market=pb.Market(spot=100.0, heston=pb.HestonParameters(**{**HESTON, name: value}))),
             f"market.heston.{name}")
            for name, value in (("v0", -0.01), ("kappa", 0.0), ("theta", -1.0), ("sigma", 0.0), ("rho", 1.0),
                                ("rho", -1.5))
        ],
        (pb.PriceRequest(model=c.MODEL_HESTON, european=pb.EuropeanOption(
            option_type=1, strike=100.0, expiry=pb.Expiry(year_fraction=0.5)), market=pb.Market(spot=100.0)),
         "market.heston"),
        # averaging dates out of order, past expiry; dates without a dated expiry
        (pb.PriceRequest(model=1, asian=_asian(fixing_times=[0.5, 0.25, 1.0]), market=_market()), "asian.fixing_times"),
        (pb.PriceRequest(model=1, asian=_asian(fixing_times=[0.5, 1.5]), market=_market()), "asian.fixing_times"),
        (pb.PriceRequest(model=1, asian=_asian(fixing_times=[], fixing_dates=[c.Date(year=2027, month=1, day=5)]),
                         market=_market()), "asian.fixing_dates"),
        (pb.PriceRequest(model=1, asian=_asian(running_average=-5.0, past_fixings=2), market=_market()),
         "asian.running_average"),
        # lookback extremes that do not bracket the spot
        (pb.PriceRequest(model=1, lookback=pb.LookbackOption(
            strike_type=c.LOOKBACK_STRIKE_FLOATING, option_type=c.OPTION_TYPE_CALL, expiry=pb.Expiry(year_fraction=1.0),
            running_minimum=105.0), market=_market()), "lookback.running_minimum"),
        # zero paths, a bad time step; an engine or a measure the product does not have
        (pb.PriceRequest(model=1, asian=_asian(), market=_market(), engine=c.ENGINE_MONTE_CARLO,
                         settings=pb.EngineSettings(paths=0)), "settings.paths"),
        (pb.PriceRequest(model=1, asian=_asian(), market=_market(), engine=c.ENGINE_MONTE_CARLO,
                         settings=pb.EngineSettings(max_step=0.0)), "settings.max_step"),
        (pb.PriceRequest(model=1, american=pb.AmericanOption(option_type=2, strike=100.0, expiry=pb.Expiry(year_fraction=1)),
                         market=_market(), engine=c.ENGINE_LEVY), "engine"),
        (pb.PriceRequest(model=c.MODEL_BACHELIER, barrier=_barrier(), market=pb.Market(forward=100.0, volatility=5.0)),
         "model"),
        (pb.PriceRequest(model=1, american=pb.AmericanOption(option_type=2, strike=100.0, expiry=pb.Expiry(year_fraction=1)),
                         market=_market(), settings=pb.EngineSettings(tree_steps=0), engine=c.ENGINE_BINOMIAL_TREE),
         "settings.tree_steps"),
    ],
)
def test_single_trade_bad_input(stub, request_, field):
    _invalid(stub, request_, field)
    # the server goes on serving
    ok = stub.Price(pb.PriceRequest(model=1, barrier=_barrier(), market=_market()), timeout=30)
    assert ok.price > 0


@pytest.mark.parametrize("engine", [c.ENGINE_FIXED_POINT, c.ENGINE_BINOMIAL_TREE])
@pytest.mark.parametrize("option_type, dividend", [(2, 0.0), (1, 0.02)])
def test_american_expiry_beyond_the_engines_domain_is_refused(stub, engine, option_type, dividend):
    """Beyond 100 years both American engines lost accuracy without failing (a put at 1e5
    years came back -0.0 by fixed point, 10.43 on the tree, against a perpetual 25.71): such
    an expiry is refused, naming it and the domain; 100 years is priced."""
    def request(years):
        return pb.PriceRequest(model=1, american=pb.AmericanOption(option_type=option_type, strike=100.0,
                                                                    expiry=pb.Expiry(year_fraction=years)),
                               market=pb.Market(spot=100.0, rate=0.03, dividend_yield=dividend, volatility=0.25),
                               engine=engine, measures=[2])
    for years in (100.01, 1e6, 1e300):
        error = _invalid(stub, request(years), "american.expiry.year_fraction")
        assert "[0, 100] years" in error.details()
    ok = stub.Price(request(100.0), timeout=60)
    assert 0 < ok.price < 100.0 and math.isfinite(ok.greeks.delta)


def test_monte_carlo_work_over_the_cap_is_resource_exhausted(stub):
    request = pb.PriceRequest(model=1, asian=_asian(), market=_market(), engine=c.ENGINE_MONTE_CARLO,
                              settings=pb.EngineSettings(paths=10**12))
    _invalid(stub, request, "settings.paths", grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_batch_rows_fail_alone_naming_field_and_row(stub):
    cols = pb.BarrierOptionColumns(
        barrier_type=c.Int32Column(values=[1, 2, 9, 2]), option_type=c.Int32Column(values=[1]),
        strike=c.DoubleColumn(values=[100.0]), time_to_expiry=c.DoubleColumn(values=[0.5]),
        barrier=c.DoubleColumn(values=[90.0, 110.0, 90.0, 95.0]),
    )
    request = pb.PriceBatchRequest(model=1, barrier=cols, market=pb.MarketColumns(
        spot=c.DoubleColumn(values=[100.0]), volatility=c.DoubleColumn(values=[0.2])))
    response = stub.PriceBatch(request, timeout=30)
    status = np.frombuffer(response.status.raw, "<i4")
    assert status.tolist() == [0, 3, 3, 0] and response.error_count == 2
    errors = {(e.row, e.field) for e in response.errors}
    assert (1, "barrier.barrier") in errors and (2, "barrier.barrier_type") in errors
    price = np.frombuffer(response.columns[0].values.raw, "<f8")
    assert np.isfinite(price[[0, 3]]).all() and np.isnan(price[[1, 2]]).all()


@pytest.mark.parametrize(
    "times, counts, field",
    [
        ([0.5, 1.0, 0.5], [2, 2], "asian.fixing_times"),  # counts ask for 4, 3 given
        ([0.5, 1.0], [3, -1], "asian.fixing_counts"),
        ([0.5, 1.0], None, "asian.fixing_counts"),
    ],
)
def test_batch_schedules_that_do_not_add_up(stub, times, counts, field):
    cols = pb.AsianOptionColumns(
        averaging=c.Int32Column(values=[1]), option_type=c.Int32Column(values=[1]), strike=c.DoubleColumn(values=[100.0]),
        time_to_expiry=c.DoubleColumn(values=[1.0, 1.0]), fixing_times=c.DoubleColumn(values=times),
    )
    if counts is not None:
        cols.fixing_counts.values.extend(counts)
    request = pb.PriceBatchRequest(model=1, asian=cols, market=pb.MarketColumns(
        spot=c.DoubleColumn(values=[100.0]), volatility=c.DoubleColumn(values=[0.2])))
    with pytest.raises(grpc.RpcError) as info:
        stub.PriceBatch(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [f for f, _ in field_violations(info.value)], info.value.details()


def test_batch_per_row_schedules_and_a_bad_one(stub):
    # row 0: 2 fixings, row 1: continuous (0), row 2: out of order
    cols = pb.AsianOptionColumns(
        averaging=c.Int32Column(values=[1]), option_type=c.Int32Column(values=[1]), strike=c.DoubleColumn(values=[100.0]),
        time_to_expiry=c.DoubleColumn(values=[1.0]), fixing_times=c.DoubleColumn(values=[0.5, 1.0, 0.75, 0.5]),
        fixing_counts=c.Int32Column(values=[2, 0, 2]),
    )
    request = pb.PriceBatchRequest(model=1, asian=cols, engine=c.ENGINE_TURNBULL_WAKEMAN, market=pb.MarketColumns(
        spot=c.DoubleColumn(values=[100.0]), volatility=c.DoubleColumn(values=[0.2])))
    response = stub.PriceBatch(request, timeout=30)
    assert response.rows == 3 and response.error_count == 1
    assert [(e.row, e.field) for e in response.errors] == [(2, "asian.fixing_times")]


# ------------------------------------------------------------------ settings the engine does not read
_AMERICAN = pb.AmericanOption(option_type=2, strike=100.0, expiry=pb.Expiry(year_fraction=1.0))
_EURO = pb.EuropeanOption(option_type=1, strike=100.0, expiry=pb.Expiry(year_fraction=0.5))


@pytest.mark.parametrize(
    "request_, unread, engine_name",
    [
        (pb.PriceRequest(model=1, european=_EURO, market=_market(),
                         settings=pb.EngineSettings(paths=1000, tree_steps=5)),
         ["settings.paths", "settings.tree_steps"], "ENGINE_ANALYTIC"),
        (pb.PriceRequest(model=1, european=_EURO, market=_market(), settings=pb.EngineSettings(seed=0, sobol=False)),
         ["settings.seed", "settings.sobol"], "ENGINE_ANALYTIC"),
        (pb.PriceRequest(model=1, american=_AMERICAN, market=_market(), engine=c.ENGINE_BINOMIAL_TREE,
                         settings=pb.EngineSettings(american_scheme=1, tree_steps=101)),
         ["settings.american_scheme"], "ENGINE_BINOMIAL_TREE"),
        (pb.PriceRequest(model=1, american=_AMERICAN, market=_market(), settings=pb.EngineSettings(paths=5000)),
         ["settings.paths"], "ENGINE_FIXED_POINT"),
        (pb.PriceRequest(model=1, barrier=_barrier(), market=_market(), engine=c.ENGINE_MONTE_CARLO,
                         settings=pb.EngineSettings(tree_steps=3, paths=1000)), ["settings.tree_steps"],
         "ENGINE_MONTE_CARLO"),
        (pb.PriceRequest(model=1, asian=_asian(), market=_market(), settings=pb.EngineSettings(american_scheme=3)),
         ["settings.american_scheme"], "analytic_asian_tw"),
    ],
)
def test_a_setting_the_engine_does_not_read_is_refused(stub, request_, unread, engine_name):
    err = _invalid(stub, request_, unread[0])
    found = field_violations(err)
    assert sorted(f for f, _ in found) == sorted(unread)
    assert all(engine_name in text and "does not read it" in text for _, text in found), found
    # the same request without them prices; and the server goes on serving
    request_.settings.ClearField("american_scheme")
    for name in ("paths", "tree_steps", "seed", "sobol"):
        if f"settings.{name}" in unread:
            request_.settings.ClearField(name)
    assert stub.Price(request_, timeout=30).price > 0


def test_the_settings_an_engine_reads_are_taken(stub):
    tree = pb.PriceRequest(model=1, american=_AMERICAN, market=_market(), engine=c.ENGINE_BINOMIAL_TREE,
                           settings=pb.EngineSettings(tree_steps=101))
    fixed = pb.PriceRequest(model=1, american=_AMERICAN, market=_market(),
                            settings=pb.EngineSettings(american_scheme=3, tree_steps=101))  # (two-boundary rows: a tree)
    mc = pb.PriceRequest(model=1, barrier=_barrier(), market=_market(), engine=c.ENGINE_MONTE_CARLO,
                         settings=pb.EngineSettings(paths=2000, seed=3, max_step=0.01, antithetic=False,
                                                    control_variate=False, sobol=True, brownian_bridge=True))
    for request_ in (tree, fixed, mc):
        assert stub.Price(request_, timeout=30).price > 0
    coarse = stub.Price(tree, timeout=30).price
    tree.settings.tree_steps = 1001
    assert stub.Price(tree, timeout=30).price != coarse  # (read: a different tree)


def test_a_batch_setting_the_engine_does_not_read_is_refused(stub):
    request = pb.PriceBatchRequest(model=1, european=pb.EuropeanOptionColumns(
        option_type=c.Int32Column(values=[1]), strike=c.DoubleColumn(values=[100.0, 110.0]),
        time_to_expiry=c.DoubleColumn(values=[0.5])), market=pb.MarketColumns(
        spot=c.DoubleColumn(values=[100.0]), volatility=c.DoubleColumn(values=[0.2])),
        settings=pb.EngineSettings(paths=1000))
    with pytest.raises(grpc.RpcError) as info:
        stub.PriceBatch(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(info.value)] == ["settings.paths"]
    request.ClearField("settings")
    assert stub.PriceBatch(request, timeout=30).error_count == 0


def test_a_no_touch_paid_at_hit_names_the_payment(stub):
    """A no-touch pays at expiry: AT_HIT is named as the payment (not the touch type), in a
    trade and in a batch row (the other rows priced)."""
    touch = pb.TouchOption(touch_type=c.TOUCH_TYPE_NO_TOUCH, direction=c.BARRIER_DIRECTION_DOWN,
                           payment=c.TOUCH_PAYMENT_AT_HIT, barrier=90.0, expiry=pb.Expiry(year_fraction=0.5))
    err = _invalid(stub, pb.PriceRequest(model=1, touch=touch, market=_market()), "touch.payment")
    assert [f for f, _ in field_violations(err)] == ["touch.payment"] and "at expiry" in err.details()
    touch.payment = c.TOUCH_PAYMENT_AT_EXPIRY
    assert stub.Price(pb.PriceRequest(model=1, touch=touch, market=_market()), timeout=30).price > 0
    cols = pb.TouchOptionColumns(
        touch_type=c.Int32Column(values=[c.TOUCH_TYPE_ONE_TOUCH, c.TOUCH_TYPE_NO_TOUCH, c.TOUCH_TYPE_NO_TOUCH]),
        direction=c.Int32Column(values=[c.BARRIER_DIRECTION_DOWN]),
        payment=c.Int32Column(values=[c.TOUCH_PAYMENT_AT_HIT, c.TOUCH_PAYMENT_AT_HIT, c.TOUCH_PAYMENT_AT_EXPIRY]),
        barrier=c.DoubleColumn(values=[90.0]), time_to_expiry=c.DoubleColumn(values=[0.5]))
    out = stub.PriceBatch(pb.PriceBatchRequest(model=1, touch=cols, market=pb.MarketColumns(
        spot=c.DoubleColumn(values=[100.0]), volatility=c.DoubleColumn(values=[0.2]))), timeout=30)
    assert [(e.row, e.field) for e in out.errors] == [(1, "touch.payment")]
    price = np.frombuffer(out.columns[0].values.raw, "<f8")
    assert np.isfinite(price[[0, 2]]).all() and np.isnan(price[1])


# ------------------------------------------------------------------ inputs a payoff does not read
_X = pb.Expiry(year_fraction=0.5)


@pytest.mark.parametrize("request_, field, fixed", [
    (pb.PriceRequest(model=1, market=_market(), digital=pb.DigitalOption(payoff=2, option_type=1, strike=100.0,
                                                                         expiry=_X, cash=5.0)),
     "digital.cash", lambda r: r.digital.ClearField("cash")),
    (pb.PriceRequest(model=1, market=_market(), digital=pb.DigitalOption(payoff=3, option_type=1, strike=100.0,
                                                                         expiry=_X, cash=5.0, payoff_strike=95.0)),
     "digital.cash", lambda r: r.digital.ClearField("cash")),
    (pb.PriceRequest(model=1, market=_market(), digital=pb.DigitalOption(payoff=1, option_type=1, strike=100.0,
                                                                         expiry=_X, payoff_strike=95.0)),
     "digital.payoff_strike", lambda r: r.digital.ClearField("payoff_strike")),
    (pb.PriceRequest(model=1, market=_market(), lookback=pb.LookbackOption(strike_type=1, option_type=1,
                                                                           strike=100.0, expiry=_X)),
     "lookback.strike", lambda r: r.lookback.ClearField("strike")),
    (pb.PriceRequest(model=1, market=_market(), asian=_asian(running_average=100.0, past_fixings=1, elapsed=0.1)),
     "asian.elapsed", lambda r: r.asian.ClearField("elapsed")),
    (pb.PriceRequest(model=1, market=_market(), asian=_asian(fixing_times=[], running_average=100.0, past_fixings=2,
                                                            elapsed=0.1)),
     "asian.past_fixings", lambda r: r.asian.ClearField("past_fixings")),
])
def test_an_input_the_payoff_does_not_read_is_refused(stub, request_, field, fixed):
    """Documented as ignored before; now refused, named, with why (the value is never dropped)."""
    err = _invalid(stub, request_, field)
    assert [f for f, _ in field_violations(err)] == [field] and "leave it unset" in err.details()
    fixed(request_)
    assert stub.Price(request_, timeout=30).price > 0


def test_a_batch_row_that_sets_an_input_its_payoff_does_not_read_fails_alone(stub):
    market = pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), volatility=c.DoubleColumn(values=[0.2]))
    digital = pb.DigitalOptionColumns(payoff=c.Int32Column(values=[1, 2, 3, 2]), option_type=c.Int32Column(values=[1]),
                                      strike=c.DoubleColumn(values=[100.0]), time_to_expiry=c.DoubleColumn(values=[0.5]),
                                      cash=c.DoubleColumn(values=[5.0, 1.0, 5.0, 1.0]))
    out = stub.PriceBatch(pb.PriceBatchRequest(model=1, digital=digital, market=market), timeout=30)
    assert [(e.row, e.field) for e in out.errors] == [(2, "digital.cash")] and "got 5.0" in out.errors[0].message
    price = np.frombuffer(out.columns[0].values.raw, "<f8")
    assert np.isfinite(price[[0, 1, 3]]).all() and np.isnan(price[2])
    assert np.frombuffer(out.status.raw, "<i4").tolist() == [0, 0, 3, 0]
    # Monte Carlo rows too (their standard errors NaN with the price)
    asian = pb.AsianOptionColumns(averaging=c.Int32Column(values=[1]), option_type=c.Int32Column(values=[1]),
                                  strike=c.DoubleColumn(values=[100.0]), time_to_expiry=c.DoubleColumn(values=[1.0]),
                                  fixing_times=c.DoubleColumn(values=[0.5, 1.0]), fixing_counts=c.Int32Column(values=[2, 0]),
                                  running_average=c.DoubleColumn(values=[100.0]),
                                  past_fixings=c.Int32Column(values=[1, 1]), elapsed=c.DoubleColumn(values=[0.0, 0.1]))
    out = stub.PriceBatch(pb.PriceBatchRequest(model=1, asian=asian, market=market, engine=c.ENGINE_MONTE_CARLO,
                                               settings=pb.EngineSettings(paths=2000)), timeout=30)
    assert [(e.row, e.field) for e in out.errors] == [(1, "asian.past_fixings")]
    price = np.frombuffer(out.columns[0].values.raw, "<f8")
    se = np.frombuffer(out.columns[0].standard_error.raw, "<f8")
    assert np.isfinite(price[0]) and np.isnan(price[1]) and np.isnan(se[1])
