"""Cancel scopes, events and timeouts for hot paths, made the cheapest way the loop allows.

Under Trio, :class:`anyio.CancelScope` and :class:`anyio.Event` are wrappers
around Trio's own, and making, entering and leaving a scope costs about half
again as much as Trio's own; an event about a third more. Under asyncio an
:class:`anyio.Event` is an ``asyncio.Event``, whose waits also check which loop
runs them. Cancellation is the loop's own either way, so anyio code below one
of these sees no difference.

Two uses. An HTTP/2 call makes a scope or two on each side (its deadline, a
reset by the peer) and an event or two (its answer, a worker's wake-up): the
drivers and the client take them from :func:`cancel_scope` and
:func:`new_event`, Trio's own under Trio, anyio's under asyncio. The NATS
client makes an event per confirmed publish and a timeout per request: it
picks its makers once per connection with :func:`event_factory` (under asyncio
an event that is the list of its waiters' futures) and :func:`timeout_factory`.
Events are set once and waited on with ``await event.wait()``; a timeout is a
``with`` block.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeAlias

import anyio
import anyio.lowlevel
import sniffio
import trio

__all__ = [
    "Event",
    "Scope",
    "cancel_scope",
    "event_factory",
    "new_event",
    "timeout_factory",
]

#: what :func:`cancel_scope` returns: both have ``deadline``, ``cancel()``,
#: ``cancel_called`` and ``cancelled_caught``, and are entered with ``with``
Scope: TypeAlias = anyio.CancelScope | trio.CancelScope


class Event(Protocol):
    """What every event here has (anyio's and Trio's have it too)."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


def cancel_scope(deadline: float = math.inf) -> Scope:
    """A new cancel scope with ``deadline`` (in the loop's clock), not yet entered."""
    if sniffio.current_async_library() == "trio":
        return trio.CancelScope(deadline=deadline)
    return anyio.CancelScope(deadline=deadline)


def new_event() -> Event:
    """A new event, not set (for one now and then: :func:`event_factory` for many)."""
    if sniffio.current_async_library() == "trio":
        return trio.Event()
    return anyio.Event()


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
        return trio.Event
    return anyio.Event  # pragma: no cover - another anyio backend


def timeout_factory() -> Callable[[float], AbstractContextManager[Any]]:
    """What makes timeouts for the running loop: ``with make(seconds):`` leaves the
    block when ``seconds`` have passed (call it within the loop)."""
    if sniffio.current_async_library() == "trio":
        return trio.move_on_after
    return anyio.move_on_after
