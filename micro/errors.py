"""One error type that crosses the wire: ``MicroError{id, code, detail, status}``.

The shape is Go Micro's ``errors.Error``: ``code`` is an HTTP status code and
``status`` its reason phrase. Each error also has a gRPC status code, so the
same error travels as an HTTP status plus JSON body on plain calls and as
``grpc-status``/``grpc-message`` trailers (plus the JSON in ``micro-error``) on
gRPC calls, and comes back out as the same class on the other side.

Cancellation is never wrapped: a cancelled caller sees its backend's
cancellation exception, not a ``MicroError``.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, ClassVar

__all__ = [
    "MicroError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "Timeout",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "TooManyRequests",
    "Cancelled",
    "InternalServerError",
    "NotImplementedByServer",
    "BadGateway",
    "Unavailable",
    "GatewayTimeout",
    "GrpcStatus",
    "from_http",
    "from_grpc",
    "grpc_to_http",
    "http_to_grpc",
]


class GrpcStatus:
    """The gRPC status codes (``grpc/status.h``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# HTTP status -> gRPC status, for errors raised by handlers and for HTTP
# responses from non-gRPC peers (the mapping of grpc/doc/http-grpc-status-mapping.md,
# extended to the 4xx codes handlers commonly raise).
_HTTP_TO_GRPC: dict[int, int] = {
    400: GrpcStatus.INVALID_ARGUMENT,
    401: GrpcStatus.UNAUTHENTICATED,
    403: GrpcStatus.PERMISSION_DENIED,
    404: GrpcStatus.NOT_FOUND,
    405: GrpcStatus.UNIMPLEMENTED,
    408: GrpcStatus.DEADLINE_EXCEEDED,
    409: GrpcStatus.ABORTED,
    412: GrpcStatus.FAILED_PRECONDITION,
    413: GrpcStatus.RESOURCE_EXHAUSTED,
    415: GrpcStatus.INVALID_ARGUMENT,
    429: GrpcStatus.RESOURCE_EXHAUSTED,
    499: GrpcStatus.CANCELLED,
    500: GrpcStatus.INTERNAL,
    501: GrpcStatus.UNIMPLEMENTED,
    502: GrpcStatus.UNAVAILABLE,
    503: GrpcStatus.UNAVAILABLE,
    504: GrpcStatus.DEADLINE_EXCEEDED,
}

# gRPC status -> HTTP status (the table used by grpc-gateway).
_GRPC_TO_HTTP: dict[int, int] = {
    GrpcStatus.OK: 200,
    GrpcStatus.CANCELLED: 499,
    GrpcStatus.UNKNOWN: 500,
    GrpcStatus.INVALID_ARGUMENT: 400,
    GrpcStatus.DEADLINE_EXCEEDED: 504,
    GrpcStatus.NOT_FOUND: 404,
    GrpcStatus.ALREADY_EXISTS: 409,
    GrpcStatus.PERMISSION_DENIED: 403,
    GrpcStatus.RESOURCE_EXHAUSTED: 429,
    GrpcStatus.FAILED_PRECONDITION: 400,
    GrpcStatus.ABORTED: 409,
    GrpcStatus.OUT_OF_RANGE: 400,
    GrpcStatus.UNIMPLEMENTED: 501,
    GrpcStatus.INTERNAL: 500,
    GrpcStatus.UNAVAILABLE: 503,
    GrpcStatus.DATA_LOSS: 500,
    GrpcStatus.UNAUTHENTICATED: 401,
}


def http_to_grpc(code: int) -> int:
    """The gRPC status for an HTTP status code."""
    if code in _HTTP_TO_GRPC:
        return _HTTP_TO_GRPC[code]
    if 200 <= code < 300:
        return GrpcStatus.OK
    return GrpcStatus.UNKNOWN


def grpc_to_http(status: int) -> int:
    """The HTTP status code for a gRPC status."""
    return _GRPC_TO_HTTP.get(status, 500)


class MicroError(Exception):
    """An error with an id (usually the service name), an HTTP ``code``, a
    human ``detail`` and a ``status`` phrase; subclasses fix the code.

    ``grpc_status`` is derived from ``code`` unless given, so an error that came
    in over gRPC keeps its exact status when passed on.
    """

    default_code: ClassVar[int] = 500

    def __init__(
        self,
        detail: str = "",
        *,
        id: str = "",
        code: int | None = None,
        status: str | None = None,
        grpc_status: int | None = None,
    ) -> None:
        self.id = id
        self.code = code if code is not None else self.default_code
        self.detail = detail
        self.status = status if status is not None else _reason(self.code)
        self.grpc_status = grpc_status if grpc_status is not None else http_to_grpc(self.code)
        super().__init__(detail)

    def __str__(self) -> str:
        prefix = f"{self.id}: " if self.id else ""
        return f"{prefix}{self.code} {self.status}: {self.detail}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(detail={self.detail!r}, id={self.id!r}, "
            f"code={self.code}, status={self.status!r}, grpc_status={self.grpc_status})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MicroError):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.grpc_status == other.grpc_status

    __hash__ = Exception.__hash__

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of Go Micro's ``errors.Error``."""
        return {"id": self.id, "code": self.code, "detail": self.detail, "status": self.status}

    def to_json(self) -> bytes:
        # ASCII-only, so the same bytes are valid in an HTTP body and a gRPC trailer.
        return json.dumps(self.to_dict()).encode()

    @staticmethod
    def from_dict(data: dict[str, Any], *, grpc_status: int | None = None) -> MicroError:
        """Rebuild an error from its JSON shape, as the most specific class for its code."""
        try:
            code = int(data.get("code") or 500)
        except (TypeError, ValueError):
            code = 500
        if not 100 <= code <= 599:
            code = 500
        cls = _BY_CODE.get(code, MicroError)
        return cls(
            str(data.get("detail", "")),
            id=str(data.get("id", "")),
            code=code,
            status=str(data.get("status") or _reason(code)),
            grpc_status=grpc_status,
        )

    @staticmethod
    def parse(
        body: bytes | memoryview | str, *, code: int = 500, grpc_status: int | None = None
    ) -> MicroError:
        """Rebuild an error from a response body, which may or may not be the micro JSON."""
        if isinstance(body, memoryview):
            body = body.tobytes()
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and "code" in data and "detail" in data:
            return MicroError.from_dict(data, grpc_status=grpc_status)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return from_http(code, text.strip(), grpc_status=grpc_status)


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return {499: "Client Closed Request"}.get(code, "Unknown")


class BadRequest(MicroError):
    """The request could not be decoded or failed validation (400, INVALID_ARGUMENT)."""

    default_code = 400


class Unauthorized(MicroError):
    """No valid credentials (401, UNAUTHENTICATED)."""

    default_code = 401


class Forbidden(MicroError):
    """Credentials valid but access denied (403, PERMISSION_DENIED)."""

    default_code = 403


class NotFound(MicroError):
    """The thing asked for does not exist (404, NOT_FOUND; UNIMPLEMENTED for endpoints)."""

    default_code = 404


class MethodNotAllowed(MicroError):
    default_code = 405


class Timeout(MicroError):
    """The call's deadline passed (408, DEADLINE_EXCEEDED)."""

    default_code = 408


class Conflict(MicroError):
    default_code = 409


class PayloadTooLarge(MicroError):
    """A message is over the configured maximum size (413, RESOURCE_EXHAUSTED)."""

    default_code = 413


class UnsupportedMediaType(MicroError):
    """No codec for the content type (415)."""

    default_code = 415


class TooManyRequests(MicroError):
    default_code = 429


class Cancelled(MicroError):
    """The peer cancelled the call (499, CANCELLED)."""

    default_code = 499


class InternalServerError(MicroError):
    """The handler failed (500, INTERNAL); the detail never leaks the exception."""

    default_code = 500


class NotImplementedByServer(MicroError):
    default_code = 501


class BadGateway(MicroError):
    default_code = 502


class Unavailable(MicroError):
    """No node could take the call, or the node is draining (503, UNAVAILABLE)."""

    default_code = 503


class GatewayTimeout(MicroError):
    default_code = 504


_BY_CODE: dict[int, type[MicroError]] = {
    cls.default_code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Timeout,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        TooManyRequests,
        Cancelled,
        InternalServerError,
        NotImplementedByServer,
        BadGateway,
        Unavailable,
        GatewayTimeout,
    )
}


def from_http(
    code: int, detail: str = "", *, id: str = "", grpc_status: int | None = None
) -> MicroError:
    """The most specific error class for an HTTP status code."""
    cls = _BY_CODE.get(code, MicroError)
    return cls(detail, id=id, code=code, grpc_status=grpc_status)


def from_grpc(status: int, message: str = "", *, id: str = "") -> MicroError:
    """The error for a gRPC status from a peer that sent no micro error JSON."""
    return from_http(grpc_to_http(status), message, id=id, grpc_status=status)
