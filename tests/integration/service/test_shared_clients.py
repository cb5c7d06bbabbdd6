"""One NATS client and one Redis client per server per process: a service using one NATS
server for its broker and event stream, or one Redis for its store and event stream,
holds one connection to it, which closes after its last user."""

from __future__ import annotations

import uuid

import anyio
import pytest

import micro
from micro._redis import RedisServer, shared_client, shared_clients
from micro.events import RedisEventStream
from micro.nats import NatsClient
from micro.store import Record, RedisStore
from tests.integration.etcd.test_etcd_shared import connections_to
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio


def port_of(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


async def no_connections_to(port: int) -> None:
    with anyio.fail_after(10):
        while connections_to(port) != 0:
            await anyio.sleep(0.01)


async def test_broker_and_events_on_one_nats_server_share_one_connection(
    nats_server: ServerProcess,
) -> None:
    port = port_of(nats_server)
    service = micro.Service(
        f"shared-nats-{uuid.uuid4().hex[:8]}",
        address="127.0.0.1:0",
        registry="memory",
        broker=nats_server.url,
        events=nats_server.url,
    )
    broker_client = service.broker.client  # type: ignore[attr-defined]
    assert isinstance(broker_client, NatsClient)
    assert service.events.client is broker_client  # type: ignore[attr-defined]
    topic = f"shared.{uuid.uuid4().hex[:8]}"
    with anyio.fail_after(30):
        async with service.running():
            assert broker_client.users.count == 2  # the broker and the event stream
            await service.publish(topic, {"n": 1})
            event = await service.publish_event(topic, {"n": 2})
            assert [e.id for e in await service.events.read(topic)] == [event.id]
            assert connections_to(port) == 1
        assert broker_client.users.count == 0
        await no_connections_to(port)


async def test_store_and_events_on_one_redis_share_one_connection(
    redis_server: ServerProcess,
) -> None:
    port = port_of(redis_server)
    service = micro.Service(
        f"shared-redis-{uuid.uuid4().hex[:8]}",
        address="127.0.0.1:0",
        registry="memory",
        broker="memory",
        store=redis_server.url,
        events=redis_server.url,
    )
    assert isinstance(service.store, RedisStore)
    assert isinstance(service.events, RedisEventStream)
    shared = shared_client(RedisServer.from_url(redis_server.url), connect_timeout=5.0)
    assert shared_clients()[(shared.server, 5.0)] is shared
    key, topic = f"shared-{uuid.uuid4().hex}", f"shared.{uuid.uuid4().hex[:8]}"
    with anyio.fail_after(30):
        async with service.running():
            assert shared.users.count == 2  # the store and the event stream
            await service.store.write(Record(key, b"v"))
            event = await service.events.publish(topic, {"n": 1})
            assert (await service.store.read(key))[0].value == b"v"
            assert [e.id for e in await service.events.read(topic)] == [event.id]
            assert connections_to(port) == 1
        assert shared.users.count == 0 and shared.client is None
        await no_connections_to(port)
        # and it connects again for the next user
        async with RedisStore(redis_server.url) as store:
            assert shared.users.count == 1
            assert (await store.read(key))[0].value == b"v"
            await store.delete(key)
        assert shared.users.count == 0


async def test_redis_clients_are_told_apart() -> None:
    a = shared_client(RedisServer.from_url("redis://127.0.0.1:1/0"), connect_timeout=5.0)
    assert shared_client(RedisServer.from_url("redis://127.0.0.1:1"), connect_timeout=5.0) is a
    other_db = RedisServer.from_url("redis://127.0.0.1:1/1")
    assert shared_client(other_db, connect_timeout=5.0) is not a
    login = RedisServer.from_url("redis://user:secret@127.0.0.1:1/0")
    assert shared_client(login, connect_timeout=5.0) is not a
