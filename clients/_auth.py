"""Credentials and per-call metadata for every client: TLS (and mutual TLS) channel
credentials from PEM files, a bearer token (a string, or a file read again when it changes,
as token files rotated by an agent are), and a request id on every call.

From the environment when not given:

    PRICEGRID_CA          PEM bundle of the CAs that sign the server's certificate (turns TLS on)
    PRICEGRID_CERT        this client's certificate (mutual TLS), with PRICEGRID_KEY its key
    PRICEGRID_TOKEN       a bearer token (JWT), or
    PRICEGRID_TOKEN_FILE  a file holding one
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Mapping, Optional

import grpc

__all__ = ["tls_credentials", "credentials_from_env", "TokenSource", "MetadataInterceptor", "AioMetadataInterceptor"]


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def tls_credentials(ca: Optional[str] = None, cert: Optional[str] = None,
                    key: Optional[str] = None) -> grpc.ChannelCredentials:
    """TLS channel credentials: ``ca`` the PEM file of the CAs to trust (None: the system's),
    ``cert`` and ``key`` this client's certificate and key for mutual TLS."""
    if (cert is None) != (key is None):
        raise ValueError("mutual TLS needs both a certificate and its key")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca) if ca else None,
        private_key=_read(key) if key else None,
        certificate_chain=_read(cert) if cert else None,
    )


def credentials_from_env(environ: Optional[Mapping[str, str]] = None) -> Optional[grpc.ChannelCredentials]:
    """TLS credentials from PRICEGRID_CA / PRICEGRID_CERT / PRICEGRID_KEY, or None (plaintext)."""
    env = os.environ if environ is None else environ
    ca, cert, key = env.get("PRICEGRID_CA"), env.get("PRICEGRID_CERT"), env.get("PRICEGRID_KEY")
    if not (ca or cert or key):
        return None
    return tls_credentials(ca or None, cert or None, key or None)


class TokenSource:
    """A bearer token: fixed, or read from a file (again whenever its modification time
    changes). ``from_env()``: PRICEGRID_TOKEN, else PRICEGRID_TOKEN_FILE, else None."""

    def __init__(self, token: Optional[str] = None, *, file: Optional[str] = None):
        if (token is None) == (file is None):
            raise ValueError("give a token or a token file (one of them)")
        self._token = token.strip() if token is not None else None
        self._file = file
        self._mtime = None
        self._lock = threading.Lock()
        if file is not None:
            self.token()  # a missing or empty file is an error now, not at the first call

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Optional["TokenSource"]:
        env = os.environ if environ is None else environ
        if env.get("PRICEGRID_TOKEN"):
            return cls(env["PRICEGRID_TOKEN"])
        if env.get("PRICEGRID_TOKEN_FILE"):
            return cls(file=env["PRICEGRID_TOKEN_FILE"])
        return None

    def token(self) -> str:
        if self._file is None:
            return self._token
        with self._lock:
            mtime = os.stat(self._file).st_mtime_ns
            if mtime != self._mtime:
                text = _read(self._file).decode().strip()
                if not text:
                    raise ValueError(f"token file {self._file} is empty")
                self._token, self._mtime = text, mtime
            return self._token


def _metadata(details, tokens: Optional[TokenSource]):
    md = list(details.metadata or ())
    keys = {k for k, _ in md}
    if "x-request-id" not in keys:
        md.append(("x-request-id", uuid.uuid4().hex))
    if tokens is not None and "authorization" not in keys:
        md.append(("authorization", f"Bearer {tokens.token()}"))
    return md


class _Details(grpc.ClientCallDetails):
    def __init__(self, details, metadata):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class MetadataInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                          grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds a request id (unless the call has one) and the bearer token to every call."""

    def __init__(self, tokens: Optional[TokenSource] = None):
        self.tokens = tokens

    def _d(self, details):
        return _Details(details, _metadata(details, self.tokens))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._d(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._d(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._d(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._d(details), request_iterator)


def _aio_details(details, tokens):
    return grpc.aio.ClientCallDetails(details.method, details.timeout, _metadata(details, tokens),
                                      details.credentials, details.wait_for_ready)


class _AioUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, tokens):
        self.tokens = tokens

    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(_aio_details(details, self.tokens), request)


class _AioStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, tokens):
        self.tokens = tokens

    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await continuation(_aio_details(details, self.tokens), request_iterator)


def AioMetadataInterceptor(tokens: Optional[TokenSource] = None) -> list:
    """The aio interceptors that add the request id and the bearer token (unary and streams)."""
    return [_AioUnaryUnary(tokens), _AioStreamStream(tokens)]
