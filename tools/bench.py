"""``pricegrid bench latency``: the latency of a running server against the floor of gRPC.

    pricegrid bench latency --target 127.0.0.1:50051 --count 5000 --concurrency 4 \\
        --batch-rows 1000000 --json latency.json --png latency.png

Six series, in one run. The pricing series go to ``--target``; the echo series (the floor)
go to a bare grpcio echo server (no interceptors, see ``pricegrid.tools._bare_echo``)
that the bench starts beside it on 127.0.0.1: the synchronous one on a thread pool
(``--echo bare``, the default) or the ``grpc.aio`` one (``--echo bare-aio``, the kind of
server ``pricegrid serve`` is); or to the target's own EchoService (``--echo server``, when
the target runs with ``--echo``; it sits behind our interceptors), or to another ``host:port``:

    Echo         EchoService/Echo, unary, carrying the serialized PriceRequest bytes
    Price        PricingService/Price, unary (the same PriceRequest: price + --greeks)
    EchoStream   EchoService/EchoStream, one stream per caller, one message at a time,
                 carrying the serialized PriceStreamRequest bytes
    PriceStream  PricingService/PriceStream, one stream per caller, one message at a time
    EchoBatch    EchoService/Echo carrying the very request bytes the RiskClient sends for
                 the batch, chunk by chunk, as concurrently as the RiskClient
    PriceBatch   PriceBatch through RiskClient (--batch-rows rows; price + delta, gamma,
                 vega, theta, rho; effective inputs off, so the response is about the size
                 of the request)

The per-trade series are driven alike: each sends pre-serialized request bytes and reads
the reply's bytes (the echo's compared with what was sent, ours parsed and checked: a
price, not an error), so their ratio to Echo is what the server adds to gRPC's own round
trip, not the generated stub's encoding in the calling process; the
batch goes through the RiskClient as a user's would (encoding and decoding included). Each
series runs ``--warmup`` calls first (not counted), then stops after ``--count`` calls or
``--duration`` seconds, whichever comes first, with ``--concurrency`` callers (the batch
series: one caller). Reports p50/p90/p99/p99.9 and calls per second, the ratios Price/Echo,
PriceStream/Echo, PriceStream/EchoStream and PriceBatch/EchoBatch at p50, and writes
``--json`` and a latency histogram ``--png`` (needs matplotlib).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import itertools
import json
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import grpc
import numpy as np

from pricegrid.v1 import pricing_pb2, pricing_pb2_grpc

from pricegrid.clients import EuropeanOption, Market, PricingError, RetryConfig, RiskClient
from pricegrid.clients import _convert, _format
from pricegrid.clients._config import channel_options, default_target

from . import _bare_echo

ECHO = "/pricegrid.v1.EchoService/Echo"
ECHO_STREAM = "/pricegrid.v1.EchoService/EchoStream"
PRICE = "/pricegrid.v1.PricingService/Price"
PRICE_STREAM = "/pricegrid.v1.PricingService/PriceStream"
BATCH_MEASURES = ("price", "delta", "gamma", "vega", "theta", "rho")
SERIES = ("Echo", "Price", "EchoStream", "PriceStream", "EchoBatch", "PriceBatch")
MODES = {"price": ("Echo", "Price"), "stream": ("EchoStream", "PriceStream"), "batch": ("EchoBatch", "PriceBatch")}
RATIOS = (
    ("Price/Echo", "Price", "Echo"),
    ("PriceStream/Echo", "PriceStream", "Echo"),
    ("PriceStream/EchoStream", "PriceStream", "EchoStream"),
    ("PriceBatch/EchoBatch", "PriceBatch", "EchoBatch"),
)
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


# ---------------------------------------------------------------------------- arguments
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _modes(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = set(names) - set(MODES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"modes are a comma-separated subset of {list(MODES)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=None, help="server host:port (default: $PRICEGRID_TARGET or 127.0.0.1:50051)")
    parser.add_argument("--count", type=_positive_int, default=2000, help="measured calls per series")
    parser.add_argument("--duration", type=_positive_float, default=10.0, help="at most this many seconds per series")
    parser.add_argument("--concurrency", type=_positive_int, default=1, help="callers of the per-trade series")
    parser.add_argument("--warmup", type=_non_negative_int, default=100, help="warm-up calls per series (not counted)")
    parser.add_argument("--greeks", default="delta,gamma,vega,theta,rho", help="Greeks of the per-trade requests")
    parser.add_argument("--batch-rows", type=_positive_int, default=1_000_000, help="rows per PriceBatch call")
    parser.add_argument("--batch-count", type=_positive_int, default=5, help="measured batch calls")
    parser.add_argument("--batch-warmup", type=_non_negative_int, default=1, help="warm-up batch calls (not counted)")
    parser.add_argument("--max-in-flight", type=_positive_int, default=4, help="concurrent chunks of a batch")
    parser.add_argument("--chunk-rows", type=_positive_int, default=None, help="cap on rows per batch chunk")
    parser.add_argument("--modes", type=_modes, default=list(MODES), help="subset of price,stream,batch")
    parser.add_argument("--timeout", type=_positive_float, default=30.0, help="deadline per call in seconds")
    parser.add_argument("--seed", type=int, default=7, help="seed of the batch's random inputs")
    parser.add_argument("--rounds", type=int, default=10,
                        help="per-trade series alternate with their echo baseline in this many rounds")
    parser.add_argument("--echo", default="bare",
                        help="where the echo series go: 'bare' (a bare synchronous grpcio server started beside the"
                             " target, the default), 'bare-aio' (a bare grpc.aio one), 'server' (the target's own"
                             " EchoService), or host:port")
    parser.add_argument("--workers", type=_positive_int, default=16,
                        help="thread pool of the bare synchronous echo server")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="tune glibc's allocator in this (calling) process as `pricegrid serve` does; off by default:"
                             " a RiskClient user's process runs with its defaults")
    parser.add_argument("--json", dest="json_path", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--png", type=Path, default=None, help="draw a latency histogram here (needs matplotlib)")


# ---------------------------------------------------------------------------- measuring
@dataclass
class Series:
    """The latencies (seconds) of one series' measured calls and what they carried."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall_seconds: float = 0.0
    concurrency: int = 1
    rows_per_call: int = 1
    bytes_sent: int = 0
    bytes_received: int = 0
    first_error: str = ""

    def absorb(self, part: "Series") -> None:
        """Add another round of the same series."""
        self.latencies += part.latencies
        self.errors += part.errors
        self.wall_seconds += part.wall_seconds
        self.bytes_sent += part.bytes_sent
        self.bytes_received += part.bytes_received
        self.first_error = self.first_error or part.first_error

    def summary(self) -> dict:
        lat = np.asarray(self.latencies, dtype=np.float64)
        calls = len(lat)
        out: dict = {
            "calls": calls,
            "errors": self.errors,
            "concurrency": self.concurrency,
            "rows_per_call": self.rows_per_call,
            "wall_seconds": self.wall_seconds,
            "calls_per_second": calls / self.wall_seconds if self.wall_seconds > 0 else 0.0,
        }
        if calls:
            for p, v in zip(PERCENTILES, np.percentile(lat, PERCENTILES)):
                out[f"p{p:g}_s"] = float(v)
            out.update(mean_s=float(lat.mean()), min_s=float(lat.min()), max_s=float(lat.max()))
        else:
            for p in PERCENTILES:
                out[f"p{p:g}_s"] = None
            out.update(mean_s=None, min_s=None, max_s=None)
        if self.rows_per_call > 1:
            out["rows_per_second"] = out["calls_per_second"] * self.rows_per_call
        if self.bytes_sent or self.bytes_received:
            out["bytes_sent_per_call"] = self.bytes_sent / max(calls, 1)
            out["bytes_received_per_call"] = self.bytes_received / max(calls, 1)
        if self.first_error:
            out["first_error"] = self.first_error
        return out


