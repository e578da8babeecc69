"""The TypeScript client (clients/typescript) against a real server, checked against the Python
clients on the same server.

The test builds the package as a user would: ``npm ci`` (skipped when node_modules already
holds what package-lock.json pins), ``npm run generate`` (protobuf-ts over proto/, run by the
buf of the test extra), ``npx tsc`` (strict type-check and compile). Then node runs
test/cases.ts twice, plaintext and over mutual TLS with a bearer token, and prints JSON; each
answer here is compared with what FrontOfficeClient / RiskClient get for the same inputs:
prices, Greeks and columns to the last bit (the same server code computes both), errors by
code, message and field violations.

Skipped only when node or npm is missing, or when ``npm ci`` cannot reach the npm registry;
any other failure fails, with npm's or node's output. Node talks to 127.0.0.1 only (proxy
variables are dropped from its environment).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jwt
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pricegrid.clients import EuropeanOption, ExpiryDates, FrontOfficeClient, Market, PricingError, RiskClient
from tests.conftest import start_server
from tests.server.certs import TestCA

pytestmark = pytest.mark.slow

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
#: npm ci output that means "the registry cannot be reached", not "the package is broken"
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "ENETUNREACH",
                  "EHOSTUNREACH")
#: environment variables node must not inherit: proxies (node talks to 127.0.0.1 only) and the
#: client's own settings (each run sets the ones it means)
_DROPPED = re.compile(r"(?i)^(https?_proxy|all_proxy|grpc_proxy|no_proxy|no_grpc_proxy|pricegrid_.*)$")

CALL = EuropeanOption("call", strike=100.0, expiry=0.5)
MARKET = Market(spot=100.0, rate=0.05, dividend_yield=0.01, volatility=0.2)


# ---------------------------------------------------------------------------- building
def _run(args: list[str], *, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(args)} did not finish in {timeout:.0f} s:\n{e.stdout or ''}\n{e.stderr or ''}")


def _check(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _node_modules_current() -> bool:
    """Whether node_modules holds exactly the packages package-lock.json pins (npm's own record
    of the last install, node_modules/.package-lock.json, against the lockfile)."""
    installed = PACKAGE / "node_modules" / ".package-lock.json"
    if not installed.exists():
        return False
    locked = json.loads((PACKAGE / "package-lock.json").read_text())["packages"]
    have = json.loads(installed.read_text())["packages"]
    for path, entry in locked.items():
        if not path:
            continue
        if path in have:
            if have[path].get("version") != entry.get("version"):
                return False
        elif not entry.get("optional"):  # another platform's optional binary is not installed
            return False
    return True


@pytest.fixture(scope="module")
def built() -> dict:
    """The package installed, generated and compiled; the seconds each step took."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript client (not on PATH)")
    took = {}
    start = time.perf_counter()
    if not _node_modules_current():
        done = _run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], timeout=300)
        output = done.stdout + done.stderr
        if done.returncode != 0 and any(code in output for code in NETWORK_ERRORS):
            pytest.skip(f"npm ci cannot reach the npm registry:\n{output[-2000:]}")
        _check(done, "npm ci")
    took["npm_ci"] = time.perf_counter() - start
    start = time.perf_counter()
    # the protoc (buf) and google/rpc protos of the Python that runs this test
    _check(_run(["npm", "run", "generate"], timeout=120, env={**os.environ, "PYTHON": sys.executable}),
           "npm run generate")
    took["generate"] = time.perf_counter() - start
    start = time.perf_counter()
    _check(_run(["npx", "--no", "--", "tsc", "--project", "tsconfig.json"], timeout=120), "npx tsc (strict type-check and compile)")
    took["tsc"] = time.perf_counter() - start
    return took


