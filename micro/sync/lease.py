"""Holds and their lease keepers: the machinery every Sync backend shares.

Theory. Taking a lock or campaigning for leadership makes a *hold*: the
backend grants a lease of the hold's TTL and queues an entry bound to it
behind the entries taken before it on the same name (etcd: a key whose create
revision orders it). At once a lease keeper task starts in the Sync's task
group and renews the lease, whether the hold is still waiting or already
held. The hold is *held* when no entry is ahead of it; until then the taker
waits for the one entry just ahead to go (etcd: a watch on that key), never
polling.

Local expiry. The holder never trusts a lease longer than the backend could
keep it: a grant or renewal sent at monotonic time *t* keeps the lease at
least until *t* + TTL at the backend, so the hold *expires locally* at
*t* + TTL - margin (:data:`EXPIRY_MARGIN`), moved on by every renewal. The
body's cancel scope has that deadline; ``held`` is False and ``fence()``
raises past it, computed from the clock when they are read, not from what the
keeper last saw; reading them past it ends the hold at once. So a process
that was paused (SIGSTOP, a GC pause, a VM migration) longer than that sees
its deadline in the past when it runs again: the body's cancellation is due
before the keeper can even ask the backend, the next wait in the body is
cancelled, and code that checks ``held`` sees False. Even the wait the body
was paused in raises, if it ended during the pause: Trio processes every
overdue deadline before running any task, and under asyncio, where overdue
timers run in the order they were due, ``_asyncio_expiry`` completes the
cancellation that AnyIO defers for a task whose wait has just finished.

The hold's lifecycle is the table ``_NEXT`` below. The keeper reports a loss
(lease expired, backend unreachable until the TTL ran out, entry deleted from
elsewhere), closing the Sync reports one for every hold, and a stopped keeper
reports one on its way out, because a lease nobody renews cannot be trusted.
Entering LOST or RESIGNED cancels the scope of whatever relies on the hold:
the wait, then the body of the ``async with``. On leaving the block the lease
is revoked (bounded, shielded), and a loss is raised as LockLost or
LeadershipLost, so the caller never carries on unaware.

Keepers never crash into their supervisor: an unexpected error in one is
logged and becomes the hold's loss, since restarting a keeper cannot restore
a lease that may have lapsed meanwhile.

It is one module past the usual size because the hold's state table, the
keeper that drives it and the Sync base that starts both change together:
a rule of one is a rule of the others.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from enum import StrEnum
from typing import Any, Literal, Self, cast

import anyio
import anyio.abc
import anyio.lowlevel

from ..errors import MicroError
from ..refcount import Users
from ._asyncio_expiry import ExpiryGuard, expiry_guard
from .base import (
    DEFAULT_TTL,
    LeaderInfo,
    Leadership,
    LeadershipLost,
    Lock,
    LockBusy,
    LockLost,
    NotHeld,
    SyncUnavailable,
)

__all__ = ["Hold", "HoldGone", "HoldState", "LeasedSync", "default_id"]

log = logging.getLogger("micro.sync")

Kind = Literal["lock", "leader"]

#: seconds releasing may take before the lease is left to expire by its TTL
RELEASE_TIMEOUT = 5.0
#: seconds between attempts while the backend cannot be reached during a wait
RETRY_INTERVAL = 0.2
#: share of the TTL by which a hold expires here before its lease can expire at
#: the backend: it covers clock rate differences between hosts (NTP keeps them
#: far below 0.1 %) and the time from the deadline to the body's next
#: checkpoint, where its cancellation lands ...
EXPIRY_MARGIN = 0.1
#: ... but at most this many seconds, so long TTLs are not cut short for nothing
MAX_EXPIRY_MARGIN = 0.5


class HoldState(StrEnum):
    WAITING = "waiting"  # lease granted, queued behind earlier holds
    HELD = "held"
    LOST = "lost"  # ended by anything but this node's own choice: raised to the body
    RESIGNED = "resigned"  # ended by Leadership.resign(): the body exits quietly
    RELEASED = "released"


_W, _H, _L, _R, _X = (
    HoldState.WAITING,
    HoldState.HELD,
    HoldState.LOST,
    HoldState.RESIGNED,
    HoldState.RELEASED,
)
# (state, event) -> next state; a pair not listed leaves the state as it is.
_NEXT: dict[tuple[HoldState, str], HoldState] = {
    (_W, "acquired"): _H,
    (_W, "lost"): _L,
    (_W, "released"): _X,
    (_H, "lost"): _L,
    (_H, "resigned"): _R,
    (_H, "released"): _X,
}
# States whose entry cancels what relies on the hold.
_ENDS_BODY = frozenset({_L, _R})


class HoldGone(Exception):
    """Raised by a backend that finds a waiting hold's own entry gone."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Hold:
    """One lock or leadership: the backend's lease, its state, and what relies on it."""

    def __init__(self, kind: Kind, name: str, value: str, ttl: float) -> None:
        self.kind: Kind = kind
        self.name = name
        self.value = value  # the holder's id
        self.ttl = ttl
        self.token = 0
        self.lease: Any = None  # the backend's record of the lease and entry
        self.state = HoldState.WAITING
        self.reason = ""
        self.cause: BaseException | None = None
        self.scope: anyio.CancelScope | None = None  # the wait, then the body
        self.guard: ExpiryGuard | None = None  # the body's, under asyncio
        self.keeper_scope: anyio.CancelScope | None = None
        self.keeper_stopped = False
        self.released: anyio.Event | None = None  # set once the lease is ended
        # time.monotonic() from which the lease may have expired at the backend
        self.expires = math.inf
        self.renewal_failed = ""  # why the last renewal attempt failed, if it did

    @property
    def margin(self) -> float:
        """Seconds by which the hold expires here before it can at the backend."""
        return min(MAX_EXPIRY_MARGIN, self.ttl * EXPIRY_MARGIN)

    def renewed(self, sent: float) -> None:
        """The lease was granted or renewed by a request sent at ``sent`` (time.monotonic()).

        Moves the local expiry, and the body's deadline with it, to a margin
        before the earliest time the backend could let the lease go.
        """
        expires = sent + self.ttl - self.margin
        if self.expires != math.inf and expires <= self.expires:
            return
        self.expires = expires
        if self.state is HoldState.HELD and self.scope is not None:
            self.scope.deadline = self.deadline()
            if self.guard is not None:
                self.guard.arm(self.scope.deadline)

    def deadline(self) -> float:
        """The local expiry on the event loop's clock (anyio.current_time())."""
        return anyio.current_time() + (self.expires - time.monotonic())

    def expired(self) -> bool:
        """True from the local expiry on; a hold still waiting or held is then lost."""
        if time.monotonic() < self.expires:
            return False
        reason = (
            f"its lease expired here first: not renewed within its TTL ({self.ttl:g}s) "
            f"less a {self.margin:g}s margin"
        )
        if self.renewal_failed:
            reason += f" ({self.renewal_failed})"
        self.fire("lost", reason)
        return True

    def fire(self, event: str, reason: str = "", cause: BaseException | None = None) -> bool:
        """Apply ``event``; True if the state changed."""
        state = _NEXT.get((self.state, event))
        if state is None:
            return False
        self.state = state
        if state in _ENDS_BODY:
            self.reason, self.cause = reason, cause
            if self.scope is not None:
                self.scope.cancel()
        return True

    def stop_keeper(self) -> None:
        self.keeper_stopped = True
        if self.keeper_scope is not None:
            self.keeper_scope.cancel()

    def describe(self) -> str:
        return f"lock {self.name!r}" if self.kind == "lock" else f"leadership of {self.name!r}"

    def lost_error(self) -> LockLost:
        cls = LeadershipLost if self.kind == "leader" else LockLost
        return cls(f"{self.describe()} lost: {self.reason}", reason=self.reason, id="sync")


