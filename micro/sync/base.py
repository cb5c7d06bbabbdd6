"""The Sync protocol: distributed locks and leader election, and their errors.

A lock or a leadership is a *hold*: a lease with a TTL, queued behind the
holds taken before it on the same name, held once it is first in line. A
lease keeper task renews the lease while the hold lasts. If the lease is lost
(not renewed within its TTL, the backend unreachable for longer than that, the
key deleted from elsewhere) the body of the ``async with`` is cancelled and
:class:`LockLost` or :class:`LeadershipLost` is raised out of the block: code
that relied on the hold never goes on as if it still had it.

A hold is exclusive until its *local expiry*: the TTL after the last grant or
renewal was sent, less a margin; the backend cannot give the name to anyone
else before then. The body's cancel scope has that deadline, and ``held`` and
``fence()`` say False or raise past it, whether or not the lease keeper has run
since (a paused process finds its deadline passed when it runs again).

Each hold has a fencing token: an int that is larger for every later hold of
the same name (etcd: the key's create revision). Pass it to the storage you
write under the lock, and have the storage refuse writes with smaller tokens.

Lifecycle: a Sync is a reference-counted async context manager. Lease keepers
run as tasks of one task group: the one given to :meth:`Sync.running` (a
service passes its own), or one the Sync opens itself on ``async with sync:``.
Closing the Sync ends every hold it still has, cancelling their bodies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import anyio.abc

from ..errors import Conflict, Unavailable

__all__ = [
    "DEFAULT_TTL",
    "LeaderInfo",
    "Lock",
    "Leadership",
    "Sync",
    "LockBusy",
    "LockLost",
    "LeadershipLost",
    "SyncUnavailable",
]

#: seconds a dead holder keeps a lock or leadership: long enough to ride out a
#: GC pause or an etcd leader election, short enough for a quick failover
DEFAULT_TTL = 10.0


class LockBusy(Conflict):
    """The lock stayed held by someone else for the whole ``wait`` (409)."""


class NotHeld(Conflict):
    """Released a lock or leadership that is not held (released already, or lost) (409)."""


class LockLost(Conflict):
    """A held lock's lease was lost; the body was cancelled (409).

    ``reason`` says how: lease expired, backend unreachable past the TTL, key
    deleted from elsewhere, the Sync closed.
    """

    def __init__(self, detail: str = "", *, reason: str = "", id: str = "") -> None:
        super().__init__(detail, id=id)
        self.reason = reason


class LeadershipLost(LockLost):
    """This node stopped being the leader without resigning; the body was cancelled (409)."""


class SyncUnavailable(Unavailable):
    """The sync backend cannot be reached or used (503); the detail says which and why."""


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """Who leads an election: the candidate's id and its fencing token."""

    name: str
    id: str
    token: int


class Lock(Protocol):
    """A held lock, as given by ``async with sync.lock(name) as lock:``."""

    @property
    def name(self) -> str: ...

    @property
    def token(self) -> int:
        """The fencing token: larger than any earlier holder's of this name."""
        ...

    @property
    def ttl(self) -> float:
        """Seconds the lock outlives a holder that stops renewing it."""
        ...

    @property
    def held(self) -> bool:
        """Held now: not lost or released, and the local expiry not passed."""
        ...

    def fence(self) -> int:
        """The fencing token, checked now: raises LockLost if lost, NotHeld if released."""
        ...

    async def release(self) -> None:
        """Release now, before the block ends; raises NotHeld when not held any more."""
        ...


class Leadership(Lock, Protocol):
    """A won election, as given by ``async with sync.leader(name) as leadership:``."""

    @property
    def id(self) -> str:
        """The candidate id this node leads as (what observers see)."""
        ...

    async def resign(self) -> None:
        """Step down now: the body is cancelled and the ``async with`` exits without error."""
        ...


@runtime_checkable
class Sync(Protocol):
    """Distributed locks and leader election."""

    #: this node's id: the default candidate id, and the value stored with holds
    id: str

    def lock(
        self, name: str, *, ttl: float = DEFAULT_TTL, wait: float | None = None
    ) -> AbstractAsyncContextManager[Lock]:
        """Hold lock ``name`` for the block; wait up to ``wait`` seconds (None: no limit).

        Raises LockBusy when ``wait`` passes first (``wait=0``: one try),
        LockLost out of the block when the lease is lost, SyncUnavailable when
        the backend cannot be reached to take the lock.
        """
        ...

    def try_lock(
        self, name: str, *, ttl: float = DEFAULT_TTL
    ) -> AbstractAsyncContextManager[Lock | None]:
        """Like ``lock(name, wait=0)``, but gives None instead of raising LockBusy."""
        ...

    def leader(
        self, name: str, *, ttl: float = DEFAULT_TTL, id: str | None = None
    ) -> AbstractAsyncContextManager[Leadership]:
        """Campaign in election ``name``; run the block while leading.

        Waits until elected (bound it with a cancel scope). Raises
        LeadershipLost out of the block when leadership ends other than by
        :meth:`Leadership.resign`.
        """
        ...

    async def current_leader(self, name: str) -> LeaderInfo | None:
        """Who leads election ``name`` now, or None; raises SyncUnavailable."""
        ...

    def watch_leader(
        self, name: str
    ) -> AbstractAsyncContextManager[AsyncIterator[LeaderInfo | None]]:
        """The leader of ``name`` now, then at every change (None: nobody leads).

        Iteration raises SyncUnavailable when the backend cannot be reached.
        """
        ...

    async def resign(self, name: str) -> LeaderInfo | None:
        """Make the leader of ``name`` step down, from any node; the one deposed, or None.

        Its body is cancelled and raises LeadershipLost; the next candidate leads.
        """
        ...

    def running(self, task_group: anyio.abc.TaskGroup) -> AbstractAsyncContextManager[Sync]:
        """Open the Sync with its lease keepers as tasks of ``task_group``."""
        ...

    async def __aenter__(self) -> Sync: ...

    async def __aexit__(self, *exc_info: object) -> None: ...
