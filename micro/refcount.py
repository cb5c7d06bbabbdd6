"""Users of a shared resource, counted in one place.

A client or backend that several parts use at once (one etcd client for the
registry, store, sync and config of a service; a registry entered by a service
and by its client) is opened by its first user and closed after its last.
:class:`Users` is that count: ``await users.enter(open)`` runs ``open`` for the
first user only, ``await users.exit(close)`` runs ``close`` after the last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["Users"]

Step = Callable[[], Awaitable[object]]


class Users:
    """How many users hold a shared resource open."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        #: the users holding it open now
        self.count = 0

    @property
    def open(self) -> bool:
        """Whether any user holds it open."""
        return self.count > 0

    async def enter(self, open: Step | None = None) -> bool:
        """Count a user in; the first one runs ``open`` (if it raises, nobody is counted).
        Returns whether this was the first."""
        first = self.count == 0
        if first and open is not None:
            await open()
        self.count += 1
        return first

    async def exit(self, close: Step | None = None) -> bool:
        """Count a user out; after the last one, run ``close``. Returns whether this was the
        last. Exiting more often than entering is a RuntimeError."""
        if self.count <= 0:
            raise RuntimeError("a shared resource was closed more often than it was opened")
        self.count -= 1
        last = self.count == 0
        if last and close is not None:
            await close()
        return last

    def __repr__(self) -> str:
        return f"Users({self.count})"
