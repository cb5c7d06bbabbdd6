"""Discovery, selection and safe retries through the client, in one process."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

import micro
from micro.registry import MemoryRegistry, Node, ServiceRecord
from micro.selector import NodeHealth

pytestmark = pytest.mark.anyio


class Named:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    async def who(self, req: dict[str, str]) -> str:
        self.calls += 1
        return self.name

    async def flaky(self, req: dict[str, str]) -> str:
        self.calls += 1
        raise micro.Unavailable("database is down")

    @micro.endpoint(idempotent=True)
    async def hangs_on_a(self, req: dict[str, str]) -> str:
        self.calls += 1
        if self.name == "a":
            await anyio.sleep_forever()
        return self.name

    async def stalls_on_a(self, req: dict[str, str]) -> str:
        self.calls += 1
        if self.name == "a":
            await anyio.sleep_forever()
        return self.name

    @micro.endpoint(idempotent=True)
    async def flaky_idempotent(self, req: dict[str, str]) -> str:
        self.calls += 1
        if self.name == "a":
            raise micro.Unavailable("database is down")
        return self.name


class CountingRegistry(MemoryRegistry):
    """The real memory registry, counting lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def get_service(self, name: str) -> list[ServiceRecord]:
        self.lookups += 1
        return await super().get_service(name)


def _service(name: str, node: str, registry: MemoryRegistry, version: str = "1") -> micro.Service:
    svc = micro.Service(name, address="127.0.0.1:0", registry=registry, version=version)
    svc.handle(Named(node))
    return svc


async def test_lookups_hit_the_cache_and_watch_keeps_it_current() -> None:
    registry = CountingRegistry()
    a = _service("svc", "a", registry)
    b = _service("svc", "b", registry)
    async with a.running(), micro.Client(registry=registry) as client:
        for _ in range(20):
            assert await client.call("svc", "Named.Who", {}) == "a"
        assert registry.lookups <= 2  # the first lookup, and the re-read when the watch starts
        async with b.running():
            seen: set[str] = set()
            with anyio.fail_after(10):
                while seen != {"a", "b"}:
                    seen.add(await client.call("svc", "Named.Who", {}))
        # b has deregistered: the cache learns it from the watch.
        with anyio.fail_after(10):
            while True:
                records = await client._lookup("svc")
                if [n.address for r in records for n in r.nodes] == [a.address]:
                    break
                await anyio.sleep(0.01)
        assert {await client.call("svc", "Named.Who", {}) for _ in range(10)} == {"a"}


async def test_version_filter(registry: MemoryRegistry) -> None:
    v1 = _service("ver", "old", registry, version="1")
    v2 = _service("ver", "new", registry, version="2")
    async with v1.running(), v2.running(), micro.Client(registry=registry) as client:
        assert {await client.call("ver", "Named.Who", {}, version="2") for _ in range(10)} == {
            "new"
        }
        with pytest.raises(micro.Unavailable, match="no nodes with version 3"):
            await client.call("ver", "Named.Who", {}, version="3")


async def test_metadata_filter(registry: MemoryRegistry) -> None:
    eu = micro.Service("geo", address="127.0.0.1:0", registry=registry, metadata={"zone": "eu"})
    eu.handle(Named("eu"))
    us = micro.Service("geo", address="127.0.0.1:0", registry=registry, metadata={"zone": "us"})
    us.handle(Named("us"))
    async with eu.running(), us.running(), micro.Client(registry=registry) as client:
        got = {
            await client.call("geo", "Named.Who", {}, node_metadata={"zone": "us"})
            for _ in range(10)
        }
        assert got == {"us"}
        with pytest.raises(micro.Unavailable, match="zone=mars"):
            await client.call("geo", "Named.Who", {}, node_metadata={"zone": "mars"})


async def test_unknown_service_is_not_found(client: micro.Client) -> None:
    with pytest.raises(micro.NotFound, match="service nobody not found"):
        await client.call("nobody", "X.Y", {})


