"""A service's subscriptions: typed functions run as supervised parts on a broker."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest

from micro.broker.base import Handler, Message
from micro.broker.memory import MemoryBroker
from micro.broker.subscriptions import Subscriptions
from micro.message import encode
from micro.supervisor import Supervisor

pytestmark = pytest.mark.anyio


@dataclass
class Order:
    id: int


async def test_a_function_gets_the_decoded_value_through_observe() -> None:
    broker = MemoryBroker()
    observed: list[tuple[str, str | None]] = []

    def observe(topic: str, queue: str | None, handler: Handler) -> Handler:
        async def counted(message: Message) -> None:
            observed.append((topic, queue))
            await handler(message)

        return counted

    got: list[Order] = []

    async def on_order(order: Order) -> None:
        got.append(order)

    subscriptions = Subscriptions(broker, observe=observe)
    subscriptions.add("orders", on_order, queue="billing")
    assert len(subscriptions) == 1
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(tg)
        await subscriptions.start(supervisor)
        await broker.publish(encode("orders", Order(7)))
        assert got == [Order(7)]
        assert observed == [("orders", "billing")]
        assert supervisor.parts["subscriber orders"].state == "running"
        await subscriptions.stop()
        assert supervisor.parts["subscriber orders"].state == "stopped"


async def test_one_added_while_running_takes_messages_until_removed() -> None:
    broker = MemoryBroker()
    first: list[int] = []
    second: list[int] = []

    async def one(value: int) -> None:
        first.append(value)

    async def two(value: int, message: Message) -> None:
        assert message.topic == "numbers"
        second.append(value)

    subscriptions = Subscriptions(broker)
    async with anyio.create_task_group() as tg:
        await subscriptions.start(Supervisor(tg))
        await subscriptions.add_now("numbers", one)
        await subscriptions.add_now("numbers", two)
        await broker.publish(encode("numbers", 1))
        assert await subscriptions.remove("numbers", one) == 1
        await broker.publish(encode("numbers", 2))
        assert await subscriptions.remove("numbers") == 1
        assert await subscriptions.remove("numbers") == 0
        await broker.publish(encode("numbers", 3))
        await subscriptions.stop()
    assert first == [1]
    assert second == [1, 2]
    assert len(subscriptions) == 0


async def test_one_removed_before_the_start_never_subscribes() -> None:
    broker = MemoryBroker()
    got: list[int] = []

    async def on_number(value: int) -> None:
        got.append(value)

    subscriptions = Subscriptions(broker)
    subscriptions.add("numbers", on_number)
    assert await subscriptions.remove("numbers", on_number) == 1
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(tg)
        await subscriptions.start(supervisor)
        await broker.publish(encode("numbers", 1))
        await subscriptions.stop()
    assert got == []
    assert supervisor.parts == {}


async def test_bad_functions_and_a_late_add_are_refused() -> None:
    subscriptions = Subscriptions(MemoryBroker())

    def not_async(value: int) -> None:
        return None

    with pytest.raises(TypeError, match="must be an async function"):
        subscriptions.add("numbers", not_async)
    assert len(subscriptions) == 0

    async def on_number(value: int) -> None:
        return None

    with pytest.raises(RuntimeError, match="not running"):
        await subscriptions.add_now("numbers", on_number)
