"""The one table from service errors to gRPC statuses, with rich details.

Errors travel as ``google.rpc.Status`` (grpcio-status) carrying ``google.rpc.BadRequest``
field violations, capped so that the trailer stays small: gRPC's default limit on received
metadata is 8 KiB, and the details travel base64-encoded (4/3 of their size) beside the
message. A request reports every violation (``pricegrid.server.domain.errors.Violations``,
at most 100); the trailer holds as many as fit in ``MAX_DETAIL_BYTES``, then one last
violation says how many more there were.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from pricegrid.server.domain.errors import Code, ServiceError

STATUS_OF_CODE = {
    Code.OK: grpc.StatusCode.OK,
    Code.CANCELLED: grpc.StatusCode.CANCELLED,
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ABORTED: grpc.StatusCode.ABORTED,
    Code.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    Code.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    Code.INTERNAL: grpc.StatusCode.INTERNAL,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
}

MAX_VIOLATIONS = 100
MAX_TEXT = 512
MAX_MESSAGE = 1024
MAX_DETAIL_BYTES = 3072  # BadRequest bytes: 4 KiB base64, with the message well under 8 KiB


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_rich_status(error: ServiceError) -> status_pb2.Status:
    status = status_pb2.Status(code=int(error.code), message=_clip(error.message, MAX_MESSAGE))
    if error.violations:
        detail = error_details_pb2.BadRequest()
        size = 0
        shown = error.violations[:MAX_VIOLATIONS]
        for i, v in enumerate(shown):
            item = error_details_pb2.BadRequest.FieldViolation(field=_clip(v.field, 200), description=_clip(v.description))
            n = item.ByteSize() + 3
            if size + n > MAX_DETAIL_BYTES - 64:  # room for the last line
                left = len(error.violations) - i
                detail.field_violations.add(description=f"{left} more violation(s) not shown")
                break
            detail.field_violations.append(item)
            size += n
        else:
            if len(error.violations) > len(shown):
                detail.field_violations.add(description=f"{len(error.violations) - len(shown)} more violation(s) not shown")
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return status


def status(error: ServiceError, request_id: str = "", extra_trailers: tuple = ()) -> grpc.Status:
    """The call's final status for ``error`` (for ``ServicerContext.abort_with_status``): code,
    message and rich details, the request id and any ``extra_trailers`` in the trailers."""
    final = rpc_status.to_status(to_rich_status(error))
    trailers = (*final.trailing_metadata, *extra_trailers)
    if request_id:
        trailers += (("x-request-id", request_id),)
    return final._replace(trailing_metadata=trailers)
