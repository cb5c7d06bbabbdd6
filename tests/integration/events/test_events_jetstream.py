"""JetStream through micro's NATS client, against a real nats-server with -js."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from micro.errors import NotFound
from micro.events import JetStreamEventStream, PublishError
from micro.nats import NatsClient
from micro.nats.jetstream import JetStream, JetStreamError
from tests.servers import ServerProcess
from tests.servers_nats import start_nats

pytestmark = pytest.mark.anyio


async def test_publish_with_the_same_id_is_stored_once(nats_server: ServerProcess) -> None:
    async with NatsClient(nats_server.url) as nc:
        js = JetStream(nc)
        name = f"DEDUPE-{id(nc)}"
        await js.add_stream({"name": name, "subjects": [f"dedupe.{id(nc)}"], "storage": "memory"})
        try:
            first = await js.publish(f"dedupe.{id(nc)}", b"one", msg_id="m1")
            again = await js.publish(f"dedupe.{id(nc)}", b"one", msg_id="m1")
            other = await js.publish(f"dedupe.{id(nc)}", b"two", msg_id="m2")
            assert (first.seq, first.duplicate) == (1, False)
            assert (again.seq, again.duplicate) == (1, True)
            assert other.seq == 2
            info = await js.stream_info(name)
            assert info is not None and info["state"]["messages"] == 2
            with pytest.raises(NotFound):
                await js.publish("nobody.stores.this", b"x")
            with pytest.raises(JetStreamError) as error:
                await js.api("STREAM.INFO.NO-SUCH-STREAM")
            assert error.value.err_code == 10059
            assert await js.stream_info("NO-SUCH-STREAM") is None
        finally:
            await js.delete_stream(name)


async def test_published_events_survive_a_server_restart(
    fresh_nats_server: ServerProcess,
) -> None:
    """An event whose publish returned is delivered after the server restarted."""
    async with JetStreamEventStream(fresh_nats_server.url) as stream:
        published = [(await stream.publish("restart.orders", {"n": n})).id for n in range(50)]
    fresh_nats_server.restart()
    async with (
        JetStreamEventStream(fresh_nats_server.url) as stream,
        stream.consume("restart.orders", group="billing", offset="start") as events,
    ):
        got: list[str] = []
        with anyio.fail_after(20):
            async for event in events:
                got.append(event.id)
                await event.ack()
                if len(got) == len(published):
                    break
        assert got == published


async def test_consumers_go_on_after_a_server_restart(fresh_nats_server: ServerProcess) -> None:
    """A consumer and a publisher that outlive a restart lose nothing published after it."""
    async with (
        JetStreamEventStream(fresh_nats_server.url) as stream,
        stream.consume("restart.live", group="g", offset="start") as events,
    ):
        before = await stream.publish("restart.live", "before")
        with anyio.fail_after(20):
            event = await events.__anext__()
        assert event.id == before.id
        await event.ack()
        fresh_nats_server.restart()
        after = await stream.publish("restart.live", "after")  # waits for the reconnection
        with anyio.fail_after(30):
            while (event := await events.__anext__()).id != after.id:
                await event.ack()  # "before" again, if its ack was lost with the server
        await event.ack()


async def test_without_jetstream_publishing_fails_and_says_why(tmp_path: Path) -> None:
    server = start_nats(tmp_path, jetstream=False)
    try:
        async with JetStreamEventStream(server.url, timeout=1.0) as stream:
            with pytest.raises(PublishError, match="JetStream is not enabled"):
                await stream.publish("nojs.orders", {"n": 1})
    finally:
        server.stop()


async def test_pull_requests_spread_their_expiry(nats_server: ServerProcess) -> None:
    """Back-to-back pull requests do not all expire after the same time, so their ends
    do not keep step with a redelivery timer (see Puller)."""
    async with NatsClient(nats_server.url) as nc:
        js = JetStream(nc)
        name = f"SPREAD-{id(nc)}"
        await js.add_stream({"name": name, "subjects": [f"spread.{id(nc)}"], "storage": "memory"})
        try:
            await js.add_consumer(name, {"durable_name": "c", "ack_policy": "explicit"})
            requests = nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{name}.c")
            async with requests, nc.subscribe(f"_INBOX.spread.{id(nc)}") as inbox:
                await nc.flush()
                puller = js.puller(name, "c", inbox, batch=1, expires=0.05)
                for _ in range(8):
                    assert await puller.fetch() == []  # nothing stored: each request expires
                expiries = []
                with anyio.fail_after(10):
                    while len(expiries) < 8:
                        msg = await requests.__anext__()
                        expiries.append(json.loads(msg.payload)["expires"] / 1e9)
            assert all(0.04 <= expires <= 0.06 for expires in expiries), expiries
            assert len(set(expiries)) > 1, expiries
        finally:
            await js.delete_stream(name)
