"""One database/table of a store, and typed values in it.

``Table(store, "users", database="app")`` works in one namespace: its
``read``/``write``/``delete``/``list`` are the store's with ``database`` and
``table`` bound. ``put`` and ``get`` store any value a micro codec encodes
(dataclasses, ``TypedDict``, pydantic models, protobuf messages, dicts, …),
recording the codec's content type in the record's metadata so ``get``
decodes with the codec that encoded it.
"""

from __future__ import annotations

import builtins
from typing import Any, TypeVar, overload

from ..codec import Codec, for_content_type, get
from ..errors import BadRequest
from .base import Record, RecordNotFound, Store

__all__ = ["Table", "CONTENT_TYPE"]

T = TypeVar("T")
D = TypeVar("D")

#: the metadata key holding the content type of a value put by ``Table.put``
CONTENT_TYPE = "content-type"

_MISSING: Any = object()


class Table:
    """A store's handle for one database and table, with typed ``put``/``get``.

    ``database`` and ``table`` default to the store's options; ``codec`` (a
    name or a Codec, default JSON) encodes what ``put`` is given.
    """

    def __init__(
        self,
        store: Store,
        table: str | None = None,
        *,
        database: str | None = None,
        codec: str | Codec = "json",
    ) -> None:
        self.store = store
        self.database = database if database is not None else store.options.database
        self.table = table if table is not None else store.options.table
        self.codec = get(codec) if isinstance(codec, str) else codec

    def __repr__(self) -> str:
        return f"Table({self.store!r}, {self.table!r}, database={self.database!r})"

    async def read(
        self,
        key: str,
        *,
        prefix: bool = False,
        suffix: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[Record]:
        """The store's ``read`` in this table."""
        return await self.store.read(
            key,
            prefix=prefix,
            suffix=suffix,
            limit=limit,
            offset=offset,
            database=self.database,
            table=self.table,
        )

    async def write(
        self, record: Record, *, ttl: float | None = None, expiry: float | None = None
    ) -> None:
        """The store's ``write`` in this table."""
        await self.store.write(
            record, ttl=ttl, expiry=expiry, database=self.database, table=self.table
        )

    async def delete(self, key: str) -> None:
        """The store's ``delete`` in this table."""
        await self.store.delete(key, database=self.database, table=self.table)

    async def list(
        self, *, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> builtins.list[str]:
        """The store's ``list`` in this table."""
        return await self.store.list(
            prefix=prefix,
            suffix=suffix,
            limit=limit,
            offset=offset,
            database=self.database,
            table=self.table,
        )

    async def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        expiry: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Encode ``value`` with the table's codec and write it under ``key``.

        Raises :class:`~micro.errors.BadRequest` when the codec cannot encode it.
        """
        try:
            data = self.codec.encode(value)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"cannot encode the value for {key!r}: {exc}") from None
        meta = {**(metadata or {}), CONTENT_TYPE: self.codec.content_type}
        await self.write(Record(key, data, meta), ttl=ttl, expiry=expiry)

    @overload
    async def get(self, key: str, into: type[T]) -> T: ...

    @overload
    async def get(self, key: str, into: type[T], *, default: D) -> T | D: ...

    @overload
    async def get(self, key: str) -> Any: ...

    async def get(self, key: str, into: Any = Any, *, default: Any = _MISSING) -> Any:
        """The value under ``key`` decoded as ``into``, or ``default`` when there is none.

        Raises :class:`~micro.store.RecordNotFound` (no default given) and
        :class:`~micro.errors.BadRequest` when the stored bytes do not fit ``into``.
        """
        try:
            [record] = await self.read(key)
        except RecordNotFound:
            if default is _MISSING:
                raise
            return default
        return self.decode(record, into)

    async def items(
        self,
        into: Any = Any,
        *,
        prefix: str = "",
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[tuple[str, Any]]:
        """(key, decoded value) of every record whose key starts with ``prefix``, in key order."""
        records = await self.read(prefix, prefix=True, limit=limit, offset=offset)
        return [(record.key, self.decode(record, into)) for record in records]

    def decode(self, record: Record, into: Any = Any) -> Any:
        """The record's value decoded by the codec named in its metadata (else the table's)."""
        content_type = record.metadata.get(CONTENT_TYPE)
        codec = for_content_type(content_type) if isinstance(content_type, str) else self.codec
        return codec.decode(record.value, into)
