"""Data storage: the Store protocol, its record, and its backends.

Backends are chosen by URL, in code or with ``MICRO_STORE``:

- ``file`` (the default): a durable SQLite file on this machine, by default
  ``store.db`` under the user's data directory; ``file:///abs/path.db`` or
  ``file://relative/path.db`` names another;
- ``memory``: in-process only, for tests and single-process applications;
- ``etcd://host:port``: an etcd cluster (``etcd+https://`` for TLS);
- ``redis://[user:password@]host:port/db``: Redis (``rediss://`` for TLS),
  which needs ``pip install 'micro-runtime[redis]'``;
- ``postgres://user:password@host:5432/dbname`` (or ``postgresql://``), and
  ``cockroachdb://user@host:26257/dbname`` for CockroachDB: a SQL database,
  which needs ``pip install 'micro-runtime[postgres]'``;
- ``s3://bucket/prefix?endpoint=http://host:9000&region=us-east-1``: objects in
  S3 or an S3-compatible server, which needs ``pip install 'micro-runtime[s3]'``.

Any scheme an installed plugin provides works too (:mod:`micro.plugins`).
Backend modules are imported on first use. :class:`Table` binds one
database/table of a store and stores typed values with micro's codecs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .. import plugins
from .base import (
    DEFAULT_DATABASE,
    DEFAULT_TABLE,
    InvalidKey,
    Record,
    RecordNotFound,
    Store,
    StoreOptions,
    StoreUnavailable,
    ValueTooLarge,
)
from .memory import MemoryStore, default_store
from .table import Table

if TYPE_CHECKING:
    from .etcd import EtcdStore
    from .file import FileStore
    from .postgres import PostgresStore
    from .redis import RedisStore
    from .s3 import S3Store

#: the store used when none is given and ``MICRO_STORE`` is unset
DEFAULT_STORE = plugins.KINDS["store"].default

#: backend class -> (module, the extra that installs its dependency)
_BACKENDS: dict[str, tuple[str, str | None]] = {
    "FileStore": (".file", None),
    "EtcdStore": (".etcd", None),
    "RedisStore": (".redis", "redis"),
    "PostgresStore": (".postgres", "postgres"),
    "S3Store": (".s3", "s3"),
}


def __getattr__(name: str) -> Any:
    """Import a backend on first use; a missing dependency gives a stub naming the extra."""
    if name not in _BACKENDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, extra = _BACKENDS[name]
    from importlib import import_module

    try:
        backend = getattr(import_module(module, __name__), name)
    except ImportError as exc:
        if extra is None:
            raise
        backend = _missing(name, extra, exc)
    globals()[name] = backend
    return backend


def _missing(name: str, extra: str, error: ImportError) -> type:
    message = (
        f"{name} needs {error.name or 'a missing package'}: pip install 'micro-runtime[{extra}]'"
    )

    class Missing:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise ImportError(message) from error

    Missing.__name__ = Missing.__qualname__ = name
    return Missing


def from_url(url: str, *, options: StoreOptions | None = None) -> Store:
    """A new, unopened store for ``url`` (``file``, ``memory``, ``etcd://…``, ``redis://…``,
    ``postgres://…``, ``cockroachdb://…``, ``s3://…``, or a plugin's scheme)."""
    store: Store = plugins.create("store", url, options=options)
    return store


def resolve_store(value: Store | str | None) -> Store:
    """The store for a Service option: an object, a URL, or ``MICRO_STORE`` / the default;
    anything else raises TypeError.

    Each URL gives one shared store per process, so every part sees the same data.
    """
    if value is None or isinstance(value, str):
        url = value or os.environ.get("MICRO_STORE") or DEFAULT_STORE
        if url == "memory":
            return default_store()
    store: Store = plugins.resolve("store", value)
    return store


def _memory(url: str, *, options: StoreOptions | None = None) -> Store:
    return MemoryStore(options=options)


def _file(url: str, *, options: StoreOptions | None = None) -> Store:
    _, sep, rest = url.partition("://")
    if not sep:
        rest = url.partition(":")[2]
    store: Store = __getattr__("FileStore")(rest or None, options=options)
    return store


def _etcd(url: str, *, options: StoreOptions | None = None) -> Store:
    store: Store = __getattr__("EtcdStore")(plugins.endpoint(url, port=2379), options=options)
    return store


def _redis(url: str, *, options: StoreOptions | None = None) -> Store:
    store: Store = __getattr__("RedisStore")(url, options=options)
    return store


def _postgres(url: str, *, options: StoreOptions | None = None) -> Store:
    store: Store = __getattr__("PostgresStore")(url, options=options)
    return store


def _s3(url: str, *, options: StoreOptions | None = None) -> Store:
    store: Store = __getattr__("S3Store")(url, options=options)
    return store


__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_STORE",
    "DEFAULT_TABLE",
    "EtcdStore",
    "FileStore",
    "InvalidKey",
    "MemoryStore",
    "PostgresStore",
    "Record",
    "RecordNotFound",
    "RedisStore",
    "S3Store",
    "Store",
    "StoreOptions",
    "StoreUnavailable",
    "Table",
    "ValueTooLarge",
    "default_store",
    "from_url",
    "resolve_store",
]
