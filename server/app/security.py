"""Security wiring: TLS and mutual TLS for the server's port, the auth policy file, and the
rule that plaintext is for loopback only.

TLS. ``tls_cert`` and ``tls_key`` (PEM files) turn the port into TLS; ``tls_client_ca`` (a PEM
bundle) makes it mutual TLS: every client must present a certificate signed by that CA
(the handshake fails otherwise). The files are read again on SIGHUP (``CertificateReloader``):
new handshakes get the new certificate, open connections keep theirs. The new files are
parsed and checked first (the key is the certificate's, the CA bundle parses); a file that
cannot be read or parsed, or a key that is not the certificate's, keeps the old certificate
and logs ``tls_reload_failed``. The auth policy is read at start only (a new policy takes a
restart).

Plaintext. Without TLS the server binds only a loopback address, unless ``allow_plaintext``
says otherwise (for a sidecar or a mesh that terminates TLS in front of it).

Auth policy (``auth_policy``: a TOML file; without it every call is allowed, as before)::

    # roles: method patterns (/pkg.Service/Method, /pkg.Service/*, or *)
    [roles]
    trader    = ["/pricegrid.v1.PricingService/Price", "/pricegrid.v1.PricingService/PriceStream",
                 "/pricegrid.v1.PricingService/ImpliedVolatility", "/pricegrid.v1.PricingService/ServerInfo"]
    risk      = ["/pricegrid.v1.PricingService/PriceBatch",
                 "/pricegrid.v1.PricingService/ImpliedVolatilityBatch",
                 "/pricegrid.v1.PricingService/ServerInfo",      # RiskClient plans chunks by its limits
                 "/pricegrid.v1.MarketDataService/*",
                 "/pricegrid.v1.RiskService/*"]                 # VaR backtests (and the risk RPCs to come)
    admin     = ["*"]

    [jwt]                              # bearer tokens (optional)
    keys = ["/etc/pricegrid/idp.pem"]  # PEM public keys (or HMAC secret files with hs_secret = true)
    algorithms = ["RS256", "ES256"]    # PyJWT's, never none; default RS256, ES256, EdDSA
    issuer = "https://idp.example"     # optional
    audience = "pricegrid"             # optional
    roles_claim = "roles"              # a list, or a space-separated string
    leeway_s = 30
    require_exp = true
    hs_secret = false                  # true: keys are shared secrets and algorithms HS256/384/512 only
                                       # (a file's trailing CR/LF is not part of the secret; at least
                                       # as many bytes as the hash, RFC 7518 3.2)

    [mtls]                             # client certificate name (CN or SAN) -> roles
    "risk-engine.bank.example" = ["risk"]

    [open]
    methods = ["/grpc.health.v1.Health/*"]   # always open (the default)
    anonymous_roles = []                     # roles of a call without credentials

    [details]                          # who may use reflection and sees ServerInfo's build details
    roles = ["admin"]                  # (default: admin when defined)

Relative key paths are read relative to the policy file. The file is checked whole when the
server starts (:func:`load_policy`): an unknown section or key, a key file that does not
parse, an algorithm PyJWT does not have, a method pattern that matches no method the server
serves, or a role that is not defined stops it with the file and the key named.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import tomllib
from typing import Optional

import grpc
import structlog

from pricegrid.server.rpc.auth import AuthPolicy, JwtSettings
from pricegrid.server.rpc.auth import matches as policy_matches

_log = structlog.get_logger("pricegrid.security")

#: methods only the roles of ``[details]`` may call (health is always open); those roles also
#: see ServerInfo's build details and versions (other callers get its limits and models)
DETAIL_METHODS = ("/grpc.reflection.v1alpha.ServerReflection/*", "/grpc.reflection.v1.ServerReflection/*")


#: the keys each section may hold (``[roles]`` and ``[mtls]`` are maps of names); anything
#: else is a typo, and a misspelt ``audience`` or ``issuer`` would turn its check off
_SECTION_KEYS = {
    "jwt": {"keys", "algorithms", "issuer", "audience", "roles_claim", "leeway_s", "require_exp", "hs_secret"},
    "open": {"methods", "anonymous_roles"},
    "details": {"roles"},
}
#: PyJWT's asymmetric algorithms by the key type that verifies them (HS* take secrets)
_ASYMMETRIC = {"RS": "RSA", "PS": "RSA", "ES": "EC", "EdDSA": "Ed25519/Ed448"}
#: HMAC: shortest secret, in bytes (RFC 7518 section 3.2: at least the hash's output)
_HMAC = {"HS256": 32, "HS384": 48, "HS512": 64}


def served_methods() -> tuple[str, ...]:
    """Every method the server can serve (/pkg.Service/Method), from the descriptors: ours,
    health and reflection (v1 and v1alpha). A policy pattern must match at least one."""
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    from pricegrid.v1 import echo_pb2, market_pb2, pricing_pb2, risk_pb2

    files = [pricing_pb2.DESCRIPTOR, market_pb2.DESCRIPTOR, risk_pb2.DESCRIPTOR, echo_pb2.DESCRIPTOR,
             health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR]
    methods = [f"/{svc.full_name}/{m.name}" for f in files for svc in f.services_by_name.values() for m in svc.methods]
    methods += [m.replace("/grpc.reflection.v1alpha.", "/grpc.reflection.v1.") for m in methods
                if m.startswith("/grpc.reflection.v1alpha.")]
    return tuple(methods)


def load_policy(path: str, methods: Optional[tuple[str, ...]] = None) -> AuthPolicy:
    """The auth policy of a TOML file (see the module docstring). Raises ValueError naming
    the file and the key on anything wrong: a server with a broken policy must not start.
    Checked whole: every key of every section known, its type, key files parsed (a PEM
    public key that fits one of the algorithms; with ``hs_secret = true``, HMAC secrets at
    least as long as the hash), algorithms PyJWT supports, every method pattern (roles and
    open) matching one of ``methods`` (default: :func:`served_methods`), every role named
    defined."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"auth policy {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"auth policy {path}: not valid TOML ({exc})") from None
    base = os.path.dirname(os.path.abspath(path))
    unknown = sorted(set(data) - {"roles", "jwt", "mtls", "open", "details"})
    if unknown:
        raise ValueError(f"auth policy {path}: unknown section(s) {', '.join(unknown)}")
    for section, allowed in _SECTION_KEYS.items():
        value = data.get(section, {})
        if not isinstance(value, dict):
            raise ValueError(f"auth policy {path}: {section} must be a section ([{section}])")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"auth policy {path}: unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}"
                             f" (known: {', '.join(sorted(allowed))})")
    roles = data.get("roles", {})
    if not isinstance(roles, dict) or not roles:
        raise ValueError(f"auth policy {path}: [roles] must define at least one role")
    roles = {name: tuple(_strings(v, f"roles.{name}", path)) for name, v in roles.items()}
    jwt_settings = _jwt(data["jwt"], base, path) if "jwt" in data else None
    mtls = data.get("mtls", {})
    if not isinstance(mtls, dict):
        raise ValueError(f"auth policy {path}: mtls must be a section ([mtls])")
    mtls = {name: tuple(_strings(v, f"mtls.{name}", path)) for name, v in mtls.items()}
    open_ = data.get("open", {})
    details = tuple(_strings(data.get("details", {}).get("roles", ["admin"] if "admin" in roles else []),
                             "details.roles", path))
    try:
        policy = AuthPolicy(
            roles=roles, jwt=jwt_settings, mtls=mtls,
            anonymous_roles=tuple(_strings(open_.get("anonymous_roles", []), "open.anonymous_roles", path)),
            open_methods=tuple(_strings(open_.get("methods", ["/grpc.health.v1.Health/*"]), "open.methods", path)),
            detail_methods=DETAIL_METHODS, detail_roles=details,
        )
    except ValueError as exc:
        raise ValueError(f"auth policy {path}: {exc}") from None
    unknown = sorted(set(details) - set(roles))
    if unknown:
        raise ValueError(f"auth policy {path}: details.roles names unknown role(s) {', '.join(unknown)}")
    served = served_methods() if methods is None else methods
    for key, patterns in [(f"roles.{r}", p) for r, p in roles.items()] + [("open.methods", policy.open_methods)]:
        for pattern in patterns:
            if not any(policy_matches(pattern, m) for m in served):
                raise ValueError(f"auth policy {path}: {key}: {pattern!r} matches no method this server serves")
    return policy


