"""The memory Sync (conformance suite and its own behaviour), the hold table, backend URLs."""

from __future__ import annotations

import time

import anyio
import pytest

from micro.sync import (
    LeaderInfo,
    LeadershipLost,
    LockBusy,
    LockLost,
    MemorySync,
    MemorySyncState,
    NotHeld,
    Sync,
    SyncUnavailable,
    default_state,
    from_url,
    resolve_sync,
)
from micro.sync.etcd import EtcdSync
from micro.sync.lease import MAX_EXPIRY_MARGIN, Hold, HoldState
from micro.testing import SYNC_CHECKS, SyncCheck

pytestmark = pytest.mark.anyio

#: memory leases can be short: nothing but this process's clock decides them
TTL = 0.5


@pytest.mark.parametrize("check", list(SYNC_CHECKS.values()), ids=list(SYNC_CHECKS))
async def test_memory_sync_conforms(check: SyncCheck) -> None:
    state = MemorySyncState()
    await check(lambda: MemorySync(state=state), ttl=TTL)


async def test_a_dead_holder_keeps_the_lock_for_its_ttl_and_not_longer() -> None:
    # An entry nobody renews is what a holder that died leaves behind.
    state = MemorySyncState()
    state.add(("lock", "jobs"), "dead-node", 1.0)
    died = time.monotonic()
    async with MemorySync(state=state) as sync:
        async with sync.try_lock("jobs") as lock:
            assert lock is None
        with anyio.fail_after(3):
            async with sync.lock("jobs", ttl=5) as lock:
                waited = time.monotonic() - died
        assert 0.9 <= waited < 2.0, waited
        assert lock.token > 1  # later than the dead holder's


