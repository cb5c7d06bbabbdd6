"""Event streams in SQLite: the engine of the memory and file backends.

Theory: a topic is rows of ``events`` numbered by ``seq`` (``topics.next_seq``
never goes back, so trimming never reuses a number). A group is a cursor (the
last ``seq`` handed out) plus ``pending`` rows: events handed out and not yet
acknowledged, each with its delivery count and the time it is due back. A
consumer *claims* a batch in one transaction: pending rows that are due come
first (each delivered again, or dead-lettered once it has had ``1 +
retry_limit`` deliveries), then events past the cursor, which advances. Acks
delete pending rows; nacks make them due at once. Acks ride with the batch:
one made while more of the claimed batch waits to be handed out is written by
the consumer's next claim, in its transaction (or with the batch's last ack,
or when the consumer stops); one never written, as the process died, only
means the event is delivered again after ``ack_wait``. A consumer without a group
gets a group of its own (named ``~<hex>``), dropped when it stops.

Every operation runs in the writer's transaction, and operations that arrive
while one commits are group committed together (see :mod:`micro.store._group`).
The file backend runs them in a worker thread on a WAL database with
``synchronous=FULL`` for transactions holding a publish (``NORMAL``, no fsync,
for the rest): ``publish`` returns once the event is on disk, and
several processes may share the file (SQLite's lock takes their transactions
in turn). The memory backend runs the same SQL on an in-memory database in the
event loop's thread. A consumer with nothing to claim waits for a local
change (a publish, nack or release in this process), the next due pending
row, or (file) ``poll_interval`` for other processes' writes.

It is one module past the usual size because it is one backend's schema and the
statements over it: publish, claim, settle, dead-letter and retention share the
tables and the transactions that keep them consistent.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..broker.base import new_message_id
from ..refcount import Users
from ..store._group import Batcher, Pending
from .base import (
    DEAD_SUFFIX,
    Event,
    EventsUnavailable,
    Offset,
    PublishError,
    check_consume_call,
    check_read,
    check_retention,
    check_topic,
    close_consumed,
    dead_metadata,
    encode_event,
)

__all__ = ["SqliteEventStream"]

#: events one claim hands a consumer at most (the rest wait for its next claim)
PREFETCH = 32
#: operations, and bytes of payload, one transaction commits at most
GROUP_ITEMS = 1024
GROUP_BYTES = 32 * 1024 * 1024
#: seconds after its last claim that a crashed group-less consumer's rows are dropped
EPHEMERAL_TTL = 3600.0
#: seconds between a live consumer's marks that it is still there (well under EPHEMERAL_TTL)
SEEN_INTERVAL = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY, next_seq INTEGER NOT NULL, max_age REAL, max_events INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    topic TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, ts REAL NOT NULL,
    metadata TEXT NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (topic, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_ts ON events (topic, ts);
CREATE TABLE IF NOT EXISTS groups (
    topic TEXT NOT NULL, grp TEXT NOT NULL, cursor INTEGER NOT NULL, seen REAL NOT NULL,
    PRIMARY KEY (topic, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    topic TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL,
    deliveries INTEGER NOT NULL, due REAL NOT NULL, PRIMARY KEY (topic, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_due ON pending (topic, grp, due);
"""
_COLUMNS = "seq, id, ts, metadata, payload"

Op = Callable[[sqlite3.Connection, float], Any]


@dataclass(frozen=True, slots=True)
class _Queued:
    """An operation, and whether its commit must reach the disk before it returns."""

    run: Op
    durable: bool


@dataclass(frozen=True, slots=True)
class _Claimed:
    events: builtins.list[tuple[Any, ...]]  # (seq, id, ts, metadata, payload, deliveries)
    due: float | None  # when the group's next pending row falls due


def _publish(
    con: sqlite3.Connection, now: float, topic: str, id: str, meta: str, payload: bytes
) -> int:
    row = con.execute("SELECT next_seq FROM topics WHERE topic = ?", (topic,)).fetchone()
    if row is None:
        con.execute("INSERT INTO topics (topic, next_seq) VALUES (?, 1)", (topic,))
        seq = 1
    else:
        seq = row[0]
    con.execute("UPDATE topics SET next_seq = ? WHERE topic = ?", (seq + 1, topic))
    con.execute(
        f"INSERT INTO events ({_COLUMNS}, topic) VALUES (?, ?, ?, ?, ?, ?)",
        (seq, id, now, meta, payload, topic),
    )
    _trim(con, now, topic)
    return int(seq)


