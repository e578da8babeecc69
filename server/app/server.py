"""Build, start and stop the gRPC server: pricing, echo, health, reflection, metrics.

``start(settings)`` returns a :class:`RunningServer` (used by ``pricegrid serve`` and by the
tests, which start real servers on 127.0.0.1 with an ephemeral port). ``serve(settings)``
runs until SIGTERM/SIGINT, then drains: health goes NOT_SERVING, new calls are refused,
in-flight calls get ``grace_s`` to finish, and the process exits 0.

Threading: the server is a ``grpc.aio`` server on one asyncio event loop, in a thread of its
own. Handlers are coroutines; an open stream waiting for its next message holds no thread.
Work of microseconds runs inline on the loop (the lean Price path, stream messages of the
same shape, ServerInfo, health, reflection, Echo); everything else runs in a thread pool of
its capacity class behind that class's gate (pricegrid.server.rpc.admission):

    front office   Price (off the lean path), ImpliedVolatility,   front pool, front_workers
                   PriceStream messages (off the lean path)
    batch          PriceBatch, ImpliedVolatilityBatch              batch pool, batch_workers
    market data    MarketDataService, RiskService.Backtest         batch pool, market_workers
                   (each Backtest message; an open stream holds none)

The kernels release the GIL, so a batch computing in the batch pool leaves the loop (and the
front office) free. The health service runs on the loop behind no gate: it is never queued
behind pricing work.
"""

from __future__ import annotations

import asyncio
import ctypes
import datetime as dt
import gc
import os
import platform
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from importlib import metadata

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from pricegrid.ext import BUILD_INFO, black
from pricegrid.server.app import cpu, demo, logs, security
from pricegrid.server.app.memory import MallocTrimmer
from pricegrid.server.app.settings import Settings
from pricegrid.server.domain.errors import ServiceError
from pricegrid.server.domain.models import IMPLIED_VOL_REFS
from pricegrid.server.pricers import catalogue as pricers
from pricegrid.server.rpc import market as market_rpc
from pricegrid.server.rpc import risk as risk_rpc
from pricegrid.server.rpc.admission import Gate, Lane, Lanes, StreamGate
from pricegrid.server.rpc.auth import Authorizer
from pricegrid.server.rpc.interceptors import ReflectionGate
from pricegrid.server.rpc.observe import Metrics, RpcObserver
from pricegrid.server.rpc import tracing as tracing_rpc
from pricegrid.server.rpc.servicers import ECHO_SERVICE, SERVICE, PricingServicer, handlers
from pricegrid.server.service.backtest import BacktestLimits
from pricegrid.server.service.market import MarketDataService, MarketSettings
from pricegrid.server.service.pricing import Limits, PricingService
from pricegrid.server.service.ticking import HeldBytes
from pricegrid.server.store import describe as describe_store
from pricegrid.server.store import open_store
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import pricing_pb2 as pb

log = structlog.get_logger("pricegrid.server")


