"""The server side of a streaming call.

Handlers of the four kinds see plain Python: a request, an async iterator of
requests, a response, or an async iterator of responses. A handler that needs
to interleave sends and receives freely takes a :class:`Stream` instead::

    async def chat(self, stream: micro.Stream[Req, Resp]) -> None:
        async for req in stream:
            await stream.send(Resp(...))

Receiving applies backpressure: a message is acknowledged to the peer's
flow control only when the handler takes it, so a slow handler slows its
caller rather than buffering without bound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Generic, TypeVar

import anyio

from ..codec import Codec
from ..transport.dispatch import MessageIO

__all__ = ["Stream", "MessageIO"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Stream(Generic[Req, Resp]):
    """Both directions of one streaming call, typed by the handler's annotation."""

    def __init__(
        self,
        io: MessageIO,
        codec: Codec,
        request_type: Any,
        metadata: Mapping[str, str],
        endpoint: str,
    ) -> None:
        self._io = io
        self._codec = codec
        self._request_type = request_type
        self.metadata = metadata
        self.endpoint = endpoint
        self.received = 0
        self.sent = 0

    async def receive(self) -> Req:
        """The next request; raises :class:`anyio.EndOfStream` when the caller is done."""
        data = await self._io.receive_message()
        if data is None:
            raise anyio.EndOfStream
        self.received += 1
        msg: Req = self._codec.decode(data, self._request_type)
        return msg

    async def send(self, message: Resp) -> None:
        """Send one response, waiting while the caller is not reading."""
        data = self._codec.encode(message)
        await self._io.send_message(data)
        self.sent += 1

    def __aiter__(self) -> AsyncIterator[Req]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Req]:
        while True:
            try:
                yield await self.receive()
            except anyio.EndOfStream:
                return
