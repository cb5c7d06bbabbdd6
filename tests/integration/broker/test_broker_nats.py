"""NatsBroker and NatsClient against a real nats-server on loopback.

Delivery (broadcast, queue groups, headers), the subscription's life (handler
errors, cancellation), the connection's life (server restart, server down,
server frozen, server PINGs), flow control for slow subscribers, and a
queue group spread over processes with one member killed midway.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

import micro
from micro.broker import Broker, Message, PublishError, resolve_broker
from micro.broker.nats import NatsBroker, nats_options
from micro.errors import BadRequest, PayloadTooLarge, Timeout
from micro.nats import NatsClient, NatsUnavailable, NoResponders
from micro.nats._connection import MAX_WRITE_BUFFER
from micro.registry import MemoryRegistry
from tests.servers import ServerProcess, free_port
from tests.servers_nats import start_nats

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]


def new_subject() -> str:
    return f"test.{uuid.uuid4().hex}"


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


class Collector:
    """A handler that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def bodies(self) -> list[bytes]:
        return [m.body for m in self.messages]


@asynccontextmanager
async def subscribed(
    broker: NatsBroker, subject: str, handler: Callable[[Message], Awaitable[None]], **kw: object
) -> AsyncIterator[None]:
    """A subscription for the duration of the block."""
    async with anyio.create_task_group() as tg:
        await tg.start(partial(broker.subscribe, subject, handler, **kw))  # type: ignore[arg-type]
        yield
        tg.cancel_scope.cancel()


# -- delivery ----------------------------------------------------------------------


async def test_nats_broker_is_a_broker(nats_server: ServerProcess) -> None:
    async with NatsBroker(nats_server.url) as broker:
        assert isinstance(broker, Broker)


async def test_broadcast_and_queue_groups(nats_server: ServerProcess) -> None:
    subject = new_subject()
    everyone = [Collector(), Collector()]
    group_g = [Collector() for _ in range(3)]
    group_h = [Collector() for _ in range(2)]
    async with AsyncExitStack() as stack:
        publisher = await stack.enter_async_context(NatsBroker(nats_server.url))
        for handler in everyone:
            await stack.enter_async_context(subscribed(publisher, subject, handler))
        for queue, members in (("g", group_g), ("h", group_h)):
            for handler in members:  # each member on a connection of its own
                broker = await stack.enter_async_context(NatsBroker(nats_server.url))
                await stack.enter_async_context(subscribed(broker, subject, handler, queue=queue))

        sent = [Message(subject, str(i).encode()) for i in range(90)]
        for message in sent:
            await publisher.publish(message)

        def count(group: list[Collector]) -> int:
            return sum(len(c.messages) for c in group)

        await eventually(lambda: all(len(c.messages) == 90 for c in everyone))
        await eventually(lambda: count(group_g) == 90 and count(group_h) == 90)
        await anyio.sleep(0.1)  # nothing more comes

    for handler in everyone:
        assert handler.messages == sent  # in order, each once
    for group in (group_g, group_h):
        ids = sorted(m.id for c in group for m in c.messages)
        assert ids == sorted(m.id for m in sent)  # each exactly once within the group
        assert sum(1 for c in group if c.messages) > 1  # and spread over members


async def test_headers_body_and_id_round_trip(nats_server: ServerProcess) -> None:
    subject = new_subject()
    sent = [
        Message(
            subject,
            bytes(range(256)) + b"\r\nMSG x 1 2\r\n",
            {"content-type": "application/octet-stream", "X-Trace": "abc ü €", "empty": ""},
            id="my-id-1",
        ),
        Message(subject, b""),
    ]
    got = Collector()
    async with NatsBroker(nats_server.url) as broker, subscribed(broker, subject, got):
        for message in sent:
            await broker.publish(message)
        await eventually(lambda: len(got.messages) == 2)
    assert got.messages == sent


async def test_bad_topic_is_a_bad_request(nats_server: ServerProcess) -> None:
    async with NatsBroker(nats_server.url) as broker:
        with pytest.raises(BadRequest, match="whitespace"):
            await broker.publish(Message("two words", b""))
        with pytest.raises(BadRequest, match="header"):
            await broker.publish(Message(new_subject(), b"", {"bad\r\nname": "v"}))


# -- a subscription's life -------------------------------------------------------------