async def test_a_stalled_leader_loses_and_the_next_takes_over() -> None:
    state = MemorySyncState()
    elected, lost = anyio.Event(), anyio.Event()

    async def stalled(sync: Sync) -> None:
        try:
            async with sync.leader("scheduler", ttl=TTL, id="slow"):
                elected.set()
                time.sleep(TTL * 2)  # noqa: ASYNC251 - the stall under test
                await anyio.sleep_forever()
        except LeadershipLost as exc:
            assert "expired" in exc.reason, exc.reason
            lost.set()

    async with (
        MemorySync(state=state) as a,
        MemorySync(state=state) as b,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(stalled, a)
        await elected.wait()
        with anyio.fail_after(5):
            async with b.leader("scheduler", ttl=TTL, id="next") as leadership:
                assert await b.current_leader("scheduler") == LeaderInfo(
                    "scheduler", "next", leadership.token
                )
                await lost.wait()


async def test_a_paused_leader_never_leads_after_the_next_is_elected() -> None:
    # The event loop stalls past the TTL while the leader's body waits, as in a
    # process stopped by SIGSTOP: once it runs again, the leader's body must not
    # believe it leads, before or after the next candidate's term started.
    state = MemorySyncState()
    log: list[tuple[str, float, int, bool]] = []  # who, when, token, held
    lost: list[LeadershipLost] = []
    leading = anyio.Event()

    async def campaign(sync: Sync, who: str) -> None:
        try:
            async with sync.leader("paused", ttl=TTL, id=who) as leadership:
                while True:
                    log.append((who, time.monotonic(), leadership.token, leadership.held))
                    leading.set()
                    await anyio.sleep(TTL / 20)
        except LeadershipLost as exc:
            lost.append(exc)

    async with (
        MemorySync(state=state) as a,
        MemorySync(state=state) as b,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(campaign, a, "old")
        await leading.wait()
        time.sleep(TTL * 2)  # noqa: ASYNC251 - the pause under test
        resumed = time.monotonic()
        # The next candidate stands for a process the pause did not stop (one
        # waiting in this process was paused too, and its own lease lapsed).
        tg.start_soon(campaign, b, "new")
        with anyio.fail_after(5):
            while not lost or not any(who == "new" for who, *_ in log):
                await anyio.sleep(TTL / 20)
        tg.cancel_scope.cancel()
    term = min(at for who, at, _, _ in log if who == "new")
    old = [(at, token, held) for who, at, token, held in log if who == "old"]
    new_token = next(token for who, _, token, _ in log if who == "new")
    assert all(token < new_token for _, token, _ in old)
    assert not [at for at, _, held in old if held and at >= term], (old, term)
    assert not [at for at, _, held in old if held and at > resumed], (old, resumed)
    assert "expired here first" in lost[0].reason, lost[0].reason


async def test_a_shielded_wait_in_the_body_finishes_despite_the_expiry() -> None:
    # The pause ends the hold, but a shield in the body still protects its wait
    # (cleanup that must finish); the body is cancelled at the next checkpoint after.
    steps: list[str] = []
    paused = anyio.Event()

    async def hold(sync: Sync) -> None:
        try:
            async with sync.lock("shielded", ttl=TTL) as lock:
                with anyio.CancelScope(shield=True):
                    paused.set()
                    await anyio.sleep(TTL / 10)
                    steps.append(f"shielded wait done, held={lock.held}")
                await anyio.sleep(TTL)
                steps.append("went on")
        except LockLost:
            steps.append("lost")

    async with MemorySync(state=MemorySyncState()) as sync, anyio.create_task_group() as tg:
        tg.start_soon(hold, sync)
        await paused.wait()
        time.sleep(TTL * 2)  # noqa: ASYNC251 - the pause under test
    assert steps == ["shielded wait done, held=False", "lost"], steps


def test_local_expiry_is_the_ttl_after_the_last_renewal_was_sent_less_a_margin() -> None:
    hold = Hold("lock", "n", "me", 2.0)
    hold.renewed(100.0)
    assert hold.expires == 100.0 + 2.0 - 0.2  # a tenth of the TTL
    hold.renewed(99.0)  # a late answer to an earlier request moves nothing back
    assert hold.expires == 101.8
    hold.renewed(101.0)
    assert hold.expires == 102.8
    assert Hold("lock", "n", "me", 60.0).margin == MAX_EXPIRY_MARGIN

    hold = Hold("lock", "n", "me", 1.0)
    hold.renewed(time.monotonic())
    hold.fire("acquired")
    assert not hold.expired() and hold.state is HoldState.HELD
    hold = Hold("lock", "n", "me", 1.0)
    hold.fire("acquired")
    hold.renewed(time.monotonic() - 1.0)  # sent a TTL ago: it may have expired already
    assert hold.expired() and hold.state is HoldState.LOST
    assert "expired here first" in hold.reason and "0.1s margin" in hold.reason


async def test_fence_gives_the_token_only_while_held() -> None:
    async with MemorySync(state=MemorySyncState()) as sync:
        async with sync.leader("fenced", ttl=5) as leadership:
            assert leadership.fence() == leadership.token
            await leadership.resign()
        with pytest.raises(NotHeld):
            leadership.fence()
        async with sync.lock("fenced", ttl=5) as lock:
            await lock.release()
            with pytest.raises(NotHeld):
                lock.fence()


async def test_memory_syncs_share_the_process_state_by_default() -> None:
    assert MemorySync().state is default_state()
    async with (
        MemorySync() as a,
        MemorySync() as b,
        a.lock("shared-by-default", ttl=5),
        b.try_lock("shared-by-default") as lock,
    ):
        assert lock is None


async def test_a_closed_sync_says_so() -> None:
    sync = MemorySync(state=MemorySyncState())
    with pytest.raises(SyncUnavailable, match="not open"):
        async with sync.lock("x"):
            pass


async def test_one_sync_serves_one_task_group() -> None:
    sync = MemorySync(state=MemorySyncState())
    async with (
        anyio.create_task_group() as one,
        anyio.create_task_group() as two,
        sync.running(one),
    ):
        async with sync:  # another user of the same group: fine
            pass
        with pytest.raises(RuntimeError, match="another task group"):
            async with sync.running(two):
                pass


async def test_bad_arguments() -> None:
    async with MemorySync(state=MemorySyncState()) as sync:
        with pytest.raises(ValueError, match="ttl"):
            sync.lock("x", ttl=0)
        with pytest.raises(ValueError, match="wait"):
            sync.lock("x", wait=-1)


async def test_a_context_is_entered_once() -> None:
    async with MemorySync(state=MemorySyncState()) as sync:
        context = sync.lock("once", ttl=5)
        async with context:
            pass
        with pytest.raises(RuntimeError, match="only once"):
            async with context:
                pass


async def test_lock_busy_is_a_conflict_with_the_name() -> None:
    state = MemorySyncState()
    async with MemorySync(state=state) as a, MemorySync(state=state) as b, a.lock("orders/42"):
        with pytest.raises(LockBusy) as info:
            async with b.lock("orders/42", wait=0):
                pass
    assert info.value.code == 409 and "'orders/42'" in info.value.detail


def test_hold_table() -> None:
    hold = Hold("lock", "n", "me", 1.0)

    def after(event: str, reason: str = "") -> HoldState:
        hold.fire(event, reason)
        return hold.state

    assert after("resigned") is HoldState.WAITING  # only a held hold can resign
    assert after("acquired") is HoldState.HELD
    assert after("lost", "gone") is HoldState.LOST
    assert after("released") is HoldState.LOST  # still to be raised on leaving the block
    assert after("acquired") is HoldState.LOST
    error = hold.lost_error()
    assert type(error) is LockLost and error.reason == "gone" and "lock 'n' lost" in error.detail

    leader = Hold("leader", "e", "me", 1.0)
    leader.fire("acquired")
    assert leader.fire("resigned") and not leader.fire("lost")
    assert leader.state is HoldState.RESIGNED
    assert isinstance(Hold("leader", "e", "me", 1.0).lost_error(), LeadershipLost)
    assert issubclass(LeadershipLost, LockLost)  # a leadership is a lock on the election


def test_backends_by_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(from_url("memory"), MemorySync)
    etcd = from_url("etcd://10.0.0.1:2379", id="node-1")
    assert isinstance(etcd, EtcdSync) and etcd.client.endpoint == "http://10.0.0.1:2379"
    assert etcd.id == "node-1"
    assert isinstance(from_url("etcd"), EtcdSync)
    with pytest.raises(ValueError, match="unknown sync"):
        from_url("zookeeper://x")

    monkeypatch.delenv("MICRO_SYNC", raising=False)
    assert isinstance(resolve_sync(None), MemorySync)
    monkeypatch.setenv("MICRO_SYNC", "etcd://127.0.0.1:1")
    assert isinstance(resolve_sync(None, id="svc-1"), EtcdSync)
    assert resolve_sync(None) is not resolve_sync(None)  # one per service
    mine = MemorySync()
    assert resolve_sync(mine) is mine
    assert isinstance(mine, Sync)
