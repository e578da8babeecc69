"""Authentication and authorization of calls: who is calling (a bearer JWT, or the identity
of a mutual-TLS client certificate) and whether their roles allow the method.

* Authentication. ``authorization: Bearer <JWT>`` metadata is verified with PyJWT against the
  configured keys (public keys for RS/ES/PS/EdDSA, shared secrets for HS), algorithms,
  issuer, audience and expiry (with a leeway); the token's roles are read from a claim
  (``roles`` by default; a list, or a space-separated string as OAuth scopes are). A client
  certificate verified by the TLS handshake (mTLS) names its holder by its subject common
  name and subject alternative names; the policy maps those to roles. A call with neither
  gets the anonymous roles (none unless configured).
* Authorization. A role is a list of method patterns: ``/pkg.Service/Method``, or
  ``/pkg.Service/*`` for every method of a service, or ``*``. Open methods (the health
  service by default) need nothing.
* Refusals say nothing about why: UNAUTHENTICATED "missing or invalid credentials" (no
  credentials, or none that verify), PERMISSION_DENIED "not allowed" (a verified token or
  client certificate whose roles, if any, do not allow the method) (the client learns no key ids, claims or role names). The
  reason goes to the audit log line, one per denied call, with the method, the peer, the
  subject and the request id.

The policy is data (``AuthPolicy``); the app layer loads it from a file and hands it here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

import structlog

from pricegrid.server.domain.errors import Code, ServiceError

_audit = structlog.get_logger("pricegrid.audit")

UNAUTHENTICATED_MESSAGE = "missing or invalid credentials"
DENIED_MESSAGE = "not allowed"


@dataclass(frozen=True)
class Principal:
    """Who made a call: ``subject`` (the token's ``sub``, or the certificate's name), its
    roles, and how it was known ("jwt", "mtls" or "anonymous")."""

    subject: str
    roles: frozenset[str]
    via: str


@dataclass(frozen=True)
class JwtSettings:
    """How bearer tokens are verified. ``keys``: PEM public keys or HMAC secrets (bytes),
    tried in order; ``algorithms``: those accepted (never "none")."""

    keys: tuple[bytes, ...]
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    issuer: Optional[str] = None
    audience: Optional[str] = None
    roles_claim: str = "roles"
    leeway_s: float = 30.0
    require_exp: bool = True

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("jwt: at least one key")
        if not self.algorithms or any(a.lower() == "none" for a in self.algorithms):
            raise ValueError("jwt: algorithms must be named and 'none' is never accepted")


@dataclass(frozen=True)
class AuthPolicy:
    """Roles (role -> method patterns), who has which roles, and what is open."""

    roles: Mapping[str, tuple[str, ...]]
    jwt: Optional[JwtSettings] = None
    #: client-certificate identity (common name or SAN) -> roles
    mtls: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: roles of a call without credentials (e.g. ("trader",) on a trusted loopback)
    anonymous_roles: tuple[str, ...] = ()
    #: methods anyone may call
    open_methods: tuple[str, ...] = ("/grpc.health.v1.Health/*",)
    #: methods that show how the server is built (reflection): besides a role that allows
    #: them, the caller needs one of ``detail_roles``, the roles that also see ServerInfo's
    #: build details and versions (others get its limits and models only)
    detail_methods: tuple[str, ...] = ()
    detail_roles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        known = set(self.roles)
        for who, roles in list(self.mtls.items()) + [("anonymous_roles", self.anonymous_roles)]:
            unknown = sorted(set(roles) - known)
            if unknown:
                raise ValueError(f"{who}: unknown role(s) {', '.join(unknown)}; defined: {', '.join(sorted(known))}")
        for key, patterns in [(f"roles.{r}", p) for r, p in self.roles.items()] + [("open.methods", self.open_methods)]:
            for p in patterns:
                if not (p == "*" or p.startswith("/")):
                    raise ValueError(f"{key}: {p!r} is not a method pattern (/pkg.Service/Method or *)")

    def allows(self, roles: Iterable[str], method: str) -> bool:
        roles = tuple(roles)
        if any(matches(p, method) for p in self.detail_methods) and not set(roles) & set(self.detail_roles):
            return False
        return any(matches(p, method) for r in roles for p in self.roles.get(r, ()))

    def sees_details(self, roles: Iterable[str]) -> bool:
        return bool(set(roles) & set(self.detail_roles))

    def is_open(self, method: str) -> bool:
        return any(matches(p, method) for p in self.open_methods)


def matches(pattern: str, method: str) -> bool:
    return pattern == "*" or pattern == method or fnmatch.fnmatchcase(method, pattern)


class Authorizer:
    """``check(method, metadata, auth_context, peer, request_id)`` -> Principal, or raises
    ServiceError UNAUTHENTICATED / PERMISSION_DENIED (and writes the audit line, and calls
    ``on_deny(method, code name)``: the metrics count it)."""

    def __init__(self, policy: AuthPolicy, *, on_deny=None):
        self.policy = policy
        self.on_deny = on_deny
        self._jwt = None
        if policy.jwt is not None:
            import jwt  # PyJWT

            self._jwt = jwt

    def check(self, method: str, metadata: Sequence[tuple[str, object]], auth_context: Mapping[str, Sequence[bytes]],
              peer: str = "", request_id: str = "") -> Principal:
        if self.policy.is_open(method):
            return Principal("", frozenset(), "anonymous")
        try:
            principal = self.authenticate(metadata, auth_context)
        except _Refused as exc:
            self._deny(Code.UNAUTHENTICATED, method, peer, request_id, "", exc.reason)
            raise ServiceError(Code.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE) from None
        if not self.policy.allows(principal.roles, method):
            if principal.via == "anonymous":
                self._deny(Code.UNAUTHENTICATED, method, peer, request_id, "", "no credentials")
                raise ServiceError(Code.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
            self._deny(Code.PERMISSION_DENIED, method, peer, request_id, principal.subject,
                       f"roles {sorted(principal.roles)} do not allow the method")
            raise ServiceError(Code.PERMISSION_DENIED, DENIED_MESSAGE)
        return principal

    def sees_details(self, principal: Principal) -> bool:
        """Whether ``principal`` sees how the server is built (ServerInfo's build and versions)."""
        return self.policy.sees_details(principal.roles)

    # ------------------------------------------------------------------ authentication
    def authenticate(self, metadata, auth_context) -> Principal:
        token = _bearer(metadata)
        if token is not None:
            return self._verify(token)
        names = _certificate_names(auth_context)
        if names:
            # verified by the handshake: authenticated, even with no role (then PERMISSION_DENIED,
            # as for a valid token whose roles allow nothing: gRPC's codes say who, then what)
            roles = {r for n in names for r in self.policy.mtls.get(n, ())}
            return Principal(names[0], frozenset(roles), "mtls")
        return Principal("", frozenset(self.policy.anonymous_roles), "anonymous")

    def _verify(self, token: str) -> Principal:
        settings = self.policy.jwt
        if settings is None:
            raise _Refused("a bearer token, and this server verifies none")
        jwt = self._jwt
        options = {"require": ["exp"] if settings.require_exp else [], "verify_aud": settings.audience is not None}
        last = "no key"
        for key in settings.keys:
            try:
                claims = jwt.decode(token, key, algorithms=list(settings.algorithms), audience=settings.audience,
                                    issuer=settings.issuer, leeway=settings.leeway_s, options=options)
            except (jwt.InvalidSignatureError, jwt.InvalidKeyError) as exc:  # not this key: try the next
                last = f"{type(exc).__name__}: {exc}"
                continue
            except jwt.PyJWTError as exc:
                raise _Refused(f"token: {type(exc).__name__}: {exc}") from None
            except (ValueError, TypeError) as exc:  # a key of the wrong type for the token's algorithm
                last = str(exc)
                continue
            roles = claims.get(settings.roles_claim, ())
            if isinstance(roles, str):
                roles = roles.split()
            if not isinstance(roles, (list, tuple)) or not all(isinstance(r, str) for r in roles):
                raise _Refused(f"token: claim {settings.roles_claim!r} is not a list of role names")
            return Principal(str(claims.get("sub", "")), frozenset(roles), "jwt")
        raise _Refused(f"token: signature verified by no configured key ({last})")

    # ------------------------------------------------------------------ audit
    def _deny(self, code: Code, method: str, peer: str, request_id: str, subject: str, reason: str) -> None:
        _audit.warning("call_denied", code=code.name, method=method, peer=peer, subject=subject,
                       request_id=request_id, reason=reason)
        if self.on_deny is not None:
            self.on_deny(method, code.name)


class _Refused(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _bearer(metadata) -> Optional[str]:
    for key, value in metadata or ():
        if key == "authorization":
            value = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _Refused("authorization metadata is not 'Bearer <token>'")
            return token.strip()
    return None


def _certificate_names(auth_context) -> list[str]:
    """The verified client certificate's common name, then its SANs (grpc's auth context)."""
    if not auth_context:
        return []
    names = []
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for v in auth_context.get(key, ()) or ():
            name = v.decode() if isinstance(v, bytes) else str(v)
            if name and name not in names:
                names.append(name)
    return names
