"""HTTP/2 client connection: many concurrent calls multiplexed on one socket.

Theory of operation. As on the server, one task reads and dispatches h2
events by type and one task writes whatever h2 has queued, in one socket
write per wake-up, so concurrent callers' requests coalesce. A caller queues
its HEADERS and DATA synchronously, wakes the writer and sleeps on its call's
event until the reader has seen the response end (or the stream reset, or the
connection fail). A caller that is cancelled resets its stream on the way out.

Failures are recorded once and raised to every caller waiting on the
connection. Each failure says whether the request can be retried safely
elsewhere: :class:`~micro.errors.Unavailable` with ``unprocessed=True``
means the server certainly did not start handling it (never sent, refused
stream, or above a GOAWAY's last stream id).

One module: the reader, the writer and the callers share the connection's
state (its calls, its outbound buffer, its failure), and the order of their
steps is what the guarantees above rest on, so they read best side by side.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import anyio
import anyio.abc
import anyio.lowlevel
import h2.events
from h2.errors import ErrorCodes

from ..errors import Cancelled, InternalServerError, MicroError, PayloadTooLarge, Unavailable
from .aio_stream import AsyncioSocketStream, adopt
from .flow import OutboundFlow
from .framing import MessageDecoder, Payload, detach
from .h2conn import H2Error, ProtocolError, event_handlers, new_connection, start
from .primitives import new_event
from .writer import Writer

__all__ = ["H2ClientConnection", "ResponseParts", "StreamParts", "connection_lost"]

log = logging.getLogger("micro.transport")

READ_SIZE = 256 * 1024
#: Received bytes are fed to h2 this much at a time, with a checkpoint between
#: slices that produced events. Work then flows in small batches: the handlers
#: (or callers) woken by one slice run, and their answers go out, while the
#: peer is still producing the rest. Feeding 64 requests at once instead makes
#: both ends of a connection take turns, each idle while the other works
#: (measured here: about 2x the calls/s at 64 in flight between two Python processes).
FEED_SLICE = 2048
_NET_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def connection_lost(detail: str, *, unprocessed: bool) -> Unavailable:
    err = Unavailable(detail)
    err.unprocessed = unprocessed  # type: ignore[attr-defined]
    return err


class ResponseParts:
    """What came back on one stream."""

    __slots__ = ("chunks", "done", "error", "event", "headers", "sent", "size", "trailers")

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes | memoryview] = []
        self.trailers: list[tuple[str, str]] = []
        self.size = 0
        self.done = False
        self.sent = False
        self.error: Exception | None = None
        self.event = new_event()

    @property
    def body(self) -> bytes | memoryview:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    def header(self, name: str, default: str = "") -> str:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def status_field(self, name: str) -> str | None:
        """A gRPC status field, from the trailers or a trailers-only response's headers."""
        for k, v in self.trailers:
            if k == name:
                return v
        for k, v in self.headers:
            if k == name:
                return v
        return None


class StreamParts(ResponseParts):
    """A streaming call's side of the connection: messages wait in the inbox."""

    __slots__ = ("decoder", "inbox", "send_closed", "unacked", "wake")

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.decoder = MessageDecoder(max_size)
        self.inbox: deque[Payload] = deque()
        self.unacked = 0
        self.wake: anyio.Event | None = None
        self.send_closed = False

    def notify(self) -> None:
        if self.wake is not None:
            self.wake.set()
            self.wake = None


#: Queued outbound bytes past which a streaming sender lets the writer run.
_YIELD_AFTER = 64 * 1024