class _Worker:
    """One caller: ``call()`` does one round trip; ``close()`` releases what it holds."""

    def call(self) -> tuple[int, int]:  # -> (bytes sent, bytes received)
        raise NotImplementedError

    def close(self) -> None:
        pass


def measure(
    name: str,
    make_worker: Callable[[], _Worker],
    *,
    count: int,
    duration: float,
    concurrency: int,
    warmup: int,
    rows_per_call: int = 1,
) -> Series:
    """Run ``warmup`` calls on each of ``concurrency`` callers, then measured calls until
    ``count`` are done or ``duration`` seconds have passed."""
    series = Series(name, concurrency=concurrency, rows_per_call=rows_per_call)
    lock = threading.Lock()
    tickets = itertools.count()
    ready = threading.Barrier(concurrency + 1)
    go = threading.Barrier(concurrency + 1)
    state = {"deadline": 0.0, "failed": None}

    def caller() -> None:
        latencies: list[float] = []
        sent = received = errors = 0
        first_error = ""
        worker = None
        try:
            try:
                worker = make_worker()
                for _ in range(warmup):
                    worker.call()
            except Exception as e:  # the series cannot run: report and stop
                state["failed"] = e
            ready.wait()
            go.wait()
            if state["failed"] is not None:
                return
            deadline = state["deadline"]
            while next(tickets) < count and time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    s, r = worker.call()
                except Exception as e:
                    errors += 1
                    first_error = first_error or _describe(e)
                    continue
                latencies.append(time.perf_counter() - t0)
                sent += s
                received += r
        except threading.BrokenBarrierError:
            return
        finally:
            if worker is not None:
                worker.close()
            with lock:
                series.latencies.extend(latencies)
                series.errors += errors
                series.bytes_sent += sent
                series.bytes_received += received
                series.first_error = series.first_error or first_error

    threads = [threading.Thread(target=caller, name=f"bench-{name}-{i}", daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    state["deadline"] = start + duration
    go.wait()
    for t in threads:
        t.join()
    series.wall_seconds = time.perf_counter() - start
    if state["failed"] is not None:
        error = state["failed"]
        raise BenchError(f"{name}: warm-up failed: {_describe(error)}") from error
    return series


def measure_async(
    name: str,
    make_worker: Callable[[grpc.aio.Channel], "_AioWorker"],
    *,
    target: str,
    options: list,
    count: int,
    duration: float,
    concurrency: int,
    warmup: int,
) -> Series:
    """The per-trade series, on grpc.aio: ``concurrency`` callers as tasks on one event loop
    sharing one channel, the way a latency-sensitive Python caller would drive gRPC (a
    blocking call costs an extra thread hand-off on each side). Echo and the pricing calls
    go through exactly the same machinery, so their ratio is the server's own cost."""
    series = Series(name, concurrency=concurrency)

    async def main() -> None:
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            workers = [make_worker(channel) for _ in range(concurrency)]
            try:
                for w in workers:
                    await w.open()
                    for _ in range(warmup):
                        await w.call()
            except Exception as e:
                raise BenchError(f"{name}: warm-up failed: {_describe(e)}") from e
            tickets = itertools.count()
            start = time.perf_counter()
            deadline = start + duration

            async def run(w) -> None:
                while next(tickets) < count and time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    try:
                        sent, received = await w.call()
                    except Exception as e:
                        series.errors += 1
                        series.first_error = series.first_error or _describe(e)
                        continue
                    series.latencies.append(time.perf_counter() - t0)
                    series.bytes_sent += sent
                    series.bytes_received += received

            await asyncio.gather(*(run(w) for w in workers))
            series.wall_seconds = time.perf_counter() - start
            for w in workers:
                await w.close()

    asyncio.run(main())
    return series


class _AioWorker:
    async def open(self) -> None:
        pass

    async def call(self) -> tuple[int, int]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class _AioUnary(_AioWorker):
    def __init__(self, method, request, size: int, timeout: float, check: Callable | None = None) -> None:
        self.method, self.request, self.size, self.timeout, self.check = method, request, size, timeout, check

    async def call(self) -> tuple[int, int]:
        reply = await self.method(self.request, timeout=self.timeout)
        if self.check is not None:
            self.check(reply)
        return self.size, self.size


class _AioStream(_AioWorker):
    """One open stream; each call writes one message and awaits its reply."""

    def __init__(self, method, message, timeout: float, check: Callable | None = None) -> None:
        self.method, self.message, self.timeout, self.check = method, message, timeout, check
        self.size = len(message) if isinstance(message, bytes) else message.ByteSize()
        self.stream = None

    async def open(self) -> None:
        self.stream = self.method(timeout=self.timeout)

    async def call(self) -> tuple[int, int]:
        await self.stream.write(self.message)
        reply = await self.stream.read()
        if reply is grpc.aio.EOF:
            raise BenchError("the stream ended early")
        if self.check is not None:
            self.check(reply)
        return self.size, self.size

    async def close(self) -> None:
        if self.stream is None:
            return
        try:
            await asyncio.wait_for(self.stream.done_writing(), 2.0)
            while await asyncio.wait_for(self.stream.read(), 2.0) is not grpc.aio.EOF:
                pass
        except Exception:
            self.stream.cancel()


class BenchError(Exception):
    pass


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.RpcError):
        error = PricingError.from_rpc_error(error)
    return str(error)


# ---------------------------------------------------------------------------- workers
def alternate(makers: dict, *, count: int, duration: float, warmup: int, rows_per_call: int = 1) -> dict:
    """Series of one caller each, in turn on this one thread (as a risk engine's long-lived
    worker thread calls): ``warmup`` calls of each, then rounds of one call of each until
    ``count`` rounds are done or a series has taken ``duration`` seconds, so that host drift
    hits them alike. ``makers``: name -> worker factory; returns name -> Series.

    One thread for the whole run, not one per call: glibc gives a new thread's allocations
    an arena whose heap is not yet warm, so the 52 MB of a 1M-row batch's result arrays were
    faulted in and zeroed on every call (PriceBatch 10-12 ms slower per call than from a
    long-lived thread, 2-core VM; EchoBatch, which builds no result arrays, unchanged)."""
    series = {name: Series(name, concurrency=1, rows_per_call=rows_per_call) for name in makers}
    workers: dict = {}
    try:
        for name, make in makers.items():
            try:
                workers[name] = make()
                for _ in range(warmup):
                    workers[name].call()
            except Exception as e:
                raise BenchError(f"{name}: warm-up failed: {_describe(e)}") from e
        for _ in range(count):
            if any(one.wall_seconds >= duration for one in series.values()):
                break
            for name, worker in workers.items():
                one = series[name]
                t0 = time.perf_counter()
                try:
                    sent, received = worker.call()
                except Exception as e:
                    one.errors += 1
                    one.first_error = one.first_error or _describe(e)
                    one.wall_seconds += time.perf_counter() - t0
                    continue
                elapsed = time.perf_counter() - t0
                one.latencies.append(elapsed)
                one.wall_seconds += elapsed
                one.bytes_sent += sent
                one.bytes_received += received
    finally:
        for worker in workers.values():
            worker.close()
    return series


class _Unary(_Worker):
    def __init__(self, method, request, size: int, timeout: float) -> None:
        self.method, self.request, self.size, self.timeout = method, request, size, timeout

    def call(self) -> tuple[int, int]:
        self.method(self.request, timeout=self.timeout)
        return self.size, self.size


class _EchoUnary(_Worker):
    def __init__(self, method, payload: bytes, timeout: float) -> None:
        self.method, self.payload, self.timeout = method, payload, timeout

    def call(self) -> tuple[int, int]:
        reply = self.method(self.payload, timeout=self.timeout)
        if reply != self.payload:
            raise BenchError("Echo did not return the bytes it was sent")
        return len(self.payload), len(reply)


class _Stream(_Worker):
    """One open stream; each call writes one message and reads one reply."""

    def __init__(self, method, message, timeout: float, check: Callable | None = None) -> None:
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.message = message
        self.check = check
        self.size = len(message) if isinstance(message, bytes) else message.ByteSize()
        # The stream lives for the whole series; bound it so it can never hang.
        self.replies = method(iter(self.requests.get, None), timeout=timeout)

    def call(self) -> tuple[int, int]:
        self.requests.put(self.message)
        reply = next(self.replies)
        if self.check is not None:
            self.check(reply)
        return self.size, self.size

    def close(self) -> None:
        # Half-close and let the server end the stream; cancel only if it does not.
        self.requests.put(None)
        done = threading.Event()
        threading.Thread(target=lambda: (_drain(self.replies), done.set()), daemon=True).start()
        if not done.wait(2.0):
            self.replies.cancel()


def _drain(replies) -> None:
    try:
        for _ in replies:
            pass
    except grpc.RpcError:
        pass


def _check_price_reply(reply) -> None:
    if reply.HasField("error"):
        raise PricingError.from_error_message(reply.error)


def _check_price_bytes(reply: bytes) -> None:
    """A Price reply, read as the caller would: a price that is a number."""
    if not math.isfinite(pricing_pb2.PriceResponse.FromString(reply).price):
        raise BenchError("Price did not return a price")


def _check_price_stream_bytes(reply: bytes) -> None:
    """A PriceStream reply, read as the caller would: a result, not an error."""
    _check_price_reply(pricing_pb2.PriceStreamResponse.FromString(reply))


def _check_echo_reply(payload: bytes) -> Callable:
    def check(reply) -> None:
        if reply != payload:
            raise BenchError("EchoStream did not return the bytes it was sent")

    return check


# ---------------------------------------------------------------------------- the run
def per_trade_request(greeks: str) -> pricing_pb2.PriceRequest:
    return _convert.price_request(
        EuropeanOption(option_type="call", strike=100.0, expiry=0.5),
        Market(spot=100.0, rate=0.05, dividend_yield=0.01, volatility=0.2),
        model="bsm",
        measures=greeks,
    )


def batch_inputs(rows: int, seed: int) -> dict:
    """Random, valid BSM inputs, one value per row in every column (built before timing)."""
    rng = np.random.default_rng(seed)
    return dict(
        model="bsm",
        option_type=np.where(rng.random(rows) < 0.5, 1, 2).astype(np.int32),
        strike=rng.uniform(50.0, 150.0, rows),
        time_to_expiry=rng.uniform(0.05, 3.0, rows),
        spot=rng.uniform(80.0, 120.0, rows),
        rate=rng.uniform(0.0, 0.06, rows),
        dividend_yield=rng.uniform(0.0, 0.03, rows),
        volatility=rng.uniform(0.05, 0.6, rows),
        measures=BATCH_MEASURES,
        effective_inputs=False,
    )


def run(args, out=None) -> int:
    """Run ``pricegrid bench latency`` from parsed arguments; returns the exit status."""
    out = sys.stdout if out is None else out
    target = args.target or default_target()
    try:
        report = run_latency(
            target=target,
            count=args.count,
            duration=args.duration,
            concurrency=args.concurrency,
            warmup=args.warmup,
            rounds=args.rounds,
            greeks=args.greeks,
            batch_rows=args.batch_rows,
            batch_count=args.batch_count,
            batch_warmup=args.batch_warmup,
            max_in_flight=args.max_in_flight,
            chunk_rows=args.chunk_rows,
            modes=args.modes,
            timeout=args.timeout,
            seed=args.seed,
            echo=args.echo,
            echo_workers=args.workers,
            tune_malloc=args.tune_malloc,
            log=lambda text: print(text, file=sys.stderr, flush=True),
        )
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_report(report), file=out)
    if args.json_path is not None:
        args.json_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_path}", file=out)
    if args.png is not None:
        try:
            draw_histogram(report, args.png)
        except ImportError:
            print("error: --png needs matplotlib: pip install 'pricegrid[plot]'", file=sys.stderr)
            return 1
        print(f"wrote {args.png}", file=out)
    return 0


