"""A store in etcd, through the EtcdClient micro's registry, config and sync share.

Each record is one etcd key, ``<prefix><database>/<table>/<key>``, holding the
record packed with its metadata and expiry (database and table names are
escaped, "%" and "/" as %25 and %2F; the key follows as its UTF-8 bytes, so
etcd's byte order is code point order). A record with an expiry is bound to a
lease that ends at or after it; records expiring within the same second share
one lease, so a burst of TTL writes grants few leases. etcd deletes a record
when its lease ends, but a lease may outlive its records by up to a second (or
etcd's minimum TTL), so every read also drops records past their packed
expiry: an expired record is never returned.

Writes and deletes are group committed (see ``_group``): those in flight
together go to etcd as one transaction, which applies all or none of them.
Point reads in flight together go as one transaction of ranges.

Lists page with etcd's sorted, limited ranges: enough keys for
``offset + limit`` are fetched (without values while no key has a lease), and
more only when suffix or expiry filtering left too few.
"""

from __future__ import annotations

import builtins
import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio

from ..errors import MicroError, NotFound, Unavailable, from_http
from ..etcd import (
    DEFAULT_ENDPOINT,
    Delete,
    EtcdClient,
    KeyValue,
    Put,
    Range,
    RangeResult,
    shared_client,
)
from ..refcount import Users
from ._group import Batcher, Pending
from ._records import (
    check_scan,
    decode_key,
    encode_key,
    is_live,
    namespace,
    not_open,
    pack,
    page,
    prepare_write,
    unpack,
    unpack_record,
)
from .base import Record, RecordNotFound, StoreOptions, StoreUnavailable

__all__ = ["EtcdStore"]

#: where records live unless told otherwise
DEFAULT_PREFIX = "/micro/store/"
#: most writes one transaction carries (etcd's default --max-txn-ops)
GROUP_ITEMS = 128
#: bytes of records one transaction carries, under etcd's default 1.5 MiB request limit
GROUP_BYTES = 1024 * 1024
#: point reads one transaction carries (their answer holds each value)
READ_ITEMS = 64


@dataclass(frozen=True, slots=True)
class _Write:
    """A put of ``value`` (None: a delete) at the full etcd key."""

    key: bytes
    value: bytes | None
    expiry: float | None