class H2ClientConnection:
    def __init__(self, net: anyio.abc.ByteStream, authority: str, *, max_message_size: int):
        net = self._net = adopt(net)
        self.authority = authority
        self._max_size = max_message_size
        self._h2 = new_connection(client_side=True)
        self._calls: dict[int, ResponseParts] = {}
        self._writer = Writer(net, self._h2.data_to_send)
        self._flow = OutboundFlow(self._h2, self._writer.flush_soon)
        self._slot_waiters: list[anyio.Event] = []
        self._failure: Exception | None = None
        self._going_away = False
        self._heard_from_peer = False
        self._settings_seen = False
        self._scope: anyio.CancelScope | None = None
        #: the asyncio stream, once the connection has started (see request)
        self._push: AsyncioSocketStream | None = None
        #: the reading task is feeding what it received (pieces of it at a time)
        self._feeding = False

    @property
    def usable(self) -> bool:
        """Whether new calls may start on this connection."""
        return self._failure is None and not self._going_away

    # -- the connection's tasks ---------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Read and write until the connection fails, is closed, or drains.

        Reports itself started once the server's SETTINGS have arrived, so the
        first calls already respect its limits (such as its concurrent streams);
        a connection that fails before that raises an unprocessed Unavailable.
        """
        start(self._h2)
        self._writer.flush_soon()
        started = False
        # Raised outside the task group, so the caller gets it unwrapped.
        early: Unavailable | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self._write_loop)
                while True:
                    try:
                        data = await self._net.receive(READ_SIZE)
                    except _NET_ERRORS as exc:
                        if not started:
                            early = connection_lost(
                                f"{self.authority} closed the connection before HTTP/2 "
                                f"settings: {exc!r}",
                                unprocessed=True,
                            )
                            break
                        self._fail(
                            connection_lost(
                                f"connection to {self.authority} lost: {exc!r}", unprocessed=False
                            )
                        )
                        break
                    self._heard_from_peer = True
                    self._feeding = True
                    try:
                        if not await self._feed(data):
                            break
                    finally:
                        self._feeding = False
                    if not started and self._settings_seen:
                        started = True
                        task_status.started()
                        if isinstance(self._net, AsyncioSocketStream):
                            self._push = self._net
                    if self._going_away and not self._calls:
                        break
                tg.cancel_scope.cancel()
            if early is not None:
                raise early
        finally:
            self._fail(connection_lost(f"connection to {self.authority} closed", unprocessed=False))
            with anyio.CancelScope(shield=True):
                await self._net.aclose()

    async def _feed(self, data: bytes) -> bool:
        """Hand received bytes to h2 slice by slice (see FEED_SLICE); False on a protocol error."""
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            pos = self._feed_slice(view, pos)
            if pos < 0:
                return False
            if pos < len(view):
                await anyio.lowlevel.checkpoint()
        return True

    def _feed_now(self, data: bytes) -> None:
        """Feed all of ``data`` at once (from the transport's callback, on asyncio)."""
        view = memoryview(data)
        pos = 0
        while 0 <= pos < len(view):
            pos = self._feed_slice(view, pos)
        ending = pos < 0 or (self._going_away and not self._calls)
        if ending and self._scope is not None:
            self._scope.cancel()  # what the reading task would do: end the connection

    def _feed_slice(self, view: memoryview, pos: int) -> int:
        """Feed a slice of ``view`` from ``pos``: where the next starts (-1: a protocol error)."""
        step = max(FEED_SLICE, self._h2.pending_frame_bytes())
        try:
            events = self._h2.receive_data(view[pos : pos + step])
        except ProtocolError as exc:
            self._fail(
                connection_lost(
                    f"HTTP/2 protocol error from {self.authority}: {exc}", unprocessed=False
                )
            )
            return -1
        if events:
            handlers = _HANDLERS
            for event in events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(self, event)
            # What the events queued (acknowledgements, window) goes now.
            self._writer.flush_now()
        return pos + step

    async def _write_loop(self) -> None:
        writer = self._writer
        while True:
            await writer.wait()
            try:
                await writer.send_queued()
            except _NET_ERRORS as exc:
                self._fail(
                    connection_lost(
                        f"connection to {self.authority} lost: {exc!r}", unprocessed=False
                    )
                )
                if self._scope is not None:
                    self._scope.cancel()
                return

    def close(self) -> None:
        """Stop at once; calls in flight fail."""
        self._fail(connection_lost(f"connection to {self.authority} closed", unprocessed=False))
        if self._scope is not None:
            self._scope.cancel()

    def _fail(self, error: Exception) -> None:
        if self._failure is None:
            self._failure = error
        for parts in self._calls.values():
            if not parts.done:
                # A server that never spoke (not even its SETTINGS) processed nothing.
                sent = parts.sent and self._heard_from_peer
                parts.error = parts.error or _copy_failure(error, sent)
                self._finish(parts)
        self._wake_all()

    # -- calls ---------------------------------------------------------------

    async def request(self, headers: list[tuple[str, str]], body: Sequence[bytes]) -> ResponseParts:
        """Send one request and wait for the whole response.

        Raises Unavailable (``unprocessed`` tells whether it is safe to retry),
        PayloadTooLarge for an oversized response, and lets cancellation
        through after resetting the stream.
        """
        while len(self._calls) >= self._h2.remote_settings.max_concurrent_streams:
            self._check_usable()
            waiter = anyio.Event()
            self._slot_waiters.append(waiter)
            await waiter.wait()
        self._check_usable()
        h2conn = self._h2
        sid = h2conn.get_next_available_stream_id()
        parts = ResponseParts()
        self._calls[sid] = parts
        push = self._push
        if push is not None and not self._feeding:
            # A call alone is fed from the transport's callback, which wakes its
            # caller without a turn for the reading task first. With more calls
            # in flight the reading task feeds them: a callback answering all of
            # them at once would leave the server idle until all ask again.
            push.set_receiver(self._feed_now if len(self._calls) == 1 else None)
        try:
            h2conn.send_headers(sid, headers, end_stream=not body)
            parts.sent = True
            for i, chunk in enumerate(body):
                await self._send_data(sid, chunk, end_stream=i == len(body) - 1)
            if len(self._calls) == 1:
                self._writer.flush_now()  # the only call: out without a hop to the writer
            else:
                self._writer.flush_soon()  # others are calling too: one write for all
            await parts.event.wait()
        except BaseException:
            if not parts.done and self._failure is None:
                try:
                    h2conn.reset_stream(sid, ErrorCodes.CANCEL)
                except H2Error:
                    pass
                self._writer.flush_soon()
            raise
        finally:
            del self._calls[sid]
            if self._slot_waiters:
                self._slot_waiters.pop(0).set()
        if parts.error is not None:
            raise parts.error
        return parts

    # -- streams -------------------------------------------------------------

    async def open_stream(self, headers: list[tuple[str, str]]) -> tuple[int, StreamParts]:
        """Start a streaming call: send its HEADERS and register its inbox."""
        while len(self._calls) >= self._h2.remote_settings.max_concurrent_streams:
            self._check_usable()
            waiter = anyio.Event()
            self._slot_waiters.append(waiter)
            await waiter.wait()
        self._check_usable()
        sid = self._h2.get_next_available_stream_id()
        parts = StreamParts(self._max_size)
        self._calls[sid] = parts
        if self._push is not None and not self._feeding:
            self._push.set_receiver(None)  # streams are fed by the reading task
        self._h2.send_headers(sid, headers)
        parts.sent = True
        self._writer.flush_soon()
        return sid, parts

    async def send_message(self, sid: int, parts: StreamParts, framed: bytes) -> None:
        """Send one framed message, waiting for the server's flow-control window."""
        if parts.send_closed:
            raise anyio.ClosedResourceError("the sending side of this stream is closed")
        if parts.done:
            if parts.error is not None:
                raise parts.error
            raise anyio.BrokenResourceError("the server has ended this stream")
        try:
            await self._send_data(sid, framed, end_stream=False)
        except H2Error:
            if parts.error is not None:
                raise parts.error from None
            raise anyio.BrokenResourceError("the server has ended this stream") from None
        self._writer.flush_soon()
        if self._h2.outbound_size() >= _YIELD_AFTER:
            await anyio.lowlevel.checkpoint()

    def close_send(self, sid: int, parts: StreamParts) -> None:
        """Half-close: tell the server no more messages will come."""
        if parts.send_closed:
            return
        parts.send_closed = True
        if parts.done:
            return
        try:
            self._h2.end_stream(sid)
        except H2Error:
            return
        self._writer.flush_soon()

    async def receive_message(self, sid: int, parts: StreamParts) -> Payload | None:
        """The next message, or None once the stream has ended (check ``parts`` then)."""
        while not parts.inbox:
            if parts.done:
                return None
            parts.wake = anyio.Event()
            await parts.wake.wait()
        message = parts.inbox.popleft()
        if parts.unacked and not parts.done:
            try:
                self._h2.acknowledge_received_data(parts.unacked, sid)
            except H2Error:
                pass
            parts.unacked = 0
            self._writer.flush_soon()
        return message

    def close_stream(self, sid: int, parts: StreamParts) -> None:
        """Forget the stream, resetting it if it is still open (the caller left early)."""
        if self._calls.get(sid) is not parts:
            return
        del self._calls[sid]
        if not parts.done and self._failure is None:
            try:
                self._h2.reset_stream(sid, ErrorCodes.CANCEL)
            except H2Error:
                pass
            self._writer.flush_soon()
        if self._slot_waiters:
            self._slot_waiters.pop(0).set()

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise _copy_failure(self._failure, sent=False)
        if self._going_away:
            raise connection_lost(f"{self.authority} is going away", unprocessed=True)

    async def _send_data(self, sid: int, data: bytes, *, end_stream: bool) -> None:
        """Send a body within the server's window; stops early if the call ends meanwhile."""

        def answered() -> bool:
            parts = self._calls.get(sid)
            return parts is None or parts.done

        await self._flow.send(sid, data, end_stream=end_stream, stop=answered)

    # -- events --------------------------------------------------------------

    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        parts = self._calls.get(event.stream_id)
        if parts is not None:
            parts.headers = cast("list[tuple[str, str]]", event.headers)
            if isinstance(parts, StreamParts):
                encoding = parts.header("grpc-encoding", "identity")
                if encoding != "identity":
                    parts.decoder = MessageDecoder(self._max_size, encoding)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        parts = self._calls.get(sid)
        if isinstance(parts, StreamParts):
            self._on_stream_data(sid, parts, event)
            return
        self._h2.acknowledge_received_data(event.flow_controlled_length, sid)
        if parts is None or parts.done:
            return
        parts.size += len(event.data)
        # Room for the gRPC prefix on top of a message of the maximum size.
        if parts.size > self._max_size + 5:
            parts.error = PayloadTooLarge(
                f"response is over the limit of {self._max_size} bytes", grpc_status=8
            )
            self._finish(parts)
            try:
                self._h2.reset_stream(sid, ErrorCodes.CANCEL)
            except H2Error:
                pass
            return
        parts.chunks.append(detach(event.data))

    def _on_stream_data(self, sid: int, parts: StreamParts, event: h2.events.DataReceived) -> None:
        if parts.done:
            self._h2.acknowledge_received_data(event.flow_controlled_length, sid)
            return
        try:
            messages = parts.decoder.feed(event.data)
        except PayloadTooLarge as exc:
            exc.grpc_status = 8
            parts.error = exc
            self._finish(parts)
            try:
                self._h2.reset_stream(sid, ErrorCodes.CANCEL)
            except H2Error:
                pass
            return
        except MicroError as exc:
            parts.error = exc
            self._finish(parts)
            try:
                self._h2.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)
            except H2Error:
                pass
            return
        if messages:
            parts.inbox.extend(messages)
            parts.unacked += event.flow_controlled_length
            parts.notify()
        else:
            self._h2.acknowledge_received_data(event.flow_controlled_length, sid)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        parts = self._calls.get(event.stream_id)
        if parts is not None:
            parts.trailers = cast("list[tuple[str, str]]", event.headers)

    def _on_end(self, event: h2.events.StreamEnded) -> None:
        parts = self._calls.get(event.stream_id)
        if parts is not None:
            self._finish(parts)

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        sid = event.stream_id
        parts = self._calls.get(sid)
        self._flow.stream_gone(sid)
        if parts is None or parts.done:
            return
        code = event.error_code
        if code == ErrorCodes.REFUSED_STREAM:
            parts.error = connection_lost(f"{self.authority} refused the stream", unprocessed=True)
        elif code == ErrorCodes.NO_ERROR and parts.headers:
            # The server answered in full and asked us to stop sending.
            pass
        elif code == ErrorCodes.CANCEL:
            parts.error = Cancelled(f"{self.authority} cancelled the call")
        else:
            parts.error = InternalServerError(
                f"{self.authority} reset the stream ({_code_name(code)})", grpc_status=13
            )
        self._finish(parts)

    def _on_window(self, event: h2.events.WindowUpdated) -> None:
        self._flow.window_opened(event.stream_id)

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        self._settings_seen = True
        self._wake_all()

    def _on_terminated(self, event: h2.events.ConnectionTerminated) -> None:
        self._going_away = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        for sid, parts in self._calls.items():
            if sid > last and not parts.done:
                parts.error = connection_lost(
                    f"{self.authority} is going away; call not processed", unprocessed=True
                )
                self._finish(parts)
        if event.error_code not in (ErrorCodes.NO_ERROR, 0):
            self._fail(
                connection_lost(
                    f"{self.authority} closed the connection ({_code_name(event.error_code)})",
                    unprocessed=False,
                )
            )
        self._wake_all()

    def _finish(self, parts: ResponseParts) -> None:
        parts.done = True
        parts.event.set()
        if isinstance(parts, StreamParts):
            parts.notify()

    def _wake_all(self) -> None:
        self._flow.wake_all()
        waiters, self._slot_waiters = self._slot_waiters, []
        for waiter in waiters:
            waiter.set()


#: What each event the protocol core reports is handed to (one table for all connections).
_HANDLERS: dict[type, Callable[[H2ClientConnection, Any], None]] = event_handlers(
    {
        "ResponseReceived": H2ClientConnection._on_response,
        "DataReceived": H2ClientConnection._on_data,
        "TrailersReceived": H2ClientConnection._on_trailers,
        "StreamEnded": H2ClientConnection._on_end,
        "StreamReset": H2ClientConnection._on_reset,
        "WindowUpdated": H2ClientConnection._on_window,
        "RemoteSettingsChanged": H2ClientConnection._on_settings,
        "ConnectionTerminated": H2ClientConnection._on_terminated,
    }
)


def _copy_failure(error: Exception, sent: bool) -> Exception:
    if isinstance(error, Unavailable):
        return connection_lost(
            error.detail, unprocessed=not sent or getattr(error, "unprocessed", False)
        )
    return error


def _code_name(code: object) -> str:
    return getattr(code, "name", str(code))
