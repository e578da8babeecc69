"""Security wiring: TLS and mutual TLS for the server's port, the auth policy file, and the
rule that plaintext is for loopback only.

TLS. ``tls_cert`` and ``tls_key`` (PEM files) turn the port into TLS; ``tls_client_ca`` (a PEM
bundle) makes it mutual TLS: every client must present a certificate signed by that CA
(the handshake fails otherwise). The files are read again on SIGHUP (``CertificateReloader``):
new handshakes get the new certificate, open connections keep theirs. A file that cannot be
read or parsed on reload keeps the old certificate and logs the error.

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
    algorithms = ["RS256", "ES256"]
    issuer = "https://idp.example"     # optional
    audience = "pricegrid"             # optional
    roles_claim = "roles"              # a list, or a space-separated string
    leeway_s = 30

    [mtls]                             # client certificate name (CN or SAN) -> roles
    "risk-engine.bank.example" = ["risk"]

    [open]
    methods = ["/grpc.health.v1.Health/*"]   # always open (the default)
    anonymous_roles = []                     # roles of a call without credentials

    [details]                          # who may use reflection and sees ServerInfo's build details
    roles = ["admin"]                  # (default: admin when defined)

Relative key paths are read relative to the policy file.
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

_log = structlog.get_logger("pricegrid.security")

#: methods only the roles of ``[details]`` may call (health is always open); those roles also
#: see ServerInfo's build details and versions (other callers get its limits and models)
DETAIL_METHODS = ("/grpc.reflection.v1alpha.ServerReflection/*", "/grpc.reflection.v1.ServerReflection/*")


def load_policy(path: str) -> AuthPolicy:
    """The auth policy of a TOML file (see the module docstring). Raises ValueError naming
    the file and the key on anything wrong: a server with a broken policy must not start."""
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
    roles = data.get("roles", {})
    if not isinstance(roles, dict) or not roles:
        raise ValueError(f"auth policy {path}: [roles] must define at least one role")
    roles = {name: tuple(_strings(v, f"roles.{name}", path)) for name, v in roles.items()}
    jwt_settings = None
    if "jwt" in data:
        j = data["jwt"]
        keys = tuple(_read_key(os.path.join(base, k), path) for k in _strings(j.get("keys", []), "jwt.keys", path))
        try:
            jwt_settings = JwtSettings(
                keys=keys,
                algorithms=tuple(_strings(j.get("algorithms", ["RS256", "ES256", "EdDSA"]), "jwt.algorithms", path)),
                issuer=j.get("issuer"), audience=j.get("audience"), roles_claim=j.get("roles_claim", "roles"),
                leeway_s=float(j.get("leeway_s", 30.0)), require_exp=bool(j.get("require_exp", True)),
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"auth policy {path}: {exc}") from None
    mtls = {name: tuple(_strings(v, f"mtls.{name}", path)) for name, v in data.get("mtls", {}).items()}
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
    return policy


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


class CertificateReloader:
    """Server TLS credentials whose certificate, key and client CA are read again after
    ``request_reload()`` (the SIGHUP handler calls it), at the next handshake."""

    def __init__(self, cert: str, key: str, client_ca: str = ""):
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._lock = threading.Lock()
        self._reload = False
        self.loaded = 0  # how many times the files were read (1 at start)
        self._config = self._load()

    def _load(self):
        config = grpc.ssl_server_certificate_configuration(
            [(_read(self.key), _read(self.cert))], root_certificates=_read(self.client_ca) if self.client_ca else None
        )
        self.loaded += 1
        return config

    def request_reload(self) -> None:
        with self._lock:
            self._reload = True

    def _fetch(self):
        """gRPC calls this at each handshake: a new configuration, or None to keep the old."""
        with self._lock:
            if not self._reload:
                return None
            self._reload = False
        try:
            config = self._load()
        except (OSError, ValueError) as exc:
            _log.error("tls_reload_failed", error=str(exc), cert=self.cert)
            return None
        _log.info("tls_reloaded", cert=self.cert, client_ca=self.client_ca or None)
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