def _node(mode: str, env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if not _DROPPED.match(k)}
    done = _run(["node", "dist/test/cases.js", mode], timeout=60, env={**clean, **env})
    _check(done, f"node dist/test/cases.js {mode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def silent_port():
    """A port on 127.0.0.1 that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture(scope="module")
def plain(built, server, silent_port) -> dict:
    return _node("plain", {"PRICEGRID_TARGET": server.address, "PRICEGRID_TEST_SILENT": silent_port})


@pytest.fixture(scope="module")
def fo(server):
    with FrontOfficeClient(target=server.address) as client:
        yield client


@pytest.fixture(scope="module")
def secure(built, tmp_path_factory) -> dict:
    """The tls run: a server with mutual TLS and tokens (traders may price, not run batches);
    node's CA, client certificate and trader's token come from PRICEGRID_* variables."""
    folder = tmp_path_factory.mktemp("ts-pki")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": "ts-client", "roles": ["trader"], "exp": int(time.time() + 300), "aud": "pricegrid"},
                       key, algorithm="RS256")
    ca = TestCA(folder)
    server_cert, server_key = ca.issue("pricegrid-test-server", server=True)
    client_cert, client_key = ca.issue("ts-client.test", server=False)  # a certificate with no role
    (folder / "idp.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    policy = folder / "auth.toml"
    policy.write_text('[roles]\ntrader = ["/pricegrid.v1.PricingService/Price", '
                      '"/pricegrid.v1.PricingService/ServerInfo"]\n'
                      '[jwt]\nkeys = ["idp.pem"]\nalgorithms = ["RS256"]\naudience = "pricegrid"\n')
    running = start_server(tls_cert=str(server_cert), tls_key=str(server_key), tls_client_ca=str(ca.ca_file),
                           auth_policy=str(policy))
    try:
        return _node("tls", {"PRICEGRID_TARGET": running.address, "PRICEGRID_CA": str(ca.ca_file),
                             "PRICEGRID_CERT": str(client_cert), "PRICEGRID_KEY": str(client_key),
                             "PRICEGRID_TOKEN": token})
    finally:
        running.stop(1.0)


# ---------------------------------------------------------------------------- helpers
def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


def _ok(outcome: dict):
    assert "ok" in outcome, f"the call failed: {outcome.get('error')}"
    return outcome["ok"]


def _error(outcome: dict) -> dict:
    assert "error" in outcome, f"the call should have failed: {outcome.get('ok')}"
    return outcome["error"]


def _option(o: dict) -> EuropeanOption:
    expiry = o["expiry"]
    if isinstance(expiry, dict):
        expiry = ExpiryDates(valuation_date=expiry["valuationDate"], expiry_date=expiry["expiryDate"],
                             day_count=expiry.get("dayCount", "ACT/365F"))
    return EuropeanOption(o["optionType"], strike=o["strike"], expiry=expiry)


def _market(m: dict) -> Market:
    return Market(spot=m.get("spot"), forward=m.get("forward"), rate=m.get("rate", 0.0),
                  dividend_yield=m.get("dividendYield", 0.0), volatility=m.get("volatility"))


def _same_price(ts: dict, py) -> None:
    """A TypeScript PriceResult equals a Python one, to the last bit."""
    assert ts["price"] == py.price
    assert {_snake(k): v for k, v in ts["greeks"].items()} == py.greeks.as_dict()
    assert ts["values"] == dict(py.values) and ts["methods"] == dict(py.methods)
    assert ts["standardError"] == py.standard_error
    assert {_snake(k): v for k, v in ts["inputs"].items()} == {
        "forward": py.inputs.forward, "discount_factor": py.inputs.discount_factor,
        "time_to_expiry": py.inputs.time_to_expiry, "volatility": py.inputs.volatility}
    assert ts["pricedBy"] == {"model": py.priced_by.model, "engine": py.priced_by.engine,
                              "version": py.priced_by.version}


def _same_error(ts: dict, py: PricingError) -> None:
    assert ts["type"] == "PricegridError"
    assert ts["codeName"] == py.code.name and ts["code"] == py.code.value[0]
    assert ts["details"] == py.message
    assert [(v["field"], v["description"]) for v in ts["fieldViolations"]] == py.field_violations
    assert ts["field"] == py.field and ts["badInput"] == py.bad_input
    assert ts["message"] == str(py)  # reads as the Python client's error


def _column(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


# ---------------------------------------------------------------------------- tests
def test_defaults_come_from_the_environment(plain, server):
    assert plain["target"] == server.address  # $PRICEGRID_TARGET
    assert plain["timeout"] == 1  # seconds, as the Python client


def test_prices_and_greeks_equal_the_python_clients(plain, fo):
    assert [c["name"] for c in plain["prices"]] == ["bsm_call", "bsm_put_dates", "black76_put", "bachelier_call"]
    for case in plain["prices"]:
        ts = _ok(case["result"])
        options = case["options"]
        measures = options.get("measures", [])
        py = fo.price(_option(case["option"]), _market(case["market"]), model=options.get("model", "bsm"),
                      measures=measures)
        _same_price(ts, py)
        assert set(ts["values"]) == {"price", *measures}, case["name"]  # what was asked, no more
        assert ts["price"] > 0, case["name"]
    dates = next(c for c in plain["prices"] if c["name"] == "bsm_put_dates")
    assert _ok(dates["result"])["inputs"]["timeToExpiry"] == 181 / 360  # ACT/360 from the dates


def test_implied_vol_round_trip(plain, fo):
    case = plain["impliedVol"]
    assert case["price"] == fo.price(CALL, MARKET).price
    ts = _ok(case["result"])
    py = fo.implied_vol(_option(case["option"]), _market(case["market"]), case["price"])
    assert ts["volatility"] == py.volatility
    assert ts["volatility"] == pytest.approx(0.2, rel=1e-12)
    assert ts["pricedBy"]["engine"] == py.priced_by.engine == "implied_vol_lets_be_rational"


def test_batches_equal_the_python_risk_client_with_the_bad_row_alone(plain, server):
    by_name = {b["name"]: b for b in plain["batches"]}
    assert set(by_name) == {"years_with_a_bad_row", "dates_black76"}
    with RiskClient(target=server.address) as risk:
        for batch in plain["batches"]:
            c, options = batch["columns"], batch["options"]
            py = risk.price_batch(
                model=options["model"], measures=options["measures"], option_type=c["optionType"],
                strike=np.asarray(c["strike"], dtype=float), time_to_expiry=c.get("timeToExpiry"),
                expiry_date=c.get("expiryDate"), valuation_date=c.get("valuationDate"), day_count=c.get("dayCount"),
                spot=c.get("spot"), forward=c.get("forward"), rate=c.get("rate", 0.0),
                dividend_yield=c.get("dividendYield"), volatility=c["volatility"])
            ts = _ok(batch["result"])
            assert ts["rows"] == py.rows
            assert list(ts["columns"]) == list(py.columns) == options["measures"]
            for name, values in ts["columns"].items():
                np.testing.assert_array_equal(_column(values), py.columns[name], err_msg=name)
            assert {_snake(k) for k in ts["inputs"]} == set(py.inputs)
            for name, values in ts["inputs"].items():
                np.testing.assert_array_equal(_column(values), py.inputs[_snake(name)], err_msg=name)
            assert ts["status"] == py.status.tolist()
            assert [(e["row"], e["codeName"], e["field"], e["message"]) for e in ts["errors"]] == [
                (e.row, e.code.name, e.field, e.message) for e in py.errors]
            assert ts["errorCount"] == py.error_count
            assert ts["pricedBy"]["version"] == py.priced_by.version
    bad = _ok(by_name["years_with_a_bad_row"]["result"])
    assert bad["status"] == [0, 0, 3, 0] and bad["errorCount"] == 1
    assert bad["errors"][0]["row"] == 2 and bad["errors"][0]["field"] == "european.strike"
    assert [v is None for v in bad["columns"]["price"]] == [False, False, True, False]
    assert _ok(by_name["dates_black76"]["result"])["status"] == [0, 0, 0]


def test_bad_requests_are_invalid_argument_naming_every_field(plain, fo):
    case = plain["badPrice"]
    ts = _error(case["result"])
    with pytest.raises(PricingError) as e:
        fo.price(_option(case["option"]), _market(case["market"]))
    _same_error(ts, e.value)
    assert ts["codeName"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in ts["fieldViolations"]] == ["european.strike", "market.volatility"]

    ts = _error(plain["badImpliedVol"]["result"])
    with pytest.raises(PricingError) as e:
        fo.implied_vol(CALL, Market(spot=100.0, rate=0.05, dividend_yield=0.01), plain["badImpliedVol"]["price"])
    _same_error(ts, e.value)
    assert ts["field"] == "price"

    ts = _error(plain["badModel"])
    with pytest.raises(PricingError) as e:
        fo.price(CALL, MARKET, model="black76")
    _same_error(ts, e.value)
    assert ts["field"] == "market.spot"


def test_server_info_and_health(plain, fo):
    ts = _ok(plain["serverInfo"])
    py = fo.server_info()
    assert ts["version"] == py.version and ts["kernelThreads"] == py.kernel_threads
    assert ts["startedAt"] == py.started_at and ts["versions"] == dict(py.versions)
    limits = {f: getattr(py.limits, f) for f in py.limits.__slots__}
    assert {_snake(k): v for k, v in ts["limits"].items()} == limits
    assert [(m["ref"]["model"], m["ref"]["engine"], m["ref"]["version"], m["model"], m["engine"], m["instruments"],
             m["measures"], m["methods"], m["defaultEngine"]) for m in ts["models"]] == [
        (m.ref.model, m.ref.engine, m.ref.version, m.model, m.engine, list(m.instruments), list(m.measures),
         list(m.methods), m.default_engine) for m in py.models]
    assert _ok(plain["health"]) == "SERVING"
    assert _ok(plain["healthPricing"]) == "SERVING"
    assert _error(plain["healthUnknown"])["codeName"] == "NOT_FOUND"


def test_deadlines_an_unreachable_server_and_mistakes_caught_before_sending(plain):
    by_default, per_call = plain["deadlines"]["byDefault"], plain["deadlines"]["perCall"]
    assert _error(by_default["outcome"])["codeName"] == "DEADLINE_EXCEEDED"
    assert _error(per_call["outcome"])["codeName"] == "DEADLINE_EXCEEDED"
    assert 0.95 <= by_default["seconds"] < 3.0  # the client's 1 s
    assert 0.24 <= per_call["seconds"] < 0.9  # the call's own 0.25 s
    unreachable = _error(plain["unreachable"])
    assert unreachable["codeName"] == "UNAVAILABLE" and unreachable["badInput"] is False
    # mistakes the client refuses before sending anything (as the Python client's value objects do)
    assert _error(plain["unknownMeasure"]) == {"type": "RangeError", "message": 'unknown measure "speed"'}
    assert _error(plain["spotAndForward"]) == {"type": "TypeError",
                                               "message": "give the market a spot or a forward, not both"}
    assert _error(plain["badDate"]) == {"type": "RangeError", "message": 'not a date "YYYY-MM-DD": "2025-02-30"'}
    assert _error(plain["afterClose"]) == {"type": "Error", "message": "the client is closed"}


def test_mutual_tls_and_a_bearer_token_from_the_environment(secure, plain):
    assert _ok(secure["price"]) == _ok(plain["prices"][0]["result"])  # the same trade, the same bits
    assert _ok(secure["health"]) == "SERVING"
    assert _error(secure["batch"])["codeName"] == "PERMISSION_DENIED"  # a trader's token was sent
    assert _error(secure["badToken"])["codeName"] == "UNAUTHENTICATED"
    # the certificate alone (verified, mapped to no role): authenticated, not allowed
    assert _error(secure["noToken"])["codeName"] == "PERMISSION_DENIED"

