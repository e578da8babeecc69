"""ServerInfo, health, reflection and the Prometheus endpoint of a real server."""

import re
import urllib.request
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pricegrid.ext import BUILD_INFO
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb


def test_server_info_reports_build_versions_models_limits(stub, server):
    info = stub.ServerInfo(pb.ServerInfoRequest(), timeout=5)
    assert info.version == "0.1.0"
    assert any(a.startswith("-march=") for a in info.build.compile_args)
    assert "-O3" in info.build.compile_args or info.build.debug
    assert info.build.cpu_target == BUILD_INFO["cpu_target"]
    assert info.build.openmp == BUILD_INFO["openmp"]
    assert "-ffast-math" not in info.build.compile_args
    assert info.kernel_threads >= 1
    assert info.limits.max_rows == server.settings.max_rows
    assert info.limits.max_message_bytes == server.settings.max_message_bytes
    assert info.limits.max_trade_message_bytes == server.settings.max_trade_message_bytes > 0
    assert info.limits.max_stream_message_bytes == server.settings.max_stream_message_bytes > 0
    assert info.limits.max_cost_unary_seconds == server.settings.max_cost_unary_s > 0
    assert info.limits.max_cost_batch_seconds == server.settings.max_cost_batch_s > 0
    assert info.limits.parallel_threshold_rows > 0
    assert {"python", "grpcio", "numpy", "protobuf"} <= set(info.versions)
    models = {(m.ref.model, m.ref.engine) for m in info.models}
    assert ("black_scholes_merton", "analytic_european") in models
    assert ("black_76", "analytic_european") in models and ("bachelier", "analytic_european") in models
    assert all(m.ref.version for m in info.models)
    bsm = next(m for m in info.models if m.model == c.MODEL_BLACK_SCHOLES_MERTON and m.measures)
    assert c.MEASURE_CHARM in bsm.measures and bsm.validated_against


def test_health_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "pricegrid.v1.PricingService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == 1


def test_reflection_lists_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"pricegrid.v1.PricingService", "pricegrid.v1.EchoService", "pricegrid.v1.MarketDataService",
            "pricegrid.v1.RiskService", "grpc.health.v1.Health"} <= names


def test_metrics_endpoint(stub, server):
    import time

    stub.ServerInfo(pb.ServerInfoRequest(), timeout=5)
    line = 'pricegrid_rpc_duration_seconds_bucket{code="OK",le="0.0001",method="/pricegrid.v1.PricingService/ServerInfo"}'
    deadline = time.monotonic() + 5  # recorded on the server's loop just after the reply went out
    while True:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
        if line in body or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert line in body
    assert 'pricegrid_model_info{engine="analytic_european",model="black_scholes_merton",version="1.0.0"} 1.0' in body


def test_stream_messages_are_counted_per_method(server):
    """pricegrid_stream_messages_total grows by the messages a stream received once it ends."""
    import re
    import time

    import grpc

    from pricegrid.v1 import risk_pb2 as rpb
    from pricegrid.v1 import risk_pb2_grpc

    def count() -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
        m = re.search(r'pricegrid_stream_messages_total\{method="/pricegrid.v1.RiskService/Backtest"\} (\S+)', body)
        return float(m.group(1)) if m else 0.0

    before = count()
    with grpc.insecure_channel(server.address) as ch:
        replies = list(risk_pb2_grpc.RiskServiceStub(ch).Backtest(
            iter([rpb.BacktestRequest(pnl={"values": [1.0, -2.0]}, var={"values": [1.5, 1.5]})] * 3), timeout=10))
    assert len(replies) == 3
    deadline = time.monotonic() + 5  # recorded as the stream ends, after the last reply
    while count() < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count() == before + 3


#: the README's model labels (the clients' model names, spelled for readers)
_README_MODELS = {"BSM": c.MODEL_BLACK_SCHOLES_MERTON, "Black-76": c.MODEL_BLACK_76, "Bachelier": c.MODEL_BACHELIER,
                  "Heston": c.MODEL_HESTON}


def _readme_products() -> dict:
    """(instrument, model) -> engines, default first, from README.md's product table: an
    engine's label (before its parenthesis) is its Engine value ("binomial tree":
    ENGINE_BINOMIAL_TREE)."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    head = "| instrument | models | engines (default first) |"
    assert text.count(head) == 1
    out = {}
    for line in text[text.index(head):].splitlines()[2:]:
        if not line.startswith("|"):
            break
        instrument, models, engines = (cell.strip() for cell in line.strip("|").split("|"))
        name = re.match(r"`(\w+)`", instrument).group(1)
        labels = [e.split(" (")[0] for e in re.split(r",\s*(?![^()]*\))", engines)]
        codes = [c.Engine.Value("ENGINE_" + label.upper().replace(" ", "_").replace("-", "_")) for label in labels]
        for model in models.split(", "):
            key = (name, _README_MODELS[model])
            assert key not in out, f"{key} is in two rows"
            out[key] = codes
    return out


def test_the_readme_product_table_is_server_info(stub):
    info = stub.ServerInfo(pb.ServerInfoRequest(), timeout=5)
    offered, defaults = set(), {}
    for m in info.models:
        if m.engine == c.ENGINE_UNSPECIFIED:  # (implied volatility)
            continue
        for instrument in m.instruments:
            offered.add((instrument, m.model, m.engine))
            if m.default_engine:
                defaults[instrument, m.model] = m.engine
    table = _readme_products()
    listed = {(i, m, e) for (i, m), engines in table.items() for e in engines}
    assert listed == offered, {"not in the README": sorted(offered - listed), "not offered": sorted(listed - offered)}
    assert {k: v[0] for k, v in table.items()} == defaults
