"""A conformance suite every Sync runs, backends of micro's and users' alike.

``await check_sync(factory)`` runs every check; ``SYNC_CHECKS`` names them one
by one for a test per check. ``factory`` makes a new, unopened Sync; Syncs
made by one factory must share one backend (they stand for nodes contending
for the same names). Each check uses names no other check or run uses, so a
shared server needs no cleanup. ``ttl`` is the short TTL the timing checks
use: long enough that taking a lock never outlasts it on a busy machine. Waits are
bounded; the one fixed pause lets a waiter queue up and decides no outcome.

It is one module past the usual size because a suite is read as a whole: short
checks, the helpers they share, and the list that runs them, in one place.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from ..sync.base import LeaderInfo, LeadershipLost, LockBusy, LockLost, NotHeld, Sync

__all__ = [
    "SYNC_CHECKS",
    "SyncCheck",
    "SyncFactory",
    "check_sync",
    "check_lock_excludes",
    "check_busy_wait_and_try_lock",
    "check_waiter_takes_over_on_release",
    "check_release_on_error_and_cancel",
    "check_lease_renewed_while_held",
    "check_stalled_holder_loses_lock",
    "check_paused_holder_expires_locally",
    "check_leader_election_and_watch",
    "check_resign",
    "check_resign_from_elsewhere",
    "check_close_releases_everything",
    "check_keepers_run_in_given_task_group",
    "check_early_release_and_bad_input",
]

SyncFactory = Callable[[], Sync]

#: seconds to wait for something that must happen
EVENT_TIMEOUT = 10.0
#: seconds within which a release or a loss must be noticed (far below LONG_TTL,
#: so only the wake-up, not an expiry, can explain it)
PROMPT = 3.0
#: TTL of holds that must not expire during a check
LONG_TTL = 30.0
#: seconds a waiter is given to queue up before the holder lets go
QUEUE_TIME = 0.3
#: rounds each of four tasks takes the lock in the exclusion check
ROUNDS = 5


class SyncCheck(Protocol):
    def __call__(self, factory: SyncFactory, *, ttl: float = 2.0) -> Awaitable[None]: ...


def unique_name(stem: str) -> str:
    return f"conform-{stem}/{uuid.uuid4().hex[:10]}"


async def _task_group_host(*, task_status: anyio.abc.TaskStatus[anyio.abc.TaskGroup]) -> None:
    async with anyio.create_task_group() as tg:
        task_status.started(tg)
        await anyio.sleep_forever()


async def check_lock_excludes(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """Tasks on two Syncs incrementing one counter under a lock lose no increment,
    and every holder's fencing token is larger than the one before."""
    name = unique_name("exclusion")
    counter = inside = 0
    overlaps = 0
    tokens: list[int] = []

    async def worker(sync: Sync) -> None:
        nonlocal counter, inside, overlaps
        for _ in range(ROUNDS):
            async with sync.lock(name, ttl=LONG_TTL, wait=EVENT_TIMEOUT) as lock:
                inside += 1
                overlaps += inside > 1
                tokens.append(lock.token)
                value = counter
                await anyio.lowlevel.checkpoint()  # let the others run while this one holds
                counter = value + 1
                inside -= 1

    async with factory() as a, factory() as b, anyio.create_task_group() as tg:
        for sync in (a, b, a, b):
            tg.start_soon(worker, sync)
    assert overlaps == 0, f"{overlaps} times two holders were inside the lock at once"
    assert counter == 4 * ROUNDS, f"lost increments: {counter} != {4 * ROUNDS}"
    assert all(x < y for x, y in itertools.pairwise(tokens)), tokens


