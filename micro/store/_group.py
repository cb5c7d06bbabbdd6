"""Batching: operations that arrive while a batch runs go together in the next one.

A durable commit costs about the same for one write as for a hundred (an
fsync, an etcd round trip), and a hop to a worker thread about the same for
one read as for fifty, so callers queue their operation and one of them runs
the queue: if no batch is running, the caller takes the queue (up to a size)
and runs it; callers arriving meanwhile wait for that batch to end, and the
first of them whose operation is still queued runs the next one. This is
group commit for writes. No task runs in the background: callers do the work.

The batch function marks each operation done, with its result or its own
error. A caller cancelled while its operation is still queued takes it out of
the queue; a runner cancelled before its batch ran puts the batch back for
the next caller to run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio

__all__ = ["Pending", "Batcher"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True, eq=False)
class Pending(Generic[T, R]):
    """A queued operation and, once its batch ran, its outcome."""

    item: T
    size: int = 0
    taken: bool = False
    done: bool = False
    result: R | None = None
    error: BaseException | None = None

    def finish(self, result: R | None = None) -> None:
        self.result = result
        self.done = True

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done = True


class Batcher(Generic[T, R]):
    """Runs queued operations in batches of at most ``max_items`` operations and
    ``max_bytes`` bytes (a larger single one goes alone); with ``key``, a batch
    also ends before a second operation on one key."""

    def __init__(
        self,
        run: Callable[[list[Pending[T, R]]], Awaitable[None]],
        *,
        max_items: int,
        max_bytes: int,
        key: Callable[[T], Hashable] | None = None,
    ) -> None:
        self._run = run
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._key = key
        self._queue: list[Pending[T, R]] = []
        # Set when the running batch ends; made per batch, so it belongs to
        # the event loop of the callers that wait on it.
        self._running: anyio.Event | None = None

    async def submit(self, item: T, size: int = 0) -> R | None:
        """The result of ``item`` once its batch ran; raises its error if it failed."""
        pending: Pending[T, R] = Pending(item, size)
        self._queue.append(pending)
        try:
            while not pending.done:
                if self._running is not None:
                    await self._running.wait()
                    continue
                await self._run_next()
        except BaseException:
            if not pending.taken:
                self._queue.remove(pending)
            raise
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def wait_idle(self) -> None:
        """Wait until no batch is running."""
        while self._running is not None:
            await self._running.wait()

    async def _run_next(self) -> None:
        self._running = running = anyio.Event()
        batch = self._take()
        try:
            await self._run(batch)
        except anyio.get_cancelled_exc_class():
            # The runner was cancelled: operations not done go back to the queue.
            rest = [p for p in batch if not p.done]
            for pending in rest:
                pending.taken = False
            self._queue[:0] = rest
            raise
        except Exception as exc:  # a bug in the batch function: every operation gets its error
            for pending in batch:
                if not pending.done:
                    pending.fail(exc)
        finally:
            self._running = None
            running.set()

    def _take(self) -> list[Pending[T, R]]:
        count, size = 0, 0
        keys: set[Hashable] = set()
        for pending in self._queue:
            if count and (count >= self._max_items or size + pending.size > self._max_bytes):
                break
            if self._key is not None:
                key = self._key(pending.item)
                if key in keys:
                    break
                keys.add(key)
            count += 1
            size += pending.size
        batch, self._queue = self._queue[:count], self._queue[count:]
        for pending in batch:
            pending.taken = True
        return batch