async def test_handler_error_does_not_end_the_subscription(nats_server: ServerProcess) -> None:
    subject = new_subject()
    handled: list[bytes] = []
    errors: list[tuple[bytes, BaseException]] = []

    async def handler(message: Message) -> None:
        if message.body == b"bad":
            raise ValueError("cannot handle this")
        handled.append(message.body)

    async def on_error(message: Message, exc: BaseException) -> None:
        errors.append((message.body, exc))

    async with (
        NatsBroker(nats_server.url) as broker,
        subscribed(broker, subject, handler, on_error=on_error),
    ):
        for body in (b"one", b"bad", b"two"):
            await broker.publish(Message(subject, body))
        await eventually(lambda: len(handled) == 2)
    assert handled == [b"one", b"two"]
    [(body, exc)] = errors
    assert body == b"bad" and isinstance(exc, ValueError)


async def test_cancelled_subscription_stops_delivery(nats_server: ServerProcess) -> None:
    subject = new_subject()
    name = f"client-{uuid.uuid4().hex}"
    first, control = Collector(), Collector()
    async with (
        NatsBroker(nats_server.url, name=name) as broker,
        subscribed(broker, subject, control),
    ):
        async with subscribed(broker, subject, first):
            await broker.publish(Message(subject, b"1"))
            await eventually(lambda: len(first.messages) == 1)
        await broker.publish(Message(subject, b"2"))
        await eventually(lambda: len(control.messages) == 2)
        await anyio.sleep(0.05)
        # The server itself holds one subscription for us now, not two.
        assert await server_subscriptions(nats_server, name) == [subject]
    assert first.bodies == [b"1"]
    assert control.bodies == [b"1", b"2"]


async def server_subscriptions(server: ServerProcess, name: str) -> list[str]:
    """The subjects the server has subscribed for the named client (its monitoring API)."""
    url = f"{server.monitor}/connz?subs=1"  # type: ignore[attr-defined]
    data = (await anyio.to_thread.run_sync(lambda: httpx.get(url, trust_env=False))).json()
    [conn] = [c for c in data["connections"] if c.get("name") == name]
    return list(conn.get("subscriptions_list", []))


# -- the connection's life ----------------------------------------------------------------


async def test_reconnects_and_resubscribes_after_server_restart(
    fresh_nats_server: ServerProcess,
) -> None:
    subject = new_subject()
    everyone, grouped = Collector(), Collector()
    async with (
        NatsBroker(fresh_nats_server.url) as broker,
        subscribed(broker, subject, everyone),
        subscribed(broker, subject, grouped, queue="workers"),
    ):
        await broker.publish(Message(subject, b"before"))
        await eventually(lambda: len(everyone.messages) == 1 and len(grouped.messages) == 1)

        await anyio.to_thread.run_sync(fresh_nats_server.restart)
        await broker.publish(Message(subject, b"after"))  # waits for the new connection

        await eventually(lambda: len(everyone.messages) == 2 and len(grouped.messages) == 2)
        assert broker.client.reconnects == 1
    assert everyone.bodies == grouped.bodies == [b"before", b"after"]


@pytest.mark.parametrize("confirm", [True, False], ids=["confirmed", "unconfirmed"])
async def test_publish_while_server_is_down_fails_after_the_timeout(
    fresh_nats_server: ServerProcess, confirm: bool
) -> None:
    subject = new_subject()
    got = Collector()
    async with NatsBroker(fresh_nats_server.url, publish_timeout=0.5, confirm=confirm) as broker:
        await anyio.to_thread.run_sync(fresh_nats_server.stop)
        # Until the client has read the connection's end, an unconfirmed publish is
        # queued on it and lost with it (at most once): wait for the client to notice.
        await eventually(lambda: not broker.client.connected)
        started = anyio.current_time()
        with pytest.raises(PublishError, match=r"not connected to NATS after 0\.5s"):
            await broker.publish(Message(subject, b"while down"))
        assert 0.4 < anyio.current_time() - started < 2.0

        # Back up: the same broker publishes again; the failed message was not sent.
        await anyio.to_thread.run_sync(fresh_nats_server.start)
        await eventually(lambda: broker.client.connected)
        async with subscribed(broker, subject, got):
            await broker.publish(Message(subject, b"after"))
            await eventually(lambda: len(got.messages) == 1)
            await anyio.sleep(0.05)
    assert got.bodies == [b"after"]


