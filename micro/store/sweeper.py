"""The sweeper: a part of the service that deletes a store's expired records.

Some stores keep an expired record until someone deletes it: reads skip it, but
its row (PostgreSQL) or object (S3) stays. Such a store has ``sweep_all()``,
which deletes the expired records of every table it can see, and a
``sweep_interval``. A service whose store has them runs :func:`run_sweeper`
as one of its supervised parts, so expired records go even when nobody writes.
Stores that expire records by themselves (memory, file, etcd, Redis) have no
sweeper. A sweep that fails (the server is down) is logged and tried again at
the next interval: a store that is down does not stop the service.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import anyio

from .base import StoreUnavailable

__all__ = ["SweptStore", "WriteSweeps", "run_sweeper"]

log = logging.getLogger(__name__)


@runtime_checkable
class SweptStore(Protocol):
    """A store whose expired records stay until swept."""

    kind: str
    #: seconds between sweeps
    sweep_interval: float

    async def sweep_all(self) -> int:
        """Delete the expired records of every table; returns how many went.

        Raises :class:`StoreUnavailable` when the server cannot be reached.
        """
        ...


async def run_sweeper(store: SweptStore, interval: float | None = None) -> None:
    """Sweep ``store`` every ``interval`` seconds (its ``sweep_interval`` by default),
    until cancelled. The first sweep comes after one interval, so replicas that
    start together do not all sweep at once on start."""
    every = store.sweep_interval if interval is None else interval
    if every <= 0:
        raise ValueError(f"the sweep interval must be positive, not {every!r}")
    while True:
        await anyio.sleep(every)
        try:
            swept = await store.sweep_all()
        except StoreUnavailable as exc:
            log.warning(
                "sweeping the %s store failed (next try in %gs): %s", store.kind, every, exc.detail
            )
            continue
        if swept:
            log.debug("swept %d expired records from the %s store", swept, store.kind)


class WriteSweeps:
    """The sweeps such a store's writes also make: after a write, the tables it
    wrote to are swept, each at most once per ``interval`` seconds (per process).
    A sweep that fails is logged; the write stands and a later sweep does it.
    """

    def __init__(self, kind: str, interval: float) -> None:
        self.kind = kind
        self.interval = interval
        self._last: dict[str, float] = {}

    async def after_write(self, table: str, sweep: Callable[[], Awaitable[object]]) -> None:
        """Run ``sweep`` (of ``table``) unless that table was swept within the interval."""
        now = time.monotonic()
        if now - self._last.get(table, -math.inf) <= self.interval:
            return
        self._last[table] = now
        try:
            await sweep()
        except StoreUnavailable as exc:
            log.warning(
                "sweeping %s in the %s store after a write failed (tried again later): %s",
                table,
                self.kind,
                exc.detail,
            )
