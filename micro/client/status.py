"""Reading a call's outcome from a response's status fields."""

from __future__ import annotations

from ..errors import MicroError, from_grpc, from_http
from ..transport.h2_client import ResponseParts
from ..transport.headers import decode_grpc_message

__all__ = ["raise_for_grpc_status"]


def raise_for_grpc_status(parts: ResponseParts, service: str) -> None:
    """Raise the error a finished gRPC response carries; return if it succeeded."""
    if parts.error is not None:
        raise parts.error
    status = parts.header(":status", "0")
    ct = parts.header("content-type")
    if status != "200" or not ct.startswith("application/grpc"):
        code = int(status) if status.isdigit() else 502
        if code != 200:
            raise MicroError.parse(parts.body, code=code)
        raise from_http(502, f"{service} answered a gRPC call with content type {ct!r}", id=service)
    grpc_status = parts.status_field("grpc-status")
    if grpc_status is None:
        raise from_grpc(13, f"{service} ended the call without a grpc-status", id=service)
    if grpc_status == "0":
        return
    code = int(grpc_status) if grpc_status.isdigit() else 2
    error_json = parts.status_field("micro-error")
    if error_json:
        raise MicroError.parse(error_json, grpc_status=code)
    message = decode_grpc_message(parts.status_field("grpc-message") or "")
    raise from_grpc(code, message, id=service)
