"""`pricegrid serve` as a process: JSON logs (one line per RPC), and a graceful drain on SIGTERM."""

import datetime as dt
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc

PRICEGRID = Path(sys.executable).parent / "pricegrid"


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [str(PRICEGRID), "serve", "--port", "0", "--metrics-port", "-1", "--store", ":memory:", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        started = self.wait_for(lambda e: e.get("event") == "started")
        self.address = started["address"]
        self.started = started

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def events(self, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                return
            if line is None:
                return
            yield json.loads(line)

    def wait_for(self, predicate, timeout=20.0):
        for event in self.events(timeout):
            if predicate(event):
                return event
        raise AssertionError("event not seen")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def request():
    return pb.PriceRequest(
        model=c.MODEL_BLACK_76,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=75, expiry=pb.Expiry(year_fraction=1)),
        market=pb.Market(forward=70, rate=0.03, volatility=0.4),
    )


def test_start_logs_build_and_one_line_per_rpc():
    s = Server("--log-format", "json")
    try:
        assert "-march=" in " ".join(s.started["build"]["compile_args"])
        assert s.started["kernel_threads"] >= 1
        # the startup heap is out of the cyclic collector's reach (server.freeze_startup_heap)
        assert s.wait_for(lambda e: e.get("event") == "heap_frozen")["objects"] > 10_000
        check = subprocess.run([str(PRICEGRID), "health", "--target", s.address], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0 and "SERVING" in check.stdout
        with grpc.insecure_channel(s.address) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            stub.Price(request(), timeout=5, metadata=(("x-request-id", "golden-1"),))
            bad = request()
            bad.market.volatility = -1
            with pytest.raises(grpc.RpcError):
                stub.Price(bad, timeout=5, metadata=(("x-request-id", "golden-2"),))
        ok = s.wait_for(lambda e: e.get("request_id") == "golden-1")
        assert ok["method"] == "/pricegrid.v1.PricingService/Price" and ok["code"] == "OK"
        assert ok["rows"] == 1 and ok["duration_ms"] > 0 and ok["level"] == "info"
        err = s.wait_for(lambda e: e.get("request_id") == "golden-2")
        assert err["code"] == "INVALID_ARGUMENT" and err["level"] == "warning"
    finally:
        s.kill()


def test_sigterm_drains_in_flight_calls_and_exits_zero():
    s = Server("--grace", "10")
    try:
        ch = grpc.insecure_channel(s.address)
        stub = pricing_pb2_grpc.PricingServiceStub(ch)
        health = health_pb2_grpc.HealthStub(ch)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        outbox: queue.Queue = queue.Queue()
        replies = stub.PriceStream(iter(outbox.get, None), timeout=30)
        outbox.put(pb.PriceStreamRequest(correlation_id="before", price=request()))
        assert next(replies).correlation_id == "before"  # the stream is in flight

        s.proc.send_signal(signal.SIGTERM)
        s.wait_for(lambda e: e.get("event") == "draining")
        # new calls are refused ...
        with grpc.insecure_channel(s.address) as fresh:
            with pytest.raises(grpc.RpcError) as info:
                pricing_pb2_grpc.PricingServiceStub(fresh).Price(request(), timeout=2)
            # refused: UNAVAILABLE once the port is closed; CANCELLED when the new connection
            # reached the listener just before it closed (gRPC's stop() cancels what arrives)
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        # ... while the in-flight stream is still answered, then finishes
        outbox.put(pb.PriceStreamRequest(correlation_id="during", price=request()))
        assert next(replies).correlation_id == "during"
        outbox.put(None)
        assert list(replies) == []
        assert s.proc.wait(20) == 0
        ch.close()
    finally:
        s.kill()


PRICE_BATCH = "/pricegrid.v1.PricingService/PriceBatch"


def heston_batch(rows: int) -> pb.PriceBatchRequest:
    """``rows`` Heston calls, each with its own v0 (so its own parameter group: ~7 us of one
    core a row on the development VM) and strike; 16 bytes a row on the wire."""
    rng = np.random.default_rng(rows)
    return pb.PriceBatchRequest(
        model=c.MODEL_HESTON, output_encoding=c.ENCODING_RAW,
        european=pb.EuropeanOptionColumns(option_type=c.Int32Column(values=[c.OPTION_TYPE_CALL]),
                                          strike=c.DoubleColumn(raw=rng.uniform(80.0, 120.0, rows).tobytes()),
                                          time_to_expiry=c.DoubleColumn(values=[1.0])),
        market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), rate=c.DoubleColumn(values=[0.03]),
                                heston=pb.HestonColumns(v0=c.DoubleColumn(raw=rng.uniform(0.01, 0.09, rows).tobytes()),
                                                        kappa=c.DoubleColumn(values=[1.5]),
                                                        theta=c.DoubleColumn(values=[0.04]),
                                                        sigma=c.DoubleColumn(values=[0.5]),
                                                        rho=c.DoubleColumn(values=[-0.7]))),
    )


