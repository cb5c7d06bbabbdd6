"""The client side of a streaming call.

``client.stream(...)`` opens one and yields a :class:`ClientStream`::

    async with client.stream("chat", "Chat.Talk", response_type=Line) as s:
        await s.send(Line("hi"))
        await s.close_send()               # half-close: no more requests
        async for line in s:               # responses until the server ends
            ...

A clean end of the server's responses ends iteration (``receive`` raises
:class:`anyio.EndOfStream`); an error status raises the server's
:class:`~micro.errors.MicroError` instead. Leaving the block early resets the
stream, which cancels the server's handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

import anyio

from ..codec import Codec
from ..transport.framing import encode_message
from ..transport.h2_client import H2ClientConnection, StreamParts
from .status import raise_for_grpc_status

__all__ = ["ClientStream"]

T = TypeVar("T")


class ClientStream(Generic[T]):
    """Send requests and receive responses on one call."""

    def __init__(
        self,
        conn: H2ClientConnection,
        stream_id: int,
        parts: StreamParts,
        codec: Codec,
        response_type: Any,
        service: str,
        endpoint: str,
    ) -> None:
        self._conn = conn
        self._sid = stream_id
        self._parts = parts
        self._codec = codec
        self._response_type = response_type
        self.service = service
        self.endpoint = endpoint

    async def send(self, message: Any) -> None:
        """Send one request; waits while the server is not reading (flow control).

        Raises :class:`anyio.ClosedResourceError` after :meth:`close_send`, and the
        server's error if it has already ended the call.
        """
        data = encode_message(self._codec.encode(message))
        await self._conn.send_message(self._sid, self._parts, data)

    async def close_send(self) -> None:
        """Half-close: the server's request iterator ends; responses keep coming."""
        self._conn.close_send(self._sid, self._parts)

    async def receive(self) -> T:
        """The next response; :class:`anyio.EndOfStream` at a clean end, MicroError on error."""
        data = await self._conn.receive_message(self._sid, self._parts)
        if data is None:
            raise_for_grpc_status(self._parts, self.service)
            raise anyio.EndOfStream
        value: T = self._codec.decode(data, self._response_type)
        return value

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.receive()
            except anyio.EndOfStream:
                return

    @property
    def headers(self) -> dict[str, str]:
        """Response headers received so far (empty until the server answers)."""
        return {k: v for k, v in self._parts.headers if not k.startswith(":")}

    @property
    def trailers(self) -> dict[str, str]:
        """Trailers (status and trailing metadata), once the call has ended."""
        return dict(self._parts.trailers)

    @property
    def done(self) -> bool:
        return self._parts.done and not self._parts.inbox
