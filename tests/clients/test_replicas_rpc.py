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


def test_a_batch_finishes_when_a_replica_is_killed_mid_run():
    """Three `pricegrid serve` processes; one gets SIGKILL once it has answered a chunk of a
    1,000,000-row batch: its chunks in flight are sent again to the others, and the result is
    the one a single server gives, bit for bit (nothing lost, nothing counted twice)."""
    import threading

    from tests.server.test_serve_process import Server

    servers = [Server() for _ in range(3)]
    try:
        rng = np.random.default_rng(12)
        n = 1_000_000
        inputs = dict(option_type=np.where(rng.random(n) < 0.5, "call", "put"), strike=rng.uniform(50, 150, n),
                      time_to_expiry=rng.uniform(0.05, 3.0, n), spot=100.0, rate=0.03,
                      volatility=rng.uniform(0.1, 0.5, n))
        victim = servers[1]

        def kill_after_its_first_chunk():
            victim.wait_for(lambda e: e.get("method") == "/pricegrid.v1.PricingService/PriceBatch", timeout=60)
            victim.kill()

        killer = threading.Thread(target=kill_after_its_first_chunk)
        killer.start()
        target = "ipv4:" + ",".join(s.address for s in servers)
        with RiskClient(target=target, timeout=120, chunk_rows=25_000, max_in_flight=3) as risk:
            r = risk.price_batch(model="bsm", measures=("price", "delta"), **inputs)
            resent = risk.resent_chunks
        killer.join(60)
        assert victim.proc.poll() is not None  # it was killed during the run
        assert r.stats.chunks == 40 and r.error_count == 0
        with RiskClient(target=servers[0].address, timeout=120) as one:
            alone = one.price_batch(model="bsm", measures=("price", "delta"), **inputs)
        np.testing.assert_array_equal(r["price"], alone["price"])
        np.testing.assert_array_equal(r["delta"], alone["delta"])
        assert resent >= 1  # the killed replica's chunks in flight went elsewhere
    finally:
        for s in servers:
            s.kill()
