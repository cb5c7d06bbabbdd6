"""Discovery through a real etcd: services by name, across an etcd restart."""

from __future__ import annotations

import anyio
import pytest

import micro
from micro.registry.etcd import EtcdRegistry

from ...servers import ServerProcess
from .test_discovery import Named

pytestmark = pytest.mark.anyio


async def test_call_by_name_through_etcd(etcd_server: ServerProcess) -> None:
    registry = EtcdRegistry(etcd_server.url)
    svc = micro.Service("etcd-hello", address="127.0.0.1:0", registry=registry)
    svc.handle(Named("e"))
    async with svc.running(), micro.Client(registry=registry) as client:
        assert await client.call("etcd-hello", "Named.Who", {}) == "e"
    async with registry:
        with pytest.raises(micro.NotFound):
            await registry.get_service("etcd-hello")


async def test_cache_resyncs_after_etcd_restart(fresh_etcd_server: ServerProcess) -> None:
    registry = EtcdRegistry(fresh_etcd_server.url)
    first = micro.Service(
        "resync", address="127.0.0.1:0", registry=registry, register_ttl=5, register_interval=0.5
    )
    first.handle(Named("first"))
    second = micro.Service(
        "resync", address="127.0.0.1:0", registry=registry, register_ttl=5, register_interval=0.5
    )
    second.handle(Named("second"))
    async with first.running(), micro.Client(registry=registry) as client:
        assert await client.call("resync", "Named.Who", {}) == "first"
        # etcd goes away and comes back; the client's watcher must reconnect.
        await anyio.to_thread.run_sync(fresh_etcd_server.restart)
        async with second.running():
            seen: set[str] = set()
            with anyio.fail_after(30):
                while seen != {"first", "second"}:
                    try:
                        seen.add(await client.call("resync", "Named.Who", {}))
                    except micro.MicroError:
                        await anyio.sleep(0.05)
