"""Metrics, logs, the Grafana dashboard and the Prometheus alert rules, against real servers
on 127.0.0.1: every metric the server defines is moved by some real call (scraped from its
/metrics endpoint), with the counts those calls must give; error log lines carry the code,
the message and the request id, and work in a pool thread logs with its call's request id;
every metric the dashboard and the alerts use is one a running server exports."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
import urllib.request
from concurrent import futures
from importlib import metadata
from pathlib import Path

import grpc
import numpy as np
import pytest
import structlog
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pricegrid.clients import AmericanOption, EuropeanOption, FrontOfficeClient, Market, MarketClient, PricingError
from pricegrid.clients import RiskClient
from pricegrid.ext import BUILD_INFO
from pricegrid.server.app import logs
from pricegrid.server.rpc.admission import Call, Lane
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc
from tests.conftest import start_server

ROOT = Path(__file__).resolve().parents[2]
PRICE = "/pricegrid.v1.PricingService/Price"
BATCH = "/pricegrid.v1.PricingService/PriceBatch"
STREAM = "/pricegrid.v1.PricingService/PriceStream"
MARKET = Market(spot=100.0, rate=0.03, volatility=0.2)
EUROPEAN = EuropeanOption(option_type="call", strike=100.0, expiry=0.5)
POLICY = """
[roles]
everything = ["/pricegrid.v1.PricingService/*", "/pricegrid.v1.MarketDataService/*", "/pricegrid.v1.RiskService/*"]

