"""Users of a shared resource, counted in one place.

A client or backend that several parts use at once (one etcd client for the
registry, store, sync and config of a service; a registry entered by a service
and by its client) is opened by its first user and closed after its last.
:class:`Users` is that count: ``await users.enter(open)`` runs ``open`` for the
first user only, ``await users.exit(close)`` runs ``close`` after the last.
Users arriving while the first is still opening wait for it (and a user
arriving while the last is closing waits, then opens again), so a resource is
never opened twice at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

__all__ = ["Users"]

Step = Callable[[], Awaitable[object]]


class Users:
    """How many users hold a shared resource open."""

    __slots__ = ("_busy", "count")

    def __init__(self) -> None:
        #: the users holding it open now
        self.count = 0
        # Set while the first user opens it or the last closes it. Made for each
        # open or close, so a resource may serve one event loop after another.
        self._busy: anyio.Event | None = None

    @property
    def open(self) -> bool:
        """Whether any user holds it open."""
        return self.count > 0

    async def enter(self, open: Step | None = None) -> bool:
        """Count a user in; the first one runs ``open`` (if it raises, nobody is counted).
        Returns whether this was the first."""
        while self._busy is not None:  # another user is opening or closing it
            await self._busy.wait()
        if self.count > 0 or open is None:
            self.count += 1
            return self.count == 1
        await self._step(open)
        self.count += 1
        return True

    async def exit(self, close: Step | None = None) -> bool:
        """Count a user out; after the last one, run ``close``. Returns whether this was the
        last. Exiting more often than entering is a RuntimeError."""
        if self.count <= 0:
            raise RuntimeError("a shared resource was closed more often than it was opened")
        self.count -= 1
        if self.count > 0 or close is None:
            return self.count == 0
        await self._step(close)
        return True

    async def _step(self, step: Step) -> None:
        busy = self._busy = anyio.Event()
        try:
            await step()
        finally:
            self._busy = None
            busy.set()

    def __repr__(self) -> str:
        return f"Users({self.count})"
