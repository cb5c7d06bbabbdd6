"""Cancel scopes for a call's hot path, made the cheapest way the running loop allows.

Under Trio, :class:`anyio.CancelScope` is a wrapper around a
:class:`trio.CancelScope`, and making, entering and leaving one costs about half
again as much as Trio's own. Cancellation is ``trio.Cancelled`` either way, so
anyio code below a Trio scope sees no difference. A call makes a scope or two
on each side (its deadline, a reset by the peer), so the drivers and the client
take theirs from :func:`cancel_scope`: Trio's own under Trio, anyio's under
asyncio.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import anyio
import sniffio
import trio

__all__ = ["Scope", "cancel_scope"]

#: what :func:`cancel_scope` returns: both have ``deadline``, ``cancel()``,
#: ``cancel_called`` and ``cancelled_caught``, and are entered with ``with``
Scope: TypeAlias = anyio.CancelScope | trio.CancelScope


def cancel_scope(deadline: float = math.inf) -> Scope:
    """A new cancel scope with ``deadline`` (in the loop's clock), not yet entered."""
    if sniffio.current_async_library() == "trio":
        return trio.CancelScope(deadline=deadline)
    return anyio.CancelScope(deadline=deadline)