[open]
anonymous_roles = ["everything"]
"""


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """A server of its own (its counts start at zero): an auth policy that lets anonymous
    callers call everything (a malformed credential is still refused), one stream at most."""
    policy = tmp_path_factory.mktemp("auth") / "policy.toml"
    policy.write_text(POLICY)
    running = start_server(auth_policy=str(policy), max_streams=1, chunk_rows=1000)
    yield running
    running.stop(1.0)


def scrape(server) -> dict:
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    return {f.name: f for f in text_string_to_metric_families(body)}


def value(families: dict, sample: str, **labels) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels`` (0: none)."""
    return sum(s.value for f in families.values() for s in f.samples
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def eventually(server, check, timeout: float = 5.0) -> dict:
    """Scrape until ``check(families)`` holds (a call is recorded just after its reply goes out)."""
    deadline = time.monotonic() + timeout
    while True:
        families = scrape(server)
        if check(families) or time.monotonic() > deadline:
            return families
        time.sleep(0.02)


def test_every_metric_is_updated_by_real_calls(observed):
    rows = 2001
    strikes = np.linspace(80.0, 120.0, rows)
    strikes[7] = -1.0  # one bad row
    with FrontOfficeClient(target=observed.address, timeout=10) as fo:
        assert fo.price(EUROPEAN, MARKET).price > 0  # the lean path, inline on the loop
        assert fo.price(AmericanOption(option_type="put", strike=100.0, expiry=1.0), MARKET).price > 0  # the pool
        assert fo.implied_vol(EUROPEAN, MARKET, price=6.0).volatility > 0
        with pytest.raises(PricingError) as bad:
            fo.price(EuropeanOption(option_type="call", strike=-1.0, expiry=0.5), MARKET)
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with RiskClient(target=observed.address, timeout=30) as risk:
            out = risk.price_batch(option_type="call", strike=strikes, time_to_expiry=0.5, spot=100.0, rate=0.03,
                                   volatility=0.2, model="bsm")
            assert np.isnan(out["price"][7]) and np.isfinite(np.delete(out["price"], 7)).all()
        with MarketClient(target=observed.address, timeout=10) as market:
            assert market.list_snapshots("demo")
        with grpc.insecure_channel(observed.address) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            with pytest.raises(grpc.RpcError) as denied:  # a malformed credential: refused, not anonymous
                stub.Price(pb.PriceRequest(), metadata=[("authorization", "Basic abc")], timeout=5)
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with fo.stream() as session:  # the one stream the server allows
                session.add("A", EUROPEAN, MARKET)
                assert session.receive(timeout=5).ok
                live = scrape(observed)
                assert value(live, "pricegrid_rpc_in_flight", method=STREAM) == 1
                assert value(live, "pricegrid_streams_open") == 1
                with pytest.raises(grpc.RpcError) as shed:  # a second one is shed
                    list(stub.PriceStream(iter([]), timeout=5))
                assert shed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    families = eventually(observed, lambda f: value(f, "pricegrid_stream_messages_total", method=STREAM) == 1
                          and value(f, "pricegrid_rpc_in_flight", method=STREAM) == 0)
    # every metric of ours moved: a counter or histogram counted something, a gauge has a value
    # (prometheus-client's process and Python collectors: a value; some of theirs stay 0)
    for family in families.values():
        if family.name.startswith("pricegrid_") and family.type in ("counter", "histogram", "summary"):
            assert any(s.value > 0 for s in family.samples if not s.name.endswith("_created")), family.name
        else:
            assert family.samples, family.name
    expected = {
        "pricegrid_rpc_duration_seconds", "pricegrid_rpc_errors", "pricegrid_rpc_in_flight",
        "pricegrid_rpc_queue_wait_seconds", "pricegrid_rpc_compute_seconds", "pricegrid_batch_rows",
        "pricegrid_row_errors", "pricegrid_stream_messages", "pricegrid_model_rows", "pricegrid_model_duration_seconds",
        "pricegrid_auth_denied", "pricegrid_admission_refused", "pricegrid_admission_active", "pricegrid_streams_open",
        "pricegrid_model_info", "pricegrid_build_info", "process_cpu_seconds", "process_resident_memory_bytes",
        "python_info",
    }
    assert expected <= set(families), expected - set(families)

    # and by exactly what these calls make them
    count = "pricegrid_rpc_duration_seconds_count"
    assert value(families, count, method=PRICE, code="OK") == 2
    assert value(families, count, method=PRICE, code="INVALID_ARGUMENT") == 1
    assert value(families, count, method=PRICE, code="UNAUTHENTICATED") == 1
    assert value(families, "pricegrid_rpc_errors_total", method=PRICE) == 2
    assert value(families, "pricegrid_auth_denied_total", method=PRICE, code="UNAUTHENTICATED") == 1
    assert value(families, "pricegrid_admission_refused_total", **{"class": "streams"}) == 1
    # the lean Price ran inline: only the American and the bad trade waited for and used the pool
    assert value(families, "pricegrid_rpc_queue_wait_seconds_count", method=PRICE) == 2
    assert value(families, "pricegrid_rpc_compute_seconds_count", method=PRICE) == 2
    assert value(families, "pricegrid_rpc_compute_seconds_sum", method=PRICE) > 0
    assert value(families, "pricegrid_rpc_compute_seconds_count", method=BATCH) == 1
    assert value(families, "pricegrid_batch_rows_sum", method=BATCH) == rows
    assert value(families, "pricegrid_row_errors_total", method=BATCH) == 1
    # per model: the lean trade, the batch's rows and the stream's trade; the American alone
    bsm = dict(model="black_scholes_merton", version="1.0.0")
    assert value(families, "pricegrid_model_rows_total", engine="analytic_european", **bsm) == 1 + rows + 1
    assert value(families, "pricegrid_model_duration_seconds_count", engine="analytic_european", **bsm) == 3
    assert value(families, "pricegrid_model_rows_total", engine="fixed_point_american", **bsm) == 1
    implied = dict(model="black_scholes_merton", engine="implied_vol_lets_be_rational")
    assert value(families, "pricegrid_model_rows_total", **implied) == 1
    build = families["pricegrid_build_info"].samples[0].labels
    assert build["version"] == metadata.version("pricegrid")
    assert build["compile_args"] == " ".join(BUILD_INFO["compile_args"]) and build["cpu_target"]


def test_error_log_lines_carry_code_message_and_request_id(observed):
    out = io.StringIO()
    logs.configure("info", "json", stream=out)
    try:
        with grpc.insecure_channel(observed.address) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            request = pb.PriceRequest()
            request.european.strike = 100.0  # and nothing else: several fields are missing
            with pytest.raises(grpc.RpcError) as bad:
                stub.Price(request, metadata=[("x-request-id", "obs-bad-1")], timeout=5)
            with pytest.raises(grpc.RpcError):
                stub.Price(pb.PriceRequest(), metadata=[("x-request-id", "obs-denied-1"),
                                                         ("authorization", "Bearer not-a-jwt")], timeout=5)

        def rpc_lines() -> dict:  # the other servers of the session may log here too
            lines = [json.loads(x) for x in out.getvalue().splitlines()]
            return {x["request_id"]: x for x in lines if x["event"] == "rpc"}

        deadline = time.monotonic() + 5
        while not {"obs-bad-1", "obs-denied-1"} <= set(rpc_lines()) and time.monotonic() < deadline:
            observed.observer.flush()
            time.sleep(0.02)
    finally:
        logs.configure("warning", "json")
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    rpc = rpc_lines()
    line = rpc["obs-bad-1"]
    assert line["level"] == "warning" and line["code"] == "INVALID_ARGUMENT" and line["method"] == PRICE
    assert line["message"] == bad.value.details() and "european.expiry" in line["message"]
    assert rpc["obs-denied-1"]["code"] == "UNAUTHENTICATED"
    assert rpc["obs-denied-1"]["message"] == "missing or invalid credentials"
    audit = [x for x in lines if x["event"] == "call_denied"]
    assert audit and audit[0]["request_id"] == "obs-denied-1" and audit[0]["code"] == "UNAUTHENTICATED"


def test_work_in_a_pool_logs_with_its_call_request_id():
    out = io.StringIO()
    logs.configure("info", "json", stream=out)
    pool = futures.ThreadPoolExecutor(1)
    lane = Lane("test", None, pool, 1 << 20, 5.0)

    def work(x):
        structlog.get_logger("pricegrid.test").info("working", x=x)
        time.sleep(0.01)
        return x + 1

    async def main():
        call = Call("obs-pool-7", time.monotonic() + 5)
        assert await lane.run(call, work, 41) == 42
        assert structlog.contextvars.get_contextvars() == {}  # bound in the work's context only
        return call

    try:
        call = asyncio.run(main())
    finally:
        logs.configure("warning", "json")
        pool.shutdown()
    line = json.loads(out.getvalue().splitlines()[0])
    assert line["event"] == "working" and line["request_id"] == "obs-pool-7" and line["x"] == 41
    assert call.waited >= 0 and call.computed >= 0.01


# ---------------------------------------------------------------------------- dashboard and alerts
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                 "offset", "inf", "nan"}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers, less label matchers,
    strings, grouping clauses, Grafana variables, functions and keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        if m.group(2) is None and m.group(1).lower() not in _PROMQL_WORDS:
            names.add(m.group(1))
    return names


