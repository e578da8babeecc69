"""A scenario cube streamed back to numpy through RiskClient, against its floor (the issue's
target: at most 1.5x the kernel time plus the time to echo the cube's bytes through a bare
grpcio server).

10,000 European options on the demo snapshot's SPX x 1,000 scenarios (spot, vol and rate
shifts), output="cube": ``pricegrid serve --kernel-threads 1`` in a child process, called with
RiskClient.scenario_risk; the floor, measured in the same run in alternating rounds: the
batch kernel alone on the same 10,000,000 rows (one thread, in this process) plus echoing
the cube's bytes, in blocks of the size the server sends, through the bare grpc.aio echo
server (another child process).

    .venv/bin/python -m pytest bench/test_bench_scenario_stream.py --benchmark-json=/tmp/cube.json -p no:logging
    .venv/bin/python -c "import json; print(json.load(open('/tmp/cube.json'))['benchmarks'][0]['extra_info'])"
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import grpc
import numpy as np
from threadpoolctl import threadpool_limits

from pricegrid.clients import MarketClient, RiskClient, Shift
from pricegrid.tools import bench as latency
from pricegrid.ext import black
from pricegrid.server.app import demo
from pricegrid.server.domain.instruments import MarketBatch, SnapshotMarket
from pricegrid.server.domain.models import Model
from pricegrid.server.domain.products import PRODUCTS, ProductBatch
from pricegrid.server.service.market import MarketDataService
from pricegrid.server.service.pricing import Limits, PricingService
from pricegrid.server.store.sqlite import SqliteSnapshotStore

sys.path.insert(0, str(Path(__file__).parent))
from serving import Served  # noqa: E402

TRADES, SCENARIOS, ROUNDS = 10_000, 1_000, 5  # 5 rounds: the cube runs in three processes at once, the most exposed to busy neighbours
BLOCK_BYTES = 4 << 20  # the server's block size (pricegrid.server.rpc.risk.BLOCK_BYTES)


def test_cube_through_risk_client_against_kernel_plus_echo(benchmark):
    threadpool_limits(limits=1, user_api="blas")
    rng = np.random.default_rng(23)
    types = rng.integers(1, 3, TRADES).astype(np.int32)
    strikes = rng.uniform(4500, 7500, TRADES)
    expiries = rng.integers(7, 3 * 365, TRADES) / 365.0
    sizes = np.vstack([rng.normal(0, 0.02, SCENARIOS), rng.normal(0, 0.01, SCENARIOS), rng.normal(0, 0.0005, SCENARIOS)])
    shifts = [Shift("spot", "spot", "log", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-SVI"]),
              Shift("rate", "zero_rate", "absolute", ["USD-OIS"])]
    labels = [f"s{j}" for j in range(SCENARIOS)]

    # the kernel's rows, laid out once (the same numbers the server prices)
    market = MarketDataService(SqliteSnapshotStore(":memory:"))
    record, _ = market.put(demo.snapshot(), force=True, reason="bench")
    service = PricingService(Limits(max_rows=1_000_000, kernel_threads=1), snapshots=market.snapshot)
    spec = service.catalogue.find("european", Model.BLACK_SCHOLES_MERTON)
    batch = ProductBatch(PRODUCTS["european"], {"option_type": types, "strike": strikes, "time_to_expiry": expiries})
    ref = SnapshotMarket(record.snapshot_id, "SPX", MarketBatch(np.zeros(1), np.zeros(1), np.zeros(1), None))
    m, _, _ = service.resolve_market(spec, batch, ref, {})
    rows = TRADES * SCENARIOS
    cols = [np.repeat(types, SCENARIOS), np.repeat(strikes, SCENARIOS), np.repeat(expiries, SCENARIOS),
            (m.underlying[:, None] * np.exp(sizes[0])[None, :]).ravel(), (m.rate[:, None] + sizes[2][None, :]).ravel(),
            np.repeat(m.dividend_yield, SCENARIOS), (m.volatility[:, None] + sizes[1][None, :]).ravel()]
    out, status, none = np.empty((1, rows)), np.empty(rows, dtype=np.int32), np.empty(0)
    measures = np.array([1], dtype=np.int32)

    served = Served(str(Path(sys.executable).parent / "pricegrid"), "--kernel-threads", "1")
    echo = latency.BareEcho(aio=True)
    times: dict[str, list[float]] = {"cube": [], "kernel": [], "echo": []}
    try:
        with MarketClient(target=served.target, timeout=30) as mc:
            sid = mc.list_snapshots("demo")[0].id
        per_block = max(1, BLOCK_BYTES // (8 * SCENARIOS)) * SCENARIOS * 8
        blocks = [per_block] * (rows * 8 // per_block) + ([rows * 8 % per_block] if rows * 8 % per_block else [])
        payload = bytes(per_block)
        with RiskClient(target=served.target, timeout=600) as risk, \
                grpc.insecure_channel(echo.target, options=[("grpc.max_receive_message_length", -1),
                                                            ("grpc.max_send_message_length", -1)]) as ch:
            echo_call = ch.unary_unary(latency.ECHO, request_serializer=None, response_deserializer=None)

            def cube_once():
                r = risk.scenario_risk(snapshot_id=sid, underlying_id="SPX", model="bsm", shifts=shifts, sizes=sizes,
                                       labels=labels, option_type=types, strike=strikes, time_to_expiry=expiries,
                                       output="cube")
                assert r.cube.shape == (TRADES, SCENARIOS) and r.failed_cells == 0

            def kernel_once():
                black.price_batch(1, *cols, measures, out, none, none, status, 1)

            def echo_once():
                for nbytes in blocks:
                    echo_call(payload[:nbytes], timeout=60)

            def rounds():
                cube_once(), kernel_once(), echo_once()  # warm
                for _ in range(ROUNDS):
                    for name, fn in (("cube", cube_once), ("kernel", kernel_once), ("echo", echo_once)):
                        t0 = time.perf_counter()
                        fn()
                        times[name].append(time.perf_counter() - t0)

            benchmark.pedantic(rounds, rounds=1, iterations=1)
    finally:
        echo.close()
        served.close()
    cube_s, kernel_s, echo_s = (float(np.median(times[k])) for k in ("cube", "kernel", "echo"))
    benchmark.extra_info.update(trades=TRADES, scenarios=SCENARIOS, rounds=ROUNDS, cube_s=cube_s, kernel_s=kernel_s,
                                echo_s=echo_s, ratio=cube_s / (kernel_s + echo_s), target=1.5,
                                cube_mib=rows * 8 / 2**20)
