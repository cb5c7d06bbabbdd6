"""The sweeps a PostgreSQL or S3 store's writes make: once per interval per table,
and a failed one logged, never raised to the writer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest

from micro.store import StoreUnavailable
from micro.store.sweeper import WriteSweeps

pytestmark = pytest.mark.anyio


async def test_each_table_is_swept_at_most_once_per_interval() -> None:
    swept: list[str] = []
    sweeps = WriteSweeps("test", interval=3600.0)

    def sweep_of(table: str) -> Callable[[], Awaitable[int]]:
        async def sweep() -> int:
            swept.append(table)
            return 0

        return sweep

    for table in ["a", "b", "a", "b", "a"]:
        await sweeps.after_write(table, sweep_of(table))
    assert swept == ["a", "b"]


async def test_a_failed_sweep_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    sweeps = WriteSweeps("test", interval=3600.0)

    async def sweep() -> int:
        raise StoreUnavailable("the server is down")

    with caplog.at_level(logging.WARNING, logger="micro.store.sweeper"):
        await sweeps.after_write("t", sweep)
    assert "sweeping t in the test store after a write failed" in caplog.text
    assert "the server is down" in caplog.text
