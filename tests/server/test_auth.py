"""Authentication and authorization (server/rpc/auth.py) and the policy file
(server/app/security.py), with real keys and tokens: RSA and EC keys generated here,
tokens signed by PyJWT, a TOML policy written to a temporary folder.

The end-to-end checks (TLS and mTLS handshakes, tokens on a real server, roles allowed
and denied through our clients) are in tests/server/test_rpc_security.py.
"""

from __future__ import annotations

import time

import jwt
import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pricegrid.server.app.security import check_plaintext, is_loopback, load_policy
from pricegrid.server.domain.errors import Code, ServiceError
from pricegrid.server.rpc.auth import (
    DENIED_MESSAGE,
    UNAUTHENTICATED_MESSAGE,
    Authorizer,
    AuthPolicy,
    JwtSettings,
)

PRICE = "/pricegrid.v1.PricingService/Price"
BATCH = "/pricegrid.v1.PricingService/PriceBatch"
INFO = "/pricegrid.v1.PricingService/ServerInfo"
PUT = "/pricegrid.v1.MarketDataService/PutSnapshot"
BACKTEST = "/pricegrid.v1.RiskService/Backtest"
HEALTH = "/grpc.health.v1.Health/Check"
REFLECT = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def _pem_public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _token(key=RSA_KEY, alg="RS256", **claims) -> str:
    body = {"sub": "alice", "roles": ["trader"], "exp": int(time.time()) + 300, "iss": "idp", "aud": "pricegrid"}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg)


def _policy_file(tmp_path, extra: str = "") -> str:
    (tmp_path / "idp.pem").write_bytes(_pem_public(RSA_KEY))
    (tmp_path / "idp-ec.pem").write_bytes(_pem_public(EC_KEY))
    path = tmp_path / "auth.toml"
    path.write_text(f"""
[roles]
trader = ["{PRICE}", "/pricegrid.v1.PricingService/PriceStream", "/pricegrid.v1.PricingService/ImpliedVolatility"]
risk = ["{BATCH}", "/pricegrid.v1.MarketDataService/*", "/pricegrid.v1.RiskService/*"]
admin = ["*"]

[jwt]
keys = ["idp.pem", "idp-ec.pem"]
algorithms = ["RS256", "ES256"]
issuer = "idp"
audience = "pricegrid"

[mtls]
"risk-engine.test" = ["risk"]
{extra}
""")
    return str(path)


@pytest.fixture()
def authorizer(tmp_path):
    return Authorizer(load_policy(_policy_file(tmp_path)))


def _check(authorizer, method, token=None, names=()):
    md = [("authorization", f"Bearer {token}")] if token else []
    ctx = {"x509_common_name": [n.encode() for n in names]} if names else {}
    return authorizer.check(method, md, ctx, peer="ipv4:127.0.0.1:1", request_id="r1")


def _refused(authorizer, method, code, **kw):
    with pytest.raises(ServiceError) as e:
        _check(authorizer, method, **kw)
    assert e.value.code == code
    assert e.value.message == (UNAUTHENTICATED_MESSAGE if code == Code.UNAUTHENTICATED else DENIED_MESSAGE)
    assert not e.value.violations  # nothing about keys, claims or roles leaks to the caller
    return e.value


def test_a_traders_token_prices_and_is_denied_batches(authorizer):
    p = _check(authorizer, PRICE, token=_token())
    assert p.subject == "alice" and p.roles == {"trader"} and p.via == "jwt"
    _refused(authorizer, BATCH, Code.PERMISSION_DENIED, token=_token())
    _refused(authorizer, PUT, Code.PERMISSION_DENIED, token=_token())
    assert _check(authorizer, BATCH, token=_token(roles=["risk"])).roles == {"risk"}
    assert _check(authorizer, PUT, token=_token(roles="risk trader")).roles == {"risk", "trader"}  # scope string


def test_backtests_are_the_risk_roles(authorizer):
    assert _check(authorizer, BACKTEST, token=_token(roles=["risk"])).roles == {"risk"}
    assert _check(authorizer, BACKTEST, names=("risk-engine.test",)).via == "mtls"
    _refused(authorizer, BACKTEST, Code.PERMISSION_DENIED, token=_token())  # a trader
    assert _check(authorizer, BACKTEST, token=_token(roles=["admin"])).roles == {"admin"}


def test_ec_keys_and_the_second_configured_key(authorizer):
    assert _check(authorizer, PRICE, token=_token(EC_KEY, "ES256")).subject == "alice"


@pytest.mark.parametrize("case", ["expired", "forged", "wrong_issuer", "wrong_audience", "no_exp", "alg_none",
                                  "hs256_with_public_key", "garbage", "not_bearer", "empty"])
