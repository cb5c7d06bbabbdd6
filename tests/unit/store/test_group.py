"""Batching (micro/store/_group.py): grouping, limits, cancellation, errors."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from micro.store._group import Batcher, Pending

pytestmark = pytest.mark.anyio


class Recorder:
    """A commit function that records each group; the first commit waits for ``gate``."""

    def __init__(self, *, hold_first: bool = True) -> None:
        self.groups: list[list[str]] = []
        self.gate = anyio.Event()
        self.started = anyio.Event()
        self._hold = hold_first

    async def __call__(self, group: list[Pending[str, None]]) -> None:
        if self._hold:
            self._hold = False
            self.started.set()
            await self.gate.wait()
        self.groups.append([p.item for p in group])
        for pending in group:
            if pending.item.startswith("bad"):
                pending.fail(ValueError(pending.item))
            else:
                pending.finish()


async def _wait_until_queued(group: Batcher[str, None], count: int) -> None:
    with anyio.fail_after(5):
        while len(group._queue) < count:
            await anyio.lowlevel.checkpoint()


async def test_writes_arriving_during_a_commit_go_in_the_next_one() -> None:
    commit = Recorder()
    group = Batcher(commit, max_items=100, max_bytes=1000)
    async with anyio.create_task_group() as tg:
        tg.start_soon(group.submit, "first")
        await commit.started.wait()
        for n in range(10):
            tg.start_soon(group.submit, f"w{n}")
        await _wait_until_queued(group, 10)
        commit.gate.set()
    first, second = commit.groups
    assert first == ["first"] and sorted(second) == [f"w{n}" for n in range(10)], commit.groups


async def test_groups_end_at_the_item_byte_and_duplicate_key_limits() -> None:
    commit = Recorder()
    group = Batcher(commit, max_items=3, max_bytes=10, key=lambda item: item[0])
    items = [("a1", 1), ("b1", 1), ("c1", 1), ("d1", 1), ("e1", 9), ("f1", 2), ("g1", 50)]
    items += [("h1", 1), ("h2", 1), ("i1", 1)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(group.submit, "first")
        await commit.started.wait()
        for item, size in items:
            tg.start_soon(group.submit, item, size)
            await _wait_until_queued(group, len(group._queue) + 1)
        commit.gate.set()
    assert commit.groups == [
        ["first"],
        ["a1", "b1", "c1"],  # three items
        ["d1", "e1"],  # ten bytes
        ["f1"],
        ["g1"],  # one item over the byte limit goes alone
        ["h1"],  # a second write of one key ("h2") starts a new group
        ["h2", "i1"],
    ]


async def test_a_writer_cancelled_while_queued_writes_nothing() -> None:
    commit = Recorder()
    group = Batcher(commit, max_items=100, max_bytes=1000)
    async with anyio.create_task_group() as tg:
        tg.start_soon(group.submit, "first")
        await commit.started.wait()
        with anyio.CancelScope() as scope:
            tg.start_soon(group.submit, "kept")
            async with anyio.create_task_group() as inner:
                inner.start_soon(group.submit, "cancelled")
                await _wait_until_queued(group, 2)
                scope.cancel()
        commit.gate.set()
    assert commit.groups == [["first"], ["kept"]]


async def test_a_committer_cancelled_before_committing_hands_the_queue_on() -> None:
    commit = Recorder()
    group = Batcher(commit, max_items=100, max_bytes=1000)
    outcome: list[str] = []

    async def committer() -> None:
        try:
            await group.submit("cancelled")
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as inner:
                inner.start_soon(committer)
                await commit.started.wait()
                tg.start_soon(group.submit, "waiting")
                await _wait_until_queued(group, 1)
                scope.cancel()
    assert outcome == ["cancelled"]
    assert commit.groups == [["waiting"]]  # the cancelled commit never recorded its group


async def test_each_writer_gets_its_own_outcome() -> None:
    group = Batcher(Recorder(hold_first=False), max_items=100, max_bytes=1000)
    await group.submit("good")
    with pytest.raises(ValueError, match="bad-one"):
        await group.submit("bad-one")


async def test_a_failing_commit_function_fails_its_whole_group() -> None:
    async def broken(group: list[Pending[str, None]]) -> None:
        raise RuntimeError("bug")

    group = Batcher(broken, max_items=100, max_bytes=1000)
    with pytest.raises(RuntimeError, match="bug"):
        await group.submit("x")
    await group.wait_idle()