class BareEcho:
    """The bare grpcio echo server (``pricegrid.tools._bare_echo``; ``aio``: the grpc.aio
    one, on ``loop``: uvloop, as ``pricegrid serve`` by default, or asyncio) in a child process on 127.0.0.1: started here, stopped by :meth:`close` (it also
    stops when this process dies, its standard input then closing)."""

    def __init__(self, workers: int = 16, timeout: float = 30.0, *, aio: bool = False, loop: str = "uvloop") -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pricegrid.tools._bare_echo", "--workers", str(workers),
             *(["--aio", "--loop", loop] if aio else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = _readline(self.proc.stdout, timeout)
        if not line.startswith("port "):
            self.close()
            raise BenchError(f"the bare echo server did not start (said {line!r})")
        words = line.split()
        self.target = f"127.0.0.1:{int(words[1])}"
        self.loop = words[3] if len(words) > 3 else None  # the aio server's event loop (uvloop or asyncio)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait(10)


def _readline(stream, timeout: float) -> str:
    box: list = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0].strip() if box else ""


def run_latency(
    *,
    target: str,
    count: int = 2000,
    duration: float = 10.0,
    concurrency: int = 1,
    warmup: int = 100,
    rounds: int = 10,
    greeks: str = "delta,gamma,vega,theta,rho",
    batch_rows: int = 1_000_000,
    batch_count: int = 5,
    batch_warmup: int = 1,
    max_in_flight: int = 4,
    chunk_rows: int | None = None,
    modes: Sequence[str] = tuple(MODES),
    timeout: float = 30.0,
    seed: int = 7,
    echo: str = "bare",
    echo_workers: int = 16,
    tune_malloc: bool = False,
    log: Callable[[str], None] = lambda text: None,
) -> dict:
    """Measure the series of ``modes`` against ``target``; returns the report (JSON-ready).
    Latencies are kept in ``report["samples"]`` (seconds) for :func:`draw_histogram`.
    ``echo``: where the echo series go ('bare', 'server' or host:port, see the module)."""

    if tune_malloc:  # the same for the echo and the pricing series: fewer page faults on big replies
        _bare_echo.tune_malloc()  # large blocks from glibc's heap, as `pricegrid serve` does

    options = channel_options(RetryConfig(max_attempts=1), max_message_bytes=-1)
    bare = None
    if echo in ("bare", "bare-aio"):
        bare = BareEcho(echo_workers, aio=echo == "bare-aio")
        echo_target = bare.target
    else:
        echo_target = target if echo == "server" else echo
    channel = grpc.insecure_channel(target, options=options)
    echo_channel = grpc.insecure_channel(echo_target, options=options) if echo_target != target else channel
    results: dict[str, Series] = {}
    server: dict = {}
    try:
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        try:
            info = _convert.server_info(stub.ServerInfo(pricing_pb2.ServerInfoRequest(), timeout=timeout))
            server = {
                "version": info.version,
                "kernel_threads": info.kernel_threads,
                "cpu_target": info.build.get("cpu_target", ""),
                "max_message_bytes": info.limits.max_message_bytes,
                "max_rows": info.limits.max_rows,
            }
        except grpc.RpcError as e:
            raise BenchError(f"cannot reach {target}: {_describe(e)}") from None

        per_trade = dict(
            target=target, options=options, count=count, duration=duration, concurrency=concurrency, warmup=warmup
        )

        def echo_check(payload):
            def check(reply):
                if reply != payload:
                    raise BenchError("Echo did not return the bytes it was sent")
            return check

        def pair(first: tuple, second: tuple) -> None:
            """Baseline (on the echo target) and measured series in alternating rounds, so that
            the drift of a shared machine hits both alike; each round warms its own channel up."""
            n = max(1, min(rounds, count))
            for r in range(n):
                per_round = dict(per_trade, count=count // n + (1 if r < count % n else 0), duration=duration / n,
                                 warmup=warmup if r == 0 else max(1, warmup // 5))
                for (name, make), to in ((first, echo_target), (second, target)):
                    log(f"bench: {name} (round {r + 1}/{n})")
                    part = measure_async(name, make, **dict(per_round, target=to))
                    results.setdefault(name, Series(name, concurrency=concurrency)).absorb(part)

        if "price" in modes:
            request = per_trade_request(greeks)
            payload = request.SerializeToString()
            pair(
                ("Echo", lambda ch: _AioUnary(ch.unary_unary(ECHO, request_serializer=None, response_deserializer=None),
                                              payload, len(payload), timeout, echo_check(payload))),
                ("Price", lambda ch: _AioUnary(ch.unary_unary(PRICE, request_serializer=None, response_deserializer=None),
                                               payload, len(payload), timeout, _check_price_bytes)),
            )
        if "stream" in modes:
            message = pricing_pb2.PriceStreamRequest(correlation_id="1", price=per_trade_request(greeks))
            payload = message.SerializeToString()
            stream_timeout = duration + 2 * timeout + 60.0
            pair(
                ("EchoStream", lambda ch: _AioStream(
                    ch.stream_stream(ECHO_STREAM, request_serializer=None, response_deserializer=None),
                    payload, stream_timeout, _check_echo_reply(payload))),
                ("PriceStream", lambda ch: _AioStream(
                    ch.stream_stream(PRICE_STREAM, request_serializer=None, response_deserializer=None),
                    payload, stream_timeout, _check_price_stream_bytes)),
            )
        if "batch" in modes:
            with RiskClient(
                target=target,
                timeout=timeout,
                chunk_rows=chunk_rows,
                max_in_flight=max_in_flight,
                retries=RetryConfig(max_attempts=1),
            ) as risk:
                inputs = batch_inputs(batch_rows, seed)
                batch = risk.price_batch_requests(**inputs)
                payloads = dict(zip(batch.plan.ranges, batch.payloads))  # the bytes PriceBatch sends
                batch_echo = (risk.channel if echo_channel is channel else echo_channel).unary_unary(
                    ECHO, request_serializer=None, response_deserializer=None
                )

                class EchoBatch(_Worker):
                    def call(self) -> tuple[int, int]:
                        received = []
                        risk.run_chunks(
                            batch.plan,
                            lambda start, stop: payloads[(start, stop)],
                            batch_echo,
                            lambda start, stop, reply: received.append(len(reply)),
                            timeout=timeout,
                        )
                        return sum(len(p) for p in payloads.values()), sum(received)

                class PriceBatch(_Worker):
                    def call(self) -> tuple[int, int]:
                        result = risk.price_batch(**inputs)
                        if result.error_count:
                            raise BenchError(f"PriceBatch: {result.error_count} rows failed: {result.errors[:1]}")
                        return result.stats.bytes_sent, result.stats.bytes_received

                # one call of each at a time, alternating on one caller thread
                log(f"bench: EchoBatch / PriceBatch ({batch_rows} rows in {len(batch)} chunks), alternating")
                results.update(alternate({"EchoBatch": EchoBatch, "PriceBatch": PriceBatch}, count=batch_count,
                                         duration=duration, warmup=batch_warmup, rows_per_call=batch_rows))
                del payloads, batch, inputs
    finally:
        channel.close()
        if echo_channel is not channel:
            echo_channel.close()
        if bare is not None:
            bare.close()

    summaries = {name: s.summary() for name, s in results.items()}
    ratios = {}
    for label, num, den in RATIOS:
        a, b = summaries.get(num, {}).get("p50_s"), summaries.get(den, {}).get("p50_s")
        if a is not None and b:
            ratios[label] = a / b
    return {
        "tool": "pricegrid bench latency",
        "target": target,
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "count": count,
            "duration_s": duration,
            "concurrency": concurrency,
            "warmup": warmup,
            "greeks": greeks,
            "batch_rows": batch_rows,
            "batch_count": batch_count,
            "batch_measures": list(BATCH_MEASURES),
            "max_in_flight": max_in_flight,
            "modes": list(modes),
            "caller_malloc_tuned": tune_malloc,
        },
        "server": server,
        "echo": {"kind": echo if echo in ("bare", "bare-aio", "server") else "address", "target": echo_target,
                 "workers": echo_workers if echo == "bare" else None},
        "series": summaries,
        "ratios_p50": ratios,
        "samples": {name: s.latencies for name, s in results.items()},
    }


# ---------------------------------------------------------------------------- output
def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f}us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f}ms"
    return f"{seconds:.3f}s"


