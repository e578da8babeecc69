"""PriceBatchReply (kernels write the reply in place) against the copying encoder."""

import numpy as np
import pytest

from pricegrid.server.domain.instruments import EuropeanOptionBatch, MarketBatch
from pricegrid.server.domain.models import Measure, Model
from pricegrid.server.rpc import converters as conv
from pricegrid.server.service.pricing import PricingService
from pricegrid.v1 import pricing_pb2 as pb

FIELDS = conv._BATCH_FIELDS["time_to_expiry", "spot"]


def batch(n, bad_rows=()):
    rng = np.random.default_rng(n)
    strike = rng.uniform(50, 150, n)
    strike[list(bad_rows)] = -1.0
    return (
        EuropeanOptionBatch(rng.integers(1, 3, n).astype(np.int32), strike, rng.uniform(0.1, 2, n)),
        MarketBatch(np.full(1, 100.0), np.full(1, 0.02), np.zeros(1), rng.uniform(0.1, 0.5, n)),
    )


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
@pytest.mark.parametrize("measures", [(Measure.PRICE,), (Measure.PRICE, Measure.DELTA, Measure.VEGA, Measure.CHARM)])
@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("effective", [True, False])
@pytest.mark.parametrize("bad", [(), (0,)])
def test_in_place_reply_equals_the_copying_encoder(n, measures, raw, effective, bad):
    if bad and n == 0:
        return
    options, market = batch(n, bad)
    service = PricingService()
    reply = conv.PriceBatchReply(n, measures, raw, effective)
    kw = dict(rows=n, fields=FIELDS, effective_inputs=effective)
    in_place = service.price_batch(Model.BLACK_SCHOLES_MERTON, options, market, measures, outputs=reply.outputs, **kw)
    data = reply.finish(in_place)
    copied = service.price_batch(Model.BLACK_SCHOLES_MERTON, options, market, measures, **kw)
    encoding = 0 if raw else 2
    ours = pb.PriceBatchResponse.FromString(data)
    ref = pb.PriceBatchResponse.FromString(conv.price_batch_response_bytes(copied, encoding))
    if not bad:  # every row OK: written in place, the reserve filled with padding
        assert len(data) == reply.body_end + conv._REPLY_TAIL
    ours.ClearField("alignment_padding")
    ours.stats.compute_seconds = ref.stats.compute_seconds
    assert ours == ref
