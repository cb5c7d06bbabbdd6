"""HTTP/2 server connection: h2 driven on an AnyIO byte stream.

Theory of operation. One task reads: it feeds bytes to h2 and dispatches the
resulting events by type. One task writes: it sleeps until something has been
queued in h2's outbound buffer and sends everything queued in one socket
write, so responses finished in the same loop turn share a send. Handlers run
in tasks of the connection's task group, each call in a cancel scope that its
``grpc-timeout`` and the peer's RST_STREAM can cancel: a task per streaming
call, and for unary calls workers that wait for the next call once one ends
(waking a waiting task costs less than starting one).

Nothing here awaits while holding h2 state half-updated: every h2 verb is a
synchronous call, so the reader and the handlers interleave only at awaits.

Shutdown: :meth:`drain` sends GOAWAY (h2's own GOAWAY would close the state
machine, see :mod:`.h2conn`), refuses new streams with REFUSED_STREAM, lets
calls in flight finish, and closes when the last one is done.

One module: the reader, the writer and the call workers share the
connection's state (its streams, its outbound buffer, its drain), and the
order of their steps is what the guarantees above rest on, so they read
best side by side.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import anyio
import anyio.abc
import anyio.lowlevel
import h2.events
from h2.errors import ErrorCodes

from ..errors import BadRequest, Cancelled, MicroError, PayloadTooLarge
from .aio_stream import AsyncioSocketStream, adopt
from .calls import (
    RequestHead,
    grpc_error_headers,
    grpc_response_headers,
    grpc_trailers,
    is_grpc_content_type,
    parse_request_head,
    plain_error,
    plain_response_headers,
)
from .dispatch import Dispatcher, Kind, OneRequest, Target, WebRoute, within_deadline
from .flow import OutboundFlow
from .framing import MessageDecoder, Payload, detach, message_parts
from .h2conn import H2Error, ProtocolError, event_handlers, new_connection, start
from .lines import NDJSON, frame, streamed_media_type
from .primitives import Event, Scope, cancel_scope, new_event
from .writer import Writer

__all__ = ["H2ServerConnection"]

log = logging.getLogger("micro.transport")

READ_SIZE = 256 * 1024
#: Received bytes are fed to h2 this much at a time, with a checkpoint between
#: slices that produced events. Work then flows in small batches: the handlers
#: (or callers) woken by one slice run, and their answers go out, while the
#: peer is still producing the rest. Feeding 64 requests at once instead makes
#: both ends of a connection take turns, each idle while the other works
#: (measured here: about 2x the calls/s at 64 in flight between two Python processes).
FEED_SLICE = 2048
#: Streams a peer may reset in a burst, and per second after that, before the
#: connection is closed with ENHANCE_YOUR_CALM: the defence against the
#: "rapid reset" flood (CVE-2023-44487), where a client opens and cancels
#: streams to make the server start and stop work for free.
RESET_BURST = 1000
RESET_RATE = 200.0
#: how long a closing connection may take to send what it has queued
_FLUSH_GRACE = 1.0
#: how long we read (and drop) what a peer still sends after we closed our side
_LINGER = 5.0
_NET_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class _Stream:
    """One request on the connection."""

    __slots__ = (
        "chunks",
        "decoder",
        "ended",
        "endpoint",
        "head",
        "headers_sent",
        "id",
        "inbox",
        "lines",
        "reset",
        "scope",
        "size",
        "streaming",
        "unacked",
        "wake",
    )

    def __init__(
        self,
        stream_id: int,
        head: RequestHead,
        endpoint: Target,
        max_size: int,
        lines: str | None = None,
    ):
        self.id = stream_id
        self.head = head
        self.endpoint = endpoint
        self.chunks: list[Payload] = []
        self.size = 0
        self.decoder = MessageDecoder(max_size, head.encoding) if head.grpc else None
        self.scope: Scope | None = None
        self.reset = False
        self.ended = False
        # Streaming gRPC calls: messages wait in the inbox until the handler
        # takes them; their bytes are acknowledged to flow control only then.
        self.streaming = endpoint.kind is not Kind.UNARY and head.grpc
        #: a plain server-streaming call: the media type its messages go out as
        self.lines = lines
        if self.streaming:  # only streaming calls have an inbox (a deque is ~600 bytes)
            self.inbox: deque[Payload] = deque()
        self.unacked = 0
        self.wake: anyio.Event | None = None
        self.headers_sent = False

    def notify(self) -> None:
        if self.wake is not None:
            self.wake.set()
            self.wake = None


class H2ServerConnection:
    """Serves one HTTP/2 connection until the peer leaves or the server drains it."""

    __slots__ = (
        "_calls",
        "_closing",
        "_done",
        "_draining",
        "_fed",
        "_flow",
        "_h2",
        "_idle",
        "_max_size",
        "_net",
        "_prefix",
        "_read_scope",
        "_reader_wanted",
        "_reading_over",
        "_reset_budget",
        "_reset_stamp",
        "_server",
        "_streams",
        "_tg",
        "_writer",
        "_writer_done",
    )

    def __init__(
        self, net: anyio.abc.ByteStream, server: Dispatcher[Any], prefix: bytes = b""
    ) -> None:
        net = self._net = adopt(net)
        self._server = server
        self._prefix = prefix
        opts = server.options
        self._max_size = opts.max_message_size
        self._h2 = new_connection(
            client_side=False,
            max_concurrent_streams=opts.max_concurrent_streams,
            max_header_list_size=opts.max_header_list_size,
        )
        self._streams: dict[int, _Stream] = {}
        self._writer = Writer(net, self._h2.data_to_send)
        self._flow = OutboundFlow(self._h2, self._flush)
        self._writer_done = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._read_scope: Scope | None = None
        #: a worker is to take up reading (see _read)
        self._reader_wanted = False
        #: made once reading moves to a worker (on the first lone call), to wait for
        self._reading_over: anyio.Event | None = None
        #: calls the reader has queued while feeding and not yet handed out
        self._fed: list[_Stream] | None = None
        self._draining = False
        self._done = False
        self._closing = False
        #: unary calls whose request is complete, waiting for a worker
        self._calls: list[_Stream] = []
        #: workers waiting for a call, each woken by its own event
        self._idle: list[Event] = []
        self._reset_budget = float(RESET_BURST)
        self._reset_stamp = 0.0

    # -- the two tasks -------------------------------------------------------

    async def serve(self) -> None:
        start(self._h2)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._write_loop)
                with cancel_scope() as self._read_scope:
                    await self._feed(self._prefix)
                    net = self._net
                    push = net if isinstance(net, AsyncioSocketStream) else None
                    if push is not None:  # fed from the transport's callback, not a task
                        push.set_receiver(self._feed_now)
                    try:
                        if push is not None:
                            while not self._done:
                                try:
                                    await net.receive(READ_SIZE)  # returns at the end only
                                except _NET_ERRORS:
                                    break
                        elif await self._read(self._read_scope, inline=False):
                            assert self._reading_over is not None
                            await self._reading_over.wait()  # read on by the workers
                    finally:
                        if push is not None:
                            push.set_receiver(None)
                # Reading is over: the peer left, broke the protocol, or we
                # drained. Stop handlers still running, let the writer send
                # what is queued (a GOAWAY, last answers), then stop it.
                self._done = True
                for st in list(self._streams.values()):
                    st.reset = True
                    if st.scope is not None:
                        st.scope.cancel()
                self._flush()
                with anyio.move_on_after(_FLUSH_GRACE):
                    await self._writer_done.wait()
                if self._closing:
                    with anyio.move_on_after(_LINGER):
                        await self._linger()
                tg.cancel_scope.cancel()
        finally:
            self._fail_window_waiters()
            with anyio.CancelScope(shield=True):
                await self._net.aclose()

    async def _read(self, scope: Scope, *, inline: bool) -> _Stream | bool:
        """Read and feed until reading is over (False) or a lone unary call is complete.

        A call complete on its own, with no other stream open, is answered by
        the task that read it, so nothing stands between its last byte and its
        handler: the reading goes on in a worker woken for it, and the call is
        returned (``inline``), or handed to a worker (True; the connection's
        main task, which must stay free to end the connection, does this).
        Otherwise the calls fed are handed to workers and reading goes on.

        ``scope`` is the reading task's own, entered: :meth:`_close` cancels it
        while the task reads (a worker's lasts as long as the worker, so that
        taking up the reading costs no scope of its own).
        """
        net = self._net
        self._read_scope = scope
        over = True
        try:
            while not self._done:
                try:
                    data = await net.receive(READ_SIZE)
                except _NET_ERRORS:
                    break
                fed = self._fed = []
                try:
                    await self._feed(data)
                except BaseException:
                    for st in fed:  # each call started is answered (or given up) by a worker
                        self._queue_call(st)
                    raise
                finally:
                    self._fed = None
                if len(fed) == 1 and not self._calls and len(self._streams) == 1:
                    if self._reading_over is None:
                        self._reading_over = anyio.Event()
                    self._reader_wanted = True
                    self._wake_worker()
                    over = False
                    if inline:
                        return fed[0]
                    self._queue_call(fed[0])
                    return True
                for st in fed:
                    self._queue_call(st)
            return False
        finally:
            if self._read_scope is scope:
                self._read_scope = None
            if over and self._reading_over is not None:
                self._reading_over.set()

    async def _write_loop(self) -> None:
        writer = self._writer
        try:
            while True:
                await writer.wait()
                # Send until nothing is queued, including what was queued while
                # we were sending (such as a GOAWAY), before deciding to stop.
                try:
                    await writer.send_queued()
                except _NET_ERRORS:
                    self._close()
                    return
                if self._done:
                    return
        finally:
            self._writer_done.set()

    async def _linger(self) -> None:
        """Half-close and discard what the peer still sends, briefly.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy our GOAWAY before the peer reads it; so when we end
        a connection ourselves, we stop writing first and read to the end.
        """
        try:
            await self._net.send_eof()
            while await self._net.receive(READ_SIZE):
                pass
        except (*_NET_ERRORS, NotImplementedError):
            pass

    def _flush(self) -> None:
        self._writer.flush_soon()

    def _close(self) -> None:
        """End the connection from our side (GOAWAY already queued, if any)."""
        self._closing = True
        self._done = True
        if self._read_scope is not None:
            self._read_scope.cancel()

    # -- events --------------------------------------------------------------

    async def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            pos = self._feed_slice(view, pos)
            if pos < len(view):
                await anyio.lowlevel.checkpoint()

    def _feed_now(self, data: bytes) -> None:
        """Feed all of ``data`` at once (from the transport's callback, on asyncio)."""
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            pos = self._feed_slice(view, pos)

    def _feed_slice(self, view: memoryview, pos: int) -> int:
        """Feed a slice of ``view`` from ``pos`` (see FEED_SLICE): where the next one starts.

        Past the end when the connection is done with.
        """
        end = len(view)
        if self._done:
            return end
        step = max(FEED_SLICE, self._h2.pending_frame_bytes())
        try:
            events = self._h2.receive_data(view[pos : pos + step])
        except ProtocolError as exc:
            log.debug("HTTP/2 protocol error from peer: %s", exc)
            self._close()
            return end
        if events:
            handlers = _HANDLERS
            for event in events:
                if self._done:
                    return end
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(self, event)
            # What the events queued (acknowledgements, window, resets) goes now.
            self._writer.flush_now()
        return pos + step

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        if self._draining:
            self._h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        headers = cast("list[tuple[str, str]]", event.headers)  # header_encoding="utf-8"
        method = path = content_type = ""
        for name, value in headers:
            if name[0] != ":":
                if name == "content-type":
                    content_type = value
                continue
            if name == ":method":
                method = value
            elif name == ":path":
                path = value
        if method == "GET" and self._server.routes:
            route = self._server.routes.get(path.partition("?")[0])
            if route is not None:
                assert self._tg is not None
                self._tg.start_soon(self._run_route, sid, route, path, headers)
                return
        try:
            head = parse_request_head(method, path, headers)
            ep = self._server.lookup(head.endpoint, head.metadata)
            if head.content_length is not None and head.content_length > self._max_size:
                raise PayloadTooLarge(
                    f"request body of {head.content_length} bytes is over the limit "
                    f"of {self._max_size} bytes"
                )
            lines = self._server.streams_as_lines(head, ep)
        except MicroError as err:
            self._refuse(sid, is_grpc_content_type(content_type), content_type, err, ended=False)
            return
        media_type = (streamed_media_type(headers) or NDJSON) if lines else None
        st = self._streams[sid] = _Stream(sid, head, ep, self._max_size, media_type)
        if st.streaming:
            assert self._tg is not None
            st.scope = cancel_scope()
            self._server.call_started()
            self._tg.start_soon(self._run_stream, st)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        st = self._streams.get(sid)
        if st is not None and st.streaming:
            self._on_stream_data(st, event)
            return
        # Unary bodies are bounded by the message size limit, so the window is
        # handed back at once; h2 batches the WINDOW_UPDATEs.
        self._h2.acknowledge_received_data(event.flow_controlled_length, sid)
        if st is None or st.scope is not None:
            return
        data = event.data
        if st.decoder is not None:
            try:
                for msg in st.decoder.feed(data):
                    st.chunks.append(msg)
            except MicroError as err:
                self._streams.pop(sid, None)
                self._refuse(sid, True, st.head.content_type, err, ended=False)
            return
        st.size += len(data)
        if st.size > self._max_size:
            self._streams.pop(sid, None)
            too_large = PayloadTooLarge(f"request body is over the limit of {self._max_size} bytes")
            self._refuse(sid, False, st.head.content_type, too_large, ended=False)
            return
        st.chunks.append(detach(data))

    def _on_stream_data(self, st: _Stream, event: h2.events.DataReceived) -> None:
        assert st.decoder is not None
        try:
            messages = st.decoder.feed(event.data)
        except MicroError as err:
            # The handler is running: end its call with the error, not just the stream.
            self._fail_stream(st, err)
            return
        if messages:
            st.inbox.extend(messages)
            st.unacked += event.flow_controlled_length
            st.notify()
        else:
            # Part of a message we have agreed to take whole: let the rest come.
            self._h2.acknowledge_received_data(event.flow_controlled_length, st.id)

    def _fail_stream(self, st: _Stream, err: MicroError) -> None:
        self._streams.pop(st.id, None)
        st.reset = True
        if st.scope is not None:
            st.scope.cancel()
        st.notify()
        if not err.id:
            err.id = self._server.name
        h2conn = self._h2
        try:
            if st.headers_sent:
                h2conn.send_headers(st.id, grpc_trailers(err), end_stream=True)
            else:
                headers = grpc_error_headers(st.head.content_type, err)
                h2conn.send_headers(st.id, headers, end_stream=True)
            h2conn.reset_stream(st.id, ErrorCodes.NO_ERROR)
        except H2Error:
            pass
        self._flush()

    def _on_end(self, event: h2.events.StreamEnded) -> None:
        st = self._streams.get(event.stream_id)
        if st is not None and st.streaming:
            st.ended = True
            st.notify()
            return
        if st is None or st.scope is not None:
            return
        st.ended = True
        assert self._tg is not None
        st.scope = cancel_scope()
        if st.lines is not None:
            self._tg.start_soon(self._run_lines, st, st.lines)
            return
        self._server.call_started()
        if self._fed is not None:
            self._fed.append(st)  # the reader decides who answers it, once it has fed all
        else:
            self._queue_call(st)

    def _queue_call(self, st: _Stream) -> None:
        self._calls.append(st)
        self._wake_worker()

    def _wake_worker(self) -> None:
        if self._idle:
            self._idle.pop().set()
        else:
            assert self._tg is not None
            self._tg.start_soon(self._call_worker)

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        sid = event.stream_id
        now = anyio.current_time()
        if self._reset_stamp:
            refill = (now - self._reset_stamp) * RESET_RATE
            self._reset_budget = min(float(RESET_BURST), self._reset_budget + refill)
        self._reset_stamp = now
        self._reset_budget -= 1
        if self._reset_budget < 0 and not self._done:
            log.warning("closing a connection that reset streams too fast")
            self._h2.send_goaway(self._h2.highest_inbound_stream_id, ErrorCodes.ENHANCE_YOUR_CALM)
            self._close()
        st = self._streams.pop(sid, None)
        if st is not None:
            st.reset = True
            if st.scope is not None:
                st.scope.cancel()
            st.notify()
        self._flow.stream_gone(sid)

    def _on_window(self, event: h2.events.WindowUpdated) -> None:
        self._flow.window_opened(event.stream_id)

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        self._flow.wake_all()

    def _on_terminated(self, event: h2.events.ConnectionTerminated) -> None:
        # The peer is leaving: finish what it already sent, accept nothing new.
        self._draining = True
        self._close_if_idle()

    # -- answering -----------------------------------------------------------

    def _refuse(
        self, sid: int, grpc: bool, content_type: str, err: MicroError, *, ended: bool
    ) -> None:
        """Answer a request with an error before running anything."""
        if not err.id:
            err.id = self._server.name
        h2conn = self._h2
        try:
            if grpc:
                h2conn.send_headers(sid, grpc_error_headers(content_type, err), end_stream=True)
            else:
                headers, body = plain_error(err)
                h2conn.send_headers(sid, headers)
                h2conn.send_data(sid, body, end_stream=True)
            if not ended and h2conn.streams.get(sid) is not None and h2conn.streams[sid].open:
                # We will not read the rest: ask the peer to stop sending it.
                h2conn.reset_stream(sid, ErrorCodes.NO_ERROR)
        except H2Error:
            pass
        self._flush()

    async def _call_worker(self) -> None:
        """Run unary calls as they come, or take up reading, then wait for more.

        A task started per call costs more than waking one that waits; each
        call queued wakes a waiting worker or starts one, so no call waits for
        another's handler. While calls are open on the connection up to
        _IDLE_WORKERS wait; once none is, one waits and the others end, so an
        idle connection holds one waiting task at most (about 5 KiB).
        """
        with cancel_scope() as scope:  # cancelled by _close only while this worker reads
            await self._work(scope)

    async def _work(self, scope: Scope) -> None:
        calls = self._calls
        idle = self._idle
        while True:
            if self._reader_wanted:
                self._reader_wanted = False
                lone = await self._read(scope, inline=True)
                if isinstance(lone, _Stream):
                    await self._run_unary(lone)
                continue
            while calls:
                await self._run_unary(calls.pop(0))
                if self._reader_wanted:
                    break
            if self._reader_wanted:
                continue
            if self._done:
                return
            if not self._streams:
                while len(idle) > 1:
                    idle.pop(0).set()  # it finds no call and ends
                if idle:
                    return
            elif len(idle) >= _IDLE_WORKERS:
                return
            wake = new_event()
            idle.append(wake)
            try:
                await wake.wait()
            finally:
                if not wake.is_set():
                    idle.remove(wake)

    async def _run_unary(self, st: _Stream) -> None:
        server = self._server
        result: bytes | None = None
        error: MicroError | None
        try:
            if st.reset:
                return  # reset while it waited for a worker
            try:
                body = _unary_body(st)
            except MicroError as exc:
                error = exc
            else:
                call = server.call_unary(st.head, st.endpoint, body)
                result, error = await within_deadline(call, st.head.timeout, server.name, st.scope)
            if st.reset:
                return
            if error is not None and not error.id:
                error.id = server.name
            await self._respond(st, result or b"", error)
        finally:
            self._streams.pop(st.id, None)
            server.call_finished()
            self._close_if_idle()

    async def _run_stream(self, st: _Stream) -> None:
        server = self._server
        head = st.head
        try:
            call = server.call_stream(head, st.endpoint, _StreamIO(self, st))
            _, error = await within_deadline(call, head.timeout, server.name, st.scope)
            if st.reset or self._done:
                return
            if error is not None and not error.id:
                error.id = server.name
            h2conn = self._h2
            try:
                if not st.headers_sent:
                    if error is not None:
                        headers = grpc_error_headers(head.content_type, error)
                        h2conn.send_headers(st.id, headers, end_stream=True)
                    else:
                        h2conn.send_headers(st.id, grpc_response_headers(head.content_type))
                        h2conn.send_headers(st.id, grpc_trailers(None), end_stream=True)
                else:
                    h2conn.send_headers(st.id, grpc_trailers(error), end_stream=True)
                if not st.ended:
                    # Done before the caller finished sending: tell it to stop.
                    h2conn.reset_stream(st.id, ErrorCodes.NO_ERROR)
            except H2Error:
                pass
            self._flush()
        finally:
            self._streams.pop(st.id, None)
            server.call_finished()
            self._close_if_idle()

    async def _run_lines(self, st: _Stream, media_type: str) -> None:
        """A plain server-streaming call: one JSON request in, a line per message out."""
        server = self._server
        h2conn = self._h2
        sid = st.id

        async def emit(data: bytes) -> None:
            if st.reset:
                raise Cancelled("the caller cancelled the call")
            try:
                if not st.headers_sent:
                    h2conn.send_headers(sid, _lines_headers(media_type))
                    st.headers_sent = True
                await self._send_data(sid, frame(media_type, data), end_stream=False)
            except (*H2Error, anyio.BrokenResourceError):
                raise Cancelled("the caller cancelled the call") from None
            self._flush()
            if h2conn.outbound_size() >= _YIELD_AFTER:
                await anyio.lowlevel.checkpoint()

        body = b"".join(st.chunks)
        st.chunks = []
        server.call_started()
        try:
            call = server.call_stream(st.head, st.endpoint, OneRequest(body, emit))
            _, error = await within_deadline(call, st.head.timeout, server.name, st.scope)
            if st.reset or self._done:
                return
            if error is not None and not error.id:
                error.id = server.name
            try:
                if not st.headers_sent:
                    if error is not None:
                        headers, payload = plain_error(error)
                    else:
                        headers, payload = _lines_headers(media_type), b""
                    h2conn.send_headers(sid, headers, end_stream=not payload)
                    if payload:
                        await self._send_data(sid, payload, end_stream=True)
                elif error is not None:
                    last = frame(media_type, error.to_json(), error=True)
                    await self._send_data(sid, last, end_stream=True)
                else:
                    h2conn.end_stream(sid)
            except (*H2Error, anyio.BrokenResourceError):
                pass  # the caller went away meanwhile
            self._flush()
        finally:
            self._streams.pop(sid, None)
            server.call_finished()
            self._close_if_idle()

    async def _run_route(
        self, sid: int, route: WebRoute, path: str, request_headers: list[tuple[str, str]]
    ) -> None:
        try:
            guard = self._server.route_guard
            if guard is not None:
                guard(path, dict(request_headers))
            response = await route()
        except MicroError as err:
            if not err.id:
                err.id = self._server.name
            headers, body = plain_error(err)
        except Exception as exc:
            headers, body = plain_error(self._server.internal_error("GET route", exc))
        else:
            body = response.body
            headers = [
                (":status", str(response.status)),
                ("content-type", response.content_type),
                ("content-length", str(len(body))),
            ]
        if self._done:
            return
        try:
            self._h2.send_headers(sid, headers, end_stream=not body)
            if body:
                await self._send_data(sid, body, end_stream=True)
        except (*H2Error, anyio.BrokenResourceError):
            pass  # the caller went away
        self._flush()

    async def _respond(self, st: _Stream, result: bytes, error: MicroError | None) -> None:
        if self._done:
            return  # the connection is closing: nothing goes out after our GOAWAY
        h2conn = self._h2
        sid = st.id
        ct = st.head.content_type
        try:
            if st.head.grpc:
                if error is not None:
                    h2conn.send_headers(sid, grpc_error_headers(ct, error), end_stream=True)
                else:
                    h2conn.send_headers(sid, grpc_response_headers(ct))
                    for part in message_parts(result):
                        await self._send_data(sid, part, end_stream=False)
                    h2conn.send_headers(sid, grpc_trailers(None), end_stream=True)
            else:
                if error is not None:
                    headers, result = plain_error(error)
                else:
                    headers = plain_response_headers(ct, len(result))
                h2conn.send_headers(sid, headers, end_stream=not result)
                if result:
                    await self._send_data(sid, result, end_stream=True)
        except H2Error:
            pass  # the stream was reset meanwhile: nobody to answer
        if len(self._streams) <= 1 and not self._calls:
            self._writer.flush_now()  # the only call: answer without a hop to the writer
        else:
            self._flush()  # others are answering too: one write for all of them

    async def _send_data(self, sid: int, data: bytes, *, end_stream: bool) -> None:
        """Send a body within the peer's flow-control window, waiting for it to open."""
        if not await self._flow.send(sid, data, end_stream=end_stream, stop=self._is_done):
            raise anyio.BrokenResourceError("connection closed")

    def _is_done(self) -> bool:
        return self._done

    def _fail_window_waiters(self) -> None:
        self._done = True
        self._flow.wake_all()

    # -- shutdown ------------------------------------------------------------

    def drain(self) -> None:
        """Announce shutdown (GOAWAY) and close once calls in flight are answered."""
        if self._draining:
            return
        self._draining = True
        self._h2.send_goaway(self._h2.highest_inbound_stream_id)
        self._flush()
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self._draining and not self._streams:
            self._close()


#: What each event the protocol core reports is handed to (one table for all
#: connections: a connection of its own would cost a kilobyte per connection).
_HANDLERS: dict[type, Callable[[H2ServerConnection, Any], None]] = event_handlers(
    {
        "RequestReceived": H2ServerConnection._on_request,
        "DataReceived": H2ServerConnection._on_data,
        "StreamEnded": H2ServerConnection._on_end,
        "StreamReset": H2ServerConnection._on_reset,
        "WindowUpdated": H2ServerConnection._on_window,
        "RemoteSettingsChanged": H2ServerConnection._on_settings,
        "ConnectionTerminated": H2ServerConnection._on_terminated,
    }
)

#: Workers that may wait for unary calls on one connection.
_IDLE_WORKERS = 16
#: Queued outbound bytes past which a streaming sender lets the writer run.
_YIELD_AFTER = 64 * 1024


def _unary_body(st: _Stream) -> bytes | memoryview:
    """The one request of a unary call; raises BadRequest for a gRPC body of more or less."""
    chunks = st.chunks
    st.chunks = []
    if st.decoder is not None:
        if st.decoder.pending or len(chunks) != 1:
            partial = " and a partial one" if st.decoder.pending else ""
            raise BadRequest(
                f"a unary call takes exactly one whole message, got {len(chunks)}{partial}"
            )
        return chunks[0]
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _lines_headers(media_type: str) -> list[tuple[str, str]]:
    return [(":status", "200"), ("content-type", media_type), ("cache-control", "no-cache")]


class _StreamIO:
    """Whole messages in and out of one streaming call (a ``MessageIO``)."""

    __slots__ = ("_conn", "_st")

    def __init__(self, conn: H2ServerConnection, st: _Stream) -> None:
        self._conn = conn
        self._st = st

    async def receive_message(self) -> Payload | None:
        st = self._st
        while not st.inbox:
            if st.ended or st.reset:
                return None
            st.wake = anyio.Event()
            await st.wake.wait()
        message = st.inbox.popleft()
        if st.unacked and not st.reset:
            # h2 turns these into WINDOW_UPDATEs in batches of half a window.
            self._conn._h2.acknowledge_received_data(st.unacked, st.id)
            st.unacked = 0
            self._conn._flush()
        return message

    async def send_message(self, data: bytes) -> None:
        st = self._st
        conn = self._conn
        if st.reset:
            raise Cancelled("the caller cancelled the call")
        h2conn = conn._h2
        try:
            if not st.headers_sent:
                h2conn.send_headers(st.id, grpc_response_headers(st.head.content_type))
                st.headers_sent = True
            for part in message_parts(data):
                await conn._send_data(st.id, part, end_stream=False)
        except H2Error:
            raise Cancelled("the caller cancelled the call") from None
        conn._flush()
        if h2conn.outbound_size() >= _YIELD_AFTER:
            await anyio.lowlevel.checkpoint()
