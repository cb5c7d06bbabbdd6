"""The few ASGI pieces the gateway and ``service.asgi()`` share.

ASGI is a plain calling convention (a scope dict, a ``receive`` and a ``send``
callable), so micro speaks it directly instead of depending on a web framework:
read a bounded request body, answer with bytes, answer with a micro error,
stream JSON messages as NDJSON lines or Server-Sent Events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import anyio

from ..errors import MicroError, PayloadTooLarge
from ..transport.lines import NDJSON, SSE, frame, streamed_media_type

__all__ = [
    "ASGIApp",
    "NDJSON",
    "SSE",
    "EventStream",
    "streamed_media_type",
    "until_disconnect",
    "Receive",
    "Scope",
    "Send",
    "read_body",
    "request_headers",
    "request_path",
    "send_error",
    "send_response",
    "serve_lifespan",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_headers(scope: Scope) -> list[tuple[str, str]]:
    """The request's headers as lower-case ``(name, value)`` strings."""
    return [
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, value in scope.get("headers", ())
    ]


def request_path(scope: Scope) -> str:
    """The request's path within the app: without ``root_path`` when mounted under a prefix.

    ASGI servers and routers that mount an app under a prefix pass the full
    path and the prefix as ``root_path``.
    """
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; raises PayloadTooLarge past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: Iterable[tuple[str, str]] = (),
) -> None:
    """Answer with one complete body."""
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: MicroError, extra: Iterable[tuple[str, str]] = ()) -> None:
    """Answer with the error's HTTP status and its JSON ``{id, code, detail, status}``."""
    await send_response(send, error.code, error.to_json() + b"\n", "application/json", extra)


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge the server's start-up and shut-down (nothing to open or close here)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class EventStream:
    """A response of JSON messages as they come: NDJSON lines or Server-Sent Events.

    The response starts with the first message. An error before it is
    answered as an HTTP status with the error JSON; an error after it is the
    stream's last event (``{"error": ...}`` as a line, or ``event: error``).
    """

    def __init__(self, send: Send, media_type: str, extra: Iterable[tuple[str, str]] = ()) -> None:
        self._send = send
        self.media_type = media_type
        self._extra = list(extra)
        #: whether the response has begun (its status can no longer change)
        self.started = False

    async def message(self, data: bytes) -> None:
        """Send one message, already encoded as one line of JSON."""
        if not self.started:
            self.started = True
            headers = [
                (b"content-type", self.media_type.encode()),
                (b"cache-control", b"no-cache"),
                *((k.encode("latin-1"), v.encode("latin-1")) for k, v in self._extra),
            ]
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._chunk(frame(self.media_type, data))

    async def finish(self, error: MicroError | None = None) -> None:
        """End the response, with ``error`` if the stream failed."""
        if not self.started:
            if error is not None:
                await send_error(self._send, error, self._extra)
            else:
                await send_response(self._send, 200, b"", self.media_type, self._extra)
            return
        if error is not None:
            await self._chunk(frame(self.media_type, error.to_json(), error=True))
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _chunk(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})


async def until_disconnect(receive: Receive, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body``; cancel it if the HTTP client disconnects first."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
        await body()
        tg.cancel_scope.cancel()


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
