"""The file store on its own: durability across SIGKILL, several processes on one
file, reopening, and files it cannot use.

Child processes run this module (``python -m tests.integration.test_store_file``):
``ack PATH BACKEND`` writes records forever with many writes in flight,
printing each key once its write has returned; ``batch PATH BACKEND NAME N``
writes N records and exits.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest

from micro.store import FileStore, Record, StoreUnavailable, from_url
from micro.store.file import default_path

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
#: acknowledged writes to wait for before the child is killed
ACKED_BEFORE_KILL = 300


def _value(key: str) -> bytes:
    return f"value of {key}".encode() * 8


async def _spawn(*args: str) -> anyio.abc.Process:
    return await anyio.open_process(
        [sys.executable, "-m", "tests.integration.test_store_file", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=None,
    )


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path, anyio_backend: str) -> None:
    path = tmp_path / "store.db"
    process = await _spawn("ack", str(path), anyio_backend)
    assert process.stdout is not None
    acked: list[str] = []
    buffer = b""
    try:
        with anyio.fail_after(30):
            while len(acked) < ACKED_BEFORE_KILL:
                buffer += await process.stdout.receive()
                *lines, buffer = buffer.split(b"\n")
                acked.extend(line.decode() for line in lines)
        assert process.returncode is None, "the writer stopped before it was killed"
        process.send_signal(signal.SIGKILL)
        # Lines printed before the kill are acknowledged writes too.
        with anyio.fail_after(10):
            async for chunk in process.stdout:
                buffer += chunk
        acked.extend(line.decode() for line in buffer.split(b"\n")[:-1])
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.fail_after(10):
            await process.wait()
    # -9, or 255 when asyncio's child watcher finds the killed child already reaped
    assert process.returncode != 0

    async with FileStore(path) as store:
        stored = set(await store.list())
        missing = [key for key in acked if key not in stored]
        assert not missing, (
            f"{len(missing)} of {len(acked)} acknowledged writes lost: {missing[:5]}"
        )
        for key in acked[:: max(1, len(acked) // 50)]:
            [record] = await store.read(key)
            assert record.value == _value(key)


async def test_processes_writing_one_file_do_not_corrupt_it(
    tmp_path: Path, anyio_backend: str
) -> None:
    path = tmp_path / "shared.db"
    writers, count = 3, 150
    processes = [
        await _spawn("batch", str(path), anyio_backend, f"p{n}", str(count)) for n in range(writers)
    ]
    with anyio.fail_after(60):
        for process in processes:
            await process.wait()
    assert [p.returncode for p in processes] == [0] * writers

    async with FileStore(path) as store:
        keys = await store.list()
        expected = sorted(f"p{n}-{i:04d}" for n in range(writers) for i in range(count))
        assert [k for k in keys if k != "shared"] == expected
        [shared] = await store.read("shared")
        assert shared.value in {f"p{n}".encode() for n in range(writers)}
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


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


# -- child processes --


async def _ack(path: str) -> None:
    async with FileStore(path) as store:

        async def writer(n: int) -> None:
            i = 0
            while True:
                key = f"w{n:02d}-{i:06d}"
                await store.write(Record(key, _value(key)))
                sys.stdout.write(key + "\n")
                sys.stdout.flush()
                i += 1

        async with anyio.create_task_group() as tg:
            for n in range(16):
                tg.start_soon(writer, n)


async def _batch(path: str, name: str, count: int) -> None:
    async with FileStore(path) as store:

        async def writer(start: int) -> None:
            for i in range(start, count, 8):
                await store.write(Record(f"{name}-{i:04d}", b"v"))
                await store.write(Record("shared", name.encode()))

        async with anyio.create_task_group() as tg:
            for start in range(8):
                tg.start_soon(writer, start)


if __name__ == "__main__":
    mode, path, backend, *rest = sys.argv[1:]
    if mode == "ack":
        anyio.run(_ack, path, backend=backend)
    else:
        anyio.run(_batch, path, rest[0], int(rest[1]), backend=backend)
