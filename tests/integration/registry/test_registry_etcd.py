"""EtcdClient and EtcdRegistry against a real etcd: leases, transactions, watches, restarts."""

from __future__ import annotations

import uuid

import anyio
import pytest

from micro.errors import BadRequest, MicroError, NotFound
from micro.etcd import (
    Compare,
    Delete,
    EtcdClient,
    EtcdUnavailable,
    KeyEvent,
    Put,
    Range,
    RangeResult,
    RevisionCompacted,
    Watch,
)
from micro.registry import EventType, Node, RegistryUnavailable, ServiceNotFound, ServiceRecord
from micro.registry.etcd import EtcdRegistry
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio

#: seconds past its TTL within which etcd must have dropped an unrefreshed lease
EXPIRY_SLACK = 3.0


def unique(stem: str) -> bytes:
    return f"/test/{stem}/{uuid.uuid4().hex}/".encode()


def record(name: str, node_id: str = "n1", **metadata: str) -> ServiceRecord:
    return ServiceRecord(
        name=name, metadata=metadata, nodes=(Node(id=node_id, address="127.0.0.1:1"),)
    )


async def next_event(events: Watch) -> KeyEvent:
    with anyio.fail_after(10):
        return await events.__anext__()


async def wait_gone(registry: EtcdRegistry, name: str, within: float) -> None:
    with anyio.fail_after(within):
        while True:
            try:
                await registry.get_service(name)
            except ServiceNotFound:
                return
            await anyio.sleep(0.05)


# -- EtcdClient ------------------------------------------------------------------


async def test_put_get_and_prefix_range(etcd_server: ServerProcess) -> None:
    base = unique("range")
    async with EtcdClient(etcd_server.url) as etcd:
        first = await etcd.put(base + b"a", b"1")
        await etcd.put(base + b"b", b"\x00\xff binary")
        await etcd.put(base[:-1] + b"-sibling", b"outside the prefix")
        kv = await etcd.get(base + b"a")
        assert kv is not None and kv.value == b"1"
        assert kv.create_revision == kv.mod_revision == first.revision and kv.version == 1
        assert await etcd.get(base + b"missing") is None

        result = await etcd.range(base, prefix=True)
        assert [kv.key for kv in result.kvs] == [base + b"a", base + b"b"]
        assert result.kvs[1].value == b"\x00\xff binary" and result.count == 2
        limited = await etcd.range(base, prefix=True, limit=1)
        assert len(limited.kvs) == 1 and limited.more and limited.count == 2
        keys_only = await etcd.range(base, prefix=True, keys_only=True)
        assert [kv.value for kv in keys_only.kvs] == [b"", b""]
        old = await etcd.range(base + b"a", revision=first.revision)
        assert old.kvs[0].value == b"1"

        replaced = await etcd.put(base + b"a", b"2", prev_kv=True)
        assert replaced.prev_kv is not None and replaced.prev_kv.value == b"1"
        deleted = await etcd.delete(base, prefix=True, prev_kv=True)
        assert deleted.deleted == 2
        assert sorted(kv.value for kv in deleted.prev_kvs) == [b"\x00\xff binary", b"2"]
        assert (await etcd.range(base, prefix=True)).kvs == ()
        assert (await etcd.delete(base + b"a")).deleted == 0
        await etcd.delete(base[:-1] + b"-sibling")


async def test_txn_create_if_absent_and_compare_and_swap(etcd_server: ServerProcess) -> None:
    key = unique("txn") + b"lock"
    async with EtcdClient(etcd_server.url) as etcd:
        won = await etcd.txn([Compare.absent(key)], [Put(key, b"owner-1")], [Range(key)])
        assert won.succeeded
        lost = await etcd.txn([Compare.absent(key)], [Put(key, b"owner-2")], [Range(key)])
        assert not lost.succeeded
        [current] = lost.responses
        assert isinstance(current, RangeResult) and current.kvs[0].value == b"owner-1"

        kv = current.kvs[0]
        stale = await etcd.txn([Compare.unchanged(key, kv.mod_revision - 1)], [Put(key, b"x")])
        assert not stale.succeeded and stale.responses == ()
        swapped = await etcd.txn([Compare.unchanged(key, kv.mod_revision)], [Put(key, b"new")])
        assert swapped.succeeded and swapped.revision > kv.mod_revision
        assert (await etcd.get(key)) is not None
        by_value = await etcd.txn(
            [Compare(key, "VALUE", "EQUAL", b"new")], [Delete(key)], [Put(key, b"unexpected")]
        )
        assert by_value.succeeded and await etcd.get(key) is None


