"""Cancel scopes and events for a call's hot path, made the cheapest way the loop allows.

Under Trio, :class:`anyio.CancelScope` and :class:`anyio.Event` are wrappers
around Trio's own, and making, entering and leaving a scope costs about half
again as much as Trio's own; an event about a third more. Cancellation is
``trio.Cancelled`` either way, so anyio code below a Trio scope sees no
difference. A call makes a scope or two on each side (its deadline, a reset by
the peer) and an event or two (its answer, a worker's wake-up), so the drivers
and the client take theirs from :func:`cancel_scope` and :func:`new_event`:
Trio's own under Trio, anyio's under asyncio.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import anyio
import sniffio
import trio

__all__ = ["Event", "Scope", "cancel_scope", "new_event"]

#: what :func:`cancel_scope` returns: both have ``deadline``, ``cancel()``,
#: ``cancel_called`` and ``cancelled_caught``, and are entered with ``with``
Scope: TypeAlias = anyio.CancelScope | trio.CancelScope
#: what :func:`new_event` returns: both have ``set()``, ``is_set()`` and ``wait()``
Event: TypeAlias = anyio.Event | trio.Event


def cancel_scope(deadline: float = math.inf) -> Scope:
    """A new cancel scope with ``deadline`` (in the loop's clock), not yet entered."""
    if sniffio.current_async_library() == "trio":
        return trio.CancelScope(deadline=deadline)
    return anyio.CancelScope(deadline=deadline)


def new_event() -> Event:
    """A new event, not set."""
    if sniffio.current_async_library() == "trio":
        return trio.Event()
    return anyio.Event()
