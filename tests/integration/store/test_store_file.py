"""The file store on its own: reopening, and files it cannot use.

Its durability across SIGKILL and several processes on one file are tested in
``tests/integration/crash/test_file_store.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from micro.store import FileStore, Record, StoreUnavailable, from_url
from micro.store.file import default_path

pytestmark = pytest.mark.anyio


async def test_records_outlive_the_store_and_ttl_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dirs" / "store.db"  # parents are made
    async with FileStore(path) as store:
        await store.write(Record("kept", b"1", {"a": 1}))
        await store.write(Record("short", b"2"), ttl=0.2)
        await store.write(Record("long", b"3"), ttl=60)
    await anyio.sleep(0.25)  # let "short" expire while closed
    async with FileStore(path) as store:
        assert await store.list() == ["kept", "long"]
        [long] = await store.read("long")
        assert long.expiry is not None


async def test_from_url_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if sys.platform.startswith("linux"):
        assert default_path() == tmp_path / "data" / "micro" / "store.db"
    store = from_url("file")
    assert isinstance(store, FileStore) and store.path == default_path()
    absolute = from_url(f"file://{tmp_path}/a.db")
    assert isinstance(absolute, FileStore) and absolute.path == tmp_path / "a.db"
    relative = from_url("file://rel/b.db")
    assert isinstance(relative, FileStore) and relative.path == Path("rel/b.db")
    async with store:
        await store.write(Record("k", b"v"))
    assert (tmp_path / "data" / "micro" / "store.db").exists()


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailable) as caught:
        async with FileStore(path):
            pass
    assert str(path) in caught.value.detail


async def test_a_path_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(StoreUnavailable) as caught:
        async with FileStore(blocker / "store.db"):
            pass
    assert "cannot be opened" in caught.value.detail


async def test_cancelled_writers_write_nothing_and_others_go_on(tmp_path: Path) -> None:
    async with FileStore(tmp_path / "s.db") as store:
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(store.write, Record(f"k{n:02d}", b"v"))
            tg.cancel_scope.cancel()  # before any write had a chance to queue
        assert await store.list() == []
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(store.write, Record(f"k{n:02d}", b"v"))
        assert len(await store.list()) == 50
