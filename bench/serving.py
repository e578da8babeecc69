"""Serving under load: latency floors, front-office isolation, idle streams, overload.

    .venv/bin/python bench/serving.py --json bench/results/serving.json \\
        [--baseline-pricegrid /path/to/other/.venv/bin/pricegrid]

Starts ``pricegrid serve`` (this environment's) on 127.0.0.1 and, with
``--baseline-pricegrid``, another build beside it (e.g. the previous, synchronous server) to
measure in the same run; the figures go to ``--json``, ratios against their baseline from
the same run. Nothing here asserts: the goals of issue 9 are reported as met or not.

  latency     Price p50/p99, one caller, against a bare synchronous grpcio echo and a bare
              grpc.aio echo (the floors), in alternating rounds; PriceStream per message
              against EchoStream on the bare aio echo
  isolation   Price p50/p99 on the idle server, then while 2 client processes loop 1M-row
              PriceBatch calls (goal: p99 at most 2x idle); the batch clients run at nice 19,
              standing for risk engines on other machines. A bare grpc.aio echo server (a
              process of its own, no batch work) is measured beside ours, alternated, idle
              and under the same load: its own p99 ratio is what the machine alone does to
              a server that shares its cores with the load. Then the same with a
              front-office replica and a batch replica, each on CPUs of its own (the
              batch clients on the batch replica's, the measuring caller off them): the
              deployment that keeps trading screens apart from risk batches. Then the
              loopback floor: the same echo while two nice-19 processes (no gRPC, no
              pricing) move the bytes per second the batches moved over loopback TCP
  streams     1,000 PriceStreams opened and left idle (in another process, over several
              connections), Price traffic meanwhile (goal: no errors)
  overload    front-office Price calls off the lean path (an American put on a binomial tree)
              at twice the capacity the server shows with as many callers as front-office
              slots, as an open loop (goal: the excess refused RESOURCE_EXHAUSTED within
              10 ms, the accepted calls' p50 within 1.5x of the idle p50)

Takes a few minutes on a small machine; ``--quick`` shrinks every section (a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import grpc.aio
import numpy as np

from pricegrid.tools import bench as latency
from pricegrid.clients._config import RetryConfig, channel_options
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc

OPTIONS = channel_options(RetryConfig(max_attempts=1), max_message_bytes=-1)
PRICEGRID = str(Path(sys.executable).parent / "pricegrid")


# ---------------------------------------------------------------------------- processes
class Served:
    """``pricegrid serve`` in a child process on an ephemeral port; its log is read and dropped."""

    def __init__(self, executable: str = PRICEGRID, *args: str, cpus=None) -> None:
        self.proc = subprocess.Popen(
            [executable, "serve", "--port", "0", "--metrics-port", "-1", "--store", ":memory:", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        started: queue.Queue = queue.Queue()

        def pump() -> None:
            for line in self.proc.stdout:
                if '"started"' in line:
                    started.put(json.loads(line))
        threading.Thread(target=pump, daemon=True).start()
        try:
            event = started.get(timeout=60)
        except queue.Empty:
            self.close()
            raise RuntimeError(f"{executable} serve did not start") from None
        self.target = event["address"]
        self.settings = event.get("settings", {})

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def percentiles(latencies, scale=1e6) -> dict:
    lat = np.asarray(latencies, dtype=np.float64) * scale
    if not len(lat):
        return {"n": 0}
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    return {"n": int(len(lat)), "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(lat.max())}


def lean_request() -> pb.PriceRequest:
    return latency.per_trade_request("delta,gamma,vega,theta,rho")


def tree_request(steps: int) -> pb.PriceRequest:
    return pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        american=pb.AmericanOption(option_type=c.OPTION_TYPE_PUT, strike=100, expiry=pb.Expiry(year_fraction=1)),
        market=pb.Market(spot=100, rate=0.05, volatility=0.2),
        engine=c.ENGINE_BINOMIAL_TREE, settings=pb.EngineSettings(tree_steps=steps),
    )


async def closed_loop(target: str, request, *, callers: int, seconds: float, warmup: int = 20) -> dict:
    """``callers`` tasks, each calling Price back to back for ``seconds``."""
    latencies, codes = [], {}
    async with grpc.aio.insecure_channel(target, options=OPTIONS) as ch:
        price = pricing_pb2_grpc.PricingServiceStub(ch).Price
        for _ in range(warmup):
            await price(request, timeout=30)
        end = time.perf_counter() + seconds

        async def caller():
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    await price(request, timeout=30)
                    latencies.append(time.perf_counter() - t0)
                    codes["OK"] = codes.get("OK", 0) + 1
                except grpc.aio.AioRpcError as e:
                    codes[e.code().name] = codes.get(e.code().name, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        wall = time.perf_counter() - t0
    return {"latency_us": percentiles(latencies), "codes": codes, "calls_per_second": len(latencies) / wall}


async def open_loop(target: str, request, *, rate: float, seconds: float, timeout: float = 5.0) -> dict:
    """Calls started at ``rate`` per second for ``seconds``, whatever the answers (an open loop)."""
    ok, refused, other = [], [], {}
    pushbacks = []
    async with grpc.aio.insecure_channel(target, options=OPTIONS) as ch:
        price = pricing_pb2_grpc.PricingServiceStub(ch).Price
        await price(request, timeout=30)

        async def one():
            t0 = time.perf_counter()
            try:
                await price(request, timeout=timeout)
                ok.append(time.perf_counter() - t0)
            except grpc.aio.AioRpcError as e:
                elapsed = time.perf_counter() - t0
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refused.append(elapsed)
                    trailers = dict(e.trailing_metadata() or ())
                    if "grpc-retry-pushback-ms" in trailers:
                        pushbacks.append(int(trailers["grpc-retry-pushback-ms"]))
                else:
                    other[e.code().name] = other.get(e.code().name, 0) + 1

        total = int(rate * seconds)
        tasks = []
        start = time.perf_counter()
        while len(tasks) < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while len(tasks) < due:
                tasks.append(asyncio.ensure_future(one()))
            await asyncio.sleep(0.0005)
        offered_s = time.perf_counter() - start
        await asyncio.gather(*tasks)
    return {
        "offered_per_second": total / offered_s,
        "accepted": len(ok), "refused": len(refused), "other_errors": other,
        "accepted_latency_us": percentiles(ok), "refused_latency_us": percentiles(refused),
        "pushback_ms": percentiles(pushbacks, scale=1.0),
    }


# ---------------------------------------------------------------------------- sections
def section_latency(targets: dict, floors: dict, *, count: int, rounds: int) -> dict:
    """Price and PriceStream p50/p99, one caller, alternating with the bare echo floors; every
    series driven alike (request bytes out, reply bytes in; ours parsed and checked)."""
    request = lean_request()
    payload = request.SerializeToString()
    message = pb.PriceStreamRequest(correlation_id="1", price=request)
    stream_payload = message.SerializeToString()
    series: dict = {}
    per = dict(options=OPTIONS, count=max(1, count // rounds), duration=60.0, concurrency=1)

    def add(name, make, target, warmup):
        part = latency.measure_async(name, make, target=target, warmup=warmup, **per)
        series.setdefault(name, []).extend(part.latencies)

    for r in range(rounds):
        warmup = 100 if r == 0 else 20
        for kind, target in floors.items():
            add(f"Echo[{kind}]", lambda ch: latency._AioUnary(
                ch.unary_unary(latency.ECHO, request_serializer=None, response_deserializer=None),
                payload, len(payload), 10.0), target, warmup)
        for kind, target in targets.items():
            add(f"Price[{kind}]", lambda ch: latency._AioUnary(
                ch.unary_unary(latency.PRICE, request_serializer=None, response_deserializer=None),
                payload, len(payload), 10.0, latency._check_price_bytes), target, warmup)
        add("EchoStream[bare-aio]", lambda ch: latency._AioStream(
            ch.stream_stream(latency.ECHO_STREAM, request_serializer=None, response_deserializer=None),
            stream_payload, 120.0), floors["bare-aio"], warmup)
        for kind, target in targets.items():
            add(f"PriceStream[{kind}]", lambda ch: latency._AioStream(
                ch.stream_stream(latency.PRICE_STREAM, request_serializer=None, response_deserializer=None),
                stream_payload, 120.0, latency._check_price_stream_bytes), target, warmup)
    out = {name: percentiles(lat) for name, lat in series.items()}
    ratios = {}
    for kind in targets:
        for floor in floors:
            ratios[f"Price[{kind}]/Echo[{floor}] p50"] = out[f"Price[{kind}]"]["p50"] / out[f"Echo[{floor}]"]["p50"]
        ratios[f"PriceStream[{kind}]/EchoStream[bare-aio] p50"] = (
            out[f"PriceStream[{kind}]"]["p50"] / out["EchoStream[bare-aio]"]["p50"])
    if "ours" in targets and "baseline" in targets:
        ratios["Price[ours]/Price[baseline] p50"] = out["Price[ours]"]["p50"] / out["Price[baseline]"]["p50"]
        ratios["PriceStream[ours]/PriceStream[baseline] p50"] = (
            out["PriceStream[ours]"]["p50"] / out["PriceStream[baseline]"]["p50"])
    return {"series_us": out, "ratios": ratios}


def batch_client(target: str, rows: int) -> None:
    """(A child process) loop RiskClient.price_batch of ``rows`` rows until standard input
    closes, then report the calls and errors."""
    from pricegrid.clients import RiskClient

    inputs = latency.batch_inputs(rows, seed=os.getpid())
    calls, errors, first, seconds = 0, 0, "", []
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    with RiskClient(target=target, timeout=120, retries=RetryConfig(max_attempts=1)) as risk:
        print("ready", flush=True)
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                risk.price_batch(**inputs)
                calls += 1
                seconds.append(time.perf_counter() - t0)
            except Exception as e:  # reported, not raised: the parent counts them
                errors += 1
                first = first or str(e)[:300]
    print(json.dumps({"calls": calls, "errors": errors, "first_error": first,
                      "seconds_per_call_p50": float(np.median(seconds)) if seconds else None}), flush=True)


async def rounds(calls: dict, *, seconds: float, rounds: int, warmup: int = 20) -> dict:
    """Closed loops of one caller on each of ``calls`` (name -> target, method path, request
    bytes), alternated in ``rounds`` rounds of ``seconds / rounds`` each, so that a shared
    machine's drift lands on all of them alike; latencies per name."""
    latencies: dict = {name: [] for name in calls}
    errors: dict = {name: 0 for name in calls}
    channels = {name: grpc.aio.insecure_channel(target, options=OPTIONS) for name, (target, _, _) in calls.items()}
    try:
        stubs = {name: channels[name].unary_unary(path, request_serializer=None, response_deserializer=None)
                 for name, (_, path, _) in calls.items()}
        for name, (_, _, payload) in calls.items():
            for _ in range(warmup):
                await stubs[name](payload, timeout=30)
        for _ in range(rounds):
            for name, (_, _, payload) in calls.items():
                end = time.perf_counter() + seconds / rounds
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    try:
                        await stubs[name](payload, timeout=30)
                        latencies[name].append(time.perf_counter() - t0)
                    except grpc.aio.AioRpcError:
                        errors[name] += 1
    finally:
        for ch in channels.values():
            await ch.close()
    return {name: {**percentiles(latencies[name]), "errors": errors[name]} for name in calls}