async def test_unconfirmed_publishing_delivers_every_message_in_order(
    nats_server: ServerProcess,
) -> None:
    subject = new_subject()
    got = Collector()
    servers, options = nats_options(f"{nats_server.url}?confirm=false")
    async with (
        NatsBroker(nats_server.url) as receiver,
        subscribed(receiver, subject, got),
        NatsBroker(servers, **options) as publisher,
    ):
        assert not publisher.confirm
        sent = [Message(subject, str(i).encode(), {"n": str(i)}) for i in range(2000)]
        for message in sent:
            await publisher.publish(message)  # returns once queued, before the server has it
        await eventually(lambda: len(got.messages) == len(sent))
    assert got.messages == sent


def test_nats_broker_options_from_the_url() -> None:
    url = "nats://a:4222,nats://b:4222?confirm=false&publish_timeout=2s"
    assert nats_options(url) == (
        "nats://a:4222,nats://b:4222",
        {"confirm": False, "publish_timeout": 2.0},
    )
    assert nats_options("nats://a:4222") == ("nats://a:4222", {})
    with pytest.raises(ValueError, match="unknown NATS broker option 'confirmed'"):
        nats_options("nats://a:4222?confirmed=no")
    with pytest.raises(ValueError):
        nats_options("nats://a:4222?confirm=perhaps")
    broker = resolve_broker("nats://127.0.0.1:4222?confirm=0", client=micro.Client())
    assert isinstance(broker, NatsBroker) and not broker.confirm


async def test_frozen_server_is_detected_by_pings(fresh_nats_server: ServerProcess) -> None:
    pid = fresh_nats_server.pid
    assert pid is not None
    async with NatsClient(
        fresh_nats_server.url, ping_interval=0.1, max_outstanding_pings=2, connect_timeout=0.3
    ) as nc:
        os.kill(pid, signal.SIGSTOP)  # alive to TCP, silent to NATS
        try:
            await eventually(lambda: not nc.connected, timeout=3)
        finally:
            os.kill(pid, signal.SIGCONT)
        await eventually(lambda: nc.connected, timeout=5)
        await nc.flush()
        assert nc.reconnects == 1


async def test_publishers_wait_for_a_server_that_stops_reading(
    fresh_nats_server: ServerProcess,
) -> None:
    pid = fresh_nats_server.pid
    assert pid is not None
    failures: list[str] = []
    async with NatsClient(fresh_nats_server.url, timeout=3, ping_interval=60) as nc:
        conn = nc._conn
        assert conn is not None

        async def publisher(count: int | None) -> None:
            try:
                for _ in itertools.repeat(None) if count is None else range(count):
                    await nc.publish("flood", b"x" * 1024)
            except PublishError as exc:
                failures.append(exc.detail)

        # Frozen, then thawed: publishers wait (memory stays bounded), then all go on.
        os.kill(pid, signal.SIGSTOP)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(3):  # 24 MiB: more than the kernel's socket buffers hold
                    tg.start_soon(publisher, 8192)
                await eventually(lambda: len(conn.out) >= MAX_WRITE_BUFFER)
                await anyio.sleep(0.2)
                assert len(conn.out) <= MAX_WRITE_BUFFER + 2048
                os.kill(pid, signal.SIGCONT)
                thawed = anyio.current_time()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert failures == []
        assert anyio.current_time() - thawed < 2  # at once, not at the 3 s timeout

        # Frozen for longer than the timeout: every publisher fails, none hangs.
        nc.timeout = 0.5
        os.kill(pid, signal.SIGSTOP)
        try:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    for _ in range(3):
                        tg.start_soon(publisher, None)
            assert len(conn.out) <= MAX_WRITE_BUFFER + 2048
        finally:
            os.kill(pid, signal.SIGCONT)
        assert failures == ["NATS write buffer still full after 0.5s"] * 3
        await nc.flush()  # the server catches up; the connection was never lost
        assert nc.reconnects == 0


async def test_server_pings_are_answered(tmp_path: Path) -> None:
    # The server PINGs every 100 ms and drops a client after one unanswered PING.
    server = start_nats(tmp_path, config='ping_interval: "100ms"\nping_max: 1\n')
    try:
        async with NatsClient(server.url, ping_interval=60) as nc:
            await anyio.sleep(0.6)
            assert nc.connected and nc.reconnects == 0
            await nc.flush()
    finally:
        server.stop()


async def test_server_list_and_credentials(tmp_path: Path) -> None:
    server = start_nats(tmp_path, args=["--user", "alice", "--pass", "s3cret"])
    host_port = server.url.removeprefix("nats://")
    dead = f"nats://127.0.0.1:{free_port()}"
    try:
        async with NatsClient([dead, f"nats://alice:s3cret@{host_port}"]) as nc:
            assert nc.server_info["port"] == int(host_port.rpartition(":")[2])
            await nc.flush()
        with pytest.raises(NatsUnavailable, match="Authorization Violation"):
            async with NatsClient(f"nats://alice:wrong@{host_port}"):
                pass
    finally:
        server.stop()


