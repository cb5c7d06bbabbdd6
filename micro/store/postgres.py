"""A store in PostgreSQL or CockroachDB, through psycopg 3 and its connection pool.

Theory: each (database, table) of the Store API is one SQL table, created on
first use, named ``micro_store_<readable name>_<hash>`` (the hash of both
names keeps any two apart, whatever characters they hold). A row holds the
key as ``BYTEA`` (its UTF-8 bytes with lone surrogates passed through, so
every key round-trips and byte order is code point order), the value as
``BYTEA``, the metadata as ``JSONB`` and the expiry as a ``DOUBLE PRECISION``
timestamp. Prefixes are key ranges on the primary key; suffixes compare the
key's last bytes. Every query skips rows whose expiry has passed by this
process's clock; writes delete them, a table at a time, at most once a minute,
and a service runs a sweeper (:mod:`micro.store.sweeper`) that deletes those of
every table of the schema each ``sweep_interval``.

The SQL is what PostgreSQL and CockroachDB both accept: ``INSERT ... ON
CONFLICT ... DO UPDATE``, ``substring``/``length`` on bytes, a partial index.

psycopg's async API runs only on asyncio, so the blocking API runs in worker
threads (``anyio.to_thread``), which works under asyncio and Trio alike. As
in the file store, operations in flight together share one hop to a thread:
writes go as one transaction (group commit), each table's upserts in it as one
multi-row statement and its deletes as another; point reads of a table go as
one query, and scans one after another on the same connection. A connection
lost (a server restart) is retried on another; a server that stays down is
:class:`StoreUnavailable` carrying the server's or the network's message.

Each hop to a thread has ``timeout`` seconds (``?timeout=10s``). A server that
keeps connections open but never answers (a frozen process or machine) would
block libpq forever, so past the timeout the call raises StoreUnavailable
naming it, and the connection the thread is stuck on has its socket shut
down: the thread wakes with an error, stops, and the pool drops that broken
connection. A write that timed out may or may not have been committed.

It is one module past the usual size because it is one backend: the store
class, the SQL it sends and the bounded hop to a thread (``_Call``) it sends it
through change together.
"""

from __future__ import annotations

import builtins
import hashlib
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import anyio.to_thread
import psycopg
import psycopg.errors
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import BadRequest
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
from ._url import seconds_option
from .base import Record, RecordNotFound, StoreOptions, StoreUnavailable
from .sweeper import WriteSweeps

__all__ = ["PostgresStore"]

T = TypeVar("T")

#: seconds to connect, and to wait for a pooled connection, before a call fails
DEFAULT_TIMEOUT = 10.0
#: connections the pool keeps at most (batching keeps few busy at once)
DEFAULT_POOL_SIZE = 4
#: prefix of the SQL tables' names
DEFAULT_TABLE_PREFIX = "micro_store_"
#: seconds between deletions of expired rows (queries skip them in between)
SWEEP_INTERVAL = 60.0
#: most expired rows one sweep deletes (keeps a sweep's transaction small)
SWEEP_ROWS = 1000
#: tries of one operation when its connection is lost or the server is restarting
ATTEMPTS = 3
#: most writes, and bytes of values, one transaction commits
GROUP_ITEMS = 512
GROUP_BYTES = 16 * 1024 * 1024
#: most queries one hop to a worker thread runs
READ_ITEMS = 256
#: PostgreSQL's longest identifier, in bytes
MAX_IDENTIFIER = 63

_LIVE = "(expiry IS NULL OR expiry > %s)"
_COLUMNS = "key, value, CAST(metadata AS TEXT), expiry"
_NOW: Any = object()  # a query argument that becomes the time when the query runs


@dataclass(frozen=True, slots=True)
class _Table:
    """The SQL names of one (database, table)."""

    name: str
    index: str


@dataclass(frozen=True, slots=True)
class _Write:
    table: _Table
    key: bytes
    value: Prepared | None  # None: a delete


