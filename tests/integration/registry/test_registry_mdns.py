"""The mDNS registry on loopback: two registries as two hosts, other processes, limits.

Every Zeroconf here is bound to 127.0.0.1 (explicitly, or through
MICRO_MDNS_INTERFACES, which tests/conftest.py sets for this process and its
children): nothing is sent to any other interface. Service names are unique
per test, as every test (and any parallel run) shares port 5353 on loopback.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from micro.errors import PayloadTooLarge
from micro.registry import (
    EndpointInfo,
    EventType,
    Node,
    Registry,
    RegistryUnavailable,
    ServiceNotFound,
    ServiceRecord,
    Watcher,
    WatchEvent,
)
from micro.registry.mdns import INTERFACES_ENV, MIN_RECORD_TTL, MdnsRegistry
from micro.testing import REGISTRY_CHECKS, RegistryFactory

pytestmark = pytest.mark.anyio

LOOPBACK = ["127.0.0.1"]
ROOT = Path(__file__).resolve().parents[3]
#: seconds within which a change must be seen by another registry on loopback
SEEN_WITHIN = 3.0


@pytest.fixture(autouse=True)
def _loopback_only() -> None:
    # The suite's guard (tests/conftest.py); children inherit it.
    assert os.environ.get(INTERFACES_ENV) == "127.0.0.1"


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


def loopback_registry() -> MdnsRegistry:
    return MdnsRegistry(interfaces=LOOPBACK)


def record(
    name: str,
    node_id: str = "n1",
    port: int = 9001,
    *,
    version: str = "latest",
    metadata: dict[str, str] | None = None,
) -> ServiceRecord:
    return ServiceRecord(
        name=name,
        version=version,
        metadata=metadata or {},
        nodes=(Node(id=node_id, address=f"127.0.0.1:{port}", metadata={"zone": "a"}),),
    )


async def eventually(check: Callable[[], Awaitable[bool]], within: float = SEEN_WITHIN) -> None:
    with anyio.fail_after(within):
        while not await check():
            await anyio.sleep(0.02)


async def present(registry: Registry, name: str) -> bool:
    try:
        await registry.get_service(name)
    except ServiceNotFound:
        return False
    return True


async def absent(registry: Registry, name: str) -> bool:
    return not await present(registry, name)


async def next_event(events: Watcher, within: float = SEEN_WITHIN) -> WatchEvent:
    with anyio.fail_after(within):
        return await events.__anext__()


def big_endpoints(count: int) -> tuple[EndpointInfo, ...]:
    """Endpoint schemas of the size a real service has: tens of kB of JSON."""
    return tuple(
        EndpointInfo(
            name=f"Catalogue.Method{i}",
            request={
                "type": "object",
                "title": f"Request{i}",
                "properties": {
                    f"field_{j}": {"type": "string", "description": f"field {j} of request {i}"}
                    for j in range(12)
                },
                "required": [f"field_{j}" for j in range(6)],
            },
            response={"type": "object", "properties": {"items": {"type": "array"}}},
            metadata={"kind": "unary", "idempotent": "true"},
        )
        for i in range(count)
    )


# -- two registries in one process, as two hosts --


async def test_register_get_deregister_between_registries() -> None:
    name = unique("mdns-basic")
    service = record(name, metadata={"team": "core"}, version="1.2.3")
    async with loopback_registry() as a, loopback_registry() as b:
        await a.register(service, ttl=30)
        assert await a.get_service(name) == [service]  # its own node: at once
        await eventually(lambda: present(b, name))
        assert await b.get_service(name) == [service]
        assert name in {r.name for r in await b.list_services()}

        await a.deregister(service)
        assert await absent(a, name)
        await eventually(lambda: absent(b, name))


async def test_nodes_of_two_hosts_are_one_service() -> None:
    name = unique("mdns-nodes")
    first, second = record(name, "n1", 9001), record(name, "n2", 9002)
    async with loopback_registry() as a, loopback_registry() as b:
        await a.register(first, ttl=30)
        await b.register(second, ttl=30)

        async def both_nodes() -> bool:
            records = await a.get_service(name) if await present(a, name) else []
            return {n.id for r in records for n in r.nodes} == {"n1", "n2"}

        await eventually(both_nodes)
        await b.deregister(second)
        await eventually(lambda: _node_ids(a, name, {"n1"}))


async def _node_ids(registry: Registry, name: str, expected: set[str]) -> bool:
    records = await registry.get_service(name)
    return {n.id for r in records for n in r.nodes} == expected


async def test_watch_sees_another_hosts_changes() -> None:
    name = unique("mdns-watch")
    service = record(name, metadata={"rev": "1"})
    changed = record(name, metadata={"rev": "2"})
    async with loopback_registry() as a, loopback_registry() as b, b.watch(name) as events:
        await a.register(service, ttl=30)
        created = await next_event(events)
        assert (created.type, created.service) == (EventType.CREATE, service)

        await a.register(service, ttl=30)  # unchanged: no event, no packet
        await a.register(changed, ttl=30)
        updated = await next_event(events)
        assert (updated.type, updated.service) == (EventType.UPDATE, changed)

        await a.deregister(changed)
        deleted = await next_event(events)
        assert deleted.type == EventType.DELETE and deleted.service.name == name


async def test_watch_of_all_services_and_of_one() -> None:
    watched, other = unique("mdns-watched"), unique("mdns-other")
    async with (
        loopback_registry() as a,
        loopback_registry() as b,
        b.watch(watched) as one,
        b.watch() as every,
    ):
        await a.register(record(other), ttl=30)
        await a.register(record(watched), ttl=30)
        event = await next_event(one)
        assert (event.type, event.service.name) == (EventType.CREATE, watched)
        seen: set[str] = set()  # and any other run's services: the network is shared
        while not {watched, other} <= seen:
            event = await next_event(every)
            seen.add(event.service.name)
        await a.deregister(record(other))
        await a.deregister(record(watched))
        event = await next_event(one)
        assert (event.type, event.service.name) == (EventType.DELETE, watched)


async def test_ttl_expiry_is_seen_by_another_host() -> None:
    name = unique("mdns-ttl")
    async with loopback_registry() as a, loopback_registry() as b, b.watch(name) as events:
        await a.register(record(name), ttl=0.5)
        assert (await next_event(events)).type == EventType.CREATE
        started = time.monotonic()
        # Not re-registered: the owner withdraws it after its TTL, with goodbyes.
        assert (await next_event(events, within=0.5 + SEEN_WITHIN)).type == EventType.DELETE
        assert time.monotonic() - started >= 0.4
        assert await absent(a, name)
        assert await absent(b, name)


async def test_a_registry_is_reference_counted_and_reopens() -> None:
    name = unique("mdns-refcount")
    registry = loopback_registry()
    async with registry:
        async with registry:
            await registry.register(record(name), ttl=30)
        # still open: the inner exit did not close it
        assert await present(registry, name)
        await registry.deregister(record(name))
    with pytest.raises(RegistryUnavailable, match="not open"):
        await registry.get_service(name)
    async with registry:  # opens again, with a fresh view
        assert await absent(registry, name)


async def test_node_addresses_by_name_and_unspecified() -> None:
    """A host name is passed on as is; an unspecified host becomes the address the
    node was announced from."""
    by_name, anywhere = unique("mdns-hostname"), unique("mdns-anywhere")
    named = ServiceRecord(name=by_name, nodes=(Node(id="n1", address="db-1.example:7000"),))
    unspecified = ServiceRecord(name=anywhere, nodes=(Node(id="n1", address="0.0.0.0:7001"),))
    async with loopback_registry() as a, loopback_registry() as b:
        await a.register(named, ttl=30)
        await a.register(unspecified, ttl=30)
        await eventually(lambda: present(b, by_name))
        await eventually(lambda: present(b, anywhere))
        [found] = await b.get_service(by_name)
        assert found.nodes[0].address == "db-1.example:7000"
        [found] = await b.get_service(anywhere)
        assert found.nodes[0].address == "127.0.0.1:7001"


def test_one_registry_serves_event_loops_one_after_another() -> None:
    """A registry shared by a process (as from_url gives) is opened by one event
    loop after another: asyncio, then Trio, then asyncio again."""
    registry = loopback_registry()
    name = unique("mdns-loops")

    async def use() -> None:
        async with registry:
            await registry.register(record(name), ttl=30)
            assert await present(registry, name)
            await registry.deregister(record(name))

    for backend in ("asyncio", "trio", "asyncio"):
        anyio.run(use, backend=backend)


async def test_interfaces_come_from_the_environment() -> None:
    assert MdnsRegistry().interfaces == ["127.0.0.1"]
    assert MdnsRegistry(interfaces=["127.0.0.1"]).interfaces == ["127.0.0.1"]


# -- what survives the TXT encoding --


async def test_unicode_and_large_schemas_survive_between_hosts() -> None:
    name = unique("mdns-ünïcødé-服务")
    service = ServiceRecord(
        name=name,
        version="v2-β",
        metadata={"région": "Zürich", "emoji": "🚀", "quote": "\"a\"='b' \\", "long": "x" * 2000},
        endpoints=big_endpoints(120),
        nodes=(Node(id="nœud-東京-1", address="[::1]:8443", metadata={"zone": "東京"}),),
    )
    async with loopback_registry() as a, loopback_registry() as b:
        await a.register(service, ttl=30)
        await eventually(lambda: present(b, name))
        assert await b.get_service(name) == [service]
        await a.deregister(service)


async def test_a_record_too_large_for_one_packet_is_refused() -> None:
    name = unique("mdns-huge")
    # Random hex does not compress: about 20 kB on the wire, over one mDNS packet.
    service = record(name, metadata={"blob": os.urandom(10_000).hex()})
    async with loopback_registry() as a:
        with pytest.raises(PayloadTooLarge, match="etcd://"):
            await a.register(service, ttl=30)
        assert await absent(a, name)


# -- other processes --

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import anyio
    from micro.registry import Node, ServiceRecord
    from micro.registry.mdns import MdnsRegistry

    from tests.integration.registry.test_registry_mdns import big_endpoints

    spec = json.loads(sys.argv[1])
    service = ServiceRecord(
        name=spec["name"],
        metadata=spec["metadata"],
        endpoints=big_endpoints(120) if spec["big"] else (),
        nodes=(Node(id=spec["node"], address="127.0.0.1:9009"),),
    )

    async def main() -> None:
        registry = MdnsRegistry()  # interfaces from MICRO_MDNS_INTERFACES
        assert registry.interfaces == ["127.0.0.1"], registry.interfaces
        async with registry:
            await registry.register(service, ttl=spec["ttl"])
            print("registered", time.monotonic(), flush=True)
            command = await anyio.to_thread.run_sync(sys.stdin.readline)
            if command.strip() == "deregister":
                await registry.deregister(service)
                print("deregistered", time.monotonic(), flush=True)
                await anyio.to_thread.run_sync(sys.stdin.readline)

    anyio.run(main)
    """
)


