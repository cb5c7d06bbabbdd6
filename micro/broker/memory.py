"""In-process broker: for tests and single-process applications.

Each subscription has a bounded buffer (``buffer`` messages). A publisher
facing a full buffer waits up to ``publish_timeout`` seconds (None: as long as
it takes) and then fails with PublishError: memory never grows without bound.
Queue groups pick one member per message, preferring members with room.
"""

from __future__ import annotations

import logging
import random

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from .base import ErrorHandler, Handler, Message, PublishError

__all__ = ["MemoryBroker", "run_handler", "default_broker"]

log = logging.getLogger("micro.broker")

DEFAULT_BUFFER = 1024


async def run_handler(handler: Handler, message: Message, on_error: ErrorHandler | None) -> None:
    """Call a subscriber; its failure is reported, never raised into the subscription."""
    try:
        await handler(message)
    except Exception as exc:
        log.error("subscriber of %s failed on message %s", message.topic, message.id, exc_info=exc)
        if on_error is not None:
            try:
                await on_error(message, exc)
            except Exception:
                log.exception("error handler for %s failed", message.topic)


class _Sub:
    __slots__ = ("queue", "send")

    def __init__(self, queue: str | None, send: MemoryObjectSendStream[Message]) -> None:
        self.queue = queue
        self.send = send


class MemoryBroker:
    def __init__(
        self, *, buffer: int = DEFAULT_BUFFER, publish_timeout: float | None = 10.0
    ) -> None:
        self.buffer = buffer
        self.publish_timeout = publish_timeout
        self._subs: dict[str, list[_Sub]] = {}

    async def publish(self, message: Message) -> None:
        subs = list(self._subs.get(message.topic, ()))
        groups: dict[str, list[_Sub]] = {}
        targets: list[_Sub] = []
        for sub in subs:
            if sub.queue is None:
                targets.append(sub)
            else:
                groups.setdefault(sub.queue, []).append(sub)
        for members in groups.values():
            with_room = [
                m for m in members if m.send.statistics().current_buffer_used < self.buffer
            ]
            targets.append(random.choice(with_room or members))
        for sub in targets:
            await self._deliver(sub, message)

    async def _deliver(self, sub: _Sub, message: Message) -> None:
        try:
            sub.send.send_nowait(message)
            return
        except anyio.WouldBlock:
            pass
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the subscription ended meanwhile
        try:
            with anyio.fail_after(self.publish_timeout):
                await sub.send.send(message)
        except TimeoutError:
            raise PublishError(
                f"a subscriber of {message.topic} is {self.buffer} messages behind; "
                f"gave up after {self.publish_timeout}s"
            ) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        queue: str | None = None,
        on_error: ErrorHandler | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        send, receive = anyio.create_memory_object_stream[Message](self.buffer)
        sub = _Sub(queue, send)
        self._subs.setdefault(topic, []).append(sub)
        try:
            task_status.started()
            async with receive:
                async for message in receive:
                    await run_handler(handler, message, on_error)
        finally:
            self._subs[topic].remove(sub)
            if not self._subs[topic]:
                del self._subs[topic]
            send.close()

    async def __aenter__(self) -> MemoryBroker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


_default: MemoryBroker | None = None


def default_broker() -> MemoryBroker:
    """The process-wide memory broker."""
    global _default
    if _default is None:
        _default = MemoryBroker()
    return _default