def wait_until_in_flight(s: Server, method: str, timeout: float = 20.0) -> None:
    """Scrape the server's metrics until its in-flight gauge counts a call of ``method`` (the
    handler has the whole request: the call is the server's from then on)."""
    url = f"http://127.0.0.1:{s.started['metrics_port']}/metrics"
    line = f'pricegrid_rpc_in_flight{{method="{method}"}} 1.0'
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if line in urllib.request.urlopen(url, timeout=5).read().decode():
            return
        time.sleep(0.005)  # the scrape interval, not a guess at when the call arrives
    raise AssertionError(f"no {method} call in flight")


def when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)


def assert_refused(address: str) -> None:
    """A new connection's call during the drain is refused: UNAVAILABLE once the port is
    closed; CANCELLED when it reached the listener just before it closed."""
    with grpc.insecure_channel(address) as fresh:
        with pytest.raises(grpc.RpcError) as info:
            pricing_pb2_grpc.PricingServiceStub(fresh).Price(request(), timeout=2)
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def test_sigterm_lets_an_in_flight_batch_finish_within_the_grace_and_exits_zero():
    """A 300,000-row Heston PriceBatch (about 2 s of one kernel thread here) is in flight when
    SIGTERM arrives, with a grace of 20 s: new calls are refused, the batch is answered in
    full, and the process exits 0. The server's own log places the drain inside the call:
    the batch started (its end, ``at``, less its duration) before "draining" was logged (the
    listener already shut) and ended after it."""
    rows = 300_000
    s = Server("--grace", "20", "--kernel-threads", "1", "--metrics-port", "0")
    try:
        with grpc.insecure_channel(s.address, options=[("grpc.max_receive_message_length", -1)]) as ch:
            future = pricing_pb2_grpc.PricingServiceStub(ch).PriceBatch.future(heston_batch(rows), timeout=60)
            wait_until_in_flight(s, PRICE_BATCH)
            s.proc.send_signal(signal.SIGTERM)
            draining = s.wait_for(lambda e: e.get("event") == "draining")
            assert_refused(s.address)
            response = future.result(timeout=60)
        assert response.rows == rows and response.error_count == 0
        price = np.frombuffer(response.columns[0].values.raw, "<f8")
        assert price.shape == (rows,) and np.isfinite(price).all() and (price > 0).all()
        batch = s.wait_for(lambda e: e.get("event") == "rpc" and e.get("method") == PRICE_BATCH)
        end = when(batch["at"])
        assert batch["code"] == "OK" and batch["rows"] == rows
        assert end - dt.timedelta(milliseconds=batch["duration_ms"]) < when(draining["ts"]) < end
        s.wait_for(lambda e: e.get("event") == "stopped")
        assert s.proc.wait(20) == 0
    finally:
        s.kill()


def test_sigterm_with_a_short_grace_cancels_the_in_flight_batch_and_exits_zero_promptly():
    """The same with 1,000,000 rows (about 7 s of work here) and a grace of 0.5 s: once the
    grace is over the batch is cancelled (CANCELLED or UNAVAILABLE on the client; CANCELLED in
    the server's log, started before the drain), the kernel stops at its next poll, and the
    process exits 0 within 3 s of the signal, not after the work would have ended."""
    rows, grace = 1_000_000, 0.5
    s = Server("--grace", str(grace), "--kernel-threads", "1", "--metrics-port", "0")
    try:
        with grpc.insecure_channel(s.address, options=[("grpc.max_receive_message_length", -1)]) as ch:
            future = pricing_pb2_grpc.PricingServiceStub(ch).PriceBatch.future(heston_batch(rows), timeout=60)
            wait_until_in_flight(s, PRICE_BATCH)
            signalled = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            draining = s.wait_for(lambda e: e.get("event") == "draining")
            assert_refused(s.address)
            with pytest.raises(grpc.RpcError) as info:
                future.result(timeout=30)
            assert info.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        assert s.proc.wait(20) == 0
        assert time.monotonic() - signalled < grace + 2.5
        batch = s.wait_for(lambda e: e.get("event") == "rpc" and e.get("method") == PRICE_BATCH)
        assert batch["code"] == "CANCELLED"
        end = when(batch["at"])
        assert end - dt.timedelta(milliseconds=batch["duration_ms"]) < when(draining["ts"]) < end
        assert end - when(draining["ts"]) < dt.timedelta(seconds=grace + 1.5)
    finally:
        s.kill()