def test_bad_tokens_are_unauthenticated(authorizer, case):
    if case == "not_bearer":
        with pytest.raises(ServiceError) as e:
            authorizer.check(PRICE, [("authorization", "Basic dXNlcjpwdw==")], {})
        assert e.value.code == Code.UNAUTHENTICATED
        return
    token = {
        "expired": lambda: _token(exp=int(time.time()) - 120),  # past the 30 s leeway
        "forged": lambda: _token(OTHER_KEY),
        "wrong_issuer": lambda: _token(iss="someone"),
        "wrong_audience": lambda: _token(aud="other"),
        "no_exp": lambda: _token(exp=None),
        "alg_none": lambda: jwt.encode({"sub": "x", "roles": ["admin"], "exp": int(time.time()) + 60}, None,
                                       algorithm="none"),
        "hs256_with_public_key": lambda: jwt.encode(
            {"sub": "x", "roles": ["admin"], "exp": int(time.time()) + 60, "iss": "idp", "aud": "pricegrid"},
            "not-the-key-but-long-enough-for-hs256", algorithm="HS256"),
        "garbage": lambda: "a.b.c",
        "empty": lambda: " ",
    }[case]()
    _refused(authorizer, PRICE, Code.UNAUTHENTICATED, token=token or "x")


def test_an_expired_token_is_accepted_within_the_leeway(authorizer):
    assert _check(authorizer, PRICE, token=_token(exp=int(time.time()) - 5)).subject == "alice"


def test_mtls_identities_map_to_roles(authorizer):
    p = _check(authorizer, BATCH, names=("risk-engine.test",))
    assert p.via == "mtls" and p.roles == {"risk"}
    _refused(authorizer, PRICE, Code.PERMISSION_DENIED, names=("risk-engine.test",))
    # a certificate the handshake verified, mapped to no role: authenticated, not allowed (as a
    # valid token with no known role)
    _refused(authorizer, PRICE, Code.PERMISSION_DENIED, names=("stranger.test",))
    _refused(authorizer, PRICE, Code.PERMISSION_DENIED, token=_token(roles=["nobody"]))


def test_no_credentials_health_open_details_for_admin_only(authorizer):
    _refused(authorizer, PRICE, Code.UNAUTHENTICATED)
    assert _check(authorizer, HEALTH).via == "anonymous"
    # reflection needs a detail role; ServerInfo only a role that allows it (its build
    # details are for the detail roles: see test_rpc_security.py)
    admin = _check(authorizer, REFLECT, token=_token(roles=["admin"]))
    assert admin.roles == {"admin"} and authorizer.sees_details(admin)
    assert not authorizer.sees_details(_check(authorizer, PRICE, token=_token()))


def test_reflection_needs_a_detail_role(tmp_path):
    policy = load_policy(_policy_file(tmp_path, '[details]\nroles = ["admin"]\n'))
    assert not policy.allows({"trader", "risk"}, REFLECT)
    p = AuthPolicy(roles={"all": ("*",)}, detail_methods=(REFLECT,), detail_roles=())
    assert not p.allows({"all"}, REFLECT) and p.allows({"all"}, PRICE) and p.allows({"all"}, INFO)


def test_every_denial_writes_one_audit_line(authorizer):
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(ServiceError):
            _check(authorizer, BATCH, token=_token())
        with pytest.raises(ServiceError):
            _check(authorizer, PRICE, token=_token(OTHER_KEY))
        _check(authorizer, PRICE, token=_token())
    denied = [e for e in logs if e["event"] == "call_denied"]
    assert [d["code"] for d in denied] == ["PERMISSION_DENIED", "UNAUTHENTICATED"]
    assert denied[0]["method"] == BATCH and denied[0]["subject"] == "alice" and denied[0]["request_id"] == "r1"
    assert "signature" in denied[1]["reason"].lower()


