"""A store in Redis, through coredis (built on AnyIO: runs under asyncio and Trio).

Each table is three Redis keys under ``<prefix><database>:<table>`` (names
escaped, "%" and ":" as %25 and %3A):

- ``…:d:<key>``, a string per record: the record packed with its metadata and
  expiry, with Redis's own expiry (``PXAT``) when it has one;
- ``…:i``, a sorted set of every key at score 0, so ``ZRANGE … BYLEX`` lists
  keys in byte order (code point order) and pages with ``LIMIT``;
- ``…:x``, a sorted set of the keys that expire, scored by expiry in ms.

Writes, deletes and scans are Lua scripts, so each is atomic: a write never
leaves a record without its index entry. Writes and deletes in flight
together go as one script call (see ``_group``), point reads as one MGET.
A scan first drops from the index every key whose expiry has passed by the
server's clock (the same clock Redis expires the records by), then ranges
over it. Every record read is also checked against its packed expiry by this
process's clock, so an expired record is never returned. Scripts reach
records by names built from their arguments, which a single Redis allows
(Redis Cluster does not).
"""

from __future__ import annotations

import builtins
import contextlib
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import coredis
import coredis.exceptions

from .._redis import RedisServer, errors, escape, shared_client
from ..refcount import Users
from ._group import Batcher, Pending
from ._records import (
    PREFIX_END,
    check_scan,
    decode_key,
    encode_key,
    namespace,
    not_open,
    pack,
    prepare_write,
    unpack_record,
)
from .base import Record, RecordNotFound, StoreOptions, StoreUnavailable

__all__ = ["RedisStore"]


@dataclass(frozen=True, slots=True)
class _Write:
    """A write of ``value`` (None: a delete) under ``key`` in the table at ``base``."""

    base: bytes
    key: bytes
    value: bytes | None
    pxat: bytes


#: where records live unless told otherwise
DEFAULT_PREFIX = "micro:store:"
#: seconds to connect, and to wait for one answer; Redis answers in microseconds when healthy
DEFAULT_TIMEOUT = 5.0
#: most operations, and bytes of records, one call carries (a big call holds up the server)
BATCH_ITEMS = 256
BATCH_BYTES = 4 * 1024 * 1024

# KEYS: data, index and expiries of each write in turn. ARGV: "w" (write) or "d"
# (delete), the key, the packed record and its PXAT ("" for none), per write.
_WRITE = """
for i = 0, #KEYS / 3 - 1 do
  local data, index, expiries = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local kind, key, value, pxat = ARGV[4 * i + 1], ARGV[4 * i + 2], ARGV[4 * i + 3], ARGV[4 * i + 4]
  if kind == 'd' then
    redis.call('DEL', data)
    redis.call('ZREM', index, key)
    redis.call('ZREM', expiries, key)
  else
    if pxat == '' then
      redis.call('SET', data, value)
      redis.call('ZREM', expiries, key)
    else
      redis.call('SET', data, value, 'PXAT', pxat)
      redis.call('ZADD', expiries, pxat, key)
    end
    redis.call('ZADD', index, 0, key)
  end
end
return #KEYS / 3
"""

