"""Errors the domain and service raise, independent of transport.

The transport maps ``code`` to a gRPC status (one table, in ``pricegrid.server.rpc.errors``)
and the violations to ``google.rpc.BadRequest`` field violations.
"""

from __future__ import annotations

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
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
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


def invalid(field_path: str, description: str, *, code: Code = Code.INVALID_ARGUMENT) -> ServiceError:
    """One bad field: the message names it, and so does the single violation."""
    return ServiceError(code, f"{field_path}: {description}", [FieldViolation(field_path, description)])
