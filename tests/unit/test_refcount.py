"""micro.refcount.Users: opened by the first user, closed after the last, never twice at once."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from micro.refcount import Users

pytestmark = pytest.mark.anyio


class Resource:
    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.gate = anyio.Event()

    async def open(self) -> None:
        self.opened += 1
        await self.gate.wait()  # opening takes a while: others arrive meanwhile

    async def close(self) -> None:
        self.closed += 1
        await anyio.lowlevel.checkpoint()


async def test_users_arriving_while_the_first_opens_wait_for_it() -> None:
    users, res = Users(), Resource()
    firsts: list[bool] = []

    async def enter() -> None:
        firsts.append(await users.enter(res.open))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(enter)
        await anyio.wait_all_tasks_blocked()
        res.gate.set()
    assert res.opened == 1 and users.count == 5
    assert sorted(firsts) == [False, False, False, False, True]
    for _ in range(5):
        await users.exit(res.close)
    assert res.closed == 1 and not users.open


async def test_a_user_arriving_while_the_last_closes_opens_it_again() -> None:
    users, res = Users(), Resource()
    res.gate.set()
    await users.enter(res.open)
    closing = anyio.Event()

    async def close() -> None:
        res.closed += 1
        await closing.wait()  # still closing when the next user arrives

    async with anyio.create_task_group() as tg:
        tg.start_soon(users.exit, close)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(users.enter, res.open)
        await anyio.wait_all_tasks_blocked()
        assert res.opened == 1  # waits for the close to finish
        closing.set()
    assert (res.opened, res.closed, users.count) == (2, 1, 1)


async def test_a_failed_open_counts_nobody_and_the_next_user_tries_again() -> None:
    users = Users()

    async def broken() -> None:
        raise OSError("unreachable")

    with pytest.raises(OSError):
        await users.enter(broken)
    assert users.count == 0
    res = Resource()
    res.gate.set()
    assert await users.enter(res.open) is True


async def test_exiting_more_than_entering_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        await Users().exit()
