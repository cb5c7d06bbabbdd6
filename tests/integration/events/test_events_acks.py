"""Acknowledgements ride with a consumer's batch: written with its next claim, with the
batch's last event, or when it stops; one that never got written only means a redelivery.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import anyio
import pytest

from micro.events import FileEventStream, RedisEventStream
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio


def pending(path: Path, group: str) -> list[int]:
    """The group's claimed and unacknowledged events, as the file holds them."""
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT seq FROM pending WHERE grp = ? ORDER BY seq", (group,))
        return [seq for (seq,) in rows]


async def test_acks_within_a_batch_are_written_with_its_last(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with FileEventStream(path) as stream:
        for i in range(3):
            await stream.publish("orders", {"n": i})
        async with stream.consume("orders", group="billing", offset="start") as events:
            seen = []
            async for event in events:
                seen.append(event.decode()["n"])
                await event.ack()
                if len(seen) < 3:
                    # More of the claimed batch is still to come: not written yet.
                    assert len(pending(path, "billing")) == 3
                else:
                    # The batch's last acknowledgement writes them all.
                    assert pending(path, "billing") == []
                    break
        assert seen == [0, 1, 2]


async def test_a_stopping_consumer_writes_its_acks_and_gives_back_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    async with FileEventStream(path) as stream:
        for i in range(4):
            await stream.publish("orders", {"n": i})
        async with stream.consume("orders", group="billing", offset="start") as events:
            async for event in events:
                await event.ack()
                if event.decode()["n"] == 1:
                    break
        # Events 0 and 1 are acknowledged; 2 and 3 were never handed out.
        assert len(pending(path, "billing")) == 2
        got = []
        with anyio.fail_after(10):
            async with stream.consume("orders", group="billing", ack_wait=30) as events:
                async for event in events:
                    got.append(event.decode()["n"])
                    await event.ack()
                    if len(got) == 2:
                        break
        assert got == [2, 3]
        assert pending(path, "billing") == []


async def test_unwritten_acks_mean_redelivery_never_loss(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with FileEventStream(path) as stream:
        for i in range(3):
            await stream.publish("orders", {"n": i})
        first = stream.consume("orders", group="billing", offset="start", ack_wait=0.2)
        events = await first.__aenter__()
        event = await events.__anext__()
        await event.ack()  # 1 and 2 still buffered: this acknowledgement waits for them
        # The consumer hangs (never claims again, never stops): once ack_wait has passed,
        # the group's other consumer gets every event again, the acknowledged one too.
        got: list[int] = []
        with anyio.fail_after(10):
            async with stream.consume("orders", group="billing", ack_wait=30) as others:
                async for other in others:
                    got.append(other.decode()["n"])
                    await other.ack()
                    if len(got) == 3:
                        break
        assert sorted(got) == [0, 1, 2]
        with anyio.CancelScope(shield=True):
            await first.__aexit__(None, None, None)


async def redis_pending(stream: RedisEventStream, topic: str, group: str) -> int:
    """How many of the group's events Redis holds as delivered and unacknowledged."""
    summary = await stream._client_now().xpending(stream._keys(topic)[0], group)
    return int(summary.pending)


async def test_redis_acks_within_a_batch_go_in_one_xack(redis_server: ServerProcess) -> None:
    async with RedisEventStream(redis_server.url) as stream:
        topic = f"acks.{uuid.uuid4().hex}"
        for i in range(4):
            await stream.publish(topic, {"n": i})
        seen = []
        async with stream.consume(topic, group="billing", offset="start") as events:
            async for event in events:
                seen.append(event.decode()["n"])
                await event.ack()
                if len(seen) < 4:
                    assert await redis_pending(stream, topic, "billing") == 4
                else:
                    assert await redis_pending(stream, topic, "billing") == 0
                    break
        assert seen == [0, 1, 2, 3]
        # A consumer stopping mid-batch acknowledges what it acknowledged, gives back the rest.
        for i in range(4, 8):
            await stream.publish(topic, {"n": i})
        async with stream.consume(topic, group="billing") as events:
            async for event in events:
                await event.ack()
                if event.decode()["n"] == 5:
                    break
        assert await redis_pending(stream, topic, "billing") == 2
        got = []
        with anyio.fail_after(10):
            async with stream.consume(topic, group="billing") as events:
                async for event in events:
                    got.append(event.decode()["n"])
                    await event.ack()
                    if len(got) == 2:
                        break
        assert sorted(got) == [6, 7]
        assert await redis_pending(stream, topic, "billing") == 0
