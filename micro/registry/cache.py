"""A client's view of the registry: node lists kept fresh by watchers.

The first lookup of a service reads it from the registry and starts a
watcher for it, a part run by a :class:`~micro.supervisor.Supervisor`: the
service's own while a service runs (see :meth:`RegistryCache.supervised_by`),
else the client's. Every event for the service triggers a re-read, so the
cache never trusts an event's partial payload. A watch that fails or ends is a
crash of the part: the supervisor restarts it with backoff (re-reading first,
so nothing that happened meanwhile is missed) and stops the service, or the
client's block, with :class:`~micro.supervisor.PartFailed` when it keeps
failing. Lookups are answered from memory.

While a watcher is down the cache still answers from what it has, but an
entry older than ``stale_after`` is re-read on the next lookup, so a broken
watch degrades to polling rather than to serving stale nodes forever.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio

from ..supervisor import Supervisor
from .base import Registry, ServiceNotFound, ServiceRecord

__all__ = ["RegistryCache", "WatchEnded"]


@dataclass
class _Entry:
    records: list[ServiceRecord]
    fetched: float
    live: bool = False  # a watch is established: the records are current

    def fresh(self, stale_after: float) -> bool:
        return self.live or time.monotonic() - self.fetched < stale_after


class WatchEnded(ConnectionError):
    """The registry ended a watch; the supervisor restarts it like a failed one."""


class RegistryCache:
    def __init__(
        self,
        registry: Registry,
        supervisor: Supervisor,
        *,
        stale_after: float = 30.0,
    ) -> None:
        self.registry = registry
        self._own = supervisor
        self._lent: list[Supervisor] = []  # the services' supervisors, latest last
        self.stale_after = stale_after
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, anyio.Lock] = {}
        # the services watched, and the supervisor running each one's watcher
        self._watched: dict[str, Supervisor] = {}

    @property
    def supervisor(self) -> Supervisor:
        """The supervisor that runs the watchers started now."""
        return self._lent[-1] if self._lent else self._own

    @contextlib.contextmanager
    def supervised_by(self, supervisor: Supervisor) -> Iterator[None]:
        """Start the watchers of the block's lookups under ``supervisor``; after the block
        (its task group being cancelled with it), lookups start new watchers under the
        cache's own supervisor again."""
        self._lent.append(supervisor)
        try:
            yield
        finally:
            self._lent.remove(supervisor)
            for name, running in list(self._watched.items()):
                if running is supervisor:
                    del self._watched[name]
                    entry = self._entries.get(name)
                    if entry is not None:
                        entry.live = False

    def size(self) -> tuple[int, int]:
        """How many services, and nodes of them, the cache holds."""
        services = nodes = 0
        for entry in self._entries.values():
            if entry.records:
                services += 1
                nodes += sum(len(record.nodes) for record in entry.records)
        return services, nodes

    async def get_service(self, name: str) -> list[ServiceRecord]:
        """The service's records (raises ServiceNotFound), from memory when fresh."""
        entry = self._entries.get(name)
        if entry is None or not entry.fresh(self.stale_after):
            async with self._locks.setdefault(name, anyio.Lock()):
                entry = self._entries.get(name)
                if entry is None or not entry.fresh(self.stale_after):
                    entry = await self._refresh(name)
                if name not in self._watched:
                    supervisor = self._watched[name] = self.supervisor
                    supervisor.start_soon(f"registry watcher {name}", self._watch, name)
        if not entry.records:
            raise ServiceNotFound(f"service {name} not found")
        return entry.records

    async def _refresh(self, name: str) -> _Entry:
        try:
            records = await self.registry.get_service(name)
        except ServiceNotFound:
            records = []
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry(records, time.monotonic())
        else:
            entry.records = records
            entry.fetched = time.monotonic()
        return entry

    async def _watch(self, name: str) -> None:
        """Keep the service's entry current until the watch fails or ends (then raise)."""
        async with self.registry.watch(name) as events:
            # Re-read once the watch is in place: changes made while it was down
            # are not missed.
            entry = await self._refresh(name)
            entry.live = True
            try:
                async for _event in events:
                    await self._refresh(name)
            finally:
                entry.live = False
        raise WatchEnded(f"the registry ended the watch of {name}")