def test_bad_settings_exit_2():
    proc = subprocess.run([str(PRICEGRID), "serve", "--max-rows", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "max_rows" in proc.stderr
    env = dict(os.environ, PRICEGRID_PORT="not-a-port")
    proc = subprocess.run([str(PRICEGRID), "serve"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and "PRICEGRID_PORT" in proc.stderr


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak RSS from /proc")
def test_a_gzip_bomb_is_refused_without_the_server_inflating_it():
    s = Server("--max-message-bytes", str(1 << 20), "--max-trade-message-bytes", str(64 << 10))
    try:
        with grpc.insecure_channel(s.address, options=[("grpc.max_send_message_length", -1)]) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            assert stub.Price(request(), timeout=5).price > 0
            before = peak_rss_mib(s.proc.pid)
            # 64 MiB of zeros travel as ~64 KB of gzip; gRPC stops inflating at the 1 MiB limit
            batch = ch.unary_unary("/pricegrid.v1.PricingService/PriceBatch")
            with pytest.raises(grpc.RpcError) as info:
                batch(bytes(64 << 20), timeout=30, compression=grpc.Compression.Gzip)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # a per-trade call: inflated up to the server's limit, refused by Price's own
            price = ch.unary_unary("/pricegrid.v1.PricingService/Price")
            with pytest.raises(grpc.RpcError) as info:
                price(bytes(512 << 10), timeout=30, compression=grpc.Compression.Gzip)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "takes at most 65536 bytes" in info.value.details()
            assert stub.Price(request(), timeout=5).price > 0
            grown = peak_rss_mib(s.proc.pid) - before
            assert grown < 16, f"the server's peak RSS grew {grown:.1f} MiB for a 64 MiB bomb"
    finally:
        s.kill()


def test_kill_9_then_restart_the_clients_reconnect_and_stored_snapshots_survive(tmp_path):
    """SIGKILL (no drain, no clean close of the store): a restarted server on the same port and
    store answers the same clients' channels again, and the snapshots put before are there."""
    from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market, MarketClient, PricingError

    store = str(tmp_path / "snapshots.db")
    first = Server("--store", store)
    port = first.address.rsplit(":", 1)[1]
    option, market = EuropeanOption("put", strike=95.0, expiry=0.25), Market(spot=100.0, rate=0.02, volatility=0.3)
    fo = FrontOfficeClient(target=first.address, timeout=5)
    mc = MarketClient(target=first.address, timeout=5)
    try:
        price = fo.price(option, market).price
        import datetime as dt

        put = mc.put_snapshot({
            "name": "kill-9", "asOf": (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).isoformat(),
            "curves": [{"id": "USD-OIS", "currency": "USD", "nodeTimes": [0.5, 1.0], "values": [0.03, 0.031],
                        "valueKind": "CURVE_VALUE_KIND_ZERO_RATE"}],
            "underlyings": [{"id": "X", "currency": "USD", "spot": 100.0, "discountCurve": "USD-OIS"}],
        })
        names = {s.id for s in mc.list_snapshots()}
        assert put.id in names
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        with pytest.raises(PricingError) as e:
            fo.price(option, market, timeout=1)
        assert e.value.code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
        second = Server("--store", store, "--port", port)
        try:
            deadline = time.monotonic() + 20
            while True:  # the channel reconnects by itself (gRPC's backoff)
                try:
                    assert fo.price(option, market, timeout=2).price == price
                    break
                except PricingError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert {s.id for s in mc.list_snapshots()} == names  # the put survived the kill
        finally:
            second.proc.send_signal(signal.SIGTERM)
            second.proc.wait(20)
    finally:
        fo.close()
        mc.close()
        first.kill()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak RSS from /proc")
def test_a_scenario_cube_larger_than_the_servers_growth_is_streamed_in_bounded_memory():
    """600 trades x 150,000 scenarios: a 720 MB float64 cube (plus its inputs, several times
    that if built at once) streamed as blocks; the server's peak RSS grows by a small
    fraction of the cube (the blocks are made and sent one at a time), and the client here
    reads and drops each block."""
    from pricegrid.v1 import market_pb2 as mpb
    from pricegrid.v1 import market_pb2_grpc
    from pricegrid.v1 import risk_pb2 as rpb

    s = Server("--max-scenario-cells", "100000000")
    try:
        with grpc.insecure_channel(s.address, options=[("grpc.max_receive_message_length", -1)]) as ch:
            sid = market_pb2_grpc.MarketDataServiceStub(ch).ListSnapshots(
                mpb.ListSnapshotsRequest(name="demo"), timeout=10).snapshots[0].id
            trades, scenarios = 600, 150_000
            rng = np.random.default_rng(1)
            port = pb.PriceBatchRequest(model=c.MODEL_BLACK_SCHOLES_MERTON)
            port.european.option_type.values.append(1)
            port.european.strike.raw = rng.uniform(5000, 7000, trades).astype("<f8").tobytes()
            port.european.time_to_expiry.values.append(1.0)
            port.market.snapshot_id, port.market.underlying_id = sid, "SPX"
            r = rpb.RunScenarioRiskRequest(portfolio=port, output=rpb.SCENARIO_OUTPUT_BOTH)
            r.scenarios.shifts.add(name="spot", quantity=rpb.SHIFT_QUANTITY_SPOT, kind=rpb.SHIFT_KIND_LOG,
                                   selector=["SPX"])
            r.scenarios.labels.extend(str(j) for j in range(scenarios))
            r.scenarios.sizes.raw = rng.normal(0, 0.02, scenarios).astype("<f8").tobytes()
            call = ch.unary_stream("/pricegrid.v1.RiskService/RunScenarioRisk")
            small = rpb.RunScenarioRiskRequest()
            small.CopyFrom(r)
            del small.scenarios.labels[10:]
            small.scenarios.sizes.raw = small.scenarios.sizes.raw[:80]
            for _ in call(small.SerializeToString(), timeout=60):  # warm: imports, pools, the block path
                pass
            before = peak_rss_mib(s.proc.pid)
            received, blocks = 0, 0
            for data in call(r.SerializeToString(), timeout=120):
                part = rpb.RunScenarioRiskResponse.FromString(data)
                if part.WhichOneof("part") == "block":
                    received += len(part.block.pnl)
                    blocks += 1
                elif part.WhichOneof("part") == "trailer":
                    assert part.trailer.failed_cells == 0
            growth = peak_rss_mib(s.proc.pid) - before
        cube_mib = trades * scenarios * 8 / 2**20
        assert received == trades * scenarios * 8 and blocks >= 50
        print(f"server peak RSS grew {growth:.0f} MiB while streaming a {cube_mib:.0f} MiB cube")
        assert growth < cube_mib / 4, (growth, cube_mib)
    finally:
        s.kill()


def test_sighup_with_broken_certificate_files_keeps_the_old_one_and_says_so(tmp_path):
    """SIGHUP after the certificate file was replaced by garbage, then by a certificate whose
    key is not the key file's: each logs tls_reload_failed (never tls_reloaded) and the old
    certificate goes on serving; a good new pair is then taken."""
    from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market, tls_credentials
    from tests.server.certs import TestCA

    ca = TestCA(tmp_path)
    cert, key = ca.issue("pricegrid-test-server", server=True)
    (tmp_path / "second").mkdir()
    second = TestCA(tmp_path / "second", "second CA")
    new_cert, new_key = second.issue("pricegrid-test-server-2", server=True)
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    s = Server("--tls-cert", str(live_cert), "--tls-key", str(live_key))

    def priced(ca_file) -> bool:
        with FrontOfficeClient(target=s.address, credentials=tls_credentials(str(ca_file)), timeout=5) as fo:
            return fo.price(EuropeanOption("call", strike=100.0, expiry=0.5),
                            Market(spot=100.0, rate=0.03, volatility=0.2)).price > 0

    try:
        for cert_bytes, key_bytes, why in ((b"garbage", key.read_bytes(), "not a PEM certificate"),
                                           (new_cert.read_bytes(), key.read_bytes(), "not the private key of")):
            live_cert.write_bytes(cert_bytes)
            live_key.write_bytes(key_bytes)
            s.proc.send_signal(signal.SIGHUP)
            event = s.wait_for(lambda e: e.get("event") in ("tls_reloaded", "tls_reload_failed"))
            assert event["event"] == "tls_reload_failed" and why in event["error"]
            assert priced(ca.ca_file)
        live_cert.write_bytes(new_cert.read_bytes())
        live_key.write_bytes(new_key.read_bytes())
        s.proc.send_signal(signal.SIGHUP)
        assert s.wait_for(lambda e: e.get("event") in ("tls_reloaded", "tls_reload_failed"))["event"] == \
            "tls_reloaded"
        assert priced(second.ca_file)
    finally:
        s.kill()
