"""In-process registry: for tests and for services sharing one process."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from .base import EventType, Node, ServiceNotFound, ServiceRecord, WatchEvent

__all__ = ["MemoryRegistry", "default_registry"]

#: events a slow watcher may fall behind by before it is dropped
WATCH_BUFFER = 1024


class MemoryRegistry:
    """Keeps records in a dict; expiry is checked on read."""

    def __init__(self) -> None:
        # name -> version -> node id -> (record without nodes, node, expiry)
        self._services: dict[
            str, dict[str, dict[str, tuple[ServiceRecord, Node, float | None]]]
        ] = {}
        self._watchers: list[tuple[str | None, MemoryObjectSendStream[WatchEvent]]] = []

    async def register(self, service: ServiceRecord, *, ttl: float | None = None) -> None:
        now = time.monotonic()
        versions = self._services.setdefault(service.name, {})
        nodes = versions.setdefault(service.version, {})
        created = not nodes
        expiry = None if ttl is None else now + ttl
        bare = replace(service, nodes=())
        for node in service.nodes:
            created = created or node.id not in nodes
            nodes[node.id] = (bare, node, expiry)
        self._notify(EventType.CREATE if created else EventType.UPDATE, service)

    async def deregister(self, service: ServiceRecord) -> None:
        versions = self._services.get(service.name, {})
        nodes = versions.get(service.version, {})
        for node in service.nodes:
            nodes.pop(node.id, None)
        if not nodes:
            versions.pop(service.version, None)
        if not versions:
            self._services.pop(service.name, None)
        self._notify(EventType.DELETE, service)

    async def get_service(self, name: str) -> list[ServiceRecord]:
        records = self._live(name)
        if not records:
            raise ServiceNotFound(f"service {name} not found")
        return records

    async def list_services(self) -> list[ServiceRecord]:
        out = []
        for name in list(self._services):
            out.extend(self._live(name))
        return out

    def _live(self, name: str) -> list[ServiceRecord]:
        now = time.monotonic()
        out = []
        for nodes in list(self._services.get(name, {}).values()):
            alive = [(rec, node) for rec, node, exp in nodes.values() if exp is None or exp > now]
            if alive:
                out.append(replace(alive[0][0], nodes=tuple(node for _, node in alive)))
        return out

    @contextlib.asynccontextmanager
    async def watch(self, service: str | None = None) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        send, receive = anyio.create_memory_object_stream[WatchEvent](WATCH_BUFFER)
        entry = (service, send)
        self._watchers.append(entry)
        try:
            async with receive:
                yield receive
        finally:
            self._watchers.remove(entry)
            send.close()

    async def __aenter__(self) -> MemoryRegistry:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass

    def _notify(self, kind: EventType, service: ServiceRecord) -> None:
        for name, send in list(self._watchers):
            if name is None or name == service.name:
                try:
                    send.send_nowait(WatchEvent(kind, service))
                except anyio.WouldBlock:
                    send.close()  # a watcher this far behind must resync
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass


_default: MemoryRegistry | None = None


def default_registry() -> MemoryRegistry:
    """The process-wide memory registry services use when given none."""
    global _default
    if _default is None:
        _default = MemoryRegistry()
    return _default
