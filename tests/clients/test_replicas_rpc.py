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


def _settled_calls(servers, method: str, total: float) -> list[float]:
    """Each server's count of ``method`` once they add up to ``total`` (a unary call is
    recorded on its server's loop just after its reply went out), or as they are after 5 s."""
    import time

    deadline = time.monotonic() + 5
    while True:
        counts = [_calls(s, method) for s in servers]
        if sum(counts) >= total or time.monotonic() > deadline:
            return counts
        time.sleep(0.01)


@pytest.fixture(scope="module")
def replicas():
    servers = [start_server() for _ in range(3)]
    yield servers
    for s in servers:
        s.stop(1.0)


def _warm(risk, servers, calls: int = 12) -> None:
    """Connect the client to every replica before a test measures how calls spread (round
    robin picks among the connections that are ready: the first calls of a new channel may
    all go to the first replica that answered)."""
    import time

    for _ in range(calls):
        risk.server_info(refresh=True)
        time.sleep(0.01)


def test_calls_spread_over_every_replica(replicas):
    target = "ipv4:" + ",".join(s.address for s in replicas)
    with FrontOfficeClient(target=target, timeout=10) as client:
        for i in range(60):
            assert client.price(EuropeanOption(option_type="call", strike=90.0 + i, expiry=0.5),
                                Market(spot=100.0, rate=0.03, volatility=0.2)).price > 0
    counts = _settled_calls(replicas, "/pricegrid.v1.PricingService/Price", 60)
    assert sum(counts) == 60 and min(counts) >= 10, counts  # round robin: about 20 each
    with RiskClient(target=target, timeout=30, chunk_rows=1000, max_in_flight=3) as risk:
        n = 30_000
        r = risk.price_batch(option_type=np.full(n, "put"), strike=np.linspace(80, 120, n), time_to_expiry=0.5,
                             spot=100.0, rate=0.03, volatility=0.2, model="bsm")
    assert np.isfinite(r["price"]).all()
    chunks = _settled_calls(replicas, "/pricegrid.v1.PricingService/PriceBatch", 30)
    assert sum(chunks) == 30 and min(chunks) >= 5, chunks


def test_a_batch_finishes_when_a_replica_is_killed_mid_run():
    """Three `pricegrid serve` processes; a 1,000,000-row batch is priced once to time it,
    then again with one replica given SIGKILL half way through (with 3 chunks in flight, one
    on each replica): its chunk is sent again to the others, and the result is the first
    run's and a single server's, bit for bit (nothing lost, nothing counted twice)."""
    import threading
    import time

    from tests.server.test_serve_process import Server

    servers = [Server() for _ in range(3)]
    try:
        rng = np.random.default_rng(12)
        n = 1_000_000
        inputs = dict(option_type=np.where(rng.random(n) < 0.5, "call", "put"), strike=rng.uniform(50, 150, n),
                      time_to_expiry=rng.uniform(0.05, 3.0, n), spot=100.0, rate=0.03,
                      volatility=rng.uniform(0.1, 0.5, n))
        target = "ipv4:" + ",".join(s.address for s in servers)
        with RiskClient(target=target, timeout=120, chunk_rows=25_000, max_in_flight=3) as risk:
            _warm(risk, servers)
            t0 = time.perf_counter()
            first = risk.price_batch(model="bsm", measures=("price", "delta"), **inputs)
            half = (time.perf_counter() - t0) / 2
            killed_at = []
            killer = threading.Timer(half, lambda: (servers[1].kill(), killed_at.append(time.perf_counter())))
            killer.start()
            r = risk.price_batch(model="bsm", measures=("price", "delta"), **inputs)
            ended = time.perf_counter()
            killer.join(60)
        assert killed_at and killed_at[0] < ended  # it was killed during the run
        assert r.stats.chunks == 40 and r.error_count == 0
        np.testing.assert_array_equal(r["price"], first["price"])
        with RiskClient(target=servers[0].address, timeout=120) as one:
            alone = one.price_batch(model="bsm", measures=("price", "delta"), **inputs)
        np.testing.assert_array_equal(r["price"], alone["price"])
        np.testing.assert_array_equal(r["delta"], alone["delta"])
        # (its chunk in flight was sent again: by RiskClient on UNAVAILABLE, or by gRPC's own
        # retry when the request fits its retry buffer)
    finally:
        for s in servers:
            s.kill()


def _shard_book(risk, sid, n, seed=4, instrument="european"):
    rng = np.random.default_rng(seed)
    return risk.book(instrument, model="bsm", underlying_id="SPX", snapshot_id=sid,
                     option_type=np.where(rng.random(n) < 0.5, "call", "put"), strike=rng.uniform(5000, 7000, n),
                     time_to_expiry=rng.uniform(0.1, 2.0, n), quantity=rng.choice([-2.0, 1.0, 3.0], n),
                     tags={"desk": np.where(rng.random(n) < 0.3, "a", "b")})


