"""The events and timeouts of hot paths (the NATS client's), made for the running loop."""

from __future__ import annotations

import anyio
import pytest

from micro.transport.primitives import event_factory, timeout_factory

pytestmark = pytest.mark.anyio


async def test_set_wakes_every_waiter_and_later_waits_return_at_once() -> None:
    event = event_factory()()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await event.wait()
        woken.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(waiter, n)
        await anyio.wait_all_tasks_blocked()
        assert not event.is_set() and woken == []
        event.set()
        event.set()  # a second set changes nothing
    assert event.is_set() and sorted(woken) == [0, 1, 2]
    with anyio.fail_after(5):
        await event.wait()


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    event = event_factory()()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await event.wait()
        woken.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "kept")
        async with anyio.create_task_group() as inner:
            inner.start_soon(waiter, "cancelled")
            await anyio.wait_all_tasks_blocked()
            inner.cancel_scope.cancel()
        event.set()
    assert woken == ["kept"]


async def test_a_timeout_leaves_its_block() -> None:
    reached = False
    with timeout_factory()(0.01):
        await anyio.sleep_forever()
        reached = True
    assert not reached