def _delete_pending(con: sqlite3.Connection, topic: str, group: str, seqs: Sequence[int]) -> None:
    """Acknowledge ``seqs``: the group is done with them."""
    if seqs:
        con.executemany(
            "DELETE FROM pending WHERE topic = ? AND grp = ? AND seq = ?",
            [(topic, group, seq) for seq in seqs],
        )


def _trim(con: sqlite3.Connection, now: float, topic: str) -> None:
    """Drop what ``topic``'s retention no longer keeps."""
    row = con.execute(
        "SELECT next_seq, max_age, max_events FROM topics WHERE topic = ?", (topic,)
    ).fetchone()
    if row is None:
        return
    next_seq, max_age, max_events = row
    if max_events is not None:
        con.execute(
            "DELETE FROM events WHERE topic = ? AND seq < ?", (topic, next_seq - max_events)
        )
    if max_age is not None:
        con.execute("DELETE FROM events WHERE topic = ? AND ts < ?", (topic, now - max_age))


def _event_row(con: sqlite3.Connection, topic: str, seq: int) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = con.execute(
        f"SELECT {_COLUMNS} FROM events WHERE topic = ? AND seq = ?", (topic, seq)
    ).fetchone()
    return row


def _to_event(topic: str, row: tuple[Any, ...], deliveries: int = 1) -> Event:
    seq, id, ts, meta, payload = row[:5]
    return Event(id, topic, ts, json.loads(meta), bytes(payload), deliveries, _handle=seq)


def _dead_letter(
    con: sqlite3.Connection, now: float, event: Event, group: str | None, reason: str
) -> None:
    meta = json.dumps(dead_metadata(event, group, reason))
    _publish(con, now, event.topic + DEAD_SUFFIX, event.id, meta, event.payload)


