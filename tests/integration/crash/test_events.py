"""Event streams under SIGKILL: nothing acknowledged to a publisher, nor held by a
consumer that dies, is lost.

Contract: an event a consumer of a group received and never acknowledged is
delivered again to another consumer of the group once ``ack_wait`` has passed,
whatever happened to the first; an event whose ``publish`` returned is stored,
whatever happens to the publisher right after.

Child processes run this module (``python -m tests.integration.crash.test_events``):
``consume URL TOPIC BACKEND N`` consumes TOPIC in group ``billing`` from the
start without acknowledging, printing each event id and then ``holding`` once
it holds N; ``publish URL TOPIC BACKEND`` publishes forever, printing each
event id once its publish has returned; ``service URL TOPIC BACKEND`` runs a
service whose consumer of group ``billing`` never returns from its first
event, and prints ``holding`` once it is in it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest

import micro
from micro.events import Event, from_url
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
#: events the killed consumer holds unacknowledged
HELD = 100
#: seconds before an unacknowledged event goes to another consumer
ACK_WAIT = 2.0
#: events the killed publisher has had acknowledged before it is killed
PUBLISHED_BEFORE_KILL = 200


@pytest.fixture(params=["file", "redis", "nats"])
def events_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'events.db'}"
    server: ServerProcess = request.getfixturevalue(f"{request.param}_server")
    return server.url


@asynccontextmanager
async def _child(*args: str) -> AsyncIterator[anyio.abc.Process]:
    """This module run as a child with ``args``; killed on leaving if still running."""
    process = await anyio.open_process(
        [sys.executable, "-m", "tests.integration.crash.test_events", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=None,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.fail_after(10):
                await process.wait()


async def _lines_until(process: anyio.abc.Process, done: str, count: int) -> list[str]:
    """Lines the child prints, until it prints ``done`` or ``count`` lines came."""
    assert process.stdout is not None
    lines: list[str] = []
    buffer = b""
    with anyio.fail_after(60):
        while done not in lines and len(lines) < count:
            buffer += await process.stdout.receive()
            *complete, buffer = buffer.split(b"\n")
            lines.extend(line.decode() for line in complete)
    return lines


async def _kill(process: anyio.abc.Process) -> list[str]:
    """SIGKILL the child; the lines it printed before dying."""
    assert process.stdout is not None
    process.send_signal(signal.SIGKILL)
    rest = b""
    with anyio.fail_after(10):
        async for chunk in process.stdout:
            rest += chunk
        await process.wait()
    return [line.decode() for line in rest.split(b"\n")[:-1]]


async def test_events_held_by_a_killed_consumer_go_to_another(
    events_url: str, anyio_backend: str
) -> None:
    topic = f"crash.orders.{os.getpid()}.{anyio_backend}"
    async with from_url(events_url) as stream:
        published = [(await stream.publish(topic, {"n": n})).id for n in range(HELD)]
        async with _child("consume", events_url, topic, anyio_backend, str(HELD)) as process:
            held = await _lines_until(process, "holding", HELD + 1)
            assert held[-1] == "holding" and sorted(held[:-1]) == sorted(published)
            assert process.returncode is None
            await _kill(process)
        later = [(await stream.publish(topic, {"n": n})).id for n in range(HELD, HELD + 10)]
        got: set[str] = set()
        async with stream.consume(topic, group="billing", ack_wait=ACK_WAIT) as events:
            with anyio.fail_after(60):
                async for event in events:
                    got.add(event.id)
                    if event.id in published:
                        assert event.deliveries >= 2, "held by the killed consumer first"
                    await event.ack()
                    if got >= {*published, *later}:
                        break
    assert not {*published, *later} - got


async def test_published_events_survive_a_killed_publisher(
    events_url: str, anyio_backend: str
) -> None:
    topic = f"crash.published.{os.getpid()}.{anyio_backend}"
    async with _child("publish", events_url, topic, anyio_backend) as process:
        acked = await _lines_until(process, "", PUBLISHED_BEFORE_KILL)
        acked += await _kill(process)
    async with from_url(events_url) as stream:
        stored = {event.id for event in await stream.read(topic)}
    missing = [id for id in acked if id not in stored]
    assert not missing, f"{len(missing)} of {len(acked)} published events lost"


async def test_a_killed_service_consumer_loses_no_event(
    events_url: str, anyio_backend: str
) -> None:
    """A service killed inside its consumer: the event it was handling and those it had
    taken ahead all reach the group's consumer in another service."""
    topic = f"crash.service.{os.getpid()}.{anyio_backend}"
    async with from_url(events_url) as stream:
        published = [(await stream.publish(topic, {"n": n})).id for n in range(HELD)]
    async with _child("service", events_url, topic, anyio_backend) as process:
        assert (await _lines_until(process, "holding", 1))[-1] == "holding"
        await _kill(process)
    got: set[str] = set()
    done = anyio.Event()
    survivor = micro.Service(  # a stream of its own: not one shared with other event loops
        "billing", registry="memory", register=False, events=from_url(events_url), argv=[]
    )

    @survivor.consumer(topic, group="billing", ack_wait=ACK_WAIT)
    async def bill(order: dict[str, int], event: Event) -> None:
        got.add(event.id)
        if got >= set(published):
            done.set()

    async with survivor.running():
        with anyio.fail_after(60):
            await done.wait()
    assert got == set(published)


async def _serve_and_hang(url: str, topic: str) -> None:
    service = micro.Service(
        "billing", registry="memory", register=False, events=url, argv=[], environ={}
    )

    @service.consumer(topic, group="billing", offset="start", ack_wait=ACK_WAIT)
    async def bill(order: dict[str, int]) -> None:
        print("holding", flush=True)
        await anyio.sleep_forever()

    async with service.running():
        await anyio.sleep_forever()


async def _consume(url: str, topic: str, count: int) -> None:
    async with (
        from_url(url) as stream,
        stream.consume(
            topic, group="billing", offset="start", ack_wait=ACK_WAIT, retry_limit=20
        ) as events,
    ):
        held = 0
        async for event in events:
            print(event.id, flush=True)
            held += 1
            if held == count:
                print("holding", flush=True)
                await anyio.sleep_forever()


async def _publish(url: str, topic: str) -> None:
    async with from_url(url) as stream:
        n = 0
        while True:
            event = await stream.publish(topic, {"n": n})
            print(event.id, flush=True)
            n += 1


if __name__ == "__main__":
    mode, url, topic, backend, *rest = sys.argv[1:]
    if mode == "consume":
        anyio.run(_consume, url, topic, int(rest[0]), backend=backend)
    elif mode == "service":
        anyio.run(_serve_and_hang, url, topic, backend=backend)
    else:
        anyio.run(_publish, url, topic, backend=backend)