def format_report(report: dict) -> str:
    headers = ["series", "calls", "errors", "conc", "p50", "p90", "p99", "p99.9", "calls/s", "MB out/call", "MB in/call"]
    rows = []
    for name in SERIES:
        s = report["series"].get(name)
        if s is None:
            continue
        rows.append(
            [
                name,
                s["calls"],
                s["errors"],
                s["concurrency"],
                _duration(s["p50_s"]),
                _duration(s["p90_s"]),
                _duration(s["p99_s"]),
                _duration(s["p99.9_s"]),
                f"{s['calls_per_second']:.1f}",
                f"{s.get('bytes_sent_per_call', 0) / 1e6:.3f}" if s["rows_per_call"] > 1 else "",
                f"{s.get('bytes_received_per_call', 0) / 1e6:.3f}" if s["rows_per_call"] > 1 else "",
            ]
        )
    echo = report.get("echo", {})
    floor = {"bare": "a bare grpcio echo server (no interceptors) at",
             "bare-aio": "a bare grpc.aio echo server (no interceptors) at",
             "server": "the target's own EchoService at"}
    lines = [f"pricegrid bench latency against {report['target']}",
             f"echo series: {floor.get(echo.get('kind'), 'the echo server at')} {echo.get('target', report['target'])}",
             "", _format.table(headers, rows)]
    errors = [(n, s["first_error"]) for n, s in report["series"].items() if s.get("first_error")]
    for name, text in errors:
        lines.append(f"{name}: first error: {text}")
    if report["ratios_p50"]:
        lines += ["", _format.key_values([(f"{k} p50", f"{v:.2f}x") for k, v in report["ratios_p50"].items()])]
    return "\n".join(lines)