def test_a_scenario_run_sharded_over_replicas_is_the_whole_run(replicas):
    from pricegrid.clients import MarketClient, Shift

    with MarketClient(target=replicas[0].address, timeout=10) as market:
        sid = market.list_snapshots("demo")[0].id  # the same built-in snapshot on every replica
    target = "ipv4:" + ",".join(s.address for s in replicas)
    rng = np.random.default_rng(9)
    shifts = [Shift("spx", "spot", "log", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-*"])]
    sizes = np.vstack([rng.normal(0, 0.03, 300), rng.normal(0, 0.02, 300)])
    labels = [f"s{j}" for j in range(300)]
    with RiskClient(target=target, timeout=60) as risk:
        _warm(risk, replicas)
        books = [_shard_book(risk, sid, 700), _shard_book(risk, sid, 200, 5, "american")]
        kw = dict(books=books, shifts=shifts, sizes=sizes, labels=labels, output="both", trade_risk=True,
                  var_levels=(0.99, 0.95), es_levels=(0.975,), aggregate_by=["desk"])
        before = [_calls(s, "/pricegrid.v1.RiskService/RunScenarioRisk") for s in replicas]
        sharded = risk.scenario_risk(shards=3, **kw)
        after = [_calls(s, "/pricegrid.v1.RiskService/RunScenarioRisk") for s in replicas]
        whole = risk.scenario_risk(**kw)
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1]  # a slice on each replica
    assert sharded.trade_ids == whole.trade_ids and len(sharded.trade_ids) == 900
    np.testing.assert_array_equal(sharded.cube, whole.cube)
    np.testing.assert_array_equal(sharded.trade_var, whole.trade_var)
    np.testing.assert_allclose(sharded.portfolio_pnl, whole.portfolio_pnl, rtol=1e-12, atol=1e-9)
    for level in (0.99, 0.95):
        assert sharded.var[level] == pytest.approx(whole.var[level], rel=1e-12)
    assert sharded.expected_shortfall[0.975] == pytest.approx(whole.expected_shortfall[0.975], rel=1e-12)
    assert [n.path for n in sharded.nodes] == [n.path for n in whole.nodes]
    for a, b in zip(sharded.nodes, whole.nodes):
        assert a.trades == b.trades and a.var[0.99] == pytest.approx(b.var[0.99], rel=1e-12)


def test_a_sharded_scenario_run_finishes_when_a_replica_is_killed():
    from pricegrid.clients import Shift
    from tests.server.test_serve_process import Server

    servers = [Server() for _ in range(3)]
    try:
        target = "ipv4:" + ",".join(s.address for s in servers)
        rng = np.random.default_rng(3)
        shifts = [Shift("spx", "spot", "log", ["SPX"])]
        sizes = rng.normal(0, 0.03, (1, 400))
        labels = [f"s{j}" for j in range(400)]
        with RiskClient(target=target, timeout=120) as risk:
            from pricegrid.clients import MarketClient

            with MarketClient(target=servers[0].address, timeout=10) as market:
                sid = market.list_snapshots("demo")[0].id
            books = [_shard_book(risk, sid, 30_000, 6)]  # 4M cells a slice: 8 blocks, each a progress message
            _warm(risk, servers)
            killed = []

            def kill_on_first_progress(done, total):
                if not killed:
                    killed.append(done)
                    servers[2].kill()

            r = risk.scenario_risk(books=books, shifts=shifts, sizes=sizes, labels=labels, output="aggregates",
                                   shards=3, progress=kill_on_first_progress)
            resent = risk.resent_chunks
        assert killed and servers[2].proc.poll() is not None
        survivors = "ipv4:" + ",".join(s.address for s in servers[:2])
        with RiskClient(target=survivors, timeout=120) as risk:
            again = risk.scenario_risk(books=books, shifts=shifts, sizes=sizes, labels=labels, shards=3)
        np.testing.assert_array_equal(r.portfolio_pnl, again.portfolio_pnl)  # nothing lost, nothing twice
        assert r.var == again.var and r.expected_shortfall == again.expected_shortfall
        assert len(r.trade_ids) == 30_000 and np.isfinite(r.portfolio_pnl).all()
        assert resent >= 1
    finally:
        for s in servers:
            s.kill()


def test_the_clients_var_and_es_are_the_servers_estimator():
    """The merge of a sharded run recomputes VaR and ES on the client: the same numbers as the
    server's estimator, level by level, whole-number n x level included."""
    from pricegrid.clients._scenarios import tail_risk
    from pricegrid.server.domain.risk import historical_risk

    rng = np.random.default_rng(0)
    levels = [0.5, 0.9, 0.95, 0.975, 0.99, 0.999]
    for n in (1, 2, 7, 100, 250, 1000, 1001):
        pnl = rng.standard_t(3, n) * 1e3
        var, es = tail_risk(pnl, levels, levels)
        ref = historical_risk(pnl, var_level=levels, es_level=levels)
        assert [var[x] for x in levels] == pytest.approx(list(np.atleast_1d(ref.var)), rel=1e-14, abs=1e-9), n
        assert [es[x] for x in levels] == pytest.approx(list(np.atleast_1d(ref.es)), rel=1e-12, abs=1e-9), n