async def test_leases(etcd_server: ServerProcess) -> None:
    key = unique("lease") + b"k"
    async with EtcdClient(etcd_server.url) as etcd:
        lease = await etcd.lease_grant(30)
        assert lease.ttl == 30
        await etcd.put(key, b"v", lease=lease.id)
        assert (await etcd.get(key)) is not None
        info = await etcd.lease_time_to_live(lease.id, keys=True)
        assert info.granted_ttl == 30 and 0 < info.ttl <= 30 and info.keys == (key,)
        assert await etcd.lease_keepalive_once(lease.id) == 30
        await etcd.lease_revoke(lease.id)
        assert await etcd.get(key) is None, "revoking a lease deletes its keys"
        assert (await etcd.lease_time_to_live(lease.id)).ttl == -1
        assert await etcd.lease_keepalive_once(lease.id) == 0
        with pytest.raises(NotFound, match="lease not found"):
            await etcd.lease_revoke(lease.id)

        short = await etcd.lease_grant(1)
        await etcd.put(key, b"short", lease=short.id)
        with anyio.fail_after(1 + EXPIRY_SLACK):
            while await etcd.get(key) is not None:
                await anyio.sleep(0.05)
        assert await etcd.lease_keepalive_once(short.id) == 0


async def test_etcd_errors_keep_their_message(etcd_server: ServerProcess) -> None:
    async with EtcdClient(etcd_server.url) as etcd:
        with pytest.raises(BadRequest, match="future revision") as caught:
            await etcd.range(b"k", revision=1 << 40)
        assert caught.value.id == "etcd"
        with pytest.raises(MicroError, match="lease not found"):
            await etcd.put(b"k", b"v", lease=12345)


async def test_watch_sees_puts_and_deletes(etcd_server: ServerProcess) -> None:
    base = unique("watch")
    async with EtcdClient(etcd_server.url) as etcd:
        async with etcd.watch(base, prefix=True, prev_kv=True) as events:
            await etcd.put(base + b"a", b"1")
            await etcd.put(base[:-1] + b"-other", b"not watched")
            await etcd.put(base + b"a", b"2")
            await etcd.delete(base, prefix=True)
            created, updated, deleted = [await next_event(events) for _ in range(3)]
        assert (created.type, created.created, created.kv.value) == ("PUT", True, b"1")
        assert (updated.type, updated.created, updated.kv.value) == ("PUT", False, b"2")
        assert updated.prev_kv is not None and updated.prev_kv.value == b"1"
        assert deleted.type == "DELETE" and deleted.kv.key == base + b"a"
        assert deleted.prev_kv is not None and deleted.prev_kv.value == b"2"

        # History from a start revision replays what happened before the watch.
        async with etcd.watch(base + b"a", start_revision=created.kv.mod_revision) as replay:
            values = [(await next_event(replay)).kv.value for _ in range(3)]
        assert values == [b"1", b"2", b""]
        await etcd.delete(base[:-1] + b"-other")


async def test_watch_from_a_compacted_revision_raises(etcd_server: ServerProcess) -> None:
    key = unique("compact") + b"k"
    async with EtcdClient(etcd_server.url) as etcd:
        first = await etcd.put(key, b"1")
        latest = await etcd.put(key, b"2")
        await etcd.compact(latest.revision)
        async with etcd.watch(key, start_revision=first.revision) as events:
            with pytest.raises(RevisionCompacted) as caught, anyio.fail_after(10):
                await events.__anext__()
        assert caught.value.compact_revision == latest.revision
        await etcd.delete(key)


# -- EtcdRegistry ----------------------------------------------------------------


async def test_node_not_kept_alive_disappears_within_its_ttl(etcd_server: ServerProcess) -> None:
    name = f"expiring-{uuid.uuid4().hex}"
    async with EtcdRegistry(etcd_server.url) as registry, registry.watch(name) as events:
        await registry.register(record(name), ttl=1)
        assert [n.id for r in await registry.get_service(name) for n in r.nodes] == ["n1"]
        await wait_gone(registry, name, within=1 + EXPIRY_SLACK)
        with anyio.fail_after(10):
            created = await events.__anext__()
            deleted = await events.__anext__()
        assert created.type == EventType.CREATE
        assert deleted.type == EventType.DELETE and deleted.service == record(name)

        # Registering after the lease expired puts the node again on a new lease.
        await registry.register(record(name), ttl=1)
        assert await registry.get_service(name)
        with anyio.fail_after(10):
            again = await events.__anext__()
        assert again.type == EventType.CREATE
        await registry.deregister(record(name))


