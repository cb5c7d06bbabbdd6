"""The Registry protocol and its records.

A registry maps service names to the nodes serving them. Services register
with a TTL and re-register on an interval (the heartbeat); a record not
refreshed within its TTL is gone. Watchers see create, update and delete
events.

Lifecycle: a registry is an async context manager, entered by every service
and client that uses it while they run. Entering is reference counted, so one
registry object can be shared; the backend's resources (sockets, threads,
HTTP clients) are opened on the first entry and closed on the last exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from ..errors import NotFound, Unavailable

__all__ = [
    "Node",
    "EndpointInfo",
    "ServiceRecord",
    "Registry",
    "Watcher",
    "WatchEvent",
    "EventType",
    "ServiceNotFound",
    "RegistryUnavailable",
]


@dataclass(frozen=True, slots=True)
class Node:
    """One running instance of a service."""

    id: str
    address: str  # host:port
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """An endpoint and JSON schemas of what it takes and returns."""

    name: str
    request: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A service version and the nodes serving it."""

    name: str
    version: str = "latest"
    metadata: dict[str, str] = field(default_factory=dict)
    endpoints: tuple[EndpointInfo, ...] = ()
    nodes: tuple[Node, ...] = ()


class EventType(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    service: ServiceRecord


class ServiceNotFound(NotFound):
    """No node of the service is registered."""


Watcher = AsyncIterator[WatchEvent]


class RegistryUnavailable(Unavailable):
    """The registry backend cannot be reached or used (the detail says why and what to do)."""


@runtime_checkable
class Registry(Protocol):
    """Service discovery."""

    async def register(self, service: ServiceRecord, *, ttl: float | None = None) -> None:
        """Add or refresh the service's nodes; they expire after ``ttl`` seconds."""
        ...

    async def deregister(self, service: ServiceRecord) -> None:
        """Remove the service's nodes."""
        ...

    async def get_service(self, name: str) -> list[ServiceRecord]:
        """Every version of ``name`` with its live nodes; raises ServiceNotFound."""
        ...

    async def list_services(self) -> list[ServiceRecord]:
        """Every registered service (nodes may be omitted)."""
        ...

    def watch(self, service: str | None = None) -> AbstractAsyncContextManager[Watcher]:
        """Events for one service, or all when ``service`` is None.

        ``async with registry.watch("svc") as events: async for event in events:``.
        The watch is established when the block is entered, so no change made
        after entering is missed. The iterator ends if the watch is lost (the
        watcher must then resync with ``get_service`` and watch again).
        """
        ...

    async def __aenter__(self) -> Registry: ...

    async def __aexit__(self, *exc_info: object) -> None: ...