@pytest.mark.parametrize("text,match", [
    ("[roles]\n", "at least one role"),
    ('[roles]\ntrader = "x"\n', "list of strings"),
    ('[roles]\ntrader = ["Price"]\n', "not a method pattern"),
    ('[roles]\ntrader = ["*"]\n[mtls]\n"x" = ["ghost"]\n', "unknown role"),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["missing.pem"]\n', "missing.pem"),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = []\n', "at least one key"),
    ('[roles]\ntrader = ["*"]\n[nonsense]\n', "unknown section"),
    ('[roles\n', "not valid TOML"),
    ('[roles]\ntrader = ["*"]\n[details]\nroles = ["boss"]\n', "unknown role"),
    # every key of every section is known: a misspelt audience or issuer would turn its check off
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["idp.pem"]\naudiance = "pricegrid"\n', r"unknown key\(s\) jwt.audiance"),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["idp.pem"]\nisuer = "idp"\n', r"jwt.isuer"),
    ('[roles]\ntrader = ["*"]\n[open]\nanonymous_role = ["trader"]\n', r"unknown key\(s\) open.anonymous_role "),
    ('[roles]\ntrader = ["*"]\n[details]\nrole = ["trader"]\n', r"details.role "),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["idp.pem"]\naudience = 5\n', r"jwt.audience has the wrong type"),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["idp.pem"]\nrequire_exp = "no"\n', r"jwt.require_exp has the wrong"),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["idp.pem"]\nalgorithms = ["RS256", "XX999"]\n', "unsupported XX999"),
    # key files parsed at load, each able to verify one of the algorithms
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["garbage.pem"]\n', r"garbage.pem: not a PEM public key"),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["idp-ec.pem"]\nalgorithms = ["RS256"]\n', r"idp-ec.pem: a .* verifies none"),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["idp.pem"]\nalgorithms = ["HS256"]\n', "set jwt.hs_secret = true"),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["secret"]\nhs_secret = true\nalgorithms = ["HS256", "RS256"]\n',
     "HMAC algorithms only"),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["short"]\nhs_secret = true\nalgorithms = ["HS256"]\n',
     r"short: an HMAC secret of 31 bytes; HS256 needs at least 32"),
    ('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["secret"]\nhs_secret = true\nalgorithms = ["HS512"]\n',
     r"secret: an HMAC secret of 32 bytes; HS512 needs at least 64"),
    # method patterns (roles and open) that the server serves; roles that exist
    ('[roles]\ntrader = ["*"]\n[open]\nmethods = ["not-a-method"]\n', r"open.methods: 'not-a-method' is not a method"),
    ('[roles]\ntrader = ["*"]\n[open]\nmethods = ["/grpc.health.v1.Health/Chek"]\n',
     r"open.methods: '/grpc.health.v1.Health/Chek' matches no method"),
    ('[roles]\ntrader = ["/pricegrid.v1.PricingServce/*"]\n', r"roles.trader: '/pricegrid.v1.PricingServce/\*' matches no"),
])
def test_a_broken_policy_file_is_refused_naming_the_key(tmp_path, text, match):
    (tmp_path / "idp.pem").write_bytes(_pem_public(RSA_KEY))
    (tmp_path / "idp-ec.pem").write_bytes(_pem_public(EC_KEY))
    (tmp_path / "garbage.pem").write_bytes(b"-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    (tmp_path / "secret").write_bytes(b"s" * 32 + b"\n")
    (tmp_path / "short").write_bytes(b"s" * 31 + b"\r\n")  # the line ending is not part of the secret
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        load_policy(str(path))
    assert str(e.value).startswith(f"auth policy {path}: ")


def test_the_readme_policy_and_every_method_pattern_it_names_load(tmp_path):
    """The README's example policy is accepted as written (its key file given)."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    text = re.search(r"```toml\n(\[roles\].*?)```", readme, re.S).group(1)
    (tmp_path / "idp-public.pem").write_bytes(_pem_public(RSA_KEY))
    (tmp_path / "auth.toml").write_text(text)
    policy = load_policy(str(tmp_path / "auth.toml"))
    assert policy.jwt.audience == "pricegrid" and set(policy.roles) == {"trader", "risk", "admin"}


def test_hs_secret_files_verify_hs256_tokens_without_their_line_ending(tmp_path):
    secret = b"a-shared-secret-of-at-least-32-bytes"
    (tmp_path / "hs.secret").write_bytes(secret + b"\n")
    (tmp_path / "auth.toml").write_text('[roles]\ntrader = ["/pricegrid.v1.PricingService/Price"]\n'
                                        '[jwt]\nkeys = ["hs.secret"]\nalgorithms = ["HS256"]\nhs_secret = true\n'
                                        'audience = "pricegrid"\n')
    auth = Authorizer(load_policy(str(tmp_path / "auth.toml")))
    body = {"sub": "bob", "roles": ["trader"], "exp": int(time.time()) + 60, "aud": "pricegrid"}
    assert _check(auth, PRICE, token=jwt.encode(body, secret, algorithm="HS256")).subject == "bob"
    _refused(auth, PRICE, Code.UNAUTHENTICATED, token=jwt.encode(body, secret + b"\n", algorithm="HS256"))
    _refused(auth, PRICE, Code.UNAUTHENTICATED, token=_token(aud="pricegrid"))  # RS256: not an algorithm here


def test_jwt_settings_never_accept_none():
    with pytest.raises(ValueError):
        JwtSettings(keys=(b"k",), algorithms=("none",))


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
                                       ("10.1.2.3", False), ("[::1]", True), ("example.com", False)])
def test_plaintext_only_on_loopback(host, loop):
    assert is_loopback(host) is loop
    assert (check_plaintext(host, tls=False, allow_plaintext=False) is None) is loop
    assert check_plaintext(host, tls=True, allow_plaintext=False) is None
    assert check_plaintext(host, tls=False, allow_plaintext=True) is None
