"""Service discovery in etcd.

Each node is one key, ``<prefix><service>/<node id>``, holding the JSON of a
ServiceRecord with just that node (version, metadata, endpoints and their
schemas, the node), bound to a lease of the registration's TTL. Node records
are independent, so nodes of one service come and go without a shared key to
contend for, and etcd deletes a node whose lease is not kept alive.

Re-registering an unchanged node refreshes its lease with one keepalive; a
changed record is put again on the same lease; a lease that expired (or a
different TTL) gets a new lease and a new put. Deregistering deletes the key
and revokes the lease.

Service names and node ids are escaped in keys ("%" and "/" as %25 and %2F) so
every name round-trips; a DELETE event carries only the key, so without the
previous value the record is rebuilt from the key alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, replace
from urllib.parse import unquote

from ..errors import MicroError, NotFound, Unavailable
from ..etcd import DEFAULT_ENDPOINT, EtcdClient, KeyEvent, KeyValue, shared_client
from ..refcount import Users
from .base import (
    EventType,
    Node,
    RegistryUnavailable,
    ServiceNotFound,
    ServiceRecord,
    WatchEvent,
)
from .record import record_from_json, record_json

__all__ = ["EtcdRegistry"]

log = logging.getLogger(__name__)

#: where records live unless told otherwise (Go Micro's etcd registry uses the same)
DEFAULT_PREFIX = "/micro/registry/"


@dataclass(frozen=True, slots=True)
class _Held:
    """A node this registry registered: its lease and the bytes last put."""

    lease: int
    ttl: int
    value: bytes


class EtcdRegistry:
    """A Registry in etcd; ``async with EtcdRegistry("http://127.0.0.1:2379") as registry:``.

    Methods raise RegistryUnavailable when etcd cannot be reached. ``client``
    shares one EtcdClient with the store, config and sync parts.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        prefix: str = DEFAULT_PREFIX,
        client: EtcdClient | None = None,
    ) -> None:
        self.client = client if client is not None else shared_client(endpoint)
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._held: dict[bytes, _Held] = {}
        self._users = Users()

    async def __aenter__(self) -> EtcdRegistry:
        await self._users.enter(self.client.__aenter__)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._users.exit(self._close)

    async def _close(self) -> None:
        self._held.clear()
        await self.client.__aexit__(None, None, None)

    # -- registration --

    async def register(self, service: ServiceRecord, *, ttl: float | None = None) -> None:
        # etcd leases count whole seconds; round up so a node never expires early.
        seconds = None if ttl is None else max(1, math.ceil(ttl))
        with self._errors():
            for node in service.nodes:
                await self._register_node(service, node, seconds)

    async def _register_node(self, service: ServiceRecord, node: Node, ttl: int | None) -> None:
        key = self._key(service.name, node.id)
        value = _encode(service, node)
        held = self._held.get(key)
        if ttl is None:
            await self.client.put(key, value)
            self._held.pop(key, None)
        elif held is not None and held.ttl == ttl and await self._refresh(held.lease):
            if held.value != value:
                await self.client.put(key, value, lease=held.lease)
                self._held[key] = _Held(held.lease, ttl, value)
            return
        else:
            lease = await self.client.lease_grant(ttl)
            await self.client.put(key, value, lease=lease.id)
            self._held[key] = _Held(lease.id, ttl, value)
        if held is not None:
            await self._revoke(held.lease)

    async def _refresh(self, lease: int) -> bool:
        return await self.client.lease_keepalive_once(lease) > 0

    async def _revoke(self, lease: int) -> None:
        with contextlib.suppress(NotFound):  # already expired
            await self.client.lease_revoke(lease)

    async def deregister(self, service: ServiceRecord) -> None:
        with self._errors():
            for node in service.nodes:
                key = self._key(service.name, node.id)
                await self.client.delete(key)
                held = self._held.pop(key, None)
                if held is not None:
                    await self._revoke(held.lease)

    # -- lookup --

    async def get_service(self, name: str) -> list[ServiceRecord]:
        with self._errors():
            result = await self.client.range(self._key(name, ""), prefix=True)
        records = _group(result.kvs)
        if not records:
            raise ServiceNotFound(f"service {name} not found")
        return records

    async def list_services(self) -> list[ServiceRecord]:
        with self._errors():
            result = await self.client.range(self.prefix.encode(), prefix=True)
        return _group(result.kvs)

    @contextlib.asynccontextmanager
    async def watch(self, service: str | None = None) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        key = self.prefix.encode() if service is None else self._key(service, "")
        with self._errors():
            watch = await self.client.watch(key, prefix=True, prev_kv=True).__aenter__()
        events = self._events(watch)
        try:
            yield events
        finally:
            await events.aclose()
            await watch.aclose()

    async def _events(self, watch: AsyncIterator[KeyEvent]) -> AsyncGenerator[WatchEvent, None]:
        try:
            async for event in watch:
                mapped = self._event(event)
                if mapped is not None:
                    yield mapped
        except MicroError as exc:
            # The watch is lost: end the iterator; the watcher resyncs and watches again.
            log.info("etcd registry watch ended: %s", exc)

    def _event(self, event: KeyEvent) -> WatchEvent | None:
        if event.type == "PUT":
            record = _decode(event.kv)
            if record is None:
                return None
            return WatchEvent(EventType.CREATE if event.created else EventType.UPDATE, record)
        record = _decode(event.prev_kv) if event.prev_kv is not None else None
        if record is None:
            name, node_id = self._split(event.kv.key)
            record = ServiceRecord(name=name, nodes=(Node(id=node_id, address=""),))
        return WatchEvent(EventType.DELETE, record)

    # -- keys --

    def _key(self, service: str, node_id: str) -> bytes:
        return f"{self.prefix}{_escape(service)}/{_escape(node_id)}".encode()

    def _split(self, key: bytes) -> tuple[str, str]:
        name, _, node_id = key.decode().removeprefix(self.prefix).partition("/")
        return unquote(name), unquote(node_id)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Check the registry is open; report etcd's unavailability as the registry's."""
        if not self._users.open:
            raise RegistryUnavailable(
                "the etcd registry is not open: use `async with EtcdRegistry(...)`"
            )
        try:
            yield
        except Unavailable as exc:
            detail = exc.detail
            if self.client.endpoint not in detail:
                detail = f"etcd at {self.client.endpoint}: {detail}"
            raise RegistryUnavailable(detail, id=exc.id) from exc


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


def _encode(service: ServiceRecord, node: Node) -> bytes:
    record = record_json(service, node)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def _decode(kv: KeyValue) -> ServiceRecord | None:
    try:
        return record_from_json(json.loads(kv.value))
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("ignoring a registry key that holds no service record: %r", kv.key)
        return None


def _group(kvs: tuple[KeyValue, ...]) -> list[ServiceRecord]:
    """Node records merged into one record per (service, version)."""
    by_version: dict[tuple[str, str], ServiceRecord] = {}
    for kv in kvs:
        record = _decode(kv)
        if record is None:
            continue
        seen = by_version.get((record.name, record.version))
        if seen is None:
            by_version[(record.name, record.version)] = record
        else:
            by_version[(record.name, record.version)] = replace(
                seen, nodes=seen.nodes + record.nodes
            )
    return list(by_version.values())
