"""One etcd client per endpoint per process: a service using one etcd for its registry,
store, sync and config holds one client to it, which closes after its last user."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import anyio
import pytest

import micro
from micro.config import Config
from micro.etcd import EtcdClient, shared_client, shared_clients
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio


def connections_to(port: int) -> int:
    """Established TCP connections from this process to ``port`` on 127.0.0.1."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[len("socket:[") : -1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and int(remote.split(":")[1], 16) == port and inode in ours:
            count += 1
    return count


async def test_one_client_for_registry_store_sync_and_config(etcd_server: ServerProcess) -> None:
    url = etcd_server.url.replace("http://", "etcd://")
    port = int(etcd_server.url.rsplit(":", 1)[1])
    prefix = f"/test/shared/{uuid.uuid4().hex}"
    service = micro.Service(
        f"shared-{uuid.uuid4().hex[:8]}",
        address="127.0.0.1:0",
        registry=url,
        store=url,
        sync=url,
        config=Config([f"{url}{prefix}"]),
        broker="memory",
        events="memory",
    )
    client = shared_client(etcd_server.url)
    assert shared_clients()[client.endpoint] is client
    with anyio.fail_after(30):
        async with service.running():
            assert service.config is not None
            parts = [service.registry, service.store, service.sync, *service.config.sources]
            assert all(getattr(part, "client", None) is client for part in parts), parts
            assert client.users.count >= 4  # registry, store, sync and config hold it open
            async with service.sync.lock(f"{prefix}/lock"):
                await service.store.write(micro.store.Record("k", b"v"))
            assert connections_to(port) >= 1
            # a new part on the same endpoint joins the same client
            assert isinstance(micro.store.from_url(url), micro.store.EtcdStore)
            assert micro.store.from_url(url).client is client  # type: ignore[attr-defined]
    # the last user closed it, and its connections with it
    assert client.users.count == 0
    assert connections_to(port) == 0
    # and it opens again for the next user
    async with client:
        assert (await client.range(b"/test/shared/none")).kvs == ()


async def test_endpoints_are_told_apart(etcd_server: ServerProcess) -> None:
    a = shared_client("http://127.0.0.1:1")
    assert shared_client("etcd://127.0.0.1:1") is a
    assert shared_client("127.0.0.1:1/") is a
    assert shared_client("https://127.0.0.1:1") is not a
    assert isinstance(a, EtcdClient) and a.endpoint == "http://127.0.0.1:1"
