"""A service's sync: what it holds is released when the service stops."""

from __future__ import annotations

import anyio
import pytest

import micro
from micro.sync import LeadershipLost, LockBusy, LockLost

from ...servers import ServerProcess

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("backend", ["memory", "etcd"])
async def test_holds_end_with_the_service(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "etcd":
        server: ServerProcess = request.getfixturevalue("etcd_server")
        url = server.url.replace("http://", "etcd://")
    else:
        url = "memory"
    name = f"orders-{backend}-{anyio.current_time()}"
    a = micro.Service("a", address="127.0.0.1:0", registry="memory", sync=url)
    b = micro.Service("b", address="127.0.0.1:0", registry="memory", sync=url)
    lost: list[BaseException] = []
    entered = anyio.Event()

    async def hold() -> None:
        try:
            async with (
                a.sync.lock(name, ttl=30) as lock,
                a.sync.leader(name, ttl=30) as leadership,
            ):
                assert lock.token > 0 and leadership.token > 0
                entered.set()
                await anyio.sleep_forever()
        except (LockLost, LeadershipLost) as exc:
            lost.append(exc)

    async with b.running(), anyio.create_task_group() as tg:
        async with a.running():
            tg.start_soon(hold)
            with anyio.fail_after(10):
                await entered.wait()
            info = await b.sync.current_leader(name)
            assert info is not None and info.id == a.id
            with pytest.raises(LockBusy):
                async with b.sync.lock(name, ttl=5, wait=0):
                    pass
        # a has stopped: its body was cancelled and what it held is free at
        # once, long before the 30 s TTL.
        with anyio.fail_after(10):
            async with b.sync.lock(name, ttl=5, wait=5) as lock:
                assert lock.held
            async with b.sync.leader(name, ttl=5) as leadership:
                assert leadership.id == b.id
    assert len(lost) == 1