async def test_dead_node_is_skipped_and_ejected(registry: MemoryRegistry) -> None:
    live = _service("mixed", "live", registry)
    # A node in the registry whose port refuses connections.
    with anyio.CancelScope():
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
    dead = ServiceRecord("mixed", "1", nodes=(Node("dead", f"127.0.0.1:{port}"),))
    await registry.register(dead)
    async with live.running(), micro.Client(registry=registry, retries=1) as client:
        results = Counter([await client.call("mixed", "Named.Who", {}) for _ in range(30)])
        assert results == Counter({"live": 30})
        assert client.health.ejected(dead.nodes[0])


async def test_processed_failure_is_not_retried_unless_idempotent(
    registry: MemoryRegistry,
) -> None:
    handlers = {"a": Named("a"), "b": Named("b")}
    services = []
    for handler in handlers.values():
        svc = micro.Service("rt", address="127.0.0.1:0", registry=registry)
        svc.handle(handler)
        services.append(svc)
    async with (
        services[0].running(),
        services[1].running(),
        micro.Client(registry=registry, retries=3) as client,
    ):
        with pytest.raises(micro.Unavailable, match="database is down"):
            await client.call("rt", "Named.Flaky", {})
        assert handlers["a"].calls + handlers["b"].calls == 1  # ran once: never re-run
        # The endpoint declared idempotent is retried on the other node.
        for _ in range(10):
            client.health = NodeHealth()
            assert await client.call("rt", "Named.FlakyIdempotent", {}) == "b"


async def test_consistent_hash_pins_keys_to_nodes(registry: MemoryRegistry) -> None:
    nodes = [_service("pin", name, registry) for name in "abc"]
    async with (
        nodes[0].running(),
        nodes[1].running(),
        nodes[2].running(),
        micro.Client(registry=registry, selector="hash:x-user") as client,
    ):
        owners: dict[str, str] = {}
        for user in [f"u{i}" for i in range(30)]:
            got = {
                await client.call("pin", "Named.Who", {}, metadata={"x-user": user})
                for _ in range(3)
            }
            assert len(got) == 1
            owners[user] = got.pop()
        assert len(set(owners.values())) > 1


@pytest.mark.parametrize("selector", ["random", "roundrobin", "leastinflight"])
async def test_strategies_spread_load(registry: MemoryRegistry, selector: str) -> None:
    nodes = [_service("spread", name, registry) for name in "abc"]
    async with (
        nodes[0].running(),
        nodes[1].running(),
        nodes[2].running(),
        micro.Client(registry=registry, selector=selector) as client,
    ):
        counts: Counter[Any] = Counter()

        async def caller() -> None:
            for _ in range(20):
                counts[await client.call("spread", "Named.Who", {})] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(caller)
    assert set(counts) == {"a", "b", "c"}
    assert sum(counts.values()) == 120


async def test_registry_by_url_is_shared_per_process() -> None:
    from micro.registry import resolve_registry

    assert resolve_registry("memory") is resolve_registry("memory")
    svc = micro.Service("byurl", address="127.0.0.1:0", registry="memory")
    svc.handle(Named("u"))
    async with svc.running(), micro.Client(registry="memory") as client:
        assert await client.call("byurl", "Named.Who", {}) == "u"


async def test_a_hung_node_costs_one_attempt_not_the_whole_deadline() -> None:
    registry = MemoryRegistry()
    a, b = Named("a"), Named("b")
    services = []
    for handler in (a, b):
        svc = micro.Service("hung", address="127.0.0.1:0", registry=registry)
        svc.handle(handler, name="Named")
        services.append(svc)
    async with (
        services[0].running(),
        services[1].running(),
        micro.Client(registry=registry, selector="roundrobin", attempt_timeout=0.3) as client,
    ):
        # Idempotent: an attempt that outlives attempt_timeout is retried on the other node.
        with anyio.fail_after(10):
            while a.calls == 0:
                assert await client.call("hung", "Named.HangsOnA", {}, timeout=20) == "b"
        # Not idempotent: the handler may have run, so the attempt's timeout is the answer.
        client.health = NodeHealth()  # forget that a failed
        a.calls = b.calls = 0
        timed_out = False
        with anyio.fail_after(10):
            while a.calls == 0:
                before = b.calls
                try:
                    assert await client.call("hung", "Named.StallsOnA", {}, timeout=20) == "b"
                except micro.Timeout as exc:
                    assert "took longer than 0.3s" in exc.detail
                    assert b.calls == before  # not re-run on the other node
                    timed_out = True
    assert timed_out
