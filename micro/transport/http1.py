"""HTTP/1.1 rules the server adds on top of h11's own (RFC 9112 §6 and §9).

h11 parses requests, validates their framing headers and reads bodies by
chunks or by Content-Length; it refuses what it cannot frame with a
``RemoteProtocolError``. Three decisions are left to the server, and each
lives here in one function, with no I/O:

* whether a request, though readable, forbids reusing the connection
  afterwards (:func:`closes_connection`);
* how large a body the request declares before any of it is read, so an
  oversized one is refused unread (:func:`declared_length`);
* which answer a request h11 cannot read gets (:func:`protocol_error`).

Every one of them ends the connection after the answer: once a message's
length is in doubt, so is where the next one starts.
"""

from __future__ import annotations

import h11

from ..errors import BadRequest, MicroError

__all__ = ["closes_connection", "declared_length", "protocol_error"]


def _has(request: h11.Request, name: bytes) -> bool:
    return any(key == name for key, _ in request.headers)


def closes_connection(request: h11.Request) -> bool:
    """Whether the connection must close after answering ``request``, beyond h11's own rules.

    h11 already closes for ``Connection: close`` and HTTP/1.0. A request with
    both ``Transfer-Encoding`` and ``Content-Length`` is read by its chunks
    (RFC 9112 §6.3: Transfer-Encoding overrides), but a proxy in front of us
    may have framed it by Content-Length and sent the chunks on as the start
    of another request; the server MUST close after responding, so no second
    request is ever read from a stream two parties split differently.
    """
    return _has(request, b"transfer-encoding") and _has(request, b"content-length")


def declared_length(request: h11.Request) -> int | None:
    """The body size ``request`` declares up front: None when it comes in chunks.

    h11 has validated the header by now (digits only, one value), so it parses.
    """
    if _has(request, b"transfer-encoding"):
        return None
    for key, value in request.headers:
        if key == b"content-length":
            return int(value)
    return 0


#: h11's hint for a request head larger than its buffer limit
_HEADERS_TOO_LARGE = 431
_URI_TOO_LONG = 414


def protocol_error(
    exc: h11.RemoteProtocolError, *, in_body: bool = False, unread: bytes = b""
) -> MicroError:
    """The answer to a request h11 could not read: 414 or 431 for a head over the limit, else 400.

    h11 hints 501 for any transfer coding but chunked. RFC 9112 §6.3 asks for
    400 when chunked is not the final coding, since the body's length is then
    unknown; and for one we cannot decode (``gzip, chunked``) 400 says as much,
    while the connection closes after either. ``in_body``: the head was read
    and the body's framing failed, so an over-long line is a chunk's (400).
    ``unread``: the bytes h11 held when it gave up; a head over the limit with
    no line end in it is a request line too long (414, RFC 9112 §3).
    """
    if in_body:
        return BadRequest(f"malformed HTTP/1.1 body: {exc}")
    if exc.error_status_hint == _HEADERS_TOO_LARGE:
        if b"\n" not in unread:
            return MicroError("request line too long", code=_URI_TOO_LONG)
        return MicroError("request header section too large", code=_HEADERS_TOO_LARGE)
    return BadRequest(f"malformed HTTP/1.1: {exc}")
