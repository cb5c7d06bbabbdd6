"""Redis Streams through micro against a real redis-server that persists with AOF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from micro.events import RedisEventStream
from tests.servers import ServerProcess, free_port, require_binary
from tests.servers_redis import _pong

pytestmark = pytest.mark.anyio


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[ServerProcess]:
    """A redis-server of the test's own that fsyncs its AOF on every write."""
    binary = require_binary("redis-server", "redis-server")
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path)]
    argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
    server = ServerProcess("redis", argv, tmp_path, _pong(port), f"redis://127.0.0.1:{port}/0")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_published_events_survive_a_server_restart(durable_redis: ServerProcess) -> None:
    """An event whose publish returned is delivered after the server restarted."""
    async with RedisEventStream(durable_redis.url) as stream:
        published = [(await stream.publish("restart.orders", {"n": n})).id for n in range(50)]
        async with stream.consume("restart.orders", group="billing", offset="start") as events:
            with anyio.fail_after(10):
                first = await events.__anext__()  # taken, never acknowledged
    assert first.id == published[0]
    durable_redis.restart()
    async with (
        RedisEventStream(durable_redis.url) as stream,
        stream.consume("restart.orders", group="billing", ack_wait=0.5) as events,
    ):
        got: set[str] = set()
        with anyio.fail_after(20):
            async for event in events:
                got.add(event.id)
                await event.ack()
                if got >= set(published):
                    break
    assert got == set(published), "the group's place and its unacknowledged event survived too"
