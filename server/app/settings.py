"""Settings: defaults, overridden by PRICEGRID_* environment variables, overridden by flags.

    setting               env                          default
    host                  PRICEGRID_HOST               127.0.0.1 (the Dockerfile sets 0.0.0.0)
    port                  PRICEGRID_PORT               50051 (0 picks a free port)
    kernel_threads        PRICEGRID_KERNEL_THREADS     cores (OpenMP threads per batch, at most)

  capacity classes (RESOURCE_EXHAUSTED with a grpc-retry-pushback-ms trailer beyond them):
    front_workers         PRICEGRID_FRONT_WORKERS      cores - 1, at least 1: front-office calls computed at
                                                       once off the event loop (Price off the lean path,
                                                       ImpliedVolatility, PriceStream messages); one core
                                                       is left to the event loop
    batch_workers         PRICEGRID_BATCH_WORKERS      2     batch calls computed at once (PriceBatch,
                                                       ImpliedVolatilityBatch; each uses kernel_threads)
    market_workers        PRICEGRID_MARKET_WORKERS     2     market-data calls at once (store, validation)
    queue                 PRICEGRID_QUEUE              16    calls of a class that may wait for a slot
    queue_wait_ms         PRICEGRID_QUEUE_WAIT_MS      5     longest wait of a front-office call for a slot (none
                                                       for 100 ms after a refusal: the queue is for bursts);
                                                       batch and market-data calls wait up to their deadline
    max_streams           PRICEGRID_MAX_STREAMS        2000  streams open at once on the server
    max_connection_streams PRICEGRID_MAX_CONNECTION_STREAMS 256  streams open at once on one connection (HTTP/2
                                                       allows 100 more, for unary calls beside them)

  sizes and time:
    max_message_bytes     PRICEGRID_MAX_MESSAGE_BYTES  134217728 (128 MiB): batches and market data, checked
                                                       by the server; gRPC reads (and inflates) at most
                                                       an eighth more (server.receive_limit)
    max_trade_message_bytes PRICEGRID_MAX_TRADE_MESSAGE_BYTES 65536: Price, ImpliedVolatility, ServerInfo
    max_stream_message_bytes PRICEGRID_MAX_STREAM_MESSAGE_BYTES 1048576: each PriceStream message (a market
                                                       update may name every trade the stream holds)
    max_rows              PRICEGRID_MAX_ROWS           1000000 rows per batch request
    chunk_rows            PRICEGRID_CHUNK_ROWS         262144 rows between cancellation checks
    default_deadline_s    PRICEGRID_DEFAULT_DEADLINE   30    deadline of a unary call whose caller set none
    max_cost_unary_s      PRICEGRID_MAX_COST_UNARY     2     estimated cost one trade may ask (Price, a PriceStream
                                                       trade), in core-seconds (pricegrid.server.domain.cost);
                                                       more -> RESOURCE_EXHAUSTED naming the setting
    max_cost_batch_s      PRICEGRID_MAX_COST_BATCH     300   the same for one batch request
    grace_s               PRICEGRID_GRACE              10    seconds in-flight calls get on SIGTERM
    max_stream_trades     PRICEGRID_MAX_STREAM_TRADES  10000 trades held per PriceStream
    max_stream_held_bytes PRICEGRID_MAX_STREAM_HELD_BYTES 67108864 (64 MiB): the arrays of the trades one
                                                       PriceStream holds (fixing schedules are the large part)
    max_held_bytes        PRICEGRID_MAX_HELD_BYTES     1073741824 (1 GiB): the same for all streams together
    max_backtest_observations PRICEGRID_MAX_BACKTEST_OBSERVATIONS 1000000: observations per Backtest stream
    max_backtest_message_observations PRICEGRID_MAX_BACKTEST_MESSAGE_OBSERVATIONS 100000: per Backtest message
    max_scenario_cells    PRICEGRID_MAX_SCENARIO_CELLS 50000000: trades x scenarios one RunScenarioRisk may ask
                                                       (more: RESOURCE_EXHAUSTED, the stream ends)

  connections (our clients ping every 30 s while a call is open):
    keepalive_min_ping_s  PRICEGRID_KEEPALIVE_MIN_PING 10    shortest interval between a client's pings the
                                                       server tolerates (more often: GOAWAY too_many_pings)
    keepalive_time_s      PRICEGRID_KEEPALIVE_TIME     300   the server pings an idle connection this often
                                                       (and drops it if no answer comes in 20 s)
    max_connection_age_s  PRICEGRID_MAX_CONNECTION_AGE 0     GOAWAY a connection this old, so that clients
                                                       rebalance (0: never)
    max_connection_age_grace_s PRICEGRID_MAX_CONNECTION_AGE_GRACE 300: the calls still open then get this long

    tls_cert              PRICEGRID_TLS_CERT           ""    PEM certificate (chain) of the server: TLS on
    tls_key               PRICEGRID_TLS_KEY            ""    its PEM private key
    tls_client_ca         PRICEGRID_TLS_CLIENT_CA      ""    PEM CA bundle: mutual TLS, every client must
                                                       present a certificate it signed (files read
                                                       again on SIGHUP)
    allow_plaintext       PRICEGRID_ALLOW_PLAINTEXT    false plaintext on a non-loopback address (behind a
                                                       proxy that terminates TLS); loopback always may
    auth_policy           PRICEGRID_AUTH_POLICY        ""    TOML file of roles, JWT keys and mTLS identities
                                                       (pricegrid.server.app.security); "": no auth
    metrics_port          PRICEGRID_METRICS_PORT       9464  Prometheus endpoint (0: any free port, -1: off)
    metrics_host          PRICEGRID_METRICS_HOST       127.0.0.1 the address it listens on: plaintext HTTP, and
                                                       it shows how the server is built, so loopback unless
                                                       a deployment exposes it on purpose (the Dockerfile
                                                       sets 0.0.0.0 for Prometheus to scrape the pod)
    otlp_endpoint         PRICEGRID_OTLP_ENDPOINT      ""    OpenTelemetry tracing: spans batched to this OTLP/gRPC
                                                       collector (http://host:4317 plaintext, https:// TLS;
                                                       needs the otlp extra); "": tracing off, no spans made
    trace_sample_ratio    PRICEGRID_TRACE_SAMPLE_RATIO 1.0   share of new traces kept (a caller's sampled flag
                                                       in traceparent is followed)
    event_loop            PRICEGRID_EVENT_LOOP         uvloop the server's asyncio event loop: uvloop (libuv, ~25 us
                                                       less per unary call than asyncio's own here) or
                                                       asyncio; without uvloop installed: asyncio, said in
                                                       the log
    echo                  PRICEGRID_ECHO               false serve pricegrid.v1.EchoService (benchmarks;
                                                       metered and logged like any method)
    store                 PRICEGRID_STORE              where snapshots, portfolios and scenario sets live: a
                                                       SQLite file (default: $XDG_DATA_HOME or ~/.local/share,
                                                       /pricegrid/pricegrid.db; ":memory:" keeps nothing across
                                                       restarts), or a postgresql:// URL that replicas share
    snapshot_max_age_s    PRICEGRID_SNAPSHOT_MAX_AGE   604800 (7 days): older as-of times are flagged stale
    log_level             PRICEGRID_LOG_LEVEL          info
    log_format            PRICEGRID_LOG_FORMAT         json  (or console)

Also read at start-up: PRICEGRID_MALLOC_TUNING=0 leaves glibc's malloc thresholds alone
(see pricegrid.server.app.server.tune_malloc); OMP_* variables tune the kernels' OpenMP.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 50051
    kernel_threads: int = os.cpu_count() or 1
    front_workers: int = max(1, (os.cpu_count() or 2) - 1)
    batch_workers: int = 2
    market_workers: int = 2
    queue: int = 16
    queue_wait_ms: float = 5.0
    max_streams: int = 2000
    max_connection_streams: int = 256
    max_message_bytes: int = 128 * 1024 * 1024
    max_trade_message_bytes: int = 64 * 1024
    max_stream_message_bytes: int = 1024 * 1024
    max_rows: int = 1_000_000
    chunk_rows: int = 262_144
    default_deadline_s: float = 30.0
    max_cost_unary_s: float = 2.0
    max_cost_batch_s: float = 300.0
    grace_s: float = 10.0
    max_stream_trades: int = 10_000
    max_stream_held_bytes: int = 64 * 1024 * 1024
    max_held_bytes: int = 1024 * 1024 * 1024
    max_backtest_observations: int = 1_000_000
    max_backtest_message_observations: int = 100_000
    max_scenario_cells: int = 50_000_000
    keepalive_min_ping_s: float = 10.0
    keepalive_time_s: float = 300.0
    max_connection_age_s: float = 0.0
    max_connection_age_grace_s: float = 300.0
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    allow_plaintext: bool = False
    auth_policy: str = ""
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    otlp_endpoint: str = ""
    trace_sample_ratio: float = 1.0
    event_loop: str = "uvloop"
    echo: bool = False
    store: str = ""
    snapshot_max_age_s: float = 7 * 86400.0
    log_level: str = "info"
    log_format: str = "json"

    def __post_init__(self):
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port {self.port} is not in 0..65535")
        for name in ("kernel_threads", "front_workers", "batch_workers", "market_workers", "max_streams",
                     "max_connection_streams", "max_message_bytes", "max_trade_message_bytes",
                     "max_stream_message_bytes", "max_rows",
                     "chunk_rows", "max_stream_trades", "max_stream_held_bytes", "max_held_bytes",
                     "max_backtest_observations",
                     "max_backtest_message_observations", "max_scenario_cells"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.queue < 0 or self.queue_wait_ms < 0:
            problems.append("queue and queue_wait_ms must be >= 0")
        if self.keepalive_min_ping_s <= 0 or self.keepalive_time_s <= 0:
            problems.append("keepalive_min_ping_s and keepalive_time_s must be > 0")
        if self.max_connection_age_s < 0 or self.max_connection_age_grace_s < 0:
            problems.append("max_connection_age_s and max_connection_age_grace_s must be >= 0 (0: no limit)")
        if self.snapshot_max_age_s <= 0:
            problems.append("snapshot_max_age_s must be > 0")
        if self.default_deadline_s <= 0 or self.grace_s < 0:
            problems.append("default_deadline_s must be > 0 and grace_s >= 0")
        if not (self.max_cost_unary_s > 0 and self.max_cost_batch_s > 0):
            problems.append("max_cost_unary_s and max_cost_batch_s must be > 0")
        if not 0.0 <= self.trace_sample_ratio <= 1.0:
            problems.append("trace_sample_ratio must be in [0, 1]")
        if self.event_loop not in ("uvloop", "asyncio"):
            problems.append("event_loop must be uvloop or asyncio")
        if self.log_format not in ("json", "console"):
            problems.append("log_format must be json or console")
        if not self.metrics_host.strip("[]"):
            problems.append("metrics_host must name an address (127.0.0.1 for loopback only)")
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append("tls_cert and tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            problems.append("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            env = _ENV_NAMES.get(f.name, f.name.upper())
            raw = environ.get(f"PRICEGRID_{env}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def as_dict(self) -> dict:
        """The settings as logs show them: the store's password redacted (any libpq form)."""
        from pricegrid.server.store import describe

        values = dataclasses.asdict(self)
        values["store"] = describe(self.store)
        return values

    @property
    def store_path(self) -> str:
        """The store: ``store`` (a SQLite file or a postgresql:// URL), or the default SQLite
        file under the user's data folder."""
        if self.store:
            return self.store
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        return os.path.join(base, "pricegrid", "pricegrid.db")


_ENV_NAMES = {  # settings whose variable drops the unit
    "default_deadline_s": "DEFAULT_DEADLINE", "grace_s": "GRACE", "snapshot_max_age_s": "SNAPSHOT_MAX_AGE",
    "max_cost_unary_s": "MAX_COST_UNARY", "max_cost_batch_s": "MAX_COST_BATCH",
    "keepalive_min_ping_s": "KEEPALIVE_MIN_PING", "keepalive_time_s": "KEEPALIVE_TIME",
    "max_connection_age_s": "MAX_CONNECTION_AGE", "max_connection_age_grace_s": "MAX_CONNECTION_AGE_GRACE",
}


def _parse(f, raw: str):
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": bool, "str": str}[f.type]
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"PRICEGRID_{_ENV_NAMES.get(f.name, f.name.upper())}={raw!r} is not a valid {kind.__name__}") from None


def variables() -> dict[str, str]:
    """Every environment variable the server reads: PRICEGRID_* name -> its setting."""
    return {f"PRICEGRID_{_ENV_NAMES.get(f.name, f.name.upper())}": f.name for f in fields(Settings)}
