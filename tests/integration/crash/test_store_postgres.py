"""The PostgreSQL store against a frozen server (SIGSTOP), not a stopped one.

Contract: a server that holds connections open but never answers does not
block a store call for longer than the store's timeout; the call raises
StoreUnavailable naming the timeout, the stuck connection is dropped, and once
the server runs again (SIGCONT) calls succeed. The postmaster and the backend
processes it forked are all stopped, as a frozen machine or VM would be.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import anyio
import pytest

from micro.store import PostgresStore, Record
from tests.integration.store_calls import all_time_out, write_once_back
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio

#: the store's timeout in these tests, in seconds
TIMEOUT = 2.0
#: the most a call may take when the server is frozen: the timeout, and slack for a busy machine
BOUND = TIMEOUT + 8


def _tree(pid: int) -> list[int]:
    """``pid`` and the processes it started (PostgreSQL's backends), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue += children.get(current, [])
    return found


@contextmanager
def _frozen(server: ServerProcess) -> Iterator[None]:
    """The server and its backends stopped with SIGSTOP, and continued on leaving."""
    assert server.pid is not None
    pids = _tree(server.pid)
    assert len(pids) > 1, "postgres has no backend processes"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


async def test_a_frozen_server_is_a_timeout_not_a_hang(
    fresh_postgres_server: ServerProcess,
) -> None:
    url = f"{fresh_postgres_server.url}?timeout={TIMEOUT:g}s"
    async with PostgresStore(url) as store:
        assert store.timeout == TIMEOUT
        await store.write(Record("before", b"1"))
        async with anyio.create_task_group() as tg:  # connections open in the pool
            for _ in range(8):
                tg.start_soon(store.read, "before")
        with _frozen(fresh_postgres_server):
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: store.read("before"),
                lambda: store.write(Record("during", b"2")),
                lambda: store.list(prefix="b"),
                lambda: store.delete("before"),
                lambda: store.sweep_all(),
            ]
            # Each kind of call at once (one timeout's wait for all of them).
            for detail in await all_time_out(calls, BOUND):
                assert f"did not answer within {TIMEOUT:g} s" in detail, detail
                assert fresh_postgres_server.url.split("@")[1].split("?")[0] in detail, detail

            # Callers of one kind at once: each fails within the bound too.
            readers = [partial(store.read, f"k{n}", prefix=True) for n in range(6)]
            details = await all_time_out(readers, BOUND)
            assert all("did not answer" in d for d in details), details

        # Running again: calls succeed (a bounded wait for the server to catch up).
        await write_once_back(store, Record("after", b"3"))
        with anyio.fail_after(30):
            assert await store.read("before") == [Record("before", b"1")]
            assert await store.list() == ["after", "before"]
            for _ in range(20):  # no dropped connection is handed out again
                assert len(await store.read("", prefix=True)) == 2
