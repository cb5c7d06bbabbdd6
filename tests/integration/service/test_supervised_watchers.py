"""The registry watchers feeding a client's cache are supervised parts: a service's run
under the service's supervisor (restarted with backoff, listed in its debug stats,
stopping the service when they keep failing), a standalone client's under its own."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest

import micro
from micro.registry import MemoryRegistry, ServiceNotFound
from micro.registry.etcd import EtcdRegistry
from micro.supervisor import PartFailed
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio


class Hello:
    async def who(self, req: dict[str, Any]) -> str:
        return "hello"


async def until(condition: Any) -> None:
    with anyio.fail_after(20):
        while not condition():
            await anyio.sleep(0.02)


async def test_a_services_watcher_runs_under_its_supervisor() -> None:
    registry = MemoryRegistry()
    name = f"watched-{uuid.uuid4().hex[:8]}"
    service = micro.Service(name, address="127.0.0.1:0", registry=registry)
    service.handle(Hello())
    watcher = f"registry watcher {name}"
    async with service.running():
        assert watcher not in service.stats()["parts"]
        assert await service.client.call(name, "Hello.Who", {}) == "hello"
        await until(lambda: service.stats()["parts"][watcher]["state"] == "running")
        part = service.stats()["parts"][watcher]
        assert part == {"state": "running", "restarts": 0, "last_error": None}
        assert watcher not in service.client.parts()  # the service's, not the client's
        # the watcher keeps the cache current: a second node is seen without a re-read
        other = micro.Service(name, address="127.0.0.1:0", registry=registry)
        other.handle(Hello())
        async with other.running():
            cache = service.client._cache
            assert cache is not None
            await until(lambda: len((cache._entries[name].records or [None])[0].nodes) == 2)  # type: ignore[union-attr]
    assert service.stats()["parts"] == {}  # the service is stopped
    # after the service stopped, its client's lookups are watched by the client again
    bare = micro.Service(name, address="127.0.0.1:0", registry=registry)
    async with service.client, bare.running():
        with pytest.raises(micro.MicroError):  # no handler there: the lookup worked
            await service.client.call(name, "Hello.Who", {})
        await until(lambda: service.client.parts()[watcher]["state"] == "running")


async def test_a_watcher_that_keeps_failing_stops_the_service(
    fresh_etcd_server: ServerProcess,
) -> None:
    registry = EtcdRegistry(fresh_etcd_server.url)
    service = micro.Service("watching", address="127.0.0.1:0", registry=registry, register=False)
    watcher = "registry watcher absent"
    with pytest.raises(PartFailed, match=f"{watcher} crashed"):
        with anyio.fail_after(60):
            async with service.running():
                with pytest.raises(ServiceNotFound):
                    await service.client.call("absent", "Hello.Who", {})
                await until(lambda: service.stats()["parts"][watcher]["state"] == "running")
                await anyio.to_thread.run_sync(fresh_etcd_server.stop)
                # ended by etcd going away, then failing while it is gone
                await until(lambda: service.stats()["parts"][watcher]["restarts"] >= 1)
                await until(
                    lambda: "unreachable" in (service.stats()["parts"][watcher]["last_error"])
                )
                await anyio.sleep_forever()  # until the supervisor gives up


async def test_a_standalone_clients_watcher_is_restarted_by_its_own_supervisor(
    fresh_etcd_server: ServerProcess,
) -> None:
    registry = EtcdRegistry(fresh_etcd_server.url)
    name = f"standalone-{uuid.uuid4().hex[:8]}"
    watcher = f"registry watcher {name}"
    with anyio.fail_after(60):
        async with micro.Client(registry=registry) as client:
            with pytest.raises(ServiceNotFound):
                await client.call(name, "Hello.Who", {})
            await until(lambda: client.parts()[watcher]["state"] == "running")
            await anyio.to_thread.run_sync(fresh_etcd_server.restart)
            # etcd came back: the restarted watcher sees a service registered now
            service = micro.Service(name, address="127.0.0.1:0", registry=registry)
            service.handle(Hello())
            async with service.running():
                with anyio.fail_after(30):
                    while True:
                        try:
                            assert await client.call(name, "Hello.Who", {}) == "hello"
                            break
                        except ServiceNotFound:  # not re-read yet
                            await anyio.sleep(0.05)
                part = client.parts()[watcher]
                assert part["restarts"] >= 1 and part["state"] == "running"
