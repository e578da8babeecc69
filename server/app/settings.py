"""Settings: defaults, overridden by PRICEGRID_* environment variables, overridden by flags.

    setting               env                          default
    host                  PRICEGRID_HOST               127.0.0.1 (the Dockerfile sets 0.0.0.0)
    port                  PRICEGRID_PORT               50051 (0 picks a free port)
    workers               PRICEGRID_WORKERS            16    RPC handler threads
    kernel_threads        PRICEGRID_KERNEL_THREADS     cores (OpenMP threads per batch, at most)
    max_message_bytes     PRICEGRID_MAX_MESSAGE_BYTES  134217728 (128 MiB; larger -> RESOURCE_EXHAUSTED)
    max_rows              PRICEGRID_MAX_ROWS           1000000 rows per batch request
    chunk_rows            PRICEGRID_CHUNK_ROWS         262144 rows between cancellation checks
    default_deadline_s    PRICEGRID_DEFAULT_DEADLINE   30    budget for calls when the caller sets no deadline
    max_cost_unary_s      PRICEGRID_MAX_COST_UNARY     2     estimated cost one trade may ask (Price, a PriceStream
                                                       trade), in core-seconds (pricegrid.server.domain.cost);
                                                       more -> RESOURCE_EXHAUSTED naming the setting
    max_cost_batch_s      PRICEGRID_MAX_COST_BATCH     300   the same for one batch request
    grace_s               PRICEGRID_GRACE              10    seconds in-flight calls get on SIGTERM
    max_stream_trades     PRICEGRID_MAX_STREAM_TRADES  10000 trades held per PriceStream
    metrics_port          PRICEGRID_METRICS_PORT       9464  Prometheus endpoint (0: any free port, -1: off)
    echo                  PRICEGRID_ECHO               true  serve pricegrid.v1.EchoService (benchmark floor)
    store                 PRICEGRID_STORE              the SQLite file of market snapshots (default:
                                                       $XDG_DATA_HOME or ~/.local/share, /pricegrid/pricegrid.db;
                                                       ":memory:" keeps nothing across restarts)
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
    workers: int = 16
    kernel_threads: int = os.cpu_count() or 1
    max_message_bytes: int = 128 * 1024 * 1024
    max_rows: int = 1_000_000
    chunk_rows: int = 262_144
    default_deadline_s: float = 30.0
    max_cost_unary_s: float = 2.0
    max_cost_batch_s: float = 300.0
    grace_s: float = 10.0
    max_stream_trades: int = 10_000
    metrics_port: int = 9464
    echo: bool = True
    store: str = ""
    snapshot_max_age_s: float = 7 * 86400.0
    log_level: str = "info"
    log_format: str = "json"

    def __post_init__(self):
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port {self.port} is not in 0..65535")
        for name in ("workers", "kernel_threads", "max_message_bytes", "max_rows", "chunk_rows", "max_stream_trades"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.snapshot_max_age_s <= 0:
            problems.append("snapshot_max_age_s must be > 0")
        if self.default_deadline_s <= 0 or self.grace_s < 0:
            problems.append("default_deadline_s must be > 0 and grace_s >= 0")
        if not (self.max_cost_unary_s > 0 and self.max_cost_batch_s > 0):
            problems.append("max_cost_unary_s and max_cost_batch_s must be > 0")
        if self.log_format not in ("json", "console"):
            problems.append("log_format must be json or console")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            env = {"default_deadline_s": "DEFAULT_DEADLINE", "grace_s": "GRACE",
                   "snapshot_max_age_s": "SNAPSHOT_MAX_AGE", "max_cost_unary_s": "MAX_COST_UNARY",
                   "max_cost_batch_s": "MAX_COST_BATCH"}.get(f.name, f.name.upper())
            raw = environ.get(f"PRICEGRID_{env}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def store_path(self) -> str:
        """The snapshot store's file (``store``, or the default under the user's data folder)."""
        if self.store:
            return self.store
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        return os.path.join(base, "pricegrid", "pricegrid.db")


def _parse(f, raw: str):
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": bool, "str": str}[f.type]
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"PRICEGRID_{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
