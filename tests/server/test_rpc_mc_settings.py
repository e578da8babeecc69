"""The Monte Carlo engines' settings over RPC: every setting an engine accepts is read (some
value of it changes the bits of the price, a Greek or a standard error for some variant of
the product), and every setting it does not read is refused, naming settings.<name> and the
engine (docs/validation.md: no input silently ignored). A refused one is shown unread by
pricing the same trade in the service with and without it (the same bits).

Every Monte Carlo product x model comes from ServerInfo, so a new one needs its variants here.
"""

import dataclasses

import grpc
import pytest

from pricegrid.server.rpc import requests as req
from pricegrid.server.service.pricing import PricingService
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from tests.server.richerr import violations

_E = pb.Expiry(year_fraction=1.0)
#: the variants of each product that may read a setting differently
VARIANTS = {
    "european": [pb.EuropeanOption(option_type=t, strike=100.0, expiry=_E) for t in (1, 2)],
    "asian": [pb.AsianOption(averaging=a, option_type=1, strike=100.0, expiry=_E, fixing_times=f)
              for a in (1, 2) for f in ([], [0.25, 0.5, 0.75, 1.0])],
    "barrier": [pb.BarrierOption(barrier_type=1, option_type=1, strike=100.0, expiry=_E, barrier=80.0, rebate=1.0,
                                 monitoring_interval=d) for d in (0.0, 0.25)],
    "lookback": [pb.LookbackOption(strike_type=s, option_type=1, strike=100.0 if s == 2 else 0.0, expiry=_E)
                 for s in (1, 2)],
}
MARKETS = {
    c.MODEL_BLACK_SCHOLES_MERTON: pb.Market(spot=100.0, rate=0.05, dividend_yield=0.01, volatility=0.25),
    c.MODEL_BLACK_76: pb.Market(forward=100.0, rate=0.05, volatility=0.25),
    c.MODEL_HESTON: pb.Market(spot=100.0, rate=0.05, dividend_yield=0.01,
                              heston=pb.HestonParameters(v0=0.04, kappa=1.5, theta=0.04, sigma=0.5, rho=-0.7)),
}
BASE = dict(paths=2048, seed=5)
#: per setting: the changes tried, on each of its bases (the bridge with and without Sobol)
CHANGES = {
    "paths": ([dict(paths=4000)], [{}]),
    "seed": ([dict(seed=9)], [{}]),
    "max_step": ([dict(max_step=0.5), dict(max_step=0.01)], [{}]),
    "antithetic": ([dict(antithetic=False)], [{}]),
    "control_variate": ([dict(control_variate=False)], [{}]),
    "sobol": ([dict(sobol=True)], [{}]),
    "brownian_bridge": ([dict(brownian_bridge=True), dict(brownian_bridge=False)], [{}, dict(sobol=True)]),
}


def _cases(stub):
    info = stub.ServerInfo(pb.ServerInfoRequest(), timeout=5)
    return sorted((i, m.model) for m in info.models if m.engine == c.ENGINE_MONTE_CARLO for i in m.instruments)


def _request(product, option, model, settings) -> pb.PriceRequest:
    r = pb.PriceRequest(model=model, engine=c.ENGINE_MONTE_CARLO, market=MARKETS[model], measures=[2, 3, 4, 5],
                        settings=pb.EngineSettings(**{**BASE, **settings}))
    getattr(r, product).CopyFrom(option)
    return r


def _bits(reply):
    return tuple((d.value, d.standard_error) for d in reply.details)


def test_the_cases_are_every_monte_carlo_engine(stub):
    cases = _cases(stub)
    assert {p for p, _ in cases} <= set(VARIANTS) and {m for _, m in cases} <= set(MARKETS), cases
    assert len(cases) >= 12  # (european, asian, barrier, lookback) x (BSM, Black-76, Heston)


@pytest.mark.parametrize("name", list(CHANGES))
def test_every_monte_carlo_setting_is_read_or_refused(stub, name):
    service = PricingService()
    changes, bases = CHANGES[name]
    refused, wrong = [], []
    for product, model in _cases(stub):
        changed = False
        for option in VARIANTS[product]:
            for base in bases:
                for change in changes:
                    request = _request(product, option, model, {**base, **change})
                    try:
                        got = _bits(stub.Price(request, timeout=60))
                    except grpc.RpcError as err:
                        found = violations(err)
                        why = dict(found).get(f"settings.{name}", "")
                        if err.code() != grpc.StatusCode.INVALID_ARGUMENT or "ENGINE_MONTE_CARLO" not in why \
                                or "does not read it" not in why:
                            wrong.append((product, model, change, err.code(), found))
                            continue
                        refused.append((product, model))
                        # refused: unread indeed, the same bits when the service prices it anyway
                        spec, batch, market, measures, fields, settings = req.product_one(
                            _request(product, option, model, base), service.catalogue)
                        one = service.price(spec, batch, market, measures, fields, settings)
                        two = service.price(spec, batch, market, measures, fields,
                                            dataclasses.replace(settings, **change))
                        assert one.details == two.details and one.price == two.price, (product, model, change)
                        continue
                    changed |= got != _bits(stub.Price(_request(product, option, model, base), timeout=60))
        if (product, model) not in refused and not changed:
            wrong.append((product, model, f"accepts {name} but no value tried changes a bit"))
    assert not wrong, wrong
    # the kernel's own account (ext/pg_mc.h): a GBM European is one exact step, all else reads every setting
    gbm_european = {("european", c.MODEL_BLACK_SCHOLES_MERTON), ("european", c.MODEL_BLACK_76)}
    assert set(refused) == (gbm_european if name in ("max_step", "brownian_bridge") else set()), refused
