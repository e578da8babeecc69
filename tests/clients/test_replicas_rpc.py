"""Several replicas behind one target: a client given every replica's address spreads its
calls over all of them (round robin), unary calls and a RiskClient's batch chunks alike."""

from __future__ import annotations

import re
import urllib.request

import numpy as np
import pytest

from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market, RiskClient
from tests.conftest import start_server


def _calls(server, method: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    found = re.findall(rf'pricegrid_rpc_duration_seconds_count\{{code="OK",method="{re.escape(method)}"\}} (\S+)', body)
    return float(found[0]) if found else 0.0


@pytest.fixture(scope="module")
def replicas():
    servers = [start_server() for _ in range(3)]
    yield servers
    for s in servers:
        s.stop(1.0)


def test_calls_spread_over_every_replica(replicas):
    target = "ipv4:" + ",".join(s.address for s in replicas)
    with FrontOfficeClient(target=target, timeout=10) as client:
        for i in range(60):
            assert client.price(EuropeanOption(option_type="call", strike=90.0 + i, expiry=0.5),
                                Market(spot=100.0, rate=0.03, volatility=0.2)).price > 0
    counts = [_calls(s, "/pricegrid.v1.PricingService/Price") for s in replicas]
    assert sum(counts) == 60 and min(counts) >= 10, counts  # round robin: about 20 each
    with RiskClient(target=target, timeout=30, chunk_rows=1000, max_in_flight=3) as risk:
        n = 30_000
        r = risk.price_batch(option_type=np.full(n, "put"), strike=np.linspace(80, 120, n), time_to_expiry=0.5,
                             spot=100.0, rate=0.03, volatility=0.2, model="bsm")
    assert np.isfinite(r["price"]).all()
    chunks = [_calls(s, "/pricegrid.v1.PricingService/PriceBatch") for s in replicas]
    assert sum(chunks) == 30 and min(chunks) >= 5, chunks