async def test_reregister_keeps_the_lease_and_puts_changes(etcd_server: ServerProcess) -> None:
    name = f"refresh-{uuid.uuid4().hex}"
    async with (
        EtcdClient(etcd_server.url) as etcd,
        EtcdRegistry(client=etcd) as registry,
    ):
        await registry.register(record(name), ttl=5)
        [kv] = (await etcd.range(f"/micro/registry/{name}/".encode(), prefix=True)).kvs
        await registry.register(record(name), ttl=5)
        [same] = (await etcd.range(kv.key)).kvs
        assert same == kv, "an unchanged node is refreshed by keepalive, not put"
        await registry.register(record(name, team="new"), ttl=5)
        [changed] = (await etcd.range(kv.key)).kvs
        assert changed.lease == kv.lease and changed.version == 2
        await registry.deregister(record(name))
        assert (await etcd.lease_time_to_live(kv.lease)).ttl == -1, "deregister revokes"
    assert etcd._conn is None, "the shared client closes with its last user"


async def test_names_with_slashes_and_percents_round_trip(etcd_server: ServerProcess) -> None:
    name = f"a/b%2Fc-{uuid.uuid4().hex}"
    service = record(name, node_id="node/1%")
    async with EtcdRegistry(etcd_server.url) as registry, registry.watch(name) as events:
        await registry.register(service, ttl=30)
        assert await registry.get_service(name) == [service]
        with pytest.raises(ServiceNotFound):
            await registry.get_service("a")
        await registry.deregister(service)
        with anyio.fail_after(10):
            assert (await events.__anext__()).type == EventType.CREATE
            deleted = await events.__anext__()
        assert deleted.type == EventType.DELETE and deleted.service == service


async def test_registry_is_reference_counted(etcd_server: ServerProcess) -> None:
    registry = EtcdRegistry(etcd_server.url)
    with pytest.raises(RegistryUnavailable, match="not open"):
        await registry.list_services()
    async with registry:
        async with registry:
            await registry.list_services()
        await registry.list_services()  # still open: one user left
    with pytest.raises(RegistryUnavailable, match="not open"):
        await registry.list_services()


async def test_etcd_restart_ends_the_watch_and_a_new_watch_works(
    fresh_etcd_server: ServerProcess,
) -> None:
    server = fresh_etcd_server
    name = f"restart-{uuid.uuid4().hex}"
    async with EtcdRegistry(server.url) as registry:
        async with (
            registry.watch(name) as events,
            EtcdClient(server.url) as etcd,
            etcd.watch(b"/restart/", prefix=True) as raw,
        ):
            await anyio.to_thread.run_sync(server.stop)
            with anyio.fail_after(10):
                assert [event async for event in events] == []
                with pytest.raises(EtcdUnavailable, match=server.url):
                    async for _ in raw:
                        pass

        with pytest.raises(RegistryUnavailable, match=server.url):
            await registry.get_service(name)

        await anyio.to_thread.run_sync(server.start)
        async with registry.watch(name) as events:
            await registry.register(record(name), ttl=30)
            with anyio.fail_after(10):
                event = await events.__anext__()
            assert event.type == EventType.CREATE and event.service.name == name
        assert await registry.get_service(name) == [record(name)]


async def test_registry_carries_on_across_a_restart(fresh_etcd_server: ServerProcess) -> None:
    server = fresh_etcd_server
    name = f"restarted-{uuid.uuid4().hex}"
    async with EtcdRegistry(server.url) as registry:
        await registry.register(record(name), ttl=30)
        async with registry.watch(name) as events:
            await anyio.to_thread.run_sync(server.restart)
            with anyio.fail_after(10):
                assert [event async for event in events] == []
        # Pooled connections to the old process are not reused; data and leases survive.
        assert await registry.get_service(name) == [record(name)]
        await registry.register(record(name), ttl=30)
        async with registry.watch(name) as events:
            await registry.deregister(record(name))
            with anyio.fail_after(10):
                assert (await events.__anext__()).type == EventType.DELETE