def dashboard_exprs(dashboard: dict) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        exprs += [t["expr"] for t in panel.get("targets", [])]
        for inner in panel.get("panels", []):
            exprs += [t["expr"] for t in inner.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            exprs += re.findall(r"label_values\((.*),\s*\w+\)$", query) or []
    return exprs


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_metric_names_are_read_from_promql():
    expr = ('histogram_quantile(0.99, sum by (le, method) (rate(pricegrid_rpc_duration_seconds_bucket'
            '{method=~"/pricegrid.v1.PricingService/.*", code!="OK"}[$__rate_interval]))) > 0.0025'
            ' and on (job) up{job="pricegrid"} == 1')
    assert metric_names(expr) == {"pricegrid_rpc_duration_seconds_bucket", "up"}


def test_the_dashboard_and_alerts_use_only_metrics_a_server_exports(server):
    exported = {"up"}  # Prometheus's own, per scrape target
    for family in scrape(server).values():
        exported.add(family.name)
        exported.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "pricegrid.json").read_text())
    rules = alert_rules()
    used = {}
    for expr in dashboard_exprs(dashboard) + [r["expr"] for r in rules]:
        for name in metric_names(expr):
            used.setdefault(name, expr)
    assert used and not set(used) - exported, {n: used[n] for n in set(used) - exported}
    # what the issue asks them to show
    dash = " ".join(dashboard_exprs(dashboard))
    for name in ("pricegrid_rpc_duration_seconds_count", "pricegrid_rpc_duration_seconds_bucket",
                 "pricegrid_rpc_in_flight", "pricegrid_rpc_queue_wait_seconds", "pricegrid_admission_refused_total",
                 "pricegrid_model_rows_total"):
        assert name in dash, name
    alerts = {r["alert"]: r for r in rules}
    assert {"PricegridHighErrorRate", "PricegridLatencyP99OverSLO", "PricegridShedding",
            "PricegridReplicaDown"} <= set(alerts)
    assert "up" in metric_names(alerts["PricegridReplicaDown"]["expr"])
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"], rule
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule
    # every panel query names its datasource through the dashboard's variable
    assert {p["datasource"]["uid"] for p in dashboard["panels"] if "targets" in p} == {"${datasource}"}
