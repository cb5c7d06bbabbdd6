"""A service's event stream and consumers: typed functions, acked on return, nacked on raise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

import micro
from micro.events import Event, EventStream, FileEventStream, MemoryEventStream, default_events
from micro.observability.metrics import exposition

pytestmark = pytest.mark.anyio


@dataclass
class Order:
    id: int
    item: str


def service(events: EventStream | str) -> micro.Service:
    return micro.Service(
        "shop", address="127.0.0.1:0", registry="memory", register=False, events=events
    )


async def test_consumer_acks_what_it_handled(tmp_path: Path) -> None:
    svc = service(f"file://{tmp_path}/events.db")
    assert isinstance(svc.events, FileEventStream)
    got: list[Order] = []
    done = anyio.Event()

    @svc.consumer("orders", group="billing", offset="start")
    async def bill(order: Order) -> None:
        got.append(order)
        if len(got) == 3:
            done.set()

    async with svc.running():
        for n in range(3):
            event = await svc.publish_event("orders", Order(n, "book"), metadata={"k": "v"})
            assert event.topic == "orders" and event.metadata["k"] == "v"
        with anyio.fail_after(10):
            await done.wait()
    assert got == [Order(0, "book"), Order(1, "book"), Order(2, "book")]
    # Acknowledged: the group has nothing left, and later events go on from there.
    async with FileEventStream(tmp_path / "events.db") as stream:
        later = await stream.publish("orders", Order(3, "pen"))
        async with stream.consume("orders", group="billing") as events:
            with anyio.fail_after(10):
                event = await events.__anext__()
            assert event.id == later.id and event.deliveries == 1


async def test_a_consumer_that_raises_gets_the_event_again() -> None:
    svc = service(MemoryEventStream())
    deliveries: list[int] = []
    done = anyio.Event()

    @svc.consumer("flaky", group="g", ack_wait=30)
    async def flaky(order: Order, event: Event) -> None:
        deliveries.append(event.deliveries)
        if event.deliveries < 3:
            raise RuntimeError("not yet")
        done.set()

    async with svc.running():
        await svc.publish_event("flaky", Order(1, "cup"))
        with anyio.fail_after(10):
            await done.wait()
    assert deliveries == [1, 2, 3], "nacked on raise: delivered again at once"


async def test_undecodable_events_are_dead_lettered_and_the_consumer_goes_on() -> None:
    stream = MemoryEventStream()
    svc = service(stream)
    got: list[Order] = []
    done = anyio.Event()

    @svc.consumer("typed", group="g")
    async def typed(order: Order) -> None:
        got.append(order)
        done.set()

    async with svc.running():
        bad = await svc.publish_event("typed", {"id": "not a number"})
        await svc.publish_event("typed", Order(2, "pen"))
        with anyio.fail_after(10):
            await done.wait()
        [dead] = await stream.read("typed.dead")
    assert got == [Order(2, "pen")]
    assert dead.metadata["dead-id"] == bad.id
    assert dead.metadata["dead-reason"].startswith("undecodable")


async def test_deliveries_are_counted_and_traced_as_for_pubsub() -> None:
    stream = MemoryEventStream()
    svc = service(stream)
    done = anyio.Event()

    @svc.consumer("counted", group="metrics")
    async def counted(event: Event) -> None:
        done.set()

    async with svc.running():
        stored = await svc.publish_event("counted", b"raw")
        assert stored.metadata["content-type"] == "application/octet-stream"
        with anyio.fail_after(10):
            await done.wait()
    assert svc.stats()["published"] == 1
    with anyio.fail_after(10):
        while svc.stats()["delivered"] < 1:
            await anyio.sleep(0.01)
    text = exposition().decode()
    assert 'topic="counted"' in text


def test_events_chosen_by_flag_or_environment() -> None:
    by_flag = micro.Service("f", registry="memory", argv=["--micro-events=memory"], environ={})
    assert by_flag.events is default_events()
    by_env = micro.Service("e", registry="memory", argv=[], environ={"MICRO_EVENTS": "memory"})
    assert by_env.events is default_events()
    with pytest.raises(ValueError, match="unknown events"):
        micro.Service("x", registry="memory", events="kafka://nowhere", argv=[], environ={})


def test_consumers_are_typed_async_functions() -> None:
    svc = service(MemoryEventStream())

    def not_async(order: Order) -> None: ...

    async def fine(order: Order) -> None: ...

    with pytest.raises(TypeError, match="async"):
        svc.consumer("t")(not_async)  # type: ignore[arg-type]
    with pytest.raises(micro.BadRequest):
        svc.consumer("bad topic")(fine)
    with pytest.raises(micro.BadRequest):
        svc.consumer("t", ack_wait=0)(fine)