class HeldLock:
    """The Lock handle a block gets."""

    def __init__(self, hold: Hold, sync: LeasedSync) -> None:
        self._hold = hold
        self._sync = sync

    @property
    def name(self) -> str:
        return self._hold.name

    @property
    def token(self) -> int:
        return self._hold.token

    @property
    def ttl(self) -> float:
        return self._hold.ttl

    @property
    def held(self) -> bool:
        """Held now: not ended, and the local expiry not passed (read from the clock)."""
        hold = self._hold
        return hold.state is HoldState.HELD and not hold.expired()

    def fence(self) -> int:
        """The fencing token, if the hold is held now; raises LockLost or NotHeld if not."""
        if self.held:
            return self._hold.token
        if self._hold.state is HoldState.LOST:
            raise self._hold.lost_error()
        raise NotHeld(f"{self._hold.describe()} is not held ({self._hold.state})", id="sync")

    async def release(self) -> None:
        """Release now; the rest of the block runs without the hold.

        Raises NotHeld when the hold has ended already (released, resigned or lost).
        """
        hold = self._hold
        if not self.held:
            raise NotHeld(f"{hold.describe()} is not held ({hold.state})", id="sync")
        await self._sync._release(hold)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} token={self.token} {self._hold.state}>"


class HeldLeadership(HeldLock):
    """The Leadership handle a block gets."""

    @property
    def id(self) -> str:
        return self._hold.value

    async def resign(self) -> None:
        await self._sync._resign_hold(self._hold)


