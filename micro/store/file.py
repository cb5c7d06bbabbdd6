"""The embedded default: a durable store in one SQLite file.

Theory: SQLite in WAL mode with ``synchronous=FULL`` makes a commit durable
once ``COMMIT`` returns (the WAL is fsynced), and lets readers run while one
writer commits; several processes may open the same file, and SQLite's locks
(with a busy timeout) take their writes in turn. SQLite blocks, so every call
runs in a worker thread through ``anyio.to_thread``.

An fsync costs milliseconds, so writes are *group committed*: a write joins a
queue; if no commit is running, its writer becomes the committer and commits
everything queued in one transaction (one fsync); writes that arrive during
that commit wait for it, and the first of them commits the next group. A
write returns only after the transaction holding it has committed, so an
acknowledged write survives the process being killed right after. A failed
commit rolls the whole group back and every write in it raises: nothing is
half written. A writer cancelled before its group was taken leaves the queue.

Reads are batched the same way, on a connection of their own, so concurrent
readers share one hop to a worker thread; in WAL mode they never wait for a
writer. Expired rows are filtered out by every query and deleted by a commit
at most once a minute.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..refcount import Users
from ._group import Batcher, Pending
from ._records import (
    PREFIX_END,
    Prepared,
    check_scan,
    decode_key,
    decode_metadata,
    encode_key,
    namespace,
    not_open,
    prepare_write,
)
from .base import Record, RecordNotFound, StoreOptions, StoreUnavailable

__all__ = ["FileStore", "default_path"]

#: seconds a write waits for another process's transaction before failing
DEFAULT_BUSY_TIMEOUT = 30.0
#: seconds between deletions of expired rows (queries skip them in between)
PURGE_INTERVAL = 60.0
#: most writes, and bytes of values, one transaction commits (bounds its memory and time)
GROUP_ITEMS = 1024
GROUP_BYTES = 32 * 1024 * 1024
#: most queries one hop to a worker thread runs
READ_ITEMS = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    db BLOB NOT NULL,
    tbl BLOB NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    metadata BLOB NOT NULL,
    expiry REAL,
    PRIMARY KEY (db, tbl, key)
);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expiry) WHERE expiry IS NOT NULL;
"""
_UPSERT = (
    "INSERT INTO records (db, tbl, key, value, metadata, expiry) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (db, tbl, key) DO UPDATE SET "
    "value = excluded.value, metadata = excluded.metadata, expiry = excluded.expiry"
)
_DELETE = "DELETE FROM records WHERE db = ? AND tbl = ? AND key = ?"
_LIVE = "(expiry IS NULL OR expiry > ?)"  # bound to _NOW
#: a query argument that becomes the time when the query runs
_NOW: Any = object()


def default_path() -> Path:
    """``store.db`` in micro's folder of the user's data directory."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "micro" / "store.db"


@dataclass(frozen=True, slots=True)
class _Write:
    """One write: the row's (db, tbl, key) and its value, or None for a delete."""

    row: tuple[bytes, bytes, bytes]
    value: Prepared | None


@dataclass(frozen=True, slots=True)
class _Query:
    sql: str
    args: tuple[Any, ...]


