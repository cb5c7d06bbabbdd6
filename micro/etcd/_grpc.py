"""One HTTP/2 connection to etcd carrying every gRPC call, driven by its callers.

Theory of operation. etcd serves gRPC on its client port, and every call of a
process to one etcd (unary calls, lease keepalives, watches) is a stream of
this one connection. The connection has no task of its own: the EtcdClient it
belongs to is shared by parts that open and close it from different tasks, so
no task group spans its life. Instead whoever waits for something from etcd
reads for everyone, as httpcore's HTTP/2 connection does: a waiter that finds
the read lock free takes it, reads and dispatches events to every stream until
what it waits for has come, then lets the next waiter take over. Waiters who
find the lock taken sleep until the reader reports progress (after each read,
and when it stops reading), then look again.

Writes go out under the write lock, shielded from cancellation (a frame cut
in half would break the connection for every call), within ``timeout``. A
caller leaving a stream early resets it, which is how a watch is cancelled.

A failure (the socket broke, a protocol error, a GOAWAY with an error) is
recorded once and raised to every stream as :class:`EtcdUnavailable` naming
the endpoint; the client then dials a new connection for the next call. An
idle connection is nobody's to read, so before reuse :meth:`poll` reads what
etcd sent meanwhile (a GOAWAY or the end of the stream after a restart), and a
dead connection is replaced before a call is lost on it.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import h2.events
from anyio.abc import SocketAttribute
from h2.errors import ErrorCodes

from ..errors import MicroError, from_grpc
from ..transport.framing import MessageDecoder, Payload
from ..transport.h2conn import H2Error, ProtocolError, event_handlers, new_connection, start
from ._call import BODY_KEPT, MAX_MESSAGE_SIZE, CallStream, describe, is_grpc
from ._records import EtcdUnavailable

__all__ = ["GrpcConnection"]

READ_SIZE = 256 * 1024
#: HTTP/2 stream ids run out at 2**31 (a billion calls); the connection is retired
#: a little before, so no call ever fails for want of one
LAST_STREAM_ID = 2**31 - 2**16
_NET_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class GrpcConnection:
    """gRPC calls to etcd on one HTTP/2 connection (see the module's theory)."""

    def __init__(
        self, net: anyio.abc.ByteStream, endpoint: str, authority: str, *, timeout: float
    ) -> None:
        self._net = net
        self.endpoint = endpoint
        self._authority = authority
        self._scheme = "https" if endpoint.startswith("https://") else "http"
        self._timeout = timeout
        self._h2 = new_connection(client_side=True)
        start(self._h2)
        self._streams: dict[int, CallStream] = {}
        self._failure: EtcdUnavailable | None = None
        self._going_away = False
        self._closed = False
        self._net_closed = False
        self._read_lock = anyio.Lock()
        self._write_lock = anyio.Lock()
        self._progress = anyio.Event()
        #: etcd's auth token, sent with every call when set (see EtcdClient's username)
        self.token: str | None = None
        self._handlers: dict[type, Callable[[Any], None]] = event_handlers(
            {
                "ResponseReceived": self._on_headers,
                "DataReceived": self._on_data,
                "TrailersReceived": self._on_trailers,
                "StreamEnded": self._on_end,
                "StreamReset": self._on_reset,
                "ConnectionTerminated": self._on_terminated,
            }
        )

    @property
    def usable(self) -> bool:
        """Whether new calls may start on this connection."""
        return self._failure is None and not self._going_away and not self._closed

    # -- calls -------------------------------------------------------------------

    async def open_stream(self, path: str) -> CallStream:
        """Start a call of ``path`` (``/etcdserverpb.KV/Range``); its request follows."""
        h2conn = self._h2
        await self.wait(
            lambda: (
                not self.usable
                or len(self._streams) < h2conn.remote_settings.max_concurrent_streams
            )
        )
        if not self.usable:
            detail = f"etcd at {self.endpoint} is closing the connection"
            raise EtcdUnavailable(self._failure.detail if self._failure else detail, id="etcd")
        sid = h2conn.get_next_available_stream_id()
        if sid >= LAST_STREAM_ID:
            self._going_away = True  # this call is among the last; the next dial a new one
        stream = self._streams[sid] = CallStream(self, sid)
        headers = [
            (":method", "POST"),
            (":scheme", self._scheme),
            (":path", path),
            (":authority", self._authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", "micro-etcd"),
        ]
        if self.token is not None:
            headers.append(("token", self.token))
        h2conn.send_headers(sid, headers)
        return stream

    async def unary(self, path: str, payload: bytes) -> Payload:
        """One request, one answer."""
        stream = await self.open_stream(path)
        try:
            await stream.send(payload, end=True)
            answer = await stream.receive()
            if answer is None:
                raise from_grpc(13, f"etcd at {self.endpoint} sent no answer to {path}", id="etcd")
            while await stream.receive() is not None:  # the status follows the answer
                pass
            return answer
        finally:
            await stream.aclose()

    async def forget(self, stream: CallStream) -> None:
        if self._streams.get(stream.sid) is not stream:
            return
        del self._streams[stream.sid]
        self.give_back(stream)  # what the caller left unread
        if not stream.done and self._failure is None:
            stream.done = True
            try:
                self._h2.reset_stream(stream.sid, ErrorCodes.CANCEL)
            except H2Error:
                pass
        await self.flush()
        self._signal()
        if not self.usable and not self._streams:
            await self.aclose()

    def give_back(self, stream: CallStream) -> None:
        """Return the flow-control window of the stream's received messages to etcd, for
        the connection too: done even when the stream has ended, or it shrinks for good."""
        unacked, stream.unacked = stream.unacked, 0
        if unacked and self._failure is None:
            try:
                self._h2.acknowledge_received_data(unacked, stream.sid)
            except H2Error:
                pass

    # -- reading: whoever waits reads -------------------------------------------

    async def wait(self, ready: Callable[[], bool]) -> None:
        """Read until ``ready()`` (or the connection fails), or let another waiter read."""
        while not ready() and self._failure is None:
            if self._read_lock.locked():
                await self._progress.wait()
                continue
            self._read_lock.acquire_nowait()
            try:
                while not ready() and self._failure is None:
                    await self._read()
            finally:
                self._read_lock.release()
                self._signal()

    def readable(self) -> bool:
        """Whether etcd sent something (or closed) that nobody has read yet."""
        sock = self._net.extra(SocketAttribute.raw_socket, None)
        if sock is None:
            return False
        try:
            if hasattr(select, "poll"):
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                return bool(poller.poll(0))
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True  # a socket that cannot be polled is read, and fails there

    async def poll(self) -> None:
        """Read what arrived while nobody was reading (a GOAWAY, the end of the stream)."""
        if self._failure is not None or self._read_lock.locked() or not self.readable():
            return
        self._read_lock.acquire_nowait()
        try:
            await self._read()
        finally:
            self._read_lock.release()
            self._signal()

    def _signal(self) -> None:
        progress, self._progress = self._progress, anyio.Event()
        progress.set()

    async def _read(self) -> None:
        try:
            data = await self._net.receive(READ_SIZE)
        except _NET_ERRORS as exc:
            await self._lose(f"the connection to etcd at {self.endpoint} broke ({describe(exc)})")
            return
        try:
            events = self._h2.receive_data(data)
        except ProtocolError as exc:
            await self._lose(f"etcd at {self.endpoint} broke HTTP/2 ({exc})")
            return
        handlers = self._handlers
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)
        self._signal()  # the other waiters look whether what they wait for came
        await self.flush()  # acknowledgements, window updates, pings' answers

    # -- writing ------------------------------------------------------------------

    async def flush(self) -> None:
        """Send what is queued; a write that fails or stalls fails the connection."""
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                if self._failure is not None:
                    return
                data = self._h2.data_to_send()
                if not data:
                    return
                try:
                    with anyio.fail_after(self._timeout):
                        await self._net.send(data)
                except (*_NET_ERRORS, TimeoutError) as exc:
                    await self._lose(
                        f"the connection to etcd at {self.endpoint} broke ({describe(exc)})"
                    )

    # -- the end -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection; calls still open on it fail."""
        self._closed = True
        await self._lose(f"the connection to etcd at {self.endpoint} was closed")

    async def retire(self) -> None:
        """Take no new calls; close once the calls open now have ended."""
        self._going_away = True
        if not self._streams:
            await self.aclose()

    async def _lose(self, detail: str) -> None:
        if self._failure is None:
            self._failure = EtcdUnavailable(detail, id="etcd")
        for stream in self._streams.values():
            if not stream.done:
                stream.error = stream.error or EtcdUnavailable(self._failure.detail, id="etcd")
                stream.done = True
        self._signal()
        if not self._net_closed:
            self._net_closed = True
            with anyio.CancelScope(shield=True):
                await self._net.aclose()

    # -- events ---------------------------------------------------------------------

    def _on_headers(self, event: h2.events.ResponseReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream.headers = list(event.headers)  # type: ignore[arg-type]
            if not is_grpc(stream.headers):
                stream.body = bytearray()
            encoding = stream._field("grpc-encoding") or "identity"
            if encoding != "identity":
                stream.decoder = MessageDecoder(MAX_MESSAGE_SIZE, encoding)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        stream = self._streams.get(sid)
        length = event.flow_controlled_length or 0
        messages: list[Payload] = []
        if stream is not None and stream.body is not None:
            stream.body += bytes(event.data or b"")[: BODY_KEPT - len(stream.body)]
        elif stream is not None and not stream.done:
            try:
                messages = stream.decoder.feed(event.data or b"")
            except MicroError as exc:
                stream.error = EtcdUnavailable(
                    f"etcd at {self.endpoint} sent a broken message: {exc.detail}", id="etcd"
                )
                stream.done = True
                try:
                    self._h2.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)
                except H2Error:
                    pass
        if messages and stream is not None:
            # Acknowledged as they are taken, so a slow watcher holds etcd back.
            stream.inbox.extend(bytes(m) for m in messages)
            stream.unacked += length
        elif length:
            try:
                self._h2.acknowledge_received_data(length, sid)
            except H2Error:
                pass

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream.trailers = list(event.headers)  # type: ignore[arg-type]

    def _on_end(self, event: h2.events.StreamEnded) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream.done = True

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None or stream.done:
            return
        code = getattr(event.error_code, "name", str(event.error_code))
        stream.error = EtcdUnavailable(
            f"etcd at {self.endpoint} reset the call ({code})", id="etcd"
        )
        stream.done = True

    def _on_terminated(self, event: h2.events.ConnectionTerminated) -> None:
        self._going_away = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        for sid, stream in self._streams.items():
            if sid > last and not stream.done:
                stream.error = EtcdUnavailable(
                    f"etcd at {self.endpoint} is going away; the call was not processed",
                    id="etcd",
                )
                stream.done = True
        if event.error_code not in (ErrorCodes.NO_ERROR, 0):
            code = getattr(event.error_code, "name", str(event.error_code))
            self._failure = EtcdUnavailable(
                f"etcd at {self.endpoint} closed the connection ({code})", id="etcd"
            )
            for stream in self._streams.values():
                if not stream.done:
                    stream.error = EtcdUnavailable(self._failure.detail, id="etcd")
                    stream.done = True