def build_labels() -> dict:
    """The labels of ``pricegrid_build_info``: the version and how the kernels were compiled."""
    b = BUILD_INFO
    return {
        "version": _version("pricegrid"), "python": platform.python_version(), "compiler": b.get("compiler", ""),
        "compile_args": " ".join(b.get("compile_args", [])), "cpu_target": b.get("cpu_target", ""),
        "openmp": str(bool(b.get("openmp", False))).lower(), "debug": str(bool(b.get("debug", False))).lower(),
        "cython_version": b.get("cython_version", ""), "built_at": b.get("built_at", ""),
    }


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def server_info(settings: Settings, kernel_threads: int, started_at: str) -> pb.ServerInfoResponse:
    b = BUILD_INFO
    info = pb.ServerInfoResponse(
        version=_version("pricegrid"),
        build=pb.BuildInfo(
            compiler=b.get("compiler", ""),
            compile_args=b.get("compile_args", []),
            link_args=b.get("link_args", []),
            cpu_target=b.get("cpu_target", ""),
            debug=b.get("debug", False),
            openmp=b.get("openmp", False),
            cython_version=b.get("cython_version", ""),
            numpy_version=b.get("numpy_version", ""),
            built_at=b.get("built_at", ""),
        ),
        kernel_threads=kernel_threads,
        limits=pb.Limits(
            max_message_bytes=settings.max_message_bytes,
            max_rows=settings.max_rows,
            default_deadline_seconds=settings.default_deadline_s,
            parallel_threshold_rows=black.PARALLEL_THRESHOLD,
            chunk_rows=settings.chunk_rows,
            max_stream_trades=settings.max_stream_trades,
            max_trade_message_bytes=settings.max_trade_message_bytes,
            max_stream_message_bytes=settings.max_stream_message_bytes,
            max_cost_unary_seconds=settings.max_cost_unary_s,
            max_cost_batch_seconds=settings.max_cost_batch_s,
        ),
        versions={
            "python": platform.python_version(),
            **{d: _version(d) for d in ("grpcio", "protobuf", "numpy", "scipy", "structlog", "prometheus-client")},
        },
        started_at=started_at,
    )
    for spec in pricers.CATALOGUE:
        info.models.add(
            ref=cpb.ModelRef(model=spec.ref.model, engine=spec.ref.engine, version=spec.ref.version),
            model=int(spec.model),
            instruments=[spec.product],
            measures=[int(m) for m in spec.measures],
            validated_against=spec.validated_against,
            engine=int(spec.engine),
            methods=[int(spec.methods[m]) for m in spec.measures],
            default_engine=spec.default,
        )
    for model, ref in IMPLIED_VOL_REFS.items():
        info.models.add(
            ref=cpb.ModelRef(model=ref.model, engine=ref.engine, version=ref.version),
            model=int(model),
            instruments=["european"],
            validated_against="round trips and QuantLib implied vol; tests/ext/test_implied_vol_kernel.py",
        )
    return info


