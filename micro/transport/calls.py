"""What a call looks like on the wire, without the wire (sans-IO).

:func:`parse_request_head` turns a request's method, path and headers into a
:class:`RequestHead` (endpoint, gRPC or plain, codec, deadline, metadata) or
raises the :class:`~micro.errors.MicroError` to answer with. The ``*_headers``
functions build the response header and trailer lists for both protocols, so
the HTTP/1.1 and HTTP/2 drivers share one definition of the protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..codec import Codec, parse_content_type
from ..errors import BadRequest, MethodNotAllowed, MicroError, NotFound, UnsupportedMediaType
from .framing import ACCEPT_ENCODING
from .headers import encode_grpc_message, endpoint_from_path, metadata_from_headers
from .timeouts import parse_grpc_timeout

__all__ = [
    "RequestHead",
    "parse_request_head",
    "grpc_response_headers",
    "grpc_trailers",
    "grpc_error_headers",
    "plain_response_headers",
    "plain_error",
]

DEFAULT_CONTENT_TYPE = "application/json"


@dataclass(slots=True)
class RequestHead:
    """The parts of a request the server acts on."""

    endpoint: str
    grpc: bool
    codec: Codec
    content_type: str  # the request's content type, echoed in the response
    timeout: float | None
    metadata: dict[str, str]
    content_length: int | None = None
    #: the ``grpc-encoding`` of the request's messages
    encoding: str = "identity"


#: Heads parsed lately, by method, path and header fields: a client sends the same
#: head call after call (only its metadata's values would differ, and mostly do not).
_HEADS: dict[tuple[str, str, tuple[tuple[str, str], ...]], RequestHead] = {}
_HEADS_LIMIT = 1024


def parse_request_head(method: str, path: str, headers: Iterable[tuple[str, str]]) -> RequestHead:
    """Classify a request; raises MicroError (405, 404, 415, 400) for what cannot be served."""
    fields = tuple(headers)
    key = (method, path, fields)
    known = _HEADS.get(key)
    if known is None:
        known = _parse_request_head(method, path, fields)
        if len(_HEADS) >= _HEADS_LIMIT:
            _HEADS.clear()
        _HEADS[key] = known
    return RequestHead(
        known.endpoint,
        known.grpc,
        known.codec,
        known.content_type,
        known.timeout,
        dict(known.metadata),  # each call's own, for its handler to read or change
        known.content_length,
        known.encoding,
    )


def _parse_request_head(
    method: str, path: str, headers: tuple[tuple[str, str], ...]
) -> RequestHead:
    content_type = ""
    endpoint_header = ""
    timeout_value = ""
    encoding = "identity"
    content_length: int | None = None
    rest: list[tuple[str, str]] = []
    for name, value in headers:
        if name == "content-type":
            content_type = value
        elif name == "micro-endpoint":
            endpoint_header = value
        elif name == "grpc-timeout":
            timeout_value = value
        elif name == "grpc-encoding":
            encoding = value
        elif name == "content-length":
            if not (value.isascii() and value.isdigit()):
                raise BadRequest(f"invalid content-length {value!r}")
            content_length = int(value)
        else:
            rest.append((name, value))
    if method != "POST":
        raise MethodNotAllowed(f"method {method} not allowed; calls are POST requests")
    if not content_type:
        content_type = DEFAULT_CONTENT_TYPE
    grpc, codec = parse_content_type(content_type)
    if grpc and endpoint_header:
        endpoint = endpoint_header
    else:
        endpoint = endpoint_header or endpoint_from_path(path) or ""
    if not endpoint:
        raise NotFound(
            "no endpoint: POST /<Handler>/<Method> or set the Micro-Endpoint header",
            grpc_status=12,
        )
    timeout = parse_grpc_timeout(timeout_value) if timeout_value else None
    return RequestHead(
        endpoint=endpoint,
        grpc=grpc,
        codec=codec,
        content_type=content_type if grpc else codec.content_type,
        timeout=timeout,
        metadata=metadata_from_headers(rest),
        content_length=content_length,
        encoding=encoding,
    )


def is_grpc_content_type(content_type: str) -> bool:
    return content_type.startswith("application/grpc")


def grpc_response_headers(content_type: str) -> list[tuple[str, str]]:
    return [
        (":status", "200"),
        ("content-type", content_type),
        ("grpc-accept-encoding", ACCEPT_ENCODING),
    ]


def grpc_trailers(error: MicroError | None) -> list[tuple[str, str]]:
    if error is None:
        return [("grpc-status", "0")]
    return [
        ("grpc-status", str(error.grpc_status)),
        ("grpc-message", encode_grpc_message(error.detail)),
        ("micro-error", error.to_json().decode()),
    ]


def grpc_error_headers(content_type: str, error: MicroError) -> list[tuple[str, str]]:
    """A trailers-only gRPC response (headers and status in one HEADERS frame)."""
    return [*grpc_response_headers(content_type), *grpc_trailers(error)]


def plain_response_headers(content_type: str, length: int) -> list[tuple[str, str]]:
    return [(":status", "200"), ("content-type", content_type), ("content-length", str(length))]


def plain_error(error: MicroError) -> tuple[list[tuple[str, str]], bytes]:
    """Status line headers and JSON body (one line, newline-terminated) for an error on a
    plain call."""
    body = error.to_json() + b"\n"
    return (
        [
            (":status", str(error.code)),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ],
        body,
    )


def unsupported_grpc_over_http1() -> MicroError:
    return UnsupportedMediaType("gRPC needs HTTP/2; send plain calls over HTTP/1.1")
