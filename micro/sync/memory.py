"""In-process locks and elections, with the etcd backend's semantics.

Every MemorySync sharing one :class:`MemorySyncState` (by default the
process's) contends for the same names, like nodes sharing an etcd. Entries
wait per name in the order of their tokens, drawn from one counter as etcd
draws revisions. A lease is a deadline on the monotonic clock that the keeper
pushes back every third of the TTL; a deadline that passed is expired by
whoever looks next (lazy expiry, as in the memory registry). So a holder whose
event loop stalls past its TTL loses the hold to the next in line. The holder
knows it first: its hold expires locally a margin before the entry's deadline
(see ``lease``), so its body is cancelled at its next wait and ``held`` is
False as soon as the loop runs again, before any keeper runs. A waiter waits for the entry just
ahead of it to be removed, or for that entry's deadline.

All users of one state must run in one event loop.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from .base import LeaderInfo
from .lease import Hold, HoldGone, LeasedSync

__all__ = ["MemorySync", "MemorySyncState", "default_state"]

_Key = tuple[str, str]  # (kind, name)


@dataclass(eq=False)
class _Entry:
    key: _Key
    value: str
    ttl: float
    token: int
    deadline: float  # time.monotonic() after which the lease has expired
    gone: anyio.Event = field(default_factory=anyio.Event)
    reason: str = ""

    def info(self) -> LeaderInfo:
        return LeaderInfo(name=self.key[1], id=self.value, token=self.token)


class MemorySyncState:
    """The queues of every lock and election of the MemorySyncs sharing it."""

    def __init__(self) -> None:
        self._queues: dict[_Key, list[_Entry]] = {}
        self._listeners: dict[_Key, list[anyio.Event]] = {}
        self._revision = 0

    def add(self, key: _Key, value: str, ttl: float) -> _Entry:
        """Queue a new entry with a lease of ``ttl`` seconds; its token beats every earlier one."""
        self._revision += 1
        entry = _Entry(key, value, ttl, self._revision, time.monotonic() + ttl)
        self._queues.setdefault(key, []).append(entry)
        self._notify(key)
        return entry

    def live(self, key: _Key) -> list[_Entry]:
        """The entries of ``key`` in token order, after expiring overdue ones."""
        now = time.monotonic()
        for entry in list(self._queues.get(key, ())):
            if entry.deadline < now:
                self.remove(entry, _expired(entry))
        return list(self._queues.get(key, ()))

    def refresh(self, entry: _Entry) -> bool:
        """Push the entry's deadline back by its TTL; False (and expire it) if too late."""
        if entry.gone.is_set():
            return False
        now = time.monotonic()
        if entry.deadline < now:
            self.remove(entry, _expired(entry))
            return False
        entry.deadline = now + entry.ttl
        return True

    def remove(self, entry: _Entry, reason: str) -> None:
        if entry.gone.is_set():
            return
        queue = self._queues.get(entry.key, [])
        queue.remove(entry)
        if not queue:
            self._queues.pop(entry.key, None)
        entry.reason = reason
        entry.gone.set()
        self._notify(entry.key)

    @contextlib.contextmanager
    def listening(self, key: _Key) -> Iterator[anyio.Event]:
        """An event set at the next change of ``key``'s queue."""
        event = anyio.Event()
        listeners = self._listeners.setdefault(key, [])
        listeners.append(event)
        try:
            yield event
        finally:
            if event in listeners:
                listeners.remove(event)
            if not listeners:
                self._listeners.pop(key, None)

    def _notify(self, key: _Key) -> None:
        for event in self._listeners.pop(key, ()):
            event.set()


def _expired(entry: _Entry) -> str:
    return f"its lease expired: not renewed within its TTL ({entry.ttl:g}s)"


_default: MemorySyncState | None = None


def default_state() -> MemorySyncState:
    """The process-wide state MemorySyncs share unless given one."""
    global _default
    if _default is None:
        _default = MemorySyncState()
    return _default


class MemorySync(LeasedSync):
    """Locks and leader election within one process; ``async with MemorySync() as sync:``."""

    def __init__(self, *, state: MemorySyncState | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = state if state is not None else default_state()

    async def _open(self) -> None:
        pass

    async def _close(self) -> None:
        pass

    async def _grant(self, hold: Hold) -> None:
        entry = self.state.add((hold.kind, hold.name), hold.value, hold.ttl)
        hold.lease, hold.token = entry, entry.token

    async def _ahead(self, hold: Hold) -> _Entry | None:
        await anyio.lowlevel.checkpoint()
        entry: _Entry = hold.lease
        entries = self.state.live(entry.key)
        if entry.gone.is_set():
            raise HoldGone(entry.reason)
        index = entries.index(entry)
        return entries[index - 1] if index else None

    async def _wait_gone(self, hold: Hold, ahead: _Entry) -> None:
        with anyio.move_on_after(max(0.0, ahead.deadline - time.monotonic())):
            await ahead.gone.wait()

    async def _keep(self, hold: Hold) -> None:
        entry: _Entry = hold.lease
        while True:
            with anyio.move_on_after(hold.ttl / 3):
                await entry.gone.wait()
            if hold.expired():
                return
            sent = time.monotonic()
            if not self.state.refresh(entry):
                hold.fire("lost", entry.reason)
                return
            hold.renewed(sent)

    async def _revoke(self, hold: Hold) -> None:
        self.state.remove(hold.lease, "released")

    # -- observers --

    async def current_leader(self, name: str) -> LeaderInfo | None:
        await anyio.lowlevel.checkpoint()
        entries = self.state.live(("leader", name))
        return entries[0].info() if entries else None

    @contextlib.asynccontextmanager
    async def watch_leader(self, name: str) -> AsyncIterator[AsyncIterator[LeaderInfo | None]]:
        changes = self._leader_changes(("leader", name))
        try:
            yield changes
        finally:
            await changes.aclose()

    async def _leader_changes(self, key: _Key) -> AsyncGenerator[LeaderInfo | None, None]:
        last: LeaderInfo | str | None = "unset"
        while True:
            with self.state.listening(key) as changed:
                entries = self.state.live(key)
                info = entries[0].info() if entries else None
                if info != last:
                    last = info
                    ready = True
                else:
                    ready = False
                    # Wake at the leader's deadline too: nothing announces an expiry.
                    timeout = entries[0].deadline - time.monotonic() if entries else math.inf
                    with anyio.move_on_after(max(0.0, timeout)):
                        await changed.wait()
            if ready:
                yield info

    async def resign(self, name: str) -> LeaderInfo | None:
        await anyio.lowlevel.checkpoint()
        entries = self.state.live(("leader", name))
        if not entries:
            return None
        self.state.remove(entries[0], "resigned from elsewhere (its entry was deleted)")
        return entries[0].info()