def default_id() -> str:
    """A holder id unique to this process and Sync: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class LeasedSync(ABC):
    """A Sync whose holds are leases renewed by keeper tasks; backends fill in the lease."""

    def __init__(self, *, id: str | None = None) -> None:
        self.id = id or default_id()
        self._users = Users()
        self._tg: anyio.abc.TaskGroup | None = None
        self._own_tg: anyio.abc.TaskGroup | None = None
        self._holds: set[Hold] = set()

    # -- the backend's part --

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    async def _grant(self, hold: Hold) -> None:
        """Grant the lease and queue the entry; set ``hold.lease`` and ``hold.token``."""

    @abstractmethod
    async def _ahead(self, hold: Hold) -> Any:
        """The entry just ahead of the hold's (None: the hold is first); HoldGone if gone."""

    @abstractmethod
    async def _wait_gone(self, hold: Hold, ahead: Any) -> None:
        """Return once ``ahead`` may be gone (the caller checks again)."""

    @abstractmethod
    async def _keep(self, hold: Hold) -> None:
        """Renew the lease until it is lost; report the loss with ``hold.fire("lost", ...)``."""

    @abstractmethod
    async def _revoke(self, hold: Hold) -> None:
        """End the lease and remove the entry."""

    @abstractmethod
    async def current_leader(self, name: str) -> LeaderInfo | None: ...

    @abstractmethod
    def watch_leader(
        self, name: str
    ) -> AbstractAsyncContextManager[AsyncIterator[LeaderInfo | None]]: ...

    @abstractmethod
    async def resign(self, name: str) -> LeaderInfo | None: ...

    # -- lifecycle --

    @contextlib.asynccontextmanager
    async def running(self, task_group: anyio.abc.TaskGroup) -> AsyncIterator[Self]:
        """Open the Sync with its lease keepers as tasks of ``task_group``."""
        await self._enter(task_group)
        try:
            yield self
        finally:
            await self._exit()

    async def __aenter__(self) -> Self:
        """Open the Sync with a task group of its own (left in the task that entered)."""
        await self._enter(None)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exit()

    async def _enter(self, task_group: anyio.abc.TaskGroup | None) -> None:
        if self._users.open and task_group is not None and task_group is not self._tg:
            raise RuntimeError(
                "this Sync already runs its lease keepers in another task group; "
                "give each service its own Sync"
            )
        await self._users.enter(lambda: self._first_open(task_group))

    async def _first_open(self, task_group: anyio.abc.TaskGroup | None) -> None:
        await self._open()
        if task_group is None:
            own = anyio.create_task_group()
            try:
                await own.__aenter__()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._close()
                raise
            self._own_tg = task_group = own
        self._tg = task_group

    async def _exit(self) -> None:
        if not self._users.open:
            raise RuntimeError(f"the {type(self).__name__} is not open")
        await self._users.exit(self._last_close)

    async def _last_close(self) -> None:
        with anyio.CancelScope(shield=True):
            holds = list(self._holds)
            for hold in holds:
                hold.fire("lost", "the Sync holding it was closed")
            for hold in holds:
                await self._release(hold)
        own, self._own_tg, self._tg = self._own_tg, None, None
        try:
            if own is not None:
                own.cancel_scope.cancel()
                await own.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._close()

    def _task_group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise SyncUnavailable(
                f"the {type(self).__name__} is not open: use `async with sync:` "
                "or `sync.running(task_group)`",
                id="sync",
            )
        return self._tg

    # -- holds --

    def lock(
        self, name: str, *, ttl: float = DEFAULT_TTL, wait: float | None = None
    ) -> AbstractAsyncContextManager[Lock]:
        """Hold lock ``name`` for the block (see :meth:`micro.sync.Sync.lock`)."""
        holding = _Holding(self, "lock", name, ttl, wait, self.id, busy_raises=True)
        return cast(AbstractAsyncContextManager[Lock], holding)

    def try_lock(
        self, name: str, *, ttl: float = DEFAULT_TTL
    ) -> AbstractAsyncContextManager[Lock | None]:
        """Lock ``name`` if free at once, else give None."""
        holding = _Holding(self, "lock", name, ttl, 0, self.id, busy_raises=False)
        return cast(AbstractAsyncContextManager[Lock | None], holding)

    def leader(
        self, name: str, *, ttl: float = DEFAULT_TTL, id: str | None = None
    ) -> AbstractAsyncContextManager[Leadership]:
        """Lead election ``name`` for the block (see :meth:`micro.sync.Sync.leader`)."""
        holding = _Holding(self, "leader", name, ttl, None, id or self.id, busy_raises=True)
        return cast(AbstractAsyncContextManager[Leadership], holding)

    async def _queue(self, hold: Hold, wait: float | None) -> bool:
        """Wait until the hold is first in line; False if ``wait`` seconds pass first."""
        deadline = math.inf if wait is None else anyio.current_time() + wait
        while True:
            try:
                ahead = await self._ahead(hold)
                if ahead is None:
                    return True
                if anyio.current_time() >= deadline:
                    return False
                with anyio.move_on_at(deadline):
                    await self._wait_gone(hold, ahead)
            except SyncUnavailable as exc:
                # The keeper ends the wait if this lasts past the TTL.
                if anyio.current_time() >= deadline:
                    raise
                log.info("waiting for %s: %s; retrying", hold.describe(), exc.detail)
                with anyio.move_on_at(deadline):
                    await anyio.sleep(RETRY_INTERVAL)

    async def _keep_lease(self, hold: Hold) -> None:
        """The lease keeper task of one hold."""
        try:
            with anyio.CancelScope() as hold.keeper_scope:
                if hold.keeper_stopped:  # released before the keeper got to run
                    hold.keeper_scope.cancel()
                await self._keep(hold)
        except Exception as exc:
            log.error("the lease keeper of %s failed", hold.describe(), exc_info=exc)
            hold.fire("lost", f"its lease keeper failed ({exc!r})", exc)
        finally:
            hold.fire("lost", "its lease keeper was stopped (its task group was cancelled)")

    async def _release(self, hold: Hold) -> None:
        """Stop the keeper and end the lease, once; shielded and bounded."""
        hold.fire("released")
        hold.stop_keeper()
        self._holds.discard(hold)
        if hold.released is not None:  # released already, or being released by another task
            with anyio.move_on_after(RELEASE_TIMEOUT, shield=True):
                await hold.released.wait()
            return
        hold.released = anyio.Event()
        with anyio.move_on_after(RELEASE_TIMEOUT, shield=True) as timer:
            try:
                await self._revoke(hold)
            except MicroError as exc:
                log.warning(
                    "could not release %s (it ends within its TTL): %s", hold.describe(), exc
                )
            finally:
                hold.released.set()
        if timer.cancelled_caught:
            log.warning("releasing %s timed out; it ends within its TTL", hold.describe())

    async def _resign_hold(self, hold: Hold) -> None:
        hold.expired()  # too late to resign: the hold was lost
        hold.fire("resigned", "resigned")
        await self._release(hold)
        await anyio.lowlevel.checkpoint()  # the body's cancellation takes effect here


