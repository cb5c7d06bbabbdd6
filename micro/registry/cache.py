"""A client's view of the registry: node lists kept fresh by watchers.

The first lookup of a service reads it from the registry and starts a
watcher task for it (in the client's task group). Every event for the
service triggers a re-read, so the cache never trusts an event's partial
payload; a lost watch is re-established with backoff, re-reading first so
nothing that happened meanwhile is missed. Lookups are answered from memory.

While a watcher is down the cache still answers from what it has, but an
entry older than ``stale_after`` is re-read on the next lookup, so a broken
watch degrades to polling rather than to serving stale nodes forever.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio
import anyio.abc

from .base import Registry, ServiceNotFound, ServiceRecord

__all__ = ["RegistryCache"]

log = logging.getLogger("micro.registry")


@dataclass
class _Entry:
    records: list[ServiceRecord]
    fetched: float
    live: bool = False  # a watch is established: the records are current

    def fresh(self, stale_after: float) -> bool:
        return self.live or time.monotonic() - self.fetched < stale_after


class RegistryCache:
    def __init__(
        self,
        registry: Registry,
        tg: anyio.abc.TaskGroup,
        *,
        stale_after: float = 30.0,
        max_backoff: float = 10.0,
    ) -> None:
        self.registry = registry
        self._tg = tg
        self.stale_after = stale_after
        self.max_backoff = max_backoff
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._watched: set[str] = set()

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
                    self._watched.add(name)
                    self._tg.start_soon(self._watch, name, name=f"registry watcher {name}")
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
        failures = 0
        while True:
            try:
                async with self.registry.watch(name) as events:
                    # Re-read once the watch is in place: changes made while
                    # it was down are not missed.
                    entry = await self._refresh(name)
                    entry.live = True
                    failures = 0
                    try:
                        async for _event in events:
                            await self._refresh(name)
                    finally:
                        entry.live = False
                log.debug("registry watch for %s ended; re-establishing", name)
            except Exception as exc:
                log.warning("registry watch for %s failed: %s", name, exc)
            failures += 1
            await anyio.sleep(min(self.max_backoff, 0.05 * 2**failures))
