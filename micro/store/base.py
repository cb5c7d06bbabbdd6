"""The Store protocol, its record, its options and its errors.

A store keeps records (a key, a value of bytes, metadata and an optional
expiry) in namespaces: a *database* holds *tables*, a table holds keys. Every
method takes ``database=`` and ``table=`` (defaults from the store's
options); :class:`~micro.store.Table` binds both for code that works in one.

Keys are any ``str`` (control characters and lone surrogates included), are
compared by code point, and are listed in that order by every backend.
Expired records are never returned, by any method of any backend.

Lifecycle: a store is an async context manager, entered by every part that
uses it. Entering is reference counted: the backend's resources (files,
connections) open on the first entry and close on the last exit. A store that
is not open raises :class:`StoreUnavailable`.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import BadRequest, NotFound, PayloadTooLarge, Unavailable

__all__ = [
    "Record",
    "Store",
    "StoreOptions",
    "RecordNotFound",
    "InvalidKey",
    "ValueTooLarge",
    "StoreUnavailable",
    "DEFAULT_DATABASE",
    "DEFAULT_TABLE",
]

#: the namespace used when none is given (Go Micro's default too)
DEFAULT_DATABASE = "micro"
DEFAULT_TABLE = "micro"


@dataclass(frozen=True, slots=True)
class Record:
    """One stored record; ``expiry`` is a time.time() timestamp, None for never."""

    key: str
    value: bytes
    metadata: dict[str, Any] = field(default_factory=dict)
    expiry: float | None = None


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Options every backend takes.

    The size limits keep one record within what every backend carries in one
    request (etcd's default request limit is 1.5 MiB) and keep key indexes
    (etcd's in-memory index, Redis's sorted sets) small.
    """

    database: str = DEFAULT_DATABASE
    table: str = DEFAULT_TABLE
    #: bytes of a value
    max_value_size: int = 1024 * 1024
    #: bytes of a key, UTF-8 encoded
    max_key_size: int = 1024
    #: bytes of the metadata, JSON encoded
    max_metadata_size: int = 64 * 1024


class RecordNotFound(NotFound):
    """No live record has the key."""


class InvalidKey(BadRequest):
    """The key is empty, not a string, or longer than the store allows."""


class ValueTooLarge(PayloadTooLarge):
    """The value (or its metadata) is over the store's configured limit."""


class StoreUnavailable(Unavailable):
    """The store is closed, or its backend cannot be reached (the detail says which)."""


@runtime_checkable
class Store(Protocol):
    """Key-value storage with prefix and suffix queries, pagination and expiry.

    Every method raises :class:`StoreUnavailable` when the store is closed or
    its backend unreachable, :class:`InvalidKey` for a bad key and
    :class:`~micro.errors.BadRequest` for bad options. A failed write changes
    nothing.
    """

    #: the limits and default namespace this store applies
    options: StoreOptions

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
        """The record of ``key``, or with ``prefix``/``suffix`` every record whose key
        starts/ends with it, in key order, ``offset`` skipped and at most ``limit``.

        An exact read of a missing key raises :class:`RecordNotFound`; a prefix or
        suffix read that matches nothing returns ``[]``.
        """
        ...

    async def write(
        self,
        record: Record,
        *,
        ttl: float | None = None,
        expiry: float | None = None,
        database: str | None = None,
        table: str | None = None,
    ) -> None:
        """Create or replace the record; it expires ``ttl`` seconds from now, at
        ``expiry`` (a timestamp), or at ``record.expiry`` when neither is given.

        Raises :class:`ValueTooLarge` over the configured limits.
        """
        ...

    async def delete(
        self, key: str, *, database: str | None = None, table: str | None = None
    ) -> None:
        """Remove the record; removing a missing key is no error."""
        ...

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
        """Keys of live records that start with ``prefix`` and end with ``suffix``,
        in key order, ``offset`` skipped and at most ``limit``."""
        ...

    async def __aenter__(self) -> Store: ...

    async def __aexit__(self, *exc_info: object) -> None: ...
