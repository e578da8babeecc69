"""TLS, mutual TLS, tokens and roles on a real server (127.0.0.1, ephemeral port) called with
our own clients: certificates made here by a test CA, tokens signed with a key generated here
and verified by the server against its public half (the policy file), every role allowed
and denied, no detail in refusals, reflection and build details for the detail role only,
health always open, certificates reloaded on request (SIGHUP's path)."""

from __future__ import annotations

import time

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market, MarketClient, PricingError, RiskClient
from pricegrid.clients import TokenSource, tls_credentials
from pricegrid.server.app.security import check_plaintext
from pricegrid.server.app.server import ConfigError
from pricegrid.server.app.settings import Settings
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc
from tests.conftest import start_server
from tests.server.certs import TestCA

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OPTION = EuropeanOption("call", strike=100.0, expiry=0.5)
MARKET = Market(spot=100.0, rate=0.03, volatility=0.2)


def token(roles, *, key=KEY, exp_in=300.0, sub="alice") -> str:
    return jwt.encode({"sub": sub, "roles": roles, "exp": int(time.time() + exp_in), "aud": "pricegrid"}, key,
                      algorithm="RS256")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = TestCA(folder)
    server_cert, server_key = ca.issue("pricegrid-test-server", server=True)
    risk_cert, risk_key = ca.issue("risk-engine.test", server=False)
    stranger_cert, stranger_key = ca.issue("stranger.test", server=False)
    (folder / "rogue").mkdir()
    rogue = TestCA(folder / "rogue", "rogue CA")
    rogue_cert, rogue_key = rogue.issue("risk-engine.test", server=False)  # the right name, the wrong CA
    (folder / "idp.pem").write_bytes(KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    policy = folder / "auth.toml"
    policy.write_text("""
[roles]
trader = ["/pricegrid.v1.PricingService/Price", "/pricegrid.v1.PricingService/PriceStream",
          "/pricegrid.v1.PricingService/ServerInfo"]
risk = ["/pricegrid.v1.PricingService/PriceBatch", "/pricegrid.v1.PricingService/ServerInfo",
        "/pricegrid.v1.MarketDataService/*", "/pricegrid.v1.RiskService/*"]
admin = ["*"]

[jwt]
keys = ["idp.pem"]
algorithms = ["RS256"]
audience = "pricegrid"

[mtls]
"risk-engine.test" = ["risk"]
""")
    return dict(ca=ca, server=(server_cert, server_key), risk=(risk_cert, risk_key),
                stranger=(stranger_cert, stranger_key), rogue=(rogue_cert, rogue_key), policy=policy)


@pytest.fixture(scope="module")
def tls_server(pki):
    cert, key = pki["server"]
    running = start_server(tls_cert=str(cert), tls_key=str(key), tls_client_ca=str(pki["ca"].ca_file),
                           auth_policy=str(pki["policy"]))
    yield running
    running.stop(1.0)


def creds(pki, who=None):
    cert, key = pki[who] if who else (None, None)
    return tls_credentials(str(pki["ca"].ca_file), str(cert) if cert else None, str(key) if key else None)


def _code(fn):
    with pytest.raises(PricingError) as e:
        fn()
    return e.value


def test_a_trader_with_a_token_over_mtls_prices_and_may_not_run_batches(tls_server, pki):
    with FrontOfficeClient(target=tls_server.address, credentials=creds(pki, "stranger"),
                           token=token(["trader"]), timeout=5) as fo:
        assert fo.price(OPTION, MARKET).price > 0
    with RiskClient(target=tls_server.address, credentials=creds(pki, "stranger"), token=token(["trader"]),
                    timeout=10) as risk:
        err = _code(lambda: risk.price_batch(model="bsm", option_type=["call"], strike=[100.0], time_to_expiry=[0.5],
                                             spot=100.0, rate=0.03, volatility=0.2))
    assert err.code.name == "PERMISSION_DENIED" and err.message.endswith("not allowed")


def test_a_risk_engine_known_by_its_certificate_lists_snapshots_but_cannot_price_trades(tls_server, pki):
    with MarketClient(target=tls_server.address, credentials=creds(pki, "risk"), timeout=5) as market:
        assert any(s.name == "demo" for s in market.list_snapshots())
    with FrontOfficeClient(target=tls_server.address, credentials=creds(pki, "risk"), timeout=5) as fo:
        err = _code(lambda: fo.price(OPTION, MARKET))
    assert err.code.name == "PERMISSION_DENIED"


def test_backtests_for_the_risk_role_not_for_traders(tls_server, pki):
    with RiskClient(target=tls_server.address, credentials=creds(pki, "risk"), timeout=10) as risk:
        result = risk.backtest([1.0, -3.0, 0.5], [2.0, 2.0, 2.0])
    assert result.observations == 3 and result.exceptions == 1
    with RiskClient(target=tls_server.address, credentials=creds(pki, "stranger"), token=token(["trader"]),
                    timeout=10) as risk:
        err = _code(lambda: risk.backtest([1.0], [2.0]))
    assert err.code.name == "PERMISSION_DENIED" and err.message.endswith("not allowed")


@pytest.mark.parametrize("case", ["expired", "forged"])
def test_unauthenticated_without_detail(tls_server, pki, case):
    who, tok = {"expired": ("stranger", token(["admin"], exp_in=-600)),
                "forged": ("stranger", token(["admin"], key=rsa.generate_private_key(public_exponent=65537,
                                                                                   key_size=2048)))}[case]
    with FrontOfficeClient(target=tls_server.address, credentials=creds(pki, who), token=tok, timeout=5) as fo:
        err = _code(lambda: fo.price(OPTION, MARKET))
    assert err.code.name == "UNAUTHENTICATED"
    assert "missing or invalid credentials" in err.message
    for leak in ("signature", "expired", "role", "stranger", "idp"):
        assert leak not in err.message.lower()


@pytest.mark.parametrize("case", ["certificate_with_no_role", "token_with_no_known_role"])
def test_an_authenticated_caller_without_a_role_for_the_method_is_permission_denied(tls_server, pki, case):
    """Verified credentials whose roles allow nothing: PERMISSION_DENIED, whether the caller
    is known by its client certificate (mapped to no role) or by a valid token."""
    tok = token(["nobody"]) if case == "token_with_no_known_role" else None
    with FrontOfficeClient(target=tls_server.address, credentials=creds(pki, "stranger"), token=tok, timeout=5) as fo:
        err = _code(lambda: fo.price(OPTION, MARKET))
    assert err.code.name == "PERMISSION_DENIED" and err.message.endswith("not allowed")
    for leak in ("role", "stranger", "nobody"):
        assert leak not in err.message.lower()


def test_handshakes_without_a_client_certificate_or_from_another_ca_fail(tls_server, pki):
    for credentials in (creds(pki), creds(pki, "rogue")):
        with FrontOfficeClient(target=tls_server.address, credentials=credentials, token=token(["admin"]),
                               timeout=3) as fo:
            err = _code(lambda: fo.price(OPTION, MARKET))
        assert err.code.name == "UNAVAILABLE"  # no TLS session: the call never reaches the server
    channel = grpc.insecure_channel(tls_server.address)  # plaintext against a TLS port
    with pytest.raises(grpc.RpcError) as e:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()


def _secure_channel(tls_server, pki, who="stranger", tok=None):
    channel = grpc.secure_channel(tls_server.address, creds(pki, who))
    md = (("authorization", f"Bearer {tok}"),) if tok else ()
    return channel, md


def test_health_is_open_reflection_and_build_details_for_admins(tls_server, pki):
    channel, _ = _secure_channel(tls_server, pki)
    ok = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert ok.status == health_pb2.HealthCheckResponse.SERVING  # no token, a certificate with no role
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    for tok, allowed in ((token(["trader"]), False), (token(["admin"]), True)):
        md = (("authorization", f"Bearer {tok}"),)
        if allowed:
            reply = next(iter(reflect.ServerReflectionInfo(iter([ask]), metadata=md, timeout=5)))
            assert any(s.name == "pricegrid.v1.PricingService" for s in reply.list_services_response.service)
        else:
            with pytest.raises(grpc.RpcError) as e:
                next(iter(reflect.ServerReflectionInfo(iter([ask]), metadata=md, timeout=5)))
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    stub = pricing_pb2_grpc.PricingServiceStub(channel)
    trader = stub.ServerInfo(pb.ServerInfoRequest(), metadata=(("authorization", f"Bearer {token(['trader'])}"),),
                             timeout=5)
    admin = stub.ServerInfo(pb.ServerInfoRequest(), metadata=(("authorization", f"Bearer {token(['admin'])}"),),
                            timeout=5)
    assert trader.limits.max_rows == admin.limits.max_rows > 0 and len(trader.models) == len(admin.models) > 0
    assert not trader.build.compile_args and not trader.versions
    assert admin.build.compiler and admin.versions["grpcio"]
    channel.close()


def test_each_denial_is_audited_and_the_server_keeps_serving(tls_server, pki):
    import structlog

    with structlog.testing.capture_logs() as logs:
        with FrontOfficeClient(target=tls_server.address, credentials=creds(pki, "risk"), timeout=5) as fo:
            _code(lambda: fo.price(OPTION, MARKET))
    denied = [e for e in logs if e.get("event") == "call_denied"]
    assert len(denied) == 1 and denied[0]["subject"] == "risk-engine.test" and denied[0]["code"] == "PERMISSION_DENIED"
    with FrontOfficeClient(target=tls_server.address, credentials=creds(pki, "stranger"), token=token(["trader"]),
                           timeout=5) as fo:
        assert fo.price(OPTION, MARKET).price > 0


def test_a_rotated_token_file_is_read_again(tls_server, pki, tmp_path):
    path = tmp_path / "token"
    path.write_text(token(["risk"]))
    source = TokenSource(file=str(path))
    with FrontOfficeClient(target=tls_server.address, credentials=creds(pki, "stranger"), token=source,
                           timeout=5) as fo:
        assert _code(lambda: fo.price(OPTION, MARKET)).code.name == "PERMISSION_DENIED"
        time.sleep(0.01)
        path.write_text(token(["trader"]))
        assert fo.price(OPTION, MARKET).price > 0


def test_new_certificates_are_served_after_a_reload(pki, tmp_path):
    """The server's certificate files replaced and reloaded (what SIGHUP does): new
    handshakes see the new certificate; a file that does not parse, or a key that is not the
    certificate's, keeps the old one and is logged as a failure, not as a reload."""
    import structlog

    cert, key = pki["server"]
    live_cert, live_key = tmp_path / "server.crt", tmp_path / "server.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    running = start_server(tls_cert=str(live_cert), tls_key=str(live_key))
    try:
        other = TestCA(tmp_path, "second CA")
        new_cert, new_key = other.issue("pricegrid-test-server-2", server=True)

        def served_by(ca_file) -> bool:
            with FrontOfficeClient(target=running.address, credentials=tls_credentials(str(ca_file)),
                                   timeout=5) as fo:
                return fo.price(OPTION, MARKET).price > 0

        assert served_by(pki["ca"].ca_file)
        for cert_bytes, key_bytes, why in ((b"not a certificate", key.read_bytes(), "not a PEM certificate"),
                                           (new_cert.read_bytes(), key.read_bytes(), "not the private key of"),
                                           (cert.read_bytes(), b"garbage", "not an unencrypted PEM private key")):
            live_cert.write_bytes(cert_bytes)
            live_key.write_bytes(key_bytes)
            with structlog.testing.capture_logs() as logs:
                assert running.certificates.request_reload() is False
            events = [e["event"] for e in logs]
            assert events == ["tls_reload_failed"] and why in logs[0]["error"]
            assert served_by(pki["ca"].ca_file)  # the old certificate kept
        live_cert.write_bytes(new_cert.read_bytes())
        live_key.write_bytes(new_key.read_bytes())
        with structlog.testing.capture_logs() as logs:
            assert running.certificates.request_reload() is True
        assert "tls_reload_failed" not in [e["event"] for e in logs]  # (tls_reloaded is info: the tests log warnings)
        assert served_by(other.ca_file)  # trusted by the new CA only
        assert running.certificates.loaded == 2 and running.certificates.failed == 3
    finally:
        running.stop(1.0)


@pytest.mark.parametrize("case", ["missing", "garbage", "mismatched_key", "garbage_client_ca"])
def test_certificate_files_that_do_not_parse_stop_the_server_from_starting(pki, tmp_path, case):
    cert, key = pki["server"]
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate")
    other_key = pki["risk"][1]
    files = {"missing": (tmp_path / "nonexistent.pem", key, None, "nonexistent.pem: No such file"),
             "garbage": (garbage, key, None, "garbage.pem: not a PEM certificate"),
             "mismatched_key": (cert, other_key, None, f"{other_key}: not the private key of {cert}"),
             "garbage_client_ca": (cert, key, garbage, "garbage.pem: not a PEM certificate")}[case]
    with pytest.raises(ConfigError, match="^TLS: ") as e:
        start_server(tls_cert=str(files[0]), tls_key=str(files[1]), tls_client_ca=str(files[2] or ""))
    assert files[3] in str(e.value)


def test_plaintext_off_loopback_needs_to_be_allowed():
    assert check_plaintext("0.0.0.0", tls=False, allow_plaintext=False) is not None
    with pytest.raises(ConfigError, match="refusing plaintext on 0.0.0.0"):
        start_server(host="0.0.0.0")
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        Settings(tls_cert="x.pem")
