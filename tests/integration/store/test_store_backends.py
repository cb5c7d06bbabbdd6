"""What the etcd and Redis stores do beyond the conformance suite: TTL through
etcd leases and Redis's own expiry, one etcd client shared with the registry,
and clear errors when the server is unreachable or goes away."""

from __future__ import annotations

import time
import uuid

import anyio
import coredis
import pytest

from micro._redis import RedisServer
from micro.registry.base import Node, ServiceRecord
from micro.registry.etcd import EtcdRegistry
from micro.store import EtcdStore, Record, RedisStore, from_url
from tests.integration.store_calls import all_calls_fail
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.anyio


def _db() -> str:
    return f"backend-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("scheme", ["etcd", "redis"])
async def test_an_unreachable_server_is_a_clear_error(scheme: str) -> None:
    port = free_port()  # nothing listens there
    url = f"etcd://127.0.0.1:{port}" if scheme == "etcd" else f"redis://127.0.0.1:{port}/0"
    async with from_url(url) as store:
        await all_calls_fail(store, f"127.0.0.1:{port}")


async def test_redis_going_away_and_coming_back(fresh_redis_server: ServerProcess) -> None:
    async with RedisStore(fresh_redis_server.url) as store:
        await store.write(Record("before", b"1"))
        fresh_redis_server.stop()
        await all_calls_fail(store, "is unreachable")
        fresh_redis_server.start()  # an empty server: it keeps nothing on disk
        await store.write(Record("after", b"2"))
        assert await store.list() == ["after"]


async def test_etcd_going_away_and_coming_back(fresh_etcd_server: ServerProcess) -> None:
    async with EtcdStore(fresh_etcd_server.url) as store:
        await store.write(Record("before", b"1"), ttl=30)
        fresh_etcd_server.stop()
        await all_calls_fail(store, fresh_etcd_server.url)
        fresh_etcd_server.start()
        await store.write(Record("after", b"2"), ttl=30)  # the cached lease still holds
        assert await store.list() == ["after", "before"]


async def test_etcd_ttl_is_a_lease_shared_by_records_of_the_same_second(
    etcd_server: ServerProcess,
) -> None:
    db = _db()
    async with EtcdStore(etcd_server.url) as store:
        expiry = float(int(time.time()) + 20)

        async def write(key: str) -> None:
            await store.write(Record(key, b"v"), expiry=expiry - 0.5, database=db)

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(write, f"k{n}")
        await store.write(Record("forever", b"v"), database=db)
        await store.write(Record("short", b"v"), ttl=1, database=db)
        result = await store.client.range(f"{store.prefix}{db}/micro/".encode(), prefix=True)
        by_key = {kv.key.rsplit(b"/", 1)[1].decode(): kv for kv in result.kvs}
        assert len(by_key) == 22, sorted(by_key)
        leases = {by_key[f"k{n}"].lease for n in range(20)}
        assert len(leases) == 1 and 0 not in leases, leases
        info = await store.client.lease_time_to_live(leases.pop())
        assert 18 <= info.ttl <= 21, info
        assert by_key["forever"].lease == 0
        assert 0 < (await store.client.lease_time_to_live(by_key["short"].lease)).ttl <= 2


async def test_the_etcd_store_shares_the_registrys_client(etcd_server: ServerProcess) -> None:
    registry = EtcdRegistry(etcd_server.url)
    store = EtcdStore(client=registry.client)
    name = f"svc-{uuid.uuid4().hex[:8]}"
    service = ServiceRecord(name=name, nodes=(Node(id="n1", address="127.0.0.1:1"),))
    async with registry:
        async with store:
            await store.write(Record("k", b"v"), database=name)
            await registry.register(service, ttl=30)
        # The store's exit leaves the shared client open for the registry.
        assert [s.name for s in await registry.get_service(name)] == [name]
        await registry.deregister(service)
    async with store:  # and the store opens it again on its own
        assert await store.list(database=name) == ["k"]


async def test_redis_ttl_is_redis_expiry_and_the_index_forgets_expired_keys(
    redis_server: ServerProcess,
) -> None:
    db = _db()
    async with RedisStore(redis_server.url) as store, coredis.Redis.from_url(redis_server.url) as r:
        await store.write(Record("short", b"v"), ttl=2, database=db)
        await store.write(Record("long", b"v"), ttl=60, database=db)
        await store.write(Record("forever", b"v"), database=db)
        base = f"micro:store:{db}:micro".encode()
        assert 0 < await r.pttl(base + b":d:short") <= 2_000
        assert 59_000 < await r.pttl(base + b":d:long") <= 60_000
        assert await r.pttl(base + b":d:forever") == -1
        assert await r.zcard(base + b":x") == 2
        with anyio.fail_after(10):  # past the expiry of "short": gone from Redis itself
            while await r.get(base + b":d:short") is not None:
                await anyio.sleep(0.05)
        assert await store.list(database=db) == ["forever", "long"]
        assert await r.zcard(base + b":i") == 2 and await r.zcard(base + b":x") == 1


def test_redis_urls() -> None:
    store = RedisStore("rediss://user:p%40ss@cache.example:6380/3")
    assert (store.host, store.port, store.db) == ("cache.example", 6380, 3)
    assert store._server == RedisServer("cache.example", 6380, 3, "user", "p@ss", ssl=True)
    assert RedisStore("redis://h").address == "h:6379/0"
    with pytest.raises(ValueError, match="must be a number"):
        RedisStore("redis://h:1/x")
    with pytest.raises(ValueError, match="not a redis URL"):
        RedisStore("http://h:1")
