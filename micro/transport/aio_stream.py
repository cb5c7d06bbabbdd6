"""A plain TCP connection on asyncio, read and written through its transport directly.

anyio's asyncio socket stream resumes the transport's reading before every
receive that waits and pauses it again after: two changes to the selector's
registration (two system calls) per read, a fifth of what a connection costs
the server per unary call. :func:`adopt` takes over such a stream's transport
as its protocol: reading stays on (until more than ``READ_HIGH`` bytes wait
unread), a waiting receive waits on one future, and the writer can hand bytes
to the transport without a task (see :mod:`micro.transport.writer`).

A driver may also take what arrives as it arrives (:meth:`AsyncioSocketStream.
set_receiver`): the bytes go from the transport's callback straight to the
protocol core, and a call they complete is woken from there, without a turn
of the event loop for a reading task in between.

On Trio, :func:`adopt` gives a :class:`~micro.transport.trio_stream.
TrioSocketStream`; any other stream (TLS) is returned as it is. The stream it adopts is
anyio's own, whose transport and protocol are private attributes: they are
looked up by name and checked, so a stream of another shape is left alone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from .trio_stream import adopt_trio

__all__ = ["AsyncioSocketStream", "adopt"]

#: Unread bytes past which reading pauses until the reader takes some.
READ_HIGH = 1024 * 1024


def adopt(net: anyio.abc.ByteStream) -> anyio.abc.ByteStream:
    """``net`` as an :class:`AsyncioSocketStream` if it is anyio's asyncio socket stream
    (a :class:`~micro.transport.trio_stream.TrioSocketStream` if it is its Trio one)."""
    if type(net).__module__ == "anyio._backends._trio":
        return adopt_trio(net)
    if type(net).__module__ != "anyio._backends._asyncio" or type(net).__name__ != "SocketStream":
        return net
    transport: Any = getattr(net, "_transport", None)
    protocol: Any = getattr(net, "_protocol", None)
    queue = getattr(protocol, "read_queue", None)
    # By what it does, not its class: uvloop's transports are not asyncio.Transport.
    if not isinstance(queue, deque) or not all(hasattr(transport, m) for m in _TRANSPORT):
        return net
    if transport.is_closing():
        return net
    return AsyncioSocketStream(net, transport, protocol)


#: What AsyncioSocketStream needs of a transport.
_TRANSPORT = (
    "set_protocol",
    "write",
    "write_eof",
    "is_closing",
    "abort",
    "pause_reading",
    "resume_reading",
)


class AsyncioSocketStream(anyio.abc.ByteStream, asyncio.Protocol):
    """A byte stream that is also its transport's protocol."""

    def __init__(self, inner: anyio.abc.ByteStream, transport: asyncio.Transport, old: Any) -> None:
        self._inner = inner
        self.transport = transport
        #: False while the transport holds unsent bytes (its buffer is over its limit)
        self.writable: bool = old.write_event.is_set()
        self._chunks: deque[bytes] = deque(old.read_queue)
        old.read_queue.clear()
        self._unread = sum(len(c) for c in self._chunks)
        self._eof: bool = old.is_at_eof
        self._error: BaseException | None = old.exception
        self._closed = False
        self._reading_paused = True  # anyio pauses reading between receives
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._receiver: Callable[[bytes], None] | None = None
        self._receiver_error: Exception | None = None
        transport.set_protocol(self)
        self._resume_reading()

    # -- the protocol's side (called by the transport) -------------------------

    def data_received(self, data: bytes) -> None:
        if self._receiver is not None:
            self._push(data)
            return
        self._chunks.append(data)
        self._unread += len(data)
        if self._unread > READ_HIGH and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        _wake(self._read_waiter)

    def eof_received(self) -> bool:
        self._eof = True
        _wake(self._read_waiter)
        return True  # keep our side open: we may still be answering

    def connection_lost(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._error = exc
        self._eof = True
        self.writable = True
        _wake(self._read_waiter)
        _wake(self._write_waiter)

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        _wake(self._write_waiter)

    # -- the stream's side -------------------------------------------------------

    def set_receiver(self, receiver: Callable[[bytes], None] | None) -> None:
        """Hand what arrives to ``receiver`` as it arrives (None: queue it for receive again).

        ``receiver`` runs in the transport's callback: it must not block, and
        what it raises ends the stream (:meth:`receive` raises it). While it is
        set, :meth:`receive` returns nothing and waits for the end.
        """
        self._receiver = receiver
        while receiver is not None and self._chunks and self._receiver is receiver:
            chunk = self._chunks.popleft()
            self._unread -= len(chunk)
            self._push(chunk)
        if self._reading_paused:
            self._resume_reading()

    def _push(self, data: bytes) -> None:
        assert self._receiver is not None
        try:
            self._receiver(data)
        except Exception as exc:
            self._receiver = None
            self._receiver_error = exc
            _wake(self._read_waiter)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._receiver_error is not None:
                error, self._receiver_error = self._receiver_error, None
                raise error
            if self._closed:
                raise anyio.ClosedResourceError
            if self._error is not None:
                raise anyio.BrokenResourceError from self._error
            if self._eof:
                raise anyio.EndOfStream
            waiter = self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._read_waiter = None
        chunk = chunks.popleft()
        if len(chunk) > max_bytes:
            chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self._unread -= len(chunk)
        if self._reading_paused and self._unread <= READ_HIGH // 2:
            self._resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_writable()
        if item:
            self.transport.write(item)
        while not self.writable:
            waiter = self._write_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._write_waiter = None
            self._check_writable()

    async def send_eof(self) -> None:
        try:
            self.transport.write_eof()
        except OSError:
            pass

    async def aclose(self) -> None:
        self._closed = True
        self.transport.abort()
        _wake(self._read_waiter)
        _wake(self._write_waiter)
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes

    def _check_writable(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._error is not None:
            raise anyio.BrokenResourceError from self._error
        if self.transport.is_closing():
            raise anyio.BrokenResourceError

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if not self.transport.is_closing():
            self.transport.resume_reading()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
