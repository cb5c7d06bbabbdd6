"""A service's endpoints as an ASGI app, to mount in an existing ASGI stack.

The app speaks the same plain-call protocol as the service's own port:
``POST /Handler/Method`` or ``POST /`` with ``Micro-Endpoint``, the body in
the ``Content-Type`` codec, errors as HTTP status plus the micro error JSON.
Calls run in the ASGI server's tasks through the service's router and
middleware; nothing else of the service (listener, registration) is needed.
Server-streaming endpoints take a JSON request and answer with one JSON line
per message (NDJSON), or Server-Sent Events with ``Accept: text/event-stream``,
as the gateway does. Endpoints that stream requests need gRPC's framing and
are answered with 415. The GET pages of the port (``/health``,
``/health/ready``, ``/metrics``, ``/debug/stats``) are served too.
"""

from __future__ import annotations

from ..errors import MicroError, PayloadTooLarge, UnsupportedMediaType
from ..server.endpoint import Endpoint
from ..server.server import Server
from ..transport.calls import RequestHead, is_grpc_content_type, parse_request_head
from .asgi import (
    NDJSON,
    EventStream,
    Receive,
    Scope,
    Send,
    read_body,
    request_headers,
    request_path,
    send_error,
    send_response,
    serve_lifespan,
    streamed_media_type,
    until_disconnect,
)

__all__ = ["ServiceApp"]


class ServiceApp:
    """An ASGI app serving a :class:`~micro.server.server.Server`'s unary endpoints."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        server = self.server
        path = request_path(scope)
        if scope["method"] in ("GET", "HEAD") and path in server.routes:
            # The listener's GET pages (health, readiness, metrics, stats) are here too.
            route = server.routes[path]
            try:
                page = await route()
            except Exception as exc:
                await send_error(send, server.internal_error("GET route", exc))
                return
            await send_response(send, page.status, page.body, page.content_type)
            return
        headers = request_headers(scope)
        try:
            content_type = next((v for k, v in headers if k == "content-type"), "")
            if is_grpc_content_type(content_type):
                raise UnsupportedMediaType(
                    "gRPC is served on the service's own port; this app takes plain calls"
                )
            head = parse_request_head(scope["method"], path, headers)
            ep = server.lookup(head.endpoint, head.metadata)
            streamed = server.streams_as_lines(head, ep)
            limit = server.options.max_message_size
            if head.content_length is not None and head.content_length > limit:
                raise PayloadTooLarge(
                    f"request body of {head.content_length} bytes is over the limit "
                    f"of {limit} bytes"
                )
            body = await read_body(receive, limit)
        except MicroError as refused:
            if not refused.id:
                refused.id = server.name
            await send_error(send, refused)
            return
        if streamed:
            media_type = streamed_media_type(headers) or NDJSON
            await self._stream(head, ep, body, EventStream(send, media_type), receive)
            return
        try:
            result, error = await server.call_unary_within_deadline(head, ep, body)
            if error is not None:
                await send_error(send, error)
            else:
                await send_response(send, 200, result, head.content_type)
        finally:
            server.call_finished()

    async def _stream(
        self, head: RequestHead, ep: Endpoint, body: bytes, out: EventStream, receive: Receive
    ) -> None:
        """Run a server-streaming call, each message sent as it comes, until it ends,
        fails, passes its deadline or the HTTP client goes away."""
        server = self.server
        failed: MicroError | None = None

        async def run() -> None:
            nonlocal failed
            failed = await server.call_lines_within_deadline(head, ep, body, out.message)

        try:
            await until_disconnect(receive, run)
            await out.finish(failed)
        finally:
            server.call_finished()