async def _raise_lost(hold: Hold) -> None:
    # An outer cancellation takes precedence over reporting the loss.
    await anyio.lowlevel.checkpoint_if_cancelled()
    raise hold.lost_error() from hold.cause


class _Holding:
    """``async with``: take the hold, run the body in a scope the keeper can cancel."""

    def __init__(
        self,
        sync: LeasedSync,
        kind: Kind,
        name: str,
        ttl: float,
        wait: float | None,
        value: str,
        *,
        busy_raises: bool,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a {'lock' if kind == 'lock' else 'election'} name must not be empty")
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        if wait is not None and wait < 0:
            raise ValueError(f"wait must be None or >= 0, not {wait!r}")
        self._sync = sync
        self._hold = Hold(kind, name, value, ttl)
        self._wait = wait
        self._busy_raises = busy_raises
        self._body: anyio.CancelScope | None = None

    async def __aenter__(self) -> HeldLock | None:
        sync, hold = self._sync, self._hold
        if hold.state is not HoldState.WAITING or hold.lease is not None:
            raise RuntimeError("a lock or leadership context can be entered only once")
        task_group = sync._task_group()
        sent = time.monotonic()
        await sync._grant(hold)
        hold.renewed(sent)
        sync._holds.add(hold)
        acquired = False
        try:
            task_group.start_soon(
                sync._keep_lease, hold, name=f"micro.sync lease keeper: {hold.describe()}"
            )
            with anyio.CancelScope() as waiting:
                hold.scope = waiting
                try:
                    acquired = await sync._queue(hold, self._wait)
                except HoldGone as gone:
                    hold.fire("lost", gone.reason)
        except BaseException:
            hold.scope = None
            await sync._release(hold)
            raise
        hold.scope = None
        if acquired:
            hold.expired()  # a lease that lapsed while waiting is lost
        if hold.state is not HoldState.WAITING:
            await sync._release(hold)
            await _raise_lost(hold)
        if not acquired:
            await sync._release(hold)
            if self._busy_raises:
                raise LockBusy(
                    f"{hold.describe()} is held by another holder and was not freed "
                    f"within {self._wait:g}s",
                    id="sync",
                )
            return None
        hold.fire("acquired")
        # No checkpoint since the wait ended: the hold cannot have been lost since.
        # The body ends at the local expiry, moved on by each renewal.
        self._body = anyio.CancelScope(deadline=hold.deadline())
        hold.scope = self._body
        self._body.__enter__()
        hold.guard = expiry_guard(self._body)
        if hold.guard is not None:
            hold.guard.arm(self._body.deadline)
        if hold.kind == "leader":
            return HeldLeadership(hold, sync)
        return HeldLock(hold, sync)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        body, self._body = self._body, None
        if body is None:  # try_lock that gave None
            return False
        hold = self._hold
        if hold.guard is not None:
            hold.guard.disarm()
            hold.guard = None
        swallowed = bool(body.__exit__(exc_type, exc, tb))
        hold.scope = None
        hold.expired()  # a body that ran or was cancelled past the local expiry lost the hold
        await self._sync._release(hold)
        if hold.state is HoldState.LOST and (exc_type is None or swallowed):
            await _raise_lost(hold)
        return swallowed
