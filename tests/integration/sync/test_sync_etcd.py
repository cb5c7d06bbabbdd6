"""EtcdSync against a real etcd: the conformance suite, its keys, and losing the lease."""

from __future__ import annotations

import uuid

import anyio
import pytest

from micro.etcd import EtcdClient
from micro.sync import LeadershipLost, Sync, SyncUnavailable
from micro.sync.etcd import DEFAULT_PREFIX, EtcdSync
from micro.testing import SYNC_CHECKS, SyncCheck
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.anyio

#: the timing checks' TTL: etcd's smallest (1 s) leaves too little room on a busy machine
TTL = 2
#: seconds past the TTL within which a loss must have cancelled the body
SLACK = 1.5


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("check", list(SYNC_CHECKS.values()), ids=list(SYNC_CHECKS))
async def test_etcd_sync_conforms(etcd_server: ServerProcess, check: SyncCheck) -> None:
    await check(lambda: EtcdSync(etcd_server.url), ttl=TTL)


async def test_a_hold_is_a_leased_key_whose_create_revision_is_the_token(
    etcd_server: ServerProcess,
) -> None:
    name = unique("orders") + "/42"
    async with (
        EtcdSync(etcd_server.url, id="node-7") as sync,
        EtcdClient(etcd_server.url) as etcd,
        sync.lock(name, ttl=7) as lock,
    ):
        line = f"{DEFAULT_PREFIX}lock/{name.replace('/', '%2F')}/".encode()
        [kv] = (await etcd.range(line, prefix=True)).kvs
        assert kv.value == b"node-7" and kv.create_revision == lock.token
        info = await etcd.lease_time_to_live(kv.lease)
        assert info.granted_ttl == 7 and 0 < info.ttl <= 7 and lock.ttl == 7
    async with EtcdClient(etcd_server.url) as etcd:
        assert (await etcd.range(line, prefix=True)).kvs == ()
        assert (await etcd.lease_time_to_live(kv.lease)).ttl == -1  # revoked on release


async def _leader_lost_after(sync: Sync, name: str, ttl: int, cause: object) -> tuple[float, str]:
    """Lead ``name``; run ``cause(lease_id)`` once leading; how long until the body was
    cancelled, and the reason LeadershipLost gave."""
    elected = anyio.Event()
    lease: dict[str, int] = {}
    outcome: dict[str, object] = {}

    async def lead() -> None:
        try:
            async with sync.leader(name, ttl=ttl) as leadership:
                lease["token"] = leadership.token
                elected.set()
                try:
                    await anyio.sleep_forever()
                finally:
                    outcome["cancelled_at"] = anyio.current_time()
        except LeadershipLost as exc:
            outcome["reason"] = exc.reason

    async with anyio.create_task_group() as tg:
        tg.start_soon(lead)
        with anyio.fail_after(10):
            await elected.wait()
        started = anyio.current_time()
        await cause(lease["token"])  # type: ignore[operator]
        with anyio.fail_after(ttl + SLACK + 5):
            while "reason" not in outcome:
                await anyio.sleep(0.01)
    return float(outcome["cancelled_at"]) - started, str(outcome["reason"])  # type: ignore[arg-type]


async def test_revoking_the_lease_cancels_the_leader_at_once(etcd_server: ServerProcess) -> None:
    name = unique("revoked")
    async with EtcdSync(etcd_server.url) as sync, EtcdClient(etcd_server.url) as etcd:

        async def revoke(token: int) -> None:
            line = f"{DEFAULT_PREFIX}leader/{name}/".encode()
            [kv] = (await etcd.range(line, prefix=True)).kvs
            assert kv.create_revision == token
            await etcd.lease_revoke(kv.lease)

        # A 30 s TTL: only the watch on its own key can explain a prompt loss.
        took, reason = await _leader_lost_after(sync, name, 30, revoke)
    assert took < 1.0, took
    assert "deleted" in reason, reason


async def test_etcd_unreachable_past_the_ttl_cancels_the_leader(
    fresh_etcd_server: ServerProcess,
) -> None:
    ttl = 2
    async with EtcdSync(fresh_etcd_server.url) as sync:

        async def stop_etcd(token: int) -> None:
            await anyio.to_thread.run_sync(fresh_etcd_server.stop)

        took, reason = await _leader_lost_after(sync, unique("partitioned"), ttl, stop_etcd)
    # Renewed every ttl/3, so the last renewal was at most ttl/3 before the stop.
    assert ttl * 2 / 3 - 0.2 <= took <= ttl + SLACK, took
    assert "could not be reached" in reason, reason


async def test_a_holder_rides_out_a_short_etcd_restart(fresh_etcd_server: ServerProcess) -> None:
    name = unique("restart")
    async with EtcdSync(fresh_etcd_server.url) as sync, sync.lock(name, ttl=3) as lock:
        await anyio.to_thread.run_sync(fresh_etcd_server.restart)
        # Two renewal rounds after the restart: the lease is still ours.
        await anyio.sleep(3 * 2 / 3)
        assert lock.held
        async with EtcdSync(fresh_etcd_server.url) as other, other.try_lock(name) as taken:
            assert taken is None


async def test_an_unreachable_etcd_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with EtcdSync(url) as sync:
        with pytest.raises(SyncUnavailable, match=url.removeprefix("http://")):
            async with sync.lock("x", wait=1):
                pass
        with pytest.raises(SyncUnavailable):
            await sync.current_leader("x")