def _jwt(j, base: str, path: str) -> JwtSettings:
    """``[jwt]``, its key files read and parsed now (a key that cannot verify anything is a
    broken policy, not a refusal of every token later)."""
    import jwt

    supported = set(jwt.algorithms.get_default_algorithms()) - {"none"}
    algorithms = tuple(_strings(j.get("algorithms", ["RS256", "ES256", "EdDSA"]), "jwt.algorithms", path))
    wrong = [a for a in algorithms if a not in supported]
    if wrong:
        raise ValueError(f"auth policy {path}: jwt.algorithms: unsupported {', '.join(wrong)}"
                         f" (supported: {', '.join(sorted(supported))})")
    hs_secret = _typed(j, "hs_secret", bool, False, path)
    hmac = [a for a in algorithms if a in _HMAC]
    if hs_secret and len(hmac) != len(algorithms):
        raise ValueError(f"auth policy {path}: jwt.hs_secret = true takes HMAC algorithms only"
                         f" ({', '.join(sorted(_HMAC))}), not {', '.join(a for a in algorithms if a not in _HMAC)}")
    if hmac and not hs_secret:
        raise ValueError(f"auth policy {path}: jwt.algorithms {', '.join(hmac)} need shared secrets:"
                         " set jwt.hs_secret = true (and no public-key algorithms beside them)")
    keys = []
    for name in _strings(j.get("keys", []), "jwt.keys", path):
        file = os.path.join(base, name)
        data = _read_key(file, path)
        keys.append(_secret(data, file, hmac, path) if hs_secret else _public_key(data, file, algorithms, path))
    try:
        return JwtSettings(
            keys=tuple(keys), algorithms=algorithms,
            issuer=_typed(j, "issuer", str, None, path), audience=_typed(j, "audience", str, None, path),
            roles_claim=_typed(j, "roles_claim", str, "roles", path),
            leeway_s=float(_typed(j, "leeway_s", (int, float), 30.0, path)),
            require_exp=_typed(j, "require_exp", bool, True, path),
        )
    except ValueError as exc:
        raise ValueError(f"auth policy {path}: {exc}") from None


