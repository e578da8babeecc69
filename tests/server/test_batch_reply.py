"""PriceBatchReply, the one writer of PriceBatchResponse (kernels write the reply in place),
against the same response built with the generated message classes."""

import numpy as np
import pytest

from pricegrid.server.domain.catalogue import Settings
from pricegrid.server.domain.instruments import MarketBatch
from pricegrid.server.domain.models import Engine, Measure, Model
from pricegrid.server.domain.products import PRODUCTS, ProductBatch
from pricegrid.server.rpc import requests as req
from pricegrid.server.rpc import responses as resp
from pricegrid.server.service.pricing import PricingService
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import pricing_pb2 as pb

FIELDS = req._product_fields(PRODUCTS["european"], "european.time_to_expiry", "spot")
SERVICE = PricingService()


def batch(n, bad_rows=()):
    rng = np.random.default_rng(n)
    strike = rng.uniform(50, 150, n)
    strike[list(bad_rows)] = -1.0
    columns = {"option_type": rng.integers(1, 3, n).astype(np.int32), "strike": strike,
               "time_to_expiry": rng.uniform(0.1, 2, n)}
    market = MarketBatch(np.full(1, 100.0), np.full(1, 0.02), np.zeros(1), rng.uniform(0.1, 0.5, n))
    return ProductBatch(PRODUCTS["european"], columns), market


def _column(values, raw):
    values = np.asarray(values, dtype="<f8")
    return cpb.DoubleColumn(raw=values.tobytes()) if raw else cpb.DoubleColumn(values=values.tolist())


def reference(result, raw) -> pb.PriceBatchResponse:
    """The response the generated classes build from a BatchResult."""
    msg = pb.PriceBatchResponse(rows=result.rows, error_count=result.error_count,
                                priced_by=resp.model_ref(result.priced_by))
    for j, m in enumerate(result.measures):
        col = msg.columns.add(measure=int(m), values=_column(result.values[j], raw), method=int(result.methods[j]))
        if result.stderr is not None:
            col.standard_error.CopyFrom(_column(result.stderr[j], raw))
    if result.error_count:
        codes = np.asarray(result.row_codes, dtype="<i4")
        msg.status.CopyFrom(cpb.Int32Column(raw=codes.tobytes()) if raw else cpb.Int32Column(values=codes.tolist()))
    for e in result.errors:
        msg.errors.add(row=e.row, code=e.code, field=e.field, message=e.message)
    if result.forward is not None:
        for name in ("forward", "discount_factor", "time_to_expiry", "volatility"):
            getattr(msg.inputs, name).CopyFrom(_column(getattr(result, name), raw))
    msg.stats.CopyFrom(pb.BatchStats(compute_seconds=result.compute_seconds, threads=result.threads,
                                     chunks=result.chunks))
    return msg


def _check(spec, product_batch, market, n, measures, raw, effective, settings=Settings()):
    reply = resp.PriceBatchReply(n, measures, raw, effective, methods=[spec.methods[m] for m in measures],
                                 stderr=spec.monte_carlo)
    kw = dict(rows=n, fields=FIELDS, effective_inputs=effective, settings=settings)
    in_place = SERVICE.price_batch(spec, product_batch, market, measures, outputs=reply.outputs, **kw)
    data = reply.finish(in_place)
    copied = SERVICE.price_batch(spec, product_batch, market, measures, **kw)
    ours = pb.PriceBatchResponse.FromString(data)
    ours.ClearField("alignment_padding")
    ours.stats.compute_seconds = copied.compute_seconds
    assert ours == reference(copied, raw)
    return reply, data, in_place


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
@pytest.mark.parametrize("measures", [(Measure.PRICE,), (Measure.PRICE, Measure.DELTA, Measure.VEGA, Measure.CHARM)])
@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("effective", [True, False])
@pytest.mark.parametrize("bad", [(), (0,)])
def test_in_place_reply_equals_the_generated_message(n, measures, raw, effective, bad):
    if bad and n == 0:
        return
    spec = SERVICE.catalogue.find("european", Model.BLACK_SCHOLES_MERTON)
    reply, data, result = _check(spec, *batch(n, bad), n, measures, raw, effective)
    if not bad:  # every row OK: written in place, the reserve filled with padding
        assert len(data) == reply.body_end + resp._REPLY_TAIL
    if n and not bad:  # the kernel wrote the reply's own bytes: nothing was copied
        assert np.shares_memory(reply.outputs.values, np.frombuffer(data, dtype=np.uint8))
    if bad:
        assert result.error_count == 1 and result.errors[0].field == "european.strike"
        if effective:  # a failed row's inputs were not used: NaN, as its measures
            inputs = pb.PriceBatchResponse.FromString(data).inputs
            for col in (inputs.forward, inputs.discount_factor, inputs.time_to_expiry, inputs.volatility):
                first = np.frombuffer(col.raw, dtype="<f8")[0] if raw else col.values[0]
                assert np.isnan(first)


@pytest.mark.parametrize("n", [1, 7, 300])
@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("effective", [True, False])
def test_monte_carlo_reply_carries_standard_errors(n, raw, effective):
    spec = SERVICE.catalogue.find("european", Model.BLACK_SCHOLES_MERTON, Engine.MONTE_CARLO)
    _, data, result = _check(spec, *batch(n), n, (Measure.PRICE, Measure.DELTA), raw, effective,
                             settings=Settings(paths=256))
    msg = pb.PriceBatchResponse.FromString(data)
    se = np.frombuffer(msg.columns[0].standard_error.raw, dtype="<f8") if raw else \
        np.asarray(msg.columns[0].standard_error.values)
    assert len(se) == n and np.all(se >= 0) and np.any(se > 0)  # 0 where every path pays the same
    assert msg.columns[1].method == cpb.GREEK_METHOD_MONTE_CARLO_CRN
