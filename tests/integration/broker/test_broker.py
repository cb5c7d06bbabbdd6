"""Pub/sub through services, on the memory and HTTP brokers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import pytest

import micro
from micro.broker import Message, PublishError
from micro.broker.http import HttpBroker, topic_service
from micro.broker.memory import MemoryBroker
from micro.broker.nats import NatsBroker
from micro.registry import MemoryRegistry, Node, ServiceRecord

pytestmark = pytest.mark.anyio


@dataclass
class UserCreated:
    id: int
    name: str


Factory = Callable[[str], micro.Service]


@pytest.fixture(params=["memory", "http", "nats", "nats-unconfirmed"])
def make_service(request: pytest.FixtureRequest, registry: MemoryRegistry) -> Factory:
    """Services on one broker: the same tests run on every backend."""
    broker: micro.broker.Broker | str
    if request.param == "memory":
        broker = MemoryBroker()
    elif request.param.startswith("nats"):
        server = request.getfixturevalue("nats_server")
        broker = server.url + ("?confirm=false" if request.param == "nats-unconfirmed" else "")
    else:
        broker = "http"

    def make(name: str) -> micro.Service:
        return micro.Service(name, address="127.0.0.1:0", registry=registry, broker=broker)

    return make


async def _until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not predicate():
            await anyio.sleep(0.005)


async def test_typed_delivery_with_headers(make_service: Factory) -> None:
    got: list[tuple[UserCreated, Message]] = []
    sub = make_service("mailer")

    @sub.subscriber("user.created")
    async def on_user(event: UserCreated, message: Message) -> None:
        got.append((event, message))

    pub = make_service("users")
    async with sub.running(), pub.running():
        await pub.publish("user.created", UserCreated(1, "ann"), headers={"X-Trace": "t1"})
        await _until(lambda: len(got) == 1)
    event, message = got[0]
    assert event == UserCreated(1, "ann")
    assert message.headers["x-trace"] == "t1"
    assert message.headers["content-type"] == "application/json"
    assert message.topic == "user.created" and message.id


async def test_queue_group_gets_each_message_once_broadcast_gets_all(
    make_service: Factory,
) -> None:
    group: Counter[int] = Counter()
    by_member: Counter[str] = Counter()
    audit: list[int] = []
    services = [make_service(f"worker{i}") for i in range(3)]
    for i, svc in enumerate(services):

        async def work(event: UserCreated, i: int = i) -> None:
            group[event.id] += 1
            by_member[f"w{i}"] += 1

        svc.subscribe("jobs", work, queue="workers")

    auditor = make_service("auditor")

    @auditor.subscriber("jobs")
    async def record(event: UserCreated) -> None:
        audit.append(event.id)

    pub = make_service("producer")
    async with (
        services[0].running(),
        services[1].running(),
        services[2].running(),
        auditor.running(),
        pub.running(),
    ):
        for i in range(60):
            await pub.publish("jobs", UserCreated(i, "x"))
        await _until(lambda: sum(group.values()) == 60 and len(audit) == 60)
    assert group == Counter(range(60))  # each exactly once across the group
    assert sorted(audit) == list(range(60))
    assert len(by_member) >= 2  # spread over the group


async def test_failing_handler_and_bad_payload_do_not_end_subscription(
    make_service: Factory, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    ok: list[int] = []
    errors: list[tuple[str, str]] = []
    sub = make_service("fragile")

    async def on_error(message: Message, exc: BaseException) -> None:
        errors.append((message.id, type(exc).__name__))

    @sub.subscriber("events", on_error=on_error)
    async def handle(event: UserCreated) -> None:
        if event.id == 2:
            raise RuntimeError("boom")
        ok.append(event.id)

    pub = make_service("pub")
    # Memory and HTTP answer a delivery once its handler ran, so the publisher hears of
    # a failure; NATS confirms a message once the server has it, before any handler.
    told = not request.node.callspec.params["make_service"].startswith("nats")

    async def unhandled(value: object, **options: str) -> None:
        if told:
            with pytest.raises(PublishError, match="failed on message"):
                await pub.publish("events", value, **options)
        else:
            await pub.publish("events", value, **options)

    async with sub.running(), pub.running():
        await pub.publish("events", UserCreated(1, "a"))
        await unhandled(UserCreated(2, "b"))
        await unhandled({"id": "not a number"})
        await unhandled(b"\xff\x00", content_type="application/json")
        await pub.publish("events", UserCreated(3, "c"))
        await _until(lambda: ok == [1, 3] and len(errors) == 3)
    assert [kind for _, kind in errors] == ["RuntimeError", "BadRequest", "BadRequest"]
    # Each failure is logged with its topic and message id.
    logged = [r.getMessage() for r in caplog.records if r.name == "micro.broker"]
    for message_id, _ in errors:
        assert f"subscriber of events failed on message {message_id}" in logged, logged


async def test_publish_without_subscribers_is_fine(make_service: Factory) -> None:
    pub = make_service("lonely")
    async with pub.running():
        await pub.publish("nobody.listens", {"x": 1})


async def test_subscriptions_leave_with_the_service(
    make_service: Factory, registry: MemoryRegistry
) -> None:
    got: list[int] = []
    sub = make_service("leaving")

    @sub.subscriber("bye")
    async def handle(event: UserCreated) -> None:
        got.append(event.id)

    pub = make_service("pub2")
    async with pub.running():
        async with sub.running():
            await pub.publish("bye", UserCreated(1, "a"))
            await _until(lambda: got == [1])
        if isinstance(pub.broker, HttpBroker):
            with pytest.raises(micro.NotFound):
                await registry.get_service(topic_service("bye"))
        await pub.publish("bye", UserCreated(2, "b"))  # nobody left: not an error
    assert got == [1]


class PortCheckingRegistry(MemoryRegistry):
    """Notes, at each deregistration, whether the leaving node still accepts connections."""

    def __init__(self) -> None:
        super().__init__()
        self.leaving: list[tuple[str, bool]] = []

    async def deregister(self, service: ServiceRecord) -> None:
        for node in service.nodes:
            host, _, port = node.address.rpartition(":")
            try:
                stream = await anyio.connect_tcp(host, int(port))
            except OSError:
                accepting = False
            else:
                await stream.aclose()
                accepting = True
            self.leaving.append((service.name, accepting))
        await super().deregister(service)


async def test_a_stopping_service_leaves_the_registry_before_its_listener_closes() -> None:
    registry = PortCheckingRegistry()
    sub = micro.Service("orderly", address="127.0.0.1:0", registry=registry, broker="http")

    @sub.subscriber("orders", queue="shipping")
    async def handle(event: UserCreated) -> None:
        pass

    async with sub.running():
        pass
    # The service record, then the subscription's, each while the port still took calls.
    assert registry.leaving == [("orderly", True), (topic_service("orders"), True)]


async def test_unsubscribe(make_service: Factory, registry: MemoryRegistry) -> None:
    first: list[int] = []
    second: list[int] = []
    sub = make_service("fickle")

    async def one(event: UserCreated) -> None:
        first.append(event.id)

    async def two(event: UserCreated) -> None:
        second.append(event.id)

    sub.subscribe("news", one)
    sub.subscribe("news", two)
    pub = make_service("press")
    async with sub.running(), pub.running():
        await pub.publish("news", UserCreated(1, "a"))
        await _until(lambda: first == [1] and second == [1])
        assert await sub.unsubscribe("news", one) == 1
        await pub.publish("news", UserCreated(2, "b"))
        await _until(lambda: second == [1, 2])
        assert await sub.unsubscribe("news") == 1
        assert await sub.unsubscribe("news") == 0  # nothing left: not an error
        if isinstance(pub.broker, HttpBroker):
            with pytest.raises(micro.NotFound):
                await registry.get_service(topic_service("news"))
        await pub.publish("news", UserCreated(3, "c"))
        if isinstance(pub.broker, NatsBroker) and not pub.broker.confirm:
            # Unconfirmed, publish returned with message 3 perhaps still on its way
            # to the server: let it arrive before subscribing again.
            await pub.broker.client.flush()
        # Subscribing again works (the publisher may learn of it a moment later).
        await sub.subscribe_now("news", two)
        with anyio.fail_after(10):
            while second[-1] != 4:
                await pub.publish("news", UserCreated(4, "d"))
                await anyio.sleep(0.05)
    assert first == [1]
    assert second[:2] == [1, 2]
    assert set(second[2:]) == {4}  # message 3 went to nobody


async def test_http_publish_skips_a_subscription_that_has_just_ended(
    registry: MemoryRegistry,
) -> None:
    """The registry (or a publisher's cache of it) can still list a subscription that
    ended a moment ago: that node is no subscriber now, and publishing is no error."""
    got: list[int] = []
    sub = micro.Service("present", address="127.0.0.1:0", registry=registry, broker="http")

    @sub.subscriber("mixed")
    async def handle(event: UserCreated) -> None:
        got.append(event.id)

    pub = micro.Service("writer", address="127.0.0.1:0", registry=registry, broker="http")
    async with sub.running(), pub.running():
        ghost = ServiceRecord(
            topic_service("mixed"),
            nodes=(Node("ghost", sub.address, {"subscription": "ended-long-ago"}),),
        )
        await registry.register(ghost)
        await pub.publish("mixed", UserCreated(1, "a"))  # to the live one; the ghost skipped
        await _until(lambda: got == [1])
        await registry.register(
            ServiceRecord(
                topic_service("lonely"),
                nodes=(Node("ghost2", sub.address, {"subscription": "gone"}),),
            )
        )
        await pub.publish("lonely", UserCreated(2, "b"))  # only a ghost: nobody to tell


async def test_subscribe_while_running(make_service: Factory) -> None:
    got: list[int] = []
    svc = make_service("late")
    async with svc.running():

        async def handle(event: UserCreated) -> None:
            got.append(event.id)

        await svc.subscribe_now("late.topic", handle)
        await svc.publish("late.topic", UserCreated(5, "e"))
        await _until(lambda: got == [5])
        with pytest.raises(RuntimeError, match="subscribe_now"):
            svc.subscribe("other", handle)


async def test_http_publish_to_unreachable_group_fails(registry: MemoryRegistry) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    dead = ServiceRecord(
        topic_service("orders"),
        nodes=(Node("sub1", f"127.0.0.1:{port}", {"queue": "billing", "subscription": "s1"}),),
    )
    await registry.register(dead)
    pub = micro.Service("pub3", address="127.0.0.1:0", registry=registry, broker="http")
    async with pub.running():
        with pytest.raises(PublishError, match="queue group billing"):
            await pub.publish("orders", {"id": 1})


async def test_http_group_fails_over_to_a_live_member(registry: MemoryRegistry) -> None:
    got: list[int] = []
    live = micro.Service("billing", address="127.0.0.1:0", registry=registry, broker="http")

    @live.subscriber("orders2", queue="billing")
    async def bill(event: UserCreated) -> None:
        got.append(event.id)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    dead = ServiceRecord(
        topic_service("orders2"),
        nodes=(Node("dead", f"127.0.0.1:{port}", {"queue": "billing", "subscription": "x"}),),
    )
    await registry.register(dead)
    pub = micro.Service("pub4", address="127.0.0.1:0", registry=registry, broker="http")
    async with live.running(), pub.running():
        for i in range(10):
            await pub.publish("orders2", UserCreated(i, "o"))
        await _until(lambda: len(got) == 10)
    assert sorted(got) == list(range(10))


async def test_http_busy_subscriber_refuses_after_the_configured_wait(
    registry: MemoryRegistry,
) -> None:
    release = anyio.Event()
    got: list[int] = []
    sub = micro.Service(
        "slow", address="127.0.0.1:0", registry=registry, broker="http?buffer=1&accept_timeout=0.2"
    )

    @sub.subscriber("jobs")
    async def handle(event: UserCreated) -> None:
        got.append(event.id)
        await release.wait()

    pub = micro.Service("eager", address="127.0.0.1:0", registry=registry, broker="http")
    async with sub.running(), pub.running():
        async with anyio.create_task_group() as tg:
            # Answered only once handled: this publish waits for the release below.
            tg.start_soon(pub.publish, "jobs", UserCreated(1, "taken"))
            await _until(lambda: got == [1])
            with pytest.raises(PublishError, match="busy with 1 messages"):
                await pub.publish("jobs", UserCreated(2, "refused"))
            release.set()
        await pub.publish("jobs", UserCreated(3, "room again"))
        assert got == [1, 3]  # publish returned: the handler has run
    with pytest.raises(ValueError, match="unknown HTTP broker option 'buffr'"):
        micro.Service("typo", registry=registry, broker="http?buffr=1")


async def test_memory_slow_subscriber_bounds_the_handlers_running() -> None:
    broker = MemoryBroker(buffer=4, publish_timeout=0.3)
    release = anyio.Event()
    started = 0
    refused = 0

    async def slow(message: Message) -> None:
        nonlocal started
        started += 1
        await release.wait()

    async def publish() -> None:
        nonlocal refused
        try:
            await broker.publish(Message("t", b"x"))
        except PublishError:
            refused += 1

    async with anyio.create_task_group() as tg:
        await tg.start(broker.subscribe, "t", slow)
        async with anyio.create_task_group() as publishers:
            for _ in range(10):
                publishers.start_soon(publish)
        assert started == 4  # the handlers running at once, never more
        assert refused == 10  # none was handled within publish_timeout
        release.set()
        await broker.publish(Message("t", b"y"))  # handled: returns
        tg.cancel_scope.cancel()


async def test_client_publish(registry: MemoryRegistry) -> None:
    got: list[int] = []
    sub = micro.Service("csub", address="127.0.0.1:0", registry=registry, broker="http")

    @sub.subscriber("from.client")
    async def handle(event: UserCreated) -> None:
        got.append(event.id)

    async with sub.running(), micro.Client(registry=registry) as client:
        await client.publish("from.client", UserCreated(9, "c"))
        await _until(lambda: got == [9])
