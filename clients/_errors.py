"""One error type for every failed call, built from gRPC's rich status.

The server answers a bad request with ``INVALID_ARGUMENT`` (or ``RESOURCE_EXHAUSTED`` for a
request over its limits) and a ``google.rpc.Status`` whose details hold a
``google.rpc.BadRequest`` naming each offending field::

    >>> try:
    ...     client.price(EuropeanOption(option_type="call", strike=-1.0, expiry=0.5), market)
    ... except PricingError as e:
    ...     e.code, e.field, e.field_violations
    (<StatusCode.INVALID_ARGUMENT: (3, 'invalid argument')>, 'european.strike',
     [('european.strike', 'must be > 0')])
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

_CODES: dict[int, grpc.StatusCode] = {sc.value[0]: sc for sc in grpc.StatusCode}

#: codes that mean "the request was wrong": the CLI exits 2 on them, 1 on the rest.
BAD_INPUT_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
    }
)


def status_code(code: int | grpc.StatusCode) -> grpc.StatusCode:
    """A google.rpc.Code number -> grpc.StatusCode (``UNKNOWN`` for numbers gRPC lacks)."""
    if isinstance(code, grpc.StatusCode):
        return code
    return _CODES.get(int(code), grpc.StatusCode.UNKNOWN)


class PricingError(Exception):
    """A call failed: ``code`` (grpc.StatusCode), ``message`` and the ``field_violations``
    (``[(field, description), ...]``) the server named, if any.

    Raised for whole-call failures (bad request, deadline exceeded, server unavailable) and,
    on a stream, for the one message that failed.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        field_violations: list[tuple[str, str]] | None = None,
    ) -> None:
        self.code = status_code(code)
        self.message = message
        self.field_violations = list(field_violations or [])
        super().__init__(self.__str__())

    @property
    def field(self) -> str | None:
        """The first offending field's path, or ``None``."""
        return self.field_violations[0][0] if self.field_violations else None

    @property
    def bad_input(self) -> bool:
        """Whether the request itself was wrong (as opposed to the server or the network)."""
        return self.code in BAD_INPUT_CODES

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        fields = ", ".join(f"{f}: {d}" if d and d != self.message else f for f, d in self.field_violations if f)
        return f"{text} ({fields})" if fields else text

    def __repr__(self) -> str:
        return f"PricingError(code={self.code!r}, message={self.message!r}, field_violations={self.field_violations!r})"

    def __reduce__(self):
        return (type(self), (self.code, self.message, self.field_violations))

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "PricingError":
        """Build from a failed call (sync ``grpc.RpcError``/``grpc.Call`` or ``AioRpcError``),
        reading ``google.rpc.BadRequest`` field violations from the rich status."""
        code = _call(error, "code") or grpc.StatusCode.UNKNOWN
        message = _call(error, "details") or ""
        violations: list[tuple[str, str]] = []
        rich = _rich_status(error)
        if rich is not None:
            message = message or rich.message
            violations = _field_violations(rich)
        return cls(code, message or code.name.lower().replace("_", " "), violations)

    @classmethod
    def from_error_message(cls, error) -> "PricingError":
        """Build from a pricegrid.v1.Error (an error on one stream message)."""
        violations = [(error.field, error.message)] if error.field else []
        return cls(status_code(error.code), error.message, violations)


@dataclass(frozen=True, slots=True)
class RowError:
    """An error on one row of a batch; ``row`` counts from the start of the whole batch."""

    row: int
    code: grpc.StatusCode
    field: str
    message: str


def _call(error, name: str):
    fn = getattr(error, name, None)
    if fn is None:
        return None
    try:
        return fn()
    except Exception:  # a half-built RpcError may not answer
        return None


def _rich_status(error):
    """The google.rpc.Status in the trailing metadata, if the server sent one."""
    from grpc_status import rpc_status

    try:
        return rpc_status.from_call(error)
    except ValueError:
        # Code or message disagree with the rich status (a proxy rewrote them): trust the
        # details anyway, they are what the server meant.
        from google.rpc import status_pb2

        for key, value in _call(error, "trailing_metadata") or ():
            if key == "grpc-status-details-bin":
                return status_pb2.Status.FromString(value)
    except Exception:
        return None
    return None


def _field_violations(rich) -> list[tuple[str, str]]:
    from google.rpc import error_details_pb2

    out: list[tuple[str, str]] = []
    for detail in rich.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend((v.field, v.description) for v in bad.field_violations)
    return out