@dataclass
class RunningServer:
    settings: Settings
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    observer: RpcObserver
    metrics_port: int | None
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    lanes: Lanes
    streams: StreamGate
    pools: tuple = ()
    _metrics_http: object = None
    store: object = None
    certificates: object = None  # security.CertificateReloader when TLS is on
    tracer_provider: object = None  # the OpenTelemetry TracerProvider when tracing is on
    _drained: threading.Event | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return grpc_address(self.settings.host, self.port)

    def call_soon(self, coro) -> "futures.Future":
        """Run a coroutine on the server's loop (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def drain(self, grace: float | None = None) -> threading.Event:
        """NOT_SERVING, refuse new calls from now on; the event is set once in-flight calls
        finished or ``grace`` seconds passed (then they are cancelled)."""
        if self._drained is not None:
            return self._drained
        grace = self.settings.grace_s if grace is None else grace
        self._drained = drained = threading.Event()

        refusing = threading.Event()

        async def go():
            try:
                await self.health.enter_graceful_shutdown()
                stopping = asyncio.ensure_future(self.server.stop(grace))
                await asyncio.sleep(0)  # stop() has shut the listener before its first await
            finally:
                refusing.set()
            await stopping

        self.call_soon(go()).add_done_callback(lambda _: drained.set())
        # return once new calls are refused, so that whoever logs "draining" after this
        # tells the truth (a call arriving between the two would otherwise be served)
        refusing.wait(10)
        return drained

    def stop(self, grace: float | None = None) -> None:
        """Drain, wait for it, then stop the loop, the pools, the log writer and the metrics
        endpoint."""
        self.drain(grace).wait()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        for pool in self.pools:  # work a cancelled call left behind stops at its next check
            pool.shutdown(wait=False, cancel_futures=True)
        self.observer.close()
        if self.tracer_provider is not None:  # the spans still batched go out now
            self.tracer_provider.shutdown()
        if self.store is not None:
            self.store.close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()


def tune_malloc() -> bool:
    """Keep large freed blocks in glibc's heap instead of returning them to the OS.

    Batches allocate and free multi-megabyte arrays and replies on every chunk; by default
    glibc serves those with fresh mmap()s, and the page faults of touching them cost more
    than the copies themselves (1M rows through PriceBatch: ~20% of the wall time here).
    Raising the mmap and trim thresholds makes them reuse heap memory. Linux/glibc only;
    elsewhere, or when PRICEGRID_MALLOC_TUNING=0, nothing changes."""
    if os.environ.get("PRICEGRID_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 256 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def single_threaded_blas() -> bool:
    """numpy's BLAS (OpenBLAS) on one thread in this process.

    The server computes in its own thread pools and the kernels' OpenMP threads; OpenBLAS's
    own threads (one per core, spinning after each call) then only compete with them: a
    scenario run's small matrix products took the 10M-row run from 0.20 to 0.47 s and
    slowed the kernel beside it by 40% (bench/test_bench_scenarios.py). threadpoolctl
    sets the limit at run time (the environment variable only counts before numpy loads).
    PRICEGRID_BLAS_THREADS=0 leaves BLAS as it is."""
    if os.environ.get("PRICEGRID_BLAS_THREADS", "1") == "0":
        return False
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    return True


#: HTTP/2 streams per connection beyond --max-connection-streams, for unary calls: 100, the
#: least SETTINGS_MAX_CONCURRENT_STREAMS RFC 9113 (6.5.2) recommends; unary calls beyond the
#: capacity classes' slots and queues are refused at once anyway, so more buys nothing
UNARY_STREAM_MARGIN = 100


def receive_limit(settings: Settings) -> int:
    """gRPC core's limit on a received message: ``max_message_bytes`` and an eighth more (at
    least 1 MiB). Between the two the handler's own check refuses the request (its log line,
    its metric, a negative pushback); beyond, gRPC refuses it unseen by the server, which is
    the bound on what one request may make it read or inflate (1.125 x max_message_bytes)."""
    return settings.max_message_bytes + max(1 << 20, settings.max_message_bytes // 8)


def server_options(settings: Settings) -> list[tuple[str, object]]:
    """The gRPC core options: message sizes, streams per connection, keepalive, connection age."""
    options = [
        # the largest message of any method, decompressed, plus a margin (gRPC refuses a
        # compressed message that inflates past it while inflating); each method's own limit
        # is checked by its handler before parsing (max_trade_message_bytes for the per-trade
        # calls, max_message_bytes for batches and market data), so that a request a little
        # over it is refused there, logged, counted and told not to retry
        ("grpc.max_receive_message_length", receive_limit(settings)),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),
        # streams per connection are capped by the server (StreamGate: RESOURCE_EXHAUSTED at
        # max_connection_streams); HTTP/2's limit leaves UNARY_STREAM_MARGIN more, so that a
        # screen holding all its streams can still call Price on the same channel (past
        # HTTP/2's limit the client queues calls, unseen by the server, until their deadline)
        ("grpc.max_concurrent_streams", settings.max_connection_streams + UNARY_STREAM_MARGIN),
        # our clients ping every 30 s while a call is open (pricegrid.clients._config): allow
        # pings that often on a connection with no data, so an idle stream lives for hours
        ("grpc.http2.min_ping_interval_without_data_ms", int(settings.keepalive_min_ping_s * 1000)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.keepalive_permit_without_calls", 1),
        # and find dead peers (a trading screen that lost its network holds a stream)
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]
    if settings.max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_s * 1000)),
        ]
    return options


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """The server's event loop (``Settings.event_loop``): uvloop's, on libuv, whose callbacks
    and I/O cost less per call than asyncio's own (grpc.aio's server runs each call through a
    dozen loop iterations); asyncio's own when asked, or when uvloop is not installed (said in
    the log: the server then serves, a little slower)."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("event_loop", asked="uvloop", using="asyncio", reason="uvloop is not installed")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


#: Scheduling priority of the pools' threads (Linux nice values, per thread; the event loop
#: keeps the process's own): when the cores are busy, the loop (which admits and refuses
#: calls, prices the lean path and answers health) runs first, front-office work before
#: batches. A kernel's OpenMP threads inherit the nice value of the thread that starts them.
FRONT_NICE = 5
BATCH_NICE = 10


def _lower_priority(nice: int):
    def initializer() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)
        except (AttributeError, OSError):  # not Linux, or not allowed: equal priority
            pass

    return initializer


