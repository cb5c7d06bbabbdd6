"""The event stream conformance suite, run against every event stream micro ships."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from micro.events import EventStream, FileEventStream, MemoryEventStream
from micro.testing import EVENTS_CHECKS, EventsFactory

pytestmark = pytest.mark.anyio

Check = Callable[[EventsFactory], Awaitable[None]]


@pytest.fixture(params=["memory", "file"])
def events_factory(request: pytest.FixtureRequest, tmp_path: Path) -> EventsFactory:
    if request.param == "memory":
        memory = MemoryEventStream()
        return lambda: memory  # one stream, so events outlive a close as in the others
    path = tmp_path / "events.db"

    def file() -> EventStream:
        return FileEventStream(path)

    return file


@pytest.mark.parametrize("check", list(EVENTS_CHECKS.values()), ids=list(EVENTS_CHECKS))
async def test_events_conform(events_factory: EventsFactory, check: Check) -> None:
    await check(events_factory)
