"""The file store under SIGKILL, and several processes writing one file.

Contract: a write that returned is on disk; a process killed at any moment
loses none of them and leaves the file usable.

Child processes run this module (``python -m tests.integration.crash.test_file_store``):
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
import anyio.abc
import pytest

from micro.store import FileStore, Record

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
#: acknowledged writes to wait for before the child is killed
ACKED_BEFORE_KILL = 300


def _value(key: str) -> bytes:
    return f"value of {key}".encode() * 8


async def _spawn(*args: str) -> anyio.abc.Process:
    return await anyio.open_process(
        [sys.executable, "-m", "tests.integration.crash.test_file_store", *args],
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
