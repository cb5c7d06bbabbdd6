"""Streamed responses over plain HTTP: JSON messages as NDJSON lines or Server-Sent Events.

Sans-IO. A server-streaming call made without gRPC's framing answers with one
line of JSON per message (``application/x-ndjson``), or one event per message
(``text/event-stream``) when the caller's ``Accept`` asks for it. The response
status is sent with the first message, so an error after it travels as the
stream's last line: ``{"error": {...}}``, or an ``event: error``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["NDJSON", "SSE", "frame", "streamed_media_type"]

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"


def streamed_media_type(headers: Iterable[tuple[str, str]]) -> str | None:
    """The stream format ``Accept`` asks for: SSE, NDJSON, or None for neither."""
    accept = next((v for k, v in headers if k == "accept"), "")
    return SSE if SSE in accept else NDJSON if NDJSON in accept else None


def frame(media_type: str, data: bytes, *, error: bool = False) -> bytes:
    """One message (a line of JSON), or with ``error`` an error's JSON, as sent in the stream."""
    if media_type == SSE:
        return (b"event: error\n" if error else b"") + b"data: " + data + b"\n\n"
    return (b'{"error": ' + data + b"}" if error else data) + b"\n"
