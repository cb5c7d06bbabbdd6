"""The S3 store against a frozen server (SIGSTOP of moto's process), not a stopped one.

Contract: a server that accepts connections but never answers does not block
a store call for longer than the store's timeout (its retries included); the
call raises StoreUnavailable naming the timeout, and once the server runs
again (SIGCONT) calls succeed.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Awaitable, Callable

import anyio
import pytest

from micro.store import Record, S3Store
from tests.integration.store_calls import all_time_out, write_once_back
from tests.servers import ServerProcess
from tests.servers_s3 import s3_url

pytestmark = pytest.mark.anyio

#: the store's timeout in these tests, in seconds
TIMEOUT = 2.0
#: the most a call may take when the server is frozen: the timeout, and slack for a busy machine
BOUND = TIMEOUT + 8


async def test_a_frozen_server_is_a_timeout_not_a_hang(fresh_s3_server: ServerProcess) -> None:
    url = s3_url(fresh_s3_server, f"t-{uuid.uuid4().hex[:10]}") + f"&timeout={TIMEOUT:g}s"
    async with S3Store(url) as store:
        assert store.timeout == TIMEOUT
        await store.write(Record("before", b"1"))
        assert fresh_s3_server.pid is not None
        os.kill(fresh_s3_server.pid, signal.SIGSTOP)
        try:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: store.read("before"),
                lambda: store.write(Record("during", b"2"), ttl=60),
                lambda: store.list(prefix="b"),
                lambda: store.read("b", prefix=True),
                lambda: store.delete("before"),
                lambda: store.sweep_all(),
            ]
            # All at once: one timeout's wait for all of them.
            details = await all_time_out(calls, BOUND)
            for detail in details:
                assert f"did not answer within {TIMEOUT:g} s" in detail, detail
                assert fresh_s3_server.url in detail, detail
        finally:
            os.kill(fresh_s3_server.pid, signal.SIGCONT)

        await write_once_back(store, Record("after", b"3"))
        with anyio.fail_after(30):
            assert "after" in await store.list()
            assert await store.read("after") == [Record("after", b"3")]
