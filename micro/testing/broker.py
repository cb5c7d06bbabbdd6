"""A conformance suite every Broker runs, backends of micro's and users' alike.

``await check_broker(factory)`` runs every check; ``BROKER_CHECKS`` names them
one by one for a test per check. ``factory`` makes a new, unopened broker;
each check opens it with ``async with``, subscribes in its own task group and
publishes on topics no other check (or run) uses, so a shared broker server
needs no cleanup between checks. Deliveries are awaited with bounded polls,
so a broker whose ``publish`` returns before delivery (NATS) passes as one
that returns after it (memory, http).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import anyio
import anyio.abc

from ..broker.base import Broker, Message

__all__ = [
    "BROKER_CHECKS",
    "BrokerFactory",
    "check_broker",
    "check_publish_and_subscribe",
    "check_broadcast_and_queue_groups",
    "check_failing_handler_keeps_the_subscription",
    "check_publish_without_subscribers",
    "check_cancelled_subscription_stops",
    "check_topics_are_separate",
]

BrokerFactory = Callable[[], Broker]

#: seconds to wait for deliveries that must come
DELIVERY_TIMEOUT = 10.0
#: seconds between polls for deliveries
POLL_INTERVAL = 0.01


def unique_topic(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


async def _until(done: Callable[[], bool], what: str) -> None:
    try:
        with anyio.fail_after(DELIVERY_TIMEOUT):
            while True:
                if done():
                    return
                await anyio.sleep(POLL_INTERVAL)
    except TimeoutError:
        raise AssertionError(f"{what} within {DELIVERY_TIMEOUT:g}s") from None


@asynccontextmanager
async def _subscriptions() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group for a check's subscriptions, cancelled at the end of the block; a
    failed check raises its AssertionError itself, not inside an exception group."""
    try:
        async with anyio.create_task_group() as tg:
            yield tg
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        failures = [e for e in group.exceptions if isinstance(e, AssertionError)]
        if len(failures) == len(group.exceptions) == 1:
            raise failures[0] from None
        raise


def _collector(into: list[Message]) -> Callable[[Message], Awaitable[None]]:
    async def handler(message: Message) -> None:
        into.append(message)

    return handler


async def check_publish_and_subscribe(factory: BrokerFactory) -> None:
    """A subscriber gets the message's topic, body, headers and id as published."""
    topic = unique_topic("pubsub")
    got: list[Message] = []
    async with factory() as broker, _subscriptions() as tg:
        await tg.start(broker.subscribe, topic, _collector(got))
        sent = Message(topic, b"\x00hello\xff", {"content-type": "application/octet-stream"})
        await broker.publish(sent)
        await _until(lambda: len(got) >= 1, "the subscriber got the message")
        message = got[0]
        assert message.topic == topic, message
        assert message.body == sent.body, message
        assert message.headers.get("content-type") == "application/octet-stream", message
        assert message.id == sent.id, message


async def check_broadcast_and_queue_groups(factory: BrokerFactory) -> None:
    """Every subscriber without a queue gets every message; each message goes to one
    member of a queue group."""
    topic = unique_topic("groups")
    first: list[Message] = []
    second: list[Message] = []
    group: list[Message] = []
    count = 10
    async with factory() as broker, _subscriptions() as tg:
        await tg.start(broker.subscribe, topic, _collector(first))
        await tg.start(broker.subscribe, topic, _collector(second))
        for _ in range(2):
            await tg.start(partial(broker.subscribe, topic, _collector(group), queue="workers"))
        for i in range(count):
            await broker.publish(Message(topic, str(i).encode()))
        await _until(
            lambda: len(first) >= count and len(second) >= count and len(group) >= count,
            f"both subscribers and the queue group got all {count} messages",
        )
        assert sorted(int(m.body) for m in first) == list(range(count)), first
        assert sorted(int(m.body) for m in second) == list(range(count)), second
        assert sorted(int(m.body) for m in group) == list(range(count)), (
            f"the queue group got {len(group)} deliveries of {count} messages"
        )


async def check_failing_handler_keeps_the_subscription(factory: BrokerFactory) -> None:
    """A handler that raises is reported to ``on_error`` with its message, and the
    subscription goes on with the next message."""
    topic = unique_topic("failing")
    errors: list[tuple[Message, BaseException]] = []
    got: list[Message] = []

    async def handler(message: Message) -> None:
        if message.body == b"bad":
            raise ValueError("this handler refuses bad messages")
        got.append(message)

    async def on_error(message: Message, exc: BaseException) -> None:
        errors.append((message, exc))

    async with factory() as broker, _subscriptions() as tg:
        await tg.start(partial(broker.subscribe, topic, handler, on_error=on_error))
        try:
            await broker.publish(Message(topic, b"bad"))
        except Exception:  # brokers that confirm handling may report the failure here
            pass
        await broker.publish(Message(topic, b"good"))
        await _until(lambda: bool(got) and bool(errors), "the error and the next message")
        assert [m.body for m in got] == [b"good"], got
        assert errors[0][0].body == b"bad", errors
        assert isinstance(errors[0][1], ValueError), errors


async def check_publish_without_subscribers(factory: BrokerFactory) -> None:
    """Publishing to a topic nobody subscribes to returns without error."""
    async with factory() as broker:
        with anyio.fail_after(DELIVERY_TIMEOUT):
            await broker.publish(Message(unique_topic("nobody"), b"x"))


async def check_cancelled_subscription_stops(factory: BrokerFactory) -> None:
    """Once its task is cancelled a subscription gets nothing more, and publishing goes on."""
    topic = unique_topic("cancelled")
    gone: list[Message] = []
    kept: list[Message] = []
    async with factory() as broker, _subscriptions() as tg:
        await tg.start(broker.subscribe, topic, _collector(kept))
        async with anyio.create_task_group() as inner:
            await inner.start(broker.subscribe, topic, _collector(gone))
            await broker.publish(Message(topic, b"1"))
            await _until(lambda: len(gone) >= 1 and len(kept) >= 1, "both subscribers got it")
            inner.cancel_scope.cancel()
        await broker.publish(Message(topic, b"2"))
        await _until(lambda: len(kept) >= 2, "the remaining subscriber got the second message")
        assert [m.body for m in gone] == [b"1"], gone


async def check_topics_are_separate(factory: BrokerFactory) -> None:
    """A subscriber gets its topic's messages only."""
    mine, other = unique_topic("mine"), unique_topic("other")
    got: list[Message] = []
    async with factory() as broker, _subscriptions() as tg:
        await tg.start(broker.subscribe, mine, _collector(got))
        await broker.publish(Message(other, b"not for you"))
        await broker.publish(Message(mine, b"for you"))
        await _until(lambda: len(got) >= 1, "the subscriber got its message")
        assert [m.body for m in got] == [b"for you"], got


BROKER_CHECKS: dict[str, Callable[[BrokerFactory], Awaitable[None]]] = {
    "publish_and_subscribe": check_publish_and_subscribe,
    "broadcast_and_queue_groups": check_broadcast_and_queue_groups,
    "failing_handler_keeps_the_subscription": check_failing_handler_keeps_the_subscription,
    "publish_without_subscribers": check_publish_without_subscribers,
    "cancelled_subscription_stops": check_cancelled_subscription_stops,
    "topics_are_separate": check_topics_are_separate,
}


async def check_broker(factory: BrokerFactory) -> None:
    """Run every check against brokers made by ``factory``; raises AssertionError."""
    for check in BROKER_CHECKS.values():
        await check(factory)
