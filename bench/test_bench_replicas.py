"""Throughput with 1, 2 and 3 replicas on loopback, in one run: `pricegrid serve` processes
(each with one kernel thread, so that a replica is one core's worth of pricing) behind one
client target (gRPC round robin), for a PriceBatch of 2,000,000 rows in chunks and for a
scenario run of 20,000 options x 500 scenarios sharded one slice per replica; each figure
the median of rounds, and the ratio to one replica.

What limits it here: the machine has 2 cores, shared by the replicas and the client (which
encodes the chunks and decodes the answers), so 2 replicas can at best double one, and a
third adds contention, not capacity. On a cluster each replica brings its own cores: the
batch scales with replicas until the client's encoding (a few hundred MB/s per client
process) or the network is the limit; a sharded scenario run scales with the slowest slice
(slices are equal in trades, so about linearly).

    .venv/bin/python -m pytest bench/test_bench_replicas.py --benchmark-json=/tmp/replicas.json -p no:logging
    .venv/bin/python -c "import json; print(json.load(open('/tmp/replicas.json'))['benchmarks'][0]['extra_info'])"
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from pricegrid.clients import MarketClient, RiskClient, Shift

PRICEGRID = Path(sys.executable).parent / "pricegrid"
ROUNDS = 3
BATCH_ROWS = 2_000_000
TRADES, SCENARIOS = 20_000, 500


class _Replica:
    def __init__(self):
        self.proc = subprocess.Popen(
            [str(PRICEGRID), "serve", "--port", "0", "--metrics-port", "-1", "--store", ":memory:",
             "--kernel-threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.address = None
        for line in self.proc.stdout:
            event = json.loads(line)
            if event.get("event") == "started":
                self.address = event["address"]
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()  # drain its log

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)


def test_throughput_with_one_two_and_three_replicas(benchmark):
    replicas = [_Replica() for _ in range(3)]
    try:
        rng = np.random.default_rng(1)
        batch = dict(option_type=np.where(rng.random(BATCH_ROWS) < 0.5, "call", "put"),
                     strike=rng.uniform(50, 150, BATCH_ROWS), time_to_expiry=rng.uniform(0.05, 3.0, BATCH_ROWS),
                     spot=100.0, rate=0.03, volatility=rng.uniform(0.1, 0.5, BATCH_ROWS))
        with MarketClient(target=replicas[0].address, timeout=10) as market:
            sid = market.list_snapshots("demo")[0].id
        sizes = np.vstack([rng.normal(0, 0.03, SCENARIOS), rng.normal(0, 0.02, SCENARIOS)])
        shifts = [Shift("spx", "spot", "log", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-*"])]
        labels = [f"s{j}" for j in range(SCENARIOS)]
        times: dict[str, list[float]] = {}

        def measure(k: int) -> None:
            target = "ipv4:" + ",".join(r.address for r in replicas[:k])
            with RiskClient(target=target, timeout=300, chunk_rows=50_000, max_in_flight=2 * k) as risk:
                for _ in range(10):  # connect to every replica before timing (round robin picks ready ones)
                    risk.server_info(refresh=True)
                book = risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=sid,
                                 option_type=np.where(rng.random(TRADES) < 0.5, "call", "put"),
                                 strike=rng.uniform(5000, 7000, TRADES), time_to_expiry=rng.uniform(0.1, 2.0, TRADES))
                for _ in range(ROUNDS):
                    t0 = time.perf_counter()
                    risk.price_batch(model="bsm", **batch)
                    times.setdefault(f"batch_{k}", []).append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    risk.scenario_risk(books=[book], shifts=shifts, sizes=sizes, labels=labels, shards=k)
                    times.setdefault(f"scenarios_{k}", []).append(time.perf_counter() - t0)

        def rounds():
            for k in (1, 2, 3):
                measure(k)

        benchmark.pedantic(rounds, rounds=1, iterations=1)
        med = {name: float(np.median(v)) for name, v in times.items()}
        info = {}
        for k in (1, 2, 3):
            info[f"batch_rows_per_s_{k}"] = BATCH_ROWS / med[f"batch_{k}"]
            info[f"batch_speedup_{k}"] = med["batch_1"] / med[f"batch_{k}"]
            info[f"scenario_cells_per_s_{k}"] = TRADES * SCENARIOS / med[f"scenarios_{k}"]
            info[f"scenario_speedup_{k}"] = med["scenarios_1"] / med[f"scenarios_{k}"]
        benchmark.extra_info.update(cores=os.cpu_count(), rounds=ROUNDS, **info)
    finally:
        for r in replicas:
            r.stop()