class FileStore:
    """A Store in a SQLite file; ``async with FileStore("app.db") as store:``.

    ``synchronous=False`` skips the fsync of each commit: writes then survive
    the process dying but not the machine losing power.
    """

    kind = "file"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        options: StoreOptions | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        synchronous: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.options = options if options is not None else StoreOptions()
        self.busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._users = Users()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._writes: Batcher[_Write, None] = Batcher(
            self._commit, max_items=GROUP_ITEMS, max_bytes=GROUP_BYTES
        )
        self._reads: Batcher[_Query, builtins.list[Any]] = Batcher(
            self._read, max_items=READ_ITEMS, max_bytes=0
        )
        self._purged = 0.0
        # Set while the first user opens the file, and while the last one closes it.
        self._opening: anyio.Event | None = None
        self._closing: anyio.Event | None = None

    # -- lifecycle --

    async def __aenter__(self) -> FileStore:
        # A user arriving while the first one opens the file, or the last one closes
        # it, waits for that to end: then it is open (or failed to open: try again),
        # or closed (open it anew).
        while True:
            busy = self._opening if self._opening is not None else self._closing
            if busy is None:
                break
            await busy.wait()
        await self._users.enter(self._open)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._users.exit(self._close)

    async def _open(self) -> None:
        self._opening = opening = anyio.Event()
        try:
            with self._errors():
                self._writer, self._reader = await anyio.to_thread.run_sync(self._connect_both)
        finally:
            self._opening = None
            opening.set()

    async def _close(self) -> None:
        self._closing = closing = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                await self._writes.wait_idle()
                await self._reads.wait_idle()
                connections = [self._writer, self._reader]
                self._writer = self._reader = None
                await anyio.to_thread.run_sync(_close_all, connections)
        finally:
            self._closing = None
            closing.set()

    def _connect_both(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        writer = self._connect(True)
        try:
            return writer, self._connect(False)
        except BaseException:
            writer.close()
            raise

    def _connect(self, writer: bool) -> sqlite3.Connection:
        if writer:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            if writer:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(f"PRAGMA synchronous={'FULL' if self._synchronous else 'NORMAL'}")
                con.executescript(_SCHEMA)
        except BaseException:
            con.close()
            raise
        return con

    # -- the Store protocol --

    async def read(
        self,
        key: str,
        *,
        prefix: bool = False,
        suffix: bool = False,
        limit: int | None = None,
        offset: int = 0,
        database: str | None = None,
        table: str | None = None,
    ) -> builtins.list[Record]:
        self._check_open()
        ns = _ns(self.options, database, table)
        if not (prefix or suffix):
            kb = encode_key(key, self.options, self.kind)
            sql = f"SELECT key, value, metadata, expiry FROM records WHERE db = ? AND tbl = ? AND key = ? AND {_LIVE}"  # noqa: E501
            rows = await self._query(sql, (*ns, kb, _NOW))
            if not rows:
                raise RecordNotFound(f"no record {key!r}")
        else:
            where, args = _range(key if prefix else "", key if suffix else "", limit, offset)
            rows = await self._query(
                f"SELECT key, value, metadata, expiry FROM records {where}", (*ns, *args)
            )
        return [Record(decode_key(k), v, decode_metadata(m), e) for k, v, m, e in rows]

    async def list(
        self,
        *,
        prefix: str = "",
        suffix: str = "",
        limit: int | None = None,
        offset: int = 0,
        database: str | None = None,
        table: str | None = None,
    ) -> builtins.list[str]:
        self._check_open()
        ns = _ns(self.options, database, table)
        where, args = _range(prefix, suffix, limit, offset)
        rows = await self._query(f"SELECT key FROM records {where}", (*ns, *args))
        return [decode_key(k) for (k,) in rows]

    async def write(
        self,
        record: Record,
        *,
        ttl: float | None = None,
        expiry: float | None = None,
        database: str | None = None,
        table: str | None = None,
    ) -> None:
        self._check_open()
        done = prepare_write(
            record, self.options, self.kind, ttl=ttl, expiry=expiry, database=database, table=table
        )
        row = (_utf8(done.database), _utf8(done.table), done.key)
        await self._submit(_Write(row, done))

    async def delete(
        self, key: str, *, database: str | None = None, table: str | None = None
    ) -> None:
        self._check_open()
        ns = _ns(self.options, database, table)
        await self._submit(_Write((*ns, encode_key(key, self.options, self.kind)), None))

    # -- batches --

    async def _submit(self, write: _Write) -> None:
        size = 0 if write.value is None else len(write.value.value) + len(write.value.metadata)
        await self._writes.submit(write, size)

    async def _commit(self, batch: builtins.list[Pending[_Write, None]]) -> None:
        await anyio.to_thread.run_sync(self._commit_in_thread, batch)

    def _commit_in_thread(self, batch: builtins.list[Pending[_Write, None]]) -> None:
        """One transaction for the batch; each write is marked done, or failed if it failed."""
        try:
            con = self._writer
            if con is None:
                raise not_open(self.kind)
            now = time.time()
            purge = now - self._purged > PURGE_INTERVAL
            with self._errors():
                con.execute("BEGIN IMMEDIATE")
                try:
                    for pending in batch:
                        write = pending.item
                        if write.value is None:
                            con.execute(_DELETE, write.row)
                        else:
                            v = write.value
                            con.execute(_UPSERT, (*write.row, v.value, v.metadata, v.expiry))
                    if purge:
                        con.execute("DELETE FROM records WHERE expiry <= ?", (now,))
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
            if purge:
                self._purged = now
        except Exception as exc:
            detail = exc.detail if isinstance(exc, StoreUnavailable) else repr(exc)
            for pending in batch:  # an error of its own for each writer to raise
                pending.fail(StoreUnavailable(detail))
            return
        for pending in batch:
            pending.finish()

    async def _query(self, sql: str, args: tuple[Any, ...]) -> builtins.list[Any]:
        rows = await self._reads.submit(_Query(sql, args))
        assert rows is not None
        return rows

    async def _read(self, batch: builtins.list[Pending[_Query, builtins.list[Any]]]) -> None:
        await anyio.to_thread.run_sync(self._read_in_thread, batch)

    def _read_in_thread(self, batch: builtins.list[Pending[_Query, builtins.list[Any]]]) -> None:
        con = self._reader
        for pending in batch:
            try:
                if con is None:
                    raise not_open(self.kind)
                # Expiry is judged when the query runs, not when it was queued.
                now = time.time()
                args = tuple(now if arg is _NOW else arg for arg in pending.item.args)
                with self._errors():
                    pending.finish(con.execute(pending.item.sql, args).fetchall())
            except StoreUnavailable as exc:
                pending.fail(exc)

    # -- errors --

    def _check_open(self) -> None:
        if self._writer is None:
            raise not_open(self.kind)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the file store at {self.path} failed: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(
                f"the file store at {self.path} cannot be opened: {exc}"
            ) from exc


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _ns(options: StoreOptions, database: str | None, table: str | None) -> tuple[bytes, bytes]:
    database, table = namespace(options, database, table)
    return _utf8(database), _utf8(table)


def _range(prefix: str, suffix: str, limit: int | None, offset: int) -> tuple[str, tuple[Any, ...]]:
    """WHERE, ORDER BY and LIMIT for live keys with the prefix and suffix."""
    start, end = check_scan(prefix, suffix, limit, offset)
    sql = f"WHERE db = ? AND tbl = ? AND key >= ? AND key < ? AND {_LIVE}"
    args: tuple[Any, ...] = (start, start + PREFIX_END, _NOW)
    if end:
        sql += " AND substr(key, ?) = ?"
        args += (-len(end), end)
    sql += " ORDER BY key LIMIT ? OFFSET ?"
    return sql, (*args, -1 if limit is None else limit, offset)


def _close_all(connections: builtins.list[sqlite3.Connection | None]) -> None:
    for con in connections:
        if con is not None:
            con.close()
