"""The catalogue of engines: data the service reads, filled by one pricer module per engine."""

import pytest

from pricegrid.server.domain.catalogue import DEFAULT_SETTINGS, Catalogue, EngineSpec, Settings
from pricegrid.server.domain.models import Engine, GreekMethod, Measure, Model, ModelRef
from pricegrid.server.domain.products import PRODUCTS
from pricegrid.server.pricers import catalogue as pricers


def test_every_product_has_one_default_engine_per_model_it_is_priced_under():
    for product in PRODUCTS:
        offered = pricers.CATALOGUE.offered(product)
        assert offered, product
        for model in {s.model for s in offered}:
            defaults = [s for s in offered if s.model == model and s.default]
            assert len(defaults) == 1, (product, model)
            assert pricers.CATALOGUE.find(product, model) is defaults[0]


def test_every_row_has_a_runner_and_a_method_for_each_measure():
    for spec in pricers.CATALOGUE:
        assert callable(pricers.runner(spec)), spec.key
        assert set(spec.methods) == set(spec.measures), spec.key
        assert Measure.PRICE in spec.measures, spec.key
        assert spec.validated_against, spec.key
        assert spec.underlying == ("forward" if spec.model in (Model.BLACK_76, Model.BACHELIER) else "spot")


def _spec(product="european", model=Model.BLACK_SCHOLES_MERTON, engine=Engine.ANALYTIC, default=False, **kw):
    return EngineSpec(product, model, engine, ModelRef("m", "e", "1"), (Measure.PRICE,),
                      {Measure.PRICE: GreekMethod.ANALYTIC}, default=default, **kw)


def test_a_catalogue_refuses_a_row_twice_and_two_defaults():
    c = Catalogue([_spec(default=True)])
    with pytest.raises(ValueError, match="twice"):
        c.add(_spec())
    with pytest.raises(ValueError, match="two default"):
        c.add(_spec(engine=Engine.MONTE_CARLO, default=True))
    assert c.find("european", Model.BLACK_SCHOLES_MERTON).engine == Engine.ANALYTIC
    assert c.find("european", Model.HESTON) is None
    assert c.find("european", Model.BLACK_SCHOLES_MERTON, Engine.LEVY) is None


def test_chunk_rows_follow_the_engines_cost():
    cap = 262_144
    assert _spec().chunk_rows(DEFAULT_SETTINGS, cap) == cap
    mc = _spec(engine=Engine.MONTE_CARLO, monte_carlo=True)
    assert mc.chunk_rows(Settings(paths=100_000), cap) == 40
    assert mc.chunk_rows(Settings(paths=10_000_000), cap) == 1
    assert _spec(engine=Engine.BINOMIAL_TREE).chunk_rows(Settings(tree_steps=1000), cap) == 2000
    assert _spec(engine=Engine.FIXED_POINT).chunk_rows(DEFAULT_SETTINGS, cap) == 32_768
    assert _spec(engine=Engine.FIXED_POINT).chunk_rows(DEFAULT_SETTINGS, 100) == 100