def capacity(settings: Settings) -> tuple[Lanes, StreamGate, tuple]:
    """The capacity classes (lanes), the server's stream cap and the thread pools behind them."""
    front_pool = futures.ThreadPoolExecutor(settings.front_workers, thread_name_prefix="pricegrid-front",
                                            initializer=_lower_priority(FRONT_NICE))
    batch_pool = futures.ThreadPoolExecutor(settings.batch_workers + settings.market_workers,
                                            thread_name_prefix="pricegrid-batch", initializer=_lower_priority(BATCH_NICE))
    trade, large, deadline = settings.max_trade_message_bytes, settings.max_message_bytes, settings.default_deadline_s
    front = Gate("front-office", settings.front_workers, queue=settings.queue, max_wait_s=settings.queue_wait_ms / 1e3)
    lanes = Lanes(
        front=Lane("front-office", front, front_pool, trade, deadline),
        stream=Lane("front-office", front, front_pool, settings.max_stream_message_bytes, deadline),
        inline=Lane("inline", None, None, trade, deadline),
        # batches and market data wait for a slot up to their deadline, in a queue of bounded length
        batch=Lane("batch", Gate("batch", settings.batch_workers, queue=settings.queue, max_wait_s=None,
                                 min_pushback_ms=100), batch_pool, large, deadline, enforce_deadline=False),
        market=Lane("market-data", Gate("market-data", settings.market_workers, queue=settings.queue,
                                        max_wait_s=None, min_pushback_ms=10), batch_pool, large, deadline),
        echo=Lane("echo", None, None, large, deadline),
    )
    streams = StreamGate("streams", settings.max_streams, per_connection=settings.max_connection_streams)
    return lanes, streams, (front_pool, batch_pool)


class StartError(Exception):
    """The server cannot start for a reason its operator can fix (a busy port, the store)."""


class ConfigError(StartError):
    """The server must not start with this configuration (plaintext off loopback, a broken
    auth policy, certificate files that do not parse): ``pricegrid serve`` exits 2, as for a
    bad setting."""