# KEYS: index, expiries. ARGV: record key prefix, lex min, lex max, suffix, offset,
# count (-1: all), "1" to return values.
_SCAN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE')
for i = 1, #gone, 1000 do
  local chunk = {unpack(gone, i, math.min(i + 999, #gone))}
  redis.call('ZREM', KEYS[1], unpack(chunk))
  redis.call('ZREM', KEYS[2], unpack(chunk))
end
local suffix = ARGV[4]
local offset = tonumber(ARGV[5])
local count = tonumber(ARGV[6])
local keys
if suffix == '' then
  keys = redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[3], 'BYLEX', 'LIMIT', offset, count)
else
  keys = {}
  local skipped = 0
  for _, key in ipairs(redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[3], 'BYLEX')) do
    if #key >= #suffix and string.sub(key, -#suffix) == suffix then
      if skipped < offset then
        skipped = skipped + 1
      elseif count < 0 or #keys < count then
        keys[#keys + 1] = key
      else
        break
      end
    end
  end
end
local values = {}
if ARGV[7] == '1' then
  for i, key in ipairs(keys) do
    values[i] = redis.call('GET', ARGV[1] .. key)
  end
end
return {keys, values}
"""


class RedisStore:
    """A Store in Redis; ``async with RedisStore("redis://127.0.0.1:6379/0") as store:``.

    Open and close it in the same task: coredis runs its connections in a task
    group that the opening task hosts. It uses the process's one client for the
    server (:func:`micro._redis.shared_client`), shared with a Redis event stream on it.
    """

    kind = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        options: StoreOptions | None = None,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._server = RedisServer.from_url(url)
        self.host, self.port, self.db = self._server.host, self._server.port, self._server.db
        self.timeout = timeout
        self.options = options if options is not None else StoreOptions()
        self.prefix = prefix
        self._client: coredis.Redis[bytes] | None = None
        self._scripts: dict[str, Any] = {}
        # Writes in flight together go as one script call, point reads as one MGET.
        self._writes: Batcher[_Write, None] = Batcher(
            self._commit, max_items=BATCH_ITEMS, max_bytes=BATCH_BYTES
        )
        self._reads: Batcher[bytes, bytes] = Batcher(self._get, max_items=BATCH_ITEMS, max_bytes=0)
        self._users = Users()
        # The process's one client for the server, shared with a Redis event stream on it;
        # it has no answer timeout, so each call here is bounded by ``timeout``.
        self._shared = shared_client(self._server, connect_timeout=timeout)

    @property
    def address(self) -> str:
        return self._server.address

    async def __aenter__(self) -> RedisStore:
        await self._users.enter(self._open)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._users.exit(self._close)

    async def _open(self) -> None:
        self._client, self._scripts = await self._shared.open(
            StoreUnavailable, {"write": _WRITE, "scan": _SCAN}
        )

    async def _close(self) -> None:
        if self._client is not None:
            with anyio.CancelScope(shield=True):
                await self._writes.wait_idle()
            self._client = None
            await self._shared.close()

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
        base = self._base(database, table)
        if prefix or suffix:
            keys, values = await self._scan(
                base, key if prefix else "", key if suffix else "", limit, offset, values=True
            )
            found = (_record(k, v) for k, v in zip(keys, values, strict=True))
            return [r for r in found if r is not None]
        member = encode_key(key, self.options, self.kind)
        data = await self._reads.submit(base + b":d:" + member)
        record = None if data is None else _record(member, data)
        if record is None:
            raise RecordNotFound(f"no record {key!r}")
        return [record]

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
        base = self._base(database, table)
        keys, _ = await self._scan(base, prefix, suffix, limit, offset, values=False)
        return [decode_key(k) for k in keys]

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
        base = self._base(done.database, done.table)
        # Rounded down: Redis and the index drop it at most a millisecond early, never late.
        pxat = b"" if done.expiry is None else str(math.floor(done.expiry * 1000)).encode()
        packed = pack(done.value, done.metadata, done.expiry)
        await self._writes.submit(_Write(base, done.key, packed, pxat), len(packed))

    async def delete(
        self, key: str, *, database: str | None = None, table: str | None = None
    ) -> None:
        base = self._base(database, table)
        member = encode_key(key, self.options, self.kind)
        await self._writes.submit(_Write(base, member, None, b""), len(member))

    # -- batches --

    async def _commit(self, batch: builtins.list[Pending[_Write, None]]) -> None:
        """Every write of the batch in one script call, which Redis runs atomically."""
        keys: builtins.list[bytes] = []
        args: builtins.list[bytes] = []
        for pending in batch:
            write = pending.item
            keys += [write.base + b":d:" + write.key, write.base + b":i", write.base + b":x"]
            if write.value is None:
                args += [b"d", write.key, b"", b""]
            else:
                args += [b"w", write.key, write.value, write.pxat]
        try:
            # Shielded: other writers' records ride on this call (bounded by the timeout).
            with anyio.CancelScope(shield=True), self._errors():
                await self._scripts["write"](keys, args)
        except StoreUnavailable as exc:
            for pending in batch:  # an error of its own for each writer to raise
                pending.fail(StoreUnavailable(exc.detail))
            return
        for pending in batch:
            pending.finish()

    async def _get(self, batch: builtins.list[Pending[bytes, bytes]]) -> None:
        """Every record of the batch with one MGET."""
        try:
            async with self._client_for_call() as client:
                values = await client.mget([p.item for p in batch])
        except StoreUnavailable as exc:
            for pending in batch:
                pending.fail(StoreUnavailable(exc.detail))
            return
        for pending, value in zip(batch, values, strict=True):
            pending.finish(value)

    # -- internals --

    def _base(self, database: str | None, table: str | None) -> bytes:
        self._check_open()
        database, table = namespace(self.options, database, table)
        name = f"{self.prefix}{escape(database)}:{escape(table)}"
        return name.encode("utf-8", "surrogatepass")

    async def _scan(
        self,
        base: bytes,
        prefix: str,
        suffix: str,
        limit: int | None,
        offset: int,
        *,
        values: bool,
    ) -> tuple[builtins.list[bytes], builtins.list[bytes | None]]:
        start, end = check_scan(prefix, suffix, limit, offset)
        args: list[Any] = [
            base + b":d:",
            b"[" + start,
            b"(" + start + PREFIX_END,
            end,
            offset,
            -1 if limit is None else limit,
            b"1" if values else b"0",
        ]
        async with self._script("scan") as scan:
            reply = await scan([base + b":i", base + b":x"], args)
        keys, found = reply
        return list(keys), list(found)

    def _check_open(self) -> None:
        if self._client is None:
            raise not_open(self.kind)

    @contextlib.asynccontextmanager
    async def _client_for_call(self) -> AsyncIterator[coredis.Redis[bytes]]:
        if self._client is None:
            raise not_open(self.kind)
        with self._errors():
            yield self._client

    @contextlib.asynccontextmanager
    async def _script(self, name: str) -> AsyncIterator[Any]:
        if self._client is None:
            raise not_open(self.kind)
        with self._errors():
            yield self._scripts[name]

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A call to the server: bounded by ``timeout``, its failure a StoreUnavailable."""
        with errors(self.address, StoreUnavailable):
            try:
                with anyio.fail_after(self.timeout):
                    yield
            except TimeoutError:
                raise TimeoutError(f"no answer within {self.timeout}s") from None


def _record(key: bytes, data: bytes | None) -> Record | None:
    return None if data is None else unpack_record(key, data)
