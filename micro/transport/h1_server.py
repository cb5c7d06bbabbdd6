"""HTTP/1.1 server connection (h11), for curl, browsers and simple clients.

Plain calls only: ``POST /`` with ``Micro-Endpoint`` or ``POST /Handler/Method``,
the body in the ``Content-Type`` codec, errors as status + micro error JSON;
plus the server's GET routes (``/health``, ``/metrics``), which answer HEAD too.

Requests are served one after another on a keep-alive connection, pipelined
ones in order. A client that sent ``Expect: 100-continue`` gets
``100 Continue`` just before its body is read. A request refused before its
body is read (unknown endpoint, wrong method) has a body within the limit read
and dropped, so the next request is read from where it starts.

The connection is closed after the answer, which then says
``Connection: close``, whenever where the next request starts is in doubt or
the rest of this one will not be read (RFC 9112 §6.3, §9.6):

* a request h11 cannot frame: 400, or 414 / 431 for a request line / header
  section over :data:`MAX_HEAD_SIZE` (the rules are in :mod:`.http1`);
* a request with both ``Content-Length`` and ``Transfer-Encoding``, answered
  as framed by its chunks;
* a body declared over the limit (413, unread) or growing past it, and a
  refused request whose client waits for ``100 Continue`` to send its body;
* a head not complete within :data:`REQUEST_HEAD_TIMEOUT` (408 if part of it
  came, else closed silently) or a body stalled for :data:`BODY_IDLE_TIMEOUT`;
* the client's ``Connection: close`` or HTTP/1.0 (h11's rule).

Closing, the server half-closes and reads what the peer still sends for a
moment (:data:`LINGER`), so the kernel does not reset the connection under the
answer while a pipelined request is still unread.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, cast

import anyio
import anyio.abc
import h11

from ..errors import Cancelled, MicroError, PayloadTooLarge, Timeout, Unavailable
from .calls import (
    RequestHead,
    is_grpc_content_type,
    parse_request_head,
    plain_error,
    unsupported_grpc_over_http1,
)
from .dispatch import Dispatcher, OneRequest, Target, WebRoute, within_deadline
from .http1 import closes_connection, declared_length, protocol_error
from .lines import NDJSON, frame, streamed_media_type

__all__ = ["H1ServerConnection"]

log = logging.getLogger("micro.transport")

READ_SIZE = 64 * 1024
#: the largest request head (request line and headers) read; larger gets 414 or 431
MAX_HEAD_SIZE = 64 * 1024
#: seconds a connection may wait for a whole request head, from its start or the end of
#: the previous answer; then it is closed (with 408 if part of a head came). nginx keeps
#: idle connections 75 s: longer than the 60 s idle timeout of common load balancers,
#: so that they, and not we, close an idle connection (closing races their next request)
REQUEST_HEAD_TIMEOUT = 75.0
#: seconds a request body may go without a byte arriving before it is answered 408 and
#: the connection closed; nginx's client_body_timeout
BODY_IDLE_TIMEOUT = 60.0
#: seconds to go on reading, and dropping, what a peer sends after the last answer
#: before closing; Apache waits 2 s for each read of its lingering close
LINGER = 2.0
_NET_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class _Closed(Exception):
    pass


class H1ServerConnection:
    def __init__(
        self, net: anyio.abc.ByteStream, server: Dispatcher[Any], prefix: bytes = b""
    ) -> None:
        self._net = net
        self._server = server
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        self._conn.receive_data(prefix)
        self._draining = False
        self._idle = True
        #: the request being answered forbids reusing the connection after it
        self._closing = False
        #: the request being answered is HEAD: its answer has headers only
        self._head_only = False
        #: the request being answered declares a body (one in chunks included)
        self._has_body = False
        self._scope: anyio.CancelScope | None = None

    async def serve(self) -> None:
        try:
            with anyio.CancelScope() as self._scope:
                if await self._serve_requests():
                    await self._linger()
        finally:
            with anyio.CancelScope(shield=True):
                await self._net.aclose()

    async def _serve_requests(self) -> bool:
        """Answer requests until the connection ends; True if the peer may still send."""
        try:
            while not self._draining:
                self._idle = True
                try:
                    with anyio.move_on_after(REQUEST_HEAD_TIMEOUT) as waiting:
                        event = await self._next_event()
                except _Closed:
                    return False
                if waiting.cancelled_caught:
                    return await self._time_out()
                if not isinstance(event, h11.Request):
                    return False
                self._idle = False
                self._closing = closes_connection(event)
                self._head_only = event.method == b"HEAD"
                self._has_body = declared_length(event) != 0
                if not await self._serve_one(event) or self._conn.our_state is h11.MUST_CLOSE:
                    return True
                try:
                    self._conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return True
        except h11.RemoteProtocolError as exc:
            self._closing = True
            unread, _ = self._conn.trailing_data
            error = protocol_error(exc, in_body=not self._idle, unread=unread)
            await self._send_error_best_effort(error)
            return True
        return False

    async def _time_out(self) -> bool:
        """Close a connection whose next request did not come in time; True if it may send.

        An idle one is closed silently, as any keep-alive connection may be; one
        that sent part of a head is told 408 first.
        """
        partial, _ = self._conn.trailing_data
        if not partial:
            return False
        self._closing = True
        self._head_only = False
        await self._send_error(Timeout("request head not received in time"), close=True)
        return True

    async def _linger(self) -> None:
        """Half-close, then read and drop what the peer still sends, for up to :data:`LINGER`.

        Closing a socket with unread bytes in its buffer makes the kernel send a
        reset, which can destroy the answer before the peer has read it.
        """
        self._idle = True
        if self._draining:
            return
        with anyio.move_on_after(LINGER):
            try:
                try:
                    await self._net.send_eof()
                except NotImplementedError:  # TLS cannot half-close; the peer sees close
                    pass
                while await self._net.receive(READ_SIZE):
                    pass
            except _NET_ERRORS:
                pass

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
        limit = server.options.max_message_size
        if request.method in (b"GET", b"HEAD") and server.routes:
            path = request.target.partition(b"?")[0].decode("latin-1")
            route = server.routes.get(path)
            if route is not None:
                return await self._serve_route(route, path, request, limit)
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
            _check_declared_length(request, limit)
        except MicroError as err:
            return await self._refuse(err, request, limit)
        try:
            body = await self._read_body(limit)
        except MicroError as err:
            await self._send_error(err, close=True)
            return False
        except _Closed:
            return False
        if self._draining:
            await self._send_error(Unavailable("server is shutting down", id=server.name))
            return False
        if lines:
            return await self._serve_lines(head, ep, body, streamed_media_type(headers) or NDJSON)
        server.call_started()
        try:
            call = server.call_unary(head, ep, body)
            result, error = await within_deadline(call, head.timeout, server.name)
            if error is not None:
                await self._send_error(error)
            else:
                await self._send(200, head.content_type, result or b"")
        finally:
            server.call_finished()
        return True

    async def _serve_lines(
        self, head: RequestHead, ep: Target, body: bytes, media_type: str
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
                if self._closing or self._draining:
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
        server.call_started()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._cancel_when_gone, tg.cancel_scope, gone)
                call = server.call_stream(head, ep, OneRequest(body, emit))
                _, error = await within_deadline(call, head.timeout, server.name)
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
        self, route: WebRoute, path: str, request: h11.Request, limit: int
    ) -> bool:
        try:
            _check_declared_length(request, limit)
            await self._read_body(limit)
        except MicroError as err:
            await self._send_error(err, close=True)
            return False
        except _Closed:
            return False
        guard = self._server.route_guard
        if guard is not None:
            headers = request.headers
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

    async def _refuse(self, err: MicroError, request: h11.Request, limit: int) -> bool:
        """Answer ``err`` to a request whose body is unread; False when the connection must close.

        A body within the limit is read and dropped first, so the connection can
        serve the next request. One declared over the limit, or whose client
        waits for ``100 Continue`` before sending it, is left unread and the
        connection closed (RFC 9110 §10.1.1): reading it would mean waiting for
        bytes the client may never send.
        """
        length = declared_length(request)
        if self._awaits_continue() or (length is not None and length > limit):
            await self._send_error(err, close=True)
            return False
        try:
            await self._read_body(limit)
        except MicroError:
            await self._send_error(err, close=True)
            return False
        except _Closed:
            return False
        await self._send_error(err)
        return True

    def _awaits_continue(self) -> bool:
        """Whether the client waits for ``100 Continue`` before sending a body."""
        return self._has_body and self._conn.they_are_waiting_for_100_continue

    async def _read_body(self, limit: int) -> bytes:
        """The request's body; raises PayloadTooLarge past ``limit``, Timeout if it stalls,
        _Closed if the peer left."""
        if self._awaits_continue():
            data = self._conn.send(
                h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            )
            try:
                await self._net.send(data)
            except _NET_ERRORS:
                raise _Closed from None
        chunks: list[bytes] = []
        size = 0
        while True:
            with anyio.move_on_after(BODY_IDLE_TIMEOUT) as waiting:
                event = await self._next_event()
            if waiting.cancelled_caught:
                raise Timeout(f"request body stalled for {BODY_IDLE_TIMEOUT:g} s")
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise _Closed

    async def _send(self, status: int, content_type: str, body: bytes, close: bool = False) -> None:
        conn = self._conn
        headers = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
        ]
        if close or self._closing or self._draining:
            headers.append(("connection", "close"))
        data = conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        if body and not self._head_only:  # HEAD: the headers GET would have, no body
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        try:
            await self._net.send(data)
        except _NET_ERRORS:
            raise _Closed from None

    async def _send_error(self, err: MicroError, close: bool = False) -> None:
        if not err.id:
            err.id = self._server.name
        _, body = plain_error(err)
        try:
            await self._send(err.code, "application/json", body, close)
        except _Closed:
            pass

    async def _send_error_best_effort(self, err: MicroError) -> None:
        if self._conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            await self._send_error(err, close=True)
        except h11.LocalProtocolError:
            pass

    def drain(self) -> None:
        """Finish the request in progress (if any) and close; close at once when idle."""
        self._draining = True
        if self._idle and self._scope is not None:
            self._scope.cancel()


def _check_declared_length(request: h11.Request, limit: int) -> None:
    """Refuse a body declared over ``limit`` before any of it is read."""
    length = declared_length(request)
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body of {length} bytes is over the limit of {limit} bytes")
