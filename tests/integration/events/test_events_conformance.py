"""The event stream conformance suite, run against every event stream micro ships."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from micro.events import (
    EventStream,
    FileEventStream,
    JetStreamEventStream,
    MemoryEventStream,
    RedisEventStream,
)
from micro.testing import EVENTS_CHECKS, EventsFactory
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio

Check = Callable[[EventsFactory], Awaitable[None]]


@pytest.fixture(params=["memory", "file", "redis", "nats"])
def events_factory(request: pytest.FixtureRequest, tmp_path: Path) -> EventsFactory:
    if request.param == "memory":
        memory = MemoryEventStream()
        return lambda: memory  # one stream, so events outlive a close as in the others
    if request.param == "file":
        path = tmp_path / "events.db"

        def file() -> EventStream:
            return FileEventStream(path)

        return file
    if request.param == "redis":
        redis: ServerProcess = request.getfixturevalue("redis_server")

        def redis_stream() -> EventStream:
            return RedisEventStream(redis.url)

        return redis_stream
    nats: ServerProcess = request.getfixturevalue("nats_server")

    def jetstream() -> EventStream:
        return JetStreamEventStream(nats.url)

    return jetstream


@pytest.mark.parametrize("check", list(EVENTS_CHECKS.values()), ids=list(EVENTS_CHECKS))
async def test_events_conform(events_factory: EventsFactory, check: Check) -> None:
    await check(events_factory)
