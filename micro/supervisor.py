"""Restart policy for a service's long-running parts.

Every long-running part (listener, heartbeat, watchers, subscribers, lease
keepers) runs through :meth:`Supervisor.start` as a task in the service's one
task group. A part that fails *before* it reports itself started fails the
start: a port that cannot be bound is an error to show, not to retry. A part
that crashes later is logged and restarted after an exponential backoff with
jitter (tenacity's policy); one that crashes more than ``max_restarts`` times
within ``window`` seconds stops the service with :class:`PartFailed`.
Cancellation is never caught: cancelling the group stops every part.
:meth:`Supervisor.stats` tells each part's state, restarts and last error, for
the service's debug stats.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import anyio.abc
import tenacity

__all__ = ["Supervisor", "PartFailed", "PartState", "backoff_delay"]

log = logging.getLogger("micro.supervisor")

Part = Callable[..., Awaitable[Any]]


def backoff_delay(wait: tenacity.wait.wait_base, attempt: int) -> float:
    """The delay a tenacity wait strategy gives before retry number ``attempt`` (from 1).

    For loops that are not tenacity's own (a part's restarts, a call's retries,
    a watch's reconnects) but want its backoff policies.
    """
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(wait(state))


class PartFailed(Exception):
    """A part of the service kept crashing; the service stops."""

    def __init__(self, name: str, restarts: int, window: float) -> None:
        super().__init__(
            f"{name} crashed {restarts} times within {window:g}s; stopping the service"
        )
        self.name = name


@dataclass
class PartState:
    """How a supervised part is doing."""

    #: ``starting``, ``running``, ``restarting`` (waiting out its backoff), ``stopped``
    #: (it returned or was cancelled) or ``failed`` (it kept crashing, or failed to start)
    state: str = "starting"
    #: how many times it was restarted after a crash
    restarts: int = 0
    #: the last crash, as ``Type: message``
    last_error: str | None = None


class Supervisor:
    def __init__(
        self,
        tg: anyio.abc.TaskGroup,
        *,
        max_restarts: int = 5,
        window: float = 60.0,
        initial_backoff: float = 0.1,
        max_backoff: float = 10.0,
    ) -> None:
        self._tg = tg
        self.max_restarts = max_restarts
        self.window = window
        self._wait = tenacity.wait_exponential_jitter(
            multiplier=initial_backoff, max=max_backoff, jitter=initial_backoff
        )
        #: each part's state by name (a restarted part keeps its entry)
        self.parts: dict[str, PartState] = {}

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each part's state, restarts and last error by name, for debug stats."""
        return {name: asdict(part) for name, part in self.parts.items()}

    async def start(self, name: str, part: Part, *args: Any) -> Any:
        """Run ``part(*args, task_status=...)`` supervised; return what it reports as started.

        Parts that do not take ``task_status`` are started at once with
        :meth:`start_soon`.
        """
        state = self.parts[name] = PartState()
        return await self._tg.start(self._supervise, name, part, args, True, state, name=name)

    def start_soon(self, name: str, part: Part, *args: Any) -> None:
        """Run ``part(*args)`` supervised, without waiting for it to report started."""
        state = self.parts[name] = PartState()
        self._tg.start_soon(self._supervise, name, part, args, False, state, name=name)

    async def _supervise(
        self,
        name: str,
        part: Part,
        args: tuple[Any, ...],
        takes_status: bool,
        state: PartState,
        *,
        task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        reported = not takes_status
        crashes: deque[float] = deque()

        class _Status:
            def started(self, value: Any = None) -> None:
                nonlocal reported
                if not reported:
                    reported = True
                    state.state = "running"
                    task_status.started(value)

        if reported:
            state.state = "running"
        try:
            while True:
                try:
                    if takes_status:
                        await part(*args, task_status=_Status())
                    else:
                        await part(*args)
                    return
                except Exception as exc:
                    state.last_error = f"{type(exc).__name__}: {exc}"
                    if not reported:
                        state.state = "failed"
                        raise
                    now = time.monotonic()
                    crashes.append(now)
                    while crashes and crashes[0] < now - self.window:
                        crashes.popleft()
                    if len(crashes) > self.max_restarts:
                        state.state = "failed"
                        raise PartFailed(name, len(crashes), self.window) from exc
                    delay = self._backoff(len(crashes))
                    log.error("%s crashed; restarting in %.2fs", name, delay, exc_info=exc)
                    state.state = "restarting"
                    await anyio.sleep(delay)
                    state.restarts += 1
                    state.state = "running" if reported else "starting"
        finally:
            if state.state != "failed":
                state.state = "stopped"

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(self._wait, attempt)
