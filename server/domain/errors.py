"""Errors the domain and service raise, independent of transport.

The transport maps ``code`` to a gRPC status (one table, in ``pricegrid.server.rpc.errors``)
and the violations to ``google.rpc.BadRequest`` field violations.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass, field


class Code(enum.IntEnum):
    """The subset of google.rpc.Code the service raises (same numbers)."""

    OK = 0
    CANCELLED = 1
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class ServiceError(Exception):
    code: Code
    message: str
    violations: list[FieldViolation] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def shown(value) -> str:
    """A value as an error message quotes it: a numpy scalar as the Python number it holds
    (numpy 2 writes np.float64(nan) where the caller sent nan)."""
    return repr(value.item() if hasattr(value, "item") else value)


def invalid(field_path: str, description: str, *, code: Code = Code.INVALID_ARGUMENT) -> ServiceError:
    """One bad field: the message names it, and so does the single violation."""
    return ServiceError(code, f"{field_path}: {description}", [FieldViolation(field_path, description)])


def unavailable(what: str) -> ServiceError:
    """``what`` (the store's database) cannot be reached now: UNAVAILABLE, which callers
    retry, and which says the cause is infrastructure, not the request or a bug. The message
    names nothing internal (the cause goes to the server's log)."""
    return ServiceError(Code.UNAVAILABLE, f"{what} is unavailable; retry later")


#: the most violations one request reports (the transport also caps their bytes)
MAX_VIOLATIONS = 100

# Which code a request with violations of several codes fails with: a malformed request is
# reported as such first (fixing it may change the rest), then what the server lacks, then
# what it refuses to do.
_PRECEDENCE = (Code.INVALID_ARGUMENT, Code.OUT_OF_RANGE, Code.UNIMPLEMENTED, Code.NOT_FOUND,
               Code.FAILED_PRECONDITION, Code.ABORTED, Code.RESOURCE_EXHAUSTED)


class Violations:
    """Every violation of a request, not only the first: each check runs under
    :meth:`check` (or adds with :meth:`add`), and :meth:`raise_if_any` raises one
    ServiceError naming them all (at most ``cap``; one per field, the first found).

    A check that needs a field which is itself invalid (the engine table needs the model)
    is skipped by its caller: the violation of the field it needed is reported instead.
    """

    def __init__(self, cap: int = MAX_VIOLATIONS):
        self.cap = cap
        self.found: list[FieldViolation] = []
        self.codes: list[Code] = []
        self.dropped = 0
        self._fields: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.found)

    def add(self, field_path: str, description: str, code: Code = Code.INVALID_ARGUMENT) -> None:
        if field_path in self._fields:
            return
        if len(self.found) >= self.cap:
            self.dropped += 1
            return
        self._fields.add(field_path)
        self.found.append(FieldViolation(field_path, description))
        self.codes.append(code)

    def extend(self, error: ServiceError) -> None:
        if not error.violations:  # an error without details: its message is the violation
            self.add("", error.message, error.code)
        for v in error.violations:
            self.add(v.field, v.description, error.code)

    @contextlib.contextmanager
    def check(self):
        """Runs a check that raises ServiceError; records its violations and goes on."""
        try:
            yield
        except ServiceError as exc:
            self.extend(exc)

    def error(self) -> ServiceError:
        code = next((c for c in _PRECEDENCE if c in self.codes), self.codes[0])
        text = "; ".join(f"{v.field}: {v.description}" if v.field else v.description for v in self.found)
        if self.dropped:
            text += f"; and {self.dropped} more"
        return ServiceError(code, text, list(self.found))

    def raise_if_any(self) -> None:
        if self.found:
            raise self.error()
