"""In-process store: for tests and for parts of one process sharing data.

Each table is a dict plus a sorted list of its keys (bisect finds a prefix's
range). Records hold the same encoded metadata as the other backends, so
reads return what a durable backend would. Expired records are skipped on
read and swept out at most once a minute on write.
"""

from __future__ import annotations

import builtins
import time
from bisect import bisect_left, insort
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..refcount import Users
from ._records import (
    check_scan,
    decode_metadata,
    encode_key,
    is_live,
    namespace,
    not_open,
    page,
    prepare_write,
)
from .base import Record, RecordNotFound, StoreOptions

__all__ = ["MemoryStore", "default_store"]

#: seconds between sweeps of expired records (reads skip them in between)
SWEEP_INTERVAL = 60.0


@dataclass(slots=True)
class _Entry:
    value: bytes
    metadata: bytes
    expiry: float | None


@dataclass(slots=True)
class _Table:
    entries: dict[str, _Entry] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # sorted

    def remove(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            del self.keys[bisect_left(self.keys, key)]


class MemoryStore:
    """A Store in this process's memory; ``async with MemoryStore() as store:``."""

    kind = "memory"

    def __init__(self, *, options: StoreOptions | None = None) -> None:
        self.options = options if options is not None else StoreOptions()
        self._tables: dict[tuple[str, str], _Table] = {}
        self._users = Users()
        self._swept = time.time()

    async def __aenter__(self) -> MemoryStore:
        await self._users.enter()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._users.exit()

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
        if not (prefix or suffix):
            encode_key(key, self.options, self.kind)
            entry = self._live(namespace(self.options, database, table), key)
            if entry is None:
                raise RecordNotFound(f"no record {key!r}")
            return [_record(key, entry)]
        found = self._matching(
            database, table, key if prefix else "", key if suffix else "", limit, offset
        )
        return [_record(k, entry) for k, entry in found]

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
        where = self._tables.setdefault((done.database, done.table), _Table())
        if record.key not in where.entries:
            insort(where.keys, record.key)
        where.entries[record.key] = _Entry(done.value, done.metadata, done.expiry)
        self._sweep()

    async def delete(
        self, key: str, *, database: str | None = None, table: str | None = None
    ) -> None:
        self._check_open()
        encode_key(key, self.options, self.kind)
        where = self._tables.get(namespace(self.options, database, table))
        if where is not None:
            where.remove(key)

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
        return [k for k, _ in self._matching(database, table, prefix, suffix, limit, offset)]

    # -- internals --

    def _check_open(self) -> None:
        if not self._users.open:
            raise not_open(self.kind)

    def _live(self, where: tuple[str, str], key: str) -> _Entry | None:
        table = self._tables.get(where)
        entry = None if table is None else table.entries.get(key)
        if entry is None or is_live(entry.expiry, time.time()):
            return entry
        assert table is not None
        table.remove(key)
        return None

    def _matching(
        self,
        database: str | None,
        table: str | None,
        prefix: str,
        suffix: str,
        limit: int | None,
        offset: int,
    ) -> builtins.list[tuple[str, _Entry]]:
        check_scan(prefix, suffix, limit, offset)
        where = self._tables.get(namespace(self.options, database, table))
        if where is None:
            return []
        return page(_select(where, prefix, suffix, time.time()), limit, offset)

    def _sweep(self) -> None:
        now = time.time()
        if now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        for where in self._tables.values():
            for key in [k for k, e in where.entries.items() if not is_live(e.expiry, now)]:
                where.remove(key)


def _select(where: _Table, prefix: str, suffix: str, now: float) -> Iterator[tuple[str, _Entry]]:
    keys = where.keys
    for i in range(bisect_left(keys, prefix), len(keys)):
        key = keys[i]
        if not key.startswith(prefix):
            return
        entry = where.entries[key]
        if key.endswith(suffix) and is_live(entry.expiry, now):
            yield key, entry


def _record(key: str, entry: _Entry) -> Record:
    return Record(key, entry.value, decode_metadata(entry.metadata), entry.expiry)


_default: MemoryStore | None = None


def default_store() -> MemoryStore:
    """The process-wide memory store ``MICRO_STORE=memory`` gives."""
    global _default
    if _default is None:
        _default = MemoryStore()
    return _default
