"""pricegrid bench latency against a real server, kept tiny."""

import json

import pytest

from pricegrid import console
from pricegrid.tools import bench


def test_latency_tool_writes_json_and_png(server, tmp_path, capsys):
    out_json, out_png = tmp_path / "latency.json", tmp_path / "latency.png"
    argv = ["bench", "latency", "--target", server.address, "--count", "40", "--warmup", "3", "--concurrency", "2",
            "--batch-rows", "3000", "--batch-count", "2", "--batch-warmup", "1", "--chunk-rows", "1000",
            "--duration", "20", "--json", str(out_json), "--png", str(out_png)]
    assert console.main(argv) == 0
    out = capsys.readouterr().out
    for name in bench.SERIES:
        assert name in out
    assert "Price/Echo p50" in out and "PriceBatch/EchoBatch p50" in out

    doc = json.loads(out_json.read_text())
    series = doc["series"]
    assert set(series) == set(bench.SERIES)
    for name in ("Echo", "Price", "EchoStream", "PriceStream"):
        assert series[name]["calls"] == 40 and series[name]["errors"] == 0 and series[name]["concurrency"] == 2
        assert 0 < series[name]["p50_s"] <= series[name]["p90_s"] <= series[name]["p99_s"] <= series[name]["p99.9_s"]
        assert series[name]["calls_per_second"] > 0
    for name in ("EchoBatch", "PriceBatch"):
        assert series[name]["calls"] == 2 and series[name]["rows_per_call"] == 3000
    # the echo carries the very bytes the RiskClient sends, and PriceBatch answers about as many
    sent = series["PriceBatch"]["bytes_sent_per_call"]
    assert series["EchoBatch"]["bytes_sent_per_call"] == sent == series["EchoBatch"]["bytes_received_per_call"]
    assert 3000 * 52 <= sent < 3000 * 52 + 2000
    assert 0.8 < series["PriceBatch"]["bytes_received_per_call"] / sent < 1.2
    assert set(doc["ratios_p50"]) == {"Price/Echo", "PriceStream/Echo", "PriceStream/EchoStream", "PriceBatch/EchoBatch"}
    assert all(v > 0 for v in doc["ratios_p50"].values())
    assert len(doc["samples"]["Price"]) == 40
    # the floor: a bare grpcio echo server started beside ours (and stopped: its port is closed)
    assert doc["echo"]["kind"] == "bare" and doc["echo"]["target"] != server.address
    assert doc["echo"]["target"].startswith("127.0.0.1:") and "bare grpcio echo server" in out
    import grpc
    with grpc.insecure_channel(doc["echo"]["target"]) as ch:
        try:
            grpc.channel_ready_future(ch).result(timeout=0.5)
            stopped = False
        except grpc.FutureTimeoutError:
            stopped = True
    assert stopped
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latency_tool_stops_at_its_duration(server):
    report = bench.run_latency(target=server.address, count=10_000_000, duration=0.3, warmup=2, modes=["price"])
    for name in ("Echo", "Price"):
        s = report["series"][name]
        assert 0 < s["calls"] < 10_000_000 and s["wall_seconds"] < 3.0
    assert set(report["series"]) == {"Echo", "Price"}


def test_echo_series_on_the_targets_own_echo_service(server):
    report = bench.run_latency(target=server.address, count=20, duration=5, warmup=2, modes=["price"], echo="server")
    assert report["echo"] == {"kind": "server", "target": server.address, "workers": None}
    assert report["series"]["Echo"]["calls"] == 20 and report["series"]["Echo"]["errors"] == 0


@pytest.mark.parametrize("aio,loop", [(False, None), (True, "uvloop"), (True, "asyncio")],
                         ids=["sync", "aio-uvloop", "aio-asyncio"])
def test_the_bare_echo_server_returns_what_it_was_sent(aio, loop):
    import grpc

    bare = bench.BareEcho(workers=2, aio=aio, **({"loop": loop} if loop else {}))
    assert bare.loop == loop  # the aio floor runs on the loop asked (the server's own by default)
    try:
        with grpc.insecure_channel(bare.target) as ch:
            echo = ch.unary_unary(bench.ECHO, request_serializer=None, response_deserializer=None)
            assert echo(b"\x01\x02pricegrid", timeout=10) == b"\x01\x02pricegrid"
            stream = ch.stream_stream(bench.ECHO_STREAM, request_serializer=None, response_deserializer=None)
            assert list(stream(iter([b"a", b"bc"]), timeout=10)) == [b"a", b"bc"]
    finally:
        bare.close()
    assert bare.proc.returncode == 0


def test_latency_tool_reports_an_unreachable_target(capsys):
    assert console.main(["bench", "latency", "--target", "127.0.0.1:1", "--timeout", "1", "--count", "1"]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_png_without_matplotlib_says_what_to_install(server, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out_json = tmp_path / "latency.json"
    argv = ["bench", "latency", "--target", server.address, "--count", "5", "--warmup", "1", "--modes", "price",
            "--json", str(out_json), "--png", str(tmp_path / "latency.png")]
    assert console.main(argv) == 1
    assert "pricegrid[plot]" in capsys.readouterr().err
    assert json.loads(out_json.read_text())["series"]["Price"]["calls"] == 5  # the measurements are kept
    assert not (tmp_path / "latency.png").exists()