def configured(settings: Settings, on_deny=None) -> tuple:
    """The security configuration, checked before anything is opened or bound: (Authorizer
    or None, CertificateReloader or None); raises ConfigError with the reason."""
    problem = security.check_plaintext(settings.host, bool(settings.tls_cert), settings.allow_plaintext)
    if problem:
        raise ConfigError(problem)
    try:
        auth = Authorizer(security.load_policy(settings.auth_policy), on_deny=on_deny) \
            if settings.auth_policy else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        certificates = (security.CertificateReloader(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
                        if settings.tls_cert else None)
    except ValueError as exc:
        raise ConfigError(f"TLS: {exc}") from None
    return auth, certificates


def grpc_address(host: str, port: int) -> str:
    """host:port as gRPC takes it: an IPv6 literal in brackets (``::1`` or ``[::1]``)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def start_metrics(settings: Settings, registry):
    """The Prometheus endpoint on ``metrics_host`` (loopback unless set), or None when off;
    raises StartError when it cannot bind."""
    if settings.metrics_port < 0:
        return None
    host = settings.metrics_host.strip("[]")
    try:
        server, _thread = start_http_server(settings.metrics_port, addr=host, registry=registry)
    except OSError as exc:  # a busy port, a name that does not resolve (socket.gaierror)
        raise StartError(f"cannot serve metrics on {grpc_address(host, settings.metrics_port)}: "
                         f"{exc.strerror or exc}") from None
    return server


def start(settings: Settings, *, span_exporter=None) -> RunningServer:
    """Start a server with ``settings``; ``span_exporter`` (an OpenTelemetry SpanExporter, the
    tests' in-memory one) turns tracing on and receives every span as it ends, besides the
    OTLP collector of ``settings.otlp_endpoint`` if set."""
    from pricegrid.ext import BUILD_INFO

    problem = cpu.check(BUILD_INFO)
    if problem is not None:
        raise StartError(problem)
    malloc_tuned = tune_malloc()
    single_threaded_blas()
    kernel_threads = max(1, min(settings.kernel_threads, black.max_threads()))
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    registry = CollectorRegistry()
    metrics = Metrics(registry, build_labels())
    for spec in pricers.CATALOGUE:
        metrics.models.labels(spec.ref.model, spec.ref.engine, spec.ref.version).set(1)
    for ref in IMPLIED_VOL_REFS.values():
        metrics.models.labels(ref.model, ref.engine, ref.version).set(1)
    tracing = provider = None
    if settings.otlp_endpoint or span_exporter is not None:
        try:
            tracing, provider = tracing_rpc.build(endpoint=settings.otlp_endpoint,
                                                  sample_ratio=settings.trace_sample_ratio, exporter=span_exporter,
                                                  version=_version("pricegrid"))
        except ValueError as exc:  # the OTLP exporter is not installed
            raise StartError(str(exc)) from None
    try:
        auth, certificates = configured(settings, on_deny=metrics.count_denied)
    except ConfigError:
        if provider is not None:
            provider.shutdown()
        raise
    observer = RpcObserver(metrics, batched=logs.batched)
    info = server_info(settings, kernel_threads, started_at)
    try:
        store = open_store(settings.store_path)
    except Exception as exc:  # an unreachable database, a file that cannot be created, a newer schema
        observer.close()
        if provider is not None:
            provider.shutdown()
        cause = exc.__cause__ if isinstance(exc, ServiceError) and exc.__cause__ is not None else exc
        raise StartError(f"cannot open the store {describe_store(settings.store_path)}: "
                         f"{type(cause).__name__}: {cause}") from exc
    market = MarketDataService(store, MarketSettings(max_age=dt.timedelta(seconds=settings.snapshot_max_age_s)))
    service = PricingService(
        Limits(max_rows=settings.max_rows, chunk_rows=settings.chunk_rows, kernel_threads=kernel_threads,
               max_cost_unary_s=settings.max_cost_unary_s, max_cost_batch_s=settings.max_cost_batch_s),
        snapshots=market.snapshot,
        large_calls=MallocTrimmer(),  # memory back to the OS once large batches are over
    )
    # the built-in synthetic snapshot, once (forced: a wrong clock must not stop the server)
    demo_record, _ = market.put(demo.snapshot(), force=True, reason="built-in synthetic demo snapshot")
    lanes, streams, pools = capacity(settings)
    backtest_limits = BacktestLimits(max_observations=settings.max_backtest_observations,
                                     max_message_observations=settings.max_backtest_message_observations)
    metrics.watch_capacity(lanes, streams)
    servicer = PricingServicer(
        service,
        default_deadline_s=settings.default_deadline_s,
        max_stream_trades=settings.max_stream_trades,
        max_stream_bytes=settings.max_stream_held_bytes,
        held=HeldBytes(settings.max_held_bytes),
        info=lambda: info,
        stream_lane=lanes.stream,
        sees_details=(lambda principal: True) if auth is None else auth.sees_details,
        priced=metrics.priced,
    )
    loop = new_event_loop(settings.event_loop)
    thread = threading.Thread(target=loop.run_forever, name="pricegrid-loop", daemon=True)
    thread.start()

    async def build():
        server = grpc.aio.server(
            handlers=handlers(servicer, observer, lanes, streams=streams, echo=settings.echo, auth=auth,
                              tracing=tracing)
            + market_rpc.handlers(market_rpc.MarketDataServicer(market), observer, lanes.market, auth=auth,
                                  tracing=tracing)
            + risk_rpc.handlers(risk_rpc.RiskServicer(backtest_limits, lanes.market, pricing=service,
                                                      batch_lane=lanes.batch,
                                                      max_scenario_cells=settings.max_scenario_cells,
                                                      default_deadline_s=settings.max_cost_batch_s,
                                                      portfolios=store, market=market),
                                observer, streams=streams, auth=auth, tracing=tracing),
            options=server_options(settings),
            interceptors=[ReflectionGate(auth)] if auth is not None else None,
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = [SERVICE, market_rpc.SERVICE, risk_rpc.SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]
        if settings.echo:
            names.append(ECHO_SERVICE)
        reflection.enable_server_reflection(names, server)
        address = grpc_address(settings.host, settings.port)
        try:
            port = (server.add_secure_port(address, certificates.credentials()) if certificates is not None
                    else server.add_insecure_port(address))
        except RuntimeError:  # grpc: "Failed to bind to address ..."
            port = 0
        if port == 0:
            raise StartError(f"cannot listen on {address}: the port is in use or the address is not this "
                             "machine's (GRPC_VERBOSITY=debug tells why)")
        await server.start()
        for name in ("", SERVICE, market_rpc.SERVICE, risk_rpc.SERVICE):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        return server, port, health_servicer

    metrics_http = None
    try:
        metrics_http = start_metrics(settings, registry)
        server, port, health_servicer = asyncio.run_coroutine_threadsafe(build(), loop).result(60)
    except BaseException:
        if metrics_http is not None:
            metrics_http.shutdown()
            metrics_http.server_close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        for pool in pools:
            pool.shutdown(wait=False)
        observer.close()
        store.close()
        if provider is not None:
            provider.shutdown()
        raise
    metrics_port = metrics_http.server_port if metrics_http is not None else None
    log.info(
        "started",
        address=grpc_address(settings.host, port),
        port=port,
        metrics=grpc_address(settings.metrics_host.strip("[]"), metrics_port) if metrics_port else None,
        metrics_port=metrics_port,
        tracing=settings.otlp_endpoint or ("in-process exporter" if span_exporter is not None else "off"),
        kernel_threads=kernel_threads,
        malloc_tuned=malloc_tuned,
        store=describe_store(settings.store_path),
        demo_snapshot=demo_record.snapshot_id,
        store_schema=store.schema_version,
        build=dict(BUILD_INFO),
        settings=settings.as_dict(),
        version=info.version,
    )
    return RunningServer(settings, server, port, health_servicer, observer, metrics_port, loop, thread, lanes,
                         streams, pools, metrics_http, store, certificates, provider)


def freeze_startup_heap() -> int:
    """Move what the process built to start (modules, catalogues, the demo snapshot, gRPC's
    handlers: about 90,000 objects) out of the cyclic collector's reach (gc.freeze); returns
    how many. A full collection scanned them all, holding the GIL on the event loop or
    wherever it struck: 30-40 ms about every 10 s under overload (measured with gc.callbacks),
    which set the p99 of refusals and front-office calls; now it scans only what was made
    since (about 1 ms). Startup garbage is collected first."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then drain and return 0."""
    # The handlers only append to a list (one atomic step): Python runs a handler between two
    # bytecodes of the main thread, which may hold a lock the handler would take. A SIGHUP
    # handler that logged deadlocked on the log writer's lock (a SIGHUP sent on seeing the
    # started line left the main thread stuck for good, about one start in eight), and one
    # that set an Event could on the Event's own lock, taken by the main loop's wait. The
    # main loop below acts on them.
    hangups: list = []
    received: list = []

    def on_hangup(_signum, _frame):
        hangups.append(1)

    def on_signal(signum, _frame):
        received.append(signal.Signals(signum).name)

    # before start: a SIGHUP once the port is bound (a rotation racing a restart) must not
    # end the process, which is SIGHUP's default; it is acted on once the server runs
    signal.signal(signal.SIGHUP, on_hangup)
    running = start(settings)
    log.info("heap_frozen", objects=freeze_startup_heap())
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Wake often: the kernel may deliver SIGTERM to any thread (a kernel's, gRPC's), and Python
    # runs its handler only when the main thread next runs bytecode; a wait without timeout
    # would then sleep through the signal (seen: 1 shutdown in 8 hung with a batch in flight).
    while not received:
        time.sleep(0.1)
        if hangups:  # new certificate files, checked now, served from the next handshake
            hangups.clear()
            log.info("sighup", tls=running.certificates is not None)
            if running.certificates is not None:
                running.certificates.request_reload()  # logs tls_reloaded or tls_reload_failed
    running.drain()
    log.info("draining", signal=received[0] if received else "", grace_s=settings.grace_s)
    running.stop()  # waits for `drained`
    log.info("stopped")
    return 0
