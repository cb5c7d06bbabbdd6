"""A conformance suite every Registry runs, backends of micro's and users' alike.

``await check_registry(factory)`` runs every check; ``REGISTRY_CHECKS`` names
them one by one for a test per check. ``factory`` makes a new, unopened
registry; each check opens it with ``async with`` and uses service names no
other check (or run) uses, so a shared backend server needs no cleanup
between checks. Waits are bounded polls or bounded reads, never a sleep whose
length decides the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..registry.base import (
    EndpointInfo,
    EventType,
    Node,
    Registry,
    ServiceNotFound,
    ServiceRecord,
    Watcher,
    WatchEvent,
)

__all__ = [
    "REGISTRY_CHECKS",
    "RegistryFactory",
    "check_registry",
    "check_register_get_deregister",
    "check_nodes_and_versions",
    "check_list_services",
    "check_ttl_expiry_and_refresh",
    "check_watch_sees_changes_in_order",
    "check_watch_of_one_service",
    "check_unicode_and_schemas",
]

RegistryFactory = Callable[[], Registry]

#: seconds to wait for a watch event that must come
EVENT_TIMEOUT = 10.0
#: seconds between polls for expiry (no registry announces it otherwise)
POLL_INTERVAL = 0.05


def unique_name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


def make_service(
    name: str,
    *node_ids: str,
    version: str = "1.0.0",
    metadata: dict[str, str] | None = None,
    endpoints: tuple[EndpointInfo, ...] = (),
) -> ServiceRecord:
    nodes = tuple(
        Node(id=node_id, address=f"127.0.0.1:{10000 + i}", metadata={"node": node_id})
        for i, node_id in enumerate(node_ids)
    )
    return ServiceRecord(
        name=name, version=version, metadata=metadata or {}, endpoints=endpoints, nodes=nodes
    )


def _nodes(records: list[ServiceRecord]) -> dict[str, Node]:
    return {node.id: node for record in records for node in record.nodes}


def _by_version(records: list[ServiceRecord]) -> dict[str, ServiceRecord]:
    return {record.version: record for record in records}


async def _gone(registry: Registry, name: str) -> bool:
    try:
        await registry.get_service(name)
    except ServiceNotFound:
        return True
    return False


async def _wait_gone(registry: Registry, name: str, *, within: float) -> None:
    """Poll until ``name`` has no nodes; fail after ``within`` seconds."""
    with anyio.fail_after(within):
        while True:
            if await _gone(registry, name):
                return
            await anyio.sleep(POLL_INTERVAL)


async def _next_event(events: Watcher, what: str) -> WatchEvent:
    with anyio.fail_after(EVENT_TIMEOUT):
        try:
            return await events.__anext__()
        except StopAsyncIteration:
            raise AssertionError(f"the watch ended while waiting for {what}") from None


async def check_register_get_deregister(factory: RegistryFactory) -> None:
    """A registered node can be looked up until it is deregistered."""
    name = unique_name("conform-basic")
    service = make_service(name, "n1", metadata={"team": "core"})
    async with factory() as registry:
        try:
            await registry.get_service(name)
        except ServiceNotFound:
            pass
        else:
            raise AssertionError("get_service of a never-registered service must raise")
        await registry.register(service, ttl=30)
        [record] = await registry.get_service(name)
        assert record.name == name and record.version == "1.0.0", record
        assert record.metadata == {"team": "core"}, record
        assert record.nodes == service.nodes, record
        await registry.deregister(service)
        assert await _gone(registry, name), "a deregistered service must be gone"
        await registry.deregister(service)  # deregistering again is no error


async def check_nodes_and_versions(factory: RegistryFactory) -> None:
    """Nodes of one version are grouped; versions are separate records; nodes leave singly."""
    name = unique_name("conform-versions")
    v1 = make_service(name, "a1", "a2", version="1.0.0")
    v2 = make_service(name, "b1", version="2.0.0")
    async with factory() as registry:
        await registry.register(v1, ttl=30)
        await registry.register(v2, ttl=30)
        versions = _by_version(await registry.get_service(name))
        assert set(versions) == {"1.0.0", "2.0.0"}, versions
        assert set(_nodes([versions["1.0.0"]])) == {"a1", "a2"}, versions
        assert set(_nodes([versions["2.0.0"]])) == {"b1"}, versions
        assert _nodes(list(versions.values()))["a2"] == v1.nodes[1]

        await registry.deregister(make_service(name, "a1", version="1.0.0"))
        versions = _by_version(await registry.get_service(name))
        assert set(_nodes([versions["1.0.0"]])) == {"a2"}, versions
        await registry.deregister(v1)
        assert set(_by_version(await registry.get_service(name))) == {"2.0.0"}
        await registry.deregister(v2)
        assert await _gone(registry, name)


async def check_list_services(factory: RegistryFactory) -> None:
    """list_services includes every registered service and drops deregistered ones."""
    first, second = unique_name("conform-list-a"), unique_name("conform-list-b")
    a, b = make_service(first, "n1"), make_service(second, "n1")
    async with factory() as registry:
        await registry.register(a, ttl=30)
        await registry.register(b, ttl=30)
        try:
            names = {record.name for record in await registry.list_services()}
            assert {first, second} <= names, names
            await registry.deregister(a)
            names = {record.name for record in await registry.list_services()}
            assert first not in names and second in names, names
        finally:
            await registry.deregister(b)


async def check_ttl_expiry_and_refresh(
    factory: RegistryFactory, *, ttl: float = 1.0, expiry_within: float = 4.0
) -> None:
    """A node not re-registered is gone within ``ttl + expiry_within`` seconds;
    a node re-registered more often than its TTL stays."""
    kept, dropped = unique_name("conform-ttl-kept"), unique_name("conform-ttl-dropped")
    kept_service, dropped_service = make_service(kept, "n1"), make_service(dropped, "n1")
    async with factory() as registry:
        await registry.register(kept_service, ttl=ttl)
        await registry.register(dropped_service, ttl=ttl)
        assert not await _gone(registry, dropped), "a fresh registration must be visible"
        try:
            # Re-register `kept` every third of its TTL until `dropped` has expired,
            # and for at least two TTLs, checking `kept` never vanishes.
            started = anyio.current_time()
            with anyio.fail_after(ttl + expiry_within):
                while not await _gone(registry, dropped):
                    await anyio.sleep(ttl / 3)
                    await registry.register(kept_service, ttl=ttl)
                    assert not await _gone(registry, kept), "a refreshed node expired"
            while anyio.current_time() - started < 2 * ttl:
                await anyio.sleep(ttl / 3)
                await registry.register(kept_service, ttl=ttl)
                assert not await _gone(registry, kept), "a refreshed node expired"
            # Once refreshing stops, it goes too.
            await _wait_gone(registry, kept, within=ttl + expiry_within)
        finally:
            await registry.deregister(kept_service)


async def check_watch_sees_changes_in_order(factory: RegistryFactory) -> None:
    """A watch opened before the changes sees create, update and delete, in order."""
    name = unique_name("conform-watch")
    service = make_service(name, "n1", metadata={"rev": "1"})
    changed = make_service(name, "n1", metadata={"rev": "2"})
    async with factory() as registry, registry.watch(name) as events:
        await registry.register(service, ttl=30)
        await registry.register(changed, ttl=30)
        await registry.deregister(changed)
        created = await _next_event(events, "the create event")
        updated = await _next_event(events, "the update event")
        deleted = await _next_event(events, "the delete event")
    assert created.type == EventType.CREATE and created.service.metadata == {"rev": "1"}, created
    assert updated.type == EventType.UPDATE and updated.service.metadata == {"rev": "2"}, updated
    assert deleted.type == EventType.DELETE, deleted
    for event in (created, updated, deleted):
        assert event.service.name == name, event
        assert [node.id for node in event.service.nodes] == ["n1"], event
    assert created.service.nodes == service.nodes, created


async def check_watch_of_one_service(factory: RegistryFactory) -> None:
    """A watch of one service sees nothing of others; a watch of all sees both."""
    watched, other = unique_name("conform-watched"), unique_name("conform-other")
    async with (
        factory() as registry,
        registry.watch(watched) as one,
        registry.watch() as every,
    ):
        await registry.register(make_service(other, "n1"), ttl=30)
        await registry.register(make_service(watched, "n1"), ttl=30)
        try:
            event = await _next_event(one, f"the create event of {watched}")
            assert event.service.name == watched, f"a watch of {watched} saw {event}"
            seen: set[str] = set()
            while seen != {watched, other}:
                event = await _next_event(every, "events of both services")
                if event.service.name in (watched, other):
                    seen.add(event.service.name)
        finally:
            await registry.deregister(make_service(other, "n1"))
            await registry.deregister(make_service(watched, "n1"))


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "имя, 名前"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "limit": {"type": "integer", "minimum": 0},
        "nested": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
    },
    "required": ["name"],
}


async def check_unicode_and_schemas(factory: RegistryFactory) -> None:
    """Unicode names and metadata, and endpoint schemas, come back exactly as registered."""
    name = unique_name("ünï-服务")
    endpoints = (
        EndpointInfo(
            name="Greeter.Hello",
            request=SCHEMA,
            response={"type": "object", "properties": {"message": {"type": "string"}}},
            metadata={"stream": "none", "описание": "привет 👋"},
        ),
        EndpointInfo(name="Greeter.Empty"),
    )
    service = ServiceRecord(
        name=name,
        version="v1-β",
        metadata={"région": "Zürich", "emoji": "🚀", "quote": "\"a\" 'b' \\ /"},
        endpoints=endpoints,
        nodes=(Node(id="nœud-1", address="127.0.0.1:9", metadata={"zone": "東京"}),),
    )
    async with factory() as registry:
        await registry.register(service, ttl=30)
        try:
            [record] = await registry.get_service(name)
            assert record == service, record
            listed = [r for r in await registry.list_services() if r.name == name]
            assert [r.version for r in listed] == ["v1-β"], listed
        finally:
            await registry.deregister(service)
        assert await _gone(registry, name)


REGISTRY_CHECKS: dict[str, Callable[[RegistryFactory], Awaitable[None]]] = {
    "register_get_deregister": check_register_get_deregister,
    "nodes_and_versions": check_nodes_and_versions,
    "list_services": check_list_services,
    "ttl_expiry_and_refresh": check_ttl_expiry_and_refresh,
    "watch_sees_changes_in_order": check_watch_sees_changes_in_order,
    "watch_of_one_service": check_watch_of_one_service,
    "unicode_and_schemas": check_unicode_and_schemas,
}


async def check_registry(factory: RegistryFactory) -> None:
    """Run every check against registries made by ``factory``; raises AssertionError."""
    for check in REGISTRY_CHECKS.values():
        await check(factory)