class EtcdStore:
    """A Store in etcd; ``async with EtcdStore("http://127.0.0.1:2379") as store:``.

    ``client`` shares one EtcdClient with the registry, config and sync parts.
    """

    kind = "etcd"

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        options: StoreOptions | None = None,
        prefix: str = DEFAULT_PREFIX,
        client: EtcdClient | None = None,
    ) -> None:
        self.client = client if client is not None else shared_client(endpoint)
        self.options = options if options is not None else StoreOptions()
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._leases: dict[int, int] = {}  # expiry second -> lease id ending at or after it
        self._writes: Batcher[_Write, None] = Batcher(
            self._commit,
            max_items=GROUP_ITEMS,
            max_bytes=GROUP_BYTES,
            key=lambda write: write.key,  # etcd refuses a transaction that names a key twice
        )
        # Point reads in flight together go as one transaction of ranges.
        self._reads: Batcher[bytes, KeyValue] = Batcher(
            self._get, max_items=READ_ITEMS, max_bytes=0
        )
        self._users = Users()

    async def __aenter__(self) -> EtcdStore:
        await self._users.enter(self.client.__aenter__)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._users.exit(self._close)

    async def _close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._writes.wait_idle()
        self._leases.clear()
        await self.client.__aexit__(None, None, None)

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
        with self._errors():
            base = self._base(database, table)
            if prefix or suffix:
                kvs = await self._scan(
                    base, key if prefix else "", key if suffix else "", limit, offset, values=True
                )
                return [r for r in (self._record(base, kv) for kv in kvs) if r is not None]
            full = base + encode_key(key, self.options, self.kind)
            kv = await self._reads.submit(full)
        record = None if kv is None else self._record(base, kv)
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
        with self._errors():
            base = self._base(database, table)
            kvs = await self._scan(base, prefix, suffix, limit, offset, values=False)
        return [decode_key(kv.key[len(base) :]) for kv in kvs]

    async def write(
        self,
        record: Record,
        *,
        ttl: float | None = None,
        expiry: float | None = None,
        database: str | None = None,
        table: str | None = None,
    ) -> None:
        with self._errors():
            done = prepare_write(
                record,
                self.options,
                self.kind,
                ttl=ttl,
                expiry=expiry,
                database=database,
                table=table,
            )
            full = self._base(done.database, done.table) + done.key
            value = pack(done.value, done.metadata, done.expiry)
            await self._writes.submit(_Write(full, value, done.expiry), len(full) + len(value))

    async def delete(
        self, key: str, *, database: str | None = None, table: str | None = None
    ) -> None:
        with self._errors():
            full = self._base(database, table) + encode_key(key, self.options, self.kind)
            await self._writes.submit(_Write(full, None, None), len(full))

    # -- internals --

    async def _commit(self, group: builtins.list[Pending[_Write, None]]) -> None:
        """Every write of the group in one etcd transaction."""
        # Shielded: other writers' records ride on this request (bounded by the
        # client's timeout), so the committer being cancelled must not cut it.
        with anyio.CancelScope(shield=True):
            try:
                try:
                    await self.client.txn([], [await self._op(p.item) for p in group])
                except NotFound:  # a shared lease was revoked early: take new ones, once
                    self._leases.clear()
                    await self.client.txn([], [await self._op(p.item) for p in group])
            except MicroError as exc:
                for pending in group:  # an error of its own for each writer to raise
                    pending.fail(self._mapped(exc))
                return
        for pending in group:
            pending.finish()

    async def _get(self, batch: builtins.list[Pending[bytes, KeyValue]]) -> None:
        """Every key of the batch in one etcd transaction of ranges."""
        try:
            result = await self.client.txn([], [Range(p.item) for p in batch])
        except MicroError as exc:
            for pending in batch:
                pending.fail(self._mapped(exc))
            return
        for pending, answer in zip(batch, result.responses, strict=True):
            kvs = answer.kvs if isinstance(answer, RangeResult) else ()
            pending.finish(kvs[0] if kvs else None)

    async def _op(self, write: _Write) -> Put | Delete:
        if write.value is None:
            return Delete(write.key)
        lease = 0 if write.expiry is None else await self._lease(write.expiry)
        return Put(write.key, write.value, lease)

    def _mapped(self, exc: MicroError) -> MicroError:
        if isinstance(exc, Unavailable):
            detail = exc.detail
            if self.client.endpoint not in detail:
                detail = f"etcd at {self.client.endpoint}: {detail}"
            return StoreUnavailable(detail, id=exc.id)
        return from_http(exc.code, exc.detail, id=exc.id, grpc_status=exc.grpc_status)

    def _base(self, database: str | None, table: str | None) -> bytes:
        database, table = namespace(self.options, database, table)
        return f"{self.prefix}{_escape(database)}/{_escape(table)}/".encode(
            "utf-8", "surrogatepass"
        )

    async def _lease(self, expiry: float) -> int:
        """A lease ending at or after ``expiry``, shared by records ending in the same second."""
        second = math.ceil(expiry)
        lease = self._leases.get(second)
        if lease is None:
            now = time.time()
            for stale in [s for s in self._leases if s < now]:
                del self._leases[stale]
            granted = await self.client.lease_grant(max(1, math.ceil(second - now)))
            lease = self._leases[second] = granted.id
        return lease

    async def _scan(
        self,
        base: bytes,
        prefix: str,
        suffix: str,
        limit: int | None,
        offset: int,
        *,
        values: bool,
    ) -> builtins.list[KeyValue]:
        """Live keys (with values if asked) under ``base + prefix`` ending in ``suffix``."""
        affix, end = check_scan(prefix, suffix, limit, offset)
        start = base + affix
        needed = None if limit is None else offset + limit
        fetch = 0 if needed is None else max(needed, 1)  # 0: every key
        while True:
            result = await self.client.range(start, prefix=True, limit=fetch, keys_only=not values)
            kvs = result.kvs
            if not values and any(kv.lease for kv in kvs):
                # Leased keys may be past their expiry: read them with their values.
                result = await self.client.range(start, prefix=True, limit=fetch)
                kvs = result.kvs
            now = time.time()
            live = [
                kv
                for kv in kvs
                if kv.key.endswith(end) and len(kv.key) > len(base) and _live(kv, now)
            ]
            if needed is None or not result.more or len(live) >= needed:
                return page(live, limit, offset)
            fetch = max(fetch * 4, len(kvs) + 1)

    def _record(self, base: bytes, kv: KeyValue) -> Record | None:
        return unpack_record(kv.key[len(base) :], kv.value)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Check the store is open; report etcd's unavailability as the store's."""
        if not self._users.open:
            raise not_open(self.kind)
        try:
            yield
        except StoreUnavailable:
            raise
        except Unavailable as exc:
            raise self._mapped(exc) from exc


def _live(kv: KeyValue, now: float) -> bool:
    """Whether the record has not expired (a key read without its value has no lease)."""
    if not kv.value:
        return not kv.lease
    try:
        _, _, expiry = unpack(kv.value)
    except ValueError:
        return False
    return is_live(expiry, now)


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace("/", "%2F")
