"""A connection's outgoing bytes: written at once when the socket takes them, else by a task.

The HTTP/2 drivers queue frames in the sans-IO core and then either

- :meth:`Writer.flush_soon`: wake the connection's writer task, which sends
  everything queued in this turn of the event loop in one write (what many
  streams and calls in flight want: one system call for all of them); or
- :meth:`Writer.flush_now`: write what is queued right away, from the task
  that queued it, when the socket can take it without waiting (what one call
  at a time wants: no hop to another task on the way out). Whatever the
  socket does not take at once is left to the writer task, so nobody ever
  waits in ``flush_now`` and nothing is sent out of order.

Writing at once needs a socket we can write to without waiting: on asyncio,
the transport of an :class:`~micro.transport.aio_stream.AsyncioSocketStream`
(which itself tries the socket first and buffers the rest); on Trio, the
non-blocking socket. Any other stream (TLS) is written by the task only.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from .aio_stream import AsyncioSocketStream
from .trio_stream import TrioSocketStream

__all__ = ["Writer"]


class Writer:
    """Sends what ``take()`` hands over (the protocol core's queued bytes) on ``net``."""

    __slots__ = ("_aio", "_busy", "_error", "_net", "_pending", "_sock", "_take", "_wake")

    def __init__(self, net: anyio.abc.ByteStream, take: Callable[[], Any]) -> None:
        self._net = net
        self._take = take
        self._wake = anyio.Event()
        self._busy = False  # the writer task is sending
        self._error: OSError | None = None
        #: Trio: bytes the socket has not taken yet, sent by the task only
        self._pending: memoryview | None = None
        self._aio = net if isinstance(net, AsyncioSocketStream) else None
        self._sock = _trio_socket(net) if self._aio is None else None

    def flush_soon(self) -> None:
        """Let the writer task send what is queued, with whatever else this turn queues."""
        self._wake.set()

    def flush_now(self) -> None:
        """Write what is queued if the socket takes it now; what it does not, the task sends."""
        if self._busy or self._error is not None:
            self._wake.set()
            return
        aio = self._aio
        if aio is not None:
            if not aio.writable or aio.transport.is_closing():
                self._wake.set()  # a backlog, or closing: the task waits or reports
                return
            data = self._take()
            if data:
                aio.transport.write(data)  # sends what the socket takes, buffers the rest
            return
        sock = self._sock
        if sock is None or self._pending is not None:
            self._wake.set()
            return
        data = self._take()
        if not data:
            return
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._error = exc
            sent = 0
        if sent < len(data):
            self._pending = memoryview(data)[sent:]
            self._wake.set()

    async def wait(self) -> None:
        """Wait until something asks for a flush (for the writer task's loop)."""
        await self._wake.wait()
        self._wake = anyio.Event()

    async def send_queued(self) -> None:
        """Send everything queued, including what is queued meanwhile (the writer task's part).

        Raises what the stream raises when the connection is lost.
        """
        self._busy = True
        try:
            if self._sock is None:
                while data := self._take():
                    await self._net.send(data)
                if self._aio is not None and not self._aio.writable:
                    # Written at once but not all taken by the socket yet:
                    # wait until the transport has sent it (what a close needs).
                    await self._net.send(b"")
                if self._error is not None:
                    raise anyio.BrokenResourceError from self._error
                return
            await self._send_on_socket(self._sock)
        finally:
            self._busy = False

    async def _send_on_socket(self, sock: socket.socket) -> None:
        while True:
            if self._error is not None:
                raise anyio.BrokenResourceError from self._error
            pending = self._pending
            if pending is None:
                data = self._take()
                if not data:
                    return
                pending = memoryview(data)
            try:
                sent = sock.send(pending)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if sent == len(pending):
                self._pending = None
                continue
            self._pending = pending[sent:]
            await anyio.wait_writable(sock)


def _trio_socket(net: anyio.abc.ByteStream) -> socket.socket | None:
    """The non-blocking socket under a plain (not TLS) Trio stream, else None.

    (On asyncio the raw socket is a wrapper that cannot send; the transport is used.)
    """
    if isinstance(net, TrioSocketStream):
        return net.socket
    if not isinstance(net, anyio.abc.SocketStream):
        return None
    sock = net.extra(SocketAttribute.raw_socket, None)
    if not isinstance(sock, socket.socket) or sock.getblocking():
        return None
    return sock
