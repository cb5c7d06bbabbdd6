"""Events and timeouts for the NATS client's hot paths, made the cheapest way the
running loop allows.

Every confirmed publish waits for a PONG, and every request (each JetStream
publish) for its reply within a timeout, so a busy publisher makes one of
each per message. :class:`anyio.Event` wraps the loop's own event: under
asyncio an ``asyncio.Event`` (whose waits also check which loop runs them),
under Trio a ``trio.Event``; and under Trio an :class:`anyio.CancelScope`
wraps Trio's own, costing about half again as much. Here, under asyncio, an
event is the list of its waiters' futures and a timeout anyio's (its scopes
are asyncio's own); under Trio both are Trio's own. Events are set once and
waited on with ``await event.wait()``; cancellation works as for any anyio
wait, and a timeout is a ``with`` block either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import sniffio

__all__ = ["Event", "event_factory", "timeout_factory"]


class Event(Protocol):
    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


class AsyncioEvent:
    """A one-shot event on asyncio: each waiter awaits a future of its own."""

    __slots__ = ("_flag", "_loop", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._flag = False
        self._waiters: list[asyncio.Future[None]] = []

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        for future in self._waiters:
            if not future.done():  # a cancelled waiter's
                future.set_result(None)
        self._waiters.clear()

    def is_set(self) -> bool:
        return self._flag

    async def wait(self) -> None:
        if self._flag:
            await anyio.lowlevel.checkpoint()
            return
        future = self._loop.create_future()
        self._waiters.append(future)
        await future


def event_factory() -> Callable[[], Event]:
    """What makes events for the running loop (call it within the loop)."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        loop = asyncio.get_running_loop()
        return lambda: AsyncioEvent(loop)
    if library == "trio":
        import trio  # only where Trio runs: it is an optional dependency

        return trio.Event
    return anyio.Event  # pragma: no cover - another anyio backend


def timeout_factory() -> Callable[[float], AbstractContextManager[Any]]:
    """What makes timeouts for the running loop: ``with make(seconds):`` leaves the
    block when ``seconds`` have passed (call it within the loop)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.move_on_after
    return anyio.move_on_after
