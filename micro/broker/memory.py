"""In-process broker: for tests and single-process applications.

``publish`` returns once every subscriber without a queue group, and one
member of each queue group, has handled the message (see
:mod:`micro.broker.dispatch`); a handler that raises makes the group's next
member try, then ``publish`` fail. Each subscription runs at most ``buffer``
handlers at once, and a publisher waits up to ``publish_timeout`` seconds
(None: as long as it takes) for its message to be handled, then fails with
PublishError: memory never grows without bound.
"""

from __future__ import annotations

import random

import anyio
import anyio.abc

from ..errors import MicroError
from .base import ErrorHandler, Handler, Message, PublishError
from .dispatch import Dispatcher, SubscriptionGone

__all__ = ["MemoryBroker", "default_broker", "DEFAULT_BUFFER"]

#: handlers a subscription runs at once, by default
DEFAULT_BUFFER = 1024


class _Sub:
    __slots__ = ("dispatcher", "queue")

    def __init__(self, queue: str | None, dispatcher: Dispatcher) -> None:
        self.queue = queue
        self.dispatcher = dispatcher


class MemoryBroker:
    def __init__(
        self, *, buffer: int = DEFAULT_BUFFER, publish_timeout: float | None = 10.0
    ) -> None:
        self.buffer = buffer
        self.publish_timeout = publish_timeout
        self._subs: dict[str, list[_Sub]] = {}

    async def publish(self, message: Message) -> None:
        groups: dict[str, list[_Sub]] = {}
        targets: list[list[_Sub]] = []
        for sub in self._subs.get(message.topic, ()):
            if sub.queue is None:
                targets.append([sub])
            else:
                groups.setdefault(sub.queue, []).append(sub)
        for members in groups.values():
            # Members with a free slot first, at random; the others after them.
            random.shuffle(members)
            members.sort(key=lambda m: m.dispatcher.running >= m.dispatcher.limit)
            targets.append(members)
        failed: list[str] = []
        if len(targets) == 1:
            await self._to_one(message, targets[0], failed)
        else:
            async with anyio.create_task_group() as tg:
                for members in targets:
                    tg.start_soon(self._to_one, message, members, failed)
        if failed:
            raise PublishError(
                f"message {message.id} on {message.topic} was not handled: " + "; ".join(failed)
            )

    async def _to_one(self, message: Message, members: list[_Sub], failed: list[str]) -> None:
        """Have one of ``members`` handle ``message``, trying each in turn."""
        last = ""
        for sub in members:
            try:
                with anyio.fail_after(self.publish_timeout):
                    await sub.dispatcher.deliver(message)
                return
            except SubscriptionGone:
                continue  # ended meanwhile: not a subscriber any more
            except MicroError as exc:
                last = exc.detail
            except TimeoutError:
                last = (
                    f"a subscriber of {message.topic} did not handle it within "
                    f"{self.publish_timeout}s"
                )
        if last:
            failed.append(last)

    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        queue: str | None = None,
        on_error: ErrorHandler | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        sub = _Sub(queue, Dispatcher(topic, handler, on_error=on_error, limit=self.buffer))
        self._subs.setdefault(topic, []).append(sub)
        try:
            await sub.dispatcher.run(task_status=task_status)
        finally:
            self._subs[topic].remove(sub)
            if not self._subs[topic]:
                del self._subs[topic]

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