# -- client features ---------------------------------------------------------------------------


async def test_request_reply(nats_server: ServerProcess) -> None:
    subject = new_subject()
    async with NatsClient(nats_server.url) as nc, nc.subscribe(subject) as requests:

        async def responder() -> None:
            async for msg in requests:
                if msg.payload != b"ignore me":
                    assert msg.reply is not None
                    await nc.publish(msg.reply, msg.payload.upper(), headers=msg.headers)

        async with anyio.create_task_group() as tg:
            tg.start_soon(responder)
            replies = []

            async def ask(text: bytes) -> None:
                replies.append((await nc.request(subject, text, headers={"k": "v"})).payload)

            async with anyio.create_task_group() as askers:
                for word in (b"a", b"b", b"c"):
                    askers.start_soon(ask, word)
            assert sorted(replies) == [b"A", b"B", b"C"]
            with pytest.raises(NoResponders):
                await nc.request(new_subject(), b"anyone?", timeout=2)
            with pytest.raises(Timeout):
                await nc.request(subject, b"ignore me", timeout=0.1)
            tg.cancel_scope.cancel()


async def test_payload_above_the_server_limit_is_refused(nats_server: ServerProcess) -> None:
    async with NatsClient(nats_server.url) as nc:
        limit = nc.server_info["max_payload"]
        with pytest.raises(PayloadTooLarge):
            await nc.publish(new_subject(), b"x" * (limit + 1))
        await nc.flush()  # the connection is fine


async def test_a_confirmable_publish_is_confirmed_by_its_round_trip(
    nats_server: ServerProcess,
) -> None:
    from micro.nats.protocol import encode_headers

    subject = new_subject()
    async with NatsClient(nats_server.url) as nc, nc.subscribe(subject) as sub:
        block = encode_headers({"content-type": "text/plain"}, "Micro-Id", "m-1")
        pongs = [
            nc.publish_confirmable(subject, b"one", block),
            nc.publish_confirmable(subject, b"two", b""),
        ]
        assert pongs[0] is not None and pongs[0] is pongs[1]  # one PING for both
        with anyio.fail_after(5):
            await pongs[0].event.wait()
            assert pongs[0].error is None
            first, second = await sub.__anext__(), await sub.__anext__()
        assert (first.payload, first.headers) == (
            b"one",
            {"content-type": "text/plain", "Micro-Id": "m-1"},
        )
        assert (second.payload, second.headers) == (b"two", {})
        limit = nc.server_info["max_payload"]
        with pytest.raises(PayloadTooLarge):
            nc.publish_confirmable(subject, b"x" * (limit + 1), b"")
        with pytest.raises(ValueError):
            nc.publish_confirmable("bad subject", b"", b"")
    # Closed: nothing is queued, and publish (which waits for a connection) says why.
    assert nc.publish_confirmable(subject, b"late", b"") is None


async def test_closed_client_refuses_work(nats_server: ServerProcess) -> None:
    nc = NatsClient(nats_server.url)
    async with nc:
        pass
    with pytest.raises(NatsUnavailable, match="not open"):
        await nc.publish("a", b"")
    with pytest.raises(NatsUnavailable, match="not open"):
        await nc.flush()
    async with nc:  # and it can be opened again
        await nc.flush()


async def test_slow_subscriber_holds_the_reader_back_without_loss(
    nats_server: ServerProcess,
) -> None:
    subject = new_subject()
    count, limit = 3000, 16
    async with (
        NatsClient(nats_server.url, max_pending_msgs=limit) as slow,
        NatsClient(nats_server.url) as fast,
        slow.subscribe(subject) as sub,
    ):
        for i in range(count):
            await fast.publish(subject, b"%d " % i + b"x" * 100)
        await fast.flush()  # all of it is at the server (or past it) now
        received = []
        with anyio.fail_after(20):
            async for msg in sub:
                assert sub.pending <= limit
                received.append(int(msg.payload.split()[0]))
                if len(received) % 200 == 0:
                    await anyio.sleep(0.01)  # a slow consumer
                if len(received) == count:
                    break
        assert received == list(range(count))  # nothing dropped, nothing reordered
        assert sub.high_water == limit  # the buffer filled up, and no further
        assert slow.reconnects == 0