@dataclass(frozen=True, slots=True)
class _Query:
    """A scan (``query`` with ``args``), or with ``key`` a point read of that key."""

    table: _Table
    query: sql.Composed | None = None
    args: tuple[Any, ...] = ()
    key: bytes | None = None


class PostgresStore:
    """A Store in PostgreSQL or CockroachDB;
    ``async with PostgresStore("postgres://user:pass@host:5432/db") as store:``.

    ``url`` is a libpq URL (``postgres://``, ``postgresql://``, or
    ``cockroachdb://``, which means the same), query parameters included, plus
    two of the store's own: ``timeout`` (``?timeout=10s``: how long one call may
    take) and ``sweep_interval`` (``?sweep_interval=1m``: how often the
    service's sweeper deletes expired rows). Arguments given here win over them.
    """

    kind = "postgres"

    def __init__(
        self,
        url: str = "postgres://127.0.0.1:5432/postgres",
        *,
        options: StoreOptions | None = None,
        timeout: float | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        sweep_interval: float | None = None,
    ) -> None:
        self._conninfo, self.address, own = _conninfo(url)
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,29}", table_prefix):
            raise ValueError(
                f"table_prefix {table_prefix!r}: use at most 30 lowercase letters, digits or _"
            )
        self.options = options if options is not None else StoreOptions()
        self.timeout = seconds_option(timeout, own, "timeout", DEFAULT_TIMEOUT)
        #: seconds between the service's sweeps of expired rows (see :meth:`sweep_all`)
        self.sweep_interval = seconds_option(sweep_interval, own, "sweep_interval", SWEEP_INTERVAL)
        # libpq's own bound on connecting, a little past the call's: a server that
        # accepts but never answers is the call's timeout, named as such.
        self._connect_timeout = math.ceil(self.timeout) + 1
        self.pool_size = pool_size
        self.table_prefix = table_prefix
        self._pool: ConnectionPool | None = None
        self._users = Users()
        self._created: set[str] = set()
        self._sweeps = WriteSweeps(self.kind, SWEEP_INTERVAL)
        # Set after a call found the server unreachable: the next call connects on its
        # own first, so it fails at once (with the server's word) or finds it back.
        self._down = False
        self._writes: Batcher[_Write, None] = Batcher(
            self._commit,
            max_items=GROUP_ITEMS,
            max_bytes=GROUP_BYTES,
            key=lambda write: (write.table.name, write.key),  # one row per key per statement
        )
        self._reads: Batcher[_Query, builtins.list[Any]] = Batcher(
            self._query, max_items=READ_ITEMS, max_bytes=0
        )

    # -- lifecycle --

    async def __aenter__(self) -> PostgresStore:
        await self._users.enter(self._open)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._users.exit(self._close)

    async def _open(self) -> None:
        pool: ConnectionPool = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=max(1, self.pool_size),
            open=False,
            # Half the call's time: then the call connects on its own, to say why not.
            timeout=self.timeout / 2,
            kwargs={"autocommit": True, "connect_timeout": self._connect_timeout},
            name=f"micro-store-{self.address}",
        )
        pool.open(wait=False)  # connects in the pool's own threads; calls wait for it
        self._pool = pool

    async def _close(self) -> None:
        if self._pool is None:
            return
        with anyio.CancelScope(shield=True):
            await self._writes.wait_idle()
            await self._reads.wait_idle()
            pool, self._pool = self._pool, None
            await anyio.to_thread.run_sync(pool.close, self.timeout)

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
        names = self._table(database, table)
        if not (prefix or suffix):
            data = encode_key(key, self.options, self.kind)
            rows = await self._run_query(_Query(names, key=data))
            if not rows:
                raise RecordNotFound(f"no record {key!r}")
        else:
            affixes = (key if prefix else "", key if suffix else "")
            query, args = _scan(names, _COLUMNS, *affixes, limit, offset)
            rows = await self._run_query(_Query(names, query, args))
        return [_record(*row) for row in rows]

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
        names = self._table(database, table)
        query, args = _scan(names, "key", prefix, suffix, limit, offset)
        rows = await self._run_query(_Query(names, query, args))
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
        _check_jsonb(record.metadata)
        names = self._table(done.database, done.table)
        await self._writes.submit(
            _Write(names, done.key, done), len(done.value) + len(done.metadata)
        )

    async def delete(
        self, key: str, *, database: str | None = None, table: str | None = None
    ) -> None:
        names = self._table(database, table)
        data = encode_key(key, self.options, self.kind)
        await self._writes.submit(_Write(names, data, None), len(data))

    async def sweep(self, *, database: str | None = None, table: str | None = None) -> int:
        """Delete the table's expired rows now (writes do it once a minute); returns how many.

        Raises :class:`StoreUnavailable` when the server cannot be reached.
        """
        return await self._sweep_now(self._table(database, table))

    async def sweep_all(self) -> int:
        """Delete the expired rows of every store table in the schema, this process's
        or not; returns how many. The service's sweeper calls it each ``sweep_interval``.

        Raises :class:`StoreUnavailable` when the server cannot be reached.
        """
        self._check_open()
        return await self._in_thread(partial(self._attempt, self._sweep_all))

    async def _sweep_now(self, names: _Table) -> int:
        return await self._in_thread(partial(self._attempt, partial(self._sweep, names=names)))

    # -- batches (in worker threads) --

    async def _run_query(self, query: _Query) -> builtins.list[Any]:
        rows = await self._reads.submit(query)
        assert rows is not None
        return rows

    async def _in_thread(self, work: Callable[[_Call], T]) -> T:
        """``work`` in a worker thread, for at most ``timeout`` seconds; past that, its
        connection is shut and dropped and :class:`StoreUnavailable` is raised.

        A caller cancelled meanwhile waits for the thread (within the timeout), so a
        batch is never left running behind the caller's back.
        """
        call = _Call()
        with anyio.move_on_after(self.timeout, shield=True):
            return await anyio.to_thread.run_sync(work, call, abandon_on_cancel=True)
        call.abandon()
        self._down = True  # the next call connects on its own, to find the server back
        raise StoreUnavailable(
            f"postgres at {self.address} did not answer within {self.timeout:g} s "
            "(the store's timeout); its connection was dropped"
        )

    async def _query(self, batch: builtins.list[Pending[_Query, builtins.list[Any]]]) -> None:
        try:
            found = await self._in_thread(partial(self._query_in_thread, batch))
        except StoreUnavailable as exc:
            for pending in batch:
                if not pending.done:
                    pending.fail(StoreUnavailable(exc.detail))
            return
        for pending, rows in found:
            pending.finish(rows)

    def _query_in_thread(
        self, batch: builtins.list[Pending[_Query, builtins.list[Any]]], call: _Call
    ) -> builtins.list[tuple[Pending[_Query, builtins.list[Any]], builtins.list[Any]]]:
        """(operation, rows) for each of the batch; the event loop finishes them, so a
        thread that outlived its timeout touches none."""

        def run(
            con: psycopg.Connection[Any],
        ) -> builtins.list[tuple[Pending[_Query, builtins.list[Any]], builtins.list[Any]]]:
            found: builtins.list[tuple[Pending[_Query, builtins.list[Any]], builtins.list[Any]]]
            found = []
            # Point reads of one table go as one query; scans one by one.
            points: dict[str, builtins.list[Pending[_Query, builtins.list[Any]]]] = {}
            for pending in batch:
                if pending.done:
                    continue
                query = pending.item
                self._create(con, query.table)
                if query.key is not None:
                    points.setdefault(query.table.name, []).append(pending)
                    continue
                assert query.query is not None
                # Expiry is judged when the query runs, not when it was queued.
                args = tuple(time.time() if arg is _NOW else arg for arg in query.args)
                found.append((pending, con.execute(query.query, args).fetchall()))
            for name, pendings in points.items():
                text = f"SELECT {_COLUMNS} FROM {{}} WHERE key = ANY(%s) AND {_LIVE}"
                keys = list({p.item.key for p in pendings})
                rows = {
                    bytes(row[0]): row
                    for row in con.execute(
                        sql.SQL(text).format(sql.Identifier(name)), (keys, time.time())
                    )
                }
                for pending in pendings:
                    row = rows.get(pending.item.key)  # type: ignore[arg-type]
                    found.append((pending, [] if row is None else [row]))
            return found

        return self._attempt(run, call)

    async def _commit(self, batch: builtins.list[Pending[_Write, None]]) -> None:
        try:
            await self._in_thread(partial(self._commit_in_thread, batch))
        except (StoreUnavailable, BadRequest) as exc:
            kind = type(exc)
            for pending in batch:  # an error of its own for each writer to raise
                pending.fail(kind(exc.detail))
            return
        for pending in batch:
            pending.finish()
        for names in {pending.item.table.name: pending.item.table for pending in batch}.values():
            await self._sweeps.after_write(names.name, partial(self._sweep_now, names))

    def _commit_in_thread(self, batch: builtins.list[Pending[_Write, None]], call: _Call) -> None:
        """One transaction for the batch: every write of it commits, or none does."""
        tables = {pending.item.table.name: pending.item.table for pending in batch}

        # The batcher keeps keys distinct in a batch, so each table's upserts go as one
        # statement, and its deletes as another, in any order.
        upserts: dict[str, builtins.list[_Write]] = {}
        deletes: dict[str, builtins.list[bytes]] = {}
        for pending in batch:
            write = pending.item
            if write.value is None:
                deletes.setdefault(write.table.name, []).append(write.key)
            else:
                upserts.setdefault(write.table.name, []).append(write)

        def run(con: psycopg.Connection[Any]) -> None:
            for names in tables.values():
                self._create(con, names)
            with con.transaction():
                for name, writes in upserts.items():
                    con.execute(*_upsert(name, writes))
                for name, keys in deletes.items():
                    query = sql.SQL("DELETE FROM {} WHERE key = ANY(%s)")
                    con.execute(query.format(sql.Identifier(name)), (keys,))

        self._attempt(run, call)

    def _sweep_all(self, con: psycopg.Connection[Any]) -> int:
        # Tables of the store: named with its prefix, with an expiry column (the
        # information schema is standard SQL, which CockroachDB has too).
        tables = con.execute(
            "SELECT DISTINCT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'expiry' "
            "AND substring(table_name FROM 1 FOR %s) = %s",
            (len(self.table_prefix), self.table_prefix),
        ).fetchall()
        deleted = 0
        for (name,) in tables:
            while True:  # in transactions of SWEEP_ROWS rows at most
                count = self._delete_expired(con, name)
                deleted += count
                if count < SWEEP_ROWS:
                    break
        return deleted

    def _sweep(self, con: psycopg.Connection[Any], names: _Table) -> int:
        self._create(con, names)
        return self._delete_expired(con, names.name)

    def _delete_expired(self, con: psycopg.Connection[Any], name: str) -> int:
        ident = sql.Identifier(name)
        query = sql.SQL(
            "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expiry <= %s LIMIT %s)"
        ).format(t=ident)
        return con.execute(query, (time.time(), SWEEP_ROWS)).rowcount

    # -- connections --

    def _attempt(self, work: Callable[[psycopg.Connection[Any]], T], call: _Call) -> T:
        """Run ``work`` on a connection, retrying on another when one is lost, until
        ``call`` is abandoned (its time ran out)."""
        error: Exception | None = None
        for attempt in range(ATTEMPTS):
            pool = self._pool
            if pool is None:
                raise not_open(self.kind)
            if attempt:
                time.sleep(0.05 * 2**attempt)
            try:
                with self._errors():
                    if self._down:
                        result = self._direct(work, call)
                    else:
                        with pool.connection() as con, call.using(con):
                            result = work(con)
            except PoolTimeout as exc:
                # The pool found no connection in time: the next try connects on its
                # own, to work if the server is back or to say why it is not.
                self._down = True
                error = exc
                continue
            except psycopg.errors.UndefinedTable as exc:  # dropped behind our back
                self._created.clear()
                error = exc
                continue
            except psycopg.errors.SerializationFailure as exc:  # CockroachDB asks to retry
                error = exc
                continue
            except psycopg.OperationalError as exc:
                if call.abandoned:  # its socket was shut: the call is over
                    raise _Abandoned from exc
                # A lost connection (the pool drops it) or a server restarting: drop the
                # pool's other dead connections, then try again.
                error = exc
                self._down = True
                try:
                    pool.check()
                except psycopg.Error:
                    pass
                continue
            self._down = False
            return result
        assert error is not None
        raise StoreUnavailable(f"postgres at {self.address} failed: {_message(error)}") from error

    def _direct(self, work: Callable[[psycopg.Connection[Any]], T], call: _Call) -> T:
        """``work`` on a connection of its own: fails at once with the reason when the
        server is down, and works as soon as it is back, whatever the pool's backoff."""
        try:
            con = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
            )
        except psycopg.OperationalError as exc:
            self._down = True
            raise StoreUnavailable(
                f"postgres at {self.address} is unreachable: {_message(exc)}"
            ) from exc
        with con, call.using(con):
            return work(con)

    def _create(self, con: psycopg.Connection[Any], names: _Table) -> None:
        """Create the table on first use (once per process, unless dropped since)."""
        if names.name in self._created:
            return
        table, index = sql.Identifier(names.name), sql.Identifier(names.index)
        statements = [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key BYTEA PRIMARY KEY, value BYTEA NOT NULL, "
                "metadata JSONB NOT NULL, expiry DOUBLE PRECISION)"
            ).format(table),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (expiry) WHERE expiry IS NOT NULL").format(
                index, table
            ),
        ]
        for statement in statements:
            try:
                con.execute(statement)
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
                pass  # another process created it at the same moment
        self._created.add(names.name)

    # -- helpers --

    def _table(self, database: str | None, table: str | None) -> _Table:
        self._check_open()
        database, table = namespace(self.options, database, table)
        return _names(self.table_prefix, database, table)

    def _check_open(self) -> None:
        if self._pool is None:
            raise not_open(self.kind)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (
            PoolTimeout,
            psycopg.OperationalError,
            psycopg.errors.SerializationFailure,
            psycopg.errors.UndefinedTable,
            StoreUnavailable,
        ):
            raise
        except psycopg.Error as exc:
            raise StoreUnavailable(f"postgres at {self.address} failed: {_message(exc)}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"postgres at {self.address} is unreachable: {exc}") from exc


class _Abandoned(StoreUnavailable):
    """The call's time ran out: its thread stops (nobody waits for its outcome)."""

    def __init__(self) -> None:
        super().__init__("the call's timeout passed")


class _Call:
    """One hop to a worker thread, and the connection it works on.

    A blocked libpq call cannot be cancelled from another thread, but shutting
    down its socket wakes it with an error; the pool then drops the connection,
    which is broken, instead of handing it out again. A lock keeps the thread
    from taking a connection after the call was abandoned, and from giving one
    back (to be closed, its descriptor reused) while it is being shut.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.abandoned = False

    @contextmanager
    def using(self, con: psycopg.Connection[Any]) -> Iterator[None]:
        with self._lock:
            if self.abandoned:
                raise _Abandoned
            self._fd = con.fileno()
        try:
            yield
        finally:
            with self._lock:
                self._fd = None

    def abandon(self) -> None:
        """Stop the call: no new connection, and the one in use is shut."""
        with self._lock:
            self.abandoned = True
            if self._fd is None:
                return
            try:
                sock = socket.socket(fileno=os.dup(self._fd))
            except OSError:
                return
            with sock:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _conninfo(url: str) -> tuple[str, str, dict[str, str]]:
    """(the libpq URL, ``host:port/dbname`` for messages, the store's own options)
    for a store URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("postgres", "postgresql", "cockroachdb", "cockroach"):
        raise ValueError(f"not a postgres URL: {url!r} (use postgres://user:pass@host:5432/dbname)")
    default_port = 26257 if scheme.startswith("cockroach") else 5432
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}: {exc}") from None
    host = parts.hostname or "localhost"
    address = f"{host}:{port}/{parts.path.strip('/') or '(default database)'}"
    # The store's own options leave the query; libpq would refuse them.
    query, own = [], {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _OWN_OPTIONS:
            own[name] = value
        else:
            query.append((name, value))
    libpq = ("postgresql", parts.netloc, parts.path, urlencode(query), parts.fragment)
    return urlunsplit(libpq), address, own


_OWN_OPTIONS = ("timeout", "sweep_interval")


def _names(prefix: str, database: str, table: str) -> _Table:
    raw = [name.encode("utf-8", "surrogatepass") for name in (database, table)]
    digest = hashlib.sha256(b"".join(len(b).to_bytes(4, "big") + b for b in raw)).hexdigest()[:12]
    readable = re.sub(r"[^a-z0-9]+", "_", f"{database}_{table}".lower()).strip("_")
    readable = readable[: MAX_IDENTIFIER - len(prefix) - len(digest) - 1]
    name = f"{prefix}{readable}_{digest}" if readable else f"{prefix}{digest}"
    return _Table(name, f"{prefix}x_{digest}")


def _upsert(name: str, writes: builtins.list[_Write]) -> tuple[sql.Composed, builtins.list[Any]]:
    """One INSERT ... ON CONFLICT DO UPDATE for writes of distinct keys to one table."""
    rows = sql.SQL(", ").join([sql.SQL("(%s, %s, CAST(%s AS JSONB), %s)")] * len(writes))
    query = sql.SQL(
        "INSERT INTO {} (key, value, metadata, expiry) VALUES {} "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
        "metadata = excluded.metadata, expiry = excluded.expiry"
    ).format(sql.Identifier(name), rows)
    args: builtins.list[Any] = []
    for write in writes:
        v = write.value
        assert v is not None
        args += [write.key, v.value, (v.metadata or b"{}").decode(), v.expiry]
    return query, args


def _scan(
    names: _Table, columns: str, prefix: str, suffix: str, limit: int | None, offset: int
) -> tuple[sql.Composed, tuple[Any, ...]]:
    """A query of live rows whose keys have the prefix and suffix, in key order, paged."""
    start, end = check_scan(prefix, suffix, limit, offset)
    text = f"SELECT {columns} FROM {{}} WHERE key >= %s AND key < %s AND {_LIVE}"
    args: tuple[Any, ...] = (start, start + PREFIX_END, _NOW)
    if end:
        text += " AND length(key) >= %s AND substring(key FROM length(key) - %s + 1) = %s"
        args += (len(end), len(end), end)
    text += " ORDER BY key"
    if limit is not None:
        text += " LIMIT %s"
        args += (limit,)
    text += " OFFSET %s"
    return sql.SQL(text).format(sql.Identifier(names.name)), (*args, offset)


def _record(key: bytes, value: bytes, metadata: str | bytes, expiry: float | None) -> Record:
    # Text comes back as bytes from a database whose encoding is SQL_ASCII.
    data = metadata if isinstance(metadata, bytes) else metadata.encode()
    return Record(decode_key(key), bytes(value), decode_metadata(data), expiry)


def _check_jsonb(value: object) -> None:
    """JSONB holds no NUL character: refuse such metadata before it reaches the server."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest("metadata holds a NUL character, which PostgreSQL's jsonb cannot")
    elif isinstance(value, dict):
        for name, item in value.items():
            _check_jsonb(name)
            _check_jsonb(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_jsonb(item)


def _message(exc: BaseException) -> str:
    """The server's (or libpq's) message, on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__
