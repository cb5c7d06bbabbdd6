"""Distributed locks and leader election: the Sync protocol and its backends.

Backends are chosen by URL, in code or with ``MICRO_SYNC``:

- ``memory`` (the default): in-process, for tests and single-process
  applications; every MemorySync in the process shares one set of locks;
- ``etcd://host:port``: an etcd cluster, for locks and elections across hosts.

Unlike a registry, a Sync is not shared between services: each one runs its
lease keepers in its own service's task group, so :func:`resolve_sync` makes
a new object for every service (memory ones still share the process's locks).
"""

from __future__ import annotations

import os

from .base import (
    DEFAULT_TTL,
    LeaderInfo,
    Leadership,
    LeadershipLost,
    Lock,
    LockBusy,
    LockLost,
    NotHeld,
    Sync,
    SyncUnavailable,
)
from .memory import MemorySync, MemorySyncState, default_state

#: the sync used when none is given and ``MICRO_SYNC`` is unset
DEFAULT_SYNC = "memory"


def from_url(url: str, *, id: str | None = None) -> Sync:
    """A new Sync for ``url`` (``memory``, ``etcd://host:port``); ``id`` names this node."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = url, ""
    scheme = scheme.lower()
    if scheme == "memory":
        return MemorySync(id=id)
    if scheme in ("etcd", "etcd+http", "etcd+https"):
        from .etcd import EtcdSync

        host = rest.strip("/") or "127.0.0.1:2379"
        return EtcdSync(f"{'https' if scheme == 'etcd+https' else 'http'}://{host}", id=id)
    raise ValueError(f"unknown sync {url!r}: use memory or etcd://host:port")


def resolve_sync(value: Sync | str | None, *, id: str | None = None) -> Sync:
    """The Sync for a Service option: an object as is, else a new one for the URL or default."""
    if value is not None and not isinstance(value, str):
        return value
    return from_url(value or os.environ.get("MICRO_SYNC") or DEFAULT_SYNC, id=id)


__all__ = [
    "DEFAULT_SYNC",
    "DEFAULT_TTL",
    "from_url",
    "resolve_sync",
    "LeaderInfo",
    "Leadership",
    "LeadershipLost",
    "Lock",
    "LockBusy",
    "NotHeld",
    "LockLost",
    "MemorySync",
    "MemorySyncState",
    "Sync",
    "SyncUnavailable",
    "default_state",
]