def draw_histogram(report: dict, path: Path) -> None:
    """Histograms of the latencies: per-trade series (microseconds) and batch series
    (milliseconds), log-spaced bins. Raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    samples = report["samples"]
    groups = [
        ("per trade", [n for n in ("Echo", "Price", "EchoStream", "PriceStream") if samples.get(n)], 1e6, "us"),
        ("batch", [n for n in ("EchoBatch", "PriceBatch") if samples.get(n)], 1e3, "ms"),
    ]
    groups = [g for g in groups if g[1]]
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(6.5 * max(1, len(groups)), 4.5), squeeze=False)
    for ax, (title, names, scale, unit) in zip(axes[0], groups):
        values = [np.asarray(samples[n]) * scale for n in names]
        lo = max(min(v.min() for v in values), 1e-9)
        hi = max(v.max() for v in values)
        bins = np.geomspace(lo, hi * 1.0001, 60) if hi > lo else 10
        for name, v in zip(names, values):
            p50, p99 = np.percentile(v, [50, 99])
            patches = ax.hist(v, bins=bins, histtype="step", linewidth=1.5,
                              label=f"{name}: p50 {p50:.3g}, p99 {p99:.3g} {unit} (n={len(v):,})")[2]
            color = patches[0].get_edgecolor()
            ax.axvline(p50, color=color, linestyle="--", linewidth=1.0)  # the median
            ax.axvline(p99, color=color, linestyle=":", linewidth=1.0)   # the 99th percentile
        ax.set_xscale("log")
        ax.set_xlabel(f"latency per call ({unit}, log scale)")
        ax.set_ylabel("calls per bin")
        ax.set_title(f"{title}: dashed p50, dotted p99")
        ax.legend(fontsize="small")
    if not groups:
        axes[0][0].text(0.5, 0.5, "no samples", ha="center", va="center")
    s = report["settings"]
    fig.suptitle(
        f"pricegrid latency, {report['target']}, concurrency {s['concurrency']}, batch {s['batch_rows']} rows",
        fontsize="medium",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pricegrid bench", description="Benchmarks against a running server, measured beside the floor of gRPC.")
    commands = parser.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    add_arguments(commands.add_parser(
        "latency", help="latency of Price, PriceStream, PriceBatch against a bare grpcio echo server",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
    ))
    _format.name_defaults(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``pricegrid bench latency ...`` (argv without the ``bench``); the exit status: 0 done,
    1 failed, 2 a usage error."""
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # argparse: --help exits 0, a usage error 2
        return int(e.code or 0)
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