def _typed(section: dict, key: str, kind, default, path: str):
    value = section.get(key, default)
    if value is not default and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise ValueError(f"auth policy {path}: jwt.{key} has the wrong type ({type(value).__name__})")
    return value


def _secret(data: bytes, file: str, algorithms: list[str], path: str) -> bytes:
    """An HMAC secret file's bytes, less its line ending(s): trailing CR and LF are not part
    of the secret (``echo secret > file`` writes one; a secret that must end in one cannot be
    given as a file). Nothing else is stripped."""
    secret = data.rstrip(b"\r\n")
    need = max(_HMAC[a] for a in algorithms)
    if len(secret) < need:
        raise ValueError(f"auth policy {path}: jwt key {file}: an HMAC secret of {len(secret)} bytes; "
                         f"{', '.join(algorithms)} needs at least {need} (RFC 7518, 3.2)")
    return secret


def _public_key(data: bytes, file: str, algorithms: tuple[str, ...], path: str) -> bytes:
    """``data`` if it is a PEM public key that one of ``algorithms`` verifies with."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"auth policy {path}: jwt key {file}: not a PEM public key ({exc})") from None
    fits = {"RSA": isinstance(key, rsa.RSAPublicKey), "EC": isinstance(key, ec.EllipticCurvePublicKey),
            "Ed25519/Ed448": isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))}
    if not any(fits[_ASYMMETRIC[a if a == "EdDSA" else a[:2]]] for a in algorithms):
        raise ValueError(f"auth policy {path}: jwt key {file}: a {type(key).__name__} verifies none of "
                         f"{', '.join(algorithms)}")
    return data


def _strings(value, key: str, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"auth policy {path}: {key} must be a list of strings")
    return value


def _read_key(file: str, path: str) -> bytes:
    try:
        with open(file, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ValueError(f"auth policy {path}: jwt key {file}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- TLS
def _read(file: str) -> bytes:
    with open(file, "rb") as fh:
        return fh.read()


def read_pair(cert: str, key: str, client_ca: str = "") -> tuple[bytes, bytes, Optional[bytes]]:
    """The PEM bytes of a certificate chain, its private key and a client CA bundle, checked:
    each file parses, the key is the first certificate's, the bundle holds a certificate.
    Raises ValueError naming the file (gRPC's own loader does not parse the PEM when handed
    it, and fails later, inside gRPC core, where no one hears)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    def read(file: str) -> bytes:
        try:
            return _read(file)
        except OSError as exc:
            raise ValueError(f"{file}: {exc.strerror or exc}") from None

    def certificates(file: str, data: bytes) -> list:
        try:
            chain = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise ValueError(f"{file}: not a PEM certificate ({exc})") from None
        return chain

    cert_pem, key_pem = read(cert), read(key)
    chain = certificates(cert, cert_pem)
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{key}: not an unencrypted PEM private key ({exc})") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (private.public_key().public_bytes(serialization.Encoding.DER, public)
            != chain[0].public_key().public_bytes(serialization.Encoding.DER, public)):
        raise ValueError(f"{key}: not the private key of {cert}")
    ca_pem = None
    if client_ca:
        ca_pem = read(client_ca)
        certificates(client_ca, ca_pem)
    return cert_pem, key_pem, ca_pem