class SqliteEventStream:
    """An EventStream in SQLite; see :class:`MemoryEventStream` and :class:`FileEventStream`."""

    kind = "sqlite"

    def __init__(
        self,
        database: str | Path,
        *,
        threaded: bool,
        synchronous: bool = True,
        poll_interval: float | None = None,
        busy_timeout: float = 30.0,
    ) -> None:
        self._database = database
        self._threaded = threaded
        self._synchronous = synchronous
        #: seconds between looks for other processes' events (None: this process only)
        self.poll_interval = poll_interval
        self._busy_timeout = busy_timeout
        self._con: sqlite3.Connection | None = None
        self._users = Users()
        self._ops: Batcher[_Queued, Any] = Batcher(
            self._run, max_items=GROUP_ITEMS, max_bytes=GROUP_BYTES
        )
        self._changed = anyio.Event()
        self._fsync = synchronous  # what the connection's synchronous setting is now

    # -- lifecycle --

    def _connect(self) -> sqlite3.Connection:
        if isinstance(self._database, Path):
            self._database.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(
            self._database,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={'FULL' if self._synchronous else 'NORMAL'}")
            self._fsync = self._synchronous
            con.executescript(_SCHEMA)
        except BaseException:
            con.close()
            raise
        return con

    async def _open(self) -> None:
        """Open the database on first use (the memory backend keeps it)."""
        if self._con is None:
            try:
                if self._threaded:
                    self._con = await anyio.to_thread.run_sync(self._connect)
                else:
                    self._con = self._connect()
            except (sqlite3.Error, OSError) as exc:
                raise EventsUnavailable(
                    f"the {self.kind} event stream at {self._database} cannot be opened: {exc}"
                ) from exc

    async def _close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            await anyio.to_thread.run_sync(con.close)

    async def __aenter__(self) -> SqliteEventStream:
        await self._users.enter(self._first_open)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._users.exit(self._last_close)

    async def _first_open(self) -> None:
        self._changed = anyio.Event()  # of the event loop that uses the stream now
        await self._open()

    async def _last_close(self) -> None:
        if self._threaded:  # the memory backend keeps its database
            with anyio.CancelScope(shield=True):
                await self._ops.wait_idle()
                await self._close()

    # -- operations --

    async def _submit(
        self, op: Op, size: int = 0, *, wakes: bool = False, durable: bool = False
    ) -> Any:
        """Run ``op`` in the next transaction; ``durable``: fsynced before it returns."""
        if not self._users.open or self._con is None:
            raise EventsUnavailable(
                f"the {self.kind} event stream is not open: use it inside `async with stream:`"
            )
        result = await self._ops.submit(_Queued(op, durable), size)
        if wakes:
            self._changed.set()
            self._changed = anyio.Event()
        return result

    async def _run(self, batch: builtins.list[Pending[_Queued, Any]]) -> None:
        if self._threaded:
            await anyio.to_thread.run_sync(self._apply, batch)
        else:
            self._apply(batch)

    def _apply(self, batch: builtins.list[Pending[_Queued, Any]]) -> None:
        """One transaction for the batch; every operation gets its result, or all fail.

        Only a batch holding a publish is fsynced: claims and acknowledgements
        survive the process dying either way (the WAL is in the OS's hands), and
        the machine losing power may at worst deliver an event again.
        """
        con = self._con
        results = []
        try:
            if con is None:
                raise EventsUnavailable(f"the {self.kind} event stream is closed")
            fsync = self._synchronous and any(p.item.durable for p in batch)
            if fsync != self._fsync:
                con.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
                self._fsync = fsync
            now = time.time()
            con.execute("BEGIN IMMEDIATE")
            try:
                for pending in batch:
                    results.append(pending.item.run(con, now))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        except (sqlite3.Error, EventsUnavailable) as exc:
            detail = exc.detail if isinstance(exc, EventsUnavailable) else str(exc)
            for pending in batch:
                pending.fail(EventsUnavailable(f"the {self.kind} event stream failed: {detail}"))
            return
        for pending, result in zip(batch, results, strict=True):
            pending.finish(result)

    # -- the EventStream protocol --

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Event:
        payload, meta = encode_event(topic, message, metadata, content_type)
        id = new_message_id()
        meta_json = json.dumps(meta)
        stamp: builtins.list[float] = []

        def op(con: sqlite3.Connection, now: float) -> int:
            stamp[:] = [now]
            return _publish(con, now, topic, id, meta_json, payload)

        try:
            seq = await self._submit(op, len(payload), wakes=True, durable=True)
        except EventsUnavailable as exc:
            raise PublishError(f"event for {topic} not stored: {exc.detail}") from None
        return Event(id, topic, stamp[0], meta, payload, _handle=seq)

    async def read(
        self, topic: str, *, since: Offset = "start", limit: int | None = None
    ) -> builtins.list[Event]:
        start = check_read(topic, since, limit)

        def op(con: sqlite3.Connection, now: float) -> builtins.list[tuple[Any, ...]]:
            _trim(con, now, topic)
            return con.execute(
                f"SELECT {_COLUMNS} FROM events WHERE topic = ? AND ts >= ? ORDER BY seq LIMIT ?",
                (topic, now if start is None else start, -1 if limit is None else limit),
            ).fetchall()

        rows = await self._submit(op)
        return [_to_event(topic, row) for row in rows]

    async def retain(
        self, topic: str, *, max_age: float | None = None, max_events: int | None = None
    ) -> None:
        check_topic(topic)
        check_retention(max_age, max_events)

        def op(con: sqlite3.Connection, now: float) -> None:
            con.execute(
                "INSERT INTO topics (topic, next_seq, max_age, max_events) VALUES (?, 1, ?, ?) "
                "ON CONFLICT (topic) DO UPDATE SET "
                "max_age = excluded.max_age, max_events = excluded.max_events",
                (topic, max_age, max_events),
            )
            _trim(con, now, topic)

        await self._submit(op)

    def consume(
        self,
        topic: str,
        *,
        group: str | None = None,
        offset: Offset = None,
        ack_wait: float = 30.0,
        retry_limit: int = 5,
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        start = check_consume_call(topic, group, offset, ack_wait, retry_limit)
        consumer = _Consumer(self, topic, group, ack_wait, retry_limit)
        return consumer.running(start)


class _Consumer:
    """One consumer: claims batches for its group and settles what it was given."""

    def __init__(
        self,
        stream: SqliteEventStream,
        topic: str,
        group: str | None,
        ack_wait: float,
        retry_limit: int,
    ) -> None:
        self.stream = stream
        self.topic = topic
        self.group = group
        self.name = group if group is not None else f"~{new_message_id()}"
        self.ack_wait = ack_wait
        self.retry_limit = retry_limit
        self.buffer: deque[Event] = deque()
        #: events acknowledged while more of their batch waited to be handed out: their
        #: acknowledgements are written with the next claim (or when the consumer stops)
        self.acks: builtins.list[int] = []
        self.seen = 0.0  # when this consumer last marked its group seen

    @asynccontextmanager
    async def running(self, start: float | None) -> AsyncIterator[AsyncIterator[Event]]:
        await self.stream._submit(lambda con, now: self._join(con, now, start))
        events = self._events()
        try:
            yield events
        finally:
            with anyio.CancelScope(shield=True):
                await close_consumed(events)
                await self._leave()

    def _join(self, con: sqlite3.Connection, now: float, start: float | None) -> None:
        topic = self.topic
        if start is None:
            row = con.execute("SELECT next_seq FROM topics WHERE topic = ?", (topic,)).fetchone()
            cursor = 0 if row is None else row[0] - 1
        else:
            first = con.execute(
                "SELECT MIN(seq) FROM events WHERE topic = ? AND ts >= ?", (topic, start)
            ).fetchone()[0]
            if first is None:
                row = con.execute(
                    "SELECT next_seq FROM topics WHERE topic = ?", (topic,)
                ).fetchone()
                cursor = 0 if row is None else row[0] - 1
            else:
                cursor = first - 1
        con.execute(
            "INSERT OR IGNORE INTO groups (topic, grp, cursor, seen) VALUES (?, ?, ?, ?)",
            (topic, self.name, cursor, now),
        )

    async def _leave(self) -> None:
        """Give back what was claimed but never handed out; drop a group of its own."""
        held = [event._handle for event in self.buffer]
        self.buffer.clear()
        acks, self.acks = self.acks, []
        ephemeral = self.group is None

        def op(con: sqlite3.Connection, now: float) -> None:
            where = (self.topic, self.name)
            _delete_pending(con, self.topic, self.name, acks)
            if ephemeral:
                con.execute("DELETE FROM pending WHERE topic = ? AND grp = ?", where)
                con.execute("DELETE FROM groups WHERE topic = ? AND grp = ?", where)
                return
            for seq in held:
                con.execute(
                    "UPDATE pending SET due = 0, deliveries = deliveries - 1 "
                    "WHERE topic = ? AND grp = ? AND seq = ?",
                    (*where, seq),
                )

        if held or acks or ephemeral:
            try:
                await self.stream._submit(op, wakes=bool(held))
            except EventsUnavailable:
                pass  # closed meanwhile: what it held falls due after ack_wait

    async def _events(self) -> AsyncIterator[Event]:
        stream = self.stream
        while True:
            while not self.buffer:
                changed = stream._changed
                acks, self.acks = self.acks, []
                claimed: _Claimed = await stream._submit(partial(self._claim, acks=acks))
                for row in claimed.events:
                    event = _to_event(self.topic, row, row[5])
                    self.buffer.append(
                        Event(
                            event.id,
                            event.topic,
                            event.timestamp,
                            event.metadata,
                            event.payload,
                            event.deliveries,
                            self._settle,
                            event._handle,
                        )
                    )
                if self.buffer:
                    break
                wait = stream.poll_interval
                if claimed.due is not None:
                    until_due = max(claimed.due - time.time(), 0.0)
                    wait = until_due if wait is None else min(wait, until_due)
                with anyio.move_on_after(wait):
                    await changed.wait()
            yield self.buffer.popleft()

    def _claim(self, con: sqlite3.Connection, now: float, *, acks: builtins.list[int]) -> _Claimed:
        topic, name = self.topic, self.name
        _delete_pending(con, topic, name, acks)  # acknowledged first: never claimed again
        _trim(con, now, topic)
        # A claim that finds nothing writes nothing (so an idle file consumer costs
        # no fsync): "seen" is written at most once per SEEN_INTERVAL.
        if now - self.seen > SEEN_INTERVAL:
            seen = con.execute(
                "UPDATE groups SET seen = ? WHERE topic = ? AND grp = ?", (now, topic, name)
            )
            if seen.rowcount == 0:  # dropped as stale while nobody claimed: go on from here
                self._join(con, now, None)
            self.seen = now
        if self.group is None:
            stale = now - EPHEMERAL_TTL
            con.execute(
                "DELETE FROM pending WHERE topic = ? AND grp IN (SELECT grp FROM groups "
                "WHERE topic = ? AND grp LIKE '~%' AND seen < ?)",
                (topic, topic, stale),
            )
            con.execute(
                "DELETE FROM groups WHERE topic = ? AND grp LIKE '~%' AND seen < ?",
                (topic, stale),
            )
        out: builtins.list[tuple[Any, ...]] = []
        due = con.execute(
            "SELECT seq, deliveries FROM pending WHERE topic = ? AND grp = ? AND due <= ? "
            "ORDER BY seq LIMIT ?",
            (topic, name, now, PREFETCH),
        ).fetchall()
        for seq, deliveries in due:
            row = _event_row(con, topic, seq)
            where = (topic, name, seq)
            if row is None:  # dropped by retention meanwhile
                con.execute("DELETE FROM pending WHERE topic = ? AND grp = ? AND seq = ?", where)
            elif deliveries > self.retry_limit:
                event = _to_event(topic, row, deliveries)
                reason = f"not acknowledged after {deliveries} deliveries"
                _dead_letter(con, now, event, self.group, reason)
                con.execute("DELETE FROM pending WHERE topic = ? AND grp = ? AND seq = ?", where)
            else:
                con.execute(
                    "UPDATE pending SET deliveries = ?, due = ? "
                    "WHERE topic = ? AND grp = ? AND seq = ?",
                    (deliveries + 1, now + self.ack_wait, *where),
                )
                out.append((*row, deliveries + 1))
        room = PREFETCH - len(out)
        if room > 0:
            cursor = con.execute(
                "SELECT cursor FROM groups WHERE topic = ? AND grp = ?", (topic, name)
            ).fetchone()[0]
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM events WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
                (topic, cursor, room),
            ).fetchall()
            for row in rows:
                con.execute(
                    "INSERT OR REPLACE INTO pending (topic, grp, seq, deliveries, due) "
                    "VALUES (?, ?, ?, 1, ?)",
                    (topic, name, row[0], now + self.ack_wait),
                )
                out.append((*row, 1))
            if rows:
                con.execute(
                    "UPDATE groups SET cursor = ? WHERE topic = ? AND grp = ?",
                    (rows[-1][0], topic, name),
                )
        next_due = con.execute(
            "SELECT MIN(due) FROM pending WHERE topic = ? AND grp = ?", (topic, name)
        ).fetchone()[0]
        return _Claimed(out, next_due)

    async def _settle(self, event: Event, how: str, reason: str) -> None:
        topic, name, seq = self.topic, self.name, event._handle
        if how == "ack":
            self.acks.append(seq)
            if self.buffer and len(self.acks) < PREFETCH:
                return  # written with the next claim, which this consumer makes next
            acks, self.acks = self.acks, []
            await self.stream._submit(lambda con, now: _delete_pending(con, topic, name, acks))
            return
        where = (topic, name, seq)

        def op(con: sqlite3.Connection, now: float) -> None:
            if how == "nack":
                con.execute(
                    "UPDATE pending SET due = 0 WHERE topic = ? AND grp = ? AND seq = ?", where
                )
                return
            deleted = con.execute(
                "DELETE FROM pending WHERE topic = ? AND grp = ? AND seq = ?", where
            ).rowcount
            if how == "reject" and deleted:
                _dead_letter(con, now, event, self.group, reason)

        await self.stream._submit(op, wakes=how != "ack")
