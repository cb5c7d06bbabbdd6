"""HTTP/1.1 server connection (h11), for curl, browsers and simple clients.

Plain calls only: ``POST /`` with ``Micro-Endpoint`` or ``POST /Handler/Method``,
the body in the ``Content-Type`` codec, errors as status + micro error JSON.
Requests are served one after another on a keep-alive connection. A body
declared larger than the limit is refused with 413 before any of it is read,
and the connection is closed since the rest of it will not be read either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import anyio
import anyio.abc
import h11

from ..errors import BadRequest, Cancelled, MicroError, PayloadTooLarge, Unavailable
from .calls import (
    RequestHead,
    is_grpc_content_type,
    parse_request_head,
    plain_error,
    unsupported_grpc_over_http1,
)
from .lines import NDJSON, frame, streamed_media_type

if TYPE_CHECKING:
    from ..server.endpoint import Endpoint
    from ..server.server import Server, WebRoute

__all__ = ["H1ServerConnection"]

log = logging.getLogger("micro.transport")

READ_SIZE = 64 * 1024
_NET_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class _Closed(Exception):
    pass


class H1ServerConnection:
    def __init__(self, net: anyio.abc.ByteStream, server: Server, prefix: bytes = b"") -> None:
        self._net = net
        self._server = server
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        self._conn.receive_data(prefix)
        self._draining = False
        self._idle = True
        self._scope: anyio.CancelScope | None = None

    async def serve(self) -> None:
        try:
            with anyio.CancelScope() as self._scope:
                while not self._draining:
                    self._idle = True
                    try:
                        event = await self._next_event()
                    except _Closed:
                        break
                    if not isinstance(event, h11.Request):
                        break
                    self._idle = False
                    if not await self._serve_one(event):
                        break
                    if self._conn.our_state is h11.MUST_CLOSE:
                        break
                    try:
                        self._conn.start_next_cycle()
                    except h11.LocalProtocolError:
                        break
        except h11.RemoteProtocolError as exc:
            await self._send_error_best_effort(BadRequest(f"malformed HTTP/1.1: {exc}"))
        finally:
            with anyio.CancelScope(shield=True):
                await self._net.aclose()

    async def _next_event(self) -> h11.Event:
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self._net.receive(READ_SIZE)
                except _NET_ERRORS:
                    raise _Closed from None
                self._conn.receive_data(data)
                continue
            if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                raise _Closed
            return cast(h11.Event, event)

    async def _serve_one(self, request: h11.Request) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        server = self._server
        if request.method == b"GET" and server.routes:
            path = request.target.partition(b"?")[0].decode("latin-1")
            route = server.routes.get(path)
            if route is not None:
                return await self._serve_route(route, path, request.headers)
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers]
        content_type = next((v for k, v in headers if k == "content-type"), "")
        try:
            if is_grpc_content_type(content_type):
                raise unsupported_grpc_over_http1()
            head = parse_request_head(
                request.method.decode("ascii", "replace"),
                request.target.decode("latin-1"),
                headers,
            )
            ep = server.lookup(head.endpoint, head.metadata)
            lines = server.streams_as_lines(head, ep)
            limit = server.options.max_message_size
            if head.content_length is not None and head.content_length > limit:
                raise PayloadTooLarge(
                    f"request body of {head.content_length} bytes is over "
                    f"the limit of {limit} bytes"
                )
        except MicroError as err:
            await self._send_error(err)
            return self._conn.their_state is h11.DONE
        try:
            body = await self._read_body(limit)
        except MicroError as err:
            await self._send_error(err)
            return False
        except _Closed:
            return False
        if self._draining:
            await self._send_error(Unavailable("server is shutting down", id=server.name))
            return False
        if lines:
            return await self._serve_lines(head, ep, body, streamed_media_type(headers) or NDJSON)
        try:
            result, error = await server.call_unary_within_deadline(head, ep, body)
            if error is not None:
                await self._send_error(error)
            else:
                await self._send(200, head.content_type, result)
        finally:
            server.call_finished()
        return True

    async def _serve_lines(
        self, head: RequestHead, ep: Endpoint, body: bytes, media_type: str
    ) -> bool:
        """A server-streaming call: a line per message, in a chunked response."""
        conn = self._conn
        started = False

        async def emit(data: bytes) -> None:
            nonlocal started
            out = b""
            if not started:
                started = True
                headers = [("content-type", media_type), ("cache-control", "no-cache")]
                if self._draining:
                    headers.append(("connection", "close"))
                out = conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
            out += conn.send(h11.Data(data=frame(media_type, data)))
            try:
                await self._net.send(out)
            except _NET_ERRORS:
                raise Cancelled("the caller went away") from None

        server = self._server
        error: MicroError | None = None
        gone = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._cancel_when_gone, tg.cancel_scope, gone)
                error = await server.call_lines_within_deadline(head, ep, body, emit)
                tg.cancel_scope.cancel()
        finally:
            server.call_finished()
        if gone.is_set():
            return False
        if not started:
            if error is not None:
                await self._send_error(error)
            else:
                await self._send(200, media_type, b"")
            return True
        if error is not None and not error.id:
            error.id = server.name
        tail = b""
        if error is not None:
            tail = conn.send(h11.Data(data=frame(media_type, error.to_json(), error=True)))
        tail += conn.send(h11.EndOfMessage())
        try:
            await self._net.send(tail)
        except _NET_ERRORS:
            return False
        return True

    async def _cancel_when_gone(self, scope: anyio.CancelScope, gone: anyio.Event) -> None:
        """Cancel ``scope`` if the caller closes the connection while its stream runs.

        A stream may be quiet for long, so the caller leaving must not wait for
        the next write to fail. Bytes that arrive instead (a pipelined next
        request) are kept for h11 and the watch ends.
        """
        try:
            data = await self._net.receive(READ_SIZE)
        except _NET_ERRORS:
            data = b""
        if data:
            self._conn.receive_data(data)
            return
        gone.set()
        scope.cancel()

    async def _serve_route(
        self, route: WebRoute, path: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> bool:
        try:
            await self._read_body(self._server.options.max_message_size)
        except (MicroError, _Closed):
            return False
        guard = self._server.route_guard
        if guard is not None:
            try:
                guard(path, {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers})
            except MicroError as err:
                await self._send_error(err)
                return True
        try:
            response = await route()
        except Exception as exc:
            await self._send_error(self._server.internal_error("GET route", exc))
            return True
        await self._send(response.status, response.content_type, response.body)
        return True

    async def _read_body(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise _Closed

    async def _send(self, status: int, content_type: str, body: bytes) -> None:
        conn = self._conn
        headers = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
        ]
        if self._draining:
            headers.append(("connection", "close"))
        data = conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        data += conn.send(h11.Data(data=body)) if body else b""
        data += conn.send(h11.EndOfMessage())
        try:
            await self._net.send(data)
        except _NET_ERRORS:
            raise _Closed from None

    async def _send_error(self, err: MicroError) -> None:
        if not err.id:
            err.id = self._server.name
        _, body = plain_error(err)
        try:
            await self._send(err.code, "application/json", body)
        except _Closed:
            pass

    async def _send_error_best_effort(self, err: MicroError) -> None:
        if self._conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            await self._send_error(err)
        except h11.LocalProtocolError:
            pass

    def drain(self) -> None:
        """Finish the request in progress (if any) and close; close at once when idle."""
        self._draining = True
        if self._idle and self._scope is not None:
            self._scope.cancel()
