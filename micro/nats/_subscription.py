"""A subscription's buffer: filled by the connection's reader, drained by its consumer.

Each subscription holds at most ``max_msgs`` messages or ``max_bytes`` bytes
of payload (a single larger message still fits an empty buffer). When a
message arrives for a full buffer, ``_put`` says so and the reader waits in
``_wait_room`` until the consumer has taken one: backpressure instead of loss.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

import anyio
import anyio.lowlevel

from . import protocol
from .protocol import Msg

__all__ = ["Subscription"]

#: A consumer taking buffered messages yields to other tasks (and to
#: cancellation) at least once per this many, as a busy one would never wait.
#: About what a publisher on the same event loop queues between its own yields
#: (64 KiB of small messages): yielding far more often than the publisher lets
#: a backlog pile up (50,000 messages published in a loop left about 45,000
#: waiting with 32 here), costing memory and garbage-collector passes over it.
YIELD_EVERY = 512


class _Owner(Protocol):
    async def _subscribe(self, sub: Subscription) -> None: ...

    def _unsubscribe(self, sub: Subscription) -> None: ...

    async def _drain(self, sub: Subscription) -> None: ...


class Subscription:
    """Messages on a subject: ``async with client.subscribe(s) as sub: async for msg in sub:``.

    Entering waits until the server has the subscription (raising
    :class:`~micro.nats.NatsUnavailable` otherwise), so every message
    published after that reaches it; leaving unsubscribes. It lives on across
    reconnections. Iteration ends when the client closes.
    """

    def __init__(
        self, owner: _Owner, subject: str, queue: str | None, max_msgs: int, max_bytes: int
    ) -> None:
        protocol.sub(subject, 0, queue)  # a bad subject fails here, not on the wire
        self.subject = subject
        self.queue = queue
        self.sid = 0
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        #: the most messages that have waited at once
        self.high_water = 0
        self._owner = owner
        self._pending: deque[Msg] = deque()
        self._bytes = 0
        self._consumer: anyio.Event | None = None
        self._room: anyio.Event | None = None
        self._closed = False
        self._unyielded = 0

    @property
    def pending(self) -> int:
        """Messages received and not yet taken."""
        return len(self._pending)

    async def __aenter__(self) -> Subscription:
        await self._owner._subscribe(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._owner._unsubscribe(self)
        self._close()

    async def drain(self) -> list[Msg]:
        """Unsubscribe once the server has stopped sending: the messages it sent first.

        For a subscriber that must account for every message (JetStream
        deliveries to give back): nothing sent to the subscription is dropped.
        """
        await self._owner._drain(self)
        self._close()
        msgs = list(self._pending)
        self._pending.clear()
        self._bytes = 0
        return msgs

    def __aiter__(self) -> AsyncIterator[Msg]:
        return self

    async def __anext__(self) -> Msg:
        pending = self._pending
        if pending:
            self._unyielded += 1
            if self._unyielded >= YIELD_EVERY:
                self._unyielded = 0
                await anyio.lowlevel.checkpoint()
        while not pending:
            if self._closed:
                raise StopAsyncIteration
            self._unyielded = 0
            event = self._consumer = anyio.Event()
            await event.wait()
        msg = pending.popleft()
        self._bytes -= len(msg.payload)
        if self._room is not None and not self._full():
            self._room.set()
            self._room = None
        return msg

    # -- the reader's side --

    def _full(self) -> bool:
        return len(self._pending) >= self.max_msgs or self._bytes >= self.max_bytes

    def _put(self, msg: Msg) -> bool:
        """Buffer ``msg``; False when there is no room (the reader then waits for some)."""
        if self._closed:
            return True  # ended meanwhile: nobody will read it
        pending = self._pending
        waiting = len(pending)
        if waiting >= self.max_msgs or self._bytes >= self.max_bytes:
            return False
        pending.append(msg)
        self._bytes += len(msg.payload)
        if waiting >= self.high_water:
            self.high_water = waiting + 1
        if self._consumer is not None:
            self._consumer.set()
            self._consumer = None
        return True

    async def _wait_room(self) -> None:
        while self._full() and not self._closed:
            event = self._room = anyio.Event()
            await event.wait()

    def _close(self) -> None:
        """End iteration once the buffer is empty, and release a waiting reader."""
        self._closed = True
        for event in (self._consumer, self._room):
            if event is not None:
                event.set()
        self._consumer = self._room = None
