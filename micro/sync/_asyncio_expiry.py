"""asyncio only: a body whose wait ended during a pause is cancelled before it runs on.

AnyIO cancels a task at its next checkpoint, but under asyncio it leaves alone
a task whose awaited future is already done (so that a finished operation's
result is not lost) and tries again once that task has run one more step.
After a pause (SIGSTOP, a long GC pause), the event loop runs every overdue
timer, in the order they were due, before any task takes a step. A sleep in
the body due before the hold's local expiry finishes first; the expiry's
cancellation then finds the body's task with a finished wait, and the body
would resume and run on to its next checkpoint past its expiry.

:class:`ExpiryGuard` is a timer at the local expiry that completes the
cancellation AnyIO would have delivered had the wait not finished: if the
body's task is about to resume from such a wait, not shielded, it is
cancelled as AnyIO cancels it (with the scope's own cancel message, counted
in the scope's uncancellations), so the wait raises and no body code runs.
Trio needs none of this: it processes every overdue deadline before running
any task.

This reads AnyIO's and asyncio's private task state; each use is checked, and
where the state is missing or different the guard does nothing, leaving the
body to be cancelled at its next checkpoint (with ``held`` already False).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import anyio

__all__ = ["ExpiryGuard", "expiry_guard"]


def expiry_guard(scope: anyio.CancelScope) -> ExpiryGuard | None:
    """A guard for ``scope``, just entered by the current task; None if not on asyncio."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio loop runs this thread: Trio
        return None
    if task is None:
        return None
    return ExpiryGuard(scope, task)


class ExpiryGuard:
    """Cancels the body's task at the local expiry even if its wait has just finished."""

    def __init__(self, scope: anyio.CancelScope, task: asyncio.Task[Any]) -> None:
        self._scope = scope
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, deadline: float) -> None:
        """Fire at ``deadline`` on the loop's clock (``anyio.current_time()`` under asyncio)."""
        self.disarm()
        if deadline != math.inf:
            self._handle = self._loop.call_at(deadline, self._expire)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self) -> None:
        self._handle = None
        scope, task = self._scope, self._task
        scope.cancel()  # AnyIO's own timer for the deadline may have done so already
        waiter = getattr(task, "_fut_waiter", None)
        if task.done() or waiter is None or not waiter.done():
            return  # AnyIO cancelled the wait itself
        if getattr(task, "_must_cancel", True) or not _exposed(scope, task):
            return
        reason = getattr(scope, "_cancel_reason", None)
        pending = getattr(scope, "_pending_uncancellations", None)
        if not isinstance(reason, str) or not isinstance(pending, int):
            return
        task.cancel(reason)
        # What AnyIO counts for each cancel it makes of the scope's host task, so
        # the scope takes the cancellation back on exit.
        scope._pending_uncancellations = pending + 1  # type: ignore[attr-defined]


def _exposed(scope: anyio.CancelScope, task: asyncio.Task[Any]) -> bool:
    """True if no shielded scope stands between ``task``'s innermost scope and ``scope``."""
    try:
        from anyio._backends._asyncio import _task_states
    except ImportError:
        return False
    state = _task_states.get(task)
    inner = getattr(state, "cancel_scope", None)
    while inner is not scope:
        if inner is None or inner.shield:
            return False
        inner = getattr(inner, "_parent_scope", None)
    return True