async def test_handler_waiting_behind_its_own_full_subscription_gives_up(
    nats_server: ServerProcess,
) -> None:
    # The handler's confirmation (a PONG) arrives behind messages its own full
    # subscription cannot take yet: it must fail after the timeout, not hang.
    subject, other = new_subject(), new_subject()
    outcomes: list[str] = []
    all_queued = anyio.Event()
    client = NatsClient(nats_server.url, max_pending_msgs=1, timeout=0.2)

    async def handler(message: Message) -> None:
        await all_queued.wait()
        try:
            await broker.publish(Message(other, message.body))
            outcomes.append("published")
        except PublishError:
            outcomes.append("failed")

    async with NatsBroker(client=client, publish_timeout=0.2) as broker:
        async with subscribed(broker, subject, handler), NatsClient(nats_server.url) as feeder:
            for body in (b"0", b"1", b"2"):
                await feeder.publish(subject, body)
            await feeder.flush()
            await anyio.sleep(0.05)  # 0 handled, 1 buffered, 2 waiting at the reader
            all_queued.set()
            await eventually(lambda: len(outcomes) == 3)
        assert client.connected and client.reconnects == 0
    assert outcomes == ["failed", "published", "published"]


# -- across processes ------------------------------------------------------------------------


class Child:
    """A helper process whose stdout lines are collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.lines):
            if self.process.poll() is not None and not self._reader.is_alive():
                pytest.fail(f"{self.process.args} exited: {self.lines[-5:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.process.args} timed out: {self.lines[-5:]}")
            time.sleep(0.01)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(5)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


def server_connections(server: ServerProcess) -> int:
    url = f"{server.monitor}/connz"  # type: ignore[attr-defined]
    return int(httpx.get(url, trust_env=False).json()["num_connections"])


def test_queue_group_across_processes_with_a_member_killed(
    fresh_nats_server: ServerProcess, children: list[Child]
) -> None:
    url, subject, half = fresh_nats_server.url, new_subject(), 300
    member_a = Child("tests.integration.nats_member", url, subject, "workers", "asyncio")
    member_b = Child("tests.integration.nats_member", url, subject, "workers", "trio")
    children += [member_a, member_b]
    for member in (member_a, member_b):
        member.wait_for(lambda lines: "ready" in lines)
    publisher = Child("tests.integration.nats_publisher", url, subject, "asyncio")
    children.append(publisher)
    publisher.wait_for(lambda lines: "ready" in lines)

    def delivered() -> list[str]:
        return [line for m in (member_a, member_b) for line in m.lines if line.startswith("m")]

    publisher.send(f"publish 0 {half}")
    publisher.wait_for(lambda lines: f"published 0 {half}" in lines)
    deadline = time.monotonic() + 20
    while len(delivered()) < half and time.monotonic() < deadline:
        time.sleep(0.01)
    a_before = [line for line in member_a.lines if line.startswith("m")]
    assert a_before and len(a_before) < half  # both members took a share

    member_a.process.kill()  # SIGKILL: no goodbye to the server
    deadline = time.monotonic() + 10
    while server_connections(fresh_nats_server) > 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server_connections(fresh_nats_server) == 2  # the publisher and member B

    publisher.send(f"publish {half} {2 * half}")
    publisher.wait_for(lambda lines: f"published {half} {2 * half}" in lines)
    deadline = time.monotonic() + 20
    while len(delivered()) < 2 * half and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)

    everything = delivered()
    assert sorted(everything) == sorted(f"m{i}" for i in range(2 * half))  # each exactly once
    b_after = {f"m{i}" for i in range(half, 2 * half)}
    assert b_after <= set(member_b.lines)  # after the kill, all went to B


async def test_service_on_nats_is_unready_while_the_server_is_down(
    fresh_nats_server: ServerProcess,
) -> None:
    broker = NatsBroker(fresh_nats_server.url, publish_timeout=0.3)
    service = micro.Service(
        "nats-ready", address="127.0.0.1:0", registry=MemoryRegistry(), broker=broker
    )
    async with service.running():
        assert (await service.readiness()).ready
        await anyio.to_thread.run_sync(fresh_nats_server.stop)
        result = await service.readiness()
        assert not result.ready
        assert result.reason == "failing: broker"
        await anyio.to_thread.run_sync(fresh_nats_server.start)
        with anyio.fail_after(10):
            while not (await service.readiness()).ready:
                await anyio.sleep(0.05)
