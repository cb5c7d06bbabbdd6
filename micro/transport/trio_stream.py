"""A plain TCP connection on Trio, read from its non-blocking socket directly.

Trio's socket stream tries to read first and waits for the socket only when
nothing is there: right for a bulk transfer, one failed system call per read
for a request and its answer, whose reader always comes before its bytes.
:class:`TrioSocketStream` does what the last read suggests: after a read that
filled the buffer (more is likely waiting) it tries first; otherwise it waits
for the socket first. Writing is the writer's (see :mod:`micro.transport.writer`),
on the same socket; sending, half-closing and closing go through the stream it wraps.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import SocketAttribute

__all__ = ["TrioSocketStream", "adopt_trio"]


def adopt_trio(net: anyio.abc.ByteStream) -> anyio.abc.ByteStream:
    """``net`` as a :class:`TrioSocketStream` if it is anyio's plain Trio socket stream."""
    if type(net).__module__ != "anyio._backends._trio" or type(net).__name__ != "SocketStream":
        return net
    sock = net.extra(SocketAttribute.raw_socket, None)
    if not isinstance(sock, socket.socket) or sock.getblocking():
        return net
    return TrioSocketStream(net, sock)


class TrioSocketStream(anyio.abc.ByteStream):
    """Reads ``sock`` itself; everything else goes to ``inner``, the stream over it."""

    def __init__(self, inner: anyio.abc.ByteStream, sock: socket.socket) -> None:
        self._inner = inner
        #: the non-blocking socket under the stream
        self.socket = sock
        self._try_first = True  # the last read filled the buffer
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        sock = self.socket
        if self._try_first:
            data = self._recv(sock, max_bytes)
            if data is not None:
                await anyio.lowlevel.checkpoint()  # a checkpoint, as every receive is
                return data
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                await anyio.wait_readable(sock)
            except OSError as exc:  # the socket went away while we waited
                raise anyio.ClosedResourceError from exc
            data = self._recv(sock, max_bytes)
            if data is not None:
                return data

    def _recv(self, sock: socket.socket, max_bytes: int) -> bytes | None:
        """What the socket has (None: nothing yet); raises at the end or on an error."""
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            data = sock.recv(max_bytes)
        except BlockingIOError:
            self._try_first = False
            return None
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        if not data:
            raise anyio.EndOfStream
        self._try_first = len(data) == max_bytes
        return data

    async def send(self, item: bytes) -> None:
        await self._inner.send(item)

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        self._closed = True
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes
