"""The file store is opened by its first user and closed after its last, however they overlap."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from micro.store.base import Record
from micro.store.file import FileStore

pytestmark = pytest.mark.anyio


async def test_users_entering_at_once_share_one_opening(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store.db")
    entered = 0
    release = anyio.Event()
    writers: list[object] = []

    async def user() -> None:
        nonlocal entered
        async with store:
            entered += 1
            writers.append(store._writer)
            await release.wait()

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(user)
        with anyio.fail_after(10):
            while entered < 5:
                await anyio.sleep(0.01)
        assert store._users.count == 5
        writer = store._writer
        assert writer is not None
        assert all(w is writer for w in writers)  # opened once, by the first
        await store.write(Record("k", b"v"))
        release.set()
    assert store._users.count == 0
    assert store._writer is None
    with pytest.raises(Exception, match="closed"):
        writer.execute("select 1")


async def test_a_user_arriving_while_the_last_closes_opens_it_anew(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store.db")
    reopened = anyio.Event()

    async def arrive_while_closing() -> None:
        with anyio.fail_after(10):
            while store._closing is None:
                await anyio.lowlevel.checkpoint()
        async with store:
            assert store._writer is not None
            assert (await store.read("k"))[0].value == b"v"
            reopened.set()

    async with anyio.create_task_group() as tg, store:
        await store.write(Record("k", b"v"))
        tg.start_soon(arrive_while_closing)
    assert reopened.is_set()
    assert store._users.count == 0


async def test_a_failed_opening_counts_no_user_and_the_next_tries_again(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = FileStore(blocker / "store.db")
    for _ in range(2):
        with pytest.raises(Exception, match="not-a-directory"):
            async with store:
                pass
        assert store._users.count == 0
    blocker.unlink()
    blocker.mkdir()
    async with store:
        await store.write(Record("k", b"v"))