class Child:
    """A process holding one registration until told to deregister or killed."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        assert process.stdout is not None and process.stdin is not None
        self.lines = BufferedByteReceiveStream(process.stdout)

    async def expect(self, word: str, within: float = 20.0) -> float:
        """Wait for ``word <monotonic time>`` and return the time."""
        with anyio.fail_after(within):
            line = (await self.lines.receive_until(b"\n", 1 << 16)).decode().split()
        assert line[0] == word, line
        return float(line[1])

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(command.encode() + b"\n")


@pytest.fixture
async def child_factory() -> AsyncIterator[Callable[..., Awaitable[Child]]]:
    processes: list[anyio.abc.Process] = []

    async def start(name: str, *, ttl: float = 30, big: bool = False) -> Child:
        spec = {
            "name": name,
            "node": unique("child-node"),
            "ttl": ttl,
            "metadata": {"pid": "child", "ключ": "значение"},
            "big": big,
        }
        process = await anyio.open_process(
            [sys.executable, "-c", CHILD, json.dumps(spec)], cwd=ROOT, stderr=None
        )
        processes.append(process)
        return Child(process)

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
        with anyio.move_on_after(5, shield=True):
            await process.wait()
        await process.aclose()


async def test_another_process_registers_and_deregisters(
    child_factory: Callable[..., Awaitable[Child]],
) -> None:
    name = unique("mdns-proc")
    async with loopback_registry() as registry, registry.watch(name) as events:
        child = await child_factory(name)
        registered_at = await child.expect("registered")
        created = await next_event(events)
        seen_after = time.monotonic() - registered_at
        assert created.type == EventType.CREATE
        assert created.service.metadata == {"pid": "child", "ключ": "значение"}
        assert seen_after < SEEN_WITHIN
        [found] = await registry.get_service(name)
        assert found.nodes[0].address == "127.0.0.1:9009"

        await child.send("deregister")
        await child.expect("deregistered")
        assert (await next_event(events)).type == EventType.DELETE
        assert await absent(registry, name)


async def test_a_registry_opened_later_finds_a_large_record(
    child_factory: Callable[..., Awaitable[Child]],
) -> None:
    """Discovery by query (not by announcement) carries the large TXT record too."""
    name = unique("mdns-later")
    child = await child_factory(name, big=True)
    await child.expect("registered")
    async with loopback_registry() as registry:
        [found] = await registry.get_service(name)  # within the first-answers wait
        assert found.endpoints == big_endpoints(120)


async def test_a_killed_process_is_gone_within_the_record_ttl(
    child_factory: Callable[..., Awaitable[Child]],
) -> None:
    name = unique("mdns-killed")
    ttl = MIN_RECORD_TTL  # records announced with this DNS TTL, re-announced every ttl/3
    async with loopback_registry() as registry, registry.watch(name) as events:
        child = await child_factory(name, ttl=ttl)
        await child.expect("registered")
        assert (await next_event(events)).type == EventType.CREATE
        await anyio.sleep(1.5)  # past the first re-announcement
        child.process.send_signal(signal.SIGKILL)  # no goodbye packets
        await child.process.wait()
        killed = time.monotonic()
        assert await present(registry, name)  # nothing told us yet
        with anyio.fail_after(ttl + 1):
            while await present(registry, name):
                await anyio.sleep(0.02)
        gone_after = time.monotonic() - killed
        deleted = await next_event(events, within=ttl + 1.5 - gone_after)
        assert deleted.type == EventType.DELETE and deleted.service.name == name
        # Its last announcement was at most ttl/3 before the kill.
        assert ttl * 2 / 3 - 0.3 <= gone_after <= ttl + 0.3, gone_after


# -- when multicast cannot be used --


async def test_unusable_interface_raises_a_clear_error() -> None:
    address = "192.0.2.1"  # TEST-NET-1: documentation only
    # Only if the address is not this host's: then binding fails locally and
    # nothing is sent anywhere.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((address, 0))
    except OSError as exc:
        assert exc.errno == errno.EADDRNOTAVAIL
    else:
        pytest.skip(f"{address} is an address of this host")
    finally:
        probe.close()
    registry = MdnsRegistry(interfaces=[address])
    with anyio.fail_after(5), pytest.raises(RegistryUnavailable) as caught:
        async with registry:
            pass
    message = str(caught.value)
    assert address in message and "etcd://" in message and "memory" in message
    with pytest.raises(RegistryUnavailable, match="not open"):
        await registry.register(record(unique("mdns-never")))


# -- the conformance suite --


@pytest.mark.parametrize("check", list(REGISTRY_CHECKS.values()), ids=list(REGISTRY_CHECKS))
async def test_conforms(check: Callable[[RegistryFactory], Awaitable[None]]) -> None:
    await check(loopback_registry)