def _low_priority(cpus=None):
    """A child's preexec_fn: nice 19 and, with ``cpus``, only those CPUs."""
    def preexec() -> None:
        os.nice(19)
        if cpus:
            os.sched_setaffinity(0, cpus)
    return preexec


def section_isolation(target: str, floor: str | None, *, rows: int, seconds: float, clients: int = 2,
                      batch_target: str | None = None, client_cpus=None) -> dict:
    """Price p50/p99 idle, then while ``clients`` processes loop ``rows``-row PriceBatch; with
    ``floor`` (a bare grpc.aio echo server, another process that does no batch work), the
    echo's latency beside ours, alternated, idle and under the same load: how much of the
    p99 under load is the machine's (the cores shared with the batch clients and the batch
    work) and how much is our server's. ``batch_target``: where the batches go (another
    replica; default ``target``); ``client_cpus``: the CPUs the batch clients may use."""
    calls = {"Price[ours]": (target, "/pricegrid.v1.PricingService/Price", lean_request().SerializeToString())}
    if floor is not None:
        calls["Echo[bare-aio]"] = (floor, latency.ECHO, lean_request().SerializeToString())
    idle = asyncio.run(rounds(calls, seconds=seconds * len(calls), rounds=6))
    # the batch clients stand for risk engines on other machines: on this one host they run
    # at the lowest scheduling priority, so that their own encoding and decoding of 1M-row
    # batches does not take the cores from the server and the measuring client
    procs = [subprocess.Popen([sys.executable, __file__, "batch-client", batch_target or target, str(rows)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              preexec_fn=_low_priority(client_cpus)) for _ in range(clients)]
    batch = []
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        time.sleep(min(5.0, seconds / 2))  # the batches under way
        loaded = asyncio.run(rounds(calls, seconds=seconds * len(calls), rounds=6, warmup=0))
        for p in procs:
            p.stdin.close()  # each finishes the batch it is in, then reports
        for p in procs:
            lines = [line for line in p.stdout.read().splitlines() if line.startswith("{")]
            p.wait(60)
            batch.append(json.loads(lines[-1]) if lines else {"no_report": True})
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    elapsed = time.perf_counter() - t0
    ours_idle, ours_loaded = idle["Price[ours]"], loaded["Price[ours]"]
    ratio = ours_loaded["p99"] / ours_idle["p99"]
    out = {
        "batch_rows": rows, "batch_clients": clients, "batch_target": "another replica" if batch_target else "this one",
        "batch_client_cpus": sorted(client_cpus) if client_cpus else "all",
        "idle_us": idle, "with_batches_us": loaded, "batch_calls": batch,
        # what the batches moved over loopback: the request's columns and the six measures back
        "batch_bytes_per_s": sum(b.get("calls", 0) for b in batch) * batch_bytes(rows) / elapsed,
        "p99_ratio": ratio, "p50_ratio": ours_loaded["p50"] / ours_idle["p50"],
        "goal_p99_at_most_2x": ratio <= 2.0,
    }
    if floor is not None:
        echo_idle, echo_loaded = idle["Echo[bare-aio]"], loaded["Echo[bare-aio]"]
        out["bare_echo_p99_ratio"] = echo_loaded["p99"] / echo_idle["p99"]
        out["ours_over_bare_echo_p99_under_load"] = ours_loaded["p99"] / echo_loaded["p99"]
        out["ours_over_bare_echo_p99_idle"] = ours_idle["p99"] / echo_idle["p99"]
    return out


def batch_bytes(rows: int) -> int:
    """Bytes one ``rows``-row batch of the isolation section moves: its input columns out,
    price + 5 Greeks back."""
    return sum(np.asarray(v).nbytes for v in latency.batch_inputs(rows, 0).values()
               if isinstance(v, np.ndarray)) + 6 * 8 * rows


def loopback_pump(rate: float) -> None:
    """(A child process) send ``rate`` bytes per second to itself over loopback TCP, in 4 MiB
    writes (a RiskClient chunk's size), until standard input closes."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    sink = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    stop = threading.Event()

    def drain() -> None:
        buf = bytearray(1 << 22)
        while not stop.is_set() and peer.recv_into(buf):
            pass

    threading.Thread(target=drain, daemon=True).start()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    chunk = b"\x5a" * (1 << 22)
    start, sent = time.perf_counter(), 0
    print("ready", flush=True)
    while not stop.is_set():
        ahead = sent / rate - (time.perf_counter() - start)
        if ahead > 0:
            time.sleep(ahead)
        sink.sendall(chunk)
        sent += len(chunk)


def section_loopback_floor(floor: str, *, rate: float, seconds: float, pumps: int = 2) -> dict:
    """The bare echo's p99 idle and while ``pumps`` processes (nice 19, no gRPC, no pricing)
    move ``rate`` bytes per second between them over loopback TCP, the rate the isolation
    section's batches moved: what that traffic alone does to a server's p99 on this host,
    where the kernel's work of carrying it runs on the cores the server needs."""
    calls = {"Echo[bare-aio]": (floor, latency.ECHO, lean_request().SerializeToString())}
    idle = asyncio.run(rounds(calls, seconds=seconds, rounds=4))["Echo[bare-aio]"]
    procs = [subprocess.Popen([sys.executable, __file__, "loopback-pump", str(rate / pumps)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.nice(19)) for _ in range(pumps)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        pumping = asyncio.run(rounds(calls, seconds=seconds, rounds=4, warmup=0))["Echo[bare-aio]"]
    finally:
        for p in procs:
            p.stdin.close()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    return {"bytes_per_s": rate, "pumps": pumps, "idle_us": idle, "pumping_us": pumping,
            "bare_echo_p99_ratio": pumping["p99"] / idle["p99"]}


def stream_holder(target: str, streams: int, connections: int) -> None:
    """(A child process) open ``streams`` PriceStreams over ``connections`` connections, one
    answer on each, then leave them idle until standard input closes; report errors."""
    async def main():
        channels = [grpc.aio.insecure_channel(target, options=OPTIONS + [("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(connections)]
        calls, errors = [], 0
        message = pb.PriceStreamRequest(correlation_id="open", price=lean_request())
        for i in range(streams):
            call = pricing_pb2_grpc.PricingServiceStub(channels[i % connections]).PriceStream(timeout=3600)
            await call.write(message)
            calls.append(call)
        for call in calls:
            try:
                reply = await call.read()
                errors += reply is grpc.aio.EOF or reply.HasField("error")
            except grpc.aio.AioRpcError:
                errors += 1
        print(json.dumps({"open": len(calls), "errors": errors}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for call in calls:  # still alive after the idle time: each answers once more
            try:
                await call.write(message)
                reply = await call.read()
                errors += reply is grpc.aio.EOF or reply.HasField("error")
                await call.done_writing()
            except grpc.aio.AioRpcError:
                errors += 1
        print(json.dumps({"errors_at_end": errors}), flush=True)
        for ch in channels:
            await ch.close()

    asyncio.run(main())


def section_streams(target: str, *, streams: int, seconds: float) -> dict:
    """``streams`` idle PriceStreams open (another process), Price traffic meanwhile."""
    connections = max(1, -(-streams // 200))
    holder = subprocess.Popen([sys.executable, __file__, "stream-holder", target, str(streams), str(connections)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    t0 = time.perf_counter()
    try:
        opened = json.loads(holder.stdout.readline())
        open_s = time.perf_counter() - t0
        traffic = asyncio.run(closed_loop(target, lean_request(), callers=4, seconds=seconds))
        holder.stdin.close()
        ended = json.loads(holder.stdout.readline())
    finally:
        if holder.poll() is None:
            holder.wait(60)
    errors = opened["errors"] + ended["errors_at_end"] + sum(n for k, n in traffic["codes"].items() if k != "OK")
    return {"streams": streams, "connections": connections, "opened": opened, "seconds_to_open": open_s,
            "price_traffic": traffic, "stream_errors_at_end": ended["errors_at_end"], "errors": errors,
            "goal_no_errors": errors == 0}


def section_overload(target: str, *, steps: int, slots: int, seconds: float) -> dict:
    """The front office (Price off the lean path) at twice its capacity, as an open loop."""
    request = tree_request(steps)
    idle = asyncio.run(closed_loop(target, request, callers=1, seconds=seconds / 2, warmup=5))
    # capacity: every front-office slot busy back to back with calls of the idle latency (a
    # definition that does not depend on the admission policy under test)
    idle_p50 = idle["latency_us"]["p50"]
    capacity = slots / (idle_p50 / 1e6)
    rate = 2 * capacity
    over = asyncio.run(open_loop(target, request, rate=rate, seconds=seconds))
    refused_p99 = over["refused_latency_us"].get("p99")
    accepted_p50 = over["accepted_latency_us"].get("p50")
    return {
        "work": f"American put, binomial tree of {steps} steps (a Price call off the lean path)",
        "front_office_slots": slots, "idle": idle, "capacity_per_second": capacity, "open_loop": over,
        "accepted_per_second": over["accepted"] / seconds,
        "accepted_p50_over_idle_p50": accepted_p50 / idle_p50 if accepted_p50 else None,
        "goal_refused_within_10ms": refused_p99 is not None and refused_p99 <= 10_000 and not over["other_errors"],
        "goal_accepted_p50_within_1_5x": accepted_p50 is not None and accepted_p50 <= 1.5 * idle_p50,
    }


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def section_soak(served: Served, *, minutes: float, streams: int, batch_rows: int) -> dict:
    """Everything at once for ``minutes``: front-office Price traffic (2 callers), ``streams``
    idle PriceStreams held open, one risk client looping batches of ``batch_rows`` rows.
    Per interval of a minute (or less): Price latency, the calls and their codes, and the
    server's RSS, so that growth (leaks, fragmentation) and drift show; at the end every
    stream must still answer and the batch client must have had no errors."""
    target, pid = served.target, served.proc.pid
    here = str(Path(__file__).resolve())
    holder = subprocess.Popen([sys.executable, here, "stream-holder", target, str(streams), "4"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    batches = subprocess.Popen(["nice", "-n", "19", sys.executable, here, "batch-client", target, str(batch_rows)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        opened = json.loads(holder.stdout.readline() or "{}")  # the streams open, each answered once
        if batches.stdout.readline().strip() != "ready":
            raise RuntimeError("the soak's batch client did not start")
        rss_start = _rss_mib(pid)
        intervals = []
        interval = min(60.0, minutes * 60.0)
        end = time.perf_counter() + minutes * 60.0
        while time.perf_counter() < end:
            seconds = min(interval, end - time.perf_counter())
            if seconds < 1.0:
                break
            r = asyncio.run(closed_loop(target, lean_request(), callers=2, seconds=seconds, warmup=0))
            intervals.append({"seconds": seconds, "latency_us": r["latency_us"], "codes": r["codes"],
                              "rss_mib": _rss_mib(pid)})
        holder.stdin.close()
        batches.stdin.close()
        held = {**opened, **json.loads(holder.stdout.readline() or "{}")}
        batch = json.loads(batches.stdout.readline() or "{}")
    finally:
        for child in (holder, batches):
            if child.poll() is None:
                child.kill()
            child.wait(30)
    errors = sum(n for i in intervals for code, n in i["codes"].items() if code != "OK")
    return {"minutes": minutes, "streams": streams, "batch_rows": batch_rows, "rss_start_mib": rss_start,
            "rss_end_mib": intervals[-1]["rss_mib"] if intervals else None, "intervals": intervals,
            "price_errors": errors, "streams_report": held, "batch_client": batch}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "batch-client":
        batch_client(argv[1], int(argv[2]))
        return 0
    if argv and argv[0] == "loopback-pump":
        loopback_pump(float(argv[1]))
        return 0
    if argv and argv[0] == "stream-holder":
        stream_holder(argv[1], int(argv[2]), int(argv[3]))
        return 0
    p = argparse.ArgumentParser(prog="bench/serving.py", description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--baseline-pricegrid", default=None,
                   help="another build's pricegrid command, measured in the same run (latency, isolation)")
    p.add_argument("--sections", default="latency,isolation,streams,overload")
    p.add_argument("--quick", action="store_true", help="every section shrunk: a smoke run")
    # 8 rounds of 500 calls left each series' p50 at the mercy of this VM's drift (Price
    # against the bare echo read 1.05-1.19 over runs of one build); 40 rounds of 100, the same
    # calls alternated finely, read 1.12-1.14 over five runs
    p.add_argument("--latency-rounds", type=int, default=40,
                   help="the latency section's series alternate in this many rounds (4,000 calls each in all)")
    p.add_argument("--tree-steps", type=int, default=3000, help="work of the overload section's Price calls")
    p.add_argument("--soak-minutes", type=float, default=0.0,
                   help="also run the soak section (everything at once) this long, reported per minute")
    args = p.parse_args(argv)
    # as `pricegrid serve` does: this process's startup heap out of the cyclic collector, so
    # that a full collection here (tens of ms) is not counted as the server's latency
    gc.collect()
    gc.freeze()
    sections = set(args.sections.split(","))
    q = args.quick
    report: dict = {"tool": "bench/serving.py", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "grpcio": grpc.__version__, "loadavg_at_start": os.getloadavg()}}
    ours = Served(PRICEGRID)
    baseline = Served(args.baseline_pricegrid) if args.baseline_pricegrid else None
    targets = {"ours": ours.target, **({"baseline": baseline.target} if baseline else {})}
    report["servers"] = {"ours": ours.settings, **({"baseline": baseline.settings} if baseline else {})}
    floors = {}
    try:
        if "latency" in sections:
            bare_sync, bare_aio = latency.BareEcho(16), latency.BareEcho(aio=True)
            floors = {"bare-sync": bare_sync.target, "bare-aio": bare_aio.target}
            try:
                print("latency ...", file=sys.stderr, flush=True)
                report["latency"] = section_latency(targets, floors, count=500 if q else 4000,
                                                    rounds=2 if q else args.latency_rounds)
            finally:
                bare_sync.close()
                bare_aio.close()
        if "isolation" in sections:
            floor = latency.BareEcho(aio=True)
            try:
                for kind, target in targets.items():
                    print(f"isolation [{kind}] ...", file=sys.stderr, flush=True)
                    report.setdefault("isolation", {})[kind] = section_isolation(
                        target, floor.target, rows=20_000 if q else 1_000_000, seconds=2.0 if q else 15.0)
                cpus = sorted(os.sched_getaffinity(0))
                if len(cpus) > 1:
                    # a front-office replica and a batch replica, each on CPUs of its own (as
                    # pods with exclusive cores would be), the batch clients beside the batch one
                    front_cpus, batch_cpus = set(cpus[:max(1, len(cpus) // 4)]), set(cpus[max(1, len(cpus) // 4):])
                    front = Served(PRICEGRID, "--kernel-threads", "1", cpus=front_cpus)
                    back = Served(PRICEGRID, "--kernel-threads", str(len(batch_cpus)), cpus=batch_cpus)
                    mine = os.sched_getaffinity(0)
                    try:
                        print("isolation [front-office and batch replicas] ...", file=sys.stderr, flush=True)
                        # the measuring caller stands for a trading screen on another machine:
                        # off the batch replica's CPUs too
                        os.sched_setaffinity(0, front_cpus)
                        report["isolation"]["front_and_batch_replicas"] = {
                            "front_replica_cpus": sorted(front_cpus), "batch_replica_cpus": sorted(batch_cpus),
                            **section_isolation(front.target, floor.target, rows=20_000 if q else 1_000_000,
                                                seconds=2.0 if q else 15.0, batch_target=back.target,
                                                client_cpus=batch_cpus)}
                    finally:
                        os.sched_setaffinity(0, mine)
                        front.close()
                        back.close()
                print("isolation [loopback floor] ...", file=sys.stderr, flush=True)
                report["loopback_floor"] = section_loopback_floor(
                    floor.target, rate=report["isolation"]["ours"]["batch_bytes_per_s"], seconds=2.0 if q else 12.0)
            finally:
                floor.close()
        if "streams" in sections:
            print("streams ...", file=sys.stderr, flush=True)
            report["streams"] = section_streams(ours.target, streams=50 if q else 1000, seconds=2.0 if q else 10.0)
        if args.soak_minutes > 0:
            print(f"soak ({args.soak_minutes} min) ...", file=sys.stderr, flush=True)
            report["soak"] = section_soak(ours, minutes=args.soak_minutes, streams=50 if q else 500,
                                          batch_rows=20_000 if q else 200_000)
        if "overload" in sections:
            print("overload ...", file=sys.stderr, flush=True)
            report["overload"] = section_overload(
                ours.target, steps=args.tree_steps, slots=int(ours.settings.get("front_workers", 2)),
                seconds=2.0 if q else 10.0)
    finally:
        ours.close()
        if baseline is not None:
            baseline.close()
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
