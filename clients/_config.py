"""Client configuration: retries, deadlines and the channel options built from them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence

DEFAULT_TARGET = "127.0.0.1:50051"
SERVICES = ("pricegrid.v1.PricingService", "pricegrid.v1.EchoService")
#: methods of the other services that RetryConfig retries: those whose second attempt cannot
#: differ from the first, i.e. reads and computations (no put or delete: a delete retried
#: after the first attempt landed would answer NOT_FOUND, a put "created = false", a backtest
#: history append would append twice). gRPC retries a streaming call only until its first
#: response message arrives (and while what it sent fits its retry buffer), so a stream cut
#: later fails, never replays: RunScenarioRisk and Backtest only compute, and are retried.
RETRIED_METHODS = {
    "pricegrid.v1.MarketDataService": ("GetSnapshot", "ListSnapshots", "ValidateMarket", "EvaluateCurve",
                                       "EvaluateSurface"),
    "pricegrid.v1.RiskService": ("Backtest", "RunScenarioRisk", "ParametricVar", "Sensitivities", "WorstCase",
                                 "GetPortfolio", "ListPortfolios", "ListStresses", "GetScenarioSet",
                                 "ListScenarioSets", "GetBacktestHistory", "ListBacktestHistories"),
}

#: A channel option list: ``[("grpc.keepalive_time_ms", 30000), ...]``.
ChannelOptions = Sequence[tuple[str, object]]


class _UseClientDefault:
    """Sentinel: "use the client's setting" (``None`` means "no deadline")."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT = _UseClientDefault()


def default_target() -> str:
    """``$PRICEGRID_TARGET``, else ``127.0.0.1:50051``."""
    return os.environ.get("PRICEGRID_TARGET") or DEFAULT_TARGET


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Retries of failed calls, done by gRPC itself (its service-config ``retryPolicy``).

        >>> RetryConfig()                                   # 3 attempts on UNAVAILABLE
        >>> RetryConfig(max_attempts=5, initial_backoff=0.02)
        >>> RetryConfig(max_attempts=1)                     # no retries

    gRPC retries only calls that have not yet received a response and caps ``max_attempts``
    at 5. Every attempt counts against the call's one deadline. It applies to every method
    of PricingService and to the reads and computations of MarketDataService and RiskService
    (``RETRIED_METHODS``); their puts and deletes are not retried.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    backoff_multiplier: float = 2.0
    retryable_status_codes: tuple[str, ...] = ("UNAVAILABLE",)

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 5:
            raise ValueError("max_attempts must be between 1 and 5 (gRPC's cap)")
        if self.initial_backoff <= 0 or self.max_backoff <= 0 or self.backoff_multiplier <= 0:
            raise ValueError("backoffs and multiplier must be > 0")
        object.__setattr__(self, "retryable_status_codes", tuple(c.upper() for c in self.retryable_status_codes))
        if self.max_attempts > 1 and not self.retryable_status_codes:
            raise ValueError("retryable_status_codes must name at least one code")

    @property
    def enabled(self) -> bool:
        return self.max_attempts > 1

    def service_config(self) -> dict:
        """The gRPC service config (as a dict) that applies this policy to pricegrid's services
        (every method of SERVICES, the RETRIED_METHODS of the others)."""
        method = {"name": [{"service": s} for s in SERVICES]
                  + [{"service": s, "method": m} for s, methods in RETRIED_METHODS.items() for m in methods]}
        if self.enabled:
            method["retryPolicy"] = {
                "maxAttempts": self.max_attempts,
                "initialBackoff": _duration(self.initial_backoff),
                "maxBackoff": _duration(self.max_backoff),
                "backoffMultiplier": self.backoff_multiplier,
                "retryableStatusCodes": list(self.retryable_status_codes),
            }
        return {"methodConfig": [method]}


def _duration(seconds: float) -> str:
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def channel_options(
    retries: RetryConfig | None,
    *,
    max_message_bytes: int | None = None,
    extra: ChannelOptions = (),
) -> list[tuple[str, object]]:
    """Channel options for a client: retries as a service config, message size limits, then
    the caller's own options (which win)."""
    retries = retries or RetryConfig(max_attempts=1)
    options: dict[str, object] = {
        "grpc.enable_retries": 1 if retries.enabled else 0,
        "grpc.service_config": json.dumps(retries.service_config()),
        # Keep long-lived streams alive through idle proxies: a ping every 30 s while a call
        # is open, for as long as it is open (gRPC otherwise stops after two pings without
        # data). pricegrid serve allows that (its keepalive_min_ping_s, 10 s by default).
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.http2.max_pings_without_data": 0,
    }
    if max_message_bytes is not None:
        options["grpc.max_receive_message_length"] = max_message_bytes
        options["grpc.max_send_message_length"] = max_message_bytes
    options.update(dict(extra))
    return list(options.items())


def resolve_timeout(timeout, default: float | None) -> float | None:
    if timeout is USE_CLIENT_DEFAULT:
        return default
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be > 0 seconds (or None for no deadline)")
    return timeout


def balanced(target: str, options) -> list[tuple[str, object]]:
    """``options`` with round_robin load balancing when ``target`` may name several replicas
    (a list, ``ipv4:a:1,b:2``, or a ``dns:`` name: a headless Kubernetes Service has one A
    record per pod): calls spread over all of them, where gRPC's default, pick_first, sends
    everything to the first that answers. A single host:port keeps pick_first (it reconnects
    at once when its one server comes back; round_robin waits out its backoff)."""
    options = list(options)
    if "," not in target and not target.startswith("dns:"):
        return options
    out = []
    for name, value in options:
        if name == "grpc.service_config":
            config = json.loads(value)
            config.setdefault("loadBalancingConfig", [{"round_robin": {}}])
            value = json.dumps(config)
        out.append((name, value))
    if not any(name == "grpc.service_config" for name, _ in out):
        out.append(("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})))
    return out
