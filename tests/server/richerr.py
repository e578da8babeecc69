"""Read google.rpc.BadRequest field violations off a failed call."""

from google.rpc import error_details_pb2
from grpc_status import rpc_status


def violations(error) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)
    out = []
    if status is None:
        return out
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out += [(v.field, v.description) for v in br.field_violations]
    return out