async def check_busy_wait_and_try_lock(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """A held lock makes others wait up to ``wait`` then raise LockBusy, and
    try_lock give None; other names, even prefixes of it, are independent."""
    name = unique_name("busy") + "/42"
    async with factory() as a, factory() as b:
        async with a.lock(name, ttl=LONG_TTL) as held:
            assert held.name == name and held.held and held.token > 0, held
            assert held.ttl >= LONG_TTL, held.ttl
            async with b.try_lock(name) as none:
                assert none is None, "try_lock of a held lock must give None"
            started = anyio.current_time()
            with anyio.fail_after(EVENT_TIMEOUT):
                for wait in (0.3, 0):
                    try:
                        async with b.lock(name, wait=wait):
                            raise AssertionError("took a lock someone else holds")
                    except LockBusy as exc:
                        assert name in exc.detail, exc
            assert anyio.current_time() - started >= 0.29, "gave up before `wait` passed"
            for other in (name[:-1], name[:-3], name + "/1"):
                async with b.try_lock(other) as lock:
                    assert lock is not None, f"{other!r} is blocked by {name!r}"
        assert not held.held, "a released lock must not say it is held"
        async with b.try_lock(name) as lock:
            assert lock is not None, "a released lock must be free at once"
            assert lock.token > held.token, (lock.token, held.token)


async def check_waiter_takes_over_on_release(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """A waiter gets the lock promptly when the holder releases it (long before the TTL)."""
    name = unique_name("handover")
    tokens: dict[str, int] = {}
    acquired = anyio.Event()

    async with factory() as a, factory() as b:

        async def wait_for_it() -> None:
            async with b.lock(name, ttl=LONG_TTL, wait=EVENT_TIMEOUT) as lock:
                tokens["b"] = lock.token
                acquired.set()

        async with anyio.create_task_group() as tg:
            async with a.lock(name, ttl=LONG_TTL) as lock:
                tokens["a"] = lock.token
                tg.start_soon(wait_for_it)
                await anyio.sleep(QUEUE_TIME)
                assert not acquired.is_set(), "a waiter took a held lock"
            with anyio.fail_after(PROMPT):
                await acquired.wait()
    assert tokens["b"] > tokens["a"], tokens


class _Boom(Exception):
    pass


async def check_release_on_error_and_cancel(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """A body that raises or is cancelled releases the lock; its error passes unchanged."""
    name = unique_name("error")
    async with factory() as a, factory() as b:
        boom = _Boom("from the body")
        try:
            async with a.lock(name, ttl=LONG_TTL):
                raise boom
        except _Boom as exc:
            assert exc is boom
        else:
            raise AssertionError("the body's exception was swallowed")
        async with b.try_lock(name) as lock:
            assert lock is not None, "a body that raised left the lock held"
        with anyio.move_on_after(0.1) as scope:
            async with a.lock(name, ttl=LONG_TTL):
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        async with b.try_lock(name) as lock:
            assert lock is not None, "a cancelled body left the lock held"


async def check_lease_renewed_while_held(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """The keeper renews the lease: a lock held for several TTLs stays held."""
    name = unique_name("renewed")
    async with factory() as a, factory() as b, a.lock(name, ttl=ttl) as lock:
        end = anyio.current_time() + 2 * ttl
        while anyio.current_time() < end:
            async with b.try_lock(name, ttl=ttl) as other:
                assert other is None, "a lock being renewed was taken by another"
            assert lock.held
            await anyio.sleep(ttl / 4)


async def check_stalled_holder_loses_lock(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """A holder that stops running past its TTL (a stuck event loop, a long GC pause)
    has its body cancelled and gets LockLost, and the lock is free for others."""
    name = unique_name("stalled")
    async with factory() as a, factory() as b:
        entered = cancelled = False
        try:
            async with a.lock(name, ttl=ttl) as lock:
                entered = True
                time.sleep(ttl + 0.3)  # noqa: ASYNC251 - the stall under test
                try:
                    with anyio.fail_after(EVENT_TIMEOUT):
                        await anyio.sleep_forever()
                except anyio.get_cancelled_exc_class():
                    cancelled = True
                    raise
        except LockLost as exc:
            assert "lock" in str(exc) and exc.reason, exc
        else:
            raise AssertionError("a holder that stalled past its TTL must get LockLost")
        assert entered, "the lock was lost before the body ran (taking it outlasted the TTL)"
        assert cancelled, "the body was not cancelled"
        assert not lock.held
        async with b.try_lock(name) as other:
            assert other is not None, "the lock of a holder that lost it is still taken"


async def check_paused_holder_expires_locally(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """A holder paused past its TTL finds its hold ended the moment it runs again,
    before its lease keeper could run: ``held`` is False, ``fence()`` raises
    LockLost, and its next wait is cancelled, whether the pause hit the body
    itself or the whole event loop while the body waited."""
    name = unique_name("paused")
    async with factory() as a, factory() as b:
        went_on = None
        try:
            async with a.lock(name, ttl=ttl) as lock:
                assert lock.fence() == lock.token
                time.sleep(ttl + 0.3)  # noqa: ASYNC251 - the pause under test
                # No checkpoint since the pause: only the clock can tell.
                assert not lock.held, "held after a pause past the TTL"
                try:
                    lock.fence()
                except LockLost:
                    pass
                else:
                    raise AssertionError("fence() gave a token after a pause past the TTL")
                went_on = False
                await anyio.lowlevel.checkpoint()
                went_on = True
        except LockLost as exc:
            assert "expired" in exc.reason, exc.reason
        else:
            raise AssertionError("a holder paused past its TTL must get LockLost")
        assert went_on is False, "the body went on past a checkpoint after its hold expired"

        # The whole event loop stalls (another task blocks it) while the body waits.
        iterations: list[tuple[float, bool]] = []
        lost: list[LockLost] = []
        looping, ended = anyio.Event(), anyio.Event()
        resumed = 0.0

        async def hold_and_loop() -> None:
            try:
                async with a.lock(name, ttl=ttl) as lock:
                    while True:
                        iterations.append((time.monotonic(), lock.held))
                        looping.set()
                        await anyio.sleep(ttl / 20)
            except LockLost as exc:
                lost.append(exc)
            finally:
                ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold_and_loop)
            with anyio.fail_after(EVENT_TIMEOUT):
                await looping.wait()
            time.sleep(ttl + 0.3)  # noqa: ASYNC251 - the pause under test
            resumed = time.monotonic()
            with anyio.fail_after(PROMPT):
                await ended.wait()
        assert lost, "the body of a holder paused past its TTL ended without LockLost"
        after = [held for at, held in iterations if at > resumed]
        assert not any(after), "the body believed it held the lock after the pause"
        assert not after, f"the body ran {len(after)} times after the pause, not cancelled"
        async with b.try_lock(name) as other:
            assert other is not None, "the lock of a paused holder that lost it is still taken"


async def check_leader_election_and_watch(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """One candidate leads at a time; the next takes over when it leaves, with a
    larger token; observers see who leads, and each change in order."""
    name = unique_name("election")
    tokens: dict[str, int] = {}
    leads = {"a": anyio.Event(), "b": anyio.Event()}
    done = {"a": anyio.Event(), "b": anyio.Event()}

    async def campaign(sync: Sync, who: str) -> None:
        async with sync.leader(name, ttl=LONG_TTL, id=f"cand-{who}") as leadership:
            assert leadership.id == f"cand-{who}" and leadership.held
            tokens[who] = leadership.token
            leads[who].set()
            await done[who].wait()

    async def next_change(changes: Any, what: str) -> LeaderInfo | None:
        with anyio.fail_after(PROMPT):
            try:
                info: LeaderInfo | None = await changes.__anext__()
                return info
            except StopAsyncIteration:
                raise AssertionError(f"the watch ended while waiting for {what}") from None

    async with (
        factory() as a,
        factory() as b,
        factory() as observer,
        observer.watch_leader(name) as changes,
    ):
        assert await next_change(changes, "the first state") is None
        assert await observer.current_leader(name) is None
        async with anyio.create_task_group() as tg:
            tg.start_soon(campaign, a, "a")
            with anyio.fail_after(EVENT_TIMEOUT):
                await leads["a"].wait()
            first = await next_change(changes, "the first leader")
            assert first == LeaderInfo(name, "cand-a", tokens["a"]), first
            assert await observer.current_leader(name) == first
            tg.start_soon(campaign, b, "b")
            await anyio.sleep(QUEUE_TIME)
            assert not leads["b"].is_set(), "two leaders at once"
            done["a"].set()
            with anyio.fail_after(PROMPT):
                await leads["b"].wait()
            second = await next_change(changes, "the second leader")
            assert second == LeaderInfo(name, "cand-b", tokens["b"]), second
            assert tokens["b"] > tokens["a"], tokens
            done["b"].set()
        assert await next_change(changes, "no leader") is None
        assert await observer.current_leader(name) is None


async def check_resign(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """resign() stops the body at once and leaves the block without error; the
    leadership is free for the next candidate."""
    name = unique_name("resign")
    async with factory() as a, factory() as b:
        async with a.leader(name, ttl=LONG_TTL) as leadership:
            await leadership.resign()
            raise AssertionError("the body went on after resign()")
        assert not leadership.held
        assert await b.current_leader(name) is None
        # Resigning from another task cancels the body too.
        async with anyio.create_task_group() as tg, b.leader(name, ttl=LONG_TTL) as leadership:
            tg.start_soon(leadership.resign)
            with anyio.fail_after(PROMPT):
                await anyio.sleep_forever()
        assert await a.current_leader(name) is None


async def check_resign_from_elsewhere(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """Any node can make the leader step down: the leader's body is cancelled
    promptly and raises LeadershipLost."""
    name = unique_name("deposed")
    leads, finished = anyio.Event(), anyio.Event()
    outcome: dict[str, Any] = {}

    async with factory() as a, factory() as observer:

        async def lead() -> None:
            try:
                async with a.leader(name, ttl=LONG_TTL, id="deposed") as leadership:
                    outcome["token"] = leadership.token
                    leads.set()
                    try:
                        await anyio.sleep_forever()
                    except anyio.get_cancelled_exc_class():
                        outcome["cancelled"] = True
                        raise
            except LeadershipLost as exc:
                outcome["lost"] = exc
            finally:
                finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(lead)
            with anyio.fail_after(EVENT_TIMEOUT):
                await leads.wait()
            deposed = await observer.resign(name)
            assert deposed == LeaderInfo(name, "deposed", outcome["token"]), deposed
            with anyio.fail_after(PROMPT):
                await finished.wait()
        assert outcome.get("cancelled"), "the deposed leader's body was not cancelled"
        assert isinstance(outcome.get("lost"), LeadershipLost), outcome
        assert await observer.resign(name) is None


async def check_close_releases_everything(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """Closing a Sync ends its holds: their bodies get LockLost/LeadershipLost and
    the names are free for others at once."""
    lock_name, election = unique_name("closing-lock"), unique_name("closing-election")
    held = {"lock": anyio.Event(), "leader": anyio.Event()}
    outcome: dict[str, BaseException] = {}
    closing = factory()

    async def hold(kind: str) -> None:
        try:
            if kind == "lock":
                async with closing.lock(lock_name, ttl=LONG_TTL):
                    held[kind].set()
                    await anyio.sleep_forever()
            else:
                async with closing.leader(election, ttl=LONG_TTL):
                    held[kind].set()
                    await anyio.sleep_forever()
        except LockLost as exc:
            outcome[kind] = exc

    async with factory() as other, anyio.create_task_group() as tg:
        await closing.__aenter__()
        try:
            tg.start_soon(hold, "lock")
            tg.start_soon(hold, "leader")
            with anyio.fail_after(EVENT_TIMEOUT):
                await held["lock"].wait()
                await held["leader"].wait()
        finally:
            await closing.__aexit__(None, None, None)
        async with other.try_lock(lock_name) as lock:
            assert lock is not None, "closing a Sync left its lock held"
        assert await other.current_leader(election) is None, "closing a Sync left it leading"
    assert type(outcome.get("lock")) is LockLost, outcome
    assert type(outcome.get("leader")) is LeadershipLost, outcome


async def check_keepers_run_in_given_task_group(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """With ``running(task_group)``, lease keepers are tasks of that group:
    cancelling it stops them, and a hold without its keeper is lost."""
    name = unique_name("keepers")
    held, finished = anyio.Event(), anyio.Event()
    outcome: dict[str, BaseException] = {}

    async with factory() as other, anyio.create_task_group() as outer:
        keepers = await outer.start(_task_group_host)
        sync = factory()
        async with sync.running(keepers):

            async def hold() -> None:
                try:
                    async with sync.lock(name, ttl=LONG_TTL):
                        held.set()
                        await anyio.sleep_forever()
                except LockLost as exc:
                    outcome["lost"] = exc
                finally:
                    finished.set()

            outer.start_soon(hold)
            with anyio.fail_after(EVENT_TIMEOUT):
                await held.wait()
            keepers.cancel_scope.cancel()
            with anyio.fail_after(PROMPT):
                await finished.wait()
        assert isinstance(outcome.get("lost"), LockLost), outcome
        async with other.try_lock(name) as lock:
            assert lock is not None, "a lost lock was not released"


async def check_early_release_and_bad_input(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """``release()`` frees the lock at once; releasing it again, an empty name, a ttl
    <= 0 and a negative wait are clear errors that take nothing."""
    name = unique_name("early")
    async with factory() as a, factory() as b:
        async with a.lock(name, ttl=LONG_TTL) as lock:
            await lock.release()
            assert not lock.held
            # Free while the block still runs: another node takes it at once.
            async with b.lock(name, ttl=LONG_TTL, wait=PROMPT) as other:
                assert other.token > lock.token
            try:
                await lock.release()
            except NotHeld as exc:
                assert name in exc.detail, exc.detail
            else:
                raise AssertionError("releasing a released lock raised nothing")
        async with a.leader(name + "-election", ttl=LONG_TTL) as leadership:
            await leadership.resign()
            try:
                await leadership.release()
            except NotHeld:
                pass
            else:
                raise AssertionError("releasing a resigned leadership raised nothing")
        bad: list[Callable[[], object]] = [
            lambda: a.lock(""),
            lambda: a.try_lock("  "),
            lambda: a.leader(""),
            lambda: a.lock(name, ttl=0),
            lambda: a.lock(name, ttl=-1),
            lambda: a.try_lock(name, ttl=0),
            lambda: a.leader(name, ttl=-5),
            lambda: a.lock(name, wait=-1),
        ]
        for make in bad:
            try:
                make()
            except ValueError:
                continue
            raise AssertionError("bad arguments were accepted")
        async with b.try_lock(name, ttl=LONG_TTL) as free:
            assert free is not None, "a refused call took the lock"


SYNC_CHECKS: dict[str, SyncCheck] = {
    "lock_excludes": check_lock_excludes,
    "busy_wait_and_try_lock": check_busy_wait_and_try_lock,
    "waiter_takes_over_on_release": check_waiter_takes_over_on_release,
    "release_on_error_and_cancel": check_release_on_error_and_cancel,
    "lease_renewed_while_held": check_lease_renewed_while_held,
    "stalled_holder_loses_lock": check_stalled_holder_loses_lock,
    "paused_holder_expires_locally": check_paused_holder_expires_locally,
    "leader_election_and_watch": check_leader_election_and_watch,
    "resign": check_resign,
    "resign_from_elsewhere": check_resign_from_elsewhere,
    "close_releases_everything": check_close_releases_everything,
    "keepers_run_in_given_task_group": check_keepers_run_in_given_task_group,
    "early_release_and_bad_input": check_early_release_and_bad_input,
}


async def check_sync(factory: SyncFactory, *, ttl: float = 2.0) -> None:
    """Run every check against Syncs made by ``factory``; raises AssertionError."""
    for check in SYNC_CHECKS.values():
        await check(factory, ttl=ttl)
