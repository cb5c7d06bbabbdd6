"""What the store backends' integration tests check the same way: every call of
a store that cannot reach its server fails with a clear StoreUnavailable, and
``micro store`` gets, puts, lists and deletes records a service stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from micro.store import Record, Store, StoreUnavailable


async def all_calls_fail(store: Store, where: str) -> list[str]:
    """Every kind of call raises StoreUnavailable (within 15 s) whose detail holds
    ``where``; returns the details."""
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.write(Record("k", b"v")),
        lambda: store.write(Record("k", b"v"), ttl=5),
        lambda: store.read("k"),
        lambda: store.read("k", prefix=True),
        lambda: store.list(),
        lambda: store.delete("k"),
    ]
    details = []
    for call in calls:
        with anyio.fail_after(15), pytest.raises(StoreUnavailable) as caught:
            await call()
        assert where in caught.value.detail, caught.value
        details.append(caught.value.detail)
    return details


async def all_time_out(calls: list[Callable[[], Awaitable[object]]], bound: float) -> list[str]:
    """Make the calls at once (one timeout's wait for all); each raises StoreUnavailable
    within ``bound`` seconds: returns their details."""
    details: list[str] = []

    async def times_out(call: Callable[[], Awaitable[object]]) -> None:
        with pytest.raises(StoreUnavailable) as caught:
            await call()
        details.append(caught.value.detail)

    with anyio.fail_after(bound):
        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(times_out, call)
    assert len(details) == len(calls)
    return details


async def check_cli_round_trip(cli: Callable[..., tuple[int, str]]) -> None:
    """``cli(*args)`` runs ``micro store *args`` on a store holding ``user/1`` = alice
    and returns (exit code, stdout); afterwards the store holds only ``user/2``."""
    assert await anyio.to_thread.run_sync(cli, "get", "user/1") == (0, "alice\n")
    assert (await anyio.to_thread.run_sync(cli, "put", "user/2", "bob"))[0] == 0
    assert await anyio.to_thread.run_sync(cli, "list", "--prefix", "user/") == (
        0,
        "user/1\nuser/2\n",
    )
    assert (await anyio.to_thread.run_sync(cli, "delete", "user/1"))[0] == 0


async def write_once_back(store: Store, record: Record) -> None:
    """Write ``record`` as soon as the store's server answers again (within 30 s)."""
    with anyio.fail_after(30):
        while True:
            try:
                await store.write(record)
                return
            except StoreUnavailable:
                await anyio.sleep(0.2)