class CertificateReloader:
    """Server TLS credentials whose certificate, key and client CA are read again after
    ``request_reload()`` (the SIGHUP handler calls it), at the next handshake. The files are
    checked (:func:`read_pair`) before they replace the old ones: at start a bad file raises
    ValueError; on reload it keeps the old certificate and logs ``tls_reload_failed``."""

    def __init__(self, cert: str, key: str, client_ca: str = ""):
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._lock = threading.Lock()
        self._pending = None  # a checked configuration for the next handshake
        self.loaded = 0  # how many times the files were read and accepted (1 at start)
        self.failed = 0  # reloads refused (the old certificate kept)
        self._config = self._load()

    def _load(self):
        cert, key, ca = read_pair(self.cert, self.key, self.client_ca)
        config = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        self.loaded += 1
        return config

    def request_reload(self) -> bool:
        """Read and check the files now (SIGHUP's handler: the log says at once whether the
        new pair was taken); new handshakes get it. False: refused, the old one kept."""
        try:
            config = self._load()
        except ValueError as exc:
            self.failed += 1
            _log.error("tls_reload_failed", error=str(exc), cert=self.cert, kept="the previous certificate")
            return False
        with self._lock:
            self._pending = config
        _log.info("tls_reloaded", cert=self.cert, client_ca=self.client_ca or None)
        return True

    def _fetch(self):
        """gRPC calls this at each handshake: a new configuration, or None to keep the old."""
        with self._lock:
            config, self._pending = self._pending, None
        return config

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._config, self._fetch,
                                                   require_client_authentication=bool(self.client_ca))


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_plaintext(host: str, tls: bool, allow_plaintext: bool) -> Optional[str]:
    """Why the server must not start (plaintext on a non-loopback address), or None."""
    if tls or allow_plaintext or is_loopback(host):
        return None
    return (f"refusing plaintext on {host}: give tls_cert and tls_key (PRICEGRID_TLS_CERT, PRICEGRID_TLS_KEY), "
            "or allow_plaintext (PRICEGRID_ALLOW_PLAINTEXT=1) behind a proxy that terminates TLS")
